"""`datapool export --tasks coco [--pre-annotate TASK]`: coco.json beside the exported files,
each image by its name in the export with its size as shown, and (with --pre-annotate) each
prediction a COCO annotation whose box, read back in the pixels of the file written (decoded as
a browser shows it: EXIF orientation applied), covers the rectangle drawn there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.errors import ConfigError, SourceError
from datapool.export_tasks import TASK_FILES
from datapool.media import write_image
from datapool.runner.exported import export

from .conftest import run_cli
from .test_crops import TASK, _image, _task
from .test_export_pre_annotate import (
    GREEN,
    LS,
    PREFIX,
    RED,
    _covers,
    _phone_clip,
    _phone_jpeg,
    _shown,
)

COCO = TASK_FILES["coco"]
FRAMES = [f"cam-{t}-mp4.png" for t in range(4)]


@pytest.fixture
def phone(tmp_path: Path) -> Path:
    """A pool of `_phone_jpeg` (EXIF-rotated) and `_phone_clip` (a rotated video) whose task's
    one category has the id 7 in its schema.json."""
    src = tmp_path / "src"
    _task(src)
    schema = {"task_type": "object-detection", "categories": [{"id": 7, "name": "thing"}]}
    (src / ".lightly" / "predictions" / TASK / "schema.json").write_text(json.dumps(schema))
    _phone_jpeg(src)
    _phone_clip(src)
    for f in (src / ".lightly" / "predictions" / TASK).glob("*.json"):
        if f.name != "schema.json":  # (the predictions name the category by its id)
            f.write_text(f.read_text().replace('"category_id": 0', '"category_id": 7'))
    datapool.run(src, tmp_path / "pool", n_samples=10, progress=False)
    return tmp_path / "pool"


def _pixels(ann: dict) -> tuple[int, int, int, int]:
    """A COCO annotation's box as x0, y0, x1, y1 pixels (whole numbers here)."""
    x, y, w, h = ann["bbox"]
    got = tuple(round(c) for c in (x, y, x + w, y + h))
    assert np.allclose((x, y, x + w, y + h), got, atol=1e-6)
    assert ann["area"] == pytest.approx(w * h)
    return got  # type: ignore[return-value]


def check_phone_coco(out: Path, category: int = 7) -> dict:
    """coco.json of an export of the `phone` pool to `out`: each image's size is its file's as
    shown, each box covers its rectangle in that file's pixels; the task's one category has the
    id `category`. The document."""
    doc = json.loads((out / COCO).read_text())
    assert doc["categories"] == [{"id": category, "name": "thing", "supercategory": ""}]
    images = {im["file_name"]: im for im in doc["images"]}
    assert sorted(images) == [*FRAMES, "phone.jpg"]
    assert sorted(im["id"] for im in doc["images"]) == [1, 2, 3, 4, 5]
    boxes: dict[str, list[dict]] = {name: [] for name in images}
    by_id = {im["id"]: name for name, im in images.items()}
    for ann in doc["annotations"]:
        assert (ann["category_id"], ann["iscrowd"], ann["score"]) == (category, 0, 0.9)
        boxes[by_id[ann["image_id"]]].append(ann)
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])

    # The phone JPEG: its bytes as they are (stored 160x120, EXIF orientation 6), shown 120x160
    shown = _shown(out / "phone.jpg")
    assert (images["phone.jpg"]["width"], images["phone.jpg"]["height"]) == (120, 160)
    assert shown.shape[:2] == (160, 120)
    red, green = (_pixels(a) for a in boxes["phone.jpg"])
    assert (red, green) == ((10, 100, 40, 150), (70, 10, 110, 30))
    assert _covers(shown, red, RED) and _covers(shown, green, GREEN)

    # The frames' PNGs, turned as a player shows them (64x96); frame 1's box outside is left
    # out, frame 3 has no predictions file: listed, without annotations
    for t, name in enumerate(FRAMES):
        shown = _shown(out / name)
        assert shown.shape[:2] == (96, 64)
        assert (images[name]["width"], images[name]["height"]) == (64, 96)
        if t == 3:
            assert boxes[name] == []
            continue
        (box,) = (_pixels(a) for a in boxes[name])
        assert box == (8 + 8 * t, 30, 28 + 8 * t, 46)
        assert _covers(shown, box, RED), name
    return doc


def test_coco_boxes_are_in_the_pixels_of_the_exported_pictures(phone, tmp_path):
    out = tmp_path / "out"
    p = run_cli("export", phone, out, "--tasks", "coco", "--pre-annotate", TASK, check=True)
    check_phone_coco(out)
    assert f"tasks     coco: {out / COCO} (5 images)" in p.stdout
    assert "<View>" not in p.stdout  # (no Label Studio tasks: no labelling config)
    assert "1 of 5 pictures without predictions (first: cam-3-mp4.png" in p.stderr
    assert "1 box wholly outside the picture as shown (first in cam-1-mp4.png)" in p.stderr


def test_coco_beside_label_studio_tasks_of_the_same_files(phone, tmp_path):
    out = tmp_path / "out"
    r = export(phone, str(out), tasks=["label-studio", "coco"], url_prefix=PREFIX,
               pre_annotate=TASK)  # fmt: skip
    doc = check_phone_coco(out)
    assert r.label_config is not None and set(r.tasks) == {"label-studio", "coco"}
    tasks = json.loads((out / LS).read_text())
    assert [t["data"]["sample"] for t in tasks] == [im["file_name"] for im in doc["images"]]
    assert sum("without predictions" in w for w in r.warnings) == 1  # (said once)


