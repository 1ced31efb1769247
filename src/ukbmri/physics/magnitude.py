"""Magnitude-based fat-water separation: multi-peak fat and a single R2*, fitted to |S|.

Model per voxel and echo ``n``::

    |S_n| = |W + F c_n| exp(-R2* t_n)          c_n = sum_p a_p exp(i 2 pi f_p t_n)

with ``W, F >= 0`` and ``0 <= R2* <= r2star_max``. Phase errors (eddy currents, B0) do
not enter, which makes the method robust, but ``W`` and ``F`` are nearly interchangeable
in ``|.|``: above 50 % fat fraction the model has a second, almost equally good
solution. The fit therefore **starts on one branch** (default: water-dominant, the
right one for liver) and lets Levenberg-Marquardt refine from there.

Algorithm (vectorised over all voxels, torch on CPU or CUDA):

1. variable projection on a grid: for each (fat fraction, R2*) candidate the shape
   ``m_n = |(1 - ff) + ff c_n| exp(-R2* t_n)`` is fixed and the amplitude follows in
   closed form, so the best grid point per voxel is one matrix product and an argmax;
2. batched Levenberg-Marquardt on ``(W, F, R2*)`` from that start, with bounds.

Noise floor: magnitude data are Rician, so at late echoes of low-signal voxels the data
sit above the model and R2* is underestimated. With ``noise_sigma`` (a number, or
``"auto"`` to estimate it from the background outside the mask) the model is replaced by
the Rician mean ``E|S| = sigma sqrt(pi/2) L_{1/2}(-A^2 / 2 sigma^2)``, which removes that
bias; with ``None`` (default) the plain model is used.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ukbmri.errors import FitInputError
from ukbmri.physics._lm import levenberg_marquardt
from ukbmri.physics.multiecho import FatWaterMaps, MultiEcho, check_mask, ff_from_amplitudes, resolve_device
from ukbmri.physics.spectrum import SIX_PEAK, FatSpectrum, fat_phasor

__all__ = ["fit_magnitude", "estimate_noise_sigma", "rician_mean"]

log = logging.getLogger(__name__)

_BRANCHES = {"water": (0.0, 0.5), "fat": (0.5, 1.0), "best": None, "local": None}
#: window (voxels, in-plane) of the ``branch="local"`` vote
LOCAL_WINDOW = 7


def _r2_grid(r2star_max: float) -> np.ndarray:
    g = np.concatenate([np.arange(0, 100, 5.0), np.arange(100, 300, 15.0), np.arange(300, r2star_max + 1, 50.0)])
    return g[g <= r2star_max]


def rician_mean(a: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rician mean ``E|S|`` of true amplitude ``a`` with noise ``sigma`` and its derivative dE/da."""
    c = sigma * math.sqrt(math.pi / 2.0)
    y = a * a / (2.0 * sigma * sigma)
    u = y / 2.0
    i0, i1 = torch.special.i0e(u), torch.special.i1e(u)
    e = c * ((1.0 + y) * i0 + y * i1)
    de = c * 0.5 * (i0 + i1) * a / (sigma * sigma)
    return e, de


def estimate_noise_sigma(magnitude: np.ndarray, mask: np.ndarray, *, min_samples: int = 500) -> float | None:
    """Rayleigh noise level from background voxels (outside ``mask``, all echoes).

    ``sigma = median / sqrt(2 ln 2)`` of the non-zero background magnitudes. ``None``
    when there is too little background, or it was zeroed by the scanner.
    """
    bg = np.asarray(magnitude)[~mask]
    bg = bg[np.isfinite(bg) & (bg > 0)]
    if bg.size < min_samples:
        return None
    return float(np.median(bg) / math.sqrt(2.0 * math.log(2.0)))


def _local_majority(votes: np.ndarray, msk: np.ndarray) -> np.ndarray:
    """Per mask voxel: whether most mask voxels of its in-plane window vote True (ties: its own vote)."""
    from scipy import ndimage as ndi

    vol = np.zeros(msk.shape, dtype=np.float64)
    vol[msk] = votes
    size = (LOCAL_WINDOW, LOCAL_WINDOW, 1)
    share = ndi.uniform_filter(vol, size=size, mode="constant") / np.maximum(
        ndi.uniform_filter(msk.astype(np.float64), size=size, mode="constant"), 1e-12)
    out = share[msk] > 0.5
    tie = np.isclose(share[msk], 0.5)
    out[tie] = votes[tie]
    return out


