"""Which datapool can read a pool (pool/format.py): every commit records the pool format it wrote,
the oldest reader that reads it and its version, in runs.json (and an S3 pool's manifest.json); a
datapool refuses a pool whose minimum reader is newer than itself in one line that says who wrote
it and to upgrade (exit 2), before any other check of the pool's files. Columns this datapool
does not know, in a pool that records no format, may be a newer datapool's: the error says so.

And the test that keeps the record honest: the shape of what a run writes today is the one
recorded for POOL_FORMAT below; a change to it fails here until POOL_FORMAT is raised (and
MIN_READER where an older datapool would refuse or misread the change)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

import datapool
from datapool import Pool, PoolCorruptError
from datapool.errors import PoolTooNewError
from datapool.pool import format as pool_format
from datapool.pool.ledger import LEDGER_COLUMNS

from . import test_s3
from ._robust import tree_digest
from .test_trust import cli

moto_endpoint, s3_env, s3, new_bucket = (
    test_s3.moto_endpoint,
    test_s3.s3_env,
    test_s3.s3,
    test_s3.new_bucket,
)

ART = Path(__file__).parent / "artifacts" / "compat"
MODEL = ART / "tiny.onnx"
KW = dict(n_samples=3, model=str(MODEL), frame_stride=4, progress=False)
NEWER = pool_format.POOL_FORMAT + 1


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """(source, pool): a pool of today's datapool, one run over the compat source."""
    root = tmp_path_factory.mktemp("made")
    shutil.copytree(ART / "source", root / "source")
    datapool.run(root / "source", root / "pool", **KW)
    return root / "source", root / "pool"


@pytest.fixture
def pool(made, tmp_path) -> Path:
    shutil.copytree(made[1], tmp_path / "pool")
    return tmp_path / "pool"


def as_newer_wrote_it(pool: Path) -> None:
    """What a datapool of pool format NEWER, which readers of today's format cannot read, leaves:
    its record, a ledger column and a runs.json shape of its own."""
    doc = json.loads((pool / "runs.json").read_text())
    doc.update(
        {
            "pool_format": NEWER,
            "min_reader_pool_format": NEWER,
            "written_by": "datapool 9.1.0",
            "format_version": 2,
            "runs": {"by_index": doc["runs"]},
        }
    )
    (pool / "runs.json").write_text(json.dumps(doc))
    lines = (pool / "ledger.csv").read_text().splitlines()
    lines = [lines[0] + ",lineage"] + [line + ",x" for line in lines[1:]]
    (pool / "ledger.csv").write_text("\n".join(lines) + "\n")


def test_a_commit_records_the_pool_format_and_who_wrote_it(made):
    doc = json.loads((made[1] / "runs.json").read_text())
    assert doc["pool_format"] == pool_format.POOL_FORMAT
    assert doc["min_reader_pool_format"] == pool_format.MIN_READER
    assert doc["written_by"] == f"datapool {datapool.__version__}"
    assert Pool.open(made[1]).written == pool_format.Recorded(
        pool_format.POOL_FORMAT, pool_format.MIN_READER, f"datapool {datapool.__version__}"
    )


@pytest.mark.parametrize("command", ["status", "ls", "run", "export", "merge", "report"])
def test_a_pool_a_newer_datapool_wrote_is_refused_in_one_line(pool, made, command, tmp_path):
    """Before: `status` said 'runs.json: format_version 2 is not one this datapool reads', and a
    newer ledger column alone 'line 1: ledger header must be ...': a pool that looked damaged."""
    as_newer_wrote_it(pool)
    before = tree_digest(pool)
    args = {
        "status": ("status", pool),
        "ls": ("ls", pool),
        "run": ("run", made[0], "--pool", pool, "--model", MODEL, "--n-samples", 3),
        "export": ("export", pool, tmp_path / "out"),
        "merge": ("merge", pool, made[1], "--into", tmp_path / "merged"),
        "report": ("report", pool, "--out", tmp_path / "page.html"),
    }[command]
    r = cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line == (
        f"datapool: error: {pool / 'runs.json'}: this pool was written by datapool 9.1.0 "
        f"(pool format {NEWER}) and needs a datapool that reads pool format {NEWER}; this is "
        f"datapool {datapool.__version__}, which reads pool formats up to "
        f"{pool_format.POOL_FORMAT}: upgrade datapool (`pip install .` in a newer checkout of it)"
    )
    assert tree_digest(pool) == before
    assert not (tmp_path / "merged").exists()


