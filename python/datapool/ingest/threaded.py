"""Decode → pack → embed as overlapping stages, in bounded memory and in a deterministic order.

    feeder thread    source.open_inputs(keys): at most `window` files ahead of the consumer
    decode workers   threads; each decodes whole files (PyAV releases the GIL while FFmpeg
                     decodes and scales) into that file's own bounded frame queue
    calling thread   takes files in listing order, packs their frames into a float32 NCHW
                     batch buffer (the C++ packer, GIL released)
    inference thread runs onnxruntime on a full buffer while the next one is packed

Memory is bounded whatever the number or length of the videos: at most `window` files are open,
each holds at most `frames_per_file()` decoded frames in its queue, and there are three batch
buffers. What grows with the data is only the output, one embedding row per frame.

The queue depth (`frames_per_file()`) comes from a byte budget for all the queues together,
between one and four batches per file. Deeper queues let a decoder run ahead on a later file
while the consumer drains an earlier one, instead of blocking: on bench_ingest's data (bs 32,
720p videos of 90 frames), two batches per file against four gave 405 against 429 frames/s in
one process.

Order and names do not depend on timing: files are consumed in the order of `keys`, the frames of
a file in decode order, and batches are embedded in the order they were packed.
"""

from __future__ import annotations

import abc
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from datapool._testhooks import point
from datapool.config import IngestOptions
from datapool.errors import DecodeError, SourceError
from datapool.ingest import CropSpec, FileResults, IngestSpec, Unfiled
from datapool.ingest.decode import Cutter, Frame, iter_frames
from datapool.naming import STATUS_OK
from datapool.sources import MediaInput

if TYPE_CHECKING:
    import numpy.typing as npt

    from datapool.ingest.embed import Embedder
    from datapool.sources import Source


_POLL_S = 0.1  # how often blocked stages look at the stop flag (Ctrl-C, an error elsewhere)
_QUEUE_BUDGET = 64 << 20  # bytes of decoded frames that all the per-file queues may hold
_JOIN_S = 2.0  # how long a stopping pipeline waits for its threads


class _Done(NamedTuple):
    n_frames: int
    lead: int = 0  # a video's leading frames not read (decode.iter_frames)


class _Failed(NamedTuple):
    reason: str


class _Crash(NamedTuple):
    error: BaseException


_Batch = tuple["npt.NDArray[np.float32]", list[tuple[str, str]]]  # a packed buffer, its owners


@dataclass
class _Job:
    key: str
    kind: str
    media: MediaInput | SourceError
    frames: queue.Queue[Frame | _Done | _Failed | _Crash]
    # crop selection: the file's boxes, and what its decoder left out (read after _Done)
    cut: Cutter | None = None


def default_decode_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def frames_per_file(batch_size: int, window: int, size_wh: tuple[int, int]) -> int:
    """Depth of each file's frame queue: `_QUEUE_BUDGET` shared by `window` files, between one
    and four batches (128x128 frames, bs 32, 2 workers: 128 frames per file, 37 MiB in all)."""
    frame_bytes = 3 * size_wh[0] * size_wh[1]
    fit = _QUEUE_BUDGET // (window * frame_bytes)
    return max(batch_size, min(4 * batch_size, fit))


class _Stopped(Exception):
    """Raised inside a stage when another stage failed or the run was interrupted."""


