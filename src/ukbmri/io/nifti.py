"""NIfTI export / import of :class:`~ukbmri.types.Volume` with a correct RAS affine.

Volumes carry LPS geometry (DICOM); NIfTI stores RAS, so the affine is
``diag(-1, -1, 1) @ affine_lps``. Files open with the right orientation in
3D Slicer and ITK-SNAP.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ukbmri.errors import InputError
from ukbmri.io.atomic import atomic_path
from ukbmri.types import Volume

__all__ = ["save_volume", "load_volume"]


def save_volume(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(volume.array), volume.affine_ras())
    img.set_qform(volume.affine_ras(), code=1)  # scanner
    img.set_sform(volume.affine_ras(), code=1)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def load_volume(path: str | os.PathLike[str], dtype: np.dtype | type | None = np.float32) -> Volume:
    """Read a 3D NIfTI file into a :class:`Volume` (LPS geometry)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError("not a readable NIfTI file", path=path, found=type(exc).__name__) from exc
    data = np.asanyarray(img.dataobj)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.ndim != 3:
        raise InputError("NIfTI volume has the wrong rank", path=path, expected="3 dimensions", found=data.shape)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    m = lps[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    direction = m / np.where(spacing == 0, 1.0, spacing)
    return Volume(array=data, spacing=tuple(map(float, spacing)), origin=tuple(map(float, lps[:3, 3])), direction=direction)
