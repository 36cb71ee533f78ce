"""The mistakes a new user makes with the commands after `run` (export, ls, report, merge) and
with flags, through the real CLI on a pool built from real media: each gets one line that names
the flag and the fix, or does what the user meant; never a traceback or a silent wrong result."""

from __future__ import annotations

import json
import shutil

import pytest

from datapool.pool.layout import is_local_state

from .conftest import cli_here, run_cli, write_media


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """(source, pool): 5 images and a clip, two runs (the second tagged `night`)."""
    root = tmp_path_factory.mktemp("grown")
    src = root / "src"
    for i in range(4):
        write_media(src / f"img{i}.jpg", seed=i)
    write_media(src / "cam" / "clip.mp4", seed=30, frames=8)
    pool = root / "pool"
    run_cli("run", src, "--pool", pool, "--n-samples", 3, "--no-thumbnails", check=True)
    write_media(src / "late.png", seed=40)
    write_media(src / "cam" / "late.mp4", seed=41, frames=6)
    run_cli("run", src, "--pool", pool, "--n-samples", 2, "--tag", "night", check=True)
    return src, pool


def copy_of(pool, tmp_path):
    return shutil.copytree(pool, tmp_path / "pool")


@pytest.mark.parametrize("target", ["runs.json", "ledger.csv", "runs/0/report.html", "runs"])
def test_report_out_among_the_pools_files_is_refused(grown, tmp_path, target):
    """`report --out POOL/runs.json` wrote the page over runs.json: the pool could no longer be
    opened (exit 2 ever after)."""
    pool = copy_of(grown[1], tmp_path)
    before = {p: p.read_bytes() for p in pool.rglob("*") if p.is_file()}
    r = run_cli("report", pool, "--out", pool / target)
    assert r.returncode == 4, r.stderr
    assert r.stderr.startswith(f"datapool: error: --out {pool / target}")
    assert "among the pool's own files" in r.stderr and r.stderr.count("\n") == 1
    assert {p: p.read_bytes() for p in pool.rglob("*") if p.is_file()} == before
    assert run_cli("status", pool).returncode == 0


def test_report_out_in_the_pools_folder_is_fine(grown, tmp_path):
    pool = copy_of(grown[1], tmp_path)
    r = run_cli("report", pool, "--out", pool)
    assert r.returncode == 0, r.stderr
    assert (pool / "pool-report.html").is_file()


def test_a_tag_of_digits_is_refused(grown, tmp_path):
    """`run --tag 2026` was taken, and then `ls`/`export --run 2026` could not name that run
    ("the pool has runs 0..2 (..., 2026)"); `--tag 1` made `--run 1` export run 1, not it."""
    src, pool = grown
    pool = copy_of(pool, tmp_path)
    r = run_cli("run", src, "--pool", pool, "--n-samples", 1, "--tag", "2026")
    assert r.returncode == 4
    assert r.stderr == (
        "datapool: error: --tag '2026' is all digits, which --run would read as a run's index; "
        "choose a name such as 'night-2026'\n"
    )


