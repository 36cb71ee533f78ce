"""Tests for the shipped default embedding model ``datapool-features-v2.onnx``.

They run a real onnxruntime session on the model file in the source tree and feed
it real photographs: scikit-image's bundled sample images, read from their files
and decoded / resized with PyAV (not with scikit-image's loaders).
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[1]
MODEL_PATH = ROOT / "python" / "datapool" / "models" / "datapool-features-v2.onnx"
GENERATOR_PATH = ROOT / "tools" / "make_default_model.py"

SIZE = 128
DIM = 510
SHIFT_PX = 5  # shift, in pixels of the 128x128 model input
BRIGHTEN = 1.15

# Real photographs bundled with scikit-image (camera, brick, grass, gravel, coins and
# moon are greyscale files).  grass / gravel are the hardest pair: two fine, grey,
# stationary textures.
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "brick.png",
    "grass.png",
    "gravel.png",
    "camera.png",
    "retina.jpg",
    "coins.png",
    "moon.png",
)


def _skimage_data_dir() -> Path:
    # Locate the files without importing scikit-image itself.
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image (for its bundled sample photographs) is not installed")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in PHOTOS if not (data / name).is_file()]
    if missing:
        pytest.skip(f"scikit-image sample files missing: {missing}")
    return data


def _decode_rgb(path: Path) -> np.ndarray:
    """Decode the first frame of an image file with PyAV -> uint8 [H, W, 3] RGB."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def _resize(rgb: np.ndarray) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(
        width=SIZE, height=SIZE, format="rgb24", interpolation="AREA"
    ).to_ndarray()


def _to_input(images: list[np.ndarray]) -> np.ndarray:
    batch = np.stack(images).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def session() -> Any:
    assert MODEL_PATH.is_file(), f"model file missing: {MODEL_PATH}"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(MODEL_PATH), options, providers=["CPUExecutionProvider"])


def _embed(session: Any, batch: np.ndarray) -> np.ndarray:
    (out,) = session.run(["embedding"], {"input": batch})
    return out


@pytest.fixture(scope="module")
def photo_variants() -> dict[str, dict[str, np.ndarray]]:
    """For each photo: original, copies shifted up-left / down-right, and brightened."""
    data = _skimage_data_dir()
    result: dict[str, dict[str, np.ndarray]] = {}
    for name in PHOTOS:
        full = _decode_rgb(data / name)
        h, w, _ = full.shape
        dy = max(1, round(SHIFT_PX * h / SIZE))
        dx = max(1, round(SHIFT_PX * w / SIZE))
        original = _resize(full)
        brightened = np.clip(original.astype(np.float32) * BRIGHTEN, 0, 255).astype(np.uint8)
        result[name] = {
            "original": original,
            "shift_up_left": _resize(full[dy:, dx:]),
            "shift_down_right": _resize(full[: h - dy, : w - dx]),
            "brightened": brightened,
        }
    return result


def test_model_file_and_metadata(session: Any) -> None:
    assert MODEL_PATH.stat().st_size < 2 * 1024 * 1024
    (inp,) = session.get_inputs()
    assert inp.name == "input"
    assert inp.type == "tensor(float)"
    assert isinstance(inp.shape[0], str)  # dynamic batch dimension
    assert list(inp.shape[1:]) == [3, SIZE, SIZE]
    (out,) = session.get_outputs()
    assert out.name == "embedding"
    assert out.shape[1] == DIM
    meta = session.get_modelmeta()
    props = meta.custom_metadata_map
    assert props["datapool.mean"] == "0,0,0"
    assert props["datapool.std"] == "1,1,1"
    assert props["datapool.description"].strip()
    assert "\n" not in props["datapool.description"]
    assert meta.description.strip()  # the model's doc_string


def test_output_shape_dtype_and_unit_norm(
    session: Any, photo_variants: dict[str, dict[str, np.ndarray]]
) -> None:
    batch = _to_input([v["original"] for v in photo_variants.values()])
    emb = _embed(session, batch)
    assert emb.shape == (len(PHOTOS), DIM)
    assert emb.dtype == np.float32
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_degenerate_images_are_finite(session: Any) -> None:
    flat = [np.zeros((SIZE, SIZE, 3), np.uint8), np.full((SIZE, SIZE, 3), 255, np.uint8)]
    flat += [np.full((SIZE, SIZE, 3), v, np.uint8) for v in (1, 128, 254)]
    flat.append(np.broadcast_to(np.array([200, 30, 90], np.uint8), (SIZE, SIZE, 3)).copy())
    emb = _embed(session, _to_input(flat))
    assert emb.shape == (len(flat), DIM)
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    # tiny non-negative inputs must not blow up either
    (tiny,) = session.run(["embedding"], {"input": np.full((1, 3, SIZE, SIZE), 1e-30, np.float32)})
    assert np.isfinite(tiny).all()


def test_deterministic_and_batch_independent(
    session: Any, photo_variants: dict[str, dict[str, np.ndarray]]
) -> None:
    batch = _to_input([v["original"] for v in photo_variants.values()])
    first = _embed(session, batch)
    second = _embed(session, batch)
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)
    singles = np.concatenate([_embed(session, batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(first, singles, rtol=0, atol=1e-6)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    fresh = ort.InferenceSession(str(MODEL_PATH), options, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(first, _embed(fresh, batch), rtol=0, atol=1e-6)


def test_perturbed_copies_are_closer_than_any_other_photo(
    session: Any, photo_variants: dict[str, dict[str, np.ndarray]]
) -> None:
    names = list(photo_variants)
    kinds = list(photo_variants[names[0]])
    images = [photo_variants[n][k] for n in names for k in kinds]
    emb = _embed(session, _to_input(images)).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb.reshape(len(names), len(kinds), DIM)

    originals = emb[:, 0]
    pairs = {
        (a, b): float(np.linalg.norm(originals[i] - originals[j]))
        for (i, a), (j, b) in itertools.combinations(enumerate(names), 2)
    }
    closest_pair = min(pairs, key=pairs.__getitem__)
    min_different = pairs[closest_pair]

    same: dict[tuple[str, str], float] = {}
    for i, name in enumerate(names):
        for k, kind in enumerate(kinds[1:], start=1):
            same[(name, kind)] = float(np.linalg.norm(emb[i, k] - originals[i]))
    worst = max(same, key=same.__getitem__)
    # Measured with onnxruntime 1.32 / PyAV 18: worst same-photo distance ~0.043
    # (retina.jpg shifted up-left) vs. closest pair of different photos ~0.062
    # (grass.png / gravel.png), a ratio of ~1.4.
    failures = {key: round(d, 4) for key, d in same.items() if d >= min_different}
    assert not failures, (
        f"perturbed copies not closer than the closest different photos {closest_pair} "
        f"(distance {min_different:.4f}): {failures}"
    )
    assert same[worst] < min_different, (worst, same[worst], closest_pair, min_different)


def test_shipped_model_matches_generator(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    spec = importlib.util.spec_from_file_location("_datapool_make_default_model", GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "generated.onnx"
    assert module.main([str(out)]) == 0
    assert out.read_bytes() == MODEL_PATH.read_bytes(), (
        "python/datapool/models/datapool-features-v2.onnx is stale: "
        "regenerate it with `python tools/make_default_model.py`"
    )
