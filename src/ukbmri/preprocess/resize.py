"""Bilinear resize of uint8 images, bit-exact with OpenCV's ``cv2.resize(..., INTER_LINEAR)``.

MIMIR resizes its uint8 projection images with ``cv2.resize(img, (256, 256))``
(default ``INTER_LINEAR``). For 8-bit input OpenCV does not interpolate in
floating point: it uses fixed-point coefficients and a specific rounding, so a
float bilinear resize differs from it in many pixels by one grey level. This
module reproduces OpenCV's arithmetic in numpy (the library never imports cv2):

* half-pixel centres: source coordinate ``f = float32((d + 0.5) * scale - 0.5)``
  with ``scale = 1 / (dst / src)`` in double precision; ``s = floor(f)``,
  fraction ``f - s`` in float32;
* horizontal: left of the image (``s < 0``) and right of it (``s >= src - 1``)
  the sample is clamped and its fraction set to 0; coefficients
  ``saturate_cast<short>((1 - f) * 2048)`` and ``saturate_cast<short>(f * 2048)``
  (round half to even, ``INTER_RESIZE_COEF_BITS = 11``); the horizontal pass
  gives ``int32`` sums ``S[s] * a0 + S[s + 1] * a1``;
* vertical: rows clamped to the image, coefficients computed the same way, and
  the 8-bit specialisation
  ``((b0 * (H0 >> 4)) >> 16) + ((b1 * (H1 >> 4)) >> 16) + 2) >> 2``;
* the special cases of ``cv::resize``: same size -> copy; an exact 2x
  downscale in both axes -> ``INTER_AREA`` (2x2 mean, rounded half up).

Verified pixel for pixel against opencv-python-headless on thousands of random
shapes (see ``tests/preprocess/test_resize.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["resize_linear_u8"]

_COEF_SCALE = np.float32(1 << 11)  # INTER_RESIZE_COEF_SCALE


def _source_coords(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer source index and float32 fraction per destination index (OpenCV's formula)."""
    scale = 1.0 / (dst / src)  # cv::resize: inv_scale = (double)dsize/ssize; scale = 1./inv_scale
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f)
    frac = (f - s).astype(np.float32)
    return s.astype(np.int64), frac


def _fixed_point(frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``saturate_cast<short>`` of ``(1 - f) * 2048`` and ``f * 2048`` (cvRound: half to even)."""
    c0 = np.rint((np.float32(1.0) - frac) * _COEF_SCALE)
    c1 = np.rint(frac * _COEF_SCALE)
    return np.clip(c0, -32768, 32767).astype(np.int64), np.clip(c1, -32768, 32767).astype(np.int64)


def resize_linear_u8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2D uint8 image exactly as ``cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)``.

    Parameters
    ----------
    img:
        2D ``uint8`` array (rows, columns).
    size:
        ``(width, height)`` of the result, in OpenCV's order.

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` uint8.
    """
    img = np.asarray(img)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"resize_linear_u8 needs a 2D uint8 image, got {img.dtype} {img.shape}")
    dst_w, dst_h = int(size[0]), int(size[1])
    if dst_w <= 0 or dst_h <= 0:
        raise ValueError(f"target size must be positive, got {size}")
    src_h, src_w = img.shape
    if src_h == 0 or src_w == 0:
        raise ValueError("cannot resize an empty image")
    if (src_h, src_w) == (dst_h, dst_w):
        return img.copy()
    if src_w == 2 * dst_w and src_h == 2 * dst_h:
        # cv::resize turns an exact 2x INTER_LINEAR downscale into the fast INTER_AREA path
        s = img.astype(np.uint16)
        acc = s[0::2, 0::2] + s[0::2, 1::2] + s[1::2, 0::2] + s[1::2, 1::2]
        return ((acc + 2) >> 2).astype(np.uint8)

    # horizontal coefficients, with OpenCV's border handling (clamp, fraction 0)
    sx, fx = _source_coords(src_w, dst_w)
    left = sx < 0
    right = sx >= src_w - 1
    fx[left | right] = 0.0
    sx = np.where(left, 0, np.where(right, src_w - 1, sx))
    a0, a1 = _fixed_point(fx)
    sx1 = np.minimum(sx + 1, src_w - 1)  # only reached with a1 == 0 at the right border

    # vertical coefficients: rows are clamped when fetched, fractions kept
    sy, fy = _source_coords(src_h, dst_h)
    b0, b1 = _fixed_point(fy)
    y0 = np.clip(sy, 0, src_h - 1)
    y1 = np.clip(sy + 1, 0, src_h - 1)

    # horizontal pass only on the source rows that are used
    rows = np.unique(np.concatenate([y0, y1]))
    src = img[rows].astype(np.int64)
    horiz = src[:, sx] * a0 + src[:, sx1] * a1  # int, <= 255 * 2048
    pos = np.searchsorted(rows, np.stack([y0, y1]))
    h0 = horiz[pos[0]] >> 4
    h1 = horiz[pos[1]] >> 4
    out = (((b0[:, None] * h0) >> 16) + ((b1[:, None] * h1) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)
