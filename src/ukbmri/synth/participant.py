"""Synthetic participants: who they are, what their body is like, how they were scanned.

A :class:`Participant` is a flat, frozen, picklable record of scalars. Every
image and every ground-truth value is a deterministic function of it (plus
the noise generator handed to the writer). :func:`sample_participants` draws
a UK-Biobank-like imaging cohort: sex, age 45-80, height, BMI, muscle mass,
subcutaneous versus visceral fat, liver fat (skewed: median ~2.3 %, ~17 %
above 5.5 %), liver R2* (mostly 25-60 /s, a few iron-loaded), muscle fat
infiltration, organ sizes, positioning on the table and the visit date.

The body's fat parameters are calibrated so that the phantom's (approximate)
weight matches the sampled BMI; the ground-truth weight is then integrated
from the phantom itself (:mod:`ukbmri.synth.truth`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from ukbmri.synth.body import approx_mass_kg
from ukbmri.synth.domain import DOMAINS, PDFF_RANGE, R2STAR_RANGE, DomainJitter, sample_jitter

__all__ = ["Participant", "sample_participants", "sample_participant", "sample_randomised_participant", "STATION_SPECS"]

#: 20201 stations: (rows, columns, slices, slice spacing mm), head to foot
STATION_SPECS: tuple[tuple[int, int, int, float], ...] = (
    (168, 224, 64, 3.0),
    (174, 224, 44, 4.5),
    (174, 224, 44, 4.5),
    (174, 224, 44, 4.5),
    (162, 224, 72, 3.5),
    (156, 224, 64, 4.0),
)


@dataclass(frozen=True)
class Participant:
    """One synthetic participant (all lengths in mm, patient LPS coordinates)."""

    eid: int
    seed: int  #: participant stream: derives UIDs, the pseudonym and scanner fields
    sex_male: bool
    age_years: float
    height_cm: float
    bmi_target: float  #: the BMI the fat parameters were calibrated to
    # body shape
    frame: float  #: skeletal width scale (1 = reference for the height)
    muscle: float  #: muscle thickness / cross-section scale (men ~1, women ~0.75)
    sat: float  #: subcutaneous fat thickness scale
    vat: float  #: visceral fat level (1 ~ an average man)
    # tissues and organs
    liver_pdff_percent: float
    liver_r2star_per_s: float
    muscle_fat_percent: float
    liver_scale: float  #: liver volume scale
    spleen_scale: float
    kidney_scale: float
    # positioning and acquisition
    fov_x_mm: float  #: in-plane FOV centre (x) shared by all 20201 stations
    fov_y_mm: float  #: in-plane FOV centre (y)
    body_x_mm: float  #: lateral offset of the body on the table
    bed_row: float  #: bed top, in AP rows of the fused 174-row grid
    z_top_mm: float  #: z of the most superior slice of station 1
    chin_offset_mm: float  #: chin height above that slice
    overlaps_mm: tuple[float, ...]  #: z overlap between consecutive stations (5 values)
    gre_slice_dz_mm: float  #: 20203 slice z relative to the liver centre
    ideal_slice_dz_mm: float  #: 20254 slice z relative to the liver centre
    visit: str  #: ISO date-time of the start of the imaging session
    texture_waves: tuple[tuple[float, float, float, float], ...]  #: visceral fat texture
    domain: DomainJitter | None = None  #: domain randomisation (None = ordinary phantom)

    @property
    def visit_datetime(self) -> datetime:
        return datetime.fromisoformat(self.visit)

    def station_tops_mm(self) -> list[float]:
        """z of the first (most superior) slice of each of the six 20201 stations."""
        tops = [self.z_top_mm]
        for k in range(1, len(STATION_SPECS)):
            _, _, n, s = STATION_SPECS[k - 1]
            bottom = tops[-1] - (n - 1) * s
            tops.append(bottom + self.overlaps_mm[k - 1])
        return tops


def _texture_waves(rng: np.random.Generator, n: int = 10) -> tuple[tuple[float, float, float, float], ...]:
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:, 2] *= 0.7  # slightly longer structures along z
    lam = rng.uniform(28.0, 70.0, n)
    k = d * (2 * np.pi / lam)[:, None]
    ph = rng.uniform(0, 2 * np.pi, n)
    return tuple(tuple(round(float(v), 9) for v in (*k[i], ph[i])) for i in range(n))


def _overlaps(rng: np.random.Generator, z_top: float) -> tuple[float, ...]:
    """Station overlaps (30-38 mm), nudged so no station starts on station 1's 3 mm grid."""
    ovs: list[float] = []
    top = z_top
    for k in range(1, len(STATION_SPECS)):
        _, _, n, s = STATION_SPECS[k - 1]
        ov = float(rng.uniform(30.0, 38.0))
        for _ in range(10):
            nxt = top - (n - 1) * s + ov
            frac = ((z_top - nxt) / 3.0) % 1.0
            if 0.1 < frac < 0.9:
                break
            ov += 0.37
        ovs.append(round(ov, 4))
        top = top - (n - 1) * s + ovs[-1]
    return tuple(ovs)


