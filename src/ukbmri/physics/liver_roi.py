"""Automatic liver region of interest on one axial slice, and the liver summary inside it.

:func:`find_liver_roi` (vectorised image operations, no learning):

1. **Body**: the fitted mask with holes filled, largest connected component; its
   centroid and equivalent radius.
2. **Liver-like tissue**: fat fraction below ``ff_max`` (water-dominant; plus twice the
   noise-expected SD when the noise is known), R2* in a liver range, proton density
   (water + fat) above a fraction of the body's water-dominant tissue, and at least
   ``wall_mm`` from the body outline (skin, subcutaneous fat, abdominal wall).
3. **Candidates**: homogeneous tissue (over ``homog_mm``: local SD of the water signal
   below ``cv_max`` of its mean, of R2* below ``2 cv_max`` of its mean + 2 /s, of the fat
   fraction below ``ff_sd_max``; organ boundaries are not homogeneous),
   eroded by ``split_mm`` (breaks thin bridges to other organs), connected components of
   at least ``min_area_mm2``.
4. **Choice**: the component with the largest area on the patient's right (the side given
   by ``right_direction``, or derived from ``affine_lps``) times a thickness factor
   (inscribed radius / 20 mm, at most 1: muscle is a thin band), among those with at
   least ``min_area_mm2`` on the right and, when the geometry is known, whose centre is
   not more than ``max_posterior`` body radii posterior of the body centre (kidneys and
   paraspinal muscles); when none qualifies, the best of all (and QC flags it).
   Without orientation: the largest x thickness.
   Its anchor is the point deep inside it and far to the right; the liver is the tissue
   that resembles the anchor's neighbourhood (``anchor_mm``; water signal, R2* and fat
   fraction within max(4 MAD, a floor) of their medians) connected to the anchor (this
   cuts off touching organs with other values), grown back by up to ``split_mm``.
5. **ROI** inside the region (:mod:`ukbmri.physics.liver_refine`): eroded by ``margin_mm``,
   vessel-like voxels and outliers removed, and voxels that decay more slowly than the ROI
   (blood in an iron-loaded liver).

:func:`liver_summary` reports the median PDFF and R2* in the ROI (and mean, SD, voxel
count). Field 20203 / 20254 pipelines use :func:`ukbmri.physics.liver.liver_fat_from_zip`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi

from ukbmri.errors import LiverInputError, LiverNotFoundError
from ukbmri.physics.liver_flags import MAX_POSTERIOR
from ukbmri.physics.liver_refine import roi_in_region
from ukbmri.physics.liver_rules import SliceTissue, rules_region
from ukbmri.physics.multiecho import FatWaterMaps

__all__ = ["find_liver_roi", "liver_summary", "LiverSummary", "patient_right_direction", "localised_region",
           "body_mask"]

log = logging.getLogger(__name__)

#: share of a localiser's proposal that must be liver-like tissue (else the image rules decide)
MIN_TISSUE_FRACTION = 0.6


@dataclass(frozen=True, eq=False)
class LiverSummary:
    """Liver PDFF and R2* inside an ROI (medians are the headline values)."""

    pdff_percent: float
    r2star_per_s: float
    n_voxels: int
    mask: np.ndarray = field(repr=False)
    pdff_mean_percent: float = float("nan")
    pdff_sd_percent: float = float("nan")
    r2star_mean_per_s: float = float("nan")
    r2star_sd_per_s: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "liver_pdff_percent": self.pdff_percent, "liver_r2star_per_s": self.r2star_per_s,
            "liver_roi_voxels": self.n_voxels, "liver_pdff_mean_percent": self.pdff_mean_percent,
            "liver_pdff_sd_percent": self.pdff_sd_percent, "liver_r2star_mean_per_s": self.r2star_mean_per_s,
            "liver_r2star_sd_per_s": self.r2star_sd_per_s,
        }


def _lps_direction(affine_lps: np.ndarray, axis: int, sign: float) -> np.ndarray | None:
    """Unit 2-vector in ``(x, y)`` index space along ``sign`` x LPS ``axis``; ``None`` without in-plane extent.

    An index step ``d`` moves ``a @ d`` in LPS: the wanted direction changes that coordinate the most.
    """
    a = np.asarray(affine_lps, dtype=float)[:3, :2]
    d = sign * a[axis, :] / np.maximum(np.linalg.norm(a, axis=0) ** 2, 1e-12)
    n = np.linalg.norm(d)
    return d / n if n > 1e-9 else None


def patient_right_direction(affine_lps: np.ndarray) -> np.ndarray:
    """Unit 2-vector in ``(x, y)`` index space pointing to the patient's right (LPS -x)."""
    d = _lps_direction(affine_lps, 0, -1.0)
    if d is None:
        raise LiverInputError("the slice has no left-right extent", expected="an axial-like slice",
                              found=np.asarray(affine_lps, dtype=float)[:3, :2].tolist())
    return d


