"""A COCO file beside an export's files (`datapool export --tasks coco`): the object-detection
JSON that FiftyOne (COCODetectionDataset), CVAT ("COCO 1.0"), Roboflow and most detection
training code read, naming each exported file by its path in the export.

    {"info": {...}, "licenses": [],
     "images": [{"id": 1, "file_name": NAME, "width": W, "height": H}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": C, "bbox": [x, y, w, h],
                      "area": w * h, "iscrowd": 0, "segmentation": [], "score": S}, ...],
     "categories": [{"id": C, "name": NAME, "supercategory": ""}, ...]}

`file_name` is the name the export wrote (a video frame's PNG, a crop's PNG, a name given a
suffix), relative to the export's folder or prefix: give that folder as the images' root
(FiftyOne's `data_path`). `width` and `height` are the picture's as shown: a JPEG's turned by
its EXIF orientation, a video frame's as a player shows it (its PNG is written turned). With
`--pre-annotate TASK` of an object-detection task, each prediction is one annotation, its box in
those pixels, cut to its part inside the picture (a box wholly outside is left out), and its
`score` where the prediction has one; the categories are the task's schema.json categories with
their ids as the schema gives them (0 is a valid COCO id: pycocotools and FiftyOne take it as
it is; training code that keeps 0 for the background remaps the ids). Without `--pre-annotate`,
the file lists the images alone (no annotations, no categories).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from datapool.errors import ConfigError, SourceError

# a prediction as lightly.pre_annotations reads it: category name, box [x, y, w, h] or None
# (a class per picture), score or None (lightly.Labelled; this module stands below lightly)
Labelled = tuple[str, "tuple[float, float, float, float] | None", "float | None"]

COCO_INFO = {"description": "datapool export", "version": "1.0"}


def coco_bytes(
    images: Sequence[tuple[str, tuple[int, int]]],
    categories: Sequence[tuple[int, str]] = (),
    labelled: Mapping[str, Sequence[Labelled]] | None = None,
) -> bytes:
    """The COCO file of `images` = [(file name in the export, (width, height) as shown)], their
    ids 1, 2, ... in that order; with `labelled` (by file name: each prediction's category name,
    box [x, y, w, h] in those pixels, inside the picture, and score), one annotation per box,
    its category id that of its name in `categories` = [(schema id, name)]."""
    id_of = {name: i for i, name in categories}
    out_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (name, (width, height)) in enumerate(images, start=1):
        out_images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for category, box, score in (labelled or {}).get(name, ()):
            if box is None:  # (a classification task: refused before; no box to give)
                continue
            x, y, w, h = box
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": id_of[category],
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [],
            }
            if score is not None:
                ann["score"] = score
            annotations.append(ann)
    doc = {
        "info": COCO_INFO,
        "licenses": [],
        "images": out_images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": ""} for i, n in categories],
    }
    # compact: a COCO file may list many thousand boxes
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def check_coco_task(task: str, kind: str, ids: Sequence[int], categories: Sequence[str]) -> None:
    """Refuse, before anything is written, a --pre-annotate task a COCO file cannot carry: one
    without boxes (ConfigError), or whose schema.json names a category id or name twice (its
    boxes' category_id would not say which category: SourceError)."""
    if kind != "object-detection":
        raise ConfigError(
            f"--pre-annotate {task} is a {kind} task, and a COCO file carries boxes: give an "
            "object-detection task, or drop --tasks coco (Label Studio's tasks take a class "
            "per picture)"
        )
    twice = [c for c in categories if categories.count(c) > 1]
    if twice or len(ids) != len(categories):
        what = f"the name {twice[0]!r}" if twice else "a category id"
        raise SourceError(
            f".lightly/predictions/{task}/schema.json names {what} twice, and a COCO annotation's "
            "category_id must say which category it is: give each category its own id and name"
        )
