"""S3 sources against a real S3 protocol server: moto in server mode on 127.0.0.1, reached by boto3
over HTTP (no in-process mocking of boto3), plus a fault-injecting HTTP proxy for retries."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

import datapool  # noqa: E402
from datapool import Pool  # noqa: E402
from datapool.config import RunConfig  # noqa: E402
from datapool.errors import SourceError  # noqa: E402
from datapool.pool.layout import S3_LOCK_NAME  # noqa: E402
from datapool.s3.client import S3Settings, parse_s3_url  # noqa: E402
from datapool.s3.source import S3Source  # noqa: E402

from ._http_proxy import ProxyHandler, serve  # noqa: E402
from ._robust import cli_args  # noqa: E402
from .conftest import run_cli  # noqa: E402

BROKEN = {"cam/broken.mp4", "notes.png", "empty.jpg"}
PLANTED_KEY_ID = "AKIAPLANTED7Q2ZK4XW9"
PLANTED_SECRET = "plAnted/Secret+9fT3kQ0vR7xY2wZ5uL8nB1mC4dE6gH0jK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 and a free port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch, tmp_path) -> str:
    """boto3's standard chain pointed at moto with dummy credentials, nothing from the host."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    # The local copies of pools in S3 (s3/cache.py): one folder per test, never ~/.cache.
    monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "datapool-cache"))
    return moto_endpoint


@pytest.fixture
def s3(s3_env):
    return boto3.client("s3", endpoint_url=s3_env)


@pytest.fixture
def new_bucket(s3):
    def make() -> str:
        name = f"dp-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)
        return name

    return make


def upload(s3, folder: Path, bucket: str, prefix: str = "raw/", only=None) -> list[str]:
    keys = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            if only is None or rel in only:
                s3.put_object(Bucket=bucket, Key=prefix + rel, Body=path.read_bytes())
                keys.append(rel)
    return keys


def run(source, pool, **kw):
    kw.setdefault("n_samples", 8)
    return datapool.run(source, pool, progress=False, **kw)


def test_parse_s3_url():
    assert parse_s3_url("s3://my-bucket") == ("my-bucket", "")
    assert parse_s3_url("s3://my-bucket/") == ("my-bucket", "")
    assert parse_s3_url("s3://my-bucket/raw/cam") == ("my-bucket", "raw/cam/")
    assert parse_s3_url("S3://my-bucket/raw/") == ("my-bucket", "raw/")
    with pytest.raises(SourceError, match="valid bucket name"):
        parse_s3_url("s3://user:pw@bucket/x")
    with pytest.raises(SourceError, match="valid bucket name"):
        parse_s3_url("s3:///x")


def test_import_datapool_does_not_import_boto3():
    code = (
        "import sys, datapool, datapool.runner, datapool.cli, datapool.sources.local; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_boto3_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` does when absent
    with pytest.raises(SourceError, match=r"needs boto3.*pip install 'datapool\[s3\]'"):
        datapool.sources.open_source("s3://some-bucket/raw")


def test_listing_paginates_and_matches_the_local_listing(s3, new_bucket, bucket):
    name = new_bucket()
    upload(s3, bucket, name)
    s3.put_object(Bucket=name, Key="raw/.hidden/x.jpg", Body=b"x")  # hidden, like local
    s3.put_object(Bucket=name, Key="raw/folder/", Body=b"")  # a "folder" marker
    s3.put_object(Bucket=name, Key="elsewhere.jpg", Body=b"x")  # outside the prefix
    src = S3Source(f"s3://{name}/raw", page_size=2)
    df = src.list()
    from datapool.sources.local import LocalSource

    local = LocalSource(bucket).list()
    assert df["key"].tolist() == local["key"].tolist()
    assert df["size"].tolist() == local["size"].tolist()
    assert src.n_ignored == 1  # README.txt
    head = s3.head_object(Bucket=name, Key="raw/img0.jpg")
    row = df.set_index("key").loc["img0.jpg"]
    assert row["etag"] == head["ETag"].strip('"')
    assert row["mtime_ns"] == int(head["LastModified"].timestamp()) * 10**9


@pytest.mark.parametrize("video_reads", ["spool", "ranged"])
def test_open_inputs_gives_the_bytes_in_order_with_bounded_read_ahead(
    s3, new_bucket, bucket, video_reads
):
    name = new_bucket()
    upload(s3, bucket, name)
    src = S3Source(
        f"s3://{name}/raw/",
        S3Settings(concurrency=3),
        max_in_flight=2,
        max_bytes_in_flight=10_000,
        video_reads=video_reads,
    )
    keys = src.list()["key"].tolist()[::-1]
    seen = []
    for key, media in src.open_inputs(keys):
        assert not isinstance(media, (str, SourceError))
        media.seek(0, os.SEEK_END)
        size = media.tell()
        media.seek(0)
        assert media.read() == (bucket / key).read_bytes()
        assert size == (bucket / key).stat().st_size
        media.close()
        seen.append(key)
    assert seen == keys
    # Stopping early closes what was read ahead and leaves no worker thread behind.
    gen = src.open_inputs(keys)
    next(gen)[1].close()
    assert any(t.name.startswith("datapool-s3") for t in threading.enumerate())
    gen.close()
    assert not any(t.name.startswith("datapool-s3") for t in threading.enumerate())


def test_object_rewritten_after_listing_is_skipped_not_misread(s3, new_bucket, bucket):
    name = new_bucket()
    upload(s3, bucket, name, only={"img0.jpg", "img1.jpg"})
    src = S3Source(f"s3://{name}/raw/")
    keys = src.list()["key"].tolist()
    s3.put_object(Bucket=name, Key="raw/img1.jpg", Body=(bucket / "img2.jpg").read_bytes())
    got = dict(src.open_inputs(keys))
    assert not isinstance(got["img0.jpg"], SourceError)
    got["img0.jpg"].close()
    assert isinstance(got["img1.jpg"], SourceError)
    assert "changed after it was listed" in str(got["img1.jpg"])


def test_s3_run_and_local_run_give_the_same_pool(s3, new_bucket, bucket, tmp_path):
    name = new_bucket()
    upload(s3, bucket, name)
    local = run(bucket, tmp_path / "local")
    remote = run(f"s3://{name}/raw", tmp_path / "remote")
    assert remote.counts == local.counts
    # The broken object among good ones is skipped with a reason; the run goes on.
    assert {s["key"] for s in remote.skipped} == BROKEN
    a, b = Pool.open(tmp_path / "local"), Pool.open(tmp_path / "remote")
    assert a.filenames == b.filenames
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-6, rtol=0)
    ledger = b.ledger.set_index("key")
    head = s3.head_object(Bucket=name, Key="raw/img3.jpg")
    assert ledger.loc["img3.jpg", "etag"] == head["ETag"].strip('"')
    runs = json.loads((tmp_path / "remote" / "runs.json").read_text())
    assert runs["runs"][0]["source"] == f"s3://{name}/raw/"


def test_two_runs_over_a_bucket_that_gains_objects(s3, new_bucket, bucket, tmp_path):
    name = new_bucket()
    first = {"img0.jpg", "img1.jpg", "png0.png", "cam/clip.mp4"}
    upload(s3, bucket, name, only=first)
    pool = tmp_path / "pool"
    r1 = run(f"s3://{name}/raw", pool, n_samples=4)
    assert (r1.counts["new"], r1.counts["processed"]) == (4, 4)
    upload(s3, bucket, name, only={"img2.jpg", "sub/deep.png", "cam/other.mp4"})
    r2 = run(f"s3://{name}/raw", pool, n_samples=4)
    c = r2.counts
    assert (c["new"], c["changed"], c["unchanged"], c["processed"]) == (3, 0, 4, 3)
    keys = set(Pool.open(pool).ledger["key"])
    assert keys == first | {"img2.jpg", "sub/deep.png", "cam/other.mp4"}
    r3 = run(f"s3://{name}/raw", pool, n_samples=4)
    assert r3.run_index is None and r3.counts["unchanged"] == 7


