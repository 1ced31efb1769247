"""Multi-echo inputs for the fitters: UK Biobank liver zips, NIfTI files, ISMRM .mat files.

Axis convention (:mod:`ukbmri.physics.multiecho`): ``images[x, y, z, echo]`` with ``x``
the DICOM column index and ``y`` the row index, so ``affine_lps`` maps indices to
patient LPS mm exactly as :class:`ukbmri.types.Volume` does and the NIfTI export
(``Volume.affine_ras``) opens with the right orientation.

UK Biobank zips (:func:`multiecho_from_zip`):

* 20203 (GRE, 10 echoes, one slice): magnitude and phase images share a series; each
  echo becomes ``|S| exp(i phase)`` with ``phase = pi v / 4096`` (Siemens).
* 20254 (IDEAL, 6 echoes x 6 dynamics): magnitude series ``N0 + 2d`` and phase series
  ``N0 + 2d + 1``. ``dynamics="complex"`` (default) averages the complex dynamics after
  aligning each one to the first, echo by echo, by the phase of a smoothed
  ``S_d conj(S_0)`` (this removes B0 drift and receive-phase changes between dynamics,
  keeps the first dynamic's phase evolution and lowers the noise, and so the Rician
  floor, by sqrt(6)); ``"magnitude"`` averages magnitudes (no phase used); ``"first"``
  keeps the first dynamic only.
* When a zip has no phase images the result is magnitude-only (float32).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ukbmri.errors import FitInputError, LiverInputError
from ukbmri.physics.multiecho import MultiEcho
from ukbmri.types import Series

__all__ = ["multiecho_from_zip", "multiecho_from_nifti", "load_multiecho", "affine_from_series", "input_stem"]

log = logging.getLogger(__name__)

_DYNAMICS = ("complex", "magnitude", "first")


def input_stem(path: str | os.PathLike[str]) -> str:
    """File name without its extension; ``.nii.gz`` drops both parts."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".mat", ".zip", ".npy"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def affine_from_series(s: Series) -> np.ndarray:
    """4x4 index ``(x=column, y=row, z)`` -> LPS mm of a single-slice series."""
    o = np.asarray(s.orientation, dtype=float)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    thick = float(s.slice_thickness) if s.slice_thickness else 1.0
    a = np.eye(4)
    a[:3, 0] = row_dir * float(s.pixel_spacing[1])
    a[:3, 1] = col_dir * float(s.pixel_spacing[0])
    a[:3, 2] = normal * thick
    a[:3, 3] = np.asarray(s.positions, dtype=float)[0]
    return a


def _phase_series(z, mag: Series, offset: int) -> Series | None:
    for s in z.series:
        if s.image_kind == "phase" and s.series_number == mag.series_number + offset and s.description == mag.description:
            return s
    return None


def _by_echo(z, s: Series, te_ms: np.ndarray) -> np.ndarray:
    """Pixels of series ``s`` ordered to match ``te_ms`` (by echo time)."""
    if s.pixels is None:
        raise LiverInputError(f"series #{s.series_number} was read without pixels", path=z.path,
                              expected="decoded pixels", found="headers only")
    tes = np.asarray(s.echo_times_ms, dtype=float)
    if tes.size != te_ms.size or not np.all(np.isfinite(tes)):
        raise LiverInputError(f"{s.image_kind} series #{s.series_number} does not match the echoes",
                              path=z.path, expected=f"{te_ms.size} echo times", found=np.round(tes, 3).tolist())
    order = np.argsort(tes, kind="stable")
    if not np.allclose(tes[order], te_ms, atol=1e-2):
        raise LiverInputError(f"{s.image_kind} series #{s.series_number} has other echo times than the magnitudes",
                              path=z.path, expected=np.round(te_ms, 3).tolist(),
                              found=np.round(tes[order], 3).tolist())
    return np.asarray(s.pixels, dtype=np.float64)[order]


def _to_xy(stack: np.ndarray) -> np.ndarray:
    """(echoes, rows, cols) -> (x=cols, y=rows, 1, echoes)."""
    return np.transpose(stack, (2, 1, 0))[:, :, None, :]


