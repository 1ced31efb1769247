"""Fused water / fat volumes -> MIMIR's (3, 256, 256) uint8 image ("the MIMIR 2D format").

``shared/reference/mimir.md`` section 2, computed the way the reference does
(its volumes are float64; ours are float32, so every reduction and every
value that is thresholded or truncated is computed in float64 here):

* ``S = W + F`` with ``S == 0`` replaced by 1; FF = ``1000 F / S``.
* Body mask: Otsu threshold (``skimage.filters.threshold_otsu`` semantics,
  256-bin ``np.histogram`` over the data range, bin centres, first maximum of
  the between-class variance) of every coronal slice ``S[:, i, :]`` (one per AP
  index i), mask = ``S >= mean(thresholds)``. A constant slice's threshold is
  its value (skimage >= 0.19; older versions raise).
* The last 22 AP rows (scanner bed) are dropped from everything below.
* Channels 0 / 1: sums over AP (coronal) and LR (sagittal), ``np.rot90(k=1)``,
  each min-max normalised to 0..255 and truncated to uint8 (a constant
  projection gives zeros, MIMIR would cast NaN), side by side, resized to
  256 x 256 with :func:`~ukbmri.preprocess.resize.resize_linear_u8`. The
  reference feeds ``cv2.resize`` that uint8 array (cast before concatenation),
  so OpenCV's 8-bit fixed-point path is the one reproduced.
* Channel 2: FF of the coronal slice at the smallest AP index ``i`` whose
  mask count in AP slices ``[0, i)`` reaches half of the (bed-cropped) mask,
  and of the sagittal slice at the smallest LR index ``j`` whose count in LR
  slices ``[0, j)`` reaches half of the count in the first ``LR // 2`` slices
  (index 0 when never reached, like the reference), each rotated and encoded
  ``uint8(clip(FF / 500, 0, 1) * 255)`` (0-50 % FF), side by side, resized.
  The slice search uses cumulative sums (MIMIR's loop is quadratic).

Volumes are ``(LR, AP, z)`` with z increasing towards the head (as
:func:`~ukbmri.preprocess.fusion.fuse_stations` returns them), so rotated
images show the head at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ukbmri.errors import TensorError
from ukbmri.preprocess.resize import resize_linear_u8
from ukbmri.types import Volume

__all__ = [
    "BED_ROWS",
    "IMAGE_SIZE",
    "MimirImage",
    "otsu_threshold",
    "otsu_thresholds",
    "mass_index",
    "encode_fat_fraction",
    "normalise_u8",
    "fat_fraction_percent",
    "mimir_image",
    "mimir_image_details",
]

#: AP rows (posterior end) cropped as the scanner bed.
BED_ROWS = 22
#: Output image size (width, height).
IMAGE_SIZE = (256, 256)
_CHUNK = 16  # AP slices per chunk (bounded float64 temporaries; the float64 sums are grouped by it)
_BLOCK_VALUES = 1 << 18  # values histogrammed at once (2 MB of float64: cache-sized temporaries)
_EDGE_EPS = 1e-9  # bin-position fractions closer than this to an edge are checked against the edges
_NORMAL_SCALE = 2.0**-1000  # bin widths at least this large are normal floats (exact powers-of-two scaling)


@dataclass(frozen=True)
class MimirImage:
    """The 2D image and the intermediate values that chose it."""

    image: np.ndarray  #: (3, 256, 256) uint8: water, fat, fat fraction
    threshold: float  #: body-mask threshold (mean of the per-AP-slice Otsu thresholds)
    coronal_index: int  #: AP index of the coronal FF slice
    sagittal_index: int  #: LR index of the sagittal FF slice
    mask_voxels: int  #: bed-cropped body-mask size


def _bin_edges(lo: np.ndarray, hi: np.ndarray, nbins: int) -> np.ndarray:
    """``np.linspace(lo[i], hi[i], nbins + 1)`` for every row, the same arithmetic done for all rows at once."""
    step = (hi - lo) / nbins
    if np.any(step == 0):  # linspace's subnormal branch: row by row
        return np.stack([np.linspace(a, b, nbins + 1) for a, b in zip(lo, hi, strict=True)])
    edges = np.arange(nbins + 1, dtype=np.float64) * step[:, None]
    edges += lo[:, None]
    edges[:, -1] = hi
    return edges


def _row_histograms(
    rows: np.ndarray, nbins: int, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.histogram(row, bins=nbins)`` of every row of a 2D float64 array, vectorised.

    ``lo`` / ``hi``: the rows' minima and maxima. Returns counts ``(k, nbins)``, bin centres
    ``(k, nbins)`` and a constant-row flag. Same arithmetic as numpy's uniform-bin fast
    path, so the counts are identical.
    """
    const = lo == hi
    lo = np.where(const, lo - 0.5, lo)
    hi = np.where(const, hi + 0.5, hi)
    edges = _bin_edges(lo, hi, nbins)
    denom = hi - lo
    f = rows - lo[:, None]
    if nbins & (nbins - 1) == 0 and denom.min() >= _NORMAL_SCALE * nbins:
        # numpy's (x / denom) * nbins: scaling by a power of two commutes with rounding, so one
        # division by the (exact) denom / nbins gives the same values (below the normal range
        # both round to bin 0)
        f /= (denom / nbins)[:, None]
    else:
        f /= denom[:, None]
        f *= nbins
    whole = np.floor(f)  # == the bin estimate (f >= 0); a float subtraction is cheaper than f - idx
    # float64 -> int32 conversion is vectorised, -> int64 is not
    idx = whole.astype(np.int32 if nbins < 2**31 - 1 else np.intp)
    # numpy corrects the estimate by one bin where it disagrees with the edges; that can only
    # happen within rounding distance of an edge, so only those values are checked (exactly as numpy)
    f -= whole
    low = f < _EDGE_EPS
    # a value in bin 0 with a fraction near 0 is the row minimum or just above it: numpy's
    # corrections cannot move it (edges[0] is the minimum, edges[1] is a whole bin away), so
    # the often many voxels at the minimum (zeros replaced by 1, background) are not checked
    low &= whole != 0
    low |= f > 1.0 - _EDGE_EPS
    near = np.flatnonzero(low)
    if near.size:
        flat_rows = rows.ravel()
        flat_idx = idx.reshape(-1)
        r = near // rows.shape[1]
        a = flat_rows[near]
        b = flat_idx[near]
        b[b == nbins] -= 1
        b[a < edges[r, b]] -= 1
        b[(a >= edges[r, b + 1]) & (b != nbins - 1)] += 1
        flat_idx[near] = b
    counts = np.stack([np.bincount(row, minlength=nbins) for row in idx])
    centres = (edges[:, :-1] + edges[:, 1:]) / 2.0
    return counts, centres, const


