"""The liver's headline values: pooled-signal fit with a jackknife interval, and the ROI's anatomical choice."""

from __future__ import annotations

import numpy as np

from ukbmri.physics.liver_pooled import pooled_liver_fit, spatial_blocks
from ukbmri.physics.liver_roi import find_liver_roi
from ukbmri.physics.multiecho import FatWaterMaps, MultiEcho
from ukbmri.physics.spectrum import signal

TE_GRE = 2.38e-3 * np.arange(1, 11)


def _shaded_roi(rng, *, pdff, r2, sigma, n=(60, 60), shading=1.0):
    """A uniform liver of ``pdff`` / ``r2`` under strong coil shading, complex noise of SD ``sigma`` per channel."""
    x, y = np.meshgrid(np.linspace(-1, 1, n[0]), np.linspace(-1, 1, n[1]), indexing="ij")
    rho = np.exp(shading * (0.6 * x - 0.4 * y))  # x3.3 across the ROI
    s = signal(rho * (1 - pdff / 100), rho * pdff / 100, np.full(n, r2), TE_GRE, 1.5)
    s = s + sigma * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    data = MultiEcho(images=np.abs(s)[:, :, None, :].astype(np.float32), te_s=TE_GRE, field_strength_t=1.5)
    return data, np.ones(n, dtype=bool)


def test_spatial_blocks_are_compact_equal_and_cover_the_roi():
    roi = np.zeros((50, 40), bool)
    roi[5:45, 3:37] = True
    lab = spatial_blocks(roi, 16)
    counts = np.bincount(lab)
    assert counts.size == 16 and counts.max() - counts.min() <= 1 and counts.sum() == roi.sum()
    xs, ys = np.nonzero(roi)
    spread = [np.ptp(xs[lab == b]) + np.ptp(ys[lab == b]) for b in range(16)]
    assert max(spread) < 40  # a block is a patch, not a stripe through the ROI (40 x 34 voxels)
    assert spatial_blocks(roi[5:9, 3:7], 16).max() == 1  # 16 voxels: 2 blocks of >= 8


def test_pooled_fit_is_unbiased_under_shading_where_voxels_are_noise_limited():
    """Iron overload (R2* 400 /s): voxel-wise fits scatter by pp; the pooled power fit does not."""
    rng = np.random.default_rng(3)
    sigma = 0.02  # per-voxel SNR ~ 30 at the first echo in the bright part, < 1 after 3 echoes
    errs, covered = [], 0
    for _ in range(8):
        data, roi = _shaded_roi(rng, pdff=20.0, r2=400.0, sigma=sigma)
        fit = pooled_liver_fit(data, roi, sigma)
        errs.append(fit.pdff_percent - 20.0)
        covered += fit.pdff_ci95[0] <= 20.0 <= fit.pdff_ci95[1]
        assert abs(fit.r2star_per_s / 400.0 - 1) < 0.03
        assert fit.blocks == 16
    assert abs(np.mean(errs)) < 0.3 and np.max(np.abs(errs)) < 0.8
    assert covered >= 7


def test_pooled_interval_widens_with_noise_and_is_nan_for_one_block():
    rng = np.random.default_rng(4)
    lo = pooled_liver_fit(*_shaded_roi(rng, pdff=10.0, r2=60.0, sigma=0.01), 0.01, pdff_model_sd=0.0)
    hi = pooled_liver_fit(*_shaded_roi(rng, pdff=10.0, r2=60.0, sigma=0.08), 0.08, pdff_model_sd=0.0)
    w = lambda f: f.pdff_ci95[1] - f.pdff_ci95[0]  # noqa: E731
    assert w(hi) > 2 * w(lo) and lo.pdff_ci95[0] <= 10.0 <= lo.pdff_ci95[1]
    data, roi = _shaded_roi(rng, pdff=10.0, r2=60.0, sigma=0.01, n=(3, 4))
    one = pooled_liver_fit(data, roi, 0.01)
    assert one.blocks == 1 and np.isnan(one.pdff_ci95[0])  # no interval: the caller flags it imprecise


def _maps(water, ff, r2):
    z = lambda a: np.asarray(a, np.float32)[:, :, None]  # noqa: E731
    fat = water * ff / np.maximum(100 - ff, 1e-3)
    body = water > 0
    return FatWaterMaps(water=z(water), fat=z(fat), ff_percent=z(np.where(body, ff, np.nan)), r2star_per_s=z(r2),
                        b0_hz=z(np.zeros_like(water)), residual=z(np.zeros_like(water)), mask=body[:, :, None],
                        method="magnitude")


