"""Files moved or renamed in the source (pool/moves.py): the same bytes under a new name keep
their samples, renamed in place, and are not decoded or embedded again. Real media, real runs;
S3 over HTTP to moto."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import datapool
from datapool import Pool
from datapool.pool import inputs
from datapool.pool.moves import renamed_sample

from . import test_s3
from .test_trust import cli

moto_endpoint, s3_env, s3, new_bucket = (
    test_s3.moto_endpoint,
    test_s3.s3_env,
    test_s3.s3,
    test_s3.new_bucket,
)


def run(source, pool, **kw):
    kw.setdefault("n_samples", 8)
    return datapool.run(source, pool, progress=False, **kw)


def rows(pool: Path) -> dict[str, tuple[bytes, int]]:
    """Each sample's embedding (bytes) and run."""
    p = Pool.open(pool)
    return {n: (e.tobytes(), int(r)) for n, e, r in zip(p.filenames, p.embeddings, p.labels)}


@pytest.fixture
def src(tmp_path: Path, make_media) -> Path:
    root = tmp_path / "src"
    for i in range(5):
        make_media(root / "day1" / f"img{i}.jpg", seed=i)
    make_media(root / "day1" / "cam.mp4", seed=30, frames=12)
    make_media(root / "keep" / "x.png", seed=40)
    return root


def test_a_renamed_folder_keeps_its_samples_under_the_new_names(src, tmp_path):
    pool = tmp_path / "pool"
    first = run(src, pool)
    before = rows(pool)
    ledger_before = Pool.open(pool).ledger.set_index("key")
    (src / "day1").rename(src / "2026-12-01")
    (src / "keep" / "x.png").rename(src / "keep" / "y.png")

    again = run(src, pool)
    c = again.counts
    assert (c["moved"], c["new"], c["missing"], c["processed"]) == (7, 0, 0, 0)
    assert c["frames_embedded"] == 0 and again.frames_decoded == 0  # nothing read again
    after = rows(pool)
    assert len(after) == len(before) == first.counts["pool_size"]

    def moved(name: str) -> str:
        if name == "keep/x.png":
            return "keep/y.png"
        return name.replace("day1/", "2026-12-01/", 1)

    assert after == {moved(n): v for n, v in before.items()}  # same rows, same runs
    assert any(n.startswith("2026-12-01/cam-") for n in after)  # a frame of the video
    ledger = Pool.open(pool).ledger.set_index("key")
    assert set(ledger.index) == {moved(k) for k in ledger_before.index}
    for key, row in ledger_before.iterrows():
        now = ledger.loc[moved(key)]
        assert (now["run"], now["n_samples"], now["n_selected"]) == (
            row["run"],
            row["n_samples"],
            row["n_selected"],
        )
        assert now["mtime_ns"] == (src / moved(key)).stat().st_mtime_ns
    # The pool names files that are there: export copies them all, byte for byte.
    out = tmp_path / "out"
    r = cli("export", pool, out, "--all")
    assert r.returncode == 0, r.stderr
    listed = (out / "selected_filenames.txt").read_text().split()
    assert sorted(listed) == sorted(after)
    for name in listed:
        if "-mp4" not in name:
            assert (out / name).read_bytes() == (src / name).read_bytes()
    assert run(src, pool).run_index is None  # and the next run finds nothing new


def test_the_cli_says_what_moved(src, tmp_path):
    pool = tmp_path / "pool"
    assert cli("run", src, "--pool", pool, "--n-samples", 4).returncode == 0
    shutil.move(src / "day1", src / "day2")
    dry = cli("run", src, "--pool", pool, "--n-samples", 4, "--dry-run")
    assert "6 moved or renamed" in dry.stdout and "would process 0 files" in dry.stdout
    r = cli("run", src, "--pool", pool, "--n-samples", 4)
    assert r.returncode == 0, r.stderr
    assert "moved     6 files, same bytes under new names" in r.stdout
    assert "embedded  0 samples" in r.stdout
    report = json.loads((pool / "runs" / "1" / "report.json").read_text())
    assert report["counts"]["moved"] == 6
    status = cli("status", pool)
    assert "stopped: no candidates; 6 files moved or renamed" in status.stdout, status.stdout


