"""The pool store: where a pool lives and how a run reads and commits it.

    store = open_store("pool/")              # or "s3://bucket/prefix"; found by scheme
    with store.session() as session:         # holds the pool's lock (flock, lease or ETag)
        pool = session.pool                  # the committed pool, read under that lock
        ...                                  # the run's work
        committed = session.commit(update)   # all or nothing; afterwards nothing is written

Besides sessions, a store answers `datapool status` (`summary()`) and `datapool gc`
(`collect_garbage()`: a bucket pool's blobs that no manifest references any more).

A run builds one PoolUpdate: the rows it adds, which of the pool's rows stay, its ledger rows,
its run record, report and view. It never says how they are written: a folder appends to the CSV
and the ledger through its journal (pool/local.py), a bucket writes blobs and then its manifest
with a conditional write (s3/store.py). `runner.run` does not know which store it has.
"""

from __future__ import annotations

import functools
import importlib
import numbers
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from datapool._fsio import unexpanded_home
from datapool.errors import ConfigError
from datapool.specs import path_arg, scheme_of

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from datapool.config import RunConfig, S3Settings
    from datapool.fingerprint import ModelFingerprint
    from datapool.pool.contents import Pool
    from datapool.pool.removal import Removal
    from datapool.pool.undo import Undo
    from datapool.pool.verify import Verified

# scheme -> "module:class"; the class has `open(spec, config) -> PoolStore`.
_SCHEMES = {
    "": "datapool.pool.local:LocalStore",
    "s3": "datapool.s3.store:S3Store",
}


@dataclass
class PoolUpdate:
    """Everything one run commits to a pool.

    - `reset`: the run starts the pool over (--process-all): the pool as read is set aside (the
      store snapshots it under history/), and the new pool holds only this run's rows, ledger
      rows and run. Otherwise the new pool is the pool as read, less the rows `keep` drops (the
      samples of changed files), plus the new rows; the ledger rows supersede the ledger's rows
      of the same keys.
    - `snapshot`: keep the pool as read under history/ before committing (--keep-history; always
      with `reset` when the pool has runs). The store records where in `run["previous_pool"]`.
    - `run`: this run's record for runs.json; its "index" is the number of runs it builds on.
    """

    run: dict[str, Any]
    model: ModelFingerprint
    new_names: list[str]
    new_embeddings: npt.NDArray[np.float32]
    new_labels: npt.NDArray[np.int64]
    keep: npt.NDArray[np.bool_]
    ledger_rows: pd.DataFrame
    report: dict[str, Any]
    view: bytes
    reset: bool = False
    report_html: bytes = b""  # runs/<index>/report.html; none written when empty
    snapshot: bool = False
    # The strategy inputs of the new samples, {name: {column: value}} (pool/inputs.py); None when
    # the run used diversity alone. Kept in STRATEGY_INPUTS_NAME for the rows the pool keeps.
    new_inputs: dict[str, dict[str, Any]] | None = None
    # The thumbnails of the new samples, {name: JPEG} (pool/thumbnails.py): one new segment,
    # runs/<index>/thumbnails.bin; none written when empty.
    new_thumbnails: dict[str, bytes] = field(default_factory=dict)
    # Files moved or renamed in the source (pool/moves.py): the pool's samples renamed, old name
    # to new (rows stay in place), and the old ledger keys, whose rows `ledger_rows` holds under
    # the new keys. Either makes the commit rewrite the CSV and the ledger.
    renames: dict[str, str] = field(default_factory=dict)
    moved_keys: set[str] = field(default_factory=set)
    # runs.json's removals after this run (None: as read): a file `datapool rm` keeps out that
    # moved is kept out under its new key too (runner: _kept_out_where_moved).
    removals: list[dict[str, Any]] | None = None

    @property
    def index(self) -> int:
        return int(self.run["index"])


@dataclass
class Checks:
    """What a run that adds nothing records of what it checked (`session.record_checks`), in
    one commit that adds no run, all or nothing as a run's: so that the next run does not check
    it again.

    - `decoder_checked`: runs.json's record that this datapool's decoder checked the files of
      the pool's runs an older one read (pool/next_run.py CHECKED_KEY); None: as read.
    - `ledger_rows`: rows that supersede the ledger's of the same keys: a touched file's new
      mtime (same bytes), the content hash of a file an older datapool recorded without one,
      and, for crop selection, the identity of each image's predictions file, learnt by
      reading it (runner/crops.py).
    """

    decoder_checked: dict[str, Any] | None = None
    ledger_rows: pd.DataFrame | None = None


