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

from .conftest import PACKAGE_PATH, run_cli, write_media
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
    clashes = [n for n in B.filenames if n in set(A.ledger["key"])]
    assert clashes, "the fixture must produce clashing names"
    assert C.filenames[len(A) :] == [f"night/{n}" if n in clashes else n for n in B.filenames]
    assert len(set(C.filenames)) == len(C)
    np.testing.assert_array_equal(C.embeddings, np.concatenate([A.embeddings, B.embeddings]))
    np.testing.assert_array_equal(C.labels, np.concatenate([A.labels, B.labels + len(A.runs)]))
    # Tags stay unique: each run gets its new index's tag, and records the one it had.
    assert [r["tag"] for r in C.runs] == [f"run-{i}" if i else "initial-tag" for i in range(3)]
    assert [r["merged_from"]["tag"] for r in C.runs] == [r["tag"] for r in A.runs + B.runs]
    assert [r["index"] for r in C.runs] == list(range(len(A.runs) + len(B.runs)))
    assert C.runs[len(A.runs)]["merged_from"] == {
        "pool": str(pb),
        "index": 0,
        "tag": "initial-tag",
        "prefix": "night/",
    }
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


def test_merge_summary_counts_one_sample_in_the_singular(tmp_path, make_media):
    # "1 samples of B were already in A ... and are kept once", "left out 1 samples" before.
    src = _images(tmp_path / "src", make_media, [1, 2, 3])
    pa, pb = tmp_path / "a", tmp_path / "b"
    datapool.run(src, pa, n_samples=1, progress=False)
    datapool.run(src, pb, n_samples=3, progress=False)  # every image: A's one too
    out = run_cli("merge", pa, pb, "--into", tmp_path / "c", "--reselect", 2, check=True).stdout
    assert (
        f"        1 sample of {pb} was already in {pa} (same source, same name) and is kept " in out
    )
    assert "        --reselect left out 1 sample of the union\n" in out, out


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
        match=r"cannot merge pool A \(.*day\) with pool B \(.*other\): A was built with "
        r"datapool-features-v2.onnx .*, but B uses tiny.onnx .*; differs in: sha256 \(A ",
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
        and "there is no such folder" in bad.stderr
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


@pytest.fixture
def same_video_name(tmp_path, make_media):
    """Two sources that each hold a different video named v.mp4; pool A picks one frame of its
    video, pool B three of its own, so B's names that do not clash with A's come from a file
    whose key does."""
    src_a, src_b = tmp_path / "srcA", tmp_path / "srcB"
    make_media(src_a / "v.mp4", seed=80, frames=12)
    make_media(src_b / "v.mp4", seed=81, frames=12)
    pa, pb = tmp_path / "A", tmp_path / "B"
    datapool.run(src_a, pa, n_samples=1, progress=False)
    datapool.run(src_b, pb, n_samples=3, progress=False)
    return src_a, src_b, pa, pb


def test_merge_prefixes_every_sample_of_a_prefixed_file(tmp_path, make_media, same_video_name):
    """Trial C item 1: B's frames that did not clash kept no prefix while their file's key got
    one, so `ls` gave them A's video, `--reselect` made a pool that status refused (exit 2), and
    a later run on the merged pool removed B's frames with A's changed video."""
    src_a, _, pa, pb = same_video_name
    A, B = Pool.open(pa), Pool.open(pb)
    assert len(set(B.filenames) - set(A.filenames)) >= 2, "B must hold names A does not"
    C = datapool.merge(pa, pb, tmp_path / "C")
    assert C.filenames == A.filenames + [f"B/{n}" for n in B.filenames]
    assert C.ledger.set_index("key")["n_selected"].to_dict() == {"B/v.mp4": 3, "v.mp4": 1}
    from_ls = {s["filename"]: (s["source"], s["source_file"]) for s in C.samples()}
    assert [from_ls[n] for n in C.filenames] == [(str(src_a), "v.mp4")] + [
        (str(same_video_name[1]), "v.mp4")
    ] * 3
    D = datapool.merge(pa, pb, tmp_path / "D", reselect=3)
    assert len(D) == 3
    assert run_cli("status", tmp_path / "D").returncode == 0
    # A's video changes: the run on the merged pool replaces A's frame, not B's.
    make_media(src_a / "v.mp4", seed=82, frames=14)
    datapool.run(src_a, tmp_path / "C", n_samples=1, progress=False)
    C = Pool.open(tmp_path / "C")
    assert [n for n in C.filenames if n.startswith("B/")] == [f"B/{n}" for n in B.filenames]


