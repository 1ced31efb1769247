"""Fat spectrum and the multi-echo fat-water signal model.

Shared by the phantom generator (:mod:`ukbmri.synth`) and the fitters
(:mod:`ukbmri.physics`), so that the data and the model agree by construction.

Signal per voxel at echo time ``t`` (seconds)::

    S(t) = (W + F * sum_p a_p exp(i 2 pi f_p t)) * exp(-R2* t) * exp(i 2 pi psi t)

with ``f_p = (ppm_p - 4.7) * 42.577478 MHz/T * B0``; PDFF = F / (W + F).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FatSpectrum", "SIX_PEAK", "GAMMA_MHZ_PER_T", "WATER_PPM", "signal", "fat_phasor"]

GAMMA_MHZ_PER_T = 42.577478  #: proton gyromagnetic ratio / 2 pi
WATER_PPM = 4.7


@dataclass(frozen=True)
class FatSpectrum:
    """A multi-peak fat spectrum: chemical shifts (ppm) and relative amplitudes (sum 1)."""

    ppm: tuple[float, ...]
    amplitudes: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.ppm) != len(self.amplitudes) or not self.ppm:
            raise ValueError("FatSpectrum needs as many amplitudes as peaks (at least one)")

    def frequencies_hz(self, field_strength_t: float) -> np.ndarray:
        """Peak offsets from water in Hz at the given field (negative: fat resonates lower)."""
        return (np.asarray(self.ppm) - WATER_PPM) * GAMMA_MHZ_PER_T * field_strength_t

    def normalised(self) -> FatSpectrum:
        a = np.asarray(self.amplitudes, dtype=float)
        return FatSpectrum(self.ppm, tuple((a / a.sum()).tolist()))


#: Six-peak liver fat spectrum (Hamilton et al.): ppm and relative amplitudes.
SIX_PEAK = FatSpectrum(
    ppm=(5.3, 4.31, 2.76, 2.1, 1.3, 0.9),
    amplitudes=(0.048, 0.039, 0.004, 0.128, 0.693, 0.087),
)


def fat_phasor(te_s: np.ndarray, field_strength_t: float, spectrum: FatSpectrum = SIX_PEAK) -> np.ndarray:
    """Complex fat signal per unit fat density at each echo time: sum_p a_p exp(i 2 pi f_p t)."""
    te = np.asarray(te_s, dtype=float)
    f = spectrum.frequencies_hz(field_strength_t)
    a = np.asarray(spectrum.normalised().amplitudes)
    return (a[None, :] * np.exp(2j * np.pi * te[:, None] * f[None, :])).sum(axis=1)


def signal(
    water: np.ndarray,
    fat: np.ndarray,
    r2star_per_s: np.ndarray,
    te_s: np.ndarray,
    field_strength_t: float,
    *,
    b0_hz: np.ndarray | float = 0.0,
    spectrum: FatSpectrum = SIX_PEAK,
) -> np.ndarray:
    """Complex multi-echo signal, shape ``water.shape + (n_echoes,)``.

    ``water``, ``fat``, ``r2star_per_s`` and ``b0_hz`` broadcast against each other.
    """
    te = np.asarray(te_s, dtype=float)
    w = np.asarray(water, dtype=float)[..., None]
    f = np.asarray(fat, dtype=float)[..., None]
    r2 = np.asarray(r2star_per_s, dtype=float)[..., None]
    psi = np.asarray(b0_hz, dtype=float)[..., None]
    c = fat_phasor(te, field_strength_t, spectrum)
    return (w + f * c) * np.exp(-r2 * te) * np.exp(2j * np.pi * psi * te)
