"""`datapool merge` with pools in S3 (moto over HTTP): A, B and --into may each be a folder or
s3://bucket/prefix. The merged pool is the pool a merge of the same pools in folders makes, byte
for byte (runs.json names where the pools were); --into s3:// is one commit (a killed merge
leaves no pool); the merged pool grows, shows, verifies, lists and exports as any pool in S3."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import datapool
from datapool.cli import main
from datapool.media import write_image
from datapool.pool.layout import S3_LOCK_NAME, S3_MANIFEST
from datapool.pool.store import open_store

from . import test_s3
from ._robust import Proc
from ._s3 import S3_FIXTURES
from .conftest import PACKAGE_PATH, scene

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES
no_conditional_writes, short_settle = test_s3.no_conditional_writes, test_s3.short_settle


def download(url: str, folder: Path) -> dict[str, bytes]:
    """Every committed file of the pool at `url` but its history, as the manifest names them,
    written under `folder` too (a folder pool of the same files)."""
    store = open_store(url)
    manifest, _ = store.objects.require_manifest()
    out = {}
    for name in sorted(manifest.files):
        if not name.startswith("history/"):
            out[name] = store.read(name) or b""
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(out[name])
    return out


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")
    }


def images(folder: Path, seeds: list[int], names: str = "img") -> Path:
    for i, seed in enumerate(seeds):
        write_image(folder / f"{names}{i}.jpg", scene(seed))
    return folder


@pytest.fixture
def s3_pools(tmp_path, s3_env, new_bucket, request):
    """Pools A (`.../day`, two runs, the second keeping history) and B (`.../night`) in one
    bucket: grown from one source (`same`) or from two whose file names clash (`other`)."""
    day = images(tmp_path / "day", [701, 702, 703, 704])
    bucket = new_bucket()
    a, b = f"s3://{bucket}/pools/day", f"s3://{bucket}/pools/night"
    datapool.run(day, a, n_samples=2, progress=False)
    images(day, [705, 706], names="late")
    datapool.run(day, a, n_samples=2, progress=False, keep_history=True)
    night = day if request.param == "same" else images(tmp_path / "night", [711, 712, 713])
    datapool.run(night, b, n_samples=3, progress=False)
    return bucket, a, b, day


def same_pool(merged: dict[str, bytes], local: dict[str, bytes], names: dict[str, str]) -> None:
    """The merged pools hold the same files with the same bytes; runs.json differs only in
    where the pools merged came from (`names`: each local folder -> its pool's URL)."""
    assert merged.keys() == local.keys()
    for name in merged:
        if name == "runs.json":
            text = local[name].decode()
            for folder, url in names.items():
                text = text.replace(folder + "/", url).replace(folder, url)
            assert json.loads(merged[name]) == json.loads(text)
        else:
            assert merged[name] == local[name], name


@pytest.mark.parametrize("s3_pools", ["same", "other"], indirect=True)
def test_merging_pools_in_s3_makes_the_pool_a_local_merge_makes(tmp_path, capsys, s3_pools):
    bucket, a, b, _ = s3_pools
    local_a, local_b = tmp_path / "dl" / "day", tmp_path / "dl" / "night"
    download(a, local_a), download(b, local_b)
    names = {str(local_a): f"{a}/", str(local_b): f"{b}/"}
    before = {url: download(url, tmp_path / "before" / url[5:]) for url in (a, b)}
    rc = main(["merge", a, b, "--into", f"s3://{bucket}/merged"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"-> s3://{bucket}/merged/" in out, out
    datapool.merge(local_a, local_b, tmp_path / "local")
    merged = download(f"s3://{bucket}/merged", tmp_path / "got")
    same_pool(merged, files_of(tmp_path / "local"), names)
    assert json.loads(merged["runs.json"])["runs"][0]["merged_from"]["pool"] == f"{a}/"
    # A and B are as they were, and hold no lock object.
    assert {url: download(url, tmp_path / "after" / url[5:]) for url in (a, b)} == before
    assert not [k for k in keys(bucket) if k.endswith(S3_LOCK_NAME)]
    # --reselect, and a mix: A in S3, B a folder, C a folder.
    datapool.merge(a, local_b, tmp_path / "mixed", reselect=3)
    datapool.merge(local_a, local_b, tmp_path / "mixed-local", reselect=3)
    local = files_of(tmp_path / "mixed-local")
    same_pool(files_of(tmp_path / "mixed"), local, {str(local_a): f"{a}/"})
    assert main(["merge", a, b, "--into", f"s3://{bucket}/re", "--reselect", "3"]) == 0
    same_pool(download(f"s3://{bucket}/re", tmp_path / "re"), local, names)


@pytest.mark.parametrize("s3_pools", ["same"], indirect=True)
def test_a_merged_pool_in_s3_grows_shows_verifies_lists_and_exports(tmp_path, capsys, s3_pools):
    from datapool.export import export_pool

    bucket, a, b, day = s3_pools
    c = f"s3://{bucket}/merged"
    assert main(["merge", a, b, "--into", c, "--json"]) == 0
    size = json.loads(capsys.readouterr().out)["size"]
    # This machine's copy of C is written with the commit: a first run downloads the manifest.
    assert (open_store(c).cache().pool_dir / "datapool_latest.csv").is_file()
    assert main(["status", c]) == 0 and "runs" in capsys.readouterr().out
    assert main(["verify", c]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["ls", c, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == size
    got = export_pool(c, str(tmp_path / "out"), all_runs=True)
    assert got.refused == [] and len(got.written) == size
    write_image(day / "new0.jpg", scene(720))
    r = datapool.run(day, c, n_samples=1, progress=False)
    assert r.counts["new"] == 1 and r.counts.get("changed", 0) == 0, r.counts
    assert len(open_store(c).pool()) == size + 1


def keys(bucket: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.parametrize("s3_pools", ["other"], indirect=True)
def test_a_merge_into_s3_killed_before_its_manifest_leaves_no_pool(tmp_path, capsys, s3_pools):
    """SIGKILL after every blob is written, before the manifest: no pool under the prefix (what
    is there is blobs and the dead process's lock object); merging again makes it whole."""
    bucket, a, b, _ = s3_pools
    c = f"s3://{bucket}/merged"
    p = Proc(
        [sys.executable, "-m", "datapool", "merge", a, b, "--into", c],
        DATAPOOL_TEST_PAUSE_AT="s3-blobs-written",
        PYTHONPATH=PACKAGE_PATH,
    )
    p.wait_for("datapool-test: paused at")
    p.kill()
    left = [k for k in keys(bucket) if k.startswith("merged/")]
    assert f"merged/{S3_MANIFEST}" not in left
    assert any(k.startswith("merged/blobs/") for k in left), left
    assert main(["ls", c]) != 0
    capsys.readouterr()
    assert main(["merge", a, b, "--into", c]) == 0, capsys.readouterr()
    datapool.merge(a, b, f"s3://{bucket}/fresh")
    whole = download(c, tmp_path / "c")
    assert whole == download(f"s3://{bucket}/fresh", tmp_path / "fresh")
    assert main(["verify", c]) == 0


@pytest.mark.parametrize("s3_pools", ["other"], indirect=True)
def test_merge_with_s3_says_what_is_wrong_with_which_argument(tmp_path, capsys, s3, s3_pools):
    bucket, a, b, _ = s3_pools
    c = f"s3://{bucket}/merged"

    def fails(*args: str) -> tuple[int, str]:
        # -q: errors only (a merge that reads for 5 s under load prints progress lines first)
        rc = main(["merge", *args, "-q"])
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
        return rc, err

    rc, err = fails("s3://no-such-dp-bucket/a", b, "--into", c)
    assert rc == 8 and err.startswith("datapool: error: A: the S3 bucket 'no-such-dp-bucket' "), err
    assert "check its name and the endpoint (--s3-endpoint-url" in err
    rc, err = fails(a, b, "--into", "s3://no-such-dp-bucket/c")
    assert rc == 8 and "--into: the S3 bucket 'no-such-dp-bucket' does not exist" in err, err
    assert "create it first (aws s3 mb s3://no-such-dp-bucket)" in err
    rc, err = fails(a, f"s3://{bucket}/pools", "--into", c)
    assert rc == 4 and f"B: s3://{bucket}/pools/ is not a datapool pool" in err, err
    s3.put_object(Bucket=bucket, Key="taken/x.jpg", Body=b"x")
    rc, err = fails(a, b, "--into", f"s3://{bucket}/taken")
    assert rc == 4 and f"--into: s3://{bucket}/taken/ is not empty (x.jpg)" in err, err
    rc, err = fails(a, b, "--into", b)
    assert rc == 4 and f"--into: {b}/ holds a pool already" in err, err
    rc, err = fails(a, b, "--into", f"{a}/inner")
    assert rc == 4 and "is inside pool A" in err, err
    rc, err = fails(a, a + "/", "--into", c)
    assert rc == 4 and "with itself" in err, err
    # A run holds B: refused as a folder's lock refuses it (exit 3), and B's lock left alone.
    lock = {"owner": "f" * 32, "host": "other-host", "pid": 4242, "acquired_at": 0}
    body = json.dumps({**lock, "expires_at": 4e9, "lease_s": 300}).encode()
    s3.put_object(Bucket=bucket, Key=f"pools/night/{S3_LOCK_NAME}", Body=body)
    rc, err = fails(a, b, "--into", c)
    assert rc == 3 and "B: the pool" in err and "pid 4242 on other-host" in err, err
    assert s3.get_object(Bucket=bucket, Key=f"pools/night/{S3_LOCK_NAME}")["Body"].read() == body
    s3.delete_object(Bucket=bucket, Key=f"pools/night/{S3_LOCK_NAME}")
    assert not [k for k in keys(bucket) if k.startswith("merged/")]


def test_merge_with_s3_and_no_credentials_says_so_naming_the_argument(
    tmp_path, capsys, monkeypatch, s3_env, new_bucket
):
    bucket = new_bucket()
    pool = tmp_path / "pool"
    datapool.run(images(tmp_path / "src", [731, 732]), pool, n_samples=1, progress=False)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    rc = main(["merge", f"s3://{bucket}/a", str(pool), "--into", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 8 and err.count("\n") == 1, err
    assert err.startswith("datapool: error: A: ") and "no usable AWS credentials found" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("s3_pools", ["other"], indirect=True)
def test_a_merge_into_s3_commits_under_a_lease_where_the_server_ignores_conditions(
    tmp_path, capsys, s3, s3_pools, no_conditional_writes, short_settle
):
    """Through --s3-endpoint-url, a server that ignores If-None-Match: C is committed under the
    prefix's lock object (s3/lease.py), as a run's commit is, with the run's warning."""
    bucket, a, b, _ = s3_pools
    c = f"s3://{bucket}/merged"
    rc = main(["merge", a, b, "--into", c, "--s3-endpoint-url", no_conditional_writes.url])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "does not support conditional writes" in err, err
    assert ("PUT", f"/{bucket}/merged/{S3_LOCK_NAME}") in no_conditional_writes.seen
    assert not [k for k in keys(bucket) if k.endswith(S3_LOCK_NAME)]  # released
    assert download(c, tmp_path / "c") == download(c, tmp_path / "again")
    assert len(open_store(c).pool()) == len(open_store(a).pool()) + len(open_store(b).pool())
