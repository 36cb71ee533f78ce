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
import shlex
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool._signals import mark_interrupt, run_starts
from datapool._testhooks import point
from datapool.config import RunConfig, RunOptions, check_options
from datapool.errors import (
    IN_RESULT,
    ConfigError,
    DatapoolError,
    ModelError,
    ModelMismatchError,
    SourceError,
)
from datapool.export import (
    LIST_NAME,
    ExportResult,
    check_destination,
    dest_label,
    export_selection,
    read_pre_annotations,
    run_sample_info,
)
from datapool.fingerprint import DECODER_VERSION
from datapool.ingest import IngestSpec, candidates_from, get_engine, open_embedder
from datapool.naming import STATUS_OK, counted, media_kind, run_tag, source_keys
from datapool.pool import csvfile
from datapool.pool.contents import Pool, since_source_moved
from datapool.pool.keepout import SAME_OBJECT_IOU, kept_out
from datapool.pool.layout import (
    CSV_NAME,
    REPORT_NAME,
    RUNS_NAME,
    pool_above,
    pool_folders,
    run_dir,
)
from datapool.pool.ledger import (
    LedgerDiff,
    diff_listing,
    image_sample_keys,
    runs_of,
)
from datapool.pool.moves import find_moves
from datapool.pool.store import Committed, PoolUpdate, check_pool_spec, open_store
from datapool.progress import FrameTotals, Phase, Progress
from datapool.report_html import MAX_THUMBNAIL_BYTES, run_report_html, with_export
from datapool.runner.crops import (
    _check_crop_mode,
    _count_crops,
    _crop_work,
    _crops_report,
    _image_keys,
    _picked_boxes,
    _recut,
    _with_predictions_recorded,
)
from datapool.runner.state import _hash_counted, _reader, _Run, lightly_reader
from datapool.runner.upgrade import (
    _record_checks,
    _reread_old_decodes,
    _vouched,
    _with_legacy_hashes,
)
from datapool.select import Picks, select
from datapool.sources import READ_FAILED, Source, open_source
from datapool.sources.filters import (
    ListingFilter,
    export_folders,
    match_report,
    prefix_inside,
    read_relevant_filenames,
)
from datapool.specs import normal_spec, path_arg, scheme_of, strip_userinfo
from datapool.view import RowStack, embedding_view_png

if TYPE_CHECKING:
    from collections.abc import Collection

    import numpy.typing as npt
    import pandas as pd
    from typing_extensions import Unpack

    from datapool.candidates import Candidates
    from datapool.fingerprint import ModelFingerprint
    from datapool.ingest.embed import Embedder

log = logging.getLogger("datapool")


@dataclass(repr=False)
class RunResult:
    """What a run did (`datapool.run` returns it; the CLI prints it, `--json` writes it).

    pool: the pool (a Path, or the s3://bucket/prefix/ str). run_index, tag: the run's number
        and name; None when there was nothing new to process (no run was recorded).
    counts: the files and samples of each kind: listed, ignored, excluded, new, changed,
        unchanged, missing, moved, processed, skipped, frames_embedded, selected, pool_size...
    skipped: the files not used, each {"key": source key, "reason": why}.
    selected: the names of the samples this run added, in pick order (as in the pool's CSV).
    selected_sources: (sample name, source key, "image" or "video") of each, in that order.
    stop_reason: why selection stopped: "budget", "min_distance", "every candidate taken"...
    warnings: what the run warned about (also logged to the `datapool` logger).
    report_path, view_path, html_path: the run's report.json, embedding_view.png and
        report.html (None where not written).
    export: what `export=` wrote (an ExportResult), else None.
    previous_pool: where process_all / keep_history kept the pool as it was.
    dry_run, would_process: with dry_run=True, nothing was written and these files would be
        processed.
    model: the model's inspection line (model_brief: the CLI summary's, within 100 columns:
        the file, input size, dimension, pooling, normalisation's source). elapsed_s: the run's wall time. frames_decoded: the
        video frames and images decoded. balance, thresholds, zero_objective: what the
        BALANCE and THRESHOLD strategies and an objective of 0 did (docs/selection.md).

    Its repr is a one-line summary (a notebook shows it); every field is an attribute, and
    `dataclasses.asdict(result)` gives them all.
    """

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
    html_path: Path | str | None = None  # the interactive report (report_html.py)
    stop_reason: str | None = None
    elapsed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)  # e.g. a stale lock taken over
    model: str = ""  # the model inspection line (input, output, pooling, normalisation)
    model_brief: str = ""  # the summary's model line, within 100 columns (Embedder.brief)
    previous_pool: Path | str | None = None  # where --process-all / --keep-history kept the pool
    dry_run: bool = False  # with --dry-run: nothing was processed or written
    would_process: list[str] = field(default_factory=list)  # with --dry-run: the files to process
    # per BALANCE strategy, the class shares against its target (select.balance_summary)
    balance: list[dict[str, Any]] = field(default_factory=list)
    # per THRESHOLD strategy, how many candidates it kept (select.terms.threshold_summary)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    # candidates of objective 0 or no value, and the picks that filled the budget from those
    # of 0 (select.Picks.zero_objective); None where there were none
    zero_objective: dict[str, Any] | None = None
    # the video frames and images decoded, embedded or not (--fps, --frame-stride leave some
    # out): the threaded engine's count, which its progress line shows; 0 where not counted
    frames_decoded: int = 0

    def __repr__(self) -> str:
        """One line, whatever the run's size: a run that added 100,000 samples is not shown as
        100,000 names (which a notebook would print whole)."""
        c = self.counts
        parts = [
            f"pool={os.fspath(self.pool)!r}",
            f"run_index={self.run_index!r}",
            f"tag={self.tag!r}",
            f"selected={len(self.selected)}",
            f"processed={c.get('processed', 0)}",
            f"skipped={len(self.skipped)}",
            f"pool_size={c.get('pool_size', '?')}",
            f"stop_reason={self.stop_reason!r}",
        ]
        if self.warnings:
            parts.append(f"warnings={len(self.warnings)}")
        if self.dry_run:
            parts.append(f"dry_run=True, would_process={len(self.would_process)}")
        if self.export is not None:
            parts.append(f"export={self.export.dest!r}")
        parts.append(f"elapsed_s={self.elapsed_s:.1f}")
        return f"RunResult({', '.join(parts)})"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(
    source: str | os.PathLike[str],
    pool: str | os.PathLike[str],
    config: RunConfig | None = None,
    **options: Unpack[RunOptions],
) -> RunResult:
    """Grow the pool at `pool` with the most diverse new samples of `source`: `datapool run`.

    source: a folder, s3://bucket/prefix or gs://bucket/prefix (a str or pathlib.Path).
    pool: a folder or s3://bucket/prefix; made by the first run.
    config / options: a RunConfig, or its fields as keyword arguments (not both), for example
        `datapool.run("bucket/", "pool/", n_samples=100)`. A budget is required: n_samples,
        proportion_samples or min_distance. The fields and their CLI flags: docs/python.md.

    Returns a RunResult (what was selected, skipped and why, the counts, the report's paths).
    Raises a datapool.DatapoolError subclass with the CLI's one-line message: ConfigError for
    a mistake in the arguments (UnknownOptionError, also a TypeError, for a misspelled one),
    SourceError, ModelError, ModelMismatchError, PoolLockedError (another run holds the pool),
    PoolCorruptError, PoolWriteError. Ctrl-C raises KeyboardInterrupt with the pool as it was
    (or, past the commit point, committed: the exception's `pool_committed` says which).
    Progress goes to stderr: a bar on a terminal, a line every 5 s otherwise (a notebook);
    progress=False for none. Safe to call from any thread; one run at a time per pool.
    """
    check_options(options)
    if config is not None and options:
        raise ConfigError("give either config or keyword options, not both")
    if config is not None and not isinstance(config, RunConfig):
        raise ConfigError(
            f"config must be a datapool.RunConfig, got {type(config).__name__}; or give its "
            "fields as keyword arguments: datapool.run(source, pool, n_samples=100)"
        )
    cfg = config if config is not None else RunConfig(**options)
    t0 = time.perf_counter()
    source, pool = path_arg("source", source), path_arg("pool", pool)
    _check_paths(source, pool, cfg)
    log.info("run %s into pool %s", os.fspath(source), os.fspath(pool))
    # Before any work: an export that cannot be written (a bucket not there) stops the run here.
    checked = check_destination(cfg.export, cfg, pool) if cfg.export else None
    if checked is not None:  # (a check that could not tell: said now, kept in the result)
        log.warning("%s", checked, extra={IN_RESULT: True})
    src = open_source(source, cfg)
    folders = _lightly_folders(cfg)  # before any work: a missing folder stops the run here
    _check_pre_annotate(cfg, src, folders)
    if cfg.dry_run:
        result = _dry_run(os.fspath(source), src, cfg, t0, pool, folders)
        result.warnings[:0] = [checked] if checked is not None else []
        return result
    run_starts()
    try:
        with open_store(pool, cfg).session() as session:
            if checked is not None:
                session.warnings.insert(0, checked)
            r = _Run(os.fspath(source), src, session, cfg, t0, _now(), warnings=session.warnings)
            r.lightly_folders = folders
            r.progress = Progress.auto(cfg.progress)
            result = _run(r)
        point("unlocked")
        return result
    except KeyboardInterrupt as e:  # before or after the commit point (whatever line it hit)
        mark_interrupt(e)
        raise


