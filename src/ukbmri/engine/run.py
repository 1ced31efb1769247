"""The main job: inputs -> cohort -> plan -> store -> tables, manifest and report.

Layout of ``OUT``::

    OUT/participants.csv, .parquet   one row per (eid, instance), sorted; a pure function of the store
    OUT/failures.csv                 the ledger: discovery anomalies and every failed job (or part of one)
    OUT/run.json                     command, versions, settings fingerprints, counts, times
    OUT/report.md, report.html       what went in, out and wrong
    OUT/store/results.jsonl          one durable record per finished (stage, visit)
    OUT/cache/                       MIMIR 2D images (body), OUT/liver_roi/ ROI masks (liver)
    OUT/.ukbmri.lock                 while a run uses the folder

Re-running the same command resumes: a stored result is reused when its
fingerprint (inputs' size and mtime, stage version, weights fingerprints,
options) matches; failures that say nothing about the input (a worker died,
memory, I/O) are retried.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ukbmri.engine.cohort import Cohort, Visit, read_eids
from ukbmri.engine.execute import Batch, run_batch, threads_per_worker
from ukbmri.engine.ledger import Failure
from ukbmri.engine.lock import RunLock
from ukbmri.engine.progress import ProgressEvent
from ukbmri.engine.stage import Job, JobResult, Stage, job_fingerprint, settings_fingerprint
from ukbmri.engine.store import Record, ResultStore, check_writable
from ukbmri.engine.tables import failures_frame, participants_frame, schema, write_table
from ukbmri.errors import InputError

__all__ = ["RunOptions", "RunResult", "run", "EXIT_OK", "EXIT_FAILURES", "EXIT_USAGE", "EXIT_IO", "EXIT_INTERRUPTED"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_IO, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
STAGES = ("body", "liver")


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a run besides its inputs (see ``ukbmri run --help``)."""

    modules: tuple[Path, ...] | None = None  #: body modules; None: the bundled demonstration module
    liver_weights: tuple[Path, ...] | None = None  #: liver weights; None: the bundled demonstration weights
    liver_networks: bool = True
    liver_roi: str = "localiser"  #: physics liver region: "localiser" (network proposes) or "rules"
    allow_demo_weights: bool = False
    stages: tuple[str, ...] = STAGES
    device: str = "cpu"
    precision: str | None = None  #: None: ukbmri.infer.DEFAULT_PRECISION
    workers: int = 1
    backend: str = "local"
    scheduler: str | None = None
    cache_dir: Path | None = None
    nifti_dir: Path | None = None
    png_dir: Path | None = None
    exclusions: Path | None = None
    include_excluded: bool = False
    retry_failed: bool = False
    truth: Path | None = None
    report: bool = True
    batch_size: int | None = None  #: jobs per worker task (body); None: the stage's default


@dataclass
class RunResult:
    table: pd.DataFrame
    failures: pd.DataFrame
    out: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURES if len(self.failures) else EXIT_OK


# ---------------------------------------------------------------------------- stages
def default_body_modules() -> list[Path]:
    """The bundled demonstration body module(s) (phantom-trained)."""
    from importlib import resources

    root = Path(str(resources.files("ukbmri") / "data" / "modules"))
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "snapshot.pth.tar").is_file())


