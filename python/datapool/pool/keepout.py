"""What runs keep out of a pool since `datapool rm` (pool/removal.py): runs.json's removals.

Each removal is an entry of runs.json's `removals` list: {"at", "reason", "names", "files",
"samples", "runs", and "boxes": the pixels each removed object crop was cut from} for a removal, {"at", "forget": true, "names", "files"} for `rm --forget`.
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


def kept_out_boxes(removals: Iterable[dict[str, Any]]) -> dict[str, list[float]]:
    """Per object crop kept out, the pixels [x0, y0, x1, y1] it was cut from when removed
    (a removal's `boxes`; none in removals by datapool 0.2.0 and earlier). A later crop of that
    name is the same object only where its box overlaps this one (`same_object`)."""
    out: dict[str, list[float]] = {}
    for entry in removals:
        if entry.get("forget"):
            for n in entry.get("names") or ():
                out.pop(n, None)
        else:
            boxes = entry.get("boxes")
            if isinstance(boxes, dict):
                out.update({n: b for n, b in boxes.items() if _is_box(b)})
    return out


# Intersection over union at or above which two boxes of one image hold the same object (the
# PASCAL VOC criterion of a detection matching an object).
SAME_OBJECT_IOU = 0.5


def same_object(a: Any, b: Any) -> bool:
    """Whether the crops of boxes `a` and `b` ([x0, y0, x1, y1]) hold the same object: their
    intersection over union is SAME_OBJECT_IOU or more. A box that is not four numbers is
    taken as the same (kept out: the safe side)."""
    if not (_is_box(a) and _is_box(b)):
        return True
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union <= 0 or inter / union >= SAME_OBJECT_IOU


def _is_box(b: Any) -> bool:
    return (
        isinstance(b, (list, tuple))
        and len(b) == 4
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)
    )


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
