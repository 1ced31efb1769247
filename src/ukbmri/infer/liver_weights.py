"""Which liver weights a user named, and whether an input is one a network was trained on.

* :func:`resolve_liver_weights`: paths as given on the command line (weights
  folders, a folder holding ``teacher/`` and/or ``student/``, ml4h Keras
  ``.h5`` files, a folder of them) -> ``{"teacher": path, "student": path}``.
* :func:`liver_weights_kind`: teacher or student, without building the network.
* :func:`liver_input_flags`: flags for one participant's zip and one network,
  e.g. ``liver_input_outside_training_range`` (every flag is documented in
  docs/ml4h.md).

Re-exported by :mod:`ukbmri.infer.liver_nets`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ukbmri.errors import FieldMismatchError, ModuleError
from ukbmri.preprocess.liver_tensors import GRE_FIELD, gre_echoes, ideal_echoes

if TYPE_CHECKING:  # pragma: no cover
    from ukbmri.infer.liver_net_files import LiverNet
    from ukbmri.preprocess.liver_tensors import ZipLike

__all__ = [
    "FLAG_OUTSIDE_TRAINING_RANGE",
    "FLAG_PADDED_OR_CROPPED",
    "FLAG_ECHO_ORDER",
    "LIVER_INPUT_FLAGS",
    "liver_weights_kind",
    "resolve_liver_weights",
    "default_liver_weights",
    "liver_input_flags",
]

log = logging.getLogger(__name__)

_MODEL_JSON = "model.json"
_WEIGHTS = "weights.pt"
_KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
_KINDS = ("teacher", "student")

#: A magnitude image's largest value exceeds the largest stored value the network was trained on
#: (ml4h: 2048; larger images were set aside as ``_12bit`` tensors and never trained on).
FLAG_OUTSIDE_TRAINING_RANGE = "liver_input_outside_training_range"
#: The native image size differs from the network's input size: the tensor was padded / cropped
#: (top-left). The published networks were trained on native 160 x 160 / 232 x 256 images.
FLAG_PADDED_OR_CROPPED = "liver_input_padded_or_cropped"
#: ml4h networks: the magnitude echoes' InstanceNumbers are not 1..10 in echo-time order, so
#: ml4h's channel order (InstanceNumber - 1) differs from ukbmri's (echo time).
FLAG_ECHO_ORDER = "liver_input_echo_order_differs_from_ml4h"
#: Every flag :func:`liver_input_flags` can return, with its meaning.
LIVER_INPUT_FLAGS = {
    FLAG_OUTSIDE_TRAINING_RANGE: "an input image's largest value exceeds the largest the network was trained on",
    FLAG_PADDED_OR_CROPPED: "the native image size differs from the network input: padded/cropped top-left",
    FLAG_ECHO_ORDER: "ml4h network: InstanceNumber order of the echoes differs from echo-time order",
}


def _is_keras_name(p: Path) -> bool:
    return p.name.lower().endswith(_KERAS_SUFFIXES)


def liver_weights_kind(path: str | os.PathLike[str]) -> str:
    """``"teacher"`` or ``"student"`` of a weights folder (its model.json) or an ml4h Keras file.

    Raises :class:`~ukbmri.errors.GitLfsPointerError` for an LFS pointer and
    :class:`ModuleError` for anything that is not a liver network.
    """
    path = Path(path)
    if path.is_file() and path.name in (_MODEL_JSON, _WEIGHTS):
        path = path.parent
    if path.is_dir():
        try:
            kind = json.loads((path / _MODEL_JSON).read_text(encoding="utf-8")).get("kind")
        except FileNotFoundError:
            raise ModuleError("not a liver network folder", path=path, member=_MODEL_JSON,
                              expected="model.json + weights.pt") from None
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise ModuleError(f"invalid model.json ({exc})", path=path, member=_MODEL_JSON) from exc
        if kind not in _KINDS:
            raise ModuleError("unknown network kind", path=path, member=_MODEL_JSON,
                              expected=" | ".join(_KINDS), found=kind)
        return kind
    if not path.is_file():
        raise ModuleError("liver weights not found", path=path)
    from ukbmri.models.keras_import import keras_liver_kind, read_keras_weights
    from ukbmri.models.published import check_not_lfs_pointer

    check_not_lfs_pointer(path)

    layers, _, _ = read_keras_weights(path)
    return keras_liver_kind(layers, path=path)


def _candidates(path: Path) -> list[tuple[str, Path]]:
    """(kind, loadable path) for one user-given path."""
    if not path.exists():
        raise ModuleError("liver weights not found", path=path,
                          expected="a weights folder, a folder with teacher/ and/or student/, or a Keras .h5")
    if path.is_file():
        if path.name in (_MODEL_JSON, _WEIGHTS):
            path = path.parent
        return [(liver_weights_kind(path), path)]
    if (path / _MODEL_JSON).is_file():
        return [(liver_weights_kind(path), path)]
    out: list[tuple[str, Path]] = []
    for sub in _KINDS:
        d = path / sub
        if (d / _MODEL_JSON).is_file():
            kind = liver_weights_kind(d)
            if kind != sub:
                raise ModuleError(f"the {sub}/ folder holds a {kind}", path=d, member=_MODEL_JSON,
                                  expected=sub, found=kind)
            out.append((kind, d))
    for f in sorted(path.iterdir()):
        if f.is_file() and _is_keras_name(f):
            out.append((liver_weights_kind(f), f))
    if not out:
        raise ModuleError(
            "no liver network in the folder", path=path,
            expected="model.json, teacher/model.json, student/model.json or Keras .h5 files",
            found=sorted(p.name for p in path.iterdir())[:10] or "an empty folder",
        )
    return out


def resolve_liver_weights(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> dict[str, Path]:
    """Map user-given liver weights to ``{"teacher": path, "student": path}`` (either may be absent).

    Each path may be a weights folder (model.json + weights.pt), a folder with
    ``teacher/`` and/or ``student/`` weights folders and/or Keras files, or an
    ml4h Keras file (``.h5``, ``.keras``; teacher or student recognised from
    the file). Every returned path loads with
    :func:`ukbmri.infer.liver_net_files.load_liver_net`.

    Raises
    ------
    GitLfsPointerError
        A Keras file (or weights.pt) is a Git LFS pointer.
    ModuleError
        A path does not exist or holds no liver network; two different
        teachers (or students) were given; no path at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[str, Path] = {}
    for given in paths:
        for kind, p in _candidates(Path(given)):
            if kind in found and found[kind].resolve() != p.resolve():
                raise ModuleError(f"two {kind} networks given", path=p,
                                  expected=f"one {kind}", found=f"{found[kind]} and {p}")
            found[kind] = p
    if not found:
        raise ModuleError("no liver weights given", expected="at least one teacher or student")
    return {k: found[k] for k in _KINDS if k in found}


