"""`datapool predict`'s pipeline: the run's decoding stages (ingest/threaded.Decoding) feeding a
user's model (ingest/predictor.Predictor) in batches.

    feeder thread    source.open_inputs(keys): at most `window` files ahead of the consumer
    decode workers   threads; each decodes whole files at full size as shown (EXIF orientation,
                     a video's rotation, --fps / --frame-stride as a run keeps frames) and makes
                     each picture the model's size on its own (`Predictor.prepare`: letterboxed
                     or resized alone, so pictures of any size share a batch and no box moves),
                     into that file's own bounded queue
    calling thread   takes the files in listing order and their pictures into batches (each
                     made the model's input: `Predictor.input`), runs the model on a full batch (`Predictor.run_batch`: all at once where its batch
                     is dynamic, else one by one), then hands each picture's predictions over

Memory is bounded whatever the size or length of the files: a decoder holds one decoded frame
at a time (a 4K video is never decoded ahead whole), and the queues hold prepared pictures of
the model's size, not the picture's, as uint8: at most `window` files of `frames_per_file`
each, 64 MiB in all at 640x640 and batch 8 (threaded._QUEUE_BUDGET).

Order and names do not depend on timing: files are consumed in the order of the inputs, the
pictures of a file in decode order, and each picture's predictions are those `Predictor.predict`
gives it alone (tests/test_predict_pipeline.py holds the two to the same bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from datapool.ingest.threaded import Decoding, _Crash, _Failed, _Job

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from datapool.errors import SourceError
    from datapool.ingest.predictor import Predictor
    from datapool.sources import MediaInput


class Prepared(NamedTuple):
    """One picture, prepared by a decode worker: its file, name (naming.py), frame index (None
    for an image), its pixels at the model's size, and what `Predictor.finish` needs."""

    key: str
    name: str
    frame: int | None
    pixels: npt.NDArray[np.uint8]
    how: Any


# the consumer's three callbacks: `claim(key, name)` before a picture is predicted (a reason
# its file is skipped from there on, or None), `predicted(picture, predictions)` after, in
# order, and `ended(key, reason)` once a file's pictures were all taken (reason None: whole)
Claim = Callable[[str, str], "str | None"]
Predicted = Callable[[Prepared, list[dict[str, Any]]], None]
Ended = Callable[[str, "str | None"], None]


def predict_files(
    inputs: Iterator[tuple[str, MediaInput | SourceError]],
    kinds: dict[str, str],
    predictor: Predictor,
    claim: Claim,
    predicted: Predicted,
    ended: Ended,
    *,
    batch_size: int = 8,
    frame_stride: int = 1,
    fps: float | None = None,
    decode_workers: int = 0,
    on_file: Callable[[str], None] | None = None,
) -> None:
    """Predict every picture of `inputs` ((key, opened media or its SourceError), in order),
    decoding ahead in `decode_workers` threads (0: min(4, cores)) and running `batch_size`
    pictures together. A file that cannot be opened or decoded is `ended` with its reason; the
    pictures it gave before it failed are predicted, as `predict` one by one predicts them. An
    error of the model or a bug ends the whole call (raised here), as does Ctrl-C; the threads
    are stopped either way."""
    _Predicting(
        inputs,
        kinds,
        predictor,
        claim,
        predicted,
        ended,
        batch_size,
        frame_stride,
        fps,
        decode_workers,
        on_file,
    ).run_stages()


class _Predicting(Decoding):
    def __init__(
        self,
        inputs: Iterator[tuple[str, MediaInput | SourceError]],
        kinds: dict[str, str],
        predictor: Predictor,
        claim: Claim,
        predicted: Predicted,
        ended: Ended,
        batch_size: int,
        frame_stride: int,
        fps: float | None,
        decode_workers: int,
        on_file: Callable[[str], None] | None,
    ) -> None:
        h, w = predictor.hw
        super().__init__(
            inputs,
            kinds,
            None,  # full size as shown: the predictor letterboxes or resizes each itself
            batch_size,
            frame_stride,
            fps,
            decode_workers,
            on_file,
            queued_wh=(w, h),
        )
        self.predictor = predictor
        self.claim, self.predicted, self.ended = claim, predicted, ended
        self.pending: list[Prepared] = []

    def _frames(
        self, job: _Job, size: tuple[int, int] | None, report: Callable[[int, int], None] | None
    ) -> Generator[Prepared, None, int]:
        """The file's pictures, each brought to the model's size here on the decode worker."""
        frames = super()._frames(job, size, report)
        prepare = self.predictor.prepare
        while True:
            try:
                frame = next(frames)
            except StopIteration as end:
                return int(end.value or 0)
            pixels, how = prepare(frame.rgb)
            yield Prepared(job.key, frame.name, frame.index, pixels, how)

    def _take_file(self, job: _Job) -> None:
        """Add a file's pictures to the batches in order until its end; a picture `claim`
        refuses ends the file there (the rest of its pictures are dropped)."""
        refused: str | None = None
        while True:
            item = self.stage.get(job.frames)
            if isinstance(item, Prepared):
                if refused is None:
                    refused = self.claim(job.key, item.name)
                if refused is None:
                    self.pending.append(item)
                    if len(self.pending) == self.batch_size:
                        self._submit()
                continue
            if isinstance(item, _Crash):
                raise item.error
            self.ended(job.key, refused or (item.reason if isinstance(item, _Failed) else None))
            return

    def _submit(self) -> None:
        """Run the model on the pending pictures and hand over each one's predictions."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        out = self.predictor.run_batch([self.predictor.input(p.pixels) for p in batch])
        finish = self.predictor.finish
        for i, p in enumerate(batch):
            self.predicted(p, finish(out[i], p.how))
