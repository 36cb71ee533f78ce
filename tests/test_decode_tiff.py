"""TIFFs as scanners, Photoshop, microscopes and GIS tools write them: compressed with JPEG,
Zstandard or LZMA, of 8, 16 or 32-bit samples. FFmpeg's TIFF decoder gives a JPEG-compressed
one as a black picture (white in CMYK) without an error, and fails on the others; datapool has
Pillow decode those, and says what it does not read. Each file is written here by Pillow (its
libtiff) and checked against Pillow's own decode of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datapool
from datapool.errors import DecodeError
from datapool.fingerprint import DECODER_VERSION
from datapool.ingest.decode import decode_shown, iter_frames

H, W = 48, 64


def _picture() -> np.ndarray:
    """Smooth colour ramps and a red block: wrong colours, a wrong turn or black all show."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), (xx + yy) * 255 // (W + H - 2)], -1)
    img[4:16, 4:20] = (230, 20, 20)
    return img.astype(np.uint8)


def _written(path: Path, mode: str, **save: object) -> Path:
    try:
        Image.fromarray(_picture()).convert(mode).save(path, **save)
    except OSError as e:  # a Pillow whose libtiff lacks the codec
        pytest.skip(f"this Pillow cannot write {save}: {e}")
    return path


def _pillow(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(int)


@pytest.mark.parametrize(
    ("mode", "compression"),
    [
        ("RGB", "jpeg"),
        ("L", "jpeg"),
        ("CMYK", "jpeg"),
        ("RGB", "zstd"),
        ("RGB", "lzma"),
    ],
)
def test_a_tiff_ffmpeg_reads_black_or_not_at_all_gives_its_picture(tmp_path, mode, compression):
    """Before: the JPEG-compressed ones were embedded black (CMYK: white), and the Zstandard
    and LZMA ones skipped as `damaged or truncated: its header says 64x48, but no frame
    decodes`."""
    quality = {"quality": 95} if compression == "jpeg" else {}
    path = _written(tmp_path / "scan.tif", mode, compression=compression, **quality)
    (frame,) = iter_frames(path, path.name, "image", (W, H))
    want = _pillow(path)
    assert want.std() > 40  # (a picture, not a blank)
    assert np.abs(frame.rgb.astype(int) - want).mean() < 1.0
    assert np.abs(decode_shown(path, path.name).astype(int) - want).mean() < 1.0


def test_a_jpeg_compressed_tiff_is_turned_by_its_orientation_once(tmp_path):
    """The tag is read from the TIFF's IFD as for any TIFF: 6 is a quarter turn clockwise
    (Pillow 10 and later turn such a TIFF as they load it: datapool turns it once)."""
    plain = _written(tmp_path / "plain.tif", "RGB", compression="jpeg")
    path = _written(tmp_path / "turned.tif", "RGB", compression="jpeg", tiffinfo={274: 6})
    (frame,) = iter_frames(path, path.name, "image", (H, W))
    want = np.rot90(_pillow(plain), k=-1)
    assert np.abs(frame.rgb.astype(int) - want).mean() < 1.0
    assert np.abs(decode_shown(path, path.name).astype(int) - want).mean() < 1.0


@pytest.mark.parametrize(
    ("array", "said"),
    [
        (np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W), "32-bit floating-point"),
        (np.arange(H * W, dtype=np.int32).reshape(H, W) * 1000, "32-bit samples"),
    ],
)
def test_a_tiff_of_32_bit_samples_is_skipped_saying_so_not_called_damaged(tmp_path, array, said):
    """A scientific TIFF (float or 32-bit integer samples) was skipped as damaged; it is not,
    and no one scale of it to 8-bit colour is right, so the reason says what it is."""
    path = tmp_path / "depth.tif"
    Image.fromarray(array).save(path)
    with pytest.raises(DecodeError, match=f"^a TIFF \\(uncompressed\\) of {said}.*not damaged"):
        list(iter_frames(path, path.name, "image", (W, H)))


