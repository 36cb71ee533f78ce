"""A local source folder as users have them: long names, FIFOs where datapool reads small files,
NAS and system folders, the same folder by another path. Real files, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import datapool
from datapool.pool.ledger import read_ledger
from datapool.sources.local import LONGEST_VIDEO_NAME

from .conftest import PACKAGE_PATH, run_cli


def _run(
    source: Path, pool: Path, *more: object, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`datapool run SOURCE --pool POOL` in a child process, killed after `timeout` seconds (a
    hang fails the test rather than the suite)."""
    env = {**os.environ, "PYTHONPATH": PACKAGE_PATH}
    args = ["run", source, "--pool", pool, "--n-samples", 50, "--no-progress", *more]
    return subprocess.run(
        [sys.executable, "-m", "datapool", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _statuses(pool: Path) -> dict[str, str]:
    ledger = read_ledger(pool / "ledger.csv")
    return dict(zip(ledger["key"], ledger["status"]))


def test_a_255_byte_name_is_exported(tmp_path, make_media):
    # The export's temporary file was `.{name}.{12 hex}.tmp`: 18 bytes over the name, so a file
    # named with the 255 bytes a name may have failed the whole export (ENAMETOOLONG).
    src = tmp_path / "src"
    long = "x" * 251 + ".jpg"
    make_media(src / long, seed=1)
    make_media(src / "a.jpg", seed=2)
    export = tmp_path / "export"
    r = _run(src, tmp_path / "pool", "--export", export)
    assert r.returncode == 0, r.stderr
    assert (export / long).read_bytes() == (src / long).read_bytes()
    assert sorted((export / "selected_filenames.txt").read_text().splitlines()) == ["a.jpg", long]
    assert [p.name for p in export.iterdir() if p.name.endswith(".tmp")] == []


def test_a_video_too_long_for_its_frame_names_is_skipped_with_the_reason(tmp_path, make_media):
    # Frame i of `{stem}.mp4` is `{stem}-{i}-mp4.png`, longer than the video's own name: from
    # 246 bytes on, no file system can hold it, and the run's export failed after the commit.
    src = tmp_path / "src"
    longest = "v" * (LONGEST_VIDEO_NAME - 4) + ".mp4"  # frames named with up to 10 digits fit
    too_long = "w" * (LONGEST_VIDEO_NAME - 3) + ".mp4"
    make_media(src / longest, seed=1, frames=3)
    make_media(src / too_long, seed=2, frames=3)
    export, pool = tmp_path / "export", tmp_path / "pool"
    r = _run(src, pool, "--export", export)
    assert r.returncode == 0, r.stderr
    assert f"{too_long}: its name is over {LONGEST_VIDEO_NAME} bytes" in r.stdout
    assert _statuses(pool)[too_long].startswith("its name is over")
    assert _statuses(pool)[longest] == "ok"
    assert sorted(p.name for p in export.iterdir() if p.suffix == ".png") == [
        f"{longest[:-4]}-{i}-mp4.png" for i in range(3)
    ]


def test_a_fifo_where_datapool_reads_small_files_does_not_hang_the_run(tmp_path, make_media):
    # A run reads each `selected_filenames.txt` in the source (is that folder an export?) with a
    # plain read, which blocks for ever on a FIFO with no writer.
    src = tmp_path / "src"
    make_media(src / "a.jpg", seed=1)
    make_media(src / "sub" / "b.jpg", seed=2)
    os.mkfifo(src / "sub" / "selected_filenames.txt")
    pool = tmp_path / "pool"
    r = _run(src, pool, timeout=60)
    assert r.returncode == 0, r.stderr
    assert _statuses(pool) == {"a.jpg": "ok", "sub/b.jpg": "ok"}  # not an export: its files count


def test_nas_and_system_folders_are_not_data(tmp_path, make_media):
    # A Synology share holds `@eaDir/<picture>/SYNOFILE_THUMB_*.jpg`, a small copy of every
    # picture: they were ingested as samples (near-duplicates of the pictures, named as files
    # the user never made). Recycle bins and lost+found are no data either.
    src = tmp_path / "src"
    make_media(src / "cam" / "IMG_1.jpg", seed=1)
    make_media(src / "cam" / "@eaDir" / "IMG_1.jpg" / "SYNOFILE_THUMB_XL.jpg", seed=1)
    make_media(src / "#recycle" / "old.jpg", seed=3)
    make_media(src / "$RECYCLE.BIN" / "S-1-5" / "$R1.jpg", seed=4)
    make_media(src / "lost+found" / "x.jpg", seed=5)
    make_media(src / "lost+found2" / "kept.jpg", seed=6)  # only the exact names are left out
    pool = tmp_path / "pool"
    r = _run(src, pool)
    assert r.returncode == 0, r.stderr
    assert sorted(_statuses(pool)) == ["cam/IMG_1.jpg", "lost+found2/kept.jpg"]
    names = pd.read_csv(pool / "datapool_latest.csv", usecols=["filenames"])["filenames"]
    assert sorted(names) == ["cam/IMG_1.jpg", "lost+found2/kept.jpg"]


def test_the_same_folder_by_a_symlinked_path_is_named_as_such(tmp_path, make_media):
    src = tmp_path / "src"
    make_media(src / "a.jpg", seed=1)
    link = tmp_path / "link"
    link.symlink_to(src)
    pool = tmp_path / "pool"
    assert _run(src, pool).returncode == 0
    r = _run(link, pool)
    assert r.returncode == 5
    assert r.stderr.strip().splitlines() == [
        f"datapool: error: pool {pool} was grown from {src}, the same folder as {link} by "
        "another path (a symbolic link); give that path, or run with --source-moved to record "
        "this one"
    ]
    assert _run(link, pool, "--source-moved").returncode == 0


def test_a_quoted_tilde_is_named_in_the_error(tmp_path):
    r = run_cli("run", "~/no-such-datapool-folder", "--pool", tmp_path / "pool", "--n-samples", 5)
    assert r.returncode != 0
    line = r.stderr.strip()
    assert "`~` is not expanded there: give the full path, " in line
    assert line.endswith(os.path.expanduser("~/no-such-datapool-folder"))
    assert "Traceback" not in r.stderr


def test_a_quoted_tilde_in_a_path_written_to_is_refused_not_made_a_folder(tmp_path, make_media):
    """`--pool=~/pool` (bash expands no `~` after `=`), a quoted `'~/pool'` or one from a config
    file: the run made a folder named `~` in the working directory and put the pool there (and
    `rm -rf ~`, to remove it, deletes the home folder). As SOURCE already was, it is refused,
    naming the full path; so are export's DEST (and --export), merge's --into, report's --out and
    --log-file."""
    src = tmp_path / "src"
    make_media(src / "a.jpg", seed=1)
    make_media(src / "b.jpg", seed=2)
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=1, progress=False)
    meant = os.path.expanduser("~/no-such-datapool-pool")
    for args in (
        ["run", str(src), "--pool=~/no-such-datapool-pool", "--n-samples", "1"],
        ["status", "~/no-such-datapool-pool"],
        ["export", str(pool), "~/no-such-datapool-pool"],
        ["merge", str(pool), str(pool), "--into", "~/no-such-datapool-pool"],
        [
            "run",
            str(src),
            "--pool",
            str(pool),
            "--n-samples",
            "1",
            "--export",
            "~/no-such-datapool-pool",
        ],
        ["report", str(pool), "--out", "~/no-such-datapool-pool"],
        ["export", str(pool), str(tmp_path / "e"), "--log-file", "~/no-such-datapool-pool"],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "datapool", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": PACKAGE_PATH},
            timeout=120,
        )
        assert r.returncode == 4, (args, r.stderr)
        [line] = r.stderr.splitlines()
        assert line.endswith(
            f"~/no-such-datapool-pool: `~` is not expanded there: give the full path, {meant}"
        ), line
        assert not (tmp_path / "~").exists(), args
    # A model read from such a path: the same hint (exit 6, the model cannot be used).
    r = run_cli(
        "run", src, "--pool", pool, "--n-samples", 1, "--model=~/no-such-datapool-model.onnx"
    )
    assert r.returncode == 6 and r.stderr.strip().endswith(
        "`~` is not expanded there: give the full path, "
        + os.path.expanduser("~/no-such-datapool-model.onnx")
    ), r.stderr
    # A folder named `~` that is there is used as given.
    (tmp_path / "~").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "datapool", "export", str(pool), "~/out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_PATH},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "~" / "out" / "selected_filenames.txt").is_file()


def test_an_include_glob_that_misses_files_only_by_case_says_so(tmp_path, make_media):
    # The listing takes `.JPG` as JPEG, but `--include '*.jpg'` (case-sensitive) silently left a
    # camera's IMG_1.JPG out beside a phone's photo.jpg, or ended "matched none" with no hint.
    src = tmp_path / "src"
    make_media(src / "phone" / "photo.jpg", seed=1)
    make_media(src / "camera" / "IMG_1.JPG", seed=2)
    make_media(src / "camera" / "IMG_2.Jpg", seed=3)
    result = datapool.run(src, tmp_path / "pool", n_samples=5, include=("*.jpg",), progress=False)
    assert result.counts["listed"] == 1  # still case-sensitive, as .gitignore and S3 keys
    assert result.warnings == [
        "--include '*.jpg' left out 2 files that it would take but for upper or lower case "
        "('camera/IMG_1.JPG', 'camera/IMG_2.Jpg'); globs are case-sensitive: add an --include "
        "for those names (such as '*.JPG')"
    ]
    r = _run(src, tmp_path / "pool2", "--include", "camera/*.jpg")
    assert r.returncode == 4
    assert r.stderr.splitlines() == [
        "datapool: error: --include 'camera/*.jpg' matched none of the 2 listed media files "
        "(1 folder not read); "
        "it left out 2 files that it would take but for upper or lower case "
        "('camera/IMG_1.JPG', 'camera/IMG_2.Jpg'); globs are case-sensitive: add an --include "
        "for those names (such as 'camera/*.JPG')"
    ]
    # The example is in the case of the names left out (it was '*.JPG' whatever they were).
    upper = datapool.run(src, tmp_path / "pool3", n_samples=5, include=("*.JPG",), progress=False)
    assert upper.warnings == [
        "--include '*.JPG' left out 2 files that it would take but for upper or lower case "
        "('camera/IMG_2.Jpg', 'phone/photo.jpg'); globs are case-sensitive: add an --include "
        "for those names (such as '*.Jpg')"
    ]


def test_a_relevant_filenames_list_written_by_find_in_the_source(tmp_path, make_media):
    # `cd SOURCE && find . -name '*.jpg' > list.txt` writes `./cam/a.jpg`: no line matched, and
    # the run stopped, its folders pruned as if the list named none of their files.
    src = tmp_path / "src"
    for i, key in enumerate(["a.jpg", "cam/b.jpg", "cam/c.png", "d.jpg"]):
        make_media(src / key, seed=i)
    found = subprocess.run(
        ["find", ".", "-name", "*.jpg", "!", "-name", "d.jpg"],
        cwd=src,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(found.split()) == ["./a.jpg", "./cam/b.jpg"]
    relevant = tmp_path / "list.txt"
    relevant.write_text(found + "!./cam/b.jpg\n")
    pool = tmp_path / "pool"
    r = _run(src, pool, "--relevant-filenames-file", relevant)
    assert r.returncode == 0, r.stderr
    assert sorted(_statuses(pool)) == ["a.jpg"]
    relevant.write_text(found)
    r = _run(src, tmp_path / "pool2", "--relevant-filenames-file", relevant)
    assert sorted(_statuses(tmp_path / "pool2")) == ["a.jpg", "cam/b.jpg"]


def test_images_without_an_extension_are_named_as_such(tmp_path, make_media):
    # A content-addressed store (`ab/3f2a9c`): every file was ignored as "other", and the run
    # said the source "holds no images or videos: check the path".
    src = tmp_path / "src"
    for i, (name, ext) in enumerate([("3f2a9c", "jpg"), ("77e1d0", "png"), ("9911aa", "mp4")]):
        os.rename(make_media(src / "ab" / f"{name}.{ext}", seed=i, frames=3), src / "ab" / name)
    (src / "ab" / "README").write_text("not media\n")
    os.mkfifo(src / "ab" / "pipe")  # never opened blocking
    r = _run(src, tmp_path / "pool", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "listed    0 media files (5 other files ignored)" in r.stdout
    assert r.stderr.splitlines() == [
        "datapool: warning: 3 files without an extension are images or videos by their first "
        "bytes (such as 'ab/3f2a9c', JPEG) and were ignored: datapool goes by the extension; "
        "give them one (.jpg, .png, .mp4) to use them"
    ]
    # One alone is said in the singular (it said "1 files without an extension are ...").
    one = tmp_path / "one"
    os.rename(make_media(one / "x.jpg", seed=7), one / "3f2a9c")
    make_media(one / "a.jpg", seed=8)
    r = _run(one, tmp_path / "pool1", timeout=60)
    assert r.returncode == 0, r.stderr
    assert (
        "datapool: warning: 1 file without an extension is an image or a video by its first "
        "bytes ('3f2a9c', JPEG) and was ignored: datapool goes by the extension; give it one "
        "(.jpg, .png, .mp4) to use it" in r.stderr.splitlines()
    ), r.stderr
    from datapool.sources.local import LocalSource

    source = LocalSource(src)
    source.list()
    assert source.unnamed_media == [
        ("ab/3f2a9c", "JPEG"),
        ("ab/77e1d0", "PNG"),
        ("ab/9911aa", "MP4/MOV"),
    ]


def test_a_file_made_a_fifo_after_the_listing_does_not_hang_the_run(tmp_path, make_media):
    # The listing refuses a FIFO, but one that takes a listed file's place before decoding was
    # opened by FFmpeg itself, blocking for ever on a FIFO with no writer.
    src = tmp_path / "src"
    make_media(src / "a.jpg", seed=1)
    make_media(src / "b.jpg", seed=2)
    env = {
        **os.environ,
        "PYTHONPATH": PACKAGE_PATH,
        "DATAPOOL_TEST_PAUSE_AT": "listed",
        "DATAPOOL_TEST_PAUSE_S": "2",
    }
    pool = tmp_path / "pool"
    args = ["run", src, "--pool", pool, "--n-samples", 5, "--no-progress"]
    with subprocess.Popen(
        [sys.executable, "-m", "datapool", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as p:
        try:
            assert p.stderr is not None
            assert p.stderr.readline() == "datapool-test: paused at listed\n"
            (src / "b.jpg").unlink()
            os.mkfifo(src / "b.jpg")
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
    assert p.returncode == 0, err
    assert "b.jpg: read failed: not a regular file; tried again next run" in out
    assert _statuses(pool) == {
        "a.jpg": "ok",
        "b.jpg": "read failed: not a regular file; tried again next run",
    }


def test_names_that_start_with_a_dash_get_a_hint(tmp_path, make_media):
    # A folder named `-data`, a glob `-n.jpg`: argparse takes them for options, and the error
    # ('the following arguments are required: SOURCE') did not say why.
    make_media(tmp_path / "-data" / "a.jpg", seed=1)
    r = subprocess.run(
        [sys.executable, "-m", "datapool", "run", "-data", "--pool", "pool", "--n-samples", "5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_PATH},
        timeout=60,
    )
    assert r.returncode == 4
    assert r.stderr == (
        "datapool run: error: the following arguments are required: SOURCE; '-data' was taken "
        "for an option: give that path as ./-data (see `datapool run --help`)\n"
    )
    r = run_cli("run", tmp_path / "-data", "--pool", tmp_path / "p", "--include", "-n.jpg")
    assert r.returncode == 4
    assert r.stderr == (
        "datapool run: error: argument --include: expected one argument; give a value that "
        "starts with '-' as --include=VALUE (see `datapool run --help`)\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "SRC", "--pool", "POOL", "--n-samples", "5", "--export"],
        ["ls", "POOL", "--run"],
        ["run", "SRC", "--pool", "POOL", "--include", "*.jpg", "--include"],
    ],
)
def test_a_flag_without_its_value_at_the_end_gets_no_hint_about_dashes(tmp_path, argv):
    """`datapool run SRC --pool P --n-samples 5 --export` (the value forgotten) said "give a value
    that starts with '-' as --export=VALUE": no value started with '-'. The hint is for a value
    that does (`--include -n.jpg`, above); a flag that ends the line gets argparse's line alone."""
    argv = [str(tmp_path / a) if a.isupper() else a for a in argv]
    r = run_cli(*argv)
    assert r.returncode == 4
    flag = argv[-1]
    assert r.stderr == (
        f"datapool {argv[0]}: error: argument {flag}: expected one argument "
        f"(see `datapool {argv[0]} --help`)\n"
    )


def test_an_escaped_name_never_takes_a_real_file_s_name(tmp_path, make_media):
    # b"bad\xff.jpg" (not UTF-8) is keyed `bad\xff.jpg`, with a backslash: the name of another,
    # good file. Both were skipped as "not valid UTF-8", under one key twice in the ledger, and
    # every later run found one of them changed.
    src = tmp_path / "src"
    make_media(src / "bad\\xff.jpg", seed=1)
    good = (src / "bad\\xff.jpg").read_bytes()
    make_media(src / "other.png", seed=2)
    os.rename(src / "other.png", os.fsencode(src) + b"/bad\xff.jpg")
    pool = tmp_path / "pool"
    r = _run(src, pool)
    assert r.returncode == 0, r.stderr
    assert "listed    1 media file (1 other file ignored)" in r.stdout
    ledger = read_ledger(pool / "ledger.csv")
    assert ledger[["key", "size", "status"]].values.tolist() == [["bad\\xff.jpg", len(good), "ok"]]
    r = _run(src, pool)
    assert "new       0 new, 0 changed, 1 unchanged" in r.stdout


def test_the_listing_of_odd_names_is_each_files_own(tmp_path):
    """The listing works out each extension's kind once and takes printable ASCII names as
    they are (the fast path a million files take); every other name goes through the full
    check. A file named `jpg` is no image and does not make `a.jpg` one's kind unknown; a
    name with a tab, a line break, non-ASCII letters or bytes that are not UTF-8 is listed
    as before (escaped, with its problem), and an escaped name that spells a real one leaves
    the real file its key."""
    from datapool.sources.local import LocalSource

    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    names = ["jpg", "a.jpg", "B.JPG", "c.Png", "d.", "sub/mp4", "sub/e.mp4", "notes.txt"]
    names += ["tab\there.jpg", "line\nbreak.png", "é.jpg", "c,d.jpg", 'q"u.png']
    for name in names:
        (root / name).write_bytes(b"x")
    os.mkdir(os.path.join(os.fsencode(root), b"raw\xff"))
    (Path(os.fsdecode(os.fsencode(root) + b"/raw\xff")) / "f.jpg").write_bytes(b"yy")
    (root / "raw\\xff").mkdir()
    (root / "raw\\xff" / "f.jpg").write_bytes(b"zzz")  # spells the escaped key for real
    src = LocalSource(root)
    listing = src.list()
    got = dict(zip(listing["key"], zip(listing["kind"], listing["size"])))
    assert got == {
        "a.jpg": ("image", 1),
        "B.JPG": ("image", 1),
        "c.Png": ("image", 1),
        "sub/e.mp4": ("video", 1),
        "tab\there.jpg": ("image", 1),
        "line\\nbreak.png": ("image", 1),
        "é.jpg": ("image", 1),
        "c,d.jpg": ("image", 1),
        'q"u.png': ("image", 1),
        "raw\\xff/f.jpg": ("image", 3),  # the real file's, not the escaped name's
    }
    assert list(listing["key"]) == sorted(got)
    assert sorted(src.ignored) == sorted(["jpg", "d.", "sub/mp4", "notes.txt", "raw\\xff/f.jpg"])
    assert set(src.problems) == {"line\\nbreak.png"}


def test_a_symlinked_folder_outside_the_source_is_named_not_left_out_silently(tmp_path, make_media):
    # `src/cam1 -> /mnt/cam1` (a folder of data linked in) is not followed: its files were
    # left out without a word, and the run looked like one of the whole source. A link to a
    # folder inside the source (`latest -> day2`: its files are read under day2/) and a link
    # loop (`sub/up -> ..`) lose nothing, and an --exclude of the link says the user knows.
    src, outside = tmp_path / "src", tmp_path / "outside"
    make_media(src / "a.jpg", seed=1)
    make_media(src / "day2" / "b.jpg", seed=2)
    make_media(outside / "cam1" / "c.jpg", seed=3)
    make_media(outside / "cam2" / "d.jpg", seed=4)
    os.symlink(outside / "cam1", src / "cam1")
    os.symlink(outside / "cam2", src / "day2" / "cam2")
    os.symlink(src / "day2", src / "latest")
    os.mkdir(src / "sub")
    os.symlink("..", src / "sub" / "up")
    r = _run(src, tmp_path / "pool")
    assert r.returncode == 0, r.stderr
    assert _statuses(tmp_path / "pool") == {"a.jpg": "ok", "day2/b.jpg": "ok"}
    warned = [line for line in r.stderr.splitlines() if "symbolic link" in line]
    assert warned == [
        "datapool: warning: 2 symbolic links to folders outside the source were not followed, "
        f"so the files in them were not read (cam1/ -> {outside / 'cam1'}, day2/cam2/ -> "
        f"{outside / 'cam2'}): run on those folders, or move or copy their files into the "
        "source (--exclude the links to leave them out without this warning)"
    ], r.stderr
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    assert any("cam1/ ->" in w for w in report["warnings"])

    r = _run(src, tmp_path / "pool2", "--exclude", "cam1", "--exclude", "day2/cam2")
    assert r.returncode == 0, r.stderr
    assert "symbolic link" not in r.stderr


def test_a_source_inside_a_pool_is_refused(tmp_path, make_media):
    # `datapool run POOL/runs --pool POOL` said the pool was grown from another source and to run
    # with --source-moved "if the source moved there"; doing so ingested the pool's own
    # embedding views as samples, and so did a source inside another pool (`--pool new`).
    src, pool = tmp_path / "src", tmp_path / "pool"
    make_media(src / "a.jpg", seed=1)
    make_media(src / "b.jpg", seed=2)
    assert _run(src, pool).returncode == 0
    for more in ((), ("--source-moved",), ("--dry-run",)):
        for into in (pool, tmp_path / "new"):
            r = _run(pool / "runs", into, *more)
            assert r.returncode == 5, (more, into, r.stdout, r.stderr)
            assert r.stderr.splitlines() == [
                f"datapool: error: source {pool / 'runs'} is inside the datapool pool {pool}: "
                "its views and reports are no raw data; give the folder the pool was grown "
                f"from, {src}"
            ], r.stderr
    assert len(datapool.Pool.open(pool).runs) == 1
    assert not (tmp_path / "new").exists()


def test_a_pool_inside_a_pool_is_refused(tmp_path, make_media):
    # `datapool run SRC --pool POOL/runs/1/x` (or `POOL/sub`) made a new pool inside POOL, which
    # an undo or rm of POOL's run 1 (it deletes runs/1) or `--process-all` would then remove or
    # snapshot with it, without a word.
    src, pool = tmp_path / "src", tmp_path / "pool"
    make_media(src / "a.jpg", seed=1)
    make_media(src / "b.jpg", seed=2)
    assert _run(src, pool).returncode == 0
    before = sorted(p.relative_to(pool) for p in pool.rglob("*"))
    for inner in (pool / "sub", pool / "runs" / "1" / "x"):
        r = _run(src, inner)
        assert r.returncode == 4, (inner, r.stdout, r.stderr)
        assert r.stderr.splitlines() == [
            f"datapool: error: --pool {inner} is inside the datapool pool {pool}; give a folder "
            "outside it (a pool's folder is its own: its undo and rm delete its runs' folders)"
        ], r.stderr
        assert not inner.exists()
    assert sorted(p.relative_to(pool) for p in pool.rglob("*")) == before
    assert _run(src, pool).returncode == 0  # the pool itself is still a pool to grow


def test_a_pool_under_a_folder_with_another_programs_runs_json_is_made(tmp_path, make_media):
    # A project folder that holds a copied datapool_latest.csv beside its own runs.json (another
    # program's: no `runs`) holds no pool: `--pool project/pools/p` was refused as "inside the
    # datapool pool project", and a source under it as "inside the datapool pool".
    project = tmp_path / "project"
    src, pool = project / "src", project / "pools" / "p"
    make_media(src / "a.jpg", seed=1)
    make_media(src / "b.jpg", seed=2)
    (project / "runs.json").write_text(json.dumps([{"experiment": 1}]))
    (project / "datapool_latest.csv").write_text("filenames,embedding_0,labels\nx.jpg,0.5,0\n")
    r = _run(src, pool)
    assert r.returncode == 0, r.stderr
    assert len(datapool.Pool.open(pool).runs) == 1
    (project / "runs.json").write_text(json.dumps({"experiments": []}))
    make_media(src / "c.jpg", seed=3)
    r = _run(src, pool)
    assert r.returncode == 0, r.stderr
    assert len(datapool.Pool.open(pool).runs) == 2


def test_a_source_inside_a_pool_with_odd_runs_is_refused_in_one_line(tmp_path, make_media):
    # The refusal names the sources the pool was grown from, read from its runs.json: a runs.json
    # whose runs are not objects (damaged, hand-edited) gave an AttributeError traceback instead.
    src, pool = tmp_path / "src", tmp_path / "pool"
    make_media(src / "a.jpg", seed=1)
    assert _run(src, pool).returncode == 0
    for runs in ([1], {"0": {}}, ["x"]):
        (pool / "runs.json").write_text(json.dumps({"runs": runs}))
        r = _run(pool / "runs", tmp_path / "new")
        assert r.returncode == 5, (runs, r.stderr)
        assert r.stderr.splitlines() == [
            f"datapool: error: source {pool / 'runs'} is inside the datapool pool {pool}: "
            "its views and reports are no raw data; give the folder the pool was grown from"
        ], r.stderr
