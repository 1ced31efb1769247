"""A short text summary of a module's cross-validation metrics (for the CLI and logs)."""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["format_summary"]


def _g(x: object, fmt: str) -> str:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else format(v, fmt)


def format_summary(metrics: pd.DataFrame) -> str:
    """One line per target: n, MAE (unit), MAPE, R^2, ICC, calibration factor, AUCE before -> after."""
    lines = [f"{'target':<28} {'n':>6} {'MAE':>10} {'unit':<10} {'MAPE%':>7} {'R2':>6} {'ICC':>6} "
             f"{'c':>7} {'AUCE raw->cal':>14}"]
    for r in metrics.to_dict("records"):
        unit = "" if pd.isna(r.get("unit")) else str(r.get("unit"))
        lines.append(
            f"{str(r['target'])[:28]:<28} {int(r['n']):>6} {_g(r['mae'], '.4g'):>10} {unit[:10]:<10} "
            f"{_g(r['mape_percent'], '.1f'):>7} {_g(r['r2'], '.3f'):>6} {_g(r['icc'], '.3f'):>6} "
            f"{_g(r['calibration_factor'], '.3g'):>7} "
            f"{_g(r['auce_uncalibrated'], '.3f'):>6}->{_g(r['auce_calibrated'], '.3f'):<6}"
        )
    return "\n".join(lines)
