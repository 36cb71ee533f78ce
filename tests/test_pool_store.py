from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from datapool.errors import PoolCorruptError, PoolLockedError
from datapool.pool import csvfile as pool_csv
from datapool.pool import journal as _journal
from datapool.pool.lock import PoolLock

from ._robust import lock_holder
from .pool_csv_reference import lightly_load_embeddings


def test_csv_round_trip_exact_and_readable_by_pandas_and_lightly(tmp_path, rng):
    names = ["a.jpg", "cam/clip-007-mp4.png", 'we"ird, name.png', "new\nline.jpg"]
    emb = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 0, 1, 2], np.int64)
    p = tmp_path / "datapool_latest.csv"
    p.write_text(pool_csv.format_csv(names, emb, labels), newline="")

    got_names, got_emb, got_labels = pool_csv.read_csv(p)
    assert got_names == names
    np.testing.assert_array_equal(got_emb, emb)  # 9 significant digits round-trip float32
    np.testing.assert_array_equal(got_labels, labels)

    df = pd.read_csv(p)
    assert list(df.columns) == pool_csv.header(5)
    assert df["filenames"].tolist() == names
    np.testing.assert_array_equal(df.iloc[:, 1:-1].to_numpy(np.float32), emb)

    # Lightly's reader (it refuses commas in names; use the comma-free rows).
    p2 = tmp_path / "plain.csv"
    p2.write_text(pool_csv.format_csv(names[:2], emb[:2], labels[:2]), newline="")
    l_emb, l_labels, l_names = lightly_load_embeddings(p2)
    assert l_names == names[:2] and l_labels == [0, 0]
    np.testing.assert_array_equal(l_emb, emb[:2])


def _write(tmp_path, text):
    p = tmp_path / "datapool_latest.csv"
    p.write_bytes(text.encode())
    return p


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "line 1: the file is empty"),
        ("name,embedding_0,labels\na,1,0\n", "line 1: header must be"),
        (
            "filenames,embedding_0,embedding_1,labels\na,1,2,0\nb,1,0\n",
            "line 3: expected 4 columns, got 3",
        ),
        (
            "filenames,embedding_0,embedding_1,labels\na,1,2,0\nb,1,x2,0\n",
            "line 3, column embedding_1: 'x2'",
        ),
        ("filenames,embedding_0,embedding_1,labels\na,1,nan,0\n", "line 2, column embedding_1"),
        (
            "filenames,embedding_0,embedding_1,labels\na,1,2,0\na,3,4,0\n",
            "line 3, column filenames: duplicate",
        ),
        ("filenames,embedding_0,embedding_1,labels\na,1,2,zero\n", "line 2, column labels"),
        (
            'filenames,embedding_0,embedding_1,labels\n"a\nb",1,2,0\nc,1,2,0,9\n',
            "line 4: expected 4 columns",
        ),
    ],
)
def test_malformed_csv_names_file_line_and_column(tmp_path, text, match):
    p = _write(tmp_path, text)
    with pytest.raises(PoolCorruptError, match=match) as info:
        pool_csv.read_csv(p)
    assert str(p) in str(info.value)


def test_csv_dimension_must_match_model(tmp_path):
    p = _write(tmp_path, "filenames,embedding_0,embedding_1,labels\na,1,2,0\n")
    with pytest.raises(PoolCorruptError, match="2 embedding columns, but the pool's model gives 3"):
        pool_csv.read_csv(p, dim=3)


