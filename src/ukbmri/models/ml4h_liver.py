"""The ml4h liver-fat teacher and student networks in PyTorch.

Layer for layer the Keras models of the published diagrams
(``ml4h_liver_teacher_architecture.png`` / ``..._student_...``): 2D
convolutions with the echoes (teacher) or echoes x dynamics (student) as
channels, "same" padding, ReLU, 2x2 max-pooling, densely connected blocks
(each conv after the first sees the concatenation ``[block input, earlier
conv outputs...]``), no batch norm, no dropout, then
``Flatten -> Dense 16 -> ReLU -> Dense 64 ("embed") -> ReLU -> Dense 1``.

Teacher (input ``(B, 10, 160, 160)``; newer ml4h dense block: pool *before*
each block, the block's last output is not concatenated)::

    conv  10->32, pool -> 80x80
    block 1: conv 32->32 | cat 64 -> conv 32 | cat 96 -> conv 32, pool -> 40x40
    block 2: conv 32->24 | cat 56 -> conv 24 | cat 80 -> conv 24, pool -> 20x20
    block 3: conv 24->16 | cat 40 -> conv 16 | cat 56 -> conv 16
    flatten 20*20*16 = 6400

Student (input ``(B, 36, 232, 256)``; older ml4h dense block: the first conv
of each block is followed by the pool, every output is concatenated)::

    conv  36->32
    block 1: conv 32->32, pool -> 116x128 | conv 32 -> cat 64 | conv 32 -> cat 96
    block 2: conv 96->24, pool -> 58x64   | conv 24 -> cat 48 | conv 24 -> cat 72
    block 3: conv 72->16, pool -> 29x32   | conv 16 -> cat 32 | conv 16 -> cat 48
    flatten 29*32*48 = 44,544

With 3x3 kernels the teacher has 215,561 parameters and the student 814,921.
Keras ``Flatten`` flattens channels-last ``(H, W, C)``; :meth:`forward`
permutes to channels-last before flattening, so Keras weights import exactly
(:mod:`ukbmri.models.keras_import`).

Outputs are the standardised liver fat ``y' = (y - 3.91012) / 4.64437``
(ml4h label normalisation): ``(B, 1)``, or ``(B, 2)`` = (mean, log-variance)
with ``mean_variance=True`` (an extra ``Dense 64 -> 1`` head on the embedding).
:func:`liver_fat_percent` and :func:`liver_fat_interval` turn them into %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from ukbmri.preprocess.tensormaps import LIVER_FAT_MEAN, LIVER_FAT_STD

__all__ = [
    "LiverTeacher",
    "LiverStudent",
    "liver_fat_percent",
    "liver_fat_interval",
    "TEACHER_PARAMETERS_3X3",
    "STUDENT_PARAMETERS_3X3",
    "N_CONVS",
]

#: Parameter counts of the published architectures with 3x3 kernels (single output).
TEACHER_PARAMETERS_3X3 = 215_561
STUDENT_PARAMETERS_3X3 = 814_921

_BLOCK_WIDTHS = (32, 24, 16)
_BLOCK_SIZE = 3
_STEM_WIDTH = 32
_DENSE_WIDTHS = (16, 64)


#: Convolutions in either network (stem + 3 dense blocks of 3).
N_CONVS = 1 + len(_BLOCK_WIDTHS) * _BLOCK_SIZE


def _kernel_sizes(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    """One kernel size per convolution (Keras creation order) from an int or a sequence of 10."""
    if isinstance(kernel_size, (int, np.integer)):
        ks = (int(kernel_size),) * N_CONVS
    else:
        ks = tuple(int(k) for k in kernel_size)
    if len(ks) != N_CONVS or any(k < 1 for k in ks):
        raise ValueError(f"kernel_size must be an int >= 1 or {N_CONVS} of them, got {kernel_size!r}")
    return ks


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    # Keras "same" with stride 1: torch pads (k-1)//2 before and the rest after, as TensorFlow does.
    return nn.Conv2d(cin, cout, kernel_size=k, padding="same")


class _TeacherDenseBlock(nn.Module):
    """Newer ml4h dense block: ``conv -> relu``; all but the last output are concatenated."""

    def __init__(self, cin: int, width: int, size: int, k: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(cin + i * width, width, k[i]) for i in range(size))
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        connections = [x]
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            if i < len(self.convs) - 1:
                connections.append(x)
                x = torch.cat(connections, dim=1)
        return x


class _StudentDenseBlock(nn.Module):
    """Older ml4h dense block: ``conv -> relu -> pool``, then ``conv -> relu -> concatenate`` x (size-1)."""

    def __init__(self, cin: int, width: int, size: int, k: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(cin if i == 0 else i * width, width, k[i]) for i in range(size))
        self.pool = nn.MaxPool2d(2)
        self.out_channels = size * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.convs[0](x)))
        connections = [x]
        for conv in self.convs[1:]:
            x = torch.relu(conv(x))
            connections.append(x)
            x = torch.cat(connections, dim=1)
        return x


class _LiverNet(nn.Module):
    """Shared head: flatten channels-last -> 16 -> 64 (embed) -> 1 (+ log-variance)."""

    kind = ""

    def _make_head(self, flat: int, mean_variance: bool) -> None:
        self.flat_features = flat
        self.mean_variance = mean_variance
        self.dense = nn.Linear(flat, _DENSE_WIDTHS[0])
        self.embed_layer = nn.Linear(_DENSE_WIDTHS[0], _DENSE_WIDTHS[1])
        self.output_layer = nn.Linear(_DENSE_WIDTHS[1], 1)
        self.logvar_layer = nn.Linear(_DENSE_WIDTHS[1], 1) if mean_variance else None

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__} expects (B, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 64-wide ``embed`` activations (after ReLU), ``(B, 64)``."""
        self._check_input(x)
        f = self.features(x)
        f = f.permute(0, 2, 3, 1).reshape(f.shape[0], -1)  # Keras Flatten is channels-last
        h = torch.relu(self.dense(f))
        return torch.relu(self.embed_layer(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1)`` standardised liver fat, or ``(B, 2)`` (mean, log-variance)."""
        e = self.embed(x)
        out = self.output_layer(e)
        if self.logvar_layer is not None:
            out = torch.cat([out, self.logvar_layer(e)], dim=1)
        return out

    def _set_kernels(self, kernel_size: int | Sequence[int]) -> tuple[int, ...]:
        ks = _kernel_sizes(kernel_size)
        self.kernel_sizes = ks
        #: an int when every convolution has the same kernel, else one per convolution
        self.kernel_size: int | tuple[int, ...] = ks[0] if len(set(ks)) == 1 else ks
        return ks

    def conv_layers(self) -> list[nn.Conv2d]:
        """Convolutions in Keras creation order (``conv2d``, ``conv2d_1``, ...)."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]

    def dense_layers(self) -> list[nn.Linear]:
        """``dense``, ``embed``, output: the Keras Dense layers in order (not the log-variance head)."""
        return [self.dense, self.embed_layer, self.output_layer]

    def architecture(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(layer, weight shape in Keras layout)`` for every weighted layer in order."""
        rows = [
            (f"conv2d_{i}" if i else "conv2d", (c.kernel_size[0], c.kernel_size[1], c.in_channels, c.out_channels))
            for i, c in enumerate(self.conv_layers())
        ]
        names = ("dense", "embed", "output")
        rows += [(n, (d.in_features, d.out_features)) for n, d in zip(names, self.dense_layers(), strict=True)]
        return rows


class LiverTeacher(_LiverNet):
    """ml4h liver-fat teacher: 20203 multi-echo GRE ``(B, 10, 160, 160)`` -> liver fat.

    Parameters
    ----------
    in_channels:
        Echoes (10 for ``gre_mullti_echo_10_te_liver``).
    mean_variance:
        Add a log-variance output (``forward`` returns ``(B, 2)``).
    kernel_size:
        Convolution kernel (3 in the ml4h defaults of the time; not shown in the diagram),
        or one size per convolution in Keras creation order (ml4h allows one per block).
    input_hw:
        Image size; the Flatten width follows (6400 at 160 x 160).
    """

    kind = "teacher"

    def __init__(
        self,
        in_channels: int = 10,
        mean_variance: bool = False,
        *,
        kernel_size: int | Sequence[int] = 3,
        input_hw: tuple[int, int] = (160, 160),
    ) -> None:
        super().__init__()
        self.input_shape = (int(in_channels), int(input_hw[0]), int(input_hw[1]))
        ks = self._set_kernels(kernel_size)
        self.stem = _conv(in_channels, _STEM_WIDTH, ks[0])
        self.pool = nn.MaxPool2d(2)
        blocks, cin = [], _STEM_WIDTH
        for b, w in enumerate(_BLOCK_WIDTHS):
            blocks.append(_TeacherDenseBlock(cin, w, _BLOCK_SIZE, ks[1 + b * _BLOCK_SIZE :]))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        h, w_ = input_hw
        for _ in _BLOCK_WIDTHS:
            h, w_ = h // 2, w_ // 2
        self._make_head(h * w_ * cin, mean_variance)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for block in self.blocks:
            x = block(self.pool(x))
        return x


class LiverStudent(_LiverNet):
    """ml4h liver-fat student: 20254 IDEAL ``(B, 36, 232, 256)`` -> liver fat.

    Parameters as :class:`LiverTeacher` (36 channels = 6 echoes x 6 dynamics,
    Flatten 44,544 at 232 x 256).
    """

    kind = "student"

    def __init__(
        self,
        in_channels: int = 36,
        mean_variance: bool = False,
        *,
        kernel_size: int | Sequence[int] = 3,
        input_hw: tuple[int, int] = (232, 256),
    ) -> None:
        super().__init__()
        self.input_shape = (int(in_channels), int(input_hw[0]), int(input_hw[1]))
        ks = self._set_kernels(kernel_size)
        self.stem = _conv(in_channels, _STEM_WIDTH, ks[0])
        blocks, cin = [], _STEM_WIDTH
        for b, w in enumerate(_BLOCK_WIDTHS):
            block = _StudentDenseBlock(cin, w, _BLOCK_SIZE, ks[1 + b * _BLOCK_SIZE :])
            blocks.append(block)
            cin = block.out_channels
        self.blocks = nn.ModuleList(blocks)
        h, w_ = input_hw
        for _ in _BLOCK_WIDTHS:
            h, w_ = h // 2, w_ // 2
        self._make_head(h * w_ * cin, mean_variance)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return x


# --------------------------------------------------------------------------- outputs in %
def liver_fat_percent(out: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Network output -> (liver fat %, variance in %^2 or ``None``).

    ``out`` is ``(B, 1)`` (point prediction) or ``(B, 2)`` (mean, log-variance),
    both in standardised units.
    """
    a = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    a = a.astype(np.float64).reshape(a.shape[0], -1)
    mean = a[:, 0] * LIVER_FAT_STD + LIVER_FAT_MEAN
    if a.shape[1] == 1:
        return mean, None
    if a.shape[1] != 2:
        raise ValueError(f"expected (B, 1) or (B, 2) output, got {a.shape}")
    var = np.exp(a[:, 1]) * LIVER_FAT_STD**2
    return mean, var


def liver_fat_interval(
    mean_percent: Sequence[float] | np.ndarray,
    var_percent: Sequence[float] | np.ndarray,
    level: float = 0.95,
    *,
    clip: tuple[float, float] | None = (0.0, 100.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Central normal interval ``mean -/+ z * sd`` in %, clipped to the valid range 0..100 by default."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = np.asarray(mean_percent, dtype=np.float64)
    sd = np.sqrt(np.asarray(var_percent, dtype=np.float64))
    z = norm.ppf(0.5 + level / 2.0)
    lo, hi = m - z * sd, m + z * sd
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    return lo, hi
