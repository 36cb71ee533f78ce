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
A folder (a history snapshot, pool/history.py) is staged whole as `<name>.pending/` and renamed
into place with the files; recovery before the commit point removes it. A file or folder to go
(`Transaction.remove`: what `datapool undo` takes away, pool/undo.py; the run folders a
`--process-all` run's pool no longer has) is only named in the journal, and removed after the
renames: replaying a removal again finds it gone.
A write that fails before the commit point (a full disk, a read-only folder) removes what was
staged; an append that fails after it, while no file has been renamed yet, is undone too; both
raise PoolWriteError, and the pool is as before the run. See docs/robustness.md.
Recovery runs under the pool lock whenever a pool is opened.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from datapool._fsio import atomic_write_text, cut_and_append, fsync_dir, write_durably
from datapool._signals import deferred, passed_commit_point
from datapool._testhooks import point
from datapool.errors import PoolCorruptError, PoolWriteError
from datapool.pool.format import UPGRADE
from datapool.pool.layout import (
    APPEND_PENDING_SUFFIX,
    HISTORY_DIR,
    JOURNAL_NAME,
    PENDING_SUFFIX,
)

_SKIP_DIRS = {HISTORY_DIR}

# A journal that removes files (`datapool undo`'s) is format 2. A datapool before 0.4.0 reads
# only `files`, `appends` and `dirs`: it would rename the undo's files into place and leave the
# undone run's folder (and snapshot) that `removes` names, half an undo. So such a journal
# begins its `appends` with an entry that those readers refuse, in a line that says what to do
# (they parse each offset with int(): "unreadable commit journal: invalid literal for int()
# with base 10: '<NEEDS>'"); this reader skips it. Journals without removals stay format 1,
# which every datapool replays.
FORMAT_KEY = "format"
FORMAT = 2  # the newest journal format this datapool replays
_NEEDS = (
    "this journal of an interrupted `datapool undo` needs datapool 0.5.0 or newer to finish "
    "it (it removes the undone run's folder); open the pool with that one"
)


# The journal of a run that rebuilt the pool (--process-all) says so: its `removes` are the run
# folders the new pool has not, and verify names it a commit, not an undo (whose journals,
# older datapools' too, are the others with `removes`).
RESET_KEY = "reset"


def _needs_marker() -> dict[str, object]:
    return {"file": JOURNAL_NAME, "offset": _NEEDS}


def _is_marker(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("file") == JOURNAL_NAME
        and entry.get("offset") == _NEEDS
    )


def _pending(path: Path) -> Path:
    return path.with_name(path.name + PENDING_SUFFIX)


def _append_pending(path: Path) -> Path:
    return path.with_name(path.name + APPEND_PENDING_SUFFIX)


class Transaction:
    """Stage files, then commit() them all or none. Use it as a context manager: leaving the
    block by an exception before commit() removes what was staged."""

    def __init__(self, root: Path, reset: bool = False) -> None:
        self.root = Path(root)
        self.reset = reset  # a --process-all run's commit: said so in its journal (RESET_KEY)
        self.files: list[str] = []
        self.appends: list[dict[str, object]] = []
        self.dirs: list[str] = []
        self.removes: list[str] = []
        self.committed = False
        self._made_dirs: list[Path] = []

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.committed:
            self.abort()

    def _make_parents(self, final: Path) -> None:
        """The folders `final` needs, made and remembered (abort() removes them)."""
        missing = [d for d in (final.parent, *final.parent.parents) if not d.exists()]
        for d in reversed(missing):
            d.mkdir()
            self._made_dirs.append(d)

    def stage(self, rel: str, data: bytes | Iterable[bytes]) -> None:
        """Write `data` (bytes, or blocks of them) durably beside its final place; nothing is
        visible until commit()."""
        final = self.root / rel
        self.files.append(rel)
        try:
            self._make_parents(final)
            write_durably(_pending(final), data)
        except OSError as e:
            raise _write_error(self.root, e, committed=False) from None
        point(f"staged:{rel}")

    def stage_link(self, rel: str, src: Path) -> None:
        """Stage the existing file `src` to be moved into place at `rel` at commit(): hard-linked
        beside it (copied where the file system cannot link), so `src` stays as it is."""
        final = self.root / rel
        self.files.append(rel)
        try:
            self._make_parents(final)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_pending(final))
            try:
                os.link(src, _pending(final))
            except OSError:
                shutil.copyfile(src, _pending(final))
                with open(_pending(final), "rb") as f:
                    os.fsync(f.fileno())
        except OSError as e:
            raise _write_error(self.root, e, committed=False) from None
        point(f"staged:{rel}")

    def stage_dir(self, rel: str, fill: Callable[[Path], None]) -> None:
        """A folder to be moved into place at `rel` at commit(): `fill` writes it, durably, as
        `<rel>.pending/`, which abort() or a recovery removes."""
        final = self.root / rel
        self.dirs.append(rel)
        try:
            if not final.parent.exists():
                final.parent.mkdir(parents=True)
                self._made_dirs.append(final.parent)
            _pending(final).mkdir()
            fill(_pending(final))
        except OSError as e:
            raise _write_error(self.root, e, committed=False) from None
        point(f"staged:{rel}/")

    def remove(self, rel: str) -> None:
        """Remove the file or folder `rel` at commit(), after the renames; nothing is touched
        before the commit point."""
        self.removes.append(rel)

    def stage_append(self, rel: str, data: bytes | Iterable[bytes]) -> None:
        """Stage `data` (bytes, or blocks of them) to be appended to the existing file `rel` at
        commit()."""
        final = self.root / rel
        try:
            self.appends.append({"file": rel, "offset": final.stat().st_size})
            write_durably(_append_pending(final), data)
        except OSError as e:
            raise _write_error(self.root, e, committed=False) from None
        point(f"staged:{rel}{APPEND_PENDING_SUFFIX}")

    def abort(self) -> None:
        """Remove everything staged (the journal first, if it got written): the pool stays as
        it was. Safe to call after a failed or interrupted commit() that did not reach the
        commit point, and a no-op after a successful one."""
        if self.committed:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / JOURNAL_NAME)
            fsync_dir(self.root)
        for rel in self.files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_pending(self.root / rel))
        for a in self.appends:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_append_pending(self.root / str(a["file"])))
        for rel in self.dirs:
            shutil.rmtree(_pending(self.root / rel), ignore_errors=True)
        for d in reversed(self._made_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()

    def commit(self) -> None:
        touched = [
            *self.files,
            *(str(a["file"]) for a in self.appends),
            *self.dirs,
            *self.removes,
        ]
        try:
            for d in {(self.root / rel).parent for rel in touched}:
                fsync_dir(d)
        except OSError as e:
            self.abort()
            raise _write_error(self.root, e, committed=False) from None
        try:
            # SIGINT/SIGTERM wait until the journal is written and replayed (see _signals.py).
            with deferred():
                self._commit_point()
        except KeyboardInterrupt as e:
            e.pool_committed = self.committed  # type: ignore[attr-defined]
            raise
        point("committed")

    def _commit_point(self) -> None:
        try:
            atomic_write_text(
                self.root / JOURNAL_NAME,
                json.dumps(
                    {
                        **({FORMAT_KEY: FORMAT} if self.removes else {}),
                        "files": self.files,
                        "appends": [_needs_marker()] * bool(self.removes) + self.appends,
                        "dirs": self.dirs,
                        **({"removes": self.removes} if self.removes else {}),
                        **({RESET_KEY: True} if self.reset else {}),
                    }
                ),
            )
        except OSError as e:
            self.abort()
            raise _write_error(self.root, e, committed=False) from None
        # The commit point: from here on the commit is finished, now or by the next recovery.
        self.committed = True
        passed_commit_point()
        point("journal-written")
        undone = _replay_or_roll_back(self.root, self.files, self.appends, self.dirs, self.removes)
        if undone is not None:
            self.committed = False
            passed_commit_point(False)
            raise _write_error(self.root, undone, committed=False)


def _write_error(root: Path, e: OSError, committed: bool) -> PoolWriteError:
    what = (
        "the commit point was passed, so the run will be completed when the pool is next opened"
        if committed
        else "the commit was rolled back: the pool is as it was before this run"
    )
    return PoolWriteError(f"cannot write pool {root} ({e.strerror or e}); {what}")


def _replay_or_roll_back(
    root: Path,
    files: list[str],
    appends: list[dict[str, object]],
    dirs: list[str],
    removes: Sequence[str] = (),
) -> OSError | None:
    """Replay a journal; None when done. An append can fail (a full disk); while any append is
    still pending no file has been renamed yet (renames follow the appends), so the commit can
    still be undone: it is, and the error is returned. A failure later (renames need no space)
    leaves the journal for the next recovery to finish and raises PoolWriteError."""
    try:
        _replay(root, files, appends, dirs, removes)
    except OSError as e:
        if any(_append_pending(root / str(a["file"])).exists() for a in appends):
            try:
                _roll_back_appends(root, files, appends, dirs)
            except OSError:
                raise _write_error(root, e, committed=True) from None
            return e
        raise _write_error(root, e, committed=True) from None
    return None


def _roll_back_appends(
    root: Path, files: list[str], appends: list[dict[str, object]], dirs: list[str]
) -> None:
    """Undo a journal whose renames have not started: cut the appended files back to their
    recorded lengths, then drop the journal, then the staged files. A crash part-way leaves
    the journal, and replaying it is still correct."""
    for entry in appends:
        final = root / str(entry["file"])
        offset = int(entry["offset"])  # type: ignore[call-overload]
        if final.stat().st_size > offset:
            cut_and_append(final, offset)
    os.unlink(root / JOURNAL_NAME)
    fsync_dir(root)
    for entry in appends:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_append_pending(root / str(entry["file"])))
    for rel in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_pending(root / rel))
    for rel in dirs:
        shutil.rmtree(_pending(root / rel), ignore_errors=True)


