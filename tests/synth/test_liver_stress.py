"""``ukbmri synth --liver-stress``: randomised liver phantoms as NIfTI + truth."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
from click.testing import CliRunner

from ukbmri.cli.main import cli
from ukbmri.synth.liver_stress import stress_case


def test_cli_writes_stress_cases_that_match_the_generator(tmp_path):
    out = tmp_path / "s"
    res = CliRunner().invoke(cli, ["synth", "--out", str(out), "-n", "2", "--seed", "9", "--liver-stress", "train"])
    assert res.exit_code == 0, res.output
    truth = pd.read_csv(out / "liver_stress_truth.csv")
    assert truth.case.tolist() == ["0000_gre", "0001_ideal"] and set(truth.variant) == {"train"}
    rng = np.random.default_rng(9)
    first = stress_case(rng, variant="train", protocol="gre")
    mag = np.asarray(nib.load(out / "0000_gre_mag.nii.gz").dataobj)
    phase = np.asarray(nib.load(out / "0000_gre_phase.nii.gz").dataobj)
    assert mag.shape == (160, 160, 1, 10)
    np.testing.assert_allclose(mag * np.exp(1j * phase), first.data.images, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(np.load(out / "0000_gre_liver.npy"), first.liver)
    assert abs(truth.pdff_percent[0] - first.pdff_percent) < 1e-9
    # a second run into the same folder is refused without --overwrite
    res = CliRunner().invoke(cli, ["synth", "--out", str(out), "-n", "1", "--liver-stress", "train"])
    assert res.exit_code != 0 and "--overwrite" in res.output