def _check_paths(source: Any, pool: Any, cfg: RunConfig) -> None:
    """Refuse what would silently do something else: an empty path (an unset variable) means
    the current folder to the OS, and a folder given as the model."""
    for what, value in (("source", source), ("pool", pool)):
        if not os.fspath(value):
            raise ConfigError(f"the {what} path is empty (an unset variable?); give a folder")
    check_pool_spec(pool)  # (gs://: before the source is opened)
    # Before the pool's lock is taken (in the source folder, if it were the pool).
    prefix_inside(os.fspath(source), os.fspath(pool), "--pool")
    _check_not_in_a_pool(os.fspath(source))
    _check_pool_not_in_a_pool(os.fspath(pool))
    if cfg.model is not None and Path(cfg.model).is_dir():
        # An export folder (optimum-cli's, a Hugging Face clone): name the models in it.
        inside = sorted(Path(cfg.model).glob("*.onnx")) + sorted(Path(cfg.model).glob("*/*.onnx"))
        which = f": {' or '.join(str(p) for p in inside[:3])}" if inside else " (it holds none)"
        raise ConfigError(f"model {cfg.model} is a folder; give the path of an .onnx file{which}")
    if cfg.device == "cuda":  # before any work: a GPU selection that cannot run stops it here
        from datapool.select.fps import use_cuda

        use_cuda(cfg.device)


def _check_not_in_a_pool(source: str) -> None:
    """Refuse a local source inside a pool folder (`POOL/runs`): the pool's views and reports
    would be read as raw data (a source that is a pool is refused once it is listed)."""
    if scheme_of(source):
        return
    around = pool_above(Path(source))
    if around is not None:
        import json

        try:
            runs = json.loads((around / RUNS_NAME).read_text(encoding="utf-8"))["runs"]
            grown = ", " + " and ".join(sorted(pool_sources(runs))) if runs else ""
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # (runs.json damaged)
            grown = ""
        raise SourceError(
            f"source {source} is inside the datapool pool {around}: its views and reports are "
            f"no raw data; give the folder the pool was grown from{grown}"
        )


def _check_pool_not_in_a_pool(pool: str) -> None:
    """Refuse a local pool inside another pool's folder (`POOL/sub`, `POOL/runs/1/x`): that
    pool's undo and rm delete its runs' folders, and its snapshots copy them."""
    if scheme_of(pool):
        return
    from datapool.pool.history import check_not_a_snapshot

    check_not_a_snapshot(pool)  # a snapshot, or a folder in one: the snapshot's own refusal
    around = pool_above(Path(pool))
    if around is not None:
        raise ConfigError(
            f"--pool {pool} is inside the datapool pool {around}; give a folder outside it "
            "(a pool's folder is its own: its undo and rm delete its runs' folders)"
        )


def _run(r: _Run) -> RunResult:
    t = time.perf_counter()
    previous = r.session.pool
    _check_source(r, previous)
    base = Pool.empty(previous.path) if r.cfg.process_all else previous
    _check_tag(r, base)
    _check_crop_mode(r, base)
    embedder = r.embedder = _open_model(r, previous)
    r.timings["open_s"] = time.perf_counter() - t

    t = time.perf_counter()
    diff = _list_and_diff(r, base)
    _check_other_sources(r, base, diff)
    _warn_sampling_changed(r, base, diff)
    diff = _reread_old_decodes(r, base, diff, embedder)
    diff = _recut(r, base, diff)
    r.counts["touched"] = len(diff.touched)  # less those read again (a part of `unchanged`)
    todo = _with_hashes(r, _without_kept_out(r, previous, diff))
    base = r.moves.apply(base)
    r.timings["list_and_diff_s"] = time.perf_counter() - t
    point("listed")
    if len(todo) == 0 and not r.moves and not r.cfg.process_all and not _moves_source(r, base):
        _record_checks(r, base, diff)
        return _nothing_new(r, previous)
    _check_inputs(r, base)
    upgraded = _with_predictions_recorded(r, base, diff, _with_legacy_hashes(r, base, diff))
    # Samples of changed files leave the pool in this run; they come back only if re-selected.
    keep = ~_samples_of(base.filenames, diff.changed, base.ledger)
    kept = _kept_rows(base, keep, embedder.dim)

    t = time.perf_counter()
    cands, per_file, skipped = _ingest(r, todo, embedder, _kept_names(base.filenames, keep))
    cands = _without_removed(r, previous, cands)
    if _unreadable_again(r, base, diff, todo, cands, skipped):
        return _still_unreadable(r, base, previous, diff, len(todo), skipped)
    _warn_images_not_in_sequences(r, cands)
    r.timings["decode_embed_s"] = time.perf_counter() - t
    point("embedded")
    for s in skipped:
        log.info("skipped %s: %s", s["key"], s["reason"])

    t = time.perf_counter()
    unit = "sequences" if r.cfg.selected_sequence_length > 1 else "picks"
    with r.progress.phase("selection", unit=unit) as ph:
        ph.note = f"from {counted(len(cands), 'candidate')}"
        picks = _select(r, base, keep, cands, kept, ph)
        ph.set_done(len(picks) // r.cfg.selected_sequence_length)
        ph.stopped = "" if picks.stop_reason == "budget" else picks.stop_reason or ""
    r.timings["select_s"] = time.perf_counter() - t
    point("selected")

    update = _update(r, base, keep, cands, picks, todo, per_file, skipped, embedder)
    update.ledger_rows = _with_carried_rows(
        update.ledger_rows, diff.touched, upgraded, r.moves.ledger_rows
    )
    t = time.perf_counter()
    with r.progress.phase("commit + history copy" if update.snapshot else "commit"):
        committed = r.session.commit(update)
    r.timings["commit_s"] = time.perf_counter() - t
    return _committed(r, update, committed, cands, picks, todo, skipped)


def _unreadable_again(
    r: _Run,
    base: Pool,
    diff: LedgerDiff,
    todo: pd.DataFrame,
    cands: Candidates,
    skipped: list[dict[str, str]],
) -> bool:
    """Whether this run only tried again files a run could not read (every run does), and could
    not read them again, for the reason the ledger has: a run of no samples would record nothing
    (every hourly run on a folder with one unreadable file added one, and `undo` took that)."""
    if r.cfg.process_all or r.cfg.retry_skipped or r.moves or len(cands) or not len(todo):
        return False
    if _moves_source(r, base) or len(skipped) != len(todo):
        return False
    retried = set(diff.retry["key"].tolist())
    was = dict(zip(base.ledger["key"].tolist(), base.ledger["status"].tolist()))
    return all(
        s["key"] in retried
        and s["reason"].startswith(READ_FAILED)
        and was.get(s["key"]) == s["reason"]
        for s in skipped
    )


def _still_unreadable(
    r: _Run, base: Pool, previous: Pool, diff: LedgerDiff, tried: int, skipped: list[dict[str, str]]
) -> RunResult:
    """The result of a run that could read none of the files it tried again: it commits no run
    (what it checked of unchanged files it records, as a run with nothing new does) and names
    them, for the next run tries them again."""
    for s in skipped:
        log.info("skipped %s: %s", s["key"], s["reason"])
    _record_checks(r, base, diff)
    result = _nothing_new(r, previous, skipped=skipped)
    result.counts.update(processed=tried, skipped=len(skipped))
    return result


def _kept_names(names: list[str], keep: npt.NDArray[np.bool_]) -> set[str]:
    """The names of the pool's samples that stay in it; most runs keep all (a set of the list
    whole, without a flag a name looked at: 0.3 s of a million)."""
    if keep.all():
        return set(names)
    return {n for n, k in zip(names, keep.tolist()) if k}


def _warn_images_not_in_sequences(r: _Run, cands: Candidates) -> None:
    """Sequence selection picks runs of video frames: the run's images are no candidates of it,
    yet they are recorded as read, so that no later run offers them. Say so (Lightly's video
    datasets hold no images, so its users do not expect it)."""
    length = r.cfg.selected_sequence_length
    if length == 1:
        return
    from datapool.naming import frame_index

    images = sorted({k for n, k in zip(cands.names, cands.keys) if frame_index(n, k) is None})
    if images:
        r.warn(
            f"{counted(len(images), 'image')} ({images[0]}{', ...' * (len(images) > 1)}) "
            f"{'is not a candidate' if len(images) == 1 else 'are not candidates'} of sequence "
            f"selection (--selected-sequence-length {length} picks runs of video frames) but "
            f"{'is' if len(images) == 1 else 'are'} recorded "
            "as read, so no later run selects from them: run sequence selection on the videos "
            "alone (--include '*.mp4'; `datapool undo POOL` takes this run back)"
        )


def _kept_rows(base: Pool, keep: npt.NDArray[np.bool_], dim: int) -> npt.NDArray[np.float32]:
    """The pool's embeddings that stay in it. Most runs keep every row: then the pool's own
    array (a memory map of the sidecar), not a copy of it (408 MB at 200,000 x 510)."""
    if not len(base):
        return np.zeros((0, dim), np.float32)
    return base.embeddings if keep.all() else base.embeddings[keep]


def _select(
    r: _Run,
    base: Pool,
    keep: npt.NDArray[np.bool_],
    cands: Candidates,
    kept: npt.NDArray[np.float32],
    phase: Phase,
) -> Picks:
    """Select, with the strategies' inputs: the candidates' from the source's .lightly folder,
    the pool's (kept rows) from its strategy-inputs file, and SIMILARITY's tagged pool rows.
    `phase` counts the picks."""
    sel, pick = r.cfg.selection, _selector(r.cfg)
    if sel.diversity_only:
        return pick(cands, sel, kept, threads=r.cfg.threads, device=r.cfg.device, phase=phase)
    from datapool.candidates import Candidates as Table
    from datapool.lightly import (
        METADATA,
        PREDICTIONS,
        fill_pool_columns,
        missing_notes,
        strategy_columns,
    )
    from datapool.pool.inputs import rows_of

    read = _reader(r)
    _check_measured(r, read, cands)
    notes: list[str] = []
    cols, classes, r.inputs_missing = strategy_columns(
        read, sel.strategies, cands.names, r.listed, notes
    )
    folders = (r.cfg.predictions_dir or PREDICTIONS, r.cfg.metadata_dir or METADATA)
    missing = missing_notes(r.inputs_missing, len(cands), *(f.rstrip("/") for f in folders))
    for note in [*missing, *notes]:
        r.warn(note)
    cands.columns.update(cols)
    cands.classes.update(classes)
    names = [n for n, k in zip(base.filenames, keep) if k]
    pool = Table(names, names, kept, *_pool_inputs(r, names))
    read_rows = fill_pool_columns(read, sel.strategies, names, pool.columns, pool.classes)
    r.pool_inputs_read = rows_of(names, pool.columns, pool.classes, read_rows)
    tags = [run["tag"] for run in base.runs]
    labels = base.labels[keep]
    queries = {t: kept[labels == i] for i, t in enumerate(tags)}
    return pick(cands, sel, kept, threads=r.cfg.threads, pool=pool, queries=queries, phase=phase)


def _check_measured(r: _Run, read: Callable[[str], bytes | None], cands: Candidates) -> None:
    """Lightly's computed metadata the strategies use (lightly.sharpness, ...): decoding measured
    it on every candidate (ingest/lightly_metrics.py); a run without candidates gets its empty
    columns. A field of the user's metadata schema under that key is not read: a warning."""
    from datapool.lightly import lightly_fields_not_read
    from datapool.strategies import LIGHTLY_PREFIX, Metadata, column_name

    for name in r.cfg.selection.lightly_metadata:
        key = column_name(Metadata(LIGHTLY_PREFIX + name)) or ""
        cands.columns.setdefault(key, np.full(len(cands), np.nan))
    note = lightly_fields_not_read(read, r.cfg.selection.strategies)
    if note is not None:
        r.warn(note)


def _check_inputs(r: _Run, base: Pool) -> None:
    """Refuse, before any file is decoded, what selection would refuse once every new file is
    decoded and embedded (an hour into a big bucket's run), and what a dry run let pass: a
    SIMILARITY tag_name no run of the pool has, and .lightly inputs that cannot be read (a task
    tasks.json does not list, a score its type lacks, a BALANCE target class its categories
    lack, a metadata field the schema lacks)."""
    sel = r.cfg.selection
    if sel.diversity_only:
        return
    from datapool.lightly import check_inputs
    from datapool.strategies import Similarity

    tags = [run["tag"] for i, run in enumerate(base.runs) if bool((base.labels == i).any())]
    for s in sel.strategies:
        tag = getattr(s.input, "tag_name", None)
        if isinstance(s.strategy, Similarity) and tag not in tags:
            raise ConfigError(
                f"SIMILARITY: the pool has no samples tagged {tag!r} (input.tag_name; the "
                f"pool's run tags: {', '.join(tags) or 'none, it is empty'})"
            )
    check_inputs(_reader(r), sel.strategies)


def _selector(cfg: RunConfig) -> Callable[..., Picks]:
    """`select`, or with --selected-sequence-length its sequence form (select/sequences.py)."""
    if cfg.selected_sequence_length == 1:
        return select
    import functools

    from datapool.select.sequences import select_sequences

    return functools.partial(select_sequences, length=cfg.selected_sequence_length)


def _check_pre_annotate(cfg: RunConfig, src: Source, folders: dict[str, Source]) -> None:
    """--pre-annotate TASK: refuse, before the pool is locked or a file decoded (a dry run
    too), a task the run's .lightly/predictions (or --predictions DIR) does not list, or whose
    type gives no pre-annotations (with --tasks coco, no boxes), as `datapool export
    --pre-annotate` refuses it."""
    if cfg.export_pre_annotate is None:
        return
    from datapool.export_coco import check_coco_task
    from datapool.lightly import pre_annotation_task

    task = cfg.export_pre_annotate
    kind, index, cats = pre_annotation_task(lightly_reader(src, folders), task)
    if "coco" in cfg.export_tasks:
        check_coco_task(task, kind, sorted(index, key=index.__getitem__), cats)


def _lightly_folders(cfg: RunConfig) -> dict[str, Source]:
    """The --predictions / --metadata folders, opened as sources and checked to hold what such a
    folder starts with (tasks.json, schema.json): a missing one is a usage error naming the flag."""
    from datapool.lightly import METADATA, PREDICTIONS

    out: dict[str, Source] = {}
    for flag, spec, prefix, first in (
        ("--predictions", cfg.predictions_dir, PREDICTIONS, "tasks.json"),
        ("--metadata", cfg.metadata_dir, METADATA, "schema.json"),
    ):
        if spec is None:
            continue
        try:
            folder = open_source(spec, cfg)
        except SourceError as e:  # a local folder that is not there
            raise ConfigError(f"{flag} {spec}: {e}") from None
        if folder.read_bytes(first) is None:
            fix = f"give a folder shaped like {prefix}/ (docs/selection.md)"
            if folder.read_bytes(f"{prefix}/{first}") is not None:  # Lightly's datasource
                fix = f"its {prefix}/ has one: give {flag} {str(spec).rstrip('/')}/{prefix}"
            raise ConfigError(f"{flag} {spec}: no {first} there; {fix}")
        out[prefix] = folder
    return out


def _pool_inputs(
    r: _Run, names: list[str]
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, list[str]]]:
    """The strategy inputs the pool's samples were selected on (pool/layout.py
    STRATEGY_INPUTS_NAME), aligned with `names`; empty when the pool has none."""
    read = getattr(r.session, "strategy_inputs", None)
    if read is None:
        return {}, {}
    got: tuple[dict[str, npt.NDArray[Any]], dict[str, list[str]]] = read(names)
    return got


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
        html_path=committed.html,
        stop_reason=picks.stop_reason,
        warnings=r.warnings,
        model=r.model_line,
        model_brief=r.model_brief,
        previous_pool=_previous_pool(r, update),
        balance=picks.balance,
        thresholds=picks.thresholds,
        zero_objective=picks.zero_objective,
        frames_decoded=r.frames_decoded,
    )
    if r.cfg.export:
        with r.progress.phase("export", unit="samples") as ph:
            result.export = _export(r, result, update.ledger_rows, ph, picks.min_distances)
        _export_in_report(r, result, update.report_html)
    result.elapsed_s = _since(r.t0)
    log.info("times: %s", ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in r.timings.items()))
    return result


