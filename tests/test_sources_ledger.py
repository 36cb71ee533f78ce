from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapool.errors import PoolCorruptError, SourceError
from datapool.naming import media_kind
from datapool.pool.ledger import (
    LEDGER_COLUMNS,
    diff_listing,
    empty_ledger,
    read_ledger,
    write_ledger_text,
)
from datapool.sources import open_source
from datapool.sources.local import LocalSource


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.jpg", "image"),
        ("a.JPEG", "image"),
        ("x/y.png", "image"),
        ("b.bmp", "image"),
        ("c.webp", "image"),
        ("d.tif", "image"),
        ("v.mp4", "video"),
        ("v.MOV", "video"),
        ("v.avi", "video"),
        ("v.mkv", "video"),
        ("v.webm", "video"),
        ("n.txt", None),
        ("noext", None),
    ],
)
def test_media_kind(name, kind):
    assert media_kind(name) == kind


def test_local_listing_is_recursive_sorted_and_ignores_other_files(bucket):
    src = LocalSource(bucket)
    df = src.list()
    assert list(df.columns) == ["key", "size", "mtime_ns", "etag", "kind"]
    assert set(df["etag"]) == {""}
    keys = df["key"].tolist()
    assert keys == sorted(keys)
    assert "sub/deep.png" in keys and "cam/clip.mp4" in keys
    assert "README.txt" not in keys
    assert src.n_ignored == 1
    row = df.set_index("key").loc["img0.jpg"]
    st = os.stat(bucket / "img0.jpg")
    assert (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns)


def test_missing_source_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nope")
    with pytest.raises(SourceError, match="not supported"):
        open_source("ftp://host/prefix")


def _listing(rows):
    return pd.DataFrame(rows, columns=["key", "size", "mtime_ns", "kind"])


def _ledger(rows):
    rows = [(*r, *[""] * (len(LEDGER_COLUMNS) - len(r))) for r in rows]
    df = pd.DataFrame(rows, columns=LEDGER_COLUMNS)
    return df.astype(empty_ledger().dtypes.to_dict())


def test_diff_new_changed_unchanged_missing():
    ledger = _ledger(
        [
            ("a.jpg", 10, 100, 0, "ok", 1, 1),
            ("b.jpg", 10, 100, 0, "ok", 1, 0),
            ("c.jpg", 10, 100, 0, "ok", 1, 1),
            ("gone.jpg", 5, 5, 0, "ok", 1, 1),
        ]
    )
    listing = _listing(
        [
            ("a.jpg", 10, 100, "image"),  # unchanged
            ("b.jpg", 11, 100, "image"),  # size changed
            ("c.jpg", 10, 101, "image"),  # mtime changed
            ("d.mp4", 7, 7, "video"),  # new
        ]
    )
    d = diff_listing(listing, ledger)
    assert d.new["key"].tolist() == ["d.mp4"]
    assert sorted(d.changed["key"]) == ["b.jpg", "c.jpg"]
    assert d.unchanged["key"].tolist() == ["a.jpg"]
    assert d.missing["key"].tolist() == ["gone.jpg"]
    assert d.to_process["key"].tolist() == ["b.jpg", "c.jpg", "d.mp4"]


def test_diff_uses_the_etag_where_both_sides_have_one():
    ledger = _ledger(
        [
            ("same.jpg", 10, 100, 0, "ok", 1, 1, "e1"),
            ("rewritten.jpg", 10, 100, 0, "ok", 1, 1, "e1"),
            ("touched.jpg", 10, 100, 0, "ok", 1, 1, "e1"),
            ("local.jpg", 10, 100, 0, "ok", 1, 1, ""),
        ]
    )
    listing = pd.DataFrame(
        [
            ("local.jpg", 10, 100, "", "image"),  # no etag: mtime decides, unchanged
            ("rewritten.jpg", 10, 100, "e2", "image"),  # same size and second, new ETag
            ("same.jpg", 10, 100, "e1", "image"),
            ("touched.jpg", 10, 999, "e1", "image"),  # LastModified moved, content did not
        ],
        columns=["key", "size", "mtime_ns", "etag", "kind"],
    )
    d = diff_listing(listing, ledger)
    assert d.changed["key"].tolist() == ["rewritten.jpg"]
    assert sorted(d.unchanged["key"]) == ["local.jpg", "same.jpg", "touched.jpg"]
    assert "etag" in d.to_process.columns


