from __future__ import annotations

import functools
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapool import _core
from datapool import select_diverse as _select_diverse

# These tests check the core's exact Euclidean selection on rows of any length; the public
# function's check that rows are unit length is tested in tests/test_python_api.py.
select_diverse = functools.partial(_select_diverse, check_unit_rows=False)

ALGORITHMS = ["pruned", "brute"]
KERNELS = _core.SIMD_AVAILABLE.split(",")


def clustered(rng, n, d, clusters, spread=0.05):
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def reference_fps(
    cand: np.ndarray, n_samples: int, selected: np.ndarray | None = None, min_distance: float = 0.0
) -> tuple[list[int], list[float]]:
    """float64 NumPy farthest-point selection with the documented rules."""
    c = cand.astype(np.float64)
    mind = np.full(len(c), np.inf)
    if selected is not None and len(selected):
        s = selected.astype(np.float64)
        mind = np.sqrt(((c[:, None, :] - s[None, :, :]) ** 2).sum(-1)).min(1)
    picks, dists = [], []
    while len(picks) < min(n_samples, len(c)):
        i = int(np.argmax(mind))
        if not mind[i] > 0 or mind[i] < min_distance:
            break
        picks.append(i)
        dists.append(float(mind[i]))
        mind = np.minimum(mind, np.sqrt(((c - c[i]) ** 2).sum(1)))
    return picks, dists


def check_against_reference(cand, n, selected=None, min_distance=0.0, **kw):
    got = select_diverse(cand, n, selected=selected, min_distance=min_distance, **kw)
    picks, dists = reference_fps(cand, n, selected, min_distance)
    # Same distance profile to 1e-5 relative; indices may differ only at near-ties.
    assert len(got) == len(picks)
    np.testing.assert_allclose(
        got.min_distances, np.asarray(dists, np.float32), rtol=1e-5, atol=1e-6
    )
    return got, picks


def test_matches_reference_clustered(rng):
    centers = rng.normal(size=(20, 16))
    cand = (centers[rng.integers(0, 20, 500)] + 0.05 * rng.normal(size=(500, 16))).astype(
        np.float32
    )
    got, picks = check_against_reference(cand, 60)
    assert got.indices.tolist() == picks


def test_pool_counts_as_selected_and_first_pick_is_farthest_from_pool(rng):
    pool = rng.normal(size=(30, 8)).astype(np.float32)
    cand = rng.normal(size=(200, 8)).astype(np.float32)
    got, _ = check_against_reference(cand, 10, selected=pool)
    d_to_pool = np.sqrt(((cand[:, None] - pool[None]) ** 2).sum(-1)).min(1)
    assert got.indices[0] == int(np.argmax(d_to_pool))
    np.testing.assert_allclose(got.min_distances[0], d_to_pool.max(), rtol=1e-5)


def test_empty_pool_first_pick_is_index_zero_at_infinity(rng):
    cand = rng.normal(size=(10, 4)).astype(np.float32)
    got = select_diverse(cand, 3)
    assert got.indices[0] == 0
    assert np.isinf(got.min_distances[0])
    assert np.all(np.diff(got.min_distances[1:]) <= 0)


def test_never_picks_a_duplicate_of_the_pool(rng):
    pool = rng.normal(size=(5, 6)).astype(np.float32)
    fresh = rng.normal(size=(3, 6)).astype(np.float32)
    cand = np.ascontiguousarray(np.concatenate([pool, fresh, pool[:2]]))
    got = select_diverse(cand, len(cand), selected=pool)
    assert sorted(got.indices.tolist()) == [5, 6, 7]


def test_min_distance_stops_selection(rng):
    cand = rng.normal(size=(300, 5)).astype(np.float32)
    full = select_diverse(cand, 300)
    threshold = float(full.min_distances[40])
    got, _ = check_against_reference(cand, 300, min_distance=threshold)
    assert np.all(got.min_distances[1:] >= threshold)
    assert len(got) >= 41


def test_all_equal_points_give_one_pick():
    cand = np.ones((50, 3), np.float32)
    got = select_diverse(cand, 10)
    assert got.indices.tolist() == [0]


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_small_sizes(n, rng):
    cand = rng.normal(size=(n, 3)).astype(np.float32)
    check_against_reference(cand, n)


