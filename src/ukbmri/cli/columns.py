"""``ukbmri columns``: the data dictionary of participants.csv."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--modules", "module_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Describe the body columns of these modules (default: the bundled demonstration module).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv"]), default="markdown", show_default=True)
def columns(module_dirs, fmt) -> None:
    """Every output column with its unit, meaning, the UK Biobank field it emulates, and how it is computed."""
    from ukbmri.columns import dictionary

    rows = dictionary(list(module_dirs) or None)
    if fmt == "csv":
        import csv
        import sys

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["column", "unit", "meaning", "ukb_field", "method"])
        for r in rows:
            w.writerow([r.name, r.unit, r.meaning, r.ukb_field, r.method])
        return
    click.echo("| column | unit | meaning | UK Biobank field | how it is computed |")
    click.echo("|---|---|---|---|---|")
    for r in rows:
        cells = [f"`{r.name}`", r.unit, r.meaning, r.ukb_field, r.method]
        click.echo("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
