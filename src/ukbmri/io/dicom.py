"""One DICOM image from bytes: header fields the pipeline needs, and its pixels on demand.

:func:`parse_image` reads the header (:mod:`ukbmri.io.fastheader` for native little
endian, else pydicom with ``stop_before_pixels``; typed by :mod:`ukbmri.io.dicomtags`) and remembers
where the PixelData element starts. :meth:`PixelRef.decode` then
decodes native little-endian pixels with :func:`numpy.frombuffer` (no copy,
no pydicom overhead), masking to BitsStored and sign-extending as pydicom does,
and falls back to pydicom's ``pixel_array`` for everything else (big endian,
RLE, JPEG...).

Required tags (:class:`MissingTagError` names the keyword and ``(gggg,eeee)``):
SeriesInstanceUID, SeriesNumber, InstanceNumber, ImagePositionPatient,
ImageOrientationPatient, PixelSpacing, Rows, Columns, ImageType,
SeriesDescription. SeriesNumber has no fallback: later stages order stations
and IDEAL dynamics by it, so a made-up number would silently corrupt them.
EchoTime is optional (NaN when absent).
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom

from ukbmri.errors import MemberTooLargeError, NotDicomError, PixelDataError
from ukbmri.io.dicomtags import (
    ImageHeader,
    TagReader,
    dataset_getter,
    header_from,
    parse_dicom_datetime,
    tag_label,
)
from ukbmri.io.fastheader import FastHeader, fast_header, quick_header

__all__ = [
    "ImageHeader",
    "PixelRef",
    "PixelSpec",
    "parse_image",
    "parse_image_spec",
    "parse_header_prefix",
    "looks_like_dicom",
    "image_kind",
    "parse_dicom_datetime",
    "phase_to_radians",
    "tag_label",
]

_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit / explicit VR little endian
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
_DIXON_TYPES = {"WATER", "FAT", "IN_PHASE", "OPP_PHASE", "OUT_PHASE"}


def phase_to_radians(rescaled: np.ndarray) -> np.ndarray:
    """Siemens phase images: rescaled value ``v`` in [-4096, 4095] -> ``pi * v / 4096`` radians."""
    return (np.asarray(rescaled, dtype=np.float32) * np.float32(math.pi / 4096.0)).astype(np.float32, copy=False)


def looks_like_dicom(data: bytes) -> bool:
    """``DICM`` at offset 128, or a file starting with a group 0002/0008 tag (no preamble)."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00")


def image_kind(image_type: tuple[str, ...], dixon: bool = False) -> str:
    """``"phase"`` / ``"magnitude"`` / ``"other"`` from ImageType values (see the contract)."""
    vals = {v.strip().upper() for v in image_type}
    if "P" in vals or "PHASE" in vals:
        return "phase"
    if "M" in vals or "MAGNITUDE" in vals or vals & _DIXON_TYPES or dixon:
        return "magnitude"
    return "other"


@dataclass(frozen=True, slots=True)
class PixelRef:
    """Where an image's pixels are and how to decode them (kept until decoding is wanted)."""

    data: bytes  #: the whole member
    offset: int  #: start of the PixelData value for the native fast path, -1 for pydicom
    nbytes: int  #: bytes of PixelData value present (declared length, capped at the data end)
    dtype: str  #: numpy dtype of the stored values (fast path)
    rows: int
    columns: int
    bits_stored: int
    path: str | None
    member: str | None

    def check_length(self) -> None:
        """:class:`PixelDataError` when native PixelData is shorter than Rows x Columns needs."""
        if self.offset >= 0 and self.rows * self.columns * np.dtype(self.dtype).itemsize > self.nbytes:
            dt = np.dtype(self.dtype)
            count = self.rows * self.columns
            raise PixelDataError(
                "PixelData is truncated",
                path=self.path,
                member=self.member,
                expected=f"{count * dt.itemsize} bytes",
                found=f"{self.nbytes} bytes",
            )

    def decode(self) -> np.ndarray:
        """The stored values as a (rows, columns) integer array, before rescaling."""
        count = self.rows * self.columns
        if self.offset >= 0:
            dt = np.dtype(self.dtype)
            if count * dt.itemsize > self.nbytes:
                raise PixelDataError(
                    "PixelData is truncated",
                    path=self.path,
                    member=self.member,
                    expected=f"{count * dt.itemsize} bytes",
                    found=f"{self.nbytes} bytes",
                )
            arr = np.frombuffer(self.data, dtype=dt, count=count, offset=self.offset).reshape(self.rows, self.columns)
            nbits = dt.itemsize * 8
            if self.bits_stored < nbits:
                if dt.kind == "u":
                    arr = arr & dt.type((1 << self.bits_stored) - 1)
                else:
                    shift = nbits - self.bits_stored
                    arr = (arr << shift) >> shift
            return arr
        return self._decode_pydicom()

    def _decode_pydicom(self) -> np.ndarray:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(io.BytesIO(self.data), force=True)
                arr = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for bad pixel data
            raise PixelDataError(f"cannot decode PixelData: {exc}", path=self.path, member=self.member) from None
        if arr.shape != (self.rows, self.columns):
            raise PixelDataError(
                "PixelData is not one single-sample frame",
                path=self.path,
                member=self.member,
                expected=f"shape ({self.rows}, {self.columns})",
                found=f"shape {arr.shape}",
            )
        return arr


