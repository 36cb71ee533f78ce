"""Exports to gs://bucket/prefix (`datapool export POOL gs://...`, `run --export gs://...`) against
gcp-storage-emulator, reached by google-cloud-storage over HTTP through tests/test_gcs.py's
counting proxy (no mocking of the library). Every object is read back from the emulator and
compared with what an export to a folder writes; every task's URI is resolved as the labelling
tool resolves it and read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytest.importorskip(
    "google.cloud.storage", reason="exports to gs:// need google-cloud-storage (datapool[gcs])"
)
pytest.importorskip(
    "gcp_storage_emulator.server", reason="the gs:// tests run against gcp-storage-emulator"
)

import datapool
from datapool.export import LIST_NAME
from datapool.export_tasks import TASK_FILES

from . import test_gcs
from .conftest import run_cli, write_media
from .test_gcs import new_bucket, upload

gcs_emulator, gcs = test_gcs.gcs_emulator, test_gcs.gcs  # (the fixtures)

LS, LB, COCO = TASK_FILES["label-studio"], TASK_FILES["labelbox"], TASK_FILES["coco"]


def _objects(bkt: Any, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix`, by its key relative to it, with its bytes."""
    return {
        str(b.name)[len(prefix) :]: b.download_as_bytes() for b in bkt.list_blobs(prefix=prefix)
    }


def _key_of(uri: str, bucket: str) -> str:
    """The object a gs:// URI in a task names, read as Label Studio's GCS storage reads it
    (io_storages/gcs/utils.py: urlparse(url, allow_fragments=False), netloc the bucket, the path
    undecoded) and as Labelbox's GCS stream example writes it (f"gs://{bucket}/{name}")."""
    parts = urlparse(uri, allow_fragments=False)
    assert (parts.scheme, parts.netloc, parts.query) == ("gs", bucket, "")
    return parts.path.lstrip("/")


