"""All-or-nothing commits of several pool files.

A commit stages every new file as `<name>.pending` (written and fsynced), then writes the journal
`.journal.json` atomically, then renames each pending file into place, fsyncs, and removes the
journal. An append (rows added to the pool CSV) is staged the same way as `<name>.append.pending`
and recorded in the journal with the file's length before it; replaying it truncates the file to
that length and appends the staged bytes, so a replay can run any number of times. A commit
therefore costs what the run added, not what the pool holds. The journal is the commit point:
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
APPEND_PENDING = ".append.pending"
_SKIP_DIRS = {"history"}


def _pending(path: Path) -> Path:
    return path.with_name(path.name + PENDING)


def _append_pending(path: Path) -> Path:
    return path.with_name(path.name + APPEND_PENDING)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class Transaction:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.files: list[str] = []
        self.appends: list[dict[str, object]] = []

    def stage(self, rel: str, data: bytes) -> None:
        """Write `data` durably beside its final place; nothing is visible until commit()."""
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        _write_durably(_pending(final), data)
        self.files.append(rel)

    def stage_append(self, rel: str, data: bytes) -> None:
        """Stage `data` to be appended to the existing file `rel` at commit()."""
        final = self.root / rel
        _write_durably(_append_pending(final), data)
        self.appends.append({"file": rel, "offset": final.stat().st_size})

    def commit(self) -> None:
        touched = [*self.files, *(str(a["file"]) for a in self.appends)]
        for d in {(self.root / rel).parent for rel in touched}:
            fsync_dir(d)
        atomic_write_text(
            self.root / JOURNAL, json.dumps({"files": self.files, "appends": self.appends})
        )
        _replay(self.root, self.files, self.appends)


def _replay(root: Path, files: list[str], appends: list[dict[str, object]]) -> None:
    dirs = set()
    for entry in appends:
        final = root / str(entry["file"])
        pending = _append_pending(final)
        if pending.exists():
            data = pending.read_bytes()
            with open(final, "r+b") as f:
                f.truncate(int(entry["offset"]))  # type: ignore[call-overload]
                f.seek(0, os.SEEK_END)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            pending.unlink()
        dirs.add(final.parent)
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
            data = json.loads(journal.read_text(encoding="utf-8"))
            files, appends = data["files"], data.get("appends", [])
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise ValueError("files must be a list of names")
            if not all(isinstance(a["file"], str) and int(a["offset"]) >= 0 for a in appends):
                raise ValueError("appends must name a file and an offset")
        except (ValueError, KeyError, TypeError) as e:
            raise PoolCorruptError(f"{journal}: line 1: unreadable commit journal: {e}") from None
        _replay(root, files, appends)
        return "rolled forward"
    leftovers = _leftovers(root)
    for path in leftovers:
        path.unlink()
    return "rolled back" if leftovers else None
