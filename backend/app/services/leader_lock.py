"""The sync leader lock: only the process holding it syncs (DB-42)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class LeaderLock:
    """Non-blocking exclusive ``fcntl.flock`` on ``<db_path>.lock``: only its holder syncs (DB-42)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._fh is not None

    def try_acquire(self) -> bool:
        """Take the lock if free; False when another process (or handle) holds it."""
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fh is None:
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None
