"""QC flags of the physics liver fat: one acquisition (:func:`roi_flags`) and GRE vs IDEAL (:func:`cross_check`).

Every flag is documented (meaning and rule) in ``docs/liver_qc.md``; the thresholds are
anatomical (sizes of a liver cross-section versus muscles) or statistical (multiples of
the noise expected from the data), not fitted to any phantom.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["UNRELIABLE", "roi_flags", "cross_check", "FLAG_RULES"]

UNRELIABLE = "liver_roi_unreliable"

#: smallest liver cross-section (mm^2) expected in an axial slice placed through the liver
MIN_LIVER_AREA_MM2 = 3000.0
#: smallest inscribed radius (mm) of that cross-section (the liver is >= 40 mm thick there)
MIN_LIVER_INSCRIBED_MM = 20.0
#: largest posterior offset (body radii) of the region's centroid from the body centre: the
#: liver lies anterior-lateral / mid on the right; kidney and paraspinal muscles lie posterior
MAX_POSTERIOR = 0.2
#: fewest ROI voxels for a usable median
MIN_ROI_VOXELS = 50
#: the PDFF interval's half-width above which the value is not trusted (pp): the accuracy a liver value
#: is meant to have (issue 12: within 1.5 pp)
MAX_PDFF_HALF_WIDTH = 1.5
#: ROI voxel spread allowed above the noise (real tissue heterogeneity), pp
HETEROGENEITY_PP = 2.0
#: fit residual allowed, as a multiple of the noise
MAX_RESIDUAL_RATIO = 2.0
#: complex vs magnitude fits in the same ROI may differ by this much (pp)
MAX_METHOD_DIFF_PP = 2.0
#: the pooled fit and the median of the voxel-wise fits (same ROI, same model) estimate the same
#: values; a pooled fit stuck in a wrong solution differs grossly: by more than this (pp) ...
GROSS_POOLED_PDFF_PP = 10.0
#: ... or in R2* by more than this fraction of the larger value, plus 10 /s
GROSS_POOLED_R2STAR_REL = 0.5
#: known systematic GRE (20203) vs IDEAL (20254) PDFF difference allowed (pp, absolute) ...
GRE_IDEAL_PDFF_PP = 1.0
#: ... and R2* (relative: the protocols differ in echo spacing and slice)
GRE_IDEAL_R2STAR_REL = 0.15

FLAG_RULES = {
    UNRELIABLE: "any of the liver_roi_* / liver_fit_* / liver_pdff_imprecise flags below",
    "liver_roi_small": f"liver region < {MIN_LIVER_AREA_MM2:g} mm^2 or ROI < {MIN_ROI_VOXELS} voxels",
    "liver_roi_thin": f"liver region's inscribed radius < {MIN_LIVER_INSCRIBED_MM:g} mm (a band, e.g. muscle)",
    "liver_roi_off_right": "the region's centroid is not on the patient's right (orientation known)",
    "liver_roi_posterior": f"region centroid > {MAX_POSTERIOR:g} body radii posterior of the body centre "
                           "(kidney, paraspinal muscle; orientation known)",
    "liver_roi_heterogeneous": f"ROI robust SD of PDFF > 3 x its Cramer-Rao SD + {HETEROGENEITY_PP:g} pp",
    "liver_fit_residual_high": f"median ROI fit residual > {MAX_RESIDUAL_RATIO:g} x the noise",
    "liver_pdff_imprecise": f"95 % interval of the PDFF wider than +-{MAX_PDFF_HALF_WIDTH:g} pp",
    "liver_fit_methods_disagree": f"complex (voxel median) and magnitude (pooled) PDFF in the ROI differ by > "
                                  f"max({MAX_METHOD_DIFF_PP:g} pp, 1.96 x the SD of their difference); or the "
                                  f"pooled fit and the voxel-wise median differ grossly (PDFF > "
                                  f"{GROSS_POOLED_PDFF_PP:g} pp, R2* > {GROSS_POOLED_R2STAR_REL:g} x the larger "
                                  "+ 10 /s: a pooled fit stuck in a wrong solution)",
    "liver_gre_ideal_disagree": "GRE and IDEAL PDFF (or R2*) differ beyond the allowed difference plus intervals",
    "liver_gre_ideal_incomplete": "one of the two results is missing or unreliable for a reason other than "
                                  "liver_pdff_imprecise",
    "liver_not_found": "summary rows of fatwater --liver for slices (or inputs) where LiverNotFoundError was raised",
}


def roi_flags(data, maps, values, roi: np.ndarray, info: dict, sigma: float | None, *, pdff: float,
              pdff_ci: tuple[float, float], complex_pdff: float | None, r2star: float = float("nan"),
              voxel_median: tuple[float, float] = (float("nan"), float("nan")),
              complex_ci: tuple[float, float] = (float("nan"), float("nan")),
              spacing: tuple[float, float]) -> tuple[tuple[str, ...], dict]:
    """Flags and the QC numbers behind them for one slice's ROI (see ``docs/liver_qc.md``).

    ``pdff`` / ``r2star``: the pooled fit's values; ``voxel_median``: the medians (PDFF, R2*) of
    the voxel-wise fits ``values`` in the ROI (:func:`~ukbmri.physics.liver_roi.liver_summary`).
    """
    from ukbmri.physics.liver_noise import crlb_sd

    flags: list[str] = []
    n = int(roi.sum())
    qc: dict = {k: info.get(k) for k in ("region_area_mm2", "region_inscribed_mm", "side", "posterior",
                                         "body_area_mm2")}
    qc["roi_voxels"] = n
    if (info.get("region_area_mm2") or 0.0) < MIN_LIVER_AREA_MM2 or n < MIN_ROI_VOXELS:
        flags.append("liver_roi_small")
    if (info.get("region_inscribed_mm") or 0.0) < MIN_LIVER_INSCRIBED_MM:
        flags.append("liver_roi_thin")
    if info.get("side") is not None and info["side"] <= 0.0:
        flags.append("liver_roi_off_right")
    if info.get("posterior") is not None and info["posterior"] > MAX_POSTERIOR:
        flags.append("liver_roi_posterior")
    ff = np.asarray(values.ff_percent)[:, :, 0][roi]
    ff = ff[np.isfinite(ff)]
    if sigma is not None and sigma > 0 and ff.size:
        w = np.nanmedian(np.asarray(values.water)[:, :, 0][roi])
        fa = np.nanmedian(np.asarray(values.fat)[:, :, 0][roi])
        r2 = np.nanmedian(np.asarray(values.r2star_per_s)[:, :, 0][roi])
        _, sd_ff, _ = crlb_sd(w, fa, r2, data.te_s, data.field_strength_t, sigma)
        med = float(np.median(ff))
        rsd = 1.4826 * float(np.median(np.abs(ff - med)))
        qc["pdff_robust_sd"], qc["pdff_crlb_sd"] = rsd, float(sd_ff)
        if rsd > 3.0 * float(sd_ff) + HETEROGENEITY_PP:
            flags.append("liver_roi_heterogeneous")
        mag = np.abs(np.asarray(data.images))[:, :, 0]
        rms = np.sqrt(np.mean(mag ** 2, axis=-1))
        res = (np.asarray(maps.residual)[:, :, 0] * rms)[roi]
        chan = math.sqrt(2.0) if data.is_complex else 1.0
        ratio = float(np.nanmedian(res)) / (chan * sigma) if res.size else float("nan")
        qc["residual_to_noise"] = ratio
        if np.isfinite(ratio) and ratio > MAX_RESIDUAL_RATIO:
            flags.append("liver_fit_residual_high")
    half = 0.5 * (pdff_ci[1] - pdff_ci[0])
    qc["pdff_half_width"] = float(half)
    if not np.isfinite(half) or half > MAX_PDFF_HALF_WIDTH:
        flags.append("liver_pdff_imprecise")
    # the pooled fit against the voxel-wise medians of the same ROI and model: a gross difference
    # is a pooled fit stuck in a wrong solution (its jackknife replicates are stuck with it)
    vox_ff, vox_r2 = voxel_median
    qc["pooled_minus_voxel_median_pp"] = float(pdff - vox_ff)
    gross = (abs(pdff - vox_ff) > GROSS_POOLED_PDFF_PP
             or (np.isfinite(r2star) and np.isfinite(vox_r2)
                 and abs(r2star - vox_r2) > GROSS_POOLED_R2STAR_REL * max(r2star, vox_r2) + 10.0))
    if gross:
        flags.append("liver_fit_methods_disagree")
    if complex_pdff is not None and not gross:
        # both values carry sampling noise: the complex median's interval counts as well
        qc["complex_minus_magnitude_pp"] = float(complex_pdff - pdff)
        s_c = _sd_from_ci(complex_ci) if np.all(np.isfinite(complex_ci)) else 0.0
        allowed = max(MAX_METHOD_DIFF_PP, 1.96 * math.hypot(half / 1.96, s_c))
        if not np.isfinite(complex_pdff) or abs(complex_pdff - pdff) > allowed:
            flags.append("liver_fit_methods_disagree")
    if flags:
        flags.insert(0, UNRELIABLE)
    return tuple(flags), qc


def _sd_from_ci(ci: tuple[float, float]) -> float:
    return (ci[1] - ci[0]) / (2 * 1.96)


def _comparable(result) -> bool:
    """Usable in the GRE-vs-IDEAL comparison: present, and at worst only imprecise."""
    if result is None:
        return False
    return UNRELIABLE not in result.flags or set(result.flags) - {UNRELIABLE} == {"liver_pdff_imprecise"}


def cross_check(gre, ideal) -> tuple[str, ...]:
    """QC flags comparing the GRE (20203) and IDEAL (20254) results of one visit.

    Rule (``docs/liver_qc.md``): the PDFFs disagree when
    ``|PDFF_gre - PDFF_ideal| > GRE_IDEAL_PDFF_PP + 1.96 sqrt(sd_gre^2 + sd_ideal^2)`` with
    ``sd = (interval width) / 3.92``; the R2* values when their relative difference exceeds
    ``GRE_IDEAL_R2STAR_REL`` plus the same interval term (relative to their mean). Either
    gives ``liver_gre_ideal_disagree``. A result flagged unreliable only for its wide interval
    (``liver_pdff_imprecise``: the ROI is fine, the value honestly uncertain) still takes part,
    with that interval: it can still expose a precise value that is wrong. ``None`` for one of
    them, or a result unreliable for any other reason, gives ``liver_gre_ideal_incomplete``.
    """
    if not (_comparable(gre) and _comparable(ideal)):
        return ("liver_gre_ideal_incomplete",)
    flags = []
    d = abs(gre.pdff_percent - ideal.pdff_percent)
    s = math.hypot(_sd_from_ci(gre.pdff_ci95), _sd_from_ci(ideal.pdff_ci95))
    r_mean = 0.5 * (gre.r2star_per_s + ideal.r2star_per_s)
    dr = abs(gre.r2star_per_s - ideal.r2star_per_s) / max(r_mean, 1e-6)
    sr = math.hypot(_sd_from_ci(gre.r2star_ci95), _sd_from_ci(ideal.r2star_ci95)) / max(r_mean, 1e-6)
    bad_ff = not math.isfinite(s) or d > GRE_IDEAL_PDFF_PP + 1.96 * s
    bad_r2 = not math.isfinite(sr) or dr > GRE_IDEAL_R2STAR_REL + 1.96 * sr
    if bad_ff or bad_r2:
        flags.append("liver_gre_ideal_disagree")
    return tuple(flags)
