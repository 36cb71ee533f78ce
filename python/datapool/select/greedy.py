"""The greedy combined rule over plain arrays (docs/selection.md, "Combined strategies").

Each step picks, among the candidates the thresholds keep, the one with the largest

    score(i) = s_div * log(mind(i)) + fixed(i) + sum_b s_b * P_b[i] . gain_b(counts_b)

the logarithm of the product of every strategy's objective raised to its strength. `mind` is the
distance to the nearest selected sample (the pool included); `fixed` sums the terms that do not
change during the selection (weights, similarity, typicality); each balance term's gain changes
with its class counts after every pick. Ties go to the lowest index. Implemented with NumPy: the
distance update is exact (differences, not the norms trick), O(N*d) per pick without pruning.
Diversity alone runs in the C++ core instead (select/fps.py), which prunes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

# Smooths the shares in a balance term's gain so empty classes and zero targets stay finite.
BALANCE_EPS = 1e-3
_CHUNK = 1 << 16


@dataclass(frozen=True)
class BalanceTerm:
    """One BALANCE strategy as arrays: each candidate's class distribution (rows sum to 1, or 0
    for a sample with no class), the pool's class counts, the target shares, the strength, and
    the class names (for the report)."""

    P: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    target: npt.NDArray[np.float64]
    strength: float
    classes: tuple[str, ...] = ()


def balance_gain(
    counts: npt.NDArray[np.float64], target: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Per class: log((target + eps) / (share + eps)), share = counts / sum(counts) (0 when
    nothing is counted yet). Positive for classes under their target, negative over it. A class
    with target 0 takes the share it would have after one more pick, (counts + 1) / (sum + 1):
    it is over its target from its first sample, and never ties with a class at its target."""
    total = float(counts.sum())
    share = counts / total if total > 0 else np.zeros_like(counts)
    share = np.where(target > 0, share, (counts + 1.0) / (total + 1.0))
    return np.asarray(np.log((target + BALANCE_EPS) / (share + BALANCE_EPS)), np.float64)


@dataclass
class GreedyResult:
    indices: npt.NDArray[np.int64]
    min_distances: npt.NDArray[np.float32]  # each pick's mind when picked (+inf: none selected)
    balance_terms: npt.NDArray[np.float64]  # (picks, balances): each pick's log balance term
    stop_reason: str
    scores: list[float] = field(default_factory=list)  # each pick's score (log of the product)
    # greedy_core's counters: evaluations, rechecks, screen ("int8" or "off"), kernels
    info: dict[str, Any] = field(default_factory=dict)


def greedy(
    X: npt.NDArray[np.float32],
    budget: int,
    selected: npt.NDArray[np.float32],
    *,
    fixed: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    diversity: float | None,
    min_distance: float = 0.0,
    balances: tuple[BalanceTerm, ...] = (),
    progress: Callable[[int], object] | None = None,
) -> GreedyResult:
    """Greedy selection of at most `budget` rows of X by the combined score (module docstring).
    `diversity`: its strength, or None without a DIVERSITY strategy (no distances are then
    computed). Candidates with mind < min_distance, or with a score of -inf or NaN (an objective
    of 0 under a positive strength), are never picked. `progress`: given the picks so far after
    each pick."""
    n = int(X.shape[0])
    mind = np.full(n, np.inf)
    if diversity is not None and selected.shape[0] > 0:
        mind = _nearest(X, selected)
    counts = [b.counts.astype(np.float64).copy() for b in balances]
    remaining = mask.copy()
    picks: list[int] = []
    dists: list[float] = []
    bterms: list[list[float]] = []
    scores: list[float] = []
    reason = "no candidates" if n == 0 else "budget"
    while len(picks) < budget:
        elig = remaining.copy()
        if diversity is not None and min_distance > 0:
            elig &= mind >= min_distance
        if not elig.any():
            reason = _why_none(remaining)
            break
        score = fixed.copy()
        if diversity is not None and np.isfinite(mind).all():
            with np.errstate(divide="ignore", invalid="ignore"):
                score += diversity * np.log(mind)
        terms = [b.strength * (b.P @ balance_gain(c, b.target)) for b, c in zip(balances, counts)]
        for t in terms:
            score += t
        score[~elig | np.isnan(score)] = -np.inf
        i = int(np.argmax(score))
        if score[i] == -np.inf:
            dup = diversity is not None and diversity > 0 and not (mind[elig] > 0).any()
            reason = "no candidate differs from the pool" if dup else "no positive objective"
            break
        picks.append(i)
        if progress is not None:
            progress(len(picks))
        dists.append(float(mind[i]))
        bterms.append([float(t[i]) for t in terms])
        scores.append(float(score[i]))
        remaining[i] = False
        for b, c in zip(balances, counts):
            c += b.P[i]
        if diversity is not None:
            _update(X, i, mind)
    return GreedyResult(
        np.array(picks, np.int64),
        np.array(dists, np.float32),
        np.array(bterms, np.float64).reshape(len(picks), len(balances)),
        reason,
        scores,
    )


