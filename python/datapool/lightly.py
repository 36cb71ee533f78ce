"""Readers for a source's `.lightly/predictions` and `.lightly/metadata` (Lightly's formats).

    cols, classes, missing = strategy_columns(read, strategies, cands.names)

`read(path)` returns a file's bytes, or None when it does not exist (the runner builds it from
the source's `read_bytes`, or from the `--predictions` / `--metadata` folders). Only the files of
the samples being processed are read, and only for the tasks and keys the strategies use, 8 at a
time (an S3 source makes one GET per file). Layout:
- `.lightly/predictions/tasks.json` (task names), `<task>/schema.json` (`task_type`:
  classification or object-detection, or keypoint-detection for PREDICTIONS and crops,
  `categories` [{id, name}]), then one JSON per sample at its name with `.json` for its
  extension (video frames by their frame name): {"file_name", "predictions": [{"category_id",
  "probabilities"} | {"category_id", "bbox", "score", "probabilities"?} | {"category_id",
  "keypoints", "score", "bbox"?}]}.
- `.lightly/metadata/schema.json`: [{name, path, defaultValue, valueDataType}], then one JSON
  per sample: {"file_name", "type", "metadata": {...}}; a video frame without a file of its own
  takes its video's.
Malformed JSON, an unknown category or a missing schema raise SourceError naming the file; a
sample without a file gets defaultValue (metadata) or no value (predictions: NaN scores, a zero
class row), with a reason in `missing`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from datapool.errors import ConfigError, SourceError
from datapool.naming import video_key_of
from datapool.scores import (
    CLASSIFICATION_SCORES,
    DETECTION_SCORES,
    classification_score,
    detection_score,
    object_count,
    object_frequency,
)
from datapool.strategies import (
    Balance,
    Metadata,
    Predictions,
    Scores,
    SelectionStrategy,
    column_name,
)

Reader = Callable[[str], "bytes | None"]
PREDICTIONS = ".lightly/predictions"
METADATA = ".lightly/metadata"
# The task of the Lightly Worker's own detector (`pretagging: True`), which a run does not run
# (`datapool predict` runs the user's own ONNX detector and writes its predictions as a task).
PRETAGGING = "lightly_pretagging"
# The task types of Lightly's prediction format: one that a use of it does not read is named so.
LIGHTLY_TASK_TYPES = (
    "classification",
    "object-detection",
    "semantic-segmentation",
    "instance-segmentation",
    "keypoint-detection",
)


def _json(read: Reader, path: str, required: bool = True) -> Any:
    data = read(path)
    if data is None:
        if required:
            where = "--predictions" if "predictions" in path else "--metadata"
            raise SourceError(
                f"{path} is missing (needed by the selection strategies); write Lightly's files "
                f"there, in the source, or give the folder that holds them with {where} DIR"
            )
        return None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None


def _docs(read: Reader, paths: Sequence[str], threads: int = 8) -> Iterator[Any]:
    """The parsed JSON of each of `paths` (None where missing), in order, `threads` reads at a
    time; the first error (in order) raises."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(paths), 1024):  # bounded: a chunk's documents at a time
            yield from pool.map(lambda p: _json(read, p, False), paths[start : start + 1024])


def sample_json(name: str) -> str:
    """A sample's per-file JSON name: its name with `.json` for its extension."""
    stem = name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name
    return stem + ".json"


def predictions_folder(task: str, root: str = PREDICTIONS) -> str:
    """The folder of `task`'s predictions files: `.lightly/predictions/<task>`; `root` for the
    folder a message names (`--predictions DIR`)."""
    return f"{root}/{task}"


def predictions_path(task: str, name: str, root: str = PREDICTIONS) -> str:
    """The predictions file of sample `name` (an image's key, or a video frame's name) for
    `task`: `.lightly/predictions/<task>/<name with .json for its extension>`; `root` for the
    folder a message names (`--predictions DIR`)."""
    return f"{predictions_folder(task, root)}/{sample_json(name)}"


# A video frame's predictions file, by Lightly's frame name `{stem}-{index}-{ext}.json`.
_FRAME_FILE = re.compile(r"^(.*)-(\d+)-([^/.-]+)\.json$")


def frame_files(paths: Iterable[str], task: str) -> dict[str, dict[str, str]]:
    """The video frames' predictions files among `paths` (of files under `task`'s folder), by
    video: {video key: {frame number as written: path}}. A file named as a frame of a video
    is counted as that video's whether or not the video has such a frame (crop selection
    re-cuts a video when any of them changes: a file it would not read changes nothing else)."""
    head = predictions_folder(task) + "/"
    out: dict[str, dict[str, str]] = {}
    for path in paths:
        m = _FRAME_FILE.match(path[len(head) :]) if path.startswith(head) else None
        if m is not None:
            out.setdefault(f"{m.group(1)}.{m.group(3)}", {})[m.group(2)] = path
    return out


