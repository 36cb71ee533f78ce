"""A pool in a local folder: the PoolStore that holds a flock and commits through the journal.

A session takes the folder's lock (pool/lock.py; a second run fails at once), checks that the
folder is writable before any work, finishes or undoes a commit that a crash interrupted
(pool/journal.py), and reads the pool. Its commit stages every changed file and makes them
visible all at once; when a run only adds rows, the CSV and the ledger are appended to (O(new)),
not rewritten. After the commit the binary sidecar catches up with the appended rows (a cache: a
failure there loses nothing).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool import _fsio
from datapool._testhooks import point
from datapool.errors import IN_RESULT, ConfigError, PoolWriteError
from datapool.pool import csvfile, history, journal, sidecar, thumbnails
from datapool.pool.contents import Pool, check_readable, model_json_bytes, runs_json_bytes
from datapool.pool.format import min_reader_of
from datapool.pool.layout import (
    CSV_NAME,
    HISTORY_DIR,
    LEDGER_NAME,
    LOCK_NAME,
    MODEL_NAME,
    POOL_FILES,
    REPORT_HTML_NAME,
    REPORT_NAME,
    RUNS_DIR,
    RUNS_NAME,
    STRATEGY_INPUTS_NAME,
    THUMBNAILS_ADDED_PREFIX,
    THUMBNAILS_NAME,
    VIEW_NAME,
    is_local_state,
    run_dir,
)
from datapool.pool.ledger import can_append, write_ledger_text
from datapool.pool.lock import PoolLock
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
from datapool.pool.undo import UNDO_KEY, undo_record

if TYPE_CHECKING:
    from collections.abc import Collection

    import numpy.typing as npt
    import pandas as pd

    from datapool.config import RunConfig, S3Settings
    from datapool.fingerprint import ModelFingerprint
    from datapool.pool.removal import Removal
    from datapool.pool.undo import Undo
    from datapool.pool.verify import Verified

log = logging.getLogger("datapool")


def pool_files(
    rows: Rows,
    ledger: pd.DataFrame,
    runs: list[dict[str, Any]],
    model: ModelFingerprint,
    min_reader: int = 0,
    removals: list[dict[str, Any]] | None = None,
) -> dict[str, bytes]:
    """The committed files of a whole pool, as bytes: what a rewrite or a new pool writes.
    `min_reader`: the minimum reader the pools its contents came from record (pool/format.py);
    `removals`: runs.json's record of `datapool rm` (pool/removal.py)."""
    return {
        CSV_NAME: csvfile.format_csv_bytes(rows.names, rows.embeddings, rows.labels),
        LEDGER_NAME: write_ledger_text(ledger).encode(),
        MODEL_NAME: model_json_bytes(model),
        RUNS_NAME: runs_json_bytes(runs, min_reader, removals),
    }


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.location: Path | str = self.root

    @classmethod
    def open(cls, spec: str, config: RunConfig | S3Settings | None = None) -> LocalStore:
        """The registry's opener (datapool.pool.store.open_store)."""
        return cls(spec)

    def pool(self) -> Pool:
        return Pool.open(self.root)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except OSError:
            return None

    def summary(self) -> dict[str, Any]:
        """Pool.summary, and who holds the pool's lock (a run in progress: its record read
        before the pool, which finishes an interrupted commit under the lock)."""
        from datapool.pool.lock import lock_holder

        holder = lock_holder(self.root) if self.root.is_dir() else None
        summary = self.pool().summary()
        summary["lock"] = holder
        return summary

    def verify(self) -> Verified:
        """Every part of the pool read and checked (pool/verify.py); nothing is written, not
        even the recovery of an interrupted commit, which is reported."""
        from datapool.pool.contents import not_a_pool
        from datapool.pool.verify import verify_folder

        root = self.root
        if not root.is_dir() or not (
            (root / RUNS_NAME).exists()
            or journal.needs_recovery(root)
            or any((root / n).exists() for n in POOL_FILES)
        ):
            raise not_a_pool(root)
        return verify_folder(root)

    def collect_garbage(self, older_than_s: float, dry_run: bool = False) -> Collected:
        """Nothing to collect: a folder pool's commits replace or append to its files, and a
        commit that was interrupted is finished or undone by the next session (pool/journal.py)."""
        Pool.open(self.root)  # a folder that is not a pool fails as `datapool status` does
        return Collected(
            str(self.root),
            note="a pool in a folder holds no unreferenced files: there is nothing to collect",
        )

    @contextlib.contextmanager
    def fetched(self) -> Iterator[Path]:
        """The pool's own folder: a folder pool is read where it is (`datapool merge` reads it
        under its lock)."""
        yield self.root

    def check_new(self) -> None:
        """Refuse a folder that exists and is not empty: a new pool is made only in a new or
        empty folder (`datapool merge --into`)."""
        root = self.root
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ConfigError(
                f"{root} already exists and is not an empty folder; merge into a new one"
            )

    def commit_new(self, folder: Path) -> None:
        """Make the pool that `folder` (on this file system) holds this folder's pool: renamed
        into place, so that it appears whole or not at all."""
        self.check_new()
        if self.root.exists():
            self.root.rmdir()
        os.rename(folder, self.root)
        _fsio.fsync_dir(self.root.resolve().parent)

    @contextlib.contextmanager
    def session(self) -> Iterator[LocalSession]:
        root = self.root
        if root.exists() and not root.is_dir():
            # "A file where a folder is needed" (README, exit codes): 8, as for an export's DEST
            raise PoolWriteError(
                f"cannot use {root} as the pool: it is a file, not a folder; give --pool a new "
                "folder or a pool's folder"
            )
        history.check_not_a_snapshot(root)
        _check_not_a_user_folder(root)
        made = [p for p in (root, *root.absolute().parents) if not p.exists()]
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PoolWriteError(
                f"cannot create pool folder {root} ({e.strerror}); nothing was done"
            ) from None
        with PoolLock(root) as lock:
            try:
                _fsio.check_writable(root)  # a read-only pool fails here, before any work
                warnings = [lock.took_over] if lock.took_over else []
                if journal.needs_recovery(root):
                    check_readable(root)
                recovered = journal.recover(root)
                if recovered:
                    warnings.append(
                        f"an interrupted commit in {root} was {recovered} before this run"
                    )
                    log.warning("%s", warnings[-1], extra={IN_RESULT: True})
                point("locked")
                yield LocalSession(root, Pool.load(root), warnings)
            finally:
                _remove_unused(root, made)


