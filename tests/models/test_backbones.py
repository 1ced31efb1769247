"""Backbones: torchvision key layout, parameter counts, block arithmetic, SmallCNN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ukbmri.models import BACKBONES, build_backbone, resolve_device
from ukbmri.models.resnet import Bottleneck

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(kind: str, num_outputs: int) -> dict[str, tuple[int, ...]]:
    """Expected state_dict of torchvision.models.resnet18/50 (fc replaced), written from its spec."""
    out: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    out.update({f"bn1.{b}": (() if b == "num_batches_tracked" else (64,)) for b in BN})

    def bn(prefix: str, c: int) -> None:
        out.update({f"{prefix}.{b}": (() if b == "num_batches_tracked" else (c,)) for b in BN})

    blocks, expansion = ((2, 2, 2, 2), 1) if kind == "resnet18" else ((3, 4, 6, 3), 4)
    inplanes = 64
    for li, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for bi in range(n):
            p = f"layer{li}.{bi}"
            if kind == "resnet18":
                out[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                bn(f"{p}.bn1", planes)
                out[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                out[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.bn1", planes)
                out[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                out[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            if bi == 0 and (li > 1 or inplanes != planes * expansion):
                out[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    out["fc.weight"] = (num_outputs, 512 * expansion)
    out["fc.bias"] = (num_outputs,)
    return out


@pytest.mark.parametrize(
    "name, n_keys, n_params, n_weights",
    [("resnet50", 320, 161, 25_557_032), ("resnet18", 122, 62, 11_689_512)],
)
def test_torchvision_state_dict_layout(name, n_keys, n_params, n_weights):
    with torch.device("meta"):
        model = build_backbone(name, 1000)
    sd = model.state_dict()
    expected = torchvision_keys(name, 1000)
    assert list(sd) == list(expected)  # same names in the same order
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert len(sd) == n_keys
    assert len(list(model.parameters())) == n_params
    assert sum(p.numel() for p in model.parameters()) == n_weights
    # module tree of torchvision
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                     "layer4", "avgpool", "fc"]


def test_stride_on_3x3_and_downsample_of_resnet50():
    with torch.device("meta"):
        m = build_backbone("resnet50", 10)
    assert m.layer2[0].conv1.stride == (1, 1)  # ResNet v1.5: stride on the 3x3 conv
    assert m.layer2[0].conv2.stride == (2, 2)
    assert m.layer2[0].downsample[0].stride == (2, 2)
    assert m.layer1[0].downsample[0].stride == (1, 1)
    assert m.maxpool.kernel_size == 3 and m.maxpool.stride == 2 and m.maxpool.padding == 1
    assert m.conv1.stride == (2, 2) and m.conv1.padding == (3, 3)


def test_bottleneck_forward_matches_functional_definition():
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        block = Bottleneck(8, 4, stride=2, downsample=torch.nn.Sequential(
            torch.nn.Conv2d(8, 16, 1, stride=2, bias=False), torch.nn.BatchNorm2d(16)))
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        block.eval()
        x = torch.randn(2, 8, 9, 9, generator=g)

        def bn(t, m):
            return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        h = F.relu(bn(F.conv2d(x, block.conv1.weight), block.bn1))
        h = F.relu(bn(F.conv2d(h, block.conv2.weight, stride=2, padding=1), block.bn2))
        h = bn(F.conv2d(h, block.conv3.weight), block.bn3)
        sc = bn(F.conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1])
        expected = F.relu(h + sc)
        got = block(x)
    assert got.shape == (2, 16, 5, 5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_default_init_like_torchvision():
    g = torch.Generator().manual_seed(0)
    m = build_backbone("resnet18", 6, generator=g)
    w = m.layer4[1].conv2.weight  # 512 x 512 x 3 x 3, fan_out = 512 * 9
    assert abs(w.std().item() - (2.0 / (512 * 9)) ** 0.5) < 0.02 * (2.0 / (512 * 9)) ** 0.5
    assert torch.all(m.bn1.weight == 1) and torch.all(m.bn1.bias == 0)
    bound = 1 / 512**0.5
    assert m.fc.bias.abs().max() <= bound


def test_generator_makes_init_reproducible():
    a = build_backbone("smallcnn", 4, generator=torch.Generator().manual_seed(3))
    b = build_backbone("smallcnn", 4, generator=torch.Generator().manual_seed(3))
    c = build_backbone("smallcnn", 4, generator=torch.Generator().manual_seed(4))
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.fc.weight, c.fc.weight)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_forward_shapes(name):
    m = build_backbone(name, 14, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        y = m(torch.randint(0, 256, (2, 3, 96, 96)).float())
    assert y.shape == (2, 14) and torch.isfinite(y).all()
    assert m.fc.out_features == 14


def test_resnet50_forward_on_mimir_image_size():
    m = build_backbone("resnet50", 8, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        y = m(torch.randint(0, 256, (1, 3, 256, 256)).float())
    assert y.shape == (1, 8)


def test_in_channels_and_unknown_name():
    m = build_backbone("resnet18", 2, in_channels=1)
    assert m.conv1.weight.shape == (64, 1, 7, 7)
    with pytest.raises(ValueError, match="resnet18, resnet50, smallcnn"):
        build_backbone("vgg16", 2)
    with pytest.raises(ValueError):
        build_backbone("smallcnn", 0)


def test_smallcnn_size_and_scaling():
    m = build_backbone("smallcnn", 2 * 72)
    n = sum(p.numel() for p in m.parameters())
    assert 200_000 < n < 1_000_000
    # the network scales its input itself: feeding 0..255 or 0..1 differs
    m.eval()
    x = torch.full((1, 3, 64, 64), 255.0)
    with torch.no_grad():
        assert not torch.allclose(m(x), m(x / 255))


def test_smallcnn_overfits_a_handful_of_images():
    from ukbmri.models import split_mean_logvar

    g = torch.Generator().manual_seed(0)
    m = build_backbone("smallcnn", 4, generator=g)
    # 128 x 128 keeps it quick; the network is fully convolutional up to the pooled head
    x = torch.randint(0, 256, (4, 3, 128, 128), generator=g).float()
    y = torch.randn(4, 2, generator=g)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(60):  # 40 steps left it at 0.08-0.11 of the start, depending on the thread count; 60: ~0.02
        mu, _ = split_mean_logvar(m(x), 2)
        loss = ((mu - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        mu, _ = split_mean_logvar(m(x), 2)
    assert ((mu - y) ** 2).mean().item() < 0.1 * (y**2).mean().item()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
