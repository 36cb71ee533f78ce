from __future__ import annotations

import numpy as np
import numpy.typing as npt

__version__: str
SIMD: str
HAS_CUDA: bool

def fps_select(
    candidates: npt.NDArray[np.float32],
    n_samples: int,
    selected: npt.NDArray[np.float32] | None = None,
    min_distance: float = 0.0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