def test_the_cli_says_so_when_no_sample_of_a_moved_file_is_in_the_pool(tmp_path, make_media):
    # A moved file none of whose samples was selected: the summary said `their 0 pool samples
    # renamed`, which reads as if samples had been lost.
    src, pool = tmp_path / "src", tmp_path / "pool"
    for i in range(3):
        make_media(src / f"img{i}.jpg", seed=i)
    assert cli("run", src, "--pool", pool, "--n-samples", 1).returncode == 0
    picked = Pool.open(pool).filenames
    unpicked = next(f"img{i}.jpg" for i in range(3) if f"img{i}.jpg" not in picked)
    (src / unpicked).rename(src / "renamed.jpg")
    r = cli("run", src, "--pool", pool, "--n-samples", 1)
    assert r.returncode == 0, r.stderr
    assert (
        "moved     1 file, same bytes under new names: not embedded again (none of its "
        "samples is in the pool)"
    ) in r.stdout.splitlines(), r.stdout


def test_changed_bytes_or_a_copy_are_not_moves(src, tmp_path, make_media):
    pool = tmp_path / "pool"
    run(src, pool)
    (src / "day1" / "img0.jpg").rename(src / "img0-renamed.jpg")
    make_media(src / "day1" / "img1.jpg", seed=1)  # the same picture written again
    (src / "day1" / "img1.jpg").rename(src / "img1-rewritten.jpg")
    shutil.copy2(src / "day1" / "img2.jpg", src / "img2-copy.jpg")  # the original stays
    data = bytearray((src / "day1" / "img3.jpg").read_bytes())
    data[-3] ^= 0xFF  # same size, other bytes
    (src / "day1" / "img3.jpg").unlink()
    (src / "img3-edited.jpg").write_bytes(bytes(data))
    c = run(src, pool).counts
    # img0 moved; img1 was written again (same bytes: a move too); the copy and the edit are new
    assert c["moved"] == 2
    assert (c["new"], c["missing"]) == (2, 1)
    ledger = Pool.open(pool).ledger.set_index("key")
    assert "day1/img3.jpg" in ledger.index  # kept as missing, as any gone file
    assert {"img0-renamed.jpg", "img1-rewritten.jpg"} <= set(ledger.index)
    assert "day1/img0.jpg" not in ledger.index


def test_a_file_the_filters_leave_out_has_not_moved(src, tmp_path):
    """A copy of a file that --exclude leaves out (its folder not even read) is a new file: the
    excluded one is still there. It was taken as a move, renaming the pool's sample to the copy."""
    pool = tmp_path / "pool"
    run(src, pool)
    shutil.copy2(src / "keep" / "x.png", src / "x-copy.png")
    c = run(src, pool, exclude=("keep/",)).counts
    assert (c["moved"], c["new"]) == (0, 1)
    p = Pool.open(pool)
    assert "keep/x.png" in p.filenames and "keep/x.png" in set(p.ledger["key"])


def test_duplicates_pair_in_key_order(tmp_path, make_media):
    src, pool = tmp_path / "src", tmp_path / "pool"
    one = make_media(src / "a1.jpg", seed=7)
    shutil.copy(one, src / "a2.jpg")
    make_media(src / "b.jpg", seed=8)
    run(src, pool, n_samples=3)
    (src / "a1.jpg").rename(src / "z1.jpg")
    (src / "a2.jpg").rename(src / "z2.jpg")
    c = run(src, pool, n_samples=3).counts
    assert c["moved"] == 2 and c["new"] == 0
    ledger = Pool.open(pool).ledger.set_index("key")
    assert set(ledger.index) == {"b.jpg", "z1.jpg", "z2.jpg"}


def test_a_new_name_the_source_already_holds_is_not_a_move(tmp_path, make_media):
    src, pool = tmp_path / "src", tmp_path / "pool"
    make_media(src / "clip.mp4", seed=3, frames=12)
    make_media(src / "b.jpg", seed=8)
    run(src, pool, n_samples=4)
    frame = next(n for n in Pool.open(pool).filenames if n.startswith("clip-"))
    # The video moves to v/clip.mp4, and an image already has the name of one of its frames there.
    (src / "v").mkdir()
    (src / "clip.mp4").rename(src / "v" / "clip.mp4")
    make_media(src / "v" / frame, seed=9)
    c = run(src, pool, n_samples=4).counts
    assert c["moved"] == 0 and c["new"] == 2 and c["missing"] == 1