def test_an_object_moved_on_the_server_keeps_its_sample_and_an_excluded_one_does_not_move(
    s3, new_bucket, few_images, tmp_path
):
    """pool/moves.py on S3: a copy then delete (how S3 renames) is a move, found by the ETag. An
    object that --exclude leaves out is not gone: a copy of it elsewhere is a new file, not where
    the excluded one moved (its sample was renamed to the copy, while the object stayed)."""
    name = new_bucket()
    upload(s3, few_images, name)
    pool = tmp_path / "pool"
    run(f"s3://{name}/raw", pool, n_samples=4)
    assert sorted(Pool.open(pool).filenames) == ["f0.jpg", "f1.jpg", "f2.jpg", "f3.jpg"]

    s3.copy_object(Bucket=name, Key="raw/moved/f1.jpg", CopySource=f"{name}/raw/f1.jpg")
    s3.delete_object(Bucket=name, Key="raw/f1.jpg")
    r = run(f"s3://{name}/raw", pool, n_samples=4)
    assert (r.counts["moved"], r.counts["new"], r.counts["processed"]) == (1, 0, 0)
    assert sorted(Pool.open(pool).filenames) == ["f0.jpg", "f2.jpg", "f3.jpg", "moved/f1.jpg"]

    s3.copy_object(Bucket=name, Key="raw/dup/c0.jpg", CopySource=f"{name}/raw/f0.jpg")
    r = run(f"s3://{name}/raw", pool, n_samples=4, exclude=("f0.jpg",))
    assert (r.counts["moved"], r.counts["new"]) == (0, 1)
    after = Pool.open(pool)
    assert "f0.jpg" in after.filenames and "f0.jpg" in set(after.ledger["key"])


def test_a_local_source_moved_into_a_bucket_keeps_its_pool(
    s3, s3_env, new_bucket, few_images, tmp_path, make_media
):
    """--source-moved from a folder to a bucket: the ledger holds the files' content hashes and
    no ETag, the listing ETags and new LastModified times. Each object whose size matches is read
    once and hashed: the same bytes are the same file (its ETag recorded from then on), not a
    changed one. Before, every file was changed: all embedded again and the pool's samples taken
    out and picked again as a new run."""
    pool = tmp_path / "pool"
    first = run(few_images, pool, n_samples=3)
    before = Pool.open(pool)
    name = new_bucket()
    upload(s3, few_images, name)
    s3.put_object(
        Bucket=name, Key="raw/f3.jpg", Body=make_media(tmp_path / "x.jpg", seed=99).read_bytes()
    )
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        moved = run(
            f"s3://{name}/raw", pool, n_samples=3, source_moved=True, s3_endpoint_url=proxy.url
        )
        gets = sorted(p.split("?")[0] for m, p, *_ in proxy.traffic if m == "GET" and "/raw/" in p)
        c = moved.counts
        assert (c["changed"], c["unchanged"], c["touched"]) == (1, 3, 3), c
        assert c["processed"] == 1
        # the 3 same-size objects read once to hash them, f3.jpg (another size) once to embed it
        assert gets == [f"/{name}/raw/f{i}.jpg" for i in range(4)]
        after = Pool.open(pool)
        kept = [n for n in before.filenames if n != "f3.jpg"]
        assert [n for n in after.filenames if n in kept] == kept
        assert set(after.ledger.loc[after.ledger["key"] != "f3.jpg", "etag"]) != {""}
        proxy.reset()
        again = run(f"s3://{name}/raw", pool, n_samples=3, s3_endpoint_url=proxy.url)
        assert again.run_index is None and again.counts["unchanged"] == 4
        assert not [p for m, p, *_ in proxy.traffic if m == "GET" and "/raw/" in p]
    assert first.run_index == 0