def strategy_columns(
    read: Reader,
    strategies: Sequence[SelectionStrategy],
    names: Sequence[str],
    images: Collection[str] = (),
    notes: list[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], list[dict[str, str]]]:
    """The candidate columns (datapool.candidates) the strategies need, their class names, and
    a reason per sample that had no file. `images` (the source's images) tells whose a per-file
    JSON is where two images of one name share it (`a.jpg`, `a.png`: `a.json`): an image it is
    not for (its `file_name` names the other, or does not say) has no file. `notes` gets a
    warning where a score is 0 for every sample for want of what it is computed from."""
    columns: dict[str, np.ndarray] = {}
    classes: dict[str, list[str]] = {}
    missing: list[dict[str, str]] = []
    tasks = sorted({s.input.task for s in strategies if isinstance(s.input, (Scores, Predictions))})
    for task in tasks:
        want = [s.input for s in strategies if isinstance(s.input, (Scores, Predictions))]
        wanted = [w for w in want if w.task == task]
        _task_columns(read, task, wanted, names, columns, classes, missing, images, notes)
    # Lightly's computed metadata (lightly.sharpness, ...) is measured from the pixels as they are
    # decoded (ingest/lightly_metrics.py), never read from .lightly/metadata
    keys = sorted(
        {s.input.key for s in strategies if isinstance(s.input, Metadata) and not s.input.computed}
    )
    if keys:
        _metadata_columns(read, keys, names, columns, missing, images)
    return columns, classes, missing


def lightly_fields_not_read(read: Reader, strategies: Sequence[SelectionStrategy]) -> str | None:
    """A warning when .lightly/metadata/schema.json declares a field (by path or name) under the
    key of Lightly's computed metadata that the strategies use (`lightly.sharpness`): datapool
    measures that from the pixels, as the Lightly Worker computes it (Lightly reserves the
    top-level key `lightly`), and never reads the user's value. None otherwise, or without a
    schema."""
    used = {s.input.key for s in strategies if isinstance(s.input, Metadata) and s.input.computed}
    if not used:
        return None
    schema = _json(read, f"{METADATA}/schema.json", required=False)
    if not isinstance(schema, list):
        return None
    declared = sorted(
        {
            str(f.get(k))
            for f in schema
            if isinstance(f, dict)
            for k in ("path", "name")
            if str(f.get(k)) in used
        }
    )
    if not declared:
        return None
    return (
        f"{METADATA}/schema.json declares {', '.join(declared)}, which the strategies use: "
        "that is Lightly's computed metadata (Lightly reserves the top-level key 'lightly'), "
        "measured here from the pixels as the Lightly Worker computes it; the values in "
        "your metadata files are not read (rename the field to select on them)"
    )


def fill_pool_columns(
    read: Reader,
    strategies: Sequence[SelectionStrategy],
    names: Sequence[str],
    columns: dict[str, np.ndarray],
    classes: dict[str, list[str]],
) -> list[int]:
    """BALANCE counts the pool's classes: the pool's samples count as selected. The pool keeps
    the inputs of the samples it selected under strategies (pool/inputs.py); samples selected
    without this BALANCE (diversity alone, another task) have none stored, and are read here
    from the .lightly files like the candidates, so that their classes count too. `columns`
    and `classes` (the pool's stored inputs, aligned with `names`) are filled in place; only
    rows without a class are read. Returns those rows (the run stores what they read, so that
    the next run need not read them again)."""
    wanted = [s for s in strategies if isinstance(s.strategy, Balance)]
    todo: set[int] = set()
    for s in wanted:
        col = columns.get(column_name(s.input) or "")
        if col is None:
            todo.update(range(len(names)))
        elif col.dtype == object or col.ndim == 1:
            todo.update(i for i, v in enumerate(col.tolist()) if v is None or v != v)
        else:
            todo.update(np.flatnonzero(np.nan_to_num(col).sum(axis=1) == 0).tolist())
    if not todo:
        return []
    rows = sorted(todo)
    got, got_classes, _ = strategy_columns(read, wanted, [names[i] for i in rows])
    for s in wanted:
        key = column_name(s.input) or ""
        new = got[key]
        if new.ndim == 1:  # categorical metadata: a value per sample
            col = columns.get(key)
            out = np.full(len(names), None, object) if col is None else col.astype(object)
            out[rows] = new
            columns[key] = out
            continue
        have = classes.get(key, [])
        union = have + [c for c in got_classes[key] if c not in have]
        out = np.zeros((len(names), len(union)))
        if key in columns:
            out[:, : len(have)] = np.nan_to_num(columns[key])
        at = [union.index(c) for c in got_classes[key]]
        out[np.ix_(rows, at)] = new
        columns[key], classes[key] = out, union
    return rows


