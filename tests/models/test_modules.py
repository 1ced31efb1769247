"""Module folders: MIMIR's published layout, safety of the weights file, round trips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ukbmri.errors import ModuleError, UnsafeModelFileError
from ukbmri.infer import predict_images
from ukbmri.models import BACKBONES, build_backbone
from ukbmri.modules import (
    CALIBRATION,
    METADATA,
    MODULE_JSON,
    SNAPSHOT,
    STANDARDIZATION,
    Target,
    infer_backbone,
    load_module,
    save_module,
)

TARGETS = [("sex", "31", "(male = 1)", 1), ("weight", "21002", "kg", 1), ("AtlasVatVolume", "22407", "L", 1)]
STAND = [(0.48, 0.4996), (77.1, 15.3), (3.2, 1.9)]
CAL = [1.12, 0.93, 1.41]


def calibrated(name: str, n_out: int, seed: int) -> torch.nn.Module:
    """A random network whose BatchNorm statistics were set on random images (outputs O(1))."""
    g = torch.Generator().manual_seed(seed)
    m = build_backbone(name, n_out, generator=g)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average
    m.train()
    with torch.no_grad():
        m(torch.randint(0, 256, (4, 3, 128, 128), generator=g).float())
    return m.eval()


def write_mimir_text_files(folder: Path, targets=TARGETS, stand=STAND, cal=CAL) -> None:
    """The three text files exactly as MIMIR's module-creation script writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / METADATA, "w") as f:
        f.write("Name,Field,Unit,Divisor\n")
        for name, field, unit, div in targets:
            f.write(f"{name},{field},{unit},{div}\n")
    with open(folder / STANDARDIZATION, "w") as f:
        f.write("mean,std\n")
        for m, s in stand:
            f.write(f"{m},{s}\n")
    with open(folder / CALIBRATION, "w") as f:  # header, then "\n<factor>" per target
        f.write("calibration_factor")
        for c in cal:
            f.write(f"\n{c}")


@pytest.fixture(scope="module")
def mimir_resnet50(tmp_path_factory):
    """A published-MIMIR-style module: torchvision-layout resnet50 saved by the training code."""
    folder = tmp_path_factory.mktemp("mimir") / "module_bodycomp"
    model = calibrated("resnet50", 2 * len(TARGETS), seed=0)
    write_mimir_text_files(folder)
    opt = torch.optim.Adam(model.parameters(), lr=5e-5)
    torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict(), "iteration": 10000},
               folder / SNAPSHOT)
    return folder, model


