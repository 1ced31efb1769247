"""The manifest: robust parsing of its quirks, and the reader's advisory comparison with the headers."""

from __future__ import annotations

import pytest

from ukbmri.io import parse_manifest, scan_zip
from ukbmri.io.manifest import find_manifest_member, normalise_column

ROWS = [("1.dcm", "Dixon_noBH_in"), ("2.dcm", "Dixon_noBH_W")]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"quote_date": False},
        {"crlf": True},
        {"trailing_blank": 3},
        {"bom": True},
        {"crlf": True, "quote_date": False, "trailing_blank": 2, "bom": True},
    ],
)
def test_manifest_quirks_parse_to_the_same_rows(factory, kw):
    m = parse_manifest(factory.manifest_bytes(ROWS, **kw))
    assert m.columns == ("filename", "patientid", "date", "series_description", "seriesid")
    assert m.filenames == ("1.dcm", "2.dcm")
    assert [r["date"] for r in m.rows] == ["Jun 3, 2019"] * 2
    assert [r["seriesid"] for r in m.rows] == ["1.2.3.0", "1.2.3.1"]
    assert m.descriptions() == dict(ROWS)
    assert m.problems == ()


@pytest.mark.parametrize(
    "raw, canonical",
    [
        ("series discription", "series_description"),
        ("Series Description", "series_description"),
        ("SERIES_DESCRIPTON", "series_description"),
        ("\ufefffilename", "filename"),
        (" File Name ", "filename"),
        ("Patient ID", "patientid"),
        ("seriesid", "seriesid"),
        ("Study Date", "study_date"),
    ],
)
def test_column_names_normalised(raw, canonical):
    assert normalise_column(raw) == canonical


def test_short_rows_and_missing_filename_are_noted(factory):
    m = parse_manifest(b"filename,patientid,date\n1.dcm,P\n2.dcm,P,\"Jun 3, 2019\"\n")
    assert m.rows[0] == {"filename": "1.dcm", "patientid": "P"}
    assert any("fewer fields" in p for p in m.problems)
    m = parse_manifest(b"name,foo\na,b\n")
    assert m.filenames == () and any("no filename column" in p for p in m.problems)
    assert parse_manifest(b"\r\n\r\n").problems == ("manifest is empty",)


def test_unrepairable_long_rows_noted():
    m = parse_manifest(b"filename,series discription\n1.dcm,a,b\n")
    assert m.rows[0] == {"filename": "1.dcm", "series_description": "a"}
    assert any("more fields" in p for p in m.problems)


def test_find_manifest_member():
    assert find_manifest_member(["1.dcm", "manifest.cvs", "2.dcm"]) == "manifest.cvs"
    assert find_manifest_member(["1.dcm", "MANIFEST.CSV"]) == "MANIFEST.CSV"
    assert find_manifest_member(["1.dcm", "2.dcm"]) is None


def test_reader_finds_misspelled_crlf_manifest(tmp_path, factory):
    members = factory.gre_members(phase=False)
    rows = [(n, "gre_mullti_echo_10_TE_liver") for n, _ in members]
    data = factory.manifest_bytes(rows, crlf=True, quote_date=False, trailing_blank=2)
    z = scan_zip(factory.write_zip(tmp_path / "1_20203_2_0.zip", [*members, ("manifest.cvs", data)]))
    assert z.manifest is not None and z.manifest.member == "manifest.cvs" and len(z.manifest) == 10
    assert z.problems == ()


def test_missing_manifest_is_a_note(tmp_path, factory):
    z = scan_zip(factory.write_zip(tmp_path / "1_20203_2_0.zip", factory.gre_members()))
    assert z.manifest is None and "no manifest in the zip" in z.problems


def test_manifest_disagreements_are_problems_not_errors(tmp_path, factory):
    members = factory.gre_members(phase=False)
    rows = [(n, "gre_mullti_echo_10_TE_liver") for n, _ in members[1:]]  # first file not listed
    rows[0] = (rows[0][0], "something else")  # description differs
    rows.append(("ghost.dcm", "gre_mullti_echo_10_TE_liver"))  # listed, absent
    z = scan_zip(factory.write_zip(tmp_path / "1_20203_2_0.zip", [*members, ("manifest.csv", factory.manifest_bytes(rows))]))
    assert z.field == 20203 and z.series[0].n_images == 10  # the headers win
    text = "\n".join(z.problems)
    assert "manifest lists 1 file(s) absent from the zip: ghost.dcm" in text
    assert f"1 DICOM file(s) not in the manifest: {members[0][0]}" in text
    assert "manifest 'something else' vs DICOM 'gre_mullti_echo_10_TE_liver'" in text


def test_wrong_manifest_content_does_not_break_reading(tmp_path, factory):
    members = factory.gre_members(phase=False)
    z = scan_zip(factory.write_zip(tmp_path / "1_20203_2_0.zip", [*members, ("manifest.csv", b"\x00\xff garbage\n,,,\n")]))
    assert z.field == 20203 and z.manifest is not None
    assert any("no filename column" in p for p in z.problems)
