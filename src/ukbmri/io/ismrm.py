"""Reader for the ISMRM fat-water toolbox format (``imDataParams`` in a MATLAB .mat file).

Fields used: ``images`` complex ``(x, y, z, coils, echoes)``, ``TE`` (seconds),
``FieldStrength`` (tesla), ``PrecessionIsClockwise`` and, when present, ``mask``.

Conventions, as in the toolbox code:

* the data are conjugated **only** when ``PrecessionIsClockwise != 1``;
* a single coil is squeezed; several coils are combined by referencing every coil to
  the phase of its own first echo and summing, weighted by the first-echo magnitude
  (``sum_c S_c(t) conj(S_c(t_1)) / sqrt(sum_c |S_c(t_1)|^2)``). The voxel-constant phase
  this leaves is absorbed by the fitters' amplitude phase; noise correlation between
  coils is ignored.
* the array axes are kept as stored (``x`` = rows of the usual display, ``y`` =
  columns); the files carry no voxel size or orientation, so ``spacing`` and
  ``affine_lps`` are ``None``.

MATLAB v5 files are read with :func:`scipy.io.loadmat`, v7.3 (HDF5) files with h5py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ukbmri.errors import FitInputError
from ukbmri.physics.multiecho import MultiEcho

__all__ = ["load_ismrm_mat", "read_ismrm", "combine_coils"]

log = logging.getLogger(__name__)


def combine_coils(images: np.ndarray) -> np.ndarray:
    """``(x, y, z, coils, echoes)`` -> ``(x, y, z, echoes)`` (see the module docstring)."""
    if images.shape[3] == 1:
        return images[:, :, :, 0, :]
    ref = images[:, :, :, :, :1]
    comb = (images * np.conj(ref)).sum(axis=3)
    norm = np.sqrt((np.abs(ref[..., 0]) ** 2).sum(axis=3))[..., None]
    return comb / np.maximum(norm, 1e-30)


def _load_v5(path: Path) -> dict:
    import scipy.io as sio

    mat = sio.loadmat(str(path), squeeze_me=False, struct_as_record=False)
    if "imDataParams" not in mat:
        raise FitInputError("no imDataParams structure in the .mat file", path=path,
                            expected="imDataParams", found=sorted(k for k in mat if not k.startswith("__")))
    st = mat["imDataParams"]
    st = st[0, 0] if isinstance(st, np.ndarray) else st
    return {name: getattr(st, name) for name in getattr(st, "_fieldnames", [])}


def _load_v73(path: Path) -> dict:
    import h5py

    out: dict = {}
    with h5py.File(path, "r") as h:
        if "imDataParams" not in h:
            raise FitInputError("no imDataParams structure in the .mat file", path=path,
                                expected="imDataParams", found=sorted(h.keys()))
        g = h["imDataParams"]
        for name, ds in g.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            a = ds[()]
            if a.dtype.names and {"real", "imag"} <= set(a.dtype.names):
                a = a["real"] + 1j * a["imag"]
            out[name] = np.asarray(a).T  # MATLAB column-major order
    return out


def read_ismrm(path: str | os.PathLike[str]) -> tuple[MultiEcho, np.ndarray | None]:
    """Read an ISMRM toolbox .mat file: the data and its ``mask`` (``None`` if absent)."""
    path = Path(path)
    if not path.is_file():
        raise FitInputError("file not found", path=path)
    try:
        fields = _load_v5(path)
    except FitInputError:
        raise
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        fields = _load_v73(path)
    except Exception as exc:
        raise FitInputError("not a readable MATLAB .mat file", path=path, found=type(exc).__name__) from exc
    for need in ("images", "TE", "FieldStrength"):
        if need not in fields:
            raise FitInputError("imDataParams lacks a field", path=path, member=need,
                                expected="images, TE, FieldStrength", found=sorted(fields))
    images = np.asarray(fields["images"])
    if images.ndim == 4:  # (x, y, z, echoes) saved without the coil axis
        images = images[:, :, :, None, :]
    if images.ndim != 5:
        raise FitInputError("imDataParams.images has the wrong rank", path=path, member="images",
                            expected="(x, y, z, coils, echoes)", found=images.shape)
    if not np.iscomplexobj(images):
        raise FitInputError("imDataParams.images is not complex", path=path, member="images",
                            expected="complex data", found=str(images.dtype))
    clockwise = fields.get("PrecessionIsClockwise", 1)
    clockwise = float(np.asarray(clockwise).reshape(-1)[0]) if np.size(clockwise) else 1.0
    if clockwise != 1:
        images = np.conj(images)
    n_coils = images.shape[3]
    if n_coils > 1:
        log.info("%s: combining %d coils (first-echo phase reference)", path, n_coils)
    data = combine_coils(images).astype(np.complex64)
    te = np.asarray(fields["TE"], dtype=float).reshape(-1)
    b0 = float(np.asarray(fields["FieldStrength"], dtype=float).reshape(-1)[0])
    me = MultiEcho(images=data, te_s=te, field_strength_t=b0, spacing=None, source=str(path))
    mask = None
    if "mask" in fields and np.size(fields["mask"]):
        m = np.asarray(fields["mask"])
        if m.ndim == 2:
            m = m[:, :, None]
        if m.shape == me.shape:
            mask = m.astype(bool)
        else:
            log.warning("%s: ignoring imDataParams.mask of shape %s (images %s)", path, m.shape, me.shape)
    return me, mask


def load_ismrm_mat(path: str | os.PathLike[str]) -> MultiEcho:
    """The multi-echo data of an ISMRM toolbox .mat file (see :func:`read_ismrm`)."""
    return read_ismrm(path)[0]