def test_a_16_bit_white_is_zero_tiff_read_by_pillow_is_not_inverted(tmp_path):
    """A 16-bit grey TIFF whose PhotometricInterpretation is WhiteIsZero (0: sample 0 is white)
    gives the picture FFmpeg gives of it uncompressed, whatever its compression. Pillow gives
    16-bit samples as stored: compressed with Zstandard (read by Pillow), it came out
    inverted, white as black."""
    ramp = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 21).astype(np.uint16)
    ffmpeg = tmp_path / "plain.tif"
    Image.fromarray(ramp).save(ffmpeg, tiffinfo={262: 0})
    path = tmp_path / "packed.tif"
    try:
        Image.fromarray(ramp).save(path, compression="zstd", tiffinfo={262: 0})
    except OSError as e:  # a Pillow whose libtiff lacks the codec
        pytest.skip(f"this Pillow cannot write Zstandard: {e}")
    (want,) = iter_frames(ffmpeg, ffmpeg.name, "image", (W, H))
    assert want.rgb[0, 0].tolist() == [255, 255, 255]  # (0 is white)
    (frame,) = iter_frames(path, path.name, "image", (W, H))
    assert np.abs(frame.rgb.astype(int) - want.rgb.astype(int)).max() <= 1
    shown = decode_shown(path, path.name).astype(int)
    assert np.abs(shown - 255 + ramp[..., None].astype(int) // 256).max() <= 1


def _lab(path: Path, **save: object) -> Path:
    """_picture() in CIELab (8 bits a sample), as Photoshop and colour scanners write it."""
    from PIL import ImageCms

    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = ImageCms.applyTransform(Image.fromarray(_picture()), to_lab)
    assert lab is not None
    try:
        lab.save(path, **save)
    except OSError as e:  # a Pillow whose libtiff lacks the codec
        pytest.skip(f"this Pillow cannot write {save}: {e}")
    return path


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_a_cielab_tiff_is_read_in_its_colours(tmp_path, compression):
    """An 8-bit CIELab TIFF is read as Pillow converts it to sRGB, its colours those of the
    picture written. FFmpeg does not implement CIELab: uncompressed it was skipped as
    `damaged or truncated: its header says ...`, compressed (read by Pillow) as a TIFF `of
    8-bit samples (Pillow's mode LAB) ... no one scale to 8-bit colour is right` (neither
    true)."""
    path = _lab(tmp_path / "lab.tif", compression=compression)
    (frame,) = iter_frames(path, path.name, "image", (W, H))
    assert np.abs(frame.rgb.astype(int) - _pillow(path)).mean() < 1.0
    assert np.abs(frame.rgb.astype(int) - _picture().astype(int)).mean() < 4.0
    assert np.abs(decode_shown(path, path.name).astype(int) - _pillow(path)).mean() < 1.0


def test_a_tiff_in_a_colour_space_nothing_reads_is_refused_naming_it(tmp_path):
    """ICCLab (PhotometricInterpretation 9), which neither FFmpeg nor Pillow decodes, is
    refused naming it; it was called damaged."""
    path = tmp_path / "icc.tif"
    Image.open(_lab(tmp_path / "lab.tif")).save(path, tiffinfo={262: 9})
    with pytest.raises(DecodeError, match=r"^a TIFF \(uncompressed\) in ICCLab colour .*not dam"):
        list(iter_frames(path, path.name, "image", (W, H)))


def test_a_damaged_jpeg_compressed_tiff_is_refused(tmp_path):
    """Pillow's decode checks the data as FFmpeg's does: a strip whose JPEG data is lost (its
    second half zeroed; the IFD after it intact) is not used."""
    path = _written(tmp_path / "cut.tif", "RGB", compression="jpeg", quality=95)
    data = bytearray(path.read_bytes())
    with Image.open(path) as img:
        start, size = img.tag_v2[273][0], img.tag_v2[279][0]
    data[start + size // 2 : start + size] = bytes(size - size // 2)
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r"^JPEG-compressed TIFF: strip 0 has no end-of-image"):
        list(iter_frames(path, path.name, "image", (W, H)))


def test_a_pool_of_an_older_decoder_reads_its_black_tiffs_again_and_tries_its_skipped_ones(
    tmp_path, monkeypatch
):
    """A pool whose run recorded decoder 5 read scan.tif (JPEG-compressed) as a black picture
    and skipped packed.tif (Zstandard) as damaged. Its next run checks its TIFFs once, reads
    scan.tif again (its black sample leaves the pool), tries packed.tif again and reads it;
    plain.tif and photo.png are left as they are, and `status` says all this beforehand."""
    from datapool import Pool
    from datapool.ingest import decode

    from .test_next_run import status
    from .test_video_upgrade import KW

    src = tmp_path / "src"
    src.mkdir()
    _written(src / "scan.tif", "RGB", compression="jpeg")
    _written(src / "packed.tif", "RGB", compression="zstd")
    _written(src / "plain.tif", "RGB")
    Image.fromarray(_picture()[::-1]).save(src / "photo.png")
    pool = tmp_path / "pool"
    with monkeypatch.context() as m:
        m.setattr("datapool.runner.DECODER_VERSION", 5)
        m.setattr(decode, "_tiff_by_pillow", lambda data: None)  # FFmpeg's decode, as before
        old = datapool.run(src, pool, **KW)
    assert [(s["key"], s["reason"][:37]) for s in old.skipped] == [
        ("packed.tif", "damaged or truncated: its header says")
    ]
    was = dict(zip(Pool.open(pool).filenames, Pool.open(pool).embeddings))["scan.tif"]

    lines, entries = status(pool)
    assert [(e["kind"], e["files"], e["action"]) for e in entries] == [
        ("tiff_skipped_before", 1, "read again"),
        ("tiff_before", 2, "checked"),
    ]
    assert lines[1].startswith("next    the next run will check 2 TIFFs: an older datapool ")
    r = datapool.run(src, pool, **KW)
    assert (r.counts["reread"], r.counts["retried"], r.counts["unchanged"]) == (1, 1, 2)
    assert r.skipped == []
    (said,) = [w for w in r.warnings if w.startswith("read again: 1 image")]
    assert "scan.tif: a JPEG-compressed TIFF, which FFmpeg read as a black picture" in said
    assert any(w.startswith("tried again: 1 TIFF that an older") for w in r.warnings)
    p = Pool.open(pool)
    ledger = p.ledger.set_index("key")
    assert ledger.loc["packed.tif", "status"] == "ok" and ledger.loc["scan.tif", "run"] == 1
    now = dict(zip(p.filenames, p.embeddings))["scan.tif"]
    assert np.abs(now - was).max() > 1e-3 and p.runs[-1]["decoder"] == DECODER_VERSION
    again = datapool.run(src, pool, **KW)
    assert again.run_index is None and not again.warnings


@pytest.mark.parametrize("orientation", [3, 6])
def test_a_turned_tiff_is_measured_on_pillows_pixels_turned_once(tmp_path, orientation):
    """Lightly's metadata of an image is measured on Pillow's pixels (as Lightly reads it). A
    Pillow that turns a TIFF by its Orientation as it loads it gave them turned already: a TIFF
    turned a quarter (6) was measured on FFmpeg's pixels instead, and the run warned that Pillow
    could not read it; one turned half (3) was turned twice."""
    from datapool.ingest._exif import orient
    from datapool.ingest.lightly_metrics import measure

    names = ("sharpness", "snr", "uniformRowRatio")
    stored = _picture()
    stored[30:, :] = stored[30:, :] // 3  # (rows that differ: uniformRowRatio sees a turn)
    path = tmp_path / "turned.tif"
    Image.fromarray(stored).save(path, tiffinfo={274: orientation})
    (frame,) = iter_frames(path, path.name, "image", (W, H), measure=names)
    assert not frame.pillow_unread
    assert frame.metadata == pytest.approx(measure(orient(stored, orientation), names))
