"""One DICOM image: required tags, datetimes, pixel decoding (fast path against pydicom)."""

from __future__ import annotations

import io
import math
from datetime import datetime

import numpy as np
import pydicom
import pytest

from ukbmri.errors import MissingTagError, NotDicomError, PixelDataError
from ukbmri.io import phase_to_radians, read_zip
from ukbmri.io.dicom import image_kind, parse_dicom_datetime, parse_image


@pytest.mark.parametrize(
    "date, time, expected",
    [
        ("20190603", "101530.250000", datetime(2019, 6, 3, 10, 15, 30, 250000)),
        ("20190603", "101530.25", datetime(2019, 6, 3, 10, 15, 30, 250000)),
        ("20190603", "101530", datetime(2019, 6, 3, 10, 15, 30)),
        ("20190603", "1015", datetime(2019, 6, 3, 10, 15)),
        ("20190603", "10:15:30.5", datetime(2019, 6, 3, 10, 15, 30, 500000)),
        ("20190603", "235959.1234567", datetime(2019, 6, 3, 23, 59, 59, 123456)),
        ("20190603101530.5+0100", None, datetime(2019, 6, 3, 10, 15, 30, 500000)),
        ("20190603", None, datetime(2019, 6, 3)),
        ("2019-06-03", "", datetime(2019, 6, 3)),
        ("", "101530", None),
        ("20191303", "101530", None),
        ("20190603", "xx", None),
    ],
)
def test_parse_dicom_datetime(date, time, expected):
    assert parse_dicom_datetime(date, time) == expected


def test_datetime_falls_back_to_series_then_content(factory):
    data = factory.make_image(date=None, time=None, extra={"ContentDate": "20200101", "ContentTime": "000001"})
    h, _ = parse_image(data, member="m")
    assert h.acquired == datetime(2020, 1, 1, 0, 0, 1)
    data = factory.make_image(date=None, time=None, extra={"SeriesDate": "20200102", "SeriesTime": "120000",
                                                           "ContentDate": "20200101", "ContentTime": "000001"})
    assert parse_image(data)[0].acquired == datetime(2020, 1, 2, 12)
    data = factory.make_image(date=None, time=None, extra={"AcquisitionDateTime": "20200103083000.125"})
    assert parse_image(data)[0].acquired == datetime(2020, 1, 3, 8, 30, 0, 125000)
    assert parse_image(factory.make_image(date=None, time=None))[0].acquired is None


REQUIRED = [
    ("SeriesInstanceUID", "(0020,000E)"),
    ("SeriesNumber", "(0020,0011)"),
    ("InstanceNumber", "(0020,0013)"),
    ("ImagePositionPatient", "(0020,0032)"),
    ("ImageOrientationPatient", "(0020,0037)"),
    ("PixelSpacing", "(0028,0030)"),
    ("Rows", "(0028,0010)"),
    ("Columns", "(0028,0011)"),
    ("ImageType", "(0008,0008)"),
    ("SeriesDescription", "(0008,103E)"),
]


@pytest.mark.parametrize("keyword, tag", REQUIRED)
def test_missing_required_tag_names_keyword_and_tag(factory, keyword, tag):
    data = factory.make_image(omit=[keyword])
    with pytest.raises(MissingTagError) as ei:
        parse_image(data, path="x.zip", member="001.dcm")
    msg = str(ei.value)
    assert keyword in msg and tag in msg and "x.zip[001.dcm]" in msg


def test_missing_tag_in_a_zip_names_the_member(tmp_path, factory):
    members = factory.gre_members(phase=False)
    name = members[3][0]
    members[3] = (name, factory.make_image(description="gre_mullti_echo_10_TE_liver", omit=["ImagePositionPatient"]))
    p = factory.write_zip(tmp_path / "1000001_20203_2_0.zip", members)
    with pytest.raises(MissingTagError) as ei:
        read_zip(p)
    assert ei.value.member == name and "ImagePositionPatient (0020,0032)" in str(ei.value)


def test_empty_and_malformed_values(factory):
    with pytest.raises(MissingTagError, match="SeriesDescription"):
        parse_image(factory.make_image(description=""))
    with pytest.raises(MissingTagError, match=r"PixelSpacing.*expected 2 finite numbers"):
        parse_image(factory.make_image(spacing=(2.0,)))
    with pytest.raises(MissingTagError, match="ImageOrientationPatient"):
        parse_image(factory.make_image(orientation=(1, 0, 0, 0, 1)))


def test_echo_time_optional(factory):
    h, _ = parse_image(factory.make_image(echo_time=None))
    assert math.isnan(h.echo_time_ms)
    assert parse_image(factory.make_image(echo_time=4.76))[0].echo_time_ms == pytest.approx(4.76)


@pytest.mark.parametrize("data", [b"hello, this is a README\n" * 10, b"", b"\x00" * 200, b"PK\x03\x04" + b"\x00" * 200])
def test_not_dicom(data):
    with pytest.raises(NotDicomError) as ei:
        parse_image(data, path="z.zip", member="README.txt")
    assert "z.zip[README.txt]" in str(ei.value)


