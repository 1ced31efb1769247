"""The analytic whole-body phantom of one participant.

:func:`build_phantom` turns a :class:`~ukbmri.synth.participant.Participant`
into a :class:`Phantom`: a painting program of analytic solids in patient LPS
millimetres (x = patient left, y = posterior, z = superior) plus the
participant's tissue table. The body lies supine with its back on the scanner
bed (a slab at ``y >= y_back``).

The layered body (torso, limbs, head) comes from :mod:`ukbmri.synth.body`;
this module adds the inside: the cavity split into visceral fat and bowel
by a smooth random texture whose threshold follows the participant's VAT
level, spine, pelvis and femoral heads, lungs and heart, liver (right and
left lobe), spleen, kidneys, and vessels (aorta, vena cava through the
posterior liver, portal and hepatic veins).

The head and the lower legs and feet lie outside the neck-to-knee field of
view but are part of the phantom, so the weight is that of the whole body.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from ukbmri.synth.body import (
    BED_THICKNESS_MM,
    DIAPHRAGM,
    HIP_JOINT,
    KNEE,
    LIVER_TOP,
    LEG_TABLE,
    body_layers,
)
from ukbmri.synth.shapes import Box, Capsule, Ellipsoid, EllipticTube, Paint, Program, Split, Texture
from ukbmri.synth.tissues import Label, TissueTable, tissue_table

if TYPE_CHECKING:  # pragma: no cover
    from ukbmri.synth.participant import Participant

__all__ = ["Phantom", "build_phantom"]


@dataclass(frozen=True, eq=False)
class Phantom:
    """One participant's body: a label program, tissue table and landmarks (LPS mm)."""

    program: Program
    tissues: TissueTable
    landmarks: dict[str, float]  #: z (mm) of chin, knee, liver centre, abdomen range, ...
    y_back: float  #: bed top surface (y, mm); the body's back rests on it
    bounds: tuple[np.ndarray, np.ndarray]  #: body bounding box (lo, hi) in mm, bed excluded
    torso: EllipticTube  #: the torso's skin surface (ASAT is subcutaneous fat inside it)

    def torso_grid(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``(len(z), len(y), len(x))`` bool: inside the torso (not arms or legs)."""
        xa, ya, za = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
        return np.broadcast_to(
            self.torso.inside(xa[None, None, :], ya[None, :, None], za[:, None, None]), (za.size, ya.size, xa.size)
        )

    def label_bounds(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box (lo, hi) of every solid painted with ``label``."""
        boxes = [s.shape.bounds() for s in self.program.steps if isinstance(s, Paint) and s.label == label]
        if not boxes:
            raise KeyError(f"no solid is painted with label {label}")
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def labels_grid(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``(len(z), len(y), len(x))`` uint8 labels on an axial grid (coordinates in mm)."""
        return self.program.labels_grid(x, y, z)

    def labels_points(self, points: np.ndarray) -> np.ndarray:
        """Labels at ``(n, 3)`` LPS points."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return self.program.labels_points(pts[:, 0], pts[:, 1], pts[:, 2])

    def properties(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(water PD, fat PD, R2* 1/s) for a label array."""
        t = self.tissues
        return t.water[labels], t.fat[labels], t.r2star[labels]


# ---------------------------------------------------------------------------------------
def build_phantom(p: Participant) -> Phantom:
    """The full painting program and tissue table of one participant."""
    b = _Builder(p)
    b.limbs()
    b.torso()
    vertebrae = b.spine()
    b.pelvis()
    b.thorax()
    liver = b.abdomen()
    b.vessels(vertebrae, liver)
    L = b.L
    skin = L.torso[0]
    outer = [sk for sk, _, _ in L.legs] + [sk for sk, _ in L.arms] + [skin, L.head]
    body_lo = np.min([s.bounds()[0] for s in outer], axis=0) - 1.0
    body_hi = np.max([s.bounds()[1] for s in outer], axis=0) + 1.0
    body_hi[1] = min(body_hi[1], L.y_back + 0.5)
    zh, H, w = b.zh, L.height, L.w
    landmarks = {
        "z_floor": L.zf,
        "z_vertex": L.zf + H,
        "z_chin": zh(0.87),
        "z_shoulder": zh(0.81),
        "z_diaphragm": zh(DIAPHRAGM),
        "z_liver_top": liver.z_top,
        "z_liver_centre": liver.z_centre,
        "x_liver_centre": float(liver.right_lobe.center[0]),
        "y_liver_centre": float(liver.right_lobe.center[1]),
        "z_umbilicus": zh(0.60),
        "z_hip_joint": zh(HIP_JOINT),
        "z_femoral_head_top": zh(HIP_JOINT) + 24.0 * w,
        "z_crotch": zh(0.47),
        "z_knee": zh(KNEE),
        "z_abdomen_bottom": zh(HIP_JOINT) + 24.0 * w,
        "z_abdomen_top": zh(DIAPHRAGM),
        "x_body": L.body_x,
        "y_body_at_liver": float(skin.at(np.array(liver.z_centre))[1]),
    }
    tissues = tissue_table(p.liver_pdff_percent, p.liver_r2star_per_s, p.muscle_fat_percent)
    return Phantom(
        program=Program(tuple(b.steps)),
        tissues=tissues,
        landmarks=landmarks,
        y_back=L.y_back,
        bounds=(body_lo, body_hi),
        torso=skin,
    )


@dataclass(frozen=True)
class _Liver:
    right_lobe: Ellipsoid
    z_top: float
    z_centre: float
    back: float  # posterior cavity wall (y) at the liver
    b0: float  # base cavity AP semi-axis at the liver


_CAVITY_CONTENT = (Label.MEDIASTINUM, Label.VAT, Label.BOWEL)


class _Builder:
    """Collects the painting steps of one participant, section by section (order matters)."""

    def __init__(self, p: Participant) -> None:
        self.p = p
        self.L = body_layers(p)
        self.steps: list = []

    def zh(self, frac: float) -> float:
        """z (mm) at a fraction of the body height."""
        return self.L.zf + frac * self.L.height

    def cav(self, frac: float) -> tuple[float, float, float, float, float, float, float]:
        """Cavity at a height: centre, semi-axes, base (no-VAT) semi-axes, posterior wall y."""
        cavity = self.L.torso[2]
        z = self.zh(frac)
        cx, cy, a, b = (float(v) for v in cavity.at(np.array(z)))
        a0 = float(np.interp(z, cavity.z, self.L.base_a))
        b0 = float(np.interp(z, cavity.z, self.L.base_b))
        return cx, cy, a, b, a0, b0, cy + b

    def paint(self, shape, label: Label, over: tuple | None = None) -> None:
        self.steps.append(Paint(shape, label, over))

    def limbs(self) -> None:
        """Scanner bed, legs (layer by layer over both sides) with bones, arms, head."""
        L, zh, w, bx = self.L, self.zh, self.L.w, self.L.body_x
        bed = Box((-400.0, L.y_back + 0.5, L.zf - 200.0), (400.0, L.y_back + BED_THICKNESS_MM, L.zf + L.height + 200.0))
        self.paint(bed, Label.BED)
        for sk, _, _ in L.legs:
            self.paint(sk, Label.SAT)
        for _, thigh, lower in L.legs:
            self.paint(thigh, Label.THIGH_MUSCLE)
            self.paint(lower, Label.MUSCLE)
        for side, (sk, thigh, _) in zip((-1.0, 1.0), L.legs):
            top, knee = zh(0.512), zh(0.292)
            y_top = float(thigh.at(np.array(top))[1])
            y_knee = float(thigh.at(np.array(knee))[1])
            x_top = bx + side * (float(np.interp(0.512, LEG_TABLE[:, 0], L.leg_x)) + 8.0 * w)
            x_knee = bx + side * 80.0 * w
            self.paint(Capsule((x_top, y_top, top), (x_knee, y_knee, knee), 14.0 * w), Label.BONE)
            self.paint(Capsule((x_top, y_top, top), (x_knee, y_knee, knee), 9.0 * w), Label.MARROW)
            ya, yb = float(sk.at(np.array(zh(0.28)))[1]), float(sk.at(np.array(zh(0.05)))[1])
            self.paint(Capsule((x_knee, ya, zh(0.278)), (x_knee, yb, zh(0.05)), 13.0 * w), Label.BONE)
            self.paint(Capsule((x_knee, ya, zh(0.278)), (x_knee, yb, zh(0.05)), 8.0 * w), Label.MARROW)
        for sk, _ in L.arms:
            self.paint(sk, Label.SAT)
        for _, mu in L.arms:
            self.paint(mu, Label.MUSCLE)
        for _, mu in L.arms:
            z_sh, z_el, z_wr = zh(0.80), zh(0.632), zh(0.485)
            cx_sh, cy_sh = (float(v) for v in mu.at(np.array(z_sh))[:2])
            cx_el, cy_el = (float(v) for v in mu.at(np.array(z_el))[:2])
            cx_wr, cy_wr = (float(v) for v in mu.at(np.array(z_wr))[:2])
            self.paint(Capsule((cx_sh, cy_sh, z_sh), (cx_el, cy_el, z_el + 8), 11.0 * w), Label.BONE)
            self.paint(Capsule((cx_el, cy_el, z_el - 8), (cx_wr, cy_wr, z_wr), 9.0 * w), Label.BONE)
        self.paint(L.head, Label.HEAD)

    def torso(self) -> None:
        """Skin (SAT), muscle, cavity; the cavity below the diaphragm splits into VAT and bowel."""
        L, zh = self.L, self.zh
        skin, muscle, cavity = L.torso
        self.paint(skin, Label.SAT)
        self.paint(muscle, Label.MUSCLE)
        self.paint(cavity, Label.MEDIASTINUM)
        # AMRA's thigh muscle region starts at the femoral head top: hip muscles count as thigh
        z_fht = zh(HIP_JOINT) + 24.0 * L.w
        self.paint(muscle.clip(zh(0.40), z_fht), Label.THIGH_MUSCLE, over=(Label.MUSCLE,))
        cx_a, cy_a, _, b_a, *_ = self.cav(0.64)
        nd = NormalDist()
        thr_abd = nd.inv_cdf(1.0 - L.q_vat)
        thr_pel = nd.inv_cdf(1.0 - min(L.q_vat + 0.08, 0.9))
        waves = np.asarray(self.p.texture_waves, dtype=np.float64)
        tex = Texture(waves, trend=(0.0, -0.45 / max(b_a, 1.0), 0.0), origin=(cx_a, cy_a, zh(0.64)))
        self.steps.append(
            Split(
                Label.MEDIASTINUM,
                tex,
                z_knots=np.array([zh(0.50), zh(0.56), zh(0.60)]),
                thresholds=np.array([thr_pel, thr_pel, thr_abd]),
                high=Label.VAT,
                low=Label.BOWEL,
                z_range=(zh(0.40), zh(DIAPHRAGM)),
                outside=Label.MEDIASTINUM,
            )
        )

    def spine(self) -> EllipticTube:
        """Vertebral bodies at the posterior cavity wall (in the neck inside the muscle), canal behind."""
        L, w, bx = self.L, self.L.w, self.L.body_x
        skin, muscle, cavity = L.torso
        zk = skin.z
        _, cys, acs, bcs = cavity.at(zk)
        _, cym, _, bm = muscle.at(zk)
        y_vb = np.where(acs > 0, cys + bcs - 2.0, cym + 0.3 * bm)
        frac = (zk - L.zf) / L.height
        sel = frac >= 0.54
        r_vb = np.interp(frac, [0.54, 0.70, 0.83, 0.88], [24.0, 20.0, 15.0, 13.0]) * w
        x = np.full(int(sel.sum()), bx)
        vb = EllipticTube(zk[sel], x, y_vb[sel], r_vb[sel], 0.8 * r_vb[sel])
        canal = EllipticTube(zk[sel], x, y_vb[sel] + 0.8 * r_vb[sel] + 9.0, np.full(x.size, 7.0), np.full(x.size, 6.0))
        self.paint(vb, Label.VERTEBRA)
        self.paint(canal, Label.CSF, over=(Label.MUSCLE,))
        return vb

    def pelvis(self) -> None:
        """Iliac wings, sacrum, femoral heads and necks."""
        L, zh, w, bx, H = self.L, self.zh, self.L.w, self.L.body_x, self.L.height
        cx_p, _, _, _, a_p, b_p, back_p = self.cav(0.565)
        for side in (-1.0, 1.0):
            wing = Ellipsoid((cx_p + side * 0.80 * a_p, back_p - 0.75 * b_p, zh(0.565)), (9.0 * w, 0.62 * b_p, 0.03 * H), side * 35.0)
            self.paint(wing, Label.BONE)
        _, _, _, _, a_h, b_h, back_h = self.cav(HIP_JOINT)
        cy_h = back_h - b_h
        self.paint(Ellipsoid((bx, back_h + 2.0, zh(0.548)), (0.33 * a_h, 0.18 * b_h + 6, 0.03 * H)), Label.BONE)
        for side in (-1.0, 1.0):
            hx = bx + side * 0.80 * a_h
            self.paint(Ellipsoid((hx, cy_h, zh(HIP_JOINT)), (24.0 * w, 24.0 * w, 24.0 * w)), Label.BONE)
            lx = bx + side * (float(np.interp(0.512, LEG_TABLE[:, 0], L.leg_x)) + 8.0 * w)
            ly = float(L.legs[0][1].at(np.array(zh(0.512)))[1])
            self.paint(Capsule((hx, cy_h, zh(HIP_JOINT)), (lx, ly, zh(0.512)), 15.0 * w), Label.BONE)

    def thorax(self) -> None:
        """Lungs, then the heart (cutting into the left lung)."""
        zh, H = self.zh, self.L.height
        cx_t, cy_t, a_t, b_t, *_ = self.cav(0.74)
        for side, scale in ((-1.0, 0.44), (1.0, 0.41)):
            lung = Ellipsoid((cx_t + side * 0.50 * a_t, cy_t + 0.08 * b_t, zh(0.752)), (scale * a_t, 0.86 * b_t, 0.078 * H))
            self.paint(lung, Label.LUNG, over=_CAVITY_CONTENT)
        cx_h, cy_h, a_h, b_h, *_ = self.cav(0.722)
        heart = Ellipsoid((cx_h + 0.14 * a_h, cy_h - 0.22 * b_h, zh(0.722)), (0.36 * a_h, 0.48 * b_h, 0.042 * H), 30.0)
        self.paint(heart, Label.HEART, over=_CAVITY_CONTENT + (Label.LUNG,))

    def abdomen(self) -> _Liver:
        """Liver (right + left lobe, its dome carving the lung base), spleen, kidneys.

        Organ sizes follow the frame (base cavity), positions the posterior and lateral walls.
        """
        p, zh, H = self.p, self.zh, self.L.height
        cx_l, _, a_l, _, a0, b0, back = self.cav(0.672)
        ls = (1.15 * p.liver_scale) ** (1.0 / 3.0)
        z_top = zh(LIVER_TOP)
        ra, rb, rc = 0.50 * a0 * ls, 0.78 * b0 * ls, 0.044 * H * ls
        z_lc = z_top - rc
        centre = (cx_l - a_l + ra + 4.0, back - 0.96 * b0, z_lc)
        left_scale, angle = ls, 0.0
        j = p.domain
        if j is not None:  # domain randomisation: liver shape, size and position
            ra, rb, rc = ra * j.liver_axes_scale[0], rb * j.liver_axes_scale[1], rc * j.liver_axes_scale[2]
            centre = tuple(c + d for c, d in zip(centre, j.liver_shift_mm))
            z_top, z_lc = centre[2] + rc, centre[2]
            left_scale, angle = ls * j.left_lobe_scale ** (1.0 / 3.0), j.liver_angle_deg
        right_lobe = Ellipsoid(centre, (ra, rb, rc), angle)
        left_lobe = Ellipsoid(
            (cx_l + 0.08 * a0, back - 1.42 * b0, z_top - 0.03 * H),
            (0.42 * a0 * left_scale, 0.36 * b0 * left_scale, 0.026 * H * left_scale),
        )
        organ_over = _CAVITY_CONTENT + (Label.LUNG,)
        self.paint(right_lobe, Label.LIVER, over=organ_over)
        self.paint(left_lobe, Label.LIVER, over=organ_over)
        if j is not None and j.riedel > 0:  # inferior (Riedel) extension of the right lobe
            cx, cy, cz = centre
            riedel = Ellipsoid((cx - 0.25 * ra, cy, cz - 0.8 * rc), (0.45 * ra, 0.6 * rb, j.riedel * rc))
            self.paint(riedel, Label.LIVER, over=organ_over)
        ss = p.spleen_scale ** (1.0 / 3.0)
        sa, sb, sc = 0.18 * a0 * ss, 0.45 * b0 * ss, 0.028 * H * ss
        spleen = Ellipsoid((cx_l + a_l - sa - 8.0, back - 0.55 * b0, z_lc + 0.004 * H), (sa, sb, sc), -35.0)
        self.paint(spleen, Label.SPLEEN, over=organ_over)
        ks = (1.15 * p.kidney_scale) ** (1.0 / 3.0)
        cx_k, _, _, _, a_k, b_k, back_k = self.cav(0.64)
        for side, frac in ((-1.0, 0.637), (1.0, 0.645)):
            rise = j.kidney_rise_mm if (j is not None and side < 0) else 0.0
            kidney = Ellipsoid(
                (cx_k + side * 0.42 * a_k, back_k - 0.40 * b_k, zh(frac) + rise),
                (0.20 * a_k * ks, 0.27 * b_k * ks, 0.030 * H * ks),
                side * 20.0,
            )
            self.paint(kidney, Label.KIDNEY, over=(Label.VAT, Label.BOWEL) + ((Label.LIVER,) if rise else ()))
        if j is not None:
            self._touching_organs(j, right_lobe, left_lobe)
        return _Liver(right_lobe, z_top, z_lc, back, b0)

    def _touching_organs(self, j, right_lobe: Ellipsoid, left_lobe: Ellipsoid) -> None:
        """Domain randomisation: a fluid gallbladder under the right lobe, a stomach against the left lobe."""
        (cx, cy, cz), (ra, rb, rc) = right_lobe.center, right_lobe.axes
        if j.gallbladder > 0:
            g = j.gallbladder
            gb = Ellipsoid((cx + 0.55 * ra, cy - 0.55 * rb, cz - 0.55 * rc), (14.0 * g, 16.0 * g, 35.0 * g), 30.0)
            self.paint(gb, Label.CSF, over=_CAVITY_CONTENT + (Label.LIVER,))
        if j.stomach > 0:
            s = j.stomach
            (lx, ly, lz), (la, lb, lc) = left_lobe.center, left_lobe.axes
            st = Ellipsoid((lx + 0.9 * la + 25.0 * s, ly + 0.4 * lb + 10.0, lz - 0.3 * lc), (45.0 * s, 35.0 * s, 50.0 * s), -20.0)
            self.paint(st, Label.BOWEL, over=_CAVITY_CONTENT)

    def vessels(self, vb: EllipticTube, liver: _Liver) -> None:
        """Aorta, inferior vena cava (through the posterior liver), portal and hepatic veins."""
        zh, w, bx = self.zh, self.L.w, self.L.body_x
        back, b0, z_top, z_lc = liver.back, liver.b0, liver.z_top, liver.z_centre
        over = _CAVITY_CONTENT + (Label.LIVER, Label.HEART, Label.LUNG)
        y_ant_vb = float(np.interp(zh(0.64), vb.z, vb.cy - vb.b))
        aorta = (bx + 18 * w, y_ant_vb - 13 * w)
        self.paint(Capsule((*aorta, zh(0.585)), (*aorta, zh(0.755)), 12.0 * w), Label.VESSEL, over=over)
        ivc = (bx - 24 * w, y_ant_vb - 9 * w)
        self.paint(Capsule((*ivc, zh(0.585)), (*ivc, zh(0.715)), 11.0 * w), Label.VESSEL, over=over)
        portal = Capsule((bx - 5 * w, back - 0.85 * b0, z_lc - 35), (bx - 60 * w, back - 0.95 * b0, z_lc + 5), 7.0 * w)
        self.paint(portal, Label.VESSEL, over=over)
        start = (*ivc, z_top - 15.0)
        for end, r in (
            ((bx - 100 * w, back - 1.10 * b0, z_lc - 25.0), 5.0),
            ((bx - 45 * w, back - 1.55 * b0, z_lc - 20.0), 4.5),
            ((bx + 25 * w, back - 1.55 * b0, z_top - 35.0), 4.0),
        ):
            self.paint(Capsule(start, end, r * w), Label.VESSEL, over=over)