def test_run_names_a_tag_of_digits_an_older_pool_holds(grown, tmp_path):
    import json

    pool = copy_of(grown[1], tmp_path)
    runs = json.loads((pool / "runs.json").read_text())
    runs["runs"][1]["tag"] = "2026"
    (pool / "runs.json").write_text(json.dumps(runs))
    listed = run_cli("ls", pool, "--run", "2026", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {x["run"] for x in json.loads(listed.stdout)} == {1}
    runs["runs"][1]["tag"] = "0"  # run 0's index, run 1's tag: which one is meant?
    (pool / "runs.json").write_text(json.dumps(runs))
    for cmd in (("ls", pool), ("export", pool, tmp_path / "out")):
        r = run_cli(*cmd, "--run", "0")
        assert r.returncode == 4
        assert r.stderr == (
            "datapool: error: --run 0: run 0 has that index and run 1 that tag; "
            "give --run initial-tag or --run 1\n"
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("which", ["\u00b2", "\u0661"])  # superscript two; Arabic-Indic one
def test_run_of_non_ascii_digits_is_no_index(grown, which):
    r = run_cli("ls", grown[1], "--run", which)
    assert r.returncode == 4 and "Traceback" not in r.stderr
    assert (
        r.stderr == f"datapool: error: --run {which}: the pool has runs 0..1 (initial-tag, night)\n"
    )


def test_an_export_stopped_by_ctrl_c_records_what_it_wrote(grown, tmp_path):
    """Ctrl-C during `datapool export` into a new folder left its files unrecorded: a later
    `--mirror` refused the folder ("not an export folder") and could never remove them."""
    import json
    import signal
    import sys

    from ._robust import Proc
    from .conftest import PACKAGE_PATH

    _, pool = grown
    out = tmp_path / "out"
    p = Proc(
        [sys.executable, "-m", "datapool", "export", pool, out, "--all"],
        DATAPOOL_TEST_PAUSE_AT="exported:*#2",
        PYTHONPATH=PACKAGE_PATH,
    )
    try:
        p.wait_for("paused at exported:")
        p.p.send_signal(signal.SIGINT)
    finally:
        rc = p.finish()
    assert rc == 130
    assert p.stderr.endswith(
        "datapool: interrupted (SIGINT); the export is incomplete (no new selected_filenames.txt): "
        "run it again to finish it\n"
    )
    assert not (out / "selected_filenames.txt").exists()
    on_disk = {
        q.relative_to(out).as_posix() for q in out.rglob("*") if q.is_file() and q.name[0] != "."
    }
    assert on_disk and json.loads((out / ".datapool-export-files.json").read_text()) == {
        "files": sorted(on_disk)
    }
    r = run_cli("export", pool, out, "--run", "night", "--mirror", "--json")
    assert r.returncode == 0, r.stderr
    night = json.loads(run_cli("ls", pool, "--run", "night", "--json", check=True).stdout)
    assert json.loads(r.stdout)["left"] == 0
    assert {
        q.relative_to(out).as_posix() for q in out.rglob("*") if q.is_file() and q.name[0] != "."
    } == {x["filename"] for x in night} | {"selected_filenames.txt"}


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("run", "{src}", "--pool", "{pool}", "--n_samples", "5"),
            "datapool run: error: unrecognized arguments: --n_samples 5; did you mean "
            "--n-samples? (see `datapool run --help`)",
        ),
        (
            ("export", "{pool}", "{tmp}/out", "--mirrror"),
            "datapool export: error: unrecognized arguments: --mirrror; did you mean --mirror? "
            "(see `datapool export --help`)",
        ),
        (
            ("status", "{pool}", "--jsn"),
            "datapool status: error: unrecognized arguments: --jsn; did you mean --json? "
            "(see `datapool status --help`)",
        ),
        (
            ("ls", "{pool}", "-q"),
            "datapool ls: error: unrecognized arguments: -q (see `datapool ls --help`)",
        ),
        (
            ("-q", "ls", "{pool}"),
            "datapool: error: unrecognized arguments: -q; a command's options go after its name "
            "(see `datapool ls --help`)",
        ),
        (
            ("model", "list", "--json"),
            "datapool model list: error: unrecognized arguments: --json "
            "(see `datapool model list --help`)",
        ),
    ],
)
def test_an_unknown_flag_names_the_commands_help_and_the_flag_meant(grown, tmp_path, args, line):
    """A typo in a command's flag said `see \\`datapool --help\\``, whose page lists no flag of
    any command, and nothing of the flag meant."""
    src, pool = grown
    r = run_cli(*(a.format(src=src, pool=pool, tmp=tmp_path) for a in args))
    assert (r.returncode, r.stderr) == (4, line + "\n")
    assert not (tmp_path / "out").exists()


