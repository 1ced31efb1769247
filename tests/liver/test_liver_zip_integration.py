"""End to end: tiny real DICOM zips (pydicom) -> ukbmri.io.read_zip -> liver tensors."""

from __future__ import annotations


import numpy as np
import pytest

from ukbmri.preprocess.liver_tensors import echo_times_ms, gre_tensor, ideal_tensor, slice_geometry

reader = pytest.importorskip("ukbmri.io.reader")


def test_gre_zip_to_tensor(tmp_path, liver_dicom):
    rng = np.random.default_rng(0)
    tes = np.round(2.38 * np.arange(1, 11), 2)
    order = rng.permutation(10)  # instance numbers do not follow TE
    images, uid_m, uid_p = [], liver_dicom.generate_uid(), liver_dicom.generate_uid()
    for k, e in enumerate(order):
        mag = np.full((12, 14), 100 + 10 * e, np.uint16)
        images.append(liver_dicom.dicom(desc="gre_mullti_echo_10_TE_liver", series_number=9, series_uid=uid_m,
                             instance=k + 1, echo_ms=float(tes[e]), magnitude=True, pixels=mag))  # fmt: skip
        phase = np.full((12, 14), 4000, np.uint16)  # > 2048: what a pixel threshold would misroute
        images.append(liver_dicom.dicom(desc="gre_mullti_echo_10_TE_liver", series_number=9, series_uid=uid_p,
                             instance=k + 1, echo_ms=float(tes[e]), magnitude=False, pixels=phase))  # fmt: skip
    p = tmp_path / "1000001_20203_2_0.zip"
    liver_dicom.write_zip(p, images)
    z = reader.read_zip(p)
    t = gre_tensor(z)
    assert t.shape == (10, 160, 160)
    np.testing.assert_allclose(t[:, 0, 0], 100 + 10 * np.arange(10))
    assert np.all(t[:, 12:, :] == 0) and np.all(t[:, :, 14:] == 0)
    np.testing.assert_allclose(echo_times_ms(z), tes)
    assert slice_geometry(z).pixel_spacing_mm == (2.5, 2.5)


def test_ideal_zip_to_tensor(tmp_path, liver_dicom):
    images = []
    tes = [1.2, 3.2, 5.2, 7.2, 9.2, 11.2]
    for d in range(6):
        uid_m, uid_p = liver_dicom.generate_uid(), liver_dicom.generate_uid()
        for e in range(1, 7):
            px = np.full((8, 10), 100 * e + d, np.uint16)
            images.append(liver_dicom.dicom(desc="LMS IDEAL OPTIMISED LOW FLIP 6DYN", series_number=31 + 2 * d,
                                 series_uid=uid_m, instance=e, echo_ms=tes[e - 1], magnitude=True, pixels=px))  # fmt: skip
            images.append(liver_dicom.dicom(desc="LMS IDEAL OPTIMISED LOW FLIP 6DYN", series_number=32 + 2 * d,
                                 series_uid=uid_p, instance=e, echo_ms=tes[e - 1], magnitude=False,
                                 pixels=np.full((8, 10), 2048, np.uint16)))  # fmt: skip
    p = tmp_path / "1000001_20254_2_0.zip"
    liver_dicom.write_zip(p, images)
    t = ideal_tensor(reader.read_zip(p))
    assert t.shape == (36, 232, 256)
    expected = [100 * e + d for e in range(1, 7) for d in range(6)]  # channel 6 * (echo - 1) + dynamic
    np.testing.assert_allclose(t[:, 0, 0], expected)
