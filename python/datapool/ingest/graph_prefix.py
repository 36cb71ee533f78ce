"""What a model's first nodes do to its image input: many exports normalise inside the graph
(Keras' Rescaling and Normalization layers through tf2onnx, timm or Hugging Face exports with the
preprocessing folded in, a Div by 255), and such a model must be fed plain pixels, not pixels
that datapool has normalised once already.

The input's path is followed through Identity, Cast, Transpose and Resize nodes (a Resize's
weights sum to 1: it keeps a per-channel x * a + b), a reordering of the channels (a Gather,
GatherND or reversing Slice: a model that makes BGR itself), a crop (a Slice of the height or
width), a Pad of the height or width, a grey channel repeated to three (a Tile, an Expand or a
Concat of the tensor with itself: each of the three keeps its own x * a + b), and Sub, Add,
Mul and Div by constants that are one number or one per channel (in Add and Mul on either
side), as long as the tensor has one consumer (Shape, Size, and a CastLike to its type aside);
those nodes map each channel by x * a + b. A constant may be an initializer (inline or in the
external-data file), a Constant node, worked out from them through Reshape, Unsqueeze, Cast
and the like, or expanded to the image's shape (mean.expand_as(x)): torch exports without
constant folding (TorchScript's do_constant_folding=False, dynamo's optimize=False) view a
(3,) buffer as (1, 3, 1, 1) that way, and cast a Python number to the input's type. Read in 0-1 units, as
a normalisation (p - mean) / std of pixels p = x / k, that is std = 1 / (a k) and mean = -b std.
The map fits 0-255 pixels (k = 255) or 0-1 pixels (k = 1) where that reading gives a plausible
normalisation: each std within [1/300, 1] (1/255, Caffe's "std 1" on 0-255 pixels, to 1) and
each mean 0 or within [0.02, 1]. Sub 123.7,116.3,103.5 and Div 58.4,57.1,57.4 fit 0-255 pixels
(mean 0.485,0.456,0.406 std 0.229,0.224,0.225); Sub 0.485,... and Div 0.229,... fit 0-1 pixels;
Div 255 alone fits 0-255 pixels. Where exactly one reading fits, the model is fed those pixels
with nothing else done to them; where both or neither fit, datapool cannot tell and asks for
--mean/--std. So it does where a Pad, Slice, Gather, Tile, Expand or Concat it cannot read
(pads or indices that are not constants, a Concat with another tensor) comes before a Sub, Add,
Mul or Div by a constant: what those take cannot be told from the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The ops followed, and those skipped (they read the input's shape, not its values).
_PASS = ("Identity", "Cast")
_AFFINE = ("Sub", "Add", "Mul", "Div")
_SHAPE_ONLY = ("Shape", "Size")
_MAX_STEPS = 16
_FLOAT_TYPES = (1, 10, 11, 16)  # ONNX FLOAT, FLOAT16, DOUBLE, BFLOAT16
IMAGENET_BGR = (0.406, 0.456, 0.485)


@dataclass(frozen=True)
class GraphNorm:
    """The normalisation a model's first nodes do: `ops` as the run line shows them
    ("Sub 123.7,116.3,103.5, Div 58.4,57.1,57.4"), the input's scale it fits (255 or 1; 0 where
    datapool cannot tell), the mean and std those nodes apply in 0-1 units of that scale, and
    whether that mean is ImageNet's in B,G,R order (a caffe-style model that takes BGR);
    `blind` names a step before the normalisation that datapool could not follow (scale 0)."""

    ops: str
    scale: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    bgr_mean: bool = False
    blind: str = ""

    def source(self) -> str:
        """How the run line says where the normalisation came from."""
        pixels = "0-255" if self.scale == 255 else "0-1"
        mean, std = _distinct(np.asarray(self.mean)), _distinct(np.asarray(self.std))
        if _near(self.mean, 0) and _near(self.std, 1):  # float32's 1/255 * 255 is not quite 1
            what = " to 0-1 themselves"
        else:
            to = " to -1..1" if _near(self.mean, 0.5) and _near(self.std, 0.5) else ""
            said = ",".join(f"{v:.4g}" for v in mean), ",".join(f"{v:.4g}" for v in std)
            what = f"{to} themselves (mean {said[0]} std {said[1]} in 0-1 units)"
        return (
            f"graph: its first nodes ({self.ops}) normalise {pixels} pixels{what}, so it is "
            f"fed {pixels} pixels, not normalised again"
        )

    def refusal(self, model: str, channels: int) -> str:
        """The one line for a prefix that fits neither reading or both."""
        zeros, ones = ",".join(["0"] * channels), ",".join(["1"] * channels)
        inv = ",".join([f"{1 / 255:.8f}"] * channels)
        if self.blind:
            return (
                f"model {model} seems to normalise its input inside the graph (its first nodes: "
                f"{self.ops}), but datapool cannot follow {self.blind} to tell which pixels it "
                f"takes: give --mean {zeros} --std {inv} to feed 0-255 pixels, or --mean {zeros} "
                f"--std {ones} for 0-1 pixels (or the --mean/--std it was trained with)"
            )
        return (
            f"model {model} normalises its input inside the graph (its first nodes: {self.ops}), "
            "but datapool cannot tell whether it takes 0-255 or 0-1 pixels: give --mean "
            f"{zeros} --std {inv} to feed 0-255 pixels, or --mean {zeros} --std {ones} for 0-1 "
            "pixels (or the --mean/--std it was trained with)"
        )


def graph_norm(
    nodes: list[dict[str, Any]], consts: dict[str, Any], image: str, layout: str, channels: int
) -> GraphNorm | None:
    """The normalisation the first nodes on `image`'s path do (see the module doc); None where
    they do none (no Sub, Add, Mul or Div by a constant before the first other node)."""
    consts = _folded(nodes, consts)
    # A constant broadcast to the image's shape (torch's mean.expand_as(x): an Expand to a Shape
    # of x) is the constant itself to the Sub or Div that takes it, which broadcasts the same.
    spread = {
        node["outputs"][0]: consts[node["inputs"][0]]
        for node in nodes
        if node["op"] == "Expand" and node["outputs"] and node["inputs"][0] in consts
    }
    consumers: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        for name in set(node["inputs"]):
            consumers.setdefault(name, []).append(node)
    channel_axis = 1 if layout == "NCHW" else 3
    perm = [0, 1, 2, 3]  # the input axis each axis of the current tensor holds
    a, b = np.ones(channels), np.zeros(channels)
    src = np.arange(channels)  # the input channel each channel of the current tensor holds
    ops: list[str] = []
    blind = ""  # the step datapool could not follow (see _blind_step); "" while it follows all
    blind_at = 0  # how many of `ops` came before it
    tensor = image
    for _ in range(_MAX_STEPS):
        users = [n for n in consumers.get(tensor, []) if not _reads_no_values(n, tensor)]
        if len(users) != 1 or users[0]["domain"] not in ("", "ai.onnx") or not users[0]["outputs"]:
            break
        node = users[0]
        op = node["op"]
        if op in _PASS:
            if op == "Cast" and node["attrs"].get("to") not in _FLOAT_TYPES:
                break
        elif op == "Resize":
            # F.interpolate inside the model: each output pixel is a weighted sum of input pixels
            # with weights that sum to 1, so x * a + b before it is x * a + b after it
            mode = node["attrs"].get("coordinate_transformation_mode", b"")
            if node["inputs"][0] != tensor or mode == b"tf_crop_and_resize":
                break
        elif op == "Transpose":
            order = node["attrs"].get("perm")
            if not isinstance(order, list) or sorted(order) != [0, 1, 2, 3]:
                break
            perm = [perm[i] for i in order]
        elif op in _MOVES:  # a channel order, a crop, a Pad, a grey channel made three
            if blind:
                pass  # past a step it could not follow: only whether a normalisation follows
            elif node["inputs"][0] != tensor and op != "Concat":
                break
            else:
                step = _moved(node, consts, tensor, perm, perm.index(channel_axis), len(a))
                if step is None:
                    blind, blind_at = _blind_step(node), len(ops)
                else:
                    order, said = step
                    a, b, src = a[order], b[order], src[order]
                    if said and ops[-1:] != [said]:  # a crop of the height, then the width
                        ops.append(said)
        elif op in _AFFINE and len(node["inputs"]) == 2:
            first, second = node["inputs"]
            if first != tensor and op in ("Add", "Mul"):  # c + x, c * x
                first, second = second, first
            if first != tensor or second == tensor:  # c - x, c / x, x * x: no per-channel map
                break
            value = consts.get(second, spread.get(second))
            values = _per_channel(value, perm.index(channel_axis), None if blind else len(a))
            if values is None:
                break
            if blind:
                values = np.resize(values, len(a))  # a channel count datapool cannot follow
            if op == "Sub":
                b = b - values
            elif op == "Add":
                b = b + values
            elif op == "Mul":
                a, b = a * values, b * values
            elif np.all(values != 0):
                a, b = a / values, b / values
            else:
                break
            if not np.all(values == (0 if op in ("Sub", "Add") else 1)):  # Keras' Add 0
                ops.append(f"{op} {','.join(f'{v:.4g}' for v in _distinct(values))}")
        else:
            break
        tensor = node["outputs"][0]
    if blind:
        if len(ops) > blind_at:  # a normalisation after a step it could not follow
            return GraphNorm(", ".join([*ops[:blind_at], blind, *ops[blind_at:]]), 0, blind=blind)
        # nothing after it: what came before is all the first nodes do (a Pad, then a Conv)
    if sorted(src.tolist()) == list(range(channels)):
        a, b = a[np.argsort(src)], b[np.argsort(src)]  # in the input's channel order
    if not any(op.split()[0] in _AFFINE for op in ops) or (np.all(a == 1) and np.all(b == 0)):
        return None
    fits: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    for scale in (255, 1):
        with np.errstate(all="ignore"):
            std_k = 1.0 / (a * scale)
            mean_k = -b * std_k + 0.0  # + 0.0: no -0 on the run line
        if _plausible(mean_k, std_k):
            fits[scale] = (tuple(float(v) for v in mean_k), tuple(float(v) for v in std_k))
    said = ", ".join(ops)
    if len(fits) != 1:
        return GraphNorm(said, 0)
    ((scale, (mean, std)),) = fits.items()
    # a B,G,R mean says BGR only where each of the input's three channels has its own
    bgr = channels == 3 and len(mean) == 3 and bool(np.allclose(mean, IMAGENET_BGR, atol=0.005))
    return GraphNorm(said, scale, mean, std, bgr)


# The steps that move values without changing them: a reordering of the channels (a model that
# makes BGR itself), a crop (a Slice of the height or width), a Pad of the height or width, and a
# grey channel repeated to three (x.repeat(1, 3, 1, 1): a Tile; x.expand(-1, 3, -1, -1): an
# Expand; torch.cat([x, x, x], 1): a Concat).
_MOVES = ("Gather", "GatherND", "Slice", "Pad", "Tile", "Expand", "Concat")


def _moved(
    node: dict[str, Any], consts: dict[str, Any], tensor: str, perm: list[int], axis: int, n: int
) -> tuple[Any, str] | None:
    """What a step of _MOVES does to the `n` channels of the current 4-D tensor (`axis` holds
    them, perm[i] is the input axis that axis i holds): the channel each channel after it takes,
    and how the run line names the step ("" for one that changes nothing it shows); None where
    datapool cannot tell (a value that is not a constant, a step across images)."""
    op, ins = node["op"], node["inputs"]
    batch = perm.index(0)
    same = np.arange(n)
    if op in ("Gather", "GatherND"):  # x[:, [2, 1, 0]]
        order = _channel_order(node, consts, axis, n)
        return None if order is None else (order, _order_said(op, order, n))
    if op == "Slice":  # x.flip(1), x[:, :, 16:-16, 16:-16], dynamo's x[:, ...] before an index
        read = _slice(node, consts)
        if read is None:
            return None
        *parts, known = read
        order, crop = same, False
        for start, end, on, step in zip(*parts):
            on = int(on) % 4
            whole = known and start == 0 and end >= _TO_THE_END and step == 1
            if on == axis:
                if not known or step == 0:
                    return None
                order = order[int(start) : int(end) : int(step)]
            elif on == batch and not whole:
                return None
            elif not whole:
                crop = True
        if not len(order):
            return None
        said = _order_said(op, order, n)
        return order, said or ("Slice crop" if crop else "")
    if op == "Pad":  # F.pad: each value stays where it was; the new rows and columns are padding
        pads = consts.get(ins[1]) if len(ins) > 1 and ins[1] else node["attrs"].get("pads")
        if pads is None or np.size(pads) % 2:
            return None
        pads = np.asarray(pads, np.int64).reshape(2, -1)
        axes = consts.get(ins[3]) if len(ins) > 3 and ins[3] else range(pads.shape[1])
        if axes is None or np.size(axes) != pads.shape[1]:
            return None
        for on, pad in zip(np.asarray(axes, np.int64).reshape(-1), pads.T):
            if int(on) % 4 in (axis, batch) and np.any(pad != 0):
                return None
        return same, "Pad"
    if op in ("Tile", "Expand"):
        shape = consts.get(ins[1]) if len(ins) == 2 else None
        if shape is None or not 1 <= np.size(shape) <= 4:
            return None
        shape = np.concatenate([np.ones(4 - np.size(shape)), np.reshape(shape, -1)]).astype(int)
        k = int(shape[axis])
        if shape[batch] != 1 or k < 1:
            return None  # copies across images
        if op == "Tile":  # the channels k times over, in turn
            return np.tile(same, k), _copies_said(op, n, n * k)
        if k not in (1, n) and n != 1:
            return None  # Expand broadcasts only an axis of 1
        return np.resize(same, max(k, n)), _copies_said(op, n, max(k, n))
    # Concat: one tensor joined to itself, torch.cat([x, x, x], 1)
    on = int(node["attrs"].get("axis", 0)) % 4
    if any(name != tensor for name in ins) or on == batch:
        return None
    if on != axis:
        return same, ""
    return np.tile(same, len(ins)), _copies_said(op, n, n * len(ins))


def _order_said(op: str, order: Any, n: int) -> str:
    """How the run line names a step that takes the channels in `order`."""
    if len(order) == n and np.all(order == np.arange(n)):
        return ""
    return f"{op} channels {','.join(str(int(i)) for i in order)}"


def _copies_said(op: str, n: int, want: int) -> str:
    """How the run line names a step that repeats `n` channels to `want`."""
    if want == n:
        return ""
    return f"{op} to {want} channels" if n == 1 else f"{op} channels {n} to {want}"


def _blind_step(node: dict[str, Any]) -> str:
    """How the refusal names a step of _MOVES that datapool cannot follow."""
    what = {
        "Pad": "a Pad whose pads are not constants or take in the channels",
        "Tile": "a Tile whose repeats are not constants",
        "Expand": "an Expand whose shape is not a constant",
        "Concat": "a Concat of the image with other tensors",
    }.get(node["op"], f"a {node['op']} whose indices are not constants")
    return what


# Ops on constants worked out before the walk: an export without constant folding (torch's
# do_constant_folding=False, its dynamo exporter's optimize=False) reaches a per-channel mean
# through a Reshape or Unsqueeze of a (3,) buffer, a Cast of a Python number, an Identity.
_FOLDED = (
    "Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Neg", "Reciprocal", "Sqrt",
    "Max", "Min", "Shape", "Expand", "CastLike", *_AFFINE,
    # the pads of F.pad and the shape of x.expand(-1, 3, -1, -1), worked out in the graph
    "ConstantOfShape", "Gather", "Slice", "Transpose", "Equal", "Where", "Size",
)  # fmt: skip
_FOLD_MAX = 1024  # values: a mean, a std or a shape, never a weight


def _folded(nodes: list[dict[str, Any]], consts: dict[str, Any]) -> dict[str, Any]:
    """`consts` with the outputs of the nodes above whose inputs are all small constants."""
    consts = dict(consts)
    for node in nodes:
        # CastLike reads only its second input's type: a float, where it is the image's
        names = node["inputs"][:1] if node["op"] == "CastLike" else node["inputs"]
        args = [consts.get(name) for name in names if name]
        if (
            node["op"] not in _FOLDED
            or node["domain"] not in ("", "ai.onnx")
            or len(node["outputs"]) != 1
            or not args
            or any(a is None or np.size(a) > _FOLD_MAX for a in args)
        ):
            continue
        try:
            value = _fold(node["op"], node["attrs"], args)
        except (ValueError, IndexError, TypeError):
            continue
        if value is not None and np.size(value) <= _FOLD_MAX:
            consts[node["outputs"][0]] = value
    return consts


def _fold(op: str, attrs: dict[str, Any], args: list[Any]) -> Any:
    """One node's output from its constant inputs; None for one this does not work out."""
    x = np.asarray(args[0], np.float64)
    if op == "Identity":
        return x
    if op == "CastLike":  # to the image's float type (see _folded)
        return x
    if op == "Cast":
        to = attrs.get("to")
        if to == 10:  # FLOAT16: the value the graph will see
            return x.astype(np.float16).astype(np.float64)
        if to in _FLOAT_TYPES:
            return x
        return np.trunc(x) if to in (2, 3, 4, 5, 6, 7, 12, 13) else None  # integer types
    if op in ("Max", "Min", "Expand", *_AFFINE):
        # broadcasts: worked out only where the result stays small
        shapes = [np.shape(a) for a in args]
        if op == "Expand" and len(args) == 2:
            shapes[1] = tuple(int(d) for d in np.asarray(args[1]).reshape(-1))
        if np.prod(np.broadcast_shapes(*shapes)) > _FOLD_MAX:
            return None
    if op in ("Max", "Min"):  # Keras' Normalization: max(sqrt(var), eps)
        pick = np.maximum if op == "Max" else np.minimum
        for y in args[1:]:
            x = pick(x, np.asarray(y, np.float64))
        return x
    if op == "Shape":
        start, end = attrs.get("start", 0), attrs.get("end", x.ndim)
        return np.asarray(x.shape[start:end], np.float64)
    if op == "Expand" and len(args) == 2:  # x[:, [2, 1, 0]] through dynamo, unfolded
        shape = [int(d) for d in np.asarray(args[1]).reshape(-1)]
        return x * np.ones(shape)
    if op in ("Neg", "Reciprocal", "Sqrt"):
        with np.errstate(all="ignore"):
            return {"Neg": -x, "Reciprocal": 1 / x, "Sqrt": np.sqrt(x)}[op]
    if op in _AFFINE:
        if len(args) != 2:
            return None
        y = np.asarray(args[1], np.float64)
        with np.errstate(all="ignore"):
            return {"Sub": x - y, "Add": x + y, "Mul": x * y, "Div": x / y}[op]
    if op == "ConstantOfShape":
        fill = attrs.get("value")
        shape = [int(d) for d in x.reshape(-1)]
        if np.prod(shape) > _FOLD_MAX:
            return None
        return np.full(shape, float(np.reshape(fill, -1)[0]) if fill is not None else 0.0)
    if op == "Size":
        return np.asarray(x.size, np.float64)
    if op == "Transpose":
        return np.transpose(x, attrs.get("perm"))
    if op == "Gather" and len(args) == 2:
        index = np.asarray(args[1]).astype(np.int64)
        return np.take(x, index, axis=int(attrs.get("axis", 0)))
    if op == "Equal" and len(args) == 2:
        return (x == np.asarray(args[1], np.float64)).astype(np.float64)
    if op == "Where" and len(args) == 3:
        return np.where(x != 0, np.asarray(args[1], np.float64), np.asarray(args[2], np.float64))
    if op == "Slice":
        if not 3 <= len(args) <= 5:
            return None
        starts, ends = (np.asarray(v, np.float64).reshape(-1) for v in args[1:3])
        on_axes = np.asarray(args[3]).reshape(-1) if len(args) > 3 else np.arange(len(starts))
        steps = np.asarray(args[4]).reshape(-1) if len(args) > 4 else np.ones(len(starts))
        cut = [slice(None)] * x.ndim
        for start, end, on, step in zip(starts, ends, on_axes, steps):
            start, end = (int(np.clip(v, -(2**62), 2**62)) for v in (start, end))
            cut[int(on) % x.ndim] = slice(start, end, int(step))
        return x[tuple(cut)]
    if op == "Concat":
        return np.concatenate([np.asarray(a, np.float64) for a in args], int(attrs.get("axis", 0)))
    axes = args[1] if len(args) > 1 else attrs.get("axes")
    if op == "Reshape":
        if len(args) != 2:
            return None
        shape = [int(d) for d in np.asarray(args[1]).reshape(-1)]
        if not attrs.get("allowzero"):  # 0: that dimension of the input (allowzero: a 0)
            shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        return x.reshape(shape)
    if op == "Unsqueeze":
        if axes is None:
            return None
        rank = x.ndim + np.size(axes)
        for axis in sorted(int(a) % rank for a in np.asarray(axes).reshape(-1)):
            x = np.expand_dims(x, axis)
        return x
    if op == "Squeeze":
        if axes is None:
            return np.squeeze(x)
        return np.squeeze(x, tuple(int(a) % x.ndim for a in np.asarray(axes).reshape(-1)))
    return None


