"""Why an MP4 or MOV that FFmpeg could not read is incomplete, from its top-level boxes.

A copy, download or upload that stopped part way leaves an ISO base media file (MP4, MOV, M4V,
3GP: an `ftyp` box at byte 4) whose last box runs past the end of the file, and a recording that
was never finished has no `moov` box (the index of its frames, which most recorders write last).
FFmpeg says `Invalid data found when processing input`, or finds no video stream at all; this
names the box the file ends in, as `truncated JPEG (no end-of-image marker)` does for a JPEG.
Read only after a decode failed: a few small reads, one per top-level box.
"""

from __future__ import annotations

import os
import struct
from typing import IO

_MOST_BOXES = 10_000  # a real file has a handful at the top level; past this, not a box list


def cut_short(media: str | os.PathLike[str] | IO[bytes], ext: str) -> str | None:
    """The reason an ISO base media file (a path or a seekable file object) is incomplete, `ext`
    naming its type ("MP4"); None for other files, and for one whose boxes are whole and include
    a `moov` (damaged otherwise: FFmpeg's reason stands)."""
    try:
        if isinstance(media, (str, os.PathLike)):
            with open(media, "rb") as f:
                return _walk(f, ext)
        at = media.tell()
        try:
            return _walk(media, ext)
        finally:
            media.seek(at)
    except (OSError, struct.error):
        return None


def _walk(f: IO[bytes], ext: str) -> str | None:
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    if f.read(8)[4:] != b"ftyp":
        return None
    at, seen = 0, set()
    for _ in range(_MOST_BOXES):
        if at >= size:
            break
        f.seek(at)
        head = f.read(16)
        if len(head) < 8:
            return _truncated(ext, "a box's header", size)
        n, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if n == 1:  # a 64-bit size follows the type
            if len(head) < 16:
                return _truncated(ext, "a box's header", size)
            n, header = struct.unpack(">Q", head[8:16])[0], 16
        elif n == 0:  # the last box, to the end of the file
            n = size - at
        if n < header:
            return None  # a box smaller than its header: damaged, not cut short
        if at + n > size:
            return _truncated(ext, f"its '{_name(kind)}' box", size, at + n)
        seen.add(kind)
        at += n
    else:
        return None
    if b"moov" not in seen:
        return (
            f"{ext} without its 'moov' box (the index of its frames, which most recorders write "
            "last): the file is incomplete or damaged"
        )
    return None


def _truncated(ext: str, where: str, size: int, declared: int | None = None) -> str:
    of = "" if declared is None else f" of the {declared} it declares"
    return f"truncated {ext} (the file ends inside {where}, at byte {size}{of}): the file is incomplete"


def _name(kind: bytes) -> str:
    text = kind.decode("latin-1")
    return text if text.isprintable() else kind.hex()
