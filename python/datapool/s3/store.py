"""A pool kept in an S3 bucket (`--pool s3://bucket/prefix`), committed with a conditional write.

Layout under the prefix:
    manifest.json        {"format_version", "generation", "files": {pool file name: {"blob",
                          "sha256", "size"}}}: the commit point
    blobs/<sha256>       the pool files' contents, immutable, named by their SHA-256

A run reads manifest.json (and its ETag), downloads the pool files the run needs (the CSV, ledger,
runs and model) into a temporary folder, runs there as for a local pool, uploads every file that
is new or changed as a blob, and then writes manifest.json with `If-Match: <the ETag it read>`
(`If-None-Match: *` for a new pool). Of two concurrent runs that read the same manifest, exactly
one commits; the other gets S3PoolConflictError (exit 3) and leaves the pool as the first left it
(its blobs are orphans that nothing references). Blobs are written before the manifest, so a
manifest never references a missing blob.

Before a run, the server is probed once: an object written with `If-None-Match: *` must be
refused the second time. A server that accepts it ignores conditional writes, so the manifest's
conditional write could let two runs both "commit". The run then says so (a warning on the
`datapool` logger, which the CLI prints, and in RunResult.warnings and the report) and falls back
to a lock object with a lease, `<prefix>.datapool-lock.json` (s3lease.py): taken before the
manifest is read, renewed while the run works, checked before the manifest is written (with a
plain PUT, after checking that its ETag is still the one read), and deleted at the end. That is
best-effort mutual exclusion (the last writer wins between a write and its read-back), which is
what such servers allow; see s3lease.py for the windows that remain.

The export (`--export`) runs after the manifest is written, as a local pool's runs after its
commit: a run that loses the race exports nothing.
`datapool status s3://bucket/prefix` reads the committed manifest (`pool_summary`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool._signals import interrupt_says
from datapool.errors import PoolCorruptError, PoolLockedError, SourceError
from datapool.pool.layout import S3_LOCK_NAME as LOCK_NAME
from datapool.s3.client import S3Client, S3Settings, parse_s3_url
from datapool.s3.lease import S3Lease

if TYPE_CHECKING:
    from datapool.config import RunConfig
    from datapool.runner import RunResult

MANIFEST = "manifest.json"
BLOBS = "blobs/"
FORMAT_VERSION = 1
# What a run reads from a pool (Pool.load); reports and views of earlier runs stay in the bucket.
_NEEDED = ("datapool_latest.csv", "ledger.csv", "runs.json", "model.json")
_SKIP = (".datapool.lock", ".journal.json")
_CONFLICT = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
log = logging.getLogger("datapool")


class S3PoolConflictError(PoolLockedError):
    """Another run committed to the S3 pool between this run's read and its commit."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class S3Pool:
    def __init__(
        self, url: str, config: RunConfig | None, settings: S3Settings | None = None
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.s3 = S3Client(settings or S3Settings.from_config(config))
        self.client = self.s3.client

    def _fail(self, e: BaseException, what: str) -> SourceError:
        return self.s3.stop(e, self.bucket, what)

    def probe_conditional_writes(self) -> bool:
        """Whether the server refuses a second `If-None-Match: *` write of one key."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.prefix}.datapool-probe-{uuid.uuid4().hex}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"1", IfNoneMatch="*")
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=b"2", IfNoneMatch="*")
                supported = False
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code"))
                if code not in _CONFLICT:
                    raise
                supported = True
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code"))
            if code in ("NotImplemented", "501"):
                supported = False
            else:
                raise self._fail(e, f"probing conditional writes under {self.url}") from None
        except BotoCoreError as e:
            raise self._fail(e, f"probing conditional writes under {self.url}") from None
        return supported

    def manifest_etag(self) -> str | None:
        """The manifest's ETag now; None where there is no manifest."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return str(
                self.client.head_object(Bucket=self.bucket, Key=self.prefix + MANIFEST)["ETag"]
            )
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(e, f"reading {self.url}{MANIFEST}") from None
        except BotoCoreError as e:
            raise self._fail(e, f"reading {self.url}{MANIFEST}") from None

    def read_manifest(self) -> tuple[dict[str, Any], str | None]:
        """(manifest, its ETag); an empty manifest and None where the pool is new."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.prefix + MANIFEST)
            data = resp["Body"].read()
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                return {"format_version": FORMAT_VERSION, "generation": 0, "files": {}}, None
            raise self._fail(e, f"reading {self.url}{MANIFEST}") from None
        except BotoCoreError as e:
            raise self._fail(e, f"reading {self.url}{MANIFEST}") from None
        try:
            manifest = json.loads(data)
            files = manifest["files"]
            int(manifest["generation"])
            if not isinstance(files, dict):
                raise TypeError("files is not an object")
        except (ValueError, KeyError, TypeError) as e:
            raise PoolCorruptError(f"{self.url}{MANIFEST}: not a datapool manifest: {e}") from None
        return manifest, str(resp["ETag"])

    def download(self, manifest: dict[str, Any], dest: Path) -> dict[str, str]:
        """Write the pool files a run needs into `dest`; their SHA-256 by name."""
        from botocore.exceptions import BotoCoreError, ClientError

        hashes: dict[str, str] = {}
        for name in _NEEDED:
            entry = manifest["files"].get(name)
            if entry is None:
                continue
            try:
                data = self.client.get_object(Bucket=self.bucket, Key=entry["blob"])["Body"].read()
            except (ClientError, BotoCoreError) as e:
                raise self._fail(e, f"reading {name} of the pool {self.url}") from None
            if _sha256(data) != entry["sha256"]:
                raise PoolCorruptError(f"{self.url}{name}: its blob does not match the manifest")
            (dest / name).write_bytes(data)
            hashes[name] = entry["sha256"]
        return hashes

    def upload(
        self, local: Path, manifest: dict[str, Any], known: dict[str, str]
    ) -> dict[str, Any]:
        """Upload the new and changed files of `local` as blobs; the files map for the manifest."""
        from botocore.exceptions import BotoCoreError, ClientError

        files = dict(manifest["files"])
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            name = path.relative_to(local).as_posix()
            if name in _SKIP or name.startswith(".datapool-"):
                continue
            data = path.read_bytes()
            digest = _sha256(data)
            if known.get(name) == digest or files.get(name, {}).get("sha256") == digest:
                continue
            blob = f"{self.prefix}{BLOBS}{digest}"
            try:
                self.client.put_object(Bucket=self.bucket, Key=blob, Body=data)
            except (ClientError, BotoCoreError) as e:
                raise self._fail(e, f"writing {blob}") from None
            files[name] = {"blob": blob, "sha256": digest, "size": len(data)}
        return files

    def commit(
        self, manifest: dict[str, Any], etag: str | None, lease: S3Lease | None = None
    ) -> None:
        if lease is None:
            _commit_manifest(self, manifest, etag)
        else:
            _commit_under_lease(self, manifest, etag, lease)


def _commit_manifest(pool: S3Pool, manifest: dict[str, Any], etag: str | None) -> None:
    """Write manifest.json if and only if it is still the one this run read."""
    from botocore.exceptions import BotoCoreError, ClientError

    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        pool.client.put_object(Bucket=pool.bucket, Key=pool.prefix + MANIFEST, Body=body, **cond)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code"))
        if code in _CONFLICT or (etag and code in ("NoSuchKey", "404")):
            raise S3PoolConflictError(
                f"another run committed to the pool {pool.url} after this run read it "
                f"(generation {int(manifest['generation']) - 1}); this run's result was not "
                "committed: run again"
            ) from None
        raise pool._fail(e, f"committing {pool.url}{MANIFEST}") from None
    except BotoCoreError as e:
        raise pool._fail(e, f"committing {pool.url}{MANIFEST}") from None


def _commit_under_lease(
    pool: S3Pool, manifest: dict[str, Any], etag: str | None, lease: S3Lease
) -> None:
    """Write manifest.json with a plain PUT, only if this run still holds the lease and the
    manifest is still the one it read (the server ignores If-Match, so datapool checks)."""
    from botocore.exceptions import BotoCoreError, ClientError

    lost = lease.check()
    if lost is not None:
        raise S3PoolConflictError(
            f"this run no longer holds the lock of the pool {pool.url}: {lost}; its result was not "
            "committed: run again"
        )
    if pool.manifest_etag() != etag:
        raise S3PoolConflictError(
            f"another run committed to the pool {pool.url} after this run read it "
            f"(generation {int(manifest['generation']) - 1}) although this run held its lock; "
            "this run's result was not committed: run again"
        )
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    try:
        pool.client.put_object(Bucket=pool.bucket, Key=pool.prefix + MANIFEST, Body=body)
    except (ClientError, BotoCoreError) as e:
        raise pool._fail(e, f"committing {pool.url}{MANIFEST}") from None


def pool_summary(url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """`datapool status` for a pool in S3: the committed manifest's pool files, read into a
    temporary folder and summarised as a local pool is, with the manifest's generation."""
    from datapool.errors import DatapoolError
    from datapool.pool.contents import Pool

    pool = S3Pool(url, None, S3Settings(endpoint_url=endpoint_url))
    manifest, etag = pool.read_manifest()
    if etag is None:
        raise DatapoolError(f"{pool.url} is not a datapool pool (no {MANIFEST} in it)")
    with tempfile.TemporaryDirectory(prefix="datapool-s3status-") as tmp:
        local = Path(tmp) / "pool"
        local.mkdir()
        pool.download(manifest, local)
        summary = Pool.open(local).summary()
    summary["pool"] = pool.url
    summary["generation"] = int(manifest["generation"])
    return summary


