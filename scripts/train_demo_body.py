"""Reproduce the bundled demonstration body module (phantom-trained, NOT for real data).

    python scripts/train_demo_body.py --work /tmp/demo_body [--participants 160] [--out src/ukbmri/data/modules/demo_body]

Steps (each resumable): synthetic 20201 cohort -> MIMIR images -> K-fold training and
calibration of a SmallCNN module on the phantom ground truth.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

TARGETS = ["weight_kg", "height_cm", "sex_male", "vat_l", "asat_l", "liver_volume_l",
           "thigh_muscle_volume_l", "liver_pdff_percent"]


def ukbmri(*args: str) -> None:
    cmd = [sys.executable, "-m", "ukbmri.cli.main", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--participants", type=int, default=160)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("src/ukbmri/data/modules/demo_body"))
    a = ap.parse_args()
    zips, cache = a.work / "zips", a.work / "cache"
    if not (zips / "truth.csv").is_file():
        ukbmri("synth", "--out", str(zips), "--participants", str(a.participants), "--seed", str(a.seed),
               "--fields", "20201", "--workers", str(a.workers))
    ukbmri("preprocess", "body", str(zips), "--cache", str(cache), "--workers", str(a.workers))
    truth = pd.read_csv(zips / "truth.csv")
    targets = a.work / "targets.csv"
    truth[["eid", *TARGETS]].to_csv(targets, index=False)
    ukbmri("train", "body", "--images", str(cache), "--targets", str(targets), "--out", str(a.out),
           "--folds", str(a.folds), "--backbone", "smallcnn", "--iterations", str(a.iterations),
           "--batch-size", str(a.batch_size), "--lr", str(a.lr), "--seed", str(a.seed), "--demo", "--overwrite")


if __name__ == "__main__":
    main()
