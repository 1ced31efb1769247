"""Otsu thresholds with skimage.filters.threshold_otsu semantics (256 bins over the data range)."""

import numpy as np
import pytest

from ukbmri.preprocess.mimir2d import otsu_threshold, otsu_thresholds


def _textbook_otsu(values, nbins=256):
    counts, edges = np.histogram(np.ravel(values), bins=nbins)
    centres = (edges[:-1] + edges[1:]) / 2
    best, best_t = -1.0, None
    for t in range(nbins - 1):
        w1, w2 = counts[: t + 1].sum(), counts[t + 1 :].sum()
        m1 = (counts[: t + 1] * centres[: t + 1]).sum() / w1
        m2 = (counts[t + 1 :] * centres[t + 1 :]).sum() / w2
        v = w1 * w2 * (m1 - m2) ** 2
        if v > best * (1 + 1e-12):
            best, best_t = v, centres[t]
    return best_t


def test_bimodal_threshold_lies_between_the_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(100, 8, 6000), rng.normal(300, 12, 3000)])
    t = otsu_threshold(values)
    assert 110 < t < 290  # (the between-class variance is flat across the empty gap)
    # the threshold separates the two populations almost perfectly
    assert np.mean(values[:6000] < t) > 0.999 and np.mean(values[6000:] >= t) > 0.999


def test_matches_textbook_otsu_on_random_images():
    rng = np.random.default_rng(1)
    for i in range(20):
        img = rng.gamma(2.0 + i % 5, 50.0, size=(int(rng.integers(5, 60)), int(rng.integers(5, 60))))
        if i % 3 == 0:
            img = np.round(img)  # many values exactly on bin edges
        assert otsu_threshold(img) == pytest.approx(_textbook_otsu(img), rel=0, abs=1e-9)


def test_rows_are_independent_and_constant_rows_return_their_value():
    rng = np.random.default_rng(2)
    rows = rng.normal(50, 10, (5, 400))
    rows[2] = 7.5
    got = otsu_thresholds(rows)
    assert got[2] == 7.5
    for i in (0, 1, 3, 4):
        assert got[i] == otsu_threshold(rows[i])


def test_matches_skimage_when_installed():
    filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(3)
    img = rng.gamma(3.0, 40.0, size=(80, 90))
    assert otsu_threshold(img) == pytest.approx(float(filters.threshold_otsu(img)), abs=1e-9)


@pytest.mark.parametrize("nbins", [256, 100])  # one division by denom / 256 (a power of two), or numpy's two steps
def test_row_histograms_equal_numpy_histogram_on_values_at_bin_edges(nbins):
    from ukbmri.preprocess.mimir2d import _row_histograms

    rng = np.random.default_rng(4)
    rows = np.empty((6, 3000))
    rows[:3] = rng.integers(0, 2 * nbins + 1, size=(3, 3000)) * 0.5  # most values exactly on an edge
    rows[3] = np.linspace(-3.7, 11.3, nbins + 1)[rng.integers(0, nbins + 1, 3000)]  # the edges themselves
    rows[4] = rng.gamma(2.0, 50.0, 3000)
    rows[5] = 1.0  # a constant row
    counts, centres, const = _row_histograms(rows, nbins, rows.min(axis=1), rows.max(axis=1))
    for i in range(5):
        expected, edges = np.histogram(rows[i], bins=nbins)
        np.testing.assert_array_equal(counts[i], expected)
        np.testing.assert_array_equal(centres[i], (edges[:-1] + edges[1:]) / 2)
    assert const.tolist() == [False] * 5 + [True]
    # thresholds of rows batched together equal those of each row alone, bit for bit
    alone = [otsu_threshold(r) for r in rows]
    assert otsu_thresholds(rows).tolist() == alone


def test_long_images_are_histogrammed_piece_by_piece_with_the_same_counts():
    rng = np.random.default_rng(5)
    img = np.round(rng.gamma(2.0, 50.0, size=(97, 61, 113)))  # 668k values: three pieces, many on bin edges
    img[:40] = 1.0
    expected = _textbook_otsu(img)
    assert otsu_threshold(img) == pytest.approx(expected, rel=0, abs=1e-9)
    assert otsu_threshold(np.asfortranarray(img)) == otsu_threshold(img)  # memory order does not matter
