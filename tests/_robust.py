"""Helpers shared by the robustness tests: real `datapool` processes, pause points, checksums."""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from datapool.pool.layout import LOCK_NAME


def cli_args(source: Path | str, pool: Path | str, *extra: str | int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "datapool",
        "run",
        str(source),
        "--pool",
        str(pool),
        "--no-progress",
        *map(str, extra),
    ]


def lock_holder(pool: Path) -> subprocess.Popen[str]:
    """A separate process that has taken `pool`'s lock and sleeps holding it (a minute at most);
    returns once the lock is held. The caller kills it."""
    code = (
        "import sys, time\nfrom datapool.pool.lock import PoolLock\n"
        "PoolLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(pool)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def env_with(base: Mapping[str, str] | None = None, **hooks: str) -> dict[str, str]:
    """`base` (this process's environment by default) without the test hooks, then `hooks`."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("DATAPOOL_TEST_")
    }
    env.update(hooks)
    return env


class Proc:
    """A `datapool` subprocess whose stderr is read line by line on a thread, so a test can wait
    for a `datapool-test:` marker without blocking on the pipe."""

    def __init__(self, args: list[str], env: Mapping[str, str] | None = None, **hooks: str) -> None:
        self.p = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env_with(env, **hooks),
            text=True,
            errors="replace",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        self.out = ""
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()
        self._o = threading.Thread(target=self._pump_out, daemon=True)
        self._o.start()

    def _pump(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.err.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _pump_out(self) -> None:
        assert self.p.stdout is not None
        self.out = self.p.stdout.read()

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Block until a stderr line contains `text`; return that line."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {text!r} on stderr within {timeout} s: {''.join(self.err)}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended before {text!r}: {''.join(self.err)}")
            if text in line:
                return line

    def finish(self, timeout: float = 120.0) -> int:
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()  # never leave a hung run behind a failed test
            self.p.wait()
            raise
        self._t.join(timeout=10)
        self._o.join(timeout=10)
        for pipe in (self.p.stdout, self.p.stderr):
            if pipe is not None:
                pipe.close()
        return rc

    def kill(self) -> None:
        self.p.kill()
        self.finish()

    @property
    def stderr(self) -> str:
        return "".join(self.err)


@contextlib.contextmanager
def paused_run(source: Path | str, pool: Path | str, *extra: str | int, at: str) -> Iterator[Proc]:
    """A real `datapool run SOURCE --pool POOL *extra`, paused by the test hook at the point
    `at` (DATAPOOL_TEST_PAUSE_AT): the block runs while it holds the pool, and on leaving the
    run is killed (SIGKILL, as a crash) and reaped, its stderr kept in the Proc."""
    run = Proc(cli_args(source, pool, *extra), DATAPOOL_TEST_PAUSE_AT=at)
    try:
        run.wait_for(f"paused at {at}")
        yield run
    finally:
        run.kill()


def tree_digest(root: Path, skip_lock: bool = True) -> dict[str, str]:
    """sha256 of every file under `root`: the pool's state. Aside: the lock file (it records who
    ran last) and the binary sidecar, a cache of the CSV that opening a pool may rebuild (a copied
    pool has new inodes, so its sidecar is rebuilt) and that Pool.open checks against the CSV."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == ".sidecar":
            continue
        if p.is_file() and not (skip_lock and p.name == LOCK_NAME):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[str]:
    """Files an unfinished commit leaves: staged `.pending` files, the journal, temporaries."""
    return sorted(
        str(p.relative_to(root))
        for p in Path(root).rglob("*")
        if p.name.endswith(".pending")
        or p.name == ".journal.json"
        or (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def try_mount(*args: str) -> str | None:
    """Run `mount ARGS`; None on success, else why it failed (not root, no CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return "not root"
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def assert_same_pool(a, b, atol: float = 1e-6) -> None:
    """Two opened pools hold the same samples, embeddings (to `atol`), ledger and runs."""
    import numpy as np

    assert a.filenames == b.filenames
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=0, atol=atol)
    assert a.labels.tolist() == b.labels.tolist()
    cols = ["key", "size", "mtime_ns", "run", "status", "n_samples", "n_selected"]
    rows_a, rows_b = a.ledger[cols].to_dict("records"), b.ledger[cols].to_dict("records")
    assert rows_a == rows_b, [(x, y) for x, y in zip(rows_a, rows_b) if x != y] or (rows_a, rows_b)
    assert [(r["tag"], r["counts"]) for r in a.runs] == [(r["tag"], r["counts"]) for r in b.runs]


def assert_ledger_agrees(pool) -> None:
    """Every sample comes from a ledger row with status ok, and each ledger row's n_selected is
    the number of its samples in the pool (minus none lost): no file is marked processed whose
    samples are missing."""
    import re
    from collections import Counter

    frame = re.compile(r"^(.*)-(\d+)-([^/.-]+)\.png$")
    ledger = pool.ledger.set_index("key")
    per_key: Counter[str] = Counter()
    for name in pool.filenames:
        if name in ledger.index:
            per_key[name] += 1
            continue
        m = frame.match(name)
        assert m is not None, f"sample {name!r} comes from no ledger row"
        key = f"{m.group(1)}.{m.group(3)}"
        assert key in ledger.index, f"sample {name!r}: its video {key!r} is not in the ledger"
        per_key[key] += 1
    for key, row in ledger.iterrows():
        assert per_key.get(key, 0) == row["n_selected"], (
            key,
            per_key.get(key, 0),
            row["n_selected"],
        )
        if per_key.get(key, 0):
            assert row["status"] == "ok"


def make_small_bucket(root: Path, make_media, seed: int = 0) -> Path:
    """A quick source: 4 images (JPEG, PNG) and one 6-frame H.264 clip."""
    for i in range(3):
        make_media(root / f"img{i}.jpg", seed=seed + i)
    make_media(root / "pic.png", seed=seed + 5)
    make_media(root / "cam" / "clip.mp4", seed=seed + 9, frames=6)
    return root


def second_run_setup(tmp_path: Path, make_media, n_samples: int):
    """A small bucket with a pool of one run (`base`), then new files in the bucket; and the
    pool an uninterrupted second run makes from `base` (opened). Returns (bucket, base, ref)."""
    import shutil

    import datapool
    from datapool import Pool

    bucket = make_small_bucket(tmp_path / "bucket", make_media)
    base = tmp_path / "base"
    datapool.run(bucket, base, n_samples=n_samples, progress=False)
    for i in range(2):
        make_media(bucket / "more" / f"m{i}.jpg", seed=200 + i)
    make_media(bucket / "more" / "clip.mp4", seed=210, frames=4)
    reference = tmp_path / "reference"
    shutil.copytree(base, reference)
    datapool.run(bucket, reference, n_samples=n_samples, progress=False)
    return bucket, base, Pool.open(reference)
