"""Embedding on the GPU: onnxruntime's CUDA execution provider with device-memory IO binding.

Used only where the `onnxruntime-gpu` package provides CUDAExecutionProvider and the run asks
for the GPU (`--device cuda` or `auto`; docs/gpu.md). With the CPU-only `onnxruntime`, or
`--device cpu`, nothing here runs and embedding is what it always was.

Per batch: the packed float32 NCHW batch (in page-locked host memory where onnxruntime can
allocate it, so the copy to the GPU is one DMA) is copied once into an input tensor kept in
device memory, the model writes its output into a device tensor bound with IO binding, and only
the (N, D) output comes back to the host. The device tensors are kept from batch to batch and
made again only when the batch size changes (the last, short batch of a run).

NOT VERIFIED on a GPU: the session that wrote this had none (docs/gpu.md, "What is verified").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.errors import ConfigError

if TYPE_CHECKING:
    import numpy.typing as npt

CUDA_PROVIDER = "CUDAExecutionProvider"
# TF32 off: by default onnxruntime's CUDA provider rounds the inputs of convolutions and matrix
# products to TF32 (10 of float32's 23 mantissa bits) on Ampere and newer cards, so the same image
# would embed differently on the GPU and the CPU in the 3rd or 4th digit; in float32 a pool's rows
# from either are interchangeable. bench/bench_embed_gpu.py measures what TF32 would gain.
CUDA_OPTIONS = {"device_id": 0, "use_tf32": 0}
INSTALL = (
    "pip install 'datapool[gpu]' && pip install --force-reinstall --no-deps onnxruntime-gpu "
    "(onnxruntime and onnxruntime-gpu share one folder and the last installed wins; docs/gpu.md)"
)


def providers(device: str) -> list[Any]:
    """onnxruntime providers for `device` ("cpu", "cuda", "auto"): the CUDA provider first where
    this onnxruntime has it and the device allows it; "cuda" without it is a ConfigError."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    if CUDA_PROVIDER in ort.get_available_providers():
        _preload_cuda_libraries(ort)
        return [(CUDA_PROVIDER, CUDA_OPTIONS), "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigError(
            "device 'cuda' (--device cuda) cannot embed on the GPU: this onnxruntime has no "
            f"{CUDA_PROVIDER}; {INSTALL}, or use --device cpu"
        )
    return ["CPUExecutionProvider"]


def _preload_cuda_libraries(ort: Any) -> None:
    """Load the CUDA and cuDNN libraries of the nvidia-* wheels (onnxruntime-gpu[cuda,cudnn])
    where this onnxruntime can (1.21+), so its CUDA provider finds them. It prints what it
    cannot find: kept off stdout (`--json` writes there); the session says whether CUDA runs."""
    import contextlib
    import io

    if hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            ort.preload_dlls()


def check_session(session: Any, device: str) -> bool:
    """Whether the session runs on the GPU. onnxruntime falls back to the CPU when the CUDA
    provider cannot load (CUDA or cuDNN libraries missing): for "cuda" that is a ConfigError."""
    on_gpu = CUDA_PROVIDER in session.get_providers()
    if device == "cuda" and not on_gpu:
        raise ConfigError(
            f"device 'cuda' (--device cuda): onnxruntime could not start {CUDA_PROVIDER} (no "
            "GPU, or its CUDA/cuDNN libraries are missing; onnxruntime logs which); use "
            "--device cpu or --device auto"
        )
    return on_gpu


class CudaIO:
    """The device tensors and pinned host batches of one session on CUDA device `device_id`."""

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = device_id
        self._in: Any = None
        self._out: Any = None
        self._host: list[Any] = []  # the OrtValues behind pinned host batches: kept alive here
        self.pinned = True  # False once pinned host memory turned out not to be available

    def new_batch(self, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        """A float32 host buffer of `shape` for packed batches: page-locked where onnxruntime
        can allocate it (its CUDA device's HOST_ACCESSIBLE memory), else ordinary memory."""
        if self.pinned:
            try:
                return self._pinned(shape)
            except Exception:  # an onnxruntime without the API, or without such an allocator
                self.pinned = False
        return np.empty(shape, dtype=np.float32)

    def _pinned(self, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        import onnxruntime as ort

        info = None
        for dev in ort.get_ep_devices():
            if dev.ep_name == CUDA_PROVIDER:
                info = dev.memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE)
                break
        if info is None:
            raise LookupError("no CUDA EP device")
        value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.float32, memory_info=info)
        array = value.numpy()
        if array.ctypes.data != value.data_ptr():  # a copy, not a view: not worth keeping
            raise LookupError("pinned memory is not mapped into numpy")
        self._host.append(value)
        return array

    def run(
        self,
        session: Any,
        input_name: str,
        output_name: str,
        batch: npt.NDArray[np.float32],
        tail: tuple[int, ...],
        run_options: Any = None,
    ) -> npt.NDArray[np.float32]:
        """The model's output for a float32 batch, bound to device memory both ways."""
        import onnxruntime as ort

        shape = [int(s) for s in batch.shape]
        if self._in is None or list(self._in.shape()) != shape:
            self._in = ort.OrtValue.ortvalue_from_shape_and_type(
                shape, np.float32, "cuda", self.device_id
            )
            self._out = ort.OrtValue.ortvalue_from_shape_and_type(
                [shape[0], *tail], np.float32, "cuda", self.device_id
            )
        self._in.update_inplace(np.ascontiguousarray(batch))  # host -> device, once
        binding = session.io_binding()
        binding.bind_ortvalue_input(input_name, self._in)
        binding.bind_ortvalue_output(output_name, self._out)
        session.run_with_iobinding(binding, run_options)
        return np.asarray(self._out.numpy(), dtype=np.float32)  # device -> host: (N, D) only
