"""Ctrl-C (SIGINT) and SIGTERM (`docker stop`) end a run cleanly.

The CLI installs `install()` for a run: both signals raise `Interrupted`, a KeyboardInterrupt, so
they take the same path as Ctrl-C under the Python API: staged files are removed
(pool/journal.py: Transaction.abort), the lock is released, and the pool is as it was before the run.
Nothing is installed at import.

The commit point itself is not interruptible: `deferred()` holds SIGINT and SIGTERM from the
journal's write to the end of its replay (milliseconds), then delivers them to the previous
handlers. An interrupt that lands there ends the process after the commit.

Whether the pool was committed is not decided by where the interrupt lands in the code: every
line between the commit point and the process's exit (a trace write, a context manager's exit,
the lock's release) is a place a signal can land. The commit point itself records it
(`commit_point_passed()`, per thread, reset by `run_starts()`), and both the run's outermost frame
and the CLI read that record: the exception says so (`pool_committed`), so the CLI never claims an
unchanged pool that in fact changed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

HANDLED: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)

_run_state = threading.local()  # .committed: this thread's run passed its commit point


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM. The CLI exits with 128 + signum (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def install() -> None:
    """Turn SIGINT and SIGTERM into Interrupted (main thread only; a signal the parent set to
    be ignored, as `nohup` does, stays ignored)."""
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _raise)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration of the block, then deliver them. A no-op off the
    main thread, where Python runs no signal handler anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        got.append(signum)

    try:
        for sig in HANDLED:
            previous[sig] = signal.signal(sig, hold)
        yield
    finally:
        for held, handler in previous.items():
            # (None: a handler set outside Python; the default is the nearest we can restore)
            signal.signal(held, signal.SIG_DFL if handler is None else handler)
    for signum in dict.fromkeys(got):
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)


def run_starts() -> None:
    """A run begins in this thread: nothing of it is committed yet."""
    _run_state.committed = False


def passed_commit_point(committed: bool = True) -> None:
    """The pool's commit point: called once the journal or manifest that commits the run is
    written (and with False where a commit is rolled back after all)."""
    _run_state.committed = committed


def commit_point_passed() -> bool:
    """Whether this thread's current run passed its commit point."""
    return bool(getattr(_run_state, "committed", False))


def mark_interrupt(e: BaseException) -> None:
    """Stamp an interrupt with whether the run's pool was committed (`pool_committed`)."""
    e.pool_committed = commit_point_passed()  # type: ignore[attr-defined]


def ignore() -> None:
    """Ignore SIGINT and SIGTERM from now on (main thread only). The CLI calls it once a run has
    returned: what is left is printing and exiting, and a signal there would either report an
    interrupted run that in fact finished, or (during interpreter shutdown, which resets Python
    handlers to the default) kill the process with nothing to say why."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)
