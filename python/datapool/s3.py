"""S3 sources (`s3://bucket/prefix`) through boto3, and S3 writes for exports.

Listing uses the ListObjectsV2 paginator; each object gives its key (relative to the prefix), size,
ETag and LastModified, and the ledger uses the ETag to tell a rewritten object (see ledger.py).

Reads run on a thread pool with a bounded number of objects (and bytes) read ahead of the
decoder. Every GET carries `If-Match: <listed ETag>`, so an object rewritten after the listing is
never decoded under the old ETag. Images are read whole into memory; videos go to a spooled
temporary file (memory up to `spool_memory` bytes, then disk): the decoder opens a video twice
(frame count, then frames) and seeks in it, which a ranged-read file object turns into many small
GETs. `video_reads="ranged"` selects the ranged-read file object instead; bench/bench_s3.py
measures both (see docs/s3.md for the figures).

Errors:
- Retries are botocore's (`standard` or `adaptive` mode, `max_attempts` attempts in all):
  throttling (SlowDown, 503) and 5xx errors are retried there.
- A denied request (403, AccessDenied, bad credentials) or a missing bucket raises SourceError
  naming the bucket and the error code: the run stops and the pool is unchanged.
- An object that vanished (NoSuchKey), changed since the listing (PreconditionFailed) or cannot be
  read for a reason of its own (archived) is handed to the consumer as a SourceError: that file
  is skipped with the reason and the run goes on.
- Anything else that is still failing after the retries (5xx, connection errors) stops the run:
  a file skipped for a passing fault would be recorded as failed and not read again.

Credentials come only from boto3's standard chain. They are never part of a message: every
message built here from a server reply is scrubbed of the session's key id, secret and token.
boto3 is imported only when an S3 source or export is opened, never by `import datapool`.
"""

from __future__ import annotations

import calendar
import io
import os
import re
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from .config import strip_userinfo
from .errors import SourceError
from .sources import MediaInput, listing_frame, media_kind

if TYPE_CHECKING:
    import pandas as pd

    from .config import RunConfig

# Codes that mean "this run cannot read this bucket": stop the run.
_DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "UnauthorizedAccess",
    }
)
_NO_BUCKET = frozenset({"NoSuchBucket"})
# Codes that concern one object only: skip that file, go on.
_SKIP_OBJECT = frozenset(
    {
        "NoSuchKey",
        "404",
        "NotFound",
        "PreconditionFailed",
        "412",
        "InvalidObjectState",
    }
)

_BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_CHUNK = 1 << 20


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix/"); the prefix is a folder."""
    if not url.lower().startswith("s3://"):
        raise SourceError(f"not an S3 URL (s3://bucket/prefix): {strip_userinfo(url)}")
    rest = url[5:]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_NAME.match(bucket):
        raise SourceError(
            f"{strip_userinfo(url)!r} does not start with a valid bucket name: write "
            "s3://bucket/prefix (credentials are never part of the URL; boto3 finds them)"
        )
    if "\x00" in prefix:
        raise SourceError("an S3 prefix cannot contain a NUL character")
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3. Holds no credential: those come from boto3's chain when a client is made."""

    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL(_S3) if set, else AWS
    max_attempts: int = 10
    retry_mode: str = "standard"
    concurrency: int = 8

    @classmethod
    def from_config(cls, config: RunConfig | None) -> S3Settings:
        if config is None:
            return cls()
        return cls(
            config.s3_endpoint_url,
            config.s3_max_attempts,
            config.s3_retry_mode,
            config.s3_concurrency,
        )


