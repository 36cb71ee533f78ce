"""The export path of `datapool model get` (transformers + torch, the `export` extra): a tiny
DINOv2 with random weights made from a config, exported, read by the Embedder, and checked
against torch's own output; and fetched as weights from a hub on 127.0.0.1 and exported."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from datapool.config import ModelSpec
from datapool.ingest import model_hub, open_embedder
from datapool.ingest.embed import Embedder, l2_normalize

torch = pytest.importorskip("torch", reason="the export path needs torch (datapool[export])")
transformers = pytest.importorskip(
    "transformers", reason="the export path needs transformers (datapool[export])"
)
pytest.importorskip("onnx")

SIZE = 32
PROCESSOR = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.25, 0.25, 0.25], "crop_size": SIZE}


def tiny_dinov2():
    torch.manual_seed(0)
    cfg = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=SIZE,
        patch_size=8,
    )
    return transformers.Dinov2Model(cfg).eval()


def check_against_torch(e: Embedder, model) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    buf = np.empty((3, 3, SIZE, SIZE), np.float32)
    e.pack(list(frames), buf)
    with torch.no_grad():
        ref = model(pixel_values=torch.from_numpy(buf)).pooler_output.numpy()
    np.testing.assert_allclose(e.embed_packed(buf), l2_normalize(ref), atol=1e-4)
    # the packed batch is the processor's normalisation of the frames
    x = (frames / 255.0 - np.float32(PROCESSOR["image_mean"])) / np.float32(PROCESSOR["image_std"])
    np.testing.assert_allclose(buf, x.transpose(0, 3, 1, 2), atol=1e-5)


def test_export_from_a_config_with_random_weights(tmp_path):
    from datapool.ingest.model_export import export_model

    model = tiny_dinov2()
    path = export_model(model, tmp_path / "dino.onnx", PROCESSOR)
    e = Embedder(path)
    assert (e.output_name, e.output.pooling, e.dim, e.input_hw) == (
        "pooler_output",
        "none",
        32,
        (SIZE, SIZE),
    )
    assert e.norm_source == "metadata"
    check_against_torch(e, model)


def test_model_get_exports_fetched_weights(tmp_path, monkeypatch):
    from .test_models_hub import COMMIT, REPO, serve

    model = tiny_dinov2()
    model.save_pretrained(tmp_path / "src")
    files = {
        "config.json": (tmp_path / "src" / "config.json").read_bytes(),
        "model.safetensors": (tmp_path / "src" / "model.safetensors").read_bytes(),
        "preprocessor_config.json": json.dumps(PROCESSOR).encode(),
    }
    server, thread = serve(files)
    try:
        registry = tmp_path / "registry.json"
        pins = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
        entry = {"repo": REPO, "revision": COMMIT, "export": "Dinov2Model", "files": pins}
        registry.write_text(json.dumps({"tiny-dino": entry}))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv(model_hub.REGISTRY_ENV, str(registry))
        monkeypatch.setenv(model_hub.CACHE_ENV, str(tmp_path / "cache"))
        path = model_hub.get_model("tiny-dino")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert path.name == "tiny-dino.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "datapool-model.json",
        "preprocessor_config.json",
        "tiny-dino.onnx",
    ]
    e = open_embedder(ModelSpec(path="tiny-dino"))
    check_against_torch(e, model)
