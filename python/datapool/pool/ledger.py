"""The ledger: every raw file a pool has processed, and the diff of a new listing against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool.errors import PoolCorruptError
from datapool.pool.csvfile import FORMULA_CHARS, quote_fields

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

LEDGER_COLUMNS = ["key", "size", "mtime_ns", "run", "status", "n_samples", "n_selected", "etag"]
# Ledgers written before the etag column existed have these columns; they load with etag "".
_LEGACY_COLUMNS = LEDGER_COLUMNS[:-1]
_DTYPES: dict[str, Any] = {
    "key": object,
    "size": "int64",
    "mtime_ns": "int64",
    "run": "int64",
    "status": object,
    "n_samples": "int64",
    "n_selected": "int64",
    "etag": object,  # the S3 ETag without quotes; "" for local files
}


def empty_ledger() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in _DTYPES.items()})


def read_ledger(path: Path) -> pd.DataFrame:
    """Read ledger.csv; a malformed file raises PoolCorruptError naming it.

    The ledger is append-only between rewrites: each run appends one row per file it processed,
    and a later row for a key supersedes the earlier ones. The frame returned has one row per
    key (the latest); `df.attrs["rows_in_file"]` counts the rows on disk, so that a commit can
    tell when rewriting the file compactly is due.
    """
    import pandas as pd

    try:
        df = pd.read_csv(
            path, dtype={"key": object, "status": object, "etag": object}, keep_default_na=False
        )
    except (ValueError, pd.errors.ParserError) as e:
        raise PoolCorruptError(f"{path}: cannot parse the ledger: {e}") from None
    if list(df.columns) == _LEGACY_COLUMNS:
        df["etag"] = ""
    if list(df.columns) != LEDGER_COLUMNS:
        raise PoolCorruptError(
            f"{path}: line 1: ledger header must be {','.join(LEDGER_COLUMNS)}, "
            f"got {','.join(map(str, df.columns))}"
        )
    if len(df) == 0:  # a header alone: pandas cannot tell its integer columns' type
        empty = empty_ledger()
        empty.attrs["rows_in_file"] = 0
        return empty
    for col, dtype in _DTYPES.items():
        if dtype == "int64" and not pd.api.types.is_integer_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() | (df[col] == "")
            line = int(bad.to_numpy().argmax()) + 2
            raise PoolCorruptError(f"{path}: line {line}: column {col!r} must be an integer")
    keys = df["key"].tolist()
    if any(k.startswith("'") for k in keys):
        df["key"] = pd.Series([_unescape_key(k) for k in keys], index=df.index, dtype=object)
    rows_in_file = len(df)
    if df["key"].duplicated().any():
        df = df.drop_duplicates("key", keep="last").reset_index(drop=True)
    df = df.astype(_DTYPES)
    df.attrs["rows_in_file"] = rows_in_file
    return df


# CSV injection: ledger keys that a spreadsheet would run as a formula are written with a leading
# apostrophe (as are keys that start with one, so the escape reverses exactly). The ledger is
# datapool's own file, so unlike the pool CSV it can change how a name is spelt on disk.
_ESCAPE_FIRST = FORMULA_CHARS | {"'"}


def _escape_key(key: str) -> str:
    return "'" + key if key[:1] in _ESCAPE_FIRST else key


def _unescape_key(key: str) -> str:
    return key[1:] if key.startswith("'") else key


def write_ledger_text(df: pd.DataFrame, header: bool = True) -> str:
    """The ledger's CSV text: the header, then a row per file.

    As pandas' to_csv writes it (which it once was), except that a field holding a carriage
    return is quoted: to_csv and the csv module leave a lone \\r bare, and every CSV reader,
    pandas' included, then ends the row there. Built column by column, it is also faster than
    to_csv: 0.2 against 2.5 ms for the 100 rows a commit appends, 1.4 against 1.5 s for a
    million-row rewrite.
    """
    columns = []
    for name in LEDGER_COLUMNS:
        values = df[name].tolist()
        if name == "key":
            values = quote_fields([_escape_key(k) for k in values])
        elif name in ("status", "etag"):
            values = quote_fields(values)
        else:
            values = list(map(str, values))
        columns.append(values)
    body = "\n".join(map(",".join, zip(*columns)))
    return (",".join(LEDGER_COLUMNS) + "\n" if header else "") + body + ("\n" if body else "")


def can_append(path: Path, ledger: pd.DataFrame, n_new: int) -> bool:
    """Whether a commit may append `n_new` rows to the ledger file rather than rewrite it: the file
    has the current header and ends with a newline, and superseded rows stay under half of it."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
            f.seek(-1, 2)
            last = f.read(1)
    except OSError:
        return False
    on_disk = int(ledger.attrs.get("rows_in_file", len(ledger)))
    return (
        first.rstrip(b"\r\n") == ",".join(LEDGER_COLUMNS).encode()
        and last == b"\n"
        and on_disk + n_new <= 2 * (len(ledger) + n_new) + 1000
    )


