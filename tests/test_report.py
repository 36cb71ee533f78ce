from __future__ import annotations

import io

import numpy as np
import pytest

from datapool.view import (
    HEIGHT,
    NEW_COLOUR,
    PLOT_BOX,
    WIDTH,
    _to_pixels,
    _top_axes,
    embedding_view_png,
    pca_2d,
    png_bytes,
)


@pytest.mark.parametrize(("n", "d"), [(2, 3), (40, 510), (300, 64), (1200, 510), (900, 100)])
def test_top_axes_match_a_full_eigendecomposition(rng, n, d):
    x = rng.standard_normal((n, 6)) @ rng.standard_normal((6, d)) + 0.3 * rng.standard_normal(
        (n, d)
    )
    centred = x - x.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    ref = vecs[:, ::-1][:, :2].T
    got = _top_axes(centred, 2)
    k = min(2, n - 1)  # n rows span at most n - 1 centred directions
    np.testing.assert_allclose(np.abs(np.sum(got[:k] * ref[:k], axis=1)), 1.0, atol=1e-6)


def test_pca_map_is_stable_and_separates_clusters(rng):
    a = rng.normal(0, 0.05, (50, 32)) + 1
    b = rng.normal(0, 0.05, (50, 32)) - 1
    x = np.vstack([a, b]).astype(np.float32)
    xy = pca_2d(x)
    np.testing.assert_array_equal(xy, pca_2d(x))
    assert len(set(np.sign(xy[:50, 0]))) == 1 and len(set(np.sign(xy[50:, 0]))) == 1
    assert np.sign(xy[0, 0]) != np.sign(xy[50, 0])


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _colour(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def test_view_draws_each_group_where_pca_puts_it(rng):
    old = rng.normal(0, 0.05, (60, 16)) + np.eye(16)[0]
    new = rng.normal(0, 0.05, (4, 16)) + np.eye(16)[1] * np.array([[1], [2], [3], [4]])
    unselected = rng.normal(0, 0.05, (30, 16)) - np.eye(16)[0]
    emb = np.vstack([old, new]).astype(np.float32)
    labels = np.array([0] * 60 + [1] * 4)
    png = embedding_view_png(
        emb,
        labels,
        1,
        ["initial-tag", "run-1"],
        unselected=unselected.astype(np.float32),
        title="pool: run-1 adds 4",
    )
    img = _decode_png(png)
    assert img.shape == (HEIGHT, WIDTH, 3)
    both = np.vstack([emb, unselected]).astype(np.float32)
    pca = pca_2d(both, fit=both)
    xy = np.rint(_to_pixels(pca)).astype(int)
    rows, cols = HEIGHT - 1 - xy[:, 1], xy[:, 0]
    # The map is not mirrored: component 1 grows to the right, component 2 upwards.
    assert (
        np.corrcoef(pca[:, 0], cols)[0, 1] > 0.999 and np.corrcoef(pca[:, 1], -rows)[0, 1] > 0.999
    )
    left, bottom, right, top = PLOT_BOX
    assert ((cols > left) & (cols < right) & (HEIGHT - rows > bottom) & (HEIGHT - rows < top)).all()
    green = _colour(NEW_COLOUR)
    for r, c in zip(rows[60:64], cols[60:64]):  # new samples: green dots, drawn on top
        assert np.abs(img[r, c].astype(int) - green).max() <= 12, img[r, c]
    for r, c in zip(rows[:60], cols[:60]):  # older samples: grey (r = g = b), darker than paper
        if np.min(np.hypot(rows[60:] - r, cols[60:] - c)) > 8:
            px = img[r, c].astype(int)
            assert px.max() - px.min() <= 6 and px.max() < 200, px
    for r, c in zip(rows[64:], cols[64:]):  # not selected: light blue crosses
        px = img[r, c].astype(int)
        assert px[2] > px[0] + 20, px
    ink = img.min(axis=2) < 100  # text and frame: dark pixels
    assert ink[: HEIGHT - int(top) - 2].sum() > 200  # the title above the map
    assert ink[HEIGHT - int(bottom) + 30 :].sum() > 300  # the legend under it
    assert ink[:, : int(left) - 2].sum() > 200  # the vertical axis name


def test_view_with_many_runs_and_a_long_title(rng):
    emb = rng.standard_normal((120, 8)).astype(np.float32)
    labels = np.repeat(np.arange(12), 10)
    tags = ["initial-tag"] + [f"run-{i}" for i in range(1, 12)]
    png = embedding_view_png(emb, labels, 11, tags, title="x" * 400)
    img = _decode_png(png)
    assert img.shape == (HEIGHT, WIDTH, 3)
    legend_rows = np.flatnonzero(img[HEIGHT - int(PLOT_BOX[1]) + 30 :].min(axis=(1, 2)) < 100)
    # 11 older runs share MAX_LEGEND_RUNS entries, plus this run's: 4 rows of 16 px at most.
    assert legend_rows.size and legend_rows.max() - legend_rows.min() < 4 * 16
    empty = embedding_view_png(
        np.zeros((0, 8), np.float32), np.zeros(0, np.int64), 0, ["initial-tag"]
    )
    assert _decode_png(empty).shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize("channels", [3, 4])
def test_png_bytes_round_trip(rng, channels):
    h, w = 37, 53
    pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    rows = np.zeros((h, 1 + channels * w), np.uint8)
    rows[:, 1:] = pixels.reshape(h, -1)
    from PIL import Image

    with Image.open(io.BytesIO(png_bytes(rows, channels=channels))) as im:
        assert im.mode == ("RGB" if channels == 3 else "RGBA")
        np.testing.assert_array_equal(np.asarray(im), pixels)
    rows[3, 0] = 1
    with pytest.raises(ValueError, match="filter byte 0"):
        png_bytes(rows, channels=channels)
    with pytest.raises(ValueError, match="must be"):
        png_bytes(rows[:, :-1], channels=channels)


def test_a_title_too_long_even_at_6_points_loses_its_middle_not_its_ends(rng):
    """A pool named with 200 characters: the title, centred over the map, fits the image and
    keeps the run's counts at its end (before, it ran off both edges, '(pool 5)' cut off)."""
    from datapool.view import _middle_cut

    emb = rng.standard_normal((5, 8)).astype(np.float32)
    title = "p" * 200 + ": initial-tag adds 5 of 5 candidates (pool 5)"
    img = _decode_png(embedding_view_png(emb, np.zeros(5, np.int64), 0, ["t"], title=title))
    band = img[: HEIGHT - int(PLOT_BOX[3]) - 2]  # the rows above the map
    ink = np.flatnonzero(band.min(axis=(0, 2)) < 200)
    assert ink.size and ink.min() >= 5 and ink.max() <= WIDTH - 6, (ink.min(), ink.max())
    cut = _middle_cut(title, 60)
    assert len(cut) == 61 and cut.startswith("p" * 30) and cut.endswith("(pool 5)")


def _traced_peak(fn) -> int:
    """The most bytes `fn` had allocated at once (NumPy reports its buffers to tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_the_view_of_a_big_pool_holds_no_copy_of_its_embeddings(rng, monkeypatch):
    # A 200,000 x 510 pool is 408 MB: stacking it with the candidates and centring the stack
    # took 2.8 GB (7 copies) and 10 s for a run that added 10 samples. The projection is now
    # done in chunks from the arrays as they are, so what it allocates is bounded by the PCA's
    # fit sample and one chunk, not by the pool (a smaller sample here, to leave the pool's size
    # the only big one).
    monkeypatch.setattr("datapool.view.MAX_PCA_FIT_ROWS", 2_000)
    pool = rng.standard_normal((60_000, 128), dtype=np.float32)
    unselected = rng.standard_normal((5_000, 128), dtype=np.float32)
    labels = np.zeros(len(pool), np.int64)
    embedding_view_png(pool[:10], labels[:10], 0, ["t"])  # imports and fonts, once
    peak = _traced_peak(lambda: embedding_view_png(pool, labels, 0, ["t"], unselected=unselected))
    assert peak < pool.nbytes / 2, (peak, pool.nbytes)


def test_row_stack_reads_its_parts_as_one_matrix(rng):
    from datapool.view import RowStack

    a, b = rng.standard_normal((7, 3), dtype=np.float32), rng.standard_normal((5, 3), np.float32)
    keep = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    rows = RowStack(a).where(keep) + RowStack(b)
    want = np.concatenate([a[keep], b])
    assert len(rows) == 9 and rows.dim == 3
    np.testing.assert_array_equal(rows.stack(), want)
    np.testing.assert_array_equal(rows.take(np.array([0, 3, 4, 8])), want[[0, 3, 4, 8]])
    np.testing.assert_array_equal(np.concatenate(list(rows.chunks(2))), want)
    mask = np.arange(9) % 2 == 0
    np.testing.assert_array_equal(rows.where(mask).stack(), want[mask])
    with pytest.raises(ValueError, match="a mask of 2 flags for 9 rows"):
        rows.where(np.ones(2, bool))
    # The projection of the stack is that of the stacked matrix; the caller's arrays unchanged.
    a0 = a.copy()
    np.testing.assert_allclose(pca_2d(rows), pca_2d(want), atol=1e-6)
    np.testing.assert_array_equal(a, a0)


def test_view_draws_in_the_pages_colours_and_order(rng):
    """The page's older runs became greys that fade with age (the oldest lightest) and its
    candidates #2c7fb8, but the PNG kept its own: older runs darkest first, faint light-blue
    crosses. Each group's dots in the PNG are now the colour the page gives that group
    (report_html._groups), drawn in the page's order: older runs (the oldest first), then the
    candidates, then this run's picks on top."""
    from types import SimpleNamespace

    from datapool.report_html import _groups

    centres = 4 * np.eye(16)[:5]  # runs 0, 1, 2 (older), the candidates, the pick: apart
    older = [rng.normal(0, 0.02, (10, 16)) + centres[r] for r in range(3)]
    unselected = (rng.normal(0, 0.02, (10, 16)) + centres[3]).astype(np.float32)
    emb = np.vstack([*older, centres[4:]]).astype(np.float32)
    labels = np.repeat([0, 1, 2, 3], [10, 10, 10, 1])
    tags = ["initial-tag", "run-1", "run-2", "run-3"]

    def pixels(emb, unselected):
        img = _decode_png(embedding_view_png(emb, labels, 3, tags, unselected=unselected))
        both = np.vstack([emb, unselected])
        xy = np.rint(_to_pixels(pca_2d(both, fit=both))).astype(int)
        return [tuple(int(v) for v in img[HEIGHT - 1 - y, x]) for x, y in xy]

    got = pixels(emb, unselected)
    groups = np.append(labels, np.full(10, 4))
    page = _groups(tags, 3, SimpleNamespace(groups=groups))
    assert [g["kind"] for g in page] == ["old", "old", "old", "new", "cand"]
    assert len({g["colour"] for g in page}) == 5  # the greys differ: they fade with age
    for g, group in enumerate(page):
        seen = {got[i] for i in np.flatnonzero(groups == g)}
        assert seen == {tuple(_colour(group["colour"]))}, (g, group["colour"], seen)
    # The order: candidates where run 0's samples are, the pick where a candidate is.
    got = pixels(np.vstack([*older, older[0][:1]]).astype(np.float32), older[0])
    assert tuple(_colour(page[0]["colour"])) not in got[:10], got[:10]  # all under
    assert tuple(_colour(page[4]["colour"])) in got[1:10], got[:10]
    assert got[30] == tuple(_colour(page[3]["colour"])), got[30]


def test_a_thinned_view_projects_only_the_rows_it_draws(rng, monkeypatch):
    """A pool of a million samples added by one run: the view drew 50,000 of them
    (MAX_PLOTTED_PER_GROUP) but projected all, reading the pool's 2 GB of embeddings for the
    map. It now projects only the rows it draws: the same rows as before (the same seeded
    choices, in the same order), each where the fit over every row puts it, the frame fitted
    to them."""
    import datapool.view as view

    monkeypatch.setattr(view, "MAX_PLOTTED_PER_GROUP", 40)
    emb = rng.standard_normal((135, 16)).astype(np.float32)
    labels = np.repeat([0, 1, 2], [100, 30, 5])
    unselected = rng.standard_normal((90, 16)).astype(np.float32)
    both_x = np.vstack([emb, unselected])
    # The rows the view drew before: thinned after the projection, by these choices.
    old = np.random.default_rng(0)
    want_0 = np.flatnonzero(labels == 0)[old.choice(100, 40, replace=False)]
    want_c = 135 + old.choice(90, 40, replace=False)
    drawn = view.drawn_rows(labels, 2, 90)
    assert len(drawn.older) == 2
    np.testing.assert_array_equal(drawn.older[0], want_0)
    np.testing.assert_array_equal(drawn.older[1], np.arange(100, 130))
    np.testing.assert_array_equal(drawn.candidates, want_c)
    np.testing.assert_array_equal(drawn.new, np.arange(130, 135))

    projected: list[int] = []
    real = view.pca_2d

    def counting(x, fit=None, seed=0):
        projected.append(len(x))
        return real(x, fit, seed)

    monkeypatch.setattr(view, "pca_2d", counting)
    png = view.embedding_view_png(emb, labels, 2, ["a", "b", "c"], unselected=unselected)
    assert projected == [40 + 30 + 40 + 5]
    rows = np.sort(drawn.all())
    xy = real(both_x, fit=both_x)[rows]  # the fit over every row, the drawn rows' places
    px = np.rint(view._to_pixels(xy)).astype(int)
    left, bottom, right, top = PLOT_BOX
    lo, hi = px.min(axis=0), px.max(axis=0)  # the drawn dots fill the frame, less its margin
    assert abs(lo[0] - (left + 0.05 / 1.1 * (right - left))) <= 1
    assert abs(hi[1] - (top - 0.05 / 1.1 * (top - bottom))) <= 1
    img = _decode_png(png)
    green = _colour(NEW_COLOUR)
    for r in range(130, 135):  # the new samples, on top, where the fit puts them
        x, y = px[np.searchsorted(rows, r)]
        assert np.abs(img[HEIGHT - 1 - y, x].astype(int) - green).max() <= 12


@pytest.mark.parametrize("cap", [10_000, 40])
def test_the_drawn_rows_pixels_are_those_of_the_whole_projection(rng, monkeypatch, cap):
    """Unthinned, the view's pixels are those drawn from every row, bit for bit; thinned, the
    drawn rows' coordinates are those of the projection of every row (framed to them)."""
    import datapool.view as view

    monkeypatch.setattr(view, "MAX_PLOTTED_PER_GROUP", cap)
    emb = rng.standard_normal((300, 24)).astype(np.float32)
    labels = np.repeat([0, 1], [290, 10])
    both = view.RowStack(emb)
    drawn = view.drawn_rows(labels, 1, 0)
    got = view._drawn_pixels(both, drawn)
    full = view.pca_2d(both)
    if cap > 300:
        np.testing.assert_array_equal(got, view._to_pixels(full))
    else:
        rows = np.sort(drawn.all())
        assert len(rows) == 50
        np.testing.assert_allclose(got[rows], view._to_pixels(full[rows]), atol=1e-6)
