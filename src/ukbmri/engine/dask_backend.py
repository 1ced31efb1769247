"""Dask backend: the same per-participant tasks on a ``dask.distributed`` cluster.

Install with ``pip install 'ukbmri[dask]'``. Point ``--scheduler`` at a running
scheduler (``tcp://host:8786``, e.g. started by dask-jobqueue on SLURM/PBS),
or leave it out for a local cluster of ``workers`` processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["run_on_dask"]

log = logging.getLogger(__name__)


def run_on_dask(
    call: Callable[..., Any],
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    stage: str,
    label: Callable[[Any], str],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    scratch: str | None = None,
    dashboard: bool = False,
) -> Iterator[Any]:
    """Submit ``call(fn, item, stage, label(item))`` per item; yield results as they complete."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the Dask backend needs the 'dask' extra: pip install 'ukbmri[dask]'") from exc

    cluster = None
    if scheduler is None:
        import logging as _logging

        import dask

        # quiet (warnings only), no dashboard unless asked for (the scheduler's small HTTP server
        # then takes a free port, not 8787), every scratch file under ``scratch``
        with dask.config.set({"temporary-directory": scratch} if scratch else {}):
            cluster = LocalCluster(
                n_workers=max(1, workers), threads_per_worker=1, processes=True,
                dashboard_address=":8787" if dashboard else ":0", scheduler_kwargs={"dashboard": dashboard},
                worker_dashboard_address=None, silence_logs=_logging.WARNING, local_directory=scratch,
            )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    log.info("dask: %s", client)
    try:
        from ukbmri.engine.ledger import failure_from_exception
        from ukbmri.engine.runner import Outcome

        labels = {}
        for i, item in enumerate(items):
            fut = client.submit(call, fn, item, stage, label(item), pure=False, key=f"{stage}-{i}")
            labels[fut] = label(item)
        for fut in as_completed(list(labels)):
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the participant is recorded
                yield Outcome(input=labels[fut], failure=failure_from_exception(labels[fut], stage, exc))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
            if scratch is not None:
                import shutil

                shutil.rmtree(scratch, ignore_errors=True)