def _upload_multipart(s3, bucket: str, key: str, body: bytes) -> str:
    """`key` as one multipart upload of one part: its ETag is `<md5 of the part's md5>-1`."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=body)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    return str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


def test_a_bucket_moved_into_a_folder_keeps_its_pool(s3, new_bucket, few_images, tmp_path):
    """--source-moved from a bucket to a folder: the ledger holds ETags and no content hash,
    the folder's files new mtimes. A single-part upload's ETag is the MD5 of its bytes: a file
    whose MD5 is it is the same file (touched, or moved where its name changed), and its content
    hash is recorded for the runs after. Before, every file was changed: all embedded again and
    the pool's samples taken out and picked again. A multipart upload's ETag (`-1`) is no MD5:
    that file stays new, and its old key gone."""
    name = new_bucket()
    upload(s3, few_images, name, only={"f0.jpg", "f1.jpg", "f2.jpg"})
    etag = _upload_multipart(s3, name, "raw/f3.jpg", (few_images / "f3.jpg").read_bytes())
    assert etag.endswith("-1")
    pool = tmp_path / "pool"
    run(f"s3://{name}/raw", pool, n_samples=4)
    before = Pool.open(pool)
    assert sorted(before.filenames) == ["f0.jpg", "f1.jpg", "f2.jpg", "f3.jpg"]
    assert (before.ledger["content_hash"] == "").all()

    folder = tmp_path / "folder"  # f1.jpg renamed on the way
    for i, key in enumerate(["f0.jpg", "renamed/f1.jpg", "f2.jpg", "f3.jpg"]):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes((few_images / f"f{i}.jpg").read_bytes())
    moved = run(folder, pool, n_samples=4, source_moved=True)
    c = moved.counts
    assert (c["touched"], c["moved"], c["changed"]) == (2, 1, 1), c
    assert c["processed"] == 1  # the multipart object's file alone, decoded again
    after = Pool.open(pool)
    assert "renamed/f1.jpg" in after.filenames and "f1.jpg" not in after.filenames
    ledger = after.ledger.set_index("key")
    for key in ("f0.jpg", "renamed/f1.jpg", "f2.jpg"):
        assert ledger.loc[key, "content_hash"] != "", key  # known by its bytes from now on
        assert ledger.loc[key, "run"] == 0, key  # not a new run's file
    again = run(folder, pool, n_samples=4)
    assert again.run_index is None and again.counts["unchanged"] == 4
    assert not again.counts.get("hashed")


def test_a_merge_and_a_run_read_one_version_rule(s3, new_bucket, tmp_path, make_media):
    """Two pools of one bucket, a video written again with the same bytes between their runs
    (a new LastModified, the same ETag). A run takes it as unchanged (same ETag); the merge
    took it as another version (it compared the mtimes too) and left out, as stale, B's frames
    of it that A had not picked. Now both apply pool/ledger.py same_version."""
    name = new_bucket()
    clip = make_media(tmp_path / "clip.mp4", seed=30, frames=12).read_bytes()
    s3.put_object(Bucket=name, Key="raw/clip.mp4", Body=clip)
    pa, pb = tmp_path / "A", tmp_path / "B"
    run(f"s3://{name}/raw", pa, n_samples=1)
    time.sleep(1.1)  # LastModified has whole seconds
    s3.put_object(Bucket=name, Key="raw/clip.mp4", Body=clip)
    run(f"s3://{name}/raw", pb, n_samples=3)
    a, b = Pool.open(pa), Pool.open(pb)
    row_a, row_b = (
        a.ledger.set_index("key").loc["clip.mp4"],
        b.ledger.set_index("key").loc["clip.mp4"],
    )
    assert row_a["mtime_ns"] != row_b["mtime_ns"] and row_a["etag"] == row_b["etag"]
    assert run(f"s3://{name}/raw", pa, n_samples=1).counts["unchanged"] == 1
    from datapool.pool.merge import merge_pools

    merged = merge_pools(pa, pb, tmp_path / "C")
    union = set(a.filenames) | set(b.filenames)
    assert len(union) > len(a.filenames)  # B picked frames A did not
    assert (merged.stale, merged.size) == (0, len(union))


def test_a_key_with_a_dot_part_is_named_not_silently_left_out(s3, new_bucket, few_images, tmp_path):
    """`raw/./x.jpg` (and `raw/a/../y.jpg`) were left out of the listing as hidden files are,
    with no word: a user saw fewer files than the bucket holds. They are still left out (such a
    key names no file of a folder: a copy or an export would write it under another name), and
    the run says so, naming one; a hidden object (`.DS_Store`, `.lightly/...`) is not named."""
    name = new_bucket()
    upload(s3, few_images, name, only={"f0.jpg"})
    body = (few_images / "f1.jpg").read_bytes()
    s3.put_object(Bucket=name, Key="raw/./x.jpg", Body=body)
    s3.put_object(Bucket=name, Key="raw/a/../y.jpg", Body=body)
    s3.put_object(Bucket=name, Key="raw/.hidden.jpg", Body=body)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]}
    assert {"raw/./x.jpg", "raw/a/../y.jpg"} <= keys  # the server keeps them as written
    r = run(f"s3://{name}/raw", tmp_path / "pool", n_samples=4)
    assert r.counts["listed"] == 1
    (warning,) = [w for w in r.warnings if "'.' or '..' part" in w]
    assert warning.startswith("2 objects whose key has a '.' or '..' part were left out")
    assert f"s3://{name}/raw/./x.jpg" in warning and "hidden" not in warning


def test_a_pool_folder_uploaded_into_the_bucket_is_not_raw_data(s3, new_bucket, bucket, tmp_path):
    # A local pool copied into the bucket beside the raw files (`aws s3 sync . s3://b/raw`): its
    # embedding views and reports are PNGs, and must not be ingested into another pool.
    name = new_bucket()
    run(bucket, bucket / "old_pool", n_samples=3)
    upload(s3, bucket, name)
    result = run(f"s3://{name}/raw", tmp_path / "pool")
    keys = set(Pool.open(tmp_path / "pool").ledger["key"])
    assert keys and not {k for k in keys if k.startswith("old_pool/")}, keys
    assert any("old_pool/" in w for w in result.warnings), result.warnings


def test_an_archived_object_is_read_once_it_is_restored(s3, new_bucket, bucket, tmp_path):
    # An object in Glacier cannot be read (InvalidObjectState). Restoring it changes neither its
    # ETag nor its size nor its LastModified, so unless the skip is marked as a failed read the
    # next run sees it "unchanged, skipped" and it never enters the pool.
    name = new_bucket()
    upload(s3, bucket, name, only={"img0.jpg", "img1.jpg", "png0.png"})
    body = (bucket / "img2.jpg").read_bytes()
    s3.put_object(Bucket=name, Key="raw/img2.jpg", Body=body, StorageClass="GLACIER")
    pool = tmp_path / "pool"
    run(f"s3://{name}/raw", pool, n_samples=2)
    status = Pool.open(pool).ledger.set_index("key").loc["img2.jpg", "status"]
    assert "storage class" in status, status
    s3.restore_object(Bucket=name, Key="raw/img2.jpg", RestoreRequest={"Days": 1})
    again = run(f"s3://{name}/raw", pool, n_samples=2)
    assert again.counts["retried"] == 1 and again.counts["processed"] == 1, again.counts
    assert Pool.open(pool).ledger.set_index("key").loc["img2.jpg", "status"] == "ok"


def same_size_other_bytes(tmp_path, make_media) -> Path:
    """tmp_path/a holds x.bmp and y.bmp; the path returned, another x.bmp of the same size
    with other bytes. BMP is uncompressed: two different pictures of one size are files of the
    same size."""
    a = make_media(tmp_path / "a" / "x.bmp", seed=1)
    b = make_media(tmp_path / "b" / "x.bmp", seed=2)
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    make_media(tmp_path / "a" / "y.bmp", seed=3)
    return b


def test_rewritten_object_with_the_same_size_is_processed_again(
    s3, new_bucket, tmp_path, make_media
):
    b = same_size_other_bytes(tmp_path, make_media)
    name = new_bucket()
    upload(s3, tmp_path / "a", name)
    pool = tmp_path / "pool"
    run(f"s3://{name}/raw", pool, n_samples=2)
    before = Pool.open(pool)
    s3.put_object(Bucket=name, Key="raw/x.bmp", Body=b.read_bytes())
    r = run(f"s3://{name}/raw", pool, n_samples=2)
    assert (r.counts["changed"], r.counts["unchanged"], r.counts["processed"]) == (1, 1, 1)
    after = Pool.open(pool)
    etag = s3.head_object(Bucket=name, Key="raw/x.bmp")["ETag"].strip('"')
    assert after.ledger.set_index("key").loc["x.bmp", "etag"] == etag
    i, j = before.filenames.index("x.bmp"), after.filenames.index("x.bmp")
    assert not np.allclose(before.embeddings[i], after.embeddings[j], atol=1e-3)


def test_missing_bucket_stops_the_run_naming_bucket_and_code(s3_env, tmp_path):
    with pytest.raises(SourceError, match=r"'dp-no-such-bucket'.*NoSuchBucket"):
        run("s3://dp-no-such-bucket/raw", tmp_path / "pool")
    assert not (tmp_path / "pool" / "datapool_latest.csv").exists()


def test_an_object_given_as_the_source_stops_the_run_as_a_local_file_does(
    s3, new_bucket, few_images, tmp_path
):
    """`datapool run s3://b/raw/a.jpg` listed the prefix `raw/a.jpg/`, found nothing, warned
    "check the path" and exited 0 (a cron job kept succeeding); a local file as SOURCE stopped
    with exit 5 and what to give instead. Now the object is named the same way."""
    bucket = new_bucket()
    (key, *_) = upload(s3, few_images, bucket, prefix="cam/raw/")
    url = f"s3://{bucket}/cam/raw/{key}"
    with pytest.raises(SourceError) as e:
        run(url, tmp_path / "pool")
    folder, _, name = f"cam/raw/{key}".rpartition("/")
    assert str(e.value) == (
        f"source {url} is an object, not a prefix; give the prefix that holds it, "
        f"s3://{bucket}/{folder}/ (add --include '{name}' to use only this object)"
    )
    assert not (tmp_path / "pool").exists()
    # an empty prefix, or one that only starts like the bucket's (s3://b/ca for cam/), as before
    assert run(f"s3://{bucket}/ca", tmp_path / "pool").run_index is None
    assert run(f"s3://{bucket}/cam/raw", tmp_path / "pool").run_index == 0


def test_an_endpoint_that_does_not_answer_is_said_at_the_first_retry(s3_env, tmp_path):
    """Nothing listens at the endpoint: the first retry says so on stderr, naming the endpoint
    and how long the attempts take, then the run stops with one line. Before, stderr stayed
    silent until every attempt had failed (minutes, for an endpoint that hangs)."""
    endpoint = f"http://127.0.0.1:{_free_port()}"
    p = run_cli(
        "run",
        "s3://dp-any/raw",
        "--pool",
        tmp_path / "pool",
        "--n-samples",
        "2",
        "--no-progress",
        "--s3-endpoint-url",
        endpoint,
        "--s3-max-attempts",
        "2",
    )
    assert p.returncode == 5, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 2, p.stderr
    assert lines[0] == (
        f"datapool: warning: the S3 endpoint {endpoint} did not answer "
        "(EndpointConnectionError); retrying, 2 attempts in all (--s3-max-attempts), each "
        "waiting up to 10 s to connect and 60 s for a reply (--s3-read-timeout)"
    )
    assert lines[1] == (
        f"datapool: error: listing s3://dp-any/raw/ in S3 bucket 'dp-any': cannot connect to "
        f"the endpoint {endpoint}"
    )


def test_a_missing_aws_profile_or_a_broken_config_file_is_one_line(s3_env, tmp_path):
    """boto3 reads AWS_PROFILE and the config file when its session is made: a profile that is
    not there (a typo) or a file it cannot parse was a ProfileNotFound / ConfigParseError
    traceback."""
    broken = tmp_path / "aws-config"
    broken.write_text("[default\nregion = us-east-1\n")
    for env, says in (
        ({"AWS_PROFILE": "no-such-profile"}, "The config profile (no-such-profile) could not"),
        ({"AWS_CONFIG_FILE": str(broken)}, f"Unable to parse config file: {broken}"),
    ):
        p = run_cli(
            "run", "s3://dp-any/raw", "--pool", tmp_path / "pool", "--n-samples", "2", env_extra=env
        )
        assert p.returncode == 5, p.stderr
        assert p.stderr.startswith(f"datapool: error: cannot make an S3 client: {says}")
        assert p.stderr.count("\n") == 1 and "AWS_PROFILE" in p.stderr


def _set_moto_auth(endpoint: str, count: str) -> None:
    """moto's server API: enforce IAM authentication after `count` more requests ('inf': never)."""
    req = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture
def moto_auth(s3_env) -> Iterator[None]:
    _set_moto_auth(s3_env, "0")
    try:
        yield
    finally:
        _set_moto_auth(s3_env, "inf")


