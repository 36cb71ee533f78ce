from __future__ import annotations

import numpy as np
import pytest

from datapool.errors import DecodeError
from datapool.ingest.decode import iter_frames
from datapool.media import write_video
from datapool.naming import frame_name

from .conftest import clip_frames, scene


@pytest.mark.parametrize(
    ("key", "index", "count", "name"),
    [
        ("cam/clip.mp4", 7, 100, "cam/clip-007-mp4.png"),
        ("cam/clip.mp4", 7, 99, "cam/clip-07-mp4.png"),
        ("a.b/v.mov", 0, 5, "a.b/v-0-mov.png"),
        ("v.mkv", 12, 1000, "v-0012-mkv.png"),
    ],
)
def test_lightly_frame_names(key, index, count, name):
    assert frame_name(key, index, count) == name


@pytest.mark.parametrize("ext", ["jpg", "png", "bmp", "tif", "webp"])
def test_images_decode_and_resize(tmp_path, make_media, ext):
    p = make_media(tmp_path / f"x.{ext}", seed=3)
    frames = list(iter_frames(p, f"x.{ext}", "image", (40, 30)))
    assert len(frames) == 1
    f = frames[0]
    assert f.name == f"x.{ext}" and f.index is None
    assert f.rgb.shape == (30, 40, 3) and f.rgb.dtype == np.uint8
    # The resized picture resembles the original (lossy codecs allowed).
    ref = scene(3)[::3, ::3][:30, :40].astype(float)
    assert np.abs(f.rgb.astype(float).mean((0, 1)) - ref.mean((0, 1))).max() < 25


def test_video_every_frame_and_stride(tmp_path, make_media):
    p = make_media(tmp_path / "cam" / "clip.mp4", seed=1, frames=12)
    all_frames = list(iter_frames(p, "cam/clip.mp4", "video", (32, 32)))
    assert [f.index for f in all_frames] == list(range(12))
    assert all_frames[7].name == "cam/clip-07-mp4.png"
    strided = list(iter_frames(p, "cam/clip.mp4", "video", (32, 32), frame_stride=5))
    assert [f.index for f in strided] == [0, 5, 10]
    assert [f.name for f in strided] == [
        "cam/clip-00-mp4.png",
        "cam/clip-05-mp4.png",
        "cam/clip-10-mp4.png",
    ]
    # The same frame decodes to the same pixels whatever the stride.
    np.testing.assert_array_equal(strided[1].rgb, all_frames[5].rgb)


def test_video_frames_are_in_order_and_distinct(tmp_path):
    from datapool.media import write_video

    frames = clip_frames(5, 6)
    p = write_video(tmp_path / "v.mp4", frames, fps=5, crf=10)
    got = list(iter_frames(p, "v.mp4", "video", (96, 64)))
    for ref, f in zip(frames, got):
        assert np.abs(ref.astype(int) - f.rgb.astype(int)).mean() < 8


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("zero.jpg", b"", "image"),
        ("text.png", b"hello, I am text\n" * 4, "image"),
        ("garbage.mp4", bytes(range(256)) * 4, "video"),
    ],
)
def test_broken_files_raise_decode_error(tmp_path, name, content, kind):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DecodeError):
        list(iter_frames(p, name, kind, (16, 16)))


def test_truncated_video_raises_decode_error(tmp_path, make_media):
    p = make_media(tmp_path / "v.mp4", seed=2, frames=12)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(DecodeError):
        list(iter_frames(p, "v.mp4", "video", (16, 16)))


