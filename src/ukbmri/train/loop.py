"""The training loop for mean-variance body networks (MIMIR's recipe).

Adam, a fixed number of iterations, the learning rate divided by 10 at
``lr_step_at`` (default 80 % of the iterations), random integer translations
with edge replication as the only augmentation, and the masked
mean-variance loss. Images go in as float32 0..255, unscaled.

Batches: *epoch shuffles*. The sample indices form an endless stream of
random permutations (one per epoch, drawn from ``generator``) cut into
consecutive batches, so every image is used equally often and a batch may
straddle two epochs; nothing is dropped. The batch size is capped at the
number of images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ukbmri.models import resolve_device, split_mean_logvar
from ukbmri.train.data import random_translate
from ukbmri.train.losses import gaussian_nll_with_gaps

__all__ = ["FitResult", "fit", "predict_raw", "batch_indices"]

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(eq=False)
class FitResult:
    """A trained model (in eval mode) and its per-iteration training loss."""

    model: nn.Module
    losses: np.ndarray


def _rows(n: int, indices: np.ndarray | None) -> torch.Tensor:
    """All row numbers, or the given ones as a contiguous int64 tensor."""
    if indices is None:
        return torch.arange(n)
    return torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless batches of indices from consecutive random permutations of ``range(n)``."""
    if n <= 0:
        raise ValueError("cannot draw batches from an empty training set")
    bs = min(batch_size, n)
    buf = torch.empty(0, dtype=torch.long)
    while True:
        while buf.numel() < bs:
            buf = torch.cat([buf, torch.randperm(n, generator=generator)])
        yield buf[:bs]
        buf = buf[bs:]


def fit(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    *,
    iterations: int,
    batch_size: int = 32,
    lr: float = 5e-5,
    lr_step_at: int | None = None,
    lr_factor: float = 0.1,
    max_shift: int = 16,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    loss_fn: LossFn = gaussian_nll_with_gaps,
    progress: Callable[[int], None] | None = None,
    indices: np.ndarray | None = None,
) -> FitResult:
    """Train ``model`` in place on standardised targets.

    Parameters
    ----------
    model:
        Maps ``(B, 3, H, W)`` float32 (0..255) to ``(B, 2T)`` (mean, log
        variance interleaved per target; see :func:`ukbmri.models.split_mean_logvar`).
    images:
        ``(N, 3, H, W)`` uint8 (kept on the CPU; batches are moved to ``device``).
    targets:
        ``(N, T)`` standardised targets, NaN where missing.
    iterations:
        Number of optimiser steps.
    lr_step_at:
        Iteration at which the learning rate is multiplied by ``lr_factor``;
        default ``int(0.8 * iterations)`` (MIMIR: 8,000 of 10,000).
    max_shift:
        Translation augmentation range in pixels (0 disables it).
    generator:
        CPU ``torch.Generator`` for batch order and shifts.
    progress:
        Called with 1 after every iteration.
    indices:
        Train on these rows only (e.g. the training folds), without copying
        the image array; default all rows.

    Returns
    -------
    FitResult
        The model (moved to ``device``, eval mode) and the loss history.

    Raises
    ------
    FloatingPointError
        When the loss becomes non-finite (the message names the iteration).
    """
    dev = resolve_device(device)
    images_t = torch.as_tensor(images)
    targets_t = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    if images_t.ndim != 4 or targets_t.ndim != 2 or images_t.shape[0] != targets_t.shape[0]:
        raise ValueError(f"need (N, C, H, W) images and (N, T) targets, "
                         f"got {tuple(images_t.shape)} and {tuple(targets_t.shape)}")
    rows = _rows(targets_t.shape[0], indices)
    if rows.numel() == 0:
        raise ValueError("no training rows")
    if lr_step_at is None:
        lr_step_at = int(0.8 * iterations)
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[lr_step_at], gamma=lr_factor)
    losses = np.empty(iterations, dtype=np.float64)
    batches = batch_indices(rows.numel(), batch_size, generator)
    # Dropout (and any other layer) draws from torch's global RNG: seed it from `generator`
    # inside fork_rng, so training is reproducible and the caller's global RNG state is untouched.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        _steps(model, opt, sched, images_t, targets_t, rows, batches, losses, max_shift, generator, dev, loss_fn,
               progress)
    model.eval()
    log.debug("fit: %d iterations, loss %.4g -> %.4g", iterations, losses[:10].mean() if iterations else np.nan,
              losses[-10:].mean() if iterations else np.nan)
    return FitResult(model, losses)


def _steps(model, opt, sched, images_t, targets_t, rows, batches, losses, max_shift, generator, dev, loss_fn,
           progress) -> None:
    """The optimisation loop proper (see :func:`fit`)."""
    n_targets = targets_t.shape[1]
    for it in range(losses.size):
        idx = rows.index_select(0, next(batches))
        # index_select rather than images_t[idx]: advanced indexing goes through the intra-op
        # thread pool, which stalls badly on a busy machine
        x = random_translate(images_t.index_select(0, idx), max_shift, generator).to(dev, torch.float32)
        y = targets_t.index_select(0, idx).to(dev)
        mean, logvar = split_mean_logvar(model(x), n_targets)
        loss = loss_fn(mean, logvar, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at iteration {it}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses[it] = loss.item()
        if progress is not None:
            progress(1)


@torch.no_grad()
def predict_raw(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Raw network outputs ``(N, 2T)`` (standardised mean, log variance) in eval mode, no augmentation.

    ``indices``: predict these rows only (in that order), without copying the image array.
    """
    dev = resolve_device(device)
    model.to(dev).eval()
    images_t = torch.as_tensor(images)
    rows = _rows(images_t.shape[0], indices)
    outs = [
        model(images_t.index_select(0, rows[i : i + batch_size]).to(dev, torch.float32)).float().cpu()
        for i in range(0, rows.numel(), batch_size)
    ]
    return torch.cat(outs).numpy().astype(np.float64) if outs else np.empty((0, 0))
