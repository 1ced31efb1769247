"""Liver training sets: labels tables, zips (failing zip reported), ml4h hd5 files in both layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ukbmri.errors import InputError, TargetsError
from ukbmri.io.hd5 import write_label, write_ml4h_tensor
from ukbmri.io.reader import read_zip
from ukbmri.preprocess.liver_tensors import gre_tensor, pad_crop_top_left, zero_mean_std1
from ukbmri.train.liver_fit import LiverTrainConfig, _loss, fit_liver, init_keras_
from ukbmri.infer.liver_nets import build_liver_model
from ukbmri.train.liver_data import (
    STORAGE_DTYPE,
    LiverData,
    build_liver_data,
    load_liver_data,
    read_label_table,
    save_liver_data,
)


# --------------------------------------------------------------------------- labels
def test_label_table_missing_values_stay_nan_and_zero_is_a_value(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("eid,liver_pdff_percent,other\n1,0.0,a\n2,,b\n3,NA,c\n4,7.25,d\n")
    t = read_label_table(p)
    assert t.lookup(1, 2) == 0.0  # a true 0 % reading is kept
    assert np.isnan(t.lookup(2, 2)) and np.isnan(t.lookup(3, 2))
    assert t.lookup(4, 3) == 7.25  # no instance column: any instance
    assert np.isnan(t.lookup(99, 2))  # unknown participant: missing


def test_label_table_showcase_column_takes_the_instance_from_its_name(tmp_path):
    p = tmp_path / "ukb.csv"
    p.write_text("eid,22402-2.0,22402-3.0\n1,3.5,4.0\n2,,1.0\n")
    t = read_label_table(p, "22402-2.0")
    assert t.lookup(1, 2) == 3.5 and np.isnan(t.lookup(1, 3)) and np.isnan(t.lookup(2, 2))
    t3 = read_label_table(p, "22402-3.0")
    assert t3.lookup(1, 3) == 4.0 and np.isnan(t3.lookup(1, 2))


def test_label_table_with_instance_column(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("eid,instance,liver_pdff_percent\n1,2,3.0\n1,3,4.0\n")
    t = read_label_table(p)
    assert t.lookup(1, 2) == 3.0 and t.lookup(1, 3) == 4.0


@pytest.mark.parametrize(
    "text, column, match",
    [
        ("eid,x\n1,2\n", "liver_pdff_percent", "label column"),
        ("id,liver_pdff_percent\n1,2\n", "liver_pdff_percent", "eid"),
        ("eid,liver_pdff_percent\n1,abc\n", "liver_pdff_percent", "not a number"),
        ("eid,liver_pdff_percent\n1,-3\n", "liver_pdff_percent", "valid range"),
        ("eid,liver_pdff_percent\n1,101\n", "liver_pdff_percent", "valid range"),
        ("eid,liver_pdff_percent\n1,2\n1,3\n", "liver_pdff_percent", "twice"),
        ("eid,instance,liver_pdff_percent\n1,,2\n1,2,3\n", "liver_pdff_percent", "twice"),
    ],
)
def test_label_table_errors(tmp_path, text, column, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(TargetsError, match=match):
        read_label_table(p, column)


# --------------------------------------------------------------------------- masking
def test_nan_labels_contribute_nothing_to_the_loss():
    out = torch.tensor([[0.3, -0.2], [1.0, 0.5], [-2.0, 0.1]], requires_grad=True)
    y = torch.tensor([0.1, float("nan"), -1.0])
    for mv in (False, True):
        loss = _loss(out, y, None, mv)
        loss.backward()
        assert torch.all(out.grad[1] == 0) and torch.isfinite(out.grad).all()
        ref = _loss(out[[0, 2]].detach(), y[[0, 2]], None, mv)
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
        out.grad = None
    # 0.0 is a label, not a sentinel: it changes the loss
    y0 = torch.tensor([0.1, 0.0, -1.0])
    assert _loss(out, y0, None, False).item() != pytest.approx(_loss(out, y, None, False).item())


def test_unlabelled_rows_never_enter_training():
    """Training with extra unlabelled rows (garbage inputs) gives exactly the same network."""
    rng = np.random.default_rng(0)
    n = 10
    x = rng.normal(size=(n, 10, 16, 16)).astype(np.float16)
    y = rng.normal(size=n)
    groups = np.arange(n).astype(str)
    cfg = LiverTrainConfig(epochs=2, patience=5, batch_size=4, validation_fraction=0.2, mean_variance=True)

    def trained(xx, yy, gg):
        m = init_keras_(build_liver_model("teacher", mean_variance=True, input_shape=(10, 16, 16)),
                        torch.Generator().manual_seed(3))
        fit_liver(m, xx, yy, gg, cfg=cfg, seed=11)
        return m

    a = trained(x, y, groups)
    at = [0, 3, 3, 7]  # unlabelled rows interleaved; the labelled rows keep their order
    x_big = np.insert(x, at, rng.normal(size=(4, 10, 16, 16)).astype(np.float16) * 100, axis=0)
    y_big = np.insert(y, at, np.nan)
    b = trained(x_big, y_big, np.insert(groups, at, ["u1", "u2", "u3", "u4"]))
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)


# --------------------------------------------------------------------------- zips
def test_build_from_zips_reports_the_failing_zip(liver_cohort):
    folder = liver_cohort["folder"]
    data = build_liver_data([folder], kind="teacher", labels=liver_cohort["truth"], input_hw=(16, 16))
    assert data.eids.tolist() == liver_cohort["eids"]  # sorted, the 20254 zips were not taken
    assert data.instances.tolist() == [2] * 8
    assert data.x.dtype == STORAGE_DTYPE and data.x.shape == (8, 10, 16, 16)
    assert [f.eid for f in data.failures] == [1000009]
    assert data.failures[0].error == "NotAZipError"
    expected = [liver_cohort["pdff"][e] for e in liver_cohort["eids"][:-1]]
    np.testing.assert_allclose(data.labels[:-1], expected)
    assert np.isnan(data.labels[-1])  # missing label stays missing
    # the stored tensor is ZeroMeanStd1 of the (cropped) GRE tensor, to float16 precision
    raw = pad_crop_top_left(gre_tensor(read_zip(folder / "1000003_20203_2_0.zip")), (10, 16, 16))
    np.testing.assert_allclose(data.x[2].astype(np.float64), zero_mean_std1(raw), rtol=2e-3, atol=2e-3)


def test_build_student_data_in_parallel(liver_cohort):
    data = build_liver_data([liver_cohort["folder"]], kind="student", input_hw=(16, 16), workers=2)
    assert data.x.shape == (8, 36, 16, 16)
    assert data.failures == () and data.label_source is None and np.isnan(data.labels).all()


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "1_20203_2_0.zip").write_bytes(b"junk")
    with pytest.raises(InputError, match="could be read"):
        build_liver_data([tmp_path], kind="teacher")
    with pytest.raises(InputError, match="no such"):
        build_liver_data([tmp_path / "absent"], kind="teacher")


# --------------------------------------------------------------------------- hd5
def test_build_from_ml4h_hd5_in_both_layouts(tmp_path):
    rng = np.random.default_rng(5)
    t = {k: rng.random((10, 24, 20)).astype(np.float32) * 100 for k in ("a2", "a3", "b")}
    write_ml4h_tensor(tmp_path / "1000001.hd5", "gre_mullti_echo_10_te_liver", t["a2"], instance=2)
    write_ml4h_tensor(tmp_path / "1000001.hd5", "gre_mullti_echo_10_te_liver", t["a3"], instance=3)
    write_label(tmp_path / "1000001.hd5", "liver_fat", 6.5)
    write_ml4h_tensor(tmp_path / "1000002.hd5", "gre_mullti_echo_10_te_liver", t["b"], layout="root")
    write_ml4h_tensor(tmp_path / "1000003.hd5", "lms_ideal_optimised_low_flip_6dyn",
                      rng.random((36, 8, 8)).astype(np.float32))  # no GRE tensor: a failure
    data = build_liver_data([tmp_path], kind="teacher", input_hw=(16, 16))
    assert data.keys == [(1000001, 2), (1000001, 3), (1000002, 2)]
    np.testing.assert_allclose(data.labels[:2], 6.5)  # /continuous/liver_fat applies to the participant
    assert np.isnan(data.labels[2])
    assert data.label_source.startswith("hd5")
    assert [f.eid for f in data.failures] == [1000003] and data.failures[0].error == "TensorError"
    for row, key in ((0, "a2"), (1, "a3"), (2, "b")):
        want = zero_mean_std1(pad_crop_top_left(t[key], (10, 16, 16)))
        np.testing.assert_allclose(data.x[row].astype(np.float64), want, rtol=2e-3, atol=2e-3)
    # a labels table replaces the hd5 labels
    table = tmp_path / "labels.csv"
    pd.DataFrame({"eid": [1000002], "instance": [2], "liver_pdff_percent": [1.25]}).to_csv(table, index=False)
    data2 = build_liver_data([tmp_path], kind="teacher", labels=table, input_hw=(16, 16))
    assert np.isnan(data2.labels[:2]).all() and data2.labels[2] == 1.25


def test_hd5_labels_by_default_are_ml4h_names_per_instance(tmp_path):
    """ml4h (and ``ukbmri ml4h tensorize --labels``) write /continuous/22402_Liver-fat-percentage_<k>_0:
    read per instance by default, a participant-level liver_fat only where that is absent."""
    rng = np.random.default_rng(6)
    for eid in (1000001, 1000002):
        for k in (2, 3):
            write_ml4h_tensor(tmp_path / f"{eid}.hd5", "gre_mullti_echo_10_te_liver",
                              rng.random((10, 12, 12)).astype(np.float32), instance=k)
    write_label(tmp_path / "1000001.hd5", "22402_Liver-fat-percentage_2_0", 4.0)
    write_label(tmp_path / "1000001.hd5", "22402_Liver-fat-percentage_3_0", 7.5)
    write_label(tmp_path / "1000002.hd5", "22402_Liver-fat-percentage_3_0", 12.0)
    write_label(tmp_path / "1000002.hd5", "liver_fat", 2.0)
    data = build_liver_data([tmp_path], kind="teacher", input_hw=(16, 16))
    assert data.keys == [(1000001, 2), (1000001, 3), (1000002, 2), (1000002, 3)]
    np.testing.assert_allclose(data.labels, [4.0, 7.5, 2.0, 12.0])
    assert "22402_Liver-fat-percentage" in data.label_source
    # a given name is read for every instance; None reads none
    np.testing.assert_allclose(build_liver_data([tmp_path], kind="teacher", hd5_label="liver_fat",
                                                input_hw=(16, 16)).labels, [np.nan, np.nan, 2.0, 2.0])
    assert np.isnan(build_liver_data([tmp_path], kind="teacher", hd5_label=None, input_hw=(16, 16)).labels).all()
    write_label(tmp_path / "1000002.hd5", "22402_Liver-fat-percentage_2_0", 140.0)  # outside 0..100 %
    data = build_liver_data([tmp_path], kind="teacher", input_hw=(16, 16))
    assert [f.eid for f in data.failures] == [1000002] and "22402_Liver-fat-percentage_2_0" in data.failures[0].message


def test_save_and_load_liver_data(tmp_path, liver_cohort):
    data = build_liver_data([liver_cohort["folder"]], kind="teacher", labels=liver_cohort["truth"],
                            input_hw=(16, 16))
    back = load_liver_data(save_liver_data(data, tmp_path / "d.npz"))
    np.testing.assert_array_equal(back.x, data.x)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.keys == data.keys and back.sources == data.sources and back.kind == "teacher"
    assert [f.one_line() for f in back.failures] == [f.one_line() for f in data.failures]


def test_collapsed_networks_are_detected_and_reinitialised(monkeypatch):
    """A network that predicts a constant is re-initialised with the next seed and trained again."""
    import ukbmri.train.liver_fit as tl
    from ukbmri.train.liver_fit import fit_alive, is_collapsed

    rng = np.random.default_rng(1)
    n = 12
    x = rng.normal(size=(n, 10, 16, 16)).astype(np.float16)
    data = LiverData(x, np.arange(n), np.full(n, 2), tuple(map(str, range(n))), rng.normal(size=n), "teacher")
    y = rng.normal(size=n)
    cfg = LiverTrainConfig(epochs=1, patience=5, batch_size=4, validation_fraction=0.2, mean_variance=True)
    real_fit, seen = tl.fit_liver, []

    def fit_killing_the_first(model, *args, **kwargs):
        hist = real_fit(model, *args, **kwargs)
        seen.append(next(model.parameters()).detach().clone())
        if len(seen) == 1:  # every ReLU dead: zero the first convolution
            with torch.no_grad():
                for p in list(model.parameters())[:2]:
                    p.zero_()
            assert is_collapsed(model, x)
        return hist

    monkeypatch.setattr(tl, "fit_liver", fit_killing_the_first)
    model, hist = fit_alive("teacher", data, y, data.eids.astype(str), cfg=cfg, init_seed=5, fit_seed=6)
    assert hist.restarts == 1 and len(seen) == 2
    assert not torch.equal(seen[0], seen[1])  # a different initialisation
    assert not is_collapsed(model, x)
