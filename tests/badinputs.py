"""A cohort of bad inputs (and a few good participants) for end-to-end tests of the engine.

``build_bad_cohort(folder, seed)`` writes every case into ``folder`` and returns
one :class:`BadCase` per case: which paths it wrote, the participant (``eid``,
``None`` where no participant can be named), what the engine should do with it
(``expect``) and a regex (``reason``) that the ledger message (``"ledger"``) or
one of the row's flags (``"flag"``) must match; ``"good"`` participants get a
row without flags. ``forbid`` (optional) is a regex the message must NOT match
(e.g. the bytes of a text file named like a zip).

20201 zips are written by :mod:`ukbmri.synth` on a 4x coarser in-plane grid
and every 3rd slice (same field of view and anatomy, ~0.2 s each); defects are
then made by editing members (pixel bytes, headers) or zip structure. Liver
zips are full-size synth zips. Load it like the other test helpers (tests are
not a package)::

    spec = importlib.util.spec_from_file_location("badinputs", REPO / "tests" / "badinputs.py")
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from unittest import mock

import numpy as np
import pydicom

__all__ = ["BadCase", "build_bad_cohort", "coarse_participant", "SECRET"]

FIRST_EID = 5000001
#: first bytes of the text file a zip-named symlink points to; no message may quote them
SECRET = "QZXJ-private-notes"


@dataclass(frozen=True)
class BadCase:
    """One kind of input and what the engine must do with it."""

    name: str
    paths: list[Path]
    eid: int | None
    expect: str  #: "ledger" | "flag" | "good"
    reason: str  #: regex the ledger message / a flag must match ("" for good)
    forbid: str | None = None  #: regex the message must not match
    fields: tuple[int, ...] = field(default=())  #: fields the case is about

    def __post_init__(self) -> None:
        if self.expect not in ("ledger", "flag", "good"):
            raise ValueError(f"expect must be ledger, flag or good, not {self.expect!r}")


# -- writing synth participants fast ------------------------------------------------------------
def _coarse_scans(factor: int = 4, z_step: int = 3):
    from ukbmri.synth import layout

    def scans(p, quirks):
        out = []
        for s in layout.dixon_scans(p, quirks):
            g = s.geometry
            rows, cols = g.rows // factor, g.cols // factor
            d = (g.pixel_mm[0] * factor, g.pixel_mm[1] * factor)
            cx = g.x0 + (g.cols - 1) / 2 * g.pixel_mm[1]
            cy = g.y0 + (g.rows - 1) / 2 * g.pixel_mm[0]
            dz = (g.spacing_mm or g.thickness_mm) * z_step
            ng = replace(
                g, rows=rows, cols=cols, pixel_mm=d, x0=round(cx - (cols - 1) / 2 * d[1], 6),
                y0=round(cy - (rows - 1) / 2 * d[0], 6), z=g.z[::z_step], thickness_mm=dz, spacing_mm=dz,
            )
            out.append(replace(s, geometry=ng))
        return out

    return scans


@contextmanager
def _coarse_dixon():
    from ukbmri.synth import ukb_writer

    with mock.patch.object(ukb_writer, "dixon_scans", _coarse_scans()):
        yield


def coarse_participant(folder: Path, p, *, fields=(20201,), quirks=None, seed: int = 0) -> dict[int, Path]:
    """Write participant ``p``'s zips; 20201 on the coarse grid. Returns ``{field in name: path}``."""
    from ukbmri.synth import Quirks, write_participant

    folder.mkdir(parents=True, exist_ok=True)
    with _coarse_dixon():
        return write_participant(
            p, folder, fields=fields, quirks=quirks or Quirks(), rng=np.random.default_rng([seed, p.eid])
        )


# -- editing zips ---------------------------------------------------------------------------------
Edit = Callable[[str, bytes, "pydicom.Dataset | None"], "bytes | None"]


def _members(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(i, zf.read(i)) for i in zf.infolist()]


