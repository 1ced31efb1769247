"""In-memory access to the members of a zip, with zip-bomb and path-safety checks.

:class:`ZipSource` opens a zip with :mod:`zipfile`, validates every member
name and declared size up front, and reads members into ``bytes`` with a
bounded streaming read. Nothing is ever extracted to disk and member names
are never used as filesystem paths.

Refusals (all from :mod:`ukbmri.errors`):

* :class:`NotAZipError` - the file is not a zip at all.
* :class:`TruncatedZipError` - the zip starts like one but is cut short, its
  central directory is corrupt, a member fails its CRC, or its data ends
  before its declared size.
* :class:`UnsafeMemberError` - a member name is absolute (``/x``, ``\\x``,
  ``C:x``), has a ``..`` part, holds a NUL, appears twice, is encrypted or uses a
  compression method other than stored/deflated (bzip2 and lzma are refused:
  ``zipfile`` decompresses them without an output bound).
* :class:`MemberTooLargeError` - a member's declared *or actual* size is above
  :attr:`ZipLimits.max_member_bytes`, the sum above ``max_total_bytes``, or the
  archive has more than ``max_members`` members.
"""

from __future__ import annotations

import functools
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ukbmri.errors import MemberTooLargeError, NotAZipError, TruncatedZipError, UnsafeMemberError

__all__ = ["ZipLimits", "ZipSource", "MemberReader", "check_member_name", "inflate_backend"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
#: compressed bytes read at least at a time for prefixes (more when more is asked); ISA-L inflates all
#: the input it is given, so reading little more than a header needs saves work
_CHUNK = 1 << 10
_ALLOWED_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
#: exceptions :mod:`zipfile` / :mod:`zlib` raise for corrupt data
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, struct.error, ValueError)


@functools.cache
def inflate_backend(name: str = "auto"):
    """The zlib-compatible module used to inflate members and check CRCs.

    ``"auto"``: ISA-L (:mod:`isal.isal_zlib`, ~2.5x faster than zlib) when installed,
    else zlib-ng (:mod:`zlib_ng.zlib_ng`), else the standard library's :mod:`zlib`.
    All three produce identical bytes (deflate is deterministic to decode) and the
    CRC is checked either way. ``"isal"``, ``"zlib-ng"`` or ``"zlib"`` ask for one.
    """
    if name in ("auto", "isal"):
        try:
            from isal import isal_zlib

            return isal_zlib
        except ImportError:
            if name == "isal":
                raise
    if name in ("auto", "zlib-ng"):
        try:
            from zlib_ng import zlib_ng

            return zlib_ng
        except ImportError:
            if name == "zlib-ng":
                raise
    if name in ("auto", "zlib"):
        return zlib
    raise ValueError(f"unknown inflate backend {name!r}; expected auto, isal, zlib-ng or zlib")


@dataclass(frozen=True)
class ZipLimits:
    """Zip-bomb / sanity caps applied by :class:`ZipSource`."""

    max_member_bytes: int = 64 * 2**20
    max_total_bytes: int = 4 * 2**30
    max_members: int = 20_000
    #: float32 bytes of decoded pixels one read may hold (checked from the headers before allocating;
    #: members kept for decoding may hold half of it: 16-bit pixels). A whole 20201 zip needs 207 MB.
    max_pixel_bytes: int = 512 * 2**20
    #: bytes a DICOM member may carry beyond its header and PixelData (trailing elements, padding)
    max_trailing_bytes: int = 64 * 2**10


