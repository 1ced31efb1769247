"""How close body preprocessing of one 20201 zip is to the floor of just inflating it.

    python benchmarks/bench_floor.py [--zip PATH] [--rounds 3] [--baseline OTHER_CHECKOUT/src]

Without ``--zip`` one full-size participant is written with ``ukbmri.synth`` (field
20201 only: 6 stations x in/opp/F/W, 1328 DICOMs). Every measurement runs in its own
fresh subprocess on one thread (``OMP_NUM_THREADS=1``), rounds interleaved, and the
median over rounds of each worker's best CPU time is printed (CPU time: the machine
may be shared; wall time is printed too):

* inflate floors: every member / only the water and fat members, with the standard
  library's zlib and with ISA-L (``isal``) when installed;
* ``pydicom``: ``dcmread`` + ``pixel_array`` of every member (the usual approach);
* ``ukbmri``: ``preprocess_body`` (read, fuse, MIMIR 2D image) of this checkout, and of
  ``--baseline`` (another checkout's ``src``) when given, side by side;
* peak memory of ``preprocess_body``: resident-set high-water mark (VmHWM) of the
  subprocess and the part above the interpreter with its imports loaded.

Targets (issue 14): preprocessing <= 0.5 s on one core, <= 2.5x the zlib floor of all
members, peak <= 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

_WORKER = r'''
import json, os, sys, time, zipfile, zlib, io, warnings

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")

kind, zpath, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
members = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None

def raw_members(names=None):
    zf = zipfile.ZipFile(zpath)
    infos = [i for i in zf.infolist() if not i.is_dir() and (names is None or i.filename in names)]
    out = []
    with open(zpath, "rb") as fh:
        for i in infos:
            fh.seek(i.header_offset)
            head = fh.read(30)
            n, m = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
            fh.seek(i.header_offset + 30 + n + m)
            out.append((fh.read(i.compress_size), i.CRC))
    return out

if kind.startswith("inflate"):
    lib = zlib
    if "isal" in kind:
        from isal import isal_zlib as lib
    comp = raw_members(set(members) if "wf" in kind else None)
    def run():
        for c, crc in comp:
            d = lib.decompress(c, -15)
            assert lib.crc32(d) == crc
elif kind == "pydicom":
    import pydicom
    def run():
        with zipfile.ZipFile(zpath) as zf:
            for name in zf.namelist():
                if name.endswith(".dcm"):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ds = pydicom.dcmread(io.BytesIO(zf.read(name)))
                        ds.pixel_array
elif kind.startswith("ukbmri"):
    from ukbmri.preprocess.body import preprocess_body
    base = vm("VmRSS")
    def run():
        preprocess_body(zpath)
else:
    raise SystemExit(f"unknown kind {kind}")

run()
walls, cpus = [], []
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    run()
    walls.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
out = {"wall": min(walls), "cpu": min(cpus)}
if kind.startswith("ukbmri"):
    out["peak_mb"] = vm("VmHWM")
    out["peak_above_imports_mb"] = vm("VmHWM") - base
print(json.dumps(out))
'''


def _make_zip(out_dir: Path) -> Path:
    import numpy as np

    from ukbmri.synth import sample_participants, write_participant

    rng = np.random.default_rng(0)
    p = sample_participants(1, rng)[0]
    return Path(write_participant(p, out_dir, fields=(20201,), rng=rng)[20201])


def _wf_members(zpath: Path) -> list[str]:
    from ukbmri.io import dixon_kind, scan_zip

    z = scan_zip(zpath)
    return [m for s in z.series if dixon_kind(s.description) in ("W", "F") for m in s.members]


def _run(kind: str, zpath: Path, src: Path, repeats: int, extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _WORKER, kind, str(zpath), str(repeats), *extra]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"{kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zip", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per subprocess (best kept)")
    ap.add_argument("--baseline", type=Path, help="another checkout's src folder, measured side by side")
    args = ap.parse_args()
    sys.path.insert(0, str(SRC))
    with tempfile.TemporaryDirectory() as tmp:
        zpath = args.zip or _make_zip(Path(tmp))
        wf = json.dumps(_wf_members(zpath))
        try:
            import isal  # noqa: F401

            has_isal = True
        except ImportError:
            has_isal = False
        kinds = {"inflate all (zlib)": ("inflate", SRC, []), "inflate W+F (zlib)": ("inflate-wf", SRC, [wf])}
        if has_isal:
            kinds["inflate all (ISA-L)"] = ("inflate-isal", SRC, [])
            kinds["inflate W+F (ISA-L)"] = ("inflate-wf-isal", SRC, [wf])
        kinds["pydicom read+decode all"] = ("pydicom", SRC, [])
        kinds["ukbmri preprocess_body"] = ("ukbmri", SRC, [])
        if args.baseline:
            kinds["baseline preprocess_body"] = ("ukbmri-baseline", args.baseline.resolve(), [])
        results: dict[str, list[dict]] = {k: [] for k in kinds}
        for _ in range(args.rounds):
            for label, (kind, src, extra) in kinds.items():
                results[label].append(_run(kind, zpath, src, args.repeats, extra))
        print(f"zip: {zpath} ({zpath.stat().st_size / 2**20:.1f} MiB), {args.rounds} rounds, one thread")
        med = {k: statistics.median(r["cpu"] for r in v) for k, v in results.items()}
        wall = {k: statistics.median(r["wall"] for r in v) for k, v in results.items()}
        floor = med["inflate all (zlib)"]
        print(f"{'':32s} {'cpu s':>7s} {'wall s':>7s} {'x zlib floor':>12s}")
        for k in kinds:
            print(f"{k:32s} {med[k]:7.3f} {wall[k]:7.3f} {med[k] / floor:12.2f}")
        for k in ("ukbmri preprocess_body", "baseline preprocess_body"):
            if k in results:
                peak = max(r["peak_mb"] for r in results[k])
                above = max(r["peak_above_imports_mb"] for r in results[k])
                print(f"{k}: peak RSS {peak:.0f} MB ({above:.0f} MB above the interpreter and imports)")
        ours = med["ukbmri preprocess_body"]
        if "baseline preprocess_body" in med:
            print(f"speed-up over baseline: {med['baseline preprocess_body'] / ours:.2f}x")
        print(f"targets: <= 0.5 s ({ours:.3f}), <= 2.5x zlib floor ({ours / floor:.2f}x), "
              f"peak <= 400 MB ({max(r['peak_mb'] for r in results['ukbmri preprocess_body']):.0f})")


if __name__ == "__main__":
    main()