def build_stages(opts: RunOptions) -> list[Stage]:
    """The stages asked for, with their weights fingerprinted (every stage's columns are in the
    table even when no visit has its inputs, so shards of one cohort have one schema)."""
    from ukbmri.engine.stages.body import BodyStage, ModuleRef
    from ukbmri.engine.stages.liver import LiverStage, NetRef

    stages: list[Stage] = []
    device = opts.device  # "auto" is resolved where the networks load (no torch import here)
    if "body" in opts.stages:
        from ukbmri.errors import ModuleError

        folders = list(opts.modules) if opts.modules is not None else default_body_modules()
        for f in folders:
            if not Path(f).is_dir():
                raise ModuleError("module folder not found", path=f, expected="a MIMIR or ukbmri module folder")
        refs = tuple(ModuleRef.of(f) for f in folders)
        if opts.modules is None:
            refs = tuple(replace(r, demonstration=True) for r in refs)
        stage = BodyStage(refs, opts.allow_demo_weights, device, _precision(opts), opts.cache_dir,
                          opts.nifti_dir, opts.png_dir)
        stages.append(replace(stage, batch_size=opts.batch_size) if opts.batch_size else stage)
    if "liver" in opts.stages:
        teacher = student = None
        if opts.liver_networks:
            for kind, path in liver_weight_paths(opts.liver_weights).items():
                ref = NetRef.of(kind, path)
                if opts.liver_weights is None:
                    ref = replace(ref, demonstration=True)
                teacher, student = (ref, student) if kind == "teacher" else (teacher, ref)
        stages.append(LiverStage(teacher, student, opts.allow_demo_weights, device,
                                 localiser=opts.liver_roi == "localiser"))
    return stages


def liver_weight_paths(paths: Sequence[Path] | None) -> dict[str, Path]:
    """kind -> weights path from ``--liver-weights`` (or the bundled demonstration weights)."""
    from ukbmri.infer import liver_weights

    if paths is None:
        root = liver_weights.default_liver_weights()
        if root is None:
            log.warning("no bundled liver weights found: only the physics fit will run")
            return {}
        paths = [root]
    return dict(liver_weights.resolve_liver_weights(list(paths)))


def _precision(opts: RunOptions) -> str:
    if opts.precision is not None:
        return opts.precision
    from ukbmri.infer import DEFAULT_PRECISION

    return DEFAULT_PRECISION


