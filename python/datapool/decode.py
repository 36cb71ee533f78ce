"""Decode images and video frames with PyAV, streaming, resized to the model's input by swscale
(area averaging when shrinking, bilinear when enlarging; the aspect ratio is not kept).

Frames are named as Lightly names them:
    {relpath without extension}-{frame index}-{extension}.png
with the index zero-padded to the number of digits of the video's frame count, for example
`cam/clip-007-mp4.png` for frame 7 of a 100-frame `cam/clip.mp4`. Images keep their key.
The frame index is the decoded frame number (0-based, in presentation order), so names are stable
across runs whatever `frame_stride` is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ._imagesize import declared_size
from ._testhooks import point
from .errors import DecodeError

if TYPE_CHECKING:
    import av
    import av.container
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class Frame:
    name: str  # the sample's filename in the pool
    index: int | None  # decoded frame number for videos, None for images
    rgb: npt.NDArray[np.uint8]  # (height, width, 3), already resized


def frame_name(key: str, index: int, frame_count: int) -> str:
    """Lightly's name for frame `index` of the video at `key` with `frame_count` frames."""
    stem, _, ext = key.rpartition(".")
    width = len(str(max(frame_count, 1)))
    return f"{stem}-{index:0{width}d}-{ext}.png"


def _describe(err: BaseException) -> str:
    """A short reason for the report: FFmpeg's own message, without errno or file path."""
    text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    return str(text).split(": '", 1)[0]


_local = threading.local()


def _resize_rgb(frame: av.VideoFrame, width: int, height: int) -> npt.NDArray[np.uint8]:
    """Convert and resize with swscale: area averaging when shrinking, bilinear when enlarging.

    One VideoReformatter per thread is reused, so swscale's context is built once per input size
    and format rather than once per frame (that halves the cost of small images).
    """
    from av.video.reformatter import VideoReformatter

    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    shrinking = frame.width > width or frame.height > height
    out = reformatter.reformat(
        frame, width=width, height=height, format="rgb24",
        interpolation="AREA" if shrinking else "BILINEAR",
    )
    return cast("npt.NDArray[np.uint8]", out.to_ndarray())


MAX_PIXELS = 178_956_970
"""The largest image or video frame datapool decodes, in pixels (width x height); larger files are
skipped with a reason. Pillow's decompression-bomb threshold; an 8K frame is 33 million. Checked
from the header before anything is decoded (images: by _imagesize, before FFmpeg probes the file;
videos: from the stream's parameters, with FFmpeg's own `max_pixels` set for its probing). Change
it by assigning `datapool.decode.MAX_PIXELS`."""


def _too_big(w: int, h: int) -> DecodeError:
    return DecodeError(
        f"declares {w}x{h} pixels, over the limit of {MAX_PIXELS} (datapool.decode.MAX_PIXELS); "
        "not decoded"
    )


def _open(path: Path, kind: str) -> av.container.InputContainer:
    """Open a media file whose first video stream has a known size within MAX_PIXELS."""
    import av

    if kind == "image":
        wh = declared_size(path)
        if wh is not None and wh[0] * wh[1] > MAX_PIXELS:
            raise _too_big(*wh)
    container = av.open(str(path), options={"max_pixels": str(MAX_PIXELS)})
    try:
        if not container.streams.video:
            audio = " (audio only)" if container.streams.audio else ""
            raise DecodeError(f"no video or image stream{audio}")
        ctx = container.streams.video[0].codec_context
        if ctx.width * ctx.height > MAX_PIXELS:
            raise _too_big(ctx.width, ctx.height)
        if ctx.width * ctx.height == 0:
            raise DecodeError(
                "cannot read the frame size from the header (not valid media, damaged, or over "
                f"{MAX_PIXELS} pixels)"
            )
    except BaseException:
        container.close()
        raise
    return container


def _count_frames(path: Path) -> int:
    """Frame count from the container, or by demuxing packets (no decoding) where it is unknown."""
    with _open(path, "video") as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


def iter_frames(
    path: Path, key: str, kind: str, size: tuple[int, int], frame_stride: int = 1
) -> Iterator[Frame]:
    """Yield the frames of one file, resized to `size` = (width, height), as RGB uint8.

    Raises DecodeError with a short reason when the file cannot be decoded or holds no frame.
    One frame at a time is held in memory, however long the video.
    """
    import av

    point(f"decode:{key}")
    width, height = size
    try:
        frame_count = _count_frames(path) if kind == "video" else 1
        with _open(path, kind) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            produced = 0
            for index, frame in enumerate(container.decode(stream)):
                if kind == "image" and index > 0:
                    break  # multi-frame images (animated, multi-page): the first frame only
                if index % frame_stride:
                    continue
                rgb = _resize_rgb(frame, width, height)
                name = key if kind == "image" else frame_name(key, index, frame_count)
                yield Frame(name=name, index=None if kind == "image" else index, rgb=rgb)
                produced += 1
            if produced == 0:
                raise DecodeError("no decodable frame")
    except DecodeError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise DecodeError(_describe(e)) from None
