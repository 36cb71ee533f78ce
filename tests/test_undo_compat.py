"""`datapool undo` of a run that a released datapool made: a user upgrades between a run and its
undo (a cron job upgraded overnight), or between two runs, and the undo still puts the pool back
byte for byte.

runs.json before the run was written by whichever datapool made the commit before it, and each
writes its own name and pool format there; undo rebuilt it in this version's form only, so its
hash never matched the one the run recorded: 'runs.json as it was before run 1 cannot be rebuilt
byte for byte (another datapool version wrote it); nothing changed'. Now each released datapool's
form is tried (pool/format.py WRITERS) and the one whose hash matches is put back.

The pools are tests/artifacts/compat/undo/ (tools/make_undo_fixtures.py made them with the
releases themselves, from this repository's history): `A-B` is run 0 by A and run 1 by B;
`before.json`, the SHA-256 of each file before run 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import datapool
from datapool import Pool
from datapool.cli import main
from datapool.media import write_image

from ._robust import assert_ledger_agrees, leftovers, tree_digest
from .conftest import scene

FIXTURES = Path(__file__).parent / "artifacts" / "compat" / "undo"


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([*map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    ("name", "before_by"),
    [
        ("0.4.0", "0.4.0"),  # with a `datapool rm` between the runs (runs.json holds a removal)
        ("0.5.0", "0.5.0"),  # with strategies (strategy_inputs.json rebuilt)
        ("0.5.0-0.6.0", "0.5.0"),
        ("0.3.0-0.5.0", "0.3.0"),
        ("0.2.0-0.4.0", "0.2.0"),
    ],
)
def test_a_run_a_released_datapool_made_is_undone_byte_for_byte(name, before_by, tmp_path, capsys):
    path = tmp_path / "pool"
    shutil.copytree(FIXTURES / name / "pool", path)
    before = json.loads((FIXTURES / name / "before.json").read_text())
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 0, err
    assert "undid run 1 (run-1)" in out and "in 1 run, as before that run" in out
    assert f"runs.json: put back as datapool {before_by} wrote it before run 1" in out
    assert tree_digest(path) == before and leftovers(path) == []
    doc = json.loads((path / "runs.json").read_text())
    assert doc["written_by"] == f"datapool {before_by}"  # as that datapool wrote it
    opened = Pool.open(path)
    assert len(opened.runs) == 1
    assert_ledger_agrees(opened)
    rc, out, err = cli(capsys, "verify", path)
    assert rc == 0, out + err
    assert "pool OK: " in out


def test_this_datapool_is_among_the_writers_undo_knows():
    """A release adds its line to WRITERS, so that the datapools after it undo its runs."""
    from datapool.pool.format import POOL_FORMAT, WRITERS, this_datapool

    assert (this_datapool(), POOL_FORMAT) in WRITERS


def test_runs_json_that_no_datapool_it_knows_wrote_is_refused(tmp_path, capsys):
    """The pool before run 1 was written by a datapool this one does not know (a development
    build): its runs.json cannot be rebuilt byte for byte, and undo says so and changes nothing."""
    src, path = tmp_path / "src", tmp_path / "pool"
    write_image(src / "a.jpg", scene(1))
    datapool.run(src, path, n_samples=1, model=str(FIXTURES.parent / "tiny.onnx"), progress=False)
    doc = json.loads((path / "runs.json").read_text())
    doc["written_by"] = "datapool 0.6.0.dev3+g1234567"
    (path / "runs.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_image(src / "b.jpg", scene(2))
    datapool.run(src, path, n_samples=1, model=str(FIXTURES.parent / "tiny.onnx"), progress=False)
    digest = tree_digest(path)
    rc, out, err = cli(capsys, "undo", path)
    assert rc == 4 and out == ""
    assert "runs.json as it was before run 1 (run-1) cannot be rebuilt byte for byte" in err
    assert "a datapool this one does not know wrote it" in err and "nothing changed" in err
    assert tree_digest(path) == digest
