"""HTML building blocks: escaped text, tables, participant cards and static pages.

Every string that comes from data (flags, error messages, file and column names, run
info) goes through :func:`esc`. Pages are self-contained: inline CSS, relative links,
no scripts, no external URLs.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import numpy as np
import pandas as pd

__all__ = ["anchor", "esc", "src", "fmt", "Thumb", "Card", "card_html", "table_html", "document", "kv_table", "pager"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1250px;
 padding:0 1em;color:#222;line-height:1.35}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.notes{background:#fff3cd;border:2px solid #e0a800;border-radius:6px;padding:.6em 1em;margin:1em 0}
.notes li{margin:.2em 0}
.summary span{display:inline-block;margin-right:1.5em;font-size:1.1em}
.bad{color:#b00020;font-weight:bold}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-direction:column;gap:.6em}
.card{border:1px solid #ccc;border-left:6px solid #4477aa;border-radius:4px;padding:.4em .8em;display:flex;
 flex-wrap:wrap;gap:.4em 1em} .card .about{flex:0 1 360px;min-width:240px}
.card.flagged{border-left-color:#e0a800} .card.failed{border-left-color:#b00020}
.card h3{margin:.1em 0 .3em 0;font-size:1em}
.reasons{margin:.2em 0;padding-left:1.2em;font-size:.9em} .reasons .fail{color:#b00020}
.values{font-size:.8em;color:#444;margin:.2em 0;display:flex;flex-direction:column}
.thumbs{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}
.thumbs figure{margin:0} .thumbs img{height:150px;width:auto;border:1px solid #999;background:#000}
.thumbs figcaption{font-size:.75em;color:#555}
.missing{display:inline-block;width:150px;height:150px;border:1px dashed #aaa;color:#777;font-size:.75em;
 padding:4px;box-sizing:border-box}
.plots img{max-width:100%;border:1px solid #eee;margin:.3em 0}
.pages a{margin-right:.4em} .muted{color:#666;font-size:.9em}
"""


def esc(value: object) -> str:
    """HTML-escape anything (quotes included, so it is safe in attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def src(path: str) -> str:
    """A relative URL for a file name we built (percent-encoded, then escaped)."""
    return esc(quote(path))


def fmt(v: object, digits: int = 4) -> str:
    """A number for a table cell: integers as is, floats to ``digits`` significant digits, NaN empty."""
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(float(v)) else f"{float(v):.{digits}g}"
    return str(v)


@dataclass(frozen=True)
class Thumb:
    caption: str
    path: str | None  # relative to the page, or None when there is no image
    note: str = ""  # why there is none
    href: str | None = None  # what a click opens (e.g. the full-size original); default: the thumbnail


@dataclass(frozen=True)
class Card:
    eid: object
    instance: object
    flags: Sequence[str] = ()
    failures: Sequence[str] = ()
    values: Sequence[tuple[str, str]] = ()
    thumbs: Sequence[Thumb] = ()
    in_table: bool = True
    extra_class: str = field(default="")

    @property
    def anchor(self) -> str:
        return anchor(self.eid, self.instance)


def anchor(eid: object, instance: object) -> str:
    """The id of a participant's card (``p-<eid>-<instance>``; a missing key stays empty)."""
    return f"p-{fmt(eid)}-{fmt(instance)}"


def card_html(c: Card) -> str:
    kind = "failed" if c.failures else "flagged" if c.flags else "sample"
    parts = [f'<div class="card {kind}" id="{esc(c.anchor)}"><div class="about">',
             f"<h3>eid {esc(fmt(c.eid) or '?')} &middot; instance {esc(fmt(c.instance) or '?')}"
             + ("" if c.in_table else ' <span class="bad">(no table row)</span>') + "</h3>"]
    if c.flags or c.failures:
        items = [f'<li class="flag">flag: {esc(f)}</li>' for f in c.flags]
        items += [f'<li class="fail">failed: {esc(f)}</li>' for f in c.failures]
        parts.append('<ul class="reasons">' + "".join(items) + "</ul>")
    if c.values:
        parts.append('<div class="values">' + "".join(f"<span>{esc(k)} = <b>{esc(v)}</b></span>" for k, v in c.values)
                     + "</div>")
    parts.append("</div>")
    if c.thumbs:
        figs = []
        for t in c.thumbs:
            if t.path:
                figs.append(f'<figure><a href="{src(t.href or t.path)}"><img src="{src(t.path)}" '
                            f'alt="{esc(t.caption)}" loading="lazy"></a><figcaption>{esc(t.caption)}</figcaption>'
                            "</figure>")
            else:
                figs.append(f'<figure><span class="missing">{esc(t.note or "no image")}</span>'
                            f"<figcaption>{esc(t.caption)}</figcaption></figure>")
        parts.append('<div class="thumbs">' + "".join(figs) + "</div>")
    parts.append("</div>")
    return "".join(parts)


def table_html(df: pd.DataFrame, *, links: Mapping[str, Sequence[str | None]] | None = None) -> str:
    """A plain HTML table; ``links[col]`` gives an href (or None) per row for that column."""
    if df is None or df.empty:
        return '<p class="muted">(none)</p>'
    cols = list(df.columns)
    head = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>"
    rows = []
    columns = [df[c].tolist() for c in cols]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in cols]
    for i in range(len(df)):
        cells = []
        for j, c in enumerate(cols):
            text = esc(fmt(columns[j][i]))
            href = links.get(c)[i] if links and c in links else None
            if href:
                text = f'<a href="{esc(href)}">{text}</a>'
            cells.append(f'<td class="num">{text}</td>' if numeric[j] else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + head + "\n".join(rows) + "</table>"


def kv_table(info: Mapping[str, object]) -> str:
    """Run info as a two-column table (nested values as compact JSON)."""
    if not info:
        return ""
    rows = []
    for k, v in info.items():
        text = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
        rows.append(f"<tr><th>{esc(k)}</th><td>{esc(text)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def pager(names: Sequence[str], current: int | None = None) -> str:
    """Links to numbered static pages (``current`` is shown unlinked)."""
    if len(names) <= 1 and current is not None:
        return ""
    links = [f"<b>{i + 1}</b>" if i == current else f'<a href="{src(n)}">{i + 1}</a>' for i, n in enumerate(names)]
    return '<span class="pages">pages: ' + " ".join(links) + "</span>"


def document(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
