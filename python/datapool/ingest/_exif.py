"""Read an image's EXIF Orientation (1..8) from its bytes, without decoding it.

Phones and cameras store the sensor's pixels and an Orientation tag; viewers, browsers and
Pillow's `ImageOps.exif_transpose` turn or mirror the picture by it. FFmpeg
does not apply it, and PyAV exposes only the rotation angle of the display matrix FFmpeg derives
from it (FFmpeg 8 does so for JPEG, PNG, WebP and TIFF, older FFmpeg for JPEG only), which loses
the mirrored orientations (2, 4, 5, 7): so datapool reads the tag itself, the same way for every
FFmpeg. Knows JPEG (the APP1 `Exif` segment), PNG (the `eXIf` chunk), WebP (the `EXIF` chunk)
and TIFF (IFD0), by magic bytes; 1 (as stored) for anything else or a tag that is absent or
not valid. A HEIF file (HEIC, AVIF) gives 1 too: its decoder turns it by HEIF's own `irot` and
`imir`, and the EXIF tag an iPhone also writes there must not turn it again
(decode._heif_by_pillow).

    1 as stored    2 mirrored left-right    3 turned 180    4 mirrored top-bottom
    5 transposed (mirrored along the main diagonal)    6 turned 90 clockwise
    7 transversed (mirrored along the other diagonal)  8 turned 90 counterclockwise
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from datapool.ingest._imagesize import jpeg_segments

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_ORIENTATION_TAG = 0x0112


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation of the image file `data`, 1 where it has none."""
    try:
        tiff = _exif_block(data)
        return _orientation_in_tiff(tiff) if tiff else 1
    except (struct.error, IndexError, ValueError):
        return 1


def _exif_block(b: bytes) -> bytes | None:
    """The EXIF data (a TIFF header and its IFDs) of a JPEG, PNG or WebP; a TIFF file itself."""
    if b[:2] == b"\xff\xd8":
        return _jpeg_exif(b)
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        return _chunk(b, 8, b"eXIf", ">I", order="len-type")
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        block = _chunk(b, 12, b"EXIF", "<I", order="type-len")
        return block[6:] if block is not None and block.startswith(b"Exif\0\0") else block
    if b[:4] in (b"II*\0", b"MM\0*"):
        return b
    return None


def _jpeg_exif(b: bytes) -> bytes | None:
    """The first APP1 segment that holds `Exif\\0\\0`, before the image data (SOS)."""
    for marker, pos, length in jpeg_segments(b):
        if marker == 0xE1 and b[pos + 4 : pos + 10] == b"Exif\0\0":
            return b[pos + 10 : pos + 2 + length]
    return None


def _chunk(b: bytes, pos: int, want: bytes, size_fmt: str, order: str) -> bytes | None:
    """The data of the first chunk `want` in a PNG (length, type, data, CRC) or RIFF (type,
    length, data, a pad byte to an even length) chunk list starting at `pos`."""
    while pos + 8 <= len(b):
        if order == "len-type":
            (size,), kind = struct.unpack(size_fmt, b[pos : pos + 4]), b[pos + 4 : pos + 8]
        else:
            kind, (size,) = b[pos : pos + 4], struct.unpack(size_fmt, b[pos + 4 : pos + 8])
        if kind == want:
            return b[pos + 8 : pos + 8 + size]
        if order == "len-type":
            if kind == b"IEND":
                return None
            pos += 12 + size
        else:
            pos += 8 + size + (size & 1)
    return None


def _orientation_in_tiff(t: bytes) -> int:
    """Tag 0x0112 of IFD0 of a TIFF structure, 1 where absent or out of range."""
    endian = {b"II": "<", b"MM": ">"}.get(t[:2])
    if endian is None or struct.unpack(endian + "H", t[2:4])[0] != 42:
        return 1
    (ifd,) = struct.unpack(endian + "I", t[4:8])
    (count,) = struct.unpack(endian + "H", t[ifd : ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack(endian + "HH", t[entry : entry + 4])
        if tag == _ORIENTATION_TAG:
            if kind == 3:  # SHORT, in the first two bytes of the value field
                (value,) = struct.unpack(endian + "H", t[entry + 8 : entry + 10])
            elif kind == 4:  # LONG, written by a few tools
                (value,) = struct.unpack(endian + "I", t[entry + 8 : entry + 12])
            else:
                return 1
            return value if 1 <= value <= 8 else 1
    return 1


def orient(rgb: npt.NDArray[np.uint8], orientation: int) -> npt.NDArray[np.uint8]:
    """`rgb` ((h, w, 3), as stored) turned and mirrored as EXIF `orientation` says a viewer shows
    it; a view where nothing moves, else a new C-contiguous array."""
    import numpy as np

    if orientation <= 1 or orientation > 8:
        return rgb
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }[orientation](rgb)
    return np.ascontiguousarray(turned)


def swaps_sides(orientation: int) -> bool:
    """Whether `orientation` turns the picture a quarter (its width becomes its height)."""
    return orientation in (5, 6, 7, 8)


def orientation_of_rotation(degrees: float) -> int:
    """The EXIF orientation of a display-matrix rotation (counterclockwise degrees, as PyAV's
    `frame.rotation` gives it; a phone video's): 0 -> 1, 90 -> 8, 180 -> 3, 270 -> 6."""
    return (1, 8, 3, 6)[round(degrees / 90) % 4]


def orientation_of_display_matrix(matrix: tuple[int, ...]) -> int | None:
    """The EXIF orientation of a video's display matrix (9 int32: a, b, u, c, d, v, x, y, w;
    a to d in 16.16 fixed point), turns and mirrors alike, as FFmpeg's command line applies it
    (fftools' autorotate: the angle of `av_display_rotation_get`, then the signs of a, c and d
    pick the mirror); None for a matrix that is not a quarter turn, with or without a mirror.
    PyAV's `frame.rotation` is that angle alone: a mirrored matrix read by it came out turned
    180 degrees (`-display_hflip`) or turned the wrong way."""
    import math

    a, b, _, c, d = (v / 65536 for v in matrix[:5])
    sx, sy = math.hypot(a, c), math.hypot(b, d)
    if sx == 0 or sy == 0:
        return None
    theta = round(math.degrees(math.atan2(b / sy, a / sx)))
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:  # transpose=cclock_flip, or clock
        return 5 if c > 0 else 6
    if abs(theta - 180) < 1:  # hflip where a < 0, vflip where d < 0
        return {(True, True): 3, (True, False): 2, (False, True): 4}.get((a < 0, d < 0), 1)
    if abs(theta - 270) < 1:  # transpose=clock_flip, or cclock
        return 7 if c < 0 else 8
    if abs(theta) < 1:
        return 4 if d < 0 else 1
    return None