def _endpoint_flag(r: _Run) -> str:
    """The --s3-endpoint-url a command on this run's pool in S3 needs, where the run was given
    one (without user:password), else ""."""
    url = r.cfg.s3_endpoint_url
    return strip_userinfo(url) if url and scheme_of(str(r.session.location)) == "s3" else ""


def _open_model(r: _Run, previous: Pool) -> Embedder:
    """The run's embedder, its inspection line and notes recorded, checked against the pool's
    model (unless the run rebuilds the pool)."""
    if not r.cfg.process_all:
        from datapool.ingest.model_hub import pool_missing

        missing = pool_missing(
            r.cfg.model_spec.path, previous.model, str(r.session.location), _endpoint_flag(r)
        )
        if missing:
            raise ModelError(missing)
    embedder = open_embedder(r.cfg.model_spec)
    r.model_line, r.model_brief = embedder.inspection, embedder.brief
    for note in embedder.notes:
        r.warn(note)
    if previous.model is not None and not r.cfg.process_all:
        if not previous.model.same_space(embedder.fingerprint):
            raise ModelMismatchError(
                f"pool {r.session.location} "
                + previous.model.mismatch(
                    embedder.fingerprint, pool=str(r.session.location), endpoint=_endpoint_flag(r)
                )
                + "; "
                + (
                    _doubly_normalised(previous.model, embedder)
                    or _model_flag_hint(previous.model, r.cfg.model_spec.path)
                    or "use the pool's model and settings, or rebuild the pool with --process-all"
                )
            )
    return embedder


def _model_flag_hint(pool_model: ModelFingerprint, given: str | None) -> str | None:
    """Where the run and the pool differ in --model itself, the flag that fixes it: a run with
    no --model on a pool made with another model (a user who left the flag out of the second
    run), or a run with --model on a pool made with the default one; None otherwise."""
    from datapool.ingest.onnxfile import DEFAULT_MODEL_NAME

    pooled_default = pool_model.name == DEFAULT_MODEL_NAME and not pool_model.origin
    if given is None and not pooled_default:
        hub = (pool_model.origin or {}).get("hub")
        what = f"--model {hub}" if hub else f"--model with the pool's model file, {pool_model.name}"
        return (
            f"this run gives no --model and so uses the default model: give {what} (and the "
            "pool's other settings), or rebuild the pool with --process-all"
        )
    if given is not None and pooled_default:
        return (
            f"the pool was made with the default model: drop --model {given}, or rebuild the "
            "pool with --process-all"
        )
    return None


