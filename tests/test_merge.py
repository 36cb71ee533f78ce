"""Merging two pools: union of samples, ledgers and runs, renumbered labels, name prefixes for
clashes between different sources, reselection, and a clear error for different models."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datapool
from datapool import Pool
from datapool.errors import ConfigError, ModelMismatchError

from .conftest import run_cli
from .test_run import _tiny_model


def _images(root: Path, make_media, seeds) -> Path:
    for s in seeds:
        make_media(root / f"img{seeds.index(s)}.jpg", seed=s)
    return root


@pytest.fixture
def two_sources(tmp_path, make_media):
    day = _images(tmp_path / "day", make_media, [1, 2, 3, 4])
    night = _images(
        tmp_path / "night", make_media, [11, 12, 13]
    )  # same names img0..2, other pictures
    pa, pb = tmp_path / "pools" / "day", tmp_path / "pools" / "night"
    datapool.run(day, pa, n_samples=3, progress=False)
    make_media(day / "late.png", seed=5)
    datapool.run(day, pa, n_samples=1, progress=False)
    datapool.run(night, pb, n_samples=3, progress=False)
    return pa, pb


def test_merge_different_sources_prefixes_clashes_and_renumbers(tmp_path, two_sources):
    pa, pb = two_sources
    A, B = Pool.open(pa), Pool.open(pb)
    before = {p: sorted((f, f.read_bytes()) for f in p.rglob("*") if f.is_file()) for p in (pa, pb)}
    C = datapool.merge(pa, pb, tmp_path / "merged")
    assert len(C) == len(A) + len(B)
    assert C.filenames[: len(A)] == A.filenames
    clashes = [n for n in B.filenames if n in set(A.filenames)]
    assert clashes, "the fixture must produce clashing names"
    assert C.filenames[len(A) :] == [f"night/{n}" if n in clashes else n for n in B.filenames]
    assert len(set(C.filenames)) == len(C)
    np.testing.assert_array_equal(C.embeddings, np.concatenate([A.embeddings, B.embeddings]))
    np.testing.assert_array_equal(C.labels, np.concatenate([A.labels, B.labels + len(A.runs)]))
    # Tags stay unique: each run gets its new index's tag, and records the one it had.
    assert [r["tag"] for r in C.runs] == [f"run-{i}" if i else "initial-tag" for i in range(3)]
    assert [r["merged_from"]["tag"] for r in C.runs] == [r["tag"] for r in A.runs + B.runs]
    assert [r["index"] for r in C.runs] == list(range(len(A.runs) + len(B.runs)))
    assert C.runs[len(A.runs)]["merged_from"] == {"pool": str(pb), "index": 0, "tag": "initial-tag"}
    assert (tmp_path / "merged" / "runs" / str(len(A.runs)) / "report.json").is_file()
    keys = C.ledger["key"].tolist()
    assert len(keys) == len(A.ledger) + len(B.ledger) and len(set(keys)) == len(keys)
    assert "night/img0.jpg" in keys and "img0.jpg" in keys
    assert C.ledger.loc[C.ledger["key"] == "night/img0.jpg", "run"].item() == len(A.runs)
    df = pd.read_csv(tmp_path / "merged" / "datapool_latest.csv")
    assert df["filenames"].tolist() == C.filenames
    # The inputs are untouched.
    assert before == {
        p: sorted((f, f.read_bytes()) for f in p.rglob("*") if f.is_file()) for p in (pa, pb)
    }


def test_merge_same_source_keeps_each_file_once(tmp_path, bucket, make_media):
    pa, pb = tmp_path / "a", tmp_path / "b"
    datapool.run(bucket, pa, n_samples=4, progress=False)
    make_media(bucket / "late" / "new0.jpg", seed=40)
    make_media(bucket / "late" / "new1.mp4", seed=41, frames=6)
    datapool.run(
        bucket, pb, n_samples=9, progress=False
    )  # B processed every file, A not the late ones
    A, B = Pool.open(pa), Pool.open(pb)
    C = datapool.merge(pa, pb, tmp_path / "c")
    # Every sample either pool selected, a name both hold once (A's); a file both processed
    # keeps A's ledger row.
    late = [n for n in B.filenames if n.startswith("late/")]
    assert late, "B must have selected something from the late files"
    assert C.filenames == A.filenames + [n for n in B.filenames if n not in set(A.filenames)]
    assert len(C.ledger) == len(set(A.ledger["key"]) | set(B.ledger["key"]))
    only_b = C.ledger[C.ledger["key"].str.startswith("late/")]
    assert (only_b["run"] == len(A.runs)).all()


def test_merge_reselect_keeps_the_most_diverse(tmp_path, two_sources):
    pa, pb = two_sources
    full = datapool.merge(pa, pb, tmp_path / "full")
    C = datapool.merge(pa, pb, tmp_path / "re", reselect=3)
    picks = datapool.select_diverse(full.embeddings, 3)
    assert C.filenames == [full.filenames[i] for i in sorted(picks.indices.tolist())]


def test_merge_refuses_different_models_and_existing_targets(tmp_path, bucket, two_sources):
    pa, _ = two_sources
    m = _tiny_model(tmp_path / "tiny.onnx", size=32)
    other = tmp_path / "other"
    datapool.run(bucket, other, n_samples=2, model=str(m), progress=False)
    with pytest.raises(
        ModelMismatchError,
        match=r"cannot merge: pool .*day was built with "
        r"datapool-features-v2.onnx .* but pool .*other with tiny.onnx",
    ):
        datapool.merge(pa, other, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        datapool.merge(pa, other, tmp_path / "taken")
    with pytest.raises(ConfigError, match="not a datapool pool"):
        datapool.merge(pa, tmp_path / "taken", tmp_path / "new")


def test_merge_cli(tmp_path, two_sources):
    pa, pb = two_sources
    out = run_cli("merge", pa, pb, "--into", tmp_path / "c", check=True)
    assert "got the prefix 'night/'" in out.stdout
    shutil.rmtree(tmp_path / "c")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "datapool",
            "merge",
            str(pa),
            str(tmp_path / "nope"),
            "--into",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        bad.returncode == 4
        and "not a datapool pool" in bad.stderr
        and "Traceback" not in bad.stderr
    )


def test_merge_same_source_keeps_every_pick_of_both_pools(tmp_path, make_media):
    """Issue 15 point 7: pools grown from one source, each picking other frames of the same files.
    The merged pool holds every sample either selected, each name once, and the summary adds up."""
    bucket = tmp_path / "bucket"
    for i in range(3):
        make_media(bucket / f"clip{i}.mp4", seed=60 + i, frames=10)
    make_media(bucket / "still.jpg", seed=70)
    pa, pb, pc = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    datapool.run(bucket, pa, n_samples=4, progress=False)
    datapool.run(bucket, pb, n_samples=12, frame_stride=2, progress=False)
    A, B = Pool.open(pa), Pool.open(pb)
    only_b = [n for n in B.filenames if n not in set(A.filenames)]
    assert only_b, "B must hold picks A does not"
    out = subprocess.run(
        [sys.executable, "-m", "datapool", "merge", str(pa), str(pb), "--into", str(pc), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    r = json.loads(out.stdout)
    C = Pool.open(pc)
    assert set(C.filenames) == set(A.filenames) | set(B.filenames)
    assert len(C.filenames) == len(set(C.filenames))
    assert r["size"] == len(C) == r["from_a"] + r["from_b"]
    assert r["from_b"] == len(only_b)
    assert r["size_a"] + r["size_b"] == r["size"] + r["duplicates"] + r["reselect_dropped"]
    # B's sample embeddings come along with its names.
    for name in only_b:
        np.testing.assert_array_equal(
            C.embeddings[C.filenames.index(name)], B.embeddings[B.filenames.index(name)]
        )
    # The ledger counts each file's samples in the merged pool.
    from datapool.naming import source_keys

    keys = source_keys(C.filenames, {"still.jpg"})
    counted = C.ledger.set_index("key")["n_selected"].to_dict()
    assert counted == {k: keys.count(k) for k in counted}
    text = run_cli("merge", pa, pb, "--into", tmp_path / "d", check=True).stdout
    assert f"{len(C)} samples = {len(A)} from {pa} + {len(only_b)} from {pb}" in text
