"""Which listed files a run may use: `--include`/`--exclude` globs, Lightly's
`relevant_filenames_file`, and the folders a run never ingests (its own pool and export folder,
and any folder an export wrote: `export_folders`).

The runner applies one ListingFilter to the listing of any source (a folder or a bucket), so
every source gets the same rules. Keys are POSIX paths relative to the source.

- A glob matches the whole key (`*` crosses folders: `cam/*.mp4`, `*/raw/*`); a glob without a
  `/` also matches the file's name alone (`*.png`, `IMG_*`), as in .gitignore.
- With `include` globs, a file must match one of them; a file that matches an `exclude` glob, or
  lies in a folder that one matches (`cam`, `cam/`, `*/tmp`, as in .gitignore), is left out.
- A relevant-filenames file holds one key per line (`./key`, as `find .` writes it, too), or a
  `prefix*`; `!key` or `!prefix*` leaves
  out what an earlier line took in (the last matching line wins, as in .gitignore); blank lines
  and lines starting with `#` are ignored, and spaces around a line are stripped; a line that is an
  absolute path (or URL) under the source is made relative to it. With such a file, only the
  files it takes in are used.
- Filters that leave out every listed file stop the run, naming the flag and value
  (`match_report`): a typo (`*.jgp`) must not read as "nothing new".
- A folder whose files the filter leaves out, all of them, is not read at all (`prunes`, given
  to Source.list): so `--exclude` leaves out a folder that cannot be read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from datapool.errors import ConfigError, SourceError
from datapool.specs import scheme_of, strip_userinfo

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ListingFilter:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    relevant: tuple[tuple[bool, str], ...] | None = None  # (taken in, key or `prefix*`) per line
    skip_prefixes: tuple[str, ...] = ()  # folders never listed: "pool/" for a pool in the source

    def keeps(self, key: str) -> bool:
        if key.startswith(self.skip_prefixes):
            return False
        folder, _, name = key.rpartition("/")
        if self.include and not any(_glob(key, name, g) for g in self.include):
            return False
        if any(_glob(key, name, g) for g in self.exclude):
            return False
        if folder and self.exclude and _folder_excluded(folder, self.exclude):
            return False
        return self.relevant is None or _relevant(key, self.relevant)

    def prunes(self, folder: str) -> bool:
        """Whether this filter leaves out every file under `folder` (a key prefix ending in
        "/"), so that a listing need not read it at all (and an unreadable folder can be left
        out). Never true of a folder that holds a file `keeps` would keep; it may be false of
        a folder whose files are all left out (an --include glob is only ruled out by its
        literal start)."""
        if folder.startswith(self.skip_prefixes):
            return True
        if any(
            _folder_glob(folder[:-1], g) or (g.endswith("*") and fnmatchcase(folder, g))
            for g in self.exclude
        ):
            return True
        if self.include and not any(_may_match_under(folder, g) for g in self.include):
            return True
        return self.relevant is not None and _relevant_prunes(folder, self.relevant)

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude or self.skip_prefixes) or self.relevant is not None

    def apply(self, listing: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """The listing's rows this filter keeps, and how many it left out."""
        if not self.active or len(listing) == 0:
            return listing, 0
        import numpy as np

        mask = np.fromiter(
            (self.keeps(k) for k in listing["key"].tolist()), dtype=bool, count=len(listing)
        )
        return listing.loc[mask].reset_index(drop=True), int((~mask).sum())


def _glob(key: str, name: str, pattern: str) -> bool:
    return fnmatchcase(key, pattern) or ("/" not in pattern and fnmatchcase(name, pattern))


def _folder_glob(folder: str, pattern: str) -> bool:
    """Whether an --exclude glob names the folder `folder` (a key prefix without its "/"): as it
    matches a file's path or name, and `cam/` as `cam` (a trailing "/" matches folders only)."""
    return _glob(folder, folder.rpartition("/")[2], pattern.removesuffix("/"))


@lru_cache(maxsize=1 << 16)
def _folder_excluded(folder: str, exclude: tuple[str, ...]) -> bool:
    """Whether an --exclude glob names `folder` or a folder above it (memoised: a listing has
    far fewer folders than files)."""
    parent = folder.rpartition("/")[0]
    if parent and _folder_excluded(parent, exclude):
        return True
    return any(_folder_glob(folder, g) for g in exclude)


