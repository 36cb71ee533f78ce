"""The sidecar catching up with rows a commit appended to the pool CSV (every command after a
run that added samples): datapool (sidecar.load: the reader parses the appended records in the
memory-mapped file, _core.read_pool_csv(body_start=...)) against the catch-up as it was up to
Session 17 (kept below: the tail read into bytes, prefixed with the header, copied again by
_core.parse_pool_csv, and the new embeddings copied by tobytes()), in one run.

A commit that appended 1,000,000 x 510 rows (bench/make_big_pool.py) was killed for memory in
the old catch-up: 22.5 GB. Each way runs in a child process of its own on a copy of the same pool
(CSV plus sidecar, the tail not yet caught up), so its peak RSS (ru_maxrss, which counts the
pages of the mapped CSV it touched too) is its own; both must return the same names, embeddings
(bit for bit) and labels, and leave the same sidecar manifest.

    PYTHONPATH=python python bench/bench_sidecar_catchup.py                 # 200,000 x 510 appended
    PYTHONPATH=python python bench/bench_sidecar_catchup.py --rows 20000    # quick
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
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from datapool.pool import csvfile, sidecar
from datapool.pool.layout import CSV_NAME, SIDECAR_DIR


def baseline_catch_up(
    csv_path: Path, folder: Path, m: dict[str, Any], dim: int | None, st: Any, may_write: bool
) -> sidecar.Loaded:
    """sidecar._catch_up as it was up to Session 17 (error paths left out)."""
    from datapool import _core

    committed = int(m["csv"]["bytes"])
    with open(csv_path, "rb") as f:
        f.seek(committed - 1)
        tail = f.read(st.st_size - committed + 1)
    tail = tail[1 : tail.rfind(b"\n") + 1]
    d = int(m["dim"])
    head = (",".join(csvfile.header(d)) + "\n").encode()
    new_names, new_emb, new_labels = _core.parse_pool_csv(head + tail, dim=d)
    names, _, labels = sidecar._map(folder, m)
    all_names = names + new_names
    all_labels = np.concatenate([labels, new_labels])
    old = m["files"]
    data = {
        sidecar.SIDECAR_EMBEDDINGS: new_emb.tobytes(),
        sidecar.SIDECAR_LABELS: new_labels.astype("<i8").tobytes(),
        sidecar.SIDECAR_NAMES: sidecar._names_blob(new_names),
    }
    files = {
        k: sidecar._append_durably(folder / k, old[k]["bytes"], v, old[k]["crc32"])
        for k, v in data.items()
    }
    length = committed + len(tail)
    head_crc, tail_crc = sidecar._edges(csv_path, length)
    csv_entry = {
        **m["csv"],
        "bytes": length,
        "crc32": zlib.crc32(tail, m["csv"]["crc32"]),
        "head_crc32": head_crc,
        "tail_crc32": tail_crc,
    }
    sidecar._write_manifest(folder, {**m, "rows": len(all_names), "csv": csv_entry, "files": files})
    rows = len(all_names)
    emb_all = np.memmap(folder / sidecar.SIDECAR_EMBEDDINGS, np.float32, "r", shape=(rows, d))
    return all_names, emb_all, all_labels


def child(way: str, root: str, dim: int, out: Any) -> None:
    if way == "baseline":
        sidecar._catch_up = baseline_catch_up  # type: ignore[assignment]
    csv = Path(root) / CSV_NAME

    def no_rebuild(*args: Any) -> None:
        raise AssertionError("the sidecar was rebuilt, not caught up")

    sidecar._build = no_rebuild  # type: ignore[assignment]
    t = time.perf_counter()
    names, emb, labels = sidecar.load(csv, dim=dim)
    took = time.perf_counter() - t
    digest = hashlib.sha256()
    digest.update("\0".join(names).encode())
    digest.update(np.ascontiguousarray(emb).tobytes())
    digest.update(labels.tobytes())
    manifest = json.loads((Path(root) / SIDECAR_DIR / "manifest.json").read_text())
    manifest["csv"].pop("ino", None)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put((took, rss, digest.hexdigest(), json.dumps(manifest, sort_keys=True)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", type=int, default=1000, help="rows in the pool before the append")
    ap.add_argument("--rows", type=int, default=200_000, help="rows appended")
    ap.add_argument("--dim", type=int, default=510)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    rng = np.random.default_rng(5)
    work = Path(tempfile.mkdtemp(prefix="bench_sidecar_catchup.", dir=a.dir))
    try:
        seed = work / "seed"
        seed.mkdir()
        csv = seed / CSV_NAME

        def rows(n: int, start: int) -> tuple[list[str], np.ndarray, np.ndarray]:
            emb = rng.standard_normal((n, a.dim), np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            return (
                [f"cam {i % 9}/img_{i:07d}.jpg" for i in range(start, start + n)],
                emb,
                (np.full(n, start % 7, np.int64)),
            )

        with open(csv, "wb") as f:
            for block in csvfile.csv_bytes(*rows(a.base, 0)):
                f.write(block)
        sidecar.load(csv, dim=a.dim)  # the sidecar of the pool before the append
        with open(csv, "ab") as f:
            for start in range(0, a.rows, 50_000):
                n = min(50_000, a.rows - start)
                for block in csvfile.csv_bytes(*rows(n, a.base + start), with_header=False):
                    f.write(block)
        tail_mb = (
            csv.stat().st_size
            - json.loads((seed / SIDECAR_DIR / "manifest.json").read_text())["csv"]["bytes"]
        ) / 1e6
        print(
            f"# bench_sidecar_catchup: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}; {a.base} rows, then "
            f"{a.rows} x {a.dim} appended ({tail_mb:.0f} MB of text)"
        )
        ctx = mp.get_context("spawn")
        results = {}
        # The same CSV (the sidecar trusts only the inode it recorded), the sidecar as it was
        # before the catch-up restored for each way.
        shutil.copytree(seed / SIDECAR_DIR, work / "sidecar-before")
        for way in ("baseline", "datapool"):
            shutil.rmtree(seed / SIDECAR_DIR)
            shutil.copytree(work / "sidecar-before", seed / SIDECAR_DIR)
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(way, str(seed), a.dim, q))
            p.start()
            results[way] = q.get()
            p.join()
            if p.exitcode:
                raise SystemExit(f"{way} exited with {p.exitcode}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (bt, brss, bdig, bman), (_, _, ddig, dman) = results["baseline"], results["datapool"]
    assert bdig == ddig, "the catch-ups returned different rows"
    assert bman == dman, "the catch-ups left different sidecar manifests"
    print("same rows (names, embeddings bit for bit, labels) and sidecar manifest: yes")
    for way, (t, rss, *_) in results.items():
        print(
            f"{way:9s} {t:7.2f} s  peak RSS {rss:8.0f} MiB  ratio time {t / bt:.2f}, "
            f"RSS {rss / brss:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
