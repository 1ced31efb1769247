"""The bad-input cohort (tests/badinputs.py) builds, and each case is on disk as described.

The slow test also runs the body and liver preprocessing plus the QC checks on the
pixel cases and checks the expectations the engine's end-to-end test relies on.
"""

from __future__ import annotations

import os
import re
import zipfile

import pytest



@pytest.fixture(scope="module")
def cohort(tmp_path_factory, badinputs):
    mod = badinputs
    folder = tmp_path_factory.mktemp("bad")
    return folder, mod.build_bad_cohort(folder, seed=7)


def test_cohort_cases_exist_as_described(cohort):
    from ukbmri.io.synthetic import is_synthetic_zip
    from ukbmri.types import ParticipantKey

    folder, cases = cohort
    names = [c.name for c in cases]
    assert len(set(names)) == len(names) >= 40
    assert sum(c.expect == "good" for c in cases) >= 3
    assert sum(c.expect != "good" for c in cases) >= 30
    for c in cases:
        assert c.paths, c.name
        re.compile(c.reason)
        assert (c.reason == "") == (c.expect == "good"), c.name
        for p in c.paths:
            assert os.path.lexists(p), (c.name, p)
            assert folder in p.parents, (c.name, p)
            key = ParticipantKey.from_path(p)
            if key is not None and c.eid is not None:
                assert key.eid == c.eid, (c.name, p)
    by = {c.name: c for c in cases}
    for c in cases:
        if c.expect == "good":
            assert all(zipfile.is_zipfile(p) and is_synthetic_zip(p) for p in c.paths), c.name
    link = by["dangling_symlink"].paths[0]
    assert link.is_symlink() and not link.exists()
    assert by["folder_named_like_zip"].paths[0].is_dir()
    text = by["symlink_to_text_file"].paths[0]
    assert text.is_symlink() and text.resolve().read_text().startswith("QZXJ")
    assert re.search(by["symlink_to_text_file"].forbid, text.resolve().read_text())
    dup = by["duplicate_zip_for_visit"].paths
    assert len(dup) == 2 and dup[0].name == dup[1].name and dup[0].parent != dup[1].parent
    assert by["non_convention_zip_name"].eid is None
    with zipfile.ZipFile(by["bzip2_member"].paths[0]) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_BZIP2}
    with zipfile.ZipFile(by["unsafe_member_name"].paths[0]) as zf:
        assert any(n.startswith("../") for n in zf.namelist())
    assert not (folder / ".build").exists()


@pytest.mark.slow
def test_pixel_cases_meet_their_expectations(cohort):
    """Preprocess + QC on every case of one field that gets past the reader (what the engine will do)."""
    import numpy as np  # noqa: F401

    from ukbmri.errors import UkbmriError
    from ukbmri.io import read_zip
    from ukbmri.preprocess import preprocess_body
    from ukbmri.preprocess.liver_tensors import gre_echoes, ideal_echoes
    from ukbmri.preprocess.qc import check_body_volumes, check_multiecho
    from ukbmri.types import ParticipantKey

    _, cases = cohort
    engine_level = {"non_convention_zip_name", "duplicate_zip_for_visit", "dangling_symlink", "folder_named_like_zip",
                    "mixed_participants_20203"}
    for c in cases:
        if c.name in engine_level or c.name.startswith("symlink"):
            continue
        fatal, flags = [], []
        for p in c.paths:
            key = ParticipantKey.from_path(p)
            try:
                if key.field == 20201:
                    r = preprocess_body(p)
                    out = check_body_volumes(r.water, r.fat, stations=r.stations, warnings=r.warnings,
                                             swap_suspected=r.swap_suspected)
                else:
                    z = read_zip(p, expect_field=key.field)
                    e = (gre_echoes if key.field == 20203 else ideal_echoes)(z)
                    out = check_multiecho(e.images, what=str(key.field), echo_axis=0)
            except UkbmriError as exc:
                fatal.append(f"{type(exc).__name__}: {exc}")
                continue
            fatal += [f"{x.flag}: {x.detail}" for x in out if x.fatal]
            flags += [f"{x.flag}: {x.detail}" for x in out if not x.fatal]
        got = "ledger" if fatal else ("flag" if flags else "good")
        assert got == c.expect, (c.name, fatal, flags)
        if c.reason:
            assert any(re.search(c.reason, m) for m in (fatal if got == "ledger" else flags)), (c.name, fatal, flags)