def _doubly_normalised(pool_model: ModelFingerprint, embedder: Embedder) -> str | None:
    """Where the pool was embedded with ImageNet's normalisation (what datapool gave a model
    that names none) and this run reads the model's own normalisation in its graph (datapool
    did not before): the fix, and that the pool's rows were normalised twice."""
    from datapool.ingest.inspection import IMAGENET_MEAN, IMAGENET_STD

    settings = pool_model.settings or {}
    was = (
        [round(v, 3) for v in settings.get("mean") or []],
        [round(v, 3) for v in settings.get("std") or []],
    )
    if (
        pool_model.sha256 != embedder.fingerprint.sha256
        or was != (list(IMAGENET_MEAN), list(IMAGENET_STD))
        or not embedder.norm_source.startswith("graph")
    ):
        return None
    return (
        "the model normalises its input inside its graph, which datapool now reads; the pool's "
        "rows had ImageNet's normalisation applied on top of the model's own (twice: what "
        "datapool did before it read graphs, or what those --mean/--std asked for), so they are "
        "not what the model sees: rebuild the pool with --process-all (or, to keep adding to it "
        "as it is, give --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225)"
    )


def _check_tag(r: _Run, base: Pool) -> None:
    """A run's --tag names one run of the pool: SIMILARITY's tag_name finds its samples by it."""
    if r.cfg.tag is None:
        return
    for run in base.runs:
        if run.get("tag") == r.cfg.tag:
            raise ConfigError(
                f"--tag {r.cfg.tag}: run {run['index']} of the pool is already called that; "
                "choose another name"
            )


def _check_source(r: _Run, previous: Pool) -> None:
    """A pool grows from one source: a run from another would mix them (and replace a sample
    by another source's file of the same name). --source-moved accepts the new one."""
    if r.cfg.process_all or r.cfg.source_moved:
        return
    known = pool_sources(previous.runs)
    here = str(r.src)
    if known and here not in known:
        same = [k for k in sorted(known) if _same_folder(k, here)]
        if same:  # a symbolic link on one path: a pool records the path it was given
            raise SourceError(
                f"pool {r.session.location} was grown from {same[0]}, the same folder as "
                f"{here} by another path (a symbolic link); give that path, or run with "
                "--source-moved to record this one"
            )
        raise SourceError(
            f"pool {r.session.location} was grown from {' and '.join(sorted(known))}, not "
            f"{here}; if the source moved there, run with --source-moved; to combine two "
            "sources, grow a pool from each and merge them (datapool merge)"
        )


def _moves_source(r: _Run, base: Pool) -> bool:
    """--source-moved to a new place: the run commits (with nothing new, a run of no samples)
    so that the pool records it. Without it the pool kept the old place: the next run stopped
    again ('grown from ...'), and `datapool export` read the old place."""
    return r.cfg.source_moved and normal_spec(str(r.src)) not in pool_sources(base.runs)


def _same_folder(a: str, b: str) -> bool:
    """Whether two local paths name one folder (False for URLs, or a path that is gone)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_other_sources(r: _Run, base: Pool, diff: LedgerDiff) -> None:
    """A pool merged from two sources has one ledger for both: a file of this run's source
    whose name a file of the other source holds in it would be taken for a changed (or the
    same) version of that file, and replace its samples. Stop instead, naming them."""
    if r.cfg.process_all or len(pool_sources(base.runs)) < 2:
        return
    if r.cfg.source_moved:
        raise ConfigError(
            f"--source-moved: pool {r.session.location} was merged from pools of two sources "
            f"({' and '.join(sorted(pool_sources(base.runs)))}), so it cannot tell which one "
            f"moved to {r.src}; grow the pools that were merged and merge them again"
        )
    import pandas as pd

    here = normal_spec(str(r.src))
    run_source = np.array([normal_spec(str(x.get("source", ""))) for x in base.runs])
    parts = (diff.changed, diff.unchanged, diff.retry, diff.touched)
    listed = pd.concat([d["key"] for d in parts]).drop_duplicates()
    source_of = run_source[runs_of(base.ledger, listed)]
    theirs = listed[source_of != here].tolist()
    # The other source's files are not listed here, and not missing from it either.
    r.counts["missing"] = int((run_source[diff.missing["run"].to_numpy(np.int64)] == here).sum())
    if theirs:
        other = source_of[source_of != here][0]
        shown = ", ".join(theirs[:3]) + (", ..." if len(theirs) > 3 else "")
        raise SourceError(
            f"{counted(len(theirs), 'file')} of {here} ({shown}) "
            f"{'has the name of a file' if len(theirs) == 1 else 'have the names of files'} "
            f"that pool {r.session.location} holds from {other}, merged in from another pool: a "
            "run would take them for versions of those files; grow the pools that were merged and "
            "merge them again (datapool merge), or rebuild this pool from one source with "
            "--process-all"
        )


def pool_sources(runs: list[dict[str, Any]]) -> set[str]:
    """The sources a pool accepts: those of its runs since the last run that moved the source
    (merged pools have several). Relative paths recorded by older versions cannot be compared
    and are left out."""
    found = {str(x.get("source", "")) for x in runs[since_source_moved(runs) :]}
    return {normal_spec(s) for s in found if "://" in s or os.path.isabs(s)}


def _nothing_new(r: _Run, previous: Pool, **extra: Any) -> RunResult:
    """The result of a run that commits nothing (nothing new, or a dry run: `extra`)."""
    r.counts.update(processed=0, skipped=0, frames_embedded=0, removed=0, selected=0)
    r.counts["pool_size"] = len(previous)
    return RunResult(
        r.session.location,
        None,
        None,
        r.counts,
        elapsed_s=_since(r.t0),
        warnings=r.warnings,
        model=r.model_line,
        model_brief=r.model_brief,
        **extra,
    )


def _dry_run(
    source: str,
    src: Source,
    cfg: RunConfig,
    t0: float,
    pool: str | os.PathLike[str],
    folders: dict[str, Source],
) -> RunResult:
    """List and diff against the pool as committed, and say what a run would process. A local
    pool is read without its lock, and nothing is written (no folder made, no interrupted commit
    finished); a pool in S3 is read through a session, which writes nothing either."""
    if scheme_of(pool) == "":
        root = Path(pool)
        previous = Pool.load(root) if Pool.is_pool(root) else Pool.empty(root)
        run = _Run(source, src, _ReadOnly(previous, root), cfg, t0, lightly_folders=folders)
        return _would_process(run)
    with open_store(pool, cfg).session() as session:
        return _would_process(
            _Run(source, src, session, cfg, t0, warnings=session.warnings, lightly_folders=folders)
        )


class _ReadOnly:
    """The session of a dry run on a local pool: the pool as committed, and no commit."""

    def __init__(self, pool: Pool, location: Path) -> None:
        self.pool = pool
        self.location: Path | str = location
        self.warnings: list[str] = []

    def commit(self, update: PoolUpdate) -> Committed:
        raise ConfigError("a dry run commits nothing")

    def thumbnails(self, names: Collection[str], max_bytes: int | None = None) -> dict[str, bytes]:
        return {}

    def add_thumbnails(self, thumbs: dict[str, bytes]) -> str:
        raise ConfigError("a dry run commits nothing")

    def history(self) -> dict[str, set[str]]:
        return {}

    def add_to_report(self, index: int, fields: dict[str, Any], page: bytes | None = None) -> bool:
        raise ConfigError("a dry run commits nothing")

    def plan_undo(self) -> Any:
        raise ConfigError("a dry run commits nothing")

    def undo(self, undo: Any) -> None:
        raise ConfigError("a dry run commits nothing")

    def remove(self, removal: Any) -> None:
        raise ConfigError("a dry run commits nothing")

    def record_checks(self, checks: Any) -> None:
        raise ConfigError("a dry run commits nothing")


def _would_process(r: _Run) -> RunResult:
    previous = r.session.pool
    _check_source(r, previous)
    # The model is opened and checked as a run would: a model the run would refuse, or that
    # does not match the pool, stops the dry run too (and its inspection line is printed).
    embedder = _open_model(r, previous)
    base = Pool.empty(previous.path) if r.cfg.process_all else previous
    # What a run refuses before it reads a file, a dry run refuses too.
    _check_tag(r, base)
    _check_crop_mode(r, base)
    if r.cfg.crops:
        from datapool.lightly import detection_task

        detection_task(_reader(r), r.cfg.crops)
    diff = _list_and_diff(r, base)
    _check_other_sources(r, base, diff)  # a merged pool: refused, or the other's files not gone
    diff = _recut(r, base, _reread_old_decodes(r, base, diff, embedder))
    r.counts["touched"] = len(diff.touched)  # less those read again (a part of `unchanged`)
    todo = _without_kept_out(r, previous, diff)
    if len(todo):
        _check_inputs(r, base)
    return _nothing_new(r, previous, would_process=todo["key"].tolist(), dry_run=True)


def _without_kept_out(r: _Run, previous: Pool, diff: LedgerDiff) -> pd.DataFrame:
    """The files to process, less those `datapool rm --source-file` removed (pool/removal.py):
    never read again, with --process-all, --retry-skipped or changed too. They are counted as
    kept out, not as new, changed or retried (a kept-out file has no ledger row after
    --process-all: it would read as new on every run)."""
    todo = diff.to_process
    files = kept_out(previous.removals)[1]
    if not files or not len(todo):
        return todo
    out = todo[~todo["key"].isin(files)]
    if len(out) < len(todo):
        r.counts["kept_out_files"] = len(todo) - len(out)
        for part, count in ((diff.new, "new"), (diff.changed, "changed"), (diff.retry, "retried")):
            r.counts[count] = r.counts.get(count, 0) - int(part["key"].isin(files).sum())
    return out


def _without_removed(r: _Run, previous: Pool, cands: Candidates) -> Candidates:
    """The candidates, less the samples `datapool rm` removed (a file read again, changed or
    with --process-all, makes them again): they never come back while kept out."""
    names = kept_out(previous.removals)[0]
    if not names or not any(n in names for n in cands.names):
        return cands
    keep = np.array([n not in names for n in cands.names], dtype=bool)
    keep |= _other_objects(r, previous, cands, keep)
    r.counts["kept_out_samples"] = int((~keep).sum())
    from datapool.candidates import Candidates as Table

    return Table(
        [n for n, k in zip(cands.names, keep.tolist()) if k],
        [n for n, k in zip(cands.keys, keep.tolist()) if k],
        np.ascontiguousarray(cands.embeddings[keep]),
        {c: v[keep] for c, v in cands.columns.items()},
        dict(cands.classes),
        {n: t for n, t in cands.thumbnails.items() if n not in names},
    )


def _other_objects(
    r: _Run, previous: Pool, cands: Candidates, keep: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Among the candidates kept out by name, the object crops that are another object than
    the crop `datapool rm` removed under that name: an image changed, or its predictions, and
    its box of that number no longer overlaps the removed one's (keepout.same_object). A crop
    is named by its image and its number in the predictions file, so a new object can take a
    removed one's name; it is let in, and the run says so. Removals by datapool 0.2.0 and earlier
    recorded no boxes: their names stay out."""
    from datapool.candidates import CROP_BOX
    from datapool.pool.keepout import kept_out_boxes, same_object

    other = np.zeros(len(keep), dtype=bool)
    column = cands.columns.get(CROP_BOX)
    if column is None:
        return other
    boxes = kept_out_boxes(previous.removals)
    for i in np.flatnonzero(~keep).tolist() if boxes else []:
        was = boxes.get(cands.names[i])
        other[i] = was is not None and not same_object(column[i], was)
    if other.any():
        which = [n for n, o in zip(cands.names, other.tolist()) if o]
        shown = ", ".join(which[:3]) + (f" (and {len(which) - 3} more)" if len(which) > 3 else "")
        r.warn(
            f"let in {counted(len(which), 'object crop')} named as one `datapool rm` removed, "
            f"whose box in its changed image or predictions holds another object now (less "
            f"than {SAME_OBJECT_IOU:.0%} overlap with the removed one's): {shown}; `datapool rm` "
            "removes one again"
        )
    return other


