"""Reproduce the bundled demonstration liver weights (src/ukbmri/data/liver/{teacher,student}).

Trained on synthetic phantoms only (``ukbmri.synth``): not for clinical or UK
Biobank use. Steps (each can be run on its own; later steps reuse earlier
outputs under ``--work``, default ``/tmp/ukbmri_demo_liver``)::

    python benchmarks/train_demo_liver.py generate   # train + test cohorts (20203, 20254 zips, truth.csv)
    python benchmarks/train_demo_liver.py tensors    # read the zips once -> float16 .npz caches
    python benchmarks/train_demo_liver.py teacher    # K-fold CV + final teacher (train cohort)
    python benchmarks/train_demo_liver.py student    # distil the student (train cohort)
    python benchmarks/train_demo_liver.py evaluate   # held-out test cohort: teacher / student vs truth
    python benchmarks/train_demo_liver.py ship       # copy weights + README into src/ukbmri/data/liver
    python benchmarks/train_demo_liver.py all        # everything above in order

The exact settings used for the shipped weights are the defaults below
(see ``src/ukbmri/data/liver/README.md`` for the measured numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("train_demo_liver")

REPO = Path(__file__).resolve().parents[1]
SHIP = REPO / "src" / "ukbmri" / "data" / "liver"

#: cohorts: name -> (participants, seed, first eid, liver PDFF range drawn uniformly or None = the
#: cohort's natural, skewed distribution). "tail" enriches training with fatty livers, which are
#: rare in the natural distribution (a network trained without them underestimates them badly).
COHORTS = {
    "train": (600, 20240601, 3_000_001, None),
    "tail": (300, 20240603, 3_500_001, (5.0, 40.0)),
    "test": (150, 20240602, 4_000_001, None),
}
TRAIN = ("train", "tail")
TEACHER = dict(folds=3, epochs=16, patience=4, lr_patience=2, batch_size=8, lr=2e-4, validation_fraction=0.1,
               seed=11)
STUDENT = dict(folds=3, epochs=8, patience=3, lr_patience=2, batch_size=8, lr=2e-4, validation_fraction=0.1,
               seed=12)


# --------------------------------------------------------------------------- generate
def _write_one(task: tuple) -> dict:
    """One synthetic participant -> its 20203 and 20254 zips; returns the truth row (picklable top level)."""
    from ukbmri.synth.anatomy import build_phantom
    from ukbmri.synth.tissues import Label
    from ukbmri.synth.ukb_writer import write_participant

    p, out_dir, seed = task
    phantom = build_phantom(p)
    write_participant(p, out_dir, fields=(20203, 20254), rng=np.random.default_rng([seed, p.eid]), phantom=phantom)
    t = phantom.tissues
    return {"eid": p.eid, "liver_pdff_percent": round(t.pdff_percent(Label.LIVER), 4),
            "liver_r2star_per_s": round(float(t.r2star[Label.LIVER]), 3)}


def generate(work: Path, workers: int) -> None:
    from ukbmri.engine.runner import run_tasks
    from ukbmri.io.atomic import atomic_path
    from ukbmri.synth.participant import sample_participants

    for name, (n, seed, first, pdff_range) in COHORTS.items():
        out = work / name
        if (out / "truth.csv").is_file():
            log.info("%s cohort exists", name)
            continue
        rng = np.random.default_rng(seed)
        people = sample_participants(n, rng, first_eid=first)
        if pdff_range is not None:
            people = [dataclasses.replace(p, liver_pdff_percent=round(float(rng.uniform(*pdff_range)), 3))
                      for p in people]
        t0 = time.perf_counter()
        rows, failed = [], []
        for o in run_tasks(_write_one, [(p, out, seed) for p in people], stage="synth", workers=workers,
                           label=lambda t: str(t[0].eid)):
            (rows.append(o.value) if o.ok else failed.append(o.failure))
        if failed:
            raise RuntimeError(f"{len(failed)} participants failed: {failed[0]}")
        with atomic_path(out / "truth.csv") as tmp:
            pd.DataFrame(rows).sort_values("eid").to_csv(tmp, index=False)
        log.info("%s cohort: %d participants in %.0f s", name, n, time.perf_counter() - t0)


# --------------------------------------------------------------------------- tensors
def train_truth(work: Path) -> Path:
    """One truth table for all training cohorts."""
    path = work / "train_all_truth.csv"
    if not path.is_file():
        pd.concat([pd.read_csv(work / c / "truth.csv") for c in TRAIN]).to_csv(path, index=False)
    return path


def tensors(work: Path, workers: int) -> None:
    from ukbmri.train.liver_data import build_liver_data, save_liver_data

    sets = {"trainall": ([work / c for c in TRAIN], train_truth(work)), "test": ([work / "test"], work / "test" / "truth.csv")}
    for name, (folders, truth) in sets.items():
        for kind in ("teacher", "student"):
            cache = work / f"{name}_{kind}.npz"
            if cache.is_file():
                continue
            t0 = time.perf_counter()
            data = build_liver_data(folders, kind=kind, labels=truth, workers=workers)
            if data.failures:
                raise RuntimeError(f"{len(data.failures)} failures, e.g. {data.failures[0].one_line()}")
            save_liver_data(data, cache)
            log.info("%s %s: %d tensors in %.0f s", name, kind, len(data), time.perf_counter() - t0)


# --------------------------------------------------------------------------- train
def teacher(work: Path, mean_variance: bool = True, out_name: str = "teacher") -> Path:
    from ukbmri.train.liver import train_teacher
    from ukbmri.train.liver_data import load_liver_data

    data = load_liver_data(work / "trainall_teacher.npz")
    return train_teacher(data, work / out_name, mean_variance=mean_variance, demonstration_only=True,
                         overwrite=True, **TEACHER)


def student(work: Path) -> Path:
    from ukbmri.train.distill import distill
    from ukbmri.train.liver_data import load_liver_data

    gre = load_liver_data(work / "trainall_teacher.npz")
    ideal = load_liver_data(work / "trainall_student.npz")
    return distill(work / "teacher", gre, ideal, work / "student", labels=train_truth(work),
                   demonstration_only=True, overwrite=True, **STUDENT)


# --------------------------------------------------------------------------- evaluate
def evaluate(work: Path) -> dict:
    from ukbmri.infer.liver_nets import load_liver_net, predict_prepared
    from ukbmri.train.liver_report import liver_report
    from ukbmri.train.liver_data import load_liver_data
    from ukbmri.train.metrics import pearson_r

    results: dict = {}
    gre = load_liver_data(work / "test_teacher.npz")
    ideal = load_liver_data(work / "test_student.npz")
    t_net, s_net = load_liver_net(work / "teacher"), load_liver_net(work / "student")
    t0 = time.perf_counter()
    t_mean, t_var = predict_prepared(t_net, gre.x)
    s_mean, s_var = predict_prepared(s_net, ideal.x)
    log.info("test inference %.0f s", time.perf_counter() - t0)
    if gre.keys != ideal.keys:
        raise RuntimeError("test cohort: teacher and student participants differ")
    truth = gre.labels
    results["teacher_vs_truth"] = liver_report(truth, t_mean, t_var, calibration=1.0 if t_var is not None else None)
    results["student_vs_truth"] = liver_report(truth, s_mean, s_var, calibration=1.0 if s_var is not None else None)
    results["student_vs_teacher"] = liver_report(t_mean, s_mean)
    results["student_vs_teacher"]["pearson_r"] = pearson_r(t_mean, s_mean)
    train = pd.read_csv(train_truth(work))
    results["sizes"] = {"train_participants": int(len(train)),
                        "train_participants_pdff_5_to_40_enriched": COHORTS["tail"][0],
                        "train_fraction_above_5_5": float(np.mean(train["liver_pdff_percent"] >= 5.5)),
                        "test_participants": int(len(truth)),
                        "test_truth_mean_percent": float(np.mean(truth)),
                        "test_truth_fraction_above_5_5": float(np.mean(truth >= 5.5))}
    results["cross_validation"] = {
        "teacher": json.loads((work / "teacher" / "metrics.json").read_text()),
        "student": json.loads((work / "student" / "metrics.json").read_text()),
    }
    pd.DataFrame({"eid": gre.eids, "truth_percent": truth, "teacher_percent": t_mean,
                  "teacher_variance_percent2": t_var if t_var is not None else np.nan,
                  "student_percent": s_mean,
                  "student_variance_percent2": s_var if s_var is not None else np.nan}).to_csv(
        work / "test_predictions.csv", index=False)
    (work / "test_metrics.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    for k in ("teacher_vs_truth", "student_vs_truth", "student_vs_teacher"):
        m = results[k]
        log.info("%-20s n %d MAE %.3f r %.4f bias %.3f acc %.3f cov95 %s", k, m["n"], m["mae"], m["pearson_r"],
                 m["ba_bias"], m["accuracy"], m.get("coverage_95_calibrated"))
    return results


# --------------------------------------------------------------------------- ship
README = """# Demonstration liver-fat networks (synthetic phantoms only)

