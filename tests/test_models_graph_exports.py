"""The normalisation inside a model's graph as real exporters write it (ingest/graph_prefix.py).
Each graph below mirrors, node for node, the first nodes torch 2.13's exporters wrote for a small
conv net wrapped in a module that normalises its input (TorchScript: `dynamo=False`, opsets 13
and 17; dynamo: opset 18; with and without constant folding; fp16), or tf2onnx writes for Keras'
Rescaling and Normalization layers, followed by a flatten and a MatMul. Each is run by a real
onnxruntime session and datapool's rows are compared with NumPy's reference of what the graph
computes on the pixels the wrapper takes. tests/test_models_torch_export.py exports the wrappers
with torch itself where torch is installed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datapool.ingest.embed import IMAGENET_MEAN, IMAGENET_STD, Embedder

from .conftest import run_cli, write_media
from .test_models import close, frames

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

S = 16
W = np.random.default_rng(11).normal(size=(3 * S * S, 8)).astype(np.float32)
B = np.random.default_rng(12).normal(size=8).astype(np.float32) * 8  # no scale cancels out
MEAN, STD = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
F32, F16, I64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64


def const(name, value, dtype=np.float32):
    """A Constant node holding a tensor, as TorchScript writes Python numbers and shapes."""
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype))
    )


def ints(name, values):
    """A Constant node with value_ints, as the dynamo exporter writes a view's shape."""
    return helper.make_node("Constant", [], [name], value_ints=list(values))


