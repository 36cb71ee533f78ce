"""Pools made by earlier datapool versions, opened and grown by today's: a user who upgrades between
nightly runs keeps months of curation. The pools are tests/artifacts/compat/ (README there: which
commit made each, and how), each two runs of that version over the committed source folder:

- fe693cb-local: the ledger before its etag and content_hash columns, runs.json without records
- 976c601-s3: a pool in S3 with a format 1 manifest (one blob per file, .sidecar uploaded too)
- 9f7a4d5-strat: content hashes, strategy_inputs.json (METADATA WEIGHTS + DIVERSITY), no thumbnails
- 5247268-hist: thumbnails.bin, a --keep-history snapshot, before moved files were detected
- 5247268-decoder: runs that record no decoder (mirrored photos and an animation read otherwise)

Each is read (status, ls, report, export, Lightly's CSV loader), grown by a run with a new, a
changed and a touched file, then by a run after a folder rename, and merged with a pool of today's.
Real media (the committed files), real runs, S3 over HTTP to moto."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

import datapool
from datapool import Pool
from datapool.config import SelectionConfig
from datapool.naming import source_keys
from datapool.pool.ledger import image_sample_keys

from . import test_s3
from .pool_csv_reference import lightly_load_embeddings
from .test_trust import cli

moto_endpoint, s3_env, s3, new_bucket = (
    test_s3.moto_endpoint,
    test_s3.s3_env,
    test_s3.s3,
    test_s3.new_bucket,
)

ART = Path(__file__).parent / "artifacts" / "compat"
MODEL = ART / "tiny.onnx"
LOCAL = ["fe693cb-local", "9f7a4d5-strat", "5247268-hist"]


def run(source: Path, pool: Path | str, name: str) -> datapool.RunResult:
    """A run with the settings the old version's runs had; the pool's source was elsewhere."""
    kw = {}
    if name.endswith("-strat"):
        kw["strategies"] = SelectionConfig.from_file(ART / "selection.json").strategies
    return datapool.run(
        source,
        pool,
        n_samples=3,
        model=str(MODEL),
        frame_stride=4,
        source_moved=True,
        progress=False,
        **kw,
    )


def source_like(ledger_csv: str, dest: Path) -> Path:
    """The committed source, each file with the mtime the pool's ledger records (a checkout sets
    its own): as the old version's second run left it."""
    shutil.copytree(ART / "source", dest)
    ledger = pd.read_csv(pd.io.common.StringIO(ledger_csv))
    for key, mtime in zip(ledger["key"], ledger["mtime_ns"]):
        os.utime(dest / key, ns=(int(mtime), int(mtime)))
    return dest


def samples(pool: Path) -> dict[str, tuple[bytes, int, str]]:
    """Each sample's embedding (bytes), run and raw file."""
    p = Pool.open(pool)
    keys = source_keys(p.filenames, image_sample_keys(p.ledger))
    return {
        n: (e.tobytes(), int(r), k) for n, e, r, k in zip(p.filenames, p.embeddings, p.labels, keys)
    }


