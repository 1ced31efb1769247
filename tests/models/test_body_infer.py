"""Body inference: batching, precision modes, MIMIR's predictions.csv layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ukbmri.errors import TensorError
from ukbmri.infer import PRECISIONS, mimir_predictions_frame, predict_images, predict_raw
from ukbmri.models import build_backbone
from ukbmri.modules import Target, load_module, save_module


def _calibrated_smallcnn(n_out: int, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = build_backbone("smallcnn", n_out, generator=g)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
    m.train()
    with torch.no_grad():
        m(torch.randint(0, 256, (4, 3, 128, 128), generator=g).float())
    return m.eval()


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mods") / "module_demo"
    targets = [Target("weight", "21002", "kg"), Target("sex", "31", "(male = 1)"),
               Target("AtlasAbdominalFatRatio", "22434", "L/L")]
    save_module(folder, model=_calibrated_smallcnn(6), backbone="smallcnn", targets=targets,
                mean=[77.0, 0.5, 0.4], sd=[15.0, 0.5, 0.1], calibration=[1.1, 1.0, 0.9])
    return load_module(folder)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(7).integers(0, 256, (5, 3, 256, 256), dtype=np.uint8)


def test_batching_does_not_change_results(module, images):
    m1, v1 = predict_images(module, images, batch_size=1, precision="fp32")
    m4, v4 = predict_images(module, images, batch_size=4, precision="fp32")
    np.testing.assert_allclose(m1, m4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v1, v4, rtol=1e-5)
    assert m1.shape == v1.shape == (5, 3) and m1.dtype == np.float64 and np.all(v1 > 0)


def test_float_input_equals_uint8_input(module, images):
    a = predict_raw(module.model, images)
    b = predict_raw(module.model, images.astype(np.float32))
    np.testing.assert_array_equal(a, b)


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def test_precision_modes_against_fp32(module, images):
    ref = predict_raw(module.model, images, precision="fp32")
    assert _rel(predict_raw(module.model, images, precision="fp32-cl"), ref) < 1e-4  # the DEFAULT_PRECISION contract
    assert _rel(predict_raw(module.model, images, precision="tf32"), ref) < 1e-4  # = fp32-cl on CPU
    bf16 = predict_raw(module.model, images, precision="bf16")
    assert 0 < _rel(bf16, ref) < 5e-2  # bf16 is visibly less precise, but close
    # back to fp32: the network's memory format is restored, results identical
    np.testing.assert_array_equal(predict_raw(module.model, images, precision="fp32"), ref)
    assert all(p.is_contiguous() for p in module.model.parameters())


def test_bad_inputs(module, images):
    with pytest.raises(ValueError, match="fp32"):
        predict_images(module, images, precision="int8")
    with pytest.raises(TensorError, match="shape"):
        predict_images(module, images[:, :2])
    with pytest.raises(TensorError, match="shape"):
        predict_images(module, images[0])
    bad = images.astype(np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(TensorError, match="NaN"):
        predict_images(module, bad)
    mean, var = predict_images(module, images[:0])
    assert mean.shape == (0, 3) and var.shape == (0, 3)
    assert set(PRECISIONS) >= {"fp32", "fp32-cl", "bf16"}


def test_auto_device(module, images):
    mean, _ = predict_images(module, images[:1], device="auto")
    assert mean.shape == (1, 3)


def test_mimir_predictions_frame(module, images):
    mean, var = predict_images(module, images[:2])
    names = ["1000001_20201_2_0", "1000002_20201_2_0"]
    frame = mimir_predictions_frame(names, module, mean, var)
    assert list(frame.columns) == [
        "name",
        "weight_mean_in_kg", "weight_variance_in_kg",
        "sex_mean_in_(male = 1)", "sex_variance_in_(male = 1)",
        "AtlasAbdominalFatRatio_mean_in_L/L", "AtlasAbdominalFatRatio_variance_in_L/L",
    ]
    assert frame["name"].tolist() == names
    np.testing.assert_array_equal(frame["sex_mean_in_(male = 1)"], mean[:, 1])
    np.testing.assert_array_equal(frame["AtlasAbdominalFatRatio_variance_in_L/L"], var[:, 2])
    with pytest.raises(ValueError):
        mimir_predictions_frame(names[:1], module, mean, var)
    empty = mimir_predictions_frame([], module, mean[:0], var[:0])
    assert list(empty.columns) == list(frame.columns) and len(empty) == 0


def test_default_precision_is_channels_last_within_1e4(module, images):
    from ukbmri.infer.body import DEFAULT_PRECISION

    assert DEFAULT_PRECISION == "fp32-cl"
    ref = predict_raw(module.model, images, precision="fp32")
    assert _rel(predict_raw(module.model, images), ref) < 1e-4
