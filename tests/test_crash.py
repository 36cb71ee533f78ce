"""Crash injection, in the manner of SQLite's crash tests: `datapool run` in a real subprocess is
killed with SIGKILL at named points of every phase (listing, decoding, embedding, selection,
rendering, each staged write, each rename and append of the commit, around the journal) and at
seeded random moments. After each kill:

- `Pool.open` succeeds (a pool that never finished its first run is an empty pool);
- the pool equals the state before the run (every file's sha256) or after a complete run (the
  same samples, embeddings to 1e-6, ledger and runs as an uninterrupted run), never a mix;
- the ledger agrees with the pool: no file is marked processed whose samples were lost;
- a re-run completes, and the final pool equals that of an uninterrupted run (re-run once from each
  distinct state a kill leaves: most kills before the commit point leave the same files).

Three scenarios cover the three ways a commit writes the pool CSV: a first run (new files), a
second run that only adds files (rows appended to the CSV), and one where a file changed (the CSV
rewritten). A summary of the trials is printed (run pytest with -s to see it).
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import datapool
from datapool import DatapoolError, Pool
from datapool.media import write_image, write_video

from ._robust import (
    Proc,
    assert_ledger_agrees,
    assert_same_pool,
    cli_args,
    leftovers,
    paused_run,
    tree_digest,
)
from .conftest import clip_frames, scene

N = 4
SEED = 20261124
ARGS = ("--n-samples", N, "--batch-size", 2)


def pipeline_points(decoded: list[str], batches: int) -> list[str]:
    return [
        "locked",
        "listed",
        *(f"decode:{k}" for k in decoded),
        *(f"embed#{b}" for b in range(1, batches + 1, 2)),
        "embedded",
        "selected",
        "rendered",
    ]


def commit_points(run: int, append: bool, ledger_append: bool) -> list[str]:
    """`append`: the run appends to the pool CSV; `ledger_append`: and to the ledger."""
    csv = "datapool_latest.csv" + (".append.pending" if append else "")
    ledger = "ledger.csv" + (".append.pending" if ledger_append else "")
    staged = [
        f"runs/{run}/embedding_view.png",
        f"runs/{run}/thumbnails.bin",
        csv,
        ledger,
        f"runs/{run}/report.json",  # after the CSV: its undo record sums what was written
        "model.json",
        "runs.json",
    ]
    renamed = [
        f"runs/{run}/embedding_view.png",
        f"runs/{run}/thumbnails.bin",
        *([] if append else ["datapool_latest.csv"]),
        *([] if ledger_append else ["ledger.csv"]),
        f"runs/{run}/report.json",
        "model.json",
        "runs.json",
    ]
    appended = [
        *(["datapool_latest.csv"] if append else []),
        *(["ledger.csv"] if ledger_append else []),
    ]
    return [
        *(f"staged:{s}" for s in staged),
        "before-rename:.journal.json",
        "journal-written",
        *(f"appended:{a}" for a in appended),
        *(f"renamed:{r}" for r in renamed),
        "committed",
    ]


# Points after which a killed run's commit is complete (the journal is durable).
def _after_commit_point(point: str) -> bool:
    return point.split(":")[0] in {"journal-written", "appended", "renamed", "committed"}


def _copy_tree_keep_mtime(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=shutil.copy2, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    a = tmp / "bucket_a"
    for i in range(3):
        write_image(a / f"img{i}.jpg", scene(i))
    write_image(a / "pic.png", scene(5))
    write_video(a / "cam" / "clip.mp4", clip_frames(9, 6), fps=10)
    # A pool grows from one source folder (a run from another stops), so each scenario's
    # starting pool is grown from its own folder before that folder gets its new files.
    ab = tmp / "bucket_ab"
    _copy_tree_keep_mtime(a, ab)
    base = tmp / "base"  # one run over bucket A
    datapool.run(ab, base, n_samples=N, progress=False)
    for i in range(2):
        write_image(ab / "more" / f"m{i}.jpg", scene(200 + i))
    write_video(ab / "more" / "clip.mp4", clip_frames(210, 4), fps=10)
    changed = tmp / "bucket_changed"
    _copy_tree_keep_mtime(ab, changed)
    base_ab = tmp / "base_ab"  # one run over A+B, the starting point of the 'changed' scenario
    datapool.run(changed, base_ab, n_samples=N, progress=False)
    write_image(changed / "img1.jpg", scene(301))  # same key, new content: its samples leave
    out = {}
    for name, source, before, run_index, append, pipeline in [
        ("first run", ab, None, 0, False, pipeline_points(["img0.jpg", "more/clip.mp4"], 3)),
        ("appending run", ab, base, 1, True, pipeline_points(["more/m0.jpg", "more/clip.mp4"], 3)),
        ("rewriting run", changed, base_ab, 1, False, pipeline_points(["img1.jpg"], 1)),
    ]:
        ref = tmp / f"ref-{name.replace(' ', '-')}"
        if before is not None:
            shutil.copytree(before, ref)
        datapool.run(source, ref, n_samples=N, progress=False)
        out[name] = dict(
            source=source,
            before=before,
            ref=Pool.open(ref),
            run=run_index,
            append=append,
            pipeline=pipeline,
            digest=None if before is None else tree_digest(before),
        )
    return tmp, out


def _check_after_kill(sc, pool: Path, tally: Counter) -> str:
    """The invariants after a kill; returns 'before' or 'after'."""
    if sc["before"] is None and not (pool / "runs.json").exists():
        try:
            # Recovers; a first run killed after its commit point is now a pool, one killed
            # before it left a folder holding only the lock: an empty pool.
            message = "" if Pool.open(pool).runs else "an empty pool"
        except DatapoolError as e:  # a folder without even the lock: still no pool
            message = str(e)
        if not (pool / "runs.json").exists():
            assert (
                message == "an empty pool"
                or "not a datapool pool" in message
                or ("there is no such folder" in message)
            ), message
            assert leftovers(pool) == []
            assert [p.name for p in pool.rglob("*") if p.is_file()] in ([], [".datapool.lock"])
            tally["states checked"] += 1
            return "before"
    opened = Pool.open(pool)
    assert leftovers(pool) == []
    assert_ledger_agrees(opened)
    tally["states checked"] += 1
    if sc["digest"] is not None and tree_digest(pool) == sc["digest"]:
        return "before"
    assert_same_pool(opened, sc["ref"])  # not before, so it must be exactly after
    return "after"


def _pool_state(pool: Path) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Every path under `pool` (folders and the lock too) and every file's sha256 but the lock's
    (it names the killed run, a new one in every trial); aside, as in tree_digest, the sidecar
    cache that Pool.open rebuilds."""
    paths = tuple(
        str(p.relative_to(pool))
        for p in sorted(pool.rglob("*"))
        if p.relative_to(pool).parts[0] != ".sidecar"
    )
    return paths, tuple(sorted(tree_digest(pool).items()))