def _may_match_under(folder: str, pattern: str) -> bool:
    """Whether an --include glob may match a file under `folder` ("a/b/"): a glob without "/"
    matches names at any depth; one with "/" matches whole keys, which start with its literal
    part (up to the first wildcard)."""
    if "/" not in pattern:
        return True
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return literal.startswith(folder) or folder.startswith(literal)


def _relevant_prunes(folder: str, rules: tuple[tuple[bool, str], ...]) -> bool:
    """Whether relevant-filenames `rules` take in no file under `folder` ("a/b/"): the last line
    that matches every file in it (`a/*`, `a/b*`) leaves them out, or none does and no line takes
    anything in, and no later line takes in some of them (`a/b/c.jpg`, `a/b/c*`)."""
    out = any(positive for positive, _ in rules)  # with lines taking files in, the rest are out
    for positive, rule in rules:
        if rule.endswith("*") and folder.startswith(rule[:-1]):
            out = not positive
        elif positive and rule.startswith(folder):
            out = False
    return out


def _relevant(key: str, rules: tuple[tuple[bool, str], ...]) -> bool:
    taken = not any(positive for positive, _ in rules)  # only negations: all but those
    for positive, rule in rules:
        hit = key.startswith(rule[:-1]) if rule.endswith("*") else key == rule
        if hit:
            taken = positive
    return taken


