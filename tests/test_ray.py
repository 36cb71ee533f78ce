"""The ray engine (ingest/ray_engine.py) against the local one, on a real local Ray.

One Ray (`ray.init(num_cpus=2)`) is shared by the module's tests. The source holds images,
broken files and H.264 videos with a keyframe every few frames (B-frames included), long enough
to be split into frame ranges with RANGE_FRAMES set for the test (splitting is off by default). Each test checks that
`engine="ray"` gives the pool the threaded engine gives, byte for byte: the CSV, the ledger, the
embeddings and names, the model record and the runs (times aside).

Without Ray installed these tests skip; the tests of the flags and of the install hint run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool import DatapoolError
from datapool.cli import main
from datapool.config import RunConfig
from datapool.ingest import ray_engine

from .conftest import PACKAGE_PATH, clip_frames, write_media

SAME_BYTES = (
    "datapool_latest.csv",
    "ledger.csv",
    "model.json",
    ".sidecar/embeddings.f32",
    ".sidecar/names.bin",
    ".sidecar/labels.i64",
)


def write_gif(path: Path, frames: list[np.ndarray]) -> Path:
    """An animated GIF of `frames`, written by FFmpeg's GIF encoder."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("gif", rate=10)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "rgb8"
        for f in frames:
            for p in s.encode(
                av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="rgb8")
            ):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def write_gop_video(path: Path, frames: int, gop: int, seed: int) -> Path:
    """An H.264 MP4 with a keyframe every `gop` frames and x264's B-frames."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = 64, 96
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "g": str(gop), "bf": "2"}
        for rgb in clip_frames(seed, frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip(
        "ray", reason='Ray is not installed (the extra: pip install "datapool[ray]")'
    )
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    # Workers import datapool from where this process does (a checkout run with PYTHONPATH).
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([PACKAGE_PATH, *([old] if old else [])])
    # A GCS emulator whose address the workers inherit (test_a_gs_source_...), where installed.
    gcs = _gcs_emulator()
    # So too a moto S3 server and boto3's settings for it (test_an_s3_...), where installed.
    moto, aws = _moto_s3()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if gcs is not None:
            gcs.stop()
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        if moto is not None:
            moto.stop()
            for var, value in aws.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _gcs_emulator():
    """gcp-storage-emulator on a free port, its address in STORAGE_EMULATOR_HOST; None where
    it or google-cloud-storage is not installed."""
    try:
        import google.cloud.storage  # noqa: F401
        from gcp_storage_emulator.server import create_server
    except ImportError:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    return server


# the moto server's address, while the module's Ray runs (None: boto3 or moto is not installed)
MOTO: dict[str, str | None] = {"endpoint": None}


def _moto_s3():
    """A moto S3 server on a free port, and boto3's standard chain pointed at it with dummy
    credentials (tests/test_s3.py's s3_env) in this environment, which the workers inherit: the
    server and the variables as they were, to put back; (None, {}) where boto3 or moto's server
    is not installed."""
    try:
        import boto3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None, {}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    MOTO["endpoint"] = endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
    }
    unset = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3")
    saved = {var: os.environ.get(var) for var in (*env, *unset)}
    for var in unset:
        os.environ.pop(var, None)
    os.environ.update(env)
    return server, saved


@pytest.fixture
def cli_signals():
    """main() leaves SIGINT and SIGTERM ignored once a run is over (_signals.ignore): put them
    back, or every process this pytest starts later inherits SIG_IGN."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def small_ranges(monkeypatch):
    monkeypatch.setattr(ray_engine, "RANGE_FRAMES", 12)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray") / "bucket"
    for i in range(4):
        write_media(root / f"img{i}.jpg", seed=i)
    write_media(root / "sub" / "deep.png", seed=9)
    write_gop_video(root / "cam" / "long.mp4", 60, gop=10, seed=30)
    write_gop_video(root / "cam" / "odd.mp4", 47, gop=7, seed=31)
    write_media(root / "cam" / "short.mp4", seed=32, frames=12)
    write_gif(root / "cam" / "anim.gif", clip_frames(33, 5))  # an animation: read as a video
    good = (root / "cam" / "long.mp4").read_bytes()
    (root / "cam" / "broken.mp4").write_bytes(good[: len(good) // 3])
    (root / "notes.png").write_text("this is text, not a PNG\n")
    (root / "empty.jpg").write_bytes(b"")
    return root


def assert_same_bytes(a: Path, b: Path) -> None:
    for name in SAME_BYTES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    runs = [json.loads((p / "runs.json").read_text()) for p in (a, b)]
    for r in runs:
        for run in r if isinstance(r, list) else r["runs"]:
            for k in ("started_at", "finished_at", "timings"):
                run.pop(k, None)
    assert runs[0] == runs[1]


def both(source: Path | str, tmp_path: Path, **options) -> tuple[Path, Path, list]:
    """Run the threaded engine and the ray engine on copies of nothing: two fresh pools."""
    pools, results = [], []
    for engine in ("threaded", "ray"):
        pool = tmp_path / engine
        results.append(datapool.run(source, pool, engine=engine, progress=False, **options))
        pools.append(pool)
    assert results[0].counts == results[1].counts
    assert results[0].skipped == results[1].skipped
    return pools[0], pools[1], results


def test_ray_address_auto_without_a_cluster_stops_the_run_in_one_line(
    source, tmp_path, monkeypatch
):
    # (First in this module: its ray_cluster fixture's own Ray, once started, is one `auto` finds.)
    running = any(b"gcs_server" in _cmdline(p) for p in Path("/proc").glob("[0-9]*"))
    if running or Path("/tmp/ray/ray_current_cluster").exists():
        pytest.skip("a Ray cluster runs on this machine: `auto` would find it")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    r = ray_cli(source, tmp_path / "pool", "--ray-address", "auto")
    assert r.returncode == 4, r.stderr[-2000:]
    assert r.stderr == (
        "datapool: error: --ray-address auto: no Ray cluster is running on this machine; start "
        "one (`ray start --head`), give a cluster's address (HOST:6379), or leave --ray-address "
        "out for a local Ray started for this run\n"
    )
    assert not (tmp_path / "pool").exists()


def test_long_videos_are_split_at_keyframes(source, small_ranges):
    from datapool.config import IngestOptions, ModelSpec
    from datapool.ingest import IngestSpec

    spec = IngestSpec(str(source), (), ModelSpec(), IngestOptions())
    parts = ray_engine._plan({"key": "cam/long.mp4", "kind": "video"}, spec, 12)
    assert [(p["start"], p["stop"]) for p in parts] == [(0, 20), (20, 40), (40, -1)]
    assert ray_engine._plan({"key": "cam/short.mp4", "kind": "video"}, spec, 12)[0]["parts"] == 1
    assert ray_engine._plan({"key": "cam/broken.mp4", "kind": "video"}, spec, 12)[0]["parts"] == 1


@pytest.mark.parametrize("options", [{}, {"frame_stride": 3, "batch_size": 5}, {"fps": 4.0}])
def test_same_pool_as_the_local_engine(ray_cluster, source, small_ranges, tmp_path, options):
    a, b, results = both(source, tmp_path, n_samples=40, **options)
    assert_same_bytes(a, b)
    skipped = {s["key"] for s in results[1].skipped}
    assert skipped == {"cam/broken.mp4", "notes.png", "empty.jpg"}


def test_a_gs_source_on_the_ray_engine_gives_the_local_engines_pool(
    ray_cluster, source, small_ranges, tmp_path
):
    """Each Ray task opens the gs:// source itself (google-cloud-storage on the workers, the
    emulator's address in their environment): the pool of the threaded engine, byte for byte."""
    if "STORAGE_EMULATOR_HOST" not in os.environ:
        pytest.skip('needs google-cloud-storage and gcp-storage-emulator (pip install ".[test]")')
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="datapool-test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"dp-ray-{os.getpid()}")
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if path.is_file() and "long" not in rel and "odd" not in rel:  # (short: seconds)
            bucket.blob("raw/" + rel).upload_from_string(path.read_bytes())
    a, b, results = both(f"gs://{bucket.name}/raw", tmp_path, n_samples=40)
    assert_same_bytes(a, b)
    assert {s["key"] for s in results[1].skipped} == {"cam/broken.mp4", "notes.png", "empty.jpg"}


def test_an_s3_object_rewritten_after_the_listing_is_skipped_as_by_the_local_engine(
    ray_cluster, source, tmp_path, monkeypatch
):
    """Each Ray task reads an object pinned to the ETag the run listed (If-Match), as the local
    engine does: one rewritten between the listing and the reads is skipped with the local
    engine's reason and read again next run. Ray's tasks read whatever was there: img1.jpg was
    embedded from the new bytes and recorded under the listed ETag."""
    if MOTO["endpoint"] is None:
        pytest.skip('needs boto3 and moto\'s server (pip install ".[test]")')
    import uuid

    import boto3

    from datapool import runner

    s3 = boto3.client("s3", endpoint_url=MOTO["endpoint"])
    bucket = f"dp-ray-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if path.is_file() and "long" not in rel and "odd" not in rel:  # (short: seconds)
            s3.put_object(Bucket=bucket, Key="raw/" + rel, Body=path.read_bytes())
    url = f"s3://{bucket}/raw"
    a, b, results = both(url, tmp_path / "as-listed", n_samples=40)
    assert_same_bytes(a, b)
    assert {s["key"] for s in results[1].skipped} == {"cam/broken.mp4", "notes.png", "empty.jpg"}

    # Between the listing and the reads, img1.jpg is rewritten (other bytes each time, so that
    # the second run's listing, which sees the first rewrite, is outdated too).
    others = iter([source / "img2.jpg", source / "img3.jpg"])
    get_engine = runner.get_engine

    class Rewriting:
        def __init__(self, name: str) -> None:
            self.engine = get_engine(name)

        def ingest(self, spec, **kw):
            assert "img1.jpg" in spec.keys
            body = next(others).read_bytes()
            s3.put_object(Bucket=bucket, Key="raw/img1.jpg", Body=body)
            return self.engine.ingest(spec, **kw)

    monkeypatch.setattr(runner, "get_engine", Rewriting)
    a, b, results = both(url, tmp_path / "rewritten", n_samples=40)
    reasons = [{s["key"]: s["reason"] for s in r.skipped} for r in results]
    assert reasons[1] == reasons[0]
    assert "the object changed after it was listed (its ETag differs)" in reasons[1]["img1.jpg"]
    # The same pool, but for the listing of img1.jpg each run saw (its size, time and ETag).
    for name in SAME_BYTES:
        if name != "ledger.csv":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    rows = [(p / "ledger.csv").read_text().splitlines() for p in (a, b)]
    assert [r for r in rows[0] if not r.startswith("img1.jpg,")] == [
        r for r in rows[1] if not r.startswith("img1.jpg,")
    ]
    (row,) = [r for r in rows[1] if r.startswith("img1.jpg,")]
    assert ",the object changed after it was listed (its ETag differs);" in row
    assert "img1.jpg" not in (b / "datapool_latest.csv").read_text()


@pytest.fixture(scope="module")
def cut_source(tmp_path_factory) -> Path:
    """Videos cut as editors and cameras cut them, long enough to split with RANGE_FRAMES 12: an
    MP4 cut without re-encoding (`ffmpeg -ss 2.35 -c copy`: an edit list hides the 4 frames
    from the keyframe before the cut), and clips that start mid-GOP (an MP4, and an HEVC MP4
    without a sync-sample table, read from their first keyframe)."""
    from . import test_video_mid_gop as mid_gop
    from .test_video_timing import cut_without_reencoding

    root = tmp_path_factory.mktemp("cuts")
    src = root / "src"
    src.mkdir()
    long = write_gop_video(root / "long.mp4", 60, gop=10, seed=34)
    cut_without_reencoding(long, src / "trim.mp4", 2.35)
    mid_gop.copied_from(mid_gop.encode(root / "a.ts", "libx264", 80), src / "mid.mp4", 10)
    mid_gop.flagged_keyframes(mid_gop.encode(root / "b.ts", "libx265", 80), src / "hevc.mp4", 7)
    return src


def test_ranges_of_cut_videos_give_the_frames_and_names_of_a_whole_decode(cut_source):
    """The frames of each range, put together, are those `iter_frames` gives the whole file,
    by name and by pixels. A clip cut with `-c copy` was split at frame indices that counted
    the frames its edit list hides: trim.mp4 gave 40 frames for its 36, 16 of them named after
    another frame."""
    from datapool.config import IngestOptions, ModelSpec
    from datapool.ingest import IngestSpec
    from datapool.ingest.decode import iter_frames

    spec = IngestSpec(str(cut_source), (), ModelSpec(), IngestOptions())
    for key in ("trim.mp4", "mid.mp4", "hevc.mp4"):
        parts = ray_engine._plan({"key": key, "kind": "video"}, spec, 12)
        rows = [r for p in parts for r in ray_engine._decode(p, spec, (48, 24)) if not r["status"]]
        whole = list(iter_frames(cut_source / key, key, "video", (48, 24)))
        assert [(r["index"], r["name"]) for r in rows] == [(f.index, f.name) for f in whole], key
        for r, f in zip(rows, whole):
            assert np.abs(r["rgb"].astype(int) - f.rgb).mean() < 1, (key, f.name)
    parts = ray_engine._plan({"key": "trim.mp4", "kind": "video"}, spec, 12)
    assert [(p["start"], p["stop"]) for p in parts] == [(0, 16), (16, -1)]


def test_cut_videos_give_the_local_engines_pool(ray_cluster, cut_source, small_ranges, tmp_path):
    a, b, results = both(cut_source, tmp_path, proportion_samples=1.0)
    assert_same_bytes(a, b)
    assert results[1].skipped == [] and len(results[1].selected) == 36 + 2 * 55


def test_the_ray_engine_makes_the_same_thumbnails(ray_cluster, source, small_ranges, tmp_path):
    """Whole files and frame ranges alike: the thumbnails of the local engine, byte for byte."""
    from datapool.pool.local import read_thumbnails

    local, pool, _ = both(source, tmp_path, n_samples=40, batch_size=4)
    names = set(datapool.Pool.open(local).filenames)
    thumbs = read_thumbnails(local, names)
    assert len(thumbs) == len(names) and any("-mp4.png" in n for n in names)
    assert read_thumbnails(pool, names) == thumbs


def test_a_killed_actor_does_not_change_the_pool(
    ray_cluster, source, small_ranges, tmp_path, monkeypatch
):
    local = tmp_path / "threaded"
    datapool.run(source, local, engine="threaded", progress=False, n_samples=40, batch_size=4)
    killed: list[int] = []
    add = ray_engine._Collected.add

    def add_then_kill(self, batch, on_frames=None):  # first results: an actor is at work
        if not killed:
            killed.extend(_kill_descendants("_Embed"))
        return add(self, batch, on_frames)

    monkeypatch.setattr(ray_engine._Collected, "add", add_then_kill)
    pool = tmp_path / "ray"
    datapool.run(source, pool, engine="ray", progress=False, n_samples=40, batch_size=4)
    assert killed, "no embedding actor was found to kill"
    assert_same_bytes(local, pool)


def _kill_descendants(title: str) -> list[int]:
    """SIGKILL this process's descendants whose command line names `title` (Ray's actors)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            names[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    me, hit = os.getpid(), []
    for pid, name in names.items():
        p, seen = pid, 0
        while p in parents and p != me and seen < 64:
            p, seen = parents[p], seen + 1
        if p == me and title in name:
            os.kill(pid, signal.SIGKILL)
            hit.append(pid)
    return hit


def test_a_second_run_processes_only_the_new_files(ray_cluster, source, small_ranges, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(source, src)
    a, b, _ = both(src, tmp_path, n_samples=10)
    write_media(src / "new" / "img.jpg", seed=50)
    write_gop_video(src / "new" / "clip.mp4", 30, gop=6, seed=51)
    second = [
        datapool.run(src, p, engine=e, progress=False, n_samples=10)
        for e, p in (("threaded", a), ("ray", b))
    ]
    assert second[1].counts["processed"] == 2
    assert second[0].counts == second[1].counts
    assert_same_bytes(a, b)


def test_the_cli_runs_the_ray_engine(ray_cluster, source, tmp_path, capsys, cli_signals):
    local, pool = tmp_path / "local", tmp_path / "ray"
    args = [str(source), "--n-samples", "5", "--no-progress", "--json"]
    assert main(["run", *args[:1], "--pool", str(local), *args[1:]]) == 0
    assert main(["run", *args[:1], "--pool", str(pool), *args[1:], "--engine", "ray"]) == 0
    capsys.readouterr()
    assert_same_bytes(local, pool)


def test_without_ray_the_engine_says_how_to_install_it(
    monkeypatch, source, tmp_path, capsys, cli_signals
):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(DatapoolError, match=r'pip install "datapool\[ray\]"'):
        datapool.run(source, tmp_path / "pool", engine="ray", n_samples=3, progress=False)
    assert not (tmp_path / "pool").exists() or not (tmp_path / "pool" / "ledger.csv").exists()
    assert (
        main(
            [
                "run",
                str(source),
                "--pool",
                str(tmp_path / "p"),
                "--n-samples",
                "3",
                "--engine",
                "ray",
            ]
        )
        == 4  # a usage error: the extra is missing (README: exit codes)
    )
    err = capsys.readouterr().err
    assert 'pip install "datapool[ray]"' in err and err.count("\n") == 1


def ray_cli(source: Path, pool: Path, *flags: str, env: dict[str, str] | None = None):
    """`datapool run SOURCE --engine ray` in a child process (no Ray of this process's tests)."""
    pytest.importorskip("ray.data", reason='Ray is not installed (pip install "datapool[ray]")')
    args = ["run", str(source), "--pool", str(pool), "--n-samples", "3", "--engine", "ray"]
    return subprocess.run(
        [sys.executable, "-m", "datapool", *args, "--no-progress", *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_PATH, **(env or {})},
        timeout=120,  # (ray.init alone retried an address where nothing listens for minutes)
    )


@pytest.mark.parametrize("given", ["--ray-address", "RAY_ADDRESS"])
def test_an_address_where_no_ray_answers_stops_the_run_in_one_line(
    source, tmp_path, monkeypatch, given
):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if given == "RAY_ADDRESS":
        r = ray_cli(source, tmp_path / "pool", env={"RAY_ADDRESS": address})
    else:
        r = ray_cli(source, tmp_path / "pool", "--ray-address", address)
    assert r.returncode == 4, r.stderr[-2000:]
    assert r.stderr.startswith(f"datapool: error: {given} {address}: no Ray cluster answers there")
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "pool").exists()


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return b""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ray_address": "auto"}, r"^ray_address \(--ray-address\) needs engine='ray'"),
        ({"ray_num_gpus": 1.0}, r"^ray_num_gpus \(--ray-num-gpus\) needs engine='ray'"),
        (
            {"ray_address": "auto", "ray_num_gpus": 1.0},
            r"^ray_address \(--ray-address\) and ray_num_gpus \(--ray-num-gpus\) need engine",
        ),
        ({"engine": "ray", "ray_num_gpus": 0}, "ray_num_gpus must be"),
        ({"engine": "ray", "ray_num_gpus": float("nan")}, "ray_num_gpus must be"),
        ({"engine": ""}, "engine must be"),
    ],
)
def test_engine_options_are_checked(options, message):
    with pytest.raises(DatapoolError, match=message):
        RunConfig(n_samples=1, **options)


def test_the_engine_is_not_part_of_the_recorded_config():
    cfg = RunConfig(n_samples=1, engine="ray", ray_address="auto", ray_num_gpus=0.5)
    assert cfg.to_json() == RunConfig(n_samples=1).to_json()
    with pytest.raises(DatapoolError, match="unknown ingest engine"):
        datapool.ingest.get_engine("spark")


def test_frames_are_deduplicated_and_ordered():
    rows = {
        "key": np.array(["v.mp4"] * 5, object),
        "part": np.array([1, 0, 1, 0, 1]),
        "parts": np.array([2] * 5),
        "index": np.array([3, 0, 3, 1, 1]),
        "name": np.array(["v-3-mp4.png", "v-0-mp4.png", "v-3-mp4.png", "", ""], object),
        "status": np.array(["", "", "", "ok", "ok"], object),
        "count": np.array([4] * 5),
        "emb": np.eye(5, dtype=np.float32),
        "thumb": np.array([b"t3", b"t0", b"t3", b"", b""], object),
        "streams": np.array(["", "2 streams", "", "", ""], object),
        "pillow": np.zeros(5, bool),
        "lead": np.array([0, 0, 0, 7, 0]),
        "metrics": np.zeros((5, 1)),
    }
    c = ray_engine._Collected()
    progress: list[tuple[str, int, int]] = []
    assert c.add(rows, lambda *a: progress.append(a)) == ["v.mp4"]
    assert c.add(rows, lambda *a: progress.append(a)) == []  # a retried range: nothing twice
    assert progress == [("v.mp4", 1, 4), ("v.mp4", 2, 4)]
    out = c.results(["v.mp4"])
    assert out.status == {"v.mp4": ("ok", 2)}
    assert [(name, row.argmax()) for name, row in out.rows["v.mp4"]] == [
        ("v-0-mp4.png", 1),
        ("v-3-mp4.png", 0),
    ]
    assert out.thumbs == {"v-0-mp4.png": b"t0", "v-3-mp4.png": b"t3"}
    assert (out.streams, out.lead, out.metadata) == ({"v.mp4": "2 streams"}, {"v.mp4": 7}, {})


def test_actors_leave_cpus_to_decoding_and_gpus_must_exist():
    assert ray_engine._sizes({"CPU": 2.0}, None) == (1, {"num_cpus": 1.0}, 1.0)
    assert ray_engine._sizes({"CPU": 1.0}, None) == (1, {"num_cpus": 0.5}, 0.5)
    assert ray_engine._sizes({"CPU": 8.0, "GPU": 2.0}, 0.5)[:2] == (
        4,
        {"num_gpus": 0.5, "num_cpus": 0.0},
    )
    with pytest.raises(DatapoolError, match="has 0 GPUs"):
        ray_engine._sizes({"CPU": 8.0}, 1.0)


_OUT_OF_MEMORY = """
import resource, sys
import numpy as np
from datapool.config import ModelSpec
from datapool.errors import ModelError
from datapool.ingest import ray_engine

actor = ray_engine._Embed(ModelSpec())  # the bundled model: 128x128, 192 KiB a packed frame
n = 1024  # 192 MiB of packed frames; 48 MiB of them as uint8 RGB in the batch
batch = {
    "key": np.array(["a.png"] * n, object), "part": np.zeros(n, np.int64),
    "parts": np.ones(n, np.int64), "index": np.arange(n), "name": np.array(["a"] * n, object),
    "status": np.array([""] * n, object), "count": np.ones(n, np.int64),
    "thumb": np.array([b""] * n, object), "rgb": np.zeros((n, 128, 128, 3), np.uint8),
}
with open("/proc/self/status") as f:
    size = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20),) * 2)  # 64 MiB more, no more
try:
    actor(batch)
except ModelError as e:
    print("ModelError:", e)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_an_actor_out_of_memory_for_its_batch_names_the_flag(tmp_path):
    # An embedding actor that could not allocate its batch raised a bare MemoryError, which
    # reached the user as Ray's traceback. The actor runs here in a process whose address space
    # is capped just above what it holds, as a worker on a full node would be.
    env = {**os.environ, "PYTHONPATH": PACKAGE_PATH}
    done = subprocess.run(
        [sys.executable, "-c", _OUT_OF_MEMORY], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ModelError: a batch of 1024 frames at model datapool-features")
    assert "more than could be allocated; give a smaller --batch-size" in done.stdout


_DECODE_OUT_OF_MEMORY = """
import resource, sys
import av, numpy  # loaded before the cap
from datapool.config import IngestOptions, ModelSpec
from datapool.errors import DecodeError
from datapool.ingest import IngestSpec, decode, ray_engine

folder, key = sys.argv[1], sys.argv[2]
spec = IngestSpec(folder, ((key, "image"),), ModelSpec(), IngestOptions())
with open("/proc/self/status") as f:
    size = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20),) * 2)  # 64 MiB more, no more
