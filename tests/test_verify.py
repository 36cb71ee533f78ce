"""`datapool verify POOL`: every part of a pool read, without its lock and without changing
anything, and every problem reported with its file, line and column.

Before it, a user who kept a pool for months had no way to check it short of a run, which stops
at the first problem, or never reads a part at all (a flipped digit in the CSV parses; a run maps
the sidecar, not the CSV). The pools here are made by real runs over real media, then damaged as
disks, people and killed processes damage them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

import datapool
from datapool import Pool, _core
from datapool.cli import main
from datapool.media import write_image, write_video

from ._robust import Proc, cli_args, lock_holder
from .conftest import PACKAGE_PATH, clip_frames, scene

CORRUPT = 2


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A pool of three runs: run 0 took 30 frames of two clips (more than 64 KiB of CSV and of
    sidecar, so the sidecar's cheap checks cover only their ends), runs 1 and 2 appended 3
    images each."""
    root = tmp_path_factory.mktemp("verify")
    src = root / "src"
    write_video(src / "cam" / "a.mp4", clip_frames(41, 24), fps=10)
    write_video(src / "cam" / "b.mp4", clip_frames(42, 24), fps=10)
    for i in range(2):
        write_image(src / f"img{i}.jpg", scene(900 + i))
    datapool.run(src, root / "pool", n_samples=30, progress=False)
    for run in (1, 2):
        for i in range(3):
            write_image(src / f"new{run}{i}.jpg", scene(910 + 10 * run + i))
        datapool.run(src, root / "pool", n_samples=3, progress=False)
    return {"src": src, "pool": root / "pool"}


@pytest.fixture
def pool(made, tmp_path) -> Path:
    """A copy of the pool, opened once so that its sidecar mirrors the copy's CSV (a copy has
    new inodes: the sidecar of the original is stale there)."""
    path = tmp_path / "pool"
    shutil.copytree(made["pool"], path)
    Pool.open(path)
    return path


