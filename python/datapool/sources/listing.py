"""A source's listing: one row per media file, as a DataFrame with fixed columns and dtypes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LISTING_COLUMNS = ["key", "size", "mtime_ns", "etag", "kind"]


def listing_frame(rows: list[tuple[str, int, int, str, str]]) -> pd.DataFrame:
    """A listing as a DataFrame with LISTING_COLUMNS: key, etag and kind as Python strings
    (object columns), size and mtime_ns int64.

    Built column by column with those dtypes: from the rows, pandas 3 infers its string dtype
    for the text and would have to be told to convert it back (1.4 against 0.4 ms for 1100 files).
    """
    import numpy as np
    import pandas as pd

    # A column at a time: `zip(*rows)` passes each row as an argument (0.13 s of 0.16 for
    # 200,000 rows).
    return pd.DataFrame(
        {
            name: np.fromiter((row[i] for row in rows), np.int64, len(rows))
            if name in ("size", "mtime_ns")
            else pd.Series([row[i] for row in rows], dtype=object)
            for i, name in enumerate(LISTING_COLUMNS)
        }
    )
