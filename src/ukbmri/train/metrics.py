"""Agreement and calibration metrics for one regression target (numpy).

Conventions
-----------
* ``y`` is the reference, ``yhat`` (or ``mean``) the prediction, ``var`` the
  predicted variance, all 1-D and in the same units.
* Pairs where ``y`` or the prediction is not finite are dropped (missing
  references are NaN in the target tables); for the uncertainty metrics the
  variance must also be finite and > 0. Metrics of an empty selection are NaN.
* Bland-Altman differences are ``yhat - y`` (prediction minus reference).
* Coverage at nominal level ``p``: with ``z = |y - mu| / sigma``,
  ``coverage(p) = mean(z <= Phi^-1(0.5 + p / 2))`` (the fraction of references
  inside the central ``p`` normal interval).
* AUCE (area under the calibration error curve): the mean of
  ``|coverage(p) - p|`` over the uniform grid ``p = 0.10, 0.11, ..., 1.00``
  (:data:`AUCE_LEVELS`): a Riemann sum for the area between the coverage
  curve and the diagonal on ``[0.1, 1]`` divided by the interval length 0.9
  (a mean absolute miscalibration). 0 is perfect; intervals that hold
  nothing (or everything) give about 0.55 (0.45).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

__all__ = [
    "AUCE_LEVELS",
    "REPORT_LEVELS",
    "mae",
    "mape",
    "r2",
    "pearson_r",
    "icc_a1",
    "icc_a1_table",
    "bland_altman",
    "z_scores",
    "coverage",
    "auce",
    "Sparsification",
    "sparsification",
    "binary_accuracy",
    "regression_report",
]

#: The nominal levels over which :func:`auce` averages.
AUCE_LEVELS: np.ndarray = np.round(np.arange(10, 101) / 100.0, 2)
#: The coverage levels reported by :func:`regression_report`.
REPORT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)


def _pairs(y, yhat) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    yhat = np.asarray(yhat, dtype=np.float64).ravel()
    if y.shape != yhat.shape:
        raise ValueError(f"y has {y.size} values, the prediction {yhat.size}")
    ok = np.isfinite(y) & np.isfinite(yhat)
    return y[ok], yhat[ok]


def _triples(y, mean, var) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    mean = np.asarray(mean, dtype=np.float64).ravel()
    var = np.asarray(var, dtype=np.float64).ravel()
    if not (y.shape == mean.shape == var.shape):
        raise ValueError(f"y, mean, var have {y.size}, {mean.size}, {var.size} values")
    ok = np.isfinite(y) & np.isfinite(mean) & np.isfinite(var) & (var > 0)
    return y[ok], mean[ok], var[ok]


def mae(y, yhat) -> float:
    """Mean absolute error."""
    y, yhat = _pairs(y, yhat)
    return float(np.mean(np.abs(yhat - y))) if y.size else float("nan")


def mape(y, yhat, *, min_abs: float = 1e-4) -> float:
    """Mean absolute percentage error in %, over references with ``|y| > min_abs`` only."""
    y, yhat = _pairs(y, yhat)
    keep = np.abs(y) > min_abs
    if not keep.any():
        return float("nan")
    return float(100.0 * np.mean(np.abs(yhat[keep] - y[keep]) / np.abs(y[keep])))


def r2(y, yhat) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (can be negative)."""
    y, yhat = _pairs(y, yhat)
    if y.size < 2:
        return float("nan")
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot


def pearson_r(y, yhat) -> float:
    """Pearson correlation coefficient (NaN when either side is constant)."""
    y, yhat = _pairs(y, yhat)
    if y.size < 2:
        return float("nan")
    dy, dp = y - y.mean(), yhat - yhat.mean()
    den = float(np.sqrt(np.sum(dy**2) * np.sum(dp**2)))
    return float(np.sum(dy * dp)) / den if den > 0 else float("nan")


def icc_a1_table(x) -> float:
    """ICC(A,1) of an ``(n subjects, k raters)`` table (McGraw & Wong 1996).

    Two-way random effects, absolute agreement, single measure; the same
    quantity as Shrout & Fleiss's ICC(2,1). From the two-way ANOVA mean squares
    (rows ``MSR``, columns ``MSC``, residual ``MSE``)::

        ICC(A,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)

    Rows with any non-finite entry are dropped.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"need an (n, k) table, got shape {x.shape}")
    x = x[np.all(np.isfinite(x), axis=1)]
    n, k = x.shape
    if n < 2 or k < 2:
        return float("nan")
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((x - grand) ** 2)
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    return float((msr - mse) / den) if den != 0 else float("nan")


def icc_a1(y, yhat) -> float:
    """ICC(A,1) between reference and prediction (the two as two 'raters')."""
    y, yhat = _pairs(y, yhat)
    return icc_a1_table(np.column_stack([y, yhat]))


def bland_altman(y, yhat) -> tuple[float, float, float]:
    """Bland-Altman bias and 95 % limits of agreement of ``d = yhat - y``.

    Returns ``(bias, bias - 1.96 SD, bias + 1.96 SD)`` with the sample SD
    (ddof = 1).
    """
    y, yhat = _pairs(y, yhat)
    if y.size < 2:
        return float("nan"), float("nan"), float("nan")
    d = yhat - y
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    return bias, bias - 1.96 * sd, bias + 1.96 * sd


def z_scores(y, mean, var) -> np.ndarray:
    """``|y - mu| / sigma`` over the valid triples."""
    y, mean, var = _triples(y, mean, var)
    return np.abs(y - mean) / np.sqrt(var)


def _coverage_from_z(z: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Coverage of sorted-or-not ``z`` at each level, via a sort and searchsorted (O((n + L) log n))."""
    if z.size == 0:
        return np.full(levels.shape, np.nan)
    q = ndtri(0.5 + levels / 2.0)  # level 1.0 -> +inf: everything finite is inside
    zs = np.sort(z)
    return np.searchsorted(zs, q, side="right") / zs.size


