"""Merge two pools built with the same model into a new third pool.

    datapool merge A B --into C [--reselect N]

- The models must match (same fingerprint: sha256, input size, output dimension, and the
  settings that shape the embeddings); otherwise a ModelMismatchError names each one that
  differs with both values.
- C holds A's samples, then B's; A's runs keep their indices and B's follow them, so B's labels
  are renumbered by A's number of runs. Every run gets the tag of its new index (tags stay
  unique) and records where it came from (`merged_from`: pool, original index and tag, the
  prefix its names got, and the run's own `merged_from` when it came from a merged pool). Each
  run's report folder is copied along, with its thumbnail segments (pool/thumbnails.py); where
  B's names get a prefix, B's thumbnails are written again under the new names.
- The ledgers are united. When A and B were grown from the same source (every run of both names
  the same source), C holds every sample either pool selected: a sample name both hold is kept
  once (A's), and B's other samples of a file A also processed stay (each pool may have picked
  other frames of one video), unless B's ledger row of its file records another version of it
  than A's (other bytes: B's samples are of a version the pool no longer describes, and would
  stay beside the new version's for good) or A could not read that file: those are left out
  (`stale`). A raw file both processed keeps A's ledger row, with `n_selected`
  counted again over C's samples, and B's samples of it are labelled with that row's run (a
  ledger row's samples all belong to its run); those runs record how many joined them
  (`joined`), and B's runs how many of theirs went under A's runs (`moved`). Sources are
  compared as specs.normal_spec gives them (`a/../b` is `b`). When they come from different
  sources, a raw file of B's whose key A's ledger holds too (or one of whose sample names A
  holds) gets the prefix `<B's folder name>/` on its key and on every sample name of it, for
  example `img0.jpg` from pool `night` becomes `night/img0.jpg`, with a number added
  (`night-2/`) if a name of A's or B's already starts with it. So every sample's name still
  leads to its file's ledger row (naming.source_keys), and `key_in_source` takes the recorded
  prefixes off again to read the file from B's source (datapool export).
- `reselect=N` re-runs farthest-point selection over the union, from an empty start, and keeps the
  N most diverse samples (in their merged order).
- The strategy inputs of the samples C keeps (strategy_inputs.json, pool/inputs.py) come along,
  under their names in C (A's where both hold a name).
- C is built in a temporary folder beside it, read back there with Pool.load's checks (and every
  sample's raw file in the ledger), and only then renamed into place, so it appears whole and
  valid or not at all. A and B are read under their locks, held until C is written (a run on
  either is refused meanwhile, as by another run; one that holds either refuses the merge),
  and never changed.
- A, B and C are local pool folders or pools in S3 (s3://bucket/prefix), in any mix, through
  the store registry (pool/store.py: `fetched`, `check_new`, `commit_new`). A pool in S3 is
  read from its committed manifest, without its lock (one commit, whole: s3/whole.py) into a
  temporary folder, and refused while a run holds it, as a folder's lock refuses it; C in S3
  is built and checked in a temporary folder as above, then committed as a run's commit is
  (blobs, then the manifest, under the prefix's lock object), so it appears whole or not at
  all. C's runs name a pool in S3 by its URL (`merged_from`), and B's names get the last part
  of its prefix as their prefix, as of its folder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool._fsio import unexpanded_home
from datapool.errors import (
    ConfigError,
    DatapoolError,
    ModelMismatchError,
    PoolCorruptError,
    SourceError,
)
from datapool.naming import counted, is_automatic_tag, run_tag, source_keys
from datapool.pool import journal as _journal
from datapool.pool.contents import Pool, crop_modes, key_in_source, key_prefixes, not_a_pool
from datapool.pool.format import min_reader_of
from datapool.pool.keepout import kept_out, kept_out_boxes, same_object
from datapool.pool.layout import (
    RUNS_DIR,
    STRATEGY_INPUTS_NAME,
    THUMBNAILS_NAME,
    pool_above,
)
from datapool.pool.ledger import image_sample_keys, same_version
from datapool.pool.local import create_pool, pool_files
from datapool.pool.lock import PoolLock
from datapool.pool.store import PoolStore, Rows, check_pool_spec, open_store
from datapool.specs import normal_local_path, normal_spec, path_arg, scheme_of

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from datapool.config import S3Settings
    from datapool.fingerprint import ModelFingerprint
    from datapool.sources import MediaInput, Source


@dataclass
class MergeResult:
    """What a merge made. It adds up: `from_a + from_b == size` and
    `size_a + size_b == size + duplicates + stale + reselect_dropped`."""

    pool: Path | str  # C: its folder, or its s3://bucket/prefix/ URL
    size: int  # samples in C
    from_a: int  # of them, A's
    from_b: int  # of them, B's
    renamed: int  # B's samples whose names got the prefix
    duplicates: int  # B's samples whose name A holds too (same source), kept once
    prefix: str | None
    size_a: int = 0  # samples in A
    size_b: int = 0  # samples in B
    reselect_dropped: int = 0  # union samples that --reselect left out
    renamed_files: int = 0  # B's raw files (ledger keys) that got the prefix
    stale: int = 0  # B's samples of a file A's ledger holds in another version (same source)
    # object crops named as one the other pool removed whose box holds another object now
    # (keepout.same_object), let in as a run lets them in
    let_in: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Origin:
    """A pool a merge reads: `folder` holds its files (the pool's folder, or a temporary copy of
    a pool in S3); `name` is how C's runs and the messages name it (the folder's path, or the
    pool's s3:// URL), and `str()` of it."""

    folder: Path
    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def base(self) -> str:
        """The last part of its path or prefix (of its bucket, for a bucket's root): the prefix
        B's clashing names get."""
        if scheme_of(self.name):
            return self.name.rstrip("/").rsplit("/", 1)[-1]
        return Path(self.name).resolve().name

    def within(self, path: str) -> str:
        """A path inside it (a run's `previous_pool`), or a URL, as found from elsewhere."""
        if "://" in path or Path(path).is_absolute():
            return path
        if scheme_of(self.name):
            return self.name.rstrip("/") + "/" + path
        return str(Path(self.name) / path)


