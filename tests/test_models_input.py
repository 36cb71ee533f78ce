"""What a user's own model is fed: the pixels a model that normalises inside its graph takes,
the channel order (--channels), and grayscale models. Each model is a real ONNX graph run by a
real onnxruntime session; each check compares datapool's rows with a NumPy reference of what the
graph computes on the pixels it should be fed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datapool.cli import main
from datapool.errors import ModelError
from datapool.ingest.embed import IMAGENET_MEAN, IMAGENET_STD, Embedder

from .test_models import _bucket, close, frames

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

S = 16
F32 = TensorProto.FLOAT
W = np.random.default_rng(7).normal(size=(3 * S * S, 8)).astype(np.float32)
W1 = np.random.default_rng(8).normal(size=(S * S, 8)).astype(np.float32)
INV255 = (1 / 255,) * 3


def prefixed(path, prefix=(), layout="NCHW", channels=3, metadata=None):
    """A model whose first nodes are `prefix`, (op, constant) pairs applied to its image input
    in turn, followed by a flatten of the (N, C, H, W) tensor and a MatMul to 8 values. An NHWC
    input is transposed to NCHW after the prefix."""
    shape = ["N", channels, S, S] if layout == "NCHW" else ["N", S, S, channels]
    nodes, inits, x = [], [("flat_shape", np.asarray([0, -1], np.int64))], "input"
    for i, (op, value) in enumerate(prefix):
        inits.append((f"c{i}", np.asarray(value, np.float32)))
        nodes.append(helper.make_node(op, [x, f"c{i}"], [f"p{i}"]))
        x = f"p{i}"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["t"], perm=[0, 3, 1, 2]))
        x = "t"
    nodes += [
        helper.make_node("Reshape", [x, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["emb"]),
    ]
    w = {3: W, 1: W1}.get(channels, np.ones((channels * S * S, 8), np.float32))
    inits.append(("w", w))
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("input", F32, shape)],
        [helper.make_tensor_value_info("emb", F32, ["N", 8])],
        [numpy_helper.from_array(a, n) for n, a in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


def reference(pixels_nchw, prefix=(), w=W):
    """What the graph of `prefixed` computes on float pixels (N, C, H, W)."""
    x = pixels_nchw.astype(np.float64)
    for op, value in prefix:
        c = np.asarray(value, np.float64)
        x = {"Sub": x - c, "Add": x + c, "Mul": x * c, "Div": x / c}[op]
    return x.reshape(len(x), -1) @ w


def nchw(f):
    return f.transpose(0, 3, 1, 2).astype(np.float64)


MEAN_255 = np.asarray([123.675, 116.28, 103.53]).reshape(1, 3, 1, 1)
STD_255 = np.asarray([58.395, 57.12, 57.375]).reshape(1, 3, 1, 1)
MEAN_01 = np.asarray(IMAGENET_MEAN).reshape(1, 3, 1, 1)
STD_01 = np.asarray(IMAGENET_STD).reshape(1, 3, 1, 1)


@pytest.mark.parametrize(
    ("prefix", "scale", "said"),
    [
        # mmpretrain/timm exports with the normalisation folded in, in 0-255 units
        ([("Sub", MEAN_255), ("Div", STD_255)], 255, "Sub 123.7,116.3,103.5, Div 58.4,57.12,57.38"),
        # the same in 0-1 units
        ([("Sub", MEAN_01), ("Div", STD_01)], 1, "Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225"),
        # an Ultralytics-style model that divides by 255 itself
        ([("Div", 255.0)], 255, "Div 255"),
        # Keras Rescaling(1/127.5, offset=-1): MobileNet's -1..1 from 0-255 pixels
        ([("Mul", 1 / 127.5), ("Add", -1.0)], 255, "Mul 0.007843, Add -1"),
    ],
)
def test_a_model_that_normalises_inside_its_graph_is_fed_the_pixels_it_takes(
    tmp_path, prefix, scale, said
):
    # It was given ImageNet's normalisation on top of its own without a word: its Sub/Div saw
    # values near 0 instead of pixels.
    e = Embedder(prefixed(tmp_path / "m.onnx", prefix))
    f = frames()
    close(e.embed(f), reference(nchw(f) * (1 if scale == 255 else 1 / 255), prefix))
    pixels = "0-255" if scale == 255 else "0-1"
    assert e.norm_source.startswith(f"graph: its first nodes ({said}) normalise {pixels} pixels")
    assert e.norm_source.endswith(f"so it is fed {pixels} pixels, not normalised again")
    np.testing.assert_allclose(e.std, 1 / scale, rtol=1e-6)
    assert e.fingerprint.settings["mean"] == [0.0, 0.0, 0.0]
    assert f"({e.norm_source})" in e.inspection


def test_a_channels_last_model_with_keras_preprocessing_inside_is_not_refused(tmp_path):
    # tf2onnx of a Keras EfficientNet: Rescaling(1/255) and Normalization(ImageNet) inside, on
    # an NHWC input; datapool asked for --mean/--std although the graph says what it takes.
    prefix = [("Mul", 1 / 255), ("Sub", np.asarray(IMAGENET_MEAN)), ("Div", IMAGENET_STD)]
    e = Embedder(prefixed(tmp_path / "keras.onnx", prefix, layout="NHWC"))
    f = frames()
    ref_prefix = [
        (op, np.asarray(v).reshape(-1, 1, 1) if np.size(v) == 3 else v) for op, v in prefix
    ]
    close(e.embed(f), reference(nchw(f), ref_prefix))
    said = "0-255 pixels themselves (mean 0.485,0.456,0.406 std 0.229,0.224,0.225 in 0-1 units)"
    assert said in e.norm_source


@pytest.mark.parametrize(
    ("prefix", "match"),
    [
        ([("Mul", 1.1)], r"its first nodes: Mul 1\.1\), but datapool cannot tell"),  # both fit
        ([("Sub", 5000.0)], r"its first nodes: Sub 5000\), but datapool cannot tell"),  # neither
    ],
)
def test_a_graph_normalisation_that_fits_either_pixel_range_or_none_is_refused(
    tmp_path, prefix, match
):
    path = prefixed(tmp_path / "m.onnx", prefix)
    with pytest.raises(ModelError, match=match + r".* give --mean 0,0,0 --std 0\.00392157,"):
        Embedder(path)
    # The flags settle it, as they always did.
    e = Embedder(path, mean=(0.0,) * 3, std=INV255)
    assert e.norm_source == "--mean/--std"


def test_flags_metadata_and_plain_graphs_keep_their_normalisation(tmp_path):
    prefix = [("Sub", MEAN_255), ("Div", STD_255)]
    given = Embedder(prefixed(tmp_path / "a.onnx", prefix), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert given.norm_source == "--mean/--std"
    meta = {"datapool.mean": "0.1,0.2,0.3", "datapool.std": "0.4,0.5,0.6"}
    stored = Embedder(prefixed(tmp_path / "b.onnx", prefix, metadata=meta))
    assert stored.norm_source == "metadata"
    # a graph whose first node is no Sub/Add/Mul/Div by a constant: ImageNet's, as documented
    plain = Embedder(prefixed(tmp_path / "c.onnx"))
    assert plain.norm_source == "ImageNet default"
    f = frames()
    close(plain.embed(f), reference((nchw(f) / 255 - MEAN_01) / STD_01))


def test_a_caffe_style_mean_in_bgr_order_asks_for_the_channel_order(tmp_path):
    # Keras' caffe preprocessing folded in: B,G,R mean of 0-255 pixels. Fed RGB, the model saw
    # its red and blue swapped without a word.
    prefix = [("Sub", np.asarray([103.939, 116.779, 123.68]).reshape(1, 3, 1, 1))]
    path = prefixed(tmp_path / "caffe.onnx", prefix)
    with pytest.raises(ModelError, match=r"ImageNet's mean in B,G,R order.*--channels BGR"):
        Embedder(path)
    e = Embedder(path, channels="BGR")
    f = frames()
    close(e.embed(f), reference(nchw(f[..., ::-1]), prefix))
    assert e.inspection.endswith("fed BGR (--channels)")


def _channel_means(path, channels=3, layout="NCHW"):
    """A model whose embedding is its input's per-channel mean (plus a constant channel, so
    that a black frame is no zero row)."""
    shape = ["N", channels, S, S] if layout == "NCHW" else ["N", S, S, channels]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=axes, keepdims=0),
        helper.make_node("Concat", ["m", "one"], ["emb"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("input", F32, shape)],
        [helper.make_tensor_value_info("emb", F32, ["N", channels + 1])],
        [numpy_helper.from_array(np.ones((1, 1), np.float32), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_channels_flag_swaps_the_channels_the_model_sees(tmp_path):
    path = _channel_means(tmp_path / "means.onnx")
    red = np.zeros((1, S, S, 3), np.uint8)
    red[..., 0] = 255
    rgb = Embedder(path, mean=(0.0,) * 3, std=(1.0,) * 3)
    bgr = Embedder(path, mean=(0.0,) * 3, std=(1.0,) * 3, channels="BGR")
    close(rgb.embed(red), [[1, 0, 0, 1]])
    close(bgr.embed(red), [[0, 0, 1, 1]])
    assert bgr.fingerprint.settings["channels"] == "BGR"
    assert "channels" not in rgb.fingerprint.settings
    # --channels RGB overrides a model's datapool.channels=BGR metadata
    m = onnx.load(str(path))
    helper.set_model_props(m, {"datapool.channels": "BGR"})
    onnx.save(m, str(tmp_path / "meta.onnx"))
    meta = Embedder(tmp_path / "meta.onnx", mean=(0.0,) * 3, std=(1.0,) * 3)
    close(meta.embed(red), [[0, 0, 1, 1]])
    over = Embedder(tmp_path / "meta.onnx", mean=(0.0,) * 3, std=(1.0,) * 3, channels="RGB")
    close(over.embed(red), [[1, 0, 0, 1]])
    assert over.inspection.endswith("fed RGB (--channels)")


def test_cli_channels_flag_is_recorded_and_a_pool_refuses_the_other_order(
    tmp_path, make_media, capsys
):
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = _channel_means(tmp_path / "means.onnx")
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1", "--no-progress"]
    args += ["--model", str(model), "--mean", "0,0,0", "--std", "1,1,1"]
    assert main([*args, "--channels", "bgr"]) == 0
    assert "fed BGR (--channels)" in capsys.readouterr().out
    assert main([*args, "--channels", "RGB"]) != 0
    errors = [x for x in capsys.readouterr().err.splitlines() if "warning" not in x]
    assert len(errors) == 1 and errors[0].startswith("datapool: error: ")
    assert "differs in: channels (pool BGR; this run RGB)" in errors[0]
    with pytest.raises(SystemExit):
        main([*args, "--channels", "GBR"])
    assert "--channels: invalid choice: 'GBR'" in capsys.readouterr().err


@pytest.mark.parametrize(("made", "then"), [("RGB", "BGR"), ("BGR", "RGB")])
def test_a_channel_order_mismatch_names_both_orders(tmp_path, make_media, capsys, made, then):
    """RGB, the default, is not recorded in a pool's fingerprint (older pools still match), and
    the mismatch said so: `channels (pool not recorded; this run BGR)`, as if the pool's order
    were unknown. It names RGB."""
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = _channel_means(tmp_path / "means.onnx")
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1", "--no-progress"]
    args += ["--model", str(model), "--mean", "0,0,0", "--std", "1,1,1"]
    first = ["--channels", "BGR"] if made == "BGR" else []
    assert main([*args, *first]) == 0
    capsys.readouterr()
    assert main([*args, "--channels", then]) == 7
    [error] = [x for x in capsys.readouterr().err.splitlines() if "warning" not in x]
    assert f"channels (pool {made}; this run {then})" in error
    assert "not recorded" not in error


def test_a_pool_embedded_with_imagenet_on_top_of_the_graphs_own_says_it_was_normalised_twice(
    tmp_path, make_media, capsys
):
    # A pool made before datapool read graphs: ImageNet's normalisation on top of the model's
    # own (the same fingerprint as giving those flags). The next run reads the graph and stops
    # on the mean/std mismatch; the line said only "use the pool's model and settings", though
    # the user changed nothing.
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = prefixed(tmp_path / "m.onnx", (("Sub", MEAN_255), ("Div", STD_255)))
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1", "--no-progress"]
    imagenet = [
        "--mean",
        ",".join(map(str, IMAGENET_MEAN)),
        "--std",
        ",".join(map(str, IMAGENET_STD)),
    ]
    assert main([*args, "--model", str(model), *imagenet]) == 0
    capsys.readouterr()
    assert main([*args, "--model", str(model)]) == 7
    err = capsys.readouterr().err
    assert "on top of the model's own (twice" in err and "--process-all" in err
    assert "give --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225" in err
    assert main([*args, "--model", str(model), *imagenet]) == 0  # the way it names works
    # ... and it says each time that the frames are normalised twice, and the way out
    assert "normalised twice" in capsys.readouterr().err
    # Any other mismatch keeps the plain advice.
    other = prefixed(tmp_path / "o.onnx", (("Sub", MEAN_255), ("Div", STD_255 * 0.98)))
    assert main([*args, "--model", str(other)]) == 7
    err = capsys.readouterr().err
    assert "twice" not in err and "use the pool's model and settings" in err


def luma(f):
    """ITU-R BT.601 luma of uint8 RGB frames, (N, 1, H, W) in 0-255 units."""
    return (f.astype(np.float64) @ np.asarray([0.299, 0.587, 0.114]))[:, None]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_a_grayscale_model_is_fed_luma(tmp_path, layout):
    # A 1-channel model was refused as having no image input.
    path = prefixed(tmp_path / "gray.onnx", layout=layout, channels=1)
    e = Embedder(path, mean=(0.5,), std=(0.25,))
    f = frames()
    close(e.embed(f), reference((luma(f) / 255 - 0.5) / 0.25, w=W1))
    assert f"input input {layout} float32 1-channel (grayscale: BT.601 luma) 16x16" in e.inspection
    assert e.fingerprint.settings["channels"] == "L"
    assert e.fingerprint.settings["mean"] == [0.5]
    # Pillow's "L" is the same luma, rounded to whole values
    from PIL import Image

    pil = np.stack([np.asarray(Image.fromarray(x).convert("L")) for x in f])
    assert np.abs(luma(f)[:, 0] - pil).max() <= 0.5 + 1e-9
    # three equal values serve the one channel
    same = Embedder(path, mean=(0.5,) * 3, std=(0.25,) * 3)
    np.testing.assert_allclose(same.embed(f), e.embed(f), atol=1e-6)


def test_a_grayscale_model_reads_one_value_from_metadata_or_preprocessor_config(tmp_path):
    f = frames()
    meta = {"datapool.mean": "0.5", "datapool.std": "[0.25]"}
    e = Embedder(prefixed(tmp_path / "meta.onnx", channels=1, metadata=meta))
    assert e.norm_source == "metadata"
    close(e.embed(f), reference((luma(f) / 255 - 0.5) / 0.25, w=W1))
    folder = tmp_path / "hf"
    folder.mkdir()
    path = prefixed(folder / "model.onnx", channels=1)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5], "image_std": [0.25], "size": S})
    )
    e = Embedder(path)
    assert e.norm_source == "preprocessor_config.json"
    close(e.embed(f), reference((luma(f) / 255 - 0.5) / 0.25, w=W1))


def test_a_grayscale_model_with_its_normalisation_inside_takes_luma_pixels(tmp_path):
    e = Embedder(prefixed(tmp_path / "gray.onnx", [("Div", 255.0)], channels=1))
    f = frames()
    close(e.embed(f), reference(luma(f) / 255, w=W1))
    assert e.norm_source.startswith("graph: its first nodes (Div 255) normalise 0-255 pixels")


def test_a_grayscale_model_without_normalisation_or_with_rgb_values_is_refused(tmp_path):
    path = prefixed(tmp_path / "gray.onnx", channels=1)
    with pytest.raises(
        ModelError, match=r"takes 1-channel \(grayscale\) float pixels and names no"
    ):
        Embedder(path)
    with pytest.raises(ModelError, match=r"mean 0\.485,0\.456,0\.406 \(--mean\) has one"):
        Embedder(path, mean=IMAGENET_MEAN, std=(0.25,))
    with pytest.raises(ModelError, match=r"grayscale\) pixels: a channel order \(--channels\)"):
        Embedder(path, mean=(0.5,), std=(0.25,), channels="BGR")


def test_a_four_channel_model_is_refused_saying_so(tmp_path):
    path = prefixed(tmp_path / "rgba.onnx", channels=4)
    with pytest.raises(
        ModelError, match=r"^model rgba\.onnx input 'input' \['N', 4, 16, 16\] takes 4 channels"
    ):
        Embedder(path)


def test_a_long_model_name_with_channels_keeps_the_channel_order_whole(
    tmp_path, make_media, capsys
):
    """A long model file name fed BGR: the name went to its shortest and the line was still too
    long, so its end was cut, `... normalisation ImageNet default, fed BGR (--cha…`. Now the
    normalisation's source is cut and the channel order stays whole, within 100 columns."""
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    model = _channel_means(tmp_path / ("my_company_feature_extractor_finetuned_v12" + ".onnx"))
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1", "--no-progress"]
    assert main([*args, "--model", str(model), "--channels", "bgr"]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("model ")]
    assert len(line) <= 100, line
    assert line.startswith("model     my_compa…d_v12.onnx: 16x16 in, 4-d out, normalisation "), line
    assert line.endswith("…, fed BGR (--channels)"), line
