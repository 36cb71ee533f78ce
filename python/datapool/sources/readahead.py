"""Reading a bucket's objects ahead of the decoder on a thread pool, in the order asked, within a
bound of objects and bytes held: what a source that fetches over a network hands open_inputs."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, cast

if TYPE_CHECKING:
    from datapool.errors import SourceError
    from datapool.sources import MediaInput


def read_ahead(
    keys: Sequence[str],
    open_one: Callable[[str], MediaInput | SourceError],
    size_of: Callable[[str], int],
    *,
    workers: int,
    max_in_flight: int,
    max_bytes_in_flight: int,
    thread_name: str,
) -> Iterator[tuple[str, MediaInput | SourceError]]:
    """Each key with `open_one(key)`, in the order of `keys`. Up to `workers` keys are opened at
    once, and at most `max_in_flight` (and `max_bytes_in_flight` bytes by `size_of`, except that
    one is always allowed) are held ahead of the consumer. An exception `open_one` raises is
    raised here, in order. What was opened but never handed out is closed."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix=thread_name)
    pending: deque[tuple[str, int, Future[MediaInput | SourceError]]] = deque()
    ahead = 0
    todo = iter(keys)
    nxt = next(todo, None)
    try:
        while pending or nxt is not None:
            while nxt is not None and (
                not pending
                or (len(pending) < max_in_flight and ahead + size_of(nxt) <= max_bytes_in_flight)
            ):
                size = size_of(nxt)
                pending.append((nxt, size, pool.submit(open_one, nxt)))
                ahead += size
                nxt = next(todo, None)
            key, size, fut = pending.popleft()
            ahead -= size
            yield key, fut.result()
    finally:
        for _, _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)
        for _, _, fut in pending:  # read ahead but never handed out: close them here
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                res = fut.result()
                close = getattr(res, "close", None)
                if close is not None and not isinstance(res, str):
                    close()


class SkipObject(Exception):
    """Raised by `spooled_read`'s `fill`: this object is skipped with the message, the run goes
    on (it changed or went after the listing, a body that failed its checksum ...)."""


def spooled_read(
    key: str, size: int, fill: Callable[[IO[bytes]], int], *, spool_memory: int
) -> MediaInput | SourceError:
    """One listed object read whole, for open_inputs: `fill(out)` writes its bytes into `out`
    (in memory for an image; for a video a temporary file, in memory up to `spool_memory` bytes,
    then on disk, which the decoder opens twice and seeks in) and returns their length. The
    file object rewound to its start; or the SourceError that skips the object, where `fill`
    raised SkipObject or the length is not the listed `size` (-1: not listed, not checked).
    Anything else `fill` raises stops the run. `out` is closed unless it is handed out."""
    import io
    import tempfile

    from datapool.errors import SourceError
    from datapool.naming import media_kind

    out: IO[bytes] = (
        io.BytesIO()
        if media_kind(key) != "video"
        else tempfile.SpooledTemporaryFile(max_size=spool_memory)
    )
    try:
        got = fill(out)
    except SkipObject as e:
        out.close()
        return SourceError(str(e))
    except BaseException:
        out.close()
        raise
    if size >= 0 and got != size:
        out.close()
        return SourceError(f"object is {got} bytes, but was listed with {size}")
    out.seek(0)
    return out


def hash_inputs(inputs: Iterator[tuple[str, MediaInput | SourceError]]) -> dict[str, str]:
    """blake2b-128 of each opened object's bytes, hex, by key, as sources/local.py hashes a file;
    one skipped with a SourceError is left out. What a bucket source's `content_hashes` gives for
    the objects a folder's ledger knew by content hash (--source-moved)."""
    import hashlib

    from datapool.errors import SourceError

    found: dict[str, str] = {}
    for key, media in inputs:
        if isinstance(media, SourceError):
            continue
        h = hashlib.blake2b(digest_size=16)
        f = cast("IO[bytes]", media)  # bucket sources open file objects, never paths
        with f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        found[key] = h.hexdigest()
    return found