def _replay(
    root: Path,
    files: list[str],
    appends: list[dict[str, object]],
    dirs: list[str],
    removes: Sequence[str] = (),
) -> None:
    parents = set()
    for entry in appends:
        final = root / str(entry["file"])
        pending = _append_pending(final)
        if pending.exists():
            offset = int(entry["offset"])  # type: ignore[call-overload]
            cut_and_append(final, offset, pending.read_bytes())
            point(f"appended:{entry['file']}")
            pending.unlink()
        parents.add(final.parent)
    for rel in [*dirs, *files]:
        final = root / rel
        pending = _pending(final)
        if pending.exists():
            os.replace(pending, final)
            point(f"renamed:{rel}")
        parents.add(final.parent)
    for rel in removes:  # after the renames: a crash part-way is finished by the next replay
        final = root / rel
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        else:
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
        point(f"removed:{rel}")
        if final.parent.exists():
            parents.add(final.parent)
    for d in parents:
        fsync_dir(d)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(root / JOURNAL_NAME)
    fsync_dir(root)


def needs_recovery(root: Path) -> bool:
    return (root / JOURNAL_NAME).exists() or any(_leftovers(root))


def _leftovers(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            if name.endswith(PENDING_SUFFIX) or (name.startswith(".") and name.endswith(".tmp")):
                found.append(Path(dirpath) / name)
    history = root / HISTORY_DIR  # a snapshot staged by a commit that never reached its journal
    if history.is_dir():
        found += [p for p in history.iterdir() if p.name.endswith(PENDING_SUFFIX) and p.is_dir()]
    return found


def recover(root: Path) -> str | None:
    """Finish or undo an interrupted commit. Call with the pool lock held.

    Returns 'rolled forward', 'rolled back' or None when there was nothing to do.
    """
    root = Path(root)
    journal = root / JOURNAL_NAME
    if journal.exists():
        try:
            data = json.loads(journal.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if not isinstance(data.get(FORMAT_KEY, 1), int) or data.get(FORMAT_KEY, 1) > FORMAT:
                raise PoolCorruptError(
                    f"{journal}: a newer datapool's commit journal (format "
                    f"{data.get(FORMAT_KEY)!r}; this one replays up to {FORMAT}): finish the "
                    f"interrupted commit with that datapool; {UPGRADE}"
                )
            files, appends = data["files"], data.get("appends", [])
            appends = [a for a in appends if not _is_marker(a)]  # (what older readers refuse)
            dirs = data.get("dirs", [])  # absent from journals before history became staged
            removes = data.get("removes", [])  # undo's; a --process-all run's stale run folders
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise ValueError("files must be a list of names")
            if not all(isinstance(a["file"], str) and int(a["offset"]) >= 0 for a in appends):
                raise ValueError("appends must name a file and an offset")
            if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
                raise ValueError("dirs must be a list of names")
            if not isinstance(removes, list) or not all(isinstance(r, str) for r in removes):
                raise ValueError("removes must be a list of names")
        except (ValueError, KeyError, TypeError) as e:
            raise PoolCorruptError(f"{journal}: line 1: unreadable commit journal: {e}") from None
        with deferred():
            undone = _replay_or_roll_back(root, files, appends, dirs, removes)
        return "rolled forward" if undone is None else "rolled back"
    leftovers = _leftovers(root)
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return "rolled back" if leftovers else None
