"""`datapool status` says what the next run will read again although no file changed, as far as
the pool tells without reading its source (pool/next_run.py): files a run could not read, images
an older decoder read (checked; those it read otherwise read again), files an older datapool
recorded without a content hash (hashed once), and for crop selection that images whose
predictions changed are cut again (which ones, only the source tells). Before, status said none
of it, and the first run after an upgrade read files again unannounced. Each claim is held
against what the run then does."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import datapool
from datapool import Pool

from .test_compat import _decoder_source, source_like
from .test_trust import cli

ART = Path(__file__).parent / "artifacts" / "compat"
MODEL = ART / "tiny.onnx"
NOTHING = "next    the next run reads only new and changed files"


def status(pool: Path) -> tuple[list[str], list[dict]]:
    text = cli("status", pool)
    assert text.returncode == 0, text.stderr
    js = cli("status", pool, "--json")
    assert js.returncode == 0, js.stderr
    nexts = [line for line in text.stdout.splitlines() if line.startswith("next ")]
    return nexts, json.loads(js.stdout)["next_run"]


def test_a_pool_the_older_decoder_read_says_its_images_are_checked_then_nothing(tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(ART / "5247268-decoder", pool)
    src = _decoder_source(tmp_path, "5247268-decoder")
    lines, entries = status(pool)
    assert entries == [
        {
            "kind": "older_decoder",
            "files": 6,
            "action": "checked",
            "why": "an older datapool decoded them (run initial-tag records no decoder); those it "
            "read otherwise are read again, their samples out of the pool: a mirrored photo "
            "(EXIF orientation 2, 4, 5 or 7) read unmirrored, an animated GIF or PNG read as its "
            "first frame (which ones, only the files tell)",
        }
    ]
    assert lines == [f"next    the next run will check 6 images: {entries[0]['why']}"]
    r = datapool.run(src, pool, n_samples=20, model=str(MODEL), source_moved=True, progress=False)
    assert (r.counts["reread"], r.counts["unchanged"]) == (3, 3)  # 6 checked, 3 read again
    assert status(pool) == ([NOTHING], [])


def test_where_the_source_is_a_bucket_it_says_they_are_not_checked(tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(ART / "5247268-decoder", pool)
    doc = json.loads((pool / "runs.json").read_text())
    doc["runs"][0]["source"] = "s3://bucket/raw/"
    (pool / "runs.json").write_text(json.dumps(doc))
    lines, entries = status(pool)
    assert [(e["kind"], e["files"], e["action"]) for e in entries] == [
        ("older_decoder", 6, "not checked")
    ]
    assert lines[0].startswith("next    the next run will not check 6 images: an older datapool")
    assert "objects in S3 are not downloaded to check them" in lines[0]


def test_a_ledger_without_content_hashes_says_its_files_are_hashed_once(tmp_path):
    """fe693cb's ledger has no content_hash column: the next run hashes the unchanged files."""
    pool = tmp_path / "pool"
    shutil.copytree(ART / "fe693cb-local", pool)
    _, entries = status(pool)
    hashed = [e for e in entries if e["kind"] == "content_hash"]
    assert [(e["files"], e["action"]) for e in hashed] == [(7, "hashed")]
    src = source_like((pool / "ledger.csv").read_text(), tmp_path / "source")
    r = datapool.run(
        src, pool, n_samples=3, model=str(MODEL), frame_stride=4, source_moved=True, progress=False
    )
    assert r.counts["hashed"] == 7
    assert not [e for e in status(pool)[1] if e["kind"] == "content_hash"]


def test_files_a_run_could_not_read_are_read_again(tmp_path, make_media):
    src = tmp_path / "src"
    for i in range(3):
        make_media(src / f"i{i}.jpg", seed=i)
    pool = tmp_path / "pool"
    kw = dict(n_samples=1, model=str(MODEL), progress=False)
    datapool.run(src, pool, **kw)
    assert status(pool) == ([NOTHING], [])
    # What a run records of a file it could not read (tests/test_messy_folder.py makes one with
    # a FIFO put in its place during the run), on a file without a sample in the pool.
    lines = (pool / "ledger.csv").read_text().splitlines()
    unpicked = next(i for i, line in enumerate(lines) if i and line.split(",")[6] == "0")
    fields = lines[unpicked].split(",")
    fields[4], fields[5] = '"read failed: not a regular file; tried again next run"', "0"
    lines[unpicked] = ",".join(fields)
    (pool / "ledger.csv").write_text("\n".join(lines) + "\n")
    text, entries = status(pool)
    assert [(e["kind"], e["files"], e["action"]) for e in entries] == [
        ("read_failed", 1, "read again")
    ]
    assert text == [
        "next    the next run will read 1 file again: a run could not read it (the reason is "
        "in the ledger); every run tries it again"
    ]
    assert datapool.run(src, pool, dry_run=True, **kw).would_process == [fields[0]]


