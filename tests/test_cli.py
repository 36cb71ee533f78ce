from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from .conftest import cli_here


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "datapool", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree_digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_import_is_light():
    code = (
        "import sys, datapool; heavy = {'numpy', 'av', 'onnxruntime', 'pandas', 'matplotlib', "
        "'tqdm', 'datapool._core'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_and_status(bucket, tmp_path):
    pool = tmp_path / "pool"
    r = cli("run", bucket, "--pool", pool, "--n-samples", 5)
    assert r.returncode == 0, r.stderr
    for word in (
        "listed    15 media files",
        "skipped   3",
        "embedded  30 samples",
        "selected  5 as initial-tag",
        "pool      5 samples",
        "cam/broken.mp4:",
    ):
        assert word in r.stdout
    s = cli("status", pool, "--json")
    assert s.returncode == 0
    summary = json.loads(s.stdout)
    assert summary["size"] == 5 and summary["ledger"] == {"files": 15, "ok": 12, "skipped": 3}
    assert summary["runs"][0]["tag"] == "initial-tag"
    text = cli("status", pool)
    assert "5 samples" in text.stdout and "initial-tag" in text.stdout
    again = cli("run", bucket, "--pool", pool, "--n-samples", 5, "--json")
    assert json.loads(again.stdout)["run"] is None


@pytest.mark.parametrize(
    ("edit", "code", "message"),
    [
        (
            lambda p: p.joinpath("datapool_latest.csv").write_text("filenames,labels\nx\n"),
            2,
            "datapool_latest.csv: line",
        ),
        (lambda p: p.joinpath("runs.json").write_text("{not json"), 2, "runs.json: line 1"),
        (lambda p: p.joinpath("ledger.csv").unlink(), 2, "ledger.csv: the ledger is missing"),
    ],
)
def test_malformed_pool_stops_with_one_line_and_leaves_the_pool_untouched(
    bucket, tmp_path, edit, code, message
):
    pool = tmp_path / "pool"
    assert cli("run", bucket, "--pool", pool, "--n-samples", 4).returncode == 0
    edit(pool)
    before = tree_digest(pool)
    for args in (("run", bucket, "--pool", pool, "--n-samples", 4), ("status", pool)):
        r = cli(*args)
        assert r.returncode == code, r.stderr
        assert r.stderr.startswith("datapool: error: ") and message in r.stderr
        assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert tree_digest(pool) == before


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("run", "{bucket}", "--pool", "{pool}"), "no selection budget", 4),
        (("run", "{tmp}/missing", "--pool", "{pool}", "--n-samples", "3"), "does not exist", 5),
        # a file or a glob where the folder goes: the line says how to use only those files
        (
            ("run", "{bucket}/img0.jpg", "--pool", "{pool}", "--n-samples", "3"),
            "is not a folder; give the folder that holds it (add --include 'img0.jpg'",
            5,
        ),
        (
            ("run", "{bucket}/*.jpg", "--pool", "{pool}", "--n-samples", "3"),
            "does not exist; to use some of a folder's files, give the folder and --include '*.jpg'",
            5,
        ),
        (("run", "{bucket}", "--pool", "{pool}", "--proportion", "2"), "at most 1", 4),
        (("run", "{bucket}", "--pool", "{pool}", "--min-distance", "-1"), "--min-distance must", 4),
        (("status", "{tmp}"), "is not a datapool pool", 4),
        # the source given as the pool: said so (it said only "no runs.json in it")
        (
            ("ls", "{bucket}"),
            "(no runs.json in it); it holds images or videos (a source folder?): give the folder "
            "a run was given as --pool",
            4,
        ),
        (("ls", "{tmp}/nowhere"), "no pool at", 4),
        (("status", "{tmp}/nowhere"), "/nowhere: there is no such folder", 4),
        # a flag and its value as typed (it read "--threads=100000 (--threads) is far past")
        (
            ("run", "{bucket}", "--pool", "{pool}", "--n-samples", "3", "--threads", "100000"),
            "error: --threads 100000 is far past this machine's",
            4,
        ),
        # argparse's own errors: the line, without run's 19 lines of usage above it
        (("run", "{bucket}", "--pool", "{pool}", "--n-samples", "abc"), "--n-samples: invalid", 4),
        (
            ("run", "{bucket}", "--pool", "{pool}", "--n-samples", "3", "--proportion", ".1"),
            "not allowed with argument --n-samples",
            4,
        ),
        # an empty path (an unset variable) is not the current folder
        (("status", ""), "argument POOL: the path is empty", 4),
        (("report", "{pool}", "--out", ""), "argument --out: the path is empty", 4),
        (("export", "{pool}", ""), "argument DEST: the path is empty", 4),
        # a selection file's errors name the file's fields, not the flags
        (
            ("run", "{bucket}", "--pool", "{pool}", "--selection", "{tmp}/sel.json"),
            "unknown field 'n_sample' (fields: n_samples, proportion_samples, strategies)",
            4,
        ),
    ],
)
def test_user_errors_are_one_line(bucket, tmp_path, args, message, code):
    fill = {"bucket": bucket, "pool": tmp_path / "pool", "tmp": tmp_path}
    (tmp_path / "sel.json").write_text(json.dumps({"n_sample": 3}))
    r = cli(*(a.format(**fill) for a in args))
    assert r.returncode == code
    assert message in r.stderr and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_a_folder_given_as_the_pool_that_holds_one_or_is_inside_one_names_it(bucket, tmp_path):
    """`datapool status SOURCE` where the pool is SOURCE/pool, or `status POOL/runs`, said only
    "is not a datapool pool (no runs.json in it)"; now the line names the pool."""
    src = tmp_path / "src"
    shutil.copytree(bucket, src)
    pool = src / "pool"
    assert cli("run", src, "--pool", pool, "--n-samples", 2).returncode == 0
    r = cli("status", src)
    assert r.returncode == 4 and r.stderr == (
        f"datapool: error: {src} is not a datapool pool (no runs.json in it); the pool in it: "
        f"{pool}\n"
    )
    r = cli("export", pool / "runs", tmp_path / "out")
    assert r.returncode == 4 and r.stderr.rstrip().endswith(
        f"(no runs.json in it); it is a folder inside the pool {pool}: give the pool's folder"
    ), r.stderr
    r = cli("status", pool / "runs.json")
    assert r.returncode == 4 and r.stderr.rstrip().endswith(
        f"(no runs.json in it); it is a file inside the pool {pool}: give the pool's folder"
    ), r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("status", tmp_path / "empty")
    assert r.stderr.rstrip().endswith("is not a datapool pool (no runs.json in it)"), r.stderr