def posterior_direction(affine_lps: np.ndarray) -> np.ndarray | None:
    """Unit 2-vector in ``(x, y)`` index space pointing posterior (LPS +y); ``None`` for a coronal slice."""
    return _lps_direction(affine_lps, 1, 1.0)


def _slice2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        if a.shape[2] != 1:
            raise LiverInputError("the liver ROI works on one slice", expected="(x, y) or (x, y, 1)",
                                  found=a.shape)
        return a[:, :, 0]
    if a.ndim != 2:
        raise LiverInputError("maps have the wrong rank", expected="(x, y) or (x, y, 1)", found=a.shape)
    return a


def body_mask(fitted: np.ndarray) -> np.ndarray:
    """The body of one slice: the fitted mask's largest connected component, holes filled (empty if none)."""
    lab, n = ndi.label(ndi.binary_fill_holes(fitted))
    if n == 0:
        return np.zeros(np.shape(fitted), dtype=bool)
    sizes = ndi.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    return ndi.binary_fill_holes(lab == (1 + int(np.argmax(sizes))))


def find_liver_roi(
    maps: FatWaterMaps,
    magnitude: np.ndarray | None = None,
    *,
    pixel_spacing_mm: tuple[float, float] = (1.0, 1.0),
    right_direction: tuple[float, float] | np.ndarray | None = None,
    affine_lps: np.ndarray | None = None,
    ff_max: float = 50.0,
    r2star_range: tuple[float, float] = (5.0, 1000.0),
    water_fraction: float = 0.3,
    wall_mm: float = 12.0,
    split_mm: float = 6.0,
    homog_mm: float = 7.5,
    cv_max: float = 0.06,
    ff_sd_max: float = 2.5,
    min_area_mm2: float = 600.0,
    anchor_mm: float = 15.0,
    margin_mm: float = 5.0,
    vessel_window_mm: float = 20.0,
    vessel_tolerance: float = 0.12,
    min_voxels: int = 20,
    max_posterior: float = MAX_POSTERIOR,
    noise_sigma: float | None = None,
    te_s: np.ndarray | None = None,
    field_strength_t: float = 1.5,
    noise_k: float = 2.0,
    info: dict | None = None,
    localiser=None,
    echoes: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean ``(x, y)`` (or ``(x, y, 1)``, like the maps) liver ROI mask; see the module docstring.

    Parameters
    ----------
    maps:
        Fat-water maps of one slice whose fat fraction is right above 50 % (complex fit,
        or magnitude fit with ``branch="local"``), so that fat is not mistaken for liver.
    magnitude:
        Optional signal image used instead of the water map for the vessel test.
    pixel_spacing_mm:
        ``(x, y)`` voxel size.
    right_direction, affine_lps:
        Where the patient's right is: an ``(x, y)`` index-space vector, or the data's
        affine (UK Biobank zips); neither: the largest candidate wins.
    noise_sigma, te_s, field_strength_t:
        Per-echo noise SD of the data and its echo times: the homogeneity tests then allow
        ``noise_k`` times the Cramer-Rao SD of each map in quadrature with the tissue
        tolerances (:func:`ukbmri.physics.liver_noise.crlb_sd`), so that noisy, iron-loaded
        or fatty livers still count as homogeneous. Without them only the tissue
        tolerances apply.
    localiser:
        A :class:`~ukbmri.physics.liver_locate.LiverLocaliser`: its proposal is the liver region
        (steps 3b-4 are skipped; the patient's right must be known, else they run as without).
    echoes:
        Optional ``(x, y, echoes)`` magnitudes of the slice: ROI voxels whose signal decays
        clearly more slowly than the ROI's are removed (:func:`slow_decay`: vessels and other
        organs, which a single-R2* fit of the pooled signal would otherwise follow).
    info:
        Optional dict that receives diagnostics for QC (``region`` mask, ``region_area_mm2``,
        ``region_inscribed_mm``, ``side``, ``body_radius_mm``, ``homog_ratio``).

    Raises
    ------
    LiverNotFoundError
        No liver-like region (or fewer than ``min_voxels`` voxels remain).
    """
    ff = _slice2d(maps.ff_percent).astype(float)
    r2 = _slice2d(maps.r2star_per_s).astype(float)
    water = _slice2d(maps.water).astype(float)
    fitted = _slice2d(maps.mask).astype(bool)
    sig = water if magnitude is None else _slice2d(np.abs(magnitude)).astype(float)
    sx, sy = (float(v) for v in pixel_spacing_mm)
    if right_direction is None and affine_lps is not None:
        right_direction = patient_right_direction(affine_lps)
    # 1. body
    body = body_mask(fitted)
    if not body.any():
        raise LiverInputError("no signal in the slice", expected="a body", found="empty mask")
    cx, cy = ndi.center_of_mass(body)
    radius_mm = np.sqrt(body.sum() * sx * sy / np.pi)

    # 2. liver-like tissue, away from the body wall
    finite = fitted & np.isfinite(ff) & np.isfinite(r2) & np.isfinite(water)
    ff_lim = np.full(ff.shape, float(ff_max))
    if noise_sigma is not None and te_s is not None and noise_sigma > 0 and finite.any():
        # a noisy voxel of a fatty liver may read a little above ff_max; fat tissue (>= 80 %) does not
        from ukbmri.physics.liver_noise import crlb_sd

        fw = np.nan_to_num(np.asarray(maps.fat, dtype=float)[..., 0] if np.asarray(maps.fat).ndim == 3
                           else np.asarray(maps.fat, dtype=float))
        _, cf, _ = crlb_sd(np.nan_to_num(water)[finite], fw[finite], np.nan_to_num(r2)[finite], te_s,
                           field_strength_t, noise_sigma, complex_model=maps.method == "complex")
        ff_lim[finite] = np.minimum(ff_max + 2.0 * np.nan_to_num(cf, posinf=0.0), ff_max + 20.0)
    waterish = finite & (ff < ff_lim) & body
    # proton density (water + fat), not water alone: a fatty liver has little water but full signal
    total = water + np.nan_to_num(_slice2d(maps.fat).astype(float))
    ref = float(np.percentile(total[waterish], 90)) if waterish.sum() > 10 else 0.0
    tissue = waterish & (r2 >= r2star_range[0]) & (r2 <= r2star_range[1]) & (total > water_fraction * ref)
    depth = ndi.distance_transform_edt(body, sampling=(sx, sy))
    tissue &= depth >= wall_mm
    # 3. candidates: homogeneous liver-like tissue (organ boundaries have a high local
    #    coefficient of variation of the water signal), eroded to break thin bridges
    win = (max(3, int(round(homog_mm / sx)) | 1), max(3, int(round(homog_mm / sy)) | 1))
    # robust local statistics (median, 1.4826 x median absolute deviation): single-voxel
    # fit outliers (noise at high R2*) neither break the tissue nor inflate its spread
    tissue_c = tissue | (ndi.binary_closing(tissue, structure=np.ones((3, 3), bool)) & body & (depth >= wall_mm)
                         & finite)
    cnt = ndi.uniform_filter(tissue_c.astype(float), size=win)

    def local_median(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v0 = np.where(finite, v, 0.0)
        return v0, ndi.median_filter(v0, size=win)

    def local_spread(v0: np.ndarray, mu: np.ndarray) -> np.ndarray:
        spread = 1.4826 * ndi.median_filter(np.abs(v0 - mu), size=win)
        # an organ boundary is a step of the local median (one window across)
        hx, hy = win[0] // 2, win[1] // 2
        step = np.zeros_like(mu)
        step[hx:-hx or None, :] = np.abs(mu[2 * hx:, :] - mu[:-2 * hx or None, :])[:step.shape[0] - 2 * hx] if hx else 0
        sy_ = np.zeros_like(mu)
        sy_[:, hy:-hy or None] = np.abs(mu[:, 2 * hy:] - mu[:, :-2 * hy or None])[:, :sy_.shape[1] - 2 * hy] if hy else 0
        return np.maximum(spread, 0.5 * np.maximum(step, sy_))

    (w0, mu_w), (r0, mu_r), (f0, mu_f) = local_median(water), local_median(r2), local_median(ff)
    noise_w = noise_f = noise_r = None
    if noise_sigma is not None and te_s is not None and noise_sigma > 0:
        from ukbmri.physics.liver_noise import crlb_sd

        sel = tissue_c & (cnt > 0.99)
        noise_w, noise_f, noise_r = (np.zeros(ff.shape) for _ in range(3))
        if sel.any():
            fr = np.clip(mu_f[sel], 0.0, 100.0) / 100.0
            amp = np.maximum(mu_w[sel], 0.0) / np.maximum(1.0 - fr, 1e-3)  # water map -> W + F
            cw, cf, cr = crlb_sd(amp * (1 - fr), amp * fr, mu_r[sel], te_s, field_strength_t, noise_sigma,
                                 complex_model=maps.method == "complex")
            noise_w[sel], noise_f[sel], noise_r[sel] = cw, cf, cr

    def homogeneous() -> np.ndarray:
        """Step 3's homogeneous liver-like tissue (only the image rules need it)."""
        tol_w = cv_max * np.maximum(mu_w, 1e-12)
        tol_r = 2.0 * cv_max * np.maximum(mu_r, 1e-12) + 2.0
        tol_f = np.full(ff.shape, ff_sd_max)
        if noise_w is not None:
            tol_w = np.hypot(tol_w, noise_k * noise_w)
            tol_r = np.hypot(tol_r, noise_k * noise_r)
            tol_f = np.hypot(tol_f, noise_k * noise_f)
        homog = (tissue_c & (cnt > 0.99) & (local_spread(w0, mu_w) <= tol_w) & (local_spread(r0, mu_r) <= tol_r)
                 & (local_spread(f0, mu_f) <= tol_f))
        # small holes (scattered fit outliers in noisy tissue) are filled; organ boundaries are
        # lines, not enclosed specks, and stay
        holes = ndi.binary_fill_holes(homog) & ~homog
        hl, nh = ndi.label(holes)
        if nh:
            hsize = np.asarray(ndi.sum(holes, hl, np.arange(1, nh + 1)))
            homog = homog | np.isin(hl, 1 + np.flatnonzero(hsize * sx * sy <= 40.0))
        return homog

    rd = None
    if right_direction is not None:
        rd = np.asarray(right_direction, dtype=float)
        rd = rd / max(np.linalg.norm(rd), 1e-12)
    pdir = posterior_direction(affine_lps) if affine_lps is not None else None
    t = SliceTissue(water=water, r2=r2, ff=ff, sig=sig, tissue=tissue, homog=None, noise_w=noise_w,
                    noise_r=noise_r, noise_f=noise_f, spacing=(sx, sy), centre=(cx, cy), radius_mm=float(radius_mm),
                    right=rd, posterior=pdir,
                    echoes=None if echoes is None else np.abs(np.asarray(echoes)).reshape(ff.shape + (-1,)),
                    echo_sigma=noise_sigma)

    def heuristic_region() -> np.ndarray:
        nonlocal t
        if t.homog is None:
            t = replace(t, homog=homogeneous())
        return rules_region(t, split_mm=split_mm, min_area_mm2=min_area_mm2, anchor_mm=anchor_mm,
                            max_posterior=max_posterior, r2star_range=r2star_range, info=info)

    def roi_of(liver: np.ndarray, liver_like_only: bool) -> np.ndarray:
        return roi_in_region(t, liver, liver_like_only, margin_mm=margin_mm, vessel_window_mm=vessel_window_mm,
                             vessel_tolerance=vessel_tolerance, min_voxels=min_voxels,
                             signal_is_water=magnitude is None)

    liver = None
    if localiser is not None and rd is not None:
        liver = localised_region(localiser, maps, body, tissue, (sx, sy), rd, pdir, min_area_mm2=min_area_mm2,
                                 info=info)
    localised = liver is not None
    if liver is None:
        liver = heuristic_region()

    # 5. ROI: eroded, vessels and outliers removed
    roi = roi_of(liver, localised)
    if localised and roi.sum() < min_voxels:  # nothing usable inside the proposal: the image rules decide
        if info is not None:
            info["localiser"].update(used=False, rejected=f"ROI of the proposal {int(roi.sum())} voxels after "
                                                          "removing edges and vessels")
        liver = heuristic_region()
        roi = roi_of(liver, False)
    if roi.sum() < min_voxels:
        raise LiverNotFoundError("liver ROI too small after removing edges and vessels",
                              expected=f">= {min_voxels} voxels", found=int(roi.sum()))
    log.debug("liver ROI: %d voxels (region %d)", int(roi.sum()), int(liver.sum()))
    if info is not None:
        com_l = ndi.center_of_mass(liver)
        side_l = None
        if right_direction is not None:
            side_l = float(t.along(com_l[0], com_l[1], rd))
        post = None
        if pdir is not None:
            post = float(t.along(com_l[0], com_l[1], pdir))
        info.update(
            posterior=post,
            region=liver, region_area_mm2=float(liver.sum() * sx * sy),
            region_inscribed_mm=float(ndi.distance_transform_edt(ndi.binary_fill_holes(ndi.binary_closing(
                liver, structure=np.ones((3, 3), bool))), sampling=(sx, sy)).max()),
            side=side_l, body_radius_mm=float(radius_mm), body_area_mm2=float(body.sum() * sx * sy),
            region_depth_mm=float(np.median(depth[liver])),
        )
    return roi[:, :, None] if np.asarray(maps.ff_percent).ndim == 3 else roi


def localised_region(localiser, maps: FatWaterMaps, body: np.ndarray, tissue: np.ndarray,
                     spacing: tuple[float, float], right: np.ndarray, posterior: np.ndarray | None, *,
                     min_area_mm2: float, info: dict | None = None) -> np.ndarray | None:
    """The liver region a localiser proposes, or ``None`` when physics rejects the proposal.

    The proposal is the connected component of probability > 0.5 with the largest summed
    probability. It is rejected (the caller then uses the image rules) when there is none,
    when it is smaller than ``min_area_mm2``, or when less than ``MIN_TISSUE_FRACTION`` of it
    is liver-like tissue (water-dominant, liver R2*, full proton density, away from the body
    wall): a liver cross-section is mostly that, a network fooled by an unfamiliar image is
    not held to it otherwise. ``info["localiser"]`` records the proposal and the decision.
    """
    sx, sy = spacing
    prob = localiser.probability(_slice2d(maps.water), _slice2d(maps.fat), _slice2d(maps.ff_percent),
                                 _slice2d(maps.r2star_per_s), body, spacing, right, posterior)
    lab, n = ndi.label(prob > 0.5)
    rec = {"fingerprint": getattr(localiser, "fingerprint", ""), "used": False}
    if info is not None:
        info["localiser"] = rec
    if n == 0:
        rec["rejected"] = "no voxel with liver probability > 0.5"
        return None
    idx = np.arange(1, n + 1)
    best = int(idx[int(np.argmax(ndi.sum(prob, lab, idx)))])
    region = lab == best
    area = float(region.sum() * sx * sy)
    frac = float(tissue[region].mean())
    rec.update(area_mm2=area, probability_mean=float(prob[region].mean()), tissue_fraction=frac)
    if area < min_area_mm2:
        rec["rejected"] = f"proposal {area:.0f} mm^2 < {min_area_mm2:g} mm^2"
    elif frac < MIN_TISSUE_FRACTION:
        rec["rejected"] = f"only {100 * frac:.0f} % of the proposal is liver-like tissue"
    else:
        rec["used"] = True
    log.debug("localiser proposal: %s", rec)
    return region if rec["used"] else None


def liver_summary(maps: FatWaterMaps, roi: np.ndarray, *, values: FatWaterMaps | None = None) -> LiverSummary:
    """Median (headline), mean and SD of PDFF and R2* of ``values`` (default ``maps``) inside ``roi``."""
    src = values if values is not None else maps
    m = np.asarray(roi, dtype=bool)
    ff = np.asarray(src.ff_percent)
    if m.shape != ff.shape:
        m = m.reshape(ff.shape)
    f = ff[m]
    r = np.asarray(src.r2star_per_s)[m]
    ok = np.isfinite(f) & np.isfinite(r)
    f, r = f[ok], r[ok]
    if f.size == 0:
        raise LiverInputError("the liver ROI holds no fitted voxels", expected="> 0 voxels", found=0)
    return LiverSummary(
        pdff_percent=float(np.median(f)), r2star_per_s=float(np.median(r)), n_voxels=int(f.size), mask=m,
        pdff_mean_percent=float(f.mean()), pdff_sd_percent=float(f.std()),
        r2star_mean_per_s=float(r.mean()), r2star_sd_per_s=float(r.std()),
    )
