"""ukbmri.physics: multi-echo fat-water separation (magnitude and complex), R2*, B0, liver ROI.

>>> from ukbmri.physics import load_ismrm_mat, fit_complex     # doctest: +SKIP
>>> maps = fit_complex(load_ismrm_mat("12.mat"))                # doctest: +SKIP
>>> maps.ff_percent.shape                                       # doctest: +SKIP
(157, 256, 3)

Modules: :mod:`~ukbmri.physics.spectrum` (fat spectrum, signal model),
:mod:`~ukbmri.physics.multiecho` (data and result types), :mod:`~ukbmri.physics.magnitude`,
:mod:`~ukbmri.physics.complex` and :mod:`~ukbmri.physics.spatial` (fitters and the
swap guard), :mod:`~ukbmri.physics.inputs` (zips, NIfTI), :mod:`~ukbmri.physics.liver_roi`,
:mod:`~ukbmri.physics.liver`, :mod:`~ukbmri.physics.liver_noise` (noise, Cramer-Rao bounds,
intervals), :mod:`~ukbmri.physics.liver_flags` (QC flags, GRE/IDEAL cross-check) and
:mod:`~ukbmri.physics.liver_slices` (every slice of a volume) (liver pipeline), :mod:`~ukbmri.physics.outputs`,
:mod:`~ukbmri.physics.phantom`. Names load lazily (PEP 562): importing the spectrum does
not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FatSpectrum": "spectrum",
    "SIX_PEAK": "spectrum",
    "signal": "spectrum",
    "fat_phasor": "spectrum",
    "MultiEcho": "multiecho",
    "FatWaterMaps": "multiecho",
    "default_mask": "multiecho",
    "fit_magnitude": "magnitude",
    "fit_complex": "complex",
    "find_liver_roi": "liver_roi",
    "liver_summary": "liver_roi",
    "LiverSummary": "liver_roi",
    "liver_fat_from_zip": "liver",
    "liver_fat_from_multiecho": "liver",
    "LiverPhysicsResult": "liver",
    "cross_check": "liver",
    "liver_fat_slices": "liver_slices",
    "LiverSlices": "liver_slices",
    "LiverLocaliser": "liver_locate",
    "load_localiser": "liver_locate",
    "bundled_localiser": "liver_locate",
    "multiecho_from_zip": "inputs",
    "multiecho_from_nifti": "inputs",
    "load_multiecho": "inputs",
    "write_fatwater_outputs": "outputs",
    "ring_phantom": "phantom",
}

__all__ = [*_EXPORTS, "load_ismrm_mat"]


def __getattr__(name: str):
    if name == "load_ismrm_mat":
        value = importlib.import_module("ukbmri.io.ismrm").load_ismrm_mat
    else:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'ukbmri.physics' has no attribute {name!r}")
        value = getattr(importlib.import_module(f"ukbmri.physics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