def test_corrupt_header_is_not_dicom(factory):
    data = factory.make_image()
    with pytest.raises((NotDicomError, MissingTagError)):
        parse_image(data[:300], member="cut.dcm")


def _pydicom_rescaled(data: bytes) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(data))
    return ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("bits_stored", [12, 16])
def test_fast_path_matches_pydicom(factory, implicit, bits_stored):
    px = factory.pattern_pixels(3, hi=65535)  # values above 4095: high bits beyond BitsStored
    data = factory.make_image(pixels=px, implicit=implicit, bits_stored=bits_stored, slope=2.0, intercept=-4096.0)
    h, ref = parse_image(data)
    assert ref.offset > 0, "native little endian should take the frombuffer path"
    raw = ref.decode()
    np.testing.assert_array_equal(raw, pydicom.dcmread(io.BytesIO(data)).pixel_array)
    got = raw.astype(np.float32) * np.float32(h.slope) + np.float32(h.intercept)
    np.testing.assert_allclose(got, _pydicom_rescaled(data), atol=1e-3)
    if bits_stored == 12:
        assert raw.max() <= 4095


def test_signed_pixels_fast_path(factory):
    ds = pydicom.dcmread(io.BytesIO(factory.make_image()))
    vals = np.array([[-2048, -1, 0, 2047]], dtype="<i2")
    ds.Rows, ds.Columns = vals.shape
    ds.PixelRepresentation = 1
    ds.PixelData = vals.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    h, ref = parse_image(buf.getvalue())
    np.testing.assert_array_equal(ref.decode(), vals)  # 12-bit sign extension leaves these unchanged


def test_truncated_pixel_data(factory):
    data = factory.make_image()
    h, ref = parse_image(data[:-10], member="cut.dcm")  # header intact, pixels cut short
    with pytest.raises(PixelDataError, match="truncated") as ei:
        ref.decode()
    assert ei.value.member == "cut.dcm"


def test_image_kind():
    assert image_kind(("ORIGINAL", "PRIMARY", "P", "ND")) == "phase"
    assert image_kind(("ORIGINAL", "PRIMARY", "PHASE")) == "phase"
    assert image_kind(("ORIGINAL", "PRIMARY", "M", "ND")) == "magnitude"
    assert image_kind(("DERIVED", "PRIMARY", "DIXON", "WATER")) == "magnitude"
    assert image_kind(("DERIVED", "PRIMARY", "OTHER")) == "other"
    assert image_kind(("DERIVED", "PRIMARY", "OTHER"), dixon=True) == "magnitude"


def test_phase_to_radians():
    v = np.array([-4096.0, 0.0, 2048.0, 4094.0], dtype=np.float32)
    r = phase_to_radians(v)
    assert r.dtype == np.float32
    np.testing.assert_allclose(r, [-np.pi, 0.0, np.pi / 2, np.pi * 4094 / 4096], rtol=1e-6)


@pytest.mark.parametrize("implicit", [False, True])
def test_fast_header_path_agrees_with_pydicom(factory, implicit):
    data = factory.make_image(implicit=implicit, slope=2.0, intercept=-4096.0, description="Dixon_BH_17s_opp",
                              image_type=("DERIVED", "PRIMARY", "DIXON", "OPP_PHASE"))
    fast_h, fast_ref = parse_image(data)
    slow_h, slow_ref = parse_image(data, use_pydicom=True)
    assert fast_h == slow_h
    assert (fast_ref.offset, fast_ref.nbytes, fast_ref.dtype) == (slow_ref.offset, slow_ref.nbytes, slow_ref.dtype)
    assert fast_h.image_type == ("DERIVED", "PRIMARY", "DIXON", "OPP_PHASE")
    assert fast_h.position == (-10.0, -20.0, 0.0) and fast_h.rows == 8 and fast_h.slope == 2.0


def test_non_ascii_description_falls_back_to_pydicom(factory):
    data = factory.make_image(description="Dixon_noBH_W\u00e9", extra={"SpecificCharacterSet": "ISO_IR 100"})
    h, _ = parse_image(data)
    assert h.description == "Dixon_noBH_W\u00e9"


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the garbled values it reads
def test_corrupted_headers_always_raise_domain_errors(factory):
    """Random byte flips and truncations in real headers give a domain error, never a raw exception.

    Seeds include flips that make pydicom raise BytesLengthException and NotImplementedError
    (an unknown VR), which once escaped as tracebacks.
    """
    import random

    from ukbmri.errors import UkbmriError

    good = [factory.make_image(description="gre_mullti_echo_10_TE_liver"),
            factory.make_image(description="gre_mullti_echo_10_TE_liver", implicit=True)]
    rng = random.Random(0)
    for _ in range(600):
        d = bytearray(rng.choice(good))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(132, len(d) - 128)
            d[i] = rng.randrange(256)
        if rng.random() < 0.3:
            d = d[: rng.randrange(132, len(d))]
        try:
            _, ref = parse_image(bytes(d), path="z.zip", member="m")
            ref.decode()
        except UkbmriError as exc:
            assert "z.zip[m]" in str(exc)
