"""The objects of one pool in a bucket: its manifest, and blobs written whole, appended to on the
server, and read back checked against their pieces (the format is in s3/manifest.py).

Appending to a pool file (the CSV and the ledger; `append`) costs the bytes appended, not the
file's size:
- a file whose first part is at least 5 MiB (S3's smallest part but the last of a multipart
  upload) becomes one new object: a multipart upload whose first parts are copied on the server
  from that part (UploadPartCopy: no bytes travel) and whose last part is uploaded, holding the
  bytes of the file's other parts (if any) and the new bytes;
- a smaller file gets one more part, a blob of just the new bytes, until it reaches 5 MiB or
  MAX_PARTS parts: then it is written whole, once, as one object.
So a file past 5 MiB is always one object (its blob is the whole CSV, which Lightly's readers
take as it is), and a smaller one has at most MAX_PARTS. The old object stays in the bucket,
unreferenced once the manifest moves on, until `datapool gc` removes it (s3/gc.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

from datapool.errors import ConfigError, PoolCorruptError, PoolStoreError
from datapool.pool.layout import S3_BLOBS, S3_MANIFEST
from datapool.s3.client import NOT_FOUND, S3Client, S3Settings, parse_s3_url
from datapool.s3.manifest import FileEntry, Manifest, Part, Piece, blob_name, piece_of

if TYPE_CHECKING:
    from datapool.errors import SourceError

MIN_PART = 5 * 1024 * 1024  # S3: every part of a multipart upload but the last is at least this
MAX_COPY_PART = 4 * 1024**3  # S3 copies at most 5 GiB per part; stay well under
MAX_PARTS = 16  # parts of a file under MIN_PART before it is written whole again
_CHUNK = 1 << 20
T = TypeVar("T")


class BucketPool:
    """The objects of the pool at `s3://bucket/prefix/`: manifest.json and blobs/."""

    def __init__(self, url: str, settings: S3Settings | None = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.s3 = S3Client(settings or S3Settings())
        self.client = self.s3.client

    def _fail(self, e: BaseException, what: str) -> SourceError:
        return self.s3.stop(e, self.bucket, what, PoolStoreError)

    def request(self, method: str, what: str, **kwargs: Any) -> Any:
        return self.s3.request(method, self.bucket, what, error=PoolStoreError, **kwargs)

    @property
    def manifest_key(self) -> str:
        return self.prefix + S3_MANIFEST

    def read_manifest(self) -> tuple[Manifest, str | None, str | None]:
        """(manifest, its ETag, the server's Date); an empty manifest and None where there is no
        pool yet."""
        what = f"reading {self.url}{S3_MANIFEST}"
        resp = self.request("get_object", what, none_if=NOT_FOUND, Key=self.manifest_key)
        if resp is None:
            return Manifest(), None, None
        data = self._body(resp, lambda body: body.read(), what)
        date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        return Manifest.parse(data, f"{self.url}{S3_MANIFEST}"), str(resp["ETag"]), date

    def manifest_etag(self) -> str | None:
        """The manifest's ETag now; None where there is no manifest."""
        what = f"reading {self.url}{S3_MANIFEST}"
        resp = self.request("head_object", what, none_if=NOT_FOUND, Key=self.manifest_key)
        return None if resp is None else str(resp["ETag"])

    def require_manifest(self) -> tuple[Manifest, str | None]:
        """The committed manifest and the server's Date, or ConfigError: not a pool."""
        manifest, etag, date = self.read_manifest()
        if etag is None:
            raise ConfigError(f"{self.url} is not a datapool pool (no {S3_MANIFEST} in it)")
        return manifest, date

    # --- writing blobs ---------------------------------------------------------------------------

    def _key(self, pieces: tuple[Piece, ...]) -> str:
        return f"{self.prefix}{S3_BLOBS}{blob_name(pieces)}"

    def put(self, data: bytes, pieces: tuple[Piece, ...] | None = None) -> Part:
        """Write `data` as a blob of one part. `pieces` (default: one) describe its ranges."""
        pieces = pieces or (piece_of(data),)
        key = self._key(pieces)
        self.request("put_object", f"writing {key}", Key=key, Body=data)
        return Part(key, len(data), pieces)

    def put_file(self, data: bytes, old: FileEntry | None = None) -> FileEntry:
        """A pool file written whole; `old` (its committed entry) is kept when nothing changed."""
        if old is not None and old.pieces == (piece_of(data),):
            return old
        return FileEntry((self.put(data),))

    def append(self, entry: FileEntry, tail: bytes, new: bytes) -> FileEntry:
        """`entry` with `new` appended, uploading about len(new) bytes (see the module docstring).

        `tail` is the file's bytes after its first part when that part is at least MIN_PART, and
        all of its bytes otherwise: the caller holds them (s3/cache.py), and they never reach
        MIN_PART unless the file is one part (then `tail` is empty)."""
        if not new:
            return entry
        first = entry.parts[0]
        pieces = (*entry.pieces, piece_of(new))
        if first.size >= MIN_PART:
            return FileEntry((self._copy_then_upload(first, tail + new, pieces),))
        if entry.size + len(new) >= MIN_PART or len(entry.parts) >= MAX_PARTS:
            return FileEntry((self.put(tail + new, pieces),))
        return FileEntry((*entry.parts, self.put(new)))

    def _copy_then_upload(self, first: Part, last: bytes, pieces: tuple[Piece, ...]) -> Part:
        """One object: `first`'s bytes copied on the server, then `last` uploaded."""
        key = self._key(pieces)
        what = f"appending to {key}"
        upload = self.request("create_multipart_upload", what, Key=key)["UploadId"]
        try:
            done = []
            n = -(-first.size // MAX_COPY_PART)  # ranges of equal size, each >= MIN_PART
            for i in range(n):
                lo, hi = first.size * i // n, first.size * (i + 1) // n - 1
                resp = self.request(
                    "upload_part_copy",
                    what,
                    Key=key,
                    UploadId=upload,
                    PartNumber=i + 1,
                    CopySource={"Bucket": self.bucket, "Key": first.blob},
                    CopySourceRange=f"bytes={lo}-{hi}",
                )
                done.append({"PartNumber": i + 1, "ETag": resp["CopyPartResult"]["ETag"]})
            resp = self.request(
                "upload_part", what, Key=key, UploadId=upload, PartNumber=n + 1, Body=last
            )
            done.append({"PartNumber": n + 1, "ETag": resp["ETag"]})
            self.request(
                "complete_multipart_upload",
                what,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": done},
            )
        except BaseException:
            # Best effort: an upload left behind is aborted by `datapool gc`.
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except Exception:  # the first error is the one to report
                pass
            raise
        return Part(key, first.size + len(last), pieces)

    # --- reading blobs ---------------------------------------------------------------------------

    def read_into(self, name: str, entry: FileEntry, start: int, out: IO[bytes]) -> None:
        """Write the bytes of pool file `name` from offset `start` (where one of its pieces
        begins) to its end into `out`, each piece checked against its SHA-256."""
        check = _PieceCheck(f"{self.url}{name}", entry.pieces, start)
        offset = 0
        for part in entry.parts:
            lo = max(start - offset, 0)
            offset += part.size
            if lo >= part.size:
                continue
            what = f"reading {name} of the pool {self.url}"
            resp = self.request(
                "get_object", what, Key=part.blob, Range=f"bytes={lo}-{part.size - 1}"
            )
            self._body(resp, lambda body: _copy_checked(body, check, out), what)
        check.finish()

    def _body(self, resp: Any, read: Callable[[Any], T], what: str) -> T:
        """`read(body)` of a GET's reply; a body cut short or failing the checksum the server
        sent with it stops the run as the request's own failure would (PoolStoreError)."""
        from botocore.exceptions import BotoCoreError

        body = resp["Body"]
        try:
            return read(body)
        except BotoCoreError as e:
            raise self._fail(e, what) from None
        finally:
            body.close()


def _copy_checked(body: Any, check: _PieceCheck, out: IO[bytes]) -> None:
    for chunk in body.iter_chunks(_CHUNK):
        check.feed(chunk)
        out.write(chunk)


class _PieceCheck:
    """Checks a stream of a file's bytes, from the start of one of its pieces, piece by piece."""

    def __init__(self, where: str, pieces: tuple[Piece, ...], start: int) -> None:
        self.where = where
        offset, i = 0, 0
        while i < len(pieces) and offset < start:
            offset += pieces[i][1]
            i += 1
        if offset != start:
            raise ValueError(f"{start} is not where a piece of {where} begins")
        self.todo = list(pieces[i:])
        self.hasher = hashlib.sha256()
        self.left = self.todo[0][1] if self.todo else 0

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            while self.todo and self.left == 0:
                self._close_piece()
            if not self.todo:
                raise PoolCorruptError(f"{self.where}: longer than its manifest says")
            take = view[: self.left]
            self.hasher.update(take)
            self.left -= len(take)
            view = view[len(take) :]

    def _close_piece(self) -> None:
        if self.hasher.hexdigest() != self.todo[0][0]:
            raise PoolCorruptError(
                f"{self.where}: its bytes do not match the manifest (SHA-256 of a piece differs)"
            )
        self.todo.pop(0)
        self.hasher = hashlib.sha256()
        self.left = self.todo[0][1] if self.todo else 0

    def finish(self) -> None:
        while self.todo and self.left == 0:
            self._close_piece()
        if self.todo:
            raise PoolCorruptError(f"{self.where}: shorter than its manifest says")
