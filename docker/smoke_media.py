"""Media for docker/smoke.sh, made inside the image with datapool's own writers (PyAV):

    python smoke_media.py ROOT KIND N_VIDEOS N_IMAGES SEED [FRAMES]

KIND day or night: the demo's scenes (30-frame videos, JPEG/PNG images) under ROOT/KIND/.
KIND long: N_VIDEOS videos of FRAMES noisy 320x240 frames under ROOT/long/, for a run long enough
to stop."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from datapool.demo import make_bucket
from datapool.media import write_video


def main(argv: list[str]) -> None:
    root, kind = Path(argv[0]), argv[1]
    n_videos, n_images, seed = int(argv[2]), int(argv[3]), int(argv[4])
    if kind in ("day", "night"):
        make_bucket(root / kind, kind, n_videos, n_images, seed, prefix=kind)
        return
    frames = int(argv[5])
    rng = np.random.default_rng(seed)
    for i in range(n_videos):
        img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        shifted = (np.roll(img, 3 * t, axis=1) for t in range(frames))
        write_video(root / kind / f"{kind}-{i:02d}.mp4", shifted)


if __name__ == "__main__":
    main(sys.argv[1:])