def test_thumbnails_follow_the_samples(src, tmp_path):
    pool = tmp_path / "pool"
    run(src, pool)
    (src / "day1").rename(src / "day9")
    run(src, pool)
    names = set(Pool.open(pool).filenames)
    r = cli("report", pool, "--out", tmp_path / "page.html")
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "page.html").read_text()
    count = json.loads(page.split('"thumbs": ', 1)[1].split("}", 1)[0] + "}")["count"]
    assert count == len(names)


def test_a_pool_without_thumbnails_takes_moves(src, tmp_path, make_media):
    """A pool grown with --no-thumbnails (or by a datapool before thumbnails) has no thumbnails
    for its moved samples: the run's page goes without them. It raised KeyError on the first
    moved sample's name before."""
    pool = tmp_path / "pool"
    run(src, pool, thumbnails=False)
    before = rows(pool)
    (src / "day1").rename(src / "day9")
    make_media(src / "keep" / "new.png", seed=41)
    again = run(src, pool)
    assert (again.counts["moved"], again.counts["processed"]) == (6, 1)
    after = rows(pool)
    assert {n.replace("day1/", "day9/"): v for n, v in before.items()}.items() <= after.items()


def test_ls_keeps_the_min_distance_of_moved_samples(src, tmp_path):
    """ls finds a moved sample's min-distance in its run's report under the name it was picked
    by, through every later move. It showed none once the file moved."""
    pool = tmp_path / "pool"
    run(src, pool)

    def distances() -> list[float | None]:
        return [s["min_distance"] for s in Pool.open(pool).samples()]

    before = distances()
    assert sum(d is not None for d in before) >= 5
    (src / "day1").rename(src / "day2")
    assert run(src, pool).counts["moved"] == 6
    (src / "day2").rename(src / "day3")
    (src / "keep" / "x.png").rename(src / "keep" / "y.png")
    assert run(src, pool).counts["moved"] == 7
    assert any(n.startswith("day3/") for n in Pool.open(pool).filenames)
    assert distances() == before
    r = cli("ls", pool, "--json")
    assert r.returncode == 0, r.stderr
    assert [s["min_distance"] for s in json.loads(r.stdout)] == before


def test_renamed_sample_names():
    assert renamed_sample("a/x.jpg", "a/x.jpg", "b/y.jpg") == "b/y.jpg"
    assert renamed_sample("a/cam-007-mp4.png", "a/cam.mp4", "b/c.mkv") == "b/c-007-mkv.png"
    with pytest.raises(ValueError):
        renamed_sample("a/other-007-mp4.png", "a/cam.mp4", "b/c.mkv")


def test_strategy_inputs_are_kept_under_the_new_names():
    old = inputs.merged(None, {"a.jpg", "b.jpg"}, {"a.jpg": {"s": 1.0}, "b.jpg": {"s": 2.0}})
    out = json.loads(inputs.merged(old, {"c.jpg", "b.jpg"}, {}, {"a.jpg": "c.jpg"}))
    assert out["samples"] == {"c.jpg": {"s": 1.0}, "b.jpg": {"s": 2.0}}


def test_a_moved_object_in_a_bucket(s3, new_bucket, bucket, tmp_path):
    name = new_bucket()
    test_s3.upload(s3, bucket, name, only={"img0.jpg", "img1.jpg", "png0.png", "cam/clip.mp4"})
    pool = tmp_path / "pool"
    run(f"s3://{name}/raw", pool, n_samples=4)
    before = rows(pool)
    for key in ("img0.jpg", "cam/clip.mp4"):  # a server-side copy, then the old key deleted
        to = "moved/" + key.replace("/", "-")
        s3.copy_object(
            Bucket=name, Key=f"raw/{to}", CopySource={"Bucket": name, "Key": f"raw/{key}"}
        )
        s3.delete_object(Bucket=name, Key=f"raw/{key}")
    c = run(f"s3://{name}/raw", pool, n_samples=4).counts
    assert (c["moved"], c["new"], c["processed"]) == (2, 0, 0)
    after = rows(pool)
    assert sorted(v for v in after.values()) == sorted(before.values())
    assert "moved/img0.jpg" in after or "img0.jpg" not in before
    assert not any(n.startswith("cam/clip-") for n in after)


