"""`datapool predict`: real ONNX models (built with onnx.helper, whose graphs compute their answer
from the pixels) run by onnxruntime over real encoded images and videos, their predictions
written in Lightly's format and read back by `datapool run --predictions`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.cli import main
from datapool.config import SelectionConfig
from datapool.media import write_image, write_video

onnx = pytest.importorskip("onnx")

BG = (90, 90, 90)
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
ULTRALYTICS = {"author": "Ultralytics", "task": "detect", "stride": "32", "batch": "1"}


def _detector(
    path: Path,
    size: int = 320,
    metadata: dict[str, str] | None = None,
    anchors_last: bool = True,
    batch: int | None = 1,
) -> Path:
    """A "detector" in Ultralytics' layout: output (1, 4 + 2, 3) whose anchors are the box of
    the strongly red pixels of its input (class 0 'red', score 0.9), the same box again with a
    lower score (0.5: non-maximum suppression must drop it), and the box of the strongly blue
    pixels (class 1 'blue', 0.8); each box is the min/max of its pixels' coordinates, in
    (centre x, centre y, width, height) of the letterboxed input. `batch` None: its batch
    dimension is dynamic (Ultralytics' dynamic=True), each picture's answer its own."""
    from onnx import TensorProto, helper, numpy_helper

    S = size
    x = np.broadcast_to(np.arange(S, dtype=np.float32)[None, :], (S, S))[None, None].copy()
    y = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
    consts = {
        "X": x,
        "Y": y,
        "RX": S - 1 - x,
        "RY": S - 1 - y,
        "hi": np.array(0.6, np.float32),
        "lo": np.array(0.3, np.float32),
        "last": np.array(S - 1, np.float32),
        "one": np.array(1.0, np.float32),
        "half": np.array(0.5, np.float32),
        "shape": np.array([-1, 1, 1], np.int64),
        "split": np.array([1, 1, 1], np.int64),
    }
    nodes = [helper.make_node("Split", ["images", "split"], ["R", "G", "B"], axis=1)]

    def mask(name: str, strong: str, weak: tuple[str, str]) -> None:
        nodes.extend(
            [
                helper.make_node("Greater", [strong, "hi"], [f"{name}_s"]),
                helper.make_node("Less", [weak[0], "lo"], [f"{name}_w0"]),
                helper.make_node("Less", [weak[1], "lo"], [f"{name}_w1"]),
                helper.make_node("And", [f"{name}_s", f"{name}_w0"], [f"{name}_a"]),
                helper.make_node("And", [f"{name}_a", f"{name}_w1"], [f"{name}_b"]),
                helper.make_node("Cast", [f"{name}_b"], [f"{name}_m"], to=TensorProto.FLOAT),
            ]
        )

    def box(name: str) -> list[str]:
        m = f"{name}_m"
        out = []
        for axis, grid, rev in (("x", "X", "RX"), ("y", "Y", "RY")):
            p = f"{name}_{axis}"
            nodes.extend(
                [
                    helper.make_node("Mul", [m, grid], [f"{p}_g"]),
                    helper.make_node("ReduceMax", [f"{p}_g"], [f"{p}_max"], axes=[1, 2, 3]),
                    helper.make_node("Mul", [m, rev], [f"{p}_rg"]),
                    helper.make_node("ReduceMax", [f"{p}_rg"], [f"{p}_rmax"], axes=[1, 2, 3]),
                    helper.make_node("Sub", ["last", f"{p}_rmax"], [f"{p}_min"]),
                    helper.make_node("Add", [f"{p}_min", f"{p}_max"], [f"{p}_s"]),
                    helper.make_node("Add", [f"{p}_s", "one"], [f"{p}_s1"]),
                    helper.make_node("Mul", [f"{p}_s1", "half"], [f"{p}_c4"]),
                    helper.make_node("Sub", [f"{p}_max", f"{p}_min"], [f"{p}_d"]),
                    helper.make_node("Add", [f"{p}_d", "one"], [f"{p}_w4"]),
                    helper.make_node("Reshape", [f"{p}_c4", "shape"], [f"{p}_c"]),
                    helper.make_node("Reshape", [f"{p}_w4", "shape"], [f"{p}_w"]),
                ]
            )
            out.append((f"{p}_c", f"{p}_w"))
        nodes.append(helper.make_node("ReduceMax", [m], [f"{name}_any4"], axes=[1, 2, 3]))
        nodes.append(helper.make_node("Reshape", [f"{name}_any4", "shape"], [f"{name}_any"]))
        (cx, w), (cy, h) = out
        return [cx, cy, w, h]

    def scored(name: str, xywh: list[str], scores: tuple[float, float]) -> str:
        cols = list(xywh)
        for k, s in enumerate(scores):
            consts[f"{name}_k{k}"] = np.array(s, np.float32)
            src = xywh[0].split("_")[0] + "_any"
            nodes.append(helper.make_node("Mul", [src, f"{name}_k{k}"], [f"{name}_p{k}"]))
            cols.append(f"{name}_p{k}")
        nodes.append(helper.make_node("Concat", cols, [name], axis=1))  # (1, 6, 1)
        return name

    mask("red", "R", ("G", "B"))
    mask("blue", "B", ("R", "G"))
    red, blue = box("red"), box("blue")
    anchors = [
        scored("a0", red, (0.9, 0.05)),
        scored("a1", red, (0.5, 0.0)),
        scored("a2", blue, (0.03, 0.8)),
    ]
    n: int | str = "batch" if batch is None else batch
    if anchors_last:
        nodes.append(helper.make_node("Concat", anchors, ["output0"], axis=2))
        out_shape = [n, 6, 3]
    else:  # (1, anchors, 4 + nc): a layout that is not Ultralytics'
        nodes.append(helper.make_node("Concat", anchors, ["cat"], axis=2))
        nodes.append(helper.make_node("Transpose", ["cat"], ["output0"], perm=[0, 2, 1]))
        out_shape = [n, 3, 6]
    graph = helper.make_graph(
        nodes,
        "red-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, S, S])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {**ULTRALYTICS, "imgsz": f"[{S}, {S}]", "names": "{0: 'red', 1: 'blue'}"}
    helper.set_model_props(model, meta if metadata is None else metadata)
    onnx.save(model, str(path))
    return path


def _classifier(
    path: Path, metadata: dict[str, str] | None = None, nc: int = 3, batch: int | None = 1
) -> Path:
    """A "classifier" whose logits are 3x the mean of each (normalised) colour channel: red,
    green, blue pictures are classes 0, 1, 2, and a half red, half green one is unsure.
    `batch` None: its batch dimension is dynamic."""
    from onnx import TensorProto, helper, numpy_helper

    n: int | str = "batch" if batch is None else batch
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Mul", ["mean", "k"], ["logits3"]),
            helper.make_node("Slice", ["logits3", "starts", "ends", "axes"], ["out"]),
        ],
        "colour-classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [n, nc])],
        [
            numpy_helper.from_array(np.array(3.0, np.float32), "k"),
            numpy_helper.from_array(np.array([0], np.int64), "starts"),
            numpy_helper.from_array(np.array([nc], np.int64), "ends"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def _picture(h: int, w: int, rects: list[tuple[int, int, int, int, tuple[int, int, int]]]):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = BG
    for x, y, rw, rh, colour in rects:
        img[y : y + rh, x : x + rw] = colour
    return img


def _doc(out: Path, task: str, name: str) -> dict:
    stem = name.rsplit(".", 1)[0]
    return json.loads((out / task / f"{stem}.json").read_text())


def _boxes(doc: dict, category: int) -> list[list[float]]:
    return [p["bbox"] for p in doc["predictions"] if p["category_id"] == category]


def _near(box: list[float], want: tuple[int, int, int, int], tol: float) -> bool:
    return bool(np.abs(np.array(box) - np.array(want, float)).max() <= tol)


@pytest.fixture
def detected(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A source of a PNG with a red and a blue box, a JPEG with a red one, a phone JPEG stored
    landscape and shown portrait (EXIF orientation 6), a PNG with neither colour, and a 5-frame
    H.264 clip of a red box moving right; the detector; and its predictions (`datapool
    predict`)."""
    from PIL import Image

    src = tmp_path / "src"
    write_image(src / "a.png", _picture(150, 200, [(20, 30, 60, 40, RED), (120, 90, 50, 40, BLUE)]))
    write_image(src / "b.jpg", _picture(120, 160, [(40, 20, 60, 50, RED)]), quality=2)
    shown = _picture(160, 120, [(10, 100, 30, 50, RED)])  # portrait as shown
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown turned a quarter clockwise
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
    stored.save(src / "phone.jpg", exif=exif.tobytes(), quality=95)
    write_image(src / "plain.png", _picture(100, 100, []))
    frames = [_picture(96, 128, [(8 + 16 * t, 24, 32, 32, RED)]) for t in range(5)]
    write_video(src / "cam" / "clip.mp4", frames, fps=5, crf=10)
    model = _detector(tmp_path / "red.onnx")
    out = tmp_path / "preds"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out), "-q"]) == 0
    return src, model, out


