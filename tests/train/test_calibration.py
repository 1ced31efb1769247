"""The variance calibration search: known ratios, the level rule, adversarial inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from ukbmri.train.calibration import calibration_factor, calibration_factors, calibration_search
from ukbmri.train.metrics import AUCE_LEVELS, auce, coverage


def _data(n, ratio_sd, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=n)
    var = rng.uniform(0.25, 4.0, size=n)
    y = mu + ratio_sd * np.sqrt(var) * rng.standard_normal(n)
    return y, mu, var


@pytest.mark.parametrize("level", [None, 0.9])
def test_recovers_known_variance_ratio(level):
    y, mu, var = _data(20_000, 2.0)  # errors have twice the predicted SD -> factor 4
    c = calibration_factor(y, mu, var, level=level)
    assert c == pytest.approx(4.0, rel=0.05)
    assert auce(y, mu, c * var) < 0.01 < auce(y, mu, var)


def test_balanced_rule_holds_at_the_returned_factor():
    y, mu, var = _data(3_000, 0.7, seed=5)
    res = calibration_search(y, mu, var)
    assert res.converged and res.iterations < 64
    signed = lambda c: np.mean(coverage(y, mu, c * var, AUCE_LEVELS) - AUCE_LEVELS)  # noqa: E731
    assert signed(res.factor) >= 0 > signed(res.factor * (1 - 1e-5))
    assert res.start == pytest.approx(np.mean((y - mu) ** 2 / var))


def test_level_rule_matches_the_order_statistic():
    y, mu, var = _data(1_001, 1.3, seed=2)
    p = 0.8
    z = np.sort(np.abs(y - mu) / np.sqrt(var))
    k = int(np.ceil(p * z.size))  # need k of n inside: sqrt(c) q >= z_(k)
    expected = (z[k - 1] / norm.ppf(0.5 + p / 2)) ** 2
    c = calibration_factor(y, mu, var, level=p)
    assert c == pytest.approx(expected, rel=1e-5)
    assert coverage(y, mu, c * var, [p])[0] >= p


def test_all_zero_errors_terminate_with_factor_one():
    y = np.ones(50)
    res = calibration_search(y, y.copy(), np.ones(50))
    assert res.factor == 1.0 and not res.converged


@pytest.mark.parametrize("scale", [1e-100, 1e100])
def test_extreme_error_scales_converge(scale):
    y, mu, var = _data(2_000, 1.0, seed=7)
    err = (y - mu) * scale  # mean 0 so that tiny errors are representable
    res = calibration_search(err, np.zeros_like(mu), var)
    assert res.converged and res.iterations < 64
    assert res.factor == pytest.approx(scale**2, rel=0.1)


def test_mostly_exact_predictions_give_a_finite_boundary_factor():
    rng = np.random.default_rng(3)
    err = np.where(rng.uniform(size=400) < 0.7, 0.0, rng.normal(size=400))
    res = calibration_search(err, np.zeros(400), np.ones(400))
    assert np.isfinite(res.factor) and res.factor > 0 and res.objective >= 0


def test_single_sample_and_missing_values():
    assert np.isfinite(calibration_factor([1.0], [0.0], [1.0]))
    y, mu, var = _data(2_000, 2.0, seed=9)
    y_gappy = y.copy()
    y_gappy[::3] = np.nan
    keep = np.isfinite(y_gappy)
    assert calibration_factor(y_gappy, mu, var) == pytest.approx(calibration_factor(y[keep], mu[keep], var[keep]))
    with pytest.raises(ValueError):
        calibration_factor([np.nan], [0.0], [1.0])
    with pytest.raises(ValueError):
        calibration_factor(y, mu, var, level=1.0)


def test_factors_per_column():
    y1, mu1, v1 = _data(5_000, 2.0, seed=1)
    y2, mu2, v2 = _data(5_000, 0.5, seed=2)
    y = np.column_stack([y1, y2, np.full(5_000, np.nan)])
    mu = np.column_stack([mu1, mu2, mu2])
    var = np.column_stack([v1, v2, v2])
    f = calibration_factors(y, mu, var)
    assert f[0] == pytest.approx(4.0, rel=0.07) and f[1] == pytest.approx(0.25, rel=0.07) and f[2] == 1.0
