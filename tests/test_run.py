"""End to end: `datapool.run` over real encoded media, with the default model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import datapool
from datapool import Pool
from datapool.errors import ConfigError, ModelError, ModelMismatchError, PoolLockedError

from .conftest import save_image_model

BROKEN = {"cam/broken.mp4", "notes.png", "empty.jpg"}


def run(bucket, pool, **kw):
    kw.setdefault("n_samples", 8)
    return datapool.run(bucket, pool, progress=False, **kw)


def report(result):
    return json.loads(result.report_path.read_text())


def test_first_run_builds_a_pool(bucket, tmp_path):
    pool_dir = tmp_path / "pool"
    r = run(bucket, pool_dir)
    assert r.run_index == 0 and r.tag == "initial-tag"
    c = r.counts
    assert (c["listed"], c["new"], c["processed"], c["skipped"]) == (15, 15, 15, 3)
    assert c["frames_embedded"] == 10 + 12 + 8  # images + both clips
    assert c["selected"] == 8 and c["pool_size"] == 8
    assert {s["key"] for s in r.skipped} == BROKEN
    assert all(s["reason"] for s in r.skipped)
    rep = report(r)
    assert rep["counts"] == c
    assert [s["filename"] for s in rep["selected"]] == r.selected
    assert r.view_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    pool = Pool.open(pool_dir)
    assert len(pool) == 8 and pool.filenames == r.selected
    assert pool.embeddings.dtype == np.float32 and pool.embeddings.shape[1] == pool.dim
    np.testing.assert_allclose(np.linalg.norm(pool.embeddings, axis=1), 1.0, rtol=1e-5)
    assert pool.labels.tolist() == [0] * 8
    assert [x["tag"] for x in pool.runs] == ["initial-tag"]
    ledger = pool.ledger.set_index("key")
    assert set(ledger.index) == set(pd.Series(list(BROKEN)).tolist()) | {
        k for k in ledger.index if k not in BROKEN
    }
    assert len(ledger) == 15
    assert (ledger.loc[sorted(BROKEN), "status"] != "ok").all()
    assert ledger.loc["cam/clip.mp4", "n_samples"] == 12
    assert ledger["n_selected"].sum() == 8


def test_csv_read_back_by_pandas(bucket, tmp_path):
    run(bucket, tmp_path / "pool")
    pool = Pool.open(tmp_path / "pool")
    df = pd.read_csv(tmp_path / "pool" / "datapool_latest.csv")
    assert df.columns[0] == "filenames" and df.columns[-1] == "labels"
    assert list(df.columns[1:-1]) == [f"embedding_{i}" for i in range(pool.dim)]
    assert df["filenames"].tolist() == pool.filenames
    np.testing.assert_array_equal(df.iloc[:, 1:-1].to_numpy(np.float32), pool.embeddings)
    assert df["labels"].tolist() == pool.labels.tolist()


def test_second_run_processes_exactly_new_and_changed_files(bucket, tmp_path, make_media):
    pool_dir = tmp_path / "pool"
    first = run(bucket, pool_dir, n_samples=10)
    before = Pool.open(pool_dir)

    make_media(bucket / "new" / "a.jpg", seed=101)
    make_media(bucket / "new" / "b.png", seed=102)
    make_media(bucket / "new" / "c.mp4", seed=103, frames=6)
    # Change a file whose samples are in the pool: rewrite it with other content.
    changed_img = next(n for n in first.selected if n.endswith(".jpg"))
    make_media(bucket / changed_img, seed=999)
    os.utime(bucket / changed_img, ns=(1, 1_000_000_000_000))

    second = run(bucket, pool_dir, n_samples=5)
    c = second.counts
    assert (c["new"], c["changed"], c["unchanged"]) == (3, 1, 15 - 1)
    assert c["processed"] == 4 and c["skipped"] == 0
    assert c["frames_embedded"] == 1 + 1 + 6 + 1
    assert c["removed"] == 1
    rep = report(second)
    assert rep["counts"]["processed"] == 4

    after = Pool.open(pool_dir)
    assert second.run_index == 1 and second.tag == "run-1"
    assert len(after) == len(before) - 1 + c["selected"]
    assert len(set(after.filenames)) == len(after.filenames)
    kept_old = [n for n in before.filenames if n != changed_img]
    assert after.filenames[: len(kept_old)] == kept_old  # old rows keep their order and label 0
    assert after.labels.tolist() == [0] * len(kept_old) + [1] * c["selected"]
    assert set(second.selected) <= {"new/a.jpg", "new/b.png", changed_img} | {
        f"new/c-{i}-mp4.png" for i in range(6)
    }
    ledger = after.ledger.set_index("key")
    assert ledger.loc["new/c.mp4", "run"] == 1
    assert ledger.loc[changed_img, "run"] == 1
    assert ledger.loc["img5.jpg" if changed_img != "img5.jpg" else "img4.jpg", "run"] == 0


def test_running_again_with_nothing_new_changes_nothing(bucket, tmp_path):
    pool_dir = tmp_path / "pool"
    run(bucket, pool_dir)
    snapshot = {p.name: p.read_bytes() for p in pool_dir.iterdir() if p.is_file()}
    r = run(bucket, pool_dir)
    assert r.run_index is None and r.counts["unchanged"] == 15 and r.counts["processed"] == 0
    assert {p.name: p.read_bytes() for p in pool_dir.iterdir() if p.is_file()} == snapshot


def test_selection_never_adds_a_sample_already_in_the_pool(bucket, tmp_path):
    pool_dir = tmp_path / "pool"
    first = run(bucket, pool_dir, n_samples=10)
    # Byte-identical copies of pool images under new names embed identically: nothing to add.
    copies = [n for n in first.selected if (bucket / n).is_file()][:3]
    assert len(copies) == 3
    for i, name in enumerate(copies):
        shutil.copyfile(bucket / name, bucket / f"copy{i}{os.path.splitext(name)[1]}")
    second = run(bucket, pool_dir, n_samples=100)
    assert second.counts["new"] == len(copies)
    assert second.counts["selected"] == 0
    assert second.stop_reason == "no candidate differs from the pool"
    assert len(Pool.open(pool_dir)) == 10


def test_first_pick_is_the_candidate_farthest_from_the_pool(bucket, tmp_path, make_media):
    from datapool.ingest.decode import iter_frames
    from datapool.ingest.embed import Embedder

    pool_dir = tmp_path / "pool"
    run(bucket, pool_dir, n_samples=6)
    old = Pool.open(pool_dir)
    old_csv = (pool_dir / "datapool_latest.csv").read_bytes()
    for i in range(4):
        make_media(bucket / "later" / f"x{i}.jpg", seed=200 + i)
    second = run(bucket, pool_dir, n_samples=2)
    # A run that only adds samples appends to the CSV: the old bytes stay as they were.
    new_csv = (pool_dir / "datapool_latest.csv").read_bytes()
    assert new_csv.startswith(old_csv) and new_csv.count(b"\n") == old_csv.count(b"\n") + 2

    emb = Embedder()
    names, rows = [], []
    for i in range(4):
        key = f"later/x{i}.jpg"
        (frame,) = iter_frames(bucket / key, key, "image", emb.size_wh)
        names.append(key)
        rows.append(emb.embed(frame.rgb[None])[0])
    d = np.sqrt(((np.stack(rows)[:, None] - old.embeddings[None]) ** 2).sum(-1)).min(1)
    assert second.selected[0] == names[int(np.argmax(d))]
    np.testing.assert_allclose(report(second)["selected"][0]["min_distance"], d.max(), rtol=1e-4)


def test_process_all_rebuilds_from_scratch_and_keeps_history(bucket, tmp_path, make_media):
    pool_dir = tmp_path / "pool"
    run(bucket, pool_dir, n_samples=5)
    make_media(bucket / "more.jpg", seed=77)
    run(bucket, pool_dir, n_samples=3)
    old_csv = (pool_dir / "datapool_latest.csv").read_bytes()

    r = run(bucket, pool_dir, n_samples=7, process_all=True)
    assert r.run_index == 0 and r.tag == "initial-tag"
    assert r.counts["new"] == 16 and r.counts["processed"] == 16
    pool = Pool.open(pool_dir)
    assert len(pool.runs) == 1 and len(pool) == 7 and pool.labels.tolist() == [0] * 7
    assert (pool.ledger["run"] == 0).all() and len(pool.ledger) == 16
    assert not (pool_dir / "runs" / "1").exists()

    fresh = run(bucket, tmp_path / "fresh", n_samples=7)
    assert pool.filenames == fresh.selected  # exactly what a fresh pool gets

    (hist,) = (pool_dir / "history").iterdir()
    assert (hist / "datapool_latest.csv").read_bytes() == old_csv
    assert len(json.loads((hist / "runs.json").read_text())["runs"]) == 2
    assert (hist / "runs" / "1" / "embedding_view.png").exists()
    assert pool.runs[0]["previous_pool"] == str(hist.relative_to(pool_dir))


def test_keep_history_snapshots_the_pool_before_each_run(bucket, tmp_path, make_media):
    pool_dir = tmp_path / "pool"
    run(bucket, pool_dir, n_samples=4)
    snap_files = ("datapool_latest.csv", "ledger.csv", "runs.json", "model.json")
    before = {n: (pool_dir / n).read_bytes() for n in snap_files}
    make_media(bucket / "more.jpg", seed=77)
    second = run(bucket, pool_dir, n_samples=2, keep_history=True)
    (hist,) = (pool_dir / "history").iterdir()
    assert (
        second.tag == "run-1"
        and Pool.open(pool_dir).runs[1]["previous_pool"] == f"history/{hist.name}"
    )
    assert {n: (hist / n).read_bytes() for n in snap_files} == before
    assert Pool.open(hist).filenames == Pool.open(tmp_path / "pool").filenames[:4]
    # Later runs append to the pool's CSV and ledger in place; the snapshot must not change.
    make_media(bucket / "later.jpg", seed=78)
    run(bucket, pool_dir, n_samples=2)
    assert {n: (hist / n).read_bytes() for n in snap_files} == before
    assert len(list((pool_dir / "history").iterdir())) == 1  # no --keep-history: no snapshot


def _tiny_model(path, size=None, dim_pool=8):
    pytest.importorskip("onnx")
    from onnx import helper

    shape = ["N", 3, size, size] if size else ["N", 3, "H", "W"]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["g"]),
        helper.make_node(
            "AveragePool",
            ["input"],
            ["p"],
            kernel_shape=[dim_pool, dim_pool],
            strides=[dim_pool, dim_pool],
        ),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Flatten", ["g"], ["gf"], axis=1),
        helper.make_node("Concat", ["gf", "f"], ["out"], axis=1),
    ]
    return save_image_model(path, "tiny", nodes, shape, ["N", None])


def test_user_model_and_model_mismatch(bucket, tmp_path):
    m1 = _tiny_model(tmp_path / "m1.onnx", size=32)
    m2 = _tiny_model(tmp_path / "m2.onnx", size=48)
    pool_dir = tmp_path / "pool"
    r = run(bucket, pool_dir, model=str(m1))
    pool = Pool.open(pool_dir)
    assert pool.dim == 3 + 3 * 4 * 4 and pool.model.input_size == (32, 32)
    assert r.counts["selected"] == 8
    before = (pool_dir / "datapool_latest.csv").read_bytes()
    with pytest.raises(
        ModelMismatchError, match=r"built with m1.onnx .* this run uses m2.onnx .*--process-all"
    ):
        run(bucket, pool_dir, model=str(m2))
    with pytest.raises(ModelMismatchError, match=r"m1.onnx .* datapool-features-v2.onnx"):
        run(bucket, pool_dir)
    assert (pool_dir / "datapool_latest.csv").read_bytes() == before
    # --process-all starts again with the new model.
    run(bucket, pool_dir, model=str(m2), process_all=True)
    assert Pool.open(pool_dir).model.input_size == (48, 48)


def test_dynamic_input_model_needs_input_size(bucket, tmp_path):
    m = _tiny_model(tmp_path / "dyn.onnx", size=None)
    with pytest.raises(ModelError, match="--input-size"):
        run(bucket, tmp_path / "pool", model=str(m))
    r = run(bucket, tmp_path / "pool", model=str(m), input_size=40)
    assert Pool.open(tmp_path / "pool").model.input_size == (40, 40)
    assert r.counts["selected"] == 8
    with pytest.raises(ModelError, match="does not exist"):
        run(bucket, tmp_path / "pool2", model=str(tmp_path / "nope.onnx"))


def test_proportion_and_min_distance(bucket, tmp_path):
    r = run(bucket, tmp_path / "p1", n_samples=None, proportion_samples=0.25)
    assert r.counts["selected"] == round(0.25 * 30)
    r = run(bucket, tmp_path / "p2", n_samples=None, min_distance=0.3)
    d = [s["min_distance"] for s in report(r)["selected"]]
    assert d[0] is None and all(x >= 0.3 for x in d[1:])
    assert r.stop_reason in {"min_distance", "every candidate taken"}
    with pytest.raises(ConfigError, match="no selection budget"):
        run(bucket, tmp_path / "p3", n_samples=None)
    with pytest.raises(ConfigError, match="between 0 and 2"):
        run(bucket, tmp_path / "p3", n_samples=None, min_distance=3.0)


def test_a_pool_rebuilt_from_an_empty_folder_opens_and_runs(tmp_path, make_media):
    """--process-all over an empty folder commits a ledger with a header and no rows; the next
    run and `datapool status` read it (its integer columns cannot be typed from a header)."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    r = run(bucket, tmp_path / "pool", process_all=True)
    assert r.run_index == 0 and r.counts["selected"] == 0 and r.stop_reason == "no candidates"
    pool = Pool.open(tmp_path / "pool")
    assert len(pool.ledger) == 0 and pool.ledger.dtypes["size"] == np.int64
    make_media(bucket / "a.jpg", seed=1)
    r = run(bucket, tmp_path / "pool")
    assert (r.run_index, r.counts["new"], r.counts["selected"]) == (1, 1, 1)
    assert Pool.open(tmp_path / "pool").summary()["ledger"]["files"] == 1


