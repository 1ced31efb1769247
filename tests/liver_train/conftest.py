"""Tiny liver cohorts for the liver training tests: real DICOM zips (pydicom) and ml4h hd5 files.

Images are 16 x 16 (one slice): a disk of "liver" whose multi-echo magnitude
follows the fat-water model with the participant's PDFF, on a noisy background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ukbmri.physics.spectrum import fat_phasor

GRE_DESC = "gre_mullti_echo_10_TE_liver"
IDEAL_DESC = "LMS IDEAL OPTIMISED LOW FLIP 6DYN"
GRE_TE_MS = np.round(2.38 * np.arange(1, 11), 2)
IDEAL_TE_MS = np.array([1.2, 3.2, 5.2, 7.2, 9.2, 11.2])
SIZE = 16


def magnitudes(pdff: float, te_ms: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """(echoes, size, size) uint16-range magnitudes: liver disk with the fat-water signal, noisy background."""
    f = pdff / 100.0
    s = np.abs((1 - f) + f * fat_phasor(te_ms / 1000.0, 1.5)) * np.exp(-40.0 * te_ms / 1000.0)
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    img = 30.0 + 10.0 * rng.random((te_ms.size, size, size))
    img[:, disk] += 2000.0 * s[:, None]
    return np.round(img)


def write_gre_zip(dcm, folder: Path, eid: int, pdff: float, rng: np.random.Generator) -> Path:
    mag = magnitudes(pdff, GRE_TE_MS, rng)
    uid_m, uid_p = dcm.generate_uid(), dcm.generate_uid()
    images = []
    for e, te in enumerate(GRE_TE_MS):
        images.append(dcm.dicom(desc=GRE_DESC, series_number=9, series_uid=uid_m, instance=e + 1, echo_ms=te,
                             magnitude=True, pixels=mag[e]))
        images.append(dcm.dicom(desc=GRE_DESC, series_number=9, series_uid=uid_p, instance=e + 1, echo_ms=te,
                             magnitude=False, pixels=np.full((SIZE, SIZE), 2048)))
    return dcm.write_zip(folder / f"{eid}_20203_2_0.zip", images)


def write_ideal_zip(dcm, folder: Path, eid: int, pdff: float, rng: np.random.Generator) -> Path:
    mag = magnitudes(pdff, IDEAL_TE_MS, rng)
    images = []
    for d in range(6):
        uid_m, uid_p = dcm.generate_uid(), dcm.generate_uid()
        for e in range(6):
            images.append(dcm.dicom(desc=IDEAL_DESC, series_number=31 + 2 * d, series_uid=uid_m, instance=e + 1,
                                 echo_ms=IDEAL_TE_MS[e], magnitude=True, pixels=mag[e] + d))
            images.append(dcm.dicom(desc=IDEAL_DESC, series_number=32 + 2 * d, series_uid=uid_p, instance=e + 1,
                                 echo_ms=IDEAL_TE_MS[e], magnitude=False, pixels=np.full((SIZE, SIZE), 2048)))
    return dcm.write_zip(folder / f"{eid}_20254_2_0.zip", images)


@pytest.fixture(scope="session")
def liver_cohort(tmp_path_factory, liver_dicom) -> dict:
    """8 participants with 20203 and 20254 zips, one broken 20203 zip, a truth table (one label missing).

    Returns a dict: folder, truth (CSV path), eids, pdff (by eid), broken (path).
    """
    folder = tmp_path_factory.mktemp("liver_cohort")
    rng = np.random.default_rng(42)
    eids = list(range(1000001, 1000009))
    pdff = {e: float(v) for e, v in zip(eids, rng.gamma(1.5, 3.0, len(eids)), strict=True)}
    for e in eids:
        write_gre_zip(liver_dicom, folder, e, pdff[e], rng)
        write_ideal_zip(liver_dicom, folder, e, pdff[e], rng)
    broken = folder / "1000009_20203_2_0.zip"
    broken.write_bytes(b"this is not a zip file")
    truth = folder / "truth.csv"
    rows = [{"eid": e, "liver_pdff_percent": pdff[e]} for e in eids]
    rows[-1]["liver_pdff_percent"] = None  # one participant without a label
    pd.DataFrame(rows).to_csv(truth, index=False)
    return {"folder": folder, "truth": truth, "eids": eids, "pdff": pdff, "broken": broken}
