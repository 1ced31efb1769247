"""ZipSource: refusing what is not a zip, corrupt, unsafe or too large; reading members in memory."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from ukbmri.errors import MemberTooLargeError, NotAZipError, TruncatedZipError, UnsafeMemberError
from ukbmri.io import ZipLimits, ZipSource, read_zip


def _zip_bytes(members, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buf.getvalue()


def test_reads_members_and_ignores_directories(tmp_path):
    p = tmp_path / "a.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sub/", b"")
        zf.writestr("sub/x.dcm", b"x" * 1000)
        zf.writestr("y.dcm", b"hello", compress_type=zipfile.ZIP_STORED)
    p.write_bytes(buf.getvalue())
    with ZipSource(p) as src:
        assert src.names == ("sub/x.dcm", "y.dcm")
        assert src.read("sub/x.dcm") == b"x" * 1000
        assert src.read("y.dcm") == b"hello"
        assert src.declared_size("sub/x.dcm") == 1000
        assert "y.dcm" in src and len(src) == 2
    assert not any(q.name != "a.zip" for q in tmp_path.iterdir()), "nothing extracted to disk"


@pytest.mark.parametrize("content", [b"hello world, not a zip", b"", b"\x00" * 100])
def test_not_a_zip(tmp_path, content):
    p = tmp_path / "1000001_20201_2_0.zip"
    p.write_bytes(content)
    with pytest.raises(NotAZipError) as ei:
        ZipSource(p)
    assert str(p) in str(ei.value)


def test_truncated_zip(tmp_path):
    data = _zip_bytes([(f"{i}.dcm", bytes(range(256)) * 40) for i in range(5)])
    p = tmp_path / "cut.zip"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedZipError, match="truncated"):
        ZipSource(p)


def test_corrupt_central_directory(tmp_path):
    data = bytearray(_zip_bytes([("a.dcm", b"a" * 100), ("b.dcm", b"b" * 100)]))
    i = data.find(b"PK\x01\x02")
    data[i : i + 4] = b"XX\x01\x02"
    p = tmp_path / "cd.zip"
    p.write_bytes(bytes(data))
    with pytest.raises(TruncatedZipError):
        ZipSource(p)


def test_bad_crc_is_reported_with_member(tmp_path):
    payload = b"0123456789" * 50
    data = bytearray(_zip_bytes([("a.dcm", payload)], compression=zipfile.ZIP_STORED))
    i = data.find(payload)
    data[i + 10] ^= 0xFF
    p = tmp_path / "crc.zip"
    p.write_bytes(bytes(data))
    with ZipSource(p) as src, pytest.raises(TruncatedZipError) as ei:
        src.read("a.dcm")
    assert ei.value.member == "a.dcm" and "CRC" in str(ei.value)


@pytest.mark.parametrize(
    "name",
    ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "\\evil.dcm", "C:evil.dcm", "c:/evil.dcm", "a\\..\\evil.dcm"],
)
def test_unsafe_member_names_refuse_the_zip(tmp_path, name):
    p = tmp_path / "unsafe.zip"
    p.write_bytes(_zip_bytes([("ok.dcm", b"x"), (name, b"y")]))
    with pytest.raises(UnsafeMemberError) as ei:
        ZipSource(p)
    assert ei.value.member == name
    # read_zip refuses it the same way
    with pytest.raises(UnsafeMemberError):
        read_zip(p)


def test_harmless_dotted_names_are_fine(tmp_path):
    p = tmp_path / "ok.zip"
    p.write_bytes(_zip_bytes([("a..b.dcm", b"x"), ("./c.dcm", b"y")]))
    with ZipSource(p) as src:
        assert src.read("a..b.dcm") == b"x"


def test_duplicate_member_name_refused(tmp_path):
    p = tmp_path / "dup.zip"
    with pytest.warns(UserWarning):  # zipfile warns about the duplicate while writing
        p.write_bytes(_zip_bytes([("a.dcm", b"x"), ("a.dcm", b"y")]))
    with pytest.raises(UnsafeMemberError, match="twice"):
        ZipSource(p)


def test_bzip2_refused(tmp_path):
    p = tmp_path / "bz.zip"
    p.write_bytes(_zip_bytes([("a.dcm", b"x" * 100)], compression=zipfile.ZIP_BZIP2))
    with pytest.raises(UnsafeMemberError, match="compression"):
        ZipSource(p)


def test_declared_size_over_limit(tmp_path):
    p = tmp_path / "big.zip"
    p.write_bytes(_zip_bytes([("small.dcm", b"a" * 10), ("big.dcm", b"\x00" * 5000)]))
    with pytest.raises(MemberTooLargeError) as ei:
        ZipSource(p, ZipLimits(max_member_bytes=4096))
    assert ei.value.member == "big.dcm"
    ZipSource(p, ZipLimits(max_member_bytes=5000)).close()


def test_total_and_count_limits(tmp_path):
    p = tmp_path / "many.zip"
    p.write_bytes(_zip_bytes([(f"{i}.dcm", b"\x00" * 1000) for i in range(10)]))
    with pytest.raises(MemberTooLargeError, match="total"):
        ZipSource(p, ZipLimits(max_total_bytes=9999))
    with pytest.raises(MemberTooLargeError, match="too many"):
        ZipSource(p, ZipLimits(max_members=9))
    ZipSource(p, ZipLimits(max_total_bytes=10_000, max_members=10)).close()


def _lie_about_size(data: bytes, new_size: int) -> bytes:
    """Rewrite the uncompressed size of the (single) member in both headers."""
    b = bytearray(data)
    lh = b.find(b"PK\x03\x04")
    struct.pack_into("<I", b, lh + 22, new_size)
    cd = b.find(b"PK\x01\x02")
    struct.pack_into("<I", b, cd + 24, new_size)
    return bytes(b)


def test_member_whose_header_lies_about_its_size(tmp_path):
    payload = b"\x00" * 200_000  # deflates to a few hundred bytes: a small zip bomb
    p = tmp_path / "bomb.zip"
    p.write_bytes(_lie_about_size(_zip_bytes([("bomb.dcm", payload)]), 100))
    with zipfile.ZipFile(p) as zf:
        assert zf.getinfo("bomb.dcm").file_size == 100
    # actual size above the cap although the header declares 100 bytes
    with ZipSource(p, ZipLimits(max_member_bytes=10_000)) as src, pytest.raises(MemberTooLargeError) as ei:
        src.read("bomb.dcm")
    assert ei.value.member == "bomb.dcm" and "beyond the limit" in str(ei.value)
    # under a generous cap the lie is still caught: size differs from the header
    with ZipSource(p) as src, pytest.raises(TruncatedZipError, match="differs from its header"):
        src.read("bomb.dcm")


def test_member_whose_header_overstates_its_size(tmp_path):
    p = tmp_path / "short.zip"
    p.write_bytes(_lie_about_size(_zip_bytes([("a.dcm", b"abc" * 100)]), 1000))
    with ZipSource(p) as src, pytest.raises(TruncatedZipError):
        src.read("a.dcm")


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        ZipSource(tmp_path / "nope.zip")


@pytest.mark.parametrize("backend", ["zlib", "isal", "zlib-ng"])
def test_member_reader_grows_a_prefix_then_reads_the_rest_identically(tmp_path, backend):
    from ukbmri.io.zipsource import inflate_backend

    try:
        lib = inflate_backend(backend)
    except ImportError:
        pytest.skip(f"{backend} not installed")
    import random

    rnd = random.Random(1)
    payload = bytes(rnd.getrandbits(3) for _ in range(300_000))  # compressible, many deflate blocks
    p = tmp_path / "m.zip"
    p.write_bytes(_zip_bytes([("a.dcm", payload), ("b.dcm", b"")]))
    with ZipSource(p) as src:
        src._inflate = lib
        m = src.open_member("a.dcm")
        assert m.read_prefix(100) == payload[:100]
        assert m.read_prefix(70_000) == payload[:70_000]  # continues the stream
        assert m.read_prefix(50) == payload[:50]
        assert m.read_all() == payload
        assert src.open_member("b.dcm").read_all() == b""
    # a flipped bit in the compressed data is caught (corrupt stream or CRC)
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x10
    p.write_bytes(bytes(data))
    with ZipSource(p) as src, pytest.raises(TruncatedZipError):
        src._inflate = lib
        src.read("a.dcm")
