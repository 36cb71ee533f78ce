"""Helpers shared by the robustness tests: real `datapool` processes, pause points, checksums."""

from __future__ import annotations

import hashlib
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

LOCK_NAME = ".datapool.lock"


def cli_args(source: Path, pool: Path, *extra: str | int) -> list[str]:
    return [sys.executable, "-m", "datapool", "run", str(source), "--pool", str(pool),
            "--no-progress", *map(str, extra)]


def env_with(**hooks: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAPOOL_TEST_")}
    env.update(hooks)
    return env


class Proc:
    """A `datapool` subprocess whose stderr is read line by line on a thread, so a test can wait
    for a `datapool-test:` marker without blocking on the pipe."""

    def __init__(self, args: list[str], **hooks: str) -> None:
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env_with(**hooks), text=True, errors="replace")
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
        rc = self.p.wait(timeout=timeout)
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


def tree_digest(root: Path, skip_lock: bool = True) -> dict[str, str]:
    """sha256 of every file under `root` (the lock file aside: it records who ran last)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not (skip_lock and p.name == LOCK_NAME):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