@dataclass(frozen=True)
class LedgerDiff:
    """A listing compared with the ledger. Each frame has the listing's columns."""

    new: pd.DataFrame  # keys the ledger has never seen
    changed: pd.DataFrame  # keys whose size, or ETag (mtime where either has none), differ
    unchanged: pd.DataFrame  # keys processed before, with the same size and ETag (or mtime)
    missing: pd.DataFrame  # ledger rows whose key is no longer listed (kept as they are)

    @property
    def to_process(self) -> pd.DataFrame:
        import pandas as pd

        return pd.concat([self.new, self.changed], ignore_index=True).sort_values(
            "key", ignore_index=True
        )


def diff_listing(listing: pd.DataFrame, ledger: pd.DataFrame) -> LedgerDiff:
    """Split a listing into new, changed and unchanged files.

    A file is unchanged when its size is the same and, where both the listing and the ledger have
    an ETag (S3 objects), the ETag is the same; otherwise (local files) when its mtime is the same.
    A rewritten S3 object gets a new ETag even with the same size and within the same second.
    A listing without an etag column is treated as having none.

    One hash lookup of the listing's keys in an index of the ledger's keys (pandas
    `Index.get_indexer`), then vectorised compares: about seven times faster than an outer merge
    with an indicator on a million keys.
    """
    import numpy as np
    import pandas as pd

    if "etag" not in listing.columns:
        listing = listing.assign(etag="")
    pos = _key_index(ledger).get_indexer(pd.Index(listing["key"]))
    in_ledger = pos >= 0
    hit = pos[in_ledger]

    def pair(col: str) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        return listing[col].to_numpy()[in_ledger], ledger[col].to_numpy()[hit]

    size, size_ledger = pair("size")
    mtime, mtime_ledger = pair("mtime_ns")
    etag, etag_ledger = pair("etag")
    has_etags = (etag != "") & (etag_ledger != "")
    same_content = np.where(has_etags, etag == etag_ledger, mtime == mtime_ledger)
    same = np.zeros(len(listing), dtype=bool)
    same[in_ledger] = (size == size_ledger) & same_content
    seen = np.zeros(len(ledger), dtype=bool)
    seen[hit] = True

    ints = {c: "int64" for c in ("size", "mtime_ns") if listing[c].dtype != np.int64}
    if ints:  # astype with a dict costs 1.5 ms even when nothing changes: only when needed
        listing = listing.astype(ints)

    def part(mask: npt.NDArray[np.bool_]) -> pd.DataFrame:
        return listing.loc[mask].reset_index(drop=True)

    return LedgerDiff(
        new=part(~in_ledger),
        changed=part(in_ledger & ~same),
        unchanged=part(in_ledger & same),
        missing=ledger.loc[~seen].reset_index(drop=True),
    )


def _key_index(ledger: pd.DataFrame) -> pd.Index:
    import pandas as pd

    return pd.Index(ledger["key"])
