"""Incremental runs: how much cheaper is a second run that finds 100 new files among 1100?

A folder of N small JPEGs (made with PyAV) goes through `datapool.run`; then M new JPEGs arrive
and datapool runs again. The baseline, timed in the same process on the same data, is that second
run done without the ledger: the whole bucket into a fresh pool (what `--process-all` does:
decode, embed and select everything again), which is what a tool with no memory of earlier runs
must do.

    python bench/bench_incremental.py            # 1000 + 100 images, 3 repeats
    python bench/bench_incremental.py --quick    # 200 + 20 images, 1 repeat

It times the runs two ways: `datapool.run` calls in this process (the run itself), and
`datapool run` command lines in fresh processes (what a user waits for, interpreter start-up and
imports included).

Both second runs are checked: the incremental one processes exactly the M new files, and the
pool it leaves holds every sample of the first run plus new ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import datapool
from datapool.media import write_image


def make_images(
    root: Path, start: int, count: int, seed: int, size: tuple[int, int] = (96, 72)
) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    y = np.linspace(0, 1, h)[:, None, None]
    x = np.linspace(0, 1, w)[None, :, None]
    for i in range(start, start + count):
        img = rng.uniform(0, 1, 3) * (1 - y) + rng.uniform(0, 1, 3) * y * x
        for _ in range(3):
            bh, bw = rng.integers(h // 12, int(h / 2.4), 2)
            y0, x0 = rng.integers(0, h - bh), rng.integers(0, w - bw)
            img[y0 : y0 + bh, x0 : x0 + bw] = rng.uniform(0, 1, 3)
        img += rng.normal(0, 0.03, img.shape)
        write_image(
            root / f"d{i // 100:02d}" / f"img{i:05d}.jpg",
            (np.clip(img, 0, 1) * 255).astype(np.uint8),
        )


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def cpu_s() -> float:
    """CPU seconds this process has used, all its threads (onnxruntime's and FFmpeg's too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed_cpu(fn, *args, **kwargs):
    """(wall s, CPU s, result) of one call."""
    c = cpu_s()
    t, out = timed(fn, *args, **kwargs)
    return t, cpu_s() - c, out


def cli_run(bucket: Path, pool: Path, n: int, options: list[str]) -> float:
    cmd = [
        sys.executable,
        "-m",
        "datapool",
        "run",
        str(bucket),
        "--pool",
        str(pool),
        "--n-samples",
        str(n),
        "--no-progress",
        *options,
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", type=int, default=1000)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", default="96x72", help="image width x height (default 96x72)")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="datapool's --threads (onnxruntime, packing, selection); 0: its default",
    )
    ap.add_argument(
        "--decode-workers", type=int, default=0, help="datapool's --decode-workers; 0: its default"
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.lower().split("x"))
    if a.quick:
        a.first, a.new, a.repeats = 200, 20, 1
    run_opts = {"threads": a.threads, "decode_workers": a.decode_workers, "progress": False}
    cli_opts = ["--threads", str(a.threads), "--decode-workers", str(a.decode_workers)]

    work = Path(tempfile.mkdtemp(prefix="datapool-bench-"))
    try:
        base_bucket = work / "bucket-first"
        new_files = work / "bucket-new"
        t_make, _ = timed(make_images, base_bucket, 0, a.first, seed=1, size=size)
        make_images(new_files, a.first, a.new, seed=2, size=size)
        print(
            f"made {a.first} + {a.new} JPEGs ({a.size}) in {t_make:.1f} s; threads {a.threads}, "
            f"decode workers {a.decode_workers} (0: datapool's default)"
        )

        # Warm-up, untimed: imports and first calls (onnxruntime, FFmpeg, fonts) happen once per
        # process, and the in-process figures are about the runs themselves.
        warm = work / "bucket-warm-up"
        make_images(warm, 0, 20, seed=3, size=size)
        datapool.run(warm, work / "pool-warm-up", n_samples=5, **run_opts)

        first_t, second_t, baseline_t, cli_first, cli_second = [], [], [], [], []
        first_cpu, second_cpu = [], []
        phases: dict[str, list[dict[str, float]]] = {"first": [], "second": []}
        for rep in range(a.repeats):
            bucket = work / f"bucket-{rep}"
            shutil.copytree(base_bucket, bucket)
            pool = work / f"pool-{rep}"
            t1, cpu1, r1 = timed_cpu(datapool.run, bucket, pool, n_samples=100, **run_opts)
            shutil.copytree(new_files, bucket, dirs_exist_ok=True)
            t2, cpu2, r2 = timed_cpu(datapool.run, bucket, pool, n_samples=10, **run_opts)
            tb, rb = timed(
                datapool.run, bucket, work / f"pool-base-{rep}", n_samples=110, **run_opts
            )
            # Correctness: the incremental run saw exactly the new files and kept the first pool.
            assert r1.counts["processed"] == a.first, r1.counts
            assert r2.counts["processed"] == a.new and r2.counts["unchanged"] == a.first, r2.counts
            assert rb.counts["processed"] == a.first + a.new, rb.counts
            pool_after = datapool.Pool.open(pool)
            assert pool_after.filenames[: len(r1.selected)] == r1.selected
            for name, r, t in (("first", r1, t1), ("second", r2, t2)):
                timings = json.loads(r.report_path.read_text())["timings"]
                # The report is written before the commit: the rest of the run is the commit
                # (staging, fsyncs, the sidecar's append) and the bookkeeping around the phases.
                timings["commit_and_rest_s"] = t - sum(timings.values())
                phases[name].append(timings)
            first_t.append(t1)
            second_t.append(t2)
            first_cpu.append(cpu1)
            second_cpu.append(cpu2)
            baseline_t.append(tb)
            # The same two runs as command lines, each in a fresh process.
            cli_bucket = work / f"cli-bucket-{rep}"
            shutil.copytree(base_bucket, cli_bucket)
            cli_first.append(cli_run(cli_bucket, work / f"cli-pool-{rep}", 100, cli_opts))
            shutil.copytree(new_files, cli_bucket, dirs_exist_ok=True)
            cli_second.append(cli_run(cli_bucket, work / f"cli-pool-{rep}", 10, cli_opts))
            print(
                f"repeat {rep}: first {t1:.2f} s, second (incremental) {t2:.2f} s, "
                f"second without ledger {tb:.2f} s; command line: first {cli_first[-1]:.2f} s, "
                f"second {cli_second[-1]:.2f} s"
            )

        m1, m2, mb = (statistics.median(v) for v in (first_t, second_t, baseline_t))
        rows = [
            ("first run", a.first, m1),
            ("second run, incremental", a.new, m2),
            ("second run without ledger (baseline)", a.first + a.new, mb),
        ]
        print()
        print(
            f"machine: {platform.machine()}, {platform.processor() or '?'}, python {platform.python_version()}"
        )
        print(f"{'':40s} {'files':>6s} {'median s':>9s}")
        for name, files, t in rows:
            print(f"{name:40s} {files:6d} {t:9.2f}")
        print()
        print("phases (median ms): " + "  ".join(f"{k[:-2]:>15s}" for k in phases["first"][0]))
        for name in ("first", "second"):
            cols = [statistics.median(p[k] for p in phases[name]) for k in phases[name][0]]
            print(f"  {name:17s} " + "  ".join(f"{c * 1e3:15.1f}" for c in cols))
        fixed = statistics.median(p["decode_embed_s"] for p in phases["first"]) * a.new / a.first
        cores = os.cpu_count() or 1
        for name, wall, cpu, files in (
            ("first", first_t, first_cpu, a.first),
            ("second", second_t, second_cpu, a.new),
        ):
            c = statistics.median(cpu)
            print(
                f"  {name:17s} CPU {c * 1e3:.0f} ms in all threads, {c / files * 1e3:.2f} ms a file, "
                f"{c / statistics.median(wall) / cores:.0%} of {cores} cores"
            )
        print(
            f"second run less its share of the first run's decode+embed ({a.new}/{a.first} of it): "
            f"{(m2 - fixed) * 1e3:.0f} ms that does not scale with new files"
        )
        c1, c2 = statistics.median(cli_first), statistics.median(cli_second)
        print(f"second / first:                 {m2 / m1:.3f}  (acceptance: well under 0.2)")
        print(f"baseline / incremental second:  {mb / m2:.1f}x")
        print(
            f"command line, fresh processes:  first {c1:.2f} s, second {c2:.2f} s, "
            f"second / first {c2 / c1:.3f}"
        )
        if a.json:
            a.json.write_text(
                json.dumps(
                    {
                        "first_s": m1,
                        "second_s": m2,
                        "baseline_s": mb,
                        "cli_first_s": c1,
                        "cli_second_s": c2,
                        "first_cpu_s": statistics.median(first_cpu),
                        "second_cpu_s": statistics.median(second_cpu),
                        "first": a.first,
                        "new": a.new,
                        "repeats": a.repeats,
                    }
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
