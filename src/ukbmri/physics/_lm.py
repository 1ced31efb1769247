"""A batched Levenberg-Marquardt solver: one small least-squares problem per voxel.

Every voxel has its own damping factor; a step is accepted per voxel when it lowers
that voxel's cost. Bounds are handled by projection (clipping) of each trial step.
All voxels advance together with batched torch linear algebra, on CPU or CUDA.

A model gives residuals and Jacobian (``fun(x, idx) -> (r, J)``); a model that can form
the normal equations more cheaply than through its Jacobian (few parameters, many
residuals with shared structure) may also have a method
``normal_equations(x, idx) -> (cost, J^T J, J^T r)``, which the solver then uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

__all__ = ["levenberg_marquardt"]

ResJac = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


def _normal_equations(fun: ResJac, x: torch.Tensor, idx: torch.Tensor | None):
    """``(sum r^2, J^T J, J^T r)`` per row at ``x``."""
    normal = getattr(fun, "normal_equations", None)
    if normal is not None:
        return normal(x, idx)
    r, jac = fun(x, idx)
    return (r * r).sum(dim=1), torch.einsum("nmi,nmj->nij", jac, jac), (jac.transpose(1, 2) @ r.unsqueeze(2)).squeeze(2)


def levenberg_marquardt(
    fun: ResJac,
    x0: torch.Tensor,
    *,
    lower: torch.Tensor,
    upper: torch.Tensor,
    max_iter: int = 30,
    lam0: float = 1e-3,
    tol: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``sum(r**2)`` per row of ``x0``.

    Parameters
    ----------
    fun:
        ``fun(x, idx) -> (r, J)``: residuals ``r`` ``(k, m)`` and Jacobian ``J`` ``(k, m, p)``
        for the rows ``idx`` (a LongTensor, or ``None`` for all rows) at parameters ``x``
        ``(k, p)`` (or a model with ``normal_equations``, see the module docstring).
    x0:
        ``(N, p)`` starting parameters (float64 recommended).
    lower, upper:
        ``(p,)`` or ``(N, p)`` bounds.

    Returns
    -------
    x, cost:
        The parameters and the final ``sum(r**2)`` per row.
    """
    x = torch.clamp(x0, lower, upper)
    cost, jtj, g = _normal_equations(fun, x, None)
    n, p = x.shape
    lam = torch.full((n,), lam0, dtype=x.dtype, device=x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    eye = torch.eye(p, dtype=x.dtype, device=x.device)
    for it in range(max_iter):
        idx = torch.nonzero(active).squeeze(1)
        log.debug("LM iteration %d: %d active", it, idx.numel())
        if idx.numel() == 0:
            break
        full = idx.numel() == n  # every row active: no gathers, no scatters
        if full:
            xa, ca, aa, ga, la = x, cost, jtj, g, lam
        else:
            xa, ca, aa, ga, la = x[idx], cost[idx], jtj[idx], g[idx], lam[idx]
        diag = torch.diagonal(aa, dim1=1, dim2=2).clamp_min(1e-12)
        a = aa + (la[:, None, None] * diag[:, :, None]) * eye + 1e-12 * eye
        step = torch.linalg.solve(a, -ga.unsqueeze(2)).squeeze(2)
        lo = lower if lower.dim() == 1 or full else lower[idx]
        hi = upper if upper.dim() == 1 or full else upper[idx]
        xn = torch.clamp(xa + step, lo, hi)
        cn, an, gn = _normal_equations(fun, xn, None if full else idx)
        better = torch.isfinite(cn) & (cn < ca)
        rel = (ca - cn) / ca.clamp_min(1e-300)
        step_small = (step.abs() <= tol * (xa.abs() + 1e-6)).all(dim=1)
        la = torch.where(better, torch.clamp(la / 5.0, min=1e-9), la * 10.0)
        b1 = better[:, None]
        xa, ga, ca = torch.where(b1, xn, xa), torch.where(b1, gn, ga), torch.where(better, cn, ca)
        aa = torch.where(b1[:, :, None], an, aa)
        if full:
            x, cost, jtj, g, lam = xa, ca, aa, ga, la
        else:
            x.index_copy_(0, idx, xa)
            cost.index_copy_(0, idx, ca)
            jtj.index_copy_(0, idx, aa)
            g.index_copy_(0, idx, ga)
            lam.index_copy_(0, idx, la)
        # converged: accepted with a tiny relative improvement, or damping blew up
        done = (better & (rel < tol)) | ((~better) & (la > 1e6)) | step_small
        active[idx[done]] = False
    return x, cost
