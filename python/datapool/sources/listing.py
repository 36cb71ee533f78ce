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

    columns = list(zip(*rows)) if rows else [()] * len(LISTING_COLUMNS)
    return pd.DataFrame(
        {
            name: np.array(values, dtype=np.int64)
            if name in ("size", "mtime_ns")
            else pd.Series(values, dtype=object)
            for name, values in zip(LISTING_COLUMNS, columns)
        }
    )
