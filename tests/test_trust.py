"""Issue 15, "every run does what the user meant, or says why not": real media, real processes.

Each test names the issue's point it covers. Among them the realistic cases: a folder of images
and videos copied with new mtimes runs as "nothing new", and a pool inside its own source never
ingests itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import datapool
from datapool import Pool
from datapool.errors import ConfigError, SourceError

from ._robust import tree_digest
from .conftest import PACKAGE_PATH


def run(source, pool, **kw):
    kw.setdefault("n_samples", 6)
    return datapool.run(source, pool, progress=False, **kw)


def cli(*args, cwd=None, prefix=(), timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PATH, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [*prefix, sys.executable, "-m", "datapool", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def without_root_privileges() -> tuple[str, ...]:
    """A command prefix under which file permissions bind: root bypasses them (CAP_DAC_OVERRIDE),
    so for root the capabilities that do are dropped with setpriv."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to bind")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


def ledger(pool: Path) -> pd.DataFrame:
    return Pool.open(pool).ledger.set_index("key")


# -- 1. a pool does not shrink when only mtimes change ---------------------------------------


def test_a_copy_with_new_mtimes_runs_as_nothing_new(bucket, tmp_path):
    pool = tmp_path / "pool"
    first = run(bucket, pool)
    size = len(Pool.open(pool))
    copy = tmp_path / "bucket2"
    shutil.copytree(bucket, copy, copy_function=shutil.copyfile)  # cp -r: new mtimes
    again = run(copy, pool, source_moved=True)
    # Nothing is processed or selected: the run commits only to record the pool's new source.
    assert again.run_index == 1 and again.counts["processed"] == again.counts["selected"] == 0
    assert again.counts["changed"] == 0 and again.counts["touched"] == again.counts["listed"]
    assert len(Pool.open(pool)) == size == first.counts["pool_size"]


def test_touched_files_are_unchanged_and_their_new_mtime_is_recorded(bucket, tmp_path, make_media):
    pool = tmp_path / "pool"
    run(bucket, pool)
    before = Pool.open(pool)
    for p in bucket.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))  # touch
    assert run(bucket, pool).run_index is None
    make_media(bucket / "new.jpg", seed=99)
    result = run(bucket, pool)
    assert result.counts["new"] == 1 and result.counts["changed"] == 0
    after = Pool.open(pool)
    assert set(before.filenames) <= set(after.filenames)  # nothing was removed
    rows = ledger(pool)
    for key in ("img0.jpg", "cam/clip.mp4"):
        assert rows.loc[key, "mtime_ns"] == (bucket / key).stat().st_mtime_ns
        assert rows.loc[key, "run"] == 0  # still the run that processed it
    assert rows.loc["notes.png", "status"] != "ok"  # a skipped file stays skipped


def test_same_size_new_bytes_is_changed(bucket, tmp_path):
    pool = tmp_path / "pool"
    run(bucket, pool)
    f = bucket / "img0.jpg"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF  # inside the JPEG's last bytes: same size, other content
    f.write_bytes(bytes(data))
    result = run(bucket, pool)
    assert result.counts["changed"] == 1 and result.counts["touched"] == 0


def test_ledgers_without_the_hash_column_still_read(bucket, tmp_path):
    pool = tmp_path / "pool"
    run(bucket, pool)
    path = pool / "ledger.csv"
    text = path.read_text().splitlines()
    assert text[0].endswith(",etag,content_hash,predictions")
    old = [line.rsplit(",", 2)[0] for line in text]  # as written before the columns
    path.write_text("\n".join(old) + "\n")
    assert (ledger(pool)["content_hash"] == "").all()
    assert run(bucket, pool).run_index is None  # unchanged files stay unchanged


# -- 2. a pool remembers its source -----------------------------------------------------------


