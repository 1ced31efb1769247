"""Liver network inference throughput (participants per second) on CPU (and CUDA when available).

For the teacher (20203 GRE ``(10, 160, 160)``) and the student (20254 IDEAL
``(36, 232, 256)``) at batch sizes 1 and 8, times
:func:`ukbmri.infer.liver_nets.predict_liver` on raw magnitude tensors
(per-sample ZeroMeanStd1 included) and the network alone
(:func:`predict_prepared` on normalised inputs): warm-up, then best of N.

Weights: the bundled demonstration weights when present, else random
(Keras-default) initialisation; weights do not change the arithmetic cost.

Usage::

    python benchmarks/bench_liver_nets.py
    python benchmarks/bench_liver_nets.py --reps 3 --batch-sizes 1 8 --threads 2

Timings on a shared machine are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ukbmri.infer.liver_nets import (
    build_liver_model,
    default_liver_weights,
    load_liver_net,
    predict_liver,
    predict_prepared,
    save_liver_net,
)
from ukbmri.preprocess.liver_tensors import zero_mean_std1


def _net(kind: str, tmp: Path):
    root = default_liver_weights()
    if root is not None:
        return load_liver_net(root / kind), "bundled demo weights"
    from ukbmri.train.liver_fit import init_keras_

    model = init_keras_(build_liver_model(kind, mean_variance=True), torch.Generator().manual_seed(0))
    return load_liver_net(save_liver_net(tmp / kind, model, kind=kind)), "random init"


def _best(fn, reps: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--n", type=int, default=8, help="participants per timed call")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.n} participants per call")
    print(f"{'net':<8} {'device':<6} {'batch':>5} {'end-to-end p/s':>15} {'network only p/s':>17} {'normalise ms/p':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("teacher", "student"):
            net, source = _net(kind, Path(tmp))
            x = (rng.random((args.n, *net.input_shape)) * 1000).astype(np.float32)
            xn = np.stack([zero_mean_std1(a) for a in x])
            t_norm = _best(lambda: [zero_mean_std1(a) for a in x], args.reps) / args.n
            for dev in devices:
                net.model.to(dev)
                for bs in args.batch_sizes:
                    t_all = _best(lambda: predict_liver(net, x, batch_size=bs, device=dev), args.reps)
                    t_net = _best(lambda: predict_prepared(net, xn, batch_size=bs, device=dev), args.reps)
                    print(f"{kind:<8} {dev:<6} {bs:>5} {args.n / t_all:>15.2f} {args.n / t_net:>17.2f} "
                          f"{1000 * t_norm:>15.1f}")
                net.model.to("cpu")
            print(f"  ({kind}: {source})")


if __name__ == "__main__":
    main()
