"""Lightly's computed metadata (`lightly.sharpness`, `lightly.snr`, `lightly.uniformRowRatio`),
measured on a decoded picture at full size, as Lightly measures them.

    measure(rgb, ("sharpness", "uniformRowRatio"))   # -> {"sharpness": 23.1, ...}

A selection config copied from the Lightly Worker (`{"type": "METADATA", "key":
"lightly.sharpness"}`, THRESHOLD 20) must select what it selects there, so each figure follows
Lightly's own formula, found in Lightly's public code (docs/selection.md, "Lightly metadata"):

- sharpness and snr: `lightly/api/utils.py` of Lightly's open-source client (lightly-ai/lightly,
  2020; `get_meta_from_img`, which computed the Platform's sample metadata of the same names):
  sharpness is the standard deviation of Pillow's 3x3 Laplacian filter (-1 around, 8 in the
  middle) of the picture in Pillow's greyscale ("L"); Pillow clips the filter to 0..255 and keeps
  the picture's edge pixels as they are. snr is the mean over the standard deviation of all the
  picture's R, G and B values (0 when they are all equal).
- uniformRowRatio: LightlyStudio's port of the Worker's `uniformRowRatio` (lightly-ai/lightly-studio,
  `row_uniformity.py`, "kept close to the original"): the greyscale picture as floats 0..1,
  resized (bilinear, no antialiasing, as torchvision on a tensor) to 400 rows when taller, the
  3x3 Laplacian over its inside, a pixel uniform where the filter is within 5/255 of 0, a row
  uniform where more than 97% of its pixels are; the share of uniform rows (0 for a picture under
  3 pixels wide or high). A picture of at most 400 rows is filtered in whole levels, exactly; a
  taller one is resized and filtered in float32 as torch does, whose last-bit rounding may put a
  value at 5/255 on the other side of it.

The greyscale is Pillow's "L": (19595 R + 38470 G + 7471 B + 32768) >> 16, ITU-R 601-2 luma
rounded as Pillow rounds it. Everything is numpy on the picture in memory; the caller measures
only the keys a selection uses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

# The names after "lightly." that datapool measures (datapool.strategies.LIGHTLY_COMPUTED).
RESIZE_MAX_HEIGHT = 400  # uniformRowRatio: taller pictures are resized to this many rows
UNIFORM_PIXEL = np.float32(5 / 255)  # |Laplacian| under this: a uniform pixel
UNIFORM_ROW = np.float32(0.97)  # a row with more than this share of uniform pixels is uniform


def greyscale(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Pillow's `convert("L")` of an (h, w, 3) RGB picture: ITU-R 601-2 luma, Pillow's rounding."""
    acc = np.multiply(rgb[..., 0], 19595, dtype=np.uint32)
    acc += np.multiply(rgb[..., 1], 38470, dtype=np.uint32)
    acc += np.multiply(rgb[..., 2], 7471, dtype=np.uint32)
    acc += 0x8000
    acc >>= 16
    return acc.astype(np.uint8)


def _std_of_bytes(values: npt.NDArray[np.uint8]) -> tuple[float, float]:
    """The mean and standard deviation (ddof 0) of uint8 values, from their exact integer sum
    and sum of squares (numpy's `std` gives the same to float64 rounding; a histogram by
    `bincount` cost 2.5 times as much, its input widened to 8 bytes a value)."""
    flat = values.ravel()
    n = flat.size
    if n == 0:
        return 0.0, 0.0
    s1 = int(flat.sum(dtype=np.uint64))
    squares = flat.astype(np.uint16)
    squares *= squares  # at most 255 ** 2: fits
    s2 = int(squares.sum(dtype=np.uint64))
    return s1 / n, math.sqrt(n * s2 - s1 * s1) / n  # Python integers: exact until the root


def sharpness(grey: npt.NDArray[np.uint8]) -> float:
    """Lightly's sharpness of a greyscale picture: the standard deviation of Pillow's 3x3
    Laplacian filter (clipped to 0..255; the edge pixels are the picture's own)."""
    out = grey.copy()
    h, w = grey.shape
    if h >= 3 and w >= 3:
        g = grey.astype(np.int16)
        rows = g[:-2] + g[1:-1] + g[2:]  # 3x3 box sums, separably
        box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
        lap = 9 * g[1:-1, 1:-1] - box  # 8 x centre - its 8 neighbours
        out[1:-1, 1:-1] = np.clip(lap, 0, 255)
    return _std_of_bytes(out)[1]


