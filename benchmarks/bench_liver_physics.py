"""Physics liver fat per participant (20203 + 20254 zips) on one core: time against the 2 s budget.

Writes a small synthetic cohort (``--participants``, both liver fields), then times, per
participant and protocol with torch and BLAS limited to one thread, the steps of the liver
stage's physics part:

* ``read``: ``read_zip`` + ``multiecho_from_zip`` (zip, DICOM, phase, dynamics averaged);
* ``maps``: ``roi_maps_for`` (whole-slice complex fit, or magnitude ``branch="local"``);
* ``roi``: ``find_liver_roi``;
* ``fit``: the magnitude fit inside the ROI;
* ``flags``: the rest of ``liver_fat_from_maps`` (noise level, summary, intervals, QC flags);
* ``total``: all of the above.

The steps are timed by wrapping the functions ``ukbmri.physics.liver`` calls, so the same
worker times any checkout of the code. ``--clock cpu`` (default) counts the process's CPU
time, which is what one core spends and is little disturbed by other work on a shared
machine; ``--clock wall`` counts elapsed time. ``--baseline-src DIR`` (e.g. the ``src`` folder of
an older checkout) times that code too, in separate worker processes run alternately with
this checkout's (the machine may be shared), and prints the before/after ratios of the
medians. ``--stress N`` also times N in-memory stress phantoms per protocol
(``ukbmri.synth.liver_stress``; no reading).

Usage: ``python benchmarks/bench_liver_physics.py [--repeats 3] [--baseline-src DIR] [--stress N]``;
for a baseline of an earlier commit: ``git archive <commit> src | tar -x -C /tmp/base`` and
``--baseline-src /tmp/base/src`` (a clean tree, not a working copy with edits in progress).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

BUDGET_S = 2.0
STEPS = ("read", "maps", "roi", "fit", "flags", "total")
HERE_SRC = Path(__file__).resolve().parents[1] / "src"


# ----------------------------------------------------------------------------- worker
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - optional
        pass


def _timed_liver(acc: dict[str, float], clock):
    """Wrap the functions ``liver_fat_from_maps`` calls so that their time lands in ``acc``."""
    import ukbmri.physics.liver as L

    def wrap(name: str, step: str):
        fn = getattr(L, name)

        def timed(*a, **k):
            t = clock()
            try:
                return fn(*a, **k)
            finally:
                acc[step] = acc.get(step, 0.0) + clock() - t
        setattr(L, name, timed)

    wrap("find_liver_roi", "roi")
    wrap("fit_magnitude", "fit")
    try:  # the liver localiser network (part of "roi"), where this checkout has one
        from ukbmri.physics.liver_locate import LiverLocaliser
    except ImportError:
        return L
    prob = LiverLocaliser.probability

    def localise(self, *a, **k):
        t = clock()
        try:
            return prob(self, *a, **k)
        finally:
            acc["localise"] = acc.get("localise", 0.0) + clock() - t
    LiverLocaliser.probability = localise
    return L


def _worker(zips: list[str], stress: int, repeats: int, clock_name: str) -> dict:
    import numpy as np

    _one_thread()
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    from ukbmri.io import read_zip
    from ukbmri.physics.inputs import multiecho_from_zip

    acc: dict[str, float] = {}
    L = _timed_liver(acc, clock)

    def physics(data, protocol: str, times: dict[str, float]):
        t = clock()
        maps = L.roi_maps_for(data)
        t1 = clock()
        acc.clear()
        res = L.liver_fat_from_maps(data, maps, protocol=protocol)
        t2 = clock()
        times.update(maps=t1 - t, roi=acc.get("roi", 0.0), fit=acc.get("fit", 0.0), localise=acc.get("localise", 0.0))
        times["flags"] = (t2 - t1) - times["roi"] - times["fit"]
        return res

    cases = [(Path(z).name, z) for z in zips]
    stress_data = []
    if stress:
        from ukbmri.synth.liver_stress import stress_case

        for i in range(stress):
            for proto in ("gre", "ideal"):
                c = stress_case(np.random.default_rng(1000 + i), variant="train", protocol=proto)
                stress_data.append((f"stress{i}_{proto}", proto, c.data))
    out: dict[str, list[dict]] = {}
    for rep in range(repeats + 1):  # the first pass warms up
        for name, path in cases:
            times: dict[str, float] = {}
            t = clock()
            z = read_zip(path)
            data = multiecho_from_zip(z)
            times["read"] = clock() - t
            proto = {20203: "gre", 20254: "ideal"}.get(z.field, "")
            res = physics(data, proto, times)
            times["total"] = sum(times[k] for k in STEPS[:-1])
            times["pdff"], times["r2star"], times["voxels"] = res.pdff_percent, res.r2star_per_s, res.n_voxels
            if rep:
                out.setdefault(name, []).append(times)
        for name, proto, data in stress_data:
            times = {"read": 0.0}
            res = physics(data, proto, times)
            times["total"] = sum(times[k] for k in STEPS[:-1])
            times["pdff"], times["r2star"], times["voxels"] = res.pdff_percent, res.r2star_per_s, res.n_voxels
            if rep:
                out.setdefault(name, []).append(times)
    return out


# ----------------------------------------------------------------------------- driver
def _run_worker(src: Path, zips: list[str], stress: int, repeats: int, clock: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", "--stress", str(stress), "--repeats", str(repeats),
           "--clock", clock, *zips]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker on {src} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_table(runs: list[dict]) -> dict[str, dict[str, float]]:
    import numpy as np

    names = runs[0].keys()
    return {n: {k: float(np.median([t[k] for r in runs for t in r[n]])) for k in runs[0][n][0]} for n in names}


def _participants(names) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in names:
        if n.endswith(".zip"):
            out.setdefault(n.split("_")[0], []).append(n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per worker (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="worker processes per code tree, run alternately")
    ap.add_argument("--participants", type=int, default=2)
    ap.add_argument("--stress", type=int, default=0, help="stress phantoms per protocol")
    ap.add_argument("--baseline-src", type=Path, default=None, help="src folder of the code to compare with")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or elapsed time")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("zips", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.zips, args.stress, args.repeats, args.clock)))
        return

    import numpy as np

    sys.path.insert(0, str(HERE_SRC))
    from ukbmri import synth

    trees = {"new": HERE_SRC}
    if args.baseline_src is not None:
        trees = {"old": args.baseline_src.resolve(), "new": HERE_SRC}
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        zips = []
        for p in synth.sample_participants(args.participants, rng):
            paths = synth.write_participant(p, d, fields=(20203, 20254), rng=rng)
            zips += [str(paths[20203]), str(paths[20254])]
        runs: dict[str, list[dict]] = {k: [] for k in trees}
        for _ in range(args.rounds):
            for k, src in trees.items():
                runs[k].append(_run_worker(src, zips, args.stress, args.repeats, args.clock))
    med = {k: _median_table(v) for k, v in runs.items()}
    n_timed = args.rounds * args.repeats
    print(f"one thread, {args.clock} seconds; medians of {n_timed} timed passes "
          f"({args.rounds} worker processes x {args.repeats})")
    head = " ".join(f"{s:>7}" for s in STEPS)
    for k in trees:
        print(f"\n[{k}] {trees[k]}\n{'case':>28} {head}   PDFF %  R2* /s  ROI vox")
        for name, t in med[k].items():
            print(f"{name:>28} " + " ".join(f"{t[s]:7.3f}" for s in STEPS)
                  + f" {t['pdff']:8.3f} {t['r2star']:7.2f} {t['voxels']:8.0f}")
    parts = _participants(med["new"])
    print("\nper participant (both protocols, physics part; s):")
    for pid, names in parts.items():
        line = f"  {pid}: " + ", ".join(f"{k} {sum(med[k][n]['total'] for n in names):.3f}" for k in trees)
        if "old" in trees:
            o = sum(med["old"][n]["total"] for n in names)
            nw = sum(med["new"][n]["total"] for n in names)
            line += f"  -> {o / nw:.2f}x faster"
        print(line)
    for k in trees:
        tot = float(np.median([sum(med[k][n]["total"] for n in names) for names in parts.values()]))
        print(f"{k}: median per participant {tot:.3f} s = {tot / BUDGET_S:.2f} x the {BUDGET_S:g} s budget")
        loc = [t.get("localise", 0.0) for t in med[k].values()]
        if any(loc):
            print(f"{k}: liver localiser network (inside roi) per slice: median {np.median(loc):.3f} s, "
                  f"max {max(loc):.3f} s (budget 0.2 s)")
    if "old" in trees:
        print("\nratio old / new per protocol and step (medians over participants):")
        for proto, field in (("gre", "20203"), ("ideal", "20254")):
            names = [n for n in med["new"] if f"_{field}_" in n]
            ratios = {s: float(np.median([med["old"][n][s] / max(med["new"][n][s], 1e-9) for n in names]))
                      for s in STEPS}
            print(f"  {proto:>5}: " + "  ".join(f"{s} {r:.2f}x" for s, r in ratios.items()))
        diffs = [(n, abs(med["old"][n]["pdff"] - med["new"][n]["pdff"]),
                  abs(med["old"][n]["r2star"] / med["new"][n]["r2star"] - 1) * 100,
                  med["old"][n]["voxels"] - med["new"][n]["voxels"]) for n in med["new"]]
        print("largest |dPDFF| %.2e pp, |dR2*| %.2e %%, ROI voxel count differences %s" % (
            max(d[1] for d in diffs), max(d[2] for d in diffs), sorted({int(d[3]) for d in diffs})))


if __name__ == "__main__":
    main()