def _previous_pool(r: _Run, update: PoolUpdate) -> Path | str | None:
    """Where the store kept the pool as it was before this run (history/...), if it did."""
    kept = update.run.get("previous_pool")
    if not kept:
        return None
    location = r.session.location
    return location / kept if isinstance(location, Path) else f"{location.rstrip('/')}/{kept}"


def _export(
    r: _Run, result: RunResult, ledger: pd.DataFrame, phase: Phase, distances: Any
) -> ExportResult:
    """--export of the run's picks (and, with export_tasks, the tasks files, which say of each
    sample its run, tag and min-distance: `distances`, in pick order)."""
    assert r.cfg.export is not None and result.run_index is not None
    info = {}
    if r.cfg.export_tasks:
        run = {"run": result.run_index, "tag": result.tag}
        info = run_sample_info(result.selected_sources, run, distances.tolist(), r.crop_rects)
    try:
        pre = None
        if r.cfg.export_pre_annotate is not None:  # read and checked before any write
            task = r.cfg.export_pre_annotate
            pre = read_pre_annotations(_reader(r), task, result.selected_sources, r.listed)
        return export_selection(
            r.src,
            result.selected_sources,
            r.cfg.export,
            r.cfg,
            ledger,
            r.crop_rects,
            phase,
            r.cfg.export_tasks,
            r.cfg.export_url_prefix,
            info,
            pre,
        )
    except DatapoolError as e:
        raise type(e)(
            f"{e}; {result.tag} was committed to the pool: redo its export with `datapool export "
            f"{r.session.location} {r.cfg.export} --run {result.run_index}{_tasks_flags(r.cfg)}`"
        ) from None


def _tasks_flags(cfg: RunConfig) -> str:
    """The flags of `datapool export` that write the tasks files `cfg`'s export writes."""
    import shlex

    words = [w for fmt in cfg.export_tasks for w in ("--tasks", fmt)]
    for flag, value in (
        ("--url-prefix", cfg.export_url_prefix),
        ("--pre-annotate", cfg.export_pre_annotate),
        ("--predictions", cfg.predictions_dir if cfg.export_pre_annotate else None),
    ):
        if value is not None:
            words += [flag, shlex.quote(value)]
    return "".join(f" {w}" for w in words)


def _export_in_report(r: _Run, result: RunResult, page: bytes) -> None:
    """What --export did (written, refused, renamed, its warnings: names that differ only by
    case, names Windows cannot hold) into the run's report.json and its report.html (`page`, as
    the run committed it), committed after the export as the run was before it: a report read
    later says what the export did and warned of."""
    if result.export is None or result.run_index is None:
        return
    export = result.export.to_json()
    new_page = with_export(page, export) if page else None
    if not r.session.add_to_report(result.run_index, {"export": export}, new_page):
        r.warn(
            f"the report of {result.tag} does not hold what its export did: another run "
            "committed to the pool meanwhile (the export's warnings are above)"
        )


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _warn_unread_media(r: _Run) -> None:
    """Say which ignored files are images or videos of a type datapool does not read (an iPhone's
    HEIC, camera raw): a user expects them in the pool, not among the text files ignored."""
    from collections import Counter

    from datapool.naming import UNREAD_MEDIA_EXTENSIONS

    exts = Counter(k.rsplit(".", 1)[-1].lower() for k in r.ignored if "." in k.rsplit("/", 1)[-1])
    unread = sorted(((n, e) for e, n in exts.items() if e in UNREAD_MEDIA_EXTENSIONS), reverse=True)
    if unread:
        total = sum(n for n, _ in unread)
        kinds = ", ".join(f"{n} .{e}" for n, e in unread)
        r.warn(
            f"{total} image or video file{'s' * (total != 1)} of a type datapool does not read "
            f"{'were' if total != 1 else 'was'} ignored ({kinds}): convert them to one it reads "
            "(JPEG, PNG, WebP; MP4, MKV) to use them (README, 'Decode')"
        )


def _warn_dot_parts(r: _Run) -> None:
    """Name the media objects a bucket holds under keys with a `.` or `..` part (`raw/./x.jpg`),
    which are not listed (s3/source.py): they were left out as hidden files, without a word."""
    dots = getattr(r.src, "dot_parts", ())
    if dots:
        n = len(dots)
        r.warn(
            f"{n} object{'s' * (n != 1)} whose key has a '.' or '..' part {'were' if n != 1 else 'was'} "
            f"left out (such as {str(r.src).rstrip('/')}/{dots[0]}): such a key names no file "
            "of a folder (a copy or an export would write it under another name); copy each to "
            "a key without it to use it"
        )


IGNORED_NAMED = 1000  # -v names this many ignored files (report.json's `ignored` as many)


def _warn_left_out(r: _Run) -> None:
    """Warn of the files the listing left out that a user would expect in the pool, and name
    each file ignored (no media extension) for -v: the summary counts them only."""
    for key in r.ignored[:IGNORED_NAMED]:
        log.info("ignored %s: not an image or video by its extension", key)
    if len(r.ignored) > IGNORED_NAMED:
        log.info("ignored %d more files without a media extension", len(r.ignored) - IGNORED_NAMED)
    _warn_unread_media(r)
    _warn_dot_parts(r)
    _warn_linked_folders(r)


def _warn_linked_folders(r: _Run) -> None:
    """Name the symbolic links to folders outside a local source, which are not followed
    (sources/local.py): their files were left out without a word."""
    links = getattr(r.src, "linked_outside", ())
    if links:
        n = len(links)
        shown = ", ".join(f"{k} -> {t}" for k, t in links[:5]) + (", ..." if n > 5 else "")
        r.warn(
            f"{n} symbolic link{'s' * (n != 1)} to {'folders' if n != 1 else 'a folder'} outside "
            f"the source {'were' if n != 1 else 'was'} not followed, so the files in "
            f"{'them' if n != 1 else 'it'} were not read ({shown}): run on "
            f"{'those folders' if n != 1 else 'that folder'}, or move or copy "
            f"{'their' if n != 1 else 'its'} files into the source (--exclude the "
            f"link{'s' * (n != 1)} to leave {'them' if n != 1 else 'it'} out without this warning)"
        )


