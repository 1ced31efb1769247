"""The written zips follow the UK Biobank layouts (read back with pydicom + zipfile)."""

from __future__ import annotations

import re
import zipfile
from datetime import datetime, timedelta

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from ukbmri.synth.participant import STATION_SPECS
from ukbmri.synth.tissues import Label

PIXEL = 2.232142925


def _stations(series):
    """Dixon series grouped per station (in acquisition order) -> {kind: SeriesData}."""
    stations: list[dict] = []
    for s in sorted(series.values(), key=lambda s: s.number):
        kind = s.description.rsplit("_", 1)[1]
        if not stations or kind in stations[-1]:
            stations.append({})
        stations[-1][kind] = s
    return stations


def test_dixon_series_layout(plain, plain_dixon):
    series = plain_dixon
    assert len(series) == 24
    assert sum(len(s.datasets) for s in series.values()) == sum(n for _, _, n, _ in STATION_SPECS) * 4 == 1328
    stations = _stations(series)
    assert len(stations) == 6
    for k, (st, (rows, cols, n, spacing)) in enumerate(zip(stations, STATION_SPECS), start=1):
        assert set(st) == {"in", "opp", "F", "W"}
        stem = "Dixon_BH_17s" if 2 <= k <= 4 else "Dixon_noBH"
        for kind, s in st.items():
            d = s.datasets[0]
            assert s.description == f"{stem}_{kind}"
            assert (d.Rows, d.Columns) == (rows, cols)
            assert len(s.datasets) == n
            assert [float(v) for v in d.PixelSpacing] == pytest.approx([PIXEL, PIXEL], abs=1e-9)
            assert [float(v) for v in d.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            z = s.positions[:, 2]
            assert np.diff(z) == pytest.approx(np.full(n - 1, -spacing), abs=1e-4)
            assert [int(x.InstanceNumber) for x in s.datasets] == list(range(1, n + 1))
        # W, F, in, opp of a station share every position exactly
        ref = st["W"].positions
        for kind in ("F", "in", "opp"):
            np.testing.assert_array_equal(st[kind].positions, ref)


def test_dixon_headers(plain_dixon):
    for s in plain_dixon.values():
        d = s.datasets[0]
        assert d.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert d.SOPClassUID == MRImageStorage
        assert d.Manufacturer == "SIEMENS"
        assert float(d.MagneticFieldStrength) == 1.5
        assert (d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation) == (16, 12, 11, 0)
        assert d.PhotometricInterpretation == "MONOCHROME2"
        assert d.InPlanePhaseEncodingDirection == "COL"
        assert d.PatientID and d.StudyInstanceUID and d.FrameOfReferenceUID
        kind = s.description.rsplit("_", 1)[1]
        te = {"opp": 2.39, "in": 4.77}.get(kind)
        if te is not None:
            assert float(d.EchoTime) == pytest.approx(te)
        assert s.pixels.max() <= 4095
        assert "RescaleSlope" not in d


def test_station_overlap_and_off_grid(plain_dixon):
    stations = _stations(plain_dixon)
    tops = [st["W"].positions[0, 2] for st in stations]
    bottoms = [st["W"].positions[-1, 2] for st in stations]
    assert all(np.diff(tops) < 0)  # head to foot
    for k in range(5):
        overlap = tops[k + 1] - bottoms[k]
        assert 30.0 <= overlap <= 40.0, (k, overlap)
    for k in range(1, 6):
        frac = ((tops[0] - tops[k]) / 3.0) % 1.0
        assert 0.05 < frac < 0.95, f"station {k + 1} on station 1's 3 mm grid"
    span = tops[0] - bottoms[-1]
    assert 1050 < span < 1160  # fused ~355-385 slices of 3 mm


def test_in_plane_grid_and_fov(plain, plain_dixon):
    """All stations share the FOV centre: row offsets are whole pixels; body neck to knee, bed last rows."""
    stations = _stations(plain_dixon)
    x0 = {round(st["W"].positions[0, 0], 6) for st in stations}
    assert len(x0) == 1
    y_top = stations[1]["W"].positions[0, 1]  # 174-row station = fused grid
    for st in stations:
        off = (st["W"].positions[0, 1] - y_top) / PIXEL
        assert off == pytest.approx(round(off), abs=1e-5) and off >= 0
    ph = plain["phantom"]
    lm = ph.landmarks
    top, bottom = stations[0]["W"].positions[0, 2], stations[-1]["W"].positions[-1, 2]
    assert lm["z_shoulder"] < top < lm["z_chin"] + 40
    assert bottom < lm["z_knee"] + 60
    # the bed fills the last ~22 AP rows of the fused 174-row grid, the body rests on it
    xs = stations[1]["W"].positions[0, 0] + np.arange(224) * PIXEL
    ys = y_top + np.arange(174) * PIXEL
    lab = ph.labels_grid(xs, ys, np.array([lm["z_umbilicus"]]))[0]
    bed_rows = np.flatnonzero((lab == Label.BED).any(axis=1))
    assert 150 <= bed_rows.min() <= 153 and bed_rows.max() == 173
    body_rows = np.flatnonzero(((lab != Label.AIR) & (lab != Label.BED)).any(axis=1))
    assert bed_rows.min() - 2 <= body_rows.max() < bed_rows.min() and body_rows.min() > 5


def test_acquisition_order(plain_dixon, plain, series_reader):
    stations = _stations(plain_dixon)
    times = [st["in"].acquired for st in stations]
    assert all(b > a for a, b in zip(times, times[1:]))
    numbers = [s.number for st in stations for s in (st["in"], st["opp"], st["F"], st["W"])]
    assert numbers == sorted(numbers) and len(set(numbers)) == 24
    gre = series_reader(plain["paths"][20203])
    ideal = series_reader(plain["paths"][20254])
    t_gre = next(iter(gre.values())).acquired
    t_ideal = [s.acquired for s in sorted(ideal.values(), key=lambda s: s.number)]
    assert times[-1] < t_gre < t_ideal[0]
    assert min(s.number for s in gre.values()) > max(numbers)
    assert min(s.number for s in ideal.values()) > max(s.number for s in gre.values())
    assert t_ideal[-1] - t_ideal[0] <= timedelta(seconds=60)


def test_manifest_format(plain):
    with zipfile.ZipFile(plain["paths"][20201]) as zf:
        names = zf.namelist()
        assert "manifest.csv" in names
        lines = zf.read("manifest.csv").decode().split("\n")
    assert lines[0] == "filename,patientid,date,series discription,seriesid"
    rows = [ln for ln in lines[1:] if ln]
    dcm = [n for n in names if n.endswith(".dcm")]
    assert len(rows) == len(dcm) == 1328
    assert all(re.fullmatch(r"[0-9.]+\.dcm", n) for n in dcm)  # flat numeric member names
    parts = rows[0].split(",")
    assert len(parts) == 6  # the unquoted date has a comma: naive splitting shifts columns
    date = parts[2].strip() + "," + parts[3]
    datetime.strptime(date, "%b %d, %Y")
    assert {r.split(",")[0] for r in rows} == set(dcm)


def test_gre_layout(plain, series_reader):
    series = series_reader(plain["paths"][20203])
    assert len(series) == 2  # magnitude and phase: same number and UID, told apart by ImageType
    (mag,) = [s for s in series.values() if s.image_type[2] == "M"]
    (pha,) = [s for s in series.values() if s.image_type[2] == "P"]
    assert mag.number == pha.number and mag.uid == pha.uid
    assert mag.description == pha.description == "gre_mullti_echo_10_TE_liver"
    for s in (mag, pha):
        assert len(s.datasets) == 10
        te = [float(d.EchoTime) for d in s.datasets]
        assert te == pytest.approx([2.38 * k for k in range(1, 11)], abs=0.01)
        d = s.datasets[0]
        assert (d.Rows, d.Columns) == (160, 160)
        assert s.pixels.max() <= 4095
        assert np.unique(s.positions, axis=0).shape[0] == 1  # one slice
    d = pha.datasets[0]
    assert (float(d.RescaleSlope), float(d.RescaleIntercept)) == (2.0, -4096.0)
    assert pha.pixels.min() >= 0 and pha.pixels.max() <= 4095 and pha.pixels.std() > 500


def test_ideal_layout(plain, series_reader):
    series = sorted(series_reader(plain["paths"][20254]).values(), key=lambda s: s.number)
    assert len(series) == 12
    n0 = series[0].number
    assert [s.number for s in series] == list(range(n0, n0 + 12))
    for s in series:
        kind = "M" if (s.number - n0) % 2 == 0 else "P"
        assert s.image_type[2] == kind
        assert s.description == "LMS IDEAL OPTIMISED LOW FLIP 6DYN"
        assert [int(d.InstanceNumber) for d in s.datasets] == [1, 2, 3, 4, 5, 6]
        assert [float(d.EchoTime) for d in s.datasets] == pytest.approx([1.2 + 2.0 * k for k in range(6)])
        assert (s.datasets[0].Rows, s.datasets[0].Columns) == (232, 256)
    mags = [s for s in series if s.image_type[2] == "M"]
    times = [s.acquired for s in mags]
    assert all(timedelta(seconds=1) <= b - a <= timedelta(seconds=10) for a, b in zip(times, times[1:]))
