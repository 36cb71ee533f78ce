"""`datapool verify s3://bucket/prefix` (moto over HTTP): every blob the manifest names looked
up and read against its SHA-256, then the pool's files checked as a folder's; a blob deleted or
changed in the bucket is reported with the pool file it belongs to."""

from __future__ import annotations

import json
import sys

import datapool
from datapool.cli import main
from datapool.media import write_image
from datapool.pool.store import open_store

from ._robust import Proc
from ._s3 import S3_FIXTURES
from .conftest import PACKAGE_PATH, scene

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES


def verify(capsys, url: str) -> tuple[int, dict]:
    rc = main(["verify", url, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_a_bucket_pool_is_verified_blob_by_blob(tmp_path, capsys, s3_env, s3, new_bucket):
    src = tmp_path / "src"
    for i in range(4):
        write_image(src / f"img{i}.jpg", scene(630 + i))
    bucket = new_bucket()
    url = f"s3://{bucket}/pool"
    datapool.run(src, url, n_samples=3, progress=False)
    for i in range(3):
        write_image(src / f"new{i}.jpg", scene(640 + i))
    datapool.run(src, url, n_samples=3, progress=False, keep_history=True)
    keys_before = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])

    rc = main(["verify", url])
    out = capsys.readouterr().out
    assert rc == 0 and out.splitlines()[-1] == "pool OK: 6 samples, 2 runs, every part checked"
    rc, doc = verify(capsys, url)
    assert rc == 0 and doc["warnings"] == [], doc
    sums = [c for c in doc["checked"] if "against its commit's sum" in c]
    assert sums == [  # run 0's too: a first run records the sums of the files it wrote
        "datapool_latest.csv: the bytes of runs 0, 1, each against its commit's sum",
        "ledger.csv: the bytes of runs 0, 1, each against its commit's sum",
    ], doc["checked"]
    # Nothing written to the bucket (no lock object, no manifest).
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == keys_before

    # A run killed holding the pool's lock object: reported as stale, and left where it is.
    killed = Proc(
        [sys.executable, "-m", "datapool", "run", str(src), "--pool", url, "--n-samples", "1"],
        DATAPOOL_TEST_PAUSE_AT="locked",
        PYTHONPATH=PACKAGE_PATH,
    )
    killed.wait_for("datapool-test: paused at")
    killed.kill()
    lock_keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert "pool/.datapool-lock.json" in lock_keys
    rc, doc = verify(capsys, url)
    assert rc == 0, doc
    (stale,) = doc["warnings"]
    assert stale["file"] == ".datapool-lock.json", stale
    assert f"a stale lock object: pid {killed.p.pid} " in stale["message"], stale
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == lock_keys

    manifest, _ = open_store(url).objects.require_manifest()
    csv_blob = manifest.files["datapool_latest.csv"].parts[-1].blob
    s3.delete_object(Bucket=bucket, Key=csv_blob)  # gone: by hand, or a lifecycle rule
    ledger = manifest.files["ledger.csv"].parts[0]
    body = s3.get_object(Bucket=bucket, Key=ledger.blob)["Body"].read()
    changed = body.replace(b"img1.jpg", b"img7.jpg")  # same length, other bytes
    assert changed != body
    s3.put_object(Bucket=bucket, Key=ledger.blob, Body=changed)
    snap = next(n for n in manifest.files if n.startswith("history/") and n.endswith("runs.json"))
    snap_blob = manifest.files[snap].parts[0]
    s3.put_object(Bucket=bucket, Key=snap_blob.blob, Body=b"x" * (snap_blob.size + 1))

    rc, doc = verify(capsys, url)
    assert rc == 2, doc
    by_file = {e["file"]: e["message"] for e in doc["errors"]}
    assert f"its blob {csv_blob} is missing from the bucket" in by_file["datapool_latest.csv"]
    assert "SHA-256 of a piece differs" in by_file["ledger.csv"], by_file
    assert (
        f"is {snap_blob.size + 1} bytes, but manifest.json says {snap_blob.size}" in by_file[snap]
    )
    # The ledger's first blob is the history snapshot's ledger too (the same bytes, one blob):
    # both files are reported. The lost files are not reported again as missing from the pool.
    shared = snap.replace("runs.json", "ledger.csv")
    assert "SHA-256 of a piece differs" in by_file[shared], by_file
    assert sorted(by_file) == sorted(["datapool_latest.csv", "ledger.csv", snap, shared])
    assert len(doc["errors"]) == 4, doc["errors"]


