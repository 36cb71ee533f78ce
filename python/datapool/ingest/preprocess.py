"""How frames become a model's input: pixel values scaled to [0, 1], then normalised with the
per-channel mean and std stored in the model's metadata (`datapool.mean`, `datapool.std`,
comma-separated; ImageNet's where absent), resized and packed into a float32 NCHW batch by the
C++ packer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from datapool.errors import ModelError

if TYPE_CHECKING:
    import numpy.typing as npt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _parse_floats(
    text: str | None, default: tuple[float, ...], what: str
) -> npt.NDArray[np.float32]:
    if text is None:
        return np.asarray(default, dtype=np.float32)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ModelError(f"model metadata {what}={text!r} is not a comma-separated list") from None
    if len(values) != 3:
        raise ModelError(f"model metadata {what} must have 3 values, got {len(values)}")
    return np.asarray(values, dtype=np.float32)


class Preprocessing:
    """A model's normalisation, read from its metadata, and the packer that applies it."""

    def __init__(self, metadata: Mapping[str, str], threads: int = 0) -> None:
        self.mean = _parse_floats(metadata.get("datapool.mean"), IMAGENET_MEAN, "datapool.mean")
        self.std = _parse_floats(metadata.get("datapool.std"), IMAGENET_STD, "datapool.std")
        if np.any(self.std <= 0):
            raise ModelError(f"model metadata datapool.std must be positive, got {self.std}")
        self.threads = threads
        # Fold scale, mean and std into one multiply-add: x * scale + shift.
        self.scale = (1.0 / (255.0 * self.std)).astype(np.float32)
        self.shift = (-self.mean / self.std).astype(np.float32)

    def pack(self, frames: list[npt.NDArray[np.uint8]], out: npt.NDArray[np.float32]) -> None:
        """Write uint8 frames (H, W, 3), any size, into `out[:len(frames)]`, a float32
        (N, 3, H, W) buffer at the model's input size, resized where needed and normalised
        (the C++ packer: multithreaded, GIL released, no allocation)."""
        from datapool import _core

        _core.pack_frames(frames, out, self.scale, self.shift, self.threads)
