"""`datapool merge` with pool folders reads everything of A and B under their locks: a real run
that commits to A while the merge reads it cannot leave C with A's CSV from before the run and
A's runs' folders from after it; a run that holds A refuses the merge in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datapool
from datapool.pool import merge as merge_module
from datapool.pool import thumbnails
from datapool.pool.layout import RUNS_DIR, THUMBNAILS_NAME

from ._robust import Proc, cli_args, paused_run, tree_digest
from .conftest import PACKAGE_PATH


def _pools(tmp_path: Path, make_media) -> tuple[Path, Path, Path]:
    day, night = tmp_path / "day", tmp_path / "night"
    for i, seed in enumerate([1, 2, 3, 4, 5]):
        make_media(day / f"d{i}.jpg", seed=seed)
    for i, seed in enumerate([11, 12, 13]):
        make_media(night / f"n{i}.jpg", seed=seed)
    pa, pb = tmp_path / "pools" / "day", tmp_path / "pools" / "night"
    datapool.run(day, pa, n_samples=3, progress=False)
    datapool.run(night, pb, n_samples=2, progress=False)
    return day, pa, pb


def _run_thumbnails(pool: Path, run: int) -> set[str]:
    return set(thumbnails.unpack((pool / RUNS_DIR / str(run) / THUMBNAILS_NAME).read_bytes()))


def test_a_run_committing_to_a_while_merge_reads_it_is_refused(tmp_path, make_media, monkeypatch):
    day, pa, pb = _pools(tmp_path, make_media)
    run0 = tree_digest(pa / RUNS_DIR / "0")
    runs: list[Proc] = []
    real = merge_module._merge

    def run_between(*args, **kwargs):
        # A's CSV is read; a real run on A starts over (--process-all: it rewrites runs/0) and
        # pauses once its commit is whole, holding A, while the merge reads the rest of A.
        run = Proc(
            cli_args(day, pa, "--n-samples", 2, "--process-all"),
            DATAPOOL_TEST_PAUSE_AT="committed",
        )
        runs.append(run)
        try:
            run.wait_for("paused at committed")
        except AssertionError:
            pass  # it ended: refused, the merge holds A
        return real(*args, **kwargs)

    monkeypatch.setattr(merge_module, "_merge", run_between)
    try:
        merge_module.merge_pools(pa, pb, tmp_path / "C")
    finally:
        # A run still there paused at its commit: it took A while the merge read it.
        committed = [p.p.poll() is None for p in runs]
        for p in runs:
            if p.p.poll() is None:
                p.kill()
    # C holds A as the merge read it: its run 0's report folder and thumbnails are those of the
    # CSV's samples of run 0, not those of the run that started over.
    C = datapool.Pool.open(tmp_path / "C")
    samples0 = {n for n, label in zip(C.filenames, C.labels.tolist()) if label == 0}
    assert len(samples0) == 3
    verified = subprocess.run(
        [sys.executable, "-m", "datapool", "verify", str(tmp_path / "C")],
        env={"PYTHONPATH": PACKAGE_PATH, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    # (before the fix: "pool OK" with a warning, the CSV's samples of run 0 without thumbnails)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "warning" not in verified.stdout, verified.stdout
    assert _run_thumbnails(tmp_path / "C", 0) == samples0
    assert tree_digest(tmp_path / "C" / RUNS_DIR / "0") == run0
    # The run was refused as by another run: exit 3, naming the lock.
    (run,) = runs
    assert committed == [False], run.stderr
    assert run.finish() == 3, run.stderr
    assert "is locked by another datapool run" in run.stderr


def test_merge_refuses_in_one_line_while_a_run_holds_a(tmp_path, make_media):
    day, pa, pb = _pools(tmp_path, make_media)
    make_media(day / "late.jpg", seed=6)  # something new: the run commits
    with paused_run(day, pa, "--n-samples", 1, at="committed"):
        p = subprocess.run(
            [sys.executable, "-m", "datapool", "merge", str(pa), str(pb), "--into", "C"],
            cwd=tmp_path,
            env={"PYTHONPATH": PACKAGE_PATH, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
    assert p.returncode == 3, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "is locked by another datapool run" in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "C").exists()
