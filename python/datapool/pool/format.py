"""Which datapool can read a pool: the pool format it records, and the refusal of a pool that a
newer datapool wrote in a format this one cannot read.

Every commit records, at the top of runs.json (and of an S3 pool's manifest.json):

    "pool_format": 1,                  the format of the datapool that wrote it (POOL_FORMAT)
    "min_reader_pool_format": 1,       the oldest POOL_FORMAT that reads the pool right
    "written_by": "datapool 0.1.0"     that datapool's version

A datapool reads a pool whose `min_reader_pool_format` is at most its own POOL_FORMAT, and refuses
any other in one line, before it parses anything else (a newer ledger column or runs.json field
would otherwise stop it as a malformed pool, or be misread). Pools written before the record
existed record none: every datapool since reads them (tests/test_compat.py).

How to change the format. POOL_FORMAT is raised by every change to what a pool's files hold (a
ledger or CSV column, a runs.json or run-record field, model.json, the manifest, strategy inputs,
thumbnails): tests/test_pool_format.py fails until it is, and until the new format's shape is
recorded there. MIN_READER is raised with it, to the new POOL_FORMAT, when a datapool of the
format before would refuse or misread what the new one writes (a new ledger column: an older one
refuses the header; a field whose absence an older one would read wrongly); it stays when an older
one reads the pool right (a field it can ignore). A pool may require more than MIN_READER for
what it holds: format 2 added runs.json's `removals` (`datapool rm`, pool/removal.py), which a
format 1 datapool would drop, letting removed samples in again, so a pool that records removals
records a minimum reader of 2; one without them is still read by format 1. Format 3 added
runs.json's `decoder_checked` (pool/next_run.py: a check of an older decoder's files recorded
by a run that added nothing); an older datapool ignores it and checks those files again, which
costs time and changes no sample, so MIN_READER stays 1. Format 4 added a removal entry's
`sums` (the length and CRC-32 of the CSV and the ledger `datapool rm` wrote, the SHA-256 of
runs.json and strategy_inputs.json, for `datapool verify`); an older datapool keeps the entry as
it reads it (only its names and files are checked), so MIN_READER stays 1. The contract that must hold forever: runs.json
and manifest.json stay JSON objects that carry these three keys at their top level.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from datapool.errors import PoolCorruptError, PoolTooNewError

POOL_FORMAT = 4  # the format this datapool writes, and the newest it reads
MIN_READER = 1  # the oldest POOL_FORMAT that reads what this datapool writes

FORMAT_KEY = "pool_format"
MIN_READER_KEY = "min_reader_pool_format"
WRITTEN_BY_KEY = "written_by"

UPGRADE = "upgrade datapool (`pip install .` in a newer checkout of it)"

# Every datapool that wrote the record, with the POOL_FORMAT it wrote, oldest first: what
# `datapool undo` (pool/undo.py) tries when it rebuilds runs.json as it was before a run, which
# whichever datapool made the commit before that run wrote (the hash the run recorded decides
# which, byte for byte). 0.1.0 was never released, but the commits before 0.2.0 wrote its name
# from the record's start on, in format 1 and then 2. A release adds its line:
# tests/test_undo_compat.py fails until it does.
WRITERS: tuple[tuple[str, int], ...] = (
    ("datapool 0.1.0", 1),
    ("datapool 0.1.0", 2),
    ("datapool 0.2.0", 2),
    ("datapool 0.3.0", 3),
    ("datapool 0.4.0", 3),
    ("datapool 0.5.0", 3),
    ("datapool 0.6.0", 4),
    ("datapool 0.7.0", 4),
)


def this_datapool() -> str:
    """'datapool 0.1.0': read without an import of the package from inside it (a cycle)."""
    return f"datapool {getattr(sys.modules.get('datapool'), '__version__', '?')}"


@dataclass(frozen=True)
class Recorded:
    """What a pool records of the datapool that wrote it."""

    pool_format: int
    min_reader: int
    written_by: str


def record(at_least: int = 0) -> dict[str, Any]:
    """The keys a commit writes at the top of runs.json and manifest.json. `at_least`: the
    minimum reader the pool recorded before (a commit never lowers it: the files it keeps were
    written for that reader)."""
    return header(this_datapool(), POOL_FORMAT, max(MIN_READER, at_least))


def header(written_by: str, pool_format: int, min_reader: int) -> dict[str, Any]:
    """The record as `written_by`, a datapool of `pool_format`, wrote it (record(): this one)."""
    return {FORMAT_KEY: pool_format, MIN_READER_KEY: min_reader, WRITTEN_BY_KEY: written_by}


def min_reader_of(*pools: Recorded | None) -> int:
    """The highest minimum reader among pools (a merge's parts); 0 where none records one."""
    return max((p.min_reader for p in pools if p is not None), default=0)


def recorded(doc: Any, where: str) -> Recorded | None:
    """What the parsed runs.json or manifest.json `doc` records (None: written before the record
    existed, or not an object, which its own reader refuses). Raises PoolTooNewError when this
    datapool cannot read it: call it before any other check of the pool's files."""
    if not isinstance(doc, dict) or MIN_READER_KEY not in doc:
        return None
    try:
        need = int(doc[MIN_READER_KEY])
        made = int(doc.get(FORMAT_KEY, need))
    except (TypeError, ValueError):
        raise PoolCorruptError(
            f"{where}: {MIN_READER_KEY} must be an integer, got {doc[MIN_READER_KEY]!r}"
        ) from None
    found = Recorded(made, need, str(doc.get(WRITTEN_BY_KEY) or "of an unknown version"))
    if need > POOL_FORMAT:
        raise PoolTooNewError(
            f"{where}: this pool was written by {found.written_by} (pool format {made}) and "
            f"needs a datapool that reads pool format {need}; this is {this_datapool()}, which "
            f"reads pool formats up to {POOL_FORMAT}: {UPGRADE}"
        )
    return found


def extra_columns(header: Sequence[str], known: Iterable[str]) -> list[str]:
    """The columns of `header` beyond `known`, where `header` holds all of `known` in their order
    (a newer datapool's added columns); [] otherwise (a header that is simply wrong)."""
    known = list(known)
    it = iter(header)
    if not all(any(h == k for h in it) for k in known):
        return []
    return [h for h in header if h not in set(known)]


def newer_writer_hint(pool: Recorded | None) -> str:
    """What to add to the error for columns this datapool does not know: where the pool records
    no format, a newer datapool (one before the record, or a build of another branch) may have
    written it; where it records one this datapool reads, the columns are not a newer format's."""
    if pool is None:
        return (
            "; the pool records no pool format, so a newer datapool may have written it: "
            f"{UPGRADE}, or restore the file from a backup or history/"
        )
    return (
        f"; the pool records {pool.written_by} (pool format {pool.pool_format}), whose files "
        "this datapool reads: edited by hand? restore the file from a backup or history/"
    )
