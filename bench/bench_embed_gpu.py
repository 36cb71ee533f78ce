"""Embedding on the GPU (onnxruntime's CUDA execution provider, docs/gpu.md) against the CPU, on
the demo's scenes, CPU and GPU in the same run.

    PYTHONPATH=python python bench/bench_embed_gpu.py                    # default model (+ resnet50 with torch)
    PYTHONPATH=python python bench/bench_embed_gpu.py --models default --repeats 3 --videos 4

Rows, per model:
  model  `Embedder.embed_packed` on packed batches of the demo's decoded frames (--batch per
         batch), median images/s of --repeats passes over all the frames; the batches are packed
         once, outside the timing (for the GPU, into its pinned host buffers)
  run    the whole `datapool run` on a demo bucket (--videos clips of 30 frames and --images
         stills; decode, pack, embed, select, commit) into a new pool, `--device cpu` against
         `--device cuda`, median wall seconds of --repeats runs
Models: `default` (the bundled descriptor, 128x128) and, where torch is installed, `resnet50`
(bench/bench_models.py's export, random weights: a learned model's cost at 224x224).

A line per model gives the GPU's rate and difference with TF32 allowed (onnxruntime's default;
datapool turns it off: ingest/cuda_io.py).

Checks before times count: the GPU's rows against the CPU's on the same batches (the largest
absolute difference of the unit rows, printed; above --tolerance fails), and the two runs'
picks (the same samples, in the same order; where they part, at a near-tie of min-distances, it
is said). Without a usable GPU the CPU rows are printed, each GPU row says why not, and the
script exits 2: it never prints a figure it did not measure.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def gpu_or_reason() -> str | None:
    """None where onnxruntime can embed on the GPU here, else why not."""
    import onnxruntime as ort

    from datapool.errors import ConfigError
    from datapool.ingest.embed import Embedder

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
            "(install onnxruntime-gpu: docs/gpu.md)"
        )
    try:
        Embedder(device="cuda")
    except ConfigError as e:
        return str(e)
    return None


def model_path(name: str, folder: Path) -> Path | None:
    """The .onnx file of a model row (None: the bundled default), or SystemExit if it cannot be
    made here."""
    if name == "default":
        return None
    spec = importlib.util.spec_from_file_location("bench_models", HERE / "bench_models.py")
    assert spec is not None and spec.loader is not None
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)
    if name not in bm.MODELS:
        raise SystemExit(f"--models: unknown model {name!r} (default, {', '.join(bm.MODELS)})")
    try:
        import torch
    except ImportError:
        return None
    return Path(bm.export(torch, name, folder)[1])


def decoded_frames(bucket: Path, size_wh: tuple[int, int]) -> list[np.ndarray]:
    """Every frame of every file in the bucket, decoded and resized as a run does."""
    from datapool.ingest.decode import iter_frames
    from datapool.naming import media_kind

    frames = []
    for path in sorted(p for p in bucket.rglob("*") if p.is_file()):
        kind = media_kind(path.name)
        if kind is not None:
            frames += [f.rgb for f in iter_frames(str(path), path.name, kind, size_wh)]
    return frames


def time_model(emb: Any, frames: list[np.ndarray], batch: int, repeats: int) -> tuple[float, Any]:
    """Median images/s of `repeats` passes of embed_packed over the packed frames, and the
    rows of the last pass."""
    packed = []
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        buf = emb.new_batch(len(chunk))
        emb.pack(chunk, buf)
        packed.append(buf)
    emb.embed_packed(packed[0])  # warm-up: the first batch builds the session's kernels
    times, rows = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        rows = np.concatenate([emb.embed_packed(b) for b in packed])
        times.append(time.perf_counter() - t)
    return len(frames) / statistics.median(times), rows


def time_tf32(
    path: Path | None, frames: list[np.ndarray], batch: int, repeats: int, cpu_rows: Any
) -> tuple[float, float]:
    """The GPU row with TF32 allowed, as onnxruntime's CUDA provider has it by default: images/s
    and the largest difference from the CPU's rows."""
    from datapool.ingest import cuda_io
    from datapool.ingest.embed import Embedder

    kept = dict(cuda_io.CUDA_OPTIONS)
    cuda_io.CUDA_OPTIONS["use_tf32"] = 1
    try:
        rate, rows = time_model(Embedder(path, device="cuda"), frames, batch, repeats)
    finally:
        cuda_io.CUDA_OPTIONS.update(kept)
    return rate, float(np.abs(rows - cpu_rows).max())


