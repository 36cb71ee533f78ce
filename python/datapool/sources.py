"""Sources of raw files. A source lists its media files as a table and hands out their contents.

Every source has the same two methods:
    list() -> DataFrame           one row per media file: key, size, mtime_ns, etag, kind
    open_inputs(keys) -> Iterator[(key, MediaInput | SourceError)]
                                  each key's contents, in the order of `keys`, as something
                                  `av.open` accepts (a path, or a binary file object that the
                                  consumer closes), or a SourceError when that one file cannot be
                                  read (the file is skipped with that reason; the run goes on).
                                  A SourceError *raised* by the iterator stops the run.
A local folder is LocalSource; `s3://bucket/prefix` is S3Source (datapool.s3, boto3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .decode import MediaInput
from .errors import SourceError

if TYPE_CHECKING:
    import pandas as pd

    from .config import RunConfig
    from .s3 import S3Source

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"})
VIDEO_EXTENSIONS = frozenset({"mp4", "mov", "avi", "mkv", "webm"})

LISTING_COLUMNS = ["key", "size", "mtime_ns", "etag", "kind"]


def media_kind(key: str) -> str | None:
    """'image', 'video', or None for a file datapool does not read."""
    ext = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


class LocalSource:
    """A local folder, listed recursively. Keys are POSIX paths relative to the folder.

    Symbolic links to folders are not followed (so a link loop cannot trap the listing).
    Hidden files and folders (names starting with '.') are left out.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise SourceError(f"source folder {self.root} does not exist")
        if not self.root.is_dir():
            raise SourceError(f"source {self.root} is not a folder")
        self.n_ignored = 0

    def __str__(self) -> str:
        return str(self.root)

    def list(self) -> pd.DataFrame:
        """One row per media file: key, size (bytes), mtime_ns, etag ("" here), kind. Sorted."""
        import pandas as pd

        rows: list[tuple[str, int, int, str, str]] = []
        ignored = 0
        root = str(self.root)
        for dirpath, dirnames, filenames in os.walk(root, onerror=self._raise):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, root)
            for name in filenames:
                if name.startswith("."):
                    continue
                kind = media_kind(name)
                if kind is None:
                    ignored += 1
                    continue
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue  # vanished or dangling link: not listed
                key = name if rel_dir == "." else f"{Path(rel_dir).as_posix()}/{name}"
                rows.append((key, st.st_size, st.st_mtime_ns, "", kind))
        self.n_ignored = ignored
        rows.sort()
        df = pd.DataFrame(rows, columns=LISTING_COLUMNS)
        return df.astype(
            {"key": object, "size": "int64", "mtime_ns": "int64", "etag": object, "kind": object}
        )

    def local_path(self, key: str) -> Path:
        return self.root / key

    def open_inputs(self, keys: Sequence[str]) -> Iterator[tuple[str, MediaInput | SourceError]]:
        """Each key with its local path, at once (the decoder reads the file itself)."""
        for key in keys:
            yield key, str(self.root / key)

    @staticmethod
    def _raise(err: OSError) -> None:
        raise SourceError(f"cannot list {err.filename}: {err.strerror}")


def open_source(
    spec: str | os.PathLike[str], config: RunConfig | None = None
) -> LocalSource | S3Source:
    """A local folder, or `s3://bucket/prefix` (with the S3 settings of `config`)."""
    text = os.fspath(spec)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme.lower() == "s3":
            from .s3 import S3Source

            return S3Source.from_config(text, config)
        raise SourceError(
            f"{scheme}:// sources are not supported (a local folder or s3://bucket/prefix); "
            f"got {scheme}://..."
        )
    return LocalSource(text)
