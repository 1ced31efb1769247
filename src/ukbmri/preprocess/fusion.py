"""Field 20201: fuse the stations into one water and one fat volume, exactly as MIMIR does.

Follows ``shared/reference/mimir.md`` section 1, steps 3-6, vectorised with
numpy in float32 (MIMIR resamples on a CUDA GPU in float64).

Output grid
    Spacing :data:`OUT_SPACING` = (2.23214293, 2.23214293, 3.0) mm along
    (x = LR, y = AP, z = SI). In z the grid starts at the top slice of the first
    (most superior) station and counts downwards. In x and y it starts at the
    smallest station origin over all stations: a station's continuous grid
    coordinate is ``R = (origin - origin_first) / spacing`` minus the minimum
    over stations, so stations with fewer rows (168, 162, 156 instead of 174)
    sit at the AP offset their ImagePositionPatient gives them and the fused
    volume is as large as the union of the stations (224 x 174 for UK Biobank
    geometry). Grid z is ``-(z - z_first) / 3``. A station covers
    ``[R, R_end)`` with ``R_end = R + shape * station_spacing / OUT_SPACING``;
    it is written at ``W = round(R)`` with ``round(R_end) - round(R)`` voxels
    per axis (numpy's round half to even, like MIMIR).

Resampling (step 3)
    A station is copied when every coordinate of ``R`` and ``R_end`` is within
    :data:`RESAMPLE_TOLERANCE` (0.01) voxel of the grid and its voxel count on
    the grid, ``round(R_end) - round(R)`` per axis, equals its shape. MIMIR
    compares the *sum* over axes of the count differences (counts that differ
    by +1 and -1 in two axes then crash its reshape); we resample whenever any
    axis differs, which is the same in every case MIMIR survives. In practice
    station 1 (3.0 mm slices) is copied and stations 2-6 (4.5 / 3.5 / 4.0 mm)
    are resampled. Resampling is trilinear with coordinates clamped to the
    edge: output voxel ``k`` reads source coordinate
    ``(k - (R - W)) / ((R_end - R) / shape)`` per axis (MIMIR's kernel), done
    as separable linear interpolation (exactly trilinear: the weights are a
    product and the clamp is per axis). An axis whose source coordinates are
    within :data:`IDENTITY_TOLERANCE` of the output indices is copied rather
    than interpolated (in-plane the DICOM pixel spacing 2.232142925 differs from
    the grid's by 2e-9 relative: a float32-invisible shift). The kernel lives in
    :mod:`~ukbmri.preprocess.regrid`; fusion resamples z slice by slice as it adds.

Overlaps (steps 4-5)
    Consecutive stations overlap by ``ov = W_end_z[i] - W_z[i+1]`` slices.
    ``ov > 8`` is cut to 8: ``floor((ov - 8) / 2)`` slices from the end of the
    upper station, ``ceil`` from the start of the lower one. ``ov <= 0`` is a
    gap (left as zeros) and only recorded as a warning, like MIMIR. In an overlap
    the upper station's slice ``L - ov + j`` is weighted ``(ov - j) / (ov + 1)``
    and the lower's slice ``j`` ``(j + 1) / (ov + 1)``; then both are scaled by
    ``target_j / (mean(upper slice) + mean(lower slice))`` (means after the
    weighting) with ``target_j = m_b + (m_a - m_b) (j + 1) / (ov + 1)``, ``m_b``
    the mean of the upper station's last slice before the overlap and ``m_a``
    of the lower station's first slice after it. Water and fat are corrected
    separately. A zero denominator (an all-zero overlap) leaves the slices as
    they are (MIMIR would write NaN).

Assembly (step 6)
    Stations are added into one volume, z is flipped (index 0 = feet), the axes
    become (LR, AP, z) and 4 slices are dropped at each end. The returned
    :class:`~ukbmri.types.Volume` arrays are F-contiguous ``(LR, AP, z)``
    float32 views (axis 0 towards patient left, axis 1 towards posterior,
    axis 2 towards superior: direction = identity in LPS), with the origin
    set so that every voxel's LPS position is the DICOM position its signal
    came from (NIfTI export via :func:`ukbmri.io.nifti.save_volume` opens
    correctly oriented).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ukbmri.errors import FusionError, StationError
from ukbmri.preprocess.regrid import IDENTITY_TOLERANCE, StationSlices, resample_station
from ukbmri.preprocess.stations import Station
from ukbmri.types import Volume

__all__ = [
    "OUT_SPACING",
    "RESAMPLE_TOLERANCE",
    "MAX_OVERLAP",
    "TRIM_SLICES",
    "MAX_FUSED_VOXELS",
    "Placement",
    "FusionResult",
    "IDENTITY_TOLERANCE",
    "plan_grid",
    "resample_station",
    "fuse",
    "fuse_stations",
]

log = logging.getLogger(__name__)

#: Output voxel spacing (x = LR, y = AP, z = SI) in mm (MIMIR's constant).
OUT_SPACING: tuple[float, float, float] = (2.23214293, 2.23214293, 3.0)
#: A station further off the grid than this (in output voxels) is resampled.
RESAMPLE_TOLERANCE = 0.01
#: Overlaps between stations are cut to at most this many slices.
MAX_OVERLAP = 8
#: Axial slices dropped at each end of the fused volume (folding artefacts).
TRIM_SLICES = 4
#: Largest fused volume built (voxels per channel, 128 MB of float32; UK Biobank's is ~14.4 M):
#: stations placed absurdly far apart are refused before anything is allocated.
MAX_FUSED_VOXELS = 32 * 2**20


@dataclass(frozen=True)
class Placement:
    """Where one station lands on the output grid, in the stations' array order (z, y, x).

    Grid z counts slices downwards from the top of the first station.
    ``start`` / ``size`` are MIMIR's ``W`` / ``W_size`` before overlap trimming;
    ``offset`` = ``R - W`` and ``scaling`` = ``(R_end - R) / shape`` define the
    resampling; ``resample`` says whether the station is interpolated.
    """

    start: tuple[int, int, int]
    size: tuple[int, int, int]
    offset: tuple[float, float, float]
    scaling: tuple[float, float, float]
    resample: bool


@dataclass(frozen=True, eq=False)
class FusionResult:
    """Fused volumes plus what the fusion did (for tests, logs and the failures ledger)."""

    water: Volume
    fat: Volume
    placements: tuple[Placement, ...]
    overlaps: tuple[int, ...]  #: per consecutive pair, after trimming (<= 0: gap)
    cuts: tuple[tuple[int, int], ...]  #: per pair: (slices cut from the upper end, from the lower start)
    warnings: tuple[str, ...] = field(default_factory=tuple)


def plan_grid(stations: Sequence[Station]) -> tuple[list[Placement], tuple[float, float, float]]:
    """MIMIR's station coordinates on the output grid.

    Returns the placements and the LPS position ``(x, y, z)`` of grid index
    (0, 0, 0) in (x, y, top-down z) grid coordinates.
    """
    if not stations:
        raise StationError("no stations to fuse")
    sp = np.asarray(OUT_SPACING, dtype=float)
    origins = np.array([s.origin for s in stations], dtype=float)  # (S, 3) x, y, z
    dims = np.array([s.water.shape[::-1] for s in stations], dtype=float)  # (S, 3) x, y, z order
    spacings = np.array([s.spacing for s in stations], dtype=float)  # x, y, z
    first = origins[0].copy()
    r = (origins - first) / sp
    r[:, 0] -= np.min(r[:, 0])
    r[:, 1] -= np.min(r[:, 1])
    r[:, 2] *= -1
    r_end = r + dims * spacings / sp
    w = np.around(r).astype(int)
    w_end = np.around(r_end).astype(int)
    w_size = w_end - w
    placements = []
    for i in range(len(stations)):
        offs = np.concatenate([r[i], r_end[i]])
        max_off = float(np.max(np.abs(offs - np.around(offs))))
        resample = max_off > RESAMPLE_TOLERANCE or bool(np.any(w_size[i] != dims[i]))
        if np.any(w_size[i] <= 0):
            raise FusionError("station has no extent on the output grid", path=stations[i].source,
                              member=f"station {stations[i].index}", found=tuple(w_size[i]))
        scaling = (r_end[i] - r[i]) / dims[i]
        offset = r[i] - w[i]
        placements.append(
            Placement(
                start=tuple(int(v) for v in w[i, ::-1]),  # type: ignore[arg-type]
                size=tuple(int(v) for v in w_size[i, ::-1]),  # type: ignore[arg-type]
                offset=tuple(float(v) for v in offset[::-1]),  # type: ignore[arg-type]
                scaling=tuple(float(v) for v in scaling[::-1]),  # type: ignore[arg-type]
                resample=resample,
            )
        )
    x0 = float(np.min(origins[:, 0]))
    y0 = float(np.min(origins[:, 1]))
    return placements, (x0, y0, float(first[2]))


def _trim(placements: list[Placement]) -> tuple[list[int], list[int], list[int], list[tuple[int, int]], list[int]]:
    """Overlap trimming in z: starts, lengths, overlaps, cuts, and per-station leading cut."""
    s_count = len(placements)
    start = [p.start[0] for p in placements]
    size = [p.size[0] for p in placements]
    end = [a + b for a, b in zip(start, size, strict=True)]
    lead = [0] * s_count
    overlaps = [0] * s_count
    cuts = []
    for i in range(s_count - 1):
        ov = end[i] - start[i + 1]
        cut_a = cut_b = 0
        if ov > MAX_OVERLAP:
            half = (ov - MAX_OVERLAP) / 2.0
            cut_a, cut_b = int(math.floor(half)), int(math.ceil(half))
            ov = MAX_OVERLAP
            end[i] -= cut_a
            size[i] -= cut_a
            start[i + 1] += cut_b
            size[i + 1] -= cut_b
            lead[i + 1] = cut_b
        overlaps[i] = ov
        cuts.append((cut_a, cut_b))
    return start, size, overlaps, cuts, lead


def _scales(arrays: list[StationSlices], sizes: list[int], overlaps: list[int]) -> list[np.ndarray]:
    """Per-slice factors: seam fades, then MIMIR's overlap intensity correction."""
    s_count = len(arrays)
    scale = [np.ones(n, dtype=np.float64) for n in sizes]
    means: dict[tuple[int, int], float] = {}

    def mean(i: int, k: int) -> float:
        if (i, k) not in means:
            means[(i, k)] = float(np.mean(arrays[i].slice(k, keep=True), dtype=np.float64))
        return scale[i][k] * means[(i, k)]

    for i in range(s_count):
        if i < s_count - 1:
            for j in range(max(overlaps[i], 0)):
                scale[i][sizes[i] - 1 - j] *= (j + 1) / (overlaps[i] + 1.0)
        if i > 0:
            for j in range(max(overlaps[i - 1], 0)):
                scale[i][j] *= (j + 1) / (overlaps[i - 1] + 1.0)
    for i in range(s_count - 1):
        ov = overlaps[i]
        if ov <= 0:
            continue
        if ov >= sizes[i + 1] or sizes[i] - 1 - ov < 0:
            raise FusionError("station too short for its overlap", expected=f"> {ov} slices",
                              found=f"{sizes[i]} and {sizes[i + 1]} slices")
        mean_a = mean(i + 1, ov)
        mean_b = mean(i, sizes[i] - 1 - ov)
        for j in range(ov):
            target = mean_b + (mean_a - mean_b) * (j + 1) / (ov + 1.0)
            k_up = sizes[i] - ov + j
            current = mean(i + 1, j) + mean(i, k_up)
            if current == 0:
                continue
            correct = target / current
            scale[i + 1][j] *= correct
            scale[i][k_up] *= correct
    return scale


