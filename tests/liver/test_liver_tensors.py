"""ml4h liver tensors from Series / zip stand-ins: selection, ordering, pad/crop, normalisation, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ukbmri.errors import FieldMismatchError, LiverInputError, TensorError
from ukbmri.preprocess.liver_tensors import (
    echo_times_ms,
    gre_echoes,
    gre_tensor,
    ideal_channel,
    ideal_tensor,
    liver_tensor,
    pad_crop_top_left,
    slice_geometry,
    zero_mean_std1,
)

IDEAL_TES = [1.2, 3.2, 5.2, 7.2, 9.2, 11.2]


# --------------------------------------------------------------------------- GRE (20203)
def test_gre_tensor_orders_by_echo_time_and_ignores_phase(gre_zip):
    z = gre_zip(rows=150, cols=170, order_seed=3)
    t = gre_tensor(z)
    assert t.shape == (10, 160, 160) and t.dtype == np.float32
    tes = 2.38 * np.arange(1, 11)
    # echo c carries 100 * TE_c at pixel (0, 0): ascending TE, magnitude only (phase is 3000 everywhere)
    np.testing.assert_allclose(t[:, 0, 0], 100.0 * tes, rtol=1e-5)
    np.testing.assert_allclose(echo_times_ms(z), tes, atol=1e-6)
    # top-left: rows beyond 150 are zero padding, columns beyond 160 cropped away
    assert np.all(t[:, 150:, :] == 0)
    np.testing.assert_allclose(t[0, 149, 159], 100.0 * tes[0] + (149 + 159) / 1000.0, rtol=1e-6)


def test_gre_order_independent_of_storage_order(gre_zip):
    a = gre_tensor(gre_zip(order_seed=0))
    b = gre_tensor(gre_zip(order_seed=7))
    np.testing.assert_array_equal(a, b)


def test_gre_geometry(gre_zip):
    g = slice_geometry(gre_zip(rows=150, cols=170))
    assert g.pixel_spacing_mm == (2.5, 2.5)
    assert g.shape == (150, 170)
    assert g.field_strength_t == 1.5


def test_gre_nine_echoes_is_an_error(gre_zip):
    z = gre_zip(tes=2.38 * np.arange(1, 10))
    with pytest.raises(LiverInputError) as e:
        gre_tensor(z)
    msg = str(e.value)
    assert "1000001_20203_2_0.zip" in msg and "expected 10" in msg and "found 9" in msg


def test_gre_phase_only_is_an_error(gre_zip):
    with pytest.raises(LiverInputError, match="phase images only"):
        gre_tensor(gre_zip(with_magnitude=False))


def test_gre_duplicate_echo_times_is_an_error(gre_zip):
    tes = 2.38 * np.arange(1, 11)
    tes[5] = tes[4]
    with pytest.raises(LiverInputError, match="duplicate echo times"):
        gre_tensor(gre_zip(tes=tes))


def test_gre_missing_echo_time_is_an_error(gre_zip):
    tes = 2.38 * np.arange(1, 11)
    tes[2] = np.nan
    with pytest.raises(LiverInputError, match="EchoTime missing"):
        gre_tensor(gre_zip(tes=tes))


def test_gre_wrong_field(ideal_zip):
    with pytest.raises(FieldMismatchError) as e:
        gre_tensor(ideal_zip())
    assert "expected 20203" in str(e.value) and "found 20254" in str(e.value)


def test_gre_header_only_series_is_an_error(gre_zip):
    z = gre_zip()
    z = dataclasses.replace(z, series=tuple(s.with_pixels(None) for s in z.series))
    with pytest.raises(LiverInputError, match="without pixels"):
        gre_tensor(z)


def test_gre_echoes_keep_native_size(gre_zip):
    st = gre_echoes(gre_zip(rows=150, cols=170))
    assert st.images.shape == (10, 150, 170)
    assert np.all(np.diff(st.echo_times_ms) > 0)


# --------------------------------------------------------------------------- IDEAL (20254)
def test_ideal_channel_formula_on_shuffled_input(ideal_zip):
    z = ideal_zip(n0=20, rows=224, cols=260)
    t = ideal_tensor(z)
    assert t.shape == (36, 232, 256) and t.dtype == np.float32
    for echo in range(1, 7):
        for dyn in range(6):
            ch = 6 * (echo - 1) + dyn  # echo-major, as ml4h
            assert t[ch, 0, 0] == pytest.approx(1000.0 * echo + 10.0 * dyn)
            assert ideal_channel(echo, 20 + 2 * dyn, 20) == ch
    assert np.all(t[:, 224:, :] == 0)  # rows padded at the bottom, columns cropped at the right
    assert np.all(t[:, :224, :] > 0)
    np.testing.assert_allclose(echo_times_ms(z), IDEAL_TES)
    assert slice_geometry(z).pixel_spacing_mm == (1.72, 1.72)


def test_ideal_independent_of_series_order(ideal_zip):
    np.testing.assert_array_equal(ideal_tensor(ideal_zip(seed=1)), ideal_tensor(ideal_zip(seed=9)))


def test_ideal_missing_dynamic(ideal_zip):
    with pytest.raises(LiverInputError) as e:
        ideal_tensor(ideal_zip(drop_dynamic=3))
    assert "expected 6 magnitude series" in str(e.value) and "found 5" in str(e.value)


def test_ideal_series_number_gap(ideal_zip):
    with pytest.raises(LiverInputError, match="step by 2"):
        ideal_tensor(ideal_zip(numbers=[20, 22, 24, 28, 30, 32]))


def test_ideal_missing_echo(ideal_zip):
    with pytest.raises(LiverInputError, match="echoes 1..6"):
        ideal_tensor(ideal_zip(drop_echo=4))


def test_ideal_phase_only(ideal_zip):
    z = ideal_zip()
    z = dataclasses.replace(z, series=tuple(s for s in z.series if s.image_kind == "phase"))
    with pytest.raises(LiverInputError, match="phase images only"):
        ideal_tensor(z)


def test_liver_tensor_dispatch(gre_zip, ideal_zip):
    assert liver_tensor(gre_zip()).shape == (10, 160, 160)
    assert liver_tensor(ideal_zip()).shape == (36, 232, 256)
    z = dataclasses.replace(gre_zip(), field=20201)
    with pytest.raises(FieldMismatchError):
        liver_tensor(z)


# --------------------------------------------------------------------------- tensor ops
def test_pad_crop_top_left_not_centred():
    a = np.arange(1, 4 * 6 + 1, dtype=np.float32).reshape(4, 6)
    out = pad_crop_top_left(a, (6, 3))
    assert out.shape == (6, 3)
    np.testing.assert_array_equal(out[:4], a[:, :3])  # first columns kept, not the middle ones
    assert np.all(out[4:] == 0)  # padding at the end, not split around
    out3 = pad_crop_top_left(np.ones((2, 5, 5)), (3, 2, 8))
    assert out3.sum() == 2 * 2 * 5 and out3[2].sum() == 0 and out3[:, :, 5:].sum() == 0


def test_pad_crop_rejects_rank_mismatch():
    with pytest.raises(TensorError):
        pad_crop_top_left(np.ones((3, 3)), (3, 3, 3))


def test_zero_mean_std1_values():
    x = np.zeros((2, 4, 4), dtype=np.float32)
    x[0, :2, :2] = 8.0  # a small image plus zero padding: padding counts in the statistics
    y = zero_mean_std1(x)
    # mean = 4 * 8 / 32 = 1, std = sqrt((4 * 49 + 28 * 1) / 32) = sqrt(7)
    assert y.dtype == np.float32
    assert y[0, 0, 0] == pytest.approx(7.0 / np.sqrt(7.0), rel=1e-6)
    assert y[1, 3, 3] == pytest.approx(-1.0 / np.sqrt(7.0), rel=1e-6)
    assert abs(float(y.mean())) < 1e-6 and float(y.std()) == pytest.approx(1.0, abs=1e-5)


def test_zero_mean_std1_refuses_constant_and_nonfinite():
    with pytest.raises(TensorError, match="constant") as e:
        zero_mean_std1(np.full((2, 3, 3), 5.0), path="a.zip")
    assert "a.zip" in str(e.value)
    bad = np.ones((2, 3, 3))
    bad[0, 1, 1] = np.nan
    bad[1, 0, 0] = 2.0
    with pytest.raises(TensorError, match="non-finite"):
        zero_mean_std1(bad)
    bad[0, 1, 1] = np.inf
    with pytest.raises(TensorError, match="non-finite"):
        zero_mean_std1(bad)
