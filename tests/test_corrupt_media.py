"""Truncated and damaged media is skipped with its reason, never half-used (issue 15, point 5).

FFmpeg conceals damage: a JPEG cut short decodes as its top rows over a grey block, and a cut H.264
stream ends with a smeared frame. Every file here is real PyAV-encoded media cut at real byte
offsets."""

from __future__ import annotations

import json

import numpy as np
import pytest

import datapool
from datapool.errors import DecodeError
from datapool.ingest.decode import iter_frames
from datapool.media import write_image, write_video

CUTS = (0.2, 0.5, 0.8, 0.95, 0.999)


def _noisy(seed: int, h: int, w: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    img = r.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    return img


def _cut(src, dst, fraction: float):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize("ext", ["jpg", "png"])
@pytest.mark.parametrize("fraction", CUTS)
def test_truncated_image_is_corrupt(tmp_path, ext, fraction):
    whole = write_image(tmp_path / f"whole.{ext}", _noisy(1, 240, 320))
    assert len(list(iter_frames(whole, "whole", "image", (32, 32)))) == 1
    cut = _cut(whole, tmp_path / f"cut.{ext}", fraction)
    with pytest.raises(DecodeError):
        list(iter_frames(cut, "cut", "image", (32, 32)))


def test_jpeg_cut_by_its_end_marker_only_is_corrupt(tmp_path):
    whole = write_image(tmp_path / "whole.jpg", _noisy(2, 96, 128))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:-2])
    with pytest.raises(DecodeError, match="truncated JPEG"):
        list(iter_frames(cut, "cut", "image", (32, 32)))


def test_jpeg_with_bytes_after_its_end_is_whole(tmp_path):
    """Motion photos and some cameras append data after the image: still a whole JPEG."""
    whole = write_image(tmp_path / "whole.jpg", _noisy(3, 96, 128))
    extended = tmp_path / "extended.jpg"
    extended.write_bytes(whole.read_bytes() + b"\xff\xda" + bytes(range(256)) * 4)
    assert len(list(iter_frames(extended, "x", "image", (32, 32)))) == 1


def _pil_gifs(tmp_path):
    """GIFs as Pillow writes them: one frame, palette with transparency and a comment,
    interlaced grey, and animated."""
    from PIL import Image

    frames = [Image.fromarray(_noisy(s, 90, 120)) for s in range(3)]
    out = {"one": tmp_path / "one.gif", "pal": tmp_path / "pal.gif"}
    frames[0].save(out["one"])
    frames[1].convert("P").save(out["pal"], transparency=0, comment=b"made by a test")
    out["grey"] = tmp_path / "grey.gif"
    frames[2].convert("L").save(out["grey"], interlace=True)
    out["anim"] = tmp_path / "anim.gif"
    frames[0].save(out["anim"], save_all=True, append_images=frames[1:], loop=0, duration=80)
    return out


@pytest.mark.parametrize("fraction", CUTS)
def test_truncated_gif_is_corrupt(tmp_path, fraction):
    """FFmpeg only logs a GIF cut short ("LZW decode failed") and fills in the rest."""
    for name, whole in _pil_gifs(tmp_path).items():
        frames = list(iter_frames(whole, f"{name}.gif", "image", (32, 32)))
        assert len(frames) == (3 if name == "anim" else 1)  # an animation: all its frames
        cut = _cut(whole, tmp_path / f"cut-{name}.gif", fraction)
        with pytest.raises(DecodeError, match="truncated GIF"):
            list(iter_frames(cut, "cut", "image", (32, 32)))


def test_gif_with_bytes_after_its_trailer_is_whole(tmp_path):
    whole = _pil_gifs(tmp_path)["anim"]
    extended = tmp_path / "extended.gif"
    extended.write_bytes(whole.read_bytes() + b"\0\0trailing")
    assert len(list(iter_frames(extended, "x.gif", "image", (32, 32)))) == 3