def _list_and_diff(r: _Run, base: Pool) -> LedgerDiff:
    f = _listing_filter(r)
    with r.progress.phase("listing", unit="files") as ph:
        # Folders the user's filters leave out are not read (an unreadable one among them).
        listing = r.src.list(prune=replace(f, skip_prefixes=()).prunes, counted=ph.advance)
        f = replace(f, skip_prefixes=(*f.skip_prefixes, *_folders_left_out(r, listing)))
        listed = listing["key"]
        if r.cfg.crops or r.cfg.export_pre_annotate or not r.cfg.selection.diversity_only:
            # whose predictions or metadata file is it (a.jpg, a.png: a.json): lightly.py
            r.listed = frozenset(k for k in listed.tolist() if media_kind(k) == "image")
        listing, excluded = f.apply(listing)
        ph.note = f"{len(listing)} media files"
    _check_filters(r, f, listed, len(listing))
    # Files without a media extension, but not those of a pool or export the run leaves out.
    r.ignored = [k for k in r.src.ignored if not k.startswith(f.skip_prefixes)]
    _warn_left_out(r)
    kept = set(r.ignored)
    unnamed = [(k, f) for k, f in getattr(r.src, "unnamed_media", ()) if k in kept]
    if unnamed:  # hashed names (content-addressed stores): images, but no extension
        n = f"{len(unnamed)}{'+' * bool(getattr(r.src, 'unnamed_more', False))}"
        key, kind = unnamed[0]
        if n == "1":
            what = (
                f"1 file without an extension is an image or a video by its first bytes "
                f"({key!r}, {kind}) and was ignored: datapool goes by the extension; give it one"
            )
        else:
            what = (
                f"{n} files without an extension are images or videos by their first bytes "
                f"(such as {key!r}, {kind}) and were ignored: datapool goes by the extension; "
                "give them one"
            )
        r.warn(f"{what} (.jpg, .png, .mp4) to use {'it' if n == '1' else 'them'}")
    elif len(listed) == 0:  # a mistyped prefix (S3 keys are case-sensitive), the wrong folder
        others = len(r.ignored)
        what = (
            f"only {others} other file{'' if others == 1 else 's'}" if others else "nothing at all"
        )
        r.warn(f"the source {r.src} holds no images or videos ({what}): check the path")
    hashes, md5s = _counted_hashes(r), getattr(r.src, "md5_hashes", None)
    diff = diff_listing(listing, base.ledger, hashes, r.cfg.retry_skipped, md5s)
    # Files the filters leave out are not gone, listed or not (a pruned folder is not read).
    left_out = {k for k in diff.missing["key"].tolist() if not f.keeps(k)} if f.active else set()
    diff = _moves_found(r, base, diff, set(listed.tolist()) | left_out, hashes, md5s)
    r.counts.update(
        listed=len(listing),
        ignored=len(r.ignored),
        excluded=excluded,
        excluded_folders=len(getattr(r.src, "pruned", ())),  # not read: no file in them counted
        new=len(diff.new),
        changed=len(diff.changed),
        unchanged=len(diff.unchanged),
        touched=len(diff.touched),
        retried=len(diff.retry),
        missing=len(diff.missing),
        moved=len(r.moves),
        renamed=len(r.moves.names),
    )
    return diff


def _counted_hashes(r: _Run) -> Callable[[list[str]], dict[str, str]] | None:
    """The source's content hashes, in a `hashing` phase that counts the files (None for a source
    without them): the files whose mtime moved (a `cp -r` of a bucket of videos, a sync that
    resets mtimes) and the new files a move may explain are read whole there, minutes for a big
    bucket with no line on screen."""
    if not hasattr(r.src, "content_hashes"):
        return None

    def counted(keys: list[str]) -> dict[str, str]:
        return _hash_counted(r, "hashing", list(keys)) if len(keys) else {}

    return counted


def _moves_found(
    r: _Run, base: Pool, diff: LedgerDiff, listed_keys: set[str], hashes: Any, md5s: Any
) -> LedgerDiff:
    """`diff` less the files that moved (r.moves: pool/moves.py), the moves an older ledger
    cannot tell by bytes vouched for by their embeddings (`_vouched`), and a warning where some
    still cannot be told."""
    movable = _movable(r, base, diff.missing)
    diff = _vouched(r, base, diff, listed_keys, movable, hashes)
    diff, r.moves = find_moves(diff, base, hashes, listed_keys, md5s, movable)
    _warn_untold_moves(r)
    return diff


def _movable(r: _Run, base: Pool, missing: pd.DataFrame) -> set[str] | None:
    """The gone files that may have moved to this run's source: all (None) in a pool of one
    source; in a pool merged from several, those a run from this source read under their own
    keys (no merge prefix). A copy here of the other source's file is a new file, not a move
    (moves were not looked for at all in a merged pool: a renamed folder was new files plus
    files no longer in the source)."""
    if len(pool_sources(base.runs)) < 2:
        return None
    from datapool.pool.merge import key_prefixes

    here = normal_spec(str(r.src))
    mine = [
        normal_spec(str(x.get("source", ""))) == here and not key_prefixes(x) for x in base.runs
    ]
    return set(missing.loc[np.array(mine, dtype=bool)[missing["run"].to_numpy()], "key"])


def _warn_untold_moves(r: _Run) -> None:
    """Say that files which may have moved cannot be told from new ones: the gone files' ledger
    rows are an older datapool's, without content hashes (pool/moves.py)."""
    n = r.moves.untold
    if n:
        r.warn(
            f"{n} new file{'s' * (n != 1)} of this run {'have' if n != 1 else 'has'} the kind "
            "and size of a file no longer in the source whose ledger row an older datapool "
            "wrote without a content hash, so whether they were moved or renamed cannot be "
            "told: they are read as new, and the gone files' samples stay in the pool as "
            "missing. To keep those samples under the new names, put the files back, run once "
            "(a run that commits records the hashes of the files it finds unchanged), then move "
            "them again"
        )


def _check_filters(r: _Run, f: ListingFilter, listed: pd.Series, kept: int) -> None:
    """Stop a run whose --include/--exclude/relevant filenames leave out every listed file (a
    typo such as '*.jgp', absolute paths): it would report "nothing new"; warn of an --include
    glob or relevant-filenames lines that match no file."""
    if not (f.include or f.exclude or f.relevant is not None):
        return
    keys = [k for k in listed.tolist() if not k.startswith(f.skip_prefixes)]
    unread = len(getattr(r.src, "pruned", ()))
    relevant = r.cfg.relevant_filenames_file
    error, warnings = match_report(
        f, keys, kept, unread, None if relevant is None else str(relevant)
    )
    if error is not None:
        raise ConfigError(error)
    for w in warnings:
        r.warn(w)


def _folders_left_out(r: _Run, listing: pd.DataFrame) -> list[str]:
    """The folders of other pools (pool/layout.py pool_folders) and of exports (sources/filters.py
    export_folders) inside the source, with a warning naming them when they hold media files; a
    source that is itself a pool is refused."""
    pools = pool_folders(r.src.ignored)
    if "" in pools:
        raise SourceError(
            f"source {r.src} is a datapool pool (it holds {CSV_NAME} and {RUNS_NAME}), not a "
            "folder of raw files; give the folder the pool was grown from"
        )
    keys = listing["key"]
    exports = export_folders(keys.tolist(), r.src.ignored, r.src.read_bytes, LIST_NAME)
    rename = f" (its {LIST_NAME} names its files; rename that file if the folder is raw data)"
    # The run's own pool and --export inside the source are left out without a word: the user
    # put them there (`--pool SOURCE` itself is refused saying one inside it is fine).
    own = set(_own_prefixes(r))
    for folders, what in (
        (
            [f for f in pools if f not in own],
            ("a datapool pool", "datapool pools", "a pool's views and reports", ""),
        ),
        (
            [f for f in exports if f not in own],
            ("a datapool export", "datapool exports", "exported samples", rename),
        ),
    ):
        inside = keys.str.startswith(tuple(folders)) if folders else None
        if inside is None or not inside.any():
            continue
        n = int(inside.sum())
        where = ", ".join(folders[:5]) + (", ..." if len(folders) > 5 else "")
        r.warn(
            f"left out {'1 file' if n == 1 else f'{n} files'} of "
            f"{what[0] if len(folders) == 1 else what[1]} inside the source ({where}): "
            f"{what[2]} are not raw data{what[3]}"
        )
    return pools + exports


def _listing_filter(r: _Run) -> ListingFilter:
    """The run's --include/--exclude/relevant_filenames_file, and its own pool and export folder
    when they lie inside the source (a run must never ingest its own views or exports)."""
    relevant = r.cfg.relevant_filenames_file
    return ListingFilter(
        include=r.cfg.include,
        exclude=r.cfg.exclude,
        relevant=None if relevant is None else read_relevant_filenames(relevant, _roots(r.src)),
        skip_prefixes=_own_prefixes(r),
    )


def _own_prefixes(r: _Run) -> tuple[str, ...]:
    """The key prefixes of the run's own pool and export folder, where they lie in the source."""
    inside = (
        prefix_inside(str(r.src), os.fspath(other), flag)
        for other, flag in ((r.session.location, "--pool"), (r.cfg.export, "--export"))
        if other is not None
    )
    return tuple(p for p in inside if p is not None)


def _roots(src: Source) -> tuple[str, ...]:
    """The source as absolute paths or a URL, which relevant-filenames lines may start with."""
    spec = str(src)
    return (spec,) if scheme_of(spec) else (spec, os.path.realpath(spec))


def _with_hashes(r: _Run, todo: pd.DataFrame) -> pd.DataFrame:
    """The files to process, with the content hash of each local file (recorded in the ledger,
    so that the next run can tell a copy with new mtimes from a changed file)."""
    if not hasattr(r.src, "content_hashes") or len(todo) == 0:
        return todo
    t = time.perf_counter()
    need = (todo["content_hash"] == "") & (todo["etag"] == "")  # an ETag tells S3 objects apart
    if not need.any():
        return todo
    found = _hash_counted(r, "hashing", todo.loc[need, "key"].tolist())
    todo.loc[need, "content_hash"] = [found.get(k, "") for k in todo.loc[need, "key"]]
    r.timings["hash_s"] = time.perf_counter() - t
    return todo


def _with_carried_rows(rows: pd.DataFrame, *more: pd.DataFrame | None) -> pd.DataFrame:
    """This run's ledger rows plus the rows it carries over without reading their files: of
    touched files (same bytes, new mtime, so that the next run compares against the new mtime
    and need not hash them again), of files given their content hash, and of moved files under
    their new keys."""
    # a moved image cut again (_recut) or a moved file read again (_reread_old_decodes): its row
    # is this run's, not its carried one
    own = set(rows["key"].tolist())
    parts = [t.loc[~t["key"].isin(own), rows.columns] for t in more if t is not None and len(t)]
    if not parts:
        return rows
    import pandas as pd

    return pd.concat([rows, *parts], ignore_index=True).astype(rows.dtypes)


