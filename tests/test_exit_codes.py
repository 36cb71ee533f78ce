"""Exit codes and error lines, command by command, through the real CLI on a pool built from
real media: the same mistake gives the same exit code whichever command makes it (README, "Exit
codes"), and a failure under --json is one JSON object a script can read, with the exit code it
has without --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datapool

from .conftest import run_cli, write_media


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """(source, pool, a regular file): 3 images and a clip, one run."""
    root = tmp_path_factory.mktemp("codes")
    src = root / "src"
    for i in range(3):
        write_media(src / f"img{i}.jpg", seed=i)
    write_media(src / "cam" / "clip.mp4", seed=30, frames=6)
    pool = root / "pool"
    datapool.run(src, pool, n_samples=3, progress=False, thumbnails=False)
    afile = root / "afile"
    afile.write_text("a file, where a folder is needed\n")
    return src, pool, afile


# Every way a command writes a file or folder the user names, each given a path under a regular
# file (the one unwritable place root cannot write either). Before: export 1 (and 4 for DEST a
# file), run --export 1, report --out 8, --log-file 4.
OUTPUTS = {
    "export DEST": ("export", "{pool}", "{out}"),
    "export DEST a file": ("export", "{pool}", "{afile}"),
    "run --export": ("run", "{src}", "--pool", "{tmp}/p", "--n-samples", "1", "--export", "{out}"),
    "report --out": ("report", "{pool}", "--out", "{out}/page.html"),
    "run --log-file": (
        "run",
        "{src}",
        "--pool",
        "{tmp}/p",
        "--n-samples",
        "1",
        "--log-file",
        "{out}",
    ),
    "export --log-file": ("export", "{pool}", "{tmp}/e", "--log-file", "{out}"),
    "merge --log-file": ("merge", "{pool}", "{pool}", "--into", "{tmp}/c", "--log-file", "{out}"),
}


@pytest.mark.parametrize("what", OUTPUTS)
def test_an_output_that_cannot_be_written_exits_8_from_every_command(grown, tmp_path, what):
    src, pool, afile = grown
    out = afile / "sub"
    args = [a.format(src=src, pool=pool, afile=afile, out=out, tmp=tmp_path) for a in OUTPUTS[what]]
    r = run_cli(*args)
    assert r.returncode == 8, (what, r.returncode, r.stderr)
    assert r.stderr.startswith("datapool: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert str(afile) in r.stderr, r.stderr
    assert not (tmp_path / "p" / "runs.json").exists()  # a run stops before any work


# A failing call of each command that has --json, and the exit code it has without --json.
FAILURES = {
    "status, no pool": (("status", "{tmp}/nope"), 4),
    "ls, no such run": (("ls", "{pool}", "--run", "9"), 4),
    "ls, no POOL (argparse)": (("ls",), 4),
    "gc, no pool": (("gc", "{tmp}/nope"), 4),
    "export, unwritable": (("export", "{pool}", "{afile}/sub"), 8),
    "merge, no pool": (("merge", "{tmp}/nope", "{pool}", "--into", "{tmp}/c"), 4),
    "run, no source": (("run", "{tmp}/nope", "--pool", "{tmp}/p", "--n-samples", "1"), 5),
    "run, option before the command": (("-q", "status", "{pool}"), 4),
}


@pytest.mark.parametrize("what", FAILURES)
def test_a_failure_under_json_is_one_json_object_with_the_same_exit_code(grown, tmp_path, what):
    """Before: `datapool status POOL --json` failed with the text line alone, which a script
    reading JSON could not parse."""
    src, pool, afile = grown
    args, code = FAILURES[what]
    args = tuple(a.format(src=src, pool=pool, afile=afile, tmp=tmp_path) for a in args)
    plain = run_cli(*args)
    assert plain.returncode == code, plain.stderr
    assert plain.stderr.startswith("datapool") and "error: " in plain.stderr
    r = run_cli(*args, "--json")
    assert r.returncode == code, r.stderr
    assert r.stdout == ""  # stdout holds a result, never an error
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    error = json.loads(lines[0])["error"]
    assert error["exit_code"] == code
    assert error["kind"] == {4: "usage", 5: "source", 8: "output_write"}[code]
    # The message is the text line's, without its prefix.
    assert plain.stderr.rstrip("\n").endswith(error["message"]), (plain.stderr, error)


def test_an_error_of_the_json_output_path_is_json_too(grown, tmp_path):
    """`--log-file s3://...` and `--model s3://...` under --json: the usage error as JSON."""
    src, _, _ = grown
    r = run_cli(
        "run", src, "--pool", tmp_path / "p", "--n-samples", 1, "--model", "s3://b/m.onnx", "--json"
    )
    assert r.returncode == 4 and r.stdout == ""
    assert "s3:// is not supported" in json.loads(r.stderr)["error"]["message"]


@pytest.mark.parametrize(
    "args",
    [
        ("run", "{src}", "--pool", "{tmp}/p", "--n-samples", "1", "--model", "s3://bucket/m.onnx"),
        ("run", "{src}", "--pool", "{tmp}/p", "--n-samples", "1", "--log-file", "s3://bucket/log"),
        ("export", "{pool}", "{tmp}/e", "--log-file", "s3://bucket/log"),
        ("run", "{src}", "--pool", "{tmp}/p", "--n-samples", "1", "--selection", "s3://b/s.json"),
        (
            "run",
            "{src}",
            "--pool",
            "{tmp}/p",
            "--n-samples",
            "1",
            "--relevant-filenames-file",
            "s3://b/names.txt",
        ),
    ],
    ids=[
        "--model",
        "run --log-file",
        "export --log-file",
        "--selection",
        "--relevant-filenames-file",
    ],
)
def test_s3_where_only_a_local_file_will_do_says_so(grown, tmp_path, args):
    """Before: `--model s3://b/m.onnx` said 'model file s3:/b/m.onnx does not exist' (exit 6),
    `--log-file s3://...` 'cannot write it (No such file or directory)': nothing said that
    s3:// is not supported there."""
    src, pool, _ = grown
    args = tuple(a.format(src=src, pool=pool, tmp=tmp_path) for a in args)
    r = run_cli(*args)
    assert r.returncode == 4, r.stderr
    flag = next(a for a in args if a.startswith("--") and a != "--pool" and a != "--n-samples")
    assert r.stderr.startswith(f"datapool: error: {flag} s3://"), r.stderr
    assert "s3:// is not supported" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "p").exists()


