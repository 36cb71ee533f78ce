"""Progress that follows the work (issue 15, point 13), under a real pseudo-terminal and without
one: frames rather than files, every long phase shown, lines every few seconds without a terminal,
-v / -q / --log-file."""

from __future__ import annotations

import io
import os
import pty
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datapool.media import write_image, write_video

from .conftest import PACKAGE_PATH, clip_frames, scene

VIDEO_FRAMES = 90
IMAGES = 6


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress") / "src"
    write_video(root / "long.mp4", clip_frames(1, VIDEO_FRAMES), fps=30)
    for i in range(IMAGES):
        write_image(root / f"p{i}.jpg", scene(i))
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": PACKAGE_PATH}
    env.pop("DATAPOOL_PROGRESS_INTERVAL", None)
    env.update(extra)
    return env


def _cli(*args, env=None, check=False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datapool", *map(str, args)],
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=300,
        check=check,
    )


def _on_pty(*args, env=None) -> tuple[int, str]:
    """Run `python -m datapool ARGS` on a new pseudo-terminal; what it drew, and its status."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
        try:
            os.execve(
                sys.executable, [sys.executable, "-m", "datapool", *map(str, args)], env or _env()
            )
        finally:
            os._exit(127)
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def _final_lines(drawn: str) -> list[str]:
    """The lines left on the screen: each redraw (\\r) replaces the line before it."""
    lines = []
    for line in drawn.replace("\x1b[K", "").split("\n"):
        lines.append(line.rstrip("\r").split("\r")[-1])
    return lines


def test_terminal_shows_every_phase_counting_frames(tmp_path, src):
    rc, drawn = _on_pty("run", src, "--pool", tmp_path / "pool", "--n-samples", 3)
    assert rc == 0, drawn
    screen = _final_lines(drawn)
    phases = [line.split()[0] for line in screen if line[:1].isalpha() and "  " in line[:16]]
    for name in ("listing", "hashing", "decode+embed", "selection", "view", "commit"):
        assert name in phases, screen
    total = VIDEO_FRAMES + IMAGES  # the broken file decodes no frame
    [decode] = [line for line in screen if line.startswith("decode+embed")]
    assert f"{total}/{total} frames" in decode and "100%" in decode, decode
    assert "files)" in decode  # files are the note, frames the count
    # the listing counts the files it has listed (a bucket of a million objects takes minutes)
    [listing] = [line for line in screen if line.startswith("listing")]
    assert f" {IMAGES + 2} files " in listing and f"({IMAGES + 2} media files)" in listing, listing
    # a first run hashes the new files before decoding them (20,000 took 2-3 s before any line)
    [hashing] = [line for line in screen if line.startswith("hashing")]
    assert f" {IMAGES + 2}/{IMAGES + 2} files  100%" in hashing, hashing
    # the selection counts its picks out of the budget (21,000 candidates showed only its time)
    [selection] = [line for line in screen if line.startswith("selection")]
    assert " 3/3 picks  100%" in selection, selection
    # It was redrawn in place while it worked, counting frames.
    assert drawn.count("\rdecode+embed") >= 2
    assert "pool      3 samples" in drawn  # the summary follows


def test_a_selection_that_stops_early_ends_its_line_with_the_reason(tmp_path, src):
    """Before, a selection stopped by --min-distance left `selection  1/50 picks  2%` as its
    last line, as if it had stalled; now the line says how many of the budget and why."""
    rc, drawn = _on_pty(
        "run", src, "--pool", tmp_path / "pool", "--n-samples", 50, "--min-distance", 1.9
    )
    assert rc == 0, drawn
    [selection] = [line for line in _final_lines(drawn) if line.startswith("selection")]
    assert selection.startswith("selection      1 of 50 picks, stopped: min_distance  "), selection
    assert "%" not in selection and "/50" not in selection, selection
    assert "selected  1 as " in drawn and "(stopped: min_distance)" in drawn


def test_a_selection_from_one_candidate_says_candidate(tmp_path):
    """The selection line of a run with one new image ended `(from 1 candidates)`."""
    write_image(tmp_path / "s" / "only.jpg", scene(3))
    rc, drawn = _on_pty("run", tmp_path / "s", "--pool", tmp_path / "pool", "--n-samples", 3)
    assert rc == 0, drawn
    [selection] = [line for line in _final_lines(drawn) if line.startswith("selection")]
    assert selection.endswith("(from 1 candidate)"), selection


def test_touched_files_are_hashed_in_a_phase_that_counts_them(tmp_path, src):
    """Files whose mtime moved are read whole to tell touched from changed (after a `cp -r` of a
    bucket of videos: minutes); that reading was done after the listing with no line on screen."""
    copy = tmp_path / "src"
    shutil.copytree(src, copy)
    rc, drawn = _on_pty("run", copy, "--pool", tmp_path / "pool", "--n-samples", 3)
    assert rc == 0, drawn
    for i, path in enumerate(sorted(copy.glob("p*.jpg"))[:3]):
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))
    rc, drawn = _on_pty("run", copy, "--pool", tmp_path / "pool", "--n-samples", 3)
    assert rc == 0, drawn
    screen = _final_lines(drawn)
    [hashing] = [line for line in screen if line.startswith("hashing")]
    assert " 3/3 files  100%" in hashing, screen


def test_quiet_draws_nothing_but_the_summary(tmp_path, src):
    rc, drawn = _on_pty("run", src, "--pool", tmp_path / "pool", "--n-samples", 3, "-q")
    assert rc == 0, drawn
    assert "decode+embed" not in drawn and "\r\x1b" not in drawn and "warning" not in drawn
    assert "pool      3 samples" in drawn


def test_without_a_terminal_a_line_every_few_seconds(tmp_path, src):
    p = _cli(
        "run",
        src,
        "--pool",
        tmp_path / "pool",
        "--n-samples",
        3,
        env=_env(DATAPOOL_PROGRESS_INTERVAL="0.01"),
    )
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "\x1b" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("datapool: decode+embed")]
    assert lines and all("frames" in line for line in lines), p.stderr
    assert f"{VIDEO_FRAMES + IMAGES}/{VIDEO_FRAMES + IMAGES} frames" in lines[-1]


def test_without_a_terminal_a_short_run_prints_no_progress(tmp_path, src):
    p = _cli(
        "run",
        src,
        "--pool",
        tmp_path / "pool",
        "--n-samples",
        3,
        env=_env(DATAPOOL_PROGRESS_INTERVAL="3600"),
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_verbose_and_log_file(tmp_path, src):
    log_file = tmp_path / "run.log"
    src = Path(shutil.copytree(src, tmp_path / "src"))
    (src / "notes.txt").write_text("not media\n")
    p = _cli(
        "run", src, "--pool", tmp_path / "pool", "--n-samples", 3, "-v", "--log-file", log_file
    )
    assert p.returncode == 0, p.stderr
    assert "datapool: skipped broken.jpg: " in p.stderr
    # The summary's `(1 other file ignored)` named none of them, -v neither.
    assert "datapool: ignored notes.txt: not an image or video by its extension" in p.stderr
    assert "datapool: times: " in p.stderr
    logged = log_file.read_text()
    for name in ("listing", "decode+embed", "selection", "view", "commit"):
        assert f"DEBUG {name} ..." in logged, logged
    assert "INFO skipped broken.jpg" in logged
    bad = _cli(
        "run",
        src,
        "--pool",
        tmp_path / "p2",
        "--n-samples",
        1,
        "--log-file",
        tmp_path / "no" / "such" / "dir" / "x.log",
    )
    # 8, as every output that cannot be written (README, "Exit codes"; tests/test_exit_codes.py)
    assert bad.returncode == 8 and bad.stderr.count("\n") == 1 and "--log-file" in bad.stderr


def test_export_and_merge_show_their_phase(tmp_path, src):
    pool = tmp_path / "pool"
    _cli("run", src, "--pool", pool, "--n-samples", 3, "-q", check=True)
    rc, drawn = _on_pty("export", pool, tmp_path / "out")
    # counted by sample (an export of 20,000 files showed its time alone for a minute)
    assert rc == 0 and any(
        line.startswith("export") and " 3/3 samples  100%" in line for line in _final_lines(drawn)
    ), drawn
    _cli("run", src, "--pool", tmp_path / "b", "--n-samples", 4, "-q", check=True)
    rc, drawn = _on_pty("merge", pool, tmp_path / "b", "--into", tmp_path / "c")
    assert rc == 0 and any(line.startswith("merge") for line in _final_lines(drawn)), drawn


def test_eta_follows_the_rate(monkeypatch):
    from datapool.progress import Phase, Progress

    clock = [100.0]
    monkeypatch.setattr("datapool.progress.time.monotonic", lambda: clock[0])
    ph = Phase(Progress("off", io.StringIO()), "decode+embed", "frames", 400)
    clock[0] += 10.0
    ph.advance(100)  # 100 frames in 10 s: 300 more take 30 s
    assert ph.describe() == "decode+embed   100/400 frames  25%  0:10  ETA 0:30"
    ph.set_total(200)
    assert "ETA 0:10" in ph.describe()


def test_frame_totals_are_estimated_then_corrected():
    from datapool.progress import FrameTotals

    t = FrameTotals(
        [("a.jpg", "image", 5000), ("v.mp4", "video", 3_000_000), ("w.mp4", "video", 600_000)]
    )
    assert t.total() == 1 + 100 + 20  # 30 kB per frame until a video is read
    t.declared("v.mp4", 1500)  # its header: 2 kB per frame, so w.mp4 is about 300
    assert t.total() == 1 + 1500 + 300
    t.finished("v.mp4", 1498)  # what it really decoded
    t.opened("w.mp4", 250)
    assert t.total() == 1 + 1498 + 250


def test_without_a_terminal_short_phases_in_a_row_are_not_silent(monkeypatch):
    # A run into a 200,000-sample pool went through listing, selection, view and report page,
    # each under the 5 s interval, and wrote nothing for 10-14 s: the interval counted from
    # each phase's start. It now counts from the last line written, across phases.
    import io
    import time

    from datapool.progress import Progress

    monkeypatch.setenv("DATAPOOL_PROGRESS_INTERVAL", "0.3")
    out = io.StringIO()
    progress = Progress("lines", out)
    for name in ("listing", "selection", "view", "report page", "commit"):
        with progress.phase(name):
            time.sleep(0.12)
    lines = out.getvalue().splitlines()
    assert lines, "five phases of 0.12 s in a row wrote nothing"
    assert all(line.startswith("datapool: ") for line in lines), lines
    # A phase that showed a line shows its end too, with its time.
    shown = {line.split()[1] for line in lines}
    assert all(any(" s" in x for x in lines if x.split()[1] == n) for n in shown), lines


def test_a_redrawn_line_fits_a_narrow_terminal():
    """On a terminal narrower than the line (a split pane of 50 columns; `decode+embed  1204/5500
    frames  21%  0:02  ETA 0:05  (2/11 files)` is 59), each redraw wrapped onto a new row and
    left the one before on the screen. A redraw is cut to the width; the last line stays whole."""
    import fcntl
    import struct
    import termios

    from datapool.progress import Progress

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
    with os.fdopen(slave, "w", encoding="utf-8", closefd=True) as tty:
        progress = Progress("bar", tty)
        with progress.phase("decode+embed", "frames", total=5500) as ph:
            ph.done = 1204
            ph.note = "2/11 files"
            progress._draw(ph)
            ph.done = 5500
        drawn = b""
        while select.select([master], [], [], 0.5)[0]:
            drawn += os.read(master, 65536)
    os.close(master)
    *redraws, last = drawn.decode().split("\r\n")[0].replace("\x1b[K", "").split("\r")[1:]
    assert redraws and all(len(r) < 50 for r in redraws), redraws
    assert any(r.startswith("decode+embed   1204/5500 frames") and r.endswith("…") for r in redraws)
    assert last.startswith("decode+embed   5500/5500 frames  100%") and len(last) > 50, last
    assert last.endswith("(2/11 files)"), last
