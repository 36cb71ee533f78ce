"""The PCA maps a run draws: its PNG view (view.embedding_view_png: the pool after the run, then
all the candidates it did not select) and its report page (report_html.map_data: a sample of at
most 100,000 of those candidates first, then the pool). Each fits its own rows (a seeded sample
of 20,000 of them, so the order matters: the fits differ), so neither can take the other's
coordinates; both project every pool row. Up to Session 18 each read and projected the pool
alone (pca_2d twice); datapool now reads each chunk of the pool once and projects it for both
fits (view.pca_2d_shared). Both ways in one run, alternating, on the same rows: the coordinates
must be the same bit for bit.

The pool is a memory-mapped float32 matrix, as a run sees it through the sidecar: a seeded one
made in a temporary file, or --embeddings, a pool's .sidecar/embeddings.f32 (--dim its width).

    PYTHONPATH=python python bench/bench_view_pca.py                       # 200,000 x 510
    PYTHONPATH=python python bench/bench_view_pca.py --embeddings POOL/.sidecar/embeddings.f32
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from datapool.report_html import map_rows
from datapool.view import RowStack, pca_2d, pca_2d_shared


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=510)
    ap.add_argument("--embeddings", type=Path, default=None)
    ap.add_argument("--new", type=int, default=3, help="this run's picks")
    ap.add_argument("--candidates", type=int, default=500, help="its candidates not selected")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    tmp = None
    if a.embeddings is None:
        tmp = tempfile.NamedTemporaryFile(prefix="bench_view_pca.", suffix=".f32", delete=False)
        rng = np.random.default_rng(0)
        for s in range(0, a.rows, 65536):
            tmp.write(rng.standard_normal((min(65536, a.rows - s), a.dim), np.float32).tobytes())
        tmp.close()
        path = Path(tmp.name)
    else:
        path = a.embeddings
    try:
        n = path.stat().st_size // (4 * a.dim)
        pool = np.memmap(path, np.float32, "r", shape=(n, a.dim))
        rng = np.random.default_rng(1)
        new = rng.standard_normal((a.new, a.dim)).astype(np.float32)
        cands = rng.standard_normal((a.candidates + a.new, a.dim)).astype(np.float32)
        unselected = np.ones(len(cands), bool)
        unselected[: a.new] = False
        labels = np.concatenate([np.zeros(n, np.int64), np.ones(a.new, np.int64)])
        kept = RowStack(pool) + RowStack(new)
        view_rows = kept + RowStack(cands).where(unselected)
        page_rows = map_rows(kept, labels, 1, RowStack(cands).where(unselected))
        print(
            f"# bench_view_pca: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}; a pool of {n} x {a.dim} "
            f"({'--embeddings ' + str(path) if tmp is None else 'seeded'}), {a.new} new, "
            f"{a.candidates} candidates not selected"
        )
        times: dict[str, list[float]] = {"baseline": [], "datapool": []}
        answers: dict[str, tuple[np.ndarray, ...]] = {}
        for _ in range(a.repeats):
            t = time.perf_counter()
            answers["baseline"] = (pca_2d(view_rows), pca_2d(page_rows))
            times["baseline"].append(time.perf_counter() - t)
            t = time.perf_counter()
            answers["datapool"] = tuple(pca_2d_shared(view_rows, page_rows))
            times["datapool"].append(time.perf_counter() - t)
        print(f"# load after: {os.getloadavg()[0]:.1f}")
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    same = all(np.array_equal(x, y) for x, y in zip(answers["baseline"], answers["datapool"]))
    assert same, "the coordinates differ"
    print("same coordinates, view's and page's, bit for bit: yes")
    base = statistics.median(times["baseline"])
    for way, ts in times.items():
        med = statistics.median(ts)
        shown = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{way:9s} median {med:7.2f} s  ({shown})  ratio {med / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
