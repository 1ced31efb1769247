"""ukbmri.infer: body-composition inference with MIMIR-compatible modules.

``predict_images`` runs a loaded module on MIMIR 2D images; ``postprocess``
turns raw ``(N, 2T)`` outputs into calibrated means and variances;
``mimir_predictions_frame`` lays them out like MIMIR's predictions.csv.
"""

from __future__ import annotations

from ukbmri.infer.postprocess import normal_interval, postprocess, postprocess_arrays  # numpy only

#: the precision used when none is asked for (the engine's default too): channels-last float32,
#: within 1e-4 relative of exact ``"fp32"`` on ResNet50 raw outputs and ~1.3x faster on CPU
DEFAULT_PRECISION = "fp32-cl"

__all__ = [
    "DEFAULT_PRECISION",
    "IMAGE_SHAPE",
    "PRECISIONS",
    "predict_images",
    "predict_raw",
    "mimir_predictions_frame",
    "prediction_columns",
    "postprocess",
    "postprocess_arrays",
    "normal_interval",
]


_SOURCES = {
    "IMAGE_SHAPE": "body", "PRECISIONS": "body", "predict_images": "body", "predict_raw": "body",
    "mimir_predictions_frame": "body", "prediction_columns": "body",
}


def __getattr__(name: str):
    """Names load on first use, so light submodules (``ukbmri.infer.weights``) need no torch."""
    if name in _SOURCES:
        import importlib

        return getattr(importlib.import_module(f"ukbmri.infer.{_SOURCES[name]}"), name)
    raise AttributeError(f"module 'ukbmri.infer' has no attribute {name!r}")
