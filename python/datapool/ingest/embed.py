"""Embed frames with an ONNX image model through onnxruntime.

On load the model is inspected (ingest/inspection.py): its image input (NCHW or NHWC; float32,
float16 or uint8; a fixed or dynamic batch; height and width from the model, else `input_size`,
else a preprocessor_config.json beside it, read by ingest/preprocessor.py), the output to embed
with and its pooling (a 2-D output named like an embedding where there are several; the CLS token
of (N, T, D) tokens; the global average of (N, C, H, W) maps), and the normalisation. Frames come
resized whole to the input size (no crop), are packed in C++ as float32 NCHW, scaled to [0, 1] and
normalised with the per-channel mean and std (the flags, else the model's
`datapool.mean`/`datapool.std` metadata, else preprocessor_config.json's rescale and
normalisation, else the pixels the model's own first nodes normalise (ingest/graph_prefix.py),
else ImageNet's), then converted where the model asks for another layout, dtype, channel order
(BGR: `--channels`, else its metadata) or one channel (grayscale: BT.601 luma); a uint8 model
gets the pixels as they are. Every embedding is L2-normalised,
so distances between embeddings run from 0 to 2.

A model may also name its onnxruntime graph optimisation level in `datapool.graph_optimization`
(`disable`, `basic`, `extended` or `all`; default `all`). The bundled model asks for `basic`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool._fsio import unexpanded_home
from datapool._testhooks import point
from datapool.errors import ModelError
from datapool.fingerprint import ModelFingerprint
from datapool.ingest import cuda_io, inspection, model_hub
from datapool.ingest.cuda_io import CudaIO
from datapool.ingest.graph_prefix import GraphNorm, graph_norm
from datapool.ingest.inspection import IMAGENET_MEAN, IMAGENET_STD
from datapool.ingest.onnxfile import (
    default_model_path,
    external_data_files,
    file_sha256,
    graph_nodes,
    not_onnx,
    onnx_metadata,
)
from datapool.naming import frame_index

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Embedder", "default_model_path", "onnx_metadata"]

BRIEF_WIDTH = 90  # the summary's model line past its 10-character label: 100 columns in all


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
    - IO binding for a float output: the output is written straight into an array we allocate;
    - `device` "cuda" or "auto" with onnxruntime-gpu: the CUDA execution provider, with pinned
      host batches and IO binding to device memory (ingest/cuda_io.py, docs/gpu.md). With the
      CPU-only onnxruntime, "auto" changes nothing.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        input_size: int | tuple[int, int] | None = None,
        threads: int = 0,
        *,
        output_name: str | None = None,
        pooling: str = "auto",
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        inputs: tuple[tuple[str, float], ...] = (),
        device: str = "cpu",
        channels: str | None = None,
    ) -> None:
        self.path = Path(model) if model is not None else default_model_path()
        self.device = device
        self._cuda: CudaIO | None = None
        if not self.path.is_file():
            meant = unexpanded_home(str(model)) if model is not None else None
            if meant is not None:  # quoted, or after `=` (`--model=~/m.onnx`)
                raise ModelError(
                    f"model file {self.path} does not exist; `~` is not expanded there: give "
                    f"the full path, {meant}"
                )
            raise ModelError(
                f"model file {self.path} does not exist; give an .onnx file, or a name from "
                "`datapool model list` fetched with `datapool model get NAME`"
            )
        for rel in external_data_files(self.path):
            if not (self.path.parent / rel).is_file():
                raise ModelError(
                    f"model {self.path.name} keeps its weights in {rel}, which is not beside it "
                    f"in {self.path.parent}: copy it there with the .onnx, under that name"
                )
        # The level comes from the model's metadata, read from the file so that one session is
        # made, not two (a session costs 2-4 ms). The session's own reading of the metadata has
        # the last word: where the two differ, the session is made again.
        listed = onnx_metadata(self.path)
        level = _optimization_level(listed or {})
        self.session = self._session(threads, level)
        meta = self.session.get_modelmeta().custom_metadata_map
        wanted = _optimization_level(meta)
        if wanted != level:
            self.session = self._session(threads, wanted)
        name = self.path.name
        size = None if input_size is None else _hw(input_size)
        pre = inspection.read_preprocessor_config(self.path)
        self.plan = inspection.plan_input(
            name, self.session.get_inputs(), size, pre, dict(inputs), meta
        )
        # Models trained on OpenCV's BGR frames, Keras' caffe-style ones and MobileViT's processor
        # take BGR: the packed RGB channels are reversed before the model.
        self.bgr_from = _bgr_from(name, meta, pre, channels)
        self.bgr = self.bgr_from.startswith("BGR")
        if self.plan.channels == 1 and (self.bgr or channels is not None):
            raise ModelError(
                f"model {name} takes 1-channel (grayscale) pixels: a channel order "
                f"({self.bgr_from.split(': ', 1)[1]}) does not apply; drop it"
            )
        self.input_hw = self.plan.hw
        self.input_name = self.plan.name
        self.pack_threads = threads
        self._set_normalisation(name, mean, std, meta, pre)
        self._bound_tail: tuple[int, ...] | None = None
        inspection.ultralytics_task(name, meta, output_name, pooling)
        self.output = self._choose_output(output_name, pooling)
        self.output_name = self.output.name
        # Batches go to onnxruntime as packed, without conversion, where the model takes float32
        # NCHW of any batch size and its output needs no pooling (the bundled model, most CNNs).
        self._direct = (
            self.plan.layout == "NCHW"
            and self.plan.dtype == np.float32
            and self.plan.fixed_batch is None
            and not self.plan.extras
            and not self.bgr
            and self.plan.channels == 3
            and self.output.pooling == "none"
        )
        self.notes = [*self._flag_notes, *self.output.notes]
        if self.path != default_model_path():  # the bundled model's tests check it
            self._check_probes()
        self.fingerprint = self._fingerprint(listed or {})
        self.inspection = self._describe()
        self.brief = self._brief()

    def _set_normalisation(
        self,
        name: str,
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        meta: dict[str, str],
        pre: inspection.Preprocessor | None,
    ) -> None:
        self._flag_notes: list[str] = []  # what the flags do against the model: warnings
        if self.plan.dtype == np.uint8:
            if mean is not None or std is not None:
                raise ModelError(
                    f"model {name} takes uint8 pixels and normalises them itself; drop --mean/--std"
                )
            # The packer then writes plain 0-255 values, rounded to uint8 per batch.
            self.mean, self.std, self.norm_source = None, None, "none: uint8 pixels"
            self._legacy_norm = False
            self._scale = np.ones(3, np.float32)
            self._shift = np.zeros(3, np.float32)
            return
        channels = self.plan.channels
        graph = None
        if (mean is None or std is None) and pre is None:
            graph = _graph_norm(self.path, self.plan)
        m, s, self.norm_source = inspection.normalisation(
            name, mean, std, meta, pre, channels, graph
        )
        check_feeding(name, graph, self.bgr_from, self.norm_source, self.plan.layout)
        self.mean, self.std = m, s
        if mean is not None or std is not None:
            twice = _normalised_twice(name, m, s, graph or _graph_norm(self.path, self.plan))
            if twice:
                self._flag_notes.append(twice)
        # Fold scale, mean and std into one multiply-add: x * scale + shift. A grayscale model's
        # one mean and std apply to each of R, G and B alike, and their luma (weights that sum to
        # 1) is then the normalised luma.
        self._scale = np.resize(1.0 / (255.0 * s), 3).astype(np.float32)
        self._shift = np.resize(-m / s, 3).astype(np.float32)
        # What datapool used before the flags and preprocessor_config.json: the model's metadata,
        # else ImageNet's (a fingerprint without settings means that).
        try:
            old_m, old_s, _ = inspection.normalisation(name, None, None, meta, None, channels)
            self._legacy_norm = bool(np.array_equal(old_m, m) and np.array_equal(old_s, s))
        except ModelError:
            self._legacy_norm = False

    def _choose_output(self, wanted: str | None, pooling: str) -> inspection.OutputPlan:
        """Probe the model with one batch of zeros for every output's shape, then choose."""
        outs = self.session.get_outputs()
        n = self.plan.fixed_batch or 1
        feed = {self.input_name: self._convert(np.zeros((n, 3, *self.input_hw), np.float32))}
        feed.update(self.plan.extra_feeds(n))
        try:
            values = self.session.run([o.name for o in outs], feed)
        except Exception as e:
            raise ModelError(
                f"model {self.path.name} failed on a probe batch: {_one_line(e)}"
            ) from None
        shapes = [(o.name, tuple(np.shape(v))) for o, v in zip(outs, values)]
        rows = [(nm, sh) for nm, sh in shapes if len(sh) >= 2 and sh[0] == n]
        if not rows or (wanted is not None and wanted not in dict(rows) and wanted in dict(shapes)):
            bad = next((nm, sh) for nm, sh in shapes if wanted in (None, nm))
            raise ModelError(
                f"model {self.path.name} output {bad[0]} has shape {list(bad[1])} for a batch "
                f"of {n}; datapool needs one row per image (--output-name picks another output)"
            )
        shapes = inspection.float_outputs(
            self.path.name, rows, {o.name: o.type for o in outs}, wanted
        )
        plan = inspection.choose_output(self.path.name, shapes, wanted, pooling, self.input_hw)
        if plan.why == "the only output" and len(outs) > 1:
            plan = replace(plan, why="the only float output with a row per image")
        chosen = next(o for o in outs if o.name == plan.name)
        if chosen.type == "tensor(float)":
            # IO binding from here on: onnxruntime writes the output straight into an array we
            # allocate, instead of allocating its own and copying it out (bench_ingest: within
            # the noise of session.run for the small default model; it saves a copy per batch).
            self._bound_tail = tuple(dict(shapes)[plan.name][1:])
        return plan

    def _check_probes(self) -> None:
        """Embed two different images together and the first alone, and refuse a model whose
        embedding does not depend on its image (an export that lost its input, a constant
        output) or depends on the other images of its batch (BatchNorm or Dropout exported in
        training mode): either embeds every frame wrongly without a word."""
        shape = (1, 3, *self.input_hw)
        noise = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        if self.plan.dtype == np.uint8:
            noise = np.abs(noise) * 64  # pixels, as a uint8 model gets them
        flat = np.zeros(shape, np.float32)
        with np.errstate(all="ignore"):
            pair = self._probe_pair(np.concatenate([flat, noise]))
            alone = l2_normalize(self._run(flat))
        if not (np.isfinite(pair).all() and np.isfinite(alone).all()):
            return  # the run names the files that give NaN (check_finite)
        name, out = self.path.name, self.output.name
        if np.abs(pair[0] - pair[1]).max() < 1e-6:
            raise ModelError(
                f"model {name} gives the same embedding (output {out}) for two different "
                f"images: its output does not depend on its input {self.input_name!r}; export it "
                "again with the image reaching the output"
            )
        if np.abs(pair[0] - alone[0]).max() > 1e-2:
            raise ModelError(
                f"model {name}'s embedding (output {out}) of an image changes with the other "
                "images in its batch (BatchNorm or Dropout exported in training mode?); export "
                "it in inference mode (torch: model.eval() before torch.onnx.export)"
            )

    def _probe_pair(self, pair: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Unit rows of a probe batch of two. A model that declares a dynamic batch but fails on
        two images after embedding one (a Reshape to batch 1 inside the graph, what tracing
        `x.view(1, -1)` exports) is fed one frame at a time from here on, with a note."""
        try:
            return l2_normalize(self._run(pair))
        except ModelError:
            if self.plan.fixed_batch is not None:
                raise
        self.plan = replace(self.plan, fixed_batch=1)
        self._direct = False
        rows = l2_normalize(self._run(pair))
        self.notes.append(
            f"model {self.path.name} declares a dynamic batch but embeds only one image at a "
            "time (a Reshape to batch 1 inside it?): it is fed one frame at a time, which is "
            "slower; export it with a dynamic batch"
        )
        return rows

    def _fingerprint(self, meta: dict[str, str]) -> ModelFingerprint:
        data = external_data_files(self.path)
        external = {}
        for rel in data:
            file = self.path.parent / rel
            if not file.is_file():
                raise ModelError(f"model {self.path.name} names external data {rel}, not found")
            external[rel] = file_sha256(file)
        mean = None if self.mean is None else [round(float(v), 6) for v in self.mean]
        std = None if self.std is None else [round(float(v), 6) for v in self.std]
        first = self.session.get_outputs()[0].name
        o = self.output
        # "avg" has always meant the average over the input layout's H and W; an output of the
        # other layout is named, so that pools that averaged it over the wrong axes mismatch.
        pooling = o.pooling if o.layout in ("", self.plan.layout) else f"avg-{o.layout.lower()}"
        # Only a setting away from the default is recorded, so that older pools still match.
        channels = {"channels": "BGR"} if self.bgr else {}
        if self.plan.channels == 1:
            channels = {"channels": "L"}  # BT.601 luma
        legacy = (
            self._direct
            and not external
            and self.output.name == first
            and self.output.pooling == "none"
            and self._legacy_norm
        )
        return ModelFingerprint(
            name=self.path.name,
            sha256=file_sha256(self.path),
            input_size=self.input_hw,
            output_dim=self.output.dim,
            settings={
                "input": f"{self.plan.layout} {np.dtype(self.plan.dtype).name}",
                "extra_inputs": {k: v[2] for k, v in self.plan.extras.items()},
                "output": self.output.name,
                "pooling": pooling,
                "mean": mean,
                "std": std,
                "external_data": external,
                **channels,
            },
            legacy_compatible=bool(legacy),
            origin=model_hub.origin(self.path),
        )

    def _describe(self) -> str:
        """The one line a run prints and records about its model."""
        o = self.output
        if self.mean is None or self.std is None:
            norm = self.norm_source
        else:
            norm = (
                f"mean {','.join(f'{v:.4g}' for v in self.mean)} "
                f"std {','.join(f'{v:.4g}' for v in self.std)} ({self.norm_source})"
            )
        data = self.fingerprint.settings or {}
        ext = (
            f", {len(data['external_data'])} external-data file(s)"
            if data.get("external_data")
            else ""
        )
        h, w = self.input_hw
        size = f"size {h}x{w} {self.plan.hw_from}, each frame resized whole to it (no crop)"
        order, _, said = self.bgr_from.partition(": ")
        bgr = f", fed {order} ({said})" if said and self.plan.channels == 3 else ""
        return (
            f"{self.path.name}: {self.plan.describe()}; {size}; output {o.name} ({o.why}), "
            f"pooling {o.describe_pooling()}, {o.dim}-d; {norm}{bgr}{ext}"
        )

    def _brief(self, width: int = BRIEF_WIDTH) -> str:
        """The model line of a run's summary, within `width` characters: the file, its input
        size, embedding dimension, pooling, the normalisation's source and a channel order
        other than RGB; `inspection` (report.json's `model_inspection`, --json's `model`) has
        the whole of it."""
        h, w = self.input_hw
        norm = self.norm_source.split(":")[0].split(" (")[0]
        order, _, said = self.bgr_from.partition(": ")
        fed = f", fed {order} ({said.split()[0]})" if said and self.plan.channels == 3 else ""
        gray = ", grayscale" if self.plan.channels == 1 else ""
        pooling = f", pooling {self.output.pooling}"
        rest = f": {h}x{w}{gray} in, {self.output.dim}-d out{pooling}, normalisation {norm}{fed}"
        if len(self.path.name) + len(rest) > width and self.output.pooling == "none":
            rest = rest.replace(pooling, "", 1)  # no pooling is the least news on a full line
        name = self.path.name
        room = width - len(rest)
        if len(name) > max(room, 19):  # a long file name keeps its head and its extension
            name = name[: max(8, room - 11)] + "…" + name[-10:]
        line = name + rest
        if len(line) <= width:
            return line
        # Still too long (a long name at its shortest, a long normalisation source): the
        # normalisation's source is cut, never the channel order that ends the line (the
        # inspection has the whole of both).
        keep = len(fed) + 1
        return line[: max(width - keep, 0)] + "…" + fed if fed else line[: width - 1] + "…"

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
        chosen = cuda_io.providers(self.device)
        try:
            session = ort.InferenceSession(str(self.path), sess_options=opts, providers=chosen)
        except Exception as e:  # onnxruntime raises its own unexported exception types
            raise ModelError(_load_failure(self.path, _one_line(e), ort.__version__)) from None
        if self.device != "cpu":
            self._cuda = cuda_io.CudaIO() if cuda_io.check_session(session, self.device) else None
        return session

    def new_batch(self, n: int) -> npt.NDArray[np.float32]:
        """An (n, 3, H, W) float32 buffer for `pack`: in pinned host memory when the session runs
        on the GPU (ingest/cuda_io.py), else an ordinary new array."""
        shape = (n, 3, *self.input_hw)
        try:
            return self._cuda.new_batch(shape) if self._cuda else np.empty(shape, np.float32)
        except MemoryError:
            raise ModelError(self.batch_too_big(n)) from None

    def batch_too_big(self, n: int) -> str:
        """The one line for a batch of n frames whose memory could not be allocated."""
        h, w = self.input_hw
        return (
            f"a batch of {n} frames at model {self.path.name}'s {h}x{w} input takes "
            f"{n * 12 * h * w / 2**30:.1f} GiB, more than could be allocated; give a "
            "smaller --batch-size"
        )

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.input_hw[1], self.input_hw[0]

    @property
    def dim(self) -> int:
        return self.output.dim

    def run_options(self) -> Any:
        """A new onnxruntime RunOptions for `embed_packed`. Setting its `terminate` to True, from
        any thread, stops a batch running with it between two of the model's nodes (it fails
        with a ModelError), and fails every later batch given it at once. A stopping pipeline
        uses it so that no thread is left inside onnxruntime (see pipeline.decode_and_embed)."""
        import onnxruntime as ort

        return ort.RunOptions()

    def _run(
        self, nchw: npt.NDArray[np.float32], run_options: Any = None
    ) -> npt.NDArray[np.float32]:
        n = nchw.shape[0]
        if self._direct:
            return self._flatten(self._raw(nchw, run_options), n)
        step = self.plan.fixed_batch or n
        parts = []
        for i in range(0, n, step):
            chunk = nchw[i : i + step]
            if len(chunk) < step:  # a fixed batch: pad the last chunk, keep its rows
                pad = np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            raw = self._raw(self._convert(chunk), run_options)
            parts.append(inspection.pool(raw, self.output.pooling, self.output.layout))
        rows = np.concatenate(parts)[:n] if parts else np.zeros((0, self.dim), np.float32)
        return self._flatten(rows, n)

    def _convert(self, nchw: npt.NDArray[np.float32]) -> Any:
        """A packed float32 NCHW batch in the layout and dtype the model takes."""
        x: Any = nchw[:, ::-1] if self.bgr else nchw
        if self.plan.channels == 1:
            # ITU-R BT.601 luma, as Pillow's convert("L"): the channels were normalised alike.
            x = np.tensordot(_LUMA, x, axes=([0], [1]))[:, None].astype(np.float32)
        x = x.transpose(0, 2, 3, 1) if self.plan.layout == "NHWC" else x
        if self.plan.dtype == np.uint8:
            x = np.clip(np.rint(x), 0, 255)
        return np.ascontiguousarray(x, dtype=self.plan.dtype)

    def _raw(self, batch: Any, run_options: Any = None) -> npt.NDArray[np.float32]:
        """The chosen output for a batch in the model's layout and dtype, as float32, in the
        model's own shape."""
        n = batch.shape[0]
        try:
            if self._cuda is not None and self._bound_tail is not None and not self.plan.extras:
                out = self._cuda.run(
                    self.session,
                    self.input_name,
                    self.output_name,
                    batch,
                    self._bound_tail,
                    run_options,
                )
            elif self._bound_tail is not None:
                out = np.empty((n, *self._bound_tail), dtype=np.float32)
                binding = self.session.io_binding()
                binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch))
                for name, value in self.plan.extra_feeds(n).items():
                    binding.bind_cpu_input(name, value)
                binding.bind_output(
                    self.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data
                )
                self.session.run_with_iobinding(binding, run_options)
            else:
                feed = {self.input_name: batch, **self.plan.extra_feeds(n)}
                out = self.session.run([self.output_name], feed, run_options)[0]
        except Exception as e:
            raise ModelError(f"model {self.path.name} failed on a batch: {_one_line(e)}") from None
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

        A row the model maps to zero stays zero (there is no direction to normalise):
        `check_finite` refuses it.
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


