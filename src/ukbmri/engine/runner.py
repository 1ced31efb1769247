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
from dataclasses import dataclass
from typing import Any

from ukbmri.engine.ledger import Failure, failure_from_exception

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
        ``1`` runs in this process; ``> 1`` uses a process pool (spawned
        processes, so no inherited threads or CUDA state).
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

        outcomes: Iterable[Outcome] = run_on_dask(_call, fn, items, stage, label, workers=workers, scheduler=scheduler)
    elif workers <= 1 or len(items) == 1:
        outcomes = (_call(fn, item, stage, label(item)) for item in items)
    else:
        outcomes = _run_pool(fn, items, stage, label, workers)
    for outcome in outcomes:
        if progress is not None:
            progress(outcome)
        yield outcome


def _run_pool(fn, items, stage, label, workers) -> Iterator[Outcome]:
    ctx = multiprocessing.get_context("spawn")
    workers = min(workers, len(items), os.cpu_count() or 1) or 1
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        # keep a bounded number of tasks in flight so huge batches do not pile up results
        pending: set[Future] = set()
        it = iter(items)
        labels: dict[Future, str] = {}

        def submit_next() -> bool:
            try:
                item = next(it)
            except StopIteration:
                return False
            fut = pool.submit(_call, fn, item, stage, label(item))
            labels[fut] = label(item)
            pending.add(fut)
            return True

        for _ in range(workers * 2):
            if not submit_next():
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                pending.discard(fut)
                name = labels.pop(fut)
                try:
                    yield fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (e.g. killed for memory)
                    yield Outcome(input=name, failure=failure_from_exception(name, stage, exc))
                submit_next()
