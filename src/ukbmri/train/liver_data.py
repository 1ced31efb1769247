"""Training sets for the liver teacher / student: tensors from zips or ml4h hd5 files, plus labels.

Inputs
------
* UK Biobank zips (files or folders, searched recursively): ``<eid>_20203_*``
  for the teacher (:func:`~ukbmri.preprocess.liver_tensors.gre_tensor`),
  ``<eid>_20254_*`` for the student (``ideal_tensor``). Zips of other fields
  found in a folder are skipped by name; the field is re-checked against the
  DICOM headers. The participant (eid, instance) comes from the file name.
* ml4h tensor files ``<eid>.hd5`` / ``.h5`` in either layout
  (:mod:`ukbmri.io.hd5`): every ``/ukb_liver_mri/<map>/instance_<k>`` is one
  sample; a root-layout ``/<map>`` dataset is taken as instance 2 (the first
  imaging visit; root-layout files predate the repeat visit).

Zips are read in parallel with :func:`ukbmri.engine.runner.run_tasks`. A zip
or hd5 file that cannot be used becomes a :class:`~ukbmri.engine.ledger.Failure`
in :attr:`LiverData.failures` and is left out; nothing is zero-filled.

Memory
------
Each tensor is normalised per sample (ml4h ``ZeroMeanStd1``, computed in
float64 on the raw magnitudes) as soon as it is read and stored as
**float16**: 0.5 MB per GRE tensor ``(10, 160, 160)`` and 4.3 MB per IDEAL
tensor ``(36, 232, 256)`` instead of 1 / 8.5 MB in float32 (1,000 IDEAL
participants: 4.3 GB). Normalised values are O(1..30), where float16 keeps
a relative precision of 2^-11 (about 5e-4 of the value), well below the
12-bit quantisation of the DICOM magnitudes relative to their spread. A tensor
that cannot be normalised (constant, NaN/inf) fails that participant.

Labels
------
A CSV keyed by participant: an ``eid`` column, an optional ``instance``
column, and the label column chosen by ``label_column`` (default
``liver_pdff_percent``, the synthetic truth table's name). UK Biobank showcase
columns ``<field>-<instance>.<array>`` (``22402-2.0``) are accepted; the
instance then comes from the column name. Empty cells are missing labels:
they stay NaN and are masked in the loss (never a 0.0 sentinel, which would
also erase true 0 % readings). Values outside 0..100 % are refused. Without a
table, labels come from the hd5 files when present, else they are all missing: by default
(``hd5_label="auto"``) per instance ``k`` the ml4h name ``/continuous/22402_Liver-fat-percentage_<k>_0``
(what ml4h and ``ukbmri ml4h tensorize --labels`` write), else ``/continuous/liver_fat`` for
the participant; a given name reads ``/continuous/<name>`` for every instance.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ukbmri.engine.cohort import find_files
from ukbmri.engine.ledger import Failure
from ukbmri.engine.runner import Outcome, run_tasks
from ukbmri.errors import InputError, TargetsError, TensorError
from ukbmri.io.atomic import atomic_path
from ukbmri.io.hd5 import LABEL_GROUP, LIVER_GROUP, read_label, read_ml4h_tensor
from ukbmri.preprocess.liver_tensors import (
    GRE_FIELD,
    GRE_SHAPE,
    IDEAL_FIELD,
    IDEAL_SHAPE,
    pad_crop_top_left,
    zero_mean_std1,
)
from ukbmri.preprocess.tensormaps import TENSOR_MAPS
from ukbmri.types import ParticipantKey

__all__ = [
    "STORAGE_DTYPE",
    "DEFAULT_LABEL_COLUMN",
    "HD5_SUFFIXES",
    "INPUTS",
    "LiverData",
    "LabelTable",
    "read_label_table",
    "find_liver_inputs",
    "build_liver_data",
    "save_liver_data",
    "load_liver_data",
]

log = logging.getLogger(__name__)

STORAGE_DTYPE = np.float16
DEFAULT_LABEL_COLUMN = "liver_pdff_percent"
HD5_SUFFIXES = (".hd5", ".h5")
STAGE = "liver-tensor"
_SHOWCASE = re.compile(r"^(?P<field>\d+)-(?P<instance>\d+)\.(?P<array>\d+)$")
_VALID_RANGE = TENSOR_MAPS["liver_fat"].valid_range or (0.0, 100.0)

#: kind -> (field, ml4h input TensorMap name, native tensor shape)
INPUTS: dict[str, tuple[int, str, tuple[int, int, int]]] = {
    "teacher": (GRE_FIELD, "gre_mullti_echo_10_te_liver", GRE_SHAPE),
    "student": (IDEAL_FIELD, "lms_ideal_optimised_low_flip_6dyn", IDEAL_SHAPE),
}


@dataclass(frozen=True, eq=False)
class LiverData:
    """Normalised liver tensors and labels, row-aligned and sorted by (eid, instance).

    ``x`` is ``(N, C, H, W)`` float16 (per-sample ZeroMeanStd1); ``labels``
    float64 liver fat % with NaN where missing.
    """

    x: np.ndarray
    eids: np.ndarray
    instances: np.ndarray
    sources: tuple[str, ...]
    labels: np.ndarray
    kind: str
    failures: tuple[Failure, ...] = ()
    label_source: str | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def tensor_map(self) -> str:
        return INPUTS[self.kind][1]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x.shape[1:])  # type: ignore[return-value]

    @property
    def keys(self) -> list[tuple[int, int]]:
        return list(zip(self.eids.tolist(), self.instances.tolist(), strict=True))

    @property
    def labelled(self) -> np.ndarray:
        """Boolean mask of rows with a label."""
        return np.isfinite(self.labels)

    def subset(self, rows: np.ndarray | Sequence[int]) -> LiverData:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return replace(self, x=self.x[rows], eids=self.eids[rows], instances=self.instances[rows],
                       sources=tuple(self.sources[i] for i in rows), labels=self.labels[rows])

    def with_labels(self, labels: np.ndarray, source: str | None) -> LiverData:
        labels = np.asarray(labels, dtype=np.float64)
        if labels.shape != (len(self),):
            raise ValueError(f"need {len(self)} labels, got {labels.shape}")
        return replace(self, labels=labels, label_source=source)


# --------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class LabelTable:
    """Labels by participant: ``(eid, instance)`` or ``(eid, None)`` (any instance) -> value or NaN."""

    values: Mapping[tuple[int, int | None], float]
    path: Path
    column: str

    def lookup(self, eid: int, instance: int) -> float:
        v = self.values.get((int(eid), int(instance)))
        if v is None:
            v = self.values.get((int(eid), None))
        return float("nan") if v is None else float(v)

    def lookup_many(self, eids: Iterable[int], instances: Iterable[int]) -> np.ndarray:
        return np.array([self.lookup(e, i) for e, i in zip(eids, instances, strict=True)], dtype=np.float64)


def read_label_table(path: str | PathLike[str], label_column: str = DEFAULT_LABEL_COLUMN) -> LabelTable:
    """Read a labels CSV (see the module docstring).

    Raises
    ------
    TargetsError
        Unreadable table, no ``eid`` column, no such label column (the
        message lists the columns), non-numeric values, values outside
        0..100 %, or a participant (eid, instance) listed twice.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TargetsError(f"cannot read labels table: {exc}", path=path) from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "eid" not in df.columns:
        raise TargetsError("labels table has no 'eid' column", path=path, found=",".join(df.columns[:10]))
    if label_column not in df.columns:
        raise TargetsError("label column not in the labels table", path=path, expected=label_column,
                           found=",".join(c for c in df.columns[:12]))
    showcase = _SHOWCASE.match(label_column)
    eids = pd.to_numeric(df["eid"].str.strip(), errors="coerce")
    if eids.isna().any() or (eids != eids.round()).any():
        bad = df["eid"][eids.isna() | (eids != eids.round())].iloc[0]
        raise TargetsError("eid is not an integer", path=path, member="eid", found=repr(bad))
    if showcase:
        instances: list[int | None] = [int(showcase["instance"])] * len(df)
    elif "instance" in df.columns:
        inst = pd.to_numeric(df["instance"].str.strip().replace("", np.nan), errors="coerce")
        bad = df["instance"].str.strip().ne("") & inst.isna()
        if bad.any():
            raise TargetsError("instance is not an integer", path=path, member="instance",
                               found=repr(df["instance"][bad].iloc[0]))
        instances = [None if pd.isna(v) else int(v) for v in inst]
    else:
        instances = [None] * len(df)
    raw = df[label_column].str.strip()
    lower = raw.str.lower()
    missing = raw.eq("") | lower.isin(["na", "nan", "none", "null"])
    values = pd.to_numeric(raw.where(~missing), errors="coerce")
    bad = ~missing & values.isna()
    if bad.any():
        raise TargetsError("label is not a number", path=path, member=label_column,
                           found=repr(raw[bad].iloc[0]))
    lo, hi = _VALID_RANGE
    out_of_range = values.notna() & ((values < lo) | (values > hi) | ~np.isfinite(values.fillna(0)))
    if out_of_range.any():
        raise TargetsError("liver fat label outside the valid range", path=path, member=label_column,
                           expected=f"{lo:g}..{hi:g} %", found=f"{values[out_of_range].iloc[0]:g}")
    table: dict[tuple[int, int | None], float] = {}
    any_instance: set[int] = set()  # eids listed without an instance
    with_instance: set[int] = set()
    for e, i, v in zip(eids.astype(np.int64).tolist(), instances, values, strict=True):
        clash = (e, i) in table or (e in any_instance) or (i is None and e in with_instance)
        if clash:
            raise TargetsError("participant listed twice in the labels table", path=path,
                               found=f"eid {e}" + ("" if i is None else f", instance {i}"))
        (any_instance if i is None else with_instance).add(e)
        table[(e, i)] = float("nan") if pd.isna(v) else float(v)
    n_missing = sum(1 for v in table.values() if not np.isfinite(v))
    log.info("labels %s[%s]: %d participants, %d missing", path, label_column, len(table), n_missing)
    return LabelTable(table, path, label_column)