def test_a_lock_held_before_its_record_is_written_names_no_pid(grown, tmp_path):
    """The holder writes its pid just after it takes the flock: a command in between said
    'locked by another datapool run (held by pid None on None)'."""
    import subprocess
    import sys

    pool = copy_of(grown[1], tmp_path)
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(pool / ".datapool.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = run_cli("merge", pool, grown[1], "--into", tmp_path / "c")
    finally:
        holder.kill()
        holder.communicate()
    assert (r.returncode, r.stderr) == (
        3,
        f"datapool: error: pool {pool} is locked by another datapool run; wait for it to finish\n",
    )


@pytest.mark.parametrize("where", ["", "images"])
def test_export_into_another_pool_is_refused(grown, tmp_path, where):
    """`datapool export POOL OTHER_POOL` wrote its samples and selected_filenames.txt among
    OTHER_POOL's files (only the exported pool's own folder was refused)."""
    src, pool = grown
    other = tmp_path / "other"
    run_cli("run", src, "--pool", other, "--n-samples", 1, "--no-thumbnails", check=True)
    before = sorted(p.relative_to(other) for p in other.rglob("*"))
    dest = other / where if where else other
    r = run_cli("export", pool, dest)
    assert r.returncode == 4
    assert r.stderr == (
        f"datapool: error: cannot export to {dest}: it is another pool's folder or inside it "
        f"({other}), and exported files would mix with the pool's own; export to a folder apart "
        "from the pool\n"
    )
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before


@pytest.mark.parametrize("which", ["A", "B"])
def test_merge_into_a_folder_inside_a_pool_is_refused(grown, tmp_path, which):
    """`merge A B --into A/merged` made a pool inside A's folder."""
    a = copy_of(grown[1], tmp_path)
    b = shutil.copytree(a, tmp_path / "b")
    into = (a if which == "A" else b) / "merged"
    r = run_cli("merge", a, b, "--into", into)
    assert r.returncode == 4
    assert r.stderr == (
        f"datapool: error: --into {into} is inside pool {which} ({a if which == 'A' else b}); "
        "merge into a folder apart from both pools\n"
    )
    assert not into.exists()


@pytest.mark.parametrize(
    "cmd", [("run",), ("export", "{pool}", "{tmp}/out"), ("merge", "{pool}", "{b}", "--into")]
)
def test_log_file_among_the_pools_files_is_refused(grown, tmp_path, cmd):
    """`--log-file POOL/runs.json` appended the log to runs.json (and `--log-file C/ledger.csv`
    of a merge to the new pool's ledger): the pool could no longer be opened."""
    src, pool = grown
    pool = copy_of(pool, tmp_path)
    b = shutil.copytree(pool, tmp_path / "b")
    if cmd[0] == "run":  # a run on the pool; the log in the pool it names
        args, log, owner = ("run", src, "--pool", pool, "--n-samples", 1), pool / "runs.json", pool
    elif cmd[0] == "merge":  # the log among the files of the pool the merge makes
        into = tmp_path / "c"
        args, log, owner = ("merge", pool, b, "--into", into), into / "ledger.csv", into
    else:  # a pool the command does not name
        args = tuple(a.format(pool=pool, tmp=tmp_path) for a in cmd)
        log, owner = b / "ledger.csv", b
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    r = run_cli(*args, "--log-file", log)
    assert r.returncode == 4
    rel = log.relative_to(owner).as_posix()
    assert r.stderr == (
        f"datapool: error: --log-file {log}: {rel} is among the pool's own files ({owner}), "
        "which it could damage; give a path outside them\n"
    )
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("new_files", [False, True])
def test_a_moved_source_is_recorded_and_exported_from(grown, tmp_path, new_files):
    """After the source folder moved, `run NEW --source-moved` with nothing new committed nothing:
    the next run stopped again ('grown from OLD, not NEW'), and `export` read OLD ('source folder
    ... does not exist') even after a run from NEW had committed."""
    import json

    src, pool = grown
    pool = copy_of(pool, tmp_path)
    moved = shutil.copytree(src, tmp_path / "moved")  # the old place is gone, as after a `mv`
    stale = json.loads((pool / "runs.json").read_text())
    for r in stale["runs"]:
        r["source"] = str(tmp_path / "gone")
    (pool / "runs.json").write_text(json.dumps(stale))
    if new_files:
        write_media(moved / "later.jpg", seed=50)
    r = cli_here("run", moved, "--pool", pool, "--n-samples", 1, "--source-moved")
    assert r.returncode == 0, r.stderr
    again = cli_here("run", moved, "--pool", pool, "--n-samples", 1)
    assert again.returncode == 0, again.stderr
    assert "nothing new" in again.stdout
    status = json.loads(cli_here("status", pool, "--json", check=True).stdout)
    assert status["sources"] == [str(moved)]  # (it listed the old place too)
    out = tmp_path / "out"
    exported = cli_here("export", pool, out, "--all", "--json")
    assert exported.returncode == 0, exported.stderr
    samples = json.loads(cli_here("ls", pool, "--json", check=True).stdout)
    assert json.loads(exported.stdout)["written"] == len(samples) >= 5
    for x in samples:
        if x["frame"] is None:
            assert (out / x["filename"]).read_bytes() == (moved / x["source_file"]).read_bytes()


def test_a_proportion_given_as_a_percentage_says_the_fraction(grown, tmp_path):
    """`--proportion 50` (meaning 50%) said only 'must be above 0 and at most 1, got 50.0'."""
    r = run_cli("run", grown[0], "--pool", tmp_path / "p", "--proportion", "50")
    assert (r.returncode, r.stderr) == (
        4,
        "datapool: error: --proportion must be above 0 and at most 1, got 50.0 (a fraction: 0.5 "
        "for 50%)\n",
    )


def test_a_proportion_with_a_percent_sign_says_the_fraction(grown, tmp_path):
    """`--proportion 10%` said only "invalid float value: '10%'"; `--proportion 10` already
    named the fraction meant, 0.1."""
    r = run_cli("run", grown[0], "--pool", tmp_path / "p", "--proportion", "12.5%")
    assert (r.returncode, r.stderr) == (
        4,
        "datapool run: error: argument --proportion: invalid float value: '12.5%' (a fraction: "
        "--proportion 0.125 for 12.5%) (see `datapool run --help`)\n",
    )


def test_report_out_dash_writes_the_page_to_stdout(grown, tmp_path):
    """`report POOL --out -` wrote a file named '-' (and said so), where stdout was meant."""
    import os
    import subprocess
    import sys

    from .conftest import PACKAGE_PATH

    pool = grown[1]
    r = subprocess.run(
        [sys.executable, "-m", "datapool", "report", str(pool), "--out", "-"],
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PACKAGE_PATH},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "-").exists()
    run_cli("report", pool, "--out", tmp_path / "page.html", check=True)
    assert r.stdout == (tmp_path / "page.html").read_bytes()


