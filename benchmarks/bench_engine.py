"""Engine bookkeeping at cohort scale: discovery, planning, resume check, store and tables.

Writes ``--visits`` placeholder zips (one per visit, named like UK Biobank bulk files) and
runs the engine with a stage that does no work, so only the engine's own costs are
measured::

    python benchmarks/bench_engine.py --visits 100000 --work /tmp/bench_engine

Prints per-visit costs of discovery + planning + resume check (target < 2 ms per visit)
and the wall time of a resume of the finished store (target < 3 minutes for 100,000
visits on 2 cores), plus the store size. Absolute times vary by machine: compare ratios.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ukbmri.engine.cohort import Cohort, Visit
from ukbmri.engine.stage import Column, Job, JobResult
from ukbmri.engine.store import ResultStore


@dataclass(frozen=True)
class NullStage:
    """Plans a job per visit, returns one number: engine bookkeeping only."""

    name: str = "null"
    version: str = "1"
    batch_size: int = 64

    @property
    def fields(self) -> tuple[int, ...]:
        return (20201,)

    def settings(self) -> Mapping[str, Any]:
        return {}

    def columns(self) -> Sequence[Column]:
        return [Column("null_value")]

    def plan_inputs(self, visit: Visit):
        f = visit.inputs.get(20201)
        return None if f is None else {20201: f.path}

    def run(self, jobs: Sequence[Job], workdir: Path) -> list[JobResult]:
        return [JobResult({"null_value": float(j.eid % 97)}) for j in jobs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visits", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_engine"))
    ap.add_argument("--keep", action="store_true", help="keep the placeholder files for another run")
    args = ap.parse_args()
    from ukbmri.engine.run import run

    inputs = args.work / "Bulk" / "20201"
    if not inputs.is_dir() or sum(1 for _ in inputs.rglob("*.zip")) != args.visits:
        shutil.rmtree(args.work, ignore_errors=True)
        t = time.perf_counter()
        for i in range(args.visits):
            d = inputs / f"{i // 10000:02d}"
            if i % 10000 == 0:
                d.mkdir(parents=True, exist_ok=True)
            (d / f"{1_000_000 + i}_20201_2_0.zip").write_bytes(b"PK\x05\x06" + bytes(18))
        print(f"wrote {args.visits} placeholder zips in {time.perf_counter() - t:.1f} s")
    out = args.work / "out"
    shutil.rmtree(out, ignore_errors=True)

    t = time.perf_counter()
    cohort = Cohort.discover([inputs])
    t_disc = time.perf_counter() - t
    stage = NullStage()
    t = time.perf_counter()
    from ukbmri.engine.run import _plan

    plan = _plan([stage], cohort.visits)
    t_plan = time.perf_counter() - t

    t = time.perf_counter()
    first = run([inputs], out, custom_stages=[stage], report=False)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    store = ResultStore(out / "store")
    todo = sum(1 for j in plan[0].jobs if (r := store.get(j.stage, j.eid, j.instance)) is None
               or r.fingerprint != j.fingerprint)
    t_check = time.perf_counter() - t
    t = time.perf_counter()
    again = run([inputs], out, custom_stages=[stage], report=False)
    t_resume = time.perf_counter() - t
    assert todo == 0 and again.manifest["stages"]["null"]["computed"] == 0
    n = args.visits
    print(f"visits: {n}, rows: {len(first.table)}")
    print(f"discovery            {t_disc:8.2f} s  {1e3 * t_disc / n:.3f} ms/visit")
    print(f"planning             {t_plan:8.2f} s  {1e3 * t_plan / n:.3f} ms/visit")
    print(f"resume check (store) {t_check:8.2f} s  {1e3 * t_check / n:.3f} ms/visit (load + compare)")
    total = t_disc + t_plan + t_check
    print(f"discovery+plan+check {total:8.2f} s  {1e3 * total / n:.3f} ms/visit   (target < 2 ms)")
    print(f"first run (no work)  {t_first:8.2f} s")
    print(f"resume of the store  {t_resume:8.2f} s   (target < 180 s); ratio to the first run {t_resume / t_first:.2f}")
    print(f"store size           {(out / 'store' / 'results.jsonl').stat().st_size / 1e6:.1f} MB")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
