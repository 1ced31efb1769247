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

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ukbmri.errors import OutputExistsError, TargetsError
from ukbmri.infer.liver_nets import build_liver_model
from ukbmri.models import resolve_device
from ukbmri.preprocess.tensormaps import LIVER_FAT_MEAN, LIVER_FAT_STD
from ukbmri.train.crossval import assign_folds
from ukbmri.train.liver_data import DEFAULT_LABEL_COLUMN, LiverData, build_liver_data
from ukbmri.train.loop import batch_indices
from ukbmri.train.losses import gaussian_nll_masked, log_cosh_masked
from ukbmri.train.liver_report import (
    CV_PREDICTIONS,
    METRICS_CSV,
    METRICS_JSON,
    STEATOSIS_PERCENT,
    figure_writers,
    history_info,
    liver_report,
    predictions_frame,
    write_liver_folder,
)

__all__ = [
    "STEATOSIS_PERCENT",
    "LiverTrainConfig",
    "FitHistory",
    "CVResult",
    "init_keras_",
    "fit_liver",
    "predict_normalised",
    "run_liver_cv",
    "fit_alive",
    "is_collapsed",
    "planned_steps",
    "liver_report",
    "write_liver_folder",
    "train_teacher",
    "CV_PREDICTIONS",
    "METRICS_JSON",
    "METRICS_CSV",
]

log = logging.getLogger(__name__)

FOLD_RULE = "by participant (eid): seeded random order of participants dealt round-robin into K folds"
Progress = Callable[[int, int], None]  #: progress(advance, total_steps)


@dataclass(frozen=True)
class LiverTrainConfig:
    """Training settings of one liver network (ml4h defaults)."""

    epochs: int = 108
    patience: int = 24
    batch_size: int = 8
    lr: float = 2e-4
    steps_per_epoch: int | None = None  #: None: one pass over the training rows
    validation_fraction: float = 0.1
    mean_variance: bool = True
    kernel_size: int = 3
    lr_patience: int | None = 8  #: halve the learning rate after this many epochs without a better val loss
    lr_factor: float = 0.5

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.lr_patience is not None and self.lr_patience < 1:
            raise ValueError("lr_patience must be >= 1 (or None: constant learning rate)")
        if not 0.0 < self.lr_factor <= 1.0:
            raise ValueError("lr_factor must be in (0, 1]")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")


@dataclass(eq=False)
class FitHistory:
    """Per-epoch losses of one network, the epoch whose weights were kept, and the steps taken."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    steps: int = 0
    n_train: int = 0
    n_val: int = 0
    restarts: int = 0  #: re-initialisations after a collapse to a constant output (see :func:`fit_alive`)


@dataclass(eq=False)
class CVResult:
    """Out-of-fold predictions (% and uncalibrated %^2) and the final network trained on all rows."""

    fold: np.ndarray
    mean: np.ndarray
    var: np.ndarray | None
    histories: list[FitHistory]
    model: nn.Module
    final_history: FitHistory


# --------------------------------------------------------------------------- networks
def init_keras_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Keras defaults in place: Glorot-uniform kernels, zero biases, drawn from ``generator``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                rf = w[0, 0].numel() if w.ndim > 2 else 1
                fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w.copy_(torch.rand(w.shape, generator=generator) * 2 * limit - limit)
                if m.bias is not None:
                    m.bias.zero_()
    return model


def _loss(out: torch.Tensor, y: torch.Tensor, var_t: torch.Tensor | None, mean_variance: bool) -> torch.Tensor:
    """Masked loss in standardised units; NaN targets contribute nothing.

    Mean-variance: ``exp(-s)((y - mu)^2 + v) + s`` where ``v`` is the target's
    own variance (distillation from a mean-variance teacher; 0 otherwise), whose
    minimiser is ``exp(s) = (y - mu)^2 + v``.
    """
    if not mean_variance:
        return log_cosh_masked(out[:, 0], y)
    mu, s = out[:, 0], out[:, 1]
    loss = gaussian_nll_masked(mu, s, y)
    if var_t is not None:
        valid = torch.isfinite(y) & torch.isfinite(var_t)
        extra = torch.where(valid, torch.exp(-torch.where(valid, s, torch.zeros_like(s)))
                            * torch.where(valid, var_t, torch.zeros_like(var_t)), torch.zeros_like(s))
        loss = loss + extra.sum() / valid.sum().clamp(min=1)
    return loss


@torch.no_grad()
def predict_normalised(model: nn.Module, x: np.ndarray, *, batch_size: int = 8,
                       device: torch.device | str = "cpu") -> np.ndarray:
    """Raw network outputs ``(N, 1|2)`` (float64) for normalised float16/32 inputs."""
    dev = resolve_device(device)
    model.to(dev).eval()
    outs = [model(torch.from_numpy(np.asarray(x[i:i + batch_size], dtype=np.float32)).to(dev)).float().cpu()
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy().astype(np.float64) if outs else np.empty((0, 1))


def _val_split(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of validation rows: ``fraction`` of the participants (at least 1 when > 0)."""
    uniq = np.unique(groups)
    if fraction <= 0 or uniq.size < 4:
        return np.zeros(groups.size, dtype=bool)
    n_val = max(1, int(round(fraction * uniq.size)))
    chosen = rng.choice(uniq, size=n_val, replace=False)
    return np.isin(groups, chosen)


