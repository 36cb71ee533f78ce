"""S3 as a source: the objects under `s3://bucket/prefix`, listed and read through boto3.

Listing uses the ListObjectsV2 paginator; each object gives its key (relative to the prefix), size,
ETag and LastModified, and the ledger uses the ETag to tell a rewritten object (see ledger.py).

Reads run on a thread pool with a bounded number of objects (and bytes) read ahead of the
decoder. Every GET carries `If-Match: <listed ETag>`, so an object rewritten after the listing is
never decoded under the old ETag. Images are read whole into memory; videos go to a spooled
temporary file (memory up to `spool_memory` bytes, then disk): the decoder opens a video twice
(frame count, then frames) and seeks in it, which a ranged-read file object turns into many small
GETs. `video_reads="ranged"` selects the ranged-read file object instead; bench/bench_s3.py
measures both (see docs/s3.md for the figures).

A GET whose body is cut short, or stalls for the read timeout (`S3Settings.read_timeout_s`), is
read on from the first byte that did not come (a ranged GET, If-Match the same ETag).

Errors and retries: datapool.s3.client.
"""

from __future__ import annotations

import calendar
import io
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from datapool.errors import SourceError
from datapool.naming import media_kind
from datapool.s3.client import (
    _CHUNK,
    _SKIP_OBJECT,
    NOT_FOUND,
    S3Client,
    S3Settings,
    parse_s3_url,
)
from datapool.sources import READ_AGAIN, READ_FAILED, TRIED_AGAIN
from datapool.sources.listing import listing_frame
from datapool.sources.readahead import SkipObject, hash_inputs, read_ahead, spooled_read

if TYPE_CHECKING:
    import pandas as pd

    from datapool.config import RunConfig
    from datapool.sources import MediaInput


def _mtime_ns(dt: Any) -> int:
    """LastModified (an aware datetime) as integer nanoseconds since the epoch, exactly."""
    return (calendar.timegm(dt.utctimetuple()) * 1_000_000 + dt.microsecond) * 1000


