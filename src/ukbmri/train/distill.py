"""The ml4h student: distil the liver teacher (20203 GRE) into a network on 20254 IDEAL.

Workflow (Haas et al. 2021)
---------------------------
1. The teacher infers liver fat on every 20203 scan given
   (``teacher_predictions.csv``, kept in the student folder).
2. The student (:class:`~ukbmri.models.ml4h_liver.LiverStudent`, input
   ``(36, 232, 256)``) trains on the participants with both protocols, joined
   by (eid, instance), with the teacher's predictions as targets (TensorMap
   ``liver_fat_echo_predicted``, same standardisation as ``liver_fat``).
   IDEAL scans without a teacher prediction are masked, never given a
   made-up target.
3. K-fold cross-validation by participant reports student-versus-teacher
   agreement and, with a truth / label table, student and teacher versus the
   truth on the same participants; then the final student is trained on all
   joined participants.

Mean-variance student
---------------------
With a mean-variance teacher, the student learns the teacher's mean *and*
its (calibrated) variance: the loss is ``exp(-s)((m_t - mu)^2 + v_t) + s``,
minimised by ``exp(s) = (m_t - mu)^2 + v_t`` (the expected squared error
against the truth if the teacher's Gaussian is right). Its variance is
therefore already in calibrated units; when truth labels are given the
calibration factor is recomputed from the student's out-of-fold predictions
against the truth, otherwise it is 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ukbmri.errors import TargetsError
from ukbmri.infer.liver_nets import load_liver_net, predict_prepared
from ukbmri.io.atomic import require_free_folder
from ukbmri.models import resolve_device
from ukbmri.models.ml4h_liver import liver_fat_interval
from ukbmri.train.calibration import calibration_factor
from ukbmri.train.liver import FOLD_RULE, Progress, initialisation_info, run_liver_cv
from ukbmri.train.liver_data import (
    DEFAULT_LABEL_COLUMN,
    LabelTable,
    LiverData,
    build_liver_data,
    read_label_table,
)
from ukbmri.train.liver_fit import LiverTrainConfig, load_warm_start
from ukbmri.train.liver_report import (
    figure_writers,
    history_info,
    liver_report,
    predictions_frame,
    write_liver_folder,
)

__all__ = ["TEACHER_PREDICTIONS", "teacher_predictions", "distill"]

log = logging.getLogger(__name__)

TEACHER_PREDICTIONS = "teacher_predictions.csv"
_MIN_CALIBRATION_ROWS = 10


def teacher_predictions(net, data: LiverData, *, batch_size: int = 8, device=None) -> pd.DataFrame:
    """Teacher liver fat % (and calibrated variance) for every sample of a teacher :class:`LiverData`."""
    if tuple(data.input_shape) != tuple(net.input_shape):
        raise TargetsError("teacher inputs do not have the teacher's input shape",
                           expected=net.input_shape, found=data.input_shape)
    mean, var = predict_prepared(net, data.x, batch_size=batch_size, device=device)
    df = pd.DataFrame({"eid": data.eids, "instance": data.instances, "input": list(data.sources),
                       "teacher_liver_fat_percent": mean})
    if var is not None:
        lo, hi = liver_fat_interval(mean, var, 0.95)
        df["teacher_variance_percent2"] = var
        df["teacher_lower_95_percent"], df["teacher_upper_95_percent"] = lo, hi
    return df


def _as_data(inputs, kind: str, *, input_hw, workers: int) -> LiverData:
    if isinstance(inputs, LiverData):
        if inputs.kind != kind:
            raise ValueError(f"expected {kind} data, got {inputs.kind!r}")
        return inputs
    return build_liver_data(list(inputs), kind=kind, input_hw=input_hw, workers=workers)


def distill(
    teacher_dir: str | PathLike[str],
    gre_inputs: Iterable[str | PathLike[str]] | LiverData,
    ideal_inputs: Iterable[str | PathLike[str]] | LiverData,
    out_dir: str | PathLike[str],
    *,
    labels: str | PathLike[str] | LabelTable | None = None,
    label_column: str = DEFAULT_LABEL_COLUMN,
    folds: int = 10,
    epochs: int = 108,
    patience: int = 24,
    batch_size: int = 5,
    lr: float = 2e-4,
    steps_per_epoch: int | None = None,
    validation_fraction: float = 0.1,
    lr_patience: int | None = 8,
    mean_variance: bool | None = None,
    kernel_size: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    workers: int = 1,
    input_hw: tuple[int, int] | None = None,
    demonstration_only: bool | None = None,
    overwrite: bool = False,
    plots: bool = True,
    progress: Progress | None = None,
    init_from: str | PathLike[str] | None = None,
) -> Path:
    """Train the liver student on the teacher's predictions; write its weights folder.

    Parameters
    ----------
    teacher_dir:
        A teacher weights folder (:func:`ukbmri.infer.liver_nets.load_liver_net`).
    gre_inputs, ideal_inputs:
        20203 / 20254 inputs (zips, folders, ml4h hd5 files; the same folder
        may be given for both) or already built :class:`LiverData`.
    labels, label_column:
        Optional truth table: adds student-versus-truth and
        teacher-versus-truth metrics (never used as training targets).
    mean_variance:
        Student head; default: the teacher's.
    batch_size:
        ml4h's student batch is 5.
    input_hw:
        Student input size override (tests); the GRE tensors always follow
        the teacher's input shape.
    demonstration_only:
        Default: the teacher's flag.
    init_from:
        A student weights folder to start every fold and the final network from
        (warm start) instead of a random initialisation; same network required
        (:class:`~ukbmri.errors.ModuleError` otherwise); recorded in model.json.

    Other parameters as :func:`ukbmri.train.liver.train_teacher`.
    """
    out_dir = Path(out_dir)
    require_free_folder(out_dir, overwrite=overwrite)
    dev = resolve_device(device)
    teacher = load_liver_net(teacher_dir, device=dev)
    if teacher.kind != "teacher":
        raise TargetsError("the teacher folder holds a student network", path=teacher_dir,
                           expected="kind teacher", found=teacher.kind)
    mv = teacher.mean_variance if mean_variance is None else bool(mean_variance)
    demo = teacher.demonstration_only if demonstration_only is None else bool(demonstration_only)
    cfg = LiverTrainConfig(epochs, patience, batch_size, lr, steps_per_epoch, validation_fraction, mv, kernel_size,
                           lr_patience)
    table = read_label_table(labels, label_column) if isinstance(labels, (str, PathLike)) else labels

    gre = _as_data(gre_inputs, "teacher", input_hw=tuple(teacher.input_shape[1:]), workers=workers)
    t_pred = teacher_predictions(teacher, gre, batch_size=8, device=dev)
    if table is not None:
        t_pred["truth_percent"] = table.lookup_many(t_pred["eid"], t_pred["instance"])
    ideal = _as_data(ideal_inputs, "student", input_hw=input_hw, workers=workers)
    by_key = {(int(e), int(i)): n for n, (e, i) in enumerate(zip(t_pred["eid"], t_pred["instance"], strict=True))}
    match = np.array([by_key.get(k, -1) for k in ideal.keys])
    has_teacher = match >= 0
    if has_teacher.sum() < 2:
        raise TargetsError("fewer than 2 participants have both a 20203 and a 20254 scan",
                           expected="participants (eid, instance) with both protocols", found=int(has_teacher.sum()))
    target = np.where(has_teacher, t_pred["teacher_liver_fat_percent"].to_numpy()[np.maximum(match, 0)], np.nan)
    target_var = None
    if mv and "teacher_variance_percent2" in t_pred:
        target_var = np.where(has_teacher, t_pred["teacher_variance_percent2"].to_numpy()[np.maximum(match, 0)],
                              np.nan)
    truth = table.lookup_many(ideal.eids, ideal.instances) if table is not None else None
    log.info("student: %d IDEAL samples, %d with a teacher prediction, %d GRE samples", len(ideal),
             int(has_teacher.sum()), len(gre))

    warm = None if init_from is None else load_warm_start(init_from, kind="student", input_shape=ideal.input_shape,
                                                           cfg=cfg)
    t0 = time.perf_counter()
    cv = run_liver_cv(ideal, target, kind="student", cfg=cfg, folds=folds, seed=seed, device=dev,
                      target_var=target_var, progress=progress, warm_start=warm)
    comparisons = {"student_vs_teacher": liver_report(target, cv.mean)}
    calibration, basis = 1.0, None
    if cv.var is not None:
        basis = "teacher's calibrated variance (distillation loss); no truth table"
        if truth is not None and np.sum(np.isfinite(truth) & np.isfinite(cv.mean)) >= _MIN_CALIBRATION_ROWS:
            calibration = calibration_factor(truth, cv.mean, cv.var)
            basis = "out-of-fold student predictions against the truth table"
    if truth is not None:
        comparisons["student_vs_truth"] = liver_report(truth, cv.mean, cv.var, calibration=calibration
                                                       if cv.var is not None else None)
        t_var = target_var if target_var is not None else None
        comparisons["teacher_vs_truth"] = liver_report(truth, target, t_var, calibration=1.0
                                                       if t_var is not None else None)
    info = {
        "demonstration_only": demo,
        "n_train": int(has_teacher.sum()),
        "teacher": {"folder": None if teacher.folder is None else str(teacher.folder),
                    "source": None if teacher.source is None else str(teacher.source), "origin": teacher.origin,
                    "weights_sha256": teacher.weights_sha256,
                    "mean_variance": teacher.mean_variance, "calibration_factor": teacher.calibration},
        "training_data": {
            "kind": "student",
            "input_tensor_map": ideal.tensor_map,
            "targets": "teacher predictions (TensorMap liver_fat_echo_predicted)",
            "n_gre_samples": len(gre),
            "n_ideal_samples": len(ideal),
            "n_joined": int(has_teacher.sum()),
            "n_failures": len(gre.failures) + len(ideal.failures),
            "failures": [f.one_line() for f in (*gre.failures, *ideal.failures)][:50],
            "truth": None if table is None else f"{table.path}[{table.column}]",
        },
        "training": {**asdict(cfg), "optimizer": "Adam", "seed": seed, "device": str(dev),
                     "loss": "exp(-s)((m_t-mu)^2+v_t)+s" if mv else "log-cosh",
                     **initialisation_info(warm),
                     "history": history_info(cv), "seconds": round(time.perf_counter() - t0, 1)},
        "cross_validation": {"folds": folds, "fold_assignment": FOLD_RULE, "calibration": basis},
    }
    preds = predictions_frame(ideal, cv, calibration, reference=target, reference_name="teacher")
    if truth is not None:
        preds.insert(5, "truth_percent", truth)
    figures = (figure_writers(cv, target if truth is None else truth, calibration, name="student",
                              reference_label="teacher" if truth is None else "truth") if plots else [])
    failures = [f.__dict__ for f in (*gre.failures, *ideal.failures)]
    extra = {"teacher_predictions.csv": t_pred}
    if failures:
        extra["failures.csv"] = pd.DataFrame(failures)
    write_liver_folder(out_dir, kind="student", model=cv.model, calibration=calibration, info=info,
                       predictions=preds, comparisons=comparisons, figures=figures, extra_csv=extra,
                       overwrite=overwrite)
    r = comparisons["student_vs_teacher"]
    log.info("student written to %s: vs teacher MAE %.3f %%, r %.3f", out_dir, r["mae"], r["pearson_r"])
    return out_dir
