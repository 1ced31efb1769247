"""``ukbmri train``: train, cross-validate and calibrate inference modules.

``ukbmri train body`` trains a body module (MIMIR format) from a folder of
cached MIMIR images and a targets table; see
:func:`ukbmri.train.crossval.train_body_module`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from ukbmri.cli._common import device_option

__all__ = ["train"]


@click.group("train")
def train() -> None:
    """Train, cross-validate and calibrate modules."""


@train.command("body")
@click.option("--images", "images", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of cached MIMIR images <stem>.npy, (3,256,256) uint8.")
@click.option("--targets", "targets", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Targets CSV: a 'name' (image stem) or 'eid' column, one numeric column per target.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Module folder to create (its name is the module name).")
@click.option("--folds", default=10, show_default=True, type=click.IntRange(min=2), help="K-fold cross-validation.")
@click.option("--backbone", default="smallcnn", show_default=True,
              type=click.Choice(["smallcnn", "resnet18", "resnet50"]))
@click.option("--iterations", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Optimiser steps per network (K folds + the final network).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=5e-5, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--lr-step-at", default=None, type=click.IntRange(min=0),
              help="Iteration at which the learning rate drops 10x [default: 80% of --iterations].")
@click.option("--max-shift", default=16, show_default=True, type=click.IntRange(min=0),
              help="Translation augmentation range in pixels.")
@click.option("--seed", default=0, show_default=True, type=int)
@device_option
@click.option("--target-info", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV name,field,unit,divisor overriding the target metadata.")
@click.option("--targets-only", default=None, help="Comma-separated target columns to train on.")
@click.option("--demo/--no-demo", default=False, show_default=True,
              help="Mark the module demonstration-only (trained on synthetic data).")
@click.option("--overwrite", is_flag=True, help="Replace an existing module folder once the new one is complete.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG figures.")
def body(
    images: Path, targets: Path, out: Path, folds: int, backbone: str, iterations: int, batch_size: int,
    lr: float, lr_step_at: int | None, max_shift: int, seed: int, device: str, target_info: Path | None,
    targets_only: str | None, demo: bool, overwrite: bool, no_plots: bool,
) -> None:
    """Cross-validate, calibrate and train a body module from cached images and a targets table."""
    import pandas as pd

    from ukbmri.train.crossval import METRICS_CSV, total_iterations, train_body_module
    from ukbmri.train.report import format_summary

    only = [c.strip() for c in targets_only.split(",") if c.strip()] if targets_only else None
    total = total_iterations(folds, iterations)
    with contextlib.ExitStack() as stack:
        bars: list = []

        def progress(n: int) -> None:  # the bar opens at the first step, after inputs were checked
            if not bars:
                bars.append(stack.enter_context(click.progressbar(
                    length=total, label=f"training {folds}+1 networks", file=sys.stderr, show_pos=True)))
            bars[0].update(n)

        folder = train_body_module(
            images, targets, out, folds=folds, backbone=backbone, iterations=iterations, batch_size=batch_size,
            lr=lr, lr_step_at=lr_step_at, max_shift=max_shift, seed=seed, device=device, target_info=target_info,
            targets_only=only, demonstration_only=demo, overwrite=overwrite, plots=not no_plots,
            progress=progress,
        )
    metrics = pd.read_csv(folder / METRICS_CSV, keep_default_na=False, na_values=[""])
    click.echo(f"module written to {folder}")
    click.echo(f"{folds}-fold cross-validation (out-of-fold predictions):")
    click.echo(format_summary(metrics))


def _register_liver() -> None:
    from ukbmri.cli.liver_train import liver_teacher

    train.add_command(liver_teacher)


_register_liver()
