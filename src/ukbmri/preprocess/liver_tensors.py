"""ml4h-compatible liver input tensors from UK Biobank liver zips (fields 20203, 20254).

Two tensors, both ``(C, H, W)`` float32 (PyTorch layout; ml4h stores the same
data channels-last ``(H, W, C)``, see :mod:`ukbmri.io.hd5`):

* :func:`gre_tensor` - field 20203 multi-echo GRE: the 10 **magnitude** echoes
  (picked by DICOM ImageType, never by a pixel-value threshold), ordered by
  echo time, top-left pad/crop to ``(10, 160, 160)``
  (ml4h TensorMap ``gre_mullti_echo_10_te_liver``).
* :func:`ideal_tensor` - field 20254 IDEAL: 6 echoes x 6 dynamics of magnitude
  images, channel ``6 * (InstanceNumber - 1) + (SeriesNumber - min_series) // 2``
  (echo-major), top-left pad/crop to ``(36, 232, 256)``
  (ml4h TensorMap ``lms_ideal_optimised_low_flip_6dyn``).

Tensors hold raw magnitudes; :func:`zero_mean_std1` is ml4h's per-sample input
normalisation, applied just before a network sees the tensor.

:func:`gre_echoes` / :func:`ideal_echoes` return the selected images at their
native size with the echo times (ms) and slice geometry, for the physics fits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ukbmri.errors import FieldMismatchError, LiverInputError, TensorError
from ukbmri.types import Series

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

__all__ = [
    "GRE_FIELD",
    "IDEAL_FIELD",
    "GRE_SHAPE",
    "IDEAL_SHAPE",
    "GRE_N_ECHOES",
    "IDEAL_N_ECHOES",
    "IDEAL_N_DYNAMICS",
    "SliceGeometry",
    "EchoStack",
    "gre_echoes",
    "ideal_echoes",
    "gre_tensor",
    "ideal_tensor",
    "liver_tensor",
    "echo_times_ms",
    "slice_geometry",
    "ideal_channel",
    "pad_crop_top_left",
    "zero_mean_std1",
]

log = logging.getLogger(__name__)

GRE_FIELD = 20203
IDEAL_FIELD = 20254
GRE_N_ECHOES = 10
IDEAL_N_ECHOES = 6
IDEAL_N_DYNAMICS = 6
GRE_SHAPE: tuple[int, int, int] = (10, 160, 160)
IDEAL_SHAPE: tuple[int, int, int] = (36, 232, 256)

_GRE_DESCRIPTIONS = ("gre_mullti_echo_10_te_liver", "gre_multi_echo_10_te_liver")
_TE_DECIMALS = 3  # echo times equal to 1 microsecond are duplicates


class ZipLike(Protocol):
    """What this module needs of :class:`ukbmri.io.UkbZip`."""

    path: Path
    field: int
    series: tuple[Series, ...]


@dataclass(frozen=True)
class SliceGeometry:
    """Geometry of the single liver slice (from the first selected magnitude series)."""

    pixel_spacing_mm: tuple[float, float]  #: (between rows, between columns)
    shape: tuple[int, int]  #: native (rows, columns), before pad/crop
    position_lps_mm: tuple[float, float, float]
    orientation: tuple[float, ...]  #: ImageOrientationPatient (row dir, column dir)
    slice_thickness_mm: float | None
    field_strength_t: float | None
    repetition_time_ms: float | None
    flip_angle_deg: float | None


@dataclass(frozen=True)
class EchoStack:
    """Selected magnitude images of one liver zip at native size.

    ``images`` is ``(C, rows, cols)`` float32 in the ml4h channel order (GRE:
    ascending TE; IDEAL: echo-major ``6 * echo + dynamic``). ``echo_times_ms``
    has one entry per echo (10 for GRE, 6 for IDEAL), ascending.
    """

    images: np.ndarray
    echo_times_ms: np.ndarray
    geometry: SliceGeometry
    series_numbers: tuple[int, ...]  #: the magnitude series used (IDEAL: one per dynamic, in order)
    instance_numbers: tuple[int, ...] = ()  #: InstanceNumber of each image, in channel order


# --------------------------------------------------------------------------- helpers
def _normalise(desc: str) -> str:
    """ml4h convention: lower case, spaces to '_'."""
    return desc.strip().lower().replace(" ", "_")


def _is_gre(s: Series) -> bool:
    d = _normalise(s.description)
    return any(g in d for g in _GRE_DESCRIPTIONS)


def _is_ideal(s: Series) -> bool:
    return "ideal" in _normalise(s.description)


def _check_field(z: ZipLike, field: int) -> None:
    if z.field != field:
        raise FieldMismatchError(
            f"this tensor is built from field {field} zips", path=z.path, expected=field, found=z.field
        )


def _describe(series: Sequence[Series]) -> str:
    if not series:
        return "none"
    return ", ".join(f"#{s.series_number} {s.image_kind} x{s.n_images}" for s in series)


def _pixels(z: ZipLike, s: Series) -> np.ndarray:
    if s.pixels is None:
        raise LiverInputError(
            f"series #{s.series_number} was read without pixels (header-only scan)",
            path=z.path,
            expected="decoded pixels",
            found="headers only",
        )
    px = np.asarray(s.pixels)
    if px.ndim != 3 or px.shape[0] != s.n_images:
        raise LiverInputError(
            f"series #{s.series_number} pixel array does not match its images",
            path=z.path,
            expected=f"({s.n_images}, rows, cols)",
            found=px.shape,
        )
    return px


def _geometry(s: Series) -> SliceGeometry:
    pos = np.asarray(s.positions, dtype=float)
    first = tuple(float(v) for v in pos[0]) if pos.size else (float("nan"),) * 3
    return SliceGeometry(
        pixel_spacing_mm=(float(s.pixel_spacing[0]), float(s.pixel_spacing[1])),
        shape=(int(s.shape[0]), int(s.shape[1])),
        position_lps_mm=first,  # type: ignore[arg-type]
        orientation=tuple(float(v) for v in np.asarray(s.orientation, dtype=float)),
        slice_thickness_mm=s.slice_thickness,
        field_strength_t=s.field_strength_t,
        repetition_time_ms=s.repetition_time_ms,
        flip_angle_deg=s.flip_angle_deg,
    )


def _magnitude_series(z: ZipLike, is_protocol, protocol: str) -> list[Series]:
    """Magnitude series of the protocol; clear errors for phase-only / nothing."""
    ours = [s for s in z.series if is_protocol(s)]
    mags = [s for s in ours if s.image_kind == "magnitude"]
    if not mags:
        if any(s.image_kind == "phase" for s in ours):
            msg = f"{protocol}: phase images only, no magnitude images"
        else:
            msg = f"{protocol}: no magnitude images"
        raise LiverInputError(
            msg, path=z.path, expected="magnitude series (ImageType M)", found=_describe(list(z.series))
        )
    return mags


def _same_shape(z: ZipLike, series: Sequence[Series], protocol: str) -> None:
    shapes = {tuple(s.shape) for s in series}
    if len(shapes) != 1:
        raise LiverInputError(
            f"{protocol}: magnitude images differ in size",
            path=z.path,
            expected="one (rows, cols) for all images",
            found=sorted(shapes),
        )


# --------------------------------------------------------------------------- 20203
def gre_echoes(z: ZipLike) -> EchoStack:
    """The 10 magnitude echoes of a 20203 zip at native size, ascending echo time.

    Raises
    ------
    FieldMismatchError
        The zip is not field 20203.
    LiverInputError
        Phase images only, not exactly 10 magnitude echoes, duplicate or
        missing echo times, differently sized images.
    """
    _check_field(z, GRE_FIELD)
    protocol = "gre_mullti_echo_10_te_liver"
    mags = _magnitude_series(z, _is_gre, protocol)
    _same_shape(z, mags, protocol)
    images = np.concatenate([_pixels(z, s) for s in mags], axis=0)
    tes = np.concatenate([np.asarray(s.echo_times_ms, dtype=float) for s in mags])
    if images.shape[0] != GRE_N_ECHOES:
        raise LiverInputError(
            f"{protocol}: wrong number of magnitude echoes",
            path=z.path,
            expected=GRE_N_ECHOES,
            found=f"{images.shape[0]} (series {_describe(mags)})",
        )
    if not np.all(np.isfinite(tes)):
        raise LiverInputError(
            f"{protocol}: EchoTime missing on {int(np.sum(~np.isfinite(tes)))} magnitude images",
            path=z.path,
            expected="EchoTime (0018,0081) on every image",
            found=np.round(tes, _TE_DECIMALS).tolist(),
        )
    rounded = np.round(tes, _TE_DECIMALS)
    if np.unique(rounded).size != rounded.size:
        raise LiverInputError(
            f"{protocol}: duplicate echo times among the magnitude images",
            path=z.path,
            expected=f"{GRE_N_ECHOES} distinct echo times",
            found=sorted(rounded.tolist()),
        )
    order = np.argsort(tes, kind="stable")
    inst = np.concatenate([np.asarray(s.instance_numbers, dtype=int) for s in mags])
    return EchoStack(
        images=images[order].astype(np.float32, copy=False),
        echo_times_ms=tes[order],
        geometry=_geometry(mags[0]),
        series_numbers=tuple(s.series_number for s in mags),
        instance_numbers=tuple(int(i) for i in inst[order]),
    )


def gre_tensor(z: ZipLike) -> np.ndarray:
    """``(10, 160, 160)`` float32 raw magnitudes of a 20203 zip, TE ascending, top-left pad/crop."""
    return pad_crop_top_left(gre_echoes(z).images, GRE_SHAPE)


# --------------------------------------------------------------------------- 20254
def ideal_channel(instance_number: int, series_number: int, min_series: int) -> int:
    """ml4h IDEAL channel: ``6 * (InstanceNumber - 1) + (SeriesNumber - min_series) // 2``."""
    return IDEAL_N_DYNAMICS * (int(instance_number) - 1) + (int(series_number) - int(min_series)) // 2


