"""`datapool predict SOURCE --model MODEL.onnx --out DIR`: run the user's ONNX detector or
classifier (ingest/predictor.py) over the source's images and video frames, and write Lightly's
predictions format into DIR, the folder `datapool run --predictions DIR` reads (lightly.py):

    DIR/tasks.json            the task names: TASK added to those already there
    DIR/TASK/schema.json      {"task_type": "object-detection" | "classification",
                               "categories": [{"id", "name"}]}
    DIR/TASK/<name>.json      one per picture: {"file_name": name, "predictions": [...]}

A picture's name is its key (an image), or Lightly's frame name (`clip-007-mp4.png`, frame 7 of
a 100-frame `clip.mp4`) for the frames of a video or animation, as `datapool run` names them
(naming.py), so a run reads each frame's file. Pictures are decoded as a run decodes them
(ingest/decode.py: EXIF orientation and a video's rotation applied), and boxes are in pixels
of the picture as shown, as lightly.py reads them. `frame_stride` and `fps` keep the frames a
run with the same flags keeps (every frame by default). Files are decoded ahead on threads while
the model runs pictures in batches (ingest/predict_pipeline.py); what is written is what
predicting one picture at a time writes (`one_by_one`, the reference).

What an existing DIR holds is kept: tasks.json's other tasks, and TASK's files of pictures not
in this source. A TASK already there with another task type or other categories (another
model's) is refused, never overwritten. A local DIR inside a local SOURCE is refused unless a
hidden folder holds it (SOURCE/.lightly/predictions, where a run reads predictions without
--predictions): the listing of a run would count the files as the source's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool.config import PREDICT_BATCH_SIZE
from datapool.errors import ConfigError, DecodeError, SourceError
from datapool.lightly import predictions_path, sample_json
from datapool.specs import scheme_of

if TYPE_CHECKING:
    from datapool.config import RunConfig
    from datapool.ingest.predictor import Predictor
    from datapool.progress import Phase

_TASK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class PredictResult:
    """What `predict` wrote: the task, its type and classes, how the model was fed, the files
    read and pictures predicted, the boxes written (detection), and the files skipped
    ({"key", "reason"})."""

    out: Path
    task: str
    task_type: str
    classes: list[str]
    fed: str
    files: int = 0
    images: int = 0
    frames: int = 0
    boxes: int = 0
    without_boxes: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)  # tasks.json's other tasks, kept
    # the frames kept, as run's flags (" --fps 5"): a run given others reads frames without files
    frames_kept: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "task": self.task,
            "task_type": self.task_type,
            "classes": self.classes,
            "fed": self.fed,
            "files": self.files,
            "images": self.images,
            "frames": self.frames,
            "boxes": self.boxes,
            "without_boxes": self.without_boxes,
            "skipped": self.skipped,
            "other_tasks": self.merged,
            "run_flags": self.frames_kept.strip(),  # the frames kept, as run is to be given them
        }

    def lines(self, source: str) -> list[str]:
        """The summary `datapool predict` prints."""
        from datapool.naming import counted

        shown = ", ".join(self.classes[:8]) + (", ..." if len(self.classes) > 8 else "")
        out = [
            f"predicted {counted(self.files, 'file')}: {counted(self.images, 'image')}, "
            f"{counted(self.frames, 'video frame')}",
            f"task      {self.task} ({self.task_type}, {len(self.classes)} "
            f"{'class' if len(self.classes) == 1 else 'classes'}: "
            f"{shown}) in {self.out / self.task}",
            f"model     {self.fed}",
        ]
        if self.merged:
            out.append(
                f"kept      the other tasks of {self.out / 'tasks.json'}: {', '.join(self.merged)}"
            )
        if self.task_type == "object-detection":
            out.append(
                f"boxes     {self.boxes} ({counted(self.without_boxes, 'picture')} without one)"
            )
        if self.skipped:
            out.append(f"skipped   {counted(len(self.skipped), 'file')}, not predicted")
            out.extend(f"          {s['key']}: {s['reason']}" for s in self.skipped[:20])
        input_ = (
            f"input: {{type: PREDICTIONS, task: {self.task}, name: CLASS_DISTRIBUTION}}"
            if self.task_type == "classification"
            else f"--crops {self.task}, or input: {{type: SCORES, task: {self.task}, ...}}"
        )
        out.append(
            f"next      datapool run {source} --pool POOL --predictions {self.out}"
            f"{self.frames_kept} --selection FILE ({input_})"
        )
        return out


def default_task(model: str | os.PathLike[str]) -> str:
    """The task a model's predictions are written as without --task: its file's stem."""
    stem = Path(model).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).lstrip(".") or "predictions"


def predict(
    source: str,
    model: str,
    out: str,
    task: str | None = None,
    classes_file: str | None = None,
    conf: float | None = None,
    iou: float | None = None,
    frame_stride: int = 1,
    fps: float | None = None,
    config: RunConfig | None = None,
    phase: Phase | None = None,
    input_size: int | tuple[int, int] | None = None,
    channels: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    batch_size: int = PREDICT_BATCH_SIZE,
    decode_workers: int = 0,
    one_by_one: bool = False,
) -> PredictResult:
    """Run the ONNX model `model` over every image and video frame of `source` and write its
    predictions as Lightly's files into the local folder `out` (the module's docstring).
    `input_size` (H or (H, W)), `channels` ("RGB", "BGR"), `mean` and `std` (a classifier's,
    0-1 units) are read as run's --input-size, --channels, --mean and --std: for a model that
    does not say them itself.

    Files are decoded ahead by `decode_workers` threads (0: min(4, cores)) while the model runs
    `batch_size` pictures at once where its batch dimension is dynamic
    (ingest/predict_pipeline.py). `one_by_one` is the reference it is held to (tests,
    bench/bench_predict.py): each picture decoded, predicted and written in turn on this thread,
    as predict did before 0.7; both write the same bytes."""
    from datapool.config import ModelSpec, check_thread_count
    from datapool.ingest.predictor import CONF, IOU, open_predictor

    task = task if task is not None else default_task(model)
    if not _TASK_NAME.match(task) or task == "tasks.json":
        raise ConfigError(
            f"--task {task!r}: a task is a folder name: letters, digits, _ . - (not starting "
            "with a dot)"
        )
    if not isinstance(frame_stride, int) or frame_stride < 1:
        raise ConfigError(f"--frame-stride must be an integer >= 1, got {frame_stride!r}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps must be above 0, got {fps!r}")
    if fps is not None and frame_stride != 1:
        raise ConfigError("give --fps or --frame-stride, not both (as run takes one of them)")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(decode_workers, int) or decode_workers < 0:
        raise ConfigError(f"--decode-workers must be an integer >= 0, got {decode_workers!r}")
    check_thread_count("decode_workers", "--decode-workers", decode_workers)
    dest = _out_folder(source, out)
    others = _existing_tasks(dest)
    # (checked as run checks them)
    spec = ModelSpec(input_size=input_size, channels=channels, mean=mean, std=std)
    predictor = open_predictor(
        model,
        classes_file,
        CONF if conf is None else conf,
        IOU if iou is None else iou,
        spec.input_hw,
        spec.channels,
        spec.mean,
        spec.std,
        spinning=one_by_one,  # (the reference keeps what predict did before)
    )
    schema = {
        "task_type": predictor.task_type,
        "categories": [{"id": i, "name": n} for i, n in enumerate(predictor.classes)],
    }
    _check_task(dest, task, schema)
    result = PredictResult(
        dest, task, predictor.task_type, predictor.classes, predictor.fed, merged=others
    )
    if fps is not None or frame_stride != 1:
        result.frames_kept = (
            f" --fps {repr(float(fps)).removesuffix('.0')}"
            if fps is not None
            else f" --frame-stride {frame_stride}"
        )
    from datapool.sources import open_source

    src = open_source(source, config)
    listing = src.list()
    keys, kinds = listing["key"].tolist(), listing["kind"].tolist()
    if phase is not None:
        phase.set_total(len(keys))
    fresh = not (dest / task / "schema.json").exists()
    _write_json(dest / task / "schema.json", schema)
    try:
        if one_by_one:
            _predict_one_by_one(
                src, keys, kinds, predictor, dest, task, frame_stride, fps, result, phase
            )
        else:
            _predict_all(
                src,
                keys,
                kinds,
                predictor,
                dest,
                task,
                (frame_stride, fps),
                (batch_size, decode_workers),
                result,
                phase,
            )
    except BaseException:
        if fresh:
            _forget_task(dest / task)
        raise
    result.fed += "".join(f"; {note}" for note in predictor.notes)
    _write_json(dest / "tasks.json", [*others, *([task] if task not in others else [])])
    return result


def _out_folder(source: str, out: str) -> Path:
    """`out` as a local folder, checked: not a bucket, not a file, not inside a local SOURCE
    except under a hidden folder (which a run's listing leaves out)."""
    if scheme_of(out):
        raise ConfigError(
            f"--out {out}: {scheme_of(out)}:// is not supported here, the predictions are "
            "written to a local folder; write them here and copy the folder up (aws s3 sync "
            "DIR s3://bucket/prefix/.lightly/predictions), or give run --predictions DIR"
        )
    dest = Path(out).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (new, or one of predictions)")
    if not scheme_of(source):
        src, full = Path(source).expanduser().resolve(), dest.resolve()
        if full == src or src in full.parents:
            rel = full.relative_to(src).parts
            if not any(part.startswith(".") for part in rel):
                raise ConfigError(
                    f"--out {out} is inside SOURCE {source}, whose listing would count its "
                    f"files: give {Path(source) / '.lightly' / 'predictions'} (where run reads "
                    "predictions without --predictions) or a folder outside SOURCE"
                )
    return dest


def _existing_tasks(dest: Path) -> list[str]:
    """The tasks DIR/tasks.json lists already ([] where there is none)."""
    path = dest / "tasks.json"
    if not path.is_file():
        return []
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"--out {dest}: its tasks.json cannot be read ({e}); fix or remove it, or give "
            "another --out"
        ) from None
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(
            f"--out {dest}: its tasks.json is not a list of task names; fix or remove it, or "
            "give another --out"
        )
    return tasks


