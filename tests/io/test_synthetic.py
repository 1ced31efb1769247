"""The synthetic marker: what ukbmri.synth writes and what is_synthetic_zip recognises."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pydicom
import pytest

from ukbmri.io.synthetic import SYNTHETIC_COMMENT, SYNTHETIC_CREATOR, is_synthetic_zip, mark_synthetic


@pytest.fixture(scope="module")
def synth_gre(tmp_path_factory):
    from ukbmri.synth import sample_participants, write_participant

    rng = np.random.default_rng(3)
    p = sample_participants(1, rng)[0]
    d = tmp_path_factory.mktemp("synth")
    return write_participant(p, d, fields=(20203,), rng=rng)[20203]


def _first_dicom(path):
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dcm"))
        return pydicom.dcmread(io.BytesIO(zf.read(name)))


def test_synth_zips_carry_the_marker(synth_gre):
    ds = _first_dicom(synth_gre)
    block = ds.private_block(0x0011, SYNTHETIC_CREATOR)
    assert block[0x10].value == "SYNTHETIC PHANTOM" and block[0x11].value == "NOT A HUMAN SUBJECT"
    assert ds.ImageComments == SYNTHETIC_COMMENT
    assert ds[0x00110010].VR == "LO"
    assert is_synthetic_zip(synth_gre)
    # the marker does not disturb the reader
    from ukbmri.io import read_zip

    assert read_zip(synth_gre).field == 20203


def test_other_dicom_zips_are_not_synthetic(tmp_path, factory):
    z = factory.write_zip(tmp_path / "1_20203_2_0.zip", factory.with_manifest(factory.gre_members(echoes=2)))
    assert not is_synthetic_zip(z)


def test_marker_recognised_on_any_dicom_and_legacy_synth_uid(tmp_path, factory):
    data = factory.make_image()
    ds = pydicom.dcmread(io.BytesIO(data))
    mark_synthetic(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    z = factory.write_zip(tmp_path / "marked.zip", [("manifest.csv", b"filename\n"), ("a.dcm", buf.getvalue())])
    assert is_synthetic_zip(z)  # the manifest is skipped, the first DICOM member read
    from ukbmri.synth.dicomenc import IMPLEMENTATION_UID

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_UID  # zips written before the marker existed
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert is_synthetic_zip(factory.write_zip(tmp_path / "legacy.zip", [("a.dcm", buf.getvalue())]))


def test_never_raises_for_bad_paths(tmp_path, synth_gre, factory):
    text = tmp_path / "text.zip"
    text.write_text("not a zip")
    empty = factory.write_zip(tmp_path / "empty.zip", [])
    junk = factory.write_zip(tmp_path / "junk.zip", [("a.dcm", b"\x00" * 10)])
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(synth_gre.read_bytes()[:5000])
    link = tmp_path / "dangling.zip"
    os.symlink(tmp_path / "nowhere", link)
    folder = tmp_path / "folder.zip"
    folder.mkdir()
    for p in (text, empty, junk, truncated, link, folder, tmp_path / "missing.zip"):
        assert is_synthetic_zip(p) is False, p


def test_encrypted_member_is_not_read(tmp_path, synth_gre):
    with zipfile.ZipFile(synth_gre) as zf:
        name = zf.namelist()[0]
        data = zf.read(name)
    z = tmp_path / "enc.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(name, data)
    b = bytearray(z.read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = b.find(sig)
        b[i + off] |= 1
    z.write_bytes(bytes(b))
    assert is_synthetic_zip(z) is False
