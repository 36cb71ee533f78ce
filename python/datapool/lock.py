"""An exclusive, non-blocking lock on a pool folder: a real POSIX file lock (fcntl.flock).

The lock file records the holder's pid and host, so that the error can say who holds it. The OS
drops a flock when its process dies, so a lock is never left behind by a killed run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from .errors import PoolLockedError

LOCK_NAME = ".datapool.lock"


class PoolLock:
    def __init__(self, pool_dir: Path) -> None:
        self.path = Path(pool_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> PoolLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
                holder = f" (held by pid {info.get('pid')} on {info.get('host')})"
            except (OSError, ValueError):
                pass
            os.close(fd)
            raise PoolLockedError(
                f"pool {self.path.parent} is locked by another datapool run{holder}; "
                "wait for it to finish"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PoolLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