def test_detector_boxes_cover_the_drawn_rectangles_in_the_picture_as_shown(detected) -> None:
    _, _, out = detected
    assert json.loads((out / "tasks.json").read_text()) == ["red"]  # the model's stem
    schema = json.loads((out / "red" / "schema.json").read_text())
    assert schema == {
        "task_type": "object-detection",
        "categories": [{"id": 0, "name": "red"}, {"id": 1, "name": "blue"}],
    }
    a = _doc(out, "red", "a.png")
    assert a["file_name"] == "a.png"
    assert len(a["predictions"]) == 2  # the 0.5 duplicate of the red box was suppressed
    (red,), (blue,) = _boxes(a, 0), _boxes(a, 1)
    assert _near(red, (20, 30, 60, 40), 1.0) and _near(blue, (120, 90, 50, 40), 1.0)
    p = a["predictions"][0]
    assert p["score"] == pytest.approx(0.9, abs=1e-6)
    assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert p["probabilities"][0] == pytest.approx(0.9 / 0.95, abs=1e-5)
    (b,) = _boxes(_doc(out, "red", "b.jpg"), 0)
    assert _near(b, (40, 20, 60, 50), 2.0)  # JPEG's chroma is blurred at half resolution
    (phone,) = _boxes(_doc(out, "red", "phone.jpg"), 0)
    assert _near(phone, (10, 100, 30, 50), 2.0)  # as shown, not as stored
    assert _doc(out, "red", "plain.png")["predictions"] == []
    for t in range(5):  # frame t's file, by Lightly's frame name
        doc = _doc(out, "red", f"cam/clip-{t}-mp4.png")
        assert doc["file_name"] == f"cam/clip-{t}-mp4.png"
        (box,) = _boxes(doc, 0)
        assert _near(box, (8 + 16 * t, 24, 32, 32), 2.5), (t, box)


