"""The liver pipeline over many participants: physics fit, teacher, student, QC, one table.

Per participant and visit (``eid``, ``instance``) with a 20203 and/or a 20254 zip:

* **physics**: multi-peak fat + R2* magnitude fit of the GRE echoes (or of the
  IDEAL echoes, dynamics averaged, when only 20254 is there), an automatic
  liver ROI, and the median PDFF and R2* in it. Needs no weights.
* **teacher** (20203) and **student** (20254): the ml4h networks, with a
  variance and an interval when the weights have a mean-variance head.
* **QC flags**: disagreement between methods beyond a margin, a small ROI,
  high R2*, a modality that failed.

A failure of one method is a ledger row; the participant's row keeps what the
other methods produced (empty cells, never zeros).

Output: ``OUT/liver.csv`` + ``OUT/liver.parquet``, ``OUT/failures.csv``,
``OUT/liver_roi/<eid>_<instance>.png|.npy`` (the ROI masks).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ukbmri import __version__
from ukbmri.engine.inputs import find_zips, group_by_participant
from ukbmri.engine.ledger import Failure, Ledger, failure_from_exception
from ukbmri.engine.runner import Outcome, run_tasks
from ukbmri.engine.tables import read_table, upsert, write_table

__all__ = ["LiverJob", "LiverRun", "LIVER_COLUMNS", "liver_job", "infer_liver", "qc_flags"]

log = logging.getLogger(__name__)

LIVER_FIELDS = (20203, 20254)

LIVER_COLUMNS = [
    "eid",
    "instance",
    "liver_fat_physics_percent",
    "liver_r2star_physics_per_s",
    "liver_roi_voxels",
    "physics_source_field",
    "liver_fat_teacher_percent",
    "liver_fat_teacher_variance",
    "liver_fat_teacher_ci95_low",
    "liver_fat_teacher_ci95_high",
    "liver_fat_student_percent",
    "liver_fat_student_variance",
    "liver_fat_student_ci95_low",
    "liver_fat_student_ci95_high",
    "qc_flags",
    "gre_zip",
    "ideal_zip",
    "teacher_weights_sha256",
    "student_weights_sha256",
    "ukbmri_version",
]


_INT_COLUMNS = {"eid": "Int64", "instance": "Int64", "liver_roi_voxels": "Int64", "physics_source_field": "Int64"}


@dataclass(frozen=True)
class QcRules:
    """Thresholds for the QC flags (percentage points, voxels, 1/s)."""

    margin_pp: float = 2.0
    min_roi_voxels: int = 100
    high_r2star_per_s: float = 100.0


@dataclass(frozen=True)
class LiverJob:
    eid: int
    instance: int
    gre_zip: Path | None
    ideal_zip: Path | None
    teacher_dir: Path | None = None
    student_dir: Path | None = None
    roi_dir: Path | None = None
    device: str = "cpu"
    qc: QcRules = field(default_factory=QcRules)

    @property
    def label(self) -> str:
        return str(self.gre_zip or self.ideal_zip)


def qc_flags(row: dict, rules: QcRules, failed: Sequence[str] = ()) -> str:
    """Semicolon-separated flags for one row (empty string when all is well)."""
    flags = [f"{m}_failed" for m in failed]
    phys = row.get("liver_fat_physics_percent")
    for name in ("teacher", "student"):
        net = row.get(f"liver_fat_{name}_percent")
        if _finite(phys) and _finite(net) and abs(net - phys) > rules.margin_pp:
            flags.append(f"physics_vs_{name}_disagree")
    t, s = row.get("liver_fat_teacher_percent"), row.get("liver_fat_student_percent")
    if _finite(t) and _finite(s) and abs(t - s) > rules.margin_pp:
        flags.append("teacher_vs_student_disagree")
    n = row.get("liver_roi_voxels")
    if _finite(n) and n < rules.min_roi_voxels:
        flags.append("small_liver_roi")
    r2 = row.get("liver_r2star_physics_per_s")
    if _finite(r2) and r2 > rules.high_r2star_per_s:
        flags.append("high_r2star")
    return ";".join(flags)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating, np.integer)) and bool(np.isfinite(x))


def _physics(z, roi_path_stem: Path | None) -> dict:
    """Physics liver PDFF / R2* of one liver zip (20203 preferred, 20254 otherwise)."""
    from ukbmri.physics.liver import liver_fat_from_zip

    res = liver_fat_from_zip(z)
    if roi_path_stem is not None:
        res.save_mask(roi_path_stem)
    return {
        "liver_fat_physics_percent": res.pdff_percent,
        "liver_r2star_physics_per_s": res.r2star_per_s,
        "liver_roi_voxels": res.n_voxels,
        "physics_source_field": z.field,
    }


def _network(z, folder: Path, kind: str, device: str) -> dict:
    from ukbmri.infer.liver_nets import load_liver_net, predict_liver
    from ukbmri.models.ml4h_liver import liver_fat_interval
    from ukbmri.preprocess.liver_tensors import gre_tensor, ideal_tensor

    net = load_liver_net(folder, device=device)
    tensor = gre_tensor(z) if kind == "teacher" else ideal_tensor(z)
    mean, var = predict_liver(net, tensor[None], device=device)
    out = {f"liver_fat_{kind}_percent": float(mean[0]), f"{kind}_weights_sha256": net.weights_sha256}
    if var is not None:
        lo, hi = liver_fat_interval(mean, var, 0.95)
        out.update(
            {
                f"liver_fat_{kind}_variance": float(var[0]),
                f"liver_fat_{kind}_ci95_low": float(np.asarray(lo).reshape(-1)[0]),
                f"liver_fat_{kind}_ci95_high": float(np.asarray(hi).reshape(-1)[0]),
            }
        )
    return out


def liver_job(job: LiverJob) -> tuple[dict, list[Failure]]:
    """Everything for one participant visit. Never raises for bad input: failures are returned."""
    from ukbmri.io import read_zip

    row: dict = {"eid": job.eid, "instance": job.instance, "gre_zip": _name(job.gre_zip), "ideal_zip": _name(job.ideal_zip)}
    failures: list[Failure] = []
    failed: list[str] = []
    zips = {}
    for fld, path in ((20203, job.gre_zip), (20254, job.ideal_zip)):
        if path is None:
            continue
        try:
            zips[fld] = read_zip(path, expect_field=fld)
        except Exception as exc:  # noqa: BLE001 - recorded, the other modality goes on
            failures.append(failure_from_exception(path, f"read-{fld}", exc))
            failed.append("gre" if fld == 20203 else "ideal")

    roi_stem = job.roi_dir / f"{job.eid}_{job.instance}" if job.roi_dir is not None else None
    for fld in LIVER_FIELDS:  # physics: GRE first, IDEAL as fallback
        if fld not in zips:
            continue
        try:
            row.update(_physics(zips[fld], roi_stem))
            break
        except Exception as exc:  # noqa: BLE001
            failures.append(failure_from_exception(zips[fld].path, "liver-physics", exc))
    else:
        if zips:
            failed.append("physics")

    for fld, kind, folder in ((20203, "teacher", job.teacher_dir), (20254, "student", job.student_dir)):
        if fld not in zips or folder is None:
            continue
        try:
            row.update(_network(zips[fld], folder, kind, job.device))
        except Exception as exc:  # noqa: BLE001
            failures.append(failure_from_exception(zips[fld].path, f"liver-{kind}", exc))
            failed.append(kind)
    row["qc_flags"] = qc_flags(row, job.qc, failed)
    row["ukbmri_version"] = __version__
    return row, failures


def _name(p: Path | None) -> str | None:
    return None if p is None else Path(p).name


def _text(x) -> str | None:
    """A table cell as text, ``None`` for missing (NaN / None / NA)."""
    return None if x is None or pd.isna(x) else str(x)


@dataclass
class LiverRun:
    table: pd.DataFrame
    failures: list[Failure]
    out: Path
    skipped: int = 0


def infer_liver(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    use_default_weights: bool = True,
    device: str = "cpu",
    workers: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    qc: QcRules = QcRules(),
    progress: Callable[[Outcome], None] | None = None,
    save_roi: bool = True,
) -> LiverRun:
    """Liver fat for every participant visit with a 20203 and/or 20254 zip in ``inputs``.

    ``weights`` is a folder with ``teacher/`` and/or ``student/`` weights folders;
    by default the bundled demonstration weights are used (phantom-trained).
    Rows already in ``OUT/liver.parquet`` made with the same weights are kept (resume).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out / "failures.csv")
    teacher_dir, student_dir = _weights_dirs(weights, use_default_weights)
    groups = group_by_participant(find_zips(inputs, fields=LIVER_FIELDS))
    jobs = [
        LiverJob(eid, inst, files.get(20203), files.get(20254), teacher_dir, student_dir,
                 out / "liver_roi" if save_roi else None, device, qc)
        for (eid, inst), files in groups.items()
        if 20203 in files or 20254 in files
    ]
    old = read_table(out / "liver")
    done = _resumable(old, jobs, teacher_dir, student_dir, ledger)
    todo = [j for j in jobs if (j.eid, j.instance) not in done]
    if progress is not None:
        for _ in range(len(jobs) - len(todo)):
            progress(Outcome(input="cached"))
    by_label = {j.label: j for j in todo}
    rows, failures = [], []
    for outcome in run_tasks(liver_job, todo, stage="liver", label=lambda j: j.label, workers=workers,
                             backend=backend, scheduler=scheduler, progress=progress):
        job = by_label[outcome.input]
        _forget_failures(ledger, job)
        if not outcome.ok:  # a crash outside the per-method guards (e.g. a worker killed)
            failures.append(outcome.failure)
            ledger.record(outcome.failure)
            continue
        row, fails = outcome.value
        rows.append(row)
        for f in fails:
            ledger.record(f)
        failures.extend(fails)
    new = pd.DataFrame(rows).reindex(columns=LIVER_COLUMNS) if rows else pd.DataFrame(columns=LIVER_COLUMNS)
    table = upsert(old, new, ["eid", "instance"]) if old is not None else new
    table = table.reindex(columns=LIVER_COLUMNS).astype(_INT_COLUMNS)
    write_table(table, out / "liver")
    ledger.save()
    return LiverRun(table=table, failures=failures, out=out, skipped=len(jobs) - len(todo))


