"""Cohort discovery: visits found once, every anomaly a ledger row; shards; eid and path lists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ukbmri.engine.cohort import Cohort, read_eids, shard_of


def _touch(path: Path, data: bytes = b"PK\x03\x04 placeholder") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_discover_groups_visits_recursively_like_the_rap_bulk_layout(tmp_path):
    bulk = tmp_path / "Bulk"
    _touch(bulk / "Abdominal MRI" / "10" / "1000010_20201_2_0.zip")
    _touch(bulk / "Liver" / "10" / "1000010_20203_2_0.zip")
    _touch(bulk / "Liver" / "10" / "1000010_20254_2_0.zip")
    _touch(bulk / "Liver" / "20" / "1000020_20203_3_0.zip")
    _touch(bulk / "Brain" / "10" / "1000010_20252_2_0.zip")  # a field no stage reads
    _touch(bulk / ".hidden" / "1000030_20201_2_0.zip")
    cohort = Cohort.discover([bulk])
    assert [(v.eid, v.instance, sorted(v.inputs)) for v in cohort.visits] == [
        (1000010, 2, [20201, 20203, 20254]), (1000020, 3, [20203])]
    assert cohort.anomalies == [] and cohort.ignored == {20252: 1}
    v = cohort.visits[0].inputs[20201]
    assert v.size == len(b"PK\x03\x04 placeholder") and v.identity.startswith("1000010_20201_2_0.zip:")


def test_every_anomaly_is_a_ledger_row_never_dropped(tmp_path):
    d = tmp_path / "in"
    _touch(d / "1000001_20201_2_0.zip")
    _touch(d / "scan_of_someone.zip")  # name outside the convention
    (d / "1000002_20201_2_0.zip").mkdir()  # a folder named like a zip
    os.symlink(d / "gone.zip", d / "1000003_20203_2_0.zip")  # dangling link
    _touch(d / "1000004_20203_2_0.zip", b"PK\x03\x04 first scan")  # two different files for one visit/field
    _touch(d / "sub" / "1000004_20203_2_0.zip", b"PK\x03\x04 other scan")
    _touch(d / "1000004_20254_2_0.zip")
    _touch(d / "1000005_20201_2_0.zip", b"PK\x03\x04 same")  # an identical copy: used once, and listed
    _touch(d / "copy" / "1000005_20201_2_0.zip", b"PK\x03\x04 same")
    os.symlink(d / "1000001_20201_2_0.zip", d / "copy" / "1000001_20201_2_0.zip")
    cohort = Cohort.discover([d])
    by_error = {}
    for a in cohort.anomalies:
        assert a.stage == "discover"
        by_error.setdefault(a.error, []).append(Path(a.input).name)
    assert by_error["InputNameError"] == ["scan_of_someone.zip"]
    assert by_error["DuplicateInputError"] == ["1000004_20203_2_0.zip", "1000004_20203_2_0.zip", "1000005_20201_2_0.zip"]
    assert "identical copies" in [a for a in cohort.anomalies if a.eid == 1000005][0].message
    assert sorted(by_error["InputError"]) == ["1000002_20201_2_0.zip", "1000003_20203_2_0.zip"]
    msgs = " ".join(a.message for a in cohort.anomalies)
    assert "folder named like a zip" in msgs and "dangling link" in msgs and "none was used" in msgs
    visits = {v.eid: sorted(v.inputs) for v in cohort.visits}
    # the duplicated field is not used, the visit's other field is
    assert visits == {1000001: [20201], 1000004: [20254], 1000005: [20201]}


def test_eids_and_inputs_from_lists(tmp_path):
    for eid in (1000001, 1000002, 1000003):
        _touch(tmp_path / "a" / f"{eid}_20203_2_0.zip")
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# my cohort\n{tmp_path / 'a' / '1000001_20203_2_0.zip'}\n\n{tmp_path / 'a' / '1000003_20203_2_0.zip'}\n"
                       f"{tmp_path / 'missing.zip'}\n")
    cohort = Cohort.discover([], inputs_from=listing)
    assert [v.eid for v in cohort.visits] == [1000001, 1000003]
    assert [a.message for a in cohort.anomalies] == ["no such file or folder"]
    eids = tmp_path / "eids.csv"
    eids.write_text("eid,sex\n1000002,0\n1000003,1\n")
    assert read_eids(eids) == {1000002, 1000003}
    cohort = Cohort.discover([tmp_path / "a"], eids=read_eids(eids))
    assert [v.eid for v in cohort.visits] == [1000002, 1000003] and cohort.filtered_out == 1
    bad = tmp_path / "bad.txt"
    bad.write_text("1000001\nabc\n")
    from ukbmri.errors import InputError

    with pytest.raises(InputError, match="line 2"):
        read_eids(bad)


def test_shards_partition_by_eid_and_stay_put_when_participants_are_added(tmp_path):
    eids = list(range(1000000, 1000200))
    for e in eids[:100]:
        _touch(tmp_path / f"{e}_20201_2_0.zip")
    small = Cohort.discover([tmp_path])
    parts = [small.shard(i, 4) for i in range(4)]
    assert sorted(v.eid for p in parts for v in p.visits) == eids[:100]
    assert all(10 <= len(p) <= 40 for p in parts)  # roughly balanced
    for e in eids[100:]:
        _touch(tmp_path / f"{e}_20201_2_0.zip")
    big = Cohort.discover([tmp_path])
    for i in range(4):
        before = {v.eid for v in parts[i].visits}
        after = {v.eid for v in big.shard(i, 4).visits}
        assert before <= after  # nobody moved to another shard
    assert all(shard_of(e, 4) == shard_of(e, 4) for e in eids)
    with pytest.raises(ValueError):
        small.shard(4, 4)
