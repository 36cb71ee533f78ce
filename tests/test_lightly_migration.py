"""A team moving from the Lightly Worker (`use_datapool: True`) brings its habits: worker
settings in the selection config or as flags, `relevant_filenames_file` as a path inside the
datasource, the Lightly datasource given for `--predictions`, a pool CSV's sample names in a
relevant-filenames file, detections without `probabilities`, sequence selection over a folder
that also holds images. Each either does what Lightly did or says in one line what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datapool
from datapool.cli import main
from datapool.config import SelectionConfig
from datapool.errors import ConfigError, SourceError, UnknownOptionError

from .conftest import run_cli, write_media
from .test_strategies_e2e import _put

DIVERSITY = {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}
ENTROPY = {
    "input": {"type": "SCORES", "task": "vehicles", "score": "uncertainty_entropy"},
    "strategy": {"type": "WEIGHTS"},
}
STRATEGIES = [DIVERSITY, ENTROPY]


@pytest.fixture
def datasource(tmp_path: Path) -> Path:
    """4 JPEGs and a 6-frame clip, with Lightly's .lightly folder: an object-detection task
    `vehicles` whose predictions have boxes and scores but no `probabilities` (optional in
    Lightly's format), and a metadata schema with one field."""
    root = tmp_path / "src"
    for i in range(4):
        write_media(root / f"img{i}.jpg", seed=i)
    write_media(root / "cam" / "clip.mp4", seed=30, frames=6)
    cats = [{"id": 0, "name": "car"}, {"id": 1, "name": "person"}]
    _put(root, ".lightly/predictions/tasks.json", ["vehicles"])
    _put(
        root,
        ".lightly/predictions/vehicles/schema.json",
        {"task_type": "object-detection", "categories": cats},
    )
    names = [f"img{i}.jpg" for i in range(4)] + [f"cam/clip-{i}-mp4.png" for i in range(6)]
    for i, name in enumerate(names):
        box = {"category_id": i % 2, "bbox": [4, 4, 30, 20], "score": 0.5 + i / 40}
        _put(
            root,
            f".lightly/predictions/vehicles/{name.rsplit('.', 1)[0]}.json",
            {"file_name": name, "predictions": [box]},
        )
    _put(
        root,
        ".lightly/metadata/schema.json",
        [{"name": "temp", "path": "weather.temperature", "valueDataType": "NUMERIC_FLOAT"}],
    )
    return root


@pytest.mark.parametrize(
    ("setting", "value", "fix"),
    [
        ("use_datapool", True, "every datapool run grows its pool (--pool POOL); drop it"),
        ("selected_sequence_length", 10, "give --selected-sequence-length 10"),
        ("selectedSequenceLength", 10, "give --selected-sequence-length 10"),
        (
            "relevant_filenames_file",
            ".lightly/relevant_filenames.txt",
            "give --relevant-filenames-file .lightly/relevant_filenames.txt",
        ),
        ("datasource", {"process_all": True}, "its process_all is --process-all"),
        ("object_level", {"task_name": "det"}, "its task_name is --crops TASK"),
        ("enable_training", False, "datapool trains no model"),
        (
            "lightly_config",
            {"loader": {"batch_size": 8}},
            "its loader's batch_size is --batch-size",
        ),
    ],
)
def test_a_worker_setting_in_the_selection_config_names_its_flag(setting, value, fix) -> None:
    """Said only `unknown field 'use_datapool' (fields: n_samples, proportion_samples,
    strategies)`, leaving the user to find what a worker setting is here."""
    config = {"n_samples": 5, setting: value, "strategies": [DIVERSITY]}
    with pytest.raises(ConfigError, match=r"is a Lightly worker setting|holds Lightly's") as e:
        SelectionConfig.from_lightly(config, "sel.json")
    assert str(e.value).startswith("sel.json: ")
    assert fix in str(e.value)


def test_a_dry_run_refuses_the_strategy_inputs_the_run_refuses(datasource, tmp_path) -> None:
    """A task misspelt, a metadata field the schema lacks, a SIMILARITY tag the pool lacks, a
    BALANCE target class the task lacks: the dry run said all was well, and the run refused them
    only after decoding every new file."""
    pool = tmp_path / "pool"

    def dry(*strategies: dict) -> None:
        datapool.run(
            datasource, pool, n_samples=3, strategies=[DIVERSITY, *strategies], dry_run=True,
            progress=False,
        )  # fmt: skip

    typo = {**ENTROPY, "input": {**ENTROPY["input"], "task": "vehicle"}}
    with pytest.raises(SourceError, match="does not list the task 'vehicle'"):
        dry(typo)
    weights = {
        "input": {"type": "METADATA", "key": "weather.temp"},
        "strategy": {"type": "WEIGHTS"},
    }
    with pytest.raises(SourceError, match=r"no metadata field 'weather\.temp'"):
        dry(weights)
    similar = {
        "input": {"type": "EMBEDDINGS", "tag_name": "labelled"},
        "strategy": {"type": "SIMILARITY"},
    }
    with pytest.raises(ConfigError, match="no samples tagged 'labelled'"):
        dry(similar)
    balance = {
        "input": {"type": "PREDICTIONS", "task": "vehicles", "name": "CLASS_DISTRIBUTION"},
        "strategy": {"type": "BALANCE", "target": {"Car": 0.5, "person": 0.5}},
    }
    with pytest.raises(ConfigError, match=r"BALANCE target class 'Car' is not a class .*car, pe"):
        dry(balance)
    dry(ENTROPY)  # what can be read passes
    assert not pool.exists()


def test_a_task_tasks_json_lacks_stops_the_run_before_decoding(datasource, tmp_path) -> None:
    config = {"n_samples": 3, "strategies": [DIVERSITY, {**ENTROPY, "input": {
        **ENTROPY["input"], "task": "vehicle"}}]}  # fmt: skip
    (tmp_path / "sel.json").write_text(json.dumps(config))
    r = run_cli(
        "run", datasource, "--pool", tmp_path / "pool", "--selection", tmp_path / "sel.json",
        env_extra={"DATAPOOL_TEST_TRACE": "1"},
    )  # fmt: skip
    assert r.returncode == 5, r.stderr
    assert "datapool-test: at decode:" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith("datapool: error: .lightly/predictions/tasks.json")


def test_a_relevant_filenames_file_inside_the_source_is_named(datasource, tmp_path) -> None:
    """Lightly reads `relevant_filenames_file` inside the datasource; a path here is read from
    the working folder, and the run said only `No such file or directory`."""
    (datasource / ".lightly" / "relevant_filenames.txt").write_text("img1.jpg\n")
    r = run_cli(
        "run", datasource, "--pool", tmp_path / "pool", "--n-samples", 1,
        "--relevant-filenames-file", ".lightly/relevant_filenames.txt",
    )  # fmt: skip
    assert r.returncode == 4
    inside = datasource / ".lightly" / "relevant_filenames.txt"
    assert r.stderr.strip().splitlines() == [
        "datapool: error: cannot read --relevant-filenames-file .lightly/relevant_filenames.txt: "
        "No such file or directory (a path here is read from the working folder, not from the "
        f"source as Lightly's was: give {inside})"
    ]


def test_the_lightly_datasource_given_for_predictions_names_the_folder_in_it(
    datasource, tmp_path
) -> None:
    """Lightly's datasource holds `.lightly/predictions/`; `--predictions DATASOURCE` said only
    that it holds no tasks.json."""
    given = str(datasource) + "/"
    with pytest.raises(ConfigError) as e:
        datapool.run(
            datasource, tmp_path / "pool", n_samples=2, strategies=[DIVERSITY, ENTROPY],
            predictions_dir=given,
        )  # fmt: skip
    assert str(e.value) == (
        f"--predictions {given}: no tasks.json there; its .lightly/predictions/ has one: give "
        f"--predictions {datasource}/.lightly/predictions"
    )


def test_detection_uncertainty_without_probabilities_says_why_it_is_0(
    datasource, tmp_path, caplog
) -> None:
    """Lightly's docs weight on a detection task's uncertainty_entropy; from boxes without
    `probabilities` it is 0 for all (as in Lightly's scorer). The first run stopped saying
    `values 0 to 0 ... change the threshold or its operation` (there was no threshold), and a
    later run filled its budget by diversity without saying why the weights counted for nothing."""
    pool = tmp_path / "pool"
    with pytest.raises(ConfigError) as e:
        datapool.run(datasource, pool, n_samples=2, strategies=STRATEGIES, progress=False)
    assert "values 0 to 0" in str(e.value) and "threshold" not in str(e.value)
    assert "none of the 10 with boxes has `probabilities`" in caplog.text
    datapool.run(datasource, pool, n_samples=2, progress=False)
    write_media(datasource / "img9.jpg", seed=9)
    box = {"category_id": 0, "bbox": [1, 1, 9, 9], "score": 0.9}
    _put(datasource, ".lightly/predictions/vehicles/img9.json", {"predictions": [box]})
    result = datapool.run(datasource, pool, n_samples=2, strategies=STRATEGIES, progress=False)
    assert [w for w in result.warnings if "`probabilities`" in w] == [
        "SCORES vehicles:uncertainty_entropy is 0 for every sample: none of the 1 with boxes has "
        "`probabilities` in its predictions, which the uncertainty scores are computed from (as "
        "Lightly's are); write them, or select on objectness_least_confidence or object_frequency"
    ]


def test_detections_with_probabilities_give_no_warning(datasource, tmp_path) -> None:
    for i in range(4):
        box = {"category_id": 0, "bbox": [4, 4, 30, 20], "score": 0.7, "probabilities": [0.6, 0.4]}
        _put(datasource, f".lightly/predictions/vehicles/img{i}.json", {"predictions": [box]})
    pool = tmp_path / "pool"
    result = datapool.run(datasource, pool, n_samples=2, strategies=STRATEGIES, progress=False)
    assert len(result.selected) == 2
    assert not [w for w in result.warnings if "probabilities" in w]


def test_sequence_selection_says_the_images_are_read_and_not_candidates(
    datasource, tmp_path
) -> None:
    """Lightly's video datasets hold no images; here the images were decoded, never picked and
    recorded as read (no later run offers them), without a word."""
    result = datapool.run(
        datasource, tmp_path / "pool", n_samples=3, selected_sequence_length=3, progress=False
    )
    assert {s.split("-")[0] for s in result.selected} == {"cam/clip"}
    assert [w for w in result.warnings if "sequence selection" in w] == [
        "4 images (img0.jpg, ...) are not candidates of sequence selection "
        "(--selected-sequence-length 3 picks runs of video frames) but are recorded as read, so "
        "no later run selects from them: run sequence selection on the videos alone (--include "
        "'*.mp4'; `datapool undo POOL` takes this run back)"
    ]
    videos = datapool.run(
        datasource, tmp_path / "videos", n_samples=3, selected_sequence_length=3,
        include=("*.mp4",), progress=False,
    )  # fmt: skip
    assert not [w for w in videos.warnings if "sequence selection" in w]


def test_a_relevant_filenames_line_naming_a_frame_names_its_video(datasource, tmp_path) -> None:
    """The filenames of a pool CSV (a Lightly datapool's) name video frames and crops: as lines
    of a relevant-filenames file they matched no file, and the warning said only that."""
    listed = tmp_path / "labelled.txt"
    listed.write_text("img1.jpg\ncam/clip-2-mp4.png\n")
    result = datapool.run(
        datasource, tmp_path / "pool", proportion_samples=1.0, relevant_filenames_file=listed,
        progress=False,
    )  # fmt: skip
    assert result.selected == ["img1.jpg"]
    assert [w for w in result.warnings if "relevant" in w] == [
        f"--relevant-filenames-file {listed}: 1 of its 2 lines match no file "
        "('cam/clip-2-mp4.png'); 'cam/clip-2-mp4.png' is a sample of 'cam/clip.mp4': a line "
        "names a file (a video's line takes all its frames)"
    ]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--n-samples", "0.1"], "(a fraction of the candidates: --proportion 0.1)"),
        (["--use-datapool"], "every datapool run grows its pool (--pool POOL): drop it"),
        (
            ["--stopping_condition_minimum_distance", "0.2"],
            "--min-distance D is DIVERSITY's stopping condition",
        ),
        (["--min-distance", "-1"], "-1 (Lightly's 'inactive') is no minimum distance: leave it"),
    ],
)
def test_lightlys_settings_as_flags_name_the_fix(flags, says, tmp_path, capsys) -> None:
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    try:
        code = main(["run", str(src), "--pool", str(tmp_path / "pool"), *flags])
    except SystemExit as e:  # argparse's errors
        code = e.code
    assert code == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


