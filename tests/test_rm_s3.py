"""`datapool rm` on a pool in a bucket (moto over HTTP): the removal is one manifest commit,
later runs keep the sample out, and --purge-history drops the snapshots' manifest entries."""

from __future__ import annotations

import datapool
from datapool.cli import main
from datapool.media import write_image
from datapool.pool.store import open_store

from ._robust import assert_ledger_agrees
from ._s3 import S3_FIXTURES
from .conftest import scene

# The S3 fixtures of tests/test_s3.py (a moto server of this module's own).
moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES


def rm(capsys, *args):
    rc = main(["rm", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_s3_pool_rm_commits_through_the_manifest(tmp_path, capsys, s3_env, new_bucket):
    src = tmp_path / "src"
    for i in range(4):
        write_image(src / f"img{i}.jpg", scene(600 + i))
    name = new_bucket()
    url = f"s3://{name}/pool"
    datapool.run(src, url, n_samples=40, progress=False)
    datapool.run(src, url, n_samples=40, progress=False, keep_history=True, process_all=True)
    rc, out, err = rm(capsys, url, "img1.jpg", "--reason", "licence plate")
    assert rc == 0, err
    assert "removed 1 sample" in out and "history: 1 snapshot still holds it" in out
    store = open_store(url)
    opened = store.pool()
    assert "img1.jpg" not in opened.filenames and len(opened) == 3
    assert_ledger_agrees(opened)
    assert store.summary()["removals"][0]["reason"] == "licence plate"
    files = store.objects.require_manifest()[0].files
    reports = sorted(n for n in files if n.startswith("runs/") and n.endswith("/report.json"))
    assert reports
    for name in reports:  # each run's report.json names it no more
        text = (store.read(name) or b"").decode()
        assert '"img0.jpg"' in text and '"img1.jpg"' not in text and '"scrubbed"' in text, name
    write_image(src / "img1.jpg", scene(700))  # changed: read again, but kept out
    datapool.run(src, url, n_samples=40, progress=False)
    assert "img1.jpg" not in open_store(url).pool().filenames
    rc, out, err = rm(capsys, url, "--purge-history")
    assert rc == 0 and "history: deleted 1 snapshot" in out, err
    assert open_store(url).summary()["history"] == []
    assert open_store(url).pool().removals