def test_empty_selected_matrix_is_like_none(rng):
    cand = rng.normal(size=(20, 3)).astype(np.float32)
    a = select_diverse(cand, 5, selected=np.zeros((0, 3), np.float32))
    b = select_diverse(cand, 5)
    assert a.indices.tolist() == b.indices.tolist()


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 300),
    m=st.sampled_from([0, 1, 2, 7, 40]),
    d=st.integers(1, 40),
    k=st.integers(0, 120),
    clusters=st.integers(1, 12),
    dup=st.booleans(),
    algorithm=st.sampled_from(ALGORITHMS),
    kernels=st.sampled_from(KERNELS),
    threads=st.sampled_from([1, 2]),
    screen=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_agrees_with_float64_reference(
    n, m, d, k, clusters, dup, algorithm, kernels, threads, screen, seed
):
    r = np.random.default_rng(seed)
    cand = clustered(r, n, d, clusters) if n else np.zeros((0, d), np.float32)
    if dup and n > 1:
        cand[n // 2 :] = cand[: n - n // 2]  # duplicated points
    sel = clustered(r, m, d, clusters) if m else None
    check_against_reference(
        cand,
        min(k, n),
        selected=sel,
        algorithm=algorithm,
        kernels=kernels,
        threads=threads,
        screen=screen,
    )


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("with_pool", [False, True])
@pytest.mark.parametrize("screen", [True, False])
def test_pruned_equals_brute_and_skips_work_on_clustered_data(rng, kernels, with_pool, screen):
    x = clustered(rng, 20_000, 32, clusters=20)
    pool = clustered(rng, 50, 32, clusters=20) if with_pool else None
    brute = select_diverse(x, 400, selected=pool, algorithm="brute", kernels=kernels, threads=1)
    pruned = select_diverse(
        x, 400, selected=pool, algorithm="pruned", kernels=kernels, threads=1, screen=screen
    )
    assert pruned.algorithm == "pruned" and brute.algorithm == "brute"
    assert pruned.screen == ("int8" if screen else "off") and brute.screen == "off"
    assert pruned.kernels == kernels
    # Same kernel, same arithmetic: the pruned run must reproduce brute force exactly.
    np.testing.assert_array_equal(pruned.indices, brute.indices)
    np.testing.assert_array_equal(pruned.min_distances, brute.min_distances)
    # ...while measuring far fewer distances (20 clusters, 400 picks: most are out of reach).
    assert brute.evaluations >= 0.95 * len(x) * (len(brute) - 1)
    assert pruned.evaluations < 0.25 * brute.evaluations


def test_kernels_agree_with_each_other(rng):
    x = clustered(rng, 3000, 45, clusters=8)  # d not a multiple of 8 or 16: tails
    runs = [select_diverse(x, 200, kernels=k, threads=1) for k in KERNELS]
    for other in runs[1:]:
        np.testing.assert_allclose(other.min_distances, runs[0].min_distances, rtol=1e-5)


def test_threads_give_the_same_picks(rng):
    x = clustered(rng, 50_000, 24, clusters=30)
    one = select_diverse(x, 300, threads=1)
    for threads in (0, 2, 3):
        many = select_diverse(x, 300, threads=threads)
        np.testing.assert_array_equal(many.indices, one.indices)
        np.testing.assert_array_equal(many.min_distances, one.min_distances)


def test_selected_may_be_a_memmap(tmp_path, rng):
    pool = clustered(rng, 500, 16, clusters=5)
    path = tmp_path / "pool.f32"
    pool.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=pool.shape)
    cand = clustered(rng, 2000, 16, clusters=5)
    a = select_diverse(cand, 50, selected=mapped)
    b = select_diverse(cand, 50, selected=pool)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"candidates": np.zeros((3, 2), np.float64)}, TypeError, r"float32.*astype"),
        ({"candidates": np.zeros((4, 4), np.float32)[:, ::2]}, ValueError, "ascontiguousarray"),
        ({"candidates": np.zeros(3, np.float32)}, ValueError, "2-D"),
        ({"candidates": np.array([[0, np.nan]], np.float32)}, ValueError, "NaN or infinite.*row 0"),
        ({"candidates": np.array([[0, np.inf]], np.float32)}, ValueError, "NaN or infinite"),
        (
            {"candidates": np.zeros((3, 2), np.float32), "selected": np.zeros((2, 5), np.float32)},
            ValueError,
            "dimension 5 but candidates have 2",
        ),
        ({"candidates": np.zeros((3, 2), np.float32), "n_samples": 4}, ValueError, "out of range"),
        # a 3-D stack of one matrix: its shape, not "only 1 candidates"
        ({"candidates": np.zeros((1, 4, 5), np.float32), "n_samples": 3}, ValueError, "2-D"),
        ({"candidates": np.zeros(4, np.float32)}, ValueError, "2-D"),
        ({"candidates": np.zeros((3, 2), np.float32), "n_samples": -1}, ValueError, ">= 0"),
        ({"candidates": np.zeros((3, 2), np.float32), "n_samples": 1.5}, TypeError, "int"),
        (
            {"candidates": np.zeros((3, 2), np.float32), "min_distance": -1.0},
            ValueError,
            "min_distance",
        ),
        ({"candidates": [[0.0, 1.0]]}, TypeError, "numpy array"),
        (
            {"candidates": np.zeros((3, 2), np.float32), "algorithm": "fast"},
            ValueError,
            "algorithm",
        ),
        (
            {"candidates": np.zeros((3, 2), np.float32), "kernels": "neon"},
            ValueError,
            "not available",
        ),
        ({"candidates": np.zeros((3, 2), np.float32), "threads": -1}, ValueError, "threads"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, exc, match):
    kwargs = dict(kwargs)
    cand = kwargs.pop("candidates")
    with pytest.raises(exc, match=match):
        select_diverse(cand, kwargs.pop("n_samples", 1), **kwargs)


