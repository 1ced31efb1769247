"""The MIMIR image cache: ``<cache>/<zip name up to first '.'>.npy``, validated.

The folder layout is MIMIR's own, so existing MIMIR caches are reused and
ours can be read by MIMIR. Beside each image we keep a small sidecar
(``<cache>/.ukbmri/<stem>.json``) with the input's identity (name, size,
mtime) and the pipeline version. A cached image is reused when

* it loads as a ``(3, 256, 256)`` uint8 array, and
* its sidecar (if any) matches the current input and pipeline version.

An image without a sidecar (a MIMIR cache) is trusted when its shape and
dtype are right. Anything else is stale and recomputed, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from ukbmri import __version__
from ukbmri.errors import CacheError
from ukbmri.io.atomic import save_npy, write_text
from ukbmri.types import stem_of

__all__ = ["ImageCache", "MIMIR_SHAPE", "PIPELINE_VERSION", "input_identity"]

log = logging.getLogger(__name__)

MIMIR_SHAPE = (3, 256, 256)
#: bump when the 2D image of a given zip would change
PIPELINE_VERSION = "mimir2d-1"


def _image_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def input_identity(path: str | os.PathLike[str]) -> dict[str, object]:
    """Cheap identity of an input file: name, size and modification time."""
    st = Path(path).stat()
    return {"input": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class ImageCache:
    """A folder of MIMIR 2D images keyed by zip stem."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._meta = self.folder / ".ukbmri"

    def path(self, stem: str) -> Path:
        return self.folder / f"{stem}.npy"

    def _sidecar(self, stem: str) -> Path:
        return self._meta / f"{stem}.json"

    def is_valid_image(self, stem: str) -> bool:
        p = self.path(stem)
        if not p.is_file():
            return False
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return False
        return arr.shape == MIMIR_SHAPE and arr.dtype == np.uint8

    def lookup(self, zip_path: str | os.PathLike[str]) -> Path | None:
        """The cached image for this input if present and valid, else ``None``."""
        stem = stem_of(zip_path)
        if not self.is_valid_image(stem):
            return None
        side = self._sidecar(stem)
        if side.is_file():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if meta.get("pipeline") != PIPELINE_VERSION:
                log.info("%s: cache made by pipeline %s, recomputing", stem, meta.get("pipeline"))
                return None
            if "image_sha256" in meta and meta["image_sha256"] != _image_sha256(np.load(self.path(stem))):
                # a run died between the sidecar and the image: the image is not the one described
                log.info("%s: cached image does not match its sidecar, recomputing", stem)
                return None
            if Path(zip_path).is_file():
                ident = input_identity(zip_path)
                if any(meta.get(k) != v for k, v in ident.items()):
                    log.info("%s: input changed since it was cached, recomputing", stem)
                    return None
        return self.path(stem)

    def store(self, zip_path: str | os.PathLike[str], image: np.ndarray, *, qc_flags: str = "",
              qc_fatal: str = "", warnings: tuple[str, ...] = ()) -> Path:
        """Write the image (atomically) and its sidecar (input identity, QC flags, warnings)."""
        if image.shape != MIMIR_SHAPE or image.dtype != np.uint8:
            raise CacheError(
                "refusing to cache an image that is not in the MIMIR 2D format",
                path=zip_path,
                expected=f"{MIMIR_SHAPE} uint8",
                found=f"{image.shape} {image.dtype}",
            )
        stem = stem_of(zip_path)
        meta = {**input_identity(zip_path), "pipeline": PIPELINE_VERSION, "ukbmri": __version__,
                "qc_flags": qc_flags, "qc_fatal": qc_fatal, "warnings": list(warnings), "image_sha256": _image_sha256(image)}
        # sidecar first: an image without sidecar would be trusted as a MIMIR cache; the
        # image hash in the sidecar catches an old image left by a run that died in between
        write_text(self._sidecar(stem), json.dumps(meta, indent=1))
        return save_npy(self.path(stem), image)

    def qc_flags(self, stem: str) -> str:
        """QC flags recorded when the image was made ("" for none or for MIMIR caches)."""
        side = self._sidecar(stem)
        try:
            return str(json.loads(side.read_text(encoding="utf-8")).get("qc_flags", ""))
        except (OSError, ValueError):
            return ""

    def qc(self, stem: str) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
        """(QC flags, fatal reason or "", warnings) recorded when the image was made (empty for MIMIR caches)."""
        try:
            meta = json.loads(self._sidecar(stem).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return (), "", ()
        flags = tuple(f for f in str(meta.get("qc_flags", "")).split(";") if f)
        return flags, str(meta.get("qc_fatal", "")), tuple(meta.get("warnings", ()))

    def load(self, stem: str) -> np.ndarray:
        p = self.path(stem)
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CacheError("unreadable cached image", path=p, found=type(exc).__name__) from exc
        if arr.shape != MIMIR_SHAPE or arr.dtype != np.uint8:
            raise CacheError(
                "cached image is not in the MIMIR 2D format", path=p, expected=f"{MIMIR_SHAPE} uint8", found=f"{arr.shape} {arr.dtype}"
            )
        return arr

    def stems(self) -> list[str]:
        """Stems of every valid image in the folder (sorted)."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.npy")
                      if not p.name.startswith(".") and self.is_valid_image(p.stem))  # skip temp files
