"""Each strategy's objective per candidate, as plain arrays the greedy rule combines.

From a SelectionConfig's strategies and the candidates' columns (datapool.candidates): the
threshold mask, the fixed log terms (WEIGHTS, SIMILARITY, TYPICALITY; RANDOM values) and the
BALANCE terms (class distributions, the pool's class counts, the target). Formulas:
docs/selection.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.errors import ConfigError
from datapool.select.greedy import BalanceTerm
from datapool.strategies import (
    Balance,
    Diversity,
    Metadata,
    Random,
    Scores,
    SelectionStrategy,
    Similarity,
    Threshold,
    Typicality,
    Weights,
    column_name,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy.typing as npt

    from datapool.candidates import Candidates


@dataclass
class Terms:
    """The strategies as arrays. `fixed_parts[j]` is strategy j's objective per candidate (None
    for DIVERSITY, BALANCE and THRESHOLD); `labels[j]` names strategy j in the report."""

    mask: npt.NDArray[np.bool_]
    fixed: npt.NDArray[np.float64]
    diversity: float | None = None
    min_distance: float = 0.0
    balances: list[BalanceTerm] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    objectives: list[npt.NDArray[np.float64] | None] = field(default_factory=list)
    # per THRESHOLD strategy, how many candidates it keeps (`threshold_summary`)
    thresholds: list[dict[str, Any]] = field(default_factory=list)


def build_terms(
    strategies: tuple[SelectionStrategy, ...],
    cands: Candidates,
    selected: npt.NDArray[np.float32],
    pool: Candidates | None = None,
    queries: Mapping[str, npt.NDArray[np.float32]] | None = None,
    pool_weight: float = 1.0,
) -> Terms:
    n = len(cands)
    t = Terms(np.ones(n, bool), np.zeros(n))
    for s in strategies:
        t.labels.append(_label(s))
        obj: npt.NDArray[np.float64] | None = None
        st = s.strategy
        if isinstance(st, Diversity):
            t.diversity = float(st.strength)
            t.min_distance = float(st.stopping_condition_minimum_distance or 0.0)
        elif isinstance(st, Threshold):
            v = _values(s, cands)
            keep = _compare(v, st)
            t.mask &= keep
            t.thresholds.append(threshold_summary(_label(s), st, v, keep))
        elif isinstance(st, Balance):
            t.balances.append(_balance(s, st, cands, pool, pool_weight))
        else:
            obj = _objective(s, cands, selected, queries)
            with np.errstate(divide="ignore", invalid="ignore"):
                t.fixed += _slog(s.strength, obj)
        t.objectives.append(obj)
    return t


def threshold_summary(
    label: str, st: Threshold, v: npt.NDArray[np.float64], keep: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    """What a THRESHOLD strategy did to the candidates, for the summary and the report: a
    threshold that left out most of them is otherwise seen only as a run that picked fewer."""
    return {
        "strategy": label,
        "operation": st.operation,
        "threshold": float(st.threshold),
        "kept": int(keep.sum()),
        "of": len(v),
        "without_value": int(np.isnan(v).sum()),
    }


def check_some_eligible(
    strategies: tuple[SelectionStrategy, ...],
    cands: Candidates,
    t: Terms,
    pool_size: int,
    zero: npt.NDArray[np.bool_] | None = None,
) -> str | None:
    """Why the strategies leave no candidate that could be picked (every one fails a THRESHOLD,
    or has an objective of 0 or no value under a positive strength), naming each THRESHOLD and
    WEIGHTS strategy with how many candidates it keeps and the values it saw; None where some
    candidate is left. On an empty pool this stops the run before anything is committed: a
    first run that can select nothing is a mistake in the config or the predictions, and
    committing would mark every file as processed, so that the run with it fixed would find
    nothing new. A pool that has samples goes on: a day's new files that all fail a threshold
    are what thresholds are for, and the run says why it selected none; where some pass the
    thresholds with an objective of 0 (`zero`), it goes on and fills its budget with them by
    diversity (select._fill)."""
    n = len(cands)
    if n == 0 or bool((t.mask & (t.fixed > -np.inf)).any()):
        return None
    if pool_size > 0 and zero is not None and bool(zero.any()):
        return None
    parts = []
    for s in strategies:
        st = s.strategy
        if isinstance(st, Threshold):
            v = _values(s, cands)
            kept = int(_compare(v, st).sum())
            scale = ", scores are 0 to 1" if isinstance(s.input, Scores) else ""
            parts.append(
                f"{_label(s)} {st.operation} {st.threshold:g} keeps {kept} ({_describe(v)}{scale})"
            )
        elif isinstance(st, Weights):
            v = _values(s, cands)
            usable = int(np.sum(v > 0)) if s.strength > 0 else int(np.sum(np.isfinite(v)))
            parts.append(f"{_label(s)} has a usable value for {usable} ({_describe(v)})")
    why = f"the selection strategies leave none of the {n} candidates to pick: " + "; ".join(
        parts or ["every candidate's objective is 0"]
    )
    if pool_size == 0:
        change = (
            "change the threshold or its operation, or "
            if any(isinstance(s.strategy, Threshold) for s in strategies)
            else ""
        )
        raise ConfigError(
            f"{why}. Nothing was selected or committed: {change}check that the predictions "
            "and metadata cover these samples"
        )
    return why


def _describe(v: npt.NDArray[np.float64]) -> str:
    """The range of a column's values, and how many have none: "values 0 to 0.9, 12 without
    a value"."""
    known = v[~np.isnan(v)]
    missing = len(v) - len(known)
    out = f"values {known.min():.4g} to {known.max():.4g}" if len(known) else "no values"
    return out + (f", {missing} without a value" if missing and len(known) else "")