def verify(capsys, *args: object) -> tuple[int, str, dict]:
    """`datapool verify ARGS` twice, as text and --json: (exit status, text, document)."""
    rc = main(["verify", *map(str, args)])
    text = capsys.readouterr().out
    rc_json = main(["verify", *map(str, args), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc_json == rc
    return rc, text, doc


def found(doc: dict, file: str, severity: str = "errors") -> list[dict]:
    return [p for p in doc[severity] if p["file"] == file]


def everything(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, local state (lock, sidecar) included."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def csv_lines(pool: Path) -> list[bytes]:
    return (pool / "datapool_latest.csv").read_bytes().split(b"\n")


def overwrite(path: Path, offset: int, data: bytes) -> None:
    """Change bytes in place (same inode), as a disk or an editor saving in place does."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def change_field(pool: Path, line: int, field: int) -> None:
    """Change one digit of embedding_`field` on `line` (1-based) of the pool CSV in place: the
    row still parses, to another value."""
    lines = csv_lines(pool)
    start = sum(len(x) + 1 for x in lines[: line - 1])
    row = lines[line - 1]
    at = sum(len(x) + 1 for x in row.split(b",")[: field + 1])  # past filenames and fields
    value = row.split(b",")[field + 1]
    digit = at + value.index(b".") + 1
    old = row[digit : digit + 1]
    overwrite(pool / "datapool_latest.csv", start + digit, b"5" if old != b"5" else b"6")


def test_a_clean_pool_is_ok_and_verify_changes_nothing(pool, capsys):
    before = everything(pool)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0, text
    assert text.splitlines()[-1] == "pool OK: 36 samples, 3 runs, every part checked", text
    assert doc["ok"] and doc["errors"] == [] and doc["warnings"] == [], doc
    # Run 0's rows too: a pool's first run records the sums of the files it wrote whole.
    assert doc["not_checked"] == [] and "unchecked" not in text, doc["not_checked"]
    assert doc["size"] == 36 and doc["runs"] == 3
    assert ".sidecar (36 rows bit for bit)" in doc["checked"]
    for name in ("datapool_latest.csv", "ledger.csv"):
        assert f"{name}: the bytes of runs 0, 1, 2, each against its commit's sum" in doc["checked"]
    assert everything(pool) == before  # not a byte written: no lock, no sidecar, no recovery


def test_a_csv_truncated_mid_row_is_reported_at_its_last_line(pool, capsys):
    path = pool / "datapool_latest.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-3000])  # the last row cut short, as a full disk or a bad copy leaves
    last = data[:-3000].count(b"\n") + 1
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    errors = found(doc, "datapool_latest.csv")
    assert {e["line"] for e in errors} == {last}, errors
    assert any("expected 512 columns, got" in e["message"] for e in errors), errors
    assert any("left it" in e["message"] and "truncated" in e["message"] for e in errors)
    assert f"error   datapool_latest.csv, line {last}: " in text


def test_a_flipped_digit_in_the_csv_is_found_by_line_and_column(pool, capsys):
    """The row still parses (a run would take the new value silently); the sidecar written from
    the committed CSV, and run 2's recorded SHA-256 of the rows it appended, tell."""
    change_field(pool, 15, 7)  # a row of run 0: the sidecar alone holds its committed value
    n = len(csv_lines(pool)) - 1  # rows + header: the last row is on line n
    change_field(pool, n, 3)  # a row of run 2
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    at = {(e["line"], e["column"]) for e in found(doc, "datapool_latest.csv")}
    assert (15, "embedding_7") in at and (n, "embedding_3") in at, doc["errors"]
    sums = [e for e in doc["errors"] if "SHA-256" in e["message"]]
    assert len(sums) == 1 and "(run 2)" in sums[0]["message"], doc["errors"]
    assert sums[0]["line"] == n - 2  # run 2's three rows
    assert "datapool_latest.csv, line 15, column embedding_7: differs from the sidecar" in text


def test_a_flipped_byte_in_the_sidecar_that_a_run_would_use_is_an_error(pool, capsys):
    """A bit flip in the sidecar's embeddings outside the last 64 KiB that its cheap check
    covers: a run maps the sidecar's value instead of the CSV's."""
    side = pool / ".sidecar" / "embeddings.f32"
    dim = 510
    at = (1 * dim + 5) * 4 + 2  # row 1 (line 3), embedding_5, a byte of its mantissa
    with open(side, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x40]))
    opened = Pool.open(pool)  # what a run reads: the sidecar, trusted by its cheap checks
    parsed = _core.read_pool_csv(pool / "datapool_latest.csv")[1]
    assert opened.embeddings[1, 5] != parsed[1, 5]  # the stakes: a run uses the wrong value
    del opened
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    errors = found(doc, ".sidecar/embeddings.f32")
    assert [(e["line"], e["column"]) for e in errors] == [(3, "embedding_5")], doc["errors"]
    assert "a run maps these values instead of the CSV's" in errors[0]["message"]
    assert found(doc, "datapool_latest.csv") == []  # the CSV is as committed


def test_thumbnails_deleted_or_truncated(pool, capsys):
    (pool / "runs" / "1" / "thumbnails.bin").unlink()
    rc, text, doc = verify(capsys, pool)
    assert rc == 0, text  # thumbnails decorate the report: a warning
    warned = found(doc, "runs/1/thumbnails.bin", "warnings")
    assert len(warned) == 1 and "3 samples of run 1 have no thumbnail" in warned[0]["message"]
    segment = pool / "runs" / "2" / "thumbnails.bin"
    segment.write_bytes(segment.read_bytes()[:-100])  # damaged on disk: an error
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    errors = found(doc, "runs/2/thumbnails.bin")
    assert len(errors) == 1 and "truncated" in errors[0]["message"], doc


def test_damaged_reports_views_ledger_and_runs_json(pool, capsys):
    (pool / "runs" / "1" / "embedding_view.png").unlink()
    report = pool / "runs" / "0" / "report.json"
    report.write_text(report.read_text()[:500])
    ledger = pool / "ledger.csv"
    rows = ledger.read_text().splitlines(keepends=True)
    line = next(i for i, r in enumerate(rows, 1) if r.startswith("img1.jpg,"))
    cols = rows[line - 1].split(",")
    cols[6] = str(int(cols[6]) + 1)  # n_selected: one sample more than the CSV holds
    rows[line - 1] = ",".join(cols)
    ledger.write_text("".join(rows))
    runs = pool / "runs.json"
    runs.write_text(runs.read_text().replace('"run-2"', '"run-9"'))
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    assert found(doc, "runs/1/embedding_view.png", "warnings")
    (bad_json,) = found(doc, "runs/0/report.json")
    assert bad_json["line"] > 1 and "invalid JSON" in bad_json["message"]
    by_file = [e for e in found(doc, "ledger.csv") if e["column"] == "n_selected"]
    assert [(e["line"], "'img1.jpg'" in e["message"]) for e in by_file] == [(line, True)], doc
    per_run = [
        e for e in found(doc, "datapool_latest.csv") if "selected in that run" in e["message"]
    ]
    assert len(per_run) == 1 and "samples of run 0" in per_run[0]["message"], doc
    (edited,) = found(doc, "runs.json")
    assert "not as the last commit (run 2) left it" in edited["message"]


def test_a_lock_held_now_and_a_stale_one_of_a_killed_process(pool, capsys):
    holder = lock_holder(pool)
    try:
        rc, text, doc = verify(capsys, pool)  # verify takes no lock: it does not wait
    finally:
        holder.send_signal(signal.SIGKILL)  # killed holding it: its record stays
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert rc == 0, text
    (held,) = found(doc, ".datapool.lock", "warnings")
    assert f"a run holds the pool now (pid {holder.pid} " in held["message"]
    record = (pool / ".datapool.lock").read_bytes()
    rc, text, doc = verify(capsys, pool)
    assert rc == 0, text
    (stale,) = found(doc, ".datapool.lock", "warnings")
    assert f"a stale lock: pid {holder.pid} " in stale["message"], stale
    assert (pool / ".datapool.lock").read_bytes() == record  # reported, not removed


def test_an_interrupted_undo_is_reported_and_left_for_the_next_open(pool, capsys):
    p = Proc(
        [sys.executable, "-m", "datapool", "undo", str(pool)],
        DATAPOOL_TEST_PAUSE_AT="journal-written",
        PYTHONPATH=PACKAGE_PATH,
    )
    p.wait_for("datapool-test: paused at")
    p.kill()
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    (journal,) = found(doc, ".journal.json")
    assert "an interrupted `datapool undo`" in journal["message"], journal
    assert (pool / ".journal.json").exists()  # verify finishes nothing
    Pool.open(pool)  # the next open finishes it
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["size"] == 33 and doc["runs"] == 2, text


def test_legitimate_commits_after_runs_are_not_problems(made, pool, tmp_path, capsys):
    """rm, undo, a run that rewrote the pool, and a merge change the files the runs' undo
    records cover: verify checks what is still theirs, and finds nothing wrong."""
    touched = made["src"] / "img0.jpg"  # the same bytes, a new mtime: a run that finds
    was = touched.stat()  # nothing new records it (appended to the ledger), adding no run
    touched.touch()
    try:
        datapool.run(made["src"], pool, n_samples=3, progress=False)
    finally:
        os.utime(touched, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert len(Pool.open(pool).runs) == 3
    undo = json.loads((pool / "runs" / "2" / "report.json").read_text())["undo"]
    assert (pool / "ledger.csv").stat().st_size > undo["ledger"]["after"]  # appended to
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["warnings"] == [], text
    assert (
        "datapool_latest.csv: the bytes of runs 0, 1, 2, each against its commit's sum"
        in doc["checked"]
    )
    assert "ledger.csv: the bytes of runs 0, 1, 2, each against its commit's sum" in doc["checked"]
    name = csv_lines(pool)[20].split(b",")[0].decode()
    assert main(["rm", str(pool), name]) == 0
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["warnings"] == [], text
    other = tmp_path / "other"
    shutil.copytree(made["pool"], other)
    assert main(["undo", str(other)]) == 0
    capsys.readouterr()
    rc, text, doc = verify(capsys, other)
    assert rc == 0 and doc["warnings"] == [] and doc["runs"] == 2, text
    datapool.run(made["src"], other, n_samples=5, process_all=True, progress=False)
    rc, text, doc = verify(capsys, other)
    assert rc == 0 and doc["warnings"] == [], text
    assert doc["not_checked"] == [], doc["not_checked"]  # its rewrite's sums, as a first run's
    datapool.merge(pool, other, tmp_path / "merged")
    rc, text, doc = verify(capsys, tmp_path / "merged")
    assert rc == 0, text


PICKS_CHECKED = "against the picks their report.json lists"


def test_another_runs_folder_in_a_runs_place_is_an_error(made, pool, tmp_path, capsys):
    """runs/0 holding run 1's report.json and thumbnails (copied in by hand, or by a merge that
    raced): verify said "pool OK" with only a "samples have no thumbnail" warning. Now the
    report is checked against runs.json and against the CSV's samples of that run; a clean
    pool, one after `rm`, `undo`, --process-all and a merge are still OK with that check made."""
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and any(c.endswith(PICKS_CHECKED) for c in doc["checked"]), doc["checked"]
    swapped = tmp_path / "swapped"
    shutil.copytree(pool, swapped)
    shutil.rmtree(swapped / "runs" / "0")
    shutil.copytree(pool / "runs" / "1", swapped / "runs" / "0")
    rc, text, doc = verify(capsys, swapped)
    assert rc == CORRUPT, text
    (err,) = found(doc, "runs/0/report.json")
    assert "not run 0's report: its index is 1" in err["message"], err
    # A report without the run's index and times (hand-edited): its picks name the first
    # sample of run 0 that it does not list.
    report = json.loads((swapped / "runs" / "0" / "report.json").read_text())
    for key in ("index", "started_at", "finished_at"):
        del report[key]
    (swapped / "runs" / "0" / "report.json").write_text(json.dumps(report))
    rc, text, doc = verify(capsys, swapped)
    assert rc == CORRUPT, text
    first = csv_lines(swapped)[1].split(b",")[0].decode()
    (err,) = found(doc, "runs/0/report.json")
    assert f"does not list {first!r} among run 0's picks" in err["message"], err
    assert "line 2 labels it run 0" in err["message"], err
    # A pick whose row is gone from the CSV (no `datapool rm` took it out).
    shutil.rmtree(swapped / "runs" / "0")
    shutil.copytree(pool / "runs" / "0", swapped / "runs" / "0")
    lines = csv_lines(swapped)
    lost = lines[5].split(b",")[0].decode()
    (swapped / "datapool_latest.csv").write_bytes(b"\n".join(lines[:5] + lines[6:]))
    rc, text, doc = verify(capsys, swapped)
    assert rc == CORRUPT, text
    (err,) = found(doc, "runs/0/report.json")
    assert f"lists {lost!r} among run 0's picks, but datapool_latest.csv" in err["message"], err
    # After rm, undo, --process-all and a merge: the check made, and nothing found.
    name = csv_lines(pool)[20].split(b",")[0].decode()
    assert main(["rm", str(pool), name]) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    shutil.copytree(made["pool"], other)
    assert main(["undo", str(other)]) == 0
    capsys.readouterr()
    for each in (pool, other):
        rc, text, doc = verify(capsys, each)
        assert rc == 0 and any(c.endswith(PICKS_CHECKED) for c in doc["checked"]), text
    datapool.run(made["src"], other, n_samples=5, process_all=True, progress=False)
    rc, text, doc = verify(capsys, other)
    assert rc == 0 and any(c.endswith(PICKS_CHECKED) for c in doc["checked"]), text
    datapool.merge(pool, other, tmp_path / "merged")
    rc, text, doc = verify(capsys, tmp_path / "merged")
    assert rc == 0, text
    # A run merged twice: its report.json is the one of the pool it ran in (index 0 there).
    datapool.merge(other, tmp_path / "merged", tmp_path / "twice")
    rc, text, doc = verify(capsys, tmp_path / "twice")
    assert rc == 0, text


def test_not_a_pool_is_a_usage_error(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nothing")]) == 4
    assert "no pool at" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["fe693cb-local", "9f7a4d5-strat", "5247268-hist", "5247268-decoder", "dee5dec-decoder"]
)
def test_pools_of_earlier_datapools_have_no_problem_but_the_views_left_out(name, tmp_path, capsys):
    """tests/artifacts/compat/ holds pools as earlier datapools wrote them (no sums in their
    runs' reports, older ledgers, no thumbnails), less each run's embedding_view.png and
    report.html (their README): a view is a picture no command reads, so its absence is a
    warning (it made these pools, and any pool copied without its PNGs, DAMAGED, exit 2);
    nothing else is wrong, and verify says what it could not check."""
    pool = tmp_path / name
    shutil.copytree(Path(__file__).parent / "artifacts" / "compat" / name, pool)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["errors"] == [], text
    assert doc["size"] == 6
    # Their first runs recorded no sums: what those cover is said as unchecked (a run today
    # records them: test_the_rows_of_a_pools_first_run_are_checked_against_its_sums).
    assert doc["not_checked"] and "every part checked" not in text, doc["not_checked"]
    views = [w for w in doc["warnings"] if w["file"].endswith("embedding_view.png")]
    assert views and all(w["message"].startswith("missing (run ") for w in views), views
    assert "`datapool report POOL` draws the pool's map again" in views[0]["message"]
    assert all(
        w["file"].endswith(("embedding_view.png", "report.html", "thumbnails.bin"))
        for w in doc["warnings"]
    ), doc["warnings"]


def test_every_defect_of_the_csv_is_reported_not_only_the_first(pool, capsys):
    """A run stops at the first defect; verify reports each, reading on at the next line."""
    path = pool / "datapool_latest.csv"
    lines = csv_lines(pool)
    lines[4] = lines[4].replace(b",", b",x", 1)  # line 5: embedding_0 is not a number
    lines[9] = lines[9].rsplit(b",", 1)[0] + b",-1"  # line 10: a negative label
    path.write_bytes(b"\n".join(lines))
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    at = [(e["line"], e["column"]) for e in found(doc, "datapool_latest.csv") if e["line"]]
    assert (5, "embedding_0") in at and (10, "labels") in at, doc["errors"]


def test_a_pool_read_in_blocks_smaller_than_a_row(made, tmp_path, capsys, monkeypatch):
    """Blocks cut at line ends, each parsed where it lies in the file: with blocks smaller than
    a row (each block grows to hold one), a quoted name with a comma among them, the pool is
    OK, and a digit changed in the last row is found on its line."""
    from datapool.pool import verify as verify_module

    src = tmp_path / "src"
    shutil.copytree(made["src"], src)
    write_image(src / "a, b.jpg", scene(990))
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=100, progress=False)  # every candidate
    assert b'"a, b.jpg"' in (pool / "datapool_latest.csv").read_bytes()
    n = len(Pool.open(pool))
    monkeypatch.setattr(verify_module, "_CHUNK", 4096)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["size"] == n, text
    change_field(pool, n + 1, 2)
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    lines = {(e["line"], e["column"]) for e in found(doc, "datapool_latest.csv")}
    assert (n + 1, "embedding_2") in lines, doc["errors"]


def test_a_label_edited_to_another_run(pool, capsys):
    """A row of run 2 relabelled as run 1 (it still parses, and the pool still has both runs):
    per run, per file and by run 2's sum."""
    path = pool / "datapool_latest.csv"
    data = path.read_bytes()
    assert data.endswith(b",2\n")
    overwrite(path, len(data) - 2, b"1")
    n = data.count(b"\n")  # the last row's line
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    errors = found(doc, "datapool_latest.csv")
    relabelled = [
        e for e in errors if "labelled run 1, but its ledger row says run 2" in e["message"]
    ]
    assert [(e["line"], e["column"]) for e in relabelled] == [(n, "labels")], errors
    sidecar = [e for e in errors if "differs from the sidecar" in e["message"]]
    assert [(e["line"], e["column"]) for e in sidecar] == [(n, "labels")], errors
    per_run = sorted(e["message"][:28] for e in errors if "selected in that run" in e["message"])
    assert per_run == ["holds 2 samples of run 2, bu", "holds 4 samples of run 1, bu"], errors
    assert any("(run 2)" in e["message"] and "SHA-256" in e["message"] for e in errors)


def test_a_model_json_of_another_model(pool, capsys):
    """model.json says which model made the embeddings, and each run records the model it
    ran: a model.json put back from another pool is named, with each run's line."""
    model = pool / "model.json"
    doc = json.loads(model.read_text())
    doc["sha256"] = "0" * 64
    model.write_text(json.dumps(doc, indent=2) + "\n")
    rc, text, out = verify(capsys, pool)
    assert rc == CORRUPT, text
    runs = found(out, "runs.json")
    assert len(runs) == 3 and all("0000000000" in e["message"] for e in runs), runs
    text_lines = (pool / "runs.json").read_text().splitlines()
    assert [text_lines[e["line"] - 1].strip() for e in runs] == [f'"index": {i},' for i in range(3)]
    (edited,) = found(out, "model.json")
    assert "not as the last commit (run 2) left it" in edited["message"]


def test_a_crop_pool_with_a_removal_and_a_rerun(tmp_path, capsys):
    """A pool of object crops (crop selection: samples named by their image and box), grown by
    a second run and then by `datapool rm` of one crop: each sample's source file is its
    image, and nothing is wrong."""
    from .test_crops import TASK, _image, _task

    src = tmp_path / "src"
    _task(src)
    _image(src, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    _image(src, "sub/b.png", [([5, 5, 30, 30], (0, 0, 255)), ([100, 20, 40, 80], (255, 255, 0))])
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0, progress=False)
    _image(src, "c.png", [([10, 70, 60, 30], (255, 0, 255))])
    datapool.run(src, pool, n_samples=1, crops=TASK, crop_padding=0.0, progress=False)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["size"] == 5 and doc["warnings"] == [], text
    assert main(["rm", str(pool), "a-png-crop-1.png"]) == 0
    capsys.readouterr()
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["size"] == 4 and doc["warnings"] == [], text
    ledger = pool / "ledger.csv"  # a crop's image recorded with one sample more than it has
    text = ledger.read_text()
    row = next(r for r in text.splitlines() if r.startswith("c.png,"))
    cols = row.split(",")
    cols[6] = "2"
    ledger.write_text(text.replace(row, ",".join(cols)))
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    by_file = [e for e in found(doc, "ledger.csv") if e["column"] == "n_selected"]
    assert len(by_file) == 1 and "'c.png' has 1 samples" in by_file[0]["message"], doc["errors"]


def test_a_run_after_datapool_rm_is_not_taken_for_damage(made, pool, tmp_path, capsys):
    """`datapool rm` rewrites the ledger (a row's n_selected 1 -> 0: as long as before), then a
    run appends to it: the bytes before that run are no longer the ones the runs before the rm
    recorded, and verify reported run 2's ledger rows as 'changed on disk since'."""
    src = tmp_path / "src"
    shutil.copytree(made["src"], src)
    assert main(["rm", str(pool), "new20.jpg"]) == 0
    write_image(src / "later.jpg", scene(995))
    datapool.run(src, pool, n_samples=1, source_moved=True, progress=False)
    capsys.readouterr()
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["warnings"] == [], text
    # run 3's rows by its sum, the rows before it by the rm's (which records them since)
    assert any(
        c.startswith("ledger.csv: the bytes of the `datapool rm` at ")
        and c.endswith(", run 3, each against its commit's sum")
        for c in doc["checked"]
    ), doc["checked"]


def test_the_picks_of_a_changed_file_that_left_the_pool_are_not_taken_for_damage(tmp_path, capsys):
    """A run that finds a file changed takes its samples out of the pool (and picks again):
    the report.json of the run that picked them still lists them. verify called that "not
    that run's report ... or rows of the CSV lost" (exit 2) on a healthy pool."""
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"img{i}.jpg", scene(960 + i))
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=3, progress=False)
    # img0 now holds img1's picture: nothing new to pick in it; a new image is
    shutil.copyfile(src / "img1.jpg", src / "img0.jpg")
    os.utime(src / "img0.jpg", (2_000_000_000, 2_000_000_000))
    write_image(src / "new.jpg", scene(970))
    datapool.run(src, pool, n_samples=1, progress=False)
    assert "img0.jpg" not in Pool.open(pool).filenames
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["errors"] == [] and doc["warnings"] == [], text
    # a pick lost for no such reason is still found
    (pool / "datapool_latest.csv").write_bytes(
        b"\n".join(r for r in csv_lines(pool) if not r.startswith(b"img2.jpg,"))
    )
    rc, text, doc = verify(capsys, pool)
    assert any("'img2.jpg' among run 0's picks" in e["message"] for e in doc["errors"]), text


