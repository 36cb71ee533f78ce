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
    check_unit_rows: bool = True,
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

    `check_unit_rows`: the rows must be unit length (L2-normalised, as a pool's embeddings are),
    within 1%: a row that is not is a ValueError naming it, because the picks and `min_distance`
    of raw, unnormalised embeddings are those of another metric. False selects by the plain
    Euclidean distance between rows of any length (and skips that pass over the data).

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
    if min_distance is not None and (
        isinstance(min_distance, bool) or not isinstance(min_distance, (int, float, np.number))
    ):
        raise TypeError(f"min_distance must be a number or None, got {min_distance!r}")
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
    cuda = use_cuda(device)
    if check_unit_rows:  # after the checks above, which say more about what is wrong
        _check_unit_rows(candidates, "candidates", candidates.shape[1])
        if selected is not None:
            _check_unit_rows(selected, "selected", candidates.shape[1])
    if cuda:
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


# How far a row's squared length may be from 1 (about 1% of its length): rows normalised in
# float32 or float16 pass; raw model outputs (lengths of 0.1 to 100) do not.
UNIT_TOLERANCE = 0.02
_CHUNK_ROWS = 65536  # rows measured at a time: no copy of a large (memory-mapped) array


def _check_unit_rows(x: npt.NDArray[Any], name: str, dim: int) -> None:
    """A ValueError naming the first row of a float32 2-D `x` whose length is not 1. An array
    the core refuses anyway (its dtype, shape, layout, a dimension other than `dim`, NaN or
    infinity) is left to the core's check, which names what is wrong with it."""
    usable = x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous
    if not usable or x.shape[1] != dim or dim == 0:
        return
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        chunk = x[start : start + _CHUNK_ROWS]
        n2 = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64)
        bad = np.flatnonzero(np.isfinite(n2) & (np.abs(n2 - 1.0) > UNIT_TOLERANCE))
        if len(bad):
            row = start + int(bad[0])
            raise ValueError(
                f"{name} row {row} has length {float(np.sqrt(n2[bad[0]])):.4g}, not 1: selection "
                f"measures distances between unit rows (min_distance in 0..2); normalise them "
                f"first, `{name} / np.linalg.norm({name}, axis=1, keepdims=True)`, or pass "
                "check_unit_rows=False to select by the plain Euclidean distance"
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
