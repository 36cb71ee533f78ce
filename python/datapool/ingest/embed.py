"""Embed frames with an ONNX image model: the Embedder.

It joins the model's onnxruntime session (ingest/session.py: options, input, running a batch),
its preprocessing (ingest/preprocess.py: normalisation from the model's metadata, the packer) and
its fingerprint (the file's SHA-256, input size and output dimension). Every embedding is
L2-normalised, so distances between embeddings run from 0 to 2.

Nothing heavy is imported with this module: onnxruntime when a session is made, the C++ core
when frames are packed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool._testhooks import point
from datapool.errors import ModelError
from datapool.fingerprint import ModelFingerprint
from datapool.ingest.onnxfile import default_model_path, file_sha256
from datapool.ingest.preprocess import Preprocessing
from datapool.ingest.session import ModelSession

if TYPE_CHECKING:
    import numpy.typing as npt


class Embedder:
    """An image model, ready to embed: `pack` frames into a batch buffer, then `embed_packed`
    it (the pipeline runs the two on different threads), or `embed` frames at once."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        input_size: int | None = None,
        threads: int = 0,
    ) -> None:
        self.path = Path(model) if model is not None else default_model_path()
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist")
        self.model = ModelSession(self.path, threads, input_size)
        self.input_hw: tuple[int, int] = self.model.input_hw
        self.preprocessing = Preprocessing(self.model.metadata, threads)
        self.fingerprint = ModelFingerprint(
            name=self.path.name,
            sha256=file_sha256(self.path),
            input_size=self.input_hw,
            output_dim=self.model.dim,
        )

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.input_hw[1], self.input_hw[0]

    @property
    def dim(self) -> int:
        return self.fingerprint.output_dim

    def run_options(self) -> Any:
        """A new onnxruntime RunOptions for `embed_packed`. Setting its `terminate` to True, from
        any thread, stops a batch running with it between two of the model's nodes (it fails
        with a ModelError), and fails every later batch given it at once. A stopping pipeline
        uses it so that no thread is left inside onnxruntime (see ingest/threaded.py)."""
        return self.model.run_options()

    def pack(self, frames: list[npt.NDArray[np.uint8]], out: npt.NDArray[np.float32]) -> None:
        """Write uint8 frames (H, W, 3), any size, into `out[:len(frames)]`, a float32
        (N, 3, H, W) buffer at the model's input size, resized where needed and normalised the
        way the model expects (the C++ packer: multithreaded, GIL released, no allocation)."""
        self.preprocessing.pack(frames, out)

    def embed_packed(
        self, nchw: npt.NDArray[np.float32], run_options: Any = None
    ) -> npt.NDArray[np.float32]:
        """Embed a packed (N, 3, H, W) float32 batch (see `pack`): a new (N, D) array of unit rows.
        `run_options` (see `run_options()`) lets another thread stop the batch.

        A row the model maps to zero stays zero (there is no direction to normalise).
        """
        point("embed")
        return l2_normalize(self.model.run(nchw, run_options))

    def embed(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Embed a batch of RGB frames (N, H, W, 3) uint8 at the model's input size.

        Returns a new (N, D) float32 array of unit-length rows.
        """
        if frames.ndim != 4 or frames.shape[1:] != (*self.input_hw, 3):
            raise ValueError(
                f"frames must be (N, {self.input_hw[0]}, {self.input_hw[1]}, 3), got {frames.shape}"
            )
        nchw = np.empty((frames.shape[0], 3, *self.input_hw), dtype=np.float32)
        self.pack(list(frames), nchw)
        return self.embed_packed(nchw)


def l2_normalize(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return (x / norms).astype(np.float32, copy=False)
