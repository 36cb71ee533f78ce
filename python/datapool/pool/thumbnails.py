"""The pool's thumbnails: append-only segments, one per commit that adds samples.

A run that adds samples writes the thumbnails of those samples (and of no others) as one new
file, `runs/<index>/thumbnails.bin` (pool/layout.py), staged and committed with the rest of the
run (a folder: through the journal; a bucket: one more blob in the manifest). So a commit costs
its new thumbnails, never a rewrite of the pool's, and a crash leaves the segments as they were.
`datapool report POOL --thumbnails` adds the missing ones of an older pool as a further segment
in the last run's folder, `runs/<index>/thumbnails-added-<k>.bin`, committed the same way.

A segment is self-describing:

    b"DPTHUMB1"  uint32 (little-endian) header length  header (JSON)  the images, concatenated
    header: {"format": "jpeg", "entries": [[sample name, byte length], ...]}

Reading (`merge_segments`): runs from the newest, and in a run's folder its own segment before
the added ones; the first thumbnail found for a name wins. Names that left the pool (changed
files, --process-all) are left out by the reader, as the pool's own rows are the index. Since
the segments live in the run folders, everything that keeps or drops run folders keeps or drops
them too: history snapshots, --process-all, `datapool merge` (which renames B's samples it
prefixes: see merge.py).
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Collection, Iterable, Mapping

from datapool.pool.layout import RUNS_DIR, THUMBNAILS_ADDED_PREFIX, THUMBNAILS_NAME

log = logging.getLogger("datapool")

_MAGIC = b"DPTHUMB1"
_SEGMENT = re.compile(
    rf"^{RUNS_DIR}/(\d+)/({re.escape(THUMBNAILS_NAME)}|{re.escape(THUMBNAILS_ADDED_PREFIX)}(\d+)\.bin)$"
)


def pack(thumbs: dict[str, bytes], fmt: str = "jpeg") -> bytes:
    """One segment holding `thumbs` (sample name -> image bytes), in their order."""
    entries = [[name, len(data)] for name, data in thumbs.items()]
    header = json.dumps({"format": fmt, "entries": entries}, separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack("<I", len(header)), header, *thumbs.values()])


def unpack(data: bytes, where: str = "") -> dict[str, bytes]:
    """The thumbnails of one segment; {} (with a warning) for a damaged one: thumbnails only
    decorate the report, so a bad segment never stops a run."""
    try:
        return read_segment(data)[0]
    except ValueError as e:
        log.warning("thumbnails %s are unreadable (%s); left out of the report", where, e)
        return {}


def read_segment(data: bytes) -> tuple[dict[str, bytes], int]:
    """The thumbnails of one segment, and the offset where its last one ends (`datapool
    verify` reports bytes past it); ValueError saying why where it cannot be read."""
    if data[:8] != _MAGIC:
        raise ValueError("it does not start as a segment does")
    try:
        (n,) = struct.unpack_from("<I", data, 8)
        header = json.loads(data[12 : 12 + n])
        listed = [(str(name), int(length)) for name, length in header["entries"]]
    except (ValueError, KeyError, TypeError, struct.error) as e:
        raise ValueError(f"its header is unreadable ({e})") from None
    out: dict[str, bytes] = {}
    pos = 12 + n
    for k, (name, length) in enumerate(listed):
        if pos + length > len(data):
            raise ValueError(f"it ends inside thumbnail {k} ({name!r}): truncated")
        out[name] = data[pos : pos + length]
        pos += length
    return out, pos


def segment_order(paths: Iterable[str]) -> list[str]:
    """The segments among pool-relative `paths`, in reading order: newest run first, and in
    each run folder its own segment, then the added ones, newest first."""
    found = []
    for p in paths:
        m = _SEGMENT.match(p)
        if m is not None:
            added = 0 if m.group(3) is None else int(m.group(3))
            found.append(((-int(m.group(1)), added > 0, -added), p))
    return [p for _, p in sorted(found)]


def next_added_name(paths: Iterable[str], run_index: int) -> str:
    """The pool-relative path of the next added segment in run `run_index`'s folder."""
    taken = [
        int(m.group(3))
        for m in map(_SEGMENT.match, paths)
        if m is not None and m.group(3) is not None and int(m.group(1)) == run_index
    ]
    return f"{RUNS_DIR}/{run_index}/{THUMBNAILS_ADDED_PREFIX}{max(taken, default=0) + 1}.bin"


def merge_segments(
    segments: Iterable[tuple[str, bytes]], names: Collection[str], max_bytes: int | None = None
) -> dict[str, bytes]:
    """The thumbnails of the pool samples `names`, from (path, bytes) in segment_order; no
    further segment is read (`segments` may be lazy: downloads) once `max_bytes` are found.
    Where `names` maps each name to its sample's run (the pool's label), a thumbnail is taken
    only from that run's folder or a later one's: an earlier run's is of the file as it was
    before it changed, when a later run (one without thumbnails) made the sample again."""
    runs = names if isinstance(names, Mapping) else None
    out: dict[str, bytes] = {}
    found = 0
    for path, data in segments:
        m = _SEGMENT.match(path)
        folder = int(m.group(1)) if m is not None else None
        for name, thumb in unpack(data, path).items():
            if name not in names or name in out:
                continue
            if runs is None or folder is None or folder >= int(runs[name]):
                out[name] = thumb
                found += len(thumb)
        if max_bytes is not None and found >= max_bytes:
            break
    return out
