"""The failures ledger: one row per failed participant input and stage.

Failures are data. A batch never stops for a bad participant; it records
``(eid, instance, field, input, stage, error, message)`` and goes on. The
ledger file (``failures.csv``) holds the latest outcome per (input, stage):
a re-run that succeeds removes the old row, one that fails again replaces it.
"""

from __future__ import annotations

import csv
import io
import os
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ukbmri.errors import UkbmriError
from ukbmri.io.atomic import write_text
from ukbmri.types import ParticipantKey

__all__ = ["Failure", "Ledger", "failure_from_exception"]


@dataclass(frozen=True)
class Failure:
    """Why one input failed at one stage."""

    input: str
    stage: str
    error: str
    message: str
    eid: int | None = None
    instance: int | None = None
    field: int | None = None

    def one_line(self) -> str:
        who = Path(self.input).name
        return f"{who} [{self.stage}] {self.error}: {self.message}"


COLUMNS = ["eid", "instance", "field", "input", "stage", "error", "message"]


def failure_from_exception(input: str | os.PathLike[str], stage: str, exc: BaseException) -> Failure:
    """Turn an exception into a ledger row. Unexpected (non-domain) errors keep their last frame."""
    key = ParticipantKey.from_path(input)
    if isinstance(exc, UkbmriError):
        message = str(exc)
    else:  # a bug or an environment problem: keep enough to find it
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        message = f"unexpected error: {exc}{where}"
    return Failure(
        input=str(input),
        stage=stage,
        error=type(exc).__name__,
        message=" ".join(message.split()),  # one line
        eid=key.eid if key else None,
        instance=key.instance if key else None,
        field=key.field if key else None,
    )


class Ledger:
    """A ``failures.csv`` file: load, update per (input, stage), save atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._rows: dict[tuple[str, str], Failure] = {}
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    f = Failure(
                        input=row["input"],
                        stage=row["stage"],
                        error=row["error"],
                        message=row["message"],
                        eid=_int_or_none(row.get("eid")),
                        instance=_int_or_none(row.get("instance")),
                        field=_int_or_none(row.get("field")),
                    )
                    self._rows[(f.input, f.stage)] = f

    def record(self, failure: Failure) -> None:
        self._rows[(failure.input, failure.stage)] = failure

    def clear(self) -> None:
        """Forget every row (for ledgers rebuilt from others)."""
        self._rows.clear()

    def succeeded(self, input: str | os.PathLike[str], stage: str) -> None:
        self._rows.pop((str(input), stage), None)

    @property
    def failures(self) -> list[Failure]:
        return sorted(self._rows.values(), key=lambda f: (f.input, f.stage))

    def for_stage(self, stage: str) -> list[Failure]:
        return [f for f in self.failures if f.stage == stage]

    def __len__(self) -> int:
        return len(self._rows)

    def save(self) -> Path:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for f in self.failures:
            row = asdict(f)
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
        return write_text(self.path, buf.getvalue())


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None

