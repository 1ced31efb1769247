"""A batched Levenberg-Marquardt solver: one small least-squares problem per voxel.

Every voxel has its own damping factor; a step is accepted per voxel when it lowers
that voxel's cost. Bounds are handled by projection (clipping) of each trial step.
All voxels advance together with batched torch linear algebra, on CPU or CUDA.
"""

from __future__ import annotations

from collections.abc import Callable

import logging

import torch

log = logging.getLogger(__name__)

__all__ = ["levenberg_marquardt"]

ResJac = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]


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
        ``(k, p)``.
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
    r, jac = fun(x, None)
    cost = (r * r).sum(dim=1)
    n, p = x.shape
    lam = torch.full((n,), lam0, dtype=x.dtype, device=x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    eye = torch.eye(p, dtype=x.dtype, device=x.device)
    for it in range(max_iter):
        idx = torch.nonzero(active).squeeze(1)
        log.debug("LM iteration %d: %d active", it, idx.numel())
        if idx.numel() == 0:
            break
        ja, ra, xa = jac[idx], r[idx], x[idx]
        jtj = torch.einsum("nmi,nmj->nij", ja, ja)
        g = (ja.transpose(1, 2) @ ra.unsqueeze(2)).squeeze(2)
        diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-12)
        a = jtj + (lam[idx, None, None] * diag[:, :, None]) * eye + 1e-12 * eye
        step = torch.linalg.solve(a, -g.unsqueeze(2)).squeeze(2)
        lo = lower if lower.dim() == 1 else lower[idx]
        hi = upper if upper.dim() == 1 else upper[idx]
        xn = torch.clamp(xa + step, lo, hi)
        rn, jn = fun(xn, idx)
        cn = (rn * rn).sum(dim=1)
        better = torch.isfinite(cn) & (cn < cost[idx])
        rel = (cost[idx] - cn) / cost[idx].clamp_min(1e-300)
        bi = idx[better]
        x[bi] = xn[better]
        r[bi] = rn[better]
        jac[bi] = jn[better]
        cost[bi] = cn[better]
        lam[bi] = torch.clamp(lam[bi] / 5.0, min=1e-9)
        lam[idx[~better]] = lam[idx[~better]] * 10.0
        # converged: accepted with a tiny relative improvement, or damping blew up
        done = torch.zeros_like(better)
        done |= better & (rel < tol)
        done |= (~better) & (lam[idx] > 1e6)
        step_small = (step.abs() <= tol * (xa.abs() + 1e-6)).all(dim=1)
        done |= step_small
        active[idx[done]] = False
    return x, cost