def test_the_crops_of_an_image_cut_again_are_not_taken_for_damage(tmp_path, capsys):
    """Crop selection: an image whose predictions changed is cut again, and its old crops leave
    the pool; verify called run 0's report, which still lists one, "not that run's report"."""
    from .test_crops import TASK, _boxes, _image, _task

    src = tmp_path / "src"
    _task(src)
    _image(src, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    _image(src, "b.png", [([5, 5, 30, 30], (0, 0, 255))])
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=3, crops=TASK, crop_padding=0.0, progress=False)
    _boxes(src, "a.png", [[20, 10, 50, 40]])
    datapool.run(src, pool, n_samples=1, crops=TASK, crop_padding=0.0, progress=False)
    assert "a-png-crop-1.png" not in Pool.open(pool).filenames
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["errors"] == [] and doc["warnings"] == [], text


def test_ledger_rows_a_run_that_found_nothing_new_appended_are_said_unchecked(tmp_path, capsys):
    """A run that finds nothing new appends the new mtimes it learnt to the ledger, with no sum
    of its own: verify checked the bytes before them and said nothing of them (a changed digit
    there passed with no 'unchecked' line), as if every ledger row had been summed."""
    src = tmp_path / "src"
    for i in range(2):
        write_image(src / f"img{i}.jpg", scene(980 + i))
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=2, progress=False)
    before = (pool / "ledger.csv").stat().st_size
    os.utime(src / "img0.jpg", (2_000_000_000, 2_000_000_000))
    datapool.run(src, pool, n_samples=1, progress=False)
    assert (pool / "ledger.csv").stat().st_size > before  # (the new mtime, appended)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["errors"] == [] and doc["warnings"] == [], text
    assert [
        n for n in doc["not_checked"] if n.startswith("the sizes, times and hashes in the ledger")
    ]


