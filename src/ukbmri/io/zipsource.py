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

import copy
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ukbmri.errors import MemberTooLargeError, NotAZipError, TruncatedZipError, UnsafeMemberError

__all__ = ["ZipLimits", "ZipSource", "check_member_name"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_SLACK = 1 << 20
_ALLOWED_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
#: exceptions :mod:`zipfile` / :mod:`zlib` raise for corrupt data
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, struct.error, ValueError)


@dataclass(frozen=True)
class ZipLimits:
    """Zip-bomb / sanity caps applied by :class:`ZipSource`."""

    max_member_bytes: int = 64 * 2**20
    max_total_bytes: int = 4 * 2**30
    max_members: int = 20_000


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

    def read(self, name: str) -> bytes:
        """The member's bytes, read with an output bound of ``max_member_bytes + 1``.

        The declared size is not trusted: the decompressor may produce up to the
        limit, so a member whose header understates its size is caught as
        :class:`MemberTooLargeError` (actual size above the limit) or
        :class:`TruncatedZipError` (size differs from the header).
        """
        info = self._info(name)
        cap = self.limits.max_member_bytes
        probe = copy.copy(info)
        # Let zipfile decompress past a lying header. The margin keeps its own size
        # bookkeeping from ending the stream (and checking the CRC of a partial
        # member) at exactly cap + 1 bytes; we never ask for more than cap + 1.
        probe.file_size = cap + 1 + _SLACK
        try:
            with self._zf.open(probe) as fh:
                data = fh.read(cap + 1)
        except _CORRUPT as exc:
            raise TruncatedZipError(f"member is corrupt or cut short ({exc})", path=self.path, member=name) from None
        if len(data) > cap:
            raise MemberTooLargeError(
                "member decompresses beyond the limit",
                path=self.path,
                member=name,
                expected=f"at most {cap} bytes",
                found=f"more (header declares {info.file_size})",
            )
        if len(data) != info.file_size:
            raise TruncatedZipError(
                "member size differs from its header",
                path=self.path,
                member=name,
                expected=f"{info.file_size} bytes",
                found=f"{len(data)} bytes",
            )
        self._read_total += len(data)
        if self._read_total > self.limits.max_total_bytes:
            raise MemberTooLargeError(
                "members decompress beyond the total limit",
                path=self.path,
                member=name,
                expected=f"at most {self.limits.max_total_bytes} bytes in all",
            )
        return data

    def read_prefix(self, name: str, n: int) -> bytes:
        """The first ``min(n, size)`` bytes of a member, decompressing no more than needed.

        For header-only scans. The CRC is only checked when the whole member is read.
        """
        info = self._info(name)
        n = max(0, min(n, self.limits.max_member_bytes))
        try:
            with self._zf.open(info) as fh:
                data = fh.read(n)
        except _CORRUPT as exc:
            raise TruncatedZipError(f"member is corrupt or cut short ({exc})", path=self.path, member=name) from None
        if len(data) < min(n, info.file_size):
            raise TruncatedZipError(
                "member data ends early", path=self.path, member=name,
                expected=f"{min(n, info.file_size)} bytes", found=f"{len(data)} bytes",
            )
        self._read_total += len(data)
        return data

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
    if not head:
        return "an empty file"
    return f"bytes {head!r}"