def missing_notes(
    missing: Sequence[dict[str, str]],
    n: int,
    predictions: str = PREDICTIONS,
    metadata: str = METADATA,
) -> list[str]:
    """One warning per kind of missing input (`strategy_columns`' `missing`): how many of the `n`
    candidates lack it, the first one and the file that was looked for (under `predictions` and
    `metadata`: the folders a run reads, --predictions DIR and --metadata DIR where given), and
    what it means for the selection. A frame's file is named by Lightly's frame name, whose number
    is padded to the digits of the video's frame count: a file named otherwise is not found."""
    groups: dict[str, list[str]] = {}
    said: dict[str, str] = {}  # a group's first reason, whole
    for m in missing:
        reason = m["reason"].split(" (")[0]
        groups.setdefault(reason, []).append(m["sample"])
        said.setdefault(reason, m["reason"])
    notes = []
    for reason, samples in groups.items():
        first, one = samples[0], len(samples) == 1
        task = re.match(r"(no|empty) predictions for task (['\"])(.*?)\2", reason)
        if reason.endswith(" of its own"):  # a file of its name, but another image's
            where = said[reason].split(" (", 1)[1][:-1]
            effect = _no_value(one) if task else _default(one)
            effect += "; a file_name that names the image tells datapool whose a file is"
        elif task:
            where = predictions_path(task[3], first, predictions)
            where = f"looked for {where}" if task[1] == "no" else f"{where} lists none"
            effect = _no_value(one) + (_frames_hint(samples) if task[1] == "no" else "")
        elif reason.startswith("no value for metadata"):
            where = f"{metadata}/{sample_json(first)} has no such field, and schema.json no "
            where += "defaultValue for it"
            effect = _no_value(one)
        else:
            where = f"looked for {metadata}/{sample_json(first)}"
            video = video_key_of(first)
            where += f" or its video's {metadata}/{sample_json(video)}" if video else ""
            effect = _no_value(one) if "no defaultValue" in reason else _default(one)
        has, them = ("has", "it") if one else ("have", "them")
        notes.append(
            f"{len(samples)} of {n} candidates {has} {reason.split(' (')[0]} "
            f"(first: {first}, {where}): {effect}; the report lists {them} "
            "(strategy_inputs_missing)"
        )
    return notes


def _frames_hint(samples: Sequence[str]) -> str:
    """For the candidates without a predictions file, where video frames are among them: how
    many, the first, and the likely fix (predictions written for some frames only, as
    `datapool predict --fps 5` writes them, read by a run that keeps others)."""
    frames = [s for s in samples if video_key_of(s)]
    if not frames:
        return ""
    n = len(frames)
    return (
        f"; {n} of them {'is a video frame' if n == 1 else 'are video frames'} (first: "
        f"{frames[0]}): where predictions were written for other frames, give the "
        "--fps/--frame-stride they were made with"
    )


def _no_value(one: bool) -> str:
    if one:
        return "without a value it passes no THRESHOLD and gets no weight under WEIGHTS"
    return "without a value they pass no THRESHOLD and get no weight under WEIGHTS"


def _default(one: bool) -> str:
    return "it takes the schema's defaultValue" if one else "they take the schema's defaultValue"


# The task types the strategies read, and those crop selection cuts boxes from (Lightly's
# keypoint-detection predictions have an optional `bbox`, [x, y, width, height] as a detection's).
# A keypoint-detection task gives PREDICTIONS (each prediction one object of its category_id, as
# a detection's) but no SCORES: datapool computes none from keypoints.
STRATEGY_TASKS = ("classification", "object-detection", "keypoint-detection")
BOX_TASKS = ("object-detection", "keypoint-detection")


