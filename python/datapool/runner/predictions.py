"""Crop selection's predictions files: which version of an image's predictions file, or of a
video's frames' files, a run cuts from (the ledger's `predictions`), known from one listing of
the task's folder (docs/selection.md, "Predictions that change").

    files = PredictionFiles(task, read, listed)        # listed: .lightly/predictions/TASK/ once
    files.identities([("a.jpg", "image"), ("cam/clip.mp4", "video")], advance)

An identity is one of:
- `-` (ledger.NO_PREDICTIONS): no file (no frame file, for a video);
- 32 hex digits: the blake2b-128 of the file's bytes (ledger.predictions_identity): a local
  file's, read to know it, and every file of a crop run before ETags were recorded;
- `etag:<ETag>`: an S3 object's, as the listing gives it (no GET);
- `frames:<32 hex>`: a video's, the blake2b-128 of its frame files' numbers and identities, so
  that a change to any of them (or one added or removed) changes it; by number, not name, so
  that a video moved with its frames' files keeps it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from datapool.lightly import frame_files, predictions_path
from datapool.pool.ledger import NO_PREDICTIONS, etag_is_md5, predictions_identity

ETAG = "etag:"
FRAMES = "frames:"


class PredictionFiles:
    """The predictions files of a crop run's task: listed once (one request per 1,000 objects
    from S3), read only where the listing does not tell a file's version (a local file)."""

    def __init__(
        self, task: str, read: Callable[[str], bytes | None], listed: dict[str, str]
    ) -> None:
        self.task, self.read, self.listed = task, read, listed
        self.frames = frame_files(listed, task)  # video -> {frame number: path}
        self.known: dict[str, str] = {}  # path -> its identity, once read

    def listed_identity(self, path: str) -> str | None:
        """The identity of the file at `path` as the listing tells it: NO_PREDICTIONS where it
        was not listed, its ETag's where it has one; None where it must be read to know."""
        version = self.listed.get(path)
        if version is None:
            return NO_PREDICTIONS
        return ETAG + version if version else None

    def identities(
        self, files: Sequence[tuple[str, str]], advance: Callable[[int], None] | None = None
    ) -> list[str]:
        """The identity of each (key, kind)'s predictions: an image's file, a video's frames'
        files. The files the listing does not tell are read 8 at a time (`advance(1)` each)."""
        wanted: list[str] = []
        for key, kind in files:
            if kind == "video":
                wanted += self.frames.get(key, {}).values()
            else:
                wanted.append(predictions_path(self.task, key))
        unread = [p for p in dict.fromkeys(wanted) if self._told(p) is None]
        with ThreadPoolExecutor(8) as pool:
            for path, data in zip(unread, pool.map(self.read, unread)):
                self.known[path] = predictions_identity(data)
                if advance is not None:
                    advance(1)
        return [self._identity(key, kind) for key, kind in files]

    def unread(self, files: Sequence[tuple[str, str]]) -> int:
        """How many files `identities` would read for `files` (for a progress line)."""
        paths = [
            p
            for key, kind in files
            for p in (
                self.frames.get(key, {}).values()
                if kind == "video"
                else [predictions_path(self.task, key)]
            )
        ]
        return sum(self._told(p) is None for p in set(paths))

    def _told(self, path: str) -> str | None:
        told = self.known.get(path)
        return told if told is not None else self.listed_identity(path)

    def _identity(self, key: str, kind: str) -> str:
        if kind != "video":
            return self._told(predictions_path(self.task, key)) or NO_PREDICTIONS
        frames = self.frames.get(key)
        if not frames:
            return NO_PREDICTIONS
        lines = "".join(
            f"{n}\t{self._told(p)}\n" for n, p in sorted(frames.items(), key=lambda x: int(x[0]))
        )
        return FRAMES + hashlib.blake2b(lines.encode(), digest_size=16).hexdigest()

    def same_bytes(self, recorded: dict[str, str]) -> set[str]:
        """The images of `recorded` (key -> its file's identity as recorded, in the other form
        than the listing gives now: a blake2b before ETags were recorded; an ETag, the
        predictions then in a bucket) whose file is the same bytes: each read to know (a GET
        from S3), 8 at a time."""

        def same(item: tuple[str, str]) -> bool:
            key, was = item
            data = self.read(predictions_path(self.task, key))
            if data is None:
                return False
            if was.startswith(ETAG):
                etag = was[len(ETAG) :]
                md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                return etag_is_md5(etag) and md5 == etag
            return predictions_identity(data) == was

        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(same, recorded.items()))
        return {key for key, yes in zip(recorded, found) if yes}


def same_form(a: str, b: str) -> bool:
    """Whether two identities of a file are of one form (both ETags, or both hashes of bytes),
    so that they differ only where the file does."""
    return a.startswith(ETAG) == b.startswith(ETAG) and a.startswith(FRAMES) == b.startswith(FRAMES)