def test_the_refusal_has_its_own_kind_under_json(pool):
    as_newer_wrote_it(pool)
    r = cli("status", pool, "--json")
    error = json.loads(r.stderr.strip().splitlines()[-1])["error"]
    assert (r.returncode, error["kind"], error["exit_code"]) == (2, "pool_too_new", 2)
    with pytest.raises(PoolTooNewError, match=r"written by datapool 9\.1\.0"):
        Pool.open(pool)


def test_a_newer_pool_is_refused_before_its_interrupted_commit_is_replayed(pool):
    """A newer datapool killed after its commit point left a journal (its format may be one this
    datapool cannot read) and a staged runs.json: refused before the replay touches the pool."""
    staged = json.loads((pool / "runs.json").read_text())
    staged["min_reader_pool_format"] = NEWER
    (pool / "runs.json.pending").write_text(json.dumps(staged))
    (pool / ".journal.json").write_text(json.dumps({"journal_v": 9, "entries": "?"}))
    before = tree_digest(pool)
    r = cli("status", pool)
    assert r.returncode == 2 and "needs a datapool that reads pool format" in r.stderr, r.stderr
    assert tree_digest(pool) == before
    with pytest.raises(PoolTooNewError):
        datapool.run(ART / "source", pool, **KW)
    assert tree_digest(pool) == before


def test_a_pool_that_records_a_format_this_datapool_reads_is_read(pool):
    """A later datapool whose minimum reader is this one's format (it added something this one
    may ignore) wrote it: read as any other."""
    doc = json.loads((pool / "runs.json").read_text())
    doc.update({"pool_format": NEWER, "written_by": "datapool 9.1.0", "a_later_field": [1]})
    (pool / "runs.json").write_text(json.dumps(doc))
    r = cli("status", pool)
    assert r.returncode == 0, r.stderr


def test_a_commit_never_lowers_the_minimum_reader(pool, made, tmp_path, monkeypatch, make_media):
    """The files a commit keeps were written for the reader the pool recorded; a run or a merge of
    a datapool whose own minimum is lower records the higher one."""
    # (Relative to today's MIN_READER: since pool format 2, MIN_READER is below POOL_FORMAT.)
    need = pool_format.MIN_READER
    monkeypatch.setattr(pool_format, "MIN_READER", need - 1)
    make_media(tmp_path / "more" / "n.jpg", seed=90)
    fresh = tmp_path / "fresh"
    datapool.run(tmp_path / "more", fresh, **KW)
    assert json.loads((fresh / "runs.json").read_text())["min_reader_pool_format"] == need - 1
    r = cli("merge", fresh, pool, "--into", tmp_path / "merged")
    assert r.returncode == 0, r.stderr
    merged = json.loads((tmp_path / "merged" / "runs.json").read_text())
    assert merged["min_reader_pool_format"] == need
    shutil.copytree(made[0], tmp_path / "source")
    make_media(tmp_path / "source" / "img" / "new.jpg", seed=91)
    datapool.run(tmp_path / "source", pool, source_moved=True, **KW)
    doc = json.loads((pool / "runs.json").read_text())
    assert len(doc["runs"]) == 2 and doc["min_reader_pool_format"] == need


