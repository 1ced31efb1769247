"""The reader on zips from the synthetic cohort generator (ukbmri.synth, helper B's section).

Skipped, with the reason, while ``ukbmri.synth.write_participant`` is not available.
"""

from __future__ import annotations

import numpy as np
import pytest

from ukbmri.io import dixon_stations, read_zip, scan_zip


def _synth():
    try:
        from ukbmri.synth import Quirks, sample_participants, write_participant
    except ImportError as exc:
        pytest.skip(f"ukbmri.synth.write_participant not importable yet: {exc}")
    return Quirks, sample_participants, write_participant


def _participant(tmp_path, fields, **quirks):
    Quirks, sample_participants, write_participant = _synth()
    rng = np.random.default_rng(7)
    (p,) = sample_participants(1, rng)
    return write_participant(p, tmp_path, fields=fields, quirks=Quirks(**quirks), rng=rng)


def test_synthetic_liver_zips(tmp_path):
    paths = _participant(tmp_path, (20203, 20254))
    gre = read_zip(paths[20203], expect_field=20203)
    assert gre.key.field == 20203 and gre.problems == ()
    mag = gre.find(kind="magnitude")
    assert sum(s.n_images for s in mag) == 10
    te = np.sort(np.concatenate([s.echo_times_ms for s in mag]))
    assert np.all(np.diff(te) > 0)
    for s in gre.find(kind="phase"):
        assert s.pixels.min() >= -4096 and s.pixels.max() <= 4095

    ideal = read_zip(paths[20254], expect_field=20254)
    assert ideal.problems == ()
    mags = ideal.find(kind="magnitude")
    phases = ideal.find(kind="phase")
    assert len(mags) == 6 and len(phases) == 6 and all(s.n_images == 6 for s in mags + phases)
    assert np.all(np.diff([s.series_number for s in mags]) == 2)


@pytest.mark.slow
def test_synthetic_dixon_zip(tmp_path):
    paths = _participant(tmp_path, (20201,))
    z = read_zip(paths[20201], expect_field=20201)
    assert z.problems == () and len(z.series) == 24
    stations = dixon_stations(z.series)
    assert len(stations) == 6
    w = [next(s for s in st if s.description.endswith("_W")) for st in stations]
    assert [s.shape[0] for s in w] == [168, 174, 174, 174, 162, 156]
    assert all(s.shape[1] == 224 for s in w)
    assert all(s.pixels.dtype == np.float32 and s.pixels.shape == (s.n_images, *s.shape) for s in z.series)


def test_synthetic_quirks_are_reported(tmp_path):
    paths = _participant(tmp_path, (20201,), misspelled_manifest=True, crlf_manifest=True, duplicate_station=2)
    (path,) = paths.values()
    z = scan_zip(path)
    assert z.manifest is not None and z.manifest.member.lower().endswith(".cvs")
    assert any("station 2 acquired 2 times" in p for p in z.problems)
