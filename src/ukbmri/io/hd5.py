"""ml4h-layout hd5 tensor files (h5py).

Layouts read and written:

* current: ``/ukb_liver_mri/<series>/instance_<k>`` holds an image tensor
  (``k = 2`` is the first imaging visit, 3 the repeat visit);
* root (older ml4h tensors): ``/<series>`` at the file root, no instance;
* labels: ``/continuous/<name>``, a length-1 float64 dataset.

ml4h stores images channels-last ``(H, W, C)``; this module converts to and
from the PyTorch layout ``(C, H, W)`` used everywhere else in ukbmri.

Writes: a new file is created atomically (written to a temporary file beside
the target, then renamed). Adding a dataset to a file that already exists
opens it in h5py ``"a"`` mode and is *not* atomic: a crash mid-write can leave
that one file damaged (ml4h tensorizes one file per participant, so only that
participant is affected; delete the file and re-run).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from ukbmri.errors import TensorError
from ukbmri.io.atomic import atomic_path

__all__ = [
    "LIVER_GROUP",
    "LABEL_GROUP",
    "tensor_dataset_path",
    "label_dataset_path",
    "write_ml4h_tensor",
    "read_ml4h_tensor",
    "write_label",
    "read_label",
    "list_tensors",
    "write_ml4h_file",
]

log = logging.getLogger(__name__)

LIVER_GROUP = "ukb_liver_mri"
LABEL_GROUP = "continuous"
_INSTANCE_RE = re.compile(r"^instance_(\d+)$")
_COMPRESSION = "gzip"

PathT = str | PathLike[str]


def tensor_dataset_path(name: str, instance: int | None = 2, *, group: str = LIVER_GROUP) -> str:
    """``/ukb_liver_mri/<name>/instance_<k>``; ``/<name>`` (root layout) when ``instance`` is None."""
    _check_name(name)
    if instance is None:
        return f"/{name}"
    return f"/{group}/{name}/instance_{int(instance)}"


def label_dataset_path(name: str) -> str:
    """``/continuous/<name>``."""
    _check_name(name)
    return f"/{LABEL_GROUP}/{name}"


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise TensorError("invalid tensor name", expected="a name without '/'", found=repr(name))


def _write(path: Path, dataset: str, data: np.ndarray, *, overwrite: bool, compress: bool) -> None:
    kwargs = {"compression": _COMPRESSION} if compress and data.size > 1 else {}

    def put(f: h5py.File) -> None:
        if dataset in f:
            if not overwrite:
                raise TensorError(
                    "dataset already exists (pass overwrite=True to replace it)",
                    path=path,
                    member=dataset,
                )
            del f[dataset]
        f.create_dataset(dataset, data=data, **kwargs)

    if path.exists():
        try:
            with h5py.File(path, "a") as f:
                put(f)
        except OSError as e:
            raise TensorError(f"cannot open for appending: {e}", path=path, member=dataset) from e
    else:
        with atomic_path(path, suffix=".hd5") as tmp:
            with h5py.File(tmp, "w") as f:
                put(f)


def write_ml4h_tensor(
    path: PathT,
    name: str,
    array_chw: np.ndarray,
    instance: int = 2,
    layout: str = "current",
    *,
    group: str = LIVER_GROUP,
    overwrite: bool = False,
    dtype=np.float32,
) -> str:
    """Write a ``(C, H, W)`` tensor in ml4h layout (stored ``(H, W, C)``); returns the dataset path.

    Parameters
    ----------
    layout:
        ``"current"`` -> ``/<group>/<name>/instance_<instance>``; ``"root"`` ->
        ``/<name>`` (older ml4h files; ``instance`` is ignored).
    overwrite:
        Replace an existing dataset; otherwise :class:`TensorError`.
    """
    path = Path(path)
    a = np.asarray(array_chw)
    if a.ndim != 3:
        raise TensorError("tensor must be (C, H, W)", path=path, expected="3 axes", found=a.shape)
    if layout == "current":
        dataset = tensor_dataset_path(name, instance, group=group)
    elif layout == "root":
        dataset = tensor_dataset_path(name, None)
    else:
        raise ValueError(f"layout must be 'current' or 'root', not {layout!r}")
    hwc = np.ascontiguousarray(np.moveaxis(a, 0, -1).astype(dtype, copy=False))
    _write(path, dataset, hwc, overwrite=overwrite, compress=True)
    return dataset


def write_ml4h_file(
    path: PathT,
    datasets: Mapping[str, np.ndarray | tuple[np.ndarray, Mapping[str, object]]],
    *,
    overwrite: bool = False,
) -> Path:
    """Write a whole new hd5 file at once, atomically: dataset path -> array, or (array, attributes).

    Arrays with more than one element are gzip-compressed (as ml4h does).
    Raises :class:`TensorError` when the file exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise TensorError("hd5 file already exists (pass overwrite=True to replace it)", path=path)
    with atomic_path(path, suffix=".hd5") as tmp:
        with h5py.File(tmp, "w") as f:
            for name, item in datasets.items():
                data, attrs = item if isinstance(item, tuple) else (item, {})
                data = np.asarray(data)
                kwargs = {"compression": _COMPRESSION} if data.size > 1 else {}
                d = f.create_dataset(name, data=data, **kwargs)
                for k, v in attrs.items():
                    d.attrs[k] = v
    return path


