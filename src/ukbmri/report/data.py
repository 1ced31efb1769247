"""What a report is made of, and the column-level reading of a participants table.

:class:`ReportData` is the one input of :func:`ukbmri.report.write_reports`. The
helpers here are pure and vectorised (a 100,000-row table is read in well under a
second): which columns hold values, which hold intervals, which participants were
flagged or failed (and why), and a fixed pseudo-random sample of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "ReportData",
    "KEYS",
    "FAILURE_COLUMNS",
    "value_columns",
    "companion",
    "interval_columns",
    "liver_agreement_pairs",
    "participants_of_interest",
    "unattached_failures",
    "sample_others",
    "flag_counts",
    "flags_of",
    "numeric_values",
]

KEYS = ["eid", "instance"]
FAILURE_COLUMNS = ["eid", "instance", "field", "input", "stage", "error", "message"]

# Column-name unit suffixes that mark a value column (see engine.body.unit_slug).
UNIT_SUFFIXES = ("_kg", "_cm", "_l", "_percent", "_per_s", "_male", "_years", "_bpm", "_g", "_l_per_l",
                 "_kg_per_l", "_l_per_m2", "_ms")
_DERIVED_SUFFIXES = ("_variance", "_ci95_low", "_ci95_high")


def _no_image(eid: int, instance: int) -> Path | None:
    return None


def _no_rois(eid: int, instance: int) -> dict[str, Path]:
    return {}


@dataclass(frozen=True)
class ReportData:
    """Everything a run report shows. Only ``table`` and ``failures`` are required.

    ``body_image(eid, instance)`` gives the MIMIR 2D image ``.npy`` ((3, 256, 256) uint8)
    or None; ``liver_rois(eid, instance)`` gives ``{"20203": stem, "20254": stem}`` where
    ``<stem>.png`` is the ROI overlay (and ``<stem>.npy`` the mask). ``truth`` (phantom
    ground truth, keyed by ``eid`` and optionally ``instance``) is compared with the table
    through ``truth_pairs`` (table column -> truth column). ``sample_size`` participants
    that were neither flagged nor failed get thumbnails too, chosen by ``seed``.
    """

    table: pd.DataFrame
    failures: pd.DataFrame
    body_image: Callable[[int, int], Path | None] = _no_image
    liver_rois: Callable[[int, int], dict[str, Path]] = _no_rois
    truth: pd.DataFrame | None = None
    truth_pairs: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()
    run_info: Mapping[str, object] = field(default_factory=dict)
    sample_size: int = 200
    seed: int = 0


def _is_provenance(col: str) -> bool:
    return col.endswith(("_fingerprint", "_sha256")) or col == "ukbmri_version"


def numeric_values(s: pd.Series) -> np.ndarray:
    """A column as float64 (non-numbers and NA become NaN)."""
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def companion(columns, value: str, kind: str) -> str | None:
    """The ``kind`` (``variance``, ``ci95_low``, ``ci95_high``) column of a value column, if present.

    Body columns keep the unit (``weight_kg_ci95_low``), liver columns drop it
    (``liver_fat_teacher_ci95_low`` for ``liver_fat_teacher_percent``); both are found.
    """
    names = [f"{value}_{kind}"]
    for suffix in sorted(UNIT_SUFFIXES, key=len, reverse=True):
        if value.endswith(suffix):
            names.append(f"{value[: -len(suffix)]}_{kind}")
            break
    return next((n for n in names if n in columns), None)


def value_columns(table: pd.DataFrame) -> list[str]:
    """Columns holding a phenotype value (a unit suffix, or a ``_variance`` companion), in table order.

    Keys, provenance, flags, variances and interval bounds are not value columns; neither
    is a column with no finite number in it.
    """
    cols = []
    for c in table.columns:
        c = str(c)
        if c in KEYS or _is_provenance(c) or c.endswith(_DERIVED_SUFFIXES) or "qc_flags" in c:
            continue
        if not (c.endswith(UNIT_SUFFIXES) or companion(table.columns, c, "variance")):
            continue
        if np.isfinite(numeric_values(table[c])).any():
            cols.append(c)
    return cols


def interval_columns(table: pd.DataFrame, values: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """``(value, low, high)`` for every value column (``values``, default all) with a 95 % interval holding data."""
    out = []
    for c in value_columns(table) if values is None else values:
        lo, hi = companion(table.columns, c, "ci95_low"), companion(table.columns, c, "ci95_high")
        if lo and hi:
            if (np.isfinite(numeric_values(table[lo])) & np.isfinite(numeric_values(table[hi]))).any():
                out.append((c, lo, hi))
    return out


# (reference, comparison, title): physics is the reference the networks are checked against.
_AGREEMENT = (
    ("liver_fat_physics_percent", "liver_fat_teacher_percent", "physics vs teacher (20203 GRE)"),
    ("liver_fat_physics_percent", "liver_fat_student_percent", "physics vs student (20254 IDEAL)"),
    ("liver_fat_gre_physics_percent", "liver_fat_ideal_physics_percent", "physics: GRE vs IDEAL"),
)


def liver_agreement_pairs(table: pd.DataFrame, min_n: int = 2) -> list[tuple[str, str, str]]:
    """The liver method pairs with at least ``min_n`` participants measured by both."""
    out = []
    for a, b, title in _AGREEMENT:
        if a in table.columns and b in table.columns:
            if (np.isfinite(numeric_values(table[a])) & np.isfinite(numeric_values(table[b]))).sum() >= min_n:
                out.append((a, b, title))
    return out


def _keys_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for k in KEYS:
        out[k] = pd.to_numeric(df[k], errors="coerce").astype("Int64") if k in df.columns else pd.array(
            [pd.NA] * len(df), dtype="Int64")
    return out


def flags_of(table: pd.DataFrame) -> pd.Series:
    """``qc_flags`` (and any ``<stage>_qc_flags`` column) as one clean ``;``-joined string per row
    ("" when clean or absent), each flag once."""
    cols = [c for c in table.columns if str(c) == "qc_flags" or str(c).endswith("_qc_flags")]
    if not cols:
        return pd.Series("", index=table.index, dtype=object)
    joined = table[cols[0]].fillna("").astype(str)
    for c in cols[1:]:
        joined = joined + ";" + table[c].fillna("").astype(str)
    joined = joined.str.strip().str.strip(";")
    messy = joined.str.contains(";", regex=False) | joined.str.contains(" ", regex=False)
    if messy.any():  # rare: several columns or stray blanks -> split, dedupe in order
        joined[messy] = [";".join(dict.fromkeys(p.strip() for p in s.split(";") if p.strip()))
                         for s in joined[messy]]
    return joined


def flag_counts(table: pd.DataFrame, flags: pd.Series | None = None) -> pd.Series:
    """How many participants carry each flag, most frequent first."""
    flags = flags_of(table) if flags is None else flags
    flags = flags[flags != ""]
    if flags.empty:
        return pd.Series(dtype="int64")
    parts = flags.str.split(";").explode().str.strip()
    parts = parts[parts != ""]
    return parts.value_counts().sort_index(kind="stable").sort_values(ascending=False, kind="stable")


def _failures(failures: pd.DataFrame | None) -> pd.DataFrame:
    if failures is None or len(failures) == 0:
        return pd.DataFrame({c: pd.Series(dtype="Int64" if c in KEYS else object) for c in FAILURE_COLUMNS})
    f = failures.copy()
    for c in FAILURE_COLUMNS:
        if c not in f.columns:
            f[c] = pd.NA
    f[KEYS] = _keys_frame(f)
    return f


def participants_of_interest(table: pd.DataFrame, failures: pd.DataFrame | None,
                             flags: pd.Series | None = None) -> pd.DataFrame:
    """Flagged or failed participants, one row each, sorted by (eid, instance).

    Columns: ``eid``, ``instance``, ``flags`` (list of flag names), ``failures`` (list of
    ``"stage: error: message"`` strings) and ``in_table`` (whether the table has the row).
    A failed participant with no table row (every stage failed) is included. ``flags`` is
    :func:`flags_of` of the table when already computed.
    """
    keys = _keys_frame(table)
    flags = flags_of(table) if flags is None else flags
    flagged = keys[(flags != "").to_numpy()].copy()
    flagged["flags"] = [[p.strip() for p in s.split(";") if p.strip()] for s in flags[flags != ""]]
    f = _failures(failures)
    f = f[f["eid"].notna()]
    if len(f):
        f = f.assign(reason=f["stage"].astype(str) + ": " + f["error"].astype(str) + ": " + f["message"].astype(str))
        failed = f.groupby(KEYS, dropna=False, sort=False)["reason"].agg(list).reset_index()
        failed = failed.rename(columns={"reason": "failures"})
    else:
        failed = pd.DataFrame({"eid": pd.array([], "Int64"), "instance": pd.array([], "Int64"), "failures": []})
    out = flagged.merge(failed, on=KEYS, how="outer")
    out["flags"] = [v if isinstance(v, list) else [] for v in out["flags"]]
    out["failures"] = [v if isinstance(v, list) else [] for v in out["failures"]]
    out[KEYS] = out[KEYS].astype("Int64")
    present = keys.drop_duplicates().assign(in_table=True)
    out = out.merge(present, on=KEYS, how="left")
    out["in_table"] = out["in_table"].fillna(False).astype(bool)
    return out.sort_values(KEYS, na_position="last", kind="stable").reset_index(drop=True)


def unattached_failures(failures: pd.DataFrame | None) -> pd.DataFrame:
    """Ledger rows that name no participant (e.g. an unreadable zip name)."""
    f = _failures(failures)
    return f[f["eid"].isna()][FAILURE_COLUMNS].reset_index(drop=True)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic): a fixed, well-spread hash."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def sample_others(table: pd.DataFrame, exclude: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """Up to ``size`` (eid, instance) rows of ``table`` not in ``exclude``, sorted.

    Each participant's rank is a hash of (eid, instance, seed), so the sample does not depend
    on row order, and a participant stays in the sample when the table grows unless a
    new one outranks it (thumbnails of a resumed run are mostly reused).
    """
    keys = _keys_frame(table).dropna()
    if size <= 0 or keys.empty:
        return keys.iloc[:0].reset_index(drop=True)
    keys = keys.drop_duplicates()
    if len(exclude):
        ex = pd.MultiIndex.from_frame(exclude[KEYS].dropna().astype("int64"))
        keys = keys[~pd.MultiIndex.from_frame(keys.astype("int64")).isin(ex)]
    eid = keys["eid"].to_numpy(dtype=np.int64).astype(np.uint64)
    inst = keys["instance"].to_numpy(dtype=np.int64).astype(np.uint64)
    seed64 = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        rank = _mix64(_mix64(eid ^ seed64) + inst)
    pick = np.argsort(rank, kind="stable")[:size]
    return keys.iloc[pick].sort_values(KEYS, kind="stable").reset_index(drop=True)