class S3Source:
    """The objects under `s3://bucket/prefix`, listed like a local folder: keys are relative to the
    prefix, objects whose key has a part starting with '.' are left out (as hidden files are), and
    "folder" marker keys ending in '/' are not media. A media object whose key has a `.` or `..`
    part (`raw/./x.jpg`) is left out too, but named in `dot_parts`, which the run warns of: such
    a key names no file of a folder (a copy of the bucket, or an export, would write it under
    another name, `raw/x.jpg`, or outside the folder)."""

    # Every GET is If-Match the listed ETag: an object rewritten since the listing is never read
    # as the listed one (an export after the run need not list the bucket again to know).
    reads_listed_version = True

    def __init__(
        self,
        url: str,
        settings: S3Settings | None = None,
        *,
        max_in_flight: int | None = None,
        max_bytes_in_flight: int = 512 << 20,
        spool_memory: int = 32 << 20,
        video_reads: str = "spool",
        page_size: int = 1000,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.settings = settings or S3Settings()
        if video_reads not in ("spool", "ranged"):
            raise SourceError(f"video_reads must be 'spool' or 'ranged', got {video_reads!r}")
        self.max_in_flight = max_in_flight or 2 * self.settings.concurrency
        self.max_bytes_in_flight = max_bytes_in_flight
        self.spool_memory = spool_memory
        self.video_reads = video_reads
        self.page_size = page_size
        self.s3 = S3Client(self.settings)
        self.n_ignored = 0
        self.ignored: list[str] = []  # keys without a media extension, hidden ones left out
        self.dot_parts: list[str] = []  # media keys with a `.` or `..` part, left out
        self._listed: dict[str, tuple[int, str]] = {}  # key -> (size, etag)

    @classmethod
    def open(cls, url: str, config: RunConfig | None = None) -> S3Source:
        """The registry's opener (datapool.sources.open_source)."""
        return cls(url, S3Settings.from_config(config))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def list(
        self,
        prune: Callable[[str], bool] | None = None,
        counted: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """One row per media object: key, size, mtime_ns (LastModified), etag, kind. Sorted.
        `prune` is not used: a prefix is listed whole, and the runner's filter drops the keys.
        `counted(n)` is told of each page's n objects as it comes."""
        from botocore.exceptions import BotoCoreError, ClientError

        rows: list[tuple[str, int, int, str, str]] = []
        ignored: list[str] = []
        dots: list[str] = []
        n = len(self.prefix)
        try:
            pages = self.s3.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=self.prefix,
                PaginationConfig={"PageSize": self.page_size},
            )
            for page in pages:
                if counted is not None:
                    counted(len(page.get("Contents", ())))
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])[n:]
                    if not key or key.endswith("/"):
                        continue
                    if any(part.startswith(".") for part in key.split("/")):
                        if {".", ".."} & set(key.split("/")) and media_kind(key) is not None:
                            dots.append(key)
                        continue
                    kind = media_kind(key)
                    if kind is None:
                        ignored.append(key)
                        continue
                    etag = str(obj.get("ETag", "")).strip('"')
                    rows.append((key, int(obj["Size"]), _mtime_ns(obj["LastModified"]), etag, kind))
        except (ClientError, BotoCoreError) as e:
            raise self.s3.stop(
                e, self.bucket, f"listing s3://{self.bucket}/{self.prefix}"
            ) from None
        if not (rows or ignored or dots) and self.prefix:
            self._refuse_an_object_as_prefix()
        self.n_ignored = len(ignored)
        self.ignored = sorted(ignored)
        self.dot_parts = sorted(dots)
        rows.sort()
        self._listed = {k: (s, e) for k, s, _, e, _ in rows}
        return listing_frame(rows)

    def _refuse_an_object_as_prefix(self) -> None:
        """Nothing under the prefix: where the URL names an object (`s3://b/raw/a.jpg`, taken as
        the prefix `raw/a.jpg/`), stop as a local source that is a file does (it listed nothing,
        and the run said only "check the path", exit 0). One listing of a key, no more."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix.rstrip("/")
        try:
            got = self.s3.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except (ClientError, BotoCoreError):
            return  # the listing worked a moment ago; the run's own warning says the rest
        if any(str(o.get("Key")) == key for o in got.get("Contents", ())):
            folder, _, name = key.rpartition("/")
            raise SourceError(
                f"source s3://{self.bucket}/{key} is an object, not a prefix; give the prefix "
                f"that holds it, s3://{self.bucket}/{folder + '/' if folder else ''} (add "
                f"--include '{name}' to use only this object)"
            )

    def open_inputs(self, keys: Sequence[str]) -> Iterator[tuple[str, MediaInput | SourceError]]:
        """Each key with a binary file object of its contents (the consumer closes it) or the
        SourceError why that object is skipped, in the order of `keys`.

        Up to `concurrency` objects are read at once and at most `max_in_flight` objects (and
        `max_bytes_in_flight` bytes, except that one object is always allowed) are held ahead of
        the consumer. A SourceError raised here stops the run.
        """
        return read_ahead(
            keys,
            self._open,
            self._size,
            workers=self.settings.concurrency,
            max_in_flight=self.max_in_flight,
            max_bytes_in_flight=self.max_bytes_in_flight,
            thread_name="datapool-s3",
        )

    def content_hashes(self, keys: Sequence[str]) -> dict[str, str]:
        """blake2b-128 of each object's bytes, hex, as sources/local.py hashes a file; an object
        that cannot be read is left out. Asked only for objects whose ledger row holds a content
        hash and no ETag, with the same size (pool/ledger.py): a folder's files moved into this
        bucket (--source-moved), where it tells the same bytes from a changed file. S3 objects
        themselves are told apart by their ETags, never hashed."""
        return hash_inputs(self.open_inputs(keys))

    def read_bytes(self, key: str) -> bytes | None:
        """The whole object `key` (relative to the prefix; hidden keys such as `.lightly/...`
        included), or None when there is none. Any other failure stops the run (SourceError)."""
        from botocore.exceptions import BotoCoreError

        what = f"reading {key!r}"
        resp = self.s3.request(
            "get_object", self.bucket, what, none_if=NOT_FOUND, Key=self.prefix + key
        )
        if resp is None:
            return None
        try:
            data: bytes = resp["Body"].read()  # botocore checks the length against the header
        except BotoCoreError as e:
            raise self.s3.stop(e, self.bucket, what) from None
        finally:
            resp["Body"].close()
        return data

    def exists(self, key: str) -> bool:
        """Whether the object `key` (relative to the prefix) is there: one HeadObject, no byte
        of it read. A failure other than a missing object stops the run (SourceError)."""
        what = f"asking for {key!r}"
        head = self.s3.request(
            "head_object", self.bucket, what, none_if=NOT_FOUND, Key=self.prefix + key
        )
        return head is not None

    def list_files(self, prefix: str) -> dict[str, str]:
        """Every object under the folder `prefix` (relative to the source's prefix; hidden keys
        included), by key, with its ETag: one ListObjectsV2 request per 1,000 objects, where
        reading each would be a GET each."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = self.prefix + (prefix.rstrip("/") + "/" if prefix else "")
        n = len(self.prefix)
        found: dict[str, str] = {}
        try:
            pages = self.s3.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=where, PaginationConfig={"PageSize": self.page_size}
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])
                    if not key.endswith("/"):
                        found[key[n:]] = str(obj.get("ETag", "")).strip('"')
        except (ClientError, BotoCoreError) as e:
            raise self.s3.stop(e, self.bucket, f"listing s3://{self.bucket}/{where}") from None
        return found

    def listed_version(self, key: str) -> tuple[int, str] | None:
        """The size and ETag the listing saw of `key` (None where it was not listed), for a
        reader in another process to pin its read to (`pin`): the Ray engine's workers."""
        return self._listed.get(key)

    def pin(self, key: str, size: int, version: str) -> None:
        """Read `key` as another process listed it (`listed_version`): If-Match `version`, its
        length checked against `size`; an empty `version` reads whatever is there now."""
        if version:
            self._listed[key] = (size, version)
        else:
            self._listed.pop(key, None)

    def _size(self, key: str) -> int:
        return self._listed.get(key, (0, ""))[0]

    def _open(self, key: str) -> MediaInput | SourceError:
        size, etag = self._listed.get(key, (-1, ""))
        if self.video_reads == "ranged" and media_kind(key) == "video" and size >= 0:
            return io.BufferedReader(
                _RangedReader(self, key, size, etag), buffer_size=max(_CHUNK, 1 << 16)
            )
        return spooled_read(
            key,
            size,
            lambda out: self._read_whole(key, size, etag, out),
            spool_memory=self.spool_memory,
        )

    def _read_whole(self, key: str, size: int, etag: str, out: IO[bytes]) -> int:
        """GET the object into `out`; its length. A body cut short (the connection closed, or no
        byte for `read_timeout_s`: a stalled link) is read on from where it stopped, with a
        ranged GET If-Match the same ETag, so a large video on a slow link is not downloaded
        again from its start at every fault. `max_attempts` GETs in a row that bring no byte
        stop the run."""
        attempts = max(1, self.settings.max_attempts)
        failed = 0
        while True:
            done = out.tell()
            resume = done if 0 < done and (size < 0 or done < size) else 0
            if done and not resume:  # (the whole length came, and still it failed: start over)
                out.seek(0)
                out.truncate()
            try:
                self._get_into(key, etag, out, resume_at=resume)
                return out.tell()
            except _TruncatedBody as e:
                failed = 0 if out.tell() > resume else failed + 1
                if failed == attempts:
                    raise SourceError(
                        f"reading s3://{self.bucket}/{self.prefix}{key}: "
                        f"{e or 'the body was cut short'} {attempts} times in a row, at byte "
                        f"{out.tell()} (--s3-max-attempts, --s3-read-timeout)"
                    ) from None

    def _get_into(
        self, key: str, etag: str, out: IO[bytes], rng: str | None = None, resume_at: int = 0
    ) -> int:
        """GET the object (If-Match its listed ETag) into `out`; the number of bytes written.
        `resume_at`: the object from that byte on, written after the `resume_at` bytes already
        in `out` (a server that ignores the Range and sends the whole object overwrites them)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            FlexibleChecksumError,
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + key}
        if etag:
            kwargs["IfMatch"] = etag
        if rng:
            kwargs["Range"] = rng
        elif resume_at:
            kwargs["Range"] = f"bytes={resume_at}-"
        try:
            resp = self.s3.client.get_object(**kwargs)
        except ClientError as e:
            code, msg = self.s3.error(e, self.bucket, f"reading {key!r}")
            if code in _SKIP_OBJECT:
                if code in ("PreconditionFailed", "412"):
                    msg = f"the object changed after it was listed (its ETag differs){READ_AGAIN}"
                elif code == "InvalidObjectState":
                    # Archived (Glacier, Deep Archive): a restore changes neither ETag, size nor
                    # LastModified, so only a failed read (READ_FAILED) is tried again next run.
                    msg = (
                        f"{READ_FAILED}the object's storage class cannot be read directly "
                        f"(archived: restore it){TRIED_AGAIN}"
                    )
                raise SkipObject(msg) from None
            raise self.s3.stop(e, self.bucket, f"reading {key!r}") from None
        except BotoCoreError as e:
            raise self.s3.stop(e, self.bucket, f"reading {key!r}") from None
        body = resp["Body"]
        got = 0
        if resume_at and not str(resp.get("ContentRange") or "").startswith(f"bytes {resume_at}-"):
            out.seek(0)  # the whole object came, not the rest of it
            out.truncate()
        try:
            for chunk in body.iter_chunks(_CHUNK):
                out.write(chunk)
                got += len(chunk)
        except (
            IncompleteReadError,
            ResponseStreamingError,
            ReadTimeoutError,
            ConnectionClosedError,
        ):
            raise _TruncatedBody from None
        except FlexibleChecksumError:  # the body differs from the checksum sent with it
            out.seek(0)  # its bytes are not the object's: the next attempt starts over
            out.truncate()
            raise _TruncatedBody(
                "the body did not match the checksum the server sent with it (a server that "
                "sends wrong checksums: set AWS_RESPONSE_CHECKSUM_VALIDATION=when_required)"
            ) from None
        finally:
            body.close()
        expected = resp.get("ContentLength")
        if expected is not None and got != int(expected):
            raise _TruncatedBody
        return got


class _TruncatedBody(Exception):
    pass


class _RangedReader(io.RawIOBase):
    """A seekable, read-only file object over one S3 object: each read is a ranged GET (wrap it in
    io.BufferedReader so that small reads share one request)."""

    def __init__(self, source: S3Source, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._src, self._key, self._size, self._etag = source, key, size, etag
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or len(view) == 0:
            return 0
        end = min(self._pos + len(view), self._size) - 1
        out = io.BytesIO()
        for attempt in range(max(1, self._src.settings.max_attempts)):
            out.seek(0)
            out.truncate()
            try:
                got = self._src._get_into(self._key, self._etag, out, f"bytes={self._pos}-{end}")
            except SkipObject as e:
                raise OSError(str(e)) from None
            except _TruncatedBody:
                if attempt + 1 == self._src.settings.max_attempts:
                    raise OSError("ranged read cut short") from None
                continue
            break
        view[:got] = out.getbuffer()[:got]
        self._pos += got
        return got
