"""End-to-end body throughput: zips -> preprocessing -> 4 inference modules -> tables.

    .venv/bin/python benchmarks/bench_body_e2e.py [--participants 4] [--backbone resnet50] [--workers 1]

Writes ``--participants`` full-size synthetic 20201 zips and four modules of
``--backbone`` (randomly initialised, 9 targets each: MIMIR's published release has
four ResNet50 modules of this kind), then runs :func:`ukbmri.engine.run.run` (body stage only)
on a fresh output folder and prints participants per minute for the whole job, with
the preprocessing and inference shares measured in the same run. A second run on
the same folder shows the cost of a resume that has nothing left to do.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_modules(root: Path, backbone: str, n_modules: int, n_targets: int) -> list[Path]:
    from ukbmri.models import build_backbone
    from ukbmri.modules import Target, save_module

    folders = []
    for k in range(n_modules):
        folder = root / f"module_{k}"
        model = build_backbone(backbone, 2 * n_targets, generator=torch.Generator().manual_seed(k))
        targets = tuple(Target(f"t{k}_{j}", "/", "L") for j in range(n_targets))
        save_module(folder, model=model, backbone=backbone, targets=targets, mean=np.zeros(n_targets),
                    sd=np.ones(n_targets), calibration=np.ones(n_targets), info={"demonstration_only": True})
        folders.append(folder)
    return folders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet18", "smallcnn"])
    ap.add_argument("--modules", type=int, default=4)
    ap.add_argument("--targets", type=int, default=9)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()

    from ukbmri.engine.run import run as run_engine
    from ukbmri.synth import write_cohort

    def infer_body(inputs, modules, out, *, workers, precision=None):
        return run_engine(inputs, out, stages=("body",), modules=modules, allow_demo_weights=True,
                          workers=workers, precision=precision, report=False, device="cpu")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cohort(tmp / "zips", args.participants, seed=1, fields=(20201,), workers=args.workers)
        modules = make_modules(tmp / "modules", args.backbone, args.modules, args.targets)

        t0 = time.perf_counter()
        run = infer_body([tmp / "zips"], [], tmp / "pre", workers=args.workers)  # preprocessing only
        t_pre = time.perf_counter() - t0
        assert run.failures.empty, run.failures

        t0 = time.perf_counter()
        run = infer_body([tmp / "zips"], modules, tmp / "out", workers=args.workers, precision=args.precision)
        t_all = time.perf_counter() - t0
        assert run.failures.empty and len(run.table) == args.participants, run.failures

        t0 = time.perf_counter()
        infer_body([tmp / "zips"], modules, tmp / "out", workers=args.workers, precision=args.precision)
        t_resume = time.perf_counter() - t0

    n = args.participants
    t_inf = max(t_all - t_pre, 0.0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, workers {args.workers}, "
          f"{n} participants, {args.modules} x {args.backbone} modules ({args.targets} targets), {args.precision}")
    print(f"end to end         {t_all:8.1f} s   {60 * n / t_all:7.2f} participants/min")
    print(f"  preprocessing    {t_pre:8.1f} s   {t_pre / t_all:7.0%} of the job ({t_pre / n:.2f} s per participant)")
    print(f"  {args.modules} modules        {t_inf:8.1f} s   {t_inf / t_all:7.0%} of the job "
          f"({n * args.modules / max(t_inf, 1e-9):.1f} images x modules per s)")
    print(f"resume, no work    {t_resume:8.1f} s   {t_resume / t_all:7.1%} of the job")


if __name__ == "__main__":
    main()
