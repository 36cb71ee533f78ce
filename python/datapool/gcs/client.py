"""One place for Google Cloud Storage: URLs, the client, error classification and retries.

- Credentials are google-cloud-storage's: Application Default Credentials
  (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, a VM's or
  workload's service account); with STORAGE_EMULATOR_HOST set the library talks to that emulator
  without credentials. No credential is ever part of a message.
- Retries are the library's (DEFAULT_RETRY: 429, 408, 5xx and connection errors, with backoff),
  for up to `retry_timeout_s` seconds in all; the first retry of a request the endpoint did not
  answer says so once, as S3's client does.
- A denied request (401, 403), a missing bucket, or an endpoint still failing after the retries
  raises SourceError naming the bucket: the run stops and the pool is unchanged. An export to
  gs:// (datapool.export) raises the same words as an OutputStoreError.

google.cloud is imported here only, when a gs:// source or export destination is opened, never
by `import datapool`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from datapool.errors import SourceError
from datapool.specs import folder_prefix, strip_userinfo

INSTALL_HINT = (
    'gs:// needs google-cloud-storage, which is not installed: pip install "datapool[gcs]"'
)
CONNECT_TIMEOUT_S = 10
# Bucket names: 3-63 characters (222 with dots), lower case letters, digits, `-`, `_` and `.`,
# starting and ending with a letter or digit (cloud.google.com/storage/docs/buckets#naming).
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_DENIED_HINT = (
    "access denied: check the credentials Application Default Credentials finds "
    "(GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, the VM's service "
    "account) and the bucket's IAM permissions ({need})"
)
# The permissions a source needs (a denied request names those the request needed).
READ_PERMISSIONS = "storage.objects.list and storage.objects.get"


def parse_gs_url(url: str) -> tuple[str, str]:
    """`gs://bucket/some/prefix` -> ("bucket", "some/prefix/"); the prefix is a folder."""
    if not url.lower().startswith("gs://"):
        raise SourceError(f"not a GCS URL (gs://bucket/prefix): {strip_userinfo(url)}")
    bucket, _, prefix = url[5:].partition("/")
    if not _BUCKET_NAME.match(bucket):
        raise SourceError(
            f"{strip_userinfo(url)!r} does not start with a valid bucket name (lower case "
            "letters, digits, '-', '_' and '.'): write gs://bucket/prefix (credentials are never "
            "part of the URL; Application Default Credentials finds them)"
        )
    return bucket, folder_prefix(prefix, "a GCS prefix")


def import_storage() -> Any:
    """google.cloud.storage, or the SourceError that says how to install it."""
    try:
        with warnings.catch_warnings():
            # google.api_core warns on import under an old Python (a FutureWarning about its
            # own support): nothing a run can act on, and not one line.
            warnings.simplefilter("ignore", FutureWarning)
            from google.cloud import storage
    except ImportError:
        raise SourceError(INSTALL_HINT) from None
    return storage


class GcsClient:
    """google-cloud-storage clients with datapool's retry and timeouts and one-line errors. A
    client (and its HTTP session, which is not documented as safe to share between threads) is
    used by one thread at a time: `lease()` lends one, made when none is free and kept for the
    next request, so connections and tokens are reused across reads, threads and calls."""

    def __init__(
        self, retry_timeout_s: float = 120.0, read_timeout_s: float = 60.0, bucket: str = ""
    ) -> None:
        """`bucket`: the bucket it is for, which a credentials error names as the others do."""
        self._storage = import_storage()
        self.bucket = bucket
        from google.api_core import retry as api_retry
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.retry_timeout_s = retry_timeout_s
        self.timeout = (CONNECT_TIMEOUT_S, read_timeout_s)
        self.retry = api_retry.Retry(
            predicate=DEFAULT_RETRY._predicate,
            timeout=retry_timeout_s,
            on_error=self._say_retrying,
        )
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self._said_retrying = False
        with self.lease() as client:  # (credentials are looked up now: a failure stops here)
            self.endpoint = strip_userinfo(str(client._connection.API_BASE_URL))

    @contextlib.contextmanager
    def lease(self) -> Iterator[Any]:
        """A client that no other thread uses until it is given back."""
        with self._lock:
            client = self._free.pop() if self._free else None
        if client is None:
            client = self._make()
        try:
            yield client
        finally:
            with self._lock:
                self._free.append(client)

    def _make(self) -> Any:
        from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

        where = f"GCS bucket {self.bucket!r}" if self.bucket else "gs://"
        try:
            return self._storage.Client()
        except DefaultCredentialsError as e:
            named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if named:  # (the library's words name the file and what is wrong with it)
                words = " ".join(str(e).split())[:300]
                raise SourceError(
                    f"{where}: the credentials GOOGLE_APPLICATION_CREDENTIALS names cannot be "
                    f"used: {words}"
                ) from None
            raise SourceError(
                f"{where}: no Google Cloud credentials found (Application Default Credentials): "
                "run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
            ) from None
        except (GoogleAuthError, ValueError, OSError) as e:
            raise SourceError(
                f"cannot make a GCS client for {where}: {type(e).__name__}"
                if self.bucket
                else f"cannot make a GCS client: {type(e).__name__}"
            ) from None

    def _say_retrying(self, exc: BaseException) -> None:
        """Warn once, at the first retry of a request the endpoint did not answer, that the run
        is retrying: an endpoint that is down shows nothing otherwise until the retries end."""
        import requests

        if self._said_retrying or not isinstance(exc, (requests.ConnectionError, ConnectionError)):
            return
        self._said_retrying = True
        logging.getLogger("datapool").warning(
            "the GCS endpoint %s did not answer (%s); retrying for up to %g s",
            self.endpoint,
            type(exc).__name__,
            self.retry_timeout_s,
        )

    def stop(self, exc: BaseException, bucket: str, what: str) -> SourceError:
        """The SourceError that stops a run, in one line naming the bucket, with a hint for the
        common failures."""
        return SourceError(self.message(exc, bucket, what))

    def message(
        self, exc: BaseException, bucket: str, what: str, need: str = READ_PERMISSIONS
    ) -> str:
        """`stop`'s words; a denial names the IAM permissions `need` (an export's writes need
        others than a source's reads)."""
        from google.api_core import exceptions as api
        from google.auth.exceptions import GoogleAuthError

        if isinstance(exc, api.RetryError) and exc.cause is not None:
            cause: BaseException = exc.cause
            return self.message(cause, bucket, what, need)
        code = status_code(exc)
        if code == 404:
            return (
                f"{what}: the GCS bucket {bucket!r} does not exist (HTTP 404, endpoint "
                f"{self.endpoint})"
            )
        if code is not None:
            detail = _detail(exc)
            msg = f"{what} in GCS bucket {bucket!r} failed: HTTP {code}" + (
                f": {detail}" if detail else ""
            )
            hint = _DENIED_HINT.format(need=need)
            return msg + (f" ({hint})" if code in (401, 403) else "")
        if isinstance(exc, GoogleAuthError):
            return (
                f"{what} in GCS bucket {bucket!r}: the credentials could not be used "
                f"({type(exc).__name__}); "
                f"{_DENIED_HINT.format(need=need).removeprefix('access denied: ')}"
            )
        return (
            f"{what} in GCS bucket {bucket!r}: cannot reach the endpoint {self.endpoint} "
            f"({type(exc).__name__}; retried for up to {self.retry_timeout_s:g} s)"
        )


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of a google.api_core error (NotFound: 404), else None."""
    from google.api_core import exceptions as api

    if isinstance(exc, api.GoogleAPICallError) and isinstance(exc.code, int):
        return int(exc.code)
    return None


def _detail(exc: BaseException) -> str:
    """The server's words for an error (the first of its `errors`), on one line."""
    errors = getattr(exc, "errors", None) or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    text = str(first.get("message") or first.get("reason") or "").strip()
    text = "" if text == "unknown error" else text
    return " ".join(text.split())[:300]
