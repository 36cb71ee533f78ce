"""Sequence selection: pick runs of consecutive video frames rather than single frames.

Lightly's `selected_sequence_length` (a worker setting, docs.lightly.ai/docs/sequence-selection):
each video is split into sequences of L consecutive frames, a sequence's embedding is the mean of
its frames', the selection runs on the sequences, and every frame of a picked sequence is
selected; `n_samples` counts frames and must be a multiple of L. Here:

- the frames are the run's candidates of each video in frame order (with `--frame-stride` or
  `--fps`, consecutive among the embedded frames); a video's last frames that do not fill a
  sequence are left out, and so are images (sequence selection is for videos, as in Lightly);
- a sequence's embedding is its frames' mean scaled back to unit length (so distances stay
  0..2, comparable with the pool's rows); its strategy inputs are its frames' means (numbers,
  class distributions; NaN-aware) or, for categories, its first frame's; BALANCE counts a pool
  row (one frame) as 1/L of a sequence, so that class shares are shares of frames;
- the budget: `n_samples / L` sequences, `proportion_samples` of the frames rounded up to whole
  sequences, or as many as `min_distance` allows; the selection (any strategies, the pool
  counted as usual) runs on the sequence table through `select`, and the picks come back as
  frames, each frame with its sequence's min-distance and explanation.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.candidates import Candidates
from datapool.naming import frame_index, video_key_of

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy.typing as npt

    from datapool.config import SelectionConfig
    from datapool.progress import Phase
    from datapool.select import Picks


def sequences_of(cands: Candidates, length: int) -> list[list[int]]:
    """The candidates' sequences: per video (in order of first appearance), its frames by frame
    number, cut into runs of `length`; an incomplete last run is left out."""
    frames: dict[str, list[tuple[int, int]]] = {}
    for i, (name, key) in enumerate(zip(cands.names, cands.keys)):
        index = frame_index(name, key) if video_key_of(name) is not None else None
        if index is not None:
            frames.setdefault(key, []).append((index, i))
    out = []
    for rows in frames.values():
        ordered = [i for _, i in sorted(rows)]
        for start in range(0, len(ordered) - length + 1, length):
            out.append(ordered[start : start + length])
    return out


def sequence_table(cands: Candidates, seqs: list[list[int]]) -> Candidates:
    """One row per sequence: named by its first frame, its mean unit embedding, mean inputs."""
    dim = cands.dim
    if not seqs:
        return Candidates([], [], np.zeros((0, dim), np.float32), {}, dict(cands.classes))
    idx = np.asarray(seqs, np.int64)  # (n_seq, L)
    mean = cands.embeddings[idx].astype(np.float64).mean(axis=1)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    emb = np.divide(mean, norms, out=np.zeros_like(mean), where=norms > 0).astype(np.float32)
    columns: dict[str, npt.NDArray[Any]] = {}
    for key, col in cands.columns.items():
        if col.dtype == object:
            columns[key] = col[idx[:, 0]]
        else:
            with warnings.catch_warnings():  # a sequence whose values are all NaN: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                columns[key] = np.nanmean(col[idx].astype(np.float64), axis=1)
    return Candidates(
        [cands.names[s[0]] for s in seqs],
        [cands.keys[s[0]] for s in seqs],
        np.ascontiguousarray(emb),
        columns,
        dict(cands.classes),
    )


def select_sequences(
    cands: Candidates,
    config: SelectionConfig,
    selected: npt.NDArray[np.float32],
    threads: int = 0,
    *,
    length: int,
    pool: Candidates | None = None,
    queries: Mapping[str, npt.NDArray[np.float32]] | None = None,
    device: str = "cpu",
    phase: Phase | None = None,
) -> Picks:
    """`select` over the sequences of `length` frames of the candidates' videos; the picks are
    the frames of the picked sequences, in pick order (see the module doc). `phase` counts the
    sequences picked."""
    from datapool.select import Picks, select

    seqs = sequences_of(cands, length)
    table = sequence_table(cands, seqs)
    frames = config.budget(length * len(seqs))
    n_seq = math.ceil(frames / length) if config.n_samples is None else frames // length
    if config.n_samples is not None or config.proportion_samples is not None:
        config = dataclasses.replace(config, n_samples=max(n_seq, 1), proportion_samples=None)
    # A pool row is one frame, a candidate L of them: BALANCE counts the pool's rows as 1/L.
    picks = select(
        table,
        config,
        selected,
        threads,
        pool=pool,
        queries=queries,
        device=device,
        pool_weight=1.0 / length,
        phase=phase,
    )
    chosen = picks.indices.tolist()
    if not seqs:
        chosen = []
    indices = np.array([i for s in chosen for i in seqs[s]], np.int64)
    dists = np.repeat(picks.min_distances, length).astype(np.float32)
    explain = [e for e in picks.explain for _ in range(length)]
    balance = [_in_frames(b, length) for b in picks.balance]
    # a THRESHOLD kept or left out whole sequences (on their frames' mean): counted so
    thresholds = [{**t, "unit": "sequences"} for t in picks.thresholds]
    zeros = picks.zero_objective and {**picks.zero_objective, "unit": "sequences"}
    return Picks(
        indices,
        dists,
        picks.stop_reason,
        explain,
        balance,
        thresholds=thresholds,
        zero_objective=zeros or None,
    )


def _in_frames(b: dict[str, Any], length: int) -> dict[str, Any]:
    """A balance summary (select.balance_summary) in frames: it counted a picked sequence as 1
    and a pool row as 1/`length`."""
    before, picked = b["counted"]["pool_before"] * length, b["counted"]["picked"] * length
    rows = []
    for c in b["classes"]:
        n = (c["pool_before"] or 0.0) * before + (c["picked"] or 0.0) * picked
        total = before + picked
        rows.append(
            {**c, "pool_after": round(n / total, 6) if total > 0 else None, "count_after": n}
        )
    return {**b, "counted": {"pool_before": before, "picked": picked}, "classes": rows}
