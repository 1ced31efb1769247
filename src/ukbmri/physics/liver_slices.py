"""Automatic liver ROI on every slice of a multi-echo volume, per slice and overall (``ukbmri fatwater --liver``).

:func:`liver_fat_slices` runs :func:`ukbmri.physics.liver.liver_fat_from_maps` on each slice
and combines the slices: the overall PDFF (R2*) is the inverse-variance weighted mean of
the slice values (pooled-signal fits, :mod:`ukbmri.physics.liver_pooled`) of the slices not flagged ``liver_roi_unreliable`` (all found slices when
every one is flagged), its SD ``1 / sqrt(sum w)`` widened by the between-slice scatter
when that exceeds it (Birge ratio); the 95 % interval is +-1.96 SD.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ukbmri.errors import LiverNotFoundError
from ukbmri.physics.liver import LiverPhysicsResult, liver_fat_from_maps
from ukbmri.physics.liver_flags import UNRELIABLE
from ukbmri.physics.multiecho import FatWaterMaps, MultiEcho

__all__ = ["LiverSlices", "liver_fat_slices", "RIGHT_CHOICES", "right_direction_for"]

log = logging.getLogger(__name__)

#: ``--right`` choices for inputs without geometry: where the patient's right appears when
#: the array is shown as stored (first axis down, second axis across, like the ISMRM toolbox)
RIGHT_CHOICES = {"image-left": (0.0, -1.0), "image-right": (0.0, 1.0)}


def right_direction_for(choice: str) -> tuple[float, float]:
    """``(x, y)`` index direction of the patient's right for a ``--right`` choice."""
    return RIGHT_CHOICES[choice]


@dataclass(frozen=True, eq=False)
class LiverSlices:
    """Per-slice liver results (``None`` where no liver was found) and the overall values."""

    slices: tuple[LiverPhysicsResult | None, ...]
    errors: tuple[str | None, ...]  #: the LiverNotFoundError message of slices without a liver
    roi: np.ndarray = field(repr=False)  #: (x, y, z) bool, empty in slices without a liver
    pdff_percent: float = float("nan")
    pdff_ci95: tuple[float, float] = (float("nan"), float("nan"))
    r2star_per_s: float = float("nan")
    r2star_ci95: tuple[float, float] = (float("nan"), float("nan"))
    flags: tuple[str, ...] = ()

    def rows(self) -> list[dict]:
        """Summary rows: ``liver_slice_<z>`` per slice and ``liver`` overall."""
        out = []
        for z, (r, err) in enumerate(zip(self.slices, self.errors)):
            row: dict = {"region": f"liver_slice_{z}"}
            if r is None:
                row.update(n_voxels=0, liver_flags="liver_not_found", liver_error=err)
            else:
                row.update(_values(r.pdff_percent, r.pdff_ci95, r.r2star_per_s, r.r2star_ci95),
                           ff_median_percent=r.summary.pdff_percent, r2star_median_per_s=r.summary.r2star_per_s,
                           n_voxels=r.n_voxels, liver_flags=";".join(r.flags))
            out.append(row)
        row = {"region": "liver", "n_voxels": int(self.roi.sum()), "liver_flags": ";".join(self.flags)}
        row.update(_values(self.pdff_percent, self.pdff_ci95, self.r2star_per_s, self.r2star_ci95))
        out.append(row)
        return out


def _values(pdff, pci, r2, rci) -> dict:
    return {"pdff_percent": pdff, "pdff_ci95_low_percent": pci[0], "pdff_ci95_high_percent": pci[1],
            "r2star_per_s": r2, "r2star_ci95_low_per_s": rci[0], "r2star_ci95_high_per_s": rci[1]}


def _combine(values: list[float], cis: list[tuple[float, float]]) -> tuple[float, tuple[float, float]]:
    v = np.asarray(values, dtype=float)
    sd = np.asarray([(hi - lo) / 3.92 for lo, hi in cis], dtype=float)
    sd = np.maximum(sd, 1e-6)
    w = 1.0 / sd ** 2
    mean = float(np.sum(w * v) / np.sum(w))
    se = 1.0 / math.sqrt(float(np.sum(w)))
    if v.size > 1:  # Birge ratio: widen when the slices scatter more than their intervals say
        chi2 = float(np.sum(w * (v - mean) ** 2)) / (v.size - 1)
        se *= math.sqrt(max(chi2, 1.0))
    return mean, (mean - 1.96 * se, mean + 1.96 * se)


def liver_fat_slices(data: MultiEcho, maps: FatWaterMaps, *, device: str = "cpu",
                     right_direction: tuple[float, float] | None = None, localiser="bundled") -> LiverSlices:
    """Liver ROI, PDFF and R2* on every slice of ``data`` (``maps``: fat reads as fat, see liver.py).

    ``right_direction`` is needed when ``data`` has no affine; ``localiser`` as in
    :func:`~ukbmri.physics.liver.liver_fat_from_maps`. Raises
    :class:`~ukbmri.errors.LiverNotFoundError` when no slice shows a liver.
    """
    kw = {"localiser": localiser}
    if data.affine_lps is None:
        kw["right_direction"] = right_direction
    results: list[LiverPhysicsResult | None] = []
    errors: list[str | None] = []
    roi = np.zeros(data.shape, dtype=bool)
    for z in range(data.shape[2]):
        try:
            r = liver_fat_from_maps(data, maps, z=z, device=device, **kw)
        except LiverNotFoundError as exc:
            log.info("%s", exc)
            results.append(None)
            errors.append(str(exc))
            continue
        results.append(r)
        errors.append(None)
        roi[:, :, z] = r.mask
    found = [r for r in results if r is not None]
    if not found:
        raise LiverNotFoundError("no liver found in any slice", path=data.source,
                                 expected="homogeneous water-dominant tissue on the patient's right (a liver)",
                                 found=f"{data.shape[2]} slices without one")
    good = [r for r in found if UNRELIABLE not in r.flags] or found
    pdff, pci = _combine([r.pdff_percent for r in good], [r.pdff_ci95 for r in good])
    r2, rci = _combine([r.r2star_per_s for r in good], [r.r2star_ci95 for r in good])
    flags = sorted({f for r in good for f in r.flags})  # the slices the overall value comes from
    return LiverSlices(slices=tuple(results), errors=tuple(errors), roi=roi, pdff_percent=pdff,
                       pdff_ci95=(max(pci[0], 0.0), pci[1]), r2star_per_s=r2, r2star_ci95=(max(rci[0], 0.0), rci[1]),
                       flags=tuple(flags))
