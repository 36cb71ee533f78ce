"""Seeded fixtures that make real encoded media with PyAV: JPEG, PNG, H.264 MP4, and broken files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.media import write_image, write_video

# The folder that holds the `datapool` these tests import (site-packages once installed, python/
# in a source checkout): what a child process needs on PYTHONPATH to import the same package.
PACKAGE_PATH = str(Path(datapool.__file__).resolve().parents[1])


def run_cli(
    *args: object, env_extra: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m datapool ARGS` in a child process that imports the package these tests import."""
    env = {**os.environ, "PYTHONPATH": PACKAGE_PATH, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "datapool", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=check,
    )


def cli_here(*args: object, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`datapool ARGS` in this process (datapool.cli.main), its stdout and stderr captured: as
    run_cli, where a test checks what a command does and says, not the process (its exit on a
    signal, a closed stdout): a child process costs a second or two of imports per call."""
    import contextlib
    import io

    from datapool.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    done = subprocess.CompletedProcess(["datapool", *argv], rc, out.getvalue(), err.getvalue())
    if check:
        done.check_returncode()
    return done


@pytest.fixture(autouse=True)
def _datapool_logger_as_found() -> Iterator[None]:
    """The `datapool` logger as each test found it: an in-process `main(...)` sets its level, its
    handlers and propagate (`-q` leaves it at ERROR), and a later test on the same worker that
    reads a warning through caplog saw nothing (test_gcs's endpoint test failed so in a full run)."""
    logger = logging.getLogger("datapool")
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    yield
    for h in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(h)
        h.close()
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def scene(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A distinct picture per seed: a colour gradient with a few solid boxes."""
    r = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None, None]
    x = np.linspace(0, 1, w)[None, :, None]
    img = r.uniform(0, 1, 3) * (1 - y) + r.uniform(0, 1, 3) * y * x + 0 * x
    for _ in range(3):
        bh, bw = r.integers(8, h // 2), r.integers(8, w // 2)
        y0, x0 = r.integers(0, h - bh), r.integers(0, w - bw)
        img[y0 : y0 + bh, x0 : x0 + bw] = r.uniform(0, 1, 3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def clip_frames(seed: int, n: int, h: int = 64, w: int = 96) -> list[np.ndarray]:
    """A moving box over a gradient: consecutive frames are similar, far ones differ."""
    base = scene(seed, h, w).astype(np.int16)
    frames = []
    for t in range(n):
        f = base.copy()
        x0 = (t * 5) % (w - 16)
        f[10:30, x0 : x0 + 16] = (255 - t * 7 % 255, t * 13 % 255, 40)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def write_media(path: Path, kind: str = "auto", seed: int = 0, frames: int = 12) -> Path:
    """Write a real encoded file (a clip for mp4/mkv/mov, else a picture) and return its path.
    Module-scoped fixtures call it directly; tests get it as the `make_media` fixture."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if kind == "auto":
        kind = "video" if ext in {"mp4", "mkv", "mov"} else "image"
    if kind == "video":
        return write_video(path, clip_frames(seed, frames), fps=10)
    return write_image(path, scene(seed))


def save_image_model(
    path: Path,
    name: str,
    nodes: list,
    input_shape: list,
    output_shape: list,
    initializers: list | None = None,
    metadata: dict[str, str] | None = None,
    **model_fields: str,
) -> Path:
    """Save an ONNX model of `nodes`, from a float "input" to a float "out", at `path` (opset 17,
    IR version 8); `metadata` goes into its metadata_props."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, output_shape)],
        initializers or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **model_fields)
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def make_media() -> Callable[..., Path]:
    """make_media(path, kind, seed) writes a real encoded file and returns its path."""
    return write_media


@pytest.fixture
def bucket(tmp_path: Path, make_media: Callable[..., Path]) -> Path:
    """A small source folder: 6 JPEGs, 4 PNGs (one in a sub-folder), 2 H.264 MP4s, one broken MP4,
    a text file named .png, a zero-byte .jpg and a README (ignored)."""
    root = tmp_path / "bucket"
    for i in range(6):
        make_media(root / f"img{i}.jpg", seed=i)
    for i in range(3):
        make_media(root / f"png{i}.png", seed=10 + i)
    make_media(root / "sub" / "deep.png", seed=20)
    make_media(root / "cam" / "clip.mp4", seed=30, frames=12)
    make_media(root / "cam" / "other.mp4", seed=31, frames=8)
    good = (root / "cam" / "clip.mp4").read_bytes()
    (root / "cam" / "broken.mp4").write_bytes(good[: len(good) // 3])
    (root / "notes.png").write_text("this is text, not a PNG\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / "README.txt").write_text("not media\n")
    return root
