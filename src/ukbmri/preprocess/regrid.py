"""Resampling one station onto the fused output grid (MIMIR's clamped trilinear kernel).

Separable linear interpolation, in float32, of a station array ``(z, y, x)``:
output voxel ``k`` of an axis reads source coordinate ``(k - offset) / scaling``
clamped to the edge (``offset`` and ``scaling`` come from the station's
:class:`~ukbmri.preprocess.fusion.Placement`). An axis whose source coordinates
are within :data:`IDENTITY_TOLERANCE` of the output indices is copied.

* :func:`resample_station` - the whole station on the grid (a new array).
* :class:`StationSlices` - the same values slice by slice along z, computed into a
  one-slice buffer as fusion adds them, so no resampled copy of a station is held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ukbmri.preprocess.fusion import Placement

__all__ = ["IDENTITY_TOLERANCE", "StationSlices", "resample_station"]

#: Source coordinates this close (voxels) to the output indices are copied, not interpolated.
IDENTITY_TOLERANCE = 1e-6


def _axis_weights(n_in: int, n_out: int, offset: float, scaling: float):
    """Indices and weights of MIMIR's clamped linear interpolation along one axis (None: identity)."""
    k = np.arange(n_out, dtype=np.float64)
    a = (k - offset) / scaling
    if n_out == n_in and np.max(np.abs(a - k)) <= IDENTITY_TOLERANCE:
        return None
    i0 = np.trunc(a).astype(np.int64)
    i1 = i0 + 1
    a = np.clip(a, 0, n_in - 1)
    i0 = np.clip(i0, 0, n_in - 1)
    i1 = np.clip(i1, 0, n_in - 1)
    d = a - i0
    d[i0 == i1] = 0.0  # clamped: exactly the edge value
    return i0, i1, (1.0 - d).astype(np.float32), d.astype(np.float32)


def _z_slice(data: np.ndarray, k: int, weights, add: bool, out: np.ndarray, tmp: np.ndarray) -> None:
    """Output slice ``k`` along z into ``out``: ``data[i0[k]] * w0[k] (+ data[i1[k]] * w1[k])``."""
    i0, i1, w0, w1 = weights
    np.multiply(data[i0[k]], w0[k], out=out)
    if add:  # for every slice when any weight is non-zero (adding 0.0 turns -0.0 into 0.0)
        np.multiply(data[i1[k]], w1[k], out=tmp)
        out += tmp


def _interp_axis(data: np.ndarray, axis: int, weights) -> np.ndarray:
    """Linear interpolation along ``axis``: ``data[i0] * w0 + data[i1] * w1`` in float32.

    Along axis 0 (z, the axis resampled in practice) slice by slice: no gathered copies
    of the whole station, the same float32 operations in the same order.
    """
    i0, i1, w0, w1 = weights
    add = bool(np.any(w1 != 0))
    if axis == 0:
        out = np.empty((len(i0), *data.shape[1:]), dtype=np.result_type(data.dtype, np.float32))
        tmp = np.empty(data.shape[1:], dtype=out.dtype)
        for k in range(len(i0)):
            _z_slice(data, k, weights, add, out[k], tmp)
        return out
    shape = [1, 1, 1]
    shape[axis] = -1
    out = np.take(data, i0, axis=axis)
    out *= w0.reshape(shape)
    if add:
        part = np.take(data, i1, axis=axis)
        part *= w1.reshape(shape)
        out += part
    return out


def resample_station(data: np.ndarray, placement: Placement) -> np.ndarray:
    """A station array ``(z, y, x)`` on the output grid (``placement.size``), float32.

    Returns ``data`` itself when the placement says copy.
    """
    if not placement.resample:
        return data
    out = data
    # in-plane axes first (usually identity), then z
    for axis in (2, 1, 0):
        wts = _axis_weights(data.shape[axis], placement.size[axis], placement.offset[axis], placement.scaling[axis])
        if wts is not None:
            out = _interp_axis(out, axis, wts)
    if out is data:
        out = data.astype(np.float32, copy=True)
    return out


class StationSlices:
    """A station's trimmed slices on the output grid, resampled in z one slice at a time.

    The same float32 operations as :func:`resample_station` (in-plane axes first, then
    z slice by slice as :func:`_interp_axis` does), but a z-resampled slice is computed
    into a reusable one-slice buffer when it is added into the fused volume: no
    resampled copy of the whole station is held. Slices whose mean the overlap
    correction needs are computed once and kept until they are added.
    """

    def __init__(self, data: np.ndarray, placement: Placement, cut: int, n: int) -> None:
        self.cut, self.n, self.z_weights = cut, n, None
        if placement.resample:
            size, offset, scaling = placement.size, placement.offset, placement.scaling
            for axis in (2, 1):  # in-plane axes first (usually identity), as resample_station
                wts = _axis_weights(data.shape[axis], size[axis], offset[axis], scaling[axis])
                if wts is not None:
                    data = _interp_axis(data, axis, wts)
            self.z_weights = _axis_weights(data.shape[0], size[0], offset[0], scaling[0])
            if self.z_weights is None:
                data = data.astype(np.float32, copy=False)
        self.data = data
        self.shape = (n, *data.shape[1:])
        if self.z_weights is not None:
            dtype = np.result_type(data.dtype, np.float32)
            self._buf = np.empty(data.shape[1:], dtype=dtype)
            self._tmp = np.empty(data.shape[1:], dtype=dtype)
            self._add = bool(np.any(self.z_weights[3] != 0))
        self._kept: dict[int, np.ndarray] = {}

    @property
    def is_view(self) -> bool:
        """Slices are views of the station (copied, not resampled in z)."""
        return self.z_weights is None

    def block(self, k: int, e: int) -> np.ndarray:
        """Slices ``[k, e)`` as a view (only when :attr:`is_view`)."""
        return self.data[self.cut + k : self.cut + e]

    def slice(self, k: int, keep: bool = False) -> np.ndarray:
        """Slice ``k``: a view, a kept slice, or the shared buffer (valid until the next call)."""
        if self.z_weights is None:
            return self.data[self.cut + k]
        got = self._kept.pop(k, None) if not keep else self._kept.get(k)
        if got is not None:
            return got
        out = self._buf
        _z_slice(self.data, self.cut + k, self.z_weights, self._add, out, self._tmp)
        if keep:
            out = self._kept[k] = out.copy()
        return out
