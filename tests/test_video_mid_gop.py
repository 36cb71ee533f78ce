"""Recordings that start before a keyframe: cut from a live stream or an IP camera, a TS whose
first bytes are lost, a clip copied out without re-encoding from a packet that is no keyframe.
Their first frames refer to pictures that are not in the file; FFmpeg plays such a file from its
first keyframe, and so datapool reads it, numbering frames as FFmpeg outputs them. Each frame's
number is drawn in its pixels (tests/test_video_timing.py), so a test reads which frame a sample
is."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import datapool
from datapool.export import LIST_NAME
from datapool.ingest.decode import Frame, iter_frames

from .test_video_timing import encode_numbered, number_of

GOP = 25  # a keyframe every second at 25 fps, as cameras send
N = 60  # frames 0..59: keyframes 0, 25, 50
SIZE = (48, 24)


def encode(path: Path, codec: str, n: int = N) -> Path:
    """Numbered frames as H.264 or HEVC with a keyframe every GOP frames and two B-frames (x265:
    an open GOP, whose keyframes have leading pictures that refer to the group before)."""
    params = f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=2"
    if codec == "libx265":
        options = {"crf": "12", "preset": "veryfast", "x265-params": params + ":log-level=error"}
    else:
        options = {"crf": "12", "preset": "veryfast", "x264-params": params}
    return encode_numbered(path, codec, n, 25, options)


def _packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as c:
        return [p for p in c.demux(video=0) if p.size]


def byte_cut(src: Path, dst: Path, packet: int) -> Path:
    """The MPEG-TS `src` without its bytes before video packet `packet` (in decode order), cut at
    a 188-byte TS packet boundary: a recording whose first bytes are lost."""
    pos = _packets(src)[packet].pos
    assert pos is not None
    dst.write_bytes(src.read_bytes()[pos - pos % 188 :])
    return dst


def copied_from(src: Path, dst: Path, packet: int) -> Path:
    """`src`'s video packets from the `packet`-th on (decode order), copied into `dst` (its
    container by its name) as they are: a clip copied out from a packet that is no keyframe."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for p in [p for p in inp.demux(ist) if p.size][packet:]:
            p.stream = ost
            out.mux(p)
    return dst


def flagged_keyframes(src: Path, dst: Path, packet: int) -> Path:
    """`copied_from`, every packet flagged a keyframe, into an MP4: its muxer then writes no
    sync-sample table (stss), and a reader takes every packet for a keyframe."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for p in [p for p in inp.demux(ist) if p.size][packet:]:
            p.is_keyframe = True
            p.stream = ost
            out.mux(p)
    assert b"stss" not in dst.read_bytes()
    return dst


def played(path: Path) -> list[int]:
    """The frame numbers FFmpeg outputs, in order: PyAV's decode with FFmpeg's defaults (checked
    against `ffmpeg -i FILE -fps_mode passthrough %03d.png` of FFmpeg 9.0 on these files)."""
    with av.open(str(path)) as c:
        return [number_of(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def read(path: Path) -> tuple[list[Frame], int]:
    """The frames `iter_frames` yields, and what it returns: the leading frames not read."""
    frames = iter_frames(path, path.name, "video", SIZE)
    out = []
    while True:
        try:
            out.append(next(frames))
        except StopIteration as end:
            return out, end.value


@pytest.fixture(scope="module", params=["libx264", "libx265"])
def recording(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole MPEG-TS recording of N numbered frames."""
    codec = request.param
    return encode(tmp_path_factory.mktemp(codec) / "whole.ts", codec)


@pytest.mark.parametrize(
    "cut",
    [
        lambda src, dst: byte_cut(src, dst / "lost.ts", 10),
        lambda src, dst: copied_from(src, dst / "copied.mp4", 10),
        lambda src, dst: copied_from(src, dst / "copied.mkv", 10),
        lambda src, dst: copied_from(src, dst / "copied.ts", 10),
    ],
    ids=["ts-bytes-lost", "mp4", "mkv", "ts"],
)
def test_a_recording_that_starts_mid_gop_is_read_from_its_first_keyframe(recording, tmp_path, cut):
    """Each was refused whole (`damaged or truncated: 35 of 50 frames decode`, `damaged after
    frame 0 of the video: Invalid data found when processing input`). Now its frames are those
    FFmpeg outputs, numbered as FFmpeg numbers them (from 0 at the first keyframe, frame 25),
    and the frames before the keyframe are counted."""
    path = cut(recording, tmp_path)
    frames, lead = read(path)
    assert [f.index for f in frames] == list(range(N - GOP))
    assert [number_of(f.rgb) for f in frames] == list(range(GOP, N)) == played(path)
    assert lead == len(_packets(path)) - (N - GOP) > 0