def test_the_rows_from_before_a_datapool_rm_are_checked_against_its_sums(
    made, pool, tmp_path, capsys
):
    """`datapool rm` rewrites the CSV and the ledger whole and recorded no sums: verify said
    'unchecked' of every row, and a digit changed in a row written before the rm (the sidecar
    gone), or a ledger row's mtime, passed as OK. The rm now records the CRC-32 and length of
    both, and the SHA-256 of runs.json and strategy_inputs.json, in its entry in runs.json; the
    walk back through the records starts from it, also under a run after it."""
    assert main(["rm", str(pool), "new20.jpg"]) == 0
    capsys.readouterr()
    entry = json.loads((pool / "runs.json").read_text())["removals"][-1]
    assert set(entry["sums"]) == {"csv", "ledger", "strategy_inputs.json", "runs.json"}, entry
    assert entry["sums"]["csv"]["bytes"] == (pool / "datapool_latest.csv").stat().st_size
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["warnings"] == [], text
    assert doc["not_checked"] == [] and "unchecked" not in text, doc["not_checked"]
    assert any(
        c.startswith("datapool_latest.csv: the bytes of the `datapool rm` at")
        for c in doc["checked"]
    ), doc
    rmd = tmp_path / "rmd"
    shutil.copytree(pool, rmd)
    shutil.rmtree(rmd / ".sidecar")
    change_field(rmd, 15, 7)  # a row of run 0, written again by the rm
    edit_mtime(rmd, "img0.jpg")
    rc, text, doc = verify(capsys, rmd)
    assert rc == CORRUPT, text
    for name in ("datapool_latest.csv", "ledger.csv"):
        (err,) = [e for e in found(doc, name) if "CRC-32" in e["message"]]
        assert "the file `datapool rm` wrote at" in err["message"], err
        assert err["line"] == 1 and err["message"].startswith("lines 1-"), err
    # runs.json edited after the rm (a tag): its SHA-256 is in the removal's entry now.
    runs = rmd / "runs.json"
    runs.write_text(runs.read_text().replace('"run-1"', '"run-x"'))
    rc, text, doc = verify(capsys, rmd)
    assert any("SHA-256" in e["message"] for e in found(doc, "runs.json")), text
    # A run after the rm: its rows by its own sum, the rest by the rm's.
    src = tmp_path / "src"
    shutil.copytree(made["src"], src)
    write_image(src / "later.jpg", scene(995))
    datapool.run(src, pool, n_samples=1, source_moved=True, progress=False)
    capsys.readouterr()
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["warnings"] == [] and doc["not_checked"] == [], text
    assert any(
        c.startswith("datapool_latest.csv: the bytes of the `datapool rm` at")
        and "run 3, each" in c
        for c in doc["checked"]
    ), doc["checked"]
    shutil.rmtree(pool / ".sidecar")
    was = (pool / "datapool_latest.csv").read_bytes()
    change_field(pool, 15, 7)
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    (err,) = [e for e in found(doc, "datapool_latest.csv") if "CRC-32" in e["message"]]
    assert "the file `datapool rm` wrote at" in err["message"] and err["line"] == 1, err
    # `datapool undo` of that run still works, and leaves the rm's sums to check.
    assert main(["undo", str(pool)]) == 0
    capsys.readouterr()
    csv = pool / "datapool_latest.csv"
    overwrite(csv, 0, was[: csv.stat().st_size])  # the digit back as the rm wrote it
    shutil.rmtree(pool / ".sidecar", ignore_errors=True)  # (made again from the edited CSV)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["not_checked"] == [], text


