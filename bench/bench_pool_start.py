"""The pool-aware start: each candidate's distance to the nearest of M pool rows.

datapool computes it in the C++ core with exact difference-based distances, blocked so that a few
candidates stay in L1 while pool rows stream past. The baseline, timed in the same run on the same
data, is NumPy's matmul version: |x|^2 + |p|^2 - 2 x.p^T in chunks, min over the pool (BLAS sgemm,
limited to the same number of threads). Both must give the same first pick (the candidate farthest
from the pool) and the same distance, to 1e-4 relative (the matmul version loses precision to
cancellation; datapool's does not).

    python bench/bench_pool_start.py                  # N=100k, M=20k, d=128, 1 thread
    python bench/bench_pool_start.py --quick          # N=20k, M=5k, d=64
    python bench/bench_pool_start.py --threads 0      # every core for both
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import datapool


def clustered(rng: np.random.Generator, n: int, d: int, clusters: int = 1000) -> np.ndarray:
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.1 * rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_nearest(x: np.ndarray, pool: np.ndarray, chunk: int = 4096) -> np.ndarray:
    pn = (pool * pool).sum(1)
    out = np.empty(len(x), np.float32)
    for s in range(0, len(x), chunk):
        xc = x[s : s + chunk]
        d2 = (xc * xc).sum(1)[:, None] + pn[None, :] - 2.0 * (xc @ pool.T)
        out[s : s + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--m", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="0: every core (both sides)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.n, a.m, a.d, a.repeats = 20_000, 5_000, 64, 1
    # The runner's path: its rows are unit already, and it makes no check pass (0.3.0's public
    # select_diverse checks the rows' lengths first unless told not to).
    params = inspect.signature(datapool.select_diverse).parameters
    RAW = {"check_unit_rows": False} if "check_unit_rows" in params else {}
    rng = np.random.default_rng(7)
    cand, pool = clustered(rng, a.n, a.d), clustered(rng, a.m, a.d)
    blas_threads = a.threads or None

    ours, theirs = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        sel = datapool.select_diverse(
            cand, 1, selected=pool, algorithm="brute", threads=a.threads, **RAW
        )
        ours.append(time.perf_counter() - t)
        with threadpool_limits(limits=blas_threads):
            t = time.perf_counter()
            near = numpy_nearest(cand, pool)
            first = int(np.argmax(near))
            theirs.append(time.perf_counter() - t)
    # Same answer: the farthest candidate from the pool and its distance.
    exact = float(np.sqrt(((cand[first].astype(np.float64) - pool) ** 2).sum(1).min()))
    ok_index = (
        int(sel.indices[0]) == first
        or abs(float(near[int(sel.indices[0])]) - near[first]) <= 1e-4 * near[first]
    )
    ok_dist = abs(float(sel.min_distances[0]) - exact) <= 1e-4 * exact
    mo, mt = statistics.median(ours), statistics.median(theirs)
    macs = a.n * a.m * a.d
    print(f"N={a.n} candidates, M={a.m} pool rows, d={a.d}, threads={a.threads or 'all'}")
    print(f"{'':34s} {'median s':>9s} {'G mult-adds/s':>14s}")
    print(f"{'datapool (exact differences)':34s} {mo:9.3f} {macs / mo / 1e9:14.1f}")
    print(f"{'NumPy matmul (norms trick)':34s} {mt:9.3f} {macs / mt / 1e9:14.1f}")
    print(f"datapool / NumPy time: {mo / mt:.2f}")
    print(
        f"check: first pick {int(sel.indices[0])} vs {first}, distance {float(sel.min_distances[0]):.6f} "
        f"vs float64 {exact:.6f}: {'ok' if ok_index and ok_dist else 'MISMATCH'}"
    )
    return 0 if ok_index and ok_dist else 1


if __name__ == "__main__":
    sys.exit(main())
