"""``ukbmri infer liver`` end to end: the table contract, QC flags, the ledger, resume."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.engine.liver import QcRules, qc_flags

REQUIRED = ["eid", "instance", "liver_fat_physics_percent", "liver_r2star_physics_per_s",
            "liver_fat_teacher_percent", "liver_fat_student_percent", "qc_flags"]


@pytest.fixture()
def liver_inputs(cohort, tmp_path):
    """The cohort's liver zips, plus a 20201 zip named as a 20203 one (participant 1000003, no 20254)."""
    d = tmp_path / "zips"
    d.mkdir()
    for z in sorted(cohort.glob("*_2025[4]_2_0.zip")) + sorted(cohort.glob("*_20203_2_0.zip")):
        shutil.copy(z, d / z.name)
    shutil.copy(cohort / "1000001_20201_2_0.zip", d / "1000003_20203_2_0.zip")
    return d


def test_infer_liver_table_ledger_qc_and_resume(liver_inputs, cohort, tmp_path):
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(cli, ["infer", "liver", "--input", str(liver_inputs), "--out", str(out)])
    assert res.exit_code == 1, res.output  # the mislabelled zip failed; the others completed
    table = pd.read_parquet(out / "liver.parquet")
    assert set(REQUIRED) <= set(table.columns)
    assert pd.read_csv(out / "liver.csv").columns.tolist() == table.columns.tolist()
    assert table["eid"].tolist() == [1000001, 1000002, 1000003]
    good = table[table["eid"] < 1000003].merge(pd.read_csv(cohort / "truth.csv"), on="eid")
    np.testing.assert_allclose(good["liver_fat_physics_percent"], good["liver_pdff_percent"], atol=0.5)
    np.testing.assert_allclose(good["liver_r2star_physics_per_s"], good["liver_r2star_per_s"], atol=2.0)
    assert good["physics_source_field"].tolist() == [20203, 20203]
    for kind in ("teacher", "student"):  # bundled demo weights, with intervals
        assert good[f"liver_fat_{kind}_percent"].notna().all()
        assert (good[f"liver_fat_{kind}_ci95_low"] < good[f"liver_fat_{kind}_percent"]).all()
        assert good[f"{kind}_weights_sha256"].str.len().eq(64).all()
    assert (out / "liver_roi" / "1000001_2.png").is_file() and (out / "liver_roi" / "1000001_2.npy").is_file()

    bad = table[table["eid"] == 1000003].iloc[0]
    assert bad["qc_flags"] == "gre_failed"  # empty cells, never zeros, for what could not be measured
    assert pd.isna(bad["liver_fat_physics_percent"]) and pd.isna(bad["liver_fat_teacher_percent"])
    fails = pd.read_csv(out / "failures.csv")
    assert fails["eid"].tolist() == [1000003] and fails["error"].tolist() == ["FieldMismatchError"]
    assert "1000003_20203_2_0.zip" in fails["message"].iloc[0] + fails["input"].iloc[0]

    # resume: the good rows are reused, the failed one is tried again
    res = runner.invoke(cli, ["infer", "liver", "--input", str(liver_inputs), "--out", str(out)])
    assert res.exit_code == 1 and "(2 reused)" in res.output, res.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / "liver.parquet"), table)

    # networks switched off: rows recomputed without network values; a zero margin flags everything
    res = runner.invoke(cli, ["infer", "liver", "--input", str(liver_inputs), "--out", str(out), "--no-networks"])
    assert "(0 reused)" in res.output, res.output
    t2 = pd.read_parquet(out / "liver.parquet")
    assert t2["liver_fat_teacher_percent"].isna().all() and t2["liver_fat_physics_percent"].notna().sum() == 2
    res = runner.invoke(cli, ["infer", "liver", "--input", str(liver_inputs), "--out", str(tmp_path / "o2"),
                              "--qc-margin", "0"])
    flags = pd.read_parquet(tmp_path / "o2" / "liver.parquet").set_index("eid")["qc_flags"]
    assert "physics_vs_teacher_disagree" in flags[1000001] and "physics_vs_student_disagree" in flags[1000002]


def test_qc_flags_rules():
    rules = QcRules(margin_pp=2.0, min_roi_voxels=100, high_r2star_per_s=100.0)
    row = {"liver_fat_physics_percent": 5.0, "liver_fat_teacher_percent": 7.5, "liver_fat_student_percent": 6.9,
           "liver_roi_voxels": 50, "liver_r2star_physics_per_s": 120.0}
    assert qc_flags(row, rules, ["ideal"]).split(";") == [
        "ideal_failed", "physics_vs_teacher_disagree", "small_liver_roi", "high_r2star"]
    ok = {"liver_fat_physics_percent": 5.0, "liver_fat_teacher_percent": 6.9, "liver_fat_student_percent": float("nan"),
          "liver_roi_voxels": 500, "liver_r2star_physics_per_s": 40.0}
    assert qc_flags(ok, rules) == ""
