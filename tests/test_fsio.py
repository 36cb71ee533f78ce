"""The durable-write primitives (_fsio.py): what every pool, sidecar, cache and export file goes
through."""

from __future__ import annotations

import os

import pytest

from datapool._fsio import atomic_write_bytes, atomic_write_text


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_make_files_as_the_umask_allows(tmp_path, umask):
    """0666 less the umask, as open() makes a file: not mkstemp's 0600, which another user (a
    training job reading an export, a reader of a pool) cannot read."""
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
        atomic_write_text(tmp_path / "b.txt", "b\n")
        atomic_write_text(tmp_path / "b.txt", "replaced\n")
    finally:
        os.umask(old)
    for name in ("a.bin", "b.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "b.txt").read_text() == "replaced\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt"]  # no temporary left


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each"])
def test_batched_writes_land_whole_and_leave_no_temporaries(tmp_path, monkeypatch, syncfs):
    """BatchedWrites (an export's files): each batch is made durable (one syncfs, or an fsync of
    each file where the system has none) and only then renamed onto its targets, replacing what
    was there; a file is at its name only once renamed, and nothing but the targets is left."""
    from datapool import _fsio

    if not syncfs:
        monkeypatch.setattr(_fsio, "_SYNCFS", [None])
    elif _fsio._syncfs() is None:
        pytest.skip("this system has no syncfs")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f3").write_bytes(b"old")
    renamed = []
    batch = _fsio.BatchedWrites(renamed.append, max_files=3)
    want = {}
    for i in range(7):
        path = tmp_path / ("sub" if i % 2 else ".") / f"f{i}"
        want[path.resolve()] = os.urandom(i * 1000 + 1)
        batch.add(path, want[path.resolve()])
        # the batch of 3 went in place when its third file was written; the rest waits
        assert len(renamed) == 3 * ((i + 1) // 3)
    assert (tmp_path / "sub" / "f3").read_bytes() == want[(tmp_path / "sub" / "f3").resolve()]
    assert not (tmp_path / "f6").exists()
    batch.flush()
    assert len(renamed) == 7
    on_disk = {p.resolve(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == want


def test_batched_writes_discard_and_a_failed_flush_leave_no_temporaries(tmp_path, monkeypatch):
    """An export that stops (an error, Ctrl-C) discards the files not yet in place; a flush whose
    durable step fails renames nothing and removes its files, and the error goes up."""
    from datapool import _fsio

    batch = _fsio.BatchedWrites(lambda p: None)
    batch.add(tmp_path / "a", b"a")
    batch.discard()
    batch.flush()  # nothing pending: nothing happens
    assert list(tmp_path.iterdir()) == []

    def fail(files):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_fsio, "_make_durable", fail)
    batch.add(tmp_path / "b", b"b")
    with pytest.raises(OSError, match="No space left"):
        batch.flush()
    assert list(tmp_path.iterdir()) == []
