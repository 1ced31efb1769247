"""``report.md``: the short text version of the report (counts, flagged list head, key
statistics, links to the plots), rendered from the same :class:`ReportModel` as the HTML."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

import pandas as pd

from ukbmri.report.html import fmt
from ukbmri.report.model import ReportModel

__all__ = ["render_markdown", "md_table"]

HEAD = 20  # flagged participants listed in report.md


def _cell(v: object) -> str:
    text = fmt(v) if not isinstance(v, str) else v
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def md_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "(none)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(m: ReportModel, *, notes: Sequence[str], run_info: Mapping[str, object],
                    plot_files: Mapping[str, Sequence[str]], html_name: str = "report.html") -> str:
    out = ["# ukbmri run report", "", f"Full visual report: [{html_name}]({html_name})", ""]
    for n in notes:
        out.append(f"> **Note:** {_cell(n)}")
        out.append("")
    if run_info:
        out.append("## Run")
        out.append("")
        for k, v in run_info.items():
            text = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
            out.append(f"- {_cell(k)}: {_cell(text)}")
        out.append("")
    out += ["## Summary", "",
            f"- participants (table rows): {m.n_rows}",
            f"- flagged: {m.n_flagged}",
            f"- failed (participants with a failure): {m.n_failed}",
            f"- failure rows in the ledger: {m.n_failure_rows} ({len(m.unattached)} naming no participant)", ""]
    if len(m.flag_counts):
        out += ["### Flags", "", md_table(m.flag_counts.rename_axis("flag").rename("n").reset_index())]
    if len(m.failure_counts):
        out += ["### Failures by stage", "", md_table(m.failure_counts)]
    if len(m.poi):
        head = m.poi.head(HEAD)
        df = pd.DataFrame({"eid": head["eid"], "instance": head["instance"],
                           "reasons": ["; ".join(list(f) + list(e)) for f, e in zip(head["flags"], head["failures"])]})
        out += [f"## Flagged and failed participants (first {len(head)} of {len(m.poi)})", "", md_table(df)]
    if len(m.summary):
        out += ["## Key statistics", "", md_table(m.summary)]
    if len(m.agreement):
        out += ["## Liver: physics vs networks (Bland-Altman; bias = other - reference)", "", md_table(m.agreement)]
    if len(m.widths):
        out += ["## 95 % interval widths", "", md_table(m.widths)]
    if len(m.truth):
        out += ["## Against the phantom ground truth (synthetic data, not clinical accuracy)", "", md_table(m.truth)]
    links = [(sec, f) for sec, names in plot_files.items() for f in names]
    if links:
        out += ["## Plots", ""] + [f"- {sec}: [{f}]({f})" for sec, f in links] + [""]
    return "\n".join(out).rstrip() + "\n"
