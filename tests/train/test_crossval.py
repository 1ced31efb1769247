"""Cross-validation bookkeeping and a tiny end-to-end `ukbmri train body` run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ukbmri.errors import OutputExistsError
from ukbmri.train.crossval import assign_folds, standardisation, total_iterations, train_body_module

MODULE_FILES = ("snapshot.pth.tar", "metadata.txt", "standardization_parameters.txt", "calibration_factors.txt",
                "module.json", "cv_predictions.csv", "metrics.csv", "plots/bright.png", "plots/half.png",
                "plots/training_loss.png")


def test_folds_keep_participants_together_and_balance_sizes():
    groups = [1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10]
    folds = assign_folds(groups, 4, np.random.default_rng(0))
    for g in set(groups):
        assert len({folds[i] for i in range(len(groups)) if groups[i] == g}) == 1
    per_fold = np.bincount([folds[groups.index(g)] for g in sorted(set(groups))], minlength=4)
    assert per_fold.max() - per_fold.min() <= 1  # 10 participants -> 3,3,2,2
    np.testing.assert_array_equal(folds, assign_folds(groups, 4, np.random.default_rng(0)))
    assert not np.array_equal(folds, assign_folds(groups, 4, np.random.default_rng(1)))
    with pytest.raises(ValueError):
        assign_folds([1, 2], 3, np.random.default_rng(0))


def test_standardisation_uses_ddof1_and_ignores_gaps():
    v = np.array([[1.0, 5.0, np.nan], [2.0, np.nan, np.nan], [4.0, 5.0, 3.0]])
    mean, sd = standardisation(v)
    assert mean[0] == pytest.approx(7 / 3) and sd[0] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert mean[1] == 5.0 and sd[1] == 1.0  # constant column: SD 1, not 0
    assert mean[2] == 3.0 and sd[2] == 1.0  # single value
    assert total_iterations(10, 10_000) == 110_000


def _cohort(tmp_path: Path, n: int = 12) -> tuple[Path, Path]:
    """Tiny images whose first channel holds a bright square of level v; targets are functions of v."""
    rng = np.random.default_rng(0)
    cache = tmp_path / "cache"
    cache.mkdir()
    rows = []
    for i in range(n):
        a = rng.integers(0, 40, (3, 256, 256), dtype=np.uint8)
        v = int(rng.integers(0, 200))
        a[0, 64:192, 64:192] = v
        np.save(cache / f"{1000001 + i}_20201_2_0.npy", a)
        rows.append({"eid": 1000001 + i, "bright_l": v / 100, "half_kg": v / 2 if i % 4 else np.nan})
    csv = tmp_path / "targets.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return cache, csv


def test_train_body_end_to_end_via_cli(tmp_path):
    from ukbmri.cli.train import train
    from ukbmri.infer.postprocess import postprocess
    from ukbmri.modules import load_module
    from ukbmri.train.loop import predict_raw

    cache, csv = _cohort(tmp_path)
    out = tmp_path / "modules" / "demo_body"
    args = ["body", "--images", str(cache), "--targets", str(csv), "--out", str(out), "--folds", "2",
            "--iterations", "12", "--batch-size", "2", "--seed", "3", "--demo"]
    res = CliRunner().invoke(train, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "bright" in res.output and "half" in res.output and "module written" in res.output

    for name in MODULE_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert [p.name for p in out.parent.iterdir()] == ["demo_body"]  # no staging folder left behind

    module = load_module(out)
    assert [(t.name, t.unit) for t in module.targets] == [("bright", "L"), ("half", "kg")]
    info = json.loads((out / "module.json").read_text())
    assert info["demonstration_only"] is True and info["cross_validation"]["folds"] == 2
    assert sorted(info["cross_validation"]["fold_sizes"]) == [6, 6]
    assert info["training_data"]["targets"][1]["n"] == 9

    # standardisation of the final network = all data (ddof 1); gaps ignored
    ref = pd.read_csv(csv)
    assert module.mean == pytest.approx([ref.bright_l.mean(), ref.half_kg.mean()])
    assert module.sd == pytest.approx([ref.bright_l.std(ddof=1), ref.half_kg.std(ddof=1)])

    cv = pd.read_csv(out / "cv_predictions.csv")
    assert len(cv) == 12 and set(cv.fold) == {0, 1}
    assert cv.groupby("eid").fold.nunique().max() == 1
    assert cv["half_reference_in_kg"].isna().sum() == 3  # gaps stay gaps
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.target) == ["bright", "half"] and metrics.loc[1, "n"] == 9
    np.testing.assert_allclose(metrics.calibration_factor, module.calibration, rtol=1e-12)
    np.testing.assert_allclose(cv["half_variance_in_kg"], cv["half_uncalibrated_variance_in_kg"] * module.calibration[1])
    for col in ("mae", "r2", "icc", "auce_uncalibrated", "auce_calibrated", "coverage_90_calibrated"):
        assert np.isfinite(metrics[col]).all(), col

    images = np.stack([np.load(cache / f"{n}.npy") for n in cv.name[:3]])
    mean, var = postprocess(predict_raw(module.model, images), module)
    assert mean.shape == (3, 2) and np.all(np.isfinite(mean)) and np.all(var > 0)

    # a second run refuses to touch the finished module
    res2 = CliRunner().invoke(train, args)
    assert isinstance(res2.exception, OutputExistsError) and "--overwrite" in str(res2.exception)
    assert load_module(out).weights_sha256 == module.weights_sha256


def test_interrupted_training_leaves_no_module(tmp_path):
    cache, csv = _cohort(tmp_path, n=6)
    out = tmp_path / "mods" / "m"
    steps = []

    def progress(n):
        steps.append(n)
        if len(steps) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_body_module(cache, csv, out, folds=2, iterations=2, batch_size=2, progress=progress)
    assert not out.exists()
    assert not (tmp_path / "mods").exists() or list((tmp_path / "mods").iterdir()) == []


def test_overwrite_replaces_a_module_only_when_asked(tmp_path):
    cache, csv = _cohort(tmp_path, n=6)
    out = tmp_path / "m"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError):
        train_body_module(cache, csv, out, folds=2, iterations=1, batch_size=2)
    train_body_module(cache, csv, out, folds=2, iterations=1, batch_size=2, overwrite=True, plots=False,
                      targets_only=["bright"])
    assert not (out / "old.txt").exists() and (out / "metadata.txt").read_text().splitlines()[1].startswith("bright,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "m", "targets.csv"]
