"""Reading network weights safely: ``torch.load(weights_only=True)`` and nothing else.

A ``.pth`` / ``.pth.tar`` file is a pickle; unpickling arbitrary objects runs
arbitrary code. Weights are therefore read with PyTorch's restricted
unpickler only. A file that needs anything beyond tensors, containers,
numbers and strings (a pickled model object, a custom class, a function) is
refused with :class:`~ukbmri.errors.UnsafeModelFileError` naming the objects;
the refused code is never executed and there is no fallback to
``weights_only=False``. numpy scalars and arrays, common in training
checkpoints (a best loss, a history), are the only extra types admitted.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np
import torch

from ukbmri.errors import ModuleError, UnsafeModelFileError
from ukbmri.models import BACKBONES, build_backbone

__all__ = ["safe_torch_load", "extract_state_dict", "infer_backbone"]


def _numpy_safe_globals() -> list[Any]:
    """numpy array / scalar constructors, under the names numpy 1.x and 2.x pickle them."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    ma = core.multiarray
    out: list[Any] = [np.ndarray, np.dtype]
    for fn in (ma._reconstruct, ma.scalar):
        out += [fn, (fn, f"numpy.core.multiarray.{fn.__name__}"),
                (fn, f"numpy._core.multiarray.{fn.__name__}")]
    out += [type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"]
    return out


def _global_in_message(message: str) -> str:
    m = re.search(r"GLOBAL ([\w.]+)", message)
    return m.group(1) if m else "unknown"


def safe_torch_load(
    data: bytes,
    *,
    device: str | torch.device = "cpu",
    path: str | PathLike[str] | None = None,
    member: str | None = None,
) -> Any:
    """``torch.load`` of in-memory bytes with ``weights_only=True``.

    Parameters
    ----------
    data:
        The file's bytes.
    device:
        ``map_location``.
    path, member:
        Named in error messages (the folder and the file inside it).

    Raises
    ------
    UnsafeModelFileError
        The file needs pickled code (its globals are named in the message).
    ModuleError
        The file is corrupt, truncated or not a ``torch.save`` file.
    """

    def load() -> Any:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)

    try:
        return load()
    except pickle.UnpicklingError as exc:
        first = exc  # `except ... as` names are unbound after the block; keep it for the messages below
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
        except Exception:  # legacy (non-zip) format: the names cannot be listed up front
            unsafe = []
        if unsafe and all(name.startswith("numpy.") for name in unsafe):
            try:
                with torch.serialization.safe_globals(_numpy_safe_globals()):
                    return load()
            except pickle.UnpicklingError as second:
                first = second
        msg = str(first)
        if not (unsafe or "GLOBAL " in msg or "unsupported global" in msg.lower()):
            raise ModuleError("cannot read the weights file (corrupt, or not a torch.save file)",
                              path=path, member=member) from first
        names = ", ".join(unsafe) if unsafe else _global_in_message(msg)
        raise UnsafeModelFileError(
            "refused: loading these weights would execute pickled code (the file holds "
            f"objects other than tensors: {names}); only plain state_dict snapshots are read "
            "(torch.load with weights_only=True). Re-save the weights from a trusted environment "
            "as torch.save({'state_dict': model.state_dict()}, path)",
            path=path,
            member=member,
        ) from first
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ModuleError(f"cannot read the weights file ({type(exc).__name__}: {str(exc)[:200]})",
                          path=path, member=member) from exc


def extract_state_dict(
    obj: Any, *, path: str | PathLike[str] | None = None, member: str | None = None
) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a loaded checkpoint (``{"state_dict": ...}`` or a bare one).

    A ``module.`` prefix on every key (``nn.DataParallel``) is removed.
    """
    if isinstance(obj, Mapping) and "state_dict" in obj:
        sd = obj["state_dict"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ModuleError("the weights file holds no state_dict", path=path, member=member,
                          expected="a dict with key 'state_dict'", found=found)
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModuleError("'state_dict' is not a mapping of names to tensors", path=path, member=member)
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def infer_backbone(state_dict: Mapping[str, torch.Tensor], *, in_channels: int = 3) -> str | None:
    """The :data:`~ukbmri.models.BACKBONES` name whose keys and shapes match, or ``None``.

    Candidates are built on the ``meta`` device (no memory, no compute).
    """
    fc = state_dict.get("fc.weight")
    if fc is None or fc.ndim != 2:
        return None
    want = {k: tuple(v.shape) for k, v in state_dict.items()}
    for name in BACKBONES:
        with torch.device("meta"):
            model = build_backbone(name, int(fc.shape[0]), in_channels=in_channels)
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == want:
            return name
    return None
