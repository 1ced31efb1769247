"""Physics liver fat for the liver pipeline: PDFF and R2* in an automatic liver ROI.

:func:`liver_fat_from_zip` (one 20203 or 20254 zip) and :func:`liver_fat_from_multiecho`:

1. **Maps to find the liver** on the whole slice, where fat must read as fat: the complex
   fit (swap-free, B0) when the zip has phase images, otherwise the magnitude fit with
   ``branch="local"`` (both magnitude branches; per voxel the branch its neighbourhood
   prefers, so that noise does not flip voxels of a fatty or iron-loaded liver to fat).
2. **ROI**: :func:`ukbmri.physics.liver_roi.find_liver_roi` (patient right from the DICOM
   geometry); by default the bundled liver localiser network proposes the liver region and
   physics checks it (:mod:`ukbmri.physics.liver_locate`), else the image rules choose.
3. **Values**: the magnitude fit (multi-peak fat, single R2*) of the ROI's pooled,
   noise-corrected signal ``sqrt(mean |S|^2 - 2 sigma^2)`` (noise level from the background)
   is the headline PDFF and R2* (:mod:`ukbmri.physics.liver_pooled`); the voxel-wise fit in
   the ROI (water-dominant branch, Rician noise floor) gives the voxel statistics
   (``summary``) and the homogeneity QC; the complex-fit median in the same ROI is kept for QC.
4. **Intervals and QC**: 95 % intervals from a delete-a-block jackknife of the pooled fit
   and QC flags (:mod:`ukbmri.physics.liver_flags`, documented in ``docs/liver_qc.md``).
   No liver: :class:`~ukbmri.errors.LiverNotFoundError`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ukbmri.errors import LiverNotFoundError
from ukbmri.io.atomic import save_npy
from ukbmri.physics.liver_flags import cross_check, roi_flags
from ukbmri.physics.liver_noise import median_interval
from ukbmri.physics.liver_noise import noise_sigma as estimate_sigma
from ukbmri.physics.liver_pooled import pooled_liver_fit
from ukbmri.physics.liver_roi import LiverSummary, find_liver_roi, liver_summary
from ukbmri.physics.magnitude import fit_magnitude
from ukbmri.physics.multiecho import FatWaterMaps, MultiEcho, default_mask

__all__ = ["LiverPhysicsResult", "liver_fat_from_multiecho", "liver_fat_from_zip", "cross_check"]

#: model-error SDs added to the sampling error of the medians (fat spectrum and signal-model
#: mismatch; Hernando et al. / Yokoo et al. report PDFF biases of a few tenths of a percent)
PDFF_MODEL_SD = 0.15
R2STAR_MODEL_REL_SD = 0.02

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LiverPhysicsResult:
    """Liver PDFF / R2* of one acquisition (the pooled-signal fit of the ROI) and the ROI they come from."""

    summary: LiverSummary  #: voxel-wise statistics in the ROI (medians, means, SDs)
    mask: np.ndarray = field(repr=False)  #: (x, y) bool ROI
    background: np.ndarray = field(repr=False)  #: (x, y) first-echo magnitude, for the overlay
    pdff_percent: float = float("nan")  #: headline PDFF: fit of the ROI's pooled signal
    r2star_per_s: float = float("nan")  #: headline R2*: fit of the ROI's pooled signal
    complex_pdff_percent: float | None = None
    complex_r2star_per_s: float | None = None
    roi_maps: str = ""  #: "complex" or "magnitude" (what found the liver)
    source: str = ""
    pdff_ci95: tuple[float, float] = (float("nan"), float("nan"))
    r2star_ci95: tuple[float, float] = (float("nan"), float("nan"))
    flags: tuple[str, ...] = ()  #: QC flags (docs/liver_qc.md); empty when fine
    protocol: str = ""  #: "gre" (20203), "ideal" (20254) or "" (other)
    qc: dict = field(default_factory=dict, repr=False)  #: the numbers behind the flags

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


def liver_fat_from_maps(data: MultiEcho, roi_maps: FatWaterMaps, *, z: int = 0, device: str = "cpu",
                        noise_sigma: float | str | None = "auto", protocol: str = "", localiser="bundled",
                        **roi_kwargs) -> LiverPhysicsResult:
    """Liver PDFF / R2* of slice ``z`` of ``data`` given whole-slice maps that read fat as fat.

    ``roi_maps``: complex fit, or magnitude fit with ``branch="local"``, of ``data`` (all
    slices). ``localiser``: ``"bundled"`` (the shipped liver localiser network proposes the
    liver region, :mod:`ukbmri.physics.liver_locate`), a loaded
    :class:`~ukbmri.physics.liver_locate.LiverLocaliser`, or ``None`` (the image-rule ROI
    alone). The localiser needs the voxel size (``data.spacing``; its frame is in mm): without
    it the image rules decide. Raises :class:`~ukbmri.errors.LiverNotFoundError` naming ``data.source``.
    """
    from dataclasses import replace

    if isinstance(localiser, str) and localiser != "bundled":
        raise ValueError(f"localiser must be 'bundled', None or a LiverLocaliser, got {localiser!r}")
    if data.spacing is None and localiser is not None:  # its frame is in mm: without the voxel size, the rules
        log.info("%s: no voxel size; the image rules find the liver, not the localiser", data.source)
        localiser = None
    if isinstance(localiser, str):  # "bundled"
        from ukbmri.physics.liver_locate import bundled_localiser

        localiser = bundled_localiser()

    sl = slice(z, z + 1)
    d1 = data if data.shape[2] == 1 else replace(data, images=data.images[:, :, sl])
    m1 = roi_maps if roi_maps.shape[2] == 1 else FatWaterMaps(
        **{k: np.asarray(v)[:, :, sl] for k, v in roi_maps.as_dict().items()}, mask=roi_maps.mask[:, :, sl],
        method=roi_maps.method, info=roi_maps.info)
    body = m1.mask
    sigma = noise_sigma
    if noise_sigma == "auto":
        sigma = _auto_sigma(d1, body, m1)
    sp = data.spacing or (1.0, 1.0, 1.0)
    mag1 = np.abs(d1.images[:, :, 0])  # (x, y, echoes)
    info: dict = {}
    roi_kwargs.setdefault("affine_lps", data.affine_lps)
    try:
        roi = find_liver_roi(m1, pixel_spacing_mm=sp[:2], noise_sigma=sigma, te_s=data.te_s,
                             field_strength_t=data.field_strength_t, info=info, localiser=localiser,
                             echoes=mag1, **roi_kwargs)
    except LiverNotFoundError as exc:
        what = "homogeneous water-dominant tissue on the patient's right (a liver)"
        raise LiverNotFoundError(f"no liver found in slice {z}: {exc.message}", path=data.source,
                                 expected=exc.expected or what, found=exc.found) from exc
    values = fit_magnitude(d1, mask=roi.reshape(d1.shape), device=device, noise_sigma=sigma)
    summ = liver_summary(values, roi)
    roi2 = np.asarray(roi, dtype=bool).reshape(d1.shape)[:, :, 0]
    pooled = pooled_liver_fit(d1, roi2, sigma, pdff_model_sd=PDFF_MODEL_SD,
                              r2star_model_rel_sd=R2STAR_MODEL_REL_SD, device=device)
    pdff, r2s = pooled.pdff_percent, pooled.r2star_per_s
    (plo, phi), (rlo, rhi) = pooled.pdff_ci95, pooled.r2star_ci95
    if not (np.isfinite(pdff) and np.isfinite(r2s)):  # the pooled fit failed: voxel medians
        ff2, r22 = np.asarray(values.ff_percent)[:, :, 0], np.asarray(values.r2star_per_s)[:, :, 0]
        pdff, plo, phi = median_interval(ff2, roi2, floor_sd=PDFF_MODEL_SD)
        r2s, rlo, rhi = median_interval(r22, roi2, relative_floor=R2STAR_MODEL_REL_SD)
    c_pdff = c_r2 = None
    c_ci = (float("nan"), float("nan"))
    if m1.method == "complex":
        c_pdff, clo, chi = median_interval(np.asarray(m1.ff_percent)[:, :, 0], roi2, floor_sd=PDFF_MODEL_SD)
        c_r2 = liver_summary(m1, roi).r2star_per_s
        c_ci = (clo, chi)
    flags, qc = roi_flags(d1, m1, values, roi2, info, sigma, pdff=pdff, pdff_ci=(plo, phi), r2star=r2s,
                          voxel_median=(summ.pdff_percent, summ.r2star_per_s),
                          complex_pdff=c_pdff, complex_ci=c_ci, spacing=sp[:2])
    qc["roi_localiser"] = info.get("localiser")  # None: the image-rule ROI chose the region
    qc.update(voxel_median_pdff=summ.pdff_percent, voxel_median_r2star=summ.r2star_per_s, pooled_blocks=pooled.blocks)
    return LiverPhysicsResult(
        summary=summ, mask=roi2, background=mag1[:, :, 0].astype(np.float32),
        pdff_percent=float(pdff), r2star_per_s=float(r2s),
        complex_pdff_percent=c_pdff, complex_r2star_per_s=c_r2, roi_maps=m1.method, source=data.source,
        pdff_ci95=(float(max(plo, 0.0)), float(min(phi, 100.0))), r2star_ci95=(float(max(rlo, 0.0)), float(rhi)),
        flags=flags,
        protocol=protocol, qc=qc,
    )


def _auto_sigma(data: MultiEcho, body: np.ndarray, maps: FatWaterMaps) -> float | None:
    return estimate_sigma(data, np.asarray(body, dtype=bool), maps)


def liver_fat_from_multiecho(data: MultiEcho, *, device: str = "cpu", noise_sigma: float | str | None = "auto",
                             protocol: str = "", **roi_kwargs) -> LiverPhysicsResult:
    """Liver PDFF and R2* of one single-slice multi-echo acquisition (see the module docstring)."""
    return liver_fat_from_maps(data, roi_maps_for(data, device=device), device=device, noise_sigma=noise_sigma,
                               protocol=protocol, **roi_kwargs)


def liver_fit_mask(data: MultiEcho) -> np.ndarray:
    """Voxels to fit for the liver: :func:`default_mask` with the holes of its body filled (per slice).

    The echo-averaged signal of an iron-loaded liver (R2* of several hundred /s) falls below
    the default mask's threshold; the liver lies inside the body outline, so filling the
    body's holes brings it back without adding the scanner bed or the background.
    """
    from scipy import ndimage as ndi

    m = default_mask(data)
    out = m.copy()
    for z in range(m.shape[2]):
        lab, n = ndi.label(m[:, :, z])
        if n == 0:
            continue
        big = np.argmax(ndi.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))) + 1
        out[:, :, z] |= ndi.binary_fill_holes(lab == big)
    return out


def roi_maps_for(data: MultiEcho, *, device: str = "cpu", mask: np.ndarray | None = None) -> FatWaterMaps:
    """Whole-image maps in which fat reads as fat: complex fit with phase, else magnitude ``branch="local"``."""
    from ukbmri.physics.complex import fit_complex

    body = liver_fit_mask(data) if mask is None else mask
    if data.is_complex:
        return fit_complex(data, mask=body, device=device)
    return fit_magnitude(data, mask=body, device=device, branch="local")


def liver_fat_from_zip(z, *, device: str = "cpu", **kwargs) -> LiverPhysicsResult:
    """:func:`liver_fat_from_multiecho` of a 20203 (or 20254, dynamics averaged) zip from ``read_zip``.

    Raises :class:`~ukbmri.errors.LiverNotFoundError` when the slice shows no liver.
    """
    from ukbmri.physics.inputs import multiecho_from_zip

    protocol = {20203: "gre", 20254: "ideal"}.get(getattr(z, "field", None), "")
    return liver_fat_from_multiecho(multiecho_from_zip(z), device=device, protocol=protocol, **kwargs)
