"""An exclusive, non-blocking lock on a pool folder: a real POSIX file lock (fcntl.flock, held
through _fsio.LockFile).

The lock file records the holder's pid and host, so that the error can say who holds it. The OS
drops a flock when its process dies, so a killed run never blocks the next one. A clean release
empties the file; a run that was killed (SIGKILL, power loss) leaves its pid and host behind. The
next run takes the free lock over and warns about it (logger `datapool`, which the CLI prints on
stderr), saying whether that pid is still alive on this host, and records the warning in its
report: a stale record means the previous run did not finish, and its commit was rolled back or
forward by the journal (see pool/journal.py).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from datapool._fsio import LockFile
from datapool.errors import IN_RESULT, PoolLockedError, PoolWriteError
from datapool.pool.layout import LOCK_NAME

log = logging.getLogger("datapool")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class PoolLock:
    def __init__(self, pool_dir: Path) -> None:
        self.path = Path(pool_dir) / LOCK_NAME
        self._file: LockFile | None = None
        self.took_over: str | None = None  # the warning, when a stale lock record was taken over

    def acquire(self) -> PoolLock:
        try:
            file = LockFile(self.path)
        except OSError as e:
            raise PoolWriteError(
                f"cannot open the lock file {self.path} ({e.strerror}); the pool folder must be "
                "writable; nothing was done"
            ) from None
        try:
            if not file.lock():
                raise PoolLockedError(
                    f"pool {self.path.parent} is locked by another datapool run"
                    f"{self._holder(file.fd)}; wait for it to finish"
                )
            self.took_over = self._stale_record(os.pread(file.fd, 4096, 0))
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            os.ftruncate(file.fd, 0)
            os.pwrite(file.fd, json.dumps(info).encode(), 0)
            os.fsync(file.fd)
        except OSError as e:  # a full disk: the run could not commit anyway
            file.close()
            raise PoolWriteError(
                f"cannot write the lock file {self.path} ({e.strerror}); nothing was done"
            ) from None
        except BaseException:
            file.close()
            raise
        self._file = file
        if self.took_over:
            log.warning("%s", self.took_over, extra={IN_RESULT: True})
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        """Who holds the lock, as its record says, for the error message ("" if unreadable)."""
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            return ""
        if not isinstance(info, dict) or info.get("pid") is None:  # (not written yet)
            return ""
        return f" (held by pid {info['pid']} on {info.get('host') or 'an unknown host'})"

    def _stale_record(self, data: bytes) -> str | None:
        """The warning for a record left by a holder that died without releasing, or None."""
        if not data.strip():
            return None
        try:
            info = json.loads(data.decode())
            pid, host = int(info["pid"]), str(info["host"])
        except (ValueError, KeyError, TypeError):
            return f"took over the lock of pool {self.path.parent}: its lock file held an unreadable record"
        if host != socket.gethostname():
            state = f"on another host, {host}; its lock is free here"
        elif pid == os.getpid():
            state = "this process, which did not release it"
        elif pid_alive(pid):
            state = f"on this host; pid {pid} is alive but does not hold the lock (pid reused?)"
        else:
            state = "on this host; that process is no longer running"
        return (
            f"took over the lock of pool {self.path.parent} left by pid {pid} ({state}); the "
            "previous run was interrupted before it finished"
        )

    def release(self) -> None:
        if self._file is not None:
            os.ftruncate(self._file.fd, 0)
            self._file.close()
            self._file = None

    def __enter__(self) -> PoolLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