def model(path, nodes, inits, x, *, layout="NCHW", dtype=F32, opset=17, metadata=None):
    """A graph of `nodes` on input "x" (channels first or last, float32 or float16) whose last
    of them writes `x` in NCHW, then a Cast to float32, a flatten, a MatMul by W and an Add of B
    (see `out`)."""
    shape = ["N", 3, S, S] if layout == "NCHW" else ["N", S, S, 3]
    tail = [
        helper.make_node("Cast", [x], ["f32"], to=F32),
        helper.make_node("Reshape", ["f32", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["prod"]),
        helper.make_node("Add", ["prod", "b"], ["emb"]),
    ]
    inits = {**inits, "flat_shape": np.asarray([0, -1], np.int64), "w": W, "b": B}
    graph = helper.make_graph(
        nodes + tail,
        "m",
        [helper.make_tensor_value_info("x", dtype, shape)],
        [helper.make_tensor_value_info("emb", F32, ["N", 8])],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if metadata:
        helper.set_model_props(m, metadata)
    onnx.save(m, str(path))
    return path


def ts_nofold_view(path):
    # torch.onnx.export(dynamo=False, do_constant_folding=False) of (3,) buffers used as
    # `(x - mean.view(1, 3, 1, 1)) / std[None, :, None, None]`: a Reshape and three Unsqueezes of
    # the initializers, their shape and axes in Constant nodes.
    nodes = [
        const("shape", [1, 3, 1, 1], np.int64),
        helper.make_node("Reshape", ["mean", "shape"], ["mean4"]),
        helper.make_node("Sub", ["x", "mean4"], ["sub"]),
        const("ax0", [0], np.int64),
        helper.make_node("Unsqueeze", ["std", "ax0"], ["u0"]),
        const("ax2", [2], np.int64),
        helper.make_node("Unsqueeze", ["u0", "ax2"], ["u1"]),
        const("ax3", [3], np.int64),
        helper.make_node("Unsqueeze", ["u1", "ax3"], ["u2"]),
        helper.make_node("Div", ["sub", "u2"], ["norm"]),
    ]
    inits = {"mean": MEAN.astype(np.float32), "std": STD.astype(np.float32)}
    return model(path, nodes, inits, "norm", opset=13)


def ts_opset11_unsqueeze(path):
    # The same before opset 13: Unsqueeze's axes are an attribute.
    nodes = [
        helper.make_node("Unsqueeze", ["mean"], ["m4"], axes=[0, 2, 3]),
        helper.make_node("Sub", ["x", "m4"], ["sub"]),
        helper.make_node("Unsqueeze", ["std"], ["s4"], axes=[0, 2, 3]),
        helper.make_node("Div", ["sub", "s4"], ["norm"]),
    ]
    inits = {"mean": MEAN.astype(np.float32), "std": STD.astype(np.float32)}
    return model(path, nodes, inits, "norm", opset=11)


def dynamo_nofold_view(path):
    # torch.onnx.export(dynamo=True, optimize=False) of the same: the shape is a Concat of
    # Constant value_ints, the Reshape has allowzero=1.
    nodes = []
    for what in ("mean", "std"):
        nodes += [ints(f"{what}{i}", [d]) for i, d in enumerate((1, 3, 1, 1))]
        nodes.append(helper.make_node("Concat", [f"{what}{i}" for i in range(4)], [f"{what}_s"]))
        nodes[-1].attribute.append(helper.make_attribute("axis", 0))
        nodes.append(helper.make_node("Reshape", [what, f"{what}_s"], [f"{what}4"], allowzero=1))
    nodes += [
        helper.make_node("Sub", ["x", "mean4"], ["sub"]),
        helper.make_node("Div", ["sub", "std4"], ["norm"]),
    ]
    inits = {"mean": MEAN.astype(np.float32), "std": STD.astype(np.float32)}
    return model(path, nodes, inits, "norm", opset=18)


def dynamo_nofold_scalars(path):
    # dynamo, optimize=False, of `x * 2 - 1`: each Python int is a Constant int64 cast to float.
    nodes = [
        const("two_i", 2, np.int64),
        helper.make_node("Cast", ["two_i"], ["two"], to=F32),
        helper.make_node("Mul", ["x", "two"], ["mul"]),
        const("one_i", 1, np.int64),
        helper.make_node("Cast", ["one_i"], ["one"], to=F32),
        helper.make_node("Sub", ["mul", "one"], ["norm"]),
    ]
    return model(path, nodes, {}, "norm", opset=18)


def dynamo_nofold_fp16(path):
    # dynamo, optimize=False, of `.half()` with `x / 255.0`: a float32 Constant cast to float16.
    nodes = [
        const("k", 255.0),
        helper.make_node("Cast", ["k"], ["k16"], to=F16),
        helper.make_node("Div", ["x", "k16"], ["norm"]),
    ]
    return model(path, nodes, {}, "norm", dtype=F16, opset=18)


def dynamo_nofold_tensors(path):
    # dynamo, optimize=False, of `(x / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / ...`: the
    # tensors made in forward are initializers behind an Identity (a clone).
    nodes = [
        helper.make_node("Identity", ["mean"], ["clone"]),
        ints("shape", [1, 3, 1, 1]),
        helper.make_node("Reshape", ["clone", "shape"], ["mean4"], allowzero=1),
        helper.make_node("Identity", ["std"], ["clone_1"]),
        helper.make_node("Reshape", ["clone_1", "shape"], ["std4"], allowzero=1),
        const("k_i", 255, np.int64),
        helper.make_node("Cast", ["k_i"], ["k"], to=F32),
        helper.make_node("Div", ["x", "k"], ["div"]),
        helper.make_node("Sub", ["div", "mean4"], ["sub"]),
        helper.make_node("Div", ["sub", "std4"], ["norm"]),
    ]
    inits = {"mean": MEAN.astype(np.float32), "std": STD.astype(np.float32)}
    return model(path, nodes, inits, "norm", opset=18)


def constant_first(path):
    # `2 * x + (-1)` with the constant as the first input of Mul and Add.
    nodes = [
        helper.make_node("Mul", ["two", "x"], ["mul"]),
        helper.make_node("Add", ["minus_one", "mul"], ["norm"]),
    ]
    inits = {"two": np.float32(2.0), "minus_one": np.float32(-1.0)}
    return model(path, nodes, inits, "norm")


def ts_gather_bgr_caffe(path):
    # TorchScript of `x[:, [2, 1, 0]]` and torchvision's normalize with Caffe's B,G,R mean of
    # 0-255 pixels and std 1: the model takes RGB and makes its own BGR.
    nodes = [
        helper.make_node("Gather", ["x", "order"], ["bgr"], axis=1),
        const("mean", (MEAN[::-1] * 255).reshape(3, 1, 1)),
        helper.make_node("Sub", ["bgr", "mean"], ["sub"]),
        const("std", np.ones((3, 1, 1))),
        helper.make_node("Div", ["sub", "std"], ["norm"]),
    ]
    return model(path, nodes, {"order": np.asarray([2, 1, 0], np.int64)}, "norm")


def ts_flip_normalise(path):
    # TorchScript of `x.flip(1)` and a normalisation in B,G,R order: a Slice with step -1.
    nodes = [
        const("starts", [-1], np.int64),
        const("ends", [-(2**63) + 1], np.int64),
        const("axes", [1], np.int64),
        const("steps", [-1], np.int64),
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["bgr"]),
        const("mean", MEAN[::-1].reshape(3, 1, 1)),
        helper.make_node("Sub", ["bgr", "mean"], ["sub"]),
        const("std", STD[::-1].reshape(3, 1, 1)),
        helper.make_node("Div", ["sub", "std"], ["norm"]),
    ]
    return model(path, nodes, {}, "norm")


def dynamo_nofold_index(path):
    # dynamo, optimize=False, of `x[:, [2, 1, 0]] - bgr_mean * 255`: a Slice of all of the batch,
    # the channels transposed to the front for a GatherND whose indices are worked out from the
    # list (an Expand to its own Shape, an Unsqueeze, a Concat), and transposed back.
    nodes = [
        const("starts", [0], np.int64),
        const("ends", [2**63 - 1], np.int64),
        const("axes", [0], np.int64),
        const("steps", [1], np.int64),
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["all"]),
        helper.make_node("Transpose", ["all"], ["cfirst"], perm=[1, 0, 2, 3]),
        helper.make_node("Identity", ["lifted"], ["clone"]),
        helper.make_node("Max", ["clone"], ["most"]),
        helper.make_node("Shape", ["most"], ["shape"], start=0),
        helper.make_node("Expand", ["clone", "shape"], ["wide"]),
        ints("last", [-1]),
        helper.make_node("Unsqueeze", ["wide", "last"], ["col"]),
        helper.make_node("Concat", ["col"], ["index"], axis=-1),
        helper.make_node("GatherND", ["cfirst", "index"], ["picked"], batch_dims=0),
        helper.make_node("Transpose", ["picked"], ["bgr"], perm=[1, 0, 2, 3]),
        helper.make_node("Sub", ["bgr", "mean"], ["norm"]),
    ]
    inits = {
        "lifted": np.asarray([2, 1, 0], np.int64),
        "mean": (MEAN[::-1] * 255).reshape(1, 3, 1, 1).astype(np.float32),
    }
    return model(path, nodes, inits, "norm", opset=18)


