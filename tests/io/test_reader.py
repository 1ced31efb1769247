"""read_zip / scan_zip: grouping, ordering, rescaling, field detection and problem notes."""

from __future__ import annotations

import io
import logging
import random

import numpy as np
import pydicom
import pytest

from ukbmri.errors import (
    FieldMismatchError,
    NoDicomError,
    NotDicomError,
    SeriesError,
    UnknownProtocolError,
)
from ukbmri.io import dixon_kind, normalise_description, read_dicom_series, read_zip, scan_zip


def _expected_pixels(members, names) -> np.ndarray:
    data = dict(members)
    out = []
    for n in names:
        ds = pydicom.dcmread(io.BytesIO(data[n]))
        out.append(ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0)))
    return np.stack(out)


def test_description_helpers():
    assert normalise_description(" LMS IDEAL OPTIMISED LOW FLIP 6DYN ") == "lms_ideal_optimised_low_flip_6dyn"
    assert [dixon_kind(d) for d in ("Dixon_noBH_in", "Dixon_BH_17s_opp", "Dixon_noBH_F", "dixon_nobh_w")] == [
        "in", "opp", "F", "W"]
    assert dixon_kind("Dixon_noBH") is None and dixon_kind("gre_mullti_echo_10_TE_liver") is None


def test_gre_magnitude_and_phase_share_a_series_number(tmp_path, factory):
    members = factory.gre_members()
    random.Random(0).shuffle(members)  # archive order must not matter
    p = factory.write_zip(tmp_path / "1000001_20203_2_0.zip", factory.with_manifest(members))
    z = read_zip(p)
    assert z.field == 20203
    assert [(s.series_number, s.image_kind) for s in z.series] == [(7, "magnitude"), (7, "phase")]
    mag, ph = z.series
    assert mag.series_uid == ph.series_uid
    assert mag.instance_numbers.tolist() == list(range(1, 11))
    np.testing.assert_allclose(mag.echo_times_ms, 2.38 * np.arange(1, 11))
    assert mag.members == tuple(f"gre_m{e:02d}.dcm" for e in range(10))
    assert mag.pixels.dtype == np.float32 and mag.pixels.shape == (10, 8, 8)
    np.testing.assert_array_equal(mag.pixels, _expected_pixels(members, mag.members))
    # phase: stored 0..4095 with slope 2, intercept -4096
    np.testing.assert_array_equal(ph.pixels, _expected_pixels(members, ph.members))
    assert ph.pixels.min() >= -4096 and ph.pixels.max() <= 4094 and ph.pixels.min() < 0
    assert z.problems == ()
    assert z.find(description="GRE_MULLTI_ECHO_10_TE_LIVER", kind="phase") == [ph]


def test_series_geometry_and_metadata(dixon_zip):
    z = read_zip(dixon_zip)
    w = z.find(suffix="W")
    assert len(w) == 6 and all(s.description.endswith("_W") for s in w)
    s = w[1]
    assert s.description == "Dixon_BH_17s_W" and s.image_kind == "magnitude"
    np.testing.assert_allclose(s.positions[:, 2], [-12.0, -17.0, -22.0])
    np.testing.assert_allclose(s.normal, [0, 0, 1])
    assert s.pixel_spacing == (2.0, 2.0) and s.shape == (8, 8)
    assert s.field_strength_t == 1.5 and s.slice_thickness == 3.0 and s.repetition_time_ms == pytest.approx(6.69)
    assert s.acquired is not None and s.acquired.hour == 11
    assert z.find(suffix="_w") == w and z.find(description="dixon_nobh_w", suffix="W") == [w[0], w[4], w[5]]
    assert z.problems == ()
    assert z.key.eid == 1000001 and z.manifest is not None and len(z.manifest) == 72


def test_header_only_scan_leaves_pixels_none(dixon_zip):
    z = scan_zip(dixon_zip)
    assert all(s.pixels is None for s in z.series)
    full = read_zip(dixon_zip)
    assert [s.members for s in z.series] == [s.members for s in full.series]
    assert all(s.pixels is not None for s in full.series)


def test_pixels_callable_decodes_only_chosen_series(dixon_zip):
    z = read_zip(dixon_zip, pixels=lambda s: dixon_kind(s.description) in ("W", "F"))
    for s in z.series:
        assert (s.pixels is not None) == (dixon_kind(s.description) in ("W", "F"))


def test_rescale_applied_per_image(tmp_path, factory):
    members = [
        (f"{i}.dcm", factory.make_image(description="gre_mullti_echo_10_TE_liver", series_number=3, instance=i + 1,
                                       slope=s, intercept=b))
        for i, (s, b) in enumerate([(1.0, 0.0), (0.5, 10.0), (2.0, -4096.0)])
    ]
    p = factory.write_zip(tmp_path / "r.zip", members)
    s = read_zip(p).series[0]
    np.testing.assert_allclose(s.pixels, _expected_pixels(members, s.members), rtol=1e-6)
    raw = factory.pattern_pixels(3 * 100 + 2).astype(np.float64)
    np.testing.assert_allclose(s.pixels[1], raw * 0.5 + 10.0)


