"""ukbmri.preprocess: field 20201 stations -> fused volumes -> MIMIR 2D image.

Liver tensors (fields 20203 / 20254) live in :mod:`ukbmri.preprocess.liver_tensors`.
"""

from __future__ import annotations

from ukbmri.preprocess.body import BodyResult, preprocess_body
from ukbmri.preprocess.fusion import FusionResult, fuse, fuse_stations
from ukbmri.preprocess.mimir2d import MimirImage, mimir_image, mimir_image_details, otsu_threshold
from ukbmri.preprocess.preview import save_preview_png
from ukbmri.preprocess.resize import resize_linear_u8
from ukbmri.preprocess.stations import Station, StationReport, collect_stations, stations_from_zip

__all__ = [
    "Station",
    "StationReport",
    "collect_stations",
    "stations_from_zip",
    "FusionResult",
    "fuse",
    "fuse_stations",
    "MimirImage",
    "mimir_image",
    "mimir_image_details",
    "otsu_threshold",
    "resize_linear_u8",
    "BodyResult",
    "preprocess_body",
    "save_preview_png",
]