def test_journal_rolls_back_uncommitted_and_forward_committed(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    # Staged but no journal written: the commit never happened -> roll back.
    t = _journal.Transaction(tmp_path)
    t.stage("a.txt", b"new a")
    t.stage("runs/3/b.txt", b"new")
    assert _journal.needs_recovery(tmp_path)
    assert _journal.recover(tmp_path) == "rolled back"
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert not list(tmp_path.rglob("*.pending"))
    # Journal written, one file renamed, the other not yet: replay finishes it.
    t = _journal.Transaction(tmp_path)
    t.stage("a.txt", b"new a")
    t.stage("b.txt", b"new b")
    (tmp_path / _journal.JOURNAL_NAME).write_text(json.dumps({"files": t.files}))
    (tmp_path / "a.txt.pending").replace(tmp_path / "a.txt")
    assert _journal.recover(tmp_path) == "rolled forward"
    assert (tmp_path / "a.txt").read_text() == "new a"
    assert (tmp_path / "b.txt").read_text() == "new b"
    assert not _journal.needs_recovery(tmp_path)
    assert _journal.recover(tmp_path) is None


def test_second_process_fails_fast_on_a_locked_pool(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from datapool.pool.lock import PoolLock
            with PoolLock({str(tmp_path)!r}):
                print("locked", flush=True)
                sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(PoolLockedError, match=rf"pool {tmp_path} is locked .*pid {holder.pid}"):
            PoolLock(tmp_path).acquire()
        assert time.monotonic() - t0 < 5  # fails at once rather than waiting (generous bound)
    finally:
        holder.communicate("\n", timeout=10)
    # Once the holder is gone, the lock is free again.
    with PoolLock(tmp_path):
        pass


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    holder = lock_holder(tmp_path)
    with pytest.raises(PoolLockedError):
        PoolLock(tmp_path).acquire()
    holder.kill()
    holder.wait(timeout=10)
    holder.stdout.close()
    with PoolLock(tmp_path):
        pass


def test_journaled_append_is_idempotent_and_rolls_back(tmp_path):
    p = tmp_path / "pool.csv"
    p.write_bytes(b"header\nrow1\n")
    # Staged, never committed: the file is untouched and the staged bytes are removed.
    t = _journal.Transaction(tmp_path)
    t.stage_append("pool.csv", b"row2\n")
    assert _journal.recover(tmp_path) == "rolled back"
    assert p.read_bytes() == b"header\nrow1\n"
    # Committed up to the journal, then "crashed" after a partial append: replay truncates to the
    # recorded length and appends again, so the row appears exactly once.
    t = _journal.Transaction(tmp_path)
    t.stage_append("pool.csv", b"row2\n")
    t.stage("other.txt", b"x")
    (tmp_path / _journal.JOURNAL_NAME).write_text(
        json.dumps({"files": t.files, "appends": t.appends})
    )
    with open(p, "ab") as f:
        f.write(b"ro")  # a torn write
    assert _journal.recover(tmp_path) == "rolled forward"
    assert p.read_bytes() == b"header\nrow1\nrow2\n"
    assert (tmp_path / "other.txt").read_bytes() == b"x"
    assert not _journal.needs_recovery(tmp_path)


def test_a_commit_that_appends_does_not_stack_the_pool(tmp_path, rng):
    # A run that adds 10 samples to a 200,000 x 510 pool copied the whole 408 MB matrix (6 s)
    # to build rows the folder store then did not write: it appends the new rows alone.
    import tracemalloc

    from datapool.pool.contents import Pool
    from datapool.pool.ledger import empty_ledger
    from datapool.pool.store import PoolUpdate, rows_after

    n, d = 100_000, 64
    pool = Pool(
        tmp_path,
        [f"{i}.jpg" for i in range(n)],
        rng.standard_normal((n, d), dtype=np.float32),
        np.zeros(n, np.int64),
        [{"index": 0}],
        empty_ledger(),
        None,
    )
    new = rng.standard_normal((10, d), dtype=np.float32)
    update = PoolUpdate(
        run={"index": 1},
        model=None,  # type: ignore[arg-type]
        new_names=[f"new{i}.jpg" for i in range(10)],
        new_embeddings=new,
        new_labels=np.ones(10, np.int64),
        keep=np.ones(n, bool),
        ledger_rows=empty_ledger(),
        report={},
        view=b"",
    )
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        rows = rows_after(pool, update)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert rows.appended and len(rows.names) == n + 10
    assert peak < pool.embeddings.nbytes / 2, (peak, pool.embeddings.nbytes)
    # A store that rewrites the pool still gets the whole matrix.
    np.testing.assert_array_equal(rows.embeddings, np.concatenate([pool.embeddings, new]))
    np.testing.assert_array_equal(rows.labels[-10:], np.ones(10, np.int64))


def test_a_commit_stages_the_pool_csv_a_block_at_a_time(tmp_path, rng, monkeypatch):
    # A commit of 21,000 x 510 rows held the CSV's 139 MB text and then its bytes (the run's
    # RSS went from 420 to 880 MiB in the commit): it stages blocks of rows, and the file is
    # format_csv's text. (Blocks of 256 rows here: a real block is about 3 MB of text.)
    import tracemalloc

    from datapool.pool import csvfile
    from datapool.pool.layout import CSV_NAME

    monkeypatch.setattr(csvfile, "_VALUES_PER_BLOCK", 256 * 128)

    n, d = 4000, 128
    emb = rng.standard_normal((n, d), dtype=np.float32)
    names = [f"cam,{i % 3}/ünï {i}.jpg" for i in range(n)]
    labels = np.arange(n, dtype=np.int64) // 700
    text = csvfile.format_csv(names, emb, labels).encode()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with _journal.Transaction(tmp_path) as txn:
            txn.stage(CSV_NAME, csvfile.csv_bytes(names, emb, labels))
            txn.commit()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert (tmp_path / CSV_NAME).read_bytes() == text
    assert peak < len(text) / 2, (peak, len(text))  # (before: twice the text and more)
