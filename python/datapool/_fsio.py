"""File-system primitives every store uses: durable writes and flock'd lock files.

Durable writes, one for each way a file changes:
- `atomic_writer` / `atomic_write_bytes` / `atomic_write_text`: a whole file replaced: written
  beside its target, fsynced, renamed onto it, the folder fsynced (readers see the old file or
  the new one, never a part); the file's mode is 0666 less the umask, as for any new file;
- `write_durably`: a whole file written in place and fsynced, for a file no reader knows yet (a
  commit's staged `.pending` file);
- `cut_and_append`: an existing file cut to a length and appended to, then fsynced: an append
  that can be replayed any number of times (a torn earlier try is cut off first);
- `fsync_dir`: a rename or a new file made durable;
- `BatchedWrites`: many whole files replaced as `atomic_writer` replaces one, with one flush of
  the file system (syncfs) per batch instead of one fsync per file (an export of 20,000 files).

`LockFile` is an open lock file and its fcntl.flock, which the OS drops when the holder closes
the file or dies: pool/lock.py (the pool's exclusive lock) and pool/sidecar.py (the sidecar's
exclusive-else-shared lock) both hold one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

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
def atomic_writer(
    path: Path, mode: str = "w", *, sync_dir: bool = True, **kwargs: object
) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it onto `path`, then
    fsync the folder (unless `sync_dir` is False: the caller fsyncs it once after many writes).

    On an exception the temporary file is removed and `path` is left as it was. The rename
    replaces `path` itself: where `path` is a symbolic link, the link is replaced, never
    written through.
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
            fd, tmp = _create_beside(path)
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
    if sync_dir:
        fsync_dir(path.parent)


_NAME_MAX = 255  # bytes in one file name: ext4, XFS, Btrfs, APFS, NTFS (UTF-16 units there)


def _create_beside(path: Path) -> tuple[int, str]:
    """Create a new temporary file beside `path`, open for writing: (fd, its path). Its mode is
    0666 less the umask, as `open` makes a file, so the file renamed onto `path` is as readable
    as any other the user writes (mkstemp's 0600 is not: another user's job could not read an
    export, a pool or a cache)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    # A name within 18 bytes of the file system's 255-byte limit would make the temporary one
    # too long (ENAMETOOLONG): such a file's temporary name does not repeat its name.
    stem = path.name if len(os.fsencode(path.name)) <= _NAME_MAX - 18 else "datapool"
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{stem}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_bytes(path: Path, data: bytes | memoryview, *, sync_dir: bool = True) -> None:
    with atomic_writer(path, "wb", sync_dir=sync_dir) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


class BatchedWrites:
    """Whole files replaced as `atomic_write_bytes(..., sync_dir=False)` replaces one (written
    beside the target, durable, then renamed onto it: a name never holds a part of a file, even
    after a power cut), but made durable in batches: each batch's files are written without an
    fsync, then one syncfs(2) per file system flushes them all, then they are renamed. One fsync
    per file costs a journal commit each (3 ms on ext4 here: 60 of the 80 s of exporting 21,000
    small images; bench/bench_export.py). Where the system has no syncfs (macOS), each file is
    fsynced before the renames, as before.

    `add` returns once the file is written beside its target; `flush` (also called by `add` once
    a batch is full) makes the pending files durable and renames them, uninterrupted by Ctrl-C or
    SIGTERM (they wait until the renames are done); `on_renamed(path)` is called for each.
    `discard` removes the pending files (an error, an interrupt before a flush)."""

    def __init__(
        self, on_renamed: Callable[[Path], None], max_files: int = 512, max_bytes: int = 256 << 20
    ) -> None:
        self._pending: list[tuple[str, Path]] = []
        self._bytes = 0
        self._on_renamed = on_renamed
        self._max_files, self._max_bytes = max_files, max_bytes

    def add(self, path: Path, data: bytes) -> None:
        fd: int | None = None
        tmp: str | None = None
        try:
            with deferred():  # (as in atomic_writer: the name is held before an interrupt)
                fd, tmp = _create_beside(path)
            with os.fdopen(fd, "wb") as f:
                fd = None
                f.write(data)
        except BaseException:
            if fd is not None:
                os.close(fd)
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise
        self._pending.append((tmp, path))
        self._bytes += len(data)
        if len(self._pending) >= self._max_files or self._bytes >= self._max_bytes:
            self.flush()

    def flush(self) -> None:
        pending, self._pending, self._bytes = self._pending, [], 0
        if not pending:
            return
        done = 0
        try:
            with deferred():
                _make_durable([tmp for tmp, _ in pending])
                for tmp, path in pending:
                    os.replace(tmp, path)
                    done += 1
                    self._on_renamed(path)
        except BaseException:
            for tmp, _ in pending[done:]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise

    def discard(self) -> None:
        pending, self._pending, self._bytes = self._pending, [], 0
        for tmp, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _make_durable(files: list[str]) -> None:
    """Make the data of `files` (written, closed, not fsynced) durable: syncfs(2) once on each
    file system that holds one of them, or, without syncfs, an fsync of each."""
    import ctypes

    syncfs = _syncfs()
    if syncfs is None:
        for name in files:
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return
    devices: dict[int, str] = {}
    for folder in {os.path.dirname(name) for name in files}:
        devices.setdefault(os.stat(folder).st_dev, folder)
    for folder in devices.values():
        fd = os.open(folder, os.O_RDONLY)
        try:
            if syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), folder)
        finally:
            os.close(fd)