def greedy_core(
    X: npt.NDArray[np.float32],
    budget: int,
    selected: npt.NDArray[np.float32],
    *,
    fixed: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    diversity: float | None,
    min_distance: float = 0.0,
    balances: tuple[BalanceTerm, ...] = (),
    threads: int = 0,
    kernels: str | None = None,
    screen: bool | None = None,
    progress: Callable[[int], object] | None = None,
) -> GreedyResult:
    """`greedy` in the C++ core (src/cpp/datapool/strategies.cpp): the same rule, with the
    triangle-inequality pruning of farthest-point selection and its int8 screen (`screen`:
    None where it pays, as select_diverse; `progress` as select_diverse's). Needs a diversity
    strength > 0."""
    from datapool import _core

    if diversity is None or not diversity > 0:
        raise ValueError("greedy_core needs a diversity strength > 0; use greedy")
    idx, dist, scores, terms, reason, info = _core.combined_select(
        X,
        budget,
        selected if selected.shape[0] else None,
        np.ascontiguousarray(fixed, np.float64),
        np.ascontiguousarray(mask, np.uint8),
        [
            (
                np.ascontiguousarray(b.P, np.float32),
                np.ascontiguousarray(b.counts, np.float64),
                np.ascontiguousarray(b.target, np.float64),
                float(b.strength),
            )
            for b in balances
        ],
        float(diversity),
        float(min_distance),
        threads,
        kernels,
        screen,
        progress,
    )
    if reason == "no more candidates pass the thresholds":
        # The core leaves out rows that fail a threshold and rows whose objective is 0 alike;
        # where rows that pass every threshold are left, an objective of 0 stopped it (as greedy)
        left = mask.astype(bool)
        left[idx] = False
        if left.any():
            reason = "no positive objective"
    return GreedyResult(idx, dist, terms, reason, scores.tolist(), info)


def _why_none(remaining: npt.NDArray[np.bool_]) -> str:
    """Why no candidate is eligible: some remain but are too close, or the thresholds left no
    more (the budget is checked before)."""
    return "min_distance" if remaining.any() else "no more candidates pass the thresholds"


def _update(X: npt.NDArray[np.float32], i: int, mind: npt.NDArray[np.float64]) -> None:
    """mind = min(mind, |X - X[i]|), exactly (differences, so a duplicate gets 0)."""
    c = X[i]
    for lo in range(0, X.shape[0], _CHUNK):
        diff = X[lo : lo + _CHUNK] - c
        d = np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
        np.minimum(mind[lo : lo + _CHUNK], d, out=mind[lo : lo + _CHUNK])
    mind[i] = 0.0


def _nearest(X: npt.NDArray[np.float32], S: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Each row's distance to the nearest row of S, exactly (differences, in blocks)."""
    out = np.full(X.shape[0], np.inf)
    rows = max(1, (1 << 22) // max(1, S.shape[1] * 64))
    for lo in range(0, X.shape[0], 64):
        a = X[lo : lo + 64, None, :]
        for plo in range(0, S.shape[0], rows):
            diff = a - S[None, plo : plo + rows, :]
            d = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff, dtype=np.float64)).min(axis=1)
            np.minimum(out[lo : lo + 64], d, out=out[lo : lo + 64])
    return out