def mimir_formula(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Post-processing as MIMIR's inference script does it (divisor 1)."""
    out = raw.reshape(raw.shape[0], -1, 2).astype(np.float64)
    means, var = out[:, :, 0].copy(), np.exp(out[:, :, 1])
    for t, ((m, s), c) in enumerate(zip(STAND, CAL)):
        means[:, t] = means[:, t] * s + m
        var[:, t] = var[:, t] * s**2 * c
    return means, var


def test_load_published_mimir_module_and_predict(mimir_resnet50):
    folder, model = mimir_resnet50
    mod = load_module(folder)
    assert mod.name == "module_bodycomp" and mod.backbone == "resnet50"
    assert [t.unit for t in mod.targets] == ["(male = 1)", "kg", "L"]
    assert [t.name for t in mod.targets] == ["sex", "weight", "AtlasVatVolume"]
    np.testing.assert_array_equal(mod.calibration, CAL)
    np.testing.assert_array_equal(mod.sd, [s for _, s in STAND])
    assert mod.weights_sha256 == hashlib.sha256((folder / SNAPSHOT).read_bytes()).hexdigest()
    assert mod.info == {} and not mod.model.training

    images = np.random.default_rng(0).integers(0, 256, (2, 3, 256, 256), dtype=np.uint8)
    with torch.no_grad():
        raw = model(torch.from_numpy(images).float()).numpy()
    assert np.all(np.abs(raw) < 50)  # a sane, non-degenerate network
    exp_mean, exp_var = mimir_formula(raw)
    mean, var = predict_images(mod, images, batch_size=1, precision="fp32")
    np.testing.assert_allclose(mean, exp_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, exp_var, rtol=1e-4)


def _small_folder(folder: Path, *, state_dict=None, extra=None, n_targets=3) -> torch.nn.Module:
    model = build_backbone("smallcnn", 2 * n_targets, generator=torch.Generator().manual_seed(1)).eval()
    write_mimir_text_files(folder, TARGETS[:n_targets], STAND[:n_targets], CAL[:n_targets])
    payload = {"state_dict": model.state_dict() if state_dict is None else state_dict}
    payload.update(extra or {})
    torch.save(payload, folder / SNAPSHOT)
    return model


def test_dataparallel_prefix_is_stripped_and_backbone_inferred(tmp_path):
    ref = build_backbone("smallcnn", 6, generator=torch.Generator().manual_seed(1)).eval()
    prefixed = {f"module.{k}": v for k, v in ref.state_dict().items()}
    _small_folder(tmp_path / "m", state_dict=prefixed)
    mod = load_module(tmp_path / "m")
    assert mod.backbone == "smallcnn"
    for k, v in ref.state_dict().items():
        assert torch.equal(mod.model.state_dict()[k], v)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_infer_backbone_from_keys(name):
    with torch.device("meta"):
        sd = build_backbone(name, 8).state_dict()
    assert infer_backbone(sd) == name
    sd.pop("fc.bias")
    assert infer_backbone(sd) is None


class _Trap:
    """Unpickling this would create a marker file (arbitrary code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_pickled_code_is_refused_and_never_run(tmp_path, zipfile_format):
    marker = tmp_path / "pwned"
    model = _small_folder(tmp_path / "m")
    torch.save({"state_dict": model.state_dict(), "note": _Trap(marker)}, tmp_path / "m" / SNAPSHOT,
               _use_new_zipfile_serialization=zipfile_format)
    with pytest.raises(UnsafeModelFileError, match=r"io\.open") as err:
        load_module(tmp_path / "m")
    assert not marker.exists()
    assert err.value.member == SNAPSHOT and "weights_only" in str(err.value)


def test_whole_pickled_model_is_refused(tmp_path):
    model = _small_folder(tmp_path / "m")
    torch.save(model, tmp_path / "m" / SNAPSHOT)  # a full model object, not a state_dict
    with pytest.raises(UnsafeModelFileError, match="SmallCNN"):
        load_module(tmp_path / "m")


def test_numpy_extras_in_a_checkpoint_are_accepted(tmp_path):
    _small_folder(tmp_path / "m", extra={"best_loss": np.float64(0.25), "hist": np.arange(3.0)})
    assert load_module(tmp_path / "m").n_targets == 3


@pytest.mark.parametrize("content", [b"not a torch file at all" * 4, b""])
def test_corrupt_weights_are_a_module_error_not_unsafe(tmp_path, content):
    _small_folder(tmp_path / "m")
    (tmp_path / "m" / SNAPSHOT).write_bytes(content)
    with pytest.raises(ModuleError) as err:
        load_module(tmp_path / "m")
    assert not isinstance(err.value, UnsafeModelFileError)


def test_truncated_weights(tmp_path):
    _small_folder(tmp_path / "m")
    data = (tmp_path / "m" / SNAPSHOT).read_bytes()
    (tmp_path / "m" / SNAPSHOT).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModuleError, match="cannot read"):
        load_module(tmp_path / "m")


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(ModuleError, match="not found"):
        load_module(tmp_path / "nope")
    for member in (SNAPSHOT, METADATA, STANDARDIZATION, CALIBRATION):
        folder = tmp_path / member.replace(".", "_")
        _small_folder(folder)
        (folder / member).unlink()
        with pytest.raises(ModuleError, match="missing") as err:
            load_module(folder)
        assert err.value.member == member


def test_inconsistent_target_counts(tmp_path):
    _small_folder(tmp_path / "a")
    write_mimir_text_files(tmp_path / "a", TARGETS, STAND[:2], CAL)
    with pytest.raises(ModuleError) as err:
        load_module(tmp_path / "a")
    assert (err.value.member, err.value.expected, err.value.found) == (STANDARDIZATION, 3, 2)

    _small_folder(tmp_path / "b")
    write_mimir_text_files(tmp_path / "b", TARGETS, STAND, CAL + [1.0])
    with pytest.raises(ModuleError) as err:
        load_module(tmp_path / "b")
    assert (err.value.member, err.value.expected, err.value.found) == (CALIBRATION, 3, 4)

    _small_folder(tmp_path / "c", n_targets=3)  # fc has 6 outputs
    write_mimir_text_files(tmp_path / "c", TARGETS[:2], STAND[:2], CAL[:2])
    with pytest.raises(ModuleError, match="fc outputs") as err:
        load_module(tmp_path / "c")
    assert (err.value.expected, err.value.found) == (4, 6)


def test_bad_numbers_in_text_files(tmp_path):
    _small_folder(tmp_path / "m")
    (tmp_path / "m" / STANDARDIZATION).write_text("mean,std\n1,2\n3,abc\n5,6\n")
    with pytest.raises(ModuleError, match="line 3"):
        load_module(tmp_path / "m")
    write_mimir_text_files(tmp_path / "m")
    (tmp_path / "m" / METADATA).write_text("Name,Field,Unit,Divisor\na,1,L,0\nb,2,L,1\nc,3,L,1\n")
    with pytest.raises(ModuleError, match="zero"):
        load_module(tmp_path / "m")


def test_crlf_text_files_are_read(tmp_path):
    _small_folder(tmp_path / "m")
    for member in (METADATA, STANDARDIZATION, CALIBRATION):
        p = tmp_path / "m" / member
        p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    mod = load_module(tmp_path / "m")
    assert [t.unit for t in mod.targets] == ["(male = 1)", "kg", "L"]
    np.testing.assert_array_equal(mod.calibration, CAL)


def mimir_reads(folder: Path):
    """How MIMIR's inference script parses a module folder (readlines, pop header, split)."""
    def rows(name):
        with open(folder / name) as f:
            entries = f.readlines()
        entries.pop(0)
        return entries

    meta = rows(METADATA)
    stand = rows(STANDARDIZATION)
    return (
        [f.split(",")[0] for f in meta],
        [f.split(",")[2] for f in meta],
        np.array([f.split(",")[3] for f in meta]).astype("float"),
        np.array([f.split(",")[0] for f in stand]).astype("float"),
        np.array([f.split(",")[1] for f in stand]).astype("float"),
        np.array([f.split(",")[0] for f in rows(CALIBRATION)]).astype("float"),
        len(rows(METADATA)),  # T as MIMIR counts it: lines - 1
    )


def test_save_load_round_trip_and_mimir_can_read_it(tmp_path):
    model = calibrated("smallcnn", 4, seed=5)
    targets = [Target("sex", "31", "(male = 1)"), Target("liverVolume", "/", "L", 1000.0)]
    mean, sd, cal = [0.5, 1650.0], [0.5, 310.25], [1.0625, 0.875]
    info = {"training_data": "200 synthetic phantoms (seed 3)", "metrics": {"liverVolume": {"mae_l": 0.1}},
            "version": "0.1", "demonstration_only": True}
    folder = save_module(tmp_path / "module_demo", model=model, backbone="smallcnn", targets=targets,
                         mean=mean, sd=sd, calibration=cal, info=info)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [SNAPSHOT, METADATA, STANDARDIZATION, CALIBRATION, MODULE_JSON])
    assert (folder / METADATA).read_text() == (
        "Name,Field,Unit,Divisor\nsex,31,(male = 1),1\nliverVolume,/,L,1000\n")
    names, units, divs, m, s, c, t = mimir_reads(folder)
    assert names == ["sex", "liverVolume"] and units == ["(male = 1)", "L"] and t == 2
    np.testing.assert_array_equal(divs, [1, 1000])
    np.testing.assert_array_equal(m, mean)
    np.testing.assert_array_equal(s, sd)
    np.testing.assert_array_equal(c, cal)
    snap = torch.load(folder / SNAPSHOT, weights_only=True)  # MIMIR: snapshot['state_dict']
    assert set(snap) == {"state_dict"} and snap["state_dict"]["fc.weight"].shape == (4, 192)

    doc = json.loads((folder / MODULE_JSON).read_text())
    assert doc["backbone"] == "smallcnn" and doc["input_format"] == "mimir2d-3x256x256-uint8"
    assert doc["demonstration_only"] is True and doc["training_data"].startswith("200 synthetic")
    assert doc["created_by"].startswith("ukbmri ") and doc["metrics"]["liverVolume"]["mae_l"] == 0.1
    assert [t["name"] for t in doc["targets"]] == ["sex", "liverVolume"]
    assert doc["weights_sha256"] == hashlib.sha256((folder / SNAPSHOT).read_bytes()).hexdigest()

    mod = load_module(folder)
    assert mod.targets == tuple(targets) and mod.backbone == "smallcnn"
    assert mod.info["version"] == "0.1" and mod.weights_sha256 == doc["weights_sha256"]
    images = np.random.default_rng(1).integers(0, 256, (3, 3, 256, 256), dtype=np.uint8)
    with torch.no_grad():
        raw = model(torch.from_numpy(images).float()).numpy().astype(np.float64)
    got_mean, got_var = predict_images(mod, images, precision="fp32")
    exp_mean = (raw[:, 0::2] * sd + np.array(mean)) / [1.0, 1000.0]
    exp_var = np.exp(raw[:, 1::2]) * np.square(sd) * cal / np.square([1.0, 1000.0])
    np.testing.assert_allclose(got_mean, exp_mean, rtol=1e-5)
    np.testing.assert_allclose(got_var, exp_var, rtol=1e-4)


