"""``ukbmri infer body`` / ``ukbmri infer liver``."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from ukbmri.cli._common import (
    backend_options,
    device_option,
    module_bars,
    progress,
    report_failures,
    workers_option,
)


@click.group()
def infer() -> None:
    """Run inference on zips or caches."""


@infer.command("body")
@click.option("--input", "inputs", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="Zips, folders of zips, or a cache folder of MIMIR .npy images (repeatable).")
@click.option("--modules", "module_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Inference module folders (repeatable; a missing one is skipped with a message).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (resumed if it exists).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Image cache for zips (default OUT/cache).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp32-cl", "bf16"]), default="fp32", show_default=True,
              help="fp32-cl: channels-last fp32 (within 2e-5 of fp32, faster on CPU); bf16: autocast, fastest, opt-in (differs from fp32 beyond 1e-3).")
@device_option
@workers_option
@backend_options
def body(inputs, module_dirs, out, cache_dir, batch_size, precision, device, workers, backend, scheduler) -> None:
    """Body-composition predictions with variances and 95 % intervals.

    Writes OUT/<module>/predictions.csv (MIMIR layout), OUT/body.csv and OUT/body.parquet,
    and OUT/failures.csv. Exit status 1 if any participant or module failed.
    """
    from ukbmri.engine.body import infer_body, split_inputs

    zips, _ = split_inputs(inputs)
    with ExitStack() as pre, module_bars() as advance_module:
        advance = pre.enter_context(progress(len(zips), "preprocess body"))

        def on_module(*args) -> None:
            pre.close()  # preprocessing is over: finish its bar before the first module's
            advance_module(*args)

        run = infer_body(
            inputs, module_dirs, out, cache_dir=cache_dir, batch_size=batch_size, device=device,
            precision=precision, workers=workers, backend=backend, scheduler=scheduler, progress=advance,
            module_progress=on_module,
        )
    click.echo(f"{len(run.table)} participants x {len(module_dirs) - len(run.module_failures)} modules -> {out / 'body.csv'}")
    report_failures(run.failures, out / "failures.csv")
    if run.failures:
        raise click.exceptions.Exit(1)


@infer.command("liver")
@click.option("--input", "inputs", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="20203 / 20254 zips or folders of zips (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (resumed if it exists).")
@click.option("--weights", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder with teacher/ and/or student/ weights (default: the bundled phantom-trained demo weights).")
@click.option("--no-networks", is_flag=True, help="Physics fit only (no teacher/student).")
@click.option("--qc-margin", type=float, default=2.0, show_default=True,
              help="Flag participants where methods disagree by more than this (percentage points).")
@device_option
@workers_option
@backend_options
def liver(inputs, out, weights, no_networks, qc_margin, device, workers, backend, scheduler) -> None:
    """Liver fat (physics fit, teacher, student) with R2*, intervals and QC flags.

    Writes OUT/liver.csv and OUT/liver.parquet (one row per participant and visit),
    OUT/liver_roi/ (ROI masks) and OUT/failures.csv. Exit status 1 if anything failed.
    """
    from ukbmri.engine.inputs import find_zips, group_by_participant
    from ukbmri.engine.liver import LIVER_FIELDS, QcRules, infer_liver

    n = len(group_by_participant(find_zips(inputs, fields=LIVER_FIELDS)))
    with progress(n, "liver") as advance:
        run = infer_liver(
            inputs, out, weights=None if no_networks else weights, use_default_weights=not no_networks,
            device=device, workers=workers,
            backend=backend, scheduler=scheduler, qc=QcRules(margin_pp=qc_margin), progress=advance,
        )
    click.echo(f"{len(run.table)} participant visits ({run.skipped} reused) -> {out / 'liver.csv'}")
    report_failures(run.failures, out / "failures.csv")
    if run.failures:
        raise click.exceptions.Exit(1)
