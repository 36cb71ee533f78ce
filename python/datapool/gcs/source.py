"""Google Cloud Storage as a source: the objects under `gs://bucket/prefix`, listed and read through
google-cloud-storage (the extra datapool[gcs]).

Listing asks only for the fields a run uses: each object gives its key (relative to the prefix),
size, `updated` (the mtime), generation and MD5. The ledger's `etag` column holds the MD5 in hex
(as an S3 ETag of a single-part upload is), so an object rewritten with other bytes is changed,
an unchanged one costs no GET, a copy or rename is known by its bytes (pool/moves.py), and a
bucket downloaded into a folder is known file by file (`--source-moved DIR`, pool/ledger.py).
A composite object has no MD5: its etag is its generation (`g<generation>`), which every rewrite
changes.

Reads run on a thread pool with a bounded number of objects (and bytes) read ahead of the decoder,
as S3's do. Every download carries `ifGenerationMatch` the listed generation, so an object
rewritten after the listing is never decoded under the listed version, nor mixed from two. Images
are read whole into memory; videos go to a spooled temporary file (memory up to `spool_memory`
bytes, then disk), which the decoder opens twice and seeks in. A body cut short or stalled for the
read timeout is read on from the first byte that did not come (google-cloud-storage's own resume:
a ranged request, still ifGenerationMatch); a whole body is checked against the checksum the
server sends (CRC32C, else MD5).

Errors and retries: datapool.gcs.client.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from datapool.errors import SourceError
from datapool.gcs.client import GcsClient, parse_gs_url, status_code
from datapool.naming import media_kind
from datapool.sources import READ_FAILED, TRIED_AGAIN
from datapool.sources.listing import listing_frame
from datapool.sources.readahead import SkipObject, hash_inputs, read_ahead, spooled_read

if TYPE_CHECKING:
    import pandas as pd

    from datapool.config import RunConfig
    from datapool.sources import MediaInput

_LIST_FIELDS = "items(name,size,updated,generation,md5Hash),nextPageToken"
_CHUNK = 1 << 20


def _mtime_ns(dt: Any) -> int:
    """`updated` (an aware datetime) as integer nanoseconds since the epoch, exactly; 0 where
    the listing gave none."""
    if dt is None:
        return 0
    return (calendar.timegm(dt.utctimetuple()) * 1_000_000 + dt.microsecond) * 1000


def object_version(blob: Any) -> str:
    """What the ledger records as an object's etag: its MD5 in hex, or `g<generation>` for a
    composite object, which has none."""
    import base64
    import binascii

    md5 = blob.md5_hash
    if md5:
        try:
            return base64.b64decode(md5).hex()
        except (binascii.Error, ValueError):
            pass
    return f"g{blob.generation}"


class GcsSource:
    """The objects under `gs://bucket/prefix`, listed like a local folder: keys are relative to the
    prefix, objects whose key has a part starting with '.' are left out (as hidden files are), and
    "folder" placeholder objects ending in '/' are not media. A media object whose key has a `.`
    or `..` part is left out too, but named in `dot_parts`, which the run warns of (as S3's)."""

    # Every download is ifGenerationMatch the listed generation: an object rewritten since the
    # listing is never read as the listed one (an export after the run need not list again).
    reads_listed_version = True

    def __init__(
        self,
        url: str,
        *,
        concurrency: int = 8,
        max_in_flight: int | None = None,
        max_bytes_in_flight: int = 512 << 20,
        spool_memory: int = 32 << 20,
        read_timeout_s: float = 60.0,
        retry_timeout_s: float = 120.0,
        max_attempts: int = 3,
        page_size: int = 1000,
    ) -> None:
        self.bucket, self.prefix = parse_gs_url(url)
        self.concurrency = concurrency
        self.max_in_flight = max_in_flight or 2 * concurrency
        self.max_bytes_in_flight = max_bytes_in_flight
        self.spool_memory = spool_memory
        self.max_attempts = max_attempts
        self.page_size = page_size
        self.gcs = GcsClient(
            retry_timeout_s=retry_timeout_s, read_timeout_s=read_timeout_s, bucket=self.bucket
        )
        self.n_ignored = 0
        self.ignored: list[str] = []  # keys without a media extension, hidden ones left out
        self.dot_parts: list[str] = []  # media keys with a `.` or `..` part, left out
        self._listed: dict[str, tuple[int, int]] = {}  # key -> (size, generation)

    @classmethod
    def open(cls, url: str, config: RunConfig | None = None) -> GcsSource:
        """The registry's opener (datapool.sources.open_source)."""
        return cls(url)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    def _blobs(self, prefix: str, fields: str) -> Iterator[Any]:
        """The objects under `prefix` (the bucket's), page by page; a failure raises the
        SourceError that stops the run."""
        try:
            with self.gcs.lease() as client:
                yield from client.list_blobs(
                    self.bucket,
                    prefix=prefix,
                    fields=fields,
                    page_size=self.page_size,
                    timeout=self.gcs.timeout,
                    retry=self.gcs.retry,
                )
        except SourceError:
            raise
        except Exception as e:  # google.api_core, google.auth and requests errors alike
            raise self.gcs.stop(e, self.bucket, f"listing gs://{self.bucket}/{prefix}") from None

    def list(
        self,
        prune: Callable[[str], bool] | None = None,
        counted: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """One row per media object: key, size, mtime_ns (`updated`), etag (object_version), kind.
        Sorted. `prune` is not used: a prefix is listed whole, and the runner's filter drops the
        keys. `counted(n)` is told of the objects listed, 1,000 at a time (a page's worth)."""
        rows: list[tuple[str, int, int, str, str]] = []
        listed: dict[str, tuple[int, int]] = {}
        ignored: list[str] = []
        dots: list[str] = []
        n = len(self.prefix)
        seen = 0
        for blob in self._blobs(self.prefix, _LIST_FIELDS):
            seen += 1
            if counted is not None and seen % 1000 == 0:
                counted(1000)
            key = str(blob.name)[n:]
            if not key or key.endswith("/"):
                continue
            parts = key.split("/")
            if any(part.startswith(".") for part in parts):
                if {".", ".."} & set(parts) and media_kind(key) is not None:
                    dots.append(key)
                continue
            kind = media_kind(key)
            if kind is None:
                ignored.append(key)
                continue
            size = int(blob.size or 0)
            rows.append((key, size, _mtime_ns(blob.updated), object_version(blob), kind))
            listed[key] = (size, int(blob.generation or 0))
        if counted is not None:
            counted(seen % 1000)
        if not seen and self.prefix:
            self._refuse_an_object_as_prefix()
        self.n_ignored = len(ignored)
        self.ignored = sorted(ignored)
        self.dot_parts = sorted(dots)
        rows.sort()
        self._listed = listed
        return listing_frame(rows)

    def _refuse_an_object_as_prefix(self) -> None:
        """Nothing under the prefix: where the URL names an object (`gs://b/raw/a.jpg`, taken as
        the prefix `raw/a.jpg/`), stop as a local source that is a file does (it listed nothing,
        and the run said only "check the path", exit 0). One listing of the key, one page."""
        key = self.prefix.rstrip("/")
        try:
            with self.gcs.lease() as client:
                found = any(
                    b.name == key
                    for b in client.list_blobs(
                        self.bucket,
                        prefix=key,
                        max_results=1,
                        fields="items(name)",
                        timeout=self.gcs.timeout,
                        retry=self.gcs.retry,
                    )
                )
        except Exception:  # the listing worked a moment ago; the run's own warning says the rest
            return
        if found:
            folder, _, name = key.rpartition("/")
            raise SourceError(
                f"source gs://{self.bucket}/{key} is an object, not a prefix; give the prefix "
                f"that holds it, gs://{self.bucket}/{folder + '/' if folder else ''} (add "
                f"--include '{name}' to use only this object)"
            )

    def open_inputs(self, keys: Sequence[str]) -> Iterator[tuple[str, MediaInput | SourceError]]:
        """Each key with a binary file object of its contents (the consumer closes it) or the
        SourceError why that object is skipped, in the order of `keys`. Up to `concurrency`
        objects are read at once, at most `max_in_flight` (and `max_bytes_in_flight` bytes)
        ahead of the consumer. A SourceError raised here stops the run."""
        return read_ahead(
            keys,
            self._open,
            lambda key: self._listed.get(key, (0, 0))[0],
            workers=self.concurrency,
            max_in_flight=self.max_in_flight,
            max_bytes_in_flight=self.max_bytes_in_flight,
            thread_name="datapool-gcs",
        )

    def content_hashes(self, keys: Sequence[str]) -> dict[str, str]:
        """blake2b-128 of each object's bytes, hex, as sources/local.py hashes a file; an object
        that cannot be read is left out. Asked only for objects whose ledger row holds a content
        hash and no etag (a folder's files moved into this bucket, --source-moved)."""
        return hash_inputs(self.open_inputs(keys))

    def read_bytes(self, key: str) -> bytes | None:
        """The whole object `key` (relative to the prefix; hidden keys such as `.lightly/...`
        included), or None when there is none. Any other failure stops the run (SourceError)."""
        try:
            with self.gcs.lease() as client:
                data: bytes = (
                    client.bucket(self.bucket)
                    .blob(self.prefix + key)
                    .download_as_bytes(
                        raw_download=True, timeout=self.gcs.timeout, retry=self.gcs.retry
                    )
                )
        except SourceError:
            raise
        except Exception as e:
            if status_code(e) == 404:
                return None
            raise self.gcs.stop(e, self.bucket, f"reading {key!r}") from None
        return data

    def exists(self, key: str) -> bool:
        """Whether the object `key` (relative to the prefix) is there: its metadata got (its
        name only), no byte of it read. A failure other than a missing object stops the run
        (SourceError)."""
        try:
            with self.gcs.lease() as client:
                found = (
                    client.bucket(self.bucket)
                    .blob(self.prefix + key)
                    .exists(timeout=self.gcs.timeout, retry=self.gcs.retry)
                )
        except SourceError:
            raise
        except Exception as e:
            raise self.gcs.stop(e, self.bucket, f"asking for {key!r}") from None
        return bool(found)

    def list_files(self, prefix: str) -> dict[str, str]:
        """Every object under the folder `prefix` (relative to the source's prefix; hidden keys
        included), by key, with its version as `list` gives it (its MD5 in hex): one listing
        request per 1,000 objects, where reading each would be a request each."""
        where = self.prefix + (prefix.rstrip("/") + "/" if prefix else "")
        n = len(self.prefix)
        return {
            str(blob.name)[n:]: object_version(blob)
            for blob in self._blobs(where, "items(name,generation,md5Hash),nextPageToken")
            if not str(blob.name).endswith("/")
        }

    def listed_version(self, key: str) -> tuple[int, str] | None:
        """The size and generation the listing saw of `key` (None where it was not listed), for
        a reader in another process to pin its read to (`pin`): the Ray engine's workers."""
        listed = self._listed.get(key)
        return None if listed is None else (listed[0], str(listed[1]))

    def pin(self, key: str, size: int, version: str) -> None:
        """Read `key` as another process listed it (`listed_version`): ifGenerationMatch
        `version`, its length checked against `size`; an empty `version` reads what is there."""
        if version:
            self._listed[key] = (size, int(version))
        else:
            self._listed.pop(key, None)

    def _open(self, key: str) -> MediaInput | SourceError:
        size, generation = self._listed.get(key, (-1, 0))
        return spooled_read(
            key,
            size,
            lambda out: self._download(key, generation or None, out),
            spool_memory=self.spool_memory,
        )

    def _download(self, key: str, generation: int | None, out: IO[bytes]) -> int:
        """Download the object (ifGenerationMatch `generation`, when listed) into `out`; its
        length. The library resumes a body cut short and checks a whole body's checksum; a body
        that fails that check `max_attempts` times in a row skips the object (tried again next
        run)."""
        try:
            from google.cloud.storage.exceptions import DataCorruption
        except ImportError:  # google-cloud-storage 2.x, with google-resumable-media apart
            from google.resumable_media.common import DataCorruption

        for attempt in range(1, self.max_attempts + 1):
            out.seek(0)
            out.truncate()
            try:
                with self.gcs.lease() as client:
                    client.bucket(self.bucket).blob(self.prefix + key).download_to_file(
                        out,
                        raw_download=True,  # the bytes as stored: the listed size and MD5
                        if_generation_match=generation,
                        timeout=self.gcs.timeout,
                        retry=self.gcs.retry,
                    )
                return out.tell()
            except DataCorruption:
                if attempt == self.max_attempts:
                    raise SkipObject(
                        f"{READ_FAILED}the body did not match the checksum the server sent with "
                        f"it, {attempt} times in a row{TRIED_AGAIN}"
                    ) from None
            except SourceError:
                raise
            except Exception as e:
                code = status_code(e)
                if code == 412:
                    raise SkipObject(
                        f"{READ_FAILED}the object changed after it was listed (its generation "
                        f"differs){TRIED_AGAIN}"
                    ) from None
                if code == 404:
                    raise SkipObject(
                        f"{READ_FAILED}the object was deleted after it was listed{TRIED_AGAIN}"
                    ) from None
                raise self.gcs.stop(e, self.bucket, f"reading {key!r}") from None
        raise AssertionError("unreachable")  # (the loop returns or raises)
