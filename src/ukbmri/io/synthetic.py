"""Marking and recognising the synthetic zips that ``ukbmri synth`` writes.

The bundled demonstration networks were trained on synthetic phantoms only;
the engine applies them only to inputs marked synthetic. Every DICOM image
that :mod:`ukbmri.synth` writes carries (:func:`mark_synthetic`):

* a private block (DICOM PS3.5 section 7.8) in group ``0011`` reserved by the
  private creator ``UKBMRI SYNTHETIC`` at ``(0011,0010)``, holding
  ``(0011,1010) LO = "SYNTHETIC PHANTOM"`` and
  ``(0011,1011) LO = "NOT A HUMAN SUBJECT"``;
* ImageComments ``(0020,4000)``: a sentence a person reading the header sees.

:func:`is_synthetic_zip` reads the header of ONE member and looks for the
private creator. Zips written by ukbmri before the marker existed are
recognised by their ImplementationClassUID (file meta ``(0002,0012)``), the
UID ``ukbmri synth`` has always written. Anyone can copy either marker into
their files; the marker guards against accidents (demonstration weights on a
real scan), not against forgery.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile

__all__ = ["SYNTHETIC_CREATOR", "SYNTHETIC_GROUP", "SYNTHETIC_COMMENT", "mark_synthetic", "is_synthetic_zip"]

log = logging.getLogger(__name__)

#: private creator of the synthetic marker block
SYNTHETIC_CREATOR = "UKBMRI SYNTHETIC"
#: the (odd) group holding the private block
SYNTHETIC_GROUP = 0x0011
#: ImageComments of every synthetic image
SYNTHETIC_COMMENT = "SYNTHETIC: ukbmri phantom, not a human subject"
#: header bytes read from the member (DICOM headers of these files are a few kB)
_HEAD_BYTES = 256 * 1024


def mark_synthetic(ds) -> None:
    """Add the synthetic marker to a pydicom ``Dataset`` (in place)."""
    block = ds.private_block(SYNTHETIC_GROUP, SYNTHETIC_CREATOR, create=True)
    block.add_new(0x10, "LO", "SYNTHETIC PHANTOM")
    block.add_new(0x11, "LO", "NOT A HUMAN SUBJECT")
    ds.ImageComments = SYNTHETIC_COMMENT


def _has_marker(ds) -> bool:
    for el in range(0x10, 0x100):
        tag = (SYNTHETIC_GROUP << 16) | el
        if tag not in ds:
            continue
        value = ds[tag].value
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        if str(value).strip() == SYNTHETIC_CREATOR:
            return True
    return False


def _is_ukbmri_implementation(ds) -> bool:
    from ukbmri.synth.dicomenc import IMPLEMENTATION_UID

    meta = getattr(ds, "file_meta", None)
    return meta is not None and str(getattr(meta, "ImplementationClassUID", "")) == IMPLEMENTATION_UID


def _first_member(zf: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or "manifest" in name.lower() or info.file_size == 0:
            continue
        return info
    return None


def is_synthetic_zip(path: str | os.PathLike[str]) -> bool:
    """True when the zip's first DICOM member carries the ``UKBMRI SYNTHETIC`` marker.

    Reads at most 256 kB of one member (the header only, ``stop_before_pixels``).
    Never raises: a missing file, a non-zip, an encrypted or corrupt member or a
    non-DICOM member give ``False`` (the reader reports the real error later).
    """
    try:
        import pydicom

        with zipfile.ZipFile(path) as zf:
            info = _first_member(zf)
            if info is None:
                return False
            with zf.open(info) as fp:
                head = fp.read(_HEAD_BYTES)
        ds = pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True, force=True)
        return _has_marker(ds) or _is_ukbmri_implementation(ds)
    except Exception as exc:  # noqa: BLE001 - any failure means "not known to be synthetic"
        log.debug("%s: not recognised as synthetic (%s: %s)", path, type(exc).__name__, exc)
        return False
