"""The ml4h liver TensorMaps: names, shapes, normalisations and losses.

ml4h describes every tensor a model reads or predicts by a ``TensorMap``; the
liver teacher/student use four of them. :data:`TENSOR_MAPS` keeps the ml4h
names so tensor files written here can be read by ml4h and vice versa.

Shapes are given both ways: ``shape`` is the PyTorch layout ``(C, H, W)``
(``(1,)`` for a scalar label) and ``ml4h_shape`` the Keras channels-last
layout ``(H, W, C)`` in which ml4h stores tensors in hd5 files.

Labels are liver fat percent (UK Biobank field 22402), standardised for
training as ``y' = (y - 3.91012) / 4.64437`` (:func:`normalise_label`); the
networks predict ``y'`` and :func:`denormalise_label` turns it back into %.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from types import MappingProxyType

import numpy as np

from ukbmri.preprocess.liver_tensors import GRE_SHAPE, IDEAL_SHAPE, zero_mean_std1

__all__ = [
    "LIVER_FAT_MEAN",
    "LIVER_FAT_STD",
    "Standardize",
    "TensorMap",
    "TENSOR_MAPS",
    "get_tensor_map",
    "normalise_label",
    "denormalise_label",
    "denormalise_variance",
]

#: UK Biobank liver fat % mean and standard deviation used by ml4h to standardise labels.
LIVER_FAT_MEAN = 3.91012
LIVER_FAT_STD = 4.64437


@dataclass(frozen=True)
class Standardize:
    """``y' = (y - mean) / std`` (ml4h ``Standardize``)."""

    mean: float
    std: float

    def normalise(self, y):
        return (np.asarray(y, dtype=np.float64) - self.mean) / self.std

    def denormalise(self, y_norm):
        return np.asarray(y_norm, dtype=np.float64) * self.std + self.mean


@dataclass(frozen=True)
class TensorMap:
    """One ml4h tensor: where it lives in an hd5 file, its shape, normalisation and loss.

    Attributes
    ----------
    name:
        ml4h TensorMap name (the Python name in ``ml4h/tensormap/ukb/mri.py``).
    shape:
        PyTorch layout, ``(C, H, W)`` for images, ``(1,)`` for scalar labels.
    ml4h_shape:
        Keras / hd5 layout, ``(H, W, C)`` for images, ``(1,)`` for labels.
    normalisation:
        ``"zero_mean_std1"`` (per-sample, images) or a :class:`Standardize` (labels).
    loss:
        ``"logcosh"`` for the label maps, ``None`` for inputs.
    hd5_group:
        ``"ukb_liver_mri"`` (images, one dataset per instance) or ``"continuous"`` (labels).
    field:
        UK Biobank field the tensor comes from (20203, 20254, 22402) or ``None``.
    valid_range:
        Plausible range of the de-normalised value (labels), else ``None``.
    channel_names:
        Names of the channels in order (images), else ``()``.
    hd5_name:
        The dataset name in ml4h hd5 files when it differs from ``name``: the
        label maps are stored as ``/continuous/22402_Liver-fat-percentage_2_0``
        (``liver_fat``) and ``/continuous/liver_fat_sentinel_prediction``
        (``liver_fat_echo_predicted``). See :attr:`dataset_name`.
    """

    name: str
    shape: tuple[int, ...]
    ml4h_shape: tuple[int, ...]
    normalisation: str | Standardize | None
    loss: str | None = None
    hd5_group: str = "ukb_liver_mri"
    field: int | None = None
    valid_range: tuple[float, float] | None = None
    channel_names: tuple[str, ...] = ()
    description: str = ""
    hd5_name: str = ""

    @property
    def dataset_name(self) -> str:
        """The name under ``hd5_group`` in ml4h hd5 files."""
        return self.hd5_name or self.name

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def normalise(self, x, *, path: str | PathLike[str] | None = None) -> np.ndarray:
        """Apply this map's normalisation (input tensors: per-sample ZeroMeanStd1)."""
        if self.normalisation == "zero_mean_std1":
            return zero_mean_std1(x, path=path)
        if isinstance(self.normalisation, Standardize):
            return self.normalisation.normalise(x)
        return np.asarray(x)

    def denormalise(self, y_norm) -> np.ndarray:
        """Inverse of the label standardisation (identity for maps without one)."""
        if isinstance(self.normalisation, Standardize):
            return self.normalisation.denormalise(y_norm)
        raise ValueError(f"TensorMap {self.name!r} has no invertible normalisation")