def _align_dynamics(dyn: list[np.ndarray], sigma_px: float = 3.0) -> np.ndarray:
    """Complex average of dynamics (each (echoes, rows, cols)) after aligning them to the first."""
    ref = dyn[0]
    acc = ref.copy()
    ref_conj = np.conj(ref)
    for d in dyn[1:]:
        prod = d * ref_conj
        re = ndi.gaussian_filter(prod.real, sigma=(0, sigma_px, sigma_px))
        im = ndi.gaussian_filter(prod.imag, sigma=(0, sigma_px, sigma_px))
        # exp(-i angle(re + i im)) without the complex exponential (1 where the product vanishes)
        mag = np.hypot(re, im)
        zero = mag == 0
        if zero.any():
            re[zero], mag[zero] = 1.0, 1.0
        unit = np.empty(re.shape, dtype=np.complex128)
        np.divide(re, mag, out=unit.real)
        np.divide(im, mag, out=unit.imag)
        np.negative(unit.imag, out=unit.imag)
        acc += d * unit
    return acc / len(dyn)


def _phasor(rescaled: np.ndarray) -> np.ndarray:
    """``exp(1j * phase_to_radians(rescaled))`` (complex64), by table look-up for integer pixel values.

    Siemens phase pixels are integers (-4096..4095), so each distinct value's phasor is
    computed once; the table holds exactly the values the direct expression gives.
    """
    from ukbmri.io import phase_to_radians

    v = np.asarray(rescaled)
    if v.size:
        lo, hi = float(v.min()), float(v.max())
        if np.isfinite(lo) and np.isfinite(hi) and hi - lo < min(v.size, 1 << 20):
            k = (v - lo).astype(np.intp)
            if np.array_equal(k + lo, v):
                table = np.exp(1j * phase_to_radians(lo + np.arange(int(hi - lo) + 1, dtype=np.float64)))
                return table[k]
    return np.exp(1j * phase_to_radians(v))


