"""The C++ greedy combined rule (pruned) against the NumPy one (plain, float64 distances) on
problems large enough for the pruning to skip most distances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from datapool import _core
from datapool.select.greedy import BalanceTerm, greedy, greedy_core

KERNELS = _core.SIMD_AVAILABLE.split(",")


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


def _mix(rng, mix: str, n: int, pool_rows: int) -> dict:
    """The strategy terms of a mix, as greedy and greedy_core take them."""
    C = 5
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
    return dict(fixed=fixed, mask=mask, diversity=float(rng.choice([1.0, 2.0])), balances=balances)


MIXES = ["weights", "threshold", "balance", "all", "two-balances"]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pool_rows", [0, 1, 40])
@pytest.mark.parametrize("mix", MIXES)
def test_core_matches_numpy(seed: int, pool_rows: int, mix: str) -> None:
    rng = np.random.default_rng(100 + seed)
    n, d = 3000, 16
    X = _clustered(seed, n, d, 30)
    S = _clustered(seed + 50, pool_rows, d, 5) if pool_rows else np.zeros((0, d), np.float32)
    kw = _mix(rng, mix, n, pool_rows)
    md = 0.05 if seed == 3 else 0.0
    ours = greedy_core(X, 400, S, min_distance=md, screen=seed % 2 == 1, **kw)
    assert ours.info["screen"] == ("int8" if seed % 2 else "off")
    ref = greedy(X, 400, S, min_distance=md, **kw)
    _same(ours, ref)


def _screen_exact(X, k, S, **kw):
    """greedy_core with and without the int8 screen: the same picks, min-distances, scores,
    balance terms, stop and evaluations, bit for bit. Returns the screened run."""
    on = greedy_core(X, k, S, screen=True, **kw)
    off = greedy_core(X, k, S, screen=False, **kw)
    np.testing.assert_array_equal(on.indices, off.indices)
    np.testing.assert_array_equal(on.min_distances, off.min_distances)
    assert on.scores == off.scores
    np.testing.assert_array_equal(on.balance_terms, off.balance_terms)
    assert on.stop_reason == off.stop_reason
    assert on.info["evaluations"] == off.info["evaluations"]
    # (one pick is made before the screen is built: with k = 1 there is none)
    assert (on.info["screen"], off.info["screen"]) == ("int8" if k > 1 else "off", "off")
    assert off.info["rechecks"] == 0 and on.info["rechecks"] <= on.info["evaluations"]
    return on


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("pool_rows", [0, 1, 40])
@pytest.mark.parametrize("mix", MIXES)
def test_screen_is_exact_for_every_mix(kernels: str, pool_rows: int, mix: str) -> None:
    """Large enough for the passes that screen every row, the compacted copy of the rows that
    are not dormant, and the member lists after them."""
    rng = np.random.default_rng(7)
    n, d = 24_000, 24
    X = _clustered(1, n, d, 40)
    S = _clustered(2, pool_rows, d, 8) if pool_rows else np.zeros((0, d), np.float32)
    kw = _mix(rng, mix, n, pool_rows)
    threads = 2 if mix in ("weights", "all") else 1
    on = _screen_exact(X, 700, S, kernels=kernels, threads=threads, **kw)
    assert on.info["kernels"] == kernels
    assert on.info["rechecks"] < 0.5 * on.info["evaluations"]  # the screen rules most rows out


@pytest.mark.parametrize("min_distance", [0.3, 0.9])
def test_screen_with_min_distance_and_duplicates(min_distance: float) -> None:
    rng = np.random.default_rng(3)
    X = _clustered(5, 12_000, 16, 20)
    X[6000:9000] = X[:3000]  # duplicates: dropped when a twin is picked
    kw = _mix(rng, "all", X.shape[0], 0)
    on = _screen_exact(X, 3000, X[:5], min_distance=min_distance, **kw)
    assert on.stop_reason in ("min_distance", "budget")


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    mix=st.sampled_from(MIXES),
    pool_rows=st.sampled_from([0, 1, 30]),
    clusters=st.integers(1, 60),
    d=st.integers(1, 40),
)
@example(seed=128988, mix="weights", pool_rows=0, clusters=1, d=1)  # k = 1: no screen is built
def test_property_screen_is_exact(seed: int, mix: str, pool_rows: int, clusters: int, d: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 6000))
    X = _clustered(seed, n, d, clusters)
    S = _clustered(seed + 1, pool_rows, d, 3) if pool_rows else np.zeros((0, d), np.float32)
    _screen_exact(X, int(rng.integers(1, 400)), S, **_mix(rng, mix, n, pool_rows))


def test_duplicates_and_the_pool() -> None:
    X = _clustered(0, 200, 8, 4)
    X[100:] = X[:100]  # every row twice
    S = X[:10].copy()
    kw = dict(fixed=np.zeros(200), mask=np.ones(200, bool), diversity=1.0)
    ours, ref = greedy_core(X, 200, S, **kw), greedy(X, 200, S, **kw)
    _same(ours, ref)
    assert ours.stop_reason == "no candidate differs from the pool"


@pytest.mark.parametrize("thresholds", [False, True])
def test_the_stop_reason_for_objectives_of_0_is_the_same_in_both(thresholds: bool) -> None:
    # WEIGHTS of 0 (a detection score of a picture without boxes) and a budget above the rest:
    # the C++ core said "no more candidates pass the thresholds" where there was no THRESHOLD,
    # and NumPy "no positive objective". Both now say why: an objective of 0, unless the
    # thresholds are what left none.
    X = _clustered(1, 300, 8, 6)
    w = np.zeros(300)
    w[::3] = -np.inf  # objective 0 under a positive strength
    mask = np.ones(300, bool)
    if thresholds:
        mask[1::3] = False  # every third row fails a threshold as well
    kw = dict(fixed=w, mask=mask, diversity=1.0)
    ours, ref = (
        greedy_core(X, 300, np.zeros((0, 8), np.float32), **kw),
        greedy(X, 300, np.zeros((0, 8), np.float32), **kw),
    )
    _same(ours, ref)
    assert ours.stop_reason == "no positive objective"
    assert len(ours.indices) == (100 if thresholds else 200)
    # Thresholds alone left none: that reason stands.
    kw = dict(fixed=np.zeros(300), mask=mask, diversity=1.0)
    ours = greedy_core(X, 300, np.zeros((0, 8), np.float32), **kw)
    assert ours.stop_reason == (
        "no more candidates pass the thresholds" if thresholds else "budget"
    )