def _label(s: SelectionStrategy) -> str:
    d = s.to_lightly()
    inp = ":".join(str(v) for k, v in d["input"].items() if k != "type")
    return f"{d['strategy']['type']}({d['input']['type']}{':' + inp if inp else ''})"


def _objective(
    s: SelectionStrategy,
    cands: Candidates,
    selected: npt.NDArray[np.float32],
    queries: Mapping[str, npt.NDArray[np.float32]] | None,
) -> npt.NDArray[np.float64]:
    st = s.strategy
    if isinstance(st, Weights):
        v = _values(s, cands)
        negative = np.flatnonzero(v < 0)
        if len(negative):
            i = int(negative[np.argmin(v[negative])])
            raise ConfigError(
                f"strategy {_label(s)}: WEIGHTS multiplies the objectives, so values must be "
                f">= 0, and {len(negative)} of {len(v)} are negative, down to {v[i]:g} "
                f"({cands.names[i]}): "
                "shift them in the metadata, or drop them with a THRESHOLD"
            )
        return v
    if isinstance(st, Similarity):
        tag = getattr(s.input, "tag_name", None)
        q = None if queries is None or tag is None else queries.get(tag)
        if q is None or len(q) == 0:
            tags = [t for t, rows in (queries or {}).items() if len(rows)]
            raise ConfigError(
                f"SIMILARITY: the pool has no samples tagged {tag!r} (input.tag_name; the "
                f"pool's run tags: {', '.join(tags) or 'none, it is empty'})"
            )
        return similarity(cands.embeddings, q)
    assert isinstance(st, Typicality)
    return typicality(cands.embeddings, selected, st.num_nearest_neighbors)


def _values(s: SelectionStrategy, cands: Candidates) -> npt.NDArray[np.float64]:
    """A numeric input per candidate: RANDOM values, or a scores/metadata column."""
    if isinstance(s.input, Random):
        rng = np.random.default_rng(s.input.random_seed or 0)
        return 1.0 - rng.random(len(cands))  # in (0, 1]
    name = column_name(s.input)
    col = cands.columns.get(name or "")
    if col is None:
        raise ConfigError(
            f"strategy {_label(s)}: no values for {name!r} (are the .lightly predictions or "
            "metadata in the source?)"
        )
    if col.dtype == object or col.ndim != 1:
        raise ConfigError(
            f"strategy {_label(s)}: {name!r} is not numeric: THRESHOLD and WEIGHTS take scores "
            "or metadata whose valueDataType is NUMERIC_INT or NUMERIC_FLOAT (a categorical "
            "field goes to BALANCE)"
        )
    return np.asarray(col, np.float64)


def _compare(v: npt.NDArray[np.float64], st: Threshold) -> npt.NDArray[np.bool_]:
    ops: dict[str, Any] = {
        "SMALLER": np.less,
        "SMALLER_EQUAL": np.less_equal,
        "BIGGER": np.greater,
        "BIGGER_EQUAL": np.greater_equal,
    }
    return np.asarray(ops[st.operation](v, st.threshold), bool)  # NaN compares false