# --------------------------------------------------------------------------- inputs
def find_liver_inputs(paths: Iterable[str | PathLike[str]], kind: str) -> list[Path]:
    """Zips of the kind's field (by name; unconventional names kept) and hd5 files, sorted."""
    field = INPUTS[kind][0]
    paths = list(paths)
    out: list[Path] = []
    for p in find_files(paths, ".zip"):
        key = ParticipantKey.from_path(p)
        if key is None or key.field == field:
            out.append(p)
    for suffix in HD5_SUFFIXES:
        out += [p for p in find_files(paths, suffix) if p not in out]
    # a file given directly with another suffix is an error, not silently ignored
    for p in map(Path, paths):
        if p.is_file() and p.suffix.lower() not in (".zip", *HD5_SUFFIXES):
            raise InputError("not a zip or hd5 file", path=p, expected=".zip, .hd5 or .h5", found=p.suffix)
    return sorted(set(out))


def _finish(tensor: np.ndarray, shape: tuple[int, int, int], path: str) -> np.ndarray:
    """Check the channels, top-left pad/crop to ``shape``, normalise, store as float16."""
    if tensor.ndim != 3 or tensor.shape[0] != shape[0]:
        raise TensorError("wrong tensor layout", path=path, expected=f"({shape[0]}, H, W)", found=tensor.shape)
    if tuple(tensor.shape) != tuple(shape):
        tensor = pad_crop_top_left(tensor, shape)
    return zero_mean_std1(tensor, path=path).astype(STORAGE_DTYPE)


