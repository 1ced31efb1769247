"""Training data: id matching, units, TargetsError messages, translation augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from ukbmri.errors import CacheError, TargetsError
from ukbmri.train.data import load_body_data, random_translate, split_unit, targets_from_columns, translate


def _images(folder: Path, stems, seed=0) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for s in stems:
        a = rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)
        np.save(folder / f"{s}.npy", a)
        out[s] = a
    return out


def _csv(path: Path, rows) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_name_matching_keeps_gaps_and_parses_units(tmp_path):
    imgs = _images(tmp_path / "cache", ["1000001_20201_2_0", "1000002_20201_2_0", "1000003_20201_2_0"])
    csv = _csv(tmp_path / "t.csv", [
        {"name": "1000003_20201_2_0", "weight_kg": 80.0, "vat_l": np.nan, "sex_male": 1},
        {"name": "1000001_20201_2_0", "weight_kg": 60.5, "vat_l": 2.5, "sex_male": 0},
        {"name": "9999999_20201_2_0", "weight_kg": 70.0, "vat_l": 1.0, "sex_male": 1},  # no image
    ])
    data = load_body_data(tmp_path / "cache", csv)
    assert data.names == ("1000001_20201_2_0", "1000003_20201_2_0")
    assert data.eids.tolist() == [1000001, 1000003]
    np.testing.assert_array_equal(data.images[1], imgs["1000003_20201_2_0"])
    assert data.values[:, 0].tolist() == [60.5, 80.0]
    assert data.values[0, 1] == 2.5 and np.isnan(data.values[1, 1])  # missing stays NaN
    assert [(t.name, t.unit, t.field, t.divisor) for t in data.targets] == [
        ("weight", "kg", "/", 1.0), ("vat", "L", "/", 1.0), ("sex", "(male = 1)", "/", 1.0)]
    assert data.columns == ("weight_kg", "vat_l", "sex_male")


@pytest.mark.parametrize("column, expected", [
    ("liver_pdff_percent", ("liver_pdff", "%")), ("liver_r2star_per_s", ("liver_r2star", "1/s")),
    ("age_years", ("age", "years")), ("height_cm", ("height", "cm")), ("thigh_muscle_volume_l", ("thigh_muscle_volume", "L")),
    ("pulseRate", ("pulseRate", "")), ("_l", ("_l", "")),
])
def test_unit_suffixes(column, expected):
    assert split_unit(column) == expected


def test_eid_matching_with_and_without_instance(tmp_path):
    _images(tmp_path / "cache", ["1000001_20201_2_0", "1000002_20201_2_0", "1000002_20201_3_0", "1000001_20203_2_0"])
    ambiguous = _csv(tmp_path / "a.csv", [{"eid": 1000001, "age_years": 60}, {"eid": 1000002, "age_years": 70}])
    with pytest.raises(TargetsError, match="1000002.*instance"):
        load_body_data(tmp_path / "cache", ambiguous)
    with_inst = _csv(tmp_path / "b.csv", [{"eid": 1000002, "instance": 3, "age_years": 72},
                                          {"eid": 1000001, "instance": 2, "age_years": 60}])
    data = load_body_data(tmp_path / "cache", with_inst)
    assert data.names == ("1000001_20201_2_0", "1000002_20201_3_0")  # the 20203 image is not a body image
    assert data.values[:, 0].tolist() == [60, 72]


def test_targets_errors_name_files_and_columns(tmp_path):
    _images(tmp_path / "cache", ["1000001_20201_2_0"])
    no_id = _csv(tmp_path / "noid.csv", [{"participant": 1000001, "weight_kg": 70}])
    with pytest.raises(TargetsError, match="no id column") as e:
        load_body_data(tmp_path / "cache", no_id)
    assert "noid.csv" in str(e.value) and "'name' or 'eid'" in str(e.value)

    other = _csv(tmp_path / "other.csv", [{"eid": 5, "weight_kg": 70}])
    with pytest.raises(TargetsError, match="no image") as e:
        load_body_data(tmp_path / "cache", other)
    assert "other.csv" in str(e.value) and str(tmp_path / "cache") in str(e.value)

    text = _csv(tmp_path / "text.csv", [{"eid": 1000001, "weight_kg": 70, "sex": "M"}])
    with pytest.raises(TargetsError, match="not numeric") as e:
        load_body_data(tmp_path / "cache", text)
    assert "[sex]" in str(e.value)

    empty = _csv(tmp_path / "empty.csv", [{"eid": 1000001, "weight_kg": 70, "vat_l": np.nan}])
    with pytest.raises(TargetsError, match="no value") as e:
        load_body_data(tmp_path / "cache", empty)
    assert "[vat_l]" in str(e.value)

    with pytest.raises(TargetsError, match="requested targets"):
        load_body_data(tmp_path / "cache", other, only=["height"])


def test_bad_cached_image_is_a_cache_error(tmp_path):
    (tmp_path / "cache").mkdir()
    np.save(tmp_path / "cache" / "1000001_20201_2_0.npy", np.zeros((3, 128, 128), np.uint8))
    csv = _csv(tmp_path / "t.csv", [{"eid": 1000001, "weight_kg": 70}])
    with pytest.raises(CacheError, match="MIMIR 2D format"):
        load_body_data(tmp_path / "cache", csv)


def test_target_info_and_targets_only(tmp_path):
    _images(tmp_path / "cache", ["1000001_20201_2_0", "1000002_20201_2_0"])
    csv = _csv(tmp_path / "t.csv", [{"eid": 1000001, "weight_kg": 70, "vat_ml": 2000, "h": 1},
                                    {"eid": 1000002, "weight_kg": 80, "vat_ml": 3000, "h": 2}])
    info = _csv(tmp_path / "info.csv", [{"name": "vatVolume", "field": "22407", "unit": "L", "divisor": 1000},
                                        {"name": "weight", "field": "21002", "unit": "kg", "divisor": 1}])
    # "vatVolume" matches no column; "weight" matches weight_kg by its stripped name
    data = load_body_data(tmp_path / "cache", csv, target_info=info, only=["weight", "vat_ml"])
    assert data.columns == ("weight_kg", "vat_ml")
    assert [(t.name, t.field, t.unit) for t in data.targets] == [("weight", "21002", "kg"), ("vat_ml", "/", "")]
    info2 = _csv(tmp_path / "info2.csv", [{"name": "vat_ml", "field": "22407", "unit": "L", "divisor": 1000}])
    t = targets_from_columns(["vat_ml"], pd.read_csv(info2, dtype=str).astype({"divisor": float}))
    assert (t[0].name, t[0].unit, t[0].divisor) == ("vat_ml", "L", 1000.0)
    bad = _csv(tmp_path / "bad.csv", [{"name": "weight", "field": "1", "unit": "kg", "divisor": 0}])
    with pytest.raises(TargetsError, match="divisor"):
        load_body_data(tmp_path / "cache", csv, target_info=bad)


def _shift_reference(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Independent reference: pad with edge values, then cut the shifted window."""
    h, w = a.shape[-2:]
    p = max(abs(dy), abs(dx), 1)
    padded = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(p, p), (p, p)], mode="edge")
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


