"""``ukbmri inspect``: table content, one-line errors, exit codes, --pixels, --debug."""

from __future__ import annotations

import io

import pydicom
import pytest
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.errors import NotAZipError


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def test_inspect_dixon_table(dixon_zip):
    r = _run("inspect", str(dixon_zip))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "field     20201: Dixon neck-to-knee" in out
    assert "eid 1000001, field 20201, instance 2, array 0" in out
    assert "manifest  manifest.csv (72 rows)" in out
    assert "24 series, 72 images" in out
    lines = out.splitlines()
    header = next(ln for ln in lines if "description" in ln and "kind" in ln)
    assert "values" not in header  # header-only by default
    row8 = next(ln for ln in lines if ln.split()[:2] == ["8", "Dixon_BH_17s_W"])
    assert "magnitude" in row8 and "8 x 8" in row8 and "2 x 2" in row8 and "-22.0..-12.0 step 5" in row8
    assert "2019-06-03 11:12:00" in row8
    # columns are aligned: each column starts at the same offset in every row
    desc_col = header.index("description")
    rows = [ln for ln in lines if "Dixon_" in ln]
    assert len(rows) == 24 and {ln.index("Dixon_") for ln in rows} == {desc_col}
    assert "problems: none" in out


def test_inspect_gre_echo_times_and_pixels(gre_zip):
    r = _run("inspect", "--pixels", str(gre_zip))
    assert r.exit_code == 0, r.output
    assert "2.38..23.8 (10)" in r.stdout
    phase = next(ln for ln in r.stdout.splitlines() if " phase " in ln)
    lo, hi = phase.split()[-1].split("..")
    assert -4096 <= float(lo) < 0 < float(hi) <= 4094
    assert "values" in r.stdout


def test_inspect_bad_zip_one_line_and_continues(tmp_path, gre_zip, ideal_zip):
    bad = tmp_path / "1000002_20201_2_0.zip"
    bad.write_text("not a zip")
    missing = tmp_path / "nope.zip"
    r = _run("inspect", str(gre_zip), str(bad), str(missing), str(ideal_zip))
    assert r.exit_code == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 2
    assert err[0].startswith(f"error: {bad}: not a zip archive")
    assert str(missing) in err[1]
    assert "field     20203" in r.stdout and "field     20254" in r.stdout  # the others still shown
    assert "Traceback" not in r.output


def test_inspect_folder_and_problem_lines(tmp_path, factory):
    factory.write_zip(tmp_path / "1000001_20201_2_0.zip", factory.with_manifest(factory.gre_members()))
    r = _run("inspect", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "problems (1):" in r.stdout
    assert "    - file name says field 20201 but the DICOM headers say 20203" in r.stdout


def test_inspect_debug_reraises(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_text("nope")
    r = _run("--debug", "inspect", str(bad))
    assert r.exit_code != 0 and isinstance(r.exception, NotAZipError)


@pytest.mark.parametrize("args", [["inspect"], ["inspect", "--help"]])
def test_inspect_usage(args):
    r = _run(*args)
    if "--help" in args:
        assert r.exit_code == 0 and "--pixels" in r.output
    else:
        assert r.exit_code == 2 and "Missing argument" in r.output


def test_inspect_pixels_reports_an_oversized_zip_and_goes_on_recursively(tmp_path, factory, gre_zip):
    import shutil

    members = []
    for name, data in factory.gre_members():
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.Rows = ds.Columns = 65535
        buf = io.BytesIO()
        ds.save_as(buf)
        members.append((name, buf.getvalue()))
    (tmp_path / "a" / "b").mkdir(parents=True)
    factory.write_zip(tmp_path / "a" / "1000003_20203_2_0.zip", members)
    shutil.copy(gre_zip, tmp_path / "a" / "b" / "1000004_20203_2_0.zip")
    (tmp_path / ".hidden").mkdir()
    shutil.copy(gre_zip, tmp_path / ".hidden" / "1000005_20203_2_0.zip")
    r = _run("inspect", "--pixels", str(tmp_path))
    assert r.exit_code == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "1000003_20203_2_0.zip" in err[0] and any(f"[{n}]" in err[0] for n, _ in members)
    assert "65535 x 65535" in err[0]
    assert "1000004_20203_2_0.zip" in r.stdout and "1000005" not in r.output  # nested found, hidden skipped
    assert "Traceback" not in r.output
