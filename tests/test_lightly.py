"""The readers of Lightly's .lightly/predictions and .lightly/metadata files (datapool/lightly.py),
on files a user migrating from the Lightly Worker writes, read through a dict-backed reader."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from datapool.errors import SourceError
from datapool.lightly import missing_notes, strategy_columns
from datapool.strategies import Scores, SelectionStrategy, Weights

CATS = [{"id": 0, "name": "car"}, {"id": 1, "name": "person"}, {"id": 2, "name": "bike"}]
MARGIN = SelectionStrategy(Scores("cls", "uncertainty_margin"), Weights())


def _reader(files: dict[str, Any]):
    def read(path: str) -> bytes | None:
        doc = files.get(path)
        return (
            None if doc is None else (doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        )

    return read


def _cls(**samples: Any) -> dict[str, Any]:
    files: dict[str, Any] = {
        ".lightly/predictions/tasks.json": ["cls"],
        ".lightly/predictions/cls/schema.json": {"task_type": "classification", "categories": CATS},
    }
    for stem, preds in samples.items():
        files[f".lightly/predictions/cls/{stem}.json"] = {
            "file_name": f"{stem}.jpg",
            "predictions": preds,
        }
    return files


@pytest.mark.parametrize(
    "probs",
    [[math.nan, 0.5, 0.5], [-0.5, 0.9, 0.6], [5.0, 3.0, 2.0], [0.2, 0.2, 0.2], ["0.8", 0.1, 0.1]],
    ids=["nan", "negative", "logits", "sum-0.6", "string"],
)
def test_probabilities_that_are_not_a_distribution_name_the_file(probs: list) -> None:
    files = _cls(a=[{"category_id": 0, "probabilities": [0.8, 0.1, 0.1]}])
    files[".lightly/predictions/cls/b.json"] = json.dumps(
        {"file_name": "b.jpg", "predictions": [{"category_id": 0, "probabilities": probs}]}
    ).encode()  # json.dumps writes NaN as NaN, as Python's json reads it
    with pytest.raises(SourceError, match=r"cls/b\.json: probabilities must be numbers in 0\.\.1"):
        strategy_columns(_reader(files), [MARGIN], ["a.jpg", "b.jpg"])


def test_rounded_probabilities_are_accepted() -> None:
    files = _cls(a=[{"category_id": 0, "probabilities": [0.33, 0.33, 0.33]}])
    cols, _, _ = strategy_columns(_reader(files), [MARGIN], ["a.jpg"])
    assert cols["scores:cls:uncertainty_margin"][0] == pytest.approx(1.0)


def test_an_empty_classification_has_no_score_not_a_confident_one() -> None:
    files = _cls(a=[], b=[{"category_id": 1}])
    cols, _, missing = strategy_columns(_reader(files), [MARGIN], ["a.jpg", "b.jpg"])
    score = cols["scores:cls:uncertainty_margin"]
    assert np.isnan(score[0]) and score[1] == 0.0  # b: one-hot, certain
    assert missing == [{"sample": "a.jpg", "reason": "empty predictions for task 'cls'"}]
    (note,) = missing_notes(missing, 2)
    assert note.startswith("1 of 2 candidates has empty predictions for task 'cls'")
    assert ".lightly/predictions/cls/a.json lists none" in note
    assert "without a value it passes no THRESHOLD and gets no weight" in note
    assert note.endswith("the report lists it (strategy_inputs_missing)")


def test_a_category_id_written_as_a_string_says_so() -> None:
    files = _cls(a=[{"category_id": "1", "probabilities": [0.2, 0.6, 0.2]}])
    with pytest.raises(SourceError, match=r"a\.json: category_id must be an integer id .*got '1'"):
        strategy_columns(_reader(files), [MARGIN], ["a.jpg"])


def test_a_detection_score_outside_0_1_names_the_file() -> None:
    files = _cls()
    files[".lightly/predictions/cls/schema.json"]["task_type"] = "object-detection"
    files[".lightly/predictions/cls/a.json"] = {
        "file_name": "a.jpg",
        "predictions": [{"category_id": 0, "bbox": [0, 0, 1, 1], "score": 7}],
    }
    sel = SelectionStrategy(Scores("cls", "objectness_least_confidence"), Weights())
    with pytest.raises(SourceError, match=r"a\.json: score must be a number in 0\.\.1, got 7"):
        strategy_columns(_reader(files), [sel], ["a.jpg"])


def test_the_schema_key_of_lightlys_older_docs_is_read() -> None:
    files = _cls(a=[{"category_id": 0, "probabilities": [0.6, 0.3, 0.1]}])
    files[".lightly/predictions/cls/schema.json"] = {
        "task_description": "classification",
        "categories": CATS,
    }
    cols, _, _ = strategy_columns(_reader(files), [MARGIN], ["a.jpg"])
    assert cols["scores:cls:uncertainty_margin"][0] == pytest.approx(0.7)


def test_a_metadata_field_on_only_some_samples_without_a_default_is_missing() -> None:
    from datapool.strategies import Metadata, Threshold

    files = {
        ".lightly/metadata/schema.json": [
            {"name": "lux", "path": "light.lux", "valueDataType": "NUMERIC_FLOAT"}
        ],
        ".lightly/metadata/a.json": {"file_name": "a.jpg", "type": "image", "metadata": {}},
        ".lightly/metadata/b.json": {
            "file_name": "b.jpg",
            "type": "image",
            "metadata": {"light": {"lux": 3}},
        },
    }
    sel = SelectionStrategy(Metadata("lux"), Threshold(1.0, "BIGGER"))
    cols, _, missing = strategy_columns(_reader(files), [sel], ["a.jpg", "b.jpg"])
    assert np.isnan(cols["metadata:lux"][0]) and cols["metadata:lux"][1] == 3.0
    assert missing == [{"sample": "a.jpg", "reason": "no value for metadata 'lux'"}]
    (note,) = missing_notes(missing, 2)
    assert "1 of 2 candidates has no value for metadata 'lux'" in note
    assert "no defaultValue" in note and "it passes no THRESHOLD" in note


def test_a_sample_without_a_metadata_file_gets_no_value_where_the_schema_has_no_default() -> None:
    # The warning said "they take the schema's defaultValue" where the schema gives none, beside
    # the run's `no value  N candidates without a value ...: never picked` line.
    from datapool.strategies import Metadata

    files = {
        ".lightly/metadata/schema.json": [
            {"name": "lux", "path": "lux", "valueDataType": "NUMERIC_FLOAT"},
            {"name": "w", "path": "w", "valueDataType": "NUMERIC_FLOAT", "defaultValue": 0.5},
        ],
        ".lightly/metadata/a.json": {"file_name": "a.jpg", "type": "image", "metadata": {"lux": 2}},
    }
    lux = SelectionStrategy(Metadata("lux"), Weights())
    cols, _, missing = strategy_columns(_reader(files), [lux], ["a.jpg", "b.jpg", "c.jpg"])
    assert np.isnan(cols["metadata:lux"][1]) and np.isnan(cols["metadata:lux"][2])
    (note,) = missing_notes(missing, 3)
    assert note.startswith("2 of 3 candidates have no metadata file, and no defaultValue for 'lux'")
    assert "without a value they pass no THRESHOLD" in note and "defaultValue used" not in note
    assert "take the schema's defaultValue" not in note
    # with a defaultValue it is used, and the warning says so
    w = SelectionStrategy(Metadata("w"), Weights())
    cols, _, missing = strategy_columns(_reader(files), [w], ["a.jpg", "b.jpg"])
    assert cols["metadata:w"][1] == 0.5
    (note,) = missing_notes(missing, 2)
    assert note.startswith("1 of 2 candidates has no metadata file (first: b.jpg")
    assert "it takes the schema's defaultValue" in note


def test_pool_rows_without_stored_classes_are_read_from_the_files() -> None:
    from datapool.lightly import fill_pool_columns
    from datapool.strategies import Balance, Predictions

    files = _cls(b=[{"category_id": 2, "probabilities": [0.0, 0.0, 1.0]}])
    key = "predictions:cls:CLASS_DISTRIBUTION"
    # a: stored (classes as the pool file keeps them, by name); b: selected without BALANCE.
    columns = {key: np.array([[1.0, 0.0], [0.0, 0.0]])}
    classes = {key: ["car", "person"]}
    bal = SelectionStrategy(Predictions("cls"), Balance({"car": 0.5}))
    fill_pool_columns(_reader(files), [bal], ["a.jpg", "b.jpg"], columns, classes)
    assert classes[key] == ["car", "person", "bike"]
    assert columns[key].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b'"0.5"'])
def test_a_numeric_metadata_value_that_is_not_a_finite_number_names_the_file(value) -> None:
    from datapool.strategies import Metadata, Threshold

    files: dict[str, Any] = {
        ".lightly/metadata/schema.json": [
            {"name": "lux", "path": "lux", "defaultValue": 0, "valueDataType": "NUMERIC_FLOAT"}
        ],
        ".lightly/metadata/a.json": b'{"file_name": "a.jpg", "metadata": {"lux": ' + value + b"}}",
    }
    sel = SelectionStrategy(Metadata("lux"), Threshold(1.0, "BIGGER"))
    with pytest.raises(SourceError, match=r"metadata/a\.json: lux must be a finite number"):
        strategy_columns(_reader(files), [sel], ["a.jpg"])


def test_a_task_not_in_tasks_json_lists_the_tasks() -> None:
    sel = SelectionStrategy(Scores("det", "object_frequency"), Weights())
    with pytest.raises(SourceError, match=r"does not list the task 'det' .*it lists: cls\)"):
        strategy_columns(_reader(_cls()), [sel], ["a.jpg"])


def test_object_frequency_is_scaled_over_the_runs_samples_as_lightly_does() -> None:
    # Lightly's object_frequency: first object of each category 1, every further one 0.25, then
    # the run's samples scaled to [0.9, 1.0]. Before, 1 - exp(-0.25 * boxes): d (no boxes) got
    # 0 and was never picked under WEIGHTS, and a (4 cars) outranked b (a car and a person).
    def box(k: int) -> dict[str, Any]:
        return {"category_id": k, "bbox": [0, 0, 4, 4], "score": 0.5}

    files: dict[str, Any] = {
        ".lightly/predictions/tasks.json": ["det"],
        ".lightly/predictions/det/schema.json": {
            "task_type": "object-detection",
            "categories": CATS,
        },
    }
    for stem, ks in {"a": [0, 0, 0, 0], "b": [0, 1], "c": [0, 1, 2, 2], "d": []}.items():
        files[f".lightly/predictions/det/{stem}.json"] = {
            "file_name": f"{stem}.jpg",
            "predictions": [box(k) for k in ks],
        }
    sel = SelectionStrategy(Scores("det", "object_frequency"), Weights())
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]  # e: no file
    cols, _, _ = strategy_columns(_reader(files), [sel], names)
    got = cols["scores:det:object_frequency"]
    # counts 1.75, 2, 3.25, 0: scaled from [0, 3.25] to [0.9, 1]
    want = [0.9 + 0.1 * c / 3.25 for c in (1.75, 2.0, 3.25, 0.0)]
    assert got[:4].tolist() == pytest.approx(want, abs=1e-12)
    assert np.isnan(got[4])


@pytest.mark.parametrize("kind", ["semantic-segmentation", "instance-segmentation"])
def test_a_task_type_datapool_does_not_read_is_named(kind: str) -> None:
    # Lightly's format has semantic-segmentation (RLE masks) and instance-segmentation tasks;
    # the selection strategies compute no scores or classes from them, and say so in one line
    # (keypoint-detection tasks: below).
    files: dict[str, Any] = {
        ".lightly/predictions/tasks.json": ["seg"],
        ".lightly/predictions/seg/schema.json": {"task_type": kind, "categories": CATS},
        ".lightly/predictions/seg/a.json": {
            "file_name": "a.jpg",
            "predictions": [{"category_id": 0, "segmentation": [100, 80, 90, 85], "score": 0.8}],
        },
    }
    sel = SelectionStrategy(Scores("seg", "uncertainty_entropy"), Weights())
    with pytest.raises(
        SourceError, match=rf"got '{kind}'; datapool reads no {kind} task here: give a task of"
    ):
        strategy_columns(_reader(files), [sel], ["a.jpg"])


def test_lightly_pretagging_says_datapool_runs_no_detector() -> None:
    sel = SelectionStrategy(Scores("lightly_pretagging", "uncertainty_entropy"), Weights())
    with pytest.raises(SourceError, match=r"it lists: cls\); lightly_pretagging is the Lightly"):
        strategy_columns(_reader(_cls()), [sel], ["a.jpg"])
    with pytest.raises(SourceError, match=r"`datapool predict SOURCE --model MODEL.onnx"):
        strategy_columns(_reader(_cls()), [sel], ["a.jpg"])  # which writes them


def _keypoint_task(kind: str = "keypoint-detection") -> dict[str, Any]:
    """A task `kp` of `kind` in Lightly's keypoint format: a.jpg holds two people and a car
    (keypoints [x1, y1, s1, ...], a bbox on one), b.jpg none."""
    points = [30.0, 20.0, 0.9, 60.0, 40.0, 0.8]
    box = {"bbox": [20, 10, 50, 40]}
    people = [
        {"category_id": 1, "keypoints": points, "score": 0.9, **box},
        {"category_id": 1, "keypoints": points, "score": 0.7, **box},
        {"category_id": 0, "keypoints": points, "score": 0.6, **box},
    ]
    if kind == "keypoint-detection":
        people[0].pop("bbox")  # optional in Lightly's keypoint format
    return {
        ".lightly/predictions/tasks.json": ["kp"],
        ".lightly/predictions/kp/schema.json": {"task_type": kind, "categories": CATS},
        ".lightly/predictions/kp/a.json": {"file_name": "a.jpg", "predictions": people},
        ".lightly/predictions/kp/b.json": {"file_name": "b.jpg", "predictions": []},
    }


def test_a_keypoint_detection_task_gives_predictions_as_a_detection_task_does() -> None:
    # Before, PREDICTIONS of a keypoint-detection task were refused (only crop selection read
    # it). Each prediction is one object of its category_id, as a detection's: the columns are
    # those of the same predictions in an object-detection task.
    from datapool.strategies import Balance, Predictions

    strategies = [SelectionStrategy(Predictions("kp"), Balance({"person": 0.5}))]
    names = ["a.jpg", "b.jpg"]
    cols, classes, missing = strategy_columns(_reader(_keypoint_task()), strategies, names)
    assert cols["predictions:kp:CATEGORY_COUNT"].tolist() == [[1, 2, 0], [0, 0, 0]]
    assert cols["predictions:kp:CLASS_DISTRIBUTION"].tolist() == [[1, 2, 0], [0, 0, 0]]
    assert classes["predictions:kp:CATEGORY_COUNT"] == ["car", "person", "bike"]
    assert missing == []
    det_cols, _, _ = strategy_columns(
        _reader(_keypoint_task("object-detection")), strategies, names
    )
    assert {k: v.tolist() for k, v in cols.items()} == {k: v.tolist() for k, v in det_cols.items()}


def test_scores_of_a_keypoint_detection_task_are_refused_saying_what_it_gives() -> None:
    sel = SelectionStrategy(Scores("kp", "object_frequency"), Weights())
    with pytest.raises(
        SourceError,
        match=r"^task 'kp' \(keypoint-detection\) has no score 'object_frequency': datapool "
        r"computes no scores from keypoints; select on its PREDICTIONS \(CLASS_DISTRIBUTION, ",
    ):
        strategy_columns(_reader(_keypoint_task()), [sel], ["a.jpg", "b.jpg"])
