"""What a worker runs: a batch of one stage's jobs, with its share of the cores.

A :class:`Batch` is picklable (stage settings, jobs, the work folder) and
:func:`run_batch` is the top-level function that the local process pool and
Dask workers call. Each worker limits torch, OpenMP and BLAS to its share of
the cores once, before its first job, so N workers never oversubscribe the
machine; weights are loaded once per worker (:mod:`ukbmri.infer.weights`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ukbmri.engine.stage import Job, JobResult, Stage

__all__ = ["Batch", "run_batch", "limit_threads", "threads_per_worker"]


@dataclass(frozen=True)
class Batch:
    stage: Stage
    jobs: tuple[Job, ...]
    workdir: Path
    threads: int | None = None  #: cores for this worker's torch / BLAS; None leaves the defaults

    @property
    def label(self) -> str:
        return self.jobs[0].label if len(self.jobs) == 1 else f"{self.jobs[0].label} (+{len(self.jobs) - 1})"


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Each of ``workers`` processes gets an equal share of the cores (at least one)."""
    if cores is None:
        from ukbmri.engine.runner import available_cores

        cores = available_cores()
    return max(1, cores // max(1, workers))


@lru_cache(maxsize=None)
def limit_threads(n: int) -> None:
    """Limit torch, OpenMP and BLAS in this process to ``n`` threads (once per process)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def run_batch(batch: Batch) -> Sequence[JobResult]:
    """Run one batch in this process; returns one result per job, in order."""
    if batch.threads is not None:
        limit_threads(batch.threads)
    results = batch.stage.run(batch.jobs, batch.workdir)
    if len(results) != len(batch.jobs):  # pragma: no cover - a stage bug, not an input problem
        raise RuntimeError(f"stage {batch.stage.name} returned {len(results)} results for {len(batch.jobs)} jobs")
    return results
