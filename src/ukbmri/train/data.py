"""Training data for body modules: cached MIMIR images joined with a targets table.

Images
------
A cache folder of MIMIR 2D images, one ``<stem>.npy`` per participant visit
directly inside the folder (``1000001_20201_2_0.npy``: shape ``(3, 256, 256)``,
uint8, as written by ``ukbmri preprocess``). Sub-folders are not searched.
All matched images are loaded into memory once (0.2 MB each).

Targets table (CSV)
-------------------
One id column and one numeric column per target; empty cells are missing
values and stay NaN (they are masked in the loss, never imputed).

* ``name``: the image stem (``1000001_20201_2_0``). Used when present.
* otherwise ``eid``: matched to every stem ``<eid>_20201_<instance>_<array>``;
  an optional ``instance`` column restricts the match to that instance. An
  eid matching several images (e.g. instances 2 and 3) without an
  ``instance`` column is an error: the targets belong to one visit.

The columns ``name``, ``eid``, ``instance`` and ``array`` are never targets.
Image stems without a row and rows without an image are left out (logged).

Target metadata
---------------
From the column name: a known unit suffix is split off, e.g. ``weight_kg``
-> name ``weight``, unit ``kg`` (see :data:`UNIT_SUFFIXES`); other columns
keep their name and get unit ``""``. The field is ``"/"`` (MIMIR's mark for
"no UK Biobank field") and the divisor 1. An optional target-info CSV with
columns ``name,field,unit,divisor`` overrides this: a row applies to the
column of that name (or, failing that, to the column whose suffix-stripped
name it is) and its ``name`` becomes the module's target name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ukbmri.errors import CacheError, TargetsError
from ukbmri.modules import Target
from ukbmri.types import ParticipantKey, stem_of

__all__ = [
    "UNIT_SUFFIXES",
    "ID_COLUMNS",
    "IMAGE_SHAPE",
    "BodyData",
    "load_body_data",
    "read_targets_table",
    "targets_from_columns",
    "read_target_info",
    "translate",
    "random_translate",
]

log = logging.getLogger(__name__)

#: column-name suffix -> unit, checked in this order
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_per_s", "1/s"),
    ("_percent", "%"),
    ("_years", "years"),
    ("_male", "(male = 1)"),
    ("_kg", "kg"),
    ("_cm", "cm"),
    ("_ms", "ms"),
    ("_l", "L"),
)
#: columns that identify a row and are never targets
ID_COLUMNS: tuple[str, ...] = ("name", "eid", "instance", "array")
#: the MIMIR 2D image format
IMAGE_SHAPE: tuple[int, int, int] = (3, 256, 256)
#: field of the images a bare ``eid`` is matched to
BODY_FIELD = 20201


@dataclass(frozen=True, eq=False)
class BodyData:
    """Images and targets of one training set, row-aligned.

    ``images`` is ``(N, 3, 256, 256)`` uint8, ``values`` ``(N, T)`` float64 in
    the table's units (NaN = missing), ``columns`` the table column of each
    target, ``eids`` the participant of each image (for folds by participant).
    """

    names: tuple[str, ...]
    eids: np.ndarray
    images: np.ndarray
    values: np.ndarray
    targets: tuple[Target, ...]
    columns: tuple[str, ...]
    images_dir: Path
    targets_csv: Path

    def __len__(self) -> int:
        return len(self.names)


# -- targets ------------------------------------------------------------------
def split_unit(column: str) -> tuple[str, str]:
    """``weight_kg`` -> (``weight``, ``kg``); no known suffix -> (column, "")."""
    for suffix, unit in UNIT_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            return column[: -len(suffix)], unit
    return column, ""


def read_target_info(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a ``name,field,unit,divisor`` CSV (field and unit as text, divisor a number > 0)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"name": str, "field": str, "unit": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TargetsError(f"cannot read target-info table: {exc}", path=path) from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("name", "field", "unit", "divisor") if c not in df.columns]
    if missing:
        raise TargetsError(
            "target-info table lacks columns", path=path, expected="name,field,unit,divisor", found=",".join(df.columns)
        )
    div = pd.to_numeric(df["divisor"], errors="coerce")
    bad = ~(np.isfinite(div) & (div > 0))
    if bad.any():
        raise TargetsError(
            "divisor must be a positive number", path=path, member=str(df["name"][bad].iloc[0]),
            expected="> 0", found=str(df["divisor"][bad].iloc[0]),
        )
    if df["name"].duplicated().any():
        raise TargetsError("duplicate target names in target-info table", path=path,
                           found=sorted(set(df["name"][df["name"].duplicated()])))
    df["divisor"] = div.astype(float)
    return df


def targets_from_columns(columns: Sequence[str], info: pd.DataFrame | None = None) -> tuple[Target, ...]:
    """Module target metadata for the given table columns (see the module docstring)."""
    by_name = {} if info is None else {row.name: row for row in info.itertuples(index=False)}
    used: set[str] = set()
    out = []
    for col in columns:
        stripped, unit = split_unit(col)
        row = by_name.get(col) or by_name.get(stripped)
        if row is not None:
            used.add(row.name)
            out.append(Target(name=row.name, field=str(row.field), unit=str(row.unit), divisor=float(row.divisor)))
        else:
            out.append(Target(name=stripped, field="/", unit=unit, divisor=1.0))
    if info is not None:
        unused = sorted(set(by_name) - used)
        if unused:
            log.warning("target-info rows without a matching column ignored: %s", ", ".join(unused))
    for t in out:
        for what, text in (("name", t.name), ("field", t.field), ("unit", t.unit)):
            if any(ch in text for ch in ",\r\n"):
                raise TargetsError(f"target {what} contains a comma or line break (module files are comma-separated)",
                                   member=t.name, found=repr(text))
    names = [t.name for t in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TargetsError("two target columns map to the same target name", expected="unique names", found=dup)
    return tuple(out)


def read_targets_table(
    path: str | PathLike[str], *, only: Sequence[str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Read the targets CSV; return it and the target column names (checked numeric).

    ``only`` selects target columns by column name or suffix-stripped name.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"name": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TargetsError(f"cannot read targets table: {exc}", path=path) from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "name" not in df.columns and "eid" not in df.columns:
        raise TargetsError("targets table has no id column", path=path, expected="a 'name' or 'eid' column",
                           found=",".join(df.columns[:8]) + (",..." if df.shape[1] > 8 else ""))
    columns = [c for c in df.columns if c not in ID_COLUMNS]
    if only:
        wanted = list(dict.fromkeys(only))
        lookup = {c: c for c in columns} | {split_unit(c)[0]: c for c in columns}
        unknown = [w for w in wanted if w not in lookup]
        if unknown:
            raise TargetsError("requested targets are not columns of the table", path=path,
                               expected=f"some of {','.join(columns)}", found=",".join(unknown))
        columns = [lookup[w] for w in wanted]
    if not columns:
        raise TargetsError("targets table has no target column", path=path, found=",".join(df.columns))
    for c in columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            conv = pd.to_numeric(df[c], errors="coerce")
            bad = df[c][conv.isna() & df[c].notna()]
            if len(bad):
                raise TargetsError("target column is not numeric", path=path, member=c,
                                   expected="numbers or empty cells", found=repr(bad.iloc[0]))
            df[c] = conv
    return df, columns


def _match_rows(df: pd.DataFrame, stems: Sequence[str], path: Path) -> tuple[list[str], list[int]]:
    """Pair image stems with table rows; returns (stems, row positions)."""
    if "name" in df.columns:
        names = df["name"].astype(str).str.strip().map(stem_of)  # tolerate "<stem>.npy" / "<stem>.zip"
        if names.duplicated().any():
            raise TargetsError("duplicate names in targets table", path=path, member="name",
                               found=sorted(set(names[names.duplicated()]))[:5])
        row_of = {n: i for i, n in enumerate(names)}
        pairs = [(s, row_of[s]) for s in stems if s in row_of]
    else:
        eid = pd.to_numeric(df["eid"], errors="coerce")
        if eid.isna().any():
            raise TargetsError("non-numeric eid in targets table", path=path, member="eid",
                               found=repr(df["eid"][eid.isna()].iloc[0]))
        inst = None
        if "instance" in df.columns:
            inst = pd.to_numeric(df["instance"], errors="coerce")
            if inst.isna().any():
                raise TargetsError("non-numeric instance in targets table", path=path, member="instance")
        keys = list(zip(eid.astype(int), (inst.astype(int) if inst is not None else [None] * len(df)), strict=True))
        if len(set(keys)) != len(keys):
            raise TargetsError("duplicate eid (and instance) rows in targets table", path=path, member="eid")
        row_of = {k: i for i, k in enumerate(keys)}
        pairs = []
        seen: dict[int, str] = {}
        for s in stems:
            k = ParticipantKey.from_path(s)
            if k is None or k.field != BODY_FIELD:
                continue
            i = row_of.get((k.eid, k.instance if inst is not None else None))
            if i is None:
                continue
            if inst is None and k.eid in seen:
                raise TargetsError(
                    f"eid {k.eid} matches several images ({seen[k.eid]}, {s}); add an 'instance' or a 'name' column",
                    path=path, member="eid",
                )
            seen[k.eid] = s
            pairs.append((s, i))
    return [p[0] for p in pairs], [p[1] for p in pairs]


# -- images -------------------------------------------------------------------
def _load_image(path: Path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CacheError(f"cannot read cached image: {exc}", path=path) from exc
    if a.shape != IMAGE_SHAPE or a.dtype != np.uint8:
        raise CacheError("cached image is not in the MIMIR 2D format", path=path,
                         expected=f"{IMAGE_SHAPE} uint8", found=f"{a.shape} {a.dtype}")
    return a


def load_body_data(
    images_dir: str | PathLike[str],
    targets_csv: str | PathLike[str],
    *,
    target_info: str | PathLike[str] | None = None,
    only: Sequence[str] | None = None,
) -> BodyData:
    """Join the cached images with the targets table (see the module docstring).

    Raises
    ------
    TargetsError
        No id column, non-numeric target columns, no image matching any row
        (the message names both paths), a target without any value.
    CacheError
        An image file that is not ``(3, 256, 256)`` uint8.
    """
    images_dir, targets_csv = Path(images_dir), Path(targets_csv)
    if not images_dir.is_dir():
        raise TargetsError("image folder does not exist", path=images_dir)
    df, columns = read_targets_table(targets_csv, only=only)
    info = read_target_info(target_info) if target_info is not None else None
    targets = targets_from_columns(columns, info)

    files = {p.name.split(".", 1)[0]: p for p in sorted(images_dir.glob("*.npy")) if p.is_file()}
    stems, rows = _match_rows(df, sorted(files), targets_csv)
    if not stems:
        raise TargetsError(
            f"no image in {images_dir} matches a row of the targets table "
            f"({len(files)} .npy images, {len(df)} rows)",
            path=targets_csv, expected="'name' = image stem or 'eid' = the stem's first part",
            found=f"first images {sorted(files)[:3]}",
        )
    n_unmatched = len(df) - len(set(rows))
    if n_unmatched:
        log.warning("%d of %d target rows have no image in %s", n_unmatched, len(df), images_dir)
    if len(files) > len(stems):
        log.info("%d images in %s have no target row", len(files) - len(stems), images_dir)

    values = df.iloc[rows][columns].to_numpy(dtype=np.float64)
    empty = [c for c, n in zip(columns, np.isfinite(values).sum(axis=0), strict=True) if n == 0]
    if empty:
        raise TargetsError("target column has no value for any matched image", path=targets_csv, member=empty[0])
    images = np.empty((len(stems), *IMAGE_SHAPE), dtype=np.uint8)
    for i, s in enumerate(stems):
        images[i] = _load_image(files[s])
    eids = np.array(
        [(k.eid if (k := ParticipantKey.from_path(s)) is not None else -1) for s in stems], dtype=np.int64
    )
    return BodyData(tuple(stems), eids, images, values, targets, tuple(columns), images_dir, targets_csv)


# -- augmentation -------------------------------------------------------------
def translate(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Shift each image by integer ``(dy, dx)`` pixels, filling with the edge value.

    ``out[b, c, i, j] = images[b, c, clip(i - dy_b), clip(j - dx_b)]``: positive
    ``dy`` moves the content down (towards larger row index), positive ``dx``
    to the right; the uncovered border repeats the nearest edge row/column
    (``scipy.ndimage.shift(..., order=0, mode="nearest")`` for integer shifts).

    Parameters
    ----------
    images:
        ``(B, C, H, W)`` tensor of any dtype.
    dy, dx:
        ``(B,)`` integer tensors.
    """
    b, c, h, w = images.shape
    dev = images.device
    rows = (torch.arange(h, device=dev)[None, :] - dy.to(dev).long()[:, None]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=dev)[None, :] - dx.to(dev).long()[:, None]).clamp_(0, w - 1)  # (B, W)
    out = images.gather(2, rows[:, None, :, None].expand(b, c, h, w))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """MIMIR's augmentation: independent integer shifts in ``[-max_shift, max_shift]`` per image and axis."""
    if max_shift <= 0:
        return images
    b = images.shape[0]
    shifts = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator)
    return translate(images, shifts[0], shifts[1])
