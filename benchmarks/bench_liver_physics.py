"""Physics liver fat per participant (20203 + 20254 zips), on one core: time against the 2 s budget.

Writes one synthetic participant's two liver zips, then times ``liver_fat_from_zip`` for each
(read included) and the GRE/IDEAL ``cross_check``, ``--repeats`` times, with torch and BLAS
limited to one thread. Prints the median seconds per protocol, the total per participant and
its ratio to the 2 s budget; also the time of the ROI step alone (maps given) so that the
cost of the localisation can be told from the fits'.

Usage: ``python benchmarks/bench_liver_physics.py [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

BUDGET_S = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from ukbmri import synth
    from ukbmri.io import read_zip
    from ukbmri.physics.inputs import multiecho_from_zip
    from ukbmri.physics.liver import cross_check, liver_fat_from_maps, liver_fat_from_zip, roi_maps_for

    rng = np.random.default_rng(0)
    (p,) = synth.sample_participants(1, rng)
    with tempfile.TemporaryDirectory() as d:
        paths = synth.write_participant(p, d, fields=(20203, 20254), rng=rng)
        times: dict[str, list[float]] = {"20203": [], "20254": [], "cross_check": [], "roi_only_20203": []}
        for _ in range(args.repeats):
            res = {}
            for field in (20203, 20254):
                t = time.perf_counter()
                res[field] = liver_fat_from_zip(read_zip(paths[field]))
                times[str(field)].append(time.perf_counter() - t)
            t = time.perf_counter()
            flags = cross_check(res[20203], res[20254])
            times["cross_check"].append(time.perf_counter() - t)
            data = multiecho_from_zip(read_zip(paths[20203]))
            maps = roi_maps_for(data)
            t = time.perf_counter()
            liver_fat_from_maps(data, maps)
            times["roi_only_20203"].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    total = med["20203"] + med["20254"] + med["cross_check"]
    for k, v in med.items():
        print(f"{k:>16}: {v:7.3f} s (median of {args.repeats})")
    print(f"per participant: {total:.3f} s = {total / BUDGET_S:.2f} x the {BUDGET_S:g} s budget (one thread)")
    print(f"GRE {res[20203].pdff_percent:.2f} % {res[20203].flags}, IDEAL {res[20254].pdff_percent:.2f} % "
          f"{res[20254].flags}, truth {p.liver_pdff_percent:.2f} %, cross-check {flags}")


if __name__ == "__main__":
    main()