# --std that feeds 0-255 pixels (with --mean 0,0,0): x/255 / (1/255) is x.
_KERAS_0_255 = ",".join([f"{1 / 255:.8f}"] * 3)

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


def check_feeding(name: str, graph: Any, bgr_from: str, norm_source: str, layout: str) -> None:
    """Refuse a float model whose feeding cannot be known (`run --model` and `datapool predict`
    alike): first nodes that subtract ImageNet's mean in B,G,R order with no channel order
    named, and a channels-last (Keras) model that names no normalisation."""
    if graph is not None and graph.bgr_mean and not bgr_from and norm_source.startswith("graph"):
        raise ModelError(
            f"model {name}'s first nodes ({graph.ops}) subtract ImageNet's mean in B,G,R "
            "order, as caffe-style models trained on BGR frames do: say which order it "
            "takes with --channels BGR (or --channels RGB)"
        )
    if layout == "NHWC" and "ImageNet default" in norm_source:
        # ImageNet's normalisation is torch's habit; Keras models each have their own.
        raise ModelError(
            f"model {name} takes channels-last float pixels, as Keras exports do, and "
            "names no normalisation: Keras models differ, so give it: --mean 0,0,0 --std "
            f"{_KERAS_0_255} for 0-255 pixels (EfficientNet, ConvNeXt, RegNet: preprocessing "
            "inside), --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 for -1..1 (MobileNet, Inception, "
            "Xception), ImageNet's --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 (DenseNet)"
        )


