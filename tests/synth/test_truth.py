"""Ground truth agrees with the pixels and with the phantom on the output grids."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import binary_erosion
from scipy.optimize import least_squares

from ukbmri.physics.spectrum import fat_phasor
from ukbmri.synth import TRUTH_COLUMNS, sample_participants, truth_row
from ukbmri.synth.tissues import Label

PIXEL = 2.232142925


@pytest.fixture(scope="module")
def truth(plain):
    return truth_row(plain["p"], plain["phantom"])


def _slice_grid(ds):
    x0, y0, z0 = (float(v) for v in ds.ImagePositionPatient)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    return x0 + np.arange(ds.Columns) * dc, y0 + np.arange(ds.Rows) * dr, z0


def _liver_roi(phantom, ds):
    """Pixels that are liver through the whole slice thickness (no partial volume), eroded by one."""
    xs, ys, z0 = _slice_grid(ds)
    t = float(ds.SliceThickness)
    lab = phantom.labels_grid(xs, ys, z0 + np.linspace(-t / 2, t / 2, 5))
    return binary_erosion(np.all(lab == Label.LIVER, axis=0), iterations=1)


def _fit_magnitude(signal, te_s):
    c = fat_phasor(te_s, 1.5)

    def resid(q):
        w, f, r2 = q
        return np.abs(w + f * c) * np.exp(-r2 * te_s) - signal

    fit = least_squares(resid, x0=[signal[0], 0.05 * signal[0], 40.0], bounds=([0, 0, 0], [np.inf, np.inf, 2000]))
    w, f, r2 = fit.x
    return 100.0 * f / (w + f), r2


def test_gre_liver_fat_matches_truth(plain, series_reader, truth):
    series = series_reader(plain["paths"][20203])
    (mag,) = [s for s in series.values() if s.image_type[2] == "M"]
    te = np.array([float(d.EchoTime) for d in mag.datasets]) / 1000.0
    roi = _liver_roi(plain["phantom"], mag.datasets[0])
    assert roi.sum() > 500
    signal = mag.pixels.astype(float)[:, roi].mean(axis=1)
    pdff, r2 = _fit_magnitude(signal, te)
    assert pdff == pytest.approx(truth["liver_pdff_percent"], abs=0.4)
    assert r2 == pytest.approx(truth["liver_r2star_per_s"], rel=0.05)
    # a small ROI (~40 pixels, like a placed circle) still measures it within ~1 point
    rows, cols = np.nonzero(roi)
    r0, c0 = int(np.median(rows)), int(np.median(cols))
    small = np.zeros_like(roi)
    small[r0 - 3 : r0 + 4, c0 - 3 : c0 + 4] = True
    small &= roi
    pdff_small, _ = _fit_magnitude(mag.pixels.astype(float)[:, small].mean(axis=1), te)
    assert pdff_small == pytest.approx(truth["liver_pdff_percent"], abs=1.0)


def test_ideal_liver_fat_matches_truth(plain, series_reader, truth):
    series = sorted(series_reader(plain["paths"][20254]).values(), key=lambda s: s.number)
    mag = series[0]  # first dynamic, magnitude
    te = np.array([float(d.EchoTime) for d in mag.datasets]) / 1000.0
    roi = _liver_roi(plain["phantom"], mag.datasets[0])
    roi = binary_erosion(roi, iterations=2)  # the dynamics move a few mm with breathing
    pdff, _ = _fit_magnitude(mag.pixels.astype(float)[:, roi].mean(axis=1), te)
    assert pdff == pytest.approx(truth["liver_pdff_percent"], abs=0.6)


def test_gre_phase_is_linear_in_water(plain, series_reader):
    """Phase (slope 2, intercept -4096 -> pi v / 4096) of fat-free tissue evolves linearly with TE."""
    series = series_reader(plain["paths"][20203])
    (pha,) = [s for s in series.values() if s.image_type[2] == "P"]
    (mag,) = [s for s in series.values() if s.image_type[2] == "M"]
    te = np.array([float(d.EchoTime) for d in pha.datasets]) / 1000.0
    ds = pha.datasets[0]
    v = pha.pixels.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    phase = np.pi * v / 4096.0
    xs, ys, z0 = _slice_grid(ds)
    lab = plain["phantom"].labels_grid(xs, ys, z0 + np.linspace(-3, 3, 5))
    water = binary_erosion(np.all(np.isin(lab, [Label.SPLEEN, Label.KIDNEY]), axis=0), iterations=1)
    assert water.sum() > 20
    strong = water & (mag.pixels[-1] > 150)
    unwrapped = np.unwrap(phase[:, strong], axis=0)
    coef = np.polyfit(te, unwrapped, 1)
    resid = unwrapped - (coef[0][None, :] * te[:, None] + coef[1][None, :])
    assert np.sqrt(np.mean(resid**2)) < 0.1
    b0 = coef[0] / (2 * np.pi)
    assert np.all(np.abs(b0) < 150)  # a few tens of Hz


def test_dixon_pixels_reflect_tissues(plain, plain_dixon):
    ph = plain["phantom"]
    station = sorted(plain_dixon.values(), key=lambda s: s.number)[8:12]  # station 3 (abdomen)
    w = next(s for s in station if s.description.endswith("_W"))
    f = next(s for s in station if s.description.endswith("_F"))
    xs, ys, _ = _slice_grid(w.datasets[0])
    lab = ph.labels_grid(xs, ys, w.positions[:, 2])
    W, F = w.pixels.astype(float), f.pixels.astype(float)
    ff = F / np.maximum(W + F, 1)
    for label, lo, hi in ((Label.VAT, 0.75, 1.0), (Label.SAT, 0.75, 1.0), (Label.MUSCLE, 0.0, 0.2), (Label.BOWEL, 0.0, 0.15)):
        m = lab == label
        assert m.sum() > 1000, label
        assert lo <= np.median(ff[m]) <= hi, label
    assert 700 < np.median(W[lab == Label.MUSCLE]) < 2000
    assert np.median((W + F)[lab == Label.AIR]) < 40


def test_abdominal_fat_matches_voxel_counting_on_fused_grid(plain, truth):
    """VAT / ASAT counted on the 224 x 174 x 3 mm output grid agree with the integrated truth."""
    ph, p = plain["phantom"], plain["p"]
    lm = ph.landmarks
    xs = p.fov_x_mm + (np.arange(224) - 111.5) * PIXEL
    ys = p.fov_y_mm + (np.arange(174) - 86.5) * PIXEL
    zs = np.arange(lm["z_abdomen_top"] - 1.5, lm["z_abdomen_bottom"], -3.0)
    lab = ph.labels_grid(xs, ys, zs)
    torso = ph.torso_grid(xs, ys, zs)
    voxel_l = PIXEL * PIXEL * 3.0 * 1e-6
    assert np.sum(lab == Label.VAT) * voxel_l == pytest.approx(truth["vat_l"], rel=0.03)
    assert np.sum((lab == Label.SAT) & torso) * voxel_l == pytest.approx(truth["asat_l"], rel=0.03)
    liver = ph.labels_grid(xs, ys, np.arange(lm["z_liver_top"] + 3, lm["z_liver_top"] - 300, -3.0))
    assert np.sum(liver == Label.LIVER) * voxel_l == pytest.approx(truth["liver_volume_l"], rel=0.03)


def test_truth_row_columns_and_ranges(truth, plain):
    assert tuple(truth) == TRUTH_COLUMNS
    p = plain["p"]
    assert truth["eid"] == p.eid and truth["sex_male"] == int(p.sex_male)
    assert truth["height_cm"] == pytest.approx(p.height_cm)
    # weight from the phantom is close to the sampled BMI's weight (calibrated)
    assert truth["bmi_kg_m2"] == pytest.approx(p.bmi_target, rel=0.06)
    assert 0.3 < truth["vat_l"] < 12 and 1 < truth["asat_l"] < 25
    assert 0.8 < truth["liver_volume_l"] < 3.0 and 0.05 < truth["spleen_volume_l"] < 0.5
    assert 0.1 < truth["kidney_volume_l"] < 0.6 and 4 < truth["thigh_muscle_volume_l"] < 22
    assert truth["liver_pdff_percent"] == pytest.approx(p.liver_pdff_percent, abs=1e-3)
    assert truth["muscle_fat_percent"] == pytest.approx(p.muscle_fat_percent, abs=1e-3)
    assert truth["total_adipose_l"] > truth["vat_l"] + truth["asat_l"]


def test_truth_follows_body_composition(people):
    """More fat -> more weight, ASAT and VAT; more muscle -> more thigh muscle; organs scale."""
    p = people[1]
    base = truth_row(p)
    fatter = truth_row(replace(p, sat=p.sat * 1.4))
    assert fatter["weight_kg"] > base["weight_kg"] + 2 and fatter["asat_l"] > base["asat_l"] * 1.2
    assert fatter["vat_l"] == pytest.approx(base["vat_l"], rel=0.02)
    visceral = truth_row(replace(p, vat=p.vat * 1.5))
    assert visceral["vat_l"] > base["vat_l"] * 1.2 and visceral["weight_kg"] > base["weight_kg"]
    strong = truth_row(replace(p, muscle=p.muscle * 1.2))
    assert strong["thigh_muscle_volume_l"] > base["thigh_muscle_volume_l"] * 1.05
    big_liver = truth_row(replace(p, liver_scale=p.liver_scale * 1.3))
    assert big_liver["liver_volume_l"] == pytest.approx(base["liver_volume_l"] * 1.3, rel=0.06)


def test_cohort_distributions():
    people = sample_participants(200, np.random.default_rng(11))
    df = pd.DataFrame([vars(p) for p in people])
    assert df.age_years.between(45, 80).all() and 0.3 < df.sex_male.mean() < 0.7
    assert 1.6 < df.liver_pdff_percent.median() < 3.2
    assert 0.09 < (df.liver_pdff_percent > 5.5).mean() < 0.27
    assert df.liver_pdff_percent.max() <= 40.0
    assert 0.8 < (df.liver_r2star_per_s.between(25, 60)).mean() < 1.0
    men, women = df[df.sex_male], df[~df.sex_male]
    assert men.height_cm.mean() > women.height_cm.mean() + 8
    assert 23 < df.bmi_target.mean() < 30
    assert len({p.eid for p in people}) == 200
