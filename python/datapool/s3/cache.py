"""The local copy of a pool in S3: a cache of its committed files, keyed by their pieces.

    $DATAPOOL_CACHE_DIR (else $XDG_CACHE_HOME/datapool, else ~/.cache/datapool)
      s3/<hash of endpoint, bucket and prefix>/
        pool/         datapool_latest.csv, ledger.csv, runs.json, model.json (and
                      strategy_inputs.json, when the pool has one) as committed, and
                      the CSV's binary sidecar (.sidecar/: pool/sidecar.py), as for a local pool
        state.json    the manifest entry (parts and pieces, s3/manifest.py) each file there holds
        lock          a flock held while the copy is brought up to date or read

A session brings the copy up to the manifest it read (`sync`): a file whose entry is unchanged is
not read at all; a file whose entry extends the cached one (a run appended rows: its pieces begin
with the cached pieces) gets only the appended bytes, a ranged GET checked piece by piece; any
other file is downloaded whole. So a run on an unchanged pool downloads nothing but the manifest,
and the sidecar (keyed by the CSV it mirrors) catches up with appended rows only. After a commit
the session writes what it committed into the copy (`after_commit`), so the next run on this
machine downloads nothing either.

Nothing here is ever uploaded. The copy is only a cache: a file that does not match its entry's
size is fetched again, a copy that fails to load as a pool is dropped and fetched whole once, and
deleting the folder costs the next run one download.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from datapool import _fsio
from datapool.errors import IN_RESULT, PoolCorruptError
from datapool.pool import csvfile, sidecar
from datapool.pool.contents import Pool
from datapool.pool.layout import CSV_NAME, LEDGER_NAME, POOL_FILES, RUNS_NAME
from datapool.pool.ledger import can_append
from datapool.s3 import blobs
from datapool.s3.manifest import FileEntry

if TYPE_CHECKING:
    from datapool.s3.blobs import BucketPool

log = logging.getLogger("datapool")
_STATE = "state.json"


def cache_root() -> Path:
    """DATAPOOL_CACHE_DIR, else $XDG_CACHE_HOME/datapool, else ~/.cache/datapool."""
    if os.environ.get("DATAPOOL_CACHE_DIR"):
        return Path(os.environ["DATAPOOL_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "datapool"


@dataclass
class Cached:
    """The pool as synced, and what a commit needs of its files' bytes (read under the lock, so
    that another process that moves the copy on meanwhile cannot change them)."""

    pool: Pool
    # The bytes `BucketPool.append` needs of the CSV and the ledger (its `tail` argument).
    tails: dict[str, bytes] = field(default_factory=dict)
    csv_appendable: bool = False  # the CSV ends with a newline
    ledger_appendable: bool = False  # ledger.can_append, for the ledger as read


class PoolCache:
    def __init__(self, folder: Path, warning: str | None = None) -> None:
        self.folder = folder
        self.pool_dir = folder / "pool"
        self.warning = warning  # why the copy is not where the settings say

    @classmethod
    def of(cls, endpoint: str, url: str) -> PoolCache:
        """The copy of the pool at `url` through `endpoint`, in the cache folder or, where that
        cannot be written (a container run as a user without a home), in the temporary folder."""
        ident = hashlib.sha256(f"{endpoint}\n{url}".encode()).hexdigest()[:24]
        root = cache_root()
        try:
            (root / "s3" / ident / "pool").mkdir(parents=True, exist_ok=True)
            return cls(root / "s3" / ident)
        except OSError as e:
            fallback = Path(tempfile.gettempdir()) / f"datapool-cache-{os.getuid()}"
            warning = (
                f"cannot write the local copy of {url} under {root} ({e.strerror}); it is kept "
                f"under {fallback} instead: set DATAPOOL_CACHE_DIR to a writable folder that "
                "lasts between runs, or each run downloads the pool again"
            )
            log.warning("%s", warning, extra={IN_RESULT: True})
            return cls(fallback / "s3" / ident, warning)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the copy's flock (blocking: other runs on this host hold it for a moment)."""
        self.pool_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _state(self) -> dict[str, FileEntry]:
        try:
            doc = json.loads((self.folder / _STATE).read_text(encoding="utf-8"))
            return {k: FileEntry.from_json(v) for k, v in doc["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _write_state(self, entries: dict[str, FileEntry]) -> None:
        doc = {"files": {k: v.to_json() for k, v in entries.items()}}
        _fsio.atomic_write_bytes(self.folder / _STATE, json.dumps(doc).encode())

    # --- bringing the copy up to a manifest ------------------------------------------------------

    def sync(self, objects: BucketPool, files: dict[str, FileEntry]) -> Cached:
        """Bring the copy to the pool files of `files` (a manifest's) and read it."""
        wanted = {n: files[n] for n in POOL_FILES if n in files}
        with self.locked():
            try:
                self._fetch(objects, wanted)
                return self._read(wanted)
            except PoolCorruptError as e:
                # A copy that is not what the bucket holds (a disk fault, a hand edit): fetch it
                # whole once; a pool that fails again is corrupt in the bucket itself.
                log.info("dropping the local copy of %s (%s)", objects.url, e)
            self._write_state({})
            shutil.rmtree(self.pool_dir)
            self.pool_dir.mkdir()
            try:
                self._fetch(objects, wanted)
                return self._read(wanted)
            except PoolCorruptError as e:
                where = str(self.pool_dir) + os.sep
                raise PoolCorruptError(str(e).replace(where, objects.url)) from None

    def _fetch(self, objects: BucketPool, wanted: dict[str, FileEntry]) -> None:
        have = self._state()
        stale = {n for n in POOL_FILES if have.get(n) != wanted.get(n) or not self._fits(n, have)}
        if not stale:
            return
        # The state forgets the files about to change before they do: a crash in between leaves
        # files that no entry vouches for, fetched again next time.
        self._write_state({n: e for n, e in have.items() if n not in stale})
        for name in sorted(stale):
            path, want, old = self.pool_dir / name, wanted.get(name), have.get(name)
            if want is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            elif old is not None and want.extends(old) and self._fits(name, have):
                with open(path, "ab") as f:  # only the appended pieces
                    objects.read_into(name, want, old.size, f)
                    f.flush()
                    os.fsync(f.fileno())
            else:
                with _fsio.atomic_writer(path, "wb") as f:
                    objects.read_into(name, want, 0, f)
        self._write_state(wanted)

    def read_file(self, objects: BucketPool, name: str, entry: FileEntry) -> bytes:
        """The bytes of the committed pool file `name` at `entry`: from the copy when it holds
        that entry (read under the lock), else from the bucket, checked piece by piece (another
        run on this host moved the copy on since this session synced it)."""
        with self.locked():
            if self._state().get(name) == entry and self._fits(name, {name: entry}):
                with contextlib.suppress(OSError):
                    return (self.pool_dir / name).read_bytes()
        out = io.BytesIO()
        objects.read_into(name, entry, 0, out)
        return out.getvalue()

    def _fits(self, name: str, have: dict[str, FileEntry]) -> bool:
        """Whether the cached file has the size its entry says (or is absent without one)."""
        path = self.pool_dir / name
        if name not in have:
            return not path.exists()
        try:
            return path.stat().st_size == have[name].size
        except OSError:
            return False

    def _read(self, wanted: dict[str, FileEntry]) -> Cached:
        if RUNS_NAME not in wanted:
            return Cached(Pool.empty(self.pool_dir))
        pool = Pool.load(self.pool_dir)
        cached = Cached(pool)
        for name in (CSV_NAME, LEDGER_NAME):
            entry = wanted.get(name)
            if entry is not None:
                first = entry.parts[0].size
                with open(self.pool_dir / name, "rb") as f:
                    f.seek(first if first >= blobs.MIN_PART else 0)
                    cached.tails[name] = f.read()
        cached.csv_appendable = csvfile.ends_with_newline(self.pool_dir / CSV_NAME)
        # (n_new=0: the ledger may be appended to if it may be with no row added, which is
        # stricter than the local store's test by at most the run's own rows)
        cached.ledger_appendable = can_append(self.pool_dir / LEDGER_NAME, pool.ledger, 0)
        return cached

    # --- after a commit --------------------------------------------------------------------------

    def after_commit(
        self,
        read: dict[str, FileEntry],
        committed: dict[str, FileEntry],
        writes: dict[str, tuple[bool, bytes]],
        dim: int,
        rows: sidecar.Rows | None = None,
    ) -> None:
        """Write into the copy what a commit wrote to the bucket: `writes` maps a pool file to
        (appended, bytes); `rows`, where given, are the pool's rows after the commit, those of
        the CSV it wrote whole (the sidecar is then written from them, not parsed). Only when the copy still holds what the run read (else another run on
        this host moved it on: the next sync fetches what it needs). Never raises for OSError: a
        copy that could not be written is fetched next time."""
        try:
            with self.locked():
                if self._state() != {n: read[n] for n in POOL_FILES if n in read}:
                    return
                self._write_state({})
                for name, (appended, data) in writes.items():
                    if appended:
                        with open(self.pool_dir / name, "ab") as f:
                            f.write(data)
                            f.flush()
                            os.fsync(f.fileno())
                    else:
                        _fsio.atomic_write_bytes(self.pool_dir / name, data)
                self._write_state({n: committed[n] for n in POOL_FILES if n in committed})
                # The sidecar: after a rewrite, written from the rows in memory (as a folder
                # pool's, pool/sidecar.after_commit); else it parses only the appended rows.
                appended, data = writes.get(CSV_NAME, (True, b""))
                digest = None if rows is None or appended else sidecar.CsvDigest.of(data)
                sidecar.after_commit(self.pool_dir / CSV_NAME, dim, rows, digest)
        except (OSError, PoolCorruptError) as e:
            log.info("could not update the local copy %s: %s", self.pool_dir, e)
