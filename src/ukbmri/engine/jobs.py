"""Per-participant jobs that the engine ships to workers (picklable, top level).

Each job takes one small frozen dataclass and returns a small value; the
heavy arrays stay in the worker and only paths / rows travel back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ukbmri.types import stem_of

__all__ = ["BodyJob", "preprocess_body_job", "body_outputs_present"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BodyJob:
    """Preprocess one 20201 zip into the MIMIR cache (and optional NIfTI / PNG exports)."""

    zip_path: Path
    cache_dir: Path
    nifti_dir: Path | None = None
    png_dir: Path | None = None

    def nifti_paths(self) -> dict[str, Path]:
        if self.nifti_dir is None:
            return {}
        stem = stem_of(self.zip_path)
        return {k: self.nifti_dir / f"{stem}_{k}.nii.gz" for k in ("water", "fat", "ff_percent")}

    def png_path(self) -> Path | None:
        return None if self.png_dir is None else self.png_dir / f"{stem_of(self.zip_path)}.png"


def body_outputs_present(job: BodyJob) -> bool:
    """True when everything this job would write already exists and the cache entry is valid."""
    from ukbmri.engine.cache import ImageCache

    if ImageCache(job.cache_dir).lookup(job.zip_path) is None:
        return False
    if any(not p.is_file() for p in job.nifti_paths().values()):
        return False
    png = job.png_path()
    return png is None or png.is_file()


def preprocess_body_job(job: BodyJob) -> str:
    """Fuse, project and cache one participant; returns the cache stem."""
    from ukbmri.engine.cache import ImageCache
    from ukbmri.io.nifti import save_volume
    from ukbmri.preprocess.body import preprocess_body
    from ukbmri.preprocess.preview import save_preview_png

    cache = ImageCache(job.cache_dir)
    result = preprocess_body(job.zip_path)
    for w in result.warnings:
        log.warning("%s: %s", job.zip_path.name, w)
    flags = []
    if result.swap_suspected:
        flags.append("fat_water_swap_suspected")
    if result.stations < 6:
        flags.append(f"stations_{result.stations}_of_6")
    cache.store(job.zip_path, result.image, qc_flags=";".join(flags), warnings=tuple(result.warnings))
    paths = job.nifti_paths()
    if paths:
        save_volume(result.water, paths["water"])
        save_volume(result.fat, paths["fat"])
        save_volume(result.fat_fraction(), paths["ff_percent"])
    png = job.png_path()
    if png is not None:
        save_preview_png(result.image, png)
    return stem_of(job.zip_path)