def test_a_pool_in_a_bucket_takes_moves_as_a_folder_does(s3, new_bucket, src, tmp_path):
    name = new_bucket()
    url = f"s3://{name}/pools/main"
    run(src, url)
    run(src, tmp_path / "local")
    (src / "day1").rename(src / "day2")
    assert run(src, url).counts["moved"] == 6
    assert run(src, tmp_path / "local").counts["moved"] == 6
    test_s3.fetch_s3_pool(s3, name, "pools/main/", tmp_path / "fetched")
    a, b = Pool.open(tmp_path / "local"), Pool.open(tmp_path / "fetched")
    assert a.filenames == b.filenames and any(n.startswith("day2/") for n in a.filenames)
    assert list(a.ledger["key"]) == list(b.ledger["key"])
    assert not any(k.startswith("day1/") for k in b.ledger["key"])
    assert run(src, url).run_index is None


def test_a_pool_merged_from_two_sources_takes_moves_in_each(tmp_path, make_media):
    """Moves were not looked for at all in a merged pool of two sources: a renamed folder was
    new files (embedded again) plus files no longer in the source (export refused their
    samples as gone). Now the gone files of the run's own source move; a copy here of the other
    source's file is still a new file, not a move."""
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(3):
        make_media(a / "day1" / f"img{i}.jpg", seed=i)
        make_media(b / "night" / f"pic{i}.jpg", seed=20 + i)
    run(a, tmp_path / "pa")
    run(b, tmp_path / "pb")
    merged = tmp_path / "merged"
    r = cli("merge", tmp_path / "pa", tmp_path / "pb", "--into", merged)
    assert r.returncode == 0, r.stderr
    before = rows(merged)
    (a / "day1").rename(a / "2026-12-01")
    shutil.copy(b / "night" / "pic0.jpg", a / "copy.jpg")  # the other source's bytes
    c = run(a, merged).counts
    assert (c["moved"], c["new"], c["missing"], c["processed"]) == (3, 1, 0, 1)
    after = rows(merged)
    for i in range(3):
        assert after[f"2026-12-01/img{i}.jpg"] == before[f"day1/img{i}.jpg"]
        assert after[f"night/pic{i}.jpg"] == before[f"night/pic{i}.jpg"]
    r = cli("export", merged, tmp_path / "out", "--all")
    assert r.returncode == 0, r.stderr


def test_a_rename_an_older_ledger_cannot_tell_by_bytes_is_told_by_embeddings(tmp_path):
    """A pool whose ledger an older datapool wrote without content hashes: the first run of
    today's datapool had no bytes to compare a gone file with, so a renamed file was read as
    new and its samples stayed as missing, without a word. Now a new file of a gone file's kind
    and size whose frames embed as the gone file's samples did is that file moved; one that
    does not (another picture of the same size) is new, and the run says that it cannot tell."""
    import numpy as np

    from datapool.media import write_image

    from .conftest import scene

    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"img{i}.jpg", scene(i))
    for i in range(2):  # BMPs of one size: the same number of bytes, other pictures
        write_image(src / f"b{i}.bmp", scene(10 + i))
    pool = tmp_path / "pool"
    run(src, pool)
    before = rows(pool)
    assert {"img0.jpg", "b0.bmp"} <= set(before)
    ledger = (pool / "ledger.csv").read_text().splitlines()
    at = ledger[0].split(",").index("content_hash")
    old = [",".join([*line.split(",")[:at], ""]) for line in ledger[1:]]  # as an older one wrote
    (pool / "ledger.csv").write_text("\n".join([ledger[0], *old]) + "\n")
    (src / "img0.jpg").rename(src / "first.jpg")
    (src / "b0.bmp").unlink()
    write_image(src / "b9.bmp", np.ascontiguousarray(scene(10)[::-1]))  # b0 upside down
    assert (src / "b9.bmp").stat().st_size == (src / "b1.bmp").stat().st_size
    r = run(src, pool)
    assert (r.counts["moved"], r.counts["new"], r.counts["missing"]) == (1, 1, 1)
    assert rows(pool)["first.jpg"] == before["img0.jpg"]  # its embedding and run, kept
    (warning,) = [w for w in r.warnings if "cannot be told" in w]
    assert warning.startswith("1 new file of this run has the kind and size of a file no longer")
    assert "put the files back, run once" in warning
    ledger = Pool.open(pool).ledger.set_index("key")
    assert ledger.loc["first.jpg", "content_hash"] != ""
    (src / "img1.jpg").rename(src / "second.jpg")  # the hashes are recorded now
    r = run(src, pool)
    assert (r.counts["moved"], r.counts["new"]) == (1, 0)
    assert not [w for w in r.warnings if "cannot be told" in w]
