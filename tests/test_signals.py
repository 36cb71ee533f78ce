"""Ctrl-C (SIGINT) and SIGTERM (docker stop) during a real `datapool run` process: it stops within
a few seconds, says what happened in one line, exits 130 / 143, and leaves the pool as it was
before the run; a signal that lands inside the commit point waits for the commit to finish."""

from __future__ import annotations

import shutil
import signal
import time

import pytest

import datapool
from datapool import Pool

from ._robust import Proc, assert_same_pool, cli_args, leftovers, second_run_setup, tree_digest
from .conftest import save_image_model, write_media

N = 4
BEFORE = "the pool is as it was before this run"
COMMITTED = "at the end of the commit; the run was committed"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return second_run_setup(tmp_path_factory.mktemp("signals"), write_media, N)


@pytest.mark.parametrize(
    ("sig", "pause_at", "pause_s", "expect"),
    [
        (signal.SIGINT, "listed", None, BEFORE),
        (signal.SIGTERM, "decode:more/clip.mp4", None, BEFORE),  # decoding
        (signal.SIGINT, "started", None, BEFORE),  # the pipeline's threads just started
        (signal.SIGINT, "embed#2", None, BEFORE),  # embedding
        (signal.SIGTERM, "selected", None, BEFORE),
        (signal.SIGINT, "staged:ledger.csv.append.pending", None, BEFORE),  # half the commit staged
        (signal.SIGTERM, "staged:runs.json", None, BEFORE),  # all staged, journal not written
        (signal.SIGINT, "before-rename:.journal.json", 1.0, COMMITTED),  # inside the commit point
        (signal.SIGTERM, "journal-written", 1.0, COMMITTED),
        # After the commit, as the sidecar's manifest is replaced (its first write is at open:
        # the copied pool's sidecar is rebuilt): the run was committed, and the CLI says so.
        (signal.SIGINT, "before-rename:manifest.json#2", 1.0, COMMITTED),
        # Past the commit point, in lines no region marks as after it: the journal's own trace
        # point once it has replayed, and the run's last line once the lock is released.
        (signal.SIGTERM, "committed", 1.0, COMMITTED),
        (signal.SIGINT, "unlocked", 1.0, COMMITTED),
    ],
)
def test_signal_stops_the_run_cleanly(setup, tmp_path, sig, pause_at, pause_s, expect):
    bucket, base, reference = setup
    pool = tmp_path / "pool"
    shutil.copytree(base, pool)
    before = tree_digest(pool, skip_lock=False)
    hooks = {"DATAPOOL_TEST_PAUSE_AT": pause_at}
    if pause_s is not None:
        hooks["DATAPOOL_TEST_PAUSE_S"] = str(pause_s)
    p = Proc(cli_args(bucket, pool, "--n-samples", N, "--batch-size", 2), **hooks)
    p.wait_for(f"paused at {pause_at.split('#')[0]}")
    t0 = time.monotonic()
    p.p.send_signal(sig)
    rc = p.finish(timeout=30)
    took = time.monotonic() - t0
    assert rc == 128 + sig, p.stderr
    assert took < 5, took
    lines = [ln for ln in p.stderr.splitlines() if not ln.startswith("datapool-test:")]
    assert lines == [
        f"datapool: interrupted ({sig.name}); {expect}"
        if expect == BEFORE
        else f"datapool: interrupted ({sig.name}) {expect}"
    ], p.stderr
    assert leftovers(pool) == []
    if expect == BEFORE:
        assert tree_digest(pool, skip_lock=False) == before
        assert not (pool / "runs" / "1").exists()
        datapool.run(bucket, pool, n_samples=N, progress=False)
    opened = Pool.open(pool)
    assert opened.recovered is None
    assert_same_pool(opened, reference)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_once_the_run_has_returned_is_ignored(setup, tmp_path, sig):
    """The CLI ignores signals once the run has returned: the process prints the run's summary
    and exits 0, rather than report an interrupted run that finished, or die by the signal in
    interpreter shutdown (which resets Python's handlers to the default)."""
    bucket, base, reference = setup
    pool = tmp_path / "pool"
    shutil.copytree(base, pool)
    p = Proc(
        cli_args(bucket, pool, "--n-samples", N, "--batch-size", 2),
        DATAPOOL_TEST_PAUSE_AT="exiting",
        DATAPOOL_TEST_PAUSE_S="1",
    )
    p.wait_for("paused at exiting")
    p.p.send_signal(sig)
    assert p.finish(timeout=30) == 0, p.stderr
    assert [ln for ln in p.stderr.splitlines() if not ln.startswith("datapool-test:")] == []
    assert "selected" in p.out and str(pool) in p.out
    assert_same_pool(Pool.open(pool), reference)


def test_signals_at_random_moments(setup, tmp_path):
    """SIGINT or SIGTERM at seeded random moments after the lock is taken (so inside onnxruntime,
    PyAV, the C++ selection or matplotlib as it falls): the run either finished first, or stops
    within a few seconds with the pool as before (or committed, if the signal hit the commit)."""
    import random

    bucket, base, reference = setup
    rng = random.Random(7)
    outcomes = []
    for k in range(6):
        sig = (signal.SIGINT, signal.SIGTERM)[k % 2]
        pool = tmp_path / f"pool{k}"
        shutil.copytree(base, pool)
        before = tree_digest(pool, skip_lock=False)
        p = Proc(
            cli_args(bucket, pool, "--n-samples", N, "--batch-size", 2), DATAPOOL_TEST_TRACE="1"
        )
        p.wait_for("datapool-test: at locked")
        time.sleep(rng.uniform(0, 0.8))
        t0 = time.monotonic()
        p.p.send_signal(sig)
        rc = p.finish(timeout=30)
        assert time.monotonic() - t0 < 5
        assert leftovers(pool) == []
        lines = [ln for ln in p.stderr.splitlines() if not ln.startswith("datapool-test:")]
        assert rc == 0 or lines, p.stderr
        if rc == 0 or (rc == 128 + sig and lines[-1].endswith(COMMITTED)):
            outcomes.append("finished" if rc == 0 else "committed")
            assert_same_pool(Pool.open(pool), reference)
        else:
            outcomes.append("stopped")
            assert rc == 128 + sig, p.stderr
            assert lines == [f"datapool: interrupted ({sig.name}); {BEFORE}"], p.stderr
            assert tree_digest(pool, skip_lock=False) == before
    print("random signals:", outcomes)
    assert outcomes.count("stopped") >= 3, outcomes


