"""The pool in a bucket at O(new): what a commit uploads, what a session downloads, the local
copy, history snapshots, and `datapool gc`. Against moto over HTTP, through the counting proxy of
tests/test_s3.py (FaultProxy with no faults)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datapool
from datapool import Pool
from datapool.config import S3Settings
from datapool.fingerprint import ModelFingerprint
from datapool.media import write_image
from datapool.naming import run_tag
from datapool.pool import csvfile
from datapool.pool.layout import is_local_state
from datapool.pool.ledger import empty_ledger
from datapool.pool.store import PoolUpdate, collect_garbage
from datapool.s3 import blobs
from datapool.s3.store import S3PoolConflictError, S3Store

from . import test_s3
from ._s3 import S3_FIXTURES
from .conftest import run_cli, scene
from .test_s3 import FaultProxy, fetch_s3_pool, keys_of, rival_commits_first, run

# The S3 fixtures of tests/test_s3.py (a moto server of this module's own).
moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES
few_images = test_s3.few_images


def manifest_of(s3, name: str, prefix: str = "pool/") -> dict:
    return json.loads(s3.get_object(Bucket=name, Key=f"{prefix}manifest.json")["Body"].read())


# --- commits through the store, with synthetic rows ------------------------------------------------


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic_update(pool: Pool, names: list[str], emb: np.ndarray) -> PoolUpdate:
    """What a run that selected every one of `names` (one image each) would commit."""
    index, dim = len(pool.runs), emb.shape[1]
    dtypes = empty_ledger().dtypes
    columns = {
        "key": names,
        "size": [1] * len(names),
        "mtime_ns": [0] * len(names),
        "run": [index] * len(names),
        "status": ["ok"] * len(names),
        "n_samples": [1] * len(names),
        "n_selected": [1] * len(names),
        "etag": [""] * len(names),
    }
    ledger_rows = pd.DataFrame({c: pd.Series(v, dtype=dtypes[c]) for c, v in columns.items()})
    return PoolUpdate(
        run={"index": index, "tag": run_tag(index), "counts": {"selected": len(names)}},
        model=ModelFingerprint("synthetic", "0" * 64, (8, 8), dim),
        new_names=names,
        new_embeddings=emb,
        new_labels=np.full(len(names), index, np.int64),
        keep=np.ones(len(pool), bool),
        ledger_rows=ledger_rows,
        report={"index": index},
        view=b"\x89PNG not really",
    )


def commit_rows(url: str, names: list[str], emb: np.ndarray, endpoint: str | None = None) -> int:
    """Commit `names` as one run through S3Store; the pool's size after it."""
    with S3Store(url, S3Settings(endpoint_url=endpoint)).session() as session:
        return session.commit(synthetic_update(session.pool, names, emb)).pool_size


def expected_csv(names: list[str], emb: np.ndarray, labels: np.ndarray) -> bytes:
    return csvfile.format_csv(names, emb, labels).encode()