def _rerun_and_compare(sc, pool: Path, tally: Counter, rerun_from: set | None = None) -> None:
    """Re-run on the killed run's pool; the final pool must equal an uninterrupted run's.
    `rerun_from` holds the states already re-run this way: a kill that left the same files
    (most kills before the commit point leave the pool as before it) would re-check the
    same thing, so it is re-run once per distinct state."""
    if rerun_from is not None:
        state = _pool_state(pool) if pool.exists() else None
        if state in rerun_from:
            tally["re-runs of a state already re-run, left out"] += 1
            return
        rerun_from.add(state)
    datapool.run(sc["source"], pool, n_samples=N, progress=False, **sc.get("options", {}))
    final = Pool.open(pool)
    assert_same_pool(final, sc["ref"])
    assert_ledger_agrees(final)
    tally["states checked"] += 1


def _trial_pool(tmp: Path, sc, k: int) -> Path:
    pool = tmp / f"trial{k}"
    if sc["before"] is not None:
        shutil.copytree(sc["before"], pool)
    return pool


def test_sigkill_anywhere_loses_nothing(scenarios):
    tmp, scs = scenarios
    rng = random.Random(SEED)
    tally: Counter = Counter()
    phases: Counter = Counter()
    outcomes: Counter = Counter()
    rerun_from: dict[str, set] = {name: set() for name in scs}
    k = 0
    t_start = time.monotonic()

    # 1. Kills at named points: every phase, and inside the commit's narrow windows.
    for name, sc in scs.items():
        points = [
            *sc["pipeline"],
            *commit_points(sc["run"], sc["append"], ledger_append=sc["before"] is not None),
        ]
        for point in points:
            k += 1
            pool = _trial_pool(tmp, sc, k)
            p = Proc(cli_args(sc["source"], pool, *ARGS), DATAPOOL_TEST_PAUSE_AT=point)
            p.wait_for("datapool-test: paused at")
            p.p.send_signal(signal.SIGKILL)
            p.finish()
            assert p.p.returncode == -signal.SIGKILL
            state = _check_after_kill(sc, pool, tally)
            expected = "after" if _after_commit_point(point) else "before"
            assert state == expected, (name, point, state)
            outcomes[state] += 1
            phases[point.split(":")[0].split("#")[0]] += 1
            _rerun_and_compare(sc, pool, tally, rerun_from[name])
            shutil.rmtree(pool)

    # 2. Kills at seeded random moments after the lock is taken; the phase is the last point
    # the run reported (DATAPOOL_TEST_TRACE).
    for name, sc in scs.items():
        pool = tmp / "timing"
        if sc["before"] is not None:
            shutil.copytree(sc["before"], pool)
        p = Proc(cli_args(sc["source"], pool, *ARGS), DATAPOOL_TEST_TRACE="1")
        p.wait_for("datapool-test: at locked")
        t0 = time.monotonic()
        assert p.finish() == 0, p.stderr
        span = time.monotonic() - t0
        shutil.rmtree(pool)
        for _ in range(2):
            k += 1
            pool = _trial_pool(tmp, sc, k)
            p = Proc(cli_args(sc["source"], pool, *ARGS), DATAPOOL_TEST_TRACE="1")
            p.wait_for("datapool-test: at locked")
            time.sleep(rng.uniform(0, span))
            p.p.send_signal(signal.SIGKILL)
            p.finish()
            marks = [
                ln.split("datapool-test: at ", 1)[1].strip()
                for ln in p.err
                if ln.startswith("datapool-test: at ")
            ]
            phase = "completed" if p.p.returncode == 0 else "random/" + marks[-1].split(":")[0]
            phases[phase] += 1
            state = _check_after_kill(sc, pool, tally)
            if p.p.returncode == 0:
                assert state == "after"
            outcomes[state] += 1
            _rerun_and_compare(sc, pool, tally, rerun_from[name])
            shutil.rmtree(pool)

    took = time.monotonic() - t_start
    print(
        f"\ncrash injection: {k} SIGKILL trials in {took:.0f} s, {tally['states checked']} pool "
        f"states checked, outcomes {dict(outcomes)}, phases {dict(sorted(phases.items()))}, "
        f"{tally['re-runs of a state already re-run, left out']} re-runs of a state already "
        "re-run left out"
    )
    assert k >= 50
    assert outcomes["before"] >= 20 and outcomes["after"] >= 15
    for phase in ("listed", "decode", "embed", "selected", "staged", "journal-written", "renamed"):
        assert phases[phase] >= 2, phase


