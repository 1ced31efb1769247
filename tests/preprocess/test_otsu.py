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