def _check_task(dest: Path, task: str, schema: dict[str, Any]) -> None:
    """Refuse a TASK that DIR holds already with another task type or other categories."""
    path = dest / task / "schema.json"
    if not path.is_file():
        return
    try:
        have = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        have = None
    if not isinstance(have, dict):
        raise ConfigError(
            f"--task {task}: {path} exists and is not a schema; give another --task, or remove "
            f"{dest / task}"
        )
    kind = have.get("task_type", have.get("task_description"))
    cats = have.get("categories")
    if kind != schema["task_type"] or cats != schema["categories"]:
        names = (
            [str(c.get("name")) for c in cats if isinstance(c, dict)]
            if isinstance(cats, list)
            else []
        )
        shown = ", ".join(names[:5]) + (f", ... ({len(names)})" if len(names) > 5 else "")
        raise ConfigError(
            f"--task {task}: {dest / task} holds another model's predictions ({kind}; "
            f"categories: {shown or 'none'}); give another --task, or remove that folder"
        )


def _forget_task(folder: Path) -> None:
    """Remove the schema a run that failed (a model's error, Ctrl-C) wrote into a task folder
    it made, where no predictions file of it was kept: else the next run, given the right
    class names, was refused as though the folder held another model's predictions."""
    kept = [p for p in folder.rglob("*") if not p.is_dir() and p != folder / "schema.json"]
    if kept:
        return
    with contextlib.suppress(OSError):
        (folder / "schema.json").unlink()
        for d in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
            d.rmdir()
        folder.rmdir()


