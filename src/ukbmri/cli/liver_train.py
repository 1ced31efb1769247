"""``ukbmri train liver-teacher`` and ``ukbmri distill``: the ml4h liver-fat teacher / student workflow.

* ``liver-teacher`` cross-validates, calibrates and trains the teacher on
  20203 zips (or ml4h hd5 tensors) with liver fat labels
  (:func:`ukbmri.train.liver.train_teacher`).
* ``distill`` runs the teacher on every 20203 scan and trains the student on
  the 20254 scans of the same participants
  (:func:`ukbmri.train.distill.distill`).

Both write a weights folder (``weights.pt`` + ``model.json`` + the
cross-validation report) and print a short metrics summary.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from ukbmri.cli._common import device_option

__all__ = ["liver_teacher", "distill", "format_liver_metrics"]


def _g(x, fmt: str) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else format(v, fmt)


def format_liver_metrics(metrics: dict) -> str:
    """One line per comparison: n, MAE, r, R^2, Bland-Altman bias, steatosis accuracy, 95 % coverage."""
    lines = [f"{'comparison':<20} {'n':>5} {'MAE %':>7} {'r':>6} {'R2':>6} {'bias %':>7} "
             f"{'acc@5.5':>7} {'cov95':>6} {'c':>6}"]
    for name, m in metrics.items():
        lines.append(
            f"{name[:20]:<20} {int(m.get('n') or 0):>5} {_g(m.get('mae'), '.3f'):>7} "
            f"{_g(m.get('pearson_r'), '.3f'):>6} {_g(m.get('r2'), '.3f'):>6} {_g(m.get('ba_bias'), '.3f'):>7} "
            f"{_g(m.get('accuracy'), '.3f'):>7} {_g(m.get('coverage_95_calibrated'), '.3f'):>6} "
            f"{_g(m.get('calibration_factor'), '.3g'):>6}"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _step_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """progress(advance, total) for the trainers; the bar opens at the first step."""
    with contextlib.ExitStack() as stack:
        bars: list = []

        def progress(n: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(click.progressbar(
                    length=total, label=label, file=sys.stderr, show_pos=True)))
            bars[0].update(n)

        yield progress


def _common(f):
    opts = [
        click.option("--input", "inputs", multiple=True, required=True,
                     type=click.Path(exists=True, path_type=Path),
                     help="Zips, folders of zips, or ml4h hd5 files / folders (repeatable)."),
        click.option("--out", "out", required=True, type=click.Path(path_type=Path),
                     help="Weights folder to create."),
        click.option("--folds", default=10, show_default=True, type=click.IntRange(min=2),
                     help="K-fold cross-validation by participant."),
        click.option("--epochs", default=108, show_default=True, type=click.IntRange(min=1),
                     help="Maximum epochs per network (ml4h: 108)."),
        click.option("--patience", default=24, show_default=True, type=click.IntRange(min=1),
                     help="Early stopping: epochs without a better validation loss (ml4h: 24)."),
        click.option("--lr-patience", default=8, show_default=True, type=click.IntRange(min=1),
                     help="Halve the learning rate after this many epochs without a better validation loss."),
        click.option("--steps-per-epoch", default=None, type=click.IntRange(min=1),
                     help="Batches per epoch [default: one pass over the training rows]."),
        click.option("--lr", default=2e-4, show_default=True, type=click.FloatRange(min=0, min_open=True)),
        click.option("--seed", default=0, show_default=True, type=int),
        device_option,
        click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Processes reading zips."),
        click.option("--demo/--no-demo", "demo", default=None,
                     help="Mark the weights demonstration-only (trained on synthetic data)."),
        click.option("--overwrite", is_flag=True, help="Replace an existing folder once the new one is complete."),
        click.option("--no-plots", is_flag=True, help="Skip the PNG figures."),
        click.option("--input-hw", "input_hw", nargs=2, type=int, default=None, hidden=True,
                     help="Top-left pad/crop inputs to H W (small networks for tests / experiments)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f



def _summary(folder: Path, what: str, folds: int) -> None:
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    click.echo(f"{what} written to {folder}")
    click.echo(f"{folds}-fold cross-validation (out-of-fold predictions):")
    click.echo(format_liver_metrics(metrics))


@click.command("liver-teacher")
@_common
@click.option("--labels", required=False, default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labels CSV with an 'eid' column (optional 'instance'); default: the hd5 files' ml4h labels "
                   "(/continuous/22402_Liver-fat-percentage_<instance>_0, else /continuous/liver_fat).")
@click.option("--label-column", default="liver_pdff_percent", show_default=True,
              help="Liver fat (%) column (UK Biobank style '22402-2.0' accepted).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--mean-variance/--no-mean-variance", default=True, show_default=True,
              help="(mean, log-variance) head with Gaussian NLL, or ml4h's point head with log-cosh.")
def liver_teacher(inputs, out, folds, epochs, patience, lr_patience, steps_per_epoch, lr, seed, device, workers, demo,
                  overwrite, no_plots, input_hw, labels, label_column, batch_size, mean_variance) -> None:
    """Cross-validate, calibrate and train the ml4h liver-fat teacher (20203 multi-echo GRE)."""
    from ukbmri.train.liver import train_teacher

    with _step_bar(f"training teacher ({folds} folds + final)") as progress:
        folder = train_teacher(
            inputs, out, labels=labels, label_column=label_column, folds=folds, epochs=epochs, patience=patience,
            lr_patience=lr_patience,
            batch_size=batch_size, lr=lr, steps_per_epoch=steps_per_epoch, mean_variance=mean_variance, seed=seed,
            device=device, workers=workers, demonstration_only=bool(demo), overwrite=overwrite, plots=not no_plots,
            input_hw=tuple(input_hw) if input_hw else None, progress=progress,
        )
    _summary(folder, "teacher", folds)


@click.command("distill")
@click.option("--teacher", "teacher", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Teacher weights folder.")
@_common
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Optional truth table: adds student/teacher versus truth metrics (not used for training).")
@click.option("--label-column", default="liver_pdff_percent", show_default=True)
@click.option("--batch-size", default=5, show_default=True, type=click.IntRange(min=1), help="ml4h student: 5.")
@click.option("--mean-variance/--no-mean-variance", default=None,
              help="Student head [default: the teacher's].")
def distill(teacher, inputs, out, folds, epochs, patience, lr_patience, steps_per_epoch, lr, seed, device, workers, demo,
            overwrite, no_plots, input_hw, labels, label_column, batch_size, mean_variance) -> None:
    """Train the liver student (20254 IDEAL) on the teacher's predictions (ml4h workflow).

    --input may list one folder holding both 20203 and 20254 zips: the
    teacher reads the 20203 scans, the student the 20254 scans.
    """
    from ukbmri.train.distill import distill as run_distill

    with _step_bar(f"training student ({folds} folds + final)") as progress:
        folder = run_distill(
            teacher, inputs, inputs, out, labels=labels, label_column=label_column, folds=folds, epochs=epochs,
            lr_patience=lr_patience,
            patience=patience, batch_size=batch_size, lr=lr, steps_per_epoch=steps_per_epoch,
            mean_variance=mean_variance, seed=seed, device=device, workers=workers, demonstration_only=demo,
            overwrite=overwrite, plots=not no_plots, input_hw=tuple(input_hw) if input_hw else None,
            progress=progress,
        )
    _summary(folder, "student", folds)
