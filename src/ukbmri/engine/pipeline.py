"""The main job: a folder of zips -> one participant table (body + liver), a ledger, a report.

Layout of ``OUT``::

    OUT/participants.csv, OUT/participants.parquet   one row per (eid, instance)
    OUT/failures.csv                                  every failure of every stage
    OUT/report.md (+ PNG)                             what went in, out, and wrong
    OUT/body/   (see ukbmri.engine.body)              module predictions, image cache
    OUT/liver/  (see ukbmri.engine.liver)             liver table, ROI masks

Re-running the same command resumes: cached images, predictions and liver
rows are reused when their inputs and weights are unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from ukbmri.engine.body import infer_body, split_inputs
from ukbmri.engine.inputs import find_zips, group_by_participant
from ukbmri.engine.ledger import Failure, Ledger
from ukbmri.engine.liver import LIVER_FIELDS, QcRules, infer_liver
from ukbmri.engine.report import compare_with_truth, write_report
from ukbmri.engine.runner import Outcome
from ukbmri.engine.tables import write_table

__all__ = ["RunResult", "run_pipeline", "default_body_modules", "TRUTH_PAIRS"]

log = logging.getLogger(__name__)

#: prediction column -> phantom truth column, for synthetic cohorts
TRUTH_PAIRS = {
    "weight_kg": "weight_kg",
    "height_cm": "height_cm",
    "vat_l": "vat_l",
    "asat_l": "asat_l",
    "liver_volume_l": "liver_volume_l",
    "thigh_muscle_volume_l": "thigh_muscle_volume_l",
    "liver_pdff_percent": "liver_pdff_percent",
    "liver_fat_physics_percent": "liver_pdff_percent",
    "liver_fat_teacher_percent": "liver_pdff_percent",
    "liver_fat_student_percent": "liver_pdff_percent",
    "liver_r2star_physics_per_s": "liver_r2star_per_s",
}


def default_body_modules() -> list[Path]:
    """The bundled demonstration body module(s) (phantom-trained)."""
    root = resources.files("ukbmri") / "data" / "modules"
    if not root.is_dir():
        return []
    return sorted(Path(str(p)) for p in root.iterdir() if p.is_dir() and (p / "snapshot.pth.tar").is_file())


@dataclass
class RunResult:
    table: pd.DataFrame
    failures: list[Failure]
    out: Path
    n_body: int
    n_liver: int


def run_pipeline(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    modules: Sequence[str | os.PathLike[str]] | None = None,
    liver_weights: str | os.PathLike[str] | None = None,
    truth: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    workers: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    qc: QcRules = QcRules(),
    progress: Callable[[str, int], Callable[[Outcome], None]] | None = None,
) -> RunResult:
    """Body and liver pipelines over ``inputs``, merged per participant visit.

    ``modules=None`` uses the bundled demo module(s); ``progress(stage, total)``
    returns a per-item callback (the CLI makes a progress bar per stage).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    module_dirs = list(modules) if modules is not None else default_body_modules()
    body_zips, caches = split_inputs(inputs)
    liver_groups = group_by_participant(find_zips(inputs, fields=LIVER_FIELDS))
    tables, failures = [], []

    body_table = None
    if body_zips or caches:
        cb = progress("body", len(body_zips)) if progress else None
        body = infer_body(inputs, module_dirs, out / "body", batch_size=batch_size, device=device, workers=workers,
                          backend=backend, scheduler=scheduler, progress=cb)
        failures += body.failures
        body_table = body.table.drop(columns=["ukbmri_version"], errors="ignore")
        tables.append(body_table)
    liver_table = None
    if liver_groups:
        cb = progress("liver", len(liver_groups)) if progress else None
        liver = infer_liver(inputs, out / "liver", weights=liver_weights, device=device, workers=workers,
                            backend=backend, scheduler=scheduler, qc=qc, progress=cb)
        failures += liver.failures
        liver_table = liver.table.drop(columns=["ukbmri_version"], errors="ignore")

    table = _merge(body_table, liver_table)
    from ukbmri import __version__

    table["ukbmri_version"] = __version__
    write_table(table, out / "participants")
    ledger = Ledger(out / "failures.csv")
    ledger.clear()  # the combined ledger is rebuilt from the stage ledgers every run
    for sub in ("body", "liver"):
        for f in Ledger(out / sub / "failures.csv").failures:
            ledger.record(f)
    ledger.save()
    failures = ledger.failures

    comparison = None
    if truth is not None and Path(truth).is_file():
        comparison = compare_with_truth(table, pd.read_csv(truth), TRUTH_PAIRS)
        write_table(comparison, out / "truth_comparison", formats=("csv",))
    key_cols = [c for c in TRUTH_PAIRS if c in table] + [c for c in table if c.endswith("_percent") and c not in TRUTH_PAIRS]
    notes = []
    if module_dirs and modules is None:
        notes.append("Body predictions come from the bundled DEMONSTRATION module trained on synthetic phantoms: "
                     "not for clinical or UK Biobank use.")
    write_report(out, table, failures, inputs={"20201 zips": len(body_zips), "liver participant visits": len(liver_groups),
                                                "body modules": len(module_dirs)},
                 key_columns=key_cols[:12], truth_comparison=comparison, notes=notes)
    return RunResult(table=table, failures=failures, out=out, n_body=len(body_zips), n_liver=len(liver_groups))


def _merge(body: pd.DataFrame | None, liver: pd.DataFrame | None) -> pd.DataFrame:
    if body is None and liver is None:
        return pd.DataFrame(columns=["eid", "instance"])
    if body is None:
        return liver.reset_index(drop=True)
    body = body.rename(columns={"name": "body_image"})
    if liver is None:
        return body.reset_index(drop=True)
    body = body.astype({"eid": "Int64", "instance": "Int64"})
    liver = liver.astype({"eid": "Int64", "instance": "Int64"})
    return body.merge(liver, on=["eid", "instance"], how="outer").sort_values(["eid", "instance"]).reset_index(drop=True)
