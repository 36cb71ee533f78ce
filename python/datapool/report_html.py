"""A run's (or a pool's) interactive report: one self-contained HTML file that opens from disk.

The centre is the embedding map: every pool sample, and the candidates a run saw but did not
select, as dots on a 2-D projection (PCA; UMAP on request when umap-learn is installed). The
older runs are drawn first, in light grey (or a colour each) and smaller, then this run's
unselected candidates in blue, then its picks, green circles, on top. Hover shows a sample's
name, source file, frame, run and (for this run's picks) its min-distance, with its thumbnail
(made at ingest: pool/thumbnails.py); a click pins it; a box or lasso selection, or the find box
(a part of a name or source file), lists names to copy or download. Under the map: counts, what
the run's --export did, the stop reason, the model, a histogram of the picks' min-distances and
the picks in order, after Lightly's report.

No network: the page carries its data and its script inline, and a Content-Security-Policy
(`default-src 'none'`) forbids any request, so it opens from file:// anywhere. The points travel
as one gzip'd binary blob in base64 (x, y as uint16, a group per point, source-file indices,
frame numbers, the names joined by newlines), decoded in the page with DecompressionStream into
typed arrays; there is no DOM node or JSON object per point. The map is drawn by a small canvas
renderer that writes pixels into an ImageData (see _SCRIPT), which redraws a million points in
tens of milliseconds (bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.naming import FRAME_NAME, crop_key_of, source_keys
from datapool.pool.ledger import image_sample_keys
from datapool.view import CANDIDATE_COLOUR, NEW_COLOUR, RowStack, older_colour, pca_2d

if TYPE_CHECKING:
    import numpy.typing as npt

    from datapool.candidates import Candidates
    from datapool.pool.contents import Pool
    from datapool.pool.store import PoolUpdate
    from datapool.select import Picks

# Unselected candidates past this many are shown as a seeded sample of this many. A report of
# 1M points is ~24 MB and opens in a few seconds (bench/RESULTS.md); a run's candidates are often
# many times its picks, so they are capped to keep each run's report small.
MAX_SHOWN_CANDIDATES = 100_000
# UMAP is fit on at most this many points (a seeded sample) and the rest are transformed.
MAX_UMAP_FIT_ROWS = 100_000
# Thumbnails embedded in one page, in bytes (JPEG, ~1 KB each: ~30k points): this run's picks
# first, then the rest of the pool, newest run first, then the unselected candidates.
MAX_THUMBNAIL_BYTES = 32 << 20
MAX_LISTED_PICKS = 2_000  # picks listed in the table (all are on the map)
MAX_LISTED_SKIPPED = 200
HISTOGRAM_BINS = 40

PROJECTIONS = ("pca", "umap")
# The map's classes, drawn in this order: the older runs in light greys, fading with age, and a
# pixel smaller, under this run's unselected candidates in a blue that stands out on them,
# under its picks, green circles (_SCRIPT, drawPoints and dotSize). The colours are view.py's
# (NEW_COLOUR, CANDIDATE_COLOUR, older_colour): the PNG view draws in them too.
_PLACEHOLDER = re.compile(r"\{\{([A-Z]+)\}\}")  # in _PAGE


@dataclass
class MapData:
    """The points of the map: the candidates shown, then the older runs, then this run's picks
    (the page draws the older runs first: _SCRIPT's drawOrder)."""

    names: list[str]
    sources: list[str]  # the raw file each point came from
    groups: npt.NDArray[np.int64]  # run index, or len(tags) for unselected candidates
    xy: npt.NDArray[np.uint16]  # (n, 2), quantised over the projection's range
    frames: npt.NDArray[np.int32]  # frame number in its video, -1 for an image
    min_distances: npt.NDArray[np.float32]  # of this run's picks, in pick order
    first_pick: int  # index of this run's first pick (they are the last points)
    candidates_total: int = 0  # unselected candidates before the sample
    meta: dict[str, Any] = field(default_factory=dict)
    thumbnails: dict[str, bytes] = field(default_factory=dict)  # name -> JPEG, where known
    shown_candidates: int = 0  # the first points: the candidates shown
    projection: str = "PCA"  # how the map was drawn, in words
    # Per point, its group of exact duplicates (the same embedding, bytes for bytes, drawn on
    # one spot), -1 for none: points that only share a map position are no duplicates (a
    # million samples on a 65536 x 65536 grid share some). None: not worked out (-1 for all).
    duplicates: npt.NDArray[np.int32] | None = None


def duplicate_groups(
    xy: npt.NDArray[np.uint16], emb: npt.NDArray[np.float32] | RowStack
) -> npt.NDArray[np.int32]:
    """Each point's group of exact duplicates among the points drawn at its map position: the
    points whose embeddings are equal bit for bit (a symlink and its target, byte copies, two
    frames of identical pixels: the model cannot tell them apart, nor can the selection); -1
    for a point with none. Only the rows of points that share a position are read, a block at
    a time, and compared by a 128-bit BLAKE2 digest of their bytes."""
    import hashlib

    n = len(xy)
    out = np.full(n, -1, np.int32)
    if n < 2:
        return out
    key = xy[:, 0].astype(np.uint32) << 16 | xy[:, 1].astype(np.uint32)
    order = np.argsort(key, kind="stable")
    ties = np.flatnonzero(key[order][1:] == key[order][:-1])
    shared = np.unique(np.concatenate([order[ties], order[ties + 1]]))
    rows = RowStack.of(emb)
    members: dict[tuple[int, bytes], list[int]] = {}
    for s in range(0, len(shared), 1 << 14):
        block = shared[s : s + (1 << 14)]
        for i, row in zip(block.tolist(), rows.take(block)):
            digest = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
            members.setdefault((int(key[i]), digest), []).append(i)
    group = 0
    for ids in members.values():
        if len(ids) > 1:
            out[ids] = group
            group += 1
    return out


def projection_used(projection: str, n: int) -> str:
    """What `project` draws for `n` points, in words: UMAP needs 16 points or more."""
    if projection == "pca":
        return "PCA"
    return "UMAP" if n >= 16 else "PCA (UMAP needs 16 points or more)"


def project(x: npt.NDArray[np.float32] | RowStack, projection: str = "pca", seed: int = 0) -> Any:
    """2-D coordinates of the rows of `x`: PCA, or UMAP fit on a sample and applied to all."""
    if projection_used(projection, len(x)) != "UMAP":
        return pca_2d(x)
    x = x.stack() if isinstance(x, RowStack) else x
    from datapool.errors import ConfigError

    try:
        import umap
    except ImportError:
        raise ConfigError(
            "--projection umap needs umap-learn (pip install umap-learn); or use --projection pca"
        ) from None
    rng = np.random.default_rng(seed)
    fit_rows = np.arange(x.shape[0])
    if x.shape[0] > MAX_UMAP_FIT_ROWS:
        fit_rows = np.sort(rng.choice(x.shape[0], MAX_UMAP_FIT_ROWS, replace=False))
    model = umap.UMAP(n_components=2, random_state=seed).fit(x[fit_rows])
    out = np.empty((x.shape[0], 2))
    out[fit_rows] = model.embedding_
    rest = np.setdiff1d(np.arange(x.shape[0]), fit_rows)
    if rest.size:
        out[rest] = model.transform(x[rest])
    return out


def map_data(
    pool_names: list[str],
    pool_embeddings: npt.NDArray[np.float32] | RowStack,
    pool_labels: npt.NDArray[np.int64],
    pool_sources: list[str],
    current: int,
    n_runs: int,
    min_distances: dict[str, float] | None = None,
    cand_names: list[str] | None = None,
    cand_embeddings: npt.NDArray[np.float32] | RowStack | None = None,
    cand_sources: list[str] | None = None,
    projection: str = "pca",
    max_candidates: int = MAX_SHOWN_CANDIDATES,
    thumbnails: dict[str, bytes] | None = None,
) -> MapData:
    """Order, project and quantise the points. Pool rows of run `current` are drawn last, in
    the pool's order (a run appends its picks in pick order)."""
    labels = np.asarray(pool_labels, np.int64)
    cand_names = cand_names or []
    n_cand_total = len(cand_names)
    cand_rows = np.arange(n_cand_total)
    if n_cand_total > max_candidates:
        rng = np.random.default_rng(0)
        cand_rows = np.sort(rng.choice(n_cand_total, max_candidates, replace=False))
    is_new = labels == current
    pool_order = np.concatenate([np.flatnonzero(~is_new), np.flatnonzero(is_new)])
    pool = RowStack.of(pool_embeddings)
    emb = pool.where(~is_new) + pool.where(is_new)  # the rows in pool_order, not copied
    if cand_embeddings is not None and n_cand_total:
        shown = np.zeros(n_cand_total, bool)
        shown[cand_rows] = True
        emb = RowStack.of(cand_embeddings).where(shown) + emb
    xy = project(emb, projection) if len(emb) else np.zeros((0, 2))
    lo, hi = (xy.min(axis=0), xy.max(axis=0)) if xy.shape[0] else (np.zeros(2), np.ones(2))
    flat = hi - lo <= 1e-12  # one point, or all alike along an axis: the middle, not an edge
    span = np.where(flat, 1.0, hi - lo)
    q = np.where(flat, 32768, np.clip(np.rint((xy - lo) / span * 65535), 0, 65535))
    q = q.astype(np.uint16)
    names = [cand_names[i] for i in cand_rows.tolist()]
    names += [pool_names[i] for i in pool_order.tolist()]
    csrc = cand_sources or cand_names
    sources = [csrc[i] for i in cand_rows.tolist()]
    sources += [pool_sources[i] for i in pool_order.tolist()]
    frames = np.full(len(names), -1, np.int32)
    for i, (n, s) in enumerate(zip(names, sources)):
        if n == s and "-crop-" not in n:  # an image's sample (most): no frame, no crop name
            continue
        picture = crop_key_of(n) or n  # a crop (crop selection): the frame it was cut from
        if picture != s:
            m = FRAME_NAME.match(picture)
            if m is not None:
                frames[i] = int(m.group(2))
    groups = np.concatenate([np.full(len(cand_rows), n_runs, np.int64), labels[pool_order]])
    first_pick = len(names) - int(is_new.sum())
    md = min_distances or {}
    dists = np.array([md.get(n, np.nan) for n in names[first_pick:]], np.float32)
    data = MapData(names, sources, groups, q, frames, dists, first_pick, n_cand_total)
    data.thumbnails = thumbnails or {}
    data.shown_candidates = len(cand_rows)
    data.projection = projection_used(projection, len(emb))
    data.duplicates = duplicate_groups(q, emb)
    return data


def _thumbnail_blob(
    data: MapData, budget: int = MAX_THUMBNAIL_BYTES
) -> tuple[bytes, npt.NDArray[np.uint32]]:
    """The thumbnails of the points, concatenated, and each point's [start, end) in them
    (`offsets[i]:offsets[i + 1]`, empty where a point has none). Within `budget` bytes: this
    run's picks first, then the older pool from the newest run, then the candidates."""
    n, thumbs, k = len(data.names), data.thumbnails, data.shown_candidates
    older = np.arange(k, data.first_pick)
    older = older[np.argsort(-data.groups[older], kind="stable")]
    priority = [range(data.first_pick, n), older.tolist(), range(k)]
    chosen: dict[int, bytes] = {}
    used = 0
    for i in (i for part in priority for i in part):
        t = thumbs.get(data.names[i])
        if t is None or used + len(t) > budget:
            continue
        chosen[i] = t
        used += len(t)
    sizes = np.zeros(n + 1, np.uint32)
    for i, t in chosen.items():
        sizes[i + 1] = len(t)
    offsets = np.cumsum(sizes, dtype=np.uint32)
    return b"".join(chosen[i] for i in sorted(chosen)), offsets


def _payload(data: MapData) -> tuple[str, dict[str, Any]]:
    """The points as one gzip'd, base64'd blob, and where each array is in it."""
    parts: list[bytes] = []
    arrays: dict[str, list[Any]] = {}
    offset = 0

    def add(name: str, raw: bytes, dtype: str, length: int) -> None:
        nonlocal offset
        pad = (-offset) % 4
        parts.append(b"\0" * pad)
        offset += pad
        arrays[name] = [offset, dtype, length]
        parts.append(raw)
        offset += len(raw)

    n = len(data.names)
    add("x", np.ascontiguousarray(data.xy[:, 0]).tobytes(), "u16", n)
    add("y", np.ascontiguousarray(data.xy[:, 1]).tobytes(), "u16", n)
    gmax = int(data.groups.max()) if n else 0
    g_dtype, g_np = ("u8", np.uint8) if gmax < 256 else ("u16", np.uint16)
    add("group", data.groups.astype(g_np).tobytes(), g_dtype, n)
    # Each point's source as its index among the sources in order of first appearance: one
    # hash pass (pandas.factorize) where a dict, its index and a lookup a point took three.
    import pandas as pd

    sources = pd.Series(data.sources, dtype=object)
    codes, uniques = pd.factorize(sources, sort=False, use_na_sentinel=False)
    keys = uniques.tolist()
    add("source", codes.astype(np.uint32).tobytes(), "u32", n)
    add("frame", data.frames.tobytes(), "i32", n)
    dups = data.duplicates if data.duplicates is not None else np.full(n, -1, np.int32)
    add("dup", dups.astype(np.int32).tobytes(), "i32", n)
    add("dist", data.min_distances.astype(np.float32).tobytes(), "f32", len(data.min_distances))
    thumbs, offsets = _thumbnail_blob(data)
    add("thumb", offsets.tobytes(), "u32", n + 1)
    names = "\n".join(data.names).encode()
    add("names", names, "text", n)  # the texts last: each runs to the next array's start
    add("sources", "\n".join(keys).encode(), "text", len(keys))
    raw = b"".join(parts)
    blob = gzip.compress(raw, compresslevel=6, mtime=0)
    layout = {
        "arrays": arrays,
        "raw_bytes": len(raw),
        "thumbs": {"count": int((np.diff(offsets) > 0).sum()), "bytes": len(thumbs)},
        "thumbs_b64": base64.b64encode(thumbs).decode("ascii"),
    }
    return base64.b64encode(blob).decode("ascii"), layout


def _histogram_svg(values: npt.NDArray[np.float64], label: str) -> str:
    """A small inline SVG histogram (no script, no fonts beyond the page's)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return f"<p class='muted'>{html.escape(label)}: no finite values</p>"
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.01, hi + 0.01
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(lo, hi))
    w, h, pad = 420, 150, 28
    bw = (w - 2 * pad) / len(counts)
    top = max(int(counts.max()), 1)
    bars = "".join(
        f"<rect x='{pad + i * bw:.1f}' y='{h - pad - c / top * (h - 2 * pad):.1f}' "
        f"width='{max(bw - 1, 1):.1f}' height='{c / top * (h - 2 * pad):.1f}'>"
        f"<title>{edges[i]:.4f} to {edges[i + 1]:.4f}: {c}</title></rect>"
        for i, c in enumerate(counts.tolist())
    )
    return (
        f"<figure><svg class='hist' width='{w}' height='{h}' role='img'>{bars}"
        f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}'/>"
        f"<text x='{pad}' y='{h - 8}'>{lo:.3f}</text>"
        f"<text x='{w - pad}' y='{h - 8}' text-anchor='end'>{hi:.3f}</text>"
        f"<text x='{pad}' y='14'>max {top}</text></svg>"
        f"<figcaption>{html.escape(label)} ({values.size} values)</figcaption></figure>"
    )


def _curve_svg(values: npt.NDArray[np.float64], label: str) -> str:
    """Min-distance against pick number: farthest-point selection makes it fall; where it
    flattens, more picks add little."""
    w, h, pad = 420, 150, 28
    y = np.where(np.isfinite(values), values, np.nan)
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    span = hi - lo if hi - lo > 1e-12 else 1.0
    step = max(1, len(y) // 1000)  # at most ~1000 vertices
    xs = np.arange(0, len(y), step)
    pts = " ".join(
        f"{pad + i / max(len(y) - 1, 1) * (w - 2 * pad):.1f},"
        f"{h - pad - (y[i] - lo) / span * (h - 2 * pad):.1f}"
        for i in xs.tolist()
        if np.isfinite(y[i])
    )
    return (
        f"<figure><svg class='hist' width='{w}' height='{h}' role='img'>"
        f"<polyline points='{pts}' fill='none' stroke='#1a9850' stroke-width='1.5'/>"
        f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}'/>"
        f"<text x='{pad}' y='{h - 8}'>pick 1</text>"
        f"<text x='{w - pad}' y='{h - 8}' text-anchor='end'>pick {len(y)}</text>"
        f"<text x='{pad}' y='14'>{hi:.3f} to {lo:.3f}</text></svg>"
        f"<figcaption>{html.escape(label)}</figcaption></figure>"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    return (
        "<table class='kv'>"
        + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        + "</table>"
    )


def _thresholds_html(thresholds: list[dict[str, Any]]) -> str:
    """Per THRESHOLD strategy (report["thresholds"]), how many candidates it kept."""
    if not thresholds:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(t['strategy']))} {html.escape(str(t['operation']))} "
        f"{t['threshold']:g}</td><td>{t['kept']} of {t['of']} {t.get('unit', 'candidates')}</td>"
        f"<td>{t['without_value']}</td></tr>"
        for t in thresholds
    )
    return (
        "<section><h2>Thresholds</h2><table><tr><th>strategy</th><th>kept</th>"
        f"<th>without a value</th></tr>{rows}</table></section>"
    )


def _zero_objective_html(z: dict[str, Any] | None) -> str:
    """The candidates of objective 0 and without a value (report["zero_objective"]), and the
    picks that filled the budget from those of 0."""
    if not z:
        return ""
    units = str(z.get("unit", "candidates"))

    def count(n: int) -> str:  # '1 candidate', '2 candidates' (or sequences)
        return html.escape(f"{n} {units[:-1] if n == 1 else units}")

    rows = []
    if z["candidates"]:
        which = html.escape(", ".join(z["strategies"]))
        filled = z["filled"]
        how = (
            f"{filled} of the picks {'is' if filled == 1 else 'are'} theirs, the most diverse, "
            "to fill the budget"
            if filled
            else "none picked"
        )
        rows.append(f"<li>{count(z['candidates'])} of objective 0 ({which}): {how}</li>")
    if z["without_value"]:
        which = html.escape(", ".join(z["without_value_strategies"]))
        rows.append(
            f"<li>{count(z['without_value'])} without a value for {which}: never picked</li>"
        )
    return f"<section><h2>Objective 0</h2><ul>{''.join(rows)}</ul></section>"


def _balance_html(balance: list[dict[str, Any]]) -> str:
    """Per BALANCE strategy (report["balance"]), its class shares against the target."""

    def pct(x: Any) -> str:
        return "" if x is None else f"{100 * x:.1f}%"

    out = []
    for b in balance:
        rows = "".join(
            f"<tr><td>{html.escape(str(c['class']))}</td><td>{pct(c['target'])}</td>"
            f"<td>{pct(c['pool_before'])}</td><td>{pct(c['picked'])}</td>"
            f"<td>{pct(c['pool_after'])}</td></tr>"
            for c in b.get("classes", [])
        )
        out.append(
            f"<section><h2>Class balance: {html.escape(str(b.get('strategy', '')))}</h2>"
            "<table><tr><th>class</th><th>target</th><th>pool before</th><th>this run</th>"
            f"<th>pool after</th></tr>{rows}</table></section>"
        )
    return "".join(out)


def _crops_html(crops: dict[str, Any] | None, counts: dict[str, Any]) -> str:
    """Crop selection's part of the report: the task and padding, the files that gave no crop
    and the boxes left out, each with why (the summary and its warnings point here)."""
    if not crops:
        return ""
    out = [
        "<section><h2>Object crops</h2>"
        + _table([("task", crops.get("task", "")), ("padding", crops.get("padding", ""))])
    ]
    for title, key, cols in (
        ("Files without objects", "images_without_objects", ("key",)),
        ("Boxes left out", "boxes_left_out", ("crop", "key")),
        ("Boxes cut to their part inside the picture", "boxes_clipped", ("crop", "key")),
    ):
        items = crops.get(key) or []
        if not items:
            continue
        total = max(int(counts.get(key) or 0), len(items))  # report.json lists up to 1000
        heads = "".join(f"<th>{c}</th>" for c in (*cols, "reason"))
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td class='name'>{html.escape(str(x.get(c, '')))}</td>" for c in (*cols, "reason")
            )
            + "</tr>"
            for x in items[:MAX_LISTED_SKIPPED]
        )
        shown = min(len(items), MAX_LISTED_SKIPPED)
        more = f"<p class='muted'>and {total - shown} more</p>" if total > shown else ""
        out.append(
            f"<h3>{title} ({total})</h3><div class='scroll'><table><tr>{heads}</tr>{rows}"
            f"</table></div>{more}"
        )
    out.append(_unfiled_html(crops.get("frames_without_predictions") or [], counts))
    out.append("</section>")
    return "".join(out)


def _unfiled_html(videos: list[dict[str, Any]], counts: dict[str, Any]) -> str:
    """Crop selection's video frames kept without a predictions file, per video: how many, and
    the first (predictions written for other frames: the run's warning names the fix)."""
    if not videos:
        return ""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td class='name'>{html.escape(str(v.get(c, '')))}</td>"
            for c in ("key", "frames", "first")
        )
        + "</tr>"
        for v in videos[:MAX_LISTED_SKIPPED]
    )
    total = int(counts.get("frames_without_predictions") or 0)
    return (
        f"<h3>Video frames without a predictions file ({total})</h3><div class='scroll'><table>"
        f"<tr><th>video</th><th>frames</th><th>first</th></tr>{rows}</table></div>"
    )