def _ingest(
    r: _Run, todo: pd.DataFrame, embedder: Embedder, taken: set[str]
) -> tuple[Candidates, dict[str, tuple[str, int]], list[dict[str, str]]]:
    """Decode and embed every file to process (ingest/: the stages overlap, batches span files).

    A file that fails part-way is skipped whole: a file is in the run with all its frames or
    not at all."""
    keys = todo["key"].tolist()
    crops = _crop_work(r, todo) if r.cfg.crops else None
    spec = IngestSpec(
        source=r.source,
        files=tuple(zip(todo["key"].tolist(), todo["kind"].tolist())),
        model=r.cfg.model_spec,
        options=r.cfg.ingest,
        source_config=r.cfg,
        crops=crops,
        measure=r.cfg.selection.lightly_metadata,
    )
    totals = FrameTotals(
        list(zip(todo["key"].tolist(), todo["kind"].tolist(), todo["size"].tolist()))
    )
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
    # the frames the progress line counted: with --fps or --frame-stride, more than embedded
    r.frames_decoded = sum(follow.decoded.values())
    images = _image_keys(r, todo) if crops is not None else None
    cands, status, skipped, notes = candidates_from(results, keys, taken, embedder.dim, images)
    for note in notes:
        r.warn(note)
    _warn_pillow_unread(r, results.pillow_unread, cands, spec.measure)
    _warn_streams_unread(r, results.streams, status)
    _warn_lead_unread(r, results.lead, status)
    if crops is not None:
        _count_crops(r, crops, results, status)
    return cands, status, skipped