def _schema(
    read: Reader, task: str, given: str = "input.task", kinds: Sequence[str] = STRATEGY_TASKS
) -> tuple[str, dict[int, int], list[str]]:
    tasks = _json(read, f"{PREDICTIONS}/tasks.json")
    if not isinstance(tasks, list) or task not in tasks:
        listed = ", ".join(map(str, tasks)) if isinstance(tasks, list) else "not a list"
        pretagging = (
            f"; {PRETAGGING} is the Lightly Worker's own detector (its pretagging), which "
            "a run does not run: write your detector's predictions as a task of "
            f"{PREDICTIONS} and name that task (`datapool predict SOURCE --model MODEL.onnx "
            "--out DIR --task NAME` writes them from an ONNX detector or classifier)"
            if task == PRETAGGING
            else ""
        )
        raise SourceError(
            f"{PREDICTIONS}/tasks.json does not list the task {task!r} ({given}; it lists: "
            f"{listed or 'none'}){pretagging}"
        )
    path = f"{PREDICTIONS}/{task}/schema.json"
    schema = _json(read, path)
    # task_description: the key in Lightly's older docs.
    kind = (
        schema.get("task_type", schema.get("task_description"))
        if isinstance(schema, dict)
        else None
    )
    if kind not in kinds:
        what = (
            f"; datapool reads no {kind} task here: give a task of those types"
            if kind in LIGHTLY_TASK_TYPES
            else ""
        )
        raise SourceError(
            f"{path}: task_type must be classification or object-detection (keypoint-detection "
            f"for PREDICTIONS; crop selection: {' or '.join(BOX_TASKS)}), got {kind!r}{what}"
        )
    cats = sorted(schema.get("categories") or [], key=lambda c: c.get("id", 0))
    if not cats:
        raise SourceError(f"{path}: no categories")
    return str(kind), {int(c["id"]): j for j, c in enumerate(cats)}, [str(c["name"]) for c in cats]


def check_inputs(read: Reader, strategies: Sequence[SelectionStrategy]) -> None:
    """Raise SourceError where the strategies' .lightly inputs cannot be read, before any file
    is decoded: a task tasks.json does not list (or without a usable schema.json), a score the
    task's type does not have, a metadata schema.json that is missing or lacks a field; and
    ConfigError for a BALANCE target class the task's categories lack. The run found these only
    after decoding and embedding every new file, and a dry run not at all."""
    inputs = [s.input for s in strategies if isinstance(s.input, (Scores, Predictions))]
    cats = {
        task: _task_schema(read, task, [w for w in inputs if w.task == task])[2]
        for task in sorted({w.task for w in inputs})
    }
    for s in strategies:
        if isinstance(s.strategy, Balance) and isinstance(s.input, Predictions):
            unknown = sorted(set(s.strategy.target) - set(cats[s.input.task]), key=str)
            if unknown:  # as select/terms.py says it once the candidates are embedded
                raise ConfigError(
                    f"BALANCE target class {unknown[0]!r} is not a class of "
                    f"{column_name(s.input)} (classes: {', '.join(cats[s.input.task][:20])})"
                )
    keys = sorted(
        {s.input.key for s in strategies if isinstance(s.input, Metadata) and not s.input.computed}
    )
    if keys:
        _metadata_fields(read, keys)


def _task_schema(
    read: Reader, task: str, wanted: Sequence[Scores | Predictions]
) -> tuple[str, dict[int, int], list[str]]:
    """`task`'s schema (_schema), checked to have the scores `wanted` asks of it."""
    kind, index, cats = _schema(read, task)
    for w in wanted:
        if isinstance(w, Scores) and kind == "keypoint-detection":
            raise SourceError(
                f"task {task!r} (keypoint-detection) has no score {w.score!r}: datapool computes "
                "no scores from keypoints; select on its PREDICTIONS (CLASS_DISTRIBUTION, "
                "CATEGORY_COUNT: each prediction is one object of its category_id), or on the "
                "SCORES of a classification or object-detection task"
            )
        if isinstance(w, Scores):
            allowed = CLASSIFICATION_SCORES if kind == "classification" else DETECTION_SCORES
            if w.score not in allowed:
                raise SourceError(
                    f"task {task!r} ({kind}) has no score {w.score!r} (scores: {', '.join(allowed)})"
                )
    return kind, index, cats


