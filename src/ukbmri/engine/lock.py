"""One run per output folder: ``OUT/.ukbmri.lock``.

The lock is a small JSON file created exclusively (``O_EXCL``) with the pid,
host, start time and command of the run holding it; a background thread
touches it every :data:`HEARTBEAT_S` seconds. A second run on the same folder
refuses at once and names the holder. A lock left by a killed run is taken
over: on the same host when its pid is gone, on any host when its heartbeat
is older than :data:`STALE_S` (a pre-empted cloud job leaves no process to ask).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from ukbmri.errors import OutputError, RunLockedError

__all__ = ["RunLock", "HEARTBEAT_S", "STALE_S"]

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_S = 600.0


class RunLock:
    """Context manager holding the lock of an output folder."""

    NAME = ".ukbmri.lock"

    def __init__(self, folder: str | os.PathLike[str], *, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "command": command if command is not None else " ".join(sys.argv)}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder ({exc.strerror or exc})", path=self.folder) from exc
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None or self._stale(holder):
                    log.warning("%s: taking over a lock left by a run that no longer runs (%s)",
                                self.folder, _describe(holder))
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockedError(
                    f"another ukbmri run is using this output folder: {_describe(holder)}; wait for it, or "
                    f"remove {self.NAME} if you are sure it is gone", path=self.folder) from None
            except OSError as exc:
                raise OutputError(f"cannot create the run lock ({exc.strerror or exc})", path=self.path) from exc
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.info, fh)
            self._thread = threading.Thread(target=self._beat, name="ukbmri-lock", daemon=True)
            self._thread.start()
            return
        raise RunLockedError("could not take the run lock (another run keeps taking it)", path=self.folder)

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # half-written by a run killed at that instant: judge it by its age alone
            return {"unreadable": True}

    def _stale(self, holder: dict) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        if age > STALE_S:
            return True
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return not _pid_alive(holder["pid"])
        return holder.get("unreadable", False) and age > 5 * HEARTBEAT_S

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self._read()
        if holder is not None and holder.get("pid") == self.info["pid"] and holder.get("host") == self.info["host"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict | None) -> str:
    if not holder or holder.get("unreadable"):
        return "an unreadable lock"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
