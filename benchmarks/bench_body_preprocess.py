"""Body preprocessing cost versus the read+decode floor of the same 20201 zip.

    .venv/bin/python benchmarks/bench_body_preprocess.py [--zip PATH] [--repeats 3]

Without ``--zip`` a full-size synthetic participant is written to a temporary
folder with :func:`ukbmri.synth.write_participant` (field 20201 only); when the
synth package does not provide it yet, a stand-in writer here produces a zip
with UK Biobank's geometry (6 stations x in/opp/F/W, 1328 DICOMs, 12-bit).

Prints, best of ``--repeats`` (wall and CPU seconds):
* read+decode floor: ``read_zip(path, pixels=True)`` (every series decoded);
* preprocessing: ``preprocess_body(path)`` (reads, decodes W/F only, fuses, builds the 2D image),
  with its stages timed separately;
* their ratio (target <= 1.5);
* peak memory of ``preprocess_body`` in a fresh subprocess: tracemalloc peak and the
  peak resident set size (VmHWM), also above the interpreter with imports loaded (target < 1.5 GB).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

PS = 2.232142925
# station: rows, slices, slice spacing (mm); UK Biobank neck-to-knee
_STATIONS = [(168, 64, 3.0), (174, 44, 4.5), (174, 44, 4.5), (174, 44, 4.5), (162, 72, 3.5), (156, 64, 4.0)]
_OVERLAP_MM = [33.0, 36.5, 38.0, 34.0, 40.0]
_IMAGE_TYPE = {"W": "WATER", "F": "FAT", "in": "IN_PHASE", "opp": "OPP_PHASE"}


def _standin_zip(path: Path, seed: int = 0) -> Path:
    """UK-Biobank-shaped 20201 zip: elliptic trunk, fat ring, noise (stand-in for ukbmri.synth)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    rng = np.random.default_rng(seed)
    study = "1.2.826.0.1.3680043.8.498.7"
    top = 150.0
    number = 1
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for st, (rows, n, dz) in enumerate(_STATIONS):
            y0 = -rows / 2 * PS
            x = -250.0 + PS * np.arange(224)
            y = y0 + PS * np.arange(rows)
            xx, yy = np.meshgrid(x, y)
            ring = (xx / 170.0) ** 2 + (yy / 105.0) ** 2
            for kind in ("in", "opp", "F", "W"):
                desc = ("Dixon_BH_17s_" if 1 <= st <= 3 else "Dixon_noBH_") + kind
                for k in range(n):
                    z = top - k * dz
                    scale = 1.0 + 0.2 * np.sin(z / 90.0)
                    water = np.where(ring < 0.7 * scale, 900.0, np.where(ring < scale, 150.0, 0.0))
                    fat = np.where(ring < 0.7 * scale, 120.0, np.where(ring < scale, 800.0, 0.0))
                    img = {"W": water, "F": fat, "in": water + fat, "opp": np.abs(water - fat)}[kind]
                    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 4095).astype("<u2")
                    uid = f"{study}.{number}.{k + 1}"
                    meta = FileMetaDataset()
                    meta.MediaStorageSOPClassUID = MRImageStorage
                    meta.MediaStorageSOPInstanceUID = uid
                    meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    ds = Dataset()
                    ds.file_meta = meta
                    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, uid
                    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, f"{study}.{number}"
                    ds.Modality, ds.Manufacturer, ds.PatientID = "MR", "SIEMENS", "pseudo"
                    ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = number, desc, k + 1
                    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "DIXON", _IMAGE_TYPE[kind]]
                    acq = datetime(2019, 6, 3, 10, st, 0)
                    ds.AcquisitionDate, ds.AcquisitionTime = acq.strftime("%Y%m%d"), acq.strftime("%H%M%S.%f")
                    ds.ImagePositionPatient = [f"{v:.10g}" for v in (-250.0, y0, z)]
                    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
                    ds.PixelSpacing = [f"{PS:.10g}"] * 2
                    ds.SliceThickness = f"{dz:g}"
                    ds.Rows, ds.Columns = img.shape
                    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
                    ds.PixelData = img.tobytes()
                    buf = io.BytesIO()
                    ds.save_as(buf, enforce_file_format=True)
                    zf.writestr(f"1.3.12.2.{number}.{k + 1}.dcm", buf.getvalue())
                number += 1
            if st < len(_OVERLAP_MM):
                top = top - (n - 1) * dz + _OVERLAP_MM[st]
    return path


