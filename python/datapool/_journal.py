"""All-or-nothing commits of several pool files.

A commit stages every new file as `<name>.pending` (written and fsynced), then writes the journal
`.journal.json` atomically, then renames each pending file into place, fsyncs, and removes the
journal. The journal is the commit point:
- a crash before it is written leaves only `.pending` files, which recovery deletes: the pool is
  as it was before the run;
- a crash after it leaves a journal, which recovery replays: the pool is as after the run.
Recovery runs under the pool lock whenever a pool is opened.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ._fsio import atomic_write_text, fsync_dir
from .errors import PoolCorruptError

JOURNAL = ".journal.json"
PENDING = ".pending"
_SKIP_DIRS = {"history"}


def _pending(path: Path) -> Path:
    return path.with_name(path.name + PENDING)


class Transaction:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.files: list[str] = []

    def stage(self, rel: str, data: bytes) -> None:
        """Write `data` durably beside its final place; nothing is visible until commit()."""
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(_pending(final), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.files.append(rel)

    def commit(self) -> None:
        for d in {(self.root / rel).parent for rel in self.files}:
            fsync_dir(d)
        atomic_write_text(self.root / JOURNAL, json.dumps({"files": self.files}))
        _replay(self.root, self.files)


def _replay(root: Path, files: list[str]) -> None:
    dirs = set()
    for rel in files:
        final = root / rel
        pending = _pending(final)
        if pending.exists():
            os.replace(pending, final)
        dirs.add(final.parent)
    for d in dirs:
        fsync_dir(d)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(root / JOURNAL)
    fsync_dir(root)


def needs_recovery(root: Path) -> bool:
    return (root / JOURNAL).exists() or any(_leftovers(root))


def _leftovers(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            if name.endswith(PENDING) or (name.startswith(".") and name.endswith(".tmp")):
                found.append(Path(dirpath) / name)
    return found


def recover(root: Path) -> str | None:
    """Finish or undo an interrupted commit. Call with the pool lock held.

    Returns 'rolled forward', 'rolled back' or None when there was nothing to do.
    """
    root = Path(root)
    journal = root / JOURNAL
    if journal.exists():
        try:
            files = json.loads(journal.read_text(encoding="utf-8"))["files"]
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise ValueError("files must be a list of names")
        except (ValueError, KeyError, TypeError) as e:
            raise PoolCorruptError(f"{journal}: line 1: unreadable commit journal: {e}") from None
        _replay(root, files)
        return "rolled forward"
    leftovers = _leftovers(root)
    for path in leftovers:
        path.unlink()
    return "rolled back" if leftovers else None