def _load_item(task: tuple[str, str, tuple[int, int, int], str | None]) -> list[tuple[int, int, np.ndarray, float]]:
    """One zip or hd5 file -> [(eid, instance, float16 tensor, hd5 label or NaN)] (top level: picklable)."""
    path_s, kind, shape, hd5_label = task
    path = Path(path_s)
    field, tmap, _ = INPUTS[kind]
    if path.suffix.lower() == ".zip":
        from ukbmri.io.reader import read_zip
        from ukbmri.preprocess.liver_tensors import gre_tensor, ideal_tensor

        key = ParticipantKey.from_path(path)
        if key is None:
            raise InputError("cannot tell the participant from the file name", path=path,
                             expected="<eid>_<field>_<instance>_<array>.zip")
        z = read_zip(path, expect_field=field)
        t = gre_tensor(z) if kind == "teacher" else ideal_tensor(z)
        return [(key.eid, key.instance, _finish(t, shape, path_s), float("nan"))]
    return _load_hd5(path, tmap, shape, hd5_label)


#: ``hd5_label`` default: the ml4h label of each instance, else a participant-level ``liver_fat``
AUTO_LABEL = "auto"


def hd5_label_names(hd5_label: str | None, instance: int) -> tuple[str, ...]:
    """``/continuous/`` names to try, in order, for the label of ``instance``."""
    if hd5_label is None:
        return ()
    if hd5_label == AUTO_LABEL:
        return (f"22402_Liver-fat-percentage_{instance}_0", "liver_fat")
    return (hd5_label,)


