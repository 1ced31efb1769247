"""The visual QC report (ukbmri.report) on tiny synthetic tables with images written here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ukbmri.report import ReportData, write_reports
from ukbmri.report import write as report_write
from ukbmri.report.data import companion, interval_columns, participants_of_interest, sample_others, value_columns
from ukbmri.report.stats import truth_frame, truth_stats


def _data(synth, tmp_path, n=24, *, images=True, **kw) -> ReportData:
    table = kw.pop("table", None)
    if table is None:
        table = synth.make_table(n)
    if images:
        keys = list(zip(table["eid"].astype(int), table["instance"].astype(int)))
        synth.write_images(tmp_path / "img", keys, roi_side=48)
    body, rois = synth.lookups(tmp_path / "img")
    failures = kw.pop("failures", synth.make_failures([]))
    return ReportData(table=table, failures=failures, body_image=body, liver_rois=rois, **kw)


def _section(text: str, start: str, end: str | None) -> str:
    i = text.index(f'id="{start}"')
    j = text.index(f'id="{end}"') if end else len(text)
    return text[i:j]


def _card_keys(text: str) -> list[tuple[int, int]]:
    return [(int(e), int(i)) for e, i in re.findall(r'class="card [a-z]+" id="p-(\d+)-(\d+)"', text)]


def test_flagged_and_failed_come_first_with_reasons(synth, tmp_path, check_images):
    table = synth.make_table(24)
    in_table = (int(table.eid[5]), int(table.instance[5]))
    failures = synth.make_failures([in_table, (42, 2)], message="zip member 3/7.dcm truncated")
    out = tmp_path / "out"
    paths = write_reports(out, _data(synth, tmp_path, table=table, failures=failures, sample_size=5))
    assert paths[:2] == [out / "report.html", out / "report.md"]
    html = (out / "report.html").read_text()
    assert html.index('id="flagged"') < html.index('id="distributions"') < html.index('id="sample"')

    flagged = _section(html, "flagged", "distributions")
    flagged_keys = {(int(e), int(i)) for e, i in zip(table.eid, table.instance)
                    if table.qc_flags[table.eid == e].iloc[0] != ""}
    cards = _card_keys(flagged)
    assert cards == sorted(cards)  # by (eid, instance)
    assert set(cards) == flagged_keys | {in_table, (42, 2)}
    assert "physics_vs_teacher_disagree" in flagged and "small_liver_roi" in flagged
    assert flagged.count("zip member 3/7.dcm truncated") == 2
    assert "(no table row)" in flagged  # eid 42 failed everywhere: still listed
    # thumbnails of a flagged participant: body image and both ROI overlays
    e, i = sorted(flagged_keys)[0]
    for kind in ("body", "20203", "20254"):
        assert f"report_files/thumbs/{e}_{i}_{kind}.png" in flagged

    sample = _card_keys(_section(html, "sample", None))
    assert len(sample) == 5 and not set(sample) & set(cards)
    srcs = check_images(out / "report.html")
    assert len(srcs) >= 3 * (len(cards) - 1 + 5)

    md = (out / "report.md").read_text()
    assert "flagged: " in md and f"| {e} | {i} |" in md and "report_files/hist_01.png" in md


def test_escaping_of_every_data_string(synth, tmp_path):
    table = synth.make_table(6)
    table.loc[3, "qc_flags"] = "<img src=x onerror=alert(1)>;ok&flag"
    table["weird<col>_kg"] = np.arange(6.0)
    failures = synth.make_failures([(int(table.eid[0]), int(table.instance[0])), (None, None)],
                                   message='<script>alert("x")</script> & more')
    data = _data(synth, tmp_path, table=table, failures=failures, notes=["demo <b>weights</b>"],
                 run_info={"command": "ukbmri run '<in>'", "counts": {"<k>": 1}})
    out = tmp_path / "out"
    write_reports(out, data)
    html = (out / "report.html").read_text()
    for raw in ("<script>", "<img src=x", "<b>weights", "<col>", "<in>", "<k>"):
        assert raw not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "ok&amp;flag" in html
    assert "weird&lt;col&gt;_kg" in html
    assert "<script" not in html.lower()  # the report itself needs no script
    page = (out / "report_files" / "flagged_001.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    md = (out / "report.md").read_text()
    assert "<script>" not in md and "<img" not in md


def _body_only(t):
    return t[[c for c in t.columns if not c.startswith(("liver_", "teacher_"))]]


def _liver_only(t):
    return t[[c for c in t.columns if not c.startswith(("weight", "height", "vat", "mimir"))]]


def _liver_all_nan(t):
    t = _liver_only(t).copy()
    for c in t.columns:
        if c.startswith("liver_"):
            t[c] = np.nan
    return t


@pytest.mark.parametrize("case", ["body", "liver", "liver_nan", "empty", "all_failed", "no_flags_column"])
def test_every_column_combination(synth, tmp_path, check_images, case):
    table = synth.make_table(12)
    failures = synth.make_failures([])
    if case == "body":
        table = _body_only(table)
    elif case == "liver":
        table = _liver_only(table)
    elif case == "liver_nan":
        table = _liver_all_nan(table)
    elif case == "empty":
        table = table.iloc[:0]
    elif case == "all_failed":
        failures = synth.make_failures([(int(e), int(i)) for e, i in zip(table.eid, table.instance)])
        table = pd.DataFrame({"eid": pd.array([], "Int64"), "instance": pd.array([], "Int64")})
    elif case == "no_flags_column":
        table = table.drop(columns=["qc_flags"])
    data = _data(synth, tmp_path, table=synth.make_table(12) if case == "all_failed" else table,
                 images=True, failures=failures)
    data = ReportData(**{**data.__dict__, "table": table})
    out = tmp_path / "out"
    write_reports(out, data)
    html = (out / "report.html").read_text()
    check_images(out / "report.html")
    plots = {p.name for p in (out / "report_files").glob("*.png")}
    has = {"hist": any(p.startswith("hist_") for p in plots),
           "ba": any(p.startswith("bland_altman_") for p in plots),
           "widths": any(p.startswith("widths_") for p in plots)}
    expect = {"body": (True, False, True), "liver": (True, True, True), "liver_nan": (False, False, False),
              "empty": (False, False, False), "all_failed": (False, False, False),
              "no_flags_column": (True, True, True)}[case]
    assert (has["hist"], has["ba"], has["widths"]) == expect
    if case == "all_failed":
        assert len(_card_keys(_section(html, "flagged", "distributions"))) == 12
        assert "(no table row)" in html
    if case in ("empty", "liver_nan"):
        assert "No data for this section" in html
    if case == "no_flags_column":
        assert "No participant was flagged or failed." in html
    assert (out / "report.md").read_text().startswith("# ukbmri run report")


def test_sampling_is_deterministic_and_stable(synth):
    table = synth.make_table(300, flag_every=0)
    none = participants_of_interest(table.iloc[:0], None)
    a = sample_others(table, none, 20, seed=3)
    b = sample_others(table.sample(frac=1.0, random_state=1), none, 20, seed=3)
    pd.testing.assert_frame_equal(a, b)  # row order does not matter
    assert len(a) == 20 and a.equals(a.sort_values(["eid", "instance"]).reset_index(drop=True))
    c = sample_others(table, none, 20, seed=4)
    assert set(map(tuple, a.to_numpy())) != set(map(tuple, c.to_numpy()))
    grown = sample_others(synth.make_table(330, flag_every=0), none, 20, seed=3)
    kept = set(map(tuple, a.to_numpy())) & set(map(tuple, grown.to_numpy()))
    assert len(kept) >= 15  # 10 % more participants displace about 10 % of the sample
    poi = participants_of_interest(synth.make_table(300), None)
    s = sample_others(synth.make_table(300), poi, 1000, seed=0)
    assert len(s) == 300 - len(poi)  # capped, and flagged participants excluded
    assert not set(map(tuple, s.to_numpy())) & set(map(tuple, poi[["eid", "instance"]].to_numpy()))


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_nothing_is_rewritten_when_unchanged(synth, tmp_path):
    out = tmp_path / "out"
    data = _data(synth, tmp_path, sample_size=4)
    write_reports(out, data)
    before = _mtimes(out)
    assert any(k.startswith("report_files/thumbs/") for k in before)
    first = write_reports(out, data)
    assert write_reports(out, data) == first and all(p.is_file() for p in first)
    assert _mtimes(out) == before

    table = data.table.copy()
    table.loc[0, "weight_kg"] += 5.0  # one value changed: its histogram again, nothing else
    write_reports(out, ReportData(**{**data.__dict__, "table": table}))
    after = _mtimes(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert "report_files/hist_01.png" in changed
    assert not any(k.startswith("report_files/thumbs/") for k in changed)
    assert "report_files/bland_altman_01.png" not in changed
    assert "report_files/flagged_001.html" not in changed

    table.loc[0, "qc_flags"] = "new_flag"  # the flagged list changed: its page again
    write_reports(out, ReportData(**{**data.__dict__, "table": table}))
    page = out / "report_files" / "flagged_001.html"
    assert page.stat().st_mtime_ns != after["report_files/flagged_001.html"] and "new_flag" in page.read_text()


def test_thumbnails_capped_and_the_rest_paged(synth, tmp_path, monkeypatch, check_images, html_refs):
    monkeypatch.setattr(report_write, "THUMB_CAP", 3)
    monkeypatch.setattr(report_write, "PAGE_ROWS", 2)
    table = synth.make_table(40)  # 8 flagged
    out = tmp_path / "out"
    write_reports(out, _data(synth, tmp_path, table=table, sample_size=0))
    html = (out / "report.html").read_text()
    n_poi = int((table.qc_flags != "").sum())
    assert len(_card_keys(_section(html, "flagged", "distributions"))) == 3
    assert f"{n_poi - 3} more are listed" in html
    pages = sorted((out / "report_files").glob("flagged_*.html"))
    assert len(pages) == (n_poi + 1) // 2
    listed = sum(len(re.findall(r"<tr><td", p.read_text())) for p in pages)
    assert listed == n_poi
    _, links = html_refs(pages[0])
    assert any(h.startswith("../report.html#p-") for h in links)
    for p in pages:
        check_images(p)
    assert len(list((out / "report_files" / "thumbs").glob("*.png"))) == 3 * 3


def test_bad_images_do_not_stop_the_report(synth, tmp_path, check_images):
    table = synth.make_table(8)
    data = _data(synth, tmp_path, table=table, sample_size=8)
    e0, i0 = int(table.eid[0]), int(table.instance[0])
    np.save(tmp_path / "img" / "body" / f"{e0}_{i0}.npy", np.zeros((4, 4), np.float32))  # wrong shape and dtype
    (tmp_path / "img" / "roi" / f"{e0}_{i0}_20254.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    def rois(e, i):
        if e == int(table.eid[1]):
            raise RuntimeError("lookup broke")
        return data.liver_rois(e, i)

    out = tmp_path / "out"
    write_reports(out, ReportData(**{**data.__dict__, "liver_rois": rois}))
    html = (out / "report.html").read_text()
    assert f"unreadable: {e0}_{i0}.npy" in html and f"unreadable: {e0}_{i0}_20254.png" in html
    check_images(out / "report.html")


def test_large_roi_overlays_are_shrunk_and_link_to_the_original(synth, tmp_path, html_refs):
    from PIL import Image

    table = synth.make_table(4)
    out = tmp_path / "out"
    synth.write_images(out / "liver_roi", list(zip(table.eid.astype(int), table.instance.astype(int))), roi_side=900)
    body, rois = synth.lookups(out / "liver_roi")
    write_reports(out, ReportData(table=table, failures=synth.make_failures([]), body_image=body, liver_rois=rois))
    thumbs = sorted((out / "report_files" / "thumbs").glob("*_20203.png"))
    assert thumbs
    for t in thumbs:
        with Image.open(t) as im:
            assert max(im.size) <= 400
    _, links = html_refs(out / "report.html")
    originals = [h for h in links if h.startswith("liver_roi/roi/")]
    assert len(originals) == 2 * 4 and all((out / h).is_file() for h in originals)
    body_png = next((out / "report_files" / "thumbs").glob("*_body.png"))
    with Image.open(body_png) as im:
        assert im.size == ((3 * 256 + 2 * 4) // 2, 128)


def test_columns_and_truth_coverage():
    t = pd.DataFrame({"eid": pd.array([1, 2, 3, 4], "Int64"), "instance": pd.array([2, 2, 2, 2], "Int64"),
                      "liver_fat_teacher_percent": [1.0, 2.0, 3.0, 4.0],
                      "liver_fat_teacher_variance": [1.0] * 4,
                      "liver_fat_teacher_ci95_low": [0.0, 1.0, 2.0, 3.0],
                      "liver_fat_teacher_ci95_high": [2.0, 3.0, 4.0, 5.0],
                      "vat_l": [np.nan] * 4, "x_sha256": ["a"] * 4, "ukbmri_version": ["0"] * 4,
                      "liver_roi_voxels": [10, 20, 30, 40]})
    assert value_columns(t) == ["liver_fat_teacher_percent"]  # all-NaN, provenance and counts are not values
    assert companion(t.columns, "liver_fat_teacher_percent", "ci95_low") == "liver_fat_teacher_ci95_low"
    assert interval_columns(t) == [("liver_fat_teacher_percent", "liver_fat_teacher_ci95_low",
                                    "liver_fat_teacher_ci95_high")]
    truth = pd.DataFrame({"eid": [1, 2, 3, 4, 5], "pdff": [1.5, 2.0, 9.0, 3.5, 0.0]})
    pairs = {"liver_fat_teacher_percent": "pdff"}
    s = truth_stats(truth_frame(t, truth, pairs), pairs).iloc[0]
    assert s.n == 4 and s.coverage95 == pytest.approx(0.75) and s.n_with_interval == 4
    assert s.mae == pytest.approx((0.5 + 0 + 6 + 0.5) / 4) and s.bias == pytest.approx((-0.5 + 0 - 6 + 0.5) / 4)


def test_plots_drawn_in_two_processes_equal_the_serial_ones(synth, tmp_path):
    """``workers=2`` draws the stale plots in a process pool: same files, same pixels, same report."""
    data = _data(synth, tmp_path, sample_size=4)
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    a = write_reports(serial, data)
    b = write_reports(parallel, data, workers=2)
    plots = sorted(p.name for p in (serial / "report_files").glob("*.png"))
    assert len(plots) >= 3 and plots == sorted(p.name for p in (parallel / "report_files").glob("*.png"))
    for name in plots:
        assert (serial / "report_files" / name).read_bytes() == (parallel / "report_files" / name).read_bytes(), name
    assert [p.relative_to(serial) for p in a] == [p.relative_to(parallel) for p in b]
    assert (serial / "report.html").read_text() == (parallel / "report.html").read_text()
