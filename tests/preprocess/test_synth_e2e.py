"""End to end on full-size synthetic UK Biobank zips from ukbmri.synth, one per real-world quirk."""

import numpy as np
import pytest

from ukbmri.preprocess import preprocess_body


def _write(tmp_path, quirks_kw, seed=0):
    synth = pytest.importorskip("ukbmri.synth")
    if not hasattr(synth, "write_participant"):
        pytest.skip("ukbmri.synth.write_participant is not available yet")
    rng = np.random.default_rng(seed)
    p = synth.sample_participants(1, rng)[0]
    paths = synth.write_participant(p, tmp_path, fields=(20201,), quirks=synth.Quirks(**quirks_kw), rng=rng)
    return paths[20201]


@pytest.mark.parametrize(
    ("quirks", "stations", "note", "swap"),
    [
        ({}, 6, None, False),
        ({"duplicate_station": 3, "rescan_across_midnight": True}, 6, "duplicate station", False),
        ({"wf_size_mismatch": 2}, 6, "differ in size", False),
        ({"missing_station": 4}, 5, "only 5 of 6", False),
        ({"fat_water_swap": True}, 6, "fat-water swap suspected", True),
    ],
)
def test_synthetic_participant(tmp_path, quirks, stations, note, swap):
    path = _write(tmp_path, quirks)
    res = preprocess_body(path)
    assert res.image.shape == (3, 256, 256) and res.image.dtype == np.uint8
    assert res.stations == stations
    assert res.swap_suspected is swap
    lr, ap, nz = res.water.shape
    assert (lr, ap) == (224, 174) and 300 < nz < 420
    if note is None:
        assert not any("duplicate" in w or "stations present" in w or "swap" in w for w in res.warnings)
    else:
        assert any(note in w for w in res.warnings), res.warnings
    if quirks.get("duplicate_station"):
        # the clean re-scan (after midnight) is kept: no ghosted original in the fused volume
        assert not any("undated" in w for w in res.warnings)