def ts_expand_as(path):
    # TorchScript of `(x - mean.expand_as(x)) / std.expand_as(x)`: each constant is expanded
    # to the Shape of x, which the Sub and Div broadcast the same.
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Expand", ["mean", "shape"], ["mean_x"]),
        helper.make_node("Sub", ["x", "mean_x"], ["sub"]),
        helper.make_node("Shape", ["x"], ["shape2"]),
        helper.make_node("Expand", ["std", "shape2"], ["std_x"]),
        helper.make_node("Div", ["sub", "std_x"], ["norm"]),
    ]
    inits = {
        "mean": MEAN.reshape(1, 3, 1, 1).astype(np.float32),
        "std": STD.reshape(1, 3, 1, 1).astype(np.float32),
    }
    return model(path, nodes, inits, "norm")


def dynamo_nofold_addcmul(path):
    # dynamo, optimize=False, of `torch.addcmul(-mean / std, x, 1 / std)`: the Python 1.0 of
    # addcmul's value is a CastLike to x's type, multiplied first, then the constants.
    nodes = [
        helper.make_node("Neg", ["mean"], ["neg"]),
        helper.make_node("Div", ["neg", "std"], ["shift"]),
        helper.make_node("Reciprocal", ["std"], ["recip"]),
        const("one_i", 1, np.int64),
        helper.make_node("Cast", ["one_i"], ["one"], to=F32),
        helper.make_node("Mul", ["recip", "one"], ["scale"]),
        helper.make_node("Constant", [], ["value"], value_float=1.0),
        helper.make_node("CastLike", ["value", "x"], ["value_cast"]),
        helper.make_node("Mul", ["value_cast", "x"], ["tmp"]),
        helper.make_node("Mul", ["tmp", "scale"], ["tmp_0"]),
        helper.make_node("Add", ["shift", "tmp_0"], ["norm"]),
    ]
    inits = {
        "mean": MEAN.reshape(1, 3, 1, 1).astype(np.float32),
        "std": STD.reshape(1, 3, 1, 1).astype(np.float32),
    }
    return model(path, nodes, inits, "norm", opset=18)


