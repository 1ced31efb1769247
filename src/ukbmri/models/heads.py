"""Mean-variance regression heads: how a ``(B, 2T)`` output is read.

MIMIR views the ``fc`` output as ``(B, T, 2)``: for target ``t`` the
columns ``2t`` and ``2t + 1`` are the predicted mean and the log variance,
both in standardised units (interleaved, not two halves).
"""

from __future__ import annotations

import torch

__all__ = ["split_mean_logvar"]


def split_mean_logvar(out: torch.Tensor, n_targets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(B, 2T)`` network outputs into mean and log variance, each ``(B, T)``.

    Parameters
    ----------
    out:
        Network output of shape ``(B, 2 * n_targets)``.
    n_targets:
        Number of regression targets ``T``.

    Returns
    -------
    mean, logvar:
        Views ``out.view(B, T, 2)[..., 0]`` and ``[..., 1]`` (MIMIR's layout).

    Raises
    ------
    ValueError
        When ``out`` is not ``(B, 2 * n_targets)``.
    """
    if out.ndim != 2 or out.shape[1] != 2 * n_targets:
        raise ValueError(
            f"expected network output of shape (B, {2 * n_targets}) for {n_targets} targets, "
            f"found {tuple(out.shape)}"
        )
    pairs = out.reshape(out.shape[0], n_targets, 2)
    return pairs[:, :, 0], pairs[:, :, 1]