def _read_locked(stack: contextlib.ExitStack, path: Path) -> Pool:
    """The pool at `path`, read under its lock, which `stack` holds until the merge has read
    everything of it (its runs' folders, thumbnails and strategy inputs too): a run that
    commits meanwhile would otherwise leave C with the CSV from before it and the rest from
    after it. A run that holds the pool refuses the merge (PoolLockedError), as it would a run."""
    if not Pool.is_pool(path) and not (path.is_dir() and _journal.needs_recovery(path)):
        raise not_a_pool(path)
    stack.enter_context(PoolLock(path))
    _journal.recover(path)
    return Pool.load(path)


def _pool_arg(spec: str | os.PathLike[str], what: str) -> str:
    """A pool argument of merge: a local path or s3://bucket/prefix; an empty one, a scheme no
    pool is kept in, or a `~` the shell left is refused."""
    text = os.fspath(path_arg({"A": "a", "B": "b"}.get(what, "into"), spec))
    if not text:
        raise ConfigError(f"{what}: the path is empty (an unset variable?); give a pool folder")
    if scheme_of(text):
        check_pool_spec(text)  # (gs://: no pool is kept there)
        return text
    meant = unexpanded_home(text)
    if meant is not None:
        raise ConfigError(f"{what} {text}: `~` is not expanded there: give the full path, {meant}")
    return text if what == "--into" else str(normal_local_path(text))


