"""What a run does about what an older datapool left in a pool: moves its ledger cannot tell
by bytes (vouched for by embeddings), and the files its decoder read otherwise than this one
(fingerprint.DECODER_VERSION: mirrored photos, animations, mirrored videos), read again where
they differ, and the videos it skipped as truncated, or as damaged where they start before a
keyframe, tried again."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.errors import SourceError
from datapool.naming import STATUS_OK, source_keys
from datapool.pool.contents import Pool
from datapool.pool.ledger import (
    LedgerDiff,
    image_sample_keys,
    legacy_rows,
)
from datapool.pool.moves import renamed_sample
from datapool.pool.next_run import (
    decoder_checked,
    fps_jump_candidates,
    skipped_before,
    tiffs_before,
)
from datapool.runner.state import _hash_counted, _Run, log

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from datapool.ingest.embed import Embedder


def _vouched(
    r: _Run,
    base: Pool,
    diff: LedgerDiff,
    listed_keys: set[str],
    movable: set[str] | None,
    hashes: Any,
) -> LedgerDiff:
    """A gone file whose ledger row an older datapool wrote without a content hash has no bytes
    to compare: a new local file of its kind and size whose frames of the gone file's samples
    embed as those samples did (each within 1e-3, unit rows) is that file moved. Its gone row
    takes the new file's hash, so that find_moves pairs them. Only where the gone file has
    samples (one without is read as new, and loses nothing), never with --crops, nor in a dry
    run (no embedder)."""
    from datapool.pool.moves import untold_pairs

    if r.embedder is None or hashes is None or r.cfg.crops is not None:
        return diff
    gone = diff.missing
    if len(diff.new) == 0 or not ((gone["etag"] == "") & (gone["content_hash"] == "")).any():
        return diff  # (before the pool's sample names are mapped to their files: every run)
    by_key: dict[str, list[str]] = {}
    for name, key in zip(
        base.filenames, source_keys(base.filenames, image_sample_keys(base.ledger))
    ):
        by_key.setdefault(key, []).append(name)
    pairs = untold_pairs(diff, listed_keys, movable, set(by_key))
    if not pairs:
        return diff
    found = hashes([new for _, new in pairs])
    rows = dict(zip(base.filenames, base.embeddings))
    vouched: dict[str, str] = {}
    with r.progress.phase("moves without hashes") as ph:
        ph.note = f"{len(pairs)} files"
        for (old, new), (_, media) in zip(pairs, r.src.open_inputs([n for _, n in pairs])):
            want = {renamed_sample(n, old, new): rows[n] for n in by_key.get(old, [])}
            if new in found and not isinstance(media, SourceError):
                if _embeds_as(r.embedder, media, new, want):
                    vouched[old] = found[new]
    if not vouched:
        return diff
    missing = diff.missing.copy()
    at = missing["key"].isin(set(vouched))
    missing.loc[at, "content_hash"] = missing.loc[at, "key"].map(vouched)
    return replace(diff, missing=missing)


def _embeds_as(embedder: Embedder, media: Any, key: str, want: dict[str, Any]) -> bool:
    """Whether the file `key` has frames named as `want`'s, each embedding within 1e-3 of it."""
    from datapool.errors import DecodeError
    from datapool.ingest.decode import iter_frames
    from datapool.naming import media_kind

    got = {}
    try:
        for frame in iter_frames(media, key, media_kind(key) or "image", embedder.size_wh):
            if frame.name in want:
                got[frame.name] = frame.rgb
    except DecodeError:
        return False
    finally:
        if hasattr(media, "close"):
            media.close()
    if not want or set(got) != set(want):
        return False
    names = list(want)
    emb = embedder.embed(np.stack([got[n] for n in names]))
    return all(float(np.linalg.norm(e - want[n])) < 1e-3 for e, n in zip(emb, names))