class _MagModel:
    """Residuals and Jacobian of the magnitude model for a batch of voxels."""

    def __init__(self, s: torch.Tensor, te: torch.Tensor, c: torch.Tensor, sigma: float | None):
        self.s, self.te, self.c, self.sigma = s, te, c, sigma
        self.cr, self.c2 = c.real, (c.abs() ** 2)

    def amplitude(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        w, f, r2 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        g2 = w * w + f * f * self.c2 + 2.0 * w * f * self.cr
        g = torch.sqrt(g2.clamp_min(1e-30))
        dec = torch.exp(-r2 * self.te)
        return g * dec, g, dec, (w, f)

    def _columns(self, x: torch.Tensor, idx: torch.Tensor | None):
        """Residuals and the three Jacobian columns (W, F, R2*), each ``(k, n)``."""
        a, g, dec, (w, f) = self.amplitude(x)
        if self.sigma is not None:
            m, dm = rician_mean(a, self.sigma)
        else:
            m, dm = a, None
        r = m - (self.s if idx is None else self.s[idx])
        dw = (w + f * self.cr) / g * dec
        df = (f * self.c2 + w * self.cr) / g * dec
        dr = -self.te * a
        if dm is not None:
            dw, df, dr = dw * dm, df * dm, dr * dm
        return r, dw, df, dr

    def __call__(self, x: torch.Tensor, idx: torch.Tensor | None):
        r, dw, df, dr = self._columns(x, idx)
        return r, torch.stack([dw, df, dr], dim=2)

    def normal_equations(self, x: torch.Tensor, idx: torch.Tensor | None):
        """``(cost, J^T J, J^T r)`` from the three columns, without a batched matrix product."""
        r, dw, df, dr = self._columns(x, idx)
        sww, swf, swr = (dw * dw).sum(1), (dw * df).sum(1), (dw * dr).sum(1)
        sff, sfr, srr = (df * df).sum(1), (df * dr).sum(1), (dr * dr).sum(1)
        jtj = torch.stack([sww, swf, swr, swf, sff, sfr, swr, sfr, srr], dim=1).reshape(-1, 3, 3)
        grad = torch.stack([(dw * r).sum(1), (df * r).sum(1), (dr * r).sum(1)], dim=1)
        return (r * r).sum(1), jtj, grad


def _grid_init(s: torch.Tensor, te: torch.Tensor, c: torch.Tensor, ff_lo: float, ff_hi: float,
               r2_grid: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """Best (W, F, R2*) on the (ff, R2*) grid by variable projection (float32, in blocks).

    ``block``: voxels per matrix product (default: cache-sized on the CPU, larger on a GPU).
    """
    if block is None:
        block = 256 if s.device.type == "cpu" else 8192
    ffs = torch.linspace(ff_lo, ff_hi, 26, dtype=s.dtype, device=s.device)
    shape = torch.abs((1.0 - ffs)[:, None] + ffs[:, None] * c[None, :])  # (F, n)
    m = shape[:, None, :] * torch.exp(-r2_grid[None, :, None] * te[None, None, :])  # (F, R, n)
    m = m.reshape(-1, te.numel())
    norm = torch.linalg.vector_norm(m, dim=1).clamp_min(1e-30)
    mh = (m / norm[:, None]).to(torch.float32).T.contiguous()
    best = torch.empty(s.shape[0], dtype=torch.long, device=s.device)
    for i in range(0, s.shape[0], block):
        best[i:i + block] = torch.argmax(s[i:i + block].to(torch.float32) @ mh, dim=1)
    proj = (s * (m / norm[:, None])[best]).sum(1)
    rho = proj / norm[best]
    fi, ri = best // r2_grid.numel(), best % r2_grid.numel()
    ff = ffs[fi]
    return torch.stack([rho * (1 - ff), rho * ff, r2_grid[ri]], dim=1)


def fit_magnitude(
    data: MultiEcho,
    *,
    spectrum: FatSpectrum = SIX_PEAK,
    mask: np.ndarray | None = None,
    device: str = "cpu",
    branch: str = "water",
    noise_sigma: float | str | None = None,
    r2star_max: float = 1000.0,
    max_iter: int = 40,
    chunk: int = 32768,
) -> FatWaterMaps:
    """Fit water, fat and R2* to the magnitudes of ``data`` in every voxel of ``mask``.

    Parameters
    ----------
    data:
        Multi-echo data; complex data are reduced to their magnitude.
    spectrum:
        Fat spectrum (default: six-peak).
    mask:
        Voxels to fit, ``(x, y, z)`` bool (default :func:`default_mask`).
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    branch:
        ``"water"`` (initialise at FF <= 50 %, default), ``"fat"`` (FF >= 50 %) or
        ``"best"`` (fit both, keep the lower residual per voxel) or ``"local"`` (fit both; per
        voxel the branch that most voxels of its ``LOCAL_WINDOW`` x ``LOCAL_WINDOW`` in-plane
        neighbourhood in the mask prefer: noise, and fits stuck in the other branch's minimum,
        flip single voxels of an organ, the organ as a whole does not. Layers thinner than
        about half the window, such as a thin fat plane between organs, follow their
        surroundings).
    noise_sigma:
        Rician noise level of the magnitudes; ``"auto"`` estimates it from the background;
        ``None`` fits the plain (noise-free) model.
    r2star_max:
        Upper bound on R2* (1/s).
    """
    if branch not in _BRANCHES:
        raise FitInputError("unknown magnitude branch", expected="water, fat, best or local", found=branch)
    msk = check_mask(mask, data)
    dev = resolve_device(device)
    mag = data.magnitude()
    sigma: float | None
    if isinstance(noise_sigma, str):
        if noise_sigma != "auto":
            raise FitInputError("noise_sigma must be a number, 'auto' or None", found=noise_sigma)
        sigma = estimate_noise_sigma(mag, msk)
        log.info("%s: background noise sigma %s", data.source, sigma)
    else:
        sigma = None if noise_sigma is None else float(noise_sigma)
    s_all = mag[msk].astype(np.float64)  # (N, n)
    scale = float(np.percentile(s_all, 99)) if s_all.size else 1.0
    scale = scale if scale > 0 else 1.0
    sig_n = None if sigma is None or sigma <= 0 else sigma / scale
    te = torch.as_tensor(data.te_s, dtype=torch.float64, device=dev)
    c = torch.as_tensor(fat_phasor(data.te_s, data.field_strength_t, spectrum), dtype=torch.complex128, device=dev)
    r2g = torch.as_tensor(_r2_grid(r2star_max), dtype=torch.float64, device=dev)
    lower = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64, device=dev)
    upper = torch.tensor([math.inf, math.inf, r2star_max], dtype=torch.float64, device=dev)
    n_vox = s_all.shape[0]
    params = np.zeros((n_vox, 3))
    rms_res = np.zeros(n_vox)
    both = branch in ("best", "local")
    branches = [(0.0, 0.5), (0.5, 1.0)] if both else [_BRANCHES[branch]]
    alt = np.zeros((n_vox, 3)) if branch == "local" else None  # the losing branch's parameters ...
    alt_res = np.zeros(n_vox) if branch == "local" else None  # ... and its relative misfit
    prefers_fat = np.zeros(n_vox, dtype=bool)
    for start in range(0, n_vox, chunk):
        s = torch.as_tensor(s_all[start:start + chunk] / scale, device=dev)
        model = _MagModel(s, te, c, sig_n)
        best_x, best_cost, alt_cost = None, None, None
        for lo, hi in branches:
            x0 = _grid_init(s, te, c, lo, hi, r2g)
            x, cost = levenberg_marquardt(model, x0, lower=lower, upper=upper, max_iter=max_iter)
            if best_x is None:
                best_x, best_cost = x, cost
            else:
                take = cost < best_cost
                prefers_fat[start:start + chunk] = take.cpu().numpy()
                if alt is not None:
                    alt[start:start + chunk] = torch.where(take[:, None], best_x, x).cpu().numpy()
                    alt_cost = torch.where(take, best_cost, cost)
                best_x = torch.where(take[:, None], x, best_x)
                best_cost = torch.where(take, cost, best_cost)
        params[start:start + chunk] = best_x.cpu().numpy()
        energy = (s * s).sum(1).clamp_min(1e-30)
        rms_res[start:start + chunk] = torch.sqrt(best_cost / energy).cpu().numpy()
        if alt_cost is not None:
            alt_res[start:start + chunk] = torch.sqrt(alt_cost / energy).cpu().numpy()
    shape = data.shape
    if alt is not None:  # "local": the neighbourhood's majority decides; swapped voxels take that branch's misfit
        fat_votes = _local_majority(prefers_fat, msk)
        swap = fat_votes != prefers_fat
        params[swap] = alt[swap]
        rms_res[swap] = alt_res[swap]

    def scatter(v: np.ndarray) -> np.ndarray:
        out = np.full(shape, np.nan, dtype=np.float32)
        out[msk] = v
        return out

    water = scatter(params[:, 0] * scale)
    fat = scatter(params[:, 1] * scale)
    return FatWaterMaps(
        water=water, fat=fat, ff_percent=ff_from_amplitudes(water, fat, msk),
        r2star_per_s=scatter(params[:, 2]), b0_hz=np.full(shape, np.nan, dtype=np.float32),
        residual=scatter(rms_res), mask=msk, method="magnitude",
        info={"branch": branch, "noise_sigma": sigma, "spectrum_ppm": list(spectrum.ppm),
              "device": dev, "voxels": int(n_vox)},
    )