_EXPORT_OPEN = "<section id='export'>"  # the export's part of the page, replaced by with_export


def _counted(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _export_html(export: dict[str, Any] | None, pending: dict[str, str] | None = None) -> str:
    """What the run's --export did (report["export"], export.ExportResult.to_json): where to, how
    many exported, how many refused and the first of them with why, the files renamed, and its
    warnings. `pending` (dest, redo): the page committed before the export ran, to be replaced by
    with_export once it has; a page that still says so is of an export that did not finish."""
    if not export:
        if not pending:
            return ""
        return (
            f"{_EXPORT_OPEN}<h2>Export</h2><p>To {html.escape(pending['dest'])}, after the run's "
            "commit: what it did replaces this once it is done. Where this page still says "
            "so, the export did not finish (or another run committed first); "
            f"<code>{html.escape(pending['redo'])}</code> makes or redoes it.</p></section>"
        )
    refused = list(export.get("refused") or [])
    renamed = export.get("renamed") or {}
    rows: list[tuple[str, Any]] = [
        ("to", export.get("dest", "")),
        ("exported", _counted(int(export.get("written") or 0), "sample")),
    ]
    if export.get("images"):
        rows.append(("beside the crops", _counted(int(export["images"]), "picture")))
    rows.append(("refused", f"{len(refused)}, not exported" if refused else "none"))
    if renamed:
        rows.append(("renamed", f"{len(renamed)} under a suffixed name (see the warnings)"))
    if export.get("removed"):
        rows.append(("removed", f"{_counted(int(export['removed']), 'file')} no longer selected"))
    out = [f"{_EXPORT_OPEN}<h2>Export</h2>", _table(rows)]
    if refused:
        shown = refused[:MAX_LISTED_SKIPPED]
        items = "".join(
            f"<tr><td class='name'>{html.escape(str(x.get('name', '')))}</td>"
            f"<td class='name'>{html.escape(str(x.get('reason', '')))}</td></tr>"
            for x in shown
        )
        more = (
            f"<p class='muted'>and {len(refused) - len(shown)} more (all are in report.json)</p>"
            if len(refused) > len(shown)
            else ""
        )
        out.append(
            f"<h3>Refused ({len(refused)})</h3><div class='scroll'><table><tr><th>sample</th>"
            f"<th>why</th></tr>{items}</table></div>{more}"
        )
    if renamed:
        items = "".join(
            f"<tr><td class='name'>{html.escape(str(k))}</td>"
            f"<td class='name'>{html.escape(str(v))}</td></tr>"
            for k, v in list(renamed.items())[:MAX_LISTED_SKIPPED]
        )
        out.append(
            f"<h3>Renamed ({len(renamed)})</h3><div class='scroll'><table><tr><th>sample</th>"
            f"<th>written as</th></tr>{items}</table></div>"
        )
    warnings = export.get("warnings") or []
    if warnings:
        items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings[:MAX_LISTED_SKIPPED])
        out.append(f"<h3>Warnings ({len(warnings)})</h3><ul class='warnings'>{items}</ul>")
    out.append("</section>")
    return "".join(out)


