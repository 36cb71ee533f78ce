"""The binary sidecar: open through np.memmap, O(new) catch-up after appends, torn appends cut,
and never trusted when it does not match its manifest or the CSV."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from datapool.errors import PoolCorruptError
from datapool.pool import csvfile as pool_csv
from datapool.pool import sidecar


def _pool(rng, n, d, start=0):
    names = [f"img_{i:06d}.jpg" for i in range(start, start + n)]
    if n and start == 0:
        names[0] = 'odd, "name"\nwith a line end'
    emb = rng.normal(size=(n, d)).astype(np.float32)
    labels = rng.integers(0, 5, n).astype(np.int64)
    return names, emb, labels


def _same(got, names, emb, labels):
    g_names, g_emb, g_labels = got
    assert g_names == names
    assert g_emb.dtype == np.float32 and g_emb.shape == emb.shape
    np.testing.assert_array_equal(g_emb.view(np.uint32), emb.view(np.uint32))
    np.testing.assert_array_equal(g_labels, labels)


@pytest.fixture
def csv_file(tmp_path, rng):
    names, emb, labels = _pool(rng, 300, 8)
    p = tmp_path / "datapool_latest.csv"
    p.write_text(pool_csv.format_csv(names, emb, labels), newline="")
    return p, names, emb, labels


def _append(p, rng, n, start):
    names, emb, labels = _pool(rng, n, 8, start)
    with open(p, "a", newline="") as f:
        f.write(pool_csv.format_csv(names, emb, labels, with_header=False))
    return names, emb, labels


def test_first_open_builds_then_maps_without_parsing(csv_file, monkeypatch):
    p, names, emb, labels = csv_file
    _same(sidecar.load(p, dim=8), names, emb, labels)
    assert (p.parent / ".sidecar" / "manifest.json").exists()

    def no_parse(*a, **k):
        raise AssertionError("parsed the CSV")

    monkeypatch.setattr(pool_csv, "read_csv", no_parse)
    got = sidecar.load(p, dim=8)
    assert isinstance(got[1], np.memmap) and not got[1].flags.writeable
    _same(got, names, emb, labels)
    _same(sidecar.load(p, dim=8, verify=True), names, emb, labels)


def test_append_is_caught_up_from_the_new_rows_only(csv_file, rng, monkeypatch):
    p, names, emb, labels = csv_file
    sidecar.load(p, dim=8)
    n2, e2, l2 = _append(p, rng, 50, 1000)
    monkeypatch.setattr(pool_csv, "read_csv", lambda *a, **k: pytest.fail("full parse"))
    got = sidecar.load(p, dim=8)
    _same(got, names + n2, np.concatenate([emb, e2]), np.concatenate([labels, l2]))
    m = json.loads((p.parent / ".sidecar" / "manifest.json").read_text())
    assert m["rows"] == 350 and m["csv"]["bytes"] == p.stat().st_size
    monkeypatch.undo()
    _same(
        sidecar.load(p, dim=8, verify=True),
        names + n2,
        np.concatenate([emb, e2]),
        np.concatenate([labels, l2]),
    )


def test_a_big_append_is_caught_up_without_copies_of_its_text(tmp_path, rng):
    """The catch-up parses the appended rows in the file: a commit that appended 1,000,000 x 510
    rows (7 GB of text) held the text three times over in the catch-up (read, prefixed with the
    header, copied by the parser: 22 GB) and was killed for memory. Python's allocations while
    catching up 4000 rows of 128 values (about 6 MB of text) stay well under the text's size."""
    import tracemalloc

    p = tmp_path / "datapool_latest.csv"
    names, emb, labels = _pool(rng, 100, 128)
    p.write_text(pool_csv.format_csv(names, emb, labels), newline="")
    sidecar.load(p, dim=128)
    n2, e2, l2 = _pool(rng, 4000, 128, start=1000)
    with open(p, "ab") as f:
        text = f.write(pool_csv.format_csv(n2, e2, l2, with_header=False).encode())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        got = sidecar.load(p, dim=128)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    _same(got, names + n2, np.concatenate([emb, e2]), np.concatenate([labels, l2]))
    assert peak < text / 2, (peak, text)  # (before: 3 times the text)
    m = json.loads((p.parent / ".sidecar" / "manifest.json").read_text())
    assert m["rows"] == 4100 and m["csv"]["bytes"] == p.stat().st_size
    _same(
        sidecar.load(p, dim=128, verify=True),
        names + n2,
        np.concatenate([emb, e2]),
        np.concatenate([labels, l2]),
    )


