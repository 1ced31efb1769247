"""Reproduce the bundled demonstration liver weights (src/ukbmri/data/liver/{teacher,student}).

Trained on synthetic phantoms only (``ukbmri.synth``): not for clinical or UK
Biobank use. Steps (each can be run on its own; later steps reuse earlier
outputs under ``--work``, default ``/tmp/ukbmri_demo_liver``)::

    python benchmarks/train_demo_liver.py generate   # ordinary + randomised cohorts (20203, 20254 zips, truth.csv)
    python benchmarks/train_demo_liver.py tensors    # read the zips once -> float16 .npz caches (+ liver_stress cases)
    python benchmarks/train_demo_liver.py teacher    # K-fold CV + final teacher (train cohorts)
    python benchmarks/train_demo_liver.py student    # distil the student (train cohorts)
    python benchmarks/train_demo_liver.py evaluate   # held-out cohorts: new and previously shipped weights vs truth
    python benchmarks/train_demo_liver.py ship       # copy weights + README into src/ukbmri/data/liver
    python benchmarks/train_demo_liver.py all        # everything above in order

``--recipe`` picks the cohorts and settings (``ordinary`` = the default, ordinary phantoms from
scratch: the weights shipped first and the starting point of ``finetune``; ``randomised`` =
+ domain-randomised phantoms from scratch, measured, not shipped; ``finetune`` = the randomised
cohorts starting from the bundled weights: the weights shipped now; see the recipes below and
``src/ukbmri/data/liver/README.md`` for the measured numbers). Training uses one
torch thread by default (``--threads``); ``--workers`` processes write and read the zips.
Ship only after comparing the ``evaluate`` table with the previous weights.
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


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One way to train the demonstration weights.

    ``cohorts``: name -> (participants, seed, first eid, liver PDFF range drawn uniformly or None =
    the phantoms' own distribution, phantom domain "ordinary" / "randomised"). ``train`` cohorts are
    pooled for training; ``test`` cohorts are held out (other seeds and eids).
    """

    cohorts: dict
    train: tuple[str, ...]
    test: tuple[str, ...]
    teacher: dict
    student: dict
    work: Path  #: default work folder


#: the weights shipped first (the starting point of FINETUNE): ordinary phantoms only ("tail" enriches
#: training with fatty livers, which are rare in the natural distribution; a network trained without them
#: underestimates them badly)
ORDINARY = Recipe(
    cohorts={
        "train": (600, 20240601, 3_000_001, None, "ordinary"),
        "tail": (300, 20240603, 3_500_001, (5.0, 40.0), "ordinary"),
        "test": (150, 20240602, 4_000_001, None, "ordinary"),
    },
    train=("train", "tail"),
    test=("test",),
    teacher=dict(folds=3, epochs=16, patience=4, lr_patience=2, batch_size=8, lr=2e-4, validation_fraction=0.1,
                 seed=11),
    student=dict(folds=3, epochs=8, patience=3, lr_patience=2, batch_size=8, lr=2e-4, validation_fraction=0.1,
                 seed=12),
    work=Path("/tmp/ukbmri_demo_liver"),
)
#: ordinary + domain-randomised phantoms ("rand", ``ukbmri synth --domain randomised``: liver PDFF
#: 0-50 %, R2* 20-500 /s, noise x0.5-3, B0 / phase / coil shading, liver and body shapes), held-out
#: ordinary and randomised cohorts; sized for about an hour of one CPU thread (2 folds: the
#: cross-validation costs as much as the final fit). Measured but NOT shipped: too short a fit
#: (see docs/synth_randomised.md).
RANDOMISED = Recipe(
    cohorts={
        "train": (300, 20240601, 3_000_001, None, "ordinary"),
        "tail": (100, 20240603, 3_500_001, (5.0, 40.0), "ordinary"),
        "rand": (300, 20240604, 3_700_001, None, "randomised"),
        "test": (150, 20240602, 4_000_001, None, "ordinary"),
        "rand_test": (150, 20240605, 4_500_001, None, "randomised"),
    },
    train=("train", "tail", "rand"),
    test=("test", "rand_test"),
    teacher=dict(folds=2, epochs=14, patience=4, lr_patience=2, batch_size=8, lr=2e-4, validation_fraction=0.1,
                 seed=11),
    student=dict(folds=2, epochs=6, patience=3, lr_patience=2, batch_size=8, lr=2e-4, validation_fraction=0.1,
                 seed=12),
    work=Path("/tmp/ukbmri_demo_liver_randomised"),
)
#: warm start ("fine-tuning"): the RANDOMISED cohorts (same seeds and eids: the cached phantoms can be
#: shared), teacher and student initialised from the bundled weights (``init_from``; ``--init-from`` names
#: another folder with ``teacher/`` and ``student/``, e.g. the ``ordinary`` recipe's work folder to
#: reproduce it after these weights replaced the bundled ones), a lower learning rate and a few epochs.
#: Its cross-validation is optimistic for the ordinary participants: the starting weights were trained on
#: the ordinary ``train`` / ``tail`` participants, whichever fold holds them out, so their out-of-fold
#: errors are too small and the variance calibration comes mostly from the randomised participants
#: (whose out-of-fold errors are honest). Judge it on the held-out cohorts.
FINETUNE = dataclasses.replace(
    RANDOMISED,
    teacher={**RANDOMISED.teacher, "epochs": 8, "patience": 3, "lr": 1e-4, "init_from": SHIP / "teacher"},
    student={**RANDOMISED.student, "epochs": 5, "lr": 1e-4, "init_from": SHIP / "student"},
    work=Path("/tmp/ukbmri_demo_liver_finetune"),
)
RECIPES = {"ordinary": ORDINARY, "randomised": RANDOMISED, "finetune": FINETUNE}


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


