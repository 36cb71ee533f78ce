"""Snapshots of a local pool under history/: the pool as it was before a run changed it
(--process-all always, any run with --keep-history).

Files that commits only ever replace by rename (runs.json, model.json, strategy_inputs.json, the
runs/ reports) are hard-linked: free. Files that commits append to in place (the pool CSV and the ledger) must not be
shared with the snapshot, so they are cloned where the file system can (a reflink on btrfs, XFS,
...: free) and copied otherwise (in the kernel, without passing through Python).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from datapool._fsio import fsync_dir
from datapool.errors import ConfigError
from datapool.pool.layout import (
    APPENDED_IN_PLACE,
    HISTORY_DIR,
    MODEL_NAME,
    RUNS_DIR,
    RUNS_NAME,
    STRATEGY_INPUTS_NAME,
    snapshot_dir,
)

if TYPE_CHECKING:
    from datapool.pool.journal import Transaction

_FICLONE = 0x40049409  # Linux ioctl: make dst share src's blocks, copy-on-write


def snapshot_of(folder: str | os.PathLike[str]) -> tuple[Path, Path] | None:
    """(the snapshot, its pool) where `folder` is a history snapshot of a pool or a folder
    inside one (POOL/history/<snapshot>[/...]), else None."""
    path = Path(os.path.abspath(folder))
    chain = (path, *path.parents)
    for below, above in zip(chain, chain[1:]):
        if above.name == HISTORY_DIR and (above.parent / RUNS_NAME).is_file():
            return below, above.parent
    return None


def check_not_a_snapshot(folder: str | os.PathLike[str]) -> None:
    """Refuse to write into a history snapshot (a run, rm or undo given POOL/history/<name>):
    it is the record of a pool as it was, which `datapool status` and Pool.open read, and
    growing it would change that record unseen."""
    found = snapshot_of(folder)
    if found is None:
        return
    snap, pool = found
    where = "is" if snap == Path(os.path.abspath(folder)) else f"is inside {snap},"
    raise ConfigError(
        f"{folder} {where} a history snapshot of pool {pool}: a record of that pool as it was, "
        f"never written to; to grow it as a pool of its own, copy it out first "
        f"(cp -r {snap} NEWPOOL) and give that"
    )


def snapshot(root: Path, n_runs: int, txn: Transaction) -> str:
    """Keep the pool at `root` (with `n_runs` runs) under history/<time>-<runs>-runs/, staged in
    the commit `txn`: it appears with the commit, or not at all. The snapshot's path relative to
    the pool."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    rel = snapshot_dir(stamp, n_runs)
    n = 1
    while (root / rel).exists():
        n += 1
        rel = snapshot_dir(stamp, n_runs, n)
    txn.stage_dir(rel, lambda dest: _copy_pool(root, dest))
    return rel


def _copy_pool(root: Path, dest: Path) -> None:
    """The pool's committed files at `root`, linked or copied into the empty folder `dest`."""
    for name in (RUNS_NAME, MODEL_NAME, STRATEGY_INPUTS_NAME):
        _link_or_copy(root / name, dest / name)
    for name in APPENDED_IN_PLACE:
        if (root / name).exists():
            _clone_or_copy(root / name, dest / name)
    runs_dir = root / RUNS_DIR
    if runs_dir.is_dir():
        shutil.copytree(runs_dir, dest / RUNS_DIR, copy_function=_link_or_copy)
    for folder, _, _ in os.walk(dest):  # its entries are durable before the commit names it
        fsync_dir(Path(folder))


def _link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    if not os.path.exists(src):
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _clone_or_copy(src: Path, dst: Path) -> None:
    import fcntl

    with open(src, "rb") as fi, open(dst, "wb") as fo:
        try:
            fcntl.ioctl(fo.fileno(), _FICLONE, fi.fileno())
            cloned = True
        except OSError:
            cloned = False
    if not cloned:
        shutil.copyfile(src, dst)  # sendfile on Linux: the bytes never pass through Python
    with open(dst, "rb") as f:
        os.fsync(f.fileno())
