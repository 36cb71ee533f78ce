"""Selection: which candidates join the pool.

    picks = select(candidates, config, selected=pool.embeddings)
    picks.indices, picks.min_distances, picks.stop_reason

One entry point for every run: it takes the candidates table (datapool.candidates), the budget
and strategy (datapool.config.SelectionConfig) and the pool's embeddings, which count as already
selected. Diversity alone runs the C++ core's exact, pruned farthest-point selection
(select/fps.py); any other mix of strategies runs the greedy combined rule (select/greedy.py over
the arrays select/terms.py builds). `pool` carries the pool rows' strategy inputs (their class
distributions count for BALANCE) and `queries` the embeddings of pool tags (SIMILARITY).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from datapool.select.fps import Selection, select_diverse

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import numpy as np
    import numpy.typing as npt

    from datapool.candidates import Candidates
    from datapool.config import SelectionConfig
    from datapool.progress import Phase
    from datapool.select.greedy import BalanceTerm, GreedyResult
    from datapool.select.terms import Terms

__all__ = ["Picks", "Selection", "select", "select_diverse"]


@dataclass(frozen=True)
class Picks:
    """The picked candidates in pick order, each one's min-distance when picked, and why the
    selection stopped: "budget", "every candidate taken" (the budget was more than the
    candidates), "min_distance", "no candidates", "no candidate differs from
    the pool" (every remaining candidate duplicates a selected sample), "no more candidates pass
    the thresholds" or "no positive objective" (the candidates left have no value under a
    strategy: unknown, never picked; those of objective 0 fill the budget by diversity once
    the others are picked, `_fill`), or, where no candidate could be picked at all, the strategies'
    account of it (`terms.check_some_eligible`). `explain[j]`: pick j's objective under every
    strategy (by its label) and their product (each raised to its strength); empty for
    diversity alone.
    `balance`: per BALANCE strategy, how the class shares compare with its target
    (`balance_summary`). `thresholds`: per THRESHOLD strategy, how many candidates it kept
    (`terms.threshold_summary`)."""

    indices: npt.NDArray[np.int64]
    min_distances: npt.NDArray[np.float32]
    stop_reason: str
    explain: list[dict[str, Any]] = field(default_factory=list)
    balance: list[dict[str, Any]] = field(default_factory=list)
    # When --min-distance let no candidate in: how far the farthest one is from the pool (a
    # threshold past what the model's embeddings reach; diversity alone).
    farthest: float | None = None
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    # Where candidates that pass the thresholds had an objective of 0 or no value under a
    # strategy (`_zero_summary`): how many, under which strategies, and how many picks filled
    # the budget from those of 0 by diversity. None where there were none.
    zero_objective: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def select(
    candidates: Candidates,
    config: SelectionConfig,
    selected: npt.NDArray[np.float32],
    threads: int = 0,
    *,
    pool: Candidates | None = None,
    queries: Mapping[str, npt.NDArray[np.float32]] | None = None,
    device: str = "cpu",
    pool_weight: float = 1.0,
    phase: Phase | None = None,
) -> Picks:
    """`device` ("cpu", "cuda", "auto"): where diversity alone runs (select_diverse); the
    combined strategies run on the CPU whatever it says (docs/gpu.md). `pool_weight`: what a
    pool row counts for in BALANCE against a candidate (1/L when each candidate stands for L
    frames: select/sequences.py). Raises ConfigError when the strategies leave no candidate
    that could be picked and `selected` is empty (a pool's first run; select/terms.py
    `check_some_eligible`). `phase`: a progress phase that counts the picks as they are made
    (about every 50 ms), out of the budget where the budget is a count (not a minimum distance
    alone)."""
    budget = config.budget(len(candidates))
    progress = None
    if phase is not None:
        if config.n_samples is not None or config.proportion_samples is not None:
            phase.set_total(budget)
        progress = phase.set_done
    if not config.diversity_only:
        p = _select_combined(
            candidates, config, selected, pool, queries, threads, pool_weight, progress
        )
        return replace(p, stop_reason=_all_taken(p.stop_reason, len(p), len(candidates), config))
    sel = select_diverse(
        candidates.embeddings,
        budget,
        selected=selected,
        min_distance=config.min_distance,
        threads=threads,
        device=device,
        check_unit_rows=False,  # embeddings are unit rows by construction (no second pass)
        progress=progress,
    )
    if len(candidates) == 0:
        reason = "no candidates"
    elif len(sel) == budget:
        reason = "budget"
    elif config.min_distance:
        reason = "min_distance"
    else:
        reason = "no candidate differs from the pool"
    reason = _all_taken(reason, len(sel), len(candidates), config)
    label = "DIVERSITY(EMBEDDINGS)"
    s = config.strategies[0].strength
    explain = [{label: float(d), "product": float(d) ** s} for d in sel.min_distances.tolist()]
    farthest = None
    if reason == "min_distance" and len(sel) == 0:  # one more pass: the first pick's distance
        first = select_diverse(
            candidates.embeddings,
            1,
            selected=selected,
            threads=threads,
            device=device,
            check_unit_rows=False,
        )
        farthest = float(first.min_distances[0]) if len(first) else None
    return Picks(sel.indices, sel.min_distances, reason, explain, farthest=farthest)


def _all_taken(reason: str, picked: int, n: int, config: SelectionConfig) -> str:
    """ "budget" where the budget asked for more than there were candidates and all were
    taken: "every candidate taken" says what happened (`--n-samples 100` of 4 candidates)."""
    asked = config.n_samples
    if reason == "budget" and picked == n and (asked is None or asked > n):
        return "every candidate taken"
    return reason


def _select_combined(
    candidates: Candidates,
    config: SelectionConfig,
    selected: npt.NDArray[np.float32],
    pool: Candidates | None,
    queries: Mapping[str, npt.NDArray[np.float32]] | None,
    threads: int = 0,
    pool_weight: float = 1.0,
    progress: Callable[[int], object] | None = None,
) -> Picks:
    import functools

    from datapool.select.greedy import greedy, greedy_core
    from datapool.select.terms import build_terms, check_some_eligible

    t = build_terms(config.strategies, candidates, selected, pool, queries, pool_weight)
    zero, no_value = zero_objectives(t)
    none_left = check_some_eligible(config.strategies, candidates, t, len(selected), zero)
    pruned = t.diversity is not None and t.diversity > 0
    run = functools.partial(greedy_core, threads=threads) if pruned else greedy
    budget = config.budget(len(candidates))
    g = run(
        candidates.embeddings,
        budget,
        selected,
        fixed=t.fixed,
        mask=t.mask,
        diversity=t.diversity,
        min_distance=t.min_distance,
        balances=tuple(t.balances),
        progress=progress,
    )
    first = len(g.indices)
    if first < budget and zero.any() and not none_left:
        # Only candidates of objective 0 are left (the others were picked, or are too close
        # to the selection: the fill keeps those out as well)
        more = None if progress is None else lambda n: progress(first + n)
        g = _fill(g, candidates.embeddings, budget, selected, t, zero, threads, more)
    explain = []
    for j, i in enumerate(g.indices.tolist()):
        row: dict[str, Any] = {}
        b = 0
        for label, s, obj in zip(t.labels, config.strategies, t.objectives):
            kind = type(s.strategy).__name__
            if kind == "Diversity":
                row[label] = float(g.min_distances[j])
            elif kind == "Balance":
                row[label] = math.exp(float(g.balance_terms[j, b]) / (s.strength or 1.0))
                b += 1
            elif obj is not None:
                row[label] = float(obj[i])
        filled = j >= first  # its objective is 0: so is the product
        row["product"] = 0.0 if filled else math.exp(g.scores[j]) if g.scores[j] < 700 else math.inf
        explain.append(row)
    from datapool.strategies import Balance

    labels = [lb for lb, s in zip(t.labels, config.strategies) if isinstance(s.strategy, Balance)]
    balance = [balance_summary(lb, b, g.indices) for lb, b in zip(labels, t.balances)]
    reason = none_left or g.stop_reason
    zeros = _zero_summary(config, t, zero, no_value, len(g.indices) - first)
    return Picks(
        g.indices,
        g.min_distances,
        reason,
        explain,
        balance,
        thresholds=t.thresholds,
        zero_objective=zeros,
    )


def zero_objectives(t: Terms) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The candidates that pass the thresholds whose product of objectives is 0 (`zero`: an
    objective of 0 under a positive strength, a WEIGHTS value of 0), and those with no value
    under a strategy (`no_value`: no score or metadata for them; never picked, as a THRESHOLD
    leaves out a candidate without a value)."""
    import numpy as np

    no_value = np.zeros(len(t.mask), bool)
    for obj in t.objectives:
        if obj is not None:
            no_value |= np.isnan(obj)
    no_value &= t.mask
    zero = t.mask & ~no_value & ~(t.fixed > -np.inf)
    return zero, no_value


