"""Write domain-randomised liver stress phantoms as files (``ukbmri synth --liver-stress VARIANT``).

Per case ``<i>_<protocol>_mag.nii.gz`` and ``<i>_<protocol>_phase.nii.gz`` (4D: x, y, 1,
echo; phase in radians, readable by ``ukbmri fatwater --phase``), ``<i>_<protocol>_liver.npy``
(the drawn liver, bool (x, y)) and one ``liver_stress_truth.csv`` (PDFF, R2*, noise scale,
echo times, variant). Protocols alternate GRE / IDEAL. Deterministic in ``seed``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ukbmri.synth.liver_stress import stress_case

__all__ = ["write_stress_cohort", "STRESS_TRUTH_FILE"]

STRESS_TRUTH_FILE = "liver_stress_truth.csv"


def write_stress_cohort(out_dir: str | os.PathLike[str], n: int, seed: int, *, variant: str = "train"):
    """Write ``n`` stress cases into ``out_dir``; returns the truth table (pandas DataFrame)."""
    import nibabel as nib
    import pandas as pd

    from ukbmri.io.atomic import atomic_path, save_npy
    from ukbmri.physics.multiecho import volume_for

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        protocol = "gre" if i % 2 == 0 else "ideal"
        c = stress_case(rng, variant=variant, protocol=protocol)
        stem = f"{i:04d}_{protocol}"
        affine = volume_for(np.zeros(c.data.shape, np.float32), c.data).affine_ras()
        for kind, arr in (("mag", np.abs(c.data.images)), ("phase", np.angle(c.data.images))):
            img = nib.Nifti1Image(arr.astype(np.float32), affine)
            img.set_sform(affine, code=1)
            img.set_qform(affine, code=1)
            with atomic_path(out / f"{stem}_{kind}.nii.gz") as tmp:
                nib.save(img, str(tmp))
        save_npy(out / f"{stem}_liver.npy", c.liver)
        rows.append({"case": stem, "variant": variant, "protocol": protocol, "pdff_percent": c.pdff_percent,
                     "r2star_per_s": c.r2star_per_s, "noise_scale": c.noise_scale,
                     "te_ms": ",".join(f"{t * 1e3:.4g}" for t in c.data.te_s),
                     "field_strength_t": c.data.field_strength_t})
    df = pd.DataFrame(rows)
    with atomic_path(out / STRESS_TRUTH_FILE) as tmp:
        df.to_csv(tmp, index=False)
    return df
