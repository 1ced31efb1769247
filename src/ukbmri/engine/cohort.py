"""A cohort of visits, discovered once from the inputs a user gives.

``Cohort.discover(paths)`` walks files and folders (recursively, like the UK
Biobank RAP ``Bulk/<field group>/<NN>/`` layout) once and groups bulk zips by
visit: ``(eid, instance) -> {field: InputFile}``. Every anomaly is decided here
and recorded as a ledger row (stage ``discover``), never dropped silently:

* a name outside ``<eid>_<field>_<instance>_<array>.zip``,
* two different files for one visit and field (neither is used: which one is
  right is the user's call); identical copies (one is used, the others are listed;
  links to one file are the same file, not copies),
* a dangling link, a folder named like a zip, a listed path that does not exist.

Zips of fields no stage reads (brain, heart, ...) are counted in
:attr:`Cohort.ignored` and reported, not listed one by one.

A folder given directly that holds MIMIR ``.npy`` images and no zips is an image
cache: its ``<eid>_20201_<instance>_<array>.npy`` files are body inputs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ukbmri.engine.ledger import Failure
from ukbmri.types import ParticipantKey

__all__ = ["InputFile", "Visit", "Cohort", "read_eids", "read_path_list", "find_files", "shard_of", "sha256_file", "KNOWN_FIELDS"]

log = logging.getLogger(__name__)

#: the bulk fields some stage reads
KNOWN_FIELDS = (20201, 20203, 20254)
STAGE = "discover"


@dataclass(frozen=True)
class InputFile:
    """One input file and its cheap identity (size, modification time)."""

    path: Path
    size: int
    mtime_ns: int
    kind: str = "zip"  #: "zip" or "image" (a MIMIR .npy from a cache folder)

    @property
    def identity(self) -> str:
        """Name, size and mtime: what resume compares (a replaced file changes it)."""
        return f"{self.path.name}:{self.size}:{self.mtime_ns}"

    @classmethod
    def of(cls, path: Path, kind: str = "zip") -> InputFile:
        st = path.stat()
        return cls(path, st.st_size, st.st_mtime_ns, kind)


@dataclass(frozen=True)
class Visit:
    """One participant visit and its input files per field."""

    eid: int
    instance: int
    inputs: Mapping[int, InputFile]

    @property
    def key(self) -> tuple[int, int]:
        return (self.eid, self.instance)


def shard_of(eid: int, n: int) -> int:
    """The shard (0..n-1) of a participant: a hash of the eid, stable when participants are added."""
    return int.from_bytes(hashlib.blake2b(str(int(eid)).encode(), digest_size=8).digest(), "big") % n


@dataclass
class Cohort:
    visits: list[Visit]
    anomalies: list[Failure] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  #: zips of fields no stage reads, per field
    filtered_out: int = 0  #: visits left out by --eids or by the shard

    def __len__(self) -> int:
        return len(self.visits)

    def shard(self, index: int, count: int) -> Cohort:
        """The visits of shard ``index`` of ``count`` (by eid; anomalies follow their eid)."""
        if not 0 <= index < count:
            raise ValueError(f"shard index must be in 0..{count - 1}, got {index}")
        keep = [v for v in self.visits if shard_of(v.eid, count) == index]
        anomalies = [a for a in self.anomalies if a.eid is None and index == 0
                     or a.eid is not None and shard_of(a.eid, count) == index]
        return Cohort(keep, anomalies, self.ignored if index == 0 else Counter(),
                      self.filtered_out + len(self.visits) - len(keep))

    @classmethod
    def discover(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        *,
        inputs_from: str | os.PathLike[str] | None = None,
        eids: Iterable[int] | None = None,
        fields: Sequence[int] = KNOWN_FIELDS,
    ) -> Cohort:
        """Find every input once (see the module docstring)."""
        paths = [Path(p) for p in paths]
        anomalies: list[Failure] = []
        if inputs_from is not None:
            paths += read_path_list(inputs_from)
        found: dict[tuple[int, int, int], list[InputFile]] = defaultdict(list)
        ignored: Counter = Counter()
        wanted = set(fields)
        for p in paths:
            for item in _walk(p):
                if isinstance(item, Failure):
                    anomalies.append(item)
                    continue
                key = ParticipantKey.from_path(item.path)
                if key is None:
                    anomalies.append(_anomaly(item.path, "InputNameError",
                                              "name does not follow the UK Biobank convention "
                                              "<eid>_<field>_<instance>_<array>.zip; rename it to include it"))
                elif key.field not in wanted:
                    ignored[key.field] += 1
                else:
                    found[(key.eid, key.instance, key.field)].append(item)
        eid_set = None if eids is None else {int(e) for e in eids}
        grouped: dict[tuple[int, int], dict[int, InputFile]] = defaultdict(dict)
        filtered = set()
        for (eid, inst, fld), files in sorted(found.items()):
            if eid_set is not None and eid not in eid_set:
                filtered.add((eid, inst))
                continue
            chosen = _one_file(files, anomalies)
            if chosen is not None:
                grouped[(eid, inst)][fld] = chosen
        visits = [Visit(eid, inst, dict(sorted(inputs.items()))) for (eid, inst), inputs in sorted(grouped.items())]
        anomalies.sort(key=lambda a: (a.eid is None, a.eid or 0, a.instance or 0, a.input, a.error))
        if ignored:
            log.info("ignored zips of fields no stage reads: %s",
                     ", ".join(f"{f}: {n}" for f, n in sorted(ignored.items())))
        return cls(visits, anomalies, ignored, len(filtered - set(grouped)))


def _anomaly(path: Path, error: str, message: str) -> Failure:
    key = ParticipantKey.from_path(path)
    return Failure(input=str(path), stage=STAGE, error=error, message=message,
                   eid=key.eid if key else None, instance=key.instance if key else None,
                   field=key.field if key else None)


def _one_file(files: list[InputFile], anomalies: list[Failure]) -> InputFile | None:
    """The file for one visit and field; ``None`` (and a ledger row each) when they differ."""
    unique: dict[str, InputFile] = {}
    for f in files:
        unique.setdefault(os.path.realpath(f.path), f)
    files = sorted(unique.values(), key=lambda f: str(f.path))
    if len(files) == 1:
        return files[0]
    names = ", ".join(str(f.path) for f in files)
    if len({f.size for f in files}) == 1 and len({sha256_file(f.path) for f in files}) == 1:
        for f in files[1:]:
            anomalies.append(_anomaly(f.path, "DuplicateInputError",
                                      f"identical copies of one input ({names}); used {files[0].path}: "
                                      "remove the extra copies"))
        return files[0]
    for f in files:
        anomalies.append(_anomaly(f.path, "DuplicateInputError",
                                  f"{len(files)} different files for one visit and field ({names}); none was used: "
                                  "remove the wrong one or list the right one with --inputs-from"))
    return None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (hex)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _walk(root: Path) -> Iterator[InputFile | Failure]:
    """Input files under ``root`` (a file or a folder), with anomalies as Failures."""
    if root.is_symlink() and not root.exists():
        yield _anomaly(root, "InputError", "dangling link (its target does not exist)")
        return
    if not root.exists():
        yield _anomaly(root, "InputError", "no such file or folder")
        return
    if root.is_file():
        if root.name.lower().endswith(".npy"):
            yield InputFile.of(root, "image")
        else:
            yield InputFile.of(root)
        return
    cache = _is_image_cache(root)
    seen: set[str] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:  # a link cycle or a folder reached twice
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield _anomaly(Path(folder), "InputError", f"folder cannot be read ({exc.strerror})")
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            lower = e.name.lower()
            is_zip, is_npy = lower.endswith(".zip"), cache and lower.endswith(".npy")
            try:
                if e.is_dir():
                    if is_zip:
                        yield _anomaly(Path(e.path), "InputError", "a folder named like a zip (expected a zip file)")
                    else:
                        stack.append(Path(e.path))
                    continue
                if not (is_zip or is_npy):
                    continue
                if e.is_symlink() and not os.path.exists(e.path):
                    yield _anomaly(Path(e.path), "InputError", "dangling link (its target does not exist)")
                    continue
                if not e.is_file():
                    yield _anomaly(Path(e.path), "InputError", "not a regular file")
                    continue
                st = e.stat()
            except OSError as exc:
                yield _anomaly(Path(e.path), "InputError", f"cannot be read ({exc.strerror})")
                continue
            yield InputFile(Path(e.path), st.st_size, st.st_mtime_ns, "image" if is_npy else "zip")


def _is_image_cache(folder: Path) -> bool:
    """A folder of MIMIR .npy images with no zips in it (not searched below)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return any(n.endswith(".npy") for n in names) and not any(n.lower().endswith(".zip") for n in names)