@pytest.mark.parametrize("ext", ["mp4", "mov"])
def test_a_video_cut_short_says_it_is_incomplete_from_a_path_or_a_file_object(tmp_path, ext):
    # It was FFmpeg's `Invalid data found when processing input` (or `no video or image
    # stream`, cut in the index), which does not tell a copy cut short from a damaged file. A
    # file object (an S3 object read ahead) is read back from where it stood.
    import io

    p = write_video(tmp_path / f"v.{ext}", clip_frames(3, 12), fps=10)
    data = p.read_bytes()
    cut = data[: len(data) // 3]
    p.write_bytes(cut)
    what = (
        rf"^truncated {ext.upper()} \(the file ends inside its 'mdat' box, at byte {len(cut)} "
        r"of the \d+ it declares\): the file is incomplete$"
    )
    with pytest.raises(DecodeError, match=what):
        list(iter_frames(p, f"cam/v.{ext}", "video", (16, 16)))
    f = io.BytesIO(cut)
    with pytest.raises(DecodeError, match=what):
        list(iter_frames(f, f"cam/v.{ext}", "video", (16, 16)))
    # A whole file that is damaged inside keeps the decoder's reason.
    damaged = bytearray(data)
    mdat = data.find(b"mdat")
    damaged[mdat + 200 : mdat + 1200] = bytes(1000)
    p.write_bytes(bytes(damaged))
    with pytest.raises(DecodeError) as e:
        list(iter_frames(p, f"v.{ext}", "video", (16, 16)))
    assert "truncated" not in str(e.value) and "moov" not in str(e.value)


@pytest.mark.parametrize(
    ("ext", "fmt", "codec"),
    [
        ("m4v", "mp4", "libx264"),
        ("mpg", "mpeg", "mpeg2video"),
        ("mpeg", "mpeg", "mpeg1video"),
        ("ts", "mpegts", "libx264"),
        ("mts", "mpegts", "libx264"),
        ("m2ts", "mpegts", "libx264"),
        ("3gp", "3gp", "libx264"),
        ("wmv", "asf", "wmv2"),
        ("asf", "asf", "msmpeg4"),
        ("flv", "flv", "flv"),
    ],
)
def test_camera_and_recorder_containers_are_read_as_videos(tmp_path, ext, fmt, codec):
    """Dashcams write MPEG-TS, camcorders AVCHD .mts/.m2ts, Apple .m4v: each is listed as a
    video and every frame decodes, named as Lightly names frames."""
    import av

    from datapool.naming import media_kind

    path = tmp_path / f"clip.{ext}"
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=25)  # MPEG-1 takes only the standard rates
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for rgb in clip_frames(4, 12):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:48, :64]), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    assert media_kind(f"cam/clip.{ext.upper()}") == "video"
    frames = list(iter_frames(path, f"clip.{ext}", "video", (32, 32)))
    assert [f.index for f in frames] == list(range(12))
    assert frames[7].name == f"clip-07-{ext}.png"
    assert len({f.rgb.tobytes() for f in frames}) > 6  # the frames differ: the clip moves