@pytest.mark.parametrize("damage", ["a CSV row lost", "a sample of no ledger file"])
def test_merge_checks_the_new_pool_before_it_appears(tmp_path, two_sources, monkeypatch, damage):
    """A merged pool that would not open (Pool.load's checks, and every sample's raw file in the
    ledger) is never renamed into place, and no temporary folder is left."""
    from datapool.errors import DatapoolError
    from datapool.pool import merge as merge_module
    from datapool.pool.layout import CSV_NAME

    pa, pb = two_sources
    real = merge_module.pool_files

    def damaged(rows, *rest):
        files = real(rows, *rest)
        lines = files[CSV_NAME].decode().splitlines(keepends=True)
        if damage == "a CSV row lost":
            lines = lines[:-1]
        else:
            lines[-1] = "ghost.jpg," + lines[-1].split(",", 1)[1]
        files[CSV_NAME] = "".join(lines).encode()
        return files

    monkeypatch.setattr(merge_module, "pool_files", damaged)
    with pytest.raises(DatapoolError, match=r"would not open.*nothing was written"):
        datapool.merge(pa, pb, tmp_path / "out" / "C")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_export_reads_prefixed_samples_from_their_own_source(tmp_path, same_video_name):
    """Trial C item 2: a merged pool's export read B's prefixed samples from srcB/B/v.mp4 (no
    such file). The merged runs record the prefix; export takes it off to read B's source."""
    from datapool.export import export_pool

    _, src_b, pa, pb = same_video_name
    C = datapool.merge(pa, pb, tmp_path / "C")
    assert [r["merged_from"].get("prefix") for r in C.runs] == [None, "B/"]
    got = export_pool(tmp_path / "C", str(tmp_path / "out"), all_runs=True)
    assert got.refused == [] and sorted(got.written) == sorted(C.filenames)
    alone = export_pool(pb, str(tmp_path / "out_b"), all_runs=True)
    assert sorted(alone.written) == sorted(Pool.open(pb).filenames)
    for name in alone.written:
        assert (tmp_path / "out" / "B" / name).read_bytes() == (
            tmp_path / "out_b" / name
        ).read_bytes()
    # C merged with a copy of itself: every name clashes, and the prefixes stack up.
    shutil.copytree(tmp_path / "C", tmp_path / "C2")
    E = datapool.merge(tmp_path / "C", tmp_path / "C2", tmp_path / "E")
    assert E.runs[-1]["merged_from"]["prefix"] == "C2/"
    assert E.runs[-1]["merged_from"]["merged_from"]["prefix"] == "B/"
    got = export_pool(tmp_path / "E", str(tmp_path / "out_e"), all_runs=True)
    assert got.refused == [] and sorted(got.written) == sorted(E.filenames)
    for name in alone.written:
        for under in ("B", "C2/B"):
            assert (tmp_path / "out_e" / under / name).read_bytes() == (
                tmp_path / "out_b" / name
            ).read_bytes()
    # B's video changes: export refuses B's samples as changed (not gone), and writes A's.
    from datapool.export import CHANGED

    write_media(src_b / "v.mp4", seed=83, frames=14)
    got = export_pool(tmp_path / "C", str(tmp_path / "out_2"), all_runs=True)
    assert sorted(got.written) == sorted(Pool.open(pa).filenames)
    assert {r["reason"] for r in got.refused} == {CHANGED}
    assert sorted(r["name"] for r in got.refused) == sorted(C.filenames[1:])


