"""Fat-water fitting throughput and peak memory.

Cases (each run in a fresh subprocess so that peak memory is per case):

* ``case12``: ISMRM 2012 case 12, 157 x 256 x 3, 4 echoes (a synthetic volume of that size
  when ../shared is absent);
* ``dixon``: synthetic 224 x 174 x 44, 6 echoes (the size of one UK Biobank Dixon station;
  a published graph-cut implementation took ~150 s and 5.9 GB for such a volume);
* ``liver``: the liver-pipeline figure, a 160 x 160 x 1, 10-echo magnitude slice (20203),
  on one core.

For each method (magnitude, complex) and device (cpu; cuda when available) it prints
voxels fitted per second, wall time and the process's peak resident memory.

Usage: ``python benchmarks/bench_fatwater.py [--cases case12,dixon,liver] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL12 = REPO.parent / "shared" / "data" / "real" / "12.mat"


def _data(case: str):
    import numpy as np

    from ukbmri.physics.phantom import UKB_20203_TE_S, ring_phantom, uniform_te

    rng = np.random.default_rng(0)
    if case == "case12":
        if REAL12.is_file():
            from ukbmri.io.ismrm import load_ismrm_mat

            return load_ismrm_mat(REAL12), "ISMRM case 12"
        data, _ = ring_phantom((157, 256, 3), te_s=uniform_te(4, 1.744e-3, 3.076e-3), rng=rng)
        return data, "synthetic, case-12 size"
    if case == "dixon":
        data, _ = ring_phantom((224, 174, 44), te_s=uniform_te(6, 1.2e-3, 2.0e-3), spacing=(2.23, 2.23, 4.5),
                               b0_range_hz=400.0, rng=rng)
        return data, "synthetic 224x174x44"
    if case == "liver":
        data, _ = ring_phantom((160, 160, 1), te_s=UKB_20203_TE_S, spacing=(2.5, 2.5, 6.0), rng=rng)
        return data, "synthetic 20203 slice"
    raise SystemExit(f"unknown case {case}")


def _child(case: str, method: str, device: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from ukbmri.physics.complex import fit_complex
    from ukbmri.physics.magnitude import fit_magnitude
    from ukbmri.physics.multiecho import default_mask

    data, label = _data(case)
    mask = default_mask(data)
    fit = fit_complex if method == "complex" else fit_magnitude
    t0, c0 = time.perf_counter(), time.process_time()
    fit(data, mask=mask, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    print(json.dumps({"case": case, "data": label, "shape": list(data.images.shape), "method": method,
                      "device": device, "threads": threads, "voxels": int(mask.sum()), "seconds": wall, "cpu_seconds": cpu,
                      "voxels_per_s": mask.sum() / wall, "peak_rss_mb": peak_mb, "peak_gpu_mb": gpu_mb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="case12,dixon,liver")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--child", nargs=4, metavar=("CASE", "METHOD", "DEVICE", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        case, method, device, threads = args.child
        _child(case, method, device, int(threads))
        return
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    threads = args.threads or torch.get_num_threads()
    print(f"{'case':8} {'method':9} {'device':6} {'thr':>3} {'voxels':>9} {'wall s':>8} {'cpu s':>8} {'vox/s':>10} "
          f"{'peak MB':>8}")
    for case in args.cases.split(","):
        for method in ("magnitude", "complex"):
            for device in devices:
                thr = 1 if case == "liver" and device == "cpu" else threads
                out = subprocess.run([sys.executable, __file__, "--child", case, method, device, str(thr)],
                                     capture_output=True, text=True, cwd=REPO)
                if out.returncode != 0:
                    print(f"{case:8} {method:9} {device:6} failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                mem = r["peak_gpu_mb"] if device == "cuda" else r["peak_rss_mb"]
                print(f"{case:8} {method:9} {device:6} {thr:>3} {r['voxels']:>9} {r['seconds']:>8.2f} "
                      f"{r['cpu_seconds']:>8.2f} "
                      f"{r['voxels_per_s']:>10.0f} {mem:>8.0f}   ({r['data']}, {tuple(r['shape'])})", flush=True)


if __name__ == "__main__":
    main()