def _write_json(path: Path, doc: Any) -> None:
    from datapool._fsio import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())


def _predict_all(
    src: Any,
    keys: list[str],
    kinds: list[str],
    predictor: Predictor,
    dest: Path,
    task: str,
    frames: tuple[int, float | None],
    batching: tuple[int, int],
    result: PredictResult,
    phase: Phase | None,
) -> None:
    """Predict every picture, decoded ahead on threads and run in batches
    (ingest/predict_pipeline.py), and write each one's file as its predictions come, in order
    (in batches made durable together: _fsio.BatchedWrites). What is written, counted and
    skipped is what `_predict_one_by_one` writes, counts and skips."""
    from datapool._fsio import BatchedWrites
    from datapool.ingest.predict_pipeline import Prepared, predict_files

    owner: dict[str, tuple[str, str]] = {}  # a predictions file's name -> its picture, file
    writes = BatchedWrites(lambda _: None)

    def claim(key: str, name: str) -> str | None:
        return _taken(owner, key, name)

    def predicted(p: Prepared, preds: list[dict[str, Any]]) -> None:
        _count(result, predictor, p.frame, preds)
        doc = {"file_name": p.name, "predictions": preds}
        path = Path(predictions_path(task, p.name, str(dest)))
        path.parent.mkdir(parents=True, exist_ok=True)
        writes.add(path, json.dumps(doc).encode())

    def ended(key: str, reason: str | None) -> None:
        if reason is None:
            result.files += 1
        else:
            result.skipped.append({"key": key, "reason": reason})

    try:
        predict_files(
            src.open_inputs(keys),
            dict(zip(keys, kinds)),
            predictor,
            claim,
            predicted,
            ended,
            batch_size=batching[0],
            frame_stride=frames[0],
            fps=frames[1],
            decode_workers=batching[1],
            on_file=None if phase is None else lambda _: phase.advance(1),
        )
        writes.flush()
    except BaseException:
        writes.discard()
        raise