def _gre_channels() -> tuple[str, ...]:
    return tuple(f"echo_{i + 1}" for i in range(GRE_SHAPE[0]))


def _ideal_channels() -> tuple[str, ...]:
    # channel = 6 * echo + dynamic (echo-major)
    return tuple(f"echo_{e + 1}_dynamic_{d + 1}" for e in range(6) for d in range(6))


_LIVER_FAT_STD = Standardize(LIVER_FAT_MEAN, LIVER_FAT_STD)

_MAPS = {
    tm.name: tm
    for tm in (
        TensorMap(
            name="gre_mullti_echo_10_te_liver",
            shape=GRE_SHAPE,
            ml4h_shape=(GRE_SHAPE[1], GRE_SHAPE[2], GRE_SHAPE[0]),
            normalisation="zero_mean_std1",
            field=20203,
            channel_names=_gre_channels(),
            description="20203 multi-echo GRE magnitudes, TE ascending (teacher input)",
        ),
        TensorMap(
            name="lms_ideal_optimised_low_flip_6dyn",
            shape=IDEAL_SHAPE,
            ml4h_shape=(IDEAL_SHAPE[1], IDEAL_SHAPE[2], IDEAL_SHAPE[0]),
            normalisation="zero_mean_std1",
            field=20254,
            channel_names=_ideal_channels(),
            description="20254 IDEAL magnitudes, 6 echoes x 6 dynamics, echo-major (student input)",
        ),
        TensorMap(
            name="liver_fat",
            shape=(1,),
            ml4h_shape=(1,),
            normalisation=_LIVER_FAT_STD,
            loss="logcosh",
            hd5_group="continuous",
            field=22402,
            valid_range=(0.0, 100.0),
            description="liver fat % (UK Biobank field 22402; teacher label)",
            hd5_name="22402_Liver-fat-percentage_2_0",
        ),
        TensorMap(
            name="liver_fat_echo_predicted",
            shape=(1,),
            ml4h_shape=(1,),
            normalisation=_LIVER_FAT_STD,
            loss="logcosh",
            hd5_group="continuous",
            valid_range=(0.0, 100.0),
            description="liver fat % predicted by the teacher (student label)",
            hd5_name="liver_fat_sentinel_prediction",
        ),
    )
}

#: The ml4h liver TensorMaps by ml4h name (read-only).
TENSOR_MAPS: Mapping[str, TensorMap] = MappingProxyType(_MAPS)


def get_tensor_map(name: str) -> TensorMap:
    """The TensorMap called ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return TENSOR_MAPS[name]
    except KeyError:
        raise KeyError(f"unknown TensorMap {name!r} (known: {', '.join(TENSOR_MAPS)})") from None


def normalise_label(y, name: str = "liver_fat") -> np.ndarray:
    """Liver fat % -> standardised label ``(y - 3.91012) / 4.64437`` (float64)."""
    return get_tensor_map(name).normalise(y)


def denormalise_label(y_norm, name: str = "liver_fat") -> np.ndarray:
    """Standardised label / prediction -> liver fat % ``4.64437 * y' + 3.91012`` (float64)."""
    return get_tensor_map(name).denormalise(y_norm)


def denormalise_variance(var_norm, name: str = "liver_fat") -> np.ndarray:
    """Variance of a standardised prediction -> variance in %^2 (``var' * std^2``)."""
    norm = get_tensor_map(name).normalisation
    if not isinstance(norm, Standardize):
        raise ValueError(f"TensorMap {name!r} has no standardisation")
    return np.asarray(var_norm, dtype=np.float64) * norm.std**2
