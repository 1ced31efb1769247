"""``ukbmri inspect ZIP...``: what is in UK Biobank MRI zips (header-only unless --pixels)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np

from ukbmri.errors import UkbmriError
from ukbmri.types import Series

__all__ = ["inspect", "format_zip", "series_table"]


def _fmt_num(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def _echo_times(te: np.ndarray) -> str:
    vals = np.unique(np.round(te[np.isfinite(te)], 4))
    if vals.size == 0:
        return "-"
    if vals.size <= 3:
        return ",".join(_fmt_num(float(v)) for v in vals)
    return f"{_fmt_num(float(vals[0]))}..{_fmt_num(float(vals[-1]))} ({vals.size})"


def _positions(s: Series) -> str:
    z = np.asarray(s.positions, dtype=float) @ s.normal
    lo, hi = float(z.min()), float(z.max())
    if hi - lo < 1e-3:
        return f"{lo:.1f}" + (f" (x{z.size})" if z.size > 1 else "")
    steps = np.diff(np.sort(np.unique(np.round(z, 3))))
    step = float(np.median(steps)) if steps.size else 0.0
    return f"{lo:.1f}..{hi:.1f} step {step:.3g}"


def series_table(series: Sequence[Series], *, pixels: bool = False) -> list[str]:
    """The aligned series table as lines (header first)."""
    head = ["#", "description", "kind", "images", "rows x cols", "pixel mm", "slice pos mm", "TE ms", "acquired"]
    right = {0, 3}
    if pixels:
        head.append("values")
    rows = []
    for s in series:
        row = [
            str(s.series_number),
            s.description,
            s.image_kind,
            str(s.n_images),
            f"{s.shape[0]} x {s.shape[1]}",
            f"{_fmt_num(s.pixel_spacing[0])} x {_fmt_num(s.pixel_spacing[1])}",
            _positions(s),
            _echo_times(s.echo_times_ms),
            s.acquired.strftime("%Y-%m-%d %H:%M:%S") if s.acquired else "-",
        ]
        if pixels:
            row.append("-" if s.pixels is None else f"{_fmt_num(float(s.pixels.min()))}..{_fmt_num(float(s.pixels.max()))}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(head), *(line(r) for r in rows)]


def format_zip(z, *, pixels: bool = False) -> list[str]:
    """The report for one :class:`~ukbmri.io.UkbZip` as lines."""
    out = [f"{z.path}", f"  field     {z.field}: {z.field_description}"]
    if z.key is None:
        out.append("  key       - (name is not <eid>_<field>_<instance>_<array>.zip)")
    else:
        k = z.key
        out.append(f"  key       eid {k.eid}, field {k.field}, instance {k.instance}, array {k.array}")
    man = "none" if z.manifest is None else f"{z.manifest.member} ({len(z.manifest)} rows)"
    out.append(f"  manifest  {man}")
    out.append(f"  series    {len(z.series)} series, {z.n_images} images")
    out += ["    " + ln for ln in series_table(z.series, pixels=pixels)]
    if z.problems:
        out.append(f"  problems ({len(z.problems)}):")
        out += [f"    - {p}" for p in z.problems]
    else:
        out.append("  problems: none")
    return out


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Zips given directly, or found in folders recursively (hidden files and folders skipped), like ``run``."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(
                q for q in p.rglob("*")
                if q.suffix.lower() == ".zip" and q.is_file()
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def _describe(path: Path, exc: Exception) -> str:
    if isinstance(exc, UkbmriError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{path}: {exc.strerror or exc}"
    return f"{path}: unexpected error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback"


@click.command("inspect")
@click.argument("zips", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--pixels", is_flag=True, help="Also decode all pixels and show each series' value range.")
@click.pass_context
def inspect(ctx: click.Context, zips: tuple[Path, ...], pixels: bool) -> None:
    """List the series in UK Biobank MRI zips (ZIPS: zip files or folders, searched recursively).

    Reads headers only (fast) unless --pixels. An unreadable zip gets one line
    `error: <message>` and the others are still shown; the exit status is 2
    when any zip could not be read.
    """
    from ukbmri.io import read_zip

    debug = bool((ctx.find_root().obj or {}).get("debug"))
    failed = 0
    paths = _expand(zips)
    if not paths:
        click.echo("error: no zip files found", err=True)
        ctx.exit(2)
    for i, path in enumerate(paths):
        try:
            z = read_zip(path, pixels=pixels)
        except Exception as exc:  # noqa: BLE001 - one bad zip must not hide the others
            if debug:
                raise
            failed += 1
            click.echo(f"error: {_describe(path, exc)}", err=True)
            continue
        if i:
            click.echo("")
        click.echo("\n".join(format_zip(z, pixels=pixels)))
    if failed:
        ctx.exit(2)
