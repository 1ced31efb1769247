"""Training losses for mean-variance regression with missing targets.

All losses take missing targets as NaN (or an explicit mask) and *mask* them:
a missing value contributes nothing to the loss and nothing to the gradient.
NaN targets are replaced by 0, and the predictions at masked entries by 0,
before any arithmetic, so no NaN or inf can leak into the backward pass
(``0 * NaN`` and ``0 * inf`` are NaN).

The mean-variance losses follow MIMIR (Langner et al. 2021): the network
predicts a mean ``mu`` and a log variance ``s`` per target, and the per-entry
loss is ``exp(-s) (y - mu)^2 + s``: twice the Gaussian negative log likelihood
without its constant, in standardised target units.
"""

from __future__ import annotations

import math

import torch

__all__ = ["gaussian_nll_with_gaps", "gaussian_nll_masked", "log_cosh_masked"]


def _valid_and_filled(target: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean mask of usable entries (given mask AND finite target) and the target with 0 elsewhere."""
    valid = torch.isfinite(target)
    if mask is not None:
        valid = valid & mask.to(torch.bool)
    filled = torch.where(valid, target, torch.zeros_like(target))
    return valid, filled


def _nll_terms(mean: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``exp(-s) (y - mu)^2 + s`` with mean and log variance set to 0 at invalid entries.

    Masking only the result is not enough: at a masked entry with an extreme
    log variance ``exp(-s)`` is inf, and the backward pass computes
    ``0 * inf = NaN``. Replacing the inputs first (the "double where") keeps
    every intermediate finite, so masked entries get an exact zero gradient.
    """
    zero = torch.zeros_like(mean)
    mean = torch.where(valid, mean, zero)
    logvar = torch.where(valid, logvar, zero)
    return torch.exp(-logvar) * (y - mean) ** 2 + logvar


def gaussian_nll_with_gaps(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MIMIR's multi-target mean-variance loss with gaps.

    ``L = (1 / (B T)) * sum_{b,t} m_bt * (exp(-s_bt) (y_bt - mu_bt)^2 + s_bt)``
    with ``m_bt = 0`` where ``target`` is NaN, else 1. The mean runs over *all*
    ``B * T`` entries, missing ones included (as in the reference), so a batch
    with many gaps gives a proportionally smaller loss.

    Parameters
    ----------
    mean, logvar, target:
        Tensors of the same shape, typically ``(B, T)``; ``target`` holds NaN
        where the reference value is missing.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    if not (mean.shape == logvar.shape == target.shape):
        raise ValueError(f"shape mismatch: mean {tuple(mean.shape)}, logvar {tuple(logvar.shape)}, "
                         f"target {tuple(target.shape)}")
    valid, y = _valid_and_filled(target, None)
    per_entry = torch.where(valid, _nll_terms(mean, logvar, y, valid), torch.zeros_like(mean))
    return per_entry.sum() / max(per_entry.numel(), 1)


def gaussian_nll_masked(
    mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean-variance loss for a single-output head, averaged over the *valid* entries.

    Same per-entry term as :func:`gaussian_nll_with_gaps`
    (``exp(-s) (y - mu)^2 + s``), but the mean is over entries where ``mask``
    is true and the target is finite (``mask=None``: finite targets). A batch
    with no valid entry gives 0 (with a zero gradient).
    """
    if not (mean.shape == logvar.shape == target.shape):
        raise ValueError(f"shape mismatch: mean {tuple(mean.shape)}, logvar {tuple(logvar.shape)}, "
                         f"target {tuple(target.shape)}")
    valid, y = _valid_and_filled(target, mask)
    per_entry = torch.where(valid, _nll_terms(mean, logvar, y, valid), torch.zeros_like(mean))
    return per_entry.sum() / valid.sum().clamp(min=1)


def _log_cosh(x: torch.Tensor) -> torch.Tensor:
    """``log(cosh(x)) = |x| + log1p(exp(-2|x|)) - log 2``: no overflow for large ``|x|``."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def log_cosh_masked(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Log-cosh regression loss (ml4h's student loss), averaged over the valid entries.

    Valid entries: ``mask`` true (``None``: all) and a finite target. Computed
    as ``|d| + log1p(exp(-2|d|)) - log 2`` with ``d = pred - target``, which
    is exact and never overflows (``cosh`` itself overflows for ``|d| > ~89``
    in float32). No valid entry gives 0.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: pred {tuple(pred.shape)}, target {tuple(target.shape)}")
    valid, y = _valid_and_filled(target, mask)
    d = torch.where(valid, pred - y, torch.zeros_like(pred))
    per_entry = torch.where(valid, _log_cosh(d), torch.zeros_like(pred))
    return per_entry.sum() / valid.sum().clamp(min=1)