class _Stage:
    """Shared stop flag and first error of the pipeline's threads."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
        self.stop.set()

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            if self.error is not None:
                raise self.error
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue


def decode_and_embed(
    inputs: Iterator[tuple[str, MediaInput | SourceError]],
    kinds: dict[str, str],
    embedder: Embedder,
    *,
    batch_size: int = IngestOptions.batch_size,
    frame_stride: int = IngestOptions.frame_stride,
    fps: float | None = IngestOptions.fps,
    decode_workers: int = IngestOptions.decode_workers,
    on_file: Callable[[str], None] | None = None,
    on_frames: Callable[[str, int, int], None] | None = None,
    thumbnails: bool = False,
    crops: CropSpec | None = None,
    measure: tuple[str, ...] = (),
) -> FileResults:
    """Decode every input and embed its frames, with the stages overlapped (see module doc).
    With `crops` (crop selection) an image's samples are the object crops of its boxes
    (decode.iter_crops): each one's pixels in `rects`, the boxes left out in `dropped`.
    `on_frames(key, decoded, frame_count)` follows the decoding (see decode.iter_frames).

    A file that fails part-way is reported with its reason and none of its frames: a file is in
    the results with all its frames or not at all. With `thumbnails`, each frame's thumbnail
    (made by the decode workers from the frame in memory) is in the results' `thumbs`. With
    `measure` (Lightly's computed metadata: sharpness, snr, uniformRowRatio), each frame's
    figures, measured by the decode workers on the frame at full size, are in `metadata`.
    """
    pipeline = _Pipeline(
        inputs, kinds, embedder, batch_size, frame_stride, fps, decode_workers, on_file, on_frames
    )
    pipeline.thumbnails = thumbnails
    pipeline.crops = crops
    pipeline.measure = measure
    return pipeline.run()


class Decoding(abc.ABC):
    """The decoding half of a pipeline, which `datapool run` (_Pipeline below) and `datapool
    predict` (ingest/predict_pipeline.py) share: `_feed` and `_decode` run on threads of their
    own, opening the inputs in order and decoding each whole file into its own bounded frame
    queue (`size` (width, height), or None: at full size as shown, as `predict` reads them);
    `_consume` on the calling thread takes the files in order (`_take_file`, the subclass's),
    then hands over the last batch (`_submit`). `run_stages` runs it all and stops its threads
    however it ends (an error, Ctrl-C)."""

    def __init__(
        self,
        inputs: Iterator[tuple[str, MediaInput | SourceError]],
        kinds: dict[str, str],
        size: tuple[int, int] | None,
        batch_size: int,
        frame_stride: int,
        fps: float | None,
        decode_workers: int,
        on_file: Callable[[str], None] | None,
        on_frames: Callable[[str, int, int], None] | None = None,
        queued_wh: tuple[int, int] | None = None,
    ) -> None:
        """`queued_wh`: the size (width, height) of the uint8 frames the queues hold (default
        `size`), which sets their depth (frames_per_file)."""
        self.inputs, self.kinds, self.size, self.on_file = inputs, kinds, size, on_file
        self.on_frames = on_frames
        self.batch_size, self.frame_stride, self.fps = batch_size, frame_stride, fps
        self.workers = decode_workers or default_decode_workers()
        window = 2 * self.workers + 2
        queued = queued_wh or size
        if queued is None:
            raise ValueError("Decoding: give queued_wh where frames are decoded at full size")
        self.depth = frames_per_file(batch_size, window, queued)
        self.stage = _Stage()
        self.slots = threading.Semaphore(window)  # files open at once
        self.order: queue.Queue[_Job | None] = queue.Queue()  # files in the order of `inputs`
        self.work: queue.Queue[_Job | None] = queue.Queue()  # files for the decoders to take
        self.thumbnails = False
        self.crops: CropSpec | None = None
        self.measure: tuple[str, ...] = ()

    def run_stages(self, *more: tuple[Callable[[], None], str]) -> None:
        """Start the feeder, the decoders and the `more` (target, thread name) stages, consume
        on this thread, then `_finish`; the threads are stopped however it ends."""
        # Threads are started inside the try: an interrupt that lands between two starts still
        # reaches the finally, which stops the ones already running.
        finished: list[threading.Event] = []
        try:
            finished.append(_start(self._feed, "datapool-feed"))
            for i in range(self.workers):
                finished.append(_start(self._decode, f"datapool-decode-{i}"))
            for target, name in more:
                finished.append(_start(target, name))
            point("started")
            self._consume()
            self._finish(finished)
        except _Stopped:
            if self.stage.error is not None:
                raise self.stage.error from None
            raise
        finally:
            self._stop(finished)

    def _finish(self, finished: list[threading.Event]) -> None:  # noqa: B027 (a hook)
        """After the last file was consumed: wait for the stages `run_stages` was given."""

    def _interrupt(self) -> None:  # noqa: B027 (a hook)
        """Stop what a stage of the subclass runs (an onnxruntime batch), once stopping."""

    @abc.abstractmethod
    def _take_file(self, job: _Job) -> None:
        """Consume one decoded file's results (the subclass's own stage)."""

    @abc.abstractmethod
    def _submit(self) -> None:
        """Hand what was taken on to the subclass's next stage."""

    def _stop(self, finished: list[threading.Event]) -> None:
        self.stage.stop.set()
        # Each stage notices the stop flag within _POLL_S. A batch inside onnxruntime stops
        # between two of the model's nodes. What can outlast that is one long FFmpeg call or one
        # long node: wait a little, then leave it (the threads are daemons), so Ctrl-C and
        # SIGTERM end a run within seconds whatever the stages are doing. (The CLI then exits
        # without running interpreter shutdown under that thread: cli.entry.)
        self._interrupt()
        deadline = time.monotonic() + _JOIN_S
        for done in finished:
            done.wait(max(0.0, deadline - time.monotonic()))
        if not all(done.is_set() for done in finished):
            point("threads-left")

    def _feed(self) -> None:
        """Open the inputs in order, at most `window` ahead of the consumer."""
        stage = self.stage
        try:
            for key, media in self.inputs:
                while not self.slots.acquire(timeout=_POLL_S):
                    if stage.stop.is_set():
                        raise _Stopped
                job = _Job(key, self.kinds[key], media, queue.Queue(self.depth))
                self.order.put(job)
                self.work.put(job)
        except _Stopped:
            pass
        except BaseException as e:
            stage.fail(e)
        finally:
            close = getattr(self.inputs, "close", None)
            if close is not None:  # a generator: stops a source's read-ahead (S3 downloads)
                close()
            self.order.put(None)
            for _ in range(self.workers):
                self.work.put(None)

    def _decode(self) -> None:
        """Take files and decode each whole into its own frame queue."""
        while not self.stage.stop.is_set():
            try:
                job = self.work.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if job is None:
                return
            try:
                self._decode_file(job)
            except _Stopped:
                return
            finally:
                _close(job.media)

    def _decode_file(self, job: _Job) -> None:
        put = self.stage.put
        if isinstance(job.media, SourceError):
            put(job.frames, _Failed(str(job.media)))
            return
        n = 0
        size = self.size
        report = None if self.on_frames is None else functools.partial(self.on_frames, job.key)
        lead = 0
        try:
            frames = self._frames(job, size, report)
            while True:
                try:
                    frame = next(frames)
                except StopIteration as end:
                    lead = end.value or 0
                    break
                put(job.frames, frame)
                n += 1
        except DecodeError as e:
            put(job.frames, _Failed(str(e)))
        except _Stopped:
            raise
        except BaseException as e:  # a bug or MemoryError: the calling thread re-raises it
            put(job.frames, _Crash(e))
        else:
            put(job.frames, _Done(n, lead))

    def _frames(
        self, job: _Job, size: tuple[int, int] | None, report: Callable[[int, int], None] | None
    ) -> Generator[Any, None, int]:
        """The file's samples: its frames, or with crop selection their object crops; returns
        the count of a video's leading frames not read (decode.iter_frames)."""
        assert not isinstance(job.media, SourceError)
        if self.crops is not None:
            job.cut = self.crops.cutter(job.key, job.kind)
        return iter_frames(
            job.media,
            job.key,
            job.kind,
            size,
            self.frame_stride,
            self.fps,
            report,
            thumbnails=self.thumbnails,
            cut=job.cut,
            measure=self.measure,
        )

    def _consume(self) -> None:
        """Take the files in order and their frames into batches; then pack the last one."""
        while True:
            job = self.stage.get(self.order)
            if job is None:
                break
            self._take_file(job)
            self.slots.release()
            if self.on_file is not None:
                self.on_file(job.key)
        if self.stage.error is not None:
            raise self.stage.error
        self._submit()


class _Pipeline(Decoding):
    """One decode_and_embed call: its queues, batch buffers and results. Each stage is a method:
    `_feed`, `_decode` and `_infer` run on threads of their own, `_consume` (and the packing in
    `_submit`) on the calling thread."""

    def __init__(
        self,
        inputs: Iterator[tuple[str, MediaInput | SourceError]],
        kinds: dict[str, str],
        embedder: Embedder,
        batch_size: int,
        frame_stride: int,
        fps: float | None,
        decode_workers: int,
        on_file: Callable[[str], None] | None,
        on_frames: Callable[[str, int, int], None] | None = None,
    ) -> None:
        super().__init__(
            inputs,
            kinds,
            embedder.size_wh,
            batch_size,
            frame_stride,
            fps,
            decode_workers,
            on_file,
            on_frames,
        )
        self.embedder = embedder
        self.free: queue.Queue[npt.NDArray[np.float32]] = queue.Queue()  # unused batch buffers
        for _ in range(3):
            self.free.put(embedder.new_batch(batch_size))  # pinned when embedding on the GPU
        self.to_infer: queue.Queue[_Batch | None] = queue.Queue(1)
        self.pending: list[Frame] = []  # frames of the batch being filled ...
        self.owners: list[tuple[str, str]] = []  # ... and their (key, sample name)
        self.out = FileResults()
        self.run_options = embedder.run_options()

    def run(self) -> FileResults:
        self.run_stages((self._infer, "datapool-infer"))
        return self.out

    def _finish(self, finished: list[threading.Event]) -> None:
        self.stage.put(self.to_infer, None)
        finished[-1].wait()
        if self.stage.error is not None:
            raise self.stage.error

    def _interrupt(self) -> None:
        self.run_options.terminate = True

    def _infer(self) -> None:
        """Embed the packed batches in the order they were packed."""
        from datapool.ingest.embed import check_finite

        stage, embedder = self.stage, self.embedder
        try:
            while True:
                item = stage.get(self.to_infer)
                if item is None:
                    return
                buf, owners = item
                emb = embedder.embed_packed(buf[: len(owners)], self.run_options)
                self.free.put(buf)
                check_finite(embedder.path.name, emb, owners)
                for (key, name), row in zip(owners, emb):
                    self.out.rows.setdefault(key, []).append((name, row))
        except _Stopped:
            pass
        except BaseException as e:
            if stage.stop.is_set():
                point("embed-stopped")  # a batch ended by run_options.terminate (_stop)
            else:
                stage.fail(e)

    def _take_file(self, job: _Job) -> None:
        """Add a file's frames to the batches as they come, and record how it ended."""
        while True:
            item = self.stage.get(job.frames)
            if isinstance(item, Frame):
                self.pending.append(item)
                self.owners.append((job.key, item.name))
                if item.thumb:  # a failed file's stay unused: results keep only ok files' rows
                    self.out.thumbs[item.name] = item.thumb
                if item.rect is not None:
                    self.out.rects[item.name] = item.rect
                if item.metadata is not None:
                    self.out.metadata[item.name] = item.metadata
                if item.pillow_unread:
                    self.out.pillow_unread.append(item.name)
                if item.streams:
                    self.out.streams[job.key] = item.streams
                if len(self.pending) == self.batch_size:
                    self._submit()
                continue
            if isinstance(item, _Crash):
                raise item.error
            if isinstance(item, _Done):
                self.out.status[job.key] = (STATUS_OK, item.n_frames)
                if item.lead:
                    self.out.lead[job.key] = item.lead
                if job.cut is not None:
                    _cut_results(self.out, job.key, job.cut)
            else:
                self.out.status[job.key] = (item.reason, 0)
                # Its frames not yet packed are dropped here; rows already embedded are
                # dropped by the caller, which keeps only files whose status is ok.
                keep = [i for i, (k, _) in enumerate(self.owners) if k != job.key]
                self.pending[:] = [self.pending[i] for i in keep]
                self.owners[:] = [self.owners[i] for i in keep]
            return

    def _submit(self) -> None:
        """Pack the pending frames into a free buffer and hand it to the inference thread."""
        if not self.pending:
            return
        buf = self.stage.get(self.free)
        self.embedder.pack([f.rgb for f in self.pending], buf)
        self.stage.put(self.to_infer, (buf, list(self.owners)))
        self.pending.clear()
        self.owners.clear()


def _cut_results(out: FileResults, key: str, cut: Cutter) -> None:
    """What crop selection's decoder of file `key` left out and found (ingest/decode.Cutter):
    the boxes left out and cut to fit, the frames without a box, and among them the frames
    without a predictions file (a video's frames' files), with the first of each."""
    out.dropped[key] = cut.dropped
    out.without[key] = len(cut.without)
    out.clipped[key] = cut.clipped
    if cut.without:
        out.first_without[key] = cut.without[0]
    if cut.unfiled:
        out.unfiled[key] = Unfiled(len(cut.unfiled), cut.unfiled[0], cut.filed)


def _start(target: Callable[[], None], name: str) -> threading.Event:
    """Start `target` on a daemon thread; the event is set once it has returned.

    The pipeline waits on these events, never on Thread.join: in CPython up to 3.12, a join
    that a signal handler interrupts (Ctrl-C while the last batch is embedded) releases the
    running thread's state lock and marks the thread stopped (threading.py, bpo-45274). Every
    later join and is_alive() then says it has ended while it is still inside onnxruntime, the
    run returns at once, and the process aborts when that call returns during interpreter
    shutdown ("terminate called without an active exception", exit -6; seen in CI).
    """
    done = threading.Event()

    def body() -> None:
        try:
            target()
        finally:
            done.set()

    threading.Thread(target=body, name=name, daemon=True).start()
    return done


def _close(media: MediaInput | SourceError) -> None:
    close = getattr(media, "close", None)
    if close is not None and not isinstance(media, (str, os.PathLike, SourceError)):
        close()


class ThreadedEngine:
    """The ingest engine of one process: the pipeline above, over the spec's files."""

    def ingest(
        self,
        spec: IngestSpec,
        *,
        source: Source | None = None,
        embedder: Embedder | None = None,
        on_file: Callable[[str], None] | None = None,
        on_frames: Callable[[str, int, int], None] | None = None,
    ) -> FileResults:
        from datapool.ingest import open_embedder
        from datapool.sources import open_source

        src = source if source is not None else open_source(spec.source, spec.source_config)
        model = embedder if embedder is not None else open_embedder(spec.model)
        opts = spec.options
        return decode_and_embed(
            src.open_inputs(spec.keys),
            dict(spec.files),
            model,
            batch_size=opts.batch_size,
            frame_stride=opts.frame_stride,
            fps=opts.fps,
            decode_workers=opts.decode_workers,
            on_file=on_file,
            on_frames=on_frames,
            thumbnails=opts.thumbnails,
            crops=spec.crops,
            measure=spec.measure,
        )
