"""Real scanner MR files shipped with pydicom (fetched by exact name only), read through a zip.

The five MR_small variants are one real MR image in different encodings
(explicit/implicit VR little endian, explicit big endian, RLE, padded pixel
data): the fast frombuffer path and pydicom's fallback must agree with
``pixel_array * slope + intercept``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from ukbmri.errors import MissingTagError, PixelDataError
from ukbmri.io import read_dicom_series, read_zip, scan_zip
from ukbmri.io.dicom import parse_image

VARIANTS = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_padded.dcm"]


def _testdata(name: str) -> str:
    path = get_testdata_file(name, download=False)  # exact name, never a pattern (offline)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available offline")
    return path


def _variant_bytes(name: str, instance: int, *, description: str | None, slope: float, intercept: float) -> bytes:
    ds = dcmread(_testdata(name))
    if description is not None:
        ds.SeriesDescription = description
    ds.InstanceNumber = instance
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 5.0 * (instance - 1)]
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    buf = io.BytesIO()
    ds.save_as(buf)  # keeps the file's own transfer syntax
    return buf.getvalue()


def _members(description: str | None):
    return [
        (f"IM{i:04d}", _variant_bytes(name, i + 1, description=description, slope=1.0 + 0.5 * i, intercept=-10.0 * i))
        for i, name in enumerate(VARIANTS)
    ]


def scan_zip_series(p):
    (s,) = scan_zip(p).series
    assert s.pixels is None
    return s.members


def test_raw_scanner_file_lacks_series_description(tmp_path, factory):
    """MR_small.dcm as shipped has no SeriesDescription: refused with the tag named."""
    with open(_testdata("MR_small.dcm"), "rb") as fh:
        data = fh.read()
    p = factory.write_zip(tmp_path / "raw.zip", [("IM0001", data)])
    with pytest.raises(MissingTagError, match=r"SeriesDescription \(0008,103E\)"):
        read_dicom_series(p)


@pytest.mark.filterwarnings("ignore:The pixel data is 8320 bytes long")
def test_scanner_files_in_all_encodings_form_one_series(tmp_path, factory):
    members = _members("gre_mullti_echo_10_TE_liver")
    ref = [dcmread(io.BytesIO(d)) for _, d in members]
    tsyntax = {str(d.file_meta.TransferSyntaxUID.name) for d in ref}
    assert {"Explicit VR Little Endian", "Explicit VR Big Endian", "RLE Lossless"} <= tsyntax
    fast = [parse_image(d)[1].offset >= 0 for _, d in members]
    assert fast == [True, True, False, False, True]  # LE native fast; big endian and RLE via pydicom

    p = factory.write_zip(tmp_path / "1000001_20203_2_0.zip", members)
    z = read_zip(p)
    (s,) = z.series
    assert s.series_number == 1 and s.image_kind == "other" and s.n_images == 5
    assert s.members == tuple(m for m, _ in members)
    assert s.instance_numbers.tolist() == [1, 2, 3, 4, 5]
    assert s.shape == (64, 64) and s.pixel_spacing == pytest.approx((0.3125, 0.3125))
    np.testing.assert_allclose(np.diff(s.positions[:, 2]), 5.0)
    np.testing.assert_allclose(s.normal, [0, 0, 1])
    np.testing.assert_allclose(s.echo_times_ms, float(ref[0].EchoTime))
    expected = np.stack(
        [d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ref]
    )
    assert s.pixels.dtype == np.float32
    np.testing.assert_allclose(s.pixels, expected, rtol=1e-6)
    # decoding only chosen series reads the members again after a header scan: same values
    (chosen,) = read_zip(p, pixels=lambda s: s.image_kind == "other").series
    np.testing.assert_array_equal(chosen.pixels, s.pixels)
    assert scan_zip_series(p) == s.members
    # "other" images: the 20203 echo-count check notes the missing magnitude images
    assert "20203: 0 magnitude echo images, expected 10" in z.problems


def test_truncated_scanner_file(tmp_path, factory):
    """MR_truncated.dcm: intact header, PixelData 8130 of 8192 bytes."""
    ds = dcmread(_testdata("MR_truncated.dcm"))
    ds.SeriesDescription = "gre_mullti_echo_10_TE_liver"
    buf = io.BytesIO()
    ds.save_as(buf)
    data = buf.getvalue()
    h, ref = parse_image(data, member="MR_truncated.dcm")
    assert (h.rows, h.columns) == (64, 64)
    with pytest.raises(PixelDataError, match="truncated"):
        ref.decode()
    # via a zip: header-only scanning works, decoding names the member
    p = factory.write_zip(tmp_path / "t.zip", [("cut.dcm", data)])
    (s,) = read_dicom_series(p, pixels=False)
    assert s.n_images == 1 and s.pixels is None
    with pytest.raises(PixelDataError) as ei:
        read_dicom_series(p)
    assert ei.value.member == "cut.dcm" and "expected 8192 bytes, found 8130 bytes" in str(ei.value)


def test_jpeg2000_scanner_file_decodes_via_pydicom_or_fails_cleanly(tmp_path, factory):
    """Compressed pixels go through pydicom's decoders; without a decoder the error names the member."""
    data = _variant_bytes("MR_small_jp2klossless.dcm", 1, description="gre_mullti_echo_10_TE_liver",
                          slope=1.0, intercept=0.0)
    p = factory.write_zip(tmp_path / "j2k.zip", [("IM0001", data)])
    try:
        expected = dcmread(io.BytesIO(data)).pixel_array.astype(np.float32)
    except Exception:  # no JPEG 2000 decoder installed
        with pytest.raises(PixelDataError) as ei:
            read_zip(p)
        assert ei.value.member == "IM0001"
        return
    (s,) = read_zip(p).series
    np.testing.assert_array_equal(s.pixels[0], expected)
