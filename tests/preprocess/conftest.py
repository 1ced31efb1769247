"""Builders for field-20201 test inputs: Series and Station objects made directly (no zips).

Geometry follows UK Biobank: axial stacks (ImageOrientationPatient 1\\0\\0\\0\\1\\0),
pixel spacing 2.232142925 mm, stations overlapping in z, LPS millimetres.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ukbmri.types import Series

PS = 2.232142925
HERE = Path(__file__).resolve().parent


@dataclass
class StationSpec:
    rows: int
    cols: int
    n: int
    dz: float
    z_top: float
    x0: float = -250.0
    y0: float | None = None  # None: centred on y = 0 like UK Biobank FOVs


def make_series(
    description: str,
    number: int,
    positions: np.ndarray,
    pixels: np.ndarray,
    *,
    acquired: datetime | None = datetime(2019, 6, 3, 10, 0, 0),
    pixel_spacing: tuple[float, float] = (PS, PS),
    source: str = "1000001_20201_2_0.zip",
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    instance_order: np.ndarray | None = None,
) -> Series:
    """A Series with slices in the given order (positions[i] belongs to pixels[i])."""
    n = len(positions)
    if instance_order is not None:
        positions = positions[instance_order]
        pixels = pixels[instance_order]
    return Series(
        source=source,
        series_number=number,
        series_uid=f"1.2.3.{number}",
        description=description,
        image_kind="magnitude",
        image_type=("ORIGINAL", "PRIMARY", "M", "DIXON", "W" if description.endswith("W") else "F"),
        acquired=acquired,
        members=tuple(f"{number}.{i}.dcm" for i in range(n)),
        instance_numbers=np.arange(1, n + 1),
        positions=np.asarray(positions, dtype=float),
        orientation=np.asarray(orientation, dtype=float),
        pixel_spacing=pixel_spacing,
        shape=pixels.shape[1:],
        echo_times_ms=np.full(n, np.nan),
        pixels=np.asarray(pixels, dtype=np.float32),
    )


def station_positions(spec: StationSpec) -> np.ndarray:
    """(n, 3) ImagePositionPatient of a station, top slice first."""
    y0 = -spec.rows / 2 * PS if spec.y0 is None else spec.y0
    z = spec.z_top - spec.dz * np.arange(spec.n)
    return np.column_stack([np.full(spec.n, spec.x0), np.full(spec.n, y0), z])


def sample_phantom(fn, spec: StationSpec, positions: np.ndarray) -> np.ndarray:
    """fn(x, y, z) evaluated at every pixel centre of a station -> (n, rows, cols) float32."""
    x = positions[0, 0] + PS * np.arange(spec.cols)
    y = positions[0, 1] + PS * np.arange(spec.rows)
    z = positions[:, 2]
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return np.asarray(fn(xx, yy, zz), dtype=np.float32)


def wf_series(spec: StationSpec, water_fn, fat_fn, number: int, *, bh: bool = False, acquired=None, **kw):
    """The (W, F) series pair of one station; series numbers ``number`` (F) and ``number + 1`` (W)."""
    pos = station_positions(spec)
    desc = "Dixon_BH_17s_" if bh else "Dixon_noBH_"
    acq = acquired if acquired is not None else datetime(2019, 6, 3, 10, 0, 0) + timedelta(minutes=number)
    f = make_series(desc + "F", number, pos, sample_phantom(fat_fn, spec, pos), acquired=acq, **kw)
    w = make_series(desc + "W", number + 1, pos, sample_phantom(water_fn, spec, pos), acquired=acq, **kw)
    return w, f


def ukb_specs(scale: float = 1.0, z_top: float = 100.0) -> list[StationSpec]:
    """Six stations with UK Biobank matrix sizes / spacings, overlapping by ~30-40 mm.

    ``scale`` < 1 shrinks rows, columns and slice counts (for fast tests).
    """
    table = [(168, 64, 3.0), (174, 44, 4.5), (174, 44, 4.5), (174, 44, 4.5), (162, 72, 3.5), (156, 64, 4.0)]
    overlaps = [33.0, 36.5, 38.0, 34.0, 40.0]
    cols = max(8, int(round(224 * scale)))
    specs = []
    top = z_top
    for i, (rows, n, dz) in enumerate(table):
        r = max(8, int(round(rows * scale)))
        r += r % 2  # even, so centred FOVs stay on the pixel grid of each other
        nn = max(6, int(round(n * scale)))
        specs.append(StationSpec(rows=r, cols=cols, n=nn, dz=dz, z_top=top))
        bottom = top - (nn - 1) * dz
        if i < len(overlaps):
            top = bottom + overlaps[i] * max(scale, 0.35)
    return specs


def body_phantom():
    """(water_fn, fat_fn): an elliptic trunk with a subcutaneous fat ring, a fatty 'liver' and a bed."""

    def parts(x, y, z):
        ex = (x / 180.0) ** 2 + ((y - 10.0) / 110.0) ** 2
        body = ex < 1.0
        inner = ex < 0.72
        liver = ((x + 60) / 70.0) ** 2 + ((y - 10) / 60.0) ** 2 + ((z + 150) / 80.0) ** 2 < 1.0
        bed = (y > 150.0) & (y < 175.0)
        return body, inner, liver, bed

    def water(x, y, z):
        body, inner, liver, bed = parts(x, y, z)
        w = 20.0 + 5.0 * np.cos(x / 37.0) + 3.0 * np.sin(z / 53.0)
        w = np.where(body, 80.0 + 0.05 * (z - 100.0) * 0.1, w)
        w = np.where(inner, 420.0 + 30.0 * np.sin(x / 23.0 + z / 41.0), w)
        w = np.where(liver, 380.0, w)
        w = np.where(bed, 150.0, w)
        return w

    def fat(x, y, z):
        body, inner, liver, bed = parts(x, y, z)
        f = 15.0 + 4.0 * np.sin(y / 29.0) + 2.0 * np.cos(z / 61.0)
        f = np.where(body, 600.0 + 20.0 * np.cos(z / 77.0), f)
        f = np.where(inner, 60.0 + 10.0 * np.cos(y / 19.0), f)
        f = np.where(liver, 70.0, f)
        f = np.where(bed, 40.0, f)
        return f

    return water, fat


def ukb_series(specs, water_fn, fat_fn, *, first_number: int = 1, **kw) -> list[Series]:
    out = []
    for i, spec in enumerate(specs):
        w, f = wf_series(spec, water_fn, fat_fn, first_number + 4 * i, bh=1 <= i <= 3, **kw)
        out += [f, w]
    return out


def _ds(v: float) -> str:
    return f"{v:.10g}"


def write_dixon_zip(path: Path, series_list: list[Series]) -> Path:
    """A minimal UK-Biobank-like zip: one explicit-VR-little-endian MR DICOM per slice, 12-bit uint16.

    Pixels are rounded to integers (the caller should compare against rounded inputs).
    """
    import io
    import zipfile

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    study = "1.2.826.0.1.3680043.8.498.1"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for s in series_list:
            acq = s.acquired or datetime(2019, 6, 3, 10, 0, 0)
            for i in range(s.n_images):
                uid = f"{study}.{s.series_number}.{i + 1}"
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID = MRImageStorage
                meta.MediaStorageSOPInstanceUID = uid
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds = Dataset()
                ds.file_meta = meta
                ds.SOPClassUID = MRImageStorage
                ds.SOPInstanceUID = uid
                ds.StudyInstanceUID = study
                ds.SeriesInstanceUID = f"{study}.{s.series_number}"
                ds.Modality = "MR"
                ds.Manufacturer = "SIEMENS"
                ds.PatientID = "pseudo"
                ds.SeriesNumber = s.series_number
                ds.SeriesDescription = s.description
                ds.InstanceNumber = int(s.instance_numbers[i])
                ds.ImageType = list(s.image_type)
                ds.AcquisitionDate = acq.strftime("%Y%m%d")
                ds.AcquisitionTime = acq.strftime("%H%M%S.%f")
                ds.SeriesDate = ds.AcquisitionDate
                ds.SeriesTime = ds.AcquisitionTime
                ds.ImagePositionPatient = [_ds(v) for v in s.positions[i]]
                ds.ImageOrientationPatient = [_ds(v) for v in s.orientation]
                ds.PixelSpacing = [_ds(v) for v in s.pixel_spacing]
                ds.SliceThickness = "3"
                ds.MagneticFieldStrength = "1.5"
                ds.Rows, ds.Columns = s.shape
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = "MONOCHROME2"
                ds.BitsAllocated = 16
                ds.BitsStored = 12
                ds.HighBit = 11
                ds.PixelRepresentation = 0
                ds.PixelData = np.clip(np.rint(s.pixels[i]), 0, 4095).astype("<u2").tobytes()
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                zf.writestr(f"{s.series_number}.{i + 1}.dcm", buf.getvalue())
    return path


@pytest.fixture(scope="session")
def reference_impl():
    """tests/preprocess/reference_impl.py loaded as a module (importlib import mode has no sibling imports)."""
    spec = importlib.util.spec_from_file_location("ukbmri_preprocess_reference_impl", HERE / "reference_impl.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need their module registered
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def builders():
    """The builder functions of this conftest, for tests (importlib mode has no conftest imports)."""

    class B:
        PS = PS
        StationSpec = StationSpec
        make_series = staticmethod(make_series)
        station_positions = staticmethod(station_positions)
        sample_phantom = staticmethod(sample_phantom)
        wf_series = staticmethod(wf_series)
        ukb_specs = staticmethod(ukb_specs)
        ukb_series = staticmethod(ukb_series)
        body_phantom = staticmethod(body_phantom)
        write_dixon_zip = staticmethod(write_dixon_zip)

    return B