def _bgr_from(
    model: str, meta: dict[str, str], pre: inspection.Preprocessor | None, flag: str | None
) -> str:
    """The channel order where something names it, and what: `--channels` (RGB or BGR), else
    the model's `datapool.channels` metadata, else its preprocessor_config.json's
    do_flip_channel_order ("BGR: metadata datapool.channels", "RGB: --channels"); "" where
    nothing does (RGB)."""
    if flag is not None:
        return f"{flag.upper()}: --channels"
    value = meta.get("datapool.channels")
    if value is not None:
        if value.strip().upper() not in ("RGB", "BGR"):
            raise ModelError(
                f"model {model} metadata datapool.channels={value!r} must be RGB or BGR; fix "
                "it, or override it with --channels RGB or --channels BGR"
            )
        return f"{value.strip().upper()}: metadata datapool.channels"
    return f"BGR: {pre.name} do_flip_channel_order" if pre is not None and pre.bgr else ""


# ITU-R BT.601 luma weights of R, G and B, Pillow's "L" conversion (they sum to 1).
_LUMA = np.asarray([0.299, 0.587, 0.114], np.float32)


def _graph_norm(path: Path, plan: inspection.InputPlan) -> GraphNorm | None:
    """The normalisation the model's first nodes do to its float image input, if any
    (ingest/graph_prefix.py); None for a uint8 input, or a file this reader cannot follow."""
    if plan.dtype == np.uint8:
        return None
    read = graph_nodes(path)
    if read is None:
        return None
    return graph_norm(*read, plan.name, plan.layout, plan.channels)


