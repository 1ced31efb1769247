"""The result store of an output folder: one durable record per finished (stage, visit).

``OUT/store/results.jsonl`` is an append-only log. Each job's result is one
line, appended, flushed and fsync'ed the moment the job completes, so a kill
loses at most the jobs in flight. A line cut short by a kill is detected (no
newline or no valid JSON at the end of the file), ignored and trimmed before
the next append. The last record per (stage, eid, instance) wins; the log is
compacted (rewritten atomically) when it holds many superseded records.

A record::

    {"stage": "body", "eid": 1000123, "instance": 2, "fingerprint": "...",
     "status": "ok" | "failed", "cells": {...} | null, "flags": [...],
     "failures": [{...ledger row...}], "warnings": [...]}

A job that failed is stored as failed with its reasons, never as a finished
blank. Tables are computed from the store alone (see :mod:`ukbmri.engine.tables`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ukbmri.engine.ledger import Failure
from ukbmri.engine.stage import JobResult
from ukbmri.errors import OutputError
from ukbmri.io.atomic import write_text

__all__ = ["Record", "ResultStore", "RETRYABLE", "check_writable"]

log = logging.getLogger(__name__)

#: failures worth retrying on the next run: not a property of the input
RETRYABLE = ("WorkerDiedError", "MemoryError", "OSError", "TimeoutError", "KilledWorker", "CancelledError")


@dataclass(frozen=True)
class Record:
    stage: str
    eid: int
    instance: int
    fingerprint: str
    status: str  #: "ok" or "failed"
    cells: dict[str, Any] | None
    flags: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.stage, self.eid, self.instance)

    @property
    def retryable(self) -> bool:
        """A failure that says nothing about the input (a worker died, memory, I/O): run it again."""
        return any(f.error in RETRYABLE or f.message.startswith("unexpected error") for f in self.failures)

    def to_json(self) -> str:
        d = {"stage": self.stage, "eid": self.eid, "instance": self.instance, "fingerprint": self.fingerprint,
             "status": self.status, "cells": self.cells, "flags": list(self.flags),
             "failures": [asdict(f) for f in self.failures], "warnings": list(self.warnings)}
        return json.dumps(d, sort_keys=True, allow_nan=True, default=_json_default)

    @classmethod
    def from_json(cls, line: str) -> Record:
        d = json.loads(line)
        return cls(d["stage"], int(d["eid"]), int(d["instance"]), d["fingerprint"], d["status"], d["cells"],
                   tuple(d.get("flags", ())), tuple(Failure(**f) for f in d.get("failures", ())),
                   tuple(d.get("warnings", ())))

    @classmethod
    def of(cls, stage: str, eid: int, instance: int, fingerprint: str, result: JobResult) -> Record:
        cells = None if result.cells is None else dict(result.cells)
        return cls(stage, eid, instance, fingerprint, "ok" if result.ok else "failed", cells,
                   tuple(result.flags), tuple(result.failures), tuple(result.warnings))


def _json_default(x):
    import numpy as np

    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


class ResultStore:
    """The records of one output folder (see the module docstring)."""

    FILE = "results.jsonl"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.FILE
        self._records: dict[tuple[str, int, int], Record] = {}
        self._lines = 0
        self._fh = None
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        good_end = 0
        with open(self.path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # a line cut short by a kill
            try:
                rec = Record.from_json(data[pos:nl].decode("utf-8"))
            except (ValueError, KeyError, TypeError):
                log.warning("%s: skipping an unreadable record at byte %d", self.path, pos)
            else:
                self._records[rec.key] = rec
                self._lines += 1
            pos = good_end = nl + 1
        if good_end < len(data):
            log.info("%s: trimming a record cut short by an interrupted run", self.path)
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    def __len__(self) -> int:
        return len(self._records)

    def get(self, stage: str, eid: int, instance: int) -> Record | None:
        return self._records.get((stage, eid, instance))

    def records(self) -> Iterator[Record]:
        return iter(self._records.values())

    def add(self, record: Record) -> None:
        """Append one record durably (flush + fsync) and index it."""
        self.add_many([record])

    def add_many(self, records: list[Record]) -> None:
        """Append records (one batch's) with a single flush + fsync, then index them."""
        if not records:
            return
        if self._fh is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")
        self._fh.write("".join(r.to_json() + "\n" for r in records).encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        for r in records:
            self._records[r.key] = r
        self._lines += len(records)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def compact(self, *, min_lines: int = 1000) -> bool:
        """Rewrite the log with one record per key when more than half its lines are superseded."""
        if self._lines < min_lines or self._lines <= 2 * len(self._records):
            return False
        self.close()
        body = "".join(r.to_json() + "\n" for r in sorted(self._records.values(), key=lambda r: r.key))
        write_text(self.path, body)
        self._lines = len(self._records)
        return True

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_writable(folder: Path) -> None:
    """Raise a one-line domain error when results cannot be written into ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write results here ({exc.strerror or exc})", path=folder) from exc
