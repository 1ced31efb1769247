"""The body engine end to end on synthetic zips: preprocess, infer, resume, failures."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.engine.cache import ImageCache


def test_preprocess_body_cli_caches_records_failures_and_resumes(cohort, tmp_path):
    cache = tmp_path / "cache"
    runner = CliRunner()
    res = runner.invoke(cli, ["preprocess", "body", str(cohort), "--cache", str(cache), "--png", str(tmp_path / "png")])
    assert res.exit_code == 1, res.output  # the truncated zip failed, the others completed
    stems = ImageCache(cache).stems()
    assert stems == ["1000001_20201_2_0", "1000002_20201_2_0"]
    img = np.load(cache / "1000001_20201_2_0.npy")
    assert img.shape == (3, 256, 256) and img.dtype == np.uint8 and img.max() == 255
    assert (tmp_path / "png" / "1000001_20201_2_0.png").is_file()
    fails = pd.read_csv(cache / "failures.csv")
    assert fails["eid"].tolist() == [1999999] and fails["error"].iloc[0] == "TruncatedZipError"
    assert "1999999_20201_2_0.zip" in res.output
    # a re-run recomputes nothing that is valid
    before = (cache / "1000001_20201_2_0.npy").stat().st_mtime_ns
    res2 = runner.invoke(cli, ["preprocess", "body", str(cohort), "--cache", str(cache), "--png", str(tmp_path / "png")])
    assert "0 preprocessed, 2 already cached, 1 failed" in res2.output
    assert (cache / "1000001_20201_2_0.npy").stat().st_mtime_ns == before


def test_infer_body_tables_resume_and_missing_module(cohort, random_module, tmp_path, monkeypatch):
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["infer", "body", "--input", str(cohort), "--modules", str(random_module),
            "--modules", str(tmp_path / "no_such_module"), "--out", str(out), "--batch-size", "2"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 1, res.output
    pred = pd.read_csv(out / "tiny" / "predictions.csv")
    assert list(pred.columns) == ["name", "weight_mean_in_kg", "weight_variance_in_kg", "vat_mean_in_L", "vat_variance_in_L"]
    assert pred["name"].tolist() == ["1000001_20201_2_0", "1000002_20201_2_0"]
    body = pd.read_parquet(out / "body.parquet")
    assert body["eid"].tolist() == [1000001, 1000002]
    # 95 % interval = mean -+ 1.96 sd, from the same numbers as predictions.csv
    sd = np.sqrt(body["weight_kg_variance"].to_numpy())
    np.testing.assert_allclose(body["weight_kg_ci95_high"], body["weight_kg"] + 1.959964 * sd, rtol=1e-5)
    np.testing.assert_allclose(body["weight_kg"], pred["weight_mean_in_kg"], rtol=1e-6)
    assert body["tiny__weights_sha256"].str.len().eq(64).all()
    fails = pd.read_csv(out / "failures.csv")
    assert sorted(fails["stage"]) == ["load-module", "preprocess-body"]
    # resume: nothing is predicted again
    import ukbmri.infer.body as ib

    def boom(*a, **k):
        raise AssertionError("predictions should have been reused")

    monkeypatch.setattr(ib, "predict_images", boom)
    res2 = runner.invoke(cli, args)
    # exit 1 for the missing module only: an AssertionError from boom would be the exception
    assert res2.exit_code == 1 and isinstance(res2.exception, SystemExit), res2.exception
    pd.testing.assert_frame_equal(pd.read_parquet(out / "body.parquet"), body)


def test_infer_body_recomputes_when_calibration_changes(cohort, random_module, tmp_path):
    """Resumed predictions are only reused for identical module files: a new calibration recomputes."""
    import shutil

    module = tmp_path / "tiny"
    shutil.copytree(random_module, module)
    out = tmp_path / "out"
    args = ["infer", "body", "--input", str(cohort), "--modules", str(module), "--out", str(out)]
    runner = CliRunner()
    assert runner.invoke(cli, args).exit_code == 1  # the truncated zip
    before = pd.read_parquet(out / "body.parquet")
    cal = module / "calibration_factors.txt"
    lines = cal.read_text().splitlines()
    lines[-2] = str(float(lines[-2]) * 100)  # weight's factor (targets: weight, vat)
    cal.write_text("\n".join(lines) + "\n")
    assert runner.invoke(cli, args).exit_code == 1
    after = pd.read_parquet(out / "body.parquet")
    np.testing.assert_allclose(after["weight_kg_variance"], before["weight_kg_variance"] * 100, rtol=1e-5)
    np.testing.assert_allclose(after["vat_l_variance"], before["vat_l_variance"], rtol=1e-6)


def test_preprocess_body_workers_and_nifti_exports(cohort, tmp_path):
    """Two worker processes give the same images as one; NIfTI volumes carry a RAS affine."""
    import nibabel as nib

    from ukbmri.preprocess.body import preprocess_body

    cache, nifti = tmp_path / "cache", tmp_path / "nifti"
    res = CliRunner().invoke(cli, ["preprocess", "body", str(cohort), "--cache", str(cache), "--nifti", str(nifti),
                                   "--workers", "2"])
    assert res.exit_code == 1, res.output
    assert ImageCache(cache).stems() == ["1000001_20201_2_0", "1000002_20201_2_0"]
    direct = preprocess_body(cohort / "1000002_20201_2_0.zip")
    np.testing.assert_array_equal(np.load(cache / "1000002_20201_2_0.npy"), direct.image)
    water = nib.load(nifti / "1000002_20201_2_0_water.nii.gz")
    assert water.shape == direct.water.shape
    assert nib.aff2axcodes(water.affine) == ("L", "P", "S")  # array axes run to patient left, back, up
    np.testing.assert_allclose(np.abs(np.diag(water.affine)[:3]), direct.water.spacing, rtol=1e-5)
    # patient LPS origin -> RAS: x and y change sign
    np.testing.assert_allclose(water.affine[:3, 3], np.asarray(direct.water.origin) * [-1, -1, 1], atol=1e-3)
    ff = np.asanyarray(nib.load(nifti / "1000002_20201_2_0_ff_percent.nii.gz").dataobj)
    assert np.nanmax(ff) <= 100.0 and np.nanmin(ff) >= 0.0
