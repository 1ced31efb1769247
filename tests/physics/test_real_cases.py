"""Plausibility on the real ISMRM 2012 challenge cases (test-only data in ../shared; skipped when absent).

Case 12: 1.5 T axial liver, 4 echoes. Case 17: hip, 3 echoes. The images are T1-weighted,
so fat fractions are signal fat fractions. Regions are fixed boxes drawn on the images
(``images[:, :, z]`` shown rows x columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ukbmri.io.ismrm import read_ismrm
from ukbmri.physics.complex import fit_complex
from ukbmri.physics.liver_roi import find_liver_roi, liver_summary
from ukbmri.physics.magnitude import fit_magnitude
from ukbmri.physics.multiecho import MultiEcho, default_mask


def _slice(path, z):
    if not path.is_file():
        pytest.skip(f"{path.name} is not present")
    data, mask = read_ismrm(path)
    one = MultiEcho(data.images[:, :, z:z + 1], data.te_s, data.field_strength_t, source=str(path))
    return one, default_mask(one) & mask[:, :, z:z + 1]


def test_case12_liver_fat_and_r2star_plausible(real_data_dir):
    data, mask = _slice(real_data_dir / "12.mat", 1)
    assert data.images.shape == (157, 256, 1, 4) and data.field_strength_t == 1.5
    maps = fit_complex(data, mask=mask)
    # the liver is on the image's left: low column index = patient right
    roi = find_liver_roi(maps, pixel_spacing_mm=(1.5, 1.5), right_direction=(0.0, -1.0))
    assert roi.sum() > 500
    assert np.nonzero(roi)[1].mean() < 100  # left part of the image
    s = liver_summary(maps, roi)
    assert 0.0 <= s.pdff_percent < 5.0
    assert 20.0 <= s.r2star_per_s <= 40.0
    # the magnitude fit inside the same ROI agrees
    mag = liver_summary(fit_magnitude(data, mask=roi), roi)
    assert abs(mag.pdff_percent - s.pdff_percent) < 1.0
    assert abs(mag.r2star_per_s - s.r2star_per_s) < 3.0
    # no swap inside the liver: homogeneous, water-dominant everywhere in the ROI
    assert np.mean(maps.ff_percent[roi] > 50.0) < 0.01


def test_case12_subcutaneous_fat_and_precession_convention(real_data_dir):
    """The posterior subcutaneous layer is fat-dominant at its core; the toolbox convention fits best.

    The layer in case 12 is thin (4-6 voxels), so partial volume and edge effects keep its
    peak below pure fat (measured: median peak 57 %, 13 of 18 columns above 50 %).
    Conjugating the data (the opposite precession) reads the layer as pure fat but fits the
    slice about twice as badly: the data themselves confirm the ISMRM convention
    (PrecessionIsClockwise == 1: no conjugation).
    """
    data, mask = _slice(real_data_dir / "12.mat", 1)
    maps = fit_complex(data, mask=mask)
    ff, m = maps.ff_percent[:, :, 0], maps.mask[:, :, 0]
    peaks = []
    for col in range(40, 220, 10):  # the back: the last 11 body voxels of each column
        last = np.nonzero(m[:, col])[0].max()
        peaks.append(np.nanmax(ff[last - 10:last + 1, col]))
    peaks = np.array(peaks)
    assert np.median(peaks) > 50.0 and np.mean(peaks > 50.0) >= 0.6, peaks.round()
    conj = MultiEcho(np.conj(data.images), data.te_s, data.field_strength_t, source="conjugated")
    other = fit_complex(conj, mask=mask)
    assert np.nanmedian(other.residual[m]) > 1.5 * np.nanmedian(maps.residual[m])


def test_case17_marrow_and_fat_not_swapped(real_data_dir):
    data, mask = _slice(real_data_dir / "17.mat", 1)
    assert data.n_echoes == 3
    maps = fit_complex(data, mask=mask)
    ff = maps.ff_percent[:, :, 0]
    head = ff[40:60, 45:70]  # femoral head marrow
    muscle = ff[78:88, 40:90]  # thigh muscle band
    sat = ff[94:99, 45:58]  # subcutaneous fat band
    assert np.nanmedian(head) > 75.0 and np.nanmean(head < 50.0) < 0.05
    assert np.nanmedian(sat) > 80.0
    assert np.nanmedian(muscle) < 40.0 and np.nanmean(muscle > 60.0) < 0.05
    r2 = maps.r2star_per_s[:, :, 0]
    assert 20.0 < np.nanmedian(r2[78:88, 40:90]) < 60.0  # muscle R2* at 1.5 T


@pytest.mark.slow
@pytest.mark.parametrize("case", ["12", "17"])
def test_real_volume_cli(real_data_dir, tmp_path, case):
    from ukbmri.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["fatwater", str(real_data_dir / f"{case}.mat"), "--out", str(tmp_path)])
    assert exc.value.code == 0
    ff = np.load(tmp_path / f"{case}_ff_percent.npy")
    data, _ = read_ismrm(real_data_dir / f"{case}.mat")
    assert ff.shape == data.shape and ff.dtype == np.float32
    assert (tmp_path / f"{case}_montage.png").stat().st_size > 10000


def _fatwater_liver(case_path, out, liver_roi: str) -> int:
    """``ukbmri fatwater CASE --liver --liver-roi ...`` into ``out``; returns the exit code."""
    from ukbmri.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["fatwater", str(case_path), "--out", str(out), "--liver", "--no-montage", "--liver-roi", liver_roi])
    return exc.value.code


@pytest.mark.slow
@pytest.mark.parametrize("liver_roi", ["localiser", "rules"])
def test_case17_hip_gives_no_trusted_liver_value(real_data_dir, tmp_path, liver_roi):
    """Case 17 shows the hip, not a liver: no slice and no overall value may come out unflagged."""
    import json

    assert _fatwater_liver(real_data_dir / "17.mat", tmp_path, liver_roi) in (0, 1)
    summary = pd.read_csv(tmp_path / "17_summary.csv")
    liver_rows = summary[summary["region"].astype(str).str.startswith("liver")]
    for _, row in liver_rows.iterrows():  # measured: every slice liver_roi_thin + liver_roi_off_right
        assert isinstance(row["liver_flags"], str) and "unreliable" in row["liver_flags"] or \
            "not_found" in str(row["liver_flags"]), row["region"]
    liver = json.loads((tmp_path / "17_summary.json").read_text()).get("liver")
    assert liver is None or "liver_roi_unreliable" in liver["flags"] or liver.get("pdff_percent") is None


@pytest.mark.slow
def test_case17_magnitude_default_reads_fat_as_fat(real_data_dir, tmp_path):
    """fatwater's magnitude default (branch 'best') must not read subcutaneous fat as 20-40 %."""
    from ukbmri.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["fatwater", str(real_data_dir / "17.mat"), "--out", str(tmp_path), "--method", "magnitude",
              "--no-montage"])
    assert exc.value.code == 0
    data, mask = read_ismrm(real_data_dir / "17.mat")
    m = default_mask(data) & mask
    fat = m & (fit_complex(data, mask=m).ff_percent > 80.0)
    ff = np.load(tmp_path / "17_ff_percent.npy")[fat]
    assert np.median(ff) > 70.0 and np.mean(ff < 50.0) < 0.15  # measured 78 % and 0.07


