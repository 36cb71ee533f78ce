"""Ingest: is the decode → pack → embed pipeline as fast as its slowest stage?

The benchmark makes a folder of 720p H.264 videos with PyAV (half of them hard to encode: fast
motion and per-frame noise) and of 640x480 JPEGs, then measures in one run, each over the same
files:

  1. decoding alone: the pipeline's decode stage (PyAV decode + swscale to the model input),
     on the pipeline's decode threads; and the same work on a process pool, for comparison;
  2. packing alone: the decoded frames packed into float32 NCHW batches;
  3. embedding alone: the default model over the packed batches (onnxruntime);
  4. the full pipeline (datapool.ingest.threaded.decode_and_embed);
  5. a naive baseline: PyAV `to_ndarray` at full size, NumPy area resize and normalisation,
     onnxruntime, one file after another with no overlap.

It prints frames/s, the pipeline's ratio to its slowest stage and its speed-up over the naive
loop, and checks that the pipeline and the baseline give the same frames and nearly the same
embeddings (their resize filters differ slightly: swscale's fixed-point area filter against an
exact one). Then it measures the peak RSS of a fresh process running the pipeline over 4 and
over 40 videos.

    python bench/bench_ingest.py                 # default sizes, 3 repeats
    python bench/bench_ingest.py --quick         # small, 1 repeat
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
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from datapool.ingest.decode import iter_frames
from datapool.ingest.embed import Embedder
from datapool.ingest.threaded import decode_and_embed, default_decode_workers
from datapool.media import write_image, write_video
from datapool.sources.local import LocalSource


def make_video(path: Path, seed: int, frames: int, hard: bool, w: int = 1280, h: int = 720) -> None:
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    base = (
        rng.uniform(0, 1, 3).astype(np.float32) * (1 - y)
        + rng.uniform(0, 1, 3).astype(np.float32) * y * x
    )
    base = (base * 200).astype(np.uint8)

    def gen():
        for t in range(frames):
            f = base.copy()
            step = 40 if hard else 6
            for b in range(4):
                x0 = (t * step * (b + 1) + 97 * b) % (w - 160)
                y0 = (t * step // 2 + 150 * b) % (h - 120)
                f[y0 : y0 + 120, x0 : x0 + 160] = ((60 * b + 3 * t) % 255, (90 + 40 * b) % 255, 200)
            if hard:
                f = np.clip(
                    f.astype(np.int16) + rng.integers(-24, 25, f.shape, dtype=np.int16), 0, 255
                ).astype(np.uint8)
            yield f

    write_video(path, gen(), fps=30, crf=23)


def make_data(root: Path, videos: int, frames: int, images: int) -> None:
    for i in range(videos):
        make_video(root / "videos" / f"clip{i:03d}.mp4", seed=i, frames=frames, hard=i % 2 == 1)
    rng = np.random.default_rng(99)
    for i in range(images):
        img = rng.integers(0, 255, (1, 1, 3)) * np.linspace(0.3, 1, 640)[None, :, None]
        img = np.broadcast_to(img, (480, 640, 3)).copy()
        y0, x0 = rng.integers(0, 380), rng.integers(0, 540)
        img[y0 : y0 + 100, x0 : x0 + 100] = rng.integers(0, 255, 3)
        img += rng.normal(0, 8, img.shape)
        write_image(root / "images" / f"img{i:04d}.jpg", np.clip(img, 0, 255).astype(np.uint8))


def _decode_file(args: tuple[str, str, str, tuple[int, int]]) -> list[np.ndarray]:
    path, key, kind, size = args
    return [f.rgb for f in iter_frames(path, key, kind, size)]


def area_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Exact area-average resize in NumPy (float32): per axis, whole-pixel block sums with
    np.add.reduceat, corrected by the fractional pixels at both ends of each output pixel."""

    def axis(a: np.ndarray, n_out: int, ax: int) -> np.ndarray:
        n_in = a.shape[ax]
        edges = np.linspace(0, n_in, n_out + 1)
        lo = np.floor(edges).astype(np.intp)
        frac = (edges - lo).astype(np.float32)
        a = np.moveaxis(a, ax, 0)
        start = np.minimum(lo[:-1], n_in - 1)
        s = np.add.reduceat(a, start, axis=0, dtype=np.float32)
        s[lo[:-1] == lo[1:]] = 0  # reduceat gives a[i] for an empty range
        shape = (-1,) + (1,) * (a.ndim - 1)
        s -= a[start] * frac[:-1].reshape(shape)
        s += a[np.minimum(lo[1:], n_in - 1)] * np.where(lo[1:] < n_in, frac[1:], 0).reshape(shape)
        return np.moveaxis(s * np.float32(n_out / n_in), 0, ax)

    return axis(axis(img, out_h, 0), out_w, 1)