def _calibrate_fat(p: Participant, target_kg: float) -> Participant:
    """Scale SAT and VAT together so that the approximate weight hits ``target_kg``."""
    lo, hi = 0.12, 6.0

    def mass(k: float) -> float:
        return approx_mass_kg(p, sat=p.sat * k, vat=p.vat * k)

    if mass(lo) >= target_kg:
        k = lo
    elif mass(hi) <= target_kg:
        k = hi
    else:
        while hi - lo > 2e-4:
            mid = 0.5 * (lo + hi)
            if mass(mid) < target_kg:
                lo = mid
            else:
                hi = mid
        k = 0.5 * (lo + hi)
    return replace(p, sat=round(p.sat * k, 6), vat=round(p.vat * k, 6))


def sample_participant(rng: np.random.Generator, eid: int) -> Participant:
    """Draw one participant (see the module docstring for the distributions)."""
    male = bool(rng.random() < 0.48)
    age = float(np.clip(rng.normal(64.0, 7.5), 45.0, 80.0))
    h_mean = 176.0 if male else 163.0
    height = float(np.clip(rng.normal(h_mean - 0.1 * (age - 64.0), 6.5 if male else 6.0), 145.0, 205.0))
    bmi = float(np.clip(np.exp(rng.normal(np.log(26.3), 0.15)), 17.0, 48.0))
    frame = float(np.clip(rng.normal(1.0, 0.035), 0.88, 1.12))
    muscle = (1.0 if male else 0.76) * (1.0 - 0.006 * (age - 64.0)) * (1.0 + 0.012 * (bmi - 26.0))
    muscle = float(np.clip(muscle * np.exp(rng.normal(0.0, 0.09)), 0.45, 1.6))
    sat0 = float(np.exp(rng.normal(0.0, 0.22)))
    vat0 = (1.25 if male else 0.65) * (1.0 + 0.015 * (age - 64.0)) * float(np.exp(rng.normal(0.0, 0.35)))
    # liver fat: log-normal, rises with BMI (UK Biobank: median ~2.2 %, 17 % > 5.5 %)
    mu = np.log(2.2) + 0.055 * (bmi - 26.3) + (0.12 if male else -0.1)
    pdff = float(np.clip(np.exp(rng.normal(mu, 0.92)), 0.3, 40.0))
    r2 = 33.0 * np.exp(rng.normal(0.0, 0.14)) + 0.3 * pdff
    if rng.random() < 0.02:  # iron overload
        r2 *= rng.uniform(1.8, 3.5)
    r2 = float(np.clip(r2, 20.0, 200.0))
    mfat = 3.5 + 0.09 * (age - 45.0) + 0.12 * (bmi - 25.0) + (0.0 if male else 1.2) + rng.normal(0.0, 0.8)
    mfat = float(np.clip(mfat, 1.5, 20.0))
    liver_scale = (1.0 + 0.012 * (bmi - 26.0)) * (1.0 + 0.008 * pdff) * (1.0 if male else 1.1)
    liver_scale = float(liver_scale * np.exp(rng.normal(0.0, 0.10)))
    spleen_scale = float((1.4 if male else 1.25) * np.exp(rng.normal(0.0, 0.2)))
    kidney_scale = float((1.35 if male else 1.4) * (1.0 + 0.005 * (bmi - 26.0)) * np.exp(rng.normal(0.0, 0.12)))
    z_top = float(rng.uniform(-40.0, 40.0))
    day = datetime(2014, 6, 2) + timedelta(days=int(rng.integers(0, 2100)))
    start = day + timedelta(seconds=int(rng.integers(int(7.5 * 3600), 19 * 3600)))
    p = Participant(
        eid=int(eid),
        seed=int(rng.integers(0, 2**62)),
        sex_male=male,
        age_years=round(age, 2),
        height_cm=round(height, 2),
        bmi_target=round(bmi, 3),
        frame=round(frame, 5),
        muscle=round(muscle, 5),
        sat=round(sat0, 5),
        vat=round(vat0, 5),
        liver_pdff_percent=round(pdff, 3),
        liver_r2star_per_s=round(r2, 2),
        muscle_fat_percent=round(mfat, 3),
        liver_scale=round(liver_scale, 5),
        spleen_scale=round(spleen_scale, 5),
        kidney_scale=round(kidney_scale, 5),
        fov_x_mm=round(float(rng.uniform(-3.0, 3.0)), 4),
        fov_y_mm=round(float(rng.uniform(-3.0, 3.0)), 4),
        body_x_mm=round(float(np.clip(rng.normal(0.0, 6.0), -15.0, 15.0)), 3),
        bed_row=round(float(rng.uniform(151.6, 152.4)), 4),
        z_top_mm=round(z_top, 4),
        chin_offset_mm=round(float(rng.uniform(-5.0, 30.0)), 3),
        overlaps_mm=_overlaps(rng, z_top),
        gre_slice_dz_mm=round(float(rng.uniform(-10.0, 10.0)), 3),
        ideal_slice_dz_mm=round(float(rng.uniform(-12.0, 12.0)), 3),
        visit=start.isoformat(),
        texture_waves=_texture_waves(rng),
    )
    target = bmi * (height / 100.0) ** 2
    return _calibrate_fat(p, target)


