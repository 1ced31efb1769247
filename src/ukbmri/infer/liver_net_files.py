"""Liver network files: the ukbmri liver-net folder format, ml4h Keras files, :class:`LiverNet`.

:func:`load_liver_net` reads either a ukbmri liver network *folder* (below) or
an ml4h Keras file (``.h5`` / ``.keras``, e.g. the published
``liver_fat_from_echo.h5`` / ``liver_fat_from_ideal.h5``; teacher or student is
recognised from the file); :func:`save_liver_net` writes a folder. Inference is
in :mod:`ukbmri.infer.liver_nets` (which re-exports these names). docs/ml4h.md
documents the settings.

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
* ``input_normalisation``: ``"zero_mean_std1"`` (default) or ``"none"`` (raw
  magnitudes), see :data:`INPUT_NORMALISATIONS`;
* ``training_input_max_stored_value``: optional, the largest stored pixel value
  the network was trained on (ml4h: 2048);
* ``ukbmri_version``, ``training_data``, ``training``, ``cross_validation``,
  ``n_train`` (free-form, written by :mod:`ukbmri.train.liver`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ukbmri import __version__
from ukbmri.errors import ModuleError
from ukbmri.io.atomic import staged_folder, write_bytes, write_text
from ukbmri.models import resolve_device
from ukbmri.models.checkpoint import extract_state_dict, safe_torch_load
from ukbmri.models.ml4h_liver import LiverStudent, LiverTeacher
from ukbmri.models.published import PUBLISHED_ML4H_FILES, check_not_lfs_pointer
from ukbmri.preprocess.liver_tensors import GRE_FIELD, GRE_SHAPE, IDEAL_FIELD, IDEAL_SHAPE
from ukbmri.preprocess.tensormaps import LIVER_FAT_MEAN, LIVER_FAT_STD

__all__ = [
    "WEIGHTS",
    "MODEL_JSON",
    "FORMAT",
    "KINDS",
    "INPUT_NORMALISATIONS",
    "ML4H_TRAINING_MAX_STORED_VALUE",
    "LiverNet",
    "build_liver_model",
    "load_liver_net",
    "save_liver_net",
    "write_liver_net_files",
    "jsonable",
]

log = logging.getLogger(__name__)

WEIGHTS = "weights.pt"
MODEL_JSON = "model.json"
FORMAT = "ukbmri-liver-net"
FORMAT_VERSION = 1

#: Input normalisations a network can declare: ml4h's per-sample ``ZeroMeanStd1``, or raw magnitudes.
INPUT_NORMALISATIONS = ("zero_mean_std1", "none")
#: ml4h set images whose LargestImagePixelValue exceeds this aside as ``<series>_12bit`` tensors,
#: so the published networks never saw them.
ML4H_TRAINING_MAX_STORED_VALUE = 2048.0
_FIELDS = {"teacher": GRE_FIELD, "student": IDEAL_FIELD}

#: kind -> (network class, input TensorMap, output TensorMap, default (C, H, W))
KINDS: dict[str, tuple[type[nn.Module], str, str, tuple[int, int, int]]] = {
    "teacher": (LiverTeacher, "gre_mullti_echo_10_te_liver", "liver_fat", GRE_SHAPE),
    "student": (LiverStudent, "lms_ideal_optimised_low_flip_6dyn", "liver_fat_echo_predicted", IDEAL_SHAPE),
}


@dataclass
class LiverNet:
    """A loaded liver network (eval mode) with the settings that turn its output into liver fat %.

    ``settings`` (kind, input shape, kernel sizes, head, input normalisation,
    label standardisation, calibration) and the weights' sha256 together make
    the :attr:`fingerprint`: it changes whenever anything that affects
    predictions changes.
    """

    kind: str  #: "teacher" | "student"
    model: nn.Module
    mean_variance: bool
    calibration: float  #: variance factor (1.0 without a variance head)
    weights_sha256: str  #: of weights.pt (folders) or of the Keras file
    info: dict = field(default_factory=dict)  #: model.json contents (folders) / what the Keras file said
    folder: Path | None = None  #: the weights folder (None for a Keras file)
    input_normalisation: str = "zero_mean_std1"  #: one of INPUT_NORMALISATIONS
    training_max_stored_value: float | None = None  #: largest stored pixel value seen in training, if known
    source: Path | None = None  #: the folder or Keras file loaded
    origin: str = "ukbmri"  #: "ukbmri" (our folder) or "ml4h" (a Keras file)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.input_shape)  # type: ignore[return-value]

    @property
    def input_tensor_map(self) -> str:
        return KINDS[self.kind][1]

    @property
    def field(self) -> int:
        """The UK Biobank field the network reads (20203 teacher, 20254 student)."""
        return _FIELDS[self.kind]

    @property
    def label_mean(self) -> float:
        return float(self.info.get("label_normalisation", {}).get("mean", LIVER_FAT_MEAN))

    @property
    def label_std(self) -> float:
        return float(self.info.get("label_normalisation", {}).get("std", LIVER_FAT_STD))

    @property
    def demonstration(self) -> bool:
        """True for ukbmri's bundled phantom-trained weights (model.json ``demonstration_only``)."""
        return bool(self.info.get("demonstration_only", False))

    @property
    def demonstration_only(self) -> bool:  # the model.json key's name
        return self.demonstration

    @property
    def settings(self) -> dict[str, Any]:
        """Everything besides the weights that changes a prediction."""
        ks = getattr(self.model, "kernel_sizes", (getattr(self.model, "kernel_size", 3),))
        return {
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "kernel_sizes": [int(k) for k in ks],
            "mean_variance": bool(self.mean_variance),
            "input_normalisation": self.input_normalisation,
            "label_mean": self.label_mean,
            "label_std": self.label_std,
            "calibration": float(self.calibration),
        }

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights' sha256 and :attr:`settings` (hex)."""
        blob = json.dumps({"weights_sha256": self.weights_sha256, "settings": self.settings}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def __repr__(self) -> str:
        head = "mean-variance" if self.mean_variance else "point"
        return (
            f"LiverNet({self.kind}, {head}, input {self.input_shape}, {self.input_normalisation}, "
            f"calibration {self.calibration:.3g}, {self.origin}, sha256 {self.weights_sha256[:12]})"
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
    kernel_size: int | Sequence[int] = 3,
) -> nn.Module:
    """A fresh :class:`LiverTeacher` / :class:`LiverStudent` (``input_shape`` default: the ml4h shape)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    cls, _, _, default_shape = KINDS[kind]
    c, h, w = input_shape if input_shape is not None else default_shape
    if h % 8 or w % 8:
        raise ValueError(f"input height and width must be multiples of 8 (three 2x2 pools), got {(h, w)}")
    ks = int(kernel_size) if isinstance(kernel_size, (int, np.integer)) else tuple(int(k) for k in kernel_size)
    return cls(int(c), bool(mean_variance), kernel_size=ks, input_hw=(int(h), int(w)))


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
        Extra model.json keys (training data, metrics, ``demonstration_only``,
        ``input_normalisation``, ``training_input_max_stored_value``, ...);
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
    norm = _normalisation_name(meta.get("input_normalisation", "zero_mean_std1"))
    if norm is None:
        raise ValueError(f"input_normalisation must be one of {INPUT_NORMALISATIONS}, not {meta['input_normalisation']!r}")
    ks = model.kernel_size
    meta.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "input_tensor_map": KINDS[kind][1],
            "output_tensor_map": KINDS[kind][2],
            "input_shape": list(model.input_shape),
            "input_normalisation": norm,
            "mean_variance": bool(model.mean_variance),
            "kernel_size": int(ks) if isinstance(ks, (int, np.integer)) else [int(k) for k in ks],
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


def _normalisation_name(value: Any) -> str | None:
    """Canonical input normalisation from a model.json value (older files wrote a sentence)."""
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    for name in INPUT_NORMALISATIONS:
        if v == name or v.startswith(name + " "):
            return name
    return None


def load_liver_net(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    input_normalisation: str | None = None,
) -> LiverNet:
    """Load a liver network: a ukbmri weights folder or an ml4h Keras file.

    Parameters
    ----------
    path:
        A folder with ``model.json`` + ``weights.pt`` (or either file in it),
        or a Keras ``.h5`` / ``.keras`` file of the ml4h teacher or student
        (recognised from its input channels and layers, see
        :func:`ukbmri.models.keras_import.keras_liver_kind`).
    input_normalisation:
        Override the network's input normalisation (:data:`INPUT_NORMALISATIONS`);
        default: what model.json says, or for a Keras file the documented
        default (docs/ml4h.md: the published teacher ``zero_mean_std1``, the
        published student ``none``).

    Raises
    ------
    GitLfsPointerError
        The file (or ``weights.pt``) is a Git LFS pointer, not the weights.
    ModuleError
        Missing path or file, invalid model.json (unknown kind, missing
        keys, non-positive calibration), a sha256 mismatch, a Keras file that
        is not the ml4h liver architecture, or weights that do not fit.
    UnsafeModelFileError
        ``weights.pt`` needs pickled code to load (never executed).
    """
    path = Path(path)
    if input_normalisation is not None and input_normalisation not in INPUT_NORMALISATIONS:
        raise ValueError(f"input_normalisation must be one of {INPUT_NORMALISATIONS}, not {input_normalisation!r}")
    if path.is_file() and path.name in (MODEL_JSON, WEIGHTS):
        path = path.parent
    if path.is_dir():
        net = _load_folder(path, device=device)
    elif path.is_file():
        check_not_lfs_pointer(path)
        net = _load_keras(path, device=device)
    else:
        raise ModuleError("liver network not found", path=path,
                          expected="a weights folder (model.json + weights.pt) or a Keras .h5 file")
    if input_normalisation is not None and input_normalisation != net.input_normalisation:
        log.info("%s: input normalisation %s (overriding %s)", path, input_normalisation, net.input_normalisation)
        net.input_normalisation = input_normalisation
        net.info["input_normalisation"] = input_normalisation
        net.info["input_normalisation_source"] = "set by the caller"
    return net


def _load_folder(folder: Path, *, device: str | torch.device) -> LiverNet:
    for member in (MODEL_JSON, WEIGHTS):
        if not (folder / member).is_file():
            raise ModuleError("liver network file missing", path=folder, member=member)
    check_not_lfs_pointer(folder / WEIGHTS)
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
    input_norm = _normalisation_name(info.get("input_normalisation", "zero_mean_std1"))
    if input_norm is None:
        raise ModuleError("unknown input_normalisation", path=folder, member=MODEL_JSON,
                          expected=" | ".join(INPUT_NORMALISATIONS), found=info.get("input_normalisation"))
    train_max = info.get("training_input_max_stored_value")
    if train_max is not None and not (isinstance(train_max, (int, float)) and train_max > 0):
        raise ModuleError("training_input_max_stored_value must be a positive number", path=folder,
                          member=MODEL_JSON, found=train_max)

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
                                      kernel_size=kernel)
        model.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModuleError(f"weights do not fit the {kind} network of model.json: {str(exc)[:400]}",
                          path=folder, member=WEIGHTS) from exc
    model = model.float().to(dev).eval()
    log.info("loaded liver %s %s on %s", kind, folder, dev)
    origin = "ml4h" if info.get("imported_from") else "ukbmri"
    return LiverNet(kind, model, mean_variance, calibration, sha, info, folder, input_norm,
                    None if train_max is None else float(train_max), folder, origin)


def _default_keras_normalisation(kind: str, sha: str, input_name: str | None) -> tuple[str, str]:
    """(normalisation, why) for a Keras file: published file, else input layer name, else by kind."""
    pub = PUBLISHED_ML4H_FILES.get(sha)
    if pub is not None:
        return pub.input_normalisation, f"default for the published {pub.name}: {pub.why}"
    if input_name is not None:
        if input_name.endswith("_root_array"):
            return "none", f"input layer {input_name!r} is a 'root_array' TensorMap of 2019 ml4cvd (no normalisation)"
        return "zero_mean_std1", f"input layer {input_name!r}: ml4h TensorMaps of the liver inputs use ZeroMeanStd1"
    norm = "zero_mean_std1" if kind == "teacher" else "none"
    return norm, f"weights-only file: the published {kind}'s default"


def _load_keras(path: Path, *, device: str | torch.device) -> LiverNet:
    from ukbmri.models.keras_import import import_keras_liver

    sha = _sha256_file(path)
    imp = import_keras_liver(path)
    norm, why = _default_keras_normalisation(imp.kind, sha, imp.input_name)
    pub = PUBLISHED_ML4H_FILES.get(sha)
    model = imp.model.float().to(resolve_device(device)).eval()
    ks = model.kernel_size
    info = {
        "format": "ml4h-keras",
        "kind": imp.kind,
        "imported_from": path.name,
        "keras_format": imp.format,
        "keras_input_name": imp.input_name,
        "published_file": pub.name if pub else None,
        "input_tensor_map": KINDS[imp.kind][1],
        "output_tensor_map": KINDS[imp.kind][2],
        "input_shape": list(model.input_shape),
        "kernel_size": int(ks) if isinstance(ks, (int, np.integer)) else [int(k) for k in ks],
        "mean_variance": False,
        "input_normalisation": norm,
        "input_normalisation_source": why,
        "training_input_max_stored_value": ML4H_TRAINING_MAX_STORED_VALUE,
        "label_normalisation": {"mean": LIVER_FAT_MEAN, "std": LIVER_FAT_STD},
        "demonstration_only": False,
        "weights_sha256": sha,
    }
    log.info("loaded ml4h %s %s (%s; input normalisation %s)", imp.kind, path, imp.format, norm)
    return LiverNet(imp.kind, model, False, 1.0, sha, info, None, norm, ML4H_TRAINING_MAX_STORED_VALUE, path, "ml4h")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
