"""The training loop: batch stream, learning, determinism, schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ukbmri.train.loop import batch_indices, fit, predict_raw


@pytest.mark.parametrize("n, bs", [(10, 5), (7, 3), (4, 32)])
def test_batches_are_epoch_shuffles(n, bs):
    stream = batch_indices(n, bs, torch.Generator().manual_seed(0))
    size = min(n, bs)
    n_batches = 3 * np.lcm(n, size) // size  # three whole cycles of epochs
    idx = torch.cat([next(stream) for _ in range(n_batches)])
    assert all(len(b) == size for b in idx.split(size))
    counts = np.bincount(idx.numpy(), minlength=n)
    assert counts.min() == counts.max()  # every image equally often over whole epochs


class Tiny(nn.Module):
    """Mean intensity per channel -> (mean, log variance) for one target."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.drop = nn.Dropout(0.1)  # draws from torch's global RNG: fit must seed it

    def forward(self, x):
        return self.fc(self.drop(x.mean(dim=(2, 3)) / 255.0))


def _toy(n=24, seed=0):
    rng = np.random.default_rng(seed)
    level = rng.uniform(0, 255, n)
    images = np.broadcast_to(level[:, None, None, None], (n, 3, 16, 16)).round().astype(np.uint8)
    y = (level / 255.0 - 0.5) * 4.0
    targets = y[:, None].astype(np.float32)
    targets[::5] = np.nan  # gaps must not break training
    return images, targets


def test_fit_learns_and_is_deterministic():
    images, targets = _toy()
    calls = []
    runs = []
    for run in range(2):
        torch.manual_seed(0)  # the toy model's init only; fit itself uses the generator passed in
        model = Tiny()
        torch.manual_seed(100 + run)  # a different global RNG state must not change the result
        state = torch.get_rng_state()
        res = fit(model, images, targets, iterations=80, batch_size=8, lr=0.1, max_shift=2,
                  generator=torch.Generator().manual_seed(3), progress=calls.append)
        assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
        runs.append(res)
    assert len(calls) == 160 and set(calls) == {1}
    assert runs[0].losses.shape == (80,) and np.isfinite(runs[0].losses).all()
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses)
    assert runs[0].losses[-15:].mean() < runs[0].losses[:15].mean() - 1.0
    raw = predict_raw(runs[0].model, images, batch_size=5)
    ok = np.isfinite(targets[:, 0])
    assert raw.shape == (24, 2)
    assert np.abs(raw[ok, 0] - targets[ok, 0]).mean() < 0.3
    assert not runs[0].model.training


def test_learning_rate_steps_down_at_lr_step_at(monkeypatch):
    images, targets = _toy(8)
    opt_lrs = []
    orig = torch.optim.Adam.step

    def step(self, *a, **k):
        opt_lrs.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    fit(Tiny(), images, targets, iterations=10, lr=1e-3, lr_step_at=6, generator=torch.Generator().manual_seed(0))
    assert opt_lrs[:6] == [1e-3] * 6 and opt_lrs[6:] == pytest.approx([1e-4] * 4)


def test_non_finite_loss_is_reported():
    images, targets = _toy(8)
    model = Tiny()
    with torch.no_grad():
        model.fc.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="iteration 0"):
        fit(model, images, targets, iterations=3, generator=torch.Generator())


def test_indices_restrict_training_and_prediction_rows():
    images, targets = _toy(12)
    images = images.copy()
    rows = np.array([1, 4, 5, 9])
    images[np.setdiff1d(np.arange(12), rows)] = 255  # rows outside the subset are marked
    images[rows] = np.minimum(images[rows], 200)
    seen = []

    class Recorder(Tiny):
        def forward(self, x):
            seen.append(float(x.max()))
            return super().forward(x)

    res = fit(Recorder(), images, targets, iterations=6, batch_size=3, indices=rows,
              generator=torch.Generator().manual_seed(0))
    assert len(seen) == 6 and max(seen) <= 200
    raw_subset = predict_raw(res.model, images, batch_size=3, indices=rows[::-1])
    np.testing.assert_allclose(raw_subset, predict_raw(res.model, images[rows[::-1]]), rtol=1e-6)
