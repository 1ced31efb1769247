"""ResNet18 / ResNet50 with torchvision's exact module tree and state-dict keys.

torchvision is not a dependency (its wheels are tied to CUDA builds), so the
two networks MIMIR uses are written out here. The module names, tensor shapes,
stride placement (on the 3x3 convolution of a bottleneck, "ResNet v1.5") and
default initialisation follow ``torchvision.models.resnet``, so that a
``state_dict`` saved from ``torchvision.models.resnet50()`` (with its ``fc``
replaced by ``Linear(2048, 2T)``, as MIMIR does) loads here with
``strict=True`` and computes the same function.

Key layout (ResNet50)::

    conv1.weight, bn1.{weight,bias,running_mean,running_var,num_batches_tracked},
    layer1.0.conv1.weight ... layer1.0.bn3.*, layer1.0.downsample.0.weight,
    layer1.0.downsample.1.*, ..., layer4.2.bn3.*, fc.weight, fc.bias
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50", "init_resnet_"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (torchvision's ``conv3x3``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (torchvision's ``conv1x1``)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 bottleneck, output width ``4 * planes``."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet trunk with a linear head ``fc`` of ``num_outputs``.

    Parameters
    ----------
    block:
        :class:`BasicBlock` or :class:`Bottleneck`.
    layers:
        Number of blocks in ``layer1`` .. ``layer4``.
    num_outputs:
        Width of ``fc`` (``2T`` for a mean-variance regression of T targets).
    in_channels:
        Input channels of ``conv1`` (3 for the MIMIR 2D format).
    generator:
        Optional ``torch.Generator`` for a reproducible initialisation.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_outputs: int = 1000,
        *,
        in_channels: int = 3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_outputs)
        init_resnet_(self, generator=generator)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@torch.no_grad()
def init_resnet_(model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """torchvision's default initialisation, in place.

    Convolutions: Kaiming normal (fan_out, ReLU gain). BatchNorm: weight 1,
    bias 0. Linear layers keep PyTorch's default (Kaiming uniform with
    ``a = sqrt(5)``, bias uniform in +-1/sqrt(fan_in)); with a ``generator``
    they are re-drawn from it so the whole network is reproducible. A model built on the
    ``meta`` device (to receive weights) is left as it is: drawing normal values for meta
    tensors would only import ``torch._dynamo`` (about a second of start-up).
    """
    if any(p.is_meta for p in model.parameters()):
        return model
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and generator is not None:
            nn.init.kaiming_uniform_(m.weight, a=5**0.5, generator=generator)
            if m.bias is not None:
                bound = 1.0 / m.in_features**0.5
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return model


def resnet18(
    num_outputs: int = 1000, *, in_channels: int = 3, generator: torch.Generator | None = None
) -> ResNet:
    """ResNet18 (BasicBlock x [2, 2, 2, 2]); 11,689,512 parameters with ``fc`` of 1000."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_outputs, in_channels=in_channels, generator=generator)


def resnet50(
    num_outputs: int = 1000, *, in_channels: int = 3, generator: torch.Generator | None = None
) -> ResNet:
    """ResNet50 (Bottleneck x [3, 4, 6, 3]); 25,557,032 parameters with ``fc`` of 1000."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_outputs, in_channels=in_channels, generator=generator)