def test_verbose_export_and_merge_say_their_time(grown, tmp_path):
    """-v said nothing at all for export and merge, though its help promises each phase's time."""
    import re

    pool = grown[1]
    b = shutil.copytree(pool, tmp_path / "b")
    for cmd, what in (
        (("export", pool, tmp_path / "out"), "export"),
        (("merge", pool, b, "--into", tmp_path / "c"), "merge"),
    ):
        r = run_cli(*cmd, "-v")
        assert r.returncode == 0, r.stderr
        assert re.fullmatch(rf"datapool: times: {what} \d+\.\d\d s\n", r.stderr), r.stderr
    assert run_cli("export", pool, tmp_path / "out2").stderr == ""


def test_export_from_a_wrong_source_does_not_say_to_give_source(grown, tmp_path):
    """With `--source` given (the wrong folder), each sample was refused as 'no longer in the
    source (...; give --source if the source moved)': the flag the user had just given."""
    import json

    _, pool = grown
    wrong = tmp_path / "wrong"
    write_media(wrong / "other.jpg", seed=60)
    r = run_cli("export", pool, tmp_path / "out", "--source", wrong, "--json")
    assert r.returncode == 1
    reasons = {x["reason"] for x in json.loads(r.stdout)["refused"]}
    assert reasons == {"not in the --source given (is it the folder the pool was grown from?)"}
    text = run_cli("export", pool, tmp_path / "out", "--source", wrong)
    assert "(2 not in --source)" in text.stdout.splitlines()[1]