def _assemble(arrays: list[StationSlices], starts_zyx, sizes_z, scales, shape_zyx) -> np.ndarray:
    """Add the (trimmed) stations into a volume stored z-flipped, (Z, Y, X) C-order."""
    z_total = shape_zyx[0]
    vol = np.zeros(shape_zyx, dtype=np.float32)
    for data, (z0, y0, x0), n, sc in zip(arrays, starts_zyx, sizes_z, scales, strict=True):
        ny, nx = data.shape[1], data.shape[2]
        sc32 = sc.astype(np.float32)
        if not data.is_view:  # resampled slice by slice: each is added as it is computed
            for k in range(n):  # top-down slice z0 + k -> flipped row Z - z0 - 1 - k
                dst = vol[z_total - z0 - 1 - k, y0 : y0 + ny, x0 : x0 + nx]
                src = data.slice(k)
                if sc32[k] == 1.0:
                    dst += src
                else:
                    dst += src * sc32[k]
            continue
        k = 0
        while k < n:  # runs of unit factor are added as one block
            unit = sc32[k] == 1.0
            e = k + 1
            while e < n and (sc32[e] == 1.0) == unit:
                e += 1
            # top-down slices [z0 + k, z0 + e) -> flipped rows [Z - z0 - e, Z - z0 - k)
            dst = vol[z_total - z0 - e : z_total - z0 - k, y0 : y0 + ny, x0 : x0 + nx]
            src = data.block(k, e)[::-1]
            if unit:
                dst += src
            else:
                dst += src * sc32[k:e][::-1, None, None]
            k = e
    return vol