@contextlib.contextmanager
def _said_as(what: str, copy: Path | None = None, url: str = "") -> Iterator[None]:
    """An error about a pool argument, with the argument's name in front (and where it names a
    file of `copy`, the local copy of the pool at `url`, the pool's URL instead)."""
    try:
        yield
    except DatapoolError as e:
        text = str(e) if copy is None else str(e).replace(f"{copy}{os.sep}", url)
        raise type(e)(f"{what}: {text}") from None


def _sources(pool: Pool) -> set[str]:
    return {normal_spec(str(r.get("source"))) for r in pool.runs}


def _mismatch(pa: Origin, ma: ModelFingerprint, pb: Origin, mb: ModelFingerprint) -> str:
    """Why A's and B's embeddings are not comparable: each differing setting with both values
    (ModelFingerprint.mismatch, as a run's check says it)."""
    why = ma.mismatch(mb, mine="A", theirs="B", pool=str(pa))
    return (
        f"cannot merge pool A ({pa}) with pool B ({pb}): A {why}; embeddings from different "
        "models are not comparable"
    )


def _same_version(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Per row: do the aligned ledger rows `a` and `b` record the same version of their file
    that `a` read whole? The rule a run's diff applies (pool/ledger.py same_version: the size,
    and the ETag where both have one, else the mtime or the content hash), on what the two
    ledgers record alone: a merge reads no source, so where a run would read the file to tell
    (an ETag against a content hash, other mtimes and no hash) the versions count as other."""
    columns = ("size", "mtime_ns", "etag", "content_hash")
    same = same_version(
        {c: a[c].to_numpy() for c in columns}, {c: b[c].to_numpy() for c in columns}
    )
    return np.asarray(same & (a["status"].to_numpy() == "ok"), dtype=bool)


def _stale_in_b(A: Pool, B: Pool) -> np.ndarray:
    """Mask of B's samples whose file A's ledger holds in another version than B's (or A
    could not read): of a version the merged pool's ledger does not describe."""
    both = B.ledger.merge(A.ledger, on="key", suffixes=("_b", ""))
    if len(both) == 0:
        return np.zeros(len(B), dtype=bool)
    b_rows = both[[f"{c}_b" for c in ("size", "etag", "mtime_ns", "content_hash")]]
    b_rows.columns = ["size", "etag", "mtime_ns", "content_hash"]
    other = set(both["key"][~_same_version(both, b_rows.assign(status="ok"))].tolist())
    keys = source_keys(list(B.filenames), image_sample_keys(B.ledger))
    return np.array([k in other for k in keys], dtype=bool)


def _under_a_runs(A: Pool, B: Pool, b_labels: np.ndarray) -> np.ndarray:
    """B's labels (already renumbered after A's runs), with B's samples of a file that A also
    processed moved under A's run of that file: a ledger row's samples all belong to its run."""
    a_run = dict(zip(A.ledger["key"].tolist(), A.ledger["run"].tolist()))
    keys = source_keys(list(B.filenames), image_sample_keys(B.ledger))
    out = b_labels.copy()
    for i, k in enumerate(keys):
        if k in a_run:
            out[i] = a_run[k]
    return out


def _free_prefix(base: str, taken: set[str]) -> str:
    prefix, n = f"{base}/", 1
    while any(t.startswith(prefix) for t in taken):
        n += 1
        prefix = f"{base}-{n}/"
    return prefix


def _prefix_clashes(
    pb: Origin, A: Pool, B: Pool
) -> tuple[str | None, list[str], pd.DataFrame, int]:
    """For pools from different sources: B's sample names and ledger after prefixing every raw
    file of B whose key A holds too, or one of whose sample names A holds, with all its samples
    (so each sample still leads to its file's ledger row); the prefix (None when nothing
    clashes) and the number of files prefixed."""
    a_names, b_names = set(A.filenames), list(B.filenames)
    a_keys, b_keys = set(A.ledger["key"].tolist()), B.ledger["key"].tolist()
    of_name = source_keys(b_names, image_sample_keys(B.ledger))
    clash = (a_keys & set(b_keys)) | {k for n, k in zip(b_names, of_name) if n in a_names}
    if not clash:
        return None, b_names, B.ledger.copy(), 0
    # Free of every name and key of both pools, so that a name starting with it in C is one
    # the merge prefixed (key_in_source takes it off again).
    prefix = _free_prefix(pb.base or "b", a_names | a_keys | set(b_names) | set(b_keys))
    names = [prefix + n if k in clash else n for n, k in zip(b_names, of_name)]
    ledger = B.ledger.assign(key=[prefix + k if k in clash else k for k in b_keys])
    return prefix, names, ledger, len(clash & set(b_keys))


