"""Undoing a pool's last run (`datapool undo POOL`): the pool as it was before that run, byte
for byte, so that the next run reads that run's files again as new.

    undone = undo_last_run("pool/")   # pool/store.py: under the pool's lock, one commit

A run's commit records in its report.json (`undo`, `undo_record`) what undoing it needs: the
lengths of the pool CSV and the ledger before and after it, with the SHA-256 of the bytes it
appended or the CRC-32 of a file it wrote whole (`written_sums`: undo checks the files' content
as the run left them, not only their length, at no more cost to a run than what it wrote), and
the SHA-256 of runs.json, model.json and strategy_inputs.json before and after it.
Undo then cuts the CSV and the ledger back to their lengths before the run (their bytes before
the run are still there: a run only appends), rebuilds runs.json (the runs before it, the
removals as they were, as the datapool that wrote it then wrote it: another version than this
one or the run's, where the user upgraded in between: `_runs_before`), model.json where the run
rewrote it (as the run before recorded the model: `_model_before`) and the strategy inputs
(without the run's samples), checks each against the recorded hash, and removes runs/<index>/
(its report, view, thumbnails) and the history snapshot the run made with --keep-history.
Nothing is guessed:

- only the last commit can be undone: when runs.json, the CSV or the ledger are not as the run
  left them (a `datapool rm`, a quiet record of a run that found nothing new, a merge, an edit),
  undo refuses, naming what came after;
- a run that rewrote the CSV or the ledger (it replaced the samples of changed or moved files,
  --process-all started the pool over, or the ledger was compacted) cannot be cut back: where
  its commit kept the pool before it under history/ (--keep-history, --process-all), undo puts
  that snapshot back (checked against the same record: `_from_snapshot`); otherwise it refuses,
  saying that `datapool rm --run N` removes its samples instead;
- a pool's first run is not undone (no pool was there before it: delete the pool instead), nor a
  run a datapool made before this record existed. A first run records it all the same (lengths
  before None), for `datapool verify` to check its files against (pool/verify.py); undo, this
  version's and 0.5.0's alike, refuses a first run before reading the record.

What undo cannot take back it names: the files the run exported (`run --export`) stay in the
export's destination. A pool in S3 is undone the same way, in one manifest commit.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datapool.errors import ConfigError
from datapool.pool.layout import (
    CSV_NAME,
    LEDGER_NAME,
    MODEL_NAME,
    REPORT_HTML_NAME,
    REPORT_NAME,
    RUNS_NAME,
    STRATEGY_INPUTS_NAME,
    THUMBNAILS_ADDED_PREFIX,
    run_dir,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from datapool.pool.contents import Pool

# report.json's key for the record, and the files whose hashes it keeps.
UNDO_KEY = "undo"
# The record's keys (for the CSV and the ledger) for the bytes a commit wrote; absent from
# records made before datapool checked them, whose files undo checks by length only.
APPENDED_SHA256 = "appended_sha256"  # the bytes appended: file[before:after]
WHOLE_CRC32 = "crc32"  # a file the commit wrote whole: file[0:after]
_HASHED = (RUNS_NAME, MODEL_NAME, STRATEGY_INPUTS_NAME)


def digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def written_sums(appended: bool, data: bytes) -> dict[str, Any]:
    """What an undo record keeps of the bytes a commit wrote to the CSV or the ledger, so that
    undo can tell the file is still as the commit left it, not only as long: the SHA-256 of the
    bytes appended (the run wrote them anyway: O(new)), or the CRC-32 of a file written whole
    (undo reads it whole then; a CRC-32 of a 6.9 GB CSV written anyway costs half what a
    SHA-256 would)."""
    if appended:
        return {APPENDED_SHA256: hashlib.sha256(data).hexdigest()}
    return {WHOLE_CRC32: zlib.crc32(data)}


def undo_record(
    lengths: Mapping[str, tuple[int | None, int | None, bool]],
    before: Mapping[str, bytes | None],
    after: Mapping[str, bytes | None],
    n_removals: int,
    sums: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What a run's commit records for `datapool undo` (both stores): for the CSV and the ledger
    (`lengths`, by file name), their lengths before and after the commit (None: no file before)
    and whether the commit appends to them, with what `sums` gives of the bytes the commit wrote
    there (`written_sums`); for runs.json, model.json and strategy_inputs.json, the SHA-256 of
    their bytes before the commit (`before`, None: no such file) and after it (`after`, None:
    the commit leaves the file as it is); and how many removals runs.json recorded before it
    (the run may add some: a kept-out file that moved)."""
    ends = {}
    for name, key in ((CSV_NAME, "csv"), (LEDGER_NAME, "ledger")):
        was, now, appended = lengths[name]
        ends[key] = {
            "before": was,
            "after": now,
            "appended": appended,
            **(sums or {}).get(name, {}),
        }
    files = {}
    for name, data in after.items():
        old = digest(before.get(name))
        files[name] = {"before": old, "after": old if data is None else digest(data)}
    return {**ends, "files": files, "removals": n_removals}


