"""Shared CLI pieces: common options, the console progress, failure summaries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import click

__all__ = ["workers_option", "backend_options", "device_option", "precision_option", "console_progress",
           "report_failures"]


def workers_option(f):
    return click.option(
        "--workers", type=click.IntRange(min=1), default=1, show_default=True,
        help="Worker processes (each gets an equal share of the cores).",
    )(f)


def backend_options(f):
    f = click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler address (tcp://host:8786); default: a local Dask cluster.",
    )(f)
    return click.option(
        "--backend",
        type=click.Choice(["local", "dask"]),
        default="local",
        show_default=True,
        help="Where participant jobs run: local processes or a Dask cluster.",
    )(f)


def _available_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise click.BadParameter("CUDA is not available on this machine", ctx=ctx, param=param)
    return value


def device_option(f):
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        callback=_available_device,
        help="Torch device for the networks (auto: CUDA when available, else CPU).",
    )(f)


def precision_option(f):
    return click.option(
        "--precision", type=click.Choice(["fp32", "fp32-cl", "bf16"]), default=None,
        help="Body network arithmetic: fp32 (exact reference), fp32-cl (channels-last fp32, within 1e-4 "
             "relative, faster on CPU; the default), bf16 (opt-in, differs beyond 1e-3).",
    )(f)


@contextmanager
def console_progress(label: str) -> Iterator:
    """The engine's progress callback for this terminal (or log file), with log lines printed above it."""
    from ukbmri.engine.progress import ConsoleProgress

    progress = ConsoleProgress(label)
    root = logging.getLogger()
    handler = progress.log_handler(root.getEffectiveLevel())
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        with progress:
            yield progress
    finally:
        root.handlers = saved


def report_failures(failures, ledger_path, limit: int = 20) -> None:
    """Print the first failures on one line each, then where the ledger is."""
    import pandas as pd

    if failures is None or len(failures) == 0:
        return
    rows = failures.to_dict("records") if isinstance(failures, pd.DataFrame) else [vars(f) for f in failures]
    click.echo(f"{len(rows)} failed (details in {ledger_path}):", err=True)
    for r in rows[:limit]:
        name = str(r["input"]).rsplit("/", 1)[-1]
        click.echo(f"  {name} [{r['stage']}] {r['error']}: {r['message']}", err=True)
    if len(rows) > limit:
        click.echo(f"  ... and {len(rows) - limit} more", err=True)
