"""Which files a run lists, and what it says about those it leaves out: export folders inside the
source, names with line breaks, unreadable folders, and filters that match nothing.

Each test reproduces a defect a new-user trial found, with real encoded media and, for the CLI's
messages and exit codes, real processes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datapool
from datapool import Pool
from datapool.export import export_pool
from datapool.sources.filters import ListingFilter, read_relevant_filenames

from .test_trust import cli, without_root_privileges


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
    (w,) = [w for w in second.warnings if "train/" in w and "export" in w]
    assert "rename that file if the folder is raw data" in w  # how to take it back
    # The pool's own files and the export's list are not "other files ignored": the README is.
    assert second.counts["ignored"] == 1, second.counts

    # An --export folder given to one run and not to the next is left out all the same.
    other = tmp_path / "p2"
    run(src, other, export=str(src / "exported"))
    assert run(src, other).run_index is None
    assert not [k for k in ledger_keys(other) if k.startswith(("p/", "train/", "exported/"))]


def test_the_runs_own_pool_and_export_inside_the_source_are_left_out_without_a_warning(
    src, make_media
):
    """`datapool run . --pool pool` (the refusal of `--pool SOURCE` says one inside it is fine)
    warned on every later run "left out 1 file of a datapool pool inside the source (pool/): a
    pool's views and reports are not raw data", of its own pool; likewise of its own --export.
    Another pool or export inside the source is still named."""
    run(src, src / "pool", export=str(src / "exp"))
    make_media(src / "new.jpg", seed=41)
    second = run(src, src / "pool", export=str(src / "exp"))
    assert second.run_index == 1 and not second.warnings, second.warnings
    shutil.copytree(src / "pool", src / "other")
    third = run(src, src / "pool", export=str(src / "exp"))
    assert [w for w in third.warnings if "inside the source" in w] == [
        "left out 2 files of a datapool pool inside the source (other/): a pool's views and "
        "reports are not raw data"
    ], third.warnings


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


# -- an unreadable folder ---------------------------------------------------------------------


def test_an_unreadable_folder_names_the_fix_and_exclude_routes_around_it(src, tmp_path):
    prefix = without_root_privileges()
    locked = src / "lockeddir"
    locked.mkdir()
    (locked / "x.jpg").write_bytes((src / "img0.jpg").read_bytes())
    relevant = tmp_path / "relevant.txt"
    relevant.write_text("img*\ncam/*\n")
    locked.chmod(0)
    try:
        r = cli("run", src, "--pool", tmp_path / "p0", "--n-samples", 2, prefix=prefix)
        assert r.returncode == 5 and r.stderr.count("\n") == 1, r.stderr
        assert "lockeddir" in r.stderr and "--exclude" in r.stderr, r.stderr
        for i, flags in enumerate(
            (
                ("--exclude", "lockeddir/*"),
                ("--exclude", "lockeddir"),
                ("--include", "cam/*"),
                ("--relevant-filenames-file", relevant),
            )
        ):
            pool = tmp_path / f"p{i + 1}"
            r = cli("run", src, "--pool", pool, "--n-samples", 2, *flags, prefix=prefix)
            assert r.returncode == 0, (flags, r.stderr)
    finally:
        locked.chmod(0o755)
    assert "lockeddir/x.jpg" not in ledger_keys(tmp_path / "p1")


def test_exclude_of_a_folder_name_leaves_out_everything_in_it(src):
    result = run(src, src.parent / "pool", exclude=("cam", "sub/"))
    keys = ledger_keys(src.parent / "pool")
    assert keys == [f"img{i}.jpg" for i in range(4)], keys
    # Those folders are not read at all (so an unreadable one can be left out): none of their
    # files is counted; the folders are.
    assert result.counts["excluded"] == 0 and result.counts["excluded_folders"] == 2
    shown = cli("run", src, "--pool", src.parent / "p2", "--n-samples", 2, "--exclude", "cam")
    assert "excluded  0, and 1 folder not read (" in shown.stdout, shown.stdout


def test_the_summary_says_excluded_files_are_not_among_those_listed(src):
    # `listed    4 media files` then `excluded  2 (...)` read as 2 of the 4, and the `new` line
    # (4 new) did not add up to it: the listed count is of the files the run uses.
    shown = cli("run", src, "--pool", src.parent / "p", "--n-samples", 2, "--include", "*.jpg")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1:4] == [
        "listed    4 media files (1 other file ignored)",
        "excluded  2 media files besides those listed (--include/--exclude, relevant filenames, "
        "pools and exports in SOURCE)",
        "new       4 new, 0 changed, 0 unchanged",
    ], shown.stdout


_KEYS = st.lists(
    st.lists(st.sampled_from(["a", "b", "ab", "x.jpg", "b.png"]), min_size=1, max_size=4).map(
        "/".join
    ),
    max_size=12,
)
_GLOBS = st.lists(st.sampled_from(["a", "a/*", "*.jpg", "b/*.png", "a*", "*/b", "ab/", "*"]))
_RULES = st.lists(
    st.tuples(st.booleans(), st.sampled_from(["a/*", "a", "ab*", "b/x.jpg", "a/b/*", "x.jpg"]))
)


@settings(max_examples=300, deadline=None)
@given(keys=_KEYS, include=_GLOBS, exclude=_GLOBS, rules=st.none() | _RULES)
def test_a_pruned_folder_holds_no_file_the_filter_keeps(keys, include, exclude, rules):
    # Folders are not descended into when the filter leaves out all of them: never one that
    # holds a file the filter would keep.
    f = ListingFilter(
        include=tuple(include),
        exclude=tuple(exclude),
        relevant=None if rules is None else tuple(rules),
    )
    for key in keys:
        parts = key.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth]) + "/"
            if f.prunes(folder):
                assert not f.keeps(key), (folder, key)


# -- a filter that matches nothing ------------------------------------------------------------


def test_an_include_glob_that_matches_nothing_is_an_error(src, tmp_path):
    pool = tmp_path / "pool"
    r = cli("run", src, "--pool", pool, "--n-samples", 2, "--include", "*.jgp")
    assert r.returncode == 4 and r.stderr.count("\n") == 1, r.stderr
    assert "--include '*.jgp' matched none of the 6 listed media files" in r.stderr, r.stderr
    assert not pool.exists()  # a run that did nothing leaves no pool folder behind
    # One glob of several that matches nothing is a warning; the others are used.
    result = run(src, pool, include=("*.jpg", "*.jgp"))
    assert result.counts["listed"] == 4
    assert any("--include '*.jgp' matched none" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("given", ["cam", "cam/"])
def test_an_include_of_a_folder_name_says_the_glob_that_takes_its_files(src, tmp_path, given):
    """`--exclude cam` leaves out the folder, but `--include cam` (a glob on each file's path)
    matched none and said only "check the glob"; it now gives the glob that takes the folder."""
    r = cli("run", src, "--pool", tmp_path / "pool", "--n-samples", 2, "--include", given)
    assert r.returncode == 4 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.strip().endswith(
        f"; '{given}' is a folder: --include 'cam/*' takes the files in it"
    ), r.stderr
    r = cli("run", src, "--pool", tmp_path / "pool", "--n-samples", 2, "--include", "cam/*")
    assert r.returncode == 0, r.stderr
    assert [k for k in Pool.open(tmp_path / "pool").ledger["key"]] == ["cam/clip.mp4"]
    # beside a glob that takes files, the warning says it too
    result = run(src, tmp_path / "p2", include=("*.png", "cam"))
    assert any(
        w.endswith("'cam' is a folder: --include 'cam/*' takes the files in it")
        for w in result.warnings
    ), result.warnings


def test_a_relevant_filenames_file_that_matches_nothing_says_so(src, tmp_path):
    relevant = tmp_path / "relevant.txt"
    relevant.write_text("# one path per line\nimg0.jpg.bak\n  nope/*  \nmissing.jpg\n")
    pool = tmp_path / "pool"
    r = cli("run", src, "--pool", pool, "--n-samples", 2, "--relevant-filenames-file", relevant)
    assert r.returncode == 4 and r.stderr.count("\n") == 1, r.stderr
    # (its lines can take in nothing under cam/ and sub/: those folders are not read)
    assert "matched none of the 4 listed media files (2 folders not read)" in r.stderr, r.stderr
    assert "3 of its 3 lines match no file" in r.stderr and "'img0.jpg.bak'" in r.stderr
    assert not pool.exists()
    # Some lines that match nothing: a warning with how many and the first few.
    relevant.write_text("img0.jpg\nimg1.jpg\nnope.jpg\n")
    result = run(src, pool, relevant_filenames_file=str(relevant))
    assert sorted(ledger_keys(pool)) == ["img0.jpg", "img1.jpg"]
    assert any("1 of its 3 lines match no file" in w for w in result.warnings), result.warnings


def test_relevant_filenames_given_as_absolute_paths_inside_the_source(src, tmp_path):
    relevant = tmp_path / "relevant.txt"
    relevant.write_text(f"{src}/img0.jpg\n{src / 'cam'}/*\n!{src}/img0.jpg\n{src}/img2.jpg\n")
    pool = tmp_path / "pool"
    run(src, pool, relevant_filenames_file=str(relevant))
    assert sorted(ledger_keys(pool)) == ["cam/clip.mp4", "img2.jpg"]
    rules = read_relevant_filenames(relevant, roots=(str(src),))
    assert rules == ((True, "img0.jpg"), (True, "cam/*"), (False, "img0.jpg"), (True, "img2.jpg"))


def test_a_run_that_does_nothing_leaves_no_new_pool_folder(tmp_path, make_media):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("no media yet\n")
    pool = tmp_path / "new" / "pool"
    assert run(empty, pool).run_index is None
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert run(empty, existing).run_index is None
    assert existing.is_dir() and os.listdir(existing) in ([], [".datapool.lock"])


def test_images_and_videos_of_types_datapool_does_not_read_are_named_not_just_counted(
    tmp_path, make_media
):
    """A camera's raw .DNG and .CR2 among the text files: a run says which media it
    left out and how to use them, instead of '4 other files ignored'. A .jfif is a JPEG."""
    src = tmp_path / "src"
    make_media(src / "a.jpg", seed=1)
    (src / "b.jfif").write_bytes((src / "a.jpg").read_bytes())
    make_media(src / "c.png", seed=2)
    for name in ("IMG_0001.DNG", "IMG_0002.dng", "raw/DSC_1.CR2", "notes.txt", "Makefile"):
        (src / name).parent.mkdir(exist_ok=True)
        (src / name).write_bytes(b"not read")
    r = datapool.run(src, tmp_path / "pool", n_samples=5, progress=False)
    assert (r.counts["listed"], r.counts["ignored"]) == (3, 5)
    assert r.warnings == [
        "3 image or video files of a type datapool does not read were ignored (2 .dng, 1 .cr2): "
        "convert them to one it reads (JPEG, PNG, WebP; MP4, MKV) to use them (README, 'Decode')"
    ]
    (src / "IMG_0001.DNG").unlink()
    (src / "IMG_0002.dng").unlink()
    make_media(src / "d.png", seed=3)
    r = datapool.run(src, tmp_path / "pool", n_samples=5, progress=False)
    assert r.warnings == [
        "1 image or video file of a type datapool does not read was ignored (1 .cr2): "
        "convert them to one it reads (JPEG, PNG, WebP; MP4, MKV) to use them (README, 'Decode')"
    ]


@pytest.mark.parametrize("n", [0, 1, 7])
def test_listing_frame_has_the_rows_and_dtypes(n):
    """listing_frame builds its columns one at a time (not through zip(*rows)): the frame is
    the rows, in order, with object text columns and int64 numbers, empty or not."""
    import pandas as pd

    from datapool.sources.listing import LISTING_COLUMNS, listing_frame

    rows = [
        (f"k,{i}\n.jpg", 2**40 + i, 1796672511887035692 + i, f"e{i}", "image") for i in range(n)
    ]
    got = listing_frame(rows)
    want = pd.DataFrame(rows, columns=LISTING_COLUMNS).astype(
        {"key": object, "size": "int64", "mtime_ns": "int64", "etag": object, "kind": object}
    )
    pd.testing.assert_frame_equal(got, want)
    assert all(type(v) is str for c in ("key", "etag", "kind") for v in got[c])