def _damaged(data: bytes, n: int = 200) -> bytes:
    """`n` bytes in the middle XOR'd: the end marker and the header stay intact."""
    r = np.random.default_rng(1)
    out = bytearray(data)
    mid = len(out) // 2
    for i in range(n):
        out[mid + i] ^= int(r.integers(1, 256))
    return bytes(out)


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_with_damaged_data_is_corrupt(tmp_path, progressive):
    """The decoder's errors are errors for stills too (err_detect=explode): FFmpeg conceals
    damaged entropy-coded data as smeared blocks."""
    from PIL import Image

    whole = tmp_path / "whole.jpg"
    Image.fromarray(_noisy(4, 240, 320)).save(whole, quality=95, progressive=progressive)
    assert len(list(iter_frames(whole, "whole", "image", (32, 32)))) == 1
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(_damaged(whole.read_bytes()))
    with pytest.raises(DecodeError):
        list(iter_frames(bad, "bad", "image", (32, 32)))


@pytest.mark.parametrize(
    ("fmt", "opts"),
    [
        ("JPEG", {"quality": 50, "subsampling": 2}),
        ("JPEG", {"quality": 95, "subsampling": 0, "progressive": True, "optimize": True}),
        ("JPEG", {"restart_marker_blocks": 4}),
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("WEBP", {"quality": 80}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("TIFF", {}),
        ("BMP", {}),
    ],
)
def test_whole_images_of_every_writer_still_decode(tmp_path, fmt, opts):
    """The stricter check must not refuse whole files: Pillow's, and PyAV's own (write_image,
    whose TIFFs FFmpeg's err_detect=explode refuses, so TIFF is decoded without it)."""
    from PIL import Image

    path = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(_noisy(5, 120, 160)).save(path, fmt, **opts)
    assert len(list(iter_frames(path, "x", "image", (32, 32)))) == 1
    for ext in ("jpg", "png", "bmp", "tiff", "webp"):
        own = write_image(tmp_path / f"own.{ext}", _noisy(6, 120, 160))
        assert len(list(iter_frames(own, "own", "image", (32, 32)))) == 1


# An MP4 written by PyAV has its index (moov) at the end: its last 0.1% is index, not frames.
VIDEO_CUTS = [
    (e, f) for e in ("h264", "ts", "mkv", "mp4") for f in CUTS if (e, f) != ("mp4", 0.999)
]


@pytest.mark.parametrize(("ext", "fraction"), VIDEO_CUTS)
def test_truncated_h264_is_corrupt(tmp_path, ext, fraction):
    frames = [_noisy(10 + i, 64, 96) for i in range(20)]
    whole = write_video(tmp_path / f"whole.{ext}", frames, fps=10)
    assert len(list(iter_frames(whole, "whole", "video", (32, 32)))) == 20
    cut = _cut(whole, tmp_path / f"cut.{ext}", fraction)
    with pytest.raises(DecodeError):
        list(iter_frames(cut, f"cut.{ext}", "video", (32, 32)))


def test_run_skips_a_truncated_jpeg_with_its_reason(tmp_path):
    """The truncated JPEG sorts first: today it is pick #1 of every fresh pool."""
    bucket = tmp_path / "bucket"
    for i in range(4):
        write_image(bucket / f"photo{i}.jpg", _noisy(20 + i, 96, 128))
    _cut(write_image(tmp_path / "a.jpg", _noisy(30, 96, 128)), bucket / "a_cut.jpg", 0.4)
    _cut(
        write_video(tmp_path / "v.mkv", [_noisy(40 + i, 64, 96) for i in range(8)]),
        bucket / "clip.mkv",
        0.6,
    )
    result = datapool.run(bucket, tmp_path / "pool", proportion_samples=1.0, progress=False)
    reasons = {s["key"]: s["reason"] for s in result.skipped}
    assert set(reasons) == {"a_cut.jpg", "clip.mkv"}, reasons
    assert "truncated" in reasons["a_cut.jpg"]
    assert "a_cut.jpg" not in result.selected
    assert not any(n.startswith("clip") for n in result.selected)
    report = json.loads(result.report_path.read_text())
    assert {s["key"] for s in report["skipped"]} == {"a_cut.jpg", "clip.mkv"}
