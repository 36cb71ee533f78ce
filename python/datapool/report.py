"""A run's report: report.json, and the embedding view, a 2-D PCA map of the pool.

In the view every pool sample is a dot coloured by the run that added it: older runs in shades of
grey, this run's new samples in green on top. Candidates this run saw but did not select are faint
blue crosses, so the view shows both what came in and what was kept.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

MAX_PCA_FIT_ROWS = 20_000
MAX_PLOTTED_PER_GROUP = 50_000


def pca_2d(x: npt.NDArray[np.float32], fit: npt.NDArray[np.float32] | None = None, seed: int = 0) -> npt.NDArray[np.float64]:
    """Project rows of `x` on the first two principal axes of `fit` (default: `x`).

    The fit uses at most MAX_PCA_FIT_ROWS rows (a seeded sample) so the view stays cheap for
    large pools. Signs are fixed (largest loading positive) so the map is stable run to run.
    """
    fit = x if fit is None else fit
    out = np.zeros((x.shape[0], 2))
    if x.shape[0] == 0 or fit.shape[0] < 2:
        return out
    if fit.shape[0] > MAX_PCA_FIT_ROWS:
        rows = np.random.default_rng(seed).choice(fit.shape[0], MAX_PCA_FIT_ROWS, replace=False)
        fit = fit[np.sort(rows)]
    mean = fit.mean(axis=0, dtype=np.float64)
    centred = fit.astype(np.float64) - mean
    axes = _top_axes(centred, 2)
    axes *= np.sign(axes[np.arange(axes.shape[0]), np.abs(axes).argmax(axis=1)])[:, None]
    proj = (x.astype(np.float64) - mean) @ axes.T
    out[:, : proj.shape[1]] = proj
    return out


def _top_axes(centred: npt.NDArray[np.float64], k: int, iters: int = 60) -> npt.NDArray[np.float64]:
    """The top-k principal axes (k, d) of centred data, by block subspace iteration on the smaller
    of the Gram (n x n) and covariance (d x d) matrices, with a Rayleigh-Ritz step.

    A full eigendecomposition of a 510 x 510 covariance costs ~45 ms; the view needs only two
    axes, and a block of 8 vectors converges to them in a few milliseconds. The start block is
    seeded, so the map is the same run to run.
    """
    n, d = centred.shape
    gram = n < d
    m = centred @ centred.T if gram else centred.T @ centred
    size = m.shape[0]
    block = min(size, k + 6)
    if size <= 64:
        _, vecs = np.linalg.eigh(m)
        top = vecs[:, ::-1][:, :k]
    else:
        q = np.linalg.qr(np.random.default_rng(0).standard_normal((size, block)))[0]
        prev = None
        for _ in range(iters):
            q = np.linalg.qr(m @ q)[0]
            ritz = np.linalg.eigvalsh(q.T @ m @ q)[::-1][:k]
            if prev is not None and np.allclose(ritz, prev, rtol=1e-9, atol=1e-12):
                break
            prev = ritz
        _, small = np.linalg.eigh(q.T @ m @ q)
        top = q @ small[:, ::-1][:, :k]
    axes = (centred.T @ top).T if gram else top.T.copy()
    axes /= np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-300)
    if axes.shape[0] < k:
        axes = np.vstack([axes, np.zeros((k - axes.shape[0], d))])
    return axes


def embedding_view_png(
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    run_index: int,
    tags: list[str],
    unselected: npt.NDArray[np.float32] | None = None,
    title: str = "",
) -> bytes:
    """Render the embedding view as PNG bytes (matplotlib's Agg backend, no display needed)."""
    from matplotlib.figure import Figure

    unselected = np.zeros((0, embeddings.shape[1] if embeddings.ndim == 2 else 0), np.float32) if unselected is None else unselected
    both = np.concatenate([embeddings, unselected]) if unselected.shape[0] else embeddings
    xy = pca_2d(both, fit=both)
    pool_xy, cand_xy = xy[: embeddings.shape[0]], xy[embeddings.shape[0] :]
    rng = np.random.default_rng(0)

    def thin(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if points.shape[0] <= MAX_PLOTTED_PER_GROUP:
            return points
        return points[rng.choice(points.shape[0], MAX_PLOTTED_PER_GROUP, replace=False)]

    fig = Figure(figsize=(7.5, 6.5), dpi=110)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.2, top=0.94)  # fixed: tight_layout costs 60 ms
    ax = fig.subplots()
    old_runs = list(range(run_index))
    for i, r in enumerate(old_runs):
        pts = thin(pool_xy[labels == r])
        if pts.shape[0] == 0:
            continue
        shade = 0.35 + 0.4 * (i / max(len(old_runs) - 1, 1))  # oldest darkest
        ax.scatter(pts[:, 0], pts[:, 1], s=14, color=str(shade), alpha=0.8, linewidths=0,
                   label=f"{tags[r]} ({pts.shape[0]})")
    if cand_xy.shape[0]:
        pts = thin(cand_xy)
        ax.scatter(pts[:, 0], pts[:, 1], s=10, marker="x", color="#6baed6", alpha=0.5,
                   linewidths=0.8, label=f"seen this run, not selected ({cand_xy.shape[0]})")
    new = pool_xy[labels == run_index]
    if new.shape[0]:
        ax.scatter(new[:, 0], new[:, 1], s=42, color="#1a9850", edgecolors="black", linewidths=0.5,
                   label=f"{tags[run_index]}: new ({new.shape[0]})", zorder=3)
    # PCA coordinates carry no units, so no tick labels: they were most of the text to lay out.
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title or f"datapool embedding view: {tags[run_index]}")
    if ax.get_legend_handles_labels()[0]:
        # Below the map: never hides a point, and cheaper than loc="best".
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})  # zlib level 6 costs 16 ms more
    return buf.getvalue()
