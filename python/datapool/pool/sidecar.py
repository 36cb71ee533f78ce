"""A binary sidecar of the pool CSV, so that opening a pool maps its embeddings instead of
parsing them.

The CSV stays the pool's truth (Lightly reads it; commits append to it through the journal).
Beside it, in `.sidecar/`:

    embeddings.f32   rows x dim float32, row-major, opened with np.memmap (read-only)
    labels.i64       rows int64
    names.bin        the filenames, UTF-8, each followed by a NUL byte (names never hold one)
    manifest.json    what the files hold and which CSV prefix they mirror (written atomically)

The manifest records, for the CSV, its committed length, its inode, a CRC-32 of the whole
committed prefix (extended append by append, so keeping it costs what was appended) and CRC-32s
of the first and last 64 KiB of that prefix; for each sidecar file its committed length, its full
CRC-32 (also extended per append) and the CRC-32 of its last 64 KiB. Opening a pool (`load`):
- checks the CSV against the manifest: same inode, at least the committed length, the same head
  and tail CRCs (O(1): a rewrite by --process-all or a removal replaces the file, so its inode
  changes; the CRCs catch an edit in place). `verify=True` also re-reads the whole prefix for the
  full CRC, and the whole of each sidecar file for its full CRC;
- checks each sidecar file: at least its committed length and the same tail CRC. Bytes past the
  committed lengths are what a crash left in the middle of an append: they are cut off;
- when the CSV has grown past the committed length (a run appended rows), parses only the new
  rows (up to the last complete line) and appends them to the sidecar: the sidecar files are
  written and fsynced, then the manifest is replaced atomically. O(new rows), plus a duplicate
  check of the new names against the old ones;
- anything that does not match: the sidecar is not trusted; it is rebuilt from the whole CSV.
A missing or stale sidecar therefore costs one full parse; it is never a source of wrong data
unless someone edits the CSV in place keeping its inode, length and both 64 KiB ends (then
`verify=True` catches it).

Files are only ever appended to past their committed length, or replaced whole by rename, so a
np.memmap handed out earlier stays valid. The sidecar has a lock of its own (`.sidecar/lock`): an open takes it exclusively when it can and
may then write; otherwise it waits for a shared hold (until the writer is done) and only reads.
Opening a pool whose folder is read-only parses or maps without writing anything.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from datapool._fsio import LockFile, atomic_write_bytes, cut_and_append, fsync_dir
from datapool.errors import PoolCorruptError
from datapool.pool import csvfile as pool_csv
from datapool.pool.layout import (
    SIDECAR_DIR,
    SIDECAR_EMBEDDINGS,
    SIDECAR_LABELS,
    SIDECAR_LOCK,
    SIDECAR_MANIFEST,
    SIDECAR_NAMES,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import numpy.typing as npt

VERSION = 1
_EDGE = 65536  # bytes at each end of a file covered by the cheap CRCs

Loaded = tuple[list[str], "npt.NDArray[np.float32]", "npt.NDArray[np.int64]"]


class Rows(Protocol):
    """The rows a commit wrote (pool/store.py's Rows): the matrix is read only when needed."""

    names: list[str]

    @property
    def embeddings(self) -> npt.NDArray[np.float32]: ...

    @property
    def labels(self) -> npt.NDArray[np.int64]: ...


def _crc_range(f: Any, start: int, end: int, crc: int = 0) -> int:
    f.seek(start)
    left = end - start
    while left > 0:
        block = f.read(min(left, 1 << 20))
        if not block:
            raise OSError(errno.EIO, "file shorter than expected")
        crc = zlib.crc32(block, crc)
        left -= len(block)
    return crc


def _edges(path: Path, length: int) -> tuple[int, int]:
    """CRC-32 of the first and of the last 64 KiB of path[0:length]."""
    with open(path, "rb") as f:
        return _crc_range(f, 0, min(length, _EDGE)), _crc_range(f, max(0, length - _EDGE), length)


def _tail_crc(path: Path, length: int) -> int:
    with open(path, "rb") as f:
        return _crc_range(f, max(0, length - _EDGE), length)


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[bool | None]:
    """The sidecar's lock. Yields True with the exclusive lock (this process may write the
    sidecar), False with a shared one (another process is writing it: wait for it, then only
    read), None when no lock can be had (a read-only pool folder: only read)."""
    try:
        folder.mkdir(exist_ok=True)
        file = LockFile(folder / SIDECAR_LOCK)
    except OSError:
        yield None
        return
    try:
        exclusive = file.lock()
        if not exclusive:
            file.lock(shared=True, wait=True)  # readers share; a writer needs them all gone
        yield exclusive
    finally:
        file.close()


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        m = json.loads((folder / SIDECAR_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("version") != VERSION:
        return None
    body = {k: v for k, v in m.items() if k != "self_crc"}
    if m.get("self_crc") != zlib.crc32(json.dumps(body, sort_keys=True).encode()):
        return None
    return m


def _write_manifest(folder: Path, m: dict[str, Any]) -> None:
    body = {k: v for k, v in m.items() if k != "self_crc"}
    body["self_crc"] = zlib.crc32(json.dumps(body, sort_keys=True).encode())
    atomic_write_bytes(folder / SIDECAR_MANIFEST, json.dumps(body, sort_keys=True).encode())


def _bytes_view(a: npt.NDArray[Any]) -> memoryview:
    """The bytes of a C-contiguous array, without the copy tobytes() makes (2 GB for a
    1,000,000 x 510 pool)."""
    a = np.ascontiguousarray(a)
    return a.data.cast("B") if a.size else memoryview(b"")


def _complete_lines_end(f: Any, start: int, size: int) -> int:
    """The offset just past the last line end in f[start:size] (start when there is none)."""
    end = size
    while end > start:
        begin = max(start, end - (1 << 16))
        f.seek(begin)
        block = f.read(end - begin)
        at = block.rfind(b"\n")
        if at >= 0:
            return begin + at + 1
        end = begin
    return start


def _append_durably(
    path: Path, committed: int, data: bytes | memoryview, crc: int = 0
) -> dict[str, int]:
    """Cut the file to its committed length, append data, fsync. Returns the file's manifest
    entry: new length, full CRC-32 (extending `crc`, the committed part's) and tail CRC-32."""
    cut_and_append(path, committed, data)
    n = committed + len(data)
    return {"bytes": n, "crc32": zlib.crc32(data, crc), "tail_crc32": _tail_crc(path, n)}


def _replace_durably(path: Path, data: bytes | memoryview) -> dict[str, int]:
    """Replace the file by `data` (a rename: a mapping of the old file stays valid). Returns
    the file's manifest entry."""
    atomic_write_bytes(path, data)
    n = len(data)
    return {
        "bytes": n,
        "crc32": zlib.crc32(data),
        "tail_crc32": zlib.crc32(data[max(0, n - _EDGE) :]),
    }


def _names_blob(names: list[str]) -> bytes:
    return "".join(n + "\0" for n in names).encode("utf-8")


class CsvDigest:
    """What the manifest records of a CSV (its length, full CRC-32 and the CRC-32s of its first
    and last 64 KiB), gathered from the blocks as a commit writes them (`wrap`), so that the
    sidecar of a rewritten CSV is written from the rows in memory without reading the file back."""

    def __init__(self) -> None:
        self.length, self.crc = 0, 0
        self._head, self._tail = bytearray(), bytearray()

    def wrap(self, blocks: Iterable[bytes]) -> Iterator[bytes]:
        for block in blocks:
            self.length += len(block)
            self.crc = zlib.crc32(block, self.crc)
            if len(self._head) < _EDGE:
                self._head += block[: _EDGE - len(self._head)]
            self._tail += block[-_EDGE:]
            del self._tail[:-_EDGE]
            yield block

    @classmethod
    def of(cls, data: bytes) -> CsvDigest:
        """The digest of a CSV written in one piece."""
        digest = cls()
        for _ in digest.wrap((data,)):
            pass
        return digest

    def edges(self) -> tuple[int, int]:
        return zlib.crc32(self._head), zlib.crc32(self._tail)


def _csv_entry(csv_path: Path, length: int, ino: int) -> dict[str, int]:
    """The manifest's record of csv_path[0:length], read from the file."""
    with open(csv_path, "rb") as f:
        full = _crc_range(f, 0, length)
    head, tail = _edges(csv_path, length)
    return {"bytes": length, "ino": ino, "crc32": full, "head_crc32": head, "tail_crc32": tail}


def _write_fresh(
    folder: Path,
    names: list[str],
    emb: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    csv_entry: Callable[[], dict[str, int]],
) -> None:
    """Replace the sidecar by these rows, the mirror of the CSV that `csv_entry()` describes."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder / SIDECAR_MANIFEST)  # nothing is trusted until the new manifest lands
    fsync_dir(folder)
    # New files renamed into place: a mapping of the old ones (another Pool still in use)
    # keeps its inode, where truncating in place would make it fault (SIGBUS).
    files = {
        SIDECAR_EMBEDDINGS: _replace_durably(folder / SIDECAR_EMBEDDINGS, _bytes_view(emb)),
        SIDECAR_LABELS: _replace_durably(folder / SIDECAR_LABELS, labels.astype("<i8").tobytes()),
        SIDECAR_NAMES: _replace_durably(folder / SIDECAR_NAMES, _names_blob(names)),
    }
    _write_manifest(
        folder,
        {
            "version": VERSION,
            "rows": len(names),
            "dim": int(emb.shape[1]),
            "csv": csv_entry(),
            "files": files,
        },
    )


def _build(
    csv_path: Path, folder: Path, dim: int | None, csv_stat: os.stat_result, may_write: bool
) -> Loaded:
    """Parse the whole CSV and, when this process holds the write lock, write a fresh sidecar."""
    names, emb, labels = pool_csv.read_csv(csv_path, dim=dim)
    now = os.stat(csv_path)
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (
        csv_stat.st_ino,
        csv_stat.st_size,
        csv_stat.st_mtime_ns,
    ):
        return names, emb, labels  # the CSV changed while it was parsed: record nothing
    if not may_write:
        return names, emb, labels
    try:
        _write_fresh(
            folder,
            names,
            emb,
            labels,
            lambda: _csv_entry(csv_path, csv_stat.st_size, csv_stat.st_ino),
        )
    except OSError:
        pass  # a cache: a full disk or a read-only folder costs the next open a parse, no more
    return names, emb, labels


def _parses_back(
    names: list[str], emb: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]
) -> bool:
    """Whether reading the CSV of these rows back gives them, so that the sidecar may hold them:
    float32 and finite (9 digits round-trip a float32), labels int64 and non-negative, names
    unique, as the reader demands (a row it would refuse is left to it to report)."""
    if emb.dtype != np.float32 or emb.ndim != 2 or labels.dtype != np.int64:
        return False
    if len(names) != emb.shape[0] or len(labels) != emb.shape[0] or (labels < 0).any():
        return False
    step = 1 << 16
    if not all(np.isfinite(emb[i : i + step]).all() for i in range(0, emb.shape[0], step)):
        return False
    return len(set(names)) == len(names)


def write_rows(
    csv_path: Path,
    names: list[str],
    emb: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    digest: CsvDigest,
) -> bool:
    """After a commit that wrote the whole CSV from these rows (their blocks passed through
    `digest.wrap`): the sidecar written from the rows, not by parsing the file back. The same
    files and manifest as `load` would write after its parse (tests/test_sidecar.py), since
    the CSV's floats round-trip float32 exactly: a rewrite of a 1,000,000 x 510 pool read its
    6.9 GB again and held a second copy of the matrix. False, having written nothing, when the
    file is not the length the digest saw or another process holds the sidecar's lock (the
    caller then opens the pool the usual way)."""
    csv_path = Path(csv_path)
    folder = csv_path.parent / SIDECAR_DIR
    st = os.stat(csv_path)
    if st.st_size != digest.length or not _parses_back(names, emb, labels):
        return False
    with _lock(folder) as exclusive:
        if not exclusive:
            return False
        head, tail = digest.edges()
        entry = {
            "bytes": digest.length,
            "ino": st.st_ino,
            "crc32": digest.crc,
            "head_crc32": head,
            "tail_crc32": tail,
        }
        _write_fresh(folder, names, emb, labels, lambda: entry)
    return True


def after_commit(csv_path: Path, dim: int, rows: Rows | None, digest: CsvDigest | None) -> None:
    """Bring the sidecar up to the CSV a commit just wrote (a folder pool's or an S3 pool's
    local copy): from `rows` where the commit wrote the CSV whole from them (`digest` saw its
    bytes), else, or where write_rows declines, by opening it (the appended rows parsed)."""
    if rows is not None and digest is not None:
        emb = rows.embeddings
        if emb.shape[1] == dim and write_rows(csv_path, rows.names, emb, rows.labels, digest):
            return
    load(csv_path, dim=dim)


def _trusted(
    csv_path: Path,
    folder: Path,
    m: dict[str, Any],
    dim: int | None,
    st: os.stat_result,
    verify: bool,
) -> bool:
    try:
        c = m["csv"]
        rows, d = int(m["rows"]), int(m["dim"])
        if dim is not None and d != dim:
            return False
        if st.st_ino != c["ino"] or st.st_size < c["bytes"]:
            return False
        if _edges(csv_path, c["bytes"]) != (c["head_crc32"], c["tail_crc32"]):
            return False
        if verify:
            with open(csv_path, "rb") as f:
                if _crc_range(f, 0, c["bytes"]) != c["crc32"]:
                    return False
        files = m["files"]
        expect = {SIDECAR_EMBEDDINGS: rows * d * 4, SIDECAR_LABELS: rows * 8}
        for name, info in files.items():
            n = int(info["bytes"])
            if name in expect and n != expect[name]:
                return False
            if (folder / name).stat().st_size < n or _tail_crc(folder / name, n) != info[
                "tail_crc32"
            ]:
                return False
            if verify:
                with open(folder / name, "rb") as f:
                    if _crc_range(f, 0, n) != info["crc32"]:
                        return False
        return set(files) == {SIDECAR_EMBEDDINGS, SIDECAR_LABELS, SIDECAR_NAMES}
    except (OSError, KeyError, TypeError, ValueError):
        return False


def _map(folder: Path, m: dict[str, Any]) -> Loaded:
    rows, d = int(m["rows"]), int(m["dim"])
    if rows * d:
        emb: npt.NDArray[np.float32] = np.memmap(
            folder / SIDECAR_EMBEDDINGS, np.float32, "r", shape=(rows, d)
        )
    else:
        emb = np.zeros((rows, d), np.float32)
    labels = np.fromfile(folder / SIDECAR_LABELS, "<i8", count=rows).astype(np.int64, copy=False)
    with open(folder / SIDECAR_NAMES, "rb") as f:
        blob = f.read(int(m["files"][SIDECAR_NAMES]["bytes"]))
    names = blob.decode("utf-8").split("\0")[:-1] if rows else []
    if len(names) != rows or len(labels) != rows:
        raise ValueError("sidecar lengths disagree")
    return names, emb, labels


def load(csv_path: Path, dim: int | None = None, verify: bool = False) -> Loaded:
    """The pool CSV's (filenames, embeddings, labels), through the sidecar where it can be
    trusted. `embeddings` is then a read-only np.memmap. Errors in the CSV raise PoolCorruptError
    exactly as pool_csv.read_csv does."""
    csv_path = Path(csv_path)
    folder = csv_path.parent / SIDECAR_DIR
    try:
        st = os.stat(csv_path)
    except FileNotFoundError:
        raise PoolCorruptError(f"{csv_path}: the pool CSV is missing") from None
    with _lock(folder) as exclusive:
        may_write = bool(exclusive)
        m = _read_manifest(folder)
        if m is None or not _trusted(csv_path, folder, m, dim, st, verify):
            return _build(csv_path, folder, dim, st, may_write)
        try:
            if may_write:
                _cut_torn_appends(folder, m)
            if st.st_size > m["csv"]["bytes"]:
                return _catch_up(csv_path, folder, m, dim, st, may_write)
            return _map(folder, m)
        except (OSError, ValueError):
            return _build(csv_path, folder, dim, st, may_write)


def _cut_torn_appends(folder: Path, m: dict[str, Any]) -> None:
    """Cut sidecar bytes past the committed lengths: the remains of an append that crashed
    before its manifest was written."""
    for name, info in m["files"].items():
        path = folder / name
        if path.stat().st_size > int(info["bytes"]):
            os.truncate(path, int(info["bytes"]))


def _catch_up(
    csv_path: Path,
    folder: Path,
    m: dict[str, Any],
    dim: int | None,
    st: os.stat_result,
    may_write: bool,
) -> Loaded:
    """The CSV grew past the manifest: parse only the new complete lines and append them.

    The reader parses them in the file itself (memory-mapped, from the committed length on): a
    commit that appended 1,000,000 x 510 rows (7 GB of text) held the tail three times over
    before (read, prefixed with the header, copied by the parser), 22 GB, and was killed."""
    from datapool import _core

    committed = int(m["csv"]["bytes"])
    with open(csv_path, "rb") as f:
        f.seek(committed - 1)
        if f.read(1) != b"\n":
            raise ValueError("the committed prefix does not end a line")  # -> rebuild
        length = _complete_lines_end(f, committed, st.st_size)
        if length == committed:
            return _map(folder, m)
        crc = _crc_range(f, committed, length, int(m["csv"]["crc32"]))
    d = int(m["dim"])
    try:
        new_names, new_emb, new_labels = _core.read_pool_csv(
            csv_path, dim=d, body_start=committed, body_end=length
        )
    except _core.PoolCsvError:
        # Let the full reader produce the error (as read_csv words it) with the file's lines.
        pool_csv.read_csv(csv_path, dim=dim)
        raise ValueError("tail parse failed but the full parse did not") from None
    names, emb, labels = _map(folder, m)
    fresh = set(new_names)
    if len(fresh) < len(new_names) or not fresh.isdisjoint(names):
        pool_csv.read_csv(csv_path, dim=dim)  # raises the duplicate with its lines
        raise ValueError("duplicate found in the tail but not by the full parse")
    all_names = names + new_names
    all_labels = np.concatenate([labels, new_labels])
    if not may_write:
        return all_names, np.concatenate([emb, new_emb]), all_labels
    old = m["files"]
    data: dict[str, bytes | memoryview] = {
        SIDECAR_EMBEDDINGS: _bytes_view(new_emb),
        SIDECAR_LABELS: new_labels.astype("<i8").tobytes(),
        SIDECAR_NAMES: _names_blob(new_names),
    }
    files = {
        k: _append_durably(folder / k, old[k]["bytes"], v, old[k]["crc32"]) for k, v in data.items()
    }
    head_crc, tail_crc = _edges(csv_path, length)
    m2 = {
        **m,
        "rows": len(all_names),
        "csv": {
            **m["csv"],
            "bytes": length,
            "crc32": crc,
            "head_crc32": head_crc,
            "tail_crc32": tail_crc,
        },
        "files": files,
    }
    _write_manifest(folder, m2)
    rows = len(all_names)
    if rows * d == 0:
        return all_names, np.zeros((rows, d), np.float32), all_labels
    return (
        all_names,
        np.memmap(folder / SIDECAR_EMBEDDINGS, np.float32, "r", shape=(rows, d)),
        all_labels,
    )
