"""MR physics of the synthetic scans: echo signals, coil, B0, noise, quantisation.

Every echo uses :func:`ukbmri.physics.spectrum.signal` (six-peak fat,
mono-exponential R2* decay), so the data and the project's fitters share one
model. Tissue properties are constant per label, so signals are computed
per label once (a lookup table per echo) and scaled by smooth spatial fields:

* receive coil sensitivity (multiplicative, ~0.8-1.2, brighter near the
  anterior and posterior surface coils) and a per-station gain,
* B0 inhomogeneity (Hz; linear and quadratic terms, tens of Hz) and a smooth
  receive phase, which only the complex multi-echo series (20203, 20254)
  carry in their phase images,
* complex Gaussian noise, so magnitudes are Rician.

Magnitudes are rounded to uint16 and clipped to 12 bits (0..4095). Phase is
stored as Siemens does: ``stored = phase * 2048 / pi + 2048`` (0..4095), read
back with RescaleSlope 2, RescaleIntercept -4096 as ``pi * v / 4096``.

20201 Dixon (1.5 T): opposed phase at 2.39 ms, in phase at 4.77 ms; the
scanner's two-point Dixon W and F are ``|S_in + S_opp| / 2`` and
``|S_in - S_opp| / 2`` of the phase-corrected complex echoes (so the
multi-peak fat spectrum and R2* leave the mild biases real W/F images have).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ukbmri.physics.spectrum import SIX_PEAK, signal
from ukbmri.synth.domain import wave_sum
from ukbmri.synth.tissues import TissueTable

__all__ = [
    "FIELD_STRENGTH_T",
    "DIXON_TE_MS",
    "GRE_TE_MS",
    "IDEAL_TE_MS",
    "ScannerFields",
    "sample_scanner_fields",
    "dixon_images",
    "multiecho_images",
    "quantise_magnitude",
    "encode_phase",
    "decode_phase",
]

FIELD_STRENGTH_T = 1.5
#: 20201 two-point Dixon: (opposed phase, in phase)
DIXON_TE_MS = (2.39, 4.77)
#: 20203: ten echoes, alternating opposed / in phase at 1.5 T
GRE_TE_MS = tuple(round(2.38 * k, 2) for k in range(1, 11))
#: 20254 IDEAL: six echoes
IDEAL_TE_MS = tuple(round(1.2 + 2.0 * k, 2) for k in range(6))

#: signal scale (stored units per unit proton density) and complex noise SD per field
DIXON_GAIN, DIXON_SIGMA = 1700.0, 9.0
GRE_GAIN, GRE_SIGMA = 1500.0, 12.0
IDEAL_GAIN, IDEAL_SIGMA = 1100.0, 10.0

MAX_12BIT = 4095


@dataclass(frozen=True)
class ScannerFields:
    """Smooth spatial fields of one session (coil sensitivity, B0, receive phase)."""

    coil_ap: float  #: quadratic AP brightening towards the surface coils
    coil_lr: float  #: LR modulation depth
    coil_lr_phase: float
    coil_si: float  #: slow head-foot modulation depth
    coil_si_phase: float
    centre: tuple[float, float, float]  #: (x, y, z) centre of the fields, mm
    b0_hz: tuple[float, ...]  #: (offset, d/dx, d/dy, d/dz per 100 mm, x^2 - y^2, xy) Hz
    phase0: tuple[float, float, float]  #: receive phase: offset, d/dx, d/dy (rad per 100 mm)
    #: domain randomisation (:mod:`ukbmri.synth.domain`): extra B0 waves (Hz) and coil shading
    #: ``exp(sum of waves)``, each ``(kx, ky, kz rad/mm, phase, amplitude)``; empty = none
    b0_waves: tuple[tuple[float, float, float, float, float], ...] = ()
    coil_waves: tuple[tuple[float, float, float, float, float], ...] = ()

    def coil(self, x, y, z) -> np.ndarray:
        """Receive sensitivity (broadcasting x, y, z arrays in mm)."""
        cx, cy, cz = self.centre
        u = (y - cy) / 150.0
        c = (1.0 + self.coil_ap * u * u) * (1.0 + self.coil_lr * np.cos(2 * np.pi * (x - cx) / 700.0 + self.coil_lr_phase))
        c = c * (1.0 + self.coil_si * np.cos(2 * np.pi * (z - cz) / 900.0 + self.coil_si_phase))
        if self.coil_waves:
            c = c * np.exp(wave_sum(self.coil_waves, x, y, z, self.centre))
        return c

    def b0(self, x, y, z) -> np.ndarray:
        """Off-resonance in Hz."""
        cx, cy, cz = self.centre
        u, v, w = (x - cx) / 100.0, (y - cy) / 100.0, (z - cz) / 100.0
        o, gx, gy, gz, q, s = self.b0_hz
        f = o + gx * u + gy * v + gz * w + q * (u * u - v * v) + s * u * v
        if self.b0_waves:
            f = f + wave_sum(self.b0_waves, x, y, z, self.centre)
        return f

    def receive_phase(self, x, y) -> np.ndarray:
        cx, cy, _ = self.centre
        o, gx, gy = self.phase0
        return o + gx * (x - cx) / 100.0 + gy * (y - cy) / 100.0


def sample_scanner_fields(rng: np.random.Generator, centre: tuple[float, float, float]) -> ScannerFields:
    """Draw one session's coil, B0 and receive-phase fields."""
    return ScannerFields(
        coil_ap=float(rng.uniform(0.10, 0.25)),
        coil_lr=float(rng.uniform(0.03, 0.08)),
        coil_lr_phase=float(rng.uniform(0, 2 * np.pi)),
        coil_si=float(rng.uniform(0.02, 0.06)),
        coil_si_phase=float(rng.uniform(0, 2 * np.pi)),
        centre=tuple(float(c) for c in centre),
        b0_hz=(
            float(rng.normal(0.0, 10.0)),
            float(rng.normal(0.0, 8.0)),
            float(rng.normal(0.0, 8.0)),
            float(rng.normal(0.0, 5.0)),
            float(rng.normal(0.0, 6.0)),
            float(rng.normal(0.0, 4.0)),
        ),
        phase0=(float(rng.uniform(-np.pi, np.pi)), float(rng.normal(0.0, 0.4)), float(rng.normal(0.0, 0.4))),
    )


