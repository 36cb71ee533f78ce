"""What an image model asks for and gives, worked out on load: its image input (layout, dtype,
batch, height and width), any other inputs, the output to embed with and how to pool it, and the
normalisation. Pure decisions over names, shapes and settings; embed.py applies them.

Each refusal is one line that says what to do (a flag to give, or how to export the model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.errors import ModelError
from datapool.ingest.graph_prefix import GraphNorm
from datapool.ingest.preprocessor import (
    PREPROCESSOR_CONFIG,
    Preprocessor,
    read_preprocessor_config,
)

if TYPE_CHECKING:
    import numpy.typing as npt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# onnxruntime type -> numpy dtype, for the image input and for constant extra inputs
DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}
IMAGE_DTYPES = ("tensor(float)", "tensor(float16)", "tensor(uint8)")
# Outputs that can be an embedding. Integers are not one as they are: a quantized output's values
# mean something only with its scale and zero point (uint8 with zero point 128 puts every row
# near one direction), and class indices or a boolean mask are no coordinates at all.
EMBEDDING_DTYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
# Output names that hold a pooled image embedding, best first (Hugging Face CLIP, ViT and DINOv2
# exports, timm's forward_head(pre_logits=True) and the common hand-made names).
_PREFERRED = (r"image_embeds?", r"pooler_output", r".*embed.*", r"features?", r".*pool.*")
# Embedding dimensions datapool warns about: above LARGE_DIM the pool grows with the dimension and
# distances concentrate; below SMALL_DIM L2-normalised rows have few degrees of freedom (2-d rows
# lie on a circle) and selection soon runs out of directions. A 1-d output is refused: every
# normalised row is +1 or -1.
LARGE_DIM = 4096
SMALL_DIM = 8
__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PREPROCESSOR_CONFIG",
    "InputPlan",
    "OutputPlan",
    "Preprocessor",
    "choose_output",
    "float_outputs",
    "normalisation",
    "plan_input",
    "pool",
    "read_preprocessor_config",
    "ultralytics_task",
]


@dataclass(frozen=True)
class InputPlan:
    """How a batch is fed: the image input's name, layout (NCHW/NHWC), numpy dtype, fixed batch
    (None: dynamic), (height, width), constant arrays' specs for the other inputs, and where the
    height and width came from."""

    name: str
    layout: str
    dtype: Any
    fixed_batch: int | None
    hw: tuple[int, int]
    extras: dict[str, tuple[Any, tuple[int | None, ...], float]] = field(default_factory=dict)
    hw_from: str = "fixed in the model"
    channels: int = 3  # 3 (RGB, or BGR) or 1 (grayscale: each frame's BT.601 luma)

    def describe(self) -> str:
        batch = "dynamic batch" if self.fixed_batch is None else f"fixed batch {self.fixed_batch}"
        kind = np.dtype(self.dtype).name
        extra = "".join(f", {k}={v[2]:g}" for k, v in self.extras.items())
        gray = " 1-channel (grayscale: BT.601 luma)" if self.channels == 1 else ""
        return (
            f"input {self.name} {self.layout} {kind}{gray} {self.hw[0]}x{self.hw[1]} {batch}{extra}"
        )

    def extra_feeds(self, n: int) -> dict[str, Any]:
        """Constant arrays for the other inputs, for a batch of n (a dynamic first dimension is
        the batch, any other dynamic dimension 1)."""
        out = {}
        for name, (dtype, shape, value) in self.extras.items():
            dims = [d if isinstance(d, int) else (n if i == 0 else 1) for i, d in enumerate(shape)]
            out[name] = np.full(dims, value, dtype=dtype)
        return out


def plan_input(
    model: str,
    inputs: list[Any],
    size: tuple[int, int] | None,
    preprocessor: Preprocessor | None,
    given: dict[str, float],
    metadata: dict[str, str] | None = None,
) -> InputPlan:
    """The image input of `inputs` (onnxruntime NodeArgs) and how to feed it; `metadata`, the
    model's, gives an Ultralytics export's size."""
    images = [i for i in inputs if len(i.shape) == 4 and _channels_at(i.shape) is not None]
    if not images:
        shapes = "; ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
        four = next(
            (i for i in inputs if len(i.shape) == 4 and 4 in (i.shape[1], i.shape[3])), None
        )
        if four is not None:
            raise ModelError(
                f"model {model} input {four.name!r} {four.shape} takes 4 channels (RGBA, or "
                "RGB with depth?); datapool feeds RGB (3 channels) or grayscale (1): export it "
                "with an (N, 3, H, W) or (N, H, W, 3) image input"
            )
        raise ModelError(
            f"model {model} has no image input (4-D, 3 or 1 channels first or last): {shapes}; "
            "export it with an (N, 3, H, W) or (N, H, W, 3) image input"
        )
    image = images[0]
    unknown = sorted(set(given) - {i.name for i in inputs})
    if unknown:
        raise ModelError(
            f"--input {unknown[0]}: model {model} has no such input; its inputs are "
            f"{', '.join(i.name for i in inputs)}"
        )
    extras = {}
    for other in inputs:
        if other.name == image.name:
            continue
        if other.name not in given or other.type not in DTYPES:
            raise ModelError(
                f"model {model} has a second input {other.name!r} ({other.type} {other.shape}) "
                f"besides the image input {image.name!r}; give it a constant with --input "
                f"{other.name}=VALUE, or export the model with the image input only"
            )
        extras[other.name] = (
            DTYPES[other.type],
            tuple(_dim(d) for d in other.shape),
            given[other.name],
        )
    if image.type not in IMAGE_DTYPES:
        raise ModelError(
            f"model {model} input {image.name!r} is {image.type}; datapool feeds float32, "
            "float16 or uint8 images: export the model with one of those"
        )
    found = _channels_at(image.shape)
    assert found is not None
    layout, channels = found
    h, w = (
        (image.shape[2], image.shape[3]) if layout == "NCHW" else (image.shape[1], image.shape[2])
    )
    batch = image.shape[0] if isinstance(image.shape[0], int) and image.shape[0] > 0 else None
    exported = _ultralytics_imgsz(metadata or {})
    hw, hw_from = _input_hw(model, _dim(h), _dim(w), size, preprocessor, exported)
    return InputPlan(image.name, layout, DTYPES[image.type], batch, hw, extras, hw_from, channels)


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _channels_at(shape: list[Any]) -> tuple[str, int] | None:
    """(layout, channels): NCHW where dimension 1 is 3 (or both it and dimension 3 are dynamic),
    NHWC where dimension 3 is 3; then the same with 1 channel (grayscale); None where neither
    can hold RGB or gray."""
    c1, c3 = _dim(shape[1]), _dim(shape[3])
    for channels in (3, 1):
        if c1 == channels:
            return "NCHW", channels
        if c3 == channels:
            return "NHWC", channels
    if c1 is None and c3 is None:
        return "NCHW", 3
    return None


def _input_hw(
    model: str,
    h: int | None,
    w: int | None,
    size: tuple[int, int] | None,
    pre: Preprocessor | None,
    exported: tuple[int, int] | None = None,
) -> tuple[tuple[int, int], str]:
    """(height, width) of the input and where it came from: the model, else --input-size, else
    the preprocessor_config.json beside it, else the size an Ultralytics export was made at."""
    if h is not None and w is not None:
        if size is not None and size != (h, w):
            raise ModelError(
                f"model {model} has a fixed input of {h}x{w}; --input-size {size[0]}x{size[1]} "
                "does not fit it: drop --input-size"
            )
        return (h, w), "fixed in the model"
    if size is not None:
        return size, "from --input-size"
    if pre is not None:
        if pre.hw is None:
            raise ModelError(
                f"model {model} leaves its input height/width dynamic and {pre.hw_refusal}"
            )
        return pre.hw, f"from {pre.name} {pre.hw_key}"
    if exported is not None:
        return exported, "from the Ultralytics metadata imgsz"
    raise ModelError(
        f"model {model} leaves its input height/width dynamic; give the size with "
        "--input-size H or HxW (for example 224)"
    )


def normalisation(
    model: str,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    metadata: dict[str, str],
    pre: Preprocessor | None,
    channels: int = 3,
    graph: GraphNorm | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], str]:
    """Mean and std in 0-1 units, one per channel the model takes (`channels`: 3, or 1 for a
    grayscale model), and where they came from: the flags, else the model's
    `datapool.mean`/`datapool.std` metadata, else preprocessor_config.json (its rescale and
    normalisation, see ingest/preprocessor.py), else the normalisation its first nodes do
    (`graph`, ingest/graph_prefix.py: the model is fed the pixels those nodes take), else
    ImageNet's (a grayscale model has no default: it is refused)."""
    picks = []  # (values, source, where a message finds them ("" for a flag or default), key)
    for what, flag, default in (("mean", mean, IMAGENET_MEAN), ("std", std, IMAGENET_STD)):
        key = f"datapool.{what}"
        if flag is not None:
            picks.append((list(flag), f"--{what}", "", what))
        elif key in metadata:
            place = f"model {model} metadata"
            read = _floats(metadata[key], f"{place} {key}", f"--{what}")
            picks.append((read, "metadata", place, key))
        elif metadata.get("author") == "Ultralytics" and graph is None:
            # Ultralytics exports take 0-1 RGB pixels (its classify_transforms' DEFAULT_MEAN
            # (0, 0, 0) and DEFAULT_STD (1, 1, 1); detection models are fed the same way), and
            # start with a Conv. One whose first nodes normalise (preprocessing added to the
            # export for deployment) takes what those nodes say, below.
            picks.append(([0.0 if what == "mean" else 1.0] * 3, ULTRALYTICS, "", what))
        elif pre is not None:
            if pre.norm_refusal:
                raise ModelError(pre.norm_refusal)
            values = pre.mean if what == "mean" else pre.std
            assert values is not None
            key = pre.mean_key if what == "mean" else pre.std_key
            picks.append((list(values), pre.norm, pre.name, key))
        elif graph is not None:
            if not graph.scale:
                raise ModelError(graph.refusal(model, channels))
            fed = 0.0 if what == "mean" else 1.0 / graph.scale
            said = graph.source()
            if metadata.get("author") == "Ultralytics" and graph.scale != 1:
                said += " (not the 0-1 pixels of an Ultralytics export)"
            picks.append(([fed] * channels, said, "", what))
        elif channels == 1:
            raise ModelError(
                f"model {model} takes 1-channel (grayscale) float pixels and names no "
                "normalisation (ImageNet's is for RGB): give it, --mean 0 --std 1 for 0-1 "
                "pixels, --mean 0 --std 0.00392157 for 0-255, or --mean 0.5 --std 0.5 for -1..1"
            )
        else:
            picks.append((list(default), "ImageNet default", "", what))
    _unit_range(picks)
    (m, m_src, *_), (s, s_src, *_) = picks
    m, s = _fitted(model, m, m_src, "mean", channels), _fitted(model, s, s_src, "std", channels)
    if any(v <= 0 for v in s):
        raise ModelError(f"model {model}: std must be positive, got {s}")
    source = m_src if m_src == s_src else f"{m_src}/{s_src}"
    return np.asarray(m, np.float32), np.asarray(s, np.float32), source


