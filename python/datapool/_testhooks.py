"""Named points in a run, for crash-injection tests only (tests/test_crash.py).

    DATAPOOL_TEST_TRACE=1              print `datapool-test: at <point>` on stderr at every point
    DATAPOOL_TEST_PAUSE_AT=<pattern>   at the first point matching the fnmatch pattern (or its
                                       k-th hit, written `<pattern>#k`), print
                                       `datapool-test: paused at <point>` and sleep until killed
    DATAPOOL_TEST_PAUSE_S=<seconds>    ... or for that long, then go on

The environment is read once, on the first point; when neither variable is set a point costs one
global lookup and a comparison. Points are named by phase: `locked`, `listed`, `decode:<key>`,
`embed` (each batch), `embedded`, `selected`, `rendered`, and in the commit (see pool/journal.py)
`staged:<file>` (`staged:history/<name>/`: a snapshot, pool/history.py), `journal-written`,
`appended:<file>`, `renamed:<file>`, `committed`; then `exiting` (the CLI, once the run has
returned); `exported:<key>` once an export has written a source file's samples. The pipeline
passes `started` once its threads run; a stopping one passes `embed-stopped` (a batch ended
inside onnxruntime) and `threads-left` (a thread outlasted its wait).
"""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
import time

_state: tuple[bool, str | None, int, float] | None = None
_hits = 0
_lock = threading.Lock()  # points are hit from the pipeline's threads too: one line at a time


def _load() -> tuple[bool, str | None, int, float]:
    trace = os.environ.get("DATAPOOL_TEST_TRACE", "") not in ("", "0")
    spec = os.environ.get("DATAPOOL_TEST_PAUSE_AT") or None
    nth = 1
    if spec is not None and "#" in spec:
        spec, _, k = spec.rpartition("#")
        nth = int(k)
    return trace, spec, nth, float(os.environ.get("DATAPOOL_TEST_PAUSE_S") or "inf")


def point(name: str) -> None:
    global _state, _hits
    if _state is None:
        _state = _load()
    trace, pattern, nth, pause_s = _state
    if not trace and pattern is None:
        return
    with _lock:
        if trace:
            _say(f"datapool-test: at {name}")
        if pattern is None or not fnmatch.fnmatchcase(name, pattern):
            return
        _hits += 1
        paused = _hits == nth
        if paused:
            _say(f"datapool-test: paused at {name}")
    if paused:
        end = time.monotonic() + pause_s
        while time.monotonic() < end:
            time.sleep(min(0.05, max(end - time.monotonic(), 0)))


def _say(line: str) -> None:
    """One line on stderr in one write: print() writes the text and the newline separately, and
    another thread's line (the CLI's own message) could land between the two."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
