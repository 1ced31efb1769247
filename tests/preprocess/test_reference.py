"""The fast pipeline against tests/preprocess/reference_impl.py (loops, map_coordinates, cv2)."""

from dataclasses import replace

import numpy as np
import pytest

from ukbmri.preprocess import collect_stations, fuse, mimir_image_details


def _compare(builders, reference_impl, scale, *, jitter: bool):
    pytest.importorskip("cv2")
    water, fat = builders.body_phantom()
    specs = builders.ukb_specs(scale)
    rng = np.random.default_rng(5)
    if jitter:  # every station off the grid in x, y and z, and noisy pixels
        specs = [
            replace(s, x0=s.x0 + rng.uniform(-0.6, 0.6), y0=-s.rows / 2 * builders.PS + rng.uniform(-0.6, 0.6),
                    z_top=s.z_top + rng.uniform(-1, 1))
            for s in specs
        ]
    series = builders.ukb_series(specs, water, fat)
    if jitter:
        series = [replace(s, pixels=np.clip(s.pixels + rng.normal(0, 15, s.pixels.shape), 0, None).astype(np.float32))
                  for s in series]
    fused = fuse(collect_stations(series).stations)
    if jitter:
        assert all(p.resample for p in fused.placements)
    fast = mimir_image_details(fused.water, fused.fat)
    st = reference_impl.stations(series)
    ref_w = reference_impl.fuse(st, 0)
    ref_f = reference_impl.fuse(st, 1)
    assert ref_w.shape == fused.water.shape
    for ref, ours in ((ref_w, fused.water.array), (ref_f, fused.fat.array)):
        assert np.allclose(ours, ref, rtol=1e-4, atol=1e-2)
    ref_img, (i_cor, i_sag) = reference_impl.image(ref_w, ref_f)
    assert (fast.coronal_index, fast.sagittal_index) == (i_cor, i_sag)
    diff = np.abs(ref_img.astype(int) - fast.image)
    assert np.count_nonzero(diff > 2) <= 5
    assert np.count_nonzero(diff) <= 50


@pytest.mark.parametrize("jitter", [False, True])
def test_small_stations_match_the_reference(builders, reference_impl, jitter):
    _compare(builders, reference_impl, 0.3, jitter=jitter)


@pytest.mark.slow
@pytest.mark.parametrize("jitter", [False, True])
def test_full_size_stations_match_the_reference(builders, reference_impl, jitter):
    _compare(builders, reference_impl, 1.0, jitter=jitter)