def keras_transpose_first(path):
    # tf2onnx with the Transpose pushed up ahead of Keras' Rescaling(1/255) and Normalization:
    # the constants are laid out for the transposed tensor, (1, 3, 1, 1).
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["t", "scale"], ["mul"]),
        helper.make_node("Sub", ["mul", "mean"], ["sub"]),
        helper.make_node("Div", ["sub", "std"], ["norm"]),
    ]
    inits = {
        "scale": np.float32(1 / 255),
        "mean": MEAN.reshape(1, 3, 1, 1).astype(np.float32),
        "std": STD.reshape(1, 3, 1, 1).astype(np.float32),
    }
    return model(path, nodes, inits, "norm", layout="NHWC")


def tf2onnx_efficientnet(path):
    # tf2onnx 1.17 (TF 2.21, opsets 13 and 17) of Keras' EfficientNet preprocessing,
    # Rescaling(1/255), Normalization(mean, var) and Rescaling(1/sqrt(std)): the mean is added
    # negated, the division and the second Rescaling merged into one Mul, an Add of 0 kept.
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["mul"]),
        helper.make_node("Add", ["mul", "neg_mean"], ["sub"]),
        helper.make_node("Mul", ["sub", "recip"], ["mul2"]),
        helper.make_node("Add", ["mul2", "zero"], ["add"]),
        helper.make_node("Transpose", ["add"], ["norm"], perm=[0, 3, 1, 2]),
    ]
    inits = {
        "scale": np.float32(1 / 255),
        "neg_mean": -MEAN.reshape(1, 1, 1, 3).astype(np.float32),
        "recip": (1 / (STD * np.sqrt(STD))).reshape(1, 1, 1, 3).astype(np.float32),
        "zero": np.float32(0),
    }
    return model(path, nodes, inits, "norm", layout="NHWC")


def tf2onnx_caffe(path):
    # tf2onnx of Keras' caffe preprocessing inside the model, t[..., ::-1] - B,G,R mean: one
    # Slice of the batch axis whole (ends 1e9) and the channel axis reversed.
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["bgr"]),
        helper.make_node("Sub", ["bgr", "mean"], ["sub"]),
        helper.make_node("Transpose", ["sub"], ["norm"], perm=[0, 3, 1, 2]),
    ]
    inits = {
        "starts": np.asarray([0, 10**9], np.int64),
        "ends": np.asarray([10**9, -(10**9)], np.int64),
        "axes": np.asarray([0, 3], np.int64),
        "steps": np.asarray([1, -1], np.int64),
        "mean": (MEAN[::-1] * 255).astype(np.float32),
    }
    return model(path, nodes, inits, "norm", layout="NHWC")


