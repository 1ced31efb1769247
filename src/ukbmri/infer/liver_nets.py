"""Liver-fat network folders (ml4h teacher / student in PyTorch) and their inference.

A liver network folder holds two files::

    weights.pt   a plain state_dict (torch.save(model.state_dict())), read only with
                 torch.load(weights_only=True); a file that needs pickled code is
                 refused with UnsafeModelFileError and never executed
    model.json   what is needed to rebuild and use the network (below)

and, for folders written by training, the cross-validation outputs
(``cv_predictions.csv``, ``metrics.json``, ``metrics.csv``, PNG figures).

``model.json`` keys (``format`` = ``"ukbmri-liver-net"``, ``format_version`` = 1):

* ``kind``: ``"teacher"`` (20203 GRE) or ``"student"`` (20254 IDEAL);
* ``input_tensor_map`` / ``output_tensor_map``: ml4h TensorMap names;
* ``input_shape``: ``[C, H, W]`` the network reads (``[10, 160, 160]`` /
  ``[36, 232, 256]`` for the published layouts);
* ``mean_variance``: the network outputs (mean, log-variance) instead of a point;
* ``kernel_size``: convolution kernel (3);
* ``label_normalisation``: ``{"mean": 3.91012, "std": 4.64437}``: the network
  predicts ``y' = (y - mean) / std``;
* ``calibration_factor``: multiplies the predicted variance (1 without a
  variance head);
* ``weights_sha256``: checked on load;
* ``demonstration_only``: true for weights trained on synthetic phantoms;
* ``ukbmri_version``, ``training_data``, ``training``, ``cross_validation``,
  ``n_train`` (free-form, written by :mod:`ukbmri.train.liver`).

Inference
---------
:func:`predict_liver` takes raw magnitudes ``(N, C, H, W)`` (as built by
:func:`ukbmri.preprocess.liver_tensors.gre_tensor` / ``ideal_tensor``),
applies ml4h's per-sample ``ZeroMeanStd1`` and returns liver fat in % and, for
a mean-variance network, the calibrated variance in %^2. A sample that cannot
be normalised (constant, NaN/inf) raises :class:`~ukbmri.errors.TensorError`
naming the sample; the engine calls :func:`prepare_liver_input` per
participant (so a bad participant becomes a ledger row) and then
:func:`predict_prepared` on the batch of good ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ukbmri import __version__
from ukbmri.io.atomic import staged_folder
from ukbmri.errors import ModuleError, TensorError
from ukbmri.io.atomic import write_bytes, write_text
from ukbmri.models import resolve_device
from ukbmri.models.checkpoint import extract_state_dict, safe_torch_load
from ukbmri.models.ml4h_liver import LiverStudent, LiverTeacher
from ukbmri.preprocess.liver_tensors import GRE_SHAPE, IDEAL_SHAPE, zero_mean_std1
from ukbmri.preprocess.tensormaps import LIVER_FAT_MEAN, LIVER_FAT_STD

__all__ = [
    "WEIGHTS",
    "MODEL_JSON",
    "FORMAT",
    "KINDS",
    "LiverNet",
    "build_liver_model",
    "load_liver_net",
    "save_liver_net",
    "write_liver_net_files",
    "prepare_liver_input",
    "predict_prepared",
    "predict_liver",
    "default_liver_weights",
    "jsonable",
]

log = logging.getLogger(__name__)

WEIGHTS = "weights.pt"
MODEL_JSON = "model.json"
FORMAT = "ukbmri-liver-net"
FORMAT_VERSION = 1

#: kind -> (network class, input TensorMap, output TensorMap, default (C, H, W))
KINDS: dict[str, tuple[type[nn.Module], str, str, tuple[int, int, int]]] = {
    "teacher": (LiverTeacher, "gre_mullti_echo_10_te_liver", "liver_fat", GRE_SHAPE),
    "student": (LiverStudent, "lms_ideal_optimised_low_flip_6dyn", "liver_fat_echo_predicted", IDEAL_SHAPE),
}


@dataclass
class LiverNet:
    """A loaded liver network (eval mode) with its post-processing constants."""

    kind: str  #: "teacher" | "student"
    model: nn.Module
    mean_variance: bool
    calibration: float  #: variance factor (1.0 without a variance head)
    weights_sha256: str
    info: dict = field(default_factory=dict)  #: model.json contents
    folder: Path | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.input_shape)  # type: ignore[return-value]

    @property
    def input_tensor_map(self) -> str:
        return KINDS[self.kind][1]

    @property
    def label_mean(self) -> float:
        return float(self.info.get("label_normalisation", {}).get("mean", LIVER_FAT_MEAN))

    @property
    def label_std(self) -> float:
        return float(self.info.get("label_normalisation", {}).get("std", LIVER_FAT_STD))

    @property
    def demonstration_only(self) -> bool:
        return bool(self.info.get("demonstration_only", False))

    def __repr__(self) -> str:
        head = "mean-variance" if self.mean_variance else "point"
        return (
            f"LiverNet({self.kind}, {head}, input {self.input_shape}, calibration {self.calibration:.3g}, "
            f"sha256 {self.weights_sha256[:12]})"
        )


# --------------------------------------------------------------------------- helpers
def jsonable(x: Any) -> Any:
    """NaN/inf -> None, numpy -> Python, Paths -> str, recursively (strict JSON)."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def build_liver_model(
    kind: str,
    *,
    mean_variance: bool,
    input_shape: tuple[int, int, int] | None = None,
    kernel_size: int = 3,
) -> nn.Module:
    """A fresh :class:`LiverTeacher` / :class:`LiverStudent` (``input_shape`` default: the ml4h shape)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    cls, _, _, default_shape = KINDS[kind]
    c, h, w = input_shape if input_shape is not None else default_shape
    if h % 8 or w % 8:
        raise ValueError(f"input height and width must be multiples of 8 (three 2x2 pools), got {(h, w)}")
    return cls(int(c), bool(mean_variance), kernel_size=int(kernel_size), input_hw=(int(h), int(w)))


# --------------------------------------------------------------------------- writing
def save_liver_net(
    folder: str | os.PathLike[str],
    model: nn.Module,
    *,
    kind: str,
    info: Mapping[str, Any] | None = None,
    calibration: float = 1.0,
    overwrite: bool = False,
) -> Path:
    """Write ``weights.pt`` and ``model.json`` into a new folder, atomically (see :func:`write_liver_net_files`)."""
    with staged_folder(folder, overwrite=overwrite) as tmp:
        write_liver_net_files(tmp, model, kind=kind, info=info, calibration=calibration)
    log.info("wrote liver %s network %s", kind, folder)
    return Path(folder)


def write_liver_net_files(
    folder: str | os.PathLike[str],
    model: nn.Module,
    *,
    kind: str,
    info: Mapping[str, Any] | None = None,
    calibration: float = 1.0,
) -> Path:
    """Write ``weights.pt`` and ``model.json`` into an existing folder (each file atomically).

    Parameters
    ----------
    model:
        A :class:`LiverTeacher` / :class:`LiverStudent` (its input shape,
        kernel size and head are recorded).
    kind:
        ``"teacher"`` or ``"student"``.
    info:
        Extra model.json keys (training data, metrics, ``demonstration_only``, ...);
        the structural keys above are always written by this function.
    calibration:
        Variance calibration factor (> 0; use 1.0 for point networks).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    cls = KINDS[kind][0]
    if not isinstance(model, cls):
        raise TypeError(f"a {kind} folder needs a {cls.__name__}, got {type(model).__name__}")
    if not (np.isfinite(calibration) and calibration > 0):
        raise ValueError(f"calibration factor must be finite and > 0, got {calibration}")
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buf)
    data = buf.getvalue()
    meta: dict[str, Any] = {"demonstration_only": False}
    meta.update(jsonable(dict(info or {})))
    meta.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "input_tensor_map": KINDS[kind][1],
            "output_tensor_map": KINDS[kind][2],
            "input_shape": list(model.input_shape),
            "input_normalisation": "zero_mean_std1 per sample: (x - mean) / (std + 1e-7)",
            "mean_variance": bool(model.mean_variance),
            "kernel_size": int(model.kernel_size),
            "label_normalisation": {"mean": LIVER_FAT_MEAN, "std": LIVER_FAT_STD},
            "calibration_factor": float(calibration),
            "weights_sha256": hashlib.sha256(data).hexdigest(),
            "ukbmri_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    folder = Path(folder)
    write_bytes(folder / WEIGHTS, data)
    write_text(folder / MODEL_JSON, json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return folder


# --------------------------------------------------------------------------- reading
def _require(info: dict, key: str, folder: Path, kinds: tuple[type, ...]) -> Any:
    if key not in info:
        raise ModuleError(f"model.json lacks {key!r}", path=folder, member=MODEL_JSON)
    value = info[key]
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise ModuleError(f"model.json {key!r} has the wrong type", path=folder, member=MODEL_JSON,
                          expected=" | ".join(k.__name__ for k in kinds), found=repr(value))
    return value


def load_liver_net(folder: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> LiverNet:
    """Load a liver network folder (``weights.pt`` + ``model.json``).

    Raises
    ------
    ModuleError
        Missing folder or file, invalid model.json (unknown kind, missing
        keys, non-positive calibration), a sha256 mismatch, or weights that do
        not fit the described network.
    UnsafeModelFileError
        ``weights.pt`` needs pickled code to load (never executed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModuleError("liver network folder not found", path=folder)
    for member in (MODEL_JSON, WEIGHTS):
        if not (folder / member).is_file():
            raise ModuleError("liver network file missing", path=folder, member=member)
    try:
        info = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModuleError(f"invalid JSON ({exc})", path=folder, member=MODEL_JSON) from exc
    if not isinstance(info, dict):
        raise ModuleError("model.json must hold an object", path=folder, member=MODEL_JSON)
    if info.get("format", FORMAT) != FORMAT:
        raise ModuleError("not a liver network folder", path=folder, member=MODEL_JSON,
                          expected=FORMAT, found=info.get("format"))
    kind = _require(info, "kind", folder, (str,))
    if kind not in KINDS:
        raise ModuleError("unknown network kind", path=folder, member=MODEL_JSON,
                          expected=" | ".join(KINDS), found=kind)
    mean_variance = _require(info, "mean_variance", folder, (bool,))
    shape = _require(info, "input_shape", folder, (list,))
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ModuleError("input_shape must be [C, H, W]", path=folder, member=MODEL_JSON, found=shape)
    kernel = info.get("kernel_size", 3)
    calibration = float(info.get("calibration_factor", 1.0) or 1.0)
    if not (np.isfinite(calibration) and calibration > 0):
        raise ModuleError("calibration_factor must be > 0", path=folder, member=MODEL_JSON, found=calibration)
    norm = info.get("label_normalisation", {})
    if not isinstance(norm, dict) or not float(norm.get("std", LIVER_FAT_STD)) > 0:
        raise ModuleError("label_normalisation std must be > 0", path=folder, member=MODEL_JSON, found=norm)

    data = (folder / WEIGHTS).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if info.get("weights_sha256") not in (None, sha):
        raise ModuleError("weights.pt does not match model.json's weights_sha256", path=folder,
                          member=WEIGHTS, expected=info["weights_sha256"], found=sha)
    dev = resolve_device(device)
    state = extract_state_dict(safe_torch_load(data, device="cpu", path=folder, member=WEIGHTS),
                               path=folder, member=WEIGHTS)
    try:
        with torch.device("meta"):
            model = build_liver_model(kind, mean_variance=mean_variance, input_shape=tuple(shape),
                                      kernel_size=int(kernel))
        model.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, ValueError) as exc:
        raise ModuleError(f"weights do not fit the {kind} network of model.json: {str(exc)[:400]}",
                          path=folder, member=WEIGHTS) from exc
    model = model.float().to(dev).eval()
    log.info("loaded liver %s %s on %s", kind, folder, dev)
    return LiverNet(kind, model, mean_variance, calibration, sha, info, folder)


# --------------------------------------------------------------------------- inference
def prepare_liver_input(net: LiverNet, tensor: np.ndarray, *, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """One raw ``(C, H, W)`` tensor -> normalised float32 input (ml4h ZeroMeanStd1).

    Raises
    ------
    TensorError
        Wrong shape for the network, or the tensor cannot be normalised
        (constant, NaN/inf); ``path`` is named in the message.
    """
    a = np.asarray(tensor)
    if tuple(a.shape) != net.input_shape:
        raise TensorError(f"wrong input shape for the liver {net.kind}", path=path,
                          expected=net.input_shape, found=tuple(a.shape))
    return zero_mean_std1(a, path=path)


@torch.no_grad()
def predict_prepared(
    net: LiverNet, x: np.ndarray | torch.Tensor, *, batch_size: int = 8, device: str | torch.device | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Network on already-normalised inputs ``(N, C, H, W)`` -> (% mean, calibrated %^2 variance or None)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    dev = resolve_device(device) if device is not None else next(net.model.parameters()).device
    net.model.to(dev).eval()
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    outs = [net.model(xt[i : i + batch_size].to(dev, torch.float32)).float().cpu()
            for i in range(0, xt.shape[0], batch_size)]
    width = 2 if net.mean_variance else 1
    raw = torch.cat(outs).numpy().astype(np.float64) if outs else np.empty((0, width))
    mean = raw[:, 0] * net.label_std + net.label_mean
    if not net.mean_variance:
        return mean, None
    var = np.exp(raw[:, 1]) * net.label_std**2 * net.calibration
    return mean, var


def predict_liver(
    net: LiverNet,
    tensors: np.ndarray,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Liver fat % from raw magnitude tensors ``(N, C, H, W)``.

    Each sample is normalised on its own (ZeroMeanStd1), batches of
    ``batch_size`` go through the network on ``device`` (default: where the
    network is). Returns the mean in % and, for a mean-variance network, the
    variance in %^2 multiplied by the calibration factor (else ``None``).

    Raises
    ------
    TensorError
        A sample cannot be normalised or has the wrong shape; the message
        names it (``member="sample <i>"``). Use :func:`prepare_liver_input`
        per participant to skip bad ones instead.
    """
    t = np.asarray(tensors)
    if t.ndim != 4:
        raise TensorError("liver tensors must be (N, C, H, W)", expected="4 axes", found=t.shape)
    x = np.empty((t.shape[0], *net.input_shape), dtype=np.float32)
    for i in range(t.shape[0]):
        try:
            x[i] = prepare_liver_input(net, t[i])
        except TensorError as exc:
            raise TensorError(exc.message, member=f"sample {i}", expected=exc.expected, found=exc.found) from exc
    return predict_prepared(net, x, batch_size=batch_size, device=device)


def default_liver_weights() -> Path | None:
    """The bundled demonstration weights folder (``teacher/`` and ``student/`` inside), or None.

    These weights were trained on synthetic phantoms only (model.json
    ``demonstration_only: true``): not for clinical or UK Biobank use.
    """
    try:
        root = resources.files("ukbmri") / "data" / "liver"
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover
        return None
    path = Path(str(root))
    if all((path / k / WEIGHTS).is_file() and (path / k / MODEL_JSON).is_file() for k in KINDS):
        return path
    return None
