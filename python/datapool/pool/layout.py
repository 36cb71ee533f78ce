"""The one place that names the files of a pool, and says which are committed and which are caches.

A pool, in a folder or under an S3 prefix:

    datapool_latest.csv   filenames, embeddings and labels (the run that added each sample):
                          Lightly's embeddings format
    runs.json             the runs: index, tag, times, configuration, counts; and which datapool
                          wrote the pool, in which pool format (pool/format.py)
    ledger.csv            every raw file processed: key, size, mtime_ns, run, status, samples
    model.json            the fingerprint of the model that made the embeddings
    strategy_inputs.json  per sample, the strategy inputs it was selected on (scores, metadata,
                          class distributions; pool/inputs.py), when a run used strategies
    runs/<index>/         report.json, embedding_view.png and report.html (interactive) of each run,
                          and thumbnails.bin: the thumbnails of the samples it added (and
                          thumbnails-added-<k>.bin from `datapool report --thumbnails`;
                          pool/thumbnails.py)
    history/              earlier pools set aside by --process-all or --keep-history

Committed files are the pool; everything else is local to one machine and never leaves it (never
uploaded to a bucket, never copied into history):

    .datapool.lock        the lock of a local pool (a flock; pool/lock.py)
    .journal.json         a local commit in flight, and its `*.pending` files (pool/journal.py)
    .sidecar/             the CSV's rows in binary, mapped on open (pool/sidecar.py)

A pool in S3 adds, under its prefix (s3/store.py):

    manifest.json         the commit point: which blobs hold each committed file (s3/manifest.py)
    blobs/<sha256>        the committed files' contents, immutable
    .datapool-lock.json   the lease of a run, on servers without conditional writes (s3/lease.py)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CSV_NAME = "datapool_latest.csv"
RUNS_NAME = "runs.json"
LEDGER_NAME = "ledger.csv"
MODEL_NAME = "model.json"
STRATEGY_INPUTS_NAME = "strategy_inputs.json"
RUNS_DIR = "runs"
HISTORY_DIR = "history"
REPORT_NAME = "report.json"
VIEW_NAME = "embedding_view.png"
REPORT_HTML_NAME = "report.html"  # the interactive report (report_html.py)
THUMBNAILS_NAME = "thumbnails.bin"  # in runs/<index>/: the run's new samples' thumbnails
THUMBNAILS_ADDED_PREFIX = "thumbnails-added-"  # ... and those added to an older pool later
FORMAT_VERSION = 1  # of runs.json

# The pool's own files, which a bucket pool's local copy mirrors (s3/cache.py) and a history
# snapshot keeps: what a run reads to know the pool (Pool.load reads the first four; the strategy
# inputs are read when a run uses strategies). Reports and views of earlier runs are not read.
POOL_FILES = (CSV_NAME, LEDGER_NAME, RUNS_NAME, MODEL_NAME, STRATEGY_INPUTS_NAME)
# Pool files that commits append to in place (all others are only ever replaced whole).
APPENDED_IN_PLACE = (CSV_NAME, LEDGER_NAME)

# Local state of one machine: never committed, uploaded or snapshotted.
LOCK_NAME = ".datapool.lock"
JOURNAL_NAME = ".journal.json"
PENDING_SUFFIX = ".pending"
APPEND_PENDING_SUFFIX = ".append.pending"
SIDECAR_DIR = ".sidecar"
TEMP_PREFIX = ".datapool-"  # temporary files of exports, write checks and the like

# The sidecar's files, inside SIDECAR_DIR.
SIDECAR_MANIFEST = "manifest.json"
SIDECAR_EMBEDDINGS = "embeddings.f32"
SIDECAR_LABELS = "labels.i64"
SIDECAR_NAMES = "names.bin"
SIDECAR_LOCK = "lock"

# A pool in S3, under its prefix.
S3_MANIFEST = "manifest.json"
S3_BLOBS = "blobs/"
S3_LOCK_NAME = ".datapool-lock.json"


def pool_folders(keys: Iterable[str]) -> list[str]:
    """The folders among a source's file keys (POSIX paths) that hold a pool of their own: a
    CSV_NAME and a RUNS_NAME side by side. Each as a key prefix ending in "/" ("" when the
    source's root is one). A run never ingests another pool's views, reports or snapshots as raw
    data. (A pool in S3 keeps its files as blobs without a media extension: never listed.)"""
    found: dict[str, set[str]] = {}
    for key in keys:
        folder, _, name = key.rpartition("/")
        if name in (CSV_NAME, RUNS_NAME):
            found.setdefault(folder + "/" if folder else "", set()).add(name)
    return sorted(folder for folder, names in found.items() if len(names) == 2)


def pools_around(path: Path) -> list[Path]:
    """`path` and the folders above it that hold a pool (a CSV_NAME and a RUNS_NAME side by
    side, as in `pool_folders`, where the RUNS_NAME is not plainly another program's), nearest
    first."""
    return [
        f
        for f in (path, *path.parents)
        if (f / RUNS_NAME).is_file() and (f / CSV_NAME).is_file() and _runs_json_of_a_pool(f)
    ]


def pool_above(path: Path) -> Path | None:
    """The nearest pool folder that holds `path` (resolved), not `path` itself: a source, a
    new pool or a merge's --into there would mix with that pool's files. None where there is
    none."""
    here = path.resolve()
    return next((p for p in pools_around(here) if p != here), None)


def _runs_json_of_a_pool(folder: Path) -> bool:
    """Whether `folder`'s RUNS_NAME may be a pool's: a JSON object with `runs` (every datapool
    writes one), or a file that does not parse (a pool's, damaged, is still a pool). A valid
    JSON document of another shape is another program's (a folder that holds a copied
    datapool_latest.csv beside its own runs.json holds no pool)."""
    import json

    try:
        doc = json.loads((folder / RUNS_NAME).read_bytes())
    except (OSError, ValueError):
        return True
    return isinstance(doc, dict) and "runs" in doc


def run_dir(index: int) -> str:
    """The folder of run `index`'s report and view, relative to the pool."""
    return f"{RUNS_DIR}/{index}"


def snapshot_dir(stamp: str, n_runs: int, n: int = 1) -> str:
    """The folder of a history snapshot of a pool with `n_runs` runs, taken at `stamp`
    (%Y%m%dT%H%M%SZ); `n` > 1 when that name is taken."""
    return f"{HISTORY_DIR}/{stamp}-{n_runs}-runs" + (f"-{n}" if n > 1 else "")


def is_local_state(name: str) -> bool:
    """Whether a path inside a pool (relative, POSIX) is a local cache or lock: never committed."""
    first = name.split("/", 1)[0]
    return (
        first in (LOCK_NAME, JOURNAL_NAME, SIDECAR_DIR, S3_LOCK_NAME)
        or first.startswith(TEMP_PREFIX)
        or name.endswith((PENDING_SUFFIX, APPEND_PENDING_SUFFIX))
    )
