"""Phantom geometry, shape primitives, signal helpers and the DICOM encoder."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage

from ukbmri.physics.spectrum import signal
from ukbmri.synth.dicomenc import IMPLEMENTATION_UID, SeriesEncoder, format_ds, make_uid
from ukbmri.synth.shapes import Capsule, Ellipsoid, EllipticTube
from ukbmri.synth.signal import decode_phase, dixon_images, encode_phase
from ukbmri.synth.tissues import Label, tissue_table


def test_points_and_grid_evaluation_agree(plain):
    ph = plain["phantom"]
    lm = ph.landmarks
    rng = np.random.default_rng(0)
    xs = np.sort(rng.uniform(-240, 240, 37))
    ys = np.sort(rng.uniform(ph.y_back - 330, ph.y_back + 30, 29))
    zs = np.sort(rng.uniform(lm["z_knee"], lm["z_chin"], 31))[::-1]  # descending works too
    grid = ph.labels_grid(xs, ys, zs)
    Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
    pts = ph.labels_points(np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)).reshape(grid.shape)
    np.testing.assert_array_equal(grid, pts)
    assert len(np.unique(grid)) > 8


def test_organ_positions(plain):
    ph = plain["phantom"]
    lm = ph.landmarks

    def centroid(label, step=4.0):
        lo, hi = ph.label_bounds(label)
        axes = [np.arange(lo[i], hi[i], step) for i in range(3)]
        lab = ph.labels_grid(*axes)
        iz, iy, ix = np.nonzero(lab == label)
        return np.array([axes[0][ix].mean(), axes[1][iy].mean(), axes[2][iz].mean()])

    liver, spleen, kidney = centroid(Label.LIVER), centroid(Label.SPLEEN), centroid(Label.KIDNEY)
    x_mid = lm["x_body"]
    assert liver[0] < x_mid - 20  # patient right = negative x (LPS)
    assert spleen[0] > x_mid + 40
    assert kidney[1] > liver[1]  # kidneys posterior
    assert lm["z_umbilicus"] < liver[2] < lm["z_liver_top"]
    assert lm["z_hip_joint"] < kidney[2] < liver[2]
    # vessels run through the liver region (ROI finders must avoid them)
    lo, hi = ph.label_bounds(Label.LIVER)
    box = ph.labels_grid(np.arange(lo[0], hi[0], 2.0), np.arange(lo[1], hi[1], 2.0), np.arange(lo[2], hi[2], 2.0))
    liver_n = (box == Label.LIVER).sum()
    assert 0.005 * liver_n < (box == Label.VESSEL).sum()


def test_shapes():
    tube = EllipticTube(np.array([0.0, 10.0]), np.zeros(2), np.zeros(2), np.array([4.0, 8.0]), np.array([2.0, 2.0]))
    assert tube.inside(np.array([5.9]), np.array([0.0]), np.array([5.0]))[0]
    assert not tube.inside(np.array([6.1]), np.array([0.0]), np.array([5.0]))[0]
    assert not tube.inside(np.array([0.0]), np.array([0.0]), np.array([10.5]))[0]
    part = tube.clip(2.0, 7.0)
    assert part.z[0] == 2.0 and part.z[-1] == 7.0 and part.a[0] == pytest.approx(4.8)
    e = Ellipsoid((0, 0, 0), (10, 5, 2), angle_deg=90)
    assert e.inside(np.array([0.0]), np.array([9.0]), np.array([0.0]))[0]  # rotated: long axis along y
    assert not e.inside(np.array([9.0]), np.array([0.0]), np.array([0.0]))[0]
    c = Capsule((0, 0, 0), (0, 0, 10), 1.0)
    assert c.inside(np.array([0.9, 0.0, 0.0]), np.array([0.0, 0.0, 0.0]), np.array([5.0, 10.9, 11.1])).tolist() == [True, True, False]


def test_phase_round_trip():
    phase = np.linspace(-np.pi, np.pi, 1001)
    stored = encode_phase(phase)
    assert stored.min() >= 0 and stored.max() <= 4095
    err = np.angle(np.exp(1j * (decode_phase(stored) - phase)))
    assert np.abs(err).max() <= np.pi / 2048 + 1e-12


def test_dixon_images_physics():
    table = tissue_table(liver_pdff_percent=10.0, liver_r2star_per_s=40.0, muscle_fat_percent=5.0)
    labels = np.full((4, 64, 64), Label.SAT, dtype=np.uint8)
    labels[:2] = Label.CSF
    imgs = dixon_images(labels, table, np.ones(labels.shape, np.float32), np.random.default_rng(0), gain=1000.0, sigma=1.0)
    w, f = imgs["W"].astype(float), imgs["F"].astype(float)
    # CSF is pure water: F small, W ~ gain * PD * decay at the echoes
    expected = 1000.0 * np.abs(signal(0.95, 0.0, 4.0, np.array([2.39e-3, 4.77e-3]), 1.5)).mean()
    assert w[:2].mean() == pytest.approx(expected, rel=0.02)
    assert f[:2].mean() < 0.02 * w[:2].mean()
    assert f[2:].mean() > 4 * w[2:].mean()  # adipose
    assert imgs["in"][2:].mean() > imgs["opp"][2:].mean()


def test_uids_and_decimal_strings():
    a, b = make_uid("x", 1), make_uid("x", 2)
    assert a == make_uid("x", 1) and a != b
    assert len(a) == len(b) == 43 and UID(a).is_valid
    assert format_ds(-1234.5678912345) == "-1234.567891"
    assert len(format_ds(123456789.123456)) <= 16 and format_ds(-0.0000001) == "0"


def test_series_encoder_matches_dcmwrite():
    t = Dataset()
    t.SOPClassUID = MRImageStorage
    t.Modality = "MR"
    t.SeriesDescription = "Dixon_noBH_W"
    t.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    t.Rows, t.Columns = 5, 7
    t.BitsAllocated, t.BitsStored, t.HighBit, t.PixelRepresentation = 16, 12, 11, 0
    t.SamplesPerPixel, t.PhotometricInterpretation = 1, "MONOCHROME2"
    enc = SeriesEncoder(t, ["InstanceNumber", "ImagePositionPatient", "EchoTime"])
    px = np.arange(35, dtype=np.uint16).reshape(5, 7) * 100
    values = {"SOPInstanceUID": make_uid("t"), "InstanceNumber": 3, "ImagePositionPatient": ["1", "2", "-3.5"], "EchoTime": "2.39"}
    data = enc.encode(px, values)
    ref = Dataset()
    for elem in t:
        ref.add(elem)
    for k, v in values.items():
        setattr(ref, k, v)
    ref.PixelData = px.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = values["SOPInstanceUID"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "UKBMRI_SYNTH_1"
    ref.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ref, enforce_file_format=True)
    assert data == buf.getvalue()
    back = pydicom.dcmread(io.BytesIO(data))
    np.testing.assert_array_equal(back.pixel_array, px)
    with pytest.raises(ValueError):
        enc.encode(px[:4], values)