def fuse(stations: Sequence[Station]) -> FusionResult:
    """Fuse stations (sorted z descending, as :func:`~ukbmri.preprocess.stations.collect_stations` gives).

    Raises
    ------
    StationError
        No stations.
    FusionError
        Stations not sorted, too short, or a fused volume with no slices left.
    """
    stations = list(stations)
    if not stations:
        raise StationError("no stations to fuse")
    src = stations[0].source
    z_tops = [s.origin[2] for s in stations]
    if any(b > a for a, b in zip(z_tops, z_tops[1:])):
        raise FusionError("stations must be sorted by z descending", path=src, found=z_tops)
    for s in stations:
        if s.water.shape != s.fat.shape:
            raise FusionError("water and fat of a station differ in shape", path=src, member=f"station {s.index}",
                              expected=s.water.shape, found=s.fat.shape)
    placements, (x0, y0, z_first) = plan_grid(stations)
    notes: list[str] = []
    starts, sizes, overlaps, cuts, lead = _trim(placements)
    for i in range(len(stations) - 1):
        ov = overlaps[i]
        if ov <= 0:
            msg = f"no overlap between stations {stations[i].index} and {stations[i + 1].index} (gap of {-ov} slices)"
            log.warning("%s: %s", src, msg)
            notes.append(msg)
        elif cuts[i] == (0, 0) and ov < MAX_OVERLAP:
            pair = f"{stations[i].index} and {stations[i + 1].index}"
            notes.append(f"overlap between stations {pair} is only {ov} slices")
    if any(n <= 0 for n in sizes):
        raise FusionError("a station is consumed by overlap trimming", path=src, found=sizes)
    shape_zyx = (
        max(a + b for a, b in zip(starts, sizes, strict=True)),
        max(p.start[1] + p.size[1] for p in placements),
        max(p.start[2] + p.size[2] for p in placements),
    )
    if shape_zyx[0] <= 2 * TRIM_SLICES:
        raise FusionError(
            "fused volume too short", path=src, expected=f"> {2 * TRIM_SLICES} slices", found=shape_zyx[0]
        )
    if math.prod(shape_zyx) > MAX_FUSED_VOXELS:
        raise FusionError(
            "fused volume would be implausibly large (station positions far apart?)", path=src,
            expected=f"at most {MAX_FUSED_VOXELS} voxels (UK Biobank: about 224 x 174 x 370)",
            found=" x ".join(str(v) for v in shape_zyx[::-1]),
        )
    starts_zyx = [(starts[i], p.start[1], p.start[2]) for i, p in enumerate(placements)]
    z_total = shape_zyx[0]
    origin = (x0, y0, z_first - OUT_SPACING[2] * (z_total - 1 - TRIM_SLICES))
    volumes = []
    for channel in ("water", "fat"):
        arrays = [
            StationSlices(getattr(st, channel), p, cut, n)
            for st, p, n, cut in zip(stations, placements, sizes, lead, strict=True)
        ]
        scales = _scales(arrays, sizes, overlaps)
        vol = _assemble(arrays, starts_zyx, sizes, scales, shape_zyx)
        del arrays
        array = vol[TRIM_SLICES : z_total - TRIM_SLICES].transpose(2, 1, 0)
        volumes.append(Volume(array=array, spacing=OUT_SPACING, origin=origin, direction=np.eye(3)))
    return FusionResult(
        water=volumes[0],
        fat=volumes[1],
        placements=tuple(placements),
        overlaps=tuple(overlaps[: len(stations) - 1]),
        cuts=tuple(cuts),
        warnings=tuple(notes),
    )


def fuse_stations(stations: Sequence[Station]) -> tuple[Volume, Volume]:
    """Fused ``(water, fat)`` volumes, ``(LR, AP, z)`` float32 on MIMIR's grid."""
    r = fuse(stations)
    return r.water, r.fat