def test_partial_last_line_is_left_for_later(csv_file, rng):
    p, names, emb, labels = csv_file
    sidecar.load(p, dim=8)
    n2, e2, l2 = _append(p, rng, 3, 1000)
    full = p.read_bytes()
    p.write_bytes(full[:-10])  # the last row is still being written
    _same(
        sidecar.load(p, dim=8),
        names + n2[:2],
        np.concatenate([emb, e2[:2]]),
        np.concatenate([labels, l2[:2]]),
    )
    p.write_bytes(full)
    _same(
        sidecar.load(p, dim=8), names + n2, np.concatenate([emb, e2]), np.concatenate([labels, l2])
    )


def test_torn_sidecar_append_at_random_offsets_recovers(csv_file, rng):
    p, names, emb, labels = csv_file
    side = p.parent / ".sidecar"
    sidecar.load(p, dim=8)
    before = {f: (side / f).read_bytes() for f in os.listdir(side) if f != "lock"}
    n2, e2, l2 = _append(p, rng, 40, 1000)
    sidecar.load(p, dim=8)
    after = {f: (side / f).read_bytes() for f in before}
    expect = (names + n2, np.concatenate([emb, e2]), np.concatenate([labels, l2]))
    for _ in range(25):
        # A crash after some sidecar bytes were appended but before the manifest was replaced:
        # the old manifest, each file cut at a random offset past its committed length.
        for f, old in before.items():
            if f == "manifest.json":
                (side / f).write_bytes(old)
                continue
            cut = int(rng.integers(len(old), len(after[f]) + 1))
            (side / f).write_bytes(after[f][:cut] + bytes(rng.integers(0, 256, 3, np.uint8)))
            # ...plus garbage a torn write may leave
        _same(sidecar.load(p, dim=8), *expect)
        _same(sidecar.load(p, dim=8, verify=True), *expect)