def test_bad_credentials_are_a_403_that_stops_the_run(
    s3, new_bucket, bucket, tmp_path, monkeypatch, request
):
    name = new_bucket()
    upload(s3, bucket, name, only={"img0.jpg"})
    request.getfixturevalue("moto_auth")  # from here on moto checks credentials against its IAM
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", PLANTED_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET)
    with pytest.raises(SourceError, match=rf"'{name}'.*InvalidAccessKeyId \(HTTP 403\)") as e:
        run(f"s3://{name}/raw", tmp_path / "pool")
    assert PLANTED_KEY_ID not in str(e.value) and PLANTED_SECRET not in str(e.value)
    assert "access denied" in str(e.value)
    assert not (tmp_path / "pool" / "datapool_latest.csv").exists()


def test_bucket_policy_deny_is_access_denied(
    s3, s3_env, new_bucket, bucket, tmp_path, monkeypatch, request
):
    """A real IAM user of moto's, allowed everything by IAM, denied by the bucket's policy."""
    name = new_bucket()
    upload(s3, bucket, name, only={"img0.jpg"})
    iam = boto3.client("iam", endpoint_url=s3_env)
    user = f"u-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    s3.put_bucket_policy(
        Bucket=name,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
                    }
                ],
            }
        ),
    )
    request.getfixturevalue("moto_auth")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    # moto lets the listing through this policy and denies the GET (a bare 403, code "403").
    with pytest.raises(SourceError, match=rf"'{name}'.*(AccessDenied|403) \(HTTP 403\)") as e:
        run(f"s3://{name}/raw", tmp_path / "pool")
    assert key["SecretAccessKey"] not in str(e.value)


def test_planted_credentials_appear_in_no_file_and_no_output(s3, new_bucket, bucket, tmp_path):
    name = new_bucket()
    upload(s3, bucket, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=PLANTED_KEY_ID,
        AWS_SECRET_ACCESS_KEY=PLANTED_SECRET,
        AWS_SESSION_TOKEN="PLANTEDsessionTOKEN0123456789",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=os.environ["AWS_ENDPOINT_URL"],
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    pool, out = tmp_path / "pool", tmp_path / "export"
    outputs = []
    for args in (
        [
            "run",
            f"s3://{name}/raw",
            "--pool",
            str(pool),
            "--n-samples",
            "6",
            "--export",
            str(out),
            "--json",
        ],
        ["run", f"s3://{name}/raw", "--pool", str(pool), "--n-samples", "6"],  # nothing new
        ["run", "s3://dp-no-such-bucket/raw", "--pool", str(tmp_path / "p2"), "--n-samples", "1"],
        ["status", str(pool)],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "datapool", *args], env=env, capture_output=True, timeout=300
        )
        outputs += [p.stdout, p.stderr]
    assert b"NoSuchBucket" in outputs[5]  # the failing run did run and report
    files = [f for f in (*pool.rglob("*"), *out.rglob("*")) if f.is_file()]
    assert any(f.name == "runs.json" for f in files) and any(f.suffix == ".png" for f in files)
    planted = (PLANTED_KEY_ID, PLANTED_SECRET, "PLANTEDsessionTOKEN0123456789")
    for blob in [*outputs, *(f.read_bytes() for f in files)]:
        for secret in planted:
            assert secret.encode() not in blob


def test_run_config_records_no_userinfo_of_an_endpoint():
    cfg = RunConfig(
        n_samples=1,
        s3_endpoint_url="https://admin:hunter2-secret@minio.local:9000",
        export="s3://out/frames/",
    )
    recorded = json.dumps(cfg.to_json())
    assert "hunter2" not in recorded and "admin" not in recorded
    assert cfg.to_json()["s3_endpoint_url"] == "https://minio.local:9000"


# --- retries: a fault-injecting proxy in front of moto -------------------------------------------


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that forwards to moto and, seeded, answers some requests with 503
    SlowDown or 500 InternalError instead. Each distinct request fails at most `max_faults_each`
    times in a row, so a client that retries enough always gets through. `mangle(method, path,
    body)` may change the body of a GET's reply (its headers, the checksum among them, stay)."""

    def __init__(
        self,
        upstream: str,
        seed: int,
        p: float,
        max_faults_each: int = 2,
        drop_headers: tuple[str, ...] = (),
        mangle: Callable[[str, str, bytes], bytes] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.p = p
        self.max_faults_each = max_faults_each
        self.faults = 0
        self.requests = 0
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request
        # (method, path with query, Range header, request body bytes, response body bytes)
        self.traffic: list[tuple[str, str, str, int, int]] = []
        self._tries: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(ProxyHandler):
            def _handle(self) -> None:
                body = self.read_body()
                if proxy._should_fail(self.command, self.path, self.headers.get("Range", "")):
                    code, status = proxy.rng_choice()
                    payload = (
                        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                        f"<Message>injected fault</Message></Error>"
                    ).encode()
                    return self.send_reply(status, "application/xml", payload)
                resp, data = self.forward(body, drop=drop_headers)
                if mangle is not None and self.command == "GET":
                    data = mangle(self.command, self.path, data)
                self.send_forwarded(resp, data, skip=("date", "server"))
                with proxy._lock:
                    sent = len(data) if self.command != "HEAD" else 0
                    proxy.traffic.append(
                        (self.command, self.path, self.headers.get("Range", ""), len(body), sent)
                    )

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server, self.url = serve(Handler, upstream)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _should_fail(self, method: str, path: str, rng: str) -> bool:
        with self._lock:
            self.requests += 1
            self.seen.append((method, path.split("?")[0]))
            if "/moto-api/" in path:
                return False
            k = (method, path, rng)
            tries = self._tries.get(k, 0)
            fail = tries < self.max_faults_each and self.rng.random() < self.p
            self._tries[k] = tries + 1 if fail else self.max_faults_each
            self.faults += fail
            return fail

    def uploaded(self) -> int:
        """Bytes of request bodies forwarded (PUT and POST: objects, parts, manifests)."""
        with self._lock:
            return sum(up for _, _, _, up, _ in self.traffic)

    def downloaded(self, under: str = "") -> int:
        """Bytes of response bodies for GETs of paths that contain `under`."""
        with self._lock:
            return sum(d for m, p, _, _, d in self.traffic if m == "GET" and under in p)

    def reset(self) -> None:
        with self._lock:
            self.traffic.clear()
            self.seen.clear()

    def rng_choice(self) -> tuple[str, int]:
        with self._lock:
            return self.rng.choice(
                [("SlowDown", 503), ("ServiceUnavailable", 503), ("InternalError", 500)]
            )

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_retries_through_injected_faults_give_the_same_result(
    s3, s3_env, new_bucket, bucket, tmp_path, monkeypatch
):
    name = new_bucket()
    upload(s3, bucket, name)
    clean = run(f"s3://{name}/raw", tmp_path / "clean", s3_max_attempts=5)
    with FaultProxy(s3_env, seed=7, p=0.35) as proxy:
        faulty = run(
            f"s3://{name}/raw", tmp_path / "faulty", s3_max_attempts=5, s3_endpoint_url=proxy.url
        )
    assert proxy.faults >= 3, "the proxy injected too few faults for this test to mean anything"
    assert faulty.counts == clean.counts
    a, b = Pool.open(tmp_path / "clean"), Pool.open(tmp_path / "faulty")
    assert a.filenames == b.filenames
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-6, rtol=0)
    # With too few attempts for the faults, the run stops; it never records a passing fault as a
    # broken file.
    with (
        FaultProxy(s3_env, seed=7, p=1.0, max_faults_each=3) as proxy,
        pytest.raises(SourceError, match=rf"'{name}'.*(SlowDown|ServiceUnavailable|InternalError)"),
    ):
        run(f"s3://{name}/raw", tmp_path / "failed", s3_max_attempts=2, s3_endpoint_url=proxy.url)
    assert not (tmp_path / "failed" / "ledger.csv").exists()


def flip_first_byte(part: str, times: int) -> tuple[Callable[[str, str, bytes], bytes], list]:
    """A FaultProxy `mangle` that flips the first byte of the first `times` GET replies for a
    path that holds `part`, and the list of the paths it flipped."""
    flipped: list[str] = []

    def mangle(method: str, path: str, data: bytes) -> bytes:
        if part in path.split("?")[0] and data and len(flipped) < times:
            flipped.append(path)
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    return mangle, flipped