def grow(src: Path, pool: Path | str, reread: Callable[[], Path], name: str, make_media) -> None:
    """Today's runs on an old pool: new, changed and touched files, then a renamed folder.
    `reread()`: the folder where the pool's files are read back (a bucket pool's fetched copy)."""
    before = samples(reread())
    legacy = (Pool.open(reread()).ledger["content_hash"] == "").all()
    make_media(src / "img" / "i4.jpg", seed=4)  # new
    make_media(src / "img" / "i1.jpg", seed=41)  # changed bytes
    touched = src / "img" / "i2.jpg"  # the same bytes, a new mtime
    mtime = touched.stat().st_mtime_ns + 10**9
    os.utime(touched, ns=(mtime, mtime))

    c = run(src, pool, name).counts
    # Without a recorded hash a touched file cannot be told from a changed one (once).
    assert (c["new"], c["changed"], c["touched"]) == ((1, 2, 0) if legacy else (1, 1, 1))
    assert c["processed"] == c["new"] + c["changed"]
    assert c.get("hashed", 0) == (5 if legacy else 0)  # the unchanged files, read once
    grown = samples(reread())
    redone = {"img/i1.jpg", "img/i2.jpg"} if legacy else {"img/i1.jpg"}
    kept = {n: v for n, v in before.items() if v[2] not in redone}
    assert kept.items() <= grown.items()  # embeddings and runs bit for bit
    ledger = Pool.open(reread()).ledger
    assert len(ledger) == 8 and (ledger["content_hash"] != "").all()  # rows upgraded
    assert (ledger["etag"] == "").all()

    (src / "cam").rename(src / "camera")
    c = run(src, pool, name).counts
    assert (c["moved"], c["new"], c["missing"], c["processed"]) == (2, 0, 0, 0)
    read = reread()
    moved = samples(read)
    renamed = {
        n.replace("cam/", "camera/", 1): (e, r, k.replace("cam/", "camera/", 1))
        for n, (e, r, k) in grown.items()
    }
    assert moved == renamed
    emb, labels, names = lightly_load_embeddings(read / "datapool_latest.csv")
    assert names == list(moved) and emb.shape == (len(moved), 16)
    assert labels == [v[1] for v in moved.values()]


