"""A run's report: report.json, and the embedding view, a 2-D PCA map of the pool.

In the view every pool sample is a dot coloured by the run that added it: older runs in greys
that fade with age (the oldest lightest), drawn first, the oldest first; then the candidates this
run saw but did not select, blue dots; then this run's new samples, green circles, on top. So the
view shows both what came in and what was kept, in the colours and order of the report page
(report_html.py, which reads the palette from here). The legend, under the map, counts each group;
older runs past six share one entry.

Every run draws it, so it is drawn cheaply: matplotlib's Agg renderer called directly (no
Figure or Axes), FreeType bitmaps for the text, float32 PCA, and a PNG written with zlib level 1
(~11 ms for a 1100-sample pool where a Figure took ~48).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

MAX_PCA_FIT_ROWS = 20_000
MAX_PLOTTED_PER_GROUP = 50_000


_PROJECT_CHUNK = 8192  # rows centred and projected at once: 16 MiB of float32 at d = 510


class RowStack:
    """The rows of one or more (n, d) matrices, each taken whole or through a row index, read as
    one matrix without stacking it: `np.concatenate` of a 200,000-sample pool at d = 510 copies
    408 MB, and a run's view and report page did that several times over.

        RowStack(pool.embeddings).where(keep) + RowStack(new_embeddings)

    A part stays the caller's array (a memory map stays mapped); only `take` and `chunks` copy,
    the rows they are asked for.
    """

    def __init__(self, *arrays: npt.NDArray[np.float32]) -> None:
        self.parts: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.intp] | None]] = [
            (a, None) for a in arrays
        ]

    @classmethod
    def of(cls, x: npt.NDArray[np.float32] | RowStack) -> RowStack:
        return x if isinstance(x, RowStack) else cls(x)

    def _sizes(self) -> list[int]:
        return [a.shape[0] if i is None else len(i) for a, i in self.parts]

    def __len__(self) -> int:
        return sum(self._sizes())

    @property
    def dim(self) -> int:
        return max((a.shape[1] for a, _ in self.parts if a.ndim == 2), default=0)

    def __add__(self, other: RowStack) -> RowStack:
        out = RowStack()
        out.parts = self.parts + other.parts
        return out

    def where(self, mask: npt.NDArray[np.bool_]) -> RowStack:
        """The rows where `mask` (one flag per row) is true, in order."""
        if len(mask) != len(self):
            raise ValueError(f"a mask of {len(mask)} flags for {len(self)} rows")
        out, start = RowStack(), 0
        for (a, index), size in zip(self.parts, self._sizes()):
            m = np.asarray(mask[start : start + size], bool)
            start += size
            if index is None and m.all():
                out.parts.append((a, None))
            else:
                rows = np.flatnonzero(m)
                out.parts.append((a, rows if index is None else index[rows]))
        return out

    def take(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """A float32 copy of the rows at the sorted positions `rows`."""
        blocks, start = [], 0
        for (a, index), size in zip(self.parts, self._sizes()):
            lo, hi = np.searchsorted(rows, [start, start + size])
            local = rows[lo:hi] - start
            start += size
            if local.size:
                blocks.append(np.asarray(a[local if index is None else index[local]], np.float32))
        if len(blocks) == 1:
            return blocks[0] if blocks[0].base is None else blocks[0].copy()
        return np.concatenate(blocks) if blocks else np.zeros((0, self.dim), np.float32)

    def chunks(self, size: int = _PROJECT_CHUNK) -> Iterator[npt.NDArray[np.float32]]:
        """The rows in order, as new float32 arrays of at most `size` rows each (copies: the
        caller may change them)."""
        for (a, index), n in zip(self.parts, self._sizes()):
            for s in range(0, n, size):
                if index is None:
                    yield np.array(a[s : s + size], np.float32)
                else:
                    yield np.asarray(a[index[s : s + size]], np.float32)

    def stack(self) -> npt.NDArray[np.float32]:
        """All the rows as one new (n, d) float32 array."""
        return self.take(np.arange(len(self)))


def pca_2d(
    x: npt.NDArray[np.float32] | RowStack,
    fit: npt.NDArray[np.float32] | RowStack | None = None,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """Project rows of `x` on the first two principal axes of `fit` (default: `x`).

    The fit uses at most MAX_PCA_FIT_ROWS rows (a seeded sample) so the view stays cheap for
    large pools. Signs are fixed (largest loading positive) so the map is stable run to run.
    `x` is centred and projected _PROJECT_CHUNK rows at a time: beyond the (n, 2) result, the
    memory this takes is bounded by the fit sample and one chunk, however many rows `x` has.
    """
    rows_x = RowStack.of(x)
    fit_rows = rows_x if fit is None or fit is x else RowStack.of(fit)
    out = np.zeros((len(rows_x), 2))
    n_fit = len(fit_rows)
    if len(rows_x) == 0 or n_fit < 2:
        return out
    if n_fit > MAX_PCA_FIT_ROWS:
        sample = np.random.default_rng(seed).choice(n_fit, MAX_PCA_FIT_ROWS, replace=False)
        sample.sort()
    else:
        sample = np.arange(n_fit)
    sampled = fit_rows.take(sample)
    # float32 products: the covariance of 1200 x 510 costs 2 ms where float64 costs 10, and a
    # map's two axes do not need more digits.
    mean = sampled.mean(axis=0, dtype=np.float64).astype(np.float32)
    sampled -= mean
    axes = _top_axes(sampled, 2)
    axes *= np.sign(axes[np.arange(axes.shape[0]), np.abs(axes).argmax(axis=1)])[:, None]
    proj_axes = axes.T.astype(np.float32)
    start = 0
    for block in rows_x.chunks():
        block -= mean
        out[start : start + block.shape[0]] = block @ proj_axes
        start += block.shape[0]
    return out


def _top_axes(
    centred: npt.NDArray[np.floating[Any]], k: int, iters: int = 60
) -> npt.NDArray[np.float64]:
    """The top-k principal axes (k, d) of centred data, by block subspace iteration on the smaller
    of the Gram (n x n) and covariance (d x d) matrices, with a Rayleigh-Ritz step.

    A full eigendecomposition of a 510 x 510 covariance costs ~45 ms; the view needs only two
    axes, and a block of 8 vectors converges to them in a few milliseconds. The start block is
    seeded, so the map is the same run to run.
    """
    n, d = centred.shape
    gram = n < d
    m = (centred @ centred.T if gram else centred.T @ centred).astype(np.float64)
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


# The view's geometry, in pixels (origin bottom left): 7.5 x 6.5 inches at 110 dpi, the map in
# PLOT_BOX, the legend in two columns under it.
WIDTH, HEIGHT, DPI = 825, 715, 110
PLOT_BOX = (83.0, 143.0, 800.0, 672.0)  # left, bottom, right, top
MARGIN = 0.05  # of the data range, on each side of the map, as matplotlib's autoscale
MAX_LEGEND_RUNS = 6  # older runs beyond this share one legend entry (their dots keep their shade)
# The map's palette, the PNG's and the report page's (report_html.py): the older runs in light
# greys, fading with age, under this run's unselected candidates in a blue that stands out on
# them, under its picks, green.
NEW_COLOUR = "#1a9850"
CANDIDATE_COLOUR = "#2c7fb8"
OLDER_SHADES = (0.55, 0.75)  # grey levels of the latest older run and of the oldest


def older_colour(i: int, n: int) -> str:
    """The colour of the `i`-th of `n` older runs (0: the oldest): a grey, lighter the older."""
    lo, hi = OLDER_SHADES
    age = (n - 1 - i) / max(n - 1, 1)  # 0: the latest of them, the run before this one
    shade = round(255 * (lo + (hi - lo) * age))
    return f"#{shade:02x}{shade:02x}{shade:02x}"


class _Style(NamedTuple):
    """How a group of points is drawn: a circle (or "x") of `size` points², as matplotlib's
    scatter `s`."""

    colour: str | tuple[float, float, float]
    size: float
    alpha: float = 1.0
    marker: str = "o"
    edge: str | None = None  # a circle's outline colour (0.5 pt), or none


def embedding_view_png(
    embeddings: npt.NDArray[np.float32] | RowStack,
    labels: npt.NDArray[np.int64],
    run_index: int,
    tags: list[str],
    unselected: npt.NDArray[np.float32] | RowStack | None = None,
    title: str = "",
) -> bytes:
    """Render the embedding view as PNG bytes.

    It is drawn with matplotlib's Agg renderer (antialiased markers, its DejaVu fonts) called
    directly, with the layout fixed here, rather than through a Figure and Axes: the artist layer
    (autoscaling, ticks, a Legend that measures its text twice) cost ~30 ms of a ~35 ms view, and
    every run pays it. The PNG is written here (zlib level 1, no row filter): 6 ms where PIL's
    encoder took 12.
    """
    pool = RowStack.of(embeddings)
    both = pool if unselected is None else pool + RowStack.of(unselected)
    labels = np.asarray(labels, np.int64)
    per_run = np.bincount(labels, minlength=run_index + 1)  # samples each run added
    old_runs = [r for r in range(run_index) if per_run[r]]
    drawn = drawn_rows(labels, run_index, len(both) - len(pool))
    xy = _drawn_pixels(both, drawn)

    canvas = _Canvas()
    legend: list[tuple[_Style, str]] = []
    for r, rows in zip(old_runs, drawn.older):  # the oldest first, in the grey the page gives it
        style = _Style(older_colour(r, run_index), 12)
        canvas.points(xy[rows], style)
        legend.append((style, f"{tags[r]} ({per_run[r]})"))
    if len(legend) > MAX_LEGEND_RUNS:
        merged = len(legend) - MAX_LEGEND_RUNS + 1
        n = int(per_run[old_runs[:merged]].sum())
        first, last = tags[old_runs[0]], tags[old_runs[merged - 1]]
        legend[:merged] = [(legend[0][0], f"{first} to {last} ({n})")]
    n_cands = len(both) - len(pool)
    if n_cands:
        style = _Style(CANDIDATE_COLOUR, 16)
        canvas.points(xy[drawn.candidates], style)
        legend.append((style, f"seen this run, not selected ({n_cands})"))
    if drawn.new.size:
        style = _Style(NEW_COLOUR, 42, edge="black")
        canvas.points(xy[drawn.new], style)
        legend.append((style, f"{tags[run_index]}: new ({drawn.new.size})"))

    # PCA coordinates carry no units, so the map has a frame and axis names but no ticks.
    left, bottom, right, top = PLOT_BOX
    canvas.frame(PLOT_BOX)
    canvas.text(
        title or f"datapool embedding view: {tags[run_index]}",
        (left + right) / 2,
        top + 12,
        12,
        align="centre",
    )
    canvas.text("principal component 1", (left + right) / 2, bottom - 20, 10, align="centre")
    canvas.text("principal component 2", left - 12, (bottom + top) / 2, 10, vertical=True)
    canvas.legend(legend, centre_x=(left + right) / 2, top=bottom - 42)
    return canvas.png()


class DrawnRows(NamedTuple):
    """The rows the view draws, as positions in the pool's rows followed by the candidates':
    per older run with samples (the oldest first), the unselected candidates, this run's new
    samples. Each older run and the candidates are thinned to MAX_PLOTTED_PER_GROUP rows (a
    seeded sample, in the sample's order); the new samples are all drawn."""

    older: list[npt.NDArray[np.intp]]
    candidates: npt.NDArray[np.intp]
    new: npt.NDArray[np.intp]

    def all(self) -> npt.NDArray[np.intp]:
        return np.concatenate([*self.older, self.candidates, self.new]).astype(np.intp)


def drawn_rows(labels: npt.NDArray[np.int64], run_index: int, n_candidates: int) -> DrawnRows:
    """Which rows the view draws (DrawnRows), from the pool's labels alone: the sample is the one
    the view drew from its projected points before (the same seeded choices, in the same order),
    so it is known before anything is projected."""
    rng = np.random.default_rng(0)

    def thin(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        if rows.shape[0] <= MAX_PLOTTED_PER_GROUP:
            return rows
        return rows[rng.choice(rows.shape[0], MAX_PLOTTED_PER_GROUP, replace=False)]

    per_run = np.bincount(labels, minlength=run_index + 1)
    older = [thin(np.flatnonzero(labels == r)) for r in range(run_index) if per_run[r]]
    n = labels.shape[0]
    candidates = thin(np.arange(n, n + n_candidates))
    return DrawnRows(older, candidates, np.flatnonzero(labels == run_index))


def _drawn_pixels(both: RowStack, drawn: DrawnRows) -> npt.NDArray[np.float64]:
    """The pixel of each row of `both` the view draws (rows not drawn: undefined), framed to
    the rows drawn.

    Only the rows drawn are projected: a pool of a million samples added by one run draws
    50,000 of them, and projecting the rest read its whole 2 GB of embeddings for nothing. The
    axes are those of the same seeded fit over all rows (`pca_2d(x, fit=both)`), so a drawn
    dot's place is the one it had, and where nothing is thinned out (under
    MAX_PLOTTED_PER_GROUP rows in each group) the map is the one drawn from every row. Where
    rows are thinned out, the frame fits the dots drawn, not the ones left out."""
    mask = np.zeros(len(both), bool)
    mask[drawn.all()] = True
    out = np.zeros((len(both), 2))
    if mask.all():
        out[:] = _to_pixels(pca_2d(both))
    elif mask.any():
        out[mask] = _to_pixels(pca_2d(both.where(mask), fit=both))
    return out


def _to_pixels(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Map PCA coordinates into PLOT_BOX, with MARGIN of the range on each side (a range of zero
    is centred)."""
    left, bottom, right, top = PLOT_BOX
    out = np.empty_like(xy)
    if xy.shape[0] == 0:
        return out
    for axis, (lo_px, hi_px) in enumerate(((left, right), (bottom, top))):
        lo, hi = float(xy[:, axis].min()), float(xy[:, axis].max())
        span = hi - lo
        if span <= 1e-12 * max(1.0, abs(lo)):
            out[:, axis] = (lo_px + hi_px) / 2
            continue
        lo, span = lo - MARGIN * span, span * (1 + 2 * MARGIN)
        out[:, axis] = lo_px + (xy[:, axis] - lo) / span * (hi_px - lo_px)
    return out


class _Canvas:
    """A white WIDTH x HEIGHT image; coordinates are pixels from the bottom left.

    Markers and the frame are drawn by matplotlib's Agg renderer. Text is laid out by FreeType
    (matplotlib's FT2Font, DejaVu Sans) as one bitmap per string and blended in with NumPy when
    the PNG is made: the renderer's own draw_text places glyph by glyph from Python, ~2 ms a
    string against ~0.5.
    """

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import RendererAgg
        from matplotlib.path import Path as MPath
        from matplotlib.transforms import Affine2D

        self._path = MPath
        self._affine = Affine2D
        self.r = RendererAgg(WIDTH, HEIGHT, DPI)
        gc = self.r.new_gc()
        gc.set_linewidth(0)
        self.r.draw_path(
            gc, MPath.unit_rectangle(), Affine2D().scale(WIDTH, HEIGHT), (1.0, 1.0, 1.0)
        )
        self._texts: list[
            tuple[npt.NDArray[np.uint8], int, int]
        ] = []  # coverage, top row, left column
        self._bitmaps: dict[tuple[str, float], tuple[npt.NDArray[np.uint8], int]] = {}

    def points(self, xy: npt.NDArray[np.float64], style: _Style) -> None:
        from matplotlib.colors import to_rgb
        from matplotlib.transforms import IdentityTransform

        if xy.shape[0] == 0:
            return
        gc = self.r.new_gc()
        gc.set_alpha(style.alpha)
        size_px = np.sqrt(style.size) * DPI / 72  # a marker `size_px` pixels across
        if style.marker == "x":
            marker = self._path(
                [(-0.5, -0.5), (0.5, 0.5), (-0.5, 0.5), (0.5, -0.5)], [1, 2, 1, 2]
            )  # MOVETO, LINETO: two strokes
            gc.set_foreground(style.colour)
            gc.set_linewidth(0.8)
            face = None
        else:
            marker = self._path.unit_circle()
            size_px /= 2  # the unit circle's radius is 1
            gc.set_foreground(style.edge or style.colour)
            gc.set_linewidth(0.5 if style.edge else 0.0)
            face = to_rgb(style.colour)
        self.r.draw_markers(
            gc, marker, self._affine().scale(size_px), self._path(xy), IdentityTransform(), face
        )

    def frame(self, box: tuple[float, float, float, float]) -> None:
        left, bottom, right, top = box
        gc = self.r.new_gc()
        gc.set_linewidth(0.8)
        gc.set_foreground("black")
        corners = [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]
        self.r.draw_path(gc, self._path(corners, closed=True), self._affine(), None)

    def text(
        self, s: str, x: float, y: float, size: float, align: str = "left", vertical: bool = False
    ) -> None:
        """Black text at `size` points, its left end (align="left") or middle (align="centre")
        at x and its baseline at y. Vertical text reads upwards with its middle at y and its
        baseline at x, its glyphs left of it. A line wider than the image has room for is set
        smaller, down to 6 points, and past that loses characters from its middle to an
        ellipsis (a long pool name in a title, not the run's counts after it)."""
        # The room: twice the nearer edge's distance from the line's middle, or from its left
        # end to the far edge; 10 px kept clear of each edge.
        if vertical:
            fit = 2 * min(y, HEIGHT - y) - 20
        elif align == "centre":
            fit = 2 * min(x, WIDTH - x) - 20
        else:
            fit = WIDTH - x - 10
        coverage, descent = self._bitmap(s, size)
        if coverage.shape[1] > fit and size > 6:
            size = max(6.0, size * fit / coverage.shape[1])
            coverage, descent = self._bitmap(s, size)
        if coverage.shape[1] > fit:
            lo, hi = 0, len(s) - 1  # the most characters kept that fit, by bisection
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._bitmap(_middle_cut(s, mid), size)[0].shape[1] <= fit:
                    lo = mid
                else:
                    hi = mid - 1
            coverage, descent = self._bitmap(_middle_cut(s, lo), size)
        h, w = coverage.shape
        if vertical:
            # Turned a quarter left: the baseline becomes the right edge (less the descent).
            self._texts.append(
                (np.rot90(coverage), HEIGHT - round(y + w / 2), round(x + descent - h))
            )
            return
        left = x - w / 2 if align == "centre" else x
        self._texts.append((coverage, HEIGHT - round(y) - (h - descent), round(left)))

    def legend(self, entries: list[tuple[_Style, str]], centre_x: float, top: float) -> None:
        """Two columns filled top to bottom, then left to right, as matplotlib's ncol=2."""
        if not entries:
            return
        size, row_h, gap, marker_w = 8.0, 16.0, 30.0, 18.0
        labels = [self._bitmap(label, size)[0].shape[1] for _, label in entries]
        rows = (len(entries) + 1) // 2
        columns = [list(range(rows)), list(range(rows, len(entries)))]
        widths = [max((labels[i] for i in col), default=0) + marker_w for col in columns]
        x = centre_x - (sum(widths) + gap * (len(columns) - 1)) / 2
        for col, width in zip(columns, widths):
            for row, i in enumerate(col):
                style, label = entries[i]
                y = top - row_h * (row + 0.5)
                self.points(np.array([[x + 6, y]]), style)
                self.text(label, x + marker_w, y - 0.3 * size * DPI / 72, size)  # x-height centred
            x += width + gap

    def png(self) -> bytes:
        rows = np.empty((HEIGHT, 1 + 4 * WIDTH), np.uint8)
        rows[:, 0] = 0  # PNG row filter: none
        rgba = rows[:, 1:].reshape(
            HEIGHT, WIDTH, 4
        )  # a view: the PNG's rows after their filter byte
        rgba[...] = np.asarray(self.r.buffer_rgba())  # opaque: the background is white
        for coverage, top, left in self._texts:
            _blend_black(rgba[:, :, :3], coverage, top, left)
        return png_bytes(rows, channels=4)

    def _bitmap(self, s: str, size: float) -> tuple[npt.NDArray[np.uint8], int]:
        if (s, size) not in self._bitmaps:
            self._bitmaps[s, size] = _text_bitmap(s, size)
        return self._bitmaps[s, size]


def _middle_cut(s: str, keep: int) -> str:
    """`s` with all but `keep` of its characters cut from the middle, an ellipsis in their place."""
    return s[: keep - keep // 2] + "\u2026" + s[len(s) - keep // 2 :]


def _text_bitmap(s: str, size: float) -> tuple[npt.NDArray[np.uint8], int]:
    """FreeType's coverage (0-255) of `s` in DejaVu Sans at `size` points, and how many of its
    bottom rows lie below the baseline."""
    from matplotlib.font_manager import FontProperties, findfont, get_font

    font = get_font(findfont(FontProperties(family="DejaVu Sans")))  # both cached by matplotlib
    font.set_size(size, DPI)
    font.set_text(s, 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    return np.asarray(font.get_image()), round(font.get_descent() / 64)


def _blend_black(
    rgb: npt.NDArray[np.uint8], coverage: npt.NDArray[np.uint8], top: int, left: int
) -> None:
    """Darken `rgb` by `coverage` placed with its top left corner at (top, left), clipped."""
    h, w = coverage.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, rgb.shape[0]), min(left + w, rgb.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    keep = 255 - coverage[y0 - top : y1 - top, x0 - left : x1 - left, None].astype(np.uint16)
    region = rgb[y0:y1, x0:x1]
    region[...] = (region * keep + 127) // 255


def png_bytes(rows: npt.NDArray[np.uint8], channels: int = 3, level: int = 1) -> bytes:
    """An 8-bit RGB (channels=3) or RGBA (4) PNG from its rows: (H, 1 + channels * W) bytes,
    each row a filter byte, 0 (none), then its pixels.

    A chart is mostly flat colour, which zlib packs well without PNG's row filters: level 1 with
    no filter, RGBA straight from the renderer's buffer, takes 5 ms for the view where PIL's
    encoder, at its fastest setting and given RGB, took 12.
    """
    import struct
    import zlib

    if (
        channels not in (3, 4)
        or rows.dtype != np.uint8
        or rows.ndim != 2
        or (rows.shape[1] - 1) % channels
    ):
        raise ValueError(f"rows must be (H, 1 + {channels} W) uint8")
    if np.any(rows[:, 0]):
        raise ValueError("every row must start with filter byte 0 (none)")
    h, w = rows.shape[0], (rows.shape[1] - 1) // channels

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    colour_type = 2 if channels == 3 else 6  # truecolour, or truecolour with alpha
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)  # 8 bits, no interlace
    data = np.ascontiguousarray(rows).data
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(data, level))
        + chunk(b"IEND", b"")
    )
