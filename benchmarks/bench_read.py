"""Read-speed floor for one full 20201 (Dixon neck-to-knee) zip.

    python benchmarks/bench_read.py [ZIP] [--repeat N]

Prints, best of N runs:
  * unzip only      - decompress every member (ZipSource.read), nothing parsed: the floor under everything
  * scan_zip        - headers only (what `ukbmri inspect` does)
  * read_zip        - headers + all pixels decoded to float32 series
  * naive pydicom   - dcmread(BytesIO) + pixel_array * slope + intercept per member (the usual approach)
with files per second and the ratios. Without ZIP, one participant is generated with
ukbmri.synth.write_participant (or, when ukbmri.synth is not available, with a built-in
generator of the same layout: 6 stations x 4 series, UK Biobank matrix sizes).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np


def _best(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU (process) time over ``repeat`` runs, and the last result.

    CPU time is reported too because on a shared machine wall time includes waiting for a core.
    """
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


# -- fallback generator (only when ukbmri.synth is not importable) -----------------------
STATIONS = [(168, 224, 64, 3.0), (174, 224, 44, 4.5), (174, 224, 44, 4.5), (174, 224, 44, 4.5),
            (162, 224, 72, 3.5), (156, 224, 64, 4.0)]


def _fallback_20201(out_dir: Path, rng: np.random.Generator) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    path = out_dir / "1000001_20201_2_0.zip"
    z_top = 0.0
    number = 0
    manifest = ["filename,patientid,date,series discription,seriesid"]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for st, (rows, cols, nsl, dz) in enumerate(STATIONS, start=1):
            yy, xx = np.mgrid[0:rows, 0:cols]
            body = (((yy - rows / 2) / (rows * 0.4)) ** 2 + ((xx - cols / 2) / (cols * 0.45)) ** 2) < 1
            bh = "noBH" if st in (1, 5, 6) else "BH_17s"
            for kind in ("in", "opp", "F", "W"):
                number += 1
                suid = generate_uid()
                for j in range(nsl):
                    img = np.where(body, 800 + 400 * np.sin(xx / 9.0 + j / 5.0), 0) + rng.normal(0, 20, (rows, cols))
                    px = np.clip(img, 0, 4095).astype("<u2")
                    ds = Dataset()
                    ds.file_meta = FileMetaDataset()
                    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
                    ds.SOPClassUID = MRImageStorage
                    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = suid, number, j + 1
                    ds.SeriesDescription = f"Dixon_{bh}_{kind}"
                    ds.ImageType = ["ORIGINAL", "PRIMARY", "DIXON", {"in": "IN_PHASE", "opp": "OPP_PHASE",
                                                                    "F": "FAT", "W": "WATER"}[kind]]
                    ds.AcquisitionDate, ds.AcquisitionTime = "20190603", f"11{st:02d}00.500000"
                    ds.ImagePositionPatient = [-250.0, -190.0, z_top - dz * j]
                    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
                    ds.PixelSpacing = [2.232142925, 2.232142925]
                    ds.SliceThickness, ds.EchoTime, ds.MagneticFieldStrength = dz, 2.39, 1.5
                    ds.Rows, ds.Columns = rows, cols
                    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
                    ds.PixelData = px.tobytes()
                    buf = io.BytesIO()
                    ds.save_as(buf, enforce_file_format=True)
                    name = f"{ds.SOPInstanceUID}.dcm"
                    zf.writestr(name, buf.getvalue())
                    manifest.append(f'{name},X,"Jun 3, 2019",{ds.SeriesDescription},{suid}')
            z_top -= dz * nsl - 35.0
        zf.writestr("manifest.csv", "\n".join(manifest) + "\n")
    return path


def make_zip(out_dir: Path) -> tuple[Path, str]:
    rng = np.random.default_rng(0)
    try:
        from ukbmri.synth import sample_participants, write_participant
    except ImportError as exc:
        return _fallback_20201(out_dir, rng), f"built-in generator (ukbmri.synth not importable: {exc})"
    (p,) = sample_participants(1, rng)
    paths = write_participant(p, out_dir, fields=(20201,), rng=rng)
    return Path(paths[20201]), "ukbmri.synth.write_participant"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zip", nargs="?", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import pydicom

    from ukbmri.io import ZipSource, read_zip, scan_zip

    with tempfile.TemporaryDirectory() as tmp:
        if args.zip is None:
            t0 = time.perf_counter()
            path, how = make_zip(Path(tmp))
            print(f"generated {path.name} with {how} in {time.perf_counter() - t0:.1f} s")
        else:
            path = args.zip
        size_mb = path.stat().st_size / 2**20

        def unzip_only() -> int:
            with ZipSource(path) as src:
                return sum(len(src.read(n)) for n in src.names)

        def naive() -> int:
            n = 0
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    if "manifest" in name.lower():
                        continue
                    ds = pydicom.dcmread(io.BytesIO(zf.read(name)))
                    _ = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) + float(
                        ds.get("RescaleIntercept", 0))
                    n += 1
            return n

        t_unzip, c_unzip, nbytes = _best(unzip_only, args.repeat)
        t_scan, c_scan, z = _best(lambda: scan_zip(path), args.repeat)
        t_read, c_read, zr = _best(lambda: read_zip(path), args.repeat)
        t_naive, c_naive, _ = _best(naive, max(1, min(args.repeat, 2)))

    n = z.n_images
    px = sum(s.pixels.nbytes for s in zr.series) / 2**20
    print(f"zip: {path.name}  field {z.field}  {len(z.series)} series  {n} DICOM files  "
          f"{size_mb:.1f} MiB zipped, {nbytes / 2**20:.1f} MiB unzipped, {px:.0f} MiB float32 pixels")
    print(f"python {sys.version.split()[0]}, pydicom {pydicom.__version__}, numpy {np.__version__}; best of {args.repeat}")
    rows = [("unzip only", t_unzip, c_unzip), ("scan_zip (headers)", t_scan, c_scan),
            ("read_zip (all pixels)", t_read, c_read), ("naive pydicom", t_naive, c_naive)]
    print(f"  {'':<22} {'wall s':>8} {'files/s':>9} {'cpu s':>8}")
    for label, t, c in rows:
        print(f"  {label:<22} {t:8.3f} {n / t:9.0f} {c:8.3f}")
    print(f"  read_zip / scan_zip      {t_read / t_scan:.2f}x wall, {c_read / c_scan:.2f}x cpu")
    print(f"  scan_zip / unzip only    {t_scan / t_unzip:.2f}x wall, {c_scan / c_unzip:.2f}x cpu")
    print(f"  naive pydicom / read_zip {t_naive / t_read:.2f}x wall, {c_naive / c_read:.2f}x cpu")


if __name__ == "__main__":
    main()