def test_a_body_that_fails_its_checksum_is_read_again_then_stops_the_run(
    s3, s3_env, new_bucket, bucket, tmp_path
):
    """boto3 checks a GET's body against the checksum the server sent (x-amz-checksum-crc32);
    a mismatch is a body damaged on the way, read again like a body cut short. It was a
    FlexibleChecksumError traceback."""
    name = new_bucket()
    upload(s3, bucket, name)
    mangle, flipped = flip_first_byte("/raw/img0.jpg", 1)
    with FaultProxy(s3_env, seed=0, p=0.0, mangle=mangle) as proxy:
        run(f"s3://{name}/raw", tmp_path / "once", s3_endpoint_url=proxy.url)
    assert len(flipped) == 1
    ledger = Pool.open(tmp_path / "once").ledger.set_index("key")
    assert ledger.loc["img0.jpg", "status"] == "ok"
    mangle, flipped = flip_first_byte("/raw/img0.jpg", 100)
    with (
        FaultProxy(s3_env, seed=0, p=0.0, mangle=mangle) as proxy,
        pytest.raises(
            SourceError, match=r"img0\.jpg: the body did not match the checksum.*3 times"
        ),
    ):
        run(f"s3://{name}/raw", tmp_path / "failed", s3_max_attempts=3, s3_endpoint_url=proxy.url)
    assert len(flipped) == 3
    assert not (tmp_path / "failed" / "ledger.csv").exists()


def test_a_pool_file_that_fails_its_checksum_is_one_clear_line(
    s3, s3_env, new_bucket, bucket, tmp_path
):
    """The manifest or a blob of a pool in a bucket whose body fails its checksum stops the
    command with one line (exit 8), not a traceback."""
    name = new_bucket()
    url = f"s3://{name}/pool"
    run(bucket, url, n_samples=3)
    for part, cache in (("/pool/manifest.json", "cache-a"), ("/pool/blobs/", "cache-b")):
        mangle, flipped = flip_first_byte(part, 1000)
        with FaultProxy(s3_env, seed=0, p=0.0, mangle=mangle) as proxy:
            p = run_cli(
                "status",
                url,
                "--s3-endpoint-url",
                proxy.url,
                env_extra={"DATAPOOL_CACHE_DIR": str(tmp_path / cache)},
            )
        assert flipped, part
        assert p.returncode == 8, p.stderr
        assert "Traceback" not in p.stderr
        assert p.stderr.startswith("datapool: error: reading ") and p.stderr.count("\n") == 1
        assert "FlexibleChecksumError" in p.stderr


# --- export ---------------------------------------------------------------------------------------


def test_export_to_a_bucket(s3, new_bucket, bucket, tmp_path):
    name, out = new_bucket(), new_bucket()
    upload(s3, bucket, name)
    r = run(
        f"s3://{name}/raw", tmp_path / "pool", n_samples=12, export=f"s3://{out}/.datapool/frames/"
    )
    assert r.export is not None and r.export.refused == []
    assert r.export.dest == f"s3://{out}/.datapool/frames/"
    listed = s3.list_objects_v2(Bucket=out)["Contents"]
    keys = {o["Key"] for o in listed}
    assert keys == {f".datapool/frames/{n}" for n in [*r.selected, "selected_filenames.txt"]}
    body = s3.get_object(Bucket=out, Key=".datapool/frames/selected_filenames.txt")["Body"].read()
    assert body.decode().splitlines() == r.selected
    images = [n for n in r.selected if not n.endswith("-mp4.png")]
    assert images and len(images) < len(r.selected)
    for n in images:
        got = s3.get_object(Bucket=out, Key=f".datapool/frames/{n}")["Body"].read()
        assert got == (bucket / n).read_bytes()
    # An export under the source prefix is hidden ('.datapool'), so the next run does not list it.
    r2 = run(
        f"s3://{name}/raw",
        tmp_path / "pool",
        n_samples=12,
        export=f"s3://{name}/raw/.datapool/frames/",
    )
    assert r2.run_index is None and r2.counts["listed"] == r.counts["listed"]


@pytest.mark.parametrize("how", ["export", "run --export"])
def test_an_export_bucket_that_cannot_be_written_exits_8(s3, few_images, tmp_path, how):
    """An export to a bucket that is missing exited 5 ('the source cannot be used'), where a
    folder that cannot be written exits 8 (tests/test_exit_codes.py): now 8 as well."""
    pool = tmp_path / "pool"
    dest = f"s3://dp-missing-{uuid.uuid4().hex[:8]}/out"
    if how == "export":
        run(few_images, pool, n_samples=2)
        r = run_cli("export", pool, dest)
    else:
        r = run_cli("run", few_images, "--pool", pool, "--n-samples", 2, "--export", dest)
    assert r.returncode == 8, r.stderr
    assert "NoSuchBucket" in r.stderr or "does not exist" in r.stderr, r.stderr
    assert r.stderr.startswith("datapool: error: ") and r.stderr.count("\n") == 1


def test_a_key_that_is_an_absolute_path_is_refused_on_export(s3, new_bucket, bucket, tmp_path):
    name = new_bucket()
    upload(s3, bucket, name, only={"img0.jpg"})
    # "raw//tmp/.../evil.jpg" is a valid S3 key; relative to the prefix "raw/" it is an absolute
    # path, which a naive export would write to.
    evil = tmp_path / "evil.jpg"
    s3.put_object(Bucket=name, Key=f"raw/{evil}", Body=(bucket / "img1.jpg").read_bytes())
    out = tmp_path / "out"
    r = run(f"s3://{name}/raw", tmp_path / "pool", n_samples=5, export=str(out))
    assert str(evil) in r.selected and "img0.jpg" in r.selected
    assert r.export.refused == [{"name": str(evil), "reason": "the name is an absolute path"}]
    assert r.export.written == ["img0.jpg"]
    assert not evil.exists()
    assert sorted(p.name for p in out.rglob("*")) == [
        ".datapool-export-files.json",  # export.RECORD_NAME
        "img0.jpg",
        "selected_filenames.txt",
    ]


def test_export_refuses_an_object_rewritten_since_it_was_selected(
    s3, new_bucket, tmp_path, make_media
):
    """`datapool export` compares each object's ETag and size with the pool's ledger: an object
    rewritten with other bytes of the same size is refused, not exported."""
    from datapool.export import export_pool

    b = same_size_other_bytes(tmp_path, make_media)
    name = new_bucket()
    upload(s3, tmp_path / "a", name)
    pool = tmp_path / "pool"
    assert sorted(run(f"s3://{name}/raw", pool, n_samples=2).selected) == ["x.bmp", "y.bmp"]
    s3.put_object(Bucket=name, Key="raw/x.bmp", Body=b.read_bytes())
    out = tmp_path / "out"
    r = export_pool(pool, str(out))
    assert r.written == ["y.bmp"]
    assert [x["name"] for x in r.refused] == ["x.bmp"]
    assert r.refused[0]["reason"].startswith("changed since it was selected")
    assert not (out / "x.bmp").exists()


# --- the pool in a bucket -------------------------------------------------------------------------


def fetch_s3_pool(s3, bucket_name: str, prefix: str, dest: Path) -> dict:
    """Materialise an S3 pool's files from its manifest into `dest` (what a reader does, written
    from docs/s3.md rather than with datapool's reader): each file is its parts' blobs end to
    end, and each piece of a part is checked against its SHA-256."""
    manifest = json.loads(
        s3.get_object(Bucket=bucket_name, Key=f"{prefix}manifest.json")["Body"].read()
    )
    for name, entry in manifest["files"].items():
        data = b""
        for part in entry["parts"]:
            blob = s3.get_object(Bucket=bucket_name, Key=part["blob"])["Body"].read()
            assert len(blob) == part["size"]
            at = 0
            for sha, size in part["pieces"]:
                assert hashlib.sha256(blob[at : at + size]).hexdigest() == sha, (name, part)
                at += size
            assert at == len(blob)
            data += blob
        assert len(data) == entry["size"]
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return manifest


