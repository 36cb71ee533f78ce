"""Decode and embed on a Ray cluster (the extra `datapool[ray]`), giving what the local engine gives.

    driver   plan: a Ray task per file opens it and, when `RANGE_FRAMES` is set (off by default,
             see there), splits a long video into frame ranges at keyframes; the ranges come
             back as plain records
    tasks    decode: one task per range opens the source itself (open_source(spec.source, ...)),
             pinned to the version of the file the run listed (a bucket's ETag or generation,
             carried in the range records: an object rewritten since is skipped with the
             local engine's reason, never read as the listed one), decodes its frames and
             yields one row per frame, then one end row (ok and its frame count, or the
             file's failure reason as the local engine words it)
    actors   embed: `map_batches` over a pool of actors, one onnxruntime session each, loaded once
             from the spec's ModelSpec (the same session options as a local run)
    driver   collects rows keyed by (file, frame index) and (file, range): Ray retries tasks and
             restarts actors, so a row may arrive twice and the first one is kept; then orders
             files as `spec.files` and frames by index, as the local engine does

A range starts at a keyframe: its task seeks there and counts frames from that keyframe's index,
found by demuxing (no decoding) at plan time, so frame names are those of a whole-file decode. If
the first frame after the seek is not the keyframe it expected, the task decodes from the start
and drops the frames before its range. Videos sampled by `fps` are decoded whole (which frames
are kept depends on the time of the frame before).

CPU: embedding actors take one CPU each and at most half the cluster's CPUs, so decode tasks
always have CPUs left (with every CPU taken by actors, Ray Data's read stage waits forever).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.errors import ConfigError, DatapoolError, DecodeError, ModelError, SourceError
from datapool.ingest import FileResults, IngestSpec, open_embedder
from datapool.naming import STATUS_OK, frame_name

if TYPE_CHECKING:
    import numpy.typing as npt

    from datapool.config import ModelSpec
    from datapool.ingest.decode import Frame
    from datapool.ingest.embed import Embedder
    from datapool.sources import MediaInput, Source

# A video of at least twice this many frames is split into ranges; 0: every file is decoded
# whole. Off by default: a range does not run decode.iter_frames's whole-file integrity checks
# (damaged or truncated video), so a damaged long video could be kept where a local run skips it.
RANGE_FRAMES = 0
_MAX_BLOCKS = 4096  # at most this many Ray tasks per stage; records share a task beyond it
_FRAME = ""  # the status of a frame row; an end row carries the range's status
INSTALL_HINT = 'the ray engine needs Ray Data: pip install "datapool[ray]"'


def _ray() -> Any:
    try:
        import ray
        import ray.data  # ray without the data extra lacks it
    except ImportError:
        raise ConfigError(f"--engine ray: {INSTALL_HINT}") from None
    return ray


# ---- work records (plain dicts: they cross process boundaries as Ray rows) -------------------


def _whole(key: str, kind: str, size: int = -1, version: str = "") -> dict[str, Any]:
    """The one range of a whole file; `size` and `version` as the run listed it (_listed)."""
    return {
        "key": key,
        "kind": kind,
        "size": size,
        "version": version,
        "part": 0,
        "parts": 1,
        "start": 0,
        "pts": -1,
        "stop": -1,
    }


def _listed(spec: IngestSpec, source: Source | None) -> list[dict[str, Any]]:
    """One record per file: its key and kind, and the size and version (ETag, generation) the
    driver's source listed, which each worker's read is pinned to (`pin`), as the local engine
    reads; "" where the source keeps none (a folder)."""
    version = getattr(source, "listed_version", None)
    files = []
    for key, kind in spec.files:
        listed = version(key) if version is not None else None
        size, ver = listed if listed is not None else (-1, "")
        files.append({"key": key, "kind": kind, "size": int(size), "version": str(ver)})
    return files


def _plan(row: dict[str, Any], spec: IngestSpec, range_frames: int) -> list[dict[str, Any]]:
    """The ranges of one file: one for an image, a short or unreadable video, or `fps` sampling."""
    key, kind = str(row["key"]), str(row["kind"])
    whole = _whole(key, kind, int(row.get("size", -1)), str(row.get("version", "")))
    if kind != "video" or spec.options.fps is not None or range_frames <= 0 or spec.measure:
        return [whole]  # (a range measures no Lightly metadata)
    media = _open_one(spec, row)
    if isinstance(media, SourceError):
        return [whole]  # the decode task reports it, in the local engine's words
    try:
        starts = _range_starts(media, range_frames)
    except Exception:  # an unreadable file: the decode task says why, as locally
        starts = []
    finally:
        _close(media)
    if len(starts) < 2:
        return [whole]
    out = []
    for part, (start, pts) in enumerate(starts):
        stop = starts[part + 1][0] if part + 1 < len(starts) else -1
        out.append(whole | {"part": part, "parts": len(starts), "start": start})
        out[-1].update(pts=pts, stop=stop)
    return out


def _range_starts(media: MediaInput, range_frames: int) -> list[tuple[int, int]]:
    """(frame index, pts) of the keyframes where ranges start; [] where the video is not split.

    Indices come from the order of the presentation times of the packets shown, which is the
    order a decoder gives frames in; the packets an MP4 edit list hides (the lead-in of a clip
    cut with `ffmpeg -ss X -c copy`, marked to discard) are decoded for the frames after them
    but give no frame, so they have no index, as in a whole-file decode. The first range starts
    at the first frame shown (it decodes from the file's start, never seeks); a video whose
    first packet is no keyframe (`decode.is_keyframe`: cut mid-GOP, read from its first
    keyframe) or has leading pictures (an open GOP's, dropped), and a stream whose packets lack
    times or share them, are not split."""
    from datapool.ingest.decode import _count_frames, _open, is_keyframe, video_stream

    count = _count_frames(media)
    if count < 2 * range_frames:
        return []
    pts: list[int] = []  # of the packets shown
    keys: list[int] = []  # of the keyframes shown
    packets = 0
    first: int | None = None  # the first packet's time, where it is shown
    with _open(media, "video") as container:
        stream = video_stream(container)
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None:
                return []
            key = is_keyframe(packet, stream)
            if packets == 0:
                if not key:
                    return []
                # its leading pictures (an open GOP's, shown before it) the decoder drops
                first = None if packet.is_discard else int(packet.pts)
            packets += 1
            if packet.is_discard:
                continue
            pts.append(int(packet.pts))
            if key:
                keys.append(int(packet.pts))
    shown = len(pts)
    if packets != count or len(set(pts)) != shown or not shown:
        return []
    if first is not None and first != min(pts):
        return []
    rank = {p: i for i, p in enumerate(sorted(pts))}
    starts: list[tuple[int, int]] = [(0, min(pts))]
    for p in sorted(keys):
        index = rank[p]
        if index - starts[-1][0] >= range_frames and shown - index >= range_frames:
            starts.append((index, p))
    return starts


# ---- decode tasks -----------------------------------------------------------------------------

# per worker process: a source is opened once per (spec, settings), then reused
_sources: dict[tuple[str, str], Source] = {}


def _open_one(spec: IngestSpec, rng: dict[str, Any]) -> MediaInput | SourceError:
    """The file of a record, read as the run listed it: a bucket's object pinned to the listed
    size and version (S3's If-Match, GCS's ifGenerationMatch), as the local engine reads it."""
    from datapool.sources import open_source

    cfg = spec.source_config
    at = (spec.source, repr(cfg.s3 if cfg is not None else None))
    source = _sources.get(at)
    if source is None:
        source = _sources[at] = open_source(spec.source, spec.source_config)
    key = str(rng["key"])
    pin = getattr(source, "pin", None)
    if pin is not None:
        pin(key, int(rng.get("size", -1)), str(rng.get("version", "")))
    for _, media in source.open_inputs([key]):
        return media
    return SourceError(f"{key}: not opened")


def _close(media: MediaInput | SourceError) -> None:
    close = getattr(media, "close", None)
    if close is not None and not isinstance(media, (str, os.PathLike, SourceError)):
        close()


def _decode(
    rng: dict[str, Any], spec: IngestSpec, size: tuple[int, int]
) -> Iterator[dict[str, Any]]:
    """The frame rows of one range, then its end row. A frame row carries what decode.Frame
    says besides its pixels (its Lightly metadata as `metrics`, in `spec.measure`'s order; the
    streams note; whether Pillow read it); the end row, the leading frames not read (`lead`)."""
    key, part = str(rng["key"]), int(rng["part"])
    base = {"key": key, "part": part, "parts": int(rng["parts"]), "count": 1}
    # every row has every column (Ray Data's blocks hold one schema)
    base |= {"streams": "", "pillow": False, "lead": 0}
    base["metrics"] = np.zeros(max(1, len(spec.measure)), np.float64)
    blank = np.zeros((size[1], size[0], 3), np.uint8)
    media = _open_one(spec, rng)
    if isinstance(media, SourceError):
        yield base | {"index": -1, "name": "", "status": str(media), "rgb": blank, "thumb": b""}
        return
    n = lead = 0
    declared = [1]  # the frame count the container declares, for the driver's progress
    try:
        frames = _frames(media, rng, spec, size, declared)
        while True:
            try:
                frame = next(frames)
            except StopIteration as stop:
                lead = stop.value or 0
                break
            index = 0 if frame.index is None else frame.index
            row = {"index": index, "name": frame.name, "status": _FRAME, "rgb": frame.rgb}
            row |= {"thumb": frame.thumb, "streams": frame.streams, "pillow": frame.pillow_unread}
            if frame.metadata is not None:
                row["metrics"] = np.array([frame.metadata[k] for k in spec.measure], np.float64)
            yield base | row | {"count": declared[0]}
            n += 1
    except DecodeError as e:
        yield base | {"index": -1, "name": "", "status": str(e), "rgb": blank, "thumb": b""}
        return
    finally:
        _close(media)
    end = {"index": n, "name": "", "status": STATUS_OK, "rgb": blank, "thumb": b""}
    yield base | end | {"lead": lead}


def _frames(
    media: MediaInput,
    rng: dict[str, Any],
    spec: IngestSpec,
    size: tuple[int, int],
    declared: list[int],
) -> Generator[Frame, None, int]:
    """The range's frames; returns the leading frames of a video not read (iter_frames)."""
    from datapool.ingest.decode import iter_frames

    opts = spec.options
    key, kind = str(rng["key"]), str(rng["kind"])

    def count(_decoded: int, frame_count: int) -> None:
        declared[0] = frame_count

    if int(rng["parts"]) == 1:
        return (
            yield from iter_frames(
                media,
                key,
                kind,
                size,
                opts.frame_stride,
                opts.fps,
                count,
                opts.thumbnails,
                measure=spec.measure,
            )
        )
    thumbs = opts.thumbnails
    try:
        yield from _range_frames(media, rng, size, opts.frame_stride, declared, thumbs, seek=True)
    except _NotAtKeyframe:
        yield from _range_frames(media, rng, size, opts.frame_stride, declared, thumbs, seek=False)
    return 0  # (a video split into ranges starts at a keyframe: _range_starts)


class _NotAtKeyframe(Exception):
    pass


def _range_frames(
    media: MediaInput,
    rng: dict[str, Any],
    size: tuple[int, int],
    stride: int,
    declared: list[int],
    thumbnails: bool,
    *,
    seek: bool,
) -> Iterator[Frame]:
    """Frames [start, stop) of a video, named as a whole-file decode names them (decode.py)."""
    import av

    from datapool.ingest.decode import (
        Frame,
        _count_frames,
        _describe,
        _open,
        _oriented_rgb,
        _sample_aspect,
        _thumbnail,
        _video_orientation,
        out_of_memory,
        video_stream,
    )

    key, start, stop, pts = str(rng["key"]), int(rng["start"]), int(rng["stop"]), int(rng["pts"])
    stream_wh = (0, 0)
    try:
        count = _count_frames(media)
        declared[0] = count
        with _open(media, "video") as container:
            stream = video_stream(container)
            stream_wh = (stream.codec_context.width, stream.codec_context.height)
            stream.thread_type = "AUTO"
            sar = _sample_aspect(stream)
            if seek and start > 0:
                container.seek(pts, stream=stream, backward=True, any_frame=False)
            index = start if seek else 0
            first = True
            for frame in container.decode(stream):
                if seek and start > 0:
                    if frame.pts is not None and frame.pts < pts and first:
                        continue  # a leading picture of the previous group
                    if first and frame.pts != pts:
                        raise _NotAtKeyframe
                first = False
                if stop >= 0 and index >= stop:
                    break
                if index >= start and index % stride == 0:
                    turn = _video_orientation(frame)
                    rgb = _oriented_rgb(frame, *size, turn)
                    thumb = _thumbnail(frame, rgb, turn, sar) if thumbnails else b""
                    yield Frame(frame_name(key, index, count), index, rgb, thumb)
                index += 1
    except (DecodeError, _NotAtKeyframe):
        raise
    except MemoryError:  # as decode.iter_frames: the range is skipped, the file tried again
        raise out_of_memory(*stream_wh) from None
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise DecodeError(_describe(e)) from None


# ---- embedding actors -------------------------------------------------------------------------


class _Embed:
    """One onnxruntime session per actor, opened from the spec."""

    def __init__(self, model: ModelSpec) -> None:
        self.embedder = open_embedder(model)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        from datapool.ingest.embed import check_finite

        e = self.embedder
        status = batch["status"]
        emb = np.zeros((len(status), e.dim), np.float32)
        rows = np.flatnonzero(status == _FRAME)
        if rows.size:
            try:
                buf = np.empty((rows.size, 3, *e.input_hw), np.float32)
                e.pack([np.ascontiguousarray(batch["rgb"][i]) for i in rows], buf)
                emb[rows] = e.embed_packed(buf)
            except MemoryError:
                # A bare MemoryError from an actor reached the user as Ray's traceback.
                raise ModelError(e.batch_too_big(int(rows.size))) from None
            samples = [(str(batch["key"][i]), str(batch["name"][i])) for i in rows]
            check_finite(e.path.name, emb[rows], samples)
        out = {k: batch[k] for k in _PASSED}
        out["emb"] = emb
        return out


# the columns an embedding actor passes on to the driver, beside the embedding
_PASSED = (
    *("key", "part", "parts", "index", "name", "status", "count", "thumb"),
    *("streams", "pillow", "lead", "metrics"),
)


# ---- the driver -------------------------------------------------------------------------------


@dataclass
class _Collected:
    """Rows as they arrive, deduplicated: frames by (file, index), end rows by (file, range)."""

    frames: dict[str, dict[int, tuple[str, npt.NDArray[np.float32]]]] = field(default_factory=dict)
    ends: dict[str, dict[int, tuple[str, int]]] = field(default_factory=dict)
    thumbs: dict[str, bytes] = field(default_factory=dict)  # sample name -> JPEG
    measure: tuple[str, ...] = ()  # the Lightly metadata measured (IngestSpec.measure)
    metadata: dict[str, dict[str, float]] = field(default_factory=dict)  # sample name -> values
    pillow_unread: set[str] = field(default_factory=set)  # (FileResults.pillow_unread)
    streams: dict[str, str] = field(default_factory=dict)  # key -> its streams note
    lead: dict[str, int] = field(default_factory=dict)  # key -> leading frames not read

    def add(
        self,
        batch: dict[str, npt.NDArray[Any]],
        on_frames: Callable[[str, int, int], None] | None = None,
    ) -> list[str]:
        """Take one batch; return the files it completed. `on_frames(key, frames, count)` is
        told the frames embedded so far of a file and the count its container declares."""
        done = []
        for i, status in enumerate(batch["status"].tolist()):
            key, index = str(batch["key"][i]), int(batch["index"][i])
            if status == _FRAME:
                got = self.frames.setdefault(key, {})
                if index not in got:
                    got[index] = (str(batch["name"][i]), np.array(batch["emb"][i]))
                    name = str(batch["name"][i])
                    thumb = batch["thumb"][i]
                    if len(thumb):
                        self.thumbs[name] = bytes(thumb)
                    if self.measure:
                        values = batch["metrics"][i].tolist()
                        self.metadata[name] = dict(zip(self.measure, values))
                    if bool(batch["pillow"][i]):
                        self.pillow_unread.add(name)
                    if str(batch["streams"][i]):
                        self.streams[key] = str(batch["streams"][i])
                    if on_frames is not None:
                        on_frames(key, len(got), int(batch["count"][i]))
                continue
            ends = self.ends.setdefault(key, {})
            if int(batch["part"][i]) not in ends:
                ends[int(batch["part"][i])] = (str(status), index)
                if int(batch["lead"][i]):
                    self.lead[key] = int(batch["lead"][i])
                if len(ends) == int(batch["parts"][i]):
                    done.append(key)
        return done

    def results(self, keys: list[str]) -> FileResults:
        out = FileResults()
        for key in keys:
            ends = [self.ends[key][p] for p in sorted(self.ends.get(key, {}))]
            if not ends:
                raise DatapoolError(f"ray engine: no result came back for {key}")
            failed = [status for status, _ in ends if status != STATUS_OK]
            n = sum(count for _, count in ends)
            if failed:
                out.status[key] = (failed[0], 0)
                continue
            if n == 0:
                out.status[key] = ("no decodable frame", 0)
                continue
            frames = self.frames.get(key, {})
            if len(frames) != n:
                raise DatapoolError(
                    f"ray engine: {key} gave {len(frames)} distinct frames, its ranges {n}"
                )
            out.status[key] = (STATUS_OK, n)
            out.rows[key] = [frames[i] for i in sorted(frames)]
            names = [name for name, _ in out.rows[key]]
            out.thumbs.update((n, self.thumbs[n]) for n in names if n in self.thumbs)
            out.metadata.update((n, self.metadata[n]) for n in names if n in self.metadata)
            out.pillow_unread += [n for n in names if n in self.pillow_unread]
            if key in self.streams:
                out.streams[key] = self.streams[key]
            if key in self.lead:
                out.lead[key] = self.lead[key]
        return out


class RayEngine:
    """Decode and embed as Ray Data work (see the module doc); a local Ray when none is given."""

    def ingest(
        self,
        spec: IngestSpec,
        *,
        source: Source | None = None,
        embedder: Embedder | None = None,
        on_file: Callable[[str], None] | None = None,
        on_frames: Callable[[str, int, int], None] | None = None,
    ) -> FileResults:
        ray = _ray()
        model = embedder if embedder is not None else open_embedder(spec.model)
        spec = _portable(spec)
        cfg = spec.source_config
        started = not ray.is_initialized()
        if started:
            _init(ray, cfg.ray_address if cfg is not None else None)
        batches: Any = None
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            # The driver's bar says how it goes, and its error line what failed: Ray Data's own
            # warnings and error tracebacks are in the session's logs (ray-data.log).
            logging.getLogger("ray.data").setLevel(logging.CRITICAL)
            collected = _Collected(measure=spec.measure)
            batches = iter(
                _pipeline(ray, spec, model.size_wh, source).iter_batches(
                    batch_size=None, batch_format="numpy"
                )
            )
            for batch in batches:
                for key in collected.add(batch, on_frames):
                    if on_file is not None:
                        on_file(key)
            return collected.results(spec.keys)
        except Exception as e:
            inner = _unwrapped(e)
            if inner is not e:
                raise inner from None
            if "No module named 'datapool'" in str(e):
                raise ConfigError(
                    "--engine ray: the Ray cluster's workers cannot import datapool; install "
                    'the same datapool on every node (pip install "datapool[ray]", or the '
                    "Docker image): docs/scale-out.md"
                ) from None
            raise
        finally:
            # Ctrl-C, or an error: closing the iterator stops the streaming executor, which
            # cancels the run's tasks and actors; a Ray started here is shut down with them.
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            if started:
                ray.shutdown()


def _init(ray: Any, address: str | None) -> None:
    """`ray.init`, or one line where no Ray cluster answers at the address given (ray_address,
    else RAY_ADDRESS; neither: a local Ray). Left to itself, ray.init ends in a ConnectionError
    traceback where `auto` finds no cluster, and retries an address where nothing listens for
    minutes, with a warning every few seconds."""
    env = os.environ.get("RAY_ADDRESS") or None  # (ray.init reads it for None and "auto")
    from_env = env is not None and address in (None, "auto")
    named = env if from_env else address
    flag = "RAY_ADDRESS" if from_env else "ray_address"
    instead = "unset RAY_ADDRESS" if from_env else "leave ray_address out"
    if named is not None and named not in ("auto", "local"):
        host, sep, port = named.split("://", 1)[-1].rpartition(":")
        if sep and port.isdigit():
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
            except OSError as e:
                raise ConfigError(
                    f"{flag} {named}: no Ray cluster answers there ({e.strerror or e}); give the "
                    f"address of a running cluster's head (`ray start --head` prints it), or "
                    f"{instead} for a local Ray started for this run"
                ) from None
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    except ConnectionError:
        if named in (None, "local"):  # a local Ray that failed to start: Ray's own words
            raise
        if named == "auto":
            raise ConfigError(
                f"{flag} {named}: no Ray cluster is running on this machine; start one (`ray "
                f"start --head`), give a cluster's address (HOST:6379), or {instead} for a local "
                "Ray started for this run"
            ) from None
        raise ConfigError(  # it answered: Ray >= 2.5x's `ray start` wants a token by default
            f"{flag} {named}: the Ray cluster there did not let this driver in; if it uses token "
            "authentication, set RAY_AUTH_MODE=token here and give its token (RAY_AUTH_TOKEN, "
            "or ~/.ray/auth_token): docs/scale-out.md"
        ) from None


def _pipeline(
    ray: Any, spec: IngestSpec, size: tuple[int, int], source: Source | None = None
) -> Any:
    """The plan, decode and embed stages of one run, as one Ray Dataset of result rows.
    `source`: the driver's, which listed the files (their versions, pinned in each read)."""
    cfg = spec.source_config
    gpus = cfg.ray_num_gpus if cfg is not None else None
    files = _listed(spec, source)
    if not files:
        return ray.data.from_items([])
    frames = RANGE_FRAMES
    planned = (
        ray.data.from_items(files, override_num_blocks=min(len(files), _MAX_BLOCKS))
        .flat_map(_plan, fn_kwargs={"spec": spec, "range_frames": frames})
        .take_all()
    )
    actors, remote, decode_cpus = _sizes(ray.cluster_resources(), gpus)
    return (
        ray.data.from_items(planned, override_num_blocks=min(len(planned), _MAX_BLOCKS))
        .flat_map(_decode, fn_kwargs={"spec": spec, "size": size}, num_cpus=decode_cpus)
        .map_batches(
            _Embed,
            fn_constructor_kwargs={"model": spec.model},
            batch_size=spec.options.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            **remote,
        )
    )


def _sizes(resources: dict[str, float], gpus: float | None) -> tuple[int, dict[str, float], float]:
    """The number of embedding actors, their Ray resources, and the CPUs of a decode task.

    CPU actors take at most half the cluster's CPUs, so decode tasks always find one (on a
    one-CPU cluster, both take half a CPU); GPU actors take `gpus` GPUs each."""
    cpus = float(resources.get("CPU", 0.0))
    if cpus <= 0:
        raise ConfigError("--engine ray: the Ray cluster has no CPUs to decode on")
    share = min(1.0, cpus / 2)
    if gpus is None:
        return max(1, int(cpus // 2)), {"num_cpus": share}, share
    have = float(resources.get("GPU", 0.0))
    if have < gpus:
        raise ConfigError(
            f"--ray-num-gpus {gpus:g}: the Ray cluster has {have:g} GPUs; give fewer GPUs per "
            "actor, or leave the flag out for CPU actors"
        )
    return max(1, int(have // gpus)), {"num_gpus": gpus, "num_cpus": 0.0}, share


def _portable(spec: IngestSpec) -> IngestSpec:
    """The spec as workers need it: a local folder given relative to here made absolute."""
    if os.path.isdir(spec.source):
        return replace(spec, source=os.path.abspath(spec.source))
    return spec


def _unwrapped(e: Exception) -> Exception:
    """A datapool error raised on a worker, as it was raised there (Ray wraps it)."""
    seen = e
    for _ in range(8):
        if isinstance(seen, DatapoolError):
            return seen
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if not isinstance(nxt, Exception):
            break
        seen = nxt
    return e
