"""HEIC, HEIF and AVIF as phones and the web write them: an iPhone's grid of 512x512 tiles with
HEIF's rotation (`irot`) and an EXIF Orientation saying the same, 10-bit samples, a burst of
several images, alpha, a file cut short. FFmpeg reads one tile of a grid and none of HEIF's
transforms; datapool has Pillow decode them (pillow-heif for HEIC, Pillow's own AVIF). Each file
is written here by pillow-heif (libheif, x265) or PyAV (SVT-AV1), and checked against the
picture it was made from, turned as a phone shows it."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

import datapool
from datapool.errors import DecodeError
from datapool.ingest import decode
from datapool.ingest.decode import decode_shown, iter_frames
from datapool.pool.thumbnails import unpack

pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif (datapool[heif]) writes HEIC")
needs_avif = pytest.mark.skipif(not features.check("avif"), reason="this Pillow reads no AVIF")


def _picture(h: int, w: int) -> np.ndarray:
    """Ramps, a red block at the top left and a blue one at the bottom right: a wrong turn,
    mirror, tile or colour all show."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 200 // (w - 1), yy * 200 // (h - 1), np.full_like(xx, 90)], -1)
    img[: h // 4, : w // 4] = (230, 20, 20)
    img[-h // 4 :, -w // 4 :] = (20, 20, 230)
    return img.astype(np.uint8)


def _heic(path: Path, rgb: np.ndarray, orientation: int = 1, grid: bool = False) -> Path:
    """An iPhone-like HEIC: pillow-heif writes an EXIF Orientation as HEIF's `irot`/`imir` and
    keeps the tag in the EXIF block too, as iOS does."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    if grid and not hasattr(pillow_heif.options, "GRID_TILE_SIZE"):
        pytest.skip("this pillow-heif writes no grid")
    if grid:
        pillow_heif.options.GRID_TILE_SIZE = 512
    try:
        img = pillow_heif.from_pillow(Image.fromarray(rgb))
        img.save(path, quality=95, exif=exif.tobytes(), enc_params={"preset": "ultrafast"})
    finally:
        if grid:
            pillow_heif.options.GRID_TILE_SIZE = 0
    return path


def _shown(path: Path) -> np.ndarray:
    (frame,) = list(iter_frames(path, path.name, "image", None))
    return frame.rgb.astype(int)


def test_an_iphone_grid_heic_is_read_whole_and_turned_once(tmp_path):
    """Stored sideways in 2x2 tiles of 512x512 with `irot` and EXIF Orientation 6: the picture
    shown upright, whole, turned once (not again by the EXIF tag), as iOS shows it."""
    stored = _picture(520, 600)
    path = _heic(tmp_path / "IMG_0001.HEIC", stored, orientation=6, grid=True)
    data = path.read_bytes()
    assert b"grid" in data and b"irot" in data  # an iPhone's layout
    assert pillow_heif.open_heif(path).info["exif"]  # (the tag is in the file: 6)
    import av

    with av.open(str(path)) as c:  # what FFmpeg alone gives: one tile
        assert (c.streams.video[0].width, c.streams.video[0].height) == (512, 512)
    upright = np.rot90(stored, -1).astype(int)  # Orientation 6: turned 90 clockwise
    got = _shown(path)
    assert got.shape == upright.shape == (600, 520, 3)
    assert np.abs(got - upright).mean() < 3
    assert np.abs(decode_shown(path, path.name).astype(int) - upright).mean() < 3


@needs_avif
def test_an_avif_is_turned_by_its_irot_once(tmp_path):
    stored = _picture(48, 64)
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "web.avif"
    Image.fromarray(stored).save(path, quality=100, exif=exif.tobytes())
    assert b"irot" in path.read_bytes()  # (Pillow writes the tag as HEIF's rotation)
    upright = np.rot90(stored, 1).astype(int)  # Orientation 8: turned 90 counterclockwise
    got = _shown(path)
    assert got.shape == upright.shape and np.abs(got - upright).mean() < 4


def test_10_bit_heic_and_avif_are_8_bit_rgb_of_the_same_colour(tmp_path):
    samples = np.zeros((48, 64, 3), np.uint16)
    samples[:] = (200 * 257, 100 * 257, 50 * 257)
    heic = tmp_path / "ten.heic"
    pillow_heif.from_bytes(mode="RGB;16", size=(64, 48), data=samples.tobytes()).save(
        heic, quality=95
    )
    assert pillow_heif.open_heif(heic, convert_hdr_to_8bit=False).info["bit_depth"] == 10
    got = _shown(heic)
    assert got.dtype == int and np.abs(got - (200, 100, 50)).max() <= 3
    if not features.check("avif"):
        return
    import av

    avif = tmp_path / "ten.avif"
    with av.open(str(avif), "w", format="avif") as c:
        s = c.add_stream("libsvtav1", rate=1)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p10le"
        rgb = np.full((48, 64, 3), (200, 100, 50), np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p10le")
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)
    data = avif.read_bytes()
    av1c = data.index(b"av1C") + 4
    assert data[av1c + 2] & 0x40  # high_bitdepth: 10 bits
    assert np.abs(_shown(avif) - (200, 100, 50)).max() <= 3


def test_a_burst_reads_its_primary_image(tmp_path):
    burst = pillow_heif.from_pillow(Image.new("RGB", (64, 48), (230, 20, 20)))
    burst.add_from_pillow(Image.new("RGB", (64, 48), (20, 230, 20)))
    burst[1].info["primary"] = True
    path = tmp_path / "burst.heic"
    burst.save(path, quality=95)
    assert len(pillow_heif.open_heif(path)) == 2
    assert np.abs(_shown(path) - (20, 230, 20)).max() <= 4


def test_alpha_is_dropped_its_colours_kept_as_a_png_s(tmp_path):
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = _picture(48, 64)
    rgba[..., 3] = 255
    rgba[:, 32:, 3] = 0  # transparent, its colours still there
    pillow_heif.from_pillow(Image.fromarray(rgba)).save(tmp_path / "a.heic", quality=100)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert pillow_heif.open_heif(tmp_path / "a.heic").mode == "RGBA"
    assert np.abs(_shown(tmp_path / "a.heic") - _shown(tmp_path / "a.png")).mean() < 3


def test_a_heic_cut_short_is_skipped_saying_so(tmp_path):
    whole = _heic(tmp_path / "whole.heic", _picture(48, 64)).read_bytes()
    cut = tmp_path / "cut.heic"
    cut.write_bytes(whole[: len(whole) - 40])  # libheif decodes this without a word
    with pytest.raises(DecodeError, match=r"truncated HEIC \(the file ends inside its 'mdat' box"):
        _shown(cut)
    # cut where a box ends: the meta box whole, the image data gone
    mdat = whole.index(b"mdat") - 4
    cut.write_bytes(whole[:mdat])
    with pytest.raises(DecodeError, match=r"truncated HEIC .*before the end of its images' data"):
        decode_shown(cut, cut.name)


def test_a_heic_without_pillow_heif_is_skipped_naming_the_install_and_read_after_it(tmp_path):
    """Skipped as a failed read (the machine lacks the decoder; the file is fine), so the run
    after `pip install 'datapool[heif]'` reads it, without --retry-skipped."""
    src = tmp_path / "src"
    src.mkdir()
    path = _heic(src / "IMG_0002.heic", _picture(48, 64))
    Image.fromarray(_picture(40, 40)).save(src / "b.jpg", quality=95)
    with pytest.MonkeyPatch.context() as m:
        m.setitem(sys.modules, "pillow_heif", None)  # import pillow_heif fails
        decode._heif_opener.cache_clear()
        try:
            with pytest.raises(
                DecodeError, match=r"not installed .*pip install 'datapool\[heif\]'"
            ):
                _shown(path)
            r = datapool.run(src, tmp_path / "pool", n_samples=5, progress=False)
        finally:
            decode._heif_opener.cache_clear()
    assert r.selected == ["b.jpg"]
    assert [s["key"] for s in r.skipped] == ["IMG_0002.heic"]
    assert r.skipped[0]["reason"] == (
        "read failed: a HEIC image, which datapool reads with pillow-heif, not installed (not "
        "damaged): pip install 'datapool[heif]'; tried again next run"
    )
    after = datapool.run(src, tmp_path / "pool", n_samples=5, progress=False)
    assert after.selected == ["IMG_0002.heic"] and not after.skipped


def test_a_run_reads_phone_photos_with_thumbnails_and_exports_the_originals(tmp_path):
    """A folder of an iPhone's HEIC (turned), an AVIF, a JPEG and a HEIC cut short: the run
    reads the three, skips the cut one with its reason, shows thumbnails as a phone does,
    exports the original files, and the next run reads nothing again."""
    src = tmp_path / "phone"
    src.mkdir()
    heic = _heic(src / "IMG_0003.HEIC", _picture(48, 64), orientation=6)
    Image.fromarray(_picture(40, 40)[::-1]).save(src / "b.jpg", quality=95)
    names = {"IMG_0003.HEIC", "b.jpg"}
    if features.check("avif"):
        Image.fromarray(_picture(32, 48)).save(src / "c.avif", quality=90)
        names.add("c.avif")
    (src / "cut.heic").write_bytes(heic.read_bytes()[:-40])
    out = tmp_path / "out"
    r = datapool.run(src, tmp_path / "pool", n_samples=10, progress=False, export=str(out))
    assert set(r.selected) == names
    assert [(s["key"], s["reason"]) for s in r.skipped] == [
        ("cut.heic", r.skipped[0]["reason"])
    ] and r.skipped[0]["reason"].startswith("truncated HEIC")
    for name in names:
        assert (out / name).read_bytes() == (src / name).read_bytes()  # the original file
    packed = (tmp_path / "pool" / "runs" / "0" / "thumbnails.bin").read_bytes()
    thumbs = {k: Image.open(io.BytesIO(v)) for k, v in unpack(packed).items()}
    assert set(thumbs) == names
    w, h = thumbs["IMG_0003.HEIC"].size
    assert w < h  # stored 64x48, shown upright (Orientation 6) as 48x64
    turned = np.rot90(_picture(48, 64), -1)
    small = np.asarray(Image.fromarray(turned).resize((w, h), Image.BILINEAR), int)
    assert np.abs(np.asarray(thumbs["IMG_0003.HEIC"].convert("RGB"), int) - small).mean() < 12
    report = json.loads(r.report_path.read_text())
    assert report["counts"]["skipped"] == 1
    again = datapool.run(src, tmp_path / "pool", n_samples=10, progress=False)
    assert again.counts["new"] == 0 and again.counts.get("processed", 0) == 0


def test_pillow_heif_opens_files_the_datapool_way(tmp_path):
    """What datapool relies on pillow-heif for: it turns by `irot` itself, and resets the
    EXIF Orientation it leaves in the picture's info to 1 (ImageOps.exif_transpose then does
    nothing), so no one turns an iPhone photo twice."""
    path = _heic(tmp_path / "o.heic", _picture(48, 64), orientation=6)
    assert decode._heif_opener()
    with Image.open(io.BytesIO(path.read_bytes())) as img:
        assert img.size == (48, 64)
        assert img.getexif().get(0x0112, 1) == 1


def test_a_heic_over_max_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    """Its size is read from its `ispe` property; one over Pillow's own limit but within
    datapool's (twice it) decodes without Pillow's DecompressionBombWarning (an error here)."""
    path = _heic(tmp_path / "big.heic", _picture(48, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 64x48 is over it
    assert _shown(path).shape == (48, 64, 3)
    monkeypatch.setattr(decode, "MAX_PIXELS", 3000)
    with pytest.raises(DecodeError, match=r"declares 64x\d+ pixels, over the limit of 3000"):
        _shown(path)


def test_crops_of_a_heic_are_cut_from_the_picture_as_shown(tmp_path):
    """Crop selection's boxes (Lightly's predictions) refer to the picture as the phone shows
    it: a HEIC stored sideways with `irot` (and EXIF Orientation 6) is cut upright, once."""
    root = tmp_path / "src"
    preds = root / ".lightly" / "predictions"
    (preds / "od").mkdir(parents=True)
    (preds / "tasks.json").write_text(json.dumps(["od"]))
    schema = {"task_type": "object-detection", "categories": [{"id": 0, "name": "thing"}]}
    (preds / "od" / "schema.json").write_text(json.dumps(schema))
    shown = np.full((160, 120, 3), 40, np.uint8)  # portrait as shown
    shown[100:150, 10:40] = (230, 20, 20)
    _heic(root / "IMG_0004.HEIC", np.rot90(shown, 1).copy(), orientation=6)  # stored landscape
    box = {"category_id": 0, "bbox": [10, 100, 30, 50], "score": 0.9}
    doc = {"file_name": "IMG_0004.HEIC", "predictions": [box]}
    (preds / "od" / "IMG_0004.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    r = datapool.run(
        root, tmp_path / "pool", n_samples=1, crops="od", crop_padding=0.0, export=str(out)
    )
    assert r.selected == ["IMG_0004-HEIC-crop-0.png"]
    with Image.open(out / "IMG_0004-HEIC-crop-0.png") as crop:
        px = np.asarray(crop.convert("RGB"), int)
    assert px.shape[:2] == (50, 30) and np.abs(px - (230, 20, 20)).mean() < 8


@needs_avif
def test_an_animated_avif_is_skipped_saying_what_it_is(tmp_path):
    path = tmp_path / "anim.avif"
    frames = [Image.new("RGB", (64, 48), c) for c in ((230, 20, 20), (20, 20, 230))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, quality=90)
    with pytest.raises(DecodeError, match=r"^an AVIF image sequence of 2 frames, which datapool"):
        _shown(path)