def sample_randomised_participant(rng: np.random.Generator, eid: int) -> Participant:
    """Draw one domain-randomised participant (:mod:`ukbmri.synth.domain`).

    An ordinary participant with independent body-shape factors, liver PDFF uniform in
    :data:`~ukbmri.synth.domain.PDFF_RANGE`, R2* log-uniform in
    :data:`~ukbmri.synth.domain.R2STAR_RANGE`, a wider slice position and a
    :class:`~ukbmri.synth.domain.DomainJitter`; all drawn from ``rng``.
    """
    p = sample_participant(rng, eid)
    pdff = float(rng.uniform(*PDFF_RANGE))
    r2 = float(np.exp(rng.uniform(np.log(R2STAR_RANGE[0]), np.log(R2STAR_RANGE[1]))))
    body = np.exp(rng.normal(0.0, [0.05, 0.15, 0.35, 0.45]))  # frame, muscle, SAT, VAT
    p = replace(
        p,
        frame=round(float(np.clip(p.frame * body[0], 0.82, 1.18)), 5),
        muscle=round(float(np.clip(p.muscle * body[1], 0.4, 1.7)), 5),
        sat=round(float(np.clip(p.sat * body[2], 0.08, 6.0)), 6),
        vat=round(float(np.clip(p.vat * body[3], 0.08, 6.0)), 6),
        liver_pdff_percent=round(pdff, 3),
        liver_r2star_per_s=round(r2, 2),
        liver_scale=round(float(p.liver_scale * np.exp(rng.normal(0.0, 0.15))), 5),
        spleen_scale=round(float(p.spleen_scale * np.exp(rng.normal(0.0, 0.25))), 5),
        gre_slice_dz_mm=round(float(rng.uniform(-18.0, 18.0)), 3),
        ideal_slice_dz_mm=round(float(rng.uniform(-18.0, 18.0)), 3),
    )
    return replace(p, domain=sample_jitter(rng))


def sample_participants(
    n: int, rng: np.random.Generator, *, first_eid: int = 1000001, domain: str = "ordinary"
) -> list[Participant]:
    """Draw ``n`` participants with eids ``first_eid, first_eid + 1, ...``.

    ``domain``: ``"ordinary"`` (UK-Biobank-like cohort) or ``"randomised"``
    (:func:`sample_randomised_participant`).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    draw = sample_participant if domain == "ordinary" else sample_randomised_participant
    return [draw(rng, first_eid + i) for i in range(n)]
