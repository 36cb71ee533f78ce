"""Locks with real processes: a second run fails fast, a killed holder's lock is taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from datapool import Pool
from datapool.pool.layout import LOCK_NAME
from datapool.pool.lock import PoolLock

from ._robust import Proc, cli_args, lock_holder, paused_run, tree_digest


def test_concurrent_run_fails_fast_and_a_killed_holder_is_taken_over(bucket, tmp_path):
    pool = tmp_path / "pool"
    with paused_run(bucket, pool, "--n-samples", 4, at="embedded") as first:
        t0 = time.monotonic()
        second = subprocess.run(
            cli_args(bucket, pool, "--n-samples", 4), capture_output=True, text=True, timeout=120
        )
        took = time.monotonic() - t0
    assert second.returncode == 3, second.stderr
    assert second.stderr == (
        f"datapool: error: pool {pool} is locked by another datapool run "
        f"(held by pid {first.p.pid} on {socket.gethostname()}); wait for it to finish\n"
    )
    assert took < 20  # the whole process, startup included: it does not wait for the holder
    assert first.p.returncode == -signal.SIGKILL
    # The killed run left its pid in the lock file, but the OS released its flock.
    record = json.loads((pool / LOCK_NAME).read_text())
    assert record["pid"] == first.p.pid and record["host"] == socket.gethostname()
    assert not (pool / "runs.json").exists()

    third = subprocess.run(
        cli_args(bucket, pool, "--n-samples", 4), capture_output=True, text=True, timeout=120
    )
    assert third.returncode == 0, third.stderr
    assert third.stderr == (
        f"datapool: warning: took over the lock of pool {pool} left by pid {first.p.pid} (on this "
        "host; that process is no longer running); the previous run was interrupted before it "
        "finished\n"
    )
    report = json.loads((pool / "runs" / "0" / "report.json").read_text())
    assert len(report["warnings"]) == 1 and f"pid {first.p.pid}" in report["warnings"][0]
    assert len(Pool.open(pool)) == 4
    # A clean run releases the lock and empties the record: the next run has nothing to warn about.
    assert (pool / LOCK_NAME).read_bytes() == b""
    fourth = subprocess.run(
        cli_args(bucket, pool, "--n-samples", 4), capture_output=True, text=True, timeout=120
    )
    assert fourth.returncode == 0 and fourth.stderr == ""


def _killed_holder(tmp_path):
    holder = lock_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    holder.stdout.close()
    return holder.pid


def test_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _killed_holder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="datapool"), PoolLock(tmp_path) as lock:
        assert lock.took_over is not None
        assert (
            f"left by pid {pid} (on this host; that process is no longer running)" in lock.took_over
        )
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert [r.getMessage() for r in caplog.records] == [lock.took_over]
    assert (tmp_path / LOCK_NAME).read_bytes() == b""
    with PoolLock(tmp_path) as again:
        assert again.took_over is None


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            json.dumps({"pid": 12345, "host": "elsewhere.invalid"}),
            "on another host, elsewhere.invalid",
        ),
        (
            json.dumps({"pid": os.getppid(), "host": socket.gethostname()}),
            "is alive but does not hold the lock",
        ),
        ("{garbage", "unreadable record"),
    ],
)
def test_stale_lock_records_are_described(tmp_path, record, expected):
    (tmp_path / LOCK_NAME).write_text(record)
    with PoolLock(tmp_path) as lock:
        assert lock.took_over is not None and expected in lock.took_over


def test_status_does_not_take_the_lock_or_change_the_pool(bucket, tmp_path):
    pool = tmp_path / "pool"
    assert subprocess.run(cli_args(bucket, pool, "--n-samples", 3), timeout=120).returncode == 0
    before = tree_digest(pool, skip_lock=False)
    holder = Proc(cli_args(bucket, pool, "--n-samples", 3), DATAPOOL_TEST_PAUSE_AT="locked")
    try:
        holder.wait_for("paused at locked")
        # Reading a pool that needs no recovery works while a run holds the lock.
        s = subprocess.run(
            [sys.executable, "-m", "datapool", "status", str(pool)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert s.returncode == 0 and "3 samples" in s.stdout
    finally:
        holder.kill()
    after = tree_digest(pool, skip_lock=False)
    assert {k: v for k, v in after.items() if k != LOCK_NAME} == {
        k: v for k, v in before.items() if k != LOCK_NAME
    }


def test_status_says_a_run_holds_the_pool_and_names_a_stale_lock(bucket, tmp_path):
    """Before, `datapool status` during a run showed the last commit as if nothing were going
    on. Now one line says a run holds the pool (its pid, host and since when, from the lock's
    record), in text and --json, without taking the lock or waiting for it; once that run
    is killed, the line names the lock as stale and what to do."""
    from datetime import datetime

    from .test_trust import cli

    pool = tmp_path / "pool"
    assert subprocess.run(cli_args(bucket, pool, "--n-samples", 2), timeout=120).returncode == 0
    (bucket / "new.jpg").write_bytes((bucket / "img0.jpg").read_bytes()[:-2] + b"\xff\xd9")
    with paused_run(bucket, pool, "--n-samples", 2, at="listed") as run:
        text, js = cli("status", pool, timeout=60), cli("status", pool, "--json", timeout=60)
    assert text.returncode == 0 and js.returncode == 0, text.stderr + js.stderr
    host = socket.gethostname()
    lines = text.stdout.splitlines()
    assert lines[1].startswith(f"running a run holds the pool: pid {run.p.pid} on {host} since ")
    assert lines[1].endswith("; what follows is the pool as last committed"), lines[1]
    lock = json.loads(js.stdout)["lock"]
    assert (lock["state"], lock["pid"], lock["host"]) == ("held", run.p.pid, host)
    assert abs(datetime.fromisoformat(lock["since"]).timestamp() - time.time()) < 120

    text, js = cli("status", pool), cli("status", pool, "--json")
    (line,) = [ln for ln in text.stdout.splitlines() if ln.startswith("lock ")]
    assert line == (
        f"lock    stale: pid {run.p.pid} on {host} since {lock['since']} took the lock and did "
        "not finish (that process is no longer running); nothing to do: the next run takes the "
        "lock over, and the pool is as its last commit left it"
    )
    assert json.loads(js.stdout)["lock"]["state"] == "stale"
    assert subprocess.run(cli_args(bucket, pool, "--n-samples", 2), timeout=120).returncode == 0
    text, js = cli("status", pool), cli("status", pool, "--json")
    assert not [ln for ln in text.stdout.splitlines() if ln.startswith(("lock ", "running "))]
    assert json.loads(js.stdout)["lock"] is None
    # A record of another host (a shared folder): whether it runs, only that host tells.
    (pool / LOCK_NAME).write_text(json.dumps({"pid": 7, "host": "elsewhere-1", "since": 0.0}))
    text = cli("status", pool)
    assert text.stdout.splitlines()[1] == (
        "running a run on another host may hold the pool: pid 7 on elsewhere-1 since "
        "1970-01-01T00:00:00+00:00, as its lock records (whether it still runs, only that host "
        "tells); what follows is the pool as last committed"
    )


def test_ls_report_export_of_a_folder_whose_first_run_is_in_progress_say_no_pool_yet(
    bucket, tmp_path
):
    """Before, `datapool ls`, `report` and `export` during a new pool's first run said the
    folder 'is not a datapool pool (no runs.json in it)', as for a mistyped path. Now each says
    the line `datapool status` says (no pool yet, the run that holds the folder), with the exit
    code of no pool; a folder without a lock record is still not a pool."""
    from .test_trust import cli

    pool = tmp_path / "pool"
    with paused_run(bucket, pool, "--n-samples", 2, at="listed") as run:
        lock = json.loads(cli("status", pool, "--json", timeout=60).stdout)["lock"]
        said = [
            cli("ls", pool, timeout=60),
            cli("report", pool, "--out", tmp_path / "page.html", timeout=60),
            cli("export", pool, tmp_path / "out", timeout=60),
        ]
    line = (
        f"{pool}: no pool yet: a run holds the folder (pid {run.p.pid} on "
        f"{socket.gethostname()} since {lock['since']}); its first commit makes the pool"
    )
    for r in said:
        assert r.returncode == 4, r.stderr
        assert "not a datapool pool" not in r.stderr and line in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    (tmp_path / "empty").mkdir()
    other = cli("ls", tmp_path / "empty")
    assert other.returncode == 4 and "is not a datapool pool" in other.stderr


def test_status_reads_the_lock_without_taking_it(bucket, tmp_path):
    """Status reads the lock's record and takes nothing, not for a moment: the holder's record
    stays as it wrote it."""
    from .test_trust import cli

    pool = tmp_path / "pool"
    assert subprocess.run(cli_args(bucket, pool, "--n-samples", 2), timeout=120).returncode == 0
    holder = lock_holder(pool)
    try:
        before = (pool / LOCK_NAME).read_bytes()
        r = cli("status", pool, "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["lock"]["pid"] == holder.pid
        assert (pool / LOCK_NAME).read_bytes() == before
    finally:
        holder.kill()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()


def test_status_of_a_folder_whose_first_run_is_in_progress_says_no_pool_yet(bucket, tmp_path):
    """Before, `datapool status` during a new pool's first run said 'empty (no run committed
    yet)', then that a run holds the pool and 'what follows is the pool as last committed',
    where nothing follows and nothing was committed. Now one line says there is no pool yet,
    which run holds the folder, and that its first commit makes the pool; killed, the run is
    named as one that did not finish."""
    from .test_trust import cli

    pool = tmp_path / "pool"
    with paused_run(bucket, pool, "--n-samples", 2, at="listed") as run:
        assert not (pool / "runs.json").exists()
        text, js = cli("status", pool, timeout=60), cli("status", pool, "--json", timeout=60)
    assert text.returncode == 0 and js.returncode == 0, text.stderr + js.stderr
    host = socket.gethostname()
    lock = json.loads(js.stdout)["lock"]
    assert (lock["state"], lock["pid"]) == ("held", run.p.pid)
    assert text.stdout.splitlines() == [
        f"pool    {pool}: no pool yet: a run holds the folder (pid {run.p.pid} on {host} since "
        f"{lock['since']}); its first commit makes the pool"
    ]
    text = cli("status", pool)
    assert text.stdout.splitlines() == [
        f"pool    {pool}: no pool yet: a run took the folder (pid {run.p.pid} on {host} since "
        f"{lock['since']}) and did not finish (that process is no longer running); nothing to "
        "do: the next run takes the lock over and makes the pool"
    ]
    assert subprocess.run(cli_args(bucket, pool, "--n-samples", 2), timeout=120).returncode == 0
    assert json.loads(cli("status", pool, "--json").stdout)["lock"] is None