def run_with_s3_pool(source: str | os.PathLike[str], pool_url: str, config: RunConfig) -> RunResult:
    """`datapool.run` for a pool in S3: read, run in a temporary folder, commit conditionally, or
    under a lock object with a lease where the server ignores conditional writes."""
    pool = S3Pool(pool_url, config)
    if pool.probe_conditional_writes():
        return _run(pool, source, config, None, [])
    warnings = [
        f"the S3 server at {pool.s3.endpoint} does not support conditional writes "
        f"(If-None-Match/If-Match are ignored), so the pool {pool.url} is guarded by a lock "
        f"object with a lease instead ({pool.url}{LOCK_NAME}, {config.s3_lock_lease_s:g} s, "
        "renewed while the run works): best-effort mutual exclusion"
    ]
    log.warning("%s", warnings[0])
    lease = S3Lease(
        pool.client, pool.bucket, pool.prefix, pool.url, config.s3_lock_lease_s, pool._fail
    )
    try:
        took_over = lease.acquire()
        if took_over:
            warnings.append(took_over)
        result = _run(pool, source, config, lease, warnings)
    finally:
        not_released = lease.release()
    if not_released:
        result.warnings.append(not_released)
    return result


def _run(
    pool: S3Pool,
    source: str | os.PathLike[str],
    config: RunConfig,
    lease: S3Lease | None,
    warnings: list[str],
) -> RunResult:
    from dataclasses import replace

    from datapool.export import export_selection
    from datapool.runner import run
    from datapool.sources import open_source

    # Under a lease the manifest is read only once the lock is held: a run that waited for
    # another's commit builds on it.
    manifest, etag = pool.read_manifest()
    with tempfile.TemporaryDirectory(prefix="datapool-s3pool-") as tmp:
        local = Path(tmp) / "pool"
        local.mkdir()
        known = pool.download(manifest, local)
        # The local copy's commit is not the bucket pool's: that is pool.commit() below.
        with interrupt_says(committed=False):
            result = run(source, local, replace(config, export=None))  # exported once committed
        result.pool = pool.url
        result.warnings[:0] = warnings
        if result.run_index is None:
            result.report_path = result.view_path = None
            return result
        report = local / "runs" / str(result.run_index) / "report.json"
        doc = json.loads(report.read_text())
        doc["pool"] = pool.url
        doc["warnings"] = result.warnings
        report.write_text(json.dumps(doc, indent=2) + "\n")
        files = pool.upload(local, manifest, known)
        n_runs = len(json.loads((local / "runs.json").read_text())["runs"])
        files = {  # reports of runs that --process-all replaced are no longer part of the pool
            k: v
            for k, v in files.items()
            if not (
                k.startswith("runs/")
                and k.split("/")[1].isdigit()
                and int(k.split("/")[1]) >= n_runs
            )
        }
        new = {
            "format_version": FORMAT_VERSION,
            "generation": int(manifest["generation"]) + 1,
            "files": files,
        }
        pool.commit(new, etag, lease)
        result.report_path = f"{pool.url}runs/{result.run_index}/report.json"
        result.view_path = f"{pool.url}runs/{result.run_index}/embedding_view.png"
    if config.export:
        with interrupt_says(committed=True):  # the manifest is committed
            result.export = export_selection(
                open_source(source, config), result.selected_sources, config.export, config
            )
    return result