def test_save_refuses_overwrite_and_bad_input(tmp_path):
    model = build_backbone("smallcnn", 2)
    kw = dict(model=model, backbone="smallcnn", targets=[Target("a", "1", "L")], mean=[0], sd=[1],
              calibration=[1])
    save_module(tmp_path / "m", **kw)
    with pytest.raises(FileExistsError):
        save_module(tmp_path / "m", **kw)
    save_module(tmp_path / "m", **kw, info={"version": "2"}, overwrite=True)
    assert load_module(tmp_path / "m").info["version"] == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folders left behind
    with pytest.raises(ValueError, match="comma"):
        save_module(tmp_path / "x", **{**kw, "targets": [Target("a,b", "1", "L")]})
    with pytest.raises(ValueError, match="outputs"):
        save_module(tmp_path / "x", **{**kw, "model": build_backbone("smallcnn", 4)})


def test_module_json_must_agree(tmp_path):
    model = build_backbone("smallcnn", 2)
    folder = save_module(tmp_path / "m", model=model, backbone="smallcnn",
                         targets=[Target("a", "1", "L")], mean=[0], sd=[1], calibration=[1])
    doc = json.loads((folder / MODULE_JSON).read_text())
    (folder / MODULE_JSON).write_text(json.dumps({**doc, "weights_sha256": "0" * 64}))
    with pytest.raises(ModuleError, match="weights_sha256"):
        load_module(folder)
    (folder / MODULE_JSON).write_text(json.dumps({**doc, "targets": [{"name": "b"}]}))
    with pytest.raises(ModuleError, match="targets differ"):
        load_module(folder)
    (folder / MODULE_JSON).write_text(json.dumps({**doc, "backbone": "resnet18"}))
    with pytest.raises(ModuleError, match="do not fit a resnet18"):
        load_module(folder)
    (folder / MODULE_JSON).write_text("{not json")
    with pytest.raises(ModuleError, match="invalid JSON"):
        load_module(folder)
