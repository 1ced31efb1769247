"""Inference module folders, readable by both ukbmri and MIMIR.

A module is a folder holding (MIMIR's published layout, kept byte-compatible)::

    snapshot.pth.tar                 torch.save({"state_dict": ..., ...})
    metadata.txt                     header, then  Name,Field,Unit,Divisor   per target
    standardization_parameters.txt   header, then  mean,stdev              per target
    calibration_factors.txt          header, then  factor                  per target

and, for modules written by ukbmri, ``module.json`` (backbone, input format,
targets, training data, metrics, version, ``demonstration_only``, creator,
``weights_sha256``). MIMIR ignores the extra file; folders without it are read
as published MIMIR modules (the backbone is recognised from the weights,
ResNet50 for every published module).

Weights are read with ``torch.load(..., weights_only=True)`` only. A file
that needs pickled code to load is refused with
:class:`~ukbmri.errors.UnsafeModelFileError`; numpy scalars and arrays (common
in training checkpoints) are the only non-torch types admitted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ukbmri.errors import ModuleError
from ukbmri.io.atomic import staged_folder, write_bytes, write_text
from ukbmri.models import BACKBONES, build_backbone, resolve_device
from ukbmri.models.checkpoint import extract_state_dict, infer_backbone, safe_torch_load
from ukbmri.module_files import (  # the module folder's text files
    _CALIBRATION_HEADER,
    _METADATA_HEADER,
    _STANDARDIZATION_HEADER,
    CALIBRATION,
    INPUT_FORMAT,
    METADATA,
    MODULE_JSON,
    SNAPSHOT,
    STANDARDIZATION,
    Target,
)
from ukbmri.module_files import read_calibration as _read_calibration
from ukbmri.module_files import read_metadata as _read_metadata
from ukbmri.module_files import read_standardization as _read_standardization

__all__ = [
    "Target",
    "InferenceModule",
    "load_module",
    "save_module",
    "infer_backbone",
    "INPUT_FORMAT",
    "SNAPSHOT",
    "METADATA",
    "STANDARDIZATION",
    "CALIBRATION",
    "MODULE_JSON",
]

log = logging.getLogger(__name__)


@dataclass
class InferenceModule:
    """A loaded inference module: network in eval mode plus post-processing constants."""

    name: str  #: folder name (MIMIR names its output sub-folder after it)
    folder: Path
    targets: tuple[Target, ...]
    mean: np.ndarray  #: (T,) float64 training means
    sd: np.ndarray  #: (T,) float64 training standard deviations
    calibration: np.ndarray  #: (T,) float64 variance calibration factors
    backbone: str
    model: nn.Module
    weights_sha256: str
    info: dict = field(default_factory=dict)  #: module.json contents ({} for MIMIR modules)

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def divisors(self) -> np.ndarray:
        return np.array([t.divisor for t in self.targets], dtype=np.float64)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def input_format(self) -> str:
        return str(self.info.get("input_format", INPUT_FORMAT))

    @property
    def fingerprint(self) -> str:
        """sha256 of everything that determines the predictions: weights, targets, divisors,
        standardisation and calibration. Resumed outputs are reused only when it matches."""
        h = hashlib.sha256(self.weights_sha256.encode())
        h.update(repr([(t.name, t.field, t.unit, t.divisor) for t in self.targets]).encode())
        for a in (self.mean, self.sd, self.calibration):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        h.update(self.backbone.encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"InferenceModule({self.name!r}, {self.backbone}, {self.n_targets} targets, "
            f"sha256 {self.weights_sha256[:12]})"
        )


def load_module(
    folder: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> InferenceModule:
    """Load an inference module folder (MIMIR's published layout or ukbmri's).

    Parameters
    ----------
    folder:
        The module folder.
    device:
        Where the network goes (``"cpu"``, ``"cuda"``, ``"auto"``, ...).

    Returns
    -------
    InferenceModule
        The network in eval mode with the post-processing constants.

    Raises
    ------
    ModuleError
        Missing folder or file, unparsable text, target counts that disagree
        (between the three text files, ``fc``'s ``2T`` outputs and module.json),
        unknown backbone, weights that do not fit the backbone, or a
        ``weights_sha256`` in module.json that does not match the file.
    UnsafeModelFileError
        The weights file needs pickled code to load (never executed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModuleError("inference module folder not found", path=folder)
    for member in (SNAPSHOT, METADATA, STANDARDIZATION, CALIBRATION):
        if not (folder / member).is_file():
            raise ModuleError("inference module file missing", path=folder, member=member)
    dev = resolve_device(device)

    targets = _read_metadata(folder)
    mean, sd = _read_standardization(folder)
    calibration = _read_calibration(folder)
    n = len(targets)
    if n == 0:
        raise ModuleError("no targets listed", path=folder, member=METADATA)
    for member, count in ((STANDARDIZATION, len(mean)), (CALIBRATION, len(calibration))):
        if count != n:
            raise ModuleError(f"number of targets differs from {METADATA}", path=folder,
                              member=member, expected=n, found=count)

    info: dict = {}
    if (folder / MODULE_JSON).is_file():
        try:
            info = json.loads((folder / MODULE_JSON).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModuleError(f"invalid JSON ({exc})", path=folder, member=MODULE_JSON) from exc
        if not isinstance(info, dict):
            raise ModuleError("module.json must hold an object", path=folder, member=MODULE_JSON)
        names = [t.get("name") for t in info.get("targets", []) if isinstance(t, dict)]
        if names and names != [t.name for t in targets]:
            raise ModuleError(f"targets differ from {METADATA}", path=folder, member=MODULE_JSON,
                              expected=[t.name for t in targets], found=names)
        if info.get("input_format", INPUT_FORMAT) != INPUT_FORMAT:
            raise ModuleError("unsupported input format", path=folder, member=MODULE_JSON,
                              expected=INPUT_FORMAT, found=info.get("input_format"))

    data = (folder / SNAPSHOT).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if info.get("weights_sha256") not in (None, sha):
        raise ModuleError("weights file does not match module.json's weights_sha256", path=folder,
                          member=SNAPSHOT, expected=info["weights_sha256"], found=sha)
    state = extract_state_dict(safe_torch_load(data, device=dev, path=folder, member=SNAPSHOT),
                               path=folder, member=SNAPSHOT)

    fc = state.get("fc.weight")
    if fc is None or fc.ndim != 2:
        raise ModuleError("weights have no linear head 'fc'", path=folder, member=SNAPSHOT)
    if fc.shape[0] != 2 * n:
        raise ModuleError(f"fc outputs do not match the {n} targets of {METADATA} (2 per target)",
                          path=folder, member=SNAPSHOT, expected=2 * n, found=int(fc.shape[0]))

    in_channels = int(info.get("in_channels", 3))
    backbone = info.get("backbone") or infer_backbone(state, in_channels=in_channels)
    if backbone is None:
        raise ModuleError("weights match none of the known backbones", path=folder, member=SNAPSHOT,
                          expected=" | ".join(BACKBONES))
    if backbone not in BACKBONES:
        raise ModuleError("unknown backbone", path=folder, member=MODULE_JSON,
                          expected=" | ".join(BACKBONES), found=backbone)
    with torch.device("meta"):
        model = build_backbone(backbone, 2 * n, in_channels=in_channels)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModuleError(f"weights do not fit a {backbone}: {str(exc)[:400]}", path=folder,
                          member=SNAPSHOT) from exc
    model = model.float().to(dev).eval()
    log.info("loaded module %s (%s, %d targets) on %s", folder.name, backbone, n, dev)
    return InferenceModule(folder.name, folder, targets, mean, sd, calibration, backbone, model, sha, info)


# -- writing ------------------------------------------------------------------
def _fmt(x: float) -> str:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x} cannot go into a module file")
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _check_text(value: str, what: str) -> str:
    if any(c in value for c in ",\r\n"):
        raise ValueError(f"{what} {value!r} contains a comma or line break (MIMIR's files are comma-separated)")
    return value


def save_module(
    folder: str | os.PathLike[str],
    *,
    model: nn.Module,
    backbone: str,
    targets: Sequence[Target],
    mean: Iterable[float],
    sd: Iterable[float],
    calibration: Iterable[float],
    info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a module folder that both ukbmri and MIMIR can read.

    The folder is assembled in a temporary sibling and renamed into place, so
    a reader never sees a half-written module.

    Parameters
    ----------
    folder:
        Destination folder (its name becomes the module name).
    model, backbone:
        Trained network and its :data:`~ukbmri.models.BACKBONES` name.
    targets, mean, sd, calibration:
        Per-target metadata, standardisation and variance calibration factors.
    info:
        Extra module.json entries, e.g. ``training_data`` (a description),
        ``metrics``, ``version``, ``demonstration_only`` (default True).
    overwrite:
        Replace an existing non-empty folder.

    Returns
    -------
    Path
        ``folder``.
    """
    from ukbmri import __version__

    folder = Path(folder)
    targets = tuple(targets)
    mean_a, sd_a, cal_a = (np.asarray(list(v), dtype=np.float64) for v in (mean, sd, calibration))
    n = len(targets)
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(sorted(BACKBONES))}")
    if not n or any(len(a) != n for a in (mean_a, sd_a, cal_a)):
        raise ValueError(f"need one mean, sd and calibration factor per target ({n}), got "
                         f"{len(mean_a)}, {len(sd_a)}, {len(cal_a)}")
    if np.any(sd_a <= 0) or np.any(cal_a <= 0):
        raise ValueError("sd and calibration factors must be positive")
    out_features = getattr(getattr(model, "fc", None), "out_features", None)
    if out_features != 2 * n:
        raise ValueError(f"model.fc has {out_features} outputs, expected {2 * n} for {n} targets")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty (pass overwrite=True)")

    meta = [_METADATA_HEADER] + [
        ",".join((_check_text(t.name, "target name"), _check_text(str(t.field), "field"),
                  _check_text(t.unit, "unit"), _fmt(t.divisor)))
        for t in targets
    ]
    stand = [_STANDARDIZATION_HEADER] + [f"{_fmt(m)},{_fmt(s)}" for m, s in zip(mean_a, sd_a)]
    cal = [_CALIBRATION_HEADER] + [_fmt(c) for c in cal_a]

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"state_dict": state}, buf)
    blob = buf.getvalue()

    doc: dict[str, Any] = {
        "format": "ukbmri-module",
        "format_version": 1,
        "backbone": backbone,
        "input_format": INPUT_FORMAT,
        "targets": [{"name": t.name, "field": str(t.field), "unit": t.unit, "divisor": t.divisor}
                    for t in targets],
        "demonstration_only": True,
        "version": "0",
    }
    doc.update(dict(info or {}))
    doc.update({
        "backbone": backbone,
        "input_format": INPUT_FORMAT,
        "created_by": f"ukbmri {__version__}",
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    })

    with staged_folder(folder, overwrite=True) as tmp:
        write_bytes(tmp / SNAPSHOT, blob)
        write_text(tmp / METADATA, "\n".join(meta) + "\n")
        write_text(tmp / STANDARDIZATION, "\n".join(stand) + "\n")
        write_text(tmp / CALIBRATION, "\n".join(cal) + "\n")
        write_text(tmp / MODULE_JSON, json.dumps(doc, indent=2, sort_keys=False, default=_json_default) + "\n")
    log.info("wrote module %s (%s, %d targets)", folder, backbone, n)
    return folder


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
