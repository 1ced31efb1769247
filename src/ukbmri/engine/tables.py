"""The output tables, computed from the result store alone.

:func:`participants_frame` turns the records of the planned jobs into one row
per visit with a fixed schema (the stages' columns, in stage order), sorted by
(eid, instance), so the same store gives byte-identical CSV and Parquet files
whatever the worker count, backend or completion order. :func:`failures_frame`
does the same for the ledger. Files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ukbmri.engine.ledger import COLUMNS as FAILURE_COLUMNS
from ukbmri.engine.ledger import Failure
from ukbmri.engine.stage import Column
from ukbmri.io.atomic import atomic_path

__all__ = ["write_table", "read_table", "participants_frame", "failures_frame", "KEY", "HEAD_COLUMNS"]

KEY = ["eid", "instance"]
HEAD_COLUMNS = [Column("eid", "Int64"), Column("instance", "Int64"), Column("qc_flags", "string"),
                Column("exclusion_reason", "string")]
TAIL_COLUMNS = [Column("ukbmri_version", "string")]


def write_table(df: pd.DataFrame, stem: str | os.PathLike[str], *, formats: Sequence[str] = ("csv", "parquet")) -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.parquet`` atomically; returns the paths written."""
    stem = Path(stem)
    out = []
    for fmt in formats:
        target = stem.with_name(stem.name + f".{fmt}")
        with atomic_path(target) as tmp:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            elif fmt == "parquet":
                df.to_parquet(tmp, index=False)
            else:
                raise ValueError(f"unknown table format {fmt!r}")
        out.append(target)
    return out


def read_table(stem: str | os.PathLike[str]) -> pd.DataFrame | None:
    """Read ``<stem>.parquet`` (or ``.csv``) if present."""
    stem = Path(stem)
    pq = stem.with_name(stem.name + ".parquet")
    if pq.is_file():
        return pd.read_parquet(pq)
    csv = stem.with_name(stem.name + ".csv")
    if csv.is_file():
        return pd.read_csv(csv)
    return None


def schema(stage_columns: Iterable[Sequence[Column]]) -> list[Column]:
    """Head columns, then each stage's columns (first occurrence wins), then provenance."""
    seen: dict[str, Column] = {}
    for group in (HEAD_COLUMNS, *stage_columns, TAIL_COLUMNS):
        for c in group:
            seen.setdefault(c.name, c)
    return list(seen.values())


def frame(rows: list[dict], columns: Sequence[Column]) -> pd.DataFrame:
    """A DataFrame with exactly ``columns`` (missing cells NA) and their dtypes."""
    names = [c.name for c in columns]
    df = pd.DataFrame.from_records(rows, columns=names) if rows else pd.DataFrame(columns=names)
    for c in columns:
        if c.dtype == "float64":
            df[c.name] = pd.to_numeric(df[c.name], errors="coerce").astype("float64")
        elif c.dtype == "Int64":
            df[c.name] = pd.to_numeric(df[c.name], errors="coerce").astype("Int64")
        else:
            df[c.name] = df[c.name].astype("string")
    return df


def participants_frame(visit_rows: Mapping[tuple[int, int], dict], columns: Sequence[Column]) -> pd.DataFrame:
    """One row per visit (``visit_rows``: key -> cells incl. qc_flags), sorted by (eid, instance)."""
    rows = [{"eid": k[0], "instance": k[1], **cells} for k, cells in sorted(visit_rows.items())]
    return frame(rows, columns)


def failures_frame(failures: Iterable[Failure]) -> pd.DataFrame:
    """The ledger, sorted by (eid, instance, field, input, stage); one row per (input, stage)."""
    unique: dict[tuple[str, str], Failure] = {}
    for f in failures:
        unique[(f.input, f.stage)] = f
    rows = [{k: getattr(f, k) for k in FAILURE_COLUMNS} for f in unique.values()]
    df = frame(rows, [Column("eid", "Int64"), Column("instance", "Int64"), Column("field", "Int64"),
                      *(Column(c, "string") for c in FAILURE_COLUMNS[3:])])
    order = df.assign(_e=df["eid"].fillna(-1), _i=df["instance"].fillna(-1), _f=df["field"].fillna(-1))
    order = order.sort_values(["_e", "_i", "_f", "input", "stage"], kind="mergesort")
    return df.loc[order.index].reset_index(drop=True)
