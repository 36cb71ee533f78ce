"""One `datapool run`: list, diff, ingest, select, commit, export.

    source  = open_source(SOURCE)                   # sources/: a folder or s3://...
    store   = open_store(POOL)                      # pool/store.py: a folder or s3://...
    with store.session() as session:                # the pool's lock; session.pool as committed
        diff  = diff_listing(source.list(), session.pool.ledger)   # new / changed / unchanged
        files = ingest(diff.to_process)             # ingest/: decode, pack, embed
        picks = select(candidates, config.selection, selected=pool rows)   # select/
        session.commit(PoolUpdate(...))             # all or nothing; the report and view with it
        export(picks)                               # export.py, after the commit

This module wires the seams together and decides nothing about how a pool is stored, how files
are decoded or how samples are picked. (It is `runner`, not `run`: a submodule named `run` would
shadow the function `datapool.run` once imported.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool._signals import interrupt_says
from datapool._testhooks import point
from datapool.config import RunConfig
from datapool.errors import ConfigError, DatapoolError, ModelMismatchError
from datapool.export import ExportResult, check_destination, export_selection
from datapool.ingest import IngestSpec, candidates_from, get_engine, open_embedder
from datapool.naming import STATUS_OK, source_keys
from datapool.pool import csvfile
from datapool.pool.contents import Pool
from datapool.pool.layout import CSV_NAME, REPORT_NAME, run_dir, run_tag
from datapool.pool.ledger import LedgerDiff, diff_listing
from datapool.pool.store import Committed, PoolSession, PoolUpdate, open_store
from datapool.progress import FrameTotals, Phase, Progress
from datapool.select import Picks, select
from datapool.sources import Source, open_source
from datapool.view import embedding_view_png

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from datapool.candidates import Candidates
    from datapool.ingest.embed import Embedder

log = logging.getLogger("datapool")


@dataclass
class RunResult:
    """What a run did. `run_index` is None when there was nothing new to process."""

    pool: Path | str  # a str for a pool in S3 (s3://bucket/prefix/)
    run_index: int | None
    tag: str | None
    counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    # (sample name, source key, kind) of each selected sample, in the order of `selected`
    selected_sources: list[tuple[str, str, str]] = field(default_factory=list)
    export: ExportResult | None = None  # what --export wrote, when it was given
    report_path: Path | str | None = None
    view_path: Path | str | None = None
    stop_reason: str | None = None
    elapsed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)  # e.g. a stale lock taken over
    previous_pool: Path | str | None = None  # where --process-all / --keep-history kept the pool


@dataclass
class _Run:
    """What one run knows as it goes: its inputs, then what each phase found."""

    source: str
    src: Source
    session: PoolSession
    cfg: RunConfig
    t0: float
    started: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(
    source: str | os.PathLike[str],
    pool: str | os.PathLike[str],
    config: RunConfig | None = None,
    **options: Any,
) -> RunResult:
    """Grow the pool at `pool` with the most diverse new samples of `source`.

    Give either a RunConfig or its fields as keyword arguments, for example
    `datapool.run("bucket/", "pool/", n_samples=100)`.
    """
    if config is not None and options:
        raise ConfigError("give either config or keyword options, not both")
    cfg = config if config is not None else RunConfig(**options)
    t0 = time.perf_counter()
    log.info("run %s into pool %s", os.fspath(source), os.fspath(pool))
    if cfg.export:  # before any work: an export that cannot be written stops the run here
        check_destination(cfg.export, cfg)
    src = open_source(source, cfg)
    with open_store(pool, cfg).session() as session:
        r = _Run(os.fspath(source), src, session, cfg, t0, _now(), warnings=session.warnings)
        r.progress = Progress.auto(cfg.progress)
        return _run(r)


def _run(r: _Run) -> RunResult:
    t = time.perf_counter()
    previous = r.session.pool
    embedder = open_embedder(r.cfg.model_spec)
    if previous.model is not None and not r.cfg.process_all:
        if not previous.model.same_space(embedder.fingerprint):
            raise ModelMismatchError(
                f"pool {r.session.location} was built with {previous.model.describe()}, but this "
                f"run uses {embedder.fingerprint.describe()}; use the pool's model, or rebuild "
                "the pool with --process-all"
            )
    base = Pool.empty(previous.path) if r.cfg.process_all else previous
    r.timings["open_s"] = time.perf_counter() - t

    t = time.perf_counter()
    diff = _list_and_diff(r, base)
    r.timings["list_and_diff_s"] = time.perf_counter() - t
    point("listed")
    todo = diff.to_process
    if len(todo) == 0 and not r.cfg.process_all:
        r.counts.update(processed=0, skipped=0, frames_embedded=0, removed=0, selected=0)
        r.counts["pool_size"] = len(previous)
        return RunResult(
            r.session.location, None, None, r.counts, elapsed_s=_since(r.t0), warnings=r.warnings
        )
    # Samples of changed files leave the pool in this run; they come back only if re-selected.
    keep = ~_samples_of(base.filenames, diff.changed)
    kept = base.embeddings[keep] if len(base) else np.zeros((0, embedder.dim), np.float32)

    t = time.perf_counter()
    cands, per_file, skipped = _ingest(
        r, todo, embedder, {n for n, k in zip(base.filenames, keep) if k}
    )
    r.timings["decode_embed_s"] = time.perf_counter() - t
    point("embedded")
    for s in skipped:
        log.info("skipped %s: %s", s["key"], s["reason"])

    t = time.perf_counter()
    with r.progress.phase("selection") as ph:
        ph.note = f"from {len(cands)} candidates"
        picks = select(cands, r.cfg.selection, kept, threads=r.cfg.threads)
    r.timings["select_s"] = time.perf_counter() - t
    point("selected")

    update = _update(r, base, keep, cands, picks, todo, per_file, skipped, embedder)
    t = time.perf_counter()
    with r.progress.phase("commit + history copy" if update.snapshot else "commit"):
        committed = r.session.commit(update)
    with interrupt_says(committed=True):  # from here on a Ctrl-C lands after the commit
        r.timings["commit_s"] = time.perf_counter() - t
        return _committed(r, update, committed, cands, picks, todo, skipped)


def _committed(
    r: _Run,
    update: PoolUpdate,
    committed: Committed,
    cands: Candidates,
    picks: Picks,
    todo: pd.DataFrame,
    skipped: list[dict[str, str]],
) -> RunResult:
    """The result of a committed run, and its export (after the commit: an export that fails
    leaves the committed pool as it is, and says how to redo it)."""
    kinds = dict(zip(todo["key"].tolist(), todo["kind"].tolist()))
    result = RunResult(
        pool=r.session.location,
        run_index=update.index,
        tag=update.run["tag"],
        counts=r.counts,
        skipped=skipped,
        selected=update.new_names,
        selected_sources=[
            (cands.names[i], cands.keys[i], kinds[cands.keys[i]]) for i in picks.indices.tolist()
        ],
        report_path=committed.report,
        view_path=committed.view,
        stop_reason=picks.stop_reason,
        warnings=r.warnings,
        previous_pool=_previous_pool(r, update),
    )
    if r.cfg.export:
        with r.progress.phase("export") as ph:
            ph.note = f"{len(result.selected_sources)} samples"
            result.export = _export(r, result)
    result.elapsed_s = _since(r.t0)
    log.info("times: %s", ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in r.timings.items()))
    return result


def _previous_pool(r: _Run, update: PoolUpdate) -> Path | str | None:
    """Where the store kept the pool as it was before this run (history/...), if it did."""
    kept = update.run.get("previous_pool")
    if not kept:
        return None
    location = r.session.location
    return location / kept if isinstance(location, Path) else f"{location.rstrip('/')}/{kept}"


def _export(r: _Run, result: RunResult) -> ExportResult:
    assert r.cfg.export is not None and result.run_index is not None
    try:
        return export_selection(r.src, result.selected_sources, r.cfg.export, r.cfg)
    except DatapoolError as e:
        raise type(e)(
            f"{e}; {result.tag} was committed to the pool: redo its export with `datapool export "
            f"{r.session.location} {r.cfg.export} --run {result.run_index}`"
        ) from None


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _list_and_diff(r: _Run, base: Pool) -> LedgerDiff:
    with r.progress.phase("listing") as ph:
        listing = r.src.list()
        ph.note = f"{len(listing)} media files"
    diff = diff_listing(listing, base.ledger)
    r.counts.update(
        listed=len(listing),
        ignored=int(getattr(r.src, "n_ignored", 0)),
        new=len(diff.new),
        changed=len(diff.changed),
        unchanged=len(diff.unchanged),
        missing=len(diff.missing),
    )
    return diff


def _ingest(
    r: _Run, todo: pd.DataFrame, embedder: Embedder, taken: set[str]
) -> tuple[Candidates, dict[str, tuple[str, int]], list[dict[str, str]]]:
    """Decode and embed every file to process (ingest/: the stages overlap, batches span files).

    A file that fails part-way is skipped whole: a file is in the run with all its frames or
    not at all."""
    keys = todo["key"].tolist()
    spec = IngestSpec(
        source=r.source,
        files=tuple(zip(keys, todo["kind"].tolist())),
        model=r.cfg.model_spec,
        options=r.cfg.ingest,
        source_config=r.cfg,
    )
    totals = FrameTotals(list(zip(keys, todo["kind"].tolist(), todo["size"].tolist())))
    with r.progress.phase("decode+embed", unit="frames", total=totals.total()) as ph:
        follow = _FollowFrames(ph, totals, len(keys))
        with _headers_read_ahead(r, todo, follow):
            results = get_engine(r.cfg.engine).ingest(
                spec,
                source=r.src,
                embedder=embedder,
                on_file=follow.file_done,
                on_frames=follow.frames,
            )
    cands, skipped = candidates_from(results, keys, taken, embedder.dim)
    return cands, results.status, skipped


@contextmanager
def _headers_read_ahead(r: _Run, todo: pd.DataFrame, follow: _FollowFrames) -> Iterator[None]:
    """For a local source with progress shown: read each video's declared frame count from its
    header on a side thread, so the frame total is right from the start (S3 sources are not
    read twice: their videos are counted as decoders open them)."""
    from datapool.sources.local import LocalSource

    videos = todo.loc[todo["kind"] == "video", "key"].tolist()
    if r.progress.mode == "off" or not videos or not isinstance(r.src, LocalSource):
        yield
        return
    stop = threading.Event()

    def read() -> None:
        from datapool.ingest.decode import declared_frames

        for key, media in r.src.open_inputs(videos):
            if stop.is_set():
                return
            if isinstance(media, (str, os.PathLike)):
                n = declared_frames(media)
                if n is not None:
                    follow.declared(key, n)

    reader = threading.Thread(target=read, name="progress-headers", daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        reader.join()


class _FollowFrames:
    """Moves the decode+embed phase by decoded frames; the total starts as an estimate and is
    corrected as each video's container is opened and each file ends."""

    def __init__(self, phase: Phase, totals: FrameTotals, n_files: int) -> None:
        self.phase, self.totals, self.n_files = phase, totals, n_files
        self.decoded: dict[str, int] = {}  # each key is written by one decoder thread
        self.files = 0

    def frames(self, key: str, decoded: int, frame_count: int) -> None:
        if decoded == 1:
            self.totals.opened(key, frame_count)
            self.phase.set_total(self.totals.total())
        self.phase.advance(decoded - self.decoded.get(key, 0))
        self.decoded[key] = decoded

    def declared(self, key: str, frame_count: int) -> None:
        self.totals.declared(key, frame_count)
        self.phase.set_total(self.totals.total())

    def file_done(self, key: str) -> None:
        self.totals.finished(key, self.decoded.get(key, 0))
        self.phase.set_total(self.totals.total())
        self.files += 1
        self.phase.note = f"{self.files}/{self.n_files} files"


