"""hd5 tensor files in ml4h layout (current and root) and the liver TensorMaps."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ukbmri.errors import TensorError
from ukbmri.io.hd5 import list_tensors, read_label, read_ml4h_tensor, write_label, write_ml4h_tensor
from ukbmri.preprocess.tensormaps import (
    TENSOR_MAPS,
    denormalise_label,
    denormalise_variance,
    normalise_label,
)

GRE = "gre_mullti_echo_10_te_liver"


@pytest.fixture
def chw():
    return np.random.default_rng(0).normal(size=(10, 16, 12)).astype(np.float32)


def test_current_layout_round_trip_is_channels_last_on_disk(tmp_path, chw):
    p = tmp_path / "1000001.hd5"
    ds = write_ml4h_tensor(p, GRE, chw, instance=2)
    assert ds == f"/ukb_liver_mri/{GRE}/instance_2"
    with h5py.File(p, "r") as f:
        stored = f[ds][()]
    assert stored.shape == (16, 12, 10)  # (H, W, C) as ml4h
    np.testing.assert_array_equal(stored[..., 3], chw[3])
    back = read_ml4h_tensor(p, GRE)
    assert back.shape == chw.shape and back.dtype == np.float32
    np.testing.assert_array_equal(back, chw)


def test_root_layout_round_trip(tmp_path, chw):
    p = tmp_path / "old.hd5"
    assert write_ml4h_tensor(p, GRE, chw, layout="root") == f"/{GRE}"
    np.testing.assert_array_equal(read_ml4h_tensor(p, GRE), chw)
    with pytest.raises(TensorError, match="not found"):
        read_ml4h_tensor(p, GRE, instance=2)  # explicit instance: only the current layout


def test_reads_hd5_written_directly_by_h5py(tmp_path, chw):
    p = tmp_path / "ml4h.hd5"
    with h5py.File(p, "w") as f:  # as ml4h would write it
        f.create_dataset(f"ukb_liver_mri/{GRE}/instance_3", data=np.moveaxis(chw, 0, -1) + 1)
        f.create_dataset(f"ukb_liver_mri/{GRE}/instance_2", data=np.moveaxis(chw, 0, -1))
        f.create_dataset("continuous/liver_fat", data=[7.5])
    np.testing.assert_array_equal(read_ml4h_tensor(p, GRE), chw)  # lowest instance (2) by default
    np.testing.assert_array_equal(read_ml4h_tensor(p, GRE, instance=3), chw + 1)
    assert read_label(p, "liver_fat") == 7.5


def test_labels_and_listing_append_to_existing_file(tmp_path, chw):
    p = tmp_path / "a.hd5"
    write_ml4h_tensor(p, GRE, chw)
    write_label(p, "liver_fat", 12.25)
    write_ml4h_tensor(p, "lms_ideal_optimised_low_flip_6dyn", np.ones((36, 4, 4)), instance=3)
    assert read_label(p, "liver_fat") == 12.25
    assert list_tensors(p) == sorted(
        [
            "/continuous/liver_fat",
            f"/ukb_liver_mri/{GRE}/instance_2",
            "/ukb_liver_mri/lms_ideal_optimised_low_flip_6dyn/instance_3",
        ]
    )
    with pytest.raises(TensorError, match="already exists"):
        write_label(p, "liver_fat", 1.0)
    write_label(p, "liver_fat", 1.0, overwrite=True)
    assert read_label(p, "liver_fat") == 1.0


def test_missing_dataset_error_names_file_dataset_and_contents(tmp_path, chw):
    p = tmp_path / "b.hd5"
    write_label(p, "liver_fat", 3.0)
    with pytest.raises(TensorError) as e:
        read_ml4h_tensor(p, GRE, instance=2)
    msg = str(e.value)
    assert "b.hd5" in msg and f"/ukb_liver_mri/{GRE}/instance_2" in msg and "/continuous/liver_fat" in msg
    with pytest.raises(TensorError, match="label dataset not found"):
        read_label(p, "liver_fat_echo_predicted")


def test_shape_check_and_bad_inputs(tmp_path, chw):
    p = tmp_path / "c.hd5"
    write_ml4h_tensor(p, GRE, chw)
    with pytest.raises(TensorError, match="wrong shape"):
        read_ml4h_tensor(p, GRE, expect_shape=TENSOR_MAPS[GRE].shape)
    with pytest.raises(TensorError):
        write_ml4h_tensor(tmp_path / "d.hd5", GRE, np.ones((4, 4)))
    assert not (tmp_path / "d.hd5").exists()
    (tmp_path / "junk.hd5").write_bytes(b"not hdf5")
    with pytest.raises(TensorError, match="not a readable hd5"):
        read_ml4h_tensor(tmp_path / "junk.hd5", GRE)
    with pytest.raises(TensorError, match="not found"):
        read_ml4h_tensor(tmp_path / "absent.hd5", GRE)


def test_new_file_write_is_atomic(tmp_path, chw):
    p = tmp_path / "e.hd5"
    with pytest.raises(TypeError):
        write_ml4h_tensor(p, GRE, chw, dtype=object)  # fails inside the write
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file is left


# --------------------------------------------------------------------------- TensorMaps
def test_tensor_maps_registry():
    gre, ideal = TENSOR_MAPS[GRE], TENSOR_MAPS["lms_ideal_optimised_low_flip_6dyn"]
    assert gre.shape == (10, 160, 160) and gre.ml4h_shape == (160, 160, 10)
    assert ideal.shape == (36, 232, 256) and ideal.ml4h_shape == (232, 256, 36)
    assert ideal.channel_names[1] == "echo_1_dynamic_2" and ideal.channel_names[6] == "echo_2_dynamic_1"
    for name in ("liver_fat", "liver_fat_echo_predicted"):
        tm = TENSOR_MAPS[name]
        assert tm.loss == "logcosh" and tm.valid_range == (0.0, 100.0) and tm.hd5_group == "continuous"


def test_label_normalisation():
    assert normalise_label(3.91012) == pytest.approx(0.0)
    assert normalise_label(3.91012 + 4.64437) == pytest.approx(1.0)
    y = np.array([0.0, 2.2, 5.5, 40.0])
    np.testing.assert_allclose(denormalise_label(normalise_label(y)), y, rtol=1e-12)
    np.testing.assert_allclose(denormalise_label(1.0, "liver_fat_echo_predicted"), 8.55449)
    assert denormalise_variance(1.0) == pytest.approx(4.64437**2)
    with pytest.raises(KeyError, match="known"):
        normalise_label(1.0, "nope")


def test_input_map_normalise_is_zero_mean_std1():
    x = np.random.default_rng(1).uniform(0, 500, size=(10, 8, 8))
    y = TENSOR_MAPS[GRE].normalise(x)
    assert abs(y.mean()) < 1e-5 and y.std() == pytest.approx(1.0, abs=1e-5)


def test_label_maps_name_their_ml4h_datasets():
    from ukbmri.preprocess.tensormaps import get_tensor_map

    assert get_tensor_map("liver_fat").dataset_name == "22402_Liver-fat-percentage_2_0"
    assert get_tensor_map("liver_fat_echo_predicted").dataset_name == "liver_fat_sentinel_prediction"
    assert get_tensor_map("gre_mullti_echo_10_te_liver").dataset_name == "gre_mullti_echo_10_te_liver"
