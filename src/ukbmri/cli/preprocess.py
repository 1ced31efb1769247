"""``ukbmri preprocess body``: 20201 zips -> MIMIR 2D images in a cache (+ NIfTI, PNG)."""

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