def test_demo(tmp_path):
    r = cli("demo", tmp_path / "demo")
    assert r.returncode == 0, r.stderr
    pool = tmp_path / "demo" / "pool"
    runs = json.loads((pool / "runs.json").read_text())["runs"]
    assert [x["tag"] for x in runs] == ["initial-tag", "run-1"]
    for i in (0, 1):
        view = pool / "runs" / str(i) / "embedding_view.png"
        assert view.read_bytes()[:4] == b"\x89PNG"
        assert str(view) in r.stdout
    assert runs[0]["counts"]["skipped"] == 1  # the demo's deliberately broken video
    assert runs[1]["counts"]["new"] == 8 and runs[1]["counts"]["unchanged"] == 17
    # Each run says what it is, on purpose broken video included, as the command a user would
    # type; the end says what to do next.
    out = r.stdout.splitlines()
    bucket = tmp_path / "demo" / "bucket"
    assert "one broken video, on purpose" in out[0]
    assert (
        out[1].split()
        == f"datapool run {bucket} --pool {pool} --n-samples 24 --frame-stride 2".split()
    )
    assert any(line.startswith('== run 1: 8 "night" files added') for line in out)
    assert out[-2].split()[:3] == ["next", "datapool", "ls"]
    assert "datapool run YOUR_FOLDER --pool YOUR_POOL" in out[-1]
    # Again: one line that says how to make another (it said "give another folder").
    again = cli("demo", tmp_path / "demo")
    assert again.returncode == 4 and again.stderr == (
        f"datapool: error: {pool} already exists (an earlier demo): `datapool demo OTHER_DIR` "
        f"makes another (or remove {tmp_path / 'demo'})\n"
    )


