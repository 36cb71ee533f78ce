"""Export of a run's selection: the selected samples as files, to a folder or an S3 prefix.

    DEST/<image key>                  each selected image, its bytes as they are in the source
    DEST/<stem>-<index>-<ext>.png     each selected video frame, full size, PNG, Lightly's name
    DEST/selected_filenames.txt       the names this run exported, one per line

The folder accumulates across runs (each run adds its new samples); `selected_filenames.txt` lists
this run's. A video frame is decoded again from the source (only the selected videos, up to their
last selected frame); its index is the decoded frame number, as in the run.

Keys come from the source, and an S3 key may be anything: `../x.jpg`, `/etc/x.jpg`, or contain a
NUL. Such names are refused and reported, never written. For a local folder, no write ever leaves
it: every folder on the way is checked not to be a symbolic link before it is created or entered,
and files are written beside their target and renamed onto it (a rename replaces a link, it never
writes through one). Each file is fsynced before its rename and the folders after the files, so
`selected_filenames.txt` is durable only once the samples it lists are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool._fsio import atomic_write_bytes, fsync_dir
from datapool.errors import DatapoolError, DecodeError, SourceError
from datapool.naming import frame_index

if TYPE_CHECKING:
    from datapool.config import RunConfig

LIST_NAME = "selected_filenames.txt"


@dataclass
class ExportResult:
    dest: str
    written: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"}

    def to_json(self) -> dict[str, Any]:
        return {"dest": self.dest, "written": len(self.written), "refused": self.refused}


def unsafe_name_reason(name: str) -> str | None:
    """Why `name` may not be written under an export folder, or None when it is safe."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "the name contains a NUL character"
    if name.startswith(("/", "\\")) or (
        len(name) > 2 and name[0].isalpha() and name[1] == ":" and name[2] in "/\\"
    ):
        return "the name is an absolute path"
    parts = name.replace("\\", "/").split("/")
    if any(p == ".." for p in parts):
        return "the name contains a '..' path part"
    if any(p in ("", ".") for p in parts):
        return "the name contains an empty or '.' path part"
    return None