def test_merge_refuses_empty_paths_and_gs_pools_naming_the_argument(
    tmp_path, two_sources, monkeypatch
):
    """Trial C item 3: an empty path merged into '.'. A pool is never kept in gs://: refused in
    one line (s3:// pools merge: tests/test_merge_s3.py)."""
    pa, pb = two_sources
    monkeypatch.chdir(tmp_path)
    for a, b, into, which in [("", pb, "c", "A"), (pa, "", "c", "B"), (pa, pb, "", "--into")]:
        with pytest.raises(ConfigError, match=rf"^{which}: the path is empty"):
            datapool.merge(a, b, into)
    with pytest.raises(ConfigError, match=r"^pool gs://pools/odd: a pool cannot be kept in gs"):
        datapool.merge(pa, "gs://pools/odd", tmp_path / "c")
    bad = subprocess.run(
        [sys.executable, "-m", "datapool", "merge", str(pa), str(pb), "--into", "gs://pools/m"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": PACKAGE_PATH},
    )
    assert bad.returncode == ConfigError.exit_code
    assert bad.stderr.count("\n") == 1 and "pool gs://pools/m: a pool cannot" in bad.stderr, (
        bad.stderr
    )
    assert not (tmp_path / "gs:").exists() and not (tmp_path / "c").exists()


def test_a_source_named_with_dotdot_is_one_source(tmp_path, bucket, monkeypatch):
    """Trial C item 4: `run ../bucket` then `run /abs/bucket` was refused as another source, and
    merge took two pools of one folder for two sources (every file twice). Pools that recorded
    a `..` before still match."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    datapool.run("../bucket", "A", n_samples=2, progress=False)
    assert Pool.open(work / "A").runs[0]["source"] == str(bucket)
    datapool.run(bucket, "A", n_samples=1, progress=False)
    datapool.run(bucket, "B", n_samples=3, progress=False)
    # B as an older version recorded it: with the `..` in it.
    runs_json = work / "B" / "runs.json"
    runs_json.write_text(runs_json.read_text().replace(str(bucket), str(work / ".." / "bucket")))
    assert str(work / ".." / "bucket") in runs_json.read_text()
    datapool.run("../bucket", "B", n_samples=1, progress=False)
    A, B = Pool.open(work / "A"), Pool.open(work / "B")
    C = datapool.merge("A", "B", "C")
    assert len(C.ledger) == len(set(A.ledger["key"]) | set(B.ledger["key"]))
    assert not any(k.startswith("B/") for k in C.ledger["key"])


def test_a_source_through_a_symbolic_link_keeps_its_name(tmp_path, bucket):
    """A source reached through a link is recorded by the link's path, as before; a `..` after a
    link is resolved (without the link, the path would name another folder)."""
    from datapool.sources.local import LocalSource

    (tmp_path / "link").symlink_to(bucket, target_is_directory=True)
    assert LocalSource(tmp_path / "link").root == tmp_path / "link"
    (tmp_path / "x").mkdir()
    assert LocalSource(tmp_path / "x" / ".." / "link").root == tmp_path / "link"
    (tmp_path / "deep" / "inner").mkdir(parents=True)
    (tmp_path / "deep" / "media").mkdir()
    (tmp_path / "up").symlink_to(tmp_path / "deep" / "inner", target_is_directory=True)
    assert LocalSource(tmp_path / "up" / ".." / "media").root == (tmp_path / "deep" / "media")


def test_merge_refuses_reselect_zero(tmp_path, two_sources):
    """Trial C item 5: --reselect 0 made an empty pool whose ledger marks every file done."""
    pa, pb = two_sources
    with pytest.raises(ConfigError, match=r"reselect must be an integer >= 1, got 0"):
        datapool.merge(pa, pb, tmp_path / "c", reselect=0)
    out = run_cli("merge", pa, pb, "--into", tmp_path / "c", "--reselect", "0")
    assert out.returncode == ConfigError.exit_code
    assert "--reselect must be an integer >= 1, got 0" in out.stderr
    assert not (tmp_path / "c").exists()


def test_status_after_a_same_source_merge_explains_the_counts(tmp_path, make_media):
    """Trial C item 6: after a same-source merge, status said 'run 0 selected 5, 8 still in the
    pool': B's picks of files that A's run processed join that run. The line says so, and says
    where B's run's samples went."""
    bucket = tmp_path / "bucket"
    for i in range(8):
        make_media(bucket / f"img{i}.jpg", seed=90 + i)
    pa, pb = tmp_path / "a", tmp_path / "b"
    datapool.run(bucket, pa, n_samples=2, progress=False)
    datapool.run(bucket, pb, n_samples=5, progress=False)
    A, B = Pool.open(pa), Pool.open(pb)
    joined = len(set(B.filenames) - set(A.filenames))
    assert joined, "B must hold picks A does not"
    C = datapool.merge(pa, pb, tmp_path / "c")
    assert C.runs[0]["merged_from"]["joined"] == joined
    assert C.runs[1]["merged_from"]["moved"] == len(B)
    lines = run_cli("status", tmp_path / "c", check=True).stdout.splitlines()
    run0 = next(x for x in lines if x.startswith("run 0"))
    run1 = next(x for x in lines if x.startswith("run 1"))
    assert f"selected 2, {2 + joined} still in the pool" in run0
    assert f"the merge added {joined} picks of its files from {pb}" in run0
    assert "selected 5, 0 still in the pool" in run1
    assert f"the merge put {len(B)} under the runs of {pa} that processed the same files" in run1


def test_merge_model_mismatch_names_the_setting_with_both_values(tmp_path, bucket):
    """Trial C item 7: a merge refused for another --mean printed two identical descriptions."""
    pa, pb = tmp_path / "a", tmp_path / "b"
    datapool.run(bucket, pa, n_samples=2, progress=False)
    datapool.run(bucket, pb, n_samples=2, mean=(0.5, 0.5, 0.5), progress=False)
    with pytest.raises(ModelMismatchError) as e:
        datapool.merge(pa, pb, tmp_path / "c")
    text = str(e.value)
    assert "differs in: mean (A 0,0,0; B 0.5,0.5,0.5)" in text, text
    assert text.count("datapool-features-v2.onnx") == 1, text


def test_a_run_on_a_merged_pool_refuses_files_named_as_the_other_sources(
    tmp_path, make_media, same_video_name
):
    """After a merge of different sources, a run from B's source took its v.mp4 for a changed
    version of A's v.mp4 (the ledger holds A's under that name) and replaced A's sample."""
    src_a, src_b, pa, pb = same_video_name
    C = tmp_path / "C"
    datapool.merge(pa, pb, C)
    make_media(src_b / "w.jpg", seed=90)
    before = (C / "datapool_latest.csv").read_bytes()
    for dry_run in (True, False):  # the dry run refuses it too (it said 'would process 1')
        with pytest.raises(
            datapool.SourceError, match=r"1 file of .*srcB \(v\.mp4\) has the name of a file"
        ):
            datapool.run(src_b, C, n_samples=2, progress=False, dry_run=dry_run)
    assert (C / "datapool_latest.csv").read_bytes() == before
    make_media(src_a / "x.jpg", seed=91)  # A's source: its files are A's in the ledger
    for dry_run in (True, False):  # the dry run said B's files were 'no longer in the source'
        r = datapool.run(src_a, C, n_samples=2, progress=False, dry_run=dry_run)
        assert r.counts["new"] == 1
        assert r.counts["missing"] == 0  # B's files are not missing from A's source