def _reread_old_decodes(r: _Run, base: Pool, diff: LedgerDiff, embedder: Embedder) -> LedgerDiff:
    """The files of earlier runs that an older datapool read otherwise than this one
    (fingerprint.DECODER_VERSION) are read again, as changed files are: their samples leave the
    pool, their new ones are candidates, and the run says which. Their embeddings were wrong, and
    nothing else would have replaced them: the files did not change. Which files each kind of
    check concerns is `decoder_checked`'s rule (fingerprint.DECODER_CHANGES): the images of runs
    that record no decoder (a mirrored photo read unmirrored, an animation as its first frame),
    the videos of runs that record decoder 2 or less (a mirrored display matrix read as a turn),
    of runs after which no run records as much; so a pool is checked once, by its first run that
    commits (or, where it has nothing to add, records the check: runner `_record_checks`), and
    the others are left as they are. The videos such runs skipped as truncated are
    tried again (`_retry_truncated`), and those they read with --fps whose timestamps jump back
    (every frame after the jump dropped) are read again."""
    if r.cfg.process_all:
        return diff
    _say_newly_listed(r, base, diff)
    diff = _retry_truncated(r, base, diff)
    for kind in ("image", "video"):
        diff = _reread_kind(r, base, diff, embedder, kind)
    return _reread_tiffs(r, base, diff)


def _say_newly_listed(r: _Run, base: Pool, diff: LedgerDiff) -> None:
    """Say which new files are of a type the datapool of the pool's last run did not read
    (fingerprint.LISTED_SINCE: HEIC, AVIF, .ogv, ...): it ignored them, so no ledger holds them,
    and this run reads them once as the new files they are to the pool. A user who ran on the
    same folder before learns why they come now (a pool whose last run read them has none:
    such a file is new to the folder)."""
    from collections import Counter

    from datapool.fingerprint import LISTED_SINCE

    if not base.runs or not len(diff.new):
        return
    last = int(base.runs[-1].get("decoder", 1))
    exts = Counter(
        ext
        for key in diff.new["key"].tolist()
        if (ext := key.rsplit(".", 1)[-1].lower()) in LISTED_SINCE and last < LISTED_SINCE[ext]
    )
    if exts:
        n = sum(exts.values())
        kinds = ", ".join(f"{k} .{e}" for e, k in sorted(exts.items(), key=lambda x: (-x[1], x[0])))
        r.warn(
            f"read now: {n} new file{'s' * (n != 1)} of a type the datapool of this pool's "
            f"earlier runs did not read ({kinds}), which it ignored; this datapool reads "
            f"{'them' if n != 1 else 'it'} (README, 'Decode')"
        )


