"""ukbmri.io: reading UK Biobank DICOM zips in memory, plus NIfTI and atomic writes.

>>> from ukbmri.io import read_zip, scan_zip
>>> z = scan_zip("1234567_20201_2_0.zip")          # doctest: +SKIP
>>> z.field, [s.description for s in z.find(suffix="W")]   # doctest: +SKIP

Names load lazily (PEP 562), so ``import ukbmri.io.atomic`` does not import pydicom.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "read_zip": "reader",
    "scan_zip": "reader",
    "read_dicom_series": "reader",
    "UkbZip": "reader",
    "ZipLimits": "zipsource",
    "ZipSource": "zipsource",
    "Manifest": "manifest",
    "parse_manifest": "manifest",
    "normalise_description": "fields",
    "dixon_kind": "fields",
    "dixon_stations": "fields",
    "detect_field": "fields",
    "field_problems": "fields",
    "phase_to_radians": "dicom",
    "parse_dicom_datetime": "dicom",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from ukbmri.io.dicom import parse_dicom_datetime, phase_to_radians
    from ukbmri.io.fields import detect_field, dixon_kind, dixon_stations, field_problems, normalise_description
    from ukbmri.io.manifest import Manifest, parse_manifest
    from ukbmri.io.reader import UkbZip, read_dicom_series, read_zip, scan_zip
    from ukbmri.io.zipsource import ZipLimits, ZipSource


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ukbmri.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ukbmri.io.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
