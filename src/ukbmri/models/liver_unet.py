"""A small 2D U-Net that marks the liver on one axial slice (the liver localiser's network).

Input ``(B, C, 128, 128)`` (the patient-oriented frame of :mod:`ukbmri.physics.liver_frame`),
output ``(B, 1, 128, 128)`` logits of "liver parenchyma". Four resolution levels
(``width``, 2x, 4x, 8x channels; two 3x3 convolution + batch norm + ReLU per level, max
pooling down, transposed convolution up, skip connections), about 0.3 M parameters at
``width=12``; the deepest level sees about 140 mm, enough for the liver's context (body
wall, spine, kidney).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LiverUNet"]


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class LiverUNet(nn.Module):
    """U-Net with ``levels`` resolutions; ``in_channels`` inputs, one logit channel out."""

    def __init__(self, in_channels: int = 4, width: int = 12, levels: int = 4) -> None:
        super().__init__()
        chans = [width * 2 ** k for k in range(levels)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(_double(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c_hi, c_lo in zip(chans[::-1][:-1], chans[::-1][1:]):
            self.up.append(nn.ConvTranspose2d(c_hi, c_lo, 2, stride=2))
            self.merge.append(_double(2 * c_lo, c_lo))
        self.head = nn.Conv2d(chans[0], 1, 1)
        self.config = {"in_channels": in_channels, "width": width, "levels": levels}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, block in enumerate(self.down):
            x = block(x)
            if k < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, merge, skip in zip(self.up, self.merge, skips[::-1]):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)
