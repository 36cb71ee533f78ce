"""Make a big pool for timing datapool's commands (bench/RESULTS.md, Session 18): a real first
run over a few images, then one commit through the pool store's own writer (session.commit, as
a run commits) of N more samples, whose source files exist: hard links to copies of one JPEG,
so that a
later run lists N real files, finds them unchanged (the ledger has their size, mtime and content
hash) and reads none of them. Only the embeddings are synthetic (unit vectors, seeded).

    PYTHONPATH=python python bench/make_big_pool.py /tmp/big --n 1000000
    PYTHONPATH=python python bench/make_big_pool.py /tmp/big --n 1000000 --commits 4  # less memory

Leaves ROOT/src (the source: 4 real images and bulk/<k>/<i>.jpg, the links) and ROOT/pool.
The model is the default one (510-d). Disk: about 6 KB a sample in the CSV, 2 KB in the sidecar.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from datapool.fingerprint import ModelFingerprint
from datapool.pool.ledger import LEDGER_COLUMNS
from datapool.pool.store import PoolUpdate, open_store
from datapool.sources.local import file_hash

PER_FOLDER = 1000
LINKS_PER_TARGET = 50_000


def first_run(root: Path) -> None:
    from PIL import Image

    src = root / "src"
    src.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(4):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(src / f"real{i}.jpg", quality=80)
    cmd = [sys.executable, "-m", "datapool", "run", str(src), "--pool", str(root / "pool")]
    subprocess.run([*cmd, "--n-samples", "4"], check=True, stdout=subprocess.DEVNULL)


def link_bulk(root: Path, n: int) -> tuple[list[str], np.ndarray]:
    """n hard links under src/bulk/ to copies of real0.jpg outside the source (ROOT/targets: a
    file takes at most 65,000 links on ext4); their keys and mtimes (ns)."""
    src = root / "src"
    (root / "targets").mkdir()
    keys, mtimes = [], np.empty(n, np.int64)
    target = src / "real0.jpg"
    for i in range(n):
        if i % LINKS_PER_TARGET == 0:
            target = root / "targets" / f"{i // LINKS_PER_TARGET}.jpg"
            shutil.copy2(src / "real0.jpg", target)
            mtime = target.stat().st_mtime_ns
        key = f"bulk/{i // PER_FOLDER:04d}/{i:07d}.jpg"
        if i % PER_FOLDER == 0:
            (src / key).parent.mkdir(parents=True, exist_ok=True)
        os.link(target, src / key)
        keys.append(key)
        mtimes[i] = mtime
    return keys, mtimes


def commit_bulk(root: Path, keys: list[str], mtimes: np.ndarray, seed: int = 0) -> None:
    src, pool_dir = root / "src", root / "pool"
    st = (src / "real0.jpg").stat()
    digest = file_hash(src / "real0.jpg")
    runs = json.loads((pool_dir / "runs.json").read_text())["runs"]
    model = ModelFingerprint.from_json(runs[-1]["model"])
    n, index = len(keys), len(runs)
    rng = np.random.default_rng(seed)
    emb = np.empty((n, model.output_dim), np.float32)
    for start in range(0, n, 65536):  # unit vectors, as the model's
        block = rng.standard_normal((min(65536, n - start), model.output_dim), np.float32)
        emb[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    ledger = pd.DataFrame(
        {
            "key": keys,
            "size": np.full(n, st.st_size, np.int64),
            "mtime_ns": mtimes,
            "run": np.full(n, index, np.int64),
            "status": "ok",
            "n_samples": np.ones(n, np.int64),
            "n_selected": np.ones(n, np.int64),
            "etag": "",
            "content_hash": digest,
            "predictions": "",
        }
    )[LEDGER_COLUMNS]
    run = copy.deepcopy(runs[-1])
    run.update(index=index, tag=f"bulk-{index}", report=f"runs/{index}/report.json")
    run["counts"].update(listed=n + 4, new=n, processed=n, selected=n, pool_size=n + 4)
    report = json.loads((pool_dir / runs[-1]["report"]).read_text())
    with open_store(pool_dir).session() as session:
        update = PoolUpdate(
            run=run,
            model=model,
            new_names=keys,  # an image's sample name is its key
            new_embeddings=emb,
            new_labels=np.full(n, index, np.int64),  # a sample's label is its run
            keep=np.ones(len(session.pool), bool),
            ledger_rows=ledger,
            report=report,
            view=(pool_dir / "runs/0/embedding_view.png").read_bytes(),
        )
        session.commit(update)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("root", type=Path, help="an absent or empty folder")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument(
        "--commits",
        type=int,
        default=1,
        help="add the N samples in this many commits (runs bulk-1, bulk-2...): a commit of\n"
        "1,000,000 x 510 rows holds over 9 GB; one of 250,000 about a quarter of it",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    first_run(args.root)
    t1 = time.perf_counter()
    keys, mtimes = link_bulk(args.root, args.n)
    t2 = time.perf_counter()
    bounds = np.linspace(0, args.n, args.commits + 1).astype(int)
    for part, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        commit_bulk(args.root, keys[a:b], mtimes[a:b], seed=part)
    t3 = time.perf_counter()
    print(f"first run {t1 - t0:.1f} s, {args.n} links {t2 - t1:.1f} s, commit {t3 - t2:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