def test_ctrl_c_interrupts_a_long_selection(tmp_path):
    script = textwrap.dedent(
        """
        import sys, numpy as np
        from datapool import select_diverse
        x = np.random.default_rng(0).normal(size=(400_000, 64)).astype(np.float32)
        print("ready", flush=True)
        try:
            select_diverse(x, 400_000, check_unit_rows=False)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(7)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    import time

    time.sleep(1.0)  # let it get into the C++ loop
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 7, out
    assert "interrupted" in out


class _Stop(Exception):
    pass


def _stop_at_second_call(seen: list[int]):
    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise _Stop(n)

    return progress


def test_a_long_selection_reports_its_picks_as_it_goes():
    """A selection of 21,000 candidates showed only its time for up to 99 s: the core now gives
    the picks so far to `progress` while it works (about every 50 ms). A selection that would
    take minutes is stopped here by what `progress` raises, which comes back as raised; on the
    way it saw the picks grow."""
    x = np.random.default_rng(0).normal(size=(100_000, 32)).astype(np.float32)
    seen: list[int] = []
    with pytest.raises(_Stop):
        select_diverse(x, 100_000, threads=1, progress=_stop_at_second_call(seen))
    assert len(seen) == 2 and 0 <= seen[0] <= seen[1] < 100_000 and seen[1] > 0, seen
    from datapool.select.greedy import greedy_core

    seen = []
    with pytest.raises(_Stop):
        greedy_core(
            x,
            100_000,
            np.zeros((0, 32), np.float32),
            fixed=np.zeros(len(x)),
            mask=np.ones(len(x), bool),
            diversity=1.0,
            threads=1,
            progress=_stop_at_second_call(seen),
        )
    assert len(seen) == 2 and 0 <= seen[0] <= seen[1] < 100_000 and seen[1] > 0, seen


@pytest.mark.parametrize("algorithm", ["brute", "pruned"])
def test_progress_leaves_the_picks_bit_for_bit(algorithm):
    x = np.random.default_rng(1).normal(size=(30_000, 48)).astype(np.float32)
    pool = np.random.default_rng(2).normal(size=(50, 48)).astype(np.float32)
    seen: list[int] = []
    a = select_diverse(x, 600, selected=pool, algorithm=algorithm, progress=seen.append)
    b = select_diverse(x, 600, selected=pool, algorithm=algorithm)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.min_distances.tobytes() == b.min_distances.tobytes()
    assert seen == sorted(seen) and all(0 <= n <= 600 for n in seen)


def test_the_selection_phase_counts_picks_out_of_a_count_budget_only():
    """`select` counts its picks on the run's phase: out of the budget where it is a count
    (--n-samples, --proportion-samples); with a minimum distance alone, the picks so far."""
    from datapool.candidates import Candidates
    from datapool.config import SelectionConfig
    from datapool.progress import Progress
    from datapool.select import select

    x = np.random.default_rng(3).normal(size=(40, 8)).astype(np.float32)
    cands = Candidates([f"c{i}" for i in range(40)], [f"c{i}" for i in range(40)], x)
    none = np.zeros((0, 8), np.float32)
    for config, total in (
        (SelectionConfig(n_samples=7), 7),
        (SelectionConfig(proportion_samples=0.25), 10),
        (SelectionConfig(min_distance=0.5), None),
    ):
        with Progress("off").phase("selection", unit="picks") as ph:
            picks = select(cands, config, none, phase=ph)
        assert ph.total == total and len(picks) > 0
        assert ph.describe().split()[1] == (
            f"{int(ph.done)}/{total}" if total else str(int(ph.done))
        )