def _fill(
    g: GreedyResult,
    X: npt.NDArray[np.float32],
    budget: int,
    selected: npt.NDArray[np.float32],
    t: Terms,
    zero: npt.NDArray[np.bool_],
    threads: int,
    progress: Callable[[int], object] | None = None,
) -> GreedyResult:
    """The greedy picks `g`, which stopped short of the budget, followed by picks among the
    candidates of objective 0 (`zero`) up to it. Their product is 0 whatever the other
    strategies say of them, so the strategies that change with each pick rank them: DIVERSITY
    (with strength 1 where the config has none or 0: the most different first) and BALANCE,
    the picks so far counted as selected. The stopping conditions still hold: the minimum
    distance, and a duplicate of a selected sample is never picked (Lightly's docs: the
    selection stops at n_samples / proportion_samples or the minimum distance)."""
    import numpy as np

    from datapool.select.greedy import GreedyResult, greedy, greedy_core

    picked = g.indices
    S = np.concatenate([selected, X[picked]]) if len(picked) else selected
    balances = tuple(replace(b, counts=b.counts + b.P[picked].sum(axis=0)) for b in t.balances)
    div = t.diversity if t.diversity else 1.0
    mask = zero.copy()
    mask[picked] = False
    kw: dict[str, Any] = dict(
        fixed=np.zeros(len(zero)),
        mask=mask,
        diversity=div,
        min_distance=t.min_distance,
        balances=balances,
        progress=progress,
    )
    if div > 0:
        h = greedy_core(X, budget - len(picked), S, threads=threads, **kw)
    else:
        h = greedy(X, budget - len(picked), S, **kw)
    reason = h.stop_reason
    left = t.mask.copy()
    left[picked] = False
    left[h.indices] = False
    if reason == "no more candidates pass the thresholds" and left.any():
        reason = "no positive objective"  # those left have no value under a strategy
    return GreedyResult(
        np.concatenate([picked, h.indices]),
        np.concatenate([g.min_distances, h.min_distances]),
        np.concatenate([g.balance_terms, h.balance_terms]),
        reason,
        [*g.scores, *h.scores],
        g.info,
    )


