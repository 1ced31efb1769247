"""One progress mechanism for every command.

The engine reports :class:`ProgressEvent` values to a callback; it knows no
terminals. :class:`ConsoleProgress` is the callback the CLI uses: a live bar
with counts and ETA on a terminal, and outside one (SLURM and RAP logs) a plain
line every ``interval_s`` seconds with done / failed / total and the rate.
Log records go through :func:`ConsoleProgress.log_handler`, which prints each
distinct warning once and above the bar, never through it.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import IO

__all__ = ["ProgressEvent", "ConsoleProgress"]


@dataclass(frozen=True)
class ProgressEvent:
    """Where a run stands: counts over all planned jobs of all stages."""

    total: int
    done: int  #: finished in this run (ok or failed) plus reused
    failed: int
    reused: int
    stage: str = ""  #: the stage of the job that just finished ("" for the start event)


class ConsoleProgress:
    """A live bar on a terminal, a periodic line elsewhere (see the module docstring)."""

    def __init__(self, label: str = "ukbmri", *, stream: IO[str] | None = None, live: bool | None = None,
                 interval_s: float = 30.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.interval_s = interval_s
        self._t0 = time.monotonic()
        self._last_line = float("-inf")  # the first event always prints
        self._event: ProgressEvent | None = None
        self._seen: set[str] = set()
        self._bar_shown = False
        self._first_done: int | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if self._first_done is None:
            self._first_done = event.done
            self._t0 = time.monotonic()
        self._event = event
        now = time.monotonic()
        if self.live:
            self._draw()
        elif now - self._last_line >= self.interval_s or event.done == event.total:
            self._last_line = now
            self.stream.write(self._text() + "\n")
            self.stream.flush()

    def _text(self) -> str:
        e = self._event
        if e is None:
            return self.label
        elapsed = time.monotonic() - self._t0
        computed = e.done - (self._first_done or 0)
        rate = computed / elapsed if elapsed > 0 else 0.0
        left = e.total - e.done
        eta = f", ETA {_hms(left / rate)}" if rate > 0 and left > 0 else ""
        return (f"{self.label}: {e.done}/{e.total} jobs done ({e.failed} failed, {e.reused} reused), "
                f"{rate * 60:.1f} jobs/min{eta}")

    def _draw(self) -> None:
        e = self._event
        width = 24
        frac = e.done / e.total if e and e.total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        self.stream.write(f"\r[{bar}] {self._text()}\x1b[K")
        self.stream.flush()
        self._bar_shown = True

    def write(self, text: str) -> None:
        """Print a line above the bar (the bar is redrawn below it)."""
        if self.live and self._bar_shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.live and self._event is not None:
            self._draw()
        self.stream.flush()

    def close(self) -> None:
        if self.live and self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False

    def log_handler(self, level: int = logging.WARNING) -> logging.Handler:
        """A logging handler that prints each distinct message once, above the bar."""
        progress = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                msg = self.format(record)
                if record.levelno >= logging.WARNING:
                    if msg in progress._seen:
                        return
                    progress._seen.add(msg)
                progress.write(msg)

        h = _Handler(level)
        h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        return h

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
