"""Thumbnails of decoded frames: small JPEGs made while the frame is in memory (no second decode).

A thumbnail is THUMB_SIZE pixels on its long side, in the frame's displayed aspect ratio (after
rotation), made from the frame already resized to the model's input (swscale's area filter,
then FFmpeg's MJPEG encoder, both through PyAV: no new dependency). A model input smaller than
the thumbnail is enlarged; the default model's 128x128 input is larger.

Why JPEG through PyAV (measured on this 2-vCPU machine, a 128x128 frame to 96x72, per frame):
PyAV's MJPEG encoder 0.25 ms and ~1.1 KB, Pillow's JPEG 0.23-0.25 ms and ~1.4 KB (Pillow
comes with matplotlib, but is not a dependency of ours), PyAV's libwebp 0.79 ms and ~0.6 KB. A
run spends 1-3 ms a frame (bench/RESULTS.md), so WebP's encoder alone would cost a quarter of
it; JPEG stays under a tenth. Encoder contexts are kept per thread and size.
"""

from __future__ import annotations

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


def thumb_size(width: int, height: int, size: int = THUMB_SIZE) -> tuple[int, int]:
    """(width, height) of the thumbnail of a width x height picture: `size` on the long side,
    even sizes (4:2:0 chroma), at least 8."""
    long = max(width, height, 1)

    def side(n: int) -> int:
        return max(8, 2 * round(n * size / long / 2))

    return side(width), side(height)


def _encoder(width: int, height: int) -> Any:
    import av

    cache: dict[tuple[int, int], Any] = getattr(_local, "encoders", None) or {}
    _local.encoders = cache
    ctx = cache.get((width, height))
    if ctx is None:
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
        ctx.time_base = Fraction(1, 25)
        # One thread: FFmpeg's threading costs more than a 96 px picture (0.06 -> 0.02 ms).
        ctx.options = {"qmin": _QSCALE, "qmax": _QSCALE, "threads": "1"}
        ctx.open()
        cache[(width, height)] = ctx
        _local.pts = 0
    return ctx


def encode_thumbnail(rgb: npt.NDArray[np.uint8], display_wh: tuple[int, int]) -> bytes:
    """A JPEG thumbnail of `rgb` ((h, w, 3) uint8, any size) shown at the aspect ratio of
    `display_wh`, the picture's size as a player shows it."""
    import av
    from av.video.reformatter import VideoReformatter

    w, h = thumb_size(*display_wh)
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    small = reformatter.reformat(frame, width=w, height=h, format="yuvj420p", interpolation="AREA")
    ctx = _encoder(w, h)
    _local.pts += 1
    small.pts = _local.pts  # the encoder wants rising timestamps
    return b"".join(bytes(p) for p in ctx.encode(small))