def test_mismatching_sidecar_is_never_trusted(csv_file, rng):
    p, names, emb, labels = csv_file
    side = p.parent / ".sidecar"
    sidecar.load(p, dim=8)
    good = {f: (side / f).read_bytes() for f in os.listdir(side) if f != "lock"}

    def restore():
        for f, b in good.items():
            (side / f).write_bytes(b)

    # A flipped byte at the end of a sidecar file: the tail CRC catches it.
    for f in ("embeddings.f32", "labels.i64", "names.bin"):
        restore()
        b = bytearray(good[f])
        b[-1] ^= 0xFF
        (side / f).write_bytes(bytes(b))
        _same(sidecar.load(p, dim=8), names, emb, labels)
    # In the middle of the embeddings: only verify=True reads that far.
    restore()
    b = bytearray(good["embeddings.f32"])
    b[len(b) // 2] ^= 0xFF
    (side / "embeddings.f32").write_bytes(bytes(b))
    _same(sidecar.load(p, dim=8, verify=True), names, emb, labels)
    # A short file, a missing file, an edited manifest, a manifest of another dimension.
    restore()
    (side / "labels.i64").write_bytes(good["labels.i64"][:-8])
    _same(sidecar.load(p, dim=8), names, emb, labels)
    restore()
    (side / "names.bin").unlink()
    _same(sidecar.load(p, dim=8), names, emb, labels)
    restore()
    (side / "manifest.json").write_text(
        good["manifest.json"].decode().replace('"rows": 300', '"rows": 299')
    )
    _same(sidecar.load(p, dim=8), names, emb, labels)
    restore()
    with pytest.raises(PoolCorruptError, match="8 embedding columns, but the pool's model gives 9"):
        sidecar.load(p, dim=9)


def test_rewritten_csv_rebuilds_the_sidecar(csv_file, rng):
    p, *_ = csv_file
    sidecar.load(p, dim=8)
    # --process-all style: a new file renamed over the old one (same size even).
    names, emb, labels = _pool(rng, 300, 8)
    tmp = p.with_suffix(".new")
    tmp.write_text(pool_csv.format_csv(names, emb, labels), newline="")
    os.replace(tmp, p)
    _same(sidecar.load(p, dim=8), names, emb, labels)
    # Edited in place, keeping the inode: the head/tail CRCs notice an edit at either end.
    text = p.read_bytes()
    with open(p, "r+b") as f:
        f.write(text.replace(b"img_000299", b"img_000999"))
    names[-1] = "img_000999.jpg"
    _same(sidecar.load(p, dim=8), names, emb, labels)


def test_errors_in_appended_rows_name_the_file_line(csv_file):
    p, *_ = csv_file
    sidecar.load(p, dim=8)
    with open(p, "a") as f:
        f.write("img_000001.jpg" + ",1" * 8 + ",0\n")  # a duplicate of row 2
    # (row 0's name holds a line end, so row 1 is on line 4)
    with pytest.raises(
        PoolCorruptError, match=r"line 303, column filenames: duplicate .*first on line 4"
    ):
        sidecar.load(p, dim=8)
    good = p.read_bytes()[: -len("img_000001.jpg" + ",1" * 8 + ",0\n")]
    p.write_bytes(good + b"x" + b",1" * 7 + b",0\n")
    with pytest.raises(PoolCorruptError, match=r"line 303: expected 10 columns, got 9"):
        sidecar.load(p, dim=8)


def test_empty_pool_and_missing_csv(tmp_path):
    p = tmp_path / "datapool_latest.csv"
    with pytest.raises(PoolCorruptError, match="missing"):
        sidecar.load(p)
    p.write_text(",".join(pool_csv.header(4)) + "\n")
    for _ in range(2):
        names, emb, labels = sidecar.load(p, dim=4)
        assert names == [] and emb.shape == (0, 4) and labels.shape == (0,)
    shutil.rmtree(tmp_path / ".sidecar")
    assert sidecar.load(p, dim=4)[1].shape == (0, 4)


def test_runs_keep_the_sidecar_current(bucket, tmp_path, make_media):
    from datapool import run
    from datapool.pool.contents import Pool
    from datapool.pool.layout import CSV_NAME

    pool_dir = tmp_path / "pool"
    run(bucket, pool_dir, n_samples=6)
    make_media(bucket / "new" / "a.jpg", seed=101)
    make_media(bucket / "new" / "b.png", seed=102)
    second = run(bucket, pool_dir, n_samples=2)
    assert second.counts["selected"] == 2
    csv = pool_dir / CSV_NAME
    m = json.loads((pool_dir / ".sidecar" / "manifest.json").read_text())
    # The run appended its rows to the sidecar: nothing is left for the next open to parse.
    assert m["csv"]["bytes"] == csv.stat().st_size and m["rows"] == 8
    pool = Pool.open(pool_dir)
    assert isinstance(pool.embeddings, np.memmap)
    _same((pool.filenames, pool.embeddings, pool.labels), *pool_csv.read_csv(csv))
    # --process-all rewrites the CSV (a new file): the sidecar is rebuilt to match.
    run(bucket, pool_dir, n_samples=3, process_all=True)
    pool = Pool.open(pool_dir)
    assert len(pool) == 3
    _same((pool.filenames, pool.embeddings, pool.labels), *pool_csv.read_csv(csv))


def test_a_mapping_handed_out_survives_a_rebuild(csv_file, rng):
    p, _, emb, _ = csv_file
    sidecar.load(p, dim=8)
    old = sidecar.load(p, dim=8)[1]
    assert isinstance(old, np.memmap)
    n2, e2, l2 = _pool(rng, 10, 8)
    p.write_text(pool_csv.format_csv(n2, e2, l2), newline="")  # rebuilt: a smaller pool
    _same(sidecar.load(p, dim=8), n2, e2, l2)
    # The old array still reads the old rows (its file was replaced, not truncated).
    np.testing.assert_array_equal(np.asarray(old[-1]), emb[-1])


def test_torn_csv_append_recovers_through_the_journal(tmp_path, rng):
    # A run's commit crashed while the journal was appending its rows to the CSV: the CSV ends
    # at a random byte offset past the sidecar's committed length. Opening the pool replays the
    # journal (truncate to the recorded offset, append again), then the sidecar catches up.
    from datapool._fsio import atomic_write_text
    from datapool.pool import journal as _journal

    names, emb, labels = _pool(rng, 200, 8)
    csv = tmp_path / "datapool_latest.csv"
    base = pool_csv.format_csv(names, emb, labels).encode()
    for trial in range(12):
        csv.write_bytes(base)
        shutil.rmtree(tmp_path / ".sidecar", ignore_errors=True)
        sidecar.load(csv, dim=8)
        n2, e2, l2 = _pool(rng, 30, 8, start=1000 + 100 * trial)
        rows = pool_csv.format_csv(n2, e2, l2, with_header=False).encode()
        txn = _journal.Transaction(tmp_path)
        txn.stage_append("datapool_latest.csv", rows)
        atomic_write_text(
            tmp_path / _journal.JOURNAL_NAME,
            json.dumps({"files": txn.files, "appends": txn.appends}),
        )
        cut = int(rng.integers(0, len(rows) + 1))
        with open(csv, "ab") as f:  # the torn append: a random prefix of the rows, plus junk
            f.write(rows[:cut] + b"\x00garbage" * int(rng.integers(0, 2)))
        assert _journal.recover(tmp_path) == "rolled forward"
        _same(
            sidecar.load(csv, dim=8),
            names + n2,
            np.concatenate([emb, e2]),
            np.concatenate([labels, l2]),
        )
        _same(
            sidecar.load(csv, dim=8, verify=True),
            names + n2,
            np.concatenate([emb, e2]),
            np.concatenate([labels, l2]),
        )


def test_open_while_another_process_holds_the_sidecar_lock_only_reads(csv_file, rng):
    import subprocess
    import sys

    p, names, emb, labels = csv_file
    sidecar.load(p, dim=8)
    n2, e2, l2 = _append(p, rng, 5, 1000)
    manifest = p.parent / ".sidecar" / "manifest.json"
    before = manifest.read_bytes()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(p.parent / '.sidecar' / 'lock')!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_SH)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        expect = (names + n2, np.concatenate([emb, e2]), np.concatenate([labels, l2]))
        _same(sidecar.load(p, dim=8), *expect)  # the new rows, parsed but not written
        assert manifest.read_bytes() == before
    finally:
        holder.kill()
        holder.communicate()
    _same(sidecar.load(p, dim=8), *expect)
    assert json.loads(manifest.read_text())["rows"] == 305


