"""Decode images and video frames with PyAV, streaming, resized to the model's input by swscale
(area averaging when shrinking, bilinear when enlarging; the aspect ratio is not kept).

Frames are named as Lightly names them (datapool.naming): `cam/clip-007-mp4.png` is frame 7 of a
100-frame `cam/clip.mp4`; images keep their key.

Video details:
- `frame_stride=S` keeps decoded frames 0, S, 2S, ...; `fps=F` keeps the first frame of every
  1/F-second interval of presentation time, so it follows the real timestamps of variable frame
  rate video rather than assuming a constant rate. Every frame is still decoded (H.264 frames
  depend on each other, and the index must count them all), but a dropped frame is never
  converted, resized or copied out of FFmpeg, which is where most of a kept frame's cost goes.
- A video that starts before a keyframe (cut from a live stream, a TS whose first bytes are
  lost) is read from its first keyframe, as FFmpeg plays it, its frames numbered from there
  (`iter_frames` returns how many leading frames it lost; `_Integrity`).
- Rotation metadata (the display matrix that phones write) is applied: the frame is turned the
  way a player shows it, then sized to the model input.

An animation of more than one frame (GIF, APNG, animated WebP where FFmpeg decodes it) is read as
a video is: every frame, sampled by `frame_stride`/`fps` and named as a video's frames
(`anim-03-gif.png`). One of a single frame is an image. Only those formats are counted
(`_imagesize.may_be_animated`), by their packets.

Images are turned and mirrored by their EXIF Orientation (JPEG, PNG, WebP, TIFF; read by
ingest/_exif.py, all eight values), as viewers and Pillow's `ImageOps.exif_transpose` show them.
A TIFF that FFmpeg decodes black (JPEG-compressed) or not at all (Zstandard, LZMA, ...) is
decoded by Pillow instead (`_tiff_by_pillow`). So is a HEIF image (an iPhone's HEIC, AVIF:
`_heif_by_pillow`), which FFmpeg would give one 512x512 tile of.

Damaged files are skipped, never half-used (Lightly's corruptness check). FFmpeg conceals damage:
a truncated JPEG decodes as its top rows over a grey block, a cut H.264 stream as a smeared last
frame, a JPEG with damaged entropy-coded data as smeared blocks. So a file counts as corrupt when
the decoder reports an error (`err_detect=explode`, for videos and every image format but TIFF,
whose FFmpeg-written files it rejects), marks a frame corrupt, outputs fewer frames than the
packets it was given, or stops short of the duration its header declares; a JPEG must reach its
end-of-image marker and a GIF its trailer (`_truncated`: FFmpeg only logs a GIF cut short and
fills the rest of the picture). Damage that leaves every code valid (a flipped bit in a JPEG's
coefficients, most damage inside WebP or VP9 data) decodes without a sign and is not caught.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import os
import re
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from datapool._testhooks import point
from datapool.errors import DecodeError
from datapool.ingest._exif import (
    exif_orientation,
    orient,
    orientation_of_display_matrix,
    orientation_of_rotation,
    swaps_sides,
)
from datapool.ingest._heifboxes import cut_short as heif_cut_short
from datapool.ingest._heifboxes import heif_kind, largest_picture
from datapool.ingest._imagesize import (
    declared_size,
    is_animated_webp,
    may_be_animated,
    tiff_fields,
    webp_frame_count,
)
from datapool.ingest._mp4boxes import cut_short
from datapool.ingest.thumbnail import encode_thumbnail
from datapool.naming import counted, frame_name
from datapool.sources import READ_FAILED, TRIED_AGAIN, MediaInput, read_media

if TYPE_CHECKING:
    from fractions import Fraction

    import av
    import av.container
    import av.video.reformatter
    import av.video.stream
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class Frame:
    name: str  # the sample's filename in the pool
    index: int | None  # decoded frame number for videos, None for images
    rgb: npt.NDArray[np.uint8]  # (height, width, 3), already resized
    thumb: bytes = b""  # a small JPEG of the frame (ingest/thumbnail.py), when asked for
    # an object crop's pixels in the image as shown (x0, y0, x1, y1): decode.crop_rect
    rect: tuple[int, int, int, int] | None = None
    # Lightly's computed metadata of the picture (ingest/lightly_metrics.py), when asked for:
    # {"sharpness": ..., ...}, measured on the frame at full size as shown
    metadata: dict[str, float] | None = None
    # a still image whose metadata was measured on FFmpeg's pixels: Pillow could not read it
    pillow_unread: bool = False
    # on a video's first sample: which of its several video streams was read and which were
    # not ("" where it has one), for the run to say (video_stream)
    streams: str = ""


def _describe(err: BaseException) -> str:
    """A short reason for the report: FFmpeg's own message, without errno or file path."""
    text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    text = str(text).split(": '", 1)[0]
    if text == "Generic error in an external library":  # zlib's, libwebp's: a bad checksum...
        return "damaged data (the decoder's library rejected it)"
    return text


def out_of_memory(width: int = 0, height: int = 0) -> DecodeError:
    """The reason for a file whose decode could not allocate its frame (FFmpeg's ENOMEM, or
    numpy's MemoryError): the file is skipped with it, as any undecodable one, by either engine
    (a Ray worker's bare MemoryError ended the run in Ray's traceback, a local decode thread's in
    datapool's), and tried again by the next run: memory is the machine's state, not the file's.
    `width` x `height`: the stream's, where known."""
    size = f" ({width}x{height} pixels)" if width > 0 and height > 0 else ""
    return DecodeError(f"{READ_FAILED}not enough memory to decode it{size}{TRIED_AGAIN}")


_local = threading.local()


def _resize_rgb(frame: av.VideoFrame, width: int, height: int) -> npt.NDArray[np.uint8]:
    """Convert and resize with swscale: area averaging when shrinking, bilinear when enlarging."""
    shrinking = frame.width > width or frame.height > height
    out = _reformatter(frame).reformat(
        frame,
        width=width,
        height=height,
        format="rgb24",
        interpolation="AREA" if shrinking else "BILINEAR",
    )
    return cast("npt.NDArray[np.uint8]", out.to_ndarray())


def _reformatter(frame: av.VideoFrame) -> av.video.reformatter.VideoReformatter:
    """The thread's VideoReformatter for frames of this pixel format, colour range and colour
    space, reused so that swscale's context is built once per input size and kind rather than
    once per frame (that halves the cost of small images).

    Not one for every kind: PyAV before 17 keeps the colour range of the frame a context was
    made for, so a limited-range frame (a WebP, an H.264 video) after a full-range JPEG of the
    same size came out washed out, its 16..235 read as 0..255 (PyAV issue 2149)."""
    from av.video.reformatter import VideoReformatter

    cache: dict[tuple[Any, ...], VideoReformatter] | None = getattr(_local, "reformatters", None)
    if cache is None:
        cache = _local.reformatters = {}
    key = (
        frame.format.name,
        getattr(frame, "color_range", None),
        getattr(frame, "colorspace", None),
    )
    reformatter = cache.get(key)
    if reformatter is None:
        if len(cache) >= 16:  # a folder of every kind: do not keep a context for each
            cache.clear()
        reformatter = cache[key] = VideoReformatter()
    return reformatter


_DEEP_YUV = re.compile(r"(yuva?4[0-4][0-4]p)(9|10|12|14|16)(le|be)")


