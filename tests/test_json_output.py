"""What `--json` puts on stdout and stderr.

- `ls --json` writes its list whole or not at all: it streamed the list a sample at a time, so
  an `ls` that failed part way (a run's report gone from the bucket) left a truncated document on
  stdout, or, cut between two samples, one that a script could take for the list
  (tests/test_s3_pool.py: test_ls_json_that_fails_part_way_leaves_nothing_on_stdout).
- A warning that the JSON document holds (`run`'s and `export`'s `warnings`) is printed there
  alone: it was also a line on stderr, so a script that keeps both read each warning twice.
  A command that fails prints no document: its warnings come before its error line, as before.
"""

from __future__ import annotations

import json
import signal

import pytest

import datapool
from datapool.media import write_image

from ._robust import Proc, cli_args
from .conftest import run_cli, scene

NOT_READ = "of a type datapool does not read was ignored"


@pytest.fixture
def photos_and_raw(tmp_path):
    """Four photos and a file datapool does not read, which every run warns of."""
    root = tmp_path / "photos"
    for i in range(4):
        write_image(root / f"p{i}.jpg", scene(200 + i))
    (root / "camera.dng").write_bytes(b"II*\x00not read")
    return root


def test_a_warning_is_in_the_json_document_alone(tmp_path, photos_and_raw):
    p = run_cli("run", photos_and_raw, "--pool", tmp_path / "pool", "--n-samples", 2, "--json")
    assert p.returncode == 0, p.stderr
    (warning,) = [w for w in json.loads(p.stdout)["warnings"] if NOT_READ in w]
    assert NOT_READ not in p.stderr, p.stderr
    # Without --json it is a line on stderr (the summary on stdout does not hold it).
    write_image(photos_and_raw / "p9.jpg", scene(209))
    p = run_cli("run", photos_and_raw, "--pool", tmp_path / "pool", "--n-samples", 2)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count(NOT_READ) == 1 and f"datapool: warning: {warning}" in p.stderr
    assert NOT_READ not in p.stdout


def test_a_failed_json_run_says_its_warnings_before_its_error(tmp_path, photos_and_raw):
    proc = Proc(
        cli_args(photos_and_raw, tmp_path / "pool", "--n-samples", 2, "--json"),
        DATAPOOL_TEST_PAUSE_AT="selected",
    )
    proc.wait_for("paused at selected")
    proc.p.send_signal(signal.SIGINT)
    assert proc.finish(timeout=60) == 130, proc.stderr
    assert proc.out == ""
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("datapool-test:")]
    assert len(lines) == 2 and NOT_READ in lines[0], proc.stderr
    assert lines[0].startswith("datapool: warning: ")
    assert json.loads(lines[1])["error"]["kind"] == "interrupted"


def test_ls_json_is_the_list(tmp_path, photos_and_raw):
    pool = tmp_path / "pool"
    p = run_cli("ls", pool, "--json")  # no pool: the error, and nothing on stdout
    assert p.returncode == 4 and p.stdout == ""
    datapool.run(photos_and_raw, pool, n_samples=3, progress=False)
    p = run_cli("ls", pool, "--json", check=True)
    samples = datapool.Pool.open(pool).samples()
    assert len(samples) == 3
    assert p.stdout == json.dumps(samples, indent=2) + "\n"
    p = run_cli("ls", pool, "--run", "no-such-tag", "--json")
    assert p.returncode == 4 and p.stdout == ""