def _load_hd5(path: Path, tmap: str, shape, hd5_label: str | None) -> list[tuple[int, int, np.ndarray, float]]:
    stem = path.name.split(".", 1)[0]
    if not stem.isdigit():
        raise InputError("cannot tell the participant from the hd5 file name", path=path,
                         expected="<eid>.hd5", found=path.name)
    eid = int(stem)
    try:
        with h5py.File(path, "r") as f:
            node = f.get(f"/{LIVER_GROUP}/{tmap}")
            instances = sorted(int(k.split("_", 1)[1]) for k in node.keys()
                               if k.startswith("instance_") and k.split("_", 1)[1].isdigit()) \
                if isinstance(node, h5py.Group) else []
            present = set(f[LABEL_GROUP].keys()) if isinstance(f.get(LABEL_GROUP), h5py.Group) else set()
    except OSError as exc:
        raise TensorError(f"not a readable hd5 file: {exc}", path=path) from exc

    def label(instance: int) -> float:
        name = next((n for n in hd5_label_names(hd5_label, instance) if n in present), None)
        if name is None:
            return float("nan")
        value = read_label(path, name)
        if np.isfinite(value) and not _VALID_RANGE[0] <= value <= _VALID_RANGE[1]:
            raise TensorError("liver fat label outside the valid range", path=path, member=f"/{LABEL_GROUP}/{name}",
                              expected=f"{_VALID_RANGE[0]:g}..{_VALID_RANGE[1]:g} %", found=value)
        return value

    out = []
    if instances:
        for k in instances:
            t = read_ml4h_tensor(path, tmap, k)
            out.append((eid, k, _finish(t, shape, f"{path}[instance_{k}]"), label(k)))
    else:  # root layout (read_ml4h_tensor raises a TensorError listing the file when absent)
        t = read_ml4h_tensor(path, tmap, None)
        out.append((eid, 2, _finish(t, shape, str(path)), label(2)))
    return out


def _task_label(task: tuple) -> str:
    return str(task[0])


