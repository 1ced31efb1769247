"""The struct-based header walker (io/tagwalk.py) against pydicom, and its refusals."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ukbmri.io.dicom import parse_header_prefix, parse_image
from ukbmri.io.fastheader import fast_header
from ukbmri.io.tagwalk import walk_header


def _with_sequences(data: bytes, implicit: bool, undefined: bool) -> bytes:
    """Re-save ``data`` with a nested sequence (items of undefined length when asked) and a private OB blob."""
    ds = pydicom.dcmread(io.BytesIO(data))
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "113", "DCM"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.add_new(0x00291010, "OB", b"SV10\x04\x03\x02\x01" * 300)  # like Siemens' CSA header
    if undefined:
        ds["ReferencedImageSequence"].is_undefined_length = True
        ds.ReferencedImageSequence[0]["PurposeOfReferenceCodeSequence"].is_undefined_length = True
        for it in (item, inner):
            it.is_undefined_length_sequence_item = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("undefined", [False, True])
def test_walker_agrees_with_pydicom_across_sequences(factory, implicit, undefined):
    data = _with_sequences(factory.make_image(implicit=implicit, slope=2.0, intercept=-1.0), implicit, undefined)
    assert fast_header(data) is not None, "the fast path must handle sequences and private blobs"
    fast_h, fast_ref = parse_image(data)
    slow_h, slow_ref = parse_image(data, use_pydicom=True)
    assert fast_h == slow_h
    assert (fast_ref.offset, fast_ref.nbytes) == (slow_ref.offset, slow_ref.nbytes)
    assert (fast_ref.decode() == slow_ref.decode()).all()


def test_prefix_too_short_asks_for_more(factory):
    data = _with_sequences(factory.make_image(), False, True)
    pixel_at = fast_header(data).pixel_at
    assert parse_header_prefix(data[: pixel_at - 1]) is None
    assert parse_header_prefix(data[:200]) is None
    hdr, spec = parse_header_prefix(data[: pixel_at + 12])
    assert hdr == parse_image(data)[0] and spec.pixel_at == pixel_at


def test_walker_refuses_what_it_does_not_understand(factory):
    data = factory.make_image()
    wanted = {0x00280010}
    assert walk_header(data, wanted) is not None
    # big endian (retired) transfer syntax: pydicom decides
    big = data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.2\x00")
    assert walk_header(big, wanted) is None
    # a VR that is not a DICOM VR
    at = data.index(b"\x28\x00\x10\x00US")
    bad = data[: at + 4] + b"u?" + data[at + 6 :]
    assert walk_header(bad, wanted) is None
    # no DICM marker
    assert walk_header(data[132:], wanted) is None


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the IS value "7.0"
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"SeriesNumber": "7.0"},  # IS written as a float: quick path declines, TagReader accepts
        {"SliceThickness": ["3.0", "4.0"]},  # multi-valued where one is read
        {"PatientID": ""},  # empty optional value
        {"SeriesDescription": " Dixon_noBH_W \x00"},  # padding to strip
        {"NumberOfFrames": "1"},
    ],
)
def test_quick_header_equals_tag_reader_and_pydicom(factory, extra):
    from ukbmri.io.dicomtags import TagReader, header_from
    from ukbmri.io.fastheader import quick_header

    ds = pydicom.dcmread(io.BytesIO(factory.make_image(slope=2.0, intercept=-3.0)))
    for k, v in extra.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    fh = fast_header(data)
    got = quick_header(fh, "m")
    via_reader = header_from(TagReader(fh.get, None, "m"), "m")
    if got is not None:
        assert got[0] == via_reader
    assert parse_image(data, member="m")[0] == parse_image(data, member="m", use_pydicom=True)[0] == via_reader


@pytest.mark.parametrize("undefined", [False, True])
def test_explicit_vr_loop_agrees_with_the_general_walker_on_damaged_headers(factory, undefined):
    import numpy as np

    from ukbmri.io.fastheader import _BY_TAG, _KEYS

    data = _with_sequences(factory.make_image(), False, undefined)
    pixel_at = fast_header(data).pixel_at
    rng = np.random.default_rng(7)
    structural = [b"\xfe\xff", b"\xe0\x7f", b"SQ", b"OB", b"UN", b"\xff\xff", b"\x00\x00", b"\x28\x00", b"u?"]
    # element starts (a group word followed by an upper-case VR), where damage changes the structure
    starts = [i for i in range(132, pixel_at) if data[i + 1] == 0 and data[i + 4 : i + 6].isalpha()
              and data[i + 4 : i + 6].isupper()]
    outcomes = set()
    for _ in range(400):  # damaged element headers, lengths and tags, and truncations
        d = bytearray(data[: pixel_at + 64])
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(132, len(d))) if rng.random() < 0.5 else starts[int(rng.integers(len(starts)))]
            at += int(rng.integers(0, 3)) * 2  # the group, element or VR word
            d[at : at + 2] = structural[int(rng.integers(len(structural)))]
        if rng.random() < 0.3:
            d = d[: int(rng.integers(132, len(d) + 1))]
        general = walk_header(bytes(d), _BY_TAG)
        assert walk_header(bytes(d), _BY_TAG, _KEYS) == general
        outcomes.add(general is None)
    assert outcomes == {True, False}


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the IS value "7.0"
def test_quick_header_memo_gives_the_headers_of_each_member_alone(factory):
    from ukbmri.io.fastheader import quick_header

    uid = "1.2.826.0.1.3680043.8.498.1"
    images = [
        factory.make_image(instance=i, uid=uid, position=(-10.0, -20.0, -3.0 * i), time=f"1015{30 + i % 2:02d}.25")
        for i in range(1, 5)
    ]
    images += [
        factory.make_image(instance=5, uid=uid, echo_time=None, slope=2.0),  # shared values that differ
        factory.make_image(instance=6, uid=uid, extra={"SeriesNumber": "7.0"}),  # not plain: None, not remembered
        factory.make_image(instance=7, uid=uid),  # plain again, same shared values as the first members
        factory.make_image(series_number=2, description="Dixon_noBH_F", instance=1, date=None, time=None),
    ]
    memo: dict = {}
    results = []
    for k, data in enumerate(images * 2):  # twice: the second round is served from the memo
        fh = fast_header(data)
        alone = quick_header(fh, f"m{k}")
        assert quick_header(fh, f"m{k}", memo) == alone
        results.append(alone)
    assert results[5] is None and all(r is not None for i, r in enumerate(results[:8]) if i != 5)
    assert results[4][0].slope == 2.0 and results[0][0].slope == 1.0
    assert results[0][0].acquired != results[1][0].acquired and results[7][0].acquired is None