def test_a_format_1_bucket_pool_of_an_earlier_datapool(capsys, s3, new_bucket):
    """datapool 976c601's bucket pool (tests/artifacts/compat: a format 1 manifest, .sidecar/
    uploaded as then): every blob read, and nothing wrong found; the views its README says were
    left out are warnings."""
    from pathlib import Path

    from . import test_s3

    bucket = new_bucket()
    art = Path(__file__).parent / "artifacts" / "compat" / "976c601-s3"
    test_s3.upload(s3, art, bucket, prefix="")
    rc, doc = verify(capsys, f"s3://{bucket}/pool")
    assert rc == 0 and doc["size"] == 6 and doc["runs"] == 2, doc
    assert doc["errors"] == [], doc["errors"]
    assert sorted(w["file"] for w in doc["warnings"] if "view" in w["file"]) == [
        "runs/0/embedding_view.png",
        "runs/1/embedding_view.png",
    ], doc["warnings"]
    assert doc["checked"][0].startswith("manifest.json (")


def test_a_manifest_copied_from_a_pool_at_another_prefix(tmp_path, capsys, s3_env, s3, new_bucket):
    """A pool copied object by object to a new prefix (`aws s3 sync s3://b/pool s3://b/copy`)
    keeps a manifest that names the old prefix's blobs: the copy reads the other pool's objects,
    which that pool's gc or deletion removes. verify said OK (every blob it names is there and
    as its SHA-256 says); it is now an error on manifest.json."""
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"img{i}.jpg", scene(650 + i))
    bucket = new_bucket()
    datapool.run(src, f"s3://{bucket}/pool", n_samples=2, progress=False)
    for o in s3.list_objects_v2(Bucket=bucket, Prefix="pool/")["Contents"]:
        copy = "copy/" + o["Key"][len("pool/") :]
        s3.copy_object(Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": o["Key"]})
    rc, doc = verify(capsys, f"s3://{bucket}/pool")
    assert rc == 0, doc
    rc, doc = verify(capsys, f"s3://{bucket}/copy")
    assert rc == 2, doc
    (error,) = doc["errors"]
    assert error["file"] == "manifest.json", error
    assert "outside this pool's copy/blobs/ (e.g. pool/blobs/" in error["message"], error


def test_a_bucket_pool_after_datapool_rm_is_checked_against_the_rms_sums(
    tmp_path, capsys, s3_env, s3, new_bucket
):
    """`datapool rm` on a bucket rewrote the CSV and the ledger with no sums: verify said
    'unchecked'. It records them now, in its entry in runs.json, and verify checks them."""
    src = tmp_path / "src"
    for i in range(4):
        write_image(src / f"img{i}.jpg", scene(650 + i))
    url = f"s3://{new_bucket()}/pool"
    datapool.run(src, url, n_samples=3, progress=False)
    name = open_store(url).pool().filenames[0]
    assert main(["rm", url, name]) == 0
    capsys.readouterr()
    rc, doc = verify(capsys, url)
    assert rc == 0 and doc["warnings"] == [] and doc["not_checked"] == [], doc
    sums = [c for c in doc["checked"] if "against its commit's sum" in c]
    assert len(sums) == 2 and all("the bytes of the `datapool rm` at " in c for c in sums), sums
