"""Body-composition inference: MIMIR 2D images -> calibrated predictions.

Images are ``(N, 3, 256, 256)`` uint8 arrays (MIMIR's cache format). They are
fed to the network as float32 values 0..255, unscaled, exactly like MIMIR.

Precision modes (``precision=``):

==========  ==============================================================
``fp32``    float32, NCHW; on CUDA TF32 is switched off. Reproduces the
            reference computation exactly: ask for it when bit-level
            agreement with MIMIR's NCHW float32 matters.
``fp32-cl`` float32 with channels_last memory format: the default
            (:data:`DEFAULT_PRECISION`). Same arithmetic, different kernel
            summation order; measured 1.7e-5 relative to ``fp32`` on a
            ResNet50's raw outputs (bound 1e-4) and about 1.3x faster on CPU.
``tf32``    CUDA only: TF32 tensor-core convolutions + channels_last
            (on CPU identical to ``fp32-cl``).
``bf16``    autocast to bfloat16 + channels_last. Fast on CPUs with
            AVX512-BF16/AMX and on GPUs, but measured 1e-2 (smallcnn,
            resnet18) to 1e-1 (resnet50) relative deviation.
``fp16``    autocast to float16 + channels_last (meant for CUDA).
==========  ==============================================================

Deviation is measured by ``benchmarks/bench_body_infer.py`` as
``max |y - y_fp32| / max |y_fp32|`` over the raw network outputs. Only
``fp32`` and ``fp32-cl`` stay within 1e-4 of fp32 for a ResNet50; the
reduced-precision modes are opt-in.

The library never changes ``torch.set_num_threads``; callers decide.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ukbmri.errors import TensorError
from ukbmri.infer import DEFAULT_PRECISION  # noqa: F401  (defined without torch, for the engine)
from ukbmri.infer.postprocess import postprocess
from ukbmri.models import resolve_device
from ukbmri.modules import InferenceModule

__all__ = [
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "IMAGE_SHAPE",
    "predict_images",
    "predict_raw",
    "mimir_predictions_frame",
    "prediction_columns",
]

log = logging.getLogger(__name__)

#: precision mode -> (autocast dtype or None, channels_last, allow TF32 on CUDA)
PRECISIONS: dict[str, tuple[torch.dtype | None, bool, bool]] = {
    "fp32": (None, False, False),
    "fp32-cl": (None, True, False),
    "tf32": (None, True, True),
    "bf16": (torch.bfloat16, True, False),
    "fp16": (torch.float16, True, False),
}


#: the MIMIR 2D format: W, F and FF channels, 256 x 256
IMAGE_SHAPE = (3, 256, 256)


@contextlib.contextmanager
def _tf32(device: torch.device, allow: bool) -> Iterator[None]:
    """Set CUDA's TF32 switches for the duration of the block (restored after)."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = allow
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _set_memory_format(model: nn.Module, channels_last: bool) -> None:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for p in model.parameters():
        if p.ndim == 4:
            if not p.is_contiguous(memory_format=fmt):
                model.to(memory_format=fmt)
            return


def _check_images(images: np.ndarray, shape: tuple[int, ...] | None) -> None:
    if not isinstance(images, np.ndarray):
        raise TensorError(f"images must be a numpy array, got {type(images).__name__}")
    if images.ndim != 4 or (shape is not None and images.shape[1:] != shape):
        raise TensorError("images have the wrong shape",
                          expected=f"(N, {', '.join(map(str, shape or ('C', 'H', 'W')))})",
                          found=images.shape)
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise TensorError("images must be numeric (uint8 0..255)", found=images.dtype)
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise TensorError("images hold NaN or infinite values")


def predict_raw(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str = DEFAULT_PRECISION,
    image_shape: tuple[int, ...] | None = IMAGE_SHAPE,
) -> np.ndarray:
    """Raw network outputs ``(N, out_features)`` as float32, in batches.

    ``model`` must already be on ``device`` (``None``: wherever its weights are)
    and is put in eval mode. Its memory format is switched to match the mode.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_images(images, image_shape)
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    autocast_dtype, channels_last, allow_tf32 = PRECISIONS[precision]
    model.eval()
    _set_memory_format(model, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out_features = getattr(getattr(model, "fc", None), "out_features", None)
    chunks: list[np.ndarray] = []
    with torch.inference_mode(), _tf32(dev, allow_tf32):
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            x = x.to(dev, non_blocking=True).to(torch.float32).contiguous(memory_format=fmt)
            if autocast_dtype is None:
                y = model(x)
            else:
                with torch.autocast(dev.type, dtype=autocast_dtype):
                    y = model(x)
            chunks.append(y.float().cpu().numpy())
    if not chunks:
        return np.zeros((0, out_features or 0), dtype=np.float32)
    return np.concatenate(chunks, axis=0)


def predict_images(
    module: InferenceModule,
    images: np.ndarray,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    precision: str = DEFAULT_PRECISION,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated predictions for MIMIR 2D images.

    Parameters
    ----------
    module:
        A loaded :class:`~ukbmri.modules.InferenceModule`.
    images:
        ``(N, 3, 256, 256)`` uint8 (any real dtype is accepted; values are
        used as they are, 0..255, not rescaled).
    batch_size:
        Images per forward pass.
    device:
        ``None`` (the module's device), ``"cpu"``, ``"cuda"``, ``"auto"``;
        the module's network is moved there if needed.
    precision:
        One of :data:`PRECISIONS`; default :data:`DEFAULT_PRECISION` (``"fp32-cl"``),
        ``"fp32"`` reproduces the reference exactly.

    Returns
    -------
    mean, variance:
        float64 ``(N, T)`` in the units of ``module.targets``.

    Raises
    ------
    TensorError
        Images of the wrong shape or type, or non-finite values.
    """
    if device is not None:
        dev = resolve_device(device)
        if module.device != dev:
            log.info("moving module %s to %s", module.name, dev)
            module.model = module.model.to(dev)
    raw = predict_raw(module.model, images, batch_size=batch_size, device=device, precision=precision)
    return postprocess(raw, module)


def prediction_columns(module: InferenceModule) -> list[str]:
    """MIMIR's predictions.csv header: ``name``, then mean and variance per target."""
    cols = ["name"]
    for t in module.targets:
        cols += [f"{t.name}_mean_in_{t.unit}", f"{t.name}_variance_in_{t.unit}"]
    return cols


def mimir_predictions_frame(
    names: Sequence[str], module: InferenceModule, mean: np.ndarray, var: np.ndarray
) -> pd.DataFrame:
    """A table in the layout of MIMIR's ``<out>/<module>/predictions.csv``.

    Columns: ``name``, then ``<T>_mean_in_<unit>``, ``<T>_variance_in_<unit>``
    for every target in metadata order (units verbatim, e.g. ``sex_mean_in_(male = 1)``).
    ``names`` are the image names (the zip name up to its first '.').
    """
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    n, t = len(names), module.n_targets
    if mean.shape != (n, t) or var.shape != (n, t):
        raise ValueError(f"mean and var must be ({n}, {t}), got {mean.shape} and {var.shape}")
    data = np.empty((n, 2 * t), dtype=np.float64)
    data[:, 0::2] = mean
    data[:, 1::2] = var
    frame = pd.DataFrame(data, columns=prediction_columns(module)[1:])
    frame.insert(0, "name", pd.Series(list(names), dtype=object))
    return frame