_DATA_OPEN = b'<script type="application/json" id="dp-meta">'


def takes_export(page: bytes) -> bool:
    """Whether `page` is a run's page, which with_export can give its export part (not the
    notice `datapool rm` leaves in place of a withdrawn run's page)."""
    return _EXPORT_OPEN.encode() in page or _DATA_OPEN in page


def with_export(page: bytes, export: dict[str, Any]) -> bytes:
    """`page` (a run's report.html, committed before its --export ran) with its export part
    saying what the export did. The part's opening tag is the page's own markup: every text in
    the page is escaped (no `<` in it), so it is found only where _export_html put it."""
    new = _export_html(export).encode()
    start = page.find(_EXPORT_OPEN.encode())
    if start < 0:  # a page made without the part: before the data, under the rest
        at = page.index(_DATA_OPEN)
        return page[:at] + new + b"\n" + page[at:]
    end = page.index(b"</section>", start) + len(b"</section>")
    return page[:start] + new + page[end:]


def _merged_row(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """Where a run that a merge brought in came from: its pool, and its tag there."""
    came = report.get("merged_from")
    if not isinstance(came, dict):
        return []
    return [("merged from", f"{came.get('pool', '')}, where it was {came.get('tag', '')}")]


def _details(
    report: dict[str, Any],
    runs: list[dict[str, Any]],
    data: MapData,
    pending_export: dict[str, str] | None = None,
) -> str:
    """The report under the map: counts, stop reason, model, histograms, picks, skipped."""
    counts = report.get("counts") or {}
    model = report.get("model") or {}
    out = ["<section><h2>Run</h2>"]
    out.append(
        _table(
            [
                ("run", f"{report.get('tag', '')} (index {report.get('index', '')})"),
                *_merged_row(report),
                ("source", report.get("source", "")),
                ("started", report.get("started_at", "")),
                ("finished", report.get("finished_at", "")),
                ("stop reason", report.get("stop_reason", "")),
                (
                    "model",
                    ", ".join(f"{k}={v}" for k, v in model.items() if not isinstance(v, dict)),
                ),
                ("distances", report.get("distances", "")),
            ]
        )
    )
    out.append("<h2>Counts</h2>" + _table(list(counts.items())))
    warnings = report.get("warnings") or []
    if warnings:  # as the run printed them: the summary's hints (files without predictions ...)
        items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings[:MAX_LISTED_SKIPPED])
        out.append(f"<h2>Warnings ({len(warnings)})</h2><ul class='warnings'>{items}</ul>")
    shown = int((data.groups == len(runs)).sum())
    sampled = f" (a seeded sample of {shown} shown)" if data.candidates_total > shown else ""
    out.append(
        f"<p class='muted'>On the map ({html.escape(data.projection)}): {len(data.names)} "
        f"points; {_counted(data.candidates_total, 'unselected candidate')}{sampled}</p></section>"
    )
    out.append(_export_html(report.get("export"), pending_export))
    out.append(_thresholds_html(report.get("thresholds") or []))
    out.append(_zero_objective_html(report.get("zero_objective")))
    out.append(_balance_html(report.get("balance") or []))
    selected = report.get("selected") or []
    dists = np.array(
        [np.nan if s.get("min_distance") is None else s["min_distance"] for s in selected],
        np.float64,
    )
    out.append("<section><h2>Min-distances</h2>")
    out.append(
        _histogram_svg(
            dists, "min-distance of each pick to the pool and earlier picks, at pick time"
        )
    )
    if np.isfinite(dists).sum() > 1:
        out.append(_curve_svg(dists, "min-distance of each pick, by pick number"))
    out.append("</section>")
    if selected:
        rows = "".join(
            f"<tr><td>{i + 1}</td><td class='name'>{html.escape(s['filename'])}</td>"
            f"<td>{'' if s.get('min_distance') is None else format(s['min_distance'], '.5f')}</td></tr>"
            for i, s in enumerate(selected[:MAX_LISTED_PICKS])
        )
        more = (
            f"<p class='muted'>and {len(selected) - MAX_LISTED_PICKS} more "
            "(all are in report.json)</p>"
            if len(selected) > MAX_LISTED_PICKS
            else ""
        )
        out.append(
            f"<section><h2>Picks in order ({len(selected)})</h2><div class='scroll'>"
            f"<table class='picks'><tr><th>#</th><th>sample</th><th>min-distance</th></tr>"
            f"{rows}</table></div>{more}</section>"
        )
    out.append(_crops_html(report.get("crops"), counts))
    skipped = report.get("skipped") or []
    if skipped:
        rows = "".join(
            f"<tr><td class='name'>{html.escape(str(s.get('key', '')))}</td>"
            f"<td class='name'>{html.escape(str(s.get('reason', '')))}</td></tr>"
            for s in skipped[:MAX_LISTED_SKIPPED]
        )
        out.append(
            f"<section><h2>Skipped files ({len(skipped)})</h2><div class='scroll'>"
            f"<table><tr><th>file</th><th>reason</th></tr>{rows}</table></div></section>"
        )
    if runs:
        # still in the pool: as `datapool status` counts them (a later run may drop some)
        still = np.bincount(data.groups, minlength=len(runs) + 1)
        rows = "".join(
            f"<tr><td>{html.escape(str(r.get('tag', '')))}</td>"
            f"<td>{html.escape(str(r.get('finished_at', '')))}</td>"
            f"<td>{(r.get('counts') or {}).get('selected', '')}</td>"
            f"<td>{int(still[i])}</td>"
            f"<td>{(r.get('counts') or {}).get('pool_size', '')}</td>"
            f"<td>{html.escape(str(r.get('stop_reason', '')))}</td></tr>"
            for i, r in enumerate(runs)
        )
        out.append(
            "<section><h2>Runs</h2><table><tr><th>run</th><th>finished</th><th>selected</th>"
            "<th>still in the pool</th><th>pool size after it</th><th>stop reason</th></tr>"
            f"{rows}</table></section>"
        )
    return "".join(out)