def test_a_run_that_adds_100_rows_to_a_20k_row_pool_uploads_under_5_percent_of_the_csv(
    s3_env, s3, new_bucket, tmp_path, monkeypatch
):
    name = new_bucket()
    url = f"s3://{name}/pool"
    rng = np.random.default_rng(5)
    seed_names, new_names = (
        [f"seed/{i:06d}.jpg" for i in range(20000)],
        [f"new/{i}.jpg" for i in range(100)],
    )
    seed, new = unit_rows(rng, 20000, 64), unit_rows(rng, 100, 64)
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        commit_rows(url, seed_names, seed, proxy.url)
        csv_bytes = manifest_of(s3, name)["files"]["datapool_latest.csv"]["size"]
        assert csv_bytes > blobs.MIN_PART  # the server-side append's path, not the small-file one
        proxy.reset()
        assert commit_rows(url, new_names, new, proxy.url) == 20100
        uploaded = proxy.uploaded()
        # The session read the pool from this machine's copy: no blob was downloaded.
        assert proxy.downloaded("/blobs/") == 0
        assert any("uploadId=" in p and m == "PUT" for m, p, *_ in proxy.traffic)  # parts
    assert uploaded < 0.05 * csv_bytes, (uploaded, csv_bytes)

    # The CSV is one object, byte for byte the CSV of all the rows: Lightly's format as it is.
    entry = manifest_of(s3, name)["files"]["datapool_latest.csv"]
    assert len(entry["parts"]) == 1 and len(entry["parts"][0]["pieces"]) == 2
    blob = s3.get_object(Bucket=name, Key=entry["parts"][0]["blob"])["Body"].read()
    labels = np.r_[np.zeros(20000, np.int64), np.ones(100, np.int64)]
    assert blob == expected_csv(seed_names + new_names, np.r_[seed, new], labels)
    # The ledger, under 5 MiB, got a second part with the new rows only.
    ledger = manifest_of(s3, name)["files"]["ledger.csv"]
    assert len(ledger["parts"]) == 2 and ledger["parts"][1]["size"] < 10_000

    # Another machine (its own, empty copy) downloads the pool once; then, after a commit made
    # elsewhere, only the appended bytes (ranged GETs, checked piece by piece).
    monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "other-machine"))
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        store = S3Store(url, S3Settings(endpoint_url=proxy.url))
        assert store.summary()["size"] == 20100
        assert proxy.downloaded("/blobs/") > csv_bytes
        monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "datapool-cache"))
        commit_rows(url, [f"more/{i}.jpg" for i in range(100)], unit_rows(rng, 100, 64), proxy.url)
        monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "other-machine"))
        proxy.reset()
        summary = store.summary()
        assert summary["size"] == 20200 and summary["generation"] == 3
        assert 0 < proxy.downloaded("/blobs/") < 0.05 * csv_bytes
        assert any(rng_header for m, p, rng_header, *_ in proxy.traffic if "/blobs/" in p)
    copy = Path(summary["local_copy"])
    fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    for f in ("datapool_latest.csv", "ledger.csv", "runs.json", "model.json"):
        assert (copy / f).read_bytes() == (tmp_path / "fetched" / f).read_bytes(), f


def test_small_files_grow_by_parts_and_are_written_whole_past_max_parts(
    s3_env, s3, new_bucket, tmp_path, monkeypatch
):
    monkeypatch.setattr(blobs, "MAX_PARTS", 3)
    name = new_bucket()
    url = f"s3://{name}/pool"
    rng = np.random.default_rng(6)
    names: list[str] = []
    rows = np.zeros((0, 8), np.float32)
    labels = np.zeros(0, np.int64)
    stale = tmp_path / "stale-machine"
    for run_index in range(6):
        batch = [f"r{run_index}/{i}.jpg" for i in range(7)]
        emb = unit_rows(rng, 7, 8)
        commit_rows(url, batch, emb)
        names += batch
        rows, labels = np.r_[rows, emb], np.r_[labels, np.full(7, run_index)]
        files = manifest_of(s3, name)["files"]
        assert len(files["datapool_latest.csv"]["parts"]) == run_index % 3 + 1
        fetched = tmp_path / f"fetched{run_index}"
        fetch_s3_pool(s3, name, "pool/", fetched)
        assert (fetched / "datapool_latest.csv").read_bytes() == expected_csv(names, rows, labels)
        if run_index == 1:  # a machine that last synced here, then catches up at the end
            monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(stale))
            S3Store(url).summary()
            monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "datapool-cache"))
    monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(stale))
    assert S3Store(url).summary()["size"] == 42
    assert Pool.open(next(stale.glob("s3/*/pool"))).filenames == names


# --- runs ------------------------------------------------------------------------------------------


