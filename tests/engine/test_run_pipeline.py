"""Golden end to end: ``ukbmri run`` on a synthetic cohort with the bundled demo weights.

The numbers are compared with the phantom ground truth within tolerances that the
bundled demonstration weights and the physics fit meet on this cohort; a regression in
any stage (reader, fusion, 2D format, module post-processing, liver tensors, physics fit,
networks, merge) moves them out of range.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.engine.pipeline import default_body_modules
from ukbmri.infer.liver_nets import default_liver_weights

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


def test_run_whole_engine_against_phantom_truth(cohort, tmp_path):
    assert default_body_modules(), "the demo body module must ship with the package"
    assert default_liver_weights() is not None, "the demo liver weights must ship with the package"
    out = tmp_path / "run"
    args = ["run", str(cohort), "--out", str(out), "--truth", str(cohort / "truth.csv")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output  # the truncated 20201 zip, and only it, failed
    fails = pd.read_csv(out / "failures.csv")
    assert fails["eid"].tolist() == [1999999] and fails["stage"].tolist() == ["preprocess-body"]

    table = pd.read_parquet(out / "participants.parquet")
    truth = pd.read_csv(cohort / "truth.csv")
    assert table["eid"].tolist() == truth["eid"].tolist() == [1000001, 1000002]
    merged = table.merge(truth, on="eid", suffixes=("", "__truth"))
    for col, (tcol, tol) in TOLERANCES.items():
        t = merged[f"{tcol}__truth"] if f"{tcol}__truth" in merged else merged[tcol]
        err = np.abs(merged[col].to_numpy(float) - t.to_numpy(float))
        assert np.all(err <= tol), f"{col}: errors {err} above {tol}"
    # intervals contain their means and are ordered; teacher has an uncertainty
    for mean, prefix in (("weight_kg", "weight_kg"), ("vat_l", "vat_l"),
                         ("liver_fat_teacher_percent", "liver_fat_teacher")):
        lo, hi = table[f"{prefix}_ci95_low"], table[f"{prefix}_ci95_high"]
        assert (lo < table[mean]).all() and (table[mean] < hi).all()
    assert (table["sex_male"].round() == truth["sex_male"]).all()
    assert table["qc_flags"].notna().all()

    report = (out / "report.md").read_text()
    assert "DEMONSTRATION" in report and "1999999" in report
    cmp = pd.read_csv(out / "truth_comparison.csv").set_index("prediction")
    assert cmp.loc["liver_fat_physics_percent", "mae"] < 0.5

    # a re-run resumes: same table, nothing recomputed that was valid
    before = (out / "body" / "cache" / "1000001_20201_2_0.npy").stat().st_mtime_ns
    res2 = CliRunner().invoke(cli, args)
    assert res2.exit_code == 1 and isinstance(res2.exception, SystemExit), res2.exception
    assert (out / "body" / "cache" / "1000001_20201_2_0.npy").stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(pd.read_parquet(out / "participants.parquet"), table)