def find_files(paths: Iterable[str | os.PathLike[str]], suffix: str) -> list[Path]:
    """Files ending in ``suffix`` given directly or found (recursively) in folders; sorted, unique.

    A path that does not exist raises :class:`~ukbmri.errors.InputError`.
    """
    from ukbmri.errors import InputError

    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(f for f in p.rglob(f"*{suffix}")
                         if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            found.add(p)
        else:
            raise InputError("no such file or folder", path=p)
    return sorted(found)


def read_path_list(path: str | os.PathLike[str]) -> list[Path]:
    """Paths from a text file, one a line (blank lines and ``#`` comments skipped)."""
    from ukbmri.errors import InputError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("cannot read the list of inputs", path=path, found=type(exc).__name__) from exc
    return [Path(s.strip()) for s in lines if s.strip() and not s.lstrip().startswith("#")]


def read_eids(path: str | os.PathLike[str]) -> set[int]:
    """Participant ids from a text file (one a line) or a CSV with an ``eid`` column."""
    from ukbmri.errors import InputError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("cannot read the participant list", path=path, found=type(exc).__name__) from exc
    rows = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    col = 0
    if rows and "eid" in [c.strip().strip('"').lower() for c in rows[0].split(",")]:
        col = [c.strip().strip('"').lower() for c in rows[0].split(",")].index("eid")
        rows = rows[1:]
    out = set()
    for i, r in enumerate(rows):
        cell = r.split(",")[col].strip().strip('"')
        try:
            out.add(int(cell))
        except ValueError:
            raise InputError("not a participant id", path=path, member=f"line {i + 1}",
                             expected="an integer eid", found=repr(cell[:40])) from None
    return out
