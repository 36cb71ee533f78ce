"""What runs keep out of a pool since `datapool rm` (pool/removal.py): runs.json's removals.

Each removal is an entry of runs.json's `removals` list: {"at", "reason", "names", "files",
"samples", "runs"} for a removal, {"at", "forget": true, "names", "files"} for `rm --forget`.
Read in order, they give the sample names and source-file keys that a run never adds again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from datapool.errors import PoolCorruptError

# runs.json's key for the removals, and the pool format that reads them (pool/format.py).
REMOVALS_KEY = "removals"
REMOVALS_FORMAT = 2


def kept_out(removals: Iterable[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The sample names and source-file keys that runs keep out of the pool: those removed and
    not forgotten since (in the order of the removals)."""
    names: set[str] = set()
    files: set[str] = set()
    for entry in removals:
        got_names, got_files = set(entry.get("names") or ()), set(entry.get("files") or ())
        if entry.get("forget"):
            names -= got_names
            files -= got_files
        else:
            names |= got_names
            files |= got_files
    return names, files


def check_removals(data: Any, where: str) -> list[dict[str, Any]]:
    """runs.json's removals (absent: none), checked as Pool.load checks its runs."""
    if data is None:
        return []
    ok = isinstance(data, list) and all(
        isinstance(e, dict)
        and all(
            isinstance(e.get(k, []), list) and all(isinstance(x, str) for x in e.get(k, []))
            for k in ("names", "files")
        )
        for e in data
    )
    if not ok:
        raise PoolCorruptError(
            f"{where}: '{REMOVALS_KEY}' must be a list of objects whose names and files are "
            "lists of text"
        )
    return list(data)