def snr(rgb: npt.NDArray[np.uint8]) -> float:
    """Lightly's signal-to-noise ratio: mean over standard deviation of all R, G, B values."""
    mean, std = _std_of_bytes(rgb)
    return 0.0 if std == 0 else mean / std


def _resize_bilinear(img: npt.NDArray[np.float32], out_h: int, out_w: int) -> npt.NDArray[Any]:
    """Bilinear resizing as PyTorch's `interpolate(mode="bilinear", align_corners=False,
    antialias=False)` does it, in float32: each output pixel samples the input at
    (i + 0.5) * in/out - 0.5 (clamped at 0) between its two nearest pixels."""

    def taps(n_in: int, n_out: int) -> tuple[Any, Any, Any, Any]:
        scale = np.float32(n_in) / np.float32(n_out)
        src = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
        src = np.maximum(src, np.float32(0))
        i0 = np.minimum(src.astype(np.int64), n_in - 1)
        i1 = i0 + (i0 < n_in - 1)
        w1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
        return i0, i1, np.float32(1) - w1, w1

    y0, y1, wy0, wy1 = taps(img.shape[0], out_h)
    x0, x1, wx0, wx1 = taps(img.shape[1], out_w)
    across = img[:, x0] * wx0 + img[:, x1] * wx1
    return across[y0] * wy0[:, None] + across[y1] * wy1[:, None]


def uniform_row_ratio(grey: npt.NDArray[np.uint8]) -> float:
    """Lightly's uniformRowRatio of a greyscale picture: the share of its rows (after resizing
    to at most 400 rows) where more than 97% of the pixels have a 3x3 Laplacian within 5/255
    of 0. 0.0 for a picture under 3 pixels wide or high."""
    h, w = grey.shape
    if h < 3 or w < 3:
        return 0.0
    shrink = RESIZE_MAX_HEIGHT / h
    if shrink < 1:  # resized: in float32 on 0..1, as the port computes it with torch
        img = grey.astype(np.float32) / np.float32(255)
        img = _resize_bilinear(img, int(h * shrink), max(3, int(w * shrink)))
        c = img[1:-1, 1:-1]
        around = img[:-2, :-2] + img[:-2, 1:-1] + img[:-2, 2:] + img[1:-1, :-2]
        around = around + img[1:-1, 2:] + img[2:, :-2] + img[2:, 1:-1] + img[2:, 2:]
        lap = np.float32(8) * c - around
        uniform = (lap > -UNIFORM_PIXEL) & (lap < UNIFORM_PIXEL)
    else:  # in whole levels: the filter is an integer, compared exactly with 5 (5/255 of 0..1)
        g = grey.astype(np.int16)
        rows = g[:-2] + g[1:-1] + g[2:]
        box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
        level = 9 * g[1:-1, 1:-1] - box  # 8 x centre - its 8 neighbours
        uniform = (level > -5) & (level < 5)
    share = uniform.sum(axis=1).astype(np.float32) / np.float32(uniform.shape[1])
    return float(np.mean(share > UNIFORM_ROW))


def measure(rgb: npt.NDArray[np.uint8], names: tuple[str, ...]) -> dict[str, float]:
    """The Lightly metadata `names` (after "lightly.": sharpness, snr, uniformRowRatio) of an
    (h, w, 3) RGB picture at full size, as shown."""
    out: dict[str, float] = {}
    grey = greyscale(rgb) if {"sharpness", "uniformRowRatio"} & set(names) else None
    for name in names:
        if name == "sharpness" and grey is not None:
            out[name] = sharpness(grey)
        elif name == "snr":
            out[name] = snr(rgb)
        elif name == "uniformRowRatio" and grey is not None:
            out[name] = uniform_row_ratio(grey)
        else:
            raise ValueError(f"no Lightly metadata {name!r} (sharpness, snr, uniformRowRatio)")
    return out