def test_a_run_reads_the_predictions_for_crops_and_balance(detected, tmp_path: Path) -> None:
    src, _, out = detected
    exported = tmp_path / "exported"
    r = datapool.run(
        src,
        tmp_path / "pool",
        n_samples=20,
        crops="red",
        crop_padding=0.0,
        predictions_dir=str(out),
        export=str(exported),
        progress=False,
    )
    assert {"a-png-crop-0.png", "a-png-crop-1.png", "b-jpg-crop-0.png"} <= set(r.selected)
    assert "phone-jpg-crop-0.png" in r.selected and not r.warnings, r.warnings
    from PIL import Image

    crop = np.asarray(Image.open(exported / "a-png-crop-1.png").convert("RGB")).astype(int)
    assert crop.shape[:2] == (40, 50) and (np.abs(crop - BLUE).max(axis=2) < 40).mean() > 0.9
    phone = np.asarray(Image.open(exported / "phone-jpg-crop-0.png").convert("RGB")).astype(int)
    assert (np.abs(phone - RED).max(axis=2) < 60).mean() > 0.8  # the red box, cut as shown
    sel = SelectionConfig.from_lightly(
        {
            "n_samples": 1,
            "strategies": [
                {
                    "input": {"type": "PREDICTIONS", "task": "red", "name": "CLASS_DISTRIBUTION"},
                    "strategy": {"type": "BALANCE", "target": {"blue": 0.9, "red": 0.1}},
                }
            ],
        }
    )
    r = datapool.run(
        src,
        tmp_path / "pool2",
        n_samples=1,
        strategies=sel.strategies,
        predictions_dir=str(out),
        progress=False,
    )
    assert r.selected == ["a.png"]  # the one picture with a blue box


def test_a_classifier_gives_probabilities_that_uncertainty_selects_on(tmp_path: Path) -> None:
    src = tmp_path / "src"
    half = _picture(64, 64, [(0, 0, 32, 64, RED), (32, 0, 32, 64, GREEN)])
    for name, img in {
        "red.png": _picture(64, 64, [(0, 0, 64, 64, RED)]),
        "green.jpg": _picture(64, 64, [(0, 0, 64, 64, GREEN)]),
        "blue.png": _picture(48, 80, [(0, 0, 80, 48, BLUE)]),
        "half.png": half,
    }.items():
        write_image(src / name, img)
    model = _classifier(tmp_path / "colour.onnx")  # no names: --classes
    classes = tmp_path / "classes.txt"
    classes.write_text("red\ngreen\nblue\n")
    out = tmp_path / "preds"
    args = ["predict", str(src), "--model", str(model), "--out", str(out), "--task", "colour"]
    assert main([*args, "--classes", str(classes), "-q"]) == 0
    schema = json.loads((out / "colour" / "schema.json").read_text())
    assert schema["task_type"] == "classification"
    assert [c["name"] for c in schema["categories"]] == ["red", "green", "blue"]
    for name, k in (("red.png", 0), ("green.jpg", 1), ("blue.png", 2)):
        (p,) = _doc(out, "colour", name)["predictions"]
        assert p["category_id"] == k and max(p["probabilities"]) > 0.99, (name, p)
    (p,) = _doc(out, "colour", "half.png")["predictions"]
    assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert 0.2 < p["probabilities"][0] < 0.8 and 0.2 < p["probabilities"][1] < 0.8
    sel = SelectionConfig.from_lightly(
        {
            "n_samples": 1,
            "strategies": [
                {
                    "input": {"type": "SCORES", "task": "colour", "score": "uncertainty_margin"},
                    "strategy": {"type": "WEIGHTS"},
                }
            ],
        }
    )
    r = datapool.run(
        src,
        tmp_path / "pool",
        n_samples=1,
        strategies=sel.strategies,
        predictions_dir=str(out),
        progress=False,
    )
    assert r.selected == ["half.png"]


