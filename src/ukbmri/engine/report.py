"""A run report: what went in, what came out, what failed, and how the numbers look.

Written as ``report.md`` plus PNG figures beside the participant table, so a
researcher can check a run at a glance (and paste it into a lab notebook).
When a ground-truth table is given (synthetic cohorts), the report also
compares predictions with it, labelled as phantom results.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ukbmri import __version__
from ukbmri.engine.ledger import Failure
from ukbmri.io.atomic import atomic_path, write_text

__all__ = ["write_report", "compare_with_truth"]

log = logging.getLogger(__name__)


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


def _histograms(table: pd.DataFrame, columns: Sequence[str], path: Path) -> Path | None:
    cols = [c for c in columns if c in table and pd.to_numeric(table[c], errors="coerce").notna().sum() > 0]
    if not cols:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cols)
    ncol = min(4, n)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, c in zip(axes.flat, cols):
        v = pd.to_numeric(table[c], errors="coerce").dropna()
        ax.hist(v, bins=min(30, max(5, len(v) // 3)), color="#4477aa")
        ax.set_title(c, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _md_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    out: str | os.PathLike[str],
    table: pd.DataFrame,
    failures: Sequence[Failure],
    *,
    inputs: dict[str, int],
    key_columns: Sequence[str] = (),
    truth_comparison: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``out/report.md`` (and ``out/report_distributions.png``); returns the report path."""
    out = Path(out)
    lines = ["# ukbmri run report\n", f"ukbmri {__version__}\n"]
    lines.append("## Inputs\n")
    lines += [f"- {k}: {v}" for k, v in inputs.items()]
    lines.append(f"\n## Output\n\n- participants (rows): {len(table)}\n- failures: {len(failures)}\n")
    for n in notes:
        lines.append(f"> {n}\n")
    present = [c for c in key_columns if c in table]
    if present:
        desc = table[present].apply(pd.to_numeric, errors="coerce").describe().T[["count", "mean", "std", "min", "50%", "max"]]
        desc.insert(0, "column", desc.index)
        lines.append("## Key phenotypes\n")
        lines.append(_md_table(desc.reset_index(drop=True)))
        fig = _histograms(table, present, out / "report_distributions.png")
        if fig is not None:
            lines.append(f"\n![distributions]({fig.name})\n")
    if truth_comparison is not None and not truth_comparison.empty:
        lines.append("## Against the phantom ground truth (synthetic data, not clinical accuracy)\n")
        lines.append(_md_table(truth_comparison))
    lines.append("\n## Failures\n")
    if failures:
        fdf = pd.DataFrame([{"input": Path(f.input).name, "stage": f.stage, "error": f.error, "message": f.message} for f in failures])
        lines.append(_md_table(fdf))
    else:
        lines.append("none\n")
    return write_text(out / "report.md", "\n".join(lines))