def read_relevant_filenames(
    path: str | os.PathLike[str], roots: Sequence[str] = ()
) -> tuple[tuple[bool, str], ...]:
    """The rules of a relevant-filenames file (Lightly's `relevant_filenames_file`): one per line
    that is neither blank nor a `#` comment, spaces around it stripped. A line that starts with
    one of `roots` (the source as an absolute path or URL: `/data/raw/cam/a.jpg`,
    `s3://bucket/raw/cam/a.jpg`) is made relative to it; other leading slashes are dropped, and
    so is a leading `./` (the lines `find .` writes in SOURCE)."""
    if scheme_of(path):  # it was read as a local path: 'No such file or directory'
        raise ConfigError(
            f"relevant_filenames_file {strip_userinfo(os.fspath(path))}: {scheme_of(path)}:// is "
            "not supported here, it is read from a local file; copy it here first (aws s3 cp)"
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(
            f"cannot read relevant_filenames_file {path}: {reason}{_in_source(path, roots)}"
        ) from None
    if text.startswith(("filenames,embedding_0", "\ufefffilenames,embedding_0")):
        raise ConfigError(
            f"relevant_filenames_file {path} is an embeddings CSV (filenames,embedding_0,...,"
            "labels: a pool's, or a Lightly datapool's), and a relevant-filenames file holds one "
            f"path a line: give its first column, `tail -n +2 {path} | cut -d, -f1`"
        )
    prefixes = tuple(root.rstrip("/") + "/" for root in roots if root)
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        positive = not line.startswith("!")
        rule = line[1:].strip() if not positive else line
        inside = next((p for p in prefixes if rule.startswith(p)), "")
        rule = rule[len(inside) :].lstrip("/")
        while rule.startswith("./"):  # `find . -name '*.jpg' > list.txt` in SOURCE
            rule = rule[2:].lstrip("/")
        rules.append((positive, rule))
    return tuple(rules)


def _in_source(path: str | os.PathLike[str], roots: Sequence[str]) -> str:
    """The hint for a relative relevant-filenames path that is not here: Lightly's
    `relevant_filenames_file` is a path inside the datasource (`.lightly/relevant_filenames.txt`),
    datapool's a local file, read from the working folder."""
    name = os.fspath(path)
    if os.path.isabs(name) or not roots or os.path.lexists(name):
        return ""
    root = roots[0].rstrip("/")
    if scheme_of(root):  # not looked for there: named where it is Lightly's own place for it
        if not name.startswith(".lightly/"):
            return ""
        return (
            f" (it is read from this machine, not from the source as Lightly's was: copy "
            f"{strip_userinfo(root)}/{name} here first)"
        )
    inside = os.path.join(root, name)
    if not os.path.isfile(inside):
        return ""
    return (
        f" (a path here is read from the working folder, not from the source as Lightly's "
        f"was: give {inside})"
    )


def match_report(
    f: ListingFilter, keys: Sequence[str], kept: int, unread: int, relevant_file: str | None
) -> tuple[str | None, list[str]]:
    """What to tell the user about the filters of `f`, given the `keys` listed (outside the pools
    and exports left out), how many of them `f` kept and how many folders it left unread: an
    error when they left out every file, naming the flags and values, and warnings for an
    --include glob, or relevant-filenames lines, that match no listed file."""
    if not keys and not unread:
        return None, []
    n = f"{len(keys)} listed media files" + (
        f" ({unread} folder{'s' * (unread != 1)} not read)" if unread else ""
    )
    empty = _empty_globs(f.include, keys) if not kept or len(f.include) > 1 else []
    lines = [] if f.relevant is None else _unmatched_lines(f.relevant, sorted(keys))
    rel = ""
    if f.relevant is not None and lines:
        first = ", ".join(_q(x) for x in lines[:3]) + (", ..." if len(lines) > 3 else "")
        rel = f"{len(lines)} of its {len(f.relevant)} lines match no file ({first})"
        rel += _sample_names(lines, set(keys))
    case = _case_misses(f, keys)
    if kept:
        warnings = [
            f"{_flags('--include', g)} matched none of the {n}{_folder(g, keys)}" for g in empty
        ]
        warnings += [f"{_flags('--include', *f.include)} {case}"] * bool(case)
        return None, warnings + [f"--relevant-filenames-file {relevant_file}: {rel}"] * bool(rel)
    if empty and len(empty) == len(f.include):
        folder = next((h for h in (_folder(g, keys) for g in empty) if h), "")
        hint = f"; it {case}" if case else folder or "; check the glob"
        return f"{_flags('--include', *empty)} matched none of the {n}{hint}", []
    if f.relevant is not None and not any(_relevant(k, f.relevant) for k in keys):
        example = f"; its lines are paths inside SOURCE, such as {_q(keys[0])}" if keys else ""
        return (
            f"--relevant-filenames-file {relevant_file} matched none of the {n}: "
            f"{rel or 'its lines leave out every file'}{example}"
        ), []
    given = _flags("--include", *f.include) + " " + _flags("--exclude", *f.exclude)
    if f.relevant is not None:
        given += f" --relevant-filenames-file {relevant_file}"
    return f"{given.strip()} left out all {n}: nothing to do", []


def _case_misses(f: ListingFilter, keys: Sequence[str]) -> str:
    """What the --include globs of `f` leave out of `keys` that they would take but for upper or
    lower case (`*.jpg` and a camera's `IMG_1.JPG`: the listing takes both as JPEG), as words
    for a warning; "" when nothing. Globs stay case-sensitive, as .gitignore's and S3 keys."""
    if not f.include:
        return ""
    globs = [g.lower() for g in f.include]
    others = replace(f, include=())
    missed = [
        k
        for k in keys
        if not f.keeps(k)
        and others.keeps(k)
        and any(_glob(k.lower(), k.rpartition("/")[2].lower(), g) for g in globs)
    ]
    if not missed:
        return ""
    first = ", ".join(_q(k) for k in missed[:3]) + (", ..." if len(missed) > 3 else "")
    n, it = len(missed), "it" if len(f.include) == 1 else "they"
    example = _in_their_case(f.include, missed[0])
    return (
        f"left out {n} file{'s' * (n != 1)} that {it} would take but for upper or lower case "
        f"({first}); globs are case-sensitive: add an --include for those names "
        + (f"(such as {_q(example)})" if example else "in their case")
    )


def _in_their_case(globs: Sequence[str], key: str) -> str | None:
    """A glob of `globs` with its extension in the case of `key`'s (`*.jpg` for `IMG_1.JPG`:
    `*.JPG`, and `*.JPG` for `a.jpg`: `*.jpg`); None when none ends in that extension."""
    ext = key.rpartition("/")[2].rpartition(".")[2]
    for g in globs:
        head, dot, tail = g.rpartition(".")
        if dot and tail.lower() == ext.lower() and tail != ext:
            return f"{head}.{ext}"
    return None


def _empty_globs(globs: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The globs that match none of `keys`."""
    names = [k.rpartition("/")[2] for k in keys]
    return [g for g in globs if not any(_glob(k, m, g) for k, m in zip(keys, names))]


def _folder(glob: str, keys: Sequence[str]) -> str:
    """'; 'cam' is a folder: --include 'cam/*' takes the files in it' where an --include glob
    without wildcards names a folder of listed files (an --exclude of a folder leaves out all
    in it, but an --include is a glob on each file's path, and `cam` matched none); "" else."""
    folder = glob.strip("/")
    if (
        not folder
        or any(c in folder for c in "*?[")
        or not any(k.startswith(folder + "/") for k in keys)
    ):
        return ""
    return f"; {_q(glob)} is a folder: --include {_q(folder + '/*')} takes the files in it"


def _flags(flag: str, *values: str) -> str:
    return " ".join(f"{flag} {_q(v)}" for v in values)


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _sample_names(lines: Sequence[str], keys: set[str]) -> str:
    """The hint for relevant-filenames lines that name a sample of a listed file rather than the
    file: a video frame (`cam/clip-007-mp4.png`) or an object crop (`a-jpg-crop-0.png`), as the
    filenames of a pool CSV (a Lightly datapool's too) name them."""
    from datapool.naming import crop_key_of, video_key_of

    for line in lines:
        key = crop_key_of(line) or line
        key = key if key in keys else video_key_of(key) or ""
        if key in keys and key != line:
            return (
                f"; {_q(line)} is a sample of {_q(key)}: a line names a file (a video's line "
                "takes all its frames)"
            )
    return ""


def _unmatched_lines(rules: tuple[tuple[bool, str], ...], keys: list[str]) -> list[str]:
    """The relevant-filenames lines (as `!rule` or `rule`) that match none of `keys` (sorted)."""
    import bisect

    found = []
    for positive, rule in rules:
        if rule.endswith("*"):
            i = bisect.bisect_left(keys, rule[:-1])
            hit = i < len(keys) and keys[i].startswith(rule[:-1])
        else:
            i = bisect.bisect_left(keys, rule)
            hit = i < len(keys) and keys[i] == rule
        if not hit:
            found.append(rule if positive else f"!{rule}")
    return found


def export_folders(
    keys: Sequence[str],
    ignored: Sequence[str],
    read: Callable[[str], bytes | None],
    list_name: str,
) -> list[str]:
    """The folders below the source's root that an export wrote (export.py), each as a key
    prefix ending in "/": a folder holding `list_name` (the export's `selected_filenames.txt`,
    among the `ignored` keys) that is empty or names at least one listed file (`keys`) of that
    folder. Exported samples are copies of a pool's, never raw data, whichever run or
    `datapool export` wrote them. A list that names no file of its own folder (a list of the
    source's files kept in a subfolder) is not an export's, nor is a list that cannot be read:
    that folder is listed. The source's root is never left out: a run may grow a
    pool from an export."""
    listed: set[str] | None = None
    found = []
    for key in ignored:
        folder, _, name = key.rpartition("/")
        if name != list_name or not folder:
            continue
        try:
            data = read(key)
        except SourceError:
            data = None
        if data is None:
            continue
        listed = set(keys) if listed is None else listed
        names = [n for n in data.decode("utf-8", "replace").splitlines() if n]
        if not names or any(f"{folder}/{n}" in listed for n in names):
            found.append(folder + "/")
    return sorted(found)


def prefix_inside(source: str, other: str, flag: str | None = None) -> str | None:
    """The key prefix of `other` (a pool or export folder, or an s3:// prefix) when it lies
    inside `source`, so that its files are never listed as source files; None when it does not.
    A pool that *is* the source folder is refused, naming `flag` (--pool, --export) if given."""
    if scheme_of(source) != scheme_of(other):
        return None
    if scheme_of(source) == "":
        root, inner = Path(source).resolve(), Path(other).resolve()
        if inner == root:
            raise ConfigError(_is_the_source(other, "folder", flag))
        if not inner.is_relative_to(root):
            return None
        return inner.relative_to(root).as_posix() + "/"
    src, oth = source.split("://", 1)[1], other.split("://", 1)[1]
    src = src.rstrip("/") + "/"
    oth = oth.rstrip("/") + "/"
    if oth == src:
        raise ConfigError(_is_the_source(other, "prefix", flag))
    return oth[len(src) :] if oth.startswith(src) else None


def _is_the_source(other: str, what: str, flag: str | None) -> str:
    if flag is None:
        return f"the pool or export {what} {other} is the source {what} itself"
    return (
        f"{flag} {other} is the source {what} itself: its files would be read as new media; "
        f"give {flag} another {what} (one inside the source is fine: it is never listed)"
    )