@dataclass(frozen=True)
class _Hdr:
    """The header values the edits need (parsed once per base zip)."""

    Rows: int
    Columns: int
    SeriesDescription: str
    SeriesNumber: int
    InstanceNumber: int
    ImagePositionPatient: tuple[float, ...]
    ImageType: tuple[str, ...]
    AcquisitionTime: str


def _header(data: bytes) -> _Hdr | None:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        return _Hdr(
            int(ds.Rows), int(ds.Columns), ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber,
            tuple(float(v) for v in ds.ImagePositionPatient), tuple(ds.ImageType), str(ds.AcquisitionTime),
        )
    except Exception:  # noqa: BLE001 - manifest and other non-DICOM members
        return None


_PARSED: dict[Path, list[tuple[zipfile.ZipInfo, bytes, _Hdr | None]]] = {}


def _parsed(path: Path) -> list[tuple[zipfile.ZipInfo, bytes, _Hdr | None]]:
    """Members of a base zip with their headers, parsed once (cleared by :func:`build_bad_cohort`)."""
    if path not in _PARSED:
        _PARSED[path] = [(i, d, _header(d) if i.filename.endswith(".dcm") else None) for i, d in _members(path)]
    return _PARSED[path]


def _rewrite(src: Path, dst: Path, edit: Edit, *, rename: dict[str, str] | None = None) -> Path:
    """Copy ``src`` to ``dst`` applying ``edit(name, bytes, header or None)`` (None drops the member)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dst, "w") as zf:
        for info, data, hdr in _parsed(src):
            new = edit(info.filename, data, hdr)
            if new is None:
                continue
            zi = zipfile.ZipInfo((rename or {}).get(info.filename, info.filename), date_time=info.date_time)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, new, compresslevel=1)
    return dst


def _pixels_of(data: bytes, ds) -> np.ndarray:
    n = int(ds.Rows) * int(ds.Columns)
    return np.frombuffer(data[-2 * n :], dtype="<u2").reshape(int(ds.Rows), int(ds.Columns))


def _with_pixels(data: bytes, ds, px: np.ndarray) -> bytes:
    """Replace the trailing PixelData bytes (synth writes PixelData last, uncompressed uint16)."""
    n = int(ds.Rows) * int(ds.Columns)
    return data[: -2 * n] + np.ascontiguousarray(px, dtype="<u2").tobytes()


def _kind(ds: _Hdr) -> str:
    desc = ds.SeriesDescription
    return desc.rsplit("_", 1)[-1] if "Dixon" in desc else ("P" if "P" in ds.ImageType else "M")


def _save(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _zip_of(path: Path, members: list[tuple[str, bytes]], compress=zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zi = zipfile.ZipInfo(name, date_time=(2019, 6, 3, 10, 0, 0))
            zi.compress_type = compress
            zf.writestr(zi, data)
    return path


def _set_encrypted_flag(path: Path) -> None:
    """Set general-purpose bit 0 (encrypted) in every local and central header of a stored zip."""
    b = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = b.find(sig)
        while i >= 0:
            (flags,) = struct.unpack_from("<H", b, i + off)
            struct.pack_into("<H", b, i + off, flags | 1)
            i = b.find(sig, i + 4)
    path.write_bytes(bytes(b))


# -- the cohort -------------------------------------------------------------------------------------
def build_bad_cohort(folder: Path, seed: int) -> list[BadCase]:
    """Write >= 30 kinds of bad input and a few good participants into ``folder`` (a few seconds)."""
    from ukbmri.synth import Quirks, sample_participants
    from ukbmri.synth.ukb_writer import write_participant

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _PARSED.clear()
    rng = np.random.default_rng(seed)
    # clearly typical bodies first (men near BMI 25): the good cases must not be borderline for any check
    people = sorted(sample_participants(6, rng, first_eid=FIRST_EID),
                    key=lambda p: (not p.sex_male, abs(p.bmi_target - 25.0)))
    eids = iter(range(FIRST_EID + 100, FIRST_EID + 1000))
    cases: list[BadCase] = []
    scratch = folder / ".build"  # base zips that are edited into cases (hidden: never an input)

    def person(i: int, eid: int | None = None):
        p = people[i % len(people)]
        return replace(p, eid=eid if eid is not None else next(eids))

    def add(name, paths, eid, expect, reason, *, forbid=None, fields=(20201,)):
        cases.append(BadCase(name, [Path(x) for x in paths], eid, expect, reason, forbid, tuple(fields)))

    def z(eid: int, f: int = 20201, sub: str = "") -> Path:
        return folder / sub / f"{eid}_{f}_2_0.zip"

    # -- good participants (and the base zips edited below) ------------------------------------
    g1 = person(0)
    paths = coarse_participant(folder, g1, fields=(20201, 20203, 20254), seed=seed)
    add("good_all_fields", paths.values(), g1.eid, "good", "", fields=(20201, 20203, 20254))
    g2 = person(1)
    paths = coarse_participant(folder, g2, fields=(20201, 20203), seed=seed)
    add("good_body_and_gre", paths.values(), g2.eid, "good", "", fields=(20201, 20203))
    base_body = z(g1.eid)
    base_gre = z(g1.eid, 20203)
    base_ideal = z(g1.eid, 20254)
    eid = next(eids)  # manifest misspelled (manifest.cvs) with CRLF line ends and trailing blank lines

    def manifest_quirks(member, data, ds):
        return data.replace(b"\n", b"\r\n") + b"\r\n\r\n" if "manifest" in member else data

    path = _rewrite(base_body, z(eid), manifest_quirks, rename={"manifest.csv": "manifest.cvs"})
    add("good_manifest_quirks", [path], eid, "good", "")

    # -- 20201 pixels --------------------------------------------------------------------------
    def body_edit(name: str, fn: Callable[[np.ndarray, str, object], np.ndarray | None], expect, reason):
        eid = next(eids)
        pixel_rng = np.random.default_rng([seed, eid])

        def edit(member, data, ds):
            if ds is None:
                return data
            px = fn(_pixels_of(data, ds), _kind(ds), (pixel_rng, ds))
            return data if px is None else _with_pixels(data, ds, px)

        add(name, [_rewrite(base_body, z(eid), edit)], eid, expect, reason)

    body_edit("blank_20201", lambda px, k, c: np.zeros_like(px), "ledger", r"body_input_blank")

    def noise(px, k, c):
        r = c[0]
        re_, im = r.normal(200.0, 60.0, px.shape), r.normal(0.0, 60.0, px.shape)
        return np.clip(np.hypot(re_, im), 0, 4095).astype(np.uint16)  # Rician noise, no anatomy

    body_edit("noise_20201", noise, "ledger", r"body_input_noise")
    body_edit("constant_20201", lambda px, k, c: np.full_like(px, 700), "ledger", r"body_input_constant")
    body_edit("water_blank_20201", lambda px, k, c: np.zeros_like(px) if k == "W" else None, "ledger",
              r"body_water_blank")
    # fat series made a copy of the water series (same positions, same sizes)
    eid = next(eids)
    water: dict[tuple, bytes] = {}
    for info, data, ds in _parsed(base_body):
        if ds is not None and _kind(ds) == "W":
            water[(ds.SeriesDescription[:-2], tuple(ds.ImagePositionPatient), ds.AcquisitionTime)] = data

    def copy_water(member, data, ds):
        if ds is None or _kind(ds) != "F":
            return data
        w = water[(ds.SeriesDescription[:-2], tuple(ds.ImagePositionPatient), ds.AcquisitionTime)]
        return _with_pixels(data, ds, _pixels_of(w, ds))

    add("fat_is_water_20201", [_rewrite(base_body, z(eid), copy_water)], eid, "ledger", r"body_wf_identical")

    # the lowest station's (thighs, knees) water and fat swapped: a partial swap
    eid = next(eids)
    lowest: dict[str, tuple[float, int]] = {}
    for info, data, ds in _parsed(base_body):
        if ds is not None and _kind(ds) in ("W", "F"):
            zpos = float(ds.ImagePositionPatient[2])
            k = _kind(ds)
            if k not in lowest or zpos < lowest[k][0]:
                lowest[k] = (zpos, ds.SeriesNumber)
    stash = {}
    for info, data, ds in _parsed(base_body):
        if ds is not None and _kind(ds) in ("W", "F"):
            stash[(_kind(ds), ds.SeriesDescription[:-2], ds.AcquisitionTime, ds.ImagePositionPatient)] = (
                _pixels_of(data, ds)
            )

    def swapper(numbers: set[int] | None):
        def swap(member, data, ds):
            if ds is None or _kind(ds) not in ("W", "F") or (numbers is not None and ds.SeriesNumber not in numbers):
                return data
            other = "F" if _kind(ds) == "W" else "W"
            key = (other, ds.SeriesDescription[:-2], ds.AcquisitionTime, ds.ImagePositionPatient)
            return _with_pixels(data, ds, stash[key])

        return swap

    add("fat_water_swap_one_station_20201",
        [_rewrite(base_body, z(eid), swapper({n for _, n in lowest.values()}))], eid, "flag", r"body_fat_water_swap")
    eid = next(eids)  # every station swapped (the pixel data; descriptions kept), as ~1.8 % of UK Biobank scans
    add("fat_water_swap_20201", [_rewrite(base_body, z(eid), swapper(None))], eid, "flag",
        r"body_fat_water_swap(?!_partial)")

    # -- 20201 synth quirks ----------------------------------------------------------------------
    for name, q, expect, reason in (
        ("wf_size_mismatch_20201", Quirks(wf_size_mismatch=3), "flag", r"body_wf_size_mismatch"),
        ("rescanned_station_20201", Quirks(duplicate_station=2), "flag", r"body_station_rescanned"),
        ("rescan_across_midnight_20201", Quirks(duplicate_station=5, rescan_across_midnight=True), "flag",
         r"body_station_rescanned"),
        ("missing_station_20201", Quirks(missing_station=6), "flag", r"body_station_missing"),
    ):
        p = person(0)
        paths = coarse_participant(folder, p, fields=(20201,), quirks=q, seed=seed)
        add(name, paths.values(), p.eid, expect, reason)

    eid = next(eids)  # two stations gone: not a neck-to-knee scan any more
    gone = set()
    for info, data, ds in _parsed(base_body):
        if ds is not None and ds.SeriesDescription.startswith("Dixon_BH"):
            gone.add(ds.SeriesNumber)
    drop = set(sorted(gone)[:8])  # the 4 series of each of the first two breath-hold stations
    add("two_stations_missing_20201",
        [_rewrite(base_body, z(eid), lambda m, d, ds: None if ds is not None and ds.SeriesNumber in drop else d)],
        eid, "ledger", r"(?i)too few .*stations|body_station_missing")
    eid = next(eids)
    add("no_water_fat_series_20201",
        [_rewrite(base_body, z(eid), lambda m, d, ds: None if ds is not None and _kind(ds) in ("W", "F") else d)],
        eid, "ledger", r"(?i)water|fat|protocol|field")

    # -- liver pixels ----------------------------------------------------------------------------
    def liver_edit(name, base, f, fn, expect, reason):
        eid = next(eids)

        def edit(member, data, ds):
            if ds is None:
                return data
            px = fn(_pixels_of(data, ds), _kind(ds), ds.InstanceNumber)
            return data if px is None else _with_pixels(data, ds, px)

        add(name, [_rewrite(base, z(eid, f), edit)], eid, expect, reason, fields=(f,))

    liver_edit("blank_20203", base_gre, 20203, lambda px, k, i: np.zeros_like(px), "ledger", r"liver_input_blank")
    liver_edit("constant_20203", base_gre, 20203, lambda px, k, i: np.full_like(px, 300), "ledger",
               r"liver_input_constant")
    noise_rng = np.random.default_rng([seed, 20203])
    liver_edit("noise_20203", base_gre, 20203,
               lambda px, k, i: noise_rng.integers(0, 4096, px.shape).astype(np.uint16) if k == "M" else None,
               "ledger", r"liver_input_noise")
    liver_edit("one_blank_echo_20203", base_gre, 20203,
               lambda px, k, i: np.zeros_like(px) if (k == "M" and i == 4) else None, "ledger", r"liver_echo_blank")
    liver_edit("blank_20254", base_ideal, 20254, lambda px, k, i: np.zeros_like(px), "ledger", r"liver_input_blank")

    eid = next(eids)  # 8 of 10 echoes
    add("wrong_echo_count_20203",
        [_rewrite(base_gre, z(eid, 20203),
                  lambda m, d, ds: None if ds is not None and ds.InstanceNumber in (9, 10, 19, 20) else d)],
        eid, "ledger", r"(?i)echo", fields=(20203,))

    # -- headers -----------------------------------------------------------------------------------
    def header_edit(name, base, f, fn, expect, reason, *, only_first=True):
        eid = next(eids)
        done = []

        def edit(member, data, ds):
            if ds is None or (only_first and done):
                return data
            full = pydicom.dcmread(io.BytesIO(data))
            out = fn(full, data)
            done.append(member)
            return out

        add(name, [_rewrite(base, z(eid, f), edit)], eid, expect, reason, fields=(f,))

    def drop_position(ds, data):
        del ds.ImagePositionPatient
        return _save(ds)

    header_edit("missing_required_tag_20203", base_gre, 20203, drop_position, "ledger",
                r"(?i)missing.*ImagePositionPatient|ImagePositionPatient")

    def huge_matrix(ds, data):
        ds.Rows, ds.Columns = 65535, 65535
        return _save(ds)

    header_edit("rows_columns_65535_20203", base_gre, 20203, huge_matrix, "ledger", r"(?i)pixel|rows|size|shape")

    def short_pixels(ds, data):
        return data[: len(data) - 100]  # PixelData value cut short (the element length still says full)

    header_edit("pixel_data_short_20203", base_gre, 20203, short_pixels, "ledger", r"(?i)pixel|truncat|short|corrupt")

    def odd_pixel_length(ds, data):
        ds.PixelData = bytes(ds.PixelData)[:-6]  # consistent element, wrong length for Rows x Columns
        return _save(ds)

    header_edit("pixel_data_length_mismatch_20203", base_gre, 20203, odd_pixel_length, "ledger",
                r"(?i)pixel|length|size")

    header_edit("zero_padded_after_pixeldata_20203", base_gre, 20203, lambda ds, data: data + b"\x00" * 64, "good",
                "", only_first=False)

    def other_patient(ds, data):
        if "P" in list(ds.ImageType):
            ds.PatientID = "SYN-OTHER-PERSON"
            return _save(ds)
        return data

    header_edit("mixed_participants_20203", base_gre, 20203, other_patient, "ledger", r"(?i)patient ?id|participant",
                only_first=False)

    # wrong field: 20203 content in a 20201-named zip (synth quirk)
    p = person(1)
    paths = write_participant(p, folder, fields=(20203,), quirks=Quirks(wrong_name_field=True),
                              rng=np.random.default_rng([seed, p.eid]))
    add("wrong_field_in_name", paths.values(), p.eid, "ledger", r"(?i)field")

    # -- zip structure --------------------------------------------------------------------------------
    good_bytes = base_gre.read_bytes()
    eid = next(eids)
    path = z(eid, 20203)
    path.write_bytes(good_bytes[: len(good_bytes) // 2])
    add("truncated_zip", [path], eid, "ledger", r"(?i)truncat|corrupt|central directory", fields=(20203,))

    eid = next(eids)
    path = z(eid)
    path.write_bytes(np.random.default_rng([seed, eid]).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    add("not_a_zip", [path], eid, "ledger", r"(?i)not a zip")

    eid = next(eids)
    path = z(eid)
    path.write_bytes(b"")
    add("zero_byte_file", [path], eid, "ledger", r"(?i)not a zip|empty")

    eid = next(eids)
    add("empty_zip", [_zip_of(z(eid), [])], eid, "ledger", r"(?i)no dicom|empty|no .*members")

    gre_members = [(i.filename, d) for i, d, _ in _parsed(base_gre)]
    eid = next(eids)
    unsafe = [(("../../" + n) if k == 0 else n, d) for k, (n, d) in enumerate(gre_members)]
    add("unsafe_member_name", [_zip_of(z(eid, 20203), unsafe)], eid, "ledger", r"(?i)unsafe|\.\.|refused",
        fields=(20203,))

    eid = next(eids)
    path = _zip_of(z(eid, 20203), gre_members, compress=zipfile.ZIP_STORED)
    _set_encrypted_flag(path)
    add("encrypted_member", [path], eid, "ledger", r"(?i)encrypt", fields=(20203,))

    for name, method in (("bzip2_member", zipfile.ZIP_BZIP2), ("lzma_member", zipfile.ZIP_LZMA)):
        eid = next(eids)
        add(name, [_zip_of(z(eid, 20203), gre_members, compress=method)],
            eid, "ledger", r"(?i)compression|bzip2|lzma|method", fields=(20203,))

    eid = next(eids)  # 65 MiB of zeros in one member: ~64 kB compressed
    path = z(eid, 20203)
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in gre_members[:2]:
            zf.writestr(n, d, compress_type=zipfile.ZIP_DEFLATED)
        zi = zipfile.ZipInfo("bomb.dcm", date_time=(2019, 6, 3, 10, 0, 0))
        zi.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(zi, "w", force_zip64=False) as fh:
            chunk = bytes(1 << 20)
            for _ in range(65):
                fh.write(chunk)
    add("zip_bomb_ratio", [path], eid, "ledger", r"(?i)limit|too large|bomb|ratio", fields=(20203,))

    eid = next(eids)
    members = [(n, d) for n, d in gre_members]
    members[0] = (members[0][0], b"this is a text file, not DICOM\n" * 40)
    add("non_dicom_member", [_zip_of(z(eid, 20203), members)], eid, "ledger", r"(?i)not dicom|not a dicom|dicom",
        fields=(20203,))

    # -- files and names ----------------------------------------------------------------------------------
    p = person(0, eid=next(eids))
    src = coarse_participant(scratch, p, fields=(20203,), seed=seed)[20203]
    path = folder / "participant_liver_scan.zip"
    path.write_bytes(src.read_bytes())
    add("non_convention_zip_name", [path], None, "ledger", r"(?i)name|convention", fields=(20203,))

    eid = next(eids)
    a = z(eid, 20203)
    a.write_bytes(good_bytes)
    b = z(eid, 20203, sub="again")
    b.parent.mkdir(parents=True, exist_ok=True)
    b.write_bytes(good_bytes)
    add("duplicate_zip_for_visit", [a, b], eid, "ledger", r"(?i)duplicate|more than one|twice|several", fields=(20203,))

    eid = next(eids)
    path = z(eid)
    os.symlink(folder / "does-not-exist.zip", path)
    add("dangling_symlink", [path], eid, "ledger", r"(?i)no such|dangling|broken|symlink|not found|missing|exist")

    eid = next(eids)
    path = z(eid)
    path.mkdir()
    (path / "inner.dcm").write_bytes(b"not used")
    add("folder_named_like_zip", [path], eid, "ledger", r"(?i)folder|director|not a (zip|file)")

    eid = next(eids)
    text = folder / "notes.txt"
    text.write_text(f"{SECRET}: not for the log\n" * 20)
    path = z(eid)
    os.symlink(text, path)
    add("symlink_to_text_file", [path], eid, "ledger", r"(?i)not a zip", forbid=r"QZXJ|private-notes|not for the log")

    _remove_tree(scratch)
    _PARSED.clear()
    return cases


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for p in sorted(path.rglob("*"), key=lambda x: -len(x.parts)):
        p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
    path.rmdir()

