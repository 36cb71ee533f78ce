"""The pipeline of one `datapool run`: list, diff, decode, embed, select, commit.

    listing = source.list()                       # every media file, with size and mtime
    diff    = diff_listing(listing, pool.ledger)  # new / changed / unchanged
    frames  = decode(new + changed)               # PyAV, streaming, resized by swscale
    cands   = embed(frames)                       # onnxruntime, batched, unit rows
    picks   = select_diverse(cands, selected=pool.embeddings)
    commit(pool + picks, ledger + processed files, runs + this run, report, view)

Everything is held under the pool lock; the commit is all-or-nothing (see _journal.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool._fsio import check_writable
from datapool._signals import interrupt_says
from datapool._testhooks import point
from datapool.config import RunConfig
from datapool.errors import ConfigError, ModelMismatchError, PoolWriteError
from datapool.export import ExportResult, export_selection
from datapool.ingest.embed import Embedder
from datapool.ingest.threaded import decode_and_embed
from datapool.naming import STATUS_OK, source_keys
from datapool.pool import csvfile as pool_csv
from datapool.pool import journal as _journal
from datapool.pool import sidecar
from datapool.pool.contents import (
    Pool,
    model_json_bytes,
    runs_json_bytes,
)
from datapool.pool.layout import (
    APPENDED_IN_PLACE,
    CSV_NAME,
    HISTORY_DIR,
    LEDGER_NAME,
    MODEL_NAME,
    REPORT_NAME,
    RUNS_DIR,
    RUNS_NAME,
    VIEW_NAME,
    run_tag,
)
from datapool.pool.ledger import (
    can_append,
    diff_listing,
    empty_ledger,
    write_ledger_text,
)
from datapool.pool.lock import PoolLock
from datapool.select.fps import select_diverse
from datapool.sources import open_source
from datapool.view import embedding_view_png

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

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


@dataclass
class _Candidates:
    names: list[str]
    keys: list[str]
    embeddings: npt.NDArray[np.float32]
    per_file: dict[str, tuple[str, int]]  # key -> (status, n_samples)
    skipped: list[dict[str, str]]


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
    if os.fspath(pool).lower().startswith("s3://"):
        from datapool.s3.store import run_with_s3_pool

        return run_with_s3_pool(source, os.fspath(pool), cfg)
    t0 = time.perf_counter()
    src = open_source(source, cfg)
    root = Path(pool)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"pool path {root} exists and is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PoolWriteError(
            f"cannot create pool folder {root} ({e.strerror}); nothing was done"
        ) from None
    with PoolLock(root) as lock:
        check_writable(root)  # a read-only pool fails here, before any listing or decoding
        warnings = [lock.took_over] if lock.took_over else []
        recovered = _journal.recover(root)
        if recovered:
            warnings.append(f"an interrupted commit in {root} was {recovered} before this run")
            log.warning("%s", warnings[-1])
        point("locked")
        return _run_locked(src, root, cfg, t0, warnings)


def _run_locked(
    src: Any, root: Path, cfg: RunConfig, t0: float, warnings: list[str] | None = None
) -> RunResult:
    warnings = [] if warnings is None else warnings
    started = _now()
    t = time.perf_counter()
    previous = Pool.load(root)
    embedder = Embedder(cfg.model, cfg.input_size, cfg.threads)
    if previous.model is not None and not cfg.process_all:
        if not previous.model.same_space(embedder.fingerprint):
            raise ModelMismatchError(
                f"pool {root} was built with {previous.model.describe()}, but this run uses "
                f"{embedder.fingerprint.describe()}; use the pool's model, or rebuild the pool "
                "with --process-all"
            )
    base = Pool.empty(root) if cfg.process_all else previous
    timings: dict[str, float] = {"open_s": time.perf_counter() - t}

    t = time.perf_counter()
    listing = src.list()
    diff = diff_listing(listing, base.ledger)
    todo = diff.to_process
    timings["list_and_diff_s"] = time.perf_counter() - t
    point("listed")
    counts: dict[str, int] = {
        "listed": len(listing),
        "ignored": int(getattr(src, "n_ignored", 0)),
        "new": len(diff.new),
        "changed": len(diff.changed),
        "unchanged": len(diff.unchanged),
        "missing": len(diff.missing),
    }
    if len(todo) == 0 and not cfg.process_all:
        counts.update(
            processed=0,
            skipped=0,
            frames_embedded=0,
            removed=0,
            selected=0,
            pool_size=len(previous),
        )
        return RunResult(
            root, None, None, counts, elapsed_s=time.perf_counter() - t0, warnings=warnings
        )

    # Samples of changed files leave the pool in this run; they come back only if re-selected.
    keep = ~_samples_of(base.filenames, diff.changed)
    kept_names = [n for n, k in zip(base.filenames, keep) if k]
    kept_emb = base.embeddings[keep] if len(base) else np.zeros((0, embedder.dim), np.float32)
    kept_labels = base.labels[keep]

    t = time.perf_counter()
    cands = _decode_and_embed(src, todo, embedder, cfg, taken=set(kept_names))
    timings["decode_embed_s"] = time.perf_counter() - t
    point("embedded")

    t = time.perf_counter()
    budget = cfg.budget(len(cands.names))
    picks = select_diverse(
        cands.embeddings,
        budget,
        selected=kept_emb,
        min_distance=cfg.min_distance,
        threads=cfg.threads,
    )
    timings["select_s"] = time.perf_counter() - t
    point("selected")
    if len(cands.names) == 0:
        stop_reason = "no candidates"
    elif len(picks) == budget:
        stop_reason = "budget"
    elif cfg.min_distance:
        stop_reason = "min_distance"
    else:
        stop_reason = "no candidate differs from the pool"

    run_index = len(base.runs)
    tag = run_tag(run_index)
    order = picks.indices
    new_names = [cands.names[i] for i in order]
    filenames = kept_names + new_names
    embeddings = np.concatenate([kept_emb, cands.embeddings[order]])
    labels = np.concatenate([kept_labels, np.full(len(order), run_index, np.int64)])

    selected_per_key: dict[str, int] = {}
    for i in order:
        selected_per_key[cands.keys[i]] = selected_per_key.get(cands.keys[i], 0) + 1
    ledger_before = base.ledger if not cfg.process_all else empty_ledger()
    ledger_rows = _ledger_rows(ledger_before, todo, cands.per_file, selected_per_key, run_index)

    counts.update(
        processed=len(todo),
        skipped=len(cands.skipped),
        frames_embedded=len(cands.names),
        removed=int((~keep).sum()),
        selected=len(order),
        pool_size=len(filenames),
    )
    ok_files = sum(1 for s, _ in cands.per_file.values() if s == STATUS_OK)
    counts["files_ok"] = ok_files
    finished = _now()
    run_record: dict[str, Any] = {
        "index": run_index,
        "tag": tag,
        "started_at": started,
        "finished_at": finished,
        "source": str(src),
        "config": cfg.to_json(),
        "model": embedder.fingerprint.to_json(),
        "counts": counts,
        "stop_reason": stop_reason,
        "report": f"{RUNS_DIR}/{run_index}/{REPORT_NAME}",
    }
    if (cfg.process_all or cfg.keep_history) and previous.runs:
        run_record["previous_pool"] = _snapshot_to_history(root, previous)
    runs = [*base.runs, run_record]

    risky = [n for n in new_names if n[:1] in pool_csv.FORMULA_CHARS]
    if risky:
        warnings.append(
            f"{len(risky)} new sample names start with =, +, -, @, a tab or a carriage return "
            f"(first: {risky[0]!r}): {CSV_NAME} quotes them, but a spreadsheet may still run them "
            "as formulas; import it as text (docs/robustness.md)"
        )
        log.warning("%s", warnings[-1])
    report = {
        **{k: run_record[k] for k in ("index", "tag", "started_at", "finished_at", "source")},
        "pool": str(root),
        "config": run_record["config"],
        "model": run_record["model"],
        "counts": counts,
        "stop_reason": stop_reason,
        "skipped": cands.skipped,
        "ignored": list(getattr(src, "ignored", []))[:1000],  # files without a media extension
        "selected": [
            {"filename": cands.names[i], "min_distance": _json_float(d)}
            for i, d in zip(order.tolist(), picks.min_distances.tolist())
        ],
        "timings": timings,
        "warnings": warnings,
        "distances": "Euclidean between unit-length embeddings: 0 (same) to 2 (opposite)",
    }
    t = time.perf_counter()
    unselected = np.ones(len(cands.names), bool)
    unselected[order] = False
    view = embedding_view_png(
        embeddings,
        labels,
        run_index,
        [r["tag"] for r in runs],
        unselected=cands.embeddings[unselected],
        title=f"{root.name}: {tag} adds {len(order)} of {len(cands.names)} candidates "
        f"(pool {len(filenames)})",
    )
    timings["view_s"] = time.perf_counter() - t
    point("rendered")

    t = time.perf_counter()
    with _journal.Transaction(root) as txn:  # an error or Ctrl-C before commit() undoes it
        run_dir = f"{RUNS_DIR}/{run_index}"
        txn.stage(f"{run_dir}/{VIEW_NAME}", view)
        txn.stage(f"{run_dir}/{REPORT_NAME}", (json.dumps(report, indent=2) + "\n").encode())
        csv_path = root / CSV_NAME
        if (
            not cfg.process_all
            and keep.all()
            and len(base)
            and pool_csv.ends_with_newline(csv_path)
        ):
            # Only rows were added: append them (O(new)) rather than rewrite the pool.
            txn.stage_append(
                CSV_NAME,
                pool_csv.format_csv(
                    new_names,
                    embeddings[len(kept_names) :],
                    labels[len(kept_names) :],
                    with_header=False,
                ).encode(),
            )
        else:
            txn.stage(CSV_NAME, pool_csv.format_csv(filenames, embeddings, labels).encode())
        if not cfg.process_all and can_append(root / LEDGER_NAME, base.ledger, len(ledger_rows)):
            # The ledger is append-only between rewrites (a later row for a key supersedes
            # earlier ones): a commit costs the files this run processed, not the ledger's size.
            txn.stage_append(LEDGER_NAME, write_ledger_text(ledger_rows, header=False).encode())
        else:
            ledger = _merge_ledger(ledger_before, ledger_rows)
            txn.stage(LEDGER_NAME, write_ledger_text(ledger).encode())
        txn.stage(MODEL_NAME, model_json_bytes(embedder.fingerprint))
        txn.stage(RUNS_NAME, runs_json_bytes(runs))
        txn.commit()
    kinds = dict(zip(todo["key"].tolist(), todo["kind"].tolist()))
    with interrupt_says(committed=True):  # from here on a Ctrl-C lands after the commit
        if cfg.process_all:
            _drop_stale_run_dirs(root, len(runs))
        # The binary sidecar follows: it parses and appends only the rows this run appended
        # (all of them after a rewrite). It is a cache of the committed CSV, so a failure here
        # loses nothing.
        with contextlib.suppress(OSError):
            sidecar.load(csv_path, dim=embedder.dim)
        timings["commit_s"] = time.perf_counter() - t
        result = RunResult(
            pool=root,
            run_index=run_index,
            tag=tag,
            counts=counts,
            skipped=cands.skipped,
            selected=new_names,
            selected_sources=[(cands.names[i], cands.keys[i], kinds[cands.keys[i]]) for i in order],
            report_path=root / run_dir / REPORT_NAME,
            view_path=root / run_dir / VIEW_NAME,
            stop_reason=stop_reason,
            warnings=warnings,
        )
        if cfg.export:  # after the commit: an export that fails leaves the committed pool as it is
            result.export = export_selection(src, result.selected_sources, cfg.export, cfg)
        result.elapsed_s = time.perf_counter() - t0
        return result


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


def _decode_and_embed(
    src: Any, todo: pd.DataFrame, embedder: Embedder, cfg: RunConfig, taken: set[str]
) -> _Candidates:
    """Decode every file to process and embed its frames (pipeline.py: the stages overlap, and
    batches span files).

    A file that fails part-way is skipped whole: its frames already embedded are dropped, so a
    file is either in the run with all its frames or not at all.
    """
    from tqdm import tqdm

    keys_todo = todo["key"].tolist()
    kinds = dict(zip(keys_todo, todo["kind"].tolist()))
    show = cfg.progress if cfg.progress is not None else _is_terminal()
    with tqdm(
        total=len(todo), unit="file", desc="decode+embed", disable=not show, dynamic_ncols=True
    ) as bar:
        got = decode_and_embed(
            src.open_inputs(keys_todo),
            kinds,
            embedder,
            batch_size=cfg.batch_size,
            frame_stride=cfg.frame_stride,
            fps=cfg.fps,
            decode_workers=cfg.decode_workers,
            on_file=lambda _key: bar.update(1),
        )
    per_file = got.status
    results = got.rows
    skipped = [
        {"key": k, "reason": per_file[k][0]} for k in keys_todo if per_file[k][0] != STATUS_OK
    ]

    names: list[str] = []
    keys: list[str] = []
    rows: list[npt.NDArray[np.float32]] = []
    for key in todo["key"].tolist():
        if per_file[key][0] != STATUS_OK:
            continue
        for name, row in results.get(key, []):
            if name in taken:  # never add a second sample under a name the pool already has
                skipped.append(
                    {"key": key, "reason": f"sample name {name!r} is already in the pool"}
                )
                continue
            taken.add(name)
            names.append(name)
            keys.append(key)
            rows.append(row)
    emb = np.stack(rows) if rows else np.zeros((0, embedder.dim), np.float32)
    return _Candidates(names, keys, np.ascontiguousarray(emb, dtype=np.float32), per_file, skipped)


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


def _merge_ledger(ledger: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The whole ledger after this run: one row per key (this run's rows supersede), sorted.
    Only a rewrite of the ledger file needs it; an append writes `rows` alone."""
    import pandas as pd

    kept = ledger[~ledger["key"].isin(set(rows["key"]))]
    parts = [p for p in (kept, rows) if len(p)]
    if not parts:
        return ledger.iloc[0:0]
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return out.sort_values("key", ignore_index=True)


