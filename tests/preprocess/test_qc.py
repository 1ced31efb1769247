"""Quality checks (ukbmri.preprocess.qc) on hand-made volumes: not made by ukbmri.synth.

The phantoms here have other shapes, spacings and contrasts than the synthetic
cohort (an elliptic trunk on a 3 x 3 x 5 mm grid, plain numpy), so the checks are
shown to follow from physics and anatomy rather than from our generator.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ukbmri.errors import QualityCheckError
from ukbmri.preprocess import qc
from ukbmri.infer.plausibility import check_predictions, clip_to_physical, physical_bounds
from ukbmri.preprocess.qc import (
    FLAGS,
    QcFinding,
    check_body_image,
    check_body_volumes,
    check_multiecho,
    raise_if_fatal,
)
from ukbmri.types import Volume

SP = (3.0, 3.0, 5.0)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "qc_flags.md"


def trunk(shape=(120, 80, 100), sat_mm=15.0, seed=0, pad=6) -> tuple[np.ndarray, np.ndarray]:
    """(water, fat) of an elliptic body (subcutaneous fat ring, lean interior, fatty marrow) in air.

    ``pad`` LR columns each side are exact zeros (outside the field of view, like fused volumes).
    """
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x = (np.arange(nx) - nx / 2 + 0.5) * SP[0]
    y = (np.arange(ny) - ny / 2 + 0.5) * SP[1]
    z = np.arange(nz) * SP[2]
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    a = 150.0 + 20.0 * np.sin(Z / 180.0)  # the body narrows and widens along z
    b = 95.0 + 10.0 * np.cos(Z / 230.0)
    r = np.sqrt((X / a) ** 2 + (Y / b) ** 2)
    body = r < 1.0
    inner = r < 1.0 - sat_mm / b
    marrow = ((X - 40.0) ** 2 + (Y + 10.0) ** 2) < 15.0**2
    w = np.where(body, 60.0, 0.0) + np.where(inner, 500.0, 0.0) - np.where(inner & marrow, 420.0, 0.0)
    f = np.where(body & ~inner, 700.0, 0.0) + np.where(inner, 30.0, 0.0) + np.where(inner & marrow, 520.0, 0.0)
    noise = lambda: np.abs(rng.normal(0, 12.0, shape) + 1j * rng.normal(0, 12.0, shape))  # noqa: E731
    w = (w + noise()).astype(np.float32)
    f = (f + noise()).astype(np.float32)
    w[:pad] = w[-pad:] = 0
    f[:pad] = f[-pad:] = 0
    return w, f


def vols(w, f, sp=SP):
    return Volume(np.asarray(w, np.float32), sp), Volume(np.asarray(f, np.float32), sp)


def flags(findings):
    return [x.flag for x in findings]


@pytest.fixture(scope="module")
def body():
    return trunk()


# -- body volumes ---------------------------------------------------------------------------------
def test_plausible_body_has_no_findings(body):
    assert check_body_volumes(*vols(*body), stations=6) == []


def test_other_shape_and_spacing_is_also_clean():
    w, f = trunk(shape=(90, 70, 60), sat_mm=25.0, seed=3)
    assert check_body_volumes(*vols(w, f, sp=(4.0, 3.5, 8.0)), stations=6) == []


def test_blank_constant_and_nonfinite_are_fatal(body):
    w, f = body
    out = check_body_volumes(*vols(w * 0, f * 0), stations=6)
    assert flags(out) == ["body_input_blank"] and out[0].fatal
    cw, cf = np.full_like(w, 700.0), np.full_like(f, 300.0)
    cw[:6] = cf[:6] = 0  # zero padding outside the field of view does not make it structured
    out = check_body_volumes(*vols(cw, cf), stations=6)
    assert flags(out) == ["body_input_constant"] and out[0].fatal and "1000" in out[0].detail
    bad = w.copy()
    bad[50, 40, 10] = np.nan
    out = check_body_volumes(*vols(bad, f), stations=6)
    assert flags(out) == ["body_input_nonfinite"] and out[0].fatal


@pytest.mark.parametrize("smooth", [0.0, 1.5])
def test_noise_without_anatomy_is_fatal(body, smooth):
    from scipy import ndimage

    rng = np.random.default_rng(5)
    shape = body[0].shape

    def rician():
        a = np.abs(rng.normal(300, 80, shape) + 1j * rng.normal(0, 80, shape))
        return ndimage.gaussian_filter(a, smooth) if smooth else a

    out = check_body_volumes(*vols(rician(), rician()), stations=6)
    assert flags(out) == ["body_input_noise"] and out[0].fatal
    assert re.search(r"correlation .* 20 mm apart", out[0].detail)


def test_one_blank_channel_and_identical_channels_are_fatal(body):
    w, f = body
    assert flags(check_body_volumes(*vols(np.zeros_like(w), f), stations=6)) == ["body_water_blank"]
    assert flags(check_body_volumes(*vols(w, np.full_like(f, 5.0)), stations=6)) == ["body_fat_blank"]
    out = check_body_volumes(*vols(w, w.copy()), stations=6)
    assert flags(out) == ["body_wf_identical"] and out[0].fatal


def test_fat_water_swap_whole_and_partial(body):
    w, f = body
    out = check_body_volumes(*vols(f, w), stations=6)
    assert flags(out) == ["body_fat_water_swap"] and not out[0].fatal
    w2, f2 = w.copy(), f.copy()
    w2[:, :, :25], f2[:, :, :25] = f[:, :, :25], w[:, :, :25]  # the lowest quarter (one station) swapped
    out = check_body_volumes(*vols(w2, f2), stations=6)
    assert flags(out) == ["body_fat_water_swap_partial"] and not out[0].fatal
    # the preprocessing heuristic's verdict counts only where no slab is clear
    assert check_body_volumes(*vols(w, f), stations=6, swap_suspected=True) == []


def test_preprocessing_swap_verdict_used_when_slabs_cannot_tell(body, monkeypatch):
    monkeypatch.setattr(qc, "swap_profile", lambda w, f: (np.array([0.02, -0.03, np.nan]), np.zeros(3)))
    assert check_body_volumes(*vols(*body), stations=6) == []
    out = check_body_volumes(*vols(*body), stations=6, swap_suspected=True)
    assert flags(out) == ["body_fat_water_swap"] and "preprocessing heuristic" in out[0].detail


def test_implausible_body_mask(body):
    w, f = body
    box = np.zeros(w.shape, bool)
    box[100:120, 30:50, 40:52] = True  # a 6 x 6 x 6 cm piece of the body's side: ~0.2 L of tissue
    small_w, small_f = np.where(box, w, 0), np.where(box, f, 0)
    out = check_body_volumes(*vols(small_w, small_f), stations=6)
    assert "body_mask_implausible" in flags(out) and not any(x.fatal for x in out)
    assert re.search(r"body mask 0\.\d+ L \(expected 15-250 L\)", out[0].detail), out[0].detail
    short_w, short_f = w.copy(), f.copy()
    short_w[:, :, 30:], short_f[:, :, 30:] = 0, 0  # body in 30 % of the head-foot range
    out = check_body_volumes(*vols(short_w, short_f), stations=6)
    assert "body_mask_implausible" in flags(out)
    assert "head-foot range" in next(x.detail for x in out if x.flag == "body_mask_implausible")


def test_implausible_water_fat_contrast(body):
    w, f = body
    s = w + f
    rng = np.random.default_rng(2)
    ff = np.clip(rng.normal(0.5, 0.05, s.shape), 0.35, 0.65)  # every voxel half fat: no tissue classes
    out = check_body_volumes(*vols(s * (1 - ff), s * ff), stations=6)
    assert flags(out) == ["body_wf_contrast_implausible"] and not out[0].fatal


def test_station_findings_from_counts_and_preprocessing_warnings(body):
    v = vols(*body)
    notes = (
        "station W#13/F#12 (Dixon_BH_17s_W): water (44, 174, 224) and fat (44, 175, 224) differ in size; "
        "cropped to (44, 174, 224)",
        "duplicate station (re-scan): series W#[9, 13] cover the same z range; kept the most recent, W#13",
        "no overlap between stations 3 and 4 (gap of 2 slices)",
        "only 5 of 6 stations present; fused with what is there",
    )
    out = check_body_volumes(*v, stations=5, warnings=notes)
    assert sorted(flags(out)) == sorted(
        ["body_station_missing", "body_wf_size_mismatch", "body_station_rescanned", "body_station_gap"]
    )
    assert not any(x.fatal for x in out)
    assert "5 of 6 stations" in out[0].detail
    out = check_body_volumes(*v, stations=4)
    assert flags(out) == ["body_station_missing"] and out[0].fatal


def test_findings_are_documented_and_fatal_ones_raise():
    with pytest.raises(ValueError, match="undocumented"):
        QcFinding("body_something_new", False, "x")
    doc = DOCS.read_text()
    missing = [name for name in FLAGS if f"`{name}`" not in doc]
    assert not missing, f"flags not in docs/qc_flags.md: {missing}"
    raise_if_fatal([QcFinding("body_station_gap", False, "a gap")])
    with pytest.raises(QualityCheckError, match=r"^x\.zip: body_input_blank: water \+ fat is 0"):
        raise_if_fatal([QcFinding("body_input_blank", True, "water + fat is 0 everywhere")], path="x.zip")


# -- MIMIR image ----------------------------------------------------------------------------------------
def test_body_image_checks(body):
    from ukbmri.preprocess.mimir2d import mimir_image

    w, f = body
    w2 = np.concatenate([w, np.zeros((120, 25, 100), np.float32)], axis=1)  # room for the 22 bed rows
    f2 = np.concatenate([f, np.zeros((120, 25, 100), np.float32)], axis=1)
    img = mimir_image(w2, f2)
    assert check_body_image(img) == []
    assert flags(check_body_image(np.zeros((3, 256, 256), np.uint8))) == ["body_image_blank", "body_image_blank"]
    noise = np.random.default_rng(0).integers(0, 256, (3, 256, 256)).astype(np.uint8)
    out = check_body_image(noise)
    assert flags(out) == ["body_image_noise"] and out[0].fatal
    assert flags(check_body_image(img[:, :128])) == ["body_image_invalid"]
    assert flags(check_body_image(img.astype(np.float32))) == ["body_image_invalid"]


# -- liver echoes -----------------------------------------------------------------------------------------
def liver_echoes(n=6, shape=(64, 48), r2=40.0, dte_ms=2.3):
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    body = ((x - shape[0] / 2) / (shape[0] * 0.42)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.4)) ** 2 < 1
    liver = ((x - shape[0] * 0.35) / 10.0) ** 2 + ((y - shape[1] * 0.5) / 8.0) ** 2 < 1
    te = dte_ms * (np.arange(n) + 1) / 1000.0
    s0 = np.where(body, 400.0, 8.0) + np.where(liver, 200.0, 0.0)
    rng = np.random.default_rng(1)
    return np.stack([s0 * np.exp(-r2 * t) + np.abs(rng.normal(0, 5, shape)) for t in te], axis=-1)


def test_multiecho_clean_in_2d_and_3d_and_echo_axis():
    m = liver_echoes()
    assert check_multiecho(m, what="gre") == []
    assert check_multiecho(np.stack([m, m * 0.9], axis=2), what="stack") == []
    assert check_multiecho(np.moveaxis(m, -1, 0), what="C-first", echo_axis=0) == []


def test_multiecho_fatal_findings():
    m = liver_echoes()
    assert flags(check_multiecho(np.zeros_like(m), what="gre")) == ["liver_input_blank"]
    assert flags(check_multiecho(np.full_like(m, 77.0), what="gre")) == ["liver_input_constant"]
    one = m.copy()
    one[..., 3] = 0
    out = check_multiecho(one, what="20203")
    assert flags(out) == ["liver_echo_blank"] and out[0].fatal and "[4]" in out[0].detail
    noise = np.random.default_rng(3).uniform(0, 4095, m.shape)
    out = check_multiecho(noise, what="20254")
    assert flags(out) == ["liver_input_noise"] and out[0].detail.startswith("20254:")
    bad = m.copy()
    bad[1, 1, 0] = np.inf
    assert flags(check_multiecho(bad, what="gre")) == ["liver_input_nonfinite"]


def test_multiecho_flags():
    rising = liver_echoes(r2=-200.0)  # signal growing with echo time
    out = check_multiecho(rising, what="gre")
    assert flags(out) == ["liver_echo_decay_implausible"] and not out[0].fatal
    sat = liver_echoes() * 20.0
    sat = np.minimum(sat, 4095.0)  # 12-bit clipping
    assert "liver_saturated" in flags(check_multiecho(sat, what="gre"))


def test_multiecho_real_ismrm_cases_pass(real_data_dir):
    from ukbmri.io.ismrm import read_ismrm

    for case in ("12.mat", "17.mat"):
        data, _ = read_ismrm(real_data_dir / case)
        mag = np.abs(data.images)
        out = check_multiecho(mag, what=case)
        assert not any(x.fatal for x in out), out
        noise = np.random.default_rng(0).permutation(mag.ravel()).reshape(mag.shape)  # same values, no structure
        assert flags(check_multiecho(noise, what=case)) == ["liver_input_noise"]


# -- predictions ------------------------------------------------------------------------------------------
def test_physical_bounds():
    inf = math.inf
    assert physical_bounds("sex", "(male = 1)") == (0.0, 1.0)
    assert physical_bounds("liver_pdff", "%") == (0.0, 100.0)
    assert physical_bounds("DxaTrunkTissueFatPercentage", "%") == (0.0, 100.0)
    for unit in ("L", "kg", "cm", "L/m2", "kg/L", "L/L", "years", "g", "bpm"):
        assert physical_bounds("x", unit) == (0.0, inf), unit
    assert physical_bounds("something", "a.u.") == (-inf, inf)


def test_clip_to_physical_keeps_coverage_and_moves_the_mean_in():
    m, lo, hi = clip_to_physical("vat", "L", np.array([-2.04, 0.3]), np.array([-2.27, -0.1]), np.array([-1.80, 0.7]))
    np.testing.assert_allclose(m, [0.0, 0.3])
    np.testing.assert_allclose(lo, [0.0, 0.0])
    np.testing.assert_allclose(hi, [0.0, 0.7])
    m, lo, hi = clip_to_physical("sex", "(male = 1)", np.array([1.5, np.nan]), np.array([1.2, np.nan]),
                                 np.array([1.8, np.nan]))
    assert m[0] == lo[0] == hi[0] == 1.0 and np.isnan(m[1])


def demo_like_module(divisor=1.0):
    t = lambda name, unit: SimpleNamespace(name=name, unit=unit, divisor=divisor)  # noqa: E731
    return SimpleNamespace(
        targets=(t("weight", "kg"), t("sex", "(male = 1)"), t("vat", "L")),
        mean=np.array([75.7, 0.425, 3.34]) * divisor,
        sd=np.array([13.9, 0.496, 2.73]) * divisor,
    )


def test_check_predictions_flags_each_problem():
    mod = demo_like_module()
    mean = np.array([[76.0, 0.9, 3.0], [76.0, 1.5, -2.04], [210.0, 0.4, 3.0], [np.nan, 0.5, 3.0]])
    half = np.array([[2.0, 0.05, 0.3], [2.0, 0.05, 0.235], [2.0, 0.05, 6.0], [2.0, 0.05, 0.3]])
    out = check_predictions(mod, mean, mean - half, mean + half)
    assert out[0] == []
    assert flags(out[1]) == ["pred_physically_impossible", "pred_physically_impossible"]
    assert out[1][0].detail.startswith("sex: 1.5 (male = 1)") and "vat: -2.04 L" in out[1][1].detail
    assert flags(out[2]) == ["pred_outside_training_range", "pred_interval_uninformative"]
    assert "weight: 210 kg outside the training range 20.1..131.3 kg" in out[2][0].detail
    assert flags(out[3]) == ["pred_nonfinite"] and not any(x.fatal for r in out for x in r)


def test_check_predictions_applies_the_divisor():
    mod = demo_like_module(divisor=10.0)  # training constants in 10x units, outputs divided by 10
    mean = np.array([[76.0, 0.5, 3.0]])
    assert check_predictions(mod, mean, mean - 0.01, mean + 0.01) == [[]]
    out = check_predictions(mod, np.array([[150.0, 0.5, 3.0]]), np.array([[149.0, 0.49, 2.9]]),
                            np.array([[151.0, 0.51, 3.1]]))
    assert flags(out[0]) == ["pred_outside_training_range"] and "20.1..131.3 kg" in out[0][0].detail
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        check_predictions(mod, mean[:, :2], mean[:, :2], mean[:, :2])


def test_lag_correlation_basics():
    a = np.tile(np.arange(10.0), (4, 1))
    assert qc.lag_correlation(a, 1, 1) == pytest.approx(1.0)
    assert qc.lag_correlation(np.ones((5, 5)), 0, 1) == 0.0
    assert qc.lag_correlation(np.ones((1, 5)), 0, 1) == 0.0


def test_physical_predictions_interval_flags_and_clipping():
    from ukbmri.infer.postprocess import physical_predictions

    mod = demo_like_module()
    mean = np.array([[76.0, 1.5, -2.04]])
    var = np.array([[4.0, 0.0001, (0.235 / 1.959964) ** 2]])
    m, lo, hi, found = physical_predictions(mod, mean, var)
    np.testing.assert_allclose(m, [[76.0, 1.0, 0.0]])
    np.testing.assert_allclose(lo, [[76.0 - 1.959964 * 2.0, 1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(hi[0, 2], 0.0)
    assert flags(found[0]) == ["pred_physically_impossible", "pred_physically_impossible"]
    assert "vat: -2.04 L (interval -2.275..-1.805)" in found[0][1].detail