def _reads_no_values(node: dict[str, Any], tensor: str) -> bool:
    """Whether a node reads only `tensor`'s shape or type: a Shape or Size of it, a CastLike to
    its type (dynamo's cast of a Python number to the input's dtype)."""
    if node["op"] == "CastLike":
        return node["inputs"][1:] == [tensor] and node["inputs"][0] != tensor
    return node["op"] in _SHAPE_ONLY


def _channel_order(node: dict[str, Any], consts: dict[str, Any], axis: int, channels: int) -> Any:
    """The channels a Gather or GatherND on the channel axis (`axis` of the current 4-D tensor)
    takes, in order (x[:, [2, 1, 0]]; x[:, [0, 0, 0]] of a grey image), each index in range;
    None for any other."""
    ins, attrs = node["inputs"], node["attrs"]
    index = consts.get(ins[1]) if len(ins) == 2 else None
    if node["op"] == "GatherND":
        # dynamo's x[:, [2, 1, 0]]: a Transpose of the channels to the front, a GatherND of
        # indices [[2], [1], [0]], and a Transpose back
        if index is None or np.shape(index)[-1:] != (1,) or attrs.get("batch_dims", 0):
            return None
        index, attrs = np.reshape(index, -1), {"axis": 0}
    if index is None or np.ndim(index) != 1 or int(attrs.get("axis", 0)) % 4 != axis:
        return None
    order = np.asarray(index, np.int64)
    if not len(order) or np.any((order < -channels) | (order >= channels)):
        return None
    return order % channels


