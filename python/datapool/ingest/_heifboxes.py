"""What a HEIF image's boxes say before it is decoded: which kind it is (HEIC, HEIF, AVIF), the
largest picture it declares, and whether the file is cut short.

A HEIF file (an iPhone's HEIC, a camera's HEIF, AVIF) is an ISO base media file: an `ftyp` box
whose brands say what it holds, a `meta` box that lists the items (each image, an iPhone's 512x512
tiles and the grid that puts them together, the EXIF block) with where their bytes are (`iloc`)
and their properties (`ispe`: width and height), and an `mdat` box with the coded data. libheif
decodes a HEIC cut short without an error (the missing tiles come out grey), so a file counts as
cut short when a top-level box runs past its end, or an item's bytes (`iloc`) do: the check
`_truncated` in decode.py makes of a JPEG's end-of-image marker. Knows the brands, not the
extension: an iPhone photo renamed `.jpg` is a HEIC.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

# Brands of still HEIF images (ISO/IEC 23008-12: heic/heix HEVC, heim/heis multi-layer HEVC,
# mif1/mif2 the structural brands), and of AVIF (avif; avis is an AVIF image sequence).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_MOST_BOXES = 10_000  # a real file has a handful of boxes in a list; past this, not a box list


def heif_kind(head: bytes) -> str | None:
    """The kind of the HEIF image whose first bytes are `head` (its `ftyp` box): "AVIF", "HEIC"
    (HEVC-coded, an iPhone's) or "HEIF" (another codec); None for any other file. A video (MP4, MOV) is
    never one: its brands are other."""
    if head[4:8] != b"ftyp" or len(head) < 16:
        return None
    size = min(struct.unpack(">I", head[:4])[0], len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, size - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & {b"heic", b"heix", b"heim", b"heis"}:
        return "HEIC"
    return "HEIF" if brands & _HEIF_BRANDS else None


def _boxes(b: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, offset of its content, declared end) of each box in b[start:end]; the last
    may end past `end` (a file cut short)."""
    at = start
    for _ in range(_MOST_BOXES):
        if at + 8 > end:
            return
        n, kind = struct.unpack(">I4s", b[at : at + 8])
        header = 8
        if n == 1:
            if at + 16 > end:
                yield kind, at, end, at + 16
                return
            n, header = struct.unpack(">Q", b[at + 8 : at + 16])[0], 16
        elif n == 0:  # to the end of the enclosing box (of the file, at the top level)
            n = end - at
        if n < header:
            return  # damaged, not a box list: the decoder says why
        yield kind, at, at + header, at + n
        at += n


def _child(b: bytes, start: int, end: int, want: bytes) -> tuple[int, int] | None:
    for kind, _, content, box_end in _boxes(b, start, end):
        if kind == want:
            return content, min(box_end, end)
    return None


def _meta(b: bytes) -> tuple[int, int] | None:
    """The content of the top-level `meta` box (a full box: after its version and flags)."""
    found = _child(b, 0, len(b), b"meta")
    return None if found is None else (found[0] + 4, found[1])


def largest_picture(b: bytes) -> tuple[int, int] | None:
    """The (width, height) of the largest image property (`ispe`) the file `b` (or its first
    bytes) declares: the primary image's or its grid's, or larger; None where there is none."""
    try:
        meta = _meta(b)
        iprp = None if meta is None else _child(b, *meta, b"iprp")
        ipco = None if iprp is None else _child(b, *iprp, b"ipco")
        if ipco is None:
            return None
        sizes = [
            struct.unpack(">II", b[content + 4 : content + 12])
            for kind, _, content, _ in _boxes(b, *ipco)
            if kind == b"ispe" and content + 12 <= ipco[1]
        ]
    except struct.error:
        return None
    return max(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None


def cut_short(b: bytes, kind: str) -> str | None:
    """What is missing from the HEIF file `b` (`kind` names it, "HEIC") cut short, or None: a top-level
    box that runs past the end of the file, or an item whose bytes (`iloc`) do."""
    try:
        for box, _, _, end in _boxes(b, 0, len(b)):
            if end > len(b):
                name = box.decode("latin-1") if box.decode("latin-1").isprintable() else box.hex()
                return (
                    f"truncated {kind} (the file ends inside its '{name}' box, at byte {len(b)} "
                    f"of the {end} it declares)"
                )
        past = _item_end(b)
    except struct.error:
        return None
    if past is not None and past > len(b):
        return (
            f"truncated {kind} (the file ends at byte {len(b)}, before the end of its images' "
            f"data at byte {past})"
        )
    return None


def _item_end(b: bytes) -> int | None:
    """The furthest byte the items of `iloc` (ISO/IEC 14496-12 8.11.3) place in the file (those
    in the file itself: construction method 0), or None where it has none."""
    meta = _meta(b)
    iloc = None if meta is None else _child(b, *meta, b"iloc")
    if iloc is None:
        return None
    at, end = iloc
    version = b[at]
    sizes = b[at + 4] << 8 | b[at + 5]
    offset_size, length_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    at += 6

    def read(n: int) -> int:
        nonlocal at
        if at + n > end:
            raise struct.error("iloc ends early")
        value = int.from_bytes(b[at : at + n], "big")
        at += n
        return value

    furthest = None
    for _ in range(read(2 if version < 2 else 4)):
        read(2 if version < 2 else 4)  # item_ID
        method = read(2) & 15 if version in (1, 2) else 0
        read(2)  # data_reference_index
        base = read(base_size)
        for _ in range(read(2)):
            read(index_size)
            offset, length = read(offset_size), read(length_size)
            if method == 0 and length:
                furthest = max(furthest or 0, base + offset + length)
    return furthest
