"""The normalisation inside a model's graph behind steps that move pixels without changing them
(ingest/graph_prefix.py): a Pad, a crop (a Slice of the height or width), and a grey image made
three channels (a Tile, an Expand or a Concat of its one channel). Before, the walk stopped at
such a step: a model that normalised after it got ImageNet's normalisation on top of its own,
without a word (a grey one was refused as naming no normalisation). Each model is a real ONNX
graph run by onnxruntime, and datapool's rows are compared with what the same graph computes on
the pixels the model takes."""

from __future__ import annotations

import numpy as np
import pytest

from datapool.errors import ModelError
from datapool.ingest.embed import IMAGENET_MEAN, IMAGENET_STD, Embedder

from .test_models import close, frames

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

S = 16
F32, I64 = TensorProto.FLOAT, TensorProto.INT64
MEAN, STD = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
MEAN4 = MEAN.reshape(1, 3, 1, 1).astype(np.float32)
STD4 = STD.reshape(1, 3, 1, 1).astype(np.float32)
IMAGENET_01 = [("Sub", "mean"), ("Div", "std")]
CONSTS = {"mean": MEAN4, "std": STD4, "mean255": MEAN4 * 255, "std255": STD4 * 255}


def model(path, nodes, inits, last, hw, *, channels=3, layout="NCHW", norm=IMAGENET_01, opset=17):
    """A graph of `nodes` on input "x" ((N, channels, 16, 16) or channels last) whose last writes
    `last`, then `norm` ((op, constant) pairs) on it, a flatten of the (N, 3, *hw) result and a
    MatMul to 8 values."""
    shape = ["N", channels, S, S] if layout == "NCHW" else ["N", S, S, channels]
    nodes = list(nodes)
    for i, (op, name) in enumerate(norm):
        nodes.append(helper.make_node(op, [last, name], [f"n{i}"]))
        last = f"n{i}"
    w = np.random.default_rng(5).normal(size=(3 * hw[0] * hw[1], 8)).astype(np.float32)
    nodes += [
        helper.make_node("Reshape", [last, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["emb"]),
    ]
    inits = {**CONSTS, **inits, "flat_shape": np.asarray([0, -1], np.int64), "w": w}
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", F32, shape)],
        [helper.make_tensor_value_info("emb", F32, ["N", 8])],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def const(name, value, dtype=np.int64):
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype))
    )