@pytest.mark.parametrize(
    ("point", "signum"),
    [
        ("staged:history/*", signal.SIGKILL),
        ("staged:runs.json", signal.SIGKILL),
        ("journal-written", signal.SIGKILL),
        ("staged:history/*", signal.SIGINT),
        ("staged:runs.json", signal.SIGINT),
    ],
)
def test_process_all_stopped_mid_commit_leaves_no_snapshot_of_a_run_that_never_was(
    scenarios, tmp_path, point, signum
):
    """--process-all sets the pool aside under history/ as part of its commit: a run killed (or
    interrupted) before the commit point leaves the pool exactly as before, with no snapshot
    (status would list it, and it would name a run that never happened); one stopped after the
    commit point keeps the snapshot its run record names, holding the pool as before."""
    _, scs = scenarios
    sc = scs["appending run"]
    pool = tmp_path / "pool"
    shutil.copytree(sc["before"], pool)
    p = Proc(cli_args(sc["source"], pool, *ARGS, "--process-all"), DATAPOOL_TEST_PAUSE_AT=point)
    p.wait_for("datapool-test: paused at")
    p.p.send_signal(signum)
    p.finish()
    opened = Pool.open(pool)
    assert leftovers(pool) == []
    kept = sorted((pool / "history").glob("*")) if (pool / "history").exists() else []
    if not _after_commit_point(point):
        assert tree_digest(pool) == sc["digest"], sorted(set(tree_digest(pool)) ^ set(sc["digest"]))
        assert kept == []
        return
    assert len(kept) == 1 and opened.runs[0]["previous_pool"] == f"history/{kept[0].name}"
    for name in ("runs.json", "ledger.csv", "datapool_latest.csv"):
        assert (kept[0] / name).read_bytes() == (sc["before"] / name).read_bytes(), name


