"""Where and when each synthetic series is acquired (geometry, times, series numbers).

All slices are axial (ImageOrientationPatient 1,0,0,0,1,0): rows run along
y (anterior to posterior), columns along x (patient right to left).

20201: six stations stacked head to foot (:data:`~ukbmri.synth.participant.STATION_SPECS`),
consecutive stations overlapping by 30-38 mm in z, slice positions of stations
2-6 off station 1's 3 mm grid. All stations share one in-plane FOV centre, so
stations with fewer rows are centred on the 174-row grid of stations 2-4
(a whole number of rows apart). The fused grid (224 x 174 x ~367 slices of
3 mm) spans from the neck to just below the knees; the scanner bed fills its
last ~22 AP rows.

20203: one 160 x 160 slice (2.5 mm pixels, 6 mm thick) through the liver
centre (+-10 mm), which also cuts the spleen and the upper kidneys.
20254: one 232 x 256 slice (1.71875 mm pixels, 8 mm thick) through the liver.

Acquisition times follow the protocol order (20201 stations, then 20203, then
20254 with its dynamics 4 s apart); a re-scanned station is repeated right
after the failed original, optionally across midnight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta

import numpy as np

from ukbmri.synth.anatomy import Phantom
from ukbmri.synth.body import DIXON_PIXEL_MM
from ukbmri.synth.participant import STATION_SPECS, Participant
from ukbmri.synth.quirks import Quirks

__all__ = [
    "SliceGeometry",
    "StationScan",
    "LiverScan",
    "dixon_geometries",
    "dixon_scans",
    "gre_scan",
    "ideal_scan",
    "GRE_SHAPE",
    "IDEAL_SHAPE",
]

GRE_SHAPE, GRE_PIXEL_MM, GRE_THICKNESS_MM = (160, 160), 2.5, 6.0
IDEAL_SHAPE, IDEAL_PIXEL_MM, IDEAL_THICKNESS_MM = (232, 256), 1.71875, 8.0
FIRST_DIXON_SERIES = 2
#: seconds after the session start at which station k (1..6) starts
_STATION_OFFSETS_S = (60.0, 105.0, 145.0, 185.0, 225.0, 272.0)
RESCAN_DELAY_S = 50.0
MIDNIGHT_RESCAN_DELAY_S = 95.0


@dataclass(frozen=True)
class SliceGeometry:
    """An axial stack: pixel (r, c) of slice i sits at (x0 + c dx, y0 + r dy, z[i])."""

    rows: int
    cols: int
    pixel_mm: tuple[float, float]  #: DICOM PixelSpacing: (between rows (y), between columns (x))
    x0: float
    y0: float
    z: tuple[float, ...]  #: slice positions in InstanceNumber order
    thickness_mm: float
    spacing_mm: float | None = None  #: SpacingBetweenSlices (stacks only)

    def xs(self) -> np.ndarray:
        return self.x0 + np.arange(self.cols) * self.pixel_mm[1]

    def ys(self) -> np.ndarray:
        return self.y0 + np.arange(self.rows) * self.pixel_mm[0]

    def zs(self) -> np.ndarray:
        return np.asarray(self.z, dtype=np.float64)

    def with_extra_row(self) -> SliceGeometry:
        return replace(self, rows=self.rows + 1)


@dataclass(frozen=True)
class StationScan:
    """One acquisition of a 20201 station (four series: in, opp, F, W)."""

    station: int  #: 1..6, head to foot
    rescan: bool  #: the repeat of a duplicated station
    ghost: float  #: respiratory ghost amplitude (the failed original of a re-scan)
    acquired: datetime
    series_numbers: dict[str, int]  #: "in", "opp", "F", "W" -> SeriesNumber
    geometry: SliceGeometry
    f_extra_row: bool  #: the F series has one more row than the others (quirk)

    @property
    def description_stem(self) -> str:
        return "Dixon_BH_17s" if 2 <= self.station <= 4 else "Dixon_noBH"


@dataclass(frozen=True)
class LiverScan:
    """The single-slice liver acquisition of field 20203 or 20254."""

    geometry: SliceGeometry
    acquired: tuple[datetime, ...]  #: one per dynamic (20203: one)
    series_number: int  #: first series number


def dixon_geometries(p: Participant) -> list[SliceGeometry]:
    """The six station geometries of participant ``p`` (head to foot)."""
    d = DIXON_PIXEL_MM
    out = []
    for (rows, cols, n, s), top in zip(STATION_SPECS, p.station_tops_mm()):
        x0 = p.fov_x_mm - (cols - 1) / 2.0 * d
        y0 = p.fov_y_mm - (rows - 1) / 2.0 * d
        z = tuple(round(top - i * s, 6) for i in range(n))
        out.append(SliceGeometry(rows, cols, (d, d), round(x0, 6), round(y0, 6), z, s, s))
    return out


def session_start(p: Participant, quirks: Quirks) -> datetime:
    """Start of the imaging session; moved to just before midnight for that quirk."""
    start = p.visit_datetime
    if quirks.rescan_across_midnight and quirks.duplicate_station is not None:
        k = quirks.duplicate_station
        original = datetime.combine(start.date(), time(23, 59, 40))
        start = original - timedelta(seconds=_STATION_OFFSETS_S[k - 1])
    return start


def dixon_scans(p: Participant, quirks: Quirks) -> list[StationScan]:
    """20201 station acquisitions in acquisition order, with the quirks applied."""
    geoms = dixon_geometries(p)
    start = session_start(p, quirks)
    delay = 0.0
    number = FIRST_DIXON_SERIES
    scans: list[StationScan] = []
    for k in range(1, len(geoms) + 1):
        if k == quirks.missing_station:
            continue
        repeats = 2 if k == quirks.duplicate_station else 1
        for rep in range(repeats):
            if rep == 1:
                delay += MIDNIGHT_RESCAN_DELAY_S if quirks.rescan_across_midnight else RESCAN_DELAY_S
            numbers = {kind: number + i for i, kind in enumerate(("in", "opp", "F", "W"))}
            number += 4
            scans.append(
                StationScan(
                    station=k,
                    rescan=rep == 1,
                    ghost=0.35 if repeats == 2 and rep == 0 else 0.0,
                    acquired=start + timedelta(seconds=_STATION_OFFSETS_S[k - 1] + delay),
                    series_numbers=numbers,
                    geometry=geoms[k - 1],
                    f_extra_row=k == quirks.wf_size_mismatch,
                )
            )
    return scans


def _liver_geometry(phantom: Phantom, dz: float, shape, pixel: float, thickness: float) -> SliceGeometry:
    lm = phantom.landmarks
    rows, cols = shape
    x0 = lm["x_body"] - (cols - 1) / 2.0 * pixel
    y0 = lm["y_body_at_liver"] - (rows - 1) / 2.0 * pixel
    z = lm["z_liver_centre"] + dz
    return SliceGeometry(rows, cols, (pixel, pixel), round(x0, 6), round(y0, 6), (round(z, 6),), thickness)


def _dixon_end(p: Participant, quirks: Quirks) -> tuple[datetime, int]:
    scans = dixon_scans(p, quirks)
    last = max(s.acquired for s in scans) if scans else session_start(p, quirks)
    number = max((max(s.series_numbers.values()) for s in scans), default=FIRST_DIXON_SERIES)
    return last, number


def gre_scan(p: Participant, phantom: Phantom, quirks: Quirks) -> LiverScan:
    """The 20203 slice: after the Dixon stations (and a few localisers)."""
    last, number = _dixon_end(p, quirks)
    geom = _liver_geometry(phantom, p.gre_slice_dz_mm, GRE_SHAPE, GRE_PIXEL_MM, GRE_THICKNESS_MM)
    return LiverScan(geom, (last + timedelta(seconds=180.0),), number + 6)


def ideal_scan(p: Participant, phantom: Phantom, quirks: Quirks, n_dynamics: int = 6) -> LiverScan:
    """The 20254 slice: six dynamics, 4 s apart, after the 20203 scan."""
    last, number = _dixon_end(p, quirks)
    geom = _liver_geometry(phantom, p.ideal_slice_dz_mm, IDEAL_SHAPE, IDEAL_PIXEL_MM, IDEAL_THICKNESS_MM)
    t0 = last + timedelta(seconds=290.0)
    return LiverScan(geom, tuple(t0 + timedelta(seconds=4.0 * d) for d in range(n_dynamics)), number + 12)