def _fitted(model: str, values: list[float], source: str, what: str, channels: int) -> list[float]:
    """`values` as one per channel: a single value serves every channel (as Hugging Face's
    processors read a bare number); three equal values serve a grayscale model; three that
    differ cannot, and are refused naming where they came from."""
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if channels == 1 and len(set(values)) == 1:
        return values[:1]
    raise ModelError(
        f"model {model} takes 1-channel (grayscale) pixels, but its {what} "
        f"{','.join(f'{v:g}' for v in values)} ({source}) has one value per R,G,B channel: "
        f"give --{what} with one value"
    )


ULTRALYTICS = "Ultralytics export: 0-1 pixels"


def ultralytics_task(
    model: str, metadata: dict[str, str], wanted: str | None, pooling: str
) -> None:
    """Refuse an Ultralytics detection, segmentation, pose or OBB export where datapool would
    choose its output itself: its outputs are boxes, masks and keypoints per anchor, and the
    first "token" of (N, 84, 8400) is the x-centres of the anchors, not an embedding of the
    image. --output-name or --pooling says the user chose."""
    task = metadata.get("task", "")
    if metadata.get("author") != "Ultralytics" or task in ("", "classify"):
        return
    if wanted is None and pooling == "auto":
        raise ModelError(
            f"model {model} is an Ultralytics {task} model: its outputs are boxes and scores per "
            "anchor, not an embedding of the image; export a classification model (yolo*-cls) "
            "or your backbone's pooled features, or choose the output and its pooling yourself "
            "(--output-name, --pooling); to select on its detections, `datapool predict SOURCE "
            "--model MODEL.onnx --out DIR` writes them for run --predictions DIR"
        )