@pytest.mark.parametrize(
    "fixture, field, n_series",
    [("dixon_zip", 20201, 24), ("gre_zip", 20203, 2), ("ideal_zip", 20254, 12)],
)
def test_field_detection(request, fixture, field, n_series):
    z = scan_zip(request.getfixturevalue(fixture))
    assert z.field == field and z.key.field == field and len(z.series) == n_series
    assert z.problems == ()


def test_ideal_dynamics_alternate_magnitude_and_phase(ideal_zip):
    z = read_zip(ideal_zip)
    mag = z.find(kind="magnitude")
    assert [s.series_number for s in mag] == [11, 13, 15, 17, 19, 21]
    assert [s.series_number for s in z.find(kind="phase")] == [12, 14, 16, 18, 20, 22]
    np.testing.assert_allclose(mag[0].echo_times_ms, 1.2 + 2.0 * np.arange(6))


def test_name_header_disagreement_is_a_note_not_an_error(tmp_path, factory, caplog):
    p = factory.write_zip(tmp_path / "1000001_20201_2_0.zip", factory.with_manifest(factory.gre_members()))
    with caplog.at_level(logging.WARNING, logger="ukbmri.io.reader"):
        z = scan_zip(p)
    msg = "file name says field 20201 but the DICOM headers say 20203"
    assert z.field == 20203 and msg in z.problems
    assert any(msg in r.getMessage() for r in caplog.records)


def test_expect_field(gre_zip):
    assert read_zip(gre_zip, expect_field=20203, pixels=False).field == 20203
    with pytest.raises(FieldMismatchError) as ei:
        read_zip(gre_zip, expect_field=20201)
    assert "expected 20201, found 20203" in str(ei.value)


def test_unknown_protocol(tmp_path, factory):
    p = factory.write_zip(tmp_path / "u.zip", [("a.dcm", factory.make_image(description="t1_vibe_tra"))])
    with pytest.raises(UnknownProtocolError, match="t1_vibe_tra"):
        scan_zip(p)


def test_zip_without_dicom(tmp_path, factory):
    p = factory.write_zip(tmp_path / "m.zip", [("manifest.csv", factory.manifest_bytes([]))])
    with pytest.raises(NoDicomError):
        scan_zip(p)
    empty = factory.write_zip(tmp_path / "e.zip", [])
    with pytest.raises(NoDicomError, match="no members"):
        scan_zip(empty)


def test_stray_non_dicom_member_names_it(tmp_path, factory):
    members = factory.with_manifest(factory.gre_members()) + [("README.txt", b"read me\n")]
    p = factory.write_zip(tmp_path / "1000001_20203_2_0.zip", members)
    with pytest.raises(NotDicomError) as ei:
        scan_zip(p)
    assert ei.value.member == "README.txt"


def test_os_litter_is_skipped_with_a_note(tmp_path, factory):
    members = factory.gre_members() + [("__MACOSX/._gre_m00.dcm", b"\x00\x05\x16\x07"), (".DS_Store", b"\x00\x00")]
    z = scan_zip(factory.write_zip(tmp_path / "1000001_20203_2_0.zip", members))
    assert z.field == 20203 and sum("operating-system" in p for p in z.problems) == 2


def test_mixed_shapes_in_one_series(tmp_path, factory):
    members = [
        ("a.dcm", factory.make_image(description="gre_mullti_echo_10_TE_liver", instance=1)),
        ("b.dcm", factory.make_image(description="gre_mullti_echo_10_TE_liver", instance=2,
                                     pixels=factory.pattern_pixels(1, rows=9))),
    ]
    with pytest.raises(SeriesError, match="mixes image sizes"):
        scan_zip(factory.write_zip(tmp_path / "s.zip", members))


def test_repeated_instance_number(tmp_path, factory):
    members = [(f"{i}.dcm", factory.make_image(description="gre_mullti_echo_10_TE_liver", instance=1)) for i in range(2)]
    with pytest.raises(SeriesError, match="repeats InstanceNumber 1"):
        scan_zip(factory.write_zip(tmp_path / "s.zip", members))


# -- problems per field ------------------------------------------------------------------
def _problems(tmp_path, factory, name, members):
    return scan_zip(factory.write_zip(tmp_path / name, factory.with_manifest(members))).problems


def test_20201_missing_station(tmp_path, factory):
    probs = _problems(tmp_path, factory, "1_20201_2_0.zip", factory.dixon_members(stations=(1, 2, 3, 5, 6)))
    assert "20201: 5 stations found, expected 6" in probs