LONG = "/tmp/" + "abcdefghij/" * 500 + "x.jpg"  # 5,510 bytes: past PATH_MAX (4,096)


@pytest.mark.parametrize(
    "args",
    [
        ("status", LONG),
        ("ls", LONG, "--json"),
        ("run", LONG, "--pool", "{tmp}/p", "--n-samples", "1"),
        ("run", "{src}", "--pool", LONG, "--n-samples", "1"),
        ("run", "{src}", "--pool", "{tmp}/p", "--n-samples", "1", "--export", LONG),
        ("run", "{src}", "--pool", "{tmp}/p", "--n-samples", "1", "--model", LONG),
        ("export", "{pool}", LONG),
        ("report", "{pool}", "--out", LONG),
        ("export", "{pool}", "{tmp}/e", "--log-file", LONG),
        ("status", "/tmp/" + "n" * 300 + "/pool"),
    ],
)
def test_a_path_past_the_systems_limit_is_one_short_line(grown, tmp_path, args):
    """Before: OSError's traceback (ENAMETOOLONG), its last line holding the whole 5 KB path.
    Now a usage error whose line keeps the path's head and tail."""
    src, pool, _ = grown
    args = tuple(a.format(src=src, pool=pool, tmp=tmp_path) for a in args)
    r = run_cli(*args)
    assert r.returncode == 4, r.stderr[-300:]
    assert r.stderr.count("\n") == 1 and len(r.stderr) < 600, r.stderr
    assert "Traceback" not in r.stderr
    assert "longer than" in r.stderr, r.stderr
    if "--json" not in args:
        assert "/tmp/abcdefghij/" in r.stderr or "/tmp/nnn" in r.stderr  # its head
        assert "x.jpg" in r.stderr or "/pool" in r.stderr  # and its tail


def test_shorten_words_keeps_head_and_tail():
    from datapool.specs import shorten_words

    word = "/a" * 1000 + "/end.jpg"
    text = shorten_words(f"cannot read {word}: gone")
    assert text.startswith("cannot read /a/a") and text.endswith("/end.jpg: gone")
    assert "characters left out" in text and len(text) < 250
    assert shorten_words("short /x/y: fine") == "short /x/y: fine"


