"""Determinism, the cohort writer and the ``ukbmri synth`` command."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.synth import TRUTH_COLUMNS, truth_row, write_cohort, write_participant

SEED = 2024  # as in conftest


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_same_seed_same_bytes(plain, tmp_path):
    """Re-generating the participant with the same seed gives identical zips and truth."""
    p = plain["p"]
    paths = write_participant(p, tmp_path, rng=np.random.default_rng([SEED, 0]))
    for field, path in paths.items():
        assert path.read_bytes() == plain["paths"][field].read_bytes(), field
    assert truth_row(p) == truth_row(p, plain["phantom"])


def test_different_seed_different_noise(plain, tmp_path):
    p = plain["p"]
    a = _members(plain["paths"][20203])
    b = _members(write_participant(p, tmp_path, fields=(20203,), rng=np.random.default_rng(99))[20203])
    assert a.keys() == b.keys()  # same UIDs (from the participant), different noise
    assert sum(a[k] != b[k] for k in a if k.endswith(".dcm")) == 20


def test_cohort_workers_do_not_change_output(tmp_path):
    one = write_cohort(tmp_path / "one", 2, seed=5, fields=(20203,), workers=1)
    two = write_cohort(tmp_path / "two", 2, seed=5, fields=(20203,), workers=2)
    pd.testing.assert_frame_equal(one, two)
    for f in sorted((tmp_path / "one").glob("*.zip")):
        assert f.read_bytes() == (tmp_path / "two" / f.name).read_bytes()
    assert (tmp_path / "one" / "truth.csv").read_bytes() == (tmp_path / "two" / "truth.csv").read_bytes()
    assert list(one.columns) == [*TRUTH_COLUMNS, "quirks"] and len(one) == 2


def test_cli_synth(tmp_path):
    out = tmp_path / "c"
    args = ["synth", "--out", str(out), "-n", "2", "--seed", "7", "--fields", "20203,20254",
            "--quirk", "no_manifest@1", "--quirk", "wrong_name_field@0", "--first-eid", "5000000"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    names = sorted(f.name for f in out.glob("*.zip"))
    assert names == ["5000000_20203_2_0.zip", "5000000_20254_2_0.zip", "5000001_20203_2_0.zip", "5000001_20254_2_0.zip"]
    truth = pd.read_csv(out / "truth.csv", keep_default_na=False)
    assert truth.eid.tolist() == [5000000, 5000001]
    assert truth.quirks.tolist() == ["wrong_name_field", "no_manifest"]
    with zipfile.ZipFile(out / "5000001_20203_2_0.zip") as zf:
        assert not any("manifest" in n for n in zf.namelist())
    with zipfile.ZipFile(out / "5000000_20203_2_0.zip") as zf:  # holds the IDEAL content
        assert len([n for n in zf.namelist() if n.endswith(".dcm")]) == 72


def test_cli_synth_rejects_bad_input(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["synth", "--out", str(tmp_path), "-n", "1", "--quirk", "missing_station=9"])
    assert res.exit_code == 2 and "station" in res.output
    res = runner.invoke(cli, ["synth", "--out", str(tmp_path), "-n", "1", "--fields", "20204"])
    assert res.exit_code == 2 and "20201" in res.output
    assert not list(tmp_path.glob("*.zip"))


def test_cli_synth_refuses_a_folder_holding_a_cohort(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "1000001_20203_2_0.zip").write_bytes(b"old")
    (out / "truth.csv").write_text("eid\n1\n2\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["synth", "--out", str(out), "-n", "1", "--fields", "20203"])
    assert res.exit_code != 0 and "--overwrite" in res.output
    assert (out / "1000001_20203_2_0.zip").read_bytes() == b"old"  # untouched
    assert (out / "truth.csv").read_text() == "eid\n1\n2\n"
    res = runner.invoke(cli, ["synth", "--out", str(out), "-n", "1", "--fields", "20203", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (out / "1000001_20203_2_0.zip").read_bytes() != b"old"
