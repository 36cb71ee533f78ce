"""Selection strategies with S3: a pool in a bucket keeps its strategy inputs
(strategy_inputs.json, committed with the manifest), and a source in a bucket gives its
`.lightly/` predictions and metadata. Against moto over HTTP (the fixtures of tests/test_s3.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datapool
from datapool import Pool
from datapool.config import SelectionConfig
from datapool.pool.layout import STRATEGY_INPUTS_NAME

from . import test_s3
from ._s3 import S3_FIXTURES
from .conftest import write_media
from .test_s3 import fetch_s3_pool
from .test_strategies_e2e import CATS, _put

# The S3 fixtures of tests/test_s3.py (a moto server of this module's own).
moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES

ONE_HOT = {"car": [1.0, 0.0, 0.0], "person": [0.0, 1.0, 0.0]}
CLASS_ID = {"car": 0, "person": 1}


def _classified(root: Path, name: str, cls: str, seed: int) -> None:
    """An image and its classification prediction (task "cls", one-hot)."""
    write_media(root / name, seed=seed)
    _put(
        root,
        f".lightly/predictions/cls/{name.rsplit('.', 1)[0]}.json",
        {
            "file_name": name,
            "predictions": [{"category_id": CLASS_ID[cls], "probabilities": ONE_HOT[cls]}],
        },
    )


def _lightly_schema(root: Path) -> None:
    _put(root, ".lightly/predictions/tasks.json", ["cls"])
    _put(
        root,
        ".lightly/predictions/cls/schema.json",
        {"task_type": "classification", "categories": CATS},
    )


BALANCE = SelectionConfig.from_lightly(
    {
        "n_samples": 1,
        "strategies": [
            {
                "input": {"type": "PREDICTIONS", "task": "cls", "name": "CLASS_DISTRIBUTION"},
                "strategy": {"type": "BALANCE", "target": {"car": 0.5, "person": 0.5}},
            }
        ],
    }
).strategies


def _stored(s3, bucket: str, tmp_path: Path, prefix: str = "pool/") -> dict:
    dest = tmp_path / f"fetched-{len(list(tmp_path.iterdir()))}"
    fetch_s3_pool(s3, bucket, prefix, dest)
    return json.loads((dest / STRATEGY_INPUTS_NAME).read_text())["samples"]


def test_balance_on_a_bucket_pool_counts_the_classes_of_earlier_runs(
    s3, new_bucket, tmp_path: Path
) -> None:
    """The first run adds two cars to a pool in a bucket; the second must count them and pick
    the person (without the pool's counts, car and person tie and the car, first, wins)."""
    bucket = new_bucket()
    pool = f"s3://{bucket}/pool"
    src = tmp_path / "src"
    _lightly_schema(src)
    _classified(src, "a_car0.jpg", "car", seed=1)
    _classified(src, "a_car1.jpg", "car", seed=2)
    first = datapool.run(src, pool, n_samples=2, strategies=BALANCE, progress=False)
    assert sorted(first.selected) == ["a_car0.jpg", "a_car1.jpg"]
    stored = _stored(s3, bucket, tmp_path)
    assert set(stored) == {"a_car0.jpg", "a_car1.jpg"}
    assert stored["a_car0.jpg"]["predictions:cls:CLASS_DISTRIBUTION"] == {"car": 1.0}

    _classified(src, "b_car.jpg", "car", seed=3)
    _classified(src, "b_person.jpg", "person", seed=4)
    second = datapool.run(src, pool, n_samples=1, strategies=BALANCE, progress=False)
    assert second.selected == ["b_person.jpg"]
    (balance,) = second.balance  # the shares against the target, in the result and the report
    assert balance["strategy"] == "BALANCE(PREDICTIONS:cls:CLASS_DISTRIBUTION)"
    shares = {c["class"]: c for c in balance["classes"]}
    assert shares["car"] == {
        "class": "car",
        "target": 0.5,
        "pool_before": 1.0,
        "picked": 0.0,
        "pool_after": pytest.approx(2 / 3, abs=1e-6),
        "count_after": 2.0,
    }
    assert shares["person"]["picked"] == 1.0 and shares["bike"]["target"] == 0.0
    fetched = tmp_path / "fetched-report"
    fetch_s3_pool(s3, bucket, "pool/", fetched)
    report = json.loads((fetched / "runs" / "1" / "report.json").read_text())
    assert report["balance"] == second.balance
    assert set(_stored(s3, bucket, tmp_path)) == {"a_car0.jpg", "a_car1.jpg", "b_person.jpg"}

    # A run without strategies keeps the file; a fresh local copy (another machine) reads it.
    _classified(src, "c_car.jpg", "car", seed=5)
    datapool.run(src, pool, n_samples=1, keep_history=True, progress=False)
    stored = _stored(s3, bucket, tmp_path)
    assert set(stored) == {"a_car0.jpg", "a_car1.jpg", "b_person.jpg"}
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="pool/manifest.json")["Body"].read())
    assert any(k.endswith(f"/{STRATEGY_INPUTS_NAME}") for k in manifest["files"])  # history/
    from datapool.s3.store import S3Store

    with S3Store(pool).session() as session:
        # The copy lost its file since the session synced (another run on this host, a disk
        # fault): the session reads the committed bytes from the bucket.
        (session.cache.pool_dir / STRATEGY_INPUTS_NAME).unlink()
        cols, classes = session.strategy_inputs(["a_car0.jpg", "b_person.jpg", "c_car.jpg"])
    key = "predictions:cls:CLASS_DISTRIBUTION"
    assert classes[key] == ["car", "person"]
    assert cols[key].tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]

    # --process-all rebuilds the pool: the inputs are this run's only.
    rebuilt = datapool.run(src, pool, n_samples=1, strategies=BALANCE, process_all=True)
    assert set(_stored(s3, bucket, tmp_path)) == set(rebuilt.selected)