def _ultralytics_imgsz(metadata: dict[str, str]) -> tuple[int, int] | None:
    """The (height, width) an Ultralytics export was made at (`imgsz`, "[640, 640]"), which its
    dynamic-size export (`dynamic=True`) leaves out of the input's shape; None where there is
    none."""
    if metadata.get("author") != "Ultralytics":
        return None
    try:
        hw = [int(v) for v in metadata.get("imgsz", "").strip("[]() ").split(",")]
    except ValueError:
        return None
    if len(hw) == 1:
        hw *= 2
    return (hw[0], hw[1]) if len(hw) == 2 and all(8 <= v <= 4096 for v in hw) else None


def _floats(v: str, what: str, flag: str) -> list[float]:
    """Three numbers (or one, for every channel) from a metadata value: comma- or
    space-separated, or a JSON list (what `json.dumps(cfg["mean"])` writes); a refusal names
    `flag`, which overrides the value."""
    fix = f"give {flag} R,G,B (it overrides the metadata), or store 3 comma-separated numbers"
    try:
        values = [float(x) for x in v.strip().strip("[]()").replace(",", " ").split()]
    except ValueError:
        raise ModelError(f"{what}={v!r} is not a list of numbers; {fix}") from None
    if len(values) not in (1, 3) or not all(np.isfinite(values)):
        raise ModelError(f"{what} must have 3 finite values (R,G,B), got {v!r}; {fix}")
    return values