_STAGES = ("liver", "read-20203", "read-20254", "liver-physics", "liver-teacher", "liver-student")


def _job_inputs(job: LiverJob) -> list[str]:
    return [str(p) for p in (job.gre_zip, job.ideal_zip) if p is not None]


def _forget_failures(ledger: Ledger, job: LiverJob) -> None:
    for inp in _job_inputs(job):
        for stage in _STAGES:
            ledger.succeeded(inp, stage)


def _weights_dirs(weights, use_default: bool) -> tuple[Path | None, Path | None]:
    """(teacher folder, student folder) from ``weights`` or the bundled demo weights."""
    from ukbmri.errors import ModuleError

    if weights is None:
        if not use_default:
            return None, None
        from ukbmri.infer.liver_nets import default_liver_weights

        weights = default_liver_weights()
        if weights is None:
            log.warning("no bundled liver weights found: only the physics fit will run")
            return None, None
    root = Path(weights)
    if not root.is_dir():
        raise ModuleError("liver weights folder not found", path=root, expected="a folder with teacher/ and/or student/")
    teacher = root / "teacher" if (root / "teacher" / "model.json").is_file() else None
    student = root / "student" if (root / "student" / "model.json").is_file() else None
    if teacher is None and student is None:
        raise ModuleError(
            "no liver network in the weights folder", path=root,
            expected="teacher/model.json and/or student/model.json", found=sorted(p.name for p in root.iterdir()),
        )
    return teacher, student


