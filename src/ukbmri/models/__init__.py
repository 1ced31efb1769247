"""Network backbones for the MIMIR 2D format (and helpers to pick a device).

``build_backbone(name, num_outputs)`` returns a network whose linear head is
called ``fc`` (as in torchvision), mapping a ``(B, 3, 256, 256)`` float
tensor of uint8 values 0..255 to ``(B, num_outputs)``.

=========  ===================================================  ===========
name       what                                                  parameters
=========  ===================================================  ===========
resnet50   torchvision ResNet50 layout (published MIMIR modules)  ~23.5 M
resnet18   torchvision ResNet18 layout                            ~11.2 M
smallcnn   :class:`~ukbmri.models.smallcnn.SmallCNN`, CPU-trainable ~0.4 M
=========  ===================================================  ===========
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ukbmri.models.heads import split_mean_logvar
from ukbmri.models.resnet import ResNet, resnet18, resnet50
from ukbmri.models.smallcnn import SmallCNN, smallcnn

__all__ = [
    "BACKBONES",
    "build_backbone",
    "split_mean_logvar",
    "resolve_device",
    "ResNet",
    "SmallCNN",
    "resnet18",
    "resnet50",
    "smallcnn",
]

#: backbone name -> constructor ``(num_outputs, *, in_channels, generator) -> nn.Module``
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet50": resnet50,
    "resnet18": resnet18,
    "smallcnn": smallcnn,
}


def build_backbone(
    name: str,
    num_outputs: int,
    *,
    in_channels: int = 3,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build a freshly initialised backbone by name.

    Parameters
    ----------
    name:
        One of :data:`BACKBONES` (``"resnet50"``, ``"resnet18"``, ``"smallcnn"``).
    num_outputs:
        Width of the linear head ``fc`` (``2T`` for T mean-variance targets).
    in_channels:
        Input image channels.
    generator:
        Optional ``torch.Generator``: all weights are drawn from it.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the choices) or ``num_outputs < 1``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(sorted(BACKBONES))}")
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    return BACKBONES[name](num_outputs, in_channels=in_channels, generator=generator)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` (or ``None``) -> ``cuda`` when available, else ``cpu``; others unchanged."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
