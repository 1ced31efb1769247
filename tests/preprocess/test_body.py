"""preprocess_body end to end through ukbmri.io.read_zip, and the PNG preview."""

from dataclasses import replace

import numpy as np
import pytest

from ukbmri.preprocess import collect_stations, fuse, mimir_image, preprocess_body, save_preview_png
from ukbmri.types import ParticipantKey


def _rounded(series):
    return [replace(s, pixels=np.clip(np.rint(s.pixels), 0, 4095).astype(np.float32)) for s in series]


@pytest.fixture
def dixon_zip(builders, tmp_path):
    specs = builders.ukb_specs(0.2)
    water, fat = builders.body_phantom()
    series = builders.ukb_series(specs, water, fat)
    decoys = []
    for s in series:  # in-phase / opposed-phase series of every station are read but not decoded
        kind = "in" if s.description.endswith("_F") else "opp"
        decoys.append(replace(s, description=s.description[:-1] + kind, series_number=s.series_number + 100,
                              image_type=("ORIGINAL", "PRIMARY", "M", "DIXON", "IN_PHASE")))
    path = builders.write_dixon_zip(tmp_path / "1000001_20201_2_0.zip", [*series, *decoys])
    return path, _rounded(series)


def test_preprocess_body_matches_the_in_memory_pipeline(dixon_zip):
    pytest.importorskip("ukbmri.io.reader")
    path, series = dixon_zip
    res = preprocess_body(path)
    assert res.key == ParticipantKey(1000001, 20201, 2, 0)
    assert res.stations == 6
    # the shrunken test stations overlap by fewer than 8 slices, which is noted (as MIMIR does); nothing else
    assert all("slices" in w and "overlap between" in w for w in res.warnings)
    fused = fuse(collect_stations(series).stations)
    assert np.allclose(res.water.array, fused.water.array, rtol=1e-6, atol=1e-4)
    assert res.water.origin == pytest.approx(fused.water.origin)
    assert np.array_equal(res.image, mimir_image(fused.water, fused.fat))
    assert res.image.shape == (3, 256, 256) and res.image.dtype == np.uint8
    ff = res.fat_fraction()
    assert ff.shape == res.water.shape and 0 <= ff.array.min() and ff.array.max() <= 100.0


def test_preprocess_body_reports_a_missing_station(builders, tmp_path):
    pytest.importorskip("ukbmri.io.reader")
    specs = builders.ukb_specs(0.2)
    water, fat = builders.body_phantom()
    series = [s for s in builders.ukb_series(specs, water, fat) if s.series_number not in (13, 14)]
    path = builders.write_dixon_zip(tmp_path / "1000002_20201_2_0.zip", series)
    res = preprocess_body(path)
    assert res.stations == 5
    assert any("only 5 of 6" in w for w in res.warnings)


def test_preview_png_shows_the_three_channels(tmp_path):
    from matplotlib import image as mpimg

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)
    out = save_preview_png(img, tmp_path / "sub" / "p.png")
    back = mpimg.imread(out)
    assert back.shape[:2] == (256, 3 * 256 + 2 * 4)
    for c in range(3):
        panel = back[:, c * 260 : c * 260 + 256, 0]
        assert np.allclose(panel * 255, img[c], atol=0.51)
    assert list((tmp_path / "sub").iterdir()) == [out]  # no temporary file left behind


def test_fat_water_swap_is_flagged(builders):
    from ukbmri.preprocess.body import fat_water_swap_suspected

    water, fat = builders.body_phantom()
    specs = builders.ukb_specs(0.3)
    ok = fuse(collect_stations(builders.ukb_series(specs, water, fat)).stations)
    swapped = fuse(collect_stations(builders.ukb_series(specs, fat, water)).stations)
    assert not fat_water_swap_suspected(ok.water, ok.fat)
    assert fat_water_swap_suspected(swapped.water, swapped.fat)


def test_in_plane_erosion_equals_scipy_binary_erosion():
    from scipy import ndimage

    from ukbmri.preprocess.body import erode_in_plane

    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    rng = np.random.default_rng(6)
    for shape, iterations in (((9, 8, 3), 1), ((12, 7, 4), 2), ((6, 11, 2), 3), ((1, 5, 2), 1), ((10, 10, 1), 5)):
        mask = rng.random(shape) < 0.85
        mask[2:-2, 2:-2] = True
        expected = ndimage.binary_erosion(mask, plane, iterations=iterations)
        assert np.array_equal(erode_in_plane(mask, iterations), expected)
        assert np.array_equal(erode_in_plane(np.asfortranarray(mask), iterations), expected)