def test_class_names_from_the_metadata_and_the_mean_the_model_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "g.png", _picture(40, 40, [(0, 0, 40, 40, GREEN)]))
    meta = {"names": '["r", "g", "b"]', "datapool.mean": "0,0,0", "datapool.std": "1,1,1"}
    model = _classifier(tmp_path / "m.onnx", meta)
    out = tmp_path / "preds"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out), "-q"]) == 0
    (p,) = _doc(out, "m", "g.png")["predictions"]
    # 0-1 pixels (the model's datapool.mean/std): logits 3 * (0, 1, 0)
    want = np.exp([0.0, 3.0, 0.0]) / np.exp([0.0, 3.0, 0.0]).sum()
    assert p["probabilities"] == pytest.approx(want.tolist(), abs=2e-3)


def test_an_existing_folder_keeps_its_tasks_and_refuses_another_models(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(60, 80, [(10, 10, 20, 20, RED)]))
    out = tmp_path / "preds"
    (out / "other").mkdir(parents=True)
    (out / "tasks.json").write_text('["other"]')
    (out / "other" / "schema.json").write_text('{"task_type": "classification"}')
    model = _detector(tmp_path / "det.onnx")
    base = ["predict", str(src), "--model", str(model), "--out", str(out), "-q"]
    assert main(base) == 0
    assert json.loads((out / "tasks.json").read_text()) == ["other", "det"]
    assert main(base) == 0  # again: the same model's task is written again
    assert json.loads((out / "tasks.json").read_text()) == ["other", "det"]
    cls = _classifier(tmp_path / "c.onnx", {"names": '["r", "g", "b"]'})
    got = main(["predict", str(src), "--model", str(cls), "--out", str(out), "--task", "det"])
    assert got == 4
    assert json.loads((out / "det" / "schema.json").read_text())["task_type"] == "object-detection"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--model", "{tmp}/missing.onnx"], "--model {tmp}/missing.onnx: no such file"),
        (["--out", "{src}/preds"], "--out {src}/preds is inside SOURCE"),
        (["--conf", "1.5"], "--conf must be a number in 0..1"),
        (["--task", ".hidden"], "--task '.hidden': a task is a folder name"),
        (["--classes", "{tmp}/none.txt"], "--classes {tmp}/none.txt: cannot read it"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--decode-workers", "-1"], "--decode-workers must be an integer >= 0, got -1"),
    ],
)
def test_mistakes_are_one_line_naming_the_flag(tmp_path: Path, capsys, args, said) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(60, 80, []))
    model = _detector(tmp_path / "det.onnx")
    given = {"--model": str(model), "--out": str(tmp_path / "preds")}
    fill = {"tmp": str(tmp_path), "src": str(src)}
    extra = [a.format(**fill) for a in args]
    for i in range(0, len(extra) - 1, 2):
        given.pop(extra[i], None)
    flat = [x for kv in given.items() for x in kv]
    assert main(["predict", str(src), *flat, *extra]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said.format(**fill) in err, err
    assert not (tmp_path / "preds").exists()


def test_predictions_may_go_under_the_sources_hidden_lightly_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(60, 80, [(10, 10, 20, 20, RED)]))
    model = _detector(tmp_path / "det.onnx")
    out = src / ".lightly" / "predictions"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out), "-q"]) == 0
    r = datapool.run(src, tmp_path / "pool", n_samples=5, crops="det", progress=False)
    assert r.selected == ["a-png-crop-0.png"]  # found without --predictions


def _ultralytics(path: Path, task: str, outputs: dict[str, list[int]]) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0)]
    inits = []
    for name, shape in outputs.items():
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"{name}_shape"))
        nodes.append(helper.make_node("Expand", ["m", f"{name}_shape"], [name]))
    graph = helper.make_graph(
        nodes,
        task,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {**ULTRALYTICS, "task": task, "imgsz": "[64, 64]", "names": "{0: 'a', 1: 'b'}"}
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("task", "outputs", "said"),
    [
        (
            "segment",
            {"output0": [1, 38, 84], "output1": [1, 32, 16, 16]},
            "is an Ultralytics segment export (outputs: output0 [1, 38, 84]; output1 [1, 32, 16, 16])",
        ),
        ("pose", {"output0": [1, 57, 84]}, "is an Ultralytics pose export"),
        ("detect", {"output0": [1, 9, 84]}, "output output0 [1, 9, 84] is not (1, 4+2, anchors)"),
        ("detect", {"output0": [1, 6]}, "has outputs output0 [1, 6] (Ultralytics detect)"),
    ],
)
def test_other_models_are_refused_saying_what_was_found(tmp_path, capsys, task, outputs, said):
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(60, 80, []))
    model = _ultralytics(tmp_path / "m.onnx", task, outputs)
    assert main(["predict", str(src), "--model", str(model), "--out", str(tmp_path / "o")]) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err and "datapool predict reads" in err, err


