"""Field 20201: water / fat series of a zip -> checked, de-duplicated :class:`Station` objects.

MIMIR's rules (``shared/reference/mimir.md`` section 1, steps 1-2), done safely:

* A *series* (one SeriesNumber, image kind) of Dixon water (``..._W``) or fat
  (``..._F``) images is one station's worth of slices. Slices are ordered by
  z descending (head first); the station origin is the per-axis maximum of
  ImagePositionPatient (LPS mm) and its slice spacing
  ``(z_max - z_min) / (n - 1)``.
* Water and fat series are paired by position: each water series takes the
  fat series whose origin matches (within :data:`POSITION_TOLERANCE_MM`),
  the nearest SeriesNumber first (the four Dixon series of one acquisition are
  numbered together). Water and fat series left over are paired in
  SeriesNumber order (MIMIR's pairing) and then sit at different positions:
  :class:`~ukbmri.errors.FusionError` naming the zip, both series, expected
  (water) and found (fat) position. An unmatched count of W and F series is a
  :class:`~ukbmri.errors.StationError`.
* W and F of different sizes are cropped to the common shape from the end
  (the last rows / columns / lowest slices go), as MIMIR does; a note is kept.
* Duplicate stations (a re-scan): two stations whose z ranges overlap by at
  least half of the shorter one are the same station; the most recent one by
  acquisition *datetime* is kept (a re-scan can cross midnight, which breaks
  MIMIR's time-string comparison). MIMIR only recognises re-scans at exactly
  the same position; this rule includes that case.
* Stations are sorted by z descending and numbered 1..S (1 = head).
* Missing stations: UK Biobank acquires 6. MIMIR fuses whatever is there
  (a missing middle station leaves a gap of zeros, a missing end station
  changes the body's scale in the resized 2D image). We fuse with a recorded
  warning when at least ``min_stations`` (default 5, i.e. one missing) are
  present and raise :class:`~ukbmri.errors.StationError` below that.
* Slices inside a series must be evenly spaced (MIMIR assumes so silently); a
  series with a gap, repeated z positions or a single slice is refused.
* Only axial stacks (ImageOrientationPatient ~ 1\\0\\0\\0\\1\\0, as UK Biobank
  acquires them and as MIMIR's geometry assumes) are accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from ukbmri.errors import FusionError, StationError
from ukbmri.io.fields import dixon_kind
from ukbmri.types import Series

__all__ = [
    "Station",
    "StationReport",
    "collect_stations",
    "stations_from_zip",
    "series_volume",
    "POSITION_TOLERANCE_MM",
    "EXPECTED_STATIONS",
]

log = logging.getLogger(__name__)

#: W and F origins closer than this (per axis, mm) are the same position.
POSITION_TOLERANCE_MM = 0.01
#: UK Biobank neck-to-knee protocol: 6 stations.
EXPECTED_STATIONS = 6
#: Largest allowed deviation of a slice step from the mean step (fraction of the step).
SPACING_TOLERANCE = 0.1
_AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
_AXIAL_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class Station:
    """One neck-to-knee station: water and fat stacks with their geometry.

    ``water`` / ``fat``: ``(n_slices, rows, cols)`` float32, slices z descending
    (slice 0 is the most superior). ``origin``: per-axis maximum of the slices'
    ImagePositionPatient (LPS mm), i.e. the first pixel of the top slice for an
    axial stack. ``spacing``: ``(x, y, z)`` mm in LPS axis order, i.e.
    (between columns, between rows, between slices).
    """

    index: int
    water: np.ndarray
    fat: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    acquired: datetime | None
    series_numbers: tuple[int, int] = (-1, -1)  #: (water, fat) SeriesNumber
    description: str = ""
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.water.shape)  # type: ignore[return-value]

    @property
    def z_top(self) -> float:
        return self.origin[2]

    @property
    def z_bottom(self) -> float:
        return self.origin[2] - (self.water.shape[0] - 1) * self.spacing[2]

    def __repr__(self) -> str:
        return (
            f"Station({self.index}, series W#{self.series_numbers[0]} F#{self.series_numbers[1]}, "
            f"{self.shape}, z {self.z_top:.1f}..{self.z_bottom:.1f} mm, acquired {self.acquired})"
        )


@dataclass(frozen=True)
class StationReport:
    """The stations of one zip plus human-readable notes (cropping, duplicates, missing)."""

    stations: tuple[Station, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, eq=False)
class _Stack:
    series: Series
    volume: np.ndarray  # (n, rows, cols), z descending
    z: np.ndarray  # (n,) slice z, descending
    origin: np.ndarray  # (3,)
    spacing: tuple[float, float, float]


def series_volume(
    s: Series, *, source: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Stack a series' slices z descending.

    Returns ``(volume, z, origin, spacing)``: ``(n, rows, cols)`` float32 (a view
    when the slices already are in order), slice z positions (descending), the
    per-axis maximum of ImagePositionPatient and ``(x, y, z)`` spacing.
    """
    where = source if source is not None else s.source
    member = f"series {s.series_number} {s.description!r}"
    if s.pixels is None:
        raise StationError("series has no decoded pixels", path=where, member=member)
    n = s.n_images
    if n < 2:
        raise StationError("a station needs at least 2 slices", path=where, member=member, found=n)
    orient = np.asarray(s.orientation, dtype=float)
    if orient.shape != (6,) or np.max(np.abs(orient - _AXIAL)) > _AXIAL_TOLERANCE:
        raise FusionError(
            "station is not an axial stack", path=where, member=member,
            expected="ImageOrientationPatient 1\\0\\0\\0\\1\\0", found="\\".join(f"{v:g}" for v in orient),
        )
    pos = np.asarray(s.positions, dtype=float)
    order = np.argsort(-pos[:, 2], kind="stable")
    z = pos[order, 2]
    steps = -np.diff(z)
    z_spacing = float((z[0] - z[-1]) / (n - 1))
    if z_spacing <= 0 or np.any(steps <= 0) or np.max(np.abs(steps - z_spacing)) > SPACING_TOLERANCE * z_spacing:
        raise StationError(
            "slices are not evenly spaced in z (missing or repeated slice)", path=where, member=member,
            expected=f"steps of {z_spacing:.4g} mm", found=f"steps {np.unique(np.round(steps, 3)).tolist()} mm",
        )
    px = s.pixels
    if np.array_equal(order, np.arange(n)):
        vol = px
    elif np.array_equal(order, np.arange(n)[::-1]):
        vol = px[::-1]
    else:
        vol = px[order]
    if vol.dtype != np.float32:
        vol = vol.astype(np.float32)
    row_sp, col_sp = (float(v) for v in s.pixel_spacing)
    return vol, z, pos.max(axis=0), (col_sp, row_sp, z_spacing)