def _sidecar_files(pool_dir):
    return {p.name: p.read_bytes() for p in sorted((pool_dir / ".sidecar").iterdir())}


def test_a_rewritten_csv_gets_its_sidecar_from_the_rows_byte_for_byte(tmp_path, rng, monkeypatch):
    """After a commit that writes the CSV whole, the sidecar is written from the rows in memory
    (write_rows): the same files and manifest that parsing the CSV back writes, and no parse.
    Rows with odd names and floats that are hard to print (subnormals, -0, extremes), and a CSV
    longer than the 64 KiB edges the manifest checks."""
    names, emb, labels = _pool(rng, 3000, 8)
    emb[1, :4] = [-0.0, 1e-45, np.finfo(np.float32).max, -np.finfo(np.float32).tiny]
    p = tmp_path / "datapool_latest.csv"
    digest = sidecar.CsvDigest()
    with open(p, "wb") as f:
        for block in digest.wrap(pool_csv.csv_bytes(names, emb, labels)):
            f.write(block)
    assert p.stat().st_size > 2 * 65536
    parse = pool_csv.read_csv
    monkeypatch.setattr(pool_csv, "read_csv", lambda *a, **k: pytest.fail("parsed the CSV"))
    assert sidecar.write_rows(p, names, emb, labels, digest)
    from_rows = _sidecar_files(tmp_path)
    _same(sidecar.load(p, dim=8), names, emb, labels)  # trusted as it is: mapped, not parsed
    monkeypatch.setattr(pool_csv, "read_csv", parse)
    shutil.rmtree(tmp_path / ".sidecar")
    _same(sidecar.load(p, dim=8), names, emb, labels)  # rebuilt by parsing the CSV
    assert _sidecar_files(tmp_path).keys() == from_rows.keys()
    assert _sidecar_files(tmp_path) == from_rows