def test_a_detector_layout_without_ultralytics_metadata_needs_class_names(tmp_path, capsys):
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(150, 200, [(20, 30, 60, 40, RED)]))
    bare = _detector(tmp_path / "bare.onnx", size=256, metadata={}, anchors_last=False)
    out = tmp_path / "o"
    assert main(["predict", str(src), "--model", str(bare), "--out", str(out)]) == 6
    assert "give them with --classes FILE" in capsys.readouterr().err
    names = tmp_path / "names.txt"
    names.write_text("red\nblue\n")
    assert main(["predict", str(src), "--model", str(bare), "--out", str(out), "--classes", str(names), "-q"]) == 0  # fmt: skip
    (red,) = _boxes(_doc(out, "bare", "a.png"), 0)
    assert _near(red, (20, 30, 60, 40), 1.0)  # (1, anchors, 4 + nc) read too


def test_two_images_of_one_name_share_a_file_and_the_second_is_said_skipped(tmp_path, capsys):
    src = tmp_path / "src"
    write_image(src / "a.jpg", _picture(60, 80, [(10, 10, 20, 20, RED)]))
    write_image(src / "a.png", _picture(60, 80, [(40, 30, 20, 20, RED)]))
    write_video(src / "a.mp4", [_picture(64, 64, [])] * 2, fps=5)  # its frames' files: a-0-mp4
    model = _detector(tmp_path / "det.onnx")
    out = tmp_path / "o"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "a.png: its predictions file a.json is a.jpg's" in said, said
    assert "skipped   1 file" in said and "2 video frames" in said, said
    assert _doc(out, "det", "a.jpg")["file_name"] == "a.jpg"
    assert _doc(out, "det", "a-1-mp4.png")["predictions"] == []


def test_nms_suppresses_within_a_class_only() -> None:
    from datapool.ingest.predictor import nms

    table = np.array(
        [  # cx, cy, w, h, class 0, class 1
            [50, 50, 20, 20, 0.9, 0.1],
            [51, 50, 20, 20, 0.8, 0.1],  # overlaps the first (IoU 0.9): dropped
            [51, 50, 20, 20, 0.1, 0.7],  # the same place, another class: kept
            [90, 90, 10, 10, 0.6, 0.0],  # elsewhere: kept
            [10, 10, 10, 10, 0.2, 0.1],  # below conf 0.25
        ],
        np.float32,
    )
    xyxy, score, cls, probs = nms(table, 2, 0.25, 0.7)
    assert score.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert cls.tolist() == [0, 1, 0]
    assert xyxy[0].tolist() == [40, 40, 60, 60]
    assert probs[0].tolist() == pytest.approx([0.9, 0.1])


def test_the_letterbox_resizes_as_opencvs_inter_linear() -> None:
    from datapool.ingest.predictor import letterbox, linear

    row = np.array([[[0, 0, 0], [100, 100, 100]]], np.uint8)  # 1 x 2
    assert linear(row, 4, 1)[0, :, 0].tolist() == [0, 25, 75, 100]  # cv2.resize's values
    assert linear(np.repeat(row, 2, axis=1), 2, 1)[0, :, 0].tolist() == [0, 100]  # 4 -> 2
    boxed, r, (left, top) = letterbox(np.full((50, 100, 3), 7, np.uint8), (64, 64))
    assert (r, left, top) == (0.64, 0, 16)
    assert (boxed[16:48] == 7).all() and (boxed[:16] == 114).all() and (boxed[48:] == 114).all()


def test_an_ultralytics_classifier_sees_the_centre_of_the_picture(tmp_path: Path) -> None:
    src = tmp_path / "src"
    thirds = [(0, 0, 32, 32, RED), (32, 0, 32, 32, GREEN), (64, 0, 32, 32, BLUE)]
    write_image(src / "wide.png", _picture(32, 96, thirds))
    meta = {"author": "Ultralytics", "task": "classify", "imgsz": "[32, 32]"}
    model = _classifier(tmp_path / "u.onnx", {**meta, "names": "{0: 'r', 1: 'g', 2: 'b'}"})
    out = tmp_path / "preds"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out), "-q"]) == 0
    (p,) = _doc(out, "u", "wide.png")["predictions"]
    # the shorter side to 32, the centre 32x32 cut out: all green, fed 0-1 (Ultralytics')
    want = np.exp([0.0, 3.0, 0.0]) / np.exp([0.0, 3.0, 0.0]).sum()
    assert p["category_id"] == 1
    assert p["probabilities"] == pytest.approx(want.tolist(), abs=2e-3)


