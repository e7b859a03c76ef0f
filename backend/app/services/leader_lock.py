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
        # why the lock file could not be opened (a read-only data directory), None while it can
        self.unavailable: str | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._fh is not None

    def try_acquire(self) -> bool:
        """Take the lock if free; False when another process (or handle) holds it or the file cannot be opened.

        A read-only data directory without the lock file (a copied store) sets ``unavailable``: such a
        process serves the store but does not sync.
        """
        if self._fh is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("a+")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self.unavailable = f"the sync lock file {self.path} cannot be created ({reason})"
            return False
        self.unavailable = None
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