def _reread_tiffs(r: _Run, base: Pool, diff: LedgerDiff) -> LedgerDiff:
    """The unchanged TIFFs of runs of a decoder before the one that reads them with Pillow where
    FFmpeg cannot (pool/next_run.py `tiffs_before`, fingerprint.DECODER_CHANGES 'tiff'): those
    read whole are checked (`tiff_read_otherwise_before`: a JPEG-compressed one was read as a
    black picture) and read again where that decoder read them otherwise; those skipped as
    damaged for a compression or samples FFmpeg lacks are tried again once (one truly damaged
    is skipped again). In a bucket the read ones are not checked (each would be downloaded):
    the run warns. Files moved since are not checked."""
    unchanged = diff.unchanged
    if all(decoder_checked(base.runs, "tiff", base.checked)):
        return diff
    r.decodes_checked.setdefault("image", 0)  # (nothing to check is a check done)
    if not len(unchanged):
        return diff
    rows = base.ledger.set_index("key").reindex(unchanged["key"]).reset_index()
    read, skipped = tiffs_before(base.runs, rows, base.checked)
    stale: dict[str, str] = {}
    keys = unchanged.loc[read, "key"].tolist()
    from datapool.sources.local import LocalSource

    if keys and not isinstance(r.src, LocalSource):
        n = len(keys)
        r.warn(
            f"{_were(n, 'TIFF')} read by an older datapool (its runs record decoder 5 or less), "
            "which read a JPEG-compressed TIFF as a black picture (white in CMYK); the samples "
            "of any such file keep those embeddings (objects in S3 are not downloaded to "
            "check): --process-all reads every file again"
        )
        r.decodes_unchecked.add("tiff")
    elif keys:
        from datapool.ingest.decode import tiff_read_otherwise_before

        r.decodes_checked["image"] += len(keys)
        for key, media in r.src.open_inputs(keys):
            why = None if isinstance(media, SourceError) else tiff_read_otherwise_before(media)
            if why is not None:
                stale[key] = why
    if stale:
        _warn_reread(r, stale, "image")
        again = unchanged["key"].isin(set(stale))
        r.counts["reread"] = r.counts.get("reread", 0) + len(stale)
        r.counts["unchanged"] = r.counts.get("unchanged", len(unchanged)) - len(stale)
        diff = diff.read_again(unchanged.loc[again])
    n = int(skipped.sum())
    if not n:
        return diff
    tried = unchanged.loc[skipped]
    shown = ", ".join(tried["key"].tolist()[:5]) + (f" and {n - 5} more" if n > 5 else "")
    r.warn(
        f"tried again: {n} TIFF{'s' * (n != 1)} that an older datapool skipped as damaged "
        f"({shown}): FFmpeg cannot decode their compression (Zstandard, LZMA, WebP, JPEG 2000) "
        "samples (32-bit, float) or colour (CIELab), which this datapool reads with Pillow or "
        "skips saying what they are; one truly damaged is skipped again"
    )
    return _retried(r, diff, tried)


def _retried(r: _Run, diff: LedgerDiff, tried: pd.DataFrame) -> LedgerDiff:
    """`diff` with the unchanged files `tried` (rows of `diff.unchanged`) tried again, as
    --retry-skipped tries them."""
    import pandas as pd

    n = len(tried)
    r.counts["retried"] = r.counts.get("retried", len(diff.retry)) + n
    r.counts["unchanged"] = r.counts.get("unchanged", len(diff.unchanged)) - n
    keys = set(tried["key"].tolist())
    parts = [diff.retry, tried[list(diff.retry.columns)]] if len(diff.retry) else [tried]
    return replace(
        diff,
        retry=pd.concat(parts, ignore_index=True),
        unchanged=diff.unchanged.loc[~diff.unchanged["key"].isin(keys)],
        touched=diff.touched.loc[~diff.touched["key"].isin(keys)],
    )