def test_a_single_logit_classifier_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(60, 80, []))
    model = _ultralytics(tmp_path / "m.onnx", "classify", {"output0": [1, 1]})
    assert main(["predict", str(src), "--model", str(model), "--out", str(tmp_path / "o")]) == 6
    assert "gives one class: a binary classifier's single logit" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_model_that_fails_on_a_picture_is_one_line(tmp_path: Path, capsys) -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(  # three channel means reshaped to two values: fails when run
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Reshape", ["mean", "shape"], ["out"]),
        ],
        "broken",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": '["a", "b"]'})
    onnx.save(model, str(tmp_path / "broken.onnx"))
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(60, 80, []))
    args = [
        "predict",
        str(src),
        "--model",
        str(tmp_path / "broken.onnx"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model broken.onnx failed on an input of shape" in err


@pytest.mark.parametrize(
    ("flags", "kept"), [(["--frame-stride", "3"], [0, 3, 6]), (["--fps", "2.5"], [0, 4])]
)
def test_the_frames_kept_are_named_in_the_next_command_and_a_run_given_them_reads_each(
    tmp_path, capsys, flags, kept
) -> None:
    """predict --frame-stride 3 (or --fps) writes the files of the frames a run with that flag
    keeps, but the `next` line it printed left the flag out: a run of it kept every frame, and
    read the frames without a file as frames without a box, without a word. The line now names
    the flag, and a run given it cuts a crop of each frame kept."""
    src = tmp_path / "src"
    frames = [_picture(64, 96, [(4 + 6 * t, 16, 24, 24, RED)]) for t in range(8)]
    write_video(src / "v.mp4", frames, fps=10, crf=10)
    model = _detector(tmp_path / "det.onnx")
    out = tmp_path / "o"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out), *flags]) == 0
    said = capsys.readouterr().out
    (nxt,) = [line for line in said.splitlines() if line.startswith("next")]
    assert f"--predictions {out} {' '.join(flags)} --selection" in nxt, nxt
    assert sorted(p.name for p in (out / "det").glob("v-*.json")) == [
        f"v-{t}-mp4.json" for t in kept
    ]
    r = datapool.run(
        src,
        tmp_path / "pool",
        n_samples=20,
        crops="det",
        predictions_dir=str(out),
        frame_stride=int(flags[1]) if flags[0] == "--frame-stride" else 1,
        fps=float(flags[1]) if flags[0] == "--fps" else None,
        progress=False,
    )
    assert sorted(r.selected) == [f"v-{t}-mp4-png-crop-0.png" for t in kept]


def test_a_bgr_model_is_fed_bgr_and_a_dynamic_size_is_given_as_run_takes_it(
    tmp_path: Path, capsys
) -> None:
    """A classifier whose metadata says datapool.channels BGR (which `run --model` honours) was
    fed R, G, B by predict: a red picture came out as the model's blue class, without a word. A
    model that leaves its input size dynamic was refused with 'give --input-size', which
    predict did not take (argparse: unrecognized arguments); its preprocessor_config.json's
    size was not read either. Now both are read as run reads them, --channels and
    --input-size given as run's are."""
    import onnx

    src = tmp_path / "src"
    write_image(src / "red.png", _picture(40, 40, [(0, 0, 40, 40, RED)]))
    names = '["r", "g", "b"]'
    bgr = _classifier(tmp_path / "bgr.onnx", {"names": names, "datapool.channels": "BGR"})
    out = tmp_path / "preds"
    assert main(["predict", str(src), "--model", str(bgr), "--out", str(out)]) == 0
    assert ", BGR, normalised" in capsys.readouterr().out
    assert _doc(out, "bgr", "red.png")["predictions"][0]["category_id"] == 2  # B, G, R: last
    args = ["predict", str(src), "--model", str(bgr), "--out", str(out), "--task", "rgb"]
    assert main([*args, "--channels", "rgb", "-q"]) == 0
    assert _doc(out, "rgb", "red.png")["predictions"][0]["category_id"] == 0
    (tmp_path / "dyn").mkdir()
    dyn = _classifier(tmp_path / "dyn" / "dyn.onnx", {"names": names})
    m = onnx.load(str(dyn))
    for d, name in zip(m.graph.input[0].type.tensor_type.shape.dim[2:], ("h", "w")):
        d.dim_param = name
    onnx.save(m, str(dyn))
    args = ["predict", str(src), "--model", str(dyn), "--out", str(out)]
    assert main([*args, "--input-size", "32x48", "-q"]) == 0
    assert _doc(out, "dyn", "red.png")["predictions"][0]["category_id"] == 0
    (tmp_path / "dyn" / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 24, "width": 24}})
    )
    assert main([*args, "--task", "dyn2"]) == 0
    assert "resized to 24x24" in capsys.readouterr().out


