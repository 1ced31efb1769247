"""A slow, straightforward implementation of MIMIR's 20201 preprocessing, for cross-checking.

Written independently of ``ukbmri.preprocess`` from the prose of
``shared/reference/mimir.md`` sections 1-2: float64 throughout, plain loops,
``scipy.ndimage.map_coordinates(order=1, mode='nearest')`` (trilinear, clamped
to the edge) for resampling every axis, ``np.histogram`` + the textbook Otsu
formula per slice, the quadratic slice-of-mass search, and ``cv2.resize`` for
the final resize. Only for tests: needs opencv-python-headless.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

OUT_SPACING = np.array([2.23214293, 2.23214293, 3.0])
MAX_OVERLAP = 8
TRIM = 4
BED = 22


def _stack(series):
    """(rows, cols, n) float64 with slices z descending, origin (x, y, z), spacing (row, col, z)."""
    pos = np.asarray(series.positions, dtype=float)
    order = np.argsort(pos[:, 2])[::-1]
    rows, cols = series.pixels.shape[1:]
    n = len(order)
    vol = np.zeros((rows, cols, n))
    for k in range(n):
        vol[:, :, k] = series.pixels[order[k]]
    zsp = (pos[:, 2].max() - pos[:, 2].min()) / (n - 1)
    spacing = np.array([series.pixel_spacing[0], series.pixel_spacing[1], zsp], dtype=float)
    return vol, pos.max(axis=0), spacing


def stations(series_list):
    """Pair W and F series in SeriesNumber order, crop to common size, sort z descending."""
    ws = sorted([s for s in series_list if s.description.endswith("_W")], key=lambda s: s.series_number)
    fs = sorted([s for s in series_list if s.description.endswith("_F")], key=lambda s: s.series_number)
    out = []
    for w, f in zip(ws, fs, strict=True):
        wv, wo, wsp = _stack(w)
        fv, fo, _ = _stack(f)
        assert np.allclose(wo, fo)
        common = np.minimum(wv.shape, fv.shape)
        out.append((wv[: common[0], : common[1], : common[2]], fv[: common[0], : common[1], : common[2]], wo, wsp))
    out.sort(key=lambda t: -t[2][2])
    return out


def _resample(vol, r, r_end, w, w_size):
    dims = np.array(vol.shape, dtype=float)
    scaling = (r_end - r) / dims
    offset = r - w
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in w_size], indexing="ij")
    coords = [(grids[a] - offset[a]) / scaling[a] for a in range(3)]
    return map_coordinates(vol, coords, order=1, mode="nearest")


def fuse(station_list, channel):
    """Fused volume (LR, AP, z) of channel 0 (water) or 1 (fat), float64."""
    vols = [s[channel] for s in station_list]
    origins = np.array([s[2] for s in station_list], dtype=float)
    spacings = np.array([s[3] for s in station_list], dtype=float)
    dims = np.array([v.shape for v in vols], dtype=float)
    r = (origins - origins[0]) / OUT_SPACING
    r[:, 0] -= r[:, 0].min()
    r[:, 1] -= r[:, 1].min()
    r[:, 2] *= -1
    r = r[:, [1, 0, 2]]  # array axes: rows (y), columns (x), slices (z)
    r_end = r + dims * spacings / OUT_SPACING[[1, 0, 2]]
    w = np.around(r).astype(int)
    w_end = np.around(r_end).astype(int)
    w_size = w_end - w
    data = []
    for i, v in enumerate(vols):
        ends = np.concatenate([r[i], r_end[i]])
        off_grid = np.max(np.abs(ends - np.around(ends))) > 0.01
        if off_grid or np.any(w_size[i] != dims[i]):
            data.append(_resample(v, r[i], r_end[i], w[i], w_size[i]))
        else:
            data.append(v.copy())
    # overlap trimming
    n_st = len(data)
    overlaps = [0] * n_st
    for i in range(n_st - 1):
        ov = w_end[i, 2] - w[i + 1, 2]
        if ov > MAX_OVERLAP:
            cut = (ov - MAX_OVERLAP) / 2
            cut_a, cut_b = int(np.floor(cut)), int(np.ceil(cut))
            data[i] = data[i][:, :, : data[i].shape[2] - cut_a]
            data[i + 1] = data[i + 1][:, :, cut_b:]
            w_end[i, 2] -= cut_a
            w[i + 1, 2] += cut_b
            ov = MAX_OVERLAP
        overlaps[i] = ov
    # seam fades
    for i in range(n_st):
        n = data[i].shape[2]
        if i < n_st - 1:
            for j in range(max(overlaps[i], 0)):
                data[i][:, :, n - 1 - j] *= (j + 1) / (overlaps[i] + 1)
        if i > 0:
            for j in range(max(overlaps[i - 1], 0)):
                data[i][:, :, j] *= (j + 1) / (overlaps[i - 1] + 1)
    # intensity correction
    for i in range(n_st - 1):
        ov = overlaps[i]
        if ov <= 0:
            continue
        n = data[i].shape[2]
        m_a = np.mean(data[i + 1][:, :, ov])
        m_b = np.mean(data[i][:, :, n - 1 - ov])
        for j in range(ov):
            target = m_b + (m_a - m_b) * (j + 1) / (ov + 1)
            current = np.mean(data[i + 1][:, :, j]) + np.mean(data[i][:, :, n - ov + j])
            data[i + 1][:, :, j] *= target / current
            data[i][:, :, n - ov + j] *= target / current
    volume = np.zeros(np.max(w_end, axis=0))
    for i in range(n_st):
        volume[w[i, 0] : w_end[i, 0], w[i, 1] : w_end[i, 1], w[i, 2] : w_end[i, 2]] += data[i]
    volume = np.swapaxes(np.flip(volume, 2), 0, 1)
    return volume[:, :, TRIM : volume.shape[2] - TRIM]


def otsu(image, nbins=256):
    """Textbook Otsu on a 256-bin histogram of the data range (skimage's threshold_otsu)."""
    values = np.asarray(image, dtype=float).ravel()
    if np.all(values == values[0]):
        return values[0]
    counts, edges = np.histogram(values, bins=nbins)
    centres = (edges[:-1] + edges[1:]) / 2
    best, best_t = -1.0, centres[0]
    for t in range(nbins - 1):
        w1 = counts[: t + 1].sum()
        w2 = counts[t + 1 :].sum()
        m1 = (counts[: t + 1] * centres[: t + 1]).sum() / w1
        m2 = (counts[t + 1 :] * centres[t + 1 :]).sum() / w2
        var = w1 * w2 * (m1 - m2) ** 2
        if var > best:
            best, best_t = var, centres[t]
    return best_t


def _slice_of_mass(mask, mass, axis):
    for i in range(mask.shape[axis]):
        if np.count_nonzero(np.take(mask, np.arange(i), axis=axis)) >= mass:
            return i
    return 0


def _norm(img):
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)


