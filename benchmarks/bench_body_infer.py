"""Throughput and numerical deviation of body inference per backbone and precision mode.

For resnet50, resnet18 and smallcnn at several batch sizes, on CPU (and CUDA
when available), times ``ukbmri.infer.predict_raw`` for each precision mode
(warm-up, then best of N) and reports images/s plus the deviation from fp32
on the same images: ``max |y - y_fp32| / max |y_fp32|`` over the raw outputs.

The networks are randomly initialised with BatchNorm statistics set on random
MIMIR-format images, so outputs are O(1) like a trained module's. Weights do
not change the arithmetic cost; the deviation of a trained network is of the
same order but should be re-checked on a real module (``--module FOLDER``).

Usage::

    python benchmarks/bench_body_infer.py                 # all defaults
    python benchmarks/bench_body_infer.py --reps 2 --batch-sizes 1 8 --models smallcnn
    python benchmarks/bench_body_infer.py --module path/to/module_bodycomp

Timings on a shared machine are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from ukbmri.infer import PRECISIONS, predict_raw
from ukbmri.models import build_backbone

CPU_MODES = ("fp32", "fp32-cl", "bf16")
CUDA_MODES = ("fp32", "fp32-cl", "tf32", "bf16", "fp16")


def calibrated(name: str, n_out: int, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    m = build_backbone(name, n_out, generator=g)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
    m.train()
    with torch.no_grad():
        m(torch.randint(0, 256, (8, 3, 256, 256), generator=g).float())
    return m.eval()


def best_times(fns: dict[str, callable], reps: int, sync) -> dict[str, float]:
    """Best-of-``reps`` wall time per function; the functions are interleaved in every
    repetition so that load from other processes hits all modes alike."""
    for fn in fns.values():  # warm-up
        fn()
    sync()
    best = {k: float("inf") for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "resnet18", "smallcnn"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda if available)")
    ap.add_argument("--reps", type=int, default=3, help="best of N timed repetitions")
    ap.add_argument("--targets", type=int, default=36, help="T (fc has 2T outputs)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU runs")
    ap.add_argument("--module", default=None, help="benchmark a module folder instead of random nets")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(args.batch_sizes), 3, 256, 256), dtype=np.uint8)

    nets: dict[str, torch.nn.Module] = {}
    if args.module:
        from ukbmri.modules import load_module

        mod = load_module(args.module)
        nets[f"{mod.name}({mod.backbone})"] = mod.model
    else:
        for name in args.models:
            nets[name] = calibrated(name, 2 * args.targets, seed=0)

    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, reps {args.reps} "
          "(best of), deviation = max|y - y_fp32| / max|y_fp32| on raw outputs")
    header = f"{'device':6} {'model':22} {'batch':>5} {'mode':8} {'images_per_s':>12} {'speedup':>7} {'rel_dev':>9}"
    print(header)
    print("-" * len(header))
    for dev_name in devices:
        dev = torch.device(dev_name)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        modes = CUDA_MODES if dev.type == "cuda" else CPU_MODES
        for name, net in nets.items():
            # one copy per memory format, so that switching modes converts no weights
            by_format = {False: copy.deepcopy(net).to(dev).eval(),
                         True: copy.deepcopy(net).to(dev).to(memory_format=torch.channels_last).eval()}
            for bs in args.batch_sizes:
                batch = images[:bs]

                def run(mode: str, batch=batch, bs=bs) -> np.ndarray:
                    model = by_format[PRECISIONS[mode][1]]
                    return predict_raw(model, batch, batch_size=bs, device=dev, precision=mode)

                ref = run("fp32")
                dev_rel = {m: float(np.max(np.abs(run(m) - ref)) / np.max(np.abs(ref))) for m in modes}
                best = best_times({m: (lambda m=m: run(m)) for m in modes}, args.reps, sync)
                for mode in modes:
                    ips = bs / best[mode]
                    print(f"{dev_name:6} {name:22} {bs:5d} {mode:8} {ips:12.1f} "
                          f"{best['fp32'] / best[mode]:7.2f} {dev_rel[mode]:9.2e}", flush=True)
            del by_format

if __name__ == "__main__":
    main()