def _otsu_from_histograms(counts: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """skimage's threshold_otsu on each row's histogram."""
    counts = counts.astype(np.float64)
    weight1 = np.cumsum(counts, axis=1)
    weight2 = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):  # only constant rows (answered separately) have empty ends
        mean1 = np.cumsum(counts * centres, axis=1) / weight1
        mean2 = (np.cumsum((counts * centres)[:, ::-1], axis=1) / weight2[:, ::-1])[:, ::-1]
        variance12 = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    best = np.argmax(np.nan_to_num(variance12, nan=-1.0), axis=1)
    return centres[np.arange(len(best)), best]


def otsu_thresholds(rows: np.ndarray, nbins: int = 256) -> np.ndarray:
    """Otsu threshold of every row of a 2D array (each row is one image, flattened).

    Matches ``skimage.filters.threshold_otsu(row, nbins)`` for float data: a
    histogram of ``nbins`` equal bins over ``[min, max]``, the first bin centre
    maximising the between-class variance; a constant row returns its value.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"otsu_thresholds needs a non-empty 2D array, got {rows.shape}")
    return _thresholds_of(_RowHistograms.of(rows, nbins))


@dataclass(frozen=True)
class _RowHistograms:
    """Histograms of rows (:func:`_row_histograms`) and the first value of each row."""

    counts: np.ndarray
    centres: np.ndarray
    const: np.ndarray
    first: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, nbins: int) -> _RowHistograms:
        """Of a C-contiguous float64 2D array, a few rows at a time (the float64 temporaries stay in cache)."""
        parts = []
        step = max(1, _BLOCK_VALUES // rows.shape[1])
        for a in range(0, rows.shape[0], step):
            block = rows[a : a + step]
            lo = block.min(axis=1)
            hi = block.max(axis=1)
            if not (np.isfinite(lo).all() and np.isfinite(hi).all()):  # NaN and inf reach the minimum or maximum
                raise TensorError("Otsu threshold of non-finite values", found="NaN or inf")
            counts, centres, const = _row_histograms(block[:, :_BLOCK_VALUES], nbins, lo, hi)
            for c in range(_BLOCK_VALUES, block.shape[1], _BLOCK_VALUES):  # long rows: counts added piece by piece
                counts += _row_histograms(block[:, c : c + _BLOCK_VALUES], nbins, lo, hi)[0]
            parts.append(_RowHistograms(counts, centres, const, block[:, 0].copy()))
        return parts[0] if len(parts) == 1 else cls.concat(parts)

    @staticmethod
    def concat(parts: list[_RowHistograms]) -> _RowHistograms:
        return _RowHistograms(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("counts", "centres",
                                                                                             "const", "first")))


def _thresholds_of(h: _RowHistograms) -> np.ndarray:
    """Otsu thresholds from row histograms (each row on its own: rows can be batched freely)."""
    res = _otsu_from_histograms(h.counts, h.centres)
    res[h.const] = h.first[h.const]
    return res


def otsu_threshold(image: np.ndarray, nbins: int = 256) -> float:
    """``skimage.filters.threshold_otsu(image, nbins)`` for a float image (any shape).

    The values are taken in memory order (no copy of a contiguous image): the threshold
    depends on their histogram only.
    """
    return float(otsu_thresholds(np.asarray(image, dtype=np.float64).ravel(order="K")[None, :], nbins)[0])


def mass_index(counts: np.ndarray, mass: float) -> int:
    """Smallest ``i`` with ``sum(counts[:i]) >= mass`` for ``i`` in ``0..len-1``; 0 if none (MIMIR)."""
    cum = np.concatenate([[0], np.cumsum(counts)[:-1]])
    hits = np.flatnonzero(cum >= mass)
    return int(hits[0]) if hits.size else 0


def normalise_u8(img: np.ndarray) -> np.ndarray:
    """MIMIR's ``uint8((img - min) / (max - min) * 255)`` (truncation); zeros for a constant image."""
    img = np.asarray(img, dtype=np.float64)
    lo, hi = img.min(), img.max()
    if hi == lo:
        return np.zeros(img.shape, dtype=np.uint8)
    return ((img - lo) / (hi - lo) * 255).astype(np.uint8)