def _open_read(path: Path) -> h5py.File:
    if not path.is_file():
        raise TensorError("hd5 file not found", path=path)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise TensorError(f"not a readable hd5 file: {e}", path=path) from e


def _instances(f: h5py.File, group: str, name: str) -> list[int]:
    node = f.get(f"/{group}/{name}")
    if not isinstance(node, h5py.Group):
        return []
    found = []
    for key, item in node.items():
        m = _INSTANCE_RE.match(key)
        if m and isinstance(item, h5py.Dataset):
            found.append(int(m.group(1)))
    return sorted(found)


def read_ml4h_tensor(
    path: PathT,
    name: str,
    instance: int | None = None,
    *,
    group: str = LIVER_GROUP,
    expect_shape: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Read an ml4h image tensor in either layout; returns ``(C, H, W)`` float32.

    ``instance=None`` takes the lowest instance present in the current layout
    (2, the first imaging visit, when there), else the root-layout dataset.
    An explicit ``instance`` reads only ``/<group>/<name>/instance_<k>``.
    ``expect_shape`` (``(C, H, W)``) is checked when given.

    Raises
    ------
    TensorError
        File missing / unreadable, dataset absent (the message lists what the
        file holds), not 3D, or not ``expect_shape``.
    """
    path = Path(path)
    _check_name(name)
    with _open_read(path) as f:
        available = _instances(f, group, name)
        if instance is not None:
            dataset = tensor_dataset_path(name, instance, group=group)
        elif available:
            dataset = tensor_dataset_path(name, available[0], group=group)
            if len(available) > 1:
                log.debug("%s: %s has instances %s; reading %d", path, name, available, available[0])
        else:
            dataset = tensor_dataset_path(name, None)
        node = f.get(dataset)
        if not isinstance(node, h5py.Dataset):
            tried = dataset if instance is not None else f"{tensor_dataset_path(name, 2, group=group)} or /{name}"
            raise TensorError(
                "tensor dataset not found",
                path=path,
                member=dataset,
                expected=tried,
                found=_summary(f),
            )
        data = node[()]
    if data.ndim != 3:
        raise TensorError(
            "tensor dataset is not an image (H, W, C)", path=path, member=dataset, expected="3 axes", found=data.shape
        )
    chw = np.ascontiguousarray(np.moveaxis(data, -1, 0)).astype(np.float32, copy=False)
    if expect_shape is not None and tuple(chw.shape) != tuple(expect_shape):
        raise TensorError(
            "tensor has the wrong shape",
            path=path,
            member=dataset,
            expected=f"(C, H, W) {tuple(expect_shape)}",
            found=tuple(chw.shape),
        )
    return chw


def write_label(path: PathT, name: str, value: float, *, overwrite: bool = False) -> str:
    """Write a scalar label as ``/continuous/<name>`` (length-1 float64); returns the dataset path."""
    path = Path(path)
    dataset = label_dataset_path(name)
    v = float(value)
    _write(path, dataset, np.array([v], dtype=np.float64), overwrite=overwrite, compress=False)
    return dataset


def read_label(path: PathT, name: str) -> float:
    """Read ``/continuous/<name>`` (scalar or length-1 dataset) as a float.

    Raises :class:`TensorError` when absent (listing what the file holds) or not a single value.
    """
    path = Path(path)
    dataset = label_dataset_path(name)
    with _open_read(path) as f:
        node = f.get(dataset)
        if not isinstance(node, h5py.Dataset):
            raise TensorError("label dataset not found", path=path, member=dataset, found=_summary(f))
        data = np.asarray(node[()])
    if data.size != 1:
        raise TensorError("label is not a single value", path=path, member=dataset, expected=1, found=data.shape)
    return float(data.reshape(-1)[0])


def list_tensors(path: PathT) -> list[str]:
    """Every dataset path in the file (``/ukb_liver_mri/.../instance_2``, ``/continuous/liver_fat``, ...), sorted."""
    path = Path(path)
    with _open_read(path) as f:
        return _datasets(f)


def _datasets(f: h5py.File) -> list[str]:
    out: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            out.append("/" + name)

    f.visititems(visit)
    return sorted(out)


def _summary(f: h5py.File, limit: int = 8) -> str:
    names = _datasets(f)
    if not names:
        return "no datasets"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} datasets)" if len(names) > limit else "")