**Not for clinical use and not for UK Biobank data.** These weights were
trained on synthetic phantoms generated by `ukbmri.synth` (fields 20203 and
20254 only) to show the ml4h teacher/student workflow end to end. Real scans
differ from the phantoms; retrain on real data with `ukbmri train
liver-teacher` and `ukbmri distill`. `model.json` says `"demonstration_only": true`.

| folder | network | input | head |
|---|---|---|---|
| `teacher/` | ml4h liver teacher (PyTorch) | 20203 GRE `(10, 160, 160)` | {teacher_head} |
| `student/` | ml4h liver student (PyTorch) | 20254 IDEAL `(36, 232, 256)` | {student_head} |

## How they were trained
Reproduce with `python benchmarks/train_demo_liver.py all` (CPU, about an hour on 2 cores).

* Train cohort: {n_train} synthetic participants with the cohort's natural (skewed) liver-fat
  distribution (seed {train_seed}) plus {n_tail} with liver PDFF drawn uniformly from 5-40 %
  (seed {tail_seed}), because fatty livers are too rare in the natural distribution to be
  learnt; held-out test cohort: {n_test} participants with the natural distribution (seed
  {test_seed}, other eids), never seen in training.
* Teacher: {teacher_cfg}; labels = phantom liver PDFF (%).
* Student: distilled from the teacher's predictions on the same train cohort: {student_cfg}.
{restart_notes}
## Held-out test cohort ({n_test} participants)
| comparison | MAE (pp) | Pearson r | R^2 | bias (pp) | steatosis (>= 5.5 %) accuracy | 95 % interval coverage |
|---|---|---|---|---|---|---|
{test_rows}

