"""`datapool predict` decoding ahead on threads and running its model in batches
(ingest/predict_pipeline.py) writes what predicting one picture at a time writes (the reference
path, `predict(..., one_by_one=True)`): the same files, bytes, counts and skipped files, over
real media (PNG, JPEG with EXIF orientation, an H.264 clip, pictures of different sizes in one
batch, a video that breaks part-way, an empty file), with a model of a fixed batch of 1 and
ones whose batch is dynamic. A Ctrl-C ends it as it ended predict one picture at a time."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datapool.media import write_image, write_video
from datapool.predict import predict

from ._robust import Proc
from .conftest import PACKAGE_PATH
from .test_predict import BLUE, RED, _classifier, _detector, _picture

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of five sizes (one stored landscape and shown portrait: EXIF orientation 6), an
    H.264 clip, a Matroska video cut in half (it breaks after some of its frames) and an empty
    JPEG, in a listing order that puts the broken files between good ones."""
    from PIL import Image

    src = tmp_path_factory.mktemp("batched") / "src"
    write_image(src / "a.png", _picture(150, 200, [(20, 30, 60, 40, RED), (120, 90, 50, 40, BLUE)]))
    write_image(src / "b.jpg", _picture(120, 160, [(40, 20, 60, 50, RED)]), quality=2)
    write_image(src / "big.png", _picture(480, 640, [(400, 300, 120, 90, RED)]))
    write_image(src / "tall.png", _picture(300, 90, [(10, 200, 50, 60, BLUE)]))
    shown = _picture(160, 120, [(10, 100, 30, 50, RED)])  # portrait as shown
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
    stored.save(src / "phone.jpg", exif=exif.tobytes(), quality=95)
    write_image(src / "plain.png", _picture(100, 100, []))
    frames = [_picture(96, 128, [(8 + 16 * t, 24, 32, 32, RED)]) for t in range(5)]
    write_video(src / "cam" / "clip.mp4", frames, fps=5, crf=10)
    rng = np.random.default_rng(0)
    noisy = [
        np.where(_picture(96, 128, [(4 * t, 40, 30, 30, RED)]) == 90, rng.integers(0, 90), 0)
        for t in range(20)
    ]
    cut = write_video(src / "cut.mkv", [f.astype(np.uint8) for f in noisy], fps=10, crf=0)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (src / "empty.jpg").write_bytes(b"")
    return src


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _said(result: Any) -> dict[str, Any]:
    doc = result.to_json()
    del doc["out"]
    return doc


@pytest.mark.parametrize(
    ("kind", "batch_size"),
    [("detector", 3), ("dynamic-detector", 3), ("dynamic-detector", 1), ("dynamic-classifier", 4)],
)
def test_batches_write_the_bytes_of_one_picture_at_a_time(
    source: Path, tmp_path: Path, kind: str, batch_size: int
) -> None:
    model = (
        _classifier(tmp_path / "m.onnx", {"names": '["red", "green", "blue"]'}, batch=None)
        if kind == "dynamic-classifier"
        else _detector(tmp_path / "m.onnx", batch=None if kind.startswith("dynamic") else 1)
    )
    one = predict(str(source), str(model), str(tmp_path / "one"), one_by_one=True)
    many = predict(
        str(source), str(model), str(tmp_path / "many"), batch_size=batch_size, decode_workers=2
    )
    want, got = _tree(tmp_path / "one"), _tree(tmp_path / "many")
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    assert _said(many) == _said(one)
    # what the reference itself wrote: every picture, the broken video's frames before it broke
    assert one.images == 6 and one.frames > 5, one.to_json()
    assert {s["key"] for s in one.skipped} == {"cut.mkv", "empty.jpg"}
    assert "m/cut-0-mkv.json" in want and "m/cam/clip-4-mp4.json" in want
    if kind != "dynamic-classifier":  # the drawn boxes, each picture letterboxed on its own
        big = json.loads(want["m/big.json"])["predictions"]
        assert [p["category_id"] for p in big] == [0]
        assert np.allclose(big[0]["bbox"], [400, 300, 120, 90], atol=2.5), big
        phone = json.loads(want["m/phone.json"])["predictions"]
        assert np.allclose(phone[0]["bbox"], [10, 100, 30, 50], atol=1.5), phone


