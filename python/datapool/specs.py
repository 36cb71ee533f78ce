"""How sources and pools are named: a spec is a folder path or a URL such as s3://bucket/prefix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def scheme_of(spec: str | os.PathLike[str]) -> str:
    """The scheme of a source or pool spec, lower case: "" for a local path, "s3" for s3://..."""
    text = os.fspath(spec)
    return text.split("://", 1)[0].lower() if "://" in text else ""


def path_arg(what: str, value: Any) -> str | os.PathLike[str]:
    """A path argument of the Python API (`run`'s source and pool, `Pool.open`, `merge`, `gc`):
    a str or path-like, else a ConfigError naming it, not os.fspath's TypeError from inside (a
    variable left None) nor bytes, which fail deeper."""
    if isinstance(value, str) or (
        isinstance(value, os.PathLike) and isinstance(os.fspath(value), str)
    ):
        return value
    from datapool.errors import ConfigError

    raise ConfigError(
        f"{what} must be a folder path (a str or pathlib.Path) or an s3:// URL, got {value!r}"
    )


def strip_userinfo(url: str) -> str:
    """`scheme://user:secret@host/path` -> `scheme://host/path`; anything else unchanged."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def folder_prefix(prefix: str, what: str) -> str:
    """A bucket URL's prefix as a folder: no leading '/', one trailing '/' unless empty. A NUL
    character raises the SourceError that names `what` ("an S3 prefix", "a GCS prefix")."""
    if "\x00" in prefix:
        from datapool.errors import SourceError

        raise SourceError(f"{what} cannot contain a NUL character")
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def normal_local_path(path: str | os.PathLike[str]) -> Path:
    """A local folder as datapool records it: absolute, with `.` and `..` taken out, so that
    `../demo/bucket` and `/abs/demo/bucket` are one source. Symbolic links stay as named (a
    source reached through a link is recorded by the link's path). Only where a `..` follows a
    link, and so the path without it would name another folder, is the path resolved."""
    named = Path(path).absolute()
    lexical = Path(os.path.normpath(named))
    if ".." in named.parts and named.exists():
        try:
            same = os.path.samefile(named, lexical)
        except OSError:  # the lexical one does not exist
            same = False
        if not same:
            return named.resolve()
    return lexical


def normal_spec(spec: str) -> str:
    """A source spec as two runs' specs are compared: an absolute local path normalised
    (`normal_local_path`; pools recorded `..` in paths before it), anything else as it is."""
    if scheme_of(spec) or not os.path.isabs(spec):
        return spec
    return str(normal_local_path(spec))


SHORTENED_OVER = 200  # a word of a message longer than this is shortened (shorten_words)


def shorten(text: str, keep: int = 60) -> str:
    """`text` with its middle left out where it is long: its first and last `keep` characters
    and how many were left out between them. A path past PATH_MAX is 4 KB and more; its head
    says where it starts and its tail which file it names."""
    if len(text) <= 2 * keep + 40:
        return text
    return f"{text[:keep]}...({len(text) - 2 * keep:,} characters left out)...{text[-keep:]}"


def shorten_words(message: str) -> str:
    """A message with each word (a run of non-space characters, such as a path) longer than
    SHORTENED_OVER characters shortened (`shorten`): one line, not a screenful."""
    import re

    return re.sub(rf"\S{{{SHORTENED_OVER + 1},}}", lambda m: shorten(m[0]), message)