def edit_mtime(pool: Path, key: str) -> int:
    """Add 1 to the mtime_ns of `key`'s ledger row in place (as long as before: the next run
    reads the file again as changed); the row's line."""
    ledger = pool / "ledger.csv"
    text = ledger.read_text()
    row = next(r for r in text.splitlines() if r.startswith(f"{key},"))
    cols = row.split(",")
    cols[2] = str(int(cols[2]) + 1)
    overwrite(ledger, text.index(row), ",".join(cols).encode())
    return text[: text.index(row)].count("\n") + 1


def test_the_rows_of_a_pools_first_run_are_checked_against_its_sums(pool, capsys):
    """A digit of a first-run CSV row changed with the sidecar gone (nothing else holds its
    value), and a first-run ledger row's mtime changed: a pool's first run recorded no sum of
    the files it wrote whole, so verify said 'unchecked' and passed both as OK. The first run
    now records their CRC-32s (as a rewrite does), and verify reports each by file and line."""
    shutil.rmtree(pool / ".sidecar")
    change_field(pool, 15, 7)  # a row of run 0
    edit_mtime(pool, "img0.jpg")
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    for name in ("datapool_latest.csv", "ledger.csv"):
        (err,) = [e for e in found(doc, name) if "CRC-32" in e["message"]]
        assert "the file it wrote (run 0)" in err["message"], err
        assert err["line"] == 1 and err["message"].startswith("lines 1-"), err
    assert doc["not_checked"] == [], doc["not_checked"]


