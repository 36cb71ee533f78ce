"""Farthest-point (k-center greedy) selection over unit-normalised embeddings.

Distances are Euclidean. For unit vectors they run from 0 (the same direction) to 2 (opposite);
sqrt(2) ~ 1.414 is orthogonal. `min_distance` is on that scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt


@dataclass(frozen=True)
class Selection:
    """Picked candidate indices in pick order, and each pick's min-distance when picked.

    The first pick of an empty pool has min-distance +inf. `evaluations` counts the
    candidate-to-new-center distances computed (brute force makes about N per pick), so
    1 - evaluations / (N * picks) is the fraction pruning skipped. With the int8 screen
    (`screen == "int8"`) those are bounded from the int8 copy and `rechecks` of them were measured
    again in float32. `algorithm` says what ran and `kernels` which SIMD kernels.
    """

    indices: npt.NDArray[np.int64]
    min_distances: npt.NDArray[np.float32]
    evaluations: int = 0
    center_evaluations: int = 0
    algorithm: str = ""
    kernels: str = ""
    rechecks: int = 0
    screen: str = "off"

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def select_diverse(
    candidates: npt.NDArray[np.float32],
    n_samples: int | None = None,
    *,
    selected: npt.NDArray[np.float32] | None = None,
    min_distance: float | None = None,
    threads: int = 0,
    algorithm: str = "auto",
    kernels: str | None = None,
    screen: bool | None = None,
    device: str = "cpu",
    progress: Callable[[int], object] | None = None,
) -> Selection:
    """Pick the most diverse rows of `candidates` by exact farthest-point selection.

    Every row of `selected` (the existing pool) counts as already picked. Selection stops after
    `n_samples` picks (all candidates when None), or when the farthest remaining candidate is
    closer than `min_distance`, or when it duplicates something already selected (distance 0).
    Ties go to the lowest index. Inputs must be float32, 2-D and C-contiguous; they are not copied
    (`selected` may be a np.memmap).

    `algorithm`: "pruned" skips candidates the triangle inequality proves cannot get closer to the
    new center (exact: the same picks as brute force, but for near-ties); "brute" measures every
    candidate at every pick; "auto" prunes and falls back to brute force when pruning stops paying
    (uniform-like data). `threads`: 0 for every core. `kernels`: None for the widest SIMD this CPU
    has, or "scalar" / "avx2" / "avx512" / "avx512vnni" to force one (for testing). `screen`: the
    pruned algorithm first bounds each distance from an int8 copy of the candidates (n * (d + 20)
    bytes more memory, and up to as much again while a compacted copy of the rows that can still
    get closer is in use) and measures in float32 only the rows the bound cannot rule out: the same
    picks and distances bit for bit, from about a quarter of the bytes (d <= 1040). None uses it
    where it pays (16 MiB of candidates or more, 8 picks or more), True wherever it can run, False
    never (the float32 pruned path alone). Ctrl-C stops it.

    `device`: "cpu"; "cuda", the CUDA kernel (src/cpp/datapool/fps_cuda.hpp: brute force on the
    GPU, `threads`, `algorithm` and `kernels` do not apply; its picks and distances are those of
    kernels="scalar" bit for bit), a ConfigError where this build or machine has no usable GPU;
    "auto", the GPU where there is one, else the CPU. See docs/gpu.md.

    `progress`: None, or a callable given the picks so far about every 50 ms while the CPU
    selects (not on the GPU), from the calling thread; an exception it raises stops the selection.
    """
    from datapool import _core

    if not isinstance(candidates, np.ndarray):
        raise TypeError("candidates must be a numpy array; try `np.asarray(x, dtype=np.float32)`")
    if selected is not None and not isinstance(selected, np.ndarray):
        raise TypeError("selected must be a numpy array or None")
    if candidates.ndim != 2:  # before the budget, which counts its rows
        raise ValueError(f"candidates must be 2-D (rows x dimension), got shape {candidates.shape}")
    n = int(candidates.shape[0])
    if n_samples is None:
        n_samples = n
    elif isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int or None, got {type(n_samples).__name__}")
    elif n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    elif n_samples > n:
        raise ValueError(
            f"n_samples={n_samples} is out of range: there are only {n} candidates "
            f"(use n_samples <= {n}, or None for all)"
        )
    if min_distance is not None and not (np.isfinite(min_distance) and min_distance >= 0):
        raise ValueError(f"min_distance must be a finite number >= 0, got {min_distance}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be an int >= 0 (0 means all cores), got {threads!r}")
    if algorithm not in ("auto", "pruned", "brute"):
        raise ValueError(f"algorithm must be 'auto', 'pruned' or 'brute', got {algorithm!r}")
    if use_cuda(device):
        indices, distances, info = _select_cuda(candidates, int(n_samples), selected, min_distance)
    else:
        indices, distances, info = _core.fps_select(
            candidates,
            int(n_samples),
            selected,
            float(min_distance or 0.0),
            int(threads),
            algorithm,
            kernels,
            None if screen is None else bool(screen),
            progress,
        )
    return Selection(
        indices=indices,
        min_distances=distances,
        evaluations=int(info["evaluations"]),
        center_evaluations=int(info["center_evaluations"]),
        algorithm=str(info["algorithm"]),
        kernels=str(info["kernels"]),
        rechecks=int(info.get("rechecks", 0)),
        screen=str(info.get("screen", "off")),
    )


def use_cuda(device: str) -> bool:
    """Whether selection on `device` ("cpu", "cuda" or "auto") runs on the GPU: "cuda" raises a
    ConfigError that says what is missing where the GPU path cannot run here."""
    from datapool import _core
    from datapool.config import check_device

    check_device(device, "device")
    if device == "cpu":
        return False
    usable = bool(_core.HAS_CUDA) and _core.cuda_device_count() > 0
    if device == "cuda" and not usable:
        from datapool.errors import ConfigError

        why = (
            "this build of datapool has no CUDA support (_core.HAS_CUDA is False; build it "
            "with -DDATAPOOL_CUDA=ON, docs/gpu.md)"
            if not _core.HAS_CUDA
            else f"no CUDA device is usable ({_core.cuda_status()})"
        )
        raise ConfigError(f"device 'cuda' (--device cuda) cannot run: {why}; use --device cpu")
    return usable


def _select_cuda(
    candidates: npt.NDArray[np.float32],
    n_samples: int,
    selected: npt.NDArray[np.float32] | None,
    min_distance: float | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, Any]]:
    from datapool import _core
    from datapool.errors import DatapoolError

    try:
        return _core.fps_select_cuda(candidates, n_samples, selected, float(min_distance or 0.0))
    except _core.CudaError as e:  # out of GPU memory, a lost device: one line, not a traceback
        raise DatapoolError(f"selection on the GPU failed: {e}; use --device cpu") from None
