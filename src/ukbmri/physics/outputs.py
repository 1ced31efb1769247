"""Writing fat-water results: maps (.npy + NIfTI), a PNG montage, ROI overlays, summary tables.

File names for an input ``<stem>.<ext>`` (see :func:`ukbmri.physics.inputs.input_stem`)::

    <stem>_ff_percent.npy|.nii.gz   <stem>_r2star_per_s.npy|.nii.gz   <stem>_b0_hz.npy|.nii.gz
    <stem>_water.npy|.nii.gz        <stem>_fat.npy|.nii.gz            <stem>_residual.npy|.nii.gz
    <stem>_mask.npy                 <stem>_montage.png
    <stem>_summary.json             <stem>_summary.csv

Arrays are float32 ``(x, y, z)`` (the mask bool). NIfTI files carry the input's affine
(``Volume.affine_ras``), or an identity geometry (with a warning) when the input has
none. Display convention of the PNGs: with an affine (DICOM / NIfTI) ``x`` runs
horizontally and ``y`` downwards; without one (ISMRM arrays) the array is shown as
stored (first axis downwards). Every write is atomic.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ukbmri.errors import FitInputError
from ukbmri.io.atomic import atomic_path, save_npy, write_text
from ukbmri.io.nifti import save_volume
from ukbmri.physics.multiecho import FatWaterMaps, MultiEcho, volume_for

__all__ = [
    "MAP_NAMES",
    "FatWaterOutputs",
    "write_fatwater_outputs",
    "summary_statistics",
    "save_montage",
    "save_roi_png",
    "load_roi",
]

log = logging.getLogger(__name__)

#: map attribute -> file suffix
MAP_NAMES = ("ff_percent", "r2star_per_s", "b0_hz", "water", "fat", "residual")


@dataclass(frozen=True)
class FatWaterOutputs:
    """What :func:`write_fatwater_outputs` wrote, and the summary rows."""

    files: dict[str, Path]
    summary: list[dict] = field(default_factory=list)
    identity_affine: bool = False


def _stats(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "sd": float("nan")}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "sd": float(v.std())}


def summary_statistics(maps: FatWaterMaps, roi: np.ndarray | None = None) -> list[dict]:
    """Rows (``region`` = ``mask`` and, when given, ``roi``) with n, mean / median / SD of FF and R2*."""
    rows = []
    regions = [("mask", maps.mask)]
    if roi is not None:
        regions.append(("roi", np.asarray(roi, dtype=bool) & maps.mask))
    for name, m in regions:
        ff = maps.ff_percent[m]
        r2 = maps.r2star_per_s[m]
        ok = np.isfinite(ff)
        row: dict = {"region": name, "n_voxels": int(ok.sum())}
        for key, vals in (("ff", ff[ok]), ("r2star", r2[ok])):
            unit = "percent" if key == "ff" else "per_s"
            for stat, val in _stats(vals).items():
                row[f"{key}_{stat}_{unit}"] = val
        rows.append(row)
    return rows


def load_roi(path: str | os.PathLike[str], shape: tuple[int, int, int]) -> np.ndarray:
    """A boolean ROI mask from ``.npy`` or NIfTI, checked against the maps' ``(x, y, z)`` shape."""
    p = Path(path)
    name = p.name.lower()
    if not p.is_file():
        raise FitInputError("ROI mask file not found", path=p)
    if name.endswith(".npy"):
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise FitInputError("not a readable .npy ROI mask", path=p, found=type(exc).__name__) from exc
    elif name.endswith(".nii") or name.endswith(".nii.gz"):
        import nibabel as nib

        try:
            arr = np.asanyarray(nib.load(str(p)).dataobj)
        except Exception as exc:
            raise FitInputError("not a readable NIfTI ROI mask", path=p, found=type(exc).__name__) from exc
    else:
        raise FitInputError("unsupported ROI mask type", path=p, expected=".npy, .nii or .nii.gz", found=p.suffix)
    if arr.ndim == 2 and shape[2] == 1:
        arr = arr[:, :, None]
    if arr.shape != tuple(shape):
        raise FitInputError("ROI mask shape does not match the images", path=p, expected=tuple(shape), found=arr.shape)
    if not np.all(np.isfinite(arr)):
        raise FitInputError("ROI mask has non-finite values", path=p)
    return arr != 0


def _display(a2d: np.ndarray, transpose: bool) -> np.ndarray:
    return a2d.T if transpose else a2d


