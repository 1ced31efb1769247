"""A small CNN for the MIMIR 2D format that trains on a laptop CPU.

Input: ``(B, 3, 256, 256)`` float tensors holding the uint8 values 0..255
unscaled, exactly what MIMIR's ResNet50 receives; the network divides by 255
itself, so the same images and the same inference code serve both.

Layout (about 0.4 M parameters, ~0.16 GMAC per image vs ~5.4 for ResNet50)::

    stem   conv5x5/2 (3->24) BN ReLU, maxpool 2          -> 24 x 64 x 64
    block  conv3x3 (24->48) BN ReLU, maxpool 2           -> 48 x 32 x 32
    block  conv3x3 (48->96) BN ReLU, maxpool 2           -> 96 x 16 x 16
    block  conv3x3 (96->128) BN ReLU, maxpool 2          -> 128 x 8 x 8
    block  conv3x3 (128->192) BN ReLU                    -> 192 x 8 x 8
    global average pool, dropout, fc Linear(192, num_outputs)

Body-composition targets are close to sums of intensity over body regions,
which global average pooling of a shallow feature stack represents well.
"""

from __future__ import annotations

import torch
from torch import nn

from ukbmri.models.resnet import init_resnet_

__all__ = ["SmallCNN", "smallcnn"]

#: (in, out, pool after) for the blocks after the stem
_BLOCKS: tuple[tuple[int, int, bool], ...] = (
    (24, 48, True),
    (48, 96, True),
    (96, 128, True),
    (128, 192, False),
)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """Small regression CNN; ``fc`` has ``num_outputs`` (``2T``) outputs.

    Parameters
    ----------
    num_outputs:
        Width of the linear head.
    in_channels:
        Image channels (3 for the MIMIR 2D format).
    dropout:
        Dropout probability before ``fc`` (active in training mode only).
    generator:
        Optional ``torch.Generator`` for a reproducible initialisation.
    """

    #: the network scales its input by this factor (uint8 0..255 -> 0..1)
    input_scale: float = 1.0 / 255.0

    def __init__(
        self,
        num_outputs: int,
        *,
        in_channels: int = 3,
        dropout: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn_relu(in_channels, _BLOCKS[0][0], 5, stride=2)]
        layers.append(nn.MaxPool2d(2))
        for cin, cout, pool in _BLOCKS:
            layers.extend(_conv_bn_relu(cin, cout, 3))
            if pool:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(_BLOCKS[-1][1], num_outputs)
        init_resnet_(self, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x * self.input_scale)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def smallcnn(
    num_outputs: int, *, in_channels: int = 3, generator: torch.Generator | None = None
) -> SmallCNN:
    """Build a :class:`SmallCNN` with the default dropout."""
    return SmallCNN(num_outputs, in_channels=in_channels, generator=generator)