def _task_columns(
    read: Reader,
    task: str,
    wanted: list[Scores | Predictions],
    names: Sequence[str],
    columns: dict[str, np.ndarray],
    classes: dict[str, list[str]],
    missing: list[dict[str, str]],
    images: Collection[str] = (),
    notes: list[str] | None = None,
) -> None:
    kind, index, cats = _task_schema(read, task, wanted)
    C = len(cats)
    n = len(names)
    dist, count = np.zeros((n, C)), np.zeros((n, C))
    scores = {w.score: np.full(n, np.nan) for w in wanted if isinstance(w, Scores)}
    paths = [predictions_path(task, name) for name in names]
    sharing = _sharing(names, images)
    with_probabilities = False
    for i, (name, path, doc) in enumerate(zip(names, paths, _docs(read, paths))):
        if doc is None:
            missing.append({"sample": name, "reason": f"no predictions for task {task!r}"})
            continue
        not_its = _not_its_own(doc, name, path, sharing, images) if name in images else None
        if not_its:
            reason = f"no predictions for task {task!r} of its own ({not_its})"
            missing.append({"sample": name, "reason": reason})
            continue
        preds = doc.get("predictions") if isinstance(doc, dict) else None
        if not isinstance(preds, list):
            raise SourceError(f"{path}: 'predictions' must be a list")
        if not preds and kind == "classification":  # no prediction: no score, no class
            missing.append({"sample": name, "reason": f"empty predictions for task {task!r}"})
            continue
        boxes, kinds = [], []
        for p in preds:
            k, probs, score = _prediction(path, p, index, C, task)
            with_probabilities = with_probabilities or probs is not None
            dist[i] += probs if probs is not None else np.eye(C)[k]
            count[i, k] += 1
            boxes.append((score, None if probs is None else probs.tolist()))
            kinds.append(k)
        for s, col in scores.items():
            if kind == "classification":
                col[i] = classification_score(s, boxes[0][1]) if boxes[0][1] else 0.0
            elif s == "object_frequency":  # Lightly's count, scaled over the run's samples below
                col[i] = object_count(kinds)
            else:
                col[i] = detection_score(s, boxes)
    if "object_frequency" in scores and kind != "classification":
        scores["object_frequency"] = object_frequency(scores["object_frequency"])
    predicted = int((count.sum(axis=1) > 0).sum())
    if predicted and not with_probabilities and notes is not None:
        # The uncertainty scores come from the predictions' `probabilities` (optional in
        # Lightly's format): without them every sample scores 0, as in Lightly's scorers, and a
        # WEIGHTS strategy on such a score selects by nothing.
        what, other = "with predictions", ""
        if kind != "classification":
            what = "with boxes"
            other = ", or select on objectness_least_confidence or object_frequency"
        for s in [s for s in scores if s in CLASSIFICATION_SCORES]:
            notes.append(
                f"SCORES {task}:{s} is 0 for every sample: none of the {predicted} {what} "
                "has `probabilities` in its predictions, which the uncertainty scores are "
                f"computed from (as Lightly's are); write them{other}"
            )
    for s, col in scores.items():
        columns[f"scores:{task}:{s}"] = col
    for name, mat in (("CLASS_DISTRIBUTION", dist), ("CATEGORY_COUNT", count)):
        key = column_name(Predictions(task, name)) or ""
        columns[key] = mat
        classes[key] = cats


# How far a prediction's probabilities may sum from 1 (rounded figures) before it is an error.
PROBABILITY_SUM_TOLERANCE = 0.05


