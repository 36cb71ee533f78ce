"""gs:// sources against a real GCS JSON API server: gcp-storage-emulator on 127.0.0.1, reached by
google-cloud-storage over HTTP (STORAGE_EMULATOR_HOST; no mocking of the library), through a
small proxy that counts the requests, cuts a body short, answers 403, and enforces
`ifGenerationMatch` on downloads, which the emulator ignores (real GCS answers 412 then)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

storage = pytest.importorskip("google.cloud.storage")
emulator = pytest.importorskip("gcp_storage_emulator.server")

import datapool  # noqa: E402
from datapool import Pool  # noqa: E402
from datapool.errors import SourceError  # noqa: E402
from datapool.gcs.client import parse_gs_url  # noqa: E402
from datapool.gcs.source import GcsSource  # noqa: E402
from datapool.sources import READ_FAILED, open_source  # noqa: E402

from ._http_proxy import ProxyHandler, forward, serve  # noqa: E402
from .conftest import PACKAGE_PATH, run_cli, write_media  # noqa: E402

BROKEN = {"cam/broken.mp4", "notes.png", "empty.jpg"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator on 127.0.0.1 and a free port, in memory, for the whole session."""
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    port = _free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


class GcsProxy:
    """Forwards to the emulator and records every request as (method, path, query, Range, body
    bytes sent). A download (alt=media) whose `ifGenerationMatch` is not the object's generation
    now is answered 412, as GCS answers it; the first download of each object in `cut` sends
    its headers (the whole length) and half its body, then closes the connection; that of each
    object in `flip` has its last byte changed (the checksum header no longer matches); any
    request for a bucket in `deny` is answered 403 (but testIamPermissions, which GCS answers
    any caller: none of the permissions asked is held), and a listing of one in `deny_list` (a
    role that may write objects but not list them)."""

    def __init__(self, upstream: str, cut: set[str] = frozenset(), deny: set[str] = frozenset()):
        self.cut, self.deny, self.flip = set(cut), set(deny), set()
        self.deny_list: set[str] = set()
        self.deny_check: set[str] = set()  # testIamPermissions answered 403 (nothing else)
        # testIamPermissions answered 404 "404 page not found" as fake-gcs-server answers it (it
        # has no such route; the bucket is there and takes writes)
        self.no_iam: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str], str, int]] = []
        proxy = self

        class Handler(ProxyHandler):
            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                self.send_reply(status, "application/json", json.dumps(payload).encode())

            def _handle(self) -> None:
                body = self.read_body()
                split = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(split.query))
                parts = split.path.split("/")
                bucket = parts[parts.index("b") + 1] if "b" in parts else ""
                name = (
                    urllib.parse.unquote("/".join(parts[parts.index("o") + 1 :]))
                    if "o" in parts
                    else ""
                )
                media = self.command == "GET" and (
                    query.get("alt") == "media" or split.path.startswith("/download/")
                )
                record = [self.command, split.path, query, self.headers.get("Range", ""), 0]
                proxy.requests.append(record)  # type: ignore[arg-type]
                listing = self.command == "GET" and parts[-1] == "o"
                if parts[-2:] == ["iam", "testPermissions"] and bucket in proxy.deny:
                    # (GCS answers a caller who holds none of the permissions asked: no list)
                    return self._reply(200, {"kind": "storage#testIamPermissionsResponse"})
                if parts[-2:] == ["iam", "testPermissions"] and bucket in proxy.no_iam:
                    return self.send_reply(404, "text/plain", b"404 page not found\n")
                if parts[-2:] == ["iam", "testPermissions"] and bucket in proxy.deny_check:
                    err = {"code": 403, "message": "denied", "errors": [{"message": "denied"}]}
                    return self._reply(403, {"error": err})
                if bucket in proxy.deny or (listing and bucket in proxy.deny_list):
                    msg = "caller does not have storage.objects.list access"
                    err = {"code": 403, "message": msg, "errors": [{"message": msg}]}
                    return self._reply(403, {"error": err})
                if media and "ifGenerationMatch" in query:
                    meta, data = forward(
                        self.upstream, "GET", f"/storage/v1/b/{bucket}/o/{parts[-1]}", b"", {}
                    )
                    now = json.loads(data).get("generation") if meta.status == 200 else None
                    if now is not None and now != query["ifGenerationMatch"]:
                        msg = "At least one of the pre-conditions you specified did not hold."
                        err = {"code": 412, "message": msg, "errors": [{"message": msg}]}
                        return self._reply(412, {"error": err})
                resp, data = self.forward(body)
                cut = media and name in proxy.cut
                proxy.cut.discard(name)
                if media and name in proxy.flip and data:
                    proxy.flip.discard(name)
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                sent = data[: len(data) // 2] if cut else data
                record[4] = len(sent)  # (before: the client may go on once it has the bytes)
                self.send_forwarded(resp, data, sent)
                if cut:
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

        self.server, self.url = serve(Handler, upstream)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def downloads(self) -> list[tuple[str, dict[str, str], str, int]]:
        """(object name, query, Range, bytes sent) of every download."""
        out = []
        for method, path, query, rng, sent in self.requests:
            if method == "GET" and (query.get("alt") == "media" or path.startswith("/download/")):
                name = urllib.parse.unquote(path.split("/o/", 1)[1])
                out.append((name, query, rng, sent))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gcs(gcs_emulator, monkeypatch, tmp_path) -> Iterator[GcsProxy]:
    """The library pointed at the emulator through a GcsProxy (anonymous, as it is with
    STORAGE_EMULATOR_HOST), nothing from the host's credentials."""
    proxy = GcsProxy(gcs_emulator)
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "datapool-test")
    yield proxy
    proxy.close()


