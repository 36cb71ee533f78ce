"""The sidecar after a commit that rewrites the pool CSV (a changed or moved source file,
--process-all, `datapool rm`): datapool (sidecar.write_rows: the sidecar written from the rows
the commit has in memory, the CSV's length and CRCs gathered as its blocks were written,
sidecar.CsvDigest) against the way up to Session 18 (sidecar.load after the commit: the new
CSV's inode is not the one the manifest recorded, so the whole CSV just written is parsed back),
in one run.

Each way runs in a child process of its own (spawn), from the same pool before the rewrite (a
CSV of --base rows and its sidecar): it makes the same seeded rows (the rows a commit holds),
writes the CSV through csvfile.csv_bytes into a new file renamed over the old one (as the
journal does), then brings the sidecar up to it. Both must leave the same sidecar files (SHA-256)
and manifest (the CSV's inode aside). Peak RSS (ru_maxrss) counts the rows both hold and the
pages of the mapped CSV the parse touches.

    PYTHONPATH=python python bench/bench_sidecar_rewrite.py                 # 200,000 x 510
    PYTHONPATH=python python bench/bench_sidecar_rewrite.py --rows 20000    # quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from datapool.pool import csvfile, sidecar
from datapool.pool.layout import CSV_NAME, SIDECAR_DIR


def rows(n: int, dim: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = np.empty((n, dim), np.float32)
    for s in range(0, n, 65536):
        block = rng.standard_normal((min(65536, n - s), dim), np.float32)
        emb[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    names = [f"cam {i % 9}/img_{i:07d}.jpg" for i in range(n)]
    return names, emb, np.arange(n, dtype=np.int64) % 5


def child(way: str, root: str, n: int, dim: int, out: Any) -> None:
    csv = Path(root) / CSV_NAME
    names, emb, labels = rows(n, dim, 7)
    t0 = time.perf_counter()
    digest = sidecar.CsvDigest()
    blocks = csvfile.csv_bytes(names, emb, labels)
    tmp = csv.with_name(CSV_NAME + ".pending")
    with open(tmp, "wb") as f:
        for block in digest.wrap(blocks) if way == "datapool" else blocks:
            f.write(block)
        os.fsync(f.fileno())
    os.replace(tmp, csv)
    t1 = time.perf_counter()
    if way == "datapool":
        if not sidecar.write_rows(csv, names, emb, labels, digest):
            raise AssertionError("write_rows wrote nothing")
    else:
        sidecar.load(csv, dim=dim)
    t2 = time.perf_counter()
    folder = Path(root) / SIDECAR_DIR
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.name not in ("manifest.json", "lock")
    }
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["csv"].pop("ino")
    manifest.pop("self_crc")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put((t1 - t0, t2 - t1, rss, json.dumps([files, manifest], sort_keys=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", type=int, default=1000, help="rows in the pool before the rewrite")
    ap.add_argument("--rows", type=int, default=200_000, help="rows the rewrite writes")
    ap.add_argument("--dim", type=int, default=510)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_sidecar_rewrite.", dir=a.dir))
    results = {}
    try:
        seed = work / "seed"
        seed.mkdir()
        with open(seed / CSV_NAME, "wb") as f:
            for block in csvfile.csv_bytes(*rows(a.base, a.dim, 3)):
                f.write(block)
        sidecar.load(seed / CSV_NAME, dim=a.dim)  # the pool before the rewrite, its sidecar
        print(
            f"# bench_sidecar_rewrite: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}; a pool of {a.base} rows "
            f"rewritten with {a.rows} x {a.dim}"
        )
        ctx = mp.get_context("spawn")
        for way in ("baseline", "datapool"):
            root = work / way
            shutil.copytree(seed, root)
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(way, str(root), a.rows, a.dim, q))
            p.start()
            results[way] = q.get()
            p.join()
            if p.exitcode:
                raise SystemExit(f"{way} exited with {p.exitcode}")
            shutil.rmtree(root)
        print(f"# load after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert results["baseline"][3] == results["datapool"][3], "different sidecars"
    print("same sidecar files (SHA-256) and manifest (the CSV's inode aside): yes")
    bt, brss = results["baseline"][1], results["baseline"][2]
    for way, (csv_s, side_s, rss, _) in results.items():
        print(
            f"{way:9s} CSV written {csv_s:7.2f} s  sidecar {side_s:7.2f} s  peak RSS {rss:7.0f} "
            f"MiB  ratio sidecar time {side_s / bt:.2f}, RSS {rss / brss:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
