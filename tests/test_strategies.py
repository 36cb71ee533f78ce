"""Selection strategies: the typed config, and the greedy combined rule against a plain float64
reference written here from docs/selection.md."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapool.candidates import Candidates
from datapool.config import RunConfig, SelectionConfig
from datapool.errors import ConfigError
from datapool.select import select
from datapool.strategies import (
    Balance,
    Diversity,
    Embeddings,
    Metadata,
    Predictions,
    Random,
    Scores,
    SelectionStrategy,
    Similarity,
    Threshold,
    Typicality,
    Weights,
)

EPS = 1e-3  # docs/selection.md: the balance smoothing

# --- the typed config ------------------------------------------------------------------------


def test_simple_flags_build_the_same_object_as_lightlys_shape() -> None:
    a = SelectionConfig(n_samples=10, min_distance=0.3)
    b = SelectionConfig.from_lightly(
        {
            "n_samples": 10,
            "strategies": [
                {
                    "input": {"type": "EMBEDDINGS"},
                    "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": 0.3},
                }
            ],
        }
    )
    assert a == b
    assert a.diversity_only and a.min_distance == 0.3
    assert RunConfig(n_samples=10, min_distance=0.3).selection == a


def test_a_lightly_config_round_trips(tmp_path) -> None:
    d = {
        "proportion_samples": 0.2,
        "strategies": [
            {
                "input": {"type": "SCORES", "task": "cls", "score": "uncertainty_margin"},
                "strategy": {"type": "WEIGHTS", "strength": 2.0},
            },
            {
                "input": {"type": "METADATA", "key": "lightness"},
                "strategy": {"type": "THRESHOLD", "threshold": 0.5, "operation": "BIGGER"},
            },
            {
                "input": {"type": "PREDICTIONS", "task": "det", "name": "CLASS_DISTRIBUTION"},
                "strategy": {"type": "BALANCE", "target": {"car": 0.5}},
            },
            {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
        ],
    }
    c = SelectionConfig.from_lightly(d)
    assert isinstance(c.strategies[0].input, Scores) and c.strategies[0].strength == 2.0
    assert isinstance(c.strategies[1].strategy, Threshold)
    assert SelectionConfig.from_lightly(c.to_lightly()) == c
    p = tmp_path / "sel.yaml"
    import yaml

    p.write_text(yaml.safe_dump(d))
    assert SelectionConfig.from_file(p) == c
    (tmp_path / "sel.json").write_text(json.dumps(d))
    assert SelectionConfig.from_file(tmp_path / "sel.json") == c
    assert RunConfig(proportion_samples=0.2, strategies=c.strategies).selection == c
    assert RunConfig(proportion_samples=0.2, strategies=c.strategies).to_json()["strategies"]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSE"}}, "strategy.type"),
        ({"input": {"type": "SCORES"}, "strategy": {"type": "WEIGHTS"}}, "task"),
        (
            {"input": {"type": "METADATA", "key": "x"}, "strategy": {"type": "THRESHOLD"}},
            "threshold",
        ),
        (
            {
                "input": {"type": "METADATA", "key": "x"},
                "strategy": {"type": "THRESHOLD", "threshold": 1, "operation": "GREATER"},
            },
            "operation",
        ),
        (
            {
                "input": {"type": "EMBEDDINGS"},
                "strategy": {"type": "TYPICALITY", "num_nearest_neighbors": 1},
            },
            "num_nearest_neighbors",
        ),
        ({"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "WEIGHTS"}}, "takes input"),
        ({"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "SIMILARITY"}}, "tag_name"),
        ({"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY", "x": 1}}, "'x'"),
        (  # which side to keep is never guessed
            {
                "input": {"type": "METADATA", "key": "x"},
                "strategy": {"type": "THRESHOLD", "threshold": 0.3},
            },
            "THRESHOLD needs 'operation'",
        ),
    ],
)
def test_a_bad_field_is_named_with_the_file(tmp_path, entry, says) -> None:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"n_samples": 3, "strategies": [entry]}))
    with pytest.raises(ConfigError) as e:
        SelectionConfig.from_file(p)
    assert str(p) in str(e.value) and "strategies[0]" in str(e.value) and says in str(e.value)


def test_lightlys_older_name_diversify_is_diversity() -> None:
    old = {
        "n_samples": 3,
        "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSIFY"}}],
    }
    assert SelectionConfig.from_lightly(old) == SelectionConfig(n_samples=3)


def test_negative_weights_name_a_sample_and_the_fix() -> None:
    X = np.eye(4, dtype=np.float32)
    cands = Candidates(list("abcd"), list("abcd"), X)
    cands.columns["metadata:m"] = np.array([0.5, np.nan, -0.25, -2.0])
    cfg = SelectionConfig(n_samples=2, strategies=(SelectionStrategy(Metadata("m"), Weights()),))
    with pytest.raises(ConfigError, match=r"2 of 4 are negative, down to -2 \(d\): shift them"):
        select(cands, cfg, np.zeros((0, 4), np.float32))


def test_similarity_to_a_tag_the_pool_lacks_lists_its_tags() -> None:
    X = np.eye(4, dtype=np.float32)
    cands = Candidates(list("abcd"), list("abcd"), X)
    sim = SelectionStrategy(Embeddings(tag_name="initial_tag"), Similarity())
    cfg = SelectionConfig(n_samples=2, strategies=(sim,))
    queries = {"initial-tag": X[:1], "run-1": X[1:2]}
    with pytest.raises(ConfigError, match=r"tagged 'initial_tag' .*tags: initial-tag, run-1\)"):
        select(cands, cfg, X[:2], queries=queries)


def test_a_row_opposite_the_query_is_the_least_similar_not_unpickable() -> None:
    """1 - d/2 for a row opposite its query is 0, but float32 rounding can put d just over 2:
    a similarity of -5e-8, whose log is NaN, and a NaN objective is never picked. Under a
    negative strength (pick the least similar) that row must come first."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal(8).astype(np.float32)
    q /= np.linalg.norm(q)
    side = np.zeros(8, np.float32)
    side[int(np.argmin(np.abs(q)))] = 1.0  # about a quarter turn from q
    X = np.stack([side, -q])
    assert np.linalg.norm(X[1].astype(np.float64) - q) > 2  # the rounding this is about
    cands = Candidates(["side", "opposite"], ["side", "opposite"], X)
    sim = SelectionStrategy(Embeddings(tag_name="q"), Similarity(strength=-1.0))
    cfg = SelectionConfig(n_samples=1, strategies=(sim,))
    pool = q[None]
    assert select(cands, cfg, pool, queries={"q": pool}).indices.tolist() == [1]


