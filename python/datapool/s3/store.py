"""A pool kept in an S3 bucket (`--pool s3://bucket/prefix`): the PoolStore whose commit point is
manifest.json, written with a conditional write.

Under the prefix (pool/layout.py): `manifest.json` names the blobs that hold each pool file
(s3/manifest.py), and `blobs/` holds them, immutable. A session:

1. probes the server once: an object written with `If-None-Match: *` must be refused the second
   time. A server that accepts it ignores conditional writes, so two runs could both "commit":
   the session says so (a warning on the `datapool` logger, in RunResult.warnings and in the
   report) and holds a lock object with a lease instead (s3/lease.py) for the whole session.
   Where the server honours them the session holds the lock object too, written conditionally,
   so that a second run stops at once (PoolLockedError) rather than after all its work;
2. reads manifest.json and its ETag, and brings the local copy of the pool files up to it
   (s3/cache.py: an unchanged pool downloads nothing; appended rows download only themselves);
3. commits (`S3Session.commit`): the run's rows are appended to the CSV and the ledger on the
   server (s3/blobs.py: the upload is the new rows, not the pool), runs.json, model.json,
   strategy_inputs.json (when it changes: pool/inputs.py), the report and the view are written
   as blobs, and then, last, manifest.json with
   `If-Match: <the ETag read>` (`If-None-Match: *` for a new pool). Of two runs that read the
   same manifest exactly one commits; the other gets S3PoolConflictError (exit 3) and leaves the
   pool as the first left it (its blobs are orphans, for `datapool gc`). Under a lease the
   manifest is written with a plain PUT after checking that the lease is still held and that the
   manifest's ETag is still the one read. Blobs are written before the manifest, so a manifest
   never references a missing blob, and nothing is written to the bucket after it (the lease's
   lock object is deleted when the session ends).

History snapshots (--keep-history, --process-all) are manifest entries under history/ that
reference the committed blobs: no byte is copied. The local copy and its sidecar are caches of
this machine and never reach the bucket; neither do locks or journals.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool._signals import deferred, passed_commit_point
from datapool._testhooks import point
from datapool.config import RunConfig, S3Settings
from datapool.errors import IN_RESULT, ConfigError, PoolLockedError
from datapool.pool import csvfile, thumbnails
from datapool.pool.contents import model_json_bytes, runs_json_bytes
from datapool.pool.format import min_reader_of
from datapool.pool.layout import (
    CSV_NAME,
    HISTORY_DIR,
    LEDGER_NAME,
    MODEL_NAME,
    POOL_FILES,
    REPORT_HTML_NAME,
    REPORT_NAME,
    RUNS_DIR,
    RUNS_NAME,
    S3_LOCK_NAME,
    S3_MANIFEST,
    STRATEGY_INPUTS_NAME,
    THUMBNAILS_ADDED_PREFIX,
    THUMBNAILS_NAME,
    VIEW_NAME,
    is_local_state,
    run_dir,
    snapshot_dir,
)
from datapool.pool.ledger import write_ledger_text
from datapool.pool.store import (
    Checks,
    Collected,
    Committed,
    PoolUpdate,
    Rows,
    ledger_after,
    rows_after,
    rows_kept,
    runs_after,
    superseded,
)
from datapool.pool.undo import UNDO_KEY, undo_record, written_sums
from datapool.s3.blobs import BucketPool
from datapool.s3.cache import Cached, PoolCache
from datapool.s3.client import CONFLICT, NOT_FOUND, NOT_IMPLEMENTED, error_code
from datapool.s3.lease import S3Lease
from datapool.s3.manifest import FileEntry, Manifest

if TYPE_CHECKING:
    from collections.abc import Collection

    import numpy.typing as npt

    from datapool.pool.contents import Pool
    from datapool.pool.removal import Removal
    from datapool.pool.undo import Undo
    from datapool.pool.verify import Verified

log = logging.getLogger("datapool")


class S3PoolConflictError(PoolLockedError):
    """Another run committed to the S3 pool between this run's read and its commit."""