def _unit_range(picks: list[tuple[list[float], str, str, str]]) -> None:
    """Refuse values in 0-255 units (the mmpretrain habit) from the model's metadata or its
    preprocessor_config.json, with both flags that fix it in one line. A mean and std read from
    one place are in one unit: where either is above 1, both are divided by 255 (a Caffe-style
    std of 1,1,1 beside a 0-255 mean is 1/255 in 0-1 units)."""
    bad = {src for values, src, place, _ in picks if place and any(x > 1.0 for x in values)}
    if not bad:
        return
    said: list[str] = []
    for values, src, place, key in picks:
        if src in bad:
            text = f"{key}={','.join(f'{x:g}' for x in values)}"
            said.append(text if said and said[0].startswith(place) else f"{place} {text}")
    fixed = " ".join(
        f"--{what} {','.join(f'{x / 255 if src in bad else x:.4g}' for x in values)}"
        for what, (values, src, *_) in zip(("mean", "std"), picks)
    )
    raise ModelError(
        f"{' and '.join(said)} {'look' if len(said) > 1 else 'looks'} like 0-255 units; datapool "
        f"takes 0-1 units: give {fixed} (the values divided by 255), or store those"
    )


@dataclass(frozen=True)
class OutputPlan:
    """The output to embed with, its pooling (none, cls, mean or avg), the row dimension, why it
    was chosen, notes for the user (class logits, a very large or small dimension), and for a
    4-D output averaged over its height and width, its layout (NCHW or NHWC) and why."""

    name: str
    index: int
    pooling: str
    dim: int
    why: str
    notes: tuple[str, ...] = ()
    layout: str = ""
    layout_why: str = ""

    def describe_pooling(self) -> str:
        if self.pooling == "avg":
            return f"avg over H,W of {self.layout} ({self.layout_why})"
        return f"{self.pooling} ({self.layout_why})" if self.layout_why else self.pooling