def time_run(bucket: Path, pools: Path, model: Path | None, device: str, repeats: int) -> Any:
    """Median wall seconds of `repeats` whole runs into new pools, and the last run's picks."""
    import datapool

    times, picks = [], None
    for i in range(repeats):
        pool = pools / f"{device}-{i}"
        t = time.perf_counter()
        result = datapool.run(
            bucket, pool, n_samples=20, model=None if model is None else str(model), device=device
        )
        times.append(time.perf_counter() - t)
        picks = result.selected
    return statistics.median(times), picks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="default,resnet50")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    a = ap.parse_args()

    import onnxruntime as ort

    from datapool import _core
    from datapool.demo import make_bucket
    from datapool.ingest.embed import Embedder

    why = gpu_or_reason()
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    print(f"datapool core: HAS_CUDA {_core.HAS_CUDA}, {_core.cuda_status()}")
    print(f"GPU embedding: {'yes' if why is None else 'no: ' + why}", flush=True)
    failed = False
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bucket = Path(tmp) / "bucket"
        make_bucket(bucket, "day", a.videos // 2, a.images // 2, seed=1, prefix="day")
        make_bucket(bucket, "night", a.videos - a.videos // 2, a.images - a.images // 2, 2, "night")
        for name in a.models.split(","):
            path = model_path(name, Path(tmp))
            if name != "default" and path is None:
                print(f"{name}: not measured: torch is not installed (pip install torch)")
                continue
            cpu = Embedder(path, device="cpu")
            print(cpu.inspection, flush=True)
            frames = decoded_frames(bucket, cpu.size_wh)
            cpu_rate, cpu_rows = time_model(cpu, frames, a.batch, a.repeats)
            cpu_run, cpu_picks = time_run(bucket, Path(tmp) / name, path, "cpu", a.repeats)
            row: dict[str, Any] = {"model": name, "frames": len(frames), "dim": cpu.dim}
            row.update(cpu_rate=cpu_rate, cpu_run=cpu_run)
            if why is None:
                gpu = Embedder(path, device="cuda")
                gpu_rate, gpu_rows = time_model(gpu, frames, a.batch, a.repeats)
                diff = float(np.abs(gpu_rows - cpu_rows).max())
                gpu_run, gpu_picks = time_run(bucket, Path(tmp) / name, path, "cuda", a.repeats)
                row.update(gpu_rate=gpu_rate, gpu_run=gpu_run, diff=diff)
                if diff > a.tolerance:
                    print(f"{name}: FAIL: GPU rows differ from the CPU's by {diff:.2e}")
                    failed = True
                same = next(
                    (i for i, (c, g) in enumerate(zip(cpu_picks, gpu_picks)) if c != g), None
                )
                if same is not None:
                    print(f"{name}: the runs' picks part at pick {same} (a near-tie, or a defect)")
                row["picks"] = "same" if same is None else f"part at {same}"
                tf32_rate, tf32_diff = time_tf32(path, frames, a.batch, a.repeats, cpu_rows)
                print(
                    f"{name}: with TF32 (onnxruntime's default, datapool turns it off): "
                    f"{tf32_rate:.1f} img/s, {tf32_diff:.1e} from the CPU's rows"
                )
            rows.append(row)
    print(
        f"\n{'model':<10}{'frames':>7}{'dim':>6}{'cpu img/s':>11}{'gpu img/s':>11}{'ratio':>7}"
        f"{'cpu run s':>11}{'gpu run s':>11}{'ratio':>7}{'max diff':>10}  picks"
    )
    for r in rows:
        if "gpu_rate" in r:
            gpu = (
                f"{r['gpu_rate']:>11.1f}{r['gpu_rate'] / r['cpu_rate']:>7.1f}x"
                f"{r['cpu_run']:>10.2f}{r['gpu_run']:>11.2f}{r['cpu_run'] / r['gpu_run']:>7.1f}x"
                f"{r['diff']:>9.1e}  {r['picks']}"
            )
        else:
            gpu = f"{'-':>11}{'-':>7} {r['cpu_run']:>10.2f}{'-':>11}{'-':>7}{'-':>10}  -"
        print(f"{r['model']:<10}{r['frames']:>7}{r['dim']:>6}{r['cpu_rate']:>11.1f}{gpu}")
    if why is not None:
        print(f"\nGPU rows not measured: {why}")
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