def _traced_points(source: Path, pool: Path, *args: object) -> list[str]:
    """The phases an uninterrupted run on (a copy of) `pool` passes and every step of its
    commit, each as a pattern that pauses there (`name#k` for its k-th hit)."""
    p = Proc(cli_args(source, pool, *args), DATAPOOL_TEST_TRACE="1")
    assert p.finish() == 0, p.stderr
    names = [
        ln.split("datapool-test: at ", 1)[1].strip()
        for ln in p.err
        if ln.startswith("datapool-test: at ")
    ]
    names = names[names.index("locked") :]
    seen: Counter = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    phases = ("listed", "embedded", "selected", "rendered", "journal-written", "committed")
    return [n for n in out if n in phases or n.startswith(("staged:", "appended:", "renamed:"))]


def test_sigkill_at_every_point_of_a_run_that_moves_files(scenarios, tmp_path):
    """A run that finds moved files rewrites the pool CSV and the ledger under the new names
    (pool/moves.py) and embeds only what is new: killed at each point it passes, the pool is as
    before it or as after it, and a re-run completes it."""
    _, scs = scenarios
    before = scs["appending run"]["before"]  # one run over bucket A
    source = tmp_path / "moved"
    _copy_tree_keep_mtime(scs["appending run"]["source"], source)
    for path in sorted(source.rglob("more/*")):
        path.unlink()
    (source / "cam").rename(source / "camera")  # its clip's frames are renamed, not embedded
    (source / "img0.jpg").rename(source / "first.jpg")
    write_image(source / "new.jpg", scene(400))  # and one new file
    ref = tmp_path / "ref"
    shutil.copytree(before, ref)
    args = (*ARGS, "--source-moved")  # a copy of the pool's source folder, elsewhere
    points = _traced_points(source, ref, *args)
    ref_pool = Pool.open(ref)
    assert ref_pool.runs[-1]["counts"]["moved"] == 2, ref_pool.runs[-1]["counts"]
    assert {"renamed:datapool_latest.csv", "renamed:ledger.csv"} <= set(points), points
    sc = {"before": before, "ref": ref_pool, "digest": tree_digest(before), "source": source}
    sc["options"] = {"source_moved": True}
    outcomes: Counter = Counter()
    rerun_from: set = set()
    for k, point in enumerate(points):
        pool = tmp_path / f"trial{k}"
        shutil.copytree(before, pool)
        p = Proc(cli_args(source, pool, *args), DATAPOOL_TEST_PAUSE_AT=point)
        p.wait_for("datapool-test: paused at")
        p.p.send_signal(signal.SIGKILL)
        p.finish()
        state = _check_after_kill(sc, pool, Counter())
        expected = "after" if k >= points.index("journal-written") else "before"
        assert state == expected, (point, state)
        outcomes[state] += 1
        _rerun_and_compare(sc, pool, Counter(), rerun_from)
        shutil.rmtree(pool)
    assert outcomes["before"] >= 5 and outcomes["after"] >= 5, outcomes