def test_an_export_asked_of_a_run_with_nothing_new_says_how_to_make_it(bucket, tmp_path):
    pool, dest = tmp_path / "pool", tmp_path / "frames"
    assert cli("run", bucket, "--pool", pool, "--n-samples", 3).returncode == 0
    r = cli("run", bucket, "--pool", pool, "--n-samples", 3, "--export", dest)
    assert r.returncode == 0, r.stderr
    assert "nothing new" in r.stdout and not dest.exists()
    assert f"datapool export {pool} {dest} --all" in r.stdout  # (it said nothing of the export)
    assert cli("export", pool, dest, "--all").returncode == 0
    assert (dest / "selected_filenames.txt").read_text().count("\n") == 3


def test_report_open_without_a_browser_says_so(bucket, tmp_path):
    """On a server or in a container there is no browser: --open said nothing at all."""
    import os
    import shutil

    if any(shutil.which(b) for b in ("www-browser", "links", "elinks", "lynx", "w3m")):
        pytest.skip("a console web browser is installed: --open would start it")
    pool, page = tmp_path / "pool", tmp_path / "page.html"
    assert cli("run", bucket, "--pool", pool, "--n-samples", 3).returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run(
        [sys.executable, "-m", "datapool", "report", str(pool), "--out", str(page), "--open"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "BROWSER": "false"},  # the one browser there is fails, as none would
    )
    assert r.returncode == 0 and page.exists()
    assert r.stderr == (
        f"datapool: warning: --open: no web browser could be started here; open {page} in one\n"
    )


