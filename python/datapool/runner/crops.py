"""Crop selection's part of a run (docs/selection.md, "Crop selection"): the boxes to cut, the
images re-cut because their predictions changed, one kind of sample per pool, and what the
summary and report say of the crops."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from datapool.errors import ConfigError
from datapool.ingest import CropSpec, Unfiled
from datapool.lightly import PREDICTIONS, predictions_folder, predictions_path
from datapool.naming import STATUS_OK, counted, media_kind, source_keys
from datapool.pool.contents import Pool, crop_mode, crop_modes
from datapool.pool.ledger import (
    NO_PREDICTIONS,
    LedgerDiff,
    image_sample_keys,
    predictions_identity,
)
from datapool.runner.predictions import ETAG, PredictionFiles, same_form
from datapool.runner.state import _list_files, _reader, _Run, log
from datapool.select import Picks

if TYPE_CHECKING:
    import pandas as pd

    from datapool.candidates import Candidates


def _prediction_files(r: _Run) -> PredictionFiles:
    """The run's crop task's predictions files (runner/predictions.py): listed once, before any
    of them is read, and kept for the run's later phases."""
    if r.predictions is None:
        task = r.cfg.crops or ""
        r.predictions = PredictionFiles(task, _reader(r), _list_files(r, predictions_folder(task)))
    return r.predictions


def _predictions_now(r: _Run, files: list[tuple[str, str]]) -> list[str]:
    """The identity (runner/predictions.py) of each (key, kind)'s predictions for the run's
    crop task, an image's file or a video's frames' files: one listing of the task's folder,
    and the files it does not tell (local ones) read 8 at a time under a progress phase."""
    t = time.perf_counter()
    with r.progress.phase("predictions", unit="files") as ph:
        found = _prediction_files(r)  # (a listing: one request per 1,000 objects from S3)
        ph.set_total(found.unread(files))
        now = found.identities(files, ph.advance)
    r.timings["predictions_check_s"] = time.perf_counter() - t
    return now


def _recut(r: _Run, base: Pool, diff: LedgerDiff) -> LedgerDiff:
    """Crop selection: the unchanged images and videos whose predictions are not those their
    crops were cut from (the ledger's `predictions`: an image's file, a video's frames' files,
    rewritten, removed, or written for one that had none) are read again, as changed files
    are: their crops leave the pool, their new ones are candidates, and the run counts them
    (`recut`). A row an older datapool wrote records none: such a file is re-cut only where it
    gave no crop and has predictions now, else their identity is recorded from now on
    (`_with_predictions_recorded`), as is an image's file recorded in the other form than the
    listing gives (a blake2b before ETags), once read to be sure it is the same.

    A moved file (r.moves) is compared by its predictions under its new name against the row
    it carries: one that differs is cut again in the run that finds the move (its crops,
    renamed, leave the pool), and counted as re-cut, not as moved."""
    if not r.cfg.crops or r.cfg.process_all:
        return diff
    checked, rows = _cut_before(r, base, diff)
    if not len(checked):
        return diff
    keys = checked["key"].tolist()
    rows = rows.set_index("key").reindex(keys)
    now = _predictions_now(r, list(zip(keys, checked["kind"].tolist())))
    stale = _stale(r, keys, rows, now)
    if not stale:
        return diff
    _count_recut(r, base, diff, stale)
    log.info(
        "%d files re-cut: their predictions for task %r changed (first: %s)",
        len(stale),
        r.cfg.crops,
        r.recut[0],
    )
    return diff.read_again(checked.loc[checked["key"].isin(stale)])