def _fast(data: bytes) -> FastHeader | None:
    try:
        return fast_header(data)
    except Exception:  # corrupt data: the pydicom path below produces the error message
        return None


def parse_image(
    data: bytes, *, path: str | None = None, member: str | None = None, use_pydicom: bool = False
) -> tuple[ImageHeader, PixelRef]:
    """Parse one DICOM image's header; pixels are located, not decoded.

    :func:`parse_image_spec` and :meth:`PixelSpec.bind`; see there.
    """
    header, spec = parse_image_spec(data, path=path, member=member, use_pydicom=use_pydicom)
    return header, spec.bind(data, path=path, member=member)


def parse_image_spec(
    data: bytes, *, path: str | None = None, member: str | None = None, use_pydicom: bool = False
) -> tuple[ImageHeader, PixelSpec]:
    """One DICOM image's header and pixel layout from its whole bytes.

    Native little-endian Part 10 files take a fast path (:mod:`ukbmri.io.fastheader`);
    everything else, or ``use_pydicom=True``, goes through :func:`pydicom.dcmread`.

    Raises
    ------
    NotDicomError
        ``data`` is not DICOM (no ``DICM`` marker and no plausible dataset start)
        or the header cannot be parsed.
    MissingTagError
        A required tag is absent, empty or malformed.
    """
    if not looks_like_dicom(data):
        raise NotDicomError(
            "not a DICOM file", path=path, member=member, expected="'DICM' at byte 128", found=_head(data)
        )
    fh = None if use_pydicom else _fast(data)
    if fh is not None:
        header, ints = _fast_values(fh, path, member)
        return header, _pixel_spec(fh.pixel_at, fh.transfer_syntax, fh.implicit, ints, header, data)
    fp = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=data[128:132] != b"DICM")
    except Exception as exc:  # noqa: BLE001 - corrupt bytes raise many types in pydicom (BytesLengthException,
        # NotImplementedError for an unknown VR, struct.error, ...): all mean "not a readable header"
        raise NotDicomError(f"cannot parse DICOM header: {type(exc).__name__}: {exc}", path=path,
                            member=member) from None
    pix_at = fp.tell()
    r = TagReader(dataset_getter(ds), path, member)
    header = header_from(r, member)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not ts:  # no file meta: the encoding pydicom found
        implicit, little = ds.original_encoding
        ts = ("1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1") if little else ""
    return header, _pixel_spec(pix_at, ts, ts == "1.2.840.10008.1.2", _ints(r), header, data)


def parse_header_prefix(
    prefix: bytes, *, path: str | None = None, member: str | None = None, memo: dict | None = None
) -> tuple[ImageHeader, PixelSpec] | None:
    """Header (and pixel layout) from the first bytes of a member, or ``None`` when more bytes are needed.

    Used for header-only scans: only the fast path is tried, and it must have
    reached the PixelData element inside ``prefix``. Callers fall back to
    :func:`parse_image` on the whole member when this returns ``None``. ``memo``: one
    dict per zip, see :func:`~ukbmri.io.fastheader.quick_header`.
    """
    fh = _fast(prefix)
    if fh is None or prefix[fh.pixel_at : fh.pixel_at + 4] != _PIXEL_TAG_LE:
        return None
    header, ints = _fast_values(fh, path, member, memo)
    return header, _pixel_spec(fh.pixel_at, fh.transfer_syntax, fh.implicit, ints, header, prefix)