@dataclass
class Undo:
    """What one `datapool undo` commits (plan_undo), and what it tells the user."""

    index: int  # the run undone
    tag: str
    samples: list[str]  # the samples it added, which go
    files: list[str]  # the raw files it processed: the next run reads them again as new
    pool_size: int  # the samples the pool holds after the undo
    n_runs: int  # the runs it holds after
    csv_length: int = 0  # the CSV and the ledger are cut back to these lengths
    ledger_length: int = 0
    runs_json: bytes = b""  # runs.json as it was before the run
    model_json: bytes | None = None  # model.json as it was (None: as it is now)
    # The datapool that wrote runs.json as it was (`written_by`), where not this one: the user
    # upgraded since (None: this one, or a pool before the record).
    written_by: str | None = None
    inputs: bytes | None = None  # strategy_inputs.json as it was (None: as it is now)
    remove: list[str] = field(default_factory=list)  # pool-relative files and folders that go
    # Put back from the run's history snapshot instead (it rewrote the pool): pool-relative
    # file -> the snapshot's copy of it (a pool-relative path under history/).
    restore: dict[str, str] = field(default_factory=dict)
    snapshot: str | None = None  # the history snapshot the run made (--keep-history), which goes
    added_thumbnails: list[str] = field(default_factory=list)  # `report --thumbnails` segments
    export: str | None = None  # where the run exported to: those files stay
    exported: int | None = None  # how many it wrote there, where its report says
    # Where the run's own --export wrote, where a later `datapool export --run N` to another
    # destination replaced its record in the report (`export`): those files stay too.
    run_export: str | None = None
    # Reports of earlier runs that a later `datapool export --run M` rewrote: kept as they are
    # by an undo from a snapshot (whose copies predate that export).
    kept: list[str] = field(default_factory=list)
    location: str = ""
    dry_run: bool = False


def plan_undo(
    pool: Pool,
    read: Callable[[str], bytes | None],
    size: Callable[[str], int | None],
    listing: list[str],
    where: str,
    span: Callable[[str, int, int], Iterable[bytes]],
) -> Undo:
    """The undo of `pool`'s last run, checked against what its commit recorded; ConfigError
    (nothing changed) where the pool before the run cannot be put back exactly. `read` and
    `size` give a committed file's bytes and length by pool-relative name (None: no such file),
    `listing` the pool-relative names of all its committed files, `span(name, start, end)` the
    bytes of name[start:end] a block at a time (the CSV is never read whole into memory).
    Where the run's commit kept the pool before it under history/ and it cannot be cut back, it
    is put back from there."""
    if not pool.runs:
        raise ConfigError(f"the pool {where} has no runs: nothing to undo")
    run = pool.runs[-1]
    index, tag = len(pool.runs) - 1, str(run.get("tag", ""))
    name = f"run {index} ({tag})"
    if run.get("merged_from"):
        raise ConfigError(
            f"the last commit of the pool {where} is a merge (`datapool merge` made {name}): "
            "only a run can be undone"
        )
    kept = run.get("previous_pool")
    started_over = bool(run.get("config", {}).get("process_all"))
    if index == 0 and not (started_over and kept):
        raise ConfigError(
            f"{name} is the pool's first run: there was no pool before it to go back to; to start "
            f"over, delete the pool {where} (its folder, or every object under its prefix)"
        )
    report = _report(read(f"{run_dir(index)}/{REPORT_NAME}"))
    record = report.get(UNDO_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("csv"), dict):
        raise ConfigError(
            f"{name} was committed by a datapool that did not record how to undo it (one before "
            "`datapool undo`), so the pool before it cannot be rebuilt exactly; "
            + _instead(where, index, kept)
        )
    _check_nothing_after(pool, record, read, size, span, name, where)
    try:
        return _cut_back(pool, report, record, read, listing, name, where)
    except ConfigError:
        if not kept:
            raise
    return _from_snapshot(pool, record, read, size, listing, str(kept), name, where)


