"""`datapool report POOL --thumbnails`: thumbnails for a pool made before runs made them.

Runs make thumbnails from the frames they decode (ingest/thumbnail.py). A pool from before that
has none; this decodes, once, each raw file that holds a pool sample without a thumbnail, from
the source its ledger row's run names, with that run's frame stride or fps (so the frames are
named as the run named them), and commits the thumbnails found as one more segment of the
pool (pool/thumbnails.py), under the pool's lock and all or nothing. Files that cannot be read
any more (moved, deleted, a source that is gone) are listed with the reason: their samples
stay without thumbnails. In a merged pool, a file whose key the merge prefixed is read by its
key in its source (pool/merge.py's key_in_source). The object crops of crop selection are cut
again from the pixels the pool stored for each (strategy_inputs.json, "crop:box").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datapool.errors import DatapoolError, DecodeError, SourceError
from datapool.naming import source_keys
from datapool.pool.ledger import diff_of_keys, image_sample_keys
from datapool.pool.removal import crop_boxes
from datapool.pool.store import open_store

if TYPE_CHECKING:
    import pandas as pd

    from datapool.config import RunConfig, S3Settings
    from datapool.pool.contents import Pool

log = logging.getLogger("datapool")

DECODE_SIZE = (128, 128)  # the picture thumbnails are made from: the default model's input


@dataclass
class Backfilled:
    """What `add_missing_thumbnails` did."""

    added: int = 0  # thumbnails committed
    had: int = 0  # pool samples that already had one
    segment: str | None = None  # the pool-relative path of the segment written, if any
    unavailable: dict[str, str] = field(default_factory=dict)  # raw file -> why it was not read


def _todo(pool: Pool, have: set[str]) -> dict[int, dict[str, set[str]]]:
    """run index -> raw file key -> the names of its samples that lack a thumbnail."""
    ledger = pool.ledger
    run_of = dict(zip(ledger["key"].tolist(), ledger["run"].tolist()))
    out: dict[int, dict[str, set[str]]] = {}
    for name, key in zip(pool.filenames, source_keys(pool.filenames, image_sample_keys(ledger))):
        if name in have:
            continue
        run = int(run_of.get(key, len(pool.runs) - 1))
        out.setdefault(run, {}).setdefault(key, set()).add(name)
    return out


def add_missing_thumbnails(spec: str, settings: S3Settings | None = None) -> Backfilled:
    """Make and commit the thumbnails that the pool at `spec` lacks (see the module doc);
    `settings` reach the pool and the sources in S3."""
    from dataclasses import asdict

    from datapool.config import RunConfig

    s3 = {} if settings is None else {f"s3_{k}": v for k, v in asdict(settings).items()}
    source_config = RunConfig(n_samples=1, **s3)  # a source reads only its S3 settings
    with open_store(spec, settings).session() as session:
        pool = session.pool
        if not pool.runs:
            return Backfilled()
        have = session.thumbnails(dict(zip(pool.filenames, pool.labels.tolist())))
        out = Backfilled(had=len(have))
        made: dict[str, bytes] = {}
        todo = _todo(pool, set(have))
        boxes = crop_boxes(session, [n for f in todo.values() for ns in f.values() for n in ns])
        for run, files in sorted(todo.items()):
            made.update(
                _decode_run(
                    pool.runs[run], files, pool.ledger, out.unavailable, source_config, boxes
                )
            )
        if made:
            out.segment = session.add_thumbnails(made)
            out.added = len(made)
        return out


def _decode_run(
    record: dict[str, Any],
    files: dict[str, set[str]],
    ledger: pd.DataFrame,
    unavailable: dict[str, str],
    source_config: RunConfig,
    boxes: dict[str, list[float]] | None = None,
) -> dict[str, bytes]:
    """The thumbnails of `files`' samples, decoded from the source of the run `record`; not of
    a file that changed since its run read it (its samples are of the old picture)."""
    from datapool.ingest.decode import iter_frames
    from datapool.pool.contents import key_in_source, key_prefixes
    from datapool.pool.merge import PrefixedSource
    from datapool.sources import open_source

    cfg = record.get("config") or {}
    stride, fps = int(cfg.get("frame_stride") or 1), cfg.get("fps")
    # A merge may have prefixed this run's keys and names (`pb/img0.jpg`): read each file by
    # its key in the source, and name its frames by the pool's key, as the pool names them.
    prefixes = key_prefixes(record)
    renamed = {k: key_in_source(k, prefixes) for k in files} if prefixes else {}
    try:
        src: Any = open_source(str(record.get("source", "")), source_config)
        if renamed:
            src = PrefixedSource(src, {k: s for k, s in renamed.items() if k != s})
        df = src.list()
        listed = dict(zip(df["key"].tolist(), df["kind"].tolist()))
    except DatapoolError as e:
        for key in files:
            unavailable[key] = f"its source {record.get('source')!r} cannot be read: {e}"
        return {}
    changed = set(diff_of_keys(files.keys(), df, ledger, src).changed["key"].tolist())
    keys = [k for k in files if k in listed and k not in changed]
    for key in files:
        if key not in listed:
            unavailable[key] = f"no longer in its source {record.get('source')}"
        elif key in changed:
            unavailable[key] = (
                "changed since its samples were made from it (their thumbnails would show the "
                "new file; `datapool run` takes the new file in)"
            )
    made: dict[str, bytes] = {}
    for key, media in src.open_inputs(keys):
        if isinstance(media, SourceError):
            unavailable[key] = str(media)
            continue
        wanted = files[key]
        try:
            for frame in iter_frames(
                media,
                key,
                listed[key],
                DECODE_SIZE,
                stride,
                fps,
                thumbnails=True,
                cut=_cutter(wanted, boxes or {}),
            ):
                if frame.name in wanted:
                    made[frame.name] = frame.thumb
        except DecodeError as e:
            unavailable[key] = f"cannot be decoded: {e}"
        finally:
            close = getattr(media, "close", None)
            if close is not None and not isinstance(media, str):
                close()
        missing = wanted - made.keys()
        if missing and key not in unavailable:
            unavailable[key] = f"{len(missing)} of its samples are not among its frames now"
    return made


def _cutter(wanted: set[str], boxes: dict[str, list[float]]) -> Any:
    """For a file whose wanted samples are object crops with stored pixels, the decode.Cutter
    that cuts those pixels again (each as a box of no padding); None for any other file."""
    from datapool.ingest.decode import Cutter
    from datapool.naming import crop_index, crop_key_of

    per: dict[str, list[tuple[int, float, float, float, float]]] = {}
    for name in wanted:
        parent, box = crop_key_of(name), boxes.get(name)
        if parent is None or box is None:
            continue
        x0, y0, x1, y1 = box
        per.setdefault(parent, []).append((crop_index(name) or 0, x0, y0, x1 - x0, y1 - y0))
    if not per:
        return None
    return Cutter(lambda name, dropped: per.get(name, []), 0.0)