_TO_THE_END = 10**9  # a Slice's end past any image's size: torch writes 2**63 - 1, tf2onnx 1e9


def _slice(node: dict[str, Any], consts: dict[str, Any]) -> Any:
    """A Slice's starts, ends, axes and steps as int arrays (inputs from opset 10 on, attributes
    before; axes default to the first ones, steps to 1); None where its axes are not constants.
    Starts and ends that are not constants (a centre crop worked out from the image's Shape) are
    None each: the caller may only need the axes."""
    ins, attrs = node["inputs"], node["attrs"]
    named = len(ins) > 1
    parts = [consts.get(name) if name else None for name in ins[1:5]] + [None] * 4
    read: list[Any] = [
        parts[i] if named else attrs.get(key)
        for i, key in enumerate(("starts", "ends", "axes", "steps"))
    ]
    given = [named and len(ins) > i + 1 and bool(ins[i + 1]) for i in range(4)]
    if read[2] is None and not (named and given[2]):  # no axes: the first len(starts) axes
        size = np.size(read[0]) if read[0] is not None else np.size(read[1])
        read[2] = None if read[0] is None and read[1] is None else np.arange(size)
    if read[3] is None and not (named and given[3]):
        read[3] = np.ones(np.size(read[2]) if read[2] is not None else 0)
    if read[2] is None or read[3] is None:
        return None
    n = np.size(read[2])
    # torch writes "to the end" as the largest int64, which a float64 rounds past it
    return [
        np.clip(np.asarray(v, np.float64), -(2**62), 2**62).astype(np.int64).reshape(-1)
        if v is not None
        else np.full(n, -(2**62), np.int64)  # not a constant: never "whole"
        for v in read
    ] + [read[0] is not None and read[1] is not None]


