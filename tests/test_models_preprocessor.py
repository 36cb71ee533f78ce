"""A Hugging Face preprocessor_config.json beside a model: its resize, crop, rescale,
normalisation and channel order are honoured, checked against a NumPy reference of what the model
computes on what the processor would feed it; what datapool cannot honour is refused with the
key and the flag that settles it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datapool.errors import ModelError
from datapool.ingest.embed import Embedder

from .test_models import F32, W4, close, frames, save

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402


def _dynamic_gap_model(folder, config):
    """(N, 3, H, W) of any height and width -> channel means @ W4, with `config` written beside
    it as preprocessor_config.json."""
    folder.mkdir(exist_ok=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    return save(
        folder / "model.onnx",
        [
            helper.make_node("ReduceMean", ["pixel_values"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["emb"]),
        ],
        [("pixel_values", F32, ["N", 3, "H", "W"])],
        [("emb", F32, ["N", 4])],
        [("w", W4)],
    )


def _ref(x_nhwc):
    return x_nhwc.mean(axis=(1, 2)) @ W4


def test_do_normalize_false_and_no_center_crop_feed_the_resized_pixels(tmp_path):
    # The trial's repro: image_mean/std and crop_size are present but switched off.
    path = _dynamic_gap_model(
        tmp_path / "m",
        {
            "do_normalize": False,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "do_resize": True,
            "size": {"height": 24, "width": 20},
            "do_center_crop": False,
            "crop_size": {"height": 16, "width": 16},
        },
    )
    e = Embedder(path)
    assert e.input_hw == (24, 20)
    np.testing.assert_array_equal(e.mean, 0.0)
    np.testing.assert_array_equal(e.std, 1.0)
    f = np.random.default_rng(0).integers(0, 256, (5, 24, 20, 3), dtype=np.uint8)
    close(e.embed(f), _ref(f.astype(np.float32) / 255))
    assert "size 24x20 from preprocessor_config.json size" in e.inspection
    assert "each frame resized whole to it (no crop)" in e.inspection
    assert "(preprocessor_config.json: do_normalize false)" in e.inspection


def test_rescale_and_normalisation_are_one_affine_map(tmp_path):
    f = frames()
    want = _ref((f.astype(np.float32) - 127.5) / 127.5)
    for folder, config in {
        # HF: (x - 127.5) / 127.5 on 0-255 pixels ...
        "raw": {"do_rescale": False, "image_mean": [127.5] * 3, "image_std": [127.5] * 3},
        # ... and x / 127.5 - 1, with a rescale other than 1/255.
        "half": {"rescale_factor": 1 / 127.5, "image_mean": 1.0, "image_std": 1.0},
    }.items():
        e = Embedder(_dynamic_gap_model(tmp_path / folder, {**config, "size": 16}))
        assert e.input_hw == (16, 16)
        close(e.embed(f), want)
        assert e.fingerprint.settings["mean"] == [0.5] * 3
        assert e.fingerprint.settings["std"] == [0.5] * 3
    assert (
        "(preprocessor_config.json: do_rescale false)"
        in Embedder(tmp_path / "raw/model.onnx").inspection
    )


def test_mobilevit_config_is_fed_bgr_unnormalised_at_the_crop_size(tmp_path):
    config = {
        "image_processor_type": "MobileViTImageProcessor",
        "do_flip_channel_order": True,
        "do_center_crop": True,
        "crop_size": {"height": 16, "width": 16},
        "size": {"shortest_edge": 20},
    }
    path = _dynamic_gap_model(tmp_path / "m", config)
    e = Embedder(path)
    assert e.input_hw == (16, 16)
    f = frames()
    close(e.embed(f), _ref(f[..., ::-1].astype(np.float32) / 255))
    assert e.fingerprint.settings["channels"] == "BGR"
    assert (
        "fed BGR" in e.inspection and "(preprocessor_config.json: no normalisation)" in e.inspection
    )
    # The flags replace the normalisation; the channel order stays the processor's.
    flagged = Embedder(path, mean=(0.5,) * 3, std=(0.25,) * 3)
    close(flagged.embed(f), _ref((f[..., ::-1].astype(np.float32) / 255 - 0.5) / 0.25))
    # A config without flipping records no channel order: older pools still match.
    plain = Embedder(
        _dynamic_gap_model(tmp_path / "plain", {**config, "do_flip_channel_order": False})
    )
    assert "channels" not in plain.fingerprint.settings


def test_sizes_the_processor_makes_per_image_are_refused_unless_given(tmp_path):
    shortest = _dynamic_gap_model(
        tmp_path / "a", {"size": {"shortest_edge": 20}, "do_center_crop": False, "crop_size": 16}
    )
    with pytest.raises(
        ModelError, match=r"size=\{'shortest_edge': 20\} with no center crop.*--input-size HxW"
    ):
        Embedder(shortest)
    assert Embedder(shortest, input_size=(16, 24)).input_hw == (16, 24)
    no_resize = _dynamic_gap_model(tmp_path / "b", {"do_resize": False, "crop_size": 16})
    with pytest.raises(ModelError, match=r"sets do_resize false.*--input-size HxW"):
        Embedder(no_resize)
    # ViT's bare int is a square; ConvNeXt's crop_pct crops to a shortest_edge square.
    assert Embedder(_dynamic_gap_model(tmp_path / "c", {"size": 16})).input_hw == (16, 16)
    # transformers' fast processors write unset settings as null: the defaults.
    fast = {
        "do_center_crop": None,
        "crop_size": None,
        "size": {"height": 16, "width": 16, "shortest_edge": None},
    }
    assert Embedder(_dynamic_gap_model(tmp_path / "e", fast)).input_hw == (16, 16)
    convnext = _dynamic_gap_model(
        tmp_path / "d", {"size": {"shortest_edge": 16}, "crop_pct": 0.875}
    )
    assert Embedder(convnext).input_hw == (16, 16)


def test_a_normalisation_the_file_does_not_give_is_refused_unless_flagged(tmp_path):
    path = _dynamic_gap_model(
        tmp_path / "m", {"do_normalize": True, "image_std": [0.5] * 3, "size": 16}
    )
    with pytest.raises(
        ModelError, match=r"do_normalize but gives no image_mean.*--mean R,G,B and --std"
    ):
        Embedder(path)
    assert Embedder(path, mean=(0.5,) * 3, std=(0.5,) * 3).norm_source == "--mean/--std"
    bad = _dynamic_gap_model(
        tmp_path / "n", {"image_mean": "x", "image_std": [0.5] * 3, "size": 16}
    )
    with pytest.raises(ModelError, match=r"image_mean='x' is not a list of numbers.*--mean"):
        Embedder(bad)
    flag = _dynamic_gap_model(tmp_path / "o", {"do_normalize": "yes", "size": 16})
    with pytest.raises(ModelError, match=r"do_normalize='yes' must be true or false"):
        Embedder(flag)


def test_0_255_values_in_the_config_are_refused_with_both_flags(tmp_path):
    path = _dynamic_gap_model(
        tmp_path / "m",
        {"image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375], "size": 16},
    )
    with pytest.raises(
        ModelError,
        match=r"image_mean=123.675,116.28,103.53 and .*image_std=58.395,57.12,57.375 look like "
        r"0-255 units.*--mean 0\.485,0\.456,0\.406 --std 0\.229,0\.224,0\.225",
    ):
        Embedder(path)


def test_an_export_records_the_normalisation_the_processor_applies():
    # model_export writes these as the model's metadata, which comes before the config.
    from datapool.ingest.preprocessor import normalisation_metadata

    off = {"do_normalize": False, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    assert normalisation_metadata(off) == {
        "datapool.mean": "0.0,0.0,0.0",
        "datapool.std": "1.0,1.0,1.0",
    }
    dino = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    meta = normalisation_metadata({**dino, "rescale_factor": 1 / 255})
    assert meta == {"datapool.mean": "0.485,0.456,0.406", "datapool.std": "0.229,0.224,0.225"}
    assert normalisation_metadata({"do_normalize": True}) == {}
