"""`datapool demo`: make a small bucket of synthetic street-like videos and images with PyAV, run
datapool on it, add new files of a different kind, and run again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datapool.media import write_image, write_video

if TYPE_CHECKING:
    import numpy.typing as npt

    from datapool.runner import RunResult

W, H = 160, 120
# The two runs' budget and frame sampling (`datapool demo` prints them as the run's command line).
RUN_OPTIONS: tuple[dict[str, Any], ...] = (
    {"n_samples": 24, "frame_stride": 2},
    {"n_samples": 12, "frame_stride": 2},
)


def _scene(rng: np.random.Generator, palette: str) -> tuple[npt.NDArray[np.float64], list[tuple]]:
    """A background gradient and a few moving boxes, in a day or a night palette."""
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    if palette == "day":
        top, bottom = rng.uniform(0.5, 0.9, 3), rng.uniform(0.2, 0.6, 3)
    else:
        top, bottom = (
            rng.uniform(0.0, 0.15, 3),
            rng.uniform(0.05, 0.25, 3) * np.array([0.6, 0.6, 1.0]),
        )
    bg = (top * (1 - y) + bottom * y) * np.ones((1, W, 1), np.float32)
    boxes = []
    for _ in range(int(rng.integers(2, 5))):
        colour = rng.uniform(0.6, 1.0, 3) if palette == "night" else rng.uniform(0.0, 1.0, 3)
        size = rng.integers(10, 36, 2)
        pos = rng.uniform(0, [W - size[0], H - size[1]])
        vel = rng.uniform(-4, 4, 2)
        boxes.append((colour, size, pos, vel))
    return bg, boxes


def _frames(rng: np.random.Generator, palette: str, n: int) -> Iterator[npt.NDArray[np.uint8]]:
    bg, boxes = _scene(rng, palette)
    for t in range(n):
        img = bg.copy()
        for colour, size, pos, vel in boxes:
            x, y = (pos + vel * t) % [W - size[0], H - size[1]]
            img[int(y) : int(y) + size[1], int(x) : int(x) + size[0]] = colour
        img += rng.normal(0, 0.02, img.shape).astype(np.float32)
        yield (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_bucket(
    root: Path, palette: str, n_videos: int, n_images: int, seed: int, prefix: str
) -> list[Path]:
    rng = np.random.default_rng(seed)
    made = []
    for i in range(n_videos):
        made.append(
            write_video(
                root / "videos" / f"{prefix}-{i:02d}.mp4", _frames(rng, palette, 30), fps=10
            )
        )
    for i in range(n_images):
        frame = next(_frames(rng, palette, 1))
        ext = "jpg" if i % 2 == 0 else "png"
        made.append(write_image(root / "images" / f"{prefix}-{i:02d}.{ext}", frame))
    return made


def run_demo(directory: str | Path, progress: bool | None = None) -> tuple[RunResult, RunResult]:
    """Build DIR/bucket, run twice into DIR/pool, and return both results."""
    from datapool.errors import ConfigError, PoolWriteError
    from datapool.pool.contents import is_uncommitted_pool
    from datapool.runner import run

    root = Path(directory)
    if not os.fspath(directory):
        raise ConfigError("the demo folder is an empty path; give a folder")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"demo folder {root} is a file; give a folder (made if missing)")
    pool = root / "pool"
    if pool.exists() and not is_uncommitted_pool(pool):  # an interrupted demo starts again
        raise ConfigError(
            f"{pool} already exists (an earlier demo): `datapool demo OTHER_DIR` makes another "
            f"(or remove {root})"
        )
    bucket = root / "bucket"
    try:
        make_bucket(bucket, "day", n_videos=4, n_images=12, seed=1, prefix="day")
        (bucket / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
    except OSError as e:
        raise PoolWriteError(
            f"cannot write the demo bucket in {root} ({e.strerror or e}); give a writable folder"
        ) from None
    first = run(bucket, root / "pool", progress=progress, **RUN_OPTIONS[0])
    make_bucket(bucket, "night", n_videos=2, n_images=6, seed=2, prefix="night")
    second = run(bucket, root / "pool", progress=progress, **RUN_OPTIONS[1])
    return first, second
