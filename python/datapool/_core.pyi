from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str
SIMD: str
SIMD_AVAILABLE: str
PACK_SIMD: str
HAS_CUDA: bool
HARDWARE_THREADS: int

def fps_select(
    candidates: npt.NDArray[np.float32],
    n_samples: int,
    selected: npt.NDArray[np.float32] | None = None,
    min_distance: float = 0.0,
    threads: int = 0,
    algorithm: str = "auto",
    kernels: str | None = None,
    screen: bool | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, Any]]: ...

class CudaError(RuntimeError): ...

def cuda_device_count() -> int: ...
def cuda_status() -> str: ...
def fps_select_cuda(
    candidates: npt.NDArray[np.float32],
    n_samples: int,
    selected: npt.NDArray[np.float32] | None = None,
    min_distance: float = 0.0,
    device: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, Any]]: ...
def combined_select(
    candidates: npt.NDArray[np.float32],
    n_samples: int,
    selected: npt.NDArray[np.float32] | None,
    weight: npt.NDArray[np.float64],
    mask: npt.NDArray[np.uint8],
    balances: list[
        tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64], float]
    ],
    diversity: float = 1.0,
    min_distance: float = 0.0,
    threads: int = 0,
    kernels: str | None = None,
    screen: bool | None = None,
    progress: Callable[[int], object] | None = None,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.float32],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    str,
    dict[str, Any],
]: ...
def pack_frames(
    frames: Sequence[npt.NDArray[np.uint8]],
    out: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    shift: npt.NDArray[np.float32],
    threads: int = 0,
) -> None: ...

class PoolCsvError(ValueError):
    line: int
    column: str | None

def read_pool_csv(
    path: str | os.PathLike[str],
    dim: int = -1,
    threads: int = 0,
    chunk_bytes: int = 0,
    body_start: int = 0,
    body_end: int = 0,
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def format_pool_csv_rows(
    names: list[str],
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    threads: int = 0,
) -> bytes: ...
def parse_pool_csv(
    data: bytes,
    dim: int = -1,
    threads: int = 0,
    chunk_bytes: int = 0,
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
