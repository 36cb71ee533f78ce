"""A user's ONNX detector or classifier (`datapool predict`): what kind of model it is, how its
input is fed, and its answer as Lightly's prediction singletons. Each picture is made the
model's size on its own (`prepare`: letterboxed or resized alone) and made its input
(`input`), run alone (`predict`) or with others (`run_batch`: where the model's batch dimension
is dynamic), and read back on its own (`finish`): the same answer either way.

Two kinds are read; anything else is refused in one line that says what was found:
- An Ultralytics YOLO detection export (`yolo export format=onnx`, metadata `author:
  Ultralytics`, `task: detect`): one output (1, 4 + nc, anchors), each anchor's box centre x, y,
  width and height in pixels of the letterboxed input, then its nc class scores. The picture is
  letterboxed as Ultralytics' predictor does (scaled to fit `imgsz` keeping its aspect, centred
  on grey 114, RGB 0-1, resized bilinearly as OpenCV's INTER_LINEAR does); anchors whose best class score is above `conf` are kept, then
  non-maximum suppression per class at `iou` (Ultralytics' defaults 0.25 and 0.7, at most 300
  boxes), and the boxes are mapped back to pixels of the picture as shown and clipped to it. An
  end-to-end export (YOLOv10, YOLO26, `nms=True`: one output (1, N, 6) of x0, y0, x1, y1, score,
  class) is read as it is, its boxes above `conf` kept. A (1, 4 + nc, anchors) output of a model
  that is not Ultralytics' is read the same way when its class names are given.
- A classifier: one float output (1, nc) of logits or probabilities (a row of values in 0..1
  that sums to 1 is taken as probabilities; otherwise its softmax). It is fed as `datapool run`
  feeds an embedding model (ingest/inspection.py: the input size from the model, its
  preprocessor_config.json or Ultralytics' imgsz; the normalisation from its `datapool.mean` /
  `datapool.std` metadata, preprocessor_config.json, the normalisation its first nodes do,
  else ImageNet's): the whole picture resized to the input, its aspect not kept. An Ultralytics
  classification export (`task: classify`) is fed as Ultralytics feeds it: the picture's shorter
  side resized to the input, the centre cut out, RGB 0-1.

Class names come from the model's metadata `names` (Ultralytics writes a Python dict
`{0: 'person', ...}`; a JSON list or object is read too), or from `--classes FILE` (one name a
line), which overrides them.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from datapool.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Ultralytics' defaults for prediction (its cfg/default.yaml: conf, iou, max_det), its NMS's
# class offset (max_wh) and how many candidates it sorts at most (max_nms), and the grey its
# letterbox pads with.
CONF = 0.25
IOU = 0.7
MAX_DET = 300
_MAX_WH = 7680
_MAX_NMS = 30000
_PAD = 114
DETECTION = "object-detection"
CLASSIFICATION = "classification"
SUPPORTED = (
    "an Ultralytics YOLO detection export (one output (1, 4+classes, anchors), or (1, N, 6) "
    "end to end) or a classifier (one output (1, classes) of logits or probabilities)"
)


@dataclass
class Predictor:
    """An opened model: its task type (DETECTION or CLASSIFICATION), class names, and how it is
    fed (`fed`, for the summary). `predict(rgb)` gives one picture's Lightly predictions."""

    path: Path
    task_type: str
    classes: list[str]
    fed: str
    session: Any
    input_name: str
    hw: tuple[int, int]
    dtype: Any
    layout: str
    conf: float = CONF
    iou: float = IOU
    end2end: bool = False
    transposed: bool = False
    crop: bool = False  # Ultralytics classification: shorter side to the input, centre cut
    bgr: bool = False  # the model takes B, G, R (--channels, metadata, preprocessor_config.json)
    scale: Any = None  # classification: x * scale + shift per channel (None: plain 0-255)
    shift: Any = None
    notes: list[str] = field(default_factory=list)
    batched: bool = False  # its batch dimension is dynamic: run_batch runs pictures together

    def predict(self, rgb: npt.NDArray[np.uint8]) -> list[dict[str, Any]]:
        """The predictions of one RGB picture (height, width, 3) as shown, in Lightly's format:
        [{"category_id", "bbox": [x, y, w, h] in its pixels, "score", "probabilities"}] for a
        detector, [{"category_id", "probabilities"}] for a classifier."""
        pixels, how = self.prepare(rgb)
        return self.finish(self._run_one(self.input(pixels))[0], how)

    def prepare(self, rgb: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], Any]:
        """One picture brought to the model's size on its own (letterboxed, or resized and
        cut), still uint8 (height, width, 3): a quarter of the float input's bytes, for the
        decoders' queues; and what `finish` needs to map the output back to the picture (a
        detector's scale and padding)."""
        if self.task_type == DETECTION:
            boxed, r, (left, top) = letterbox(rgb, self.hw)
            return boxed, (r, left, top, rgb.shape[0], rgb.shape[1])
        h, w = self.hw
        if self.crop:  # Ultralytics' classify_transforms: shorter side, then the centre
            ph, pw = rgb.shape[:2]
            r = max(h / ph, w / pw)
            big = resize(rgb, max(w, round(pw * r)), max(h, round(ph * r)))
            y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
            return big[y0 : y0 + h, x0 : x0 + w], None
        return resize(rgb, w, h), None

    def input(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
        """The model's input for one `prepare`d picture, without its batch dimension: in its
        layout, channel order, dtype and normalisation (a detector: 0-1, or 0-255 as uint8)."""
        import numpy as np

        x = pixels.transpose(2, 0, 1).astype(np.float32)
        if self.task_type == DETECTION:
            x = x if self.dtype == np.uint8 else x / 255.0
        elif self.scale is not None:
            x = x * self.scale[:, None, None] + self.shift[:, None, None]
        x = x[::-1] if self.bgr else x
        x = x if self.layout == "NCHW" else x.transpose(1, 2, 0)
        return np.ascontiguousarray(x.astype(self.dtype))

    def finish(self, out: npt.NDArray[np.float32], how: Any) -> list[dict[str, Any]]:
        """The predictions of one picture from its row of the model's output (its batch
        dimension taken off) and what `prepare` said of it."""
        if self.task_type == DETECTION:
            return self._detect(out, how)
        return self._classify(out)

    def run_batch(self, inputs: list[npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        """The model's first output for pictures' `input`s run together, one row each. A model
        whose batch is dynamic is given them all at once; one of a fixed batch of 1, or one
        that fails on (or answers a different count of rows for) a batch of several, one at a
        time, as `predict` runs them, and every later batch too."""
        import numpy as np

        if len(inputs) > 1 and self.batched:
            try:
                out = self._run(np.stack(inputs))
            except ModelError:
                out = None
            if out is not None and out.ndim >= 1 and out.shape[0] == len(inputs):
                return out
            self.batched = False  # (run alone below: a real failure says its shape (1, ...))
            self.notes.append(
                f"run one picture at a time: it failed on, or misread, a batch of {len(inputs)}"
            )
        return np.concatenate([self._run_one(x) for x in inputs])

    def _run_one(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The output of one picture, as (1, ...): a detector's first row, a classifier's
        values all in one row (`_classify` says how many it gave where it gave more rows)."""
        out = self._run(x[None])
        return out.reshape(1, -1) if self.task_type == CLASSIFICATION else out[0][None]

    def _run(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        import numpy as np
        import onnxruntime as ort

        # (onnxruntime's own log of a failing node, in red on stderr, is left out: the failure
        # is said in ModelError's line, and a batch that fails is run one by one, a run that
        # then succeeds)
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4
        try:
            out = self.session.run(None, {self.input_name: x}, quiet)
        except Exception as e:  # onnxruntime's own kinds: a node that cannot take this input
            from datapool.ingest.embed import _one_line

            raise ModelError(
                f"model {self.path.name} failed on an input of shape {x.shape}: {_one_line(e)}"
            ) from None
        return np.asarray(out[0], np.float32)

    def _detect(self, out: npt.NDArray[np.float32], how: Any) -> list[dict[str, Any]]:
        import numpy as np

        r, left, top, h, w = how
        nc = len(self.classes)
        if self.end2end:  # x0, y0, x1, y1, score, class per row, NMS done in the model
            if out.ndim != 2 or out.shape[1] != 6:  # (dynamic sizes)
                raise ModelError(
                    f"model {self.path.name} gave an output of shape (1, "
                    f"{', '.join(map(str, out.shape))}), not (1, N, 6) end to end"
                )
            rows = out[out[:, 4] > self.conf][:MAX_DET]
            xyxy, score = rows[:, :4], rows[:, 4]
            cls = rows[:, 5].round().astype(np.int64)
            probs = None
            bad = (cls < 0) | (cls >= nc)
            if bad.any():
                raise ModelError(
                    f"model {self.path.name} gave class {int(cls[bad][0])} in its (1, N, 6) "
                    f"output, outside its {nc} class names"
                )
        else:
            table = out.T if not self.transposed else out  # (anchors, 4 + nc)
            if out.ndim != 2 or table.shape[1] != 4 + nc:  # (a dynamic dimension's size)
                raise ModelError(
                    f"model {self.path.name} gave an output of shape (1, {', '.join(map(str, out.shape))}), "
                    f"not (1, 4+{nc}, anchors) for its {nc} class names"
                )
            xyxy, score, cls, probs = nms(table, nc, self.conf, self.iou)
        xyxy = (xyxy - np.array([left, top, left, top], np.float32)) / r
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        found = []
        for i in range(len(xyxy)):
            x0, y0, x1, y1 = (float(v) for v in xyxy[i])
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                continue  # nothing left inside the picture
            p: dict[str, Any] = {
                "category_id": int(cls[i]),
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "score": round(min(1.0, max(0.0, float(score[i]))), 6),
            }
            if probs is not None:
                p["probabilities"] = _rounded(probs[i])
            found.append(p)
        return found

    def _classify(self, out: npt.NDArray[np.float32]) -> list[dict[str, Any]]:
        import numpy as np

        row = out.reshape(-1)
        if len(row) != len(self.classes):  # (a dynamic dimension's size)
            raise ModelError(
                f"model {self.path.name} gave {len(row)} values for its "
                f"{len(self.classes)} class names"
            )
        if not np.all(np.isfinite(row)):
            raise ModelError(f"model {self.path.name} gave a non-finite output: {row[:8]}")
        if row.min() >= 0 and row.max() <= 1 and abs(float(row.sum()) - 1) < 1e-3:
            probs = row / row.sum()
        else:
            e = np.exp(row - row.max())
            probs = e / e.sum()
        return [{"category_id": int(probs.argmax()), "probabilities": _rounded(probs)}]


def _rounded(p: npt.NDArray[np.float32]) -> list[float]:
    """Probabilities to 6 places (the file's size), their sum still 1 within 1e-5."""
    import numpy as np

    return list(np.round(p.astype(np.float64), 6).tolist())


def letterbox(
    rgb: npt.NDArray[np.uint8], hw: tuple[int, int]
) -> tuple[npt.NDArray[np.uint8], float, tuple[int, int]]:
    """The picture scaled to fit (height, width) `hw` with its aspect kept, centred on grey, as
    Ultralytics' LetterBox (auto=False) does; the scale and the left, top padding."""
    import numpy as np

    H, W = hw
    h, w = rgb.shape[:2]
    r = min(H / h, W / w)
    nw, nh = round(w * r), round(h * r)
    dw, dh = (W - nw) / 2, (H - nh) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    out = np.full((H, W, 3), _PAD, np.uint8)
    out[top : top + nh, left : left + nw] = linear(rgb, nw, nh) if (nw, nh) != (w, h) else rgb
    return out, r, (left, top)


def linear(rgb: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """`rgb` resized to width x height as OpenCV's INTER_LINEAR resizes it (Ultralytics'
    LetterBox): each output pixel's centre mapped into the input, the 2x2 pixels around it
    weighted bilinearly (no area averaging when shrinking), rounded to uint8."""
    import numpy as np

    def taps(n_out: int, n_in: int) -> tuple[Any, Any, Any]:
        at = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(at).astype(np.int64)
        f = (at - i0).astype(np.float32)
        f[i0 < 0] = 0
        f[i0 >= n_in - 1] = 0
        i0 = i0.clip(0, n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), f

    y0, y1, fy = taps(height, rgb.shape[0])
    x0, x1, fx = taps(width, rgb.shape[1])
    # (only the rows used are made float: a phone's 12-megapixel photo is never copied whole)
    rows = rgb[y0].astype(np.float32) * (1 - fy)[:, None, None]
    rows += rgb[y1].astype(np.float32) * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.rint(out).clip(0, 255).astype(np.uint8)


def resize(rgb: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """`rgb` resized to width x height by swscale (area averaging when shrinking, bilinear when
    enlarging, as `datapool run` resizes pictures for its model)."""
    import av
    import numpy as np

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    shrinking = frame.width > width or frame.height > height
    out = frame.reformat(
        width=width, height=height, interpolation="AREA" if shrinking else "BILINEAR"
    )
    return cast("npt.NDArray[np.uint8]", out.to_ndarray())


def nms(
    table: npt.NDArray[np.float32], nc: int, conf: float, iou: float
) -> tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.int64],
    npt.NDArray[np.float32],
]:
    """Ultralytics' non_max_suppression of one picture's (anchors, 4 + nc) table (centre x, y,
    width, height, then class scores), in numpy: anchors whose best class score is above
    `conf`, at most 30000 of the best, then greedy suppression per class of boxes that overlap
    a better one by more than `iou`, at most 300 kept. Their boxes (x0, y0, x1, y1), scores,
    classes, and class scores divided by their sum (Ultralytics' per-class sigmoids made a
    distribution: the `probabilities` Lightly's uncertainty scores are computed from)."""
    import numpy as np

    scores = table[:, 4 : 4 + nc]
    best = scores.max(axis=1)
    keep = np.flatnonzero(best > conf)
    keep = keep[np.argsort(-best[keep], kind="stable")][:_MAX_NMS]
    cls = scores[keep].argmax(axis=1)
    c, s = table[keep, :4], best[keep]
    xyxy = np.stack(
        [
            c[:, 0] - c[:, 2] / 2,
            c[:, 1] - c[:, 3] / 2,
            c[:, 0] + c[:, 2] / 2,
            c[:, 1] + c[:, 3] / 2,
        ],
        axis=1,
    )
    shifted = xyxy + (cls * _MAX_WH)[:, None].astype(np.float32)  # classes never overlap
    area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    order, kept = np.arange(len(keep)), list[int]()
    while order.size and len(kept) < MAX_DET:
        i, rest = order[0], order[1:]
        kept.append(i)
        ix0 = np.maximum(shifted[i, 0], shifted[rest, 0])
        iy0 = np.maximum(shifted[i, 1], shifted[rest, 1])
        ix1 = np.minimum(shifted[i, 2], shifted[rest, 2])
        iy1 = np.minimum(shifted[i, 3], shifted[rest, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[overlap <= iou]
    k = np.asarray(kept, np.int64)
    sub = scores[keep][k]
    probs = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1e-12)
    return (
        xyxy[k].astype(np.float32),
        s[k].astype(np.float32),
        cls[k].astype(np.int64),
        probs.astype(np.float32),
    )


def class_names(
    model: str, metadata: dict[str, str], classes_file: str | None
) -> tuple[list[str] | None, str]:
    """The class names, and where they came from: `--classes FILE` (one a line), else the
    model's metadata `names`; None where neither gives them."""
    if classes_file is not None:
        try:
            text = Path(classes_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise ConfigError(f"--classes {classes_file}: cannot read it ({why})") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise ConfigError(f"--classes {classes_file}: no class names (one a line)")
        return names, f"--classes {classes_file}"
    raw = metadata.get("names")
    if raw is None:
        return None, ""
    parsed: Any = None
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(raw)
            break
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    if isinstance(parsed, dict):
        try:
            ids = sorted(int(k) for k in parsed)
        except (TypeError, ValueError):
            ids = []
        if ids == list(range(len(parsed))):
            return [str(parsed[k] if k in parsed else parsed[str(k)]) for k in ids], "metadata"
    elif isinstance(parsed, list) and parsed:
        return [str(v) for v in parsed], "metadata"
    raise ModelError(
        f"model {model} metadata 'names' is not a list of class names or a dict {{0: name, "
        f"...}} (got {raw[:60]!r}); give them with --classes FILE (one a line)"
    )


def open_predictor(
    path: str | Path,
    classes_file: str | None = None,
    conf: float = CONF,
    iou: float = IOU,
    input_size: tuple[int, int] | None = None,
    channels: str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    spinning: bool = True,
) -> Predictor:
    """The model at `path`, checked to be one of the kinds this module reads (the module's
    docstring); ModelError naming what was found otherwise. `spinning` False: onnxruntime's
    idle threads sleep rather than spin (for decoding threads running beside it). `input_size` (height, width) where
    the model leaves its input dynamic, `channels` ("RGB" or "BGR") the order it takes, `mean`
    and `std` a classifier's normalisation (0-1 units), as `run --input-size`, `--channels`,
    `--mean` and `--std` give them."""
    import onnxruntime as ort

    from datapool.ingest import inspection
    from datapool.ingest.embed import _bgr_from

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--model {path}: no such file; give the .onnx file of your model")
    for v, flag in ((conf, "--conf"), (iou, "--iou")):
        if not (isinstance(v, float) and 0 <= v < 1) or math.isnan(v):
            raise ConfigError(f"{flag} must be a number in 0..1, got {v!r}")
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if not spinning:  # (as a run's Embedder: the decoders take the cores between batches)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... kinds
        from datapool.ingest.embed import _load_failure, _one_line  # what `run` says of it

        raise ModelError(_load_failure(p, _one_line(e), ort.__version__)) from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    name = p.name
    pre = inspection.read_preprocessor_config(p)
    plan = inspection.plan_input(name, session.get_inputs(), input_size, pre, {}, meta)
    bgr_from = _bgr_from(name, meta, pre, channels)
    if plan.extras or plan.channels != 3:
        raise ModelError(
            f"model {name}: datapool predict feeds one RGB image input; this model takes "
            f"{'other inputs besides it' if plan.extras else 'grayscale'}"
        )
    if plan.fixed_batch not in (None, 1):
        raise ModelError(
            f"model {name} has a fixed batch of {plan.fixed_batch}; export it with batch 1 or a "
            "dynamic batch"
        )
    # (a dynamic dimension, named or not, as None)
    outputs = [
        (o.name, [d if isinstance(d, int) and d > 0 else None for d in o.shape])
        for o in session.get_outputs()
    ]
    found = "; ".join(f"{n} {s}" for n, s in outputs)
    task = meta.get("task", "") if meta.get("author") == "Ultralytics" else ""
    if task and task not in ("detect", "classify"):
        raise ModelError(
            f"model {name} is an Ultralytics {task} export (outputs: {found}); datapool predict "
            f"reads {SUPPORTED}"
        )
    names, from_ = class_names(name, meta, classes_file)
    base = {
        "path": p,
        "session": session,
        "input_name": plan.name,
        "hw": plan.hw,
        "dtype": plan.dtype,
        "layout": plan.layout,
        "conf": conf,
        "iou": iou,
        "bgr": bgr_from.startswith("BGR"),
        # (run_batch: an input whose batch is dynamic, and an output that follows it)
        "batched": plan.fixed_batch is None and bool(outputs) and outputs[0][1][:1] == [None],
    }
    shape = outputs[0][1]
    if task != "classify" and len(outputs) == 1 and len(shape) == 3 and shape[0] in (1, None):
        e2e = meta.get("end2end", "").lower() == "true"
        return _detector(name, found, shape, task, names, from_, base, bool(mean or std), e2e)
    if len(outputs) == 1 and len(shape) == 2 and shape[0] in (1, None) and task != "detect":
        nc = shape[1] if isinstance(shape[1], int) else None
        if names is None:
            raise ModelError(
                f"model {name} is a classifier (output {found}) that names no classes "
                "(metadata 'names'); give them with --classes FILE (one a line)"
            )
        if len(names) < 2 or nc == 1:
            raise ModelError(
                f"model {name} output {found} gives one class: a binary classifier's single "
                "logit or probability is not read; export it with one output per class, "
                "(1, 2) for two"
            )
        if nc is not None and nc != len(names):
            raise ModelError(
                f"model {name} output {found} has {nc} classes, but {from_} names "
                f"{len(names)}; give one name a class"
            )
        return _classifier(
            name, plan, meta, names, from_, task == "classify", base, bgr_from, mean, std
        )
    raise ModelError(
        f"model {name} has outputs {found}{f' (Ultralytics {task})' if task else ''}; datapool "
        f"predict reads {SUPPORTED}"
    )


def _detector(
    name: str,
    found: str,
    shape: list[int | None],
    task: str,
    names: list[str] | None,
    from_: str,
    base: dict[str, Any],
    normalised: bool,
    end2end_meta: bool = False,
) -> Predictor:
    """A detector's Predictor, for a model of one 3-D output `shape` ((1, 4+classes, anchors),
    (1, anchors, 4+classes), or (1, N, 6) of an end-to-end Ultralytics export), checked against
    its class names; `normalised`: --mean/--std were given (refused: a detector is fed 0-1);
    `end2end_meta`: its Ultralytics metadata says end2end (read where the sizes are dynamic)."""
    size, conf, iou = f"{base['hw'][1]}x{base['hw'][0]}", base["conf"], base["iou"]
    if names is None:
        raise ModelError(
            f"model {name} output {found} looks like a detector's, but the model names no "
            "classes (metadata 'names'); give them with --classes FILE (one a line)"
        )
    nc = len(names)
    end2end = shape[2] == 6 and task == "detect" and shape[1] != 4 + nc
    # `yolo export dynamic=True` leaves the sizes to run time (['batch', 'Concatoutput0_dim_1',
    # 'anchors']): read as its own layout, told by its metadata, checked on each answer (_detect)
    unsized = not end2end and task == "detect" and 4 + nc not in shape[1:] and None in shape[1:]
    if unsized:
        end2end = end2end_meta
    if end2end or unsized or 4 + nc in (shape[1], shape[2]):
        if normalised:
            raise ConfigError(
                f"--mean/--std: model {name} is read as a detector, which is fed 0-1 pixels as "
                "Ultralytics feeds its exports; they apply to a classifier: drop them"
            )
        layout = "(1, N, 6) end to end" if end2end else f"(1, 4+{nc}, anchors)"
        order = "BGR" if base["bgr"] else "RGB"
        fed = (
            f"letterboxed to {size} (Ultralytics' LetterBox), {order} 0-1; output {layout}; "
            f"conf {conf:g}, iou {iou:g}; classes from {from_}"
        )
        return Predictor(
            task_type=DETECTION,
            classes=names,
            fed=fed,
            end2end=end2end,
            transposed=not end2end and not unsized and shape[1] != 4 + nc,
            **base,
        )
    raise ModelError(
        f"model {name} output {found} is not (1, 4+{len(names)}, anchors) for its "
        f"{len(names)} classes (from {from_}); datapool predict reads {SUPPORTED}"
    )


def _classifier(
    name: str,
    plan: Any,
    meta: dict[str, str],
    names: list[str],
    from_: str,
    ultralytics: bool,
    base: dict[str, Any],
    bgr_from: str,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Predictor:
    """A classifier's Predictor, fed as `datapool run` feeds the model (the module's
    docstring), or as Ultralytics feeds its own classification export."""
    import numpy as np

    from datapool.ingest import inspection
    from datapool.ingest.embed import check_feeding
    from datapool.ingest.graph_prefix import graph_norm
    from datapool.ingest.onnxfile import graph_nodes

    size = f"{plan.hw[1]}x{plan.hw[0]}"
    if plan.dtype == np.uint8:
        scale, shift, norm = None, None, "uint8 pixels"
    else:
        pre = inspection.read_preprocessor_config(base["path"])
        graph = None
        if pre is None and (mean is None or std is None):
            read = graph_nodes(base["path"])
            graph = None if read is None else graph_norm(*read, plan.name, plan.layout, 3)
        m, s, norm = inspection.normalisation(name, mean, std, meta, pre, 3, graph)
        check_feeding(name, graph, bgr_from, norm, plan.layout)  # (as `run --model` refuses)
        scale = (1.0 / (255.0 * s)).astype(np.float32)
        shift = (-m / s).astype(np.float32)
    how = "shorter side to" if ultralytics else "resized to"
    fed = (
        f"{how} {size}{' and its centre cut out' if ultralytics else ''}, "
        f"{bgr_from.split(':')[0] if bgr_from else 'RGB'}, normalised: {norm}; "
        f"softmax of logits (probabilities as they are); classes from {from_}"
    )
    return Predictor(
        task_type=CLASSIFICATION,
        classes=names,
        fed=fed,
        crop=ultralytics,
        scale=scale,
        shift=shift,
        **base,
    )