def _normalised_twice(
    model: str,
    mean: npt.NDArray[np.float32],
    std: npt.NDArray[np.float32],
    graph: GraphNorm | None,
) -> str | None:
    """The warning where --mean/--std normalise the frames for a model whose own first nodes
    normalise them (the flags win, docs/models.md): its pixels are normalised twice. None where
    the flags feed it the plain pixels its first nodes take, or they do no normalisation
    datapool can read."""
    if graph is None or not graph.scale or graph.blind:
        return None
    fed = 1.0 / graph.scale
    if np.allclose(mean, 0.0, atol=1e-3) and np.allclose(std, fed, rtol=1e-3):
        return None
    pixels = "0-255" if graph.scale == 255 else "0-1"
    own = (
        f"mean {','.join(f'{v:.4g}' for v in graph.mean)} "
        f"std {','.join(f'{v:.4g}' for v in graph.std)}"
    )
    flags = f"mean {','.join(f'{v:.4g}' for v in mean)} std {','.join(f'{v:.4g}' for v in std)}"
    zeros = ",".join(["0"] * len(mean))
    plain = ",".join([f"{fed:.6g}"] * len(std))
    return (
        f"model {model} normalises {pixels} pixels in its first nodes ({graph.ops}: {own} in "
        f"0-1 units), and --mean/--std ({flags}) normalise the frames before them: the flags "
        f"win, so each frame is normalised twice; drop --mean/--std to feed it the {pixels} "
        f"pixels it takes (what --mean {zeros} --std {plain} says), and rebuild a pool "
        "embedded with these flags with --process-all"
    )


