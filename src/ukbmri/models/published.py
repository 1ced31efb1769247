"""The published ml4h liver weights files, and Git LFS pointers in their place.

The ml4h repository keeps ``liver_fat_from_echo.h5`` (teacher) and
``liver_fat_from_ideal.h5`` (student) in Git LFS. A clone made without LFS
holds, instead of each model, a ~130-byte text file::

    version https://git-lfs.github.com/spec/v1
    oid sha256:624ae5c6...
    size 4926304

:func:`check_not_lfs_pointer` recognises such a file and raises
:class:`~ukbmri.errors.GitLfsPointerError` saying how to fetch the real one.
The LFS ``oid`` is the sha256 of the real file, so :data:`PUBLISHED_ML4H_FILES`
also recognises the published files once fetched (their documented default
settings are applied by :func:`ukbmri.infer.liver_nets.load_liver_net`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from ukbmri.errors import GitLfsPointerError

__all__ = ["PublishedFile", "PUBLISHED_ML4H_FILES", "LfsPointer", "read_lfs_pointer", "check_not_lfs_pointer"]

_ZOO = "model_zoo/liver_fat_from_mri_ukb"
_MEDIA = "https://media.githubusercontent.com/media/broadinstitute/ml4h/master"
_LFS_HEAD = b"version https://git-lfs.github.com/spec/"
_MAX_POINTER_BYTES = 1024
_OID_RE = re.compile(r"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)
_SIZE_RE = re.compile(r"^size (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class PublishedFile:
    """One published ml4h liver weights file and the settings ukbmri uses for it by default."""

    name: str
    kind: str  #: "teacher" | "student"
    size: int  #: bytes
    sha256: str  #: the Git LFS oid
    input_normalisation: str  #: documented default (docs/ml4h.md)
    why: str

    @property
    def repository_path(self) -> str:
        return f"{_ZOO}/{self.name}"

    @property
    def download_url(self) -> str:
        return f"{_MEDIA}/{self.repository_path}"


#: sha256 -> published file (from the LFS pointers in the ml4h repository).
PUBLISHED_ML4H_FILES: dict[str, PublishedFile] = {
    f.sha256: f
    for f in (
        PublishedFile(
            "liver_fat_from_echo.h5", "teacher", 4_926_304,
            "624ae5c619c9831b822fe586f657677d4b9938b38da7148f459e5a429a801df4", "zero_mean_std1",
            "the teacher's input TensorMap gre_mullti_echo_10_te_liver normalises with ZeroMeanStd1",
        ),
        PublishedFile(
            "liver_fat_from_ideal.h5", "student", 9_896_304,
            "31c61e2fbe7eb685e7b86a069c97cbfaba8224ece0145522718640acfcb07017", "none",
            "the student's input layer is a 2019 'root_array' TensorMap, which set no normalisation "
            "(unverified: check with `ukbmri ml4h check-normalisation`)",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class LfsPointer:
    """A Git LFS pointer file: the sha256 and size of the real file it stands for."""

    path: Path
    sha256: str | None
    size: int | None
    n_bytes: int

    @property
    def published(self) -> PublishedFile | None:
        return PUBLISHED_ML4H_FILES.get(self.sha256 or "")


def read_lfs_pointer(path: str | PathLike[str]) -> LfsPointer | None:
    """The pointer if ``path`` is a Git LFS pointer file, else ``None`` (folders and other files)."""
    path = Path(path)
    if not path.is_file():
        return None
    n = path.stat().st_size
    if n > _MAX_POINTER_BYTES:
        return None
    with open(path, "rb") as f:
        data = f.read(_MAX_POINTER_BYTES)
    if not data.startswith(_LFS_HEAD):
        return None
    text = data.decode("utf8", errors="replace")
    oid, size = _OID_RE.search(text), _SIZE_RE.search(text)
    return LfsPointer(path, oid.group(1) if oid else None, int(size.group(1)) if size else None, n)


def check_not_lfs_pointer(path: str | PathLike[str]) -> None:
    """Raise :class:`GitLfsPointerError` (what it is, how to fetch the real file) if ``path`` is a pointer."""
    p = read_lfs_pointer(path)
    if p is None:
        return
    real = f"{p.size:,} bytes" if p.size is not None else "size unknown"
    pub = p.published
    if pub is not None:
        how = (
            f"this is ml4h's {pub.name} ({pub.kind}); in the ml4h clone run "
            f"`git lfs install && git lfs pull --include {pub.repository_path}`, or download {pub.download_url}"
        )
    else:
        how = (
            "in the repository it came from run `git lfs install && git lfs pull` "
            "(or download the file itself rather than the pointer)"
        )
    raise GitLfsPointerError(
        f"this is a Git LFS pointer, not the weights file: the real file ({real}, sha256 "
        f"{(p.sha256 or '?')[:12]}...) was not downloaded; {how}",
        path=p.path,
        expected="the model file itself",
        found=f"a {p.n_bytes}-byte Git LFS pointer",
    )