def test_no_cache_lock_or_journal_file_is_ever_in_the_bucket(
    s3, new_bucket, few_images, make_media, tmp_path
):
    name = new_bucket()
    url = f"s3://{name}/pool"
    run(few_images, url, n_samples=2)
    make_media(few_images / "f7.jpg", seed=67)
    r = run(few_images, url, n_samples=2)
    assert r.run_index == 1
    keys = sorted(keys_of(s3, name))  # every object in the bucket
    assert keys and all(k.startswith("pool/") for k in keys)
    for key in keys:
        rel = key.removeprefix("pool/")
        assert not is_local_state(rel), key
        assert not any(part in key for part in (".sidecar", ".journal", ".lock", ".pending")), key
    files = manifest_of(s3, name)["files"]
    assert not [n for n in files if is_local_state(n)]
    assert set(files) == {
        "datapool_latest.csv",
        "ledger.csv",
        "runs.json",
        "model.json",
        *(
            f"runs/{i}/{f}"
            for i in (0, 1)
            for f in ("report.json", "embedding_view.png", "report.html", "thumbnails.bin")
        ),
    }
    assert {k for k in keys if not k.startswith("pool/blobs/")} == {"pool/manifest.json"}
    # The caches are on this machine: the sidecar beside the local copy of the CSV.
    cache = Path(os.environ["DATAPOOL_CACHE_DIR"])
    assert list(cache.glob("s3/*/pool/.sidecar/embeddings.f32"))


def test_the_second_run_on_an_unchanged_pool_downloads_only_the_manifest(
    s3_env, s3, new_bucket, few_images, make_media, tmp_path, monkeypatch
):
    name = new_bucket()
    url = f"s3://{name}/pool"
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        run(few_images, url, n_samples=2, s3_endpoint_url=proxy.url)
        proxy.reset()
        again = run(few_images, url, n_samples=2, s3_endpoint_url=proxy.url)
        assert again.run_index is None
        gets = [p.split("?")[0] for m, p, *_ in proxy.traffic if m == "GET"]
        assert gets == [f"/{name}/pool/manifest.json"]

        # Another machine commits (its own copy): this machine's copy is stale, and is not
        # served as the pool. Only what changed is fetched; the CSV's first part is not.
        first_csv = manifest_of(s3, name)["files"]["datapool_latest.csv"]["parts"][0]["blob"]
        monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "other-machine"))
        make_media(few_images / "f8.jpg", seed=68)
        other = run(few_images, url, n_samples=2, s3_endpoint_url=proxy.url)
        assert other.run_index == 1
        monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "datapool-cache"))
        proxy.reset()
        mine = run(few_images, url, n_samples=2, s3_endpoint_url=proxy.url)
        assert mine.run_index is None  # f8.jpg is in the pool's ledger now: nothing new
        assert (mine.counts["unchanged"], mine.counts["pool_size"]) == (
            5,
            other.counts["pool_size"],
        )
        gets = [p.split("?")[0] for m, p, *_ in proxy.traffic if m == "GET"]
        assert f"/{name}/{first_csv}" not in gets

        # A rewrite elsewhere (--process-all) is not an extension: fetched whole, and read right.
        monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "other-machine"))
        rebuilt = run(few_images, url, n_samples=1, process_all=True, s3_endpoint_url=proxy.url)
        monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "datapool-cache"))
        summary = S3Store(url, S3Settings(endpoint_url=proxy.url)).summary()
    assert summary["size"] == rebuilt.counts["pool_size"] == 1
    assert [r["tag"] for r in summary["runs"]] == ["initial-tag"]


