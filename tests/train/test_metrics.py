"""Agreement and calibration metrics against textbook values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from ukbmri.train.metrics import (
    AUCE_LEVELS,
    auce,
    binary_accuracy,
    bland_altman,
    coverage,
    icc_a1,
    icc_a1_table,
    mae,
    mape,
    pearson_r,
    r2,
    regression_report,
    sparsification,
)

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(2,1) = 0.29
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
)


def test_icc_shrout_fleiss_worked_example():
    assert icc_a1_table(SHROUT_FLEISS) == pytest.approx(0.29, abs=0.005)


def test_icc_absolute_agreement_penalises_a_constant_bias():
    # y vs y + b: MSR = 2 s^2, MSC = n b^2 / 2, MSE = 0 -> ICC(A,1) = 2 s^2 / (2 s^2 + b^2)
    y = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    b = 1.5
    s2 = y.var(ddof=1)
    assert icc_a1(y, y + b) == pytest.approx(2 * s2 / (2 * s2 + b**2))
    assert icc_a1(y, y) == pytest.approx(1.0)
    # missing references are dropped, not zero-filled
    assert icc_a1(np.append(y, np.nan), np.append(y + b, 3.0)) == pytest.approx(2 * s2 / (2 * s2 + b**2))


def test_mae_mape_r2_pearson_by_hand():
    assert mae([1, 2, 3], [2, 2, 1]) == pytest.approx(1.0)
    # MAPE skips |y| <= 1e-4: only y = 2 (50 %) and y = 4 (0 %) count
    assert mape([0.0, 1e-5, 2.0, 4.0], [1.0, 1.0, 3.0, 4.0]) == pytest.approx(25.0)
    assert np.isnan(mape([0.0], [1.0]))
    # SS_res = 1, SS_tot = 5
    assert r2([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(0.8)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert pearson_r(a, a + b) == pytest.approx(np.corrcoef(a, a + b)[0, 1])
    assert np.isnan(pearson_r([1, 2, 3], [5, 5, 5]))


def test_bland_altman_by_hand():
    bias, lo, hi = bland_altman([0, 0, 0, 0], [1, 3, 1, 3])
    sd = np.sqrt(4 / 3)  # d = 1,3,1,3: mean 2, sum of squares 4, ddof 1
    assert (bias, lo, hi) == pytest.approx((2.0, 2 - 1.96 * sd, 2 + 1.96 * sd))


def _gaussian(n, sd_scale, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    var = rng.uniform(0.2, 3.0, size=n)  # heteroscedastic predicted variances
    y = mu + sd_scale * np.sqrt(var) * rng.standard_normal(n)
    return y, mu, var


def test_coverage_and_auce_of_calibrated_gaussians_are_nominal():
    y, mu, var = _gaussian(200_000, 1.0)
    levels = np.array([0.5, 0.8, 0.9, 0.95])
    assert coverage(y, mu, var, levels) == pytest.approx(levels, abs=0.004)
    assert auce(y, mu, var) < 0.004


def test_auce_of_too_narrow_intervals_matches_theory():
    # errors 2x the predicted SD: coverage(p) = 2 Phi(q_p / 2) - 1
    y, mu, var = _gaussian(200_000, 2.0, seed=3)
    q = norm.ppf(0.5 + AUCE_LEVELS / 2)
    expected = np.mean(np.abs(2 * norm.cdf(q / 2) - 1 - AUCE_LEVELS))
    assert auce(y, mu, var) == pytest.approx(expected, abs=0.004)
    assert expected > 0.2


def test_coverage_ignores_missing_and_bad_variances():
    cov = coverage([0.0, np.nan, 0.0, 10.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0], [0.5])
    assert cov.tolist() == [0.5]  # pairs 1 (missing y) and 2 (var 0) dropped; 0 inside, 10 outside
    with pytest.raises(ValueError):
        coverage([0.0], [0.0], [1.0], [1.5])


def test_sparsification_by_hand():
    y = np.zeros(4)
    mean = np.array([1.0, 2.0, 3.0, 4.0])
    fr = np.array([0.0, 0.25, 0.5])
    good = sparsification(y, mean, np.array([1.0, 2.0, 3.0, 4.0]), fractions=fr)
    assert good.mae_model == pytest.approx([2.5, 2.0, 1.5])
    assert good.mae_oracle == pytest.approx([2.5, 2.0, 1.5])
    assert good.ause == pytest.approx(0.0)
    bad = sparsification(y, mean, np.array([4.0, 3.0, 2.0, 1.0]), fractions=fr)
    assert bad.mae_model == pytest.approx([2.5, 3.0, 3.5])
    # area between [2.5, 3, 3.5] and [2.5, 2, 1.5] on [0, 0.5]: 0.25 (0 + 1)/2 + 0.25 (1 + 2)/2
    assert bad.ause == pytest.approx(0.5)
    assert bad.ause_relative == pytest.approx(0.5 / 2.5)


def test_binary_accuracy_steatosis_call():
    y = [1.0, 3.0, 6.0, 10.0, 7.0, np.nan]
    yhat = [2.0, 6.0, 5.0, 12.0, 8.0, 9.0]
    out = binary_accuracy(y, yhat, 5.5)
    # reference positives 6, 10, 7 (calls: no, yes, yes); negatives 1, 3 (calls: no, yes)
    assert out["sensitivity"] == pytest.approx(2 / 3)
    assert out["specificity"] == pytest.approx(1 / 2)
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert (out["n_positive"], out["n_negative"]) == (3, 2)


def test_regression_report_keys_and_consistency():
    y, mu, var = _gaussian(500, 1.0)
    rep = regression_report(y, mu, var)
    for key in ("n", "mae", "mape_percent", "r2", "pearson_r", "icc", "ba_bias", "ba_lower", "ba_upper",
                "coverage_50", "coverage_80", "coverage_90", "coverage_95", "auce", "ause", "ause_relative"):
        assert key in rep
    assert rep["n"] == 500 and rep["mae"] == pytest.approx(mae(y, mu))
    assert "auce" not in regression_report(y, mu)
