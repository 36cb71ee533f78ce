"""Progress of a run's phases for a person watching: a line redrawn in place on a terminal, a line
every few seconds without one (Docker, CI logs), nothing when turned off (-q, progress=False).

    progress = Progress.auto(enabled=None)            # None: a bar on a terminal, else lines
    with progress.phase("listing"):                   # a phase without units: elapsed time
        listing = source.list()
    with progress.phase("decode+embed", unit="frames", total=5400) as ph:
        ph.advance(32)                                # from any thread
        ph.set_total(5450)                            # an estimate, corrected as work goes

Every phase also goes to the `datapool` logger at DEBUG: its start, its periodic lines and its end
with its time (what `--log-file` keeps). A ticker thread redraws while a phase
runs, so a phase that reports nothing still shows its time; one whose work counts itself whole
(a selection inside the C++ core: its picks so far, given about every 50 ms) sets it with
`ph.set_done(n)`, and one that ends short of its total on purpose (a selection that stops at
its minimum distance) says why in its last line: `ph.stopped = "min_distance"` draws
`selection  20 of 3000 picks, stopped: min_distance  1.2 s`, not `20/3000 picks  0%`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger("datapool")

INTERVAL_S = 5.0
"""Without a terminal, a line once the run has been this long without one (whatever phase it is
in: several short phases in a row are not silent for their sum), then this often.
DATAPOOL_PROGRESS_INTERVAL (seconds) overrides it."""

_REDRAW_S = 0.1  # on a terminal


def _interval() -> float:
    try:
        return max(0.01, float(os.environ.get("DATAPOOL_PROGRESS_INTERVAL", INTERVAL_S)))
    except ValueError:
        return INTERVAL_S


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class Phase:
    """One phase's counts. `advance` and `set_total` may be called from any thread."""

    def __init__(self, progress: Progress, name: str, unit: str, total: float | None) -> None:
        self.progress, self.name, self.unit = progress, name, unit
        self.total, self.done = total, 0.0
        self.note = ""  # shown after the counts, e.g. "3/13 files"
        self.stopped = ""  # why the work ended short of its total, e.g. "min_distance"
        self.t0 = time.monotonic()
        self.shown = False  # a line of it was written (without a terminal)

    def advance(self, n: float = 1) -> None:
        with self.progress.lock:
            self.done += n

    def set_total(self, total: float) -> None:
        with self.progress.lock:
            self.total = total

    def set_done(self, done: float) -> None:
        """The count so far, where the work counts it whole (a selection's picks)."""
        with self.progress.lock:
            self.done = done

    def describe(self, final: bool = False) -> str:
        """`decode+embed  1200/5400 frames  22%  0:12  ETA 0:40  (3/13 files)`."""
        elapsed = time.monotonic() - self.t0
        parts = [f"{self.name:<13}"]
        if self.unit:
            done = int(self.done)
            if final and self.stopped and self.total and done < self.total:
                # Ended short of the total on purpose: the count reached and why, not a bar
                # left at 0% as if it had stalled.
                parts.append(f"{done} of {int(self.total)} {self.unit}, stopped: {self.stopped}")
            elif self.total:
                total = int(max(self.total, done))
                parts.append(
                    f"{done}/{total} {self.unit}  {min(100, 100 * done // max(total, 1))}%"
                )
            else:
                parts.append(f"{done} {self.unit}")
        parts.append(f"{elapsed:.1f} s" if final else _clock(elapsed))
        if not final and self.total and self.done > 0 and elapsed > 0.5:
            left = max(0.0, self.total - self.done) * elapsed / self.done
            parts.append(f"ETA {_clock(left)}")
        if self.note:
            parts.append(f"({self.note})")
        return "  ".join(parts)


