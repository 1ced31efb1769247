"""Participant cards: reasons, a few values and thumbnails for one (eid, instance).

Thumbnails live in ``report_files/thumbs/<eid>_<instance>_<kind>.png`` and are redrawn
only when their source file changed. A missing or unreadable image never stops the
report: the card says what is missing instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ukbmri.report.data import KEYS, ReportData, numeric_values
from ukbmri.report.html import Card, Thumb, fmt
from ukbmri.report.state import ReportState
from ukbmri.report.thumbs import body_thumbnail, roi_thumbnail, source_signature

__all__ = ["CardMaker"]

log = logging.getLogger(__name__)
MAX_VALUES = 8  # values shown on a card


class CardMaker:
    """Builds cards for a report folder (``files`` is ``OUT/report_files``); ``prefix`` is
    the path from the page that shows the cards to ``files``."""

    def __init__(self, data: ReportData, table: pd.DataFrame, value_cols: Sequence[str], state: ReportState,
                 prefix: str) -> None:
        self.data = data
        self.state = state
        self.prefix = prefix
        liver = [c for c in value_cols if c.startswith("liver_")]
        self.show = (liver or list(value_cols))[:MAX_VALUES]
        self._values: pd.DataFrame | None = None
        if self.show and len(table) and all(k in table.columns for k in KEYS):
            v = table[KEYS + self.show].copy()
            for k in KEYS:
                v[k] = pd.to_numeric(v[k], errors="coerce").astype("Int64")
            self._values = v.dropna(subset=KEYS).drop_duplicates(KEYS).set_index(KEYS)

    def cards(self, rows: pd.DataFrame) -> list[Card]:
        """One card per row of ``rows`` (``eid``, ``instance`` and optionally ``flags``, ``failures``, ``in_table``)."""
        vals = self._lookup(rows)
        out = []
        for i, r in enumerate(rows.itertuples(index=False)):
            eid, inst = getattr(r, "eid"), getattr(r, "instance")
            out.append(Card(eid=eid, instance=inst, flags=tuple(getattr(r, "flags", ()) or ()),
                            failures=tuple(getattr(r, "failures", ()) or ()), values=vals[i],
                            thumbs=tuple(self._thumbs(eid, inst)), in_table=bool(getattr(r, "in_table", True))))
        return out

    def _lookup(self, rows: pd.DataFrame) -> list[list[tuple[str, str]]]:
        if self._values is None or rows.empty:
            return [[] for _ in range(len(rows))]
        idx = pd.MultiIndex.from_frame(rows[KEYS].astype("Int64"))
        found = self._values.reindex(idx)
        cols = {c: numeric_values(found[c]) for c in self.show}
        return [[(c, fmt(cols[c][i])) for c in self.show if np.isfinite(cols[c][i])] for i in range(len(rows))]

    def _thumbs(self, eid, inst) -> list[Thumb]:
        if pd.isna(eid) or pd.isna(inst):
            return []
        eid, inst = int(eid), int(inst)
        thumbs = []
        body = self._call(self.data.body_image, eid, inst)
        if body is not None:
            thumbs.append(self._thumb("body 2D image (water | fat | fat fraction)", Path(body),
                                      f"{eid}_{inst}_body.png", body_thumbnail, link_original=False))
        rois = self._call(self.data.liver_rois, eid, inst) or {}
        for fld in sorted(rois, key=str):
            stem = Path(rois[fld])
            thumbs.append(self._thumb(f"liver ROI {fld}", stem.with_name(stem.name + ".png"),
                                      f"{eid}_{inst}_{_safe(fld)}.png", roi_thumbnail))
        return thumbs

    def _call(self, fn, eid: int, inst: int):
        try:
            return fn(eid, inst)
        except Exception as exc:  # noqa: BLE001 - a lookup problem must not stop the report
            log.warning("report: image lookup for %s_%s failed: %s", eid, inst, exc)
            return None

    def _thumb(self, caption: str, source: Path, name: str, make, link_original: bool = True) -> Thumb:
        rel = f"thumbs/{name}"
        try:
            sig = source_signature(source)
        except OSError:
            self.state.forget(rel)
            return Thumb(caption, None, f"missing: {source.name}")
        if not self.state.fresh(rel, sig):
            try:
                make(source, self.state.folder / rel)
                self.state.made(rel)
            except Exception as exc:  # noqa: BLE001 - unreadable image: say so on the card
                log.warning("report: cannot draw %s: %s", source, exc)
                self.state.forget(rel)
                return Thumb(caption, None, f"unreadable: {source.name}")
        return Thumb(caption, f"{self.prefix}{rel}", href=self._original(source) if link_original else None)

    def _original(self, source: Path) -> str | None:
        """A relative link to ``source`` when it lies inside the output folder (so the link travels with it)."""
        out = self.state.folder.parent.resolve()
        try:
            return source.resolve().relative_to(out).as_posix()
        except ValueError:
            return None


def _safe(s: object) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(s))[:40] or "x"