# The --pooling values each output rank takes; "mean" on a 4-D map is its global average.
_ALLOWED = {2: ("none",), 3: ("cls", "mean", "none"), 4: ("avg", "avg-nchw", "avg-nhwc", "none")}


def choose_output(
    model: str,
    outputs: list[tuple[str, tuple[int, ...]]],
    wanted: str | None,
    pooling: str,
    hw: tuple[int, int],
) -> OutputPlan:
    """Pick the output (name, shape of a probe batch at the input's (height, width) `hw`) and its
    pooling; see the module doc."""
    names = [n for n, _ in outputs]
    listing = ", ".join(f"{n} {list(s)}" for n, s in outputs)
    if wanted is not None:
        if wanted not in names:
            raise ModelError(
                f"--output-name {wanted}: model {model} has no such output; its outputs are "
                + listing
            )
        index, why = names.index(wanted), "--output-name"
    else:
        index, why = _auto_output(outputs)
    name, shape = outputs[index]
    how, layout, layout_why = _pooling(model, outputs, index, why, pooling, hw)
    dim = int(np.prod(shape[1:])) if how == "none" else int(shape[-1])
    if how == "avg":
        dim = int(shape[1] if layout == "NCHW" else shape[3])
    if dim == 1:
        raise ModelError(
            f"model {model} output {name} ({why}) gives 1 value per image: normalised to unit "
            "length every embedding is +1 or -1 and selection cannot tell frames apart; choose "
            f"an output of several values with --output-name (its outputs: {listing})"
        )
    notes = []
    if _logits(name, dim):
        others = [n for n in names if n != name]
        notes.append(
            f"model {model} output {name} ({dim}-d) looks like class logits: samples are then "
            "compared by the classes a classifier sees; a pooled feature output (before the "
            "classifier) usually selects better"
            + (f" (--output-name {' or '.join(others)})" if others else "")
        )
    if dim > LARGE_DIM:
        notes.append(
            f"model {model} output {name} gives {dim}-d embeddings (above {LARGE_DIM}): the pool "
            "grows with it and distances concentrate; choose a pooled output with "
            "--output-name or --pooling"
        )
    if dim < SMALL_DIM:
        notes.append(
            f"model {model} output {name} gives {dim}-d embeddings (below {SMALL_DIM}): "
            "unit-length rows of so few values leave selection few directions to spread over; "
            "a wider output (--output-name) usually selects better"
        )
    return OutputPlan(name, index, how, dim, why, tuple(notes), layout, layout_why)