class S3Store:
    def __init__(
        self,
        url: str,
        settings: S3Settings | None = None,
        lease_s: float = RunConfig.s3_lock_lease_s,
    ) -> None:
        self.objects = BucketPool(url, settings)
        self.url = self.objects.url
        self.location: Path | str = self.url
        self.lease_s = lease_s
        self._read: Manifest | None = None  # the commit the last pool() showed; read() reads it

    @classmethod
    def open(cls, spec: str, config: RunConfig | S3Settings | None = None) -> S3Store:
        """The registry's opener (datapool.pool.store.open_store)."""
        if config is None or isinstance(config, S3Settings):
            return cls(spec, config)
        return cls(spec, config.s3, config.s3_lock_lease_s)

    def cache(self) -> PoolCache:
        return PoolCache.of(self.objects.s3.endpoint, self.url)

    @contextlib.contextmanager
    def session(self) -> Iterator[S3Session]:
        from datapool.s3.whole import said_of

        objects = self.objects
        with said_of(objects, new=True):  # a missing bucket: its name, and create it or check it
            conditional = probe_conditional_writes(objects)
        warnings = (
            []
            if conditional
            else [
                f"the S3 server at {objects.s3.endpoint} does not support conditional writes "
                f"(If-None-Match/If-Match are ignored), so the pool {self.url} is guarded by a lock "
                f"object with a lease instead ({self.url}{S3_LOCK_NAME}, {self.lease_s:g} s, "
                "renewed while the run works): best-effort mutual exclusion"
            ]
        )
        for w in warnings:
            log.warning("%s", w, extra={IN_RESULT: True})
        lease = S3Lease(
            objects.client,
            objects.bucket,
            objects.prefix,
            self.url,
            self.lease_s,
            objects._fail,
            conditional=conditional,
        )
        try:
            took_over = lease.acquire()
            if took_over:
                warnings.append(took_over)
            # The manifest is read only once the lock is held: a run that waited for another's
            # commit builds on it. With conditional writes the manifest's If-Match alone decides
            # the commit; the lease only stops a second run before it does the work.
            yield self._open_session(None if conditional else lease, warnings)
        finally:
            not_released = lease.release()
            if not_released:
                warnings.append(not_released)  # the run's result holds this same list

    def _open_session(self, lease: S3Lease | None, warnings: list[str]) -> S3Session:
        manifest, etag, _ = self.objects.read_manifest()
        cache = self.cache()
        if cache.warning:
            warnings.append(cache.warning)
        cached = cache.sync(self.objects, manifest.files)
        point("locked")
        return S3Session(self.objects, manifest, etag, cache, cached, lease, warnings)

    def pool(self) -> Pool:
        """The committed pool, through the local copy brought up to date."""
        from datapool.s3.whole import said_of

        with said_of(self.objects):  # a missing bucket: check its name and the endpoint
            self._read, _ = self.objects.require_manifest()
        return self.cache().sync(self.objects, self._read.files).pool

    def read(self, name: str) -> bytes | None:
        """From the commit the last pool() showed (one manifest GET for `datapool ls` and all
        its runs' reports, which then match the pool), else from the latest."""
        if self._read is None:
            self._read, _ = self.objects.require_manifest()
        entry = self._read.files.get(name)
        return None if entry is None else self.cache().read_file(self.objects, name, entry)

    def summary(self) -> dict[str, Any]:
        """`datapool status`: the committed pool (through the local copy, brought up to date),
        with the manifest's generation, where the local copy is, and who holds the pool's lock
        object (a run in progress; S3Lease.holder). A prefix without a manifest whose lock
        object a run holds (its first run, before its first commit) or left is no pool yet: an
        empty pool's summary with that `lock`; without either, not a pool (ConfigError)."""
        from datapool.s3.whole import said_of

        objects = self.objects  # who holds the lock object: a run in progress (read only)
        lease = S3Lease(
            objects.client, objects.bucket, objects.prefix, self.url, self.lease_s, objects._fail
        )
        with said_of(objects):  # a missing bucket: check its name and the endpoint
            manifest, etag, _ = objects.read_manifest()
        if etag is None:
            holder = lease.holder()
            if holder is not None:
                from datapool.pool.contents import Pool

                return {**Pool.empty(self.url).summary(), "pool": self.url, "lock": holder}
            manifest, _ = objects.require_manifest()  # not a pool (or one committed just now)
        cache = self.cache()
        summary = cache.sync(self.objects, manifest.files).pool.summary()
        summary["pool"] = self.url
        summary["lock"] = lease.holder()
        # The snapshots are manifest entries (history/<name>/<file>): the local copy has none.
        summary["history"] = sorted(
            {
                "/".join(name.split("/")[:2])
                for name in manifest.files
                if name.startswith(f"{HISTORY_DIR}/")
            }
        )
        summary["generation"] = manifest.generation
        summary["local_copy"] = str(cache.pool_dir)
        return summary

    def verify(self) -> Verified:
        """Every blob the manifest names looked up and read, and the pool's files checked as a
        folder's (s3/verify.py); nothing is written to the bucket or the local copy."""
        from datapool.s3.verify import verify_bucket
        from datapool.s3.whole import said_of

        with said_of(self.objects):  # a missing bucket: check its name and the endpoint
            return verify_bucket(self.objects, self.lease_s)

    def collect_garbage(self, older_than_s: float, dry_run: bool = False) -> Collected:
        from datapool.s3.gc import collect

        return collect(self.objects, older_than_s, dry_run)

    @contextlib.contextmanager
    def fetched(self) -> Iterator[Path]:
        """The committed pool's files (runs' folders too, no history) in a temporary folder,
        read without the pool's lock (s3/whole.py); the folder goes on exit."""
        from datapool.s3.whole import fetch

        with tempfile.TemporaryDirectory(prefix=".datapool-pool-") as tmp:
            fetch(self.objects, self.lease_s, Path(tmp))
            yield Path(tmp)

    def check_new(self) -> None:
        """Refuse a prefix that holds a pool or other objects (s3/whole.py); reads only."""
        from datapool.s3.whole import check_new

        check_new(self.objects)

    def commit_new(self, folder: Path) -> None:
        """Make the pool whose files `folder` holds this prefix's pool, all or nothing: under
        the prefix's lock object, each file a blob, then the manifest (S3Session.create)."""
        from datapool.s3.whole import said_of

        self.check_new()
        with said_of(self.objects, new=True), self.session() as session:
            session.create(folder)


