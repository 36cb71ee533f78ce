"""`datapool undo` on a pool in a bucket (moto over HTTP): one manifest commit puts back the
pool files as they were before the last run, byte for byte, without the run's folder; a kill
before the manifest's write leaves the pool as it was, and a second process stops at the lock."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import datapool
from datapool.cli import main
from datapool.media import write_image
from datapool.pool.store import open_store

from . import test_s3
from ._robust import Proc, assert_ledger_agrees
from ._s3 import S3_FIXTURES
from .conftest import PACKAGE_PATH, scene
from .test_undo import hub_copy

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES


def committed(url: str) -> dict[str, bytes]:
    """Every committed file of the pool at `url`, by name, as the manifest names them."""
    store = open_store(url)
    manifest, _ = store.objects.require_manifest()
    return {name: store.read(name) or b"" for name in sorted(manifest.files)}


def test_s3_pool_undo_puts_back_the_files_and_a_rerun_gives_the_same_pool(
    tmp_path, capsys, s3_env, new_bucket
):
    src = tmp_path / "src"
    for i in range(4):
        write_image(src / f"img{i}.jpg", scene(610 + i))
    url = f"s3://{new_bucket()}/pool"
    datapool.run(src, url, n_samples=3, progress=False)
    before = committed(url)
    for i in range(3):
        write_image(src / f"new{i}.jpg", scene(620 + i))
    datapool.run(src, url, n_samples=3, progress=False)
    after = committed(url)
    assert "runs/1/report.json" in after

    # A second process stops at the pool's lock object while the undo holds it.
    held = Proc(
        [sys.executable, "-m", "datapool", "undo", url],
        DATAPOOL_TEST_PAUSE_AT="locked",
        PYTHONPATH=PACKAGE_PATH,
    )
    held.wait_for("datapool-test: paused at")
    try:
        rc = main(["undo", url])
        err = capsys.readouterr().err
    finally:
        held.kill()
    assert rc == 3, err
    # Killed before its manifest's write: the pool is as the run left it.
    p = Proc(
        [sys.executable, "-m", "datapool", "undo", url],
        DATAPOOL_TEST_PAUSE_AT="s3-blobs-written",
        PYTHONPATH=PACKAGE_PATH,
    )
    p.wait_for("datapool-test: paused at")
    p.kill()
    assert committed(url) == after

    rc = main(["undo", url])
    out, err = capsys.readouterr()
    assert rc == 0 and "undid run 1 (run-1): 3 samples gone" in out, err
    assert committed(url) == before  # the same files, byte for byte; runs/1 gone
    opened = open_store(url).pool()  # through the local copy, brought up to date
    assert len(opened) == 3 and len(opened.runs) == 1
    assert_ledger_agrees(opened)

    r = datapool.run(src, url, n_samples=3, progress=False)
    assert r.counts["new"] == 3  # read again as new
    again = committed(url)
    assert again.keys() == after.keys()
    for name in ("datapool_latest.csv", "ledger.csv", "model.json", "runs/1/thumbnails.bin"):
        assert again[name] == after[name], name

    # --process-all rewrote the pool and kept it as history/ manifest entries: put back from them.
    datapool.run(src, url, n_samples=2, progress=False, process_all=True)
    rc = main(["undo", url])
    out, err = capsys.readouterr()
    assert rc == 0 and "put back the pool files and runs/ from history/" in out, err
    assert committed(url) == again
    assert len(open_store(url).pool().runs) == 2


def test_s3_pool_undo_puts_back_model_json_a_run_rewrote(tmp_path, capsys, s3_env, new_bucket):
    """As test_undo's: run 1 recorded the model's origin in model.json; the undo's manifest
    commit names model.json as it was before (it was refused)."""
    tiny = Path(__file__).parent / "artifacts" / "compat" / "tiny.onnx"
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"img{i}.jpg", scene(630 + i))
    url = f"s3://{new_bucket()}/pool"
    datapool.run(src, url, n_samples=2, model=str(tiny), progress=False)
    before = committed(url)
    write_image(src / "new.jpg", scene(640))
    hub = hub_copy(tiny, tmp_path / "cache" / "tiny")
    datapool.run(src, url, n_samples=1, model=str(hub), progress=False)
    assert committed(url)["model.json"] != before["model.json"]
    rc = main(["undo", url])
    out, err = capsys.readouterr()
    assert rc == 0 and "undid run 1 (run-1): 1 sample gone" in out, err
    assert committed(url) == before
    model = open_store(url).pool().model
    assert model is not None and model.origin is None


def test_s3_pool_whose_last_run_a_release_made_is_undone_byte_for_byte(capsys, s3, new_bucket):
    """As test_undo_compat's, in a bucket: both runs by datapool 0.5.0 (the bucket's objects in
    tests/artifacts/compat/undo/0.5.0-s3/, made by tools/make_undo_fixtures.py), the undo by
    this one. It was refused: 'runs.json as it was before run 1 (run-1) cannot be rebuilt byte
    for byte (another datapool version wrote it)'."""
    folder = Path(__file__).parent / "artifacts" / "compat" / "undo" / "0.5.0-s3"
    bucket = new_bucket()
    test_s3.upload(s3, folder / "objects", bucket, prefix="")
    url = f"s3://{bucket}/pool"
    rc = main(["undo", url])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "runs.json: put back as datapool 0.5.0 wrote it before run 1" in out
    now = {name: hashlib.sha256(data).hexdigest() for name, data in committed(url).items()}
    assert now == json.loads((folder / "before.json").read_text())
    rc = main(["verify", url])
    out, err = capsys.readouterr()
    assert rc == 0 and "pool OK: " in out, out + err


def test_s3_pool_undo_refuses_a_same_length_rewrite_of_what_the_run_appended(
    tmp_path, capsys, s3_env, new_bucket
):
    """Another tool rewrote the pool CSV in the bucket after the run (a new blob, a new
    manifest), one digit of a row the run appended changed: undo checked its length only and
    cut the rows off. Now the SHA-256 the run recorded of them says the file changed."""
    from datapool.s3.manifest import Manifest
    from datapool.s3.store import _commit_manifest

    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"img{i}.jpg", scene(630 + i))
    url = f"s3://{new_bucket()}/pool"
    datapool.run(src, url, n_samples=2, progress=False)
    write_image(src / "new.jpg", scene(640))
    datapool.run(src, url, n_samples=2, progress=False)
    store = open_store(url)
    manifest, etag, _ = store.objects.read_manifest()
    csv = bytearray(store.read("datapool_latest.csv") or b"")
    last = csv.rindex(b"\n", 0, len(csv) - 1) + 1  # the last row: the run's
    comma = last + csv[last:].index(b",")
    at = next(i for i in range(comma + 4, len(csv)) if chr(csv[i]).isdigit())  # in a float
    csv[at] = ord("1") if csv[at] != ord("1") else ord("2")
    files = {**manifest.files, "datapool_latest.csv": store.objects.put_file(bytes(csv))}
    _commit_manifest(
        store.objects, Manifest(manifest.generation + 1, files, manifest.min_reader), etag
    )
    before = committed(url)
    rc = main(["undo", url])
    out, err = capsys.readouterr()
    assert rc == 4 and out == "", err
    assert "a change to datapool_latest.csv (a later commit, or an edit)" in err, err
    assert committed(url) == before