def _groups(tags: list[str], current: int, data: MapData) -> list[dict[str, Any]]:
    counts = np.bincount(data.groups, minlength=len(tags) + 1) if len(data.groups) else None
    older = [r for r in range(len(tags)) if r != current]
    out = []
    for r, tag in enumerate(tags):
        n = 0 if counts is None else int(counts[r])
        if r == current:
            kind, colour, label = "new", NEW_COLOUR, f"{tag}: new"
        else:
            kind, colour, label = "old", older_colour(older.index(r), len(older)), tag
        out.append({"label": label, "tag": tag, "kind": kind, "colour": colour, "count": n})
    n_cand = 0 if counts is None else int(counts[len(tags)])
    out.append(
        {
            "label": "seen this run, not selected",
            "tag": tags[current] if tags else "",
            "kind": "cand",
            "colour": CANDIDATE_COLOUR,
            "count": n_cand,
        }
    )
    return out


def render(
    data: MapData,
    report: dict[str, Any],
    runs: list[dict[str, Any]],
    current: int,
    title: str,
    pending_export: dict[str, str] | None = None,
) -> bytes:
    """The whole page, as UTF-8 bytes. `pending_export` ({"dest", "redo"}): the run exports
    after its commit, which with_export records in the page."""
    tags = [str(r.get("tag", i)) for i, r in enumerate(runs)]
    blob, layout = _payload(data)
    thumbs_b64 = layout.pop("thumbs_b64")
    meta = {
        "title": title,
        "n": len(data.names),
        "first_pick": data.first_pick,
        "current": current,
        "groups": _groups(tags, current, data),
        "n_runs": len(runs),
        **layout,
    }
    # In a <script> element no `<` may appear (`</script>` ends it, `<!--<script>` makes the
    # parser take the rest of the page into it): JSON's \u003c spells it inside strings.
    meta_json = json.dumps(meta).replace("<", "\\u003c").replace(">", "\\u003e")
    meta_json = meta_json.replace("&", "\\u0026")
    parts = {
        "TITLE": html.escape(title),
        "STYLE": _STYLE,
        "DETAILS": _details(report, runs, data, pending_export),
        "META": meta_json,
        "SCRIPT": _SCRIPT,
        "DATA": blob,
        "THUMBS": thumbs_b64,
    }
    # One pass over the template: a part that holds `{{META}}` (a file named so, in the table of
    # picks) is not itself filled in.
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _PAGE).encode()


def report_html(
    report: dict[str, Any],
    runs: list[dict[str, Any]],
    pool_names: list[str],
    pool_embeddings: npt.NDArray[np.float32] | RowStack,
    pool_labels: npt.NDArray[np.int64],
    image_keys: set[str],
    current: int | None = None,
    cand_names: list[str] | None = None,
    cand_embeddings: npt.NDArray[np.float32] | RowStack | None = None,
    cand_sources: list[str] | None = None,
    projection: str = "pca",
    title: str = "",
    thumbnails: dict[str, bytes] | None = None,
    pending_export: dict[str, str] | None = None,
) -> bytes:
    """The report page of run `current` (default: the last) of a pool, with that run's
    unselected candidates when given. `report` is that run's report.json (or its runs.json
    record); `thumbnails` (name -> JPEG) are shown on hover, within MAX_THUMBNAIL_BYTES."""
    current = len(runs) - 1 if current is None else current
    md = {
        s["filename"]: s["min_distance"]
        for s in report.get("selected") or []
        if s.get("min_distance") is not None
    }
    data = map_data(
        pool_names,
        pool_embeddings,
        pool_labels,
        source_keys(pool_names, image_keys),
        current,
        len(runs),
        md,
        cand_names,
        cand_embeddings,
        cand_sources,
        projection,
        thumbnails=thumbnails,
    )
    return render(data, report, runs, current, title or "datapool report", pending_export)


def run_report_html(
    base: Pool,
    keep: npt.NDArray[np.bool_],
    update: PoolUpdate,
    cands: Candidates,
    picks: Picks,
    title: str,
    older_thumbnails: dict[str, bytes] | None = None,
    pending_export: dict[str, str] | None = None,
) -> bytes:
    """The report of the run that makes `update` from `base`: the pool after the run, and the
    candidates it saw but did not select; with the thumbnails ingest made of the candidates,
    and `older_thumbnails` of the pool's other samples; `pending_export` where the run exports
    after its commit (with_export)."""
    kept = list(base.filenames) if keep.all() else [n for n, k in zip(base.filenames, keep) if k]
    kept_emb = RowStack(base.embeddings).where(keep) if len(base) else RowStack()
    unselected = np.ones(len(cands), bool)
    unselected[picks.indices] = False
    rows = np.flatnonzero(unselected).tolist()
    return report_html(
        update.report,
        [*([] if update.reset else base.runs), update.run],
        kept + update.new_names,
        kept_emb + RowStack(update.new_embeddings),
        np.concatenate([base.labels[keep], update.new_labels]),
        image_sample_keys(base.ledger) | {k for n, k in zip(cands.names, cands.keys) if n == k},
        current=update.index,
        cand_names=[cands.names[i] for i in rows],
        cand_embeddings=RowStack(cands.embeddings).where(unselected),
        cand_sources=[cands.keys[i] for i in rows],
        title=title,
        thumbnails={**(older_thumbnails or {}), **cands.thumbnails},
        pending_export=pending_export,
    )