def similarity(X: npt.NDArray[np.float32], Q: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """1 - d/2 with d the distance to the nearest query row: 1 on a query, 0 opposite it
    (clipped to [0, 1]: float32 unit rows put an opposite row's d just over 2, and the log of a
    negative similarity is NaN, never picked even where the least similar is wanted)."""
    from datapool.select.greedy import _nearest

    return np.clip(np.asarray(1.0 - _nearest(X, Q) / 2.0, np.float64), 0.0, 1.0)


def typicality(
    X: npt.NDArray[np.float32], pool: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.float64]:
    """TypiClust's typicality: 1 / (mean distance to the k nearest other rows of X and the
    pool); k shrinks to the rows there are; 1 where there is no other row. Exact, O(N (N+M) d)."""
    allrows = np.concatenate([X, pool]) if len(pool) else X
    n, total = X.shape[0], allrows.shape[0]
    kk = min(k, total - 1)
    out = np.ones(n)
    if kk < 1:
        return out
    a64 = allrows.astype(np.float64)
    sq = (a64 * a64).sum(1)
    for lo in range(0, n, 1024):
        hi = min(n, lo + 1024)
        d2 = sq[lo:hi, None] - 2.0 * a64[lo:hi] @ a64.T + sq[None, :]
        d = np.sqrt(np.maximum(d2, 0.0))
        d[np.arange(hi - lo), np.arange(lo, hi)] = np.inf  # not its own neighbour
        near = np.partition(d, kk - 1, axis=1)[:, :kk]
        with np.errstate(divide="ignore"):
            out[lo:hi] = 1.0 / near.mean(axis=1)
    return out


def _balance(
    s: SelectionStrategy,
    st: Balance,
    cands: Candidates,
    pool: Candidates | None,
    pool_weight: float = 1.0,
) -> BalanceTerm:
    """`pool_weight`: what a pool row counts for against a candidate (1/L when each candidate is
    a sequence of L frames: select/sequences.py)."""
    P, classes = class_matrix(s, cands)
    counts = np.zeros(len(classes))
    if pool is not None and len(pool):
        Pp, pclasses = class_matrix(s, pool, missing_ok=True)
        for j, c in enumerate(pclasses):
            if c not in classes:
                classes.append(c)
                P = np.concatenate([P, np.zeros((P.shape[0], 1))], axis=1)
                counts = np.append(counts, 0.0)
            counts[classes.index(c)] += Pp[:, j].sum() * pool_weight
    wanted = _boolean_targets(st.target, classes)
    unknown = sorted(set(wanted) - set(classes))
    if unknown:
        raise ConfigError(
            f"BALANCE target class {unknown[0]!r} is not a class of {column_name(s.input)} "
            f"(classes: {', '.join(classes[:20])})"
        )
    target = target_shares(wanted, classes)
    return BalanceTerm(P, counts, target, float(st.strength), tuple(classes))


def _boolean_targets(target: Mapping[Any, float], classes: list[str]) -> dict[str, float]:
    """The target by class name. A CATEGORICAL_BOOLEAN's classes are "True" and "False"; a
    target may name them as JSON writes them ("true", "false", as in the metadata files) or as
    YAML reads `true:` (a boolean key). Two names of one class are refused."""
    out: dict[str, float] = {}
    for k, v in target.items():
        name = str(k)
        if name not in classes and name.lower() in ("true", "false"):
            name = next((c for c in classes if c.lower() == name.lower()), name)
        if name in out:
            raise ConfigError(f"BALANCE target names class {name!r} twice; give it once")
        out[name] = v
    return out


def target_shares(target: Mapping[str, float], classes: list[str]) -> npt.NDArray[np.float64]:
    """The target share per class; what the named shares leave goes equally to the others."""
    t = np.array([float(target.get(c, 0.0)) for c in classes])
    others = [i for i, c in enumerate(classes) if c not in target]
    if others:
        t[others] = max(0.0, 1.0 - sum(target.values())) / len(others)
    return t


def class_matrix(
    s: SelectionStrategy, cands: Candidates, missing_ok: bool = False
) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Each row's class distribution, normalised to sum 1 (0 for a row with none), and the
    class names: from PREDICTIONS CLASS_DISTRIBUTION, or categorical METADATA (one-hot)."""
    name = column_name(s.input) or ""
    col = cands.columns.get(name)
    n = len(cands)
    if col is None:
        if missing_ok:
            return np.zeros((n, 0)), []
        raise ConfigError(f"strategy {_label(s)}: no values for {name!r}")
    if isinstance(s.input, Metadata):
        if col.dtype != object and not missing_ok:
            raise ConfigError(
                f"strategy {_label(s)}: BALANCE takes categorical metadata (valueDataType "
                f"CATEGORICAL_STRING, CATEGORICAL_INT or CATEGORICAL_BOOLEAN); {s.input.key!r} "
                "is numeric: its every value would be a class. Use THRESHOLD or WEIGHTS on it"
            )
        values = [_category(v) for v in col.tolist()]
        classes = sorted({v for v in values if v})
        P = np.zeros((n, len(classes)))
        index = {c: j for j, c in enumerate(classes)}
        for i, v in enumerate(values):
            if v:
                P[i, index[v]] = 1.0
        return P, classes
    P = np.nan_to_num(np.asarray(col, np.float64).reshape(n, -1))
    sums = P.sum(axis=1, keepdims=True)
    P = np.divide(P, sums, out=np.zeros_like(P), where=sums > 0)
    return P, list(cands.classes.get(name, [str(j) for j in range(P.shape[1])]))


def _category(v: Any) -> str:
    """A categorical metadata value as a class name ("" for none). The pool's stored inputs
    read a CATEGORICAL_INT's 3 back as the float 3.0: both are class "3"."""
    if v is None or v != v:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _slog(strength: float, obj: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """strength * log(obj), with 0 * log(0 or inf) = 0 and NaN (inf - inf) as -inf."""
    if strength == 0:
        return np.zeros_like(obj)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = strength * np.log(obj)
    out[np.isnan(out)] = -np.inf
    return np.asarray(out, np.float64)
