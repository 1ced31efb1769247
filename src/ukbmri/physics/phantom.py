"""Numerical phantoms with known water, fat, R2* and B0 (tests, benchmarks, demos).

:func:`ring_phantom` builds an axial "body": an elliptical subcutaneous fat ring around
water-dominant tissue, a liver-like organ on the patient's right (negative LPS x, the low
``x`` index with the identity-like affine it returns), a spleen-like organ on the left,
two vessels in the liver and a ring of discs whose fat fraction steps from 0 to 100 %,
under a smooth B0 field with a chosen range. Signals come from
:func:`ukbmri.physics.spectrum.signal` (the same model as the fitters) plus complex
Gaussian noise; ``SNR`` is (W + F) / sigma of a full-signal voxel at t = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ukbmri.physics.multiecho import MultiEcho
from ukbmri.physics.spectrum import SIX_PEAK, FatSpectrum, signal

__all__ = ["PhantomTruth", "ring_phantom", "UKB_20203_TE_S", "uniform_te"]

#: 20203-like echo train: 10 echoes, 2.38 ms spacing (alternating opposed/in phase at 1.5 T).
UKB_20203_TE_S = 2.38e-3 * np.arange(1, 11)


def uniform_te(n: int, first_s: float, spacing_s: float) -> np.ndarray:
    return first_s + spacing_s * np.arange(n)


@dataclass(frozen=True, eq=False)
class PhantomTruth:
    """Ground truth maps ``(x, y, z)`` and label images of a phantom."""

    water: np.ndarray
    fat: np.ndarray
    r2star_per_s: np.ndarray
    b0_hz: np.ndarray
    body: np.ndarray  #: inside the outer body contour
    liver: np.ndarray
    vessels: np.ndarray
    subcutaneous_fat: np.ndarray
    discs: tuple[np.ndarray, ...]  #: one mask per fat-fraction disc
    disc_ff_percent: tuple[float, ...]
    noise_sigma: float

    @property
    def ff_percent(self) -> np.ndarray:
        tot = self.water + self.fat
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, 100.0 * self.fat / tot, np.nan)


def ring_phantom(
    shape: tuple[int, int, int] = (128, 128, 1),
    *,
    te_s: np.ndarray = UKB_20203_TE_S,
    field_strength_t: float = 1.5,
    snr: float = 50.0,
    b0_range_hz: float = 400.0,
    liver_ff_percent: float = 8.0,
    liver_r2star_per_s: float = 40.0,
    disc_ff_percent: tuple[float, ...] = tuple(float(v) for v in range(0, 101, 10)),
    complex_data: bool = True,
    spacing: tuple[float, float, float] = (2.5, 2.5, 6.0),
    spectrum: FatSpectrum = SIX_PEAK,
    rng: np.random.Generator,
) -> tuple[MultiEcho, PhantomTruth]:
    """An axial abdomen-like phantom (see the module docstring)."""
    nx, ny, nz = shape
    x = (np.arange(nx) - (nx - 1) / 2) / (nx / 2)  # -1..1, patient right (LPS -x) at low index
    y = (np.arange(ny) - (ny - 1) / 2) / (ny / 2)  # anterior at low index
    zc = (np.arange(nz) - (nz - 1) / 2) / max(nz / 2, 1)
    xx, yy, zz = np.meshgrid(x, y, zc, indexing="ij")
    body = (xx / 0.92) ** 2 + (yy / 0.72) ** 2 <= 1.0
    inner = (xx / 0.80) ** 2 + (yy / 0.60) ** 2 <= 1.0
    sat = body & ~inner
    water = np.zeros(shape)
    fat = np.zeros(shape)
    r2 = np.zeros(shape)
    # subcutaneous fat, muscle / soft tissue background
    water[sat], fat[sat], r2[sat] = 0.05, 0.95, 25.0
    water[inner], fat[inner], r2[inner] = 0.97, 0.03, 30.0
    # liver (patient right = low x index), with two vessels
    liver = ((xx + 0.38) / 0.36) ** 2 + ((yy + 0.02) / 0.42) ** 2 <= 1.0
    liver &= inner
    lf = liver_ff_percent / 100.0
    water[liver], fat[liver], r2[liver] = 1.0 - lf, lf, liver_r2star_per_s
    vessels = (((xx + 0.45) ** 2 + (yy + 0.10) ** 2) <= 0.05 ** 2) | (((xx + 0.28) ** 2 + (yy - 0.18) ** 2) <= 0.04 ** 2)
    vessels &= liver
    water[vessels], fat[vessels], r2[vessels] = 0.6, 0.0, 15.0
    # spleen on the patient's left, posterior
    spleen = (((xx - 0.55) / 0.14) ** 2 + ((yy - 0.32) / 0.20) ** 2 <= 1.0) & inner
    water[spleen], fat[spleen], r2[spleen] = 0.9, 0.01, 30.0
    # discs of graded fat fraction on a 4 x 3 grid left-anterior, R2* 20..60
    discs = []
    n_d = len(disc_ff_percent)
    if n_d > 12:
        raise ValueError("at most 12 fat-fraction discs")
    for i, ffp in enumerate(disc_ff_percent):
        cx, cy = 0.10 + 0.20 * (i % 4), -0.42 + 0.20 * (i // 4)
        d = ((xx - cx) ** 2 + (yy - cy) ** 2) <= 0.075 ** 2
        discs.append(d)
        f = ffp / 100.0
        water[d], fat[d], r2[d] = 1.0 - f, f, 20.0 + 40.0 * i / max(n_d - 1, 1)
    # smooth B0: quadratic + linear terms, scaled to the requested range over the body
    b0 = 0.6 * xx ** 2 + 0.8 * yy + 0.4 * xx * yy + 0.2 * zz
    lo, hi = b0[body].min(), b0[body].max()
    b0 = (b0 - lo) / max(hi - lo, 1e-12) * b0_range_hz - 0.5 * b0_range_hz + 20.0
    s = signal(water, fat, r2, te_s, field_strength_t, b0_hz=b0, spectrum=spectrum)
    sigma = 1.0 / snr
    s = s + sigma * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape)) / np.sqrt(2.0)
    s = s * 1000.0
    images = s.astype(np.complex64) if complex_data else np.abs(s).astype(np.float32)
    affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    data = MultiEcho(images=images, te_s=np.asarray(te_s), field_strength_t=field_strength_t,
                     spacing=spacing, source="ring_phantom", affine_lps=affine)
    truth = PhantomTruth(
        water=water * 1000.0, fat=fat * 1000.0, r2star_per_s=r2, b0_hz=b0, body=body, liver=liver & ~vessels,
        vessels=vessels, subcutaneous_fat=sat, discs=tuple(discs),
        disc_ff_percent=tuple(float(v) for v in disc_ff_percent), noise_sigma=sigma * 1000.0 / np.sqrt(2.0),
    )
    return data, truth
