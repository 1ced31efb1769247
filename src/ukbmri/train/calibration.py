"""Variance calibration factors from out-of-fold predictions.

The rule
--------
A module's predicted variance ``var`` for target ``t`` is multiplied by a
factor ``c_t`` so that normal intervals built from ``c_t * var`` hold the
nominal fraction of references. With ``z = |y - mu| / sqrt(var)`` the
calibrated coverage at level ``p`` is

    cov_c(p) = mean(z <= sqrt(c) * q_p),   q_p = Phi^-1(0.5 + p / 2),

a non-decreasing step function of ``c`` (larger variance, more inside).

* ``level=None`` (the default, used for modules): ``c`` is the smallest
  factor (to a relative tolerance) at which the *signed* calibration error
  ``S(c) = mean_p(cov_c(p) - p)`` over the AUCE grid ``p = 0.10 .. 1.00`` is
  >= 0, i.e. where the coverage curve stops lying below the diagonal on
  balance. For Gaussian errors whose SD is ``k`` times the predicted SD this
  is ``c = k^2``, which is also where AUCE is smallest.
* ``level=p``: the smallest ``c`` with ``cov_c(p) >= p``.

Why it converges: ``S`` (or ``cov_c(p) - p``) is monotone in ``c``. The search
runs in ``u = log sqrt(c)`` on a bracket derived from the data: below
``u_lo = log(min positive z / q_max) - log 2`` every positive ``z`` lies
outside every interval with ``p < 1`` and above ``u_hi = log(max z / q_min) +
log 2`` every ``z`` lies inside every interval, so the objective is constant
outside ``[u_lo, u_hi]`` and the crossing (if any) lies inside. Bisection
halves the bracket each step and stops when its width is below ``rtol / 2``
(a relative tolerance ``rtol`` on ``c``); the width is at most ~1500 (the
float64 range), so it ends after at most ~32 steps, far below ``max_iter``.
The first midpoint is ``c0 = mean(z^2)``, the maximum-likelihood variance
ratio, which is usually already within a few percent.

Degenerate inputs: if the objective is already >= 0 at ``u_lo`` (e.g. most
errors are exactly 0), the answer is the boundary ``exp(2 u_lo)`` (any
smaller factor is equally good by the criterion); if every error is exactly
0 there is nothing to calibrate against and the factor is 1 (with a warning).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from ukbmri.train.metrics import AUCE_LEVELS, z_scores

__all__ = ["CalibrationSearch", "calibration_search", "calibration_factor", "calibration_factors"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationSearch:
    """Outcome of one calibration search."""

    factor: float  #: multiply the predicted variance by this
    start: float  #: mean(z^2), the first midpoint
    iterations: int  #: bisection steps taken
    converged: bool  #: bracket narrower than the tolerance (False only for the all-zero-error case)
    objective: float  #: signed objective at ``factor`` (>= 0 by construction)
    n: int  #: valid (y, mean, var) triples used


def _objective(zs_sorted: np.ndarray, q: np.ndarray, levels: np.ndarray, u: float) -> float:
    """Signed miscalibration at sqrt(c) = exp(u): mean over levels of coverage - level."""
    inside = np.searchsorted(zs_sorted, math.exp(u) * q, side="right") / zs_sorted.size
    return float(np.mean(inside - levels))


def calibration_search(
    y,
    mean,
    var,
    *,
    level: float | None = None,
    levels=AUCE_LEVELS,
    rtol: float = 1e-6,
    max_iter: int = 200,
) -> CalibrationSearch:
    """Find the variance factor by bisection (see the module docstring for the rule).

    Parameters
    ----------
    y, mean, var:
        1-D reference values, predicted means and predicted variances;
        triples with a non-finite entry or ``var <= 0`` are ignored.
    level:
        ``None``: balance the whole coverage curve over ``levels``; a number in
        ``(0, 1)``: match the coverage at that nominal level.
    rtol:
        Relative tolerance on the factor.
    max_iter:
        Hard cap on bisection steps (never reached for ``rtol >= 1e-12``).

    Raises
    ------
    ValueError
        No valid triple, or ``level`` outside ``(0, 1)``.
    """
    if level is not None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        levels = np.array([float(level)])
    else:
        levels = np.asarray(levels, dtype=np.float64)
    z = z_scores(y, mean, var)
    z = z[np.isfinite(z)]  # an underflowed variance gives z = inf: nothing to scale
    if z.size == 0:
        raise ValueError("no valid (reference, mean, variance) triple to calibrate on")
    zs = np.sort(z)
    q = ndtri(0.5 + levels / 2.0)  # +inf at level 1
    zpos = zs[zs > 0]
    if zpos.size == 0:
        log.warning("all %d errors are exactly 0: calibration factor left at 1", z.size)
        return CalibrationSearch(1.0, 0.0, 0, False, _objective(zs, q, levels, 0.0), int(z.size))

    finite_q = q[np.isfinite(q) & (q > 0)]
    if finite_q.size == 0:
        raise ValueError(f"need a nominal level strictly between 0 and 1, got {levels}")
    q_min, q_max = float(finite_q.min()), float(finite_q.max())
    # rms of z without overflow; c0 = rms^2
    zmax = float(zpos[-1])
    log_rms = math.log(zmax) + 0.5 * math.log(float(np.mean((zs / zmax) ** 2)))
    start = math.exp(min(2.0 * log_rms, 709.0))

    lo = math.log(float(zpos[0]) / q_max) - math.log(2.0)
    hi = math.log(zmax / q_min) + math.log(2.0)
    f = lambda u: _objective(zs, q, levels, u)  # noqa: E731
    if f(lo) >= 0.0:
        factor = math.exp(2.0 * lo)
        log.warning("calibration objective already met at the lower bracket end: factor %.3g", factor)
        return CalibrationSearch(factor, start, 0, True, f(lo), int(z.size))

    tol = 0.5 * rtol
    it = 0
    mid = min(max(log_rms, lo), hi)  # first midpoint: c0 = mean(z^2)
    while hi - lo > tol and it < max_iter:
        if f(mid) >= 0.0:
            hi = mid
        else:
            lo = mid
        it += 1
        mid = 0.5 * (lo + hi)
    factor = math.exp(min(2.0 * hi, 709.0))
    return CalibrationSearch(factor, start, it, hi - lo <= tol, f(hi), int(z.size))


def calibration_factor(y, mean, var, *, level: float | None = None, **kwargs) -> float:
    """The variance factor ``c`` of :func:`calibration_search` (a float > 0)."""
    return calibration_search(y, mean, var, level=level, **kwargs).factor


def calibration_factors(y, mean, var, *, level: float | None = None, **kwargs) -> np.ndarray:
    """One factor per column of ``(N, T)`` arrays; a column without any valid triple gets 1."""
    y, mean, var = (np.asarray(a, dtype=np.float64) for a in (y, mean, var))
    if y.ndim != 2 or y.shape != mean.shape or y.shape != var.shape:
        raise ValueError(f"need three (N, T) arrays of one shape, got {y.shape}, {mean.shape}, {var.shape}")
    out = np.ones(y.shape[1])
    for t in range(y.shape[1]):
        try:
            out[t] = calibration_factor(y[:, t], mean[:, t], var[:, t], level=level, **kwargs)
        except ValueError:
            log.warning("target column %d has no valid prediction: calibration factor 1", t)
    return out