# What file managers leave in any folder they show.
_DESKTOP_FILES = frozenset({"Thumbs.db", "desktop.ini"})


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _check_not_a_user_folder(root: Path) -> None:
    """Refuse a pool folder that holds someone's files and no pool: the pool's files would mix
    with them (a work folder given as --pool by mistake). Hidden files (.DS_Store, .gitkeep),
    Thumbs.db, empty folders and what a run leaves before its first commit do not count; a
    folder that holds pool files but no runs.json is Pool.load's to refuse."""
    if not root.is_dir() or (root / RUNS_NAME).exists() or journal.needs_recovery(root):
        return
    names = sorted(
        n
        for n in os.listdir(root)
        if not n.startswith(".") and n not in _DESKTOP_FILES and not _empty_folder(root / n)
    )
    if any(n in POOL_FILES or n in (RUNS_DIR, HISTORY_DIR) for n in names):
        return  # a pool's own files (a first commit killed part-way leaves runs/)
    if not names:
        return
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ConfigError(
        f"pool folder {root} holds files but no datapool pool ({shown}); give --pool a new or "
        "empty folder, so that the pool's files do not mix with these"
    )


def _remove_unused(root: Path, made: list[Path]) -> None:
    """Remove the folders this session made (`made`: the pool folder and new folders above it)
    when nothing was committed, so that a run that did nothing (nothing new, an error, Ctrl-C)
    leaves no empty pool behind. Done holding the lock: a run that opened the lock file before
    it went fails as locked; one after finds no folder. A folder that existed is left as it is."""
    with contextlib.suppress(OSError):
        if not made or os.listdir(root) != [LOCK_NAME]:
            return
        (root / LOCK_NAME).unlink()
        for folder in made:
            folder.rmdir()


