"""Sources of raw files: the Source protocol and the registry that opens one from its spec.

Every source has the same methods:
    list(prune, counted) -> DataFrame
                                  one row per media file: key, size, mtime_ns, etag, kind
                                  (datapool.sources.listing); files without a media extension are
                                  counted in `n_ignored` and named in `ignored`. `prune(folder)`,
                                  if given, is true of a folder ("a/b/") whose files are all left
                                  out (ListingFilter.prunes): a source may skip reading it.
                                  `counted(n)`, if given, is told of the files listed as they come
                                  (a folder's, an S3 page's): the listing's progress
    open_inputs(keys) -> Iterator[(key, MediaInput | SourceError)]
                                  each key's contents, in the order of `keys`, as something
                                  `av.open` accepts (a path, or a binary file object that the
                                  consumer closes), or a SourceError when that one file cannot be
                                  read (the file is skipped with that reason; the run goes on).
                                  A SourceError *raised* by the iterator stops the run.
    read_bytes(key) -> bytes | None
                                  a small file of the source by its key, hidden ones included
                                  (`.lightly/predictions/...`, read by datapool.lightly), or
                                  None when there is none; a failure to read stops the run
    list_files(prefix) -> dict[str, str]
                                  every file under the folder `prefix` ("a/b/", hidden ones
                                  included), by key, with the version its listing gives: an S3
                                  object's ETag, "" for a local file (read it to know); one
                                  listing however many files (`.lightly/predictions/TASK/`)

A source is named by a plain string, its spec: a folder, `s3://bucket/prefix` or
`gs://bucket/prefix`. `open_source` finds the implementation by the spec's scheme and imports it
only then (boto3 is imported only for an s3:// spec, google.cloud only for a gs:// one), so no other module tests for "s3://" itself, and a worker in another process
opens the same source from the same spec.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Protocol, Union

from datapool.errors import SourceError
from datapool.specs import scheme_of

if TYPE_CHECKING:
    import pandas as pd

    from datapool.config import RunConfig

# The reason a file is skipped with when it could not be read (permission denied, a network
# error), as opposed to a file that cannot be decoded: the ledger keeps it, and the next run
# tries the file again (pool/ledger.py: diff_listing).
READ_FAILED = "read failed: "
# How a source's reason ends when the next run reads the file again (a failed read; an S3 object
# that changed after it was listed); `for_export` drops it, since an export is not retried.
TRIED_AGAIN = "; tried again next run"
READ_AGAIN = "; the next run reads it again"


def for_export(reason: str) -> str:
    """A source's reason for a file it cannot give, in the words of an export (no run retries
    it for an export)."""
    for words in (TRIED_AGAIN, READ_AGAIN):
        reason = reason.removesuffix(words)
    return reason


# What a source hands to decoding: a local path, or a seekable binary file object.
MediaInput = Union[str, "os.PathLike[str]", IO[bytes]]


def read_media(media: MediaInput) -> bytes:
    """All the bytes of a media input: a file's, or a file object's from its start."""
    if isinstance(media, (str, os.PathLike)):
        with open(media, "rb") as f:
            return f.read()
    media.seek(0)
    return bytes(media.read())


# scheme -> "module:class"; the class has `open(spec, config) -> Source`.
_SCHEMES = {
    "": "datapool.sources.local:LocalSource",
    "s3": "datapool.s3.source:S3Source",
    "gs": "datapool.gcs.source:GcsSource",
}


class Source(Protocol):
    n_ignored: int
    ignored: list[str]

    def list(
        self,
        prune: Callable[[str], bool] | None = None,
        counted: Callable[[int], None] | None = None,
    ) -> pd.DataFrame: ...

    def open_inputs(
        self, keys: Sequence[str]
    ) -> Iterator[tuple[str, MediaInput | SourceError]]: ...

    def read_bytes(self, key: str) -> bytes | None: ...

    def exists(self, key: str) -> bool: ...

    def list_files(self, prefix: str) -> dict[str, str]: ...


def open_source(spec: str | os.PathLike[str], config: RunConfig | None = None) -> Source:
    """A local folder, `s3://bucket/prefix` (with the S3 settings of `config`) or
    `gs://bucket/prefix`."""
    text = os.fspath(spec)
    scheme = scheme_of(text)
    if scheme not in _SCHEMES:
        raise SourceError(
            f"{scheme}:// sources are not supported (a local folder, s3://bucket/prefix or "
            "gs://bucket/prefix); "
            f"got {text.split('://', 1)[0]}://..."
        )
    module, _, name = _SCHEMES[scheme].partition(":")
    opened: Source = getattr(importlib.import_module(module), name).open(text, config)
    return opened
