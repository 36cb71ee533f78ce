"""Lightly's computed metadata (`lightly.sharpness`, `lightly.snr`, `lightly.uniformRowRatio`) as
METADATA inputs: measured from the decoded pixels (ingest/lightly_metrics.py) and checked here
against independent computations: Lightly's own Pillow code for sharpness and snr, and a
plain per-pixel reference of the uniformRowRatio port written in this file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.config import SelectionConfig
from datapool.errors import ConfigError
from datapool.ingest.decode import iter_frames
from datapool.ingest.lightly_metrics import greyscale, measure, sharpness, snr, uniform_row_ratio
from datapool.media import write_image, write_video

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageFilter  # noqa: E402

from .conftest import scene  # noqa: E402

# --- independent references ----------------------------------------------------------------


def lightly_sharpness(img: Image.Image) -> float:
    """Lightly's client (lightly/api/utils.py, `sharpness`), as it computed it."""
    laplacian = ImageFilter.Kernel((3, 3), (-1, -1, -1, -1, 8, -1, -1, -1, -1), 1, 0)
    return float(np.std(img.convert("L").filter(laplacian)))


def lightly_snr(img: Image.Image) -> float:
    """Lightly's client (`signal_to_noise_ratio`): mean over std of all values, 0 when flat."""
    a = np.asanyarray(img)
    std = a.std()
    return 0.0 if std == 0 else float(a.mean() / std)


def reference_row_ratio(grey: np.ndarray) -> float:
    """The uniformRowRatio port's algorithm, pixel by pixel in float64: resize to 400 rows when
    taller (bilinear, half-pixel centres, no antialiasing), 3x3 Laplacian over the inside,
    |value| < 5/255 uniform, rows with more than 97% uniform pixels. In levels 0..255 (times 255:
    the same test), so that a picture not resized is filtered exactly."""
    h, w = grey.shape
    if h < 3 or w < 3:
        return 0.0
    img = grey.astype(np.float64)
    if h > 400:
        oh, ow = int(h * (400 / h)), max(3, int(w * (400 / h)))
        out = np.zeros((oh, ow))
        for i in range(oh):
            sy = max((i + 0.5) * h / oh - 0.5, 0.0)
            y0 = min(int(sy), h - 1)
            y1 = min(y0 + 1, h - 1)
            for j in range(ow):
                sx = max((j + 0.5) * w / ow - 0.5, 0.0)
                x0 = min(int(sx), w - 1)
                x1 = min(x0 + 1, w - 1)
                ly, lx = sy - y0, sx - x0
                top = img[y0, x0] * (1 - lx) + img[y0, x1] * lx
                bottom = img[y1, x0] * (1 - lx) + img[y1, x1] * lx
                out[i, j] = top * (1 - ly) + bottom * ly
        img = out
    rows = 0
    for y in range(1, img.shape[0] - 1):
        uniform = 0
        for x in range(1, img.shape[1] - 1):
            lap = 9 * img[y, x] - img[y - 1 : y + 2, x - 1 : x + 2].sum()
            uniform += abs(lap) < 5
        rows += uniform / (img.shape[1] - 2) > 0.97
    return rows / (img.shape[0] - 2)


# --- the measurements ----------------------------------------------------------------------

LIGHTLY = ("sharpness", "snr", "uniformRowRatio")


def _pictures(rng: np.random.Generator) -> list[np.ndarray]:
    shapes = [(1, 1), (2, 5), (3, 3), (4, 7), (37, 53), (96, 128)]
    out = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in shapes]
    out += [scene(s, 60 + s, 90) for s in range(3)]
    out += [np.full((20, 30, 3), 77, np.uint8)]
    return out


def test_sharpness_and_snr_are_lightlys(rng: np.random.Generator) -> None:
    for rgb in _pictures(rng):
        img = Image.fromarray(rgb, "RGB")
        assert np.array_equal(greyscale(rgb), np.asarray(img.convert("L")))
        assert sharpness(greyscale(rgb)) == pytest.approx(lightly_sharpness(img), rel=1e-12)
        assert snr(rgb) == pytest.approx(lightly_snr(img), rel=1e-12)


def test_uniform_row_ratio_matches_the_reference(rng: np.random.Generator) -> None:
    black = np.zeros((30, 40), np.uint8)
    assert uniform_row_ratio(black) == 1.0  # every row uniform: Lightly's broken-frame sign
    noise = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    assert uniform_row_ratio(noise) == 0.0
    banded = noise.copy()
    banded[:15] = 200  # the top half flat: its inside rows are uniform
    tall = np.repeat(banded, 31, axis=0)[:, :17]  # 930 rows: resized to 400 first
    for grey in (black, noise, banded, tall, noise[:2], black[:, :2]):
        assert uniform_row_ratio(grey) == pytest.approx(reference_row_ratio(grey), abs=1e-12)
    assert 0.4 < uniform_row_ratio(banded) < 0.6
    assert 0.4 < uniform_row_ratio(tall) < 0.6