@dataclass
class Committed:
    """Where the committed run's report and view are: paths, or s3:// URLs."""

    report: Path | str
    view: Path | str
    pool_size: int
    html: Path | str | None = None  # the interactive report, when the run wrote one


@dataclass
class Collected:
    """What `collect_garbage` removed (or, with dry_run, would remove)."""

    pool: str
    deleted: list[str] = field(default_factory=list)  # object keys (S3) or paths
    freed_bytes: int = 0
    kept_recent: int = 0  # unreferenced, but younger than the age threshold: maybe a run in flight
    referenced: int = 0  # blobs that a manifest (current, or a snapshot in it) references
    aborted_uploads: int = 0  # multipart uploads left behind, older than the threshold
    note: str = ""


# `datapool gc` leaves alone what is younger than this: a run in flight writes its blobs before
# its manifest, and must find them there when it commits.
DEFAULT_GC_AGE_S = 3600.0


class PoolSession(Protocol):
    location: Path | str  # where the pool is: a folder's Path, or its s3://bucket/prefix/ URL
    pool: Pool  # the committed pool, read under the session's lock
    warnings: list[str]  # for the user and the report: a lock taken over, a commit recovered, ...

    def commit(self, update: PoolUpdate) -> Committed: ...

    def thumbnails(self, names: Collection[str], max_bytes: int | None = None) -> dict[str, bytes]:
        """The committed thumbnails of the pool samples `names` (pool/thumbnails.py), newest
        runs first, about `max_bytes` of them at most; where `names` maps each to its run,
        none from an earlier run's folder (thumbnails.merge_segments)."""
        ...

    def add_thumbnails(self, thumbs: dict[str, bytes]) -> str:
        """Commit `thumbs` as one more segment in the last run's folder (`datapool report
        --thumbnails`), atomically; its pool-relative path."""
        ...

    def history(self) -> dict[str, set[str]]:
        """Each history snapshot (`history/<name>`) and the sample names it holds."""
        ...

    def add_to_report(self, index: int, fields: dict[str, Any], page: bytes | None = None) -> bool:
        """Commit `fields` into run `index`'s report.json (what the run's --export did, after
        the run's commit), and `page` as its report.html where given and the run has one, in one
        commit; False where the pool moved on since this session's commit (another run
        committed: the report is left as it was)."""
        ...

    def remove(self, removal: Removal) -> None:
        """Commit a removal (`datapool rm`, pool/removal.py) all or nothing, as a run's commit."""
        ...

    def record_checks(self, checks: Checks) -> None:
        """Commit `checks` (a run that adds nothing) all or nothing, as a run's commit, without
        a run: runs.json's record and the ledger rows; nothing else changes."""
        ...

    def plan_undo(self) -> Undo:
        """The undo of the pool's last run (`datapool undo`, pool/undo.py); writes nothing."""
        ...

    def undo(self, undo: Undo) -> None:
        """Commit `undo` all or nothing, as a run's commit."""
        ...


class PoolStore(Protocol):
    location: Path | str  # where the pool is: a folder's Path, or its s3://bucket/prefix/ URL

    def session(self) -> AbstractContextManager[PoolSession]: ...

    def pool(self) -> Pool:
        """The committed pool, to read (`datapool ls`); a bucket pool's through its local copy."""
        ...

    def read(self, name: str) -> bytes | None:
        """A committed pool file by its pool-relative name (`runs/0/report.json`); None when
        the pool has no such file."""
        ...

    def summary(self) -> dict[str, Any]:
        """What `datapool status` shows (Pool.summary, plus what the store adds)."""
        ...

    def collect_garbage(self, older_than_s: float, dry_run: bool = False) -> Collected: ...

    def verify(self) -> Verified:
        """`datapool verify`: every part of the pool read and checked (pool/verify.py), without
        the pool's lock; nothing is written."""
        ...

    def fetched(self) -> AbstractContextManager[Path]:
        """A local folder that holds the committed pool's files and its runs' folders (not its
        history), to read as a folder pool (`datapool merge`): a folder pool's own folder; a
        bucket pool's files fetched into a temporary folder without its lock (removed on exit)."""
        ...

    def check_new(self) -> None:
        """Refuse (ConfigError) where a new pool cannot be made: a folder that is not new or
        empty; a prefix that holds a pool or other objects. Reads only."""
        ...

    def commit_new(self, folder: Path) -> None:
        """Make the pool whose files the local `folder` holds this store's pool, all or nothing
        (a folder: renamed into place; a bucket: blobs, then the manifest, under its lock)."""
        ...


