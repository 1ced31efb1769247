"""Synthetic inputs for report tests and the report benchmark: a participants table,
a failures ledger and (optionally) body images and ROI overlays written to a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BODY = ["weight_kg", "height_cm", "vat_l"]
LIVER_NETS = ["teacher", "student"]


def make_table(n: int, *, seed: int = 0, body: bool = True, liver: bool = True, flag_every: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"eid": pd.array(1000000 + np.arange(n), dtype="Int64"),
                       "instance": pd.array(np.where(np.arange(n) % 5 == 0, 3, 2), dtype="Int64")})
    if body:
        for c, mu, sd in zip(BODY, (80.0, 170.0, 3.0), (12.0, 9.0, 1.5)):
            v = rng.normal(mu, sd, n)
            var = rng.uniform(0.5, 2.0, n) * (sd / 5) ** 2
            df[c], df[f"{c}_variance"] = v, var
            df[f"{c}_ci95_low"], df[f"{c}_ci95_high"] = v - 1.96 * np.sqrt(var), v + 1.96 * np.sqrt(var)
        df["mimir__weights_sha256"] = "ab" * 32
    if liver:
        phys = np.clip(rng.lognormal(1.3, 0.7, n), 0, 60)
        df["liver_fat_physics_percent"] = phys
        df["liver_fat_physics_ci95_low"], df["liver_fat_physics_ci95_high"] = phys - 0.5, phys + 0.5
        df["liver_r2star_physics_per_s"] = rng.normal(40, 8, n)
        for k, net in enumerate(LIVER_NETS):
            v = phys + rng.normal(0.2 * (k + 1), 1.0, n)
            df[f"liver_fat_{net}_percent"] = v
            df[f"liver_fat_{net}_variance"] = np.full(n, 1.0)
            df[f"liver_fat_{net}_ci95_low"], df[f"liver_fat_{net}_ci95_high"] = v - 1.96, v + 1.96
        df["teacher_weights_sha256"] = "cd" * 32
    flags = np.full(n, "", dtype=object)
    if flag_every:
        idx = np.arange(n) % flag_every == 3
        flags[idx] = "physics_vs_teacher_disagree"
        flags[np.arange(n) % (flag_every * 3) == 3] = "small_liver_roi;high_r2star"
    df["qc_flags"] = flags
    df["ukbmri_version"] = "0.1.0"
    return df


def make_failures(eids_instances: list[tuple[int | None, int | None]], message: str = "bad zip") -> pd.DataFrame:
    rows = [{"eid": e, "instance": i, "field": 20201, "input": f"/data/{e}_20201_{i}_0.zip", "stage": "preprocess",
             "error": "DicomError", "message": message} for e, i in eids_instances]
    cols = ["eid", "instance", "field", "input", "stage", "error", "message"]
    f = pd.DataFrame(rows, columns=cols)
    f["eid"] = f["eid"].astype("Int64")
    f["instance"] = f["instance"].astype("Int64")
    return f


def write_images(folder: Path, keys, *, roi_side: int = 500, seed: int = 0) -> None:
    """``folder/body/<eid>_<inst>.npy`` (3, 256, 256) uint8 and ``folder/roi/<eid>_<inst>_<field>.png|.npy``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "body").mkdir(parents=True, exist_ok=True)
    (folder / "roi").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:256, 0:256]
    for e, i in keys:
        img = np.zeros((3, 256, 256), np.uint8)
        blob = ((yy - 128) ** 2 / 90**2 + (xx - 128) ** 2 / 60**2) < 1
        img[0][blob] = 180
        img[1][blob] = 60 + (int(e) % 50)
        img[2] = rng.integers(0, 30, (256, 256), dtype=np.uint8)
        np.save(folder / "body" / f"{e}_{i}.npy", img)
        for fld in ("20203", "20254"):
            stem = folder / "roi" / f"{e}_{i}_{fld}"
            mask = np.zeros((32, 32), bool)
            mask[10:20, 8:16] = True
            np.save(stem.with_name(stem.name + ".npy"), mask)
            rgb = np.zeros((roi_side, roi_side, 3), np.uint8)
            rgb[..., 0] = 200 if fld == "20203" else 50
            rgb[roi_side // 4 : roi_side // 2, roi_side // 4 : roi_side // 2, 1] = 255
            Image.fromarray(rgb).save(stem.with_name(stem.name + ".png"))


def lookups(folder: Path):
    def body_image(eid: int, inst: int):
        p = folder / "body" / f"{eid}_{inst}.npy"
        return p if p.is_file() else None

    def liver_rois(eid: int, inst: int):
        return {fld: folder / "roi" / f"{eid}_{inst}_{fld}" for fld in ("20203", "20254")
                if (folder / "roi" / f"{eid}_{inst}_{fld}.png").is_file()}

    return body_image, liver_rois