@pytest.mark.parametrize("dy, dx", [(0, 0), (3, -5), (-16, 16), (16, -16), (1, 0)])
def test_translate_equals_edge_filled_roll(dy, dx):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 3, 40, 48), dtype=np.uint8)
    out = translate(torch.from_numpy(a), torch.tensor([dy, 0]), torch.tensor([dx, 0])).numpy()
    np.testing.assert_array_equal(out[0], _shift_reference(a[0], dy, dx))
    np.testing.assert_array_equal(out[0], ndimage.shift(a[0], (0, dy, dx), order=0, mode="nearest"))
    np.testing.assert_array_equal(out[1], a[1])
    # away from the filled border it is exactly np.roll
    rolled = np.roll(a[0], (dy, dx), axis=(1, 2))
    np.testing.assert_array_equal(out[0][:, 16:-16, 16:-16], rolled[:, 16:-16, 16:-16])


def test_random_translate_draws_per_image_shifts_from_the_generator():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.integers(0, 256, (6, 3, 64, 64), dtype=np.uint8))
    out = random_translate(a, 16, torch.Generator().manual_seed(42))
    shifts = torch.randint(-16, 17, (2, 6), generator=torch.Generator().manual_seed(42))
    for i in range(6):
        ref = _shift_reference(a[i].numpy(), int(shifts[0, i]), int(shifts[1, i]))
        np.testing.assert_array_equal(out[i].numpy(), ref)
    assert torch.equal(random_translate(a, 0, torch.Generator()), a)
