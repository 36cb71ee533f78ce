"""The ledger: every raw file a pool has processed, and the diff of a new listing against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PoolCorruptError

if TYPE_CHECKING:
    import pandas as pd

LEDGER_COLUMNS = ["key", "size", "mtime_ns", "run", "status", "n_samples", "n_selected"]
_DTYPES: dict[str, Any] = {
    "key": object,
    "size": "int64",
    "mtime_ns": "int64",
    "run": "int64",
    "status": object,
    "n_samples": "int64",
    "n_selected": "int64",
}
STATUS_OK = "ok"


def empty_ledger() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in _DTYPES.items()})


def read_ledger(path: Path) -> pd.DataFrame:
    """Read ledger.csv; a malformed file raises PoolCorruptError naming it."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype={"key": str, "status": str}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as e:
        raise PoolCorruptError(f"{path}: cannot parse the ledger: {e}") from None
    if list(df.columns) != LEDGER_COLUMNS:
        raise PoolCorruptError(
            f"{path}: line 1: ledger header must be {','.join(LEDGER_COLUMNS)}, "
            f"got {','.join(map(str, df.columns))}"
        )
    for col, dtype in _DTYPES.items():
        if dtype == "int64" and not pd.api.types.is_integer_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() | (df[col] == "")
            line = int(bad.to_numpy().argmax()) + 2
            raise PoolCorruptError(f"{path}: line {line}: column {col!r} must be an integer")
    df["key"] = [_unescape_key(k) for k in df["key"].tolist()]
    dup = df["key"].duplicated()
    if dup.any():
        line = int(dup.to_numpy().argmax()) + 2
        raise PoolCorruptError(f"{path}: line {line}: duplicate key {df['key'][line - 2]!r}")
    return df.astype(_DTYPES)


# CSV injection: ledger keys that a spreadsheet would run as a formula are written with a leading
# apostrophe (as are keys that start with one, so the escape reverses exactly). The ledger is
# datapool's own file, so unlike the pool CSV it can change how a name is spelt on disk.
_ESCAPE_FIRST = frozenset("=+-@\t\r'")


def _escape_key(key: str) -> str:
    return "'" + key if key[:1] in _ESCAPE_FIRST else key


def _unescape_key(key: str) -> str:
    return key[1:] if key.startswith("'") else key


def write_ledger_text(df: pd.DataFrame) -> str:
    out = df[LEDGER_COLUMNS]
    keys = out["key"].tolist()
    escaped = [_escape_key(k) for k in keys]
    if escaped != keys:
        out = out.assign(key=escaped)
    return str(out.to_csv(index=False, lineterminator="\n"))


@dataclass(frozen=True)
class LedgerDiff:
    """A listing compared with the ledger. Each frame has the listing's columns."""

    new: pd.DataFrame  # keys the ledger has never seen
    changed: pd.DataFrame  # keys whose size or mtime differ from the ledger's
    unchanged: pd.DataFrame  # keys processed before, with the same size and mtime
    missing: pd.DataFrame  # ledger rows whose key is no longer listed (kept as they are)

    @property
    def to_process(self) -> pd.DataFrame:
        import pandas as pd

        return pd.concat([self.new, self.changed], ignore_index=True).sort_values(
            "key", ignore_index=True
        )


def diff_listing(listing: pd.DataFrame, ledger: pd.DataFrame) -> LedgerDiff:
    """Split a listing into new, changed and unchanged files with one pandas merge on key."""
    cols = list(listing.columns)
    merged = listing.merge(
        ledger[["key", "size", "mtime_ns"]],
        on="key",
        how="outer",
        suffixes=("", "_ledger"),
        indicator=True,
    )
    listed = merged["_merge"] != "right_only"
    in_ledger = merged["_merge"] == "both"
    same = (merged["size"] == merged["size_ledger"]) & (
        merged["mtime_ns"] == merged["mtime_ns_ledger"]
    )

    def part(mask: pd.Series) -> pd.DataFrame:
        out = merged.loc[mask, cols].reset_index(drop=True)
        return out.astype({"size": "int64", "mtime_ns": "int64"})

    missing_keys = merged.loc[merged["_merge"] == "right_only", "key"]
    return LedgerDiff(
        new=part(listed & ~in_ledger),
        changed=part(in_ledger & ~same),
        unchanged=part(in_ledger & same),
        missing=ledger[ledger["key"].isin(missing_keys)].reset_index(drop=True),
    )
