"""Station building from W/F series: pairing, ordering, re-scans, cropping, position checks, missing stations."""

from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from ukbmri.errors import FusionError, StationError
from ukbmri.preprocess.stations import collect_stations


def _ramp(x, y, z):
    return 100.0 + 0.1 * x + 0.2 * y + 0.3 * (z + 500.0)


def _flat(value):
    return lambda x, y, z: np.full(np.broadcast(x, y, z).shape, value)


def _six(builders, scale=0.15, **kw):
    return builders.ukb_series(builders.ukb_specs(scale), _ramp, _flat(50.0), **kw)


def test_stations_sorted_head_first_with_slices_z_descending(builders):
    series = _six(builders)
    rng = np.random.default_rng(0)
    # shuffle the series and store every stack foot-first (instance order reversed)
    shuffled = [series[i] for i in rng.permutation(len(series))]
    flipped = []
    for s in shuffled:
        order = np.arange(s.n_images)[::-1]
        flipped.append(replace(s, positions=s.positions[order], pixels=s.pixels[order]))
    rep = collect_stations(flipped, source="x.zip")
    st = rep.stations
    assert [s.index for s in st] == [1, 2, 3, 4, 5, 6]
    assert rep.warnings == ()
    tops = [s.origin[2] for s in st]
    assert tops == sorted(tops, reverse=True)
    specs = builders.ukb_specs(0.15)
    for s, spec in zip(st, specs, strict=True):
        assert s.origin[2] == pytest.approx(spec.z_top)
        assert s.spacing[2] == pytest.approx(spec.dz)
        assert s.spacing[:2] == pytest.approx((builders.PS, builders.PS))
        assert s.water.shape == (spec.n, spec.rows, spec.cols) and s.water.dtype == np.float32
        # slice 0 is the top slice: the ramp grows with z, so water decreases along axis 0
        assert np.all(np.diff(s.water.mean(axis=(1, 2))) < 0)
        assert np.allclose(s.fat, 50.0)


def test_rescan_across_midnight_keeps_the_later_one(builders):
    specs = builders.ukb_specs(0.15)
    series = builders.ukb_series(specs, _ramp, _flat(50.0))
    # station 3 first acquired at 23:58, re-scanned at 00:04 the next day with higher series numbers;
    # the time strings "235800" > "000400" would make MIMIR keep the stale one
    old = datetime(2019, 6, 3, 23, 58, 0)
    new = datetime(2019, 6, 4, 0, 4, 0)
    series = [replace(s, acquired=old) if s.series_number in (9, 10) else s for s in series]
    w, f = builders.wf_series(specs[2], lambda x, y, z: _ramp(x, y, z) + 1000.0, _flat(50.0), 40, bh=True, acquired=new)
    rep = collect_stations([*series, f, w], source="x.zip")
    assert len(rep.stations) == 6
    st3 = rep.stations[2]
    assert st3.series_numbers == (41, 40) and st3.acquired == new
    assert st3.water.min() > 1000.0
    assert any("duplicate station" in m for m in rep.warnings)


def test_rescan_kept_by_time_not_by_series_number(builders):
    specs = builders.ukb_specs(0.15)
    series = builders.ukb_series(specs, _ramp, _flat(50.0))
    # a re-scan with a *lower* series number but a later time wins
    series = [replace(s, acquired=datetime(2019, 6, 3, 9, 0)) if s.series_number in (5, 6) else s for s in series]
    w, f = builders.wf_series(specs[1], _ramp, _flat(60.0), 100, bh=True, acquired=datetime(2019, 6, 3, 8, 0))
    rep = collect_stations([*series, f, w])
    assert rep.stations[1].series_numbers == (6, 5)


def test_wf_size_mismatch_is_cropped_from_the_end(builders):
    specs = builders.ukb_specs(0.15)
    series = builders.ukb_series(specs, _ramp, _flat(50.0))
    s2 = replace(specs[1], rows=specs[1].rows + 1, cols=specs[1].cols + 1, n=specs[1].n + 1,
                 y0=-specs[1].rows / 2 * builders.PS)  # same first pixel, one more row / column / slice
    _, f_big = builders.wf_series(s2, _ramp, _flat(50.0), 5, bh=True)
    series = [f_big if s.series_number == 5 else s for s in series]
    rep = collect_stations(series)
    st2 = rep.stations[1]
    assert st2.water.shape == st2.fat.shape == (specs[1].n, specs[1].rows, specs[1].cols)
    assert any("differ in size" in m for m in rep.warnings)


def test_wf_at_different_positions_is_a_fusion_error_naming_both(builders):
    specs = builders.ukb_specs(0.15)
    series = builders.ukb_series(specs, _ramp, _flat(50.0))
    shifted = replace(specs[3], z_top=specs[3].z_top - 7.0)
    _, f_moved = builders.wf_series(shifted, _ramp, _flat(50.0), 13, bh=True)
    series = [f_moved if s.series_number == 13 else s for s in series]
    with pytest.raises(FusionError) as info:
        collect_stations(series, source="1234567_20201_2_0.zip")
    msg = str(info.value)
    assert "1234567_20201_2_0.zip" in msg and "W series 14" in msg and "F series 13" in msg
    assert f"{specs[3].z_top:.3f}" in msg and f"{specs[3].z_top - 7.0:.3f}" in msg


def test_missing_station_fuses_with_warning_but_two_missing_fail(builders):
    series = _six(builders)
    five = [s for s in series if s.series_number not in (9, 10)]
    rep = collect_stations(five, source="x.zip")
    assert len(rep.stations) == 5 and any("only 5 of 6" in m for m in rep.warnings)
    four = [s for s in five if s.series_number not in (21, 22)]
    with pytest.raises(StationError, match="too few"):
        collect_stations(four, source="x.zip")
    assert len(collect_stations(four, min_stations=1).stations) == 4


def test_unusable_series_are_refused(builders):
    series = _six(builders)
    w1 = series[1]
    assert w1.description.endswith("_W")
    # a slice missing inside a stack
    gap = replace(w1, positions=np.delete(w1.positions, 3, 0), pixels=np.delete(w1.pixels, 3, 0),
                  members=w1.members[:-1], instance_numbers=w1.instance_numbers[:-1])
    with pytest.raises(StationError, match="evenly spaced"):
        collect_stations([gap, *series[:1], *series[2:]])
    # an oblique stack
    with pytest.raises(FusionError, match="axial"):
        collect_stations([replace(w1, orientation=np.array([1, 0, 0, 0, 0, -1.0])), series[0]])
    # no water at all, or a water series without its fat series
    with pytest.raises(StationError, match="no Dixon"):
        collect_stations([s for s in series if s.description.endswith("_F")])
    with pytest.raises(StationError, match="no fat series"):
        collect_stations(series[1:])
