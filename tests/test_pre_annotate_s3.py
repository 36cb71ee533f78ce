"""`--pre-annotate TASK` from an S3 source (moto over HTTP): the images and `.lightly/predictions`
in the bucket, the export in a folder or in the bucket; each task's boxes are mapped back to the
pixels of the file the export wrote, as tests/test_export_pre_annotate.py checks a folder's."""

from __future__ import annotations

import json

import datapool
from datapool.runner.exported import export

from ._s3 import S3_FIXTURES
from .test_crops import TASK, _boxes, _task
from .test_export_coco import COCO, check_phone_coco
from .test_export_pre_annotate import (
    LS,
    PREFIX,
    _phone_clip,
    _phone_jpeg,
    check_phone_tasks,
)
from .test_s3 import upload

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES


def _phone_bucket(s3, new_bucket, tmp_path) -> str:
    """A bucket whose raw/ holds the phone JPEG and clip and their .lightly/predictions."""
    src = tmp_path / "src"
    _task(src)
    _phone_jpeg(src)
    _phone_clip(src)
    bucket = new_bucket()
    upload(s3, src, bucket)
    return bucket


def test_pre_annotations_of_an_s3_source(s3, new_bucket, tmp_path):
    bucket = _phone_bucket(s3, new_bucket, tmp_path)
    pool = tmp_path / "pool"
    datapool.run(f"s3://{bucket}/raw/", pool, n_samples=10, progress=False)
    out = tmp_path / "out"
    r = export(pool, str(out), tasks=["label-studio"], url_prefix=PREFIX, pre_annotate=TASK)
    assert r.refused == [] and r.label_config is not None
    tasks = check_phone_tasks(out, "\n".join(r.warnings))

    # Into the bucket too, the tasks naming the objects; the same predictions
    r = export(pool, f"s3://{bucket}/ls/", tasks=["label-studio"], pre_annotate=TASK)
    in_bucket = json.loads(s3.get_object(Bucket=bucket, Key=f"ls/{LS}")["Body"].read())
    assert {t["data"]["sample"]: t.get("predictions") for t in in_bucket} == {
        s: t.get("predictions") for s, t in tasks.items()
    }
    assert {t["data"]["image"] for t in in_bucket} == {f"s3://{bucket}/ls/{s}" for s in tasks}
    # A COCO file beside them: the same boxes as a folder's, naming the files by their keys
    # under the prefix
    export(pool, str(tmp_path / "c"), tasks=["coco"], pre_annotate=TASK)
    local = check_phone_coco(tmp_path / "c", category=0)
    r = export(pool, f"s3://{bucket}/ls/", tasks=["label-studio", "coco"], pre_annotate=TASK)
    assert r.tasks["coco"] == f"s3://{bucket}/ls/{COCO}"
    assert json.loads(s3.get_object(Bucket=bucket, Key=f"ls/{COCO}")["Body"].read()) == local
    r = export(pool, f"s3://{bucket}/ls/")  # (a prefix only grows: the stale file is named)
    assert any(
        w.startswith(f"s3://{bucket}/ls/{COCO} is from an earlier export") for w in r.warnings
    )
    # --predictions s3://...: the same
    preds = f"s3://{bucket}/raw/.lightly/predictions/"
    export(pool, str(tmp_path / "o2"), tasks=["label-studio"], url_prefix=PREFIX,
           pre_annotate=TASK, predictions_dir=preds)  # fmt: skip
    assert (tmp_path / "o2" / LS).read_bytes() == (out / LS).read_bytes()


def test_run_export_pre_annotates_from_an_s3_source(s3, new_bucket, tmp_path):
    """`run --export --pre-annotate` of an S3 source reads the predictions in the bucket (or in
    --predictions s3://...), as `datapool export` does."""
    bucket = _phone_bucket(s3, new_bucket, tmp_path)
    out = tmp_path / "out"
    r = datapool.run(
        f"s3://{bucket}/raw/", tmp_path / "pool", n_samples=10, progress=False,
        predictions_dir=f"s3://{bucket}/raw/.lightly/predictions", export=str(out),
        export_tasks=("label-studio",), export_url_prefix=PREFIX, export_pre_annotate=TASK,
    )  # fmt: skip
    assert r.export is not None and r.export.refused == []
    check_phone_tasks(out, "\n".join(r.export.warnings))


def test_a_predictions_file_naming_an_unlisted_object_is_asked_with_a_head(
    s3, s3_env, new_bucket, tmp_path
):
    """`a.json`'s file_name names `a.png`, which the run's --include left out (so the pool
    never listed it): the export asks the bucket whether a.png is there, and gives a.jpg no
    prediction (tests/test_export_pre_annotate.py checks the same of a folder). It used to GET
    the whole object for that; now one HEAD, and no byte of a.png is read."""
    from datapool.config import RunConfig

    from .test_crops import _image
    from .test_export_pre_annotate import GREEN, RED
    from .test_s3 import FaultProxy

    src = tmp_path / "src"
    _task(src)
    _image(src, "a.png", [([10, 10, 30, 20], RED)])
    _image(src, "a.jpg", [([60, 50, 30, 20], GREEN)])
    _boxes(src, "a.png", [[10, 10, 30, 20]])  # (a.json, its file_name a.png)
    bucket = new_bucket()
    upload(s3, src, bucket)
    pool = tmp_path / "pool"
    datapool.run(f"s3://{bucket}/raw/", pool, n_samples=1, include=("*.jpg",), progress=False)
    with FaultProxy(s3_env, seed=0, p=0.0) as proxy:
        cfg = RunConfig(n_samples=1, s3_endpoint_url=proxy.url)
        r = export(pool, str(tmp_path / "out"), config=cfg, tasks=["label-studio"],
                   url_prefix=PREFIX, pre_annotate=TASK)  # fmt: skip
    assert r.written == ["a.jpg"]
    (task,) = json.loads((tmp_path / "out" / LS).read_text(encoding="utf-8"))
    assert "predictions" not in task, task
    assert any("1 of 1 task without predictions" in w and "a.png" in w for w in r.warnings)
    asked = [(m, p.split("?")[0]) for m, p, _, _, _ in proxy.traffic if "a.png" in p]
    assert asked == [("HEAD", f"/{bucket}/raw/a.png")], asked