def liver_input_flags(net: LiverNet, z: ZipLike) -> tuple[str, ...]:
    """Flags for one zip of the network's field (a :func:`ukbmri.io.read_zip` result with pixels).

    Returns a subset of :data:`LIVER_INPUT_FLAGS` in that order (empty when the
    input looks like the network's training inputs).

    Raises
    ------
    FieldMismatchError
        The zip is not the field the network reads.
    LiverInputError
        The zip has no usable magnitude images (as building its tensor would).
    """
    if z.field != net.field:
        raise FieldMismatchError(f"the liver {net.kind} reads field {net.field}", path=z.path,
                                 expected=net.field, found=z.field)
    stack = gre_echoes(z) if z.field == GRE_FIELD else ideal_echoes(z)
    flags = []
    limit = net.training_max_stored_value
    if limit is not None and stack.images.size and float(np.max(stack.images)) > limit:
        flags.append(FLAG_OUTSIDE_TRAINING_RANGE)
    if tuple(stack.geometry.shape) != tuple(net.input_shape[1:]):
        flags.append(FLAG_PADDED_OR_CROPPED)
    if net.origin == "ml4h" and z.field == GRE_FIELD:
        if list(stack.instance_numbers) != list(range(1, len(stack.instance_numbers) + 1)):
            flags.append(FLAG_ECHO_ORDER)
    return tuple(flags)


def default_liver_weights() -> Path | None:
    """The bundled demonstration weights folder (``teacher/`` and ``student/`` inside), or None.

    These weights were trained on synthetic phantoms only (model.json
    ``demonstration_only: true``): not for clinical or UK Biobank use.
    """
    from importlib import resources

    try:
        root = resources.files("ukbmri") / "data" / "liver"
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover
        return None
    path = Path(str(root))
    if all((path / k / _WEIGHTS).is_file() and (path / k / _MODEL_JSON).is_file() for k in _KINDS):
        return path
    return None
