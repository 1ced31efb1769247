"""Spatial choice between the per-voxel B0 candidates: the fat-water swap guard.

With echoes at a uniform spacing ``dTE`` the complex residual is periodic in the field
``psi`` with period ``P = 1 / dTE``, and each voxel's residual curve has (typically) two
deep minima: the right one and a "swapped" one shifted by about the fat-water frequency
difference (mod P), where water and fat exchange roles. Voxel-wise the two can be nearly
equally good; the physical field, however, is continuous inside tissue. Fields are
compared as phasors ``exp(i 2 pi psi / P)``, so wrapping needs no special care.

:func:`select_candidates` works on *regions* (a graph method, vectorised):

1. **Regions.** Neighbouring voxels whose best candidates agree (wrapped difference below
   ``P / 8``) are joined; connected components are regions that are internally consistent.
   A region can only be kept as it is or *flipped* as a whole (every voxel to its second
   candidate), which preserves its internal consistency.
2. **Energy.** Flipping costs the region's extra residual energy (data term) plus the
   internal edges that a flip would break; every edge between two regions costs
   ``lam * min(E_u, E_v)`` (signal energies) when the two chosen fields disagree. Edges
   through low signal therefore cost little, so separate organs (liver and heart across
   the diaphragm, tissue across lung or bowel gas) keep their own fields, while regions in
   firm contact must agree.
3. **Minimisation.** Iterated conditional modes at the region level, applying at each
   sweep all improving flips that are local maxima of the gain among their neighbours
   (an independent set, so the energy decreases monotonically).
4. **Clean-up.** Each voxel then takes the candidate nearest (in phasor distance) to a
   small-scale normalised-convolution estimate of the field around it, which repairs
   isolated noisy voxels.

The field is then made continuous by least-squares phase unwrapping (DCT Poisson
solver) of a smooth version of the chosen field and the congruence operation
(:func:`unwrap_to_smooth`).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph

__all__ = ["select_candidates", "unwrap_to_smooth", "ls_unwrap", "smooth_phasor"]

log = logging.getLogger(__name__)


def _wrapped_distance(a: np.ndarray, b: np.ndarray, period: float) -> np.ndarray:
    """|a - b| wrapped to [0, P/2]; ``inf`` where either is NaN."""
    d = np.abs((a - b + period / 2) % period - period / 2)
    return np.where(np.isfinite(d), d, np.inf)


def smooth_phasor(values: np.ndarray, weight: np.ndarray, sigma_vox: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised convolution of a complex field; returns (smoothed, weight density)."""
    kw = dict(sigma=sigma_vox, mode="constant", truncate=3.0)
    wz = weight * values
    num = ndi.gaussian_filter(wz.real, **kw) + 1j * ndi.gaussian_filter(wz.imag, **kw)
    den = ndi.gaussian_filter(weight, **kw)
    return num / np.maximum(den, 1e-30), den


