"""``ukbmri run``: the main job, a folder of zips -> one participant table; ``ukbmri merge``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ukbmri.cli._common import backend_options, device_option, precision_option, report_failures, workers_option

EXIT_CODES_HELP = (
    "Exit status: 0 all done; 1 some participants failed (see OUT/failures.csv); 2 usage or configuration "
    "error; 3 the output could not be written (disk full, permission): fix it and re-run, finished work is "
    "kept; 130 interrupted (re-run to resume)."
)


def _shard(ctx, param, value):
    if value is None:
        return None
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter("expected I/N, e.g. 0/10", ctx=ctx, param=param) from None
    if n < 1 or not 0 <= i < n:
        raise click.BadParameter(f"shard index must be in 0..{n - 1} (0-based)", ctx=ctx, param=param)
    return (i, n)


def run_and_report(inputs, out: Path, *, inputs_from=None, eids=None, shard=None, **options):
    """Run the engine with the console progress; print the summary. Returns the result."""
    from ukbmri.cli._common import console_progress

    from ukbmri.engine.runner import start_fork_server

    # before importing the engine (pandas): the workers' imports overlap this process's own
    start_fork_server(options.get("workers", 1), options.get("backend", "local"))
    from ukbmri.engine.run import run as run_engine

    with console_progress("run") as progress:
        result = run_engine(inputs, out, inputs_from=inputs_from, eids=eids, shard=shard, progress=progress,
                            command=" ".join(["ukbmri", *sys.argv[1:]]), **options)
        m = result.manifest
        parts = ", ".join(f"{k}: {v['computed']} computed, {v['reused']} reused" for k, v in m["stages"].items())
        progress.write(f"{len(result.table)} participant visits ({parts}) -> {out / 'participants.csv'}")
        if m["cohort"]["ignored_zips_by_field"]:
            progress.write("ignored zips of fields no stage reads: "
                           + ", ".join(f"{k}: {v}" for k, v in m["cohort"]["ignored_zips_by_field"].items()))
        for note in result.notes:
            progress.write(f"NOTE: {note}")
        if (out / "report.html").is_file() or (out / "report.md").is_file():
            progress.write(f"report: {out / ('report.html' if (out / 'report.html').is_file() else 'report.md')}")
    report_failures(result.failures, out / "failures.csv")
    return result


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (a re-run resumes; one run at a time).")
@click.option("--inputs-from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A text file listing input zips or folders, one a line.")
@click.option("--eids", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Only these participants (a file with one eid a line, or a CSV with an eid column).")
@click.option("--shard", callback=_shard, default=None, metavar="I/N",
              help="Run shard I of N (0-based; by eid, stable when participants are added). Merge with `ukbmri merge`.")
@click.option("--modules", "module_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Body inference module folders (repeatable; default: the bundled demonstration module).")
@click.option("--liver-weights", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Liver network weights: a folder with teacher/ and/or student/, a weights folder, or a "
                   "published ml4h .h5 file (repeatable; default: the bundled demonstration weights).")
@click.option("--no-liver-networks", is_flag=True, help="Liver physics fit only (no teacher/student).")
@click.option("--liver-roi", "liver_roi", type=click.Choice(["localiser", "rules"]), default="localiser",
              show_default=True,
              help="Physics liver region: from the bundled localiser network (trained on phantoms; the physics "
                   "checks and QC flags apply) or from the image rules alone.")
@click.option("--allow-demo-weights", is_flag=True,
              help="Apply the bundled demonstration weights (trained on phantoms) to scans that are not synthetic.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV of visits to leave out (eid, instance[, field][, reason]), e.g. UK Biobank Return 3072.")
@click.option("--include-excluded", is_flag=True, help="Run the excluded visits anyway (still flagged).")
@click.option("--retry-failed", is_flag=True, help="Run failed participants again even if their inputs did not change.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="MIMIR image cache folder (default OUT/cache; MIMIR's own layout, shareable between runs).")
@click.option("--truth", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Ground-truth table (synthetic cohorts) to compare predictions with.")
@precision_option
@device_option
@workers_option
@backend_options
def run(inputs, out, inputs_from, eids, shard, module_dirs, liver_weights, no_liver_networks, liver_roi, allow_demo_weights,
        exclusions, include_excluded, retry_failed, cache_dir, truth, precision, device, workers, backend,
        scheduler) -> None:
    """Everything for UK Biobank zips (20201, 20203, 20254): INPUTS are zips or folders (searched recursively).

    Writes OUT/participants.csv|.parquet (one row per participant visit, sorted by eid and
    instance: body-composition predictions with variances and intervals, liver fat from physics
    and networks, QC flags, provenance), OUT/failures.csv, OUT/run.json and the report.
    """
    if not inputs and inputs_from is None:
        raise click.UsageError("give INPUTS (zips or folders) or --inputs-from FILE")
    result = run_and_report(
        inputs, out, inputs_from=inputs_from, eids=eids, shard=shard, modules=list(module_dirs) or None,
        liver_weights=list(liver_weights) or None, liver_networks=not no_liver_networks, liver_roi=liver_roi,
        allow_demo_weights=allow_demo_weights, exclusions=exclusions, include_excluded=include_excluded,
        retry_failed=retry_failed, cache_dir=cache_dir, truth=truth, precision=precision, device=device,
        workers=workers, backend=backend, scheduler=scheduler, require_inputs=True,
    )
    raise click.exceptions.Exit(result.exit_code)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Merged output folder.")
def merge(shards, out) -> None:
    """Combine the output folders of `ukbmri run --shard I/N` jobs into the tables one run would write.

    Refuses shards made with different settings or ukbmri versions; reports missing
    shards and visits found in more than one shard.
    """
    from ukbmri.engine.merge import merge_runs

    result = merge_runs(shards, out)
    click.echo(f"{len(result.table)} participant visits from {len(shards)} shard(s) -> {out / 'participants.csv'}")
    for problem in result.problems:
        click.echo(f"problem: {problem}", err=True)
    report_failures(result.failures, out / "failures.csv")
    raise click.exceptions.Exit(1 if result.problems or len(result.failures) else 0)