def new_bucket(upstream: str) -> Any:
    """A new bucket of its own name on the emulator (straight, not through the proxy)."""
    client = storage.Client(
        project="datapool-test", client_options={"api_endpoint": upstream}, credentials=_anon()
    )
    return client.create_bucket(f"dp-{uuid.uuid4().hex[:12]}")


def _anon() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def upload(bkt: Any, folder: Path, prefix: str = "raw/") -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            bkt.blob(prefix + path.relative_to(folder).as_posix()).upload_from_string(
                path.read_bytes()
            )


def run(source: str | Path, pool: Path, **kw: Any) -> datapool.RunResult:
    kw.setdefault("n_samples", 8)
    return datapool.run(source, pool, progress=False, thumbnails=False, **kw)


def test_parse_gs_url() -> None:
    assert parse_gs_url("gs://my-bucket") == ("my-bucket", "")
    assert parse_gs_url("gs://my-bucket/raw/cam") == ("my-bucket", "raw/cam/")
    assert parse_gs_url("GS://my.bucket_1/raw/") == ("my.bucket_1", "raw/")
    for bad in ("gs://user:pw@bucket/x", "gs:///x", "gs://My-Bucket/x", "gs://ab/x"):
        with pytest.raises(SourceError, match="valid bucket name"):
            parse_gs_url(bad)


