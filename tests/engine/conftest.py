"""A tiny synthetic cohort shared by the engine tests (2 participants, all three fields)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """Folder with 2 participants' 20201/20203/20254 zips, truth.csv, and one truncated 20201 zip."""
    from ukbmri.synth import write_cohort

    d = tmp_path_factory.mktemp("cohort")
    write_cohort(d, 2, seed=11)
    good = sorted(d.glob("*_20201_2_0.zip"))[0]
    data = good.read_bytes()
    (d / "1999999_20201_2_0.zip").write_bytes(data[: len(data) // 3])  # truncated: must be recorded, not fatal
    return d


@pytest.fixture(scope="session")
def random_module(tmp_path_factory) -> Path:
    """A randomly initialised SmallCNN module predicting two targets."""
    import torch

    from ukbmri.models import build_backbone
    from ukbmri.modules import Target, save_module

    folder = tmp_path_factory.mktemp("modules") / "tiny"
    model = build_backbone("smallcnn", 4, generator=torch.Generator().manual_seed(0))
    targets = (Target("weight", "21002", "kg"), Target("vat", "22407", "L"))
    save_module(folder, model=model, backbone="smallcnn", targets=targets, mean=np.array([80.0, 3.0]),
                sd=np.array([15.0, 2.0]), calibration=np.array([1.0, 2.0]), info={"demonstration_only": True})
    return folder