def test_keep_history_and_process_all_reference_the_committed_blobs(
    s3_env, s3, new_bucket, few_images, make_media, tmp_path
):
    name = new_bucket()
    url = f"s3://{name}/pool"
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        run(few_images, url, n_samples=2, s3_endpoint_url=proxy.url)
        first = manifest_of(s3, name)
        make_media(few_images / "f8.jpg", seed=68)
        proxy.reset()
        r = run(few_images, url, n_samples=2, keep_history=True, s3_endpoint_url=proxy.url)
        puts = {p.split("?")[0] for m, p, *_ in proxy.traffic if m == "PUT"}
    second = fetch_s3_pool(s3, name, "pool/", tmp_path / "f")
    folder = Pool.open(tmp_path / "f").runs[1]["previous_pool"]
    assert folder.startswith("history/") and r.run_index == 1
    snapshot = {
        k.removeprefix(folder + "/"): v
        for k, v in second["files"].items()
        if k.startswith(folder + "/")
    }
    assert snapshot == first["files"]  # the same blobs, not copies
    old_blobs = {p["blob"] for e in first["files"].values() for p in e["parts"]}
    assert not {f"/{name}/{b}" for b in old_blobs} & puts  # none uploaded again
    assert Pool.open(tmp_path / "f" / folder).filenames == Pool.open(tmp_path / "f").filenames[:2]

    # --process-all: the pool before it kept as a snapshot; the replaced runs' reports dropped.
    rebuilt = run(few_images, url, n_samples=3, process_all=True)
    third = fetch_s3_pool(s3, name, "pool/", tmp_path / "g")
    assert rebuilt.run_index == 0 and len(Pool.open(tmp_path / "g").runs) == 1
    assert not [k for k in third["files"] if k.startswith("runs/1/")]
    kept = Pool.open(tmp_path / "g").runs[0]["previous_pool"]
    assert len(Pool.open(tmp_path / "g" / kept).runs) == 2
    assert second["files"]["datapool_latest.csv"] == third["files"][f"{kept}/datapool_latest.csv"]
    # `datapool status` lists the snapshots as for a folder pool (it listed none: "history": []).
    history = S3Store(url).summary()["history"]
    assert history == sorted([folder, kept]) == Pool.open(tmp_path / "g").summary()["history"]


# --- gc --------------------------------------------------------------------------------------------


