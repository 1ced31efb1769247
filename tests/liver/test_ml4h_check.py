"""Picking the student's input normalisation from data (library and CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.infer.liver_nets import build_liver_model, load_liver_net, predict_liver, save_liver_net
from ukbmri.infer.ml4h_check import check_student_normalisation
from ukbmri.models.keras_import import save_keras_h5_weights
from ukbmri.models.ml4h_liver import LiverStudent, LiverTeacher

HW = (16, 16)


def _teacher(tmp_path):
    torch.manual_seed(0)
    m = LiverTeacher(10, input_hw=HW)
    with torch.no_grad():
        for layer in m.conv_layers() + m.dense_layers():
            torch.nn.init.kaiming_normal_(layer.weight)
        m.output_layer.bias.fill_(3.0)  # predictions above the label mean
    return load_liver_net(save_keras_h5_weights(m, tmp_path / "teacher.h5"))


def _homogeneous_student(tmp_path, pattern):
    """Positive weights, zero biases: a ReLU network with f(a x) = a f(x) for a >= 0, f(pattern) = 1."""
    torch.manual_seed(1)
    m = LiverStudent(36, input_hw=HW)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.abs() if p.ndim > 1 else torch.zeros_like(p))
        weights = [p for p in m.parameters() if p.ndim > 1]
        scale = float(m(torch.from_numpy(pattern))) ** (-1.0 / len(weights))
        for p in weights:
            p.mul_(scale)
    return load_liver_net(save_keras_h5_weights(m, tmp_path / "student.h5"))


def test_the_variant_the_student_was_built_for_wins(tmp_path):
    rng = np.random.default_rng(2)
    pattern = rng.gamma(2.0, 1.0, size=(1, 36, *HW)).astype(np.float32)
    teacher, student = _teacher(tmp_path), _homogeneous_student(tmp_path, pattern)
    assert student.input_normalisation == "none"  # weights-only student: the published default
    echo_contrast = rng.uniform(0.2, 2.0, size=(5, 10, 1, 1))  # visits differ in echo decay
    gre = (echo_contrast * rng.gamma(2.0, 300.0, size=(5, 10, *HW))).astype(np.float32)
    t, _ = predict_liver(teacher, gre)
    assert np.ptp(t) > 0.05
    # IDEAL tensors a_k * P: raw-input student predictions reproduce the teacher's exactly, the
    # ZeroMeanStd1 student sees the same normalised tensor every time (constant predictions)
    f_p = (predict_liver(student, pattern)[0][0] - student.label_mean) / student.label_std
    a = (t - student.label_mean) / (student.label_std * f_p)
    assert np.all(a > 0)
    ideal = (a[:, None, None, None] * pattern).astype(np.float32)
    check = check_student_normalisation(teacher, student, gre, ideal)
    assert check.best == "none" and check.decisive and check.n == 5
    none, zms = check.variants
    assert none.normalisation == "none" and none.mae_pp < 1e-3 and none.pearson_r > 0.999
    assert zms.mae_pp > 0.01 and np.ptp(zms.student_percent) < 1e-3
    assert "'none' (decisive)" in check.summary()
    few = check_student_normalisation(teacher, student, gre[:2], ideal[:2])
    assert few.best == "none" and not few.decisive  # fewer than min_pairs visits
    with pytest.raises(ValueError, match="teacher and a student"):
        check_student_normalisation(student, teacher, gre, ideal)


def test_cli_check_normalisation_and_import(tmp_path, liver_dicom):
    for eid in (1000001, 1000002, 1000003):
        tes = np.round(2.38 * np.arange(1, 11), 2)
        rng = np.random.default_rng(eid)
        uid = liver_dicom.generate_uid()
        imgs = [liver_dicom.dicom(desc="gre_mullti_echo_10_TE_liver", series_number=9, series_uid=uid, instance=k + 1,
                                  echo_ms=float(tes[k]), magnitude=True,
                                  pixels=rng.integers(50, 900, (12, 14)).astype(np.uint16)) for k in range(10)]
        liver_dicom.write_zip(tmp_path / f"{eid}_20203_2_0.zip", imgs)
        imgs = []
        for d in range(6):
            uid = liver_dicom.generate_uid()
            imgs += [liver_dicom.dicom(desc="LMS IDEAL OPTIMISED LOW FLIP 6DYN", series_number=31 + 2 * d,
                                       series_uid=uid, instance=e, echo_ms=1.2 + 2 * e, magnitude=True,
                                       pixels=rng.integers(50, 900, (8, 10)).astype(np.uint16)) for e in range(1, 7)]
        liver_dicom.write_zip(tmp_path / f"{eid}_20254_2_0.zip", imgs)
    torch.manual_seed(0)
    t = save_liver_net(tmp_path / "t", build_liver_model("teacher", mean_variance=False), kind="teacher")
    s_h5 = save_keras_h5_weights(LiverStudent().eval(), tmp_path / "liver_fat_from_ideal.h5")
    out = tmp_path / "pred.csv"
    r = CliRunner().invoke(cli, ["ml4h", "check-normalisation", str(tmp_path), "--teacher", str(t),
                                 "--student", str(s_h5), "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "zero_mean_std1" in r.output and "student tracks the teacher best" in r.output
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("eid,instance,teacher_percent,student_")
    # import with an explicit setting: the folder loads with it, and with the same weights
    r = CliRunner().invoke(cli, ["ml4h", "import", str(s_h5), "--out", str(tmp_path / "s"),
                                 "--input-normalisation", "zero_mean_std1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    folder, direct = load_liver_net(tmp_path / "s"), load_liver_net(s_h5, input_normalisation="zero_mean_std1")
    assert folder.input_normalisation == "zero_mean_std1" and folder.origin == "ml4h"
    assert folder.training_max_stored_value == 2048 and not folder.demonstration
    x = np.random.default_rng(0).gamma(2.0, 300.0, size=(1, 36, 232, 256)).astype(np.float32)
    np.testing.assert_allclose(predict_liver(folder, x)[0], predict_liver(direct, x)[0], rtol=1e-6)