class S3Session:
    def __init__(
        self,
        objects: BucketPool,
        manifest: Manifest,
        etag: str | None,
        cache: PoolCache,
        cached: Cached,
        lease: S3Lease | None,
        warnings: list[str],
    ) -> None:
        self.objects, self.manifest, self.etag, self.lease = objects, manifest, etag, lease
        self.cache, self.cached = cache, cached
        self.pool: Pool = cached.pool
        self.warnings = warnings
        self.location = objects.url
        self._inputs: bytes | None = None  # strategy_inputs.json as read, once read
        # The manifest generation this session last saw: as opened, then as it committed it
        # (add_to_report commits only on top of it).
        self._generation = manifest.generation

    def commit(self, update: PoolUpdate) -> Committed:
        """Upload the run's blobs, then write the manifest (the commit point). A Ctrl-C before
        the manifest is written leaves the pool as it was; its blobs are orphans."""
        url = self.objects.url
        # (Manifests written before format 2 listed the sidecar and a lock: dropped here.)
        files = {k: v for k, v in self.manifest.files.items() if not is_local_state(k)}
        if update.snapshot and self.pool.runs:
            update.run["previous_pool"] = _snapshot(files, len(self.pool.runs))
        rows, runs = rows_after(self.pool, update), runs_after(self.pool, update)
        writes = self._pool_file_bytes(update, rows, runs)
        # What `datapool undo` needs to put the pool back (pool/undo.py), and what `datapool
        # verify` checks the files against: a first run's too (undo refuses it before reading).
        update.report[UNDO_KEY] = self._undo_record(writes)
        files.update(self._upload(writes))
        if update.reset:
            _drop_runs_from(files, len(runs))
            if STRATEGY_INPUTS_NAME not in writes:  # a rebuilt pool without strategies
                files.pop(STRATEGY_INPUTS_NAME, None)
        folder = run_dir(update.index)
        report = (json.dumps(update.report, indent=2) + "\n").encode()
        files[f"{folder}/{REPORT_NAME}"] = self.objects.put_file(report)
        files[f"{folder}/{VIEW_NAME}"] = self.objects.put_file(update.view)
        if update.report_html:
            files[f"{folder}/{REPORT_HTML_NAME}"] = self.objects.put_file(update.report_html)
        _put_thumbnails(self.objects, files, folder, update)
        need = max(self.manifest.min_reader, min_reader_of(self.pool.written))
        committed = Manifest(self.manifest.generation + 1, files, need)
        point("s3-blobs-written")
        _commit(self.objects, committed, self.etag, self.lease)
        # Committed: a Ctrl-C from here on says so (_signals.commit_point_passed).
        point("committed")
        self._generation = committed.generation
        dim = update.model.output_dim
        self.cache.after_commit(self.manifest.files, files, writes, dim, rows)
        html = f"{url}{folder}/{REPORT_HTML_NAME}" if update.report_html else None
        return Committed(
            f"{url}{folder}/{REPORT_NAME}", f"{url}{folder}/{VIEW_NAME}", len(rows.names), html
        )

    def create(self, folder: Path) -> None:
        """Commit the pool whose files `folder` holds (`datapool merge --into s3://...`) as the
        prefix's first commit, as a run's: each committed file a blob, then the manifest
        (`If-None-Match: *`; under a lease, after its checks). A process killed before the
        manifest leaves no pool (its blobs are orphans); a pool committed here meanwhile makes
        it S3PoolConflictError."""
        from datapool.pool import format as pool_format

        if self.etag is not None:
            raise ConfigError(
                f"{self.location} holds a pool now (another run or merge made it meanwhile); "
                "merge into a new or empty prefix"
            )
        writes: dict[str, tuple[bool, bytes]] = {}
        files: dict[str, FileEntry] = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            if is_local_state(name):
                continue
            data = path.read_bytes()
            files[name] = self.objects.put_file(data)
            if name in POOL_FILES:
                writes[name] = (False, data)
            point(f"s3-blob-written:{name}")
        written = pool_format.recorded(json.loads(writes[RUNS_NAME][1]), str(folder / RUNS_NAME))
        committed = Manifest(1, files, min_reader_of(written))
        point("s3-blobs-written")
        _commit(self.objects, committed, None, self.lease)
        point("committed")
        self._generation = committed.generation
        dim = int(json.loads(writes[MODEL_NAME][1])["output_dim"]) if MODEL_NAME in writes else 0
        self.cache.after_commit({}, files, writes, dim)

    def thumbnails(self, names: Collection[str], max_bytes: int | None = None) -> dict[str, bytes]:
        return read_thumbnails(self.objects, self.manifest.files, names, max_bytes)

    def history(self) -> dict[str, set[str]]:
        """Each history snapshot (history/<name>, manifest entries) and the sample names its
        CSV holds (read through the local copy's blob cache)."""
        from datapool.pool.removal import csv_names, snapshot_folders

        entries = self.manifest.files
        return {
            folder: csv_names(self.cache.read_file(self.objects, name, entries[name]))
            for folder, name in snapshot_folders(entries).items()
        }

    def remove(self, removal: Removal) -> None:
        """Commit `removal` (pool/removal.py) as a run's commit: the changed pool files,
        thumbnail segments and withdrawn report.html files as blobs, then the manifest (the
        commit point), which with purge_history no longer names the snapshots that hold the
        samples (their blobs are orphans for `datapool gc`)."""
        from datapool.pool import inputs
        from datapool.pool.keepout import REMOVALS_FORMAT
        from datapool.pool.removal import WITHDRAWN_HTML, scrub_report, seal

        pool, entries = self.pool, self.manifest.files
        files = {k: v for k, v in entries.items() if not is_local_state(k)}
        rows = rows_kept(pool, removal.keep)
        writes: dict[str, tuple[bool, bytes]] = {}
        if removal.names:
            writes[CSV_NAME] = (
                False,
                csvfile.format_csv_bytes(rows.names, rows.embeddings, rows.labels),
            )
            writes[LEDGER_NAME] = (False, write_ledger_text(removal.ledger).encode())
            old = self._inputs_bytes()
            if old is not None:
                writes[STRATEGY_INPUTS_NAME] = (False, inputs.merged(old, set(rows.names), {}))
        min_reader = min_reader_of(pool.written)

        def runs_json() -> bytes:
            return runs_json_bytes(pool.runs, min_reader, removal.removals, pool.checked)

        if removal.names:  # the sums of what it wrote, for `datapool verify`
            csv, ledger = writes[CSV_NAME][1], writes[LEDGER_NAME][1]
            inputs_after = writes.get(STRATEGY_INPUTS_NAME, (False, None))[1]
            runs = seal(removal.entry, (len(csv), zlib.crc32(csv)), ledger, inputs_after, runs_json)
        else:
            runs = runs_json()
        writes[RUNS_NAME] = (False, runs)
        files.update(self._upload(writes))
        if removal.names:
            gone = set(removal.names)
            for name in thumbnails.segment_order(entries):
                thumbs = thumbnails.unpack(self.cache.read_file(self.objects, name, entries[name]))
                if gone & thumbs.keys():
                    kept = {n: t for n, t in thumbs.items() if n not in gone}
                    files[name] = self.objects.put_file(thumbnails.pack(kept))
            notice = WITHDRAWN_HTML.format(at=removal.entry["at"]).encode()
            for index in removal.withdrawn_reports:
                if f"{run_dir(index)}/{REPORT_HTML_NAME}" in files:
                    files[f"{run_dir(index)}/{REPORT_HTML_NAME}"] = self.objects.put_file(notice)
        for index in [] if removal.forget else removal.withdrawn_reports:
            name = f"{run_dir(index)}/{REPORT_NAME}"
            if name in files and name in entries and files[name] == entries[name]:
                data = self.cache.read_file(self.objects, name, entries[name])
                clean = scrub_report(data, removal.names, removal.files, removal.at)
                if clean:
                    files[name] = self.objects.put_file(clean)
        if removal.purge_history:
            for folder in removal.history:
                for name in [n for n in files if n.startswith(folder + "/")]:
                    del files[name]
        need = max(self.manifest.min_reader, min_reader, REMOVALS_FORMAT if removal.removals else 0)
        committed = Manifest(self.manifest.generation + 1, files, need)
        point("s3-blobs-written")
        _commit(self.objects, committed, self.etag, self.lease)
        point("committed")
        self.cache.after_commit(self.manifest.files, files, writes, pool.dim or 0, rows)

    def _undo_record(self, writes: dict[str, tuple[bool, bytes]]) -> dict[str, Any]:
        """undo_record of a commit that writes `writes` (name -> (appended, bytes))."""
        entries = self.manifest.files
        lengths: dict[str, tuple[int | None, int | None, bool]] = {}
        sums: dict[str, dict[str, Any]] = {}
        for name in (CSV_NAME, LEDGER_NAME):
            app, data = writes[name]
            was = entries[name].size if name in entries else None
            appended = app and was is not None
            lengths[name] = (was, (was or 0) + len(data) if appended else len(data), appended)
            sums[name] = written_sums(appended, data)
        hashed = (RUNS_NAME, MODEL_NAME, STRATEGY_INPUTS_NAME)
        return undo_record(
            lengths,
            {name: self._read(name) for name in hashed},
            {name: writes[name][1] if name in writes else None for name in hashed},
            len(self.pool.removals),
            sums,
        )

    def _read(self, name: str) -> bytes | None:
        """A committed file's bytes (through the local copy), or None."""
        entry = self.manifest.files.get(name)
        return None if entry is None else self.cache.read_file(self.objects, name, entry)

    def plan_undo(self) -> Undo:
        """The undo of the pool's last run (pool/undo.py), checked against what its commit
        recorded; nothing is written."""
        from datapool.pool.undo import plan_undo

        entries = self.manifest.files

        def size(name: str) -> int | None:
            return entries[name].size if name in entries else None

        def span(name: str, start: int, end: int) -> Iterator[bytes]:
            yield (self._read(name) or b"")[start:end]  # (undo reads the files whole anyway)

        listing = sorted(n for n in entries if not is_local_state(n))
        return plan_undo(self.pool, self._read, size, listing, self.objects.url, span)

    def undo(self, undo: Undo) -> None:
        """Commit `undo` as a run's commit: the CSV and the ledger as their bytes before the
        run, runs.json and the strategy inputs as they were, as blobs; then the manifest (the
        commit point) without the run's folder (and the snapshot it made). The blobs it no
        longer names are for `datapool gc`."""
        entries = self.manifest.files
        files = {k: v for k, v in entries.items() if not is_local_state(k)}
        writes: dict[str, tuple[bool, bytes]] = {}
        if undo.restore:  # from the run's snapshot: its entries, the blobs it references
            files.update({name: entries[src] for name, src in undo.restore.items()})
        else:
            writes[CSV_NAME] = (False, (self._read(CSV_NAME) or b"")[: undo.csv_length])
            writes[LEDGER_NAME] = (False, (self._read(LEDGER_NAME) or b"")[: undo.ledger_length])
            writes[RUNS_NAME] = (False, undo.runs_json)
            if undo.model_json is not None:
                writes[MODEL_NAME] = (False, undo.model_json)
            if undo.inputs is not None:
                writes[STRATEGY_INPUTS_NAME] = (False, undo.inputs)
        files.update(self._upload(writes))
        for rel in undo.remove:
            for name in [n for n in files if n == rel or n.startswith(rel + "/")]:
                del files[name]
        committed = Manifest(self.manifest.generation + 1, files, self.manifest.min_reader)
        point("s3-blobs-written")
        _commit(self.objects, committed, self.etag, self.lease)
        point("committed")
        if not undo.restore:  # (else the next sync fetches the files the snapshot held)
            self.cache.after_commit(self.manifest.files, files, writes, self.pool.dim or 0)

    def add_to_report(self, index: int, fields: dict[str, Any], page: bytes | None = None) -> bool:
        """`fields` into run `index`'s report.json, and `page` as its report.html (where it has
        one): blobs, then the manifest, conditional on its being the one this session
        committed."""
        manifest, etag, _ = self.objects.read_manifest()
        name = f"{run_dir(index)}/{REPORT_NAME}"
        if manifest is None or etag is None or manifest.generation != self._generation:
            return False
        if name not in manifest.files:
            return False
        report = json.loads(self.cache.read_file(self.objects, name, manifest.files[name]))
        report.update(fields)
        files = {k: v for k, v in manifest.files.items() if not is_local_state(k)}
        files[name] = self.objects.put_file((json.dumps(report, indent=2) + "\n").encode())
        html = f"{run_dir(index)}/{REPORT_HTML_NAME}"
        if page is not None and html in files:
            files[html] = self.objects.put_file(page)
        committed = Manifest(manifest.generation + 1, files, manifest.min_reader)
        try:
            _commit(self.objects, committed, etag, self.lease)
        except S3PoolConflictError:
            return False
        self._generation = committed.generation
        return True

    def record_checks(self, checks: Checks) -> None:
        """Commit `checks` as a run's commit, without a run: runs.json (with its record) and
        the ledger rows (appended on the server) as blobs, then the manifest (the commit point,
        conditional as a run's)."""
        pool = self.pool
        files = {k: v for k, v in self.manifest.files.items() if not is_local_state(k)}
        rows = checks.ledger_rows
        writes: dict[str, tuple[bool, bytes]] = {}
        if rows is not None and len(rows):
            if self.cached.ledger_appendable and LEDGER_NAME in files:
                writes[LEDGER_NAME] = (True, write_ledger_text(rows, header=False).encode())
            else:
                writes[LEDGER_NAME] = (
                    False,
                    write_ledger_text(superseded(pool.ledger, rows)).encode(),
                )
        recorded = pool.checked if checks.decoder_checked is None else checks.decoder_checked
        min_reader = min_reader_of(pool.written)
        writes[RUNS_NAME] = (False, runs_json_bytes(pool.runs, min_reader, pool.removals, recorded))
        files.update(self._upload(writes))
        need = max(self.manifest.min_reader, min_reader)
        committed = Manifest(self.manifest.generation + 1, files, need)
        point("s3-blobs-written")
        _commit(self.objects, committed, self.etag, self.lease)
        point("committed")
        self.cache.after_commit(self.manifest.files, files, writes, pool.dim or 0)

    def add_thumbnails(self, thumbs: dict[str, bytes]) -> str:
        """One more segment in the last run's folder: a blob, then the manifest (the commit
        point, conditional as a run's commit)."""
        files = {k: v for k, v in self.manifest.files.items() if not is_local_state(k)}
        rel = thumbnails.next_added_name(files, len(self.pool.runs) - 1)
        files[rel] = self.objects.put_file(thumbnails.pack(thumbs))
        committed = Manifest(self.manifest.generation + 1, files, self.manifest.min_reader)
        _commit(self.objects, committed, self.etag, self.lease)
        self.manifest, self.etag = committed, self.objects.manifest_etag()
        return rel

    def _pool_file_bytes(
        self, update: PoolUpdate, rows: Rows, runs: list[dict[str, Any]]
    ) -> dict[str, tuple[bool, bytes]]:
        """Each pool file's new bytes: (True, bytes to append) or (False, the whole file)."""
        pool, cached, entries = self.pool, self.cached, self.manifest.files
        out: dict[str, tuple[bool, bytes]] = {}
        if rows.appended and len(pool) and cached.csv_appendable and CSV_NAME in entries:
            new = csvfile.format_csv_bytes(
                update.new_names, update.new_embeddings, update.new_labels, with_header=False
            )
            out[CSV_NAME] = (True, new)
        else:
            out[CSV_NAME] = (
                False,
                csvfile.format_csv_bytes(rows.names, rows.embeddings, rows.labels),
            )
        appendable = cached.ledger_appendable and not update.moved_keys
        if not update.reset and appendable and LEDGER_NAME in entries:
            # Append-only between rewrites, as in a folder: a later row for a key supersedes.
            out[LEDGER_NAME] = (True, write_ledger_text(update.ledger_rows, header=False).encode())
        else:
            out[LEDGER_NAME] = (False, write_ledger_text(ledger_after(pool, update)).encode())
        out[MODEL_NAME] = (False, model_json_bytes(update.model))
        out[RUNS_NAME] = (
            False,
            runs_json_bytes(
                runs,
                min_reader_of(pool.written),
                pool.removals if update.removals is None else update.removals,
                None if update.reset else pool.checked,
            ),
        )
        inputs = self._inputs_after(update, rows)
        if inputs is not None:
            out[STRATEGY_INPUTS_NAME] = (False, inputs)
        return out

    def _inputs_after(self, update: PoolUpdate, rows: Rows) -> bytes | None:
        """strategy_inputs.json after `update` (as LocalSession._inputs_after): the kept rows'
        inputs plus the new ones; None when the file stays as it is (or stays absent)."""
        from datapool.pool import inputs

        old = None if update.reset else self._inputs_bytes()
        if update.new_inputs is None and (old is None or rows.appended):
            return None  # no inputs, or only rows without inputs were added
        return inputs.merged(old, set(rows.names), update.new_inputs or {}, update.renames)

    def _inputs_bytes(self) -> bytes | None:
        """The committed strategy_inputs.json (through the local copy), or None."""
        entry = self.manifest.files.get(STRATEGY_INPUTS_NAME)
        if entry is None:
            return None
        if self._inputs is None:
            self._inputs = self.cache.read_file(self.objects, STRATEGY_INPUTS_NAME, entry)
        return self._inputs

    def strategy_inputs(
        self, names: list[str]
    ) -> tuple[dict[str, npt.NDArray[Any]], dict[str, list[str]]]:
        """The stored strategy inputs of the pool samples `names` (pool/inputs.py)."""
        from datapool.pool import inputs

        return inputs.columns_of(self._inputs_bytes(), names)

    def _upload(self, writes: dict[str, tuple[bool, bytes]]) -> dict[str, FileEntry]:
        """The blobs of the pool files: appended on the server, or written whole where changed."""
        out = {}
        for name, (appended, data) in writes.items():
            old = self.manifest.files.get(name)
            if appended and old is not None:
                out[name] = self.objects.append(old, self.cached.tails.get(name, b""), data)
            else:
                out[name] = self.objects.put_file(data, old)
        return out


