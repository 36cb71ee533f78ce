"""`datapool predict` over a source in a bucket (moto over HTTP, the fixtures of tests/test_s3.py):
the same files as over the folder it was uploaded from, and a run over the bucket reads them
from its `.lightly/predictions`."""

from __future__ import annotations

from pathlib import Path

import pytest

import datapool
from datapool.cli import main
from datapool.media import write_image, write_video

from ._s3 import S3_FIXTURES
from .test_predict import BLUE, RED, _detector, _picture
from .test_s3 import upload

pytest.importorskip("onnx")

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES


def test_predictions_of_a_bucket_are_those_of_its_folder(s3, new_bucket, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", _picture(150, 200, [(20, 30, 60, 40, RED), (120, 90, 50, 40, BLUE)]))
    write_video(src / "cam" / "clip.mp4", [_picture(96, 128, [(8, 24, 32, 32, RED)])] * 3, fps=5)
    bucket = new_bucket()
    upload(s3, src, bucket)
    model = _detector(tmp_path / "det.onnx")
    local, remote = tmp_path / "local", tmp_path / "remote"
    for source, out in ((str(src), local), (f"s3://{bucket}/raw/", remote)):
        assert main(["predict", source, "--model", str(model), "--out", str(out), "-q"]) == 0
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert "det/cam/clip-0-mp4.json" in files and "det/a.json" in files
    for rel in files:
        assert (remote / rel).read_bytes() == (local / rel).read_bytes(), rel
    for path in remote.rglob("*"):  # the bucket's own .lightly/predictions
        if path.is_file():
            key = "raw/.lightly/predictions/" + path.relative_to(remote).as_posix()
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    r = datapool.run(
        f"s3://{bucket}/raw/", tmp_path / "pool", n_samples=20, crops="det", progress=False
    )
    # the three frames' crops are alike (one red square): diversity keeps one of them
    assert {"a-png-crop-0.png", "a-png-crop-1.png"} <= set(r.selected)
    assert len([s for s in r.selected if s.startswith("cam/clip-")]) == 1, r.selected
    assert r.counts["frames_embedded"] == 5, r.counts  # every box was read and cut
