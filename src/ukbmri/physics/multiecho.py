"""Multi-echo input data, fat-water maps and the small helpers both fitters share.

Axis convention (used everywhere in :mod:`ukbmri.physics` and in the NIfTI export):
``images[x, y, z, echo]``. For data read from DICOM (UK Biobank zips) ``x`` is the
DICOM column index (the direction of ``ImageOrientationPatient[:3]``, patient left
for an axial slice), ``y`` the row index (``ImageOrientationPatient[3:]``) and ``z``
the slice, so ``affine_lps`` maps ``(x, y, z)`` to patient LPS millimetres exactly like
:meth:`ukbmri.types.Volume.affine_lps`. For ISMRM toolbox files the array is kept
as stored (``x`` = rows of the usual display, ``y`` = columns) and there is no affine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ukbmri.errors import FitInputError
from ukbmri.types import Volume

__all__ = [
    "MultiEcho",
    "FatWaterMaps",
    "default_mask",
    "resolve_device",
    "ff_from_amplitudes",
    "volume_for",
]

log = logging.getLogger(__name__)

MIN_ECHOES = 3


@dataclass(frozen=True, eq=False)
class MultiEcho:
    """Multi-echo gradient-echo data of one acquisition.

    Parameters
    ----------
    images:
        ``(x, y, z, echoes)`` complex64 (magnitude and phase) or float32 (magnitude only).
    te_s:
        Echo times in seconds, ``(echoes,)``, strictly increasing.
    field_strength_t:
        Main field in tesla (sets the fat chemical shift in Hz).
    spacing:
        Voxel size in mm ``(x, y, z)``, or ``None`` when unknown.
    source:
        Where the data came from (file name), for messages.
    affine_lps:
        Optional 4x4 voxel index -> patient LPS mm (``None`` when unknown).
    """

    images: np.ndarray
    te_s: np.ndarray
    field_strength_t: float
    spacing: tuple[float, float, float] | None = None
    source: str = "<array>"
    affine_lps: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        img = np.asarray(self.images)
        te = np.asarray(self.te_s, dtype=np.float64).reshape(-1)
        if img.ndim != 4:
            raise FitInputError(
                "multi-echo images have the wrong rank", path=self.source,
                expected="4 dimensions (x, y, z, echoes)", found=f"shape {img.shape}",
            )
        if np.iscomplexobj(img):
            img = img.astype(np.complex64, copy=False)
        else:
            img = img.astype(np.float32, copy=False)
        n = img.shape[-1]
        if n < MIN_ECHOES:
            raise FitInputError(
                "too few echoes for fat-water separation", path=self.source,
                expected=f">= {MIN_ECHOES} echoes", found=n,
            )
        if te.size != n:
            raise FitInputError(
                "echo time list does not match the number of echoes", path=self.source,
                expected=f"{n} echo times", found=f"{te.size}",
            )
        if not np.all(np.isfinite(te)) or np.any(te < 0) or np.any(np.diff(te) <= 0):
            raise FitInputError(
                "echo times must be finite, non-negative and strictly increasing", path=self.source,
                expected="increasing TE in seconds", found=np.round(te * 1e3, 4).tolist(),
            )
        if te.max() > 0.5:
            raise FitInputError(
                "echo times look like milliseconds, not seconds", path=self.source,
                expected="TE in seconds (e.g. 0.0024)", found=te.tolist(),
            )
        if not np.all(np.isfinite(img)):
            bad = int((~np.isfinite(img)).sum())
            raise FitInputError(
                "multi-echo images contain non-finite values", path=self.source,
                expected="finite data", found=f"{bad} NaN/inf values",
            )
        b0 = float(self.field_strength_t)
        if not np.isfinite(b0) or b0 <= 0 or b0 > 20:
            raise FitInputError("implausible field strength", path=self.source,
                                expected="0 < B0 <= 20 T", found=self.field_strength_t)
        if self.spacing is not None and len(self.spacing) != 3:
            raise FitInputError("spacing needs three values", path=self.source, found=self.spacing)
        if self.affine_lps is not None and np.asarray(self.affine_lps).shape != (4, 4):
            raise FitInputError("affine must be 4x4", path=self.source,
                                found=np.asarray(self.affine_lps).shape)
        object.__setattr__(self, "images", img)
        object.__setattr__(self, "te_s", te)
        object.__setattr__(self, "field_strength_t", b0)
        if self.spacing is not None:
            object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self.images))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[:3])  # type: ignore[return-value]

    @property
    def n_echoes(self) -> int:
        return int(self.images.shape[-1])

    def magnitude(self) -> np.ndarray:
        """``(x, y, z, echoes)`` float32 magnitudes."""
        return np.abs(self.images).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        kind = "complex" if self.is_complex else "magnitude"
        te = ", ".join(f"{t * 1e3:.3g}" for t in self.te_s)
        return (f"MultiEcho({self.source!r}, {kind} {self.images.shape}, TE=[{te}] ms, "
                f"{self.field_strength_t:g} T)")


@dataclass(frozen=True, eq=False)
class FatWaterMaps:
    """Fat-water separation result; every map has the input's ``(x, y, z)`` shape (float32).

    ``ff_percent`` is ``100 F / (W + F)``, NaN outside the fitted mask; ``b0_hz`` is NaN
    everywhere for the magnitude method; ``residual`` is the root-mean-square misfit per
    echo divided by the root-mean-square signal (0 = perfect fit).
    """

    water: np.ndarray
    fat: np.ndarray
    ff_percent: np.ndarray
    r2star_per_s: np.ndarray
    b0_hz: np.ndarray
    residual: np.ndarray
    mask: np.ndarray
    method: str = ""
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.ff_percent.shape)  # type: ignore[return-value]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "ff_percent": self.ff_percent, "r2star_per_s": self.r2star_per_s, "b0_hz": self.b0_hz,
            "water": self.water, "fat": self.fat, "residual": self.residual,
        }


def default_mask(data: MultiEcho, *, fraction: float = 0.1, percentile: float = 99.0) -> np.ndarray:
    """Voxels whose echo-averaged signal exceeds ``fraction`` of a high percentile.

    The root-mean-square magnitude over echoes is compared with ``fraction`` times its
    ``percentile``-th percentile; this keeps tissue, including dark short-T2* tissue next
    to bright fat, and drops air and background noise.
    """
    e = np.sqrt(np.mean(np.abs(data.images) ** 2, axis=-1))
    ref = float(np.percentile(e, percentile))
    if ref <= 0:
        raise FitInputError("images are empty (all zero)", path=data.source,
                            expected="non-zero signal", found="all zero")
    return e > fraction * ref


def check_mask(mask: np.ndarray | None, data: MultiEcho) -> np.ndarray:
    """Validate a user mask (broadcasting 2D to one slice) or build the default one."""
    if mask is None:
        return default_mask(data)
    m = np.asarray(mask)
    if m.ndim == 2 and data.shape[2] == 1:
        m = m[:, :, None]
    if m.shape != data.shape:
        raise FitInputError("mask shape does not match the images", path=data.source,
                            expected=data.shape, found=m.shape)
    return m.astype(bool)


def resolve_device(device: str | None) -> str:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` -> a torch device string (falls back to CPU)."""
    import torch

    d = (device or "cpu").lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            log.warning("CUDA requested but not available: fitting on the CPU")
            return "cpu"
        return d
    if d != "cpu":
        raise FitInputError("unknown device", expected="cpu, cuda or auto", found=device)
    return "cpu"