class Rows:
    """A pool's rows after an update: names, embeddings and labels, aligned.

    When the update only appends (`appended`: the pool's rows, unchanged, then the new rows), a
    store writes the new rows alone, so the whole matrix is stacked only if a store asks for it
    (`embeddings`): a run that adds 10 samples to a 200,000-sample pool does not copy its 408 MB.
    """

    def __init__(
        self,
        names: list[str],
        parts: list[npt.NDArray[np.float32]],
        label_parts: list[npt.NDArray[np.int64]],
        appended: bool = False,
    ) -> None:
        self.names, self.appended = names, appended
        self._parts, self._label_parts = parts, label_parts

    @functools.cached_property
    def embeddings(self) -> npt.NDArray[np.float32]:
        import numpy as np

        parts = self._parts
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @functools.cached_property
    def labels(self) -> npt.NDArray[np.int64]:
        import numpy as np

        parts = self._label_parts
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def rows_after(pool: Pool, update: PoolUpdate) -> Rows:
    """The rows of the pool that `update` makes from `pool` (both stores write these)."""
    new, new_labels = update.new_embeddings, update.new_labels
    if update.reset or len(pool) == 0:
        return Rows(update.new_names, [new], [new_labels], not update.reset)
    keep, filenames = update.keep, pool.filenames
    if update.renames:
        filenames = [update.renames.get(n, n) for n in filenames]
    if keep.all():
        names = filenames + update.new_names
        return Rows(
            names,
            [pool.embeddings, new],
            [pool.labels, new_labels],
            appended=not update.renames,
        )
    names = [n for n, k in zip(filenames, keep) if k] + update.new_names
    return Rows(names, [pool.embeddings[keep], new], [pool.labels[keep], new_labels])


def rows_kept(pool: Pool, keep: npt.NDArray[np.bool_]) -> Rows:
    """The pool's rows that `keep` keeps (a removal: `datapool rm`)."""
    names = [n for n, k in zip(pool.filenames, keep.tolist()) if k]
    return Rows(names, [pool.embeddings[keep]], [pool.labels[keep]])


def ledger_after(pool: Pool, update: PoolUpdate) -> pd.DataFrame:
    """The whole ledger after `update`: one row per key (this run's rows supersede), sorted."""
    ledger = pool.ledger.iloc[0:0] if update.reset else pool.ledger
    return superseded(ledger, update.ledger_rows, update.moved_keys)


def superseded(
    ledger: pd.DataFrame, rows: pd.DataFrame, moved_keys: Collection[str] = ()
) -> pd.DataFrame:
    """`ledger` with `rows` superseding its rows of the same keys (and without `moved_keys`'),
    one row per key, sorted."""
    import pandas as pd

    kept = ledger[~ledger["key"].isin(set(rows["key"]) | set(moved_keys))]
    parts = [p for p in (kept, rows) if len(p)]
    if not parts:
        return ledger.iloc[0:0]
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return out.sort_values("key", ignore_index=True)


def runs_after(pool: Pool, update: PoolUpdate) -> list[dict[str, Any]]:
    return [*([] if update.reset else pool.runs), update.run]


def collect_garbage(
    spec: str | os.PathLike[str],
    older_than_s: float = DEFAULT_GC_AGE_S,
    dry_run: bool = False,
    config: RunConfig | S3Settings | None = None,
) -> Collected:
    """`datapool gc`: remove what no committed state of the pool at `spec` references and that
    is older than `older_than_s` (a bucket pool's orphaned blobs; a folder has none)."""
    spec = path_arg("pool", spec)
    if isinstance(older_than_s, bool) or not isinstance(older_than_s, numbers.Real):
        # (a str from the Python API: a TypeError from the comparison below, before)
        raise ConfigError(f"older_than_s must be a number of seconds, got {older_than_s!r}")
    if not older_than_s >= 0:
        raise ConfigError(f"the age threshold must be 0 or more seconds, got {older_than_s!r}")
    if not isinstance(dry_run, bool):  # dry_run="no" would be a dry run
        raise ConfigError(f"dry_run must be True or False, got {dry_run!r}")
    return open_store(spec, config).collect_garbage(older_than_s, dry_run)


