"""Time and size of the visual QC report (ukbmri.report.write_reports).

Cases: 100,000 synthetic rows without images, and 200 rows with images (body .npy and two
ROI PNGs per participant); each written fresh, then again unchanged (a resume). Where the
old Markdown report (ukbmri.engine.report.write_report) still exists it is timed on the
same 100,000 rows for a ratio.

    PYTHONPATH=src python benchmarks/bench_report.py [--rows 100000] [--image-rows 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _synth():
    spec = importlib.util.spec_from_file_location("synth_report", HERE.parent / "tests" / "report" / "synth_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _size(folder: Path) -> tuple[int, int]:
    """Files and bytes of a report folder (report.html, report.md, report_files/)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--image-rows", type=int, default=200)
    args = ap.parse_args()

    from ukbmri.report import ReportData, write_reports

    sr = _synth()
    work = Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        table = sr.make_table(args.rows)
        failures = sr.make_failures([(1000000 + k, 2) for k in range(0, args.rows, 50)])
        truth = table[["eid", "instance", "weight_kg", "liver_fat_physics_percent"]].copy()
        pairs = {"weight_kg": "weight_kg", "liver_fat_teacher_percent": "liver_fat_physics_percent"}
        data = ReportData(table=table, failures=failures, truth=truth, truth_pairs=pairs)
        out = work / "big"
        first = _time(lambda: write_reports(out, data))
        again = _time(lambda: write_reports(out, data))
        n, size = _size(out)
        print(f"{args.rows} rows, no images: first {first:.2f} s, unchanged {again:.2f} s "
              f"({first / again:.0f}x less), {n} files, {size / 1e6:.1f} MB")

        old = None
        try:
            from ukbmri.engine.report import write_report

            key = ["weight_kg", "height_cm", "vat_l", "liver_fat_physics_percent", "liver_fat_teacher_percent"]
            old = _time(lambda: write_report(work / "old", table, [], inputs={"zips": args.rows}, key_columns=key))
        except ImportError:
            pass
        if old is not None:
            print(f"  old Markdown report on the same rows: {old:.2f} s every time "
                  f"(unchanged resume: new/old = {again / old:.2f})")

        small = sr.make_table(args.image_rows)
        keys = list(zip(small.eid.astype(int), small.instance.astype(int)))
        sr.write_images(work / "img", keys, roi_side=500)
        body, rois = sr.lookups(work / "img")
        sdata = ReportData(table=small, failures=sr.make_failures(keys[:3]), body_image=body, liver_rois=rois,
                           sample_size=200)
        out = work / "small"
        first = _time(lambda: write_reports(out, sdata))
        again = _time(lambda: write_reports(out, sdata))
        n, size = _size(out)
        thumbs = len(list((out / "report_files" / "thumbs").glob("*.png")))
        print(f"{args.image_rows} rows with images: first {first:.2f} s, unchanged {again:.2f} s "
              f"({first / again:.0f}x less), {thumbs} thumbnails, {n} files, {size / 1e6:.1f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