def check_member_name(name: str, *, path: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`UnsafeMemberError` for absolute, drive-letter, ``..`` or NUL names."""
    if "\x00" in name:
        raise UnsafeMemberError("member name contains a NUL character", path=path, member=repr(name))
    if name.startswith(("/", "\\")) or _DRIVE_RE.match(name):
        raise UnsafeMemberError("absolute member name refused", path=path, member=name)
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        raise UnsafeMemberError("member name with a '..' part refused", path=path, member=name)


class ZipSource:
    """A zip opened for in-memory reading. Use as a context manager.

    Parameters
    ----------
    path:
        The zip file. ``OSError`` (missing file, permission) propagates as is.
    limits:
        Size caps; :class:`ZipLimits` defaults when ``None``.

    Attributes
    ----------
    names:
        File members (directories left out) in archive order.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ZipLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or ZipLimits()
        self._read_total = 0
        fh = open(self.path, "rb")  # noqa: SIM115 - owned by self, closed in close()
        try:
            head = fh.read(4)
            fh.seek(0)
            try:
                self._zf = zipfile.ZipFile(fh)
            except (*_CORRUPT, NotImplementedError) as exc:
                if head.startswith(_ZIP_MAGICS):
                    raise TruncatedZipError(
                        f"zip is truncated or its central directory is corrupt ({exc})", path=self.path
                    ) from None
                raise NotAZipError(
                    "not a zip archive", path=self.path, expected="a zip (PK header)", found=_describe_head(head)
                ) from None
            self._infos = self._validate(self._zf.infolist())
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        self._fd = fh.fileno()
        self._inflate = inflate_backend()
        self.names: tuple[str, ...] = tuple(self._infos)

    # -- validation ---------------------------------------------------------
    def _validate(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        lim = self.limits
        files = [i for i in infos if not i.is_dir()]
        if len(files) > lim.max_members:
            raise MemberTooLargeError(
                "too many members", path=self.path, expected=f"at most {lim.max_members}", found=len(files)
            )
        out: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in files:
            name = info.filename
            check_member_name(name, path=self.path)
            if name in out:
                raise UnsafeMemberError("member name appears twice", path=self.path, member=name)
            if info.flag_bits & 0x1:
                raise UnsafeMemberError("encrypted member refused", path=self.path, member=name)
            if info.compress_type not in _ALLOWED_COMPRESSION:
                raise UnsafeMemberError(
                    "unsupported compression method",
                    path=self.path,
                    member=name,
                    expected="stored or deflated",
                    found=f"method {info.compress_type}",
                )
            if info.file_size > lim.max_member_bytes:
                raise MemberTooLargeError(
                    "member declares a size above the limit",
                    path=self.path,
                    member=name,
                    expected=f"at most {lim.max_member_bytes} bytes",
                    found=f"{info.file_size} bytes",
                )
            total += info.file_size
            out[name] = info
        if total > lim.max_total_bytes:
            raise MemberTooLargeError(
                "members declare a total size above the limit",
                path=self.path,
                expected=f"at most {lim.max_total_bytes} bytes",
                found=f"{total} bytes",
            )
        return out

    # -- access ---------------------------------------------------------------
    def declared_size(self, name: str) -> int:
        """The uncompressed size the central directory declares for ``name``."""
        return self._info(name).file_size

    def open_member(self, name: str) -> MemberReader:
        """A :class:`MemberReader` on ``name``: grow a prefix, then read the rest, inflating each byte once."""
        return MemberReader(self, name)

    def read(self, name: str) -> bytes:
        """The member's bytes, read with an output bound of ``max_member_bytes + 1``.

        The declared size is not trusted: the decompressor may produce up to the
        limit, so a member whose header understates its size is caught as
        :class:`MemberTooLargeError` (actual size above the limit) or
        :class:`TruncatedZipError` (size differs from the header). The CRC is checked.
        """
        return self.open_member(name).read_all()

    def read_prefix(self, name: str, n: int) -> bytes:
        """The first ``min(n, size)`` bytes of a member, decompressing no more than needed.

        For header-only scans. The CRC is only checked when the whole member is read.
        """
        return self.open_member(name).read_prefix(n)

    def _count(self, name: str, n: int) -> None:
        self._read_total += n
        if self._read_total > self.limits.max_total_bytes:
            raise MemberTooLargeError(
                "members decompress beyond the total limit",
                path=self.path,
                member=name,
                expected=f"at most {self.limits.max_total_bytes} bytes in all",
            )

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise KeyError(f"{self.path}: no member {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def close(self) -> None:
        self._zf.close()
        self._fh.close()

    def __enter__(self) -> ZipSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ZipSource({str(self.path)!r}, {len(self.names)} members)"


def _describe_head(head: bytes) -> str:
    """What the file starts with, without quoting it (it may be anybody's private text)."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    if head.startswith(b"%PDF"):
        return "a PDF file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "another binary format"


class MemberReader:
    """Streaming, bounded decompression of one member (stored or deflated), straight from the file.

    :meth:`read_prefix` inflates only as far as asked and can be called again with a
    larger ``n`` without inflating anything twice; :meth:`read_all` then inflates the
    rest, bounds the output by ``max_member_bytes``, and checks the size against the
    central directory and the CRC-32.
    """

    def __init__(self, src: ZipSource, name: str) -> None:
        info = src._info(name)
        self._src, self.name, self._info = src, name, info
        head = os.pread(src._fd, _LOCAL_HEADER.size, info.header_offset)
        if len(head) < _LOCAL_HEADER.size:
            raise TruncatedZipError("member's local header is cut short", path=src.path, member=name)
        sig, n_name, n_extra = _LOCAL_HEADER.unpack(head)
        if sig != b"PK\x03\x04":
            raise TruncatedZipError("bad local file header", path=src.path, member=name,
                                    expected="PK\\x03\\x04", found=repr(sig))
        raw_name = os.pread(src._fd, n_name, info.header_offset + _LOCAL_HEADER.size)
        enc = "utf-8" if info.flag_bits & 0x800 else "cp437"
        if raw_name.decode(enc, "replace") != info.orig_filename:
            raise TruncatedZipError("file name in the directory and the local header differ", path=src.path,
                                    member=name, found=raw_name.decode(enc, "replace"))
        self._pos = info.header_offset + _LOCAL_HEADER.size + n_name + n_extra
        self._left = info.compress_size
        self._dec = src._inflate.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        self._tail = b""
        self._chunks: list[bytes] = []
        self._have = 0
        self._eof = False
        self._counted = 0

    @property
    def size(self) -> int:
        """The size the central directory declares."""
        return self._info.file_size

    def _raw(self, k: int) -> bytes:
        k = min(k, self._left)
        data = os.pread(self._src._fd, k, self._pos) if k > 0 else b""
        if len(data) < k:
            raise TruncatedZipError("member data ends early", path=self._src.path, member=self.name,
                                    expected=f"{self._info.compress_size} compressed bytes")
        self._pos += k
        self._left -= k
        return data

    def _fill(self, want: int) -> None:
        """Inflate until ``want`` bytes are out or the member ends."""
        try:
            while self._have < want and not self._eof:
                if self._dec is None:  # stored
                    data = self._raw(want - self._have)
                    self._eof = self._left == 0
                else:
                    if not self._tail and self._left:
                        k = self._left if want > self._info.file_size else max(_CHUNK, want - self._have)
                        self._tail = self._raw(k)
                    data = self._dec.decompress(self._tail, want - self._have)
                    self._tail = self._dec.unconsumed_tail
                    if self._dec.eof:
                        self._eof = True
                    elif not data and not self._tail and not self._left:
                        raise TruncatedZipError("member data ends early", path=self._src.path, member=self.name,
                                                expected=f"{self.size} bytes", found=f"{self._have} bytes")
                if data:
                    self._chunks.append(data)
                    self._have += len(data)
        except _CORRUPT as exc:
            raise TruncatedZipError(f"member is corrupt or cut short ({exc})", path=self._src.path,
                                    member=self.name) from None
        if self._have > self._counted:
            self._src._count(self.name, self._have - self._counted)
            self._counted = self._have

    def _joined(self) -> bytes:
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def read_prefix(self, n: int) -> bytes:
        """The first ``min(n, size)`` bytes (the CRC is not checked)."""
        n = max(0, min(n, self._src.limits.max_member_bytes))
        self._fill(n)
        if self._have < min(n, self.size):
            raise TruncatedZipError("member data ends early", path=self._src.path, member=self.name,
                                    expected=f"{min(n, self.size)} bytes", found=f"{self._have} bytes")
        data = self._joined()
        return data if len(data) <= n else data[:n]

    def read_all(self) -> bytes:
        """The whole member, size and CRC checked."""
        src, name, info = self._src, self.name, self._info
        cap = src.limits.max_member_bytes
        self._fill(cap + 1)
        if self._have > cap:
            raise MemberTooLargeError("member decompresses beyond the limit", path=src.path, member=name,
                                      expected=f"at most {cap} bytes", found=f"more (header declares {info.file_size})")
        data = self._joined()
        if len(data) != info.file_size:
            raise TruncatedZipError("member size differs from its header", path=src.path, member=name,
                                    expected=f"{info.file_size} bytes", found=f"{len(data)} bytes")
        if src._inflate.crc32(data) != info.CRC:
            raise TruncatedZipError("member fails its CRC check", path=src.path, member=name,
                                    expected=f"CRC {info.CRC:08x}", found=f"{src._inflate.crc32(data):08x}")
        return data
