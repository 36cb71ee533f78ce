"""Thumbnails of decoded frames: small JPEGs made while the frame is in memory (no second decode).

A thumbnail is THUMB_SIZE pixels on its long side, in the frame's displayed aspect ratio (after
rotation), made from the frame already resized to the model's input (swscale's area filter,
then FFmpeg's MJPEG encoder, both through PyAV: no new dependency). A model input smaller than
the thumbnail is enlarged; the default model's 128x128 input is larger.

Why JPEG through PyAV (measured on this 2-vCPU machine, a 128x128 frame to 96x72, per frame,
with FFmpeg's default threading): PyAV's MJPEG encoder 0.25 ms and ~1.1 KB, Pillow's resize and
JPEG 0.23-0.25 ms and ~1.4 KB (Pillow was not yet a dependency of ours),
PyAV's libwebp 0.79 ms and ~0.6 KB. A run spends 1-3 ms a frame (bench/RESULTS.md), so WebP
alone would cost a quarter of it. With one thread for swscale and the encoder (below) the JPEG
path is ~0.1 ms: from_ndarray 0.02, the resize 0.04-0.05, the encoder 0.02. Encoders are kept
per thread and size.
"""

from __future__ import annotations

import logging
import threading
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

THUMB_SIZE = 96  # pixels on the long side
THUMB_FORMAT = "jpeg"  # the MIME subtype of the bytes (image/jpeg)
_QSCALE = "7"  # MJPEG's quantiser, 2 (best) to 31: ~1 KB at 96x72

_local = threading.local()
log = logging.getLogger("datapool")


def thumb_size(width: int, height: int, size: int = THUMB_SIZE) -> tuple[int, int]:
    """(width, height) of the thumbnail of a width x height picture: `size` on the long side,
    even sizes (4:2:0 chroma), at least 8."""
    long = max(width, height, 1)

    def side(n: int) -> int:
        return max(8, 2 * round(n * size / long / 2))

    return side(width), side(height)


class _Encoder:
    """An MJPEG encoder of one thumbnail size, and the timestamp of its last picture (an
    encoder refuses a timestamp that does not rise: "Invalid argument")."""

    def __init__(self, width: int, height: int) -> None:
        import av

        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
        ctx.time_base = Fraction(1, 25)
        # One thread: FFmpeg's threading costs more than a 96 px picture (0.06 -> 0.02 ms).
        ctx.options = {"qmin": _QSCALE, "qmax": _QSCALE, "threads": "1"}
        ctx.open()
        self.ctx, self.pts = ctx, 0

    def encode(self, frame: Any) -> bytes:
        self.pts += 1
        frame.pts = self.pts
        return b"".join(bytes(p) for p in self.ctx.encode(frame))


def _encoder(width: int, height: int) -> _Encoder:
    cache: dict[tuple[int, int], _Encoder] | None = getattr(_local, "encoders", None)
    if cache is None:
        cache = _local.encoders = {}
    enc = cache.get((width, height))
    if enc is None:
        enc = cache[(width, height)] = _Encoder(width, height)
    return enc


def encode_thumbnail(rgb: npt.NDArray[np.uint8], display_wh: tuple[int, int]) -> bytes:
    """A JPEG thumbnail of `rgb` ((h, w, 3) uint8, any size) shown at the aspect ratio of
    `display_wh`, the picture's size as a player shows it; b"" (and a warning) where FFmpeg
    fails: a thumbnail only decorates the report, and never costs a file its samples."""
    import av
    from av.video.reformatter import VideoReformatter

    w, h = thumb_size(*display_wh)
    try:
        reformatter = getattr(_local, "reformatter", None)
        if reformatter is None:
            reformatter = _local.reformatter = VideoReformatter()
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        # One thread: swscale's automatic threading costs more than it saves on a 128 px
        # picture (0.09 -> 0.04 ms of CPU, 0.18 -> 0.05 ms of wall time).
        try:
            small = reformatter.reformat(
                frame, width=w, height=h, format="yuvj420p", interpolation="AREA", threads=1
            )
        except TypeError:  # PyAV before 14: no `threads`
            small = reformatter.reformat(
                frame, width=w, height=h, format="yuvj420p", interpolation="AREA"
            )
        return _encoder(w, h).encode(small)
    except (av.error.FFmpegError, ValueError) as e:
        log.warning("no thumbnail of a %dx%d picture: %s", w, h, e)
        return b""
