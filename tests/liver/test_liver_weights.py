"""One loader for every liver weights format: ml4h Keras .h5 files, our folders, LFS pointers, flags."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from ukbmri.errors import FieldMismatchError, GitLfsPointerError, ModuleError
from ukbmri.infer.liver_nets import (
    build_liver_model,
    liver_input_flags,
    load_liver_net,
    predict_liver,
    resolve_liver_weights,
    save_liver_net,
)
from ukbmri.infer.liver_weights import FLAG_ECHO_ORDER, FLAG_OUTSIDE_TRAINING_RANGE, FLAG_PADDED_OR_CROPPED
from ukbmri.models.keras_import import save_keras_h5_weights
from ukbmri.models.ml4h_liver import LiverStudent, LiverTeacher

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

TOL = 1e-4
SMALL = (16, 16)


def _raw(rng, n, c, hw):
    """Positive magnitude-like tensors (N, C, H, W)."""
    return rng.gamma(2.0, 300.0, size=(n, c, *hw)).astype(np.float32)


# --------------------------------------------------------------------------- the "done when" test
@pytest.mark.parametrize("kernel", [3, 4, (5, 3, 3, 3, 4, 4, 4, 2, 2, 2)])
def test_teacher_h5_predicts_as_keras(keras_files, tmp_path, kernel):
    h5 = tmp_path / "liver_fat_from_echo.h5"
    keras_predict = keras_files.write_ml4h_teacher_h5(h5, seed=1, kernel=kernel, input_hw=SMALL)
    x = _raw(np.random.default_rng(2), 3, 10, SMALL)
    want = keras_predict(x)
    assert np.ptp(want) > 1e-2  # a non-degenerate comparison

    net = load_liver_net(h5)
    assert net.kind == "teacher" and net.origin == "ml4h" and not net.demonstration
    assert net.input_shape == (10, *SMALL) and net.input_normalisation == "zero_mean_std1"
    assert net.training_max_stored_value == 2048
    ks = (kernel,) * 10 if isinstance(kernel, int) else kernel
    assert [c.kernel_size[0] for c in net.model.conv_layers()] == list(ks)
    got, var = predict_liver(net, x)
    assert var is None and np.abs(got - want).max() < TOL

    paths = resolve_liver_weights([h5])
    assert paths == {"teacher": h5}
    got2, _ = predict_liver(load_liver_net(paths["teacher"]), x)
    assert np.abs(got2 - want).max() < TOL


def test_student_h5_is_recognised_and_unnormalised_by_default(keras_files, tmp_path):
    h5 = tmp_path / "student.h5"
    keras_predict = keras_files.write_ml4h_student_h5(h5, seed=3, input_hw=SMALL, normalisation="none")
    net = load_liver_net(h5)
    assert net.kind == "student" and net.input_normalisation == "none"
    assert "root_array" in net.info["input_normalisation_source"]
    x = _raw(np.random.default_rng(4), 2, 36, SMALL) / 300.0  # raw values that keep the ReLUs alive
    want = keras_predict(x)
    got, _ = predict_liver(net, x)
    assert np.abs(got - want).max() < TOL
    # the other variant gives other predictions, and another fingerprint
    zms = load_liver_net(h5, input_normalisation="zero_mean_std1")
    assert zms.fingerprint != net.fingerprint
    assert np.abs(predict_liver(zms, x)[0] - got).max() > 1e-3


@pytest.mark.slow
def test_published_size_teacher_with_4x4_kernels(keras_files, tmp_path):
    h5 = tmp_path / "teacher.h5"
    keras_predict = keras_files.write_ml4h_teacher_h5(h5, seed=5, kernel=4)
    x = _raw(np.random.default_rng(6), 2, 10, (160, 160))
    got, _ = predict_liver(load_liver_net(h5), x)
    assert np.abs(got - keras_predict(x)).max() < TOL


# --------------------------------------------------------------------------- no Keras needed
def _teacher_h5(path, seed=0, channels=10, hw=SMALL):
    torch.manual_seed(seed)
    return save_keras_h5_weights(LiverTeacher(channels, input_hw=hw).eval(), path)


def test_weights_only_h5_size_and_kind_from_the_layers(tmp_path):
    net = load_liver_net(_teacher_h5(tmp_path / "t.h5"))
    assert net.kind == "teacher" and net.input_shape == (10, 16, 16)
    odd = load_liver_net(_teacher_h5(tmp_path / "t7.h5", channels=7))  # neither 10 nor 36: by structure
    assert odd.kind == "teacher" and odd.input_shape == (7, 16, 16)
    torch.manual_seed(1)
    s = load_liver_net(save_keras_h5_weights(LiverStudent(36, input_hw=(24, 24)), tmp_path / "s.h5"))
    assert s.kind == "student" and s.input_shape == (36, 24, 24) and s.input_normalisation == "none"


def test_fingerprint_tracks_weights_and_settings(tmp_path):
    a = load_liver_net(_teacher_h5(tmp_path / "a.h5", seed=0))
    assert load_liver_net(tmp_path / "a.h5").fingerprint == a.fingerprint
    assert load_liver_net(_teacher_h5(tmp_path / "b.h5", seed=1)).fingerprint != a.fingerprint
    assert load_liver_net(tmp_path / "a.h5", input_normalisation="none").fingerprint != a.fingerprint


LFS = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:624ae5c619c9831b822fe586f657677d4b9938b38da7148f459e5a429a801df4\n"
    "size 4926304\n"
)


def test_lfs_pointer_gets_a_clear_error(tmp_path):
    p = tmp_path / "liver_fat_from_echo.h5"
    p.write_text(LFS)
    for call in (load_liver_net, lambda q: resolve_liver_weights([q])):
        with pytest.raises(GitLfsPointerError) as e:
            call(p)
        msg = str(e.value)
        assert "Git LFS pointer" in msg and "git lfs pull" in msg and "4,926,304 bytes" in msg
        assert "liver_fat_from_echo.h5" in msg and "media.githubusercontent.com" in msg
    assert isinstance(e.value, ModuleError)
    q = tmp_path / "other.h5"
    q.write_text(LFS.replace("624ae5c6", "00000000"))
    with pytest.raises(GitLfsPointerError, match="git lfs pull"):
        load_liver_net(q)


def _folder(tmp_path, name, kind):
    shape = (10, 16, 16) if kind == "teacher" else (36, 16, 16)
    torch.manual_seed(0)
    model = build_liver_model(kind, mean_variance=False, input_shape=shape)
    return save_liver_net(tmp_path / name, model, kind=kind, info={"demonstration_only": True})


def test_resolve_liver_weights_forms(tmp_path):
    root = tmp_path / "weights"
    root.mkdir()
    t, s = _folder(root, "teacher", "teacher"), _folder(root, "student", "student")
    assert resolve_liver_weights([root]) == {"teacher": t, "student": s}
    assert resolve_liver_weights([s / "model.json"]) == {"student": s}
    assert resolve_liver_weights(str(t)) == {"teacher": t}
    h5 = _teacher_h5(tmp_path / "zoo" / "liver_fat_from_echo.h5")
    assert resolve_liver_weights([tmp_path / "zoo", s]) == {"teacher": h5, "student": s}
    assert resolve_liver_weights([h5, h5]) == {"teacher": h5}
    net = load_liver_net(s)
    assert net.demonstration and net.origin == "ukbmri" and net.training_max_stored_value is None


def test_resolve_liver_weights_errors(tmp_path):
    t = _folder(tmp_path, "t", "teacher")
    h5 = _teacher_h5(tmp_path / "t.h5")
    with pytest.raises(ModuleError, match="two teacher networks"):
        resolve_liver_weights([t, h5])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ModuleError, match="no liver network in the folder") as e:
        resolve_liver_weights([tmp_path / "empty"])
    assert "notes.txt" in str(e.value)
    with pytest.raises(ModuleError, match="not found"):
        resolve_liver_weights([tmp_path / "absent.h5"])
    with pytest.raises(ModuleError, match="no liver weights given"):
        resolve_liver_weights([])
    wrong = tmp_path / "mixed"
    shutil.copytree(t, wrong / "student")
    with pytest.raises(ModuleError, match="student/ folder holds a teacher"):
        resolve_liver_weights([wrong])


def test_folder_input_normalisation_setting(tmp_path):
    torch.manual_seed(0)
    model = build_liver_model("teacher", mean_variance=False, input_shape=(10, 16, 16))
    raw = save_liver_net(tmp_path / "raw", model, kind="teacher", info={"input_normalisation": "none"})
    zms = save_liver_net(tmp_path / "zms", model, kind="teacher")
    a, b = load_liver_net(raw), load_liver_net(zms)
    assert (a.input_normalisation, b.input_normalisation) == ("none", "zero_mean_std1")
    assert a.weights_sha256 == b.weights_sha256 and a.fingerprint != b.fingerprint
    x = _raw(np.random.default_rng(0), 1, 10, SMALL) / 300.0
    with torch.no_grad():
        direct = model(torch.from_numpy(x)).numpy()[:, 0] * b.label_std + b.label_mean
    np.testing.assert_allclose(predict_liver(a, x)[0], direct, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="input_normalisation"):
        save_liver_net(tmp_path / "bad", model, kind="teacher", info={"input_normalisation": "minmax"})


# --------------------------------------------------------------------------- flags
def _gre(factories, tmp_path, *, peak, rows=160, cols=160, instance_numbers=None):
    make_series, FakeZip = factories
    tes = 2.38 * np.arange(1, 11)
    px = np.stack([np.full((rows, cols), peak * (1 - 0.05 * i), np.float32) for i in range(10)])
    px[:, 0, 0] = 0.0
    s = make_series(number=7, kind="magnitude", pixels=px, echo_times_ms=tes, instance_numbers=instance_numbers)
    return FakeZip(tmp_path / "1000001_20203_2_0.zip", 20203, (s,))


def test_liver_input_flags(tmp_path, liver_factories):
    FakeZip = liver_factories[1]
    ml4h = load_liver_net(_teacher_h5(tmp_path / "t.h5", hw=(160, 160)))
    assert liver_input_flags(ml4h, _gre(liver_factories, tmp_path, peak=2000.0)) == ()
    assert liver_input_flags(ml4h, _gre(liver_factories, tmp_path, peak=2100.0)) == (FLAG_OUTSIDE_TRAINING_RANGE,)
    assert liver_input_flags(ml4h, _gre(liver_factories, tmp_path, peak=900.0, rows=150)) == (FLAG_PADDED_OR_CROPPED,)
    swapped = [2, 1, 3, 4, 5, 6, 7, 8, 9, 10]
    assert liver_input_flags(ml4h, _gre(liver_factories, tmp_path, peak=900.0, instance_numbers=swapped)) == (FLAG_ECHO_ORDER,)
    ours = load_liver_net(save_liver_net(tmp_path / "ours", build_liver_model("teacher", mean_variance=False),
                                         kind="teacher"))  # fmt: skip
    assert liver_input_flags(ours, _gre(liver_factories, tmp_path, peak=5000.0, instance_numbers=swapped)) == ()
    with pytest.raises(FieldMismatchError):
        liver_input_flags(ml4h, FakeZip(tmp_path / "x_20254_2_0.zip", 20254, ()))


def test_kind_recognition_refuses_contradictions(tmp_path):
    torch.manual_seed(0)
    odd = save_keras_h5_weights(LiverTeacher(36, input_hw=SMALL), tmp_path / "odd.h5")  # student's channels
    with pytest.raises(ModuleError, match="36 channels .* the layers are the teacher's"):
        load_liver_net(odd)


def test_lfs_pointer_in_a_weights_folder(tmp_path):
    folder = _folder(tmp_path, "t", "teacher")
    (folder / "weights.pt").write_text(LFS.replace("624ae5c6", "11111111"))
    with pytest.raises(GitLfsPointerError, match="git lfs pull"):
        load_liver_net(folder)
