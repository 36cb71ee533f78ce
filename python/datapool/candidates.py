"""The candidates of a run: the samples ingest made, as one table that selection reads.

Columns are aligned arrays: `names` (the sample names, unique in the pool), `keys` (the raw file
each came from), `embeddings` ((n, d) float32, unit rows) and any further per-candidate columns
that selection strategies need, keyed in `columns` by datapool.strategies.column_name:
"scores:<task>:<score>" (float64, n), "metadata:<key>" (float64 for numbers, object for
categories; NaN / None where a file has no value), "predictions:<task>:CLASS_DISTRIBUTION" and
"...:CATEGORY_COUNT" ((n, C) float64). `classes` names the C columns of each matrix column.
The pool's rows use the same table for the inputs they were selected on (pool/layout.py
STRATEGY_INPUTS_NAME).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


# The candidates' (and the pool's stored inputs') column of each crop's pixels [x0, y0, x1, y1].
CROP_BOX = "crop:box"


@dataclass
class Candidates:
    names: list[str]
    keys: list[str]
    embeddings: npt.NDArray[np.float32]
    columns: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    thumbnails: dict[str, bytes] = field(
        default_factory=dict
    )  # name -> JPEG, where ingest made one

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])