def _resumable(old: pd.DataFrame | None, jobs, teacher_dir, student_dir, ledger: Ledger) -> set[tuple[int, int]]:
    """Participant visits whose previous row can be kept: same weights, no recorded failure."""
    if old is None or old.empty:
        return set()
    from ukbmri.engine.tables import sha256_file

    sha = {
        "teacher_weights_sha256": sha256_file(teacher_dir / "weights.pt") if teacher_dir else None,
        "student_weights_sha256": sha256_file(student_dir / "weights.pt") if student_dir else None,
    }
    failed_inputs = {f.input for f in ledger.failures}
    index = {(int(r.eid), int(r.instance)): r for r in old.itertuples(index=False)}
    done = set()
    for job in jobs:
        r = index.get((job.eid, job.instance))
        if r is None or any(i in failed_inputs for i in _job_inputs(job)):
            continue
        if _text(r.gre_zip) != _name(job.gre_zip) or _text(r.ideal_zip) != _name(job.ideal_zip):
            continue
        ok = True
        for col, want in sha.items():
            zip_present = job.gre_zip if col.startswith("teacher") else job.ideal_zip
            # other weights, or networks switched on or off since: recompute
            if zip_present is not None and _text(getattr(r, col)) != want:
                ok = False
        if ok:
            done.add((job.eid, job.instance))
    return done
