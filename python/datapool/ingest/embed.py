"""Embed frames with an ONNX image model through onnxruntime.

Any image model with one float input in NCHW layout works. Its input size comes from the model,
or from `input_size` where the model leaves height and width dynamic. Pixel values are scaled to
[0, 1] and then normalised with the per-channel mean and std stored in the model's metadata
(`datapool.mean`, `datapool.std`, comma-separated); a model without them gets ImageNet's. Every
embedding is L2-normalised, so distances between embeddings run from 0 to 2.

A model may also name its onnxruntime graph optimisation level in `datapool.graph_optimization`
(`disable`, `basic`, `extended` or `all`; default `all`). The bundled model asks for `basic`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool._testhooks import point
from datapool.errors import ModelError
from datapool.fingerprint import ModelFingerprint
from datapool.ingest.onnxfile import default_model_path, file_sha256, onnx_metadata

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


class Embedder:
    """An onnxruntime session over one image model, with its preprocessing.

    Session options, set on purpose:
    - graph optimisation level from the model's `datapool.graph_optimization` metadata, else
      ORT_ENABLE_ALL (layout transforms that help most CNNs);
    - no memory-pattern planning: batch sizes vary (the last batch of a run is short), and
      without it the first batches of a new session run faster (measured: 27 vs 39 ms);
    - sequential execution (one model, one batch at a time) with `threads` intra-op threads
      (0 lets onnxruntime use every core) that do not spin when idle, so decoding and numpy
      work between batches get the cores;
    - onnxruntime's own logging kept to errors;
    - IO binding for a float output: the output is written straight into an array we allocate.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        input_size: int | None = None,
        threads: int = 0,
    ) -> None:
        self.path = Path(model) if model is not None else default_model_path()
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist")
        # The level comes from the model's metadata, read from the file so that one session is
        # made, not two (a session costs 2-4 ms). The session's own reading of the metadata has
        # the last word: where the two differ, the session is made again.
        listed = onnx_metadata(self.path)
        level = _optimization_level(listed or {})
        self.session = self._session(threads, level)
        wanted = _optimization_level(self.session.get_modelmeta().custom_metadata_map)
        if wanted != level:
            self.session = self._session(threads, wanted)

        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"model {self.path.name} has {len(inputs)} inputs; datapool needs an image model "
                "with exactly one NCHW float input"
            )
        inp = inputs[0]
        if inp.type != "tensor(float)" or len(inp.shape) != 4:
            raise ModelError(
                f"model {self.path.name} input {inp.name!r} is {inp.type} {inp.shape}; "
                "datapool needs one float32 NCHW input"
            )
        channels, h, w = inp.shape[1], inp.shape[2], inp.shape[3]
        if isinstance(channels, int) and channels != 3:
            raise ModelError(
                f"model {self.path.name} expects {channels} channels; datapool feeds RGB (3)"
            )
        if isinstance(h, int) and isinstance(w, int):
            if input_size is not None and (h, w) != (input_size, input_size):
                raise ModelError(
                    f"model {self.path.name} has a fixed input of {h}x{w}; "
                    f"--input-size {input_size} does not fit it"
                )
            self.input_hw = (h, w)
        elif input_size is not None:
            self.input_hw = (input_size, input_size)
        else:
            raise ModelError(
                f"model {self.path.name} leaves its input height/width dynamic; "
                "give the size with --input-size"
            )
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name

        meta = self.session.get_modelmeta().custom_metadata_map
        self.mean = _parse_floats(meta.get("datapool.mean"), IMAGENET_MEAN, "datapool.mean")
        self.std = _parse_floats(meta.get("datapool.std"), IMAGENET_STD, "datapool.std")
        if np.any(self.std <= 0):
            raise ModelError(f"model metadata datapool.std must be positive, got {self.std}")
        self.pack_threads = threads
        # Fold scale, mean and std into one multiply-add: x * scale + shift.
        self._scale = (1.0 / (255.0 * self.std)).astype(np.float32)
        self._shift = (-self.mean / self.std).astype(np.float32)

        self._bound_tail: tuple[int, ...] | None = None
        raw = self._raw(np.zeros((1, 3, *self.input_hw), dtype=np.float32))
        probe = self._flatten(raw, 1)
        if self.session.get_outputs()[0].type == "tensor(float)":
            # IO binding from here on: onnxruntime writes the output straight into an array we
            # allocate, instead of allocating its own and copying it out (bench_ingest: within the
            # noise of session.run for the small default model; it saves a copy per batch).
            self._bound_tail = tuple(raw.shape[1:])
        self.fingerprint = ModelFingerprint(
            name=self.path.name,
            sha256=file_sha256(self.path),
            input_size=self.input_hw,
            output_dim=int(probe.shape[1]),
        )

    def _session(self, threads: int, level: Any) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.enable_mem_pattern = False
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: between batches this process decodes
        # frames and runs numpy, and spinning threads would take the cores from them.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            return ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own unexported exception types
            raise ModelError(f"cannot load model {self.path}: {e}") from None

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
        import onnxruntime as ort

        return ort.RunOptions()

    def _run(
        self, nchw: npt.NDArray[np.float32], run_options: Any = None
    ) -> npt.NDArray[np.float32]:
        return self._flatten(self._raw(nchw, run_options), nchw.shape[0])

    def _raw(
        self, nchw: npt.NDArray[np.float32], run_options: Any = None
    ) -> npt.NDArray[np.float32]:
        """The model's output for a batch, as float32, in the model's own shape."""
        try:
            if self._bound_tail is not None:
                out = np.empty((nchw.shape[0], *self._bound_tail), dtype=np.float32)
                binding = self.session.io_binding()
                binding.bind_cpu_input(self.input_name, np.ascontiguousarray(nchw))
                binding.bind_output(
                    self.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data
                )
                self.session.run_with_iobinding(binding, run_options)
            else:
                out = self.session.run([self.output_name], {self.input_name: nchw}, run_options)[0]
        except Exception as e:
            raise ModelError(f"model {self.path.name} failed on a batch: {e}") from None
        return np.asarray(out, dtype=np.float32)

    def _flatten(self, out: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
        """(n, D) rows of a batch's output; a shape without one row per image is an error."""
        if out.ndim < 2 or out.shape[0] != n:
            raise ModelError(
                f"model {self.path.name} returned shape {out.shape} for a batch of {n}; "
                "datapool needs one embedding per image"
            )
        return out.reshape(out.shape[0], -1)

    def pack(self, frames: list[npt.NDArray[np.uint8]], out: npt.NDArray[np.float32]) -> None:
        """Write uint8 frames (H, W, 3), any size, into `out[:len(frames)]`, a float32
        (N, 3, H, W) buffer at the model's input size, resized where needed and normalised the
        way the model expects (the C++ packer: multithreaded, GIL released, no allocation)."""
        from datapool import _core

        _core.pack_frames(frames, out, self._scale, self._shift, self.pack_threads)

    def embed_packed(
        self, nchw: npt.NDArray[np.float32], run_options: Any = None
    ) -> npt.NDArray[np.float32]:
        """Embed a packed (N, 3, H, W) float32 batch (see `pack`): a new (N, D) array of unit rows.
        `run_options` (see `run_options()`) lets another thread stop the batch.

        A row the model maps to zero stays zero (there is no direction to normalise).
        """
        point("embed")
        return l2_normalize(self._run(nchw, run_options))

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


_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _optimization_level(meta: dict[str, str]) -> Any:
    """The level a model names in its metadata, else ORT_ENABLE_ALL."""
    import onnxruntime as ort

    name = meta.get("datapool.graph_optimization", "all").strip().lower()
    if name not in _LEVELS:
        raise ModelError(
            f"model metadata datapool.graph_optimization={name!r} must be one of {sorted(_LEVELS)}"
        )
    return getattr(ort.GraphOptimizationLevel, _LEVELS[name])


def l2_normalize(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return (x / norms).astype(np.float32, copy=False)
