"""Liver network folders: round trip, safe loading, prediction in %, calibration."""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import pytest
import torch

from ukbmri.errors import ModuleError, OutputExistsError, TensorError, UnsafeModelFileError
from ukbmri.infer.liver_nets import (
    build_liver_model,
    default_liver_weights,
    load_liver_net,
    predict_liver,
    prepare_liver_input,
    save_liver_net,
)
from ukbmri.preprocess.tensormaps import LIVER_FAT_MEAN, LIVER_FAT_STD
from ukbmri.train.liver_fit import init_keras_

SHAPE = (10, 16, 16)


def _teacher(mean_variance=True, seed=0):
    return init_keras_(build_liver_model("teacher", mean_variance=mean_variance, input_shape=SHAPE),
                       torch.Generator().manual_seed(seed))


def test_round_trip_same_weights_and_predictions(tmp_path):
    model = _teacher()
    folder = save_liver_net(tmp_path / "t", model, kind="teacher", calibration=2.5,
                            info={"demonstration_only": True, "n_train": 7})
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.pt"]
    net = load_liver_net(folder)
    assert net.kind == "teacher" and net.mean_variance and net.calibration == 2.5
    assert net.info["demonstration_only"] is True and net.info["n_train"] == 7
    assert net.info["input_tensor_map"] == "gre_mullti_echo_10_te_liver"
    assert net.weights_sha256 == hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
    for k, v in model.state_dict().items():
        assert torch.equal(v, net.model.state_dict()[k])
    # the saved file is a plain state_dict
    sd = torch.load(folder / "weights.pt", weights_only=True)
    assert set(sd) == set(model.state_dict())


def test_save_refuses_to_overwrite(tmp_path):
    model = _teacher()
    save_liver_net(tmp_path / "t", model, kind="teacher")
    with pytest.raises(OutputExistsError):
        save_liver_net(tmp_path / "t", model, kind="teacher")
    other = _teacher(seed=1)
    save_liver_net(tmp_path / "t", other, kind="teacher", overwrite=True)
    net = load_liver_net(tmp_path / "t")
    assert torch.equal(net.model.stem.weight, other.stem.weight)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    with pytest.raises(TypeError):
        save_liver_net(tmp_path / "s", model, kind="student")


def test_missing_and_mismatching_files(tmp_path):
    with pytest.raises(ModuleError, match="not found"):
        load_liver_net(tmp_path / "nothing")
    folder = save_liver_net(tmp_path / "t", _teacher(), kind="teacher")
    (folder / "weights.pt").write_bytes((folder / "weights.pt").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModuleError, match="weights_sha256"):
        load_liver_net(folder)
    (folder / "weights.pt").unlink()
    with pytest.raises(ModuleError, match="missing"):
        load_liver_net(folder)


def test_json_describing_another_network_is_refused(tmp_path):
    folder = save_liver_net(tmp_path / "t", _teacher(), kind="teacher")
    info = json.loads((folder / "model.json").read_text())
    info["input_shape"] = [10, 32, 32]  # flatten width no longer fits the weights
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModuleError, match="do not fit"):
        load_liver_net(folder)
    info["kind"] = "bogus"
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModuleError, match="kind"):
        load_liver_net(folder)


class _Payload:
    """Unpickling this touches a marker file: it must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_code_is_refused_without_running_it(tmp_path):
    folder = save_liver_net(tmp_path / "t", _teacher(), kind="teacher")
    marker = tmp_path / "pwned"
    sd = dict(torch.load(folder / "weights.pt", weights_only=True))
    sd["payload"] = _Payload(marker)
    torch.save(sd, folder / "weights.pt")
    info = json.loads((folder / "model.json").read_text())
    info["weights_sha256"] = hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
    (folder / "model.json").write_text(json.dumps(info))
    with pytest.raises(UnsafeModelFileError):
        load_liver_net(folder)
    assert not marker.exists()


def _constant_output_model(b_mean: float, b_logvar: float):
    """All weights zero: the standardised output is the biases, whatever the input."""
    model = build_liver_model("teacher", mean_variance=True, input_shape=SHAPE)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.output_layer.bias.fill_(b_mean)
        model.logvar_layer.bias.fill_(b_logvar)
    return model


def test_percent_conversion_and_calibration(tmp_path):
    model = _constant_output_model(0.5, np.log(0.09))
    net = load_liver_net(save_liver_net(tmp_path / "t", model, kind="teacher", calibration=3.0))
    x = np.random.default_rng(0).random((4, *SHAPE)) * 1000
    mean, var = predict_liver(net, x)
    np.testing.assert_allclose(mean, 0.5 * 4.64437 + 3.91012, rtol=1e-6)
    np.testing.assert_allclose(var, 3.0 * 0.09 * 4.64437**2, rtol=1e-5)
    # same network without a calibration factor
    net1 = load_liver_net(save_liver_net(tmp_path / "u", model, kind="teacher"))
    np.testing.assert_allclose(predict_liver(net1, x)[1] * 3.0, var, rtol=1e-6)
    # point network: no variance
    point = build_liver_model("teacher", mean_variance=False, input_shape=SHAPE)
    with torch.no_grad():
        for p in point.parameters():
            p.zero_()
        point.output_layer.bias.fill_(-0.25)
    m, v = predict_liver(load_liver_net(save_liver_net(tmp_path / "p", point, kind="teacher")), x)
    assert v is None
    np.testing.assert_allclose(m, -0.25 * LIVER_FAT_STD + LIVER_FAT_MEAN, rtol=1e-6)


def test_inputs_are_normalised_per_sample(tmp_path):
    net = load_liver_net(save_liver_net(tmp_path / "t", _teacher(), kind="teacher"))
    rng = np.random.default_rng(1)
    x = rng.random((3, *SHAPE)) * 500
    mean, var = predict_liver(net, x, batch_size=2)
    # by hand: (x - mean) / (std + 1e-7) per sample, then the network, then % units
    xn = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-7)
    with torch.no_grad():
        out = net.model(torch.as_tensor(xn, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(mean, out[:, 0] * LIVER_FAT_STD + LIVER_FAT_MEAN, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, np.exp(out[:, 1]) * LIVER_FAT_STD**2, rtol=1e-4)
    # invariant to a positive gain and an offset of each sample
    scaled = x * np.array([3.0, 0.5, 10.0])[:, None, None, None] + 7.0
    np.testing.assert_allclose(predict_liver(net, scaled, batch_size=1)[0], mean, rtol=1e-4, atol=1e-4)


def test_bad_samples_raise_naming_the_sample(tmp_path):
    net = load_liver_net(save_liver_net(tmp_path / "t", _teacher(), kind="teacher"))
    x = np.random.default_rng(2).random((3, *SHAPE))
    x[1] = 5.0
    with pytest.raises(TensorError, match="sample 1"):
        predict_liver(net, x)
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(TensorError, match="non-finite"):
        predict_liver(net, x)
    with pytest.raises(TensorError, match="shape"):
        prepare_liver_input(net, np.ones((10, 8, 8)), path="p.zip")


def test_bundled_demo_weights_load_and_are_marked():
    root = default_liver_weights()
    assert root is not None, "the demonstration liver weights must ship with the package (src/ukbmri/data/liver)"
    for kind, shape in (("teacher", (10, 160, 160)), ("student", (36, 232, 256))):
        net = load_liver_net(root / kind)
        assert net.kind == kind and net.input_shape == shape
        assert net.info["demonstration_only"] is True
        assert (root / kind / "weights.pt").stat().st_size < 5 * 2**20
