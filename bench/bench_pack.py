"""The C++ frame-batch packer (`_core.pack_frames`) against NumPy, and where to resize.

    python bench/bench_pack.py              # about a minute on 2 vCPUs
    python bench/bench_pack.py --repeats 3 --video-frames 24 --images 16

(a) Packing alone. A batch of 32 RGB frames already at 128x128 into a float32 NCHW batch,
    normalised with the bundled model's folded ImageNet scale/shift:
      numpy      what `Embedder.embed` does: astype(float32), *= scale, += shift,
                 ascontiguousarray(transpose(0, 3, 1, 2)), from a stacked (N, H, W, 3) array;
      pack       `_core.pack_frames(list_of_frames, out, scale, shift, threads)` into a reused
                 buffer, with 1 thread and with every core.
    Check: both give the same batch (max abs difference printed, must be <= 1e-5).

(b) Where to resize, end to end from the decoded `av.VideoFrame` to the packed batch, for 720p
    H.264 frames (noise and motion, made here with PyAV) and 640x480 JPEGs (made here with PyAV),
    batches of 32, output 128x128:
      1 swscale resize   ingest/decode.py's `_resize_rgb` (VideoReformatter to 128x128 rgb24, AREA, as
                         the pipeline does now), then pack without resize;
      2 to_ndarray+pack  `frame.to_ndarray(format="rgb24")` at full size, then pack with the C++
                         area resize;
      2b plane view+pack swscale converts to rgb24 at full size (same reformatter), and the
                         packer reads the padded rgb24 plane in place (no copy);
      3 YUV planes+pack  no swscale at all: the packer resizes the Y, U and V planes (views, in
                         place) to 128x128, then NumPy converts YUV to RGB (BT.601, limited range
                         for yuv420p video, full range for yuvj420p JPEG) and applies scale/shift.
    Decoding is done once beforehand and not timed (its rate is printed for context).
    Checks: 2 agrees with a float64 NumPy reference of the same filter on the first frames
    (<= 1e-4 in 0..255 units) and 2b equals 2 exactly. 1 and 3 are other filters and colour paths:
    their max and mean abs difference from 2 are printed (0..255 units); the mean must stay under
    5.0, a loose sanity bound (they differ most where colour changes sharply: swscale resizes the
    subsampled chroma planes before converting to RGB, 2 converts at full size first). Where
    swscale and the packer compute the same filter, they must agree to uint8 rounding: the Y
    plane of the first frame, resized by swscale AREA as a gray frame and by the packer, differs
    by at most 1.0.
Figures are medians over --repeats runs: wall frames/s and process CPU ms per frame (all threads;
on a shared 2-vCPU machine CPU time is the steadier figure), and ratios to strategy 1.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from datapool import _core
from datapool.ingest.decode import _resize_rgb
from datapool.ingest.preprocess import IMAGENET_MEAN, IMAGENET_STD
from datapool.media import write_image, write_video

SIZE = 128
BATCH = 32
STD = np.asarray(IMAGENET_STD, dtype=np.float32)
SCALE = (1.0 / (255.0 * STD)).astype(np.float32)
SHIFT = (-np.asarray(IMAGENET_MEAN, dtype=np.float32) / STD).astype(np.float32)
ONE = np.ones(3, np.float32)
ZERO = np.zeros(3, np.float32)


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds of fn()."""
    fn()  # warm up (tables, reformatter contexts, page faults)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


# --------------------------------------------------------------------------------------------
# (a) packing alone


def numpy_pack(frames: np.ndarray) -> np.ndarray:
    x = frames.astype(np.float32)
    x *= SCALE
    x += SHIFT
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def bench_pack_alone(rng: np.random.Generator, repeats: int) -> bool:
    frames = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(BATCH)]
    stacked = np.stack(frames)
    out = np.empty((BATCH, 3, SIZE, SIZE), np.float32)
    reps = repeats * 20
    rows = [("numpy (Embedder.embed path)", lambda: numpy_pack(stacked))]
    for threads in (1, 0):
        rows.append(
            (
                f"pack_frames, threads={threads}",
                lambda t=threads: _core.pack_frames(frames, out, SCALE, SHIFT, threads=t),
            )
        )
    print(f"\n(a) packing {BATCH} frames of {SIZE}x{SIZE} RGB (no resize), median of {reps} runs")
    print(f"{'implementation':32} {'ms/batch':>9} {'frames/s':>10} {'cpu ms':>8} {'speed-up':>9}")
    base = None
    for name, fn in rows:
        wall, cpu = timed(fn, reps)
        base = base or wall
        print(
            f"{name:32} {wall * 1e3:9.3f} {BATCH / wall:10.0f} {cpu * 1e3:8.3f} {base / wall:8.2f}x"
        )
    _core.pack_frames(frames, out, SCALE, SHIFT)
    diff = float(np.abs(out - numpy_pack(stacked)).max())
    ok = diff <= 1e-5
    print(f"check: max |pack - numpy| = {diff:.2e}: {'ok' if ok else 'CHECK FAILED'}")
    return ok


