"""MIMIR 2D format: FF slice choice, encoding, bed crop, orientation."""

import numpy as np
import pytest

from ukbmri.errors import TensorError
from ukbmri.preprocess.mimir2d import (
    encode_fat_fraction,
    fat_fraction_percent,
    mass_index,
    mimir_image,
    mimir_image_details,
    normalise_u8,
)
from ukbmri.types import Volume


def test_mass_index_is_the_first_prefix_reaching_the_mass():
    counts = np.array([0, 2, 3, 5])  # prefix sums over [0, i): 0, 0, 2, 5
    assert mass_index(counts, 5) == 3
    assert mass_index(counts, 2.5) == 3
    assert mass_index(counts, 2) == 2
    assert mass_index(counts, 0) == 0
    assert mass_index(counts, 9) == 0  # never reached within the first n - 1 slices: MIMIR's default 0


def test_encodings_are_truncated_like_the_reference():
    ff = np.array([0.0, 100.0, 250.0, 499.0, 500.0, 800.0, -5.0])  # per mille
    assert encode_fat_fraction(ff).tolist() == [0, 51, 127, 254, 255, 255, 0]
    assert normalise_u8(np.array([2.0, 3.0, 4.0])).tolist() == [0, 127, 255]
    assert normalise_u8(np.full((3, 3), 7.0)).tolist() == [[0] * 3] * 3


def _box_body(n_z=30):
    """LR 40 x AP 50 x z: trunk LR [4, 36) x AP [3, 20), lump LR [4, 12) x AP [20, 26); bed AP >= 28."""
    w = np.zeros((40, 50, n_z), np.float32)
    f = np.zeros_like(w)
    ap = np.arange(50)[None, :, None]
    body = np.zeros(w.shape, bool)
    body[4:36, 3:20] = True
    body[4:12, 20:26] = True
    ff = np.broadcast_to(20.0 * ap, w.shape)  # per mille, grows with AP; W + F = 1000 in the body
    f[body] = ff[body]
    w[body] = 1000.0 - ff[body]
    return w, f


def test_ff_slices_follow_the_mask_count_rule():
    w, f = _box_body()
    # trunk: 17 AP rows x 32 LR; lump: 6 AP rows x 8 LR (per z slice). Mass = 592 per z.
    # coronal: prefix over AP reaches 296 at 3 + 10 rows (320 >= 296 > 288) -> AP 13
    # sagittal: first half LR [0, 20) holds 8 * 23 + 8 * 17 = 320 -> target 160;
    #           prefix over LR reaches 161 at 4 + 7 -> LR 11
    d = mimir_image_details(w, f)
    assert (d.coronal_index, d.sagittal_index) == (13, 11)
    assert d.mask_voxels == 592 * w.shape[2]
    assert 1.0 < d.threshold < 1000.0
    # the FF channel's coronal half shows FF 260 per mille = uint8 132 in the body
    centre = d.image[2, 128, 40]
    assert abs(int(centre) - 132) <= 1


def test_bed_rows_do_not_change_the_projections():
    w, f = _box_body()
    a = mimir_image(w, f)
    w2, f2 = w.copy(), f.copy()
    w2[:, 28:] = 5000.0  # scanner bed, last 22 AP rows
    f2[:, 28:] = 3000.0
    b = mimir_image(w2, f2)
    assert np.array_equal(a[:2], b[:2])


def test_head_is_up_and_patient_right_is_left():
    w = np.zeros((40, 50, 60), np.float32)
    w[4:36, 3:26] = 100.0
    w[4:10, 3:26, 50:] = 1000.0  # superior end, low LR index (patient right)
    f = np.full_like(w, 10.0)
    img = mimir_image(Volume(w, (2.23, 2.23, 3.0)), Volume(f, (2.23, 2.23, 3.0)))
    assert img.shape == (3, 256, 256) and img.dtype == np.uint8
    water = img[0].astype(float)
    cor_width = round(256 * 40 / (40 + 28))  # coronal half: LR 40 of 40 + 28 columns
    top_left = water[: 256 * 10 // 60 - 2, 256 * 4 // 68 + 2 : 256 * 10 // 68 - 2]
    assert top_left.min() > 200
    assert water[200:, : cor_width - 5].max() < 60
    # sagittal half: the blob spans all AP rows at the top
    assert water[: 256 * 10 // 60 - 2, cor_width + 20 : -20].mean() > 100


def test_fat_fraction_percent_and_input_checks():
    w = Volume(np.array([[[0.0, 1.0], [3.0, 0.0]]], np.float32), (1.0, 1.0, 1.0))
    f = Volume(np.array([[[0.0, 3.0], [1.0, 2.0]]], np.float32), (1.0, 1.0, 1.0))
    ff = fat_fraction_percent(w, f)
    assert ff.array.tolist() == [[[0.0, 75.0], [25.0, 100.0]]]
    assert w.array[0, 0, 0] == 0.0  # inputs untouched
    with pytest.raises(TensorError):
        mimir_image(np.zeros((10, 30, 5)), np.zeros((10, 31, 5)))
    with pytest.raises(TensorError):
        mimir_image(np.zeros((10, 20, 5)), np.zeros((10, 20, 5)))  # AP not larger than the bed


def test_mask_counts_from_float32_sums_equal_float64_comparisons():
    from ukbmri.preprocess.mimir2d import _mask_counts

    rng = np.random.default_rng(2)
    t = 1234.5678901
    # float64 sums within a float32 step of t (most round to float32(t) itself: ties), zeros -> 1, and the rest
    s = t + rng.integers(-40, 41, size=(5, 7, 6)) * 2.0**-44
    s[:, :2] = rng.uniform(0.0, 3000.0, size=(5, 2, 6))
    s[0, 3] = 1.0
    assert np.count_nonzero(s.astype(np.float32) == np.float32(t)) > 50
    got = _mask_counts(s.astype(np.float32), t, lambda a, b: s[a:b])
    np.testing.assert_array_equal(got, np.count_nonzero(s >= t, axis=1))
