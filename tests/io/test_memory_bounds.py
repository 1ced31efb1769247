"""Sizes checked from the headers before anything large is inflated or allocated (issue 11)."""

from __future__ import annotations

import io

import pydicom
import pytest

from ukbmri.errors import MemberTooLargeError, PixelDataError
from ukbmri.io import ZipLimits, read_dicom_series, read_zip, scan_zip


def _resized_header(data: bytes, rows: int, cols: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows, ds.Columns = rows, cols
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_huge_matrix_is_a_domain_error_naming_the_member(tmp_path, factory):
    members = [(n, _resized_header(d, 65535, 65535)) for n, d in factory.gre_members()]
    p = factory.write_zip(tmp_path / "1000001_20203_2_0.zip", members)
    for pixels in (True, False):
        with pytest.raises(PixelDataError) as ei:
            read_zip(p, pixels=pixels)
        assert ei.value.member in dict(members)
        assert "65535 x 65535" in str(ei.value) and "at most 512 x 512" in str(ei.value)


def test_huge_matrix_outside_a_field_is_refused_before_allocating(tmp_path, factory):
    members = [(f"{i}.dcm", factory.make_image(description="anything", instance=i + 1)) for i in range(2)]
    members = [(n, _resized_header(d, 4000, 4000)) for n, d in members]
    p = factory.write_zip(tmp_path / "x.zip", members)
    with pytest.raises(PixelDataError, match="memory budget") as ei:
        read_dicom_series(p, limits=ZipLimits(max_pixel_bytes=2**20))
    assert ei.value.member == "0.dcm" and "2 x 4000 x 4000" in str(ei.value)
    with pytest.raises(PixelDataError, match="truncated") as ei:  # within the budget: too few bytes behind it
        read_dicom_series(p)
    assert ei.value.member == "0.dcm" and "found 128 bytes" in str(ei.value)


def test_zero_padding_after_pixel_data_is_refused_without_inflating_it(tmp_path, factory):
    members = factory.gre_members()
    name, data = members[0]
    members[0] = (name, data + bytes(8 * 2**20))  # compresses to ~8 kB, inflates to 8 MB
    p = factory.write_zip(tmp_path / "1000001_20203_2_0.zip", members)
    for read in (scan_zip, read_zip):
        with pytest.raises(MemberTooLargeError) as ei:
            read(p)
        assert ei.value.member == name
        assert "larger than its DICOM content needs" in str(ei.value)
        assert f"{len(data) + 8 * 2**20} bytes" in str(ei.value)
    # a little trailing data (e.g. a digital signature) is accepted
    members[0] = (name, data + bytes(1000))
    q = factory.write_zip(tmp_path / "ok.zip", members)
    assert read_zip(q).n_images == len(members)


def test_pixel_budget(tmp_path, factory):
    p = factory.write_zip(tmp_path / "1000001_20203_2_0.zip", factory.gre_members())
    z = read_zip(p, pixels=False)
    need = sum(s.n_images * s.shape[0] * s.shape[1] * 4 for s in z.series)
    with pytest.raises((PixelDataError, MemberTooLargeError), match="budget"):  # kept bytes or float32 size
        read_zip(p, limits=ZipLimits(max_pixel_bytes=need - 1))
    assert read_zip(p, limits=ZipLimits(max_pixel_bytes=need)).n_images == z.n_images