class _Seen:
    """A real onnxruntime session whose calls' batch sizes are noted."""

    def __init__(self, session: Any) -> None:
        self.session, self.batches = session, list[int]()

    def run(self, names: Any, feed: dict[str, Any], options: Any = None) -> Any:
        self.batches.append(len(next(iter(feed.values()))))
        return self.session.run(names, feed, options)


@pytest.mark.parametrize("batch", [None, 1])
def test_a_dynamic_batch_runs_pictures_together_and_a_fixed_one_alone(
    source: Path, tmp_path: Path, batch: int | None
) -> None:
    from datapool.ingest.predict_pipeline import predict_files
    from datapool.ingest.predictor import open_predictor
    from datapool.sources import open_source

    predictor = open_predictor(_detector(tmp_path / "m.onnx", batch=batch))
    seen = _Seen(predictor.session)
    predictor.session = seen
    src = open_source(str(source))
    listing = src.list()
    keys = listing["key"].tolist()
    names: list[str] = []
    ended: dict[str, str | None] = {}
    predict_files(
        src.open_inputs(keys),
        dict(zip(keys, listing["kind"].tolist())),
        predictor,
        lambda key, name: None,
        lambda p, preds: names.append(p.name),
        ended.__setitem__,
        batch_size=3,
        decode_workers=2,
    )
    n = len(names)  # 6 images, the clip's 5 frames, the cut video's frames before it broke
    assert n > 11 and len(set(names)) == n
    want = [3] * (n // 3) + [n % 3] * (n % 3 > 0) if batch is None else [1] * n
    assert seen.batches == want and predictor.batched == (batch is None)
    assert list(ended) == keys and ended["empty.jpg"] and ended["cut.mkv"] and not ended["a.png"]


def test_a_model_that_cannot_run_a_batch_it_says_it_takes_runs_one_at_a_time(
    source: Path, tmp_path: Path
) -> None:
    """An input whose batch is dynamic in a graph that reshapes to one row: onnxruntime says its
    output is (1, 3), so predict runs its pictures alone (same bytes); and where the output's
    batch could not be told (forced here), the batch that fails is run alone, and every later
    one, and the summary says so."""
    from onnx import TensorProto, helper, numpy_helper

    from datapool.ingest.predictor import open_predictor

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Reshape", ["mean", "shape"], ["out"]),
        ],
        "one-row",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array([1, 3], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": '["r", "g", "b"]'})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    one = predict(str(source), str(path), str(tmp_path / "one"), one_by_one=True)
    many = predict(str(source), str(path), str(tmp_path / "many"), batch_size=4)
    assert _tree(tmp_path / "many") == _tree(tmp_path / "one") and many.fed == one.fed

    predictor = open_predictor(path)
    assert not predictor.batched
    predictor.batched = True
    pictures = [_picture(40 + 10 * i, 60, [(0, 0, 20, 20, RED)]) for i in range(4)]
    prepared = [predictor.prepare(p) for p in pictures]
    rows = predictor.run_batch([predictor.input(px) for px, _ in prepared])
    got = [predictor.finish(row, how) for row, (_, how) in zip(rows, prepared)]
    assert got == [predictor.predict(p) for p in pictures]
    assert not predictor.batched
    assert predictor.notes == ["run one picture at a time: it failed on, or misread, a batch of 4"]


def test_a_batch_the_model_fails_is_run_alone_without_onnxruntimes_error_log(
    source: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A model that says its batch is dynamic and whose output's sizes are left to run time,
    but that reshapes to one row (it runs a picture alone, fails on a batch of several): each
    picture of the batch that failed, and of every later one, gets its one file, the bytes of
    predicting one by one. The run succeeded, but onnxruntime's own log of the failing node
    ('[E:onnxruntime:...] Non-zero status code returned while running Reshape node') was
    printed in red on stderr; now only the summary's note says it."""
    from onnx import TensorProto, helper, numpy_helper

    from datapool.ingest.predictor import open_predictor

    consts = {"shape": np.array([1, 3], np.int64), "zero": np.array(0.0, np.float32)}
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("ReduceMin", ["input"], ["low"], keepdims=0),  # (size at run time)
            helper.make_node("Mul", ["low", "zero"], ["nought"]),
            helper.make_node("Cast", ["nought"], ["nought_i"], to=TensorProto.INT64),
            helper.make_node("Add", ["shape", "nought_i"], ["shape_i"]),
            helper.make_node("Reshape", ["mean", "shape_i"], ["out"]),
        ],
        "one-row",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": '["r", "g", "b"]'})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert open_predictor(path).batched
    one = predict(str(source), str(path), str(tmp_path / "one"), one_by_one=True)
    capfd.readouterr()
    many = predict(str(source), str(path), str(tmp_path / "many"), batch_size=4)
    assert "onnxruntime" not in capfd.readouterr().err
    assert _tree(tmp_path / "many") == _tree(tmp_path / "one")
    assert (many.images, many.frames, many.skipped) == (one.images, one.frames, one.skipped)
    assert many.fed.endswith("; run one picture at a time: it failed on, or misread, a batch of 4")


def test_ctrl_c_leaves_no_predictions_file_and_stops_the_decoders(
    source: Path, tmp_path: Path
) -> None:
    """Ctrl-C while a decoder is held inside a later file (the test hook's pause) and pictures
    were predicted: the run ends within seconds with the interrupt's one line, and DIR holds
    nothing: the pictures' files were never renamed into place, and the schema the run wrote
    into the task folder it made is removed with it (it held no predictions)."""
    model = _detector(tmp_path / "m.onnx", batch=None)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "datapool", "predict", str(source), "--model", str(model)]
    run = Proc(
        [*args, "--out", str(out), "-q"],
        DATAPOOL_TEST_PAUSE_AT="decode:tall.png",
        PYTHONPATH=PACKAGE_PATH,
    )
    try:
        run.wait_for("paused at decode:tall.png")
        run.p.send_signal(signal.SIGINT)
        rc = run.finish(timeout=30)
    finally:
        if run.p.poll() is None:
            run.kill()
    assert rc == 130, run.stderr
    said = [line for line in run.stderr.splitlines() if not line.startswith("datapool-test:")]
    assert len(said) == 1 and "interrupted" in said[0], run.stderr
    assert sorted(_tree(out)) == [] and not (out / "m").exists()


