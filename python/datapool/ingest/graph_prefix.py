"""What a model's first nodes do to its image input: many exports normalise inside the graph
(Keras' Rescaling and Normalization layers through tf2onnx, timm or Hugging Face exports with the
preprocessing folded in, a Div by 255), and such a model must be fed plain pixels, not pixels
that datapool has normalised once already.

The input's path is followed through Identity, Cast and Transpose nodes and through Sub, Add, Mul
and Div by constants that are one number or one per channel, as long as the tensor has one
consumer (Shape nodes aside); those nodes map each channel by x * a + b. Read in 0-1 units, as
a normalisation (p - mean) / std of pixels p = x / k, that is std = 1 / (a k) and mean = -b std.
The map fits 0-255 pixels (k = 255) or 0-1 pixels (k = 1) where that reading gives a plausible
normalisation: each std within [1/300, 1] (1/255, Caffe's "std 1" on 0-255 pixels, to 1) and
each mean 0 or within [0.02, 1]. Sub 123.7,116.3,103.5 and Div 58.4,57.1,57.4 fit 0-255 pixels
(mean 0.485,0.456,0.406 std 0.229,0.224,0.225); Sub 0.485,... and Div 0.229,... fit 0-1 pixels;
Div 255 alone fits 0-255 pixels. Where exactly one reading fits, the model is fed those pixels
with nothing else done to them; where both or neither fit, datapool cannot tell and asks for
--mean/--std.
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
    whether that mean is ImageNet's in B,G,R order (a caffe-style model that takes BGR)."""

    ops: str
    scale: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    bgr_mean: bool = False

    def source(self) -> str:
        """How the run line says where the normalisation came from."""
        pixels = "0-255" if self.scale == 255 else "0-1"
        inside = ",".join(f"{v:.4g}" for v in self.mean), ",".join(f"{v:.4g}" for v in self.std)
        return (
            f"graph: its first nodes ({self.ops}) normalise {pixels} pixels with mean "
            f"{inside[0]} std {inside[1]}, so it is fed {pixels} pixels"
        )

    def refusal(self, model: str, channels: int) -> str:
        """The one line for a prefix that fits neither reading or both."""
        zeros, ones = ",".join(["0"] * channels), ",".join(["1"] * channels)
        inv = ",".join([f"{1 / 255:.8f}"] * channels)
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
    consumers: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        for name in set(node["inputs"]):
            consumers.setdefault(name, []).append(node)
    channel_axis = 1 if layout == "NCHW" else 3
    perm = [0, 1, 2, 3]  # the input axis each axis of the current tensor holds
    a, b = np.ones(channels), np.zeros(channels)
    ops: list[str] = []
    tensor = image
    for _ in range(_MAX_STEPS):
        users = [n for n in consumers.get(tensor, []) if n["op"] not in _SHAPE_ONLY]
        if len(users) != 1 or users[0]["domain"] not in ("", "ai.onnx") or not users[0]["outputs"]:
            break
        node = users[0]
        op = node["op"]
        if op in _PASS:
            if op == "Cast" and node["attrs"].get("to") not in _FLOAT_TYPES:
                break
        elif op == "Transpose":
            order = node["attrs"].get("perm")
            if not isinstance(order, list) or sorted(order) != [0, 1, 2, 3]:
                break
            perm = [perm[i] for i in order]
        elif op in _AFFINE and len(node["inputs"]) == 2:
            first, second = node["inputs"]
            if first != tensor or second == tensor:  # c - x, c / x, x * x: no per-channel map
                break
            values = _per_channel(consts.get(second), perm.index(channel_axis), channels)
            if values is None:
                break
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
            ops.append(f"{op} {','.join(f'{v:.4g}' for v in _distinct(values))}")
        else:
            break
        tensor = node["outputs"][0]
    if not ops or (np.all(a == 1) and np.all(b == 0)):
        return None
    fits: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    for scale in (255, 1):
        with np.errstate(all="ignore"):
            std_k = 1.0 / (a * scale)
            mean_k = -b * std_k
        if _plausible(mean_k, std_k):
            fits[scale] = (tuple(float(v) for v in mean_k), tuple(float(v) for v in std_k))
    said = ", ".join(ops)
    if len(fits) != 1:
        return GraphNorm(said, 0)
    ((scale, (mean, std)),) = fits.items()
    bgr = len(mean) == 3 and bool(np.allclose(mean, IMAGENET_BGR, atol=0.005))
    return GraphNorm(said, scale, mean, std, bgr)


def _per_channel(value: Any, axis: int, channels: int) -> Any:
    """The constant as one value per channel (`axis` of the current 4-D tensor holds the
    channels); None where it is no constant, or varies along another axis."""
    if value is None or not np.all(np.isfinite(value)):
        return None
    value = np.asarray(value, np.float64)
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]))
    if value.ndim > 4:
        return None
    shape = (1,) * (4 - value.ndim) + value.shape
    if shape[axis] != channels or any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    return value.reshape(-1)


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
