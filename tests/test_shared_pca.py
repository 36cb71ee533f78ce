"""A run's PNG view and its report page each draw a PCA map of their own rows (the page shows a
sample of the candidates, first; the view all of them, last), so their fits differ; the pool's
rows, which both project, are read once for the two (view.pca_2d_shared). The pictures are
byte for byte those each drew alone."""

from __future__ import annotations

import numpy as np

from datapool import report_html as rh
from datapool import runner
from datapool.view import MAX_PCA_FIT_ROWS, RowStack, embedding_view_png, pca_2d, pca_2d_shared


def _rows(rng, n, d=8):
    return (rng.standard_normal((n, d)) + rng.integers(0, 4, (n, 1))).astype(np.float32)


def test_shared_pca_gives_each_stack_its_own_pca_bit_for_bit(rng):
    """Past MAX_PCA_FIT_ROWS (the fit on a seeded sample, so the order of the rows matters), a
    pool with holes (a changed file's samples dropped), candidates sampled for the page."""
    pool, new, cands = _rows(rng, MAX_PCA_FIT_ROWS + 5000), _rows(rng, 40), _rows(rng, 3000)
    keep = rng.random(len(pool)) > 0.01
    labels = np.concatenate([rng.integers(0, 3, int(keep.sum())), np.full(len(new), 3)])
    unselected = rng.random(len(cands)) > 0.1
    kept = RowStack(pool).where(keep) + RowStack(new)
    view_rows = kept + RowStack(cands).where(unselected)
    page_cands = RowStack(cands).where(unselected)
    page_rows = rh.map_rows(kept, labels, 3, page_cands, max_candidates=1000)
    view_xy, page_xy = pca_2d_shared(view_rows, page_rows)
    assert np.array_equal(view_xy, pca_2d(view_rows)) and np.array_equal(page_xy, pca_2d(page_rows))
    assert not np.array_equal(view_xy[: len(kept)], page_xy[-len(kept) :])  # two fits
    # The pictures: the PNG and the page's map data, with the shared coordinates and without.
    tags = ["a", "b", "c", "d"]
    png = embedding_view_png(kept, labels, 3, tags, unselected=page_cands, title="t")
    assert embedding_view_png(kept, labels, 3, tags, page_cands, "t", xy=view_xy) == png
    names = [f"s{i}.jpg" for i in range(len(kept))]
    cand_names = [f"c{i}.jpg" for i in range(len(page_cands))]
    args = (names, kept, labels, names, 3, 4, None, cand_names, page_cands, None, "pca", 1000)
    alone, shared = rh.map_data(*args), rh.map_data(*args, xy=page_xy)
    assert np.array_equal(alone.xy, shared.xy) and alone.names == shared.names
    # Tiny stacks: no fit (zeros), as pca_2d.
    one, empty = pca_2d_shared(RowStack(new[:1]), RowStack(new[:0]))
    assert np.array_equal(one, pca_2d(new[:1])) and empty.shape == (0, 2)


def test_a_run_draws_the_same_view_and_page_as_each_alone(
    bucket, tmp_path, make_media, monkeypatch
):
    """The view and the page a run commits, against each drawn from its own PCA (xy=None) with
    the same arguments: the same bytes. A second run (older samples, candidates not selected)."""
    from datapool import run

    drawn = []

    def spy(real, key):
        def call(*args, **kwargs):
            out = real(*args, **kwargs)
            drawn.append((key, real, args, kwargs, out))
            return out

        return call

    pool_dir = tmp_path / "pool"
    run(bucket, pool_dir, n_samples=4)
    for i in range(6):
        make_media(bucket / "more" / f"n{i}.jpg", seed=300 + i)
    monkeypatch.setattr(runner, "embedding_view_png", spy(runner.embedding_view_png, "view"))
    monkeypatch.setattr(runner, "run_report_html", spy(runner.run_report_html, "page"))
    run(bucket, pool_dir, n_samples=2)
    assert [d[0] for d in drawn] == ["view", "page"]
    for key, real, args, kwargs, out in drawn:
        if key == "view":
            assert kwargs["xy"] is not None
            assert real(*args, **{**kwargs, "xy": None}) == out
        else:
            assert args[-1] is not None  # the page's coordinates, passed in
            assert real(*args[:-1], None) == out
    assert (pool_dir / "runs/1/embedding_view.png").read_bytes() == drawn[0][-1]
