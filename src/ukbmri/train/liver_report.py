"""Reports of the liver teacher/student training: metrics, out-of-fold tables, figures, folders.

:func:`liver_report` computes the agreement of liver-fat predictions with a reference
(MAE, R^2, Pearson r, ICC, Bland-Altman, the 5.5 % steatosis call, coverage and AUCE for a
mean-variance head); :func:`write_liver_folder` assembles a weights folder with its
report (``cv_predictions.csv``, ``metrics.json``/``.csv``, ``agreement.png``,
``training_loss.png``) in a temporary sibling and renames it into place. Shared by
:mod:`ukbmri.train.liver` (teacher) and :mod:`ukbmri.train.distill` (student).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ukbmri.infer.liver_nets import jsonable, write_liver_net_files
from ukbmri.io.atomic import atomic_path, staged_folder, write_text
from ukbmri.train.calibration import calibration_factor
from ukbmri.train.metrics import REPORT_LEVELS, binary_accuracy, regression_report
from ukbmri.train.plots import plot_target, save_figure

if TYPE_CHECKING:  # pragma: no cover
    from ukbmri.train.liver import CVResult
    from ukbmri.train.liver_data import LiverData
    from ukbmri.train.liver_fit import FitHistory

__all__ = [
    "STEATOSIS_PERCENT",
    "CV_PREDICTIONS",
    "METRICS_JSON",
    "METRICS_CSV",
    "liver_report",
    "write_liver_folder",
    "predictions_frame",
    "figure_writers",
    "history_info",
]

STEATOSIS_PERCENT = 5.5
CV_PREDICTIONS = "cv_predictions.csv"
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"

def liver_report(y, mean, var=None, *, threshold: float = STEATOSIS_PERCENT,
                 calibration: float | None = None) -> dict[str, Any]:
    """Agreement metrics of liver fat predictions against a reference (all in %).

    Keys of :func:`ukbmri.train.metrics.regression_report` (without variance),
    the threshold call's ``accuracy``/``sensitivity``/``specificity`` and, with
    ``var``: ``calibration_factor`` (given, or computed from these predictions),
    ``coverage_<p>_uncalibrated`` / ``_calibrated``, ``auce_*``,
    ``ause``.
    """
    rep = regression_report(y, mean)
    out: dict[str, Any] = {k: rep[k] for k in ("n", "mae", "r2", "pearson_r", "icc", "ba_bias", "ba_lower",
                                               "ba_upper", "mape_percent")}
    acc = binary_accuracy(y, mean, threshold)
    out.update({"threshold_percent": threshold, "accuracy": acc["accuracy"], "sensitivity": acc["sensitivity"],
                "specificity": acc["specificity"], "n_positive": acc["n_positive"],
                "n_negative": acc["n_negative"]})
    if var is not None:
        var = np.asarray(var, dtype=np.float64)
        if calibration is None:
            try:
                calibration = calibration_factor(y, mean, var)
            except ValueError:
                calibration = 1.0
        out["calibration_factor"] = float(calibration)
        for tag, vv in (("uncalibrated", var), ("calibrated", var * calibration)):
            r = regression_report(y, mean, vv)
            for p in REPORT_LEVELS:
                out[f"coverage_{round(100 * p)}_{tag}"] = r[f"coverage_{round(100 * p)}"]
            out[f"auce_{tag}"] = r["auce"]
            if tag == "calibrated":
                out["ause"] = r["ause"]
    return out


def _plot_agreement(path: Path, *, y, mean, xlabel: str, ylabel: str, title: str) -> Path:
    """Predicted versus reference and Bland-Altman (point predictions)."""
    from ukbmri.train.metrics import bland_altman

    y, mean = np.asarray(y, float), np.asarray(mean, float)
    ok = np.isfinite(y) & np.isfinite(mean)
    y, mean = y[ok], mean[ok]
    fig = Figure(figsize=(10, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(y, mean, s=6, alpha=0.5)
    if y.size:
        lo, hi = float(min(y.min(), mean.min())), float(max(y.max(), mean.max()))
        ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax1.axvline(STEATOSIS_PERCENT, color="grey", lw=0.5)
        ax1.axhline(STEATOSIS_PERCENT, color="grey", lw=0.5)
    ax1.set(xlabel=xlabel, ylabel=ylabel, title=title)
    bias, lo_, hi_ = bland_altman(y, mean)
    ax2.scatter((y + mean) / 2, mean - y, s=6, alpha=0.5)
    for val, style in ((bias, "-"), (lo_, "--"), (hi_, "--")):
        if np.isfinite(val):
            ax2.axhline(val, color="k", ls=style, lw=1)
    ax2.set(xlabel="mean of the two [%]", ylabel="prediction - reference [%]",
            title=f"Bland-Altman: bias {bias:.3g}, limits [{lo_:.3g}, {hi_:.3g}]")
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_epoch_losses(path: Path, histories: Sequence[FitHistory], labels: Sequence[str]) -> Path:
    """Training (solid) and validation (dashed) loss per epoch, one colour per network; o = kept epoch."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (h, label) in enumerate(zip(histories, labels, strict=True)):
        colour = f"C{i % 10}"
        epochs = np.arange(1, len(h.train_loss) + 1)
        ax.plot(epochs, h.train_loss, color=colour, lw=1, label=f"{label} train")
        if h.val_loss:
            ax.plot(epochs[: len(h.val_loss)], h.val_loss, color=colour, lw=1, ls="--", label=f"{label} validation")
            if 0 <= h.best_epoch < len(h.val_loss):
                ax.plot([h.best_epoch + 1], [h.val_loss[h.best_epoch]], "o", color=colour, ms=4)
    ax.set(xlabel="epoch", ylabel="loss (standardised units)", title="training and validation loss")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def write_liver_folder(
    out_dir: str | PathLike[str],
    *,
    kind: str,
    model: nn.Module,
    calibration: float,
    info: Mapping[str, Any],
    predictions: pd.DataFrame,
    comparisons: Mapping[str, Mapping[str, Any]],
    figures: Sequence[Callable[[Path], Any]] = (),
    extra_csv: Mapping[str, pd.DataFrame] | None = None,
    overwrite: bool = False,
) -> Path:
    """Assemble a weights folder with its report in a temporary sibling and rename it into place."""
    with staged_folder(out_dir, overwrite=overwrite) as tmp:
        info = dict(info)
        info["cross_validation"] = {**dict(info.get("cross_validation", {})), "metrics": comparisons}
        write_liver_net_files(tmp, model, kind=kind, info=info, calibration=calibration)
        with atomic_path(tmp / CV_PREDICTIONS, suffix=".csv") as t:
            predictions.to_csv(t, index=False)
        for name, df in (extra_csv or {}).items():
            with atomic_path(tmp / name, suffix=".csv") as t:
                df.to_csv(t, index=False)
        write_text(tmp / METRICS_JSON, json.dumps(jsonable(comparisons), indent=2) + "\n")
        rows = [{"comparison": k, **dict(v)} for k, v in comparisons.items()]
        with atomic_path(tmp / METRICS_CSV, suffix=".csv") as t:
            pd.DataFrame(rows).to_csv(t, index=False)
        for draw in figures:
            draw(tmp)
    return Path(out_dir)