def test_a_one_run_pool_has_its_rows_checked(tmp_path, capsys):
    """The same in a pool of one run (no later run's record to lean on), the CSV's sidecar
    deleted."""
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"i{i}.jpg", scene(980 + i))
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=3, progress=False)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["not_checked"] == [] and "unchecked" not in text, text
    shutil.rmtree(pool / ".sidecar", ignore_errors=True)
    change_field(pool, 3, 2)
    edit_mtime(pool, "i1.jpg")
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    csv = [e for e in found(doc, "datapool_latest.csv") if "CRC-32" in e["message"]]
    ledger = [e for e in found(doc, "ledger.csv") if "CRC-32" in e["message"]]
    assert len(csv) == 1 and csv[0]["message"].startswith("lines 1-4, the file it wrote (run 0)")
    assert len(ledger) == 1 and ledger[0]["message"].startswith("lines 1-4, the file"), ledger
    # `datapool undo` still refuses a first run, as before (the record changes nothing there).
    assert main(["undo", str(pool)]) != 0
    assert "is the pool's first run" in capsys.readouterr().err


def test_what_no_sum_covers_is_said_not_called_checked(pool, capsys):
    """runs.json edited after a `datapool rm` (a tag: `export --run` finds other samples by
    it): no commit recorded a hash of it, so verify cannot tell; it said 'every part checked'.
    It now names it as unchecked. (A `datapool rm` records runs.json's SHA-256 since: its
    sums taken out here, as an older datapool's rm left none.)"""
    assert main(["rm", str(pool), "new20.jpg"]) == 0
    runs = pool / "runs.json"
    doc = json.loads(runs.read_text())
    del doc["removals"][-1]["sums"]
    runs.write_text(json.dumps(doc, indent=2) + "\n")
    runs.write_text(runs.read_text().replace('"run-1"', '"run-x"'))
    capsys.readouterr()
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and "every part checked" not in text, text
    assert any(w.startswith("runs.json as now: no commit's hash") for w in doc["not_checked"]), doc