def test_an_interrupt_under_json_is_one_json_object(grown, tmp_path):
    """Ctrl-C during a `run --json`: exit 130 as without --json, and its line as the JSON
    object (kind `interrupted`), nothing on stdout."""
    import signal

    from ._robust import Proc, cli_args

    src, _, _ = grown
    pool = tmp_path / "pool"
    p = Proc(cli_args(src, pool, "--n-samples", 2, "--json"), DATAPOOL_TEST_PAUSE_AT="listed")
    p.wait_for("paused at listed")
    p.p.send_signal(signal.SIGINT)
    assert p.finish(timeout=60) == 130, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if not ln.startswith("datapool-test:")]
    assert [json.loads(ln) for ln in lines] == [
        {
            "error": {
                "kind": "interrupted",
                "message": "interrupted (SIGINT); the pool is as it was before this run",
                "exit_code": 130,
            }
        }
    ], p.stderr
    assert p.out == ""


POOL_COMMANDS = {  # each command that reads a pool, with {pool} for it
    "status": ("status", "{pool}"),
    "ls": ("ls", "{pool}"),
    "export": ("export", "{pool}", "{tmp}/e"),
    "report": ("report", "{pool}", "--out", "{tmp}/r.html"),
    "merge": ("merge", "{pool}", "{good}", "--into", "{tmp}/c"),
    "run": ("run", "{src}", "--pool", "{pool}", "--n-samples", "1"),
}


@pytest.mark.parametrize(
    ("mistake", "cmd"),
    [
        (mistake, cmd)
        for mistake in ("no pool", "not a pool", "corrupt pool")
        for cmd in POOL_COMMANDS
        if cmd != "run" or mistake != "no pool"  # run makes a pool in a new folder
    ],
)
def test_a_bad_pool_exits_alike_from_every_command(grown, tmp_path, mistake, cmd):
    """The walk for the pool every command reads (these agreed already; kept so they stay so):
    a missing folder (but for `run`, which makes the pool there) and a folder that holds files
    but no pool are usage errors (4); a malformed runs.json is a corrupt pool (2), named with
    its line and column."""
    src, good, _ = grown
    pool = tmp_path / "pool"
    if mistake == "not a pool":
        write_media(pool / "photo.jpg", seed=5)
    elif mistake == "corrupt pool":
        import shutil

        shutil.copytree(good, pool)
        (pool / "runs.json").write_text("{bad\n")
    args = [a.format(pool=pool, good=good, src=src, tmp=tmp_path) for a in POOL_COMMANDS[cmd]]
    r = run_cli(*args)
    assert r.returncode == (2 if mistake == "corrupt pool" else 4), r.stderr
    assert r.stderr.startswith("datapool: error: ") and r.stderr.count("\n") == 1, r.stderr
    if mistake == "corrupt pool":
        assert "runs.json: line 1, column 2" in r.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_log_file_whose_disk_fills_says_so_once(grown, tmp_path):
    """`--log-file` on a full disk (/dev/full: it opens, every write fails) printed logging's
    '--- Logging error ---' and a traceback for each line; now one warning, and the command's
    own work and exit code are as without the log."""
    _, pool, _ = grown
    r = run_cli("export", pool, tmp_path / "e", "--log-file", "/dev/full", "-v")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Logging error" not in r.stderr, r.stderr
    assert r.stderr.count("--log-file /dev/full: cannot write it (No space left on device)") == 1
    assert (tmp_path / "e" / "selected_filenames.txt").is_file()


def test_a_pool_path_that_is_a_file_exits_8_as_an_export_dest_does(grown, tmp_path):
    # README: 8 is "a file where a folder is needed", for the pool as for an output; `run
    # --pool FILE` exited 4 ("pool path ... exists and is not a folder") while `export POOL
    # FILE` exits 8.
    src, _, afile = grown
    before = afile.read_bytes()
    r = run_cli("run", src, "--pool", afile, "--n-samples", "1")
    assert r.returncode == 8, (r.returncode, r.stderr)
    assert r.stderr == (
        f"datapool: error: cannot use {afile} as the pool: it is a file, not a folder; give "
        "--pool a new folder or a pool's folder\n"
    )
    assert afile.read_bytes() == before
