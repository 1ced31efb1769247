"""Head layout and post-processing formulas against hand-computed values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ukbmri.infer import normal_interval, postprocess, postprocess_arrays
from ukbmri.models import split_mean_logvar


def test_split_mean_logvar_is_mimirs_interleaved_view():
    out = torch.arange(12.0).reshape(2, 6)  # B=2, T=3
    mean, logvar = split_mean_logvar(out, 3)
    ref = out.view(out.size(0), out.size(1) // 2, 2)  # what MIMIR does
    assert torch.equal(mean, ref[:, :, 0]) and torch.equal(logvar, ref[:, :, 1])
    assert mean.tolist() == [[0, 2, 4], [6, 8, 10]]
    assert logvar.tolist() == [[1, 3, 5], [7, 9, 11]]
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        split_mean_logvar(torch.zeros(2, 5), 3)


def _module(mean, sd, cal, div):
    return SimpleNamespace(mean=np.array(mean, float), sd=np.array(sd, float),
                           calibration=np.array(cal, float), divisors=np.array(div, float))


def test_postprocess_by_hand():
    # two targets: (mu'=0.5, s=ln 2) and (mu'=-1, s=0)
    raw = np.array([[0.5, math.log(2.0), -1.0, 0.0]])
    mod = _module(mean=[80.0, 3000.0], sd=[10.0, 200.0], cal=[1.5, 0.8], div=[1.0, 1000.0])
    mean, var = postprocess(raw, mod)
    # target 0: 0.5 * 10 + 80 = 85 ; 2 * 100 * 1.5 = 300
    # target 1: (-1 * 200 + 3000) / 1000 = 2.8 ; 1 * 40000 * 0.8 / 1000**2 = 0.032
    np.testing.assert_allclose(mean, [[85.0, 2.8]], rtol=1e-12)
    np.testing.assert_allclose(var, [[300.0, 0.032]], rtol=1e-12)


def test_divisor_scales_variance_by_its_square():
    mu = np.array([[1.0]])
    s = np.array([[0.3]])
    m1, v1 = postprocess_arrays(mu, s, [5.0], [2.0], [1.0], 1.0)
    m4, v4 = postprocess_arrays(mu, s, [5.0], [2.0], [1.0], 4.0)
    np.testing.assert_allclose(m4, m1 / 4)
    np.testing.assert_allclose(v4, v1 / 16)  # the SD scales like the mean
    np.testing.assert_allclose(np.sqrt(v4) / m4, np.sqrt(v1) / m1)


def test_postprocess_shape_checks_and_overflow():
    mod = _module([0.0], [1.0], [1.0], [1.0])
    with pytest.raises(ValueError):
        postprocess(np.zeros((3, 3)), mod)
    mean, var = postprocess(np.array([[0.0, 1e4]]), mod)
    assert np.isinf(var[0, 0]) and mean[0, 0] == 0.0


def test_normal_interval():
    lo, hi = normal_interval(np.array([10.0, 0.0]), np.array([4.0, 1.0]), 0.95)
    np.testing.assert_allclose(hi, [10 + 1.959963984540054 * 2, 1.959963984540054], rtol=1e-12)
    np.testing.assert_allclose(lo, [10 - 1.959963984540054 * 2, -1.959963984540054], rtol=1e-12)
    lo, hi = normal_interval(0.0, 1.0, 0.6826894921370859)  # +- 1 SD
    assert hi == pytest.approx(1.0, rel=1e-9) and lo == pytest.approx(-1.0, rel=1e-9)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            normal_interval(0.0, 1.0, bad)
