"""Liver PDFF and R2* from the ROI's pooled signal, with a block (batch-means) interval.

The headline liver values are one magnitude fit (multi-peak fat, single R2*) of the ROI's
**pooled signal** ``sqrt(mean |S|^2 - 2 sigma^2)`` per echo, not the median of voxel-wise
fits. In a homogeneous organ every voxel's decay has the same shape up to its proton
density (coil shading, partial volume), and ``E|S|^2 = A^2 + 2 sigma^2`` for complex
Gaussian noise of SD ``sigma`` per channel (magnitude images: Rician), so the
noise-corrected mean power is exactly ``mean(rho^2) x shape^2`` at any shading, with the
noise reduced by the square root of the number of voxels. Where the
voxel-wise fit is noise-limited (iron overload: R2* of several hundred /s, low SNR) the
median of voxel-wise PDFFs scatters by pp and can be biased by the skewed voxel-wise
estimator; the pooled fit stays precise.

Interval: a delete-a-group jackknife. The ROI is split into ``blocks`` spatially compact
groups of voxels; the pooled signal without each group in turn is fitted the same way, and
the standard error is ``sqrt((g - 1) / g * sum (theta_b - mean theta)^2)``. Each replicate
keeps nearly all the voxels, so it stays in the fit's (near-linear) high-SNR regime even
where single groups would be noise-limited; groups larger than the noise's correlation
length make smoothed or interpolated images count right, and real heterogeneity of the
organ widens the interval. The SE is combined in quadrature with a model-error SD and with
the fit's sensitivity to the noise level (refits with ``sigma`` x (1 +- ``SIGMA_REL_SD``):
at R2* of several hundred /s only the first echoes carry signal and the value depends on
the noise floor); the 95 % interval uses Student's t with ``g - 1`` degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PooledLiverFit", "pooled_liver_fit", "spatial_blocks"]

#: voxels per block at least (fewer blocks for a small ROI)
MIN_BLOCK_VOXELS = 8
#: relative SD assumed for the noise level (background statistics vs the noise in the liver:
#: receive-coil and reconstruction non-uniformity); enters the interval through the fit's
#: sensitivity to the noise floor
SIGMA_REL_SD = 0.02


@dataclass(frozen=True)
class PooledLiverFit:
    """PDFF (%) and R2* (1/s) of the ROI's mean signal and their 95 % intervals."""

    pdff_percent: float
    r2star_per_s: float
    pdff_ci95: tuple[float, float]
    r2star_ci95: tuple[float, float]
    blocks: int


def spatial_blocks(roi: np.ndarray, blocks: int) -> np.ndarray:
    """Block number (0 .. k-1) of every ROI voxel, in ``roi[roi]`` order; blocks are spatially compact.

    Voxels are ordered by square tiles of about ``n / blocks`` voxels (tiles in serpentine
    order, so that consecutive tiles touch; voxels in raster order within a tile) and cut into ``k`` runs of equal length, with
    ``k = min(blocks, n // MIN_BLOCK_VOXELS)`` (at least 1).
    """
    xs, ys = np.nonzero(np.asarray(roi, dtype=bool))
    n = xs.size
    k = max(1, min(int(blocks), n // MIN_BLOCK_VOXELS))
    t = max(1, int(round(math.sqrt(n / k))))
    tx, ty = xs // t, ys // t
    snake = np.where(tx % 2 == 0, ty, (ty.max() if n else 0) - ty)  # boustrophedon: consecutive tiles touch
    order = np.lexsort((ys, xs, snake, tx))
    lab = np.empty(n, dtype=np.int64)
    for b, part in enumerate(np.array_split(order, k)):
        lab[part] = b
    return lab


def _t975(df: int) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(max(int(df), 1), 0.975))


def pooled_liver_fit(data, roi: np.ndarray, sigma: float | None, *, blocks: int = 16,
                     pdff_model_sd: float = 0.15, r2star_model_rel_sd: float = 0.02,
                     device: str = "cpu") -> PooledLiverFit:
    """Fit the pooled signal of ``roi`` (one slice of ``data``, a MultiEcho) and its jackknife replicates.

    ``sigma``: per-echo noise SD of one voxel per real channel (``2 sigma^2`` is subtracted
    from the mean power; ``None``: nothing subtracted).
    """
    from ukbmri.physics.magnitude import fit_magnitude
    from ukbmri.physics.multiecho import MultiEcho

    m = np.asarray(roi, dtype=bool)
    power = np.abs(np.asarray(data.images))[:, :, 0][m].astype(np.float64) ** 2  # (n, echoes)
    lab = spatial_blocks(m, blocks)
    k = int(lab.max()) + 1
    n, n_echo = power.shape
    sums = np.zeros((k, n_echo))
    np.add.at(sums, lab, power)
    counts = np.bincount(lab, minlength=k)[:, None]
    # delete-a-block replicates: the pooled signal without each block in turn
    total = sums.sum(axis=0, keepdims=True)
    left_out = (total - sums) / np.maximum(n - counts, 1)
    mean = total / n
    s2 = 0.0 if not sigma else float(sigma) ** 2
    # E|S|^2 = A^2 + 2 sigma^2 for complex Gaussian noise: exact under any shading of the ROI
    floors = 2.0 * s2 * np.array([1.0] + [1.0] * k + [(1 - SIGMA_REL_SD) ** 2, (1 + SIGMA_REL_SD) ** 2])
    power_means = np.concatenate([mean, left_out, mean, mean], axis=0)
    signals = np.sqrt(np.maximum(power_means - floors[:, None], 0.0))
    one = MultiEcho(images=signals.reshape(-1, 1, 1, n_echo).astype(np.float32), te_s=data.te_s,
                    field_strength_t=data.field_strength_t, source=data.source)
    fit = fit_magnitude(one, mask=np.ones((signals.shape[0], 1, 1), dtype=bool), noise_sigma=None, device=device)
    ff = np.asarray(fit.ff_percent, dtype=float).reshape(-1)
    r2 = np.asarray(fit.r2star_per_s, dtype=float).reshape(-1)
    pdff, r2s = float(ff[0]), float(r2[0])

    def interval(v: float, parts: np.ndarray, lo_hi: np.ndarray, model_sd: float) -> tuple[float, float]:
        parts = parts[np.isfinite(parts)]
        if k < 2 or parts.size < 2 or not np.all(np.isfinite(lo_hi)):
            return float("nan"), float("nan")
        g = parts.size  # grouped jackknife: var = (g - 1) / g * sum (theta_b - mean)^2
        se = math.sqrt((g - 1) / g * float(np.sum((parts - parts.mean()) ** 2)))
        sd_sigma = 0.5 * abs(float(lo_hi[1] - lo_hi[0]))  # the noise floor known to +-SIGMA_REL_SD
        half = _t975(parts.size - 1) * math.sqrt(se ** 2 + sd_sigma ** 2 + model_sd ** 2)
        return v - half, v + half

    plo, phi = interval(pdff, ff[1:k + 1], ff[k + 1:], pdff_model_sd)
    rlo, rhi = interval(r2s, r2[1:k + 1], r2[k + 1:], r2star_model_rel_sd * abs(r2s))
    return PooledLiverFit(pdff_percent=pdff, r2star_per_s=r2s, pdff_ci95=(plo, phi), r2star_ci95=(rlo, rhi),
                          blocks=k)
