"""Tiny crafted DICOM images and UK-Biobank-style zips for the io tests.

Loaded by tests/io/conftest.py (fixture ``factory``) because test folders are
not importable packages in pytest's importlib mode.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage, generate_uid

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
ROWS, COLS = 8, 8


def series_uid(number: int, salt: str = "") -> str:
    return generate_uid(entropy_srcs=[f"series-{number}-{salt}"])


def pattern_pixels(seed: int, rows: int = ROWS, cols: int = COLS, hi: int = 4095) -> np.ndarray:
    """Deterministic uint16 image with distinct values (depends on ``seed``)."""
    a = (np.arange(rows * cols, dtype=np.int64).reshape(rows, cols) * 37 + seed * 101) % (hi + 1)
    return a.astype(np.uint16)


def make_image(
    *,
    series_number: int = 1,
    description: str = "Dixon_noBH_W",
    instance: int = 1,
    uid: str | None = None,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    position: Sequence[float] = (-10.0, -20.0, 0.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    spacing: Sequence[float] = (2.0, 2.0),
    pixels: np.ndarray | None = None,
    echo_time: float | None = 2.38,
    date: str | None = "20190603",
    time: str | None = "101530.250000",
    slope: float | None = None,
    intercept: float | None = None,
    patient_id: str = "PSEUDO1",
    omit: Iterable[str] = (),
    implicit: bool = False,
    bits_stored: int = 12,
    extra: dict | None = None,
) -> bytes:
    """One MR image as DICOM Part 10 bytes (uint16 MONOCHROME2, 12 bits stored)."""
    if pixels is None:
        pixels = pattern_pixels(series_number * 100 + instance)
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = uid or series_uid(series_number)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.ImageType = list(image_type)
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.PatientID = patient_id
    ds.MagneticFieldStrength = 1.5
    ds.RepetitionTime = 6.69
    ds.FlipAngle = 10
    ds.SliceThickness = 3.0
    if date is not None:
        ds.AcquisitionDate = date
        ds.SeriesDate = date
    if time is not None:
        ds.AcquisitionTime = time
        ds.SeriesTime = time
    if echo_time is not None:
        ds.EchoTime = echo_time
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    for kw in omit:
        delattr(ds, kw)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


def write_zip(path: Path, members: Iterable[tuple[str, bytes]], *, stored: bool = False) -> Path:
    comp = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=comp) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2019, 6, 3, 10, 15, 30)), data, compress_type=comp)
    return path


def manifest_bytes(
    rows: Sequence[tuple[str, str]],
    *,
    header: str = "filename,patientid,date,series discription,seriesid",
    quote_date: bool = True,
    crlf: bool = False,
    trailing_blank: int = 0,
    bom: bool = False,
) -> bytes:
    """A manifest with ``(filename, description)`` rows, dated ``Jun 3, 2019``."""
    date = '"Jun 3, 2019"' if quote_date else "Jun 3, 2019"
    lines = [header] + [f"{fn},PSEUDO1,{date},{desc},1.2.3.{i}" for i, (fn, desc) in enumerate(rows)]
    lines += [""] * trailing_blank
    nl = "\r\n" if crlf else "\n"
    text = nl.join(lines) + nl
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


# -- mini protocols ------------------------------------------------------------------
DIXON_KINDS = ("in", "opp", "F", "W")


def dixon_members(
    *,
    stations: Sequence[int] = (1, 2, 3, 4, 5, 6),
    slices: int = 3,
    duplicate_station: int | None = None,
    wf_mismatch: int | None = None,
) -> list[tuple[str, bytes]]:
    """Mini 20201: per station 4 series (in/opp/F/W) of ``slices`` 8x8 images.

    Station s covers z from -12(s-1) down in 5 mm steps (3 slices -> 10 mm, so
    neighbours do not overlap; real ones overlap a little).
    """
    out: list[tuple[str, bytes]] = []
    plan = [(st, 0) for st in stations] + ([(duplicate_station, 1)] if duplicate_station else [])
    for st, rescan in plan:
        bh = "noBH" if st in (1, 5, 6) else "BH_17s"
        for k_i, kind in enumerate(DIXON_KINDS):
            number = 100 * rescan + 4 * (st - 1) + k_i + 1
            rows = ROWS + 1 if (wf_mismatch == st and kind == "F") else ROWS
            for j in range(slices):
                z = -12.0 * (st - 1) - 5.0 * j
                out.append(
                    (
                        f"{number:03d}{j:03d}.dcm",
                        make_image(
                            series_number=number,
                            description=f"Dixon_{bh}_{kind}",
                            instance=j + 1,
                            image_type=("DERIVED", "PRIMARY", "DIXON", {"in": "IN_PHASE", "opp": "OPP_PHASE", "F": "FAT", "W": "WATER"}[kind]),
                            position=(-10.0, -20.0, z),
                            pixels=pattern_pixels(number * 10 + j, rows=rows),
                            echo_time={"in": 4.77, "opp": 2.39}.get(kind, 2.39),
                            time="11%02d00.5" % (10 + st + 30 * rescan),
                        ),
                    )
                )
    return out


def gre_members(*, echoes: int = 10, phase: bool = True) -> list[tuple[str, bytes]]:
    """Mini 20203: one slice, magnitude and phase sharing series number 7 and its UID."""
    out = []
    uid = series_uid(7, "gre")
    for e in range(echoes):
        te = 2.38 * (e + 1)
        out.append(
            (
                f"gre_m{e:02d}.dcm",
                make_image(series_number=7, uid=uid, description="gre_mullti_echo_10_TE_liver", instance=e + 1,
                           image_type=("ORIGINAL", "PRIMARY", "M", "ND"), echo_time=te, pixels=pattern_pixels(e)),
            )
        )
        if phase:
            out.append(
                (
                    f"gre_p{e:02d}.dcm",
                    make_image(series_number=7, uid=uid, description="gre_mullti_echo_10_TE_liver", instance=e + 1,
                               image_type=("ORIGINAL", "PRIMARY", "P", "ND"), echo_time=te,
                               pixels=pattern_pixels(50 + e), slope=2.0, intercept=-4096.0),
                )
            )
    return out


def ideal_members(*, dynamics: int = 6, echoes: int = 6, first_series: int = 11) -> list[tuple[str, bytes]]:
    """Mini 20254: per dynamic d a magnitude series N0+2d and a phase series N0+2d+1."""
    out = []
    for d in range(dynamics):
        for kind, off, it in (("m", 0, "M"), ("p", 1, "P")):
            number = first_series + 2 * d + off
            for e in range(echoes):
                out.append(
                    (
                        f"ideal_{d}{kind}{e}.dcm",
                        make_image(series_number=number, description="LMS IDEAL OPTIMISED LOW FLIP 6DYN",
                                   instance=e + 1, image_type=("ORIGINAL", "PRIMARY", it, "ND"),
                                   echo_time=1.2 + 2.0 * e, pixels=pattern_pixels(number * 10 + e),
                                   slope=2.0 if it == "P" else None, intercept=-4096.0 if it == "P" else None),
                    )
                )
    return out


def with_manifest(members: list[tuple[str, bytes]], descriptions: dict[str, str] | None = None, **kw) -> list[tuple[str, bytes]]:
    """``members`` plus a manifest.csv listing them (descriptions read from the bytes unless given)."""
    import pydicom

    rows = []
    for name, data in members:
        desc = (descriptions or {}).get(name)
        if desc is None:
            desc = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SeriesDescription
        rows.append((name, desc))
    return [*members, ("manifest.csv", manifest_bytes(rows, **kw))]
