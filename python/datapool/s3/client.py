"""One place for S3: URLs, settings, the boto3 client, error classification and retries.

The source (datapool.s3.source), the pool store (datapool.s3.store), its lease and exports all
make their requests through S3Client and classify failures here.

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

import logging
import os
import re
from typing import TYPE_CHECKING, Any

from datapool.config import S3Settings
from datapool.errors import OutputStoreError, SourceError
from datapool.specs import folder_prefix, strip_userinfo

if TYPE_CHECKING:
    from collections.abc import Collection

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

# Codes by meaning, for the callers that act on one (`error_code(e) in NOT_FOUND`).
NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
DENIED = _DENIED
CONFLICT = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
NOT_IMPLEMENTED = frozenset({"NotImplemented", "501"})

# botocore's defaults are 60 s for both: an address that drops packets took 10 minutes (10
# attempts) to fail. A connection is made in well under a second, and S3 answers a request
# within seconds; 60 s without a byte of the reply stays allowed by default (a busy MinIO, a big
# listing): S3Settings.read_timeout_s, `--s3-read-timeout`.
CONNECT_TIMEOUT_S = 10

_BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_CHUNK = 1 << 20


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError ("NoSuchKey", "PreconditionFailed", "404" for
    a bare HEAD, ...); "" for any other exception. The one place that reads botocore's reply."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code") or "")


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
    return bucket, folder_prefix(prefix, "an S3 prefix")


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
        from botocore.exceptions import ConfigParseError, ProfileNotFound

        self.settings = settings
        try:
            session = boto3.session.Session()
        except (ProfileNotFound, ConfigParseError) as e:  # AWS_PROFILE or ~/.aws/config
            raise SourceError(
                f"cannot make an S3 client: {e} (check AWS_PROFILE, AWS_CONFIG_FILE and "
                "~/.aws/config)"
            ) from None
        retries: Any = {"mode": settings.retry_mode, "max_attempts": settings.max_attempts}
        config = botocore.config.Config(
            retries=retries,
            max_pool_connections=max(10, settings.concurrency + 2),
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=settings.read_timeout_s,
        )
        try:
            self.client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
        except Exception as e:  # botocore raises ValueError/BotoCoreError for a bad endpoint
            raise SourceError(f"cannot make an S3 client: {type(e).__name__}") from None
        self.endpoint = strip_userinfo(str(self.client.meta.endpoint_url))
        self._secrets = _session_secrets(session, settings.endpoint_url)
        self._said_retrying = False
        self.client.meta.events.register_first("needs-retry.s3", self._say_retrying)

    def _say_retrying(
        self, attempts: int = 0, caught_exception: BaseException | None = None, **_: Any
    ) -> None:
        """Warn once, at the first retry of a request the endpoint did not answer (refused,
        timed out, dropped), that the run is retrying: an unreachable or hanging endpoint
        otherwise shows nothing until the last attempt fails, minutes later. Returns None, so
        botocore's own retry handler, next on the event, decides."""
        from botocore.exceptions import ConnectionError, HTTPClientError

        if self._said_retrying or not isinstance(
            caught_exception, (ConnectionError, HTTPClientError)
        ):
            return
        if attempts >= self.settings.max_attempts:
            return
        self._said_retrying = True
        logging.getLogger("datapool").warning(
            "the S3 endpoint %s did not answer (%s); retrying, %d attempts in all "
            "(--s3-max-attempts), each waiting up to %d s to connect and %g s for a reply "
            "(--s3-read-timeout)",
            self.endpoint,
            type(caught_exception).__name__,
            self.settings.max_attempts,
            CONNECT_TIMEOUT_S,
            self.settings.read_timeout_s,
        )

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
            code = error_code(exc) or "Unknown"
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            detail = str(exc.response.get("Error", {}).get("Message") or "").strip()
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

    def stop(
        self, exc: BaseException, bucket: str, what: str, error: type[SourceError] = SourceError
    ) -> SourceError:
        """The SourceError (or `error`, a subclass) that stops a run, with a hint for the common
        codes."""
        code, msg = self.error(exc, bucket, what)
        if code in _NO_BUCKET:
            msg += f" (endpoint {self.endpoint})"
        elif code in _DENIED:
            msg += (
                " (access denied: check the credentials boto3 finds, AWS_PROFILE, and the "
                "bucket policy)"
            )
        err = error(msg)
        err.code = code
        return err

    def request(
        self,
        method: str,
        bucket: str,
        what: str,
        none_if: Collection[str] = (),
        error: type[SourceError] = SourceError,
        **kwargs: Any,
    ) -> Any:
        """`client.<method>(Bucket=bucket, **kwargs)`. A failure whose code is in `none_if` returns
        None (`none_if=NOT_FOUND`: a missing object); any other raises the SourceError (or
        `error`) that stops the run, saying what was being done."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=bucket, **kwargs)
        except ClientError as e:
            if error_code(e) in none_if:
                return None
            raise self.stop(e, bucket, what, error) from None
        except BotoCoreError as e:
            raise self.stop(e, bucket, what, error) from None


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


def put_object(client: S3Client, bucket: str, key: str, data: bytes) -> None:
    """Write one object (used by exports); a failure raises OutputStoreError (exit 8, as any
    output that cannot be written) naming bucket and code."""
    client.request(
        "put_object", bucket, f"writing {key!r}", error=OutputStoreError, Key=key, Body=data
    )