def remove_samples(
    pool: str | os.PathLike[str],
    names: Iterable[str] = (),
    source_files: Iterable[str] = (),
    run: int | str | None = None,
    reason: str | None = None,
    forget: bool = False,
    purge_history: bool = False,
    dry_run: bool = False,
    config: RunConfig | S3Settings | None = None,
) -> Removal:
    """`datapool rm`: remove samples from the pool at `pool` (a folder or s3://bucket/prefix)
    in one commit, under the pool's lock, and keep them out of later runs (plan_removal says
    what each argument takes). With `dry_run`, only what would be removed."""
    from datapool.pool.removal import crop_boxes, plan_removal

    store = open_store(pool, config)
    store.pool()  # a folder or prefix that holds no pool fails here, before a session makes one
    with store.session() as session:
        if not session.pool.runs:
            raise ConfigError(f"the pool {session.location} has no runs: nothing to remove")
        removal = plan_removal(
            session.pool,
            names,
            source_files,
            run,
            reason,
            forget,
            purge_history,
            history=session.history(),
            where=str(session.location),
        )
        boxes = {} if forget else crop_boxes(session, removal.names)
        if boxes:  # a later crop of the name is kept out where it is the same object
            removal.entry["boxes"] = boxes
        removal.pool_size = int(removal.keep.sum())
        removal.location = str(session.location)
        if dry_run:
            removal.dry_run = True
            return removal
        session.remove(removal)
    return removal


def undo_last_run(
    pool: str | os.PathLike[str],
    dry_run: bool = False,
    config: RunConfig | S3Settings | None = None,
) -> Undo:
    """`datapool undo`: put the pool at `pool` back as it was before its last run, in one
    commit under the pool's lock (plan_undo says what it refuses). With `dry_run`, only what
    would go. Undoing again undoes the run before."""
    if not isinstance(dry_run, bool):
        raise ConfigError(f"dry_run must be True or False, got {dry_run!r}")
    store = open_store(pool, config)
    store.pool()  # a folder or prefix that holds no pool fails here, before a session makes one
    with store.session() as session:
        undo = session.plan_undo()
        if dry_run:
            undo.dry_run = True
            return undo
        session.undo(undo)
    return undo


def verify_pool(
    spec: str | os.PathLike[str], config: RunConfig | S3Settings | None = None
) -> Verified:
    """`datapool verify`: read every part of the pool at `spec` (a folder or
    s3://bucket/prefix) without its lock and without changing anything, and return every
    problem found (pool/verify.py; `.ok` where none is an error)."""
    spec = path_arg("pool", spec)
    return open_store(spec, config).verify()


def check_pool_spec(spec: str | os.PathLike[str]) -> None:
    """Refuse a pool where no store can keep one (gs://: a gs:// source is read, but a pool is
    kept in a folder or in S3) with one line saying where to keep it, and a path that starts
    with a `~` the shell did not expand."""
    text = os.fspath(spec)
    scheme = scheme_of(text)
    if scheme not in _SCHEMES:
        also = " (gs:// works as a source)" if scheme == "gs" else ""
        raise ConfigError(
            f"pool {text}: a pool cannot be kept in {scheme}://; keep the pool in a local folder "
            f"or in s3://bucket/prefix{also}"
        )
    meant = None if scheme else unexpanded_home(text)
    if meant is not None:
        raise ConfigError(f"pool {text}: `~` is not expanded there: give the full path, {meant}")


def open_store(
    spec: str | os.PathLike[str], config: RunConfig | S3Settings | None = None
) -> PoolStore:
    """The store of the pool at `spec`: a folder, or s3://bucket/prefix. `config` is a run's, or
    only the S3 settings (what `datapool status` and `gc` know)."""
    text = os.fspath(spec)
    check_pool_spec(text)
    module, _, name = _SCHEMES[scheme_of(text)].partition(":")
    store: PoolStore = getattr(importlib.import_module(module), name).open(text, config)
    return store