def _cut_back(
    pool: Pool,
    report: dict[str, Any],
    record: dict[str, Any],
    read: Callable[[str], bytes | None],
    listing: list[str],
    name: str,
    where: str,
) -> Undo:
    """The undo of a run that appended to the CSV and the ledger: both cut back to their
    lengths before it, runs.json and the strategy inputs rebuilt to their hashes before it."""
    from datapool.pool import inputs
    from datapool.pool.format import WRITTEN_BY_KEY, this_datapool

    index = len(pool.runs) - 1
    kept = pool.runs[-1].get("previous_pool")
    appended = all(record[k]["appended"] for k in ("csv", "ledger"))
    if not appended:
        rewritten = [
            f for f, k in ((CSV_NAME, "csv"), (LEDGER_NAME, "ledger")) if not record[k]["appended"]
        ]
        why = (
            "it replaced the samples of changed or moved files"
            if CSV_NAME in rewritten
            else "it compacted the ledger, or renamed moved files in it"
        )
        raise ConfigError(
            f"{name} rewrote {' and '.join(rewritten)} ({why}) rather than append to "
            f"{'it' if len(rewritten) == 1 else 'them'}, so the pool before it cannot be cut "
            "back; " + _instead(where, index, kept)
        )

    labels = pool.labels
    mine = labels == index
    n = int(mine.sum())
    if n and not (mine[len(labels) - n :].all()):
        raise ConfigError(
            f"the samples of {name} are not the last rows of {CSV_NAME} in the pool {where} "
            "(the file was edited): the pool before it cannot be rebuilt exactly; nothing changed"
        )
    keep = pool.filenames[: len(labels) - n]

    hashes = record["files"]
    runs_json = _runs_before(pool, record, hashes[RUNS_NAME]["before"])
    if runs_json is None:
        raise ConfigError(
            f"{RUNS_NAME} as it was before {name} cannot be rebuilt byte for byte (a datapool "
            "this one does not know wrote it: a development build, or a newer release); nothing "
            "changed; " + _instead(where, index, kept)
        )
    model_json: bytes | None = None
    if hashes[MODEL_NAME]["before"] != hashes[MODEL_NAME]["after"]:
        model_json = _model_before(pool.runs[:-1], hashes[MODEL_NAME]["before"])
        if model_json is None:
            raise ConfigError(
                f"{name} rewrote {MODEL_NAME}, and it cannot be rebuilt byte for byte as it was "
                "before (no earlier run records the model as it was); nothing changed; "
                + _instead(where, index, kept)
            )
    remove = [run_dir(index)]
    restored: bytes | None = None
    inputs_hash = hashes.get(STRATEGY_INPUTS_NAME, {"before": None, "after": None})
    if inputs_hash["before"] is None and inputs_hash["after"] is not None:
        remove.append(STRATEGY_INPUTS_NAME)  # the run made it
    elif inputs_hash["before"] != inputs_hash["after"]:
        restored = inputs.merged(read(STRATEGY_INPUTS_NAME), set(keep), {})
        if digest(restored) != inputs_hash["before"]:
            raise ConfigError(
                f"{STRATEGY_INPUTS_NAME} as it was before {name} cannot be rebuilt byte for byte; "
                "nothing changed; " + _instead(where, index, kept)
            )
    if kept:
        remove.append(str(kept))
    written_by = json.loads(runs_json).get(WRITTEN_BY_KEY)
    return Undo(
        **_told(pool, report, listing, where),
        written_by=None if written_by in (None, this_datapool()) else str(written_by),
        pool_size=len(keep),
        n_runs=index,
        csv_length=int(record["csv"]["before"]),
        ledger_length=int(record["ledger"]["before"]),
        runs_json=runs_json,
        model_json=model_json,
        inputs=restored,
        remove=remove,
        snapshot=str(kept) if kept else None,
    )


