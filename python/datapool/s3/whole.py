"""A pool in S3 read whole into a local folder, and a folder's pool committed whole as a new pool
in S3: what `datapool merge` does with `s3://` pools (A, B and `--into`).

- `fetch`: the committed manifest is read (without the pool's lock: the manifest is one commit,
  and the blobs it names never change), the pool files come through this machine's copy of the
  pool (s3/cache.py, as `datapool status` and `ls` read them), and the runs' folders (reports,
  views, thumbnails) are read from their blobs, each piece checked against its SHA-256. The
  history snapshots stay in the bucket (a merged pool has none). A pool that a run holds now
  is refused, as a folder's lock refuses a merge while a run holds it.
- `check_new`: a prefix a new pool may be made in: no object under it, or only what a commit
  that never reached its manifest leaves (blobs, a lock object); never a manifest.
- The commit of the new pool is the S3 store's own (`S3Session.create`): blobs, then the
  manifest with `If-None-Match: *`, under the prefix's lock object; a killed process leaves no
  manifest, so no pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from datapool.errors import ConfigError, PoolLockedError, PoolStoreError
from datapool.pool.layout import (
    HISTORY_DIR,
    POOL_FILES,
    S3_BLOBS,
    S3_LOCK_NAME,
    S3_MANIFEST,
    is_local_state,
)
from datapool.s3.cache import PoolCache
from datapool.s3.lease import S3Lease

if TYPE_CHECKING:
    from datapool.s3.blobs import BucketPool

# Left under a prefix by a commit that never reached its manifest (a killed merge or first run),
# and by the probe of conditional writes (s3/store.py): a new pool may still be made there.
_PROBE = ".datapool-probe-"


@contextlib.contextmanager
def said_of(objects: BucketPool, new: bool = False) -> Iterator[None]:
    """A missing bucket said with its fix: check the name and endpoint (or, for a new pool's
    bucket, create it)."""
    try:
        yield
    except PoolStoreError as e:
        if getattr(e, "code", "") != "NoSuchBucket":
            raise
        fix = (
            f"create it first (aws s3 mb s3://{objects.bucket}) or check its name"
            if new
            else "check its name"
        )
        raise PoolStoreError(
            f"the S3 bucket {objects.bucket!r} does not exist (endpoint {objects.s3.endpoint}); "
            f"{fix} and the endpoint (--s3-endpoint-url, AWS_ENDPOINT_URL)"
        ) from None


def fetch(objects: BucketPool, lease_s: float, dest: Path) -> None:
    """The committed pool at `objects.url` (pool files and runs' folders, no history) written
    into the folder `dest` (see the module docstring)."""
    with said_of(objects):
        manifest, etag, _ = objects.read_manifest()
        holder = S3Lease(
            objects.client, objects.bucket, objects.prefix, objects.url, lease_s, objects._fail
        ).holder()
    if etag is None:
        if holder is not None:
            raise ConfigError(
                f"{objects.url} holds no pool yet: a run holds the prefix (pid "
                f"{holder.get('pid')} on {holder.get('host')}); its first commit makes the pool"
            )
        raise ConfigError(
            f"{objects.url} is not a datapool pool (no {S3_MANIFEST} under it); give the "
            "s3://bucket/prefix a run was given as --pool"
        )
    if holder is not None and holder.get("state") == "held":
        raise PoolLockedError(
            f"the pool {objects.url} is locked by a datapool run: pid {holder.get('pid')} on "
            f"{holder.get('host')} holds {objects.url}{S3_LOCK_NAME} until {holder.get('until')}; "
            "merge once it is done"
        )
    cache = PoolCache.of(objects.s3.endpoint, objects.url)
    cache.sync(objects, manifest.files)  # the local copy brought up to this commit
    for name, entry in sorted(manifest.files.items()):
        if is_local_state(name) or name.split("/", 1)[0] == HISTORY_DIR:
            continue
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in POOL_FILES:
            path.write_bytes(cache.read_file(objects, name, entry))
        else:
            with open(path, "wb") as f:
                objects.read_into(name, entry, 0, f)


def check_new(objects: BucketPool) -> None:
    """Refuse (ConfigError) a prefix that holds a pool or anything else than what an
    unfinished commit leaves (see the module docstring)."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = objects.prefix
    with said_of(objects, new=True):
        pages = objects.client.get_paginator("list_objects_v2").paginate(
            Bucket=objects.bucket, Prefix=prefix
        )
        try:
            keys = [o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as e:
            raise objects._fail(e, f"listing {objects.url}") from None
    if S3_MANIFEST in keys:
        raise ConfigError(
            f"{objects.url} holds a pool already ({S3_MANIFEST}); merge into a new or empty prefix"
        )
    other = sorted(k for k in keys if not k.startswith((S3_BLOBS, _PROBE)) and k != S3_LOCK_NAME)
    if other:
        shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        raise ConfigError(
            f"{objects.url} is not empty ({shown}); merge into a new or empty prefix, so that "
            "the pool's objects do not mix with these"
        )
