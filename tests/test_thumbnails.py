"""Thumbnails: made at ingest from the frame in memory (ingest/thumbnail.py), committed as one
segment per run (pool/thumbnails.py) in folder and bucket pools, kept by merges, and made for
older pools by `datapool report --thumbnails` (thumbnail_backfill.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.cli import main
from datapool.ingest.decode import iter_frames
from datapool.ingest.thumbnail import encode_thumbnail, thumb_size
from datapool.media import write_image, write_video
from datapool.pool import thumbnails
from datapool.pool.local import read_thumbnails

from .conftest import clip_frames, scene


def jpeg_size(data: bytes) -> tuple[int, int]:
    import av

    with av.open(io.BytesIO(data)) as c:
        frame = next(c.decode(video=0))
        return frame.width, frame.height


def pool_thumbs(pool: Path) -> dict[str, bytes]:
    return read_thumbnails(pool, set(datapool.Pool.open(pool).filenames))


def test_thumb_size_keeps_the_aspect_ratio_at_96_on_the_long_side() -> None:
    assert thumb_size(640, 480) == (96, 72)
    assert thumb_size(480, 640) == (72, 96)
    assert thumb_size(1920, 1080) == (96, 54)
    assert thumb_size(5000, 10) == (96, 8)  # never under 8


def test_encode_thumbnail_is_a_small_jpeg_of_the_displayed_shape() -> None:
    data = encode_thumbnail(scene(1, 128, 128), (640, 480))
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    assert jpeg_size(data) == (96, 72)
    assert len(data) < 4000


def test_frames_carry_thumbnails_only_when_asked(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", clip_frames(3, 5, h=64, w=96), fps=10)
    plain = list(iter_frames(video, "v.mp4", "video", (32, 32)))
    assert all(f.thumb == b"" for f in plain)
    with_thumbs = list(iter_frames(video, "v.mp4", "video", (32, 32), thumbnails=True))
    assert [f.name for f in with_thumbs] == [f.name for f in plain]
    assert all(jpeg_size(f.thumb) == (96, 64) for f in with_thumbs)


@pytest.mark.parametrize(("rotation", "size"), [(0, (96, 36)), (90, (36, 96))])
def test_an_anamorphic_video_has_thumbnails_of_its_displayed_shape(
    tmp_path: Path, rotation: int, size: tuple[int, int]
) -> None:
    # 64x48 stored pixels, each twice as wide as high: a player shows 128x48 (then turned).
    from fractions import Fraction

    video = write_video(
        tmp_path / "v.mp4",
        clip_frames(2, 5, h=48, w=64),
        sample_aspect=Fraction(2),
        rotation=rotation,
    )
    frames = list(iter_frames(video, "v.mp4", "video", (32, 32), thumbnails=True))
    assert frames and all(jpeg_size(f.thumb) == size for f in frames)


def test_segments_pack_unpack_and_read_newest_first() -> None:
    seg = thumbnails.pack({"a.jpg": b"AAA", "b.jpg": b"B"})
    assert thumbnails.unpack(seg) == {"a.jpg": b"AAA", "b.jpg": b"B"}
    assert thumbnails.unpack(seg[:-1], "cut") == {}  # damaged: left out, never an error
    assert thumbnails.unpack(b"garbage", "junk") == {}
    order = thumbnails.segment_order(
        [
            "runs/0/thumbnails.bin",
            "runs/1/thumbnails-added-1.bin",
            "runs/1/thumbnails.bin",
            "runs/1/thumbnails-added-2.bin",
            "runs/10/thumbnails.bin",
            "runs/1/report.html",
        ]
    )
    assert order == [
        "runs/10/thumbnails.bin",
        "runs/1/thumbnails.bin",
        "runs/1/thumbnails-added-2.bin",
        "runs/1/thumbnails-added-1.bin",
        "runs/0/thumbnails.bin",
    ]
    merged = thumbnails.merge_segments(
        [
            ("new", thumbnails.pack({"a": b"new"})),
            ("old", thumbnails.pack({"a": b"old", "b": b"b"})),
        ],
        {"a"},
    )
    assert merged == {"a": b"new"}
    # past max_bytes no further segment is read (a bucket pool's are downloads)
    read: list[str] = []

    def lazy():
        for i in range(5):
            read.append(f"s{i}")
            yield f"s{i}", thumbnails.pack({f"n{i}": b"x" * 100})

    got = thumbnails.merge_segments(lazy(), {f"n{i}" for i in range(5)}, max_bytes=150)
    assert set(got) == {"n0", "n1"} and read == ["s0", "s1"]


def _images(root: Path, start: int, n: int) -> None:
    for i in range(start, start + n):
        write_image(root / f"img{i:02d}.jpg", scene(i))


def test_each_run_commits_one_segment_of_its_new_samples(tmp_path: Path) -> None:
    src, pool = tmp_path / "src", tmp_path / "pool"
    _images(src, 0, 8)
    write_video(src / "cam" / "clip.mp4", clip_frames(40, 6), fps=10)
    r1 = datapool.run(src, pool, n_samples=5, progress=False)
    seg0 = thumbnails.unpack((pool / "runs/0/thumbnails.bin").read_bytes())
    assert list(seg0) == r1.selected  # exactly this run's picks, in pick order
    _images(src, 8, 4)
    r2 = datapool.run(src, pool, n_samples=2, progress=False)
    seg1 = thumbnails.unpack((pool / "runs/1/thumbnails.bin").read_bytes())
    assert list(seg1) == r2.selected  # O(new): the first run's segment is not rewritten
    assert thumbnails.unpack((pool / "runs/0/thumbnails.bin").read_bytes()) == seg0
    have = pool_thumbs(pool)
    assert set(have) == set(datapool.Pool.open(pool).filenames)
    assert all(jpeg_size(t)[0] == 96 for t in have.values())


def test_no_thumbnails_flag_writes_none(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, pool = tmp_path / "src", tmp_path / "pool"
    _images(src, 0, 5)
    assert main(["run", str(src), "--pool", str(pool), "--n-samples", "3", "--no-thumbnails"]) == 0
    assert not list(pool.glob("runs/*/thumbnails*.bin"))
    assert "thumbnails" not in json.loads((pool / "runs.json").read_text())["runs"][0]["config"]


def test_report_embeds_the_thumbnails_of_the_pool_and_the_candidates(tmp_path: Path) -> None:
    src, pool = tmp_path / "src", tmp_path / "pool"
    _images(src, 0, 10)
    datapool.run(src, pool, n_samples=4, progress=False)
    _images(src, 10, 6)
    r = datapool.run(src, pool, n_samples=2, progress=False)
    page = Path(r.html_path).read_text()
    meta = json.loads(page.split('id="dp-meta">', 1)[1].split("</script>", 1)[0])
    # 6 pool samples + the second run's 4 unselected candidates, each with its thumbnail
    assert meta["n"] == 10 and meta["thumbs"]["count"] == 10


def test_merge_keeps_thumbnails_under_the_names_it_gives(tmp_path: Path) -> None:
    a_src, b_src = tmp_path / "a_src", tmp_path / "b_src"
    _images(a_src, 0, 4)
    for i in range(4):  # same names as A's, other pictures
        write_image(b_src / f"img{i:02d}.jpg", scene(100 + i))
    datapool.run(a_src, tmp_path / "A", n_samples=4, progress=False)
    datapool.run(b_src, tmp_path / "night", n_samples=4, progress=False)
    a, b = pool_thumbs(tmp_path / "A"), pool_thumbs(tmp_path / "night")
    merged = datapool.merge(tmp_path / "A", tmp_path / "night", tmp_path / "C")
    c = pool_thumbs(tmp_path / "C")
    assert set(c) == set(merged.filenames)
    for name in a:
        assert c[name] == a[name]  # A's own, not B's picture of the same name
        assert c[f"night/{name}"] == b[name]


def test_report_thumbnails_backfills_an_older_pool_and_names_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src, pool = tmp_path / "src", tmp_path / "pool"
    _images(src, 0, 6)
    write_video(src / "clip.mp4", clip_frames(50, 8), fps=10)
    datapool.run(src, pool, n_samples=6, progress=False, thumbnails=False)
    names = datapool.Pool.open(pool).filenames
    gone = next(n for n in names if n.startswith("img"))
    (src / gone).unlink()
    out = tmp_path / "r.html"
    assert main(["report", str(pool), "--thumbnails", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert (
        f"{len(names) - 1} added" in said
        and "1 raw file unavailable; its samples have none:" in said
    )
    assert f"{gone}: no longer in its source" in said
    have = pool_thumbs(pool)
    assert set(have) == set(names) - {gone}
    assert list(pool.glob("runs/0/thumbnails-added-1.bin"))
    # the thumbnails are those a run makes: the same frames, the same bytes
    ref = tmp_path / "ref"
    datapool.run(src, ref, n_samples=6, progress=False)
    ref_thumbs = pool_thumbs(ref)
    for name in set(have) & set(ref_thumbs):
        assert have[name] == ref_thumbs[name], name
    # a second call finds nothing more to make
    assert main(["report", str(pool), "--thumbnails", "--out", str(out)]) == 0
    assert "0 added" in capsys.readouterr().out


def test_report_thumbnails_backfills_a_merged_pool_from_each_files_own_source(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A merge prefixes B's clashing names (`night/img00.jpg`): the backfill reads each from
    B's source under its own key, and names its frames as the pool does."""
    a_src, b_src = tmp_path / "a_src", tmp_path / "b_src"
    _images(a_src, 0, 3)
    for i in range(3):  # same names as A's, other pictures
        write_image(b_src / f"img{i:02d}.jpg", scene(100 + i))
    write_video(b_src / "clip.mp4", clip_frames(60, 6), fps=10)
    write_video(a_src / "clip.mp4", clip_frames(61, 6), fps=10)
    for src, pool in ((a_src, "A"), (b_src, "night")):
        datapool.run(src, tmp_path / pool, n_samples=5, progress=False, thumbnails=False)
        datapool.run(src, tmp_path / f"ref-{pool}", n_samples=5, progress=False)
    merged = datapool.merge(tmp_path / "A", tmp_path / "night", tmp_path / "C")
    assert any(n.startswith("night/") for n in merged.filenames)
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "C"), "--thumbnails", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "unavailable" not in said, said
    have = pool_thumbs(tmp_path / "C")
    assert set(have) == set(merged.filenames)
    ref_a, ref_b = pool_thumbs(tmp_path / "ref-A"), pool_thumbs(tmp_path / "ref-night")
    for name, thumb in have.items():
        if name.startswith("night/"):
            assert thumb == ref_b[name.removeprefix("night/")], name
        else:
            assert thumb == ref_a.get(name, ref_b.get(name)), name