def generate(work: Path, workers: int, recipe: Recipe, only: tuple[str, ...] | None = None) -> None:
    from ukbmri.engine.runner import run_tasks
    from ukbmri.io.atomic import atomic_path
    from ukbmri.synth.participant import sample_participants

    for name, (n, seed, first, pdff_range, domain) in recipe.cohorts.items():
        if only and name not in only:
            continue
        out = work / name
        if (out / "truth.csv").is_file():
            log.info("%s cohort exists", name)
            continue
        rng = np.random.default_rng(seed)
        people = sample_participants(n, rng, first_eid=first, **({} if domain == "ordinary" else {"domain": domain}))
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
def train_truth(work: Path, recipe: Recipe) -> Path:
    """One truth table for all training cohorts."""
    path = work / "train_all_truth.csv"
    if not path.is_file():
        pd.concat([pd.read_csv(work / c / "truth.csv") for c in recipe.train]).to_csv(path, index=False)
    return path


def tensors(work: Path, workers: int, recipe: Recipe) -> None:
    from ukbmri.train.liver_data import build_liver_data, save_liver_data

    sets = {"trainall": ([work / c for c in recipe.train], train_truth(work, recipe))}
    sets.update({name: ([work / name], work / name / "truth.csv") for name in recipe.test})
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
    stress_tensors(work)


#: liver_stress "heldout" cases rendered to network inputs (evaluation only, never training or tuning)
STRESS = (150, 20240606)


def stress_tensors(work: Path) -> None:
    """Render ``liver_stress`` held-out single-slice cases into teacher / student tensors (float16 .npz).

    Magnitudes of the complex slice, transposed to (echo, row = y, column = x); the student's
    36 channels repeat each of the 6 IDEAL echoes over the 6 dynamics (echo-major, as
    ``ideal_tensor``: the stress generator has one dynamic). Per-sample zero-mean / unit-SD
    normalisation as the real path. Separate cases (own seeds) for the two protocols.
    """
    from ukbmri.preprocess.liver_tensors import zero_mean_std1
    from ukbmri.synth.liver_stress import stress_case

    n, seed = STRESS
    for kind, protocol in (("teacher", "gre"), ("student", "ideal")):
        cache = work / f"stress_{kind}.npz"
        if cache.is_file():
            continue
        xs, y, r2 = [], [], []
        for i in range(n):
            case = stress_case(np.random.default_rng([seed, i, 0 if kind == "teacher" else 1]), variant="heldout",
                               protocol=protocol)
            mag = np.abs(case.data.images[:, :, 0, :]).transpose(2, 1, 0).astype(np.float32)
            if kind == "student":
                mag = np.repeat(mag, 6, axis=0)
            xs.append(zero_mean_std1(mag).astype(np.float16))
            y.append(case.pdff_percent)
            r2.append(case.r2star_per_s)
        np.savez(cache, x=np.stack(xs), y=np.asarray(y), r2star=np.asarray(r2))
        log.info("stress %s: %d heldout cases", kind, n)


# --------------------------------------------------------------------------- train
def _settings(recipe: Recipe, kind: str, init_from: Path | None) -> dict:
    """The recipe's training settings of ``kind``; ``init_from`` (a folder with teacher/, student/) replaces
    the recipe's warm-start folder (recipes without a warm start ignore it)."""
    cfg = dict(recipe.teacher if kind == "teacher" else recipe.student)
    if init_from is not None and "init_from" in cfg:
        cfg["init_from"] = init_from / kind
    return cfg


