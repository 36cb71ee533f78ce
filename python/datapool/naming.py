"""How raw files and their samples are named: the one place that knows Lightly's frame names.

An image's sample is named by its key. Frame `i` of the video at `key` is named
    {key without extension}-{i}-{extension}.png
with `i` zero-padded to the number of digits of the video's frame count, for example
`cam/clip-007-mp4.png` for frame 7 of a 100-frame `cam/clip.mp4`. The index is the decoded frame
number (0-based, in presentation order), so names are stable whatever frame stride or fps a run
used. The frame count that sets the padding is the one the container holds (decode._count_frames:
the MP4 header's sample count, else, or where that is far short of the duration, as in a
fragmented MP4, the packets demuxed), frames a player never shows included:
the lead-in an MP4 edit list hides (`ffmpeg -ss X -c copy`), the frames before the first keyframe
of a recording cut mid-GOP. A clip that shows 7 of the 40 frames it holds names them
`trim-00-mp4.png` to `trim-06-mp4.png`. That count is read from the file, not from decoding, so
it is the same in every run and engine, and always at least the frames shown, so the names sort
in frame order. Decoding names frames with `frame_name`; the pool, merge and export read them back with
`video_key_of`, `source_keys` and `frame_index`.

Object `i` of the image at `key` (crop selection: the i-th prediction of its
`.lightly/predictions/<task>/` file) is named
    {key without extension}-{extension}-crop-{i}.png
for example `cam/a-jpg-crop-3.png`; object `i` of a video frame is named so after the frame's
name: `cam/clip-007-mp4-png-crop-3.png`. It ends in `-crop-{i}.png`, which no frame name does (a
frame name ends in `-{digits}-{extension}.png`), so the two never clash, and `crop_key_of` reads
back the name of the image or frame it was cut from. (Lightly's own crop datasets name a crop
`{stem}-{i}-{ext}.png`, the form of a frame name: datapool keeps frames and crops apart.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# HEIC and HEIF (iPhones', cameras') need pillow-heif, the extra datapool[heif]; AVIF Pillow's own
# AVIF (11.3 and newer wheels): decode._heif_by_pillow, a file skipped saying so without them.
IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "jfif", "png", "bmp", "webp", "tif", "tiff", "gif", "heic", "heif", "avif"}
)
# Containers FFmpeg reads that cameras, phones and recorders write: MPEG-TS (dashcams, AVCHD's
# .mts/.m2ts), MPEG-PS (.mpg, DVD's .vob), Apple's .m4v, 3GPP, Windows Media (.wmv/.asf), Flash
# video (.flv, .f4v), broadcast MXF, Ogg's .ogv (Theora), DivX's .divx (an AVI); each checked
# with a real file (tests/test_video_containers.py).
VIDEO_EXTENSIONS = frozenset(
    {"mp4", "mov", "avi", "mkv", "webm", "m4v", "mpg", "mpeg", "ts", "mts", "m2ts", "3gp"}
    | {"wmv", "asf", "flv", "f4v", "vob", "mxf", "ogv", "divx"}
)
# Image and video types datapool does not read (not checked: camera raw files need demosaicing;
# RealMedia's .rm/.rmvb: RealVideo 3 and 4, which no encoder here writes to check). A run that
# meets them says so, rather than counting them with the text files it ignores.
UNREAD_MEDIA_EXTENSIONS = frozenset(
    {"jxl", "jp2", "dng", "cr2", "cr3", "nef", "arw", "raf", "orf"}
    | {"rw2", "psd", "exr", "svg", "rm", "rmvb"}
)

# The ledger status of a file that was read whole (any other status is the reason it was not).
STATUS_OK = "ok"

# A frame name, `{stem}-{index}-{ext}.png`, and the key `{stem}.{ext}` of its video.
FRAME_NAME = re.compile(r"^(.*)-(\d+)-([^/.-]+)\.png$")
# A crop name, `{stem}-{ext}-crop-{i}.png`, and the key `{stem}.{ext}` of its image.
CROP_NAME = re.compile(r"^(.*)-([^/.-]+)-crop-(\d+)\.png$")


def media_kind(key: str) -> str | None:
    """'image', 'video', or None for a file datapool does not read."""
    ext = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def frame_name(key: str, index: int, frame_count: int) -> str:
    """Lightly's name for frame `index` of the video at `key` with `frame_count` frames."""
    stem, _, ext = key.rpartition(".")
    width = len(str(max(frame_count, 1)))
    return f"{stem}-{index:0{width}d}-{ext}.png"


def video_key_of(name: str) -> str | None:
    """The key of the video a frame name comes from, or None if `name` is not a frame name."""
    m = FRAME_NAME.match(name)
    return None if m is None else f"{m.group(1)}.{m.group(3)}"


def frame_index(name: str, key: str) -> int | None:
    """The frame number in the name `name` of a frame of the video `key`, or None when `name`
    is not a frame name of `key`."""
    m = FRAME_NAME.match(name)
    if m is None or f"{m.group(1)}.{m.group(3)}" != key:
        return None
    return int(m.group(2))


def crop_name(key: str, index: int) -> str:
    """The name of object `index` of the image at `key` (see the module's docstring)."""
    stem, _, ext = key.rpartition(".")
    return f"{stem}-{ext}-crop-{index}.png"