def predictions_frame(data: LiverData, cv: CVResult, calibration: float, *, reference: np.ndarray,
                      reference_name: str) -> pd.DataFrame:
    """Out-of-fold predictions table (one row per sample; fold -1 = no reference, not predicted)."""
    cols: dict[str, Any] = {"eid": data.eids, "instance": data.instances, "input": list(data.sources),
                            "fold": cv.fold, f"{reference_name}_percent": reference,
                            "predicted_liver_fat_percent": cv.mean}
    if cv.var is not None:
        from ukbmri.models.ml4h_liver import liver_fat_interval

        var_c = cv.var * calibration
        lo, hi = liver_fat_interval(cv.mean, np.where(np.isfinite(var_c), var_c, np.nan), 0.95)
        cols["predicted_variance_percent2"] = var_c
        cols["uncalibrated_variance_percent2"] = cv.var
        cols["lower_95_percent"], cols["upper_95_percent"] = lo, hi
    return pd.DataFrame(cols)


def figure_writers(cv: CVResult, reference: np.ndarray, calibration: float, *, name: str,
                   reference_label: str) -> list[Callable[[Path], Any]]:
    """Callables drawing ``agreement.png`` (4 panels with calibration for mean-variance) and the losses."""
    def agreement(folder: Path) -> None:
        if cv.var is not None:
            plot_target(folder / "agreement.png", name=name, unit="%", y=reference, mean=cv.mean,
                        var_uncalibrated=cv.var, var_calibrated=cv.var * calibration)
        else:
            _plot_agreement(folder / "agreement.png", y=reference, mean=cv.mean,
                            xlabel=f"{reference_label} [%]", ylabel=f"{name} out-of-fold [%]",
                            title=f"{name}: out-of-fold predictions")

    def losses(folder: Path) -> None:
        _plot_epoch_losses(folder / "training_loss.png", [*cv.histories, cv.final_history],
                           [*(f"fold {i + 1}" for i in range(len(cv.histories))), "final"])

    return [agreement, losses]


def history_info(cv: CVResult) -> dict[str, Any]:
    def one(h: FitHistory) -> dict[str, Any]:
        return {"epochs_run": len(h.train_loss), "best_epoch": h.best_epoch + 1, "steps": h.steps,
                "n_train": h.n_train, "n_val": h.n_val,
                "best_val_loss": min(h.val_loss) if h.val_loss else None,
                "final_train_loss": h.train_loss[-1] if h.train_loss else None, "restarts": h.restarts}

    return {"folds": [one(h) for h in cv.histories], "final": one(cv.final_history)}
