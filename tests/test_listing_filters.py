"""Which files a run lists, and what it says about those it leaves out: export folders inside the
source, names with line breaks, unreadable folders, and filters that match nothing.

Each test reproduces a defect a new-user trial found, with real encoded media and, for the CLI's
messages and exit codes, real processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datapool
from datapool import Pool
from datapool.export import export_pool

from .test_trust import cli


def run(source, pool, **kw):
    kw.setdefault("n_samples", 3)
    return datapool.run(source, pool, progress=False, **kw)


def ledger_keys(pool: Path) -> list[str]:
    return Pool.open(pool).ledger["key"].tolist()


@pytest.fixture
def src(tmp_path, make_media) -> Path:
    """Four JPEGs, a PNG in a folder, a short H.264 clip and a README."""
    root = tmp_path / "s"
    for i in range(4):
        make_media(root / f"img{i}.jpg", seed=i)
    make_media(root / "sub" / "deep.png", seed=20)
    make_media(root / "cam" / "clip.mp4", seed=30, frames=8)
    (root / "README.txt").write_text("not media\n")
    return root


# -- an export folder inside SOURCE is never listed -------------------------------------------


def test_an_export_folder_inside_the_source_is_never_listed(src, tmp_path):
    pool = src / "p"
    run(src, pool)
    export_pool(pool, str(src / "train"))  # `datapool export p s/train`
    second = run(src, pool)
    assert second.run_index is None, second.counts  # the exported copies are not new files
    assert not [k for k in ledger_keys(pool) if k.startswith(("p/", "train/"))]
    assert any("train/" in w and "export" in w for w in second.warnings), second.warnings
    # The pool's own files and the export's list are not "other files ignored": the README is.
    assert second.counts["ignored"] == 1, second.counts

    # An --export folder given to one run and not to the next is left out all the same.
    other = tmp_path / "p2"
    run(src, other, export=str(src / "exported"))
    assert run(src, other).run_index is None
    assert not [k for k in ledger_keys(other) if k.startswith(("p/", "train/", "exported/"))]


def test_a_folder_with_its_own_selected_filenames_list_is_still_listed(src, make_media):
    # A list that names no file of its folder is not an export's: the folder is raw data.
    make_media(src / "lists" / "x.jpg", seed=40)
    (src / "lists" / "selected_filenames.txt").write_text("img0.jpg\nimg1.jpg\n")
    (src / "selected_filenames.txt").write_text("img0.jpg\n")  # the source itself: never out
    result = run(src, src.parent / "pool")
    assert "lists/x.jpg" in ledger_keys(src.parent / "pool")
    assert result.counts["excluded"] == 0 and not result.warnings


# -- a name with a line break -----------------------------------------------------------------


def test_a_name_with_a_line_break_is_skipped_with_its_reason(src, tmp_path, make_media):
    make_media(src / "two\nlines.jpg", seed=8)
    make_media(src / "carriage\rreturn.png", seed=9)
    pool, exported = tmp_path / "pool", tmp_path / "exported"
    dry = cli("run", src, "--pool", pool, "--n-samples", 20, "--dry-run", "--no-progress")
    assert dry.returncode == 0, dry.stderr
    assert "two\\nlines.jpg" in dry.stdout and "carriage\\rreturn.png" in dry.stdout
    halves = ("two", "lines.jpg", "carriage", "return.png")
    assert not [line for line in dry.stdout.splitlines() if line.strip() in halves], dry.stdout

    r = cli("run", src, "--pool", pool, "--n-samples", 20, "--export", exported, "--json")
    assert r.returncode == 0, r.stderr
    reasons = {s["key"]: s["reason"] for s in json.loads(r.stdout)["skipped"]}
    assert "line break" in reasons["two\\nlines.jpg"], reasons
    assert "line break" in reasons["carriage\\rreturn.png"], reasons
    names = (exported / "selected_filenames.txt").read_text().splitlines()
    assert names and all((exported / n).is_file() for n in names), names
    assert not [n for n in Pool.open(pool).filenames if "\n" in n or "\r" in n]
    shown = cli("ls", pool)
    assert shown.returncode == 0 and "lines.jpg" not in shown.stdout, shown.stdout
    # Skipped for good, like an undecodable file: the next run has nothing new.
    assert run(src, pool).run_index is None
