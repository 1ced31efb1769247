"""The ml4h liver-fat teacher: K-fold cross-validation, calibration, final network, report.

Recipe (ml4h's, with its defects fixed)
---------------------------------------
* Network: :class:`~ukbmri.models.ml4h_liver.LiverTeacher` on the 20203 GRE
  tensor ``(10, 160, 160)``, Keras default initialisation (Glorot-uniform
  weights, zero biases) from an explicit seed.
* Inputs: per-sample ZeroMeanStd1; labels standardised
  ``y' = (y - 3.91012) / 4.64437``; missing labels are masked (rows without a
  label are left out of training; never a 0.0 sentinel).
* Loss: log-cosh (ml4h), or with ``mean_variance=True`` the Gaussian negative
  log-likelihood ``exp(-s)(y - mu)^2 + s`` of a (mean, log-variance) head.
* Adam, lr 2e-4, batch 8; epochs of one pass over the training rows (or
  ``steps_per_epoch`` batches); early stopping on an inner validation split
  (``validation_fraction`` of the participants, by participant): stop after
  ``patience`` epochs without a lower validation loss and keep the weights of
  the best epoch; the learning rate is halved after ``lr_patience`` epochs
  without improvement. ml4h (Keras callbacks): up to 108 epochs, early
  stopping patience 24, ReduceLROnPlateau factor 0.5 patience 8.
* K-fold cross-validation by participant (seeded), out-of-fold predictions,
  then the final network on all labelled participants.

Report (written into the weights folder)
----------------------------------------
``cv_predictions.csv`` (out-of-fold predictions with calibrated variance and
95 % interval), ``metrics.json`` / ``metrics.csv`` (Pearson r, R^2, MAE,
ICC, Bland-Altman, accuracy / sensitivity / specificity of the steatosis call
at 5.5 %, and for a mean-variance head coverage and AUCE before and after
calibration), figures (``agreement.png``; ``training_loss.png``), and the
network itself (:func:`ukbmri.infer.liver_nets.save_liver_net`). The variance
calibration factor is :func:`ukbmri.train.calibration.calibration_factor`
of the out-of-fold predictions. The folder is built in a temporary sibling
and renamed into place; an existing folder is replaced only with
``overwrite=True``.

The machinery (:func:`run_liver_cv`, and the reports of :mod:`ukbmri.train.liver_report`)
is shared with :mod:`ukbmri.train.distill`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ukbmri.errors import TargetsError
from ukbmri.io.atomic import require_free_folder
from ukbmri.models import resolve_device
from ukbmri.preprocess.tensormaps import LIVER_FAT_MEAN, LIVER_FAT_STD
from ukbmri.train.crossval import assign_folds
from ukbmri.train.liver_data import DEFAULT_LABEL_COLUMN, LiverData, build_liver_data
from ukbmri.train.liver_fit import (
    FitHistory,
    LiverTrainConfig,
    WarmStart,
    _steps_per_epoch,
    fit_alive,
    load_warm_start,
    predict_normalised,
)
from ukbmri.train.liver_report import (
    STEATOSIS_PERCENT,
    figure_writers,
    history_info,
    liver_report,
    predictions_frame,
    write_liver_folder,
)

__all__ = ["CVResult", "run_liver_cv", "planned_steps", "train_teacher", "initialisation_info"]

log = logging.getLogger(__name__)

FOLD_RULE = "by participant (eid): seeded random order of participants dealt round-robin into K folds"
Progress = Callable[[int, int], None]  #: progress(advance, total_steps)


@dataclass(eq=False)
class CVResult:
    """Out-of-fold predictions (% and uncalibrated %^2) and the final network trained on all rows."""

    fold: np.ndarray
    mean: np.ndarray
    var: np.ndarray | None
    histories: list[FitHistory]
    model: nn.Module
    final_history: FitHistory


def planned_steps(n_rows: int, folds: int, cfg: LiverTrainConfig) -> int:
    """Upper bound on the optimiser steps of a whole run (folds + final network; early stops report the rest)."""
    def spe(n: int) -> int:
        return _steps_per_epoch(max(1, int(round(n * (1 - cfg.validation_fraction)))), cfg)

    per_fold = spe(int(n_rows * (folds - 1) / folds))
    return cfg.epochs * (folds * per_fold + spe(n_rows))


def _seeds(seed: int, n: int) -> tuple[np.random.Generator, list[int]]:
    ss = np.random.SeedSequence(seed)
    children = ss.spawn(n + 1)
    return np.random.default_rng(children[0]), [int(c.generate_state(1)[0]) for c in children[1:]]


def _to_percent(raw: np.ndarray, mean_variance: bool) -> tuple[np.ndarray, np.ndarray | None]:
    mean = raw[:, 0] * LIVER_FAT_STD + LIVER_FAT_MEAN
    var = np.exp(raw[:, 1]) * LIVER_FAT_STD**2 if mean_variance else None
    return mean, var


def run_liver_cv(
    data: LiverData,
    targets: np.ndarray,
    *,
    kind: str,
    cfg: LiverTrainConfig,
    folds: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    target_var: np.ndarray | None = None,
    progress: Progress | None = None,
    warm_start: WarmStart | None = None,
) -> CVResult:
    """K-fold cross-validation by participant, then the final network on all rows with a target.

    ``targets`` are liver fat % (NaN = missing, masked), ``target_var`` their
    variance in %^2 (distillation) or None. ``warm_start``: every fold and the final
    network start from these weights instead of a random initialisation.
    """
    targets = np.asarray(targets, dtype=np.float64)
    labelled = np.isfinite(targets)
    groups = data.eids.astype(str)
    n_part = np.unique(groups[labelled]).size
    if not 2 <= folds <= n_part:
        raise TargetsError(f"cannot split {n_part} labelled participants into {folds} folds",
                           expected=f"2 <= folds <= {n_part}", found=folds)
    y = (targets - LIVER_FAT_MEAN) / LIVER_FAT_STD
    v = None if target_var is None else np.asarray(target_var, dtype=np.float64) / LIVER_FAT_STD**2
    fold_rng, seeds = _seeds(seed, 2 * (folds + 1))
    fold = np.full(len(data), -1, dtype=np.int64)
    fold[labelled] = assign_folds(groups[labelled], folds, fold_rng)
    total = planned_steps(int(labelled.sum()), folds, cfg)
    step = (lambda n: progress(n, total)) if progress is not None else None
    oof_raw = np.full((len(data), 2 if cfg.mean_variance else 1), np.nan)
    init_state = None if warm_start is None else warm_start.state
    histories = []
    for f in range(folds):
        train = labelled & (fold != f)
        test = np.flatnonzero(fold == f)
        y_f = np.where(train, y, np.nan)
        model, hist = fit_alive(kind, data, y_f, groups, cfg=cfg, init_seed=seeds[2 * f], fit_seed=seeds[2 * f + 1],
                                device=device, var_target=v, progress=step, name=f"{kind} fold {f + 1}/{folds}",
                                init_state=init_state)
        oof_raw[test] = predict_normalised(model, data.x[test], batch_size=cfg.batch_size, device=device)
        histories.append(hist)
        log.info("%s fold %d/%d: %d train, %d val, %d test, best epoch %d", kind, f + 1, folds, hist.n_train,
                 hist.n_val, test.size, hist.best_epoch + 1)
    mean, var = _to_percent(oof_raw, cfg.mean_variance)
    model, final = fit_alive(kind, data, np.where(labelled, y, np.nan), groups, cfg=cfg, init_seed=seeds[2 * folds],
                             fit_seed=seeds[2 * folds + 1], device=device, var_target=v, progress=step,
                             name=f"{kind} final", init_state=init_state)
    return CVResult(fold, mean, var, histories, model.cpu(), final)


def initialisation_info(warm: WarmStart | None) -> dict:
    """model.json ``training.initialisation`` (text) and ``training.init_from`` (folder, sha256 or None)."""
    keras = "Keras defaults (Glorot-uniform, zero bias)"
    if warm is None:
        return {"initialisation": keras, "init_from": None}
    return {"initialisation": f"warm start from {warm.folder} (re-initialisation after a collapse: {keras})",
            "init_from": warm.info}


# --------------------------------------------------------------------------- teacher
def train_teacher(
    inputs: Iterable[str | PathLike[str]] | LiverData,
    out_dir: str | PathLike[str],
    *,
    labels: str | PathLike[str] | None = None,
    label_column: str = DEFAULT_LABEL_COLUMN,
    folds: int = 10,
    epochs: int = 108,
    patience: int = 24,
    batch_size: int = 8,
    lr: float = 2e-4,
    steps_per_epoch: int | None = None,
    validation_fraction: float = 0.1,
    lr_patience: int | None = 8,
    mean_variance: bool = True,
    kernel_size: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    workers: int = 1,
    input_hw: tuple[int, int] | None = None,
    demonstration_only: bool = False,
    overwrite: bool = False,
    plots: bool = True,
    progress: Progress | None = None,
    init_from: str | PathLike[str] | None = None,
) -> Path:
    """Cross-validate, calibrate and train the liver teacher; write its weights folder.

    Parameters
    ----------
    inputs:
        20203 zips / folders / ml4h hd5 files (see :func:`~ukbmri.train.liver_data.build_liver_data`),
        or an already built :class:`LiverData` of kind ``"teacher"``.
    labels, label_column:
        Labels CSV and its liver fat column (default ``liver_pdff_percent``;
        ``22402-2.0`` style accepted). Without a table, hd5 labels are used.
    folds:
        K of the K-fold cross-validation by participant (ml4h: 10).
    epochs, patience, batch_size, lr, steps_per_epoch, validation_fraction, lr_patience:
        See :class:`LiverTrainConfig` (ml4h: 108 epochs, patience 24, lr halved after 8).
    mean_variance:
        (mean, log-variance) head with the Gaussian NLL (default) instead of a
        point head with ml4h's log-cosh loss.
    seed:
        Seeds folds, initialisation, validation splits and batch order.
    input_hw:
        Train on tensors top-left pad/cropped to this size (tests, experiments).
    demonstration_only:
        Mark the weights as trained on synthetic data (model.json).
    overwrite:
        Replace an existing folder once the new one is complete.
    progress:
        ``progress(advance, total)`` after optimiser steps.
    init_from:
        A teacher weights folder (e.g. the bundled one) that every fold and the final
        network start from (a warm start, "fine-tuning") instead of a random
        initialisation; it must hold the same network (input shape, head, kernel
        sizes), else :class:`~ukbmri.errors.ModuleError`. Recorded in model.json
        (``training.init_from``: folder and weights sha256). Its cross-validation is
        optimistic for participants those weights were trained on.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    require_free_folder(out_dir, overwrite=overwrite)
    cfg = LiverTrainConfig(epochs, patience, batch_size, lr, steps_per_epoch, validation_fraction,
                           mean_variance, kernel_size, lr_patience)
    if isinstance(inputs, LiverData):
        data = inputs
        if data.kind != "teacher":
            raise ValueError(f"the teacher trains on teacher (20203) data, got {data.kind!r}")
        if labels is not None:
            from ukbmri.train.liver_data import read_label_table

            table = read_label_table(labels, label_column)
            data = data.with_labels(table.lookup_many(data.eids, data.instances), f"{labels}[{label_column}]")
    else:
        data = build_liver_data(list(inputs), kind="teacher", labels=labels, label_column=label_column,
                                workers=workers, input_hw=input_hw)
    labelled = data.labelled
    if labelled.sum() < 2:
        raise TargetsError("fewer than 2 participants with a label", path=labels,
                           expected="labels for the teacher inputs", found=int(labelled.sum()))
    log.info("teacher: %d samples, %d labelled, %d failures", len(data), int(labelled.sum()), len(data.failures))
    warm = None if init_from is None else load_warm_start(init_from, kind="teacher", input_shape=data.input_shape,
                                                           cfg=cfg)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    cv = run_liver_cv(data, data.labels, kind="teacher", cfg=cfg, folds=folds, seed=seed, device=dev,
                      progress=progress, warm_start=warm)
    report = liver_report(data.labels, cv.mean, cv.var)
    calibration = float(report.get("calibration_factor", 1.0))
    comparisons = {"teacher_vs_label": report}
    info = {
        "demonstration_only": bool(demonstration_only),
        "n_train": int(labelled.sum()),
        "training_data": {
            "kind": "teacher",
            "input_tensor_map": data.tensor_map,
            "labels": data.label_source,
            "n_samples": len(data),
            "n_labelled": int(labelled.sum()),
            "n_participants": int(np.unique(data.eids[labelled]).size),
            "n_failures": len(data.failures),
            "failures": [f.one_line() for f in data.failures[:50]],
            "label_mean_percent": float(np.nanmean(data.labels)),
            "label_sd_percent": float(np.nanstd(data.labels, ddof=1)) if labelled.sum() > 1 else None,
            "label_fraction_above_5_5_percent": float(np.mean(data.labels[labelled] >= STEATOSIS_PERCENT)),
        },
        "training": {**asdict(cfg), "optimizer": "Adam", "seed": seed, "device": str(dev),
                     "loss": "Gaussian NLL exp(-s)(y-mu)^2+s" if cfg.mean_variance else "log-cosh",
                     **initialisation_info(warm),
                     "label_normalisation": "(y - 3.91012) / 4.64437",
                     "history": history_info(cv), "seconds": round(time.perf_counter() - t0, 1)},
        "cross_validation": {"folds": folds, "fold_assignment": FOLD_RULE,
                             "calibration": "train.calibration.calibration_factor of the out-of-fold predictions"
                             if cfg.mean_variance else None},
    }
    preds = predictions_frame(data, cv, calibration, reference=data.labels, reference_name="reference")
    figures = figure_writers(cv, data.labels, calibration, name="teacher", reference_label="reference") if plots else []
    failures = pd.DataFrame([f.__dict__ for f in data.failures]) if data.failures else None
    write_liver_folder(out_dir, kind="teacher", model=cv.model, calibration=calibration, info=info,
                       predictions=preds, comparisons=comparisons, figures=figures,
                       extra_csv={"failures.csv": failures} if failures is not None else None, overwrite=overwrite)
    log.info("teacher written to %s: MAE %.3f %%, r %.3f", out_dir, report["mae"], report["pearson_r"])
    return out_dir
