from __future__ import annotations

import numpy as np
import pytest

from datapool.report import _top_axes, pca_2d


@pytest.mark.parametrize(("n", "d"), [(2, 3), (40, 510), (300, 64), (1200, 510), (900, 100)])
def test_top_axes_match_a_full_eigendecomposition(rng, n, d):
    x = rng.standard_normal((n, 6)) @ rng.standard_normal((6, d)) + 0.3 * rng.standard_normal((n, d))
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