def test_importing_the_runner_module_keeps_datapool_run_a_function():
    code = (
        "import datapool.runner, datapool.cli, datapool.pool.merge, datapool.ingest.threaded, datapool; "
        "from datapool.runner import RunResult; "
        "assert callable(datapool.run) and datapool.run is datapool.runner.run, datapool.run; "
        "assert datapool.RunResult is RunResult"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_main_in_process_gives_the_signal_handlers_back(bucket, tmp_path):
    """A run installs its own SIGINT/SIGTERM handlers and ignores both once it has returned; a
    caller in the same process (a test, a script) gets its own back, so the processes it starts
    later do not inherit an ignored SIGINT (Ctrl-C tests after an in-process run failed so)."""
    import signal

    from datapool.cli import main

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "2", "-q"]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("args", [("ls",), ("ls", "--json"), ("status",)])
def test_a_closed_stdout_ends_quietly(bucket, tmp_path, args):
    # `datapool ls POOL | head -1`: the reader goes away before datapool has written. Like other
    # command-line tools it stops writing and exits 141 (128 + SIGPIPE), with no traceback and no
    # "Exception ignored" from the interpreter's last flush.
    pool = tmp_path / "pool"
    assert cli("run", bucket, "--pool", pool, "--n-samples", 5).returncode == 0
    p = subprocess.Popen(
        [sys.executable, "-m", "datapool", args[0], pool, *args[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stdout.close()  # before the child has started: every write it makes meets a closed pipe
    with p.stderr:
        err = p.stderr.read()
    assert p.wait(timeout=120) == 141, err
    assert err == ""


def test_a_refused_pool_folder_is_left_as_it_was(bucket, tmp_path):
    """`--pool SOURCE` and `--pool` a folder of someone's files: one line, exit 4, and not even
    a lock file left behind (the first took the lock in the source before it was refused)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine\n")
    for pool, message in (
        (bucket, "is the source folder itself"),
        (work, "holds files but no datapool pool (notes.txt)"),
    ):
        before = tree_digest(pool)
        names = sorted(p.name for p in pool.iterdir())
        r = cli("run", bucket, "--pool", pool, "--n-samples", 2)
        assert r.returncode == 4 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert tree_digest(pool) == before and sorted(p.name for p in pool.iterdir()) == names
    # The line names the flag and the fix (it said "the pool or export folder ... itself").
    r = cli("run", bucket, "--pool", bucket, "--n-samples", 2)
    assert r.stderr == (
        f"datapool: error: --pool {bucket} is the source folder itself: its files would be read "
        "as new media; give --pool another folder (one inside the source is fine: it is never "
        "listed)\n"
    )
    r = cli("run", bucket, "--pool", tmp_path / "p", "--n-samples", 2, "--export", bucket)
    assert r.returncode == 4 and f"error: --export {bucket} is the source folder" in r.stderr
    assert not (tmp_path / "p" / "runs.json").exists()


def test_a_source_with_no_media_says_so(tmp_path):
    empty = tmp_path / "typo"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here\n")
    r = cli("run", empty, "--pool", tmp_path / "pool", "--n-samples", 2)
    assert r.returncode == 0, r.stderr
    assert "holds no images or videos (only 1 other file): check the path" in r.stderr
    assert not (tmp_path / "pool").exists()


def test_a_pool_folder_with_only_desktop_clutter_is_taken(bucket, tmp_path):
    pool = tmp_path / "pool"
    (pool / "empty-sub").mkdir(parents=True)
    (pool / "Thumbs.db").write_bytes(b"\0")
    (pool / ".DS_Store").write_bytes(b"\0")
    r = cli("run", bucket, "--pool", pool, "--n-samples", 2)
    assert r.returncode == 0, r.stderr


def test_nothing_new_on_no_pool_says_no_pool_was_made(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("run", empty, "--pool", tmp_path / "pool", "--n-samples", 2)
    assert r.returncode == 0 and "nothing new: no pool was made at" in r.stdout, r.stdout


def test_a_strided_run_says_how_many_frames_it_decoded_for_its_samples(bucket, tmp_path):
    """The progress line counts decoded frames; with --frame-stride the result line says both,
    so that 30 frames read and 15 embedded do not look like frames lost."""
    r = cli("run", bucket, "--pool", tmp_path / "pool", "--n-samples", 5, "--frame-stride", 4)
    assert r.returncode == 0, r.stderr
    # 10 images, frames 0, 4, 8 of the 12-frame clip and 0, 4 of the 8-frame one
    assert "embedded  15 samples (of 30 frames decoded)\n" in r.stdout, r.stdout
    full = cli("run", bucket, "--pool", tmp_path / "full", "--n-samples", 5, "--json")
    out = json.loads(full.stdout)
    assert out["frames_decoded"] == out["counts"]["frames_embedded"] == 30
    assert (
        "embedded  30 samples\n"
        in cli("run", bucket, "--pool", tmp_path / "p3", "--n-samples", 5).stdout
    )


def test_ls_writes_a_sample_or_a_few_at_a_time(bucket, tmp_path, monkeypatch):
    # `datapool ls --json` of a 200,000-sample pool built every sample's dict and then the whole
    # text before writing a byte (546 MiB peak RSS); it now makes each sample's text as it comes
    # (191 MiB), the same text. (--json gathers that text, in memory up to 32 MiB and then in a
    # temporary file, to write it whole or not at all: test_s3_pool.py, test_ls_json_that_fails_
    # part_way_leaves_nothing_on_stdout; the text is written a sample at a time.)
    import json

    from datapool.cli import _json_list, main
    from datapool.pool.contents import Pool

    pool = tmp_path / "pool"
    assert main(["run", str(bucket), "--pool", str(pool), "--n-samples", "5", "-q"]) == 0
    samples = Pool.open(pool).samples()
    assert len(samples) == 5

    class Recorder:
        def __init__(self):
            self.parts: list[str] = []

        def write(self, text: str) -> int:
            self.parts.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    out = Recorder()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["ls", str(pool), "--json"]) == 0
    monkeypatch.undo()
    assert "".join(out.parts) == json.dumps(samples, indent=2) + "\n"
    longest = max(
        len(json.dumps(s, indent=2)) + 2 * json.dumps(s, indent=2).count("\n") + 4 for s in samples
    )
    out.parts = list(_json_list(iter(samples)))
    assert max(len(p) for p in out.parts) <= longest, [len(p) for p in out.parts]
    # The table is written LS_LINES lines at a time (a print a line cost 1.4 s of a
    # 200,000-sample pool's ls): the same text, in parts of at most that many samples.
    texts = []
    for at_once in (4096, 2):
        out = Recorder()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr("datapool.cli.LS_LINES", at_once)
        assert main(["ls", str(pool)]) == 0
        monkeypatch.undo()
        texts.append("".join(out.parts))
        samples_at_once = [p.count("\n") for p in out.parts if "-> " in p or ".jpg" in p]
        assert max(samples_at_once) == min(at_once, 5), out.parts
    assert texts[0] == texts[1] and texts[0].count("\n") == 7, texts


def test_a_count_of_one_is_said_in_the_singular(bucket, tmp_path, make_media):
    # "exported  1 samples to ...", from `run --export` and from `datapool export` alike.
    pool, out = tmp_path / "pool", tmp_path / "out"
    r = cli_here("run", bucket, "--pool", pool, "--n-samples", 1, "--export", out)
    assert r.returncode == 0, r.stderr
    assert f"exported  1 sample to {out}" in r.stdout.splitlines(), r.stdout
    assert f"pool      1 sample in {pool}" in r.stdout.splitlines(), r.stdout
    r = cli_here("status", pool)
    assert r.stdout.startswith(f"pool    {pool}: 1 sample, dimension "), r.stdout
    one_file = tmp_path / "one-file"
    make_media(one_file / "a.png", seed=3)
    assert cli_here("run", one_file, "--pool", tmp_path / "p1", "--n-samples", 1).returncode == 0
    assert "ledger  1 raw file: 1 ok, 0 skipped" in cli_here("status", tmp_path / "p1").stdout
    r = cli_here("export", pool, tmp_path / "again")
    assert r.returncode == 0, r.stderr
    assert f"exported  1 sample to {tmp_path / 'again'}" in r.stdout.splitlines(), r.stdout
    # A changed image whose one sample `datapool rm` keeps out: one frame decoded, none embedded.
    src, pool = tmp_path / "one", tmp_path / "pool1"
    make_media(src / "a.png", seed=1)
    assert cli_here("run", src, "--pool", pool, "--n-samples", 1).returncode == 0
    assert cli_here("rm", pool, "a.png").returncode == 0
    make_media(src / "a.png", seed=2)
    r = cli_here("run", src, "--pool", pool, "--n-samples", 1)
    assert r.returncode == 0, r.stderr
    assert "embedded  0 samples (of 1 frame decoded)" in r.stdout.splitlines(), r.stdout


def test_a_run_export_lists_20_refused_samples_at_most(tmp_path, make_media):
    """`run --export` printed a line for every refused sample (`datapool export` prints 20, then
    how many more): an export of thousands whose names were taken filled the summary."""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(23):
        make_media(src / f"img{i:02d}.png", seed=i)
        (out / f"img{i:02d}.png").mkdir(parents=True)  # a folder where the sample would go
    r = cli("run", src, "--pool", tmp_path / "pool", "--proportion", 1, "--export", out, "-q")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    refused = [line for line in lines if line.lstrip().startswith("refused 'img")]
    assert len(refused) == 20 and "is a folder" in refused[0], r.stdout
    assert "          ... and 3 more refused (--json lists them)" in lines, r.stdout
