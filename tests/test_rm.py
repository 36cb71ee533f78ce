"""`datapool rm`: removing samples from a pool in one commit, and keeping them out.

Before it, a user who found a bad or private sample (a face, a licence plate, a file deleted for
legal reasons) could only rebuild the pool with --process-all (docs/robustness.md). Now `rm`
takes sample names, --source-file keys (a video's every frame) or --run: the rows leave the CSV,
the sidecar, the strategy inputs and the thumbnails, the ledger's counts follow (the pool opens
through the normal loader and a further run works), runs.json records the removal, and later
runs (with --process-all, --retry-skipped or a changed file too) keep the samples out until
`rm --forget`. History snapshots that hold them are counted, and `--purge-history` deletes them.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

import datapool
from datapool import Pool
from datapool.cli import main
from datapool.media import write_image, write_video
from datapool.pool import thumbnails

from . import test_strategies_e2e
from ._robust import Proc, assert_ledger_agrees, leftovers, tree_digest
from .conftest import PACKAGE_PATH, clip_frames, scene
from .test_strategies_e2e import DIV, _put, _strategies

lbucket = test_strategies_e2e.lbucket  # the fixture: a bucket with .lightly predictions

ALL = 40  # a budget that takes every candidate: what comes back is what the pool let in


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """(source, pool): run 0 over five images and a clip, run 1 (--keep-history) over two more."""
    root = tmp_path_factory.mktemp("rm")
    src = root / "src"
    for i in range(5):
        write_image(src / f"img{i}.jpg", scene(400 + i))
    write_video(src / "cam" / "clip.mp4", clip_frames(41, 6), fps=10)
    datapool.run(src, root / "pool", n_samples=ALL, progress=False)
    for i in range(2):
        write_image(src / f"new{i}.jpg", scene(500 + i))
    datapool.run(src, root / "pool", n_samples=ALL, keep_history=True, progress=False)
    return src, root / "pool"


@pytest.fixture
def pool(made, tmp_path) -> tuple[Path, Path]:
    src, pool = made
    shutil.copytree(src, tmp_path / "src", copy_function=shutil.copy2)
    shutil.copytree(pool, tmp_path / "pool")
    return tmp_path / "src", tmp_path / "pool"


def frames_of(p: Pool) -> list[str]:
    return [n for n in p.filenames if n.startswith("cam/clip-")]


def all_thumbnail_names(pool: Path) -> set[str]:
    return {n for seg in pool.glob("runs/*/*.bin") for n in thumbnails.unpack(seg.read_bytes())}


def rm(capsys, *args) -> tuple[int, str, str]:
    rc = main(["rm", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_rm_of_one_sample_says_it_not_them(pool, capsys):
    """`rm POOL img1.jpg` said of the one sample "will not add them again", "could show them"
    and "still holds them"; `datapool status` says "it" of one file likewise."""
    _, path = pool
    rc, out, err = rm(capsys, path, "img1.jpg", "--dry-run")
    assert rc == 0, err
    assert "too) will not add it again;" in out, out
    rc, out, err = rm(capsys, path, "img1.jpg")
    assert rc == 0, err
    assert "removed 1 sample (1 of run 0)" in out and "will not add it again;" in out, out
    assert "could show it and was replaced by a notice, and report.json names it no more" in out
    assert "history: 1 snapshot still holds it (" in out, out
    assert "them" not in out.replace("--purge-history` deletes it", ""), out
    src, _ = pool
    assert main(["status", str(path)]) == 0
    [kept] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("kept ")]
    assert kept.endswith("1 sample name (`datapool rm --forget` lets it in again)"), kept
    args = ["run", str(src), "--pool", str(path), "--n-samples", "1", "--no-progress"]
    assert main([*args, "--process-all"]) == 0
    [kept] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("kept ")]
    assert kept.endswith("`datapool rm --forget` lets it in)"), kept
    rc, out, err = rm(capsys, path, "--forget", "img1.jpg")
    assert rc == 0 and out.strip().endswith("1 sample name; a later run may add it again"), out


def test_rm_removes_names_and_a_files_frames_in_one_commit_and_keeps_them_out(pool, capsys):
    src, path = pool
    before = Pool.open(path)
    frames = frames_of(before)
    assert frames and "img1.jpg" in before.filenames and "new0.jpg" in before.filenames
    gone = {"img1.jpg", "new0.jpg", *frames}
    assert gone <= all_thumbnail_names(path)

    rc, out, err = rm(
        capsys, path, "img1.jpg", "new0.jpg", "--source-file", "cam/clip.mp4", "--reason", "GDPR"
    )
    assert rc == 0, err
    assert (
        f"removed {len(gone)} samples" in out and f"the pool holds {len(before) - len(gone)}" in out
    )
    assert "kept out: later runs" in out and "--forget" in out
    # `--forget NAME` does not let a source file in again: the hint names --source-file.
    hint = f"`datapool rm {path} --forget --source-file KEY...` (a sample: `--forget NAME...`)"
    assert hint in out, out
    assert "history: 1 snapshot still holds them" in out and "--purge-history" in out

    # The normal loader opens it (the ledger's counts agree with the CSV), without them.
    after = Pool.open(path)
    assert after.filenames == [n for n in before.filenames if n not in gone]
    assert_ledger_agrees(after)
    ledger = after.ledger.set_index("key")
    assert ledger.loc["cam/clip.mp4", "n_selected"] == 0
    assert ledger.loc["img1.jpg", "n_selected"] == 0 and ledger.loc["img1.jpg", "status"] == "ok"
    assert not gone & all_thumbnail_names(path)
    for i in (0, 1):  # both runs' reports could show them (a later run's shows older samples)
        assert "withdrawn" in (path / "runs" / str(i) / "report.html").read_text()
    # Their report.json named them (the picks, with min-distances): it names them no more, in
    # the same commit, and says that it was scrubbed. The others stay.
    assert "report.json names them no more" in out
    for i, kept in ((0, "img0.jpg"), (1, "new1.jpg")):
        text = (path / "runs" / str(i) / "report.json").read_text()
        assert not [n for n in gone if f'"{n}"' in text], i
        report = json.loads(text)
        assert kept in {s["filename"] for s in report["selected"]}
        assert report["scrubbed"][0]["entries"] >= 1
    doc = json.loads((path / "runs.json").read_text())
    assert doc["min_reader_pool_format"] == 2  # an older datapool would let them in again
    assert doc["removals"][0]["reason"] == "GDPR" and set(doc["removals"][0]["names"]) == gone

    status = Pool.open(path).summary()
    assert status["removals"][0]["samples"] == len(gone)
    assert status["kept_out"] == {"samples": len(gone), "files": 1}
    assert main(["status", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"{len(gone)} samples and 1 source file (GDPR)" in text and "kept    out" in text
    assert main(["ls", str(path), "--json"]) == 0
    assert not gone & {s["filename"] for s in json.loads(capsys.readouterr().out)}

    # A changed file is read again, but its removed sample stays out; the removed video is
    # not read at all, changed or not.
    write_image(src / "img1.jpg", scene(999))
    write_video(src / "cam" / "clip.mp4", clip_frames(77, 6), fps=10)
    rc = main(
        [
            "run",
            str(src),
            "--pool",
            str(path),
            "--n-samples",
            str(ALL),
            "--no-progress",
            "--source-moved",
        ]
    )  # (the source is a copy)
    out = capsys.readouterr().out
    assert rc == 0 and "kept out  1 file and 1 sample removed with `datapool rm`" in out, out
    (r,) = Pool.open(path).runs[-1:]
    assert r["counts"]["kept_out_files"] == 1 and r["counts"]["kept_out_samples"] == 1
    again = Pool.open(path)
    assert not gone & set(again.filenames) and "img0.jpg" in again.filenames
    assert_ledger_agrees(again)

    # --process-all starts over, and still keeps them out; --retry-skipped too.
    datapool.run(src, path, n_samples=ALL, process_all=True, progress=False)
    rebuilt = Pool.open(path)
    assert not gone & set(rebuilt.filenames) and len(rebuilt) == 5
    assert "cam/clip.mp4" not in set(rebuilt.ledger["key"])
    assert rebuilt.removals and kept_out_names(rebuilt) == gone
    # The kept-out file has no ledger row now: the next run counts it as kept out, not new.
    later = datapool.run(src, path, n_samples=ALL, progress=False)
    assert later.counts["kept_out_files"] == 1, later.counts
    assert later.counts["new"] == 0 and later.counts["changed"] == 0, later.counts

    # --forget lets them in again: the next --process-all adds them back.
    rc, out, err = rm(capsys, path, "--forget", "img1.jpg", "--source-file", "cam/clip.mp4")
    assert rc == 0 and "no longer kept out" in out, err
    datapool.run(src, path, n_samples=ALL, process_all=True, progress=False)
    back = Pool.open(path)
    assert "img1.jpg" in back.filenames and frames_of(back)
    assert "new0.jpg" not in back.filenames  # still removed


def kept_out_names(p: Pool) -> set[str]:
    from datapool.pool.keepout import kept_out

    return kept_out(p.removals)[0]


def test_unknown_names_change_nothing_and_dry_run_lists_what_would_go(pool, capsys):
    _, path = pool
    digest = tree_digest(path)
    rc, out, err = rm(capsys, path, "img0.jpg", "nope1.jpg", "nope2.jpg", "nope3.jpg", "nope4.jpg")
    assert rc == 4 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "5 of the names given" not in err
    assert "4 of the names given are not samples or source files of the pool" in err
    assert "'nope1.jpg', 'nope2.jpg', 'nope3.jpg' (and 1 more)" in err and "nothing was" in err
    rc, out, err = rm(capsys, path, "--source-file", "cam/nope.mp4")
    assert rc == 4 and "'cam/nope.mp4'" in err
    assert "1 of the names given is not a sample or source file of the pool" in err
    rc, out, err = rm(capsys, path)
    assert rc == 4 and "give the samples to remove" in err
    assert tree_digest(path) == digest

    rc, out, err = rm(capsys, path, "--run", "1", "--dry-run")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["new0.jpg", "new1.jpg"] and "would remove 2 samples" in lines[2]
    assert tree_digest(path) == digest

    # --from-file: one name a line, as selected_filenames.txt holds them.
    names = path.parent / "names.txt"
    names.write_text("img2.jpg\n\nimg3.jpg\n")
    rc, out, err = rm(capsys, path, "--from-file", names, "--json")
    assert rc == 0, err
    assert sorted(json.loads(out)["removed"]) == ["img2.jpg", "img3.jpg"]
    rc, out, err = rm(capsys, path, "img2.jpg")
    assert rc == 4 and "(1 of them removed earlier)" in err


def test_purge_history_deletes_the_snapshots_that_hold_them(pool, capsys):
    _, path = pool
    (snapshot,) = Pool.open(path).summary()["history"]
    assert "img4.jpg" in Pool.open(path / snapshot).filenames
    rc, out, err = rm(capsys, path, "img4.jpg", "--purge-history")
    assert rc == 0, err
    assert f"history: deleted 1 snapshot that held it ({snapshot})" in out
    assert not (path / snapshot).exists() and Pool.open(path).summary()["history"] == []
    assert leftovers(path) == []
    rc, out, err = rm(capsys, path, "--purge-history")  # alone: nothing left to purge
    assert rc == 0 and "no snapshot holds a removed sample" in out, err


def test_export_mirror_removes_the_exported_file_of_a_removed_sample(pool, capsys):
    _, path = pool
    dest = path.parent / "out"
    assert main(["export", str(path), str(dest), "--all"]) == 0
    assert (dest / "img0.jpg").is_file() and (dest / "new1.jpg").is_file()
    assert rm(capsys, path, "img0.jpg", "new1.jpg")[0] == 0
    assert main(["export", str(path), str(dest), "--all", "--mirror"]) == 0
    assert not (dest / "img0.jpg").exists() and not (dest / "new1.jpg").exists()
    assert (dest / "img2.jpg").is_file()
    listed = (dest / "selected_filenames.txt").read_text().splitlines()
    assert "img0.jpg" not in listed and "new1.jpg" not in listed


def test_merge_refuses_to_bring_back_a_sample_one_pool_removed(pool, capsys, tmp_path):
    _, path = pool
    other = tmp_path / "other"
    shutil.copytree(path, other)
    assert rm(capsys, path, "img0.jpg")[0] == 0
    rc = main(["merge", str(path), str(other), "--into", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 4 and "'img0.jpg'" in err and "--forget" in err and "nothing was merged" in err
    assert not (tmp_path / "c").exists()
    assert rm(capsys, other, "img0.jpg")[0] == 0
    assert main(["merge", str(path), str(other), "--into", str(tmp_path / "c")]) == 0
    merged = Pool.open(tmp_path / "c")
    assert "img0.jpg" not in merged.filenames and kept_out_names(merged) == {"img0.jpg"}


def _rm_args(path: Path, *names: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "datapool", "rm", str(path), *names]


def untimed(entry: dict) -> dict:
    """A removal entry without its time (and so without the SHA-256 of the runs.json that
    held it, which its sums record)."""
    sums = entry.get("sums")
    return {**entry, "at": "", **({"sums": {**sums, "runs.json": ""}} if sums else {})}


def test_sigkill_at_each_point_of_the_rm_commit_leaves_the_pool_before_or_after(pool, tmp_path):
    _, path = pool
    names = ("img2.jpg", "--source-file", "cam/clip.mp4")
    ref = tmp_path / "ref"
    shutil.copytree(path, ref)
    traced = Proc(_rm_args(ref, *names), DATAPOOL_TEST_TRACE="1", PYTHONPATH=PACKAGE_PATH)
    assert traced.finish() == 0, traced.stderr
    points = [
        line.split("at ", 1)[1].strip()
        for line in traced.stderr.splitlines()
        if line.startswith("datapool-test: at ")
    ]
    assert "journal-written" in points and "committed" in points
    assert any(p.startswith("staged:runs/") for p in points)  # thumbnails, report.html
    # From the lock to the end of the commit, and one write of the sidecar after it (a cache);
    # the sidecar written as the copied pool is first opened counts for nothing.
    points = [*points[points.index("locked") : points.index("committed") + 1], points[-1]]
    after = Pool.open(ref)
    digest = tree_digest(path)
    outcomes = []
    seen: Counter[str] = Counter({points[-1]: 1})  # the sidecar's: paused at its second pass
    for k, at in enumerate(points):
        seen[at] += 1
        trial = tmp_path / f"trial{k}"
        shutil.copytree(path, trial)
        p = Proc(
            _rm_args(trial, *names),
            DATAPOOL_TEST_PAUSE_AT=f"{at.replace('[', '[[]')}#{seen[at]}",
            PYTHONPATH=PACKAGE_PATH,
        )
        p.wait_for("datapool-test: paused at")
        p.kill()
        opened = Pool.open(trial)  # recovers
        assert leftovers(trial) == []
        assert_ledger_agrees(opened)
        if tree_digest(trial) == digest:
            outcomes.append("before")
        else:
            assert opened.filenames == after.filenames, at
            assert opened.ledger.equals(after.ledger), at
            assert [untimed(e) for e in opened.removals] == [untimed(e) for e in after.removals], at
            assert all_thumbnail_names(trial) == all_thumbnail_names(ref), at
            outcomes.append("after")
        # Either way a further run works, and keeps the removed samples out.
        shutil.rmtree(trial)
    assert "before" in outcomes and "after" in outcomes
    first_after = outcomes.index("after")
    assert points[first_after] == "journal-written"
    assert outcomes == ["before"] * first_after + ["after"] * (len(points) - first_after), list(
        zip(points, outcomes)
    )

    # --purge-history: killed once a snapshot is set aside, the next open removes the rest of it.
    trial = tmp_path / "purge"
    shutil.copytree(path, trial)
    (snapshot,) = Pool.open(trial).summary()["history"]
    p = Proc(
        _rm_args(trial, "img3.jpg", "--purge-history"),
        DATAPOOL_TEST_PAUSE_AT="set-aside:*",
        PYTHONPATH=PACKAGE_PATH,
    )
    p.wait_for("datapool-test: paused at set-aside")
    p.kill()
    opened = Pool.open(trial)
    assert "img3.jpg" not in opened.filenames and opened.summary()["history"] == []
    assert leftovers(trial) == [] and not (trial / snapshot).exists()


def test_a_pool_with_removals_is_refused_by_a_datapool_that_would_drop_them(
    pool, capsys, monkeypatch
):
    """A format 1 datapool knows no removals: it would drop the record and let the samples in
    again, so a pool that holds one needs a format 2 reader; one without is read as ever."""
    from datapool.errors import PoolTooNewError
    from datapool.pool import format as pool_format

    _, path = pool
    assert json.loads((path / "runs.json").read_text())["min_reader_pool_format"] == 1
    assert rm(capsys, path, "img0.jpg")[0] == 0
    monkeypatch.setattr(pool_format, "POOL_FORMAT", 1)
    with pytest.raises(PoolTooNewError, match="needs a datapool that reads pool format 2"):
        Pool.open(path)


def test_the_strategy_inputs_lose_the_removed_samples_and_a_strategy_run_goes_on(
    lbucket, tmp_path, capsys
):
    from datapool.pool.layout import STRATEGY_INPUTS_NAME

    src = lbucket  # with .lightly predictions and metadata
    pool = tmp_path / "pool"
    sel = _strategies(
        {
            "input": {"type": "PREDICTIONS", "task": "det", "name": "CLASS_DISTRIBUTION"},
            "strategy": {"type": "BALANCE", "target": {"car": 0.9}},
        },
        DIV,
    )
    first = datapool.run(src, pool, n_samples=4, strategies=sel.strategies, progress=False)
    gone = first.selected[0]
    assert gone in json.loads((pool / STRATEGY_INPUTS_NAME).read_text())["samples"]
    assert rm(capsys, pool, gone)[0] == 0
    stored = json.loads((pool / STRATEGY_INPUTS_NAME).read_text())["samples"]
    assert set(stored) == set(first.selected) - {gone}
    write_image(src / "late.jpg", scene(61))
    _put(
        src,
        ".lightly/predictions/det/late.json",
        {"file_name": "late.jpg", "predictions": [{"category_id": 0, "bbox": [0, 0, 1, 1]}]},
    )
    second = datapool.run(src, pool, n_samples=1, strategies=sel.strategies, progress=False)
    assert second.selected == ["late.jpg"]
    after = Pool.open(pool)
    assert gone not in after.filenames
    assert_ledger_agrees(after)


def test_a_removed_file_that_moves_stays_out_under_its_new_name(pool, capsys):
    """`rm --source-file cam/clip.mp4`, then the clip is renamed: the run took the rename (same
    bytes) and the file's keep-out stayed under the old key, so the next --process-all read it
    under the new one and added the removed frames back, renamed."""
    src, path = pool
    rc, out, err = rm(capsys, path, "--source-file", "cam/clip.mp4", "--reason", "GDPR")
    assert rc == 0, err
    (src / "cam" / "clip.mp4").rename(src / "cam" / "renamed.mp4")
    args = ["run", str(src), "--pool", str(path), "--n-samples", str(ALL), "--no-progress"]
    rc = main([*args, "--source-moved"])  # (the source is a copy)
    out, err = capsys.readouterr()
    assert rc == 0 and "1 moved or renamed (same bytes)" in out, out + err
    assert (
        "warning: kept out where moved: 1 file whose samples or file `datapool rm` keeps out "
        "moved (cam/clip.mp4 -> cam/renamed.mp4)" in err
    ), err
    assert kept_out_files(Pool.open(path)) == {"cam/clip.mp4", "cam/renamed.mp4"}
    datapool.run(src, path, n_samples=ALL, process_all=True, progress=False)
    rebuilt = Pool.open(path)
    assert not [n for n in rebuilt.filenames if n.startswith("cam/")], rebuilt.filenames
    assert "cam/renamed.mp4" not in set(rebuilt.ledger["key"])
    # --forget --source-file of the new key lets it in again.
    rc, out, err = rm(capsys, path, "--forget", "--source-file", "cam/renamed.mp4")
    assert rc == 0, err
    datapool.run(src, path, n_samples=ALL, process_all=True, progress=False)
    assert [n for n in Pool.open(path).filenames if n.startswith("cam/renamed-")]


def kept_out_files(p: Pool) -> set[str]:
    from datapool.pool.keepout import kept_out

    return kept_out(p.removals)[1]


def test_a_removed_image_that_moves_stays_out_under_its_new_name(pool, capsys):
    """`rm img1.jpg` (the sample, not the file), then the image is renamed: its sample name
    is kept out under the new name, so --process-all does not add it back as img1-moved.jpg."""
    src, path = pool
    assert rm(capsys, path, "img1.jpg")[0] == 0
    (src / "img1.jpg").rename(src / "img1-moved.jpg")
    args = ["run", str(src), "--pool", str(path), "--n-samples", str(ALL), "--no-progress"]
    assert main([*args, "--source-moved"]) == 0
    out, err = capsys.readouterr()
    assert "(img1.jpg -> img1-moved.jpg)" in err, out + err
    datapool.run(src, path, n_samples=ALL, process_all=True, progress=False)
    rebuilt = Pool.open(path)
    assert "img1-moved.jpg" not in rebuilt.filenames and "img2.jpg" in rebuilt.filenames


def test_from_file_strips_lines_and_skips_comments_but_a_hash_name_is_a_name(tmp_path, capsys):
    # A list written on Windows (CRLF), with a trailing space, blank lines and a comment: it
    # stopped with "'# privacy request 12', 'b.jpg ' ... are not samples". A name may start with
    # "#": only "#" alone or "# " (a space after it) is a comment.
    src = tmp_path / "src"
    for i, n in enumerate(["#1.jpg", "a.jpg", "b.jpg", "c.jpg"]):
        write_image(src / n, scene(600 + i))
    datapool.run(src, tmp_path / "pool", n_samples=ALL, progress=False)
    names = tmp_path / "names.txt"
    names.write_bytes(b"# privacy request 12\r\n#\r\n  b.jpg \r\n\r\n\t\r\n#1.jpg\r\na.jpg\t\r\n")
    rc, out, err = rm(capsys, tmp_path / "pool", "--from-file", names, "--json")
    assert rc == 0, err
    assert sorted(json.loads(out)["removed"]) == ["#1.jpg", "a.jpg", "b.jpg"]
    assert Pool.open(tmp_path / "pool").filenames == ["c.jpg"]
    # "#c.jpg" is a name, not a comment: the pool has none, and nothing is removed.
    names.write_text("#c.jpg\n")
    rc, out, err = rm(capsys, tmp_path / "pool", "--from-file", names)
    assert rc == 4 and "'#c.jpg'" in err and "nothing was removed" in err


def test_a_new_object_under_a_removed_crops_name_is_let_in_the_same_stays_out(tmp_path, capsys):
    # A crop is named by its image and its number in the predictions file: when the image
    # changes, its box 0 may hold another object under the name of the removed crop 0. That
    # new object was kept out as "removed with datapool rm". Now a crop of a removed name is
    # kept out where its box overlaps the removed one's (IoU >= 0.5: the same object), and let
    # in, with a warning naming it, where it does not.
    from .test_crops import TASK, _image, _task

    src, pool = tmp_path / "src", tmp_path / "pool"
    _task(src)
    _image(src, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    _image(src, "b.png", [([5, 5, 30, 30], (0, 0, 255)), ([60, 50, 40, 40], (255, 255, 0))])
    datapool.run(src, pool, n_samples=ALL, crops=TASK, crop_padding=0.0, progress=False)
    rc, _, err = rm(capsys, pool, "a-png-crop-0.png", "b-png-crop-0.png", "--reason", "face")
    assert rc == 0, err
    doc = json.loads((pool / "runs.json").read_text())
    assert doc["removals"][0]["boxes"] == {
        "a-png-crop-0.png": [20, 10, 70, 50],
        "b-png-crop-0.png": [5, 5, 35, 35],
    }
    # a.png: box 0 is another object now, elsewhere. b.png: its box 0 moved a little (the
    # same face, detected again), and the picture changed around it.
    _image(src, "a.png", [([100, 5, 40, 40], (255, 0, 255)), ([90, 60, 60, 50], (0, 255, 0))])
    _image(src, "b.png", [([7, 6, 30, 30], (0, 0, 250)), ([60, 50, 40, 40], (255, 250, 0))])
    res = datapool.run(src, pool, n_samples=ALL, crops=TASK, crop_padding=0.0, progress=False)
    assert "a-png-crop-0.png" in res.selected and "b-png-crop-0.png" not in res.selected
    assert res.counts["kept_out_samples"] == 1
    (w,) = [w for w in res.warnings if "let in 1 object crop" in w]
    assert "a-png-crop-0.png" in w and "b-png-crop-0.png" not in w
    # --process-all reads them again: the same decisions.
    res = datapool.run(
        src, pool, n_samples=ALL, crops=TASK, crop_padding=0.0, process_all=True, progress=False
    )
    names = Pool.open(pool).filenames
    assert "a-png-crop-0.png" in names and "b-png-crop-0.png" not in names


def test_merge_lets_in_another_object_under_a_removed_crops_name_as_a_run_does(tmp_path, capsys):
    """Before, `datapool merge` refused by name alone a crop of pool B whose name pool A
    removed, where a run of A lets that name in when its box holds another object now (IoU
    with the removed crop's box under 0.5, keepout.same_object). Now merge decides as the run
    does: only the same object (b.png's crop 0, unchanged) is refused."""
    from .test_crops import TASK, _boxes, _image, _task

    src, a, b = tmp_path / "src", tmp_path / "a", tmp_path / "b"
    _task(src)
    _image(src, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    _image(src, "b.png", [([5, 5, 30, 30], (0, 0, 255)), ([60, 50, 40, 40], (255, 255, 0))])
    kw = dict(n_samples=ALL, crops=TASK, crop_padding=0.0, progress=False)
    datapool.run(src, a, **kw)
    shutil.copytree(a, b)
    assert rm(capsys, a, "a-png-crop-0.png", "b-png-crop-0.png")[0] == 0
    # a.png's detector lists its objects the other way round now: its crop 0 is the green
    # object, another than A removed; B runs again and cuts a.png again.
    _boxes(src, "a.png", [[90, 60, 60, 50], [20, 10, 50, 40]])
    assert datapool.run(src, b, **kw).counts["new"] == 0
    rc = main(["merge", str(a), str(b), "--into", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 4 and "pool" in err and "1 sample that `datapool rm` removed" in err, err
    assert "'b-png-crop-0.png'" in err and "a-png-crop-0" not in err, err
    assert not (tmp_path / "c").exists()
    assert rm(capsys, b, "b-png-crop-0.png")[0] == 0
    assert main(["merge", str(a), str(b), "--into", str(tmp_path / "c")]) == 0
    assert (
        "        let in 1 object crop named as one `datapool rm` removed, whose box holds another "
        "object now (less than 50% overlap with the removed one's): a-png-crop-0.png\n"
    ) in capsys.readouterr().out
    merged = Pool.open(tmp_path / "c")
    assert "a-png-crop-0.png" in merged.filenames and "b-png-crop-0.png" not in merged.filenames


def test_a_name_given_without_its_spaces_is_pointed_to_the_name_with_them(tmp_path, capsys):
    """`datapool ls` prints ' a.jpg' (a leading space) after its column's spaces, where the
    space cannot be seen, and --from-file strips the spaces around a line: `rm POOL a.jpg` said
    only that a.jpg is not a sample. It names the sample meant and how to give it."""
    src = tmp_path / "src"
    write_image(src / " lead.jpg", scene(700))
    write_image(src / "other.jpg", scene(701))
    datapool.run(src, tmp_path / "pool", n_samples=ALL, progress=False)
    rc, _, err = rm(capsys, tmp_path / "pool", "lead.jpg")
    assert rc == 4 and len(err.splitlines()) == 1, err
    assert "did you mean ' lead.jpg'? (spaces around a name are part of it" in err, err
    rc, out, err = rm(capsys, tmp_path / "pool", " lead.jpg")
    assert rc == 0 and "removed 1 sample" in out, err
    rc, _, err = rm(capsys, tmp_path / "pool", "nothing.jpg")
    assert rc == 4 and "did you mean" not in err


def test_rm_of_a_later_runs_samples_counts_only_the_snapshots_that_hold_them(pool, capsys):
    """The snapshot run 1 made of the pool before it cannot hold run 1's samples; `rm` of one
    said "history: 1 snapshot still holds it" all the same, once a sample of run 0 had been
    removed (it counted every snapshot holding any sample ever removed). Now it tells the two
    apart, and --purge-history says which it deletes."""
    _, path = pool
    (snapshot,) = Pool.open(path).summary()["history"]
    assert "new0.jpg" not in Pool.open(path / snapshot).filenames
    rc, out, err = rm(capsys, path, "new0.jpg")
    assert rc == 0 and "history:" not in out, out  # nothing removed before: no snapshot named
    rc, out, err = rm(capsys, path, "img0.jpg")
    assert rc == 0 and f"history: 1 snapshot still holds it ({snapshot});" in out, out
    rc, out, err = rm(capsys, path, "new1.jpg", "--json")
    assert rc == 0, err
    assert json.loads(out)["history"] == [snapshot] and json.loads(out)["history_holding"] == []
    rc, out, err = rm(capsys, path, "--source-file", "cam/clip.mp4", "--dry-run")
    assert rc == 0 and "history: 1 snapshot still holds them (" in out, out
    rc, out, err = rm(capsys, path, "img1.jpg")
    assert rc == 0 and "history: 1 snapshot still holds it (" in out, out
    assert "more only samples removed earlier" not in out  # the same one snapshot: all of them


def test_rm_names_a_snapshot_that_holds_only_earlier_removals_as_such(pool, capsys):
    _, path = pool
    (snapshot,) = Pool.open(path).summary()["history"]
    rc, out, err = rm(capsys, path, "img0.jpg")
    assert rc == 0 and f"history: 1 snapshot still holds it ({snapshot});" in out, out
    rc, out, err = rm(capsys, path, "new0.jpg", "--dry-run")
    assert rc == 0, err
    assert (
        f"history: no snapshot holds it; 1 snapshot ({snapshot}) holds samples removed earlier;"
        in out
    ), out
    # A snapshot made after the first removal holds new0.jpg but not img0.jpg: told apart.
    shutil.copytree(path, path.parent / "later", ignore=shutil.ignore_patterns("history"))
    shutil.move(path.parent / "later", path / "history" / "later")
    rc, out, err = rm(capsys, path, "new1.jpg", "--dry-run")
    assert rc == 0, err
    assert (
        "history: 1 snapshot still holds it (history/later), 1 more only samples removed "
        "earlier; " in out
    ), out
    assert out.rstrip().endswith("--purge-history` deletes all 2"), out
    rc, out, err = rm(capsys, path, "new0.jpg", "--purge-history")
    assert rc == 0, err
    assert (
        "history: deleted 2 snapshots that held it or samples removed earlier "
        f"({', '.join(sorted([snapshot, 'history/later']))})" in out
    ), out
    rc, out, err = rm(capsys, path, "img1.jpg", "--purge-history")
    assert rc == 0 and "history: no snapshot holds a removed sample" in out, out
