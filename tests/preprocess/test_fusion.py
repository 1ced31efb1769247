"""Station fusion: geometry on MIMIR's grid, resampling decisions, overlap trimming, seams, correction."""

from dataclasses import replace

import numpy as np
import pytest

from ukbmri.io.nifti import save_volume
from ukbmri.preprocess.fusion import OUT_SPACING, fuse, plan_grid
from ukbmri.preprocess.stations import Station, collect_stations


def _station(index, z_top, n, dz, water, fat, *, rows=30, cols=24, x0=-20.0, y0=-30.0, ps=2.232142925):
    w = np.broadcast_to(np.asarray(water, np.float32).reshape(-1, 1, 1) if np.ndim(water) == 1 else water,
                        (n, rows, cols)).astype(np.float32)
    f = np.broadcast_to(np.asarray(fat, np.float32).reshape(-1, 1, 1) if np.ndim(fat) == 1 else fat,
                        (n, rows, cols)).astype(np.float32)
    return Station(index, w, f, (x0, y0, z_top), (ps, ps, dz), None, source="t.zip")


def _world(vol, idx):
    """LPS position of voxel indices (N, 3)."""
    a = vol.affine_lps()
    return np.asarray(idx, float) @ a[:3, :3].T + a[:3, 3]


def _top_down(vol, z_first):
    """Grid slice index counted down from the first station's top slice, per output slice."""
    z = vol.origin[2] + OUT_SPACING[2] * np.arange(vol.shape[2])
    return np.round((z_first - z) / OUT_SPACING[2]).astype(int)


def test_seam_blending_and_intensity_correction_hand_computed():
    # A: 20 slices of 3 mm from z=0, water 100 but 50 in its last 4 slices; B: from z=-48 (4 slices overlap)
    wa = np.r_[np.full(16, 100.0), np.full(4, 50.0)]
    a = _station(1, 0.0, 20, 3.0, wa, np.full(20, 10.0))
    b = _station(2, -48.0, 20, 3.0, np.full(20, 200.0), np.full(20, 30.0))
    res = fuse([a, b])
    assert res.overlaps == (4,) and res.cuts == ((0, 0),)
    assert [p.resample for p in res.placements] == [False, False]
    k = _top_down(res.water, 0.0)
    wmean = res.water.array.mean(axis=(0, 1))
    fmean = res.fat.array.mean(axis=(0, 1))
    by_k_w = dict(zip(k.tolist(), wmean.tolist()))
    by_k_f = dict(zip(k.tolist(), fmean.tolist()))
    # fades (j+1)/(ov+1): upper 4/5..1/5 of 50, lower 1/5..4/5 of 200 -> 80, 110, 140, 170; the correction
    # rescales both to m_b + (m_a - m_b)(j+1)/5 with m_b = 100 (A, slice 15) and m_a = 200 (B, slice 4)
    assert [by_k_w[i] for i in (16, 17, 18, 19)] == pytest.approx([120, 140, 160, 180], rel=1e-6)
    assert by_k_w[15] == pytest.approx(100) and by_k_w[20] == pytest.approx(200)
    # fat is linear across the seam: the fades alone give 14, 18, 22, 26 and the correction is 1
    assert [by_k_f[i] for i in (16, 17, 18, 19)] == pytest.approx([14, 18, 22, 26], rel=1e-6)
    # 36 grid slices minus 4 at each end; head (k small) at the end of axis 2
    assert res.water.shape == (24, 30, 28)
    assert k[0] == 31 and k[-1] == 4


def test_overlap_trimming_counts_small_overlaps_and_gaps():
    n = 30
    a = _station(1, 0.0, n, 3.0, np.full(n, 100.0), np.full(n, 1.0))
    b = _station(2, -54.0, n, 3.0, np.full(n, 100.0), np.full(n, 1.0))  # W 18..48: overlap 12 -> cut 2 + 2
    c = _station(3, -105.0, n, 3.0, np.full(n, 100.0), np.full(n, 1.0))  # W 35..65: overlap 13 -> cut 2 + 3
    d = _station(4, -180.0, n, 3.0, np.full(n, 100.0), np.full(n, 1.0))  # W 60..90: overlap 5, kept
    e = _station(5, -276.0, n, 3.0, np.full(n, 100.0), np.full(n, 1.0))  # W 92..122: gap of 2 slices
    res = fuse([a, b, c, d, e])
    assert res.cuts == ((2, 2), (2, 3), (0, 0), (0, 0))
    assert res.overlaps == (8, 8, 5, -2)
    assert any("no overlap between stations 4 and 5" in m for m in res.warnings)
    assert any("only 5 slices" in m for m in res.warnings)
    assert res.water.shape[2] == 122 - 8
    k = _top_down(res.water, 0.0)
    m = res.water.array.mean(axis=(0, 1))
    by_k = dict(zip(k.tolist(), m.tolist()))
    assert by_k[90] == 0 and by_k[91] == 0  # the gap stays empty
    assert by_k[89] == pytest.approx(100) and by_k[92] == pytest.approx(100)
    # constant stations stay constant through every seam (fades sum to 1, correction is 1)
    covered = [v for kk, v in by_k.items() if kk not in (90, 91)]
    assert np.allclose(covered, 100.0, rtol=1e-5)


