"""``ukbmri synth``: write a synthetic UK-Biobank-format cohort (zips + truth.csv)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

_QUIRK_HELP = (
    "Add a real-world defect, NAME[=VALUE][@I[,J...]]; repeatable. Without @ it applies to "
    "every participant, with @ to the listed 0-based participant indices. Station quirks take "
    "a station 1-6. Names: misspelled_manifest, crlf_manifest, no_manifest, "
    "duplicate_station=K, rescan_across_midnight (needs duplicate_station), wf_size_mismatch=K, "
    "missing_station=K, fat_water_swap, wrong_name_field. "
    "Example: --quirk duplicate_station=3@0 --quirk rescan_across_midnight@0 --quirk crlf_manifest"
)


def _fields(ctx, param, value: str) -> tuple[int, ...]:
    try:
        fields = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated field ids, got {value!r}") from None
    unknown = [f for f in fields if f not in (20201, 20203, 20254)]
    if not fields or unknown:
        raise click.BadParameter(f"fields must be among 20201,20203,20254 (got {value!r})")
    return fields


@click.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("-n", "--participants", default=10, show_default=True, type=click.IntRange(min=1), help="Cohort size.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same bytes).")
@click.option("--fields", default="20201,20203,20254", show_default=True, callback=_fields, help="Fields to write.")
@click.option("--quirk", "quirk_specs", multiple=True, metavar="NAME[=VALUE][@I,...]", help=_QUIRK_HELP)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes.")
@click.option("--first-eid", default=1000001, show_default=True, type=click.IntRange(min=1), help="eid of participant 0.")
@click.option("--instance", default=2, show_default=True, type=click.IntRange(min=0), help="Visit instance in file names.")
@click.option("--overwrite", is_flag=True, help="Write into a folder that already holds a cohort (zips or truth.csv).")
@click.option("--domain", type=click.Choice(["ordinary", "randomised"]), default="ordinary", show_default=True,
              help="Phantom domain: 'randomised' widens liver PDFF (0-50 %), R2* (20-500 /s), liver shape, size "
                   "and position, touching organs, body shape, noise (x0.5-3), B0 / phase fields and coil shading "
                   "(training data for robust liver networks; see docs/synth_randomised.md).")
@click.option("--liver-stress", "liver_stress", type=click.Choice(["train", "heldout"]), default=None,
              help="Instead of UK Biobank zips, write domain-randomised single-slice liver phantoms (NIfTI magnitude "
                   "+ phase, drawn liver mask, liver_stress_truth.csv) from this generator variant; 'heldout' is "
                   "for accuracy tests only, never for tuning.")
def synth(out_dir: Path, participants: int, seed: int, fields, quirk_specs, workers: int, first_eid: int, instance: int,
          overwrite: bool, domain: str, liver_stress) -> None:
    """Write a synthetic cohort in UK Biobank bulk format.

    Per participant and field OUT/<eid>_<field>_<instance>_0.zip (real DICOM: 20201 Dixon
    neck-to-knee, 6 stations x in/opp/F/W; 20203 liver multi-echo GRE, 10 echoes with phase;
    20254 liver IDEAL, 6 echoes x 6 dynamics), and OUT/truth.csv with phenotypes computed from
    each participant's phantom (weight, VAT, ASAT, liver PDFF and R2*, organ and thigh muscle
    volumes, muscle fat, ...) and the quirks applied.
    """
    from ukbmri.errors import OutputExistsError
    from ukbmri.synth.cohort import TRUTH_FILE, write_cohort
    from ukbmri.synth.quirks import quirks_from_specs

    from ukbmri.synth.liver_stress_io import STRESS_TRUTH_FILE, write_stress_cohort

    if not overwrite and out_dir.is_dir():
        held = sorted(p.name for p in out_dir.iterdir()
                      if p.suffix.lower() == ".zip" or p.name in (TRUTH_FILE, STRESS_TRUTH_FILE))
        if held:
            raise OutputExistsError("output folder already holds a cohort (use --overwrite to write into it)",
                                    path=out_dir, found=f"{len(held)} files, e.g. {held[0]}")

    if liver_stress is not None:
        if domain != "ordinary":
            raise click.BadParameter("--liver-stress writes its own randomised slices; leave --domain out",
                                     param_hint="--domain")
        df = write_stress_cohort(out_dir, participants, seed, variant=liver_stress)
        click.echo(f"wrote {len(df)} liver stress cases ({liver_stress}) to {out_dir}")
        return
    try:
        quirks = quirks_from_specs(quirk_specs, participants)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--quirk") from None
    with click.progressbar(length=participants, label="synth", file=sys.stderr) as bar:
        df = write_cohort(
            out_dir,
            participants,
            seed,
            fields=fields,
            quirks=quirks,
            workers=workers,
            first_eid=first_eid,
            instance=instance,
            progress=bar.update,
            domain=domain,
        )
    click.echo(f"wrote {len(df)} participants x {len(fields)} fields to {out_dir} (truth: {out_dir / TRUTH_FILE})")