def test_pool_in_a_bucket_equals_a_local_pool(s3, new_bucket, bucket, tmp_path, make_media):
    name = new_bucket()
    url = f"s3://{name}/pools/main"
    r1 = run(bucket, url)
    assert r1.pool == f"s3://{name}/pools/main/"
    assert r1.report_path == f"s3://{name}/pools/main/runs/0/report.json"
    run(bucket, tmp_path / "local")
    m = fetch_s3_pool(s3, name, "pools/main/", tmp_path / "fetched")
    assert m["generation"] == 1
    a, b = Pool.open(tmp_path / "local"), Pool.open(tmp_path / "fetched")
    assert a.filenames == b.filenames
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-6, rtol=0)
    report = json.loads((tmp_path / "fetched" / "runs/0/report.json").read_text())
    assert report["pool"] == f"s3://{name}/pools/main/"
    assert run(bucket, url).run_index is None  # nothing new: no commit
    make_media(bucket / "new0.jpg", seed=99)
    r2 = run(bucket, url)
    assert (r2.run_index, r2.counts["new"]) == (1, 1)
    m2 = fetch_s3_pool(s3, name, "pools/main/", tmp_path / "fetched2")
    assert m2["generation"] == 2 and "runs/0/report.json" in m2["files"]
    assert len(Pool.open(tmp_path / "fetched2").runs) == 2