def image(water, fat):
    """MIMIR's (3, 256, 256) uint8 image from fused (LR, AP, z) float64 volumes, plus (coronal, sagittal) index."""
    import cv2

    s = water + fat
    s[s == 0] = 1
    ff = 1000 * fat / s
    t = np.mean([otsu(s[:, i, :]) for i in range(s.shape[1])])
    mask = s >= t
    ap = water.shape[1] - BED
    water, fat, ff, mask = water[:, :ap], fat[:, :ap], ff[:, :ap], mask[:, :ap]
    channels = []
    for v in (water, fat):
        cor = _norm(np.rot90(v.sum(axis=1), 1))
        sag = _norm(np.rot90(v.sum(axis=0), 1))
        channels.append(cv2.resize(np.concatenate([cor, sag], axis=1), (256, 256)))
    mass = np.count_nonzero(mask)
    i_cor = _slice_of_mass(mask, mass / 2, 1)
    half = np.count_nonzero(mask[: mask.shape[0] // 2])
    i_sag = _slice_of_mass(mask, half / 2, 0)

    def enc(sl):
        return (np.clip(np.rot90(sl, 1) / 500.0, 0, 1) * 255).astype(np.uint8)

    channels.append(cv2.resize(np.concatenate([enc(ff[:, i_cor, :]), enc(ff[i_sag])], axis=1), (256, 256)))
    return np.stack(channels), (i_cor, i_sag)
