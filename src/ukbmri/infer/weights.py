"""Every weights format ukbmri reads, fingerprinted cheaply and loaded once per process.

* MIMIR inference module folders (``snapshot.pth.tar`` + metadata, standardisation,
  calibration; ukbmri's ``module.json``) -> :class:`~ukbmri.modules.InferenceModule`
* liver network weights: our ``model.json`` + ``weights.pt`` folders and the published
  ml4h Keras ``.h5`` files -> :class:`~ukbmri.infer.liver_nets.LiverNet`

:func:`fingerprint` hashes the files themselves (not their names or times), so a
resumed run reuses results only when every file that affects a prediction is the
same. :func:`body_module` and :func:`liver_net` keep what they loaded for the life
of the process (a worker loads each network once, not once per participant).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

__all__ = ["fingerprint", "module_targets", "body_module", "liver_net", "is_demonstration"]


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 over a weights file, or over every regular file of a weights folder (sorted by name)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        rel = f.name if f == path else f.relative_to(path).as_posix()
        h.update(f"{rel}\0{_file_sha256(str(f), st.st_size, st.st_mtime_ns)}\0".encode())
    return h.hexdigest()


def module_targets(folder: str | os.PathLike[str]):
    """The targets of a module folder from its metadata alone (no weights loaded)."""
    from ukbmri.module_files import read_metadata

    return read_metadata(Path(folder))


def is_demonstration(path: str | os.PathLike[str]) -> bool:
    """True for weights that say they were trained on phantoms (``demonstration_only`` in their json)."""
    import json

    path = Path(path)
    for name in ("module.json", "model.json"):
        p = path / name if path.is_dir() else None
        if p is not None and p.is_file():
            try:
                return bool(json.loads(p.read_text(encoding="utf-8")).get("demonstration_only", False))
            except (OSError, ValueError):
                return False
    return False


@lru_cache(maxsize=16)
def body_module(folder: str, fp: str, device: str):
    """A loaded body module, cached per (folder, fingerprint, device) in this process."""
    from ukbmri.modules import load_module

    return load_module(folder, device=device)


@lru_cache(maxsize=8)
def liver_net(path: str, fp: str, device: str):
    """A loaded liver network, cached per (path, fingerprint, device) in this process."""
    from ukbmri.infer.liver_nets import load_liver_net

    return load_liver_net(path, device=device)