def _put_thumbnails(
    objects: BucketPool, files: dict[str, FileEntry], folder: str, update: PoolUpdate
) -> None:
    """The run's thumbnail segment (pool/thumbnails.py) as one more blob: O(new). A run that
    starts the pool over drops the segments added to the folder it replaces."""
    if update.reset:
        for name in [n for n in files if n.startswith(f"{folder}/{THUMBNAILS_ADDED_PREFIX}")]:
            del files[name]
        files.pop(f"{folder}/{THUMBNAILS_NAME}", None)
    if update.new_thumbnails:
        files[f"{folder}/{THUMBNAILS_NAME}"] = objects.put_file(
            thumbnails.pack(update.new_thumbnails)
        )


def read_thumbnails(
    objects: BucketPool,
    entries: dict[str, FileEntry],
    names: Collection[str],
    max_bytes: int | None = None,
) -> dict[str, bytes]:
    """The thumbnails of the pool samples `names`, read from the segments' blobs, newest run
    first; no more blobs are downloaded once about `max_bytes` are found."""
    import io

    def segments() -> Iterator[tuple[str, bytes]]:
        for path in thumbnails.segment_order(entries):
            buf = io.BytesIO()
            objects.read_into(path, entries[path], 0, buf)
            yield path, buf.getvalue()

    return thumbnails.merge_segments(segments(), names, max_bytes)