def test_ledger_written_before_the_etag_column_still_loads(tmp_path):
    p = tmp_path / "ledger.csv"
    p.write_text("key,size,mtime_ns,run,status,n_samples,n_selected\na.jpg,10,5,0,ok,1,1\n")
    back = read_ledger(p)
    assert list(back.columns) == LEDGER_COLUMNS
    assert back["etag"].tolist() == [""]
    assert write_ledger_text(back).splitlines()[1] == "a.jpg,10,5,0,ok,1,1,,,"


def test_diff_against_empty_ledger_is_all_new():
    listing = _listing([("a.jpg", 1, 1, "image"), ("b.jpg", 1, 1, "image")])
    d = diff_listing(listing, empty_ledger())
    assert len(d.new) == 2 and len(d.changed) == 0 and len(d.unchanged) == 0


def test_ledger_round_trip_and_corruption(tmp_path):
    ledger = _ledger(
        [
            ("a b,c.jpg", 10, 1795520718179625931, 0, "ok", 1, 1, '3858f62230ac3c91"-2'),
            ("x.mp4", 9, 2, 1, "Invalid data found when processing input", 0, 0),
        ]
    )
    p = tmp_path / "ledger.csv"
    p.write_text(write_ledger_text(ledger))
    back = read_ledger(p)
    pd.testing.assert_frame_equal(back, ledger)
    p.write_text(write_ledger_text(ledger).replace(",9,2,1,", ",9,two,1,"))
    with pytest.raises(PoolCorruptError, match=r"ledger.csv: line 3: column 'mtime_ns'"):
        read_ledger(p)
    p.write_text("key,size\na,1\n")
    with pytest.raises(PoolCorruptError, match="line 1: ledger header"):
        read_ledger(p)


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            _text,
            st.integers(0, 2**62),
            st.integers(-(2**62), 2**62),
            st.integers(0, 99),
            _text,
            st.integers(0, 9),
            st.integers(0, 9),
            _text,
        ),
        max_size=8,
    )
)
def test_ledger_text_is_what_pandas_writes_and_reads_back(rows):
    """write_ledger_text writes what pandas' to_csv would (it once was that call) but for a
    quoted carriage return, and read_ledger reads it back: keys with commas, quotes, line
    breaks, formula characters."""
    rows = list({r[0]: r for r in rows}.values())  # one row per key, as in a ledger
    ledger = _ledger(rows)
    text = write_ledger_text(ledger)
    escaped = ledger.assign(
        key=[("'" + k if k[:1] and k[0] in "=+-@\t\r'" else k) for k in ledger["key"]]
    )
    if not any("\r" in v for r in rows for v in (r[0], r[4], r[7])):
        assert text == escaped.to_csv(index=False, lineterminator="\n")
    assert write_ledger_text(ledger, header=False) == text.split("\n", 1)[1]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ledger.csv"
        p.write_text(text, encoding="utf-8", newline="")
        back = read_ledger(p)
    pd.testing.assert_frame_equal(back, ledger)


def test_legacy_rows_are_the_bare_rows_of_the_keys() -> None:
    """legacy_rows looks for the keys among the bare rows (ok, no ETag, no content hash) only:
    the rows, in the ledger's order, are those of the keys that are bare, none where no row is."""
    import pandas as pd

    from datapool.pool.ledger import LEDGER_COLUMNS, legacy_rows

    def row(key, status="ok", etag="", digest=""):
        return [key, 1, 2, 0, status, 1, 0, etag, digest, ""]

    ledger = pd.DataFrame(
        [
            row("a"),
            row("b", digest="h"),
            row("c", etag="e"),
            row("d", status="no frames"),
            row("e"),
            row("f"),
        ],
        columns=LEDGER_COLUMNS,
    )
    got = legacy_rows(ledger, pd.Series(["f", "b", "c", "d", "a", "zz"]))
    assert got["key"].tolist() == ["a", "f"] and got.index.tolist() == [0, 1]
    assert list(got.columns) == LEDGER_COLUMNS
    none = legacy_rows(ledger.iloc[1:4], pd.Series(["b", "c", "d"]))
    assert len(none) == 0 and list(none.columns) == LEDGER_COLUMNS


def test_kept_names_are_the_flagged_names() -> None:
    import numpy as np

    from datapool.runner import _kept_names

    names = ["a.jpg", "b.jpg", "c-1-mp4.png"]
    assert _kept_names(names, np.ones(3, bool)) == set(names)
    assert _kept_names(names, np.array([True, False, True])) == {"a.jpg", "c-1-mp4.png"}
    assert _kept_names([], np.ones(0, bool)) == set()
