"""The numbers a report shows, computed column-wise (vectorised; no per-row Python)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ukbmri.report.data import KEYS, numeric_values, companion, interval_columns

__all__ = ["summary_stats", "agreement_stats", "interval_width_stats", "truth_frame", "truth_stats"]


def summary_stats(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """n, missing, mean, sd, min, median, max per column."""
    rows = []
    for c in columns:
        v = numeric_values(table[c])
        ok = v[np.isfinite(v)]
        rows.append({"column": c, "n": int(ok.size), "missing": int(v.size - ok.size),
                     "mean": float(ok.mean()) if ok.size else np.nan,
                     "sd": float(ok.std(ddof=1)) if ok.size > 1 else np.nan,
                     "min": float(ok.min()) if ok.size else np.nan,
                     "median": float(np.median(ok)) if ok.size else np.nan,
                     "max": float(ok.max()) if ok.size else np.nan})
    return pd.DataFrame(rows, columns=["column", "n", "missing", "mean", "sd", "min", "median", "max"])


def agreement_stats(table: pd.DataFrame, pairs: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """Bland-Altman numbers per ``(reference, comparison, title)``: bias = comparison - reference."""
    rows = []
    for a, b, title in pairs:
        x, y = numeric_values(table[a]), numeric_values(table[b])
        ok = np.isfinite(x) & np.isfinite(y)
        d = y[ok] - x[ok]
        sd = float(d.std(ddof=1)) if d.size > 1 else np.nan
        bias = float(d.mean()) if d.size else np.nan
        rows.append({"comparison": title, "reference": a, "other": b, "n": int(d.size), "bias": bias,
                     "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd})
    return pd.DataFrame(rows, columns=["comparison", "reference", "other", "n", "bias", "sd", "loa_low", "loa_high"])


def interval_width_stats(table: pd.DataFrame, intervals: Sequence[tuple[str, str, str]] | None = None) -> pd.DataFrame:
    """Median and 5th/95th percentile of the 95 % interval width per column."""
    rows = []
    for c, lo, hi in interval_columns(table) if intervals is None else intervals:
        w = numeric_values(table[hi]) - numeric_values(table[lo])
        w = w[np.isfinite(w)]
        q = np.percentile(w, [5, 50, 95]) if w.size else [np.nan] * 3
        rows.append({"column": c, "n": int(w.size), "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2])})
    return pd.DataFrame(rows, columns=["column", "n", "p5", "median", "p95"])


def truth_frame(table: pd.DataFrame, truth: pd.DataFrame | None, pairs: Mapping[str, str]) -> pd.DataFrame:
    """Prediction columns (with their interval bounds) beside ``truth__<col>`` columns, joined on the keys
    the truth table has (``eid``, and ``instance`` when present)."""
    if truth is None or truth.empty or "eid" not in truth.columns or "eid" not in table.columns:
        return pd.DataFrame()
    pairs = {p: t for p, t in pairs.items() if p in table.columns and t in truth.columns}
    if not pairs:
        return pd.DataFrame()
    on = [k for k in KEYS if k in truth.columns and k in table.columns]
    pred_cols = []
    for p in pairs:
        bounds = (companion(table.columns, p, "ci95_low"), companion(table.columns, p, "ci95_high"))
        pred_cols += [p] + [c for c in bounds if c]
    left = table[on + list(dict.fromkeys(pred_cols))].copy()
    right = truth[on + sorted(set(pairs.values()))].copy()
    right = right.rename(columns={t: f"truth__{t}" for t in set(pairs.values())})
    for k in on:
        left[k] = pd.to_numeric(left[k], errors="coerce").astype("Int64")
        right[k] = pd.to_numeric(right[k], errors="coerce").astype("Int64")
    right = right.drop_duplicates(on)
    return left.merge(right, on=on, how="inner")


def truth_stats(merged: pd.DataFrame, pairs: Mapping[str, str]) -> pd.DataFrame:
    """n, MAE, bias, Pearson r and 95 % interval coverage (fraction of truths inside) per pair."""
    rows = []
    for p, t in pairs.items():
        tc = f"truth__{t}"
        if p not in merged.columns or tc not in merged.columns:
            continue
        y, x = numeric_values(merged[p]), numeric_values(merged[tc])
        ok = np.isfinite(x) & np.isfinite(y)
        err = y[ok] - x[ok]
        r = np.nan
        if ok.sum() > 1 and np.std(x[ok]) > 0 and np.std(y[ok]) > 0:
            r = float(np.corrcoef(x[ok], y[ok])[0, 1])
        cov, n_cov = np.nan, 0
        lo, hi = companion(merged.columns, p, "ci95_low"), companion(merged.columns, p, "ci95_high")
        if lo and hi:
            a, b = numeric_values(merged[lo]), numeric_values(merged[hi])
            okc = np.isfinite(a) & np.isfinite(b) & np.isfinite(x)
            n_cov = int(okc.sum())
            if n_cov:
                cov = float(np.mean((x[okc] >= a[okc]) & (x[okc] <= b[okc])))
        rows.append({"prediction": p, "truth": t, "n": int(ok.sum()),
                     "mae": float(np.abs(err).mean()) if err.size else np.nan,
                     "bias": float(err.mean()) if err.size else np.nan, "pearson_r": r,
                     "coverage95": cov, "n_with_interval": n_cov})
    return pd.DataFrame(rows, columns=["prediction", "truth", "n", "mae", "bias", "pearson_r", "coverage95",
                                       "n_with_interval"])
