"""Files moved or renamed in the source since a run read them: the same bytes under a new key.

A file the ledger holds that is gone from the listing, and a new file of the same kind, size and
content (the blake2b of a local file's bytes, which the ledger records for every file a run
read; an S3 object's ETag; a local file's MD5 against a gone object's ETag that is the MD5 of
its bytes, a single-part upload's), are one file that moved. A multipart upload's ETag (`-N`
after it) names no bytes a file can be compared with: such an object moved into a folder is a
new file and a gone one. Its ledger row moves to the new key and its
samples keep their embeddings, run and place in the pool under new names: an image's name is its
key, and a video's frames `{stem}-{index}-{ext}.png` take the new stem and extension, keeping
their index as written. It is not decoded or embedded again, and export finds it where it now is.

Without this, a renamed folder was N new files (decoded and embedded, then not selected, being
at distance 0 from the pool) plus N files "no longer in the source", whose samples export
refused as gone.

In a pool merged from two sources, only the gone files of the run's source move (`movable`): a
copy here of the other source's file is new. A gone file whose ledger row holds no content hash
(written before the column) cannot be compared by bytes: `untold_pairs` gives the new files of
its kind and size for the runner to vouch for by their embeddings (it then gives the gone row
the new file's hash); the others are counted (`Moves.untold`) so that the run says so.

Only files read whole (status "ok") move. A move is not taken (the file stays new, the old key
missing) where a new name would be a name the pool or the listing already holds. Where several
gone files and several new files share one content, they pair in key order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from datapool.naming import (
    FRAME_NAME,
    STATUS_OK,
    crop_index,
    crop_key_of,
    crop_name,
    media_kind,
    source_keys,
)
from datapool.pool.ledger import Hasher, LedgerDiff, etag_is_md5, image_sample_keys

if TYPE_CHECKING:
    import pandas as pd

    from datapool.pool.contents import Pool


@dataclass(frozen=True)
class Moves:
    """The moves one run found: keys and sample names, old to new, and the moved files' ledger
    rows under their new keys (size, mtime and ETag as listed; run, status and counts kept)."""

    keys: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    ledger_rows: pd.DataFrame | None = None
    # New files of the kind and size of a gone file whose ledger row an older datapool wrote
    # without a content hash (before the content_hash column): whether they moved cannot be told.
    untold: int = 0

    def __len__(self) -> int:
        return len(self.keys)

    def apply(self, pool: Pool) -> Pool:
        """`pool` as it reads after the moves: samples renamed in place, ledger rows re-keyed."""
        if not self.keys:
            return pool
        import pandas as pd

        assert self.ledger_rows is not None
        names = [self.names.get(n, n) for n in pool.filenames]
        ledger = pool.ledger[~pool.ledger["key"].isin(set(self.keys))]
        ledger = pd.concat([ledger, self.ledger_rows], ignore_index=True)
        return replace(pool, filenames=names, ledger=ledger.sort_values("key", ignore_index=True))


def renamed_sample(name: str, old_key: str, new_key: str) -> str:
    """The name of sample `name` of the file `old_key` once the file is at `new_key`."""
    if name == old_key:
        return new_key
    parent = crop_key_of(name)
    if parent is not None:  # an object crop of the image or of a frame (crop selection)
        return crop_name(renamed_sample(parent, old_key, new_key), crop_index(name) or 0)
    m = FRAME_NAME.match(name)
    if m is None or f"{m.group(1)}.{m.group(3)}" != old_key:
        raise ValueError(f"{name!r} is not a sample of {old_key!r}")
    stem, _, ext = new_key.rpartition(".")
    return f"{stem}-{m.group(2)}-{ext}.png"


def find_moves(
    diff: LedgerDiff,
    pool: Pool,
    hashes: Hasher | None,
    listed_keys: set[str],
    md5s: Hasher | None = None,
    movable: set[str] | None = None,
) -> tuple[LedgerDiff, Moves]:
    """`diff` less the files that moved (out of `new` and `missing`), and the moves.

    New files are hashed (`hashes`, the source's content hashes) only where a gone file with a
    recorded hash has their size; those hashes are kept in the new rows, so a file that did not
    move is not read twice. `listed_keys`: every key of the listing, filters left aside, and the
    keys the filters leave out: a new name must not be one, and such a file has not moved.
    `md5s` (a local source's MD5s): a gone S3 object whose ETag is the MD5 of its bytes
    (ledger.etag_is_md5; not a multipart upload's) and a new local file of its size are one
    file when the file's MD5 is that ETag: a bucket moved into a folder. The moved file's
    content hash is then read too (`hashes`), for the runs after.
    `movable`: the gone files that may have moved to the run's source (a merged pool's: those
    of that source), None for all.
    """
    gone = diff.missing
    known = (gone["etag"] != "") | (gone["content_hash"] != "")
    # A file the run's filters leave out (--exclude, relevant filenames) is missing, not gone.
    listed = gone["key"].isin(listed_keys if len(gone) else ())  # (a set of 1M keys: 0.7 s)
    gone = gone.loc[(gone["status"] == STATUS_OK) & ~listed]
    if movable is not None:
        gone = gone.loc[gone["key"].isin(movable)]
    untold = _untold(gone.loc[~known], diff.new)
    gone = gone.loc[known]
    new = diff.new
    if len(gone) == 0 or len(new) == 0:
        return diff, Moves(untold=untold)
    new = _with_content_hashes(new, gone, hashes)
    md5 = _md5s_of(new, gone, md5s)
    pairs = _pairs(gone, new, md5)
    if not pairs:
        return replace(diff, new=new), Moves(untold=untold)
    sample_keys = source_keys(pool.filenames, image_sample_keys(pool.ledger))
    samples: dict[str, list[str]] = {}
    for name, key in zip(pool.filenames, sample_keys):
        samples.setdefault(key, []).append(name)
    keys: dict[str, str] = {}
    names: dict[str, str] = {}
    taken = set(pool.filenames) | listed_keys
    for old, new_key in pairs:
        renamed = {n: renamed_sample(n, old, new_key) for n in samples.get(old, [])}
        if any(n in taken and n != new_key for n in renamed.values()):
            continue  # a name the pool or the source already holds: not taken as a move
        taken.update(renamed.values())
        keys[old] = new_key
        names.update(renamed)
    if not keys:
        return replace(diff, new=new), Moves(untold=untold)
    listing = new.set_index("key")
    rows = gone.set_index("key").loc[list(keys)].reset_index()
    to = [keys[k] for k in rows["key"].tolist()]
    rows["key"] = to
    for col in ("size", "mtime_ns", "etag", "content_hash"):
        rows[col] = listing.loc[to, col].to_numpy()
    by_md5 = [k for k, h in zip(to, rows["content_hash"].tolist()) if k in md5 and not h]
    if by_md5 and hashes is not None:  # a bucket's file now in a folder: its hash from now on
        found = hashes(by_md5)
        rows["content_hash"] = [found.get(k, h) for k, h in zip(to, rows["content_hash"])]
    rows = rows.astype(gone.dtypes)
    left = replace(
        diff,
        new=new.loc[~new["key"].isin(set(to))].reset_index(drop=True),
        missing=diff.missing.loc[~diff.missing["key"].isin(set(keys))].reset_index(drop=True),
    )
    return left, Moves(keys, names, rows, untold)


def untold_pairs(
    diff: LedgerDiff, listed_keys: set[str], movable: set[str] | None, with_samples: set[str]
) -> list[tuple[str, str]]:
    """(gone key, new key): each gone file read whole, with samples, whose ledger row holds no
    content hash or ETag (an older datapool's), with a new file without an ETag of its kind
    and size, paired in key order; for the caller to vouch for by other means."""
    gone = diff.missing
    bare = (gone["etag"] == "") & (gone["content_hash"] == "") & (gone["status"] == STATUS_OK)
    gone = gone.loc[bare & ~gone["key"].isin(listed_keys) & gone["key"].isin(with_samples)]
    if movable is not None:
        gone = gone.loc[gone["key"].isin(movable)]
    new = diff.new.loc[diff.new["etag"] == ""]
    waiting: dict[tuple[str | None, int], list[str]] = {}
    for key, size in sorted(zip(gone["key"], gone["size"])):
        waiting.setdefault((media_kind(key), int(size)), []).append(key)
    out = []
    for key, size in sorted(zip(new["key"], new["size"])):
        olds = waiting.get((media_kind(key), int(size)))
        if olds:
            out.append((olds.pop(0), key))
    return out


def _untold(gone: pd.DataFrame, new: pd.DataFrame) -> int:
    """How many of the `new` files have the kind and size of one of the `gone` files, whose
    ledger rows hold no content hash or ETag."""
    if len(gone) == 0 or len(new) == 0:
        return 0
    sizes = {(media_kind(k), int(s)) for k, s in zip(gone["key"], gone["size"])}
    return sum((media_kind(k), int(s)) in sizes for k, s in zip(new["key"], new["size"]))


def _with_content_hashes(
    new: pd.DataFrame, gone: pd.DataFrame, hashes: Hasher | None
) -> pd.DataFrame:
    """The new rows, with the content hash of those without an ETag whose size a gone file with
    a recorded hash has."""
    if hashes is None:
        return new
    sizes = set(gone.loc[gone["content_hash"] != "", "size"].tolist())
    need = (new["etag"] == "") & (new["content_hash"] == "") & new["size"].isin(sizes)
    if not need.any():
        return new
    found = hashes(new.loc[need, "key"].tolist())
    new = new.copy()
    new.loc[need, "content_hash"] = [found.get(k, "") for k in new.loc[need, "key"]]
    return new


def _md5s_of(new: pd.DataFrame, gone: pd.DataFrame, md5s: Hasher | None) -> dict[str, str]:
    """key -> MD5 of the new files without an ETag whose size a gone file with an MD5 ETag
    (etag_is_md5) has; {} without `md5s` (a source that is not a folder)."""
    if md5s is None:
        return {}
    is_md5 = gone["etag"].map(etag_is_md5).astype(bool)
    sizes = set(gone.loc[is_md5, "size"].tolist())
    need = (new["etag"] == "") & new["size"].isin(sizes)
    return md5s(new.loc[need, "key"].tolist()) if need.any() else {}


def _pairs(
    gone: pd.DataFrame, new: pd.DataFrame, md5: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """(gone key, new key) of each move: same kind, size and content, paired in key order. A
    new file's content is its ETag, else its content hash, else (`md5`) its MD5 as an ETag."""
    md5 = md5 or {}

    def ident(row_etag: str, row_hash: str) -> str:
        return f"etag:{row_etag}" if row_etag else (f"hash:{row_hash}" if row_hash else "")

    waiting: dict[tuple[str | None, int, str], list[str]] = {}
    for key, size, etag, digest in sorted(
        zip(gone["key"], gone["size"], gone["etag"], gone["content_hash"])
    ):
        waiting.setdefault((media_kind(key), int(size), ident(etag, digest)), []).append(key)
    out = []
    for key, size, etag, digest in sorted(
        zip(new["key"], new["size"], new["etag"], new["content_hash"])
    ):
        for content in (ident(etag, digest), f"etag:{md5[key]}" if key in md5 else ""):
            olds = waiting.get((media_kind(key), int(size), content)) if content else None
            if olds:
                out.append((olds.pop(0), key))
                break
    return out