def _update(
    r: _Run,
    base: Pool,
    keep: npt.NDArray[np.bool_],
    cands: Candidates,
    picks: Picks,
    todo: pd.DataFrame,
    per_file: dict[str, tuple[str, int]],
    skipped: list[dict[str, str]],
    embedder: Embedder,
) -> PoolUpdate:
    """What this run commits: its rows, ledger rows, run record, report and view."""
    index = len(base.runs)
    order = picks.indices
    new_names = [cands.names[i] for i in order]
    selected_per_key: dict[str, int] = {}
    for i in order:
        selected_per_key[cands.keys[i]] = selected_per_key.get(cands.keys[i], 0) + 1
    pool_size = int(keep.sum()) + len(order)
    r.counts.update(
        processed=len(todo),
        skipped=len(skipped),
        frames_embedded=len(cands),
        removed=int((~keep).sum()),
        selected=len(order),
        pool_size=pool_size,
        files_ok=sum(1 for s, _ in per_file.values() if s == STATUS_OK),
    )
    run_record: dict[str, Any] = {
        "index": index,
        "tag": run_tag(index),
        "started_at": r.started,
        "finished_at": _now(),
        "source": str(r.src),
        "config": r.cfg.to_json(),
        "model": embedder.fingerprint.to_json(),
        "counts": r.counts,
        "stop_reason": picks.stop_reason,
        "report": f"{run_dir(index)}/{REPORT_NAME}",
    }
    _warn_formula_names(r, new_names)
    _warn_near_duplicates(r, picks)
    update = PoolUpdate(
        run=run_record,
        model=embedder.fingerprint,
        new_names=new_names,
        new_embeddings=np.ascontiguousarray(cands.embeddings[order]),
        new_labels=np.full(len(order), index, np.int64),
        keep=keep,
        ledger_rows=_ledger_rows(base.ledger, todo, per_file, selected_per_key, index),
        report=_report(r, run_record, cands, picks, skipped),
        view=b"",
        reset=r.cfg.process_all,
        snapshot=r.cfg.process_all or r.cfg.keep_history,
    )
    t = time.perf_counter()
    with r.progress.phase("view"):
        update.view = _view(r, base, keep, update, cands, picks, pool_size)
    r.timings["view_s"] = time.perf_counter() - t
    point("rendered")
    return update


