"""Small typed values that travel between the stages.

* :class:`ParticipantKey` - who and what a bulk file is (eid, field, instance, array).
* :class:`Series` - one DICOM series read from a zip: header fields + float32 pixels.
* :class:`Volume` - a 3D array with its voxel spacing, origin and axis directions.

Coordinates follow DICOM: patient LPS millimetres. :meth:`Volume.affine_ras`
gives the NIfTI / RAS+ affine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["ParticipantKey", "Series", "Volume", "FIELDS"]

#: The UK Biobank bulk fields this package reads, with a short description.
FIELDS: dict[int, str] = {
    20201: "Dixon neck-to-knee (6 stations x in/opp/F/W)",
    20203: "liver multi-echo GRE (10 echoes, one slice)",
    20254: "liver IDEAL (6 echoes x 6 dynamics, one slice)",
}

_NAME_RE = re.compile(r"^(?P<eid>\d+)_(?P<field>\d+)_(?P<instance>\d+)_(?P<array>\d+)$")


@dataclass(frozen=True, order=True)
class ParticipantKey:
    """Identity of one UK Biobank bulk file: ``<eid>_<field>_<instance>_<array>.zip``."""

    eid: int
    field: int
    instance: int = 2
    array: int = 0

    @property
    def stem(self) -> str:
        """``1234567_20201_2_0``: the zip name up to its first '.' (MIMIR's cache key)."""
        return f"{self.eid}_{self.field}_{self.instance}_{self.array}"

    @classmethod
    def from_path(cls, path: str | Path) -> ParticipantKey | None:
        """Parse a bulk file name; ``None`` when the name does not follow the convention."""
        m = _NAME_RE.match(stem_of(path))
        if m is None:
            return None
        return cls(int(m["eid"]), int(m["field"]), int(m["instance"]), int(m["array"]))


def stem_of(path: str | Path) -> str:
    """The file name up to its first '.', as MIMIR names its cache files."""
    return Path(path).name.split(".", 1)[0]


@dataclass(frozen=True, eq=False)
class Series:
    """One DICOM series of a zip, slices in ascending InstanceNumber order.

    Grouping key is (SeriesNumber, SeriesInstanceUID, image kind), so magnitude
    and phase images that share a series number become two ``Series``.

    Per-slice attributes are arrays of length ``n`` (number of slices / images).
    ``pixels`` is ``None`` for a header-only scan.
    """

    source: str  #: the zip (or folder) it came from, for messages
    series_number: int
    series_uid: str
    description: str
    image_kind: str  #: "magnitude", "phase" or "other" (from ImageType)
    image_type: tuple[str, ...]  #: ImageType of the first image
    acquired: datetime | None  #: earliest AcquisitionDate+Time (falls back to Series/Content)
    members: tuple[str, ...]  #: zip member per image
    instance_numbers: np.ndarray  #: (n,) int
    positions: np.ndarray  #: (n, 3) float64 ImagePositionPatient, LPS mm
    orientation: np.ndarray  #: (6,) float64 ImageOrientationPatient (row dir, col dir)
    pixel_spacing: tuple[float, float]  #: (between rows, between columns) mm
    shape: tuple[int, int]  #: (rows, columns)
    echo_times_ms: np.ndarray  #: (n,) float64, NaN where absent
    slice_thickness: float | None = None
    repetition_time_ms: float | None = None
    flip_angle_deg: float | None = None
    field_strength_t: float | None = None
    pixels: np.ndarray | None = None  #: (n, rows, cols) float32, rescale slope/intercept applied

    @property
    def n_images(self) -> int:
        return len(self.members)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (row direction x column direction)."""
        r, c = self.orientation[:3], self.orientation[3:]
        n = np.cross(r, c)
        return n / np.linalg.norm(n)

    def with_pixels(self, pixels: np.ndarray | None) -> Series:
        return replace(self, pixels=pixels)

    def __repr__(self) -> str:
        px = "headers only" if self.pixels is None else f"pixels {self.pixels.shape}"
        return (
            f"Series(#{self.series_number} {self.description!r} {self.image_kind}, "
            f"{self.n_images} x {self.shape[0]}x{self.shape[1]}, {px})"
        )


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image with geometry.

    ``array[i, j, k]`` sits at ``origin + direction @ (spacing * (i, j, k))``
    in patient LPS millimetres. ``direction`` columns are unit vectors of the
    array axes in LPS.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume needs a 3D array, got shape {self.array.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    def affine_lps(self) -> np.ndarray:
        """4x4 voxel index -> LPS mm."""
        a = np.eye(4)
        a[:3, :3] = np.asarray(self.direction, dtype=float) * np.asarray(self.spacing, dtype=float)
        a[:3, 3] = self.origin
        return a

    def affine_ras(self) -> np.ndarray:
        """4x4 voxel index -> RAS mm (the NIfTI convention)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()

    def with_array(self, array: np.ndarray) -> Volume:
        return replace(self, array=array)

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return f"Volume(shape={self.shape}, spacing=({sp}) mm, dtype={self.array.dtype})"