def coverage(y, mean, var, levels=REPORT_LEVELS) -> np.ndarray:
    """Fraction of references inside the central normal interval at each nominal level."""
    levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"levels must lie in [0, 1], got {levels}")
    return _coverage_from_z(z_scores(y, mean, var), levels)


def auce(y, mean, var, *, levels=AUCE_LEVELS) -> float:
    """Mean ``|coverage(p) - p|`` over ``levels`` (default ``0.10 .. 1.00`` in steps of 0.01)."""
    levels = np.asarray(levels, dtype=np.float64)
    cov = coverage(y, mean, var, levels)
    return float(np.mean(np.abs(cov - levels)))


@dataclass(frozen=True)
class Sparsification:
    """MAE after removing the most uncertain (model) / largest-error (oracle) fraction.

    ``ause`` is the area between the model curve and the oracle curve over
    the removed fraction (trapezoid rule, in target units); ``ause_relative``
    the same for curves divided by the MAE with nothing removed.
    """

    fractions: np.ndarray
    mae_model: np.ndarray
    mae_oracle: np.ndarray
    ause: float
    ause_relative: float


def sparsification(y, mean, var, *, fractions=None) -> Sparsification:
    """Sparsification curve: rank by predicted variance, drop the top fraction, report the MAE left.

    ``fractions`` default ``0, 0.02, ..., 0.98``; at least one sample is always kept.
    """
    y, mean, var = _triples(y, mean, var)
    if fractions is None:
        fractions = np.round(np.arange(0, 50) / 50.0, 2)
    fractions = np.asarray(fractions, dtype=np.float64)
    n = y.size
    if n == 0:
        nan = np.full(fractions.shape, np.nan)
        return Sparsification(fractions, nan, nan.copy(), float("nan"), float("nan"))
    err = np.abs(mean - y)
    by_model = err[np.argsort(-var, kind="stable")]  # most uncertain first
    by_oracle = np.sort(err)[::-1]  # largest error first
    keep_from = np.minimum(np.floor(fractions * n).astype(int), n - 1)

    def curve(e: np.ndarray) -> np.ndarray:
        tail_sums = np.cumsum(e[::-1])[::-1]  # tail_sums[i] = sum(e[i:])
        return tail_sums[keep_from] / (n - keep_from)

    m, o = curve(by_model), curve(by_oracle)
    ause = float(np.trapezoid(m - o, fractions)) if fractions.size > 1 else 0.0
    full = float(err.mean())
    rel = ause / full if full > 0 else float("nan")
    return Sparsification(fractions, m, o, ause, rel)


def binary_accuracy(y, yhat, threshold: float) -> dict[str, float]:
    """Agreement of a threshold call (positive: value >= threshold), e.g. steatosis at 5.5 % PDFF.

    Returns accuracy, sensitivity, specificity and the counts of reference
    positives / negatives (sensitivity or specificity is NaN without any).
    """
    y, yhat = _pairs(y, yhat)
    ref, pred = y >= threshold, yhat >= threshold
    n_pos, n_neg = int(ref.sum()), int((~ref).sum())
    tp, tn = int((ref & pred).sum()), int((~ref & ~pred).sum())
    return {
        "accuracy": (tp + tn) / y.size if y.size else float("nan"),
        "sensitivity": tp / n_pos if n_pos else float("nan"),
        "specificity": tn / n_neg if n_neg else float("nan"),
        "n_positive": n_pos,
        "n_negative": n_neg,
    }


def regression_report(y, mean, var=None, *, levels=REPORT_LEVELS) -> dict[str, float]:
    """All metrics for one target as a flat dict (keys are stable column names).

    Keys: ``n, mae, mape_percent, r2, pearson_r, icc, ba_bias, ba_lower,
    ba_upper``; with ``var`` also ``coverage_<pct>`` for each level, ``auce``,
    ``ause`` and ``ause_relative``.
    """
    y_, m_ = _pairs(y, mean)
    bias, lo, hi = bland_altman(y_, m_)
    out: dict[str, float] = {
        "n": int(y_.size),
        "mae": mae(y_, m_),
        "mape_percent": mape(y_, m_),
        "r2": r2(y_, m_),
        "pearson_r": pearson_r(y_, m_),
        "icc": icc_a1(y_, m_),
        "ba_bias": bias,
        "ba_lower": lo,
        "ba_upper": hi,
    }
    if var is not None:
        cov = coverage(y, mean, var, levels)
        for p, c in zip(levels, cov, strict=True):
            out[f"coverage_{round(100 * p):d}"] = float(c)
        out["auce"] = auce(y, mean, var)
        sp = sparsification(y, mean, var)
        out["ause"] = sp.ause
        out["ause_relative"] = sp.ause_relative
    return out
