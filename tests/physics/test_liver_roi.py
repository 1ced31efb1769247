"""Automatic liver ROI and the liver physics pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from ukbmri.errors import LiverInputError
from ukbmri.physics.complex import fit_complex
from ukbmri.physics.liver_roi import find_liver_roi, liver_summary, patient_right_direction
from ukbmri.physics.magnitude import fit_magnitude
from ukbmri.physics.phantom import UKB_20203_TE_S, ring_phantom
from scipy import ndimage as ndi


@pytest.fixture(scope="module")
def phantom_maps():
    rng = np.random.default_rng(11)
    data, truth = ring_phantom((96, 96, 1), te_s=UKB_20203_TE_S, snr=60.0, liver_ff_percent=12.0,
                               liver_r2star_per_s=45.0, spacing=(3.0, 3.0, 6.0), rng=rng)
    return data, truth, fit_complex(data)


def test_roi_inside_liver_away_from_vessels(phantom_maps):
    data, truth, maps = phantom_maps
    roi = find_liver_roi(maps, pixel_spacing_mm=(3.0, 3.0), affine_lps=data.affine_lps)
    assert roi.shape == maps.shape and roi.dtype == bool
    assert roi.sum() >= 100
    assert np.all(truth.liver[roi])  # every ROI voxel is liver (vessels are not "liver" in the truth)
    near_vessel = ndi.binary_dilation(truth.vessels[:, :, 0], iterations=1)[:, :, None]
    assert not np.any(roi & near_vessel)
    near_edge = ~ndi.binary_erosion(truth.liver[:, :, 0] | truth.vessels[:, :, 0], iterations=1)[:, :, None]
    assert not np.any(roi & near_edge)
    s = liver_summary(maps, roi)
    assert abs(s.pdff_percent - 12.0) < 0.5 and abs(s.r2star_per_s - 45.0) < 2.0
    assert s.n_voxels == int(roi.sum())


def test_roi_side_comes_from_orientation(phantom_maps):
    data, truth, maps = phantom_maps
    # the phantom's liver is at low x (patient right with the identity-like affine)
    np.testing.assert_allclose(patient_right_direction(data.affine_lps), [-1.0, 0.0])
    mirrored = np.diag([-3.0, 3.0, 6.0, 1.0])  # x now runs towards the patient's right
    np.testing.assert_allclose(patient_right_direction(mirrored), [1.0, 0.0])
    roi = find_liver_roi(maps, pixel_spacing_mm=(3.0, 3.0), right_direction=(-1.0, 0.0))
    assert np.all(truth.liver[roi])


def test_magnitude_water_branch_maps_do_not_find_fat_as_liver(phantom_maps):
    data, truth, _ = phantom_maps
    best = fit_magnitude(data, branch="best")
    roi = find_liver_roi(best, pixel_spacing_mm=(3.0, 3.0), affine_lps=data.affine_lps)
    assert np.all(truth.liver[roi])


def test_no_liver_raises(phantom_maps):
    data, truth, maps = phantom_maps
    with pytest.raises(LiverInputError, match="liver"):
        find_liver_roi(maps, pixel_spacing_mm=(3.0, 3.0), r2star_range=(500.0, 600.0))


def test_liver_fat_from_synthetic_ukb_zip(tmp_path):
    synth = pytest.importorskip("ukbmri.synth")
    import dataclasses

    from ukbmri.io import read_zip
    from ukbmri.physics.liver import liver_fat_from_zip

    rng = np.random.default_rng(12)
    (p,) = synth.sample_participants(1, rng)
    p = dataclasses.replace(p, liver_pdff_percent=14.0)
    paths = synth.write_participant(p, tmp_path, fields=(20203,), rng=rng)
    res = liver_fat_from_zip(read_zip(paths[20203]))
    assert abs(res.pdff_percent - 14.0) < 0.5
    assert abs(res.r2star_per_s - p.liver_r2star_per_s) < 2.0
    assert res.n_voxels > 200 and res.roi_maps == "complex"
    assert res.flags == () and res.protocol == "gre"
    assert res.pdff_ci95[0] <= 14.0 <= res.pdff_ci95[1] and res.pdff_ci95[1] - res.pdff_ci95[0] < 2.0
    assert res.r2star_ci95[0] <= p.liver_r2star_per_s <= res.r2star_ci95[1]
    npy, png = res.save_mask(tmp_path / "roi" / "1_2")
    assert npy.name == "1_2.npy" and png.name == "1_2.png" and png.stat().st_size > 1000
    assert np.load(npy).shape == res.mask.shape


def test_roi_step_ignores_voxels_without_a_fit():
    """A region that reaches voxels without a fit (NaN maps, outside the fitted mask) keeps its
    fitted interior: before, the region's NaN median signal removed every voxel."""
    from ukbmri.physics.liver_refine import roi_in_region
    from ukbmri.physics.liver_rules import SliceTissue

    n = 60
    water = np.full((n, n), 100.0)
    water[:, 45:] = np.nan  # not fitted
    region = np.zeros((n, n), bool)
    region[10:50, 10:55] = True
    ff = np.where(np.isfinite(water), 3.0, np.nan)
    r2 = np.where(np.isfinite(water), 30.0, np.nan)
    noise = np.where(np.isfinite(water), 1.0, 0.0)  # expected map noise (noise-aware vessel test)
    t = SliceTissue(water=water, r2=r2, ff=ff, sig=water, tissue=np.isfinite(water), homog=None, noise_w=noise,
                    noise_r=noise, noise_f=noise, spacing=(1.5, 1.5), centre=(30.0, 30.0), radius_mm=45.0,
                    right=None, posterior=None)
    roi = roi_in_region(t, region, True, margin_mm=5.0, vessel_window_mm=20.0, vessel_tolerance=0.12,
                        min_voxels=20, signal_is_water=True)
    assert roi.sum() > 500 and not roi[:, 45:].any()
    t_none = SliceTissue(water=np.full((n, n), np.nan), r2=r2, ff=ff, sig=np.full((n, n), np.nan), tissue=region,
                         homog=None, noise_w=None, noise_r=None, noise_f=None, spacing=(1.5, 1.5),
                         centre=(30.0, 30.0), radius_mm=45.0, right=None, posterior=None)
    assert not roi_in_region(t_none, region, True, margin_mm=5.0, vessel_window_mm=20.0, vessel_tolerance=0.12,
                             min_voxels=20, signal_is_water=True).any()
