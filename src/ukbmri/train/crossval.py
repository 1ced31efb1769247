"""K-fold cross-validation, calibration and the final snapshot of a body module.

``train_body_module`` does what MIMIR's cross-validation code does, with the
defects fixed:

1. Folds by participant: the participants (eids parsed from the image stems;
   an unparsable stem is its own participant) are put in a seeded random
   order and dealt round-robin into K folds, so all visits of one person are
   in one fold and fold sizes differ by at most one participant.
2. For each fold, targets are standardised on the training folds only
   (mean, SD with ddof = 1, ignoring gaps), a fresh network is trained and the
   held-out fold is predicted (no augmentation). Out-of-fold predictions are
   de-standardised with the module formula (:func:`ukbmri.infer.postprocess.postprocess_arrays`),
   i.e. in the module's output units (divided by the divisor).
3. Per target: MAE, MAPE, R^2, ICC(A,1), Bland-Altman, coverage at
   50/80/90/95 % and AUCE before and after calibration; the calibration factor
   is :func:`ukbmri.train.calibration.calibration_factor` of the out-of-fold
   predictions.
4. The final network is trained on all images (standardisation from all
   data) and saved with the CV calibration factors.

The module folder is assembled in a hidden temporary sibling and renamed into
place at the very end, so a killed run leaves no half module (and an
existing module is only replaced with ``overwrite=True``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ukbmri.errors import TargetsError
from ukbmri.infer.postprocess import postprocess_arrays
from ukbmri.io.atomic import atomic_path, require_free_folder, staged_folder
from ukbmri.models import BACKBONES, build_backbone, resolve_device, split_mean_logvar
from ukbmri.modules import Target, save_module
from ukbmri.train.calibration import calibration_search
from ukbmri.train.data import BodyData, load_body_data
from ukbmri.train.loop import fit, predict_raw
from ukbmri.train.metrics import REPORT_LEVELS, binary_accuracy, regression_report
from ukbmri.train.plots import plot_losses, plot_target, safe_filename

__all__ = [
    "TrainConfig",
    "assign_folds",
    "standardisation",
    "total_iterations",
    "default_thresholds",
    "train_body_module",
    "CV_PREDICTIONS",
    "METRICS_CSV",
    "PLOTS_DIR",
]

log = logging.getLogger(__name__)

CV_PREDICTIONS = "cv_predictions.csv"
METRICS_CSV = "metrics.csv"
PLOTS_DIR = "plots"
FOLD_RULE = "by participant (eid): seeded random order of participants dealt round-robin into K folds"
CALIBRATION_RULE = (
    "variance factor c per target from the out-of-fold predictions: the smallest c (relative tolerance 1e-6, "
    "bisection in log c, first midpoint mean(z^2)) at which mean over p in 0.10..1.00 of (coverage_c(p) - p) >= 0"
)
AUCE_RULE = (
    "mean |coverage(p) - p| over p = 0.10, 0.11, ..., 1.00; coverage(p) = mean(|y - mu| / sigma <= Phi^-1(0.5 + p/2))"
)
_DESCRIPTIVE = ("target", "column", "field", "unit", "divisor")
_STEATOSIS = re.compile(r"pdff|liver_?fat", re.IGNORECASE)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (MIMIR's defaults except for the backbone)."""

    backbone: str = "smallcnn"
    iterations: int = 10_000
    batch_size: int = 32
    lr: float = 5e-5
    lr_step_at: int | None = None  #: default 80 % of the iterations
    lr_factor: float = 0.1
    max_shift: int = 16


def total_iterations(folds: int, iterations: int) -> int:
    """Optimiser steps of a whole run: one network per fold plus the final one."""
    return (folds + 1) * iterations