def _as_exported_dynamic(path: Path) -> Path:
    """The detector at `path` with its output's sizes left for run time, as Ultralytics'
    `yolo export format=onnx dynamic=True` leaves them (onnxruntime reads its output as
    ['batch', 'Concatoutput0_dim_1', 'anchors']): the output sliced to ends computed from the
    pixels (always its full size), which no shape inference can tell."""
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    for node in g.node:
        node.output[:] = ["boxed" if o == "output0" else o for o in node.output]
    consts = {"zero": np.array(0.0, np.float32), "ends": np.array([6, 3], np.int64)}
    consts |= {"starts": np.array([0, 0], np.int64), "axes": np.array([1, 2], np.int64)}
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    g.node.extend(
        [
            helper.make_node("ReduceMin", ["images"], ["low"], keepdims=0),
            helper.make_node("Mul", ["low", "zero"], ["nought"]),
            helper.make_node("Cast", ["nought"], ["nought_i"], to=TensorProto.INT64),
            helper.make_node("Add", ["ends", "nought_i"], ["data_ends"]),
            helper.make_node("Slice", ["boxed", "starts", "data_ends", "axes"], ["output0"]),
        ]
    )
    del g.output[:]
    g.output.append(
        helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", "dim1", "anchors"])
    )
    onnx.save(model, str(path))
    return path


def test_an_ultralytics_export_whose_output_sizes_are_dynamic_is_read(
    source: Path, tmp_path: Path
) -> None:
    """`yolo export dynamic=True` leaves the output's every size to run time: such a model was
    refused ('output output0 [None, None, None] is not (1, 4+80, anchors)'); it is read as
    Ultralytics' (1, 4+classes, anchors) layout, checked on its first answer, and run in
    batches, writing what the same model with fixed sizes writes."""
    import onnxruntime as ort

    fixed = _detector(tmp_path / "m.onnx", batch=None)
    predict(str(source), str(fixed), str(tmp_path / "fixed"), one_by_one=True)
    (tmp_path / "dyn").mkdir()
    model = _as_exported_dynamic(_detector(tmp_path / "dyn" / "m.onnx", batch=None))
    said = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_outputs()
    assert [d if isinstance(d, int) else None for d in said[0].shape] == [None, None, None]
    r = predict(str(source), str(model), str(tmp_path / "dyn-out"), batch_size=4)
    assert _tree(tmp_path / "dyn-out") == _tree(tmp_path / "fixed")
    assert "output (1, 4+2, anchors)" in r.fed and "one at a time" not in r.fed