def encode_fat_fraction(ff_permille: np.ndarray) -> np.ndarray:
    """``uint8(clip(FF / 500, 0, 1) * 255)`` of a rotated FF slice (FF in 0..1000)."""
    return (np.clip(np.asarray(ff_permille, dtype=np.float64) / 500.0, 0, 1) * 255).astype(np.uint8)


def _arrays(water: Volume | np.ndarray, fat: Volume | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = water.array if isinstance(water, Volume) else np.asarray(water)
    f = fat.array if isinstance(fat, Volume) else np.asarray(fat)
    if w.shape != f.shape or w.ndim != 3:
        raise TensorError("water and fat volumes must be 3D and of the same shape", expected=w.shape, found=f.shape)
    if w.shape[1] <= BED_ROWS or w.shape[0] < 2 or w.shape[2] < 1:
        raise TensorError("fused volume too small for the MIMIR image", expected=f"(LR, AP > {BED_ROWS}, z)",
                          found=w.shape)
    return w, f


def fat_fraction_percent(water: Volume, fat: Volume) -> Volume:
    """Voxel fat fraction ``100 F / (W + F)`` in percent (``W + F == 0`` gives 0), float32 in [0, 100]."""
    w, f = water.array, fat.array
    s = w + f
    s[s == 0] = 1
    ff = np.multiply(f, np.float32(100.0), dtype=np.float32)
    ff /= s
    np.clip(ff, 0.0, 100.0, out=ff)  # float32 rounding can land one ulp above 100
    return water.with_array(ff)


def _mask_counts(s32: np.ndarray, t: float, wf_sum) -> np.ndarray:
    """Per (AP, LR) counts over z of ``W + F >= t`` (float64 sums) from the sums rounded to float32.

    Rounding to nearest is monotonic, so ``s32 > float32(t)`` implies ``s >= t`` and
    ``s32 < float32(t)`` implies ``s < t``: only sums that round to ``float32(t)`` itself
    are compared again in float64 (``wf_sum(a, b)``: the float64 sums of AP slices ``[a, b)``).
    """
    n_body, _, n_lr = s32.shape
    t32 = np.float32(t)
    counts = np.zeros((n_body, n_lr), dtype=np.int64)
    step = max(1, _BLOCK_VALUES // (s32.shape[1] * n_lr))
    for a in range(0, n_body, step):
        b = min(a + step, n_body)
        block = s32[a:b]
        counts[a:b] = np.count_nonzero(block >= t32, axis=1)
        tie = block == t32
        if tie.any():
            k, _, lr = np.nonzero(tie & (wf_sum(a, b) < t))
            np.subtract.at(counts, (a + k, lr), 1)
    return counts


def mimir_image_details(water: Volume | np.ndarray, fat: Volume | np.ndarray) -> MimirImage:
    """Build MIMIR's 2D image from fused ``(LR, AP, z)`` volumes, keeping the chosen indices."""
    w, f = _arrays(water, fat)
    n_lr, n_ap, n_z = w.shape
    n_body = n_ap - BED_ROWS
    step = max(1, _BLOCK_VALUES // (n_lr * n_z))

    def wf_sum(a: int, b: int) -> np.ndarray:
        # W + F of AP slices [a, b) in float64, laid out (k, z, LR): one row per AP slice, LR
        # innermost (the order of the voxels in a row changes neither its histogram nor its
        # mask count), zeros replaced by 1 as MIMIR does; a few slices at a time (cache-sized)
        s = np.empty((b - a, n_z, n_lr))
        s[...] = w[:, a:b, :].transpose(1, 2, 0)  # a cast copy then a float64 += is the same sum as
        s += f[:, a:b, :].transpose(1, 2, 0)  # np.add(..., dtype=float64), 2.5x faster (no buffered casting)
        s[s == 0] = 1
        return s

    histograms = []  # of every AP slice, thresholds computed for all at once
    # W + F of the bed-cropped slices kept rounded to float32 (49 MB, not 98 MB of float64) for the mask
    s32 = np.empty((n_body, n_z, n_lr), dtype=np.float32)
    for a in range(0, n_ap, step):
        b = min(a + step, n_ap)
        s = wf_sum(a, b)
        histograms.append(_RowHistograms.of(s.reshape(b - a, -1), 256))
        if a < n_body:
            s32[a : min(b, n_body)] = s[: min(b, n_body) - a]
    t = float(np.mean(_thresholds_of(_RowHistograms.concat(histograms))))
    per_ap_lr = _mask_counts(s32, t, wf_sum)  # mask counts over z, bed cropped
    del s32
    cor_w = np.zeros((n_lr, n_z))
    cor_f = np.zeros((n_lr, n_z))
    sag_w = np.empty((n_body, n_z))
    sag_f = np.empty((n_body, n_z))
    for a in range(0, n_body, _CHUNK):
        b = min(a + _CHUNK, n_body)
        wv, fv = w[:, a:b, :], f[:, a:b, :]  # (LR, k, z) views
        # float64 sums straight from the float32 views, accumulated in index order; the coronal
        # sums grouped by _CHUNK AP slices as the reference implementation does
        cor_w += np.add.reduce(wv, axis=1, dtype=np.float64)
        cor_f += np.add.reduce(fv, axis=1, dtype=np.float64)
        sag_w[a:b] = np.add.reduce(wv, axis=0, dtype=np.float64)
        sag_f[a:b] = np.add.reduce(fv, axis=0, dtype=np.float64)
    mass = int(per_ap_lr.sum())
    count_lr = per_ap_lr.sum(axis=0)
    cor = mass_index(per_ap_lr.sum(axis=1), mass / 2)
    sag = mass_index(count_lr, int(count_lr[: n_lr // 2].sum()) / 2)

    def ff_slice(wv: np.ndarray, fv: np.ndarray) -> np.ndarray:
        wv = wv.astype(np.float64)
        fv = fv.astype(np.float64)
        s = wv + fv
        s[s == 0] = 1
        return 1000 * fv / s

    ff_cor = encode_fat_fraction(np.rot90(ff_slice(w[:, cor, :], f[:, cor, :]), 1))
    ff_sag = encode_fat_fraction(np.rot90(ff_slice(w[sag, :n_body, :], f[sag, :n_body, :]), 1))

    def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return resize_linear_u8(np.concatenate([a, b], axis=1), IMAGE_SIZE)

    ch_w = side_by_side(normalise_u8(np.rot90(cor_w, 1)), normalise_u8(np.rot90(sag_w, 1)))
    ch_f = side_by_side(normalise_u8(np.rot90(cor_f, 1)), normalise_u8(np.rot90(sag_f, 1)))
    ch_ff = side_by_side(ff_cor, ff_sag)
    image = np.stack([ch_w, ch_f, ch_ff])
    return MimirImage(image=image, threshold=t, coronal_index=cor, sagittal_index=sag, mask_voxels=mass)


def mimir_image(water: Volume | np.ndarray, fat: Volume | np.ndarray) -> np.ndarray:
    """MIMIR's ``(3, 256, 256)`` uint8 image (water, fat, fat fraction) of fused volumes."""
    return mimir_image_details(water, fat).image