def _prediction(
    path: str, p: Any, index: dict[int, int], C: int, task: str
) -> tuple[int, np.ndarray | None, float]:
    """One prediction singleton: its class index, its probabilities over the C classes
    (as written, rounded figures allowed; None when it has none) and its score (1 when it has none). Values
    that are not probabilities (NaN, negative, logits) raise SourceError naming the file."""
    cid = p.get("category_id") if isinstance(p, dict) else None
    if cid not in index or isinstance(cid, bool):
        what = "an integer id" if not isinstance(cid, int) or isinstance(cid, bool) else "an id"
        raise SourceError(
            f"{path}: category_id must be {what} of the categories in {PREDICTIONS}/{task}/"
            f"schema.json ({', '.join(map(str, sorted(index)))}), got {cid!r}"
        )
    probs, score = p.get("probabilities"), p.get("score", 1.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
        raise SourceError(f"{path}: score must be a number in 0..1, got {score!r}")
    if probs is None:
        return index[cid], None, float(score)
    if not isinstance(probs, list) or (len(probs) != C and not (C == 2 and len(probs) == 1)):
        n = len(probs) if isinstance(probs, list) else probs
        raise SourceError(f"{path}: {n} probabilities for {C} categories")
    ok = all(not isinstance(v, bool) and isinstance(v, (int, float)) for v in probs)
    row = np.asarray(probs, float) if ok else np.full(len(probs), np.nan)
    if len(row) == 1:
        row = np.array([row[0], 1.0 - row[0]])
    if (
        not (np.all(row >= 0) and np.all(row <= 1))
        or abs(row.sum() - 1) > PROBABILITY_SUM_TOLERANCE
    ):
        raise SourceError(
            f"{path}: probabilities must be numbers in 0..1 that sum to 1 (a softmax, not "
            f"logits), got {probs!r}"
        )
    return index[cid], row, float(score)


def _metadata_columns(
    read: Reader,
    keys: list[str],
    names: Sequence[str],
    columns: dict[str, np.ndarray],
    missing: list[dict[str, str]],
    images: Collection[str] = (),
) -> None:
    fields = _metadata_fields(read, keys)
    numeric = {k: str(fields[k].get("valueDataType", "")).startswith("NUMERIC") for k in keys}
    out = {
        k: (np.full(len(names), np.nan) if numeric[k] else np.full(len(names), None, object))
        for k in keys
    }
    videos: dict[str, Any] = {}  # a video's file, read once for all its frames
    paths = [f"{METADATA}/{sample_json(name)}" for name in names]
    sharing = _sharing(names, images)
    for i, (name, path, doc) in enumerate(zip(names, paths, _docs(read, paths))):
        not_its = (
            _not_its_own(doc, name, path, sharing, images, "metadata")
            if doc and name in images
            else None
        )
        if not_its:
            missing.append({"sample": name, "reason": f"no metadata file of its own ({not_its})"})
            doc = None
        video = video_key_of(name)
        if doc is None and video is not None:
            if video not in videos:
                videos[video] = _json(read, f"{METADATA}/{sample_json(video)}", required=False)
            doc = videos[video]
        meta = doc.get("metadata", {}) if isinstance(doc, dict) else {}
        if doc is None and not not_its:  # a field without a defaultValue gets no value
            bare = ", ".join(repr(k) for k in keys if fields[k].get("defaultValue") is None)
            reason = f"no metadata file, and no defaultValue for {bare}" if bare else ""
            missing.append(
                {"sample": name, "reason": reason or "no metadata file (defaultValue used)"}
            )
        for k in keys:
            v: Any = meta
            for part in str(fields[k]["path"]).split("."):
                v = v.get(part) if isinstance(v, dict) else None
            if v is None:
                v = fields[k].get("defaultValue")
            if v is None and doc is not None:  # (without a file: missing already says so)
                missing.append({"sample": name, "reason": f"no value for metadata {k!r}"})
            out[k][i] = _metadata_value(v, numeric[k], name, k)
    for k in keys:
        columns[f"metadata:{k}"] = out[k]


def _metadata_fields(read: Reader, keys: Sequence[str]) -> dict[str, Any]:
    """The fields of .lightly/metadata/schema.json by path (and by name), checked to have `keys`."""
    path = f"{METADATA}/schema.json"
    schema = _json(read, path)
    if not isinstance(schema, list):
        raise SourceError(f"{path}: must be a list of {{name, path, defaultValue, valueDataType}}")
    fields = {}
    for f in schema:
        if isinstance(f, dict) and "path" in f:
            fields[str(f["path"])] = f
            fields.setdefault(str(f.get("name")), f)
    for k in keys:
        if k not in fields:
            raise SourceError(f"{path}: no metadata field {k!r} (strategy input METADATA)")
    return fields


def _metadata_value(v: Any, numeric: bool, name: str, key: str) -> Any:
    if v is None:
        return np.nan if numeric else None
    if numeric:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SourceError(
                f"{METADATA}/{sample_json(name)}: {key} must be a finite number (its "
                f"valueDataType is NUMERIC), got {v!r}"
            )
        return float(v)
    return v


# A box as read: its index in the file's predictions, and x, y, width, height in pixels.
Box = tuple[int, float, float, float, float]


NO_PREDICTIONS_FILE = "no predictions file"
PREDICTIONS_OF_ANOTHER = "its predictions file is another image's"
PREDICTIONS_SHARED = "its predictions file is shared"


def object_boxes(
    read: Reader,
    task: str,
    keys: Sequence[str],
    images: Collection[str] = (),
    advance: Callable[[int], None] | None = None,
) -> tuple[dict[str, list[Box]], list[dict[str, str]], list[dict[str, str]]]:
    """The boxes of the object-detection (or keypoint-detection) `task` for each image of
    `keys` (crop selection): per key its boxes [(index in the file's predictions, x, y, w, h)]
    in pixels of the image as shown (EXIF orientation applied, as Lightly reads it); the keys
    without a file or without a box (`no_objects`: {"key", "reason"}); and the boxes left out
    before decoding (`dropped`: {"key", "crop", "reason"}: a width or height that is not above
    0). A task of another type, or a file that is not Lightly's format (a keypoint prediction
    without its optional bbox among them), raises SourceError.

    Images of one name with two extensions (`a.jpg`, `a.png`) share one predictions file
    (`a.json`): its boxes are those of the image of `images` (the source's images) that
    its `file_name` names, and an image it does not name has none (its reason says why).
    `advance(1)` is called as each file is read (for a progress line: from S3, a GET each)."""
    index = detection_task(read, task)
    boxes: dict[str, list[Box]] = {}
    no_objects: list[dict[str, str]] = []
    dropped: list[dict[str, str]] = []
    paths = [predictions_path(task, key) for key in keys]
    sharing = _sharing(keys, images)
    for key, path, doc in zip(keys, paths, _docs(read, paths)):
        if advance is not None:
            advance(1)
        if doc is None:
            no_objects.append({"key": key, "reason": f"{NO_PREDICTIONS_FILE} ({path})"})
            continue
        not_its = _not_its_own(doc, key, path, sharing, images)
        if not_its:
            no_objects.append({"key": key, "reason": not_its})
            continue
        got, why = _doc_boxes(path, doc, index, task, key, dropped)
        if got:
            boxes[key] = got
        else:
            no_objects.append({"key": key, "reason": f"{why} in {path}"})
    return boxes, no_objects, dropped


def _sharing(keys: Iterable[str], images: Collection[str]) -> dict[str, list[str]]:
    """The per-file JSON names of `keys` that two or more images of the source share (`a.jpg`
    and `a.png` both have `a.json`), each with the images that share it."""
    want = {sample_json(key) for key in keys}
    sharing: dict[str, list[str]] = {}
    for other in images:
        j = sample_json(other)
        if j in want:
            sharing.setdefault(j, []).append(other)
    return {j: found for j, found in sharing.items() if len(found) > 1}


def _not_its_own(
    doc: Any,
    key: str,
    path: str,
    sharing: dict[str, list[str]],
    images: Collection[str],
    kind: str = "predictions",
    exists: Callable[[str], bool] | None = None,
) -> str | None:
    """Why the per-file JSON `doc` at `path` (a `kind` file: predictions or metadata) is not
    image `key`'s (its `file_name` names another image of the source, or it is shared with
    another image of `key`'s name and does not say which it is for), or None where it is."""
    siblings = sharing.get(sample_json(key), [])
    named = _named(doc, key, siblings)
    if named is not None and named != key and (named in images or (exists and exists(named))):
        why = PREDICTIONS_OF_ANOTHER.replace("predictions", kind)
        return f"{why} ({path} is for {named}, its file_name)"
    if named != key and siblings:
        said = doc.get("file_name") if isinstance(doc, dict) else None
        return (
            f"{PREDICTIONS_SHARED.replace('predictions', kind)} ({path} is also another "
            f"image's of its name, and its file_name, {said!r}, does not say which)"
        )
    return None


def _named(doc: Any, key: str, siblings: Sequence[str]) -> str | None:
    """The file a predictions file's `file_name` names, as a path in the source (a bare name is
    one in `key`'s folder; a longer path that ends with `key` or one of its `siblings`, the
    images that share its predictions file, is that one), or None when it names none."""
    name = doc.get("file_name") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        return None
    name = name[2:] if name.startswith("./") else name
    for k in (key, *siblings):
        if name.endswith("/" + k):  # an absolute path, or one with the bucket's prefix
            return k
    folder = key.rpartition("/")[0]
    return f"{folder}/{name}" if folder and "/" not in name else name


def detection_task(read: Reader, task: str) -> dict[int, int]:
    """The categories (id -> column) of `task`, checked to be a task whose predictions have
    boxes: object-detection, or keypoint-detection (each prediction's `bbox`)."""
    given = "--crops, or the EMBEDDINGS input's task"
    kind, index, _ = _schema(read, task, given, ("classification", *BOX_TASKS))
    if kind not in BOX_TASKS:
        raise SourceError(
            f"{PREDICTIONS}/{task}/schema.json: task {task!r} is a {kind} task; crop selection "
            "cuts out the boxes of an object-detection or keypoint-detection task"
        )
    return index


def frame_boxes(
    read: Reader, task: str, index: dict[int, int]
) -> Callable[[str, list[dict[str, str]]], list[Box] | None]:
    """The boxes of one video frame by its frame name (its `.lightly/predictions/<task>/` file
    is named by it, as Lightly names frames), boxes left out appended to the list given; no file:
    None (no box, but not a frame whose file lists none: the run counts and warns of those
    apart). For the decoders of crop selection (one read per frame they keep)."""

    def boxes(name: str, dropped: list[dict[str, str]]) -> list[Box] | None:
        path = predictions_path(task, name)
        doc = _json(read, path, required=False)
        return None if doc is None else _doc_boxes(path, doc, index, task, name, dropped)[0]

    return boxes


_NO_BOX_FROM_KEYPOINTS = (
    " (a keypoint-detection prediction's bbox is optional in Lightly's format, but crop "
    "selection cuts out the bbox: datapool does not make one from the keypoints, whose extent "
    "is not the object's; write each prediction's bbox)"
)


def _doc_boxes(
    path: str,
    doc: Any,
    index: dict[int, int],
    task: str,
    name: str,
    dropped: list[dict[str, str]],
) -> tuple[list[Box], str]:
    """The boxes of one predictions file of sample `name`; boxes with a width or height not
    above 0 are appended to `dropped`. With no box, why: 'no objects' or 'no usable box'."""
    from datapool.naming import crop_name

    preds = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(preds, list):
        raise SourceError(f"{path}: 'predictions' must be a list")
    got: list[Box] = []
    for i, p in enumerate(preds):
        # its category and score, checked; not its probabilities, which crops do not use (a
        # detector's per-class sigmoids need not sum to 1)
        _prediction(
            path,
            {**p, "probabilities": None} if isinstance(p, dict) else p,
            index,
            len(index),
            task,
        )
        bbox = p.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in bbox
            )
        ):
            raise SourceError(
                f"{path}: prediction {i}: bbox must be [x, y, width, height], four finite "
                f"numbers in pixels, got {bbox!r}"
                + (_NO_BOX_FROM_KEYPOINTS if bbox is None and "keypoints" in p else "")
            )
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            reason = "empty box (width or height not above 0)"
            dropped.append({"key": name, "crop": crop_name(name, i), "reason": reason})
            continue
        got.append((i, x, y, w, h))
    return got, ("no objects" if not preds else "no usable box")