@pytest.mark.parametrize("name", LOCAL)
def test_an_old_pool_reads_and_grows(name, tmp_path, make_media):
    pool = tmp_path / "pool"
    shutil.copytree(ART / name, pool)
    src = source_like((pool / "ledger.csv").read_text(), tmp_path / "source")
    before = samples(pool)
    assert len(before) == 6

    r = cli("status", pool)
    assert r.returncode == 0, r.stderr
    assert "6 samples" in r.stdout and "run 1" in r.stdout
    r = cli("ls", pool, "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(s["filename"] for s in json.loads(r.stdout)) == sorted(before)
    r = cli("report", pool, "--out", tmp_path / "page.html")
    assert r.returncode == 0, r.stderr
    r = cli("export", pool, tmp_path / "export", "--all", "--source", src)
    assert r.returncode == 0, r.stderr
    listed = (tmp_path / "export" / "selected_filenames.txt").read_text().split()
    assert sorted(listed) == sorted(before)

    grow(src, pool, lambda: pool, name, make_media)


def test_an_old_bucket_pool_reads_and_grows(s3, new_bucket, tmp_path, make_media):
    """A format 1 manifest (datapool 976c601) in a bucket: read, grown, written as format 2."""
    bucket = new_bucket()
    test_s3.upload(s3, ART / "976c601-s3", bucket, prefix="")
    url = f"s3://{bucket}/pool"
    manifest = json.loads((ART / "976c601-s3" / "pool" / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    blob = manifest["files"]["ledger.csv"]["blob"]
    src = source_like((ART / "976c601-s3" / blob).read_text(), tmp_path / "source")

    r = cli("status", url)
    assert r.returncode == 0, r.stderr
    assert "6 samples" in r.stdout
    fetched = tmp_path / "fetched"
    for file, entry in manifest["files"].items():  # format 1: each file one blob
        (fetched / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ART / "976c601-s3" / entry["blob"], fetched / file)

    def reread() -> Path:
        if (
            json.loads(s3.get_object(Bucket=bucket, Key="pool/manifest.json")["Body"].read())[
                "format_version"
            ]
            == 2
        ):
            shutil.rmtree(fetched)
            test_s3.fetch_s3_pool(s3, bucket, "pool/", fetched)
        return fetched

    grow(src, url, reread, "976c601-s3", make_media)
    after = json.loads(s3.get_object(Bucket=bucket, Key="pool/manifest.json")["Body"].read())
    assert after["format_version"] == 2
    assert not any(k.startswith(".sidecar/") for k in after["files"])  # a local cache


@pytest.mark.parametrize("name", ["fe693cb-local", "9f7a4d5-strat"])
def test_an_old_pool_merges_with_a_new_one(name, tmp_path, make_media):
    old = tmp_path / "old"
    shutil.copytree(ART / name, old)
    other = tmp_path / "other"
    for i in range(3):
        make_media(other / "day2" / f"n{i}.jpg", seed=60 + i)
    run(other, tmp_path / "new", "today")
    r = cli("merge", old, tmp_path / "new", "--into", tmp_path / "merged")
    assert r.returncode == 0, r.stderr
    a, b, m = samples(old), samples(tmp_path / "new"), samples(tmp_path / "merged")
    assert len(m) == len(a) + len(b)
    assert {n: v[0] for n, v in a.items()}.items() <= {n: v[0] for n, v in m.items()}.items()
    emb, _, names = lightly_load_embeddings(tmp_path / "merged" / "datapool_latest.csv")
    assert sorted(names) == sorted(m) and emb.shape == (len(m), 16)


def _decoder_source(tmp_path: Path, artifact: str) -> Path:
    """tmp_path/source: a copy of decoder-source, each file's mtime as `artifact`'s ledger
    holds it (so that the old pool's run finds its files unchanged)."""
    src = tmp_path / "source"
    shutil.copytree(ART / "decoder-source", src)
    ledger = pd.read_csv(ART / artifact / "ledger.csv")
    for key, mtime in zip(ledger["key"], ledger["mtime_ns"]):
        os.utime(src / key, ns=(int(mtime), int(mtime)))
    return src


def test_a_pool_the_older_decoder_read_reads_its_mirrored_photos_and_animations_again(tmp_path):
    """5247268-decoder: a pool made by the datapool before EXIF mirrors (orientations 2, 4, 5,
    7) were applied and animations read whole (runs.json records no `decoder`). Its samples of
    photos/mirrored.jpg (5), photos/flipped.jpg (2) and clips/anim.gif (3 frames, one sample)
    were wrong, and stayed so: the files never changed. The first run of today's datapool reads
    those three again, says so, and leaves the others (turned.jpg: orientation 6, which it read
    right) bit for bit; a pool read from scratch today has the same embeddings."""
    pool = tmp_path / "pool"
    shutil.copytree(ART / "5247268-decoder", pool)
    src = _decoder_source(tmp_path, "5247268-decoder")
    before = samples(pool)
    assert sorted(v[2] for v in before.values()) == sorted(pd.read_csv(pool / "ledger.csv")["key"])

    def grow(pool: Path) -> datapool.RunResult:
        return datapool.run(
            src, pool, n_samples=20, model=str(MODEL), source_moved=True, progress=False
        )

    r = grow(pool)
    stale = ["clips/anim.gif", "photos/flipped.jpg", "photos/mirrored.jpg"]
    assert (r.counts["reread"], r.counts["unchanged"], r.counts["processed"]) == (3, 3, 3)
    (warning,) = [w for w in r.warnings if w.startswith("read again: 3 images")]
    assert "clips/anim.gif: an animation of 3 frames, read as its first frame" in warning
    assert "photos/mirrored.jpg: mirrored (EXIF orientation 5), read unmirrored" in warning
    after = samples(pool)
    kept = {n: v for n, v in before.items() if v[2] not in stale}
    assert len(kept) == 3 and kept.items() <= after.items()
    grow(tmp_path / "fresh")
    fresh = samples(tmp_path / "fresh")
    assert (
        sorted(after)
        == sorted(fresh)
        == sorted(
            [*kept, "photos/flipped.jpg", "photos/mirrored.jpg"]
            + [f"clips/anim-{i}-gif.png" for i in range(3)]
        )
    )
    for name in after:
        assert after[name][0] == fresh[name][0], name
    assert after["photos/mirrored.jpg"][0] != before["photos/mirrored.jpg"][0]
    assert Pool.open(pool).runs[-1]["decoder"] >= 2
    # Checked once: the next run reads nothing again, and has nothing new.
    r = grow(pool)
    assert r.run_index is None and "reread" not in r.counts and not r.warnings


def test_a_pool_of_a_datapool_that_mirrored_already_keeps_its_mirrored_photos(tmp_path):
    """dee5dec-decoder: a pool made by dee5dec, which applied EXIF mirrors (671c84c) but read an
    animation as its first frame and recorded no `decoder` in runs.json. Only the animation is
    read again: the mirrored photos' samples embed as today's decoder reads them, so they stay
    bit for bit (they were read again, their selected samples out of the pool and only
    candidates again, under a warning that said 'read unmirrored')."""
    pool = tmp_path / "pool"
    shutil.copytree(ART / "dee5dec-decoder", pool)
    src = _decoder_source(tmp_path, "dee5dec-decoder")
    before = samples(pool)
    kw = dict(n_samples=1, model=str(MODEL), source_moved=True, progress=False)
    dry = datapool.run(src, pool, dry_run=True, **kw)
    assert dry.would_process == ["clips/anim.gif"]
    r = datapool.run(src, pool, **kw)
    assert (r.counts["reread"], r.counts["unchanged"]) == (1, 5)
    (warning,) = [w for w in r.warnings if w.startswith("read again")]
    assert "read again: 1 image " in warning and "mirrored" not in warning
    after = samples(pool)
    kept = {n: v for n, v in before.items() if v[2] != "clips/anim.gif"}
    assert len(kept) == 5 and kept.items() <= after.items()
    # A mirrored photo without a sample in the pool has nothing to compare: read again, and
    # the warning says what is known (it claimed 'read unmirrored').
    bare = tmp_path / "bare"
    shutil.copytree(ART / "dee5dec-decoder", bare)
    csv = pd.read_csv(bare / "datapool_latest.csv")
    csv[csv["filenames"] != "photos/flipped.jpg"].to_csv(bare / "datapool_latest.csv", index=False)
    rows = pd.read_csv(bare / "ledger.csv", dtype={"etag": str}, keep_default_na=False)
    rows.loc[rows["key"] == "photos/flipped.jpg", "n_selected"] = 0
    rows.to_csv(bare / "ledger.csv", index=False)
    r = datapool.run(src, bare, **kw)
    (warning,) = [w for w in r.warnings if w.startswith("read again")]
    assert "read again: 2 images" in warning and "photos/mirrored.jpg" not in warning
    assert (
        "photos/flipped.jpg: mirrored (EXIF orientation 2), read unmirrored by datapool before "
        "2026-12-07 (it has no sample in the pool to tell)" in warning
    )
    # The summary says why a sample left a pool whose 'new' line counts 0 changed.
    shutil.copytree(ART / "dee5dec-decoder", tmp_path / "again")
    again = ("--pool", tmp_path / "again", "--n-samples", 1, "--source-moved")
    out = cli("run", src, *again, "--model", MODEL)
    assert "0 changed, 5 unchanged, 1 read again" in out.stdout, out.stdout + out.stderr
    assert "(1 sample of files changed or read again removed)" in out.stdout, out.stdout


@pytest.mark.parametrize(("name", "stale"), [("5247268-decoder", 3), ("dee5dec-decoder", 1)])
def test_files_the_older_decoder_read_are_read_again_when_moved_before_the_upgrade(
    name, stale, tmp_path
):
    """The folders were renamed (photos/ -> pics/, clips/ -> movies/) before the first run of
    today's datapool on a pool whose runs record no decoder. The moved files keep their samples
    under the new names, but those the older decoder read otherwise are read again all the
    same: before, a move carried their wrong samples over without a word, and the run recorded
    the decoder, so no later run checked them. The pool ends as the upgrade of the folder as it
    was does, the samples renamed; and the summary's counts add up to the files listed."""
    src = _decoder_source(tmp_path, name)
    kw = dict(n_samples=20, model=str(MODEL), source_moved=True, progress=False)
    shutil.copytree(ART / name, tmp_path / "kept")
    datapool.run(src, tmp_path / "kept", **kw)
    (src / "photos").rename(src / "pics")
    (src / "clips").rename(src / "movies")
    pool = tmp_path / "moved"
    shutil.copytree(ART / name, pool)
    assert datapool.run(src, pool, dry_run=True, **kw).would_process == sorted(
        ["movies/anim.gif", "pics/flipped.jpg", "pics/mirrored.jpg"][:stale]
    )
    r = datapool.run(src, pool, **kw)
    c = r.counts
    assert (c["reread"], c["moved"], c["unchanged"]) == (stale, 6 - stale, 0)
    assert c["new"] + c["changed"] + c["unchanged"] + c["reread"] + c["moved"] == c["listed"]
    (warning,) = [w for w in r.warnings if w.startswith("read again")]
    assert "movies/anim.gif: an animation of 3 frames, read as its first frame" in warning

    def renamed(name: str) -> str:
        return name.replace("photos/", "pics/").replace("clips/", "movies/")

    kept = {renamed(n): v[:2] for n, v in samples(tmp_path / "kept").items()}
    assert {n: v[:2] for n, v in samples(pool).items()} == kept
    assert len(pd.read_csv(pool / "ledger.csv")) == 6


@pytest.mark.parametrize("old_first", [True, False])
def test_a_merged_pool_reads_again_what_the_older_decoder_read_in_either_part(
    old_first, tmp_path, make_media
):
    """The same pool merged with one of today's, before or after it: the runs of today's pool
    (which record a decoder) never saw the old pool's files, so the merged pool's first run
    still checks them."""
    old = tmp_path / "old"
    shutil.copytree(ART / "5247268-decoder", old)
    src = _decoder_source(tmp_path, "5247268-decoder")
    runs = json.loads((old / "runs.json").read_text())
    for record in runs["runs"]:  # as if made from this copy of its source
        record["source"] = str(src)
    (old / "runs.json").write_text(json.dumps(runs))
    other = tmp_path / "other"
    for i in range(2):
        make_media(other / "day2" / f"n{i}.jpg", seed=70 + i)
    datapool.run(other, tmp_path / "new", n_samples=3, model=str(MODEL), progress=False)
    parts = (old, tmp_path / "new") if old_first else (tmp_path / "new", old)
    r = cli("merge", *parts, "--into", tmp_path / "merged")
    assert r.returncode == 0, r.stderr
    r = datapool.run(src, tmp_path / "merged", n_samples=20, model=str(MODEL), progress=False)
    assert r.counts["reread"] == 3 and r.counts["processed"] == 3


def test_a_pool_the_older_decoder_read_says_so_where_its_source_is_a_bucket(
    s3, new_bucket, tmp_path
):
    """The pool's files moved into a bucket: objects are not downloaded to check them, so the
    run says how many images the older decoder read, and how to read them all again."""
    pool = tmp_path / "pool"
    shutil.copytree(ART / "5247268-decoder", pool)
    bucket = new_bucket()
    test_s3.upload(s3, ART / "decoder-source", bucket)
    before = samples(pool)
    r = datapool.run(
        f"s3://{bucket}/raw/",
        pool,
        n_samples=20,
        model=str(MODEL),
        source_moved=True,
        progress=False,
    )
    assert r.counts["unchanged"] == 6 and "reread" not in r.counts
    (warning,) = [w for w in r.warnings if "older datapool" in w]
    assert warning.startswith("6 images of the pool were read by an older datapool")
    assert "--process-all reads every file again" in warning
    assert samples(pool) == before


@pytest.mark.parametrize("name", ["fe693cb-local", "9f7a4d5-strat"])
def test_a_folder_renamed_before_the_first_run_on_an_old_pool_keeps_its_samples(name, tmp_path):
    """The first run of today's datapool on a pool whose ledger an older one wrote without
    content hashes (fe693cb), or with them (9f7a4d5), after a folder rename: the moved files keep
    their samples either way. Without hashes their frames' embeddings vouch for them (the
    renamed videos were new files plus missing ones, without a word)."""
    pool = tmp_path / "pool"
    shutil.copytree(ART / name, pool)
    src = source_like((pool / "ledger.csv").read_text(), tmp_path / "source")
    before = samples(pool)
    (src / "cam").rename(src / "camera")
    r = run(src, pool, name)
    c = r.counts
    assert (c["moved"], c["new"], c["missing"], c["processed"]) == (2, 0, 0, 0)
    assert not [w for w in r.warnings if "cannot be told" in w]
    renamed = {
        n.replace("cam/", "camera/", 1): (e, run_, k.replace("cam/", "camera/", 1))
        for n, (e, run_, k) in before.items()
    }
    assert samples(pool) == renamed


def test_files_read_again_are_not_counted_among_the_touched(tmp_path):
    """5247268-decoder over a copy of its source whose mtimes all moved (a `cp -r`): 6 files
    of the same bytes, 3 of which the older decoder read otherwise. The summary said '3
    unchanged (6 with new mtimes, same bytes), 3 read again': the touched count took in the
    files read again, and was more than the unchanged it is a part of."""
    pool = tmp_path / "pool"
    shutil.copytree(ART / "5247268-decoder", pool)
    src = tmp_path / "source"
    shutil.copytree(ART / "decoder-source", src)
    for f in src.rglob("*"):
        os.utime(f, ns=(1_800_000_000 * 10**9, 1_800_000_000 * 10**9))
    r = cli("run", src, "--pool", pool, "--n-samples", "20", "--model", MODEL, "--source-moved")
    assert r.returncode == 0, r.stderr
    new = "new       0 new, 0 changed, 3 unchanged (3 with new mtimes, same bytes), 3 read again"
    assert new in r.stdout, r.stdout


def test_a_pool_whose_datapool_ignored_heic_and_ogv_reads_them_once_saying_so(tmp_path):
    """00a5f47-unread: a pool made by 00a5f47, which listed HEIC, AVIF, .ogv and .vob as media
    it does not read: its run ignored them (report.json's `ignored`), and its ledger has only the
    JPEG. The next run finds them new, reads them once without --process-all and says why they
    come now; the run after reads nothing."""
    pool, src = tmp_path / "pool", tmp_path / "source"
    shutil.copytree(ART / "00a5f47-unread", pool)
    shutil.copytree(ART / "heif-source", src)
    ledger = pd.read_csv(pool / "ledger.csv")
    assert ledger["key"].tolist() == ["photos/a.jpg"]
    unread = ["clips/dvd.vob", "clips/theora.ogv", "photos/IMG_0001.HEIC", "photos/web.avif"]
    assert sorted(json.loads((pool / "runs/0/report.json").read_text())["ignored"]) == unread
    for key, mtime in zip(ledger["key"], ledger["mtime_ns"]):
        os.utime(src / key, ns=(int(mtime), int(mtime)))
    kw = {"n_samples": 10, "model": str(MODEL), "source_moved": True, "progress": False}
    r = datapool.run(src, pool, **kw)
    assert (r.counts["new"], r.counts["unchanged"]) == (4, 1)
    assert [w for w in r.warnings if w.startswith("read now")] == [
        "read now: 4 new files of a type the datapool of this pool's earlier runs did not read "
        "(1 .avif, 1 .heic, 1 .ogv, 1 .vob), which it ignored; this datapool reads them "
        "(README, 'Decode')"
    ]
    after = Pool.open(pool).ledger.set_index("key")
    read = [k for k in unread if after.loc[k, "status"] == "ok"]
    heic = "photos/IMG_0001.HEIC"
    if heic not in read:  # no pillow-heif here: skipped, naming the install
        assert "pip install 'datapool[heif]'" in after.loc[heic, "status"]
    assert set(read) >= set(unread) - {heic}
    again = datapool.run(src, pool, **kw)
    assert again.counts["new"] == 0
    assert not [w for w in again.warnings if w.startswith("read now")]