def build_liver_data(
    inputs: Iterable[str | PathLike[str]],
    *,
    kind: str,
    labels: str | PathLike[str] | LabelTable | None = None,
    label_column: str = DEFAULT_LABEL_COLUMN,
    hd5_label: str | None = AUTO_LABEL,
    input_hw: tuple[int, int] | None = None,
    workers: int = 1,
    progress: Callable[[Outcome], None] | None = None,
) -> LiverData:
    """Read every teacher (``kind="teacher"``, 20203) or student (``"student"``, 20254) input.

    Parameters
    ----------
    inputs:
        Zips, folders (searched recursively for zips of the field and hd5 files)
        or hd5 files.
    labels:
        Labels CSV (or a :class:`LabelTable`); ``None``: hd5 labels if any.
    label_column:
        The CSV column holding liver fat % (``22402-2.0`` style accepted).
    hd5_label:
        The hd5 label read when no table is given: ``"auto"`` (per instance ``k`` ml4h's
        ``/continuous/22402_Liver-fat-percentage_<k>_0``, else ``/continuous/liver_fat``), a
        name (``/continuous/<name>`` for every instance) or ``None`` (no hd5 labels).
    input_hw:
        Top-left pad/crop the tensors to ``(C, *input_hw)`` instead of the
        ml4h shape (small networks for tests and experiments).
    workers:
        Processes reading zips in parallel.
    progress:
        Called with each file's outcome.

    Returns
    -------
    LiverData
        Sorted by (eid, instance), with the failures of unusable files. A
        participant found twice (two files) keeps the first file in sorted
        path order; the other becomes a failure.

    Raises
    ------
    InputError
        A path does not exist, or nothing usable was found at all.
    TargetsError
        The labels table is unusable.
    """
    if kind not in INPUTS:
        raise ValueError(f"kind must be one of {sorted(INPUTS)}, not {kind!r}")
    _, tmap, native = INPUTS[kind]
    shape = native if input_hw is None else (native[0], int(input_hw[0]), int(input_hw[1]))
    table = read_label_table(labels, label_column) if isinstance(labels, (str, PathLike)) else labels
    files = find_liver_inputs(inputs, kind)
    if not files:
        raise InputError(f"no {kind} inputs (field {INPUTS[kind][0]} zips or hd5 files) found",
                         path=", ".join(str(p) for p in inputs))
    tasks = [(str(p), kind, shape, None if table is not None else hd5_label) for p in files]
    results: dict[str, list] = {}
    failures: list[Failure] = []
    for outcome in run_tasks(_load_item, tasks, stage=STAGE, label=_task_label, workers=workers, progress=progress):
        if outcome.ok:
            results[outcome.input] = outcome.value
        else:
            failure = outcome.failure
            stem = Path(outcome.input).name.split(".", 1)[0]
            if failure.eid is None and stem.isdigit():  # ml4h hd5 files are named <eid>.hd5
                failure = replace(failure, eid=int(stem), field=INPUTS[kind][0])
            failures.append(failure)  # type: ignore[arg-type]
            log.warning("left out: %s", outcome.failure.one_line())  # type: ignore[union-attr]
    rows: list[tuple[int, int, str, int]] = []
    seen: dict[tuple[int, int], str] = {}
    for src in sorted(results):
        for j, (eid, inst, _t, _lab) in enumerate(results[src]):
            if (eid, inst) in seen:
                failures.append(Failure(src, STAGE, "DuplicateParticipant",
                                        f"eid {eid} instance {inst} already read from {seen[(eid, inst)]}",
                                        eid=eid, instance=inst, field=INPUTS[kind][0]))
                continue
            seen[(eid, inst)] = src
            rows.append((eid, inst, src, j))
    rows.sort(key=lambda r: (r[0], r[1]))
    if not rows:
        raise InputError(f"none of the {len(files)} {kind} inputs could be read",
                         path=", ".join(str(p) for p in inputs)[:300],
                         found="; ".join(f.one_line() for f in failures[:3]))
    x = np.empty((len(rows), *shape), dtype=STORAGE_DTYPE)
    hd5_labels = np.full(len(rows), np.nan)
    for n, (_eid, _inst, src, j) in enumerate(rows):
        x[n] = results[src][j][2]
        hd5_labels[n] = results[src][j][3]
        results[src][j] = None  # free as we go: peak memory stays ~ one copy
    eids = np.array([r[0] for r in rows], dtype=np.int64)
    instances = np.array([r[1] for r in rows], dtype=np.int64)
    if table is not None:
        y, source = table.lookup_many(eids, instances), f"{table.path}[{table.column}]"
    elif np.isfinite(hd5_labels).any():
        what = "22402_Liver-fat-percentage_<instance>_0 or liver_fat" if hd5_label == AUTO_LABEL else hd5_label
        y, source = hd5_labels, f"hd5 /{LABEL_GROUP}/{what}"
    else:
        y, source = hd5_labels, None
    log.info("%s data: %d samples (%d labelled), %d failures, %.0f MB", kind, len(rows),
             int(np.isfinite(y).sum()), len(failures), x.nbytes / 2**20)
    return LiverData(x, eids, instances, tuple(r[2] for r in rows), y, kind, tuple(failures), source)


# --------------------------------------------------------------------------- caching
def save_liver_data(data: LiverData, path: str | PathLike[str]) -> Path:
    """Write a :class:`LiverData` to one uncompressed ``.npz`` (no pickles), atomically."""
    path = Path(path)
    meta = {
        "kind": data.kind,
        "label_source": data.label_source,
        "sources": list(data.sources),
        "failures": [f.__dict__ for f in data.failures],
    }
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=data.x, eids=data.eids, instances=data.instances, labels=data.labels,
                     meta=np.array(json.dumps(meta)))
    return path


def load_liver_data(path: str | PathLike[str]) -> LiverData:
    """Read a file written by :func:`save_liver_data` (``allow_pickle=False``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return LiverData(
                x=z["x"], eids=z["eids"], instances=z["instances"], sources=tuple(meta["sources"]),
                labels=z["labels"], kind=meta["kind"], failures=tuple(Failure(**f) for f in meta["failures"]),
                label_source=meta["label_source"],
            )
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"not a liver data file: {exc}", path=path) from exc
