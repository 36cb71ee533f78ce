"""Read an image's declared width and height from its header, without decoding it.

Used to refuse decompression bombs (a tiny file that declares 100000x100000 pixels) before FFmpeg
allocates anything: FFmpeg's stream probing decodes the first image to learn its size, so the
check has to come first. Knows PNG, GIF, BMP, JPEG, WebP and TIFF, by their magic bytes (not
their extension). Returns None for anything else or a header too short to say.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import IO

_HEAD = 1 << 16  # JPEG may put its frame header after large EXIF/ICC segments; scan this much


def declared_size(media: str | os.PathLike[str] | IO[bytes]) -> tuple[int, int] | None:
    """(width, height) from a path's or a seekable file object's header; None if unknown."""
    if isinstance(media, (str, os.PathLike)):
        with open(media, "rb") as f:
            head = f.read(_HEAD)
    else:
        media.seek(0)
        head = media.read(_HEAD)
        media.seek(0)
    try:
        return _sniff(head)
    except (struct.error, IndexError):
        return None


def is_animated_webp(media: str | os.PathLike[str] | IO[bytes]) -> bool:
    """Whether the file is a WebP whose VP8X header sets the animation flag."""
    if isinstance(media, (str, os.PathLike)):
        with open(media, "rb") as f:
            head = f.read(32)
    else:
        media.seek(0)
        head = media.read(32)
        media.seek(0)
    return (
        head[:4] == b"RIFF"
        and head[8:16] == b"WEBPVP8X"
        and len(head) > 20
        and bool(head[20] & 0x02)
    )


def may_be_animated(b: bytes) -> bool:
    """Whether the image file whose bytes are `b` can hold more than one frame: a GIF, a PNG with
    an animation control chunk (APNG: `acTL` before the first `IDAT`), or a WebP whose VP8X
    header sets the animation flag. Cheap: decoding counts the frames only of these."""
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return True
    if b.startswith(b"RIFF") and b[8:16] == b"WEBPVP8X":
        return len(b) > 20 and bool(b[20] & 0x02)
    if not b.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    pos = 8
    while pos + 8 <= len(b):
        size, kind = struct.unpack(">I", b[pos : pos + 4])[0], b[pos + 4 : pos + 8]
        if kind == b"acTL":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        pos += 12 + size
    return False


def webp_frame_count(b: bytes) -> int:
    """The number of frames (ANMF chunks) of an animated WebP whose bytes are `b`; 0 for
    anything else. FFmpeg's WebP reader gives the whole file as one packet, so counting its
    packets says nothing of an animation's frames."""
    if not (b.startswith(b"RIFF") and b[8:12] == b"WEBP"):
        return 0
    n, pos = 0, 12
    while pos + 8 <= len(b):
        size = int.from_bytes(b[pos + 4 : pos + 8], "little")
        n += b[pos : pos + 4] == b"ANMF"
        pos += 8 + size + (size & 1)
    return n


def _sniff(b: bytes) -> tuple[int, int] | None:
    if b.startswith(b"\x89PNG\r\n\x1a\n") and b[12:16] == b"IHDR":
        w, h = struct.unpack(">II", b[16:24])
        return w, h
    if b[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", b[6:10])
        return w, h
    if b.startswith(b"BM"):
        w, h = struct.unpack("<ii", b[18:26])
        return abs(w), abs(h)
    if b.startswith(b"RIFF") and b[8:12] == b"WEBP":
        return _webp(b)
    if b[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(b)
    if b.startswith(b"\xff\xd8"):
        return _jpeg(b)
    return None


def jpeg_segments(b: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, position, length) of each JPEG marker segment that has a length, from the start
    up to the image data (SOS) or the end of the image; stops at a byte that is not a marker."""
    pos = 2
    while pos + 4 <= len(b):
        if b[pos] != 0xFF:
            return
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(b[pos + 2 : pos + 4], "big")
        yield marker, pos, length
        pos += 2 + length


def _jpeg(b: bytes) -> tuple[int, int] | None:
    for marker, i, _ in jpeg_segments(b):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            if i + 9 > len(b):
                return None
            h, w = struct.unpack(">HH", b[i + 5 : i + 9])
            return w, h
    return None


def _webp(b: bytes) -> tuple[int, int] | None:
    kind = b[12:16]
    if kind == b"VP8X":
        w = 1 + int.from_bytes(b[24:27], "little")
        h = 1 + int.from_bytes(b[27:30], "little")
        return w, h
    if kind == b"VP8L":
        bits = int.from_bytes(b[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", b[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _tiff(b: bytes) -> tuple[int, int] | None:
    end = "<" if b[:2] == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", b[4:8])
    (n,) = struct.unpack(end + "H", b[ifd : ifd + 2])
    size: dict[int, int] = {}
    for k in range(n):
        tag, typ, _count = struct.unpack(end + "HHI", b[ifd + 2 + 12 * k : ifd + 10 + 12 * k])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            off = ifd + 10 + 12 * k
            fmt = "H" if typ == 3 else "I"
            size[tag] = struct.unpack(end + fmt, b[off : off + struct.calcsize(fmt)])[0]
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8 (BigTIFF)


def tiff_fields(b: bytes, tags: frozenset[int]) -> dict[int, tuple[int, ...]]:
    """The integer values of the fields `tags` of a TIFF's first image (IFD0), wherever in the
    file `b` its IFD and values lie (Pillow writes the IFD after the pixels); {} for a file that
    is no TIFF or whose IFD cannot be read, and a field of over 65536 values is left out.
    Classic TIFF only (a BigTIFF gives {})."""
    if b[:4] not in (b"II*\x00", b"MM\x00*"):
        return {}
    end = "<" if b[:2] == b"II" else ">"
    out: dict[int, tuple[int, ...]] = {}
    try:
        (ifd,) = struct.unpack(end + "I", b[4:8])
        (n,) = struct.unpack(end + "H", b[ifd : ifd + 2])
        for k in range(n):
            at = ifd + 2 + 12 * k
            tag, typ, count = struct.unpack(end + "HHI", b[at : at + 8])
            fmt = _TIFF_TYPES.get(typ)
            if tag not in tags or fmt is None or count > 1 << 16:
                continue
            size = struct.calcsize(fmt) * count
            pos = at + 8 if size <= 4 else struct.unpack(end + "I", b[at + 8 : at + 12])[0]
            out[tag] = struct.unpack(f"{end}{count}{fmt}", b[pos : pos + size])
    except struct.error:
        return {}
    return out
