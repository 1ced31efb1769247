"""The image rules of the liver ROI: homogeneous candidates, the anatomical choice, the growth.

Used by :func:`ukbmri.physics.liver_roi.find_liver_roi` when no localiser is given, when the
patient's right is unknown, or when physics rejects the localiser's proposal
(``docs/liver_qc.md``, "The image rules").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ukbmri.errors import LiverNotFoundError

__all__ = ["SliceTissue", "rules_region"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SliceTissue:
    """One slice's maps and tissue masks, shared by the rules and the ROI step (``(x, y)`` arrays)."""

    water: np.ndarray = field(repr=False)
    r2: np.ndarray = field(repr=False)
    ff: np.ndarray = field(repr=False)
    sig: np.ndarray = field(repr=False)  #: signal for the vessel test (water map or a magnitude)
    tissue: np.ndarray = field(repr=False)  #: liver-like tissue away from the body wall
    homog: np.ndarray | None = field(repr=False)  #: homogeneous liver-like tissue (None: not built yet)
    noise_w: np.ndarray | None = field(repr=False)  #: expected noise SD of the maps (None: unknown)
    noise_r: np.ndarray | None = field(repr=False)
    noise_f: np.ndarray | None = field(repr=False)
    spacing: tuple[float, float]
    centre: tuple[float, float]  #: body centroid (index coordinates)
    radius_mm: float  #: body's equivalent radius
    right: np.ndarray | None  #: unit index-space vector to the patient's right
    posterior: np.ndarray | None
    #: (x, y, echoes) magnitudes and their noise SD, for the slow-decay test (None: not given)
    echoes: np.ndarray | None = field(default=None, repr=False)
    echo_sigma: float | None = None

    def along(self, px, py, d) -> np.ndarray:
        """Offset of index position(s) from the body centre along direction ``d``, in body radii."""
        (cx, cy), (sx, sy) = self.centre, self.spacing
        return ((px - cx) * sx * d[0] + (py - cy) * sy * d[1]) / self.radius_mm


def _disk(radius_px: tuple[float, float]) -> np.ndarray:
    rx, ry = max(radius_px[0], 0.5), max(radius_px[1], 0.5)
    nx, ny = int(np.ceil(rx)), int(np.ceil(ry))
    x, y = np.meshgrid(np.arange(-nx, nx + 1), np.arange(-ny, ny + 1), indexing="ij")
    return (x / rx) ** 2 + (y / ry) ** 2 <= 1.0


