"""Fast, deterministic DICOM encoding for the synthetic series.

Writing ~1400 files per participant with :func:`pydicom.dcmwrite` costs
~1.5 ms each, mostly re-encoding the same header. :class:`SeriesEncoder`
encodes a series' template :class:`~pydicom.dataset.Dataset` once with
pydicom, split around the few elements that change per image
(SOPInstanceUID, InstanceNumber, ImagePositionPatient, ...); per image only
those elements are encoded (again by pydicom) and the byte segments are
joined in tag order with the pixel data. The result is byte-identical to
``dcmwrite(..., enforce_file_format=True)`` of the full dataset.

UIDs are ``2.25.<38 digits>`` derived from a hash of their key parts, so the
same seed gives the same UIDs (and the same bytes) on every run, and every
UID has the same length (which keeps the file meta group length constant).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

__all__ = ["make_uid", "format_ds", "SeriesEncoder", "IMPLEMENTATION_UID"]

_UID_BASE = 10**37
_UID_SPAN = 9 * 10**37


def make_uid(*parts: object) -> str:
    """A deterministic UID ``2.25.<38 digits>`` from the key ``parts`` (43 characters)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return f"2.25.{_UID_BASE + int.from_bytes(h[:20], 'big') % _UID_SPAN}"


IMPLEMENTATION_UID = make_uid("ukbmri", "synth", "implementation")


def format_ds(v: float, decimals: int = 6) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    for d in range(decimals, -1, -1):
        s = f"{v:.{d}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        if s == "-0":
            s = "0"
        if len(s) <= 16:
            return s
    raise ValueError(f"{v!r} does not fit a DICOM DS")


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


def _encode_one(keyword: str, vr: str, value: object) -> bytes:
    ds = Dataset()
    ds.add_new(keyword, vr, value)
    return _encode(ds)


def _file_meta(sop_uid: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "UKBMRI_SYNTH_1"
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + fp.getvalue()


class SeriesEncoder:
    """Encode the images of one series: a fixed template plus per-image elements.

    Parameters
    ----------
    template:
        The dataset shared by every image of the series (no PixelData, no
        SOPInstanceUID; Rows/Columns must be set).
    varying:
        Keywords of the elements given per image to :meth:`encode`.
    """

    def __init__(
        self, template: Dataset, varying: Iterable[str], *, cache: dict | None = None
    ) -> None:
        self.varying = tuple(sorted(set(varying) | {"SOPInstanceUID"}, key=lambda k: int(Tag(k))))
        static = Dataset()
        for elem in template:
            if elem.keyword not in self.varying and elem.keyword != "PixelData":
                static.add(elem)
        # split the static elements into segments between the varying tags
        bounds = [int(Tag(k)) for k in self.varying]
        groups: list[Dataset] = [Dataset() for _ in range(len(bounds) + 1)]
        for elem in static:
            i = int(np.searchsorted(bounds, int(elem.tag)))
            groups[i].add(elem)
        self._segments = [_encode(g) for g in groups]
        self._rows, self._cols = int(template.Rows), int(template.Columns)
        nbytes = self._rows * self._cols * 2
        px = Dataset()
        px.BitsAllocated = 16
        px.PixelData = b"\x00" * nbytes
        enc = _encode(px)
        self._pixel_header = enc[enc.index(b"\xe0\x7f\x10\x00") :][:12]
        if len(self._pixel_header) != 12 or not enc.endswith(b"\x00" * nbytes):
            raise RuntimeError("unexpected PixelData encoding")
        placeholder = make_uid("placeholder")
        meta = _file_meta(placeholder)
        i = meta.index(placeholder.encode())
        self._meta_head, self._meta_tail = meta[:i], meta[i + len(placeholder) :]
        self._uid_len = len(placeholder)
        self._vrs = tuple(dictionary_VR(Tag(k)) for k in self.varying)
        uid_elem = _encode_one("SOPInstanceUID", "UI", placeholder)
        i = uid_elem.index(placeholder.encode())
        self._uid_head, self._uid_tail = uid_elem[:i], uid_elem[i + len(placeholder) :]
        #: encoded per-image elements by (keyword, value): positions and instance numbers
        #: repeat across the series of a station, so encoders may share one cache
        self._cache = {} if cache is None else cache

    def encode(self, pixels: np.ndarray, values: Mapping[str, object]) -> bytes:
        """One DICOM file (bytes) for ``pixels`` (rows, cols) uint16 and the per-image values."""
        px = np.ascontiguousarray(pixels, dtype="<u2")
        if px.shape != (self._rows, self._cols):
            raise ValueError(f"pixels {px.shape} do not match the series ({self._rows}, {self._cols})")
        sop = str(values["SOPInstanceUID"])
        if len(sop) == self._uid_len:
            parts = [self._meta_head, sop.encode(), self._meta_tail]
        else:
            parts = [_file_meta(sop)]
        for seg, key, vr in zip(self._segments, self.varying, self._vrs):
            parts.append(seg)
            value = values[key]
            if key == "SOPInstanceUID" and len(sop) == self._uid_len:
                parts.append(self._uid_head + sop.encode() + self._uid_tail)
                continue
            ck = (key, tuple(value) if isinstance(value, list | tuple) else value)
            elem = self._cache.get(ck)
            if elem is None:
                elem = self._cache[ck] = _encode_one(key, vr, value)
            parts.append(elem)
        parts.append(self._segments[-1])
        parts.append(self._pixel_header)
        parts.append(px.tobytes())
        return b"".join(parts)