def _edges(valid: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Flat index pairs (u, v) of 6-neighbours that are both valid."""
    flat = np.arange(valid.size).reshape(valid.shape)
    out = []
    for ax in range(valid.ndim):
        if valid.shape[ax] < 2:
            continue
        lo = [slice(None)] * valid.ndim
        hi = [slice(None)] * valid.ndim
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        both = valid[tuple(lo)] & valid[tuple(hi)]
        out.append((flat[tuple(lo)][both], flat[tuple(hi)][both]))
    return out


def _region_flip(psi0, psi1, delta, energy, valid, period, tol, lam, max_sweeps=100):
    """Region-level flip decision; returns per-voxel label (0 keep best, 1 second)."""
    pairs = _edges(valid)
    if not pairs:
        return np.zeros(valid.shape, dtype=np.int8)
    u = np.concatenate([p[0] for p in pairs])
    v = np.concatenate([p[1] for p in pairs])
    p0, p1, e = psi0.ravel(), psi1.ravel(), energy.ravel()
    w = lam * np.minimum(e[u], e[v])
    c = {}
    for a, pa in ((0, p0), (1, p1)):
        for b, pb in ((0, p0), (1, p1)):
            c[a, b] = _wrapped_distance(pa[u], pb[v], period) < tol
    # regions: components of the "best candidates agree" graph
    n = valid.size
    g = sparse.coo_matrix((np.ones(int(c[0, 0].sum())), (u[c[0, 0]], v[c[0, 0]])), shape=(n, n))
    n_comp, lab = csgraph.connected_components(g, directed=False)
    lab = lab.ravel()
    # compact labels over valid voxels only
    vflat = valid.ravel()
    uniq, region = np.unique(lab[vflat], return_inverse=True)
    reg = np.full(n, -1)
    reg[vflat] = region
    n_reg = uniq.size
    data = np.bincount(reg[vflat], weights=delta.ravel()[vflat], minlength=n_reg)
    ru, rv = reg[u], reg[v]
    same = ru == rv
    internal = np.bincount(ru[same], weights=w[same] * ~c[1, 1][same], minlength=n_reg)
    flip_cost = data + internal
    # cross-region pair costs, oriented so that a < b
    cu, cv = ru[~same], rv[~same]
    wc = w[~same]
    cost = {k: wc * ~c[k][~same] for k in c}
    swap = cu > cv
    a_, b_ = np.where(swap, cv, cu), np.where(swap, cu, cv)
    c01 = np.where(swap, cost[1, 0], cost[0, 1])
    c10 = np.where(swap, cost[0, 1], cost[1, 0])
    key = a_.astype(np.int64) * n_reg + b_
    ukey, inv = np.unique(key, return_inverse=True)
    pa, pb = ukey // n_reg, ukey % n_reg
    C = np.stack([np.bincount(inv, weights=x, minlength=ukey.size)
                  for x in (cost[0, 0], c01, c10, cost[1, 1])])  # (4, pairs): 00, 01, 10, 11
    f = np.zeros(n_reg, dtype=np.int8)
    for _ in range(max_sweeps):
        fa, fb = f[pa], f[pb]
        # cost of each label of region a given b's label, and vice versa
        ca0 = np.where(fb == 0, C[0], C[1])
        ca1 = np.where(fb == 0, C[2], C[3])
        cb0 = np.where(fa == 0, C[0], C[2])
        cb1 = np.where(fa == 0, C[1], C[3])
        cost0 = np.bincount(pa, ca0, n_reg) + np.bincount(pb, cb0, n_reg)
        cost1 = np.bincount(pa, ca1, n_reg) + np.bincount(pb, cb1, n_reg) + flip_cost
        gain = np.where(f == 0, cost0 - cost1, cost1 - cost0)
        want = gain > 1e-9 * (np.abs(cost0) + np.abs(cost1) + 1e-30)
        if not want.any():
            break
        g = np.where(want, gain, -np.inf)
        nb_max = np.full(n_reg, -np.inf)
        np.maximum.at(nb_max, pa, g[pb])
        np.maximum.at(nb_max, pb, g[pa])
        apply = want & (g > nb_max)
        if not apply.any():
            apply = np.zeros(n_reg, dtype=bool)
            apply[int(np.argmax(g))] = True
        f[apply] = 1 - f[apply]
    out = np.zeros(n, dtype=np.int8)
    out[vflat] = f[reg[vflat]]
    log.debug("region flip: %d regions, %d flipped", n_reg, int(f.sum()))
    return out.reshape(valid.shape)


def select_candidates(
    cand_psi: np.ndarray,
    cand_res: np.ndarray,
    energy: np.ndarray,
    mask: np.ndarray,
    period_hz: float,
    spacing_mm: tuple[float, float, float],
    *,
    lam: float = 0.05,
    tol_fraction: float = 0.125,
    cleanup_mm: tuple[float, ...] = (6.0, 3.0),
    n_iter: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose one B0 candidate per voxel so that the field is consistent.

    Parameters
    ----------
    cand_psi:
        ``(M, x, y, z)`` candidate fields (Hz, any wrap), sorted by residual (index 0 the
        best); NaN where absent.
    cand_res:
        ``(M, x, y, z)`` normalised residuals (residual energy / signal energy).
    energy:
        ``(x, y, z)`` signal energy ``sum_n |S_n|^2``.
    mask:
        ``(x, y, z)`` voxels that take part.
    period_hz:
        The residual's period ``1 / dTE``.
    spacing_mm:
        Voxel size, to convert ``cleanup_mm`` to voxels.
    lam:
        Weight of a disagreeing edge relative to the signal energy of its weaker voxel.

    Returns
    -------
    sel, smooth:
        ``(x, y, z)`` index of the chosen candidate, and a smooth field phasor defined
        everywhere (for unwrapping).
    """
    m_cand = cand_psi.shape[0]
    valid = mask & np.isfinite(cand_psi[0])
    e = np.where(valid, energy, 0.0)
    e = e / max(float(e.max()), 1e-30)
    res = np.where(np.isfinite(cand_res), cand_res, np.inf)
    psi1 = cand_psi[1] if m_cand > 1 else np.full(mask.shape, np.nan)
    res1 = res[1] if m_cand > 1 else np.full(mask.shape, np.inf)
    r0 = np.where(np.isfinite(res[0]), res[0], 0.0)
    has_alt = np.isfinite(res1)
    delta = np.where(has_alt, (np.where(has_alt, res1, 0.0) - r0) * e, e)  # no alternative: flipping costs all
    tol = tol_fraction * period_hz
    flip = _region_flip(cand_psi[0], psi1, np.where(valid, delta, 0.0), e, valid, period_hz, tol, lam)
    sel = np.where(valid, flip, 0).astype(np.int64)
    # small-scale clean-up: nearest candidate to the local field
    z = np.exp(2j * np.pi * np.nan_to_num(cand_psi) / period_hz)
    absent = ~np.isfinite(cand_psi)
    sp = np.asarray(spacing_mm, dtype=float)
    for scale in cleanup_mm:
        sigma = tuple(float(max(scale / s, 0.7)) if n > 1 else 0.0 for s, n in zip(sp, mask.shape))
        for _ in range(n_iter):
            zsel = np.take_along_axis(z, sel[None], axis=0)[0]
            zs, _ = smooth_phasor(zsel, e * valid, sigma)
            u = zs / np.maximum(np.abs(zs), 1e-30)
            cost = 1.0 - (z * np.conj(u)[None]).real
            cost = np.where(absent, np.inf, cost)
            new = np.where(valid, np.argmin(cost, axis=0), sel)
            changed = int((new != sel).sum())
            sel = new
            if changed == 0:
                break
    zsel = np.take_along_axis(z, sel[None], axis=0)[0]
    fine = tuple(float(max(3.0 / s, 0.7)) if n > 1 else 0.0 for s, n in zip(sp, mask.shape))
    coarse = tuple(float(max(40.0 / s, 0.7)) if n > 1 else 0.0 for s, n in zip(sp, mask.shape))
    zf, dens = smooth_phasor(zsel, e * valid, fine)
    zc, _ = smooth_phasor(zsel, e * valid, coarse)
    ref = float(np.percentile(dens[valid], 50)) if valid.any() else 0.0
    smooth = np.where(dens > 0.05 * max(ref, 1e-30), zf, zc)
    return sel, smooth


def ls_unwrap(phase: np.ndarray) -> np.ndarray:
    """Unweighted least-squares phase unwrapping (Ghiglia & Romero) of a 2D/3D array via the DCT."""
    def wrap(a: np.ndarray) -> np.ndarray:
        return (a + np.pi) % (2 * np.pi) - np.pi

    rho = np.zeros_like(phase, dtype=float)
    for ax in range(phase.ndim):
        if phase.shape[ax] < 2:
            continue
        d = wrap(np.diff(phase, axis=ax))
        pad_lo = [(0, 0)] * phase.ndim
        pad_hi = [(0, 0)] * phase.ndim
        pad_lo[ax] = (1, 0)
        pad_hi[ax] = (0, 1)
        rho += np.pad(d, pad_hi) - np.pad(d, pad_lo)
    rho_hat = sfft.dctn(rho, type=2, norm="ortho")
    denom = np.zeros(phase.shape)
    for ax, n in enumerate(phase.shape):
        k = np.arange(n)
        shape = [1] * phase.ndim
        shape[ax] = n
        denom = denom + (2.0 * np.cos(np.pi * k / n) - 2.0).reshape(shape)
    denom.flat[0] = 1.0
    sol_hat = rho_hat / denom
    sol_hat.flat[0] = 0.0
    return sfft.idctn(sol_hat, type=2, norm="ortho")


def unwrap_to_smooth(psi: np.ndarray, smooth_phasor_field: np.ndarray, period_hz: float, mask: np.ndarray) -> np.ndarray:
    """Shift each voxel's field by whole periods onto the unwrapped smooth field.

    The smooth phasor field is unwrapped by least squares; ``psi`` (any wrap) then moves
    by ``k P`` to the nearest value. Finally the whole map shifts by a whole number of
    periods so that its median inside ``mask`` lies in ``[-P/2, P/2)``.
    """
    wrapped = np.angle(smooth_phasor_field)
    unwrapped = ls_unwrap(wrapped)
    # the least-squares solution is defined up to a constant: make it congruent to the data
    sel = mask if mask.any() else np.ones(mask.shape, bool)
    d = np.angle(np.exp(1j * (wrapped - unwrapped)))[sel]
    unwrapped = unwrapped + float(np.angle(np.mean(np.exp(1j * d))))
    smooth = unwrapped * period_hz / (2 * np.pi)
    out = psi + period_hz * np.round((smooth - psi) / period_hz)
    if mask.any():
        med = float(np.median(out[mask]))
        out = out - period_hz * np.round(med / period_hz)
    return out
