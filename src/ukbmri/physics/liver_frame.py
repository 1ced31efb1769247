"""A patient-oriented frame for one axial slice, and the liver localiser's input channels.

The liver localiser (:mod:`ukbmri.physics.liver_locate`) sees every slice the same way,
whatever its matrix, pixel size or storage orientation: a square grid of ``GRID`` x
``GRID`` pixels of ``PIXEL_MM`` mm centred on the body's centroid, its first axis running
from the patient's right to the patient's left and its second from anterior to posterior.
:class:`SliceFrame` holds that mapping (an affine from frame to index coordinates) and
resamples arrays both ways with :func:`scipy.ndimage.map_coordinates`.

The input channels are the whole-slice fat-water maps, which mean the same on any protocol
(GRE or IDEAL echo trains, 1.5 or 3 T) and do not depend on the scanner's gain:

0. proton density ``|W| + |F|`` relative to the 90th percentile inside the body (clipped 0-2);
   it stays smooth where a noisy fatty liver's fat fraction flips between voxels;
1. fat fraction / 100 (clipped 0-1);
2. ``log(R2* / 40 /s) / 3`` (clipped -1.5-1.5);
3. the body mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["SliceFrame", "GRID", "PIXEL_MM", "N_CHANNELS", "slice_channels", "default_posterior"]

#: frame size (pixels) and pixel size (mm): 384 mm, wider than an abdomen
GRID = 128
PIXEL_MM = 3.0
N_CHANNELS = 4


def default_posterior(right: np.ndarray) -> np.ndarray:
    """Posterior when only the patient's right is known: perpendicular to it, along + index.

    Axial images are shown with the anterior side up: for ``(x, y)`` arrays (x across, y
    down) and for ``(row, column)`` arrays shown first axis down (the ISMRM toolbox) the
    posterior is the positive direction of the axis that does not run right-left.
    """
    r = np.asarray(right, dtype=float)
    p = np.array([-r[1], r[0]])
    return p if p[int(np.argmax(np.abs(p)))] > 0 else -p


@dataclass(frozen=True)
class SliceFrame:
    """Affine map from frame pixels ``(i, j)`` to index coordinates ``(x, y)`` of one slice.

    ``index = offset + matrix @ (i, j)``; ``shape`` is the slice's ``(x, y)`` shape.
    """

    matrix: np.ndarray  # (2, 2)
    offset: np.ndarray  # (2,)
    shape: tuple[int, int]

    @classmethod
    def build(cls, body: np.ndarray, spacing_mm: tuple[float, float], right: np.ndarray,
              posterior: np.ndarray | None = None, *, rotation_rad: float = 0.0, scale: float = 1.0,
              shift_mm: tuple[float, float] = (0.0, 0.0)) -> "SliceFrame":
        """Frame centred on ``body``'s centroid; ``right`` / ``posterior``: index-space directions.

        ``rotation_rad``, ``scale`` and ``shift_mm`` perturb the frame (training augmentation).
        """
        sx, sy = (float(v) for v in spacing_mm)
        cx, cy = ndi.center_of_mass(np.asarray(body, dtype=bool))
        post = default_posterior(right) if posterior is None else np.asarray(posterior, dtype=float)

        def mm_unit(d):  # index-space direction -> unit vector in mm space
            v = np.array([d[0] * sx, d[1] * sy], dtype=float)
            return v / max(np.linalg.norm(v), 1e-12)

        left_mm = -mm_unit(np.asarray(right, dtype=float))
        post_mm = mm_unit(post)
        c, s = np.cos(rotation_rad), np.sin(rotation_rad)
        rot = np.array([[c, -s], [s, c]])
        axes_mm = np.stack([left_mm, post_mm], axis=1) @ rot * (PIXEL_MM * scale)  # columns: per frame pixel
        matrix = axes_mm / np.array([[sx], [sy]])
        centre = (GRID - 1) / 2.0
        offset = np.array([cx + shift_mm[0] / sx, cy + shift_mm[1] / sy]) - matrix @ np.array([centre, centre])
        return cls(matrix=matrix, offset=offset, shape=tuple(int(v) for v in np.asarray(body).shape))

    def to_frame(self, a: np.ndarray, *, order: int = 1, cval: float = 0.0) -> np.ndarray:
        """Resample a slice array ``(x, y)``, or a stack ``(C, x, y)``, onto the frame ``(GRID, GRID)``."""
        a = np.asarray(a, dtype=np.float32)
        i, j = np.meshgrid(np.arange(GRID, dtype=float), np.arange(GRID, dtype=float), indexing="ij")
        xy = self.matrix @ np.stack([i.ravel(), j.ravel()]) + self.offset[:, None]  # once for every channel
        out = [ndi.map_coordinates(c, xy, order=order, mode="constant", cval=cval).reshape(GRID, GRID)
               for c in (a if a.ndim == 3 else a[None])]
        return np.stack(out) if a.ndim == 3 else out[0]

    def from_frame(self, a: np.ndarray, *, order: int = 1, cval: float = 0.0) -> np.ndarray:
        """Resample a frame array ``(GRID, GRID)`` back onto the slice ``(x, y)``."""
        x, y = np.meshgrid(np.arange(self.shape[0], dtype=float), np.arange(self.shape[1], dtype=float),
                           indexing="ij")
        ij = np.linalg.solve(self.matrix, np.stack([x.ravel(), y.ravel()]) - self.offset[:, None])
        out = ndi.map_coordinates(np.asarray(a, dtype=np.float32), ij, order=order, mode="constant", cval=cval)
        return out.reshape(self.shape)


def slice_channels(water: np.ndarray, fat: np.ndarray, ff_percent: np.ndarray, r2star: np.ndarray,
                   body: np.ndarray) -> np.ndarray:
    """The localiser's ``(N_CHANNELS, x, y)`` float32 input channels on the slice's own grid."""
    body = np.asarray(body, dtype=bool)
    pd = np.abs(np.nan_to_num(np.asarray(water, dtype=float))) + np.abs(np.nan_to_num(np.asarray(fat, dtype=float)))
    ref = float(np.percentile(pd[body], 90)) if body.sum() > 10 else float(pd.max())
    pd = np.clip(pd / max(ref, 1e-12), 0.0, 2.0)
    ff = np.clip(np.nan_to_num(np.asarray(ff_percent, dtype=float)) / 100.0, 0.0, 1.0)
    r2 = np.asarray(r2star, dtype=float)
    lr = np.where(np.isfinite(r2) & (r2 > 0), np.log(np.clip(r2, 1e-3, None) / 40.0) / 3.0, 0.0)
    lr = np.clip(lr, -1.5, 1.5)
    return np.stack([pd * body, ff * body, lr * body, body.astype(float)]).astype(np.float32)
