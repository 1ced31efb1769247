"""Predictions against the phantom ground truth of a synthetic cohort (``truth_comparison.csv``).

The report itself (``report.html`` and ``report.md``) is :mod:`ukbmri.report`.
"""

from __future__ import annotations


import numpy as np
import pandas as pd


__all__ = ["compare_with_truth", "TRUTH_PAIRS"]



#: prediction column -> phantom truth column, for synthetic cohorts
TRUTH_PAIRS = {
    "weight_kg": "weight_kg",
    "height_cm": "height_cm",
    "vat_l": "vat_l",
    "asat_l": "asat_l",
    "liver_volume_l": "liver_volume_l",
    "thigh_muscle_volume_l": "thigh_muscle_volume_l",
    "liver_pdff_percent": "liver_pdff_percent",
    "liver_fat_physics_percent": "liver_pdff_percent",
    "liver_fat_teacher_percent": "liver_pdff_percent",
    "liver_fat_student_percent": "liver_pdff_percent",
    "liver_r2star_physics_per_s": "liver_r2star_per_s",
}


def compare_with_truth(table: pd.DataFrame, truth: pd.DataFrame, pairs: dict[str, str]) -> pd.DataFrame:
    """MAE, bias, Pearson r and N for each ``prediction column -> truth column`` pair (joined on eid)."""
    rows = []
    truth = truth.rename(columns={c: f"truth__{c}" for c in truth.columns if c != "eid"})
    merged = table.merge(truth, on="eid", how="inner")
    for pred_col, truth_col in pairs.items():
        tcol = f"truth__{truth_col}"
        if pred_col not in merged or tcol not in merged:
            continue
        y = pd.to_numeric(merged[tcol], errors="coerce").to_numpy(float)
        p = pd.to_numeric(merged[pred_col], errors="coerce").to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(p)
        if ok.sum() < 2:
            continue
        err = p[ok] - y[ok]
        rows.append(
            {
                "prediction": pred_col,
                "truth": truth_col,
                "n": int(ok.sum()),
                "mae": float(np.mean(np.abs(err))),
                "bias": float(np.mean(err)),
                "pearson_r": float(np.corrcoef(y[ok], p[ok])[0, 1]) if np.std(p[ok]) > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["prediction", "truth", "n", "mae", "bias", "pearson_r"])