class _LocalDest:
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        # Folders with new entries not yet fsynced (a new export folder is one of its parent's).
        self._unsynced: set[Path] = set() if self.root.is_dir() else {self.root.parent}
        self.root.mkdir(parents=True, exist_ok=True)
        self.real_root = os.path.realpath(self.root)
        self.label = str(self.root)

    def write(self, name: str, data: bytes) -> None:
        """Write `name` durably (fsynced, renamed into place; its folder is fsynced by `sync`)."""
        parts = name.split("/")
        folder = self.root
        for part in parts[:-1]:
            folder = folder / part
            if folder.is_symlink():
                raise _Refused(f"{folder} is a symbolic link; datapool does not write through it")
            if folder.exists() and not folder.is_dir():
                raise _Refused(f"{folder} exists and is not a folder")
            if not folder.is_dir():
                folder.mkdir(exist_ok=True)
                self._unsynced.add(folder.parent)
        real = os.path.realpath(folder)
        if real != self.real_root and not real.startswith(self.real_root + os.sep):
            raise _Refused("the write would leave the export folder")
        target = folder / parts[-1]
        if target.is_dir() and not target.is_symlink():
            raise _Refused(f"{target} is a folder")
        # Written beside the target and renamed onto it: a rename replaces a link at `target`,
        # it never writes through one.
        atomic_write_bytes(target, data, sync_dir=False)
        self._unsynced.add(folder)

    def sync(self) -> None:
        """Make every write so far durable: fsync the folders they renamed files into (once
        each, rather than once per file)."""
        for folder in sorted(self._unsynced, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
        self._unsynced.clear()


class _S3Dest:
    def __init__(self, url: str, config: RunConfig | None) -> None:
        from datapool.s3.client import S3Client, S3Settings, parse_s3_url

        self.bucket, self.prefix = parse_s3_url(url)
        self.client = S3Client(S3Settings.from_config(config))
        self.label = f"s3://{self.bucket}/{self.prefix}"

    def write(self, name: str, data: bytes) -> None:
        from datapool.s3.client import put_object

        put_object(self.client, self.bucket, self.prefix + name, data)

    def sync(self) -> None:
        """Nothing to do: a completed PUT is durable."""


class _Refused(Exception):
    pass


def _read_all(media: Any) -> bytes:
    if isinstance(media, (str, os.PathLike)):
        return Path(media).read_bytes()
    media.seek(0)
    return bytes(media.read())


def _png(frame: Any) -> bytes:
    import av

    rgb = frame.reformat(format="rgb24")
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = rgb.width, rgb.height, "rgb24"
    ctx.time_base = Fraction(1, 25)
    return b"".join(bytes(p) for p in ctx.encode(rgb)) + b"".join(
        bytes(p) for p in ctx.encode(None)
    )


def _video_frames(media: Any, wanted: set[int]) -> dict[int, bytes]:
    """PNG bytes of the decoded frames numbered in `wanted` (decoding stops after the last)."""
    import av

    out: dict[int, bytes] = {}
    src = os.fspath(media) if isinstance(media, (str, os.PathLike)) else media
    if not isinstance(src, str):
        src.seek(0)
    last = max(wanted)
    try:
        with av.open(src, "r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    out[index] = _png(frame)
                if index >= last:
                    break
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise DecodeError(f"cannot decode again for export: {e}") from None
    return out


def export_selection(
    source: Any,
    samples: Sequence[tuple[str, str, str]],
    dest: str,
    config: RunConfig | None = None,
) -> ExportResult:
    """Write `samples` = [(sample name, source key, kind)] and selected_filenames.txt to `dest`,
    a folder or s3://bucket/prefix. Unsafe names and unreadable sources are refused and reported;
    a destination that cannot be written raises DatapoolError."""
    target: _LocalDest | _S3Dest
    try:
        target = _S3Dest(dest, config) if dest.lower().startswith("s3://") else _LocalDest(dest)
    except OSError as e:
        raise DatapoolError(f"cannot create the export folder {dest}: {e.strerror}") from None
    result = ExportResult(dest=target.label)
    todo = _plan(samples, result)
    written: set[str] = set()
    for key, media in source.open_inputs(sorted(todo)):
        try:
            for name, blob in _file_samples(key, media, todo[key], result).items():
                try:
                    target.write(name, blob)
                except _Refused as e:
                    result.refused.append({"name": name, "reason": str(e)})
                else:
                    written.add(name)
        except (_Refused, DecodeError) as e:
            for name, _ in todo[key]:
                result.refused.append({"name": name, "reason": str(e)})
        except OSError as e:
            raise DatapoolError(f"exporting to {target.label} failed: {e}") from None
        finally:
            if hasattr(media, "close"):
                media.close()
    result.written = [name for name, _, _ in samples if name in written]
    listing = "".join(f"{n}\n" for n in result.written).encode()
    try:
        target.sync()  # the samples are durable before the list that names them
        target.write(LIST_NAME, listing)
        target.sync()
    except (OSError, _Refused) as e:
        raise DatapoolError(f"exporting to {target.label} failed: {e}") from None
    return result


def _plan(
    samples: Sequence[tuple[str, str, str]], result: ExportResult
) -> dict[str, list[tuple[str, int | None]]]:
    """The samples to write, by source key: [(name, frame index, None for an image)]. Unsafe
    names, and frame names that do not belong to their video, are refused into `result`."""
    todo: dict[str, list[tuple[str, int | None]]] = {}
    for name, key, kind in samples:
        reason = unsafe_name_reason(name)
        if reason is None and kind == "video":
            index = frame_index(name, key)
            if index is None:
                reason = f"{name!r} is not a frame name of {key!r}"
        else:
            index = None
        if reason is not None:
            result.refused.append({"name": name, "reason": reason})
            continue
        todo.setdefault(key, []).append((name, index))
    return todo


def _file_samples(
    key: str, media: Any, entries: list[tuple[str, int | None]], result: ExportResult
) -> dict[str, bytes]:
    """The bytes of each sample of one source file: an image as it is, a video's frames as PNG
    (a frame not found again is refused into `result`). An unreadable file raises _Refused."""
    if isinstance(media, SourceError):
        raise _Refused(f"cannot read {key!r} from the source: {media}")
    if entries[0][1] is None:  # an image: its bytes as they are
        try:
            blob = _read_all(media)
        except OSError as e:
            raise _Refused(f"cannot read {key!r} from the source: {e.strerror}") from None
        return {name: blob for name, _ in entries}
    frames = _video_frames(media, {i for _, i in entries if i is not None})
    data = {}
    for name, i in entries:
        if i in frames:
            data[name] = frames[i]
        else:
            result.refused.append({"name": name, "reason": "frame not found again"})
    return data