class PrefixedSource:
    """A source seen under the keys a merged pool holds for its files (`keys`: pool key ->
    source key, where they differ): list() names each file under the pool's keys for it (and
    under its own where the pool has no other name for it), and open_inputs and content_hashes
    take the pool's keys. Anything else is the source's."""

    def __init__(self, source: Source, keys: dict[str, str]) -> None:
        self.source, self.keys = source, keys

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def list(self) -> pd.DataFrame:
        import pandas as pd

        listing = self.source.list()
        at = {k: i for i, k in enumerate(listing["key"].tolist())}
        mapped = [(pool_key, at[key]) for pool_key, key in self.keys.items() if key in at]
        own = listing.loc[~listing["key"].isin(set(self.keys))]
        renamed = listing.iloc[[i for _, i in mapped]].assign(key=[k for k, _ in mapped])
        return pd.concat([own, renamed], ignore_index=True).sort_values("key", ignore_index=True)

    def open_inputs(self, keys: Sequence[str]) -> Iterator[tuple[str, MediaInput | SourceError]]:
        inner = [self.keys.get(k, k) for k in keys]
        for key, (_, media) in zip(keys, self.source.open_inputs(inner)):
            yield key, media

    def content_hashes(self, keys: Sequence[str]) -> dict[str, str]:
        hashes = getattr(self.source, "content_hashes", None)
        if hashes is None:
            return {}
        found = hashes(sorted({self.keys.get(k, k) for k in keys}))
        return {k: found[self.keys.get(k, k)] for k in keys if self.keys.get(k, k) in found}


def in_merged_pool(source: Source, pool: Pool) -> Any:
    """`source` as `pool` names its files: where merges prefixed the keys of some runs
    (key_prefixes; a ledger row's key belongs to the row's run), a PrefixedSource that reads
    them by the source's own keys; otherwise `source` itself."""
    prefixes = [key_prefixes(r) for r in pool.runs]
    if not any(prefixes):
        return source
    keys = {
        k: key_in_source(k, prefixes[run])
        for k, run in zip(pool.ledger["key"].tolist(), pool.ledger["run"].tolist())
        if prefixes[run]
    }
    return PrefixedSource(source, keys)


