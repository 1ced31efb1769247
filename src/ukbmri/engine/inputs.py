"""Finding participant inputs: zips given directly or inside folders.

Bulk zips are keyed by their name (``<eid>_<field>_<instance>_<array>.zip``);
the readers check the name against the DICOM headers later. A zip whose name
does not follow the convention is kept (its field comes from the headers).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from ukbmri.errors import InputError
from ukbmri.types import ParticipantKey

__all__ = ["find_files", "find_zips", "group_by_participant"]

log = logging.getLogger(__name__)


def find_files(paths: Iterable[str | os.PathLike[str]], suffix: str) -> list[Path]:
    """Files ending in ``suffix`` given directly or found (recursively) in folders; sorted, unique.

    A path that does not exist raises :class:`~ukbmri.errors.InputError`.
    """
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob(f"*{suffix}")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    found[f] = None
        elif p.is_file():
            found[p] = None
        else:
            raise InputError("no such file or folder", path=p)
    return sorted(found)


def find_zips(paths: Iterable[str | os.PathLike[str]], *, fields: Iterable[int] | None = None) -> list[Path]:
    """Zips in ``paths``; with ``fields``, only those whose name says one of them (or an unknown name)."""
    zips = find_files(paths, ".zip")
    if fields is None:
        return zips
    wanted = set(fields)
    out = []
    for z in zips:
        key = ParticipantKey.from_path(z)
        if key is None or key.field in wanted:
            out.append(z)
    return out


def group_by_participant(zips: Iterable[Path]) -> dict[tuple[int, int], dict[int, Path]]:
    """``{(eid, instance): {field: zip}}`` for zips with conventional names (others are skipped)."""
    groups: dict[tuple[int, int], dict[int, Path]] = defaultdict(dict)
    for z in zips:
        key = ParticipantKey.from_path(z)
        if key is not None:
            groups[(key.eid, key.instance)][key.field] = z
        else:
            log.warning("%s: name is not <eid>_<field>_<instance>_<array>.zip; skipped "
                        "(rename it to the UK Biobank convention to include it)", z)
    return dict(sorted(groups.items()))