_STYLE = """
body{font:14px system-ui,sans-serif;margin:0;color:#222}
header{padding:8px 16px;background:#f4f4f4;border-bottom:1px solid #ddd}
header h1{font-size:18px;margin:0}
#main{display:flex;height:72vh;min-height:420px}
#mapbox{position:relative;flex:1;border-right:1px solid #ddd}
#map{position:absolute;inset:0;width:100%;height:100%;cursor:crosshair}
#side{width:300px;overflow:auto;padding:8px 12px}
#legend label{display:flex;align-items:center;gap:6px;margin:2px 0;cursor:pointer}
.sw{display:inline-block;flex:none}.sw.circle{border-radius:50%;border:0.6px solid #000;box-sizing:border-box}
#tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #888;padding:4px 6px;
 font-size:12px;display:none;max-width:340px;box-shadow:0 1px 4px #0003;word-break:break-all}
#pinned{font-size:12px;word-break:break-all}
img.thumb{display:block;width:auto;height:auto;max-width:192px;max-height:192px;margin-bottom:4px;
 image-rendering:auto;min-width:96px;object-fit:contain;object-position:left top}
#box{position:absolute;border:1px dashed #000;background:#0000ff18;display:none;pointer-events:none}
#toolbar{position:absolute;left:8px;top:8px;display:flex;gap:4px}
#toolbar button.on{background:#1a9850;color:#fff}
textarea{width:100%;height:120px;font-size:11px;box-sizing:border-box}
#find{width:100%;box-sizing:border-box;margin-bottom:4px}
section{padding:4px 16px}
table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left}
td.name,table.kv td{overflow-wrap:anywhere}
.scroll{max-height:320px;overflow:auto;display:inline-block;max-width:100%}
.muted{color:#777}
svg.hist rect{fill:#1a9850}svg.hist line{stroke:#444}svg.hist text{font-size:11px;fill:#444}
figure{display:inline-block;margin:4px 16px 4px 0}
@media (max-width:760px){#main{flex-direction:column;height:auto}
 #mapbox{flex:none;height:70vh;min-height:320px;border-right:0;border-bottom:1px solid #ddd}
 #side{width:auto}#toolbar{right:8px;flex-wrap:wrap}}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:">
<title>{{TITLE}}</title><style>{{STYLE}}</style></head>
<body><header><h1>{{TITLE}}</h1><span class="muted" id="status">loading&hellip;</span></header>
<div id="main"><div id="mapbox"><canvas id="map"></canvas><div id="box"></div><div id="tip"></div>
<div id="toolbar"><button id="mode-pan" class="on" title="drag to pan, wheel to zoom">pan</button>
<button id="mode-box" title="drag a box to select (or shift-drag)">box select</button>
<button id="mode-lasso" title="draw a free-hand loop around points to select them">lasso</button>
<button id="reset" title="show everything">reset view</button>
<select id="colour"><option value="age">new vs old</option><option value="run">colour by run</option></select></div></div>
<div id="side"><h3>Runs</h3><div id="legend"></div>
<h3>Pinned</h3><div id="pinned" class="muted">click a point to pin it</div>
<h3>Selection <span id="selcount"></span></h3>
<input id="find" type="search" placeholder="find: part of a name or source file" aria-label="select the points whose name or source file holds this text">
<textarea id="selection" readonly placeholder="box- or lasso-select points, or find names, to list them"></textarea>
<button id="copy">copy</button> <button id="download">download .txt</button></div></div>
{{DETAILS}}
<script type="application/json" id="dp-meta">{{META}}</script>
<script type="text/plain" id="dp-data">{{DATA}}</script>
<script type="text/plain" id="dp-thumbs">{{THUMBS}}</script>
<script>{{SCRIPT}}</script></body></html>
"""

