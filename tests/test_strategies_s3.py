"""Selection strategies with S3: a pool in a bucket keeps its strategy inputs
(strategy_inputs.json, committed with the manifest), and a source in a bucket gives its
`.lightly/` predictions and metadata. Against moto over HTTP (the fixtures of tests/test_s3.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

import datapool
from datapool.config import SelectionConfig
from datapool.pool.layout import STRATEGY_INPUTS_NAME

from . import test_s3
from .conftest import write_media
from .test_s3 import fetch_s3_pool

# The S3 fixtures of tests/test_s3.py (a moto server of this module's own).
moto_endpoint, s3_env, s3, new_bucket = (
    test_s3.moto_endpoint,
    test_s3.s3_env,
    test_s3.s3,
    test_s3.new_bucket,
)

CATS = [{"id": 0, "name": "car"}, {"id": 1, "name": "person"}, {"id": 2, "name": "bike"}]
ONE_HOT = {"car": [1.0, 0.0, 0.0], "person": [0.0, 1.0, 0.0]}
CLASS_ID = {"car": 0, "person": 1}


def _put(root: Path, rel: str, doc: object) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc))


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
        cols, classes = session.strategy_inputs(["a_car0.jpg", "b_person.jpg", "c_car.jpg"])
    key = "predictions:cls:CLASS_DISTRIBUTION"
    assert classes[key] == ["car", "person"]
    assert cols[key].tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]

    # --process-all rebuilds the pool: the inputs are this run's only.
    rebuilt = datapool.run(src, pool, n_samples=1, strategies=BALANCE, process_all=True)
    assert set(_stored(s3, bucket, tmp_path)) == set(rebuilt.selected)