try:  # the threaded engine's decode
    list(decode.iter_frames(f"{folder}/{key}", key, "image", (128, 128)))
except DecodeError as e:
    print("threaded:", e)
rows = list(ray_engine._decode(ray_engine._whole(key, "image"), spec, (128, 128)))
print("ray:", rows[-1]["status"])
"""


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory) -> Path:
    """A 9000x9000 JPEG (81 megapixels, under decode.MAX_PIXELS): its YUV frame alone is 116 MiB."""
    from datapool.media import write_image

    folder = tmp_path_factory.mktemp("huge")
    ramp = np.linspace(0, 255, 9000, dtype=np.float32).astype(np.uint8)
    write_image(folder / "huge.jpg", np.broadcast_to(ramp[:, None, None], (9000, 9000, 3)).copy())
    return folder / "huge.jpg"


TRIED = "read failed: not enough memory to decode it (9000x9000 pixels); tried again next run"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_an_image_too_large_for_the_memory_left_is_skipped_alike_by_both_engines(huge_jpeg):
    """FFmpeg's ENOMEM decoding a huge image, in a process whose address space is capped just
    above what it holds (as a Ray worker or a small machine whose memory runs out): the threaded
    engine's decode and the Ray worker's skip the file with the same reason, one the next run
    tries again. Before, both said 'Cannot allocate memory', a skip no run ever retried."""
    env = {**os.environ, "PYTHONPATH": PACKAGE_PATH}
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_OUT_OF_MEMORY, str(huge_jpeg.parent), huge_jpeg.name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"threaded: {TRIED}", f"ray: {TRIED}"]


def test_a_memory_error_decoding_is_a_skip_in_both_engines_not_a_traceback(
    huge_jpeg, tmp_path, monkeypatch
):
    """numpy's MemoryError (not FFmpeg's) while a frame is converted: injected, as a full node
    gives it. Before, the Ray worker's ended the run in Ray's RayTaskError(MemoryError)
    traceback, and a local decode thread's in datapool's own (exit 1); now the file is skipped
    with the reason above and the run goes on."""
    from datapool.config import IngestOptions, ModelSpec
    from datapool.ingest import IngestSpec, decode

    real = decode._resize_rgb

    def short_of_memory(frame, width, height):
        if frame.width * frame.height > 50_000_000:
            raise MemoryError
        return real(frame, width, height)

    monkeypatch.setattr(decode, "_resize_rgb", short_of_memory)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(huge_jpeg, src / "huge.jpg")
    write_media(src / "small.jpg", seed=3)
    spec = IngestSpec(str(src), (("huge.jpg", "image"),), ModelSpec(), IngestOptions())
    rows = list(ray_engine._decode(ray_engine._whole("huge.jpg", "image"), spec, (128, 128)))
    assert [r["status"] for r in rows] == [TRIED]
    r = datapool.run(src, tmp_path / "pool", n_samples=5, progress=False)
    assert r.skipped == [{"key": "huge.jpg", "reason": TRIED}]
    assert r.selected == ["small.jpg"]


@pytest.fixture(scope="module")
def said_source(tmp_path_factory) -> Path:
    """Files the run warns about: a video of two video streams, a recording that starts before
    a keyframe (its first bytes lost); and images and a video to measure."""
    import av

    from .test_video_mid_gop import byte_cut, encode

    root = tmp_path_factory.mktemp("said") / "src"
    for i in range(3):
        write_media(root / f"img{i}.jpg", seed=40 + i)
    write_media(root / "clip.mp4", seed=44, frames=6)
    with av.open(str(root / "dual.mp4"), "w") as c:
        streams = []
        for w, h in ((96, 48), (64, 32)):
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            streams.append(s)
        for rgb in clip_frames(45, 4):
            for s in streams:
                frame = av.VideoFrame.from_ndarray(rgb[: s.height, : s.width].copy(), "rgb24")
                for p in s.encode(frame):
                    c.mux(p)
        for s in streams:
            for p in s.encode(None):
                c.mux(p)
    whole = encode(root.parent / "whole.ts", "libx264", n=30)
    byte_cut(whole, root / "lost.ts", 10)
    return root


def test_the_ray_engine_warns_as_the_local_one_and_measures_lightly_metadata(
    ray_cluster, said_source, tmp_path
):
    """The ray engine read a file's first video stream of several, and a recording from its
    first keyframe, without a word; and refused lightly.* keys in a selection. Now it says what
    the threaded engine says, and measures lightly.sharpness to the same values: the same pool,
    byte for byte, and the same strategy inputs."""
    from datapool.config import SelectionConfig

    sel = SelectionConfig.from_lightly(
        {
            "n_samples": 8,
            "strategies": [
                {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
                {
                    "input": {"type": "METADATA", "key": "lightly.sharpness"},
                    "strategy": {"type": "WEIGHTS"},
                },
            ],
        }
    )
    a, b, results = both(said_source, tmp_path, strategies=sel.strategies, n_samples=8)
    assert_same_bytes(a, b)
    inputs = [(p / "strategy_inputs.json").read_text() for p in (a, b)]
    assert inputs[0] == inputs[1] and "lightly.sharpness" in inputs[0]
    said = [
        [w for w in r.warnings if "more than one video stream" in w or "before a keyframe" in w]
        for r in results
    ]
    assert said[0] == said[1] and len(said[1]) == 2
    assert "dual.mp4: read video stream #" in said[1][0] + said[1][1]
    assert "lost.ts: " in said[1][0] + said[1][1]
