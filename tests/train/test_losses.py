"""Masked training losses: hand-computed values and NaN-free gradients."""

from __future__ import annotations

import math

import pytest
import torch

from ukbmri.train.losses import gaussian_nll_masked, gaussian_nll_with_gaps, log_cosh_masked

NAN = float("nan")


def _inputs():
    mean = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(2.0)], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, NAN], [2.0, 3.0]], dtype=torch.float64)
    return mean, logvar, target


def test_gaussian_nll_with_gaps_hand_computed():
    mean, logvar, target = _inputs()
    # entries: e^0 (1-0)^2 + 0 = 1 ; masked ; e^-1 (2-2)^2 + 1 = 1 ; e^0 (3-0)^2 + 0 = 9
    loss = gaussian_nll_with_gaps(mean, logvar, target)
    assert loss.item() == pytest.approx(11.0 / 4.0)  # mean over ALL B*T = 4 entries
    loss.backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(logvar.grad).all()
    # d/dmu_00 = -2 e^-s (y - mu) / 4 = -0.5 ; masked entry: exactly 0
    assert mean.grad[0, 0].item() == pytest.approx(-0.5)
    assert mean.grad[0, 1].item() == 0.0 and logvar.grad[0, 1].item() == 0.0
    # d/ds_11 = (1 - e^-s (y - mu)^2) / 4 = (1 - 9) / 4
    assert logvar.grad[1, 1].item() == pytest.approx(-2.0)


def test_gaps_gradient_finite_with_extreme_logvar_at_missing_entries():
    mean = torch.zeros(3, 2, requires_grad=True)
    logvar = torch.tensor([[0.0, -200.0], [0.0, -200.0], [0.0, 0.0]], requires_grad=True)  # exp(200) = inf in fp32
    target = torch.tensor([[1.0, NAN], [0.5, NAN], [NAN, NAN]])
    loss = gaussian_nll_with_gaps(mean, logvar, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(mean.grad).all() and torch.isfinite(logvar.grad).all()
    assert loss.item() == pytest.approx((1.0 + 0.25) / 6)


def test_all_missing_gives_zero_loss_and_zero_grad():
    mean = torch.ones(2, 2, requires_grad=True)
    loss = gaussian_nll_with_gaps(mean, torch.zeros(2, 2), torch.full((2, 2), NAN))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(mean.grad) == 0


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        gaussian_nll_with_gaps(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 3))


def test_gaussian_nll_masked_averages_over_valid_entries_only():
    mean, logvar, target = _inputs()
    assert gaussian_nll_masked(mean, logvar, target).item() == pytest.approx(11.0 / 3.0)
    mask = torch.tensor([[True, True], [False, True]])  # also drop the (1,0) entry
    assert gaussian_nll_masked(mean, logvar, target, mask).item() == pytest.approx(10.0 / 2.0)
    empty = gaussian_nll_masked(mean, logvar, target, torch.zeros(2, 2, dtype=torch.bool))
    assert empty.item() == 0.0


def test_log_cosh_values_stability_and_mask():
    pred = torch.tensor([1.0, -2.0, 1000.0, 0.0], requires_grad=True)
    target = torch.tensor([0.0, 0.0, 0.0, NAN])
    loss = log_cosh_masked(pred, target, torch.tensor([True, True, True, True]))
    expected = (math.log(math.cosh(1.0)) + math.log(math.cosh(2.0)) + (1000.0 - math.log(2.0))) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # gradient of log cosh is tanh(d) / n_valid; the NaN-target entry gets exactly 0
    assert pred.grad[:3].tolist() == pytest.approx([math.tanh(1.0) / 3, math.tanh(-2.0) / 3, 1 / 3], rel=1e-6)
    assert pred.grad[3].item() == 0.0
    assert log_cosh_masked(pred, target, torch.tensor([False, True, False, True])).item() == pytest.approx(
        math.log(math.cosh(2.0)), rel=1e-6)