def test_export_of_a_merged_pool_refuses_either_source(tmp_path, two_sources):
    """`export C night --run 0` wrote A's img0.jpg over B's raw img0.jpg: the check knew only
    the exported runs' source."""
    pa, pb = two_sources
    C = tmp_path / "C"
    datapool.merge(pa, pb, C)
    day, night = tmp_path / "day", tmp_path / "night"
    before = {p.name: p.read_bytes() for p in night.iterdir()}
    for dest, which in ((night, "--run"), (day, "--all"), (night, None)):
        args = ["export", C, dest] + (
            [which, "0"] if which == "--run" else [which] if which else []
        )
        r = run_cli(*args)
        assert r.returncode == 4 and "is the pool's source" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in night.iterdir()} == before


def test_source_moved_on_a_merged_pool_is_refused_as_ambiguous(tmp_path, make_media, two_sources):
    pa, pb = two_sources
    C = tmp_path / "C"
    datapool.merge(pa, pb, C)
    moved = tmp_path / "night-moved"
    (tmp_path / "night").rename(moved)
    for dry_run in (True, False):  # the dry run refuses it too (it listed what it would read)
        with pytest.raises(datapool.ConfigError, match="cannot tell which one moved"):
            datapool.run(moved, C, n_samples=2, source_moved=True, progress=False, dry_run=dry_run)