# ---------------------------------------------------------------------------- exclusions
def read_exclusions(path: Path) -> dict[tuple[int, int], list[tuple[int | None, str]]]:
    """(eid, instance) -> [(field or None, reason)] from a CSV with eid, instance[, field][, reason]."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError("cannot read the exclusion list", path=path, found=type(exc).__name__) from exc
    cols = {c.strip().lower(): c for c in df.columns}
    if "eid" not in cols:
        raise InputError("the exclusion list needs an eid column", path=path,
                         expected="columns eid, instance[, field][, reason]", found=list(df.columns)[:6])
    out: dict[tuple[int, int], list[tuple[int | None, str]]] = defaultdict(list)
    for i, row in df.iterrows():
        try:
            eid = int(row[cols["eid"]])
            inst = int(row[cols["instance"]]) if "instance" in cols and row[cols["instance"]] != "" else 2
            fld = int(row[cols["field"]]) if "field" in cols and row[cols["field"]] != "" else None
        except ValueError:
            raise InputError("not a number", path=path, member=f"row {i + 2}",
                             expected="integer eid, instance and field", found=dict(row)) from None
        reason = str(row[cols["reason"]]).strip() if "reason" in cols else ""
        out[(eid, inst)].append((fld, reason or "listed in " + Path(path).name))
    return dict(out)


# ---------------------------------------------------------------------------- the run
def run(
    inputs: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    inputs_from: str | os.PathLike[str] | None = None,
    eids: str | os.PathLike[str] | Iterable[int] | None = None,
    shard: tuple[int, int] | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    command: str | None = None,
    require_inputs: bool = False,
    custom_stages: Sequence[Stage] | None = None,
    **options: Any,
) -> RunResult:
    """Run every stage on every visit found in ``inputs``; returns the tables (see the module docstring).

    ``options`` are :class:`RunOptions` fields (``modules=[...]``, ``workers=2``, ...);
    ``custom_stages`` replaces the built-in stages by any objects following the
    :class:`~ukbmri.engine.stage.Stage` protocol (new phenotypes, benchmarks).
    Raises :class:`~ukbmri.errors.UkbmriError` for usage errors (bad module folder,
    output in use) and :class:`KeyboardInterrupt` when interrupted (the store keeps
    every finished job; a re-run resumes).
    """
    for key in ("modules", "liver_weights"):  # one path or many, as tuples of Paths
        v = options.get(key)
        if v is not None:
            options[key] = (Path(v),) if isinstance(v, (str, os.PathLike)) else tuple(map(Path, v))
    opts = RunOptions(**options)
    from ukbmri.engine.runner import start_fork_server

    start_fork_server(opts.workers, opts.backend)  # the workers' imports overlap discovery and planning
    out = Path(out)
    inputs = [Path(p) for p in inputs]
    check_writable(out)
    started = datetime.now(timezone.utc)
    clock = {"t0": time.perf_counter()}
    with RunLock(out, command=command):
        eid_set = read_eids(eids) if isinstance(eids, (str, os.PathLike)) else (None if eids is None else set(eids))
        cohort = Cohort.discover(inputs, inputs_from=inputs_from, eids=eid_set)
        if require_inputs and not cohort.visits and not cohort.anomalies:
            raise InputError("no UK Biobank zips of fields 20201, 20203 or 20254 found in the inputs",
                             path=", ".join(map(str, inputs)) or inputs_from)
        if shard is not None:
            cohort = cohort.shard(*shard)
        exclusions = read_exclusions(opts.exclusions) if opts.exclusions else {}
        visits, excluded = _apply_exclusions(cohort.visits, exclusions, opts.include_excluded)
        stages = list(custom_stages) if custom_stages is not None else build_stages(opts)
        plan = _plan(stages, visits)
        with ResultStore(out / "store") as store:
            clock["start"] = time.perf_counter()
            result = _execute(plan, stages, store, out, opts, progress, cohort, excluded, started, shard, command,
                              clock)
            store.compact()
    return result


@dataclass(frozen=True)
class _Planned:
    stage: Stage
    settings_fp: str
    jobs: list[Job]


def _plan(stages: Sequence[Stage], visits: Sequence[Visit]) -> list[_Planned]:
    plan = []
    for stage in stages:
        sfp = settings_fingerprint(stage)
        jobs = []
        for v in visits:
            inputs = stage.plan_inputs(v)
            if not inputs:
                continue
            ident = {f: v.inputs[f].identity for f in inputs}
            jobs.append(Job(stage.name, v.eid, v.instance, inputs, job_fingerprint(sfp, ident)))
        plan.append(_Planned(stage, sfp, jobs))
    return plan


def _apply_exclusions(visits, exclusions, include: bool) -> tuple[list[Visit], dict[tuple[int, int], str]]:
    """Visits to run, and (eid, instance) -> reason for every excluded visit (or field)."""
    reasons: dict[tuple[int, int], str] = {}
    keep = []
    for v in visits:
        entries = exclusions.get(v.key)
        if not entries:
            keep.append(v)
            continue
        reasons[v.key] = "; ".join(r if f is None else f"field {f}: {r}" for f, r in entries)
        if include:
            keep.append(v)
            continue
        if any(f is None for f, _ in entries):
            continue
        dropped = {f for f, _ in entries}
        rest = {f: i for f, i in v.inputs.items() if f not in dropped}
        if rest:
            keep.append(Visit(v.eid, v.instance, rest))
    return keep, reasons


def _execute(plan, stages, store: ResultStore, out: Path, opts: RunOptions, progress, cohort, excluded,
             started, shard, command, clock: dict[str, float]) -> RunResult:
    from ukbmri.engine.runner import run_tasks

    total = sum(len(p.jobs) for p in plan)
    counts = {p.stage.name: Counter() for p in plan}
    todo: list[tuple[Stage, list[Job]]] = []
    for p in plan:
        pending = []
        for job in p.jobs:
            rec = store.get(job.stage, job.eid, job.instance)
            if rec is not None and rec.fingerprint == job.fingerprint and not rec.retryable \
                    and not (opts.retry_failed and rec.failures):
                counts[p.stage.name]["reused"] += 1
                counts[p.stage.name]["failed"] += rec.status == "failed"
            else:
                pending.append(job)
        todo.append((p.stage, pending))
    state = {"done": sum(c["reused"] for c in counts.values()), "failed": sum(c["failed"] for c in counts.values()),
             "reused": sum(c["reused"] for c in counts.values())}

    def emit(stage: str = "") -> None:
        if progress is not None:
            progress(ProgressEvent(total, state["done"], state["failed"], state["reused"], stage))

    emit()
    threads = threads_per_worker(opts.workers) if opts.workers > 1 or opts.backend == "dask" else None
    batches = [Batch(stage, tuple(jobs[i:i + stage.batch_size]), out, threads)
               for stage, jobs in todo for i in range(0, len(jobs), stage.batch_size)]
    by_label = {b.label: b for b in batches}
    interrupted = False
    try:
        for outcome in run_tasks(run_batch, batches, stage="run", label=lambda b: b.label, workers=opts.workers,
                                 backend=opts.backend, scheduler=opts.scheduler, scratch=str(out / "dask-scratch")):
            pairs = _pair(by_label[outcome.input], outcome)
            store.add_many([Record.of(j.stage, j.eid, j.instance, j.fingerprint, r) for j, r in pairs])
            for job, res in pairs:
                for w in res.warnings:
                    log.warning("%s: %s", Path(job.label).name, w)
                counts[job.stage]["computed"] += 1
                counts[job.stage]["failed"] += not res.ok
                state["done"] += 1
                state["failed"] += not res.ok
                emit(job.stage)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        clock["jobs"] = time.perf_counter()
        result = _finish(plan, stages, store, out, opts, cohort, excluded, counts, started, shard, command,
                         complete=not interrupted, clock=clock)
    return result


def _pair(batch: Batch, outcome) -> list[tuple[Job, JobResult]]:
    """(job, result) for each job of the batch an outcome belongs to."""
    if outcome.ok:
        return list(zip(batch.jobs, outcome.value))
    f = outcome.failure
    out = []
    for j in batch.jobs:
        fld = min(j.inputs)
        failure = Failure(str(j.inputs[fld]), j.stage, f.error, f.message, j.eid, j.instance, fld)
        out.append((j, JobResult(None, (f"{j.stage}_failed",), (failure,))))
    return out


def _finish(plan, stages, store, out, opts, cohort, excluded, counts, started, shard, command, *,
            complete: bool, clock: dict[str, float]) -> RunResult:
    from ukbmri import __version__

    rows: dict[tuple[int, int], dict] = {}
    flags: dict[tuple[int, int], set[str]] = defaultdict(set)
    failures: list[Failure] = list(cohort.anomalies)
    for p in plan:
        for job in p.jobs:
            cells = rows.setdefault(job.key, {})
            rec = store.get(job.stage, job.eid, job.instance)
            if rec is None or rec.fingerprint != job.fingerprint:
                flags[job.key].add(f"{job.stage}_not_run")
                continue
            if rec.cells:
                cells.update(rec.cells)
            flags[job.key].update(rec.flags)
            failures.extend(rec.failures)
    for key, reason in excluded.items():
        rows.setdefault(key, {})["exclusion_reason"] = reason
        flags[key].add("excluded")
    for key, cells in rows.items():
        cells["qc_flags"] = ";".join(sorted(flags[key]))
        cells["ukbmri_version"] = __version__
    columns = schema(s.columns() for s in stages)
    table = participants_frame(rows, columns)
    fails = failures_frame(failures)
    write_table(table, out / "participants")
    write_table(fails, out / "failures", formats=("csv",))
    manifest = _manifest(plan, opts, cohort, excluded, counts, started, shard, command, complete, table, fails)
    # where the wall time went (seconds): discovery and planning, the jobs (worker start-up
    # included), the tables, the report (rewritten into run.json once the report is done)
    manifest["seconds"] = {"start": clock["start"] - clock["t0"], "jobs": clock["jobs"] - clock["start"],
                           "tables": time.perf_counter() - clock["jobs"]}
    from ukbmri.io.atomic import write_text
    import json

    def save() -> None:
        manifest["seconds"] = {k: round(v, 3) for k, v in manifest["seconds"].items()}
        write_text(out / "run.json", json.dumps(manifest, indent=1, sort_keys=True, default=str))

    save()
    notes = _notes(opts, table, plan)
    if opts.report and complete:
        t = time.perf_counter()
        _report(out, table, fails, opts, notes, manifest)
        manifest["seconds"]["report"] = time.perf_counter() - t
        save()
    return RunResult(table, fails, out, manifest, notes)


def _notes(opts: RunOptions, table: pd.DataFrame, plan) -> list[str]:
    notes = []
    n_demo = int(table["qc_flags"].fillna("").str.contains("demo_weights_not_applied").sum()) if len(table) else 0
    if n_demo:
        notes.append(f"{n_demo} visit(s) got no network predictions: the bundled weights are demonstration weights "
                     "trained on synthetic phantoms and run only on synthetic (ukbmri synth) scans. Pass --modules "
                     "and --liver-weights with real weights (or --allow-demo-weights to try them anyway).")
    demo_used = any(getattr(s.stage, "modules", None) and opts.modules is None for s in plan) or \
        any(getattr(s.stage, "teacher", None) and opts.liver_weights is None for s in plan)
    if demo_used and len(table) > n_demo:
        notes.append("Network predictions come from DEMONSTRATION weights trained on synthetic phantoms: "
                     "not for clinical or UK Biobank use.")
    return notes


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("ukbmri", "torch", "numpy", "pydicom", "pandas", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _manifest(plan, opts, cohort, excluded, counts, started, shard, command, complete, table, fails) -> dict:
    return {
        "command": command if command is not None else " ".join(sys.argv),
        "versions": _versions(),
        "device": {p.stage.name: getattr(p.stage, "device", None) for p in plan},
        "workers": opts.workers, "backend": opts.backend,
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": complete,
        "settings": {p.stage.name: {"fingerprint": p.settings_fp, "version": p.stage.version,
                                    "settings": p.stage.settings()} for p in plan},
        "cohort": {"visits": len(cohort.visits), "anomalies": len(cohort.anomalies),
                   "ignored_zips_by_field": {str(k): v for k, v in sorted(cohort.ignored.items())},
                   "left_out_by_filter": cohort.filtered_out, "excluded": len(excluded)},
        "stages": {name: {"planned": next(len(p.jobs) for p in plan if p.stage.name == name),
                          "reused": c["reused"], "computed": c["computed"], "failed": c["failed"]}
                   for name, c in counts.items()},
        "rows": len(table), "failures": len(fails),
    }


def _report(out: Path, table, fails, opts: RunOptions, notes, manifest) -> None:
    from ukbmri.engine.report import TRUTH_PAIRS, compare_with_truth
    from ukbmri.report import ReportData, write_reports

    truth = None
    if opts.truth is not None and Path(opts.truth).is_file():
        truth = pd.read_csv(opts.truth)
        write_table(compare_with_truth(table, truth, TRUTH_PAIRS), out / "truth_comparison", formats=("csv",))
    cache = Path(opts.cache_dir) if opts.cache_dir else out / "cache"
    images = dict(zip(zip(table["eid"], table["instance"]), table["body_image"])) if "body_image" in table else {}

    def body_image(eid: int, instance: int) -> Path | None:
        stem = images.get((eid, instance))
        p = cache / f"{stem}.npy" if isinstance(stem, str) else None
        return p if p is not None and p.is_file() else None

    def liver_rois(eid: int, instance: int) -> dict[str, Path]:
        rois = {}
        for fld in (20203, 20254):
            stem = out / "liver_roi" / f"{eid}_{instance}_{fld}"
            if stem.with_suffix(".png").is_file():
                rois[str(fld)] = stem
        return rois

    write_reports(out, ReportData(table=table, failures=fails, body_image=body_image, liver_rois=liver_rois,
                                  truth=truth, truth_pairs=TRUTH_PAIRS, notes=tuple(notes), run_info=manifest),
                  workers=opts.workers if opts.backend == "local" else 1)