class LocalSession:
    def __init__(self, root: Path, pool: Pool, warnings: list[str]) -> None:
        self.root, self.pool, self.warnings = root, pool, warnings
        self.location = root

    def commit(self, update: PoolUpdate) -> Committed:
        """Write `update` all or nothing (see pool/journal.py); a Ctrl-C before the commit point
        leaves the pool as it was."""
        root, pool = self.root, self.pool
        rows, runs = rows_after(pool, update), runs_after(pool, update)
        folder = run_dir(update.index)
        with journal.Transaction(root) as txn:  # an error or Ctrl-C before commit() undoes it
            if update.snapshot and pool.runs:  # the pool as it was, set aside with the commit
                update.run["previous_pool"] = history.snapshot(root, len(pool.runs), txn)
            csv_added, ledger_added = self._appended(update, rows)
            ledger_whole = None
            if ledger_added is None:
                ledger_whole = write_ledger_text(ledger_after(pool, update)).encode()
            model_bytes = model_json_bytes(update.model)
            runs_bytes = _runs_json(pool, runs, update)
            inputs_bytes = self._inputs_after(update, rows.names)
            txn.stage(f"{folder}/{VIEW_NAME}", update.view)
            if update.report_html:
                txn.stage(f"{folder}/{REPORT_HTML_NAME}", update.report_html)
            if update.new_thumbnails or update.reset:  # a new segment: O(new)
                txn.stage(f"{folder}/{THUMBNAILS_NAME}", thumbnails.pack(update.new_thumbnails))
            # Before the report: its undo record keeps the length and CRC-32 of a CSV written
            # whole, which the digest gathers as the CSV is staged.
            digest = _stage_csv_and_ledger(txn, rows, csv_added, ledger_added, ledger_whole)
            # What `datapool undo` needs to put the pool back (pool/undo.py), and what `datapool
            # verify` checks the files against: a pool's first run records it too (the sums of
            # the files it wrote whole; undo refuses a first run before reading it).
            after: dict[str, bytes | None] = {RUNS_NAME: runs_bytes, MODEL_NAME: model_bytes}
            after[STRATEGY_INPUTS_NAME] = inputs_bytes
            update.report[UNDO_KEY] = self._undo_record(
                csv_added if csv_added is not None else digest,
                ledger_added,
                ledger_whole,
                after,
            )
            txn.stage(
                f"{folder}/{REPORT_NAME}", (json.dumps(update.report, indent=2) + "\n").encode()
            )
            txn.stage(MODEL_NAME, model_bytes)
            txn.stage(RUNS_NAME, runs_bytes)
            if inputs_bytes is not None:
                txn.stage(STRATEGY_INPUTS_NAME, inputs_bytes)
            txn.commit()
        # Committed: a Ctrl-C from here on says so (_signals.commit_point_passed).
        if update.reset:
            _drop_stale_run_dirs(root, len(runs))
            for added in (root / folder).glob(f"{THUMBNAILS_ADDED_PREFIX}*.bin"):
                added.unlink()  # of the pool set aside (kept in its history snapshot)
        # The sidecar: after a rewrite, written from the rows in memory; after an append, it
        # parses and appends only the rows this run appended. It is a cache of the committed
        # CSV, so a failure here loses nothing.
        with contextlib.suppress(OSError):
            sidecar.after_commit(root / CSV_NAME, update.model.output_dim, rows, digest)
        html = root / folder / REPORT_HTML_NAME if update.report_html else None
        return Committed(
            root / folder / REPORT_NAME, root / folder / VIEW_NAME, len(rows.names), html
        )

    def _undo_record(
        self,
        csv: bytes | sidecar.CsvDigest | None,
        ledger_added: bytes | None,
        ledger_whole: bytes | None,
        after: dict[str, bytes | None],
    ) -> dict[str, Any]:
        """undo_record of a commit that appends `csv` to the CSV (its bytes), or writes it whole
        (the digest of what it streamed), and appends `ledger_added` to the ledger (None: writes
        it whole, as `ledger_whole`), and writes `after` (None: leaves the file as it is).
        Called once both are staged, before either is touched."""
        from datapool.pool.undo import WHOLE_CRC32, written_sums

        csv_was, ledger_was = _size(self.root / CSV_NAME), _size(self.root / LEDGER_NAME)
        if isinstance(csv, bytes):
            csv_after: int | None = (csv_was or 0) + len(csv)
            csv_sums = written_sums(True, csv)
        else:
            csv_after = None if csv is None else csv.length
            csv_sums = {} if csv is None else {WHOLE_CRC32: csv.crc}
        ledger = ledger_added if ledger_added is not None else ledger_whole or b""
        lengths = {
            CSV_NAME: (csv_was, csv_after, isinstance(csv, bytes)),
            LEDGER_NAME: (
                ledger_was,
                (ledger_was or 0) + len(ledger) if ledger_added is not None else len(ledger),
                ledger_added is not None,
            ),
        }
        sums = {CSV_NAME: csv_sums, LEDGER_NAME: written_sums(ledger_added is not None, ledger)}
        before = {name: self.read(name) for name in after}
        return undo_record(lengths, before, after, len(self.pool.removals), sums)

    def _appended(self, update: PoolUpdate, rows: Rows) -> tuple[bytes | None, bytes | None]:
        """The bytes the commit appends to the CSV and to the ledger; None for a file it
        rewrites."""
        root, pool = self.root, self.pool
        csv_added = ledger_added = None
        if rows.appended and len(pool) and csvfile.ends_with_newline(root / CSV_NAME):
            # Only rows were added: append them (O(new)) rather than rewrite the pool.
            csv_added = b"".join(
                csvfile.csv_bytes(
                    update.new_names, update.new_embeddings, update.new_labels, with_header=False
                )
            )
        if (
            not update.reset
            and not update.moved_keys
            and can_append(root / LEDGER_NAME, pool.ledger, len(update.ledger_rows))
        ):
            # The ledger is append-only between rewrites (a later row for a key supersedes
            # earlier ones): a commit costs the files this run processed, not the ledger's size.
            ledger_added = write_ledger_text(update.ledger_rows, header=False).encode()
        return csv_added, ledger_added

    def thumbnails(self, names: Collection[str], max_bytes: int | None = None) -> dict[str, bytes]:
        return read_thumbnails(self.root, names, max_bytes)

    def history(self) -> dict[str, set[str]]:
        """Each history snapshot (history/<name>) and the sample names its CSV holds."""
        from datapool.pool.removal import csv_names

        folder = self.root / HISTORY_DIR
        if not folder.is_dir():
            return {}
        return {
            f"{HISTORY_DIR}/{p.name}": csv_names((p / CSV_NAME).read_bytes())
            for p in sorted(folder.iterdir())
            if (p / CSV_NAME).is_file() and not p.name.endswith(".pending")
        }

    def remove(self, removal: Removal) -> None:
        """Commit `removal` (pool/removal.py) through the journal, as a run's commit: the CSV,
        ledger and runs.json rewritten, the strategy inputs and the thumbnail segments without
        the samples, the report.html files that could show them replaced by a notice. Then,
        with purge_history, the snapshots that hold them are removed (renamed aside first, so a
        crash leaves none half-deleted; recovery removes what was set aside)."""
        from datapool.pool import inputs
        from datapool.pool.removal import WITHDRAWN_HTML, scrub_report, seal

        root, pool = self.root, self.pool
        rows = rows_kept(pool, removal.keep)
        model = pool.model
        digest = sidecar.CsvDigest()
        with journal.Transaction(root) as txn:
            if removal.names:
                blocks = csvfile.csv_bytes(rows.names, rows.embeddings, rows.labels)
                txn.stage(CSV_NAME, digest.wrap(blocks))
                ledger = write_ledger_text(removal.ledger).encode()
                txn.stage(LEDGER_NAME, ledger)
                path = root / STRATEGY_INPUTS_NAME
                kept_inputs = None
                if path.exists():
                    kept_inputs = inputs.merged(path.read_bytes(), set(rows.names), {})
                    txn.stage(STRATEGY_INPUTS_NAME, kept_inputs)
                gone = set(removal.names)
                for seg in sorted((root / RUNS_DIR).glob("*/*.bin")):
                    thumbs = thumbnails.unpack(seg.read_bytes(), str(seg))
                    if gone & thumbs.keys():
                        kept = {n: t for n, t in thumbs.items() if n not in gone}
                        txn.stage(seg.relative_to(root).as_posix(), thumbnails.pack(kept))
                notice = WITHDRAWN_HTML.format(at=removal.entry["at"]).encode()
                for index in removal.withdrawn_reports:
                    if (root / run_dir(index) / REPORT_HTML_NAME).exists():
                        txn.stage(f"{run_dir(index)}/{REPORT_HTML_NAME}", notice)
            for index in [] if removal.forget else removal.withdrawn_reports:
                path = root / run_dir(index) / REPORT_NAME
                data = path.read_bytes() if path.exists() else None
                clean = data and scrub_report(data, removal.names, removal.files, removal.at)
                if clean:
                    txn.stage(f"{run_dir(index)}/{REPORT_NAME}", clean)

            def runs_json() -> bytes:
                return runs_json_bytes(
                    pool.runs, min_reader_of(pool.written), removal.removals, pool.checked
                )

            if removal.names:  # the sums of what it wrote, for `datapool verify`
                runs = seal(
                    removal.entry, (digest.length, digest.crc), ledger, kept_inputs, runs_json
                )
            else:
                runs = runs_json()
            txn.stage(RUNS_NAME, runs)
            txn.commit()
        if removal.names and model is not None:
            with contextlib.suppress(OSError):
                sidecar.after_commit(root / CSV_NAME, model.output_dim, rows, digest)
        if removal.purge_history:
            for folder in removal.history:
                aside = root / f"{folder}.pending"  # what recovery removes, should this stop
                os.rename(root / folder, aside)
                _fsio.fsync_dir(root / HISTORY_DIR)
                point(f"set-aside:{folder}")
                shutil.rmtree(aside)

    def plan_undo(self) -> Undo:
        """The undo of the pool's last run (pool/undo.py), checked against what its commit
        recorded; nothing is written."""
        from datapool.pool.undo import plan_undo

        root = self.root

        def size(name: str) -> int | None:
            try:
                return (root / name).stat().st_size
            except FileNotFoundError:
                return None

        def span(name: str, start: int, end: int) -> Iterator[bytes]:
            with open(root / name, "rb") as f:
                f.seek(start)
                yield from _fsio.read_prefix_of(f, end - start)

        return plan_undo(self.pool, self.read, size, committed_files(root), str(root), span)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def undo(self, undo: Undo) -> None:
        """Commit `undo` through the journal, as a run's commit: the CSV and the ledger as their
        bytes before the run (copied, up to their lengths then, and renamed into place),
        runs.json and the strategy inputs as they were, and the run's folder (and the snapshot
        it made) removed after the commit point."""
        root = self.root
        with journal.Transaction(root) as txn:
            if undo.restore:  # from the run's snapshot: its files, linked back into place
                for rel, src in sorted(undo.restore.items()):
                    if not _same_file(root / rel, root / src):
                        txn.stage_link(rel, root / src)
            else:
                txn.stage(CSV_NAME, _fsio.read_prefix(root / CSV_NAME, undo.csv_length))
                txn.stage(LEDGER_NAME, _fsio.read_prefix(root / LEDGER_NAME, undo.ledger_length))
                txn.stage(RUNS_NAME, undo.runs_json)
                if undo.model_json is not None:
                    txn.stage(MODEL_NAME, undo.model_json)
                if undo.inputs is not None:
                    txn.stage(STRATEGY_INPUTS_NAME, undo.inputs)
            for rel in undo.remove:
                txn.remove(rel)
            txn.commit()
        model = self.pool.model
        if model is not None:  # the sidecar follows the CSV (a cache: a failure loses nothing)
            with contextlib.suppress(OSError):
                sidecar.load(root / CSV_NAME, dim=model.output_dim)

    def add_to_report(self, index: int, fields: dict[str, Any], page: bytes | None = None) -> bool:
        """`fields` into run `index`'s report.json, and `page` as its report.html (where it has
        one), committed through the journal."""
        rel = f"{run_dir(index)}/{REPORT_NAME}"
        report = json.loads((self.root / rel).read_bytes())
        report.update(fields)
        html = f"{run_dir(index)}/{REPORT_HTML_NAME}"
        with journal.Transaction(self.root) as txn:
            txn.stage(rel, (json.dumps(report, indent=2) + "\n").encode())
            if page is not None and (self.root / html).exists():
                txn.stage(html, page)
            txn.commit()
        return True

    def record_checks(self, checks: Checks) -> None:
        """Commit `checks` through the journal: runs.json with its record, and the ledger rows
        appended (rewritten where the ledger cannot take an append); no run, no other file."""
        root, pool = self.root, self.pool
        rows = checks.ledger_rows
        recorded = pool.checked if checks.decoder_checked is None else checks.decoder_checked
        with journal.Transaction(root) as txn:
            if rows is not None and len(rows):
                if can_append(root / LEDGER_NAME, pool.ledger, len(rows)):
                    txn.stage_append(LEDGER_NAME, write_ledger_text(rows, header=False).encode())
                else:
                    text = write_ledger_text(superseded(pool.ledger, rows))
                    txn.stage(LEDGER_NAME, text.encode())
            min_reader = min_reader_of(pool.written)
            txn.stage(RUNS_NAME, runs_json_bytes(pool.runs, min_reader, pool.removals, recorded))
            txn.commit()

    def add_thumbnails(self, thumbs: dict[str, bytes]) -> str:
        """One more segment in the last run's folder, committed through the journal."""
        runs_dir = self.root / RUNS_DIR
        existing = [p.relative_to(self.root).as_posix() for p in runs_dir.glob("*/*.bin")]
        rel = thumbnails.next_added_name(existing, len(self.pool.runs) - 1)
        with journal.Transaction(self.root) as txn:
            txn.stage(rel, thumbnails.pack(thumbs))
            txn.commit()
        return rel

    def _inputs_after(self, update: PoolUpdate, names: list[str]) -> bytes | None:
        """The strategy inputs of the rows the pool keeps, plus the new ones (pool/inputs.py);
        None where the pool has none and the run adds none (no file is written)."""
        from datapool.pool import inputs

        path = self.root / STRATEGY_INPUTS_NAME
        old = None if update.reset or not path.exists() else path.read_bytes()
        if old is None and update.new_inputs is None:
            return None
        return inputs.merged(old, set(names), update.new_inputs or {}, update.renames)

    def strategy_inputs(
        self, names: list[str]
    ) -> tuple[dict[str, npt.NDArray[Any]], dict[str, list[str]]]:
        """The stored strategy inputs of the pool samples `names` (pool/inputs.py)."""
        from datapool.pool import inputs

        path = self.root / STRATEGY_INPUTS_NAME
        return inputs.columns_of(path.read_bytes() if path.exists() else None, names)