def _steps_per_epoch(n_train: int, cfg: LiverTrainConfig) -> int:
    return cfg.steps_per_epoch or max(1, math.ceil(n_train / cfg.batch_size))


def fit_liver(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    cfg: LiverTrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
    var_target: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    name: str = "network",
) -> FitHistory:
    """Train ``model`` in place on normalised inputs and standardised targets, with early stopping.

    Parameters
    ----------
    x:
        ``(N, C, H, W)`` normalised inputs (float16 is fine; batches go to float32).
    y:
        ``(N,)`` standardised targets, NaN where missing (masked).
    groups:
        Participant of each row (the inner validation split is by participant).
    var_target:
        Standardised variance of each target (distillation), or None.
    seed:
        Seeds the validation split, the batch order and nothing else.
    progress:
        Called with 1 after every optimiser step; when training stops early
        it is called once more with the steps that were not taken.
    on_epoch:
        Called with (epoch index, model) after every epoch (experiments, logging).

    Returns
    -------
    FitHistory
        The model is left in eval mode with the best validation epoch's weights.
    """
    dev = resolve_device(device)
    ss = np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss.spawn(1)[0])
    gen = torch.Generator().manual_seed(int(ss.generate_state(1)[0]))
    keep = np.isfinite(y)
    val = _val_split(np.asarray(groups)[keep], cfg.validation_fraction, rng)
    rows = np.flatnonzero(keep)
    tr_rows, va_rows = rows[~val], rows[val]
    if tr_rows.size == 0:
        raise TargetsError(f"{name}: no labelled row to train on")
    hist = FitHistory(n_train=int(tr_rows.size), n_val=int(va_rows.size))
    y_t = torch.as_tensor(y, dtype=torch.float32)
    v_t = None if var_target is None else torch.as_tensor(var_target, dtype=torch.float32)
    spe = _steps_per_epoch(tr_rows.size, cfg)
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = None
    if cfg.lr_patience is not None and va_rows.size:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                           patience=cfg.lr_patience, threshold=1e-4,
                                                           threshold_mode="abs")
    batches = batch_indices(tr_rows.size, cfg.batch_size, gen)
    best, best_state, since_best = math.inf, None, 0
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        total = 0.0
        for _ in range(spe):
            idx = tr_rows[next(batches).numpy()]
            xb = torch.from_numpy(np.asarray(x[idx], dtype=np.float32)).to(dev)
            it = torch.from_numpy(idx)
            yb = y_t[it].to(dev)
            vb = None if v_t is None else v_t[it].to(dev)
            loss = _loss(model(xb), yb, vb, cfg.mean_variance)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: training loss became {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            hist.steps += 1
            if progress is not None:
                progress(1)
        hist.train_loss.append(total / spe)
        if on_epoch is not None:
            on_epoch(epoch, model)
            model.train()
        if va_rows.size:
            out = torch.from_numpy(predict_normalised(model, x[va_rows], batch_size=max(cfg.batch_size, 16),
                                                      device=dev)).float()
            iv = torch.from_numpy(va_rows)
            vl = _loss(out, y_t[iv], None if v_t is None else v_t[iv], cfg.mean_variance).item()
            hist.val_loss.append(vl)
            if sched is not None:
                sched.step(vl)
            if vl < best:
                best, since_best, hist.best_epoch = vl, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            log.info("%s epoch %d: train %.4f, val %.4f%s (%.0f s)", name, epoch + 1, hist.train_loss[-1], vl,
                     " *" if since_best == 0 else "", time.perf_counter() - t0)
            if since_best >= cfg.patience:
                log.info("%s: early stop after epoch %d (best %d)", name, epoch + 1, hist.best_epoch + 1)
                break
        else:
            hist.best_epoch = epoch
            log.info("%s epoch %d: train %.4f (%.0f s)", name, epoch + 1, hist.train_loss[-1],
                     time.perf_counter() - t0)
    if progress is not None:
        skipped = spe * cfg.epochs - hist.steps
        if skipped > 0:
            progress(skipped)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return hist


#: init-seed offset of each restart
RESTART_SEED_STEP = 1_000_003


@torch.no_grad()
def is_collapsed(model: nn.Module, x: np.ndarray, *, rows: int = 64, device: torch.device | str = "cpu") -> bool:
    """True when the network no longer depends on its input (dead ReLUs).

    The 64-wide ``embed`` activations are compared over the first ``rows`` inputs: when
    the inputs differ but every activation is the same for all of them, a whole layer of
    ReLUs is dead and the network predicts one constant.
    """
    xb = np.asarray(x[:rows])
    if len(xb) < 2 or not np.any(xb.max(axis=0) != xb.min(axis=0)):
        return False  # identical inputs: nothing to tell
    dev = resolve_device(device)
    model.eval()
    emb = torch.cat([model.embed(torch.as_tensor(xb[i:i + 16], dtype=torch.float32, device=dev)).cpu()
                     for i in range(0, len(xb), 16)])
    return float(emb.std(dim=0).max()) < 1e-6


def fit_alive(
    kind: str,
    data: LiverData,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    cfg: LiverTrainConfig,
    init_seed: int,
    fit_seed: int,
    max_restarts: int = 2,
    device: torch.device | str = "cpu",
    **fit_kwargs: Any,
) -> tuple[nn.Module, FitHistory]:
    """A new network trained with :func:`fit_liver`, re-initialised if it collapses to a constant.

    A collapsed network predicts the same value for every input (:func:`is_collapsed`; seen
    once in four student runs on phantoms: a layer's ReLUs all died in the first steps). It is
    re-initialised with ``init_seed + k * RESTART_SEED_STEP`` (k = 1, 2, ...) and trained
    again, at most ``max_restarts`` times; the history records the restarts.
    """
    for k in range(max_restarts + 1):
        model = _new_model(kind, data.input_shape, cfg, init_seed + k * RESTART_SEED_STEP)
        hist = fit_liver(model, data.x, y, groups, cfg=cfg, seed=fit_seed, device=device, **fit_kwargs)
        hist.restarts = k
        train_rows = np.flatnonzero(np.isfinite(y))
        if not is_collapsed(model, data.x[train_rows], device=device):
            return model, hist
        log.warning("%s: the network collapsed to a constant output; re-initialising (%d of %d)",
                    fit_kwargs.get("name", kind), k + 1, max_restarts)
    raise FloatingPointError(f"{fit_kwargs.get('name', kind)}: the network collapsed to a constant output "
                             f"{max_restarts + 1} times; lower the learning rate")


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


def _new_model(kind: str, input_shape, cfg: LiverTrainConfig, seed: int) -> nn.Module:
    model = build_liver_model(kind, mean_variance=cfg.mean_variance, input_shape=input_shape,
                              kernel_size=cfg.kernel_size)
    return init_keras_(model, torch.Generator().manual_seed(seed))


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
) -> CVResult:
    """K-fold cross-validation by participant, then the final network on all rows with a target.

    ``targets`` are liver fat % (NaN = missing, masked), ``target_var`` their
    variance in %^2 (distillation) or None.
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
    histories = []
    for f in range(folds):
        train = labelled & (fold != f)
        test = np.flatnonzero(fold == f)
        y_f = np.where(train, y, np.nan)
        model, hist = fit_alive(kind, data, y_f, groups, cfg=cfg, init_seed=seeds[2 * f], fit_seed=seeds[2 * f + 1],
                                device=device, var_target=v, progress=step, name=f"{kind} fold {f + 1}/{folds}")
        oof_raw[test] = predict_normalised(model, data.x[test], batch_size=cfg.batch_size, device=device)
        histories.append(hist)
        log.info("%s fold %d/%d: %d train, %d val, %d test, best epoch %d", kind, f + 1, folds, hist.n_train,
                 hist.n_val, test.size, hist.best_epoch + 1)
    mean, var = _to_percent(oof_raw, cfg.mean_variance)
    model, final = fit_alive(kind, data, np.where(labelled, y, np.nan), groups, cfg=cfg, init_seed=seeds[2 * folds],
                             fit_seed=seeds[2 * folds + 1], device=device, var_target=v, progress=step,
                             name=f"{kind} final")
    return CVResult(fold, mean, var, histories, model.cpu(), final)


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

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise OutputExistsError("output folder already exists (use overwrite to replace it)", path=out_dir)
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
    dev = resolve_device(device)
    t0 = time.perf_counter()
    cv = run_liver_cv(data, data.labels, kind="teacher", cfg=cfg, folds=folds, seed=seed, device=dev,
                      progress=progress)
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
                     "initialisation": "Keras defaults (Glorot-uniform, zero bias)",
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