def _reread_kind(
    r: _Run, base: Pool, diff: LedgerDiff, embedder: Embedder, kind: str
) -> LedgerDiff:
    """`_reread_old_decodes` of the files of `kind`: those read whole (status ok) are checked
    (an image's first 64 kB, a video's first frame, and the packets of one that an older run
    read with --fps in a container whose timestamps may jump back: ingest/decode.py) where the
    source is local. A file moved or renamed since is checked under its new key (its samples
    were renamed, then read again). A mirrored photo or video whose samples in the pool embed as this decoder reads
    it was read right (datapool mirrored photos some commits before runs recorded the decoder,
    and mirrored videos some before runs recorded decoder 3): it stays."""
    unchanged = diff.unchanged
    checked = decoder_checked(base.runs, kind, base.checked)
    if all(checked):
        return diff  # (before the ledger is indexed: every run on a checked pool)
    r.decodes_checked[kind] = 0  # (nothing of the kind to check is a check done)
    moved = _moved_of(r, kind)
    if not len(unchanged) + len(moved):
        return diff
    rows = base.ledger.set_index("key").reindex(unchanged["key"])
    unchecked = ~np.array(checked)
    old = (
        (unchanged["kind"] == kind).to_numpy()
        & (rows["status"] == STATUS_OK).to_numpy()
        & unchecked[rows["run"].to_numpy()]
    )
    moved = moved.loc[unchecked[moved["run"].to_numpy()]] if len(moved) else moved
    keys = unchanged.loc[old, "key"].tolist() + moved["key"].tolist()
    if not keys:
        return diff
    from datapool.sources.local import LocalSource

    by_fps = set()
    if kind == "video":
        jumps = fps_jump_candidates(base.runs, base.ledger, base.checked)
        by_fps = set(base.ledger.loc[jumps, "key"].tolist())
    if not isinstance(r.src, LocalSource):  # each object would be downloaded to look at it
        r.warn(_NOT_CHECKED[kind](len(keys), len(by_fps & set(keys))))
        r.decodes_unchecked.add(kind)
        return diff
    r.decodes_checked[kind] = len(keys)
    was = {new: old for old, new in r.moves.keys.items()}
    by_fps = {k for k in keys if was.get(k, k) in by_fps}
    stale = _read_otherwise(r, keys, kind, by_fps)
    stale = _read_right_after_all(r, base, embedder, stale, was)
    if not stale:
        return diff
    _warn_reread(r, stale, kind)
    again = unchanged["key"].isin(set(stale))
    moved_again = moved.loc[moved["key"].isin(set(stale))]
    r.counts["reread"] = r.counts.get("reread", 0) + len(stale)
    r.counts["unchanged"] = r.counts.get("unchanged", len(unchanged)) - int(again.sum())
    if len(moved_again):  # read again, not carried over as moved (summary counts add up)
        r.counts["moved"] = r.counts.get("moved", len(r.moves)) - len(moved_again)
        gone = {was[k] for k in moved_again["key"].tolist()}
        names = list(r.moves.names)
        of = source_keys(names, image_sample_keys(base.ledger))
        r.counts["renamed"] = r.counts.get("renamed", len(names)) - sum(k in gone for k in of)
    rows = unchanged.loc[again]
    if len(moved_again):  # (no concatenation with an empty frame: pandas warns of it)
        import pandas as pd

        rows = pd.concat([rows, moved_again.assign(kind=kind)[[*rows.columns]]])
    return diff.read_again(rows)


def _were(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)} of the pool {'was' if n == 1 else 'were'}"


def _images_not_checked(n: int, _: int) -> str:
    return (
        f"{_were(n, 'image')} read by an older datapool (its runs "
        "record no decoder), which read a mirrored photo (EXIF orientation 2, 4, 5, 7) "
        "unmirrored and an animated GIF or PNG as its first frame; the samples of any such file "
        "keep those embeddings (objects in S3 are not downloaded to check): --process-all "
        "reads every file again"
    )


def _videos_not_checked(n: int, by_fps: int) -> str:
    # (one video: "as it read it"; of more, "in the one" or "in the 3": never "of the 1")
    which = "as it read it" if n == by_fps == 1 else f"in the {_one(by_fps)} it read"
    fps = (
        f", and, {which} with --fps from MPEG-TS or MPEG-PS, dropped the frames after "
        "timestamps that jump back (recordings joined end to end)"
        if by_fps
        else ""
    )
    return (
        f"{_were(n, 'video')} read by an older datapool (its runs "
        "record decoder 2 or less), which turned a video whose display matrix mirrors the "
        "picture (a selfie camera's, ffmpeg -display_hflip) as if it did not: upside down, or "
        f"a quarter turn the wrong way{fps}; the samples of any such video keep those "
        "embeddings (objects in S3 are not downloaded to check): --process-all reads every "
        "file again"
    )


def _one(n: int) -> str:
    return "one" if n == 1 else str(n)


_NOT_CHECKED = {"image": _images_not_checked, "video": _videos_not_checked}