def read_thumbnails(
    root: Path, names: Collection[str], max_bytes: int | None = None
) -> dict[str, bytes]:
    """The thumbnails of the pool samples `names` in the folder pool at `root` (newest runs
    first, about `max_bytes` of them at most; `names` a name -> run mapping to leave out
    stale ones: thumbnails.merge_segments)."""
    runs_dir = root / RUNS_DIR
    if not runs_dir.is_dir():
        return {}
    paths = [p.relative_to(root).as_posix() for p in runs_dir.glob("*/*.bin")]
    order = thumbnails.segment_order(paths)
    segments = ((p, (root / p).read_bytes()) for p in order)
    return thumbnails.merge_segments(segments, names, max_bytes)


def committed_files(root: Path) -> list[str]:
    """The pool-relative paths (POSIX) of the committed files of the folder pool at `root`:
    every file but its local state (lock, journal, sidecar, temporaries)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not is_local_state((rel_dir / d).as_posix())]
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if not is_local_state(rel):
                out.append(rel)
    return sorted(out)


def _same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are one file (hard links of one inode: a snapshot's unchanged file).
    A rename of one onto the other would do nothing and leave the staged name behind."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _size(path: Path) -> int | None:
    """A committed file's length; None where there is none (before a pool's first run)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _stage_csv_and_ledger(
    txn: journal.Transaction,
    rows: Rows,
    csv_added: bytes | None,
    ledger_added: bytes | None,
    ledger_whole: bytes | None,
) -> sidecar.CsvDigest | None:
    """Stage the CSV (`csv_added` appended, or `rows` written whole) and the ledger
    (`ledger_added` appended, or `ledger_whole`); the digest of a CSV written whole."""
    digest = None
    if csv_added is not None:
        txn.stage_append(CSV_NAME, csv_added)
    else:
        digest = sidecar.CsvDigest()
        txn.stage(
            CSV_NAME, digest.wrap(csvfile.csv_bytes(rows.names, rows.embeddings, rows.labels))
        )
    if ledger_added is not None:
        txn.stage_append(LEDGER_NAME, ledger_added)
    else:
        txn.stage(LEDGER_NAME, ledger_whole or b"")
    return digest


