"""Video containers FFmpeg reads that datapool listed as unread: DVD's .vob (MPEG-2 program
stream), broadcast MXF (MPEG-2), Flash's .f4v (MP4), DivX's .divx (MPEG-4 in AVI), and Ogg's
.ogv (Theora). Each is read whole: every frame, the first one's colour, `--fps` by time. The
Theora file is tests/artifacts/media/theora.ogv (PyAV's FFmpeg has no Theora encoder; made by
`ffmpeg -f rawvideo -pix_fmt rgb24 -s 64x48 -r 25 -i - -c:v libtheora -q:v 7 -g 12` from 30
frames: a red one, nine with a white box moving, twenty blue; libtheora writes a packet without
data for each frame that repeats the one before, as it does for any still scene)."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

import datapool
from datapool.errors import DecodeError
from datapool.ingest.decode import iter_frames
from datapool.naming import media_kind

THEORA = Path(__file__).parent / "artifacts" / "media" / "theora.ogv"
RED, BLUE = (200, 30, 30), (30, 30, 200)


def _write(path: Path, fmt: str, codec: str, n: int = 30) -> Path:
    """`n` frames at 25 fps: the first red, then a grey level that rises (no two alike)."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            rgb = np.full((48, 64, 3), RED if i == 0 else (60 + 4 * i,) * 3, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize(
    ("name", "fmt", "codec"),
    [
        ("dvd.vob", "vob", "mpeg2video"),
        ("broadcast.mxf", "mxf", "mpeg2video"),
        ("flash.f4v", "f4v", "libx264"),
        ("old.divx", "avi", "mpeg4"),
    ],
)
def test_a_container_is_read_whole(tmp_path, name, fmt, codec):
    path = _write(tmp_path / name, fmt, codec)
    assert media_kind(name) == "video"
    frames = list(iter_frames(path, name, "video", (16, 16)))
    assert [f.index for f in frames] == list(range(30))
    assert frames[0].name == f"{name.rsplit('.')[0]}-00-{name.rsplit('.')[1]}.png"
    assert np.abs(frames[0].rgb.astype(int) - RED).max() <= 6
    assert np.abs(frames[-1].rgb.astype(int) - (176,) * 3).max() <= 6
    by_time = list(iter_frames(path, name, "video", (16, 16), fps=5))
    assert [f.index for f in by_time] == [0, 5, 10, 15, 20, 25]


def test_an_ogv_whose_still_frames_are_packets_without_data_is_read_whole():
    """libtheora writes a repeated picture as a packet without data: PyAV took it for the end of
    the stream, and the next one failed (`damaged after frame 1 of the video: Invalid
    argument`); at the end, the frames seemed to stop short of the duration (`truncated`)."""
    assert media_kind(THEORA.name) == "video"
    with av.open(str(THEORA)) as c:
        sizes = [p.size for p in c.demux(c.streams.video[0]) if p.pts is not None]
    assert len(sizes) == 30 and sizes.count(0) > 10 and sizes[-1] == 0
    frames = list(iter_frames(THEORA, THEORA.name, "video", (16, 16)))
    assert len(frames) == 30 - sizes.count(0)  # each picture once, as FFmpeg decodes it
    assert np.abs(frames[0].rgb.astype(int) - RED).max() <= 8
    assert np.abs(frames[-1].rgb.astype(int) - BLUE).max() <= 8
    by_time = list(iter_frames(THEORA, THEORA.name, "video", (16, 16), fps=5))
    # the first frame decoded in each 0.2 s (11 at 0.52 s shares 10's; 12 is at 1.0 s)
    assert [f.index for f in by_time] == [0, 5, 10, 12]
    cut = THEORA.read_bytes()[: len(THEORA.read_bytes()) * 2 // 3]
    with pytest.raises(DecodeError):
        list(iter_frames(_bytes_file(cut), "cut.ogv", "video", (16, 16)))


def _bytes_file(data: bytes):
    import io

    return io.BytesIO(data)


def test_a_run_reads_the_containers(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "a.vob", "vob", "mpeg2video", n=6)
    _write(src / "b.mxf", "mxf", "mpeg2video", n=6)
    shutil.copy(THEORA, src / "c.ogv")
    r = datapool.run(src, tmp_path / "pool", n_samples=100, progress=False)
    assert not r.skipped and r.counts["processed"] == 3
    assert r.counts["frames_embedded"] == 6 + 6 + 13  # (the Theora file's 13 pictures)


def test_an_mp4_cut_inside_its_moov_is_skipped_saying_so(tmp_path):
    """PyAV 18 opens no decoder for the stream of an MP4 whose index (moov, written last) is cut
    before the stream's codec parameters (`stsd`):
    `_open` read `None.width`, and the run stopped with an AttributeError's traceback."""
    whole = _write(tmp_path / "w.mp4", "mp4", "libx264").read_bytes()
    assert whole.index(b"moov") > whole.index(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: whole.index(b"stsd") - 4])  # before its sample description
    with pytest.raises(DecodeError, match=r"truncated MP4 \(the file ends inside its 'moov' box"):
        list(iter_frames(cut, cut.name, "video", (16, 16)))