def test_a_run_stopped_before_its_commit_leaves_no_warning_once_the_pool_is_opened(
    made, pool, tmp_path, capsys
):
    """A run killed while it staged its commit (Ctrl-C, a reboot) changed nothing; the next open
    removes what it staged, and leaves its empty runs/<N>/, which the next run writes into.
    verify warned 'a run folder of no run: left over' about it for good."""
    src = tmp_path / "src"
    shutil.copytree(made["src"], src)
    write_image(src / "later.jpg", scene(996))
    run = ["run", str(src), "--pool", str(pool), "--n-samples", "1", "--source-moved"]
    p = Proc(
        [sys.executable, "-m", "datapool", *run],
        DATAPOOL_TEST_PAUSE_AT="staged:runs/3/*",
        PYTHONPATH=PACKAGE_PATH,
    )
    p.wait_for("datapool-test: paused at")
    p.kill()
    Pool.open(pool)  # the next open takes what it staged away
    assert (pool / "runs" / "3").is_dir() and not any((pool / "runs" / "3").iterdir())
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["warnings"] == [], text
    (pool / "runs" / "3" / "report.html").write_text("<html></html>")  # something in it
    rc, text, doc = verify(capsys, pool)
    (left,) = found(doc, "runs/3", "warnings")
    assert "left over by a run that did not commit; delete it" in left["message"], left


def test_one_sample_is_counted_as_one(tmp_path, capsys):
    """'pool OK: 1 samples' said the summary of a pool of one sample."""
    write_image(tmp_path / "src" / "only.jpg", scene(997))
    datapool.run(tmp_path / "src", tmp_path / "pool", n_samples=1, progress=False)
    rc, text, doc = verify(capsys, tmp_path / "pool")
    assert rc == 0 and doc["size"] == 1, text
    assert text.splitlines()[-1] == "pool OK: 1 sample, 1 run, every part checked", text


def test_more_defects_of_one_kind_than_listed_are_counted(pool, capsys):
    """Twelve rows labelled with a run the pool does not have: ten are listed, and the
    summary said '10 errors' of them; one more error now counts them all."""
    path = pool / "datapool_latest.csv"
    lines = csv_lines(pool)
    for k in range(1, 13):
        lines[k] = lines[k].rsplit(b",", 1)[0] + b",7"
    path.write_bytes(b"\n".join(lines))
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    labels = [e for e in doc["errors"] if "names a run that runs.json does not" in e["message"]]
    assert len(labels) == 10, labels
    assert any(e["message"] == "12 labels name no run in all (10 listed)" for e in doc["errors"])


def test_a_history_snapshot_against_the_record_of_the_run_that_kept_it(tmp_path, capsys):
    """A snapshot of a one-run pool kept by run 1's --keep-history:
    its runs.json edited, and its CSV cut short at a line end (both still parse) passed as OK.
    Run 1's undo record keeps the SHA-256 and lengths of the pool before it, which the snapshot
    is: `datapool undo` checks them before putting it back, and so does verify now."""
    src = tmp_path / "src"
    write_image(src / "a.jpg", scene(998))
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=1, progress=False)
    write_image(src / "b.jpg", scene(999))
    datapool.run(src, pool, n_samples=1, keep_history=True, progress=False)
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["warnings"] == [], text
    assert not any("runs.json" in w for w in doc["not_checked"]), doc["not_checked"]
    (snap,) = (pool / "history").iterdir()
    runs = snap / "runs.json"
    runs.write_text(runs.read_text().replace('"initial-tag"', '"initial-tax"'))
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    # Both records tell: run 1's of the pool it kept, and the snapshot's own run's of the
    # files its commit wrote (a first run records their hashes too).
    assert {e["file"] for e in doc["errors"]} == {f"history/{snap.name}/runs.json"}, doc
    assert any("not the pool's as run 1 kept it" in e["message"] for e in doc["errors"]), doc
    runs.write_text(runs.read_text().replace('"initial-tax"', '"initial-tag"'))
    csv = snap / "datapool_latest.csv"
    csv.write_bytes(csv.read_bytes().split(b"\n", 1)[0] + b"\n")  # its one row gone
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text
    cut = [e for e in doc["errors"] if e["file"] == f"history/{snap.name}/datapool_latest.csv"]
    assert any("kept it" in e["message"] and "bytes" in e["message"] for e in cut), doc["errors"]