def test_bad_json_and_a_missing_budget_are_clear(tmp_path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        SelectionConfig.from_file(p)
    p.write_text(json.dumps({"strategies": []}))
    with pytest.raises(ConfigError, match="no selection budget"):
        SelectionConfig.from_file(p)


# --- the float64 reference of the greedy rule ------------------------------------------------


def reference(X, pool, budget, spec):
    """Plain loops: thresholds first; then, one pick at a time, the largest sum of
    strength * log(objective) over the strategies, ties to the lowest index; when only
    candidates whose product is 0 are left (and something was picked or the pool has
    samples), the budget is filled from them by diversity (strength 1 without DIVERSITY) and
    BALANCE alone. Returns the picks and each step's scores (for judging near-ties)."""
    X = X.astype(np.float64)
    pool = pool.astype(np.float64)
    n = len(X)

    def dist(a, b):
        return math.sqrt(float(((a - b) ** 2).sum()))

    ok = [True] * n
    for values, op, thr in spec.get("thresholds", []):
        for i in range(n):
            v = values[i]
            ok[i] = (
                ok[i]
                and {
                    "SMALLER": v < thr,
                    "SMALLER_EQUAL": v <= thr,
                    "BIGGER": v > thr,
                    "BIGGER_EQUAL": v >= thr,
                }[op]
            )
    fixed = [0.0] * n
    for values, s in spec.get("weights", []):
        for i in range(n):
            fixed[i] += _slog(s, values[i])
    if "similarity" in spec:
        Q, s = spec["similarity"]
        for i in range(n):
            fixed[i] += _slog(s, max(0.0, 1 - min(dist(X[i], q) for q in Q) / 2))
    if "typicality" in spec:
        k, s = spec["typicality"]
        rows = list(X) + list(pool)
        for i in range(n):
            ds = sorted(dist(X[i], r) for j, r in enumerate(rows) if j != i)
            kk = min(k, len(ds))
            typ = 1.0 if kk == 0 else (math.inf if sum(ds[:kk]) == 0 else kk / sum(ds[:kk]))
            fixed[i] += _slog(s, typ)
    balances = []
    for P, Ppool, target, s in spec.get("balances", []):

        def norm(r):
            t = sum(r)
            return [x / t for x in r] if t > 0 else [0.0] * len(r)

        C = len(target)
        counts = [0.0] * C
        for r in Ppool:
            counts = [a + b for a, b in zip(counts, norm(r))]
        balances.append(([norm(r) for r in P], counts, target, s))
    selected = list(pool)
    picks, steps = [], []
    md = spec.get("min_distance", 0.0)
    zero = [not fixed[i] > -math.inf for i in range(n)]
    filling = False
    while len(picks) < budget:
        scores = [-math.inf] * n
        for i in range(n):
            if not ok[i] or i in picks or (filling and not zero[i]):
                continue
            sc = 0.0 if filling else fixed[i]
            if "diversity" in spec or filling:
                mind = min((dist(X[i], r) for r in selected), default=math.inf)
                if mind < md:
                    continue
                if selected:
                    sc += _slog(spec.get("diversity", 1.0), mind)
            for P, counts, target, s in balances:
                total = sum(counts)
                share = [
                    (c / total if total > 0 else 0.0) if t > 0 else (c + 1) / (total + 1)
                    for c, t in zip(counts, target)
                ]
                g = [math.log((t + EPS) / (sh + EPS)) for t, sh in zip(target, share)]
                sc += s * sum(p * gk for p, gk in zip(P[i], g))
            scores[i] = -math.inf if math.isnan(sc) else sc
        best = max(range(n), key=lambda i: (scores[i], -i)) if n else None
        if best is None or scores[best] == -math.inf:
            left = [i for i in range(n) if ok[i] and i not in picks and zero[i]]
            if filling or not left or not (picks or len(pool)):
                break
            filling = True
            continue
        steps.append(scores)
        picks.append(best)
        selected.append(X[best])
        for P, counts, _, _ in balances:
            for k in range(len(counts)):
                counts[k] += P[best][k]
    return picks, steps


def _slog(s, v):
    if v == 0:
        return -math.inf if s > 0 else (math.inf if s < 0 else 0.0)
    if v == math.inf:
        return math.inf if s > 0 else (-math.inf if s < 0 else 0.0)
    return s * math.log(v)


def agree(ours, ref_picks, ref_steps):
    """The same picks, except where ours picked a near-tie (within 1e-5) of the reference's:
    from there on the sequences may differ."""
    for j, (a, b) in enumerate(zip(ours, ref_picks)):
        if a != b:
            sa, sb = ref_steps[j][a], ref_steps[j][b]
            assert math.isfinite(sa) and abs(sa - sb) <= 1e-5 * max(1.0, abs(sb)), (j, a, b, sa, sb)
            return
    assert len(ours) == len(ref_picks), (ours, ref_picks)


KINDS = ["diversity", "weights", "threshold", "balance", "similarity", "typicality", "random"]


def _problem(seed, kinds, m_kind):
    rng = np.random.default_rng(seed)
    n, d, C = int(rng.integers(1, 22)), int(rng.integers(2, 6)), 4
    centers = rng.normal(size=(3, d))
    X = centers[rng.integers(0, 3, n)] + 0.3 * rng.normal(size=(n, d))
    if n > 3 and rng.random() < 0.3:
        X[1] = X[0]  # a duplicate
    m = {"none": 0, "one": 1, "many": int(rng.integers(2, 9))}[m_kind]
    pool = rng.normal(size=(m, d))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    pool = (pool / np.linalg.norm(pool, axis=1, keepdims=True)).astype(np.float32)
    score = rng.random(n)
    score[rng.random(n) < 0.1] = 0.0
    meta = rng.normal(size=n)
    probs = rng.dirichlet(np.ones(C), size=n + m)
    cands = Candidates(
        [f"c{i}" for i in range(n)],
        [f"c{i}" for i in range(n)],
        X,
        {
            "scores:t:s": score,
            "metadata:m": meta,
            "predictions:t:CLASS_DISTRIBUTION": probs[:n],
        },
        {"predictions:t:CLASS_DISTRIBUTION": ["a", "b", "c", "d"]},
    )
    pcands = Candidates(
        [f"p{i}" for i in range(m)],
        [f"p{i}" for i in range(m)],
        pool,
        {"predictions:t:CLASS_DISTRIBUTION": probs[n:]},
        {"predictions:t:CLASS_DISTRIBUTION": ["a", "b", "c", "d"]},
    )
    Q = X[: max(1, n // 4)] if rng.random() < 0.5 else pool[:1] if m else X[:1]
    strengths = {k: float(rng.choice([1.0, 2.0, 0.5, -1.0])) for k in KINDS}
    strengths["diversity"] = float(rng.choice([1.0, 3.0, 0.5]))
    strategies, spec = [], {}
    for k in kinds:
        s = strengths[k]
        if k == "diversity":
            md = float(rng.choice([0.0, 0.0, 0.3]))
            strategies.append(SelectionStrategy(Embeddings(), Diversity(md or None, s)))
            spec["diversity"], spec["min_distance"] = s, md
        elif k == "weights":
            strategies.append(SelectionStrategy(Scores("t", "s"), Weights(s)))
            spec.setdefault("weights", []).append((score, s))
        elif k == "random":
            strategies.append(SelectionStrategy(Random(7), Weights(s)))
            spec.setdefault("weights", []).append((1 - np.random.default_rng(7).random(n), s))
        elif k == "threshold":
            op = str(rng.choice(["SMALLER", "SMALLER_EQUAL", "BIGGER", "BIGGER_EQUAL"]))
            strategies.append(SelectionStrategy(Metadata("m"), Threshold(0.0, op)))
            spec.setdefault("thresholds", []).append((meta, op, 0.0))
        elif k == "balance":
            target = {"a": 0.6, "b": 0.1}
            strategies.append(SelectionStrategy(Predictions("t"), Balance(target, s)))
            spec.setdefault("balances", []).append(
                (probs[:n], probs[n:], [0.6, 0.1, 0.15, 0.15], s)
            )
        elif k == "similarity":
            strategies.append(SelectionStrategy(Embeddings(tag_name="q"), Similarity(s)))
            spec["similarity"] = (Q, s)
        elif k == "typicality":
            kk = int(rng.integers(2, 5))
            strategies.append(SelectionStrategy(Embeddings(), Typicality(kk, s)))
            spec["typicality"] = (kk, s)
    budget = int(rng.integers(1, n + 1))
    return cands, pcands, Q, strategies, spec, budget


def _check(seed, kinds, m_kind):
    cands, pcands, Q, strategies, spec, budget = _problem(seed, kinds, m_kind)
    cfg = SelectionConfig(n_samples=budget, strategies=tuple(strategies))
    ref_picks, ref_steps = reference(cands.embeddings, pcands.embeddings, budget, spec)
    if not ref_picks:  # maybe no candidate could be picked: said, rather than 0 picks
        try:
            picks = select(cands, cfg, pcands.embeddings, pool=pcands, queries={"q": Q})
        except ConfigError as e:
            message = str(e)
            assert "leave none of the" in message
            return
    else:
        picks = select(cands, cfg, pcands.embeddings, pool=pcands, queries={"q": Q})
    agree(picks.indices.tolist(), ref_picks, ref_steps)
    assert len(picks.explain) == len(picks)


MIXES = [(k,) for k in KINDS] + list(itertools.combinations(KINDS, 2))


@pytest.mark.parametrize("m_kind", ["none", "one", "many"])
@pytest.mark.parametrize("kinds", MIXES, ids="+".join)
def test_each_strategy_and_each_pair_agree_with_the_reference(kinds, m_kind) -> None:
    for seed in range(3):
        _check(seed, kinds, m_kind)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True),
    m_kind=st.sampled_from(["none", "one", "many"]),
)
def test_random_mixes_agree_with_the_reference(seed, kinds, m_kind) -> None:
    _check(seed, tuple(kinds), m_kind)


@pytest.mark.parametrize("combined", [False, True], ids=["diversity", "weights+diversity"])
def test_a_budget_above_the_candidates_stops_as_every_candidate_taken(combined):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cands = Candidates([f"c{i}" for i in range(6)], [f"c{i}" for i in range(6)], X)
    if combined:
        cands.columns["metadata:m"] = np.linspace(1, 2, 6)
    strategies = [SelectionStrategy(Embeddings(), Diversity(None, 1.0))]
    if combined:
        strategies.append(SelectionStrategy(Metadata("m"), Weights(1.0)))
    empty = np.zeros((0, 8), np.float32)
    for n, reason in [(100, "every candidate taken"), (6, "budget"), (4, "budget")]:
        cfg = SelectionConfig(n_samples=n, strategies=tuple(strategies))
        assert select(cands, cfg, empty).stop_reason == reason


@pytest.mark.parametrize("diversity", [None, 0.1], ids=["numpy", "core"])
def test_balance_never_picks_a_class_whose_target_is_0(diversity) -> None:
    # Targets summing to 1 leave "fog" 0. Once the picks are at their target (one rain, one
    # sun), every class's gain used to be 0, fog's included (share 0, target 0), and the tie
    # went to the lowest index or the most diverse row: a fog row, 1 pick in 3.
    rng = np.random.default_rng(11)
    X = rng.normal(size=(12, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    weather = np.array(["fog", "rain", "sun"] * 4, dtype=object)
    X[weather == "fog"] *= -1  # far from the others: diversity prefers them too
    cands = Candidates([f"c{i}" for i in range(12)], [f"c{i}" for i in range(12)], X)
    cands.columns["metadata:weather"] = weather
    strategies = [SelectionStrategy(Metadata("weather"), Balance({"rain": 0.5, "sun": 0.5}))]
    if diversity is not None:
        strategies.append(SelectionStrategy(Embeddings(), Diversity(None, diversity)))
    cfg = SelectionConfig(n_samples=6, strategies=tuple(strategies))
    picks = select(cands, cfg, np.zeros((0, 8), np.float32))
    assert sorted(weather[picks.indices].tolist()) == ["rain"] * 3 + ["sun"] * 3


def test_balance_on_numeric_metadata_says_it_takes_categories() -> None:
    X = np.eye(4, dtype=np.float32)
    cands = Candidates(list("abcd"), list("abcd"), X)
    cands.columns["metadata:lightness"] = np.array([0.1, 0.5, 0.5, 0.9])
    bal = SelectionStrategy(Metadata("lightness"), Balance({"0.5": 0.5}))
    cfg = SelectionConfig(n_samples=2, strategies=(bal,))
    with pytest.raises(ConfigError, match=r"BALANCE takes categorical metadata .*'lightness'"):
        select(cands, cfg, np.zeros((0, 4), np.float32))


def test_categorical_int_metadata_of_the_pool_matches_the_candidates_classes() -> None:
    # The pool's stored inputs read a CATEGORICAL_INT's 2 back as 2.0: still class "2".
    X = np.eye(4, dtype=np.float32)
    cands = Candidates(list("abc"), list("abc"), X[:3])
    cands.columns["metadata:loc"] = np.array([1, 2, 1], dtype=object)
    pool = Candidates(["p"], ["p"], X[3:])
    pool.columns["metadata:loc"] = np.array([2.0])
    bal = SelectionStrategy(Metadata("loc"), Balance({"1": 0.5, "2": 0.5}))
    picks = select(cands, SelectionConfig(n_samples=1, strategies=(bal,)), X[3:], pool=pool)
    assert picks.indices.tolist() == [0]  # the pool's "2" counts: a "1" next
    assert [c["class"] for c in picks.balance[0]["classes"]] == ["1", "2"]


def test_a_selection_config_wrapped_as_lightlys_argument_is_read(tmp_path) -> None:
    inner = {
        "n_samples": 3,
        "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}],
    }
    assert SelectionConfig.from_lightly({"selection_config": inner}) == SelectionConfig(n_samples=3)
    p = tmp_path / "run.json"
    p.write_text(
        json.dumps({"worker_config": {"enable_training": False}, "selection_config": inner})
    )
    with pytest.raises(
        ConfigError,
        match=r"run\.json: this holds a whole Lightly run config; give its selection_config",
    ):
        SelectionConfig.from_file(p)


@pytest.mark.parametrize("diversity", [False, True])
def test_a_candidate_without_a_value_is_never_picked_and_is_counted(diversity, rng) -> None:
    # Scores of 0 fill the budget (by diversity); a candidate with no score (no predictions for
    # it) is unknown, not 0: never picked, as a THRESHOLD leaves it out, and counted.
    X = rng.normal(size=(12, 5))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    score = np.array([0.9, 0.8, 0.0, 0.0, 0.0, 0.0, np.nan, np.nan, np.nan, 0.7, 0.0, 0.0])
    cands = Candidates(
        [f"c{i}" for i in range(12)], [f"c{i}" for i in range(12)], X[:12], {"scores:t:s": score}
    )
    strategies = [SelectionStrategy(Scores("t", "s"), Weights())]
    if diversity:
        strategies.insert(0, SelectionStrategy(Embeddings(), Diversity()))
    picks = select(
        cands,
        SelectionConfig(n_samples=11, strategies=tuple(strategies)),
        np.zeros((0, 5), np.float32),
    )
    got = picks.indices.tolist()
    assert sorted(got[:3]) == [0, 1, 9] and sorted(got[3:]) == [2, 3, 4, 5, 10, 11]
    assert picks.stop_reason == "no positive objective"  # those left have no value
    assert picks.zero_objective == {
        "candidates": 6,
        "strategies": ["WEIGHTS(SCORES:t:s)"],
        "filled": 6,
        "without_value": 3,
        "without_value_strategies": ["WEIGHTS(SCORES:t:s)"],
    }
    assert [e["product"] for e in picks.explain[3:]] == [0.0] * 6
