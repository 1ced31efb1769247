"""Participant tables: written as CSV and Parquet together, atomically, resumable.

Tables are keyed (``eid``, ``instance`` or ``name``); :func:`upsert` merges new
rows into an existing table so a resumed run extends its previous output
instead of redoing or discarding it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ukbmri.io.atomic import atomic_path

__all__ = ["write_table", "read_table", "upsert", "sha256_file"]


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


def upsert(old: pd.DataFrame | None, new: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows of ``new`` replace rows of ``old`` with the same keys; the rest of ``old`` is kept."""
    if old is None or old.empty:
        out = new.copy()
    elif new.empty:
        out = old.copy()
    else:
        keys = list(keys)
        old_idx = old.set_index(keys).index
        new_idx = new.set_index(keys).index
        kept = old[~old_idx.isin(new_idx)]
        out = pd.concat([kept, new], ignore_index=True, sort=False)
    return out.sort_values(list(keys)).reset_index(drop=True) if len(out) else out


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