def _retry_truncated(r: _Run, base: Pool, diff: LedgerDiff) -> LedgerDiff:
    """The videos that a run of an older decoder skipped for a reason this one may not give them,
    unchanged since: tried again, as --retry-skipped tries them (pool/next_run.py
    `skipped_before`). Decoder 2 and older took for truncated (`truncated: frames end at ...`) a
    clip cut without re-encoding (`ffmpeg -ss X -c copy`: an edit list), a Matroska track that
    starts late, and recordings joined end to end whose second is shorter; decoder 3 and older
    skipped as damaged a video that starts before a keyframe (a recording cut from a live stream
    or an IP camera), which this one reads from its first keyframe; decoder 5 and older took for
    truncated an AVI whose muxer filled timestamp gaps with empty chunks. Which of them were whole
    only reading them tells; one truly cut short or damaged is skipped again, under this run, so
    it is tried once. A file moved since its skip is read as new anyway (a skipped file has no
    samples to move)."""
    unchanged = diff.unchanged
    if not len(unchanged):
        return diff
    video = (unchanged["kind"] == "video").to_numpy()
    if not video.any():  # (the ledger looked up by a million image keys: 0.6 s for nothing)
        return diff
    rows = base.ledger.set_index("key").reindex(unchanged.loc[video, "key"]).reset_index()
    truncated, mid_gop = np.zeros(len(unchanged), bool), np.zeros(len(unchanged), bool)
    truncated[video] = skipped_before(base.runs, rows, "video", base.checked)
    avi = np.zeros(len(unchanged), bool)
    avi[video] = skipped_before(base.runs, rows, "avi_truncated", base.checked)
    avi &= ~truncated
    mid_gop[video] = skipped_before(base.runs, rows, "video_start", base.checked)
    mid_gop &= ~(truncated | avi)
    again = truncated | avi | mid_gop
    n = int(again.sum())
    if not n:
        return diff
    import pandas as pd

    tried = unchanged.loc[again]
    r.counts["retried"] = r.counts.get("retried", len(diff.retry)) + n
    r.counts["unchanged"] = r.counts.get("unchanged", len(unchanged)) - n

    _say_tried(r, unchanged["key"].tolist(), truncated, avi, mid_gop)
    keys = set(tried["key"].tolist())
    parts = [diff.retry, tried[list(diff.retry.columns)]] if len(diff.retry) else [tried]
    return replace(
        diff,
        retry=pd.concat(parts, ignore_index=True),
        unchanged=unchanged.loc[~again],
        touched=diff.touched.loc[~diff.touched["key"].isin(keys)],
    )


def _say_tried(
    r: _Run,
    keys: list[str],
    truncated: npt.NDArray[Any],
    avi: npt.NDArray[Any],
    mid_gop: npt.NDArray[Any],
) -> None:
    """Warn of the videos `_retry_truncated` tries again (masks over `keys`), by reason."""

    def shown(mask: npt.NDArray[Any]) -> str:
        named = [k for k, m in zip(keys, mask) if m]
        return ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")

    for mask, noun, skipped_as, why in (
        (
            truncated,
            "video",
            "truncated",
            "it took a clip cut without re-encoding (ffmpeg -ss X -c copy), a Matroska track "
            "that starts late and recordings joined end to end whose second is shorter for "
            "truncated files, which this datapool reads; one truly cut short is skipped again",
        ),
        (
            avi,
            "AVI",
            "truncated",
            "it took an AVI whose muxer filled timestamp gaps with empty chunks (a clip cut with "
            "ffmpeg -ss X -c copy, one copied from Matroska or MP4) for a truncated file, which "
            "this datapool reads; one truly cut short is skipped again",
        ),
        (
            mid_gop,
            "video",
            "damaged",
            "it skipped a video that starts before a keyframe (a recording cut from a live "
            "stream or an IP camera), which this datapool reads from its first keyframe; one "
            "truly damaged is skipped again",
        ),
    ):
        if mask.any():
            k = int(mask.sum())
            r.warn(
                f"tried again: {k} {noun}{'s' * (k != 1)} that an older datapool skipped as "
                f"{skipped_as} ({shown(mask)}): {why}"
            )


