"""Physics liver fat for the liver pipeline: PDFF and R2* in an automatic liver ROI.

:func:`liver_fat_from_zip` (one 20203 or 20254 zip) and :func:`liver_fat_from_multiecho`:

1. **Maps to find the liver** on the whole slice, where fat must read as fat: the complex
   fit (swap-free, B0) when the zip has phase images, otherwise the magnitude fit with
   ``branch="best"`` (both magnitude branches, lower residual per voxel).
2. **ROI**: :func:`ukbmri.physics.liver_roi.find_liver_roi` (patient right from the DICOM
   geometry).
3. **Values**: the magnitude fit (multi-peak fat, single R2*, water-dominant branch,
   Rician noise floor with the noise level estimated from the background) inside the ROI;
   the median PDFF and R2* are the headline numbers. The complex-fit medians in the same
   ROI are kept for QC.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ukbmri.io.atomic import save_npy
from ukbmri.physics.liver_roi import LiverSummary, find_liver_roi, liver_summary
from ukbmri.physics.magnitude import estimate_noise_sigma, fit_magnitude
from ukbmri.physics.multiecho import FatWaterMaps, MultiEcho, default_mask

__all__ = ["LiverPhysicsResult", "liver_fat_from_multiecho", "liver_fat_from_zip"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LiverPhysicsResult:
    """Liver PDFF / R2* of one acquisition (the ROI medians of ``summary``) and the ROI they come from."""

    summary: LiverSummary
    mask: np.ndarray = field(repr=False)  #: (x, y) bool ROI
    background: np.ndarray = field(repr=False)  #: (x, y) first-echo magnitude, for the overlay
    complex_pdff_percent: float | None = None
    complex_r2star_per_s: float | None = None
    roi_maps: str = ""  #: "complex" or "magnitude" (what found the liver)
    source: str = ""

    @property
    def pdff_percent(self) -> float:
        return self.summary.pdff_percent

    @property
    def r2star_per_s(self) -> float:
        return self.summary.r2star_per_s

    @property
    def n_voxels(self) -> int:
        return self.summary.n_voxels

    def save_mask(self, stem: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``<stem>.npy`` (bool (x, y)) and ``<stem>.png`` (overlay on the first echo)."""
        from ukbmri.physics.outputs import save_roi_png

        stem = Path(stem)
        npy = save_npy(stem.with_name(stem.name + ".npy"), self.mask)
        png = save_roi_png(self.background, self.mask, stem.with_name(stem.name + ".png"),
                           title=f"liver ROI: PDFF {self.pdff_percent:.1f} %, R2* {self.r2star_per_s:.0f} /s")
        return npy, png


def liver_fat_from_multiecho(data: MultiEcho, *, device: str = "cpu", noise_sigma: float | str | None = "auto",
                             **roi_kwargs) -> LiverPhysicsResult:
    """Liver PDFF and R2* of one single-slice multi-echo acquisition (see the module docstring)."""
    from ukbmri.physics.complex import fit_complex

    body = default_mask(data)
    if data.is_complex:
        roi_maps: FatWaterMaps = fit_complex(data, mask=body, device=device)
    else:
        roi_maps = fit_magnitude(data, mask=body, device=device, branch="best")
    sp = data.spacing or (1.0, 1.0, 1.0)
    roi = find_liver_roi(roi_maps, pixel_spacing_mm=sp[:2], affine_lps=data.affine_lps, **roi_kwargs)
    sigma = noise_sigma
    if noise_sigma == "auto":
        sigma = estimate_noise_sigma(data.magnitude(), body)
    values = fit_magnitude(data, mask=roi.reshape(data.shape), device=device, noise_sigma=sigma)
    summ = liver_summary(values, roi)
    c_pdff = c_r2 = None
    if roi_maps.method == "complex":
        cs = liver_summary(roi_maps, roi)
        c_pdff, c_r2 = cs.pdff_percent, cs.r2star_per_s
    mask2d = np.asarray(roi, dtype=bool).reshape(data.shape)[:, :, 0]
    return LiverPhysicsResult(
        summary=summ, mask=mask2d, background=np.abs(data.images[:, :, 0, 0]).astype(np.float32),
        complex_pdff_percent=c_pdff, complex_r2star_per_s=c_r2, roi_maps=roi_maps.method, source=data.source,
    )


def liver_fat_from_zip(z, *, device: str = "cpu", **kwargs) -> LiverPhysicsResult:
    """:func:`liver_fat_from_multiecho` of a 20203 (or 20254, dynamics averaged) zip from ``read_zip``."""
    from ukbmri.physics.inputs import multiecho_from_zip

    return liver_fat_from_multiecho(multiecho_from_zip(z), device=device, **kwargs)
