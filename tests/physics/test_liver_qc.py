"""Liver ROI on livers we did not draw: noise-aware localisation, intervals, QC flags, GRE/IDEAL cross-check.

Fast tests use single stress phantoms (``ukbmri.synth.liver_stress``); the held-out cohort
test (generator variant "heldout", never used for tuning) is marked slow.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ukbmri.errors import LiverInputError, LiverNotFoundError
from ukbmri.physics.liver import cross_check, liver_fat_from_multiecho
from ukbmri.physics.liver_flags import FLAG_RULES, UNRELIABLE
from ukbmri.physics.liver_noise import crlb_sd, median_interval
from ukbmri.physics.multiecho import MultiEcho
from ukbmri.physics.spectrum import signal
from ukbmri.synth.liver_stress import stress_case


def test_stress_generator_is_deterministic_and_its_truth_is_sane():
    a = stress_case(np.random.default_rng(5), variant="heldout", protocol="ideal")
    b = stress_case(np.random.default_rng(5), variant="heldout", protocol="ideal")
    np.testing.assert_array_equal(a.data.images, b.data.images)
    assert a.data.shape == (256, 232, 1) and a.data.is_complex and a.data.n_echoes == 6
    assert 0.0 <= a.pdff_percent <= 50.0 and 20.0 <= a.r2star_per_s <= 500.0 and 0.5 <= a.noise_scale <= 3.0
    assert a.liver.sum() > 500 and not np.any(a.liver & a.muscle)
    # the liver lies on the patient's right: low x with this affine (x runs to the patient's left)
    assert np.nonzero(a.liver)[0].mean() < a.data.shape[0] / 2
    none = stress_case(np.random.default_rng(5), with_liver=False)
    assert none.liver.sum() == 0


def test_iron_loaded_noisy_liver_is_found_not_the_muscle():
    """The issue's failure: R2* >= 150 /s with noise x1.5 put the ROI in the paraspinal muscle."""
    c = stress_case(np.random.default_rng(1), variant="train", pdff_percent=30.0, r2star_per_s=250.0,
                    noise_scale=1.5)
    r = liver_fat_from_multiecho(c.data)
    assert c.liver[r.mask].mean() >= 0.95
    assert not np.any(r.mask & c.muscle)
    assert abs(r.pdff_percent - 30.0) <= 1.5
    assert abs(r.r2star_per_s / 250.0 - 1.0) <= 0.05
    assert r.pdff_ci95[0] <= r.pdff_percent <= r.pdff_ci95[1]
    assert r.r2star_ci95[0] <= 250.0 <= r.r2star_ci95[1]


def test_slice_without_liver_gives_no_trusted_value():
    for seed in (0, 1):
        c = stress_case(np.random.default_rng(seed), variant="train", with_liver=False)
        try:
            r = liver_fat_from_multiecho(c.data)
        except LiverNotFoundError:
            continue
        assert UNRELIABLE in r.flags


def test_all_fat_slice_raises_liver_not_found_naming_the_file():
    x, y = np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64), indexing="ij")
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 <= 1
    te = 2.38e-3 * np.arange(1, 11)
    s = signal(0.08 * body, 0.92 * body, np.full(body.shape, 35.0), te, 1.5)[:, :, None, :]
    s = s + 0.01 * np.random.default_rng(0).standard_normal(s.shape)
    data = MultiEcho(s.astype(np.complex64), te, 1.5, spacing=(4.0, 4.0, 6.0), source="fat_only.zip",
                     affine_lps=np.diag([4.0, 4.0, 6.0, 1.0]))
    with pytest.raises(LiverNotFoundError, match="fat_only.zip") as exc:
        liver_fat_from_multiecho(data)
    assert isinstance(exc.value, LiverInputError)  # callers catching the liver input error still do


def test_crlb_matches_the_scatter_of_noisy_voxels():
    # noise-aware homogeneity rests on this: the Cramer-Rao SD of PDFF predicts the observed scatter
    c = stress_case(np.random.default_rng(3), variant="train", pdff_percent=20.0, r2star_per_s=120.0,
                    noise_scale=2.0)
    r = liver_fat_from_multiecho(c.data)
    ratio = r.qc["pdff_robust_sd"] / r.qc["pdff_crlb_sd"]
    assert 0.7 <= ratio <= 1.4
    _, sd_lo, _ = crlb_sd(0.8, 0.2, 40.0, c.data.te_s, 1.5, 0.01)
    _, sd_hi, _ = crlb_sd(0.8, 0.2, 400.0, c.data.te_s, 1.5, 0.01)
    assert sd_hi > 3 * sd_lo  # iron makes PDFF noisier, so the tolerance must grow


