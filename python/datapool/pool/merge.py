"""Merge two pools built with the same model into a new third pool.

    datapool merge A B --into C [--reselect N]

- The models must match (same fingerprint: sha256, input size, output dimension); otherwise a
  ModelMismatchError names both.
- C holds A's samples, then B's; A's runs keep their indices and B's follow them, so B's labels
  are renumbered by A's number of runs. Every run gets the tag of its new index (tags stay
  unique) and records where it came from (`merged_from`: pool, original index and tag). Each run's report folder is copied along,
  with its thumbnail segments (pool/thumbnails.py); where B's names get a prefix, B's
  thumbnails are written again under the new names.
- The ledgers are united. When A and B were grown from the same source (every run of both names
  the same source), C holds every sample either pool selected: a sample name both hold is kept
  once (A's), and B's other samples of a file A also processed stay (each pool may have picked
  other frames of one video). A raw file both processed keeps A's ledger row, with `n_selected`
  counted again over C's samples, and B's samples of it are labelled with that row's run (a
  ledger row's samples all belong to its run). When they
  come from different sources, a name of B's that A already uses (a sample filename or a ledger
  key) gets the prefix `<B's folder name>/`, for example `img0.jpg` from pool `night` becomes
  `night/img0.jpg`, with a number added (`night-2/`) if that too is taken.
- `reselect=N` re-runs farthest-point selection over the union, from an empty start, and keeps the
  N most diverse samples (in their merged order).
- The strategy inputs of the samples C keeps (strategy_inputs.json, pool/inputs.py) come along,
  under their names in C (A's where both hold a name).
- C is built in a temporary folder beside it and renamed into place, so it appears whole or not at
  all. A and B are read under their locks and never changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datapool.errors import ConfigError, ModelMismatchError
from datapool.naming import source_keys
from datapool.pool import journal as _journal
from datapool.pool.contents import Pool
from datapool.pool.layout import RUNS_DIR, RUNS_NAME, STRATEGY_INPUTS_NAME, THUMBNAILS_NAME, run_tag
from datapool.pool.ledger import image_sample_keys
from datapool.pool.local import create_pool, pool_files
from datapool.pool.lock import PoolLock
from datapool.pool.store import Rows


@dataclass
class MergeResult:
    """What a merge made. It adds up: `from_a + from_b == size` and
    `size_a + size_b == size + duplicates + reselect_dropped`."""

    pool: Path
    size: int  # samples in C
    from_a: int  # of them, A's
    from_b: int  # of them, B's
    renamed: int  # names of B's that got the prefix
    duplicates: int  # B's samples whose name A holds too (same source), kept once
    prefix: str | None
    size_a: int = 0  # samples in A
    size_b: int = 0  # samples in B
    reselect_dropped: int = 0  # union samples that --reselect left out


def _read_locked(path: Path) -> Pool:
    if not Pool.is_pool(path) and not (path.is_dir() and _journal.needs_recovery(path)):
        raise ConfigError(f"{path} is not a datapool pool (no {RUNS_NAME} in it)")
    with PoolLock(path):
        _journal.recover(path)
        return Pool.load(path)


def _sources(pool: Pool) -> set[str]:
    return {str(r.get("source")) for r in pool.runs}


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


def merge_pools(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    into: str | os.PathLike[str],
    reselect: int | None = None,
) -> MergeResult:
    """Merge pools `a` and `b` into the new pool `into` (see the module doc)."""
    from datapool.select.fps import select_diverse

    pa, pb, dest = Path(a), Path(b), Path(into)
    if reselect is not None and reselect < 0:
        raise ConfigError(f"reselect must be >= 0, got {reselect}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} already exists and is not an empty folder; merge into a new one")
    if pa.resolve() == pb.resolve():
        raise ConfigError(f"cannot merge {pa} with itself")
    A, B = _read_locked(pa), _read_locked(pb)
    if A.model is None or B.model is None:
        empty = pa if A.model is None else pb
        raise ConfigError(f"pool {empty} has no runs yet; there is nothing to merge")
    if not A.model.same_space(B.model):
        raise ModelMismatchError(
            f"cannot merge: pool {pa} was built with {A.model.describe()}, but pool {pb} with "
            f"{B.model.describe()}; embeddings from different models are not comparable"
        )

    same_source = len(_sources(A) | _sources(B)) == 1
    a_names = set(A.filenames)
    a_keys = set(A.ledger["key"].tolist())
    prefix = None
    b_names = list(B.filenames)
    keep_b = np.ones(len(B), dtype=bool)
    b_labels = B.labels + len(A.runs)
    b_ledger = B.ledger.copy()
    renamed = duplicates = 0
    if same_source:
        # Every sample either pool selected; a name both hold is A's. A file both processed
        # keeps A's ledger row.
        keep_b = np.array([n not in a_names for n in b_names], dtype=bool)
        duplicates = int(len(b_names) - keep_b.sum())
        b_ledger = b_ledger[~b_ledger["key"].isin(a_keys)]
        b_labels = _under_a_runs(A, B, b_labels)
    else:
        clashing_names = [n for n in b_names if n in a_names]
        clashing_keys = a_keys & set(b_ledger["key"].tolist())
        if clashing_names or clashing_keys:
            prefix = _free_prefix(pb.resolve().name or "b", a_names | a_keys)
            b_names = [prefix + n if n in a_names else n for n in b_names]
            b_ledger["key"] = [prefix + k if k in clashing_keys else k for k in b_ledger["key"]]
            renamed = len(clashing_names) + len(clashing_keys)

    na = len(A.runs)
    runs: list[dict[str, Any]] = []
    for origin, pool, offset in ((pa, A, 0), (pb, B, na)):
        for r in pool.runs:
            rec = dict(r)
            rec["index"] = r["index"] + offset
            rec["report"] = f"{RUNS_DIR}/{rec['index']}/report.json"
            # Tags stay unique: two pools both have an initial-tag.
            rec["tag"] = run_tag(rec["index"])
            rec["merged_from"] = {"pool": str(origin), "index": r["index"], "tag": r.get("tag")}
            runs.append(rec)
    b_ledger = b_ledger.assign(run=b_ledger["run"] + na)

    filenames = A.filenames + [n for n, k in zip(b_names, keep_b) if k]
    embeddings = np.concatenate([A.embeddings, B.embeddings[keep_b]])
    labels = np.concatenate([A.labels, b_labels[keep_b]])
    from_b = np.concatenate([np.zeros(len(A), bool), np.ones(int(keep_b.sum()), bool)])
    union = len(filenames)
    if reselect is not None:
        picks = select_diverse(embeddings, min(reselect, len(filenames)))
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
    files = pool_files(Rows(filenames, embeddings, labels), ledger, runs, A.model)
    renames = dict(zip(B.filenames, b_names)) if prefix is not None else {}
    files.update(_renamed_thumbnails(pb, B, renames, na))
    inputs = _merged_inputs(pa, pb, dict(zip(B.filenames, b_names)), filenames)
    if inputs is not None:
        files[STRATEGY_INPUTS_NAME] = inputs
    create_pool(
        dest,
        files,
        [(pa / RUNS_DIR / str(i), i) for i in range(na)]
        + [(pb / RUNS_DIR / str(i), i + na) for i in range(len(B.runs))],
        without_thumbnails=frozenset(range(na, na + len(B.runs))) if renames else frozenset(),
    )
    return MergeResult(
        dest,
        len(filenames),
        int((~from_b).sum()),
        int(from_b.sum()),
        renamed,
        duplicates,
        prefix,
        size_a=len(A),
        size_b=len(B),
        reselect_dropped=union - len(filenames),
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
) -> Pool:
    """Merge pools `a` and `b` (same model) into the new pool `into` and open it (`datapool.merge`;
    see the module doc for the rules: renumbered labels, name prefixes, reselection)."""
    merge_pools(a, b, into, reselect=reselect)
    return Pool.open(into)
