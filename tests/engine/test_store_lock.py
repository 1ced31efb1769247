"""The result store (durable, torn lines survived, last record wins) and the run lock."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from ukbmri.engine.ledger import Failure
from ukbmri.engine.lock import RunLock
from ukbmri.engine.stage import JobResult
from ukbmri.engine.store import Record, ResultStore
from ukbmri.errors import RunLockedError


def _rec(eid: int, fp: str = "a", value: float = 1.0, error: str | None = None) -> Record:
    if error:
        res = JobResult(None, ("body_failed",), (Failure("x.zip", "body", error, "boom", eid, 2, 20201),))
    else:
        res = JobResult({"weight_kg": value, "note": None}, ("flag_b", "flag_a"))
    return Record.of("body", eid, 2, fp, res)


def test_store_appends_durably_and_the_last_record_wins(tmp_path):
    with ResultStore(tmp_path / "store") as store:
        store.add(_rec(1, value=1.5))
        store.add(_rec(2, error="TruncatedZipError"))
        store.add(_rec(1, fp="b", value=2.5))
    again = ResultStore(tmp_path / "store")
    assert len(again) == 2
    r1 = again.get("body", 1, 2)
    assert r1.fingerprint == "b" and r1.cells == {"weight_kg": 2.5, "note": None} and r1.flags == ("flag_b", "flag_a")
    r2 = again.get("body", 2, 2)
    assert r2.status == "failed" and r2.cells is None and r2.failures[0].error == "TruncatedZipError"
    assert not r2.retryable
    assert _rec(3, error="WorkerDiedError").retryable


def test_store_survives_a_record_cut_short_by_a_kill(tmp_path):
    with ResultStore(tmp_path) as store:
        store.add(_rec(1))
        store.add(_rec(2))
    path = tmp_path / "results.jsonl"
    data = path.read_bytes()
    path.write_bytes(data + data[: len(data) // 3])  # half a line, no newline: a kill mid-write
    store = ResultStore(tmp_path)
    assert len(store) == 2 and path.read_bytes() == data  # trimmed before the next append
    store.add(_rec(3))
    store.close()
    assert len(ResultStore(tmp_path)) == 3


def test_store_compacts_superseded_records(tmp_path):
    with ResultStore(tmp_path) as store:
        for i in range(30):
            store.add(_rec(i % 5, fp=str(i)))
        assert store.compact(min_lines=10)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5 and {json.loads(x)["fingerprint"] for x in lines} == {"25", "26", "27", "28", "29"}


def test_second_run_on_a_folder_is_refused_and_names_the_holder(tmp_path):
    with RunLock(tmp_path, command="ukbmri run a"):
        with pytest.raises(RunLockedError) as exc:
            RunLock(tmp_path).acquire()
        msg = str(exc.value)
        assert f"pid {os.getpid()}" in msg and socket.gethostname() in msg and "started" in msg
    assert not (tmp_path / RunLock.NAME).exists()
    with RunLock(tmp_path):  # free again
        pass


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    lock = tmp_path / RunLock.NAME
    # a dead process on this host
    lock.write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname(), "started": "then"}))
    with RunLock(tmp_path) as held:
        assert json.loads(lock.read_text())["pid"] == held.info["pid"]
    # another host whose heartbeat stopped long ago (a pre-empted cloud job)
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with RunLock(tmp_path):
        pass
    # another host, heartbeat fresh: refused
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now"}))
    with pytest.raises(RunLockedError, match="elsewhere"):
        RunLock(tmp_path).acquire()
