"""Each quirk has its intended effect (compared one to one with the quirk-free zips)."""

from __future__ import annotations

import zipfile
from datetime import datetime, timedelta

import numpy as np
import pytest

from ukbmri.synth import Quirks
from ukbmri.synth.quirks import parse_quirk, quirks_from_specs


def _by_kind(series):
    """Dixon series -> list of (description kind, SeriesData) sorted by series number."""
    out = []
    for s in sorted(series.values(), key=lambda s: s.number):
        out.append((s.description.rsplit("_", 1)[1], s))
    return out


@pytest.fixture(scope="module")
def quirky_dixon(quirky, series_reader):
    # wrong_name_field: the Dixon content lives under the 20203 file name
    return series_reader(quirky["paths"][20203])


def test_wrong_name_field_swaps_contents(quirky, series_reader):
    paths = quirky["paths"]
    assert paths[20201].name.endswith("_20201_2_0.zip") and paths[20203].name.endswith("_20203_2_0.zip")
    under_20201 = {s.description for s in series_reader(paths[20201]).values()}
    assert under_20201 == {"gre_mullti_echo_10_TE_liver"}
    with zipfile.ZipFile(paths[20203]) as zf:
        assert sum(n.endswith(".dcm") for n in zf.namelist()) > 1000  # the Dixon stations


def test_missing_and_duplicated_stations(quirky_dixon):
    rows = [s.datasets[0].Rows for kind, s in _by_kind(quirky_dixon) if kind == "W"]
    # station 6 (156 rows) missing; station 3 (174 rows) present twice
    assert 156 not in rows
    assert len(quirky_dixon) == 24 and len(rows) == 6
    station3 = [s for kind, s in _by_kind(quirky_dixon) if kind == "W" and s.datasets[0].Rows == 174]
    assert len(station3) == 4  # stations 2, 3, 3 (re-scan), 4


def test_rescan_is_later_across_midnight(quirky_dixon, plain_dixon):
    # the duplicated station is the one whose positions appear twice
    w = [s for kind, s in _by_kind(quirky_dixon) if kind == "W"]
    groups: dict = {}
    for s in w:
        groups.setdefault(round(float(s.positions[0, 2]), 4), []).append(s)
    (pair,) = [g for g in groups.values() if len(g) == 2]
    orig, rescan = sorted(pair, key=lambda s: s.number)
    np.testing.assert_array_equal(orig.positions, rescan.positions)
    assert rescan.acquired > orig.acquired  # real datetimes
    d_o, d_r = orig.datasets[0], rescan.datasets[0]
    assert d_o.AcquisitionTime.startswith("2359") and d_r.AcquisitionTime.startswith("000")
    day = timedelta(days=1)
    assert datetime.strptime(d_r.AcquisitionDate, "%Y%m%d") - datetime.strptime(d_o.AcquisitionDate, "%Y%m%d") == day
    assert max(d_o.AcquisitionTime, d_r.AcquisitionTime) == d_o.AcquisitionTime  # strings pick the wrong one
    # the failed original carries a motion ghost (shifted half a FOV along AP, the phase-encoding
    # direction): signal in the air in front of the body
    air_o = orig.pixels[:, :8].mean()
    air_r = rescan.pixels[:, :8].mean()
    assert air_o > 3 * air_r


def test_wf_size_mismatch(quirky_dixon):
    kinds = _by_kind(quirky_dixon)
    # station 4 is the 4th distinct 174/175-row station block (stations 2, 3, 3', 4)
    f_rows = [s.datasets[0].Rows for kind, s in kinds if kind == "F"]
    w_rows = [s.datasets[0].Rows for kind, s in kinds if kind == "W"]
    diffs = [f - w for f, w in zip(f_rows, w_rows)]
    assert diffs.count(1) == 1 and diffs.count(0) == len(diffs) - 1
    i = diffs.index(1)
    f = [s for kind, s in kinds if kind == "F"][i]
    w = [s for kind, s in kinds if kind == "W"][i]
    assert (w.datasets[0].Rows, f.datasets[0].Rows) == (174, 175)
    np.testing.assert_array_equal(f.positions, w.positions)


def test_fat_water_swap(quirky_dixon, plain_dixon):
    # station 1 is untouched by the other quirks and uses the same noise stream
    q = {kind: s for kind, s in _by_kind(quirky_dixon)[:4]}
    p = {kind: s for kind, s in _by_kind(plain_dixon)[:4]}
    np.testing.assert_array_equal(q["W"].pixels, p["F"].pixels)
    np.testing.assert_array_equal(q["F"].pixels, p["W"].pixels)
    np.testing.assert_array_equal(q["in"].pixels, p["in"].pixels)


def test_misspelled_crlf_manifest(quirky):
    for path in quirky["paths"].values():
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            assert "manifest.cvs" in names and "manifest.csv" not in names
            raw = zf.read("manifest.cvs")
        lines = raw.split(b"\r\n")
        assert lines[0] == b"filename,patientid,date,series discription,seriesid"
        assert raw.endswith(b"\r\n\r\n\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"")
        n_dcm = sum(n.endswith(".dcm") for n in names)
        assert len([ln for ln in lines[1:] if ln]) == n_dcm


def test_no_manifest(bare):
    with zipfile.ZipFile(bare["paths"][20254]) as zf:
        names = zf.namelist()
    assert names and all(n.endswith(".dcm") for n in names)
    assert not any("manifest" in n for n in names)


def test_quirks_validation_and_description():
    q = Quirks(duplicate_station=2, rescan_across_midnight=True, crlf_manifest=True)
    assert q.describe() == "crlf_manifest;duplicate_station=2;rescan_across_midnight"
    assert Quirks().describe() == "" and not Quirks().any
    with pytest.raises(ValueError, match="needs duplicate_station"):
        Quirks(rescan_across_midnight=True)
    with pytest.raises(ValueError, match="station number"):
        Quirks(missing_station=7)
    with pytest.raises(ValueError):
        Quirks(missing_station=3, duplicate_station=3)
    with pytest.raises(ValueError):
        Quirks(no_manifest=True, misspelled_manifest=True)


def test_parse_quirk_specs():
    assert parse_quirk("duplicate_station=3") == ({"duplicate_station": 3}, None)
    assert parse_quirk("fat_water_swap@0,2") == ({"fat_water_swap": True}, (0, 2))
    assert parse_quirk("missing_station=6@1") == ({"missing_station": 6}, (1,))
    for bad in ("nonsense", "duplicate_station", "duplicate_station=x", "fat_water_swap=3", "crlf_manifest@", "crlf_manifest@-1"):
        with pytest.raises(ValueError):
            parse_quirk(bad)
    per = quirks_from_specs(["crlf_manifest", "duplicate_station=3@1", "rescan_across_midnight@1"], 3)
    assert per[0] == Quirks(crlf_manifest=True)
    assert per[1] == Quirks(crlf_manifest=True, duplicate_station=3, rescan_across_midnight=True)
    with pytest.raises(ValueError, match="index 5"):
        quirks_from_specs(["no_manifest@5"], 3)