def _quadrants(h: int = 48, w: int = 64) -> np.ndarray:
    """Red, green / blue, white quadrants: every turn and mirror of it differs."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    img[h // 2 :, w // 2 :] = 255
    return img


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "tiff"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_picture_a_viewer_shows(tmp_path, ext, orientation):
    # A phone stores the sensor's pixels and an EXIF Orientation tag. The embedder and the
    # thumbnail must see what Pillow's exif_transpose (and every viewer) shows: the mirrored
    # orientations (2, 4, 5, 7) too, which FFmpeg's display matrix angle cannot express.
    import io

    from PIL import Image, ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.{ext}"
    Image.fromarray(_quadrants()).save(path, exif=exif.tobytes(), quality=95)
    want = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    h, w = want.shape[:2]
    frame = next(iter_frames(path, path.name, "image", (w, h), thumbnails=True))
    assert frame.rgb.shape == want.shape
    assert np.abs(frame.rgb.astype(int) - want).mean() < 8
    thumb = Image.open(io.BytesIO(frame.thumb))
    assert (thumb.width > thumb.height) == (w > h)


def _with_cover(path, video_frames: int, cover_first: bool = True, mark_cover: bool = True):
    """An MP4/MKV with AAC audio, a one-frame MJPEG cover picture (red) and, when
    `video_frames`, an H.264 video (blue) after it."""
    import av

    with av.open(str(path), "w") as c:
        audio = c.add_stream("aac", rate=44100)
        cover = c.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 64, 48, "yuvj420p"
        if mark_cover:
            flag = av.stream.Disposition.attached_pic
            try:
                cover.disposition = flag
            except TypeError:  # PyAV 13-16 take its bits
                cover.disposition = flag.value
        video = c.add_stream("libx264", rate=10) if video_frames else None
        if video is not None:
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        red = np.zeros((48, 64, 3), np.uint8)
        red[..., 0] = 255
        frame = av.VideoFrame.from_ndarray(red, format="rgb24").reformat(format="yuvj420p")
        frame.pts = 0
        for packet in [*cover.encode(frame), *cover.encode(None)]:
            c.mux(packet)
        for i in range(8):
            samples = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for plane in samples.planes:
                plane.update(bytes(plane.buffer_size))
            samples.sample_rate, samples.pts = 44100, i * 1024
            for packet in audio.encode(samples):
                c.mux(packet)
        for packet in audio.encode(None):
            c.mux(packet)
        if video is not None:
            blue = np.zeros((48, 64, 3), np.uint8)
            blue[..., 2] = 255
            for i in range(video_frames):
                frame = av.VideoFrame.from_ndarray(blue, format="rgb24")
                frame.pts = i
                for packet in video.encode(frame):
                    c.mux(packet)
            for packet in video.encode(None):
                c.mux(packet)
    return path


def test_audio_with_cover_art_is_no_video(tmp_path):
    # A music or podcast file's cover art is a one-frame "video" stream (an attached picture):
    # it is not a video, and must not give one sample of the cover.
    path = _with_cover(tmp_path / "song.mp4", video_frames=0)
    with pytest.raises(
        DecodeError, match=r"^no video or image stream \(audio only, a cover picture\)$"
    ):
        list(iter_frames(path, "song.mp4", "video", (32, 32)))


def test_the_video_is_read_not_the_picture_stream_before_it(tmp_path):
    # A Matroska file whose first video stream is a one-frame picture: the video is the stream
    # a player plays (FFmpeg's best stream), with all its frames.
    path = _with_cover(tmp_path / "clip.mkv", video_frames=6, mark_cover=False)
    frames = list(iter_frames(path, "clip.mkv", "video", (32, 32)))
    assert [f.name for f in frames] == [frame_name("clip.mkv", i, 6) for i in range(6)]
    assert all(f.rgb[..., 2].mean() > 200 and f.rgb[..., 0].mean() < 50 for f in frames)


def _animations(tmp_path, colours, **save):
    """a.gif, a.png (APNG) and a.webp as Pillow writes them, one frame of each colour."""
    from PIL import Image

    frames = [Image.new("RGB", (60, 40), c) for c in colours]
    for ext in ("gif", "png", "webp"):
        frames[0].save(tmp_path / f"a.{ext}", save_all=True, append_images=frames[1:], **save)


_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def test_animated_images_are_read_as_videos_and_animated_webp_is_not_called_damaged(tmp_path):
    # An animated GIF or APNG is read as a short video: every frame, named as a video's frames
    # are (they took their first frame only, and a clip's other frames were dropped without a
    # word). FFmpeg 8 has no animated WebP decoder: the reason says so, not "damaged".
    _animations(tmp_path, _RGB, duration=[100, 50, 2000])
    for ext in ("gif", "png"):
        frames = list(iter_frames(tmp_path / f"a.{ext}", f"a.{ext}", "image", (30, 20)))
        assert [(f.name, f.index) for f in frames] == [(f"a-{i}-{ext}.png", i) for i in range(3)]
        for f, colour in zip(frames, _RGB):
            channel = colour.index(255)
            assert f.rgb[..., channel].min() > 240, (ext, f.name)
            assert np.delete(f.rgb, channel, axis=2).max() < 15, (ext, f.name)
        # Sampled as a video's frames are: --frame-stride, and --fps by the frames' delays.
        kept = iter_frames(tmp_path / f"a.{ext}", f"a.{ext}", "image", (30, 20), frame_stride=2)
        assert [f.index for f in kept] == [0, 2]
        kept = iter_frames(tmp_path / f"a.{ext}", f"a.{ext}", "image", (30, 20), fps=10)
        assert [f.index for f in kept] == [0, 1]  # at 0, 0.1 and 0.15 s
    frames, error = [], ""
    try:
        frames = list(iter_frames(tmp_path / "a.webp", "a.webp", "image", (30, 20)))
    except DecodeError as e:  # FFmpeg 8 and older
        error = str(e)
    # An FFmpeg that decodes animated WebP reads it as the GIF is read: its frames are counted
    # from its ANMF chunks (FFmpeg's WebP reader gives the whole file as one packet).
    from datapool.ingest._imagesize import webp_frame_count

    assert webp_frame_count((tmp_path / "a.webp").read_bytes()) == 3
    assert error == "animated WebP: this FFmpeg cannot decode it (not damaged)" or (
        [f.name for f in frames] == [f"a-{i}-webp.png" for i in range(3)]
    )


def test_a_one_frame_animation_is_an_image(tmp_path):
    # A GIF, APNG or WebP written as an animation of one frame is an image: one sample, its key.
    _animations(tmp_path, _RGB[:1], duration=100, loop=0)
    for ext in ("gif", "png", "webp"):
        (frame,) = iter_frames(tmp_path / f"a.{ext}", f"a.{ext}", "image", (30, 20))
        assert (frame.name, frame.index) == (f"a.{ext}", None)
        assert frame.rgb[..., 0].min() > 240


def test_a_truncated_animated_png_is_refused(tmp_path):
    # FFmpeg's APNG reader stops at the last whole frame of a file cut short, without an error.
    _animations(tmp_path, _RGB, duration=100)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DecodeError, match=r"^truncated animated PNG \(no IEND chunk\)"):
        list(iter_frames(tmp_path / "cut.png", "cut.png", "image", (30, 20)))


def test_a_video_damaged_in_the_middle_is_refused_saying_where(tmp_path):
    # 16 bytes overwritten in the middle of a P-frame's data: FFmpeg's error alone ("Invalid
    # data found when processing input") reads as "not a video"; the reason says where.
    import av

    path = write_video(tmp_path / "v.mp4", clip_frames(5, 30, h=240, w=320), fps=10)
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = packets[20]
    data = bytearray(path.read_bytes())
    data[pos + size // 2 : pos + size // 2 + 16] = bytes(range(16))
    path.write_bytes(data)
    with pytest.raises(DecodeError, match=r"^damaged after frame \d+ of the video: "):
        list(iter_frames(path, "v.mp4", "video", (32, 32)))


def test_exif_orientation_reads_big_endian_tags_after_other_segments():
    # Canon and Nikon write big-endian ("MM") EXIF; an XMP APP1 segment may come first.
    import struct

    from datapool.ingest._exif import exif_orientation

    ifd = struct.pack(">H", 2) + struct.pack(">HHI4s", 0x010F, 2, 4, b"Cam\0")
    ifd += struct.pack(">HHIH2x", 0x0112, 3, 1, 6) + b"\0\0\0\0"
    tiff = b"MM\0*" + struct.pack(">I", 8) + ifd
    xmp = b"http://ns.adobe.com/xap/1.0/\0<x/>"
    jpeg = b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
    jpeg += b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\0\0" + tiff + b"\xff\xd9"
    assert exif_orientation(jpeg) == 6
    assert (
        exif_orientation(jpeg.replace(b"\x00\x06\x00\x00\x00\x00\x00\x00", b"\0\x09" + 6 * b"\0"))
        == 1
    )
    assert exif_orientation(jpeg[:40]) == 1  # cut short: as stored
    assert exif_orientation(b"GIF89a" + bytes(20)) == 1


def test_a_limited_range_frame_after_a_full_range_one_keeps_its_colours(tmp_path):
    # One decode thread reads a JPEG (yuvj420p, full range), then a WebP (yuv420p, limited
    # range) of the same size. PyAV before 17 kept the first frame's colour range in a reused
    # swscale context, so the WebP came out washed out (white read as 235, red as 239,15,14;
    # Python 3.9 gets PyAV 15): one reformatter per kind of frame now.
    from PIL import Image

    img = _quadrants()
    errors = {}
    for ext in ("jpg", "webp", "png", "webp"):
        path = tmp_path / f"q.{ext}"
        Image.fromarray(img).save(path, quality=95)
        want = np.asarray(Image.open(path).convert("RGB")).astype(int)
        frame = next(iter_frames(path, path.name, "image", (64, 48)))
        errors.setdefault(ext, []).append(float(np.abs(frame.rgb.astype(int) - want).mean()))
    assert max(max(v) for v in errors.values()) < 8, errors


def test_a_box_declaring_less_than_its_own_header_is_damage_not_a_cut(tmp_path):
    # A 64-bit size (size field 1) under the 16 bytes its header takes was walked as a box, and
    # the walk went on inside the header: its largesize's upper half (0) read as a box "to the
    # end of the file", and a whole file whose index is there was said to lack it ("MP4 without
    # its 'moov' box ... incomplete"), a reason a user acts on (copies the file again).
    import io
    import struct

    from datapool.ingest._mp4boxes import cut_short

    data = bytearray(write_video(tmp_path / "v.mp4", clip_frames(3, 12), fps=10).read_bytes())
    at = data.find(b"mdat") - 4
    assert cut_short(io.BytesIO(bytes(data)), "MP4") is None  # whole: no reason
    size = struct.unpack(">I", data[at : at + 4])[0]
    if size == 1:  # (FFmpeg writes its mdat with a 64-bit size)
        size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
    damaged = data[:]
    damaged[at : at + 16] = struct.pack(">I4sQ", 1, b"mdat", 8)
    assert cut_short(io.BytesIO(bytes(damaged)), "MP4") is None
    # A 64-bit size that covers its header is read as ever: the file cut inside the box.
    damaged[at : at + 16] = struct.pack(">I4sQ", 1, b"mdat", size)
    assert cut_short(io.BytesIO(bytes(damaged[: at + 100])), "MP4") == (
        f"truncated MP4 (the file ends inside its 'mdat' box, at byte {at + 100} of the "
        f"{at + size} it declares): the file is incomplete"
    )


def test_a_heif_whose_iloc_is_damaged_is_judged_at_once_and_left_to_the_decoder():
    """A HEIF's `iloc` box empty, or cut inside its header, was an IndexError ("index out of
    range" as the skip reason); one whose fields are all 0 bytes wide, with 65535 extents an
    item, was read extent by extent (nothing, 65535 times an item: 100,000 items hang the run
    for hours). Now neither is called cut short: the decoder says what is wrong."""
    import os
    import struct
    import subprocess
    import sys
    from pathlib import Path

    import datapool
    from datapool.ingest._heifboxes import cut_short

    def box(kind: bytes, content: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(content), kind) + content

    ftyp = box(b"ftyp", b"heic\0\0\0\0mif1heic")

    def heif(iloc: bytes) -> bytes:
        return ftyp + box(b"meta", b"\0\0\0\0" + box(b"iloc", iloc))

    assert cut_short(heif(b""), "HEIC") is None
    assert cut_short(heif(b"\0\0\0\0\0"), "HEIC") is None
    items = 100_000  # version 2: item_ID, construction method, data reference, extent count
    wide = (
        b"\2\0\0\0"
        + b"\0\0"
        + struct.pack(">I", items)
        + struct.pack(">IHHH", 1, 0, 0, 65535) * items
    )
    probe = (
        "import sys\nfrom datapool.ingest._heifboxes import cut_short\n"
        "print(cut_short(sys.stdin.buffer.read(), 'HEIC'))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(datapool.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", probe], input=heif(wide), capture_output=True, timeout=120, env=env
    )
    assert done.stdout.decode().strip() == "None", done.stderr.decode()
