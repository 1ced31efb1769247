"""``ukbmri demo``: generate a small synthetic cohort and run the main job on it."""

from __future__ import annotations

from pathlib import Path

import click

from ukbmri.cli._common import workers_option


@click.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Demo folder.")
@click.option("--participants", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--seed", type=int, default=2026, show_default=True)
@workers_option
def demo(out: Path, participants: int, seed: int, workers: int) -> None:
    """Synthetic UK-Biobank-format cohort (OUT/zips) -> ukbmri run (OUT/run).

    The cohort includes real-world quirks that the engine handles (a re-scanned station
    across midnight, a misspelled CRLF manifest). Predictions come from the bundled
    demonstration weights, trained on phantoms: the comparison with the phantom truth
    says how the engine works, not how accurate it is on real data.
    """
    from ukbmri.cli.run import run_and_report
    from ukbmri.synth import Quirks, write_cohort

    zips = out / "zips"
    truth = zips / "truth.csv"
    if truth.is_file():
        click.echo(f"reusing the cohort in {zips}")
    else:
        quirks = {0: Quirks(duplicate_station=3, rescan_across_midnight=True)}
        if participants > 1:
            quirks[1] = Quirks(misspelled_manifest=True, crlf_manifest=True)
        click.echo(f"writing {participants} synthetic participants to {zips} ...")
        write_cohort(zips, participants, seed, quirks=quirks)
    result = run_and_report([zips], out / "run", truth=truth, workers=workers)
    cmp_path = out / "run" / "truth_comparison.csv"
    if cmp_path.is_file():
        import pandas as pd

        cmp = pd.read_csv(cmp_path)
        if not cmp.empty:
            click.echo("\nagainst the phantom truth (synthetic data, demonstration weights):")
            click.echo(cmp.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    click.echo(f"\nparticipant table: {out / 'run' / 'participants.csv'}")
    raise click.exceptions.Exit(result.exit_code)
