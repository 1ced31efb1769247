"""Noise statistics for the liver pipeline: noise level, Cramer-Rao bounds, intervals.

* :func:`noise_sigma` — the per-echo noise SD of one acquisition, from the background
  (Rayleigh statistics) or, where the scanner zeroed it, from the fit residual.
* :func:`crlb_sd` — the SD with which water, PDFF and R2* *can* be estimated in a voxel of
  given water, fat and R2* at that noise (Cramer-Rao bound of the magnitude model
  ``|W + F c_n| exp(-R2* t_n)``). The liver ROI uses it so that "homogeneous" means
  "no more variable than the noise allows", at any fat fraction, R2* and SNR.
* :func:`median_interval` — a 95 % interval for the median of an ROI whose voxels are
  spatially correlated (smoothed or interpolated images): the standard error of the median
  ``1.2533 * robust SD / sqrt(n_eff)`` with ``n_eff = n / inflation``, the inflation
  from the lag-1 autocorrelations along x and y of the ROI's deviations (AR(1) variance
  factor ``(1 + rho) / (1 - rho)`` per axis), combined in quadrature with a model-error
  floor.
"""

from __future__ import annotations

import math

import numpy as np

from ukbmri.physics.spectrum import SIX_PEAK, FatSpectrum, fat_phasor

__all__ = ["noise_sigma", "crlb_sd", "median_interval", "spatial_inflation"]


def noise_sigma(data, body: np.ndarray, maps=None, *, min_samples: int = 500) -> float | None:
    """Per-echo noise SD (real / imaginary channel) of ``data`` (a MultiEcho).

    Background voxels outside ``body`` (dilated, so that edges and ghosts near the body do
    not count) give ``median / sqrt(2 ln 2)`` (Rayleigh). Without enough non-zero
    background, the median fit residual (``maps.residual`` times the voxel's RMS signal) in
    the body is used instead. ``None`` when neither is available.
    """
    from scipy import ndimage as ndi

    mag = np.abs(np.asarray(data.images))
    far = ~ndi.binary_dilation(body, iterations=3)
    bg = mag[far]
    bg = bg[np.isfinite(bg) & (bg > 0)]
    if bg.size >= min_samples:
        return float(np.median(bg) / math.sqrt(2.0 * math.log(2.0)))
    if maps is None:
        return None
    rms = np.sqrt(np.mean(mag ** 2, axis=-1))
    res = np.asarray(maps.residual) * rms
    ok = body & np.isfinite(res)
    if ok.sum() < 50:
        return None
    n = data.n_echoes
    chan = 2.0 if data.is_complex else 1.0
    return float(np.median(res[ok]) / math.sqrt(chan) * math.sqrt(n / max(n - 3, 1)))