def _snapshot(files: dict[str, FileEntry], n_runs: int) -> str:
    """Keep the committed pool under history/<time>-<runs>-runs/ (its pool files and reports) by
    adding manifest entries that reference the same blobs; the snapshot's folder."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder, n = snapshot_dir(stamp, n_runs), 1
    while any(name.startswith(folder + "/") for name in files):
        n += 1
        folder = snapshot_dir(stamp, n_runs, n)
    for name in list(files):
        if name in POOL_FILES or name.startswith(RUNS_DIR + "/"):
            files[f"{folder}/{name}"] = files[name]
    return folder


def _drop_runs_from(files: dict[str, FileEntry], n_runs: int) -> None:
    """Drop the reports of runs that --process-all replaced (runs/<i>/ with i >= n_runs)."""
    for name in list(files):
        top, _, rest = name.partition("/")
        index = rest.split("/", 1)[0]
        if top == RUNS_DIR and index.isdigit() and int(index) >= n_runs:
            del files[name]


def probe_conditional_writes(pool: BucketPool) -> bool:
    """Whether the server refuses a second `If-None-Match: *` write of one key."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"{pool.prefix}.datapool-probe-{uuid.uuid4().hex}"
    what = f"probing conditional writes under {pool.url}"
    try:
        pool.client.put_object(Bucket=pool.bucket, Key=key, Body=b"1", IfNoneMatch="*")
        try:
            pool.client.put_object(Bucket=pool.bucket, Key=key, Body=b"2", IfNoneMatch="*")
            supported = False
        except ClientError as e:
            if error_code(e) not in CONFLICT:
                raise
            supported = True
        pool.client.delete_object(Bucket=pool.bucket, Key=key)
    except ClientError as e:
        if error_code(e) not in NOT_IMPLEMENTED:
            raise pool._fail(e, what) from None
        supported = False
    except BotoCoreError as e:
        raise pool._fail(e, what) from None
    return supported


