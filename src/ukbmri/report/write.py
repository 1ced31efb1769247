"""``write_reports``: ``OUT/report.html`` (+ ``OUT/report_files/``) and ``OUT/report.md``.

Flagged and failed participants come first, with their reasons and thumbnails (the first
:data:`THUMB_CAP` by (eid, instance); the full list is in static table pages of
:data:`PAGE_ROWS` rows). Then cohort plots and a fixed random sample of the other
participants. Plots and thumbnails are redrawn only when what they show changed, and
text files are rewritten only when their text changed, so a resumed run with nothing
new costs little.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pandas as pd

from ukbmri.report.cards import CardMaker
from ukbmri.report.data import ReportData
from ukbmri.report.figures import Plot, frame_digest
from ukbmri.report.html import anchor, card_html, document, esc, kv_table, pager, src, table_html
from ukbmri.report.markdown import render_markdown
from ukbmri.report.model import ReportModel, build_model
from ukbmri.report.state import ReportState, write_if_changed

__all__ = ["write_reports", "FILES", "THUMB_CAP", "PAGE_ROWS"]

log = logging.getLogger(__name__)

FILES = "report_files"
THUMB_CAP = 500  # flagged/failed participants shown with thumbnails on the main page
PAGE_ROWS = 1000  # rows per static list page
INLINE_FAILURES = 200  # unattached failures listed on the main page
PAGES_VERSION = "1"  # bump when the list pages change, so cached pages are rewritten

_SECTIONS = {
    "distributions": "Cohort distributions",
    "agreement": "Liver fat: physics vs networks (Bland-Altman)",
    "widths": "95 % interval widths",
    "truth": "Against the phantom ground truth (synthetic data, not clinical accuracy)",
}


def write_reports(out: str | os.PathLike[str], data: ReportData, *, workers: int = 1) -> list[Path]:
    """Write the HTML and Markdown reports into ``out``; returns ``[report.html, report.md]``
    followed by the list pages and plots (thumbnails are not listed).

    ``workers > 1``: plots that need drawing are drawn in that many processes at once.
    """
    t0 = time.perf_counter()
    out = Path(out)
    folder = out / FILES
    folder.mkdir(parents=True, exist_ok=True)
    state = ReportState(folder)
    m = build_model(data)
    failed = _draw_stale([p for plots in m.plots.values() for p in plots], state, workers)
    plot_files = {sec: [p.name for p in plots if p.name not in failed] for sec, plots in m.plots.items()}

    table = data.table if data.table is not None else pd.DataFrame()
    maker = CardMaker(data, table, m.value_cols, state, prefix=f"{FILES}/")
    poi_cards = maker.cards(m.poi.head(THUMB_CAP))
    sample_cards = maker.cards(m.sample)

    pages: dict[str, str] = {}
    poi_pages = _list_pages(m, pages, state)
    fail_pages = _failure_pages(m, pages)
    main = _main_page(m, data, plot_files, poi_cards, sample_cards, poi_pages, fail_pages)
    md = render_markdown(m, notes=data.notes, run_info=data.run_info,
                         plot_files={sec: [f"{FILES}/{f}" for f in names] for sec, names in plot_files.items()})

    written = 0
    for name, text in pages.items():
        written += write_if_changed(folder / name, text)
    written += write_if_changed(out / "report.html", main)
    written += write_if_changed(out / "report.md", md)
    state.save()
    removed = state.remove_stale(state.kept() | set(pages))
    log.info("report: %d rows, %d flagged/failed, %d images drawn, %d pages written, %d stale files removed, %.2f s",
             m.n_rows, len(m.poi), len(state.rewritten), written, removed, time.perf_counter() - t0)
    plots = [folder / f for names in plot_files.values() for f in names]
    return [out / "report.html", out / "report.md"] + [folder / p for p in poi_pages + fail_pages] + plots


def _draw_stale(plots: list[Plot], state: ReportState, workers: int) -> set[str]:
    """Draw the plots whose inputs changed; returns the names of those that failed."""
    stale = [p for p in plots if not state.fresh(p.name, p.digest())]
    if not stale:
        return set()
    if workers > 1 and len(stale) > 1:
        from concurrent.futures import ProcessPoolExecutor

        from ukbmri.engine.runner import pool_context

        with ProcessPoolExecutor(max_workers=min(workers, len(stale)), mp_context=pool_context()) as pool:
            errors = list(pool.map(_draw_plot, stale, [state.folder / p.name for p in stale]))
    else:
        errors = [_draw_plot(p, state.folder / p.name) for p in stale]
    failed = set()
    for plot, err in zip(stale, errors):
        if err:
            log.warning("report: plot %s failed: %s", plot.name, err)
            state.forget(plot.name)
            failed.add(plot.name)
        else:
            state.made(plot.name)
    return failed


def _draw_plot(plot: Plot, path: Path) -> str:
    """Draw one plot into ``path`` (atomically); the error message, or "" when it worked."""
    # Plots are bare matplotlib Figure objects (no pyplot): PNGs are drawn by Agg and no global backend is set.
    from ukbmri.io.atomic import atomic_path

    try:
        fig = plot.draw(plot.frame)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=80, format="png")
    except Exception as exc:  # noqa: BLE001 - one bad plot must not cost the whole report
        return f"{type(exc).__name__}: {exc}"
    return ""


def _reasons(flags, failures) -> str:
    return "; ".join([f"flag: {f}" for f in flags] + [f"failed: {f}" for f in failures])


def _list_pages(m: ReportModel, pages: dict[str, str], state: ReportState) -> list[str]:
    """All flagged/failed participants as static table pages (no thumbnails)."""
    if m.poi.empty:
        return []
    poi = m.poi
    names = [f"flagged_{i + 1:03d}.html" for i in range((len(poi) + PAGE_ROWS - 1) // PAGE_ROWS)]
    reasons = [_reasons(f, e) for f, e in zip(poi["flags"], poi["failures"])]
    digest = frame_digest(pd.DataFrame({"eid": poi["eid"], "instance": poi["instance"], "in": poi["in_table"],
                                        "reasons": reasons}), extra=f"{PAGES_VERSION}|{PAGE_ROWS}|{THUMB_CAP}")
    if all([state.fresh(n, digest) for n in names]):  # (a list: every page is recorded as kept)
        return names
    anchors = [f"../report.html#{anchor(e, i)}" if k < THUMB_CAP else None
               for k, (e, i) in enumerate(zip(poi["eid"], poi["instance"]))]
    for p, name in enumerate(names):
        sl = slice(p * PAGE_ROWS, (p + 1) * PAGE_ROWS)
        df = pd.DataFrame({"eid": poi["eid"].iloc[sl].to_numpy(), "instance": poi["instance"].iloc[sl].to_numpy(),
                           "in table": poi["in_table"].iloc[sl].map({True: "yes", False: "no"}).to_numpy(),
                           "reasons": reasons[sl]})
        body = (f'<p><a href="../report.html">back to the report</a></p>'
                f"<h1>Flagged and failed participants: rows {sl.start + 1}-{min(sl.stop, len(poi))} of {len(poi)}</h1>"
                + pager(names, p) + table_html(df, links={"eid": anchors[sl]}) + pager(names, p))
        pages[name] = document(f"flagged participants, page {p + 1}", body)
        state.made(name)
    return names


def _failure_pages(m: ReportModel, pages: dict[str, str]) -> list[str]:
    f = m.unattached
    if len(f) <= INLINE_FAILURES:
        return []
    names = [f"failures_{i + 1:03d}.html" for i in range((len(f) + PAGE_ROWS - 1) // PAGE_ROWS)]
    for p, name in enumerate(names):
        df = f.iloc[p * PAGE_ROWS : (p + 1) * PAGE_ROWS]
        body = ('<p><a href="../report.html">back to the report</a></p><h1>Failures naming no participant</h1>'
                + pager(names, p) + table_html(df) + pager(names, p))
        pages[name] = document(f"failures, page {p + 1}", body)
    return names


def _plots_html(names: list[str], alt: str) -> str:
    return '<div class="plots">' + "".join(
        f'<img src="{src(FILES + "/" + n)}" alt="{esc(alt)}">' for n in names) + "</div>"


def _main_page(m: ReportModel, data: ReportData, plot_files: dict[str, list[str]], poi_cards, sample_cards,
               poi_pages: list[str], fail_pages: list[str]) -> str:
    h: list[str] = ["<h1>ukbmri run report</h1>"]
    if data.notes:
        h.append('<div class="notes"><b>Notes</b><ul>' + "".join(f"<li>{esc(n)}</li>" for n in data.notes)
                 + "</ul></div>")
    if data.run_info:
        h.append("<details open><summary>Run</summary>" + kv_table(data.run_info) + "</details>")
    bad = ' class="bad"'
    h.append('<p class="summary">'
             f"<span>participants: <b>{m.n_rows}</b></span>"
             f"<span{bad if m.n_flagged else ''}>flagged: <b>{m.n_flagged}</b></span>"
             f"<span{bad if m.n_failed else ''}>failed: <b>{m.n_failed}</b></span>"
             f"<span>failure rows: <b>{m.n_failure_rows}</b></span></p>")
    h.append('<p class="muted">Text version: <a href="report.md">report.md</a>. Sections: '
             '<a href="#flagged">flagged and failed</a> &middot; '
             + " &middot; ".join(f'<a href="#{k}">{esc(v.split(" (")[0])}</a>' for k, v in _SECTIONS.items()
                                 if plot_files.get(k)) + ' &middot; <a href="#sample">sample</a></p>')

    h.append(f'<h2 id="flagged">Flagged and failed participants ({len(m.poi)})</h2>')
    if len(m.flag_counts):
        h.append(table_html(m.flag_counts.rename_axis("flag").rename("participants").reset_index()))
    if len(m.failure_counts):
        h.append("<p>Failures by stage and error:</p>" + table_html(m.failure_counts))
    if m.poi.empty:
        h.append('<p class="muted">No participant was flagged or failed.</p>')
    else:
        more = len(m.poi) - len(poi_cards)
        note = (f"Showing the first {len(poi_cards)} by (eid, instance) with thumbnails; "
                f"{more} more are listed in the table pages. " if more > 0 else "")
        h.append(f'<p class="muted">{note}Full list as a table: {pager(poi_pages)}</p>')
        h.append('<div class="cards">' + "".join(card_html(c) for c in poi_cards) + "</div>")
    if len(m.unattached):
        h.append(f"<h3>Failures naming no participant ({len(m.unattached)})</h3>")
        h.append(table_html(m.unattached.head(INLINE_FAILURES)))
        if fail_pages:
            h.append(f"<p>All of them: {pager(fail_pages)}</p>")

    for key, title in _SECTIONS.items():
        if key == "truth" and data.truth is None:
            continue
        h.append(f'<h2 id="{key}">{esc(title)}</h2>')
        stats = {"distributions": m.summary, "agreement": m.agreement, "widths": m.widths, "truth": m.truth}[key]
        if stats.empty:
            h.append('<p class="muted">No data for this section in this run.</p>')
            continue
        h.append(table_html(stats))
        h.append(_plots_html(plot_files.get(key, []), title))

    h.append(f'<h2 id="sample">Random sample of other participants ({len(sample_cards)} of {m.n_others})</h2>')
    if sample_cards:
        h.append('<p class="muted">Neither flagged nor failed; a fixed pseudo-random sample '
                 f"(seed {data.seed}).</p>")
        h.append('<div class="cards">' + "".join(card_html(c) for c in sample_cards) + "</div>")
    else:
        h.append('<p class="muted">(none)</p>')
    return document("ukbmri run report", "\n".join(h))
