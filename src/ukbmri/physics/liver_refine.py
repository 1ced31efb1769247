"""The liver ROI inside a liver region: edges, vessels, outliers and slow-decaying voxels removed.

:func:`roi_in_region` is step 5 of :func:`ukbmri.physics.liver_roi.find_liver_roi`, for a
region from the localiser or from the image rules: the region eroded by ``margin_mm``,
(a localiser's proposal) restricted to liver-like tissue, minus vessel-like voxels (the
water signal deviating from its local median by more than the noise-aware tolerance), minus
R2* / fat-fraction outliers (3.5 robust SDs), minus voxels whose signal decays clearly more
slowly than the ROI's (:func:`slow_decay`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ukbmri.physics.liver_rules import SliceTissue, _disk

__all__ = ["roi_in_region", "slow_decay", "SLOW_DECAY_REL", "SLOW_DECAY_K"]


def roi_in_region(t: SliceTissue, liver: np.ndarray, liver_like_only: bool, *, margin_mm: float,
                  vessel_window_mm: float, vessel_tolerance: float, min_voxels: int,
                  signal_is_water: bool) -> np.ndarray:
    """Step 5: the liver region eroded by ``margin_mm``, vessels and outliers removed.

    ``liver_like_only``: keep only liver-like tissue (a localiser's proposal).
    """
    sx, sy = t.spacing
    tissue, sig, r2, ff = t.tissue, t.sig, t.r2, t.ff
    noise_w, noise_r, noise_f = t.noise_w, t.noise_r, t.noise_f
    roi = ndi.binary_erosion(liver, structure=_disk((margin_mm / sx, margin_mm / sy)))
    if liver_like_only:
        roi &= tissue  # the proposal's liver-like voxels only
    if roi.sum() < min_voxels:
        roi = liver & tissue if liver_like_only else liver.copy()
    win = (max(3, int(round(vessel_window_mm / sx)) | 1), max(3, int(round(vessel_window_mm / sy)) | 1))  # odd
    # local median of the signal (outside the liver, and where nothing was fitted, the liver's median)
    known = liver & np.isfinite(sig)
    if not known.any():
        return np.zeros_like(roi)
    local = ndi.median_filter(np.where(known, sig, np.median(sig[known])), size=win)
    dev = np.abs(sig - local) / np.maximum(np.abs(local), 1e-12)
    vtol = vessel_tolerance
    if noise_w is not None and signal_is_water:  # a vessel must stand out of the noise too
        nw = noise_w[liver & (noise_w > 0)]
        noise = float(np.median(nw)) if nw.size else 0.0
        vtol = np.hypot(vessel_tolerance, 3.0 * noise / max(float(np.median(np.abs(sig[known]))), 1e-12))
    roi &= np.isfinite(dev) & (dev <= vtol)
    if t.echoes is not None and roi.any():
        roi &= ~slow_decay(t.echoes, roi, t.echo_sigma)
    for v, nz in ((r2, noise_r), (ff, noise_f)):
        vals = v[roi]
        if vals.size >= min_voxels:
            med = np.median(vals)
            mad = 1.4826 * np.median(np.abs(vals - med))
            if nz is not None:  # at least the noise (a MAD of 0 happens when most voxels sit at a bound)
                mad = max(mad, float(np.median(nz[liver])))
            roi &= np.abs(v - med) <= 3.5 * max(mad, 1e-6) + (1.0 if v is ff else 2.0)
    roi = ndi.binary_opening(roi, structure=np.ones((2, 2), bool)) if roi.sum() > 4 * min_voxels else roi
    return roi


#: decay ratio allowed above the ROI's median, relative to it (real regional R2* variation), ...
SLOW_DECAY_REL = 0.2
#: ... plus this many times the ratio's noise SD
SLOW_DECAY_K = 3.0


def slow_decay(echoes: np.ndarray, roi: np.ndarray, sigma: float | None) -> np.ndarray:
    """ROI voxels whose signal decays clearly more slowly than the ROI's (vessels, other organs).

    Per voxel the decay ratio ``d = mean |S| of the later half of the echoes / |S| of the
    first echo`` (coil shading cancels; no fit). A voxel is slow when ``d`` exceeds the ROI's
    median by ``SLOW_DECAY_REL`` of it plus ``SLOW_DECAY_K`` times its noise SD
    ``sigma sqrt(1 / n_late + d^2) / |S_1|``. Such voxels are bright at the late echoes where
    the liver has decayed (blood's long T2* in an iron-loaded liver): a minority of them
    dominates the pooled power, and a single-R2* fit of it reads their tissue, not the liver.
    """
    e = np.asarray(echoes, dtype=float)
    n_echo = e.shape[-1]
    if n_echo < 3:
        return np.zeros(roi.shape, dtype=bool)
    first = np.maximum(e[..., 0], 1e-12)
    late = e[..., n_echo - n_echo // 2:]
    d = late.mean(axis=-1) / first
    med = float(np.median(d[roi]))
    sd = (float(sigma) if sigma else 0.0) * np.sqrt(1.0 / late.shape[-1] + d ** 2) / first
    return roi & (d > med * (1.0 + SLOW_DECAY_REL) + SLOW_DECAY_K * sd)