def _warn_formula_names(r: _Run, new_names: list[str]) -> None:
    risky = [n for n in new_names if n[:1] in csvfile.FORMULA_CHARS]
    if risky:
        r.warnings.append(
            f"{len(risky)} new sample names start with =, +, -, @, a tab or a carriage return "
            f"(first: {risky[0]!r}): {CSV_NAME} quotes them, but a spreadsheet may still run them "
            "as formulas; import it as text (docs/robustness.md)"
        )
        log.warning("%s", r.warnings[-1])


NEAR_DUPLICATE = 0.05
"""A pick closer than this to the pool (Euclidean between unit embeddings) is a near-duplicate:
about the distance between neighbouring frames of a video, or one picture saved as JPEG and PNG."""


def _warn_near_duplicates(r: _Run, picks: Picks) -> None:
    """Warn when many picks add little: a fifth or more of them (at least 3) are near-duplicates
    of the pool, and no --min-distance stopped the selection before them."""
    d = picks.min_distances[np.isfinite(picks.min_distances)]
    close = int(np.sum(d < NEAR_DUPLICATE))
    if close >= 3 and close * 5 >= len(picks) and r.cfg.min_distance is None:
        r.warnings.append(
            f"{close} of the {len(picks)} picks are near-duplicates of the pool (closer than "
            f"{NEAR_DUPLICATE}); --min-distance {NEAR_DUPLICATE} would stop before them"
        )
        log.warning("%s", r.warnings[-1])