def _runs_before(pool: Pool, record: dict[str, Any], want: str | None) -> bytes | None:
    """runs.json as it was before the pool's last run, byte for byte (its SHA-256 is `want`,
    as the run recorded it), or None: the runs before it, the removals as they were, in the form
    of the datapool that wrote it then. That may be another version than the run's or this one
    (a pool upgraded between two runs, or between a run and its undo), and each writes its own
    name and pool format in it: each datapool's form is tried (pool/contents.py
    runs_json_forms), the run's own and this one's first, and the one whose hash matches is
    the file as it was, which undo puts back (so it names the datapool that wrote it then)."""
    from datapool.pool.contents import runs_json_forms
    from datapool.pool.format import POOL_FORMAT, WRITERS, min_reader_of, this_datapool

    writers = [(this_datapool(), POOL_FORMAT), *reversed(WRITERS)]
    if pool.written is not None:
        writers.insert(0, (pool.written.written_by, pool.written.pool_format))
    n_removals = int(record.get("removals", len(pool.removals)))
    forms = runs_json_forms(
        pool.runs[:-1],
        min_reader_of(pool.written),
        pool.removals[:n_removals],
        pool.checked,
        writers,
    )
    return next((form for form in forms if digest(form) == want), None)


def _model_before(runs: list[dict[str, Any]], want: str | None) -> bytes | None:
    """model.json as it was before a run that rewrote it (a datapool that records the model's
    settings, or its origin, otherwise than the one that wrote it before), byte for byte (its
    SHA-256 is `want`), or None: a run writes model.json as it records the model in runs.json
    (json.dumps of the same object), so it is the record of the latest run before whose form
    matches."""
    for run in reversed(runs):
        model = run.get("model")
        if isinstance(model, dict):
            form = (json.dumps(model, indent=2) + "\n").encode()
            if digest(form) == want:
                return form
    return None


def _told(pool: Pool, report: dict[str, Any], listing: list[str], where: str) -> dict[str, Any]:
    """What an undo of `pool`'s last run tells, whichever way it puts the pool back."""
    import numpy as np

    index = len(pool.runs) - 1
    run = pool.runs[-1]
    folder = run_dir(index) + "/"
    exported = report.get("export", {})
    exported = exported if isinstance(exported, dict) else {}
    keys = pool.ledger.loc[pool.ledger["run"].astype(np.int64) == index, "key"]
    own = run.get("config", {}).get("export") or None
    dest = exported.get("dest") or own
    if own and dest and _same_place(str(own), str(dest)):
        own = None
    return {
        "index": index,
        "tag": str(run.get("tag", "")),
        "samples": [f for f, label in zip(pool.filenames, pool.labels.tolist()) if label == index],
        "files": sorted(keys.tolist()),
        "added_thumbnails": sorted(
            p
            for p in listing
            if p.startswith(folder) and p.rsplit("/", 1)[-1].startswith(THUMBNAILS_ADDED_PREFIX)
        ),
        "export": dest,
        "exported": exported.get("written"),
        "run_export": own,
        "location": where,
    }