def test_a_pool_in_s3_records_its_format_and_a_newer_one_is_refused_before_a_download(
    s3, new_bucket, made, tmp_path
):
    """The manifest carries the record too, checked before anything else in it: a pool in a
    bucket that a newer datapool wrote is refused by status, run and gc (which would otherwise
    delete blobs by a manifest it cannot read) without a file of it fetched."""
    bucket = new_bucket()
    url = f"s3://{bucket}/pool"
    datapool.run(made[0], url, **KW)
    key = "pool/manifest.json"
    doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (doc["pool_format"], doc["min_reader_pool_format"], doc["written_by"]) == (
        pool_format.POOL_FORMAT,
        pool_format.MIN_READER,
        f"datapool {datapool.__version__}",
    )
    doc.update(
        {"min_reader_pool_format": NEWER, "written_by": "datapool 9.1.0", "format_version": 7}
    )
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
    cache = tmp_path / "datapool-cache"  # (s3_env's DATAPOOL_CACHE_DIR)
    shutil.rmtree(cache, ignore_errors=True)
    for args in (
        ("status", url),
        ("run", made[0], "--pool", url, "--model", MODEL, "--n-samples", 3),
        ("gc", url, "--older-than", "0s"),
    ):
        r = cli(*args)
        assert r.returncode == 2, r.stdout + r.stderr
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith(
            f"datapool: error: {url}/manifest.json: this pool was written by datapool 9.1.0 "
            f"(pool format {pool_format.POOL_FORMAT}) and needs a datapool that reads pool "
            f"format {NEWER}"
        ), line
    assert not cache.exists() or not any(cache.rglob("ledger.csv"))
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="pool/blobs/")["Contents"]
    assert len(listed) == len({p["blob"] for e in doc["files"].values() for p in e["parts"]})


def test_an_unknown_ledger_column_of_a_pool_without_a_record_may_be_a_newer_datapools(pool):
    """Pools written before the record existed: a column this datapool does not know is said as
    such (before: 'ledger header must be key,...,predictions, got key,...,predictions,lineage')."""
    doc = json.loads((pool / "runs.json").read_text())
    for key in ("pool_format", "min_reader_pool_format", "written_by"):
        del doc[key]
    (pool / "runs.json").write_text(json.dumps(doc))
    lines = (pool / "ledger.csv").read_text().splitlines()
    (pool / "ledger.csv").write_text(
        "\n".join([lines[0] + ",lineage"] + [line + ",x" for line in lines[1:]]) + "\n"
    )
    with pytest.raises(PoolCorruptError) as e:
        Pool.open(pool)
    assert str(e.value) == (
        f"{pool / 'ledger.csv'}: line 1: the ledger has columns this datapool does not know "
        f"(lineage; header {','.join(LEDGER_COLUMNS)},lineage); the pool records no pool "
        "format, so a newer datapool may have written it: upgrade datapool (`pip install .` in "
        "a newer checkout of it), or restore the file from a backup or history/"
    )


def test_an_unknown_csv_column_is_named_and_said_against_the_record(pool):
    """The pool CSV with a column after `labels`: the C++ reader's 'header must be ...' becomes
    which column, and, where the pool records a format this datapool reads, not a newer one's."""
    shutil.rmtree(pool / ".sidecar", ignore_errors=True)
    lines = (pool / "datapool_latest.csv").read_text().splitlines()
    (pool / "datapool_latest.csv").write_text(
        "\n".join([lines[0] + ",weight"] + [line + ",1" for line in lines[1:]]) + "\n"
    )
    with pytest.raises(PoolCorruptError) as e:
        Pool.open(pool)
    assert str(e.value).startswith(
        f"{pool / 'datapool_latest.csv'}: line 1: the pool CSV has columns this datapool does "
        f"not know (weight); the pool records datapool {datapool.__version__} (pool format "
        f"{pool_format.POOL_FORMAT}), whose files this datapool reads: edited by hand?"
    )


def test_a_wrong_ledger_header_is_not_taken_for_a_newer_one(pool):
    lines = (pool / "ledger.csv").read_text().splitlines()
    (pool / "ledger.csv").write_text("\n".join([lines[0].replace("size", "bytes"), *lines[1:]]))
    with pytest.raises(PoolCorruptError, match="line 1: ledger header must be key,size,") as e:
        Pool.open(pool)
    assert "newer" not in str(e.value)


# --- the record of each format's shape ------------------------------------------------------------

