"""ml4h-layout hd5 tensors from liver zips: layout, 12-bit routing, labels, round trip, the CLI."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.errors import LiverInputError
from ukbmri.io import read_zip
from ukbmri.io.hd5 import read_label, read_ml4h_tensor
from ukbmri.preprocess.liver_tensors import GRE_SHAPE, IDEAL_SHAPE, gre_tensor, ideal_tensor, pad_crop_top_left
from ukbmri.preprocess.ml4h_tensorize import (
    find_liver_visits,
    ml4h_tensors_from_zip,
    read_label_table,
    tensorize_liver,
)

GRE = "gre_mullti_echo_10_te_liver"
IDEAL = "lms_ideal_optimised_low_flip_6dyn"
TES = np.round(2.38 * np.arange(1, 11), 2)


def _with_largest(data: bytes, value: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(0x00280107, "US", value)  # LargestImagePixelValue
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def gre_zip(ld, path, *, base=100, phase=True, largest=None):
    """10 magnitude echoes (InstanceNumber in TE order, pixel (0, 0) marks the echo) + 12-bit phase."""
    rng = np.random.default_rng(0)
    images, uid_m, uid_p = [], ld.generate_uid(), ld.generate_uid()
    for k in range(10):
        mag = (base + 10 * k + rng.integers(0, 5, (12, 14))).astype(np.uint16)
        d = ld.dicom(desc="gre_mullti_echo_10_TE_liver", series_number=9, series_uid=uid_m,
                     instance=k + 1, echo_ms=float(TES[k]), magnitude=True, pixels=mag)  # fmt: skip
        images.append(d if largest is None else _with_largest(d, largest))
        if phase:
            images.append(ld.dicom(desc="gre_mullti_echo_10_TE_liver", series_number=9, series_uid=uid_p,
                                   instance=k + 1, echo_ms=float(TES[k]), magnitude=False,
                                   pixels=np.full((12, 14), 4000, np.uint16)))  # fmt: skip
    return ld.write_zip(path, images)


def ideal_zip(ld, path):
    images = []
    tes = [1.2, 3.2, 5.2, 7.2, 9.2, 11.2]
    for d in range(6):
        uid_m, uid_p = ld.generate_uid(), ld.generate_uid()
        for e in range(1, 7):
            px = np.full((8, 10), 100 * e + d, np.uint16)
            images.append(ld.dicom(desc="LMS IDEAL OPTIMISED LOW FLIP 6DYN", series_number=31 + 2 * d,
                                   series_uid=uid_m, instance=e, echo_ms=tes[e - 1], magnitude=True, pixels=px))
            images.append(ld.dicom(desc="LMS IDEAL OPTIMISED LOW FLIP 6DYN", series_number=32 + 2 * d,
                                   series_uid=uid_p, instance=e, echo_ms=tes[e - 1], magnitude=False,
                                   pixels=np.full((8, 10), 3000, np.uint16)))  # fmt: skip
    return ld.write_zip(path, images)


def test_gre_tensors_as_ml4h_writes_them(tmp_path, liver_dicom):
    z = gre_zip(liver_dicom, tmp_path / "1000001_20203_2_0.zip")
    tensors = {t.name: t for t in ml4h_tensors_from_zip(z)}
    assert sorted(tensors) == [GRE, GRE + "_12bit"]
    normal, phase = tensors[GRE], tensors[GRE + "_12bit"]
    assert normal.instance == 2 and normal.hwc.shape == (12, 14, 10) and normal.hwc.dtype == np.float32
    assert np.all(phase.hwc == 4000)  # raw stored values: RescaleSlope 2 / intercept -4096 not applied
    # same values as ukbmri's own tensor once TensorMap-padded (InstanceNumber order == TE order here)
    want = gre_tensor(read_zip(z))
    np.testing.assert_array_equal(pad_crop_top_left(np.moveaxis(normal.hwc, -1, 0), GRE_SHAPE), want)


def test_ideal_tensor_round_trip(tmp_path, liver_dicom):
    z = ideal_zip(liver_dicom, tmp_path / "1000002_20254_3_0.zip")
    summary = tensorize_liver([tmp_path], tmp_path / "hd5")
    assert summary.failures == [] and summary.written == [tmp_path / "hd5" / "1000002.hd5"]
    back = read_ml4h_tensor(summary.written[0], IDEAL, 3)
    assert back.shape == (36, 8, 10)
    np.testing.assert_array_equal(pad_crop_top_left(back, IDEAL_SHAPE), ideal_tensor(read_zip(z)))
    with h5py.File(summary.written[0], "r") as f:
        assert f[f"/ukb_liver_mri/{IDEAL}/instance_3"].compression == "gzip"
        assert f[f"/ukb_liver_mri/{IDEAL}/instance_3"].attrs["date"] == 1559520000.0  # 2019-06-03 UTC
        assert f[f"/mri_pixel_width_{IDEAL}"][()] == 2.5
        assert list(f[f"/mri_patient_position_{IDEAL}"][()]) == [-100.0, -80.0, 50.0]
        assert f"/ukb_liver_mri/{IDEAL}_12bit/instance_3" in f


def test_12bit_routing_follows_largest_image_pixel_value(tmp_path, liver_dicom):
    bright = gre_zip(liver_dicom, tmp_path / "1000001_20203_2_0.zip", base=2500, phase=False)
    assert [t.name for t in ml4h_tensors_from_zip(bright)] == [GRE + "_12bit"]  # never seen by the networks
    tagged = gre_zip(liver_dicom, tmp_path / "1000002_20203_2_0.zip", base=2500, phase=False, largest=2000)
    assert [t.name for t in ml4h_tensors_from_zip(tagged)] == [GRE]  # the tag decides, as in ml4h
    mixed = gre_zip(liver_dicom, tmp_path / "1000003_20203_2_0.zip", base=1990)  # echoes 7..10 above 2048
    with pytest.raises(LiverInputError, match="channel"):
        ml4h_tensors_from_zip(mixed)


def test_labels_table(tmp_path, liver_dicom):
    (tmp_path / "in" / "a").mkdir(parents=True)
    gre_zip(liver_dicom, tmp_path / "in" / "a" / "1000001_20203_2_0.zip")
    table = tmp_path / "labels.csv"
    table.write_text("eid,22402-2.0,liver_fat_teacher_percent,other\n1000001,4.5,,x\n1000009,1.0,2.0,y\n")
    labels = read_label_table(table)
    assert labels[1000001] == {None: {"22402_Liver-fat-percentage_2_0": 4.5}}
    out = tensorize_liver([tmp_path / "in"], tmp_path / "hd5", labels=labels).written[0]
    assert read_label(out, "22402_Liver-fat-percentage_2_0") == 4.5
    with h5py.File(out, "r") as f:
        assert "/continuous/liver_fat_sentinel_prediction" not in f  # missing stays missing (no sentinel 0.0)
    per_visit = tmp_path / "visits.csv"
    per_visit.write_text("eid,instance,liver_fat_teacher_percent\n1000001,3,9.0\n1000001,2,7.5\n")
    assert read_label_table(per_visit)[1000001][2] == {"liver_fat_sentinel_prediction": 7.5}


def test_cli_writes_good_participants_and_reports_bad_ones(tmp_path, liver_dicom):
    src = tmp_path / "zips" / "nested"
    src.mkdir(parents=True)
    gre_zip(liver_dicom, src / "1000001_20203_2_0.zip")
    ideal_zip(liver_dicom, src / "1000001_20254_2_0.zip")
    gre_zip(liver_dicom, src / "1000002_20203_2_0.zip")
    (src / "1000003_20203_2_0.zip").write_bytes(b"not a zip at all")
    (src / "scans.zip").write_bytes(b"unrelated")
    visits, unnamed = find_liver_visits([tmp_path / "zips"])
    assert [(v.eid, v.instance, len(v.zips)) for v in visits] == [(1000001, 2, 2), (1000002, 2, 1), (1000003, 2, 1)]
    assert unnamed == [src / "scans.zip"]
    out = tmp_path / "hd5"
    r = CliRunner().invoke(cli, ["preprocess", "liver", str(tmp_path / "zips"), "--hd5", str(out)])
    assert r.exit_code == 1, r.output
    assert sorted(p.name for p in out.glob("*.hd5")) == ["1000001.hd5", "1000002.hd5"]
    assert "1000003 visit 2: NotAZipError" in r.output and "skipped " in r.output
    assert "2 participant files written, 0 already there, 1 failed" in r.output
    assert "1000003" in (out / "failures.csv").read_text()
    with h5py.File(out / "1000001.hd5", "r") as f:
        assert {f"{GRE}", f"{GRE}_12bit", IDEAL, f"{IDEAL}_12bit"} == set(f["ukb_liver_mri"])
    again = CliRunner().invoke(cli, ["preprocess", "liver", str(src / "1000001_20203_2_0.zip"), "--hd5", str(out)])
    assert again.exit_code == 0 and "1 already there" in again.output
