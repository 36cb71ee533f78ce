"""The embedder's reading of a model file: metadata without onnxruntime, one session per model."""

from __future__ import annotations

from pathlib import Path

import pytest

from datapool.errors import ModelError
from datapool.ingest import session as ingest_session
from datapool.ingest.embed import Embedder
from datapool.ingest.onnxfile import default_model_path, onnx_metadata

from .conftest import save_image_model

ort = pytest.importorskip("onnxruntime")


def _pool_model(path: Path, metadata: dict[str, str]) -> Path:
    """A 3-d global-average-pool model on 16x16 input, with `metadata` in its metadata_props and
    a doc string and producer set, so other top-level fields sit around the metadata."""
    pytest.importorskip("onnx")
    from onnx import helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["g"]),
        helper.make_node("Flatten", ["g"], ["out"], axis=1),
    ]
    return save_image_model(
        path,
        "pool",
        nodes,
        ["N", 3, 16, 16],
        ["N", 3],
        metadata=metadata,
        producer_name="tests",
        doc_string="a test model",
    )


def _session_metadata(path: Path) -> dict[str, str]:
    return dict(
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        .get_modelmeta()
        .custom_metadata_map
    )


def test_metadata_read_from_the_file_equals_onnxruntimes(tmp_path):
    shipped = default_model_path()
    assert onnx_metadata(shipped) == _session_metadata(shipped)
    assert onnx_metadata(shipped)["datapool.graph_optimization"] == "basic"
    meta = {
        "datapool.graph_optimization": "extended",
        "datapool.mean": "0.5,0.5,0.5",
        "note": "ünïcode, commas, = signs",
        "": "empty key",
    }
    m = _pool_model(tmp_path / "m.onnx", meta)
    assert onnx_metadata(m) == _session_metadata(m) == meta
    assert onnx_metadata(_pool_model(tmp_path / "none.onnx", {})) == {}


def test_unreadable_files_give_none(tmp_path):
    good = _pool_model(tmp_path / "m.onnx", {"k": "v"}).read_bytes()
    cases = {
        "truncated.onnx": good[: len(good) - 7],
        "garbage.onnx": b"\xff" * 40,  # an endless varint
        "group.onnx": bytes([0x0B]) + good,  # wire type 3 (a group): not in ONNX files
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert onnx_metadata(tmp_path / name) is None, name
    assert onnx_metadata(tmp_path / "missing.onnx") is None


def test_one_session_at_the_level_the_model_names(tmp_path, monkeypatch):
    levels = []
    make = ingest_session.new_session

    def counting(path, threads, level):
        levels.append(level)
        return make(path, threads, level)

    monkeypatch.setattr(ingest_session, "new_session", counting)
    Embedder()  # the shipped model asks for basic
    assert levels == [ort.GraphOptimizationLevel.ORT_ENABLE_BASIC]
    levels.clear()
    Embedder(_pool_model(tmp_path / "plain.onnx", {}))
    assert levels == [ort.GraphOptimizationLevel.ORT_ENABLE_ALL]
    levels.clear()
    # Metadata the file reader cannot follow: onnxruntime's reading decides, at a second session.
    data = _pool_model(tmp_path / "m.onnx", {"datapool.graph_optimization": "disable"}).read_bytes()
    monkeypatch.setattr(ingest_session, "onnx_metadata", lambda path: None)
    e = Embedder(tmp_path / "m.onnx")
    assert levels == [
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    ]
    assert e.dim == 3 and (tmp_path / "m.onnx").read_bytes() == data


def test_a_bad_level_in_the_metadata_is_a_model_error(tmp_path):
    m = _pool_model(tmp_path / "m.onnx", {"datapool.graph_optimization": "fastest"})
    with pytest.raises(ModelError, match=r"graph_optimization='fastest' must be one of"):
        Embedder(m)