def _snapshot_to_history(root: Path, pool: Pool) -> str:
    """Keep the pool as it is before this run under history/<time>-<runs>-runs/ (--process-all
    always; any run with --keep-history).

    Files that commits only ever replace by rename (runs.json, model.json, the runs/ reports) are
    hard-linked: free. Files that commits append to in place (the pool CSV and the ledger) must
    not be shared with the snapshot, so they are cloned where the file system can (a reflink on
    btrfs, XFS, ...: free) and copied otherwise (in the kernel, without passing through Python).
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = root / HISTORY_DIR / f"{stamp}-{len(pool.runs)}-runs"
    n = 1
    while dest.exists():
        n += 1
        dest = root / HISTORY_DIR / f"{stamp}-{len(pool.runs)}-runs-{n}"
    dest.mkdir(parents=True)
    for name in (RUNS_NAME, MODEL_NAME):
        _link_or_copy(root / name, dest / name)
    for name in APPENDED_IN_PLACE:
        if (root / name).exists():
            _clone_or_copy(root / name, dest / name)
    runs_dir = root / RUNS_DIR
    if runs_dir.is_dir():
        shutil.copytree(runs_dir, dest / RUNS_DIR, copy_function=_link_or_copy)
    return str(dest.relative_to(root))


def _link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    if not os.path.exists(src):
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


_FICLONE = 0x40049409  # Linux ioctl: make dst share src's blocks, copy-on-write


def _clone_or_copy(src: Path, dst: Path) -> None:
    import fcntl

    with open(src, "rb") as fi, open(dst, "wb") as fo:
        try:
            fcntl.ioctl(fo.fileno(), _FICLONE, fi.fileno())
            cloned = True
        except OSError:
            cloned = False
    if not cloned:
        shutil.copyfile(src, dst)  # sendfile on Linux: the bytes never pass through Python
    with open(dst, "rb") as f:
        os.fsync(f.fileno())


def _drop_stale_run_dirs(root: Path, n_runs: int) -> None:
    runs_dir = root / RUNS_DIR
    for child in runs_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and int(child.name) >= n_runs:
            shutil.rmtree(child)


def _is_terminal() -> bool:
    return sys.stderr.isatty()
