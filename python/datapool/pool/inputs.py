"""The strategy inputs each pool sample was selected on (pool/layout.py STRATEGY_INPUTS_NAME).

One JSON object next to the CSV (which keeps Lightly's format): {"version": 1, "samples":
{name: {column: value}}}, with the column keys of datapool.candidates ("scores:<task>:<score>",
"metadata:<key>", "predictions:<task>:CLASS_DISTRIBUTION" ...). A class distribution is stored as
{class name: value} (non-zero entries only), so that a later run lines it up by class name even
when the task's categories changed. Missing values are absent. Later runs read it for BALANCE
(the pool's class counts) without re-reading the bucket.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

VERSION = 1


def rows_of(
    names: Sequence[str],
    columns: dict[str, npt.NDArray[Any]],
    classes: dict[str, list[str]],
    indices: Iterable[int],
) -> dict[str, dict[str, Any]]:
    """The stored form of the candidates at `indices`: {name: {column: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for i in indices:
        row: dict[str, Any] = {}
        for col, values in columns.items():
            v = values[i]
            if values.ndim == 2:
                names_ = classes.get(col, [str(j) for j in range(values.shape[1])])
                row[col] = {c: float(x) for c, x in zip(names_, v.tolist()) if x}
            elif isinstance(v, (float, np.floating)):
                if not math.isnan(float(v)):
                    row[col] = float(v)
            elif v is not None:
                row[col] = v.item() if isinstance(v, np.generic) else v
        out[names[i]] = row
    return out


def merged(
    old: bytes | None,
    keep: set[str],
    new: dict[str, dict[str, Any]],
    renames: dict[str, str] | None = None,
) -> bytes:
    """The file after a commit: the kept samples' rows of `old` (under their new names where
    `renames` renames them: moved files), then the new ones."""
    samples: dict[str, Any] = {}
    if old:
        stored = json.loads(old).get("samples", {}).items()
        named = ((renames.get(k, k) if renames else k, v) for k, v in stored)
        samples = {k: v for k, v in named if k in keep}
    samples.update(new)
    return (json.dumps({"version": VERSION, "samples": samples}) + "\n").encode()


def columns_of(
    data: bytes | None, names: Sequence[str]
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, list[str]]]:
    """The stored inputs of `names` as candidate columns (NaN / None / zero rows where absent)."""
    if not data:
        return {}, {}
    samples = json.loads(data).get("samples", {})
    rows = [samples.get(n, {}) for n in names]
    cols: dict[str, npt.NDArray[Any]] = {}
    classes: dict[str, list[str]] = {}
    keys = sorted({k for r in rows for k in r})
    for k in keys:
        vals = [r.get(k) for r in rows]
        if any(isinstance(v, dict) for v in vals):
            cl = sorted({c for v in vals if isinstance(v, dict) for c in v})
            m = np.zeros((len(names), len(cl)))
            at = {c: j for j, c in enumerate(cl)}
            for i, v in enumerate(vals):
                for c, x in (v or {}).items():
                    m[i, at[c]] = x
            cols[k], classes[k] = m, cl
        elif all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in vals
        ):
            cols[k] = np.array([np.nan if v is None else float(v) for v in vals])
        else:
            cols[k] = np.array(vals, dtype=object)
    return cols, classes