def float_outputs(
    model: str,
    outputs: list[tuple[str, tuple[int, ...]]],
    types: dict[str, str],
    wanted: str | None,
) -> list[tuple[str, tuple[int, ...]]]:
    """The outputs (name, probe shape) of a floating-point type, that `choose_output` chooses
    from; an integer or boolean output asked for with --output-name, or a model with no float
    output, is refused."""
    kept = [(n, s) for n, s in outputs if types[n] in EMBEDDING_DTYPES]
    names = [n for n, _ in outputs]
    bad = wanted if wanted in names else names[0] if names and not kept else None
    if bad is not None and types[bad] not in EMBEDDING_DTYPES:
        others = ", ".join(n for n, _ in kept)
        fix = f"choose a float output with --output-name {others}" if others else "export one"
        raise ModelError(
            f"model {model} output {bad} is {types[bad]}, not an embedding (a quantized "
            "output without its scale and zero point, class indices or a mask): datapool needs "
            f"a float output; {fix}, or end a quantized graph with a DequantizeLinear"
        )
    return kept


def _auto_output(outputs: list[tuple[str, tuple[int, ...]]]) -> tuple[int, str]:
    if len(outputs) == 1:
        return 0, "the only output"
    two_d = [i for i, (_, s) in enumerate(outputs) if len(s) == 2]
    for pattern in _PREFERRED:
        for i in two_d:
            if re.fullmatch(pattern, outputs[i][0], flags=re.IGNORECASE):
                return i, "a 2-D output named like an embedding"
    features = [i for i in two_d if not _logits(outputs[i][0], outputs[i][1][1])]
    if features and features[0] != two_d[0]:
        return features[0], "the first 2-D output that is not class logits"
    if two_d:
        return two_d[0], "the first 2-D output"
    return 0, "the first output"


# Class counts of ImageNet-1k (with a background class), ImageNet-21k and its winter-21 release.
_CLASS_COUNTS = (1000, 1001, 21841, 21843, 11821)


def _logits(name: str, dim: int) -> bool:
    """Whether an output of `dim` values per image looks like a classifier's (logits or
    probabilities) by its name or its width."""
    low = name.lower()
    return "logit" in low or low.startswith("prob") or dim in _CLASS_COUNTS


def _allowed(rank: int) -> tuple[str, ...]:
    return _ALLOWED.get(rank, ("none",))


def _pooling(
    model: str,
    outputs: list[tuple[str, tuple[int, ...]]],
    index: int,
    why: str,
    pooling: str,
    hw: tuple[int, int],
) -> tuple[str, str, str]:
    """(pooling, layout, why that layout) for output `index`; layout only for a 4-D average."""
    name, shape = outputs[index]
    rank = len(shape)
    grid = _token_grid(shape, hw)  # tokens with no class token among them
    if pooling == "auto":
        if sum(d != 1 for d in shape[1:]) == 1 and (rank > 4 or (rank == 3 and shape[2] == 1)):
            # (N, D, 1), (N, 1, 1, 1, D): one vector with singleton axes, not D tokens of one
            # value each (whose first token would be one value per image)
            return "none", "", f"its {list(shape[1:])} per image is one vector"
        if rank not in _ALLOWED:
            raise ModelError(
                f"model {model} output {name} has shape {list(shape)}; say how to make one row "
                "per image: --pooling none (flatten) or --output-name for another output"
            )
        pooling = {2: "none", 3: "cls", 4: "avg"}[rank]
        if grid:
            return "mean", "", grid  # no class token to take
    elif rank == 4 and pooling == "mean":
        pooling = "avg"
    if pooling not in _allowed(rank):
        fits = [n for i, (n, s) in enumerate(outputs) if i != index and pooling in _allowed(len(s))]
        other = f", or --output-name {' or '.join(fits)} for {pooling} pooling" if fits else ""
        chosen = "--output-name" if why == "--output-name" else f"chosen as {why}"
        raise ModelError(
            f"--pooling {pooling} does not fit model {model} output {name} of shape "
            f"{list(shape)} ({chosen}): use one of {', '.join(_allowed(rank))}{other}"
        )
    if pooling == "cls" and grid:
        raise ModelError(
            f"--pooling cls takes token 0 of model {model} output {name} of shape "
            f"{list(shape)}, but {grid}: token 0 is a patch; use --pooling mean"
        )
    if pooling in ("avg-nchw", "avg-nhwc"):
        return "avg", pooling[4:].upper(), f"--pooling {pooling}"
    if pooling == "avg":
        layout, because = _map_layout(model, name, shape, hw)
        return "avg", layout, because
    return pooling, "", ""