def save_montage(maps: FatWaterMaps, path: str | os.PathLike[str], *, transpose: bool = True,
                 max_slices: int = 12, title: str | None = None) -> Path:
    """PNG montage: one row per slice (at most ``max_slices``, evenly spaced), columns FF, R2*, B0, water, fat."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    nz = maps.shape[2]
    zs = np.unique(np.linspace(0, nz - 1, min(nz, max_slices)).round().astype(int))
    cols = [("ff_percent", "fat fraction (%)", (0.0, 100.0), "magma"),
            ("r2star_per_s", "R2* (1/s)", (0.0, None), "viridis"),
            ("b0_hz", "B0 (Hz)", (None, None), "twilight_shifted"),
            ("water", "water", (0.0, None), "gray"),
            ("fat", "fat", (0.0, None), "gray")]
    sample = _display(maps.ff_percent[:, :, 0], transpose)
    aspect = sample.shape[0] / max(sample.shape[1], 1)
    fig = Figure(figsize=(3.2 * len(cols), 3.2 * aspect * len(zs) + 0.6))
    axes = fig.subplots(len(zs), len(cols), squeeze=False)
    for j, (attr, label, (lo, hi), cmap) in enumerate(cols):
        vol = np.asarray(getattr(maps, attr), dtype=float)
        fin = vol[np.isfinite(vol)]
        vmin = lo if lo is not None else (float(np.percentile(fin, 1)) if fin.size else 0.0)
        vmax = hi if hi is not None else (float(np.percentile(fin, 99)) if fin.size else 1.0)
        if attr == "r2star_per_s":
            vmax = min(vmax, 300.0)
        for i, z in enumerate(zs):
            ax = axes[i, j]
            im = ax.imshow(_display(vol[:, :, z], transpose), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"z={z}", fontsize=8)
        fig.colorbar(im, ax=axes[:, j].tolist(), shrink=0.8, fraction=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    plt.close("all")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    return Path(path)


def save_roi_png(background: np.ndarray, mask: np.ndarray, path: str | os.PathLike[str], *,
                 transpose: bool = True, title: str | None = None, min_side: int = 400) -> Path:
    """PNG of a 2D image (e.g. the first echo) with the ROI tinted and outlined in red.

    Drawn with Pillow, not matplotlib (a few milliseconds: the liver stage writes one per
    acquisition), enlarged by an integer factor to at least ``min_side`` pixels.
    """
    from PIL import Image, ImageDraw
    from scipy import ndimage as ndi

    bg = np.asarray(background, dtype=float)
    m = np.asarray(mask, dtype=bool)
    if bg.ndim == 3:
        bg = bg[:, :, 0]
    if m.ndim == 3:
        m = m[:, :, 0]
    bg, m = _display(bg, transpose), _display(m, transpose)
    fin = bg[np.isfinite(bg)]
    top = float(np.percentile(fin, 99.5)) if fin.size else 1.0
    grey = np.clip(np.nan_to_num(bg) / (top if top > 0 else 1.0), 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[m] = 0.55 * rgb[m] + 0.45 * np.array([255.0, 140.0, 0.0])
    rgb[m & ~ndi.binary_erosion(m)] = (255.0, 0.0, 0.0)
    img = Image.fromarray(rgb.astype(np.uint8), mode="RGB")
    k = max(1, -(-min_side // max(img.size)))
    if k > 1:
        img = img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)
    if title:
        band = Image.new("RGB", (img.width, img.height + 16), (255, 255, 255))
        band.paste(img, (0, 16))
        ImageDraw.Draw(band).text((4, 2), title, fill=(0, 0, 0))
        img = band
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def write_fatwater_outputs(
    maps: FatWaterMaps,
    data: MultiEcho,
    out_dir: str | os.PathLike[str],
    stem: str,
    *,
    roi: np.ndarray | None = None,
    montage: bool = True,
    extra: dict | None = None,
    extra_rows: list[dict] | None = None,
) -> FatWaterOutputs:
    """Write every map as ``.npy`` and ``.nii.gz``, the mask, a montage and the summary (JSON + CSV).

    ``extra``: more keys for the JSON summary (e.g. the voxel size and whether it was
    assumed); ``extra_rows``: more summary rows (e.g. the liver's, see
    :mod:`ukbmri.physics.liver_slices`).
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    identity = data.affine_lps is None
    if identity:
        log.warning("%s: no geometry in the input: NIfTI files get a diagonal affine with voxel size %s mm",
                    data.source, tuple(data.spacing) if data.spacing else (1.0, 1.0, 1.0))
    for name in MAP_NAMES:
        arr = np.asarray(getattr(maps, name), dtype=np.float32)
        files[f"{name}_npy"] = save_npy(out / f"{stem}_{name}.npy", arr)
        files[f"{name}_nii"] = save_volume(volume_for(arr, data), out / f"{stem}_{name}.nii.gz")
    files["mask_npy"] = save_npy(out / f"{stem}_mask.npy", maps.mask.astype(bool))
    if montage:
        files["montage_png"] = save_montage(maps, out / f"{stem}_montage.png", transpose=not identity,
                                            title=f"{stem} ({maps.method})")
    rows = summary_statistics(maps, roi) + list(extra_rows or [])
    meta = {"input": data.source, "method": maps.method, "echo_times_ms": (data.te_s * 1e3).round(4).tolist(),
            "field_strength_t": data.field_strength_t, "shape_xyz": list(maps.shape),
            "identity_affine": identity, "spacing_mm": list(data.spacing) if data.spacing else None,
            **(extra or {}), "info": maps.info, "regions": rows}
    files["summary_json"] = write_text(out / f"{stem}_summary.json", json.dumps(meta, indent=2, default=float) + "\n")
    with atomic_path(out / f"{stem}_summary.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    files["summary_csv"] = out / f"{stem}_summary.csv"
    return FatWaterOutputs(files=files, summary=rows, identity_affine=identity)