def ff_from_amplitudes(water: np.ndarray, fat: np.ndarray, mask: np.ndarray,
                       *, min_signal: float = 0.0) -> np.ndarray:
    """``100 F / (W + F)`` clipped to [0, 100]; NaN outside ``mask`` or where ``W + F <= min_signal``."""
    w = np.asarray(water, dtype=np.float64)
    f = np.asarray(fat, dtype=np.float64)
    tot = w + f
    ok = mask & np.isfinite(tot) & (tot > max(min_signal, 0.0))
    ff = np.full(w.shape, np.nan)
    ff[ok] = np.clip(100.0 * f[ok] / tot[ok], 0.0, 100.0)
    return ff.astype(np.float32)


def volume_for(array: np.ndarray, data: MultiEcho | None = None,
               affine_lps: np.ndarray | None = None) -> Volume:
    """Wrap a ``(x, y, z)`` map in a :class:`~ukbmri.types.Volume` with the data's geometry.

    Identity geometry (1 mm, origin 0) when no affine is known.
    """
    a = affine_lps if affine_lps is not None else (None if data is None else data.affine_lps)
    if a is None:
        sp = (1.0, 1.0, 1.0) if data is None or data.spacing is None else data.spacing
        return Volume(array=array, spacing=sp)
    a = np.asarray(a, dtype=float)
    m = a[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    direction = m / np.where(spacing == 0, 1.0, spacing)
    return Volume(array=array, spacing=tuple(map(float, spacing)),
                  origin=tuple(map(float, a[:3, 3])), direction=direction)
