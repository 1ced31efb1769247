"""The failures ledger: one row per failed participant input and stage.

Failures are data. A batch never stops for a bad participant; it records
``(eid, instance, field, input, stage, error, message)`` and goes on. The
engine writes ``failures.csv`` from its result store (see
:mod:`ukbmri.engine.tables`): a re-run that succeeds drops the old row.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from ukbmri.errors import UkbmriError
from ukbmri.types import ParticipantKey

__all__ = ["Failure", "failure_from_exception", "COLUMNS"]


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
