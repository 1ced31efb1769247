"""The body pipeline over many participants: preprocess into the cache, run modules, tables.

Layout of an output folder ``OUT`` of :func:`infer_body`::

    OUT/<module folder name>/predictions.csv   MIMIR's layout (name, <T>_mean_in_<unit>, ...)
    OUT/<module folder name>/provenance.json   module id, weights sha256, engine version
    OUT/body.csv, OUT/body.parquet             one row per image: mean, variance, 95 % interval
    OUT/failures.csv                           the ledger (preprocessing and module failures)

Everything is resumable: cached images are reused, predictions already in a
module's ``predictions.csv`` (made by the same module files and precision) are not recomputed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ukbmri import __version__
from ukbmri.engine.cache import ImageCache
from ukbmri.engine.inputs import find_files, find_zips
from ukbmri.engine.jobs import BodyJob, body_outputs_present, preprocess_body_job
from ukbmri.engine.ledger import Failure, Ledger, failure_from_exception
from ukbmri.engine.runner import Outcome, run_tasks
from ukbmri.engine.tables import upsert, write_table
from ukbmri.io.atomic import atomic_path, write_text
from ukbmri.types import ParticipantKey

__all__ = ["PreprocessSummary", "preprocess_body_many", "infer_body", "BodyRun", "unit_slug", "split_inputs"]

log = logging.getLogger(__name__)

STAGE_PREPROCESS = "preprocess-body"
STAGE_MODULE = "load-module"
STAGE_INFER = "infer-body"


@dataclass
class PreprocessSummary:
    done: list[str] = field(default_factory=list)  #: stems computed in this run
    cached: list[str] = field(default_factory=list)  #: stems already valid in the cache
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok_stems(self) -> list[str]:
        return sorted(self.done + self.cached)


def preprocess_body_many(
    zips: Sequence[Path],
    cache_dir: Path,
    *,
    ledger: Ledger,
    nifti_dir: Path | None = None,
    png_dir: Path | None = None,
    workers: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> PreprocessSummary:
    """Preprocess every 20201 zip not yet (validly) cached; failures go to ``ledger``."""
    summary = PreprocessSummary()
    todo = []
    for z in zips:
        job = BodyJob(Path(z), Path(cache_dir), nifti_dir, png_dir)
        if body_outputs_present(job):
            summary.cached.append(job.zip_path.name.split(".", 1)[0])
            ledger.succeeded(str(z), STAGE_PREPROCESS)
            if progress is not None:
                progress(Outcome(input=str(z), value=None))
        else:
            todo.append(job)
    for out in run_tasks(
        preprocess_body_job,
        todo,
        stage=STAGE_PREPROCESS,
        label=lambda j: str(j.zip_path),
        workers=workers,
        backend=backend,
        scheduler=scheduler,
        progress=progress,
    ):
        if out.ok:
            summary.done.append(out.value)
            ledger.succeeded(out.input, STAGE_PREPROCESS)
        else:
            summary.failures.append(out.failure)
            ledger.record(out.failure)
    ledger.save()
    return summary


def split_inputs(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
    """Separate 20201 zips from cache folders of MIMIR ``.npy`` images.

    A folder counts as a cache when it holds ``.npy`` files and no zips.
    """
    zips: list[Path] = []
    caches: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not find_files([p], ".zip") and any(p.glob("*.npy")):
            caches.append(p)
        else:
            zips.extend(find_zips([p], fields=[20201]))
    return zips, caches


_UNIT_SLUGS = {"kg": "kg", "cm": "cm", "l": "l", "%": "percent", "years": "years", "bpm": "bpm", "1/s": "per_s",
               "g": "g", "(male = 1)": "male", "l/l": "l_per_l", "kg/l": "kg_per_l", "l/m2": "l_per_m2", "ms": "ms"}


def unit_slug(unit: str) -> str:
    """A unit as a column-name suffix: ``L`` -> ``l``, ``%`` -> ``percent``, ``(male = 1)`` -> ``male``."""
    u = unit.strip().lower()
    if u in _UNIT_SLUGS:
        return _UNIT_SLUGS[u]
    return "".join(c if c.isalnum() else "_" for c in u).strip("_")


def _base_column(name: str, unit: str) -> str:
    slug = unit_slug(unit)
    return name if not slug or name.lower().endswith(f"_{slug}") else f"{name}_{slug}"


@dataclass
class BodyRun:
    table: pd.DataFrame
    preprocess: PreprocessSummary
    module_failures: list[Failure]
    infer_failures: list[Failure]
    out: Path

    @property
    def failures(self) -> list[Failure]:
        return self.preprocess.failures + self.module_failures + self.infer_failures


def _load_cached_images(cache_dirs: Sequence[Path], stems: Sequence[str]) -> dict[str, np.ndarray]:
    caches = [ImageCache(d) for d in cache_dirs]
    out = {}
    for stem in stems:
        for c in caches:
            if c.is_valid_image(stem):
                out[stem] = c.load(stem)
                break
    return out


def _module_predictions(
    module, stems, cache_dirs, out_dir, *, batch_size, device, precision, ledger, chunk: int = 512, progress=None
) -> pd.DataFrame:
    """Predictions of one module for ``stems`` (MIMIR layout), resuming from its predictions.csv."""
    from ukbmri.infer.body import mimir_predictions_frame, predict_images

    folder = out_dir / module.folder.name
    pred_csv = folder / "predictions.csv"
    prov_path = folder / "provenance.json"
    old = None
    if pred_csv.is_file() and prov_path.is_file():
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
        if prov.get("module_fingerprint") == module.fingerprint and prov.get("precision") == precision:
            old = pd.read_csv(pred_csv, dtype={"name": str})
        else:
            log.info("%s: module files or precision changed since the last run, recomputing all predictions",
                     module.name)
    done = set(old["name"]) if old is not None else set()
    todo = [s for s in stems if s not in done]
    folder.mkdir(parents=True, exist_ok=True)
    merged = old
    if merged is None:
        empty = np.zeros((0, len(module.targets)))
        merged = mimir_predictions_frame([], module, empty, empty)
    # chunks bound memory (0.2 MB per image) and let a killed run resume from the last chunk
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        images = _load_cached_images(cache_dirs, part)
        for s in part:
            if s not in images:
                ledger.record(failure_from_exception(s, STAGE_INFER, FileNotFoundError(f"no cached image for {s}")))
        names = [s for s in part if s in images]
        if not names:
            continue
        mean, var = predict_images(
            module, np.stack([images[n] for n in names]), batch_size=batch_size, device=device, precision=precision
        )
        merged = upsert(merged, mimir_predictions_frame(names, module, mean, var), ["name"])
        _write_predictions(merged, pred_csv, prov_path, module, precision)
        if progress is not None:
            progress(module.name, len(part), len(todo))
    if not pred_csv.is_file() or not todo:
        _write_predictions(merged, pred_csv, prov_path, module, precision)
    return merged


def _write_predictions(frame, pred_csv, prov_path, module, precision) -> None:
    # predictions first, provenance second: if a run dies in between, the provenance no
    # longer matches and the next run recomputes instead of trusting mixed predictions
    with atomic_path(pred_csv) as tmp:
        frame.to_csv(tmp, index=False)
    write_text(
        prov_path,
        json.dumps(
            {"module": module.name, "weights_sha256": module.weights_sha256,
             "module_fingerprint": module.fingerprint, "backbone": module.backbone,
             "precision": precision, "ukbmri": __version__},
            indent=1,
        ),
    )


def _participant_columns(stems: Sequence[str]) -> pd.DataFrame:
    rows = []
    for s in stems:
        key = ParticipantKey.from_path(s)
        rows.append({"name": s, "eid": key.eid if key else pd.NA, "instance": key.instance if key else pd.NA})
    df = pd.DataFrame(rows, columns=["name", "eid", "instance"])
    return df.astype({"eid": "Int64", "instance": "Int64"})


def body_table(modules, frames: dict[str, pd.DataFrame], stems: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """One row per image: per target mean, variance and the ``level`` normal interval, plus provenance."""
    from ukbmri.infer.postprocess import normal_interval

    table = _participant_columns(stems)
    pct = int(round(level * 100))
    bases: dict[str, int] = {}
    for m in modules:
        for t in m.targets:
            b = _base_column(t.name, t.unit)
            bases[b] = bases.get(b, 0) + 1
    for m in modules:
        pred = frames[m.name].set_index("name").reindex(table["name"])
        cols: dict[str, object] = {}
        for t in m.targets:
            mcol, vcol = f"{t.name}_mean_in_{t.unit}", f"{t.name}_variance_in_{t.unit}"
            base = _base_column(t.name, t.unit)
            if bases[base] > 1:  # two modules predict the same target: keep both, named by module
                base = f"{m.name}__{base}"
            mean = pred[mcol].to_numpy(dtype=float)
            var = pred[vcol].to_numpy(dtype=float)
            lo, hi = normal_interval(mean, var, level)
            cols[base] = mean
            cols[f"{base}_variance"] = var
            cols[f"{base}_ci{pct}_low"] = lo
            cols[f"{base}_ci{pct}_high"] = hi
        cols[f"{m.name}__module"] = m.name
        cols[f"{m.name}__weights_sha256"] = m.weights_sha256
        table = pd.concat([table, pd.DataFrame(cols, index=table.index)], axis=1)
    table["ukbmri_version"] = __version__
    return table


def infer_body(
    inputs: Sequence[str | os.PathLike[str]],
    module_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    precision: str = "fp32",
    workers: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
    module_progress: Callable[[str, int, int], None] | None = None,
    level: float = 0.95,
) -> BodyRun:
    """Preprocess what is not cached, run every module, write the tables (see module docstring).

    ``progress`` is called per preprocessed zip, ``module_progress(module, n, total)`` after
    each chunk of ``n`` images a module predicted (``total``: images it predicts in this run).
    """
    from ukbmri.errors import ModuleError
    from ukbmri.modules import load_module

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "failures.csv")
    zips, input_caches = split_inputs(inputs)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    pre = preprocess_body_many(
        zips, cache, ledger=ledger, workers=workers, backend=backend, scheduler=scheduler, progress=progress
    )
    cache_dirs = [cache, *input_caches]
    stems = sorted(set(pre.ok_stems) | {s for c in input_caches for s in ImageCache(c).stems()})

    modules, module_failures = [], []
    for d in module_dirs:
        try:
            modules.append(load_module(d, device=device))
            ledger.succeeded(str(d), STAGE_MODULE)
        except ModuleError as exc:
            log.warning("skipping module %s: %s", d, exc)
            f = failure_from_exception(str(d), STAGE_MODULE, exc)
            module_failures.append(f)
            ledger.record(f)
    frames = {}
    for m in list(modules):
        try:
            frames[m.name] = _module_predictions(
                m, stems, cache_dirs, out, batch_size=batch_size, device=device, precision=precision,
                ledger=ledger, progress=module_progress,
            )
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory on the device: the other modules go on
            log.warning("module %s failed: %s", m.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            f = failure_from_exception(str(m.folder), STAGE_INFER, exc)
            module_failures.append(f)
            ledger.record(f)
            modules.remove(m)
    table = body_table(modules, frames, stems, level) if modules else _participant_columns(stems)
    flags = {s: next((ImageCache(c).qc_flags(s) for c in cache_dirs if ImageCache(c).is_valid_image(s)), "") for s in stems}
    table.insert(3, "body_qc_flags", table["name"].map(flags).fillna(""))
    write_table(table, out / "body")
    ledger.save()
    infer_failures = ledger.for_stage(STAGE_INFER)
    return BodyRun(table=table, preprocess=pre, module_failures=module_failures, infer_failures=infer_failures, out=out)