def multiecho_from_zip(z, *, use_phase: bool = True, dynamics: str = "complex") -> MultiEcho:
    """Multi-echo data of a UK Biobank liver zip (20203 or 20254) read by :func:`ukbmri.io.read_zip`.

    Raises
    ------
    FieldMismatchError, LiverInputError
        Not a liver zip, missing / inconsistent echoes (see
        :mod:`ukbmri.preprocess.liver_tensors`).
    """
    from ukbmri.preprocess.liver_tensors import GRE_FIELD, IDEAL_N_ECHOES, gre_echoes, ideal_echoes

    if dynamics not in _DYNAMICS:
        raise FitInputError("unknown dynamics mode", path=z.path, expected=_DYNAMICS, found=dynamics)
    stack = gre_echoes(z) if z.field == GRE_FIELD else ideal_echoes(z)
    te_ms = np.asarray(stack.echo_times_ms, dtype=float)
    if not np.all(np.isfinite(te_ms)):
        raise LiverInputError("echo times missing in the headers", path=z.path,
                              expected="EchoTime on every image", found=te_ms.tolist())
    mags = [s for s in z.series if s.image_kind == "magnitude" and s.series_number in stack.series_numbers]
    mags.sort(key=lambda s: s.series_number)
    b0 = next((s.field_strength_t for s in mags if s.field_strength_t), None)
    if not b0:
        log.warning("%s: MagneticFieldStrength missing: assuming 1.5 T", z.path)
        b0 = 1.5
    if z.field == GRE_FIELD:
        # one dynamic; magnitudes (already TE-ordered) and the phase images of the same series
        mag = np.asarray(stack.images, dtype=np.float64)
        ph = [s for s in z.series if s.image_kind == "phase" and s.series_number in stack.series_numbers
              and s.description in {m.description for m in mags}]
        have_phase = use_phase and bool(ph) and sum(s.n_images for s in ph) == mag.shape[0]
        if have_phase:
            tes = np.concatenate([np.asarray(s.echo_times_ms, dtype=float) for s in ph])
            if any(s.pixels is None for s in ph):
                raise LiverInputError("phase series read without pixels", path=z.path,
                                      expected="decoded pixels", found="headers only")
            px = np.concatenate([np.asarray(s.pixels, dtype=np.float64) for s in ph])
            order = np.argsort(tes, kind="stable")
            if not np.allclose(tes[order], te_ms, atol=1e-2):
                raise LiverInputError("phase images have other echo times than the magnitudes", path=z.path,
                                      expected=np.round(te_ms, 3).tolist(), found=np.round(tes[order], 3).tolist())
            per_dyn = [mag * _phasor(px[order])]
        else:
            per_dyn = [mag]
    else:
        phases = [_phase_series(z, s, 1) for s in mags] if use_phase else [None] * len(mags)
        have_phase = use_phase and all(p is not None for p in phases)
        per_dyn = []
        for s, p in zip(mags, phases):
            m = _by_echo(z, s, te_ms)
            if have_phase:
                m = m * _phasor(_by_echo(z, p, te_ms))
            per_dyn.append(m)
    if use_phase and not have_phase:
        log.info("%s: no phase images for every echo series: magnitude-only data", z.path)
    if len(per_dyn) == 1 or dynamics == "first":
        avg = per_dyn[0]
    elif dynamics == "magnitude" or not have_phase:
        avg = np.mean([np.abs(d) for d in per_dyn], axis=0)
    else:
        avg = _align_dynamics(per_dyn)
    if avg.shape[0] != (len(te_ms) if z.field == GRE_FIELD else IDEAL_N_ECHOES):
        raise LiverInputError("unexpected number of echoes", path=z.path, expected=len(te_ms), found=avg.shape[0])
    images = _to_xy(avg)
    images = images.astype(np.complex64) if np.iscomplexobj(images) else images.astype(np.float32)
    aff = affine_from_series(mags[0])
    spacing = tuple(float(v) for v in np.linalg.norm(aff[:3, :3], axis=0))
    return MultiEcho(images=images, te_s=te_ms / 1e3, field_strength_t=float(b0), spacing=spacing,
                     source=str(z.path), affine_lps=aff)


def _load_nifti_arrays(paths: Sequence[str | os.PathLike[str]], what: str) -> tuple[np.ndarray, np.ndarray]:
    """4D (x, y, z, echo) array and the RAS affine from one 4D file or several 3D files."""
    import nibabel as nib

    arrays, affine = [], None
    for p in paths:
        try:
            img = nib.load(str(p))
        except Exception as exc:
            raise FitInputError(f"not a readable NIfTI {what} file", path=p, found=type(exc).__name__) from exc
        a = np.asanyarray(img.dataobj).astype(np.float64)
        if affine is None:
            affine = img.affine
        if len(paths) == 1:
            if a.ndim == 3:
                raise FitInputError(f"a single NIfTI {what} file must hold all echoes", path=p,
                                    expected="4D (x, y, z, echo) or one 3D file per echo", found=a.shape)
            if a.ndim != 4:
                raise FitInputError(f"NIfTI {what} volume has the wrong rank", path=p,
                                    expected="4D (x, y, z, echo)", found=a.shape)
            return a, affine
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3:
            raise FitInputError(f"per-echo NIfTI {what} file has the wrong rank", path=p,
                                expected="3D (x, y, z)", found=a.shape)
        if arrays and a.shape != arrays[0].shape:
            raise FitInputError(f"per-echo NIfTI {what} files differ in shape", path=p,
                                expected=arrays[0].shape, found=a.shape)
        arrays.append(a)
    return np.stack(arrays, axis=-1), affine


