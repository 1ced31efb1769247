"""Import published ml4h Keras liver models into :mod:`ukbmri.models.ml4h_liver` (no Keras needed).

Weights are read with h5py from any of the Keras layouts:

* Keras 2 / Keras 3 legacy ``.h5`` (``model.save``): ``model_weights/<layer>/<layer>/kernel:0``
  with the layer order in the ``layer_names`` attribute and the model JSON in ``model_config``;
* legacy ``save_weights`` ``.h5``: the same layer groups at the file root;
* Keras 3 ``.weights.h5``: ``layers/<conv2d|dense...>/vars/0`` (kernel), ``vars/1`` (bias);
* Keras 3 ``.keras`` archive: ``config.json`` + ``model.weights.h5`` (read in memory).

Layers are matched by order and checked by shape: conv kernels
``(kh, kw, in, out)`` become ``(out, in, kh, kw)``, dense kernels ``(in, out)``
become ``(out, in)``. The kernel size, input channels and (when the model JSON
is there) the input size are taken from the file. Anything that does not fit
the published architecture (extra layers, batch norm, other paddings or
activations, other filter counts) raises :class:`~ukbmri.errors.ModuleError`
naming the file, the layer, and expected versus found.

:func:`save_keras_h5_weights` writes a PyTorch liver model back in the legacy
Keras ``save_weights`` layout, loadable by ``keras_model.load_weights``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import h5py
import numpy as np
import torch

from ukbmri.errors import ModuleError
from ukbmri.io.atomic import atomic_path
from ukbmri.models.ml4h_liver import N_CONVS, LiverStudent, LiverTeacher

__all__ = [
    "KerasLayerWeights",
    "KerasLiverImport",
    "read_keras_weights",
    "keras_liver_kind",
    "keras_input_name",
    "import_keras_liver",
    "load_keras_liver_model",
    "save_keras_h5_weights",
]

log = logging.getLogger(__name__)

_MODELS = {"teacher": LiverTeacher, "student": LiverStudent}
_KIND_BY_CHANNELS = {10: "teacher", 36: "student"}
#: in-channels of the third convolution: the teacher's dense block concatenates before it (32 + 32),
#: the student's pools after its first conv and concatenates after (32).
_KIND_BY_THIRD_CONV = {64: "teacher", 32: "student"}
_DEFAULT_HW = {"teacher": (160, 160), "student": (232, 256)}
#: Layer names as in the published diagrams (used when exporting).
_KERAS_NAMES = {
    "teacher": ([f"conv2d_{i}" if i else "conv2d" for i in range(10)], ["dense", "embed"]),
    "student": ([f"conv2d_{i + 1}" for i in range(10)], ["dense_1", "embed"]),
}
_OUTPUT_NAME = "output_liver_fat_sentinel_prediction_continuous"
_ALLOWED_CLASSES = {
    "InputLayer", "Conv2D", "Activation", "MaxPooling2D", "Concatenate", "Flatten", "Dense",
    "Dropout", "SpatialDropout2D",  # identity at inference
}  # fmt: skip


@dataclass(frozen=True)
class KerasLayerWeights:
    """One Keras layer with weights: its name and arrays (kernel first, then bias)."""

    name: str
    arrays: tuple[np.ndarray, ...]

    @property
    def kernel(self) -> np.ndarray:
        return self.arrays[0]


def _str(v) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def _natural_key(name: str) -> tuple[str, int]:
    m = re.match(r"^(.*?)(?:_(\d+))?$", name)
    assert m is not None
    return m.group(1), int(m.group(2) or 0)


def _order_kernel_first(names: list[str], arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    def rank(i: int) -> int:
        n = names[i].lower()
        if "kernel" in n:
            return 0
        if "bias" in n:
            return 1
        return 0 if arrays[i].ndim > 1 else 1

    order = sorted(range(len(arrays)), key=rank)
    return tuple(arrays[i] for i in order)


def _read_legacy(g: h5py.Group) -> list[KerasLayerWeights]:
    layers = []
    for lname in (_str(n) for n in g.attrs["layer_names"]):
        lg = g[lname]
        wnames = [_str(w) for w in lg.attrs.get("weight_names", [])]
        if not wnames:
            continue
        arrays = [np.asarray(lg[w][()]) for w in wnames]
        layers.append(KerasLayerWeights(lname, _order_kernel_first(wnames, arrays)))
    return layers


def _read_keras3(f: h5py.File, config: dict | None) -> list[KerasLayerWeights]:
    found: list[tuple[str, str, tuple[np.ndarray, ...]]] = []
    for gname, lg in f["layers"].items():
        vars_ = lg.get("vars")
        if not isinstance(vars_, h5py.Group) or len(vars_) == 0:
            if any(isinstance(v, h5py.Group) and "vars" in v for v in lg.values()):
                raise ModuleError(f"nested model in layer {gname!r} is not supported", member=f"layers/{gname}")
            continue
        real = _str(vars_.attrs.get("name", gname))
        arrays = tuple(np.asarray(vars_[k][()]) for k in sorted(vars_, key=int))
        found.append((gname, real, arrays))
    if config is not None:
        order = {n: i for i, n in enumerate(_config_layer_names(config))}
        found.sort(key=lambda t: order.get(t[1], len(order)))
    else:
        found.sort(key=lambda t: _natural_key(t[0]))
    return [KerasLayerWeights(real, arrays) for _, real, arrays in found]


def _config_layers(config: dict) -> list[dict]:
    cfg = config.get("config", config)
    layers = cfg.get("layers", []) if isinstance(cfg, dict) else []
    return [lay for lay in layers if isinstance(lay, dict)]


def _config_layer_names(config: dict) -> list[str]:
    return [lay.get("name") or lay.get("config", {}).get("name", "") for lay in _config_layers(config)]


def read_keras_weights(path: str | PathLike[str]) -> tuple[list[KerasLayerWeights], dict | None, str]:
    """Weighted layers in model order, the model JSON config (or ``None``), and the format name.

    Format names: ``"legacy_h5"`` (``model.save``), ``"legacy_weights_h5"``
    (``save_weights``), ``"keras3_weights_h5"``, ``"keras3_archive"``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModuleError("Keras model file not found", path=path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                if "model.weights.h5" not in names:
                    raise ModuleError(
                        "Keras archive without model.weights.h5", path=path, found=sorted(names)[:8]
                    )
                config = json.loads(zf.read("config.json")) if "config.json" in names else None
                blob = zf.read("model.weights.h5")
            with h5py.File(io.BytesIO(blob), "r") as f:
                return _read_keras3(f, config), config, "keras3_archive"
        with h5py.File(path, "r") as f:
            config = None
            if "model_config" in f.attrs:
                config = json.loads(_str(f.attrs["model_config"]))
            if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
                return _read_legacy(f["model_weights"]), config, "legacy_h5"
            if "layer_names" in f.attrs:
                return _read_legacy(f), config, "legacy_weights_h5"
            if "layers" in f:
                return _read_keras3(f, None), None, "keras3_weights_h5"
            raise ModuleError(
                "not a Keras weights file",
                path=path,
                expected="model_weights/ (Keras 2 .h5), layer_names, or layers/ (Keras 3)",
                found=sorted(f.keys())[:8] or "empty file",
            )
    except ModuleError as e:
        if e.path is None:
            raise ModuleError(e.message, path=path, member=e.member, expected=e.expected, found=e.found) from e
        raise
    except (OSError, KeyError, ValueError) as e:  # h5py / zip / json failures
        raise ModuleError(f"cannot read Keras weights: {e}", path=path) from e


def _check_config(config: dict, path: Path) -> tuple[int, int] | None:
    """Refuse layers or settings the PyTorch networks do not have; return the input (H, W) if stated."""
    hw = None
    for lay in _config_layers(config):
        cls = lay.get("class_name", "")
        c = lay.get("config", {})
        name = c.get("name", lay.get("name", "?"))

        def bad(what: str, expected, found) -> ModuleError:
            return ModuleError(f"layer {name!r} ({cls}): {what}", path=path, expected=expected, found=found)

        if cls not in _ALLOWED_CLASSES:
            raise bad("layer type not in the ml4h liver architecture", sorted(_ALLOWED_CLASSES), cls)
        if cls == "InputLayer":
            shape = c.get("batch_shape") or c.get("batch_input_shape")
            if shape and len(shape) == 4 and shape[1] and shape[2]:
                hw = (int(shape[1]), int(shape[2]))
        elif cls == "Conv2D":
            if c.get("padding", "same") != "same":
                raise bad("padding", "same", c.get("padding"))
            if list(c.get("strides", [1, 1])) != [1, 1]:
                raise bad("strides", [1, 1], c.get("strides"))
            if list(c.get("dilation_rate", [1, 1])) not in ([1, 1], [1]):
                raise bad("dilation", [1, 1], c.get("dilation_rate"))
            if c.get("activation", "linear") not in ("linear", "relu"):
                raise bad("activation", "linear or relu", c.get("activation"))
            if c.get("data_format", "channels_last") not in ("channels_last", None):
                raise bad("data format", "channels_last", c.get("data_format"))
        elif cls == "Activation":
            if c.get("activation") != "relu":
                raise bad("activation", "relu", c.get("activation"))
        elif cls == "MaxPooling2D":
            if list(c.get("pool_size", [2, 2])) != [2, 2]:
                raise bad("pool size", [2, 2], c.get("pool_size"))
            if c.get("strides") not in (None, [2, 2], (2, 2)):
                raise bad("pool strides", [2, 2], c.get("strides"))
        elif cls == "Dense":
            act = c.get("activation", "linear")
            if act not in ("linear", "relu"):
                raise bad("activation", "linear or relu", act)
            if int(c.get("units", 0)) == 1 and act != "linear":
                raise bad("output activation", "linear", act)
    return hw


def _chain_dense(dense: list[KerasLayerWeights], flat: int, path: Path) -> list[KerasLayerWeights]:
    """Order the three Dense layers flatten -> 16 -> 64 -> 1 by their shapes."""
    expected = [(flat, 16), (16, 64), (64, 1)]
    by_shape = {tuple(d.kernel.shape): d for d in dense}
    if len(dense) != 3 or any(s not in by_shape for s in expected):
        raise ModuleError(
            "Dense layers do not match the architecture",
            path=path,
            expected=expected,
            found=[(d.name, tuple(d.kernel.shape)) for d in dense],
        )
    return [by_shape[s] for s in expected]


@dataclass(frozen=True)
class KerasLiverImport:
    """An imported ml4h Keras liver network and what the file said about it."""

    model: LiverTeacher | LiverStudent
    kind: str  #: "teacher" | "student"
    format: str  #: see :func:`read_keras_weights`
    input_name: str | None  #: the Keras input layer's name (None for weights-only files)
    config: dict | None


def keras_input_name(config: dict | None) -> str | None:
    """Name of the model's InputLayer in a Keras model JSON (``None`` without one)."""
    if config is None:
        return None
    for lay in _config_layers(config):
        if lay.get("class_name") == "InputLayer":
            return lay.get("config", {}).get("name") or lay.get("name")
    return None


def keras_liver_kind(layers: list[KerasLayerWeights], *, path: str | PathLike[str] | None = None) -> str:
    """``"teacher"`` or ``"student"`` from the input channels (10 / 36), confirmed by the layer structure.

    The structure (the in-channels of the third Conv2D: 64 for the teacher's dense
    block, 32 for the student's) decides when the channel count is neither.

    Raises :class:`ModuleError` when neither fits, or when they disagree.
    """
    convs = [lay for lay in layers if lay.kernel.ndim == 4]
    if not convs:
        raise ModuleError("no Conv2D kernels in the file", path=path, found=[lay.name for lay in layers])
    cin = int(convs[0].kernel.shape[2])
    by_channels = _KIND_BY_CHANNELS.get(cin)
    by_structure = _KIND_BY_THIRD_CONV.get(int(convs[2].kernel.shape[2])) if len(convs) > 2 else None
    if by_channels and by_structure and by_channels != by_structure:
        raise ModuleError(
            f"input has {cin} channels (the {by_channels}'s) but the layers are the {by_structure}'s",
            path=path,
            expected="10 channels with the teacher layers or 36 with the student layers",
            found=f"{cin} channels, third Conv2D input {convs[2].kernel.shape[2]}",
        )
    kind = by_channels or by_structure
    if kind is None:
        raise ModuleError(
            "not an ml4h liver teacher or student",
            path=path,
            expected="input channels 10 (teacher) or 36 (student)",
            found=f"{cin} channels, {len(convs)} Conv2D layers",
        )
    return kind


def import_keras_liver(
    h5_path: str | PathLike[str],
    kind: str | None = None,
    *,
    input_hw: tuple[int, int] | None = None,
    check_config: bool = True,
    mean_variance: bool = False,
) -> KerasLiverImport:
    """Read an ml4h Keras liver file once: the PyTorch model, its kind, format and input name.

    ``kind=None`` recognises teacher / student with :func:`keras_liver_kind`;
    the other parameters are those of :func:`load_keras_liver_model`.
    """
    path = Path(h5_path)
    layers, config, fmt = read_keras_weights(path)
    if kind is None:
        kind = keras_liver_kind(layers, path=path)
    model = _build(path, layers, config, fmt, kind, input_hw, check_config, mean_variance)
    return KerasLiverImport(model, kind, fmt, keras_input_name(config), config)


def _size_from_dense(kind: str, dense: list[KerasLayerWeights]) -> tuple[int, int] | None:
    """Input (H, W) of a weights-only file: the ml4h size if the Flatten width fits it, else a square one."""
    widths = {"teacher": 16, "student": 48}  # channels at the Flatten
    flat = [int(d.kernel.shape[0]) for d in dense if d.kernel.shape[1:] == (16,)]
    if len(flat) != 1 or flat[0] % widths[kind]:
        return None
    cells = flat[0] // widths[kind]
    h, w = _DEFAULT_HW[kind]
    if cells == (h // 8) * (w // 8):
        return h, w
    side = int(round(cells**0.5))
    return (8 * side, 8 * side) if side * side == cells else None


def load_keras_liver_model(
    h5_path: str | PathLike[str],
    kind: str | None = "teacher",
    *,
    input_hw: tuple[int, int] | None = None,
    check_config: bool = True,
    mean_variance: bool = False,
) -> LiverTeacher | LiverStudent:
    """Build :class:`LiverTeacher` / :class:`LiverStudent` with the weights of an ml4h Keras model.

    Parameters
    ----------
    h5_path:
        ``.h5`` (Keras 2 or legacy Keras 3), ``.weights.h5`` or ``.keras``.
    kind:
        ``"teacher"`` (20203 GRE input) or ``"student"`` (20254 IDEAL input);
        ``None``: recognised from the file (:func:`keras_liver_kind`).
    input_hw:
        Input image size; default: from the model JSON when present, else the
        ml4h size (160 x 160 teacher, 232 x 256 student) when the Flatten
        width fits it, else the square size that fits.
    check_config:
        Verify layer types, padding, strides and activations against the
        model JSON (when the file has one).
    mean_variance:
        Add the (freshly initialised) log-variance head, e.g. to fine-tune
        the imported network for uncertainty; the mean output is the Keras one.

    Returns the model in eval mode on the CPU. The kernel size (any odd or
    even square size) is read from the file.
    """
    return import_keras_liver(
        h5_path, kind, input_hw=input_hw, check_config=check_config, mean_variance=mean_variance
    ).model


def _build(
    path: Path,
    layers: list[KerasLayerWeights],
    config: dict | None,
    fmt: str,
    kind: str,
    input_hw: tuple[int, int] | None,
    check_config: bool,
    mean_variance: bool,
) -> LiverTeacher | LiverStudent:
    if kind not in _MODELS:
        raise ValueError(f"kind must be 'teacher' or 'student', not {kind!r}")
    cfg_hw = _check_config(config, path) if (config is not None and check_config) else None
    convs = [lay for lay in layers if lay.kernel.ndim == 4]
    dense = [lay for lay in layers if lay.kernel.ndim == 2]
    hw = input_hw or cfg_hw or _size_from_dense(kind, dense) or _DEFAULT_HW[kind]
    other = [lay.name for lay in layers if lay.kernel.ndim not in (2, 4)]
    if other:
        raise ModuleError(
            "layers with weights the liver networks do not have (batch norm?)", path=path, found=other
        )
    if not convs:
        raise ModuleError("no Conv2D kernels in the file", path=path, found=[lay.name for lay in layers])
    for lay in layers:
        if len(lay.arrays) != 2 or lay.arrays[1].ndim != 1:
            raise ModuleError(
                f"layer {lay.name!r} must have a kernel and a bias",
                path=path,
                expected="kernel, bias",
                found=[a.shape for a in lay.arrays],
            )
    for c in convs:
        if c.kernel.shape[0] != c.kernel.shape[1]:
            raise ModuleError(
                f"layer {c.name!r}: non-square kernel", path=path, expected="k x k", found=c.kernel.shape[:2]
            )
    cin = convs[0].kernel.shape[2]
    n_convs = N_CONVS
    if len(convs) != n_convs:
        raise ModuleError(
            f"the {kind} has {n_convs} Conv2D layers",
            path=path,
            expected=n_convs,
            found=f"{len(convs)} ({', '.join(c.name for c in convs)})",
        )
    sizes = tuple(int(c.kernel.shape[0]) for c in convs)
    model = _MODELS[kind](int(cin), mean_variance, kernel_size=sizes, input_hw=hw)
    targets = model.conv_layers()
    dense = _chain_dense(dense, model.flat_features, path)

    with torch.no_grad():
        for src, dst in zip(convs, targets, strict=True):
            want = (*dst.kernel_size, dst.in_channels, dst.out_channels)
            if tuple(src.kernel.shape) != want or src.arrays[1].shape != (dst.out_channels,):
                raise ModuleError(
                    f"layer {src.name!r} does not match the {kind} architecture",
                    path=path,
                    expected=f"kernel {want}",
                    found=f"kernel {tuple(src.kernel.shape)}",
                )
            dst.weight.copy_(torch.from_numpy(np.ascontiguousarray(src.kernel.transpose(3, 2, 0, 1))).float())
            dst.bias.copy_(torch.from_numpy(src.arrays[1]).float())
        for src, dst in zip(dense, model.dense_layers(), strict=True):
            dst.weight.copy_(torch.from_numpy(np.ascontiguousarray(src.kernel.T)).float())
            dst.bias.copy_(torch.from_numpy(src.arrays[1]).float())
    log.info("imported %s %s from %s (%s, kernels %s)", kind, hw, path, fmt, sorted(set(sizes)))
    return model.eval()


def save_keras_h5_weights(model: LiverTeacher | LiverStudent, path: str | PathLike[str]) -> Path:
    """Write the model's weights in the legacy Keras ``save_weights`` .h5 layout (atomic).

    Layer names follow the published diagrams; a Keras model of the same
    architecture loads them with ``model.load_weights(path)``. The
    log-variance head, if any, is not written (Keras ml4h models have none).
    """
    kind = model.kind
    conv_names, dense_names = _KERAS_NAMES[kind]
    names = conv_names + dense_names + [_OUTPUT_NAME]
    tensors: list[tuple[np.ndarray, np.ndarray]] = []
    for c in model.conv_layers():
        tensors.append((c.weight.detach().cpu().numpy().transpose(2, 3, 1, 0), c.bias.detach().cpu().numpy()))
    for d in model.dense_layers():
        tensors.append((d.weight.detach().cpu().numpy().T, d.bias.detach().cpu().numpy()))
    path = Path(path)
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["layer_names"] = np.array([n.encode("utf8") for n in names])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.4.0"
            for name, (k, b) in zip(names, tensors, strict=True):
                g = f.create_group(name)
                wn = [f"{name}/kernel:0", f"{name}/bias:0"]
                g.attrs["weight_names"] = np.array([w.encode("utf8") for w in wn])
                g.create_dataset(wn[0], data=np.ascontiguousarray(k, dtype=np.float32))
                g.create_dataset(wn[1], data=np.ascontiguousarray(b, dtype=np.float32))
    return path
