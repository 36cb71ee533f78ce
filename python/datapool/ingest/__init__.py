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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from datapool.errors import ConfigError
from datapool.naming import STATUS_OK, frame_index, video_key_of

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from datapool.candidates import Candidates
    from datapool.config import IngestOptions, ModelSpec, RunConfig
    from datapool.ingest.embed import Embedder
    from datapool.sources import Source

# engine name -> "module:class"; the class takes no arguments.
_ENGINES = {
    "threaded": "datapool.ingest.threaded:ThreadedEngine",
    "ray": "datapool.ingest.ray_engine:RayEngine",
}


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

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.files]


@dataclass
class FileResults:
    """What decoding and embedding gave, per file, in the order of the keys given."""

    status: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (status, frames)
    rows: dict[str, list[tuple[str, npt.NDArray[np.float32]]]] = field(default_factory=dict)
    thumbs: dict[str, bytes] = field(default_factory=dict)  # sample name -> JPEG, when made


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
    results: FileResults, keys: list[str], taken: set[str], dim: int
) -> tuple[Candidates, dict[str, tuple[str, int]], list[dict[str, str]], list[str]]:
    """The candidates of the files read whole, in the order of `keys` and their frames; each
    file's status (FileResults.status, corrected below); the skipped files with their reasons;
    and notes on frames left out.

    A file that failed part-way has no candidates at all. A sample name is never held twice: an
    image named as a video's frame (`clip-03-mp4.png` beside `clip.mp4`, Lightly's frame names)
    takes the name when it comes first, and that frame is left out (a note); when the frame
    holds the name already, the image is skipped with the reason. So an image in the ledger as
    read whole always owns the sample of its name (pool/ledger.py `image_sample_keys`)."""
    import numpy as np

    from datapool.candidates import Candidates

    status = dict(results.status)
    notes: list[str] = []
    names: list[str] = []
    owners: list[str] = []
    rows: list[Any] = []
    thumbs: dict[str, bytes] = {}
    for key in keys:
        if status[key][0] != STATUS_OK:
            continue
        samples = results.rows.get(key, [])
        clash = [name for name, _ in samples if name in taken]
        if clash and samples[0][0] == key:  # an image: its one sample is named as the image
            status[key] = (_clash_reason(key), status[key][1])
            continue
        notes += [_left_out_note(key, name) for name in clash]
        for name, row in samples:
            if name in taken:
                continue
            taken.add(name)
            thumb = results.thumbs.get(name)
            if thumb:
                thumbs[name] = thumb
            names.append(name)
            owners.append(key)
            rows.append(row)
    skipped = [{"key": k, "reason": status[k][0]} for k in keys if status[k][0] != STATUS_OK]
    emb = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return Candidates(names, owners, emb, thumbnails=thumbs), status, skipped, notes


def _clash_reason(image: str) -> str:
    video = video_key_of(image)
    what = f"frame {frame_index(image, video)} of {video}" if video else "another sample"
    return (
        f"its sample name is taken: the pool holds {what} under the name {image!r} "
        "(Lightly's frame names); rename the image to add it"
    )


def _left_out_note(video: str, name: str) -> str:
    return (
        f"frame {frame_index(name, video)} of {video} is left out: its name {name!r} is the "
        "name of an image the pool holds; rename the image to keep both"
    )