def test_a_min_distance_no_candidate_reaches_says_how_far_the_farthest_is(tmp_path):
    """`--min-distance 1.5` past what the model's embeddings reach (the default model's are at
    most sqrt(2) apart) committed 'selected 0 (stopped: min_distance)' and put the new files in
    the ledger, which later runs skip, with no word of how far the candidates were. The run says
    the farthest one's distance: the first pick of the same run with --n-samples 1."""
    src = tmp_path / "src"
    for i in range(3):
        write_media(src / f"img{i}.jpg", seed=i)
    pool = tmp_path / "pool"
    cli_here("run", src, "--pool", pool, "--n-samples", 3, check=True)
    for i in range(3):
        write_media(src / f"new{i}.png", seed=60 + i)
    ref = shutil.copytree(pool, tmp_path / "ref")
    cli_here("run", src, "--pool", ref, "--n-samples", 1, check=True)
    (pick,) = json.loads((ref / "runs" / "1" / "report.json").read_text())["selected"]
    r = cli_here("run", src, "--pool", pool, "--min-distance", 1.5, check=True)
    assert "selected  0 as run-1 (stopped: min_distance)" in r.stdout, r.stdout
    assert (
        f"datapool: warning: --min-distance 1.5 selected nothing: the farthest new sample is "
        f"{pick['min_distance']:.4f} from the pool. Its files are recorded as processed and later "
        "runs will not consider them again; to reconsider every file, run with --process-all\n"
    ) in r.stderr, r.stderr


def test_a_pool_in_gs_is_refused_in_one_line(tmp_path) -> None:
    """gs:// is read as a source, never kept as a pool: every command that takes a POOL says
    where to keep it. Before, `report gs://b/p` said 'no pool at gs:/b/p: there is no such
    folder', and `merge` to copy this machine's copy of a gs:// pool, which none has."""
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    for args in (
        ("run", src, "--pool", "gs://bucket/pool", "--n-samples", "1"),
        ("status", "gs://bucket/pool"),
        ("export", "gs://bucket/pool", tmp_path / "out"),
        ("report", "gs://bucket/pool"),
        ("merge", "gs://bucket/pool", tmp_path / "b", "--into", tmp_path / "c"),
    ):
        r = run_cli(*args)
        assert r.returncode == 4, r.stderr
        assert r.stderr.endswith(
            "error: pool gs://bucket/pool: a pool cannot be kept in gs://; keep the pool "
            "in a local folder or in s3://bucket/prefix (gs:// works as a source)\n"
        ), args
        assert r.stderr.count("\n") == 1


def test_a_pool_given_without_pool_flag_is_named(tmp_path):
    """`run SRC P --n-samples 5` said only "the following arguments are required: --pool",
    leaving the user to find the word argparse did not place."""
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    r = run_cli("run", src, tmp_path / "P", "--n-samples", 5)
    assert r.returncode == 4, r.stderr
    assert f"--pool is required; did you mean --pool {tmp_path / 'P'}?" in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "P").exists()


def committed(folder):
    """A pool's committed files and their bytes (its local caches and lock left out)."""
    return {
        p: p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not is_local_state(p.relative_to(folder).as_posix())
    }


def test_a_history_snapshot_is_read_but_never_written(grown, tmp_path):
    """`run --pool POOL/history/<snapshot>` grew the snapshot as a pool (and rm/undo changed it):
    the record of the pool as it was, which status and Pool.open read, changed unseen. A page
    or a log written into it is refused the same way."""
    src, pool = grown
    pool = copy_of(pool, tmp_path)
    write_media(src / "later.jpg", seed=77)
    try:
        args = ("--n-samples", 1, "--no-thumbnails")
        run_cli("run", src, "--pool", pool, *args, "--keep-history", check=True)
    finally:
        (src / "later.jpg").unlink()
    (snap,) = (pool / "history").iterdir()
    before = committed(snap)
    for cmd in (
        ("run", src, "--pool", snap, *args),
        ("run", src, "--pool", snap / "sub", *args),
        ("rm", snap, "--forget", "img0.jpg"),
        ("undo", snap),
        # `report --out` into it was refused as among a pool's files, without the `cp -r` line
        ("report", snap, "--out", snap),
        ("report", pool, "--out", snap / "runs" / "page.html"),
        ("export", snap, tmp_path / "out", "--log-file", snap / "export.log"),
    ):
        r = run_cli(*cmd)
        assert r.returncode == 4, (cmd, r.stderr)
        assert "a history snapshot of pool" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert f"cp -r {snap} NEWPOOL" in r.stderr
    assert committed(snap) == before
    assert not (snap / "sub").exists()
    assert run_cli("status", snap).returncode == 0
    assert run_cli("ls", snap).returncode == 0
    r = run_cli("export", snap, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "history snapshot" in r.stderr  # its run's report is not updated: said
    assert committed(snap) == before