def _commit(pool: BucketPool, manifest: Manifest, etag: str | None, lease: S3Lease | None) -> None:
    # Ctrl-C and SIGTERM wait for the manifest's write: an interrupt then says whether the pool
    # was committed rather than leave it in doubt.
    with deferred():
        if lease is None:
            _commit_manifest(pool, manifest, etag)
        else:
            _commit_under_lease(pool, manifest, etag, lease)
        passed_commit_point()


def _commit_manifest(pool: BucketPool, manifest: Manifest, etag: str | None) -> None:
    """Write manifest.json if and only if it is still the one this run read."""
    cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    lost = CONFLICT | NOT_FOUND if etag else CONFLICT  # a manifest deleted since is lost too
    what = f"committing {pool.url}{S3_MANIFEST}"
    body = manifest.to_bytes()
    if pool.request("put_object", what, none_if=lost, Key=pool.manifest_key, Body=body, **cond):
        return
    raise S3PoolConflictError(
        f"another run committed to the pool {pool.url} after this run read it "
        f"(generation {manifest.generation - 1}); this run's result was not committed: run again"
    )


def _commit_under_lease(
    pool: BucketPool, manifest: Manifest, etag: str | None, lease: S3Lease
) -> None:
    """Write manifest.json with a plain PUT, only if this run still holds the lease and the
    manifest is still the one it read (the server ignores If-Match, so datapool checks)."""
    lost = lease.check()
    if lost is not None:
        raise S3PoolConflictError(
            f"this run no longer holds the lock of the pool {pool.url}: {lost}; its result was not "
            "committed: run again"
        )
    if pool.manifest_etag() != etag:
        raise S3PoolConflictError(
            f"another run committed to the pool {pool.url} after this run read it "
            f"(generation {manifest.generation - 1}) although this run held its lock; "
            "this run's result was not committed: run again"
        )
    what = f"committing {pool.url}{S3_MANIFEST}"
    pool.request("put_object", what, Key=pool.manifest_key, Body=manifest.to_bytes())
