"""How sources and pools are named: a spec is a folder path or a URL such as s3://bucket/prefix."""

from __future__ import annotations

import os


def scheme_of(spec: str | os.PathLike[str]) -> str:
    """The scheme of a source or pool spec, lower case: "" for a local path, "s3" for s3://..."""
    text = os.fspath(spec)
    return text.split("://", 1)[0].lower() if "://" in text else ""


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
