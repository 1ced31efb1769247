"""A visual QC report of a run: ``OUT/report.html`` (static, self-contained) and ``OUT/report.md``.

Flagged and failed participants first, with their reasons and thumbnails (body 2D image,
liver ROI overlays); then cohort distributions, physics-vs-network liver agreement,
interval widths and, for phantoms, the comparison with the ground truth. See
``docs/report.md``.

    from ukbmri.report import ReportData, write_reports
    write_reports(out_dir, ReportData(table=table, failures=failures, body_image=..., liver_rois=...))
"""

from ukbmri.report.data import ReportData
from ukbmri.report.write import write_reports

__all__ = ["ReportData", "write_reports"]
