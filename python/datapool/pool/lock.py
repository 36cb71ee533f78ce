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
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

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


def lock_holder(pool_dir: Path) -> dict[str, Any] | None:
    """Who holds the pool's lock, as its lock file records, for `datapool status`: read without
    taking the lock or waiting for it (a run that starts meanwhile is never in its way). None
    where no run holds it (an empty record: released, or never taken). Else `pid`, `host`,
    `since` (ISO 8601, UTC) and `state`:

    - 'held': a process of this host holds the flock (Linux /proc/locks; elsewhere, its pid is
      alive);
    - 'stale': the record of a run of this host that is no longer running (killed, or power
      lost), with `reason`: nothing blocks the next run, which takes the lock over (and
      finishes or undoes an interrupted commit: pool/journal.py);
    - 'elsewhere': a run of another host (a shared folder): whether it still runs, only that
      host tells."""
    try:
        data = (Path(pool_dir) / LOCK_NAME).read_bytes()
    except OSError:
        return None
    if not data.strip():
        return None
    try:
        info = json.loads(data.decode())
        pid, host = int(info["pid"]), str(info["host"])
        since = float(info.get("since") or 0.0)
    except (ValueError, KeyError, TypeError):
        return None  # (a record being written, or not datapool's: nothing to say of it)
    out: dict[str, Any] = {
        "pid": pid,
        "host": host,
        "since": datetime.fromtimestamp(since, timezone.utc).isoformat(timespec="seconds"),
    }
    if host != socket.gethostname():
        return {**out, "state": "elsewhere"}
    if not pid_alive(pid):
        return {**out, "state": "stale", "reason": "that process is no longer running"}
    if _flocked(Path(pool_dir) / LOCK_NAME, pid) is False:
        return {**out, "state": "stale", "reason": "its pid is alive but holds no lock: reused"}
    return {**out, "state": "held"}


def _flocked(path: Path, pid: int) -> bool | None:
    """Whether a process holds a flock on `path`, by Linux's /proc/locks (its device and inode,
    or a flock of `pid` where an overlay folder shows another device); None where that file
    cannot be read (another OS)."""
    try:
        st = os.stat(path)
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in text.splitlines():
        parts = line.split()  # "3: FLOCK  ADVISORY  WRITE 2150 fe:00:2146699 0 EOF"
        if len(parts) >= 6 and parts[1] == "FLOCK" and (parts[5] == inode or parts[4] == str(pid)):
            return True
    return False


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
