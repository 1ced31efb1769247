"""What the report folder already holds: input digests of its generated files, so that a
resumed run with nothing new redraws nothing (``report_files/state.json``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ukbmri.io.atomic import write_text

__all__ = ["ReportState", "write_if_changed"]

log = logging.getLogger(__name__)
STATE_VERSION = 1


class ReportState:
    """``{relative file name: digest of what it was made from}`` for one report folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "state.json"
        self._old: dict[str, str] = {}
        self._new: dict[str, str] = {}
        self.rewritten: list[Path] = []
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                if doc.get("version") == STATE_VERSION:
                    self._old = {str(k): str(v) for k, v in doc.get("files", {}).items()}
            except (OSError, ValueError, AttributeError):
                log.warning("report state %s is unreadable; everything is redrawn", self.path)

    def fresh(self, name: str, digest: str) -> bool:
        """True when ``name`` exists and was made from ``digest`` (records it as kept either way)."""
        self._new[name] = digest
        return (self.folder / name).is_file() and self._old.get(name) == digest

    def made(self, name: str) -> None:
        self.rewritten.append(self.folder / name)

    def forget(self, name: str) -> None:
        self._new.pop(name, None)

    def kept(self) -> set[str]:
        return set(self._new)

    def save(self) -> None:
        if self._new != self._old or not self.path.is_file():
            write_text(self.path, json.dumps({"version": STATE_VERSION, "files": dict(sorted(self._new.items()))},
                                             indent=0))

    def remove_stale(self, keep: set[str]) -> int:
        """Delete generated files (``*.png``, ``*.html`` here and in ``thumbs/``) that this run did not make."""
        n = 0
        for pattern in ("*.png", "*.html", "thumbs/*.png"):
            for p in self.folder.glob(pattern):
                if p.relative_to(self.folder).as_posix() not in keep:
                    p.unlink(missing_ok=True)
                    n += 1
        return n


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds exactly it; True when written."""
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text(path, text)
    return True
