"""``ukbmri infer body`` / ``ukbmri infer liver``: one stage of the engine, with its own tables."""

from __future__ import annotations

from pathlib import Path

import click

from ukbmri.cli._common import backend_options, device_option, precision_option, workers_option
from ukbmri.cli.run import EXIT_CODES_HELP, run_and_report


@click.group()
def infer() -> None:
    """Run inference modules / liver networks on zips or caches."""


@infer.command("body", epilog=EXIT_CODES_HELP)
@click.option("--input", "inputs", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="Zips, folders of zips, or a cache folder of MIMIR .npy images (repeatable).")
@click.option("--modules", "module_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Inference module folders (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (resumed if it exists).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Image cache for zips (default OUT/cache).")
@click.option("--allow-demo-weights", is_flag=True, help="Apply demonstration modules to scans that are not synthetic.")
@precision_option
@device_option
@workers_option
@backend_options
def body(inputs, module_dirs, out, cache_dir, allow_demo_weights, precision, device, workers, backend,
         scheduler) -> None:
    """Body-composition predictions with variances and 95 % intervals.

    Writes OUT/participants.csv|.parquet (also as OUT/body.csv|.parquet), OUT/<module>/predictions.csv
    (MIMIR's layout), OUT/failures.csv and OUT/run.json.
    """
    from ukbmri.engine.mimir_tables import write_mimir_predictions
    from ukbmri.engine.tables import write_table

    result = run_and_report(inputs, out, stages=("body",), modules=list(module_dirs), cache_dir=cache_dir,
                            allow_demo_weights=allow_demo_weights, precision=precision, device=device,
                            workers=workers, backend=backend, scheduler=scheduler, require_inputs=True)
    write_table(result.table, out / "body")
    write_mimir_predictions(result.table, module_dirs, out)
    raise click.exceptions.Exit(result.exit_code)


@infer.command("liver", epilog=EXIT_CODES_HELP)
@click.option("--input", "inputs", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="20203 / 20254 zips or folders of zips (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (resumed if it exists).")
@click.option("--weights", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Liver weights: a folder with teacher/ and/or student/, a weights folder, or a published "
                   "ml4h .h5 file (repeatable; default: the bundled phantom-trained demonstration weights).")
@click.option("--no-networks", is_flag=True, help="Physics fit only (no teacher/student).")
@click.option("--allow-demo-weights", is_flag=True, help="Apply demonstration weights to scans that are not synthetic.")
@device_option
@workers_option
@backend_options
def liver(inputs, out, weights, no_networks, allow_demo_weights, device, workers, backend, scheduler) -> None:
    """Liver fat (physics fit on each protocol, teacher, student) with R2*, intervals and QC flags.

    Writes OUT/participants.csv|.parquet (also as OUT/liver.csv|.parquet; one row per participant
    visit), OUT/liver_roi/ (ROI masks and overlays), OUT/failures.csv and OUT/run.json.
    """
    from ukbmri.engine.tables import write_table

    result = run_and_report(inputs, out, stages=("liver",), liver_weights=list(weights) or None,
                            liver_networks=not no_networks, allow_demo_weights=allow_demo_weights, device=device,
                            workers=workers, backend=backend, scheduler=scheduler, require_inputs=True)
    write_table(result.table, out / "liver")
    raise click.exceptions.Exit(result.exit_code)