def _warn_streams_unread(
    r: _Run, streams: dict[str, str], status: dict[str, tuple[str, int]]
) -> None:
    """Videos that hold more than one video stream (a dashcam's front and rear cameras in one
    file): only one is read, as a player plays one (docs/pipeline.md), and the run says so."""
    found = [(k, note) for k, note in streams.items() if status.get(k, ("",))[0] == STATUS_OK]
    if found:
        first = "; ".join(f"{k}: {note}" for k, note in found[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        r.warn(
            f"{counted(len(found), 'video')} hold{'s' * (len(found) == 1)} more than one video "
            "stream, and one is read from each "
            f"(the default stream, else the one with most frames): {first}{more}"
        )


def _warn_lead_unread(r: _Run, lead: dict[str, int], status: dict[str, tuple[str, int]]) -> None:
    """Videos that start mid-GOP (a recording cut from a live stream or an IP camera, a TS whose
    first bytes are lost): they are read from their first keyframe, as FFmpeg plays them, and
    their frames numbered from there; the frames before it refer to pictures not in the file.
    Said once, with the count."""
    found = [(k, n) for k, n in lead.items() if status.get(k, ("",))[0] == STATUS_OK]
    if found:
        first = "; ".join(f"{k}: {n}" for k, n in found[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        total = sum(n for _, n in found)
        r.warn(
            f"{counted(len(found), 'video')} start{'s' * (len(found) == 1)} before a keyframe "
            f"(cut from a stream): {counted(total, 'leading frame')} could not be decoded and "
            f"{'was' if total == 1 else 'were'} not read, and frames are numbered from the first "
            "keyframe, as FFmpeg plays "
            f"them: {first}{more}"
        )


def _warn_pillow_unread(
    r: _Run, unread: list[str], cands: Candidates, measured: tuple[str, ...]
) -> None:
    """Images whose Lightly metadata was measured on FFmpeg's pixels, Pillow (which Lightly reads
    images with) having refused them: said, since their figures may differ a little."""
    names = set(cands.names)
    unread = [n for n in unread if n in names]
    if unread:
        r.warn(
            f"{counted(len(unread), 'image')} could not be read by Pillow (first: {unread[0]}): their "
            f"Lightly metadata ({', '.join('lightly.' + k for k in measured)}) was measured on "
            "FFmpeg's pixels, which may differ from Lightly's (Pillow's) by a level or so"
        )


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
    selected_per_key = dict(Counter(cands.keys[i] for i in order.tolist()))
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
    r.crop_rects = _picked_boxes(cands, picks)
    run_record = _run_record(r, index, embedder, picks)
    _warn_formula_names(r, new_names)
    _warn_near_duplicates(r, picks)
    _warn_min_distance_unreached(r, picks)
    update = PoolUpdate(
        run=run_record,
        model=embedder.fingerprint,
        new_names=new_names,
        new_embeddings=np.ascontiguousarray(cands.embeddings[order]),
        new_labels=np.full(len(order), index, np.int64),
        keep=keep,
        ledger_rows=_ledger_rows(base.ledger, todo, per_file, selected_per_key, index, r.cut_from),
        report=_report(r, run_record, cands, picks, skipped),
        view=b"",
        reset=r.cfg.process_all,
        snapshot=r.cfg.process_all or r.cfg.keep_history,
        new_inputs=_new_inputs(r, cands, picks),
        new_thumbnails={n: cands.thumbnails[n] for n in new_names if n in cands.thumbnails},
        renames=r.moves.names,
        moved_keys=set(r.moves.keys),
        removals=_kept_out_where_moved(r, r.session.pool.removals),
    )
    update.new_thumbnails.update(_moved_thumbnails(r, base))
    _render(r, base, keep, update, cands, picks, pool_size)
    return update


def _kept_out_where_moved(r: _Run, removals: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The pool's removals, plus one that keeps out under the new key what `datapool rm` keeps
    out of a file this run found moved: the file (`--source-file`), and its removed samples under
    their new names; else the next run that read it (changed, --process-all) would add them
    again under the new name. None: no such move."""
    from datapool.pool.moves import renamed_sample

    if not r.moves.keys or not removals:
        return None
    names, files = kept_out(removals)
    renamed: list[str] = []
    which = {old: new for old, new in r.moves.keys.items() if old in files}
    for name in sorted(names):
        for old in _keys_of_sample(name) & r.moves.keys.keys():
            try:
                renamed.append(renamed_sample(name, old, r.moves.keys[old]))
            except ValueError:
                continue  # a name of that shape, of another file
            which[old] = r.moves.keys[old]
    if not which:
        return None
    shown = ", ".join(f"{o} -> {n}" for o, n in sorted(which.items()))
    r.warn(
        f"kept out where moved: {counted(len(which), 'file')} whose samples or file `datapool rm` "
        f"keeps out moved ({shown}); kept out under the new name too (`datapool rm --forget` "
        "with the new name lets one in)"
    )
    entry = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "samples": 0,
        "reason": f"kept out where moved: {shown}",
        "runs": {},
        "names": renamed,
        "files": sorted(new for old, new in which.items() if old in files),
    }
    return [*removals, entry]


def _keys_of_sample(name: str) -> set[str]:
    """The source keys sample `name` may be of: itself (an image), the video of a frame's name,
    the image or video of a crop's (pool/moves.py renames them alike)."""
    from datapool.naming import FRAME_NAME, crop_key_of

    parent = crop_key_of(name)
    if parent is not None:
        return _keys_of_sample(parent)
    m = FRAME_NAME.match(name)
    return {name} | ({f"{m.group(1)}.{m.group(3)}"} if m else set())


def _render(
    r: _Run,
    base: Pool,
    keep: npt.NDArray[np.bool_],
    update: PoolUpdate,
    cands: Candidates,
    picks: Picks,
    pool_size: int,
) -> None:
    """The run's PNG view and its interactive report page, into `update`."""
    t = time.perf_counter()
    with r.progress.phase("view"):
        update.view = _view(r, base, keep, update, cands, picks, pool_size)
    r.timings["view_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with r.progress.phase("report page"):
        thumbs = _older_thumbnails(r, base, keep, update) if r.cfg.thumbnails else {}
        pending = None
        if r.cfg.export:  # after the commit: _export_in_report puts what it did into the page
            dest = dest_label(r.cfg.export)  # absolute, as the export records it
            where = f"{shlex.quote(str(r.session.location))} {shlex.quote(dest)}"
            redo = f"datapool export {where} --run {update.index}"
            pending = {"dest": dest, "redo": redo}
        update.report_html = run_report_html(
            base, keep, update, cands, picks, _title(r, update), thumbs, pending
        )
    r.timings["report_html_s"] = time.perf_counter() - t
    point("rendered")


def _older_thumbnails(
    r: _Run, base: Pool, keep: npt.NDArray[np.bool_], update: PoolUpdate
) -> dict[str, bytes]:
    """The committed thumbnails of the pool samples this run keeps, as many as its report page
    embeds (a bucket pool's are downloaded: at most that many bytes of them)."""
    if update.reset or not len(base):
        return {}
    if keep.all():  # most runs: every sample's name and run, without a flag a name looked at
        kept = dict(zip(base.filenames, base.labels.tolist()))
    else:
        kept = {
            n: run for n, run, k in zip(base.filenames, base.labels.tolist(), keep.tolist()) if k
        }
    # The samples of moved files: their thumbnails go into this run's segment. A pool made
    # before thumbnails (or grown with --no-thumbnails) has none to move.
    new = update.new_thumbnails
    moved = {n: new[n] for n in r.moves.names.values() if n in kept and n in new}
    if moved:
        kept = {n: run for n, run in kept.items() if n not in moved}
    return {**r.session.thumbnails(kept, MAX_THUMBNAIL_BYTES), **moved}


def _moved_thumbnails(r: _Run, base: Pool) -> dict[str, bytes]:
    """The committed thumbnails of the samples of moved files, under their new names: the
    run's segment holds them (a thumbnail is read by its sample's name)."""
    if not r.moves.names:
        return {}
    old = {v: k for k, v in r.moves.names.items()}
    runs = {old[n]: run for n, run in zip(base.filenames, base.labels.tolist()) if n in old}
    return {r.moves.names[n]: t for n, t in r.session.thumbnails(runs).items()}


def _run_record(r: _Run, index: int, embedder: Embedder, picks: Picks) -> dict[str, Any]:
    """The run's entry in runs.json: what a reader needs months later to trust the pool."""
    return {
        "index": index,
        "tag": r.cfg.tag or run_tag(index),
        "started_at": r.started,
        "finished_at": _now(),
        "source": str(r.src),  # absolute: a folder's path or an s3:// URL
        "config": _config_json(r),
        "versions": _versions(),
        "decoder": DECODER_VERSION,  # fingerprint.py: a later datapool tells what this one read
        "model": embedder.fingerprint.to_json(),
        "counts": r.counts,
        "stop_reason": picks.stop_reason,
        "report": f"{run_dir(index)}/{REPORT_NAME}",
    }


def _config_json(r: _Run) -> dict[str, Any]:
    """The run's settings; the S3 ones only where the source, pool or export is in S3."""
    config = r.cfg.to_json()
    specs = (str(r.src), str(r.session.location), r.cfg.export or "")
    if not any(scheme_of(s) == "s3" for s in specs):
        config = {k: v for k, v in config.items() if not k.startswith("s3_")}
    return config


def _versions() -> dict[str, str]:
    """What made the embeddings, for a reader months later: datapool, FFmpeg (through PyAV),
    onnxruntime and numpy."""
    import av
    import onnxruntime

    # The package is imported whenever one of its modules is: read its version without an
    # import of the package from inside it (an import cycle).
    __version__ = str(getattr(sys.modules.get("datapool"), "__version__", ""))
    ffmpeg = av.library_versions.get("libavcodec", ())
    return {
        "datapool": __version__,
        "pyav": str(av.__version__),
        "ffmpeg": str(getattr(av, "ffmpeg_version_info", ""))
        or "libavcodec " + ".".join(map(str, ffmpeg)),
        "onnxruntime": str(onnxruntime.__version__),
        "numpy": str(np.__version__),
    }


def _new_inputs(r: _Run, cands: Candidates, picks: Picks) -> dict[str, dict[str, Any]] | None:
    """The strategy inputs of the picked samples, for the pool's STRATEGY_INPUTS_NAME, and
    those BALANCE read for pool samples that had none stored."""
    if r.cfg.selection.diversity_only and not r.cfg.crops:
        return None
    from datapool.pool.inputs import rows_of

    picked = rows_of(cands.names, cands.columns, cands.classes, picks.indices.tolist())
    return {**r.pool_inputs_read, **picked}


def _sampling(config: dict[str, Any]) -> str:
    """How a run's configuration took video frames, in its flags' words."""
    if config.get("fps"):
        return f"--fps {config['fps']:g}"
    stride = config.get("frame_stride", 1)
    return "every frame" if stride == 1 else f"--frame-stride {stride}"


def _warn_sampling_changed(r: _Run, base: Pool, diff: LedgerDiff) -> None:
    """--frame-stride/--fps apply to the videos a run processes: videos the pool already holds
    keep the frames of the sampling they were read with. Say so where this run's sampling
    differs from theirs, rather than let `nothing new` suggest it took effect. Animated images
    (those that gave more than one sample; with --crops, an image's samples are its objects)
    are sampled as videos are."""
    now = _sampling(r.cfg.to_json())
    if all(_sampling(run.get("config", {})) == now for run in base.runs):
        return  # (before the ledger is indexed: every run that samples as the pool's did)
    unchanged = diff.unchanged
    frames = base.ledger.set_index("key")["n_samples"].reindex(unchanged["key"]).to_numpy()
    animated = (frames > 1) & (r.cfg.crops is None)
    videos = unchanged.loc[(unchanged["kind"] == "video").to_numpy() | animated, "key"]
    runs = set(runs_of(base.ledger, videos).tolist())
    before = sorted({_sampling(base.runs[i].get("config", {})) for i in runs} - {now})
    if not before:
        return
    r.warn(
        f"this run's frame sampling ({now}) applies to new and changed videos (and animated "
        "images) only: the pool's other videos keep the frames they were read with "
        f"({', '.join(before)}); --process-all reads every video again"
    )


def _warn_formula_names(r: _Run, new_names: list[str]) -> None:
    risky = [n for n in new_names if n[:1] in csvfile.FORMULA_CHARS]
    if risky:
        r.warn(
            f"{len(risky)} new sample names start with =, +, -, @, a tab or a carriage return "
            f"(first: {risky[0]!r}): {CSV_NAME} quotes them, but a spreadsheet may still run them "
            "as formulas; import it as text (docs/robustness.md)"
        )


NEAR_DUPLICATE = 0.05
"""A pick closer than this to the pool (Euclidean between unit embeddings) is a near-duplicate:
about the distance between neighbouring frames of a video, or one picture saved as JPEG and PNG."""


def _warn_near_duplicates(r: _Run, picks: Picks) -> None:
    """Warn when many picks add little: a fifth or more of them (at least 3) are near-duplicates
    of the pool, and no --min-distance stopped the selection before them."""
    d = picks.min_distances[np.isfinite(picks.min_distances)]
    close = int(np.sum(d < NEAR_DUPLICATE))
    if close >= 3 and close * 5 >= len(picks) and r.cfg.min_distance is None:
        r.warn(
            f"{close} of the {len(picks)} picks are near-duplicates of a sample already selected "
            f"(the pool's, or an earlier pick of this run: closer than {NEAR_DUPLICATE}); "
            f"--min-distance {NEAR_DUPLICATE} would stop before them"
        )


def _warn_min_distance_unreached(r: _Run, picks: Picks) -> None:
    """Warn when --min-distance let no candidate in: its files are now processed, and the next
    run does not look at them again."""
    if picks.farthest is not None:
        r.warn(
            f"--min-distance {r.cfg.min_distance:g} selected nothing: the farthest new sample is "
            f"{picks.farthest:.4f} from the pool. Its files are recorded as processed and later "
            "runs will not consider them again; to reconsider every file, run with --process-all"
        )


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
        "model_inspection": r.model_line,
        "counts": r.counts,
        "stop_reason": picks.stop_reason,
        "skipped": skipped,
        "ignored": r.ignored[:IGNORED_NAMED],  # files without a media extension
        "selected": [
            {
                "filename": cands.names[i],
                "min_distance": _json_float(d),
                "strategies": {k: _json_float(v) for k, v in e.items()},
            }
            for i, d, e in zip(
                picks.indices.tolist(),
                picks.min_distances.tolist(),
                picks.explain or [{}] * len(picks),
            )
        ],
        "strategies": r.cfg.selection.to_lightly()["strategies"],
        "strategy_inputs_missing": r.inputs_missing[:1000],
        # Samples of moved files, old name -> new (ls finds their min-distance by the old one).
        "moved": r.moves.names,
        # The moved files, old key -> new: `datapool verify` follows a file whose samples had
        # left the pool before it moved (nothing in "moved" names it then).
        "moved_files": r.moves.keys,
        "balance": picks.balance,
        "thresholds": picks.thresholds,
        "zero_objective": picks.zero_objective,
        **({"crops": _crops_report(r, cands, picks)} if r.cfg.crops else {}),
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
    kept = RowStack(base.embeddings).where(keep) if len(base) else RowStack()
    unselected = np.ones(len(cands), bool)
    unselected[picks.indices] = False
    runs = [*base.runs, update.run]
    return embedding_view_png(
        kept + RowStack(update.new_embeddings),
        np.concatenate([base.labels[keep], update.new_labels]),
        update.index,
        [run["tag"] for run in runs],
        unselected=RowStack(cands.embeddings).where(unselected),
        title=f"{_title(r, update)} (pool {pool_size})",
    )


def _title(r: _Run, update: PoolUpdate) -> str:
    name = Path(str(r.session.location).rstrip("/")).name
    seen = r.counts.get("frames_embedded", 0)
    return f"{name}: {update.run['tag']} adds {len(update.new_names)} of {seen} candidates"


def _json_float(x: float) -> float | None:
    return x if np.isfinite(x) else None


def _samples_of(
    filenames: list[str], files: pd.DataFrame, ledger: pd.DataFrame
) -> npt.NDArray[np.bool_]:
    """Mask of the pool samples that came from `files` (an image's name is its key; a video's
    frames are named `{stem}-{index}-{ext}.png`; `ledger` says which images own their name)."""
    if len(files) == 0 or not filenames:
        return np.zeros(len(filenames), dtype=bool)
    wanted = set(files["key"])
    keys = source_keys(filenames, image_sample_keys(ledger))
    return np.array([k in wanted for k in keys], dtype=bool)


def _ledger_rows(
    ledger: pd.DataFrame,
    todo: pd.DataFrame,
    per_file: dict[str, tuple[str, int]],
    selected_per_key: dict[str, int],
    run_index: int,
    cut_from: dict[str, str],
) -> pd.DataFrame:
    """This run's ledger rows, one per file it processed, with the ledger's dtypes (and, with
    crop selection, the identity of each image's predictions file: `cut_from`)."""
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
        "content_hash": todo["content_hash"].tolist() if "content_hash" in todo else [""] * n,
        "predictions": [cut_from.get(k, "") for k in keys],
    }
    # Column by column with the ledger's dtypes (object text, int64 numbers): no inference.
    return pd.DataFrame({c: pd.Series(v, dtype=ledger.dtypes[c]) for c, v in columns.items()})