def test_a_run_folder_of_an_interrupted_commit_is_not_said_to_be_deleted(tmp_path, capsys):
    """A run killed past its commit point, its runs/1/ renamed into place and runs.json not yet:
    verify said of runs/1 "left over by a run that did not commit; delete it" (found by
    tools/chaos.py). Deleting it, as told, and then `datapool status` (which finishes the
    commit) left a pool whose run 1 had no report.json: verify exit 2. Now it says that the
    interrupted commit puts the folder in the pool and that status finishes it."""
    src, pool = tmp_path / "src", tmp_path / "pool"
    for i in range(2):
        write_image(src / f"img{i}.jpg", scene(700 + i))
    datapool.run(src, pool, n_samples=2, progress=False)
    write_image(src / "new.jpg", scene(710))
    p = Proc(
        cli_args(src, pool, "--n-samples", 1),
        DATAPOOL_TEST_PAUSE_AT="renamed:model.json",
        PYTHONPATH=PACKAGE_PATH,
    )
    p.wait_for("datapool-test: paused at")
    p.kill()
    assert (pool / ".journal.json").exists() and (pool / "runs" / "1" / "report.json").exists()
    rc, text, doc = verify(capsys, pool)
    assert rc == CORRUPT, text  # the journal: an interrupted commit
    (folder,) = found(doc, "runs/1", "warnings")
    assert "delete" not in folder["message"].replace("do not delete", ""), folder
    assert "the interrupted commit (.journal.json) puts it in the pool" in folder["message"]
    assert main(["status", str(pool)]) == 0  # finishes the commit, as the message says
    capsys.readouterr()
    rc, text, doc = verify(capsys, pool)
    assert rc == 0 and doc["runs"] == 2 and doc["size"] == 3, text


@pytest.mark.parametrize("budget", [{"n_samples": 1}, {"min_distance": 1.99}])
def test_a_file_read_again_then_moved_is_not_taken_for_lost_rows(tmp_path, capsys, budget):
    """Run 0 picks frames of a clip; the clip changes, so run 1 reads it again and its run-0
    samples leave the pool (run 1 picks one of its new frames, or none); then it is renamed, a
    move that run 2 follows. verify said the pool was DAMAGED (exit 2): run 0's report 'lists
    a-0-mp4.png among run 0's picks, but datapool_latest.csv does not hold it ... rows of the CSV
    lost' (found by tools/chaos.py): it looked for the run that last read 'a.mp4' in the ledger,
    which names it 'z.mp4' now. It now follows the move (report.json `moved_files`)."""
    src, pool = tmp_path / "src", tmp_path / "pool"
    write_video(src / "a.mp4", clip_frames(51, 6), fps=10)
    write_image(src / "b.jpg", scene(52))
    datapool.run(src, pool, n_samples=4, progress=False)
    assert any(n.startswith("a-") for n in Pool.open(pool).filenames)
    write_video(src / "a.mp4", clip_frames(53, 6), fps=10)  # changed: read again
    datapool.run(src, pool, progress=False, **budget)
    (src / "a.mp4").rename(src / "z.mp4")
    r = datapool.run(src, pool, n_samples=1, progress=False)
    assert r.counts["moved"] == 1, r.counts
    rc, text, _ = verify(capsys, pool)
    assert rc == 0, text


@pytest.mark.parametrize("kind", ["image", "frame"])
def test_a_moved_file_removed_by_rm_is_not_taken_for_lost_rows(tmp_path, capsys, kind):
    """Run 0 picks a.jpg (or a frame of a.mp4); the file is renamed z.* (run 1 follows the
    move), then `datapool rm` removes that sample under its new name. rm scrubs the names it
    removes from the runs' reports, run 1's `moved` entry too, so verify no longer saw that
    run 0's pick under the old name was removed: 'lists a.jpg among run 0's picks ... rows of
    the CSV lost', exit 2 (found by tools/chaos.py). It follows the file's move (report.json
    `moved_files`) now."""
    src, pool = tmp_path / "src", tmp_path / "pool"
    old = "a.jpg" if kind == "image" else "a.mp4"
    if kind == "image":
        write_image(src / old, scene(560))
    else:
        write_video(src / old, clip_frames(560, 4), fps=10)
    for i, name in enumerate(["b.jpg", "c.jpg"]):
        write_image(src / name, scene(561 + i))
    datapool.run(src, pool, n_samples=3, progress=False)
    (pick,) = [n for n in Pool.open(pool).filenames if n.startswith("a")][:1]
    new = old.replace("a.", "z.")
    (src / old).rename(src / new)
    assert datapool.run(src, pool, n_samples=1, progress=False).counts["moved"] == 1
    assert main(["rm", str(pool), "z" + pick[1:]]) == 0
    capsys.readouterr()
    rc, text, _ = verify(capsys, pool)
    assert rc == 0, text
