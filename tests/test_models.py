"""Models users bring (issue 16): each export signature either embeds with the right output and
preprocessing, checked against a NumPy reference of what the model computes, or is refused with
one line that says what to do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.cli import main
from datapool.config import ModelSpec, RunConfig
from datapool.errors import ConfigError, ModelError, ModelMismatchError
from datapool.fingerprint import ModelFingerprint
from datapool.ingest import open_embedder
from datapool.ingest.embed import IMAGENET_MEAN, IMAGENET_STD, Embedder

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

S = 16  # every test model takes 16x16 images
F32, F16, U8 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.UINT8


def save(path, nodes, inputs, outputs, inits=(), metadata=None, external=False):
    """An opset-17 model of `nodes`; inputs/outputs are (name, elem type, shape)."""
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=Path(path).name + ".data",
            size_threshold=0,
        )
    else:
        onnx.save(model, str(path))
    return Path(path)


def frames(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


def normalised(f, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """NHWC float32 frames as the packer normalises them."""
    return ((f.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)).astype(np.float32)


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def close(got, ref, tol=1e-4):
    np.testing.assert_allclose(got, unit(ref), atol=tol, rtol=0)


W8 = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
W4 = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
W6 = np.random.default_rng(3).normal(size=(6, 3, 1, 1)).astype(np.float32)


def tokens_model(path, dynamic=False, **kw):
    """Hugging Face ViT-like: last_hidden_state (N, 256, 8) first, pooler_output (N, 8) second."""
    hw = ["H", "W"] if dynamic else [S, S]
    nodes = [
        helper.make_node("Reshape", ["pixel_values", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["tok"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tok", "w"], ["last_hidden_state"]),
        helper.make_node("ReduceMean", ["last_hidden_state"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Tanh", ["m"], ["pooler_output"]),
    ]
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [0, 3, -1])
    graph_inits = [("w", W8)]
    path = save(
        path,
        nodes,
        [("pixel_values", F32, ["N", 3, *hw])],
        [("last_hidden_state", F32, ["N", "T", 8]), ("pooler_output", F32, ["N", 8])],
        graph_inits,
        **kw,
    )
    m = onnx.load(str(path))
    m.graph.initializer.append(shape)
    onnx.save(m, str(path))
    return path


def tokens_ref(x_nhwc):
    tok = x_nhwc.reshape(len(x_nhwc), -1, 3) @ W8  # (N, 256, 8), tokens in row-major pixel order
    return tok


def test_tokens_first_model_uses_the_pooled_output_and_preprocessor_config(tmp_path):
    path = tokens_model(tmp_path / "vit.onnx", dynamic=True)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "size": {"shortest_edge": 32},
                "crop_size": {"height": S, "width": S},
            }
        )
    )
    e = Embedder(path)
    assert e.input_hw == (S, S)
    assert (e.output_name, e.output.pooling, e.dim) == ("pooler_output", "none", 8)
    f = frames()
    close(e.embed(f), np.tanh(tokens_ref(normalised(f, 0.5, 0.5)).mean(axis=1)))
    assert "pooler_output" in e.inspection
    assert "preprocessor_config.json" in e.inspection
    assert not e.fingerprint.legacy_compatible  # datapool used to flatten the tokens

    # its 256 tokens are the 16x16 pixels, no class token: averaged, not token 0 (a patch)
    auto = Embedder(path, output_name="last_hidden_state")
    assert (auto.output.pooling, auto.dim) == ("mean", 8)
    close(auto.embed(f), tokens_ref(normalised(f, 0.5, 0.5)).mean(axis=1))
    assert "pooling mean (its 256 tokens are a 16x16 grid of the 16x16 input" in auto.inspection
    with pytest.raises(
        ModelError, match=r"--pooling cls takes token 0 .* is a patch; use --pooling mean"
    ):
        Embedder(path, output_name="last_hidden_state", pooling="cls")
    mean = Embedder(path, output_name="last_hidden_state", pooling="mean", mean=(0.4,) * 3)
    close(mean.embed(f), tokens_ref(normalised(f, 0.4, 0.5)).mean(axis=1))
    assert "--mean/preprocessor_config.json" in mean.inspection
    with pytest.raises(ModelError, match=r"--pooling avg does not fit .* use one of cls, mean"):
        Embedder(path, output_name="last_hidden_state", pooling="avg")
    with pytest.raises(ModelError, match=r"--output-name nope: .* its outputs are last_hidden"):
        Embedder(path, output_name="nope")


def test_a_class_token_before_the_patch_grid_is_taken(tmp_path):
    """(N, 1 + 256, 8): a ViT's class token, then its 16x16 patches. Auto pooling takes token 0,
    as --pooling cls does; here the class token is the patches' mean, the reference."""
    nodes = [
        helper.make_node("Reshape", ["pixel_values", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["tok"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tok", "w"], ["patches"]),
        helper.make_node("ReduceMean", ["patches"], ["cls"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["cls", "patches"], ["last_hidden_state"], axis=1),
    ]
    path = save(
        tmp_path / "vit.onnx",
        nodes,
        [("pixel_values", F32, ["N", 3, S, S])],
        [("last_hidden_state", F32, ["N", "T", 8])],
        [("w", W8)],
    )
    m = onnx.load(str(path))
    m.graph.initializer.append(helper.make_tensor("shape", TensorProto.INT64, [3], [0, 3, -1]))
    onnx.save(m, str(path))
    f = frames()
    for e in (Embedder(path), Embedder(path, pooling="cls")):
        assert (e.output.pooling, e.dim) == ("cls", 8)
        close(e.embed(f), tokens_ref(normalised(f)).mean(axis=1))


def test_unpooled_feature_map_is_averaged_and_a_huge_flatten_is_noted(tmp_path):
    path = save(
        tmp_path / "trunk.onnx",
        [helper.make_node("Conv", ["input", "w"], ["feat"])],
        [("input", F32, ["N", 3, S, S])],
        [("feat", F32, ["N", 6, S, S])],
        [("w", W6)],
    )
    e = Embedder(path)
    assert (e.output.pooling, e.dim) == ("avg", 6)
    f = frames()
    ref = np.einsum("oc,nhwc->nohw", W6[:, :, 0, 0], normalised(f)).mean(axis=(2, 3))
    close(e.embed(f), ref)
    flat = Embedder(path, pooling="none")
    assert flat.dim == 6 * S * S
    assert not flat.notes  # 1536-d: no note
    big = save(
        tmp_path / "big.onnx",
        [helper.make_node("Conv", ["input", "w"], ["feat"])],
        [("input", F32, ["N", 3, S, S])],
        [("feat", F32, ["N", 20, S, S])],
        [("w", np.ones((20, 3, 1, 1)))],
    )
    assert any("above 4096" in n for n in Embedder(big, pooling="none").notes)


def test_pooling_that_fits_only_another_output_names_that_output(tmp_path):
    path = tokens_model(tmp_path / "vit.onnx")
    with pytest.raises(
        ModelError,
        match=r"--pooling mean does not fit model vit.onnx output pooler_output of shape \[1, 8\] "
        r"\(chosen as a 2-D output named like an embedding\): use one of none, or --output-name "
        r"last_hidden_state for mean pooling",
    ):
        Embedder(path, pooling="mean")


def test_a_one_value_output_is_refused_and_a_narrow_one_noted(tmp_path):
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["score"]),
    ]
    path = save(
        tmp_path / "score.onnx",
        nodes,
        [("input", F32, ["N", 3, S, S])],
        [("score", F32, ["N", 1])],
        [("w", W4[:, :1])],
    )
    with pytest.raises(
        ModelError,
        match=r"output score \(the only output\) gives 1 value per image: .* every embedding "
        r"is \+1 or -1 .* --output-name \(its outputs: score \[1, 1\]\)",
    ):
        Embedder(path)
    narrow = Embedder(_gap_model(tmp_path / "four.onnx"))
    assert any("gives 4-d embeddings (below 8)" in n for n in narrow.notes)
    assert not Embedder(tokens_model(tmp_path / "vit.onnx")).notes  # 8-d: no note


def _map_model(path, channels, channels_last=True):
    """A 4x4-stride conv of the (N, 3, 16, 16) input to `channels` maps of 4x4, given out as
    (N, 4, 4, C) (tf2onnx --inputs-as-nchw) or (N, C, 4, 4)."""
    w = np.random.default_rng(4).normal(size=(channels, 3, 4, 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[4, 4], strides=[4, 4])]
    if channels_last:
        nodes.append(helper.make_node("Transpose", ["c"], ["features"], perm=[0, 2, 3, 1]))
    else:
        nodes.append(helper.make_node("Identity", ["c"], ["features"]))
    shape = ["N", 4, 4, channels] if channels_last else ["N", channels, 4, 4]
    path = save(
        path, nodes, [("input", F32, ["N", 3, S, S])], [("features", F32, shape)], [("w", w)]
    )
    return path, w


def _map_ref(f, w):
    """(N, 4, 4, C) of the conv, from NHWC frames."""
    x = normalised(f).reshape(len(f), 4, 4, 4, 4, 3)  # n, i, kh, j, kw, c
    return np.einsum("nikjlc,ockl->nijo", x, w)


def test_a_channels_last_map_from_a_channels_first_input_is_averaged_over_h_and_w(tmp_path):
    path, w = _map_model(tmp_path / "tf.onnx", 8)
    e = Embedder(path)
    f = frames()
    assert e.dim == 8  # it was 4: the average over W and C, one value per row of H
    close(e.embed(f), _map_ref(f, w).mean(axis=(1, 2)))
    assert (e.output.pooling, e.output.layout) == ("avg", "NHWC")
    assert "pooling avg over H,W of NHWC (its 4x4 follows the 16x16 input), 8-d" in e.inspection
    assert e.fingerprint.settings["pooling"] == "avg-nhwc"
    first, w2 = _map_model(tmp_path / "torch.onnx", 8, channels_last=False)
    e2 = Embedder(first)
    assert (e2.output.layout, e2.fingerprint.settings["pooling"]) == ("NCHW", "avg")
    close(e2.embed(f), _map_ref(f, w2).mean(axis=(1, 2)))


def test_a_map_whose_shape_leaves_the_layout_open_is_refused_or_told(tmp_path):
    path, w = _map_model(tmp_path / "square.onnx", 4)  # (N, 4, 4, 4)
    with pytest.raises(
        ModelError,
        match=r"output features has shape \[1, 4, 4, 4\] for a 16x16 input: datapool cannot "
        r"tell whether its channels come first .* --pooling avg-nchw or --pooling avg-nhwc",
    ):
        Embedder(path)
    f = frames()
    told = Embedder(path, pooling="avg-nhwc")
    close(told.embed(f), _map_ref(f, w).mean(axis=(1, 2)))
    assert "(--pooling avg-nhwc)" in told.inspection
    assert Embedder(path, pooling="none").dim == 64
    with pytest.raises(ModelError, match=r"--pooling avg-nchw does not fit .* use one of none"):
        Embedder(_gap_model(tmp_path / "gap.onnx"), pooling="avg-nchw")


def test_nhwc_input_is_fed_channels_last(tmp_path):
    path = save(
        tmp_path / "keras.onnx",
        [
            helper.make_node("ReduceMean", ["input_1"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["dense"]),
        ],
        [("input_1", F32, ["unk__1", S, S, 3])],
        [("dense", F32, ["unk__1", 4])],
        [("w", W4)],
    )
    e = Embedder(path, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert e.plan.layout == "NHWC"
    f = frames()
    close(e.embed(f), normalised(f).mean(axis=(1, 2)) @ W4)


def _gap_model(path, batch="N", dtype=F32, **kw):
    nodes = [helper.make_node("Cast", ["input"], ["x"], to=F32)] if dtype != F32 else []
    src = "x" if nodes else "input"
    nodes += [
        helper.make_node("ReduceMean", [src], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["emb"]),
    ]
    return save(
        path,
        nodes,
        [("input", dtype, [batch, 3, S, S])],
        [("emb", F32, [batch, 4])],
        [("w", W4)],
        **kw,
    )


def test_fixed_batch_one_embeds_any_batch(tmp_path):
    e = Embedder(_gap_model(tmp_path / "b1.onnx", batch=1))
    assert e.plan.fixed_batch == 1
    f = frames(7)
    close(e.embed(f), normalised(f).mean(axis=(1, 2)) @ W4)
    assert "fixed batch 1" in e.inspection


def test_fixed_batch_three_pads_the_last_chunk(tmp_path):
    e = Embedder(_gap_model(tmp_path / "b3.onnx", batch=3))
    f = frames(7)
    close(e.embed(f), normalised(f).mean(axis=(1, 2)) @ W4)


def test_float16_input(tmp_path):
    e = Embedder(_gap_model(tmp_path / "fp16.onnx", dtype=F16))
    f = frames()
    x = normalised(f).astype(np.float16).astype(np.float32)
    close(e.embed(f), x.mean(axis=(1, 2)) @ W4, tol=1e-3)
    assert "float16" in e.inspection


def _uint8_nhwc(path):
    return save(
        path,
        [
            helper.make_node("Cast", ["image"], ["x"], to=F32),
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["emb"]),
        ],
        [("image", U8, ["N", S, S, 3])],
        [("emb", F32, ["N", 4])],
        [("w", W4)],
    )


def test_uint8_nhwc_gets_the_pixels_as_they_are(tmp_path):
    path = _uint8_nhwc(tmp_path / "u8.onnx")
    e = Embedder(path)
    assert (e.plan.layout, np.dtype(e.plan.dtype).name) == ("NHWC", "uint8")
    f = frames()
    close(e.embed(f), f.astype(np.float32).mean(axis=(1, 2)) @ W4)
    with pytest.raises(ModelError, match=r"takes uint8 pixels .* drop --mean/--std"):
        Embedder(path, mean=(0.5, 0.5, 0.5))


def test_second_input_is_refused_by_name_or_given_a_constant(tmp_path):
    path = save(
        tmp_path / "two.onnx",
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["e"]),
            helper.make_node("Mul", ["e", "scale"], ["emb"]),
        ],
        [("input", F32, ["N", 3, S, S]), ("scale", F32, ["N", 1])],
        [("emb", F32, ["N", 4])],
        [("w", W4)],
    )
    with pytest.raises(ModelError, match=r"second input 'scale' .* --input scale=VALUE"):
        Embedder(path)
    with pytest.raises(ModelError, match=r"--input bogus: .* no such input"):
        Embedder(path, inputs=(("bogus", 1.0),))
    neg = Embedder(path, inputs=(("scale", -2.0),))
    f = frames()
    close(neg.embed(f), -(normalised(f).mean(axis=(1, 2)) @ W4))
    assert neg.fingerprint.settings["extra_inputs"] == {"scale": -2.0}


def test_normalisation_in_0_255_units_is_refused_with_the_fix(tmp_path):
    meta = {"datapool.mean": "123.675,116.28,103.53", "datapool.std": "58.395,57.12,57.375"}
    path = _gap_model(tmp_path / "mm.onnx", metadata=meta)
    with pytest.raises(ModelError, match=r"0-255 units; datapool takes 0-1 units: .*0\.485"):
        Embedder(path)
    e = Embedder(path, mean=IMAGENET_MEAN, std=IMAGENET_STD)  # the flags override it
    assert e.norm_source == "--mean/--std"
    with pytest.raises(ConfigError, match=r"mean \(--mean\) .* 0-255 units.*--mean 0\.485"):
        ModelSpec(mean=(123.675, 116.28, 103.53))
    with pytest.raises(ConfigError, match=r"std \(--std\) values must be above 0"):
        ModelSpec(std=(0.0, 0.2, 0.2))
    with pytest.raises(ConfigError, match=r"pooling \(--pooling\) must be one of"):
        RunConfig(n_samples=1, pooling="max")
    with pytest.raises(ConfigError, match=r"--input-size\) must be an integer or HxW"):
        RunConfig(n_samples=1, input_size=(224, 3))


def test_0_255_flags_get_both_fixed_in_one_message_and_a_caffe_std_with_them(
    tmp_path, make_media, capsys
):
    """`--mean 123.675,116.28,103.53 --std 1,1,1` (Caffe's) said "use --mean 0.485,0.456,0.406"
    alone; the user kept `--std 1,1,1`, and the model was fed pixels 255 times too small, without
    a word. Given together the two are in one unit: both are fixed in one line, as for metadata.
    A std alone above 1 beside a 0-1 mean is still divided alone."""
    with pytest.raises(ConfigError) as e:
        ModelSpec(mean=(123.675, 116.28, 103.53), std=(1.0, 1.0, 1.0))
    assert str(e.value).endswith(
        "give --mean 0.485,0.456,0.406 --std 0.003922,0.003922,0.003922 (both divided by 255)"
    )
    with pytest.raises(ConfigError, match=r"give --mean 0\.485,0\.456,0\.406 --std 0\.229,"):
        ModelSpec(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    with pytest.raises(ConfigError, match=r"^std \(--std\) .*use --std 0\.229,0\.224,0\.225$"):
        ModelSpec(mean=(0.485, 0.456, 0.406), std=(58.395, 57.12, 57.375))
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = _gap_model(tmp_path / "caffe.onnx")
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1", "--no-progress"]
    args += ["--model", str(model)]
    assert main([*args, "--mean", "123.675,116.28,103.53", "--std", "1,1,1"]) == 4
    [line] = capsys.readouterr().err.splitlines()
    fix = line.split("give ")[1].split(" (both")[0].split()
    assert fix == ["--mean", "0.485,0.456,0.406", "--std", "0.003922,0.003922,0.003922"]
    assert main([*args, *fix]) == 0


def test_a_run_that_leaves_out_or_adds_model_is_told_the_flag(tmp_path, make_media, capsys):
    """The second run of a pool made with `--model mine.onnx`, the flag left out: the mismatch
    listed six settings and ended "use the pool's model and settings", never naming --model.
    Now it says the run gives no --model and which to give; --model on a pool of the default
    model says to drop it."""
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = _gap_model(tmp_path / "mine.onnx")
    args = ["run", str(bucket), "--n-samples", "1", "--no-progress"]
    assert main([*args, "--pool", str(tmp_path / "p"), "--model", str(model)]) == 0
    assert main([*args, "--pool", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert main([*args, "--pool", str(tmp_path / "p")]) == 7
    [line] = [x for x in capsys.readouterr().err.splitlines() if "warning" not in x]
    assert line.endswith(
        "; this run gives no --model and so uses the default model: give --model with the pool's "
        "model file, mine.onnx (and the pool's other settings), or rebuild the pool with "
        "--process-all"
    ), line
    assert main([*args, "--pool", str(tmp_path / "d"), "--model", str(model)]) == 7
    [line] = [x for x in capsys.readouterr().err.splitlines() if "warning" not in x]
    assert line.endswith(
        f"; the pool was made with the default model: drop --model {model}, or rebuild the pool "
        "with --process-all"
    ), line
    # the same model with another setting: the general line, as before
    assert main([*args, "--pool", str(tmp_path / "p"), "--model", str(model), "--mean", "0.5"]) == 7
    [line] = [x for x in capsys.readouterr().err.splitlines() if "warning" not in x]
    assert line.endswith(
        "use the pool's model and settings, or rebuild the pool with --process-all"
    )


def test_0_255_metadata_gets_both_flags_in_one_message_and_following_it_works(tmp_path):
    for name, meta, fix in (
        (
            "mm.onnx",
            {"datapool.mean": "123.675,116.28,103.53", "datapool.std": "58.395,57.12,57.375"},
            "--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225",
        ),
        (  # Caffe style: a 0-255 mean and a std of 1, which is 1/255 in 0-1 units
            "caffe.onnx",
            {"datapool.mean": "103.53,116.28,123.675", "datapool.std": "1,1,1"},
            "--mean 0.406,0.456,0.485 --std 0.003922,0.003922,0.003922",
        ),
    ):
        path = _gap_model(tmp_path / name, metadata=meta)
        with pytest.raises(ModelError) as e:
            Embedder(path)
        msg = str(e.value)
        assert f"metadata datapool.mean={meta['datapool.mean']}" in msg, msg
        assert fix in msg, msg
        flags = msg.split("give ", 1)[1].split(" (", 1)[0].split()
        mean, std = (tuple(map(float, flags[i + 1].split(","))) for i in (0, 2))
        e2 = Embedder(path, mean=mean, std=std)  # the message's flags are accepted as they are
        assert e2.norm_source == "--mean/--std"
        f = frames()
        want = (f.astype(np.float32) - np.float32(meta["datapool.mean"].split(","))) / np.float32(
            meta["datapool.std"].split(",")
        )
        close(e2.embed(f), want.mean(axis=(1, 2)) @ W4, tol=2e-3)


def test_input_size_takes_height_by_width(tmp_path):
    path = _gap_model(tmp_path / "dyn.onnx")
    m = onnx.load(str(path))
    for d in m.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "HW"
    onnx.save(m, str(path))
    e = Embedder(path, input_size=(16, 24))
    assert e.input_hw == (16, 24)
    assert e.size_wh == (24, 16)
    with pytest.raises(ModelError, match=r"dynamic; give the size with --input-size H or HxW"):
        Embedder(path)


def test_logits_are_noted(tmp_path):
    w = np.ones((3, 1000), np.float32)
    path = save(
        tmp_path / "cls.onnx",
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["logits"]),
        ],
        [("input", F32, ["N", 3, S, S])],
        [("logits", F32, ["N", 1000])],
        [("w", w)],
    )
    assert any("class logits" in n for n in Embedder(path).notes)


# --- the fingerprint ------------------------------------------------------------------------


def _bucket(root, make_media, n=4):
    root.mkdir()
    for i in range(n):
        make_media(root / f"img{i}.png", seed=i)
    return root


def test_new_external_weights_are_a_model_mismatch(tmp_path, make_media):
    bucket = _bucket(tmp_path / "bucket", make_media)
    model = _gap_model(tmp_path / "ext.onnx", external=True)
    data = tmp_path / "ext.onnx.data"
    assert data.is_file()
    e = Embedder(model)
    assert list(e.fingerprint.settings["external_data"]) == ["ext.onnx.data"]
    assert "1 external-data file" in e.inspection
    pool = tmp_path / "pool"
    r = datapool.run(bucket, pool, n_samples=2, model=str(model), progress=False)
    assert r.model.startswith("ext.onnx: input input NCHW float32 16x16")
    report = json.loads(Path(r.report_path).read_text())
    assert report["model_inspection"] == r.model
    assert report["model"]["settings"]["external_data"]["ext.onnx.data"]

    sha = Embedder(model).fingerprint.sha256
    weights = numpy_helper.from_array(-W4, "w").raw_data
    assert len(weights) == data.stat().st_size
    data.write_bytes(weights)
    assert Embedder(model).fingerprint.sha256 == sha  # the graph file is unchanged
    make_media(bucket / "new.png", seed=9)
    with pytest.raises(ModelMismatchError, match=r"differs in: external_data"):
        datapool.run(bucket, pool, n_samples=2, model=str(model), progress=False)


def test_nan_embeddings_name_the_file_and_frame(tmp_path):
    from datapool.media import write_image, write_video

    # sqrt of the channel means: NaN where a frame is darker than ImageNet's mean.
    path = save(
        tmp_path / "nan.onnx",
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("Sqrt", ["m"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["emb"]),
        ],
        [("input", F32, ["N", 3, S, S])],
        [("emb", F32, ["N", 8])],
        [("w", W8)],
    )
    bright, dark = (np.full((32, 32, 3), v, np.uint8) for v in (240, 10))
    kw = {"n_samples": 1, "model": str(path), "progress": False}
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", bright)
    write_image(images / "b.png", dark)
    with pytest.raises(
        ModelError, match=r"model nan.onnx produced NaN or infinite embeddings for b\.png;"
    ):
        datapool.run(images, tmp_path / "p1", **kw)
    videos = tmp_path / "videos"
    write_video(videos / "clip.mp4", [bright, bright, dark, dark])
    with pytest.raises(
        ModelError,
        match=r"embeddings for frame 2 of clip\.mp4 \(and 1 more of its batch of 4\); run the model",
    ):
        datapool.run(videos, tmp_path / "p2", **kw)


def test_changing_pooling_or_normalisation_is_a_model_mismatch(tmp_path, make_media):
    bucket = _bucket(tmp_path / "bucket", make_media)
    model = tokens_model(tmp_path / "vit.onnx")
    pool = tmp_path / "pool"
    kw = {"n_samples": 2, "model": str(model), "progress": False}
    datapool.run(bucket, pool, output_name="last_hidden_state", **kw)
    make_media(bucket / "new.png", seed=9)
    with pytest.raises(ModelMismatchError, match=r"differs in: dimension .*, pooling"):
        datapool.run(bucket, pool, output_name="last_hidden_state", pooling="none", **kw)
    with pytest.raises(ModelMismatchError) as e:
        datapool.run(bucket, pool, output_name="last_hidden_state", mean=(0.5,) * 3, **kw)
    msg = str(e.value)
    # Each differing setting with both values; the model described once where only settings differ.
    assert "differs in: mean (pool 0.485,0.456,0.406; this run 0.5,0.5,0.5);" in msg, msg
    assert msg.count("vit.onnx (sha256") == 1, msg
    assert "was built with vit.onnx (sha256 " in msg and "and other settings" in msg, msg
    r = datapool.run(bucket, pool, output_name="last_hidden_state", **kw)
    assert r.counts["new"] == 1


def test_a_pool_from_before_settings_were_recorded_still_matches(tmp_path, make_media):
    bucket = _bucket(tmp_path / "bucket", make_media)
    pool = tmp_path / "pool"
    datapool.run(bucket, pool, n_samples=2, progress=False)
    fp = json.loads((pool / "model.json").read_text())
    assert fp["legacy_compatible"] is True
    old = {k: fp[k] for k in ("name", "sha256", "input_size", "output_dim")}
    (pool / "model.json").write_text(json.dumps(old, indent=2) + "\n")
    make_media(bucket / "new.png", seed=9)
    r = datapool.run(bucket, pool, n_samples=2, progress=False)
    assert r.counts["new"] == 1
    # An old fingerprint and a model whose embeddings differ from what datapool did then.
    legacy = ModelFingerprint.from_json(old)
    new = ModelFingerprint.from_json(
        {**old, "settings": {"pooling": "cls"}, "legacy_compatible": False}
    )
    assert legacy.same_space(ModelFingerprint.from_json(fp))
    assert not legacy.same_space(new) and not new.same_space(legacy)
    assert legacy.mismatch(new).endswith(
        "differs in: settings (recorded by one side only: "
        "this run embeds otherwise than datapool did before it recorded them)"
    )
    other = ModelFingerprint.from_json({**old, "sha256": "f" * 64, "input_size": [8, 8]})
    assert "differs in: sha256 (pool " in legacy.mismatch(other)
    assert f"; this run ffffffffffff), input size (pool {old['input_size'][0]}x" in legacy.mismatch(
        other
    )


def test_cli_model_flags_reach_the_embedder_and_errors_are_one_line(tmp_path, make_media, capsys):
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = tokens_model(tmp_path / "vit.onnx")
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1", "--no-progress"]
    rc = main([*args, "--model", str(model), "--mean", "123,117,104"])
    err = capsys.readouterr().err.strip()
    assert rc == 4 and len(err.splitlines()) == 1  # a usage error (README: exit codes)
    assert "0-255 units" in err and "--mean 0.4824" in err
    rc = main(
        [*args, "--model", str(model), "--output-name", "last_hidden_state", "--pooling", "mean"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "model     vit.onnx: 16x16 in, 8-d out, pooling mean, normalisation " in out
    flags = ["--model", str(model), "--output-name", "last_hidden_state", "--pooling", "mean"]
    rc = main([*args, *flags, "--json", "--pool", str(tmp_path / "p2")])
    full = json.loads(capsys.readouterr().out)["model"]
    assert rc == 0 and full.startswith("vit.onnx: input pixel_values NCHW float32 16x16")
    assert "output last_hidden_state (--output-name), pooling mean, 8-d" in full


def test_the_summary_model_line_fits_a_terminal_and_json_and_report_keep_it_whole(
    tmp_path, make_media, capsys
):
    """Before, the summary's `model` line was the whole inspection, ~250 characters (input
    name, layout, dtype, where the size came from, the output and why, the mean and std ...),
    wrapped over three lines of a terminal. Now it is the file, input size, dimension, pooling
    and the normalisation's source, within 100 columns; --json's `model` and report.json's
    `model_inspection` keep the whole line."""
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = tokens_model(tmp_path / ("a-very-long-model-file-name-" * 3 + "vit-large.onnx"))
    pool = tmp_path / "p"
    args = ["run", str(bucket), "--pool", str(pool), "--n-samples", "1", "--no-progress"]
    flags = ["--model", str(model), "--output-name", "last_hidden_state", "--pooling", "mean"]
    flags += ["--mean", "0.4824,0.4588,0.4078", "--std", "0.2290,0.2240,0.2250"]
    assert main([*args, *flags]) == 0
    out = capsys.readouterr().out.splitlines()
    [line] = [ln for ln in out if ln.startswith("model ")]
    assert len(line) <= 100, line
    assert line == (
        "model     a-very-long-model-…large.onnx: 16x16 in, 8-d out, pooling mean, normalisation "
        "--mean/--std"
    )
    full = json.loads((pool / "runs" / "0" / "report.json").read_text())["model_inspection"]
    assert len(full) > 200 and "mean 0.4824,0.4588,0.4078 std 0.229,0.224,0.225" in full
    assert main([*args, *flags, "--json", "--pool", str(tmp_path / "p2")]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == full


def test_open_embedder_reads_every_model_field():
    spec = ModelSpec(pooling="none", mean=(0.5,) * 3, std=(0.25,) * 3)
    e = open_embedder(spec)
    assert e.norm_source == "--mean/--std"
    np.testing.assert_allclose(e.std, 0.25)