# --------------------------------------------------------------------------------------------
# (b) media


def hard_video_frames(rng: np.random.Generator, n: int, h: int = 720, w: int = 1280):
    """Moving gradients and boxes with fresh noise every frame: expensive for H.264."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for t in range(n):
        base = np.stack(
            [
                128 + 100 * np.sin((xx + 25 * t) / 60),
                128 + 100 * np.cos((yy - 17 * t) / 45),
                128 + 90 * np.sin((xx + yy + 40 * t) / 80),
            ],
            axis=-1,
        )
        x0, y0 = (37 * t) % (w - 200), (23 * t) % (h - 150)
        base[y0 : y0 + 150, x0 : x0 + 200] = (240, 30, 60)
        base += rng.normal(0, 18, base.shape).astype(np.float32)
        yield np.clip(base, 0, 255).astype(np.uint8)


def photo(rng: np.random.Generator, h: int = 480, w: int = 640) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    img = c[0] * (xx / w)[..., None] + c[1] * (1 - yy / h)[..., None]
    for _ in range(4):
        bh, bw = rng.integers(30, h // 2), rng.integers(30, w // 2)
        y0, x0 = rng.integers(0, h - bh), rng.integers(0, w - bw)
        img[y0 : y0 + bh, x0 : x0 + bw] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def decode_all(paths: list[Path]) -> tuple[list[Any], float]:
    import av

    frames = []
    t0 = time.perf_counter()
    for p in paths:
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames.extend(container.decode(stream))
    return frames, time.perf_counter() - t0


def plane_view(plane: Any, height: int, row_bytes: int) -> np.ndarray:
    """A (height, row_bytes) uint8 view of a PyAV plane, skipping its row padding: no copy."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :row_bytes]


class Strategies:
    def __init__(self, frames: list[Any]) -> None:
        self.frames = frames
        self.out = np.empty((BATCH, 3, SIZE, SIZE), np.float32)
        self.yuv = np.empty((3 * BATCH, 3, SIZE, SIZE), np.float32)
        from av.video.reformatter import VideoReformatter

        self.reformatter = VideoReformatter()

    def run(self, name: str, sink: np.ndarray | None = None) -> None:
        step = getattr(self, "batch_" + name)
        for i in range(0, len(self.frames), BATCH):
            batch = self.frames[i : i + BATCH]
            step(batch)
            if sink is not None:
                sink[i : i + len(batch)] = self.out[: len(batch)]

    def batch_swscale(self, batch: list[Any]) -> None:
        rgb = [_resize_rgb(f, SIZE, SIZE) for f in batch]
        _core.pack_frames(rgb, self.out, SCALE, SHIFT)

    def batch_ndarray(self, batch: list[Any]) -> None:
        rgb = [f.to_ndarray(format="rgb24") for f in batch]
        _core.pack_frames(rgb, self.out, SCALE, SHIFT)

    def batch_planeview(self, batch: list[Any]) -> None:
        views = []
        for f in batch:
            rgb = self.reformatter.reformat(f, format="rgb24")
            # The view keeps the plane (and so the frame) alive through its buffer.
            views.append(
                plane_view(rgb.planes[0], f.height, 3 * f.width).reshape(f.height, f.width, 3)
            )
        _core.pack_frames(views, self.out, SCALE, SHIFT)

    def batch_yuv(self, batch: list[Any]) -> None:
        n = len(batch)
        planes = []
        for k in range(3):
            for f in batch:
                p = f.planes[k]
                planes.append(plane_view(p, p.height, p.width))
        _core.pack_frames(planes, self.yuv, ONE, ZERO)
        y, u, v = (self.yuv[k * n : (k + 1) * n, 0] for k in range(3))
        full = batch[0].format.name.startswith("yuvj")
        if full:  # BT.601 full range (JPEG)
            ys, ry, gu, gv, bu = 1.0, 1.402, -0.344136, -0.714136, 1.772
            y0 = 0.0
        else:  # BT.601 limited range (swscale's default for unspecified yuv420p)
            ys, ry, gu, gv, bu = 255 / 219, 1.596027, -0.391762, -0.812968, 2.017232
            y0 = 16.0
        yl = (y - y0) * ys
        u = u - 128.0
        v = v - 128.0
        out = self.out[:n]
        np.clip(yl + ry * v, 0, 255, out=out[:, 0])
        np.clip(yl + gu * u + gv * v, 0, 255, out=out[:, 1])
        np.clip(yl + bu * u, 0, 255, out=out[:, 2])
        out *= SCALE[None, :, None, None]
        out += SHIFT[None, :, None, None]


def reference_area(rgb: np.ndarray) -> np.ndarray:
    """float64 area resize to SIZE x SIZE (both axes shrink here), then scale/shift: (3, S, S)."""

    def axis(n_in: int) -> np.ndarray:
        m = np.zeros((SIZE, n_in))
        s = n_in / SIZE
        for o in range(SIZE):
            a, b = o * s, (o + 1) * s
            for i in range(int(a), min(n_in, int(np.ceil(b)))):
                m[o, i] = max(0.0, min(i + 1.0, b) - max(float(i), a)) / s
        return m

    my, mx = axis(rgb.shape[0]), axis(rgb.shape[1])
    r = np.stack([my @ rgb[:, :, c].astype(np.float64) @ mx.T for c in range(3)])
    return r * SCALE[:, None, None] + SHIFT[:, None, None]


