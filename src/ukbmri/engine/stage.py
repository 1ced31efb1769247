"""The stage protocol: what every per-visit phenotype pipeline gives the engine.

A :class:`Stage` (body, liver, ...) is a small picklable object that

* **plans** one :class:`Job` per visit it can work on (``plan``),
* names everything its results depend on (``version`` and ``settings``: weights
  fingerprints and options) so the engine can decide whether a stored result is
  still valid,
* **runs** a batch of jobs in a worker into one :class:`JobResult` per job (a
  typed row, its QC flags, failures of parts of the job), and
* declares its table **columns** (a fixed schema, so tables from different runs,
  shards and worker counts have the same columns in the same order).

Stages never touch the output folder's store, ledger or tables: the engine owns
those. A stage may write per-visit artefacts (cached images, ROI masks) into the
folder the engine gives it, atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ukbmri.engine.cohort import Visit
from ukbmri.engine.ledger import Failure

__all__ = ["Column", "Job", "JobResult", "Stage", "job_fingerprint", "settings_fingerprint"]


@dataclass(frozen=True)
class Column:
    """One table column: its name and pandas dtype (``float64``, ``Int64``, ``string``)."""

    name: str
    dtype: str = "float64"


@dataclass(frozen=True)
class Job:
    """One visit for one stage: the inputs it reads and the fingerprint of its result."""

    stage: str
    eid: int
    instance: int
    inputs: Mapping[int, Path]  #: field -> zip (or cached image) path
    fingerprint: str

    @property
    def key(self) -> tuple[int, int]:
        return (self.eid, self.instance)

    @property
    def label(self) -> str:
        return " + ".join(str(p) for _, p in sorted(self.inputs.items())) or f"{self.eid}_{self.instance}"


@dataclass(frozen=True)
class JobResult:
    """What one job produced. ``cells`` is ``None`` when the job produced no row at all."""

    cells: Mapping[str, Any] | None
    flags: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.cells is not None


@runtime_checkable
class Stage(Protocol):
    """A per-visit pipeline (see the module docstring). Implementations are frozen dataclasses."""

    name: str
    version: str
    batch_size: int

    @property
    def fields(self) -> tuple[int, ...]: ...

    def settings(self) -> Mapping[str, Any]: ...

    def columns(self) -> Sequence[Column]: ...

    def plan_inputs(self, visit: Visit) -> dict[int, Path] | None: ...

    def run(self, jobs: Sequence[Job], workdir: Path) -> list[JobResult]: ...


def settings_fingerprint(stage: Stage) -> str:
    """sha256 of the stage's name, version and settings (weights fingerprints, options)."""
    blob = json.dumps({"stage": stage.name, "version": stage.version, "settings": stage.settings()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def job_fingerprint(settings_fp: str, inputs: Mapping[int, Any]) -> str:
    """The fingerprint of one job: the stage settings plus each input's identity."""
    h = hashlib.sha256(settings_fp.encode())
    for fld in sorted(inputs):
        h.update(f"|{fld}:{inputs[fld]}".encode())
    return h.hexdigest()[:32]