def teacher(work: Path, recipe: Recipe, mean_variance: bool = True, out_name: str = "teacher",
            init_from: Path | None = None) -> Path:
    from ukbmri.train.liver import train_teacher
    from ukbmri.train.liver_data import load_liver_data

    data = load_liver_data(work / "trainall_teacher.npz")
    return train_teacher(data, work / out_name, mean_variance=mean_variance, demonstration_only=True,
                         overwrite=True, **_settings(recipe, "teacher", init_from))


def student(work: Path, recipe: Recipe, init_from: Path | None = None) -> Path:
    from ukbmri.train.distill import distill
    from ukbmri.train.liver_data import load_liver_data

    gre = load_liver_data(work / "trainall_teacher.npz")
    ideal = load_liver_data(work / "trainall_student.npz")
    return distill(work / "teacher", gre, ideal, work / "student", labels=train_truth(work, recipe),
                   demonstration_only=True, overwrite=True, **_settings(recipe, "student", init_from))


# --------------------------------------------------------------------------- evaluate
#: subgroups reported per cohort: name -> (column, threshold): truth >= threshold
SUBGROUPS = {"fatty (PDFF >= 30 %)": ("pdff", 30.0), "iron (R2* >= 150 /s)": ("r2star", 150.0)}


def _cohort_inputs(work: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(teacher x, student x, teacher-case truth (pdff, r2*), student-case truth (pdff, r2*)) of a held-out set."""
    from ukbmri.train.liver_data import load_liver_data

    if name == "stress_heldout":
        t, s = np.load(work / "stress_teacher.npz"), np.load(work / "stress_student.npz")
        return t["x"], s["x"], np.stack([t["y"], t["r2star"]]), np.stack([s["y"], s["r2star"]]), np.array([])
    gre, ideal = load_liver_data(work / f"{name}_teacher.npz"), load_liver_data(work / f"{name}_student.npz")
    if gre.keys != ideal.keys:
        raise RuntimeError(f"{name} cohort: teacher and student participants differ")
    truth = pd.read_csv(work / name / "truth.csv").set_index("eid").loc[gre.eids]
    y = np.stack([truth["liver_pdff_percent"].to_numpy(float), truth["liver_r2star_per_s"].to_numpy(float)])
    return gre.x, ideal.x, y, y, np.asarray(gre.eids)


def _metrics(y: np.ndarray, mean: np.ndarray, var: np.ndarray | None) -> dict:
    err = mean - y
    out = {"n": int(y.size), "mae": float(np.mean(np.abs(err))) if y.size else float("nan"),
           "bias": float(np.mean(err)) if y.size else float("nan")}
    if var is not None and y.size:
        out["coverage_95"] = float(np.mean(np.abs(err) <= 1.959964 * np.sqrt(var)))
    return out


def evaluate(work: Path, recipe: Recipe) -> dict:
    """Held-out cohorts x {new weights under ``work``, shipped weights}: overall and subgroup metrics."""
    from ukbmri.infer.liver_nets import load_liver_net, predict_prepared
    from ukbmri.train.liver_report import liver_report
    from ukbmri.train.metrics import pearson_r

    results: dict = {}
    before = work / "shipped_before"  # the weights shipped before this run (ship() replaces them)
    if not before.is_dir():
        shutil.copytree(SHIP, before, ignore=shutil.ignore_patterns("README.md"))
    weights = {"new": work, "shipped": before}
    nets = {(w, k): load_liver_net(folder / k) for w, folder in weights.items() for k in ("teacher", "student")}
    table: dict = {}
    for name in (*recipe.test, "stress_heldout"):
        tx, sx, ty, sy, eids = _cohort_inputs(work, name)
        for w in weights:
            t0 = time.perf_counter()
            t_mean, t_var = predict_prepared(nets[w, "teacher"], tx)
            s_mean, s_var = predict_prepared(nets[w, "student"], sx)
            log.info("%s %s inference %.0f s", name, w, time.perf_counter() - t0)
            for kind, (mean, var, y) in {"teacher": (t_mean, t_var, ty), "student": (s_mean, s_var, sy)}.items():
                rows = {"all": _metrics(y[0], mean, var)}
                for sub, (col, thr) in SUBGROUPS.items():
                    sel = y[0 if col == "pdff" else 1] >= thr
                    rows[sub] = _metrics(y[0][sel], mean[sel], None if var is None else var[sel])
                table.setdefault(name, {}).setdefault(kind, {})[w] = rows
            if name == "test" and w == "new":
                truth = ty[0]
                results["teacher_vs_truth"] = liver_report(truth, t_mean, t_var, calibration=1.0 if t_var is not None else None)
                results["student_vs_truth"] = liver_report(truth, s_mean, s_var, calibration=1.0 if s_var is not None else None)
                results["student_vs_teacher"] = liver_report(t_mean, s_mean)
                results["student_vs_teacher"]["pearson_r"] = pearson_r(t_mean, s_mean)
                pd.DataFrame({"eid": eids, "truth_percent": truth, "teacher_percent": t_mean,
                              "teacher_variance_percent2": t_var if t_var is not None else np.nan,
                              "student_percent": s_mean,
                              "student_variance_percent2": s_var if s_var is not None else np.nan}).to_csv(
                    work / "test_predictions.csv", index=False)
    results["held_out"] = table
    train = pd.read_csv(train_truth(work, recipe))
    results["sizes"] = {"train_participants": int(len(train)),
                        **{f"train_{c}": recipe.cohorts[c][0] for c in recipe.train},
                        "train_fraction_above_5_5": float(np.mean(train["liver_pdff_percent"] >= 5.5)),
                        "train_fraction_above_30": float(np.mean(train["liver_pdff_percent"] >= 30.0)),
                        "train_fraction_r2star_above_150": float(np.mean(train["liver_r2star_per_s"] >= 150.0)),
                        **{f"{c}_participants": recipe.cohorts[c][0] for c in recipe.test},
                        "stress_heldout_cases_per_protocol": STRESS[0]}
    timings = work / "timings.json"
    steps = json.loads(timings.read_text()) if timings.is_file() else {}
    if "teacher" in steps and "student" in steps:
        results["training_minutes"] = (steps["teacher"] + steps["student"]) / 60.0
    results["step_seconds"] = steps
    results["cross_validation"] = {
        "teacher": json.loads((work / "teacher" / "metrics.json").read_text()),
        "student": json.loads((work / "student" / "metrics.json").read_text()),
    }
    (work / "test_metrics.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    for k in ("teacher_vs_truth", "student_vs_truth", "student_vs_teacher"):
        m = results[k]
        log.info("%-20s n %d MAE %.3f r %.4f bias %.3f acc %.3f cov95 %s", k, m["n"], m["mae"], m["pearson_r"],
                 m["ba_bias"], m["accuracy"], m.get("coverage_95_calibrated"))
    log.info("held-out comparison:\n%s", held_out_table(table))
    return results


def held_out_table(table: dict) -> str:
    """Markdown: cohort x subgroup x network, new vs previously shipped weights (MAE / bias / 95 % coverage)."""
    lines = ["| cohort | subgroup | network | n | MAE new | MAE previous | bias new | bias previous "
             "| cov95 new | cov95 previous |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, kinds in table.items():
        for sub in ("all", *SUBGROUPS):
            for kind, ws in kinds.items():
                new, old = ws["new"][sub], ws["shipped"][sub]
                if not new["n"]:
                    continue
                lines.append(f"| {name} | {sub} | {kind} | {new['n']} | {_fmt(new['mae'])} | {_fmt(old['mae'])} | "
                             f"{_fmt(new['bias'])} | {_fmt(old['bias'])} | {_fmt(new.get('coverage_95'))} | "
                             f"{_fmt(old.get('coverage_95'))} |")
    return "\n".join(lines)


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
Reproduce with `python benchmarks/train_demo_liver.py all --recipe {recipe}` (CPU; measured
training time {minutes} minutes with {threads} torch thread(s), after the phantoms are written).

* Train cohorts ({n_train} participants): {train_lines}.
* Held out, never seen in training: {test_lines}; and `stress_heldout` = {n_stress} single-slice
  cases per protocol from the held-out variant of `ukbmri.synth.liver_stress` (another generator:
  star-shaped organs, other contrasts; rendered as magnitude tensors, the IDEAL echoes repeated
  over the 6 dynamics; evaluation only).
* Teacher: {teacher_cfg}; labels = phantom liver PDFF (%).
* Student: distilled from the teacher's predictions on the same train cohorts: {student_cfg}.
{restart_notes}
## Held-out test cohort `test` ({n_test} ordinary participants)
| comparison | MAE (pp) | Pearson r | R^2 | bias (pp) | steatosis (>= 5.5 %) accuracy | 95 % interval coverage |
|---|---|---|---|---|---|---|
{test_rows}

## Held-out cohorts: these weights ("new") vs the weights shipped before them ("previous")
MAE and bias in percentage points of PDFF; cov95 = fraction of truths inside the calibrated 95 %
interval. Subgroups by the truth of each case (empty subgroups left out).

{held_out_rows}

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


def _setting(v) -> str:
    """A recipe setting for the README (paths relative to the repository)."""
    if isinstance(v, Path):
        return f"`{v.relative_to(REPO)}`" if v.is_relative_to(REPO) else f"`{v}`"
    return str(v)


def _describe(name: str, spec: tuple) -> str:
    n, seed, _, pdff_range, domain = spec
    if domain == "randomised":
        what = ("domain-randomised participants (`ukbmri synth --domain randomised`: liver PDFF uniform 0-50 %, "
                "R2* log-uniform 20-500 /s, noise x0.5-3, B0 / receive-phase fields and coil shading, liver shape, "
                "size and position, touching organs, body shapes; `docs/synth_randomised.md`)")
    elif pdff_range is not None:
        what = f"ordinary participants with liver PDFF drawn uniformly from {pdff_range[0]:g}-{pdff_range[1]:g} %"
    else:
        what = "ordinary participants with the cohort's natural (skewed) liver-fat distribution"
    return f"`{name}` = {n} {what} (seed {seed})"


def ship(work: Path, recipe: Recipe) -> None:
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
    inits = {k: info[k].get("training", {}).get("init_from") for k in ("teacher", "student")}
    if any(inits.values()):
        started = "; ".join(f"{k} `{Path(v['folder']).name}` sha256 {v['weights_sha256'][:12]}..."
                            for k, v in inits.items() if v)
        notes.append(f"* Fine-tuned: every fold and the final network started from the weights shipped before "
                     f"({started}; recipe `ordinary`, whose 600 `train` participants include this recipe's 300), "
                     "not from a random initialisation. The cross-validation below is therefore optimistic for the "
                     "ordinary participants those weights already saw, and the variance calibration comes mostly "
                     "from the randomised participants; the held-out cohorts are the honest measure. To reproduce, "
                     "pass `--init-from` a folder holding those weights (the `ordinary` recipe's work folder, or the "
                     "previous commit's `src/ukbmri/data/liver`).\n")
    text = README.format(restart_notes="".join(notes),
        teacher_head=head["teacher"], student_head=head["student"],
        recipe=next(k for k, v in RECIPES.items() if v == recipe),
        minutes=_fmt(res.get("training_minutes"), ".0f"), threads=res.get("step_seconds", {}).get("threads", "-"),
        n_train=sum(recipe.cohorts[c][0] for c in recipe.train),
        train_lines="; ".join(_describe(c, recipe.cohorts[c]) for c in recipe.train),
        test_lines="; ".join(_describe(c, recipe.cohorts[c]) for c in recipe.test),
        n_test=recipe.cohorts["test"][0], n_stress=STRESS[0], held_out_rows=held_out_table(res["held_out"]),
        teacher_cfg=", ".join(f"{k} {_setting(v)}" for k, v in recipe.teacher.items()),
        student_cfg=", ".join(f"{k} {_setting(v)}" for k, v in recipe.student.items()),
        test_rows=test_rows, cv_rows="\n".join(cv_rows))
    (SHIP / "README.md").write_text(text)
    log.info("shipped to %s", SHIP)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["generate", "tensors", "teacher", "student", "evaluate", "ship", "all"])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="ordinary",
                    help="ordinary: the first shipped weights; randomised: + domain-randomised phantoms (measured, not "
                         "shipped); finetune: the randomised cohorts, starting from the bundled weights (shipped)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: the recipe's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the timings in the README use 1)")
    ap.add_argument("--cohorts", default="", help="generate: only these comma-separated cohorts")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="finetune: folder with teacher/ and student/ weights to start from "
                         "(default: the bundled ones)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    recipe = RECIPES[args.recipe]
    work = args.work or recipe.work
    work.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    steps = ["generate", "tensors", "teacher", "student", "evaluate", "ship"] if args.step == "all" else [args.step]
    for step in steps:
        t0 = time.perf_counter()
        if step == "generate":
            generate(work, args.workers, recipe, tuple(c for c in args.cohorts.split(",") if c) or None)
        elif step == "tensors":
            tensors(work, args.workers, recipe)
        elif step == "teacher":
            teacher(work, recipe, init_from=args.init_from)
        elif step == "student":
            student(work, recipe, init_from=args.init_from)
        elif step == "evaluate":
            evaluate(work, recipe)
        else:
            ship(work, recipe)
        dt = time.perf_counter() - t0
        log.info("step %s done in %.0f s", step, dt)
        timings = work / "timings.json"
        done = json.loads(timings.read_text()) if timings.is_file() else {}
        timings.write_text(json.dumps({**done, step: round(dt, 1), "threads": args.threads}, indent=2) + "\n")


if __name__ == "__main__":
    main()
