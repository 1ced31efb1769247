"""``ukbmri run --liver-weights TEACHER.h5``: a Keras file of the published ml4h teacher
architecture runs unchanged through the whole engine and matches Keras's own prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner

from ukbmri.cli.main import cli


def test_run_with_a_published_ml4h_teacher_h5_matches_keras(cohort, tmp_path, keras_files_module):
    kf = keras_files_module
    kf.keras_or_skip()
    h5 = tmp_path / "liver_fat_from_echo.h5"
    predict = kf.write_ml4h_teacher_h5(h5, seed=3, kernel=3)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(cohort), "--out", str(out), "--liver-weights", str(h5),
                                   "--modules", str(tmp_path / "modules")])
    assert res.exit_code == 2, res.output  # a missing module folder is a configuration error
    res = CliRunner().invoke(cli, ["run", str(cohort), "--out", str(out), "--liver-weights", str(h5)])
    assert res.exit_code == 1, res.output  # only the cohort's truncated 20201 zip failed
    table = pd.read_parquet(out / "participants.parquet")
    table = table[table["liver_fat_physics_percent"].notna()].reset_index(drop=True)
    assert table["eid"].tolist() == [1000001, 1000002] and table["weight_kg"].notna().all()
    from ukbmri.io import read_zip
    from ukbmri.preprocess.liver_tensors import gre_tensor

    zips = [cohort / f"{e}_20203_2_0.zip" for e in table["eid"]]
    want = np.concatenate([np.atleast_1d(predict(gre_tensor(read_zip(z))[None])) for z in zips])
    np.testing.assert_allclose(table["liver_fat_teacher_percent"].to_numpy(float), want, atol=1e-4)
    assert table["teacher_weights_fingerprint"].str.len().eq(64).all()
    assert table["liver_fat_student_percent"].isna().all()  # no student given
    assert "demo_weights_not_applied" not in ";".join(table["qc_flags"].fillna(""))