def _moved_of(r: _Run, kind: str) -> pd.DataFrame:
    """The ledger rows, under their new keys, of the files of `kind` this run found moved and
    that were read whole (status ok): an older decoder's reads of them are checked as unchanged
    files'."""
    rows = r.moves.ledger_rows
    if rows is None or not len(rows):
        import pandas as pd

        return pd.DataFrame({"key": [], "run": []}).astype({"key": object, "run": "int64"})
    from datapool.naming import media_kind

    of = [media_kind(k) == kind for k in rows["key"].tolist()]
    return rows.loc[np.array(of, dtype=bool) & (rows["status"] == STATUS_OK).to_numpy()]


def _read_right_after_all(
    r: _Run, base: Pool, embedder: Embedder, stale: dict[str, str], was: dict[str, str]
) -> dict[str, str]:
    """`stale` less the mirrored photos whose samples in the pool embed as this decoder reads
    them (each within 1e-3): a datapool between 671c84c and the commit that recorded `decoder`
    mirrored them already, and reading them again would take a selected sample out of the pool
    on a wrong word ('read unmirrored'). A photo without samples in the pool has nothing to
    compare and is read again (it only becomes a candidate again). `was` names the old key of
    each file moved in this run (the pool's samples are still under the old names)."""
    mirrored = [k for k, why in stale.items() if why.startswith("mirrored")]
    if not mirrored:
        return stale
    rows: dict[str, dict[str, Any]] = {}
    for name, key, emb in zip(
        base.filenames,
        source_keys(base.filenames, image_sample_keys(base.ledger)),
        base.embeddings,
    ):
        rows.setdefault(key, {})[name] = emb
    want = {
        k: {renamed_sample(n, was.get(k, k), k): e for n, e in rows[was.get(k, k)].items()}
        for k in mirrored
        if was.get(k, k) in rows
    }
    untold = {  # nothing to compare: the claim is only what the older datapool did
        k: stale[k] + " by datapool before 2026-12-07 (it has no sample in the pool to tell)"
        for k in mirrored
        if k not in want
    }
    stale = {**stale, **untold}
    if not want:
        return stale
    right = {
        key
        for key, media in r.src.open_inputs(list(want))
        if not isinstance(media, SourceError) and _embeds_as(embedder, media, key, want[key])
    }
    if right:
        log.info("mirrored photos an earlier run read right already: %s", sorted(right))
    return {k: why for k, why in stale.items() if k not in right}


def _warn_reread(r: _Run, stale: dict[str, str], kind: str) -> None:
    shown = "; ".join(f"{k}: {why}" for k, why in list(stale.items())[:5])
    more = f"; and {len(stale) - 5} more" if len(stale) > 5 else ""
    n = len(stale)
    r.warn(
        f"read again: {n} {kind}{'s' * (n != 1)} that an earlier run read otherwise than this "
        f"datapool reads {'them' if n != 1 else 'it'} ({shown}{more}); "
        f"{'their' if n != 1 else 'its'} old samples leave the pool and "
        f"{'their' if n != 1 else 'its'} new ones are candidates"
    )


def _read_otherwise(r: _Run, keys: list[str], kind: str, by_fps: set[str]) -> dict[str, str]:
    """Of the local files `keys` of `kind`, those the older decoder read otherwise, with how;
    `by_fps`: the videos it read with --fps, whose timestamps are checked too."""
    from datapool.ingest.decode import read_otherwise_before, video_read_otherwise_before

    def probe(key: str, media: Any) -> str | None:
        if kind == "image":
            return read_otherwise_before(media)
        return video_read_otherwise_before(media, key in by_fps)

    stale: dict[str, str] = {}
    t = time.perf_counter()
    with r.progress.phase("checking earlier decodes") as ph:
        ph.note = f"{len(keys)} {kind}s"
        for key, media in r.src.open_inputs(keys):
            why = None if isinstance(media, SourceError) else probe(key, media)
            if why is not None:
                stale[key] = why
    took = time.perf_counter() - t
    r.timings["old_decoder_check_s"] = r.timings.get("old_decoder_check_s", 0.0) + took
    return stale


