"""Thread counts are bounded, and the packer keeps one thread pool (issue 15, point 9).

`--threads 100000` once took 17 GB and a load of 111; the packer started and joined its threads
on every batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datapool import _core
from datapool.config import RunConfig, max_threads
from datapool.errors import ConfigError

from .conftest import PACKAGE_PATH


def _threads_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.mark.parametrize(
    ("field", "flag"), [("threads", "--threads"), ("decode_workers", "--decode-workers")]
)
def test_config_refuses_thread_counts_far_past_the_cores(field, flag):
    with pytest.raises(ConfigError, match=flag):
        RunConfig(n_samples=1, **{field: 100000})
    RunConfig(n_samples=1, **{field: max_threads()})  # the limit itself is allowed


def test_cli_refuses_100000_threads_with_one_line(tmp_path):
    (tmp_path / "src").mkdir()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "datapool",
            "run",
            str(tmp_path / "src"),
            "--pool",
            str(tmp_path / "pool"),
            "--threads",
            "100000",
            "--n-samples",
            "1",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": PACKAGE_PATH, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--threads" in lines[0] and "cores" in lines[0], p.stderr
    assert not (tmp_path / "pool").exists()


def test_packer_refuses_thread_counts_far_past_the_cores():
    out = np.empty((1, 3, 8, 8), np.float32)
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="far past"):
        _core.pack_frames(
            [frame], out, np.ones(3, np.float32), np.zeros(3, np.float32), threads=100000
        )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_packer_keeps_one_thread_pool_across_batches():
    """Workers are started once and reused: the thread count stays put across many batches
    (a pool per call would start 5 threads and join them again on every call)."""
    frames = [np.full((40, 30, 3), i, np.uint8) for i in range(12)]
    out = np.empty((12, 3, 16, 16), np.float32)
    scale, shift = np.ones(3, np.float32), np.zeros(3, np.float32)
    before = _threads_now()
    _core.pack_frames(frames, out, scale, shift, threads=11)  # a count no other test uses
    assert _threads_now() == before + 10  # the caller and 10 workers, kept for the next batch
    for _ in range(30):
        _core.pack_frames(frames, out, scale, shift, threads=11)
        assert _threads_now() == before + 10