def _count(
    result: PredictResult, predictor: Predictor, index: int | None, preds: list[dict[str, Any]]
) -> None:
    """Count one picture predicted: an image or a video frame, its boxes or none."""
    if index is None:
        result.images += 1
    else:
        result.frames += 1
    result.boxes += sum("bbox" in p for p in preds)
    result.without_boxes += predictor.task_type != "classification" and not preds


def _predict_one_by_one(
    src: Any,
    keys: list[str],
    kinds: list[str],
    predictor: Predictor,
    dest: Path,
    task: str,
    frame_stride: int,
    fps: float | None,
    result: PredictResult,
    phase: Phase | None,
) -> None:
    """Decode each file, predict each picture, and write its file, one picture at a time on
    this thread (the reference `_predict_all` is held to; in batches made durable together:
    _fsio.BatchedWrites)."""
    from datapool._fsio import BatchedWrites
    from datapool.ingest.decode import iter_frames

    kind_of = dict(zip(keys, kinds))
    owner: dict[str, tuple[str, str]] = {}  # a predictions file's name -> its picture, file
    writes = BatchedWrites(lambda _: None)
    try:
        for key, media in src.open_inputs(keys):
            if phase is not None:
                phase.advance(1)
            if isinstance(media, SourceError):
                result.skipped.append({"key": key, "reason": str(media)})
                continue
            try:
                frames = iter_frames(media, key, kind_of[key], None, frame_stride, fps)
                for frame in frames:
                    taken = _taken(owner, key, frame.name)
                    if taken is not None:
                        raise _Taken(taken)
                    preds = predictor.predict(frame.rgb)
                    _count(result, predictor, frame.index, preds)
                    doc = {"file_name": frame.name, "predictions": preds}
                    path = Path(predictions_path(task, frame.name, str(dest)))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    writes.add(path, json.dumps(doc).encode())
                result.files += 1
            except (DecodeError, _Taken) as e:
                result.skipped.append({"key": key, "reason": str(e)})
            finally:
                _close(media)
        writes.flush()
    except BaseException:
        writes.discard()
        raise


def _taken(owner: dict[str, tuple[str, str]], key: str, name: str) -> str | None:
    """Why the picture `name` of the file `key` gets no predictions file: another picture's
    has its name (`a.jpg` and `a.png` both have `a.json`; the image `v-0-mp4.png` and the
    first frame of `v.mp4` are both named `v-0-mp4.png`); None where it is the picture's."""
    json_name = sample_json(name)
    taken, of = owner.setdefault(json_name, (name, key))
    if (taken, of) == (name, key):
        return None
    who = f"{taken}'s" if taken != name else f"{of}'s (named {taken} too)"
    return (
        f"its predictions file {json_name} is {who} "
        "(Lightly's format has one file per name without its extension)"
    )


class _Taken(Exception):
    """A picture whose predictions file another picture's took (it is skipped)."""


def _close(media: Any) -> None:
    close = getattr(media, "close", None)
    if close is not None:
        close()