def test_status_reads_a_bucket_pool(s3, new_bucket, bucket, tmp_path, make_media):
    name = new_bucket()
    url = f"s3://{name}/pools/st"
    run(bucket, url, n_samples=3)
    make_media(bucket / "new-status.jpg", seed=98)
    run(bucket, url, n_samples=3)
    p = subprocess.run(
        [sys.executable, "-m", "datapool", "status", url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    fetch_s3_pool(s3, name, "pools/st/", tmp_path / "fetched")
    want = Pool.open(tmp_path / "fetched").summary()
    assert got["pool"] == f"{url}/" and got["generation"] == 2
    assert {k: got[k] for k in ("size", "dim", "model", "ledger", "runs")} == {
        k: want[k] for k in ("size", "dim", "model", "ledger", "runs")
    }
    assert [r["tag"] for r in got["runs"]] == ["initial-tag", "run-1"]
    p = subprocess.run(
        [sys.executable, "-m", "datapool", "status", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert f"pool    {url}/: {want['size']} samples" in p.stdout
    assert "(manifest generation 2)" in p.stdout and "run 1   run-1" in p.stdout
    p = subprocess.run(
        [sys.executable, "-m", "datapool", "status", f"s3://{name}/no-pool"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 4 and "Traceback" not in p.stderr
    assert f"s3://{name}/no-pool/ is not a datapool pool (no manifest.json in it)" in p.stderr


def test_report_out_to_a_bucket_is_refused_not_a_local_folder_named_s3(
    s3, new_bucket, few_images, tmp_path, monkeypatch, capsys
):
    """`datapool report` writes a local file: `--out s3://b/r.html` made the folders `s3:/b` in
    the working folder and said it wrote `s3:/b/r.html`."""
    from datapool.cli import main

    name = new_bucket()
    url = f"s3://{name}/pool"
    run(few_images, url, n_samples=2)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["report", url, "--out", f"s3://{name}/r.html"]) == 4
    err = capsys.readouterr().err
    assert err == (
        f"datapool: error: --out s3://{name}/r.html: the page is written to a local file or "
        "folder; write it here and copy it where it should go (aws s3 cp)\n"
    )
    assert not (tmp_path / "s3:").exists()
    assert "r.html" not in keys_of(s3, name)


def test_ls_reads_a_bucket_pool(s3, new_bucket, bucket, tmp_path, make_media):
    name = new_bucket()
    url = f"s3://{name}/pools/ls"
    run(bucket, url, n_samples=3)
    make_media(bucket / "new-ls.jpg", seed=97)
    run(bucket, url, n_samples=2)
    ls = [sys.executable, "-m", "datapool", "ls", url]
    p = subprocess.run([*ls, "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    fetch_s3_pool(s3, name, "pools/ls/", tmp_path / "fetched")
    want = Pool.open(tmp_path / "fetched").samples()
    assert json.loads(p.stdout) == want  # min-distances too, from the runs' reports in the bucket
    assert any(x["min_distance"] is not None for x in want)
    p = subprocess.run([*ls, "--run", "1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "new-ls.jpg" in p.stdout and p.stdout.endswith("1 sample\n"), p.stdout


def test_export_reads_a_bucket_pool(s3, new_bucket, bucket, tmp_path):
    name = new_bucket()
    url = f"s3://{name}/pools/ex"
    run(bucket, url, n_samples=4)
    dest = tmp_path / "exported"
    ex = [sys.executable, "-m", "datapool", "export", url, str(dest), "--all", "--json"]
    p = subprocess.run(ex, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    fetch_s3_pool(s3, name, "pools/ex/", tmp_path / "fetched")
    names = set(Pool.open(tmp_path / "fetched").filenames)
    assert json.loads(p.stdout)["written"] == len(names) == 4
    assert set((dest / "selected_filenames.txt").read_text().split()) == names
    assert all((dest / n).is_file() for n in names)


def rival_commits_first(monkeypatch, new_bucket, tmp_path, make_media, seeds: list[int]):
    """A new bucket pool whose next commit finds that a rival run (over one image per seed) read
    the same pool and committed first. Returns (bucket name, pool url, a list that holds the
    rival's RunResult once it ran). The rival found the lock object gone (the run's lease lost
    to a stall past it, or the rival an older datapool that takes none): the manifest's
    conditional write alone stands between them."""
    from datapool.s3 import store as s3pool

    name = new_bucket()
    url = f"s3://{name}/pool"
    other = tmp_path / "other"
    for i, seed in enumerate(seeds):
        make_media(other / f"o{i + 1}.jpg", seed=seed)
    real_commit = s3pool._commit_manifest
    raced: list = []

    def commit_after_a_rival(pool, manifest, etag):
        if not raced:  # the rival reads the same (empty) pool later and commits first
            raced.append(None)
            pool.client.delete_object(Bucket=pool.bucket, Key=pool.prefix + S3_LOCK_NAME)
            raced[0] = run(other, url, n_samples=len(seeds))
        return real_commit(pool, manifest, etag)

    monkeypatch.setattr(s3pool, "_commit_manifest", commit_after_a_rival)
    return name, url, raced


def test_two_commits_racing_on_a_bucket_pool_one_gets_a_conflict(
    s3, new_bucket, bucket, tmp_path, make_media, monkeypatch
):
    from datapool.s3 import store as s3pool

    name, url, raced = rival_commits_first(monkeypatch, new_bucket, tmp_path, make_media, [50, 51])
    with pytest.raises(s3pool.S3PoolConflictError, match=r"another run committed.*run again"):
        run(bucket, url)
    assert raced and raced[0].run_index == 0
    m = fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    assert m["generation"] == 1
    assert sorted(Pool.open(tmp_path / "fetched").filenames) == ["o1.jpg", "o2.jpg"]


def test_a_bucket_pool_run_exports_only_once_it_has_committed(
    s3, new_bucket, bucket, tmp_path, make_media, monkeypatch
):
    from datapool.s3 import store as s3pool

    real_commit = s3pool._commit_manifest
    _, url, _ = rival_commits_first(monkeypatch, new_bucket, tmp_path, make_media, [52])
    lost = tmp_path / "lost"
    with pytest.raises(s3pool.S3PoolConflictError):
        run(bucket, url, n_samples=3, export=str(lost))
    assert not lost.exists()  # the run that lost the race exported nothing

    monkeypatch.setattr(s3pool, "_commit_manifest", real_commit)
    won = tmp_path / "won"
    r = run(
        bucket, url, n_samples=3, export=str(won), source_moved=True
    )  # the rival's source was first
    assert r.export is not None and r.export.refused == [] and r.export.written == r.selected
    assert [k for k, _, _ in r.selected_sources] and all((won / n).is_file() for n in r.selected)


def test_an_interrupt_is_committed_only_once_the_manifest_is(
    s3, new_bucket, bucket, tmp_path, monkeypatch
):
    """A bucket pool's run writes its blobs first: a Ctrl-C after them, just before the
    manifest is written, must not be reported as committed (the manifest is not); one during the
    export, after the manifest, must be."""
    from datapool import runner
    from datapool.s3 import store as s3pool

    name = new_bucket()
    url = f"s3://{name}/pool"
    real_commit = s3pool._commit_manifest

    def blobs_written_then_interrupted(pool, manifest, etag):
        raise KeyboardInterrupt

    monkeypatch.setattr(s3pool, "_commit_manifest", blobs_written_then_interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        run(bucket, url, n_samples=3)
    assert info.value.pool_committed is False
    assert s3.list_objects_v2(Bucket=name, Prefix="pool/manifest.json")["KeyCount"] == 0
    assert s3.list_objects_v2(Bucket=name, Prefix="pool/blobs/")["KeyCount"] > 0  # orphans
    monkeypatch.setattr(s3pool, "_commit_manifest", real_commit)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "export_selection", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        run(bucket, url, n_samples=3, export=str(tmp_path / "out"))
    assert info.value.pool_committed is True
    assert fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched2")["generation"] == 1


def test_concurrent_runs_on_a_bucket_pool_lose_no_commit(s3, new_bucket, bucket, tmp_path):
    """Two real threads: whatever the interleaving, the manifest's generation counts exactly the
    runs that reported a commit (no lost update), and every other run got a conflict or found
    nothing new."""
    from datapool.s3 import store as s3pool

    name = new_bucket()
    url = f"s3://{name}/pool"
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def worker() -> None:
        barrier.wait()
        try:
            r = run(bucket, url)
            outcomes.append("committed" if r.run_index is not None else "nothing new")
        except s3pool.S3PoolConflictError:
            outcomes.append("conflict")
        except datapool.PoolLockedError:  # the lock object: the other run holds it
            outcomes.append("locked")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(outcomes) == 2 and "committed" in outcomes
    m = fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    assert m["generation"] == outcomes.count("committed")


# --- a bucket pool on a server without conditional writes: a lock object with a lease ---------------

LOCK_KEY = "pool/.datapool-lock.json"


@pytest.fixture
def no_conditional_writes(s3_env) -> Iterator[FaultProxy]:
    """A proxy in front of moto that strips If-None-Match and If-Match: a server that ignores
    conditional writes, as some S3-compatible stores do."""
    with FaultProxy(s3_env, seed=0, p=0.0, drop_headers=("If-None-Match", "If-Match")) as proxy:
        yield proxy


@pytest.fixture
def short_settle(monkeypatch) -> None:
    from datapool.s3 import lease as s3lease

    monkeypatch.setattr(s3lease, "SETTLE_S", 0.5)


@pytest.fixture
def few_images(tmp_path, make_media) -> Path:
    root = tmp_path / "few"
    for i in range(4):
        make_media(root / f"f{i}.jpg", seed=60 + i)
    return root


@pytest.fixture
def datapool_warnings() -> Iterator[list[str]]:
    """The warnings of the `datapool` logger (attached to it directly: the CLI's handler, once
    installed in this process, stops propagation to the root logger that caplog watches)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger, handler = logging.getLogger("datapool"), Keep(logging.WARNING)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.WARNING, logging.WARNING))
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


def plant_lock(s3, bucket_name: str, expires_in: float) -> bytes:
    body = json.dumps(
        {
            "owner": "feedface" + "0" * 24,
            "host": "other-host",
            "pid": 4242,
            "acquired_at": 0,
            "expires_at": time.time() + expires_in,
            "lease_s": 300,
        }
    ).encode()
    s3.put_object(Bucket=bucket_name, Key=LOCK_KEY, Body=body)
    return body


def cli_run(source, pool: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`datapool run SOURCE --pool POOL --n-samples 2 EXTRA...` in a child process."""
    args = cli_args(source, pool, "--n-samples", 2, *extra)
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def keys_of(s3, bucket_name: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name).get("Contents", [])}


def test_the_lock_lease_is_a_checked_setting():
    with pytest.raises(datapool.ConfigError, match=r"s3_lock_lease_s must be .* in 1\.\.86400"):
        RunConfig(n_samples=1, s3_lock_lease_s=0.5)
    assert "s3_lock_lease_s" not in RunConfig(n_samples=1, s3_lock_lease_s=60).to_json()


def test_without_conditional_writes_a_run_commits_under_a_renewed_lease(
    s3,
    new_bucket,
    few_images,
    tmp_path,
    monkeypatch,
    make_media,
    no_conditional_writes,
    short_settle,
    datapool_warnings,
):
    from datapool import _testhooks

    name = new_bucket()
    # The run pauses 3 s after selecting, longer than its 2 s lease: it commits only if the
    # background thread renewed the lease meanwhile.
    monkeypatch.setenv("DATAPOOL_TEST_PAUSE_AT", "selected")
    monkeypatch.setenv("DATAPOOL_TEST_PAUSE_S", "3")
    monkeypatch.setattr(_testhooks, "_state", None)
    monkeypatch.setattr(_testhooks, "_hits", 0)
    r = run(
        few_images,
        f"s3://{name}/pool",
        n_samples=2,
        s3_lock_lease_s=2.0,
        s3_endpoint_url=no_conditional_writes.url,
    )
    assert r.run_index == 0 and len(r.selected) == 2
    assert "does not support conditional writes" in r.warnings[0]
    assert "lock object with a lease" in r.warnings[0]
    assert datapool_warnings == r.warnings
    lock_puts = no_conditional_writes.seen.count(("PUT", f"/{name}/{LOCK_KEY}"))
    assert lock_puts >= 3, f"the lease was written {lock_puts} times: not renewed"
    assert LOCK_KEY not in keys_of(s3, name)  # released at the end
    assert not any(".datapool-probe-" in k for k in keys_of(s3, name))
    m = fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    assert m["generation"] == 1
    assert sorted(Pool.open(tmp_path / "fetched").filenames) == sorted(r.selected)
    report = json.loads((tmp_path / "fetched" / "runs/0/report.json").read_text())
    assert report["warnings"] == r.warnings
    # A second commit under the lease: the manifest's ETag is checked, not trusted.
    make_media(few_images / "f9.jpg", seed=69)
    r2 = run(
        few_images, f"s3://{name}/pool", n_samples=2, s3_endpoint_url=no_conditional_writes.url
    )
    assert (r2.run_index, r2.counts["new"]) == (1, 1)
    assert fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched2")["generation"] == 2
    assert LOCK_KEY not in keys_of(s3, name)


def test_a_held_lock_object_stops_a_run_at_once_naming_its_holder(
    s3, new_bucket, few_images, no_conditional_writes
):
    name = new_bucket()
    body = plant_lock(s3, name, expires_in=600)
    p = cli_run(few_images, f"s3://{name}/pool", "--s3-endpoint-url", no_conditional_writes.url)
    assert p.returncode == 3, p.stderr
    assert "datapool: warning: the S3 server at" in p.stderr
    assert "does not support conditional writes" in p.stderr
    assert "datapool: error: the pool" in p.stderr
    assert "locked by another datapool run: pid 4242 on other-host (token feedface)" in p.stderr
    assert " s from now)" in p.stderr and "until 20" in p.stderr
    # The holder's lock object is untouched; nothing else was written.
    assert s3.get_object(Bucket=name, Key=LOCK_KEY)["Body"].read() == body
    assert keys_of(s3, name) == {LOCK_KEY}


def test_an_expired_lock_object_is_taken_over_with_a_warning(
    s3, new_bucket, few_images, tmp_path, no_conditional_writes, short_settle, datapool_warnings
):
    name = new_bucket()
    plant_lock(s3, name, expires_in=-30)
    r = run(few_images, f"s3://{name}/pool", n_samples=2, s3_endpoint_url=no_conditional_writes.url)
    assert r.run_index == 0
    took = [w for w in r.warnings if w.startswith("took over the expired lock")]
    assert len(took) == 1 and "pid 4242 on other-host" in took[0] and "s ago" in took[0]
    assert took[0] in datapool_warnings
    assert LOCK_KEY not in keys_of(s3, name)
    m = fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    assert m["generation"] == 1
    report = json.loads((tmp_path / "fetched" / "runs/0/report.json").read_text())
    assert took[0] in report["warnings"]
    # Nothing new: no commit, and the lock is released all the same.
    r2 = run(
        few_images, f"s3://{name}/pool", n_samples=2, s3_endpoint_url=no_conditional_writes.url
    )
    assert r2.run_index is None and "does not support conditional writes" in r2.warnings[0]
    assert not any(w.startswith("took over") for w in r2.warnings)
    assert LOCK_KEY not in keys_of(s3, name)


def test_a_rival_writing_the_lock_during_the_settle_delay_wins(s3, new_bucket, s3_env):
    """The read-back: run A writes its lock object; a rival that found the lock free too writes
    its own before A reads back. A must stop (the last writer holds the lock), and must not delete
    the rival's lock object."""
    from datapool.s3.blobs import BucketPool
    from datapool.s3.lease import S3Lease

    name = new_bucket()
    pool = BucketPool(f"s3://{name}/pool")
    lease = S3Lease(pool.client, pool.bucket, pool.prefix, pool.url, 60.0, pool._fail, settle_s=1.5)
    rival: list[bytes] = []

    def write_after_a() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                body = s3.get_object(Bucket=name, Key=LOCK_KEY)["Body"].read()
            except s3.exceptions.NoSuchKey:
                time.sleep(0.01)
                continue
            if lease.token.encode() in body:
                rival.append(plant_lock(s3, name, expires_in=60))
                return

    t = threading.Thread(target=write_after_a)
    t.start()
    try:
        with pytest.raises(
            datapool.PoolLockedError,
            match=r"locked by another datapool run at the same time \(pid 4242 ",
        ):
            lease.acquire()
    finally:
        t.join()
        lease.release()
    assert rival and s3.get_object(Bucket=name, Key=LOCK_KEY)["Body"].read() == rival[0]


def test_a_manifest_changed_under_a_held_lease_is_not_overwritten(
    s3, new_bucket, few_images, no_conditional_writes, short_settle, monkeypatch
):
    """A rival that committed although this run held the lease (it overwrote the lock object while
    stalled, say): the manifest's ETag no longer matches, and this run does not write over it."""
    from datapool.s3 import store as s3pool

    name = new_bucket()
    rival = b'{"format_version": 1, "generation": 1, "files": {}}\n'
    real = s3pool._commit_under_lease

    def rival_commits_first(pool, manifest, etag, lease):
        s3.put_object(Bucket=name, Key="pool/manifest.json", Body=rival)
        return real(pool, manifest, etag, lease)

    monkeypatch.setattr(s3pool, "_commit_under_lease", rival_commits_first)
    with pytest.raises(s3pool.S3PoolConflictError, match="although this run held its lock"):
        run(few_images, f"s3://{name}/pool", n_samples=2, s3_endpoint_url=no_conditional_writes.url)
    assert s3.get_object(Bucket=name, Key="pool/manifest.json")["Body"].read() == rival
    assert LOCK_KEY not in keys_of(s3, name)


def test_two_concurrent_runs_under_a_lease_exactly_one_commits(
    s3, new_bucket, few_images, tmp_path, no_conditional_writes, short_settle
):
    from datapool.s3 import store as s3pool

    name = new_bucket()
    url = f"s3://{name}/pool"
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def worker(me: str) -> None:
        barrier.wait()
        try:
            outcomes[me] = run(
                few_images, url, n_samples=2, s3_endpoint_url=no_conditional_writes.url
            )
        except s3pool.S3PoolConflictError as e:
            outcomes[me] = ("conflict", str(e))
        except datapool.PoolLockedError as e:
            outcomes[me] = ("locked", str(e))

    threads = [threading.Thread(target=worker, args=(me,)) for me in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    committed = [o for o in outcomes.values() if isinstance(o, datapool.RunResult)]
    refused = [o for o in outcomes.values() if isinstance(o, tuple)]
    assert len(committed) == 1 and len(refused) == 1, outcomes
    assert committed[0].run_index == 0
    assert "locked by another datapool run" in refused[0][1] or refused[0][0] == "conflict"
    assert LOCK_KEY not in keys_of(s3, name)
    # The pool is what one run alone makes.
    m = fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    assert m["generation"] == 1
    alone = run(few_images, tmp_path / "alone", n_samples=2)
    a, b = Pool.open(tmp_path / "alone"), Pool.open(tmp_path / "fetched")
    assert a.filenames == b.filenames == alone.selected
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-6, rtol=0)
    assert len(b.runs) == 1


# --- the lock object on a server with conditional writes: a second run stops at once -------------


def test_with_conditional_writes_a_held_lock_stops_a_second_run_at_once(s3, new_bucket, few_images):
    """Before, the second run did all its work and then lost the commit (exit 3 after the
    decode and embed); the lock object, written with If-None-Match, stops it first."""
    name = new_bucket()
    body = plant_lock(s3, name, expires_in=600)
    p = cli_run(few_images, f"s3://{name}/pool", "--no-progress", "--verbose")
    assert p.returncode == 3, p.stderr
    assert "does not support conditional writes" not in p.stderr
    assert "locked by another datapool run: pid 4242 on other-host (token feedface)" in p.stderr
    assert "decode" not in p.stderr.split("locked by another")[0]  # no work was done
    assert s3.get_object(Bucket=name, Key=LOCK_KEY)["Body"].read() == body
    assert keys_of(s3, name) == {LOCK_KEY}


def test_with_conditional_writes_the_lock_is_released_and_an_expired_one_taken_over(
    s3, new_bucket, few_images, make_media
):
    name = new_bucket()
    url = f"s3://{name}/pool"
    assert run(few_images, url, n_samples=2).warnings == []
    assert LOCK_KEY not in keys_of(s3, name)  # released
    plant_lock(s3, name, expires_in=-30)
    make_media(few_images / "f9.jpg", seed=69)
    r = run(few_images, url, n_samples=2)
    took = [w for w in r.warnings if w.startswith("took over the expired lock")]
    assert r.run_index == 1 and len(took) == 1 and "pid 4242 on other-host" in took[0]
    assert LOCK_KEY not in keys_of(s3, name)


def test_a_lock_left_by_a_killed_run_on_this_host_is_taken_over_at_once(s3, new_bucket, few_images):
    """A run killed with SIGKILL never deletes its lock object; on this host its process id
    is gone, so the next run need not wait for the lease to expire."""
    import socket

    name = new_bucket()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {
        "owner": "deadbeef" + "0" * 24,
        "host": socket.gethostname(),
        "pid": dead.pid,
        "acquired_at": time.time(),
        "expires_at": time.time() + 600,
        "lease_s": 300,
    }
    s3.put_object(Bucket=name, Key=LOCK_KEY, Body=json.dumps(record).encode())
    r = run(few_images, f"s3://{name}/pool", n_samples=2)
    took = [w for w in r.warnings if "that process is gone from this host" in w]
    assert r.run_index == 0 and len(took) == 1 and f"pid {dead.pid}" in took[0]
    assert LOCK_KEY not in keys_of(s3, name)


def test_the_summary_of_a_bucket_pool_run_does_not_say_its_page_opens_from_disk(
    new_bucket, few_images
):
    name = new_bucket()
    p = cli_run(few_images, f"s3://{name}/pool", "--no-progress")
    assert p.returncode == 0, p.stderr
    (page,) = [line for line in p.stdout.splitlines() if line.startswith("page ")]
    assert f"s3://{name}/pool/runs/0/report.html" in page and "opens from disk" not in page
    assert f"`datapool report s3://{name}/pool/` writes the pool's page here" in page


def test_a_pool_bucket_that_cannot_be_used_exits_8_not_as_the_source(s3, bucket, tmp_path):
    """A missing pool bucket is the pool's fault (exit 8), not the source's (exit 5): a script
    that retries on a flaky source must not also retry a pool it can never write."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "datapool", *args], capture_output=True, text=True, timeout=300
        )

    into_missing = cli(
        "run", str(bucket), "--pool", "s3://dp-no-such-pool-bucket/p", "--n-samples", "2"
    )
    status_missing = cli("status", "s3://dp-no-such-pool-bucket/p")
    from_missing = cli(
        "run", "s3://dp-no-such-bucket/raw", "--pool", str(tmp_path / "p"), "--n-samples", "2"
    )
    for p, code in ((into_missing, 8), (status_missing, 8), (from_missing, 5)):
        assert p.returncode == code, p.stderr
        assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert "NoSuchBucket" in from_missing.stderr
    # The pool's bucket is named with what to do (it said "probing conditional writes under
    # s3://.../p/ ... failed: NoSuchBucket (HTTP 404)" and no more): create it, or check its name.
    gone = "the S3 bucket 'dp-no-such-pool-bucket' does not exist (endpoint "
    fix = "check its name and the endpoint (--s3-endpoint-url, AWS_ENDPOINT_URL)"
    assert gone in into_missing.stderr, into_missing.stderr
    assert (
        f"create it first (aws s3 mb s3://dp-no-such-pool-bucket) or {fix}" in into_missing.stderr
    )
    for args in (["status"], ["ls"], ["verify"], ["rm", "--run", "0"], ["undo"]):
        p = cli(*args[:1], "s3://dp-no-such-pool-bucket/p", *args[1:])
        assert p.returncode == 8 and gone in p.stderr and p.stderr.rstrip().endswith(fix), p.stderr
