"""`datapool undo POOL`: the pool back as it was before its last run, byte for byte.

Before it, a user who ran `datapool run SRC --pool P --n-samples 1000` but meant 100 had
`datapool rm --run N` (which keeps the samples out, and whose ledger still says the files were
read, so a rerun does not read them again), `--process-all` (everything embedded again) or a
`--keep-history` snapshot planned in advance. Now the last run can be undone: the CSV and the
ledger are cut back to their bytes before it, runs.json and the strategy inputs rebuilt and
checked against the hashes its commit recorded, and runs/N removed; the next run reads the run's
files again as new. What cannot be put back exactly is refused in one line that says why and
what to do instead.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

import datapool
from datapool import Pool
from datapool.cli import main
from datapool.media import write_image, write_video

from ._robust import Proc, assert_ledger_agrees, leftovers, lock_holder, tree_digest
from .conftest import PACKAGE_PATH, clip_frames, scene

USAGE = 4


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A source, the pool after run 0 (`before`), and the pool after run 1 (`after`): run 1
    took 4 of 4 new images where the user meant 2 (the mistake to undo)."""
    root = tmp_path_factory.mktemp("undo")
    src = root / "src"
    for i in range(4):
        write_image(src / f"img{i}.jpg", scene(700 + i))
    write_video(src / "cam" / "clip.mp4", clip_frames(71, 6), fps=10)
    datapool.run(src, root / "before", n_samples=5, progress=False)
    for i in range(4):
        write_image(src / f"new{i}.jpg", scene(800 + i))
    shutil.copytree(root / "before", root / "after")
    datapool.run(src, root / "after", n_samples=4, progress=False)
    return {"src": src, "before": root / "before", "after": root / "after"}


@pytest.fixture
def pool(made, tmp_path) -> tuple[Path, Path, dict[str, str]]:
    """(source, a copy of the pool after run 1, the digest of the pool before run 1)."""
    shutil.copytree(made["src"], tmp_path / "src", copy_function=shutil.copy2)
    shutil.copytree(made["after"], tmp_path / "pool")
    return tmp_path / "src", tmp_path / "pool", tree_digest(made["before"])