def test_an_open_gop_keyframe_whose_leading_pictures_refer_to_a_lost_group(tmp_path):
    """An HEVC clip that starts at an open-GOP keyframe (a CRA): the pictures after it in
    decode order and before it in time refer to the group before, which the file lacks; FFmpeg
    drops them, and so does datapool (before: `damaged or truncated: 35 of 36 frames decode`)."""
    whole = encode(tmp_path / "whole.ts", "libx265")
    key = [i for i, p in enumerate(_packets(whole)) if p.is_keyframe][1]
    path = copied_from(whole, tmp_path / "at-key.ts", key)
    first = _packets(path)
    assert first[0].is_keyframe and first[1].pts < first[0].pts  # a leading picture
    frames, lead = read(path)
    assert [number_of(f.rgb) for f in frames] == list(range(GOP, N)) == played(path)
    assert lead == len(first) - (N - GOP) > 0


def test_an_mp4_without_a_sync_sample_table_that_starts_mid_gop(recording, tmp_path):
    """An MP4 without an stss has every packet read as a keyframe. FFmpeg finds H.264's real
    keyframes in the bitstream, not HEVC's: such an HEVC clip copied out mid-GOP was refused
    whole (`damaged after frame 0 of the video: Invalid data found when processing input`),
    where FFmpeg plays it from its first IRAP picture. Now datapool reads it as FFmpeg plays it."""
    path = flagged_keyframes(recording, tmp_path / "no-stss.mp4", 10)
    frames, lead = read(path)
    assert [f.index for f in frames] == list(range(N - GOP))
    assert [number_of(f.rgb) for f in frames] == list(range(GOP, N)) == played(path)
    assert lead == len(_packets(path)) - (N - GOP) > 0


def test_a_whole_recording_is_read_from_its_first_frame(recording):
    frames, lead = read(recording)
    assert [number_of(f.rgb) for f in frames] == list(range(N))
    assert lead == 0


def test_a_run_reads_it_says_so_once_and_exports_the_frames_its_names_say(tmp_path):
    """End to end, with --fps and --frame-stride: every exported sample is the picture FFmpeg
    outputs as that frame number, and the run warns once, counting the frames not read."""
    src = tmp_path / "src"
    src.mkdir()
    lost = byte_cut(encode(tmp_path / "a.ts", "libx264"), src / "lost.ts", 10)
    # (another encoding: the same pictures from the same bits are one sample)
    copied_from(encode(tmp_path / "b.ts", "libx265"), src / "copied.mkv", 10)
    for i, opts in enumerate([{"fps": 5.0}, {"frame_stride": 7}]):
        out = tmp_path / f"out{i}"
        r = datapool.run(
            src,
            tmp_path / f"pool{i}",
            proportion_samples=1.0,
            progress=False,
            export=str(out),
            **opts,  # type: ignore[arg-type]
        )
        assert r.skipped == []
        (said,) = [w for w in r.warnings if "before a keyframe" in w]
        lead = len(_packets(lost)) - (N - GOP)
        assert said.startswith("2 videos start before a keyframe (cut from a stream): ")
        assert f"{lead + 15} leading frames could not be decoded" in said
        assert f"copied.mkv: 15; lost.ts: {lead}" in said
        names = (out / LIST_NAME).read_text().splitlines()
        want = {"fps": [0, 5, 10, 15, 20, 25, 30], "frame_stride": [0, 7, 14, 21, 28]}
        for key in ("copied-", "lost-"):
            mine = sorted(n for n in names if n.startswith(key))
            assert [int(n.split("-")[1]) for n in mine] == want[next(iter(opts))]
            for name in mine:
                with av.open(str(out / name)) as c:
                    rgb = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
                assert number_of(rgb) == GOP + int(name.split("-")[1]), name


