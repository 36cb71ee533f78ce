"""An export checks that its samples' files are still the ones their run embedded by listing
the source and comparing with the ledger. It lists only the folders its samples' files lie in
(and those above them): exporting 2 samples of a 1,000,000-file source listed every file."""

from __future__ import annotations

import numpy as np

import datapool
from datapool import export
from datapool.media import write_image
from datapool.sources import local

from .conftest import scene


def _exported(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_an_export_lists_only_the_folders_of_its_samples(tmp_path, monkeypatch):
    src, pool = tmp_path / "src", tmp_path / "pool"
    for i, folder in enumerate(["", "a/", "a/b/", "c/", "d/e/"]):
        for j in range(2):
            write_image(src / f"{folder}old{i}{j}.jpg", scene(10 * i + j))
    datapool.run(src, pool, n_samples=20, progress=False)
    for j in range(3):
        write_image(src / f"new/x/n{j}.jpg", scene(200 + j))
    write_image(src / "new/x" / "\u00e9t\u00e9.jpg", scene(210))
    r = datapool.run(src, pool, n_samples=20, progress=False)
    assert len(r.selected) == 4
    write_image(src / "new/x/n0.jpg", np.zeros((96, 128, 3), np.uint8))  # changed since
    (src / "new/x/n1.jpg").unlink()  # gone

    listed = []
    real_list = local.LocalSource.list

    def spy(self, prune=None, counted=None):
        listing = real_list(self, prune, counted)
        listed.append((sorted(listing["key"]), sorted(self.pruned)))
        return listing

    monkeypatch.setattr(local.LocalSource, "list", spy)
    got = export.export_pool(pool, str(tmp_path / "out"), run=1)
    # The folders the files lie in and those above them (the root's own files with them).
    new = ["new/x/n0.jpg", "new/x/n2.jpg", "new/x/\u00e9t\u00e9.jpg"]
    assert listed == [([*new, "old00.jpg", "old01.jpg"], ["a/", "c/", "d/"])]
    # The same export with the whole source listed, as before: the same files and refusals.
    monkeypatch.setattr(local, "folder_prune", lambda keys: lambda folder: False)
    whole = export.export_pool(pool, str(tmp_path / "whole"), run=1)
    assert len(listed[1][0]) == 13 and listed[1][1] == []
    assert _exported(tmp_path / "out") == _exported(tmp_path / "whole")
    assert got.refused == whole.refused and len(got.refused) == 2
    assert {r["name"] for r in got.refused} == {"new/x/n0.jpg", "new/x/n1.jpg"}


def test_the_prune_reads_a_folder_it_cannot_match_by_name():
    prune = local.folder_prune(["a/b/c.jpg", "top.jpg"])
    assert [f for f in ("a/", "a/b/", "b/", "a/c/", "x\ny/") if prune(f)] == ["b/", "a/c/"]
