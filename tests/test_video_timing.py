"""Frames as a player counts them, in footage cut, offset or joined the way cameras and editors
leave it: each frame's number is drawn in its pixels, so a test reads which frame a sample is."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import datapool
from datapool.export import LIST_NAME
from datapool.ingest.decode import iter_frames
from datapool.media import write_video

BITS = 6  # frame numbers up to 63, as white and black bars across the top half


def numbered(i: int, h: int = 48, w: int = 96) -> np.ndarray:
    """Frame `i`: its number in binary as bars, over a colour of its own."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = np.random.default_rng(i).integers(40, 200, 3)
    bar = w // BITS
    for b in range(BITS):
        img[: h // 2, b * bar : (b + 1) * bar] = 255 if i >> b & 1 else 0
    return img


def number_of(rgb: np.ndarray) -> int:
    """The frame number a picture made by `numbered` shows (at any size)."""
    h, w = rgb.shape[:2]
    bar = w / BITS
    top = rgb[int(h * 0.1) : int(h * 0.4)].astype(float)
    return sum(
        1 << b
        for b in range(BITS)
        if top[:, int((b + 0.3) * bar) : int((b + 0.7) * bar)].mean() > 128
    )


def encode_numbered(path: Path, codec: str, n: int, rate: int, options: dict[str, str]) -> Path:
    """`n` frames made by `numbered` (96x48, pts 0..n-1), encoded by `codec` with `options` at
    `rate` frames a second into `path` (its container by its extension)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = 96, 48, "yuv420p"
        stream.options = options
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(numbered(i), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def cut_without_reencoding(src: Path, dst: Path, start: float, shift: float = 0.0) -> Path:
    """`src` from `start` seconds on, its packets copied as `ffmpeg -ss START -c copy` copies
    them: from the keyframe before `start`, timestamped from `start` (the lead-in before 0, so
    an MP4 gets an edit list that hides it), then moved `shift` seconds later."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        packets = [p for p in inp.demux(ist) if p.size]
        tb = ist.time_base
        assert tb is not None
        cut = round(Fraction(start) / tb)
        key = max(p.pts for p in packets if p.is_keyframe and p.pts is not None and p.pts <= cut)
        first_dts = min(p.dts for p in packets if p.pts is not None and p.pts >= key)
        ost = out.add_stream_from_template(ist)
        move = round(Fraction(shift) / tb) - cut
        for p in packets:
            if p.dts is None or p.dts < first_dts:
                continue
            p.pts, p.dts = p.pts + move, p.dts + move
            p.stream = ost
            out.mux(p)
    return dst


def _player_frames(path: Path) -> list[int]:
    """The frame numbers FFmpeg shows, in order (edit list applied), read from their pixels."""
    with av.open(str(path)) as c:
        return [number_of(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 numbered frames at 25 fps, one keyframe: 0.00 s to 1.60 s."""
    folder = tmp_path_factory.mktemp("long")
    return write_video(folder / "long.mp4", [numbered(i) for i in range(40)], fps=25, crf=12)


def test_a_clip_cut_without_reencoding_is_read_from_its_first_shown_frame(long_clip, tmp_path):
    """`ffmpeg -ss 1.281 -i long.mp4 -c copy trim.mp4` keeps the frames from the keyframe
    before 1.281 s and hides them behind an edit list: a player shows frames 33 to 39 (1.32 s
    on), 0.28 s of the 0.319 s the edit list declares, the rest of frame 32 being cut. That was
    refused as `truncated: frames end at 0.28 s of the 0.32 s the header declares`."""
    trim = cut_without_reencoding(long_clip, tmp_path / "trim.mp4", 1.281)
    assert _player_frames(trim) == list(range(33, 40))
    frames = list(iter_frames(trim, "trim.mp4", "video", (48, 24)))
    assert [f.index for f in frames] == list(range(7))
    assert [number_of(f.rgb) for f in frames] == list(range(33, 40))
    # padded to the digits of the 40 frames the file holds, the hidden lead-in included (not
    # of the 7 shown): the header's count, so the same from run to run and in either engine
    assert [f.name for f in frames] == [f"trim-{i:02d}-mp4.png" for i in range(7)]


def test_a_cut_clip_exports_the_frames_its_names_say(long_clip, tmp_path):
    """End to end: every sample of a cut clip, exported, is the picture a player shows as
    that frame number (not a frame of the hidden lead-in), and --fps counts from the first
    frame shown."""
    src = tmp_path / "src"
    src.mkdir()
    cut_without_reencoding(long_clip, src / "trim.mp4", 1.281)
    out = tmp_path / "out"
    r = datapool.run(
        src, tmp_path / "pool", proportion_samples=1.0, fps=10, progress=False, export=str(out)
    )
    assert r.skipped == []
    names = (out / LIST_NAME).read_text().splitlines()
    # shown frames 33..39 at 1.32 s .. 1.56 s: slots of 0.1 s from 1.32 s take 0, 3, 5
    assert sorted(names) == ["trim-00-mp4.png", "trim-03-mp4.png", "trim-05-mp4.png"]
    for name in names:
        with av.open(str(out / name)) as c:
            rgb = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
        assert number_of(rgb) == 33 + int(name.split("-")[1]), name


def test_a_matroska_track_that_starts_late_is_not_called_truncated(long_clip, tmp_path):
    """FFmpeg writes a Matroska track's DURATION tag as the time its last frame ends: a track
    of 1.6 s starting at 5 s declares 6.6 s, and was refused as `truncated: frames end at
    1.60 s of the 6.60 s the header declares`. A truncated file is still refused."""
    late = cut_without_reencoding(long_clip, tmp_path / "late.mkv", 0.0, shift=5.0)
    with av.open(str(late)) as c:
        assert c.streams.video[0].metadata["DURATION"].startswith("00:00:06.6")
    frames = list(iter_frames(late, "late.mkv", "video", (48, 24)))
    assert [number_of(f.rgb) for f in frames] == list(range(40))
    data = late.read_bytes()
    late.write_bytes(data[: len(data) // 2])
    with pytest.raises(datapool.DecodeError):
        list(iter_frames(late, "late.mkv", "video", (48, 24)))


def _join_ts(a: bytes, b: bytes) -> bytes:
    """Two MPEG-TS recordings end to end, each PID's continuity counter carried on into the
    second (a clean join: only the timestamps start again from the second's own zero)."""
    last: dict[int, int] = {}
    for i in range(0, len(a), 188):
        pid = (a[i + 1] & 0x1F) << 8 | a[i + 2]
        if a[i + 3] & 0x10:
            last[pid] = a[i + 3] & 0xF
    second = bytearray(b)
    shift: dict[int, int] = {}
    for i in range(0, len(second), 188):
        pid = (second[i + 1] & 0x1F) << 8 | second[i + 2]
        if second[i + 3] & 0x10 and pid in last:
            cc = second[i + 3] & 0xF
            shift.setdefault(pid, (last[pid] + 1 - cc) % 16)
            second[i + 3] = (second[i + 3] & 0xF0) | (cc + shift[pid]) % 16
    return a + bytes(second)


def _ts(path: Path, numbers: range) -> bytes:
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 48, "yuv420p"
        s.options = {"crf": "12", "preset": "veryfast"}
        for i in numbers:
            for p in s.encode(av.VideoFrame.from_ndarray(numbered(i), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path.read_bytes()


def test_fps_goes_on_across_timestamps_that_jump_back(tmp_path):
    """Two 15-frame dashcam segments joined (`cat a.ts b.ts`): the second's timestamps start
    again from 0. A player plays 30 frames, 1.2 s. `--fps 5` kept frames 0, 5 and 10 and
    dropped the whole second segment without a word (its times fell in slots already taken);
    now time goes on across the join, and it keeps every fifth frame as at 25 fps."""
    joined = tmp_path / "joined.ts"
    joined.write_bytes(
        _join_ts(_ts(tmp_path / "a.ts", range(15)), _ts(tmp_path / "b.ts", range(15, 30)))
    )
    assert _player_frames(joined) == list(range(30))
    with av.open(str(joined)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert times[15] is not None and times[14] is not None and times[15] < times[14]
    every = list(iter_frames(joined, "joined.ts", "video", (48, 24)))
    assert [number_of(f.rgb) for f in every] == list(range(30))
    kept = list(iter_frames(joined, "joined.ts", "video", (48, 24), fps=5))
    assert [f.index for f in kept] == [0, 5, 10, 15, 20, 25]
    assert [number_of(f.rgb) for f in kept] == [0, 5, 10, 15, 20, 25]


def test_a_joined_recording_whose_second_part_is_shorter_is_not_called_truncated(tmp_path):
    """Joined as above, 30 frames then 5: the last frame's timestamp is 0.16 s after the
    first's, and the file was refused as `truncated: frames end at 0.20 s of the 1.20 s the
    header declares`. The span is the time the frames play, across the join."""
    joined = tmp_path / "joined.ts"
    joined.write_bytes(
        _join_ts(_ts(tmp_path / "a.ts", range(30)), _ts(tmp_path / "b.ts", range(30, 35)))
    )
    frames = list(iter_frames(joined, "joined.ts", "video", (48, 24)))
    assert [number_of(f.rgb) for f in frames] == list(range(35))


def test_fps_keeps_one_of_frames_that_share_a_timestamp(tmp_path):
    """Frames whose timestamps repeat (a recorder that stamps two frames alike) share a slot:
    --fps keeps the first; the frame numbers still count every frame."""
    times = [i // 2 * 0.2 for i in range(12)]  # 0, 0, 0.2, 0.2, ...
    p = write_video(tmp_path / "r.mkv", [numbered(i) for i in range(12)], times=times)
    kept = list(iter_frames(p, "r.mkv", "video", (48, 24), fps=5))
    assert [f.index for f in kept] == [0, 2, 4, 6, 8, 10]
    assert [number_of(f.rgb) for f in kept] == [0, 2, 4, 6, 8, 10]


@pytest.mark.parametrize(("codec", "options"), [("libx264", {"bf": "2"}), ("mpeg4", {"bf": "2"})])
def test_fps_on_an_avi_with_b_frames_keeps_evenly_spaced_frames(tmp_path, codec, options):
    """An AVI stores no presentation times: FFmpeg stamps each frame of an H.264 or MPEG-4 AVI
    with B-frames with the time of a packet in decode order (0.1, 0.3, 0.2 s...), and --fps 5
    of 20 frames at 10 fps kept 13 (0, 1, 3, 5, 6, 8, ...) for H.264. The frames' decode times
    are evenly spaced: it keeps every other frame."""
    path = encode_numbered(tmp_path / "b.avi", codec, 20, 10, {**options, "g": "10"})
    with av.open(str(path)) as c:
        stamps = [f.pts for f in c.decode(video=0)]
    kept = list(iter_frames(path, path.name, "video", (48, 24), fps=5))
    assert [f.index for f in kept] == list(range(0, 20, 2))
    assert [number_of(f.rgb) for f in kept] == list(range(0, 20, 2))
    if codec == "libx264":
        assert stamps != sorted(stamps)  # (what made it go wrong)


def test_fps_on_an_avi_cut_mid_gop_keeps_evenly_spaced_frames(tmp_path):
    """An MPEG-4 AVI with B-frames (open GOPs) cut mid-GOP: it is read from its first keyframe,
    whose two leading B-frames (shown before it, after it in decode order) the decoder drops,
    their references being cut off. Their decode times stay among those --fps spaces the
    frames by: every frame takes a time two slots early, all alike, so --fps (time from
    the first frame kept) and the frame names (decoded frame numbers) are as FFmpeg's player
    shows the file from that keyframe. Pinned (it passed before)."""
    src = encode_numbered(tmp_path / "whole.avi", "mpeg4", 48, 10, {"bf": "2", "g": "12"})
    path = tmp_path / "cut.avi"
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        packets = [p for p in inp.demux(ist) if p.size]
        for n, packet in enumerate(packets[16:]):  # (the first keyframe after is packet 22)
            packet.pts = packet.dts = n
            packet.stream = ost
            out.mux(packet)
    frames = list(iter_frames(path, path.name, "video", (96, 48)))
    assert [number_of(f.rgb) for f in frames] == list(range(24, 48))  # (22, 23 dropped)
    kept = list(iter_frames(path, path.name, "video", (96, 48), fps=5))
    assert [(f.index, number_of(f.rgb)) for f in kept] == [(i, 24 + i) for i in range(0, 24, 2)]


def test_recordings_joined_with_cat_are_refused_saying_so(tmp_path):
    """`cat a.ts b.ts` breaks each stream's continuity counter at the join, and FFmpeg marks
    the packet before it corrupt (as it marks a packet lost in transmission). The file is
    skipped, as before, but the reason now says where and what to do, rather than a bare
    `damaged packet (the container marks it corrupt)` for a file that plays."""
    joined = tmp_path / "joined.ts"
    joined.write_bytes(_ts(tmp_path / "a.ts", range(15)) + _ts(tmp_path / "b.ts", range(15, 30)))
    with pytest.raises(datapool.DecodeError, match=r"^damaged video packet \d+ \(MPEG-TS "):
        list(iter_frames(joined, "joined.ts", "video", (48, 24)))


_IDENTITY = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _with_matrix(path: Path, a: int, b: int, c: int, d: int) -> Path:
    """Give the MP4 `path` (written unturned) the display matrix [a b; c d] (in whole units) in
    its track header, as phones and editors write a turned or mirrored video."""
    data = path.read_bytes()
    at = data.index(_IDENTITY, data.index(b"tkhd"))
    m = struct.pack(">9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 0x40000000)
    path.write_bytes(data[:at] + m + data[at + len(m) :])
    return path


@pytest.mark.parametrize(
    ("matrix", "shown"),
    [
        ((-1, 0, 0, 1), lambda a: a[:, ::-1]),  # ffmpeg -display_hflip
        ((1, 0, 0, -1), lambda a: a[::-1]),  # ffmpeg -display_vflip
        ((0, 1, 1, 0), lambda a: a.transpose(1, 0, 2)),  # a quarter turn and a mirror
        ((0, -1, -1, 0), lambda a: a[::-1, ::-1].transpose(1, 0, 2)),
        ((0, 1, -1, 0), lambda a: np.rot90(a, -1)),  # a plain turn, read as before
    ],
)
def test_a_mirrored_display_matrix_is_shown_as_a_player_shows_it(tmp_path, matrix, shown):
    """A display matrix may mirror as well as turn (a selfie camera's video; `ffmpeg
    -display_hflip`). PyAV's `frame.rotation` is the angle alone: a left-right mirror read as
    a 180-degree turn, so the sample, its thumbnail and the exported frame were upside down;
    a mirrored quarter turn was turned the wrong way. Now the picture is the one FFmpeg's
    command line shows."""
    stored = numbered(5, 48, 96)
    stored[30:40, :20] = (255, 0, 0)  # a mark at the left: no mirror of the picture is itself
    p = _with_matrix(write_video(tmp_path / "v.mp4", [stored], crf=0), *matrix)
    with av.open(str(p)) as c:
        decoded = next(iter(c.decode(video=0))).to_ndarray(format="rgb24")
    want = np.ascontiguousarray(shown(decoded))
    (frame,) = iter_frames(p, "v.mp4", "video", (want.shape[1], want.shape[0]))
    assert frame.rgb.shape == want.shape
    assert np.abs(frame.rgb.astype(int) - want).mean() < 2


def test_decoded_frames_are_freed_without_the_cyclic_collector(tmp_path):
    """Reading a frame's display matrix through `frame.side_data` left a cycle (the frame's
    cached side data points back at it) that only Python's cyclic collector frees: every kept
    frame of a video stayed in memory until it ran (a 4K clip: 1.7 GiB at 180 frames). With
    the collector off, no decoded frame outlives the loop, and the matrix is still applied."""
    import gc

    stored = [numbered(i, 48, 96) for i in range(24)]
    p = _with_matrix(write_video(tmp_path / "v.mp4", stored, crf=0), 0, 1, -1, 0)

    def frames_alive() -> int:
        return sum(isinstance(o, av.VideoFrame) for o in gc.get_objects())

    gc.collect()
    before = frames_alive()
    gc.disable()
    try:
        shapes = {f.rgb.shape for f in iter_frames(p, "v.mp4", "video", (48, 96))}
        alive = frames_alive() - before
    finally:
        gc.enable()
    assert shapes == {(96, 48, 3)}  # turned a quarter: still read from the matrix
    assert alive <= 2, f"{alive} decoded frames wait for the cyclic collector"


def test_a_video_of_two_video_streams_says_which_one_was_read(tmp_path):
    """A dashcam that writes its front and rear cameras into one file holds two video streams.
    One is read (the one a player plays, docs/pipeline.md); the other's frames were left out
    without a word. The run now says which was read and which was not."""
    src = tmp_path / "src"
    src.mkdir()
    with av.open(str(src / "dual.mp4"), "w") as c:
        streams = []
        for w, h in ((96, 48), (64, 32)):
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            streams.append(s)
        for i in range(4):
            for s, first in zip(streams, (0, 20)):
                rgb = numbered(first + i, s.height, s.width)
                for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    c.mux(p)
        for s in streams:
            for p in s.encode(None):
                c.mux(p)
    r = datapool.run(src, tmp_path / "pool", proportion_samples=1.0, progress=False)
    assert len(r.selected) == 4
    (said,) = [w for w in r.warnings if "more than one video stream" in w]
    assert "dual.mp4: read video stream #" in said and "of 2; not read: #" in said


@pytest.mark.parametrize("angle", [45, 135, -30])
def test_a_display_matrix_that_is_no_quarter_turn_is_skipped_saying_so(tmp_path, angle):
    """A display matrix may turn by any angle (`ffmpeg -display_rotation 45`). FFmpeg's command
    line warns "Odd rotation angle" and turns the picture inside its own frame, cutting the
    corners off; datapool read a 45-degree video unturned and a 135-degree one upside down,
    without a word. Now the video is skipped with the angle, as ffprobe says it, and the fix."""
    src = tmp_path / "src"
    write_video(src / "tilted.mp4", [numbered(i) for i in range(3)], rotation=angle)
    write_video(src / "turned.mp4", [numbered(i) for i in range(3)], rotation=90)
    r = datapool.run(src, tmp_path / "pool", proportion_samples=1.0, progress=False)
    (skip,) = r.skipped
    assert skip["key"] == "tilted.mp4"
    assert skip["reason"].startswith(
        f"its display matrix is a rotation of {angle} degrees (as ffprobe says it), not a "
        "quarter turn"
    )
    assert skip["reason"].endswith("clear it: ffmpeg -display_rotation 0 -i IN -c copy OUT")
    assert sorted(r.selected) == [f"turned-{i}-mp4.png" for i in range(3)]


def test_a_fragmented_mp4_names_its_frames_padded_to_all_its_frames(tmp_path):
    """A fragmented MP4 whose moov holds its first samples (`-movflags frag_keyframe`, as a
    recorder writes to survive a crash) declares only those: 120 frames were padded as if 4
    (`frag-7-mp4.png`, ..., `frag-119-mp4.png`: out of frame order when sorted, not the
    padding the names promise). Now the packets are counted, as where no count is declared."""
    path = tmp_path / "frag.mp4"
    with av.open(str(path), "w", options={"movflags": "frag_keyframe"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 48, "yuv420p"
        s.options = {"g": "10", "preset": "veryfast"}
        for i in range(120):
            for p in s.encode(av.VideoFrame.from_ndarray(numbered(i % 64), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with av.open(str(path)) as c:
        assert 0 < (c.streams.video[0].frames or 0) < 120  # the header counts its moov's
    names = [f.name for f in iter_frames(path, "frag.mp4", "video", (48, 24), frame_stride=7)]
    assert names == [f"frag-{i:03d}-mp4.png" for i in range(0, 120, 7)] == sorted(names)


def _chart() -> np.ndarray:
    blocks = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 3, 0), 3, 1)[:48, :96]


def _chart_clip(path: Path, pix_fmt: str, interlaced: bool = False) -> Path:
    """One frame of random colour blocks 3 pixels wide (edges across the chroma grid), encoded
    losslessly as H.264 in `pix_fmt` (`interlaced`: as two fields, top first)."""
    chart = _chart()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 48, pix_fmt
        stream.options = {"crf": "0"}
        if interlaced:
            stream.options = {"crf": "0", "flags": "+ildct+ilme", "x264-params": "tff=1"}
        frame = av.VideoFrame.from_ndarray(chart, format="rgb24")
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def test_a_10_bit_video_frame_is_exported_in_its_colours(tmp_path):
    """swscale's conversion of a decoded 10-bit frame (HDR phone video, 10-bit H.264 or HEVC)
    straight to RGB at its own size smeared colour along edges: its exported PNG (and its
    crops and Lightly metadata) was 13 levels off on average from the same picture in 8 bits.
    Now the frame is brought to 8 bits first: the PNG is the 8-bit picture's, within dither."""
    src = tmp_path / "src"
    src.mkdir()
    _chart_clip(src / "hdr.mp4", "yuv420p10le")
    with av.open(str(_chart_clip(tmp_path / "sdr.mp4", "yuv420p"))) as c:
        want = next(iter(c.decode(video=0))).to_ndarray(format="rgb24").astype(int)
    out = tmp_path / "out"
    r = datapool.run(src, tmp_path / "pool", proportion_samples=1.0, progress=False, export=out)
    assert r.skipped == [] and (out / LIST_NAME).read_text().split() == ["hdr-0-mp4.png"]
    with av.open(str(out / "hdr-0-mp4.png")) as c:
        got = next(iter(c.decode(video=0))).to_ndarray(format="rgb24").astype(int)
    assert np.abs(got - want).mean() < 1.0


def test_an_interlaced_video_frame_is_exported_as_one_picture(tmp_path):
    """swscale's frame API (PyAV 18) converts a frame flagged interlaced (1080i broadcast,
    camcorders) field by field, each field's colour from its own half of the chroma lines:
    an exported PNG (and crops, Lightly metadata) of such H.264 was 5 levels off the same
    picture converted as one, as FFmpeg's command line converts it (its scale filter's default,
    interl=0). Encoded losslessly, the interlaced and the progressive clip hold the same YUV."""
    src = tmp_path / "src"
    src.mkdir()
    with av.open(str(_chart_clip(src / "field.mp4", "yuv420p", interlaced=True))) as c:
        assert next(iter(c.decode(video=0))).interlaced_frame  # (what made it go wrong)
    with av.open(str(_chart_clip(tmp_path / "frame.mp4", "yuv420p"))) as c:
        frame = next(iter(c.decode(video=0)))
        assert not frame.interlaced_frame
        want = frame.to_ndarray(format="rgb24").astype(int)
    out = tmp_path / "out"
    r = datapool.run(src, tmp_path / "pool", proportion_samples=1.0, progress=False, export=out)
    assert r.skipped == [] and (out / LIST_NAME).read_text().split() == ["field-0-mp4.png"]
    with av.open(str(out / "field-0-mp4.png")) as c:
        got = next(iter(c.decode(video=0))).to_ndarray(format="rgb24").astype(int)
    assert np.abs(got - want).mean() < 0.5


def _remuxed_avi(src: Path, dst: Path, gap: int = 0) -> Path:
    """`src`'s packets copied into an AVI in its own time base, as `ffmpeg -i src -c copy
    dst.avi` copies them, the packets after the first moved `gap` units later (as `-ss X -c
    copy` leaves a gap after the first keyframe): FFmpeg's AVI muxer fills the gaps between
    timestamps with empty chunks."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        ost.time_base = ist.time_base
        for n, packet in enumerate(p for p in inp.demux(ist) if p.size):
            if n and gap:
                packet.pts, packet.dts = packet.pts + gap, packet.dts + gap
            packet.stream = ost
            out.mux(packet)
    return dst


@pytest.mark.parametrize(("ext", "gap"), [("mkv", 0), ("avi", 9)])
def test_an_avi_with_empty_chunks_is_read_whole_and_one_cut_short_refused(tmp_path, ext, gap):
    """An AVI copied from Matroska (`ffmpeg -i x.mkv -c copy x.avi`: a millisecond time base,
    each frame's slot 99 empty chunks after its packet, the last one's too) or cut with
    `ffmpeg -i whole.avi -ss 1.25 -c copy cut.avi` (nine empty chunks after the first keyframe)
    plays whole, but its frames' times end before the duration its header declares (every
    chunk's): it was refused as `truncated: frames end at 2.00 s of the 2.10 s the header
    declares`. Its chunks reach the declared count; the same file with its end cut off (its
    index and last chunks lost) does not, and is still refused."""
    src = encode_numbered(tmp_path / f"src.{ext}", "mpeg4", 21, 10, {"bf": "2", "g": "12"})
    path = _remuxed_avi(src, tmp_path / "copy.avi", gap)
    frames = list(iter_frames(path, path.name, "video", (96, 48)))
    assert [number_of(f.rgb) for f in frames] == _player_frames(path)
    assert len(frames) == 21
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: data.rindex(b"idx1") * 2 // 3])  # (its index last: lost first)
    cut_short = "truncated: frames end at .* the header|damaged packet"  # (inside a chunk)
    with pytest.raises(datapool.DecodeError, match=cut_short):
        list(iter_frames(cut, cut.name, "video", (96, 48)))