@pytest.mark.parametrize(
    ("n", "said"),
    [
        (1, "a run could not read it (the reason is in the ledger); every run tries it again"),
        (2, "a run could not read them (the reason is in the ledger); every run tries them again"),
    ],
)
def test_a_reason_for_one_file_says_it_and_for_more_them(n, said):
    """Before, `datapool status` said "a run could not read them ... tries them again" and "an
    older datapool recorded them without a content hash: each is read once" of one file."""
    import pandas as pd

    from datapool.fingerprint import DECODER_VERSION
    from datapool.pool.next_run import next_run

    failed = "read failed: not a regular file; tried again next run"
    rows = [(f"f{i}.jpg", failed, "", "") for i in range(n)]
    rows += [(f"h{i}.jpg", "ok", "", "") for i in range(n)]  # no etag, no content hash
    rows += [("fine.jpg", "ok", "", "ab" * 16)]
    ledger = pd.DataFrame(rows, columns=["key", "status", "etag", "content_hash"]).assign(run=0)
    runs = [{"tag": "run-0", "decoder": DECODER_VERSION, "source": "/src"}]
    entries = {e["kind"]: e for e in next_run(runs, ledger, "/src", "")}
    assert (entries["read_failed"]["files"], entries["read_failed"]["why"]) == (n, said)
    hashed = entries["content_hash"]
    assert hashed["files"] == n
    assert hashed["why"].startswith(
        "an older datapool recorded it without a content hash: it is read once (not decoded)"
        if n == 1
        else "an older datapool recorded them without a content hash: each is read once"
    )


@pytest.mark.parametrize("crops", [True, False])
def test_a_crop_pool_says_changed_predictions_are_cut_again(tmp_path, crops):
    from .test_crops import TASK, _image, _task

    src = tmp_path / "src"
    _task(src)
    _image(src, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=2, crops=TASK if crops else None, progress=False)
    lines, entries = status(pool)
    if not crops:
        assert (lines, entries) == ([NOTHING], [])
        return
    assert [(e["kind"], e["files"], e["action"]) for e in entries] == [
        ("predictions", None, "cut again")
    ]
    assert lines == [
        "next    the next run will cut images again: crop selection cuts again each image "
        "whose predictions file changed since its run (which ones, only the source tells: "
        "status does not read it)"
    ]
    assert Pool.open(pool).summary()["next_run"] == entries


def test_a_check_a_run_with_nothing_new_recorded_is_not_announced_or_done_again(
    tmp_path, make_media, monkeypatch
):
    """A pool whose run records no decoder (an older datapool's): status says the next run
    checks its images, and that run (nothing new: they read as this decoder reads them) records
    the check without a run. Before, it recorded nothing: status said the same again, and every
    later run read each image's first 64 kB again. Now status says nothing, and the run after
    reads none."""
    from datapool.ingest import decode

    src = tmp_path / "src"
    for i in range(3):
        make_media(src / f"i{i}.jpg", seed=i)
    pool = tmp_path / "pool"
    kw = dict(n_samples=2, model=str(MODEL), progress=False)
    datapool.run(src, pool, **kw)
    doc = json.loads((pool / "runs.json").read_text())
    del doc["runs"][0]["decoder"]
    (pool / "runs.json").write_text(json.dumps(doc))
    _, entries = status(pool)
    assert [(e["kind"], e["files"], e["action"]) for e in entries] == [
        ("older_decoder", 3, "checked")
    ]
    probes: list[str] = []
    real = decode.read_otherwise_before
    monkeypatch.setattr(
        decode, "read_otherwise_before", lambda media: probes.append("x") or real(media)
    )
    r = datapool.run(src, pool, **kw)
    assert r.run_index is None and len(probes) == 3
    assert (r.counts["decoder_checked_images"], r.counts["decoder_checked_videos"]) == (3, 0)
    assert status(pool) == ([NOTHING], [])
    again = datapool.run(src, pool, **kw)
    assert again.run_index is None and len(probes) == 3  # before: 6, and 3 more each run
    assert Pool.open(pool).runs == doc["runs"]


def hashed_files(monkeypatch) -> list[str]:
    """The files the local source hashes from now on (sources/local.py file_hash), by name."""
    from datapool.sources import local

    seen: list[str] = []
    real = local.file_hash

    def counting(path, algorithm="blake2b"):
        seen.append(Path(path).name)
        return real(path, algorithm)

    monkeypatch.setattr(local, "file_hash", counting)
    return seen