def page_thumbnails(page: Path) -> dict[str, bytes]:
    """The thumbnails a report page embeds, by sample name (read as its script reads them)."""
    import base64
    import gzip

    text = page.read_text()

    def element(id_: str) -> str:
        return text.split(f'id="{id_}">', 1)[1].split("</script>", 1)[0]

    meta = json.loads(element("dp-meta"))
    raw = gzip.decompress(base64.b64decode(element("dp-data")))
    arrays = meta["arrays"]
    n = meta["n"]
    start, end = arrays["names"][0], arrays["sources"][0]
    names = raw[start:end].rstrip(b"\0").decode().split("\n")[:n]
    at = np.frombuffer(raw, np.uint32, n + 1, arrays["thumb"][0])
    blob = base64.b64decode(element("dp-thumbs"))
    return {names[i]: blob[at[i] : at[i + 1]] for i in range(n) if at[i + 1] > at[i]}


def test_a_sample_made_again_from_a_changed_file_never_shows_the_old_files_thumbnail(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """img00.jpg changes, and a run without thumbnails picks it again: the thumbnail of the
    old picture, in the first run's segment, is not the new sample's, on any page; `report
    --thumbnails` makes the new one."""
    src, pool, ref = tmp_path / "src", tmp_path / "pool", tmp_path / "ref"
    _images(src, 0, 3)
    datapool.run(src, pool, n_samples=3, progress=False)
    old = pool_thumbs(pool)["img00.jpg"]
    write_image(src / "img00.jpg", scene(500))
    r = datapool.run(src, pool, n_samples=3, progress=False, thumbnails=False)
    assert r.selected == ["img00.jpg"]
    datapool.run(src, ref, n_samples=3, progress=False)
    new = pool_thumbs(ref)["img00.jpg"]
    _images(src, 3, 1)
    r3 = datapool.run(src, pool, n_samples=1, progress=False)  # its page shows the older pool
    out = tmp_path / "pool.html"
    assert main(["report", str(pool), "--out", str(out)]) == 0
    for page in (Path(r3.html_path), out):
        shown = page_thumbnails(page)
        assert "img00.jpg" not in shown and {"img01.jpg", "img02.jpg"} <= set(shown)
    capsys.readouterr()
    assert main(["report", str(pool), "--thumbnails", "--out", str(out)]) == 0
    assert "thumbnails  1 added" in capsys.readouterr().out
    assert page_thumbnails(out)["img00.jpg"] == new != old


def test_report_thumbnails_makes_none_from_a_file_that_changed_since_its_samples_were_made(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """img00.jpg is rewritten with another picture after the run: its pool sample is still the
    old picture, so the backfill gives it no thumbnail (it gave it the new picture's) and says
    why; img01.jpg only touched (same bytes, new mtime) still gets its own."""
    import os

    src, pool = tmp_path / "src", tmp_path / "pool"
    _images(src, 0, 3)
    datapool.run(src, pool, n_samples=3, progress=False, thumbnails=False)
    write_image(src / "img00.jpg", scene(900))
    os.utime(src / "img01.jpg", ns=(1, 1))
    assert main(["report", str(pool), "--thumbnails", "--out", str(tmp_path / "r.html")]) == 0
    said = capsys.readouterr().out
    assert "2 added" in said and "img00.jpg: changed since its samples were made" in said, said
    assert set(pool_thumbs(pool)) == {"img01.jpg", "img02.jpg"}


def test_process_all_drops_the_set_aside_pools_added_segments(tmp_path: Path) -> None:
    src, pool = tmp_path / "src", tmp_path / "pool"
    _images(src, 0, 5)
    datapool.run(src, pool, n_samples=3, progress=False, thumbnails=False)
    assert main(["report", str(pool), "--thumbnails", "--out", str(tmp_path / "r.html")]) == 0
    assert list(pool.glob("runs/0/thumbnails-added-*.bin"))
    datapool.run(src, pool, n_samples=2, progress=False, process_all=True)
    assert not list(pool.glob("runs/0/thumbnails-added-*.bin"))
    assert set(pool_thumbs(pool)) == set(datapool.Pool.open(pool).filenames)


def test_a_crash_before_the_commit_point_leaves_no_segment(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import PACKAGE_PATH

    src, pool = tmp_path / "src", tmp_path / "pool"
    _images(src, 0, 5)
    datapool.run(src, pool, n_samples=3, progress=False)
    before = pool_thumbs(pool)
    _images(src, 5, 3)
    env = dict(os.environ, PYTHONPATH=PACKAGE_PATH, DATAPOOL_TEST_TRACE="1")
    env["DATAPOOL_TEST_PAUSE_AT"] = "staged:runs/1/thumbnails.bin"
    cmd = [sys.executable, "-m", "datapool", "run", str(src), "--pool", str(pool)]
    proc = subprocess.Popen(
        [*cmd, "--n-samples", "2", "--no-progress"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "staged:runs/1/thumbnails.bin" in line:
            break
    time.sleep(0.2)
    (pool / "runs/1/thumbnails.bin.pending").stat()  # staged, not committed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    opened = datapool.Pool.open(pool)  # recovers: rolls the commit back
    assert len(opened.runs) == 1 and not (pool / "runs/1/thumbnails.bin").exists()
    assert pool_thumbs(pool) == before
    assert np.array_equal(opened.labels, np.zeros(3))


try:  # the S3 fixtures of tests/test_s3.py (a moto server), where boto3 and moto are installed
    from . import test_s3

    moto_endpoint, s3_env, s3, new_bucket = (
        test_s3.moto_endpoint,
        test_s3.s3_env,
        test_s3.s3,
        test_s3.new_bucket,
    )
except (ImportError, pytest.skip.Exception):
    new_bucket = None


def test_a_pool_in_s3_gets_one_segment_blob_per_run_and_backfills(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture
) -> None:
    if new_bucket is None:
        pytest.skip("boto3 and moto are needed for a pool in S3")
    from datapool.s3.store import S3Store
    from datapool.s3.store import read_thumbnails as read_s3

    request.getfixturevalue("s3_env")
    url = f"s3://{request.getfixturevalue('new_bucket')()}/pool"
    src = tmp_path / "src"
    _images(src, 0, 6)
    datapool.run(src, url, n_samples=3, progress=False)
    _images(src, 6, 3)
    datapool.run(src, url, n_samples=2, progress=False, thumbnails=False)
    store = S3Store.open(url)
    manifest, _ = store.objects.require_manifest()
    assert "runs/0/thumbnails.bin" in manifest.files
    assert "runs/1/thumbnails.bin" not in manifest.files  # that run made none
    pool = store.cache().sync(store.objects, manifest.files).pool
    assert len(read_s3(store.objects, manifest.files, set(pool.filenames))) == 3
    # the second run's samples get theirs from the source, as one more blob and manifest
    out = tmp_path / "r.html"
    assert main(["report", url, "--thumbnails", "--out", str(out)]) == 0
    assert "2 added (runs/1/thumbnails-added-1.bin), 3 there already" in capsys.readouterr().out
    manifest, _ = store.objects.require_manifest()
    have = read_s3(store.objects, manifest.files, set(pool.filenames))
    assert set(have) == set(pool.filenames)
    meta = json.loads(out.read_text().split('id="dp-meta">', 1)[1].split("</script>", 1)[0])
    assert meta["thumbs"]["count"] == len(pool)


def test_one_thread_encodes_thumbnails_of_several_sizes_in_any_order() -> None:
    """Each size has its own encoder, whose timestamps must rise: a landscape picture after a
    portrait one after a landscape one (a worker thread decoding mixed files) is fine."""
    sizes = [(640, 480), (480, 640), (640, 480), (1920, 1080), (480, 640)] * 3
    for wh in sizes:
        data = encode_thumbnail(scene(2, 64, 64), wh)
        assert jpeg_size(data) == thumb_size(*wh)


def test_a_failing_thumbnail_never_costs_a_file_its_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av

    from datapool.ingest import thumbnail

    def broken(self, frame):  # what FFmpeg's encoder says to a falling timestamp
        raise av.error.ArgumentError(22, "Invalid argument")

    monkeypatch.setattr(thumbnail._Encoder, "encode", broken)
    monkeypatch.setattr(thumbnail, "_local", __import__("threading").local())
    src = tmp_path / "src"
    _images(src, 0, 4)
    r = datapool.run(src, tmp_path / "pool", n_samples=4, progress=False)
    assert r.counts["selected"] == 4 and r.skipped == []
    assert not (tmp_path / "pool" / "runs/0/thumbnails.bin").exists()