def test_a_channels_last_classifier_without_normalisation_is_refused_as_run_refuses_it(
    tmp_path: Path, capsys
) -> None:
    """A Keras export (channels last, float) that names no normalisation: `run --model`
    refuses it (Keras models differ) and asks for --mean/--std; predict fed it ImageNet's, a
    guess, without a word, and took no --mean/--std. Now it refuses it in the same line, and
    --mean/--std feed it as run's do; a detector given them is refused (it is fed 0-1)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Mul", ["mean", "k"], ["out"]),
        ],
        "keras-colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 32, 32, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.array(3.0, np.float32), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": '["r", "g", "b"]'})
    path = tmp_path / "keras.onnx"
    onnx.save(model, str(path))
    src = tmp_path / "src"
    write_image(src / "g.png", _picture(40, 40, [(0, 0, 40, 40, GREEN)]))
    out = tmp_path / "preds"
    args = ["predict", str(src), "--model", str(path), "--out", str(out)]
    assert main(args) == 6
    err = capsys.readouterr().err
    assert "takes channels-last float pixels" in err and "--mean 0,0,0" in err, err
    assert not (out / "keras").exists()
    assert main([*args, "--mean", "0,0,0", "--std", "1,1,1", "-q"]) == 0
    (p,) = _doc(out, "keras", "g.png")["predictions"]
    want = np.exp([0.0, 3.0, 0.0]) / np.exp([0.0, 3.0, 0.0]).sum()  # 0-1 pixels: 3 * (0, 1, 0)
    assert p["probabilities"] == pytest.approx(want.tolist(), abs=2e-3)
    det = _detector(tmp_path / "det.onnx")
    assert main(["predict", str(src), "--model", str(det), "--out", str(out), "--std", "1"]) == 4
    assert "--mean/--std: model det.onnx is read as a detector" in capsys.readouterr().err


def _predicted_at_2_fps(tmp_path: Path) -> tuple[Path, Path]:
    """A 12-frame 10 fps H.264 clip of a red box moving right, and the files `datapool predict
    --fps 2` wrote for it (frames 0, 5 and 10)."""
    from datapool.naming import frame_name

    src = tmp_path / "src"
    frames = [_picture(64, 96, [(4 + 4 * t, 16, 24, 24, RED)]) for t in range(12)]
    write_video(src / "v.mp4", frames, fps=10, crf=10)
    model = _detector(tmp_path / "det.onnx")
    out = tmp_path / "o"
    assert main(["predict", str(src), "--model", str(model), "--out", str(out), "--fps", "2"]) == 0
    written = sorted(p.name for p in (out / "det").glob("v-*.json"))
    assert written == [frame_name("v.mp4", t, 12)[:-4] + ".json" for t in (0, 5, 10)]
    return src, out


def test_a_run_that_keeps_frames_predict_did_not_says_they_have_no_file(tmp_path, capsys) -> None:
    """predict --fps 2 writes the files of frames 0, 5 and 10 of a 10 fps clip; a run without
    --fps kept all 12 frames, and the 9 without a file passed for frames without objects
    ("9 video frames had none", though each held the object), without a word. They are now
    counted apart (frames_without_predictions), and one warning names the count, the first
    frame and the flag to give, in the summary, --json and report.json. The run given the
    --fps predict was given reads each frame's file: no warning."""
    from datapool.naming import frame_name

    src, out = _predicted_at_2_fps(tmp_path)
    capsys.readouterr()
    run = ["run", str(src), "--predictions", str(out), "--crops", "det", "--n-samples", "20"]
    assert main([*run, "--pool", str(tmp_path / "p1"), "--json", "-q"]) == 0
    got = json.loads(capsys.readouterr().out)
    c = got["counts"]
    assert c["frames_without_predictions"] == 9 and c["frames_without_objects"] == 0, c
    assert c["frames_embedded"] == 3
    first = frame_name("v.mp4", 1, 12)
    (warning,) = [w for w in got["warnings"] if "no predictions file" in w]
    assert warning.startswith("9 video frames this run keeps have no predictions file for task")
    assert f"(first: {first}, looked for {out}/det/{first[:-4]}.json)" in warning, warning
    assert "give the --fps/--frame-stride they were made with" in warning
    report = json.loads(Path(got["report"]).read_text())
    assert report["counts"]["frames_without_predictions"] == 9
    assert report["crops"]["frames_without_predictions"] == [
        {"key": "v.mp4", "frames": 9, "first": first}
    ]
    assert warning in report["warnings"]
    page = Path(got["report_html"]).read_text()
    assert "Video frames without a predictions file (9)" in page and f">{first}<" in page
    assert main([*run, "--pool", str(tmp_path / "p2")]) == 0
    said = capsys.readouterr()
    assert "9 video frames had no predictions file" in said.out, said.out
    assert said.err.count("have no predictions file") == 1, said.err
    # given the --fps predict was given, every frame kept has its file: no warning
    assert main([*run, "--pool", str(tmp_path / "p3"), "--fps", "2", "--json", "-q"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["counts"]["frames_without_predictions"] == 0 and got["warnings"] == []
    assert got["counts"]["frames_embedded"] == 3


def test_a_strategys_frames_without_a_file_are_warned_with_the_flag_to_give(tmp_path) -> None:
    """The strategies read a predictions file per video frame too: those of the frames a run
    without predict's --fps keeps and predict did not were warned of as candidates without
    predictions, but with no word of why; the warning now counts the video frames among them
    and names the flag. The run given predict's --fps has a file for every frame."""
    from datapool.naming import frame_name

    src, out = _predicted_at_2_fps(tmp_path)
    sel = SelectionConfig.from_lightly(
        {
            "n_samples": 2,
            "strategies": [
                {
                    "input": {"type": "PREDICTIONS", "task": "det", "name": "CLASS_DISTRIBUTION"},
                    "strategy": {"type": "BALANCE", "target": {"red": 1.0}},
                }
            ],
        }
    )
    kw = dict(n_samples=2, strategies=sel.strategies, predictions_dir=str(out), progress=False)
    r = datapool.run(src, tmp_path / "p1", **kw)
    (warning,) = [w for w in r.warnings if "have no predictions for task 'det'" in w]
    assert warning.startswith("9 of 12 candidates have no predictions"), warning
    # the folder looked in is --predictions DIR's (it named .lightly/predictions, not read here)
    assert f"looked for {out}/det/" in warning and ".lightly/predictions" not in warning, warning
    assert (
        f"; 9 of them are video frames (first: {frame_name('v.mp4', 1, 12)}): where predictions "
        "were written for other frames, give the --fps/--frame-stride they were made with"
    ) in warning
    r = datapool.run(src, tmp_path / "p2", fps=2.0, **kw)
    assert r.warnings == [] and r.counts["frames_embedded"] == 3


def test_a_run_the_model_fails_leaves_no_schema_to_refuse_the_next_run(tmp_path) -> None:
    """A classifier whose output size is left to run time gives 5 values where its metadata
    names 3 classes: the run fails on its first answer. It left `out/TASK/schema.json` with the
    3 names and no predictions, so the run given the right names (--classes) was refused as
    though the folder held another model's predictions; now the folder it made is gone, and
    the next run writes its predictions."""
    from onnx import TensorProto, helper, numpy_helper

    from datapool.errors import ModelError
    from datapool.predict import predict

    consts = {
        "flat": np.array([-1, 1], np.int64),
        "size": np.array([1, 5], np.int64),
        "zero": np.array(0.0, np.float32),
    }
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean", "flat"], ["col"]),
            helper.make_node("ReduceMin", ["input"], ["low"], keepdims=0),  # (size at run time)
            helper.make_node("Mul", ["low", "zero"], ["nought"]),
            helper.make_node("Cast", ["nought"], ["nought_i"], to=TensorProto.INT64),
            helper.make_node("Add", ["size", "nought_i"], ["size_i"]),
            helper.make_node("ConstantOfShape", ["size_i"], ["ones"], value=one),
            helper.make_node("Mul", ["col", "ones"], ["out"]),
        ],
        "five-values",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "values"])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": '["a", "b", "c"]'})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    write_image(tmp_path / "src" / "a.png", _picture(40, 60, [(0, 0, 20, 20, RED)]))
    (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
    for one_by_one in (False, True):
        out = tmp_path / f"out-{one_by_one}"
        with pytest.raises(ModelError, match="gave 5 values for its 3 class names"):
            predict(str(tmp_path / "src"), str(path), str(out), one_by_one=one_by_one)
        assert not (out / "m").exists()
        r = predict(
            str(tmp_path / "src"),
            str(path),
            str(out),
            classes_file=str(tmp_path / "five.txt"),
            one_by_one=one_by_one,
        )
        assert r.images == 1 and (out / "m" / "a.json").is_file()


@pytest.mark.parametrize("one_by_one", [False, True])
def test_an_image_named_as_a_videos_frame_keeps_its_file_and_the_video_is_skipped(
    tmp_path, one_by_one: bool
) -> None:
    """The image `v-0-mp4.png` and the first frame of `v.mp4` have one name, so one predictions
    file: the video's frame overwrote the image's, silently, both counted as predicted. Now the
    first listed keeps it and the other file is skipped saying why, as `a.jpg` and `a.png` are."""
    from datapool.predict import predict

    model = _detector(tmp_path / "m.onnx", batch=None)
    src = tmp_path / "src"
    write_image(src / "v-0-mp4.png", _picture(100, 100, [(10, 10, 30, 30, BLUE)]))
    write_video(src / "v.mp4", [_picture(96, 128, [(8, 24, 32, 32, RED)])] * 3, fps=5, crf=10)
    r = predict(str(src), str(model), str(tmp_path / "out"), one_by_one=one_by_one)
    assert r.skipped == [
        {
            "key": "v.mp4",
            "reason": "its predictions file v-0-mp4.json is v-0-mp4.png's (named v-0-mp4.png too) "
            "(Lightly's format has one file per name without its extension)",
        }
    ]
    doc = json.loads((tmp_path / "out" / "m" / "v-0-mp4.json").read_text())
    assert [p["category_id"] for p in doc["predictions"]] == [1]  # the image's blue box
    assert (r.images, r.frames) == (1, 0)
