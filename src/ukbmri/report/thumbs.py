"""Thumbnails: a participant's MIMIR body image and liver ROI overlays as small PNGs.

The body image (``(3, H, W)`` uint8 water, fat, fat fraction) is drawn as the grey strip
of :func:`ukbmri.preprocess.preview.preview_strip`, halved; ROI overlays (already drawn
PNGs) are copied, or shrunk when larger than :data:`MAX_SIDE`. Pillow (a matplotlib
dependency) is imported lazily.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ukbmri.io.atomic import atomic_path

__all__ = ["THUMB_VERSION", "MAX_SIDE", "source_signature", "body_thumbnail", "roi_thumbnail"]

THUMB_VERSION = "2"
MAX_SIDE = 400  # pixels; larger ROI overlays are shrunk to fit


def source_signature(path: str | os.PathLike[str]) -> str:
    """Path, size and modification time: a thumbnail is redrawn only when this changes."""
    st = Path(path).stat()
    return f"{THUMB_VERSION}|{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}"


def body_thumbnail(npy: str | os.PathLike[str], out: str | os.PathLike[str], *, factor: int = 2) -> Path:
    """Write the three channels of a MIMIR image ``.npy`` side by side as a grey PNG, ``factor`` x smaller.

    Raises ``ValueError`` when the file is not a ``(C, H, W)`` uint8 array.
    """
    from PIL import Image

    from ukbmri.preprocess.preview import preview_strip

    image = np.load(npy, allow_pickle=False, mmap_mode="r")
    if image.ndim != 3 or image.dtype != np.uint8 or image.shape[0] > 8:
        raise ValueError(f"{Path(npy).name}: expected a (C, H, W) uint8 image, found {image.dtype} {image.shape}")
    strip = preview_strip(np.asarray(image))
    img = Image.fromarray(np.ascontiguousarray(strip))  # 2D uint8: grey ("L")
    if factor > 1:
        img = img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.Resampling.BOX)
    with atomic_path(out, suffix=".png") as tmp:
        img.save(tmp, format="PNG", optimize=False)
    return Path(out)


def roi_thumbnail(png: str | os.PathLike[str], out: str | os.PathLike[str], *, max_side: int = MAX_SIDE) -> Path:
    """Copy an ROI overlay PNG, shrunk to fit ``max_side`` when larger. Raises on an unreadable image."""
    from PIL import Image

    with Image.open(png) as img:
        img.load()  # decode now: a truncated file fails here, not in the browser
        if max(img.size) <= max_side and img.format == "PNG":
            with atomic_path(out, suffix=".png") as tmp:
                shutil.copyfile(png, tmp)
            return Path(out)
        small = img.convert("RGBA") if img.mode not in ("RGB", "RGBA", "L") else img.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    with atomic_path(out, suffix=".png") as tmp:
        small.save(tmp, format="PNG")
    return Path(out)