def test_ls_of_a_merged_pool_names_each_samples_real_source_and_file(tmp_path, same_video_name):
    """Trial item: `ls` of a merged pool showed B's files as `B/v.mp4`, a name that is neither
    in B's source nor in A's (the merge's prefix), and no min-distance for B's picks (its report
    names them without the prefix). Now each row names the source its run reads and the file's
    key in it, in text and in --json; export still reads them (test above)."""
    import json

    src_a, src_b, pa, pb = same_video_name
    c = tmp_path / "C"
    datapool.merge(pa, pb, c)
    rows = json.loads(run_cli("ls", c, "--json", check=True).stdout)
    b_rows = [x for x in rows if x["filename"].startswith("B/")]
    assert len(b_rows) == 3
    assert all(x["source"] == str(src_b) and x["source_file"] == "v.mp4" for x in b_rows)
    b_own = {
        x["filename"]: x["min_distance"] for x in json.loads(run_cli("ls", pb, "--json").stdout)
    }
    assert {x["filename"]: x["min_distance"] for x in b_rows} == {
        f"B/{n}": d for n, d in b_own.items()
    }
    assert any(d is not None for d in b_own.values())
    (a_row,) = [x for x in rows if not x["filename"].startswith("B/")]
    assert (a_row["source"], a_row["source_file"]) == (str(src_a), "v.mp4")
    text = run_cli("ls", c, check=True).stdout.splitlines()
    b_lines = [line for line in text if line.endswith(tuple(x["filename"] for x in b_rows))]
    assert len(b_lines) == 3
    assert all(f" {src_b}/v.mp4 -> B/" in line for line in b_lines), b_lines
    assert all(" B/v.mp4" not in line for line in b_lines)
    assert run_cli("status", c).returncode == 0
    # A pool of one source keeps its short rows: the key alone.
    (a_line,) = run_cli("ls", pa).stdout.splitlines()[1:-1]
    assert a_line.endswith(f"  v.mp4 -> {Pool.open(pa).filenames[0]}"), a_line


def test_merge_does_not_point_at_a_history_the_new_pool_lacks(tmp_path, bucket):
    # A run of A kept the pool before it in A/history/ (--keep-history); C has no history/, and
    # `datapool status C` said "the pool before it: history/..." of a folder C does not hold.
    pa, pb = tmp_path / "a", tmp_path / "b"
    datapool.run(bucket, pa, n_samples=2, progress=False)
    datapool.run(bucket, pa, n_samples=2, progress=False, process_all=True)
    datapool.run(bucket, pb, n_samples=2, progress=False)
    snapshot = Pool.open(pa).runs[0]["previous_pool"]
    assert (pa / snapshot).is_dir()
    datapool.merge(pa, pb, tmp_path / "c")
    out = run_cli("status", tmp_path / "c", check=True).stdout
    assert "the pool before it" not in out, out
    run0 = Pool.open(tmp_path / "c").runs[0]
    assert "previous_pool" not in run0
    assert Path(run0["merged_from"]["previous_pool"]) == pa / snapshot


def test_a_folder_store_makes_a_new_pool_from_a_folder_whole(tmp_path, two_sources):
    """PoolStore.commit_new of a folder (what merge --into s3:// does in a bucket): the built
    folder renamed into place; a folder that is not new or empty refused, left as it was."""
    from datapool.pool.local import LocalStore

    pa, _ = two_sources
    built = tmp_path / "built"
    shutil.copytree(pa, built)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(ConfigError, match="already exists and is not an empty folder"):
        LocalStore(tmp_path / "taken").commit_new(built)
    assert built.is_dir() and sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["x"]
    (tmp_path / "empty").mkdir()
    LocalStore(tmp_path / "empty").commit_new(built)
    assert not built.exists() and Pool.open(tmp_path / "empty").filenames == Pool.open(pa).filenames


def test_merge_into_a_folder_inside_a_third_pool_is_refused(tmp_path, bucket, two_sources):
    # `datapool merge A B --into X/runs/0/c` (X another pool) made the new pool inside X's run
    # folder, which X's `undo` or `rm` of that run deletes with it, without a word; `run --pool`
    # and `export` already refuse a folder inside a pool.
    pa, pb = two_sources
    other = tmp_path / "other"
    datapool.run(bucket, other, n_samples=2, progress=False)
    before = sorted(p.relative_to(other) for p in other.rglob("*"))
    for inner in (other / "runs" / "0" / "c", other / "c"):
        r = run_cli("merge", pa, pb, "--into", inner)
        assert r.returncode == 4, (inner, r.stdout, r.stderr)
        assert r.stderr.splitlines() == [
            f"datapool: error: --into {inner} is inside the datapool pool {other}; merge into "
            "a folder apart from every pool (a pool's folder is its own: its undo and rm delete "
            "its runs' folders)"
        ], r.stderr
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before
    assert run_cli("merge", pa, pb, "--into", tmp_path / "apart").returncode == 0
