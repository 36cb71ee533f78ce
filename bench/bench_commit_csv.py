"""A commit that writes the pool CSV whole (a first run of --proportion 1, --process-all, an rm):
staged a block of rows at a time (csvfile.csv_bytes) against the whole text and then its bytes
(what the folder store staged before), in one run, through the same journal.Transaction.

Before, a commit of 21,000 x 510 rows held the Python floats of the whole matrix, the 139 MB text
and its 139 MB of bytes at once: the run's peak RSS (420 MiB after selection, 880 MiB in the
commit; bench/RESULTS.md, Session 17). Both ways stage the same file (SHA-256); the figures are
the time (median of the repeats) and the peak of tracemalloc's traced memory (one more run
each, traced).

    python bench/bench_commit_csv.py                  # 21,000 x 510, 3 repeats
    python bench/bench_commit_csv.py --quick          # 2,000 x 510, 1 repeat
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from datapool.pool import csvfile, journal
from datapool.pool.layout import CSV_NAME


def stage_whole(root: Path, names: list[str], emb: np.ndarray, labels: np.ndarray) -> None:
    with journal.Transaction(root) as txn:
        txn.stage(CSV_NAME, csvfile.format_csv(names, emb, labels).encode())
        txn.commit()


def stage_blocks(root: Path, names: list[str], emb: np.ndarray, labels: np.ndarray) -> None:
    with journal.Transaction(root) as txn:
        txn.stage(CSV_NAME, csvfile.csv_bytes(names, emb, labels))
        txn.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=21000)
    ap.add_argument("--dim", type=int, default=510)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    rows, repeats = (2000, 1) if a.quick else (a.rows, a.repeats)
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(rows, a.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = [f"site {i % 7}/cam,{i % 5}/ünï {i:06d}.jpg" for i in range(rows)]
    labels = (np.arange(rows) // 1000).astype(np.int64)
    print(
        f"# bench_commit_csv: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}; {rows} x {a.dim} rows staged and committed"
    )
    work = Path(tempfile.mkdtemp(prefix="bench_commit_csv.", dir=a.dir))
    ways = {"baseline (whole text, then bytes)": stage_whole, "datapool (blocks)": stage_blocks}
    times: dict[str, list[float]] = {w: [] for w in ways}
    peaks: dict[str, list[float]] = {w: [] for w in ways}
    digests: dict[str, str] = {}
    try:
        for _ in range(repeats):
            for way, fn in ways.items():
                root = work / way.split()[0]
                root.mkdir()
                t = time.perf_counter()
                fn(root, names, emb, labels)
                times[way].append(time.perf_counter() - t)
                digests[way] = hashlib.sha256((root / CSV_NAME).read_bytes()).hexdigest()
                shutil.rmtree(root)
        for way, fn in ways.items():  # once more each, traced (tracemalloc slows it 5x)
            root = work / way.split()[0]
            root.mkdir()
            tracemalloc.start()
            fn(root, names, emb, labels)
            peaks[way].append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
            shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert len(set(digests.values())) == 1, digests
    print("same CSV (SHA-256): yes")
    base = "baseline (whole text, then bytes)"
    bt, bp = statistics.median(times[base]), statistics.median(peaks[base])
    for way in ways:
        t, p = statistics.median(times[way]), statistics.median(peaks[way])
        print(
            f"{way:34s} median {t:7.2f} s  peak traced {p:7.1f} MiB  "
            f"ratio time {t / bt:.2f}, memory {p / bp:.2f}"
        )


if __name__ == "__main__":
    main()
