"""The pool on disk: a folder that holds the selected samples and everything needed to grow it.

    datapool_latest.csv   filenames, embeddings and labels (the run that added each sample)
    runs.json             the runs: index, tag, times, configuration, counts
    ledger.csv            every raw file processed: key, size, mtime_ns, run, status, samples
    model.json            the fingerprint of the model that made the embeddings
    runs/<index>/         report.json and embedding_view.png of each run
    .sidecar/             the CSV's rows in binary, mapped on open (a cache; see sidecar.py)
    history/              earlier pools set aside by --process-all
    .datapool.lock        the lock file (a flock; see lock.py)

Files change only through an all-or-nothing commit (see pool/journal.py).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.errors import ConfigError, PoolCorruptError
from datapool.fingerprint import ModelFingerprint
from datapool.pool import format as _format
from datapool.pool import journal as _journal
from datapool.pool import sidecar
from datapool.pool.keepout import REMOVALS_FORMAT, REMOVALS_KEY, check_removals, kept_out
from datapool.pool.layout import (
    CSV_NAME,
    FORMAT_VERSION,
    HISTORY_DIR,
    LEDGER_NAME,
    LOCK_NAME,
    MODEL_NAME,
    PENDING_SUFFIX,
    RUNS_DIR,
    RUNS_NAME,
    is_local_state,
    pool_above,
)
from datapool.pool.ledger import empty_ledger, read_ledger
from datapool.pool.lock import PoolLock
from datapool.specs import normal_spec, path_arg, scheme_of

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from datapool.config import S3Settings


@dataclass(repr=False)
class Pool:
    """A pool's contents, read into memory.

    `embeddings` is an (n, d) float32 array of unit rows (a read-only np.memmap of the binary
    sidecar when the pool was opened through it), `filenames` and `labels` (the index of the run
    that added each sample) are aligned with it. `runs` is the list stored in runs.json.
    """

    path: Path
    filenames: list[str]
    embeddings: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    runs: list[dict[str, Any]]
    ledger: pd.DataFrame
    model: ModelFingerprint | None
    recovered: str | None = field(default=None, repr=False)
    # What runs.json records of the datapool that wrote the pool (pool/format.py); None for a
    # pool written before the record existed, or an empty one.
    written: _format.Recorded | None = field(default=None, repr=False)
    # runs.json's removals (`datapool rm`, pool/removal.py): the keep-out record.
    removals: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # runs.json's `decoder_checked` (pool/next_run.py): the check of an older decoder's files
    # that a run with nothing new to add recorded; None where none did.
    checked: dict[str, Any] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.filenames)

    def __repr__(self) -> str:
        """One line, whatever the pool's size (not its every name and embedding row)."""
        dim = f", {self.embeddings.shape[1]}-d" if len(self) else ""
        runs = f"{len(self.runs)} run{'s' * (len(self.runs) != 1)}"
        return (
            f"Pool({os.fspath(self.path)!r}, {len(self)} samples{dim}, {runs}, "
            f"{len(self.ledger)} files in the ledger)"
        )

    @property
    def dim(self) -> int | None:
        return None if self.model is None else self.model.output_dim

    @staticmethod
    def is_pool(path: str | os.PathLike[str]) -> bool:
        return (Path(path) / RUNS_NAME).exists()

    @classmethod
    def open(cls, path: str | os.PathLike[str], s3: S3Settings | None = None) -> Pool:
        """Open an existing pool: a folder, or s3://bucket/prefix. An interrupted commit of a
        folder's pool is first finished or undone, under the lock. A pool in S3 is read through
        its local copy, brought up to date (`path` is then that copy's folder); `s3`: the
        endpoint and retries (default: AWS_ENDPOINT_URL and boto3's chain, as the CLI's)."""
        path = path_arg("pool", path)
        if scheme_of(os.fspath(path)):
            # Through the store registry (pool/store.py imports this module, so it is named
            # here, not imported): before, Path("s3://b/p") became "s3:/b/p", "no such folder".
            stores = importlib.import_module("datapool.pool.store")
            pool: Pool = stores.open_store(path, s3).pool()
            return pool
        root = Path(path)
        if not cls.is_pool(root):
            if root.is_dir() and _journal.needs_recovery(root):
                check_readable(root)
                with PoolLock(root):
                    _journal.recover(root)
            if not cls.is_pool(root):
                _check_runs_json_present(root)
                if is_uncommitted_pool(root):
                    return cls.empty(root)  # a first run that never committed: an empty pool
                raise not_a_pool(root)
        recovered = None
        if _journal.needs_recovery(root):
            check_readable(root)
            with PoolLock(root):
                recovered = _journal.recover(root)
        pool = cls.load(root)
        pool.recovered = recovered
        return pool

    @classmethod
    def empty(cls, path: str | os.PathLike[str]) -> Pool:
        return cls(
            path=Path(path),
            filenames=[],
            embeddings=np.zeros((0, 0), dtype=np.float32),
            labels=np.zeros(0, dtype=np.int64),
            runs=[],
            ledger=empty_ledger(),
            model=None,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Pool:
        """Read and validate the files of a pool (no recovery; the caller holds the lock or reads)."""
        root = Path(path)
        _check_runs_json_present(root)
        doc = _read_json(root / RUNS_NAME)
        # Before any other check: a newer datapool's pool is refused as that, not as malformed.
        written = _format.recorded(doc, str(root / RUNS_NAME))
        runs = _runs_of(doc, root / RUNS_NAME)
        model = _read_model(root / MODEL_NAME)
        if model is None:
            if runs:
                raise PoolCorruptError(f"{root / MODEL_NAME}: missing, but the pool has runs")
            return cls.empty(root)
        ledger_path = root / LEDGER_NAME
        if not ledger_path.exists():
            raise PoolCorruptError(
                f"{ledger_path}: the ledger is missing, so datapool cannot tell which raw files "
                "were processed; restore it, or rebuild the pool with --process-all"
            )
        ledger = read_ledger(ledger_path, written)
        # Through the binary sidecar (sidecar.py): mapped, not parsed, when it matches the CSV.
        try:
            filenames, embeddings, labels = sidecar.load(root / CSV_NAME, dim=model.output_dim)
        except PoolCorruptError as e:
            raise _with_csv_columns_hint(e, root / CSV_NAME, written) from None
        if labels.size and int(labels.max()) >= len(runs):
            line = int(labels.argmax()) + 2
            raise PoolCorruptError(
                f"{root / CSV_NAME}: label {int(labels.max())} (near line {line}) names a run "
                f"that {RUNS_NAME} does not have ({len(runs)} runs)"
            )
        _check_ledger_matches_csv(root, labels, ledger, len(runs))
        removals = check_removals(
            doc.get(REMOVALS_KEY) if isinstance(doc, dict) else None, str(root / RUNS_NAME)
        )
        from datapool.pool.next_run import CHECKED_KEY, checked_record

        checked = checked_record(
            doc.get(CHECKED_KEY) if isinstance(doc, dict) else None,
            len(runs),
            str(root / RUNS_NAME),
        )
        return cls(
            root,
            filenames,
            embeddings,
            labels,
            runs,
            ledger,
            model,
            written=written,
            removals=removals,
            checked=checked,
        )

    def run_index(self, which: int | str) -> int:
        """The index of the run `which` names: its index (an int, or a str of digits) or its tag
        (`initial-tag`, `run-3`, a `--tag` name); ConfigError naming the runs there are."""
        tags = [str(r.get("tag")) for r in self.runs]
        digits = isinstance(which, str) and which.isascii() and which.isdigit()
        index = int(which) if isinstance(which, int) or digits else None
        if isinstance(which, str) and which in tags:
            tagged = tags.index(which)
            # A tag of digits (made before they were refused) that is another run's index.
            if index is not None and index != tagged and 0 <= index < len(self.runs):
                raise ConfigError(
                    f"--run {which}: run {index} has that index and run {tagged} that tag; "
                    f"give --run {tags[index]} or --run {tagged}"
                )
            index = tagged
        if index is None:
            index = -1
        if not 0 <= index < len(self.runs):
            last = len(self.runs) - 1
            recent = ", ".join(str(r.get("tag")) for r in self.runs[-5:])
            have = (
                "no runs"
                if not self.runs
                else f"one run, 0 ({recent})"
                if last == 0
                else f"runs 0..{last} ({'..., ' if last >= 5 else ''}{recent})"
            )
            raise ConfigError(f"--run {which}: the pool has {have}")
        return index

    def _sources(self) -> list[str]:
        """Where the pool's runs read: since the last run that moved the source
        (`--source-moved`), whose old place `status` listed as one more source."""
        runs = self.runs[since_source_moved(self.runs) :]
        return sorted({normal_spec(str(r["source"])) for r in runs if r.get("source")})

    def summary(self) -> dict[str, Any]:
        """What `datapool status` shows."""
        from datapool.pool.next_run import next_run

        status_counts = self.ledger["status"].value_counts().to_dict() if len(self.ledger) else {}
        per_run = np.bincount(self.labels, minlength=len(self.runs)).tolist() if self.runs else []
        history = self.path / HISTORY_DIR
        crops = crop_mode(self.runs[-1].get("config") or {}) if self.runs else ""
        sources = self._sources()
        latest = sources_now(self.runs)[-1] if self.runs else ""
        return {
            "pool": str(self.path),
            "size": len(self),
            "dim": self.dim,
            # what its samples are: '' (whole images and video frames) or the flags of its
            # object crops (crop selection), as its runs recorded them
            "crops": crops,
            "empty": not self.runs,
            "model": None if self.model is None else self.model.to_json(),
            "sources": sources,
            "ledger": {
                "files": len(self.ledger),
                "ok": int(status_counts.get("ok", 0)),
                "skipped": int(sum(v for k, v in status_counts.items() if k != "ok")),
            },
            "runs": [
                {
                    "index": r["index"],
                    "tag": r["tag"],
                    "finished_at": r.get("finished_at"),
                    "source": r.get("source"),
                    "selected": r.get("counts", {}).get("selected"),
                    "moved": r.get("counts", {}).get("moved", 0),
                    "stop_reason": r.get("stop_reason"),
                    "samples_in_pool": per_run[r["index"]] if r["index"] < len(per_run) else 0,
                    "previous_pool": r.get("previous_pool"),
                    "merged_from": r.get("merged_from"),
                }
                for r in self.runs
            ],
            "history": sorted(f"{HISTORY_DIR}/{p.name}" for p in history.iterdir() if p.is_dir())
            if history.is_dir()
            else [],
            # what a plain run reads again although unchanged, as far as the pool tells
            "next_run": next_run(self.runs, self.ledger, latest, crops, self.checked),
            # the check of an older decoder's files that a run with nothing new recorded
            "decoder_checked": self.checked,
            # `datapool rm` (pool/removal.py): each removal, and what runs keep out since
            "removals": [
                {
                    "at": e.get("at"),
                    "forget": bool(e.get("forget")),
                    "samples": e.get("samples", 0),
                    "names": len(e.get("names") or ()),
                    "files": len(e.get("files") or ()),
                    "reason": e.get("reason") or "",
                }
                for e in self.removals
            ],
            "kept_out": dict(zip(("samples", "files"), (len(s) for s in kept_out(self.removals)))),
            # who wrote the pool (pool/format.py); None: a pool from before the record
            "written_by": None if self.written is None else self.written.written_by,
            "pool_format": None if self.written is None else self.written.pool_format,
        }

    def samples(
        self, run: int | None = None, read: Callable[[str], bytes | None] | None = None
    ) -> list[dict[str, Any]]:
        """What `datapool ls` shows: each sample (of run `run`, or all) with the run that added
        it, its source (where its run's files are now: `sources_now`) and source file (the key in
        that source: without the prefix a merge gave a clashing name), its frame index (videos), when its run finished, and its
        min-distance when it was picked (from the run's report; None where unknown). `read`
        gives a committed pool file's bytes by its pool-relative name (PoolStore.read: a
        bucket pool's local copy holds no run reports); by default, from the pool's folder."""
        return list(self.iter_samples(run, read))

    def iter_samples(
        self, run: int | None = None, read: Callable[[str], bytes | None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """`samples`, one at a time: `datapool ls` writes each as it comes, so a pool of
        200,000 samples is never held as 200,000 dicts and their whole text."""
        from datapool.naming import crop_key_of, frame_index, source_keys
        from datapool.pool.ledger import image_sample_keys

        read = read or (lambda name: _read_or_none(self.path / name))
        keys = source_keys(self.filenames, image_sample_keys(self.ledger))
        now, prefixes = sources_now(self.runs), [key_prefixes(r) for r in self.runs]
        distances: dict[int, dict[str, float | None]] = {}
        renames: list[tuple[int, dict[str, str]]] | None = None
        for name, key, label in zip(self.filenames, keys, self.labels.tolist()):
            if run is not None and label != run:
                continue
            if label not in distances:
                distances[label] = _picked_distances(read, self.runs[label])
            # A merge's prefix (`pB/img.jpg`) is the pool's name for the file, not the source's;
            # the run's report names its picks as the pool they came from did.
            picked_as = key_in_source(name, prefixes[label])
            if picked_as not in distances[label]:  # a sample of a file moved since: its old name
                renames = _renames(read, self.runs) if renames is None else renames
                for index, old_names in renames:
                    if index > label:
                        picked_as = old_names.get(picked_as, picked_as)
            yield (
                {
                    "filename": name,
                    "run": label,
                    "tag": self.runs[label].get("tag"),
                    "source": now[label] or None,
                    "source_file": key_in_source(key, prefixes[label]),
                    "frame": None if key == name else frame_index(crop_key_of(name) or name, key),
                    "added_at": self.runs[label].get("finished_at"),
                    "min_distance": distances[label].get(picked_as),
                }
            )


def check_readable(root: Path) -> None:
    """Before an interrupted commit is finished or undone: refuse, as Pool.load does, a pool that
    a newer datapool wrote in a format this one cannot read (pool/format.py), by its committed
    runs.json or the one the commit staged. (Its journal may be one this datapool cannot read.)"""
    for path in (root / RUNS_NAME, root / (RUNS_NAME + PENDING_SUFFIX)):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # none, or unreadable: Pool.load says which
        _format.recorded(doc, str(root / RUNS_NAME))


def not_a_pool(root: Path) -> ConfigError:
    """The error for a folder given as a pool that holds none (or is not there)."""
    if not root.exists():
        return ConfigError(f"no pool at {root}: there is no such folder")
    return ConfigError(f"{root} is not a datapool pool (no {RUNS_NAME} in it){_pool_hint(root)}")


def _pool_hint(root: Path) -> str:
    """What a folder given as a pool holds instead, from its first entries (a source folder
    given as the pool: `datapool status SOURCE`): the pools in its subfolders, else that it
    holds images or videos. At most 1,000 entries and 1,000 file names are looked at."""
    from itertools import islice

    from datapool.naming import media_kind

    above = pool_above(root)
    if above is not None:  # POOL/runs, POOL/runs.json
        what = "a folder" if root.is_dir() else "a file"
        return f"; it is {what} inside the pool {above}: give the pool's folder"
    if not root.is_dir():
        return "; it is a file: give the pool's folder"
    try:
        with os.scandir(root) as it:
            entries = list(islice(it, 1000))
    except OSError:
        return ""
    pools = sorted(e.name for e in entries if e.is_dir() and (Path(e.path) / RUNS_NAME).is_file())
    if pools:
        shown = ", ".join(str(root / p) for p in pools[:3]) + (", ..." if len(pools) > 3 else "")
        return f"; the pool{'s' if len(pools) > 1 else ''} in it: {shown}"
    if any(media_kind(name) for name in islice(_names_under(root), 1000)):
        return (
            "; it holds images or videos (a source folder?): give the folder a run was given "
            "as --pool"
        )
    return ""


def _names_under(root: Path) -> Iterator[str]:
    """The names of the files under `root`, top folder first (hidden folders not entered)."""
    for _, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from files


def key_prefixes(run: dict[str, Any]) -> tuple[str, ...]:
    """The prefixes that merges gave the ledger keys and sample names of the run record `run`,
    the latest merge's first (each merge records the run's earlier `merged_from` in its own)."""
    out = []
    origin = run.get("merged_from")
    while isinstance(origin, dict):
        if origin.get("prefix"):
            out.append(str(origin["prefix"]))
        origin = origin.get("merged_from")
    return tuple(out)


def key_in_source(key: str, prefixes: Sequence[str]) -> str:
    """The key of a pool's raw file in its run's source: `key` with the merges' prefixes of its
    run (`key_prefixes`) taken off where it has them. A merge picks a prefix that no name of
    either pool starts with, so one that a key starts with is one the merge added."""
    for prefix in prefixes:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def sources_now(runs: list[dict[str, Any]]) -> list[str]:
    """Where each run's samples are read now: the source it recorded, or for a run before the
    last run that moved the source (`run --source-moved`), that run's ('' where a run records
    none). (Export read the place the files had left, and stopped: 'source folder ... does not
    exist'.)"""
    out = [str(r.get("source") or "") for r in runs]
    moved = since_source_moved(runs)
    if moved:
        out[:moved] = [out[moved]] * moved
    return out


def since_source_moved(runs: list[dict[str, Any]]) -> int:
    """The index of the last run that moved the pool's source (`run --source-moved`), 0 where
    none did: the runs from it on name where the pool's files are now."""
    moved = [i for i, r in enumerate(runs) if (r.get("config") or {}).get("source_moved")]
    return moved[-1] if moved else 0


def crop_mode(config: dict[str, Any]) -> str:
    """A run's crop selection in its flags' words, from its recorded config ('' for whole images
    and video frames): a pool holds one kind (see docs/selection.md, "Crop selection")."""
    import shlex

    task = config.get("crops")
    if not task:
        return ""
    # quoted as a shell needs it: the flags are given to copy (`--crops 'my task'`)
    return f"--crops {shlex.quote(str(task))} --crop-padding {config.get('crop_padding', 0.1):g}"


def crop_modes(runs: list[dict[str, Any]]) -> set[str]:
    """The crop modes of a pool's runs (one, or none for a pool without runs)."""
    return {crop_mode(run.get("config") or {}) for run in runs}


def is_uncommitted_pool(root: Path) -> bool:
    """A folder that holds only the lock (and other local state) of a first run that never
    committed (killed early, failed, an interrupted demo): an empty pool."""
    try:
        names = [p.name for p in root.iterdir()]
    except OSError:
        return False
    return LOCK_NAME in names and all(
        is_local_state(n) or (n == RUNS_DIR and not any((root / n).iterdir())) for n in names
    )


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _picked_distances(
    read: Callable[[str], bytes | None], run: dict[str, Any]
) -> dict[str, float | None]:
    """sample name -> min-distance when picked, from a run's report.json ({} when unreadable)."""
    try:
        report = _run_report(read, run)
        return {str(s["filename"]): s.get("min_distance") for s in report.get("selected", [])}
    except (TypeError, KeyError, AttributeError):
        return {}


def _renames(
    read: Callable[[str], bytes | None], runs: list[dict[str, Any]]
) -> list[tuple[int, dict[str, str]]]:
    """(run index, new sample name -> old) of each run that renamed samples of moved files
    (pool/moves.py), the latest first: only their reports are read."""
    out = []
    for index in reversed(range(len(runs))):
        if not (runs[index].get("counts") or {}).get("renamed"):
            continue
        try:
            moved = _run_report(read, runs[index]).get("moved") or {}
            out.append((index, {str(new): str(old) for old, new in moved.items()}))
        except (TypeError, AttributeError):
            continue
    return out


def _run_report(read: Callable[[str], bytes | None], run: dict[str, Any]) -> dict[str, Any]:
    """A run's report.json ({} when unreadable)."""
    try:
        data = read(str(run.get("report", "")))
        report = json.loads(data.decode("utf-8")) if data else {}
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _check_runs_json_present(root: Path) -> None:
    """runs.json is what makes a folder a pool. Without it but with the other pool files, a run
    would start an empty pool and overwrite them: refuse instead."""
    if (root / RUNS_NAME).exists():
        return
    present = [n for n in (CSV_NAME, LEDGER_NAME, MODEL_NAME) if (root / n).exists()]
    if present:
        raise PoolCorruptError(
            f"{root / RUNS_NAME}: missing, but the folder holds {', '.join(present)}; restore "
            f"{RUNS_NAME} (a copy may be under {HISTORY_DIR}/), or move the pool files away to "
            "start a new pool"
        )


def _check_ledger_matches_csv(
    root: Path, labels: npt.NDArray[np.int64], ledger: pd.DataFrame, n_runs: int
) -> None:
    """Each ledger row counts the samples its file has in the pool (n_selected), all added by
    the row's run. So per run, the ledger's counts and the CSV's labels agree; a CSV that lost
    whole rows (truncated at a line break) or gained some fails here rather than letting the
    ledger mark files as done whose samples are gone."""
    in_csv = np.bincount(labels, minlength=n_runs) if labels.size else np.zeros(n_runs, np.int64)
    runs = ledger["run"].to_numpy(np.int64)
    if runs.size and (runs.min() < 0 or runs.max() >= n_runs):
        raise PoolCorruptError(
            f"{root / LEDGER_NAME}: run {int(runs.max())} is not in {RUNS_NAME} ({n_runs} runs)"
        )
    in_ledger = np.bincount(
        runs, weights=ledger["n_selected"].to_numpy(np.float64), minlength=n_runs
    ).astype(np.int64)
    bad = np.flatnonzero(in_csv[: len(in_ledger)] != in_ledger[: len(in_csv)])
    if bad.size:
        r = int(bad[0])
        raise PoolCorruptError(
            f"{root / CSV_NAME}: holds {int(in_csv[r])} samples of run {r}, but "
            f"{LEDGER_NAME} records {int(in_ledger[r])} selected in that run (rows lost, or "
            "edited by hand); restore the pool from a backup or history/, or rebuild it with "
            "--process-all"
        )


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:
        raise PoolCorruptError(f"{path}: not UTF-8 text: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PoolCorruptError(
            f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}"
        ) from None


def _with_csv_columns_hint(
    e: PoolCorruptError, csv: Path, written: _format.Recorded | None
) -> PoolCorruptError:
    """The CSV reader's error, and where the CSV's header holds every column of today's (any
    dimension) and more, which ones and who may have written them (pool/format.py)."""
    import csv as csvmod

    try:
        with open(csv, encoding="utf-8", newline="") as f:
            header = next(csvmod.reader([f.readline()]), [])
    except (OSError, UnicodeDecodeError, csvmod.Error):
        return e
    dim = sum(h.startswith("embedding_") for h in header)
    from datapool.pool.csvfile import header as csv_header

    extra = _format.extra_columns(header, csv_header(dim))
    if not extra:
        return e
    return PoolCorruptError(
        f"{csv}: line 1: the pool CSV has columns this datapool does not know "
        f"({', '.join(extra)}){_format.newer_writer_hint(written)}"
    )


def _runs_of(data: Any, path: Path) -> list[dict[str, Any]]:
    """The runs list of the parsed runs.json `data` (None: no file), checked."""
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise PoolCorruptError(f"{path}: line 1: expected an object with a 'runs' list")
    if data.get("format_version") != FORMAT_VERSION:
        raise PoolCorruptError(
            f"{path}: format_version {data.get('format_version')!r} is not one this datapool reads "
            f"({FORMAT_VERSION})"
        )
    runs = data["runs"]
    for i, r in enumerate(runs):
        if not isinstance(r, dict) or r.get("index") != i:
            raise PoolCorruptError(f"{path}: run entry {i} is malformed (its index must be {i})")
    return runs


def _read_model(path: Path) -> ModelFingerprint | None:
    data = _read_json(path)
    if data is None:
        return None
    try:
        return ModelFingerprint.from_json(data)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise PoolCorruptError(f"{path}: malformed model fingerprint: {e!r}") from None


def runs_json_bytes(
    runs: list[dict[str, Any]],
    min_reader: int = 0,
    removals: list[dict[str, Any]] | None = None,
    checked: dict[str, Any] | None = None,
) -> bytes:
    """runs.json: what this datapool records of itself (pool/format.py: the minimum reader
    `min_reader` at least, what the pool recorded before), then the runs, and the removals
    (`datapool rm`, pool/removal.py) where there are any: a datapool that does not know them
    would let the removed samples in again, so they raise the minimum reader. `checked`: the
    record of an older decoder's files checked by a run that added nothing (pool/next_run.py
    CHECKED_KEY), which an older datapool may ignore (it checks them again)."""
    if removals:
        min_reader = max(min_reader, REMOVALS_FORMAT)
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        **_format.record(min_reader),
        "runs": runs,
    }
    if removals:
        doc[REMOVALS_KEY] = removals
    if checked is not None:
        from datapool.pool.next_run import CHECKED_KEY

        doc[CHECKED_KEY] = checked
    return (json.dumps(doc, indent=2) + "\n").encode()


def runs_json_forms(
    runs: list[dict[str, Any]],
    min_reader: int,
    removals: list[dict[str, Any]],
    checked: dict[str, Any] | None,
    writers: Iterable[tuple[str, int]],
) -> Iterator[bytes]:
    """runs.json of these runs, removals and `checked` (as runs_json_bytes takes them) in each
    form a datapool wrote it, each once: as each of `writers` (its `written_by` and pool format:
    pool/format.py WRITERS) wrote it, at each minimum reader from `min_reader` down to 1 (a
    commit never lowers it, but may raise it: a run that kept out a moved file records a
    removal), then as the datapools before the record wrote it (format_version and the runs).
    Which of them a pool held is for its hash to say (pool/undo.py). The runs are written once:
    a form is its record's lines, then theirs, as json.dumps(indent=2) writes the whole."""
    from datapool.pool.next_run import CHECKED_KEY

    body: dict[str, Any] = {"runs": runs}
    if removals:
        body[REMOVALS_KEY] = removals
    if checked is not None:
        body[CHECKED_KEY] = checked
    tail = json.dumps(body, indent=2)[1:] + "\n"  # '\n  "runs": [...]\n}\n'
    heads: list[dict[str, Any]] = []
    for written_by, made in writers:
        for need in range(max(min_reader, 1), 0, -1):
            head = {"format_version": FORMAT_VERSION, **_format.header(written_by, made, need)}
            if head not in heads:
                heads.append(head)
    heads.append({"format_version": FORMAT_VERSION})
    for head in heads:
        lines = "".join(f"\n  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items())
        yield ("{" + lines + tail).encode()


def model_json_bytes(model: ModelFingerprint) -> bytes:
    return (json.dumps(model.to_json(), indent=2) + "\n").encode()
