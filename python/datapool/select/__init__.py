"""Selection: which candidates join the pool.

    picks = select(candidates, config, selected=pool.embeddings)
    picks.indices, picks.min_distances, picks.stop_reason

One entry point for every run: it takes the candidates table (datapool.candidates), the budget
and strategy (datapool.config.SelectionConfig) and the pool's embeddings, which count as already
selected. Today's strategy is exact farthest-point selection (select/fps.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datapool.select.fps import Selection, select_diverse

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from datapool.candidates import Candidates
    from datapool.config import SelectionConfig

__all__ = ["Picks", "Selection", "select", "select_diverse"]


@dataclass(frozen=True)
class Picks:
    """The picked candidates in pick order, each one's min-distance when picked, and why the
    selection stopped: "budget", "min_distance", "no candidates", or "no candidate differs from
    the pool" (every remaining candidate duplicates a selected sample)."""

    indices: npt.NDArray[np.int64]
    min_distances: npt.NDArray[np.float32]
    stop_reason: str

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def select(
    candidates: Candidates,
    config: SelectionConfig,
    selected: npt.NDArray[np.float32],
    threads: int = 0,
) -> Picks:
    budget = config.budget(len(candidates))
    sel = select_diverse(
        candidates.embeddings,
        budget,
        selected=selected,
        min_distance=config.min_distance,
        threads=threads,
    )
    if len(candidates) == 0:
        reason = "no candidates"
    elif len(sel) == budget:
        reason = "budget"
    elif config.min_distance:
        reason = "min_distance"
    else:
        reason = "no candidate differs from the pool"
    return Picks(sel.indices, sel.min_distances, reason)