@pytest.mark.slow
@pytest.mark.parametrize("liver_roi", ["localiser", "rules"])
def test_case12_liver_on_every_slice(real_data_dir, tmp_path, liver_roi):
    import json

    assert _fatwater_liver(real_data_dir / "12.mat", tmp_path, liver_roi) == 0
    roi = np.load(tmp_path / "12_liver_roi.npy")
    assert roi.shape == (157, 256, 3)
    per_slice = roi.sum(axis=(0, 1))
    assert (per_slice > 500).sum() >= 2
    assert np.nonzero(roi)[1].mean() < 110  # the liver is on the image's left
    liver = json.loads((tmp_path / "12_summary.json").read_text())["liver"]
    # measured: localiser 1.06 %, 28.6 /s; rules 0.47 %, 28 /s
    assert 0.0 <= liver["pdff_percent"] < 3.0 and 20.0 <= liver["r2star_per_s"] <= 35.0
    assert liver["flags"] == [] and liver["roi"] == liver_roi
    # >= 95 % of the ROI inside the liver: coarse liver outlines drawn by hand on the first
    # echo (row, column vertices; they stay inside the organ's visible edge)
    from matplotlib.path import Path as Polygon

    outlines = {
        0: [(30, 40), (28, 100), (45, 110), (95, 110), (120, 90), (128, 55), (112, 28), (70, 22), (40, 30)],
        1: [(35, 40), (32, 100), (45, 110), (95, 110), (120, 90), (130, 55), (115, 30), (70, 25), (45, 30)],
        2: [(38, 45), (35, 85), (45, 97), (100, 100), (120, 85), (125, 55), (110, 38), (70, 37), (50, 40)],
    }
    for z, poly in outlines.items():
        pts = np.argwhere(roi[:, :, z])
        if len(pts):
            assert Polygon(poly).contains_points(pts).mean() >= 0.95, z  # measured 1.00 on every slice


@pytest.mark.slow
def test_case12_reference_reads_the_noise_biased_signal_fat_fraction(real_data_dir):
    """Why case 12 reads ~0.5 % here and 2.1-2.3 % in the published graph-cut separation.

    The graph-cut output has complex W and F with independent phases; |F| / (|W| + |F|) of
    such a fit is biased upwards by the noise at low fat. Computing that quantity in our
    ROI (W, F unconstrained at our field map and R2*) reproduces the published value,
    while the phase-constrained fat fraction stays low.
    """
    from ukbmri.physics.liver_slices import liver_fat_slices, right_direction_for
    from ukbmri.physics.spectrum import SIX_PEAK, fat_phasor

    path = real_data_dir / "12.mat"
    if not path.is_file():
        pytest.skip("12.mat is not present")
    data, mask = read_ismrm(path)
    m = default_mask(data) & mask
    maps = fit_complex(data, mask=m)
    lv = liver_fat_slices(data, maps, right_direction=right_direction_for("image-left"))
    c = fat_phasor(data.te_s, data.field_strength_t, SIX_PEAK)
    basis = np.stack([np.ones_like(c), c], axis=1)
    for z in range(data.shape[2]):
        r = lv.roi[:, :, z]
        if r.sum() < 500:
            continue
        s = data.images[:, :, z][r]
        psi, r2 = maps.b0_hz[:, :, z][r], maps.r2star_per_s[:, :, z][r]
        demod = s * np.exp(-2j * np.pi * psi[:, None] * data.te_s) * np.exp(r2[:, None] * data.te_s)
        w, f = np.linalg.lstsq(basis, demod.T, rcond=None)[0]
        signal_ff = np.median(np.abs(f) / (np.abs(w) + np.abs(f))) * 100
        assert 1.5 <= signal_ff <= 2.6, (z, signal_ff)  # measured 1.8, 1.9, 2.1 %; published 2.1-2.3 %
        assert lv.slices[z].pdff_percent < signal_ff - 0.8  # ours: 0.4-0.9 %
