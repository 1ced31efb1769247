"""DICOM header values: typed, checked, dated.

* The fast path without a pydicom Dataset is :mod:`ukbmri.io.fastheader`; a file it
  does not handle is read with :func:`pydicom.dcmread` and :func:`dataset_getter`.
* :class:`TagReader` / :func:`header_from` - typed values and the
  :class:`ImageHeader`, raising :class:`MissingTagError` that names the tag.
* :func:`parse_dicom_datetime` - DA + TM / DT strings to ``datetime``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydicom.tag import Tag

from ukbmri.errors import MissingTagError

__all__ = [
    "ImageHeader",
    "TagReader",
    "dataset_getter",
    "header_from",
    "parse_dicom_datetime",
    "tag_label",
]

#: where the acquisition time is read from, in order of preference (date keyword, time keyword)
_WHEN = (
    ("AcquisitionDate", "AcquisitionTime"),
    ("AcquisitionDateTime", None),
    ("SeriesDate", "SeriesTime"),
    ("ContentDate", "ContentTime"),
)


def dataset_getter(ds):
    """A ``keyword -> value`` getter over a pydicom Dataset with the same conventions (None when empty)."""

    def get(keyword: str):
        v = ds.get(keyword)
        if v is None or v == "":
            return None
        if isinstance(v, (list, tuple)) or hasattr(v, "__len__") and not isinstance(v, (str, bytes)):
            v = list(v)
            if not v or not any(str(x).strip() for x in v):
                return None
            return v[0] if len(v) == 1 else v
        return v

    return get


def tag_label(keyword: str) -> str:
    """``"EchoTime (0018,0081)"``."""
    t = Tag(keyword)
    return f"{keyword} ({t.group:04X},{t.element:04X})"


_DATE_RE = re.compile(r"^(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})$")
_TIME_RE = re.compile(r"^(\d{2}):?(\d{2})?:?(\d{2})?(?:[.,](\d{1,6})\d*)?$")
_DT_RE = re.compile(r"^(\d{8})(\d{2,6}(?:\.\d+)?)?(?:[+\-]\d{4})?$")


def parse_dicom_datetime(date: str | None, time: str | None = None) -> datetime | None:
    """DICOM DA + TM (or a DT string in ``date`` with ``time=None``) -> naive ``datetime``.

    Handles ``HHMMSS.ffffff``, missing fractional part, ``HHMM`` / ``HH``, the legacy
    ``HH:MM:SS`` form and DT timezone suffixes (dropped: UK Biobank times are local).
    Returns ``None`` when absent or unparseable.
    """
    if date is None:
        return None
    date = str(date).strip()
    if not date:
        return None
    if time is None and len(date) > 8:
        m = _DT_RE.match(date)
        if m is None:
            return None
        date, time = m.group(1), m.group(2)
    dm = _DATE_RE.match(date)
    if dm is None:
        return None
    hh = mm = ss = us = 0
    if time is not None and str(time).strip():
        tm = _TIME_RE.match(str(time).strip())
        if tm is None:
            return None
        hh = int(tm.group(1))
        mm = int(tm.group(2) or 0)
        ss = int(tm.group(3) or 0)
        frac = tm.group(4)
        us = int(frac.ljust(6, "0")) if frac else 0
        ss = min(ss, 59)  # leap second "60" is legal in DICOM
    try:
        return datetime(int(dm.group(1)), int(dm.group(2)), int(dm.group(3)), hh, mm, ss, us)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """Header fields of one image (one zip member)."""

    member: str
    series_uid: str
    series_number: int
    description: str
    image_type: tuple[str, ...]
    instance_number: int
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    echo_time_ms: float
    acquired: datetime | None
    slope: float
    intercept: float
    slice_thickness: float | None
    repetition_time_ms: float | None
    flip_angle_deg: float | None
    field_strength_t: float | None
    patient_id: str | None


Getter = Callable[[str], Any]


class TagReader:
    """Typed tag values from a ``keyword -> value`` getter, raising errors that name the member."""

    def __init__(self, get: Getter, path: str | None, member: str | None) -> None:
        self.get, self.path, self.member = get, path, member

    def _missing(self, kw: str) -> MissingTagError:
        return MissingTagError(f"missing or empty DICOM tag {tag_label(kw)}", path=self.path, member=self.member)

    def _bad(self, kw: str, expected: str, found: object) -> MissingTagError:
        return MissingTagError(
            f"bad value for DICOM tag {tag_label(kw)}",
            path=self.path,
            member=self.member,
            expected=expected,
            found=found,
        )

    def raw(self, kw: str, required: bool = True) -> Any:
        try:
            v = self.get(kw)
        except Exception as exc:  # a malformed value pydicom cannot convert
            raise self._bad(kw, "a readable value", repr(exc)) from None
        if v is None and required:
            raise self._missing(kw)
        return v

    def int_(self, kw: str, required: bool = True) -> int | None:
        v = self.raw(kw, required)
        if v is None:
            return None
        try:
            return int(v)
        except (TypeError, ValueError):
            try:
                f = float(v)
            except (TypeError, ValueError):
                f = math.nan
            if f.is_integer():
                return int(f)
            raise self._bad(kw, "an integer", repr(v)) from None

    def req_text(self, kw: str) -> str:
        v = self.text(kw)
        assert v is not None  # required: text raised otherwise
        return v

    def req_int(self, kw: str) -> int:
        v = self.int_(kw)
        assert v is not None  # required: int_ raised otherwise
        return v

    def floats(self, kw: str, n: int) -> tuple[float, ...]:
        v = self.raw(kw)
        vals = [v] if isinstance(v, (int, float, str)) else list(v)
        try:
            out = tuple(float(x) for x in vals)
        except (TypeError, ValueError):
            raise self._bad(kw, f"{n} numbers", repr(v)) from None
        if len(out) != n or not all(math.isfinite(x) for x in out):
            raise self._bad(kw, f"{n} finite numbers", "\\".join(str(x) for x in vals))
        return out

    def opt_float(self, kw: str) -> float | None:
        v = self.raw(kw, required=False)
        if v is None:
            return None
        try:
            if not isinstance(v, (int, float, str)):
                v = v[0]
            return float(v)
        except (TypeError, ValueError, IndexError):
            raise self._bad(kw, "a number", repr(v)) from None

    def text(self, kw: str, required: bool = True) -> str | None:
        v = self.raw(kw, required=required)
        if v is None:
            return None
        if isinstance(v, list):
            v = "\\".join(str(x) for x in v)
        text = str(v).strip()
        if not text and required:
            raise self._missing(kw)
        return text or None

    def acquired(self) -> datetime | None:
        return first_acquired(lambda kw: self.text(kw, required=False))


def first_acquired(text: Callable[[str], str | None]) -> datetime | None:
    """The acquisition time from the first usable pair of :data:`_WHEN` (``text``: keyword -> value or None)."""
    for d_kw, t_kw in _WHEN:
        d = text(d_kw)
        t = text(t_kw) if t_kw else None
        if d is None or (t_kw is not None and t is None):
            continue
        dt = parse_dicom_datetime(d, t)
        if dt is not None:
            return dt
    return None


def header_from(r: TagReader, member: str | None) -> ImageHeader:
    series_uid = r.req_text("SeriesInstanceUID")
    series_number = r.req_int("SeriesNumber")
    instance_number = r.req_int("InstanceNumber")
    position = r.floats("ImagePositionPatient", 3)
    orientation = r.floats("ImageOrientationPatient", 6)
    pixel_spacing = r.floats("PixelSpacing", 2)
    rows = r.req_int("Rows")
    columns = r.req_int("Columns")
    if rows <= 0 or columns <= 0:
        raise r._bad("Rows" if rows <= 0 else "Columns", "a positive size", f"{rows}x{columns}")
    it = r.raw("ImageType")
    values = [it] if isinstance(it, str) else list(it)
    image_type = tuple(str(v).strip() for v in values)
    description = r.req_text("SeriesDescription")
    te = r.opt_float("EchoTime")
    slope = r.opt_float("RescaleSlope")
    intercept = r.opt_float("RescaleIntercept")
    return ImageHeader(
        member=member or "",
        series_uid=series_uid,
        series_number=series_number,
        description=description,
        image_type=image_type,
        instance_number=instance_number,
        position=position,
        orientation=orientation,
        pixel_spacing=pixel_spacing,
        rows=rows,
        columns=columns,
        echo_time_ms=math.nan if te is None else te,
        acquired=r.acquired(),
        slope=1.0 if slope is None else slope,
        intercept=0.0 if intercept is None else intercept,
        slice_thickness=r.opt_float("SliceThickness"),
        repetition_time_ms=r.opt_float("RepetitionTime"),
        flip_angle_deg=r.opt_float("FlipAngle"),
        field_strength_t=r.opt_float("MagneticFieldStrength"),
        patient_id=r.text("PatientID", required=False),
    )