def _token_grid(shape: tuple[int, ...], hw: tuple[int, int]) -> str:
    """Where a 3-D output's T tokens are exactly an h x w grid of patches of the (H, W) input
    (h * W == w * H), with no class or register token before them, why (a Swin's or a
    patch-only ViT's tokens); else "". A class token makes T one more than a grid (197 = 1 + 14
    * 14), registers a few more: never a grid of the input's shape."""
    if len(shape) != 3 or shape[1] < 2:
        return ""
    tokens, (big_h, big_w) = shape[1], hw
    for h in range(1, min(tokens, big_h) + 1):
        w, rest = divmod(tokens, h)
        if not rest and h * big_w == w * big_h and w <= big_w:
            return (
                f"its {tokens} tokens are a {h}x{w} grid of the {big_h}x{big_w} input, "
                "with no class token"
            )
    return ""


def _map_layout(
    model: str, name: str, shape: tuple[int, ...], hw: tuple[int, int]
) -> tuple[str, str]:
    """Whether a 4-D output is (N, C, H, W) or (N, H, W, C), read from its shape: its height and
    width are the input's divided by one stride (within rounding), its channels are not. Where
    both readings fit (and exactly one fits exactly), or neither does, it is refused: averaging
    over the wrong axes would pool over channels without a word."""
    _, a, b, c = shape
    fit = {"NCHW": _spatial_fit((b, c), hw), "NHWC": _spatial_fit((a, b), hw)}
    plausible = [k for k, v in fit.items() if v > 0]
    exact = [k for k, v in fit.items() if v == 2]
    chosen = plausible if len(plausible) == 1 else exact if len(exact) == 1 else []
    if not chosen:
        raise ModelError(
            f"model {model} output {name} has shape {list(shape)} for a {hw[0]}x{hw[1]} input: "
            "datapool cannot tell whether its channels come first (N, C, H, W) or last "
            "(N, H, W, C); say which with --pooling avg-nchw or --pooling avg-nhwc, flatten it "
            "with --pooling none, or choose another output with --output-name"
        )
    layout = chosen[0]
    h, w = (b, c) if layout == "NCHW" else (a, b)
    return layout, f"its {h}x{w} follows the {hw[0]}x{hw[1]} input"


def _spatial_fit(spatial: tuple[int, int], hw: tuple[int, int]) -> int:
    """2 where (h, w) is the input (H, W) shrunk by one stride exactly, 1 where within rounding
    (one pixel, and a tenth for padding) of one stride, 0 where it cannot be a feature map's
    height and width."""
    (h, w), (big_h, big_w) = spatial, hw
    if not (0 < h <= big_h and 0 < w <= big_w):
        return 0
    if h * big_w == w * big_h:
        return 2
    lo, hi = 0.0, float("inf")
    for n, size in ((h, big_h), (w, big_w)):
        slack = 1 + 0.1 * n
        lo = max(lo, size / (n + slack))
        if n - slack > 0:
            hi = min(hi, size / (n - slack))
    return 1 if lo <= hi else 0


def pool(out: npt.NDArray[Any], how: str, layout: str) -> npt.NDArray[np.float32]:
    """(N, D) float32 rows of a batch's raw output, pooled as planned (`layout`: a 4-D output's,
    for avg)."""
    if how == "cls":
        out = out[:, 0, :]
    elif how == "mean":
        out = out.mean(axis=1, dtype=np.float32)
    elif how == "avg":
        out = out.mean(axis=(1, 2) if layout == "NHWC" else (2, 3), dtype=np.float32)
    return np.asarray(out.reshape(out.shape[0], -1), dtype=np.float32)