def test_a_run_with_nothing_new_records_new_mtimes_and_the_next_hashes_nothing(
    tmp_path, make_media, monkeypatch
):
    """Files with a new mtime and the same bytes (a `cp -r`, a sync, a touch) are hashed to
    tell, then recorded with their new mtime. Before, only a run that committed recorded it: on
    a pool with nothing new every run hashed them all again and said '2 with new mtimes'. Now
    the run records them (one commit, no run); the next hashes none and says nothing of them."""
    src = tmp_path / "src"
    for i in range(3):
        make_media(src / f"i{i}.jpg", seed=i)
    pool = tmp_path / "pool"
    kw = dict(n_samples=5, model=str(MODEL), progress=False)
    datapool.run(src, pool, **kw)
    for name in ("i0.jpg", "i2.jpg"):
        os.utime(src / name, (1e9, 1e9))
    hashed = hashed_files(monkeypatch)
    dry = cli("run", src, "--pool", pool, "--n-samples", 5, "--model", MODEL, "--dry-run")
    assert dry.returncode == 0 and "(2 with new mtimes, same bytes)" in dry.stdout
    assert "recorded" not in dry.stdout  # a dry run records nothing
    runs = (pool / "runs.json").read_bytes()
    text = cli("run", src, "--pool", pool, "--n-samples", 5, "--model", MODEL)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "new       0 new, 0 changed, 3 unchanged (2 with new mtimes, same bytes)" in lines
    assert (
        "recorded  the new mtimes of 2 files with the same bytes; later runs do not hash them again"
    ) in lines
    assert lines[-1].startswith("nothing new: the samples of pool")
    assert lines[-1].endswith("it records only what the lines above say")  # mtimes, not checks
    assert (pool / "runs.json").read_bytes() == runs  # no run, no other record
    ledger = Pool.open(pool).ledger.set_index("key")
    assert ledger.loc["i0.jpg", "mtime_ns"] == (src / "i0.jpg").stat().st_mtime_ns == 10**18
    assert (ledger["run"] == 0).all()
    r = datapool.run(src, pool, **kw)
    assert r.run_index is None and r.counts["touched"] == 0
    assert hashed == []  # before: ['i0.jpg', 'i2.jpg'] (the CLI runs hashed in their processes)
    r = datapool.run(src, pool, **kw)
    assert hashed == [] and "touched_recorded" not in r.counts


def test_a_run_with_nothing_new_records_the_content_hashes_status_announces(tmp_path, monkeypatch):
    """fe693cb's ledger has no content hashes, and its source is where its runs read it: the
    next run has nothing new. status says it hashes the 7 files; before, that run returned before
    hashing, so every later run did the same and status said it forever (and a moved file was
    new plus gone). Now the run hashes them and records the hashes (one commit, no run): status
    stops saying it, the next run hashes none, and a renamed file is known by its bytes."""
    pool = tmp_path / "pool"
    shutil.copytree(ART / "fe693cb-local", pool)
    src = source_like((pool / "ledger.csv").read_text(), tmp_path / "source")
    doc = json.loads((pool / "runs.json").read_text())
    for run in doc["runs"]:
        run["source"] = str(src)
    (pool / "runs.json").write_text(json.dumps(doc))
    _, entries = status(pool)
    assert [(e["files"], e["action"]) for e in entries if e["kind"] == "content_hash"] == [
        (7, "hashed")
    ]
    kw = dict(n_samples=3, model=str(MODEL), frame_stride=4, progress=False)
    hashed = hashed_files(monkeypatch)
    r = datapool.run(src, pool, **kw)
    assert r.run_index is None and r.counts.get("hashed") == 7 and len(hashed) == 7
    assert not [e for e in status(pool)[1] if e["kind"] == "content_hash"]  # before: 7 again
    assert json.loads((pool / "runs.json").read_text())["runs"] == doc["runs"]
    assert (Pool.open(pool).ledger["content_hash"] != "").all()
    hashed.clear()
    again = datapool.run(src, pool, **kw)
    assert again.run_index is None and "hashed" not in again.counts and hashed == []
    before = Pool.open(pool)
    (src / "img" / "i0.jpg").rename(src / "img" / "first.jpg")
    moved = datapool.run(src, pool, **kw)
    assert (moved.counts["moved"], moved.counts["new"], moved.counts["missing"]) == (1, 0, 0)
    assert len(Pool.open(pool)) == len(before)