def rules_region(t: SliceTissue, *, split_mm: float, min_area_mm2: float, anchor_mm: float,
                 max_posterior: float, r2star_range: tuple[float, float], info: dict | None = None) -> np.ndarray:
    """Steps 3b-4 of :func:`~ukbmri.physics.liver_roi.find_liver_roi`: the liver region by the image rules.

    Homogeneous candidates (``t.homog`` eroded by ``split_mm``), the choice (largest area on
    the patient's right x thickness, not posterior), and the growth from its anchor.
    Raises :class:`LiverNotFoundError` when nothing qualifies.
    """
    sx, sy = t.spacing
    water, r2, ff, tissue, homog = t.water, t.r2, t.ff, t.tissue, t.homog
    noise_w, noise_r, noise_f = t.noise_w, t.noise_r, t.noise_f
    rd, pdir, along = t.right, t.posterior, t.along
    core = ndi.binary_erosion(homog, structure=_disk((split_mm / sx, split_mm / sy)))
    if info is not None:
        info["stages"] = {"tissue": tissue, "homogeneous": homog, "core": core}
    lab, n = ndi.label(core)
    if n == 0:
        raise LiverNotFoundError("no liver-like region found in the slice",
                              expected=f"homogeneous water-dominant tissue with R2* in {r2star_range} /s",
                              found=f"{int(tissue.sum())} liver-like voxels, none {split_mm:g} mm from an edge")
    idx = np.arange(1, n + 1)
    area = ndi.sum(np.ones_like(lab), lab, index=idx) * sx * sy
    com = np.array(ndi.center_of_mass(core, lab, idx)).reshape(-1, 2)
    ok = area >= min_area_mm2
    # the liver is the largest solid organ, thick (not a band of muscle along the wall),
    # and lies mostly on the patient's right: score = area on the right x thickness factor
    inscribed = np.asarray(ndi.maximum(ndi.distance_transform_edt(core, sampling=(sx, sy)), lab, idx)) + split_mm
    thick = np.clip(inscribed / 20.0, 0.25, 1.0)
    score = area * thick
    if rd is not None:
        # the part of each candidate on the patient's right counts (a liver that reaches across
        # the midline keeps its right lobe; an organ on the left scores little)
        xg, yg = np.meshgrid(np.arange(core.shape[0]), np.arange(core.shape[1]), indexing="ij")
        on_right = along(xg, yg, rd) > 0
        area_r = np.asarray(ndi.sum(on_right, lab, idx)) * sx * sy
        score = area_r * thick
        right = ok & (area_r >= min_area_mm2)
        ok = right if right.any() else ok
    if pdir is not None:
        # kidneys and paraspinal muscles lie posterior; a candidate there is chosen only when
        # nothing anterior to them qualifies (the choice is then flagged liver_roi_posterior)
        post_c = along(com[:, 0], com[:, 1], pdir)
        front = ok & (post_c <= max_posterior)
        ok = front if front.any() else ok
    if not ok.any():
        raise LiverNotFoundError("no liver-sized region found in the slice",
                                 expected=f">= {min_area_mm2:g} mm^2 of liver-like tissue",
                                 found=f"largest {float(area.max()):.0f} mm^2")
    best = idx[ok][int(np.argmax(score[ok]))]
    log.debug("liver candidates: area %s mm^2, score %s, chosen %d", np.round(area).tolist(),
              np.round(score).tolist(), int(best))
    seed = lab == best
    # 4. anchor: the point of the chosen component that is deep inside it and far to the
    #    patient's right; the liver is what resembles the anchor's neighbourhood (water
    #    signal, R2*, fat fraction within max(4 MAD, a floor)) and is connected to it
    comp = lab == best
    depth_c = ndi.distance_transform_edt(comp, sampling=(sx, sy))
    if rd is not None:
        xx, yy = np.meshgrid(np.arange(comp.shape[0]), np.arange(comp.shape[1]), indexing="ij")
        side_px = along(xx, yy, rd)
        pull = depth_c * (1.0 + np.clip(side_px, 0.0, 1.0))
    else:
        pull = depth_c
    anchor = np.unravel_index(int(np.argmax(np.where(comp, pull, -1.0))), comp.shape)
    xx, yy = np.meshgrid(np.arange(comp.shape[0]), np.arange(comp.shape[1]), indexing="ij")
    near_anchor = comp & (((xx - anchor[0]) * sx) ** 2 + ((yy - anchor[1]) * sy) ** 2 <= anchor_mm ** 2)

    def near(v: np.ndarray, floor: float) -> np.ndarray:
        vals = v[near_anchor]
        med = np.median(vals)
        mad = 1.4826 * np.median(np.abs(vals - med))
        return np.abs(v - med) <= max(4.0 * mad, floor)

    med_w = float(np.median(water[near_anchor]))
    fl_w, fl_r, fl_f = 0.08 * med_w, 4.0, 2.0
    if noise_w is not None:  # floors at least the noise expected at the anchor
        fl_w = max(fl_w, 3.0 * float(np.median(noise_w[near_anchor])))
        fl_r = max(fl_r, 3.0 * float(np.median(noise_r[near_anchor])))
        fl_f = max(fl_f, 3.0 * float(np.median(noise_f[near_anchor])))
    similar = tissue & near(water, fl_w) & near(r2, fl_r) & near(ff, fl_f)
    seed = comp & similar
    lab1, _ = ndi.label(seed)
    if lab1[anchor] == 0:  # the anchor voxel itself is an outlier: the commonest label around it
        around = lab1[near_anchor]
        around = around[around > 0]
        if around.size == 0:
            raise LiverNotFoundError("liver region is not homogeneous around its centre",
                                     expected="homogeneous liver tissue", found="mixed values")
        keep = int(np.bincount(around).argmax())
        dist = np.where(lab1 == keep, ((xx - anchor[0]) * sx) ** 2 + ((yy - anchor[1]) * sy) ** 2, np.inf)
        anchor = np.unravel_index(int(np.argmin(dist)), dist.shape)
    seed = lab1 == lab1[anchor]
    liver = ndi.binary_dilation(seed, structure=_disk((split_mm / sx + 1, split_mm / sy + 1))) & similar
    lab2, _ = ndi.label(liver)
    liver = lab2 == lab2[anchor]
    return liver