def test_pythons_none_in_a_pasted_python_dict_is_not_given(tmp_path) -> None:
    """Lightly's docs write configs as Python dicts; pasted into a .yaml file they read as they
    are, but `None` was the string 'None' (`... must be between 0 and 2, got 'None'`)."""
    path = tmp_path / "sel.yaml"
    path.write_text(
        "{\n"
        '    "n_samples": 5,  # how many\n'
        '    "proportion_samples": None,\n'
        '    "strategies": [\n'
        '        {"input": {"type": "EMBEDDINGS", "tag_name": "None"},\n'
        '         "strategy": {"type": "SIMILARITY"}},\n'
        '        {"input": {"type": "EMBEDDINGS"},\n'
        '         "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": None}},\n'
        "    ]\n"
        "}\n"
    )
    config = SelectionConfig.from_file(path)
    assert (config.n_samples, config.proportion_samples, config.min_distance) == (5, None, None)
    assert config.strategies[0].input.tag_name == "None"  # quoted: a string


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ([DIVERSITY], "this is a list of strategies, not a selection config: put them under"),
        (DIVERSITY, "this is one strategy, not a selection config: put it in a list under"),
    ],
)
def test_strategies_copied_without_their_config_name_the_wrapper(doc, says) -> None:
    """Copied from Lightly's docs, which show a strategy or the `strategies` list alone: said
    `must be an object (a mapping)`, or `unknown field 'input'`."""
    with pytest.raises(ConfigError) as e:
        SelectionConfig.from_lightly(doc, "sel.json")
    assert str(e.value).startswith(f"sel.json: {says}")
    assert str(e.value).endswith(
        '{"n_samples": N, "strategies": [...]} (or the budget as --n-samples)'
    )