@pytest.fixture
def fresh(tmp_path) -> tuple[Path, Path, dict[str, str]]:
    """As `pool`, made in this test's folder: for tests that run on the source again (a pool
    remembers its source's path) or change it."""
    src, path = tmp_path / "src", tmp_path / "pool"
    for i in range(4):
        write_image(src / f"img{i}.jpg", scene(700 + i))
    write_video(src / "cam" / "clip.mp4", clip_frames(71, 6), fps=10)
    datapool.run(src, path, n_samples=5, progress=False)
    before = tree_digest(path)
    for i in range(4):
        write_image(src / f"new{i}.jpg", scene(800 + i))
    datapool.run(src, path, n_samples=4, progress=False)
    return src, path, before


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([*map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_undo_puts_the_pool_back_byte_for_byte_and_status_shows_it(pool, capsys):
    _, path, before = pool
    after = Pool.open(path)
    added = [n for n, label in zip(after.filenames, after.labels.tolist()) if label == 1]
    assert len(added) == 4
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert "undid run 1 (run-1): 4 samples gone" in out
    assert "the pool holds 5 samples in 1 run" in out
    assert "ledger: 4 files run 1 processed are new again" in out
    assert "removed: runs/1" in out
    assert tree_digest(path) == before  # CSV, ledger, runs.json, thumbnails: all as they were
    assert leftovers(path) == [] and not (path / "runs" / "1").exists()
    opened = Pool.open(path)  # the sidecar follows the CSV
    assert_ledger_agrees(opened)
    assert len(opened) == 5 and not set(added) & set(opened.filenames)
    rc, out, err = cli(capsys, "status", path, "--json")
    assert rc == 0, err
    status = json.loads(out)
    assert [r["index"] for r in status["runs"]] == [0] and status["size"] == 5


def test_undo_then_the_same_run_again_gives_the_pool_of_one_run(fresh, tmp_path, capsys):
    """run, undo, run again: the pool equals one that ran once (same folder), but for the times
    a run records (started_at and finished_at in runs.json and report.json, shown in
    report.html; report.json's timings, and the undo record's hash of runs.json, which holds
    them). The rerun reads the undone run's files again as new."""
    src, path, _ = fresh
    reference = tree_digest(path)
    ref_files = {rel: (path / rel).read_bytes() for rel in reference}
    assert cli(capsys, "undo", path)[0] == 0
    r = datapool.run(src, path, n_samples=4, progress=False)
    assert r.counts["new"] == 4 and r.counts["unchanged"] == 5
    again = tree_digest(path)
    assert again.keys() == reference.keys()
    differ = sorted(rel for rel in again if again[rel] != reference[rel])
    # (runs.json and report.html differ only where the clock moved on to the next second)
    assert "runs/1/report.json" in differ, differ
    assert set(differ) <= {"runs.json", "runs/1/report.html", "runs/1/report.json"}, differ
    assert _untimed(path / "runs.json") == _untimed(ref_files["runs.json"])
    assert _untimed(path / "runs/1/report.json") == _untimed(ref_files["runs/1/report.json"])
    stamp = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+00:00)?")
    assert stamp.sub(b"T", (path / "runs/1/report.html").read_bytes()) == stamp.sub(
        b"T", ref_files["runs/1/report.html"]
    )


def _untimed(source: Path | bytes) -> object:
    data = source.read_bytes() if isinstance(source, Path) else source
    doc = json.loads(data)

    def strip(v: object) -> object:
        if isinstance(v, dict):
            return {
                k: strip(x)
                for k, x in v.items()
                if k not in ("started_at", "finished_at", "timings")
            }
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    out = strip(doc)
    if isinstance(out, dict) and "undo" in out:
        out["undo"]["files"]["runs.json"].pop("after")  # the hash of runs.json, with its times
    return out


def test_only_the_last_run_and_never_the_first(pool, capsys):
    _, path, before = pool
    assert "undoing again undoes the one before" in _help(capsys)
    assert cli(capsys, "undo", path)[0] == 0
    rc, out, err = cli(capsys, "undo", path)
    assert rc == USAGE and out == ""
    assert "run 0 (initial-tag) is the pool's first run" in err and "delete the pool" in err
    assert len(err.strip().splitlines()) == 1
    assert tree_digest(path) == before


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["undo", "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_dry_run_says_what_would_go_and_json(pool, capsys):
    _, path, _ = pool
    digest = tree_digest(path)
    rc, out, err = cli(capsys, "undo", path, "--dry-run")
    assert rc == 0, err
    assert "would undo run 1 (run-1): 4 samples would go" in out
    assert {"new0.jpg", "new3.jpg"} <= set(out.splitlines())
    assert tree_digest(path) == digest
    rc, out, err = cli(capsys, "undo", path, "--dry-run", "--json")
    doc = json.loads(out)
    assert doc["dry_run"] and doc["run"] == {"index": 1, "tag": "run-1"}
    assert sorted(doc["samples"]) == [f"new{i}.jpg" for i in range(4)]
    assert doc["files_read_again"] == [f"new{i}.jpg" for i in range(4)]
    assert doc["pool_size"] == 5 and doc["removed"] == ["runs/1"] and doc["export"] is None
    assert tree_digest(path) == digest
    rc, out, err = cli(capsys, "undo", path, "--json")
    assert rc == 0 and not json.loads(out)["dry_run"]


def test_a_commit_after_the_run_is_named_and_nothing_changes(pool, capsys):
    _, path, _ = pool
    assert cli(capsys, "rm", path, "img0.jpg")[0] == 0
    digest = tree_digest(path)
    rc, out, err = cli(capsys, "undo", path, "--json")
    assert rc == USAGE and out == ""
    error = json.loads(err.strip().splitlines()[-1])["error"]
    assert error["kind"] == "usage" and error["exit_code"] == USAGE
    assert "is not run 1 (run-1): `datapool rm` (at " in error["message"]
    # and what to do instead, as the other refusals say
    assert error["message"].endswith(
        f"nothing changed; `datapool rm {path} --run 1` removes the run's samples instead (and "
        "keeps them out of later runs)"
    ), error["message"]
    assert tree_digest(path) == digest


def test_a_quiet_record_after_the_run_is_named(fresh, capsys):
    """A run that finds nothing new but records touched files' new mtimes commits no run, and
    changes the ledger: the run is no longer the last commit."""
    import os

    src, path, _ = fresh
    os.utime(src / "img1.jpg", ns=(1, 1_000_000_000))  # same bytes, another mtime
    r = datapool.run(src, path, n_samples=4, progress=False)
    assert r.run_index is None
    digest = tree_digest(path)
    rc, _, err = cli(capsys, "undo", path)
    assert rc == USAGE and "is not run 1 (run-1): a run that found nothing new" in err
    assert f"`datapool rm {path} --run 1` removes the run's samples instead" in err
    assert tree_digest(path) == digest


def test_a_run_that_replaced_changed_files_is_refused_with_what_to_do(fresh, capsys):
    src, path, _ = fresh
    write_image(src / "img2.jpg", scene(999))  # changed: its sample is replaced
    write_image(src / "more.jpg", scene(998))
    datapool.run(src, path, n_samples=4, progress=False)
    digest = tree_digest(path)
    rc, _, err = cli(capsys, "undo", path)
    assert rc == USAGE
    assert "run 2 (run-2) rewrote datapool_latest.csv (it replaced the samples of changed" in err
    assert f"`datapool rm {path} --run 2` removes its samples" in err
    assert tree_digest(path) == digest


def test_a_run_that_rewrote_the_pool_is_undone_from_its_snapshot(fresh, capsys):
    """--keep-history: a run that replaced a changed file's samples is undone from the snapshot
    its commit made; so is --process-all, which always makes one; an append-only run with
    --keep-history is cut back, and its snapshot goes with it."""
    src, path, _ = fresh
    write_image(src / "more.jpg", scene(998))
    digest = tree_digest(path)
    r = datapool.run(src, path, n_samples=4, keep_history=True, progress=False)
    snapshot = str(Path(r.previous_pool).relative_to(path))
    assert (path / snapshot).is_dir()
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert f"removed: runs/2, {snapshot} (its --keep-history snapshot" in out
    assert tree_digest(path) == digest

    write_image(src / "img2.jpg", scene(999))  # changed: its sample is replaced
    r = datapool.run(src, path, n_samples=4, keep_history=True, progress=False)
    assert r.counts["changed"] == 1
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert "put back the pool files and runs/ from history/" in out
    assert tree_digest(path) == digest and leftovers(path) == []
    assert_ledger_agrees(Pool.open(path))

    r = datapool.run(src, path, n_samples=3, process_all=True, progress=False)
    assert r.run_index == 0 and len(Pool.open(path).runs) == 1
    rc, out, err = cli(capsys, "undo", path, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["from_snapshot"] and doc["run"]["index"] == 0 and doc["runs"] == 2
    assert tree_digest(path) == digest and leftovers(path) == []
    assert [run["index"] for run in Pool.open(path).runs] == [0, 1]


def test_a_run_of_an_older_datapool_is_refused(pool, capsys):
    _, path, _ = pool
    report = path / "runs" / "1" / "report.json"
    doc = json.loads(report.read_text())
    del doc["undo"]  # as a datapool before `undo` wrote it
    report.write_text(json.dumps(doc, indent=2) + "\n")
    digest = tree_digest(path)
    rc, _, err = cli(capsys, "undo", path)
    assert rc == USAGE and "did not record how to undo it" in err
    assert tree_digest(path) == digest


def test_exported_files_stay_and_are_named(made, tmp_path, capsys):
    shutil.copytree(made["before"], tmp_path / "pool")
    dest = tmp_path / "export"
    r = datapool.run(made["src"], tmp_path / "pool", n_samples=2, export=dest, progress=False)
    written = sorted(p.name for p in dest.rglob("*.jpg"))
    assert len(written) == 2
    rc, out, err = cli(capsys, "undo", tmp_path / "pool")
    assert rc == 0, err
    assert f"export: the 2 files run 1 exported to {dest} stay there" in out
    assert sorted(p.name for p in dest.rglob("*.jpg")) == written
    assert tree_digest(tmp_path / "pool") == tree_digest(made["before"]) and r.run_index == 1
    # What the line advises brings the export in line with the pool.
    rc, out, err = cli(capsys, "export", tmp_path / "pool", dest, "--all", "--mirror")
    assert rc == 0, err
    assert not set(written) & {p.name for p in dest.rglob("*.jpg")}


def test_a_second_process_fails_fast_on_the_lock(pool, capsys):
    _, path, _ = pool
    digest = tree_digest(path)
    holder = lock_holder(path)
    try:
        rc, _, err = cli(capsys, "undo", path)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert rc == 3 and "held by pid" in err
    assert tree_digest(path) == digest


def test_sigkill_at_each_point_of_the_undo_commit_leaves_the_pool_before_or_after(pool, tmp_path):
    _, path, before = pool
    _kill_at_each_point(path, before, tmp_path, "removed:runs/1")


def test_sigkill_at_each_point_of_an_undo_from_a_snapshot(fresh, tmp_path):
    """The undo of a run that replaced a changed file's samples, from its --keep-history
    snapshot: the snapshot's files linked back into place, the run's folder and the snapshot
    removed after the commit point."""
    src, path, _ = fresh
    before = tree_digest(path)
    write_image(src / "img2.jpg", scene(999))
    datapool.run(src, path, n_samples=4, keep_history=True, progress=False)
    _kill_at_each_point(path, before, tmp_path, "removed:history/*", every=False)


def _kill_at_each_point(
    path: Path, before: dict[str, str], tmp_path: Path, must: str, every: bool = True
) -> None:
    """Kill `datapool undo` of the pool at `path` (a copy of it, each time) with SIGKILL at each
    point it passes, from the lock to the end of its commit (not `every`: the first and last of
    each kind), the pool is as it was up to the journal's write, and `before` (its digest
    before the undone run) from then on."""
    from fnmatch import fnmatch

    args = [sys.executable, "-m", "datapool", "undo"]
    ref = tmp_path / "ref"
    shutil.copytree(path, ref)
    traced = Proc([*args, str(ref)], DATAPOOL_TEST_TRACE="1", PYTHONPATH=PACKAGE_PATH)
    assert traced.finish() == 0, traced.stderr
    points = [
        line.split("at ", 1)[1].strip()
        for line in traced.stderr.splitlines()
        if line.startswith("datapool-test: at ")
    ]
    points = points[points.index("locked") : points.index("committed") + 1]
    assert "journal-written" in points and any(fnmatch(p, must) for p in points), points
    if not every:
        kinds = [p.split(":")[0] for p in points]
        points = [
            p
            for i, p in enumerate(points)
            if kinds[i] not in kinds[:i] or kinds[i] not in kinds[i + 1 :]
        ]
    digest = tree_digest(path)
    outcomes = []
    seen: Counter[str] = Counter()
    for k, at in enumerate(points):
        seen[at] += 1
        trial = tmp_path / f"trial{k}"
        shutil.copytree(path, trial)
        p = Proc(
            [*args, str(trial)],
            DATAPOOL_TEST_PAUSE_AT=f"{at.replace('[', '[[]')}#{seen[at]}",
            PYTHONPATH=PACKAGE_PATH,
        )
        p.wait_for("datapool-test: paused at")
        p.kill()
        opened = Pool.open(trial)  # recovers
        assert leftovers(trial) == [], at
        assert_ledger_agrees(opened)
        state = tree_digest(trial)
        if state == digest:
            outcomes.append("before")
        else:
            assert state == before, at
            outcomes.append("after")
        shutil.rmtree(trial)
    first_after = outcomes.index("after")
    assert points[first_after] == "journal-written"
    assert outcomes == ["before"] * first_after + ["after"] * (len(points) - first_after), list(
        zip(points, outcomes)
    )


def test_a_merge_is_not_undone(made, tmp_path, capsys):
    into = tmp_path / "merged"
    rc, _, err = cli(capsys, "merge", made["before"], made["after"], "--into", into)
    assert rc == 0, err
    digest = tree_digest(into)
    rc, out, err = cli(capsys, "undo", into)
    assert rc == USAGE and out == ""
    assert f"the last commit of the pool {into} is a merge" in err
    assert tree_digest(into) == digest


def test_one_file_read_again_is_said_in_the_singular(tmp_path, capsys):
    src, path = tmp_path / "src", tmp_path / "pool"
    for i in range(2):
        write_image(src / f"img{i}.jpg", scene(700 + i))
    datapool.run(src, path, n_samples=2, progress=False)
    write_image(src / "new.jpg", scene(900))
    datapool.run(src, path, n_samples=1, progress=False)
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert "ledger: 1 file run 1 processed is new again: the next run reads it" in out


def hub_copy(model: Path, folder: Path) -> Path:
    """`model` as `datapool model get` leaves a model fetched by name (its datapool-model.json
    beside it): the same weights, which a run records with their origin."""
    folder.mkdir(parents=True)
    shutil.copy2(model, folder / model.name)
    origin = {"repo": "acme/tiny", "revision": "main", "commit": "0123abc", "name": "tiny"}
    (folder / "datapool-model.json").write_text(json.dumps({"model": model.name, **origin}))
    return folder / model.name


def test_a_run_that_rewrote_model_json_is_undone_with_model_json_as_it_was(tmp_path, capsys):
    """Run 1 used the pool's model fetched by name (the same weights, now with their origin),
    so its commit rewrote model.json. Undo refused ('rewrote model.json (another datapool version
    wrote it before)'); model.json before it is run 0's record of the model, as run 0 wrote it,
    and undo puts that back."""
    tiny = Path(__file__).parent / "artifacts" / "compat" / "tiny.onnx"
    src, path = tmp_path / "src", tmp_path / "pool"
    for i in range(3):
        write_image(src / f"img{i}.jpg", scene(700 + i))
    datapool.run(src, path, n_samples=2, model=str(tiny), progress=False)
    before = tree_digest(path)
    write_image(src / "new.jpg", scene(900))
    hub = hub_copy(tiny, tmp_path / "cache" / "tiny")
    datapool.run(src, path, n_samples=1, model=str(hub), progress=False)
    assert "origin" in json.loads((path / "model.json").read_text())
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert "undid run 1 (run-1): 1 sample gone" in out
    assert "model.json: put back as it was before run 1, which rewrote it" in out
    assert "runs.json: put back" not in out  # (this datapool wrote it)
    assert tree_digest(path) == before and leftovers(path) == []
    assert cli(capsys, "verify", path)[0] == 0


def _edit_a_digit(path: Path, line: int) -> None:
    """A hand edit that keeps the file's length: one digit of line `line` (of a CSV row's
    floats, a ledger row's key or hash) changed to another."""
    lines = path.read_bytes().split(b"\n")
    row = bytearray(lines[line])
    at = [i for i, c in enumerate(row) if chr(c).isdigit()][len(row) // 4]  # not a label
    row[at] = ord("1") if row[at] != ord("1") else ord("2")
    lines[line] = bytes(row)
    data = b"\n".join(lines)
    assert len(data) == path.stat().st_size
    path.write_bytes(data)


@pytest.mark.parametrize("name", ["datapool_latest.csv", "ledger.csv"])
def test_a_same_length_edit_of_what_the_run_appended_is_caught(pool, name, capsys):
    """Undo checked the CSV and the ledger by length only: a digit of a row the run appended,
    edited after it, was cut off with the run without a word. Now the SHA-256 of the bytes the
    run appended, which its commit records, says the file changed."""
    _, path, _ = pool
    _edit_a_digit(path / name, -2)  # the last row (the file ends with a newline)
    digest = tree_digest(path)
    rc, out, err = cli(capsys, "undo", path)
    assert rc == USAGE and out == "", err
    assert f"is not run 1 (run-1): a change to {name} (a later commit, or an edit)" in err
    assert err.rstrip().endswith(f"nothing changed; `datapool verify {path}` says what changed")
    assert tree_digest(path) == digest


def test_a_same_length_edit_after_a_run_that_rewrote_the_pool_is_caught(fresh, capsys):
    """A run that replaced a changed file's samples wrote the CSV whole (its undo record had
    no length after it at all): undo put its --keep-history snapshot back over an edit made
    since. Now the record keeps the CRC-32 of the CSV as written, and undo checks it."""
    src, path, _ = fresh
    write_image(src / "img2.jpg", scene(999))  # changed: its sample is replaced
    datapool.run(src, path, n_samples=4, keep_history=True, progress=False)
    record = json.loads((path / "runs" / "2" / "report.json").read_text())["undo"]
    assert not record["csv"]["appended"] and record["csv"]["after"] > 0
    _edit_a_digit(path / "datapool_latest.csv", 1)  # the first row, before any this run added
    digest = tree_digest(path)
    rc, _, err = cli(capsys, "undo", path)
    assert rc == USAGE
    assert "a change to datapool_latest.csv (a later commit, or an edit)" in err
    assert tree_digest(path) == digest


def test_a_run_recorded_before_the_sums_still_undoes_by_length(pool, capsys):
    """A run whose undo record has no sums (datapool 0.4.0 made it) is checked by length, as
    then, and undone byte for byte."""
    _, path, before = pool
    report = path / "runs" / "1" / "report.json"
    doc = json.loads(report.read_text())
    for key in ("csv", "ledger"):
        assert doc["undo"][key].pop("appended_sha256")
    report.write_text(json.dumps(doc, indent=2) + "\n")
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert "undid run 1 (run-1): 4 samples gone" in out
    assert tree_digest(path) == before


def _released_0_3_0_reads(doc: dict) -> None:
    """How datapool 0.3.0 (pool/journal.py `recover`, as released) parsed a journal before it
    replayed it, verbatim but for the names: it knows `files`, `appends` and `dirs` only."""
    files, appends = doc["files"], doc.get("appends", [])
    dirs = doc.get("dirs", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ValueError("files must be a list of names")
    if not all(isinstance(a["file"], str) and int(a["offset"]) >= 0 for a in appends):
        raise ValueError("appends must name a file and an offset")
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ValueError("dirs must be a list of names")


def test_an_interrupted_undo_journal_is_refused_by_older_readers_and_replayed(pool, monkeypatch):
    """An undo's journal removes the run's folder after the renames (`removes`), which datapool
    0.3.x ignored: replaying an interrupted undo it put the CSV, ledger and runs.json back and
    left runs/1, half an undo. The journal is now format 2, and begins `appends` with an entry
    that 0.3.x's reader refuses in a line saying which datapool finishes it; this one replays
    it whole. A run's journal (no removals) stays as every datapool reads it."""
    from datapool.errors import PoolCorruptError
    from datapool.pool import journal
    from datapool.pool.store import undo_last_run

    _, path, before = pool
    written: list[dict] = []

    def stop_at_the_commit_point(root, *args):
        written.append(json.loads((root / ".journal.json").read_text()))
        raise KeyboardInterrupt  # as a kill just after the journal's write

    monkeypatch.setattr(journal, "_replay_or_roll_back", stop_at_the_commit_point)
    with pytest.raises(KeyboardInterrupt):
        undo_last_run(path)
    monkeypatch.undo()
    (doc,) = written
    assert doc["format"] == 2 and doc["removes"] == ["runs/1"]
    with pytest.raises(ValueError, match=r"interrupted `datapool undo` needs datapool 0\.5\.0 or"):
        _released_0_3_0_reads(doc)
    assert (path / "runs" / "1").is_dir()
    assert journal.recover(path) == "rolled forward"
    assert tree_digest(path) == before and leftovers(path) == []

    txn = journal.Transaction(path)
    txn.stage("x.txt", b"x")
    monkeypatch.setattr(journal, "_replay_or_roll_back", stop_at_the_commit_point)
    with pytest.raises(KeyboardInterrupt):
        txn.commit()
    monkeypatch.undo()
    assert "format" not in written[-1] and written[-1]["appends"] == []
    _released_0_3_0_reads(written[-1])
    newer = {**written[-1], "format": 3}
    (path / ".journal.json").write_text(json.dumps(newer))
    with pytest.raises(PoolCorruptError, match=r"a newer datapool's commit journal \(format 3"):
        journal.recover(path)


def test_a_later_export_of_an_earlier_run_stays_through_an_undo_from_a_snapshot(fresh, capsys):
    """`datapool export --run 1` after run 2 rewrote run 1's report.json and report.html with
    what it did. Undoing run 2 from its --keep-history snapshot put the snapshot's copies back
    over them: the export's record was gone without a word (its files stayed in DEST). They are
    kept now, and named; everything else is the pool before run 2."""
    src, path, _ = fresh
    before = tree_digest(path)
    write_image(src / "img2.jpg", scene(999))  # changed: run 2 rewrites the pool
    datapool.run(src, path, n_samples=4, keep_history=True, progress=False)
    rc, _, err = cli(capsys, "export", path, path.parent / "dest", "--run", 1)
    assert rc == 0, err
    report = path / "runs" / "1" / "report.json"
    recorded = json.loads(report.read_text())["export"]
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert "put back the pool files and runs/ from history/" in out
    assert (
        "kept as they are: runs/1/report.html, runs/1/report.json (what a `datapool export" in out
    )
    assert json.loads(report.read_text())["export"] == recorded
    now = tree_digest(path)
    assert {k: v for k, v in now.items() if not k.startswith("runs/1/report.")} == {
        k: v for k, v in before.items() if not k.startswith("runs/1/report.")
    }
    assert leftovers(path) == []


def test_a_runs_own_export_and_a_later_one_of_it_are_both_named(made, tmp_path, capsys):
    """`datapool export --run 1 B` replaces what run 1's report says of its own --export A:
    undo named only B, where the files in A stay too."""
    shutil.copytree(made["before"], tmp_path / "pool")
    a, b = tmp_path / "A", tmp_path / "B"
    datapool.run(made["src"], tmp_path / "pool", n_samples=2, export=a, progress=False)
    assert cli(capsys, "export", tmp_path / "pool", b, "--run", 1)[0] == 0
    rc, out, err = cli(capsys, "undo", tmp_path / "pool")
    assert rc == 0, err
    assert f"export: the 2 files run 1 exported to {b} stay there" in out
    assert f"export: the files run 1's own --export wrote to {a} (its report holds" in out
    assert tree_digest(tmp_path / "pool") == tree_digest(made["before"])


def test_an_export_whose_run_was_undone_meanwhile_says_so(pool, capsys):
    """An export reads the pool unlocked, then records what it did into its run's report: where
    the run was undone in between, it says that (it said the pool was rebuilt)."""
    from datapool.export import export_pool
    from datapool.runner.exported import _record

    _, path, _ = pool
    result = export_pool(path, str(path.parent / "dest"), 1)
    assert cli(capsys, "undo", path)[0] == 0
    assert _record(path, result, None) == (
        "the pool no longer has run 1 (it was undone, or the pool rebuilt, meanwhile)"
    )


def test_a_runs_own_relative_export_is_not_taken_for_another_place(
    made, tmp_path, capsys, monkeypatch
):
    """A run's --export given as a relative path is recorded as given; its report records the
    folder made absolute. Undo compared the two relative to the folder undo ran in: from any
    other folder it said that a later export had replaced the run's own (one that never was),
    naming the run's own export twice as two places."""
    shutil.copytree(made["before"], tmp_path / "pool")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    datapool.run(made["src"], tmp_path / "pool", n_samples=2, export="A", progress=False)
    monkeypatch.chdir(tmp_path / "elsewhere")
    rc, out, err = cli(capsys, "undo", tmp_path / "pool", "--dry-run")
    assert rc == 0, err
    assert f"export: the 2 files run 1 exported to {tmp_path / 'A'} would stay there" in out
    assert "own --export" not in out
    # a later export elsewhere is still told apart from the run's own relative one
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "export", tmp_path / "pool", tmp_path / "B", "--run", 1)[0] == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    rc, out, err = cli(capsys, "undo", tmp_path / "pool", "--dry-run")
    assert rc == 0, err
    assert "export: the files run 1's own --export wrote to A (its report holds the later" in out
