"""GPU rows of bench_select.py (`--device cuda`): datapool's CUDA kernel against a brute force on
the same GPU. Needs a GPU, a CUDA build of datapool (`_core.HAS_CUDA`) and, for the baselines,
CuPy or torch (torch_cluster adds its `fps`); without a GPU it says so and exits 2. It never
prints a figure it did not measure.

    python bench/bench_select.py --device cuda --sizes 1000000x512 --k 1000,10000 --data clustered,uniform

Rows, on one float32 N×d array (the data of bench_select.py):
  datapool cuda     `select_diverse(X, k, device="cuda")`: the whole run, host-to-device copy of
                    X included (it is part of every call)
  cupy brute        the same loop written with CuPy on the device: per pick
                    `d = ((X - X[c])**2).sum(1)`, `mind = minimum(mind, d)`, `argmax(mind)`;
                    X copied to the device outside the timing
  torch brute       the same with torch on "cuda"
  torch_cluster fps `torch_cluster.fps(X, ratio=k/N, random_start=False)` (one point cloud; it
                    runs one block per cloud, so it is the design the issue contrasts)
Brute baselines longer than --max-run-s are timed over their first --partial-steps picks and
extrapolated (marked ~), as bench_select.py does for the CPU peers.

Checks before times count: datapool cuda's picks against datapool on the CPU (`kernels="scalar"`,
`algorithm="brute"`: the same bits, docs/gpu.md) for the first --verify-steps picks, and each
baseline's picks against datapool cuda's up to its first near-tie (relative 1e-5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _gpu_or_reason() -> str | None:
    from datapool import _core

    if not _core.HAS_CUDA:
        return "this datapool has no CUDA (_core.HAS_CUDA is False): build with -DDATAPOOL_CUDA=ON"
    if _core.cuda_device_count() == 0:
        return f"no usable CUDA device ({_core.cuda_status()})"
    return None


def _baselines() -> dict[str, Callable[[np.ndarray, int], Callable[[], np.ndarray]]]:
    """Each baseline: (X, k) -> a timed callable returning the picks; X is moved to the device
    by the factory, outside the timing."""
    out: dict[str, Callable[[np.ndarray, int], Callable[[], np.ndarray]]] = {}
    try:
        import cupy as cp

        def cupy_brute(x: np.ndarray, k: int) -> Callable[[], np.ndarray]:
            dx = cp.asarray(x)

            def run() -> np.ndarray:
                mind = cp.full(dx.shape[0], cp.inf, dtype=cp.float32)
                picks = [0]
                for _ in range(k - 1):
                    diff = dx - dx[picks[-1]]
                    mind = cp.minimum(mind, (diff * diff).sum(1))
                    picks.append(int(cp.argmax(mind)))
                return np.asarray(picks)

            return run

        out["cupy brute"] = cupy_brute
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():

            def torch_brute(x: np.ndarray, k: int) -> Callable[[], np.ndarray]:
                dx = torch.from_numpy(x).cuda()

                def run() -> np.ndarray:
                    mind = torch.full((dx.shape[0],), float("inf"), device="cuda")
                    picks = [0]
                    for _ in range(k - 1):
                        diff = dx - dx[picks[-1]]
                        mind = torch.minimum(mind, (diff * diff).sum(1))
                        picks.append(int(torch.argmax(mind)))
                    return np.asarray(picks)

                return run

            out["torch brute"] = torch_brute
            try:
                import torch_cluster

                def tc_fps(x: np.ndarray, k: int) -> Callable[[], np.ndarray]:
                    dx = torch.from_numpy(x).cuda()

                    def run() -> np.ndarray:
                        idx = torch_cluster.fps(dx, ratio=k / dx.shape[0], random_start=False)
                        return idx.cpu().numpy()[:k]

                    return run

                out["torch_cluster fps"] = tc_fps
            except ImportError:
                pass
    except ImportError:
        pass
    return out


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def _first_divergence(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


def main_gpu(
    a: argparse.Namespace,
    sizes: list[tuple[int, int]],
    ks: list[int],
    make_data: Callable[..., np.ndarray],
) -> int:
    """The GPU table for bench_select.py's parsed arguments (data, seed, repeats, ...)."""
    why = _gpu_or_reason()
    if why is not None:
        print(f"--device cuda needs a GPU: {why}. No GPU rows measured.", file=sys.stderr)
        return 2
    import datapool
    from bench_select import RAW
    from datapool import _core

    print(f"device: {_core.cuda_status()}; datapool {datapool.__version__}")
    print("command: " + " ".join(["python bench/bench_select.py", *sys.argv[1:]]))
    baselines = _baselines()
    if not baselines:
        print("no baseline on the GPU (install cupy or torch): datapool cuda rows only")
    failures: list[str] = []
    print(f"{'data':>10} {'N×d':>14} {'k':>6}  {'row':<18} {'median s':>10}  {'ratio':>7}  check")
    for kind in a.data:
        for n, d in sizes:
            x = make_data(kind, n, d, a.seed, a.clusters, a.spread)
            for k in ks:
                if k > n:
                    continue
                t_dp, sel = _time(
                    lambda x=x, k=k: datapool.select_diverse(x, k, device="cuda", **RAW), a.repeats
                )
                steps = min(k, a.verify_steps)
                cpu = datapool.select_diverse(x, steps, algorithm="brute", kernels="scalar", **RAW)
                ok = np.array_equal(sel.indices[:steps], cpu.indices) and np.array_equal(
                    sel.min_distances[:steps], cpu.min_distances
                )
                if not ok:
                    failures.append(f"{kind} {n}x{d} k={k}: datapool cuda differs from the CPU")
                print(
                    f"{kind:>10} {n:>8}×{d:<5} {k:>6}  {'datapool cuda':<18} {t_dp:>10.3f}  "
                    f"{1.0:>7.2f}  {'bits = CPU scalar' if ok else 'CHECK FAILED'}"
                )
                for name, factory in baselines.items():
                    partial = name != "torch_cluster fps" and k > a.partial_steps
                    kk = a.partial_steps if partial else k
                    t, picks = _time(factory(x, kk), 1 if partial else a.repeats)
                    t_full = t * (k - 1) / (kk - 1) if partial and kk > 1 else t
                    same = _first_divergence(np.asarray(picks), sel.indices)
                    mark = "~" if partial else " "
                    print(
                        f"{kind:>10} {n:>8}×{d:<5} {k:>6}  {name:<18} {mark}{t_full:>9.3f}  "
                        f"{t_full / t_dp:>7.2f}  same picks for the first {same} of {kk}"
                    )
    if failures:
        print("\nCHECK FAILED:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0