def test_20201_duplicate_station(tmp_path, factory):
    probs = _problems(tmp_path, factory, "1_20201_2_0.zip", factory.dixon_members(duplicate_station=3))
    dup = [p for p in probs if "acquired 2 times" in p]
    assert len(dup) == 1 and "station 3" in dup[0] and "series 12, 112" in dup[0]
    assert not any("stations found" in p for p in probs)


def test_20201_wf_mismatch(tmp_path, factory):
    probs = _problems(tmp_path, factory, "1_20201_2_0.zip", factory.dixon_members(wf_mismatch=4))
    assert any("station 4 W/F size mismatch" in p and "3x9x8" in p for p in probs)


def test_20203_echo_count(tmp_path, factory):
    probs = _problems(tmp_path, factory, "1_20203_2_0.zip", factory.gre_members(echoes=9))
    assert "20203: 9 magnitude echo images, expected 10" in probs


def test_20254_dynamics(tmp_path, factory):
    probs = _problems(tmp_path, factory, "1_20254_2_0.zip", factory.ideal_members(dynamics=5))
    assert "20254: 5 magnitude dynamics, expected 6" in probs
    probs = _problems(tmp_path, factory, "1_20254_2_0.zip", factory.ideal_members(echoes=5))
    assert any("dynamics without 6 echoes" in p for p in probs)


def test_several_patient_ids_noted(tmp_path, factory):
    members = factory.gre_members(phase=False)
    members[0] = (members[0][0], factory.make_image(series_number=7, uid=factory.series_uid(7, "gre"),
                                                   description="gre_mullti_echo_10_TE_liver", instance=1,
                                                   patient_id="OTHER"))
    path = factory.write_zip(tmp_path / "1_20203_2_0.zip", factory.with_manifest(members))
    z = scan_zip(path)  # inspecting says what is there
    assert any("2 different PatientIDs" in p for p in z.problems)
    with pytest.raises(SeriesError, match="more than one participant"):  # processing refuses to mix two people
        read_zip(path)


def test_read_dicom_series_from_folder_and_files(tmp_path, factory):
    members = factory.gre_members(echoes=3)
    d = tmp_path / "export"
    d.mkdir()
    for name, data in members:
        (d / name).write_bytes(data)
    (d / ".hidden").write_bytes(b"x")
    series = read_dicom_series(d)
    assert [(s.series_number, s.image_kind, s.n_images) for s in series] == [(7, "magnitude", 3), (7, "phase", 3)]
    by_name = {str(d / n): data for n, data in members}
    np.testing.assert_array_equal(series[1].pixels, _expected_pixels(list(by_name.items()), series[1].members))
    files = sorted(d.glob("gre_m*.dcm"))
    (only,) = read_dicom_series(files, pixels=False)
    assert only.n_images == 3 and only.pixels is None
    z = factory.write_zip(tmp_path / "x.zip", members)
    assert [s.n_images for s in read_dicom_series(z)] == [3, 3]


def test_large_headers_scan_like_full_read(tmp_path, factory, monkeypatch):
    """Headers longer than the first scan prefix (Siemens CSA-sized private data) still scan right."""
    from ukbmri.io import reader

    members = []
    for i in range(3):
        data = factory.make_image(description="gre_mullti_echo_10_TE_liver", instance=i + 1, echo_time=2.38 * (i + 1),
                                  pixels=factory.pattern_pixels(i, rows=200, cols=200))
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
        ds.add_new(0x00291010, "OB", b"\x01" * 30_000)
        buf = io.BytesIO()
        ds.save_as(buf)
        members.append((f"{i}.dcm", buf.getvalue()))
    p = factory.write_zip(tmp_path / "csa.zip", members)
    seen = []
    real = reader.parse_header_prefix

    def spy(prefix, **kw):
        got = real(prefix, **kw)
        seen.append((len(prefix), got is not None))
        return got

    monkeypatch.setattr(reader, "parse_header_prefix", spy)
    scanned = scan_zip(p).series[0]
    # first prefixes too short, then enough (the stream goes on: nothing is inflated twice)
    assert seen[:3] == [(4 * 1024, False), (16 * 1024, False), (64 * 1024, True)]
    # the next member starts from what the header needed (30 kB of private data), a little more
    assert seen[3][1] and 30_000 < seen[3][0] < 40_000
    full = read_zip(p).series[0]
    np.testing.assert_allclose(scanned.echo_times_ms, full.echo_times_ms)
    assert scanned.members == full.members and scanned.n_images == 3
    np.testing.assert_array_equal(full.pixels, _expected_pixels(members, full.members))
    chosen = read_zip(p, pixels=lambda s: True).series[0]
    np.testing.assert_array_equal(chosen.pixels, full.pixels)