def test_sigkill_while_a_run_records_its_check_leaves_the_pool_before_or_after(scenarios, tmp_path):
    """A run with nothing new that records its check of an older decoder's files (runs.json's
    `decoder_checked`) and the new mtime of a touched file (a ledger row appended), in one
    commit without a run: killed at each point of that commit, the pool is as before it (byte
    for byte) or as after it (both records, nothing else changed), and the next run completes
    it."""
    import json
    import os

    _, scs = scenarios
    sc = scs["appending run"]
    before = tmp_path / "before"
    shutil.copytree(sc["before"], before)
    source = tmp_path / "source"  # bucket A as the pool's run read it: nothing new
    _copy_tree_keep_mtime(sc["source"], source)
    shutil.rmtree(source / "more")
    os.utime(source / "img0.jpg", ns=(10**18, 10**18))  # touched: same bytes, a new mtime
    doc = json.loads((before / "runs.json").read_text())
    for run in doc["runs"]:
        run["decoder"] = 2  # its video read by decoder 2
        run["source"] = str(source)
    (before / "runs.json").write_text(json.dumps(doc, indent=2) + "\n")
    digest = tree_digest(before)
    ref = tmp_path / "ref"
    shutil.copytree(before, ref)
    points = _traced_points(source, ref, *ARGS)
    assert Pool.open(ref).checked is not None and len(Pool.open(ref).runs) == 1
    assert points[-6:] == [
        "staged:ledger.csv.append.pending",
        "staged:runs.json",
        "journal-written",
        "appended:ledger.csv",
        "renamed:runs.json",
        "committed",
    ], points
    recorded = {"runs.json", "ledger.csv"}
    unchanged = {k: v for k, v in digest.items() if k not in recorded}

    def mtime(pool: Path) -> int:
        return int(Pool.open(pool).ledger.set_index("key").loc["img0.jpg", "mtime_ns"])

    assert mtime(ref) == 10**18 and mtime(before) != 10**18
    rerun_from: set = set()  # the states re-run below: each distinct one once
    for k, point in enumerate(points):
        pool = tmp_path / f"trial{k}"
        shutil.copytree(before, pool)
        p = Proc(cli_args(source, pool, *ARGS), DATAPOOL_TEST_PAUSE_AT=point)
        p.wait_for("datapool-test: paused at")
        p.p.send_signal(signal.SIGKILL)
        p.finish()
        opened = Pool.open(pool)
        assert leftovers(pool) == [] and len(opened.runs) == 1
        if k < points.index("journal-written"):
            assert tree_digest(pool) == digest, point
            assert opened.checked is None
        else:
            now = tree_digest(pool)
            assert {k: v for k, v in now.items() if k not in recorded} == unchanged, point
            assert opened.checked is not None and opened.checked["through_run"] == 0
            assert mtime(pool) == 10**18, point
        state = _pool_state(pool)
        if state in rerun_from:
            shutil.rmtree(pool)
            continue
        rerun_from.add(state)
        datapool.run(source, pool, n_samples=N, progress=False)
        again = Pool.open(pool)
        assert again.runs == opened.runs and again.checked is not None
        assert mtime(pool) == 10**18
        shutil.rmtree(pool)


@pytest.mark.parametrize("at", ["journal-written", "renamed:runs.json"])
def test_a_process_all_run_killed_after_its_commit_point_leaves_no_old_run_folders(tmp_path, at):
    """A --process-all run rebuilds the pool as one run (runs/0) and sets the old one aside in
    history/. It removed the old runs/1.. after its commit, outside the journal: killed in
    between (found by tools/chaos.py), the pool kept them, with their reports and thumbnails;
    `datapool verify` warned "a run folder of no run: delete it", and the next run wrote into
    the old runs/1/ (what it does not write itself stayed there). Now the journal names them
    and the recovery removes them."""
    src, pool = tmp_path / "src", tmp_path / "pool"
    for i in range(2):
        write_image(src / f"img{i}.jpg", scene(600 + i))
    datapool.run(src, pool, n_samples=1, progress=False)
    write_image(src / "more.jpg", scene(610))
    datapool.run(src, pool, n_samples=1, progress=False)
    assert (pool / "runs" / "1" / "report.json").exists()
    with paused_run(src, pool, "--n-samples", 1, "--process-all", at=at):
        pass  # killed there
    from datapool.pool.store import verify_pool

    (journal,) = [p for p in verify_pool(str(pool)).errors if p.file == ".journal.json"]
    assert "an interrupted commit" in journal.message, journal  # not "undo": it removes files
    opened = Pool.open(pool)  # finishes the commit
    assert len(opened.runs) == 1 and leftovers(pool) == []
    assert not (pool / "runs" / "1").exists()
    snapshot = opened.runs[0]["previous_pool"]
    assert (pool / snapshot / "runs" / "1" / "report.json").exists()  # kept in the history
    assert_ledger_agrees(opened)
    assert verify_pool(str(pool)).problems == []