def _merged_runs(
    origins: list[tuple[Origin, Pool, str | None]], notes: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """A's runs then B's, renumbered: each gets its new index's tag (tags stay unique: two
    pools both have an initial-tag), but a name a user gave (`--tag`) is kept where the other
    pool does not use it too; each records where it came from, with the prefix its names got,
    its own earlier `merged_from`, and `notes` by new index (joined, moved)."""
    runs: list[dict[str, Any]] = []
    named = [str(r.get("tag")) for _, pool, _ in origins for r in pool.runs]
    for origin, pool, prefix in origins:
        offset = len(runs)
        for r in pool.runs:
            rec = dict(r)
            rec["index"] = r["index"] + offset
            rec["report"] = f"{RUNS_DIR}/{rec['index']}/report.json"
            own = str(r.get("tag"))
            keep = not is_automatic_tag(own) and named.count(own) == 1
            rec["tag"] = own if keep else run_tag(rec["index"])
            came: dict[str, Any] = {"pool": str(origin), "index": r["index"], "tag": r.get("tag")}
            if prefix is not None:
                came["prefix"] = prefix
            before = rec.pop("previous_pool", None)
            if before:
                # The snapshot stays in the origin's history/ (C has none): say where it is
                # there, not as a path inside C that `datapool status C` would show.
                came["previous_pool"] = origin.within(str(before))
            came.update(notes.get(rec["index"], {}))
            if r.get("merged_from"):
                came["merged_from"] = r["merged_from"]
            rec["merged_from"] = came
            runs.append(rec)
    return runs


def _same_source_notes(
    pa: Origin,
    pb: Origin,
    B: Pool,
    na: int,
    keep_b: np.ndarray,
    b_labels: np.ndarray,
    stale: np.ndarray,
) -> dict[int, dict[str, Any]]:
    """Why a run's samples in C differ from what it selected, after a same-source merge: how
    many of B's picks of its files joined each of A's runs, and how many samples of each of
    B's runs went under A's runs (kept once where A held the name, else joined)."""
    to_a = (~keep_b & ~stale) | (keep_b & (b_labels < na))
    joined = np.bincount(b_labels[keep_b & (b_labels < na)], minlength=na)
    moved = np.bincount(B.labels[to_a], minlength=len(B.runs))
    notes: dict[int, dict[str, Any]] = {}
    for i in np.flatnonzero(joined[:na]).tolist():
        notes[i] = {"joined": int(joined[i]), "joined_from": str(pb)}
    for i in np.flatnonzero(moved).tolist():
        notes[i + na] = {"moved": int(moved[i]), "moved_to": str(pa)}
    return notes


def _check_merged(folder: Path) -> None:
    """C, read back from its temporary folder, must open: Pool.load's checks (the ledger's
    counts against the CSV's runs, among others), and every sample's raw file in the ledger."""
    try:
        pool = Pool.load(folder)
        keys = set(pool.ledger["key"].tolist())
        owned = image_sample_keys(pool.ledger)
        for name, key in zip(pool.filenames, source_keys(pool.filenames, owned)):
            if key not in keys:
                raise PoolCorruptError(f"sample {name!r} comes from {key!r}, not in the ledger")
    except PoolCorruptError as e:
        raise DatapoolError(
            f"merge stopped: the merged pool would not open ({e}), so nothing was written; "
            "this is a bug in datapool merge, please report it"
        ) from None


def _check_kept_out(
    pa: Origin,
    A: Pool,
    pb: Origin,
    B: Pool,
    names: list[str],
    from_b: npt.NDArray[np.bool_],
    b_names: dict[str, str],
) -> list[str]:
    """Refuse to bring back a sample one pool removed (`datapool rm`, pool/removal.py) that the
    other holds: the merged pool keeps both pools' removals, and would otherwise hold one. An
    object crop of a removed crop's name is the same sample only where its box overlaps the
    removed one's, as a run decides (keepout.same_object): another object under that name (its
    image or predictions changed) comes in: the names of those. `b_names`: B's sample names
    in C -> in B."""
    let_in: list[str] = []
    for (p, P), (q, Q) in (((pa, A), (pb, B)), ((pb, B), (pa, A))):
        out_names, out_files = kept_out(P.removals)
        if not out_names and not out_files:
            continue
        theirs = from_b if Q is B else ~from_b
        held = [n for n, t in zip(names, theirs.tolist()) if t and n in out_names]
        if held:
            own = b_names if Q is B else {}
            same = _same_objects(q.folder, Q, held, kept_out_boxes(P.removals), own)
            let_in += [n for n in held if n not in same]
            held = same
        if out_files:
            keys = source_keys(names, image_sample_keys(Q.ledger))
            held += [n for n, k, t in zip(names, keys, theirs.tolist()) if t and k in out_files]
        if held:
            shown = ", ".join(repr(n) for n in held[:3]) + (", ..." if len(held) > 3 else "")
            raise ConfigError(
                f"pool {q} holds {counted(len(held), 'sample')} that `datapool rm` removed from "
                f"pool {p} "
                f"({shown}): remove them from {q} too (`datapool rm {q} NAME...`), or let them "
                f"in again (`datapool rm {p} --forget NAME...`); nothing was merged"
            )
    return let_in


def _same_objects(
    path: Path, Q: Pool, held: list[str], removed: dict[str, list[float]], own: dict[str, str]
) -> list[str]:
    """Of `held` (names in C of pool Q's samples that the other pool removed), those that are
    the removed sample: all but the object crops whose box in Q (its strategy inputs) holds
    another object than the removed crop's box. `own`: a name in C -> Q's, where they differ."""
    from datapool.pool.local import LocalSession
    from datapool.pool.removal import crop_boxes

    asked = [own.get(n, n) for n in held if n in removed]
    boxes = crop_boxes(LocalSession(path, Q, []), asked) if asked else {}
    return [
        n
        for n in held
        if n not in removed
        or own.get(n, n) not in boxes
        or same_object(boxes[own.get(n, n)], removed[n])
    ]


def merge_pools(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    into: str | os.PathLike[str],
    reselect: int | None = None,
    config: S3Settings | None = None,
) -> MergeResult:
    """Merge pools `a` and `b` into the new pool `into` (see the module doc); `config`: the
    endpoint and retries of those in S3."""
    sa, sb, dest = _pool_arg(a, "A"), _pool_arg(b, "B"), _pool_arg(into, "--into")
    if reselect is not None and (
        isinstance(reselect, bool) or not isinstance(reselect, (int, np.integer)) or reselect < 1
    ):
        raise ConfigError(f"reselect must be an integer >= 1, got {reselect!r}")
    stores = {}
    for what, spec in (("A", sa), ("B", sb), ("--into", dest)):
        with _said_as(what):
            stores[what] = open_store(spec, config)
    with _said_as("--into"):
        stores["--into"].check_new()
    _check_apart(*(stores[what].location for what in ("A", "B", "--into")))
    with contextlib.ExitStack() as stack:
        (pa, A), (pb, B) = _origin(stack, "A", stores["A"]), _origin(stack, "B", stores["B"])
        if scheme_of(dest):
            # Built and checked here, then committed as the bucket's pool (PoolStore.commit_new).
            built = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".datapool-")))
            result = _merge(pa, A, pb, B, built / "pool", reselect)
            with _said_as("--into"):
                stores["--into"].commit_new(built / "pool")
            result.pool = stores["--into"].location
            return result
        return _merge(pa, A, pb, B, Path(dest), reselect)