def test_an_export_to_gs_writes_what_a_folder_export_writes_and_tasks_name_each_object(
    gcs, gcs_emulator, tmp_path
) -> None:
    """A run of a gs:// source with --export gs:// (inside the source), and `datapool export
    POOL gs://` of the whole pool: images (their bytes as in the source), video frames (PNG)
    and the tasks files, each object the same bytes as an export of the pool to a folder
    writes; each task's URI names its object."""
    src = tmp_path / "src"
    for i, name in enumerate(["a b.jpg", "ünï.jpg", "sub/c,d.png"]):
        write_media(src / name, seed=i)
    write_media(src / "clip one.mp4", seed=7, frames=6)
    bkt = new_bucket(gcs_emulator)
    upload(bkt, src)
    pool = tmp_path / "pool"
    r = datapool.run(
        f"gs://{bkt.name}/raw",
        pool,
        n_samples=100,
        progress=False,
        thumbnails=False,
        export=f"gs://{bkt.name}/raw/picks",  # (inside the source: never listed as media)
        export_tasks=("label-studio",),
    )
    assert r.export is not None and r.export.refused == []
    assert r.export.dest == f"gs://{bkt.name}/raw/picks/"
    assert r.export.tasks == {"label-studio": f"gs://{bkt.name}/raw/picks/{LS}"}
    picks = _objects(bkt, "raw/picks/")
    assert set(picks) == {*r.selected, LIST_NAME, LS}
    assert picks[LIST_NAME].decode().split("\n")[:-1] == r.export.written
    assert any(n.endswith("-mp4.png") for n in r.selected)  # (frames of the clip too)

    folder = run_cli("export", pool, tmp_path / "out", "--all", "--tasks", "coco")
    assert folder.returncode == 0, folder.stderr
    res = run_cli(
        "export", pool, f"gs://{bkt.name}/all", "--all", "--json",
        "--tasks", "label-studio", "--tasks", "labelbox", "--tasks", "coco",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["refused"] == [] and out["renamed"] == {}
    assert out["tasks"] == {f: f"gs://{bkt.name}/all/{TASK_FILES[f]}" for f in TASK_FILES}
    written = _objects(bkt, "all/")
    names = (tmp_path / "out" / LIST_NAME).read_text(encoding="utf-8").splitlines()
    assert sorted(names) == sorted(r.selected)
    assert set(written) == {*names, LIST_NAME, LS, LB, COCO}
    for name in [*names, LIST_NAME, COCO]:  # the same bytes as the folder's
        assert written[name] == (tmp_path / "out" / name).read_bytes(), name
    for name in names:
        if not name.endswith("-mp4.png"):
            assert written[name] == (src / name).read_bytes()
    assert bkt.get_blob("all/a b.jpg").content_type == "image/jpeg"

    for task in json.loads(written[LS]):
        key = _key_of(task["data"]["image"], bkt.name)
        assert key == "all/" + task["data"]["sample"]
        assert bkt.blob(key).download_as_bytes() == (tmp_path / "out" / key[4:]).read_bytes()
    rows = json.loads(written[LB])
    assert sorted(row["global_key"] for row in rows) == sorted(names)
    for row in rows:
        key = _key_of(row["row_data"], bkt.name)
        assert bkt.blob(key).download_as_bytes() == written[row["global_key"]]
    coco = json.loads(written[COCO])
    assert sorted(i["file_name"] for i in coco["images"]) == sorted(names)

    # The pool's own source, and --mirror (a prefix only grows), are refused in one line.
    same = run_cli("export", pool, f"gs://{bkt.name}/raw/")
    assert same.returncode == 4 and "is the pool's source" in same.stderr, same.stderr
    mirror = run_cli("export", pool, f"gs://{bkt.name}/all", "--mirror")
    assert mirror.returncode == 4, mirror.stderr
    assert mirror.stderr == (
        "datapool: error: --mirror works on a local export folder; gs:// prefixes only grow\n"
    )
    # The next run of the source (without --export) knows the export inside it by its list.
    again = datapool.run(f"gs://{bkt.name}/raw", pool, n_samples=1, progress=False)
    assert again.counts["new"] == 0
    assert any("of a datapool export inside the source (picks/)" in w for w in again.warnings)


def test_an_export_to_gs_keeps_clear_of_the_names_already_under_the_prefix(
    gcs, gcs_emulator, tmp_path
) -> None:
    """A GCS prefix holds `A.jpg` and `a.jpg` apart, but a copy of it to a Mac or a Windows drive
    (`gcloud storage cp -r`) keeps one: a later export's name does not fold onto an object already
    under the prefix. A role that may write objects but not list them: the export goes on and
    says what it could not check. A tasks file of an earlier export left there is named."""
    from datapool.media import write_image

    from .conftest import scene

    src, pool, bkt = tmp_path / "src", tmp_path / "pool", new_bucket(gcs_emulator)
    dest = f"gs://{bkt.name}/x"
    write_image(src / "A.jpg", scene(1))
    first = datapool.run(
        src, pool, n_samples=5, progress=False, thumbnails=False, export=dest,
        export_tasks=("labelbox",),
    )  # fmt: skip
    assert first.export is not None and first.export.renamed == {}
    write_image(src / "a.jpg", scene(2))
    second = run_cli("run", src, "--pool", pool, "--n-samples", "5", "--export", dest, "--json")
    assert second.returncode == 0, second.stderr
    export = json.loads(second.stdout)["export"]
    new = export["renamed"]["a.jpg"]
    assert new.startswith("a~") and export["written"] == 1
    assert any(f"{dest}/{LB} is from an earlier export" in w for w in export["warnings"])
    got = _objects(bkt, "x/")
    assert set(got) == {"A.jpg", new, LIST_NAME, LB}
    assert got[new] == (src / "a.jpg").read_bytes()
    assert got["A.jpg"] == (src / "A.jpg").read_bytes()
    assert got[LIST_NAME] == f"{new}\n".encode()

    write_image(src / "b.jpg", scene(3))
    gcs.deny_list = {bkt.name}
    third = datapool.run(src, pool, n_samples=5, progress=False, thumbnails=False, export=dest)
    assert third.export is not None and third.export.written == ["b.jpg"]
    (warning,) = [w for w in third.export.warnings if "HTTP 403" in w]
    assert warning.startswith(f"listing the export prefix {dest}/ in GCS bucket {bkt.name!r}")
    assert "storage.objects.list" in warning
    assert "not from the keys already under the prefix" in warning
    assert bkt.blob("x/b.jpg").download_as_bytes() == (src / "b.jpg").read_bytes()


def test_a_gs_destination_that_cannot_be_written_is_one_line(gcs, gcs_emulator, tmp_path) -> None:
    """A missing bucket, and one that refuses writes: one line naming the bucket, exit 8 (an
    output that cannot be written), the IAM permission a write needs; a DEST that is not a
    bucket name, one line, exit 4."""
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=1, progress=False, thumbnails=False)
    r = run_cli("export", pool, "gs://dp-no-such-bucket/x")
    assert r.returncode == 8, r.stderr
    assert r.stderr.count("\n") == 1 and "'dp-no-such-bucket' does not exist" in r.stderr
    bkt = new_bucket(gcs_emulator)
    gcs.deny = {bkt.name}  # (its listing is denied too: a warning, and the export goes on)
    r = run_cli("export", pool, f"gs://{bkt.name}/x")
    assert r.returncode == 8, r.stderr
    # (testIamPermissions said the credentials lack storage.objects.create: a warning, since a
    # managed folder may grant it)
    lacking, warning, error = r.stderr.splitlines()
    assert lacking.startswith(
        f"datapool: warning: cannot export to gs://{bkt.name}/x/: the credentials do not hold "
        "storage.objects.create"
    )
    assert warning.startswith("datapool: warning: listing the export prefix") and "403" in warning
    assert error.startswith(f"datapool: error: writing 'x/a.jpg' in GCS bucket {bkt.name!r} failed")
    assert "HTTP 403" in error and "storage.objects.create" in error
    bad = run_cli("export", pool, "gs://No_Such/x")
    assert bad.returncode == 4 and "valid bucket name" in bad.stderr, bad.stderr


