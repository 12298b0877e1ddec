"""One daemon per DATA_DIR: an exclusive `flock` on a file inside it.

Two daemons on one directory would run the same pair twice at the same time (double fees,
overshoot) and race on the ledger. The kernel drops the lock when its holder dies, SIGKILL
included, so a crashed daemon never leaves a stale lock behind. The file keeps the holder's
pid only to name it in the refusal; the lock itself is what counts.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_NAME = "daemon.lock"


class DataDirLockError(Exception):
    """DATA_DIR cannot be held; `str()` is the one line to show."""


class DataDirInUse(DataDirLockError):
    """Another process holds DATA_DIR."""


class DataDirLock:
    """`with DataDirLock(path):` holds `path/daemon.lock` exclusively, or raises DataDirInUse.

    The directory must exist. The descriptor is not inherited by child processes (Python
    opens files close-on-exec), so a regolancer left running does not keep the lock.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now (never waits); idempotent while held."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # e.g. left by a run as root: this user cannot open it
            raise DataDirLockError(
                f"{self.path}: cannot open it ({exc.strerror}); fix its owner or remove it"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DataDirInUse(
                f"DATA_DIR {self.data_dir.resolve()} is in use by another "
                f"regolancer-orchestrator ({who}); stop it first, or give this one its own "
                "DATA_DIR"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next daemon in (the file stays: removing it would race a new holder)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isascii() and text.isdigit() else None
