"""Models as users bring them, tried adversarially: each either embeds as the user meant, in unit
rows, or is refused with one line that says what to do. Real onnxruntime sessions on graphs built
with onnx.helper, run over real encoded media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.errors import ModelError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

S = 16
F32 = TensorProto.FLOAT
W8 = np.abs(np.random.default_rng(1).normal(size=(3, 8))).astype(np.float32)


def save(path, nodes, inputs, outputs, inits=()):
    """An opset-17 model of `nodes`; inputs/outputs are (name, elem type, shape); inits are
    numpy arrays by name."""
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Path(path)


def _images(root, **values):
    """One flat-colour PNG per name=grey value."""
    from datapool.media import write_image

    root.mkdir()
    for name, v in values.items():
        write_image(root / f"{name}.png", np.full((32, 32, 3), v, np.uint8))
    return root


def test_an_all_zero_embedding_is_refused_naming_the_file(tmp_path):
    # ReLU of the channel means times positive weights: a dark frame (below ImageNet's mean) is
    # all zero, the embedding of a black frame in a ReLU model without a bias. It was kept as a
    # zero row (no unit vector) in the pool CSV, at distance 1 from every other row.
    path = save(
        tmp_path / "relu.onnx",
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("Relu", ["m"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["emb"]),
        ],
        [("input", F32, ["N", 3, S, S])],
        [("emb", F32, ["N", 8])],
        [("w", W8)],
    )
    kw = {"n_samples": 5, "model": str(path), "progress": False}
    r = datapool.run(_images(tmp_path / "ok", a=240, b=200), tmp_path / "p0", **kw)
    assert r.counts["new"] == 2
    with pytest.raises(
        ModelError,
        match=r"model relu\.onnx produced an all-zero embedding for b\.png, which has no "
        r"direction to normalise to unit length; check that its output is the embedding",
    ):
        datapool.run(_images(tmp_path / "images", a=240, b=10), tmp_path / "p1", **kw)
    assert not (tmp_path / "p1" / "datapool_latest.csv").exists()


def _quantized_output_model(path, with_float=False):
    """Channel means times W8, quantized to uint8 with zero point 128 (what a fully quantized
    export ends with), and with `with_float` the float features as a second output."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["features"]),
        helper.make_node("QuantizeLinear", ["features", "scale", "zero"], ["q"]),
    ]
    outputs = [("q", TensorProto.UINT8, ["N", 8])]
    if with_float:
        outputs.append(("features", F32, ["N", 8]))
    inits = [("w", W8), ("scale", np.float32(0.05)), ("zero", np.uint8(128))]
    return save(path, nodes, [("input", F32, ["N", 3, S, S])], outputs, inits)


def test_an_integer_output_is_no_embedding(tmp_path):
    from datapool.ingest.embed import Embedder

    # The uint8 values were embedded as they are: with zero point 128 every row pointed near
    # (1, 1, ..., 1), and the distances between frames shrank to a quarter, without a word.
    with pytest.raises(
        ModelError,
        match=r"model q\.onnx output q is tensor\(uint8\), not an embedding \(a quantized output "
        r"without its scale and zero point, .*\): datapool needs a float output; export one, or "
        r"end a quantized graph with a DequantizeLinear$",
    ):
        Embedder(_quantized_output_model(tmp_path / "q.onnx"))
    both = _quantized_output_model(tmp_path / "both.onnx", with_float=True)
    e = Embedder(both)
    assert e.output.name == "features"
    with pytest.raises(
        ModelError,
        match=r"output q is tensor\(uint8\).*; choose a float output with "
        r"--output-name features, or end",
    ):
        Embedder(both, output_name="q")
