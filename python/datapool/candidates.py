"""The candidates of a run: the samples ingest made, as one table that selection reads.

Columns are aligned arrays: `names` (the sample names, unique in the pool), `keys` (the raw file
each came from), `embeddings` ((n, d) float32, unit rows) and any further per-candidate columns
that selection strategies need (scores, metadata, predictions), keyed by name in `columns`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass
class Candidates:
    names: list[str]
    keys: list[str]
    embeddings: npt.NDArray[np.float32]
    columns: dict[str, npt.NDArray[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])
