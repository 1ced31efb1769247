"""Analytic solids and the label painter of the phantom.

Solids are defined in patient LPS millimetres (x = left, y = posterior,
z = superior) and answer ``inside(x, y, z)`` for coordinate arrays that
broadcast against each other: either three ``(n,)`` arrays (arbitrary
points) or ``(1, 1, nx)``, ``(1, ny, 1)``, ``(nz, 1, 1)`` (an axial grid,
which keeps elliptic tubes separable and cheap).

A phantom is a *painting program*: a list of :class:`Paint` steps applied in
order, each writing its label where the solid contains the point (and,
optionally, only over some earlier labels), plus :class:`Split` steps that
divide one label into two by a smooth 3D texture (visceral fat versus bowel).
The same program is evaluated at arbitrary points (:meth:`Program.labels_points`)
or on an axial grid restricted to each solid's bounding box
(:meth:`Program.labels_grid`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EllipticTube",
    "Ellipsoid",
    "Capsule",
    "Box",
    "Texture",
    "Paint",
    "Split",
    "Program",
]

_TINY = 1e-6


@dataclass(frozen=True, eq=False)
class EllipticTube:
    """Elliptic cross-sections whose centre and semi-axes vary piecewise-linearly in z.

    ``z`` knots ascending; ``cx, cy, a, b`` per knot (mm). Outside ``[z[0], z[-1]]``
    and where a semi-axis is 0 the tube is empty.
    """

    z: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def at(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(cx, cy, a, b) at heights ``z`` (a = b = 0 outside the tube)."""
        zz = np.asarray(z, dtype=np.float64)
        out = zz < self.z[0]
        out |= zz > self.z[-1]
        a = np.interp(zz, self.z, self.a)
        b = np.interp(zz, self.z, self.b)
        a = np.where(out, 0.0, a)
        b = np.where(out, 0.0, b)
        return np.interp(zz, self.z, self.cx), np.interp(zz, self.z, self.cy), a, b

    def area(self, z: np.ndarray) -> np.ndarray:
        _, _, a, b = self.at(z)
        return np.pi * a * b

    def clip(self, z0: float, z1: float) -> EllipticTube:
        """The part of the tube between heights ``z0`` and ``z1`` (end knots interpolated)."""
        z0, z1 = max(z0, float(self.z[0])), min(z1, float(self.z[-1]))
        inner = (self.z > z0) & (self.z < z1)
        zk = np.concatenate([[z0], self.z[inner], [z1]])
        return EllipticTube(
            zk,
            np.interp(zk, self.z, self.cx),
            np.interp(zk, self.z, self.cy),
            np.interp(zk, self.z, self.a),
            np.interp(zk, self.z, self.b),
        )

    def inside(self, x, y, z) -> np.ndarray:
        cx, cy, a, b = self.at(z)
        u = (x - cx) / np.maximum(a, _TINY)
        v = (y - cy) / np.maximum(b, _TINY)
        return (u * u + v * v <= 1.0) & (a > 0) & (b > 0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([np.min(self.cx - self.a), np.min(self.cy - self.b), self.z[0]])
        hi = np.array([np.max(self.cx + self.a), np.max(self.cy + self.b), self.z[-1]])
        return lo, hi


@dataclass(frozen=True, eq=False)
class Ellipsoid:
    """Ellipsoid with semi-axes (a, b, c) along x, y, z, rotated by ``angle_deg`` about z."""

    center: tuple[float, float, float]
    axes: tuple[float, float, float]
    angle_deg: float = 0.0

    def inside(self, x, y, z) -> np.ndarray:
        cx, cy, cz = self.center
        a, b, c = self.axes
        dx = x - cx
        dy = y - cy
        if self.angle_deg:
            t = np.deg2rad(self.angle_deg)
            ct, st = np.cos(t), np.sin(t)
            dx, dy = ct * dx + st * dy, -st * dx + ct * dy
        dz = (z - cz) / c
        return (dx / a) ** 2 + (dy / b) ** 2 + dz * dz <= 1.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        a, b, c = self.axes
        r = max(a, b) if self.angle_deg else None
        ext = np.array([r if r else a, r if r else b, c])
        ctr = np.asarray(self.center, dtype=float)
        return ctr - ext, ctr + ext

    @property
    def volume_mm3(self) -> float:
        a, b, c = self.axes
        return 4.0 / 3.0 * np.pi * a * b * c


@dataclass(frozen=True, eq=False)
class Capsule:
    """Points within ``radius`` of the segment p0-p1 (vessels, long bones)."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    radius: float

    def inside(self, x, y, z) -> np.ndarray:
        p0 = np.asarray(self.p0, dtype=float)
        d = np.asarray(self.p1, dtype=float) - p0
        dd = float(d @ d)
        rx, ry, rz = x - p0[0], y - p0[1], z - p0[2]
        t = np.clip((rx * d[0] + ry * d[1] + rz * d[2]) / dd, 0.0, 1.0)
        ex, ey, ez = rx - t * d[0], ry - t * d[1], rz - t * d[2]
        return ex * ex + ey * ey + ez * ez <= self.radius**2

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        p = np.array([self.p0, self.p1], dtype=float)
        return p.min(axis=0) - self.radius, p.max(axis=0) + self.radius


@dataclass(frozen=True, eq=False)
class Box:
    """Axis-aligned box (the scanner bed)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def inside(self, x, y, z) -> np.ndarray:
        (x0, y0, z0), (x1, y1, z1) = self.lo, self.hi
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.lo, dtype=float), np.asarray(self.hi, dtype=float)