def test_rows_the_reader_would_refuse_are_left_to_it(tmp_path, rng):
    """write_rows writes nothing for rows whose CSV the reader refuses (a non-finite float, a
    duplicate name), or for a file that is not what the digest saw: the next open parses the
    CSV and reports it."""
    names, emb, labels = _pool(rng, 20, 8)
    p = tmp_path / "datapool_latest.csv"
    bad_emb = emb.copy()
    bad_emb[3, 2] = np.nan
    for rows in ((names, bad_emb, labels), ([*names[:-1], names[0]], emb, labels)):
        digest = sidecar.CsvDigest()
        p.write_bytes(b"".join(digest.wrap(pool_csv.csv_bytes(*rows))))
        assert not sidecar.write_rows(p, *rows, digest)
        assert not (tmp_path / ".sidecar" / "manifest.json").exists()
        with pytest.raises(PoolCorruptError):
            sidecar.load(p, dim=8)
    digest = sidecar.CsvDigest()
    p.write_bytes(b"".join(digest.wrap(pool_csv.csv_bytes(names, emb, labels))) + b"x")
    assert not sidecar.write_rows(p, names, emb, labels, digest)


def test_a_rewriting_run_and_rm_write_the_sidecar_without_parsing_the_csv(
    bucket, tmp_path, make_media, monkeypatch
):
    """A run that rewrites the CSV (a changed source file) and `datapool rm` write the sidecar
    from their rows: the files a parse of the committed CSV would write, byte for byte, and the
    CSV not parsed (before, the commit parsed back the whole CSV it had just written: 125 s and
    16.9 GB on a 1,000,000-sample pool)."""
    from datapool import run
    from datapool.cli import main
    from datapool.pool.layout import CSV_NAME

    pool_dir = tmp_path / "pool"
    run(bucket, pool_dir, n_samples=8)
    parses = []
    parse = pool_csv.read_csv
    monkeypatch.setattr(pool_csv, "read_csv", lambda *a, **k: parses.append(a) or parse(*a, **k))

    inodes = [(pool_dir / CSV_NAME).stat().st_ino]

    def check(step):
        inodes.append((pool_dir / CSV_NAME).stat().st_ino)
        assert inodes[-1] != inodes[-2], step  # the CSV was rewritten (a new file)
        written = _sidecar_files(pool_dir)
        assert parses == [], step
        shutil.rmtree(pool_dir / ".sidecar")
        sidecar.load(pool_dir / CSV_NAME)
        assert _sidecar_files(pool_dir) == written, step
        parses.clear()

    names = sidecar.load(pool_dir / CSV_NAME)[0]
    changed = next(n for n in names if n.endswith(".jpg") and (bucket / n).is_file())
    make_media(bucket / changed, seed=200)  # changed: its sample is dropped, the CSV rewritten
    make_media(bucket / "new.jpg", seed=201)
    assert run(bucket, pool_dir, n_samples=2).counts["selected"] >= 1
    check("rewriting run")
    kept = sidecar.load(pool_dir / CSV_NAME)[0]
    assert main(["rm", str(pool_dir), kept[0]]) == 0
    check("rm")