def graph_on(path, pixels):
    """What the model's graph computes on these (N, C, H, W) or (N, H, W, C) float pixels."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": pixels.astype(np.float32)})
    return out


def nchw(f):
    return f.transpose(0, 3, 1, 2).astype(np.float64)


def luma(f):
    return (f.astype(np.float64) @ np.asarray([0.299, 0.587, 0.114]))[:, None]


def pad_folded(path, mode="constant", norm=IMAGENET_01):
    # F.pad(x, (2, 2, 2, 2)) before (x - mean) / std, pads folded to a constant (ONNX order: the
    # begins of N, C, H, W, then the ends)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["pad"], mode=mode)]
    pads = np.asarray([0, 0, 2, 2, 0, 0, 2, 2], np.int64)
    return model(path, nodes, {"pads": pads}, "pad", (S + 4, S + 4), norm=norm)


def pad_unfolded(path):
    # The same pads worked out in the graph, as an export without constant folding writes them:
    # the (2, 2, 2, 2) of F.pad and zeros for N and C concatenated, reshaped to pairs, flipped
    # (a Slice with step -1), transposed, flattened and cast, and a constant value of 0.
    nodes = [
        const("pad", [2, 2, 2, 2]),
        const("rank", 4),
        const("two", 2),
        helper.make_node("Mul", ["rank", "two"], ["twice"]),
        helper.make_node("Shape", ["pad"], ["pad_shape"]),
        const("zero_i", 0),
        helper.make_node("Gather", ["pad_shape", "zero_i"], ["pad_len"], axis=0),
        helper.make_node("Sub", ["twice", "pad_len"], ["ext"]),
        helper.make_node("Unsqueeze", ["ext", "ax0"], ["ext1"]),
        helper.make_node(
            "ConstantOfShape",
            ["ext1"],
            ["zeros"],
            value=numpy_helper.from_array(np.asarray([0], np.int64)),
        ),
        helper.make_node("Concat", ["pad", "zeros"], ["all"], axis=0),
        const("pairs", [-1, 2]),
        helper.make_node("Reshape", ["all", "pairs"], ["paired"]),
        const("s", [-1]),
        const("e", [-(2**63)]),
        const("a", [0]),
        const("st", [-1]),
        helper.make_node("Slice", ["paired", "s", "e", "a", "st"], ["flipped"]),
        helper.make_node("Transpose", ["flipped"], ["tr"], perm=[1, 0]),
        const("to_1d", [-1]),
        helper.make_node("Reshape", ["tr", "to_1d"], ["pads_f"]),
        helper.make_node("Cast", ["pads_f"], ["pads"], to=I64),
        const("value", 0.0, np.float32),
        helper.make_node("Pad", ["x", "pads", "value"], ["padded"], mode="constant"),
    ]
    return model(path, nodes, {"ax0": np.asarray([0], np.int64)}, "padded", (S + 4, S + 4))


def pad_opset10(path):
    # Before opset 11 the pads are an attribute; reflect padding
    nodes = [helper.make_node("Pad", ["x"], ["pad"], pads=[0, 0, 1, 3, 0, 0, 1, 3], mode="reflect")]
    return model(path, nodes, {}, "pad", (S + 2, S + 6), opset=10)


def crop(path):
    # x[:, :, 2:-2, 3:-3] before (x - mean * 255) / (std * 255): a Slice per axis
    nodes = [
        helper.make_node("Slice", ["x", "s2", "e2", "a2", "one"], ["h"]),
        helper.make_node("Slice", ["h", "s3", "e3", "a3", "one"], ["hw"]),
    ]
    inits = {
        "s2": np.asarray([2], np.int64),
        "e2": np.asarray([-2], np.int64),
        "a2": np.asarray([2], np.int64),
        "s3": np.asarray([3], np.int64),
        "e3": np.asarray([-3], np.int64),
        "a3": np.asarray([3], np.int64),
        "one": np.asarray([1], np.int64),
    }
    norm = [("Sub", "mean255"), ("Div", "std255")]
    return model(path, nodes, inits, "hw", (S - 4, S - 6), norm=norm)


def centre_crop(path):
    # A centre crop worked out from the image's own Shape (a dynamic size): the starts and ends
    # are no constants, the axes (2, 3) are.
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"]),
        helper.make_node("Sub", ["hw", "crop"], ["spare"]),
        helper.make_node("Div", ["spare", "two"], ["start"]),
        helper.make_node("Add", ["start", "crop"], ["end"]),
        helper.make_node("Slice", ["x", "start", "end", "axes"], ["c"]),
    ]
    inits = {
        "two": np.asarray([2], np.int64),
        "four": np.asarray([4], np.int64),
        "crop": np.asarray([10, 10], np.int64),
        "axes": np.asarray([2, 3], np.int64),
    }
    return model(path, nodes, inits, "c", (10, 10))


def grey_tile(path):
    # x.repeat(1, 3, 1, 1) of a 1-channel image, then ImageNet's (x - mean) / std
    nodes = [helper.make_node("Tile", ["x", "reps"], ["rgb"])]
    return model(
        path, nodes, {"reps": np.asarray([1, 3, 1, 1], np.int64)}, "rgb", (S, S), channels=1
    )


def grey_expand(path):
    # x.expand(-1, 3, -1, -1) unfolded: the -1s made 1s by Where(Equal(size, -1), 1, size)
    nodes = [
        const("size", [-1, 3, -1, -1]),
        helper.make_node("Shape", ["size"], ["size_shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["size_shape"],
            ["ones"],
            value=numpy_helper.from_array(np.asarray([1], np.int64)),
        ),
        const("minus", -1),
        helper.make_node("Mul", ["ones", "minus"], ["neg"]),
        helper.make_node("Equal", ["size", "neg"], ["is_neg"]),
        helper.make_node("Where", ["is_neg", "ones", "size"], ["shape"]),
        helper.make_node("Expand", ["x", "shape"], ["rgb"]),
    ]
    return model(path, nodes, {}, "rgb", (S, S), channels=1)


def grey_concat(path):
    # torch.cat([x, x, x], 1) before x / 255
    nodes = [helper.make_node("Concat", ["x", "x", "x"], ["rgb"], axis=1)]
    return model(
        path, nodes, {"k": np.float32(255)}, "rgb", (S, S), channels=1, norm=[("Div", "k")]
    )


def grey_keras(path):
    # tf.image.grayscale_to_rgb on a channels-last input (a Tile of the last axis), Keras'
    # Rescaling(1/127.5, offset=-1), then the Transpose to NCHW
    nodes = [
        helper.make_node("Tile", ["x", "reps"], ["rgb"]),
        helper.make_node("Mul", ["rgb", "scale"], ["mul"]),
        helper.make_node("Add", ["mul", "offset"], ["add"]),
        helper.make_node("Transpose", ["add"], ["t"], perm=[0, 3, 1, 2]),
    ]
    inits = {
        "reps": np.asarray([1, 1, 1, 3], np.int64),
        "scale": np.float32(1 / 127.5),
        "offset": np.float32(-1),
    }
    return model(path, nodes, inits, "t", (S, S), channels=1, layout="NHWC", norm=[])


@pytest.mark.parametrize(
    ("build", "units", "said"),
    [
        (pad_folded, 255, "(Pad, Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) normalise 0-1"),
        (pad_unfolded, 255, "(Pad, Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) normalise 0-1"),
        (pad_opset10, 255, "(Pad, Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) normalise 0-1"),
        (crop, 1, "(Slice crop, Sub 123.7,116.3,103.5, Div 58.4,57.12,57.38) normalise 0-255"),
        (centre_crop, 255, "(Slice crop, Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) norm"),
    ],
)
def test_a_pad_or_crop_before_the_normalisation_is_seen_through(tmp_path, build, units, said):
    path = build(tmp_path / "m.onnx")
    e = Embedder(path)
    f = frames(3)
    close(e.embed(f), graph_on(path, nchw(f) / units))  # fed the pixels it takes, nothing else
    assert e.norm_source.startswith("graph: its first nodes (")
    assert said in e.norm_source


@pytest.mark.parametrize(
    ("build", "units", "said"),
    [
        (grey_tile, 255, "(Tile to 3 channels, Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225)"),
        (grey_expand, 255, "(Expand to 3 channels, Sub 0.485,0.456,0.406, Div 0.229,0.224,"),
        (grey_concat, 1, "(Concat to 3 channels, Div 255) normalise 0-255 pixels to 0-1"),
        (grey_keras, 1, "(Tile to 3 channels, Mul 0.007843, Add -1) normalise 0-255 pixels to"),
    ],
)
def test_a_grey_image_made_three_channels_before_the_normalisation_is_read(
    tmp_path, build, units, said
):
    # Before, such a 1-channel model was refused as naming no normalisation, with flags for
    # three different pixel ranges to guess from.
    path = build(tmp_path / "m.onnx")
    e = Embedder(path)
    f = frames(3)
    grey = luma(f) / units
    if build is grey_keras:
        grey = grey.transpose(0, 2, 3, 1)
    close(e.embed(f), graph_on(path, grey))
    assert said in e.norm_source
    assert e.fingerprint.settings["channels"] == "L"
    assert e.fingerprint.settings["mean"] == [0.0]


def pad_from_shape(path, norm=IMAGENET_01):
    # A Pad whose pads are worked out from the image's own Shape (a pad to a multiple of 32
    # written out in the graph): no constant datapool can read.
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"]),
        helper.make_node("Mod", ["hw", "k"], ["rest"]),
        helper.make_node("Sub", ["k", "rest"], ["more"]),
        helper.make_node("Concat", ["zeros", "zeros", "more"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["pad"]),
    ]
    inits = {
        "two": np.asarray([2], np.int64),
        "four": np.asarray([4], np.int64),
        "k": np.asarray([18, 18], np.int64),
        "zeros": np.asarray([0, 0, 0], np.int64),
    }
    return model(path, nodes, inits, "pad", (S + 2, S + 2), norm=norm)


def test_a_step_datapool_cannot_follow_before_a_normalisation_is_refused_in_one_line(tmp_path):
    # Before, the walk stopped at the Pad and the model got ImageNet's normalisation on top of
    # its own without a word.
    path = pad_from_shape(tmp_path / "m.onnx")
    with pytest.raises(ModelError) as info:
        Embedder(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(
        "model m.onnx seems to normalise its input inside the graph (its first nodes: a Pad whose "
        "pads are not constants or take in the channels, Sub 0.485,0.456,0.406, Div 0.229,0.224,"
        "0.225), but datapool cannot follow a Pad whose pads are not constants"
    )
    assert "--mean 0,0,0 --std 1,1,1 for 0-1 pixels" in line
    # the flags settle it
    e = Embedder(path, mean=(0.0,) * 3, std=(1.0,) * 3)
    f = frames(3)
    close(e.embed(f), graph_on(path, nchw(f) / 255))


def test_a_pad_with_no_normalisation_after_it_keeps_imagenet(tmp_path):
    # A Pad (one datapool reads, and one it cannot) and no normalisation after it (here a
    # flatten and a MatMul, a Conv in a real model): nothing to read, nothing to refuse.
    for build in (pad_folded, pad_from_shape):
        path = build(tmp_path / f"{build.__name__}.onnx", norm=[])
        assert Embedder(path).norm_source == "ImageNet default"


def test_a_pad_of_the_channels_is_not_read_as_one_channel_order(tmp_path):
    # A Pad that adds a fourth channel before a per-channel Sub: the channels after it are not
    # the image's three, so datapool says it cannot tell rather than read the mean.
    nodes = [helper.make_node("Pad", ["x", "pads"], ["pad"])]
    pads = np.asarray([0, 0, 0, 0, 0, 1, 0, 0], np.int64)
    path = model(
        tmp_path / "m.onnx",
        [*nodes, helper.make_node("Slice", ["pad", "z", "three", "one"], ["back"])],
        {"pads": pads, "z": np.asarray([0], np.int64), "three": np.asarray([3], np.int64),
         "one": np.asarray([1], np.int64)},
        "back",
        (S, S),
    )  # fmt: skip
    with pytest.raises(ModelError, match=r"cannot follow a Pad whose pads are not constants or"):
        Embedder(path)


def test_a_pool_made_before_with_imagenet_on_top_says_it_was_normalised_twice(
    tmp_path, make_media, capsys
):
    # A pool made before datapool saw through the Pad: ImageNet's normalisation on top of the
    # model's own (the fingerprint those flags give). The next run reads the graph and stops,
    # saying why and both ways out.
    from datapool.cli import main

    from .test_models import _bucket

    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    path = pad_folded(tmp_path / "m.onnx")
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1", "--no-progress"]
    args += ["--model", str(path)]
    imagenet = ["--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))]
    assert main([*args, *imagenet]) == 0
    capsys.readouterr()
    assert main(args) == 7
    err = capsys.readouterr().err
    assert "on top of the model's own (twice" in err and "--process-all" in err
