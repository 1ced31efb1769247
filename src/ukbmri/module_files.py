"""The text files of an inference module folder (MIMIR's layout), read without torch.

``metadata.txt`` (targets), ``standardization_parameters.txt`` and
``calibration_factors.txt``: :mod:`ukbmri.modules` loads whole modules (with torch);
this module is what the engine needs to name a module's columns and fingerprint it
without importing torch (a resumed run with nothing to do stays fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ukbmri.errors import ModuleError

__all__ = ["Target", "read_metadata", "read_standardization", "read_calibration", "SNAPSHOT", "METADATA",
           "STANDARDIZATION", "CALIBRATION", "MODULE_JSON", "INPUT_FORMAT"]

SNAPSHOT = "snapshot.pth.tar"
METADATA = "metadata.txt"
STANDARDIZATION = "standardization_parameters.txt"
CALIBRATION = "calibration_factors.txt"
MODULE_JSON = "module.json"
#: the only input format so far: MIMIR's (3, 256, 256) uint8 image, fed unscaled
INPUT_FORMAT = "mimir2d-3x256x256-uint8"

_METADATA_HEADER = "Name,Field,Unit,Divisor"
_STANDARDIZATION_HEADER = "mean,stdev"
_CALIBRATION_HEADER = "calibration_factor"


@dataclass(frozen=True)
class Target:
    """One regression target as listed in ``metadata.txt``.

    ``unit`` is kept verbatim (e.g. ``"L"``, ``"(male = 1)"``, ``"L/m2"``):
    it goes into the prediction column names. Predictions are divided by
    ``divisor`` (variances by ``divisor**2``).
    """

    name: str
    field: str
    unit: str
    divisor: float = 1.0


def _data_lines(folder: Path, member: str) -> list[str]:
    """Lines after the header, line endings stripped, blank lines skipped."""
    path = folder / member
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModuleError("not a UTF-8 text file", path=folder, member=member) from exc
    lines = text.splitlines()
    if not lines:
        raise ModuleError("empty file (a header line is expected)", path=folder, member=member)
    return [ln for ln in lines[1:] if ln.strip()]


def _number(text: str, folder: Path, member: str, line: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ModuleError(
            f"line {line}: {what} is not a number", path=folder, member=member, found=repr(text)
        ) from None
    if not math.isfinite(value):
        raise ModuleError(f"line {line}: {what} is not finite", path=folder, member=member, found=text)
    return value


def _rows(folder: Path, member: str, expected: str):
    """``(line number, fields)`` of each data line with at least as many fields as ``expected``."""
    n = len(expected.split(","))
    for i, ln in enumerate(_data_lines(folder, member), start=2):
        parts = ln.split(",")
        if len(parts) < n:
            raise ModuleError(f"line {i}: too few fields", path=folder, member=member, expected=expected,
                              found=repr(ln))
        yield i, parts


def read_metadata(folder: Path) -> tuple[Target, ...]:
    targets = []
    for i, parts in _rows(folder, METADATA, _METADATA_HEADER):
        divisor = _number(parts[3], folder, METADATA, i, "Divisor")
        if divisor == 0:
            raise ModuleError(f"line {i}: Divisor is zero", path=folder, member=METADATA)
        targets.append(Target(parts[0], parts[1], parts[2], divisor))
    return tuple(targets)


def read_standardization(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    means, sds = [], []
    for i, parts in _rows(folder, STANDARDIZATION, _STANDARDIZATION_HEADER):
        means.append(_number(parts[0], folder, STANDARDIZATION, i, "mean"))
        sd = _number(parts[1], folder, STANDARDIZATION, i, "stdev")
        if sd <= 0:
            raise ModuleError(
                f"line {i}: stdev must be positive", path=folder, member=STANDARDIZATION, found=sd
            )
        sds.append(sd)
    return np.asarray(means, dtype=np.float64), np.asarray(sds, dtype=np.float64)


def read_calibration(folder: Path) -> np.ndarray:
    factors = []
    for i, ln in enumerate(_data_lines(folder, CALIBRATION), start=2):
        c = _number(ln.split(",")[0], folder, CALIBRATION, i, "calibration factor")
        if c <= 0:
            raise ModuleError(
                f"line {i}: calibration factor must be positive", path=folder, member=CALIBRATION, found=c
            )
        factors.append(c)
    return np.asarray(factors, dtype=np.float64)