def bench_media(label: str, frames: list[Any], decode_s: float, repeats: int) -> bool:
    s = Strategies(frames)
    n = len(frames)
    f0 = frames[0]
    print(
        f"\n(b) {label}: {n} frames {f0.width}x{f0.height} {f0.format.name} -> {SIZE}x{SIZE}, "
        f"batches of {BATCH}, median of {repeats} runs (decoding alone: {n / decode_s:.0f} frames/s)"
    )
    print(
        f"{'strategy':26} {'frames/s':>9} {'ms/frame':>9} {'cpu ms/frame':>13} {'speed ÷ 1':>10}"
        f" {'cpu ÷ 1':>8} {'max|Δ| vs 2':>12} {'mean|Δ|':>8}"
    )
    names = [
        ("1 swscale resize", "swscale"),
        ("2 to_ndarray + pack", "ndarray"),
        ("2b plane view + pack", "planeview"),
        ("3 YUV planes + pack", "yuv"),
    ]
    results = {}
    outs = {}
    for _title, key in names:
        wall, cpu = timed(lambda k=key: s.run(k), repeats)
        results[key] = (wall, cpu)
        outs[key] = np.empty((n, 3, SIZE, SIZE), np.float32)
        s.run(key, sink=outs[key])
    ok = True
    for title, key in names:
        wall, cpu = results[key]
        d = np.abs(outs[key] - outs["ndarray"]) / SCALE[None, :, None, None]  # 0..255 units
        print(
            f"{title:26} {n / wall:9.1f} {wall / n * 1e3:9.3f} {cpu / n * 1e3:13.3f} "
            f"{results['swscale'][0] / wall:9.2f}x {cpu / results['swscale'][1]:7.2f}x "
            f"{d.max():12.2f} {d.mean():8.3f}"
        )
        if d.mean() > 5.0:
            ok = False
            print(f"CHECK FAILED: {title} mean difference {d.mean():.3f} > 5.0")
    if not np.array_equal(outs["planeview"], outs["ndarray"]):
        ok = False
        print("CHECK FAILED: plane view and to_ndarray packs differ")
    import av

    y = frames[0].to_ndarray(format="gray")  # full-range copy of the luma
    sws = s.reformatter.reformat(
        av.VideoFrame.from_ndarray(y, format="gray"),
        width=SIZE,
        height=SIZE,
        format="gray",
        interpolation="AREA",
    ).to_ndarray()
    packed = np.empty((1, 3, SIZE, SIZE), np.float32)
    _core.pack_frames([y], packed, ONE, ZERO)
    luma = float(np.abs(packed[0, 0] - sws).max())
    ok = ok and luma <= 1.0
    print(
        f"check: swscale AREA vs pack on a gray (luma) frame, max |Δ| = {luma:.2f}: "
        f"{'ok' if luma <= 1.0 else 'CHECK FAILED'}"
    )
    worst = 0.0
    for i in range(min(2, n)):
        ref = reference_area(frames[i].to_ndarray(format="rgb24"))
        worst = max(worst, float((np.abs(outs["ndarray"][i] - ref) / SCALE[:, None, None]).max()))
    good = worst <= 1e-4
    ok = ok and good
    print(
        f"check: pack vs float64 area reference on 2 frames, max |Δ| = {worst:.1e} (0..255 units): "
        f"{'ok' if good else 'CHECK FAILED'}; 2b == 2 exactly: "
        f"{'ok' if np.array_equal(outs['planeview'], outs['ndarray']) else 'CHECK FAILED'}"
    )
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--video-frames", type=int, default=48)
    ap.add_argument("--images", type=int, default=32)
    args = ap.parse_args()
    print(
        f"datapool pack benchmark: {platform.processor() or platform.machine()}, "
        f"{_core.HARDWARE_THREADS} hardware threads, Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    rng = np.random.default_rng(0)
    ok = bench_pack_alone(rng, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        video = write_video(
            Path(tmp) / "hard.mp4", hard_video_frames(rng, args.video_frames), fps=30
        )
        images = [write_image(Path(tmp) / f"img{i}.jpg", photo(rng)) for i in range(args.images)]
        print(
            f"\nmedia made in {time.perf_counter() - t0:.1f} s: {video.stat().st_size / 1e6:.1f} MB of "
            f"H.264, {sum(p.stat().st_size for p in images) / 1e6:.1f} MB of JPEG"
        )
        vframes, vdec = decode_all([video])
        ok = bench_media("720p H.264 video", vframes, vdec, args.repeats) and ok
        del vframes
        iframes, idec = decode_all(images)
        ok = bench_media("640x480 JPEG images", iframes, idec, args.repeats) and ok
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
