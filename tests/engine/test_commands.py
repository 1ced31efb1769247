"""The single-stage commands on the engine: preprocess body, infer body (MIMIR files), infer liver,
the data dictionary, and the golden end-to-end run with the bundled demonstration weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.engine.cache import ImageCache
from ukbmri.engine.run import default_body_modules
from ukbmri.infer.liver_weights import default_liver_weights

#: column -> (truth column, largest allowed absolute error) on every participant
TOLERANCES = {
    "weight_kg": ("weight_kg", 8.0),
    "height_cm": ("height_cm", 8.0),
    "vat_l": ("vat_l", 1.2),
    "asat_l": ("asat_l", 1.5),
    "liver_volume_l": ("liver_volume_l", 0.4),
    "thigh_muscle_volume_l": ("thigh_muscle_volume_l", 2.0),
    "liver_fat_physics_percent": ("liver_pdff_percent", 0.5),
    "liver_r2star_physics_per_s": ("liver_r2star_per_s", 2.0),
    "liver_fat_teacher_percent": ("liver_pdff_percent", 2.5),
    "liver_fat_student_percent": ("liver_pdff_percent", 2.5),
}


def test_golden_run_with_demo_weights_against_phantom_truth(cohort, tmp_path):
    assert default_body_modules() and default_liver_weights() is not None
    out = tmp_path / "run"
    args = ["run", str(cohort), "--out", str(out), "--truth", str(cohort / "truth.csv")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output  # the truncated 20201 zip, and only it, failed
    fails = pd.read_csv(out / "failures.csv")
    assert fails["eid"].tolist() == [1999999] and fails["error"].tolist() == ["TruncatedZipError"]
    table = pd.read_parquet(out / "participants.parquet")
    truth = pd.read_csv(cohort / "truth.csv")
    merged = table.merge(truth, on="eid", suffixes=("", "__truth"))
    assert merged["eid"].tolist() == [1000001, 1000002]
    for col, (tcol, tol) in TOLERANCES.items():
        t = merged[f"{tcol}__truth"] if f"{tcol}__truth" in merged else merged[tcol]
        err = np.abs(merged[col].to_numpy(float) - t.to_numpy(float))
        assert np.all(err <= tol), f"{col}: errors {err} above {tol}"
    for mean, prefix in (("weight_kg", "weight_kg"), ("vat_l", "vat_l"),
                         ("liver_fat_teacher_percent", "liver_fat_teacher")):
        lo, hi = merged[f"{prefix}_ci95_low"], merged[f"{prefix}_ci95_high"]
        assert (lo <= merged[mean]).all() and (merged[mean] <= hi).all()
    assert (merged["sex_male"].round() == merged["sex_male__truth"]).all()
    assert "demo_weights_not_applied" not in ";".join(table["qc_flags"].fillna(""))  # synth zips are marked
    html = (out / "report.html").read_text()
    assert "DEMONSTRATION" in html and "1999999" in html
    cmp = pd.read_csv(out / "truth_comparison.csv").set_index("prediction")
    assert cmp.loc["liver_fat_physics_percent", "mae"] < 0.5
    _check_in_chromium(out / "report.html", tmp_path)


_PROBE = """<script>
window.addEventListener("load", function () {
  var n = 0, broken = 0;
  for (const img of document.images) { n++; if (!img.complete || img.naturalWidth === 0) broken++; }
  var p = document.createElement("pre");
  p.id = "probe";
  p.textContent = "PROBE images=" + n + " broken=" + broken + " flagged=" +
                  (document.getElementById("flagged") ? 1 : 0) + " END";
  document.body.appendChild(p);
});
</script></body>"""


def _check_in_chromium(report, tmp_path) -> None:
    """The run's own report.html in headless Chromium: it renders, the flagged/failed list is there, no
    image is broken (skips where Chromium is not installed)."""
    import re
    import shutil
    import subprocess

    exe = shutil.which("chromium")
    if exe is None:
        return  # the browser check of the report itself lives in tests/report and skips there
    probe = report.with_name("report_probe.html")
    probe.write_text(report.read_text().replace("</body>", _PROBE))
    res = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
                          f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=15000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r"PROBE images=(\d+) broken=(\d+) flagged=(\d) END", res.stdout)
    assert m, res.stderr[-1500:]
    images, broken, flagged = map(int, m.groups())
    assert images >= 3 and broken == 0 and flagged == 1
    assert "1999999" in res.stdout  # the failed participant is listed


def test_demo_weights_never_run_on_scans_that_are_not_synthetic(cohort, tmp_path, monkeypatch):
    import ukbmri.io.synthetic as synthetic

    monkeypatch.setattr(synthetic, "is_synthetic_zip", lambda path: False)  # as for a real scan
    out = tmp_path / "real"
    res = CliRunner().invoke(cli, ["run", str(cohort), "--out", str(out), "--eids", str(_eids(tmp_path, [1000001]))])
    assert res.exit_code == 0, res.output
    assert "demonstration weights" in res.output and "no network predictions" in res.output
    t = pd.read_parquet(out / "participants.parquet")
    assert "demo_weights_not_applied" in t["qc_flags"].iloc[0]
    assert pd.isna(t["weight_kg"].iloc[0]) and pd.isna(t["liver_fat_teacher_percent"].iloc[0])
    assert pd.notna(t["liver_fat_physics_percent"].iloc[0])  # what needs no trained weights still runs
    assert "no network predictions" in (out / "report.md").read_text()


def _eids(tmp_path, eids):
    p = tmp_path / "eids.txt"
    p.write_text("\n".join(map(str, eids)) + "\n")
    return p


def test_preprocess_body_cli_caches_records_failures_and_resumes(cohort, tmp_path):
    cache = tmp_path / "cache"
    args = ["preprocess", "body", str(cohort), "--cache", str(cache), "--png", str(tmp_path / "png")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output  # the truncated zip failed, the others completed
    assert ImageCache(cache).stems() == ["1000001_20201_2_0", "1000002_20201_2_0"]
    img = np.load(cache / "1000001_20201_2_0.npy")
    assert img.shape == (3, 256, 256) and img.dtype == np.uint8 and img.max() == 255
    assert (tmp_path / "png" / "1000001_20201_2_0.png").is_file()
    fails = pd.read_csv(cache / ".run" / "failures.csv")
    assert fails["eid"].tolist() == [1999999] and fails["error"].iloc[0] == "TruncatedZipError"
    before = (cache / "1000001_20201_2_0.npy").stat().st_mtime_ns
    res2 = CliRunner().invoke(cli, args)
    assert "body: 0 computed, 3 reused" in res2.output
    assert (cache / "1000001_20201_2_0.npy").stat().st_mtime_ns == before


def test_infer_body_writes_mimir_predictions_and_reuses_cached_images(cohort, random_module, tmp_path):
    cache = tmp_path / "cache"
    CliRunner().invoke(cli, ["preprocess", "body", str(cohort), "--cache", str(cache)])
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["infer", "body", "--input", str(cache), "--modules", str(random_module),
                                   "--out", str(out), "--allow-demo-weights", "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out / "tiny" / "predictions.csv")
    assert list(pred.columns) == ["name", "weight_mean_in_kg", "weight_variance_in_kg", "vat_mean_in_L", "vat_variance_in_L"]
    assert pred["name"].tolist() == ["1000001_20201_2_0", "1000002_20201_2_0"]
    body = pd.read_parquet(out / "body.parquet")
    np.testing.assert_allclose(body["weight_kg"], pred["weight_mean_in_kg"], rtol=1e-12)
    sd = np.sqrt(body["weight_kg_variance"].to_numpy())
    hi = np.maximum(body["weight_kg"] + 1.959964 * sd, 0)
    np.testing.assert_allclose(body["weight_kg_ci95_high"], hi, rtol=1e-5)


def test_infer_liver_physics_only(cohort, tmp_path):
    out = tmp_path / "liver"
    res = CliRunner().invoke(cli, ["infer", "liver", "--input", str(cohort), "--out", str(out), "--no-networks"])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out / "liver.csv")
    assert t["eid"].tolist() == [1000001, 1000002]
    assert t["liver_fat_gre_physics_percent"].notna().all() and t["liver_fat_ideal_physics_percent"].notna().all()
    assert (t["physics_source_field"] == 20203).all() and t["liver_fat_teacher_percent"].isna().all()
    assert (out / "liver_roi" / "1000001_2_20203.png").is_file() and (out / "liver_roi" / "1000001_2_20254.npy").is_file()


def test_columns_data_dictionary_covers_every_output_column(cohort, tmp_path):
    res = CliRunner().invoke(cli, ["columns", "--format", "csv"])
    assert res.exit_code == 0
    described = pd.read_csv(__import__("io").StringIO(res.output), dtype=str, keep_default_na=False)
    row = described.set_index("column")
    assert row.loc["weight_kg", "ukb_field"] == "21002" and row.loc["vat_l", "ukb_field"] == "22407"
    assert row.loc["liver_fat_physics_percent", "ukb_field"] == "22402"
    assert all(row["meaning"].str.len() > 5)
    out = tmp_path / "o"
    CliRunner().invoke(cli, ["run", str(cohort), "--out", str(out), "--eids", str(_eids(tmp_path, [1000001])),
                             "--no-liver-networks"])
    table = pd.read_csv(out / "participants.csv")
    assert set(table.columns) <= set(described["column"]), set(table.columns) - set(described["column"])
