"""Warm start ("fine-tuning") of the liver teacher and student from an existing weights folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ukbmri.errors import ModuleError
from ukbmri.infer.liver_nets import build_liver_model, load_liver_net, save_liver_net
from ukbmri.train.distill import distill
from ukbmri.train.liver import train_teacher
from ukbmri.train.liver_data import LiverData
from ukbmri.train.liver_fit import init_keras_

HW = (16, 16)
N = 12
#: lr 0: Adam leaves every weight where it started, so the trained network is its initialisation
FROZEN = dict(folds=2, epochs=1, patience=1, lr=0.0, lr_patience=None, batch_size=4, plots=False)


def _net_folder(path, kind, *, mean_variance=True, seed=0, channels=None):
    c = channels or (10 if kind == "teacher" else 36)
    model = init_keras_(build_liver_model(kind, mean_variance=mean_variance, input_shape=(c, *HW)),
                        torch.Generator().manual_seed(seed))
    return save_liver_net(path, model, kind=kind)


def _data(kind, seed):
    rng = np.random.default_rng(seed)
    c = 10 if kind == "teacher" else 36
    x = rng.standard_normal((N, c, *HW)).astype(np.float16)
    eids = np.arange(1_000_001, 1_000_001 + N)
    labels = rng.gamma(1.5, 3.0, N) if kind == "teacher" else np.full(N, np.nan)
    return LiverData(x, eids, np.full(N, 2), tuple(f"{e}_{kind}" for e in eids), labels, kind)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_warm_started_teacher_and_student_start_from_the_given_weights(tmp_path):
    t_init = load_liver_net(_net_folder(tmp_path / "t_init", "teacher", seed=3))
    s_init = load_liver_net(_net_folder(tmp_path / "s_init", "student", seed=4))
    gre, ideal = _data("teacher", 1), _data("student", 2)

    train_teacher(gre, tmp_path / "teacher", init_from=t_init.folder, **FROZEN)
    teacher = load_liver_net(tmp_path / "teacher")
    assert _same_weights(teacher.model, t_init.model)
    training = json.loads((tmp_path / "teacher" / "model.json").read_text())["training"]
    assert training["init_from"] == {"folder": str(t_init.folder), "weights_sha256": t_init.weights_sha256}
    assert training["history"]["final"]["restarts"] == 0

    distill(tmp_path / "teacher", gre, ideal, tmp_path / "student", init_from=s_init.folder, **FROZEN)
    student = load_liver_net(tmp_path / "student")
    assert _same_weights(student.model, s_init.model)
    info = json.loads((tmp_path / "student" / "model.json").read_text())["training"]
    assert info["init_from"]["weights_sha256"] == s_init.weights_sha256

    # without a warm start the same run starts from its own random initialisation
    train_teacher(gre, tmp_path / "cold", **FROZEN)
    cold = json.loads((tmp_path / "cold" / "model.json").read_text())["training"]
    assert not _same_weights(load_liver_net(tmp_path / "cold").model, t_init.model)
    assert cold["init_from"] is None


@pytest.mark.parametrize("kind, mean_variance, channels, what", [
    ("student", True, None, "kind"),  # a student folder to start a teacher from
    ("teacher", False, None, "mean_variance"),  # a point head for a mean-variance network
    ("teacher", True, 12, "input_shape"),  # another input shape
])
def test_a_mismatched_warm_start_folder_is_refused(tmp_path, kind, mean_variance, channels, what):
    folder = _net_folder(tmp_path / "init", kind, mean_variance=mean_variance, channels=channels)
    with pytest.raises(ModuleError, match=what) as err:
        train_teacher(_data("teacher", 1), tmp_path / "out", init_from=folder, **FROZEN)
    assert str(folder) in str(err.value) and "expected" in str(err.value) and "found" in str(err.value)
    assert not (tmp_path / "out").exists()