def test_without_the_extra_an_export_to_gs_is_one_line(tmp_path: Path) -> None:
    """google-cloud-storage made unimportable in the child: one line naming the extra, exit 4 (as
    s3:// without boto3), before the run does any work."""
    from .conftest import PACKAGE_PATH

    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['google.cloud.storage'] = None\n"
    )
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    r = run_cli(
        "run", src, "--pool", tmp_path / "pool", "--n-samples", "1", "--export", "gs://b-x/e",
        env_extra={"PYTHONPATH": f"{blocker}:{PACKAGE_PATH}"},
    )  # fmt: skip
    assert r.returncode == 4, r.stderr
    assert r.stderr == (
        "datapool: error: cannot export to gs://b-x/e/: gs:// needs google-cloud-storage, which "
        'is not installed: pip install "datapool[gcs]"\n'
    )
    assert not (tmp_path / "pool").exists()


def test_a_missing_gs_bucket_stops_the_run_before_any_work(gcs, gcs_emulator, tmp_path) -> None:
    """`run --export gs://typo/...` decoded, embedded and committed every new file, and only
    then failed at the export: now one line naming --export and the bucket, exit 8, before the
    pool's lock was taken (no test point passed), a dry run too. A bucket whose credentials
    lack storage.objects.create: the run warns at its start (a managed folder may grant it)."""
    src, pool = tmp_path / "src", tmp_path / "pool"
    write_media(src / "a.jpg", seed=1)
    r = run_cli(
        "run", src, "--pool", pool, "--n-samples", "1", "--export", "gs://dp-no-such-bucket/x",
        env_extra={"DATAPOOL_TEST_TRACE": "1"},
    )  # fmt: skip
    assert r.returncode == 8, r.stderr
    assert r.stderr == (
        "datapool: error: --export gs://dp-no-such-bucket/x/: the GCS bucket 'dp-no-such-bucket' "
        f"does not exist (endpoint {gcs.url}); check its name, or create it first (gcloud "
        "storage buckets create gs://dp-no-such-bucket); nothing was done\n"
    )
    assert not pool.exists()
    dry = run_cli("run", src, "--pool", pool, "--n-samples", "1", "--dry-run",
                  "--export", "gs://dp-no-such-bucket/x")  # fmt: skip
    assert dry.returncode == 8 and dry.stderr == r.stderr
    bkt = new_bucket(gcs_emulator)
    gcs.deny = {bkt.name}
    with pytest.raises(datapool.DatapoolError, match=r"writing 'x/a\.jpg'.*HTTP 403") as e:
        datapool.run(src, pool, n_samples=1, progress=False, export=f"gs://{bkt.name}/x")
    assert "was committed to the pool" in str(e.value)  # (the run went on, as warned)
    assert datapool.Pool.load(pool).runs[0]["report"]
    report = json.loads((pool / "runs" / "0" / "report.json").read_text())
    assert report["warnings"][0].startswith(
        f"--export gs://{bkt.name}/x/: the credentials do not hold storage.objects.create"
    )
    # The check itself refused (and writes allowed): it cannot tell, says so, and the export
    # writes
    gcs.deny, gcs.deny_check = set(), {bkt.name}
    write_media(src / "b.jpg", seed=2)
    r = datapool.run(src, pool, n_samples=1, progress=False, export=f"gs://{bkt.name}/x")
    assert r.export is not None and r.export.written == ["b.jpg"]
    assert r.warnings[0].startswith(f"--export gs://{bkt.name}/x/: could not check")
    assert "HTTP 403" in r.warnings[0] and "going on" in r.warnings[0]


def test_an_endpoint_without_test_iam_permissions_exports(gcs, gcs_emulator, tmp_path) -> None:
    """fake-gcs-server has no testIamPermissions route: it answers "404 page not found", which
    the check read as a bucket that does not exist, refusing `run --export` and `datapool
    export` to a bucket that is there and takes writes. The bucket is asked for itself then:
    there, the export goes on without a word; not there, the refusal stands."""
    src, pool = tmp_path / "src", tmp_path / "pool"
    write_media(src / "a.jpg", seed=1)
    bkt = new_bucket(gcs_emulator)
    gcs.no_iam = {bkt.name, "dp-no-such-bucket"}
    r = datapool.run(src, pool, n_samples=1, progress=False, export=f"gs://{bkt.name}/x")
    assert r.export is not None and r.export.written == ["a.jpg"] and not r.warnings
    assert set(_objects(bkt, "x/")) == {"a.jpg", LIST_NAME}
    e = run_cli("export", pool, f"gs://{bkt.name}/y")
    assert e.returncode == 0, e.stderr
    assert "a.jpg" in _objects(bkt, "y/")
    missing = run_cli("export", pool, "gs://dp-no-such-bucket/y")
    assert missing.returncode == 8
    assert "the GCS bucket 'dp-no-such-bucket' does not exist" in missing.stderr