# What a run writes, per POOL_FORMAT: never edit an entry, add the next one. Pools from before the
# record (tests/test_compat.py's artifacts) have no number: they are read as format 1's.
SHAPES = {
    1: {
        "datapool_latest.csv": "filenames,embedding_0..embedding_{d-1},labels",
        "ledger.csv": "key,size,mtime_ns,run,status,n_samples,n_selected,etag,content_hash,"
        "predictions",
        "model.json": [
            "input_size",
            "legacy_compatible",
            "name",
            "output_dim",
            "settings",
            "sha256",
        ],
        "runs.json": [
            "format_version",
            "min_reader_pool_format",
            "pool_format",
            "runs",
            "written_by",
        ],
        "runs.json format_version": 1,
        "run record": [
            "config",
            "counts",
            "decoder",
            "finished_at",
            "index",
            "model",
            "report",
            "source",
            "started_at",
            "stop_reason",
            "tag",
            "versions",
        ],
        # A new setting a run records changes the format too: an older datapool reads a pool
        # made with it as one made without it (as one before --crops would read crops as
        # whole images). Raise MIN_READER where that is wrong.
        "run config": [
            "batch_size",
            "channels",
            "crop_padding",
            "crops",
            "decode_workers",
            "exclude",
            "export",
            "fps",
            "frame_stride",
            "include",
            "input_size",
            "keep_history",
            "mean",
            "metadata_dir",
            "min_distance",
            "model",
            "model_inputs",
            "n_samples",
            "output_name",
            "pooling",
            "predictions_dir",
            "process_all",
            "proportion_samples",
            "relevant_filenames_file",
            "retry_skipped",
            "selected_sequence_length",
            "source_moved",
            "std",
            "strategies",
            "tag",
            "threads",
        ],
        "manifest.json": [
            "files",
            "format_version",
            "generation",
            "min_reader_pool_format",
            "pool_format",
            "written_by",
        ],
        "manifest.json format_version": 2,
        "strategy_inputs.json version": 1,
        "thumbnails.bin magic": "DPTHUMB1",
    },
}
# Format 2: runs.json's `removals` (`datapool rm`, pool/removal.py). A pool that holds them needs
# a format 2 reader (a format 1 datapool would drop them and let the samples in again); one
# without them is read by format 1 as ever (MIN_READER stays 1).
SHAPES[2] = {
    **SHAPES[1],
    "runs.json after rm": [
        "format_version",
        "min_reader_pool_format",
        "pool_format",
        "removals",
        "runs",
        "written_by",
    ],
    "removal entry": ["at", "files", "names", "reason", "runs", "samples"],
    "forget entry": ["at", "files", "forget", "names", "reason"],
}


# Format 3: runs.json's `decoder_checked` (pool/next_run.py), which a run with nothing new to add
# writes when it checked the files an older decoder read. A format 1 or 2 datapool ignores it (it
# rewrites runs.json without it at its next commit) and checks those files again: that costs it
# the check, never a wrong sample, so MIN_READER stays 1.
SHAPES[3] = {
    **SHAPES[2],
    "runs.json after a check": [
        "decoder_checked",
        "format_version",
        "min_reader_pool_format",
        "pool_format",
        "runs",
        "written_by",
    ],
    "decoder_checked": ["at", "decoder", "through_run"],
}

# Format 4: a removal entry's `sums` (pool/removal.py seal: what `datapool rm` wrote, for
# `datapool verify`). A format 1 to 3 datapool keeps the entry as it reads it (check_removals
# checks only its names and files) and verifies the pool as before, so MIN_READER stays 1.
SHAPES[4] = {
    **SHAPES[3],
    "removal entry": ["at", "files", "names", "reason", "runs", "samples", "sums"],
}