def test_measure_gives_the_names_asked() -> None:
    rgb = scene(1)
    assert set(measure(rgb, ("snr",))) == {"snr"}
    got = measure(rgb, ("sharpness", "snr", "uniformRowRatio"))
    assert got["sharpness"] == sharpness(greyscale(rgb))
    with pytest.raises(ValueError, match="luminance"):
        measure(rgb, ("luminance",))


# --- configs -------------------------------------------------------------------------------


def _config(key: str, strategy: dict | None = None) -> SelectionConfig:
    st = strategy or {"type": "THRESHOLD", "threshold": 20, "operation": "BIGGER"}
    return SelectionConfig.from_lightly(
        {
            "n_samples": 2,
            "strategies": [{"input": {"type": "METADATA", "key": key}, "strategy": st}],
        }
    )


def test_the_lightly_keys_datapool_measures() -> None:
    assert _config("lightly.sharpness").lightly_metadata == ("sharpness",)
    assert _config("lightly.uniformRowRatio").lightly_metadata == ("uniformRowRatio",)
    assert _config("weather.kind").lightly_metadata == ()


@pytest.mark.parametrize("name", ["luminance", "contrast", "sizeInBytes"])
def test_lightly_keys_without_a_public_formula_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"lightly.{name}' is not supported: .*lightly.sharp"):
        _config(f"lightly.{name}")


def test_an_unknown_lightly_key_names_the_ones_measured() -> None:
    with pytest.raises(
        ConfigError,
        match=r"'lightly.blurriness' is no Lightly metadata datapool computes \(lightly.sharpness, "
        r"lightly.snr, lightly.uniformRowRatio\)",
    ):
        _config("lightly.blurriness")


def test_balance_on_a_lightly_number_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"BALANCE takes categorical metadata; lightly\.snr"):
        _config("lightly.snr", {"type": "BALANCE", "target": {"a": 0.5}})


def test_a_jpeg_is_measured_on_pillows_pixels_as_lightly_reads_it(tmp_path: Path) -> None:
    """FFmpeg's JPEG decoder gives pixels a level or two off Pillow's: measured on them, a smooth
    gradient had uniformRowRatio 0.05 where Lightly's (Pillow's pixels) is 0.21, and snr 0.7%
    off. Images are measured on Pillow's pixels (fails with FFmpeg's: checked)."""
    for seed in range(3):
        path = write_image(tmp_path / f"g{seed}.jpg", scene(seed, 240, 320), quality=3)
        got = next(iter_frames(path, "g.jpg", "image", (32, 32), measure=LIGHTLY)).metadata
        with Image.open(path) as img:
            assert got == {
                "sharpness": pytest.approx(lightly_sharpness(img), rel=1e-12),
                "snr": pytest.approx(lightly_snr(img), rel=1e-12),
                "uniformRowRatio": reference_row_ratio(np.asarray(img.convert("L"))),
            }


def test_decoding_measures_only_when_asked(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", scene(3))
    plain = list(iter_frames(path, "a.png", "image", (32, 32)))
    assert plain[0].metadata is None
    asked = list(iter_frames(path, "a.png", "image", (32, 32), measure=("sharpness",)))
    with Image.open(path) as img:
        assert asked[0].metadata == {"sharpness": pytest.approx(lightly_sharpness(img), rel=1e-12)}


# --- runs ----------------------------------------------------------------------------------


def _blurred(rgb: np.ndarray, k: int = 7) -> np.ndarray:
    """A k x k box blur (edges repeated): the same picture, out of focus."""
    pad = np.pad(rgb.astype(np.float64), ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), "edge")
    out = sum(pad[i : i + rgb.shape[0], j : j + rgb.shape[1]] for i in range(k) for j in range(k))
    return np.round(out / k**2).astype(np.uint8)