class S3Client:
    """A boto3 S3 client with datapool's retry settings and credential-free error messages."""

    def __init__(self, settings: S3Settings) -> None:
        try:
            import boto3
            import botocore.config
        except ImportError:
            raise SourceError(
                "s3:// needs boto3, which is not installed: pip install 'datapool[s3]' "
                "(or pip install boto3)"
            ) from None
        self.settings = settings
        session = boto3.session.Session()
        retries: Any = {"mode": settings.retry_mode, "max_attempts": settings.max_attempts}
        config = botocore.config.Config(
            retries=retries,
            max_pool_connections=max(10, settings.concurrency + 2),
        )
        try:
            self.client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
        except Exception as e:  # botocore raises ValueError/BotoCoreError for a bad endpoint
            raise SourceError(f"cannot make an S3 client: {type(e).__name__}") from None
        self.endpoint = strip_userinfo(str(self.client.meta.endpoint_url))
        self._secrets = _session_secrets(session, settings.endpoint_url)

    def scrub(self, text: str) -> str:
        """`text` with every credential of this session replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def error(self, exc: BaseException, bucket: str, what: str) -> tuple[str, str]:
        """(code, message) for a botocore exception, with no credential in the message."""
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            detail = str(err.get("Message") or "").strip()
            msg = f"{what} in S3 bucket {bucket!r} failed: {code} (HTTP {status})"
            if detail and detail != code:
                msg += f": {detail}"
            return code, self.scrub(msg)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return "NoCredentials", (
                f"{what} in S3 bucket {bucket!r}: no usable AWS credentials found; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role"
            )
        if isinstance(exc, EndpointConnectionError):
            return "EndpointConnectionError", (
                f"{what} in S3 bucket {bucket!r}: cannot connect to the endpoint {self.endpoint}"
            )
        return type(exc).__name__, self.scrub(
            f"{what} in S3 bucket {bucket!r} failed: {type(exc).__name__}: {exc}"
        )

    def stop(self, exc: BaseException, bucket: str, what: str) -> SourceError:
        """The SourceError that stops a run, with a hint for the common codes."""
        code, msg = self.error(exc, bucket, what)
        if code in _NO_BUCKET:
            msg += f" (endpoint {self.endpoint})"
        elif code in _DENIED:
            msg += (
                " (access denied: check the credentials boto3 finds, AWS_PROFILE, and the "
                "bucket policy)"
            )
        return SourceError(msg)


def _session_secrets(session: Any, endpoint_url: str | None) -> list[str]:
    secrets: list[str] = []
    try:
        creds = session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
    except Exception:  # a broken credential source: nothing to scrub, the request will fail
        frozen = None
    if frozen is not None:
        # Real key ids are 16+ characters; shorter "secrets" (test dummies) would mangle messages.
        secrets += [
            s for s in (frozen.secret_key, frozen.token, frozen.access_key) if s and len(s) >= 8
        ]
    for url in (
        endpoint_url,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_ENDPOINT_URL_S3"),
    ):
        if url and "@" in url:
            userinfo = url.split("://", 1)[-1].split("@", 1)[0]
            secrets += [s for s in (userinfo, *userinfo.split(":")) if len(s) >= 8]
    return sorted(set(secrets), key=len, reverse=True)


def _mtime_ns(dt: Any) -> int:
    """LastModified (an aware datetime) as integer nanoseconds since the epoch, exactly."""
    return (calendar.timegm(dt.utctimetuple()) * 1_000_000 + dt.microsecond) * 1000


class S3Source:
    """The objects under `s3://bucket/prefix`, listed like a local folder: keys are relative to the
    prefix, objects whose key has a part starting with '.' are left out (as hidden files are), and
    "folder" marker keys ending in '/' are not media."""

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
        self._listed: dict[str, tuple[int, str]] = {}  # key -> (size, etag)

    @classmethod
    def from_config(cls, url: str, config: RunConfig | None) -> S3Source:
        return cls(url, S3Settings.from_config(config))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def list(self) -> pd.DataFrame:
        """One row per media object: key, size, mtime_ns (LastModified), etag, kind. Sorted."""
        from botocore.exceptions import BotoCoreError, ClientError

        rows: list[tuple[str, int, int, str, str]] = []
        ignored = 0
        n = len(self.prefix)
        try:
            pages = self.s3.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=self.prefix,
                PaginationConfig={"PageSize": self.page_size},
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = str(obj["Key"])[n:]
                    if not key or key.endswith("/"):
                        continue
                    if any(part.startswith(".") for part in key.split("/")):
                        continue
                    kind = media_kind(key)
                    if kind is None:
                        ignored += 1
                        continue
                    etag = str(obj.get("ETag", "")).strip('"')
                    rows.append((key, int(obj["Size"]), _mtime_ns(obj["LastModified"]), etag, kind))
        except (ClientError, BotoCoreError) as e:
            raise self.s3.stop(
                e, self.bucket, f"listing s3://{self.bucket}/{self.prefix}"
            ) from None
        self.n_ignored = ignored
        rows.sort()
        self._listed = {k: (s, e) for k, s, _, e, _ in rows}
        return listing_frame(rows)

    def open_inputs(self, keys: Sequence[str]) -> Iterator[tuple[str, MediaInput | SourceError]]:
        """Each key with a binary file object of its contents (the consumer closes it) or the
        SourceError why that object is skipped, in the order of `keys`.

        Up to `concurrency` objects are read at once and at most `max_in_flight` objects (and
        `max_bytes_in_flight` bytes, except that one object is always allowed) are held ahead of
        the consumer. A SourceError raised here stops the run.
        """
        pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="datapool-s3")
        pending: deque[tuple[str, int, Future[MediaInput | SourceError]]] = deque()
        ahead = 0
        todo = iter(keys)
        nxt = next(todo, None)
        try:
            while pending or nxt is not None:
                while nxt is not None and (
                    not pending
                    or (
                        len(pending) < self.max_in_flight
                        and ahead + self._size(nxt) <= self.max_bytes_in_flight
                    )
                ):
                    size = self._size(nxt)
                    pending.append((nxt, size, pool.submit(self._open, nxt)))
                    ahead += size
                    nxt = next(todo, None)
                key, size, fut = pending.popleft()
                ahead -= size
                yield key, fut.result()
        finally:
            for _, _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)
            for _, _, fut in pending:  # read ahead but never handed out: close them here
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    res = fut.result()
                    if hasattr(res, "close"):
                        res.close()

    def read_bytes(self, key: str) -> bytes:
        """The whole object at `key` (relative to the prefix), as listed."""
        res = self._open(key, whole=True)
        if isinstance(res, SourceError):
            raise res
        assert isinstance(res, io.BytesIO)
        return res.getvalue()

    def _size(self, key: str) -> int:
        return self._listed.get(key, (0, ""))[0]

    def _open(self, key: str, whole: bool = False) -> MediaInput | SourceError:
        size, etag = self._listed.get(key, (-1, ""))
        if not whole and self.video_reads == "ranged" and media_kind(key) == "video" and size >= 0:
            return io.BufferedReader(
                _RangedReader(self, key, size, etag), buffer_size=max(_CHUNK, 1 << 16)
            )
        attempts = max(1, self.settings.max_attempts)
        for attempt in range(attempts):
            out: IO[bytes] = (
                io.BytesIO()
                if whole or media_kind(key) != "video"
                else tempfile.SpooledTemporaryFile(max_size=self.spool_memory)
            )
            try:
                got = self._get_into(key, etag, out)
            except _SkipObject as e:
                out.close()
                return SourceError(str(e))
            except _TruncatedBody:
                out.close()
                if attempt + 1 == attempts:
                    raise SourceError(
                        f"reading s3://{self.bucket}/{self.prefix}{key}: the body was cut short "
                        f"{attempts} times"
                    ) from None
                continue
            except BaseException:
                out.close()
                raise
            if size >= 0 and got != size:
                out.close()
                return SourceError(f"object is {got} bytes, but was listed with {size}")
            out.seek(0)
            return out
        raise AssertionError("unreachable")

    def _get_into(self, key: str, etag: str, out: IO[bytes], rng: str | None = None) -> int:
        """GET the object (If-Match its listed ETag) into `out`; the number of bytes written."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + key}
        if etag:
            kwargs["IfMatch"] = etag
        if rng:
            kwargs["Range"] = rng
        try:
            resp = self.s3.client.get_object(**kwargs)
        except ClientError as e:
            code, msg = self.s3.error(e, self.bucket, f"reading {key!r}")
            if code in _SKIP_OBJECT:
                if code in ("PreconditionFailed", "412"):
                    msg = (
                        "the object changed after it was listed (its ETag differs); "
                        "the next run reads it again"
                    )
                raise _SkipObject(msg) from None
            raise self.s3.stop(e, self.bucket, f"reading {key!r}") from None
        except BotoCoreError as e:
            raise self.s3.stop(e, self.bucket, f"reading {key!r}") from None
        body = resp["Body"]
        got = 0
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
        finally:
            body.close()
        expected = resp.get("ContentLength")
        if expected is not None and got != int(expected):
            raise _TruncatedBody
        return got


class _SkipObject(Exception):
    pass


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
            except _SkipObject as e:
                raise OSError(str(e)) from None
            except _TruncatedBody:
                if attempt + 1 == self._src.settings.max_attempts:
                    raise OSError("ranged read cut short") from None
                continue
            break
        view[:got] = out.getbuffer()[:got]
        self._pos += got
        return got


def put_object(client: S3Client, bucket: str, key: str, data: bytes) -> None:
    """Write one object (used by exports); a failure raises SourceError naming bucket and code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.client.put_object(Bucket=bucket, Key=key, Body=data)
    except (ClientError, BotoCoreError) as e:
        raise client.stop(e, bucket, f"writing {key!r}") from None