def test_resampling_decisions():
    base = dict(n=10, water=np.full(10, 1.0), fat=np.full(10, 1.0))
    a = _station(1, 0.0, dz=3.0, **base)
    on_grid = _station(2, -21.0, dz=3.0, **base)
    nearly = _station(3, -48.0 - 0.005 * 3, dz=3.0, **base)  # 0.005 voxel off: copied
    off = _station(4, -75.0 - 0.02 * 3, dz=3.0, **base)  # 0.02 voxel off: resampled
    coarse = _station(5, -102.0, n=7, dz=4.5, water=np.full(7, 1.0), fat=np.full(7, 1.0))  # R_end 34 + 10.5
    shifted = _station(6, -129.0, dz=3.0, x0=-20.0 + 0.4 * OUT_SPACING[0], **base)  # in-plane 0.4 voxel
    placements, origin = plan_grid([a, on_grid, nearly, off, coarse, shifted])
    assert [p.resample for p in placements] == [False, False, False, True, True, True]
    assert placements[2].start[0] == 16 and placements[3].start[0] == 25
    assert placements[4].size[0] == 10  # round(44.5) - 34: numpy rounds half to even, like MIMIR
    assert placements[5].size[2] == 24 and placements[5].offset[2] == pytest.approx(0.4)
    assert origin == (-20.0, -30.0, 0.0)


def test_linear_phantom_lands_where_the_dicom_positions_say(builders):
    # value depends on x and z only, so slice means match across stations of different row counts
    def ramp(x, y, z):
        return 400.0 + 0.5 * x + 0.4 * (z + 400.0)

    specs = builders.ukb_specs(0.3)
    series = builders.ukb_series(specs, ramp, lambda x, y, z: np.full(np.broadcast(x, y, z).shape, 5.0))
    rep = collect_stations(series)
    res = fuse(rep.stations)
    vol = res.water
    assert vol.array.dtype == np.float32 and vol.array.flags.f_contiguous
    assert vol.spacing == OUT_SPACING and np.array_equal(vol.direction, np.eye(3))
    # AP: union of the stations' rows (the 174-row stations span the whole AP range)
    assert vol.shape[1] == max(s.rows for s in specs) and vol.shape[0] == specs[0].cols
    # rows covered by every station
    ys = [(-s.rows / 2 * builders.PS, (s.rows / 2 - 1) * builders.PS) for s in specs]
    y_lo, y_hi = max(a for a, _ in ys), min(b for _, b in ys)
    i, j, k = np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij")
    idx = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    world = _world(vol, idx)
    inside = (world[:, 1] >= y_lo - 1e-3) & (world[:, 1] <= y_hi + 1e-3)
    got = vol.array.ravel(order="C")[np.ravel_multi_index(idx.T, vol.shape)][inside]
    want = ramp(world[inside, 0], world[inside, 1], world[inside, 2])
    err = np.abs(got - want)
    # exact (float32) away from the clamped station ends; never off by more than one 4.5 mm slice
    assert np.mean(err < 1e-3 * want) > 0.95
    assert err.max() <= 0.4 * 4.5 + 1e-3
    # rows outside a narrow station stay empty in its core: the top row at the head end
    assert np.all(vol.array[:, 0, -1] == 0)


