"""Shared CLI pieces: common options, progress bars, failure summaries."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import click

from ukbmri.engine.ledger import Failure

__all__ = ["workers_option", "backend_options", "device_option", "progress", "module_bars", "report_failures"]


def workers_option(f):
    return click.option(
        "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes."
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
        default="cpu",
        show_default=True,
        callback=_available_device,
        help="Torch device for the networks (auto: CUDA when available).",
    )(f)


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[..., None]]:
    """A click progress bar on stderr; yields a callable that advances it by one."""
    if total <= 0:
        yield lambda *_: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield lambda *_: bar.update(1)


@contextmanager
def module_bars() -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars for module inference: one per module, opened at its first chunk."""
    with ExitStack() as stack:
        bars: dict[str, object] = {}

        def advance(module: str, n: int, total: int) -> None:
            if module not in bars:
                bars[module] = stack.enter_context(
                    click.progressbar(length=total, label=f"infer {module}", file=sys.stderr, show_pos=True))
            bars[module].update(n)

        yield advance


def report_failures(failures: list[Failure], ledger_path) -> None:
    """Print each failure on one line, then where the ledger is."""
    if not failures:
        return
    click.echo(f"{len(failures)} failed (details in {ledger_path}):", err=True)
    for f in failures:
        click.echo(f"  {f.one_line()}", err=True)