def _drop_stale_run_dirs(root: Path, n_runs: int) -> None:
    runs_dir = root / RUNS_DIR
    for child in runs_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and int(child.name) >= n_runs:
            shutil.rmtree(child)


def create_pool(
    dest: Path,
    files: dict[str, bytes],
    run_dirs: list[tuple[Path, int]],
    without_thumbnails: frozenset[int] = frozenset(),
    check: Callable[[Path], None] | None = None,
) -> None:
    """Write a new pool at `dest` (absent or an empty folder) whole or not at all: built in a
    temporary sibling folder, fsynced, and renamed into place. `run_dirs` are (folder, index)
    of report folders to copy in as runs/<index>, less their thumbnail segments for the indices
    in `without_thumbnails` (`files` may hold rewritten ones). `check(folder)` reads the
    temporary folder before the rename; what it raises leaves nothing behind."""
    parent = dest.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{dest.name}.new-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        segments = shutil.ignore_patterns(THUMBNAILS_NAME, f"{THUMBNAILS_ADDED_PREFIX}*.bin")
        for src, index in run_dirs:
            if src.is_dir():
                skip = segments if index in without_thumbnails else None
                shutil.copytree(src, tmp / run_dir(index), ignore=skip)
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            _fsio.atomic_write_bytes(tmp / name, data)
        if check is not None:
            check(tmp)
        _fsio.fsync_dir(tmp)
        if dest.exists():
            dest.rmdir()  # the caller checked that it is empty
        os.rename(tmp, dest)
        _fsio.fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _runs_json(pool: Pool, runs: list[dict[str, Any]], update: PoolUpdate) -> bytes:
    """runs.json after a run's commit: its runs, the removals (as read, or the update's), and
    the record of a check (as read; a pool started over has none: pool/next_run.py)."""
    removals = pool.removals if update.removals is None else update.removals
    checked = None if update.reset else pool.checked
    return runs_json_bytes(runs, min_reader_of(pool.written), removals, checked)