def ideal_echoes(z: ZipLike) -> EchoStack:
    """The 36 IDEAL magnitude images of a 20254 zip at native size, ml4h channel order.

    Magnitude series are the dynamics; their series numbers must be
    ``min, min+2, ..., min+10`` (phase series sit in between). Each dynamic
    must hold InstanceNumbers 1..6 (the echoes).

    Raises
    ------
    FieldMismatchError
        The zip is not field 20254.
    LiverInputError
        Phase images only, not 6 magnitude dynamics, series-number gaps,
        not echoes 1..6 in every dynamic, inconsistent echo times.
    """
    _check_field(z, IDEAL_FIELD)
    protocol = "lms_ideal_optimised_low_flip_6dyn"
    mags = sorted(_magnitude_series(z, _is_ideal, protocol), key=lambda s: s.series_number)
    numbers = [s.series_number for s in mags]
    if len(mags) != IDEAL_N_DYNAMICS:
        raise LiverInputError(
            f"{protocol}: missing or extra dynamics",
            path=z.path,
            expected=f"{IDEAL_N_DYNAMICS} magnitude series",
            found=f"{len(mags)} (series {numbers})",
        )
    lo = numbers[0]
    expected_numbers = [lo + 2 * d for d in range(IDEAL_N_DYNAMICS)]
    if numbers != expected_numbers:
        raise LiverInputError(
            f"{protocol}: magnitude series numbers do not step by 2 (a dynamic is missing or duplicated)",
            path=z.path,
            expected=expected_numbers,
            found=numbers,
        )
    _same_shape(z, mags, protocol)
    rows, cols = mags[0].shape
    n_ch = IDEAL_N_ECHOES * IDEAL_N_DYNAMICS
    out = np.empty((n_ch, rows, cols), dtype=np.float32)
    instances = np.zeros(n_ch, dtype=int)
    te = np.full((IDEAL_N_DYNAMICS, IDEAL_N_ECHOES), np.nan)
    for d, s in enumerate(mags):
        inst = np.asarray(s.instance_numbers, dtype=int)
        if sorted(inst.tolist()) != list(range(1, IDEAL_N_ECHOES + 1)):
            raise LiverInputError(
                f"{protocol}: dynamic series #{s.series_number} does not hold echoes 1..{IDEAL_N_ECHOES}",
                path=z.path,
                expected=f"InstanceNumber 1..{IDEAL_N_ECHOES}",
                found=sorted(inst.tolist()),
            )
        px = _pixels(z, s)
        ch = IDEAL_N_DYNAMICS * (inst - 1) + (s.series_number - lo) // 2
        out[ch] = px
        instances[ch] = inst
        te[d, inst - 1] = np.asarray(s.echo_times_ms, dtype=float)
    echo_te = te[0]
    if np.all(np.isfinite(te)):
        if not np.allclose(te, echo_te[None, :], atol=10.0 ** -_TE_DECIMALS * 10):
            raise LiverInputError(
                f"{protocol}: echo times differ between dynamics",
                path=z.path,
                expected="the same EchoTime per InstanceNumber in every dynamic",
                found=np.round(te, _TE_DECIMALS).tolist(),
            )
    else:
        log.debug("%s: EchoTime missing on some IDEAL images", z.path)
    return EchoStack(
        images=out,
        echo_times_ms=echo_te,
        geometry=_geometry(mags[0]),
        series_numbers=tuple(numbers),
        instance_numbers=tuple(int(i) for i in instances),
    )