def crlb_sd(water, fat, r2star, te_s, field_strength_t: float, sigma: float,
            spectrum: FatSpectrum = SIX_PEAK, *, complex_model: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cramer-Rao SDs of (water amplitude, PDFF in %, R2* in 1/s) per voxel (arrays broadcast).

    Magnitude model with unknowns ``(W, F, R2*)`` and white noise ``sigma`` per echo, or
    (``complex_model``) the complex model ``(W + F c_n) exp(-R2* t_n) exp(i (phi + 2 pi psi t_n))``
    with the common phase ``phi`` and the field ``psi`` as further unknowns and ``sigma``
    per real channel. Voxels with no signal get ``inf``.
    """
    w, f, r2 = np.broadcast_arrays(*(np.clip(np.asarray(v, dtype=float), 0.0, None) for v in (water, fat, r2star)))
    shape = w.shape
    w, f, r2 = (v.reshape(-1, 1) for v in (w, f, r2))
    te = np.asarray(te_s, dtype=float)
    c = fat_phasor(te, field_strength_t, spectrum)
    dec = np.exp(-r2 * te)  # (N, n)
    if complex_model:
        # columns W, F, phi, psi, R2* of the complex Jacobian; Fisher = Re(J^H J)
        s = (w + f * c) * dec
        cols = [dec + 0j * s, c * dec, 1j * s, 2j * np.pi * te * s, -te * s]
        cols = [np.concatenate([v.real, v.imag], axis=1) for v in cols]
        r2_index = 4
    else:
        cr, c2 = c.real, np.abs(c) ** 2
        g = np.sqrt(np.maximum(w * w + f * f * c2 + 2 * w * f * cr, 1e-30))
        cols = [(w + f * cr) / g * dec, (f * c2 + w * cr) / g * dec, -te * g * dec]
        r2_index = 2
    cov = _inverse_entries(cols, max(sigma, 1e-30) ** 2, ((0, 0), (1, 1), (0, 1), (r2_index, r2_index)))
    c00, c11, c01, crr = cov
    tot = (w + f)[:, 0]
    w, f = w[:, 0], f[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = -f / tot ** 2
        gf = w / tot ** 2
        var_ff = gw ** 2 * c00 + gf ** 2 * c11 + 2 * gw * gf * c01
        out = (np.sqrt(np.maximum(c00, 0.0)), 100.0 * np.sqrt(np.maximum(var_ff, 0.0)),
               np.sqrt(np.maximum(crr, 0.0)))
    bad = ~(tot > 0)
    return tuple(np.where(bad, np.inf, v).reshape(shape) for v in out)  # type: ignore[return-value]


def _inverse_entries(cols: list[np.ndarray], var: float, entries) -> list[np.ndarray]:
    """Entries of the inverse Fisher matrix ``(J^T J / var + 1e-12 trace I)^-1`` per voxel.

    ``cols``: the Jacobian's columns, each ``(N, m)``. The small symmetric matrices are
    inverted all at once by a Cholesky factorisation written out over the voxels.
    """
    p = len(cols)
    a = [[None] * p for _ in range(p)]
    for i in range(p):
        for j in range(i + 1):
            a[i][j] = np.einsum("nm,nm->n", cols[i], cols[j]) / var
    reg = 1e-12 * np.maximum(sum(a[i][i] for i in range(p)), 1e-30)
    for i in range(p):
        a[i][i] = a[i][i] + reg
    # A = L L^T
    low = [[None] * p for _ in range(p)]
    for j in range(p):
        d = a[j][j] - sum(low[j][k] ** 2 for k in range(j))
        low[j][j] = np.sqrt(np.maximum(d, 1e-300))
        for i in range(j + 1, p):
            low[i][j] = (a[i][j] - sum(low[i][k] * low[j][k] for k in range(j))) / low[j][j]
    # M = L^-1 (lower), A^-1 = M^T M
    m = [[None] * p for _ in range(p)]
    for i in range(p):
        m[i][i] = 1.0 / low[i][i]
        for j in range(i):
            m[i][j] = -sum(low[i][k] * m[k][j] for k in range(j, i)) / low[i][i]
    return [sum(m[k][i] * m[k][j] for k in range(max(i, j), p)) for i, j in entries]


def spatial_inflation(values: np.ndarray, roi: np.ndarray) -> float:
    """Variance inflation of a mean over ``roi`` from the lag-1 autocorrelation along each axis."""
    v = np.asarray(values, dtype=float)
    m = np.asarray(roi, dtype=bool) & np.isfinite(v)
    if m.sum() < 10:
        return 1.0
    d = np.where(m, v - np.median(v[m]), 0.0)
    var = float(np.mean(d[m] ** 2))
    if var <= 0:
        return 1.0
    infl = 1.0
    for ax in range(min(2, v.ndim)):
        a = [slice(None)] * v.ndim
        b = [slice(None)] * v.ndim
        a[ax], b[ax] = slice(0, -1), slice(1, None)
        both = m[tuple(a)] & m[tuple(b)]
        if both.sum() < 5:
            continue
        rho = float(np.mean(d[tuple(a)][both] * d[tuple(b)][both]) / var)
        rho = min(max(rho, 0.0), 0.95)
        infl *= (1.0 + rho) / (1.0 - rho)
    return infl


def median_interval(values: np.ndarray, roi: np.ndarray, *, floor_sd: float = 0.0,
                    relative_floor: float = 0.0) -> tuple[float, float, float]:
    """Median of ``values`` in ``roi`` and its 95 % interval: ``(median, lo, hi)``.

    ``floor_sd + relative_floor * |median|`` is a model-error SD added in quadrature to the
    sampling SE (see the module docstring).
    """
    v = np.asarray(values, dtype=float)
    m = np.asarray(roi, dtype=bool) & np.isfinite(v)
    x = v[m]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    med = float(np.median(x))
    rsd = 1.4826 * float(np.median(np.abs(x - med)))
    rsd = max(rsd, float(np.std(x)) * 0.5)
    n_eff = x.size / spatial_inflation(v, m)
    se = 1.2533 * rsd / math.sqrt(max(n_eff, 1.0))
    tot = math.sqrt(se ** 2 + (floor_sd + relative_floor * abs(med)) ** 2)
    return med, med - 1.96 * tot, med + 1.96 * tot
