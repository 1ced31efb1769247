"""Physics liver PDFF / R2* against the synthetic cohort's truth over 0-40 % (fast: 5 GRE participants; slow: 20 per field)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest


@pytest.mark.parametrize("field, n", [
    (20203, 5),
    pytest.param(20203, 20, marks=pytest.mark.slow),
    pytest.param(20254, 20, marks=pytest.mark.slow),
])
def test_liver_physics_matches_truth_over_0_to_40_percent(tmp_path, field, n):
    synth = pytest.importorskip("ukbmri.synth")
    from ukbmri.io import read_zip
    from ukbmri.physics.liver import liver_fat_from_zip

    rng = np.random.default_rng(2024)
    people = synth.sample_participants(n, rng)
    pdff = np.linspace(0.0, 40.0, n)
    err_ff, err_r2 = [], []
    for p, target in zip(people, pdff):
        p = dataclasses.replace(p, liver_pdff_percent=round(float(target), 3))
        paths = synth.write_participant(p, tmp_path, fields=(field,), rng=rng)
        res = liver_fat_from_zip(read_zip(paths[field]))
        err_ff.append(res.pdff_percent - p.liver_pdff_percent)
        err_r2.append(res.r2star_per_s - p.liver_r2star_per_s)
    err_ff, err_r2 = np.asarray(err_ff), np.asarray(err_r2)
    assert abs(err_ff.mean()) <= 0.3
    assert np.abs(err_ff).mean() <= 0.5
    assert np.abs(err_r2).mean() <= 2.0
