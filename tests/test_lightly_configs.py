"""Selection configs as Lightly's docs and its Python client write them: the camelCase the
client sends (`SelectionConfigV4(...).to_dict(by_alias=True)`), the older docs' `nSamples`,
`"-1 means inactive"`, and the fields and settings datapool does not implement, each refused
in one line that names it and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from datapool.config import SelectionConfig
from datapool.errors import ConfigError
from datapool.strategies import (
    Diversity,
    Embeddings,
    Random,
    SelectionStrategy,
    Similarity,
    Typicality,
    Weights,
)

EMB = {"type": "EMBEDDINGS"}


def _read(tmp_path: Path, doc: dict[str, Any]) -> SelectionConfig:
    p = tmp_path / "sel.json"
    p.write_text(json.dumps(doc))
    return SelectionConfig.from_file(p)


def test_the_clients_camel_case_reads_as_the_snake_case(tmp_path: Path) -> None:
    # What lightly's SelectionConfigV4(...).to_dict(by_alias=True) sends: nSamples, randomSeed,
    # tagName, numNearestNeighbors in camelCase; stopping_condition_minimum_distance and
    # strength as they are. Before, nSamples was refused as an unknown field.
    camel = {
        "nSamples": 5,
        "strategies": [
            {
                "input": EMB,
                "strategy": {
                    "type": "DIVERSITY",
                    "stopping_condition_minimum_distance": 0.1,
                    "strength": 1.0,
                },
            },
            {"input": {"type": "RANDOM", "randomSeed": 42}, "strategy": {"type": "WEIGHTS"}},
            {
                "input": {"type": "EMBEDDINGS", "tagName": "initial-tag"},
                "strategy": {"type": "SIMILARITY", "strength": 0.5},
            },
            {"input": EMB, "strategy": {"type": "TYPICALITY", "numNearestNeighbors": 5}},
        ],
    }
    want = SelectionConfig(
        n_samples=5,
        strategies=(
            SelectionStrategy(Embeddings(), Diversity(0.1)),
            SelectionStrategy(Random(42), Weights()),
            SelectionStrategy(Embeddings(tag_name="initial-tag"), Similarity(0.5)),
            SelectionStrategy(Embeddings(), Typicality(5)),
        ),
    )
    assert _read(tmp_path, camel) == want
    prop = _read(tmp_path, {"proportionSamples": 0.5, "strategies": [camel["strategies"][0]]})
    assert prop.proportion_samples == 0.5 and prop.n_samples is None


def test_a_field_given_both_ways_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'n_samples' and 'nSamples' are the same field"):
        _read(tmp_path, {"n_samples": 5, "nSamples": 6, "strategies": []})
    doc = {
        "n_samples": 5,
        "strategies": [
            {
                "input": {"type": "RANDOM", "random_seed": 1, "randomSeed": 2},
                "strategy": {"type": "WEIGHTS"},
            }
        ],
    }
    with pytest.raises(ConfigError, match=r"strategies\[0\]\.input: 'random_seed' and"):
        _read(tmp_path, doc)


def test_minus_one_is_inactive_as_lightlys_docs_say(tmp_path: Path) -> None:
    # Lightly's docs: stopping_condition_minimum_distance -1 and n_samples -1 "mean inactive"
    # (its Python examples write DIVERSIFY with -1). Before, both were refused.
    doc = {
        "n_samples": 4,
        "strategies": [
            {
                "input": EMB,
                "strategy": {"type": "DIVERSIFY", "stopping_condition_minimum_distance": -1},
            }
        ],
    }
    got = _read(tmp_path, doc)
    assert got == SelectionConfig(n_samples=4) and got.min_distance is None
    doc = {
        "n_samples": -1,
        "strategies": [
            {
                "input": EMB,
                "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": 0.2},
            }
        ],
    }
    got = _read(tmp_path, doc)
    assert got.n_samples is None and got.min_distance == 0.2
    with pytest.raises(ConfigError, match="no selection budget"):
        _read(tmp_path, {"n_samples": -1, "strategies": []})


def test_a_fraction_as_n_samples_names_proportion_samples(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"n_samples must be a number of samples, got 0.1; .*proportion_samples"
    ):
        _read(tmp_path, {"n_samples": 0.1, "strategies": []})


@pytest.mark.parametrize(
    ("where", "field", "value", "says"),
    [
        ("strategy", "stopping_condition_minimum_typicality", 0.5, "give n_samples"),
        ("strategy", "stoppingConditionMinimumTypicality", 0.5, "give n_samples"),
        ("strategy", "stopping_condition_max_sum", 2.0, "give n_samples"),
        ("strategy", "targetRange", {"minSum": 1}, "drop it"),
        ("strategy", "distribution", "UNIFORM", "name the shares in 'target'"),
        ("input", "categories", ["car"], "every category counts"),
        ("top", "lightly_path_regex", ".*", "drop it"),
        ("top", "autoTasks", [{"type": "TILING"}], "datapool reads predictions"),
    ],
)
def test_lightlys_fields_datapool_lacks_are_named(
    tmp_path: Path, where: str, field: str, value: Any, says: str
) -> None:
    entry: dict[str, Any] = {"input": dict(EMB), "strategy": {"type": "DIVERSITY"}}
    doc: dict[str, Any] = {"n_samples": 3, "strategies": [entry]}
    (doc if where == "top" else entry[where])[field] = value
    with pytest.raises(ConfigError) as e:
        _read(tmp_path, doc)
    msg = str(e.value)
    assert f"Lightly's field {field!r}" in msg and "not supported" in msg and says in msg


def test_a_lightly_worker_2_config_names_the_flags(tmp_path: Path) -> None:
    old = {
        "enable_corruptness_check": True,
        "method": "coral",
        "stopping_condition": {"n_samples": 0.1, "min_distance": -1},
        "active_learning": {"task_name": "cls", "score_name": "uncertainty_margin"},
    }
    with pytest.raises(ConfigError) as e:
        _read(tmp_path, old)
    msg = str(e.value)
    assert "'active_learning' is a Lightly Worker 2.x setting" in msg
    assert "SCORES input {task, score} with a WEIGHTS strategy" in msg
    with pytest.raises(ConfigError, match=r"--n-samples .*--min-distance"):
        _read(tmp_path, {"stopping_condition": {"n_samples": 10, "min_distance": -1}})


@pytest.mark.parametrize(
    ("target", "column"),
    [
        ('{"true": 0.75, "false": 0.25}', [True, False, True, False, False, True]),  # JSON's
        ("{true: 0.75, false: 0.25}", [True, False, True, False, False, True]),  # YAML's
        ('{"True": 0.75, "False": 0.25}', [True, False, True, False, False, True]),
        ("{301: 0.75, 300: 0.25}", [301, 300, 301, 300, 300, 301]),  # YAML: numbers
    ],
)
def test_balance_targets_of_boolean_and_integer_metadata(
    tmp_path: Path, target: str, column: list
) -> None:
    # A CATEGORICAL_BOOLEAN's classes were "True"/"False" only: a target written as the JSON
    # metadata files write them ("true") was refused, and YAML's `true:` or `301:` keys
    # (booleans, numbers) were refused as "class 301 is not a class (classes: 300, 301)".
    import numpy as np

    from datapool.candidates import Candidates
    from datapool.select import select

    p = tmp_path / "sel.yaml"
    p.write_text(
        "n_samples: 4\nstrategies:\n  - input: {type: METADATA, key: m}\n"
        f"    strategy: {{type: BALANCE, target: {target}}}\n"
    )
    sel = SelectionConfig.from_file(p)
    X = np.eye(6, dtype=np.float32)
    cands = Candidates(list("abcdef"), list("abcdef"), X)
    cands.columns["metadata:m"] = np.array(column, dtype=object)
    picks = select(cands, sel, np.zeros((0, 6), np.float32))
    picked = [column[i] for i in picks.indices.tolist()]
    assert sorted(map(str, picked)) == sorted(map(str, [column[0]] * 3 + [column[1]]))
    (summary,) = picks.balance
    assert {c["class"]: c["target"] for c in summary["classes"]} == {
        str(column[0]): 0.75,
        str(column[1]): 0.25,
    }


def test_null_fields_are_not_given_as_the_older_clients_to_dict_writes_them(tmp_path) -> None:
    # lightly's older (swagger) client: DockerWorkerSelectionConfigEntry(...).to_dict() writes
    # every field of the model, unset ones as None. Before: "unknown field 'task' for METADATA".
    entry = {
        "input": {
            "type": "METADATA",
            "task": None,
            "score": None,
            "key": "lightly.sharpness",
            "name": None,
            "dataset_id": None,
            "tag_name": None,
        },
        "strategy": {
            "type": "THRESHOLD",
            "stopping_condition_minimum_distance": None,
            "threshold": 20,
            "operation": "BIGGER",
            "target": None,
        },
    }
    got = _read(tmp_path, {"n_samples": 5, "proportion_samples": None, "strategies": [entry]})
    from datapool.strategies import Metadata, Threshold

    assert got.strategies[0] == SelectionStrategy(
        Metadata("lightly.sharpness"), Threshold(20, "BIGGER")
    )
    entry["strategy"]["operation"] = None  # not given: which side to keep is never guessed
    with pytest.raises(ConfigError, match="THRESHOLD needs 'operation'"):
        _read(tmp_path, {"n_samples": 5, "strategies": [entry]})


def test_lightlys_python_dict_pasted_into_a_yaml_file_reads(tmp_path: Path) -> None:
    # Lightly's docs write configs as Python dicts with # comments and trailing commas
    # ("Visual Diversity and Active Learning (CORAL)"): YAML reads them as they are.
    p = tmp_path / "coral.yaml"
    p.write_text(
        """{
    "n_samples": 100, # set to the number of samples you want to select
    "strategies": [
        {
            "input": {
                "type": "EMBEDDINGS"
            },
            "strategy": {
                "type": "DIVERSITY",
            }
        },
        {
            "input": {
                "type": "SCORES",
                "task": "my_object_detection_task", # change to your task
                "score": "uncertainty_entropy" # change to your preferred score
            },
            "strategy": {
                "type": "WEIGHTS"
            }
        }
    ]
}
"""
    )
    from datapool.strategies import Scores

    got = SelectionConfig.from_file(p)
    assert got == SelectionConfig(
        n_samples=100,
        strategies=(
            SelectionStrategy(Embeddings(), Diversity()),
            SelectionStrategy(Scores("my_object_detection_task", "uncertainty_entropy"), Weights()),
        ),
    )


def test_a_worker_config_as_lightlys_api_holds_it_names_its_selection(tmp_path: Path) -> None:
    # DockerWorkerConfigV4(...).to_dict(by_alias=True), as the API stores a run's config: the
    # docker settings would change the run, so the file is refused with the part to give.
    sel = {"nSamples": 5, "strategies": [{"input": EMB, "strategy": {"type": "DIVERSITY"}}]}
    whole = {"workerType": "FULL", "docker": {"enableTraining": False}, "selection": sel}
    with pytest.raises(ConfigError, match=r"whole Lightly Worker config .*give its selection part"):
        _read(tmp_path, whole)
    with pytest.raises(ConfigError, match=r"give its config\.selection part"):
        _read(tmp_path, {"version": "V4", "config": whole, "creator": "USER_PIP"})
    assert _read(tmp_path, sel) == SelectionConfig(n_samples=5)


def test_the_api_jsons_camel_case_selection_config_wrapper_reads(tmp_path: Path) -> None:
    # The run's arguments as Lightly's API writes them in JSON: {"selectionConfig": {...}}, the
    # camelCase of the client's selection_config. It said "unknown field 'selection_config'".
    sel = {"nSamples": 5, "strategies": [{"input": EMB, "strategy": {"type": "DIVERSITY"}}]}
    assert _read(tmp_path, {"selectionConfig": sel}) == SelectionConfig(n_samples=5)
    assert _read(tmp_path, {"selection_config": sel}) == SelectionConfig(n_samples=5)
    with pytest.raises(
        ConfigError,
        match=r"whole Lightly run config; give its selectionConfig part .*the workerConfig",
    ):
        _read(tmp_path, {"workerConfig": {"enableTraining": False}, "selectionConfig": sel})
    with pytest.raises(ConfigError, match=r"'selection_config' and 'selectionConfig' are the same"):
        _read(tmp_path, {"selectionConfig": sel, "selection_config": sel})
