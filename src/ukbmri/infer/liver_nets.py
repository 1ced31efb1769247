"""Liver-fat networks (ml4h teacher / student in PyTorch): inference.

:func:`predict_liver` runs a :class:`~ukbmri.infer.liver_net_files.LiverNet`
(loaded with :func:`load_liver_net` from a ukbmri folder or an ml4h Keras file,
:mod:`ukbmri.infer.liver_net_files`). :func:`resolve_liver_weights` maps what a
user names on the command line to ``{"teacher": path, "student": path}`` and
:func:`liver_input_flags` says when an input differs from what the network was
trained on (:mod:`ukbmri.infer.liver_weights`). Those names are re-exported here.
docs/ml4h.md documents the settings and flags.

Inference
---------
:func:`predict_liver` takes raw magnitudes ``(N, C, H, W)`` (as built by
:func:`ukbmri.preprocess.liver_tensors.gre_tensor` / ``ideal_tensor``),
applies the network's input normalisation (ml4h's per-sample ``ZeroMeanStd1``
unless its settings say ``"none"``) and returns liver fat in % and, for
a mean-variance network, the calibrated variance in %^2. A sample that cannot
be normalised (constant, NaN/inf) raises :class:`~ukbmri.errors.TensorError`
naming the sample; the engine calls :func:`prepare_liver_input` per
participant (so a bad participant becomes a ledger row) and then
:func:`predict_prepared` on the batch of good ones.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ukbmri.errors import TensorError
from ukbmri.infer.liver_net_files import (
    FORMAT,
    INPUT_NORMALISATIONS,
    KINDS,
    MODEL_JSON,
    ML4H_TRAINING_MAX_STORED_VALUE,
    WEIGHTS,
    LiverNet,
    build_liver_model,
    jsonable,
    load_liver_net,
    save_liver_net,
    write_liver_net_files,
)
from ukbmri.models import resolve_device
from ukbmri.preprocess.liver_tensors import zero_mean_std1

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
    "liver_weights_kind",
    "resolve_liver_weights",
    "liver_input_flags",
    "LIVER_INPUT_FLAGS",
    "normalise_liver_input",
    "save_liver_net",
    "write_liver_net_files",
    "prepare_liver_input",
    "predict_prepared",
    "predict_liver",
    "default_liver_weights",
    "jsonable",
]


# --------------------------------------------------------------------------- inference
def normalise_liver_input(a: np.ndarray, normalisation: str, *, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Apply one of :data:`INPUT_NORMALISATIONS` to one sample; float32 out.

    ``"none"`` passes the raw values through (refusing NaN/inf, as ZeroMeanStd1 does).
    """
    if normalisation == "zero_mean_std1":
        return zero_mean_std1(a, path=path)
    if normalisation == "none":
        out = np.asarray(a, dtype=np.float32)
        bad = ~np.isfinite(out)
        if bad.any():
            raise TensorError("tensor has non-finite values", path=path, expected="finite values",
                              found=f"{int(bad.sum())} NaN/inf")
        return out
    raise ValueError(f"input normalisation must be one of {INPUT_NORMALISATIONS}, not {normalisation!r}")


def prepare_liver_input(net: LiverNet, tensor: np.ndarray, *, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """One raw ``(C, H, W)`` tensor -> the network's float32 input (its input normalisation applied).

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
    return normalise_liver_input(a, net.input_normalisation, path=path)


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

    Each sample is normalised on its own (the network's input normalisation), batches of
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


# resolving weights paths and flagging inputs live in their own module (re-exported here)
from ukbmri.infer.liver_weights import (  # noqa: E402
    LIVER_INPUT_FLAGS,
    default_liver_weights,
    liver_input_flags,
    liver_weights_kind,
    resolve_liver_weights,
)