def _zero_summary(
    config: SelectionConfig,
    t: Terms,
    zero: npt.NDArray[np.bool_],
    no_value: npt.NDArray[np.bool_],
    filled: int,
) -> dict[str, Any] | None:
    """What the summary and the report say of the candidates of objective 0 or no value: how
    many, under which strategies, and how many picks filled the budget from them."""
    import numpy as np

    if not (zero.any() or no_value.any()):
        return None
    at_zero, without = [], []
    for label, obj, s in zip(t.labels, t.objectives, config.strategies):
        if obj is not None:
            if s.strength > 0 and bool((t.mask & (obj == 0)).any()):
                at_zero.append(label)
            if bool((t.mask & np.isnan(obj)).any()):
                without.append(label)
    return {
        "candidates": int(zero.sum()),
        "strategies": at_zero,
        "filled": int(filled),
        "without_value": int(no_value.sum()),
        "without_value_strategies": without,
    }


def balance_summary(label: str, b: BalanceTerm, picked: npt.NDArray[np.int64]) -> dict[str, Any]:
    """How a BALANCE strategy's class shares compare with its target: per class the target
    share, the pool's share before the run, the share of this run's picks and the pool's share
    after it (soft counts: each sample's class distribution, normalised to sum 1; samples with
    no class count for none), and the counts after."""
    import numpy as np

    picks = b.P[picked].sum(axis=0) if len(picked) else np.zeros(len(b.counts))
    after = b.counts + picks

    def shares(c: npt.NDArray[np.float64]) -> list[float | None]:
        total = float(c.sum())
        return [round(float(x) / total, 6) if total > 0 else None for x in c]

    rows = zip(b.classes, b.target, shares(b.counts), shares(picks), shares(after), after)
    return {
        "strategy": label,
        "counted": {"pool_before": float(b.counts.sum()), "picked": float(picks.sum())},
        "classes": [
            {
                "class": c,
                "target": round(float(t), 6),
                "pool_before": before,
                "picked": here,
                "pool_after": now,
                "count_after": round(float(n), 6),
            }
            for c, t, before, here, now, n in rows
        ],
    }
