"""The default model, `datapool-features-v2`, against v1 (the same descriptor at every pixel).

    python bench/bench_model.py              # about a minute on 2 vCPUs
    python bench/bench_model.py --repeats 3

v1 is rebuilt in memory by tools/make_default_model.py with v2's two savings undone: the Gabor
bank at stride 1 on every pyramid level, and the colour statistics on the full 128x128 image
(`GABOR_STRIDES = (1,) * 5`, `COLOUR_POOL = 1`). The v2 it builds must equal the shipped file.

Timing: onnxruntime's CPU provider with the settings datapool uses (the model's `basic` graph
optimisation, no memory-pattern planning, no spinning), random input, model only; each setting
(intra-op threads, batch) is timed for v1 and v2 in turn, median images/s of the repeats.

Check (the "same answer"): both models embed 96 images (scikit-image's bundled photographs when
it is installed, else synthetic scenes), each whole and as three crops; the pairwise distances
of the two models must correlate at >= 0.999. The share of images whose nearest neighbour is the
same under both is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(0, 32), (2, 32), (1, 32), (2, 128), (2, 1)]  # (intra-op threads, batch)


def generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_default_model", ROOT / "tools" / "make_default_model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def models() -> dict[str, bytes]:
    gen = generator()
    v2 = gen.model_bytes()
    shipped = (ROOT / "python" / "datapool" / "models" / "datapool-features-v2.onnx").read_bytes()
    assert v2 == shipped, "tools/make_default_model.py no longer builds the shipped model"
    gen.GABOR_STRIDES, gen.COLOUR_POOL = (1,) * len(gen.GABOR_STRIDES), 1
    return {"v1": gen.model_bytes(), "v2": v2}


def session(model: bytes, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.enable_mem_pattern = False
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def photos(n: int = 24) -> list[np.ndarray]:
    """RGB uint8 images: scikit-image's photographs (read with PyAV) when present, else scenes."""
    import av

    spec = importlib.util.find_spec("skimage")
    found: list[np.ndarray] = []
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        for f in sorted(data.glob("*")):
            if f.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
                continue
            try:
                with av.open(str(f)) as c:
                    rgb = next(c.decode(video=0)).to_ndarray(format="rgb24")
            except (av.FFmpegError, StopIteration):
                continue
            if min(rgb.shape[:2]) >= 32:
                found.append(rgb)
    rng = np.random.default_rng(0)
    while len(found) < n:  # synthetic scenes: a gradient, rectangles, texture
        h, w = 240, 320
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        img = rng.uniform(0, 1, 3) * (1 - y[..., None]) + rng.uniform(0, 1, 3) * x[..., None]
        for _ in range(4):
            y0, x0 = rng.integers(0, h - 40), rng.integers(0, w - 40)
            img[y0 : y0 + 40, x0 : x0 + 40] = rng.uniform(0, 1, 3)
        img += np.sin(x * rng.uniform(20, 120))[..., None] * rng.uniform(0, 0.2)
        found.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return found[:n]


def inputs(images: list[np.ndarray]) -> np.ndarray:
    import av

    out = []
    for rgb in images:
        h, w = rgb.shape[:2]
        for y0, x0, y1, x1 in [
            (0, 0, h, w),
            (0, 0, h // 2, w // 2),
            (h // 2, w // 2, h, w),
            (h // 4, w // 4, 3 * h // 4, 3 * w // 4),
        ]:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]), "rgb24")
            out.append(
                frame.reformat(
                    width=128, height=128, format="rgb24", interpolation="AREA"
                ).to_ndarray()
            )
    return np.ascontiguousarray(np.stack(out).astype(np.float32).transpose(0, 3, 1, 2) / 255)


def same_answer(models_: dict[str, bytes]) -> tuple[float, float]:
    x = inputs(photos())
    emb = {
        k: session(m, 0).run(None, {"input": x})[0].astype(np.float64) for k, m in models_.items()
    }
    d = {k: np.linalg.norm(e[:, None] - e[None], axis=2) for k, e in emb.items()}
    iu = np.triu_indices(len(x), 1)
    corr = float(np.corrcoef(d["v1"][iu], d["v2"][iu])[0, 1])
    big = 9.0 * np.eye(len(x))
    nn_same = float(np.mean(np.argmin(d["v1"] + big, 1) == np.argmin(d["v2"] + big, 1)))
    return corr, nn_same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()

    built = models()
    corr, nn_same = same_answer(built)
    print(
        f"v1 vs v2 on 96 images: distance correlation {corr:.5f}, same nearest neighbour "
        f"{nn_same:.0%}"
    )
    assert corr >= 0.999, "v2 no longer computes v1's descriptor"

    print(f"{'threads':>7} {'batch':>5} {'v1 img/s':>9} {'v2 img/s':>9} {'v2 / v1':>8}")
    rng = np.random.default_rng(0)
    for threads, batch in SETTINGS:
        x = rng.random((batch, 3, 128, 128), dtype=np.float32)
        sessions = {k: session(m, threads) for k, m in built.items()}
        for s in sessions.values():
            for _ in range(3):
                s.run(None, {"input": x})
        rates: dict[str, list[float]] = {k: [] for k in sessions}
        calls = max(1, 320 // batch)
        for _ in range(a.repeats):
            for k, s in sessions.items():
                t = time.perf_counter()
                for _ in range(calls):
                    s.run(None, {"input": x})
                rates[k].append(calls * batch / (time.perf_counter() - t))
        med = {k: statistics.median(v) for k, v in rates.items()}
        label = "all" if threads == 0 else str(threads)
        print(
            f"{label:>7} {batch:>5} {med['v1']:>9.0f} {med['v2']:>9.0f} {med['v2'] / med['v1']:>7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
