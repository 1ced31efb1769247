"""Read a UK Biobank DICOM zip into :class:`~ukbmri.types.Series`, all in memory.

:func:`read_zip` lists the members itself (the manifest is advisory), parses
every DICOM header once, groups images into series by (SeriesNumber,
SeriesInstanceUID, image kind), detects the field from the descriptions, and
decodes pixels only for the series asked for:

* ``pixels=True``: every member is decompressed once; its bytes are kept until
  its series' pixels are stacked, then released.
* ``pixels=False`` (:func:`scan_zip`): only the first bytes of each member are
  decompressed (16 KiB, more when a header is longer), so scanning costs a
  fraction of unzipping. Member CRCs are therefore not checked by a scan.
* ``pixels=callable``: header prefixes first, then whole members only for the
  series the callable chooses (e.g. W and F of a Dixon zip: half the members).

Member policy: the manifest (a name containing "manifest") is parsed, operating
system litter (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) is
skipped with a note in :attr:`UkbZip.problems`, and any other member must be
DICOM: a stray ``README.txt`` raises :class:`NotDicomError` naming it, because a
zip with unexpected content is not a UK Biobank zip we understand.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ukbmri.errors import FieldMismatchError, MemberTooLargeError, NoDicomError, SeriesError
from ukbmri.io.dicom import (
    ImageHeader,
    PixelRef,
    PixelSpec,
    looks_like_dicom,
    parse_header_prefix,
    parse_image,
    parse_image_spec,
)
from ukbmri.io.fields import detect_field, field_problems, normalise_description
from ukbmri.io.grouping import PixelSelector, check_matrix, check_pixel_budget, group_series, with_pixels
from ukbmri.io.manifest import Manifest, find_manifest_member, is_manifest_name, parse_manifest
from ukbmri.io.zipsource import ZipLimits, ZipSource
from ukbmri.types import FIELDS, ParticipantKey, Series

HeaderFilter = Callable[[ImageHeader], bool]

__all__ = ["UkbZip", "read_zip", "scan_zip", "read_dicom_series"]

log = logging.getLogger(__name__)

_FIRST_PREFIX = 4 * 1024  # bytes inflated first for a header (then what the previous member needed)
_MIN_PREFIX = 1024
_LITTER_RE = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)


@dataclass(frozen=True)
class UkbZip:
    """One UK Biobank zip as read by :func:`read_zip`."""

    path: Path
    key: ParticipantKey | None  #: from the file name; None if it does not follow the convention
    field: int  #: detected from the DICOM headers
    series: tuple[Series, ...]  #: sorted by (series_number, image_kind)
    manifest: Manifest | None
    problems: tuple[str, ...]

    def find(
        self, *, description: str | None = None, suffix: str | None = None, kind: str | None = None
    ) -> list[Series]:
        """Series matching all the given criteria.

        ``description`` matches the normalised description exactly; ``suffix`` matches
        the last ``_`` part of it case-insensitively (``"W"`` or ``"_W"`` finds
        ``Dixon_noBH_W``); ``kind`` matches :attr:`Series.image_kind`.
        """
        want_desc = None if description is None else normalise_description(description)
        want_suffix = None if suffix is None else normalise_description(suffix).lstrip("_")
        out = []
        for s in self.series:
            norm = normalise_description(s.description)
            if want_desc is not None and norm != want_desc:
                continue
            if want_suffix is not None and norm.rsplit("_", 1)[-1] != want_suffix:
                continue
            if kind is not None and s.image_kind != kind:
                continue
            out.append(s)
        return out

    @property
    def field_description(self) -> str:
        return FIELDS.get(self.field, "unknown field")

    @property
    def n_images(self) -> int:
        return sum(s.n_images for s in self.series)


# -- zips -------------------------------------------------------------------------
@dataclass
class _Loaded:
    headers: list[ImageHeader]
    store: dict[str, PixelRef | PixelSpec]
    manifest: Manifest | None
    names: list[str]
    problems: list[str]


def _load(src: ZipSource, keep: str, prefetch: HeaderFilter | None = None) -> _Loaded:
    """Parse every member once, inflating each byte at most once.

    ``keep``: ``"ref"`` read whole members and keep their bytes (all pixels wanted),
    ``"spec"`` read header prefixes and keep the pixel layout (some wanted): members
    whose header passes ``prefetch`` are read whole right away (their stream goes on
    from the prefix), the others are left compressed; ``"none"`` header prefixes only.
    Every member's sizes are checked against its header (:meth:`PixelSpec.check_layout`).
    """
    path = str(src.path)
    out = _Loaded([], {}, None, list(src.names), [])
    manifest_name = find_manifest_member(src.names)
    hint = _FIRST_PREFIX
    memo: dict = {}  # header values the members of a series share, converted once (fastheader.quick_header)
    kept = 0
    for name in src.names:
        if name == manifest_name:
            out.manifest = parse_manifest(src.read(name), member=name)
            continue
        if _LITTER_RE.search(name):
            out.problems.append(f"skipped operating-system file {name!r}")
            continue
        if is_manifest_name(name):
            out.problems.append(f"skipped second manifest-like member {name!r}")
            continue
        whole = keep == "ref" or (prefetch is not None and keep == "spec")
        hdr, px, hint = _scan_member(
            src, name, hint, prefetch if keep == "spec" else (lambda h: True) if whole else None, memo
        )
        if isinstance(px, PixelRef):  # pixel bytes held until decoding (float32 will be twice that, or more)
            kept += px.nbytes if px.offset >= 0 else len(px.data)
            if kept > src.limits.max_pixel_bytes // 2:
                raise MemberTooLargeError(
                    "members to decode hold more pixel bytes than the pixel budget", path=path, member=name,
                    expected=f"at most {src.limits.max_pixel_bytes // 2} bytes", found=f"more than {kept}",
                )
        if keep != "none":
            out.store[name] = px
        out.headers.append(hdr)
    if not out.headers:
        names = out.names
        raise NoDicomError(
            "zip holds no DICOM files", path=path, found=f"{len(names)} member(s)" if names else "no members"
        )
    return out


def _scan_member(
    src: ZipSource, name: str, hint: int, whole: HeaderFilter | None, memo: dict | None = None
) -> tuple[ImageHeader, PixelRef | PixelSpec, int]:
    """Header of one member from as few inflated bytes as possible, the member itself when ``whole(header)``.

    Returns the header, a :class:`PixelRef` (member read) or :class:`PixelSpec` (not read),
    and the prefix size to try first for the next member.
    """
    path = str(src.path)
    m = src.open_member(name)
    size = m.size
    n = hint
    got = None
    while n < size:
        prefix = m.read_prefix(n)
        if not looks_like_dicom(prefix):
            break
        got = parse_header_prefix(prefix, path=path, member=name, memo=memo)
        if got is not None:
            break
        n *= 4
    data = None
    if got is not None:
        hdr, spec = got
        hint = max(_MIN_PREFIX, spec.value_start + spec.value_start // 8 + 256)
    else:
        data = m.read_all()
        hdr, spec = parse_image_spec(data, path=path, member=name)
    spec.check_layout(size, max_trailing=src.limits.max_trailing_bytes, path=path, member=name)
    if data is None and whole is not None and whole(hdr):
        data = m.read_all()
    if data is None:
        return hdr, spec, hint
    return hdr, spec.bind(data, path=path, member=name), hint


def _manifest_problems(manifest: Manifest | None, members: Sequence[str], headers: Sequence[ImageHeader]) -> list[str]:
    if manifest is None:
        return ["no manifest in the zip"]
    out = [*manifest.problems]
    if "filename" not in manifest.columns:
        return out
    by_base: dict[str, str] = {}
    for m in members:
        by_base.setdefault(m.rsplit("/", 1)[-1], m)
    present = set(members)
    listed: dict[str, str] = {}  # member -> manifest filename
    absent = []
    for fn in manifest.filenames:
        m = fn if fn in present else by_base.get(fn.replace("\\", "/").rsplit("/", 1)[-1])
        if m is None:
            absent.append(fn)
        else:
            listed[m] = fn
    if absent:
        out.append(f"manifest lists {len(absent)} file(s) absent from the zip: {_few(absent)}")
    unlisted = [h.member for h in headers if h.member not in listed]
    if unlisted:
        out.append(f"{len(unlisted)} DICOM file(s) not in the manifest: {_few(unlisted)}")
    descs = manifest.descriptions()
    differ = []
    for h in headers:
        fn = listed.get(h.member)
        if fn is None or fn not in descs:
            continue
        if normalise_description(descs[fn]) != normalise_description(h.description):
            differ.append(f"{h.member}: manifest {descs[fn]!r} vs DICOM {h.description!r}")
    if differ:
        out.append(f"manifest description differs from the DICOM header for {len(differ)} file(s): {_few(differ, 2)}")
    return out


def _few(items: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n})" if len(items) > n else "")


def read_zip(
    path: str | os.PathLike[str],
    *,
    pixels: PixelSelector = True,
    limits: ZipLimits | None = None,
    expect_field: int | None = None,
    prefetch: HeaderFilter | None = None,
) -> UkbZip:
    """Read a UK Biobank zip (headers, and pixels as asked) without extracting it.

    Parameters
    ----------
    path:
        ``<eid>_<field>_<instance>_<array>.zip`` (other names are read too, with ``key=None``).
    pixels:
        ``True`` decode every series, ``False`` none (header-only, fastest), or a
        callable deciding per header-only :class:`Series`.
    limits:
        Zip-bomb caps (:class:`ZipLimits`).
    expect_field:
        Raise :class:`FieldMismatchError` when the headers say another field
        (checked before any pixel is decoded).
    prefetch:
        With a callable ``pixels``: members whose :class:`ImageHeader` passes are read
        whole during the header pass (their inflate stream continues from the header,
        so nothing is inflated twice), e.g. ``dixon_kind(h.description) in ("W", "F")``.
        A hint only: ``pixels`` still decides what is decoded, and members it wants
        that were not prefetched are read afterwards.

    Before anything is decoded, every image's Rows x Columns is checked against
    its field (:func:`~ukbmri.io.fields.max_matrix`) and the float32 size of all
    series to decode against ``limits.max_pixel_bytes``: a zip claiming 65535 x 65535
    images is a :class:`PixelDataError` naming the member, not a failed allocation.

    Raises
    ------
    NotAZipError, TruncatedZipError, UnsafeMemberError, MemberTooLargeError, NoDicomError,
    NotDicomError, MissingTagError, SeriesError, UnknownProtocolError, FieldMismatchError,
    PixelDataError
    """
    path = Path(path)
    keep = "spec" if callable(pixels) else ("ref" if pixels else "none")
    with ZipSource(path, limits) as src:
        loaded = _load(src, keep, prefetch)
        headers = loaded.headers
        grouped, group_notes = group_series(headers, source=str(path), path=str(path))
        series_only = [s for s, _ in grouped]
        field, field_notes = detect_field(series_only, path=str(path))
        if expect_field is not None and field != expect_field:
            raise FieldMismatchError(
                "the DICOM headers are of another field", path=path, expected=expect_field, found=field
            )
        key = ParticipantKey.from_path(path)
        notes = [*loaded.problems, *group_notes, *field_notes]
        if key is not None and key.field != field:
            msg = f"file name says field {key.field} but the DICOM headers say {field}"
            log.warning("%s: %s", path, msg)
            notes.append(msg)
        notes += field_problems(field, series_only)
        notes += _manifest_problems(loaded.manifest, loaded.names, headers)
        pids = sorted({h.patient_id for h in headers if h.patient_id})
        if len(pids) > 1:
            if keep != "none":  # pixels of two people would be mixed into one participant's numbers
                raise SeriesError("the images belong to more than one participant", path=path,
                                  expected="one PatientID", found=f"{len(pids)}: {_few(pids)}")
            notes.append(f"images carry {len(pids)} different PatientIDs: {_few(pids)}")
        check_matrix(field, headers, path=str(path))
        if keep != "none":
            check_pixel_budget(grouped, pixels, src.limits, path=str(path))
        series = series_only if keep == "none" else with_pixels(grouped, loaded.store, pixels, src)
    return UkbZip(path, key, field, tuple(series), loaded.manifest, tuple(notes))


def scan_zip(path: str | os.PathLike[str], *, limits: ZipLimits | None = None) -> UkbZip:
    """Header-only :func:`read_zip` (no pixel is kept or decoded)."""
    return read_zip(path, pixels=False, limits=limits)


# -- plain DICOM files ------------------------------------------------------------------
def read_dicom_series(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    pixels: PixelSelector = True,
    limits: ZipLimits | None = None,
) -> tuple[Series, ...]:
    """Series from any DICOM collection: a zip, a folder (recursive) or a list of files.

    No field detection and no manifest: for scanner exports and tests. In a
    folder, hidden files (``.name``) are skipped; every other file must be DICOM.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if root.is_file() and not _is_dicom_file(root):  # a zip
            keep = "spec" if callable(pixels) else ("ref" if pixels else "none")
            with ZipSource(root, limits) as src:
                loaded = _load(src, keep)
                grouped, _ = group_series(loaded.headers, source=str(root), path=str(root))
                if keep == "none":
                    return tuple(s for s, _ in grouped)
                check_pixel_budget(grouped, pixels, src.limits, path=str(root))
                return tuple(with_pixels(grouped, loaded.store, pixels, src))
        if root.is_file():
            files = [root]
        else:
            files = sorted(
                f for f in root.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)
            )
        label = str(root)
    else:
        files = [Path(f) for f in source]
        label = "files"
    headers: list[ImageHeader] = []
    refs: dict[str, PixelRef | PixelSpec] = {}
    for f in files:
        hdr, ref = parse_image(f.read_bytes(), path=str(f), member=str(f))
        headers.append(hdr)
        if pixels is not False:
            refs[str(f)] = ref
    if not headers:
        raise NoDicomError("no DICOM files", path=label)
    grouped, _ = group_series(headers, source=label, path=label)
    if pixels is False:
        return tuple(s for s, _ in grouped)
    check_pixel_budget(grouped, pixels, limits or ZipLimits(), path=label)
    return tuple(with_pixels(grouped, refs, pixels))


def _is_dicom_file(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(132)
    return head[128:132] == b"DICM"