def _one_line(error: BaseException) -> str:
    """An onnxruntime error's message on one line (some span several: shapes, indices)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _load_failure(path: Path, error: str, version: str) -> str:
    """The one line for a model onnxruntime `version` could not load with `error`: what the file
    is where it is no ONNX model, the opset to export with where it is too new, else the error."""
    why = not_onnx(path)
    if why:
        return f"model {path} {why}"
    if "INVALID_PROTOBUF" in error:
        return (
            f"model {path} is no ONNX model onnxruntime can parse (a truncated download, or "
            "another format?): check the file, or export it again"
        )
    used = re.search(r"Opset (\d+) is under development", error)
    known = re.search(r"support for domain ai\.onnx is till opset (\d+)", error)
    if used and known:
        return (
            f"model {path} uses ONNX opset {used[1]}, newer than onnxruntime {version} knows (up "
            f"to {known[1]}): export it again with opset_version={known[1]} or lower (torch."
            "onnx.export(..., opset_version=17) suits most models), or upgrade onnxruntime"
        )
    op = re.search(r"(\S+):(\S+)\(-?\d+\) is not a registered function/op", error)
    if op:
        return (
            f"model {path} uses operator {op[2]} of domain {op[1]}, which onnxruntime {version} "
            "does not have (a custom operator, whose library datapool does not load): export "
            "the model with standard ONNX operators"
        )
    return f"cannot load model {path}: {error}"


def check_finite(
    model: str, emb: npt.NDArray[np.float32], samples: Sequence[tuple[str, str]]
) -> None:
    """Raise a ModelError naming the first sample whose embedding holds a NaN or an infinity, or
    is zero (a row `embed_packed` could not make unit length: it has no direction, so its
    distance to every other row is 1 and the pool CSV would hold a row that is no unit vector);
    `samples[i]` is the (file key, sample name) of row i."""
    finite = np.asarray(np.isfinite(emb).all(axis=1))
    # Finite rows are unit length or zero; a row of denormals stays short of unit length.
    good = finite & (np.einsum("ij,ij->i", emb, emb) > 0.25)
    if good.all():
        return
    bad = np.flatnonzero(~good)
    key, name = samples[int(bad[0])]
    index = frame_index(name, key)
    where = key if index is None else f"frame {index} of {key}"
    more = f" (and {len(bad) - 1} more of its batch of {len(emb)})" if len(bad) > 1 else ""
    if not finite[int(bad[0])]:
        raise ModelError(
            f"model {model} produced NaN or infinite embeddings for {where}{more}; run the model "
            "on that file in onnxruntime to see where, and check its normalisation (--mean/--std)"
        )
    raise ModelError(
        f"model {model} produced an all-zero embedding for {where}{more}, which has no direction "
        "to normalise to unit length; check that its output is the embedding (--output-name) "
        "and its normalisation (--mean/--std)"
    )


def l2_normalize(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return (x / norms).astype(np.float32, copy=False)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))
