"""An onnxruntime session over an image model file, and running a batch through it.

Any image model with one float input in NCHW layout and three channels works. Its input size
comes from the model, or from `input_size` where the model leaves height and width dynamic.

Session options, set on purpose:
- graph optimisation level from the model's `datapool.graph_optimization` metadata (`disable`,
  `basic`, `extended` or `all`), else ORT_ENABLE_ALL (layout transforms that help most CNNs);
  the bundled model asks for `basic`;
- no memory-pattern planning: batch sizes vary (the last batch of a run is short), and without
  it the first batches of a new session run faster (measured: 27 vs 39 ms);
- sequential execution (one model, one batch at a time) with `threads` intra-op threads (0 lets
  onnxruntime use every core) that do not spin when idle, so decoding and numpy work between
  batches get the cores;
- onnxruntime's own logging kept to errors;
- IO binding for a float output: the output is written straight into an array we allocate.

onnxruntime is imported when a session is made, never by importing this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.errors import ModelError
from datapool.ingest.onnxfile import onnx_metadata

if TYPE_CHECKING:
    import numpy.typing as npt

_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def optimization_level(meta: dict[str, str]) -> Any:
    """The level a model names in its metadata, else ORT_ENABLE_ALL."""
    import onnxruntime as ort

    name = meta.get("datapool.graph_optimization", "all").strip().lower()
    if name not in _LEVELS:
        raise ModelError(
            f"model metadata datapool.graph_optimization={name!r} must be one of {sorted(_LEVELS)}"
        )
    return getattr(ort.GraphOptimizationLevel, _LEVELS[name])


def new_session(path: Path, threads: int, level: Any) -> Any:
    """An onnxruntime InferenceSession on the CPU with the options above."""
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
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own unexported exception types
        raise ModelError(f"cannot load model {path}: {e}") from None


class ModelSession:
    """The session of one image model: its input name and size, its metadata as onnxruntime
    reads it, and its output dimension (`dim`, found by running one blank image)."""

    def __init__(self, path: Path, threads: int = 0, input_size: int | None = None) -> None:
        self.path = path
        # The level comes from the model's metadata, read from the file so that one session is
        # made, not two (a session costs 2-4 ms). The session's own reading of the metadata has
        # the last word: where the two differ, the session is made again.
        level = optimization_level(onnx_metadata(path) or {})
        self.session = new_session(path, threads, level)
        wanted = optimization_level(self.session.get_modelmeta().custom_metadata_map)
        if wanted != level:
            self.session = new_session(path, threads, wanted)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_name, self.input_hw = self._image_input(input_size)
        self.output_name = self.session.get_outputs()[0].name

        self._bound_tail: tuple[int, ...] | None = None
        raw = self.raw(np.zeros((1, 3, *self.input_hw), dtype=np.float32))
        self.dim = int(self._flatten(raw, 1).shape[1])
        if self.session.get_outputs()[0].type == "tensor(float)":
            # IO binding from here on: onnxruntime writes the output straight into an array we
            # allocate, instead of allocating its own and copying it out (bench_ingest: within the
            # noise of session.run for the small default model; it saves a copy per batch).
            self._bound_tail = tuple(raw.shape[1:])

    def _image_input(self, input_size: int | None) -> tuple[str, tuple[int, int]]:
        """The model's one float NCHW RGB input: its name and (height, width)."""
        inputs = self.session.get_inputs()
        name = self.path.name
        if len(inputs) != 1:
            raise ModelError(
                f"model {name} has {len(inputs)} inputs; datapool needs an image model "
                "with exactly one NCHW float input"
            )
        inp = inputs[0]
        if inp.type != "tensor(float)" or len(inp.shape) != 4:
            raise ModelError(
                f"model {name} input {inp.name!r} is {inp.type} {inp.shape}; "
                "datapool needs one float32 NCHW input"
            )
        channels, h, w = inp.shape[1], inp.shape[2], inp.shape[3]
        if isinstance(channels, int) and channels != 3:
            raise ModelError(f"model {name} expects {channels} channels; datapool feeds RGB (3)")
        if isinstance(h, int) and isinstance(w, int):
            if input_size is not None and (h, w) != (input_size, input_size):
                raise ModelError(
                    f"model {name} has a fixed input of {h}x{w}; "
                    f"--input-size {input_size} does not fit it"
                )
            return inp.name, (h, w)
        if input_size is not None:
            return inp.name, (input_size, input_size)
        raise ModelError(
            f"model {name} leaves its input height/width dynamic; give the size with --input-size"
        )

    def run_options(self) -> Any:
        """A new onnxruntime RunOptions for `run`. Setting its `terminate` to True, from any
        thread, stops a batch running with it between two of the model's nodes (it fails with a
        ModelError), and fails every later batch given it at once."""
        import onnxruntime as ort

        return ort.RunOptions()

    def run(
        self, nchw: npt.NDArray[np.float32], run_options: Any = None
    ) -> npt.NDArray[np.float32]:
        """The model's output for a packed batch as (N, D) float32 rows."""
        return self._flatten(self.raw(nchw, run_options), nchw.shape[0])

    def raw(
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
