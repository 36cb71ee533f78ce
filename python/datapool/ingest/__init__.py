"""Ingest: raw files in, candidate samples out (decode, pack, embed).

An engine takes an IngestSpec, plain data that can cross a process boundary (which source,
which files, which model, the frame and batch options), and gives FileResults: per file its
status and, for a file read whole, its samples' names and embedding rows. `candidates_from`
turns those into the run's Candidates table the same way for every engine.

    engine = get_engine("threaded")        # today's pipeline (ingest/threaded.py)
    results = engine.ingest(spec)          # opens the source and the model from the spec
    cands, status, skipped, notes = candidates_from(results, spec.keys, set(pool.filenames), dim)

An engine in this process may be handed the source and the embedder the run already opened
(`source=`, `embedder=`), so nothing is opened twice; an engine elsewhere opens its own from the
spec.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from datapool.candidates import CROP_BOX  # the pool reads it too: its home is candidates.py
from datapool.errors import ConfigError
from datapool.naming import STATUS_OK, crop_index, crop_key_of, frame_index, video_key_of

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from datapool.candidates import Candidates
    from datapool.config import IngestOptions, ModelSpec, RunConfig
    from datapool.ingest.decode import Box, Cutter
    from datapool.ingest.embed import Embedder
    from datapool.sources import Source

# engine name -> "module:class"; the class takes no arguments.
_ENGINES = {
    "threaded": "datapool.ingest.threaded:ThreadedEngine",
    "ray": "datapool.ingest.ray_engine:RayEngine",
}


@dataclass(frozen=True)
class CropSpec:
    """Crop selection's work: per image key its boxes (index in its predictions file, x, y, w, h
    in pixels of the image as shown; lightly.object_boxes), the padding (a fraction of each box's
    width and height added on each side) and the object-detection `task`. A video's frames have
    a predictions file each, which its decoder reads as it keeps a frame, with `read` (the run's
    reader of `.lightly/` files: in this process only, so crop selection runs on the threaded
    engine). The engine cuts each box out and embeds it as a sample of its own."""

    boxes: dict[str, tuple[tuple[int, float, float, float, float], ...]]
    padding: float
    task: str = ""
    read: Callable[[str], bytes | None] | None = field(default=None, compare=False)

    def cutter(self, key: str, kind: str) -> Cutter:
        """The Cutter (ingest/decode.py) of one file to decode."""
        from datapool.ingest.decode import Cutter
        from datapool.lightly import detection_task, frame_boxes

        if kind == "image":
            boxes = self.boxes.get(key, ())

            def image_boxes(name: str, dropped: list[dict[str, str]]) -> Sequence[Box]:
                # An animation is read as a video is (ingest/decode.py): its file's boxes are
                # those of its first frame, the picture Lightly and viewers show, never cut
                # from its other frames, whose objects are elsewhere.
                return boxes if name == key or frame_index(name, key) == 0 else ()

            return Cutter(image_boxes, self.padding)
        if self.read is None:
            raise ConfigError("crop selection of video frames needs the run's reader (read=)")
        read = self.read
        return Cutter(frame_boxes(read, self.task, detection_task(read, self.task)), self.padding)


class Unfiled(NamedTuple):
    """Crop selection: a video's frames kept that have no predictions file (none read for its
    frame name: not a file that lists no box), the first of them, and how many of its frames
    kept had one."""

    frames: int
    first: str
    filed: int


@dataclass(frozen=True)
class IngestSpec:
    """One run's ingest work, as plain data.

    `files` are (key, kind) in the order the run processes them; `source_config` carries the
    source's settings (S3 endpoint, retries), which open_source reads from a RunConfig.
    """

    source: str
    files: tuple[tuple[str, str], ...]
    model: ModelSpec
    options: IngestOptions
    source_config: RunConfig | None = None
    crops: CropSpec | None = None  # crop selection: the images' boxes
    # Lightly's computed metadata the selection uses (sharpness, snr, uniformRowRatio:
    # strategies.LIGHTLY_COMPUTED), measured on each frame kept; () measures nothing
    measure: tuple[str, ...] = ()

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.files]


@dataclass
class FileResults:
    """What decoding and embedding gave, per file, in the order of the keys given."""

    status: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (status, frames)
    rows: dict[str, list[tuple[str, npt.NDArray[np.float32]]]] = field(default_factory=dict)
    thumbs: dict[str, bytes] = field(default_factory=dict)  # sample name -> JPEG, when made
    # crop selection: each crop's pixels (x0, y0, x1, y1) in its image as shown, and per image
    # the boxes left out ({"key", "crop", "reason"})
    rects: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    dropped: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    without: dict[str, int] = field(default_factory=dict)  # key -> its frames without a box
    first_without: dict[str, str] = field(default_factory=dict)  # key -> the first such frame
    clipped: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # boxes cut to fit
    # a video's frames kept that have no predictions file (not one that lists no box)
    unfiled: dict[str, Unfiled] = field(default_factory=dict)
    # Lightly's computed metadata (IngestSpec.measure): sample name -> {name: value}
    metadata: dict[str, dict[str, float]] = field(default_factory=dict)
    # still images whose Lightly metadata was measured on FFmpeg's pixels (Pillow, which Lightly
    # reads images with, could not read them): the figures may differ from Lightly's a little
    pillow_unread: list[str] = field(default_factory=list)
    # videos of several video streams: key -> which stream was read, which were not
    streams: dict[str, str] = field(default_factory=dict)
    # videos that start mid-GOP (cut from a stream): key -> leading frames not read, which
    # refer to pictures before the file's first keyframe (decode.iter_frames)
    lead: dict[str, int] = field(default_factory=dict)


class Engine(Protocol):
    def ingest(
        self,
        spec: IngestSpec,
        *,
        source: Source | None = None,
        embedder: Embedder | None = None,
        on_file: Callable[[str], None] | None = None,
        on_frames: Callable[[str, int, int], None] | None = None,
    ) -> FileResults: ...


def get_engine(name: str = "threaded") -> Engine:
    if name not in _ENGINES:
        raise ConfigError(f"unknown ingest engine {name!r}; known: {', '.join(sorted(_ENGINES))}")
    module, _, cls = _ENGINES[name].partition(":")
    engine: Engine = getattr(importlib.import_module(module), cls)()
    return engine


def open_embedder(model: ModelSpec) -> Embedder:
    """The embedder of a ModelSpec; a `path` that is no file but the name of a model fetched
    with `datapool model get` (ingest/model_hub.py) opens that model."""
    from datapool.ingest.embed import Embedder
    from datapool.ingest.model_hub import resolve_model

    return Embedder(
        resolve_model(model.path),
        model.input_size,
        model.threads,
        output_name=model.output_name,
        pooling=model.pooling,
        mean=model.mean,
        std=model.std,
        inputs=model.inputs,
        device=model.device,
        channels=model.channels,
    )


def candidates_from(
    results: FileResults,
    keys: list[str],
    taken: set[str],
    dim: int,
    image_keys: set[str] | None = None,
) -> tuple[Candidates, dict[str, tuple[str, int]], list[dict[str, str]], list[str]]:
    """The candidates of the files read whole, in the order of `keys` and their frames; each
    file's status (FileResults.status, corrected below); the skipped files with their reasons;
    and notes on frames left out.

    A file that failed part-way has no candidates at all. A sample name is never held twice: an
    image named as a video's frame (`clip-03-mp4.png` beside `clip.mp4`, Lightly's frame names)
    takes the name when it comes first, and that frame is left out (a note); when the frame
    holds the name already, the image is skipped with the reason. So an image in the ledger as
    read whole always owns the sample of its name (pool/ledger.py `image_sample_keys`).

    Crop selection gives `image_keys`, the images of the ledger and of this run: its samples are
    object crops, and the same rule holds two ways. A crop named as one of those images
    (`a-jpg-crop-0.png` beside `a.jpg` and an image `a-jpg-crop-0.png`) is left out (a note), and
    an image whose key is the name of a crop the pool or this run holds is skipped. The
    candidates' column "crop:box" holds each crop's pixels (FileResults.rects)."""
    import numpy as np

    from datapool.candidates import Candidates

    status = dict(results.status)
    notes: list[str] = []
    names: list[str] = []
    owners: list[str] = []
    rows: list[Any] = []
    thumbs: dict[str, bytes] = {}
    crops = image_keys is not None
    # crop selection: the images and frames the crops held were cut from
    parents = {crop_key_of(n) for n in taken} if crops else set()
    for key in keys:
        if status[key][0] != STATUS_OK:
            continue
        samples = results.rows.get(key, [])
        clash = [name for name, _ in samples if name in taken]
        if (clash and samples[0][0] == key) or (crops and (key in taken or key in parents)):
            # an image: its one sample is named as the image, or (crops) a crop holds its name
            # or was cut from a frame of its name
            status[key] = (_clash_reason(key, taken), status[key][1])
            continue
        if crops:
            clash += [n for n, _ in samples if _owned(n, key, image_keys or set(), clash)]
        notes += [_left_out_note(key, name) for name in clash]
        for name, row in samples:
            if name in clash:
                continue
            taken.add(name)
            parents.add(crop_key_of(name))
            thumb = results.thumbs.get(name)
            if thumb:
                thumbs[name] = thumb
            names.append(name)
            owners.append(key)
            rows.append(row)
    skipped = [{"key": k, "reason": status[k][0]} for k in keys if status[k][0] != STATUS_OK]
    emb = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    cands = Candidates(names, owners, emb, thumbnails=thumbs)
    if crops:
        boxes = np.empty(len(names), dtype=object)
        boxes[:] = [list(results.rects[n]) for n in names]
        cands.columns[CROP_BOX] = boxes
    cands.columns.update(_measured_columns(results, names))
    return cands, status, skipped, notes


def _measured_columns(results: FileResults, names: list[str]) -> dict[str, Any]:
    """The candidates' columns of Lightly's computed metadata ("metadata:lightly.sharpness",
    float64; NaN for a sample not measured), one per name measured."""
    import numpy as np

    from datapool.strategies import LIGHTLY_PREFIX, Metadata, column_name

    measured = sorted({k for values in results.metadata.values() for k in values})
    return {
        column_name(Metadata(LIGHTLY_PREFIX + k)) or "": np.array(
            [results.metadata.get(n, {}).get(k, np.nan) for n in names], dtype=np.float64
        )
        for k in measured
    }


def _owned(name: str, key: str, image_keys: set[str], clash: list[str]) -> bool:
    """Whether the crop `name` of file `key` takes a name an image holds: its own, or (a crop of
    a video frame) that of the frame it was cut from."""
    parent = crop_key_of(name)
    return name not in clash and (name in image_keys or (parent != key and parent in image_keys))


def _clash_reason(image: str, taken: set[str] | None = None) -> str:
    video = video_key_of(image)
    crop = crop_key_of(image)
    if taken is not None and image not in taken and video:  # crops of that frame are held
        return (
            f"its name is that of frame {frame_index(image, video)} of {video}, whose object "
            "crops the pool holds; rename the image to add it"
        )
    if video:
        what = f"frame {frame_index(image, video)} of {video}"
    elif crop:
        what = f"object {crop_index(image)} of {crop}"
    else:
        what = "another sample"
    return (
        f"its sample name is taken: the pool holds {what} under the name {image!r} "
        "(Lightly's frame names, datapool's crop names); rename the image to add it"
    )


def _left_out_note(key: str, name: str) -> str:
    parent = crop_key_of(name)
    if parent is not None:
        what = key if parent == key else f"frame {frame_index(parent, key)} of {key}"
        return (
            f"object {crop_index(name)} of {what} is left out: its crop name {name!r} (or the "
            "name of the frame it is cut from) is the name of an image of the source or of a "
            "sample the pool holds; rename that image to keep both"
        )
    return (
        f"frame {frame_index(name, key)} of {key} is left out: its name {name!r} is the "
        "name of an image the pool holds; rename the image to keep both"
    )