def keras_efficientnet(path):
    # Keras' EfficientNet with Normalization's arithmetic kept, (x - mean) / max(sqrt(var), eps)
    # (tf2onnx folds it, above; another converter may not), then the Transpose to NCHW.
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["mul"]),
        helper.make_node("Sub", ["mul", "mean"], ["sub"]),
        helper.make_node("Sqrt", ["var"], ["sqrt"]),
        helper.make_node("Max", ["sqrt", "eps"], ["denom"]),
        helper.make_node("Div", ["sub", "denom"], ["div"]),
        helper.make_node("Mul", ["div", "rescale"], ["mul2"]),
        helper.make_node("Transpose", ["mul2"], ["norm"], perm=[0, 3, 1, 2]),
    ]
    inits = {
        "scale": np.float32(1 / 255),
        "mean": MEAN.reshape(1, 1, 1, 3).astype(np.float32),
        "var": (STD**2).reshape(1, 1, 1, 3).astype(np.float32),
        "eps": np.float32(1e-7),
        "rescale": (1 / np.sqrt(STD)).astype(np.float32),
    }
    return model(path, nodes, inits, "norm", layout="NHWC")


def out(nchw):
    """What `model`'s tail computes on the (N, 3, H, W) tensor its first nodes write."""
    return nchw.reshape(len(nchw), -1) @ W + B


def pixels(f):
    return f.transpose(0, 3, 1, 2).astype(np.float64)


def keras3_efficientnet(path):
    # Keras 3 (torch backend) `model.export(format="onnx")` of EfficientNet's preprocessing:
    # Casts to float32 between every layer, Rescaling(1/255) as a Mul and an Add of 0,
    # Normalization's mean and std as (1, 1, 1, 3) Constant nodes, on the NHWC input.
    nodes = [
        helper.make_node("Cast", ["x"], ["c0"], to=F32),
        helper.make_node("Cast", ["c0"], ["c1"], to=F32),
        const("scale", np.float32(1 / 255)),
        helper.make_node("Mul", ["c1", "scale"], ["mul"]),
        const("offset", np.float32(0)),
        helper.make_node("Add", ["mul", "offset"], ["add"]),
        helper.make_node("Cast", ["add"], ["c2"], to=F32),
        helper.make_node("Cast", ["c2"], ["c3"], to=F32),
        const("mean", MEAN.reshape(1, 1, 1, 3)),
        helper.make_node("Sub", ["c3", "mean"], ["sub"]),
        helper.make_node("Cast", ["sub"], ["c4"], to=F32),
        const("std", STD.reshape(1, 1, 1, 3)),
        helper.make_node("Div", ["c4", "std"], ["div"]),
        const("rescale", (1 / np.sqrt(STD)).reshape(1, 1, 1, 3)),
        helper.make_node("Mul", ["div", "rescale"], ["mul2"]),
        const("offset2", np.float32(0)),
        helper.make_node("Add", ["mul2", "offset2"], ["add2"]),
        helper.make_node("Cast", ["add2"], ["c5"], to=F32),
        helper.make_node("Transpose", ["c5"], ["norm"], perm=[0, 3, 1, 2]),
    ]
    return model(path, nodes, {}, "norm", layout="NHWC")


def keras3_mobilenet(path):
    # The same exporter's Rescaling(1/127.5, offset=-1): float32's 1/127.5, then -1.
    nodes = [
        helper.make_node("Cast", ["x"], ["c0"], to=F32),
        helper.make_node("Cast", ["c0"], ["c1"], to=F32),
        const("scale", np.float32(1 / 127.5)),
        helper.make_node("Mul", ["c1", "scale"], ["mul"]),
        const("offset", np.float32(-1)),
        helper.make_node("Add", ["mul", "offset"], ["add"]),
        helper.make_node("Cast", ["add"], ["c2"], to=F32),
        helper.make_node("Transpose", ["c2"], ["norm"], perm=[0, 3, 1, 2]),
    ]
    return model(path, nodes, {}, "norm", layout="NHWC")