def _origin(stack: contextlib.ExitStack, what: str, store: PoolStore) -> tuple[Origin, Pool]:
    """Pool argument `what`, read from a folder (PoolStore.fetched) that is there for as long
    as `stack`, and its pool."""
    if not isinstance(store.location, str):  # a folder: read in place, as ever
        folder = stack.enter_context(store.fetched())
        return Origin(folder, str(folder)), _read_locked(stack, folder)
    with _said_as(what):
        folder = stack.enter_context(store.fetched())
    with _said_as(what, folder, store.location):
        return Origin(folder, store.location), _read_locked(stack, folder)


def _check_apart(sa: Path | str, sb: Path | str, dest: Path | str) -> None:
    """A and B (the stores' locations) are two pools, and C lies apart from both."""

    def where(location: Path | str) -> str:
        """A location as the places it names are compared: a folder resolved, a URL (which the
        store wrote as a folder, s3://bucket/prefix/) as it is."""
        if isinstance(location, str):
            return location
        return str(location.resolve()).rstrip(os.sep) + os.sep

    if where(sa) == where(sb):
        raise ConfigError(f"cannot merge {sa} with itself")
    for name, pool in (("A", sa), ("B", sb)):
        if where(dest).startswith(where(pool)):  # (a pool's files around the new one)
            raise ConfigError(
                f"--into {dest} is inside pool {name} ({pool}); merge into a folder apart from "
                "both pools"
            )
    if not isinstance(dest, str):  # nor inside a third pool, whose undo and rm would delete it
        around = pool_above(dest)
        if around is not None:
            raise ConfigError(
                f"--into {dest} is inside the datapool pool {around}; merge into a folder "
                "apart from every pool (a pool's folder is its own: its undo and rm delete its "
                "runs' folders)"
            )


