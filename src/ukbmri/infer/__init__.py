"""ukbmri.infer: body-composition inference with MIMIR-compatible modules.

``predict_images`` runs a loaded module on MIMIR 2D images; ``postprocess``
turns raw ``(N, 2T)`` outputs into calibrated means and variances;
``mimir_predictions_frame`` lays them out like MIMIR's predictions.csv.
"""

from __future__ import annotations

from ukbmri.infer.body import (
    IMAGE_SHAPE,
    PRECISIONS,
    mimir_predictions_frame,
    prediction_columns,
    predict_images,
    predict_raw,
)
from ukbmri.infer.postprocess import normal_interval, postprocess, postprocess_arrays

__all__ = [
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