def _textured(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    r = np.random.default_rng(seed)
    base = scene(seed, h, w).astype(np.int16) + r.integers(-40, 41, (h, w, 1))
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture
def sharp_and_blurred(tmp_path: Path) -> Path:
    """Three sharp PNGs and the same three blurred (PNG: Pillow and FFmpeg read the same pixels)."""
    root = tmp_path / "src"
    for i in range(3):
        pic = _textured(i, 240, 320)  # at 96x128 the edge pixels Pillow keeps weigh more
        write_image(root / f"sharp{i}.png", pic)
        write_image(root / f"blurred{i}.png", _blurred(pic))
    return root


def _stored(pool: Path) -> dict[str, dict[str, float]]:
    return json.loads((pool / "strategy_inputs.json").read_text())["samples"]


def _threshold_run(src: Path, pool: Path, key: str, op: str, t: float) -> datapool.RunResult:
    sel = SelectionConfig.from_lightly(
        {
            "n_samples": 10,
            "strategies": [
                {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
                {
                    "input": {"type": "METADATA", "key": key},
                    "strategy": {"type": "THRESHOLD", "threshold": t, "operation": op},
                },
            ],
        }
    )
    return datapool.run(src, pool, strategies=sel.strategies, n_samples=10, progress=False)


def test_lightlys_blur_threshold_keeps_the_sharp_images(
    sharp_and_blurred: Path, tmp_path: Path
) -> None:
    """Lightly's "remove blurry images" config: lightly.sharpness BIGGER 20. Before, the run
    stopped: .lightly/metadata/schema.json is missing."""
    pool = tmp_path / "pool"
    res = _threshold_run(sharp_and_blurred, pool, "lightly.sharpness", "BIGGER", 20)
    stored = _stored(pool)
    assert sorted(stored) == [f"sharp{i}.png" for i in range(3)]
    for name, values in stored.items():
        with Image.open(sharp_and_blurred / name) as img:  # as Lightly reads the file
            assert values["metadata:lightly.sharpness"] == pytest.approx(
                lightly_sharpness(img), rel=1e-12
            )
    for i in range(3):  # the blurred ones are below the threshold, by Lightly's measure
        with Image.open(sharp_and_blurred / f"blurred{i}.png") as img:
            assert lightly_sharpness(img) <= 20
    assert res.counts["selected"] == 3


def test_a_users_lightly_field_is_not_read_and_said(
    sharp_and_blurred: Path, tmp_path: Path
) -> None:
    meta = sharp_and_blurred / ".lightly" / "metadata"
    meta.mkdir(parents=True)
    field = {"name": "s", "path": "lightly.sharpness", "defaultValue": 99}
    (meta / "schema.json").write_text(json.dumps([{**field, "valueDataType": "NUMERIC_FLOAT"}]))
    res = _threshold_run(sharp_and_blurred, tmp_path / "pool", "lightly.sharpness", "BIGGER", 20)
    assert sorted(_stored(tmp_path / "pool")) == [f"sharp{i}.png" for i in range(3)]
    assert any("declares lightly.sharpness" in w and "not read" in w for w in res.warnings)


def test_uniform_rows_threshold_drops_black_video_frames(tmp_path: Path) -> None:
    """Lightly's broken-frame config (lightly.uniformRowRatio SMALLER 0.025) on an H.264 clip
    whose frames 2 and 5 are black; each frame measured at full size as decoded."""
    import av

    frames = [_textured(10 + t, 64, 96) for t in range(7)]
    for t in (2, 5):
        frames[t] = np.zeros_like(frames[t])
    clip = write_video(tmp_path / "src" / "clip.mp4", frames, fps=10)
    with av.open(str(clip)) as c:  # the reference reads the decoded frames itself
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    ratios = [reference_row_ratio(np.asarray(Image.fromarray(f).convert("L"))) for f in decoded]
    assert ratios[2] == ratios[5] == 1.0

    pool = tmp_path / "pool"
    _threshold_run(tmp_path / "src", pool, "lightly.uniformRowRatio", "SMALLER", 0.025)
    stored = _stored(pool)
    names = {f"clip-{t}-mp4.png": t for t in range(7)}
    assert sorted(names[n] for n in stored) == [t for t in range(7) if ratios[t] < 0.025]
    assert len(stored) == 5
    for name, values in stored.items():
        assert values["metadata:lightly.uniformRowRatio"] == pytest.approx(
            ratios[names[name]], abs=1e-12
        )


@pytest.mark.parametrize("limit", [1000, 50_000])  # refused by Pillow; warned about (76,800)
def test_an_image_pillow_refuses_is_measured_on_ffmpegs_pixels_and_said(
    sharp_and_blurred: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """Pillow warns about pictures over its pixel limit (DecompressionBombWarning) and refuses
    those over twice that; datapool's own limit is another. Such an image is measured on FFmpeg's
    pixels (a PNG: the same here), with a warning."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)  # 240x320 is over: not given to Pillow
    res = _threshold_run(sharp_and_blurred, tmp_path / "pool", "lightly.sharpness", "BIGGER", 20)
    assert sorted(_stored(tmp_path / "pool")) == [f"sharp{i}.png" for i in range(3)]
    said = [w for w in res.warnings if "could not be read by Pillow" in w]
    assert len(said) == 1 and said[0].startswith("6 images could not be read by Pillow")
