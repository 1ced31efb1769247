"""Atomic writes: a temporary file (or folder) beside the target, then a rename.

A run killed at any point leaves either the old file or the new one, never a
half-written file, so a re-run can trust whatever it finds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ukbmri.errors import OutputExistsError

__all__ = ["atomic_path", "require_free_folder", "staged_folder", "write_bytes", "write_text", "save_npy"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``target``.

    ``suffix`` defaults to the target's own suffixes so that libraries that
    choose a format by extension (nibabel, matplotlib, pandas) still work.
    On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual mode
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def save_npy(target: str | os.PathLike[str], array: np.ndarray) -> Path:
    """``np.save`` atomically (no pickles: object arrays are refused)."""
    with atomic_path(target, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(target)


def require_free_folder(out_dir: str | os.PathLike[str], *, overwrite: bool,
                        hint: str = "use overwrite to replace it") -> None:
    """Raise :class:`OutputExistsError` when ``out_dir`` exists and is not an empty folder,
    unless ``overwrite`` (checked before long work, so that it fails fast)."""
    out_dir = Path(out_dir)
    if not overwrite and out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise OutputExistsError(f"output folder already exists ({hint})", path=out_dir)


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a hidden temporary sibling and rename it onto ``out_dir`` on success.

    An existing non-empty ``out_dir`` raises :class:`OutputExistsError` unless
    ``overwrite``; then it is replaced only once the new folder is complete
    (moved aside, the new one renamed in, the old one deleted). On an
    exception nothing changes.
    """
    out_dir = Path(out_dir)
    require_free_folder(out_dir, overwrite=overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        new = staging / out_dir.name
        new.mkdir()
        yield new
        if out_dir.exists():
            if out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            elif not overwrite:
                raise OutputExistsError("output folder appeared meanwhile (use overwrite)", path=out_dir)
            else:
                old = staging / ".previous"
                os.replace(out_dir, old)
                try:
                    os.replace(new, out_dir)
                except BaseException:
                    os.replace(old, out_dir)
                    raise
                return
        os.replace(new, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