def test_marker_slab_in_an_off_grid_station(builders):
    specs = builders.ukb_specs(0.5)
    z_first = specs[0].z_top
    st3 = specs[2]
    z_slices = st3.z_top - st3.dz * np.arange(st3.n)
    # four 4.5 mm slices in the middle of station 3, away from the overlaps (whose intensity
    # correction ramps between the slices next to them)
    bright = z_slices[9:13]

    def water(x, y, z, *, marked):
        v = np.full(np.broadcast(x, y, z).shape, 100.0)
        if marked:
            v[np.isin(np.round(z, 6), np.round(bright, 6))] = 1000.0
        return v

    fat = lambda x, y, z: np.full(np.broadcast(x, y, z).shape, 5.0)  # noqa: E731
    series = []
    for i, spec in enumerate(specs):
        w, f = builders.wf_series(spec, lambda x, y, z, m=(i == 2): water(x, y, z, marked=m), fat, 1 + 4 * i)
        series += [f, w]
    rep = collect_stations(series)
    res = fuse(rep.stations)
    assert res.placements[2].resample and abs(res.placements[2].offset[0]) > 0.01
    vol = res.water
    z_out = vol.origin[2] + 3.0 * np.arange(vol.shape[2])
    core = vol.array[:, vol.shape[1] // 2, :].mean(axis=0)  # a row every station covers
    inside = (z_out <= bright.max() + 1e-6) & (z_out >= bright.min() - 1e-6)
    outside = (z_out > bright.max() + st3.dz) | (z_out < bright.min() - st3.dz)
    assert inside.sum() >= 4
    assert np.allclose(core[inside], 1000.0, rtol=1e-5)
    assert np.allclose(core[outside], 100.0, rtol=1e-4)
    assert z_first > z_out.max()  # 4 slices trimmed at the head end


def test_nifti_export_puts_a_voxel_at_its_dicom_position(builders, tmp_path):
    nib = pytest.importorskip("nibabel")
    specs = builders.ukb_specs(0.3)
    spot = (specs[0].z_top - 3.0 * 10, 5, 7)  # station 1 (copied): slice 10, row 5, column 7
    x_spot = specs[0].x0 + 7 * builders.PS
    y_spot = -specs[0].rows / 2 * builders.PS + 5 * builders.PS

    def water(x, y, z):
        v = np.full(np.broadcast(x, y, z).shape, 10.0)
        v[(np.abs(x - x_spot) < 0.1) & (np.abs(y - y_spot) < 0.1) & (np.abs(z - spot[0]) < 0.1)] = 5000.0
        return v

    series = builders.ukb_series(specs, water, lambda x, y, z: np.full(np.broadcast(x, y, z).shape, 5.0))
    res = fuse(collect_stations(series).stations)
    path = save_volume(res.water, tmp_path / "water.nii.gz")
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    assert data.shape == res.water.shape
    ijk = np.unravel_index(np.argmax(data), data.shape)
    ras = img.affine @ np.r_[ijk, 1.0]
    assert ras[:3] == pytest.approx([-x_spot, -y_spot, spot[0]], abs=1e-3)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # LR towards left, AP towards posterior, z up


def test_inputs_are_not_modified(builders):
    specs = builders.ukb_specs(0.2)
    series = builders.ukb_series(specs, lambda x, y, z: 100 + 0 * x, lambda x, y, z: 50 + 0 * x)
    stations = collect_stations(series).stations
    before = [(s.water.copy(), s.fat.copy()) for s in stations]
    fuse(stations)
    for s, (w, f) in zip(stations, before, strict=True):
        assert np.array_equal(s.water, w) and np.array_equal(s.fat, f)


def test_unsorted_stations_are_refused():
    a = _station(1, 0.0, 10, 3.0, np.full(10, 1.0), np.full(10, 1.0))
    b = _station(2, -21.0, 10, 3.0, np.full(10, 1.0), np.full(10, 1.0))
    from ukbmri.errors import FusionError

    with pytest.raises(FusionError, match="sorted"):
        fuse([b, a])
    with pytest.raises(FusionError, match="shape"):
        fuse([replace(a, fat=a.fat[:, :-1])])


def test_stations_far_apart_are_refused_before_allocating():
    from ukbmri.errors import FusionError

    # the second station 1e7 mm lower: a fused grid of millions of slices would need ~20 TB
    a = _station(1, 0.0, 10, 3.0, np.full(10, 1.0), np.full(10, 1.0))
    b = _station(2, -1.0e7, 10, 3.0, np.full(10, 1.0), np.full(10, 1.0), x0=-20.0 - 1e6)
    with pytest.raises(FusionError, match="implausibly large") as ei:
        fuse([a, b])
    assert "at most" in str(ei.value)


def test_slice_by_slice_z_interpolation_matches_take():
    from ukbmri.preprocess.regrid import _axis_weights, _interp_axis

    rng = np.random.default_rng(0)
    data = rng.normal(size=(13, 5, 4)).astype(np.float32)
    wts = _axis_weights(13, 17, 0.3, 0.77)
    i0, i1, w0, w1 = wts
    expected = np.take(data, i0, axis=0) * w0[:, None, None] + np.take(data, i1, axis=0) * w1[:, None, None]
    np.testing.assert_array_equal(_interp_axis(data, 0, wts), expected)


@pytest.mark.parametrize("inplane", [False, True])
def test_station_slices_equal_the_resampled_station(inplane):
    from ukbmri.preprocess.fusion import Placement
    from ukbmri.preprocess.regrid import StationSlices, resample_station

    rng = np.random.default_rng(1)
    data = rng.gamma(2.0, 40.0, size=(11, 6, 7)).astype(np.float32)
    data[3] = -0.0  # a -0.0 slice: the z kernel's addition of 0.0 must be the same
    size = (16, 7, 8) if inplane else (16, 6, 7)
    scaling = (0.66, 0.83, 0.86) if inplane else (0.66, 1.0, 1.0)
    p = Placement(start=(0, 0, 0), size=size, offset=(0.3, 0.2 * inplane, 0.0), scaling=scaling, resample=True)
    whole = resample_station(data, p)
    src = StationSlices(data, p, cut=2, n=12)
    assert not src.is_view and src.shape == (12, *size[1:])
    kept = src.slice(5, keep=True).copy()
    for k in range(12):
        got = src.slice(k)
        assert got.dtype == np.float32
        assert got.tobytes() == whole[2 + k].tobytes()
    assert kept.tobytes() == whole[7].tobytes()
    copied = StationSlices(data, replace(p, resample=False, size=data.shape), cut=1, n=9)
    assert copied.is_view and copied.block(0, 9).base is not None
    assert np.shares_memory(copied.slice(0), data)
