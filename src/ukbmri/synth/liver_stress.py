"""Domain-randomised single-slice liver phantoms (stress and held-out tests of the liver ROI).

:func:`stress_case` draws one axial upper-abdomen slice straight into a
:class:`~ukbmri.physics.multiecho.MultiEcho` (complex, with geometry) and its truth, with
everything the real world varies: liver shape, size and position; organs touching the
liver (kidney, gallbladder, stomach, spleen, IVC / aorta); paraspinal and abdominal-wall
muscle; subcutaneous fat of any thickness; body width and depth; liver PDFF 0-50 %, R2*
20-500 /s; noise x0.5-3; smooth B0 and initial-phase fields; coil shading. All randomness
comes from the ``rng`` argument.

Two generator **variants** with different shape families and contrasts:

* ``"train"``: ellipse unions for the body and organs, quadratic B0, AP/LR coil shading.
  Use it for development and tuning.
* ``"heldout"``: star-shaped organs (random polar Fourier contours), superellipse body,
  random low-frequency Fourier B0 / phase fields, surface-coil hot spots, other tissue
  proton densities and R2*, partial-volume (2x2 sub-voxel) sampling. Never tune on it:
  the accuracy tests use it.

The image axes follow the UK Biobank DICOM convention of :mod:`ukbmri.physics.multiecho`:
``x`` runs towards the patient's left (the patient's right is at low ``x``), ``y`` from
anterior to posterior; ``affine_lps`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ukbmri.physics.multiecho import MultiEcho
from ukbmri.physics.spectrum import signal

__all__ = ["StressCase", "stress_case", "VARIANTS", "PROTOCOLS"]

VARIANTS = ("train", "heldout")
#: protocol -> (matrix (x, y), pixel mm, echo times s)
PROTOCOLS = {
    "gre": ((160, 160), 2.5, 2.38e-3 * np.arange(1, 11)),
    "ideal": ((256, 232), 1.71875, 1.2e-3 + 2.0e-3 * np.arange(6)),
}
#: complex noise SD at noise scale 1, relative to a full-proton-density voxel at TE = 0
BASE_SIGMA = 0.02


@dataclass(frozen=True, eq=False)
class StressCase:
    """One phantom slice and its truth."""

    data: MultiEcho
    liver: np.ndarray = field(repr=False)  #: (x, y) bool, liver parenchyma (vessels, IVC, aorta, gallbladder excluded)
    muscle: np.ndarray = field(repr=False)  #: (x, y) bool, skeletal muscle
    pdff_percent: float
    r2star_per_s: float
    noise_scale: float
    variant: str
    protocol: str


def _polar_blob(xx, yy, cx, cy, r, rng, n_harm: int, amp: float, theta0: float = 0.0):
    """Star-shaped region: radius r (1 + sum a_k cos(k (t - p_k))) around (cx, cy)."""
    t = np.arctan2(yy - cy, xx - cx) - theta0
    rad = np.ones_like(t)
    for k in range(2, 2 + n_harm):
        rad += rng.uniform(0, amp) / k * np.cos(k * t - rng.uniform(0, 2 * np.pi))
    return np.hypot(xx - cx, yy - cy) <= r * rad


def _ellipse(xx, yy, cx, cy, a, b, ang=0.0):
    c, s = np.cos(ang), np.sin(ang)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _smooth_field(xx, yy, rng, scale_mm: float, n: int = 6) -> np.ndarray:
    """Random low-frequency Fourier field, unit SD-ish."""
    f = np.zeros_like(xx)
    for _ in range(n):
        k = rng.normal(0, 1.0 / scale_mm, size=2)
        f += rng.normal() * np.cos(2 * np.pi * (k[0] * xx + k[1] * yy) + rng.uniform(0, 2 * np.pi))
    return f / np.sqrt(n / 2)


def stress_case(
    rng: np.random.Generator,
    *,
    variant: str = "train",
    protocol: str = "gre",
    pdff_percent: float | None = None,
    r2star_per_s: float | None = None,
    noise_scale: float | None = None,
    field_strength_t: float = 1.5,
    with_liver: bool = True,
) -> StressCase:
    """Draw one randomised liver slice (see the module docstring); unset values are drawn too.

    ``with_liver=False`` leaves the liver out (its place is mixed soft tissue): a slice on
    which a liver ROI must not be reported as a value.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {protocol!r}")
    held = variant == "heldout"
    (nx, ny), px, te = PROTOCOLS[protocol]
    pdff = float(rng.uniform(0.0, 50.0) if pdff_percent is None else pdff_percent)
    r2l = float(np.exp(rng.uniform(np.log(20), np.log(500))) if r2star_per_s is None else r2star_per_s)
    ns = float(rng.uniform(0.5, 3.0) if noise_scale is None else noise_scale)
    sub = 2 if held else 1
    # mm coordinates (x to the patient's left, y posterior), sub-voxel grid
    gx = (np.arange(nx * sub) + 0.5) / sub * px - nx * px / 2
    gy = (np.arange(ny * sub) + 0.5) / sub * px - ny * px / 2
    xx, yy = np.meshgrid(gx, gy, indexing="ij")
    fov_x, fov_y = nx * px / 2, ny * px / 2
    # body habitus
    bw = rng.uniform(0.62, 0.95) * fov_x
    bd = min(rng.uniform(0.55, 0.85) * bw, 0.9 * fov_y)
    by = rng.uniform(-0.08, 0.05) * fov_y
    if held:
        p = rng.uniform(2.2, 3.5)
        body = (np.abs(xx / bw) ** p + np.abs((yy - by) / bd) ** p) <= 1.0
    else:
        body = _ellipse(xx, yy, 0.0, by, bw, bd)
    sat_mm = rng.uniform(5.0, 45.0)
    from scipy import ndimage as ndi

    depth = ndi.distance_transform_edt(body, sampling=px / sub)
    sat = body & (depth < sat_mm)
    inner = body & ~sat
    wall = inner & (depth < sat_mm + rng.uniform(6.0, 14.0))  # abdominal-wall muscle band
    # spine, paraspinal muscles (posterior, either side of the spine)
    spine_y = by + bd - sat_mm - rng.uniform(35, 55)
    vert = _ellipse(xx, yy, 0.0, spine_y, rng.uniform(18, 25), rng.uniform(15, 20))
    pa, pb = rng.uniform(22, 38), rng.uniform(18, 30)
    para = (_ellipse(xx, yy, -pa - 12, spine_y + 12, pa, pb, rng.uniform(-0.4, 0.2))
            | _ellipse(xx, yy, pa + 12, spine_y + 12, pa, pb, rng.uniform(-0.2, 0.4))) & inner
    # liver on the patient's right (negative x), anterior-lateral; size and position vary
    lw = rng.uniform(0.40, 0.62) * bw
    lh = rng.uniform(0.45, 0.80) * bd
    lcx = -bw + sat_mm + lw * rng.uniform(0.95, 1.25)
    lcy = by + rng.uniform(-0.25, 0.15) * bd
    if held:
        liver = _polar_blob(xx, yy, lcx, lcy, 0.5 * (lw + lh), rng, 4, 0.5)
        liver |= _polar_blob(xx, yy, lcx + 0.7 * lw, lcy - 0.3 * lh, rng.uniform(0.2, 0.5) * lh, rng, 3, 0.4)
    else:
        liver = _ellipse(xx, yy, lcx, lcy, lw, lh, rng.uniform(-0.5, 0.5))
        liver |= _ellipse(xx, yy, lcx + 0.8 * lw, lcy - 0.35 * lh, rng.uniform(0.3, 0.7) * lw,
                          rng.uniform(0.25, 0.5) * lh, rng.uniform(-0.5, 0.5))  # left lobe
    liver &= inner & ~wall & ~vert & ~para
    if not with_liver:
        liver = np.zeros_like(liver)
    # touching organs: right kidney (posterior to the liver), gallbladder, stomach, spleen, IVC, aorta
    kid = _ellipse(xx, yy, lcx + rng.uniform(0, 25), spine_y - rng.uniform(0, 20), rng.uniform(25, 40),
                   rng.uniform(18, 30), rng.uniform(-1, 1)) & inner
    gb = _ellipse(xx, yy, lcx + rng.uniform(0.2, 0.7) * lw, lcy + rng.uniform(0.0, 0.6) * lh,
                  rng.uniform(10, 22), rng.uniform(8, 16), rng.uniform(0, 3)) & liver
    stom = _ellipse(xx, yy, rng.uniform(20, 70), by - rng.uniform(0, 0.4) * bd, rng.uniform(30, 60),
                    rng.uniform(25, 45)) & inner & ~liver
    spl = _ellipse(xx, yy, bw - sat_mm - rng.uniform(30, 50), spine_y - rng.uniform(0, 30),
                   rng.uniform(25, 45), rng.uniform(30, 50), rng.uniform(-1, 1)) & inner & ~liver
    ivc = _ellipse(xx, yy, -rng.uniform(15, 30), spine_y - rng.uniform(25, 35), 11, 9) & inner
    aorta = ((xx - rng.uniform(5, 15)) ** 2 + (yy - spine_y + 28) ** 2 <= rng.uniform(8, 13) ** 2) & inner
    vessels = np.zeros_like(liver)
    for _ in range(int(rng.integers(2, 7))):
        pts = np.argwhere(liver)
        if pts.size == 0:
            break
        cxv, cyv = pts[rng.integers(len(pts))]
        vessels |= (xx - gx[cxv]) ** 2 + (yy - gy[cyv]) ** 2 <= rng.uniform(2.5, 7.0) ** 2
    vessels &= liver
    # tissue properties (water PD, fat PD, R2*); the held-out variant uses another contrast
    pd = rng.uniform(0.75, 0.9) if held else 0.8
    m_ff = rng.uniform(1, 12) / 100
    m_pd = rng.uniform(0.6, 0.85) if held else 0.72
    m_r2 = rng.uniform(24, 45) if held else rng.uniform(27, 35)
    w = np.zeros_like(xx)
    f = np.zeros_like(xx)
    r2 = np.zeros_like(xx)

    def put(m, water, fat, rr):
        w[m], f[m], r2[m] = water, fat, rr

    put(sat, 0.1, rng.uniform(0.75, 0.95), rng.uniform(25, 45))
    # mixed soft tissue / bowel / mesenteric fat: patchy fat fraction on a ~15 mm scale
    patch = np.clip(0.12 + 0.25 * _smooth_field(xx, yy, rng, 15.0, n=12), 0.0, 0.9)[inner]
    w[inner], f[inner], r2[inner] = 0.6 * (1 - patch), 0.6 * patch, 40.0
    put(stom, rng.uniform(0.3, 0.9), 0.02, rng.uniform(10, 60))
    put(spl, 0.85, 0.005, rng.uniform(18, 35))
    put(kid, rng.uniform(0.8, 0.95), 0.005, rng.uniform(18, 30))
    put(wall | para, m_pd * (1 - m_ff), m_pd * m_ff, m_r2)
    put(vert, 0.35, 0.3, 90.0)
    put(liver, pd * (1 - pdff / 100), pd * pdff / 100, r2l)
    put(gb, 0.95, 0.0, 5.0)
    put(vessels | ivc | aorta, 0.9, 0.0, 12.0)
    # mild parenchymal texture (water and fat scale together, PDFF unchanged)
    tex = 1.0 + rng.uniform(0.0, 0.04) * _smooth_field(xx, yy, rng, 25.0)
    w *= tex
    f *= tex
    # fields: B0, initial phase, coil shading
    if held:
        b0 = rng.uniform(20, 120) * _smooth_field(xx, yy, rng, 300.0) + rng.normal(0, 20)
        ph0 = rng.uniform(0.5, 2.0) * _smooth_field(xx, yy, rng, 250.0)
        coil = np.exp(rng.uniform(0.1, 0.5) * _smooth_field(xx, yy, rng, 200.0))
        for _ in range(int(rng.integers(1, 4))):  # surface-coil hot spots
            cxs, cys = rng.uniform(-bw, bw), rng.choice([by - bd, by + bd])
            coil += rng.uniform(0.2, 1.0) * np.exp(-((xx - cxs) ** 2 + (yy - cys) ** 2) / (2 * rng.uniform(60, 120) ** 2))
    else:
        u, v = xx / 100.0, yy / 100.0
        c = rng.normal(0, [15, 15, 15, 10, 8])
        b0 = c[0] + c[1] * u + c[2] * v + c[3] * (u * u - v * v) + c[4] * u * v
        ph0 = rng.uniform(-np.pi, np.pi) + rng.normal(0, 0.5) * u + rng.normal(0, 0.5) * v
        coil = (1 + rng.uniform(0.1, 0.4) * (v / max(bd / 100, 1e-3)) ** 2) * (1 + rng.uniform(-0.15, 0.15) * u)
    s = signal(w[..., None], f[..., None], r2[..., None], te, field_strength_t, b0_hz=b0[..., None])[:, :, 0, :]
    s = s * (coil * np.exp(1j * ph0))[..., None]
    if sub > 1:
        s = s.reshape(nx, sub, ny, sub, -1).mean(axis=(1, 3))
    sigma = BASE_SIGMA * ns
    s = s + sigma / np.sqrt(2) * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    gain = float(rng.uniform(200, 2000))
    images = (s * gain).astype(np.complex64)[:, :, None, :]

    def down(m):
        return m.reshape(nx, sub, ny, sub).mean(axis=(1, 3)) > 0.99 if sub > 1 else m

    thick = 6.0 if protocol == "gre" else 8.0
    affine = np.diag([px, px, thick, 1.0])  # x -> patient left (LPS +x), y -> posterior
    affine[:3, 3] = (-nx * px / 2, -ny * px / 2, 0.0)
    data = MultiEcho(images=images, te_s=te, field_strength_t=field_strength_t, spacing=(px, px, thick),
                     source=f"stress_{variant}_{protocol}", affine_lps=affine)
    return StressCase(data=data, liver=down(liver & ~vessels & ~gb & ~ivc & ~aorta), muscle=down(wall | para), pdff_percent=pdff,
                      r2star_per_s=r2l, noise_scale=ns, variant=variant, protocol=protocol)
