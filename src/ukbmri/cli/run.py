"""``ukbmri run``: the main job, a folder of zips -> one participant table."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from ukbmri.cli._common import backend_options, device_option, progress, report_failures, workers_option


def run_and_report(inputs, out: Path, **kwargs):
    """Run the pipeline with one progress bar per stage; print the summary. Returns the result."""
    from ukbmri.engine.pipeline import run_pipeline

    with ExitStack() as stack:
        def stage_bar(stage: str, total: int):
            return stack.enter_context(progress(total, stage))

        result = run_pipeline(inputs, out, progress=stage_bar, **kwargs)
    click.echo(
        f"{len(result.table)} participant visits ({result.n_body} body zips, {result.n_liver} liver visits) -> "
        f"{out / 'participants.csv'}"
    )
    click.echo(f"report: {out / 'report.md'}")
    report_failures(result.failures, out / "failures.csv")
    return result


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (a re-run resumes).")
@click.option("--modules", "module_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Body inference module folders (repeatable; default: the bundled demo module).")
@click.option("--liver-weights", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder with teacher/ and/or student/ liver weights (default: bundled demo weights).")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Ground-truth table (synthetic cohorts) to compare predictions with.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@device_option
@workers_option
@backend_options
def run(inputs, out, module_dirs, liver_weights, truth, batch_size, device, workers, backend, scheduler) -> None:
    """Everything for a folder of UK Biobank zips (20201, 20203, 20254).

    Writes OUT/participants.csv|.parquet (one row per participant visit: body-composition
    predictions with variances and intervals, liver fat from physics and networks, QC
    flags, provenance), OUT/failures.csv and OUT/report.md. Exit status 1 if anything failed.
    """
    result = run_and_report(
        inputs, out, modules=list(module_dirs) or None, liver_weights=liver_weights, truth=truth,
        batch_size=batch_size, device=device, workers=workers, backend=backend, scheduler=scheduler,
    )
    if result.failures:
        raise click.exceptions.Exit(1)
