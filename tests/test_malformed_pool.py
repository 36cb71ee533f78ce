"""Malformed pools: each defect ends in a one-line PoolCorruptError that names the file (exit 2
from the CLI, for `run` and `status`), and the pool's bytes are unchanged: sha256 of every file
in the pool folder, before and after."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import datapool
from datapool import Pool, PoolCorruptError
from datapool.pool import csvfile as pool_csv

from ._robust import cli_args, make_small_bucket, tree_digest
from .conftest import write_media

CSV, LEDGER, RUNS, MODEL = "datapool_latest.csv", "ledger.csv", "runs.json", "model.json"


def _lines(p):
    return p.read_bytes().split(b"\n")


def _rewrite_lines(p, edit):
    lines = _lines(p)
    edit(lines)
    p.write_bytes(b"\n".join(lines))


def _truncate_mid_row(p):
    data = p.read_bytes()
    cut = data.rfind(b"\n", 0, len(data) - 1) + 200  # 200 bytes into the last row
    p.write_bytes(data[:cut])


def _truncate_at_row_boundary(p):
    data = p.read_bytes()
    p.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 1])  # the last row is gone


def _drop_a_field(lines):
    fields = lines[2].split(b",")
    lines[2] = b",".join(fields[:5] + fields[6:])


def _bad_float(lines):
    fields = lines[3].split(b",")
    fields[7] = b"0.12x"
    lines[3] = b",".join(fields)


def _nan(lines):
    fields = lines[1].split(b",")
    fields[1] = b"nan"
    lines[1] = b",".join(fields)


def _duplicate_row(lines):
    lines.insert(3, lines[1])


def _not_utf8(lines):
    lines[2] = b"\xff\xfe" + lines[2]


def _other_dim(p):
    m = json.loads(p.read_text())
    m["output_dim"] += 1
    p.write_text(json.dumps(m))


def _runs_not_a_list(p):
    p.write_text(json.dumps({"format_version": 1, "runs": {"0": {}}}))


def _n_selected_column(lines) -> int:
    return lines[0].split(b",").index(b"n_selected")


def _ledger_bad_int(lines):
    fields = lines[1].split(b",")
    fields[_n_selected_column(lines)] = b"two"
    lines[1] = b",".join(fields)


def _ledger_says_more_selected(lines):
    col = _n_selected_column(lines)
    fields = lines[-2].split(b",")  # the last row (the file ends with a newline)
    fields[col] = str(int(fields[col]) + 1).encode()
    lines[-2] = b",".join(fields)


CASES = {
    "truncated CSV, mid-row": (lambda p: _truncate_mid_row(p / CSV), f"{CSV}: line"),
    "truncated CSV, at a line break": (
        lambda p: _truncate_at_row_boundary(p / CSV),
        f"{CSV}: holds",
    ),
    "empty CSV": (lambda p: (p / CSV).write_bytes(b""), f"{CSV}: line 1: the file is empty"),
    "wrong column count": (
        lambda p: _rewrite_lines(p / CSV, _drop_a_field),
        f"{CSV}: line 3: expected",
    ),
    "bad float": (
        lambda p: _rewrite_lines(p / CSV, _bad_float),
        f"{CSV}: line 4, column embedding_6: '0.12x' is not a finite number",
    ),
    "NaN": (lambda p: _rewrite_lines(p / CSV, _nan), "column embedding_0: 'nan' is not a finite"),
    "duplicate filename": (
        lambda p: _rewrite_lines(p / CSV, _duplicate_row),
        f"{CSV}: line 4, column filenames: duplicate filename",
    ),
    "CSV not UTF-8": (lambda p: _rewrite_lines(p / CSV, _not_utf8), f"{CSV}: line"),
    "embedding dimension differs from the model": (
        lambda p: _other_dim(p / MODEL),
        "embedding columns, but the pool's model gives",
    ),
    "deleted ledger": (lambda p: (p / LEDGER).unlink(), f"{LEDGER}: the ledger is missing"),
    "ledger bad integer": (
        lambda p: _rewrite_lines(p / LEDGER, _ledger_bad_int),
        f"{LEDGER}: line 2: column 'n_selected' must be an integer",
    ),
    "ledger disagrees with the CSV": (
        lambda p: _rewrite_lines(p / LEDGER, _ledger_says_more_selected),
        f"{LEDGER} records",
    ),
    "runs.json invalid JSON": (
        lambda p: (p / RUNS).write_text('{"format_version": 1, "runs": ['),
        f"{RUNS}: line 1, column 32: invalid JSON",
    ),
    "runs.json empty": (lambda p: (p / RUNS).write_bytes(b""), f"{RUNS}: line 1, column 1"),
    "runs.json malformed": (lambda p: _runs_not_a_list(p / RUNS), f"{RUNS}: line 1: expected"),
    "runs.json deleted": (lambda p: (p / RUNS).unlink(), f"{RUNS}: missing, but the folder holds"),
    "model.json invalid": (
        lambda p: (p / MODEL).write_text("{}"),
        f"{MODEL}: malformed model fingerprint",
    ),
    "journal invalid": (
        lambda p: (p / ".journal.json").write_text("{"),
        ".journal.json: line 1: unreadable commit journal",
    ),
}


@pytest.fixture(scope="module")
def good_pool(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("malformed")
    bucket = make_small_bucket(tmp / "bucket", write_media)
    pool = tmp / "pool"
    datapool.run(bucket, pool, n_samples=4, progress=False)
    write_media(bucket / "new.jpg", seed=99)  # so a run has work to do
    return bucket, pool


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_pool_fails_clearly_and_changes_nothing(good_pool, tmp_path, case):
    bucket, good = good_pool
    edit, message = CASES[case]
    pool = tmp_path / "pool"
    shutil.copytree(good, pool)
    edit(pool)
    before = tree_digest(pool, skip_lock=False)
    r = subprocess.run(
        cli_args(bucket, pool, "--n-samples", 4), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("datapool: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert tree_digest(pool, skip_lock=False) == before
    with pytest.raises(PoolCorruptError, match=re.escape(message)) as e:
        Pool.open(pool)
    assert e.value.exit_code == 2
    assert tree_digest(pool, skip_lock=False) == before


def test_sidecar_left_from_a_different_csv_is_never_trusted(good_pool, tmp_path, make_media):
    """The documented safe recovery: a sidecar (.sidecar/, the binary cache of the CSV) that does
    not match its CSV, here one copied from another pool of the same shape, is rebuilt from the
    CSV; the pool's own files are not changed and what is read is what the CSV says."""
    bucket, good = good_pool
    other_bucket = tmp_path / "other_bucket"
    for i in range(6):
        make_media(other_bucket / f"o{i}.jpg", seed=500 + i)
    other = tmp_path / "other"
    datapool.run(other_bucket, other, n_samples=4, progress=False)
    pool = tmp_path / "pool"
    shutil.copytree(good, pool)
    expected = pool_csv.read_csv(pool / CSV)
    shutil.rmtree(pool / ".sidecar")
    shutil.copytree(other / ".sidecar", pool / ".sidecar")
    before = tree_digest(pool, skip_lock=False)  # every pool file, the sidecar aside
    opened = Pool.open(pool)
    assert opened.filenames == expected[0]
    np.testing.assert_array_equal(np.asarray(opened.embeddings), expected[1])
    assert opened.labels.tolist() == expected[2].tolist()
    assert tree_digest(pool, skip_lock=False) == before
    # The rebuilt sidecar now belongs to this CSV, and a run goes on from it.
    r = subprocess.run(
        cli_args(bucket, pool, "--n-samples", 4), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
