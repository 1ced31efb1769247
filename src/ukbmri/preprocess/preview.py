"""PNG preview of a MIMIR image: the three channels side by side, grey scale."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ukbmri.io.atomic import atomic_path

__all__ = ["save_preview_png", "preview_strip"]


def preview_strip(image: np.ndarray, *, gap: int = 4) -> np.ndarray:
    """``(C, H, W)`` uint8 -> ``(H, C * W + (C - 1) * gap)`` uint8 strip (white gaps)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"preview needs a (C, H, W) uint8 image, got {image.dtype} {image.shape}")
    c, h, w = image.shape
    strip = np.full((h, c * w + (c - 1) * gap), 255, dtype=np.uint8)
    for i in range(c):
        strip[:, i * (w + gap) : i * (w + gap) + w] = image[i]
    return strip


def save_preview_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write the water, fat and fat-fraction channels of ``image`` as one grey PNG, atomically.

    Pixel values are written unscaled (0 black, 255 white), one image pixel per PNG pixel.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import image as mpimg

    strip = preview_strip(image)
    with atomic_path(path, suffix=".png") as tmp:
        mpimg.imsave(tmp, np.repeat(strip[:, :, None], 3, axis=2), format="png")  # RGB grey: exact values
    return Path(path)
