"""A local folder as a source: listed recursively, files opened by path."""

from __future__ import annotations

import errno
import glob
import io
import os
import re
import shlex
import stat
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from datapool.errors import DecodeError, SourceError
from datapool.naming import media_kind
from datapool.sources import READ_FAILED, TRIED_AGAIN
from datapool.sources.listing import listing_frame
from datapool.specs import normal_local_path

if TYPE_CHECKING:
    import pandas as pd

    from datapool.config import RunConfig
    from datapool.sources import MediaInput


# Folders that systems and NAS boxes make inside shared folders, never a user's data: Synology's
# thumbnails (`@eaDir/IMG_1.jpg/SYNOFILE_THUMB_XL.jpg`: a small copy of every picture) and recycle
# bin and snapshots, Windows' recycle bin and volume data, fsck's `lost+found` (a mount point's,
# unreadable but by root), macOS zip resource forks. Left out like hidden folders.
NOT_DATA_FOLDERS = frozenset(
    {"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information"}
    | {"lost+found", "__MACOSX"}
)


class LocalSource:
    """A local folder, listed recursively. Keys are POSIX paths relative to the folder.

    Symbolic links to folders are not followed (so a link loop cannot trap the listing); those
    to a folder outside the source are named in `linked_outside`, for the run to say so.
    Hidden files and folders (names starting with '.') are left out, and so are the folders
    systems and NAS boxes make (`NOT_DATA_FOLDERS`: Synology's `@eaDir` thumbnails, recycle
    bins, `lost+found`). Files without a media extension are counted and named in `ignored`.

    A media file that cannot be read safely is listed all the same, so the run records it in
    the ledger and the report as skipped, with the reason in `problems` (local_path raises
    DecodeError with it): a symbolic link that loops, dangles, or points outside the source
    (not followed unless `follow_links_outside`), something that is not a regular file (a FIFO
    would block the decoder), a video whose name is too long for its frames' names
    (`LONGEST_VIDEO_NAME`), a name that is not valid UTF-8 (its key shows the bytes as
    `\\xNN` escapes, since the pool's CSV, ledger and JSON files are UTF-8 text), and a name
    with a line break (its key shows it escaped, `\\n`: `selected_filenames.txt`, Lightly's
    filename lists and `datapool ls` hold one name per line).
    """

    def __init__(self, root: str | os.PathLike[str], follow_links_outside: bool = False) -> None:
        if not os.fspath(root):
            raise SourceError("the source path is empty (an unset variable?); give a folder")
        self.root = normal_local_path(root)
        if not self.root.exists():
            hint = ""
            if os.fspath(root).startswith("~"):  # quoted, or from a config file
                hint = (
                    f"; `~` is not expanded there: give the full path, {os.path.expanduser(root)}"
                )
            elif any(c in self.root.name for c in "*?["):  # a glob the shell did not expand
                hint = (
                    "; to use some of a folder's files, give the folder and --include "
                    f"'{self.root.name}'"
                )
            raise SourceError(f"source folder {self.root} does not exist{hint}")
        if not self.root.is_dir():
            raise SourceError(
                f"source {self.root} is not a folder; give the folder that holds it (add "
                f"--include '{self.root.name}' to use only this file)"
            )
        self.follow_links_outside = follow_links_outside
        self.n_ignored = 0
        self.ignored: list[str] = []
        self.problems: dict[str, str] = {}
        self.pruned: list[str] = []  # the folders `list(prune)` did not read
        # symbolic links to folders outside the source, not followed: (key prefix, target)
        self.linked_outside: list[tuple[str, str]] = []
        self._real_root = self.root
        # Files without an extension whose first bytes are an image's or a video's (hashed
        # names): (key, format), up to SNIFFED_AT_MOST, for the run to say why they are ignored.
        self.unnamed_media: list[tuple[str, str]] = []
        self.unnamed_more = False  # whether there may be more: files left unchecked

    def __str__(self) -> str:
        return str(self.root)

    def list(
        self,
        prune: Callable[[str], bool] | None = None,
        counted: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """One row per media file: key, size (bytes), mtime_ns, etag ("" here), kind. Sorted.
        A folder whose key prefix ("a/b/") `prune` is true of is not read; `counted(n)` is told
        of each folder's n files as it is read."""

        records: list[tuple[tuple[str, int, int, str, str], str | None, bool]] = []
        ignored: list[str] = []
        unnamed: list[tuple[str, str]] = []
        sniffed = 0
        # A million files have a handful of extensions: each one's kind is worked out once.
        kinds: dict[str, str | None] = {}
        for key, entry in self._walk(prune, counted):
            dot = entry.name.rfind(".")
            ext = entry.name[dot:] if dot >= 0 else ""  # (".jpg": a name "jpg" is no extension)
            kind = kinds.get(ext, "")
            if kind == "":
                kind = kinds[ext] = media_kind(entry.name)
            if key.isascii() and key.isprintable():  # the common case: as it is, no problem
                printable, name_problem = key, None
            else:
                printable, name_problem = _printable(key)
            if kind is None:
                ignored.append(printable)
                if "." not in entry.name and len(unnamed) < SNIFFED_AT_MOST:
                    sniffed += 1
                    found = _sniff(entry.path) if sniffed <= SNIFFED_AT_MOST * 10 else None
                    if found is not None:
                        unnamed.append((printable, found))
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished since the folder was read: nothing to process
            problem = None
            if stat.S_ISLNK(st.st_mode):
                problem = self._link_problem(entry.path)
                if problem is None:
                    st = os.stat(entry.path)
            if problem is None and not stat.S_ISREG(st.st_mode):
                problem = _NOT_REGULAR
            if name_problem is None and kind == "video":
                name_problem = _frame_name_problem(entry.name)
            escaped = printable != key
            if name_problem is not None:
                key, problem = printable, name_problem
            records.append(((key, st.st_size, st.st_mtime_ns, "", kind), problem, escaped))
        rows, problems, clashes = _unique_keys(records)
        self.n_ignored = len(ignored) + len(clashes)
        self.ignored = sorted(ignored + clashes)
        self.problems = problems
        self.unnamed_media = sorted(unnamed)
        self.unnamed_more = len(unnamed) == SNIFFED_AT_MOST or sniffed > SNIFFED_AT_MOST * 10
        rows.sort()
        return listing_frame(rows)

    def _walk(
        self,
        prune: Callable[[str], bool] | None = None,
        counted: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(key, entry) of every file under the root, hidden names left out, symbolic links to
        folders not followed (as os.walk), folders `prune` is true of left out, in no particular
        order. A folder that cannot be read raises SourceError, naming the --exclude that leaves
        it out: a run never goes on without files it was not told to leave out (their samples
        would stay in the pool, but `--process-all` would drop them, and they would count as
        missing).

        One scandir per folder and the key built from its folder's prefix: os.walk with a
        pathlib conversion per file took twice as long (11 against 5 ms for 1100 files).
        """
        stack = [("", os.fspath(self.root))]
        self.pruned = []
        self.linked_outside = []
        self._real_root = self.root.resolve()
        while stack:
            prefix, folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError as e:
                self._raise(e, prefix)
            files = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows a link, so a link to a folder is no file
                except OSError:
                    is_dir = False
                if not is_dir:
                    files.append(entry)
                elif entry.name in NOT_DATA_FOLDERS:
                    continue
                else:
                    folder = f"{prefix}{entry.name}/"
                    if prune is not None and prune(folder):
                        self.pruned.append(folder)
                    elif not entry.is_symlink():
                        stack.append((folder, entry.path))
                    else:
                        self._linked_folder(folder, entry.path)
            if counted is not None:
                counted(len(files))
            for entry in files:
                yield prefix + entry.name, entry

    def _linked_folder(self, folder: str, path: str) -> None:
        """Note a symbolic link to a folder outside the source in `linked_outside`: it is not
        followed, so its files are not read, and the run says so. A link to a folder inside the
        source (its files are listed under their own path) or a loop loses nothing."""
        target = os.path.realpath(path)
        if not Path(target).is_relative_to(self._real_root):
            self.linked_outside.append((folder, target))

    def local_path(self, key: str) -> Path:
        problem = self.problems.get(key)
        if problem is not None:
            raise DecodeError(problem)
        return self.root / key

    def open_inputs(self, keys: Sequence[str]) -> Iterator[tuple[str, MediaInput | SourceError]]:
        """Each key with its local path, at once (the decoder reads the file itself); a file the
        listing refused (a link loop or outside link, a FIFO, a name not in UTF-8) comes with its
        reason instead, and a file that cannot be opened for reading (permission denied, an I/O
        error) with a READ_FAILED reason, so that the next run tries it again."""
        for key in keys:
            try:
                path = str(self.local_path(key))
            except DecodeError as e:
                yield key, SourceError(str(e))
                continue
            try:  # (a FIFO made since the listing: the decoder's open would block)
                open_regular(path).close()
            except OSError as e:
                yield key, SourceError(f"{READ_FAILED}{e.strerror}{TRIED_AGAIN}")
                continue
            yield key, path

    def read_bytes(self, key: str) -> bytes | None:
        """The bytes of the file `key` (relative to the folder; hidden files such as
        `.lightly/...` included), or None when there is none, or when the key would leave the
        folder (an absolute path or `..`: an S3 key can be anything, and is never read outside)."""
        if key.startswith("/") or ".." in key.split("/") or "\0" in key:
            return None
        path = self.root / key
        try:
            # A FIFO named like an export's list or a `.lightly` file would block a plain read.
            f = open_regular(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror}") from None
        with f:
            try:
                return f.read()
            except OSError as e:
                raise SourceError(f"cannot read {path}: {e.strerror}") from None

    def exists(self, key: str) -> bool:
        """Whether the folder holds a regular file `key` (False for a key that would leave it,
        as `read_bytes` reads none)."""
        if key.startswith("/") or ".." in key.split("/") or "\0" in key:
            return False
        return (self.root / key).is_file()

    def list_files(self, prefix: str) -> dict[str, str]:
        """Every regular file under the folder `prefix` (relative to the source; hidden ones
        included, symbolic links to folders not followed), by key, each with "" for its version
        (a local file's is known by reading it). Nothing when the folder is not there."""
        if prefix.startswith("/") or ".." in prefix.split("/") or "\0" in prefix:
            return {}
        top = self.root / prefix
        found: dict[str, str] = {}
        stack = [(prefix.rstrip("/") + "/" if prefix else "", os.fspath(top))]
        while stack:
            at, folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise SourceError(f"cannot list {folder}: {e.strerror}") from None
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((f"{at}{entry.name}/", entry.path))
                elif entry.is_file():
                    found[at + entry.name] = ""
        return found

    def content_hashes(self, keys: Sequence[str]) -> dict[str, str]:
        """blake2b-128 of each file's bytes, hex, read by up to 8 threads (hashlib releases the
        GIL); a file that cannot be read is left out. Used to tell a copied or touched file (same
        size and bytes, new mtime) from a changed one (pool/ledger.py)."""
        return self._digests(keys, "blake2b")

    def md5_hashes(self, keys: Sequence[str]) -> dict[str, str]:
        """The MD5 of each file's bytes, hex, as content_hashes reads them: what the ETag of a
        single-part S3 upload is, so that a bucket's files moved into a folder are known by their
        bytes (pool/ledger.py etag_is_md5)."""
        return self._digests(keys, "md5")

    def _digests(self, keys: Sequence[str], algorithm: str) -> dict[str, str]:
        from concurrent.futures import ThreadPoolExecutor

        def one(key: str) -> tuple[str, str]:
            if key in self.problems:  # a link loop or outside link, a FIFO: never opened
                return key, ""
            try:
                return key, file_hash(self.root / key, algorithm)
            except OSError:
                return key, ""

        if len(keys) < 4:
            found = [one(k) for k in keys]
        else:
            with ThreadPoolExecutor(min(8, os.cpu_count() or 1), "datapool-hash") as ex:
                found = list(ex.map(one, keys))
        return {k: h for k, h in found if h}

    def _link_problem(self, full: str) -> str | None:
        """Why a symbolic link is not followed, or None to follow it."""
        try:
            target = Path(full).resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            return "symbolic link loop; not followed"
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "symbolic link loop; not followed"
            return f"broken symbolic link to {os.readlink(full)!r} ({e.strerror}); not followed"
        if not self.follow_links_outside and not target.is_relative_to(self.root.resolve()):
            return f"symbolic link to {str(target)!r}, outside the source; not followed"
        return None

    @staticmethod
    def _raise(err: OSError, prefix: str) -> NoReturn:
        fix = f"; to run without it, add --exclude {shlex.quote(glob.escape(prefix))}"
        raise SourceError(f"cannot list {err.filename}: {err.strerror}{fix if prefix else ''}")

    @classmethod
    def open(cls, spec: str, config: RunConfig | None = None) -> LocalSource:
        """The registry's opener (datapool.sources.open_source)."""
        return cls(spec)


SNIFFED_AT_MOST = 20  # extensionless media files found (of ten times as many read at most)

# First bytes of the formats datapool reads, for a file without an extension.
_MAGIC = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF8", "GIF"),
    (8, b"WEBP", "WebP"),
    (4, b"ftyp", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "MKV/WebM"),
)


def _sniff(path: str) -> str | None:
    """The media format of the regular file at `path` by its first 12 bytes, or None. Opened
    without blocking, so a FIFO cannot hang the listing."""
    try:
        with open_regular(path) as f:
            head = f.read(12)
    except OSError:
        return None
    return next((f for at, magic, f in _MAGIC if head[at : at + len(magic)] == magic), None)


def open_regular(path: str | os.PathLike[str]) -> io.FileIO:
    """The file at `path`, open for reading. Opened without blocking and checked, so that a FIFO
    (or socket, device) cannot hang the run: anything but a regular file raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    return io.FileIO(fd, "rb")


def file_hash(path: str | os.PathLike[str], algorithm: str = "blake2b") -> str:
    """blake2b with a 16-byte digest of the whole file (or its MD5, `algorithm="md5"`), in 1 MiB
    reads. Anything but a regular file raises OSError (`open_regular`)."""
    import hashlib

    h = (
        hashlib.blake2b(digest_size=16)
        if algorithm == "blake2b"
        else hashlib.md5(usedforsecurity=False)
    )
    with open_regular(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


_NOT_REGULAR = "not a regular file (a FIFO, socket or device); not read"
# What str.splitlines splits on: a name holding one of these would be two lines of a list.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_NOT_UTF8 = "name is not valid UTF-8 (shown with \\x escapes); rename the file"
_HAS_BREAK = (
    "its name contains a line break (shown as an escape), which selected_filenames.txt and "
    "Lightly's filename lists cannot hold; rename the file"
)


def _unique_keys(
    records: list[tuple[tuple[str, int, int, str, str], str | None, bool]],
) -> tuple[list[tuple[str, int, int, str, str]], dict[str, str], list[str]]:
    """The listing's rows, sorted, with one row per key, the problems by key, and the escaped
    keys left out. A key escaped for the ledger (`bad\\xff.jpg` for a name that is not UTF-8)
    can spell another file's real name (`bad\\xff.jpg` with a backslash): the real file keeps
    the key, with no problem of the other's; the escaped one is left out, as a file that could
    not be used anyway (two escaped names that spell one key: the first is kept)."""
    if not any(escaped for _, _, escaped in records):  # the keys are the files' own: unique
        rows = sorted(row for row, _, _ in records)
        return rows, {row[0]: p for row, p, _ in records if p is not None}, []
    by_key: dict[str, tuple[tuple[str, int, int, str, str], str | None, bool]] = {}
    clashes = []
    for record in records:
        key = record[0][0]
        kept = by_key.get(key)
        if kept is None or (kept[2] and not record[2]):
            if kept is not None:
                clashes.append(key)
            by_key[key] = record
        else:
            clashes.append(key)
    rows = sorted(row for row, _, _ in by_key.values())
    problems = {row[0]: problem for row, problem, _ in by_key.values() if problem is not None}
    return rows, problems, clashes


# The longest video file name (bytes) whose frames' names, `{stem}-{index}-{ext}.png` (naming.py),
# fit the 255 bytes of a file name with an index of up to 10 digits.
LONGEST_VIDEO_NAME = 255 - len("-0123456789-.png") + len(".")
_LONG_VIDEO_NAME = (
    f"its name is over {LONGEST_VIDEO_NAME} bytes, too long for its frames' names "
    "(name-<frame>-ext.png) to be file names in an export; rename the file"
)


def _frame_name_problem(name: str) -> str | None:
    """Why the frames of the video file `name` cannot be named, or None."""
    return _LONG_VIDEO_NAME if len(os.fsencode(name)) > LONGEST_VIDEO_NAME else None


def folder_prune(keys: Collection[str]) -> Callable[[str], bool]:
    """A `LocalSource.list` prune that reads only the folders `keys` lie in and those above them:
    an export checks its samples' files without listing the rest of the source (exporting 2
    samples of a 1,000,000-file source listed every file, 14 s). The files of the folders read
    are listed as ever, so the keys' rows are the same. A folder whose name the listing escapes
    (not UTF-8, a line break) is read: its keys cannot be matched by name."""
    folders = {key[: i + 1] for key in keys for i, c in enumerate(key) if c == "/"}
    return lambda folder: folder not in folders and _printable(folder)[0] == folder


def _printable(key: str) -> tuple[str, str | None]:
    """The key as the pool records it, and why the file cannot be used as it is named, or None.

    A name that is not valid UTF-8 (os.walk gives its bytes as surrogate escapes) has those
    bytes written as backslash escapes; a line break is written as its escape (`\\n`), since
    `selected_filenames.txt`, Lightly's filename lists and `datapool ls` hold one name a line."""
    problem = None
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        key, problem = os.fsencode(key).decode("utf-8", "backslashreplace"), _NOT_UTF8
    if _LINE_BREAK.search(key) is None:
        return key, problem
    escaped = _LINE_BREAK.sub(lambda m: m.group().encode("unicode_escape").decode(), key)
    return escaped, problem or _HAS_BREAK