def _make_zip(out_dir: Path) -> tuple[Path, str]:
    try:
        from ukbmri.synth import sample_participants, write_participant
    except ImportError:
        how = "stand-in writer (ukbmri.synth.write_participant not available)"
        return _standin_zip(out_dir / "1000001_20201_2_0.zip"), how
    rng = np.random.default_rng(0)
    p = sample_participants(1, rng)[0]
    paths = write_participant(p, out_dir, fields=(20201,), rng=rng)
    return Path(paths[20201]), "ukbmri.synth.write_participant"


def _best(fn, repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


_MEMORY_PROBE = r"""
import json, resource, sys, tracemalloc
from pathlib import Path
import numpy as np
from ukbmri.preprocess import preprocess_body
import ukbmri.io, pydicom

def hwm_mb():
    # VmHWM belongs to this process image (ru_maxrss can carry the forking parent's peak over exec)
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

base = hwm_mb()
tracemalloc.start()
r = preprocess_body(sys.argv[1])
cur, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
top = hwm_mb()
print(json.dumps({"tracemalloc_peak_mb": peak / 2**20, "maxrss_mb": top, "maxrss_growth_mb": top - base}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zip", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from ukbmri.io import read_zip
    from ukbmri.preprocess import collect_stations, fuse, mimir_image, preprocess_body
    from ukbmri.preprocess.body import is_water_or_fat

    with tempfile.TemporaryDirectory() as tmp:
        if args.zip is None:
            t0 = time.perf_counter()
            path, how = _make_zip(Path(tmp))
            print(f"wrote {path.name} with {how} in {time.perf_counter() - t0:.1f} s")
        else:
            path, how = args.zip, "given"
        with zipfile.ZipFile(path) as zf:
            print(f"zip: {path.stat().st_size / 2**20:.1f} MB, {len(zf.namelist())} members")
        read_zip(path, pixels=True)  # warm the page cache and imports
        floor = _best(lambda: read_zip(path, pixels=True), args.repeats)
        total = _best(lambda: preprocess_body(path), args.repeats)

        z = read_zip(path, pixels=is_water_or_fat, expect_field=20201)
        read_wf = _best(lambda: read_zip(path, pixels=is_water_or_fat, expect_field=20201), args.repeats)
        stations = collect_stations(z.series, source=z.path).stations
        fuse_t = _best(lambda: fuse(stations), args.repeats)
        fused = fuse(stations)
        image_t = _best(lambda: mimir_image(fused.water, fused.fat), args.repeats)
        print(f"fused volume {fused.water.shape}, stations {[s.water.shape for s in stations]}")

        print(f"{'':34s}{'wall s':>9s}{'cpu s':>9s}")
        for name, (w, c) in [
            ("read+decode floor (all series)", floor),
            ("preprocess_body (total)", total),
            ("  read_zip (W/F decoded)", read_wf),
            ("  fuse_stations", fuse_t),
            ("  mimir_image", image_t),
        ]:
            print(f"{name:34s}{w:9.3f}{c:9.3f}")
        print(
            f"ratio preprocess / read+decode floor: wall {total[0] / floor[0]:.2f}, "
            f"cpu {total[1] / floor[1]:.2f} (target <= 1.5)"
        )

        probe = [sys.executable, "-c", _MEMORY_PROBE, str(path)]
        out = subprocess.run(probe, capture_output=True, text=True, check=True)
        mem = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"peak memory of preprocess_body: tracemalloc {mem['tracemalloc_peak_mb']:.0f} MB, "
            f"peak RSS {mem['maxrss_mb']:.0f} MB ({mem['maxrss_growth_mb']:.0f} MB above the loaded interpreter) "
            "(target < 1500 MB)"
        )


if __name__ == "__main__":
    main()