def _merge(
    pa: Origin, A: Pool, pb: Origin, B: Pool, dest: Path, reselect: int | None
) -> MergeResult:
    """Merge pools A and B (read from `pa` and `pb`) into the new folder `dest` (checked new
    or empty)."""
    from datapool.select.fps import select_diverse

    if A.model is None or B.model is None:
        empty = pa if A.model is None else pb
        raise ConfigError(f"pool {empty} has no runs yet; there is nothing to merge")
    if not A.model.same_space(B.model):
        raise ModelMismatchError(_mismatch(pa, A.model, pb, B.model))
    kinds = [crop_modes(A.runs), crop_modes(B.runs)]
    if kinds[0] != kinds[1]:  # every later run on the merged pool would be refused
        held = [
            "whole images and video frames" if k == {""} else f"object crops ({', '.join(k)})"
            for k in kinds
        ]
        raise ConfigError(
            f"pool A ({pa}) holds {held[0]} and pool B ({pb}) {held[1]}: a pool holds one kind "
            "(docs/selection.md, 'Crop selection'); merge pools of the same kind"
        )

    same_source = len(_sources(A) | _sources(B)) == 1
    na = len(A.runs)
    prefix, b_names, b_ledger, renamed_files = None, list(B.filenames), B.ledger.copy(), 0
    keep_b = np.ones(len(B), dtype=bool)
    stale = np.zeros(len(B), dtype=bool)
    b_labels = B.labels + na
    notes: dict[int, dict[str, Any]] = {}
    if same_source:
        # Every sample either pool selected; a name both hold is A's. A file both processed
        # keeps A's ledger row.
        a_names = set(A.filenames)
        keep_b = np.array([n not in a_names for n in b_names], dtype=bool)
        stale = _stale_in_b(A, B) & keep_b
        keep_b &= ~stale
        b_ledger = b_ledger[~b_ledger["key"].isin(set(A.ledger["key"].tolist()))]
        b_labels = _under_a_runs(A, B, b_labels)
        notes = _same_source_notes(pa, pb, B, na, keep_b, b_labels, stale)
    else:
        prefix, b_names, b_ledger, renamed_files = _prefix_clashes(pb, A, B)
    runs = _merged_runs([(pa, A, None), (pb, B, prefix)], notes)
    b_ledger = b_ledger.assign(run=b_ledger["run"] + na)

    filenames = A.filenames + [n for n, k in zip(b_names, keep_b) if k]
    embeddings = np.concatenate([A.embeddings, B.embeddings[keep_b]])
    labels = np.concatenate([A.labels, b_labels[keep_b]])
    from_b = np.concatenate([np.zeros(len(A), bool), np.ones(int(keep_b.sum()), bool)])
    let_in = _check_kept_out(pa, A, pb, B, filenames, from_b, dict(zip(b_names, B.filenames)))
    union = len(filenames)
    if reselect is not None:
        picks = select_diverse(embeddings, min(reselect, len(filenames)), check_unit_rows=False)
        order = np.sort(picks.indices)
        filenames = [filenames[i] for i in order]
        embeddings, labels, from_b = embeddings[order], labels[order], from_b[order]

    import pandas as pd

    ledger = pd.concat([A.ledger, b_ledger], ignore_index=True).sort_values(
        "key", ignore_index=True
    )
    if reselect is not None or same_source:
        # n_selected counts each file's samples in the pool: reselection dropped some, and a
        # file both pools processed may now hold samples from each.
        counts: dict[str, int] = {}
        for k in source_keys(filenames, image_sample_keys(ledger)):
            counts[k] = counts.get(k, 0) + 1
        ledger["n_selected"] = [counts.get(k, 0) for k in ledger["key"].tolist()]
    files = pool_files(
        Rows(filenames, [embeddings], [labels]),
        ledger,
        runs,
        A.model,
        min_reader_of(A.written, B.written),
        [*A.removals, *B.removals],
    )
    renames = dict(zip(B.filenames, b_names)) if prefix is not None else {}
    files.update(_renamed_thumbnails(pb.folder, B, renames, na))
    inputs = _merged_inputs(pa.folder, pb.folder, dict(zip(B.filenames, b_names)), filenames)
    if inputs is not None:
        files[STRATEGY_INPUTS_NAME] = inputs
    create_pool(
        dest,
        files,
        [(pa.folder / RUNS_DIR / str(i), i) for i in range(na)]
        + [(pb.folder / RUNS_DIR / str(i), i + na) for i in range(len(B.runs))],
        without_thumbnails=frozenset(range(na, na + len(B.runs))) if renames else frozenset(),
        check=_check_merged,
    )
    return MergeResult(
        dest,
        len(filenames),
        int((~from_b).sum()),
        int(from_b.sum()),
        sum(n != o for n, o in zip(b_names, B.filenames)),
        int(len(B) - keep_b.sum() - stale.sum()),
        prefix,
        size_a=len(A),
        size_b=len(B),
        reselect_dropped=union - len(filenames),
        renamed_files=renamed_files,
        stale=int(stale.sum()),
        let_in=[n for n in let_in if n in set(filenames)],
    )


