"""Cross-validation figures (PNG), drawn with matplotlib's object API (no pyplot state).

One figure per target with four panels: predicted versus reference,
Bland-Altman, calibration curve (coverage versus nominal level before and
after scaling the variance) and sparsification curve; plus one training-loss
figure. Files are written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ukbmri.io.atomic import atomic_path
from ukbmri.train.metrics import AUCE_LEVELS, auce, bland_altman, coverage, sparsification

__all__ = ["safe_filename", "save_figure", "plot_target", "plot_losses"]


def safe_filename(name: str) -> str:
    """A target name as a file name: anything but letters, digits, ``._-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "target"


def save_figure(fig: Figure, path: str | PathLike[str]) -> Path:
    """Render ``fig`` to a PNG at ``path`` atomically (100 dpi)."""
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_target(
    path: str | PathLike[str],
    *,
    name: str,
    unit: str,
    y,
    mean,
    var_uncalibrated,
    var_calibrated,
) -> Path:
    """Four-panel agreement / calibration figure for one target."""
    y, mean = np.asarray(y, float), np.asarray(mean, float)
    vu, vc = np.asarray(var_uncalibrated, float), np.asarray(var_calibrated, float)
    ok = np.isfinite(y) & np.isfinite(mean)
    y, mean, vu, vc = y[ok], mean[ok], vu[ok], vc[ok]
    u = f" [{unit}]" if unit else ""
    fig = Figure(figsize=(10, 8.5))
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)

    ax1.scatter(y, mean, s=6, alpha=0.5)
    if y.size:
        lo, hi = float(min(y.min(), mean.min())), float(max(y.max(), mean.max()))
        ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax1.set(xlabel=f"reference{u}", ylabel=f"predicted{u}", title=f"{name}: out-of-fold predictions")

    bias, loa_lo, loa_hi = bland_altman(y, mean)
    ax2.scatter((y + mean) / 2, mean - y, s=6, alpha=0.5)
    for v, style in ((bias, "-"), (loa_lo, "--"), (loa_hi, "--")):
        if np.isfinite(v):
            ax2.axhline(v, color="k", ls=style, lw=1)
    ax2.set(xlabel=f"mean of reference and prediction{u}", ylabel=f"prediction - reference{u}",
            title=f"Bland-Altman: bias {bias:.3g}, limits [{loa_lo:.3g}, {loa_hi:.3g}]")

    p = AUCE_LEVELS
    ax3.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax3.plot(p, coverage(y, mean, vu, p), label=f"uncalibrated (AUCE {auce(y, mean, vu):.3f})")
    ax3.plot(p, coverage(y, mean, vc, p), label=f"calibrated (AUCE {auce(y, mean, vc):.3f})")
    ax3.set(xlabel="nominal level", ylabel="fraction inside interval", title="calibration", xlim=(0, 1), ylim=(0, 1))
    ax3.legend(loc="upper left", fontsize=8)

    sp = sparsification(y, mean, vc)
    ax4.plot(sp.fractions, sp.mae_model, label="by predicted variance")
    ax4.plot(sp.fractions, sp.mae_oracle, "--", label="oracle (by true error)")
    ax4.set(xlabel="fraction removed", ylabel=f"MAE of the rest{u}", title=f"sparsification (AUSE {sp.ause:.3g})")
    ax4.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(path))


def plot_losses(path: str | PathLike[str], losses: Sequence[np.ndarray], labels: Sequence[str]) -> Path:
    """Training loss per iteration, one line per run (moving average over 1 % of the iterations)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for curve, label in zip(losses, labels, strict=True):
        curve = np.asarray(curve, float)
        w = max(1, curve.size // 100)
        smooth = np.convolve(curve, np.ones(w) / w, mode="valid") if curve.size >= w else curve
        ax.plot(np.arange(smooth.size) + w - 1, smooth, lw=1, label=label)
    ax.set(xlabel="iteration", ylabel="loss (standardised units)", title="training loss")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, Path(path))
