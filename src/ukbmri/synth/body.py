"""The layered body of the phantom: torso, legs, arms and head.

Heights are fractions of the body height ``H`` above the soles (anthropometric
proportions: chin 0.87 H, shoulder 0.81 H, liver dome 0.705 H, umbilicus
0.60 H, hip joint 0.527 H, crotch 0.47 H, knee 0.285 H). Cross-sections are
tabulated for a reference man of 1.75 m and scaled by the participant's
frame, muscle, subcutaneous (SAT) and visceral (VAT) fat parameters, with
sex-specific fat patterns. The torso is three nested elliptic tubes (skin,
muscle fascia, body cavity) whose back rests on the scanner bed; legs and
arms are layered tubes. :func:`approx_mass_kg` integrates the layer
cross-sections (fast; used to calibrate fat to a target weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ukbmri.synth.shapes import Ellipsoid, EllipticTube

if TYPE_CHECKING:  # pragma: no cover
    from ukbmri.synth.participant import Participant

__all__ = [
    "approx_mass_kg",
    "body_layers",
    "vat_fraction",
    "y_back_of",
    "z_floor_of",
    "DIXON_PIXEL_MM",
    "FUSED_ROWS",
    "FUSED_COLS",
    "BED_ROWS",
]

REF_HEIGHT_MM = 1750.0
DIXON_PIXEL_MM = 2.232142925
FUSED_ROWS = 174  #: AP rows of the fused 20201 grid (stations 2-4)
FUSED_COLS = 224
BED_ROWS = 22  #: the last AP rows of the fused grid hold the scanner bed (MIMIR crops them)
BED_THICKNESS_MM = 60.0

# ---------------------------------------------------------------------------------------
# Torso table (reference man, 1.75 m): height fraction, cavity semi-axes (a LR, b AP),
# muscle wall thickness (lateral, anterior, posterior), SAT (lateral, anterior, posterior)
# for men and women. Cavity 0 = solid (no cavity).
_TORSO = np.array(
    [
        # frac   a_c   b_c  tml  tma  tmp | sat m (l, a, p) | sat f (l, a, p)
        [0.455, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0.470, 0, 0, 105, 65, 65, 14, 14, 12, 26, 26, 24],
        [0.490, 55, 40, 90, 30, 45, 17, 17, 12, 30, 28, 24],
        [0.525, 95, 65, 72, 20, 55, 18, 18, 13, 34, 30, 26],
        [0.560, 120, 70, 32, 15, 42, 20, 25, 12, 30, 32, 18],
        [0.585, 125, 74, 22, 12, 36, 22, 28, 12, 28, 32, 15],
        [0.600, 125, 74, 16, 12, 36, 22, 30, 12, 26, 32, 14],
        [0.640, 130, 78, 16, 12, 36, 20, 28, 12, 22, 28, 12],
        [0.680, 134, 84, 18, 15, 36, 15, 20, 10, 16, 22, 10],
        [0.700, 136, 88, 20, 18, 38, 12, 15, 10, 14, 30, 10],
        [0.720, 132, 88, 25, 25, 40, 10, 12, 8, 12, 40, 9],
        [0.760, 130, 85, 30, 30, 40, 8, 10, 8, 10, 30, 8],
        [0.790, 112, 72, 45, 30, 40, 8, 8, 6, 9, 10, 7],
        [0.805, 60, 40, 90, 40, 45, 6, 6, 6, 7, 7, 6],
        [0.815, 0, 0, 150, 45, 45, 6, 6, 6, 7, 7, 6],
        [0.830, 0, 0, 80, 50, 50, 5, 5, 5, 6, 6, 6],
        [0.850, 0, 0, 55, 55, 55, 5, 5, 5, 6, 6, 6],
        [0.875, 0, 0, 55, 55, 55, 5, 5, 5, 6, 6, 6],
    ]
)
# women: cavity width factors per knot (wider pelvis, narrower chest), AP factor
_FEMALE_A = np.interp(_TORSO[:, 0], [0.47, 0.56, 0.60, 0.70, 0.88], [1.04, 1.04, 0.95, 0.90, 0.88])
_FEMALE_B = 0.93
# men carry less abdominal subcutaneous fat (relative to the table) than the table suggests
_MALE_ABDOMINAL_SAT = np.interp(_TORSO[:, 0], [0.50, 0.54, 0.66, 0.70], [1.0, 0.8, 0.8, 1.0])
# abdominal knots whose cavity grows with visceral fat (weight per knot)
_VAT_GROWTH = np.interp(_TORSO[:, 0], [0.52, 0.56, 0.66, 0.70, 0.72], [0.0, 1.0, 1.0, 0.4, 0.0])

# Legs: fraction, muscle radius, SAT men, SAT women (mm, reference man)
LEG_TABLE = np.array(
    [
        [0.040, 22, 4, 5],
        [0.100, 30, 5, 6],
        [0.200, 48, 8, 10],
        [0.250, 45, 8, 10],
        [0.285, 42, 8, 10],
        [0.310, 48, 10, 16],
        [0.380, 62, 12, 22],
        [0.450, 72, 14, 26],
        [0.500, 75, 15, 28],
        [0.530, 70, 15, 28],
    ]
)
KNEE = 0.285
# Arms: fraction, muscle radius, SAT men, SAT women
_ARM = np.array(
    [
        [0.400, 18, 3, 4],
        [0.440, 25, 3, 4],
        [0.480, 20, 4, 6],
        [0.550, 30, 5, 8],
        [0.630, 28, 5, 9],
        [0.700, 33, 6, 11],
        [0.780, 38, 7, 12],
        [0.810, 35, 6, 10],
    ]
)

DIAPHRAGM = 0.695  #: split between thoracic and abdominal cavity content (also ~T9)
LIVER_TOP = 0.705
HIP_JOINT = 0.527


# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BodyLayers:
    """Nested tubes of torso, legs and arms (both sides), before organs."""

    torso: tuple[EllipticTube, EllipticTube, EllipticTube]  # skin, muscle, cavity
    legs: list[tuple[EllipticTube, EllipticTube, EllipticTube]]  # skin, thigh muscle, lower-leg muscle
    arms: list[tuple[EllipticTube, EllipticTube]]  # skin, muscle
    head: Ellipsoid
    zf: float  # z of the soles
    height: float
    w: float  # width scale
    y_back: float
    body_x: float
    leg_x: np.ndarray  # (n_leg_knots,) |x| of the leg axis
    q_vat: float
    base_a: np.ndarray  # cavity semi-axes per torso knot without visceral-fat growth
    base_b: np.ndarray


def _width_scale(p: Participant) -> float:
    return float(p.frame * (p.height_cm * 10.0 / REF_HEIGHT_MM) ** 0.6)


def vat_fraction(vat_level: float) -> float:
    """Fraction of the free abdominal cavity that is visceral fat for a VAT level."""
    return float(np.clip(0.12 + 0.24 * vat_level, 0.05, 0.8))


def y_back_of(p: Participant) -> float:
    """Bed top (y mm): ``bed_row`` AP rows below the top of the fused 174-row grid."""
    y0 = p.fov_y_mm - (FUSED_ROWS - 1) / 2.0 * DIXON_PIXEL_MM
    return y0 + p.bed_row * DIXON_PIXEL_MM


def z_floor_of(p: Participant) -> float:
    """z (mm) of the soles: the chin sits ``chin_offset_mm`` above the top 20201 slice."""
    return p.z_top_mm + p.chin_offset_mm - 0.87 * p.height_cm * 10.0


def body_layers(p: Participant, *, sat: float | None = None, vat: float | None = None) -> BodyLayers:
    sat = p.sat if sat is None else sat
    vat = p.vat if vat is None else vat
    H = p.height_cm * 10.0
    zf = z_floor_of(p)
    w = _width_scale(p)
    y_back = y_back_of(p)
    bx = p.body_x_mm
    female = not p.sex_male

    t = _TORSO
    zk = zf + t[:, 0] * H
    fa = _FEMALE_A if female else 1.0
    fb = _FEMALE_B if female else 1.0
    grow = _VAT_GROWTH * (vat - 1.0)
    base_a = t[:, 1] * w * fa
    base_b = t[:, 2] * w * fb
    # supine: visceral fat widens the abdomen about as much as it deepens it
    a_c = base_a * np.maximum(1.0 + 0.11 * grow, 0.5)
    b_c = base_b * np.maximum(1.0 + 0.13 * grow, 0.5)
    mus = p.muscle
    tml, tma, tmp = (t[:, 3] * w * mus, t[:, 4] * w * mus, t[:, 5] * w * mus)
    # solid (cavity-free) knots: the "muscle" is the whole cross-section, keep it plausible
    solid = t[:, 1] == 0
    tml = np.where(solid, t[:, 3] * w * (0.6 + 0.4 * mus), tml)
    tma = np.where(solid, t[:, 4] * w * (0.6 + 0.4 * mus), tma)
    tmp = np.where(solid, t[:, 5] * w * (0.6 + 0.4 * mus), tmp)
    s = t[:, 9:12] if female else t[:, 6:9] * _MALE_ABDOMINAL_SAT[:, None]
    # supine, subcutaneous fat spreads to the flanks more than it rises anteriorly
    sl, sa, sp = (s[:, 0] * sat**1.1, s[:, 1] * sat**0.8, s[:, 2] * sat**0.9)

    a_m, b_m, dy_m = a_c + tml, b_c + (tma + tmp) / 2.0, (tmp - tma) / 2.0
    a_o, b_o, dy_o = a_m + sl, b_m + (sa + sp) / 2.0, (sp - sa) / 2.0
    # anchor: outer posterior edge on the bed; cy_c + dy_m + dy_o + b_o = y_back
    cy_c = y_back - b_o - dy_o - dy_m
    cy_m = cy_c + dy_m
    cy_o = cy_m + dy_o
    cx = np.full_like(zk, bx)
    skin = EllipticTube(zk, cx, cy_o, a_o, b_o)
    muscle = EllipticTube(zk, cx, cy_m, a_m, b_m)
    cavity = EllipticTube(zk, cx, cy_c, a_c, b_c)

    # legs
    lg = LEG_TABLE
    lz = zf + lg[:, 0] * H
    r_m = 1.12 * lg[:, 1] * w * mus**0.3
    r_s = (lg[:, 3] if female else lg[:, 2]) * sat
    r_o = r_m + r_s
    hip_x = 0.80 * np.interp(zf + HIP_JOINT * H, zk, a_c) + 22.0 * w
    leg_x = np.where(lg[:, 0] >= KNEE, np.interp(lg[:, 0], [KNEE, 0.53], [80.0 * w, hip_x]), 80.0 * w)
    leg_x = np.maximum(leg_x, 0.0)
    legs = []
    for side in (-1.0, 1.0):
        lx = bx + side * leg_x
        ly = y_back - r_o
        thigh_sel = lg[:, 0] >= KNEE
        lower_sel = lg[:, 0] <= KNEE
        legs.append(
            (
                EllipticTube(lz, lx, ly, r_o, r_o),
                EllipticTube(lz[thigh_sel], lx[thigh_sel], ly[thigh_sel], r_m[thigh_sel], r_m[thigh_sel]),
                EllipticTube(lz[lower_sel], lx[lower_sel], ly[lower_sel], r_m[lower_sel], r_m[lower_sel]),
            )
        )

    # arms: resting on the bed against the torso (or the thighs below the torso)
    ar = _ARM
    az = zf + ar[:, 0] * H
    ra_m = ar[:, 1] * w * np.sqrt(mus)
    ra_o = ra_m + (ar[:, 3] if female else ar[:, 2]) * sat
    # the arm rests on the bed against the torso's flank at the arm's own height, where the
    # elliptic cross-section is narrower than at its widest point
    ta, tb = np.interp(az, zk, a_o), np.interp(az, zk, b_o)
    rel = np.clip((tb - ra_o) / np.maximum(tb, 1.0), 0.0, 1.0)
    torso_half = np.where(ar[:, 0] >= 0.475, ta * np.sqrt(1.0 - rel**2), 0.0)
    leg_half = np.where(ar[:, 0] < 0.53, np.interp(az, lz, leg_x + r_o), 0.0)
    ax = np.maximum(torso_half, leg_half) + ra_o + 3.0
    arms = []
    for side in (-1.0, 1.0):
        arms.append(
            (
                EllipticTube(az, bx + side * ax, y_back - ra_o, ra_o, ra_o),
                EllipticTube(az, bx + side * ax, y_back - ra_o, ra_m, ra_m),
            )
        )
    head = Ellipsoid((bx, y_back - 100.0 * w, zf + 0.935 * H), (75.0 * w, 95.0 * w, 0.066 * H))
    return BodyLayers(
        torso=(skin, muscle, cavity),
        legs=legs,
        arms=arms,
        head=head,
        zf=zf,
        height=H,
        w=w,
        y_back=y_back,
        body_x=bx,
        leg_x=leg_x,
        q_vat=vat_fraction(vat),
        base_a=base_a,
        base_b=base_b,
    )


def approx_mass_kg(p: Participant, *, sat: float | None = None, vat: float | None = None) -> float:
    """Fast whole-body mass estimate (kg) from the layer cross-sections (2 mm quadrature).

    Used to calibrate the fat parameters to a target weight; the ground-truth
    weight is integrated over the full label map in :mod:`ukbmri.synth.truth`.
    """
    L = body_layers(p, sat=sat, vat=vat)
    H, zf = L.height, L.zf
    step = 2.0
    z = zf + np.arange(0.5 * step, H, step)
    skin, muscle, cavity = L.torso
    a_o, a_m, a_c = skin.area(z), muscle.area(z), cavity.area(z)
    frac = (z - zf) / H
    rho_cav = np.where(frac > DIAPHRAGM, 0.55, L.q_vat * 0.92 + (1 - L.q_vat) * 1.03)
    torso = 0.92 * (a_o - a_m) + 1.07 * (a_m - a_c) + rho_cav * a_c
    limbs = 0.0
    for sk, thigh, lower in L.legs:
        m = thigh.area(z) + np.where(frac < KNEE, lower.area(z), 0.0)
        limbs = limbs + 0.92 * (sk.area(z) - m) + 1.10 * m
    for sk, mu in L.arms:
        limbs = limbs + 0.92 * (sk.area(z) - mu.area(z)) + 1.10 * mu.area(z)
    # torso and limbs overlap near the hips: count the torso only there
    limbs = np.where((frac > 0.47) & (frac < 0.53), limbs * 0.35, limbs)
    mass_mg = float(np.sum(torso + limbs)) * step  # mm^3 * kg/L = 1e-6 kg
    return mass_mg * 1e-6 + L.head.volume_mm3 * 1.10 * 1e-6
