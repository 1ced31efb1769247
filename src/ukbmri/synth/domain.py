"""Domain randomisation of the UK-Biobank-format phantoms (``ukbmri synth --domain randomised``).

The ordinary phantoms (:func:`~ukbmri.synth.participant.sample_participant`) follow one
anatomy template, the cohort's skewed liver-fat distribution and one scanner model, so a
network trained on them only sees a narrow slice of what other generators and real scans
show. A *randomised* participant is an ordinary one plus a :class:`DomainJitter`, drawn
from the same generator, that widens everything the liver networks must be robust to:

* liver PDFF uniform 0-50 % and R2* log-uniform 20-500 /s (independent: fatty and
  iron-loaded livers are both well represented),
* body shape: frame, muscle, subcutaneous and visceral fat scaled independently,
* liver shape, size and position: lobe semi-axes, in-plane rotation, offset from the
  template position, left-lobe size, an optional inferior (Riedel) extension,
* touching organs: a fluid-filled gallbladder under the right lobe, a stomach against
  the left lobe, the right kidney raised into the liver's underside, a larger spleen,
* scanner: complex noise x0.5-3 (log-uniform), B0 polynomial and receive-phase gradients
  scaled up to x3 / x4 plus random low-frequency B0 waves (tens of Hz), and a smooth
  multiplicative coil shading (``exp`` of random cosine waves, about +-40 %).

Everything is a deterministic function of the participant record (the jitter is stored
in it), so the same seed gives the same bytes. The ground truth stays derived from the
phantom: the liver's PDFF and R2* are its tissue-table values, the volumes are integrated
from the painted solids (gallbladder and kidney excluded from the liver).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ukbmri.synth.signal import ScannerFields

__all__ = ["DOMAINS", "DomainJitter", "sample_jitter", "randomise_scanner_fields", "Wave"]

#: phantom domains ``ukbmri synth --domain`` accepts
DOMAINS = ("ordinary", "randomised")

#: (kx, ky, kz rad/mm, phase rad, amplitude)
Wave = tuple[float, float, float, float, float]

PDFF_RANGE = (0.0, 50.0)
R2STAR_RANGE = (20.0, 500.0)
NOISE_RANGE = (0.5, 3.0)


@dataclass(frozen=True)
class DomainJitter:
    """What a randomised participant changes in its phantom and scan (lengths in mm)."""

    noise_scale: float  #: x the complex noise SD of 20203 / 20254
    b0_scale: float  #: x the session's B0 polynomial
    phase_scale: float  #: x the receive-phase gradients
    b0_waves: tuple[Wave, ...]  #: extra off-resonance, amplitude in Hz
    coil_waves: tuple[Wave, ...]  #: coil shading exp(sum of waves), amplitude unitless
    liver_shift_mm: tuple[float, float, float]  #: right-lobe centre offset (x, y, z)
    liver_axes_scale: tuple[float, float, float]  #: right-lobe semi-axes scales
    liver_angle_deg: float  #: right-lobe rotation about z
    left_lobe_scale: float
    riedel: float  #: inferior extension of the right lobe (fraction of its z semi-axis; 0 = none)
    gallbladder: float  #: gallbladder size scale (0 = none)
    stomach: float  #: stomach size scale (0 = none)
    kidney_rise_mm: float  #: right kidney moved superiorly towards the liver


def _waves(rng: np.random.Generator, n: int, wavelength_mm: tuple[float, float], amp: tuple[float, float],
           z_squash: float = 0.5) -> tuple[Wave, ...]:
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:, 2] *= z_squash
    k = d * (2 * np.pi / rng.uniform(*wavelength_mm, n))[:, None]
    ph = rng.uniform(0, 2 * np.pi, n)
    a = rng.uniform(*amp, n)
    return tuple(tuple(round(float(v), 9) for v in (*k[i], ph[i], a[i])) for i in range(n))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_jitter(rng: np.random.Generator) -> DomainJitter:
    """Draw one participant's :class:`DomainJitter`."""
    r = lambda v, d=4: round(float(v), d)  # noqa: E731
    return DomainJitter(
        noise_scale=r(_log_uniform(rng, *NOISE_RANGE)),
        b0_scale=r(rng.uniform(0.5, 3.0)),
        phase_scale=r(rng.uniform(0.5, 4.0)),
        b0_waves=_waves(rng, 3, (80.0, 300.0), (0.0, 25.0)),
        coil_waves=_waves(rng, 3, (150.0, 500.0), (0.0, 0.18)),
        liver_shift_mm=(r(rng.uniform(-15, 15), 3), r(rng.uniform(-12, 12), 3), r(rng.uniform(-20, 20), 3)),
        liver_axes_scale=tuple(r(np.exp(rng.normal(0.0, 0.12))) for _ in range(3)),
        liver_angle_deg=r(rng.uniform(-25, 25), 3),
        left_lobe_scale=r(rng.uniform(0.5, 1.6)),
        riedel=r(rng.uniform(0.4, 0.9)) if rng.random() < 0.3 else 0.0,
        gallbladder=r(rng.uniform(0.6, 1.5)) if rng.random() < 0.6 else 0.0,
        stomach=r(rng.uniform(0.6, 1.4)) if rng.random() < 0.6 else 0.0,
        kidney_rise_mm=r(rng.uniform(0.0, 40.0), 3) if rng.random() < 0.5 else 0.0,
    )


def wave_sum(waves: tuple[Wave, ...], x, y, z, centre: tuple[float, float, float]) -> np.ndarray | float:
    """sum_i amp_i cos(k_i . (r - centre) + phase_i), broadcasting x, y, z (mm)."""
    cx, cy, cz = centre
    out: np.ndarray | float = 0.0
    for kx, ky, kz, ph, a in waves:
        out = out + a * np.cos(kx * (x - cx) + ky * (y - cy) + kz * (z - cz) + ph)
    return out


def randomise_scanner_fields(fields: ScannerFields, jitter: DomainJitter) -> ScannerFields:
    """The session's scanner fields with the participant's B0, phase and coil jitter applied."""
    return replace(
        fields,
        b0_hz=tuple(jitter.b0_scale * v for v in fields.b0_hz),
        phase0=(fields.phase0[0], jitter.phase_scale * fields.phase0[1], jitter.phase_scale * fields.phase0[2]),
        b0_waves=jitter.b0_waves,
        coil_waves=jitter.coil_waves,
    )
