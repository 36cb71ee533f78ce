"""A commit that writes the pool CSV whole (a first run of --proportion 1, --process-all, a run
whose changed files drop samples, an rm): datapool's writer (csvfile.csv_bytes, the rows
formatted by the C++ core, _core.format_pool_csv_rows) against the pure-Python formatter it
replaced (each float `"{:.9g}".format`, kept below as the baseline), both staged a block of rows
at a time through the same journal.Transaction, in one run.

Session 17 made the writer stage blocks (a commit of 21,000 x 510 had held the Python floats of
the whole matrix, the text and its bytes at once); Session 18 moved the formatting into the
core: a 1,000,000 x 510 rewrite spent minutes in it. Both ways stage the same file (SHA-256); the
figures are the time (median of the repeats) and the peak of tracemalloc's traced memory (one
more run each, traced).

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
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from datapool.pool import csvfile, journal
from datapool.pool.layout import CSV_NAME


def python_blocks(names: list[str], emb: np.ndarray, labels: np.ndarray) -> Iterator[bytes]:
    """csvfile.csv_bytes as it was up to Session 17: the same blocks, formatted in Python."""
    yield (",".join(csvfile.header(emb.shape[1])) + "\n").encode()
    fmt = "{:.9g}".format
    quoted = csvfile.quote_fields(names, formulas=True)
    labs = labels.tolist()
    for start in range(0, len(quoted), 256):
        stop = start + 256
        block = []
        for name, row, label in zip(quoted[start:stop], emb[start:stop], labs[start:stop]):
            values = ",".join(map(fmt, row.tolist()))
            block.append(f"{name},{values},{label}\n" if values else f"{name},{label}\n")
        yield "".join(block).encode()


def stage_python(root: Path, names: list[str], emb: np.ndarray, labels: np.ndarray) -> None:
    with journal.Transaction(root) as txn:
        txn.stage(CSV_NAME, python_blocks(names, emb, labels))
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
    ways = {"baseline (Python format)": stage_python, "datapool (C++ core)": stage_blocks}
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
    base = "baseline (Python format)"
    bt, bp = statistics.median(times[base]), statistics.median(peaks[base])
    for way in ways:
        t, p = statistics.median(times[way]), statistics.median(peaks[way])
        print(
            f"{way:34s} median {t:7.2f} s  peak traced {p:7.1f} MiB  "
            f"ratio time {t / bt:.2f}, memory {p / bp:.2f}"
        )


if __name__ == "__main__":
    main()