def _per_channel(value: Any, axis: int, channels: int | None) -> Any:
    """The constant as one value per channel (`axis` of the current 4-D tensor holds the
    channels; None: as many as it has, up to 4); None where it is no constant, or varies along
    another axis."""
    if value is None or not np.all(np.isfinite(value)):
        return None
    value = np.asarray(value, np.float64)
    if value.size == 1:
        return np.full(channels or 1, float(value.reshape(-1)[0]))
    if value.ndim > 4:
        return None
    shape = (1,) * (4 - value.ndim) + value.shape
    if shape[axis] != (channels or min(shape[axis], 4)) or any(
        d != 1 for i, d in enumerate(shape) if i != axis
    ):
        return None
    return value.reshape(-1)


def _near(values: Any, v: float) -> bool:
    """Whether each value is `v` within float32's rounding."""
    return bool(np.allclose(values, v, rtol=1e-4, atol=1e-6))


def _distinct(values: Any) -> list[float]:
    """One value where all channels share it, else each channel's."""
    return [float(values[0])] if np.all(values == values[0]) else [float(v) for v in values]


def _plausible(mean: Any, std: Any) -> bool:
    """Whether a mean and std in 0-1 units look like an image normalisation."""
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        return False
    std_ok = np.all((std >= 1 / 300) & (std <= 1.0 + 1e-6))
    mean_ok = np.all((np.abs(mean) < 1e-6) | ((mean >= 0.02) & (mean <= 1.0 + 1e-6)))
    return bool(std_ok and mean_ok)
