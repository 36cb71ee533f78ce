"""`--tasks label-studio|labelbox`: beside an export's files, a tasks file that the labelling tool
imports as it is, each task pointing at an exported file. Every URL is fetched back over real HTTP
(a folder served by http.server, the moto S3 server) and compared with the exported file's bytes."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import pytest

import datapool
from datapool.errors import ConfigError
from datapool.export import LIST_NAME
from datapool.export_tasks import TASK_FILES, check_tasks, local_files_serving
from datapool.media import write_image
from datapool.runner.exported import export

from ._s3 import S3_FIXTURES
from .conftest import run_cli, scene, write_media
from .test_crops import TASK, _image, _task

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES

# Names a glue script gets wrong: spaces, commas, '#', '?', '%', '+', '&', quotes, non-ASCII.
TRICKY = ["a b.jpg", "c,d#e.jpg", "q?x%20.jpg", "ünï 'q\".jpg", "plus+amp&.jpg", "sub/x y.png"]
LS, LB = TASK_FILES["label-studio"], TASK_FILES["labelbox"]


@pytest.fixture
def tricky(tmp_path):
    root = tmp_path / "src"
    for i, name in enumerate(TRICKY):
        write_image(root / name, scene(10 + i))
    write_media(root / "clip one.mp4", "video", seed=3, frames=12)
    return root


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # (no line per request on stderr)
        pass


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on 127.0.0.1 for the folder tmp_path/out; its base URL."""
    (tmp_path / "out").mkdir()
    handler = functools.partial(_Quiet, directory=tmp_path / "out")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def _tasks(folder: Path) -> tuple[list[dict], list[dict], list[str]]:
    listed = (folder / LIST_NAME).read_text(encoding="utf-8").splitlines()
    return (
        json.loads((folder / LS).read_text(encoding="utf-8")),
        json.loads((folder / LB).read_text(encoding="utf-8")),
        listed,
    )


def test_each_task_of_a_folder_export_is_the_exported_file_at_its_url(tricky, served, tmp_path):
    out = tmp_path / "out"
    r = datapool.run(
        tricky,
        tmp_path / "pool",
        n_samples=7,
        progress=False,
        export=str(out),
        export_tasks=("label-studio", "labelbox"),
        export_url_prefix=served,
    )
    assert r.export is not None and r.export.refused == []
    assert r.export.tasks == {"label-studio": str(out / LS), "labelbox": str(out / LB)}
    ls, lb, listed = _tasks(out)
    assert sorted(listed) == sorted(r.selected) and len(listed) == 7
    # One task per name the list has, in its order; each URL serves that file's bytes.
    assert [t["data"]["sample"] for t in ls] == listed == [row["global_key"] for row in lb]
    for task, row in zip(ls, lb):
        name = task["data"]["sample"]
        assert task["data"]["image"] == row["row_data"]
        assert _get(task["data"]["image"]) == (out / name).read_bytes(), name
        assert row["media_type"] == "IMAGE"
        assert task["data"]["run"] == 0 and task["data"]["tag"] == "initial-tag"
    frames = [t["data"] for t in ls if t["data"]["source_file"] == "clip one.mp4"]
    assert frames and all(d["sample"] == f"clip one-{d['frame']:02d}-mp4.png" for d in frames)
    # The distances the run's report gives its picks (the first pick of an empty pool has none).
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    picked = {s["filename"]: s["min_distance"] for s in report["selected"]}
    assert {t["data"]["sample"]: t["data"].get("min_distance") for t in ls} == picked

    # `datapool export` of the same run, for Label Studio's local files: `?d=` takes the path
    # as a query value, decoded as Django decodes it ('+' would be a space there).
    p = run_cli(
        "export", tmp_path / "pool", out, "--tasks", "label-studio",
        "--url-prefix", "/data/local-files/?d=out/", check=True,
    )  # fmt: skip
    assert f"tasks     label-studio: {out / LS} (7 tasks)" in p.stdout
    ls2 = json.loads((out / LS).read_text(encoding="utf-8"))
    for task in ls2:
        parts = urlparse(task["data"]["image"])
        assert parts.path == "/data/local-files/"
        d = dict(parse_qsl(parts.query, keep_blank_values=True))["d"]
        assert (tmp_path / d).read_bytes() == (out / task["data"]["sample"]).read_bytes()
        assert task["data"].get("min_distance") == picked[task["data"]["sample"]]
    # Not written this time: the Labelbox file of the earlier export, which no longer matches
    # the list, is gone (it was datapool's own, named in the export's record).
    assert not (out / LB).exists()