def test_a_run_from_another_source_stops_naming_both(tmp_path, make_media):
    a, b, pool = tmp_path / "srcA", tmp_path / "srcB", tmp_path / "pool"
    for i in range(3):
        make_media(a / f"img{i}.png", seed=i)
        make_media(b / f"img{i}.png", seed=50 + i)
    run(a, pool)
    before = tree_digest(pool)
    with pytest.raises(SourceError, match=r"srcA.*not .*srcB.*--source-moved"):
        run(b, pool)
    r = cli("run", b, "--pool", pool, "--n-samples", 2)
    assert r.returncode == 5 and "--source-moved" in r.stderr and r.stderr.count("\n") == 1
    assert tree_digest(pool) == before
    moved = run(b, pool, source_moved=True)
    assert moved.run_index == 1
    run_records = json.loads((pool / "runs.json").read_text())["runs"]
    assert run_records[1]["source"] == str(b) and run_records[1]["config"]["source_moved"]
    run(b, pool)  # the moved source is the pool's source now
    with pytest.raises(SourceError):
        run(a, pool)


# -- 3. the pool, its history and an export inside SOURCE are never listed; filters -----------


def test_a_pool_inside_its_own_source_never_ingests_itself(bucket, make_media):
    pool = bucket / "pool"
    export = bucket / "exported"
    run(bucket, pool, export=str(export), keep_history=True)
    make_media(bucket / "later.jpg", seed=88)
    second = run(bucket, pool, export=str(export), keep_history=True)
    assert second.counts["new"] == 1, second.counts
    assert run(bucket, pool, export=str(export)).run_index is None
    keys = ledger(pool).index.tolist()
    assert not [k for k in keys if k.startswith(("pool/", "exported/"))]
    assert (pool / "runs" / "0" / "embedding_view.png").exists() and list(export.iterdir())
    with pytest.raises(ConfigError, match="is the source folder itself"):
        run(bucket, bucket)


def test_another_pool_inside_the_source_is_left_out(bucket, tmp_path):
    # A pool kept beside the raw files (an experiment's pool, a colleague's) is not raw data: its
    # embedding views, reports and snapshots must never be ingested by a run into another pool.
    run(bucket, bucket / "experiments" / "old_pool", keep_history=True, process_all=True)
    result = run(bucket, tmp_path / "pool")
    keys = ledger(tmp_path / "pool").index.tolist()
    assert not [k for k in keys if k.startswith("experiments/")], keys
    assert result.counts["excluded"] > 0
    assert any("experiments/old_pool/" in w for w in result.warnings), result.warnings
    # A source that is itself a pool folder is refused, saying what it is.
    with pytest.raises(SourceError, match="is a datapool pool"):
        run(bucket / "experiments" / "old_pool", tmp_path / "pool2")