## Cross-validation on the train cohort (out-of-fold)
| comparison | n | MAE (pp) | Pearson r | calibration factor |
|---|---|---|---|---|
{cv_rows}
"""


def _fmt(v, f=".3f") -> str:
    try:
        return format(float(v), f)
    except (TypeError, ValueError):
        return "-"


def ship(work: Path) -> None:
    res = json.loads((work / "test_metrics.json").read_text())
    SHIP.mkdir(parents=True, exist_ok=True)
    for kind in ("teacher", "student"):
        dst = SHIP / kind
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir()
        for member in ("weights.pt", "model.json", "metrics.json"):
            shutil.copy2(work / kind / member, dst / member)
    info = {k: json.loads((work / k / "model.json").read_text()) for k in ("teacher", "student")}
    test_rows = "\n".join(
        f"| {k.replace('_', ' ')} | {_fmt(res[k]['mae'])} | {_fmt(res[k]['pearson_r'], '.4f')} | "
        f"{_fmt(res[k]['r2'])} | {_fmt(res[k]['ba_bias'])} | {_fmt(res[k]['accuracy'])} | "
        f"{_fmt(res[k].get('coverage_95_calibrated'))} |"
        for k in ("teacher_vs_truth", "student_vs_truth", "student_vs_teacher"))
    cv_rows = []
    for kind in ("teacher", "student"):
        for comp, m in res["cross_validation"][kind].items():
            cv_rows.append(f"| {comp.replace('_', ' ')} | {m['n']} | {_fmt(m['mae'])} | {_fmt(m['pearson_r'], '.4f')} "
                           f"| {_fmt(m.get('calibration_factor'))} |")
    head = {k: "mean + log-variance (Gaussian NLL)" if info[k]["mean_variance"] else "point (log-cosh)"
            for k in info}
    notes = []
    for kind in ("teacher", "student"):
        final = info[kind].get("training", {}).get("history", {}).get("final", {})
        if final.get("restarts"):
            notes.append(f"* The final {kind} network collapsed to a constant output at its first initialisation "
                         f"and was re-initialised {final['restarts']} time(s) (`model.json`, training.history.final).\n")
    text = README.format(restart_notes="".join(notes),
        teacher_head=head["teacher"], student_head=head["student"],
        n_train=COHORTS["train"][0], train_seed=COHORTS["train"][1], n_test=COHORTS["test"][0],
        n_tail=COHORTS["tail"][0], tail_seed=COHORTS["tail"][1],
        test_seed=COHORTS["test"][1], teacher_cfg=", ".join(f"{k} {v}" for k, v in TEACHER.items()),
        student_cfg=", ".join(f"{k} {v}" for k, v in STUDENT.items()),
        test_rows=test_rows, cv_rows="\n".join(cv_rows))
    (SHIP / "README.md").write_text(text)
    log.info("shipped to %s", SHIP)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["generate", "tensors", "teacher", "student", "evaluate", "ship", "all"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/ukbmri_demo_liver"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    steps = ["generate", "tensors", "teacher", "student", "evaluate", "ship"] if args.step == "all" else [args.step]
    for step in steps:
        t0 = time.perf_counter()
        if step == "generate":
            generate(args.work, args.workers)
        elif step == "tensors":
            tensors(args.work, args.workers)
        elif step == "teacher":
            teacher(args.work)
        elif step == "student":
            student(args.work)
        elif step == "evaluate":
            evaluate(args.work)
        else:
            ship(args.work)
        log.info("step %s done in %.0f s", step, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
