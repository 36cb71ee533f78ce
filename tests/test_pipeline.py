"""The decode → pack → embed pipeline: deterministic whatever the parallelism, a broken file only
skips itself, and the video details (stride, fps on variable frame rate, rotation)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from datapool.errors import SourceError
from datapool.ingest import threaded as pipeline
from datapool.ingest.decode import iter_frames
from datapool.ingest.embed import Embedder
from datapool.ingest.threaded import decode_and_embed, frames_per_file
from datapool.media import write_video
from datapool.naming import STATUS_OK, media_kind
from datapool.sources.local import LocalSource

from .conftest import clip_frames


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def _run(src: LocalSource, keys: list[str], embedder: Embedder, **kw):
    kinds = {k: media_kind(k) or "image" for k in keys}
    return decode_and_embed(src.open_inputs(keys), kinds, embedder, **kw)


def _flat(res) -> tuple[list[str], np.ndarray]:
    names = [n for k in res.rows for n, _ in res.rows[k]]
    rows = [r for k in res.rows for _, r in res.rows[k]]
    return names, np.stack(rows)


def test_parallelism_does_not_change_the_result(bucket: Path, embedder: Embedder):
    src = LocalSource(bucket)
    keys = src.list()["key"].tolist()
    one = _run(src, keys, embedder, batch_size=5, decode_workers=1)
    many = _run(src, keys, embedder, batch_size=5, decode_workers=4)
    assert one.status == many.status
    assert list(one.rows) == list(many.rows)
    n1, e1 = _flat(one)
    n2, e2 = _flat(many)
    assert n1 == n2
    np.testing.assert_array_equal(e1, e2)
    # Files come out in the order of the keys, frames in decode order.
    assert list(one.rows) == [k for k in keys if one.status[k][0] == STATUS_OK]
    assert one.status["cam/clip.mp4"] == (STATUS_OK, 12)
    assert [n for n, _ in one.rows["cam/clip.mp4"]][:3] == [
        f"cam/clip-0{i}-mp4.png" for i in range(3)
    ]


def test_broken_file_in_the_middle_of_a_batch_only_skips_itself(bucket: Path, embedder: Embedder):
    src = LocalSource(bucket)
    good = ["img0.jpg", "img1.jpg", "cam/other.mp4", "png0.png"]
    mixed = [
        "img0.jpg",
        "notes.png",
        "img1.jpg",
        "cam/broken.mp4",
        "cam/other.mp4",
        "empty.jpg",
        "png0.png",
    ]
    clean = _run(src, good, embedder, batch_size=64)
    res = _run(src, mixed, embedder, batch_size=64)  # one batch holds every frame
    for bad in ("notes.png", "cam/broken.mp4", "empty.jpg"):
        assert res.status[bad][0] != STATUS_OK and res.status[bad][1] == 0
        assert bad not in res.rows
    assert list(res.rows) == good
    n1, e1 = _flat(clean)
    n2, e2 = _flat(res)
    assert n1 == n2
    np.testing.assert_allclose(e1, e2, atol=1e-6)


class _FailingReader(io.BytesIO):
    """A file object whose reads fail part-way, like a connection that drops mid-download."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, n: int | None = -1) -> bytes:
        if self.tell() >= self.fail_after:
            raise OSError("connection reset while reading")
        return super().read(n)


def test_a_file_failing_part_way_drops_all_its_frames(tmp_path: Path, embedder: Embedder):
    mkv = write_video(tmp_path / "long.mkv", clip_frames(3, 60, 96, 128), fps=10, crf=0)
    data = mkv.read_bytes()
    img = write_video(tmp_path / "v.mkv", clip_frames(4, 6), fps=10)
    inputs = [
        ("long.mkv", _FailingReader(data, len(data) // 2)),
        ("v.mkv", str(img)),
        ("gone.mp4", SourceError("object vanished")),
    ]
    kinds = {"long.mkv": "video", "v.mkv": "video", "gone.mp4": "video"}
    res = decode_and_embed(iter(inputs), kinds, embedder, batch_size=8)
    assert res.status["long.mkv"][0] != STATUS_OK and "long.mkv" not in res.rows
    assert res.status["gone.mp4"] == ("object vanished", 0)
    assert res.status["v.mkv"] == (STATUS_OK, 6) and len(res.rows["v.mkv"]) == 6


def test_fps_follows_timestamps_of_variable_frame_rate_video(tmp_path: Path):
    frames = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(8)]
    times = [0, 0.1, 0.15, 0.2, 0.9, 1.0, 1.05, 2.5]
    p = write_video(tmp_path / "vfr.mp4", frames, fps=10, times=times)
    got = list(iter_frames(p, "vfr.mp4", "video", (16, 16), fps=2))
    # One frame per half second of presentation time: slots 0, 1, 2 and 5.
    assert [f.index for f in got] == [0, 4, 5, 7]
    assert [f.name for f in got] == [
        "vfr-0-mp4.png",
        "vfr-4-mp4.png",
        "vfr-5-mp4.png",
        "vfr-7-mp4.png",
    ]
    every = list(iter_frames(p, "vfr.mp4", "video", (16, 16)))
    assert [f.index for f in every] == list(range(8))


@pytest.mark.parametrize(
    ("rotation", "bright_side"), [(0, "left"), (90, "bottom"), (-90, "top"), (180, "right")]
)
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int, bright_side: str):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :16] = 255  # a white band on the left of the stored picture
    p = write_video(tmp_path / "r.mp4", [img] * 2, fps=5, crf=5, rotation=rotation)
    w, h = (48, 64) if rotation % 180 else (64, 48)  # the size a player shows
    rgb = next(iter(iter_frames(p, "r.mp4", "video", (w, h)))).rgb.mean(axis=2)
    assert rgb.shape == (h, w)
    sides = {
        "left": rgb[:, : w // 4],
        "right": rgb[:, -w // 4 :],
        "top": rgb[: h // 4],
        "bottom": rgb[-h // 4 :],
    }
    assert sides[bright_side].mean() > 200
    assert all(v.mean() < 128 for k, v in sides.items() if k != bright_side)


def test_frame_queues_share_a_byte_budget_within_one_to_four_batches():
    frame = 3 * 128 * 128
    assert frames_per_file(32, 6, (128, 128)) == 128  # the default model: four batches fit
    assert 6 * frames_per_file(32, 6, (128, 128)) * frame <= pipeline._QUEUE_BUDGET
    deep = frames_per_file(32, 6, (224, 224))  # fewer frames of a larger input
    assert 32 < deep < 128 and 6 * deep * 3 * 224 * 224 <= pipeline._QUEUE_BUDGET
    assert frames_per_file(32, 6, (1024, 1024)) == 32  # never under one batch
    assert frames_per_file(1, 4, (8, 8)) == 4  # never over four