def imagenet(p):
    return (p / 255 - MEAN.reshape(1, 3, 1, 1)) / STD.reshape(1, 3, 1, 1)


@pytest.mark.parametrize(
    ("build", "normalised", "said"),
    [
        (ts_nofold_view, imagenet, "Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) normalise 0-1"),
        (ts_opset11_unsqueeze, imagenet, "Div 0.229,0.224,0.225) normalise 0-1 pixels"),
        (dynamo_nofold_view, imagenet, "Div 0.229,0.224,0.225) normalise 0-1 pixels"),
        (dynamo_nofold_scalars, lambda p: p / 255 * 2 - 1, "(Mul 2, Sub 1) normalise 0-1 pixels"),
        (dynamo_nofold_fp16, lambda p: p / 255, "(Div 255) normalise 0-255 pixels to 0-1"),
        (dynamo_nofold_tensors, imagenet, "(Div 255, Sub 0.485,0.456,0.406, Div 0.229,"),
        (constant_first, lambda p: p / 255 * 2 - 1, "(Mul 2, Add -1) normalise 0-1 pixels"),
        (ts_expand_as, imagenet, "(Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) normalise 0-1"),
        (
            dynamo_nofold_addcmul,
            imagenet,
            "(Mul 4.367,4.464,4.444, Add -2.118,-2.036,-1.804) normalise 0-1 pixels themselves "
            "(mean 0.485,0.456,0.406 std 0.229,0.224,0.225",
        ),
        (
            ts_gather_bgr_caffe,
            lambda p: p[:, ::-1] - (MEAN[::-1] * 255).reshape(1, 3, 1, 1),
            "(Gather channels 2,1,0, Sub 103.5,116.3,123.7) normalise 0-255 pixels "
            "themselves (mean 0.485,0.456,0.406 std 0.003922",
        ),
        (
            dynamo_nofold_index,
            lambda p: p[:, ::-1] - (MEAN[::-1] * 255).reshape(1, 3, 1, 1),
            "(GatherND channels 2,1,0, Sub 103.5,116.3,123.7) normalise 0-255 pixels",
        ),
        (
            ts_flip_normalise,
            lambda p: imagenet(p)[:, ::-1],
            "(Slice channels 2,1,0, Sub 0.406,0.456,0.485, Div 0.225,0.224,0.229) normalise 0-1 "
            "pixels themselves (mean 0.485,0.456,0.406 std 0.229,0.224,0.225",
        ),
        (keras_transpose_first, imagenet, "(Mul 0.003922, Sub 0.485,0.456,0.406, Div 0.229,"),
        (
            keras3_efficientnet,
            lambda p: imagenet(p) / np.sqrt(STD).reshape(1, 3, 1, 1),
            "(Mul 0.003922, Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225, Mul 2.09,2.113,2.108) "
            "normalise 0-255 pixels themselves",
        ),
        (
            keras3_mobilenet,
            lambda p: p / 127.5 - 1,
            "(Mul 0.007843, Add -1) normalise 0-255 pixels to -1..1 themselves (mean 0.5 std 0.5",
        ),
        (
            tf2onnx_efficientnet,
            lambda p: imagenet(p) / np.sqrt(STD).reshape(1, 3, 1, 1),
            "(Mul 0.003922, Add -0.485,-0.456,-0.406, Mul 9.125,9.433,9.37) normalise 0-255 "
            "pixels themselves (mean 0.485,0.456,0.406 std 0.1096,0.106,0.1067",
        ),
        (
            tf2onnx_caffe,
            lambda p: p[:, ::-1] - (MEAN[::-1] * 255).reshape(1, 3, 1, 1),
            "(Slice channels 2,1,0, Sub 103.5,116.3,123.7) normalise 0-255 pixels",
        ),
        (
            keras_efficientnet,
            lambda p: imagenet(p) / np.sqrt(STD).reshape(1, 3, 1, 1),
            "Mul 2.09,2.113,2.108) normalise 0-255 pixels themselves (mean 0.485,0.456,0.406 "
            "std 0.1096,0.106,0.1067",
        ),
    ],
)
def test_exported_normalisations_are_read_and_fed_the_pixels_they_take(
    tmp_path, build, normalised, said
):
    # Before, the unfolded exports (a Reshape, Unsqueeze or Cast between the constant and the
    # Sub/Div), a constant first in Mul/Add and a channel flip ahead of the normalisation were not
    # read: the model got ImageNet's normalisation on top of its own without a word (a
    # channels-last one was refused).
    e = Embedder(build(tmp_path / "m.onnx"))
    f = frames(3)
    close(e.embed(f), out(normalised(pixels(f))))
    assert e.norm_source.startswith("graph: its first nodes (")
    assert said in e.norm_source
    assert "-0," not in e.inspection