def test_tasks_of_crops_point_at_the_cut_pngs(tmp_path):
    src = tmp_path / "src"
    _task(src)
    _image(src, "a b.png", [([10, 10, 40, 30], (255, 0, 0)), ([80, 50, 50, 40], (0, 255, 0))])
    out = tmp_path / "out"
    r = datapool.run(
        src, tmp_path / "pool", n_samples=2, crops=TASK, crop_padding=0.0, export=str(out),
        export_tasks="label-studio", export_url_prefix="https://h/x/", progress=False,
    )  # fmt: skip
    assert r.export is not None
    ls = json.loads((out / LS).read_text(encoding="utf-8"))
    # The crops, not the image that holds them (written beside them, not in the list).
    assert sorted(t["data"]["sample"] for t in ls) == ["a b-png-crop-0.png", "a b-png-crop-1.png"]
    for t in ls:
        d = t["data"]
        assert d["image"] == "https://h/x/" + d["sample"].replace(" ", "%20")
        assert d["crop_of"] == "a b.png" and d["source_file"] == "a b.png"
    boxes = {t["data"]["sample"]: t["data"]["crop_box"] for t in ls}
    assert boxes == {
        "a b-png-crop-0.png": [10, 10, 50, 40],
        "a b-png-crop-1.png": [80, 50, 130, 90],
    }


def test_repeated_exports_and_mirror_keep_the_tasks_equal_to_the_list(tricky, tmp_path):
    pool, out = tmp_path / "pool", tmp_path / "out"
    datapool.run(tricky, pool, n_samples=3, progress=False)
    for i in range(2):
        write_image(tricky / f"new {i}.jpg", scene(40 + i))
    assert datapool.run(tricky, pool, n_samples=2, progress=False).run_index == 1
    tasks = {"tasks": ["labelbox"], "url_prefix": "https://h/e/"}
    for which in ({"run": 0}, {"run": 1}, {"all_runs": True}, {"run": 1, "mirror": True}):
        export(pool, str(out), **which, **tasks)
        ls = json.loads((out / LB).read_text(encoding="utf-8"))
        assert [t["global_key"] for t in ls] == (out / LIST_NAME).read_text().splitlines()
        assert len(ls) == {0: 3, 1: 2, None: 5}[which.get("run")]
    assert (out / LB).exists()  # --mirror keeps the tasks file it wrote
    export(pool, str(out), run=1, mirror=True)  # without --tasks
    assert not (out / LB).exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--tasks", "label-studio"), "needs --url-prefix URL for a folder DEST"),
        (("--tasks", "labelbox", "--url-prefix", "https://h/out"), "must end with '/'"),
        (("--tasks", "cvat"), "invalid choice: 'cvat'"),
        (
            ("--tasks", "labelbox,label-studio", "--url-prefix", "https://h/out/"),
            "argument --tasks: give one tool each time: --tasks labelbox --tasks label-studio",
        ),
    ],
)
def test_a_tasks_mistake_is_one_line_and_exit_4(tricky, tmp_path, args, says):
    out = tmp_path / "out"
    p = run_cli(
        "run", tricky, "--pool", tmp_path / "pool", "--n-samples", 2, "--export", out, *args
    )
    assert p.returncode == 4 and says in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "pool").exists() and not (tmp_path / "out").exists()


def test_check_tasks_refuses_what_no_tool_could_read():
    with pytest.raises(ConfigError, match="is not a tasks format"):
        check_tasks(["cvat"], "s3://b/x", None)
    with pytest.raises(ConfigError, match="Labelbox reads http"):
        check_tasks(["labelbox"], "out", "/data/local-files/?d=")
    with pytest.raises(ConfigError, match="--url-prefix is used only with --tasks"):
        check_tasks([], "out", "https://h/out/")
    with pytest.raises(ConfigError, match="write beside an export: add --export DEST"):
        datapool.RunConfig(n_samples=1, export_tasks=["label-studio"])
    with pytest.raises(ConfigError, match="has a '#'"):
        check_tasks(["label-studio"], "out", "https://h/#/")
    with pytest.raises(ConfigError, match="is not a URL"):
        check_tasks(["label-studio"], "out", "h/out/")
    with pytest.raises(ConfigError, match=r"names a bucket, not a URL .*\(DEST s3://bucket/prefix"):
        check_tasks(["label-studio"], "out", "s3://b/out/")
    check_tasks(["label-studio", "labelbox"], "s3://b/x", None)  # S3 names its objects itself
    check_tasks(["label-studio"], "out", "/data/local-files/?d=")