def naive(
    files: list[tuple[str, str, str]], emb: Embedder, batch: int
) -> tuple[list[str], np.ndarray]:
    import av

    from datapool.ingest.embed import l2_normalize
    from datapool.naming import frame_name

    h, w = emb.input_hw
    mean, std = emb.preprocessing.mean, emb.preprocessing.std
    names, rows, pending = [], [], []

    def flush() -> None:
        if pending:
            x = np.stack(pending).transpose(0, 3, 1, 2)
            rows.append(l2_normalize(emb.model.run(np.ascontiguousarray(x, dtype=np.float32))))
            pending.clear()

    for path, key, kind in files:
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            count = s.frames or 1
            for i, frame in enumerate(c.decode(s)):
                rgb = frame.to_ndarray(format="rgb24")
                x = (area_resize(rgb, h, w) / 255.0 - mean) / std
                pending.append(x.astype(np.float32))
                names.append(key if kind == "image" else frame_name(key, i, count))
                if len(pending) == batch:
                    flush()
    flush()
    return names, np.concatenate(rows)


def embed_io_binding(emb: Embedder, nchw: np.ndarray) -> np.ndarray:
    """The embedding stage through onnxruntime's IO binding: input bound in place, output written
    into a preallocated array (what the pipeline would do if binding paid on CPU)."""
    from datapool.ingest.embed import l2_normalize

    out = np.empty((nchw.shape[0], emb.dim), np.float32)
    model = emb.model
    binding = model.session.io_binding()
    binding.bind_cpu_input(model.input_name, nchw)
    binding.bind_output(model.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    model.session.run_with_iobinding(binding)
    return l2_normalize(out)


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def rss_child(folder: str) -> None:
    src = LocalSource(folder)
    listing = src.list()
    keys = listing["key"].tolist()
    res = decode_and_embed(src.open_inputs(keys), dict(zip(keys, listing["kind"])), Embedder())
    frames = sum(n for _, n in res.status.values())
    print(json.dumps({"frames": frames, "max_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS since it started its program.

    Linux's `ru_maxrss` is not that: it survives exec(), so a child started by a large parent
    (subprocess forks or vforks, then execs) reports the parent's RSS whenever that is larger.
    VmHWM in /proc/self/status belongs to the current address space, which exec() replaced.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def measure_rss(folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=90, help="frames per video (30 fps)")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-videos", default="4,40")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rss_child:
        rss_child(a.rss_child)
        return 0
    if a.quick:
        a.videos, a.frames, a.images, a.repeats = 2, 30, 40, 1

    work = Path(tempfile.mkdtemp(prefix="datapool-ingest-"))
    try:
        t_make, _ = timed(make_data, work / "data", a.videos, a.frames, a.images)
        src = LocalSource(work / "data")
        listing = src.list()
        keys = listing["key"].tolist()
        kinds = dict(zip(keys, listing["kind"]))
        files = [(str(src.local_path(k)), k, kinds[k]) for k in keys]
        emb = Embedder()
        size = emb.size_wh
        workers = default_decode_workers()
        print(
            f"made {a.videos} videos (1280x720, {a.frames} frames, half noisy) and {a.images} "
            f"JPEGs (640x480) in {t_make:.1f} s; {workers} decode threads, "
            f"{os.cpu_count()} CPUs"
        )

        rates: dict[str, list[float]] = {
            k: []
            for k in ("decode", "decode_proc", "pack", "embed", "embed_iobind", "pipeline", "naive")
        }
        jobs = [(p, k, kind, size) for p, k, kind in files]
        for rep in range(a.repeats):
            with ThreadPoolExecutor(workers) as threads:
                t, decoded = timed(lambda: list(threads.map(_decode_file, jobs)))
            frames = [f for fs in decoded for f in fs]
            n = len(frames)
            rates["decode"].append(n / t)
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_decode_file, jobs[:workers]))  # start-up not counted
                t, _ = timed(lambda: list(pool.map(_decode_file, jobs, chunksize=1)))
            rates["decode_proc"].append(n / t)

            h, w = emb.input_hw
            bs = 32
            bufs = [np.empty((bs, 3, h, w), np.float32) for _ in range(-(-n // bs))]
            t0 = time.perf_counter()
            for i, buf in enumerate(bufs):
                emb.pack(frames[i * bs : (i + 1) * bs], buf)
            rates["pack"].append(n / (time.perf_counter() - t0))
            emb.embed_packed(bufs[0])  # warm-up (onnxruntime allocates on its first full batch)
            embed_io_binding(emb, bufs[0])
            t0 = time.perf_counter()
            ref = np.concatenate(
                [
                    emb.embed_packed(buf[: len(frames[i * bs : (i + 1) * bs])])
                    for i, buf in enumerate(bufs)
                ]
            )
            rates["embed"].append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            bound = np.concatenate(
                [
                    embed_io_binding(emb, buf[: len(frames[i * bs : (i + 1) * bs])])
                    for i, buf in enumerate(bufs)
                ]
            )
            rates["embed_iobind"].append(n / (time.perf_counter() - t0))
            np.testing.assert_allclose(bound, ref, atol=1e-6)
            del bufs

            t, res = timed(decode_and_embed, src.open_inputs(keys), kinds, emb, batch_size=bs)
            rates["pipeline"].append(n / t)
            p_names = [nm for k in res.rows for nm, _ in res.rows[k]]
            p_rows = np.stack([r for k in res.rows for _, r in res.rows[k]])
            np.testing.assert_allclose(p_rows, ref, atol=1e-6)  # the stages agree with the pipeline

            t, (b_names, b_rows) = timed(naive, files, emb, bs)
            rates["naive"].append(n / t)
            assert b_names == p_names, "baseline and pipeline frame names differ"
            cos = np.sum(b_rows * p_rows, axis=1)
            print(
                f"repeat {rep}: {n} frames; "
                + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items())
                + f"; baseline vs pipeline cosine min {cos.min():.4f}, mean {cos.mean():.5f}"
            )
            assert cos.min() > 0.98, "baseline and pipeline embeddings differ too much"

        med = {k: statistics.median(v) for k, v in rates.items()}
        stages = {"decode": med["decode"], "pack": med["pack"], "embed": med["embed"]}
        slowest = min(stages, key=lambda k: stages[k])
        print()
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
        )
        print(f"{'stage':36s} {'frames/s':>9s}")
        labels = {
            "decode": f"decode alone ({workers} threads)",
            "decode_proc": f"decode alone ({workers} processes)",
            "pack": "pack alone",
            "embed": "embed alone (default model)",
            "embed_iobind": "embed alone, IO binding",
            "pipeline": "full pipeline",
            "naive": "naive loop (no overlap)",
        }
        for k, label in labels.items():
            print(f"{label:36s} {med[k]:9.0f}")
        print(
            f"pipeline / slowest stage ({slowest}):  {med['pipeline'] / stages[slowest]:.2f}  "
            "(acceptance >= 0.8)"
        )
        print(
            f"pipeline / naive loop:               {med['pipeline'] / med['naive']:.2f}x  "
            "(acceptance >= 1.5x)"
        )
        print(f"decode threads / processes:          {med['decode'] / med['decode_proc']:.2f}x")

        counts = [int(v) for v in a.rss_videos.split(",") if v]
        if counts:
            rss = {}
            for c in counts:
                folder = work / f"rss-{c}"
                (folder).mkdir()
                vids = sorted((work / "data" / "videos").glob("*.mp4"))
                for i in range(c):  # copies of the generated videos, each a distinct file
                    os.link(vids[i % len(vids)], folder / f"v{i:03d}.mp4")
                rss[c] = measure_rss(folder)
                print(
                    f"peak RSS, {c:3d} videos ({rss[c]['frames']} frames): {rss[c]['max_rss_mb']:.0f} MB"
                )
            if len(counts) >= 2:
                lo, hi = counts[0], counts[-1]
                print(
                    f"peak RSS {hi} / {lo} videos: {rss[hi]['max_rss_mb'] / rss[lo]['max_rss_mb']:.2f}  "
                    "(acceptance <= 1.2)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
