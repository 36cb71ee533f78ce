"""An image named as datapool names a video's frame (`clip-03-mp4.png` beside `clip.mp4`):
the two cannot both stand in the pool under one name. Whichever came first keeps it, the other
is left out with the reason, and every later run, `ls` and the pool's own checks still know which
file each sample came from."""

from __future__ import annotations

import os

import pytest

import datapool
from datapool import Pool

CLASH = "cam/clip-03-mp4.png"  # frame 3 of a 12-frame cam/clip.mp4


def run(bucket, pool):
    return datapool.run(bucket, pool, n_samples=100, progress=False)


def sources(pool):
    return {s["filename"]: (s["source_file"], s["run"]) for s in Pool.open(pool).samples()}


def check_consistent(result):
    c = result.counts
    assert c["files_ok"] + c["skipped"] == c["processed"]


@pytest.fixture
def clip_and_image(tmp_path, make_media):
    root = tmp_path / "bucket"
    make_media(root / "cam" / "clip.mp4", seed=30, frames=12)
    make_media(root / CLASH, seed=77)
    return root


def test_same_run_the_image_keeps_its_name_and_the_frame_is_left_out(clip_and_image, tmp_path):
    pool = tmp_path / "pool"
    first = run(clip_and_image, pool)
    check_consistent(first)
    assert first.counts["skipped"] == 0
    got = sources(pool)
    assert got[CLASH] == (CLASH, 0)
    assert sum(1 for k, _ in got.values() if k == "cam/clip.mp4") == 11
    ledger = Pool.open(pool).ledger.set_index("key")
    assert ledger.loc["cam/clip.mp4", "status"] == "ok"
    assert ledger.loc["cam/clip.mp4", "n_selected"] == 11
    assert any("frame 3" in n and CLASH in n for n in first.warnings)

    # The video changes: its 11 samples leave, the image's stays.
    from .conftest import write_media

    write_media(clip_and_image / "cam" / "clip.mp4", seed=31, frames=12)
    os.utime(clip_and_image / "cam" / "clip.mp4", ns=(1, 1_000_000_000_000))
    second = run(clip_and_image, pool)
    check_consistent(second)
    assert second.counts["removed"] == 11
    got = sources(pool)  # Pool.open checks the ledger against the CSV
    assert got[CLASH] == (CLASH, 0)
    assert sorted(r for k, r in got.values() if k == "cam/clip.mp4") == [1] * 11


def test_an_image_added_after_the_video_is_skipped_with_the_reason(tmp_path, make_media):
    root, pool = tmp_path / "bucket", tmp_path / "pool"
    make_media(root / "cam" / "clip.mp4", seed=30, frames=12)
    run(root, pool)
    make_media(root / CLASH, seed=77)
    second = run(root, pool)
    check_consistent(second)
    assert second.counts["skipped"] == 1 and second.counts["selected"] == 0
    reason = Pool.open(pool).ledger.set_index("key").loc[CLASH, "status"]
    assert "cam/clip.mp4" in reason and "frame 3" in reason
    got = sources(pool)
    assert got[CLASH] == ("cam/clip.mp4", 0)
    assert len(got) == 12

    # The video changes: all 12 frames are replaced; the image stays skipped until it changes.
    from .conftest import write_media

    write_media(root / "cam" / "clip.mp4", seed=31, frames=12)
    os.utime(root / "cam" / "clip.mp4", ns=(1, 1_000_000_000_000))
    third = run(root, pool)
    check_consistent(third)
    assert third.counts["removed"] == 12
    got = sources(pool)
    assert got[CLASH] == ("cam/clip.mp4", 2) and len(got) == 12


def test_a_video_added_after_the_image_leaves_out_that_frame(tmp_path, make_media):
    root, pool = tmp_path / "bucket", tmp_path / "pool"
    make_media(root / CLASH, seed=77)
    run(root, pool)
    make_media(root / "cam" / "clip.mp4", seed=30, frames=12)
    second = run(root, pool)
    check_consistent(second)
    assert second.counts["skipped"] == 0 and second.counts["selected"] == 11
    got = sources(pool)
    assert got[CLASH] == (CLASH, 0)
    assert [r for k, r in got.values() if k == "cam/clip.mp4"] == [1] * 11
    assert datapool.run(root, pool, n_samples=5, progress=False).counts["processed"] == 0