def _stack(s: Series, source: str) -> _Stack:
    vol, z, origin, spacing = series_volume(s, source=source)
    return _Stack(s, vol, z, origin, spacing)


def _pair(water: list[_Stack], fat: list[_Stack], source: str) -> list[tuple[_Stack, _Stack]]:
    """Pair W and F stacks by position (nearest SeriesNumber first), then check leftovers."""
    pairs: list[tuple[_Stack, _Stack]] = []
    free = list(fat)
    left_w: list[_Stack] = []
    for w in water:
        cands = [f for f in free if np.all(np.abs(f.origin - w.origin) <= POSITION_TOLERANCE_MM)]
        if not cands:
            left_w.append(w)
            continue
        best = min(cands, key=lambda f: (abs(f.series.series_number - w.series.series_number), f.series.series_number))
        free.remove(best)
        pairs.append((w, best))
    if left_w or free:
        if len(left_w) == len(free):
            # pair the rest in SeriesNumber order, as MIMIR does: they disagree in position
            w, f = left_w[0], free[0]
            raise FusionError(
                f"water and fat series of a station are at different positions "
                f"(W series {w.series.series_number} {w.series.description!r}, "
                f"F series {f.series.series_number} {f.series.description!r})",
                path=source, expected=_fmt_pos(w.origin), found=_fmt_pos(f.origin),
            )
        extra = left_w or free
        kind = "water" if left_w else "fat"
        other = "fat" if left_w else "water"
        raise StationError(
            f"{kind} series {[e.series.series_number for e in extra]} have no {other} series at the same position",
            path=source, expected=f"{len(extra) + len(pairs)} {other} series", found=f"{len(pairs)} matching",
        )
    return pairs


def _fmt_pos(p: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in p) + ") mm"


def _make_station(w: _Stack, f: _Stack, source: str, notes: list[str]) -> Station:
    wv, fv = w.volume, f.volume
    desc = w.series.description
    if wv.shape != fv.shape:
        common = tuple(min(a, b) for a, b in zip(wv.shape, fv.shape, strict=True))
        msg = (
            f"station W#{w.series.series_number}/F#{f.series.series_number} ({desc}): water {wv.shape} and "
            f"fat {fv.shape} differ in size; cropped to {common}"
        )
        log.info("%s: %s", source, msg)
        notes.append(msg)
        wv = wv[: common[0], : common[1], : common[2]]
        fv = fv[: common[0], : common[1], : common[2]]
    n = wv.shape[0]
    if np.max(np.abs(w.z[:n] - f.z[:n])) > POSITION_TOLERANCE_MM:
        raise FusionError(
            f"water and fat slices of station W#{w.series.series_number}/F#{f.series.series_number} ({desc}) "
            "are at different z positions",
            path=source, expected=f"z {np.round(w.z[:n], 3).tolist()}", found=f"z {np.round(f.z[:n], 3).tolist()}",
        )
    acquired = w.series.acquired if w.series.acquired is not None else f.series.acquired
    return Station(
        index=0,
        water=wv,
        fat=fv,
        origin=tuple(float(v) for v in w.origin),  # type: ignore[arg-type]
        spacing=w.spacing,
        acquired=acquired,
        series_numbers=(w.series.series_number, f.series.series_number),
        description=desc,
        source=source,
    )