def multiecho_from_nifti(
    paths: Sequence[str | os.PathLike[str]],
    te_ms: Sequence[float],
    *,
    phase_paths: Sequence[str | os.PathLike[str]] | None = None,
    field_strength_t: float = 1.5,
) -> MultiEcho:
    """Magnitude (and optionally phase, radians or Siemens -4096..4095 units) NIfTI echoes.

    ``paths`` is one 4D ``(x, y, z, echo)`` file or one 3D file per echo; so is
    ``phase_paths``. Phase values whose range exceeds ``2 pi`` are taken as Siemens
    units and converted with ``pi v / 4096``.
    """
    paths = list(paths)
    mag, affine = _load_nifti_arrays(paths, "magnitude")
    te = np.asarray(list(te_ms), dtype=float)
    if te.size != mag.shape[-1]:
        raise FitInputError("echo time list does not match the number of echoes", path=paths[0],
                            expected=f"{mag.shape[-1]} echo times", found=f"{te.size}")
    if phase_paths:
        ph, _ = _load_nifti_arrays(list(phase_paths), "phase")
        if ph.shape != mag.shape:
            raise FitInputError("phase and magnitude shapes differ", path=list(phase_paths)[0],
                                expected=mag.shape, found=ph.shape)
        if np.nanmax(np.abs(ph)) > 2 * np.pi + 1e-3:
            ph = np.pi * ph / 4096.0
        data = (mag * np.exp(1j * ph)).astype(np.complex64)
    else:
        data = mag.astype(np.float32)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=float)
    spacing = tuple(float(v) for v in np.linalg.norm(lps[:3, :3], axis=0))
    return MultiEcho(images=data, te_s=te / 1e3, field_strength_t=field_strength_t, spacing=spacing,
                     source=str(paths[0]), affine_lps=lps)


def load_multiecho(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    te_ms: Sequence[float] | None = None,
    field_strength_t: float | None = None,
    phase_paths: Sequence[str | os.PathLike[str]] | None = None,
) -> tuple[MultiEcho, np.ndarray | None]:
    """Read any supported input by extension; returns the data and a mask stored with it (or None).

    ``.mat`` (ISMRM toolbox), ``.zip`` (UK Biobank 20203 / 20254), ``.nii`` / ``.nii.gz``
    (needs ``te_ms``). ``te_ms`` / ``field_strength_t`` given for a file that stores its
    own must agree in length; they then override the file's values (with a warning).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    first = paths[0]
    for p in paths:
        if not p.is_file():
            raise FitInputError("input file not found", path=p)
    name = first.name.lower()
    mask = None
    if name.endswith(".mat") or name.endswith(".zip"):
        if len(paths) > 1:
            raise FitInputError("give one .mat or .zip file", path=first, expected="1 file", found=len(paths))
        if name.endswith(".mat"):
            from ukbmri.io.ismrm import read_ismrm

            data, mask = read_ismrm(first)
        else:
            from ukbmri.io import read_zip

            data = multiecho_from_zip(read_zip(first))
        if te_ms is not None:
            te = np.asarray(list(te_ms), dtype=float)
            if te.size != data.n_echoes:
                raise FitInputError("--te does not match the file's echoes", path=first,
                                    expected=f"{data.n_echoes} echo times", found=te.size)
            log.warning("%s: echo times from the command line replace the file's", first)
            data = MultiEcho(data.images, te / 1e3, data.field_strength_t, data.spacing, data.source, data.affine_lps)
        if field_strength_t is not None and abs(field_strength_t - data.field_strength_t) > 1e-6:
            log.warning("%s: field strength %.3g T from the command line replaces the file's %.3g T",
                        first, field_strength_t, data.field_strength_t)
            data = MultiEcho(data.images, data.te_s, field_strength_t, data.spacing, data.source, data.affine_lps)
        return data, mask
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        if te_ms is None:
            raise FitInputError("NIfTI input needs the echo times", path=first,
                                expected="--te MS,MS,...", found="none")
        if field_strength_t is None:
            log.warning("%s: no field strength given: assuming 1.5 T", first)
        return multiecho_from_nifti(paths, te_ms, phase_paths=phase_paths,
                                    field_strength_t=field_strength_t or 1.5), None
    raise FitInputError("unsupported input type", path=first,
                        expected=".mat, .zip, .nii or .nii.gz", found=first.suffix or "no extension")