# The map. Points are drawn into an ImageData (a Uint32Array over its pixels): older runs, then
# this run's unselected candidates, then its picks, which are also stroked as circles when
# there are few enough. Hover finds the nearest visible point through a 256x256 grid over the
# quantised coordinates (a counting sort built once).
_SCRIPT = r"""
"use strict";
(async function () {
const meta = JSON.parse(document.getElementById("dp-meta").textContent);
const status = document.getElementById("status");
const t0 = performance.now();
const b64 = document.getElementById("dp-data").textContent;
const bin = atob(b64);
const packed = new Uint8Array(bin.length);
for (let i = 0; i < bin.length; i++) packed[i] = bin.charCodeAt(i);
const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
const buf = await new Response(stream).arrayBuffer();
const T = {u8: Uint8Array, u16: Uint16Array, u32: Uint32Array, i32: Int32Array, f32: Float32Array};
function arr(name) {
  const [off, dtype, len] = meta.arrays[name];
  return new T[dtype](buf, off, len);
}
const N = meta.n, X = arr("x"), Y = arr("y"), G = arr("group"), SRC = arr("source");
const FR = arr("frame"), DIST = arr("dist"), TH = arr("thumb");
const DUP = meta.arrays.dup ? arr("dup") : new Int32Array(N).fill(-1);  // (pages before it: none)
// Thumbnails: one base64 blob of JPEGs, TH[i]..TH[i + 1] the bytes of point i's (none where
// equal). A hover decodes only the base64 quads that hold its bytes (decoding the whole blob at
// the first hover stalled it ~90 ms and held ~50 MB more at 15 MB of thumbnails); each is shown
// through a blob: URL made once.
let thumbText = null;
const thumbURLs = new Map();
function thumbBytes(i) {
  const a = TH[i], b = TH[i + 1];
  if (b <= a) return null;
  if (thumbText === null) thumbText = document.getElementById("dp-thumbs").textContent.trim();
  const q = Math.floor(a / 3), bin = atob(thumbText.substring(4 * q, 4 * Math.ceil(b / 3)));
  const bytes = new Uint8Array(b - a);
  for (let k = 0, o = a - 3 * q; k < bytes.length; k++) bytes[k] = bin.charCodeAt(o + k);
  return bytes;
}
function thumbURL(i) {
  let u = thumbURLs.get(i);
  if (!u) {
    const bytes = thumbBytes(i);
    if (!bytes) return null;
    u = URL.createObjectURL(new Blob([bytes], {type: "image/jpeg"}));
    thumbURLs.set(i, u);
  }
  return u;
}
function textOf(name, next) {
  const start = meta.arrays[name][0];
  const end = next ? meta.arrays[next][0] : buf.byteLength;
  let bytes = new Uint8Array(buf, start, end - start);
  let e = bytes.length; while (e > 0 && bytes[e - 1] === 0) e--;
  return new TextDecoder().decode(bytes.subarray(0, e));
}
function lineIndex(text, count) {
  const off = new Uint32Array(count + 1); let k = 1;
  for (let i = 0; i < text.length && k < count; i++) if (text.charCodeAt(i) === 10) off[k++] = i + 1;
  off[count] = text.length + 1;
  return off;
}
const namesText = textOf("names", "sources"), sourcesText = textOf("sources", null);
const nameOff = lineIndex(namesText, N);
const nSources = meta.arrays.sources[2], srcOff = lineIndex(sourcesText, nSources);
const nameOf = i => namesText.substring(nameOff[i], nameOff[i + 1] - 1);
const sourceOf = i => sourcesText.substring(srcOff[SRC[i]], srcOff[SRC[i] + 1] - 1);
const groups = meta.groups, NG = groups.length;
const visible = new Uint8Array(NG).fill(1);

// spatial grid over the quantised coordinates
const cellStart = new Uint32Array(65537), order = new Uint32Array(N);
for (let i = 0; i < N; i++) cellStart[((Y[i] >> 8) << 8 | (X[i] >> 8)) + 1]++;
for (let c = 0; c < 65536; c++) cellStart[c + 1] += cellStart[c];
{ const fill = cellStart.slice(0, 65536);
  for (let i = 0; i < N; i++) order[fill[(Y[i] >> 8) << 8 | (X[i] >> 8)]++] = i; }

// Points drawn exactly on another: the one on top hid the rest. Each point's tip and pin name
// the others there (twins[twinOf[i]]), and the header counts the points that sit on another.
// Only those of one duplicate group (DUP: the same embedding, bit for bit, found in Python: a
// symlink and its target, byte copies) are called duplicates; other samples can share a
// position of the 65536 x 65536 grid in a big pool, and are called what they are.
const twinOf = new Int32Array(N).fill(-1), twins = [];
for (let c = 0; c < 65536; c++) {
  const a = cellStart[c], b = cellStart[c + 1];
  if (b - a < 2) continue;
  const ids = Array.from(order.subarray(a, b)).sort((i, j) => (X[i] - X[j]) || (Y[i] - Y[j]) || (i - j));
  for (let k = 0; k < ids.length;) {
    let e = k + 1;
    while (e < ids.length && X[ids[e]] === X[ids[k]] && Y[ids[e]] === Y[ids[k]]) e++;
    if (e - k > 1) { for (let q = k; q < e; q++) twinOf[ids[q]] = twins.length; twins.push(ids.slice(k, e)); }
    k = e;
  }
}
const onAnother = twins.reduce((n, t) => n + t.length - 1, 0);
const dupSizes = new Map();
for (let i = 0; i < N; i++) if (DUP[i] >= 0) dupSizes.set(DUP[i], (dupSizes.get(DUP[i]) || 0) + 1);
let duplicates = 0; for (const c of dupSizes.values()) duplicates += c - 1;

// The drawing order: the older runs first (the oldest first), then this run's unselected
// candidates, then its picks, so that what this run saw is on top wherever the older runs are
// dense (drawn in array order, 21,000 older samples hid a run's candidates). A counting sort by
// each group's layer, stable: within a layer, the points' own order.
const layerOf = new Uint16Array(NG);
groups.forEach((g, k) => { layerOf[k] = g.kind === "old" ? k : g.kind === "cand" ? NG : NG + 1; });
const drawOrder = new Uint32Array(N);
{ const start = new Uint32Array(NG + 3);
  for (let i = 0; i < N; i++) start[layerOf[G[i]] + 1]++;
  for (let l = 0; l < NG + 2; l++) start[l + 1] += start[l];
  for (let i = 0; i < N; i++) drawOrder[start[layerOf[G[i]]]++] = i; }
const above = (i, j) => layerOf[G[i]] > layerOf[G[j]] || (layerOf[G[i]] === layerOf[G[j]] && i > j);

const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
const tip = document.getElementById("tip"), boxEl = document.getElementById("box");
let W = 0, H = 0, dpr = 1, view = null, drawn = 0, pinned = -1, hover = -1, mode = "pan";
let colourMode = "age";
// "colour by run": a colour per older run, none of them green (this run's picks) or blue (its
// unselected candidates); past the palette, hues by the golden angle, away from those, at three
// lightnesses.
const palette = ["#ff7f0e","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf","#fdae6b"];
function hslHex(h, s, l) {
  const f = n => { const k = (n + h / 30) % 12, a = s * Math.min(l, 1 - l);
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)))).toString(16).padStart(2, "0"); };
  return "#" + f(0) + f(8) + f(4);
}
const runColours = [];
groups.forEach((grp, g) => {
  if (grp.kind !== "old") return;
  const k = runColours.filter(Boolean).length;
  if (k < palette.length) { runColours[g] = palette[k]; return; }
  // 0..255, skipping greens (90..160) and the candidates' blues (190..225)
  const j = k - palette.length, h = (45 + j * 137.508) % 255;
  runColours[g] = hslHex(h < 90 ? h : h < 120 ? h + 70 : h + 105, 0.65, [0.3, 0.6, 0.45][j % 3]);
});
function colourOf(g) {
  const grp = groups[g];
  if (colourMode === "run" && grp.kind === "old") return runColours[g];
  return grp.colour;
}
function abgr(hex) {
  const v = parseInt(hex.slice(1), 16);
  return (0xff000000 | ((v & 0xff) << 16) | (v & 0xff00) | (v >> 16)) >>> 0;
}
// The whole map in the canvas, clear of the toolbar over its top (whose buttons would take the
// pointer from a point under them), with as much room below so that the middle stays the middle.
let fitted = true;  // the view is the fit: a resize fits it anew (not after a pan or zoom)
function fit() {
  const m = 12, bar = document.getElementById("toolbar");
  const my = Math.min(H / 4, Math.max(m, bar.offsetTop + bar.offsetHeight + 6));
  view = {kx: (W - 2 * m) / 65535, ky: Math.max(1, H - 2 * my) / 65535, ox: m, oy: H - my};
  fitted = true;
}
function resize() {
  dpr = window.devicePixelRatio || 1;
  const r = canvas.getBoundingClientRect();
  W = Math.max(1, Math.round(r.width)); H = Math.max(1, Math.round(r.height));
  canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  if (!view || fitted) fit();
  redrawAll();
}
const sx = i => view.ox + X[i] * view.kx, sy = i => view.oy - Y[i] * view.ky;
// The dots are drawn into an ImageData (`layer`) only when the view's scale, the visible runs or
// the colours change; a pan puts it at an offset, and this run's picks (circles), hover, pin and
// selection are drawn over it, so those cost milliseconds at a million points.
let layer = null, layerView = null, dirty = true, frame = 0;
const PICK_R = 3.5;  // this run's picks: circles of this radius over the dots, when so few
const MAX_CIRCLES = 20000;
const pickCircles = () => visible[meta.current] && N - meta.first_pick > 0 && N - meta.first_pick <= MAX_CIRCLES;
// A dot's side in CSS pixels: small pools get bigger dots; the older runs' are a pixel smaller
// than this run's candidates (and lighter: meta.groups), this run's picks a pixel bigger.
function dotSize(g) {
  const base = N < 5000 ? 4 : N < 100000 ? 3 : 2, kind = groups[g].kind;
  return kind === "old" ? base - 1 : kind === "new" ? base + 1 : base;
}
function drawPoints() {
  const t = performance.now();
  const PW = canvas.width, PH = canvas.height;
  if (!layer || layer.width !== PW || layer.height !== PH) layer = ctx.createImageData(PW, PH);
  const px = new Uint32Array(layer.data.buffer);
  px.fill(0xffffffff);
  const col = new Uint32Array(NG), size = new Uint8Array(NG);
  for (let g = 0; g < NG; g++) {
    col[g] = abgr(colourOf(g));
    size[g] = Math.max(1, Math.round(dotSize(g) * dpr));
  }
  const kx = view.kx * dpr, ky = view.ky * dpr, ox = view.ox * dpr, oy = view.oy * dpr;
  let n = 0;
  for (let k = 0; k < N; k++) {
    const i = drawOrder[k], g = G[i]; if (!visible[g]) continue;
    const s = size[g], x = (ox + X[i] * kx - s / 2) | 0, y = (oy - Y[i] * ky - s / 2) | 0;
    if (x < 0 || y < 0 || x >= PW || y >= PH) continue;
    n++;
    const c = col[g], x1 = Math.min(x + s, PW), y1 = Math.min(y + s, PH);
    for (let yy = y; yy < y1; yy++) { const row = yy * PW; for (let xx = x; xx < x1; xx++) px[row + xx] = c; }
  }
  drawn = n; layerView = {...view}; dirty = false;
  api.lastPointsMs = performance.now() - t;
}
function draw() {
  const t = performance.now();
  if (dirty || !layerView || layerView.kx !== view.kx || layerView.ky !== view.ky) drawPoints();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  const dx = Math.round((view.ox - layerView.ox) * dpr), dy = Math.round((view.oy - layerView.oy) * dpr);
  if (dx || dy) { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); }
  ctx.putImageData(layer, dx, dy);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  if (pickCircles()) {
    ctx.fillStyle = colourOf(meta.current); ctx.strokeStyle = "#000"; ctx.lineWidth = 0.6;
    ctx.beginPath();
    for (let i = meta.first_pick; i < N; i++) {
      const x = sx(i), y = sy(i);
      if (x < -5 || y < -5 || x > W + 5 || y > H + 5) continue;
      ctx.moveTo(x + PICK_R, y); ctx.arc(x, y, PICK_R, 0, 2 * Math.PI);
    }
    ctx.fill(); ctx.stroke();
  }
  const sel = api.selected;
  if (sel.length && sel.length <= 5000) {  // outlines; past that the list says it
    ctx.strokeStyle = "#d62728"; ctx.lineWidth = 1; ctx.beginPath();
    for (const i of sel) if (visible[G[i]]) ctx.rect(sx(i) - 3, sy(i) - 3, 6, 6);
    ctx.stroke();
  }
  if (lasso && lasso.length > 1) {
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.setLineDash([4, 3]); ctx.beginPath();
    ctx.moveTo(lasso[0][0], lasso[0][1]);
    for (const [x, y] of lasso) ctx.lineTo(x, y);
    ctx.closePath(); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#0000ff18"; ctx.fill();
  }
  for (const [i, c] of [[pinned, "#d62728"], [hover, "#000"]]) {
    if (i < 0) continue;
    ctx.strokeStyle = c; ctx.lineWidth = 2; ctx.beginPath();
    ctx.arc(sx(i), sy(i), 7, 0, 2 * Math.PI); ctx.stroke();
  }
  api.lastDrawMs = performance.now() - t;
}
function redrawAll() { dirty = true; draw(); }
function later(full) {  // coalesce a burst of events (wheel, drag) into one frame
  if (full) dirty = true;
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
}
// The point under the pointer: the nearest within `radius` pixels, but where the pointer is on
// one of this run's circles (drawn over the dots), the nearest of those circles: the nearest dot
// alone named a grey or blue dot under a green circle (8 of 10 picks in a dense map).
function nearest(mx, my, radius) {
  const u = (mx - view.ox) / view.kx, v = (view.oy - my) / view.ky;
  const ru = radius / view.kx, rv = radius / view.ky;
  const c0 = Math.max(0, (u - ru) >> 8), c1 = Math.min(255, (u + ru) >> 8);
  const r0 = Math.max(0, (v - rv) >> 8), r1 = Math.min(255, (v + rv) >> 8);
  const circles = pickCircles();
  let best = -1, bestD = radius * radius, pick = -1, pickD = PICK_R * PICK_R;
  for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) {
    const cell = r << 8 | c;
    for (let k = cellStart[cell]; k < cellStart[cell + 1]; k++) {
      const i = order[k]; if (!visible[G[i]]) continue;
      const dx = sx(i) - mx, dy = sy(i) - my, d = dx * dx + dy * dy;
      if (d < bestD || (d === bestD && best >= 0 && above(i, best))) { bestD = d; best = i; }
      if (circles && i >= meta.first_pick && (d < pickD || (d === pickD && i > pick))) { pickD = d; pick = i; }
    }
  }
  return pick >= 0 ? pick : best;
}
function esc(s) { return s.replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
function describe(i) {
  const g = groups[G[i]], url = thumbURL(i);
  let h = url ? "<img class='thumb' alt='' src='" + url + "'>" : "";
  h += "<b class='name'>" + esc(nameOf(i)) + "</b><br>source: " + esc(sourceOf(i));
  if (FR[i] >= 0) h += "<br>frame: " + FR[i];
  h += "<br>run: " + esc(g.tag) + (g.kind === "cand" ? " (seen, not selected)" : "");
  if (i >= meta.first_pick) {
    const d = DIST[i - meta.first_pick];
    h += "<br>pick #" + (i - meta.first_pick + 1) + (isNaN(d) ? "" : ", min-distance " + d.toFixed(5));
  }
  if (twinOf[i] >= 0) {  // the others drawn on this very spot, which no pointer can reach
    const others = twins[twinOf[i]].filter(j => j !== i), shown = others.slice(0, 10);
    const same = j => DUP[i] >= 0 && DUP[j] === DUP[i];
    h += "<br><span class='twins'>+" + others.length + " more at this point: " +
      shown.map(j => esc(nameOf(j)) + " (" + esc(groups[G[j]].tag) +
        (same(j) ? ", a duplicate: the same embedding" : ", another sample") + ")").join(", ") +
      (others.length > shown.length ? ", \u2026" : "") + "</span>";
  }
  return h;
}
function showTip(i, mx, my) {
  if (i < 0) { tip.style.display = "none"; return; }
  tip.innerHTML = describe(i); tip.style.display = "block";
  const th = tip.offsetHeight;  // with a thumbnail the tip is tall: above the pointer near the bottom
  tip.style.left = Math.min(mx + 14, W - 240) + "px";
  tip.style.top = (my + 14 + th > H ? Math.max(0, my - 14 - th) : my + 14) + "px";
}
function setSelection(idx, none) {
  api.selected = idx;
  const names = idx.map(nameOf);
  document.getElementById("selcount").textContent = "(" + names.length + ")";
  const ta = document.getElementById("selection");
  ta.placeholder = none || "box- or lasso-select points, or find names, to list them";
  ta.value = names.slice(0, 10000).join("\n") + (names.length > 10000 ? "\n... (" + (names.length - 10000) + " more: download)" : "");
}
function selectBox(x0, y0, x1, y1) {
  const ua = (Math.min(x0, x1) - view.ox) / view.kx, ub = (Math.max(x0, x1) - view.ox) / view.kx;
  const va = (view.oy - Math.max(y0, y1)) / view.ky, vb = (view.oy - Math.min(y0, y1)) / view.ky;
  const out = [];
  for (let i = 0; i < N; i++) {
    if (!visible[G[i]]) continue;
    if (X[i] >= ua && X[i] <= ub && Y[i] >= va && Y[i] <= vb) out.push(i);
  }
  setSelection(out);
  draw();
  return out.length;
}
// Lasso: a free-hand polygon in screen pixels; a point is chosen when its centre is inside
// (even-odd rule), tested in the quantised coordinates after a bounding-box check.
let lasso = null;
function selectLasso(pts) {
  const poly = pts.map(([x, y]) => [(x - view.ox) / view.kx, (view.oy - y) / view.ky]);
  const out = [];
  if (poly.length >= 3) {
    let u0 = Infinity, u1 = -Infinity, v0 = Infinity, v1 = -Infinity;
    for (const [u, v] of poly) { u0 = Math.min(u0, u); u1 = Math.max(u1, u); v0 = Math.min(v0, v); v1 = Math.max(v1, v); }
    const m = poly.length;
    for (let i = 0; i < N; i++) {
      if (!visible[G[i]]) continue;
      const u = X[i], v = Y[i];
      if (u < u0 || u > u1 || v < v0 || v > v1) continue;
      let inside = false;
      for (let a = 0, b = m - 1; a < m; b = a++) {
        const [ua, va] = poly[a], [ub, vb] = poly[b];
        if ((va > v) !== (vb > v) && u < (ub - ua) * (v - va) / (vb - va) + ua) inside = !inside;
      }
      if (inside) out.push(i);
    }
  }
  setSelection(out);
  draw();
  return out.length;
}
// Find: the visible points whose name or source file holds the text, any case. The texts are
// searched whole (indexOf), each hit's line found by bisection: no string made per point.
let lowered = null;
function linesHolding(text, off, count, q) {
  const hit = new Uint8Array(count);
  for (let p = text.indexOf(q); p >= 0;) {
    let lo = 0, hi = count - 1;
    while (lo < hi) { const m = (lo + hi + 1) >> 1; if (off[m] <= p) lo = m; else hi = m - 1; }
    hit[lo] = 1;
    p = text.indexOf(q, off[lo + 1]);
  }
  return hit;
}
function selectMatching(query) {
  const q = query.trim().toLowerCase(), out = [];
  if (q) {
    if (!lowered) {  // lower case can change a text's length: its lines are indexed anew
      const n = namesText.toLowerCase(), s = sourcesText.toLowerCase();
      lowered = {n, s, nOff: lineIndex(n, N), sOff: lineIndex(s, nSources)};
    }
    const byName = linesHolding(lowered.n, lowered.nOff, N, q);
    const bySource = linesHolding(lowered.s, lowered.sOff, nSources, q);
    for (let i = 0; i < N; i++) if (visible[G[i]] && (byName[i] || bySource[SRC[i]])) out.push(i);
  }
  setSelection(out, q ? "no shown point's name or source file holds \u201c" + query.trim() + "\u201d" : "");
  draw();
  return out.length;
}
function selectionText() { return (api.selected || []).map(nameOf).join("\n") + "\n"; }

// legend
const legend = document.getElementById("legend");
function buildLegend() {
  legend.innerHTML = "";
  groups.forEach((g, k) => {
    if (!g.count) return;
    // the swatch is the class's marker on the map: an outlined circle for this run's picks
    // (while so few that they are drawn as circles), else a square dot
    const circle = g.kind === "new" && g.count <= MAX_CIRCLES;
    const side = circle ? 2 * PICK_R + 1 : Math.max(4, 2 * dotSize(k));  // twice the map's, to be seen
    const l = document.createElement("label"), gap = (12 - side) / 2;
    l.innerHTML = "<input type='checkbox' checked data-group='" + k + "'><span class='" + (circle ? "sw circle" : "sw") +
      "' style='background:" + colourOf(k) + ";width:" + side + "px;height:" + side + "px;margin:0 " + gap + "px'>" +
      "</span>" + esc(g.label) + " (" + g.count + ")";
    l.firstChild.checked = !!visible[k];
    l.firstChild.addEventListener("change", e => { visible[k] = e.target.checked ? 1 : 0; redrawAll(); });
    legend.appendChild(l);
  });
}

// interaction
let drag = null;
canvas.addEventListener("mousedown", e => {
  drag = {x: e.offsetX, y: e.offsetY, box: mode === "box" || e.shiftKey, lasso: mode === "lasso" && !e.shiftKey,
    moved: false, view: {...view}};
  if (drag.lasso) lasso = [[e.offsetX, e.offsetY]];
});
window.addEventListener("mouseup", e => {
  if (!drag) return;
  const r = canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
  if (drag.lasso) { const pts = lasso; lasso = null; if (drag.moved) selectLasso(pts); else draw(); }
  else if (drag.box && drag.moved) { selectBox(drag.x, drag.y, mx, my); boxEl.style.display = "none"; }
  else if (!drag.moved) { pinned = nearest(mx, my, 8); pinEl(); draw(); }
  else later(true);  // the end of a pan: draw the points that came into view
  drag = null;
});
canvas.addEventListener("mousemove", e => {
  const mx = e.offsetX, my = e.offsetY;
  if (drag) {
    if (Math.abs(mx - drag.x) + Math.abs(my - drag.y) > 2) drag.moved = true;
    if (drag.lasso) {
      const [lx, ly] = lasso[lasso.length - 1];
      if (Math.abs(mx - lx) + Math.abs(my - ly) > 2) { lasso.push([mx, my]); later(false); }
    } else if (drag.box) {
      Object.assign(boxEl.style, {display: "block", left: Math.min(mx, drag.x) + "px", top: Math.min(my, drag.y) + "px",
        width: Math.abs(mx - drag.x) + "px", height: Math.abs(my - drag.y) + "px"});
    } else if (drag.moved) {
      view.ox = drag.view.ox + mx - drag.x; view.oy = drag.view.oy + my - drag.y; fitted = false; later(false);
    }
    return;
  }
  const i = nearest(mx, my, 8);
  if (i !== hover) { hover = i; draw(); }
  showTip(i, mx, my);
});
canvas.addEventListener("mouseleave", () => { hover = -1; tip.style.display = "none"; draw(); });
canvas.addEventListener("wheel", e => {
  e.preventDefault();
  const f = Math.exp(-e.deltaY * 0.0015), mx = e.offsetX, my = e.offsetY;
  view.ox = mx - (mx - view.ox) * f; view.oy = my - (my - view.oy) * f; view.kx *= f; view.ky *= f;
  fitted = false;
  later(true);
}, {passive: false});
function pinEl() {
  const el = document.getElementById("pinned");
  if (pinned < 0) { el.innerHTML = "click a point to pin it"; el.className = "muted"; return; }
  el.innerHTML = describe(pinned); el.className = "";
}
function setMode(m) {
  mode = m;
  document.getElementById("mode-pan").classList.toggle("on", m === "pan");
  document.getElementById("mode-box").classList.toggle("on", m === "box");
  document.getElementById("mode-lasso").classList.toggle("on", m === "lasso");
}
document.getElementById("mode-pan").onclick = () => setMode("pan");
document.getElementById("mode-box").onclick = () => setMode("box");
document.getElementById("mode-lasso").onclick = () => setMode("lasso");
let findTimer = 0;
document.getElementById("find").addEventListener("input", e => {
  clearTimeout(findTimer);
  findTimer = setTimeout(() => selectMatching(e.target.value), N > 200000 ? 250 : 60);
});
document.getElementById("reset").onclick = () => { fit(); redrawAll(); };
document.getElementById("colour").onchange = e => { colourMode = e.target.value; buildLegend(); redrawAll(); };
document.getElementById("copy").onclick = () => {
  const text = selectionText();
  const fallback = () => { const ta = document.getElementById("selection"); ta.value = text; ta.select(); document.execCommand("copy"); };
  if (navigator.clipboard) navigator.clipboard.writeText(text).catch(fallback); else fallback();
};
document.getElementById("download").onclick = () => {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([selectionText()], {type: "text/plain"}));
  a.download = "selection.txt"; document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
};

const api = {
  meta, nameOf, sourceOf, selectBox, selectLasso, selectMatching, selectionText, setMode, thumbURL, thumbBytes,
  get drawn() { return drawn; }, get view() { return {...view}; },
  get pinned() { return pinned; },
  onAnother, duplicates, twinsOf(i) { return twinOf[i] < 0 ? [] : twins[twinOf[i]].slice(); },
  duplicatesOf(i) { const out = []; if (DUP[i] >= 0) for (let j = 0; j < N; j++) if (DUP[j] === DUP[i]) out.push(j); return out; },
  indexOf(name) { for (let i = 0; i < N; i++) if (nameOf(i) === name) return i; return -1; },
  screenOf(i) { return [sx(i), sy(i)]; },
  redraw() { redrawAll(); return api.lastDrawMs; },
  overlay() { draw(); return api.lastDrawMs; },
  ready: false, loadMs: 0, lastDrawMs: 0, lastPointsMs: 0, selected: [],
};
window.datapoolReport = api;
buildLegend();
new ResizeObserver(resize).observe(canvas);
resize();
api.loadMs = performance.now() - t0;
api.ready = true;
status.textContent = N.toLocaleString() + " points, ready in " + Math.round(api.loadMs) + " ms" +
  (duplicates ? "; " + duplicates.toLocaleString() + (duplicates === 1 ? " point sits" : " points sit") +
   " exactly on another (duplicates: the same embedding), hidden under it" : "") +
  (onAnother > duplicates ? "; " + (onAnother - duplicates).toLocaleString() +
   (onAnother - duplicates === 1 ? " point shares" : " points share") + " the map position of " +
   "a different sample, hidden under it" : "") +
  (onAnother ? ": hover one to see all names" : "") +
  (N && !meta.thumbs.count ? "; no thumbnails: runs with --no-thumbnails, or from before them, " +
   "made none (`datapool report POOL --thumbnails` adds a pool's)" : "");
if (!N) {  // say so on the map rather than leave it blank
  const note = document.createElement("p");
  note.id = "empty"; note.className = "muted";
  note.textContent = "Nothing to draw: the pool holds no samples" + (meta.n_runs ? " now (see the runs below)" : "") + ".";
  Object.assign(note.style, {position: "absolute", top: "45%", width: "100%", textAlign: "center"});
  document.getElementById("mapbox").appendChild(note);
}
})().catch(e => { document.getElementById("status").textContent = "could not draw the map: " + e; throw e; });
"""


