"""The ``ukbmri`` command: a thin click group whose subcommands load lazily.

Each subcommand lives in its own module under :mod:`ukbmri.cli` and is
imported only when invoked, so ``ukbmri --help`` stays fast and heavy
libraries (torch, dask) load only for the commands that need them.
"""

from __future__ import annotations

import importlib
import logging
import signal

import click

from ukbmri import __version__
from ukbmri.errors import UkbmriError

#: command name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("ukbmri.cli.synth", "synth", "Write a synthetic UK-Biobank-format cohort (zips + truth.csv)."),
    "inspect": ("ukbmri.cli.inspect", "inspect", "List what is in UK Biobank MRI zips."),
    "preprocess": ("ukbmri.cli.preprocess", "preprocess", "Preprocess zips into cached images / tensors."),
    "infer": ("ukbmri.cli.infer", "infer", "Run inference modules / liver networks on zips or caches."),
    "train": ("ukbmri.cli.train", "train", "Train, cross-validate and calibrate modules."),
    "distill": ("ukbmri.cli.liver_train", "distill", "Liver student from teacher predictions (ml4h workflow)."),
    "fatwater": ("ukbmri.cli.fatwater", "fatwater", "Fat-water separation on multi-echo data."),
    "run": ("ukbmri.cli.run", "run", "Whole pipeline: folder of zips -> one participant table."),
    "merge": ("ukbmri.cli.run", "merge", "Combine the outputs of `run --shard I/N` jobs into one."),
    "columns": ("ukbmri.cli.columns", "columns", "The data dictionary: every output column explained."),
    "demo": ("ukbmri.cli.demo", "demo", "Generate a demo cohort and run the main job on it."),
    "ml4h": ("ukbmri.cli.ml4h", "ml4h", "Published ml4h liver networks: import, check-normalisation."),
}


def _terminate(signum, frame):  # SIGTERM (SLURM pre-emption, time limit) stops like Ctrl-C
    raise KeyboardInterrupt


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        """Domain errors become one line ``error: ...`` on stderr and an exit status.

        2: usage or configuration (bad input given, output in use); 3: the output cannot
        be written (disk full, permission denied, read-only); 130: interrupted (Ctrl-C,
        or SIGTERM from a scheduler); the finished work is kept and a re-run resumes.
        """
        from ukbmri.errors import OutputError

        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except OutputError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(3)
        except UkbmriError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:  # disk full, permission denied, read-only file system while writing
            if (ctx.obj or {}).get("debug"):
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"error: {exc.strerror or exc}{where}; finished work is kept, re-run to complete", err=True)
            ctx.exit(3)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished work is kept; re-run the same command to resume", err=True)
            ctx.exit(130)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ukbmri")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """ukbmri: UK Biobank abdominal MRI -> phenotypes with calibrated uncertainty."""
    level = logging.WARNING - 10 * verbose if not debug else logging.DEBUG
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    if verbose == 0 and not debug:  # Dask and friends: warnings only unless -v
        for name in ("distributed", "dask", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> None:
    """Console entry point (click's standalone mode: usage errors exit 2, Exit(n) exits n)."""
    cli.main(args=argv, prog_name="ukbmri")


if __name__ == "__main__":  # pragma: no cover
    main()
