"""Tissue labels of the phantom and their MR and physical properties.

Every point of a phantom carries one integer label (:class:`Label`). A
:class:`TissueTable` maps labels to proton densities (water, fat; relative to
pure water = 1), R2* (1/s) and mass density (kg/L). The table is built per
participant because liver fat, liver R2* and muscle fat infiltration vary.

Proton-density fat fraction of a tissue is ``fat / (water + fat)``; the ground
truth (liver PDFF, muscle fat) is read from this table, so pixels and truth
agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

__all__ = ["Label", "TissueTable", "tissue_table", "ADIPOSE_LABELS", "BODY_LABELS"]


class Label(IntEnum):
    """Phantom tissue labels (uint8 values in label maps)."""

    AIR = 0
    BED = 1  #: scanner table / posterior coil pad (not part of the body)
    SAT = 2  #: subcutaneous adipose tissue
    MUSCLE = 3  #: skeletal muscle outside the thighs (trunk, arms, lower legs, neck)
    THIGH_MUSCLE = 4
    VAT = 5  #: visceral adipose tissue (abdominal and pelvic cavity)
    BOWEL = 6  #: bowel and other non-adipose cavity content
    MEDIASTINUM = 7  #: non-lung thoracic content (mixed fat / soft tissue)
    LUNG = 8
    HEART = 9
    LIVER = 10
    SPLEEN = 11
    KIDNEY = 12
    VESSEL = 13  #: aorta, vena cava, portal and hepatic veins
    BONE = 14  #: cortical / pelvic bone
    MARROW = 15  #: yellow (fatty) marrow of long bones
    VERTEBRA = 16  #: vertebral bodies (trabecular bone + red marrow)
    CSF = 17  #: spinal canal
    HEAD = 18  #: head (brain, skull, face) as one tissue


N_LABELS = len(Label)

#: adipose tissue labels (fat mass / total adipose volume)
ADIPOSE_LABELS = (Label.SAT, Label.VAT)
#: every label that belongs to the participant's body (weight)
BODY_LABELS = tuple(lab for lab in Label if lab not in (Label.AIR, Label.BED))

# label: (water PD, fat PD, R2* 1/s, density kg/L); participant-specific rows are overwritten
_BASE: dict[Label, tuple[float, float, float, float]] = {
    Label.AIR: (0.0, 0.0, 0.0, 0.0),
    Label.BED: (0.30, 0.02, 25.0, 0.0),
    Label.SAT: (0.10, 0.85, 35.0, 0.92),
    Label.MUSCLE: (0.72, 0.03, 30.0, 1.06),
    Label.THIGH_MUSCLE: (0.72, 0.03, 30.0, 1.06),
    Label.VAT: (0.10, 0.85, 35.0, 0.92),
    Label.BOWEL: (0.62, 0.03, 45.0, 1.00),
    Label.MEDIASTINUM: (0.45, 0.30, 40.0, 0.98),
    Label.LUNG: (0.06, 0.0, 250.0, 0.30),
    Label.HEART: (0.85, 0.02, 25.0, 1.06),
    Label.LIVER: (0.78, 0.02, 38.0, 1.06),
    Label.SPLEEN: (0.82, 0.004, 22.0, 1.06),
    Label.KIDNEY: (0.85, 0.004, 22.0, 1.05),
    Label.VESSEL: (0.90, 0.0, 12.0, 1.06),
    Label.BONE: (0.05, 0.08, 300.0, 1.90),
    Label.MARROW: (0.12, 0.70, 60.0, 0.98),
    Label.VERTEBRA: (0.35, 0.30, 90.0, 1.30),
    Label.CSF: (0.95, 0.0, 4.0, 1.01),
    Label.HEAD: (0.70, 0.15, 35.0, 1.10),
}

#: total proton density of liver tissue (water + fat), kept fixed so PDFF is exact
LIVER_PD = 0.80
#: total proton density of muscle tissue
MUSCLE_PD = 0.75
DENSITY_FAT = 0.92
DENSITY_LEAN = 1.06


@dataclass(frozen=True, eq=False)
class TissueTable:
    """Per-label properties as arrays indexed by label value."""

    water: np.ndarray  #: (N_LABELS,) water proton density
    fat: np.ndarray  #: (N_LABELS,) fat proton density
    r2star: np.ndarray  #: (N_LABELS,) 1/s
    density: np.ndarray  #: (N_LABELS,) kg/L

    def pdff_percent(self, label: Label) -> float:
        w, f = float(self.water[label]), float(self.fat[label])
        return 100.0 * f / (w + f) if w + f > 0 else float("nan")


def tissue_table(
    liver_pdff_percent: float, liver_r2star_per_s: float, muscle_fat_percent: float
) -> TissueTable:
    """Tissue properties for one participant.

    Parameters
    ----------
    liver_pdff_percent, liver_r2star_per_s:
        Liver proton-density fat fraction (%) and R2* (1/s).
    muscle_fat_percent:
        Fat fraction of skeletal muscle (intramuscular fat infiltration, %).
    """
    rows = dict(_BASE)
    ff = liver_pdff_percent / 100.0
    rows[Label.LIVER] = (
        LIVER_PD * (1.0 - ff),
        LIVER_PD * ff,
        liver_r2star_per_s,
        DENSITY_LEAN * (1.0 - ff) + DENSITY_FAT * ff,
    )
    mf = muscle_fat_percent / 100.0
    muscle = (MUSCLE_PD * (1.0 - mf), MUSCLE_PD * mf, 30.0 + 20.0 * mf, DENSITY_LEAN * (1 - mf) + DENSITY_FAT * mf)
    rows[Label.MUSCLE] = muscle
    rows[Label.THIGH_MUSCLE] = muscle
    arr = np.array([rows[Label(i)] for i in range(N_LABELS)], dtype=np.float64)
    return TissueTable(water=arr[:, 0], fat=arr[:, 1], r2star=arr[:, 2], density=arr[:, 3])