def _same_place(a: str, b: str) -> bool:
    """Whether the run's --export `a` (as given) and its report's export `b` (a folder made
    absolute, export.dest_label) may name one place. A relative `a` is relative to the folder the
    run was started in, which no record keeps (not the one undo runs in): it is taken to be `b`
    where `b` ends with its path (`../out` with `/any/out`), and another place only where it
    cannot be `b` wherever the run was started."""
    import os
    from pathlib import PurePath

    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    if os.path.isabs(a):
        return os.path.normpath(a) == os.path.normpath(b)
    tail = [part for part in PurePath(os.path.normpath(a)).parts if part != ".."]
    return not tail or list(PurePath(os.path.normpath(b)).parts[-len(tail) :]) == tail


def _export_records(listing: list[str], index: int) -> list[str]:
    """The reports of runs before `index` in the pool now (report.json, report.html): the one
    commit that changes them while `index` is the last run is a `datapool export --run M`,
    which records what it did there."""
    from datapool.pool.layout import RUNS_DIR

    out = []
    for p in listing:
        parts = p.split("/")
        if len(parts) == 3 and parts[0] == RUNS_DIR and parts[2] in (REPORT_NAME, REPORT_HTML_NAME):
            if parts[1].isdigit() and int(parts[1]) < index:
                out.append(p)
    return out


def _from_snapshot(
    pool: Pool,
    record: dict[str, Any],
    read: Callable[[str], bytes | None],
    size: Callable[[str], int | None],
    listing: list[str],
    snapshot: str,
    name: str,
    where: str,
) -> Undo:
    """The undo of a run that rewrote the pool, from the history snapshot its commit made of
    the pool before it (--keep-history, --process-all): checked against the hashes and lengths
    it recorded of the pool before it, the snapshot's files go back into place, the pool's files
    that the snapshot has not go (the run's folder among them), and so does the snapshot."""
    from datapool.pool.layout import POOL_FILES, RUNS_DIR
    from datapool.pool.removal import csv_names

    index = len(pool.runs) - 1
    prefix = snapshot.rstrip("/") + "/"
    held = {p[len(prefix) :]: p for p in listing if p.startswith(prefix)}
    hashes = record["files"]
    ok = all(
        digest(read(prefix + f)) == hashes[f]["before"] for f in _HASHED if f in hashes
    ) and all(
        size(prefix + f) == record[k]["before"]
        for f, k in ((CSV_NAME, "csv"), (LEDGER_NAME, "ledger"))
    )
    if not ok:
        raise ConfigError(
            f"the snapshot {where.rstrip('/')}/{snapshot} is not the pool as it was before {name} (it "
            "was changed since): the pool before it cannot be put back exactly; nothing changed"
        )

    def of_pool(p: str) -> bool:
        return p in POOL_FILES or p.startswith(RUNS_DIR + "/")

    # An earlier run's report that a `datapool export --run M` after this run rewrote stays as
    # it is: the snapshot's copy predates that export, whose files stay in its destination.
    kept = [p for p in _export_records(listing, index) if p in held and read(p) != read(held[p])]
    restore = {p: src for p, src in held.items() if of_pool(p) and p not in kept}
    remove = [p for p in listing if of_pool(p) and p not in restore and p not in kept]
    # A run's folder the snapshot has no file of goes whole (the undone run's among them).
    kept_dirs = {
        "/".join(p.split("/")[:2]) for p in [*restore, *kept] if p.startswith(RUNS_DIR + "/")
    }
    whole = sorted(
        {"/".join(p.split("/")[:2]) for p in remove if p.startswith(RUNS_DIR + "/")} - kept_dirs
    )
    remove = [p for p in remove if "/".join(p.split("/")[:2]) not in whole] + whole
    before = json.loads(read(prefix + RUNS_NAME) or b"{}")
    return Undo(
        **_told(pool, _report(read(f"{run_dir(index)}/{REPORT_NAME}")), listing, where),
        pool_size=len(csv_names(read(prefix + CSV_NAME) or b"")),
        n_runs=len(before.get("runs", [])),
        remove=[*remove, snapshot],
        restore=restore,
        snapshot=snapshot,
        kept=kept,
    )


