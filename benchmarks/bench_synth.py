"""Speed of the synthetic cohort generator (``ukbmri synth``).

    python benchmarks/bench_synth.py [--participants N] [--repeat R]

Prints, per field, seconds per participant (best of R, wall and CPU time: on a
shared machine wall time includes waiting for a core), DICOM files per second
and zip size; then the cost of sampling a participant, building its phantom,
integrating its ground truth, and a stage breakdown of one 20201 zip
(phantom labels on the six stations, MR physics + noise, DICOM encoding,
deflate + zip writing).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from ukbmri.synth import build_phantom, sample_participants, truth_row, write_participant
from ukbmri.synth.dicomenc import SeriesEncoder, make_uid
from ukbmri.synth.layout import dixon_scans
from ukbmri.synth.quirks import Quirks
from ukbmri.synth.signal import dixon_images
from ukbmri.synth.ukb_writer import _Session, _template  # internals: stage breakdown only


def _best(fn, repeat: int):
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def _stage_breakdown(p, phantom) -> dict[str, float]:
    scans = dixon_scans(p, Quirks())
    t = {"labels": 0.0, "physics": 0.0, "encode": 0.0, "deflate": 0.0}
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for scan in scans:
            g = scan.geometry
            t0 = time.perf_counter()
            lab = phantom.labels_grid(g.xs(), g.ys(), g.zs())
            t1 = time.perf_counter()
            imgs = dixon_images(lab, phantom.tissues, np.ones(lab.shape, np.float32), rng)
            t2 = time.perf_counter()
            t["labels"] += t1 - t0
            t["physics"] += t2 - t1
            for kind, px in imgs.items():
                t0 = time.perf_counter()
                s = _Session(p, "SYN", make_uid("s"), make_uid("f"), p.visit_datetime, 2)
                tmpl = _template(
                    s, description=f"Dixon_{kind}", series_number=1, series_uid=make_uid(kind), image_type=["M"],
                    acquired=p.visit_datetime, geometry=g, rows=g.rows, tr_ms=6.7, flip_deg=10, mr_type="3D",
                    sequence="x", echo_train=2,
                )
                enc = SeriesEncoder(tmpl, ["InstanceNumber", "ImagePositionPatient"])
                files = [
                    enc.encode(px[i], {"SOPInstanceUID": make_uid(kind, scan.station, i), "InstanceNumber": i + 1,
                                       "ImagePositionPatient": ["0", "0", str(z)]})
                    for i, z in enumerate(g.z)
                ]
                t1 = time.perf_counter()
                for i, data in enumerate(files):
                    zf.writestr(f"{kind}{scan.station}_{i}.dcm", data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
                t2 = time.perf_counter()
                t["encode"] += t1 - t0
                t["deflate"] += t2 - t1
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--participants", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    t0 = time.perf_counter()
    people = sample_participants(max(args.participants, 50), np.random.default_rng(0))
    t_sample = (time.perf_counter() - t0) / len(people)
    people = people[: args.participants]
    print(f"sample_participants: {t_sample * 1e3:.1f} ms / participant")

    per_field: dict[int, list[tuple[float, float, int, int]]] = {20201: [], 20203: [], 20254: []}
    phantoms, truths = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(people):
            t, _, ph = _best(lambda p=p: build_phantom(p), args.repeat)
            phantoms.append(t)
            t, _, _ = _best(lambda p=p, ph=ph: truth_row(p, ph), args.repeat)
            truths.append(t)
            for field in per_field:
                wall, cpu, paths = _best(
                    lambda p=p, ph=ph, field=field: write_participant(
                        p, tmp, fields=(field,), rng=np.random.default_rng([0, i]), phantom=ph
                    ),
                    args.repeat,
                )
                path = Path(next(iter(paths.values())))
                with zipfile.ZipFile(path) as zf:
                    n = sum(name.endswith(".dcm") for name in zf.namelist())
                per_field[field].append((wall, cpu, n, path.stat().st_size))
        print(f"build_phantom:       {np.mean(phantoms) * 1e3:.1f} ms / participant")
        print(f"truth_row:           {np.mean(truths):.2f} s / participant")
        total_wall = total_cpu = 0.0
        for field, rows in per_field.items():
            a = np.array(rows, dtype=float)
            wall, cpu, n, size = a.mean(axis=0)
            total_wall += wall
            total_cpu += cpu
            print(f"field {field}: {wall:6.2f} s wall, {cpu:6.2f} s CPU per participant; "
                  f"{n:5.0f} DICOM files ({n / wall:6.0f} files/s), zip {size / 2**20:6.1f} MiB")
        print(f"all three fields:    {total_wall:.2f} s wall, {total_cpu:.2f} s CPU per participant "
              f"(+ {np.mean(truths):.2f} s truth)")
        stages = _stage_breakdown(people[0], build_phantom(people[0]))
        tot = sum(stages.values())
        print("20201 stage breakdown: " + ", ".join(f"{k} {v:.2f} s ({100 * v / tot:.0f} %)" for k, v in stages.items()))


if __name__ == "__main__":
    main()
