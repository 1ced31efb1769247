"""Teacher / student networks: layer shapes as in the published diagrams, parameter counts, heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ukbmri.models.ml4h_liver import LiverStudent, LiverTeacher, liver_fat_interval, liver_fat_percent

# Conv2D outputs (H, W, C) read off ml4h_liver_teacher_architecture.png, conv2d .. conv2d_9
TEACHER_CONV_OUT = [
    (160, 160, 32),
    (80, 80, 32), (80, 80, 32), (80, 80, 32),
    (40, 40, 24), (40, 40, 24), (40, 40, 24),
    (20, 20, 16), (20, 20, 16), (20, 20, 16),
]  # fmt: skip
TEACHER_CONV_IN_CHANNELS = [10, 32, 64, 96, 32, 56, 80, 24, 40, 56]
# ml4h_liver_student_architecture.png, conv2d_1 .. conv2d_10
STUDENT_CONV_OUT = [
    (232, 256, 32), (232, 256, 32),
    (116, 128, 32), (116, 128, 32), (116, 128, 24),
    (58, 64, 24), (58, 64, 24), (58, 64, 16),
    (29, 32, 16), (29, 32, 16),
]  # fmt: skip
STUDENT_CONV_IN_CHANNELS = [36, 32, 32, 64, 96, 24, 48, 72, 16, 32]


def _conv_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int, int]]:
    shapes = []
    hooks = [
        c.register_forward_hook(lambda m, i, o: shapes.append((o.shape[2], o.shape[3], o.shape[1])))
        for c in model.conv_layers()
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize(
    "cls, conv_out, conv_in, flat, n_params",
    [
        (LiverTeacher, TEACHER_CONV_OUT, TEACHER_CONV_IN_CHANNELS, 6400, 215_561),
        (LiverStudent, STUDENT_CONV_OUT, STUDENT_CONV_IN_CHANNELS, 44_544, 814_921),
    ],
)
def test_architecture_matches_diagram(cls, conv_out, conv_in, flat, n_params):
    torch.manual_seed(0)
    m = cls().eval()
    x = torch.randn(1, *m.input_shape)
    assert _conv_shapes(m, x) == conv_out
    assert [c.in_channels for c in m.conv_layers()] == conv_in
    assert all(c.kernel_size == (3, 3) for c in m.conv_layers())
    assert m.flat_features == flat
    assert [(d.in_features, d.out_features) for d in m.dense_layers()] == [(flat, 16), (16, 64), (64, 1)]
    assert sum(p.numel() for p in m.parameters()) == n_params
    assert m(x).shape == (1, 1)
    assert m.embed(x).shape == (1, 64)


def test_input_shapes():
    assert LiverTeacher().input_shape == (10, 160, 160)
    assert LiverStudent().input_shape == (36, 232, 256)
    with pytest.raises(ValueError, match="expects"):
        LiverTeacher()(torch.zeros(1, 36, 160, 160))


def test_mean_variance_head_and_training_step():
    torch.manual_seed(0)
    m = LiverTeacher(mean_variance=True)
    base = sum(p.numel() for p in LiverTeacher().parameters())
    assert sum(p.numel() for p in m.parameters()) == base + 65
    x = torch.randn(2, 10, 160, 160)
    out = m(x)
    assert out.shape == (2, 2)
    mean, logvar = out[:, 0], out[:, 1]
    loss = (0.5 * (logvar + (mean - 1.0) ** 2 / logvar.exp())).mean()
    loss.backward()
    assert m.logvar_layer.weight.grad is not None and m.stem.weight.grad.abs().sum() > 0


def test_flatten_is_channels_last():
    """Permuting channels-last before Flatten: dense weight column j reads feature (h, w, c) = unravel(j)."""
    m = LiverTeacher(input_hw=(16, 16)).eval()  # features (B, 16, 2, 2) -> flat 64
    assert m.flat_features == 64
    feats = torch.arange(64, dtype=torch.float32).reshape(1, 16, 2, 2)  # value = c*4 + h*2 + w
    m.features = lambda x: feats  # type: ignore[method-assign]
    seen = []
    m.dense.register_forward_hook(lambda mod, i, o: seen.append(o))
    with torch.no_grad():
        m.dense.weight.zero_()
        m.dense.bias.zero_()
        j = 1 * (2 * 16) + 0 * 16 + 5  # (h=1, w=0, c=5) in (H, W, C) order
        m.dense.weight[0, j] = 1.0
        m.embed(torch.zeros(1, 10, 16, 16))
    h = seen[0]
    assert float(h[0, 0]) == 5 * 4 + 1 * 2 + 0


def test_percent_and_interval_helpers():
    out = torch.tensor([[0.0, np.log(1.0)], [1.0, np.log(4.0)]])
    mean, var = liver_fat_percent(out)
    np.testing.assert_allclose(mean, [3.91012, 3.91012 + 4.64437])
    np.testing.assert_allclose(var, [4.64437**2, 4 * 4.64437**2])
    lo, hi = liver_fat_interval(mean, var, 0.95)
    assert lo[0] == 0.0  # clipped to the valid range
    assert hi[1] - mean[1] == pytest.approx(1.959964 * 2 * 4.64437, rel=1e-5)
    m1, v1 = liver_fat_percent(np.array([[0.5]]))
    assert v1 is None and m1[0] == pytest.approx(3.91012 + 0.5 * 4.64437)