def full_rgb(frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
    """The frame at its own size as RGB (crops, Lightly's metadata, exported frames). A YUV
    frame of more than 8 bits a sample (10-bit HEVC, as phones record HDR video; 10-bit H.264)
    is first brought to 8 bits in its own subsampling: swscale's conversion of such a decoded
    frame straight to RGB at its own size (PyAV 18, FFmpeg 8) smeared colour along edges (a
    test chart's red next to cyan came out (96, 72, 103); mean 4.8 levels off the source,
    where FFmpeg's command line is 2.4 off and this 1.1). Resized to the model's input
    (`_resize_rgb`, whole frames' embeddings) it was right, and is left as it is.

    An interlaced frame (1080i broadcast, camcorders: `ffmpeg -flags +ildct+ilme`) is converted
    as one picture, as FFmpeg's command line converts it (its scale filter's default,
    `interl=0`): swscale's frame API (PyAV 18) converted each field on its own, its chroma
    taken from half the lines, and a test chart's frames came out 5.4 levels off the source
    on average where FFmpeg's command line is 1.4 off (`_progressive`)."""
    deep = _DEEP_YUV.fullmatch(frame.format.name)
    if deep is not None:
        frame = _reformatter(frame).reformat(frame, format=deep.group(1))
    frame = _progressive(frame)
    out = _reformatter(frame).reformat(frame, format="rgb24")
    return cast("npt.NDArray[np.uint8]", out.to_ndarray())


def _progressive(frame: av.VideoFrame) -> av.VideoFrame:
    """`frame` without its interlaced flag (a copy of its pixels; swscale converts a frame so
    flagged field by field, and PyAV cannot clear the flag), or `frame` itself where it is not
    interlaced or is of a format PyAV cannot copy through numpy (yuv411p, as DV writes: its
    fields are then converted each on its own, as before)."""
    if not frame.interlaced_frame:
        return frame
    import av

    try:
        copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    except ValueError:
        return frame
    if (copy.width, copy.height) != (frame.width, frame.height):
        return frame
    copy.color_range, copy.colorspace = frame.color_range, frame.colorspace
    return copy


def _oriented_rgb(
    frame: av.VideoFrame, width: int, height: int, orientation: int
) -> npt.NDArray[np.uint8]:
    """The frame as a viewer shows it, at width x height: turned and mirrored by its EXIF
    `orientation` (1..8: an image's tag, or a video's display-matrix rotation as one)."""
    if orientation == 1:
        return _resize_rgb(frame, width, height)
    # A quarter turn swaps the axes, so size the stored picture transposed.
    w, h = (height, width) if swaps_sides(orientation) else (width, height)
    return orient(_resize_rgb(frame, w, h), orientation)


def _measured(
    frame: av.VideoFrame,
    orientation: int,
    names: tuple[str, ...],
    pillow: npt.NDArray[np.uint8] | None = None,
) -> tuple[dict[str, float], bool]:
    """Lightly's computed metadata `names` of a decoded frame (ingest/lightly_metrics.py), on the
    picture at full size as shown (its EXIF orientation or display-matrix rotation applied): the
    figures are those of the file, not of the resized sample. A still image is measured on
    `pillow`, its pixels as Pillow decodes them (`_pillow_rgb`), where Pillow reads it: Lightly
    reads images with Pillow, and FFmpeg's JPEG decoder gives other pixels (a level or two,
    enough to move uniformRowRatio on smooth gradients). Video frames and animations are
    measured as FFmpeg decodes them (the Lightly Worker decodes videos with FFmpeg). Also says
    whether `pillow` was used (not where it is missing, or of another size than FFmpeg's)."""
    from datapool.ingest.lightly_metrics import measure

    if pillow is not None and pillow.shape[:2] == (frame.height, frame.width):
        rgb, on_pillow = pillow, True
    else:
        rgb, on_pillow = full_rgb(frame), False
    return measure(orient(rgb, orientation) if orientation != 1 else rgb, names), on_pillow


def _pillow_rgb(media: MediaInput) -> npt.NDArray[np.uint8] | None:
    """A still image's pixels as Pillow decodes them (RGB, as stored: not turned), or None
    where Pillow is not installed (a dependency; a broken install) or cannot read the file
    (then FFmpeg's pixels are measured). Nor over Pillow's MAX_IMAGE_PIXELS, where Pillow would
    print a DecompressionBombWarning (it refuses twice that, datapool's MAX_PIXELS)."""
    import io

    import numpy as np

    try:
        from PIL import Image
    except ImportError:
        return None
    wh = declared_size(media)
    if wh is not None and Image.MAX_IMAGE_PIXELS and wh[0] * wh[1] > Image.MAX_IMAGE_PIXELS:
        return None
    data = read_media(media)
    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = np.asarray(img.convert("RGB"))
            return _as_stored(img, data, rgb)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _as_stored(img: Any, data: bytes, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """`rgb`, the pixels Pillow loaded of the image `img` (the file `data`), as the file
    stores them. A Pillow that turns a TIFF by its Orientation as it loads it (13 does) drops
    the tag: the turn is undone, since datapool turns every image by it (`_image_facts`). A
    TIFF turned a quarter was measured on FFmpeg's pixels, with a warning that Pillow could
    not read it, and one turned half or mirrored on pixels turned twice."""
    tags = getattr(img, "tag_v2", None)
    turned = exif_orientation(data) if tags is not None and 274 not in tags else 1
    return orient(rgb, {6: 8, 8: 6}.get(turned, turned)) if turned != 1 else rgb


def _video_orientation(frame: av.VideoFrame) -> int:
    """A video frame's display matrix (phones write it) as an EXIF orientation: its turn and
    its mirror (`orientation_of_display_matrix`, as FFmpeg's command line applies it), or, where
    PyAV gives no matrix, the angle PyAV reads from it. A matrix that is no quarter turn (45
    degrees: `ffmpeg -display_rotation 45`) raises DecodeError saying so: FFmpeg's command line
    turns such a picture inside its own frame, cutting its corners off and filling them black
    ("Odd rotation angle"); datapool read it unturned or turned by the nearest quarter, without
    a word. A matrix that turns nothing (all zero) is shown as stored, as FFmpeg shows it."""
    matrix = _display_matrix(frame)
    if matrix is None:
        return orientation_of_rotation(getattr(frame, "rotation", 0) or 0)
    found = orientation_of_display_matrix(matrix)
    if found is not None:
        return found
    a, b, _, c, d = (v / 65536 for v in matrix[:5])
    if a == c == 0 or b == d == 0:  # no turn at all: FFmpeg shows the picture as stored
        return 1
    raise DecodeError(
        f"its display matrix is a rotation of {_rotation(a, b):g} degrees (as ffprobe says it), "
        "not a quarter turn, which datapool does not apply (FFmpeg cuts the corners off); to "
        "read it unturned, clear it: ffmpeg -display_rotation 0 -i IN -c copy OUT"
    )


def _rotation(a: float, b: float) -> float:
    """The angle of a display matrix whose first row is (a, b), as `av_display_rotation_get`
    and ffprobe give it (counterclockwise degrees, -180 to 180, to a tenth)."""
    import math

    return -round(math.degrees(math.atan2(b, a)), 1) + 0.0


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    """The frame's display matrix side data (9 int32, native byte order), or None.

    Read through a container of its own: `frame.side_data` caches one on the frame that points
    back at it, a cycle only Python's cyclic collector frees, so every decoded frame whose
    matrix was read (a 12 MB 4K picture) stayed in memory until it ran (a run's memory grew
    with a 4K video's length, 1.7 GiB at 180 frames)."""
    import struct

    side_data: Any
    try:
        from av.sidedata.sidedata import SideDataContainer

        side_data = cast("Any", SideDataContainer)(frame)  # PyAV's stubs omit its argument
    except (ImportError, TypeError):  # a PyAV without it: the frame's own, freed later
        side_data = frame.side_data
    try:
        data = side_data.get("DISPLAYMATRIX")
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    raw = bytes(cast("bytes", data)) if data is not None else b""
    return struct.unpack("=9i", raw) if len(raw) == 36 else None


def _thumbnail(
    frame: av.VideoFrame, rgb: npt.NDArray[np.uint8], orientation: int, sar: float = 1.0
) -> bytes:
    """The JPEG thumbnail of a decoded frame, from its resized picture `rgb`, in the frame's
    displayed aspect ratio: its pixels `sar` times as wide as high (the stream's sample aspect
    ratio: anamorphic DV, HDV and broadcast video), then a quarter turn swaps its sides."""
    wh = (max(1, round(frame.width * sar)), frame.height)
    return encode_thumbnail(rgb, wh[::-1] if swaps_sides(orientation) else wh)


def stream_sar(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The stream's sample aspect ratio as its container or codec gives it, None where neither
    does."""
    return stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio or None


def _sample_aspect(stream: av.video.stream.VideoStream) -> float:
    """The width of the stream's pixels over their height as a player shows them (1 where the
    stream does not say, or says something out of reason)."""
    sar = stream_sar(stream)
    ratio = float(sar) if sar else 1.0
    return ratio if 0.1 <= ratio <= 10 else 1.0


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


@functools.cache
def _stream_options_safe() -> bool:
    """Whether this PyAV takes stream options for streams that probing finds (17 and later)."""
    import av

    major = av.__version__.split(".", 1)[0]
    return not major.isdigit() or int(major) >= 17


def _open(media: MediaInput, kind: str) -> av.container.InputContainer:
    """Open a path or a seekable file object (rewound first) whose first video stream has a known
    size within MAX_PIXELS."""
    import av

    wh = declared_size(media) if kind == "image" else None
    if wh is not None:
        if wh[0] * wh[1] > MAX_PIXELS:
            raise _too_big(*wh)
    # max_pixels also guards FFmpeg's probing, as a stream option. PyAV before 17 gives stream
    # options to streams by index and crashes (SIGSEGV) on a stream found only by probing
    # (MPEG-PS .mpg, FLV: no streams in a header); there the option goes to the container
    # only, and the size check below still refuses a frame over the limit before decoding.
    limit = {"max_pixels": str(MAX_PIXELS)}
    safe = _stream_options_safe()
    options, container_options = (limit, None) if safe else (None, limit)
    if isinstance(media, (str, os.PathLike)):
        if os.path.getsize(media) == 0:
            raise DecodeError("empty file (0 bytes)")  # FFmpeg's "Invalid data found" says less
        container = av.open(
            os.fspath(media), "r", options=options, container_options=container_options
        )
    else:
        if media.seek(0, os.SEEK_END) == 0:
            raise DecodeError("empty file (0 bytes)")
        media.seek(0)
        container = av.open(media, "r", options=options, container_options=container_options)
    try:
        ctx = video_stream(container).codec_context
        if ctx is None:  # PyAV 18 opens no decoder for a stream whose codec parameters are gone
            raise DecodeError("no decoder opens its video stream (damaged or truncated)")
        if ctx.width * ctx.height > MAX_PIXELS:
            raise _too_big(ctx.width, ctx.height)
        if ctx.width * ctx.height == 0 and is_animated_webp(media):
            raise DecodeError("animated WebP: this FFmpeg cannot decode it (not damaged)")
        if ctx.width * ctx.height == 0 and wh is not None:  # the header is fine, the data not
            raise DecodeError(
                f"damaged or truncated: its header says {wh[0]}x{wh[1]}, but no frame decodes"
            )
        if ctx.width * ctx.height == 0:
            raise DecodeError(
                "cannot read the frame size from the header (not valid media, damaged, or over "
                f"{MAX_PIXELS} pixels)"
            )
    except BaseException:
        container.close()
        raise
    return container


# TIFF compressions FFmpeg's decoder reads (none, CCITT RLE, G3, G4, LZW, Deflate, PackBits).
# It takes JPEG (6, 7) too, but outside DNG gives a black picture (white in CMYK) without an
# error; the others (Zstandard, WebP, LZMA in this build, JPEG 2000) it fails to decode.
_FFMPEG_TIFF = frozenset({1, 2, 3, 4, 5, 8, 32773, 32946})
_TIFF_COMPRESSION = {
    6: "old-style JPEG",
    7: "JPEG",
    34712: "JPEG 2000",
    34887: "LERC",
    34925: "LZMA",
    50000: "Zstandard",
    50001: "WebP",
}
# TIFF photometric interpretations FFmpeg's decoder lacks ("Not yet implemented": the file was
# called damaged). Pillow decodes CIELab (its mode LAB, converted to sRGB); the others, which
# it does not read either, are refused naming them.
_FFMPEG_LACKS_PHOTOMETRIC = {8: "CIELab", 9: "ICCLab", 10: "ITULab", 32844: "LogL", 32845: "LogLuv"}
# The Pillow modes whose convert("RGB") gives the picture as stored (8 bits a sample)
_PILLOW_RGB = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB"}
)


# A TIFF's first four bytes (little- and big-endian)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _tiff_by_pillow(media: MediaInput) -> av.VideoFrame | None:
    """The first page of a TIFF that FFmpeg reads wrong or not at all, decoded by Pillow (its
    libtiff) as an RGB frame, as stored (not turned); None for any other file (FFmpeg decodes
    it). FFmpeg decodes a JPEG-compressed TIFF (as scanners, Photoshop and microscopes write
    them) as a black picture (white in CMYK) without a word; one of another compression it
    lacks (Zstandard, LZMA, WebP, JPEG 2000), of 32-bit or floating-point samples, or in CIELab
    colour, it fails on, and the file was called damaged. Pillow's pixels are those Lightly
    reads. A page Pillow cannot give as 8-bit RGB (32-bit integer or float samples: no one
    scale to 0..255 is right) raises DecodeError saying so; 16-bit grey is scaled down by 256,
    and inverted where it is WhiteIsZero, as FFmpeg's is (Pillow gives its samples as stored);
    CIELab is converted to sRGB by Pillow."""
    if _head(media, 4) not in _TIFF_MAGIC:
        return None  # (not a TIFF: no need to read the file again)
    data = read_media(media)
    fields = tiff_fields(data, frozenset({256, 257, 258, 259, 262, 273, 279, 324, 325, 339}))
    if not fields:
        return None
    compression = fields.get(259, (1,))[0]
    bits = max(fields.get(258, (1,)))
    sample_format = max(fields.get(339, (1,)))
    photometric = fields.get(262, (1,))[0]
    if (
        compression in _FFMPEG_TIFF
        and bits <= 16
        and sample_format == 1
        and photometric not in _FFMPEG_LACKS_PHOTOMETRIC
    ):
        return None
    w, h = fields.get(256, (0,))[0], fields.get(257, (0,))[0]
    if w * h > MAX_PIXELS:
        raise _too_big(w, h)
    import io

    import av
    import numpy as np
    from PIL import Image

    what = _TIFF_COMPRESSION.get(compression, f"compression {compression}")
    label = f"{what}-compressed TIFF"
    if compression in _FFMPEG_TIFF:
        what = "uncompressed" if compression == 1 else f"compression {compression}"
        label = "TIFF"
    if compression == 7:  # libjpeg conceals damage (a warning Pillow does not pass on)
        cut = _jpeg_strip_cut(data, fields)
        if cut is not None:
            raise DecodeError(f"{label}: {cut}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in _PILLOW_RGB:
                rgb = np.asarray(img.convert("RGB"))
            elif img.mode.startswith("I;16"):
                grey = (np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8)
                if photometric == 0:  # WhiteIsZero (Pillow gives 16-bit samples as stored)
                    grey = 255 - grey
                rgb = np.repeat(grey[..., None], 3, axis=2)
            elif bits > 16 or sample_format != 1:
                raise DecodeError(
                    f"a TIFF ({what}) of {bits}-bit {'floating-point ' * (sample_format == 3)}"
                    f"samples (Pillow's mode {img.mode}), which datapool does not read: no one "
                    "scale to 8-bit colour is right for them (not damaged); convert it to 8 or "
                    "16 bits"
                )
            else:
                raise DecodeError(
                    f"a TIFF ({what}) of {bits}-bit samples that Pillow gives as its mode "
                    f"{img.mode}, which datapool does not convert to colour (not damaged); "
                    "convert it to 8-bit RGB"
                )
            rgb = _as_stored(img, data, rgb)  # (datapool turns it by its Orientation)
    except Image.UnidentifiedImageError:
        colour = _FFMPEG_LACKS_PHOTOMETRIC.get(photometric)
        if colour is None:
            raise DecodeError(f"{label}: Pillow cannot identify it") from None
        raise DecodeError(
            f"a TIFF ({what}) in {colour} colour (PhotometricInterpretation {photometric}), "
            "which datapool does not read (not damaged); convert it to RGB"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DecodeError(f"{label}: {_describe(e)}") from None
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def _by_pillow(media: MediaInput) -> av.VideoFrame | None:
    """The still image `media` decoded by Pillow where FFmpeg reads it wrong or not at all (a
    TIFF: `_tiff_by_pillow`; a HEIF image: `_heif_by_pillow`), None for any other file. Its
    first bytes are read once here (every image comes this way): each of the two reads them
    again only for a file of its kind."""
    head = _head(media, 64)
    if head[:4] in _TIFF_MAGIC:
        return _tiff_by_pillow(media)
    return _heif_by_pillow(media) if heif_kind(head) is not None else None


# The install that reads a HEIC, for the reason of one skipped without it
HEIF_INSTALL = "pip install 'datapool[heif]'"


@functools.cache
def _heif_opener() -> bool:
    """Whether pillow-heif (the extra `datapool[heif]`) is installed: then Pillow opens HEIC and
    HEIF files through it (registered once; only HEIF: AVIF is Pillow's own)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _heif_by_pillow(media: MediaInput) -> av.VideoFrame | None:
    """The primary image of a HEIF file (an iPhone's HEIC, AVIF) decoded by Pillow as an RGB
    frame as a phone shows it, None for any other file. FFmpeg reads one 512x512 tile of an
    iPhone's HEIC (a grid of them) and applies none of HEIF's own transforms; libheif
    (pillow-heif, for HEIC and HEIF) and libavif (Pillow's own, for AVIF; 11.3 and newer
    wheels) decode the grid whole, and its primary image where it holds several (a burst), 10
    and 12 bits a sample scaled to 8. The picture is turned and mirrored by HEIF's rotation and
    mirror properties (`irot`, `imir`), as iOS and libheif show it, and never again by an EXIF
    Orientation inside (an iPhone writes both; HEIF's transforms are the ones that count, and
    `exif_orientation` gives 1 for a HEIF file). Alpha is dropped, its colours kept, as FFmpeg
    does a PNG's. A file cut short (`_truncated`, checked before), one over MAX_PIXELS, an AVIF
    image sequence, and a HEIC where pillow-heif is not installed raise DecodeError saying so
    (the last as a failed read, `READ_FAILED`: the next run tries it again)."""
    kind = heif_kind(_head(media, 64))
    if kind is None:
        return None
    data = read_media(media)
    wh = largest_picture(data)
    if wh is not None and wh[0] * wh[1] > MAX_PIXELS:
        raise _too_big(*wh)
    import io
    import warnings

    import av
    import numpy as np
    from PIL import Image, features

    # (The decoder missing is the machine's state, not the file's: tried again by every run,
    # as a failed read is, so the run after the install reads it.)
    if kind == "AVIF" and not features.check("avif"):
        raise DecodeError(
            f"{READ_FAILED}an AVIF image, which this Pillow cannot read (not damaged): "
            f"pip install -U 'Pillow>=11.3' (its wheels read AVIF){TRIED_AGAIN}"
        )
    if kind != "AVIF" and not _heif_opener():
        raise DecodeError(
            f"{READ_FAILED}a {kind} image, which datapool reads with pillow-heif, not installed "
            f"(not damaged): {HEIF_INSTALL}{TRIED_AGAIN}"
        )
    # Pillow warns of a picture over its MAX_IMAGE_PIXELS (MAX_PIXELS, twice that, was checked):
    # hushed only there, since catch_warnings swaps the process's filters under other threads
    limit = Image.MAX_IMAGE_PIXELS
    big = limit is not None and (wh is None or wh[0] * wh[1] > limit)
    try:
        with warnings.catch_warnings() if big else contextlib.nullcontext():
            if big:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            frames = int(getattr(img, "n_frames", 1))
            if img.format == "AVIF" and frames > 1:  # (pillow-heif counts a burst)
                raise DecodeError(
                    f"an AVIF image sequence of {frames} frames, which datapool does not "
                    "read (not damaged): convert it to a video (MP4, WebM) to use it"
                )
            img.load()
            rgb = np.asarray(img.convert("RGB"))
            # Pillow's AVIF gives the picture as stored, its irot/imir as the EXIF Orientation
            # it sets (and only them); pillow-heif's is turned by libheif, that tag reset to 1.
            # (Read from that block alone: Pillow's getexif would take an XMP orientation too.)
            turn, exif = 1, img.info.get("exif") if img.format == "AVIF" else None
            if exif:
                tags = Image.Exif()
                tags.load(exif)
                turn = tags.get(0x0112, 1) if tags.get(0x0112, 1) in range(1, 9) else 1
    # (RuntimeError, EOFError: libavif's and libheif's failures on a damaged file, which
    # crashed the run with a traceback)
    except (
        OSError,
        ValueError,
        SyntaxError,
        RuntimeError,
        EOFError,
        Image.DecompressionBombError,
    ) as e:
        raise DecodeError(f"{kind}: {_describe(e)}") from None
    rgb = orient(rgb, turn) if turn != 1 else rgb
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def _head(media: MediaInput, n: int) -> bytes:
    """The first `n` bytes of a path or a seekable file object (left rewound)."""
    if isinstance(media, (str, os.PathLike)):
        with open(media, "rb") as f:
            return f.read(n)
    media.seek(0)
    head = bytes(media.read(n))
    media.seek(0)
    return head


def _jpeg_strip_cut(data: bytes, fields: dict[int, tuple[int, ...]]) -> str | None:
    """What is missing from a JPEG-compressed TIFF whose strips (or tiles) do not each hold a
    whole JPEG stream, ending with its end-of-image marker; None where they do. Pillow decodes
    a strip cut short, or lost to zeros, as its top rows over grey, without an error."""
    offsets, counts = fields.get(273) or fields.get(324), fields.get(279) or fields.get(325)
    for k, (at, n) in enumerate(zip(offsets or (), counts or ())):
        if at + n > len(data):
            return f"the file ends inside strip {k} (truncated)"
        if b"\xff\xd9" not in data[max(at, at + n - 16) : at + n]:
            return f"strip {k} has no end-of-image marker (truncated or damaged)"
    return None


class _Still:
    """In place of `_Integrity` for a still picture decoded otherwise than by FFmpeg
    (`_tiff_by_pillow`): its decode checked the picture already."""

    lead = 0
    now = 0.0

    def finish(self, kind: str) -> None:
        pass


_ATTACHED_PIC = 0x0400  # AV_DISPOSITION_ATTACHED_PIC (PyAV's Disposition enum is 13 and later)


def _disposition(stream: av.video.stream.VideoStream) -> int:
    """The stream's disposition bits: PyAV 13-16 give an enum.Flag, which int() refuses."""
    flags = getattr(stream, "disposition", 0) or 0
    return int(getattr(flags, "value", flags))


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The video stream datapool reads: the one FFmpeg's `av_find_best_stream` picks (a player's
    choice: the default stream, else the one with most frames and the highest bit rate) among
    those that are not an attached picture. An attached picture (the cover art of a music or
    podcast file, a video's poster frame) is a one-frame "video" stream that is no video; a file
    with nothing else has no video (DecodeError), rather than one sample of its cover."""
    streams = [s for s in container.streams.video if not _ATTACHED_PIC & _disposition(s)]
    if not streams:
        what = ["audio only"] if container.streams.audio else []
        what += ["a cover picture"] if container.streams.video else []
        raise DecodeError("no video or image stream" + (f" ({', '.join(what)})" if what else ""))
    if len(streams) == 1:
        return streams[0]
    best = container.streams.best("video")
    return best if best in streams else streams[0]


def _streams_read(container: av.container.InputContainer, read: av.video.stream.VideoStream) -> str:
    """Where a file holds several video streams (a dashcam's front and rear cameras, a
    preview track), which one `video_stream` read and which it did not; "" for one stream."""
    videos = [s for s in container.streams.video if not _ATTACHED_PIC & _disposition(s)]
    if len(videos) < 2:
        return ""

    def says(s: av.video.stream.VideoStream) -> str:
        return f"#{s.index} {s.codec_context.width}x{s.codec_context.height}"

    others = ", ".join(says(s) for s in videos if s is not read)
    return f"read video stream {says(read)} of {len(videos)}; not read: {others}"


def _count_frames(media: MediaInput) -> int:
    """Frame count from the container, or by demuxing packets (no decoding) where it is unknown
    or plainly short (`_undercounted`). Frame names are padded to its digits (naming.py)."""
    with _open(media, "video") as container:
        stream = video_stream(container)
        if stream.frames and not _undercounted(container, stream):
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


def _undercounted(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> bool:
    """Whether the stream's frame count is far short of its duration times its frame rate: a
    fragmented MP4 whose moov holds its first samples (`-movflags frag_keyframe` without
    `empty_moov`) counts only those (4 of 120), and its frames were named with the padding of
    4 (`clip-7-mp4.png` ... `clip-119-mp4.png`, out of order when sorted)."""
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    seconds = _declared_duration(stream)
    if seconds is None and container.duration:
        seconds = container.duration / 1_000_000
    return seconds is not None and seconds * rate > 2 * stream.frames + 2


def declared_frames(media: MediaInput) -> int | None:
    """A video's frame count as its header declares it, reading no frames: the stream's count,
    else its duration times its frame rate; None where neither is known or the file is not
    readable (decoding says why later). For progress estimates only."""
    import av

    try:
        with _open(media, "video") as container:
            stream = video_stream(container)
            if stream.frames:
                return int(stream.frames)
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            seconds = _declared_duration(stream)
            if seconds is None and container.duration:
                seconds = container.duration / 1_000_000
            return max(1, round(seconds * rate)) if rate and seconds else None
    except (DecodeError, av.error.FFmpegError, ValueError, IndexError, OSError):
        return None


class _Clock:
    """A video's presentation time as it plays: the frames' timestamps, except that time runs
    on where they jump back (recordings joined end to end, `cat a.ts b.ts`, each starting again
    from its own zero; a camera's clock reset): the frame after the jump comes one frame
    (1/`rate`) after the one before it, as FFmpeg joins such a stream for playback. A frame
    without a timestamp also comes one frame after the one before. A jump forward (a recording
    paused) is real time and stays."""

    def __init__(self, rate: float) -> None:
        self.step = 1 / rate
        self.shift = 0.0  # added to the stream's times after each jump back
        self.prev: float | None = None  # the previous frame's time on this clock

    def at(self, time: float | None) -> float:
        prev = self.prev
        if time is None:
            t = 0.0 if prev is None else prev + self.step
        else:
            t = time + self.shift
            if prev is not None and t < prev:  # a jump back: go on from the frame before
                self.shift += prev + self.step - t
                t = prev + self.step
        self.prev = t
        return t


class _FpsFilter:
    """Keeps the first frame of each 1/fps-second interval of presentation time (VFR-safe), on
    the `_Clock`: before it, every frame after timestamps that jump back fell in a slot already
    taken, and the rest of the video was dropped without a word."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.t0: float | None = None
        self.last_slot = -1

    def keep(self, t: float) -> bool:
        if self.t0 is None:
            self.t0 = t
        slot = int((t - self.t0) * self.fps + 1e-6)
        if slot <= self.last_slot:
            return False
        self.last_slot = slot
        return True


def iter_frames(
    media: MediaInput,
    key: str,
    kind: str,
    size: tuple[int, int] | None,
    frame_stride: int = 1,
    fps: float | None = None,
    on_decoded: Callable[[int, int], None] | None = None,
    thumbnails: bool = False,
    cut: Cutter | None = None,
    measure: tuple[str, ...] = (),
) -> Generator[Frame, None, int]:
    """Yield the frames of one file, resized to `size` = (width, height) (None: at full size
    as shown, its orientation applied, as `datapool predict` reads them), as RGB uint8, each
    with its JPEG thumbnail when `thumbnails` (made from that resized frame: no second decode).
    With `cut` (crop selection), the object crops of each frame kept (or of the image) instead:
    `_cut`, each with its pixels in `Frame.rect`. With `measure` (names of Lightly's computed
    metadata: sharpness, snr, uniformRowRatio), each frame kept carries them in
    `Frame.metadata`, measured on the frame at full size (`_measured`).

    `on_decoded(decoded, frame_count)` is called after each decoded frame (kept or not) with the
    frames decoded so far and the count the container declares (1 for an image): progress.

    `media` is a local path or a seekable binary file object. Raises DecodeError with a short
    reason when the file cannot be decoded, holds no frame or is damaged (see the module's
    docstring); a damaged video may raise after some of its frames were yielded. One frame at a
    time is held in memory, however long the video.

    A video is read from its first keyframe, as FFmpeg plays it: the frames before it (a
    recording cut from a live stream, an IP camera's, a TS whose first bytes are lost) refer to
    pictures that are not in the file. Returns how many such leading frames were not read (0 for
    most files), for the run to say; the frames read are numbered from 0, as FFmpeg numbers the
    frames it outputs. Only a file in which no packet is marked a keyframe is read from its
    first packet (some formats mark none), as before.
    """
    point(f"decode:{key}")
    try:
        return (
            yield from _iter_frames(
                media, key, kind, size, frame_stride, fps, on_decoded, thumbnails, cut, measure
            )
        )
    except _NoKeyframe:  # nothing was yielded: read it from its first packet
        try:
            return (
                yield from _iter_frames(
                    media,
                    key,
                    kind,
                    size,
                    frame_stride,
                    fps,
                    on_decoded,
                    thumbnails,
                    cut,
                    measure,
                    from_keyframe=False,
                )
            )
        except DecodeError as e:
            raise DecodeError(
                f"no keyframe (a recording cut after its last one?), and {e}"
            ) from None
    except DecodeError as e:
        # An MP4 or MOV cut short fails as `Invalid data found` or with no video stream: say
        # it is incomplete (not a reason to try again, as `read failed` is).
        if kind == "video" and not str(e).startswith(READ_FAILED):
            ext = key.rsplit(".", 1)[-1].upper() if "." in key else "video"
            reason = cut_short(media, ext)
            if reason is not None:
                raise DecodeError(reason) from None
        raise


class _NoKeyframe(Exception):
    """No packet of the video is marked a keyframe (raised before any frame is decoded)."""


def _iter_frames(
    media: MediaInput,
    key: str,
    kind: str,
    size: tuple[int, int] | None,
    frame_stride: int,
    fps: float | None,
    on_decoded: Callable[[int, int], None] | None,
    thumbnails: bool,
    cut: Cutter | None,
    measure: tuple[str, ...],
    from_keyframe: bool = True,
) -> Generator[Frame, None, int]:
    """`iter_frames`, a video read from its first keyframe where `from_keyframe`."""
    import av

    width, height = size or (0, 0)
    stream_wh = (0, 0)  # the stream's size, for the reason of a decode out of memory
    try:
        orientation, frame_count = (
            _image_facts(media) if kind == "image" else (None, _count_frames(media))
        )
        # An animation (GIF, APNG, animated WebP) of more than one frame is read as a video:
        # every frame, sampled and named as a video's (`anim-03-gif.png`).
        frames_of = kind if kind == "video" or frame_count == 1 else "animation"
        # a TIFF that FFmpeg decodes black, or not at all, and a HEIF image are decoded by Pillow
        still = _by_pillow(media) if frames_of == "image" else None
        # Lightly's metadata of a still image is measured on Pillow's pixels (read before the
        # container is opened: a file object is not shared with FFmpeg while it reads)
        pillow = None
        if measure and frames_of == "image":
            pillow = _pillow_rgb(media) if still is None else full_rgb(still)
        with contextlib.ExitStack() as opened:
            check: _Integrity | _Still = _Still()
            by_time, streams, sar = None, "", 1.0
            decoded: Iterator[av.VideoFrame] = iter(() if still is None else (still,))
            if still is None:
                container = opened.enter_context(_open(media, kind))
                stream = video_stream(container)
                stream_wh = (stream.codec_context.width, stream.codec_context.height)
                stream.thread_type = "AUTO"
                if kind == "video" or stream.codec_context.name != "tiff":  # FFmpeg's own TIFFs
                    stream.codec_context.options = {"err_detect": "explode"}
                rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
                if fps is not None and frames_of != "image":
                    by_time = _FpsFilter(fps)
                check = _Integrity(stream, rate, frames_of, from_keyframe and kind == "video")
                decoded = check.frames(container)
                if kind == "video":
                    streams = _streams_read(container, stream)
                    # An image's aspect (JFIF's density, PNG's pHYs) is one viewers ignore.
                    sar = _sample_aspect(stream)
            for index, frame in enumerate(decoded):
                if frames_of == "image" and index > 0:
                    break  # multi-page images (TIFF): the first page only
                if on_decoded is not None:
                    on_decoded(index + 1, frame_count)
                if index % frame_stride:
                    continue
                if by_time is not None and not by_time.keep(check.now):
                    continue
                turn = _video_orientation(frame) if orientation is None else orientation
                name = key if frames_of == "image" else frame_name(key, index, frame_count)
                at = None if frames_of == "image" else index
                if cut is not None and size is not None:  # crop selection: objects are samples
                    yield from _cut(frame, name, turn, cut, size, thumbnails, at)
                    continue
                if size is None:  # at full size as shown
                    full = full_rgb(frame)
                    rgb = orient(full, turn) if turn != 1 else full
                else:
                    rgb = _oriented_rgb(frame, width, height, turn)
                thumb = _thumbnail(frame, rgb, turn, sar) if thumbnails else b""
                measured, unread = None, False
                if measure:
                    measured, on_pillow = _measured(frame, turn, measure, pillow)
                    unread = frames_of == "image" and not on_pillow
                yield Frame(name, at, rgb, thumb, None, measured, unread, streams)
                streams = ""
            check.finish(frames_of)
            return check.lead
    except (DecodeError, _NoKeyframe):
        raise
    except MemoryError:  # numpy's, or FFmpeg's ENOMEM (av.error.MemoryError is both)
        raise out_of_memory(*stream_wh) from None
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise DecodeError(_describe(e)) from None


class _Integrity:
    """Decodes a stream packet by packet and says whether the decoder concealed damage."""

    def __init__(
        self,
        stream: av.video.stream.VideoStream,
        rate: float,
        kind: str,
        from_keyframe: bool = False,
    ) -> None:
        self.stream = stream
        self.kind = kind
        self.rate = rate
        # `from_keyframe`: the packets before the first one marked a keyframe are not decoded
        # (they refer to pictures not in the file: a recording cut mid-GOP; H.264's decoder is
        # given them, and outputs none of them: `_lead_in`), and the leading
        # pictures of that keyframe (after it in decode order, before it in time: HEVC's RASL,
        # MPEG-2's open-GOP B-frames), which refer to the group before, may fail or be
        # dropped by the decoder, as FFmpeg drops them; `lead` counts both
        self.keyed = not from_keyframe
        self.lead = 0
        self.key_pts: int | None = None  # the first keyframe's, while its leading pictures come
        self.leading = 0  # leading pictures given to the decoder
        self.key_first: int | None = None  # the first keyframe's time, until it is shown
        self.shown_leading = 0  # frames the decoder gave of the leading pictures
        self.lead_at: float | None = None  # the earliest time of a packet not read or leading
        self.packets = 0  # packets with data that the demuxer did not mark to discard
        # ... and those it marks: the lead-in of an MP4 edit list (a clip cut without
        # re-encoding, `ffmpeg -ss 12.3 -c copy`), decoded for the frames after it, never shown
        self.discarded = 0
        self.decoded = 0
        # the time of the last packet without data (a repeat of the picture before it), and of
        # the last frame decoded, as the file has them: repeats after it play to the end
        self.repeat_at: float | None = None
        self.last_time: float | None = None
        self.clock = _Clock(rate)
        self.now = 0.0  # the last frame's time on the `shown` clock
        # the first and last frame with a timestamp, on the clock: a joined recording's time
        # runs on across the join, so the frames' span is the time they play
        self.first: float | None = None
        self.last: float | None = None
        # the time each frame is shown at, on a clock of its own, for --fps (`now`): the frame's
        # timestamp, but in an AVI the earliest decode time of the packets given to the decoder
        # that no frame took yet (`decode_times`, a heap). An AVI stores no presentation times:
        # FFmpeg gives each frame of an H.264 or Xvid AVI with B-frames the timestamp of a
        # packet in decode order (0.1, 0.3, 0.2, 0.5 s), and --fps 5 kept 13 of 20 frames at 10
        # fps where it keeps every other one, 10; frames come out in the order they are shown,
        # so the n-th is shown at the n-th decode time (a packed B-frame's packet outputs two,
        # the next none). The frames' span is still measured on their timestamps.
        self.shown = _Clock(rate)
        self.decode_times: list[int] | None = None
        # In an AVI, where the demuxer's packets end, in chunks (the time base's unit; a frame
        # takes `step` of them where the time base is finer than the frame rate, as a file copied
        # from MP4 or Matroska has it): the header counts them (`_avi_truncated`)
        self.chunks_end: int | None = None
        guess, tb = stream.guessed_rate, stream.time_base
        self.step = max(1, round(1 / float(guess * tb))) if guess and tb else 1

    def frames(self, container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
        import av

        if container.format.name == "avi":
            self.decode_times = []

        for packet in container.demux(self.stream):
            leading = False
            if packet.size and not self.keyed:
                if packet.is_corrupt:  # damaged (a packet lost, the file cut short): no lead
                    raise DecodeError(_corrupt_packet(container, self.packets))
                if not is_keyframe(packet, self.stream):
                    self.lead += 1
                    self._lead_time(packet)
                    if self.stream.codec_context.name == "h264":
                        _lead_in(packet)
                    continue
                self.keyed = True
                self.key_pts = self.key_first = packet.pts
            elif packet.size and self.key_pts is not None:
                leading = packet.pts is not None and packet.pts < self.key_pts
                if not leading:
                    self.key_pts = None  # leading pictures all come before the trailing ones
            if leading:
                self.leading += 1
                self._lead_time(packet)
            elif packet.size and not packet.is_discard:
                self.packets += 1
            elif packet.size:
                self.discarded += 1
            if self.decode_times is not None and packet.size and packet.dts is not None:
                heapq.heappush(self.decode_times, packet.dts)
                end = packet.dts + max(self.step, packet.duration or 0)
                self.chunks_end = end if self.chunks_end is None else max(self.chunks_end, end)
            if not packet.size and packet.pts is not None and packet.time_base is not None:
                # no data (Theora's repeat of the picture before it, as its encoder writes a
                # still scene): PyAV would send it as the end of the stream, and the next
                # packet failed (`Invalid argument`). The demuxer's last packet has no time.
                self.repeat_at = float(packet.pts * packet.time_base)
                continue
            try:
                frames = packet.decode()  # FFmpeg's own error, where it has one, comes first
            except av.error.FFmpegError as e:
                if leading:  # it refers to a picture before the file's first keyframe
                    self.leading -= 1
                    self.lead += 1
                    continue
                if self.kind == "image":
                    raise
                raise DecodeError(
                    f"damaged after frame {self.decoded} of the {self.kind}: {_describe(e)}"
                ) from None
            for frame in frames:
                if frame.is_corrupt:
                    raise DecodeError(f"frame {self.decoded} is damaged (concealed by the decoder)")
                self.decoded += 1
                first = self.key_first  # (leading pictures are shown before their keyframe)
                if first is not None and frame.pts is not None:
                    if frame.pts < first:
                        self.shown_leading += 1
                    else:
                        self.key_first = None  # later times that jump back are another story
                at = self.clock.at(frame.time)
                if frame.time is not None:
                    self.first = at if self.first is None else self.first
                    self.last, self.last_time = at, frame.time
                tb = self.stream.time_base
                if self.decode_times and tb is not None:
                    self.now = self.shown.at(float(heapq.heappop(self.decode_times) * tb))
                else:
                    self.now = self.shown.at(frame.time)
                yield frame
            if packet.is_corrupt:
                raise DecodeError(_corrupt_packet(container, self.packets))
        if not self.keyed and self.lead:
            raise _NoKeyframe

    def _lead_time(self, packet: av.Packet) -> None:
        """Note the time of a packet before the first keyframe, or of its leading picture."""
        if packet.pts is not None and packet.time_base is not None:
            at = float(packet.pts * packet.time_base)
            self.lead_at = at if self.lead_at is None else min(self.lead_at, at)

    def finish(self, kind: str) -> None:
        if self.decoded == 0:
            lost = (
                f" ({counted(self.lead, 'frame')} before its first keyframe not read)"
                if self.lead
                else ""
            )
            raise DecodeError("no decodable frame" + lost)
        if kind == "image":
            return
        if self.decoded - self.shown_leading < self.packets:
            raise DecodeError(
                f"damaged or truncated: {self.decoded} of {self.packets + self.leading} frames "
                "decode"
            )
        # the leading pictures the decoder dropped, as FFmpeg drops them
        self.lead += max(0, self.leading - self.shown_leading)
        if kind == "animation":  # its header's duration counts the last frame's delay
            return
        if self.decode_times is not None:  # an AVI
            self._avi_truncated()
            return
        declared = _declared_duration(self.stream)
        if declared is not None and self.first is not None and self.last is not None:
            # the frames not read before the first keyframe took their time too
            first = self.first if self.lead_at is None else min(self.first, self.lead_at)
            last = self.last
            if self.repeat_at is not None and self.last_time is not None:
                last += max(0.0, self.repeat_at - self.last_time)
            span = last - first + 1 / self.rate
            if _declared_is_end_time(self.stream):
                # FFmpeg writes a Matroska track's DURATION tag as the time its last frame ends,
                # so a track that starts at 5 s and lasts 1.2 s declares 6.2 s (mkvmerge writes
                # the length): either one is a complete track
                span = max(span, last + 1 / self.rate)
            # An edit list may start or end inside a frame: the frames shown then span up to a
            # frame less than it declares, without any being lost.
            slack = (0.5 + (1 if self.discarded else 0)) / self.rate
            if declared - span > slack:
                raise DecodeError(
                    f"truncated: frames end at {span:.2f} s of the {declared:.2f} s the header "
                    "declares"
                )

    def _avi_truncated(self) -> None:
        """Whether an AVI's chunks end before the count its header declares (`strh` length, which
        FFmpeg gives as the stream's frame count): an AVI has a chunk for each frame slot, and
        FFmpeg's muxer fills a gap in the timestamps it is given with empty chunks, which the
        demuxer skips: a clip cut with `ffmpeg -ss X -c copy` (its first keyframe stamped 0, the
        next picture ten slots on), or copied from Matroska (a millisecond time base: 99 empty
        chunks a frame, and the last frame's after it). Measured on frame times, such a file came
        out short of its declared duration (`truncated: frames end at 2.10 s of the 2.70 s`);
        the demuxer's chunk numbers (packet decode times) count the empty chunks, so a file is
        whole where its last packet with data, with its frame's slot (`step` chunks), ends at
        the declared count, and one cut short (bytes lost at its end, its index with them) ends
        before it. Unknown (0) is not checked."""
        declared = self.stream.frames
        tb = self.stream.time_base
        if declared and tb is not None and self.chunks_end is not None:
            if self.chunks_end < declared:
                raise DecodeError(
                    f"truncated: frames end at {float(self.chunks_end * tb):.2f} s of the "
                    f"{float(declared * tb):.2f} s the header declares"
                )


def _lead_in(packet: av.Packet) -> None:
    """Give H.264's decoder a packet before the first keyframe, as FFmpeg does, and drop what it
    makes of it: the decoder outputs no picture before its recovery point (a keyframe), but
    keeps the references these packets name, which the pictures after the keyframe may still
    name in their reference-marking commands (an open GOP cut mid-GOP: x264's `open-gop`). Not
    given them, it failed on such a picture (`mmco: unref short failure`) and a file FFmpeg
    plays was refused as `damaged after frame 0 of the video: Invalid data found when
    processing input`. A packet that fails here refers to pictures before the file's start."""
    import av

    try:
        packet.decode()
    except av.error.FFmpegError:
        pass


def is_keyframe(packet: av.Packet, stream: av.video.stream.VideoStream) -> bool:
    """Whether a decoder can start at `packet`: its keyframe flag, except where the packet's own
    bitstream says that it holds no picture to start from: HEVC in MP4 or Matroska
    (length-prefixed NAL units, an hvcC header) without an IRAP picture (IDR, CRA, BLA); MPEG-4
    Part 2 (Xvid, DivX, phones' and cameras' "mp4v") whose first VOP is no I-VOP; MPEG-1 and
    MPEG-2 whose first picture is no I picture. An MP4 without a sync-sample table (stss; a
    muxer leaves it out when every packet it was given was flagged a keyframe, as a clip copied
    out mid-GOP may be) has every packet read as a keyframe; FFmpeg re-reads H.264's flags from
    its bitstream there, not these codecs': it decodes their P and B pictures without the
    pictures they refer to (grey smears, MPEG-4) or drops them (MPEG-2). FFmpeg plays such a
    file well from its first picture that refers to no other, and datapool reads it from there."""
    if not packet.is_keyframe:
        return False
    ctx = stream.codec_context
    if ctx.name in ("mpeg4", "mpeg1video", "mpeg2video"):
        return _starts_intra(bytes(packet), ctx.name)
    head = bytes(ctx.extradata or b"") if ctx.name == "hevc" else b""
    if len(head) < 23 or head[0] != 1:  # not hvcC (Annex B carries start codes): trust the flag
        return True
    size = (head[21] & 3) + 1  # lengthSizeMinusOne
    data = bytes(packet)
    at = 0
    while at + size < len(data):
        n = int.from_bytes(data[at : at + size], "big")
        if 16 <= (data[at + size] >> 1) & 0x3F <= 23:  # IRAP: BLA, IDR, CRA (and reserved)
            return True
        at += size + n
    return False


def _starts_intra(data: bytes, codec: str) -> bool:
    """Whether the first picture of an MPEG-4 Part 2 or MPEG-1/2 packet is intra coded: the
    vop_coding_type after the VOP start code (00 00 01 B6) is 0 (I), or the picture_coding_type
    after the picture start code (00 00 01 00; 10 bits of temporal reference first) is 1 (I).
    True where the packet holds no such start code (nothing to say otherwise)."""
    if codec == "mpeg4":
        at = data.find(b"\x00\x00\x01\xb6")
        return at < 0 or at + 4 >= len(data) or data[at + 4] >> 6 == 0
    at = data.find(b"\x00\x00\x01\x00")
    return at < 0 or at + 5 >= len(data) or (data[at + 5] >> 3) & 7 == 1


def _corrupt_packet(container: av.container.InputContainer, packets: int) -> str:
    """Why a packet the demuxer marks corrupt (the `packets`-th of the video) stops the file. In
    MPEG-TS that mark is a break in a continuity counter: a TS packet lost (the picture is then
    damaged), or two recordings joined end to end (`cat a.ts b.ts`: the last picture of the
    first is whole, but the demuxer cannot tell), which FFmpeg's concat demuxer joins without a
    break."""
    if container.format.name != "mpegts":
        return "damaged packet (the container marks it corrupt)"
    return (
        f"damaged video packet {packets} (MPEG-TS continuity broken: a packet lost, or "
        "recordings joined end to end with `cat`; join recordings with `ffmpeg -f concat -i "
        "list.txt -c copy joined.ts` instead)"
    )


def _declared_is_end_time(stream: av.video.stream.VideoStream) -> bool:
    """Whether `_declared_duration` reads Matroska's DURATION tag, which FFmpeg writes as the
    time the track's last frame ends rather than as its length (they differ where the track
    does not start at 0)."""
    return not (stream.duration and stream.time_base) and bool(
        (stream.metadata or {}).get("DURATION")
    )


def _declared_duration(stream: av.video.stream.VideoStream) -> float | None:
    """The video stream's own duration in seconds from the header (never the container's, which
    an audio track may lengthen), or None where the format does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")  # Matroska writes it per track
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            return None
    return None


_PNG_HEAD = 1 << 16  # an APNG's acTL chunk comes before its first image data

_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _checked_bytes(media: MediaInput) -> bytes:
    """The image's bytes, after checking that the file is not cut short (DecodeError)."""
    data = read_media(media)
    cut = _truncated(data)
    if cut is not None:
        raise DecodeError(f"{cut}: the file is incomplete")
    return data


def _image_orientation(media: MediaInput) -> int:
    """The image's EXIF orientation (ingest/_exif.py), after checking that the file is not cut
    short (DecodeError). The image's display matrix, which FFmpeg derives from the same tag, is
    not used: it cannot say "mirrored"."""
    return exif_orientation(_checked_bytes(media))


def _image_facts(media: MediaInput) -> tuple[int, int]:
    """`_image_orientation`, and the image's number of frames (counted only where it may be an
    animation: `_imagesize.may_be_animated`)."""
    data = _checked_bytes(media)
    frames = 1
    if may_be_animated(data):
        frames = max(_count_frames(media), webp_frame_count(data))
    return exif_orientation(data), frames


def read_otherwise_before(media: MediaInput) -> str | None:
    """How the decoder of runs that record no `decoder` (fingerprint.DECODER_VERSION 1) read
    the image `media` otherwise than this one does, or None where it read it the same: a
    mirrored EXIF orientation (2, 4, 5, 7; the turns 3, 6, 8 it read right), or an animation of
    more than one frame (it took the first). Reads the file's first 64 kB (an animation's
    packets too); a file that cannot be read gives None (decoding it says why)."""
    import av

    try:
        if isinstance(media, (str, os.PathLike)):
            with open(media, "rb") as f:
                head = f.read(_PNG_HEAD)
        else:
            media.seek(0)
            head = bytes(media.read(_PNG_HEAD))
        orientation = exif_orientation(head)
        if orientation in (2, 4, 5, 7):
            return f"mirrored (EXIF orientation {orientation}), read unmirrored"
        if may_be_animated(head):
            n = _count_frames(media)
            if n > 1:
                return f"an animation of {n} frames, read as its first frame"
    except (DecodeError, av.error.FFmpegError, ValueError, IndexError, OSError):
        return None
    return None


def tiff_read_otherwise_before(media: MediaInput) -> str | None:
    """How the decoder of runs that record decoder 5 or less (fingerprint.DECODER_CHANGES
    'tiff') read the TIFF `media` otherwise than this one does, or None where it read it the
    same: a JPEG-compressed first page, which FFmpeg decodes as a black picture (white in CMYK)
    without an error (`_tiff_by_pillow`). Reads the file (its IFD may be at its end); one that
    cannot be read gives None (decoding it says why)."""
    try:
        fields = tiff_fields(read_media(media), frozenset({259}))
    except OSError:
        return None
    compression = fields.get(259, (1,))[0]
    if compression not in (6, 7):
        return None
    what = _TIFF_COMPRESSION[compression]
    return f"a {what}-compressed TIFF, which FFmpeg read as a black picture (white in CMYK)"


def video_read_otherwise_before(media: MediaInput, by_fps: bool = False) -> str | None:
    """How the decoder of runs that record decoder 2 or less (fingerprint.DECODER_VERSION) read
    the video `media` otherwise than this one does, or None where it read it the same: a display
    matrix that mirrors the picture (`ffmpeg -display_hflip`, a selfie camera's video), which it
    read as the matrix's angle alone (`_video_orientation`); and, where it read the video with
    --fps (`by_fps`), timestamps that jump back (recordings joined end to end), after which it
    dropped the frames until their times passed those before the jump. Decodes the first frame (its side data holds the matrix), and with
    `by_fps` demuxes every packet (decodes none); a file that cannot be read gives None
    (decoding it says why)."""
    import av

    try:
        with _open(media, "video") as container:
            stream = video_stream(container)
            for frame in container.decode(stream):
                matrix = _display_matrix(frame)
                now = orientation_of_display_matrix(matrix) if matrix is not None else None
                was = orientation_of_rotation(getattr(frame, "rotation", 0) or 0)
                if now is not None and now != was:
                    return (
                        f"mirrored by its display matrix (shown as EXIF orientation {now}), read "
                        f"turned instead (as orientation {was})"
                    )
                break
            at = _dts_jump_back(container, stream) if by_fps else None
            if at is not None:
                return (
                    f"its timestamps jump back after video packet {at} (recordings joined end "
                    "to end), and --fps dropped the frames after the jump"
                )
    except (DecodeError, av.error.FFmpegError, ValueError, IndexError, OSError):
        return None
    return None


def _dts_jump_back(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> int | None:
    """The number of the video packet (from 0) after which the decode timestamps of `stream` go
    back (the demuxer has corrected MPEG-TS's 33-bit wrap already), or None where they never do.
    Seeks to the start and demuxes every packet of the stream."""
    container.seek(0, stream=stream, backward=True, any_frame=True)
    prev, n = None, 0
    for packet in container.demux(stream):
        if packet.dts is None or not packet.size:
            continue
        if prev is not None and packet.dts < prev:
            return n - 1
        prev, n = packet.dts, n + 1
    return None


def image_orientation(media: MediaInput) -> int:
    """The EXIF orientation decoding applies to the image `media` (1 where it has none)."""
    return exif_orientation(read_media(media))


def _truncated(data: bytes) -> str | None:
    """What is missing from an image file cut short, or None (complete, or a format without
    an end to check)."""
    heif = heif_kind(data[:64])
    if heif is not None:
        return heif_cut_short(data, heif)
    if data[:2] == b"\xff\xd8" and not _jpeg_is_complete(data):
        return "truncated JPEG (no end-of-image marker)"
    if data[:6] in (b"GIF87a", b"GIF89a") and not _gif_is_complete(data):
        return "truncated GIF (no trailer)"
    if may_be_animated(data[:_PNG_HEAD]) and data[:4] == b"\x89PNG" and data[-8:-4] != b"IEND":
        return "truncated animated PNG (no IEND chunk)"  # FFmpeg stops at the frames it has
    return None


def _gif_is_complete(data: bytes) -> bool:
    """True when the GIF's blocks (extensions, images: each a chain of length-prefixed
    sub-blocks) run whole up to its trailer (0x3B)."""
    pos = 13 + (3 << ((data[10] & 7) + 1) if len(data) > 10 and data[10] & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:
            return True
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif block == 0x2C:  # image: descriptor, local colour table, LZW code size, sub-blocks
            if pos + 10 > len(data):
                return False
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        else:
            return False
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        pos += 1  # the zero-length sub-block that ends the chain
    return False


def _jpeg_is_complete(data: bytes) -> bool:
    """False for a JPEG whose data stops before its end-of-image marker (EOI); True for a complete
    JPEG. Walks the marker segments from the start, so an EXIF thumbnail's own EOI and bytes
    appended after the image (motion photos) do not count."""
    pos = 2
    while True:
        m = _JPEG_MARKER.search(data, pos)
        if m is None:
            return False
        marker = data[m.start() + 1]
        if marker == 0xD9:
            return True
        if marker in (0x01,) or 0xD0 <= marker <= 0xD8:
            pos = m.end()
            continue
        if m.end() + 2 > len(data):
            return False
        length = int.from_bytes(data[m.end() : m.end() + 2], "big")
        pos = m.end() + length  # the segment; after an SOS the entropy-coded data follows it


def crop_rect(
    box: tuple[float, float, float, float], padding: float, width: int, height: int
) -> tuple[int, int, int, int] | str:
    """The pixels (x0, y0, x1, y1; x1 and y1 exclusive) that crop selection cuts out of a
    `width` x `height` image (as shown) for the box (x, y, w, h) in pixels: the box grown by
    `padding` times its width and height on each side, out to whole pixels, clipped to the
    image. A box that does not reach into the image, or reaches under one pixel into it, gives
    the reason it is left out instead."""
    import math

    x, y, w, h = box
    inside_w = min(x + w, width) - max(x, 0.0)
    inside_h = min(y + h, height) - max(y, 0.0)
    if inside_w <= 0 or inside_h <= 0:
        return f"outside the image ({width}x{height})"
    if inside_w < 1 or inside_h < 1:
        return f"under one pixel wide or high inside the image ({width}x{height})"
    px, py = padding * w, padding * h
    x0, y0 = max(0, math.floor(x - px)), max(0, math.floor(y - py))
    x1, y1 = min(width, math.ceil(x + w + px)), min(height, math.ceil(y + h + py))
    return x0, y0, x1, y1


def decode_shown(media: MediaInput, key: str) -> npt.NDArray[np.uint8]:
    """An image at full size as RGB, turned and mirrored by its EXIF orientation as viewers
    show it (the pixels crop selection's boxes refer to). Checked as `iter_frames` checks an
    image: DecodeError when it is damaged."""
    import av

    point(f"decode:{key}")
    try:
        orientation = _image_orientation(media)
        full = None
        still = _by_pillow(media)
        with contextlib.ExitStack() as opened:
            check: _Integrity | _Still = _Still()
            decoded: Iterator[av.VideoFrame] = iter(() if still is None else (still,))
            if still is None:
                container = opened.enter_context(_open(media, "image"))
                stream = video_stream(container)
                stream.thread_type = "AUTO"
                if stream.codec_context.name != "tiff":  # FFmpeg's own TIFFs fail err_detect
                    stream.codec_context.options = {"err_detect": "explode"}
                check = _Integrity(stream, 25.0, "image")
                decoded = check.frames(container)
            for index, frame in enumerate(decoded):
                if index > 0:
                    break  # a still image's (an animation's crops are of its frames)
                rgb = full_rgb(frame)
                full = orient(rgb, orientation) if orientation != 1 else rgb
            check.finish("image")
    except DecodeError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise DecodeError(_describe(e)) from None
    assert full is not None  # finish() raised otherwise
    return full


Box = tuple[int, float, float, float, float]  # index in the predictions file, x, y, w, h


@dataclass
class Cutter:
    """Crop selection's work on one file, for `iter_frames`: `boxes(name, dropped)` gives the
    boxes of the image or frame named `name` (lightly.py), appending those it leaves out to
    `dropped`, or None where a video frame has no predictions file; `padding` grows each box
    (crop_rect). Filled as the file is decoded: `dropped` (boxes left out, each {"key", "crop",
    "reason"}), `without` (the frames, or the image, that had no box), and among those
    `unfiled` (the frames that had no predictions file: written for other frames, or not at
    all), and `filed` (how many frames had one)."""

    boxes: Callable[[str, list[dict[str, str]]], Sequence[Box] | None]
    padding: float
    dropped: list[dict[str, str]] = field(default_factory=list)
    without: list[str] = field(default_factory=list)
    unfiled: list[str] = field(default_factory=list)
    filed: int = 0
    # boxes kept, cut to their part inside the picture, that reached more than a pixel past it
    # (a sign of boxes written otherwise: x0, y0, x1, y1; another scale; the picture unturned)
    clipped: list[dict[str, str]] = field(default_factory=list)


def reaches_outside(box: tuple[float, float, float, float], width: int, height: int) -> bool:
    """Whether a box [x, y, w, h] reaches more than a pixel past a width x height picture (a
    detector's rounding reaches a pixel at most)."""
    x, y, w, h = box
    return x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1


def clipped_reason(
    box: tuple[float, float, float, float], width: int, height: int, orientation: int
) -> str:
    """Why a box that reaches outside its picture is noted: where it reaches, and when it fits
    the picture as stored before its EXIF orientation turned it, that."""
    x, y, w, h = box
    why = f"reaches outside the image ({width}x{height}): [{x:g}, {y:g}, {w:g}, {h:g}]"
    return why + stored_hint(box, width, height, orientation)


def stored_hint(
    box: tuple[float, float, float, float], width: int, height: int, orientation: int
) -> str:
    """For a box that does not fit the picture as shown but fits it as stored (a quarter turn
    before its orientation is applied), a note that says so; else ''."""
    if swaps_sides(orientation) and not reaches_outside(box, height, width):
        return (
            f"; it fits the picture as stored ({height}x{width}), before its orientation (EXIF "
            "or a video's rotation) turns it: boxes are read in the picture as shown"
        )
    return ""


def _cut(
    frame: av.VideoFrame,
    name: str,
    orientation: int,
    cut: Cutter,
    size: tuple[int, int],
    thumbnails: bool,
    index: int | None,
) -> Iterator[Frame]:
    """The object crops of one decoded picture (crop selection): each box's pixels (crop_rect)
    cut from the picture at full size as shown, resized to `size` as any sample is, named
    `naming.crop_name(name, i)`."""
    import av
    import numpy as np

    from datapool.naming import crop_name

    boxes = cut.boxes(name, cut.dropped)
    if boxes is None:  # no predictions file: told apart from one that lists no box
        cut.unfiled.append(name)
    else:
        cut.filed += 1
    if not boxes:
        cut.without.append(name)
        return
    rgb = full_rgb(frame)
    full = orient(rgb, orientation) if orientation != 1 else rgb
    height, width = full.shape[:2]
    for i, *box in boxes:
        crop = crop_name(name, i)
        rect = crop_rect(
            (box[0], box[1], box[2], box[3]), padding=cut.padding, width=width, height=height
        )
        raw = (box[0], box[1], box[2], box[3])
        if isinstance(rect, str):
            why = rect + stored_hint(raw, width, height, orientation)
            cut.dropped.append({"key": name, "crop": crop, "reason": why})
            continue
        if reaches_outside(raw, width, height):
            why = clipped_reason(raw, width, height, orientation)
            cut.clipped.append({"key": name, "crop": crop, "reason": why})
        x0, y0, x1, y1 = rect
        part = av.VideoFrame.from_ndarray(np.ascontiguousarray(full[y0:y1, x0:x1]), format="rgb24")
        small = _resize_rgb(part, *size)
        thumb = encode_thumbnail(small, (x1 - x0, y1 - y0)) if thumbnails else b""
        yield Frame(crop, index, small, thumb, rect)