def _z_overlap_fraction(a: Station, b: Station) -> float:
    lo = max(a.z_bottom, b.z_bottom)
    hi = min(a.z_top, b.z_top)
    shorter = min(a.z_top - a.z_bottom, b.z_top - b.z_bottom)
    if shorter <= 0:
        return 1.0 if hi >= lo else 0.0
    return max(0.0, hi - lo) / shorter


def _recency_key(s: Station) -> tuple[datetime, int]:
    return (s.acquired if s.acquired is not None else datetime.min, s.series_numbers[0])


def _deduplicate(stations: list[Station], source: str, notes: list[str]) -> list[Station]:
    """Keep the most recent station of every group of stations covering the same z range."""
    n = len(stations)
    group = list(range(n))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if _z_overlap_fraction(stations[i], stations[j]) >= 0.5:
                group[root(j)] = root(i)
    clusters: dict[int, list[Station]] = {}
    for i, s in enumerate(stations):
        clusters.setdefault(root(i), []).append(s)
    kept = []
    for members in clusters.values():
        if len(members) == 1:
            kept.append(members[0])
            continue
        newest = max(members, key=_recency_key)
        undated = [m for m in members if m.acquired is None]
        how = "by acquisition date and time"
        if undated:
            how = "by SeriesNumber (acquisition time missing)" if len(undated) == len(members) else (
                "by acquisition date and time (undated series count as oldest)"
            )
        msg = (
            f"duplicate station (re-scan): series W#{[m.series_numbers[0] for m in members]} cover the same z range; "
            f"kept the most recent, W#{newest.series_numbers[0]} acquired {newest.acquired}, {how}"
        )
        log.info("%s: %s", source, msg)
        notes.append(msg)
        kept.append(newest)
    return kept


def collect_stations(
    series: Sequence[Series],
    *,
    source: str | Path | None = None,
    min_stations: int = EXPECTED_STATIONS - 1,
    expected_stations: int = EXPECTED_STATIONS,
) -> StationReport:
    """Build the checked station list from a zip's series (W and F series need pixels).

    Parameters
    ----------
    series:
        All series of a 20201 zip; only Dixon ``W`` / ``F`` series are used.
    source:
        Name of the zip, for messages (defaults to the series' ``source``).
    min_stations:
        Fewer stations than this (after removing duplicates) raise
        :class:`~ukbmri.errors.StationError`; between this and
        ``expected_stations`` the stations are returned with a warning.

    Raises
    ------
    StationError
        No W/F series, unpaired series, uneven slices, too few stations.
    FusionError
        W and F of a station at different positions, or a non-axial stack.
    """
    src = str(source) if source is not None else (series[0].source if series else "")
    notes: list[str] = []
    by_kind: dict[str, list[_Stack]] = {"W": [], "F": []}
    for s in sorted(series, key=lambda s: (s.series_number, s.series_uid)):
        kind = dixon_kind(s.description)
        if kind in by_kind:
            by_kind[kind].append(_stack(s, src))
    if not by_kind["W"] or not by_kind["F"]:
        raise StationError(
            "no Dixon water and fat series", path=src, expected="series ending in _W and _F",
            found=f"{len(by_kind['W'])} W, {len(by_kind['F'])} F",
        )
    pairs = _pair(by_kind["W"], by_kind["F"], src)
    stations = [_make_station(w, f, src, notes) for w, f in pairs]
    stations = _deduplicate(stations, src, notes)
    stations.sort(key=lambda s: -s.origin[2])
    stations = [_renumber(s, i + 1) for i, s in enumerate(stations)]
    if len(stations) < min_stations:
        raise StationError(
            "too few neck-to-knee stations", path=src,
            expected=f">= {min_stations} (of {expected_stations})", found=len(stations),
        )
    if len(stations) < expected_stations:
        msg = f"only {len(stations)} of {expected_stations} stations present; fused with what is there"
        log.info("%s: %s", src, msg)
        notes.append(msg)
    return StationReport(tuple(stations), tuple(notes))


def _renumber(s: Station, index: int) -> Station:
    return replace(s, index=index)


def stations_from_zip(z, *, min_stations: int = EXPECTED_STATIONS - 1) -> list[Station]:
    """Stations of a read :class:`~ukbmri.io.UkbZip` (W and F pixels decoded).

    See :func:`collect_stations` for the rules and errors.
    """
    return list(collect_stations(z.series, source=z.path, min_stations=min_stations).stations)