def test_run_export_writes_the_coco_file_export_writes(tmp_path):
    src = tmp_path / "src"
    _task(src)
    _phone_jpeg(src)
    _phone_clip(src)
    pool, out = tmp_path / "pool", tmp_path / "out"
    p = run_cli("run", src, "--pool", pool, "--n-samples", 10, "--export", out, "--tasks",
                "coco", "--pre-annotate", TASK, check=True)  # fmt: skip
    assert f"tasks     coco: {out / COCO} (5 images)" in p.stdout
    export(pool, str(tmp_path / "again"), tasks=["coco"], pre_annotate=TASK)
    assert (out / COCO).read_bytes() == (tmp_path / "again" / COCO).read_bytes()
    doc = json.loads((out / COCO).read_bytes())
    assert doc["categories"] == [{"id": 0, "name": "thing", "supercategory": ""}]
    assert len(doc["annotations"]) == 5


def test_images_only_crops_and_renamed_names(tmp_path):
    """Without --pre-annotate, coco.json lists the images alone: the names as written (a
    suffixed name, a folder's), a crop selection's crops (not the images that hold them)."""
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for name in ("sub/A.png", "sub/a.png"):
        write_image(src / name, rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    datapool.run(src, tmp_path / "pool", n_samples=10, progress=False)
    r = export(tmp_path / "pool", str(tmp_path / "out"), tasks=["coco"])
    doc = json.loads((tmp_path / "out" / COCO).read_text())
    assert (doc["annotations"], doc["categories"]) == ([], [])
    names = [im["file_name"] for im in doc["images"]]
    assert sorted(names) == sorted(r.written) and len(names) == 2
    assert set(r.renamed.values()) < set(names)  # (one of the two written under a suffix)
    assert all((im["width"], im["height"]) == (70, 50) for im in doc["images"])
    assert all((tmp_path / "out" / n).is_file() for n in names)

    crops = tmp_path / "crops"
    _task(crops)
    _image(crops, "b.png", [([10, 10, 40, 30], RED), ([90, 50, 20, 60], GREEN)])
    datapool.run(crops, tmp_path / "cpool", n_samples=2, crops=TASK, progress=False)
    r = export(tmp_path / "cpool", str(tmp_path / "cout"), tasks=["coco"])
    doc = json.loads((tmp_path / "cout" / COCO).read_text())
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in doc["images"]}
    assert sorted(sizes) == sorted(r.written) and r.images == ["b.png"]
    for name, (w, h) in sizes.items():
        assert _shown(tmp_path / "cout" / name).shape[:2] == (h, w), name
    assert len(sizes) == 2 and (160, 120) not in sizes.values()  # (the crops', not b.png's)


def test_coco_follows_the_export_it_is_beside(phone, tmp_path):
    """As the other tasks files: a later export without --tasks coco removes the folder's
    coco.json (it listed other files); --mirror keeps the one it writes; --run 0 lists run 0's."""
    out = tmp_path / "out"
    export(phone, str(out), tasks=["coco"])
    assert (out / COCO).is_file()
    export(phone, str(out))
    assert not (out / COCO).exists()
    r = export(phone, str(out), tasks=["coco"], mirror=True, run=0)
    assert (out / COCO).is_file() and r.removed == []
    doc = json.loads((out / COCO).read_text())
    assert sorted(im["file_name"] for im in doc["images"]) == sorted(r.written)


@pytest.mark.parametrize(
    ("kw", "error", "says"),
    [
        ({"url_prefix": PREFIX}, ConfigError, r"--url-prefix is used only with --tasks label"),
        ({"pre_annotate": "weather"}, ConfigError, r"classification task, and a COCO file"),
        ({"pre_annotate": "dup"}, SourceError, r"dup/schema.json names the name 'a' twice"),
    ],
)
def test_coco_mistakes_are_refused_before_anything_is_written(phone, tmp_path, kw, error, says):
    d = tmp_path / "src" / ".lightly" / "predictions"
    (d / "tasks.json").write_text(json.dumps([TASK, "weather", "dup"]))
    for task, kind, cats in [
        ("weather", "classification", [{"id": 3, "name": "sunny"}]),
        ("dup", "object-detection", [{"id": 0, "name": "a"}, {"id": 1, "name": "a"}]),
    ]:
        (d / task).mkdir()
        (d / task / "schema.json").write_text(json.dumps({"task_type": kind, "categories": cats}))
    with pytest.raises(error, match=says):
        export(phone, str(tmp_path / "out"), tasks=["coco"], **kw)
    assert not (tmp_path / "out").exists()


def test_run_refuses_a_coco_pre_annotation_it_cannot_write_before_any_work(tmp_path):
    src = tmp_path / "src"
    _task(src, kind="classification")
    _phone_jpeg(src)
    p = run_cli("run", src, "--pool", tmp_path / "pool", "--n-samples", 10, "--export",
                tmp_path / "out", "--tasks", "coco", "--pre-annotate", TASK)  # fmt: skip
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "classification task, and a COCO file carries boxes" in p.stderr
    assert not (tmp_path / "pool").exists() and not (tmp_path / "out").exists()