class Progress:
    """Draws phases on `stream`: mode "bar" (a terminal), "lines" (no terminal) or "off"."""

    def __init__(self, mode: str = "off", stream: TextIO | None = None) -> None:
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress mode must be 'bar', 'lines' or 'off', got {mode!r}")
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        self.lock = threading.Lock()
        self.interval = _REDRAW_S if mode == "bar" else _interval()
        self.last_line = time.monotonic()  # without a terminal: when a line was last written

    @classmethod
    def auto(cls, enabled: bool | None, stream: TextIO | None = None) -> Progress:
        """enabled=False: off; otherwise a bar on a terminal and lines without one."""
        stream = stream if stream is not None else sys.stderr
        if enabled is False:
            return cls("off", stream)
        tty = getattr(stream, "isatty", lambda: False)()
        return cls("bar" if tty else "lines", stream)

    @contextmanager
    def phase(self, name: str, unit: str = "", total: float | None = None) -> Iterator[Phase]:
        ph = Phase(self, name, unit, total)
        log.debug("%s ...", name)
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(ph, stop), name="progress-ticker")
        ticker.daemon = True
        ticker.start()
        try:
            yield ph
        finally:
            stop.set()
            ticker.join()
            self._finish(ph)

    def _tick(self, ph: Phase, stop: threading.Event) -> None:
        if self.mode != "lines":
            while not stop.wait(self.interval):
                self._draw(ph)
            return
        # Without a terminal: a line once the run has gone `interval` without one, counted
        # across phases, so a run of several phases shorter than it is not silent for their sum.
        while not stop.wait(max(0.0, self.last_line + self.interval - time.monotonic())):
            if time.monotonic() - self.last_line >= self.interval:
                self._draw(ph)

    def _draw(self, ph: Phase) -> None:
        with self.lock:
            line = ph.describe()
        log.debug("%s", line)
        if self.mode == "bar":
            self._write("\r" + self._fit(line) + "\x1b[K")
        elif self.mode == "lines":
            ph.shown = True
            self.last_line = time.monotonic()
            self._write(f"datapool: {line}\n")

    def _finish(self, ph: Phase) -> None:
        with self.lock:
            line = ph.describe(final=True)
        log.debug("%s", line)
        if self.mode == "bar":
            self._write("\r" + line + "\x1b[K\n")
        elif self.mode == "lines" and ph.shown:  # a phase that showed a line shows its end
            self.last_line = time.monotonic()
            self._write(f"datapool: {line}\n")

    def _fit(self, line: str) -> str:
        """A redrawn line within the terminal's width, cut with "…": a longer one wraps, and
        each redraw's \r goes back to the start of its last row only, so every redraw left a
        row behind (a pane of 50 columns, a decode line of 59). The phase's last line, drawn
        once, stays whole."""
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):  # not a terminal, or no size known
            return line
        if columns <= 1 or len(line) < columns:
            return line
        return line[: columns - 2] + "…"

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream never stops a run
            pass


class FrameTotals:
    """The frames a set of files will decode, estimated and corrected as decoding goes.

    An image is one frame. A video's count comes from its container: read ahead of decoding
    where the source is local (`declared`), or when a decoder opens it (`opened`); until then it
    is estimated from its size at the bytes per frame of the videos read so far (at first 30 kB
    per frame, about 1080p H.264 at 8 Mbit/s). A finished file counts the frames it really
    decoded."""

    PRIOR_BYTES_PER_FRAME = 30_000

    def __init__(self, files: list[tuple[str, str, int]]) -> None:  # (key, kind, size in bytes)
        self.size = {k: max(1, int(s)) for k, _, s in files}
        self.videos = {k for k, kind, _ in files if kind == "video"}
        self.known: dict[str, int] = {k: 1 for k, kind, _ in files if kind != "video"}
        self.lock = threading.Lock()
        self.bytes_seen = 0
        self.frames_seen = 0

    def declared(self, key: str, frame_count: int) -> None:
        """What a video's header declares, read before a decoder opens it."""
        self.opened(key, frame_count)

    def opened(self, key: str, frame_count: int) -> None:
        with self.lock:
            if key in self.videos and key not in self.known:
                self.known[key] = max(1, frame_count)
                self.bytes_seen += self.size[key]
                self.frames_seen += max(1, frame_count)

    def finished(self, key: str, frames: int) -> None:
        with self.lock:
            self.known[key] = max(frames, 0)

    def total(self) -> int:
        with self.lock:
            per_frame = (
                self.bytes_seen / self.frames_seen
                if self.frames_seen
                else self.PRIOR_BYTES_PER_FRAME
            )
            guessed = sum(
                max(1, round(self.size[k] / per_frame)) for k in self.videos if k not in self.known
            )
            return sum(self.known.values()) + guessed