def test_run_on_a_locked_pool_fails_fast(bucket, tmp_path):
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys
            from datapool.pool.lock import PoolLock
            with PoolLock({str(pool_dir)!r}):
                print("locked", flush=True)
                sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(PoolLockedError, match="is locked by another datapool run"):
            run(bucket, pool_dir)
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "datapool",
                "run",
                str(bucket),
                "--pool",
                str(pool_dir),
                "--n-samples",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        holder.communicate("\n", timeout=10)
    assert cli.returncode == 3
    assert cli.stderr.count("\n") == 1 and "locked" in cli.stderr
    assert not (pool_dir / "runs.json").exists()


def test_a_new_frame_sampling_on_a_grown_pool_says_it_applies_to_new_videos_only(
    bucket, tmp_path, make_media
):
    pool = tmp_path / "pool"
    run(bucket, pool, frame_stride=4)
    same = run(bucket, pool, frame_stride=4)
    assert not any("applies to new and changed videos" in w for w in same.warnings)
    for kw, now in (({}, "every frame"), ({"fps": 2.0}, "--fps 2")):
        r = run(bucket, pool, **kw)
        assert r.run_index is None  # nothing new: the old videos keep their frames
        (w,) = [w for w in r.warnings if "applies to new and changed videos" in w]
        assert f"({now})" in w and "(--frame-stride 4)" in w and "--process-all" in w
