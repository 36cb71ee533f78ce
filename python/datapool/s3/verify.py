"""`datapool verify s3://bucket/prefix`: a pool in S3 read whole, without its lock and without
writing anything to the bucket (or to the pool's local copy, s3/cache.py).

The manifest is read and parsed as a run reads it; every blob of every file it names (history
snapshots included) is looked up (it exists, and is as long as the manifest says) and read, each
piece checked against its SHA-256 (s3/blobs.py `read_into`); the files are written to a temporary
folder as they are read, and that copy is then checked as a folder pool is
(pool/verify.py), without the folder's local state (lock, journal, sidecar: a bucket has none).
The lock object of a run (on servers without conditional writes) is reported, stale or held.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool.errors import ConfigError, PoolCorruptError, PoolStoreError
from datapool.pool.layout import S3_BLOBS, S3_LOCK_NAME, S3_MANIFEST, is_local_state
from datapool.pool.verify import ERROR, WARNING, Problem, Verified, verify_folder
from datapool.s3.client import NOT_FOUND
from datapool.s3.lease import S3Lease

if TYPE_CHECKING:
    from datapool.s3.blobs import BucketPool
    from datapool.s3.manifest import FileEntry, Manifest


def verify_bucket(objects: BucketPool, lease_s: float) -> Verified:
    """Verify the pool at `objects.url` (see the module docstring)."""
    problems: list[Problem] = []
    lease = S3Lease(
        objects.client, objects.bucket, objects.prefix, objects.url, lease_s, objects._fail
    )
    holder = lease.holder()
    if holder is not None:
        problems.append(_lease_problem(holder))
    try:
        manifest, etag, _ = objects.read_manifest()
    except PoolCorruptError as e:
        out = Verified(objects.url, problems=problems)
        out.problems.insert(0, Problem(ERROR, S3_MANIFEST, _said_of(e, objects, S3_MANIFEST)))
        return out
    if etag is None:
        if holder is None:
            raise ConfigError(f"{objects.url} is not a datapool pool (no {S3_MANIFEST} in it)")
        return Verified(objects.url, problems=problems)
    problems += _foreign_blobs(objects, manifest)
    with tempfile.TemporaryDirectory(prefix=".datapool-verify-") as tmp:
        unreadable = _fetch(objects, manifest, Path(tmp), problems)
        out = verify_folder(Path(tmp), objects.url, local=False, unreadable=unreadable, summed=True)
    out.problems[:0] = problems
    n_blobs = len(manifest.blobs())
    out.checked.insert(0, f"{S3_MANIFEST} ({len(manifest.files)} files, {n_blobs} blobs)")
    return out


def _foreign_blobs(objects: BucketPool, manifest: Manifest) -> list[Problem]:
    """An error where the manifest names blobs outside the pool's own blobs/ (a run never
    writes one there): they are read, and their pool's `gc` or deletion removes them."""
    own = objects.prefix + S3_BLOBS
    foreign = sorted(b for b in manifest.blobs() if not b.startswith(own))
    if not foreign:
        return []
    return [
        Problem(
            ERROR,
            S3_MANIFEST,
            f"names {len(foreign)} blob{'s' * (len(foreign) > 1)} outside this pool's {own} "
            f"(e.g. {foreign[0]}): a manifest copied from a pool at another prefix (`aws s3 "
            "sync` of a pool keeps its keys), so this pool reads that pool's objects, which "
            "that pool's `datapool gc` or deletion removes; use the pool at its own prefix, or "
            "put back this prefix's own manifest.json (S3 object versioning)",
        )
    ]


def _lease_problem(holder: dict[str, Any]) -> Problem:
    who = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
    if holder.get("state") == "stale":
        return Problem(
            WARNING,
            S3_LOCK_NAME,
            f"a stale lock object: {who} ({holder.get('reason')}; its lease ran until "
            f"{holder.get('until')}): that run did not finish; the next run takes the lock "
            "over (left as it is: verify changes nothing)",
        )
    return Problem(
        WARNING,
        S3_LOCK_NAME,
        f"a run holds the pool now ({who}, until {holder.get('until')}): verify read the "
        "committed manifest without the lock; verify again when it is done",
    )


def _fetch(
    objects: BucketPool, manifest: Manifest, dest: Path, problems: list[Problem]
) -> set[str]:
    """Each file's blobs looked up and read, checked against the manifest, and written under
    `dest`. The names of the files that could not be."""
    bad = set()
    for name, entry in sorted(manifest.files.items()):
        if is_local_state(name):
            continue
        missing = _missing_parts(objects, name, entry)
        if missing:
            problems.extend(missing)
            bad.add(name)
            continue
        path = dest / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                objects.read_into(name, entry, 0, f)
        except PoolCorruptError as e:
            blobs = ", ".join(p.blob for p in entry.parts)
            problems.append(Problem(ERROR, name, f"{_said_of(e, objects, name)} (blobs {blobs})"))
            path.unlink(missing_ok=True)
            bad.add(name)
    return bad


def _said_of(e: Exception, objects: BucketPool, name: str) -> str:
    """The message of an error about the pool's file `name`, without the `URL/name: ` it
    starts with (a Problem names the file)."""
    where = f"{objects.url}{name}: "
    return str(e)[len(where) :] if str(e).startswith(where) else str(e)


def _missing_parts(objects: BucketPool, name: str, entry: FileEntry) -> list[Problem]:
    """A problem for each blob of `entry` that is not in the bucket or not as long as the
    manifest says."""
    out = []
    for part in entry.parts:
        try:
            head = objects.request(
                "head_object", f"looking up {part.blob}", none_if=NOT_FOUND, Key=part.blob
            )
        except PoolStoreError as e:
            out.append(Problem(ERROR, name, f"its blob {part.blob} cannot be read: {e}"))
            continue
        if head is None:
            out.append(
                Problem(
                    ERROR,
                    name,
                    f"its blob {part.blob} is missing from the bucket ({S3_MANIFEST} names it; "
                    "deleted by hand, or by a lifecycle rule?)",
                )
            )
        elif int(head.get("ContentLength", -1)) != part.size:
            out.append(
                Problem(
                    ERROR,
                    name,
                    f"its blob {part.blob} is {head.get('ContentLength')} bytes, but "
                    f"{S3_MANIFEST} says {part.size}",
                )
            )
    return out