def test_an_embeddings_csv_as_the_relevant_filenames_file_names_its_column(
    datasource, tmp_path
) -> None:
    """A Lightly datapool's datapool_latest.csv given as the list of what to take in: every
    line matched no file, and the error quoted 7,000 characters of its header and rows."""
    pool = tmp_path / "pool"
    datapool.run(datasource, pool, n_samples=2, progress=False)
    csv = pool / "datapool_latest.csv"
    with pytest.raises(ConfigError) as e:
        datapool.run(
            datasource, tmp_path / "other", proportion_samples=1.0, relevant_filenames_file=csv,
            progress=False,
        )  # fmt: skip
    assert str(e.value) == (
        f"relevant_filenames_file {csv} is an embeddings CSV (filenames,embedding_0,...,labels: "
        "a pool's, or a Lightly datapool's), and a relevant-filenames file holds one path a "
        f"line: give its first column, `tail -n +2 {csv} | cut -d, -f1`"
    )


def test_a_relevant_filenames_path_of_lightlys_in_a_bucket_is_named(tmp_path, monkeypatch) -> None:
    from datapool.sources.filters import read_relevant_filenames

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        read_relevant_filenames(".lightly/relevant_filenames.txt", ("s3://bucket/raw",))
    assert str(e.value).endswith(
        "No such file or directory (it is read from this machine, not from the source as "
        "Lightly's was: copy s3://bucket/raw/.lightly/relevant_filenames.txt here first)"
    )
    with pytest.raises(ConfigError) as e:  # not Lightly's place: no guess where it is
        read_relevant_filenames("lists/relevant.txt", ("s3://bucket/raw",))
    assert str(e.value).endswith("No such file or directory")


