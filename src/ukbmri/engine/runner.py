"""Run one function over many participant inputs: serial, a local process pool, or Dask.

The stage functions below the engine take one input and return a value or
raise. :func:`run_tasks` turns each call into an :class:`Outcome`, so a bad
participant becomes a :class:`~ukbmri.engine.ledger.Failure` and the rest go
on. Results are yielded as they complete; the caller writes them (atomically)
and keeps its ledger.

``fn`` must be a picklable top-level function for ``workers > 1`` and for
the Dask backend.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ukbmri.engine.ledger import Failure, failure_from_exception
from ukbmri.errors import WorkerDiedError

__all__ = ["Outcome", "run_tasks", "BACKENDS"]

log = logging.getLogger(__name__)

BACKENDS = ("local", "dask")


@dataclass(frozen=True)
class Outcome:
    """The result of one task: ``value`` on success, ``failure`` otherwise."""

    input: str
    value: Any = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _call(fn: Callable[..., Any], item: Any, stage: str, label: str) -> Outcome:
    try:
        return Outcome(input=label, value=fn(item))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a ledger row
        log.debug("%s failed at %s", label, stage, exc_info=True)
        return Outcome(input=label, failure=failure_from_exception(label, stage, exc))


def run_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    stage: str,
    label: Callable[[Any], str] = str,
    workers: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
    scratch: str | None = None,
) -> Iterator[Outcome]:
    """Apply ``fn`` to every item, yielding an :class:`Outcome` per item as it completes.

    Parameters
    ----------
    fn:
        One-participant stage function (picklable for ``workers > 1`` / Dask).
    items:
        Inputs (typically paths). ``label(item)`` names an item in the ledger.
    stage:
        Stage name recorded in failures (``"preprocess-body"``, ...).
    workers:
        ``1`` runs in this process; ``> 1`` uses a process pool (forked from a
        fork server with the heavy modules imported, so no inherited threads or CUDA state).
    backend:
        ``"local"`` or ``"dask"`` (a ``dask.distributed`` cluster at
        ``scheduler``, or a local one with ``workers`` processes when ``None``).
    progress:
        Called with each outcome as it completes (the CLI advances a bar).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    items = list(items)
    if not items:
        return
    if backend == "dask":
        from ukbmri.engine.dask_backend import run_on_dask

        outcomes: Iterable[Outcome] = run_on_dask(_call, fn, items, stage, label, workers=workers, scheduler=scheduler,
                                                 scratch=scratch)
    elif workers <= 1 or len(items) == 1:
        outcomes = (_call(fn, item, stage, label(item)) for item in items)
    else:
        outcomes = _run_pool(fn, items, stage, label, workers)
    for outcome in outcomes:
        if progress is not None:
            progress(outcome)
        yield outcome


def _run_pool(fn, items, stage, label, workers) -> Iterator[Outcome]:
    """Process pool with a bounded number of tasks in flight.

    A worker that dies (killed for memory, a crash in native code) breaks the whole pool,
    and every task not finished then fails with it, whether it ran or only waited. Those
    suspects are run again one at a time, each in a pool of its own: the one that kills its
    worker again is recorded (:class:`~ukbmri.errors.WorkerDiedError`), the others give
    their results. The remaining items go on in a fresh pool.
    """
    ctx = pool_context()
    workers = min(workers, len(items), available_cores()) or 1
    it = iter(items)
    exhausted = False
    while not exhausted:
        suspects: list = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            pending: dict[Future, object] = {}
            broken = False

            def submit_next() -> bool:
                nonlocal exhausted
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    return False
                try:
                    pending[pool.submit(_call, fn, item, stage, label(item))] = item
                except BrokenProcessPool:  # the pool broke before this item was queued
                    suspects.append(item)
                return True

            for _ in range(workers * 2):
                if not submit_next():
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        suspects.append(item)
                    except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be unpickled
                        yield Outcome(input=label(item), failure=failure_from_exception(label(item), stage, exc))
                    if not broken:
                        submit_next()
        if suspects:
            log.warning("%s: a worker process died; %d task(s) run again one at a time", stage, len(suspects))
            for item in suspects:
                yield _alone(fn, item, stage, label(item), ctx)


def _alone(fn, item, stage: str, name: str, ctx) -> Outcome:
    """Run one task in a worker of its own; a worker that dies now was killed by this task."""
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(_call, fn, item, stage, name).result()
        except BrokenProcessPool as exc:
            msg = f"the worker process died while this task ran, also when run alone ({exc})"
            return Outcome(input=name, failure=failure_from_exception(name, stage, WorkerDiedError(msg)))
        except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be unpickled
            return Outcome(input=name, failure=failure_from_exception(name, stage, exc))


#: imported once by the fork server, so that every worker starts with them loaded (a worker
#: would otherwise spend seconds importing torch and scipy before its first job; the report's
#: plot processes fork from the same server, with matplotlib loaded: report 1.9 -> 1.6 s)
PRELOAD = ("numpy", "scipy.ndimage", "torch", "ukbmri.engine.execute", "ukbmri.engine.stages.body",
           "ukbmri.engine.stages.liver", "ukbmri.infer.body", "ukbmri.physics.liver", "ukbmri.preprocess.body",
           "ukbmri.report.figures", "matplotlib.backends.backend_agg")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a SLURM or cgroup allocation), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def start_fork_server(workers: int, backend: str = "local") -> None:
    """Start :func:`pool_context`'s fork server now, in a background thread, when a run will use it.

    A no-op unless ``workers > 1`` on the local backend with a fork server. Its imports
    (:data:`PRELOAD`, seconds) then overlap this process's own start-up (imports, discovery,
    planning, the store) instead of delaying the first task. Idempotent: the pool later finds
    the server running, or waits for it.
    """
    if workers <= 1 or backend != "local":
        return
    ctx = pool_context()
    if ctx.get_start_method() != "forkserver":
        return
    import threading
    from multiprocessing import forkserver

    threading.Thread(target=forkserver.ensure_running, name="ukbmri-forkserver", daemon=True).start()


def pool_context():
    """Process start method: a fork server that has imported :data:`PRELOAD` (POSIX), else spawn.

    Workers forked from the server inherit its imports but no threads, locks or CUDA state of
    this process (the server never runs torch operations, so no thread pool exists to fork).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")
