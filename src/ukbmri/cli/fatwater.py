"""``ukbmri fatwater``: fat-water separation of any multi-echo gradient-echo data."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

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


def _spacing(ctx, param, value: str | None) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        sp = tuple(float(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected X,Y,Z voxel size in mm, got {value!r}") from None
    if len(sp) != 3 or any(not (v > 0) for v in sp):
        raise click.BadParameter(f"expected three positive sizes X,Y,Z in mm, got {value!r}")
    return sp


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
@click.option("--branch", type=click.Choice(["water", "fat", "best"]), default="best", show_default=True,
              help="Magnitude method: starting branch; 'best' fits both and keeps the lower residual per "
                   "voxel, so fat-dominant tissue reads as fat ('water' suits a liver-only ROI).")
@click.option("--spacing", "spacing", callback=_spacing, default=None, metavar="X,Y,Z",
              help="Voxel size in mm for inputs without geometry (ISMRM .mat) [default: 1.5,1.5,5, "
                   "reported as assumed]; ignored (with a warning) when the input has geometry.")
@click.option("--liver", is_flag=True,
              help="Find the liver automatically on every slice: writes <stem>_liver_roi.npy and liver PDFF / "
                   "R2* with 95 %% intervals, per slice and overall, into the summary files.")
@click.option("--right", "right", type=click.Choice(["image-left", "image-right"]), default="image-left",
              show_default=True,
              help="--liver on input without geometry: where the patient's right appears when the array is "
                   "shown as stored (first axis down); the ISMRM toolbox's data are radiological (image-left).")
@click.option("--liver-roi", "liver_roi", type=click.Choice(["localiser", "rules"]), default="localiser",
              show_default=True,
              help="--liver: the liver region from the bundled localiser network (trained on phantoms; the "
                   "physics checks and QC flags apply) or from the image rules alone.")
@click.option("--stem", default=None, help="Output file prefix (default: the first input's name).")
@click.option("--no-montage", is_flag=True, help="Skip the PNG montage.")
def fatwater(inputs, out_dir: Path, method, te_ms, field_strength, roi_path, device, spectrum, phase_paths, branch,
             spacing, liver, right, liver_roi, stem, no_montage) -> None:
    """Separate water and fat, and estimate R2* (and B0), from multi-echo images.

    INPUTS: an ISMRM fat-water toolbox .mat file, a UK Biobank 20203 / 20254 zip, or NIfTI
    magnitudes (one 4D file or one 3D file per echo; give --te). Writes to OUT
    <stem>_{ff_percent,r2star_per_s,b0_hz,water,fat,residual}.npy and .nii.gz, <stem>_mask.npy,
    <stem>_montage.png and <stem>_summary.json/.csv (FF and R2* mean/median/SD in the fitted
    mask and in --roi; with --liver also <stem>_liver_roi.npy and the liver rows). One voxel
    size serves the fit's regularisation, the summary and the NIfTI files: the input's, or
    --spacing (default 1.5,1.5,5 mm, marked "spacing_assumed" in the summary).
    """
    import dataclasses
    import logging

    from ukbmri.errors import FitInputError
    from ukbmri.physics.complex import DEFAULT_SPACING, fit_complex
    from ukbmri.physics.inputs import input_stem, load_multiecho
    from ukbmri.physics.magnitude import fit_magnitude
    from ukbmri.physics.multiecho import default_mask
    from ukbmri.physics.outputs import load_roi, write_fatwater_outputs

    data, file_mask = load_multiecho(list(inputs), te_ms=te_ms, field_strength_t=field_strength,
                                     phase_paths=list(phase_paths) or None)
    log = logging.getLogger("ukbmri.cli.fatwater")
    spacing_assumed = False
    if data.spacing is None:
        spacing_assumed = spacing is None
        data = dataclasses.replace(data, spacing=spacing or DEFAULT_SPACING)
    elif spacing is not None and not np.allclose(spacing, data.spacing, rtol=1e-3):
        log.warning("%s: --spacing %s ignored: the input's voxel size is %s mm", inputs[0], spacing,
                    tuple(round(v, 4) for v in data.spacing))
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
    extra = {"spacing_mm": list(data.spacing), "spacing_assumed": spacing_assumed}
    liver_rows = None
    if liver:
        from ukbmri.io.atomic import save_npy
        from ukbmri.physics.liver import roi_maps_for
        from ukbmri.physics.liver_slices import liver_fat_slices, right_direction_for

        # the liver is found on maps where fat reads as fat and noise does not flip the liver's voxels
        liver_maps = maps if maps.method == "complex" else roi_maps_for(data, device=device, mask=mask)
        from ukbmri.errors import LiverNotFoundError

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        side = "from the input's geometry" if data.affine_lps is not None else right
        try:
            lv = liver_fat_slices(data, liver_maps, device=device, right_direction=right_direction_for(right),
                                  localiser="bundled" if liver_roi == "localiser" else None)
        except LiverNotFoundError as exc:  # the maps are still written; no liver values at all
            log.warning("%s", exc)
            save_npy(Path(out_dir) / f"{name}_liver_roi.npy", np.zeros(data.shape, dtype=bool))
            extra["liver"] = {"error": str(exc), "flags": ["liver_not_found"], "right": side, "roi": liver_roi}
        else:
            save_npy(Path(out_dir) / f"{name}_liver_roi.npy", lv.roi)
            liver_rows = lv.rows()
            extra["liver"] = {"pdff_percent": lv.pdff_percent, "pdff_ci95": list(lv.pdff_ci95),
                              "r2star_per_s": lv.r2star_per_s, "r2star_ci95": list(lv.r2star_ci95),
                              "flags": list(lv.flags), "right": side, "roi": liver_roi}
    res = write_fatwater_outputs(maps, data, out_dir, name, roi=roi, montage=not no_montage, extra=extra,
                                 extra_rows=liver_rows)
    for row in res.summary:
        if str(row["region"]).startswith("liver"):
            if row.get("pdff_percent") is None or row.get("n_voxels", 0) == 0:
                click.echo(f"{row['region']:>14}: no liver found")
                continue
            click.echo(f"{row['region']:>14}: n={row['n_voxels']}  PDFF {row['pdff_percent']:.2f} % "
                       f"[{row['pdff_ci95_low_percent']:.2f}, {row['pdff_ci95_high_percent']:.2f}]  R2* "
                       f"{row['r2star_per_s']:.1f} /s [{row['r2star_ci95_low_per_s']:.1f}, "
                       f"{row['r2star_ci95_high_per_s']:.1f}]  {row.get('liver_flags') or ''}")
            continue
        click.echo(
            f"{row['region']:>5}: n={row['n_voxels']}  FF mean {row['ff_mean_percent']:.2f} %  "
            f"median {row['ff_median_percent']:.2f} %  sd {row['ff_sd_percent']:.2f}  |  "
            f"R2* mean {row['r2star_mean_per_s']:.1f} /s  median {row['r2star_median_per_s']:.1f}  "
            f"sd {row['r2star_sd_per_s']:.1f}"
        )
    click.echo(f"wrote {len(res.files)} files to {out_dir}", err=True)
