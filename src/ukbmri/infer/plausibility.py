"""Plausibility of network outputs: the range a module was trained on, physical bounds.

``check_predictions`` flags predictions outside the training population (the module's
standardisation), physically impossible values, intervals wider than the training
population's own range and non-finite numbers (all non-fatal, ``pred_...`` flags in
``docs/qc_flags.md``). ``physical_bounds`` / ``clip_to_physical`` keep means and interval
ends inside each target's physical range. The input checks are :mod:`ukbmri.preprocess.qc`.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ukbmri.preprocess.qc import TRAINING_RANGE_K, QcFinding, _finding

__all__ = ["check_predictions", "physical_bounds", "clip_to_physical"]


# -- predictions ---------------------------------------------------------------------------
_NONNEG_UNITS = {
    "l", "ml", "cl", "dl", "kg", "g", "mg", "cm", "mm", "m", "l/m2", "kg/l", "l/l", "kg/m2", "years", "year", "y",
    "bpm", "cm2", "mm2", "cm3", "mm3", "cm^2", "cm^3", "l/m^2", "kg/m^2", "1/s", "s", "ms", "hz", "/s",
}
_PERCENT_UNITS = {"%", "percent", "pct"}


def physical_bounds(name: str, unit: str) -> tuple[float, float]:
    """The physically possible range of a target in its unit (``(-inf, inf)`` when unknown).

    * sex coded ``(male = 1)`` (or a target named sex): ``[0, 1]`` (a probability);
    * percent units (fat fractions, tissue fat percentages, PDFF): ``[0, 100]``;
    * volumes, masses, lengths, areas, ratios of such, ages, rates, times: ``[0, inf)``.
    """
    u = unit.strip().strip("()").strip().lower().replace(" ", "")
    n = name.strip().lower()
    if n == "sex" or "male=1" in u or "female=1" in u:
        return 0.0, 1.0
    if u in _PERCENT_UNITS:
        return 0.0, 100.0
    if u in _NONNEG_UNITS:
        return 0.0, math.inf
    if re.search(r"(fraction|pdff|fat_?percent)", n) and u in ("", "1", "ratio"):
        return 0.0, 1.0
    return -math.inf, math.inf


def clip_to_physical(
    name: str, unit: str, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move predictions into the physical range of the target.

    The interval ends are clipped to :func:`physical_bounds`: the true value lies
    in that range, so clipping removes only impossible values and never lowers
    coverage. The mean is clipped too: projecting onto the range never moves it
    further from the true value. Call :func:`check_predictions` on the raw values
    first, so that the row keeps the ``pred_physically_impossible`` flag.
    NaN stays NaN.
    """
    a, b = physical_bounds(name, unit)
    mean, lo, hi = (np.asarray(x, dtype=np.float64) for x in (mean, lo, hi))
    return np.clip(mean, a, b), np.clip(lo, a, b), np.clip(hi, a, b)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def check_predictions(module, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[list[QcFinding]]:
    """Per participant, the flags of a module's raw (unclipped) ``(N, T)`` predictions.

    ``module`` needs ``targets`` (``name``, ``unit``, ``divisor``), ``mean`` and
    ``sd`` (its standardisation). A prediction further than
    :data:`TRAINING_RANGE_K` training SDs from the training mean is outside the
    range the module was trained on; one outside :func:`physical_bounds` is
    impossible; an interval wider than the population's own 95 % range
    (``2 x 1.96 SD``) carries no information. All are flags, none fatal.
    """
    mean, lo, hi = (np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in (mean, lo, hi))
    targets = list(module.targets)
    t = len(targets)
    if mean.shape[1:] != (t,) or lo.shape != mean.shape or hi.shape != mean.shape:
        raise ValueError(f"expected (N, {t}) arrays, got {mean.shape}, {lo.shape}, {hi.shape}")
    div = np.array([float(getattr(x, "divisor", 1.0)) for x in targets])
    m0 = np.asarray(module.mean, dtype=np.float64) / div
    sd0 = np.asarray(module.sd, dtype=np.float64) / np.abs(div)
    bounds = [physical_bounds(x.name, x.unit) for x in targets]
    out: list[list[QcFinding]] = []
    for i in range(mean.shape[0]):
        row: list[QcFinding] = []
        for j, tg in enumerate(targets):
            mu, a, b = mean[i, j], lo[i, j], hi[i, j]
            unit = tg.unit
            if not (math.isfinite(mu) and math.isfinite(a) and math.isfinite(b)):
                row.append(_finding("pred_nonfinite", f"{tg.name}: mean {mu}, interval {a}..{b} {unit}"))
                continue
            r0, r1 = m0[j] - TRAINING_RANGE_K * sd0[j], m0[j] + TRAINING_RANGE_K * sd0[j]
            if not r0 <= mu <= r1:
                row.append(_finding(
                    "pred_outside_training_range",
                    f"{tg.name}: {_fmt(mu)} {unit} outside the training range {_fmt(r0)}..{_fmt(r1)} {unit} "
                    f"(mean {_fmt(m0[j])} +- {TRAINING_RANGE_K:g} x SD {_fmt(sd0[j])})",
                ))
            p0, p1 = bounds[j]
            if not p0 <= mu <= p1 or a > p1 or b < p0:
                row.append(_finding(
                    "pred_physically_impossible",
                    f"{tg.name}: {_fmt(mu)} {unit} (interval {_fmt(a)}..{_fmt(b)}) outside the physical range "
                    f"{_fmt(p0)}..{_fmt(p1)} {unit}; reported clipped",
                ))
            if b - a > 2 * 1.959963984540054 * sd0[j]:
                row.append(_finding(
                    "pred_interval_uninformative",
                    f"{tg.name}: interval width {_fmt(b - a)} {unit} exceeds the training population's 95 % range "
                    f"{_fmt(2 * 1.96 * sd0[j])} {unit}",
                ))
        out.append(row)
    return out