def _label_lut(tissues: TissueTable, te_ms, gain: float) -> np.ndarray:
    """Complex signal per label at each echo: (n_echoes, n_labels) complex64."""
    te = np.asarray(te_ms, dtype=float) / 1000.0
    s = signal(tissues.water, tissues.fat, tissues.r2star, te, FIELD_STRENGTH_T, spectrum=SIX_PEAK)
    return (gain * s.T).astype(np.complex64)


def _complex_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    n = rng.standard_normal((2, *shape), dtype=np.float32)
    n *= np.float32(sigma)
    return n[0] + 1j * n[1]


def quantise_magnitude(mag: np.ndarray) -> np.ndarray:
    """Round and clip to the 12-bit range as uint16."""
    return np.clip(np.rint(mag), 0, MAX_12BIT).astype(np.uint16)


def encode_phase(phase_rad: np.ndarray) -> np.ndarray:
    """Radians -> stored uint16 0..4095 (Siemens: value v = 2 * stored - 4096, phase = pi v / 4096)."""
    s = np.rint(np.asarray(phase_rad) * (2048.0 / np.pi) + 2048.0).astype(np.int64) % 4096
    return s.astype(np.uint16)


def decode_phase(stored: np.ndarray) -> np.ndarray:
    """Stored uint16 -> radians, via the rescale (slope 2, intercept -4096)."""
    return np.pi * (2.0 * np.asarray(stored, dtype=np.float64) - 4096.0) / 4096.0


def dixon_images(
    labels: np.ndarray,
    tissues: TissueTable,
    coil: np.ndarray,
    rng: np.random.Generator,
    *,
    gain: float = DIXON_GAIN,
    sigma: float = DIXON_SIGMA,
    ghost: float = 0.0,
) -> dict[str, np.ndarray]:
    """The four 20201 images of a station: ``{"in", "opp", "F", "W"}`` uint16 arrays.

    ``labels`` (n, rows, cols); ``coil`` broadcasts against it. ``ghost`` > 0
    adds a respiratory ghost (a copy shifted by half the field of view along
    the phase-encoding direction, anterior-posterior = along the rows' axis)
    of that relative amplitude.
    """
    lut = _label_lut(tissues, DIXON_TE_MS, gain)
    coil32 = np.asarray(coil, dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    echoes = []
    for e in range(2):
        s = lut[e][labels]
        s *= coil32
        if ghost:
            s += np.complex64(ghost) * np.roll(s, labels.shape[-2] // 2, axis=-2)
        s += _complex_noise(rng, labels.shape, sigma)
        echoes.append(s)
    s_opp, s_in = echoes
    out["in"] = quantise_magnitude(np.abs(s_in))
    out["opp"] = quantise_magnitude(np.abs(s_opp))
    out["W"] = quantise_magnitude(0.5 * np.abs(s_in + s_opp))
    out["F"] = quantise_magnitude(0.5 * np.abs(s_in - s_opp))
    return out


def multiecho_images(
    labels: np.ndarray,
    tissues: TissueTable,
    coil: np.ndarray,
    b0_hz: np.ndarray,
    phase0: np.ndarray,
    te_ms,
    rng: np.random.Generator,
    *,
    gain: float,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude and stored-phase images of a multi-echo slice.

    ``labels`` (n_sub, rows, cols): labels at sub-slice positions across the
    slice thickness; their complex signals are averaged (partial volume and
    intravoxel dephasing). ``coil``, ``phase0`` (rows, cols); ``b0_hz``
    broadcasts against ``labels``. Returns two (n_echoes, rows, cols) uint16
    arrays: magnitude (12 bit) and phase (0..4095).
    """
    lut = _label_lut(tissues, te_ms, gain)
    te = np.asarray(te_ms, dtype=float) / 1000.0
    shape = labels.shape[1:]
    mags = np.empty((len(te), *shape), dtype=np.uint16)
    phases = np.empty((len(te), *shape), dtype=np.uint16)
    b0 = np.broadcast_to(np.asarray(b0_hz, dtype=np.float32), labels.shape)
    rx = (np.exp(1j * np.asarray(phase0, dtype=np.float64)) * np.asarray(coil, dtype=np.float64)).astype(np.complex64)
    for e in range(len(te)):
        arg = b0 * np.float32(2.0 * np.pi * te[e])
        off_res = np.cos(arg) + 1j * np.sin(arg)
        s = (lut[e][labels] * off_res).mean(axis=0) * rx
        s += _complex_noise(rng, shape, sigma)
        mags[e] = quantise_magnitude(np.abs(s))
        phases[e] = encode_phase(np.angle(s))
    return mags, phases