def assign_folds(groups: Sequence[object], k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index (0..k-1) per row; all rows of a group share a fold (round-robin over a random order)."""
    uniq, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    if not 2 <= k <= len(uniq):
        raise ValueError(f"need 2 <= folds <= number of participants ({len(uniq)}), got {k}")
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    fold_of_group[rng.permutation(len(uniq))] = np.arange(len(uniq)) % k
    return fold_of_group[inverse]


def standardisation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and SD (ddof = 1) ignoring NaN; a column with < 2 values or SD 0 gets SD 1."""
    values = np.asarray(values, dtype=np.float64)
    count = np.isfinite(values).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        mean = np.where(count > 0, np.nanmean(values, axis=0), 0.0)
        sd = np.where(count > 1, np.nanstd(values, axis=0, ddof=1), np.nan)
    bad = ~np.isfinite(sd) | (sd <= 0)
    if bad.any():
        log.warning("%d target(s) with fewer than 2 distinct values in a training set: SD set to 1", int(bad.sum()))
    return mean, np.where(bad, 1.0, sd)


def default_thresholds(targets: Sequence[Target]) -> dict[str, float]:
    """Threshold calls reported by default: steatosis (liver PDFF >= 5.5 %) for liver-fat targets in %."""
    return {t.name: 5.5 for t in targets if t.unit == "%" and _STEATOSIS.search(t.name)}


def _seeds(seed: int, n_runs: int) -> tuple[np.random.Generator, list[tuple[int, int]]]:
    """A fold-assignment RNG and (init, training) torch seeds per run, all from one SeedSequence."""
    ss = np.random.SeedSequence(seed)
    children = ss.spawn(n_runs + 1)
    runs = [tuple(int(x) for x in c.generate_state(2, dtype=np.uint32)) for c in children[1:]]
    return np.random.default_rng(children[0]), runs  # type: ignore[return-value]


def _train_one(
    images: np.ndarray,
    targets_std: np.ndarray,
    rows: np.ndarray,
    cfg: TrainConfig,
    seeds: tuple[int, int],
    device: torch.device,
    progress: Callable[[int], None] | None,
):
    n_t = targets_std.shape[1]
    model = build_backbone(cfg.backbone, 2 * n_t, generator=torch.Generator().manual_seed(seeds[0]))
    return fit(
        model, images, targets_std, iterations=cfg.iterations, batch_size=cfg.batch_size, lr=cfg.lr,
        lr_step_at=cfg.lr_step_at, lr_factor=cfg.lr_factor, max_shift=cfg.max_shift,
        generator=torch.Generator().manual_seed(seeds[1]), device=device, progress=progress, indices=rows,
    )


def _jsonable(x: Any) -> Any:
    """NaN/inf -> None, numpy -> Python, recursively (module.json must be strict JSON)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _metrics_rows(
    data: BodyData, y: np.ndarray, mean: np.ndarray, var: np.ndarray, thresholds: Mapping[str, float]
) -> tuple[list[dict[str, Any]], np.ndarray]:
    rows, factors = [], np.ones(y.shape[1])
    for t, target in enumerate(data.targets):
        yt, mt, vt = y[:, t], mean[:, t], var[:, t]
        try:
            search = calibration_search(yt, mt, vt)
            factors[t] = search.factor
        except ValueError:
            log.warning("target %s: no valid out-of-fold prediction, calibration factor 1", target.name)
        raw = regression_report(yt, mt, vt)
        cal = regression_report(yt, mt, vt * factors[t])
        row: dict[str, Any] = {
            "target": target.name, "column": data.columns[t], "field": target.field,
            "unit": target.unit, "divisor": target.divisor,
        }
        row.update({k: raw[k] for k in ("n", "mae", "mape_percent", "r2", "pearson_r", "icc",
                                        "ba_bias", "ba_lower", "ba_upper")})
        row["calibration_factor"] = float(factors[t])
        for tag, rep in (("uncalibrated", raw), ("calibrated", cal)):
            for p in REPORT_LEVELS:
                row[f"coverage_{round(100 * p)}_{tag}"] = rep[f"coverage_{round(100 * p)}"]
            row[f"auce_{tag}"] = rep["auce"]
        row["ause"], row["ause_relative"] = cal["ause"], cal["ause_relative"]
        thr = thresholds.get(target.name)
        acc = binary_accuracy(yt, mt, thr) if thr is not None else {}
        row["threshold"] = float("nan") if thr is None else float(thr)
        for k in ("accuracy", "sensitivity", "specificity"):
            row[f"threshold_{k}"] = acc.get(k, float("nan"))
        rows.append(row)
    return rows, factors


def _predictions_frame(data: BodyData, folds: np.ndarray, y, mean, var, factors) -> pd.DataFrame:
    cols: dict[str, Any] = {"name": list(data.names), "eid": data.eids, "fold": folds}
    for t, target in enumerate(data.targets):
        u = target.unit
        cols[f"{target.name}_reference_in_{u}"] = y[:, t]
        cols[f"{target.name}_mean_in_{u}"] = mean[:, t]
        cols[f"{target.name}_variance_in_{u}"] = var[:, t] * factors[t]
        cols[f"{target.name}_uncalibrated_variance_in_{u}"] = var[:, t]
    return pd.DataFrame(cols)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)


def train_body_module(
    images_dir: str | PathLike[str],
    targets_csv: str | PathLike[str],
    out_dir: str | PathLike[str],
    *,
    folds: int = 10,
    backbone: str = "smallcnn",
    iterations: int = 10_000,
    batch_size: int = 32,
    lr: float = 5e-5,
    lr_step_at: int | None = None,
    max_shift: int = 16,
    seed: int = 0,
    device: str | torch.device = "cpu",
    target_info: str | PathLike[str] | None = None,
    targets_only: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    demonstration_only: bool = False,
    overwrite: bool = False,
    plots: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Cross-validate, calibrate and train a body inference module (see the module docstring).

    Parameters
    ----------
    images_dir:
        Folder of cached MIMIR images ``<stem>.npy``.
    targets_csv:
        Targets table (see :mod:`ukbmri.train.data` for the id columns and units).
    out_dir:
        The module folder to create (its name is the module name).
    folds:
        K of the K-fold cross-validation (2 <= K <= number of participants).
    backbone, iterations, batch_size, lr, lr_step_at, max_shift:
        Training settings, per network (see :func:`ukbmri.train.loop.fit`).
    seed:
        Seeds the fold assignment, every network initialisation and every
        batch order / augmentation; the same seed gives the same module on
        the same hardware.
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    target_info:
        Optional ``name,field,unit,divisor`` CSV overriding the target metadata.
    targets_only:
        Train on these target columns only.
    thresholds:
        Target name -> threshold for accuracy / sensitivity / specificity of a
        threshold call; default :func:`default_thresholds`.
    demonstration_only:
        Recorded in module.json: set it for modules trained on synthetic data.
    overwrite:
        Replace an existing module folder (only once the new one is complete).
    plots:
        Write the PNG figures.
    progress:
        Called with 1 after every optimiser step of every network
        (:func:`total_iterations` calls in all).

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    require_free_folder(out_dir, overwrite=overwrite, hint="use --overwrite to replace it")
    cfg = TrainConfig(backbone, iterations, batch_size, lr, lr_step_at, 0.1, max_shift)
    if iterations < 1 or batch_size < 1:
        raise ValueError("iterations and batch size must be >= 1")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(sorted(BACKBONES))}")
    dev = resolve_device(device)

    data = load_body_data(images_dir, targets_csv, target_info=target_info, only=targets_only)
    groups = [f"eid{e}" if e >= 0 else f"name:{n}" for e, n in zip(data.eids, data.names, strict=True)]
    n_participants = len(set(groups))
    if not 2 <= folds <= n_participants:
        raise TargetsError(f"cannot split {n_participants} participants into {folds} folds",
                           path=data.targets_csv, expected=f"2 <= folds <= {n_participants}", found=folds)
    divisors = np.array([t.divisor for t in data.targets])
    thresholds = default_thresholds(data.targets) if thresholds is None else dict(thresholds)
    fold_rng, run_seeds = _seeds(seed, folds + 1)
    fold_of = assign_folds(groups, folds, fold_rng)
    n, n_t = data.values.shape
    log.info("training %s on %d images (%d participants), %d targets, %d folds",
             backbone, n, n_participants, n_t, folds)

    oof_mean = np.full((n, n_t), np.nan)
    oof_var = np.full((n, n_t), np.nan)
    losses, labels = [], []
    for f in range(folds):
        t0 = time.perf_counter()
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        m, s = standardisation(data.values[train])
        result = _train_one(data.images, (data.values - m) / s, train, cfg, run_seeds[f], dev, progress)
        raw = torch.as_tensor(predict_raw(result.model, data.images, batch_size=batch_size, device=dev, indices=test))
        mu, logvar = split_mean_logvar(raw, n_t)
        oof_mean[test], oof_var[test] = postprocess_arrays(mu.numpy(), logvar.numpy(), m, s, np.ones(n_t), divisors)
        losses.append(result.losses)
        labels.append(f"fold {f}")
        log.info("fold %d/%d: %d train, %d test, %.1f s", f + 1, folds, train.size, test.size, time.perf_counter() - t0)

    y = data.values / divisors
    rows, factors = _metrics_rows(data, y, oof_mean, oof_var, thresholds)

    mean_all, sd_all = standardisation(data.values)
    final = _train_one(data.images, (data.values - mean_all) / sd_all, np.arange(n), cfg, run_seeds[folds], dev,
                       progress)
    losses.append(final.losses)
    labels.append("final")

    tail = max(1, iterations // 20)
    info = {
        "kind": "body",
        "demonstration_only": bool(demonstration_only),
        "training_data": {
            "images_dir": str(data.images_dir),
            "targets_csv": str(data.targets_csv),
            "targets_csv_sha256": _sha256(data.targets_csv),
            "target_info": None if target_info is None else str(target_info),
            "n_images": n,
            "n_participants": n_participants,
            "targets": [
                {"name": t.name, "column": c, "unit": t.unit, "n": int(np.isfinite(v).sum()),
                 "mean": float(np.nanmean(v)), "sd": float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else None,
                 "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
                for t, c, v in zip(data.targets, data.columns, data.values.T, strict=True)
            ],
        },
        "training": {
            **asdict(cfg),
            "lr_step_at": cfg.lr_step_at if cfg.lr_step_at is not None else int(0.8 * iterations),
            "optimizer": "Adam",
            "loss": "mean over B*T of m * (exp(-s) (y - mu)^2 + s), m = 0 for missing targets",
            "batch_sampling": "epoch shuffles (consecutive random permutations cut into batches)",
            "augmentation": f"random integer translation up to +-{max_shift} px per axis, edge replication",
            "seed": seed,
            "device": str(dev),
            "final_loss": [float(np.mean(c[-tail:])) for c in losses],
        },
        "cross_validation": {
            "folds": folds,
            "fold_assignment": FOLD_RULE,
            "fold_sizes": [int((fold_of == f).sum()) for f in range(folds)],
            "calibration_rule": CALIBRATION_RULE,
            "auce_definition": AUCE_RULE,
        },
        "metrics": {r["target"]: {k: v for k, v in r.items() if k not in _DESCRIPTIVE} for r in rows},
    }

    with staged_folder(out_dir, overwrite=overwrite) as module_tmp:
        save_module(module_tmp, model=final.model.cpu(), backbone=backbone, targets=data.targets,
                    mean=mean_all, sd=sd_all, calibration=factors, info=_jsonable(info))
        _write_csv(_predictions_frame(data, fold_of, y, oof_mean, oof_var, factors), module_tmp / CV_PREDICTIONS)
        _write_csv(pd.DataFrame(rows), module_tmp / METRICS_CSV)
        if plots:
            for t, target in enumerate(data.targets):
                plot_target(module_tmp / PLOTS_DIR / f"{safe_filename(target.name)}.png", name=target.name,
                            unit=target.unit, y=y[:, t], mean=oof_mean[:, t], var_uncalibrated=oof_var[:, t],
                            var_calibrated=oof_var[:, t] * factors[t])
            plot_losses(module_tmp / PLOTS_DIR / "training_loss.png", losses, labels)
    log.info("wrote module %s", out_dir)
    return out_dir