def _metadata(root: Path, name: str, lightness: float) -> None:
    _put(
        root,
        ".lightly/metadata/schema.json",
        [
            {
                "name": "lightness",
                "path": "lightness",
                "defaultValue": 0.0,
                "valueDataType": "NUMERIC_FLOAT",
            }
        ],
    )
    _put(
        root,
        f".lightly/metadata/{name.rsplit('.', 1)[0]}.json",
        {"file_name": name, "type": "image", "metadata": {"lightness": lightness}},
    )


UNCERTAIN_AND_BRIGHT = SelectionConfig.from_lightly(
    {
        "n_samples": 10,
        "strategies": [
            {
                "input": {"type": "SCORES", "task": "cls", "score": "uncertainty_entropy"},
                "strategy": {"type": "WEIGHTS"},
            },
            {
                "input": {"type": "METADATA", "key": "lightness"},
                "strategy": {"type": "THRESHOLD", "threshold": 0.5, "operation": "BIGGER"},
            },
            {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
        ],
    }
).strategies


def _bright_and_dark(root: Path) -> dict[str, list[float]]:
    """Six images: three bright (lightness > 0.5), three dark, each with soft predictions; and
    a seventh that the runs leave out (--exclude) whose files are malformed: never read."""
    _lightly_schema(root)
    probs = {}
    for i in range(6):
        name = f"img{i}.jpg"
        write_media(root / name, seed=10 + i)
        p = [0.2 + 0.1 * i, 0.5 - 0.05 * i, 0.3 - 0.05 * i]
        probs[name] = p
        _put(
            root,
            f".lightly/predictions/cls/img{i}.json",
            {"file_name": name, "predictions": [{"category_id": 0, "probabilities": p}]},
        )
        _metadata(root, name, 0.9 if i % 2 else 0.1)
    write_media(root / "left_out.jpg", seed=40)
    (root / ".lightly/predictions/cls/left_out.json").write_text("{oops")
    (root / ".lightly/metadata/left_out.json").write_text("{oops")
    return probs


def _report(res: datapool.RunResult) -> dict:
    return json.loads(Path(res.report_path).read_text())


def _check_uncertain_and_bright(res: datapool.RunResult, rep: dict, probs: dict) -> None:
    from datapool.scores import classification_score

    assert sorted(res.selected) == ["img1.jpg", "img3.jpg", "img5.jpg"]  # the bright ones
    for pick in rep["selected"]:
        want = classification_score("uncertainty_entropy", probs[pick["filename"]])
        got = pick["strategies"]["WEIGHTS(SCORES:cls:uncertainty_entropy)"]
        assert got == pytest.approx(want)


def test_lightly_predictions_and_metadata_from_an_s3_source(s3, new_bucket, tmp_path: Path) -> None:
    bucket = new_bucket()
    probs = _bright_and_dark(tmp_path / "src")
    test_s3.upload(s3, tmp_path / "src", bucket, "raw/")
    res = datapool.run(
        f"s3://{bucket}/raw",
        tmp_path / "pool",
        n_samples=10,
        strategies=UNCERTAIN_AND_BRIGHT,
        exclude=("left_out.jpg",),
        progress=False,
    )
    _check_uncertain_and_bright(res, _report(res), probs)


def test_predictions_and_metadata_folders_elsewhere(s3, new_bucket, tmp_path: Path) -> None:
    """--predictions in a local folder for an S3 source; --metadata in a bucket for a local
    source: each read instead of the source's own .lightly/ (which here has none or is wrong)."""
    bucket = new_bucket()
    probs = _bright_and_dark(tmp_path / "src")
    lightly = tmp_path / "src" / ".lightly"
    (lightly / "predictions").rename(tmp_path / "preds")
    test_s3.upload(s3, lightly / "metadata", bucket, "meta/")
    (lightly / "metadata" / "schema.json").write_text("{oops")  # not read: --metadata wins
    test_s3.upload(s3, tmp_path / "src", bucket, "raw/")
    res = datapool.run(
        tmp_path / "src",
        tmp_path / "pool",
        n_samples=10,
        strategies=UNCERTAIN_AND_BRIGHT,
        exclude=("left_out.jpg",),
        predictions_dir=str(tmp_path / "preds"),
        metadata_dir=f"s3://{bucket}/meta",
        progress=False,
    )
    _check_uncertain_and_bright(res, _report(res), probs)


@pytest.mark.parametrize("flag", ["--predictions", "--metadata"])
def test_a_missing_predictions_or_metadata_folder_is_one_line(
    s3, new_bucket, tmp_path: Path, flag: str
) -> None:
    from .conftest import run_cli

    bucket = new_bucket()
    src = tmp_path / "src"
    write_media(src / "img0.jpg", seed=1)
    for where in (str(tmp_path / "nowhere"), f"s3://{bucket}/nowhere"):
        r = run_cli("run", src, "--pool", tmp_path / "pool", "--n-samples", "1", flag, where)
        assert r.returncode == 4, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and flag in lines[0] and where in lines[0], r.stderr


def test_read_bytes_of_both_sources(s3, new_bucket, tmp_path: Path) -> None:
    from datapool.sources import open_source

    bucket = new_bucket()
    root = tmp_path / "src" / "in"
    _put(root, ".lightly/metadata/schema.json", [])
    (tmp_path / "src" / "outside.json").write_text("secret")
    test_s3.upload(s3, root, bucket, "raw/")
    for spec in (str(root), f"s3://{bucket}/raw"):
        src = open_source(spec)
        assert src.read_bytes(".lightly/metadata/schema.json") == b"[]"
        assert src.read_bytes(".lightly/metadata/none.json") is None
    local = open_source(str(root))
    assert local.read_bytes("../outside.json") is None  # never read outside the folder
    assert local.read_bytes(str(tmp_path / "src" / "outside.json")) is None


def test_list_files_of_both_sources(s3, new_bucket, tmp_path: Path) -> None:
    """Source.list_files: the files under a folder, hidden ones included, by their keys, with
    the version a listing gives (an S3 object's ETag, the MD5 of a single-part upload; "" for
    a local file); nothing for a folder that is not there, and never outside the source."""
    import hashlib

    from datapool.sources import open_source

    bucket = new_bucket()
    root = tmp_path / "src" / "in"
    _put(root, ".lightly/predictions/od/a.json", {"predictions": []})
    _put(root, ".lightly/predictions/od/cam/clip-1-mp4.json", {"predictions": []})
    _put(root, ".lightly/predictions/other/b.json", {"predictions": []})
    (tmp_path / "src" / "outside.json").write_text("secret")
    test_s3.upload(s3, root, bucket, "raw/")
    want = [".lightly/predictions/od/a.json", ".lightly/predictions/od/cam/clip-1-mp4.json"]
    md5 = hashlib.md5((root / want[0]).read_bytes()).hexdigest()
    for spec in (str(root), f"s3://{bucket}/raw"):
        src = open_source(spec)
        for prefix in (".lightly/predictions/od", ".lightly/predictions/od/"):
            found = src.list_files(prefix)
            assert sorted(found) == want
        assert found[want[0]] == ("" if spec == str(root) else md5)
        assert src.list_files(".lightly/predictions/none") == {}
    assert open_source(str(root)).list_files("..") == {}


def test_crop_selection_from_a_bucket_into_a_bucket_pool_and_exported_again(
    s3, new_bucket, tmp_path: Path
) -> None:
    """Crop selection reads the boxes from the source bucket's .lightly/, cuts the crops from
    the objects it downloads, stores each crop's pixels with the bucket pool, and `datapool
    export` cuts them again from those."""
    import numpy as np

    from .test_crops import TASK, _image, _png, _task
    from .test_s3 import upload

    bucket = new_bucket()
    local = tmp_path / "src"
    _task(local)
    _image(local, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    upload(s3, local, bucket, "raw/")
    r = datapool.run(
        f"s3://{bucket}/raw/", f"s3://{bucket}/pool", n_samples=2, crops=TASK, crop_padding=0.0
    )
    assert sorted(r.selected) == ["a-png-crop-0.png", "a-png-crop-1.png"]
    stored = _stored(s3, bucket, tmp_path)
    assert stored["a-png-crop-1.png"] == {"crop:box": [90, 60, 150, 110]}
    from datapool.export import export_pool

    out = tmp_path / "out"
    result = export_pool(f"s3://{bucket}/pool", str(out), all_runs=True)
    assert sorted(result.written) == ["a-png-crop-0.png", "a-png-crop-1.png"]
    assert result.images == ["a.png"] and not result.refused
    assert (_png(out / "a-png-crop-1.png") == (0, 255, 0)).all()
    assert _png(out / "a-png-crop-0.png").shape[:2] == (40, 50)
    assert np.array_equal(_png(out / "a.png"), _png(local / "a.png"))


def test_crop_selection_from_a_bucket_re_cuts_an_image_whose_predictions_object_changed(
    s3, new_bucket, tmp_path: Path
) -> None:
    """A predictions object rewritten in the bucket (a box gone) is seen by the next run into a
    bucket pool: its image is cut again and its old crops leave the pool."""
    from .test_crops import TASK, _boxes, _image, _task
    from .test_s3 import upload

    bucket = new_bucket()
    local = tmp_path / "src"
    _task(local)
    _image(local, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    _image(local, "b.png", [([5, 5, 30, 30], (0, 0, 255))])
    upload(s3, local, bucket, "raw/")
    src, pool = f"s3://{bucket}/raw/", f"s3://{bucket}/pool"
    assert len(datapool.run(src, pool, n_samples=5, crops=TASK).selected) == 3
    assert datapool.run(src, pool, n_samples=5, crops=TASK).run_index is None
    _boxes(local, "a.png", [[20, 10, 50, 40]])
    key = f"raw/.lightly/predictions/{TASK}/a.json"
    s3.put_object(Bucket=bucket, Key=key, Body=(local / key[4:]).read_bytes())
    r = datapool.run(src, pool, n_samples=5, crops=TASK)
    assert (
        r.counts["recut"] == 1 and r.counts["removed"] == 2 and r.selected == ["a-png-crop-0.png"]
    )
    assert r.counts["pool_size"] == 2
    assert datapool.run(src, pool, n_samples=5, crops=TASK).run_index is None


def test_a_second_crop_run_on_an_unchanged_bucket_gets_no_predictions_object(
    s3, s3_env, new_bucket, tmp_path: Path
) -> None:
    """A crop run knows each image's and each video frame's predictions object by its ETag in
    one listing of the task's prefix: a run on an unchanged bucket GETs none of them (before,
    one GET per image on every run: 3 here), and a rewritten frame's object is still seen."""
    from datapool.naming import frame_name

    from .test_crops import COLOURS, TASK, _boxes, _clip, _image, _task
    from .test_s3 import FaultProxy, upload

    bucket = new_bucket()
    local = tmp_path / "src"
    _task(local)
    for i, name in enumerate(("a.png", "b.png", "sub/c.png")):
        _image(local, name, [([10 + 20 * i, 10, 30, 30], COLOURS[i])])
    _clip(local)
    upload(s3, local, bucket, "raw/")
    src, pool = f"s3://{bucket}/raw/", f"s3://{bucket}/pool"
    assert len(datapool.run(src, pool, n_samples=20, crops=TASK).selected) == 7
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        r = datapool.run(src, pool, n_samples=20, crops=TASK, s3_endpoint_url=proxy.url)
    assert r.run_index is None
    got = [p for m, p in proxy.seen if m == "GET" and "/.lightly/predictions/" in p]
    assert got == []
    lists = [p for m, p, *_ in proxy.traffic if m == "GET" and "list-type=2" in p]
    assert sum("predictions" in p for p in lists) == 1  # the task's prefix, listed once
    frame = f".lightly/predictions/{TASK}/{frame_name('cam/clip.mp4', 1, 6)[:-4]}.json"
    _boxes(local, frame_name("cam/clip.mp4", 1, 6), [[0, 0, 8, 8]])
    s3.put_object(Bucket=bucket, Key="raw/" + frame, Body=(local / frame).read_bytes())
    r = datapool.run(src, pool, n_samples=20, crops=TASK)
    assert r.counts["recut"] == 1 and r.counts["removed"] == 4


def test_predictions_known_by_their_bytes_then_by_their_etags_are_not_cut_again(
    s3, s3_env, new_bucket, tmp_path: Path
) -> None:
    """A pool whose ledger knows the predictions files by their bytes' hash (a folder's, or a
    bucket's before ETags were recorded), read from a bucket now: each file is read once to
    compare, the same ones are not cut again (a changed one is), and that run records their
    ETags (though it adds nothing), so the next run GETs none. Back in a folder, files known by their ETags (MD5s) are the
    same bytes too."""
    from .test_crops import COLOURS, TASK, _boxes, _image, _task
    from .test_s3 import FaultProxy, upload

    bucket = new_bucket()
    local = tmp_path / "src"
    _task(local)
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        _image(local, name, [([10 + 20 * i, 10, 30, 30], COLOURS[i])])
    pool = tmp_path / "pool"
    assert len(datapool.run(local, pool, n_samples=9, crops=TASK).selected) == 3
    upload(s3, local / ".lightly" / "predictions", bucket, "preds/")
    preds = f"s3://{bucket}/preds"
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        r = datapool.run(
            local, pool, n_samples=9, crops=TASK, predictions_dir=preds, s3_endpoint_url=proxy.url
        )
    assert r.run_index is None and "recut" not in r.counts
    assert len([p for m, p in proxy.seen if m == "GET" and f"/{TASK}/" in p]) == 3
    # Recorded by that run, which added nothing: before, only a run that committed recorded
    # them, and every run until then GOT each file again.
    assert r.counts["predictions_recorded"] == 3 and len(Pool.open(pool).runs) == 1
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        r = datapool.run(
            local, pool, n_samples=9, crops=TASK, predictions_dir=preds, s3_endpoint_url=proxy.url
        )
    assert r.run_index is None and "predictions_recorded" not in r.counts
    assert [p for m, p in proxy.seen if m == "GET" and f"/{TASK}/" in p] == []
    _boxes(local, "b.png", [[0, 0, 8, 8]])
    s3.put_object(
        Bucket=bucket,
        Key=f"preds/{TASK}/b.json",
        Body=(local / f".lightly/predictions/{TASK}/b.json").read_bytes(),
    )
    r = datapool.run(local, pool, n_samples=9, crops=TASK, predictions_dir=preds)
    assert r.counts["recut"] == 1 and r.counts["removed"] == 1
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        r = datapool.run(
            local, pool, n_samples=9, crops=TASK, predictions_dir=preds, s3_endpoint_url=proxy.url
        )
    assert r.run_index is None
    assert [p for m, p in proxy.seen if m == "GET" and f"/{TASK}/" in p] == []
    ledger = datapool.Pool.load(pool).ledger.set_index("key")["predictions"]
    assert all(v.startswith("etag:") for v in ledger.tolist()), ledger
    r = datapool.run(local, pool, n_samples=9, crops=TASK)  # the folder's files: the same bytes
    assert r.run_index is None and "recut" not in r.counts


def test_lightly_sharpness_of_objects_from_a_bucket(s3, new_bucket, tmp_path: Path) -> None:
    """Lightly's blur threshold (lightly.sharpness BIGGER 20) on a bucket source, whose objects
    the decoders read as file objects: measured as Lightly reads the files (Pillow)."""
    from PIL import Image

    from .test_lightly_metadata import _blurred, _textured, lightly_sharpness
    from .test_s3 import upload

    bucket = new_bucket()
    local = tmp_path / "src"
    local.mkdir()
    for i in range(2):
        pic = _textured(i, 240, 320)
        Image.fromarray(pic).save(local / f"sharp{i}.jpg", quality=90)
        Image.fromarray(_blurred(pic)).save(local / f"blurred{i}.jpg", quality=90)
    upload(s3, local, bucket, "raw/")
    sel = SelectionConfig.from_lightly(
        {
            "n_samples": 4,
            "strategies": [
                {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
                {
                    "input": {"type": "METADATA", "key": "lightly.sharpness"},
                    "strategy": {"type": "THRESHOLD", "threshold": 20, "operation": "BIGGER"},
                },
            ],
        }
    )
    r = datapool.run(
        f"s3://{bucket}/raw/", f"s3://{bucket}/pool", strategies=sel.strategies, n_samples=4
    )
    assert sorted(r.selected) == ["sharp0.jpg", "sharp1.jpg"]
    stored = _stored(s3, bucket, tmp_path)
    for name, values in stored.items():
        with Image.open(local / name) as img:
            expected = lightly_sharpness(img)
        assert values["metadata:lightly.sharpness"] == pytest.approx(expected, rel=1e-12)
