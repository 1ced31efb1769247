"""Keras -> PyTorch import of the ml4h liver networks.

The Keras models are built by tests/liver/keras_files.py exactly as drawn in the
published diagrams (layer names, concatenation order, pooling positions), given seeded random
weights, saved in each Keras format, imported with h5py only, and compared on
random inputs. Needs the optional ``keras`` extra (skipped without it); the
h5py-only round trip and the error cases run always.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from ukbmri.errors import ModuleError
from ukbmri.models.keras_import import load_keras_liver_model, read_keras_weights, save_keras_h5_weights
from ukbmri.models.ml4h_liver import LiverStudent, LiverTeacher

TOL = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def keras(keras_files):
    return keras_files.keras_or_skip()


@pytest.fixture(scope="module")
def build_keras(keras_files):
    """The published Keras model, layer for layer (tests/liver/keras_files.py)."""
    return keras_files.build_ml4h_keras


@pytest.fixture(scope="module")
def _seed_weights(keras_files):
    return keras_files.seed_weights


def _keras_predict(model, x_bhwc: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x_bhwc, verbose=0))


def _torch_predict(model, x_bhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.moveaxis(x_bhwc, -1, 1).copy())).numpy()


def test_keras_model_matches_diagram(keras, build_keras):
    t = build_keras(keras, "teacher")
    s = build_keras(keras, "student")
    assert t.count_params() == 215_561 and s.count_params() == 814_921
    assert t.get_layer("activation_11").output.shape[1:] == (64,)
    assert s.get_layer("activation_12").output.shape[1:] == (64,)
    flat_t = [lay for lay in t.layers if lay.__class__.__name__ == "Flatten"][0]
    flat_s = [lay for lay in s.layers if lay.__class__.__name__ == "Flatten"][0]
    assert tuple(flat_t.output.shape[1:]) == (6400,) and tuple(flat_s.output.shape[1:]) == (44544,)
    cats = [tuple(lay.output.shape[1:]) for lay in t.layers if lay.__class__.__name__ == "Concatenate"]
    assert cats == [(80, 80, 64), (80, 80, 96), (40, 40, 56), (40, 40, 80), (20, 20, 40), (20, 20, 56)]
    cats = [tuple(lay.output.shape[1:]) for lay in s.layers if lay.__class__.__name__ == "Concatenate"]
    assert cats == [(116, 128, 64), (116, 128, 96), (58, 64, 48), (58, 64, 72), (29, 32, 32), (29, 32, 48)]


@pytest.mark.parametrize("fmt", ["model.h5", "model.weights.h5", "model.keras"])
def test_teacher_import_matches_keras(keras, build_keras, _seed_weights, tmp_path, fmt):
    km = build_keras(keras, "teacher")
    _seed_weights(km, 1)
    path = tmp_path / fmt
    if fmt == "model.weights.h5":
        km.save_weights(path)
    else:
        km.save(path)
    tm = load_keras_liver_model(path, "teacher")
    x = np.random.default_rng(2).normal(size=(2, 160, 160, 10)).astype("float32")
    yk, yt = _keras_predict(km, x), _torch_predict(tm, x)
    assert yt.shape == (2, 1)
    assert np.abs(yk).max() > 1e-2 and np.ptp(yk) > 1e-3  # a non-degenerate comparison
    assert np.abs(yk - yt).max() < TOL


def test_student_import_matches_keras(keras, build_keras, _seed_weights, tmp_path):
    km = build_keras(keras, "student")
    _seed_weights(km, 3)
    km.save(tmp_path / "student.h5")
    tm = load_keras_liver_model(tmp_path / "student.h5", "student")
    x = np.random.default_rng(4).normal(size=(2, 232, 256, 36)).astype("float32")
    yk, yt = _keras_predict(km, x), _torch_predict(tm, x)
    assert np.abs(yk).max() > 1e-2 and np.ptp(yk) > 1e-3
    assert np.abs(yk - yt).max() < TOL


def test_exported_weights_load_into_keras(keras, build_keras, tmp_path):
    torch.manual_seed(5)
    tm = LiverTeacher().eval()
    p = save_keras_h5_weights(tm, tmp_path / "from_torch.h5")
    km = build_keras(keras, "teacher")
    km.load_weights(p)
    x = np.random.default_rng(6).normal(size=(2, 160, 160, 10)).astype("float32")
    assert np.abs(_keras_predict(km, x) - _torch_predict(tm, x)).max() < TOL


# --------------------------------------------------------------------------- no Keras needed
def test_h5py_round_trip_without_keras(tmp_path):
    torch.manual_seed(7)
    src = LiverStudent().eval()
    p = save_keras_h5_weights(src, tmp_path / "student_weights.h5")
    with h5py.File(p, "r") as f:  # the Keras 2 layout
        assert f["conv2d_1/conv2d_1/kernel:0"].shape == (3, 3, 36, 32)
        assert f["dense_1/dense_1/kernel:0"].shape == (44544, 16)
    layers, config, fmt = read_keras_weights(p)
    assert fmt == "legacy_weights_h5" and config is None and len(layers) == 13
    dst = load_keras_liver_model(p, "student", mean_variance=True)
    for a, b in zip(src.conv_layers() + src.dense_layers(), dst.conv_layers() + dst.dense_layers(), strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert dst(torch.zeros(1, 36, 232, 256)).shape == (1, 2)


@pytest.fixture
def teacher_h5(tmp_path):
    torch.manual_seed(8)
    return save_keras_h5_weights(LiverTeacher(), tmp_path / "teacher.h5")


def test_wrong_kind_is_refused(teacher_h5):
    with pytest.raises(ModuleError) as e:
        load_keras_liver_model(teacher_h5, "student")
    assert "teacher.h5" in str(e.value) and "expected" in str(e.value)


def test_missing_and_mismatched_layers_are_refused(teacher_h5):
    with h5py.File(teacher_h5, "a") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        f.attrs["layer_names"] = np.array([n.encode() for n in names if n != "conv2d_4"])
    with pytest.raises(ModuleError, match="10 Conv2D layers"):
        load_keras_liver_model(teacher_h5, "teacher")
    with h5py.File(teacher_h5, "a") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        del f["conv2d_5/conv2d_5/kernel:0"]
        f.create_dataset("conv2d_5/conv2d_5/kernel:0", data=np.zeros((3, 3, 56, 20), np.float32))
    with pytest.raises(ModuleError, match="conv2d_5"):
        load_keras_liver_model(teacher_h5, "teacher")


def test_config_with_other_layers_is_refused(teacher_h5):
    cfg = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 160, 160, 10]}},
        {"class_name": "BatchNormalization", "config": {"name": "batch_normalization"}},
    ]}}  # fmt: skip
    with h5py.File(teacher_h5, "a") as f:
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(ModuleError, match="BatchNormalization"):
        load_keras_liver_model(teacher_h5, "teacher")
    cfg["config"]["layers"][1] = {"class_name": "Conv2D", "config": {"name": "conv2d", "padding": "valid"}}
    with h5py.File(teacher_h5, "a") as f:
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(ModuleError, match="padding"):
        load_keras_liver_model(teacher_h5, "teacher")


def test_not_a_keras_file(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("foo", data=[1])
    with pytest.raises(ModuleError, match="not a Keras weights file"):
        load_keras_liver_model(p, "teacher")
    with pytest.raises(ModuleError, match="not found"):
        load_keras_liver_model(tmp_path / "absent.h5", "teacher")