def test_s3_tasks_name_each_object_as_each_tool_reads_it(s3, new_bucket, tricky, tmp_path):
    bucket = new_bucket()
    # Readable to anyone (as a bucket Labelbox reads through a signed URL is to it): a plain GET
    # of a row's URL then tells whether it names the object.
    policy = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                             "Resource": f"arn:aws:s3:::{bucket}/*"}]}  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    dest = f"s3://{bucket}/exp ort/"
    r = datapool.run(
        tricky, tmp_path / "pool", n_samples=7, progress=False, export=dest,
        export_tasks=("labelbox",),
    )  # fmt: skip
    assert r.export is not None and r.export.refused == []
    assert r.export.tasks == {"labelbox": f"{dest}{LB}"}
    rows = json.loads(s3.get_object(Bucket=bucket, Key=f"exp ort/{LB}")["Body"].read())
    assert sorted(row["global_key"] for row in rows) == sorted(r.selected)
    for row in rows:  # path-style on an S3-compatible endpoint: a plain GET reads the object
        key = "exp ort/" + row["global_key"]
        assert row["row_data"].startswith(f"{s3.meta.endpoint_url}/{bucket}/exp%20ort/")
        assert _get(row["row_data"]) == s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    # Label Studio: s3://bucket/key, read back as its S3 storage reads it (the URI's path,
    # undecoded: io_storages/s3 urlparse(..., allow_fragments=False)). A '?' in a name cannot
    # be said so: refused before anything is written, the flag named.
    with pytest.raises(ConfigError, match=r"hold a '\?'.*--url-prefix"):
        export(tmp_path / "pool", f"s3://{bucket}/ls/", tasks=["label-studio"])
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="ls/")
    (tricky / "q?x%20.jpg").unlink()
    pool = tmp_path / "pool2"
    datapool.run(tricky, pool, n_samples=6, progress=False)
    export(pool, f"s3://{bucket}/ls/", tasks=["label-studio"])
    tasks = json.loads(s3.get_object(Bucket=bucket, Key=f"ls/{LS}")["Body"].read())
    assert len(tasks) == 6
    for t in tasks:
        uri = urlparse(t["data"]["image"], allow_fragments=False)
        assert uri.scheme == "s3" and uri.netloc == bucket
        key = uri.path.lstrip("/")
        assert key == "ls/" + t["data"]["sample"]
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if "frame" not in t["data"]:  # an image, its bytes as they are in the source
            assert got == (tricky / t["data"]["source_file"]).read_bytes()
        else:
            assert got.startswith(b"\x89PNG")
    # An S3 prefix only grows: an export there without --tasks leaves the tasks file, which no
    # longer lists the export's samples, and says so.
    r = export(pool, f"s3://{bucket}/ls/", run=0)
    assert any(f"s3://{bucket}/ls/{LS} is from an earlier export" in w for w in r.warnings)


def test_a_local_files_prefix_that_names_another_folder_warns(tmp_path):
    """Label Studio reads `?d=PATH/NAME` as its document root's PATH/NAME: a prefix whose PATH is
    not DEST's own folder name gave tasks whose images Label Studio never finds, without a word.
    It warns, giving the prefix and document root that fit; a prefix that fits prints how Label
    Studio serves DEST (document root, Local files storage)."""
    src, out = tmp_path / "src", tmp_path / "files" / "out"
    for i in range(2):
        write_image(src / f"a {i}.jpg", scene(i))
    p = run_cli(
        "run", src, "--pool", tmp_path / "pool", "--n-samples", 2, "--export", out,
        "--tasks", "label-studio", "--url-prefix", "/data/local-files/?d=export/", check=True,
    )  # fmt: skip
    assert (
        "--url-prefix '/data/local-files/?d=export/' names Label Studio's local files under "
        f"export/ in its document root, and DEST {out} is not a folder of that name"
    ) in p.stderr, p.stderr
    assert (
        f"give --url-prefix '/data/local-files/?d=out/' and "
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path / 'files'}"
    ) in p.stderr
    assert "serves them" not in p.stdout
    p = run_cli(
        "export", tmp_path / "pool", out, "--tasks", "label-studio",
        "--url-prefix", "http://ls:8080/data/local-files/?d=files/out/", check=True,
    )  # fmt: skip
    assert "warning" not in p.stderr, p.stderr
    assert (
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path}, to a project with a Local files "
        f"source storage of {out}"
    ) in p.stdout, p.stdout
    r = export(tmp_path / "pool", str(out), tasks=["label-studio"], url_prefix="https://h/x/")
    assert r.serving is None and not r.warnings  # (not Label Studio's local files)


def test_a_local_files_prefix_of_the_document_root_itself_warns(tmp_path):
    """`?d=` (files in Label Studio's document root itself): Label Studio 1.23.2 refuses a Local
    files storage of its document root, so no task's image would ever load."""
    out = tmp_path / "out"
    for p, warned in (("/data/local-files/?d=", True), ("/data/local-files/?d=./out//", False)):
        warning = local_files_serving(str(out), p)[1]
        assert (warning is not None) == warned, (p, warning)
    assert local_files_serving(str(out), "/data/local-files/?d=")[1] == (
        "--url-prefix '/data/local-files/?d=' names files in Label Studio's document root itself, "
        "which Label Studio serves through no Local files storage (it refuses one of the document "
        f"root): give --url-prefix '/data/local-files/?d=out/' and "
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path}"
    )