# Pre-annotations for a labelling tool (`datapool export --pre-annotate TASK`): the task types
# whose predictions it takes, and what it takes of one prediction: its category's name, its box
# [x, y, width, height] in pixels of the picture as shown (None for a classification), and its
# score (a classification without one: the probability of its category; else None).
PRE_ANNOTATION_TASKS = ("object-detection", "classification")
Labelled = tuple[str, "tuple[float, float, float, float] | None", "float | None"]


def pre_annotation_task(read: Reader, task: str) -> tuple[str, dict[int, int], list[str]]:
    """`task`'s type, categories (id -> column) and category names, checked to be a task whose
    predictions a labelling tool takes as pre-annotations (PRE_ANNOTATION_TASKS)."""
    if read(f"{PREDICTIONS}/tasks.json") is None:
        raise SourceError(
            f"--pre-annotate {task}: {PREDICTIONS}/tasks.json is missing in the pool's source; "
            "write Lightly's predictions there, or give the folder that holds them with "
            "--predictions DIR"
        )
    kind, index, cats = _schema(read, task, "--pre-annotate", LIGHTLY_TASK_TYPES)
    if kind not in PRE_ANNOTATION_TASKS:
        raise SourceError(
            f"{PREDICTIONS}/{task}/schema.json: task {task!r} is a {kind} task; --pre-annotate "
            f"takes an {' or a '.join(PRE_ANNOTATION_TASKS)} task (boxes or a class per picture)"
        )
    return kind, index, cats