def _record_checks(r: _Run, base: Pool, diff: LedgerDiff) -> None:
    """A run that adds nothing records what it checked, in one commit that adds no run
    (session.record_checks), so that later runs do not check it again: that this decoder
    checked the files of the runs an older one read (runs.json's `decoder_checked`:
    pool/next_run.py), where it checked every kind it had to (not where the objects of a bucket
    went unchecked); and, in the ledger, what it learnt of unchanged files: the new mtime of
    each touched file (same bytes, hashed to tell: not hashed again), the content hash of each
    file an older datapool recorded without one (`_with_legacy_hashes`: moves are then told by
    bytes), and, for crop selection, the identity of each predictions file it learnt (an ETag
    where an older datapool recorded the hash of its bytes, or one where it recorded none:
    runner/crops.py). None of these: nothing is written. Where another run committed first (a
    bucket pool), the run warns that it recorded nothing, and ends as a run with nothing new
    does: its samples were not changed either way."""
    from datapool.fingerprint import DECODER_VERSION
    from datapool.pool.store import Checks
    from datapool.runner.crops import _with_predictions_recorded
    from datapool.runner.state import _now

    checked = None
    if r.decodes_checked and not r.decodes_unchecked:
        checked = {"decoder": DECODER_VERSION, "through_run": len(base.runs) - 1, "at": _now()}
    hashed = _with_legacy_hashes(r, base, diff)
    rows = _with_touched(_with_predictions_recorded(r, base, diff, hashed), diff.touched)
    if checked is None and not len(rows):
        return
    from datapool.errors import PoolLockedError

    try:
        with r.progress.phase("recording"):
            r.session.record_checks(Checks(checked, rows if len(rows) else None))
    except PoolLockedError as e:  # another run committed to a bucket pool since this one read it
        r.warn(f"what this run checked was not recorded, so the next run checks it again: {e}")
        r.counts.pop("hashed", None)  # ('once': not so)
        return
    if checked is not None:
        for kind, n in r.decodes_checked.items():
            r.counts[f"decoder_checked_{kind}s"] = n
    if r.cut_from and len(rows):
        r.counts["predictions_recorded"] = int(rows["key"].isin(set(r.cut_from)).sum())
    if len(diff.touched):
        r.counts["touched_recorded"] = len(diff.touched)


def _with_touched(rows: pd.DataFrame, touched: pd.DataFrame) -> pd.DataFrame:
    """`rows` (ledger rows a run records) plus the rows of the touched files (`touched`: their
    ledger rows with the new mtime) that `rows` lacks."""
    more = touched.loc[~touched["key"].isin(set(rows["key"].tolist())), rows.columns]
    if not len(more):
        return rows
    import pandas as pd

    return pd.concat([rows, more], ignore_index=True).astype(rows.dtypes)


def _with_legacy_hashes(r: _Run, base: Pool, diff: LedgerDiff) -> pd.DataFrame:
    """The ledger rows of unchanged local files that an older datapool recorded without a
    content hash (before the content_hash column), with it. A run records them, once (one with
    nothing new too: `_record_checks`): without it a touched file of such a pool is a changed
    one (embedded again, its samples out of the pool) and a moved one is new plus gone, forever
    (pool/moves.py needs the gone file's hash).
    The bytes hashed are those the ledger's run read, as far as size and mtime ever tell."""
    rows = legacy_rows(base.ledger, diff.unchanged["key"])
    if not hasattr(r.src, "content_hashes") or len(rows) == 0:
        return rows.iloc[:0]
    t = time.perf_counter()
    found = _hash_counted(r, "hashing", rows["key"].tolist())
    rows = rows.assign(content_hash=[found.get(k, "") for k in rows["key"]])
    rows = rows.loc[rows["content_hash"] != ""]
    r.timings["legacy_hash_s"] = time.perf_counter() - t
    r.counts["hashed"] = len(rows)
    return rows