def _slow_model(path, layers):
    """A real model whose batches take a while: `layers` 3x3 convolutions of 64 channels at
    128x128 (one shared weight, so the file stays small), about 5 ms a layer per image here."""
    import numpy as np

    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(
            (0.1 * rng.standard_normal((64, 3, 3, 3))).astype(np.float32), "w0"
        ),
        numpy_helper.from_array(
            (0.05 * rng.standard_normal((64, 64, 3, 3))).astype(np.float32), "w"
        ),
    ]
    nodes = [helper.make_node("Conv", ["input", "w0"], ["h0"], pads=[1, 1, 1, 1])]
    for i in range(layers):
        nodes += [
            helper.make_node("Conv", [f"h{i}", "w"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Tanh", [f"c{i}"], [f"h{i + 1}"]),
        ]
    nodes += [
        helper.make_node("GlobalAveragePool", [f"h{layers}"], ["g"]),
        helper.make_node("Flatten", ["g"], ["out"], axis=1),
    ]
    return save_image_model(path, "slow", nodes, ["N", 3, 128, 128], ["N", 64], weights)


@pytest.mark.parametrize(
    "hooks",
    [{}, {"DATAPOOL_TEST_PAUSE_AT": "embed"}],
    ids=["inside-onnxruntime", "thread-left-behind"],
)
def test_a_signal_during_a_long_batch_exits_cleanly(tmp_path, hooks):
    """Ctrl-C while a batch runs a slow model (16 images in one batch, seconds of inference).

    inside-onnxruntime: the batch is stopped between two nodes (RunOptions.terminate), so no
    thread is left. Before, the pipeline left the inference thread inside onnxruntime; when
    the batch ended during interpreter shutdown, the process aborted ("terminate called without
    an active exception", exit -6) after printing that it was interrupted.
    thread-left-behind: a stage that does not stop within the pipeline's wait (here held at a
    pause point) is left, and the CLI ends the process with os._exit, still with exit 130 and
    its one line."""
    bucket = tmp_path / "bucket"
    for i in range(16):
        write_media(bucket / f"img{i:02d}.jpg", seed=300 + i)
    model = _slow_model(tmp_path / "slow.onnx", layers=60)
    pool = tmp_path / "pool"
    p = Proc(
        cli_args(bucket, pool, "--n-samples", 4, "--batch-size", 16, "--model", model),
        DATAPOOL_TEST_TRACE="1",
        **hooks,
    )
    p.wait_for("datapool-test: at embed")
    if hooks:
        p.wait_for("datapool-test: paused at embed")
    time.sleep(0.3)
    p.p.send_signal(signal.SIGINT)
    rc = p.finish(timeout=30)
    assert rc == 130, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if not ln.startswith("datapool-test:")]
    assert lines == [f"datapool: interrupted (SIGINT); {BEFORE}"], p.stderr
    assert ("datapool-test: at threads-left" in p.stderr) == bool(hooks), p.stderr
    assert ("datapool-test: at embed-stopped" in p.stderr) == (not hooks), p.stderr
    assert not pool.exists() or leftovers(pool) == []


def test_a_signal_inside_an_extension_import_is_an_interrupt(monkeypatch, capsys, tmp_path):
    """A signal that lands while a C extension initialises (it happened inside
    `import onnxruntime`) reaches the CLI as that module's ImportError caused by Interrupted:
    it must still end as an interrupt (exit 143, one line), not as a crash."""
    from datapool import cli
    from datapool._signals import Interrupted

    def run_importing(a):
        try:
            raise Interrupted(signal.SIGTERM)
        except Interrupted as e:
            raise ImportError("initialization failed") from e

    monkeypatch.setattr("datapool._signals.install", lambda: None)  # keep pytest's own handlers
    monkeypatch.setattr(cli, "_cmd_run", run_importing)
    rc = cli.main(["run", str(tmp_path), "--pool", str(tmp_path / "pool"), "--n-samples", "1"])
    assert rc == 128 + signal.SIGTERM
    err = capsys.readouterr().err.splitlines()
    assert err == [f"datapool: interrupted (SIGTERM); {BEFORE}"]
    monkeypatch.setattr(cli, "_cmd_run", lambda a: (_ for _ in ()).throw(ImportError("no module")))
    with pytest.raises(ImportError, match="no module"):
        cli.main(["run", str(tmp_path), "--pool", str(tmp_path / "pool"), "--n-samples", "1"])


def test_an_interrupted_command_that_writes_no_pool_says_only_that(monkeypatch, capsys, tmp_path):
    """`ls`, `status`, `export`... read a pool (export writes elsewhere): "the pool is as it was
    before this run" is a run's line, and reads oddly after them."""
    from datapool import cli

    def interrupted(a):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_ls", interrupted)
    assert cli.main(["ls", str(tmp_path)]) == 130
    assert capsys.readouterr().err.splitlines() == ["datapool: interrupted (SIGINT)"]
