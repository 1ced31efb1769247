"""Domain-randomised phantoms (``ukbmri synth --domain randomised``, :mod:`ukbmri.synth.domain`)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.io.reader import read_zip
from ukbmri.preprocess.liver_tensors import gre_tensor, ideal_tensor
from ukbmri.synth import Label, build_phantom, sample_participants, truth_row, write_participant
from ukbmri.synth.domain import NOISE_RANGE, PDFF_RANGE, R2STAR_RANGE


def _tensor_sha(t: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(t, dtype=np.float32).tobytes()).hexdigest()


def test_randomised_sampling_is_deterministic_and_wide():
    a = sample_participants(120, np.random.default_rng(5), domain="randomised")
    b = sample_participants(10, np.random.default_rng(5), domain="randomised")
    assert a[:10] == b
    assert all(p.domain is not None for p in a)
    pdff = np.array([p.liver_pdff_percent for p in a])
    r2 = np.array([p.liver_r2star_per_s for p in a])
    noise = np.array([p.domain.noise_scale for p in a])
    assert PDFF_RANGE[0] <= pdff.min() and pdff.max() <= PDFF_RANGE[1]
    assert R2STAR_RANGE[0] <= r2.min() and r2.max() <= R2STAR_RANGE[1]
    assert NOISE_RANGE[0] <= noise.min() and noise.max() <= NOISE_RANGE[1]
    # fatty and iron-loaded livers are well represented (ordinary cohorts: ~1 % and ~2 %)
    assert 0.3 < np.mean(pdff >= 30.0) < 0.5
    assert 0.25 < np.mean(r2 >= 150.0) < 0.5
    assert np.any((pdff >= 30) & (r2 >= 150))  # both at once occur too
    with pytest.raises(ValueError, match="domain"):
        sample_participants(1, np.random.default_rng(5), domain="weird")


def test_default_synth_unchanged():
    """Ordinary phantoms: no jitter, same draws as before the randomised domain existed (pinned pixels)."""
    people = sample_participants(2, np.random.default_rng(11))
    assert people == sample_participants(2, np.random.default_rng(11), domain="ordinary")
    assert all(p.domain is None for p in people)


def test_default_pixels_pinned(tmp_path):
    p = sample_participants(1, np.random.default_rng(11))[0]
    paths = write_participant(p, tmp_path, fields=(20203,), rng=np.random.default_rng([11, 0]))
    t = gre_tensor(read_zip(paths[20203], expect_field=20203))
    # sha256 of the float32 20203 tensor written by the generator before domain randomisation was added
    assert _tensor_sha(t) == "6951d0a4722466d3da81ea50799e64962239c32b2471e6cbb761fbe1ef5750a6"


def test_truth_comes_from_the_phantom():
    p = sample_participants(1, np.random.default_rng(3), domain="randomised")[0]
    ph = build_phantom(p)
    row = truth_row(p, ph)
    assert row["liver_pdff_percent"] == pytest.approx(p.liver_pdff_percent, abs=1e-3)
    assert row["liver_r2star_per_s"] == pytest.approx(p.liver_r2star_per_s, abs=1e-2)
    assert 0.3 < row["liver_volume_l"] < 4.0
    # the jittered liver is where the landmarks say (the 20203 / 20254 slices follow it)
    lm = ph.landmarks
    g = np.linspace(-15.0, 15.0, 5)
    around = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    around += [lm["x_liver_centre"], lm["y_liver_centre"], lm["z_liver_centre"]]
    assert np.mean(ph.labels_points(around) == Label.LIVER) > 0.6


def test_randomised_zips_read_back_deterministically(tmp_path):
    out = tmp_path / "a"
    res = CliRunner().invoke(cli, ["synth", "--out", str(out), "-n", "1", "--seed", "9", "--fields", "20203,20254",
                                   "--domain", "randomised"])
    assert res.exit_code == 0, res.output
    truth = pd.read_csv(out / "truth.csv")
    assert PDFF_RANGE[0] <= truth["liver_pdff_percent"][0] <= PDFF_RANGE[1]
    eid = int(truth["eid"][0])
    gre = gre_tensor(read_zip(out / f"{eid}_20203_2_0.zip", expect_field=20203))
    ideal = ideal_tensor(read_zip(out / f"{eid}_20254_2_0.zip", expect_field=20254))
    assert gre.shape == (10, 160, 160) and ideal.shape == (36, 232, 256)
    assert np.isfinite(gre).all() and gre.max() > 0 and ideal.max() > 0
    p = sample_participants(1, np.random.default_rng(9), domain="randomised")[0]
    again = write_participant(p, tmp_path / "b", fields=(20203,), rng=np.random.default_rng([9, 0]))
    assert again[20203].read_bytes() == (out / f"{eid}_20203_2_0.zip").read_bytes()


def test_noise_scale_scales_the_background(tmp_path):
    """The jitter's noise factor multiplies the complex noise: air (Rayleigh) magnitudes scale with it."""
    p = sample_participants(1, np.random.default_rng(4), domain="randomised")[0]
    means = []
    for k, scale in enumerate((1.0, 3.0)):
        q = replace(p, domain=replace(p.domain, noise_scale=scale))
        path = write_participant(q, tmp_path / str(k), fields=(20203,), rng=np.random.default_rng([4, 0]))[20203]
        t = gre_tensor(read_zip(path, expect_field=20203))
        means.append(float(t[:, :6, :].mean()))  # anterior rows: air above the body
    assert means[1] / means[0] == pytest.approx(3.0, rel=0.15)


def test_cli_domain_rejects_liver_stress(tmp_path):
    res = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "x"), "--liver-stress", "train",
                                   "--domain", "randomised"])
    assert res.exit_code != 0 and "--domain" in res.output
    res = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "y"), "--domain", "other"])
    assert res.exit_code != 0