@dataclass(frozen=True, slots=True)
class PixelSpec:
    """How an image's pixels are stored, known from its header alone (bind the member bytes to decode)."""

    pixel_at: int  #: offset of the PixelData element
    transfer_syntax: str
    implicit: bool
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    single_frame_mono: bool  #: SamplesPerPixel 1 and NumberOfFrames 1
    value_length: int = -1  #: declared PixelData length (-1: unknown or encapsulated)
    value_start: int = -1  #: offset of the PixelData value (-1: unknown)

    @property
    def needed_bytes(self) -> int:
        """Bytes one native frame of Rows x Columns x BitsAllocated needs (0 when unknown)."""
        return self.rows * self.columns * (self.bits_allocated // 8) if self.bits_allocated in (8, 16, 32) else 0

    def check_layout(self, member_size: int, *, max_trailing: int, path: str | None, member: str | None) -> None:
        """Refuse, before anything is allocated, a member whose sizes do not add up.

        * native PixelData far longer than Rows x Columns x BitsAllocated needs;
        * a member larger than its header plus PixelData plus ``max_trailing`` bytes
          (zero padding after PixelData: decompressing it costs memory for nothing).

        Raises :class:`PixelDataError` / :class:`MemberTooLargeError`. (PixelData
        shorter than the matrix needs is left to decoding, so a header-only scan
        still lists such a file; :func:`~ukbmri.io.grouping.stack_pixels` refuses it
        before allocating.)
        """
        need = self.needed_bytes
        native = self.transfer_syntax in _NATIVE_LE and self.single_frame_mono and self.value_length >= 0
        if native and need and self.value_length > need + max_trailing:
            raise PixelDataError(
                "PixelData is far longer than Rows x Columns x BitsAllocated needs",
                path=path, member=member,
                expected=f"{need} bytes ({self.rows} x {self.columns} x {self.bits_allocated} bits)",
                found=f"{self.value_length} bytes",
            )
        if self.value_start >= 0 and self.value_length >= 0:
            content = self.value_start + self.value_length
            if member_size > content + max_trailing:
                raise MemberTooLargeError(
                    "member is larger than its DICOM content needs (padding after PixelData?)",
                    path=path, member=member,
                    expected=f"about {content} bytes (header + PixelData), at most {content + max_trailing}",
                    found=f"{member_size} bytes",
                )

    def bind(self, data: bytes, *, path: str | None = None, member: str | None = None) -> PixelRef:
        """A :class:`PixelRef` on the whole member: frombuffer for native little endian, else pydicom."""
        fallback = PixelRef(data, -1, 0, "", self.rows, self.columns, self.bits_stored, path, member)
        at = self.pixel_at
        if self.transfer_syntax not in _NATIVE_LE or not self.single_frame_mono:
            return fallback
        if self.bits_allocated not in (8, 16, 32) or data[at : at + 4] != _PIXEL_TAG_LE:
            return fallback
        if self.implicit:
            (length,) = struct.unpack_from("<I", data, at + 4)
            start = at + 8
        else:
            if data[at + 4 : at + 6] not in (b"OW", b"OB"):
                return fallback
            (length,) = struct.unpack_from("<I", data, at + 8)
            start = at + 12
        if length == 0xFFFFFFFF:  # encapsulated
            return fallback
        dtype = f"<{'i' if self.signed else 'u'}{self.bits_allocated // 8}"
        nbytes = max(0, min(length, len(data) - start))
        return PixelRef(data, start, nbytes, dtype, self.rows, self.columns, self.bits_stored, path, member)


def _value_at(data: bytes, at: int, implicit: bool) -> tuple[int, int]:
    """(start, length) of the PixelData value whose element starts at ``at`` ((-1, -1) when unknown)."""
    if data[at : at + 4] != _PIXEL_TAG_LE:
        return -1, -1
    if implicit:
        if len(data) < at + 8:
            return -1, -1
        (length,) = struct.unpack_from("<I", data, at + 4)
        start = at + 8
    else:
        if len(data) < at + 12 or data[at + 4 : at + 6] not in (b"OW", b"OB"):
            return -1, -1
        (length,) = struct.unpack_from("<I", data, at + 8)
        start = at + 12
    return (-1, -1) if length == 0xFFFFFFFF else (start, length)


_PIXEL_INTS = ("BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel", "NumberOfFrames")


def _ints(r: TagReader) -> dict[str, int | None]:
    return {kw: r.int_(kw, required=False) for kw in _PIXEL_INTS}


def _fast_values(
    fh: FastHeader, path: str | None, member: str | None, memo: dict | None = None
) -> tuple[ImageHeader, dict[str, int | None]]:
    """Header and pixel integers of a fast-path header: directly when plain, else through :class:`TagReader`."""
    got = quick_header(fh, member, memo)
    if got is not None:
        return got
    r = TagReader(fh.get, path, member)
    return header_from(r, member), _ints(r)


def _pixel_spec(
    pix_at: int, ts: str, implicit: bool, ints: dict[str, int | None], header: ImageHeader, data: bytes = b""
) -> PixelSpec:
    bits_alloc = ints["BitsAllocated"] or 0
    start, length = _value_at(data, pix_at, implicit) if ts in _NATIVE_LE else (-1, -1)
    return PixelSpec(
        pixel_at=pix_at,
        transfer_syntax=ts,
        implicit=implicit,
        rows=header.rows,
        columns=header.columns,
        bits_allocated=bits_alloc,
        bits_stored=ints["BitsStored"] or bits_alloc,
        signed=(ints["PixelRepresentation"] or 0) == 1,
        single_frame_mono=(ints["SamplesPerPixel"] or 1) == 1 and (ints["NumberOfFrames"] or 1) == 1,
        value_length=length,
        value_start=start,
    )


def _head(data: bytes) -> str:
    if not data:
        return "an empty member"
    return f"starts {data[:16]!r}"