def _renamed_thumbnails(
    pb: Path, B: Pool, renames: dict[str, str], offset: int
) -> dict[str, bytes]:
    """B's thumbnail segments (pool/thumbnails.py) under the names B's samples have in C, one
    per run folder, when a merge prefixed some: a copied segment would give B's thumbnail to
    A's sample of the same name."""
    from datapool.pool import thumbnails
    from datapool.pool.local import read_thumbnails

    if not renames:
        return {}
    have = read_thumbnails(pb, set(B.filenames))
    out = {}
    for run in range(len(B.runs)):
        names = [n for n, label in zip(B.filenames, B.labels.tolist()) if label == run]
        thumbs = {renames[n]: have[n] for n in names if n in have}
        if thumbs:
            out[f"{RUNS_DIR}/{run + offset}/{THUMBNAILS_NAME}"] = thumbnails.pack(thumbs)
    return out


def _merged_inputs(
    pa: Path, pb: Path, b_names: dict[str, str], filenames: list[str]
) -> bytes | None:
    """C's strategy_inputs.json: A's and B's rows (B's under their names in C) of the samples C
    holds, A's first; None when neither pool has the file."""
    import json

    from datapool.pool import inputs

    def rows(path: Path) -> dict[str, Any] | None:
        f = path / STRATEGY_INPUTS_NAME
        return json.loads(f.read_bytes()).get("samples", {}) if f.exists() else None

    a_rows, b_rows = rows(pa), rows(pb)
    if a_rows is None and b_rows is None:
        return None
    keep = set(filenames)
    samples = {n: v for n, v in (a_rows or {}).items() if n in keep}
    for n, v in (b_rows or {}).items():
        if b_names.get(n, n) in keep:
            samples.setdefault(b_names.get(n, n), v)
    return inputs.merged(None, keep, samples)


def merge(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    into: str | os.PathLike[str],
    reselect: int | None = None,
    config: S3Settings | None = None,
) -> Pool:
    """Merge pools `a` and `b` (same model) into the new pool `into` and open it (`datapool.merge`;
    see the module doc for the rules: renumbered labels, name prefixes, reselection)."""
    merge_pools(a, b, into, reselect=reselect, config=config)
    return Pool.open(into, config)