def _report(
    r: _Run,
    run_record: dict[str, Any],
    cands: Candidates,
    picks: Picks,
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        **{k: run_record[k] for k in ("index", "tag", "started_at", "finished_at", "source")},
        "pool": str(r.session.location),
        "config": run_record["config"],
        "model": run_record["model"],
        "counts": r.counts,
        "stop_reason": picks.stop_reason,
        "skipped": skipped,
        "ignored": list(getattr(r.src, "ignored", []))[:1000],  # files without a media extension
        "selected": [
            {"filename": cands.names[i], "min_distance": _json_float(d)}
            for i, d in zip(picks.indices.tolist(), picks.min_distances.tolist())
        ],
        "timings": r.timings,
        "warnings": r.warnings,
        "distances": "Euclidean between unit-length embeddings: 0 (same) to 2 (opposite)",
    }


def _view(
    r: _Run,
    base: Pool,
    keep: npt.NDArray[np.bool_],
    update: PoolUpdate,
    cands: Candidates,
    picks: Picks,
    pool_size: int,
) -> bytes:
    kept = base.embeddings[keep] if len(base) else np.zeros((0, cands.dim), np.float32)
    unselected = np.ones(len(cands), bool)
    unselected[picks.indices] = False
    runs = [*base.runs, update.run]
    name = Path(str(r.session.location).rstrip("/")).name
    return embedding_view_png(
        np.concatenate([kept, update.new_embeddings]),
        np.concatenate([base.labels[keep], update.new_labels]),
        update.index,
        [run["tag"] for run in runs],
        unselected=cands.embeddings[unselected],
        title=f"{name}: {update.run['tag']} adds {len(picks)} of {len(cands)} candidates "
        f"(pool {pool_size})",
    )


def _json_float(x: float) -> float | None:
    return x if np.isfinite(x) else None


def _samples_of(filenames: list[str], files: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Mask of the pool samples that came from `files` (an image's name is its key; a video's
    frames are named `{stem}-{index}-{ext}.png`)."""
    if len(files) == 0 or not filenames:
        return np.zeros(len(filenames), dtype=bool)
    images = set(files.loc[files["kind"] == "image", "key"])
    wanted = set(files["key"])
    return np.array([k in wanted for k in source_keys(filenames, images)], dtype=bool)


def _ledger_rows(
    ledger: pd.DataFrame,
    todo: pd.DataFrame,
    per_file: dict[str, tuple[str, int]],
    selected_per_key: dict[str, int],
    run_index: int,
) -> pd.DataFrame:
    """This run's ledger rows, one per file it processed, with the ledger's dtypes."""
    import pandas as pd

    keys = todo["key"].tolist()
    n = len(keys)
    columns = {
        "key": keys,
        "size": todo["size"].to_numpy(),
        "mtime_ns": todo["mtime_ns"].to_numpy(),
        "run": np.full(n, run_index, np.int64),
        "status": [per_file[k][0] for k in keys],
        "n_samples": np.array([per_file[k][1] for k in keys], np.int64),
        "n_selected": np.array([selected_per_key.get(k, 0) for k in keys], np.int64),
        "etag": todo["etag"].tolist() if "etag" in todo.columns else [""] * n,
    }
    # Column by column with the ledger's dtypes (object text, int64 numbers): no inference.
    return pd.DataFrame({c: pd.Series(v, dtype=ledger.dtypes[c]) for c, v in columns.items()})
