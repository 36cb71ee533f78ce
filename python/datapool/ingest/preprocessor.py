"""A Hugging Face `preprocessor_config.json` beside a model, read in datapool's terms: the input
size its processor produces, the per-channel affine map it applies, and its channel order.

Hugging Face's image processors (ViTImageProcessor, CLIPImageProcessor, BitImageProcessor for
DINOv2, ConvNextImageProcessor, MobileViTImageProcessor ...) read these keys, in this order:
- `do_resize` (default true) with `size`: {"height", "width"} resizes to that size;
  {"shortest_edge": s} keeps the aspect ratio (so the size varies per image) unless a crop
  follows; a bare int is a square (ViT's reading);
- `do_center_crop` (default true where there is a `crop_size`) with `crop_size`: the model's
  input, cut from the middle of the resized image; ConvNeXt's `crop_pct` crops a shortest-edge
  resize to a square of `shortest_edge` too;
- `do_rescale` (default true) multiplies by `rescale_factor` (default 1/255);
- `do_normalize` (the default where `image_mean`/`image_std` are given; a processor without them,
  such as MobileViT's, does not normalise) subtracts `image_mean` and divides by `image_std`;
- `do_flip_channel_order` (MobileViT) feeds BGR.

datapool resizes every frame whole to one input size (no crop, the aspect ratio not kept), scales
to 0-1 and maps each channel by (x - mean) / std. Rescale and normalisation together are one affine
map, so they are honoured exactly: (x * r - m) / s = (x / 255 - m / 255r) / (s / 255r). A size the
processor makes per image (a shortest-edge resize with no crop, no resize at all), or a
normalisation whose values the file does not give, cannot be honoured: that is refused, with the
flag that settles it, where the file would be the source of the setting.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datapool.errors import ModelError

PREPROCESSOR_CONFIG = "preprocessor_config.json"  # what Hugging Face exports write beside a model


@dataclass(frozen=True)
class Preprocessor:
    """What a preprocessor_config.json asks for. `hw` is the input (height, width) and `hw_key`
    the key it came from, or `hw_refusal` the one line that says why its size cannot be honoured.
    `mean` and `std` are in datapool's units (applied to pixels scaled to 0-1, so values from a
    file with a rescale other than 1/255 are converted), `norm` says how they were read, and
    `norm_refusal` why they cannot be (then both are None). `bgr`: the processor flips the
    channels to BGR."""

    path: Path
    hw: tuple[int, int] | None = None
    hw_key: str = ""
    hw_refusal: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    mean_key: str = ""
    std_key: str = ""
    norm: str = ""
    norm_refusal: str = ""
    bgr: bool = False

    @property
    def name(self) -> str:
        return self.path.name


def read_preprocessor_config(model_path: Path) -> Preprocessor | None:
    """The preprocessor_config.json beside `model_path`, read; None where there is none. A file
    that is no JSON object, or whose flags are not booleans, is refused at once: it is no
    processor's configuration."""
    path = model_path.parent / PREPROCESSOR_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} is not readable JSON ({e}); fix or remove it") from None
    return preprocessor_from(data, path)


def preprocessor_from(data: Any, path: Path) -> Preprocessor:
    """The contents of a preprocessor_config.json (`path` names it in messages), read."""
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object; fix or remove it")
    # transformers' fast processors save unset settings as null: the processor's default.
    data = {k: _unset_dropped(v) for k, v in data.items() if v is not None}
    for key in _FLAGS:
        if key in data and not isinstance(data[key], bool):
            raise ModelError(f"{path} {key}={data[key]!r} must be true or false; fix or remove it")
    hw, hw_key, hw_refusal = _size(path.name, data)
    norm = _affine(path.name, data)
    return Preprocessor(
        path, hw, hw_key, hw_refusal, *norm, bgr=bool(data.get("do_flip_channel_order", False))
    )


_FLAGS = ("do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_flip_channel_order")


def _unset_dropped(v: Any) -> Any:
    return {k: x for k, x in v.items() if x is not None} if isinstance(v, dict) else v


def normalisation_metadata(data: dict[str, Any]) -> dict[str, str]:
    """`datapool.mean`/`datapool.std` metadata for a model exported with the processor of
    `data` (a preprocessor_config.json's contents): its rescale and normalisation in datapool's
    units; {} where they cannot be read (datapool then reads the file, and says why)."""
    pre = preprocessor_from(data, Path(PREPROCESSOR_CONFIG))
    if pre.mean is None or pre.std is None:
        return {}
    return {
        "datapool.mean": ",".join(repr(float(v)) for v in pre.mean),
        "datapool.std": ",".join(repr(float(v)) for v in pre.std),
    }


