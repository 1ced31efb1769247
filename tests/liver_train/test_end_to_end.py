"""Tiny end to end: zips -> teacher folder -> distill -> student folder -> predict (API and CLI)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.errors import OutputExistsError
from ukbmri.infer.liver_nets import load_liver_net, predict_liver
from ukbmri.io.reader import read_zip
from ukbmri.preprocess.liver_tensors import ideal_tensor, pad_crop_top_left
from ukbmri.train.distill import distill
from ukbmri.train.liver import train_teacher

FAST = dict(folds=2, epochs=1, steps_per_epoch=2, input_hw=(16, 16), seed=3)


@pytest.fixture(scope="module")
def teacher_dir(liver_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("nets") / "teacher"
    return train_teacher([liver_cohort["folder"]], out, labels=liver_cohort["truth"], demonstration_only=True, **FAST)


def test_teacher_folder(teacher_dir, liver_cohort):
    names = {p.name for p in teacher_dir.iterdir()}
    assert {"weights.pt", "model.json", "cv_predictions.csv", "metrics.json", "metrics.csv",
            "agreement.png", "training_loss.png", "failures.csv"} <= names
    net = load_liver_net(teacher_dir)
    assert net.kind == "teacher" and net.mean_variance and net.demonstration_only
    info = net.info
    assert info["n_train"] == 7  # 8 zips read, one label missing; the broken zip is a failure
    assert info["training_data"]["n_failures"] == 1
    cv = pd.read_csv(teacher_dir / "cv_predictions.csv")
    assert len(cv) == 8
    labelled = cv["reference_percent"].notna()
    assert (cv.loc[labelled, "fold"] >= 0).all() and (cv.loc[~labelled, "fold"] == -1).all()
    assert cv.loc[labelled, "predicted_liver_fat_percent"].notna().all()
    assert cv.loc[~labelled, "predicted_liver_fat_percent"].isna().all()
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    m = metrics["teacher_vs_label"]
    assert m["n"] == 7 and {"mae", "pearson_r", "r2", "ba_bias", "accuracy", "sensitivity", "specificity",
                            "coverage_95_calibrated", "calibration_factor"} <= set(m)
    assert net.calibration == pytest.approx(m["calibration_factor"])
    # calibrated variance in the table = factor * uncalibrated
    np.testing.assert_allclose(cv.loc[labelled, "predicted_variance_percent2"],
                               net.calibration * cv.loc[labelled, "uncalibrated_variance_percent2"], rtol=1e-9)
    failures = pd.read_csv(teacher_dir / "failures.csv")
    assert failures["eid"].tolist() == [1000009]
    with pytest.raises(OutputExistsError):
        train_teacher([liver_cohort["folder"]], teacher_dir, labels=liver_cohort["truth"], **FAST)


def test_distill_and_predict(teacher_dir, liver_cohort, tmp_path):
    out = distill(teacher_dir, [liver_cohort["folder"]], [liver_cohort["folder"]], tmp_path / "student",
                  labels=liver_cohort["truth"], batch_size=4, **FAST)
    student = load_liver_net(out)
    assert student.kind == "student" and student.mean_variance and student.demonstration_only
    assert student.info["teacher"]["weights_sha256"] == load_liver_net(teacher_dir).weights_sha256
    assert student.info["teacher"]["origin"] == "ukbmri" and student.info["teacher"]["source"]  # a Keras file has no folder
    tp = pd.read_csv(out / "teacher_predictions.csv")
    assert len(tp) == 8 and tp["teacher_liver_fat_percent"].notna().all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"student_vs_teacher", "student_vs_truth", "teacher_vs_truth"}
    assert metrics["student_vs_teacher"]["n"] == 8 and metrics["student_vs_truth"]["n"] == 7
    cv = pd.read_csv(out / "cv_predictions.csv")
    np.testing.assert_allclose(cv["teacher_percent"], tp["teacher_liver_fat_percent"])  # targets = teacher
    # the student predicts on raw IDEAL tensors
    raw = pad_crop_top_left(ideal_tensor(read_zip(liver_cohort["folder"] / "1000002_20254_2_0.zip")), (36, 16, 16))
    mean, var = predict_liver(student, raw[None])
    assert mean.shape == (1,) and np.isfinite(mean).all() and (var > 0).all()


def test_cli_teacher_then_distill(liver_cohort, tmp_path):
    runner = CliRunner()
    fast = ["--folds", "2", "--epochs", "1", "--steps-per-epoch", "1", "--input-hw", "16", "16", "--no-plots"]
    # through the real command line: `ukbmri train liver-teacher` and `ukbmri distill`
    res = runner.invoke(cli, ["train", "liver-teacher", "--input", str(liver_cohort["folder"]),
                              "--labels", str(liver_cohort["truth"]),
                              "--out", str(tmp_path / "t"), "--no-mean-variance", "--demo", *fast])
    assert res.exit_code == 0, res.output
    assert "teacher_vs_label" in res.output and "MAE" in res.output
    assert load_liver_net(tmp_path / "t").mean_variance is False
    res = runner.invoke(cli, ["distill", "--teacher", str(tmp_path / "t"), "--input", str(liver_cohort["folder"]),
                              "--out", str(tmp_path / "s"), "--batch-size", "3", *fast])
    assert res.exit_code == 0, res.output
    assert "student_vs_teacher" in res.output
    s = load_liver_net(tmp_path / "s")
    assert s.mean_variance is False and s.demonstration_only  # inherited from the teacher