def test_a_classification_without_probabilities_says_why_its_uncertainty_is_0(
    datasource, tmp_path, caplog
) -> None:
    """Lightly's classification predictions may give the category alone; its uncertainty
    scores are then 0 for all, and the first run stopped without saying why."""
    root = datasource / ".lightly" / "predictions"
    _put(root, "tasks.json", ["vehicles", "weather"])
    cats = [{"id": 0, "name": "sun"}, {"id": 1, "name": "rain"}]
    _put(root, "weather/schema.json", {"task_type": "classification", "categories": cats})
    for i in range(4):
        _put(root, f"weather/img{i}.json", {"predictions": [{"category_id": i % 2}]})
    margin = {
        "input": {"type": "SCORES", "task": "weather", "score": "uncertainty_margin"},
        "strategy": {"type": "WEIGHTS"},
    }
    with pytest.raises(ConfigError, match="values 0 to 0"):
        datapool.run(
            datasource, tmp_path / "pool", n_samples=2, strategies=[DIVERSITY, margin],
            progress=False,
        )  # fmt: skip
    assert (
        "SCORES weather:uncertainty_margin is 0 for every sample: none of the 4 with predictions "
        "has `probabilities` in its predictions, which the uncertainty scores are computed from "
        "(as Lightly's are); write them\n" in caplog.text
    )


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("selection_config", "Lightly's selection config is strategies= (its strategies) and"),
        ("worker_config", "Lightly's worker settings are RunConfig's fields here (process_all="),
        ("use_datapool", "every datapool run grows its pool (the pool argument); drop it"),
    ],
)
def test_lightlys_run_arguments_to_the_python_api_name_the_fix(option, says, tmp_path) -> None:
    """`datapool.run(src, pool, selection_config={...})`, as `schedule_compute_worker_run` takes
    it: said `unknown option 'selection_config' (see help(datapool.RunConfig))`."""
    with pytest.raises(UnknownOptionError) as e:
        datapool.run(tmp_path / "src", tmp_path / "pool", **{option: {}})
    assert str(e.value).startswith(f"unknown option {option!r}: {says}")
