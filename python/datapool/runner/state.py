"""What one run knows as it goes (`_Run`), and how it reads a source's `.lightly` files: shared by
the runner's modules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from datapool.config import RunConfig
from datapool.errors import IN_RESULT
from datapool.pool.moves import Moves
from datapool.pool.store import PoolSession
from datapool.progress import Progress
from datapool.sources import Source

if TYPE_CHECKING:
    from datapool.ingest.embed import Embedder
    from datapool.runner.predictions import PredictionFiles

log = logging.getLogger("datapool")


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
    model_line: str = ""
    model_brief: str = ""  # the summary's model line (Embedder.brief)
    frames_decoded: int = 0
    progress: Progress = field(default_factory=Progress)
    # samples without a .lightly predictions/metadata file, and why (for the report)
    inputs_missing: list[dict[str, str]] = field(default_factory=list)
    # --predictions / --metadata: ".lightly/predictions" or ".lightly/metadata" -> that folder,
    # read instead of the source's own
    lightly_folders: dict[str, Source] = field(default_factory=dict)
    # the source's files without a media extension, outside the pools and exports left out
    ignored: list[str] = field(default_factory=list)
    # files moved or renamed since a run read them (pool/moves.py)
    moves: Moves = field(default_factory=Moves)
    # the run's model, once opened (a dry run has none): moves an older ledger cannot tell
    embedder: Embedder | None = None
    # the strategy inputs BALANCE read for pool samples without stored ones: stored at commit
    pool_inputs_read: dict[str, dict[str, Any]] = field(default_factory=dict)
    # crop selection: the images without objects, and the boxes left out, each with why
    no_objects: list[dict[str, str]] = field(default_factory=list)
    boxes_left_out: list[dict[str, str]] = field(default_factory=list)
    boxes_clipped: list[dict[str, str]] = field(default_factory=list)  # reached past the picture
    # the videos whose frames kept had no predictions file ({"key", "frames", "first"})
    unfiled: list[dict[str, Any]] = field(default_factory=list)
    crop_rects: dict[str, list[int]] = field(default_factory=dict)  # the picks', for --export
    # every image listed, before the filters (crop selection: whose predictions file is it)
    listed: frozenset[str] = frozenset()
    # crop selection: per image processed or checked, the identity of its predictions file
    # (ledger.predictions_identity), recorded in its ledger row's `predictions`
    cut_from: dict[str, str] = field(default_factory=dict)
    recut: list[str] = field(default_factory=list)  # the files cut again: predictions changed
    # crop selection: the task's predictions files, listed once (runner/predictions.py)
    predictions: PredictionFiles | None = None
    # an older decoder's files of each kind ('image', 'video') that this run checked
    # (runner/upgrade.py), and the kinds it could not check (a bucket's objects): a run that
    # adds nothing records a complete check (runner: _record_checks)
    decodes_checked: dict[str, int] = field(default_factory=dict)
    decodes_unchecked: set[str] = field(default_factory=set)

    def warn(self, message: str) -> None:
        """A warning of this run: on stderr now, and in its result and report."""
        self.warnings.append(message)
        log.warning("%s", message, extra={IN_RESULT: True})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _reader(r: _Run) -> Callable[[str], bytes | None]:
    """Reads a `.lightly/...` file by its path in the source (None when missing): from the
    --predictions / --metadata folder where one was given, else from the source."""
    return lightly_reader(r.src, r.lightly_folders)


def lightly_reader(src: Source, folders: dict[str, Source]) -> Callable[[str], bytes | None]:
    """`_reader` of a run's source `src` and its --predictions / --metadata `folders`."""
    read = src.read_bytes

    def reader(path: str) -> bytes | None:
        for prefix, other in folders.items():
            if path.startswith(prefix + "/"):
                return other.read_bytes(path[len(prefix) + 1 :])
        return read(path)

    return reader


def _list_files(r: _Run, folder: str) -> dict[str, str]:
    """The files under a `.lightly/...` folder (`Source.list_files`: path -> the version its
    listing gives, an ETag or ""), from the --predictions / --metadata folder where one was
    given, by their paths in the source as `_reader` reads them."""
    for prefix, other in r.lightly_folders.items():
        if folder.startswith(prefix + "/"):
            inside = other.list_files(folder[len(prefix) + 1 :])
            return {f"{prefix}/{k}": v for k, v in inside.items()}
    return r.src.list_files(folder)


HASH_CHUNK = 512
"""Files hashed in one call of a source's content_hashes, between counts on the phase: 20,000 new
local files took 2-3 s to hash before the first progress line. (A call reads with up to 8 threads:
512 keeps them busy.)"""


def _hash_counted(r: _Run, name: str, keys: list[str]) -> dict[str, str]:
    """The source's content hashes of `keys`, in a progress phase `name` that counts the files
    hashed (r.src has content_hashes)."""
    hashes: Callable[[list[str]], dict[str, str]] = r.src.content_hashes  # type: ignore[attr-defined]
    found: dict[str, str] = {}
    with r.progress.phase(name, unit="files", total=len(keys)) as ph:
        for i in range(0, len(keys), HASH_CHUNK):
            part = keys[i : i + HASH_CHUNK]
            found.update(hashes(part))
            ph.advance(len(part))
    return found