def _as_merged(report: dict[str, Any], record: dict[str, Any], pool: Pool) -> dict[str, Any]:
    """The report.json of a run that a merge brought in (its runs.json `record` has
    `merged_from`) is the one its own pool wrote: its index and tag there, and its picks under
    the names they had there. Those as the merged pool knows them: the record's index and tag,
    and each pick's name with the prefixes the merges gave it (pool/merge.py), where the run
    holds it so."""
    if not record.get("merged_from"):
        return report
    from datapool.pool.contents import key_prefixes

    index = int(record["index"])
    own = {n for n, run in zip(pool.filenames, pool.labels.tolist()) if run == index}

    def renamed(name: str) -> str:
        variants = [name]
        for prefix in reversed(key_prefixes(record)):  # the first merge's first
            variants += [prefix + v for v in variants]
        return next((v for v in reversed(variants) if v in own), name)

    picks = [{**s, "filename": renamed(s["filename"])} for s in report.get("selected") or []]
    return {
        **report,
        "index": index,
        "tag": record.get("tag", ""),
        "selected": picks,
        "merged_from": record["merged_from"],
    }


def _runs_of(pool: Pool) -> dict[str, int]:
    """Each sample's run: which thumbnails are not stale (pool/thumbnails.merge_segments)."""
    return dict(zip(pool.filenames, pool.labels.tolist()))