def _after_a_check(pool: Path, source: Path) -> dict:
    """runs.json after a run with nothing new that checked an older decoder's files (its runs
    recording none), on a copy of `pool`."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "pool"
        shutil.copytree(pool, copy)
        doc = json.loads((copy / "runs.json").read_text())
        for run in doc["runs"]:
            del run["decoder"]
        (copy / "runs.json").write_text(json.dumps(doc))
        assert datapool.run(source, copy, **KW).run_index is None
        return json.loads((copy / "runs.json").read_text())


def shape_of(pool: Path, source: Path) -> dict[str, object]:
    """The shape of what a run wrote into `pool` from `source` (and of what an S3 pool's
    manifest would be), and of what `datapool rm` and a run that records a check add."""
    from datapool.pool import inputs, thumbnails
    from datapool.pool.store import remove_samples
    from datapool.s3.manifest import FORMAT_VERSION, Manifest

    runs = json.loads((pool / "runs.json").read_text())
    header = (pool / "datapool_latest.csv").read_text().splitlines()[0].split(",")
    with tempfile.TemporaryDirectory() as tmp:  # what `datapool rm` adds, on a copy
        copy = Path(tmp) / "pool"
        shutil.copytree(pool, copy)
        name = Pool.open(copy).filenames[0]
        remove_samples(copy, [name], reason="shape")
        remove_samples(copy, [name], forget=True)
        after_rm = json.loads((copy / "runs.json").read_text())
    after_check = _after_a_check(pool, source)
    dim = len(header) - 2
    assert header == ["filenames", *(f"embedding_{i}" for i in range(dim)), "labels"]
    return {
        "datapool_latest.csv": "filenames,embedding_0..embedding_{d-1},labels",
        "ledger.csv": (pool / "ledger.csv").read_text().splitlines()[0],
        "model.json": sorted(json.loads((pool / "model.json").read_text())),
        "runs.json": sorted(runs),
        "runs.json format_version": runs["format_version"],
        "run record": sorted(runs["runs"][0]),
        "run config": sorted(runs["runs"][0]["config"]),
        "manifest.json": sorted(json.loads(Manifest().to_bytes())),
        "manifest.json format_version": FORMAT_VERSION,
        "strategy_inputs.json version": inputs.VERSION,
        "thumbnails.bin magic": thumbnails._MAGIC.decode(),
        "runs.json after rm": sorted(after_rm),
        "removal entry": sorted(after_rm["removals"][0]),
        "forget entry": sorted(after_rm["removals"][1]),
        "runs.json after a check": sorted(after_check),
        "decoder_checked": sorted(after_check["decoder_checked"]),
    }


def test_what_a_run_writes_is_the_shape_recorded_for_its_pool_format(made):
    """Fails when what a pool's files hold changes and POOL_FORMAT was not raised with it: raise
    it in python/datapool/pool/format.py, add the new shape to SHAPES (the message prints it),
    and raise MIN_READER to it where a datapool of the format before would refuse or misread the
    change (a new ledger column: it refuses the header; a new setting or field it would ignore
    although it changes what the samples are). A new `--flag` changes the shape too: the record
    of a run's config is part of the pool."""
    now = shape_of(made[1], made[0])
    fmt = pool_format.POOL_FORMAT
    assert max(SHAPES) == fmt, f"POOL_FORMAT is {fmt}, but SHAPES records up to {max(SHAPES)}"
    changed = sorted(k for k in now if now[k] != SHAPES[fmt].get(k))
    assert not changed, (
        f"the pool format changed ({', '.join(changed)}) but POOL_FORMAT is still {fmt}: raise "
        f"it to {fmt + 1} in python/datapool/pool/format.py (and MIN_READER where pool format "
        f"{fmt}'s datapool would refuse or misread the change), then add "
        f"SHAPES[{fmt + 1}] = {json.dumps(now, indent=1)}"
    )
    assert 1 <= pool_format.MIN_READER <= fmt
    shapes = [json.dumps(v, sort_keys=True) for v in SHAPES.values()]
    assert len(set(shapes)) == len(shapes), "two formats of the same shape: one was not a change"


def test_the_version_a_pool_records_is_the_package_version() -> None:
    # "written by datapool X" names the version pyproject.toml installs: the two must agree, or
    # a pool written by a new release says it was written by the old one.
    import re

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"$', text, re.M)
    assert match is not None
    assert match.group(1) == datapool.__version__