def crop_key_of(name: str) -> str | None:
    """The key of the image (or the name of the video frame) a crop name comes from, or None if
    `name` is not a crop name."""
    m = CROP_NAME.match(name)
    return None if m is None else f"{m.group(1)}.{m.group(2)}"


def crop_index(name: str) -> int | None:
    """The object number in a crop name, or None when `name` is not one."""
    m = CROP_NAME.match(name)
    return None if m is None else int(m.group(3))


def source_keys(names: list[str], image_keys: set[str]) -> list[str]:
    """The key of the raw file each sample came from: a sample named as one of `image_keys` is
    that image; a video frame `{stem}-{index}-{ext}.png` comes from `{stem}.{ext}`, an object crop
    `{stem}-{ext}-crop-{i}.png` from `{stem}.{ext}` (or, when `{stem}.{ext}` is a frame name
    and not one of `image_keys`, from that frame's video). (Crop selection never lets an image of
    the ledger own a crop's name, or the name its crops are cut from: ingest.candidates_from.)"""
    out = []
    for name in names:
        if name in image_keys:
            out.append(name)
            continue
        parent = crop_key_of(name)
        if parent is not None:  # a crop of an image, or of a video frame
            video = None if parent in image_keys else video_key_of(parent)
            out.append(video or parent)
            continue
        out.append(video_key_of(name) or name)
    return out


def crop_frame_index(name: str, key: str) -> int | None:
    """The frame number of the video `key` that the crop `name` was cut from, or None when
    `name` is not a crop of one of its frames."""
    parent = crop_key_of(name)
    return None if parent is None else frame_index(parent, key)


def run_tag(index: int) -> str:
    """Lightly-style tags: the first run is `initial-tag`, then `run-1`, `run-2`, ..."""
    return "initial-tag" if index == 0 else f"run-{index}"


def is_automatic_tag(tag: str) -> bool:
    """Whether `tag` is of the form `run_tag` gives (reserved: a user's `run-7` would clash with
    the seventh run's)."""
    return tag == "initial-tag" or re.fullmatch(r"run-[0-9]+", tag) is not None


def folded(name: str) -> str:
    """`name` as a file system that ignores case and Unicode normalisation sees it (macOS
    APFS and HFS+, Windows NTFS, exFAT, SMB shares): the Unicode canonical caseless form,
    NFD(casefold(NFD(name))). Two names with the same folded form are one file there: `A.jpg`
    and `a.jpg`, `café.jpg` written precomposed (NFC) and decomposed (NFD)."""
    import unicodedata

    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def portable_names(names: Iterable[str], kept: Iterable[str] = ()) -> dict[str, str]:
    """The name each of `names` is written under in an export folder, so that no two of them,
    nor one of them and a file in `kept` (written by an earlier export and staying there), are one
    file where case and Unicode normalisation are ignored (`folded`). A name keeps its own
    spelling unless another of its folded form is in `kept` (that file is already there), or
    sorts before it among `names` (of `A.jpg` and `a.jpg`, `A.jpg` keeps its name); the others
    get a suffix made from their own spelling before the extension, `a.jpg` -> `a~3f9c02d1.jpg`:
    the same name is given the same suffix in every export. Only the names that change are in
    the result."""
    import hashlib

    kept = set(kept)
    names = sorted(set(names) - kept)
    taken = {folded(n) for n in kept}
    out: dict[str, str] = {}
    for name in names:
        fold = folded(name)
        if fold not in taken:
            taken.add(fold)
            continue
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        folder, slash, base = name.rpartition("/")
        stem, dot, ext = base.rpartition(".")
        if not stem:  # no extension (or a name such as `.x`): the suffix goes at the end
            stem, dot, ext = base, "", ""
        for width in range(8, len(digest) + 1, 4):
            tail = f"~{digest[:width]}{dot}{ext}"
            # A file name may have 255 bytes: a long stem is cut to make room for the suffix.
            short = stem
            while short and len((short + tail).encode("utf-8", "surrogatepass")) > NAME_MAX:
                short = short[:-1]
            new = f"{folder}{slash}{short}{tail}"
            if new in kept or folded(new) not in taken:  # (in kept: an earlier export's, as now)
                break
        taken.add(folded(new))
        out[name] = new
    return out


# The bytes a file name may have (ext4, APFS, NTFS's 255 UTF-16 units hold at least as many).
NAME_MAX = 255

# What Windows (NTFS, exFAT, FAT, SMB shares) refuses in a file or folder name.
_WINDOWS_CHARS = frozenset('<>:"|?*\\') | {chr(c) for c in range(32)}
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10)}
)


def windows_name_problem(name: str) -> str | None:
    """Why Windows cannot hold the file `name` (a path with `/`), or None when it can: a
    character it refuses (`:`, `?`, `*`, `"`, `<`, `>`, `|`, `\\`, control characters), a part
    ending in a dot or a space, or a reserved device name (`CON`, `nul.jpg`, `COM1`, ...)."""
    for part in name.split("/"):
        bad = sorted({c for c in part if c in _WINDOWS_CHARS})
        if bad:
            return "the character" + "s" * (len(bad) > 1) + " " + " ".join(map(repr, bad))
        if part.endswith((".", " ")):
            return f"{part!r} ends in a dot or a space"
        if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
            return f"{part.split('.', 1)[0]!r} is a reserved device name"
    return None


def counted(n: int, word: str) -> str:
    """How messages count things: '1 video', '2 videos', '0 files'."""
    return f"{n} {word}{'' if n == 1 else 's'}"