def pre_annotations(
    read: Reader,
    task: str,
    schema: tuple[str, dict[int, int], list[str]],
    names: Sequence[str],
    images: Collection[str],
    exists: Callable[[str], bool] | None = None,
) -> tuple[dict[str, list[Labelled]], list[dict[str, str]]]:
    """The predictions of `task` (its `schema`, pre_annotation_task) for each sample of `names`
    (an image's key, or a video frame's name: its file is named by it, as Lightly names frames),
    by name; and the samples without a file of their own (`without`: {"name", "reason"}). An
    image of `images` whose file is another image's (`a.jpg` and `a.png` share `a.json`: its
    file_name says whose) has none. A file that is not Lightly's format raises SourceError
    naming it, as a run's reading does; a box whose width or height is not above 0 is left out
    (as crop selection leaves it out). `exists(key)`: whether the source holds a file `images`
    lacks (one an export's pool never listed: its filters left it out), asked only of a file a
    predictions file's file_name names in place of the sample's own."""
    kind, index, cats = schema
    paths = [predictions_path(task, name) for name in names]
    sharing = _sharing([n for n in names if n in images], images)
    got: dict[str, list[Labelled]] = {}
    without: list[dict[str, str]] = []
    for name, path, doc in zip(names, paths, _docs(read, paths)):
        if doc is None:
            without.append({"name": name, "reason": f"{NO_PREDICTIONS_FILE} ({path})"})
            continue
        not_its = _not_its_own(doc, name, path, sharing, images, exists=exists)
        not_its = not_its if name in images else None
        if not_its:
            without.append({"name": name, "reason": not_its})
            continue
        preds = doc.get("predictions") if isinstance(doc, dict) else None
        if not isinstance(preds, list):
            raise SourceError(f"{path}: 'predictions' must be a list")
        out: list[Labelled] = []
        if kind == "object-detection":
            for i, x, y, w, h in _doc_boxes(path, doc, index, task, name, [])[0]:
                p = preds[i]
                score = p.get("score")
                out.append((cats[index[p["category_id"]]], (x, y, w, h), _number(score)))
        else:
            for p in preds:
                col, probs, _ = _prediction(path, p, index, len(cats), task)
                score = _number(p.get("score"))
                if score is None and probs is not None:
                    score = float(probs[col])
                out.append((cats[col], None, score))
        got[name] = out
    return got, without


def _number(v: Any) -> float | None:
    return None if v is None else float(v)
