"""``ukbmri fatwater``: fat-water separation of any multi-echo gradient-echo data."""

from __future__ import annotations

from pathlib import Path

import click

from ukbmri.cli._common import device_option


def _te_list(ctx, param, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        te = [float(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated echo times in ms, got {value!r}") from None
    if not te:
        raise click.BadParameter("no echo times given")
    return te


def _spectrum(ctx, param, value: str | None):
    if value is None:
        return None
    from ukbmri.physics.spectrum import FatSpectrum

    try:
        pairs = [tuple(float(x) for x in item.split(":")) for item in value.replace(" ", "").split(",") if item]
        if not pairs or any(len(p) != 2 or p[1] < 0 for p in pairs):
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected PPM:AMPLITUDE pairs separated by commas, got {value!r}") from None
    return FatSpectrum(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)).normalised()


@click.command("fatwater")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--method", type=click.Choice(["magnitude", "complex"]), default=None,
              help="Fitting method (default: complex when the data have phase, else magnitude).")
@click.option("--te", "te_ms", callback=_te_list, default=None, metavar="MS,MS,...",
              help="Echo times in ms (required for NIfTI input).")
@click.option("--field-strength", "field_strength", type=click.FloatRange(min=0.01, max=20.0), default=None,
              help="Main field in tesla (default: from the file; 1.5 for NIfTI).")
@click.option("--roi", "roi_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ROI mask (.npy or NIfTI, same x, y, z as the input) for the summary statistics.")
@device_option
@click.option("--spectrum", callback=_spectrum, default=None, metavar="PPM:AMP,...",
              help="Fat spectrum as chemical shift (ppm) : relative amplitude pairs, e.g. "
                   "'5.3:0.048,4.31:0.039,2.76:0.004,2.1:0.128,1.3:0.693,0.9:0.087' "
                   "[default: that six-peak liver spectrum (Hamilton et al.)].")
@click.option("--phase", "phase_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Phase NIfTI (4D, or one 3D file per echo; radians or Siemens units). Repeatable.")
@click.option("--branch", type=click.Choice(["water", "fat", "best"]), default="water", show_default=True,
              help="Magnitude method: starting branch (water-dominant suits liver).")
@click.option("--stem", default=None, help="Output file prefix (default: the first input's name).")
@click.option("--no-montage", is_flag=True, help="Skip the PNG montage.")
def fatwater(inputs, out_dir: Path, method, te_ms, field_strength, roi_path, device, spectrum, phase_paths, branch,
             stem, no_montage) -> None:
    """Separate water and fat, and estimate R2* (and B0), from multi-echo images.

    INPUTS: an ISMRM fat-water toolbox .mat file, a UK Biobank 20203 / 20254 zip, or NIfTI
    magnitudes (one 4D file or one 3D file per echo; give --te). Writes to OUT
    <stem>_{ff_percent,r2star_per_s,b0_hz,water,fat,residual}.npy and .nii.gz, <stem>_mask.npy,
    <stem>_montage.png and <stem>_summary.json/.csv (FF and R2* mean/median/SD in the fitted
    mask and in --roi).
    """
    from ukbmri.errors import FitInputError
    from ukbmri.physics.complex import fit_complex
    from ukbmri.physics.inputs import input_stem, load_multiecho
    from ukbmri.physics.magnitude import fit_magnitude
    from ukbmri.physics.multiecho import default_mask
    from ukbmri.physics.outputs import load_roi, write_fatwater_outputs

    data, file_mask = load_multiecho(list(inputs), te_ms=te_ms, field_strength_t=field_strength,
                                     phase_paths=list(phase_paths) or None)
    if method is None:
        method = "complex" if data.is_complex else "magnitude"
    if method == "complex" and not data.is_complex:
        raise FitInputError("--method complex needs phase data", path=inputs[0],
                            expected="complex images (give --phase for NIfTI)", found="magnitude only")
    mask = default_mask(data)
    if file_mask is not None:
        mask = mask & file_mask
    roi = load_roi(roi_path, data.shape) if roi_path is not None else None
    click.echo(f"{data!r}: {int(mask.sum())} voxels, method {method}", err=True)
    spec = {} if spectrum is None else {"spectrum": spectrum}
    if method == "complex":
        maps = fit_complex(data, mask=mask, device=device, **spec)
    else:
        maps = fit_magnitude(data, mask=mask, device=device, branch=branch, **spec)
    name = stem or input_stem(inputs[0])
    res = write_fatwater_outputs(maps, data, out_dir, name, roi=roi, montage=not no_montage)
    if res.identity_affine:
        click.echo("warning: the input has no geometry; NIfTI files use an identity affine", err=True)
    for row in res.summary:
        click.echo(
            f"{row['region']:>5}: n={row['n_voxels']}  FF mean {row['ff_mean_percent']:.2f} %  "
            f"median {row['ff_median_percent']:.2f} %  sd {row['ff_sd_percent']:.2f}  |  "
            f"R2* mean {row['r2star_mean_per_s']:.1f} /s  median {row['r2star_median_per_s']:.1f}  "
            f"sd {row['r2star_sd_per_s']:.1f}"
        )
    click.echo(f"wrote {len(res.files)} files to {out_dir}", err=True)
