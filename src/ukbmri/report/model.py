"""Everything a report shows, computed once from :class:`ReportData` (both the HTML and the
Markdown report are rendered from one :class:`ReportModel`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ukbmri.report import figures
from ukbmri.report.data import (
    ReportData,
    flag_counts,
    flags_of,
    interval_columns,
    liver_agreement_pairs,
    participants_of_interest,
    sample_others,
    unattached_failures,
    value_columns,
)
from ukbmri.report.figures import Plot
from ukbmri.report.stats import agreement_stats, interval_width_stats, summary_stats, truth_frame, truth_stats

__all__ = ["ReportModel", "build_model"]


@dataclass(frozen=True)
class ReportModel:
    n_rows: int
    value_cols: list[str]
    poi: pd.DataFrame  # flagged or failed participants (see data.participants_of_interest)
    unattached: pd.DataFrame  # failures naming no participant
    n_failure_rows: int
    sample: pd.DataFrame  # eid, instance of the sampled others
    n_others: int  # participants neither flagged nor failed
    flag_counts: pd.Series
    failure_counts: pd.DataFrame  # stage, error, n
    summary: pd.DataFrame
    agreement: pd.DataFrame
    widths: pd.DataFrame
    truth: pd.DataFrame  # truth_stats; empty without truth
    plots: dict[str, list[Plot]]  # section -> plots

    @property
    def n_flagged(self) -> int:
        return int((self.poi["flags"].str.len() > 0).sum()) if len(self.poi) else 0

    @property
    def n_failed(self) -> int:
        return int((self.poi["failures"].str.len() > 0).sum()) if len(self.poi) else 0


def build_model(data: ReportData) -> ReportModel:
    table = data.table if data.table is not None else pd.DataFrame()
    failures = data.failures if data.failures is not None else pd.DataFrame()
    vcols = value_columns(table)
    flags = flags_of(table)
    poi = participants_of_interest(table, failures, flags)
    sample = sample_others(table, poi, data.sample_size, data.seed)
    n_in_poi = int(poi["in_table"].sum()) if len(poi) else 0
    intervals = interval_columns(table, vcols)
    pairs = liver_agreement_pairs(table)
    merged = truth_frame(table, data.truth, data.truth_pairs)
    tstats = truth_stats(merged, data.truth_pairs) if len(merged) else pd.DataFrame()
    if len(failures):
        fc = (failures.assign(stage=failures.get("stage", "?"), error=failures.get("error", "?"))
              .groupby(["stage", "error"], dropna=False).size().rename("n").reset_index()
              .sort_values("n", ascending=False, kind="stable"))
    else:
        fc = pd.DataFrame(columns=["stage", "error", "n"])
    plots = {
        "distributions": figures.histogram_plots(table, vcols),
        "agreement": figures.agreement_plots(table, pairs),
        "widths": figures.width_plots(table, intervals),
        "truth": figures.truth_plots(merged, data.truth_pairs) if len(merged) else [],
    }
    return ReportModel(
        n_rows=len(table), value_cols=vcols, poi=poi, unattached=unattached_failures(failures),
        n_failure_rows=len(failures), sample=sample, n_others=max(0, len(table) - n_in_poi),
        flag_counts=flag_counts(table, flags), failure_counts=fc, summary=summary_stats(table, vcols),
        agreement=agreement_stats(table, pairs), widths=interval_width_stats(table, intervals),
        truth=tstats, plots=plots)