@dataclass(frozen=True, eq=False)
class Texture:
    """Smooth random 3D field: a normalised sum of plane waves plus a linear trend.

    ``waves`` rows are (kx, ky, kz, phase) with k in radians/mm. The sum has
    zero mean and unit variance over space; ``trend`` (per mm, along x, y, z)
    biases it (e.g. more visceral fat anteriorly).
    """

    waves: np.ndarray  #: (n, 4)
    trend: tuple[float, float, float] = (0.0, 0.0, 0.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __call__(self, x, y, z) -> np.ndarray:
        w = self.waves
        acc = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=np.float32)
        for kx, ky, kz, ph in w:
            acc += np.cos(kx * x + ky * y + kz * z + ph).astype(np.float32, copy=False)
        acc *= np.float32(np.sqrt(2.0 / len(w)))
        ox, oy, oz = self.origin
        tx, ty, tz = self.trend
        if tx or ty or tz:
            acc += (tx * (x - ox) + ty * (y - oy) + tz * (z - oz)).astype(np.float32)
        return acc


@dataclass(frozen=True, eq=False)
class Paint:
    """Write ``label`` inside ``shape``; only over the labels in ``over`` if given."""

    shape: object
    label: int
    over: tuple[int, ...] | None = None


@dataclass(frozen=True, eq=False)
class Split:
    """Relabel points of ``source``: ``high`` where texture > threshold(z), else ``low``.

    ``z_thresholds`` are (z knots, threshold values), interpolated linearly.
    Points of ``source`` outside ``z_range`` become ``outside``.
    """

    source: int
    texture: Texture
    z_knots: np.ndarray
    thresholds: np.ndarray
    high: int
    low: int
    z_range: tuple[float, float]
    outside: int


@dataclass(frozen=True, eq=False)
class Program:
    """An ordered painting program producing a uint8 label at any point."""

    steps: tuple = field(default_factory=tuple)
    n_labels: int = 256

    # -- arbitrary points ------------------------------------------------
    def labels_points(self, x, y, z) -> np.ndarray:
        """Labels at points given as three equal-length 1D arrays (mm)."""
        x = np.asarray(x, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        z = np.asarray(z, dtype=np.float64).ravel()
        lab = np.zeros(x.shape, dtype=np.uint8)
        for step in self.steps:
            if isinstance(step, Split):
                idx = np.flatnonzero(lab == step.source)
                if idx.size:
                    lab[idx] = _split_values(step, x[idx], y[idx], z[idx])
                continue
            lo, hi = step.shape.bounds()
            sel = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
            idx = np.flatnonzero(sel)
            if not idx.size:
                continue
            m = step.shape.inside(x[idx], y[idx], z[idx])
            if step.over is not None:
                m &= self._over_lut(step.over)[lab[idx]]
            lab[idx[m]] = step.label
        return lab

    # -- axial grids -----------------------------------------------------
    def labels_grid(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Labels on the grid ``x`` (columns) x ``y`` (rows) x ``z`` (slices).

        Returns ``(len(z), len(y), len(x))`` uint8. The coordinate vectors must
        each be strictly monotonic (ascending or descending).
        """
        xs, ix_order = _ascending(np.asarray(x, dtype=np.float64))
        ys, iy_order = _ascending(np.asarray(y, dtype=np.float64))
        zs, iz_order = _ascending(np.asarray(z, dtype=np.float64))
        lab = np.zeros((zs.size, ys.size, xs.size), dtype=np.uint8)
        for step in self.steps:
            if isinstance(step, Split):
                iz, iy, ix = np.nonzero(lab == step.source)
                if iz.size:
                    lab[iz, iy, ix] = _split_values(step, xs[ix], ys[iy], zs[iz])
                continue
            lo, hi = step.shape.bounds()
            sx = _index_range(xs, lo[0], hi[0])
            sy = _index_range(ys, lo[1], hi[1])
            sz = _index_range(zs, lo[2], hi[2])
            if sx is None or sy is None or sz is None:
                continue
            sub = lab[sz, sy, sx]
            m = step.shape.inside(xs[sx][None, None, :], ys[sy][None, :, None], zs[sz][:, None, None])
            m = np.broadcast_to(m, sub.shape)
            if step.over is not None:
                m = m & self._over_lut(step.over)[sub]
            sub[m] = step.label
        if ix_order is not None:
            lab = lab[:, :, ::-1]
        if iy_order is not None:
            lab = lab[:, ::-1, :]
        if iz_order is not None:
            lab = lab[::-1]
        return np.ascontiguousarray(lab)

    def _over_lut(self, over: tuple[int, ...]) -> np.ndarray:
        lut = np.zeros(256, dtype=bool)
        lut[list(over)] = True
        return lut


def _split_values(step: Split, x, y, z) -> np.ndarray:
    t = step.texture(x, y, z)
    thr = np.interp(z, step.z_knots, step.thresholds).astype(np.float32)
    out = np.where(t > thr, step.high, step.low).astype(np.uint8)
    z0, z1 = step.z_range
    out[(z < z0) | (z > z1)] = step.outside
    return out


def _ascending(v: np.ndarray) -> tuple[np.ndarray, bool | None]:
    if v.size > 1 and v[0] > v[-1]:
        return v[::-1], True
    return v, None


def _index_range(v: np.ndarray, lo: float, hi: float) -> slice | None:
    i0 = int(np.searchsorted(v, lo, side="left"))
    i1 = int(np.searchsorted(v, hi, side="right"))
    return slice(i0, i1) if i1 > i0 else None
