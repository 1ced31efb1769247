"""``ukbmri infer body`` / ``ukbmri infer liver``."""

from __future__ import annotations

from pathlib import Path

import click

from ukbmri.cli._common import backend_options, device_option, progress, report_failures, workers_option


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
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: faster autocast on CPUs with bf16 support; opt-in (differs from fp32 beyond 1e-3).")
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
    with progress(len(zips), "preprocess body") as advance:
        run = infer_body(
            inputs, module_dirs, out, cache_dir=cache_dir, batch_size=batch_size, device=device,
            precision=precision, workers=workers, backend=backend, scheduler=scheduler, progress=advance,
        )
    click.echo(f"{len(run.table)} participants x {len(module_dirs) - len(run.module_failures)} modules -> {out / 'body.csv'}")
    report_failures(run.failures, out / "failures.csv")
    if run.failures:
        raise click.exceptions.Exit(1)