def test_choice_skips_a_larger_posterior_organ_when_an_anterior_one_qualifies():
    """Kidney / paraspinal muscle (posterior) must not win over a smaller liver on the right, in front."""
    nx, ny = 160, 120  # x -> patient's left, y -> posterior (LPS), 2 mm voxels
    x, y = np.meshgrid((np.arange(nx) - nx / 2) * 2.0, (np.arange(ny) - ny / 2) * 2.0, indexing="ij")
    body = (x / 150) ** 2 + (y / 110) ** 2 <= 1
    water = np.where(body, 0.5, 0.0)
    ff = np.where(body, 90.0, 0.0)  # fat everywhere else (not liver-like)
    r2 = np.full(x.shape, 30.0)
    liver = ((x + 70) / 45) ** 2 + ((y + 25) / 35) ** 2 <= 1  # right, anterior: ~4900 mm^2
    post = ((x + 40) / 50) ** 2 + ((y - 55) / 38) ** 2 <= 1  # right, posterior, larger: ~6000 mm^2
    for m, f, rr in ((liver, 8.0, 45.0), (post, 2.0, 28.0)):
        water[m], ff[m], r2[m] = 0.8, f, rr
    affine = np.diag([2.0, 2.0, 6.0, 1.0])
    info: dict = {}
    roi = find_liver_roi(_maps(water, ff, r2), pixel_spacing_mm=(2.0, 2.0), affine_lps=affine, info=info)[:, :, 0]
    assert roi.sum() > 200 and liver[roi].mean() == 1.0
    assert info["posterior"] < 0.2
    # the same posterior organ alone is still chosen (and then flagged posterior by the QC)
    water[liver], ff[liver] = 0.5, 90.0
    info = {}
    roi = find_liver_roi(_maps(water, ff, r2), pixel_spacing_mm=(2.0, 2.0), affine_lps=affine, info=info)[:, :, 0]
    assert post[roi].mean() == 1.0 and info["posterior"] > 0.2


def _liver_with_vessels(rng, *, pdff, r2, sigma, n=(40, 40)):
    """A shaded liver (``pdff``, ``r2``) holding two blood vessels (PD 0.9, 0 % fat, R2* 12 /s)."""
    x, y = np.meshgrid(np.arange(n[0]), np.arange(n[1]), indexing="ij")
    vessels = ((x - 12) ** 2 + (y - 14) ** 2 <= 16) | ((x - 28) ** 2 + (y - 25) ** 2 <= 9)
    rho = 0.8 * np.exp(0.3 * (x - n[0] / 2) / n[0])
    w = np.where(vessels, 0.9, rho * (1 - pdff / 100))
    f = np.where(vessels, 0.0, rho * pdff / 100)
    s = signal(w, f, np.where(vessels, 12.0, r2), TE_GRE, 1.5)
    s = s + sigma * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    data = MultiEcho(images=np.abs(s)[:, :, None, :].astype(np.float32), te_s=TE_GRE, field_strength_t=1.5)
    return data, vessels


def test_slow_decay_removes_vessels_that_would_capture_the_pooled_fit():
    """Iron overload: 7 % of the ROI in vessels holds most of the late-echo power; without the
    slow-decay test the pooled fit reads the blood (PDFF ~0 %), with it the liver."""
    from ukbmri.physics.liver_refine import slow_decay

    rng = np.random.default_rng(5)
    sigma = 0.04
    data, vessels = _liver_with_vessels(rng, pdff=20.0, r2=400.0, sigma=sigma)
    roi = np.ones(vessels.shape, bool)
    slow = slow_decay(np.abs(data.images[:, :, 0]), roi, sigma)
    assert slow[vessels].mean() > 0.95 and slow[~vessels].mean() < 0.01
    mixed = pooled_liver_fit(data, roi, sigma)
    clean = pooled_liver_fit(data, roi & ~slow, sigma)
    assert mixed.pdff_percent < 10.0 and mixed.r2star_per_s < 200  # the vessels' decay
    assert abs(clean.pdff_percent - 20.0) < 2.0 and abs(clean.r2star_per_s - 400.0) < 40.0
    # a normal liver (R2* 40 /s): the vessels still go, the parenchyma stays
    data, vessels = _liver_with_vessels(rng, pdff=5.0, r2=40.0, sigma=0.01)
    slow = slow_decay(np.abs(data.images[:, :, 0]), roi, 0.01)
    assert slow[vessels].mean() > 0.9 and slow[~vessels].mean() < 0.01
    # too few echoes for a late half: nothing is removed
    assert not slow_decay(np.abs(data.images[:, :, 0, :2]), roi, 0.01).any()
