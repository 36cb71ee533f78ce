"""The C++ greedy combined rule (pruned) against the NumPy one (plain, float64 distances) on
problems large enough for the pruning to skip most distances."""

from __future__ import annotations

import numpy as np
import pytest

from datapool.select.greedy import BalanceTerm, greedy, greedy_core


def _clustered(seed: int, n: int, d: int, clusters: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d))
    X = centers[rng.integers(0, clusters, n)] + 0.15 * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _same(a, b) -> None:
    """The same picks, or the same up to a near-tie (equal scores within 1e-5), after which
    the sequences may differ."""
    for j, (x, y) in enumerate(zip(a.indices.tolist(), b.indices.tolist())):
        if x != y:
            assert abs(a.scores[j] - b.scores[j]) <= 1e-5 * max(1.0, abs(b.scores[j])), j
            return
    assert len(a.indices) == len(b.indices)
    np.testing.assert_allclose(a.min_distances, b.min_distances, rtol=1e-5)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    assert a.stop_reason == b.stop_reason


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pool_rows", [0, 1, 40])
@pytest.mark.parametrize("mix", ["weights", "threshold", "balance", "all", "two-balances"])
def test_core_matches_numpy(seed: int, pool_rows: int, mix: str) -> None:
    rng = np.random.default_rng(100 + seed)
    n, d, C = 3000, 16, 5
    X = _clustered(seed, n, d, 30)
    S = _clustered(seed + 50, pool_rows, d, 5) if pool_rows else np.zeros((0, d), np.float32)
    fixed = np.zeros(n)
    mask = np.ones(n, bool)
    balances: tuple[BalanceTerm, ...] = ()
    if mix in ("weights", "all"):
        fixed = float(rng.choice([0.5, 2.0, -1.0])) * np.log(rng.random(n) + 1e-3)
    if mix in ("threshold", "all"):
        mask = rng.random(n) < 0.6
    if mix in ("balance", "all"):
        P = np.eye(C)[rng.integers(0, C, n)]
        P[rng.random(n) < 0.2] = rng.dirichlet(np.ones(C), size=1)  # some soft rows
        counts = np.eye(C)[rng.integers(0, C, pool_rows)].sum(0) if pool_rows else np.zeros(C)
        balances = (BalanceTerm(P, counts, np.array([0.5, 0.2, 0.1, 0.1, 0.1]), 1.5),)
    if mix == "two-balances":
        P1 = np.eye(C)[rng.integers(0, C, n)]
        P2 = rng.dirichlet(np.ones(3), size=n)
        balances = (
            BalanceTerm(P1, np.zeros(C), np.array([0.6, 0.1, 0.1, 0.1, 0.1]), 1.0),
            BalanceTerm(P2, np.zeros(3), np.array([0.2, 0.2, 0.6]), -0.5),
        )
    kw = dict(fixed=fixed, mask=mask, diversity=float(rng.choice([1.0, 2.0])), balances=balances)
    md = 0.05 if seed == 3 else 0.0
    ours = greedy_core(X, 400, S, min_distance=md, **kw)
    ref = greedy(X, 400, S, min_distance=md, **kw)
    _same(ours, ref)


def test_duplicates_and_the_pool() -> None:
    X = _clustered(0, 200, 8, 4)
    X[100:] = X[:100]  # every row twice
    S = X[:10].copy()
    kw = dict(fixed=np.zeros(200), mask=np.ones(200, bool), diversity=1.0)
    ours, ref = greedy_core(X, 200, S, **kw), greedy(X, 200, S, **kw)
    _same(ours, ref)
    assert ours.stop_reason == "no candidate differs from the pool"
