"""Ground truth of a synthetic participant, computed from the phantom itself.

Volumes are integrated numerically: the phantom's labels are evaluated on a
regular grid (voxel centres) covering the structure's bounding box, and the
voxel count times the voxel volume is the volume. Grids are fine enough that
the integration error (checked against coarser and finer grids in the tests)
is well below the differences the models must resolve.

Definitions (UK Biobank / AMRA style):

* ``vat_l``: visceral adipose tissue between the femoral head tops and the
  diaphragm (~T9); ``asat_l``: subcutaneous adipose tissue of the torso
  (arms excluded) in the same range.
* ``thigh_muscle_volume_l``: muscle from the femoral head tops to the knees
  (both legs; hip muscles below the femoral head top count, as in AMRA);
  ``thigh_muscle_fat_free_volume_l`` removes its fat fraction.
* ``muscle_fat_percent``: proton-density fat fraction of thigh muscle.
* ``liver_pdff_percent``, ``liver_r2star_per_s``: of liver tissue.
* ``weight_kg``: density-weighted volume of the whole body (head and lower
  legs included; fat 0.92, lean ~1.06, bone 1.9, lung 0.3 kg/L).
* ``height_cm``: soles to vertex of the phantom (the sampled height).
"""

from __future__ import annotations

import numpy as np

from ukbmri.synth.anatomy import Phantom, build_phantom
from ukbmri.synth.participant import Participant
from ukbmri.synth.tissues import ADIPOSE_LABELS, BODY_LABELS, N_LABELS, Label

__all__ = ["truth_row", "TRUTH_COLUMNS", "grid_counts"]

#: truth.csv columns (the contract's first, then extras); ``quirks`` is added by the cohort
TRUTH_COLUMNS: tuple[str, ...] = (
    "eid",
    "sex_male",
    "age_years",
    "height_cm",
    "weight_kg",
    "vat_l",
    "asat_l",
    "liver_volume_l",
    "thigh_muscle_volume_l",
    "muscle_fat_percent",
    "liver_pdff_percent",
    "liver_r2star_per_s",
    "spleen_volume_l",
    "kidney_volume_l",
    "bmi_kg_m2",
    "body_volume_l",
    "total_adipose_l",
    "thigh_muscle_fat_free_volume_l",
)

#: integration grid spacing (mm) per quantity
BODY_STEP_MM = 4.0
ABDOMEN_STEP_MM = (2.5, 2.5, 3.0)  # x, y, z
ORGAN_STEP_MM = 1.5
LIVER_STEP_MM = 2.0
THIGH_STEP_MM = 3.0


def _axis(lo: float, hi: float, step: float) -> np.ndarray:
    n = max(int(np.ceil((hi - lo) / step)), 1)
    return lo + (np.arange(n) + 0.5) * step


def grid_counts(
    phantom: Phantom, lo, hi, step, *, torso_only: bool = False
) -> tuple[np.ndarray, float]:
    """Label histogram (voxel counts, length N_LABELS) on a grid over [lo, hi] and the voxel volume (mm^3)."""
    sx, sy, sz = (step, step, step) if np.isscalar(step) else step
    x, y, z = _axis(lo[0], hi[0], sx), _axis(lo[1], hi[1], sy), _axis(lo[2], hi[2], sz)
    counts = np.zeros(N_LABELS, dtype=np.int64)
    chunk = max(1, int(2_000_000 // (x.size * y.size)))  # bound memory
    for i in range(0, z.size, chunk):
        zz = z[i : i + chunk]
        lab = phantom.labels_grid(x, y, zz)
        if torso_only:
            lab = lab[phantom.torso_grid(x, y, zz)]
        counts += np.bincount(lab.ravel(), minlength=N_LABELS)[:N_LABELS]
    return counts, float(sx * sy * sz)


def _volume_l(phantom: Phantom, label: Label, step: float, z_range=None) -> float:
    lo, hi = phantom.label_bounds(label)
    lo, hi = lo.copy(), hi.copy()
    if z_range is not None:
        lo[2], hi[2] = max(lo[2], z_range[0]), min(hi[2], z_range[1])
    counts, dv = grid_counts(phantom, lo, hi, step)
    return float(counts[label] * dv * 1e-6)


def truth_row(p: Participant, phantom: Phantom | None = None) -> dict[str, float]:
    """Ground-truth phenotypes of participant ``p`` (see the module docstring)."""
    ph = build_phantom(p) if phantom is None else phantom
    t = ph.tissues
    lm = ph.landmarks
    lo, hi = ph.bounds
    body, dv = grid_counts(ph, lo, hi, BODY_STEP_MM)
    body_l = body * dv * 1e-6
    weight = float(np.sum(body_l * t.density))
    volume = float(np.sum(body_l[list(BODY_LABELS)]))
    adipose = float(np.sum(body_l[list(ADIPOSE_LABELS)]))

    z0, z1 = lm["z_abdomen_bottom"], lm["z_abdomen_top"]
    tlo, thi = ph.torso.bounds()
    alo = np.array([tlo[0], tlo[1], z0])
    ahi = np.array([thi[0], thi[1], z1])
    abd, dva = grid_counts(ph, alo, ahi, ABDOMEN_STEP_MM, torso_only=True)
    vat = float(abd[Label.VAT] * dva * 1e-6)
    asat = float(abd[Label.SAT] * dva * 1e-6)

    thigh = _volume_l(ph, Label.THIGH_MUSCLE, THIGH_STEP_MM, z_range=(lm["z_knee"], lm["z_femoral_head_top"]))
    mfat = t.pdff_percent(Label.THIGH_MUSCLE)
    h = p.height_cm / 100.0
    return {
        "eid": p.eid,
        "sex_male": int(p.sex_male),
        "age_years": p.age_years,
        "height_cm": round((lm["z_vertex"] - lm["z_floor"]) / 10.0, 3),
        "weight_kg": round(weight, 3),
        "vat_l": round(vat, 4),
        "asat_l": round(asat, 4),
        "liver_volume_l": round(_volume_l(ph, Label.LIVER, LIVER_STEP_MM), 4),
        "thigh_muscle_volume_l": round(thigh, 4),
        "muscle_fat_percent": round(mfat, 4),
        "liver_pdff_percent": round(t.pdff_percent(Label.LIVER), 4),
        "liver_r2star_per_s": round(float(t.r2star[Label.LIVER]), 3),
        "spleen_volume_l": round(_volume_l(ph, Label.SPLEEN, ORGAN_STEP_MM), 5),
        "kidney_volume_l": round(_volume_l(ph, Label.KIDNEY, ORGAN_STEP_MM), 5),
        "bmi_kg_m2": round(weight / (h * h), 3),
        "body_volume_l": round(volume, 3),
        "total_adipose_l": round(adipose, 3),
        "thigh_muscle_fat_free_volume_l": round(thigh * (1.0 - mfat / 100.0), 4),
    }
