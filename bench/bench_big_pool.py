"""A run into a big pool: what the view, the report page and the commit do with the pool's
embeddings, datapool (read in place: view.RowStack, chunked PCA, store.rows_after without a
stack) against the copies it made before (the baseline, kept here), in one process.

The pool is an (n, d) float32 memory map on disk, as a pool's sidecar is; a run adds 100 rows
and saw 1000 candidates. Each side projects the pool after the run plus the unselected
candidates (the view's map) and builds the commit's rows; both must give the same map (to
float32 rounding: max abs difference printed, at most 1e-4 of its range) and the same rows.
Prints the median time of each, their ratio, and the bytes each allocated at most (tracemalloc,
which NumPy reports its buffers to).

    PYTHONPATH=python python bench/bench_big_pool.py                  # 200,000 x 510
    PYTHONPATH=python python bench/bench_big_pool.py --n 50000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from datapool.pool.store import rows_after
from datapool.view import MAX_PCA_FIT_ROWS, RowStack, _top_axes, pca_2d


def baseline_pca(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """pca_2d(x, fit=x) as it was: the fit sample, then the whole matrix centred at once."""
    out = np.zeros((x.shape[0], 2))
    fit, fit_is_x = x, True
    if x.shape[0] > MAX_PCA_FIT_ROWS:
        rows = np.random.default_rng(seed).choice(x.shape[0], MAX_PCA_FIT_ROWS, replace=False)
        fit, fit_is_x = x[np.sort(rows)], False
    mean = fit.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = np.asarray(fit, dtype=np.float32) - mean
    axes = _top_axes(centred, 2)
    axes *= np.sign(axes[np.arange(axes.shape[0]), np.abs(axes).argmax(axis=1)])[:, None]
    rows_x = centred if fit_is_x else np.asarray(x, dtype=np.float32) - mean
    out[:, :2] = rows_x @ axes.T.astype(np.float32)
    return out


class _Pool:  # what rows_after reads of a Pool
    def __init__(self, names, embeddings, labels):
        self.filenames, self.embeddings, self.labels = names, embeddings, labels

    def __len__(self):
        return len(self.filenames)


class _Update:  # what rows_after reads of a PoolUpdate
    def __init__(self, n, new):
        self.reset, self.keep, self.renames = False, np.ones(n, bool), {}
        self.new_names = [f"new/{i}.jpg" for i in range(len(new))]
        self.new_embeddings, self.new_labels = new, np.ones(len(new), np.int64)


def baseline(pool, keep, new, cands, unselected):
    kept = pool[keep]  # runner._run, _view and run_report_html each took this copy
    both = np.concatenate([np.concatenate([kept, new]), cands[unselected]])
    xy = baseline_pca(both)
    rows = np.concatenate([pool, new])  # store.rows_after, for an append
    return xy, rows


def datapool_side(pool, keep, new, cands, unselected, p, u):
    rows = RowStack(pool).where(keep) + RowStack(new) + RowStack(cands).where(unselected)
    xy = pca_2d(rows)
    committed = rows_after(p, u)  # type: ignore[arg-type]
    return xy, committed


def timed(fn, repeats):
    times, peaks, out = [], [], None
    for _ in range(repeats):
        tracemalloc.start()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(times), max(peaks), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=510)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where the pool's memory map goes (temp)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        path = Path(tmp) / "pool.f32"
        mm = np.memmap(path, np.float32, "w+", shape=(a.n, a.d))
        for s in range(0, a.n, 50_000):
            mm[s : s + 50_000] = rng.standard_normal((min(50_000, a.n - s), a.d), np.float32)
        mm.flush()
        del mm
        pool = np.memmap(path, np.float32, "r", shape=(a.n, a.d))
        keep = np.ones(a.n, bool)
        new = rng.standard_normal((100, a.d), np.float32)
        cands = rng.standard_normal((1000, a.d), np.float32)
        unselected = np.ones(1000, bool)
        unselected[rng.choice(1000, 100, replace=False)] = False
        p = _Pool([f"{i}.jpg" for i in range(a.n)], pool, np.zeros(a.n, np.int64))
        u = _Update(a.n, new)
        np.asarray(pool).sum()  # in the page cache for both
        b_s, b_peak, (b_xy, b_rows) = timed(
            lambda: baseline(pool, keep, new, cands, unselected), a.repeats
        )
        d_s, d_peak, (d_xy, d_rows) = timed(
            lambda: datapool_side(pool, keep, new, cands, unselected, p, u), a.repeats
        )
        diff = float(np.abs(b_xy - d_xy).max())
        span = float(np.ptp(b_xy, axis=0).max())
        assert diff <= 1e-4 * span, (diff, span)
        assert d_rows.appended and len(d_rows.names) == len(b_rows)
        np.testing.assert_array_equal(d_rows.embeddings[-100:], b_rows[-100:])
        print(
            f"pool {a.n} x {a.d} (memory map, {pool.nbytes / 2**20:.0f} MiB), +100 rows, 900 unselected"
        )
        print(f"same map: max abs difference {diff:.2e} of a range of {span:.2f}; same rows")
        print(f"baseline (copies)  median {b_s:7.3f} s   peak traced {b_peak / 2**20:7.1f} MiB")
        print(f"datapool (in place) median {d_s:7.3f} s   peak traced {d_peak / 2**20:7.1f} MiB")
        print(f"ratio datapool/baseline: time {d_s / b_s:.3f}, peak memory {d_peak / b_peak:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
