"""`datapool gc s3://bucket/prefix`: remove the blobs that no manifest references.

Blobs become unreferenced when a run loses a commit race (its blobs were written, its manifest
was not), when a run is interrupted between its blobs and its manifest, and when a commit
supersedes a file (the CSV before this run's rows were appended to it on the server). The
committed manifest references the current pool files, every run's report and view, and every
history snapshot (whose entries point at the blobs of the pool they kept), so those stay.

A blob is removed only when it is unreferenced and older than the threshold (default an hour:
`DEFAULT_GC_AGE_S`), measured on the server's clock (the Date of its reply), because a run in
flight writes its blobs a moment before its manifest and must find them when it commits. The
manifest is read again after the listing and before deleting, so a commit made meanwhile keeps
its blobs too. Multipart uploads under blobs/ that were started before the threshold and never
completed (an interrupted server-side append) are aborted. Nothing else under the prefix is
touched, and a prefix without a manifest is refused: it is not a pool.
"""

from __future__ import annotations

import email.utils
import logging
import time
from typing import TYPE_CHECKING, Any

from datapool.pool.layout import S3_BLOBS
from datapool.pool.store import Collected

if TYPE_CHECKING:
    from collections.abc import Iterator

    from datapool.s3.blobs import BucketPool

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


def collect(objects: BucketPool, older_than_s: float, dry_run: bool = False) -> Collected:
    manifest, date = objects.require_manifest()
    cutoff = _server_time(date) - older_than_s
    referenced = manifest.blobs()
    out = Collected(objects.url, referenced=len(referenced))
    candidates: dict[str, int] = {}
    for obj in _listing(objects, "list_objects_v2", "Contents"):
        if obj["Key"] in referenced:
            continue
        if obj["LastModified"].timestamp() > cutoff:
            out.kept_recent += 1
        else:
            candidates[obj["Key"]] = int(obj["Size"])
    again, _ = objects.require_manifest()  # a run may have committed since the first read
    for key in again.blobs() & candidates.keys():
        del candidates[key]
    out.deleted = sorted(candidates)
    out.freed_bytes = sum(candidates.values())
    stale_uploads = [
        u
        for u in _listing(objects, "list_multipart_uploads", "Uploads")
        if u["Initiated"].timestamp() <= cutoff
    ]
    out.aborted_uploads = len(stale_uploads)
    if out.deleted:
        _warn_if_versioned(objects, len(out.deleted), out.freed_bytes, dry_run)
    if not dry_run:
        _delete(objects, out.deleted)
        for u in stale_uploads:
            objects.request(
                "abort_multipart_upload",
                f"aborting an upload to {u['Key']}",
                Key=u["Key"],
                UploadId=u["UploadId"],
            )
    return out


def _warn_if_versioned(objects: BucketPool, n: int, size: int, dry_run: bool) -> None:
    """In a bucket with versioning, a delete adds a delete marker and keeps the bytes as a
    noncurrent version: say so, since "removed ... MB" would be read as space freed."""
    try:
        status = objects.client.get_bucket_versioning(Bucket=objects.bucket).get("Status")
    except Exception:  # not allowed to ask (a policy without s3:GetBucketVersioning): say nothing
        return
    if status in ("Enabled", "Suspended"):
        logging.getLogger("datapool").warning(
            "the bucket %r keeps object versions (versioning %s): the %d blobs %s stay stored "
            "as noncurrent versions (%.1f MB) until a lifecycle rule expires them",
            objects.bucket,
            status.lower(),
            n,
            "this would remove" if dry_run else "removed",
            size / 1e6,
        )


def _server_time(date: str | None) -> float:
    """The server's clock from an HTTP Date header; this host's where there is none."""
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()


def _listing(objects: BucketPool, method: str, field: str) -> Iterator[dict[str, Any]]:
    """Every item of a paginated listing under <prefix>blobs/."""
    what = f"listing {objects.url}{S3_BLOBS}"
    kwargs: dict[str, Any] = {"Prefix": objects.prefix + S3_BLOBS}
    while True:
        page = objects.request(method, what, **kwargs)
        yield from page.get(field, ())
        if method == "list_objects_v2":
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        else:
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page["NextKeyMarker"]
            kwargs["UploadIdMarker"] = page["NextUploadIdMarker"]


def _delete(objects: BucketPool, keys: list[str]) -> None:
    from datapool.errors import SourceError

    for i in range(0, len(keys), _DELETE_BATCH):
        batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
        resp = objects.request(
            "delete_objects",
            f"deleting unreferenced blobs of {objects.url}",
            Delete={"Objects": batch, "Quiet": True},
        )
        errors = resp.get("Errors", [])
        if errors:
            first = errors[0]
            raise SourceError(
                f"deleting {len(errors)} unreferenced blobs of {objects.url} failed, the first "
                f"{first.get('Key')}: {first.get('Code')} ({first.get('Message', '')})"
            )