def test_import_datapool_does_not_import_google_cloud() -> None:
    code = (
        "import sys, datapool, datapool.runner, datapool.cli, datapool.sources; "
        "print(sorted(m for m in sys.modules if m.startswith(('google', 'grpc', 'requests'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_the_extra_a_gs_source_is_one_line(tmp_path: Path) -> None:
    """google-cloud-storage made unimportable in the child (as where the extra is not
    installed): one line naming the extra, the exit code of a source that cannot be used."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['google.cloud.storage'] = None\n"
    )
    r = run_cli(
        "run",
        "gs://some-bucket/raw",
        "--pool",
        tmp_path / "pool",
        "--n-samples",
        "1",
        env_extra={"PYTHONPATH": f"{blocker}:{PACKAGE_PATH}"},
    )
    assert r.returncode == 5, r.stderr
    assert r.stderr == (
        "datapool: error: gs:// needs google-cloud-storage, which is not installed: "
        'pip install "datapool[gcs]"\n'
    )
    assert not (tmp_path / "pool").exists()


def test_listing_matches_the_local_listing(gcs, gcs_emulator, bucket) -> None:
    bkt = new_bucket(gcs_emulator)
    upload(bkt, bucket)
    bkt.blob("raw/.hidden/x.jpg").upload_from_string(b"x")  # hidden, like local
    bkt.blob("raw/folder/").upload_from_string(b"")  # a "folder" placeholder
    bkt.blob("elsewhere.jpg").upload_from_string(b"x")  # outside the prefix
    src = open_source(f"gs://{bkt.name}/raw")
    assert isinstance(src, GcsSource)
    counted: list[int] = []  # the listing's progress: every object under the prefix
    df = src.list(counted=counted.append)
    assert sum(counted) == len(list(bkt.list_blobs(prefix="raw/"))), counted
    from datapool.sources.local import LocalSource

    local = LocalSource(bucket).list()
    assert df["key"].tolist() == local["key"].tolist()
    assert df["size"].tolist() == local["size"].tolist()
    assert df["kind"].tolist() == local["kind"].tolist()
    assert src.n_ignored == 1  # README.txt
    blob = bkt.get_blob("raw/img0.jpg")
    row = df.set_index("key").loc["img0.jpg"]
    import hashlib

    assert row["etag"] == hashlib.md5((bucket / "img0.jpg").read_bytes()).hexdigest()
    assert row["mtime_ns"] == int(blob.updated.timestamp() * 1_000_000) * 1000
    etags = dict(zip(df["key"], df["etag"]))
    assert src.list_files("cam") == {k: etags[k] for k in etags if k.startswith("cam/")}
    # --relevant-filenames-file and --exclude filter the keys as for any source (a line may
    # be the object's URL); a dry run reads no object.
    relevant = bucket.parent / "relevant.txt"
    relevant.write_text(f"gs://{bkt.name}/raw/img0.jpg\nimg1.jpg\ncam/*\n")
    gcs.requests.clear()
    dry = run(
        f"gs://{bkt.name}/raw",
        bucket.parent / "pool",
        relevant_filenames_file=str(relevant),
        exclude=("cam/broken.mp4",),
        dry_run=True,
    )
    assert sorted(dry.would_process) == ["cam/clip.mp4", "cam/other.mp4", "img0.jpg", "img1.jpg"]
    assert gcs.downloads() == []
    assert src.read_bytes("img0.jpg") == (bucket / "img0.jpg").read_bytes()
    assert src.read_bytes(".hidden/x.jpg") == b"x"
    assert src.read_bytes("none.json") is None


def test_two_runs_then_an_export(gcs, gcs_emulator, bucket, tmp_path) -> None:
    """The first run reads every object once, each download ifGenerationMatch its listed
    generation, skips the broken files with their reasons, and grows the pool a run of the
    same folder grows; the second downloads nothing; `datapool export` reads the picks from
    the bucket."""
    bkt = new_bucket(gcs_emulator)
    upload(bkt, bucket)
    reference = run(bucket, tmp_path / "reference")
    first = run(f"gs://{bkt.name}/raw", tmp_path / "pool")
    assert {s["key"] for s in first.skipped} == {s["key"] for s in reference.skipped} == BROKEN
    assert all(s["reason"] for s in first.skipped)
    assert first.selected == reference.selected
    a, b = Pool.open(tmp_path / "pool"), Pool.open(tmp_path / "reference")
    assert a.filenames == b.filenames
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    listed = {k: str(v.generation) for k in first_keys(bucket) if (v := bkt.get_blob("raw/" + k))}
    got = gcs.downloads()
    assert sorted(n for n, _, _, _ in got) == sorted("raw/" + k for k in listed)
    for name, query, _, _ in got:
        assert query["ifGenerationMatch"] == listed[name.removeprefix("raw/")]
    ledger = a.ledger.set_index("key")
    assert ledger.loc["img0.jpg", "etag"] == first_etag(bucket / "img0.jpg")

    gcs.requests.clear()
    second = run(f"gs://{bkt.name}/raw", tmp_path / "pool")
    assert second.counts["new"] == second.counts["changed"] == 0
    assert gcs.downloads() == []  # nothing new: the listing alone

    r = run_cli("report", tmp_path / "pool", "--thumbnails", "--out", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr  # (the pool was made without: read from the bucket)
    assert r.stdout.startswith(f"thumbnails  {len(a.filenames)} added ")

    gcs.requests.clear()
    r = run_cli("export", tmp_path / "pool", tmp_path / "out", "--all")
    assert r.returncode == 0, r.stderr
    names = (tmp_path / "out" / "selected_filenames.txt").read_text().split()
    assert sorted(names) == sorted(a.filenames)
    for name in names:
        if not name.endswith("-mp4.png"):
            assert (tmp_path / "out" / name).read_bytes() == (bucket / name).read_bytes()
    assert {n for n, _, _, _ in gcs.downloads()} <= {"raw/" + k for k in listed}


def first_keys(folder: Path) -> list[str]:
    from datapool.naming import media_kind

    return [
        p.relative_to(folder).as_posix()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and media_kind(p.name) is not None
    ]


def first_etag(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_rewritten_object_is_read_again_and_the_same_bytes_are_not(
    gcs, gcs_emulator, tmp_path
) -> None:
    src = tmp_path / "src"
    for i in range(3):
        write_media(src / f"img{i}.jpg", seed=i)
    bkt = new_bucket(gcs_emulator)
    upload(bkt, src)
    run(f"gs://{bkt.name}/raw", tmp_path / "pool", n_samples=3, export=str(tmp_path / "e"))
    for i in range(3):  # (run --export: read again under the run's listing)
        assert (tmp_path / "e" / f"img{i}.jpg").read_bytes() == (src / f"img{i}.jpg").read_bytes()
    write_media(tmp_path / "new.jpg", seed=50)
    bkt.blob("raw/img1.jpg").upload_from_string((tmp_path / "new.jpg").read_bytes())
    bkt.blob("raw/img2.jpg").upload_from_string((src / "img2.jpg").read_bytes())  # same bytes

    # An export of the pool as it is refuses the sample whose object changed.
    r = run_cli("export", tmp_path / "pool", tmp_path / "out", "--json")
    assert r.returncode == 1, r.stderr
    refused = json.loads(r.stdout)["refused"]
    assert [x["name"] for x in refused] == ["img1.jpg"]

    gcs.requests.clear()
    res = run(f"gs://{bkt.name}/raw", tmp_path / "pool", n_samples=3)
    assert (res.counts["changed"], res.counts["unchanged"]) == (1, 2)
    assert [n for n, _, _, _ in gcs.downloads()] == ["raw/img1.jpg"]
    ledger = Pool.open(tmp_path / "pool").ledger.set_index("key")
    assert ledger.loc["img1.jpg", "etag"] == first_etag(tmp_path / "new.jpg")

    # A renamed object (copied, then deleted) is known by its bytes: not read again.
    bkt.copy_blob(bkt.blob("raw/img0.jpg"), bkt, "raw/renamed.jpg")
    bkt.delete_blob("raw/img0.jpg")
    gcs.requests.clear()
    res = run(f"gs://{bkt.name}/raw", tmp_path / "pool", n_samples=3)
    assert (res.counts["new"], res.counts["moved"]) == (0, 1)
    assert gcs.downloads() == []


def _listed_then_b_rewritten(gcs_emulator: str, tmp_path: Path) -> tuple[Any, GcsSource]:
    """A bucket of a.jpg and b.jpg under raw/, a source that listed it, then b.jpg rewritten
    (a.jpg's bytes): (the bucket, the source)."""
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    write_media(src / "b.jpg", seed=2)
    bkt = new_bucket(gcs_emulator)
    upload(bkt, src)
    source = GcsSource(f"gs://{bkt.name}/raw")
    source.list()
    bkt.blob("raw/b.jpg").upload_from_string((src / "a.jpg").read_bytes())
    return bkt, source


def test_an_object_rewritten_after_the_listing_is_skipped_and_read_again(
    gcs, gcs_emulator, tmp_path
) -> None:
    _, source = _listed_then_b_rewritten(gcs_emulator, tmp_path)
    got = dict(source.open_inputs(["a.jpg", "b.jpg"]))
    assert not isinstance(got["a.jpg"], SourceError)
    got["a.jpg"].close()
    assert isinstance(got["b.jpg"], SourceError)
    assert str(got["b.jpg"]) == (
        f"{READ_FAILED}the object changed after it was listed (its generation differs); "
        "tried again next run"
    )


def test_a_source_without_a_listing_reads_as_another_listed_when_pinned(
    gcs, gcs_emulator, tmp_path
) -> None:
    """The Ray engine's workers read through a source that listed nothing, pinned to the
    driver's listing (listed_version -> pin): the same skip as the source that listed."""
    bkt, driver = _listed_then_b_rewritten(gcs_emulator, tmp_path)
    worker = GcsSource(f"gs://{bkt.name}/raw")
    for key in ("a.jpg", "b.jpg"):
        listed = driver.listed_version(key)
        assert listed is not None
        worker.pin(key, *listed)
    got = dict(worker.open_inputs(["a.jpg", "b.jpg"]))
    assert not isinstance(got["a.jpg"], SourceError)
    got["a.jpg"].close()
    assert str(got["b.jpg"]) == (
        f"{READ_FAILED}the object changed after it was listed (its generation differs); "
        "tried again next run"
    )
    worker.pin("b.jpg", -1, "")  # unpinned: what is there now
    ((_, media),) = worker.open_inputs(["b.jpg"])
    assert not isinstance(media, SourceError)
    assert media.read() == (tmp_path / "src" / "a.jpg").read_bytes()
    media.close()


def test_a_body_cut_short_is_read_on_a_corrupt_one_again(gcs, gcs_emulator, tmp_path) -> None:
    src = tmp_path / "src"
    write_media(src / "clip.mp4", seed=3, frames=6)
    write_media(src / "a.png", seed=4)
    write_media(src / "b.jpg", seed=5)
    bkt = new_bucket(gcs_emulator)
    upload(bkt, src)
    gcs.cut = {"raw/clip.mp4", "raw/a.png"}
    gcs.flip = {"raw/b.jpg"}
    source = GcsSource(f"gs://{bkt.name}/raw")
    source.list()
    for key, media in source.open_inputs(["a.png", "b.jpg", "clip.mp4"]):
        assert not isinstance(media, (SourceError, str))
        with media:
            assert media.read() == (src / key).read_bytes()
    assert gcs.cut == gcs.flip == set()  # every fault was met
    assert [d[0] for d in gcs.downloads()].count("raw/b.jpg") == 2  # (downloaded again)
    for key in ("a.png", "clip.mp4"):
        size = (src / key).stat().st_size
        (_, q1, r1, sent), (_, q2, r2, rest) = [d for d in gcs.downloads() if d[0] == "raw/" + key]
        assert (r1, sent) == ("", size // 2)
        assert r2 == f"bytes={sent}-" and rest == size - sent
        assert q1["ifGenerationMatch"] == q2["ifGenerationMatch"]  # still the listed version


def test_an_object_given_as_the_source_stops_the_run(gcs, gcs_emulator, bucket, tmp_path) -> None:
    """`gs://b/raw/img0.jpg` as SOURCE listed nothing under `raw/img0.jpg/` and exited 0 with
    "check the path"; now it stops as a local file given as SOURCE does (tests/test_s3.py)."""
    bkt = new_bucket(gcs_emulator)
    upload(bkt, bucket)
    with pytest.raises(SourceError) as e:
        run(f"gs://{bkt.name}/raw/img0.jpg", tmp_path / "pool")
    assert str(e.value) == (
        f"source gs://{bkt.name}/raw/img0.jpg is an object, not a prefix; give the prefix that "
        f"holds it, gs://{bkt.name}/raw/ (add --include 'img0.jpg' to use only this object)"
    )
    assert run(f"gs://{bkt.name}/ra", tmp_path / "pool").run_index is None  # no object: as before


def test_a_missing_bucket_and_a_denied_one_are_one_line(gcs, gcs_emulator, tmp_path) -> None:
    r = run_cli("run", "gs://dp-no-such-bucket/raw", "--pool", tmp_path / "p", "--n-samples", "1")
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and "'dp-no-such-bucket' does not exist" in r.stderr
    bkt = new_bucket(gcs_emulator)
    gcs.deny = {bkt.name}
    r = run_cli("run", f"gs://{bkt.name}/raw", "--pool", tmp_path / "p", "--n-samples", "1")
    assert r.returncode == 5, r.stderr
    line = r.stderr.strip()
    assert r.stderr.count("\n") == 1 and f"GCS bucket {bkt.name!r} failed: HTTP 403" in line
    assert "Application Default Credentials" in line
    assert not (tmp_path / "p").exists()


def test_an_endpoint_that_is_down_is_one_line(monkeypatch, caplog) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_free_port()}")
    source = GcsSource("gs://some-bucket/raw", retry_timeout_s=1.5)
    with pytest.raises(SourceError) as e:
        source.list()
    assert str(e.value).startswith(
        "listing gs://some-bucket/raw/ in GCS bucket 'some-bucket': cannot reach the endpoint "
        "http://127.0.0.1:"
    )
    assert "retrying for up to 1.5 s" in caplog.text


def test_credentials_that_cannot_be_used_are_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    with pytest.raises(SourceError) as e:
        GcsSource("gs://some-bucket/raw")
    assert str(e.value).startswith(
        "GCS bucket 'some-bucket': the credentials GOOGLE_APPLICATION_CREDENTIALS names cannot "
        f"be used: File {tmp_path / 'key.json'} was not found"
    )


def test_no_credentials_names_the_bucket(monkeypatch, tmp_path) -> None:
    """Before, a run of gs://some-bucket/raw without credentials said "gs://: no Google Cloud
    credentials found ...", the one GCS error that did not name the bucket; it does now."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud login here
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # google-auth: not on GCE, no metadata server
    with pytest.raises(SourceError) as e:
        GcsSource("gs://some-bucket/raw")
    assert str(e.value) == (
        "GCS bucket 'some-bucket': no Google Cloud credentials found (Application Default "
        "Credentials): run `gcloud auth application-default login`, or set "
        "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
    )


def test_lightly_predictions_and_metadata_from_a_gs_source_or_folder(
    gcs, gcs_emulator, tmp_path
) -> None:
    """The source's own `.lightly/predictions` and `.lightly/metadata` in the bucket, then the
    same as `--predictions gs://...` and `--metadata gs://...` folders for a local source; a
    file the filters leave out (malformed predictions) is never read."""
    from .test_strategies_s3 import (
        UNCERTAIN_AND_BRIGHT,
        _bright_and_dark,
        _check_uncertain_and_bright,
        _report,
    )

    probs = _bright_and_dark(tmp_path / "src")
    bkt = new_bucket(gcs_emulator)
    upload(bkt, tmp_path / "src")
    upload(bkt, tmp_path / "src" / ".lightly" / "predictions", "preds/")
    upload(bkt, tmp_path / "src" / ".lightly" / "metadata", "meta/")
    common = {"n_samples": 10, "strategies": UNCERTAIN_AND_BRIGHT, "exclude": ("left_out.jpg",)}
    res = run(f"gs://{bkt.name}/raw", tmp_path / "pool", **common)
    _check_uncertain_and_bright(res, _report(res), probs)
    (tmp_path / "src" / ".lightly" / "metadata" / "schema.json").write_text("{oops")  # not read
    (tmp_path / "src" / ".lightly" / "predictions" / "tasks.json").write_text("{oops")
    res = run(
        tmp_path / "src",
        tmp_path / "pool2",
        predictions_dir=f"gs://{bkt.name}/preds",
        metadata_dir=f"gs://{bkt.name}/meta",
        **common,
    )
    _check_uncertain_and_bright(res, _report(res), probs)


def test_a_folder_moved_into_a_bucket_and_back_keeps_its_pool(gcs, gcs_emulator, tmp_path) -> None:
    """--source-moved from a folder to gs://: each object of the ledger's size is downloaded once
    and hashed, the same bytes are the same file (its MD5 recorded from then on); and from the
    bucket to a folder again (a `gcloud storage cp -r` of it): the files whose MD5 is the
    ledger's are the same, one renamed on the way keeps its samples; nothing is embedded again."""
    src = tmp_path / "src"
    for i in range(3):
        write_media(src / f"f{i}.jpg", seed=i)
    pool = tmp_path / "pool"
    run(src, pool, n_samples=3)
    bkt = new_bucket(gcs_emulator)
    upload(bkt, src)
    moved = run(f"gs://{bkt.name}/raw", pool, n_samples=3, source_moved=True)
    c = moved.counts
    assert (c["unchanged"], c["touched"], c["processed"]) == (3, 3, 0), c
    assert sorted(n for n, _, _, _ in gcs.downloads()) == [f"raw/f{i}.jpg" for i in range(3)]
    ledger = Pool.open(pool).ledger.set_index("key")
    assert ledger.loc["f0.jpg", "etag"] == first_etag(src / "f0.jpg")

    back = tmp_path / "back"
    for key in ("f0.jpg", "renamed/f1.jpg", "f2.jpg"):
        (back / key).parent.mkdir(parents=True, exist_ok=True)
        (back / key).write_bytes((src / key.removeprefix("renamed/")).read_bytes())
    c = run(back, pool, n_samples=3, source_moved=True).counts
    assert (c["touched"], c["moved"], c["processed"]) == (2, 1, 0), c
    assert "renamed/f1.jpg" in Pool.open(pool).filenames


def test_exists_asks_for_an_objects_metadata_and_reads_none_of_it(gcs, gcs_emulator, tmp_path):
    """`exists` (what an export asks of a file a predictions file names in place of its own
    image): the object's metadata, never a download of it; a missing object is False, and a
    bucket that refuses it stops with one line."""
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    bkt = new_bucket(gcs_emulator)
    upload(bkt, src)
    source = GcsSource(f"gs://{bkt.name}/raw")
    assert source.exists("a.jpg") and not source.exists("b.jpg")
    assert gcs.downloads() == []
    gcs.deny = {bkt.name}
    with pytest.raises(SourceError, match=r"asking for 'a\.jpg' in GCS bucket .*HTTP 403"):
        source.exists("a.jpg")