def test_median_interval_covers_and_widens_for_correlated_voxels():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    roi = np.zeros((60, 60), bool)
    roi[10:50, 10:50] = True
    hits_white = hits_smooth = 0
    widths = []
    for _ in range(200):
        white = 5.0 + rng.standard_normal((60, 60))
        _, lo, hi = median_interval(white, roi)
        hits_white += lo <= 5.0 <= hi
        smooth = ndi.gaussian_filter(rng.standard_normal((60, 60)), 2.0)
        smooth = 5.0 + smooth / smooth[roi].std()
        _, lo2, hi2 = median_interval(smooth, roi)
        hits_smooth += lo2 <= 5.0 <= hi2
        widths.append((hi2 - lo2) / (hi - lo))
    assert hits_white >= 180 and hits_smooth >= 170  # ~95 % nominal
    assert np.median(widths) > 3.0  # correlated voxels are worth fewer independent samples


def _result(pdff, ci, r2, rci, flags=()):
    return SimpleNamespace(pdff_percent=pdff, pdff_ci95=ci, r2star_per_s=r2, r2star_ci95=rci, flags=flags)


def test_cross_check_rule():
    gre = _result(5.0, (4.6, 5.4), 35.0, (33.0, 37.0))
    assert cross_check(gre, _result(5.8, (5.4, 6.2), 36.0, (34.0, 38.0))) == ()  # within 1 pp + intervals
    assert cross_check(gre, _result(8.0, (7.6, 8.4), 36.0, (34.0, 38.0))) == ("liver_gre_ideal_disagree",)
    assert cross_check(gre, _result(5.0, (4.6, 5.4), 60.0, (58.0, 62.0))) == ("liver_gre_ideal_disagree",)
    # wide intervals absorb a larger difference
    assert cross_check(_result(5.0, (2.0, 8.0), 35.0, (30.0, 40.0)), _result(8.0, (5.0, 11.0), 36.0, (31.0, 41.0))) == ()
    assert cross_check(gre, None) == ("liver_gre_ideal_incomplete",)
    assert cross_check(gre, _result(5.0, (4.6, 5.4), 35.0, (33.0, 37.0), (UNRELIABLE,))) == (
        "liver_gre_ideal_incomplete",)
    # unreliable only for a wide interval: still compared, with that interval
    imprecise = (UNRELIABLE, "liver_pdff_imprecise")
    assert cross_check(gre, _result(6.0, (3.0, 9.0), 35.0, (25.0, 45.0), imprecise)) == ()
    assert cross_check(_result(0.0, (0.0, 0.3), 15.0, (14.0, 16.0)), _result(13.0, (10.4, 15.7), 376.0, (330.0, 420.0),
                                                                           imprecise)) == ("liver_gre_ideal_disagree",)
    assert cross_check(gre, _result(5.0, (4.6, 5.4), 35.0, (33.0, 37.0), (UNRELIABLE, "liver_roi_small"))) == (
        "liver_gre_ideal_incomplete",)


def test_every_flag_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "liver_qc.md").read_text()
    for flag in FLAG_RULES:
        assert f"`{flag}`" in doc, flag


@pytest.mark.slow
def test_heldout_stress_cohort():
    """Held-out generator variant (never tuned on): wrong values are flagged or absent."""
    rng = np.random.default_rng(4242)
    n, errors, flagged, no_value, r2_ok, r2_n, covered = 40, [], 0, 0, 0, 0, 0
    for i in range(n):
        c = stress_case(rng, variant="heldout", protocol="gre" if i % 2 == 0 else "ideal")
        try:
            r = liver_fat_from_multiecho(c.data)
        except LiverNotFoundError:
            no_value += 1
            continue
        err = r.pdff_percent - c.pdff_percent
        if UNRELIABLE in r.flags:
            flagged += 1
            continue
        assert abs(err) <= 1.5, (i, c.pdff_percent, c.r2star_per_s, c.noise_scale, err)
        errors.append(err)
        covered += r.pdff_ci95[0] <= c.pdff_percent <= r.pdff_ci95[1]
        if c.r2star_per_s <= 250:
            r2_n += 1
            r2_ok += abs(r.r2star_per_s / c.r2star_per_s - 1) <= 0.05
    errors = np.asarray(errors)
    assert np.abs(errors).mean() <= 0.5
    assert r2_ok >= 0.95 * r2_n
    assert covered >= 0.85 * errors.size
    # measured 7.5 % without a trusted value on this seed with the liver localiser (20 % with the
    # image rules alone; the 5 % target is not met overall, see docs/liver_qc.md)
    assert flagged + no_value <= 0.15 * n