def ideal_tensor(z: ZipLike) -> np.ndarray:
    """``(36, 232, 256)`` float32 raw magnitudes of a 20254 zip in ml4h echo-major channel order."""
    return pad_crop_top_left(ideal_echoes(z).images, IDEAL_SHAPE)


# --------------------------------------------------------------------------- either field
def liver_tensor(z: ZipLike) -> np.ndarray:
    """:func:`gre_tensor` for a 20203 zip, :func:`ideal_tensor` for a 20254 zip."""
    if z.field == GRE_FIELD:
        return gre_tensor(z)
    if z.field == IDEAL_FIELD:
        return ideal_tensor(z)
    raise FieldMismatchError(
        "not a liver zip", path=z.path, expected=f"{GRE_FIELD} or {IDEAL_FIELD}", found=z.field
    )


def _stack(z: ZipLike) -> EchoStack:
    if z.field == GRE_FIELD:
        return gre_echoes(z)
    if z.field == IDEAL_FIELD:
        return ideal_echoes(z)
    raise FieldMismatchError(
        "not a liver zip", path=z.path, expected=f"{GRE_FIELD} or {IDEAL_FIELD}", found=z.field
    )


def echo_times_ms(z: ZipLike) -> np.ndarray:
    """Ascending echo times (ms) of the images the liver tensor uses (10 for 20203, 6 for 20254).

    For IDEAL the entries may be NaN when EchoTime is absent from the headers.
    """
    return _stack(z).echo_times_ms


