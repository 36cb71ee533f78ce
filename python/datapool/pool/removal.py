"""Removing samples from a pool (`datapool rm`), and keeping them out of later runs.

    removal = plan_removal(pool, names=["cam/a.jpg"], source_files=["clip.mp4"], reason="GDPR")
    session.remove(removal)                 # one commit, as a run's: all or nothing

A removal drops the samples' rows from the pool CSV (and so from its sidecar), from the strategy
inputs and from the thumbnail segments; it lowers the `n_selected` of their files' ledger rows,
so the ledger and the CSV still agree (Pool.load's check) and the file, unchanged, is not read
again. Each report.html that could show a removed sample's thumbnail (those of its run and of
the runs after it) is replaced by a notice: `datapool report` makes a new one of the pool. The
report.json of those runs loses every entry that names a removed sample or source file (the
picks, moves, crop boxes, skipped files: `scrub_report`), in the same commit, and records that
it did (`scrubbed`): a sample removed for privacy leaves no name in the pool outside history/.

runs.json records every removal in its `removals` list (when, why, which samples and source
files), which `datapool status` shows. The same list is the pool's keep-out record: a later run
(with --process-all, --retry-skipped or a changed file too) never adds a removed sample name again
and never reads a removed source file, and `datapool merge` refuses to bring one back. A removal
entry with `"forget": true` (`datapool rm --forget`) lets them in again. A datapool that does not
know the record would drop it and add them again, so a pool that holds one requires pool format
2 (pool/format.py) to be read.

History snapshots (history/) are pools as they were: they still hold the samples. The removal
counts those that do; `purge_history` drops them: in a bucket with the manifest's commit (their
blobs are then for `datapool gc`), in a folder right after the commit (LocalSession.remove).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from datapool.errors import ConfigError, PoolCorruptError
from datapool.pool.keepout import kept_out
from datapool.pool.layout import CSV_NAME, HISTORY_DIR

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from datapool.pool.contents import Pool

# A removal entry's key for the sums of the files it wrote (`seal`), which `datapool verify`
# checks the pool's bytes against: a datapool that does not know it keeps it (an entry is read
# as a dict, only its names and files are checked) and writes it back as it is.
SUMS_KEY = "sums"
# How many unknown names an error shows.
_SHOWN = 3
# What replaces a report.html that could show a removed sample.
WITHDRAWN_HTML = (
    "<!doctype html><meta charset=utf-8><title>datapool report withdrawn</title>"
    "<p>This report was withdrawn by <code>datapool rm</code> on {at}: it could show samples "
    "that were removed from the pool. <code>datapool report POOL</code> writes a new report of "
    "the pool as it is.</p>\n"
)


@dataclass
class Removal:
    """What one `datapool rm` commits (plan_removal): the pool's rows and ledger after it, its
    entry for runs.json, and the report folders and history snapshots it touches."""

    keep: npt.NDArray[np.bool_]  # the pool's rows that stay
    names: list[str]  # the samples removed, in pool order
    ledger: pd.DataFrame  # the whole ledger after the removal
    entry: dict[str, Any]  # appended to runs.json's removals
    removals: list[dict[str, Any]]  # runs.json's removals after it
    withdrawn_reports: list[int] = field(default_factory=list)  # runs whose report.html goes
    # snapshots that still hold the samples, or samples removed before (what --purge-history drops)
    history: list[str] = field(default_factory=list)
    holding: list[str] = field(default_factory=list)  # those of `history` holding these samples
    purge_history: bool = False  # drop `history` with the commit
    dry_run: bool = False
    pool_size: int = 0  # the samples the pool holds after it
    location: str = ""  # the pool, as its store names it

    @property
    def forget(self) -> bool:
        return bool(self.entry.get("forget"))

    @property
    def files(self) -> list[str]:
        """The source files removed (--source-file)."""
        return list(self.entry.get("files") or [])

    @property
    def at(self) -> str:
        return str(self.entry.get("at", ""))


def plan_removal(
    pool: Pool,
    names: Iterable[str] = (),
    source_files: Iterable[str] = (),
    run: int | str | None = None,
    reason: str | None = None,
    forget: bool = False,
    purge_history: bool = False,
    history: dict[str, set[str]] | None = None,
    where: str | None = None,
) -> Removal:
    """The removal of the samples `names`, of every sample of the raw files `source_files`
    (their keys as `datapool ls` shows them), and of every sample run `run` added; or, with
    `forget`, the end of keeping `names` and `source_files` out. `history` maps each snapshot
    folder to the sample names it holds. ConfigError (nothing changed) for a name or file the
    pool does not have."""
    import numpy as np

    names, files = list(dict.fromkeys(names)), list(dict.fromkeys(source_files))
    where = where or str(pool.path)
    if forget:
        return _plan_forget(pool, names, files, run, reason, where)
    if not (names or files or run is not None or purge_history):
        raise ConfigError(
            "give the samples to remove: sample names (as `datapool ls` shows them), "
            "--from-file FILE, --source-file KEY or --run N"
        )
    keys = _row_keys(pool)
    drop = np.zeros(len(pool), dtype=bool)
    row = {n: i for i, n in enumerate(pool.filenames)}
    unknown = [n for n in names if n not in row]
    drop[[row[n] for n in names if n in row]] = True
    in_ledger = set(pool.ledger["key"].tolist())
    rows_of: dict[str, list[int]] = {}
    for i, ks in enumerate(keys):
        for k in set(ks):
            rows_of.setdefault(k, []).append(i)
    for f in files:
        if f not in rows_of and f not in in_ledger:
            unknown.append(f)
        drop[rows_of.get(f, [])] = True
    if unknown:
        raise _unknown(pool, unknown, where)
    if run is not None:
        drop |= pool.labels == pool.run_index(run)
    if not drop.any() and not files and not purge_history:
        raise ConfigError(f"run {run} has no samples left in the pool {where}; nothing to remove")
    removed = [n for n, d in zip(pool.filenames, drop.tolist()) if d]
    ledger_keys = [_ledger_key(k, in_ledger) for k, d in zip(keys, drop.tolist()) if d]
    labels = pool.labels[drop]
    # the runs whose reports may name them: from the first that added a sample or read a file
    file_runs = pool.ledger.loc[pool.ledger["key"].isin(files), "run"].astype(int).tolist()
    runs_named = [*labels.tolist(), *file_runs]
    entry: dict[str, Any] = {
        "at": _now(),
        "samples": len(removed),
        "reason": reason or "",
        "runs": {str(k): v for k, v in sorted(Counter(labels.tolist()).items())},
        "names": removed,
        "files": files,
    }
    held = _held_in_history(history or {}, set(removed) | kept_out(pool.removals)[0])
    holding = _held_in_history(history or {}, set(removed))
    first = int(min(runs_named)) if runs_named else len(pool.runs)
    return Removal(
        keep=~drop,
        names=removed,
        ledger=_ledger_after(pool.ledger, Counter(ledger_keys)),
        entry=entry,
        removals=[*pool.removals, entry] if (removed or files) else list(pool.removals),
        withdrawn_reports=list(range(first, len(pool.runs))),
        history=held,
        holding=holding,
        purge_history=purge_history,
    )


def seal(
    entry: dict[str, Any],
    csv: tuple[int, int],
    ledger: bytes,
    strategy_inputs: bytes | None,
    runs_json: Callable[[], bytes],
) -> bytes:
    """runs.json's bytes with `entry` (a removal that rewrote the CSV and the ledger) holding
    the sums of what it wrote, as a run's undo record holds them: the length and CRC-32 of the
    CSV (`csv`, as CsvDigest gathered them while it was written) and of the ledger, the SHA-256
    of strategy_inputs.json (None: absent) and of runs.json itself, made with its own SHA-256
    as null (`runs_json_sha256`)."""
    from datapool.pool.layout import RUNS_NAME, STRATEGY_INPUTS_NAME

    sums: dict[str, Any] = {
        "csv": {"bytes": csv[0], "crc32": csv[1]},
        "ledger": {"bytes": len(ledger), "crc32": zlib.crc32(ledger)},
        STRATEGY_INPUTS_NAME: digest(strategy_inputs),
        RUNS_NAME: None,
    }
    entry[SUMS_KEY] = sums
    sums[RUNS_NAME] = digest(runs_json())
    return runs_json()


def runs_json_sha256(doc: dict[str, Any], entry: int) -> str | None:
    """The SHA-256 runs.json had, as `seal` made it, where it holds `doc` and removal `entry`
    sealed it (runs.json's SHA-256 in it as null; the bytes as runs_json_bytes writes them)."""
    import copy

    from datapool.pool.keepout import REMOVALS_KEY
    from datapool.pool.layout import RUNS_NAME

    doc = copy.deepcopy(doc)
    sums = doc[REMOVALS_KEY][entry].get(SUMS_KEY)
    if not isinstance(sums, dict):
        return None
    sums[RUNS_NAME] = None
    return digest((json.dumps(doc, indent=2) + "\n").encode())


def digest(data: bytes | None) -> str | None:
    """The SHA-256 of `data` as the undo records keep it (pool/undo.py digest)."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def _plan_forget(
    pool: Pool,
    names: list[str],
    files: list[str],
    run: int | str | None,
    reason: str | None,
    where: str,
) -> Removal:
    import numpy as np

    if run is not None:
        raise ConfigError("--forget takes sample names and --source-file keys, not --run")
    if not (names or files):
        raise ConfigError("--forget: give the sample names or --source-file keys to let in again")
    out_names, out_files = kept_out(pool.removals)
    unknown = [n for n in names if n not in out_names] + [f for f in files if f not in out_files]
    if unknown:
        shown = ", ".join(unknown[:_SHOWN]) + (
            f" (and {len(unknown) - _SHOWN} more)" if len(unknown) > _SHOWN else ""
        )
        raise ConfigError(
            f"--forget: {len(unknown)} of these {'is' if len(unknown) == 1 else 'are'} not kept out of "
            f"the pool {where}: "
            f"{shown}; `datapool status {where}` lists the removals; nothing was changed"
        )
    if files:  # and the samples removed with those files (a video's frames)
        from datapool.naming import source_keys
        from datapool.pool.ledger import image_sample_keys

        held = sorted(out_names - set(names))
        keys = source_keys(held, image_sample_keys(pool.ledger))
        names += [n for n, k in zip(held, keys) if k in files]
    entry = {"at": _now(), "forget": True, "reason": reason or "", "names": names, "files": files}
    return Removal(
        keep=np.ones(len(pool), dtype=bool),
        names=[],
        ledger=pool.ledger,
        entry=entry,
        removals=[*pool.removals, entry],
    )


# The report.json fields that name samples or source files (runner._report, crops._crops_report)
_NAMING_FIELDS = ("selected", "moved", "strategy_inputs_missing", "skipped", "ignored", "crops")
_NAME_KEYS = ("filename", "name", "key", "file", "sample")


def scrub_report(data: bytes, names: Iterable[str], files: Iterable[str], at: str) -> bytes | None:
    """A run's report.json without the entries that name a removed sample or source file (a
    pick, a move from or to one, a crop's box, a skipped or left-out file), with a `scrubbed`
    record of how many went and when; None where it names none of them (or is not JSON: left
    as it is). The counts stay: they are what the run did."""
    import json

    gone = set(names) | set(files)
    try:
        report = json.loads(data)
    except ValueError:
        return None
    if not isinstance(report, dict) or not gone:
        return None
    dropped = 0

    def clean(v: Any) -> Any:
        nonlocal dropped
        if isinstance(v, list):
            out = []
            for x in v:
                named = x in gone if isinstance(x, str) else _names_one(x, gone)
                dropped += named
                if not named:
                    out.append(clean(x))
            return out
        if isinstance(v, dict):
            kept = {
                k: x
                for k, x in v.items()
                if k not in gone and not (isinstance(x, str) and x in gone)
            }
            dropped += len(v) - len(kept)
            return {k: clean(x) if isinstance(x, (list, dict)) else x for k, x in kept.items()}
        return v

    for f in _NAMING_FIELDS:
        if f in report:
            report[f] = clean(report[f])
    if not dropped:
        return None
    report.setdefault("scrubbed", []).append({"at": at, "entries": dropped})
    return (json.dumps(report, indent=2) + "\n").encode()


def _names_one(x: Any, gone: set[str]) -> bool:
    """Whether a report entry (a dict) is about a removed sample or file."""
    return isinstance(x, dict) and any(
        isinstance(x.get(k), str) and x[k] in gone for k in _NAME_KEYS
    )


def crop_boxes(session: Any, names: list[str]) -> dict[str, list[float]]:
    """The pixels [x0, y0, x1, y1] each object crop among `names` was cut from, as the pool's
    strategy inputs stored them ({} for a pool of whole images, or one without them)."""
    from datapool.candidates import CROP_BOX
    from datapool.naming import crop_key_of

    crops = [n for n in names if crop_key_of(n) is not None]
    read = getattr(session, "strategy_inputs", None)
    if not crops or read is None:
        return {}
    column = read(crops)[0].get(CROP_BOX)
    if column is None:
        return {}
    return {n: list(b) for n, b in zip(crops, column.tolist()) if isinstance(b, list)}


def _row_keys(pool: Pool) -> list[tuple[str, ...]]:
    """Each row's raw file, under every name `--source-file` may give it: its ledger key, and
    its key in its run's source (without a merge's prefix)."""
    from datapool.naming import source_keys
    from datapool.pool.contents import key_in_source, key_prefixes
    from datapool.pool.ledger import image_sample_keys

    prefixes = [key_prefixes(r) for r in pool.runs]
    keys = source_keys(pool.filenames, image_sample_keys(pool.ledger))
    return [(k, key_in_source(k, prefixes[label])) for k, label in zip(keys, pool.labels.tolist())]


def _ledger_key(keys: tuple[str, ...], in_ledger: set[str]) -> str:
    return next((k for k in keys if k in in_ledger), keys[0])


def _ledger_after(ledger: pd.DataFrame, dropped: Counter[str]) -> pd.DataFrame:
    """The ledger with each file's n_selected lowered by its samples removed: the file stays
    processed (an unchanged file is not read again), with fewer samples in the pool."""
    out = ledger.copy()
    at = {k: i for i, k in enumerate(out["key"].tolist())}
    n_selected = out["n_selected"].to_numpy().copy()
    for key, n in dropped.items():
        i = at.get(key)
        if i is None or n_selected[i] < n:
            raise PoolCorruptError(
                f"ledger.csv: the file {key!r} holds {n} of the samples to remove, but the "
                "ledger records fewer; the pool was edited by hand: restore it"
            )
        n_selected[i] -= n
    out["n_selected"] = n_selected
    return out


def _unknown(pool: Pool, unknown: list[str], where: str) -> ConfigError:
    gone_names, gone_files = kept_out(pool.removals)
    earlier = sum(1 for n in unknown if n in gone_names or n in gone_files)
    shown = ", ".join(repr(n) for n in unknown[:_SHOWN]) + (
        f" (and {len(unknown) - _SHOWN} more)" if len(unknown) > _SHOWN else ""
    )
    note = f" ({earlier} of them removed earlier)" if earlier else ""
    what = (
        "is not a sample or source file" if len(unknown) == 1 else "are not samples or source files"
    )
    return ConfigError(
        f"{len(unknown)} of the names given {what} of the pool {where}: {shown}{note}; "
        f"`datapool ls {where}` lists them{_spaced(pool, unknown)}; nothing was removed"
    )


def _spaced(pool: Pool, unknown: list[str]) -> str:
    """'; did you mean ' a.jpg'? ...' where a name given is a pool name but for the spaces
    around it: `datapool ls` prints ' a.jpg' with its space after the column's, unseen, and
    --from-file strips the spaces around each line."""
    names = [*pool.filenames, *pool.ledger["key"].astype(str).tolist()]
    spaced = {n.strip(): n for n in names if n != n.strip()}
    meant = list(dict.fromkeys(spaced[u.strip()] for u in unknown if u.strip() in spaced))
    if not meant:
        return ""
    shown = ", ".join(repr(n) for n in meant[:_SHOWN])
    return (
        f"; did you mean {shown}? (spaces around a name are part of it: give it quoted as an "
        "argument, not in --from-file, which strips them)"
    )


def _held_in_history(history: dict[str, set[str]], names: set[str]) -> list[str]:
    return sorted(folder for folder, held in history.items() if held & names)


def csv_names(data: bytes) -> set[str]:
    """The sample names in a pool CSV's bytes (its first column)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline=""))
    next(reader, None)
    return {row[0] for row in reader if row}


def snapshot_folders(paths: Iterable[str]) -> dict[str, str]:
    """history/<snapshot> -> the pool-relative path of its CSV, among pool-relative `paths`."""
    out = {}
    for p in paths:
        parts = p.split("/")
        if len(parts) == 3 and parts[0] == HISTORY_DIR and parts[2] == CSV_NAME:
            out[f"{parts[0]}/{parts[1]}"] = p
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