def test_gc_removes_the_blobs_of_a_run_that_lost_a_race_and_nothing_else(
    s3, s3_env, new_bucket, bucket, tmp_path, make_media, monkeypatch
):
    from datapool.s3 import store as s3pool

    real_commit = s3pool._commit_manifest
    name, url, _ = rival_commits_first(monkeypatch, new_bucket, tmp_path, make_media, [50, 51])
    with pytest.raises(S3PoolConflictError):
        run(bucket, url)
    monkeypatch.setattr(s3pool, "_commit_manifest", real_commit)
    referenced = {p["blob"] for e in manifest_of(s3, name)["files"].values() for p in e["parts"]}
    s3.put_object(Bucket=name, Key="pool/notes.txt", Body=b"not a blob")
    unfinished = s3.create_multipart_upload(Bucket=name, Key="pool/blobs/unfinished")["UploadId"]
    before = keys_of(s3, name)
    orphans = {k for k in before if k.startswith("pool/blobs/") and k not in referenced}
    assert orphans  # the losing run's CSV, ledger, runs, report and view

    # The default threshold (an hour) keeps them: they could be a run's about to commit. (Not
    # the upload: moto says every upload was started in 2010.)
    kept = collect_garbage(url, dry_run=True)
    assert (kept.deleted, kept.kept_recent) == ([], len(orphans))
    time.sleep(1.5)  # the server's clock is read to the second
    dry = collect_garbage(url, older_than_s=0, dry_run=True)
    assert dry.deleted == sorted(orphans) and keys_of(s3, name) == before
    p = subprocess.run(
        [sys.executable, "-m", "datapool", "gc", url, "--older-than", "0s", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    done = json.loads(p.stdout)
    assert done["deleted"] == sorted(orphans) and done["aborted_uploads"] == 1
    assert done["freed_bytes"] > 0 and done["referenced"] == len(referenced)
    assert keys_of(s3, name) == before - orphans
    uploads = s3.list_multipart_uploads(Bucket=name).get("Uploads", [])
    assert unfinished not in [u["UploadId"] for u in uploads]
    # The pool is whole: it reads, and the next run builds on it.
    fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    assert sorted(Pool.open(tmp_path / "fetched").filenames) == ["o1.jpg", "o2.jpg"]
    assert run(bucket, url, source_moved=True).run_index == 1  # the rival's source was first


def test_gc_refuses_what_is_not_a_pool_and_has_nothing_to_do_in_a_folder(
    s3_env, s3, new_bucket, few_images, tmp_path
):
    name = new_bucket()
    s3.put_object(Bucket=name, Key="data/blobs/x", Body=b"x")
    with pytest.raises(datapool.DatapoolError, match=r"is not a datapool pool \(no manifest.json"):
        collect_garbage(f"s3://{name}/data", older_than_s=0)
    assert keys_of(s3, name) == {"data/blobs/x"}
    run(few_images, tmp_path / "pool", n_samples=1)
    p = subprocess.run(
        [sys.executable, "-m", "datapool", "gc", str(tmp_path / "pool")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and "nothing to collect" in p.stdout, p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "datapool", "gc", str(tmp_path / "pool"), "--older-than", "soon"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 4 and "'soon' is not an age" in p.stderr


def test_gc_in_a_versioned_bucket_says_the_bytes_stay(s3_env, s3, new_bucket, few_images):
    """A delete in a bucket with versioning keeps the bytes as a noncurrent version: gc says so
    rather than only "removed N blobs (X MB)", which reads as space freed."""
    name = new_bucket()
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    url = f"s3://{name}/pool"
    run(few_images, url, n_samples=2)
    s3.put_object(Bucket=name, Key="pool/blobs/orphan", Body=b"o" * 2_000_000)
    p = run_cli("gc", url, "--older-than", "0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{url}/: removed 1 unreferenced blobs (2.0 MB)")
    assert p.stderr == (
        f"datapool: warning: the bucket {name!r} keeps object versions (versioning enabled): "
        "the 1 blobs removed stay stored as noncurrent versions (2.0 MB) until a lifecycle rule "
        "expires them\n"
    )
    versions = s3.list_object_versions(Bucket=name, Prefix="pool/blobs/orphan")
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1
    s3.put_object(Bucket=name, Key="pool/blobs/orphan2", Body=b"x")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    assert "versioning suspended" in run_cli("gc", url, "--older-than", "0").stderr


def test_an_unwritable_cache_folder_falls_back_to_the_temporary_folder_with_a_warning(
    s3, new_bucket, few_images, tmp_path, monkeypatch
):
    """A container run as a user without a home: the copy goes to the temporary folder, and
    the run says where and how to keep it."""
    import tempfile

    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("DATAPOOL_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    name = new_bucket()
    r = run(few_images, f"s3://{name}/pool", n_samples=2)
    assert r.run_index == 0
    (warning,) = [w for w in r.warnings if "cannot write the local copy" in w]
    assert "set DATAPOOL_CACHE_DIR" in warning and str(tmp_path / "tmp") in warning
    assert list((tmp_path / "tmp").glob("datapool-cache-*/s3/*/pool/datapool_latest.csv"))
    fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    report = json.loads((tmp_path / "fetched" / "runs/0/report.json").read_text())
    assert warning in report["warnings"]


def test_a_format_1_pool_is_read_and_its_next_commit_drops_the_uploaded_caches(
    s3, new_bucket, few_images, make_media, tmp_path
):
    """A pool as datapool wrote it before format 2: every file of a folder pool (the sidecar and
    its lock included) as a blob named by its SHA-256, in a format 1 manifest."""
    import hashlib

    local = tmp_path / "local"
    run(few_images, local, n_samples=2)
    name = new_bucket()
    files = {}
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = path.relative_to(local).as_posix()
        if rel == ".datapool.lock":
            continue
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        s3.put_object(Bucket=name, Key=f"pool/blobs/{sha}", Body=data)
        files[rel] = {"blob": f"pool/blobs/{sha}", "sha256": sha, "size": len(data)}
    assert ".sidecar/embeddings.f32" in files
    manifest = {"format_version": 1, "generation": 1, "files": files}
    s3.put_object(Bucket=name, Key="pool/manifest.json", Body=json.dumps(manifest).encode())
    url = f"s3://{name}/pool"
    assert S3Store(url).summary()["size"] == 2
    make_media(few_images / "f8.jpg", seed=68)
    r = run(few_images, url, n_samples=2)
    assert (r.run_index, r.counts["new"], r.counts["unchanged"]) == (1, 1, 4)
    after = fetch_s3_pool(s3, name, "pool/", tmp_path / "fetched")
    assert after["format_version"] == 2 and after["generation"] == 2
    assert not [n for n in after["files"] if is_local_state(n)]
    pool = Pool.open(tmp_path / "fetched")
    assert pool.filenames[:2] == Pool.open(local).filenames and len(pool.runs) == 2


def test_ls_json_that_fails_part_way_leaves_nothing_on_stdout(
    s3, new_bucket, few_images, make_media
):
    """`ls --json` wrote its list a sample at a time: when it failed part way, the samples before
    the failure stayed on stdout, a truncated document (or, cut between two, a list that parses
    and lacks samples). Now stdout is the whole list or nothing (fails before: checked)."""
    name = new_bucket()
    url = f"s3://{name}/pool"
    datapool.run(few_images, url, n_samples=2, progress=False)
    make_media(few_images / "late.jpg", seed=70)
    datapool.run(few_images, url, n_samples=2, progress=False)
    # The second run's report is gone from the bucket, and from this machine's copy: `ls` lists
    # the first run's samples, then cannot read the second's min-distances.
    for part in manifest_of(s3, name)["files"]["runs/1/report.json"]["parts"]:
        s3.delete_object(Bucket=name, Key=part["blob"])
    shutil.rmtree(os.environ["DATAPOOL_CACHE_DIR"])
    p = subprocess.run(
        [sys.executable, "-m", "datapool", "ls", url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 8, p.stderr
    assert "runs/1/report.json" in json.loads(p.stderr.splitlines()[-1])["error"]["message"]
    assert p.stdout == ""


def test_a_runs_export_warnings_are_in_its_report_json_in_a_bucket(tmp_path, s3_env, new_bucket):
    # The report is committed with the run; what its --export did follows in one more manifest
    # commit (conditional on the manifest being the run's own).
    src = tmp_path / "src"
    for i, name in enumerate(["A.jpg", "a.jpg"]):
        write_image(src / name, scene(710 + i))
    url = f"s3://{new_bucket()}/pool"
    res = datapool.run(src, url, n_samples=5, export=str(tmp_path / "out"), progress=False)
    from datapool.pool.store import open_store

    report = json.loads(open_store(url).read("runs/0/report.json") or b"{}")
    assert report["export"] == res.export.to_json()
    assert "differs from another only by case" in report["export"]["warnings"][0]
    assert not res.warnings  # the report was amended: no warning that it was not
    page = open_store(url).read("runs/0/report.html") or b""  # and its page says so too
    assert b"<th>exported</th><td>2 samples</td>" in page and b"only by case" in page
    datapool.run(src, url, n_samples=5, progress=False)  # the pool goes on


def test_status_of_a_bucket_pool_names_the_run_that_holds_its_lease(
    s3, new_bucket, tmp_path, make_media
):
    """`datapool status s3://...` during a run says so in one line, from the pool's lock
    object (s3/lease.py: its pid, host, since when and its lease), in text and --json, without
    writing it; once the run is killed, the line names the lock object as stale."""
    import socket

    from ._robust import paused_run
    from .test_trust import cli

    src = tmp_path / "src"
    for i in range(3):
        make_media(src / f"i{i}.jpg", seed=i)
    bucket = new_bucket()
    url = f"s3://{bucket}/pool"
    run(src, url, n_samples=2)
    make_media(src / "new.jpg", seed=9)
    with paused_run(src, url, "--n-samples", 2, at="listed") as a:
        written = s3.get_object(Bucket=bucket, Key="pool/.datapool-lock.json")["Body"].read()
        text, js = cli("status", url, timeout=60), cli("status", url, "--json", timeout=60)
        held = s3.get_object(Bucket=bucket, Key="pool/.datapool-lock.json")["Body"].read()
    assert text.returncode == 0 and js.returncode == 0, text.stderr + js.stderr
    host = socket.gethostname()
    (line,) = [ln for ln in text.stdout.splitlines() if ln.startswith("running ")]
    assert line.startswith(f"running a run holds the pool: pid {a.p.pid} on {host} since ")
    assert ", its lease until " in line
    lock = json.loads(js.stdout)["lock"]
    assert (lock["state"], lock["pid"], lock["host"]) == ("held", a.p.pid, host)
    assert held == written or json.loads(held)["owner"] == json.loads(written)["owner"]
    text = cli("status", url)
    (line,) = [ln for ln in text.stdout.splitlines() if ln.startswith("lock ")]
    assert line.startswith(f"lock    stale: pid {a.p.pid} on {host} since ")
    assert "(that process is gone from this host); nothing to do: the next run takes" in line
    assert run(src, url, n_samples=2).run_index == 1
    assert json.loads(cli("status", url, "--json").stdout)["lock"] is None


def test_ls_report_export_of_a_prefix_whose_first_run_is_in_progress_say_no_pool_yet(
    s3, new_bucket, tmp_path, make_media
):
    """Before, `datapool ls`, `report` and `export` of s3://... during a new pool's first run
    said the prefix 'is not a datapool pool (no manifest.json in it)', as for a mistyped
    prefix. Now each says the line `datapool status` says (no pool yet, the run that holds the
    prefix and its lease), with the exit code of no pool."""

    from ._robust import paused_run
    from .test_trust import cli

    src = tmp_path / "src"
    for i in range(3):
        make_media(src / f"i{i}.jpg", seed=i)
    url = f"s3://{new_bucket()}/pool"
    with paused_run(src, url, "--n-samples", 2, at="listed") as a:
        said = [
            cli("ls", url, timeout=60),
            cli("report", url, "--out", tmp_path / "page.html", timeout=60),
            cli("export", url, tmp_path / "out", timeout=60),
        ]
    for r in said:
        assert r.returncode == 4, r.stderr
        assert "not a datapool pool" not in r.stderr, r.stderr
        assert f"{url}/: no pool yet: a run holds the prefix (pid {a.p.pid} on " in r.stderr
        assert ", its lease until " in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_status_of_a_prefix_whose_first_run_is_in_progress_says_no_pool_yet(
    s3, new_bucket, tmp_path, make_media
):
    """Before, `datapool status s3://...` during a new pool's first run said the prefix 'is
    not a datapool pool (no manifest.json in it)' (exit 4), as for a mistyped prefix, without
    the run that holds it. Now one line: no pool yet, the run that holds the prefix and its
    lease, and that its first commit makes the pool (--json: an empty pool with its `lock`).
    A prefix without a lock object is still not a pool."""
    import socket

    from ._robust import paused_run
    from .test_trust import cli

    src = tmp_path / "src"
    for i in range(3):
        make_media(src / f"i{i}.jpg", seed=i)
    bucket = new_bucket()
    url = f"s3://{bucket}/pool"
    with paused_run(src, url, "--n-samples", 2, at="listed") as a:
        text, js = cli("status", url, timeout=60), cli("status", url, "--json", timeout=60)
    assert text.returncode == 0 and js.returncode == 0, text.stderr + js.stderr
    host = socket.gethostname()
    doc = json.loads(js.stdout)
    lock = doc["lock"]
    assert (doc["pool"], doc["empty"], lock["state"], lock["pid"]) == (
        f"{url}/",
        True,
        "held",
        a.p.pid,
    )
    assert text.stdout.splitlines() == [
        f"pool    {url}/: no pool yet: a run holds the prefix (pid {a.p.pid} on {host} since "
        f"{lock['since']}, its lease until {lock['until']}); its first commit makes the pool"
    ]
    (line,) = cli("status", url).stdout.splitlines()
    assert line.startswith(f"pool    {url}/: no pool yet: a run took the prefix (pid {a.p.pid}")
    assert line.endswith(
        "and did not finish (that process is gone from this host); nothing to do: the next "
        "run takes the lock over and makes the pool"
    )
    assert run(src, url, n_samples=2).run_index == 0
    assert json.loads(cli("status", url, "--json").stdout)["lock"] is None
    other = cli("status", f"s3://{bucket}/elsewhere")
    assert other.returncode != 0 and "is not a datapool pool" in other.stderr


def test_pool_open_reads_a_pool_in_s3(s3, new_bucket, few_images, tmp_path):
    """`datapool.Pool.open("s3://...")` from Python: it said "no pool at s3:/bucket/pool: there
    is no such folder" (the URL read as a local path), for a pool that is there."""
    name = new_bucket()
    test_s3.upload(s3, few_images, name)
    r = run(f"s3://{name}/raw/", f"s3://{name}/pool/", n_samples=3)
    for spec in (f"s3://{name}/pool/", f"s3://{name}/pool"):
        pool = Pool.open(spec)
        assert sorted(pool.filenames) == sorted(r.selected) and pool.embeddings.shape[0] == 3
    with pytest.raises(datapool.ConfigError, match=r"s3://.*/nope/ is not a datapool pool"):
        Pool.open(f"s3://{name}/nope/")
    with pytest.raises(datapool.ConfigError, match="a pool cannot be kept in gs://"):
        Pool.open("gs://bucket/pool/")


def test_a_later_export_of_a_run_is_recorded_in_its_report_in_a_bucket(
    tmp_path, s3, new_bucket, monkeypatch
):
    """A bucket pool's run whose --export failed after its commit: `datapool export URL DEST
    --run 0` now commits what it did into the run's report.json and report.html (one more
    manifest), where the page said the export did not finish."""
    from datapool.cli import main
    from datapool.pool.store import open_store
    from datapool.s3 import store

    from .test_export_cmd import _export_part, _run_whose_export_fails

    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"p{i}.jpg", scene(720 + i))
    bucket = new_bucket()
    url = f"s3://{bucket}/pool"
    monkeypatch.chdir(tmp_path)
    _run_whose_export_fails(monkeypatch, store, src, url, "out")
    assert "did not finish" in _export_part(open_store(url).read("runs/0/report.html") or b"")
    generation = manifest_of(s3, bucket)["generation"]

    assert main(["export", url, "out", "--run", "0", "-q"]) == 0
    report = json.loads(open_store(url).read("runs/0/report.json") or b"{}")
    assert report["export"]["dest"] == str(tmp_path / "out") and report["export"]["written"] == 2
    part = _export_part(open_store(url).read("runs/0/report.html") or b"")
    assert "did not finish" not in part and "<th>exported</th><td>2 samples</td>" in part, part
    manifest = manifest_of(s3, bucket)
    assert manifest["generation"] == generation + 1  # one commit


def test_a_rewriting_run_and_rm_on_an_s3_pool_write_the_local_sidecar_from_the_rows(
    s3_env, new_bucket, bucket, make_media, monkeypatch
):
    """A run that rewrites the CSV (a changed source file) and `datapool rm` on a pool in a
    bucket write the local copy's sidecar from their rows (pool/sidecar.after_commit, as a
    folder pool's commit): the files a parse of the copy's CSV would write, byte for byte, and
    the CSV not parsed (before, the commit parsed back the whole CSV it had just written)."""
    from datapool.cli import main
    from datapool.pool import csvfile, sidecar
    from datapool.pool.layout import CSV_NAME

    url = f"s3://{new_bucket()}/pool"
    datapool.run(bucket, url, n_samples=8, progress=False)
    (copy,) = Path(os.environ["DATAPOOL_CACHE_DIR"]).glob("s3/*/pool")
    parses = []
    parse = csvfile.read_csv
    monkeypatch.setattr(csvfile, "read_csv", lambda *a, **k: parses.append(a) or parse(*a, **k))

    def files():
        return {p.name: p.read_bytes() for p in sorted((copy / ".sidecar").iterdir())}

    inodes = [(copy / CSV_NAME).stat().st_ino]

    def check(step):
        inodes.append((copy / CSV_NAME).stat().st_ino)
        assert inodes[-1] != inodes[-2], step  # the copy's CSV was rewritten (a new file)
        written = files()
        assert parses == [], step
        shutil.rmtree(copy / ".sidecar")
        sidecar.load(copy / CSV_NAME)  # the sidecar a parse of the same CSV writes
        assert files() == written, step
        parses.clear()

    names = sidecar.load(copy / CSV_NAME)[0]
    changed = next(n for n in names if n.endswith(".jpg") and (bucket / n).is_file())
    make_media(bucket / changed, seed=200)  # changed: its sample is dropped, the CSV rewritten
    make_media(bucket / "new.jpg", seed=201)
    assert datapool.run(bucket, url, n_samples=2, progress=False).counts["selected"] >= 1
    check("rewriting run")
    kept = sidecar.load(copy / CSV_NAME)[0]
    assert main(["rm", url, kept[0]]) == 0
    check("rm")
    assert kept[0] not in datapool.Pool.open(url).filenames