def _cut_before(r: _Run, base: Pool, diff: LedgerDiff) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The files whose predictions a crop run checks: the unchanged images and videos, and the
    files moved (under their new keys) but not read again already; and the ledger rows they
    are compared with."""
    import pandas as pd

    moved = r.moves.ledger_rows
    if moved is None or not len(moved):
        return diff.unchanged, base.ledger
    kinds = [media_kind(k) for k in moved["key"].tolist()]
    moved = moved[["key", "size", "mtime_ns", "etag", "content_hash"]].assign(kind=kinds)
    moved = moved.loc[~moved["key"].isin(set(diff.changed["key"].tolist()))]
    checked = pd.concat([diff.unchanged, moved], ignore_index=True)
    rows = pd.concat([base.ledger, r.moves.ledger_rows], ignore_index=True)
    return checked, rows.drop_duplicates("key", keep="last")


def _stale(r: _Run, keys: list[str], rows: pd.DataFrame, now: list[str]) -> set[str]:
    """The files of `keys` to cut again: their predictions now (`now`) are not those their
    ledger rows (`rows`) record. The identities to record without cutting go to r.cut_from."""
    stale = set()
    otherwise: dict[str, str] = {}  # known otherwise before (its bytes' hash, before ETags)
    for key, was, is_, n, status in zip(
        keys, rows["predictions"], now, rows["n_samples"], rows["status"]
    ):
        if was == is_:
            continue
        if not isinstance(was, str) or not was:  # an older datapool's row: records none
            if n == 0 and status == STATUS_OK and is_ != NO_PREDICTIONS:
                stale.add(key)
            else:
                r.cut_from[key] = is_
        elif NO_PREDICTIONS not in (was, is_) and not same_form(was, is_):
            otherwise[key] = was
        else:
            stale.add(key)
    if otherwise:
        same = _prediction_files(r).same_bytes(otherwise)
        stale |= set(otherwise) - same
        r.cut_from.update((k, i) for k, i in zip(keys, now) if k in same)
    return stale


def _count_recut(r: _Run, base: Pool, diff: LedgerDiff, stale: set[str]) -> None:
    """The summary's counts with the files cut again: each file counts once, a moved one cut
    again among the re-cut, not the moved (nor its samples among the renamed)."""
    r.counts["recut"] = len(stale)
    r.recut = sorted(stale)
    moved = stale & set(r.moves.keys.values())
    r.counts["unchanged"] = r.counts.get("unchanged", len(diff.unchanged)) - len(stale - moved)
    if not moved:
        return
    r.counts["moved"] = r.counts.get("moved", len(r.moves)) - len(moved)
    read_again = moved | set(diff.changed["key"].tolist())  # (an older decoder's: upgrade.py)
    gone = {old for old, new in r.moves.keys.items() if new in read_again}
    of = source_keys(list(r.moves.names), image_sample_keys(base.ledger))
    r.counts["renamed"] = sum(k not in gone for k in of)


def _with_predictions_recorded(
    r: _Run, base: Pool, diff: LedgerDiff, upgraded: pd.DataFrame
) -> pd.DataFrame:
    """`upgraded` (the ledger rows a run carries with their content hash) with the rows of the
    unchanged images whose predictions file an older datapool did not record (`_recut`), that
    identity in them: recorded once, so that a later change is seen."""
    if not r.cut_from:
        return upgraded
    import pandas as pd

    known = set(upgraded["key"].tolist())
    more = base.ledger.loc[base.ledger["key"].isin(set(r.cut_from) - known)]
    touched = diff.touched.set_index("key")
    rows = pd.concat([upgraded, more], ignore_index=True)
    # a touched file's carried row has its new mtime: keep it
    at = rows["key"].isin(set(touched.index))
    if at.any():
        rows.loc[at, "mtime_ns"] = touched["mtime_ns"].reindex(rows.loc[at, "key"]).to_numpy()
    rows["predictions"] = [r.cut_from.get(k, p) for k, p in zip(rows["key"], rows["predictions"])]
    return rows.astype(upgraded.dtypes)


def _crop_work(r: _Run, todo: pd.DataFrame) -> CropSpec:
    """Crop selection: the boxes of the images to process (lightly.object_boxes; a video's
    frames are read by its decoder), and the identity of each one's predictions (r.cut_from:
    an ETag as listed, before the file is read, or the hash of the bytes read; a video's, its
    frames' files before it is decoded). Every image is decoded, one without objects too: a
    damaged one is skipped with its reason, never recorded as read."""
    from datapool.lightly import object_boxes

    assert r.cfg.crops is not None
    task = r.cfg.crops
    images = todo.loc[todo["kind"] == "image", "key"].tolist()
    videos = [(k, "video") for k in todo.loc[todo["kind"] == "video", "key"].tolist()]
    read = _reader(r)
    identities: dict[str, str] = {}

    def reader(path: str) -> bytes | None:
        data = read(path)
        identities[path] = predictions_identity(data)  # what each image is cut from
        return data

    # one read per image (a GET each from S3), before decoding starts: a phase of its own
    with r.progress.phase("predictions", unit="files") as ph:
        files = _prediction_files(r)  # listed before any file is read
        ph.set_total(len(images) + files.unread(videos))
        boxes, r.no_objects, r.boxes_left_out = object_boxes(
            reader, task, images, r.listed, ph.advance
        )
        r.cut_from.update(zip([k for k, _ in videos], files.identities(videos, ph.advance)))
    for key in images:
        path = predictions_path(task, key)
        told = files.listed_identity(path)
        r.cut_from[key] = told if told and told.startswith(ETAG) else identities[path]
    spec = {k: tuple(v) for k, v in boxes.items()}
    return CropSpec(spec, r.cfg.crop_padding, task, _reader(r))


def _image_keys(r: _Run, todo: pd.DataFrame) -> set[str]:
    """The images of the pool's ledger and of this run: a crop may not take one's name."""
    return image_sample_keys(r.session.pool.ledger) | set(
        todo.loc[todo["kind"] == "image", "key"].tolist()
    )


def _count_crops(
    r: _Run, crops: CropSpec, results: Any, status: dict[str, tuple[str, int]]
) -> None:
    """Crop selection's counts: the boxes left out when cut (outside the image ...), the images
    read whole that gave no crop (every box left out) among those without objects, and the video
    frames kept that had no box."""
    frames = 0
    videos: list[tuple[str, str]] = []  # (video, its first frame kept) of videos with no crop
    # images without objects, decoded to know they read: one skipped is counted as skipped
    r.no_objects = [x for x in r.no_objects if status.get(x["key"], ("",))[0] == STATUS_OK]
    unboxed = {x["key"] for x in r.no_objects}
    for key, (state, _) in status.items():
        if state != STATUS_OK or key not in results.dropped or key in unboxed:
            continue
        r.boxes_left_out += results.dropped[key]
        r.boxes_clipped += results.clipped.get(key, [])
        if key in crops.boxes:
            frames += results.without.get(key, 0)  # an animation's frames after its first
        if key in crops.boxes and not results.rows.get(key):
            r.no_objects.append({"key": key, "reason": "every box was left out"})
        elif key not in crops.boxes:
            frames += results.without.get(key, 0)
            none_filed = key in results.unfiled and results.unfiled[key].filed == 0
            if not results.rows.get(key) and key in results.first_without and not none_filed:
                videos.append((key, results.first_without[key]))  # (else _count_unfiled's)
    unfiled = _count_unfiled(r, results.unfiled, status)
    r.counts.update(
        images_without_objects=len(r.no_objects),
        frames_without_objects=frames - unfiled,
        frames_without_predictions=unfiled,
        boxes_left_out=len(r.boxes_left_out),
        boxes_clipped=len(r.boxes_clipped),
    )
    images = len(set(crops.boxes) | {x["key"] for x in r.no_objects})
    where = (r.cfg.predictions_dir or PREDICTIONS).rstrip("/")
    for note in _no_objects_notes(r.cfg.crops or "", where, r.no_objects, videos, images):
        r.warn(note)
    if r.boxes_clipped:
        first, n = r.boxes_clipped[0], len(r.boxes_clipped)
        what = (
            "box of task {} reaches more than a pixel past its picture and was cut to its part"
            if n == 1
            else "boxes of task {} reach more than a pixel past their picture and were cut to "
            "their part"
        ).format(repr(r.cfg.crops))
        r.warn(
            f"{n} {what} inside (first: {first['crop']}: "
            f"{first['reason']}); many such boxes mean they were written otherwise (x0, y0, x1, "
            "y1; another scale; the picture unturned): Lightly's bbox is [x, y, width, height] "
            f"in pixels of the picture as shown; the report lists {'it' if n == 1 else 'them'} "
            "(crops.boxes_clipped)"
        )
    if r.boxes_left_out:
        first = r.boxes_left_out[0]
        n = len(r.boxes_left_out)
        r.warn(
            f"{n} {'box' if n == 1 else 'boxes'} of task {r.cfg.crops!r} "
            f"{'was' if n == 1 else 'were'} left out (first: "
            f"{first['crop']}: {first['reason']}); the report lists {'it' if n == 1 else 'them'} "
            "(crops.boxes_left_out)"
        )


def _count_unfiled(r: _Run, unfiled: dict[str, Unfiled], status: dict[str, tuple[str, int]]) -> int:
    """Crop selection: the video frames kept that have no predictions file, told apart from
    those whose file lists no box (no objects). Predictions written for some frames only
    (`datapool predict --fps 5`, Lightly's for a subset) and a run that keeps others (no --fps)
    gave crops of the frames that matched, and the rest passed for frames without objects. A
    video none of whose frames kept has a file, while files of its other frames are listed,
    stops the run (one line: nothing of it would be cut, and the ledger would record it cut);
    frames without a file among frames with one are counted and warned of, once."""
    found = {k: u for k, u in unfiled.items() if status.get(k, ("",))[0] == STATUS_OK}
    r.unfiled = [{"key": k, "frames": u.frames, "first": u.first} for k, u in found.items()]
    if not found:
        return 0
    task = r.cfg.crops or ""
    where = (r.cfg.predictions_dir or PREDICTIONS).rstrip("/")
    listed = _prediction_files(r).frames  # video -> {frame number: path}, of every frame
    other = [k for k in found if listed.get(k)]
    for key in other:
        if found[key].filed == 0:
            first = predictions_path(task, found[key].first, where)
            raise ConfigError(
                f"crops: none of the {counted(found[key].frames, 'frame')} of {key} this run "
                f"keeps has a predictions file for task {task!r} (first looked for: {first}), "
                f"but {counted(len(listed[key]), 'other frame')} of it "
                f"{'has' if len(listed[key]) == 1 else 'have'} one: {FRAMES_ELSEWHERE}"
            )
    n = sum(u.frames for u in found.values())
    key = (other or list(found))[0]
    path = predictions_path(task, found[key].first, where)
    fix = (
        f"other frames of {key} have one: {FRAMES_ELSEWHERE}"
        if other
        else "they give no crops, and the first run after their predictions files are "
        "written (by Lightly's frame names) cuts them"
    )
    r.warn(
        f"{counted(n, 'video frame')} this run keeps {'has' if n == 1 else 'have'} no "
        f"predictions file for task {task!r}, which is not a frame without objects (first: "
        f"{found[key].first}, looked for {path}); {fix}; the report lists "
        f"{'it' if n == 1 else 'them'} (crops.frames_without_predictions)"
    )
    return n


# The likely fix for a video's frames kept without a predictions file while its other frames
# have one: the predictions were made at another --fps or --frame-stride (datapool predict's).
FRAMES_ELSEWHERE = (
    "predictions were written for other frames: give the --fps/--frame-stride they were made "
    "with (datapool predict's), or write files for the frames this run keeps"
)


def _no_objects_notes(
    task: str,
    where: str,
    no_objects: list[dict[str, str]],
    videos: list[tuple[str, str]],
    n: int,
) -> list[str]:
    """Crop selection's warnings for files that gave no crop for want of their predictions: the
    images without a predictions file, those whose file is another image's, and the videos of
    which no frame kept had a box (those of which no frame kept had a file: _count_unfiled's
    warning). (An image whose file lists no box has no objects: no warning.) Each names the first and the file looked for: a misplaced folder or misnamed
    files must not pass for pictures without objects."""
    from datapool.lightly import NO_PREDICTIONS_FILE, PREDICTIONS_OF_ANOTHER, PREDICTIONS_SHARED

    notes = []
    later = "the first run after their predictions files are written cuts them"
    unfiled = [x for x in no_objects if x["reason"].startswith(NO_PREDICTIONS_FILE)]
    if unfiled:
        first = unfiled[0]["key"]
        notes.append(
            f"{len(unfiled)} of {n} image{'s' * (n != 1)} ha{'s' if len(unfiled) == 1 else 've'} no "
            f"predictions file for task {task!r} "
            f"(first: {first}, looked for {predictions_path(task, first, where)}): they give "
            f"no crops, and {later}; the report lists them (crops.images_without_objects)"
        )
    not_its = (PREDICTIONS_OF_ANOTHER, PREDICTIONS_SHARED)
    shared = [x for x in no_objects if x["reason"].startswith(not_its)]
    if shared:
        first, why = shared[0]["key"], shared[0]["reason"].partition(" (")[2][:-1]
        notes.append(
            f"{len(shared)} image{'s share their' if len(shared) != 1 else ' shares its'} predictions "
            "file with an image of the same name "
            f"and another extension (first: {first}: {why}): they give no crops; give them "
            "names of their own; the report lists them (crops.images_without_objects)"
        )
    if videos:
        key, frame = videos[0]
        notes.append(
            f"{len(videos)} video{'s' * (len(videos) != 1)} gave no crop: none of "
            f"{'their' if len(videos) != 1 else 'its'} frames kept has a box (first: "
            f"{key}, whose first frame kept was looked for in "
            f"{predictions_path(task, frame, where)}, by Lightly's frame name); {later}"
        )
    return notes


def _check_crop_mode(r: _Run, base: Pool) -> None:
    """A pool holds whole images and frames, or object crops of one task at one padding: a run
    that would add the other kind (or crops cut otherwise) is refused, naming the flags."""
    now = crop_mode(r.cfg.to_json())
    before = sorted(crop_modes(base.runs) - {now})
    if not before:
        return
    was = before[0]
    held = "whole images and video frames" if was == "" else f"object crops ({was})"
    want = "whole images and video frames" if now == "" else f"object crops ({now})"
    if was and now:
        want = f"object crops cut otherwise ({now})"
    give = "run without --crops" if was == "" else f"give {was}"
    raise ConfigError(
        f"pool {r.session.location} holds {held}; this run would add {want} beside them: "
        f"{give}, grow another pool, or rebuild this one with --process-all"
    )


def _picked_boxes(cands: Candidates, picks: Picks) -> dict[str, list[int]]:
    """Crop selection: each pick's pixels [x0, y0, x1, y1] in its image as shown."""
    from datapool.ingest import CROP_BOX

    boxes = cands.columns.get(CROP_BOX)
    if boxes is None:
        return {}
    return {cands.names[i]: list(boxes[i]) for i in picks.indices.tolist()}


def _crops_report(r: _Run, cands: Candidates, picks: Picks) -> dict[str, Any]:
    """Crop selection in the report: the task, the padding, each pick's pixels in its image
    (x0, y0, x1, y1 as shown), the images without objects and the boxes left out, with why, and
    the images cut again because their predictions file changed."""
    return {
        "task": r.cfg.crops,
        "padding": r.cfg.crop_padding,
        "picked_boxes": r.crop_rects,
        "images_without_objects": r.no_objects[:1000],
        "boxes_left_out": r.boxes_left_out[:1000],
        "boxes_clipped": r.boxes_clipped[:1000],
        "frames_without_predictions": r.unfiled[:1000],
        "images_recut": r.recut[:1000],
    }