def test_a_recording_with_no_keyframe_left_is_skipped_saying_why(tmp_path):
    """Cut after its last keyframe, nothing in it decodes (FFmpeg outputs no frame): skipped."""
    whole = encode(tmp_path / "whole.mkv", "libx264")
    path = copied_from(whole, tmp_path / "tail.mkv", 53)
    assert not any(p.is_keyframe for p in _packets(path)) and played(path) == []
    with pytest.raises(datapool.DecodeError, match=r"^no keyframe .*no decodable frame"):
        read(path)


def test_a_damaged_first_keyframe_is_still_refused(tmp_path):
    """A file that starts with a keyframe whose data is damaged (a TS packet of it lost) is not
    read from the next keyframe: it is damaged, not cut."""
    whole = encode(tmp_path / "whole.ts", "libx264")
    first = _packets(whole)[0]
    assert first.is_keyframe and first.pos is not None and first.size > 3 * 188
    data = whole.read_bytes()
    lost = first.pos + 2 * 188  # the third TS packet of the keyframe's PES
    bad = tmp_path / "bad.ts"
    bad.write_bytes(data[:lost] + data[lost + 188 :])
    with pytest.raises(datapool.DecodeError, match=r"^damaged after frame 0 of the video"):
        read(bad)


def _encode_mpeg(path: Path, codec: str) -> Path:
    """N numbered frames as MPEG-4 Part 2 (`mpeg4`: Xvid, DivX, cameras' "mp4v") or MPEG-2,
    an I picture every GOP frames and two B-frames between references."""
    return encode_numbered(path, codec, N, 25, {"g": str(GOP), "bf": "2", "qscale": "2"})


@pytest.mark.parametrize("codec", ["mpeg4", "mpeg2video"])
def test_an_mpeg4_or_mpeg2_mp4_without_a_sync_sample_table_that_starts_mid_gop(codec, tmp_path):
    """As for HEVC, FFmpeg does not re-read these codecs' keyframes from their bitstream in an
    MP4 without an stss. MPEG-4 Part 2's P and B pictures were decoded without the pictures
    they refer to, and their grey smears became samples, silently; MPEG-2 was refused as
    `damaged or truncated: 33 of 47 frames decode`. Now each is read from its first I picture,
    as the same packets are in an MP4 whose stss marks the keyframes."""
    whole = _encode_mpeg(tmp_path / "whole.mkv", codec)
    path = flagged_keyframes(whole, tmp_path / "no-stss.mp4", 10)
    marked = copied_from(whole, tmp_path / "marked.mp4", 10)
    assert not _packets(marked)[0].is_keyframe  # its stss marks the keyframes
    frames, lead = read(path)
    want, want_lead = read(marked)
    got = [number_of(f.rgb) for f in frames]
    assert got == [number_of(f.rgb) for f in want] == list(range(got[0], N))
    assert GOP <= got[0] < GOP + 3  # (the first I picture shown: its B-frames come before)
    assert lead == len(_packets(path)) - len(frames) > 0
    assert want_lead == len(_packets(marked)) - len(want)
    for a, b in zip(frames, want):
        np.testing.assert_array_equal(a.rgb, b.rgb)


@pytest.mark.parametrize("ext", ["avi", "mp4", "mkv"])
def test_an_h264_open_gop_clip_cut_mid_gop_is_read_as_ffmpeg_plays_it(ext, tmp_path):
    """x264's open GOPs: a picture after the keyframe names, in its reference-marking commands,
    a picture before it. Copied out from packet 16 (mid-GOP), such a clip was refused as
    `damaged after frame 0 of the video: Invalid data found when processing input` (`mmco:
    unref short failure`: the decoder was not given the packets before the keyframe). FFmpeg
    outputs frames 24 to 47 (`ffmpeg -i cut.avi -fps_mode passthrough -f rawvideo`: the same
    pixels as those frames of the whole clip), and so does datapool; the 8 packets before the
    keyframe are counted as not read."""
    options = {"bf": "2", "g": "12", "x264-params": "open-gop=1:scenecut=0"}
    whole = encode_numbered(tmp_path / f"whole.{ext}", "libx264", 48, 10, options)
    path = copied_from(whole, tmp_path / f"cut.{ext}", 16)
    frames, lead = read(path)
    assert [number_of(f.rgb) for f in frames] == list(range(24, 48)) == played(path)
    assert [f.index for f in frames] == list(range(24))
    assert lead == 8