def _report(data: bytes | None) -> dict[str, Any]:
    try:
        report = json.loads(data) if data is not None else {}
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def _instead(where: str, index: int, kept: Any) -> str:
    """What the user can do instead, in the words of a refusal's end."""
    if kept:
        return (
            f"the pool as it was before run {index} is kept in {where.rstrip('/')}/{kept} (a pool "
            "of its own: "
            f"copy its files back over the pool's; or `datapool rm {where} --run {index}` removes "
            "the run's samples and keeps them out)"
        )
    return (
        f"`datapool rm {where} --run {index}` removes its samples (and keeps them out of later "
        "runs); a run with --keep-history keeps the pool before it in history/"
    )


def _as_written(
    name: str,
    ends: dict[str, Any],
    size: Callable[[str], int | None],
    span: Callable[[str, int, int], Iterable[bytes]],
) -> bool:
    """Whether the CSV or the ledger (`name`) is as the run's commit left it: as long as it
    was after the commit and, where the record keeps them (records made by datapool 0.4.0 and
    before do not: their files are checked by length only, as then), the bytes the commit wrote
    have the same sum. A record without a length after (a CSV that 0.4.0 wrote whole) is not
    checked, as before."""
    after = ends.get("after")
    if after is None:
        return True
    if size(name) != after:
        return False
    try:
        if APPENDED_SHA256 in ends:
            sha = hashlib.sha256()
            for block in span(name, int(ends["before"]), int(after)):
                sha.update(block)
            return sha.hexdigest() == ends[APPENDED_SHA256]
        if WHOLE_CRC32 in ends:
            crc = 0
            for block in span(name, 0, int(after)):
                crc = zlib.crc32(block, crc)
            return crc == int(ends[WHOLE_CRC32])
    except OSError:  # shorter than its length said: it changed while undo read it
        return False
    return True


def _check_nothing_after(
    pool: Pool,
    record: dict[str, Any],
    read: Callable[[str], bytes | None],
    size: Callable[[str], int | None],
    span: Callable[[str, int, int], Iterable[bytes]],
    name: str,
    where: str,
) -> None:
    """Refuse, naming it, where a commit came after the run: the pool's files are not as the
    run's commit left them (their lengths, and where the record has them, the sums of the bytes
    the commit wrote: `written_sums`)."""
    changed = [
        f
        for f, k in ((CSV_NAME, "csv"), (LEDGER_NAME, "ledger"))
        if not _as_written(f, record[k], size, span)
    ]
    changed += [
        f
        for f in _HASHED
        if f in record["files"] and digest(read(f)) != record["files"][f]["after"]
    ]
    if not changed:
        return
    instead = (
        f"`datapool rm {where} --run {len(pool.runs) - 1}` removes the run's samples instead "
        "(and keeps them out of later runs)"
    )
    n_removals = int(record.get("removals", 0))
    later_rm = [e for e in pool.removals[n_removals:] if isinstance(e, dict)]
    if later_rm:
        what = f"`datapool rm` (at {later_rm[-1].get('at', '?')})"
    elif pool.checked is not None and pool.checked.get("at", "") >= str(
        pool.runs[-1].get("finished_at", "")
    ):
        what = f"a run that found nothing new and recorded what it checked (at {pool.checked.get('at')})"
    elif changed == [LEDGER_NAME] and size(LEDGER_NAME) != record["ledger"]["after"]:
        what = "a run that found nothing new and recorded new mtimes or hashes in the ledger"
    else:
        what = f"a change to {', '.join(changed)} (a later commit, or an edit)"
        instead = f"`datapool verify {where}` says what changed"  # an edit: no rm from it
    raise ConfigError(
        f"the last commit of the pool {where} is not {name}: {what} came after it; only the "
        f"pool's last commit, when it is a run, can be undone; nothing changed; {instead}"
    )
