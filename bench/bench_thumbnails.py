"""Thumbnails: what do they cost a run, and what do they add to the report page?

The same folder of JPEGs (bench_incremental's images) goes through `datapool.run` into a fresh
pool with thumbnails (the default) and without (`thumbnails=False`, the CLI's
--no-thumbnails), alternating, in one process after an untimed warm-up. Then one second run
(100 new files) each way. It prints the medians, their ratio, the run's phases (decode+embed is
where thumbnails are made; the report page is where they are embedded; the commit writes the
segment), the pool's thumbnail bytes per sample and the report page's bytes per point.

    python bench/bench_thumbnails.py                        # 1000 JPEGs, 640x480, 5 repeats
    python bench/bench_thumbnails.py --size 96x72           # tiny images: the worst case
    python bench/bench_thumbnails.py --videos 8             # 720p videos instead (bench_ingest's)
    python bench/bench_thumbnails.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import datapool
from bench_incremental import make_images


def cpu_s() -> float:
    """CPU seconds of this process, all threads: less sensitive to other tenants than wall."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_run(bucket: Path, pool: Path, n: int, thumbnails: bool) -> tuple[float, dict, object]:
    c, t = cpu_s(), time.perf_counter()
    r = datapool.run(bucket, pool, n_samples=n, progress=False, thumbnails=thumbnails)
    wall = time.perf_counter() - t
    timings = json.loads(Path(r.report_path).read_text())["timings"]
    timings["cpu_all_threads_s"] = cpu_s() - c
    timings["wall_s"] = wall
    return wall, timings, r


def thumbnail_cpu(bucket: Path, pool: Path) -> float:
    """Thread CPU seconds per thumbnail, measured around decode._thumbnail in a real run."""
    import threading

    import datapool.ingest.decode as decode

    spent, lock, inner = [0.0, 0], threading.Lock(), decode._thumbnail

    def timed(frame, rgb):
        t = time.thread_time()
        out = inner(frame, rgb)
        with lock:
            spent[0] += time.thread_time() - t
            spent[1] += 1
        return out

    decode._thumbnail = timed
    try:
        datapool.run(bucket, pool, n_samples=10, progress=False)
    finally:
        decode._thumbnail = inner
    return spent[0] / max(spent[1], 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--videos", type=int, default=0, help="720p videos of 90 frames instead")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.files, a.new, a.repeats = 200, 20, 1
    size = tuple(int(v) for v in a.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="datapool-bench-thumbs-"))
    try:
        bucket, new = work / "bucket", work / "new"
        if a.videos:
            from bench_ingest import make_video

            bucket.mkdir()
            for i in range(a.videos):
                make_video(bucket / f"v{i:03d}.mp4", seed=i, frames=90, hard=i % 2 == 1)
            new.mkdir()
            make_video(new / "new.mp4", seed=99, frames=90, hard=False)
            what = f"{a.videos} 720p videos of 90 frames"
        else:
            make_images(bucket, 0, a.files, seed=1, size=size)
            make_images(new, a.files, a.new, seed=2, size=size)
            what = f"{a.files} JPEGs {a.size}"
        n = 100
        warm = work / "warm"
        make_images(warm, 0, 20, seed=3, size=size)
        datapool.run(warm, work / "pool-warm", n_samples=5, progress=False)
        walls: dict[bool, list[float]] = {True: [], False: []}
        seconds: dict[bool, list[float]] = {True: [], False: []}
        phases: dict[bool, list[dict]] = {True: [], False: []}
        sizes: dict[bool, tuple[float, int, float]] = {}
        for rep in range(a.repeats):
            for thumbs in (rep % 2 == 0, rep % 2 == 1):  # alternate which goes first
                b = work / f"b-{rep}-{thumbs}"
                shutil.copytree(bucket, b)
                pool = work / f"pool-{rep}-{thumbs}"
                wall, timings, _ = one_run(b, pool, n, thumbs)
                walls[thumbs].append(wall)
                phases[thumbs].append(timings)
                shutil.copytree(new, b, dirs_exist_ok=True)
                wall2, _, r2 = one_run(b, pool, 10, thumbs)
                seconds[thumbs].append(wall2)
                if thumbs not in sizes:
                    segs = sum(s.stat().st_size for s in pool.glob("runs/*/thumbnails.bin"))
                    # the second run's page: the pool, and its unselected candidates
                    points = r2.counts["pool_size"] + r2.counts["frames_embedded"] - 10
                    html = Path(r2.html_path).stat().st_size
                    sizes[thumbs] = (html / points, points, segs / r2.counts["pool_size"])
            print(
                f"repeat {rep}: first run with {walls[True][-1]:.2f} s, without "
                f"{walls[False][-1]:.2f} s; second run with {seconds[True][-1]:.2f} s, without "
                f"{seconds[False][-1]:.2f} s"
            )
        med = {k: statistics.median(v) for k, v in walls.items()}
        med2 = {k: statistics.median(v) for k, v in seconds.items()}
        print(f"\n{what}; {a.repeats} repeats, medians; load average {os.getloadavg()}")
        print(
            f"first run:  with thumbnails {med[True]:.3f} s, without {med[False]:.3f} s, "
            f"ratio {med[True] / med[False]:.3f} ({(med[True] / med[False] - 1) * 100:+.1f}%)"
        )
        print(
            f"second run: with thumbnails {med2[True]:.3f} s, without {med2[False]:.3f} s, "
            f"ratio {med2[True] / med2[False]:.3f}"
        )
        cpu = {k: statistics.median(p["cpu_all_threads_s"] for p in v) for k, v in phases.items()}
        print(
            f"first run CPU (all threads): with {cpu[True]:.3f} s, without {cpu[False]:.3f} s, "
            f"ratio {cpu[True] / cpu[False]:.3f}"
        )
        print("phases of the first run (median ms):")
        for k in phases[True][0]:
            on = statistics.median(p[k] for p in phases[True]) * 1e3
            off = statistics.median(p[k] for p in phases[False]) * 1e3
            print(f"  {k:20s} with {on:8.1f}  without {off:8.1f}")
        per = thumbnail_cpu(bucket, work / "pool-measured")
        print(
            f"the thumbnail work itself (thread CPU inside decode._thumbnail, one more run): "
            f"{per * 1e3:.3f} ms a frame = {per * a.files / cpu[False]:.1%} of the first run's "
            "CPU without thumbnails"
        )
        print(
            f"pool: {sizes[True][2]:.0f} B of thumbnails per sample; the second run's report page "
            f"({sizes[True][1]} points): {sizes[True][0]:.0f} B per point with thumbnails, "
            f"{sizes[False][0]:.0f} B without"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
