"""Durable file writes: write a temporary file, fsync it, rename it into place, fsync the folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from datapool._signals import deferred
from datapool._testhooks import point
from datapool.errors import PoolWriteError


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "w", **kwargs: object) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it onto `path`.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd: int | None = None
    tmp: str | None = None
    f: IO | None = None
    try:
        # Ctrl-C or SIGTERM between creating the file and holding its name would leave it
        # behind: they wait (deferred) until both are held, then raise in here.
        with deferred():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            f = os.fdopen(fd, mode, **kwargs)  # type: ignore[call-overload]
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        point(f"before-rename:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        if f is None and fd is not None:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def check_writable(folder: Path) -> None:
    """Raise PoolWriteError unless a file can be created in `folder` (read-only mount, missing
    permission, full disk): called before a run does any work, so it fails at once."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".datapool-write-check.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise PoolWriteError(
            f"pool folder {folder} is not writable ({e.strerror}); nothing was done"
        ) from None
    os.close(fd)
    os.unlink(tmp)