def slice_geometry(z: ZipLike) -> SliceGeometry:
    """Pixel spacing, native size, position and acquisition parameters of the liver slice."""
    return _stack(z).geometry


# --------------------------------------------------------------------------- tensor ops
def pad_crop_top_left(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """ml4h pad/crop: a zero array of ``shape`` receives ``a[:min(old, new)]`` in every axis.

    Never centred: content stays anchored at index 0 of every axis.
    """
    a = np.asarray(a)
    shape = tuple(int(s) for s in shape)
    if a.ndim != len(shape):
        raise TensorError("pad/crop needs as many axes as the target shape", expected=shape, found=a.shape)
    if any(s < 0 for s in shape):
        raise TensorError("negative target shape", expected="sizes >= 0", found=shape)
    out = np.zeros(shape, dtype=a.dtype)
    sl = tuple(slice(0, min(o, n)) for o, n in zip(a.shape, shape, strict=True))
    out[sl] = a[sl]
    return out


def zero_mean_std1(x: np.ndarray, *, path: str | PathLike[str] | None = None) -> np.ndarray:
    """ml4h ``ZeroMeanStd1``: ``(x - mean) / (std + 1e-7)`` over the whole sample (padding included).

    Returns float32. Computed in float64.

    Raises
    ------
    TensorError
        Non-finite input or output, or a constant tensor (``std == 0``: ml4h
        would divide by 1e-7 and produce garbage, so it is refused).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        raise TensorError("empty tensor", path=path, expected="at least one value", found=a.shape)
    bad = ~np.isfinite(a)
    if bad.any():
        raise TensorError(
            "tensor has non-finite values", path=path, expected="finite values", found=f"{int(bad.sum())} NaN/inf"
        )
    mean = a.mean()
    std = a.std()
    if not std > 0.0:
        raise TensorError(
            "constant tensor cannot be normalised (std == 0)", path=path, expected="std > 0", found=f"all {mean:g}"
        )
    out = (a - mean) / (std + 1e-7)
    if not np.all(np.isfinite(out)):
        raise TensorError("normalisation produced non-finite values", path=path, expected="finite output")
    out32 = out.astype(np.float32)
    if not np.all(np.isfinite(out32)):  # float64 -> float32 overflow
        raise TensorError("normalised values overflow float32", path=path, expected="finite float32 output")
    return out32
