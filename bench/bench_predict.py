"""Predict: does decoding ahead on threads and running the model in batches make `datapool
predict` faster than predicting one picture at a time, with the same files?

The benchmark makes a folder of real media with PyAV and Pillow (JPEG photos of three sizes,
some stored landscape and shown portrait by their EXIF orientation, PNGs, and 720p H.264 clips),
then runs `datapool.predict.predict` over it with each model, in one process and alternating:

  1. one by one: `predict(..., one_by_one=True)`, what predict did before: each picture
     decoded, letterboxed, run, suppressed and written in turn on the calling thread;
  2. pipelined: `predict(..., batch_size=B, decode_workers=W)`, the default path
     (ingest/predict_pipeline.py): files decoded and letterboxed ahead on the run's decoding
     threads, pictures run B at a time where the model's batch is dynamic.

It checks that both write the same files with the same bytes (every repeat), and prints the
median wall time of each, pictures a second, the ratio of the medians (`speed-up`) and of the
fastest runs (`best`: on a shared machine, the runs the other load disturbed least).

The models: each `--model FILE.onnx` (an Ultralytics export: `yolo export format=onnx
imgsz=320 dynamic=True` for a dynamic batch, without `dynamic` for a fixed batch of 1), and
without `--model` one built here with onnx.helper: a YOLO-shaped detector (strided 3x3
convolutions at 160, 80, 40, 20 and 10 pixels, 1x1 heads at three scales, output (batch, 4 + 80,
2100), random weights, about 1.2 GFLOPs a picture at 320), once with a dynamic batch and once
with a fixed batch of 1. It needs neither Ultralytics nor torch.

    PYTHONPATH=python python bench/bench_predict.py                       # built models
    PYTHONPATH=python python bench/bench_predict.py --model yolov8n.onnx  # yours too
    PYTHONPATH=python python bench/bench_predict.py --quick               # small, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from datapool.media import write_image, write_video
from datapool.predict import predict


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A picture with a gradient and a few filled rectangles and noise: something to decode."""
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    img = (rng.uniform(40, 200, 3) * (1 - y) + rng.uniform(40, 200, 3) * y * x).astype(np.uint8)
    for _ in range(4):
        rh, rw = int(rng.integers(h // 10, h // 3)), int(rng.integers(w // 10, w // 3))
        y0, x0 = int(rng.integers(0, h - rh)), int(rng.integers(0, w - rw))
        img[y0 : y0 + rh, x0 : x0 + rw] = rng.integers(0, 255, 3)
    noise = rng.integers(-12, 12, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_source(root: Path, images: int, clips: int, frames: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    src = root / "src"
    sizes = [(720, 1280), (1080, 1920), (480, 640)]
    for i in range(images):
        h, w = sizes[i % len(sizes)]
        pic = _scene(rng, h, w)
        if i % 4 == 3:  # a phone's: stored landscape, shown portrait
            exif = Image.Exif()
            exif[0x0112] = 6
            src.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pic).save(src / f"img{i:03d}.jpg", exif=exif.tobytes(), quality=90)
        elif i % 4 == 2:
            write_image(src / f"img{i:03d}.png", pic)
        else:
            write_image(src / f"img{i:03d}.jpg", pic, quality=3)
    for c in range(clips):
        base = _scene(rng, 720, 1280)
        moving = [np.roll(base, 24 * t, axis=1) for t in range(frames)]
        write_video(src / "clips" / f"clip{c}.mp4", moving, fps=10, crf=23)
    return src


def yolo_shaped(path: Path, size: int = 320, dynamic: bool = True, nc: int = 80) -> Path:
    """A detector of Ultralytics' shape (see the module's docstring), random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits, nodes = [], []
    n: int | str = "batch" if dynamic else 1

    def conv(x: str, cin: int, cout: int, k: int, stride: int, name: str, act: bool = True) -> str:
        w = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        b = np.zeros(cout, np.float32)
        inits.extend(
            [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
        )
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}_w", f"{name}_b"],
                [f"{name}_c"],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
            )
        )
        if not act:
            return f"{name}_c"
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [name]))
        return name

    x, cin, scales = "images", 3, []
    for i, (cout, repeat) in enumerate([(16, 0), (32, 2), (64, 2), (128, 2), (256, 1)]):
        x = conv(x, cin, cout, 3, 2, f"down{i}")
        for r in range(repeat):
            x = conv(x, cout, cout, 3, 1, f"block{i}_{r}")
        cin = cout
        if i >= 2:
            scales.append((x, cout))
    heads = []
    for j, (feat, ch) in enumerate(scales):
        h = conv(feat, ch, 4 + nc, 1, 1, f"head{j}", act=False)
        nodes.append(helper.make_node("Reshape", [h, "flat"], [f"head{j}_r"]))
        heads.append(f"head{j}_r")
    nodes.append(helper.make_node("Concat", heads, ["raw"], axis=2))
    # boxes: centre x, y in 0..size, width and height in 0..size/4; class scores
    # sigmoid(raw - 1.8): about one anchor in a hundred above conf 0.25
    nodes.append(helper.make_node("Split", ["raw", "parts"], ["box_raw", "cls_raw"], axis=1))
    nodes.append(helper.make_node("Sigmoid", ["box_raw"], ["box01"]))
    nodes.append(helper.make_node("Mul", ["box01", "bscale"], ["pix"]))
    nodes.append(helper.make_node("Sub", ["cls_raw", "bias"], ["cls_shifted"]))
    nodes.append(helper.make_node("Sigmoid", ["cls_shifted"], ["cls"]))
    nodes.append(helper.make_node("Concat", ["pix", "cls"], ["output0"], axis=1))
    bscale = np.array([size, size, size / 4, size / 4], np.float32).reshape(1, 4, 1)
    inits += [
        numpy_helper.from_array(np.array([0, 4 + nc, -1], np.int64), "flat"),
        numpy_helper.from_array(np.array([4, nc], np.int64), "parts"),
        numpy_helper.from_array(bscale, "bscale"),
        numpy_helper.from_array(np.array(1.8, np.float32), "bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo-shaped",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [n, 4 + nc, None])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    names = "{" + ", ".join(f"{i}: 'class{i}'" for i in range(nc)) + "}"
    meta = {"author": "Ultralytics", "task": "detect", "imgsz": f"[{size}, {size}]", "names": names}
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def bench(
    src: Path, model: Path, work: Path, repeat: int, batch: int, workers: int, conf: float | None
) -> None:
    times: dict[str, list[float]] = {"one by one": [], "pipelined": []}
    pictures = boxes = 0
    for r in range(repeat):
        trees = {}
        for how in times:  # alternating: the machine's load weighs on both alike
            out = work / f"{how.replace(' ', '-')}-{r}"
            t0 = time.perf_counter()
            if how == "one by one":
                res = predict(str(src), str(model), str(out), conf=conf, one_by_one=True)
            else:
                res = predict(
                    str(src),
                    str(model),
                    str(out),
                    conf=conf,
                    batch_size=batch,
                    decode_workers=workers,
                )
            times[how].append(time.perf_counter() - t0)
            pictures, boxes = res.images + res.frames, res.boxes
            trees[how] = _tree(out)
            shutil.rmtree(out)
        a, b = trees["one by one"], trees["pipelined"]
        if sorted(a) != sorted(b) or any(a[k] != b[k] for k in a):
            raise SystemExit(f"{model.name}: the two paths wrote different files")
    base = statistics.median(times["one by one"])
    print(
        f"\n{model.name}: {pictures} pictures, {boxes} boxes; both wrote the same {len(a)} files "
        f"each time: yes"
    )
    fastest = min(times["one by one"])
    print(f"  {'path':<12} {'median s':>9} {'pictures/s':>11} {'speed-up':>9} {'best':>6}   runs")
    for how, ts in times.items():
        med = statistics.median(ts)
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(
            f"  {how:<12} {med:>9.2f} {pictures / med:>11.1f} {base / med:>8.2f}x "
            f"{fastest / min(ts):>5.2f}x   {runs}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", type=Path, default=[], help="an ONNX model")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--frames", type=int, default=24, help="frames a clip")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--decode-workers", type=int, default=0)
    ap.add_argument("--conf", type=float, help="predict's --conf (default 0.25)")
    ap.add_argument("--no-built", action="store_true", help="only the --model files")
    ap.add_argument("--quick", action="store_true", help="8 images, 1 clip of 8, 1 repeat")
    a = ap.parse_args()
    if a.quick:
        a.images, a.clips, a.frames, a.repeat = 8, 1, 8, 1
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; batch {a.batch_size}, decode "
        f"workers {a.decode_workers or 'min(4, cores)'}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        src = make_source(work, a.images, a.clips, a.frames)
        models = list(a.model)
        if not a.no_built:
            models += [
                yolo_shaped(work / "yolo-shaped-dynamic.onnx", dynamic=True),
                yolo_shaped(work / "yolo-shaped-batch1.onnx", dynamic=False),
            ]
        print(
            f"source: {a.images} images (1280x720, 1920x1080, 640x480), {a.clips} clips x "
            f"{a.frames} frames of 1280x720 H.264"
        )
        # warm-up, untimed: the imports, the media files in the page cache
        predict(str(src), str(models[0]), str(work / "warm"), one_by_one=True)
        for model in models:
            bench(src, model, work, a.repeat, a.batch_size, a.decode_workers, a.conf)
        print(f"\nload average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