_SYNCFS: list[Any] = []


def _syncfs() -> Any:
    """libc's syncfs (Linux), or None."""
    if not _SYNCFS:
        import ctypes

        try:
            _SYNCFS.append(ctypes.CDLL(None, use_errno=True).syncfs)
        except (OSError, AttributeError):
            _SYNCFS.append(None)
    return _SYNCFS[0]


def write_durably(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write `data` (bytes, or blocks of them: a pool CSV is never whole in memory) as the whole
    of `path`, in place, and fsync it. Not atomic: for a file that no reader looks at until the
    caller renames it (or records it in a journal)."""
    with open(path, "wb") as f:
        if isinstance(data, bytes):
            f.write(data)
        else:
            for block in data:
                f.write(block)
        f.flush()
        os.fsync(f.fileno())


def read_prefix(path: Path, length: int, block: int = 1 << 20) -> Iterator[bytes]:
    """The first `length` bytes of `path`, a block at a time (for write_durably: a pool CSV is
    never whole in memory). Raises OSError where the file is shorter."""
    with open(path, "rb") as f:
        yield from read_prefix_of(f, length, block)


def read_prefix_of(f: IO[bytes], length: int, block: int = 1 << 20) -> Iterator[bytes]:
    """The next `length` bytes of the open file `f`, a block at a time; OSError where it ends
    before them."""
    left = length
    while left:
        data = f.read(min(block, left))
        if not data:
            raise OSError(f"{getattr(f, 'name', 'the file')} is shorter than expected")
        left -= len(data)
        yield data


def cut_and_append(path: Path, length: int, data: bytes | memoryview = b"") -> None:
    """Cut the existing file `path` to `length` bytes, write `data` after them, and fsync.

    Running it again gives the same file, so an append recorded with the file's length before it
    can be replayed after a crash; with no `data` it is a durable truncation (a rolled-back
    append). A missing file raises FileNotFoundError: this never creates one."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, length)
        view, offset = memoryview(data), length
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        os.fsync(fd)
    finally:
        os.close(fd)


class LockFile:
    """An open lock file (created if missing) and its fcntl.flock.

    The OS drops the flock when the file is closed or its process dies, so a killed holder
    never blocks the next one. Opening raises OSError (a read-only folder, a missing one)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def lock(self, *, shared: bool = False, wait: bool = False) -> bool:
        """Take the flock, exclusive unless `shared`. Without `wait`, return False at once (and
        hold nothing) when another holder is in the way; with it, block until the lock is had."""
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self.fd, op if wait else op | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        """Release the flock (a no-op when none is held) and close the file."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


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


def unexpanded_home(path: str) -> str | None:
    """The path meant, where `path` starts with a `~` that the shell did not expand (quoted, from
    a config file, or after `=` as in `--pool=~/pool`) and no folder of that name exists here:
    writing there would make a folder named `~` in the working directory (one that `rm -rf ~`
    then deletes as the home folder). None otherwise: a `~` folder that exists is used as given."""
    head = path.replace(os.sep, "/").split("/", 1)[0]
    if not head.startswith("~") or os.path.lexists(head):
        return None
    meant = os.path.expanduser(path)
    return meant if meant != path else None