def pool_report_html(
    spec: str,
    settings: Any = None,
    projection: str = "pca",
) -> tuple[bytes, str]:
    """`datapool report POOL`: the page of a whole pool (its last run as "this run"; no
    candidates, which a pool does not keep), and a default file name for it."""
    import os
    from pathlib import Path

    from datapool.errors import ConfigError
    from datapool.pool.layout import REPORT_NAME, run_dir
    from datapool.specs import scheme_of

    if projection not in PROJECTIONS:
        raise ConfigError(f"--projection must be one of {', '.join(PROJECTIONS)}, got {projection}")
    from datapool.pool.store import check_pool_spec

    check_pool_spec(spec)  # (gs://: read as a folder, it said 'no pool at gs:/...')
    report: dict[str, Any] | None = None
    if scheme_of(spec) == "s3":
        from datapool.s3.store import S3Store
        from datapool.s3.store import read_thumbnails as read_s3_thumbnails

        store = S3Store.open(spec, settings)
        manifest, _ = store.objects.require_manifest()
        pool = store.cache().sync(store.objects, manifest.files).pool
        thumbs = read_s3_thumbnails(store.objects, manifest.files, _runs_of(pool))
        name = spec.rstrip("/").rsplit("/", 1)[-1]
        entry = manifest.files.get(f"{run_dir(len(pool.runs) - 1)}/{REPORT_NAME}")
        if pool.runs and entry is not None:
            import io

            buf = io.BytesIO()
            store.objects.read_into(REPORT_NAME, entry, 0, buf)
            report = json.loads(buf.getvalue())
    else:
        from datapool.pool.contents import Pool
        from datapool.pool.local import read_thumbnails

        pool = Pool.open(spec)
        thumbs = read_thumbnails(Path(spec), _runs_of(pool))
        name = Path(os.path.abspath(spec)).name
        if pool.runs:
            path = Path(spec) / run_dir(len(pool.runs) - 1) / REPORT_NAME
            if path.exists():
                report = json.loads(path.read_text())
    if not pool.runs:
        raise ConfigError(f"the pool {spec} has no runs yet: run `datapool run` first")
    if report is None:  # the run's record in runs.json: counts, stop reason, model, config
        report = dict(pool.runs[-1])
    report = _as_merged(report, pool.runs[-1], pool)
    page = report_html(
        report,
        pool.runs,
        pool.filenames,
        np.asarray(pool.embeddings, np.float32),
        pool.labels,
        image_sample_keys(pool.ledger),
        projection=projection,
        title=f"{name}: {len(pool)} samples, {len(pool.runs)} run{'s' * (len(pool.runs) != 1)}",
        thumbnails=thumbs,
    )
    return page, f"{name}-report.html"