def test_include_exclude_and_relevant_filenames(bucket, tmp_path):
    result = run(bucket, tmp_path / "p1", include=("*.png",), exclude=("sub/*",))
    keys = set(ledger(tmp_path / "p1").index)
    assert keys == {"png0.png", "png1.png", "png2.png", "notes.png"}
    assert result.counts["excluded"] > 0
    relevant = tmp_path / "relevant.txt"
    relevant.write_text("# Lightly's relevant_filenames_file\ncam/*\n!cam/broken.mp4\nimg1.jpg\n")
    r = cli(
        "run", bucket, "--pool", tmp_path / "p2", "--n-samples", 3,
        "--relevant-filenames-file", relevant, "--no-progress",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert set(ledger(tmp_path / "p2").index) == {"cam/clip.mp4", "cam/other.mp4", "img1.jpg"}


# -- 4. empty paths are refused ---------------------------------------------------------------


def test_empty_paths_are_refused(bucket, tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        run("", tmp_path / "pool")
    with pytest.raises(ConfigError, match="empty"):
        run(bucket, "")
    with pytest.raises(ConfigError, match="empty"):
        run(bucket, tmp_path / "pool", export="")
    work = tmp_path / "cwd"
    work.mkdir()
    shutil.copy(bucket / "img0.jpg", work / "img0.jpg")
    for args in (("", "--pool", tmp_path / "p"), (bucket, "--pool", "")):
        r = cli("run", *args, "--n-samples", 2, cwd=work)
        assert r.returncode == 4 and "empty" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["img0.jpg"]
    assert not (tmp_path / "p").exists()


# -- 10. a failed read is retried; a corrupt file is final until it changes --------------------


def test_an_unreadable_file_is_retried_next_run(bucket, tmp_path):
    pool, locked = tmp_path / "pool", bucket / "img3.jpg"
    prefix = without_root_privileges()
    locked.chmod(0)
    try:
        r = cli("run", bucket, "--pool", pool, "--n-samples", 4, "--json", prefix=prefix)
        assert r.returncode == 0, r.stderr
        reasons = {s["key"]: s["reason"] for s in json.loads(r.stdout)["skipped"]}
        assert reasons["img3.jpg"].startswith("read failed: Permission denied"), reasons
    finally:
        locked.chmod(0o644)
    r = cli("run", bucket, "--pool", pool, "--n-samples", 4, "--json", prefix=prefix)
    out = json.loads(r.stdout)
    assert out["counts"]["retried"] == 1 and out["counts"]["processed"] == 1, out
    assert ledger(pool).loc["img3.jpg", "status"] == "ok"
    # The corrupt files stay skipped, and are not read again...
    assert run(bucket, pool).run_index is None
    # ...unless asked.
    again = run(bucket, pool, retry_skipped=True)
    assert again.counts["retried"] == 3 and again.counts["processed"] == 3


# -- 11. --n-samples 0 is refused; --dry-run changes nothing ----------------------------------


def test_n_samples_zero_is_refused(bucket, tmp_path):
    with pytest.raises(ConfigError, match="n_samples must be an integer >= 1"):
        run(bucket, tmp_path / "pool", n_samples=0)
    r = cli("run", bucket, "--pool", tmp_path / "pool", "--n-samples", 0)
    assert r.returncode == 4 and "--n-samples must be" in r.stderr
    assert not (tmp_path / "pool").exists()


def test_dry_run_lists_what_would_be_processed_and_changes_nothing(bucket, tmp_path, make_media):
    pool = tmp_path / "pool"
    r = cli("run", bucket, "--pool", pool, "--n-samples", 3, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would process 15 files" in r.stdout and "cam/clip.mp4" in r.stdout
    assert not pool.exists()
    run(bucket, pool)
    make_media(bucket / "new.png", seed=70)
    before = tree_digest(pool, skip_lock=False)
    r = cli("run", bucket, "--pool", pool, "--n-samples", 3, "--dry-run", "--json")
    out = json.loads(r.stdout)
    assert out["dry_run"] and out["would_process"] == ["new.png"] and out["run"] is None
    assert tree_digest(pool, skip_lock=False) == before
    assert run(bucket, pool).counts["processed"] == 1


# -- 12. exit codes do not clash ----------------------------------------------------------------


def test_usage_errors_do_not_exit_2(bucket, tmp_path):
    r = cli("run", bucket)  # --pool missing: argparse's own error
    assert r.returncode == 4 and "--pool" in r.stderr
    assert cli("run", bucket, "--pool", tmp_path / "p", "--n-samples", "many").returncode == 4
    assert cli("frobnicate").returncode == 4
    assert cli("--version").returncode == 0
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code in ("| 2 |", "| 4 |", "| 5 |", "| 8 |"):
        assert code in readme


# -- 14. datapool ls ---------------------------------------------------------------------------


def test_ls_lists_samples_with_run_source_frame_and_distance(bucket, tmp_path, make_media):
    pool = tmp_path / "pool"
    first = run(bucket, pool, n_samples=10)
    make_media(bucket / "cam" / "late.mp4", seed=40, frames=6)
    run(bucket, pool, n_samples=3)
    r = cli("ls", pool, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == len(Pool.open(pool))
    frames = [x for x in rows if x["frame"] is not None]
    assert frames and all(x["source_file"].endswith(".mp4") for x in frames)
    assert all(x["min_distance"] is not None for x in rows[1:])
    assert {x["filename"] for x in rows if x["run"] == 0} == set(first.selected)
    only = json.loads(cli("ls", pool, "--run", "1", "--json").stdout)
    assert {x["run"] for x in only} == {1} and 0 < len(only) <= 3
    text = cli("ls", pool, "--run", "1")
    assert text.returncode == 0 and f"{len(only)} samples" in text.stdout
    assert cli("ls", pool, "--run", "7").returncode == 4


# -- 16. a folder that holds only a first run's lock is an empty pool --------------------------


def test_a_never_committed_first_run_leaves_an_empty_pool(bucket, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / ".datapool.lock").write_text('{"pid": 999999, "host": "elsewhere"}')
    r = cli("status", pool)
    assert r.returncode == 0 and r.stdout.splitlines() == [
        f"pool    {pool}: no pool yet: a run on another host may hold the folder (pid 999999 on "
        "elsewhere since 1970-01-01T00:00:00+00:00, as its lock records); its first commit "
        "makes the pool"
    ], r.stderr
    assert json.loads(cli("status", pool, "--json").stdout)["empty"] is True
    assert run(bucket, pool).run_index == 0


def test_the_demo_starts_again_after_an_interrupted_first_run(tmp_path):
    demo = tmp_path / "demo"
    (demo / "pool").mkdir(parents=True)
    (demo / "pool" / ".datapool.lock").write_text("")
    r = cli("demo", demo)
    assert r.returncode == 0, r.stderr
    assert len(json.loads((demo / "pool" / "runs.json").read_text())["runs"]) == 2


# -- 17. records a user can trust later ----------------------------------------------------------


def test_runs_json_records_the_absolute_source_and_versions(bucket, tmp_path, make_media):
    r = cli("run", "bucket", "--pool", "pool", "--n-samples", 3, "--keep-history", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    make_media(bucket / "new.png", seed=71)
    r = cli("run", "bucket", "--pool", "pool", "--n-samples", 3, "--keep-history", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "pool" / "runs.json").read_text())["runs"][1]
    assert record["source"] == str(bucket)
    assert set(record["versions"]) == {"datapool", "pyav", "ffmpeg", "onnxruntime", "numpy"}
    assert all(record["versions"].values())
    assert not [k for k in record["config"] if k.startswith("s3_")]
    status = cli("status", tmp_path / "pool")
    assert f"source  {bucket}" in status.stdout and "stopped: " in status.stdout
    assert "history history/" in status.stdout, status.stdout


def test_merged_pools_get_unique_tags(tmp_path, make_media):
    for name, seed in (("a", 0), ("b", 30)):
        for i in range(3):
            make_media(tmp_path / f"src{name}" / f"img{i}.png", seed=seed + i)
        run(tmp_path / f"src{name}", tmp_path / name, n_samples=2)
    datapool.merge(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    runs = json.loads((tmp_path / "c" / "runs.json").read_text())["runs"]
    tags = [r["tag"] for r in runs]
    assert len(set(tags)) == len(tags) == 2
    assert runs[1]["merged_from"]["tag"] == "initial-tag"


# -- 18. messages in the user's words -------------------------------------------------------------


def test_cli_errors_name_cli_flags(bucket, tmp_path):
    r = cli("run", bucket, "--pool", tmp_path / "p", "--proportion", "2")
    assert r.returncode == 4 and "--proportion" in r.stderr and "proportion_samples" not in r.stderr
    r = cli("run", bucket, "--pool", tmp_path / "p", "--n-samples", 2, "--model", tmp_path)
    assert r.returncode == 4 and "is a folder" in r.stderr and r.stderr.count("\n") == 1


def test_demo_into_a_file_or_an_unwritable_folder_gives_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = cli("demo", afile)
    assert r.returncode == 4 and r.stderr.count("\n") == 1 and "is a file" in r.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        r = cli("demo", locked / "demo", prefix=without_root_privileges())
    finally:
        locked.chmod(0o755)
    assert r.returncode == 8 and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_dir_shows_only_the_public_api():
    import datapool.errors  # a submodule imported must not show

    assert dir(datapool) == sorted(datapool.__all__)


def test_filters_and_prefixes_inside_a_source():
    from datapool.sources.filters import ListingFilter, prefix_inside

    assert prefix_inside("s3://b/raw", "s3://b/raw/pool/") == "pool/"
    assert prefix_inside("s3://b/raw/", "s3://b/rawer/pool") is None
    assert prefix_inside("s3://b", "s3://b/pool") == "pool/"
    assert prefix_inside("s3://b/raw", "/tmp/pool") is None
    with pytest.raises(ConfigError, match="itself"):
        prefix_inside("s3://b/raw", "s3://b/raw/")
    f = ListingFilter(
        include=("*.jpg", "cam/*"),
        exclude=("*/tmp*",),
        relevant=((True, "a/*"), (True, "cam/*"), (False, "a/x.jpg")),
        skip_prefixes=("pool/",),
    )
    keys = ("a/x.jpg", "a/y.jpg", "cam/v.mp4", "cam/tmp1.mp4", "pool/a/z.jpg", "b.jpg")
    assert [k for k in keys if f.keeps(k)] == ["a/y.jpg", "cam/v.mp4"]
