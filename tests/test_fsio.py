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
