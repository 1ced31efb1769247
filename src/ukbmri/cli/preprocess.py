"""``ukbmri preprocess body``: 20201 zips -> MIMIR 2D images in a cache (+ NIfTI, PNG).

``ukbmri preprocess liver``: 20203 / 20254 zips -> ml4h-layout hd5 tensor files.
"""

from __future__ import annotations

from pathlib import Path

import click

from ukbmri.cli._common import backend_options, workers_option


@click.group()
def preprocess() -> None:
    """Preprocess zips into cached images."""


@preprocess.command("body")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--cache", "cache_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of MIMIR images <zip stem>.npy (created; existing valid images are reused).")
@click.option("--nifti", "nifti_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write fused water, fat and fat-fraction volumes as NIfTI here.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a PNG preview of each 2D image here.")
@workers_option
@backend_options
def body(inputs, cache_dir, nifti_dir, png_dir, workers, backend, scheduler) -> None:
    """Fuse the Dixon stations of 20201 zips and write MIMIR's (3, 256, 256) uint8 images.

    INPUTS are zips or folders of zips. Participants that fail are listed at the end and
    in CACHE/.run/failures.csv (with the QC flags of every image in CACHE/.run/participants.csv);
    the others complete. Exit status 1 if any failed.
    """
    from ukbmri.cli.run import run_and_report

    result = run_and_report(inputs, cache_dir / ".run", stages=("body",), modules=[], cache_dir=cache_dir,
                            nifti_dir=nifti_dir, png_dir=png_dir, workers=workers, backend=backend,
                            scheduler=scheduler, require_inputs=True, report=False)
    raise click.exceptions.Exit(result.exit_code)


@preprocess.command("liver")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--hd5", "hd5_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the ml4h tensor files <eid>.hd5 (created).")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Table with eid (and optionally instance) and labels to write under /continuous/ "
                   "(22402_Liver-fat-percentage_2_0 / 22402-2.0, liver_fat_sentinel_prediction / "
                   "liver_fat_teacher_percent).")
@click.option("--overwrite", is_flag=True, help="Replace existing <eid>.hd5 files (default: skip them).")
def liver(inputs, hd5_dir, labels_path, overwrite) -> None:
    """Write 20203 / 20254 liver zips as ml4h tensors: one HD5 file per participant.

    INPUTS are zips or folders searched recursively for <eid>_<field>_<instance>_<array>.zip.
    Layout /ukb_liver_mri/<series>/instance_<visit>, raw stored pixel values, images with
    LargestImagePixelValue > 2048 under <series>_12bit, as ml4h's tensorizer writes them
    (docs/ml4h.md). Participant visits that fail are listed at the end and in
    HD5/failures.csv; the others are written. Exit status 1 if any failed.
    """
    import csv

    from ukbmri.preprocess.ml4h_tensorize import find_liver_visits, read_label_table, tensorize_liver

    labels = read_label_table(labels_path) if labels_path is not None else None
    visits, _ = find_liver_visits(inputs)
    if not visits:
        raise click.UsageError("no <eid>_20203_* / <eid>_20254_* zips found in the inputs")
    from ukbmri.cli._common import console_progress
    from ukbmri.engine.progress import ProgressEvent

    with console_progress("preprocess liver") as bar:
        done = [0]

        def advance(*_) -> None:
            done[0] += 1
            bar(ProgressEvent(len(visits), done[0], 0, 0, "liver"))

        summary = tensorize_liver(inputs, hd5_dir, labels=labels, overwrite=overwrite, progress=advance)
    for z in summary.unnamed:
        click.echo(f"skipped {z}: not named <eid>_<field>_<instance>_<array>.zip", err=True)
    click.echo(
        f"{len(summary.written)} participant files written, {len(summary.skipped)} already there, "
        f"{len(summary.failures)} failed -> {hd5_dir}"
    )
    if summary.failures:
        ledger = hd5_dir / "failures.csv"
        with open(ledger, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["eid", "instance", "input", "error", "message"])
            for x in summary.failures:
                w.writerow([x.eid, x.instance, x.input, x.error, x.message])
        for x in summary.failures:
            click.echo(f"failed: {x.eid} visit {x.instance}: {x.error}: {x.message}", err=True)
        click.echo(f"failures listed in {ledger}", err=True)
        raise click.exceptions.Exit(1)
