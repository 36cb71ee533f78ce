"""Write real encoded media with PyAV: images (JPEG, PNG, BMP, TIFF, WebP) and H.264 MP4 videos.

Used by `datapool demo`, the tests and the benchmarks, so that everything datapool reads in them
was encoded by a real codec.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

_IMAGE_CODECS = {
    "jpg": ("mjpeg", "yuvj420p"),
    "jpeg": ("mjpeg", "yuvj420p"),
    "png": ("png", "rgb24"),
    "bmp": ("bmp", "bgr24"),
    "tif": ("tiff", "rgb24"),
    "tiff": ("tiff", "rgb24"),
    "webp": ("libwebp", "yuv420p"),
}


def write_image(path: str | Path, rgb: npt.NDArray[np.uint8], quality: int = 3) -> Path:
    """Encode an (H, W, 3) uint8 RGB array to the format named by the file's extension."""
    import av

    path = Path(path)
    codec, pix_fmt = _IMAGE_CODECS[path.suffix.lower().lstrip(".")]
    h, w = rgb.shape[:2]
    if pix_fmt.startswith("yuv") and (h % 2 or w % 2):
        rgb = rgb[: h - h % 2, : w - w % 2]
        h, w = rgb.shape[:2]
    ctx = cast("av.VideoCodecContext", av.CodecContext.create(codec, "w"))
    ctx.width, ctx.height, ctx.pix_fmt = w, h, pix_fmt
    ctx.time_base = Fraction(1, 25)
    if codec == "mjpeg":
        ctx.options = {"qscale": str(quality)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
        format=pix_fmt
    )
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(
        bytes(p) for p in ctx.encode(None)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_video(
    path: str | Path,
    frames: Iterable[npt.NDArray[np.uint8]],
    fps: int = 10,
    crf: int = 23,
    rotation: int = 0,
    times: Sequence[float] | None = None,
    sample_aspect: Fraction | None = None,
) -> Path:
    """Encode (H, W, 3) uint8 RGB frames (even width and height) as H.264 in an MP4/MKV/MOV file.

    `rotation` (degrees, counterclockwise) is stored as the display matrix that phones write.
    `times` gives each frame's presentation time in seconds, for variable frame rate video
    (the time base is then 1/1000 s); by default frame i is at i / fps. `sample_aspect` is the
    width of a pixel over its height as a player shows it (anamorphic video), 1 by default.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = None
        n = 0
        for rgb in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
                if times is not None:
                    stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
                if rotation:
                    stream.set_display_rotation(rotation)
                if sample_aspect is not None:
                    stream.codec_context.sample_aspect_ratio = sample_aspect
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if times is not None:
                frame.pts = round(times[n] * 1000)
                frame.time_base = Fraction(1, 1000)
            n += 1
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode(None):
                container.mux(packet)
    return path