def test_a_graph_normalisation_beats_the_ultralytics_default_and_says_so(tmp_path):
    # An Ultralytics export with preprocessing added for deployment (a Div by 255 ahead of it,
    # its metadata kept): datapool fed it the 0-1 pixels of a plain Ultralytics export, which it
    # divided by 255 again, without a word.
    meta = {"author": "Ultralytics", "task": "classify", "imgsz": f"[{S}, {S}]"}
    nodes = [helper.make_node("Div", ["x", "k"], ["norm"])]
    path = model(tmp_path / "yolo.onnx", nodes, {"k": np.float32(255)}, "norm", metadata=meta)
    e = Embedder(path)
    f = frames(3)
    close(e.embed(f), out(pixels(f) / 255))
    assert e.norm_source == (
        "graph: its first nodes (Div 255) normalise 0-255 pixels to 0-1 themselves, so it is fed "
        "0-255 pixels, not normalised again (not the 0-1 pixels of an Ultralytics export)"
    )
    # A plain Ultralytics export (no normalisation inside) still gets 0-1 pixels.
    plain = Embedder(model(tmp_path / "plain.onnx", [], {}, "x", metadata=meta))
    assert plain.norm_source == "Ultralytics export: 0-1 pixels"
    close(plain.embed(f), out(pixels(f) / 255))


def test_a_hugging_face_style_export_keeps_imagenet_or_its_processor(tmp_path):
    # HF exports keep the processor outside: the pixels go through a Cast to float (DINOv2's
    # `pixel_values.to(dtype)`) straight into the model. Nothing inside to read.
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=F32)]
    e = Embedder(model(tmp_path / "hf.onnx", nodes, {}, "c"))
    assert e.norm_source == "ImageNet default"
    folder = tmp_path / "with_processor"
    folder.mkdir()
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    )
    # With preprocessor_config.json beside it, that is what HF runs before the model.
    prefixed = [helper.make_node("Div", ["x", "k"], ["norm"])]
    e = Embedder(model(folder / "m.onnx", prefixed, {"k": np.float32(255)}, "norm"))
    assert e.norm_source == "preprocessor_config.json"
    np.testing.assert_allclose(e.mean, 0.5)


def test_a_mean_and_std_kept_in_an_external_data_file_are_read(tmp_path):
    # Saved with external data below onnx's default threshold (size_threshold=0): the reader
    # skipped the constants and the model got ImageNet's on top of its own without a word.
    from onnx.external_data_helper import set_external_data

    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["sub"]),
        helper.make_node("Div", ["sub", "std"], ["norm"]),
    ]
    inits = {"mean": MEAN.reshape(1, 3, 1, 1), "std": STD.reshape(1, 3, 1, 1)}
    path = model(
        tmp_path / "m.onnx", nodes, {k: v.astype(np.float32) for k, v in inits.items()}, "norm"
    )
    m = onnx.load(str(path))
    blob = b""
    for t in m.graph.initializer:
        if t.name in inits:
            set_external_data(t, "m.onnx.data", offset=len(blob), length=len(t.raw_data))
            blob += t.raw_data
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
    (tmp_path / "m.onnx.data").write_bytes(blob)
    onnx.save(m, str(path))
    e = Embedder(path)
    f = frames(3)
    close(e.embed(f), out(imagenet(pixels(f))))
    assert "(Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) normalise 0-1 pixels" in e.norm_source