def _size(name: str, data: dict[str, Any]) -> tuple[tuple[int, int] | None, str, str]:
    """(height, width) of the model's input, the key it came from, and why it cannot be read."""
    fix = "give the model's input size with --input-size HxW"
    if not data.get("do_resize", True):
        return (
            None,
            "",
            (
                f"{name} sets do_resize false: the processor feeds each image at its own size, "
                f"datapool resizes every frame to one size; {fix}"
            ),
        )
    crop = data.get("do_center_crop", "crop_size" in data)
    if crop:
        hw = _square_or_hw(data.get("crop_size"))
        if hw is None:
            return (
                None,
                "",
                (
                    f"{name} sets do_center_crop with crop_size={data.get('crop_size')!r}, which "
                    f"datapool does not read (an int or height/width); {fix}"
                ),
            )
        return hw, "crop_size", ""
    size = data.get("size")
    hw = _square_or_hw(size)
    if hw is not None:
        return hw, "size", ""
    # ConvNeXt: a shortest-edge resize to shortest_edge / crop_pct, then a square crop.
    if isinstance(size, dict) and set(size) == {"shortest_edge"} and "crop_pct" in data:
        edge = size["shortest_edge"]
        if _positive_int(edge):
            return (edge, edge), "size shortest_edge with crop_pct", ""
    return (
        None,
        "",
        (
            f"{name} resizes to size={size!r} with no center crop: the processor's input size "
            f"follows each image's aspect ratio, datapool feeds one size; {fix}"
        ),
    )


def _square_or_hw(v: Any) -> tuple[int, int] | None:
    """An int (a square), or {"height", "width"}; None for anything else."""
    if _positive_int(v):
        return (v, v)
    if isinstance(v, dict) and set(v) == {"height", "width"}:
        if _positive_int(v["height"]) and _positive_int(v["width"]):
            return (v["height"], v["width"])
    return None


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _affine(
    name: str, data: dict[str, Any]
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str, str, str, str]:
    """(mean, std, mean key, std key, how they were read, refusal): the processor's rescale and
    normalisation as datapool's per-channel mean and std on 0-1 pixels."""
    rescale = 1 / 255
    notes = []
    if not data.get("do_rescale", True):
        rescale = 1.0
        notes.append("do_rescale false")
    elif "rescale_factor" in data:
        r = data["rescale_factor"]
        if (
            isinstance(r, bool)
            or not isinstance(r, (int, float))
            or not (math.isfinite(r) and r > 0)
        ):
            return _refused(
                f"{name} rescale_factor={r!r} must be a positive number; give --mean/--std"
            )
        if abs(r * 255 - 1) > 1e-9:
            rescale = float(r)
            notes.append(f"rescale_factor {r:.4g}")
    normalise = data.get("do_normalize", "image_mean" in data or "image_std" in data)
    if normalise:
        missing = [k for k in ("image_mean", "image_std") if k not in data]
        if missing:
            return _refused(
                f"{name} sets do_normalize but gives no {missing[0]} (its processor's default, "
                "which datapool does not know); give --mean R,G,B and --std R,G,B"
            )
        try:
            m = _triple(data["image_mean"], f"{name} image_mean")
            s = _triple(data["image_std"], f"{name} image_std")
        except ValueError as e:
            return _refused(f"{e}; fix it, or give --mean R,G,B and --std R,G,B")
        keys = ("image_mean", "image_std")
    else:
        m, s = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        keys = ("do_normalize false", "do_normalize false")
        notes.insert(0, "do_normalize false" if "do_normalize" in data else "no normalisation")
    # (x * r - m) / s on 0-255 pixels is (x/255 - m/(255 r)) / (s/(255 r)) on 0-1 pixels.
    unit = 255 * rescale
    mean = tuple(v / unit for v in m) if unit != 1 else m
    std = tuple(v / unit for v in s) if unit != 1 else s
    how = name + (f": {', '.join(notes)}" if notes else "")
    return mean, std, *keys, how, ""


def _refused(
    why: str,
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str, str, str, str]:
    """_affine's answer when the config cannot be read: no mean or std, and why."""
    return None, None, "", "", "", why


def _triple(v: Any, what: str) -> tuple[float, ...]:
    """Three finite numbers (a single number, or a list of one, as a grayscale model's processor
    writes, is used for every channel, as the processors do)."""
    values = [v] * 3 if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    if isinstance(values, list) and len(values) == 1:
        values = values * 3
    try:
        out = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what}={v!r} is not a list of numbers") from None
    if len(out) != 3 or not all(math.isfinite(x) for x in out):
        raise ValueError(f"{what} must have 3 finite values (R,G,B), got {v!r}")
    return out