def test_a_model_that_resizes_before_it_normalises_is_read(tmp_path):
    # A wrapper that resizes inside (F.interpolate, a Resize node) before `(x - mean) / std`:
    # the walk stopped at the Resize and the model got ImageNet's on top of its own.
    import onnxruntime as ort

    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["big"], mode="linear"),
        helper.make_node("Sub", ["big", "mean"], ["sub"]),
        helper.make_node("Div", ["sub", "std"], ["div"]),
        helper.make_node("AveragePool", ["div"], ["norm"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    inits = {
        "scales": np.asarray([1, 1, 2, 2], np.float32),
        "mean": MEAN.reshape(1, 3, 1, 1).astype(np.float32),
        "std": STD.reshape(1, 3, 1, 1).astype(np.float32),
    }
    path = model(tmp_path / "m.onnx", nodes, inits, "norm")
    e = Embedder(path)
    f = frames(3)
    # what the graph itself computes on 0-1 pixels
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ref,) = session.run(None, {"x": (pixels(f) / 255).astype(np.float32)})
    close(e.embed(f), ref)
    assert "(Sub 0.485,0.456,0.406, Div 0.229,0.224,0.225) normalise 0-1 pixels" in e.norm_source


def mmpretrain_style(path):
    """An export with mmpretrain's data preprocessor folded in: Sub 123.675,116.28,103.53 and
    Div 58.395,57.12,57.375 of 0-255 pixels, ImageNet's normalisation."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["norm"]),
    ]
    inits = {
        "mean": (MEAN * 255).astype(np.float32).reshape(1, 3, 1, 1),
        "std": (STD * 255).astype(np.float32).reshape(1, 3, 1, 1),
    }
    return model(path, nodes, inits, "norm")


def test_mean_and_std_flags_on_a_model_that_normalises_itself_are_warned_of(tmp_path):
    """--mean/--std win over the model's own first nodes (docs/models.md), and ImageNet's flags
    on a model whose first nodes apply ImageNet's normalisation normalised every frame twice
    without a word. The flags still win; the embedder now warns, naming the model's nodes,
    the flags and the fix."""
    path = mmpretrain_style(tmp_path / "mm.onnx")
    f = frames(2)
    assert Embedder(path).notes == []
    e = Embedder(path, mean=tuple(MEAN), std=tuple(STD))
    close(e.embed(f), out(imagenet(imagenet(pixels(f)))))  # the flags win: twice
    (note,) = e.notes
    assert note.startswith("model mm.onnx normalises 0-255 pixels in its first nodes (Sub ")
    assert "--mean/--std (mean 0.485,0.456,0.406 std 0.229,0.224,0.225)" in note
    assert "normalised twice; drop --mean/--std" in note
    # Flags that feed it the plain pixels its nodes take are what it needs: nothing to say.
    plain = Embedder(path, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)
    assert plain.notes == []
    close(plain.embed(f), out(imagenet(pixels(f))))


def test_a_run_with_mean_and_std_on_a_self_normalising_model_says_so(tmp_path):
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    write_media(src / "b.jpg", seed=2)
    path = mmpretrain_style(tmp_path / "mm.onnx")
    norm = ("--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225")
    r = run_cli("run", src, "--pool", tmp_path / "pool", "--n-samples", 1, "--model", path, *norm)
    assert r.returncode == 0, r.stderr
    assert "normalises 0-255 pixels in its first nodes" in r.stderr
    assert "drop --mean/--std" in r.stderr
