"""End to end: runs over a bucket whose .lightly/predictions and .lightly/metadata the test
writes in Lightly's formats (classification and detection, images and video frames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool import Pool
from datapool.config import SelectionConfig
from datapool.errors import ConfigError, SourceError
from datapool.scores import classification_score

from .conftest import write_media
from .test_cli import cli

CATS = [{"id": 0, "name": "car"}, {"id": 1, "name": "person"}, {"id": 2, "name": "bike"}]


def _put(root: Path, rel: str, doc: object) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc))


@pytest.fixture
def lbucket(tmp_path: Path) -> Path:
    """8 JPEGs and a 6-frame MP4, with classification ("cls") and detection ("det") predictions
    for every sample but img7, and metadata for the images and the video."""
    root = tmp_path / "bucket"
    rng = np.random.default_rng(3)
    names = [f"img{i}.jpg" for i in range(8)]
    for i, n in enumerate(names):
        write_media(root / n, seed=i)
    write_media(root / "cam" / "clip.mp4", seed=30, frames=6)
    samples = [*names, *[f"cam/clip-{i}-mp4.png" for i in range(6)]]
    _put(root, ".lightly/predictions/tasks.json", ["cls", "det"])
    _put(
        root,
        ".lightly/predictions/cls/schema.json",
        {"task_type": "classification", "categories": CATS},
    )
    _put(
        root,
        ".lightly/predictions/det/schema.json",
        {"task_type": "object-detection", "categories": CATS},
    )
    _put(
        root,
        ".lightly/metadata/schema.json",
        [
            {
                "name": "lightness",
                "path": "lightness",
                "defaultValue": 0.0,
                "valueDataType": "NUMERIC_FLOAT",
            },
            {
                "name": "weather",
                "path": "weather.kind",
                "defaultValue": "sunny",
                "valueDataType": "CATEGORICAL_STRING",
            },
        ],
    )
    for j, s in enumerate(samples):
        stem = s.rsplit(".", 1)[0]
        if s != "img7.jpg":
            p = rng.dirichlet(np.ones(3)).round(4).tolist()
            _put(
                root,
                f".lightly/predictions/cls/{stem}.json",
                {
                    "file_name": s,
                    "predictions": [{"category_id": int(np.argmax(p)), "probabilities": p}],
                },
            )
            boxes = [
                {
                    "category_id": 0 if j % 3 == 0 and k == 0 else int(rng.integers(1, 3)),
                    "bbox": [0, 0, 5, 5],
                    "score": float(rng.random()),
                }
                for k in range(j % 3 + 1)
            ]
            _put(
                root,
                f".lightly/predictions/det/{stem}.json",
                {"file_name": s, "predictions": boxes},
            )
        if s.endswith(".jpg"):
            _put(
                root,
                f".lightly/metadata/{stem}.json",
                {
                    "file_name": s,
                    "type": "image",
                    "metadata": {"lightness": j / 10, "weather": {"kind": "rain"}},
                },
            )
    _put(
        root,
        ".lightly/metadata/cam/clip.json",
        {"file_name": "cam/clip.mp4", "type": "video", "metadata": {"lightness": 0.9}},
    )
    return root


def _report(res: datapool.RunResult) -> dict:
    return json.loads(Path(res.report_path).read_text())


def _strategies(*entries: dict) -> SelectionConfig:
    return SelectionConfig.from_lightly({"n_samples": 5, "strategies": list(entries)})


DIV = {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}}


def test_uncertainty_with_diversity(lbucket: Path, tmp_path: Path) -> None:
    sel = _strategies(
        {
            "input": {"type": "SCORES", "task": "cls", "score": "uncertainty_margin"},
            "strategy": {"type": "WEIGHTS"},
        },
        DIV,
    )
    res = datapool.run(lbucket, tmp_path / "pool", n_samples=5, strategies=sel.strategies)
    rep = _report(res)
    assert len(res.selected) == 5
    for pick in rep["selected"]:
        stem = pick["filename"].rsplit(".", 1)[0]
        doc = json.loads((lbucket / f".lightly/predictions/cls/{stem}.json").read_text())
        want = classification_score("uncertainty_margin", doc["predictions"][0]["probabilities"])
        assert pick["strategies"]["WEIGHTS(SCORES:cls:uncertainty_margin)"] == pytest.approx(want)
        assert "product" in pick["strategies"]
    assert {"sample": "img7.jpg", "reason": "no predictions for task 'cls'"} in rep[
        "strategy_inputs_missing"
    ]
    assert "img7.jpg" not in res.selected  # no predictions: no weight


def test_a_threshold_on_metadata(lbucket: Path, tmp_path: Path) -> None:
    sel = _strategies(
        {
            "input": {"type": "METADATA", "key": "lightness"},
            "strategy": {"type": "THRESHOLD", "threshold": 0.5, "operation": "BIGGER"},
        },
        DIV,
    )
    res = datapool.run(lbucket, tmp_path / "pool", n_samples=20, strategies=sel.strategies)
    assert res.selected  # the frames take their video's 0.9; img6, img7 pass
    assert set(res.selected) <= {
        "img6.jpg",
        "img7.jpg",
        *[f"cam/clip-{i}-mp4.png" for i in range(6)],
    }
    assert res.stop_reason in (
        "no more candidates pass the thresholds",
        "no candidate differs from the pool",
    )
    # The summary and the report say how many the threshold left to pick from: 6 frames and
    # img6, img7 of every candidate (the candidates without a value fail it).
    (t,) = res.thresholds
    assert t == {
        "strategy": "THRESHOLD(METADATA:lightness)",
        "operation": "BIGGER",
        "threshold": 0.5,
        "kept": 8,
        "of": res.counts["frames_embedded"],
        "without_value": t["without_value"],
    }
    assert _report(res)["thresholds"] == [t]
    f = _selection_file(tmp_path, *(s.to_lightly() for s in sel.strategies))
    r = cli("run", lbucket, "--pool", tmp_path / "again", "--selection", f, "--n-samples", "20")
    assert r.returncode == 0, r.stderr
    kept = f"threshold THRESHOLD(METADATA:lightness) BIGGER 0.5 kept 8 of {t['of']} candidates"
    assert kept in r.stdout.splitlines(), r.stdout


def test_balance_to_a_target_counts_the_detections(lbucket: Path, tmp_path: Path) -> None:
    sel = _strategies(
        {
            "input": {"type": "PREDICTIONS", "task": "det", "name": "CLASS_DISTRIBUTION"},
            "strategy": {"type": "BALANCE", "target": {"car": 0.9}},
        },
    )
    res = datapool.run(lbucket, tmp_path / "pool", n_samples=3, strategies=sel.strategies)
    rep = _report(res)
    first = rep["selected"][0]["filename"]
    stem = first.rsplit(".", 1)[0]
    doc = json.loads((lbucket / f".lightly/predictions/det/{stem}.json").read_text())
    assert any(b["category_id"] == 0 for b in doc["predictions"])  # a car first


def test_similarity_to_a_tag_of_the_pool(lbucket: Path, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    first = datapool.run(lbucket, pool, n_samples=2)
    write_media(lbucket / "late0.jpg", seed=0)  # the same scene as img0
    write_media(lbucket / "late1.jpg", seed=50)
    sel = _strategies(
        {
            "input": {"type": "EMBEDDINGS", "tag_name": "initial-tag"},
            "strategy": {"type": "SIMILARITY"},
        },
    )
    res = datapool.run(lbucket, pool, n_samples=1, strategies=sel.strategies)
    rep = _report(res)
    sim = rep["selected"][0]["strategies"]["SIMILARITY(EMBEDDINGS:initial-tag)"]
    assert 0.0 <= sim <= 1.0
    assert first.selected


def test_malformed_predictions_name_the_file(lbucket: Path, tmp_path: Path) -> None:
    (lbucket / ".lightly/predictions/cls/img1.json").write_text("{oops")
    sel = _strategies(
        {
            "input": {"type": "SCORES", "task": "cls", "score": "uncertainty_entropy"},
            "strategy": {"type": "WEIGHTS"},
        },
    )
    with pytest.raises(SourceError, match=r"cls/img1\.json: not valid JSON"):
        datapool.run(lbucket, tmp_path / "pool", n_samples=2, strategies=sel.strategies)


def test_the_selection_flag(lbucket: Path, tmp_path: Path) -> None:
    f = tmp_path / "sel.json"
    f.write_text(
        json.dumps(
            {
                "n_samples": 3,
                "strategies": [
                    {
                        "input": {"type": "RANDOM", "random_seed": 1},
                        "strategy": {"type": "WEIGHTS"},
                    },
                    DIV,
                ],
            }
        )
    )
    r = cli("run", lbucket, "--pool", tmp_path / "pool", "--selection", f, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["selected"] == 3
    f.write_text(
        json.dumps(
            {
                "n_samples": 3,
                "strategies": [
                    {
                        "input": {"type": "EMBEDDINGS"},
                        "strategy": {"type": "DIVERSITY", "strenght": 2},
                    }
                ],
            }
        )
    )
    r = cli("run", lbucket, "--pool", tmp_path / "pool", "--selection", f)
    assert r.returncode != 0
    assert str(f) in r.stderr and "strenght" in r.stderr and "Traceback" not in r.stderr


def test_the_pool_keeps_the_inputs_balance_counts(lbucket: Path, tmp_path: Path) -> None:
    from datapool.pool.layout import STRATEGY_INPUTS_NAME

    pool = tmp_path / "pool"
    sel = _strategies(
        {
            "input": {"type": "PREDICTIONS", "task": "det", "name": "CLASS_DISTRIBUTION"},
            "strategy": {"type": "BALANCE", "target": {"car": 0.9}},
        },
        DIV,
    )
    first = datapool.run(lbucket, pool, n_samples=3, strategies=sel.strategies)
    stored = json.loads((pool / STRATEGY_INPUTS_NAME).read_text())["samples"]
    assert set(stored) == set(first.selected)
    key = "predictions:det:CLASS_DISTRIBUTION"
    assert all(set(stored[n][key]) <= {"car", "person", "bike"} for n in first.selected)
    # A second run sees the pool's classes: its balance gains come from the stored counts.
    write_media(lbucket / "late.jpg", seed=60)
    _put(
        lbucket,
        ".lightly/predictions/det/late.json",
        {
            "file_name": "late.jpg",
            "predictions": [{"category_id": 0, "bbox": [0, 0, 1, 1], "score": 0.5}],
        },
    )
    second = datapool.run(lbucket, pool, n_samples=1, strategies=sel.strategies)
    stored = json.loads((pool / STRATEGY_INPUTS_NAME).read_text())["samples"]
    assert set(stored) == {*first.selected, *second.selected}
    from datapool.pool.local import LocalStore

    with LocalStore(pool).session() as s:
        cols, classes = s.strategy_inputs(first.selected)
    counts = cols[key].sum(axis=0)
    assert counts.sum() > 0 and classes[key]


def test_a_merge_keeps_both_pools_inputs(lbucket: Path, tmp_path: Path) -> None:
    import shutil

    from datapool.pool.layout import STRATEGY_INPUTS_NAME

    sel = _strategies(
        {
            "input": {"type": "PREDICTIONS", "task": "det", "name": "CLASS_DISTRIBUTION"},
            "strategy": {"type": "BALANCE", "target": {"car": 0.9}},
        },
        DIV,
    )
    other = tmp_path / "other"
    shutil.copytree(lbucket, other)  # another source with the same names: B's get a prefix
    a = datapool.run(lbucket, tmp_path / "a", n_samples=3, strategies=sel.strategies)
    b = datapool.run(other, tmp_path / "b", n_samples=3, strategies=sel.strategies)
    merged = datapool.merge(tmp_path / "a", tmp_path / "b", tmp_path / "c")
    stored = json.loads((tmp_path / "c" / STRATEGY_INPUTS_NAME).read_text())["samples"]
    assert set(stored) == set(merged.filenames)
    key = "predictions:det:CLASS_DISTRIBUTION"
    b_stored = json.loads((tmp_path / "b" / STRATEGY_INPUTS_NAME).read_text())["samples"]
    for name in b.selected:
        assert stored[name if name not in a.selected else f"b/{name}"][key] == b_stored[name][key]


def test_the_summary_compares_the_classes_with_the_target(lbucket: Path, tmp_path: Path) -> None:
    f = tmp_path / "sel.json"
    f.write_text(
        json.dumps(
            {
                "n_samples": 4,
                "strategies": [
                    {
                        "input": {
                            "type": "PREDICTIONS",
                            "task": "cls",
                            "name": "CLASS_DISTRIBUTION",
                        },
                        "strategy": {"type": "BALANCE", "target": {"car": 0.6}},
                    },
                    DIV,
                ],
            }
        )
    )
    r = cli("run", lbucket, "--pool", tmp_path / "pool", "--selection", f)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("balance"))
    assert "BALANCE(PREDICTIONS:cls:CLASS_DISTRIBUTION)" in lines[at]
    assert lines[at + 1].split() == [
        "class",
        "target",
        "pool",
        "before",
        "this",
        "run",
        "pool",
        "after",
    ]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[at + 2 : at + 5]}
    assert set(rows) == {"car", "person", "bike"}
    assert rows["car"][0] == "60.0%" and rows["person"][0] == "20.0%"
    assert rows["car"][1] == "-"  # an empty pool has no shares before the run
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    html = (tmp_path / "pool" / "runs" / "0" / "report.html").read_text()
    assert "Class balance: BALANCE(PREDICTIONS:cls:CLASS_DISTRIBUTION)" in html
    picked = sum(c["picked"] for c in report["balance"][0]["classes"])
    assert picked == pytest.approx(1.0)


def test_a_yaml_selection_without_pyyaml_says_to_install_it(tmp_path: Path, monkeypatch) -> None:
    import sys

    from datapool.errors import ConfigError

    f = tmp_path / "sel.yaml"
    f.write_text("n_samples: 3\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    with pytest.raises(ConfigError, match=r"--selection .*sel\.yaml: .*PyYAML.*pip install pyyaml"):
        SelectionConfig.from_file(f)


def test_a_selection_file_that_is_not_yaml_is_one_line_saying_where(tmp_path: Path) -> None:
    f = tmp_path / "sel.yaml"
    f.write_text(
        "n_samples: 3\nstrategies:\n  - input: {type: EMBEDDINGS\n    strategy: {type: DIVERSITY}\n"
    )
    r = cli("run", tmp_path, "--pool", tmp_path / "pool", "--selection", f)
    assert r.returncode == 4
    assert r.stderr == (
        f"datapool: error: {f}: not valid YAML (line 4, column 13: expected ',' or '}}', but got "
        "':', while parsing a flow mapping at line 3, column 12)\n"
    )


def _runs_of(selected: list[str], length: int) -> list[list[int]]:
    """The selected frames per video as sorted frame numbers, cut into runs of `length`."""
    from datapool.naming import frame_index, video_key_of

    per: dict[str, list[int]] = {}
    for name in selected:
        video = video_key_of(name)
        assert video is not None, f"{name} is not a video frame"
        per.setdefault(video, []).append(frame_index(name, video))
    out = []
    for frames in per.values():
        frames.sort()
        out += [frames[i : i + length] for i in range(0, len(frames), length)]
    return out


@pytest.mark.parametrize("diversity_only", [True, False])
def test_sequence_selection_picks_runs_of_consecutive_frames(
    tmp_path: Path, diversity_only: bool
) -> None:
    src = tmp_path / "src"
    write_media(src / "a.mp4", seed=1, frames=10)  # 3 sequences of 3, frame 9 left out
    write_media(src / "b.mp4", seed=2, frames=7)  # 2 sequences, frame 6 left out
    write_media(src / "img.jpg", seed=3)  # images are not selected in sequence mode
    strategies = (
        ()
        if diversity_only
        else SelectionConfig.from_lightly(
            {
                "n_samples": 1,
                "strategies": [
                    {
                        "input": {"type": "RANDOM", "random_seed": 7},
                        "strategy": {"type": "WEIGHTS"},
                    },
                    DIV,
                ],
            }
        ).strategies
    )
    res = datapool.run(
        src, tmp_path / "pool", n_samples=9, selected_sequence_length=3, strategies=strategies
    )
    assert len(res.selected) == 9 and "img.jpg" not in res.selected
    runs = _runs_of(res.selected, 3)
    assert len(runs) == 3
    for run in runs:  # whole sequences: 3 consecutive frames starting at a multiple of 3
        assert len(run) == 3 and run[0] % 3 == 0 and run == list(range(run[0], run[0] + 3))
    rep = _report(res)
    assert [p["strategies"] for p in rep["selected"][:3]] == [rep["selected"][0]["strategies"]] * 3
    # The budget counts frames: a proportion rounds up to whole sequences.
    more = datapool.run(src, tmp_path / "pool2", proportion_samples=0.3, selected_sequence_length=3)
    assert len(more.selected) == 6  # 30% of the 15 frames in sequences: 5 -> 2 sequences


def test_sequence_selection_needs_n_samples_a_multiple_of_the_length(tmp_path: Path) -> None:
    from datapool.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"n_samples \(5\) .* multiple of selected_sequence_length \(3\)"
    ):
        datapool.RunConfig(n_samples=5, selected_sequence_length=3)
    with pytest.raises(ConfigError, match="selected_sequence_length must be an integer >= 1"):
        datapool.RunConfig(n_samples=5, selected_sequence_length=0)


def test_sequence_selection_balance_counts_frames(lbucket: Path, tmp_path: Path) -> None:
    sel = _strategies(
        {
            "input": {"type": "PREDICTIONS", "task": "cls", "name": "CLASS_DISTRIBUTION"},
            "strategy": {"type": "BALANCE", "target": {"car": 0.6}},
        },
        DIV,
    )
    res = datapool.run(
        lbucket,
        tmp_path / "pool",
        n_samples=3,
        selected_sequence_length=3,
        strategies=sel.strategies,
    )
    assert len(_runs_of(res.selected, 3)) == 1
    (balance,) = res.balance
    assert balance["counted"] == {"pool_before": 0.0, "picked": 3.0}
    assert sum(c["count_after"] for c in balance["classes"]) == pytest.approx(3.0)
    assert sum(c["pool_after"] for c in balance["classes"]) == pytest.approx(1.0, abs=1e-5)
    # A second run in sequence mode counts the pool's 3 frames as 3 frames.
    write_media(lbucket / "cam" / "clip2.mp4", seed=31, frames=3)
    for i in range(3):
        _put(
            lbucket,
            f".lightly/predictions/cls/cam/clip2-{i}-mp4.json",
            {
                "file_name": f"cam/clip2-{i}-mp4.png",
                "predictions": [{"category_id": 1, "probabilities": [0.0, 1.0, 0.0]}],
            },
        )
    again = datapool.run(
        lbucket,
        tmp_path / "pool",
        n_samples=3,
        selected_sequence_length=3,
        strategies=sel.strategies,
    )
    assert sorted(again.selected) == [f"cam/clip2-{i}-mp4.png" for i in range(3)]
    (balance,) = again.balance
    assert balance["counted"] == pytest.approx({"pool_before": 3.0, "picked": 3.0})
    person = next(c for c in balance["classes"] if c["class"] == "person")
    assert person["picked"] == 1.0
    assert person["count_after"] == pytest.approx(3.0 + 3.0 * (person["pool_before"] or 0.0))


def test_the_sequence_length_flag(tmp_path: Path) -> None:
    write_media(tmp_path / "src" / "a.mp4", seed=1, frames=6)
    args = ("run", tmp_path / "src", "--pool", tmp_path / "pool", "--selected-sequence-length", "3")
    r = cli(*args, "--n-samples", "4")
    assert (
        r.returncode == 4 and "multiple of --selected-sequence-length (3), such as 3" in r.stderr
    ), r.stderr
    r = cli(*args, "--n-samples", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["selected"] == 3


# --- what a user coming from the Lightly Worker gets wrong -------------------------------------


def _selection_file(tmp_path: Path, *entries: dict, n_samples: int = 5) -> Path:
    f = tmp_path / "sel.json"
    f.write_text(json.dumps({"n_samples": n_samples, "strategies": list(entries)}))
    return f


def test_thresholds_that_keep_no_candidate_stop_before_committing(
    lbucket: Path, tmp_path: Path
) -> None:
    # Lightly's older docs threshold object_frequency at 2 ("at least 2 objects"); its scorer
    # (and ours) is in 0.9..1.
    pool = tmp_path / "pool"
    freq = {"type": "SCORES", "task": "det", "score": "object_frequency"}
    f = _selection_file(
        tmp_path,
        {"input": freq, "strategy": {"type": "THRESHOLD", "threshold": 2, "operation": "BIGGER"}},
    )
    r = cli("run", lbucket, "--pool", pool, "--selection", f)
    assert r.returncode == 4, r.stderr
    assert "strategy THRESHOLD BIGGER 2 on a SCORES input keeps no sample" in r.stderr
    assert "scores are 0 to 1" in r.stderr and "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if "error" in line]) == 1
    assert not pool.exists()  # refused as the config was read: no pool made
    # A threshold inside the range that no candidate passes, on a pool's first run: a mistake
    # in the config or the predictions, stopped before committing.
    # (The boxes have no probabilities: their uncertainty_entropy is 0.)
    ent = {"type": "SCORES", "task": "det", "score": "uncertainty_entropy"}
    none_pass = _strategies(
        {"input": ent, "strategy": {"type": "THRESHOLD", "threshold": 0.5, "operation": "BIGGER"}}
    )
    with pytest.raises(ConfigError, match=r"BIGGER 0.5 keeps 0 \(values "):
        datapool.run(lbucket, pool, n_samples=5, strategies=none_pass.strategies)
    assert not (pool / "ledger.csv").exists()  # nothing committed: every file is still new
    fixed = _strategies(
        {"input": freq, "strategy": {"type": "THRESHOLD", "threshold": 0.5, "operation": "BIGGER"}}
    )
    res = datapool.run(lbucket, pool, n_samples=5, strategies=fixed.strategies)
    assert res.selected and res.counts["new"] == 9
    # The pool has samples: a later run whose new files all fail the threshold commits, selects
    # none and says why (a nightly run must not fail on a day of files below the threshold).
    write_media(lbucket / "later.png", seed=77)
    later = datapool.run(lbucket, pool, n_samples=5, strategies=none_pass.strategies)
    assert later.run_index == 1 and later.selected == [] and later.counts["new"] == 1
    assert later.stop_reason.startswith(
        "the selection strategies leave none of the 1 candidates to pick: "
        "THRESHOLD(SCORES:det:uncertainty_entropy) BIGGER 0.5 keeps 0"
    ), later.stop_reason


def test_weights_without_a_value_for_any_candidate_stop_before_committing(
    lbucket: Path, tmp_path: Path
) -> None:
    # Predictions written for other file names: no candidate has a score.
    for p in (lbucket / ".lightly/predictions/cls").rglob("*.json"):
        if p.name != "schema.json":
            p.rename(p.with_name("x" + p.name))
    sel = _strategies(
        {
            "input": {"type": "SCORES", "task": "cls", "score": "uncertainty_margin"},
            "strategy": {"type": "WEIGHTS"},
        },
    )
    with pytest.raises(
        ConfigError,
        match=r"WEIGHTS\(SCORES:cls:uncertainty_margin\) has a usable "
        r"value for 0 \(no values\)",
    ):
        datapool.run(lbucket, tmp_path / "pool", n_samples=5, strategies=sel.strategies)
    assert not (tmp_path / "pool" / "ledger.csv").exists()


def test_samples_without_predictions_are_a_warning_naming_the_file_looked_for(
    lbucket: Path, tmp_path: Path
) -> None:
    # Frame predictions written with the frame number padded to 3 digits: Lightly pads it to
    # the digits of the frame count (6 frames: 1 digit), so no frame has predictions.
    folder = lbucket / ".lightly/predictions/cls/cam"
    for p in folder.glob("clip-*-mp4.json"):
        i = int(p.name.split("-")[1])
        p.rename(folder / f"clip-{i:03d}-mp4.json")
    sel = _strategies(
        {
            "input": {"type": "SCORES", "task": "cls", "score": "uncertainty_margin"},
            "strategy": {"type": "WEIGHTS"},
        },
        DIV,
    )
    res = datapool.run(lbucket, tmp_path / "pool", n_samples=5, strategies=sel.strategies)
    notes = [w for w in res.warnings if "no predictions for task 'cls'" in w]
    assert len(notes) == 1
    assert notes[0].startswith("7 of 14 candidates have no predictions for task 'cls'")
    assert "looked for .lightly/predictions/cls/cam/clip-0-mp4.json" in notes[0]
    assert "img7.jpg" not in notes[0]  # the first missing sample is named, in name order


def test_balance_counts_the_classes_of_a_pool_grown_without_strategies(
    lbucket: Path, tmp_path: Path
) -> None:
    # The pool counts as selected: its samples' classes count even though the run that picked
    # them used diversity alone (so the pool stored no inputs for them).
    pool = tmp_path / "pool"
    first = datapool.run(lbucket, pool, n_samples=4)
    known = [n for n in first.selected if n != "img7.jpg"]  # img7 has no predictions
    for i in range(2):
        write_media(lbucket / f"late{i}.jpg", seed=60 + i)
        _put(
            lbucket,
            f".lightly/predictions/det/late{i}.json",
            {"file_name": f"late{i}.jpg", "predictions": [{"category_id": 1, "score": 0.9}]},
        )
    sel = _strategies(
        {
            "input": {"type": "PREDICTIONS", "task": "det", "name": "CLASS_DISTRIBUTION"},
            "strategy": {"type": "BALANCE", "target": {"car": 0.5, "person": 0.5}},
        },
    )
    res = datapool.run(lbucket, pool, n_samples=1, strategies=sel.strategies)
    (bal,) = _report(res)["balance"]
    assert bal["counted"]["pool_before"] == pytest.approx(len(known))
    assert all(c["pool_before"] is not None for c in bal["classes"])
    # What it read for the pool's samples is stored: the next run does not read it again (in a
    # bucket, a GET per pool sample every run), so their files may go and they still count.
    for name in known:
        (lbucket / ".lightly/predictions/det" / name).with_suffix(".json").unlink()
    write_media(lbucket / "late9.jpg", seed=69)
    _put(
        lbucket,
        ".lightly/predictions/det/late9.json",
        {"file_name": "late9.jpg", "predictions": [{"category_id": 0, "score": 0.9}]},
    )
    again = datapool.run(lbucket, pool, n_samples=1, strategies=sel.strategies)
    (bal,) = _report(again)["balance"]
    assert bal["counted"]["pool_before"] == pytest.approx(len(known) + 1)


def test_a_run_named_with_tag_is_found_by_similarity_and_kept_by_merge(
    lbucket: Path, tmp_path: Path
) -> None:
    """--tag names a run's selection (Lightly's tags): SIMILARITY's tag_name finds it, a second
    run may not take the name, the automatic names are reserved, and merge keeps the name."""
    from .test_cli import tree_digest

    pool = tmp_path / "pool"
    first = datapool.run(lbucket, pool, n_samples=2, tag="hard-cases")
    assert first.tag == "hard-cases" and Pool.open(pool).runs[0]["tag"] == "hard-cases"
    write_media(lbucket / "late0.jpg", seed=0)
    before = tree_digest(pool)
    again = cli("run", lbucket, "--pool", pool, "--n-samples", "1", "--tag", "hard-cases")
    assert again.returncode == 4, again.stderr
    assert again.stderr == (
        "datapool: error: --tag hard-cases: run 0 of the pool is already called that; "
        "choose another name\n"
    )
    for bad, why in (("run-3", "is a name datapool gives runs"), (" x", "without spaces")):
        r = cli("run", lbucket, "--pool", pool, "--n-samples", "1", "--tag", bad)
        assert r.returncode == 4 and why in r.stderr, r.stderr
    assert tree_digest(pool) == before
    # ls and export take the name where they take a run's index
    listed = cli("ls", pool, "--run", "hard-cases", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["filename"] for row in json.loads(listed.stdout)) == sorted(first.selected)
    unknown = cli("ls", pool, "--run", "nope")
    assert unknown.returncode == 4
    assert unknown.stderr == "datapool: error: --run nope: the pool has one run, 0 (hard-cases)\n"
    out = tmp_path / "out"
    exported = cli("export", pool, out, "--run", "hard-cases")
    assert exported.returncode == 0, exported.stderr
    assert sorted((out / "selected_filenames.txt").read_text().split()) == sorted(first.selected)
    sel = _strategies(
        {
            "input": {"type": "EMBEDDINGS", "tag_name": "hard-cases"},
            "strategy": {"type": "SIMILARITY"},
        },
    )
    res = datapool.run(lbucket, pool, n_samples=1, strategies=sel.strategies)
    assert res.tag == "run-1"
    assert "SIMILARITY(EMBEDDINGS:hard-cases)" in _report(res)["selected"][0]["strategies"]
    # merge keeps a name only one of the pools uses; the other runs are renumbered
    other = tmp_path / "other"
    datapool.run(lbucket, other, n_samples=2, tag="night")
    merged = datapool.merge(pool, other, tmp_path / "merged")
    assert [r["tag"] for r in merged.runs] == ["hard-cases", "run-1", "night"]
    shutil.copytree(pool, tmp_path / "copy")  # both use the name: neither keeps it
    twice = datapool.merge(pool, tmp_path / "copy", tmp_path / "twice")
    assert [r["tag"] for r in twice.runs] == ["initial-tag", "run-1", "run-2", "run-3"]


def test_two_images_of_one_name_never_take_each_others_predictions_or_metadata(
    lbucket: Path, tmp_path: Path
) -> None:
    # img3.jpg and img3.png share Lightly's per-file name img3.json. The file says it is
    # img3.png's (file_name), but img3.jpg was scored from it too: a silent wrong input.
    write_media(lbucket / "img3.png", seed=40)
    cls = json.loads((lbucket / ".lightly/predictions/cls/img3.json").read_text())
    cls["file_name"] = "img3.png"
    _put(lbucket, ".lightly/predictions/cls/img3.json", cls)
    meta = json.loads((lbucket / ".lightly/metadata/img3.json").read_text())
    meta["file_name"] = "img3.png"
    _put(lbucket, ".lightly/metadata/img3.json", meta)
    sel = _strategies(
        {
            "input": {"type": "SCORES", "task": "cls", "score": "uncertainty_margin"},
            "strategy": {"type": "WEIGHTS"},
        },
        {"input": {"type": "METADATA", "key": "lightness"}, "strategy": {"type": "WEIGHTS"}},
        DIV,
    )
    res = datapool.run(lbucket, tmp_path / "pool", n_samples=15, strategies=sel.strategies)
    missing = {
        (m["sample"], m["reason"].split(" (")[0]) for m in _report(res)["strategy_inputs_missing"]
    }
    assert ("img3.jpg", "no predictions for task 'cls' of its own") in missing
    assert ("img3.jpg", "no metadata file of its own") in missing
    assert not any(s == "img3.png" for s, _ in missing)
    notes = [w for w in res.warnings if "of its own" in w]
    assert len(notes) == 2 and all("img3.json is for img3.png, its file_name" in w for w in notes)
    assert "img3.jpg" not in res.selected  # no score of its own: no weight
    # Without a file_name that says whose it is, neither image takes it.
    for rel in (".lightly/predictions/cls/img3.json", ".lightly/metadata/img3.json"):
        doc = json.loads((lbucket / rel).read_text())
        doc.pop("file_name", None)
        _put(lbucket, rel, doc)
    res = datapool.run(lbucket, tmp_path / "pool2", n_samples=15, strategies=sel.strategies)
    missing = {m["sample"] for m in _report(res)["strategy_inputs_missing"]}
    assert {"img3.jpg", "img3.png"} <= missing


def test_a_selection_file_without_a_budget_takes_the_flags(lbucket: Path, tmp_path: Path) -> None:
    # docs/selection.md: "with --selection, the flags override the file's budget"; a file of
    # strategies alone, with --n-samples, was refused as having "no selection budget".
    f = tmp_path / "sel.json"
    f.write_text(json.dumps({"strategies": [DIV]}))
    r = cli("run", lbucket, "--pool", tmp_path / "pool", "--selection", f, "--n-samples", "3")
    assert r.returncode == 0, r.stderr
    assert len(Pool.open(tmp_path / "pool").filenames) == 3
    # ... and a flag's --min-distance goes into the file's DIVERSITY (the same as a file's own)
    sel = SelectionConfig.from_file(f, {"n_samples": 3, "min_distance": 0.2})
    assert (sel.n_samples, sel.min_distance) == (3, 0.2)
    # Neither gives one: still refused, in one line naming the file.
    r = cli("run", lbucket, "--pool", tmp_path / "other", "--selection", f)
    assert r.returncode == 4
    assert "sel.json: no selection budget: give n_samples (--n-samples)" in r.stderr


def _weighted_bucket(root: Path, weights: dict[str, float], seed0: int = 0) -> None:
    """Images named as `weights`'s keys, with a NUMERIC_FLOAT metadata `w` of that value."""
    _put(
        root,
        ".lightly/metadata/schema.json",
        [{"name": "w", "path": "w", "defaultValue": 0.0, "valueDataType": "NUMERIC_FLOAT"}],
    )
    for j, (name, w) in enumerate(weights.items()):
        write_media(root / name, seed=seed0 + j)
        stem = name.rsplit(".", 1)[0]
        _put(
            root,
            f".lightly/metadata/{stem}.json",
            {"file_name": name, "type": "image", "metadata": {"w": w}},
        )


def test_candidates_of_weight_0_fill_the_budget_by_diversity(tmp_path: Path) -> None:
    # DIVERSITY + WEIGHTS with n_samples 6 and 3 candidates of a positive weight: the run
    # selected 3 ("stopped: no positive objective"). Lightly's stopping conditions are the
    # budget and the minimum distance: the other 3 now come from the candidates of weight 0,
    # the most diverse first, and the summary says so.
    src, pool = tmp_path / "src", tmp_path / "pool"
    _weighted_bucket(src, {f"img{i}.jpg": (0.5 if i < 3 else 0.0) for i in range(8)})
    sel = tmp_path / "sel.json"
    w = {"input": {"type": "METADATA", "key": "w"}, "strategy": {"type": "WEIGHTS"}}
    sel.write_text(json.dumps({"n_samples": 6, "strategies": [DIV, w]}))
    p = cli("run", src, "--pool", pool, "--selection", sel, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "selected  6 as initial-tag (stopped: budget)" in p.stdout
    assert (
        "zero      5 candidates of objective 0 (WEIGHTS(METADATA:w)): 3 of the picks are "
        "theirs, the most diverse, to fill the budget" in p.stdout
    ), p.stdout
    report = json.loads((pool / "runs" / "0" / "report.json").read_text())
    picks = report["selected"]
    assert [s["strategies"]["WEIGHTS(METADATA:w)"] for s in picks] == [0.5] * 3 + [0.0] * 3
    assert all(s["strategies"]["product"] > 0 for s in picks[:3])
    assert all(s["strategies"]["product"] == 0 for s in picks[3:])
    fill = [s["min_distance"] for s in picks[3:]]
    assert fill == sorted(fill, reverse=True) and fill[-1] > 0  # farthest first, no duplicate
    assert report["zero_objective"] == {
        "candidates": 5,
        "strategies": ["WEIGHTS(METADATA:w)"],
        "filled": 3,
        "without_value": 0,
        "without_value_strategies": [],
    }
    page = (pool / "runs" / "0" / "report.html").read_text()
    assert "5 candidates of objective 0 (WEIGHTS(METADATA:w)): 3 of the picks are theirs" in page
    # A later run whose new candidates all weigh 0 fills its budget from them too (it
    # selected none, naming the weights).
    _weighted_bucket(src, {f"new{i}.jpg": 0.0 for i in range(3)}, seed0=20)
    p = cli("run", src, "--pool", pool, "--selection", sel, "--n-samples", "2", "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "selected  2 as run-1 (stopped: budget)" in p.stdout, p.stdout
    assert "zero      3 candidates of objective 0 (WEIGHTS(METADATA:w)): 2 of the picks" in p.stdout
    assert len(Pool.open(pool)) == 8
    # A pool's first run where no candidate weighs more than 0 still stops: a mistake in the
    # config or the metadata, before anything is committed.
    p = cli(
        "run",
        src,
        "--pool",
        tmp_path / "other",
        "--selection",
        sel,
        "--no-progress",
        "--include",
        "new*",
    )
    assert p.returncode == 4 and "leave none of the 3 candidates" in p.stderr, p.stderr


def test_one_candidate_of_objective_0_is_counted_in_the_singular(capsys) -> None:
    # The summary and report.html said "1 candidates of objective 0 (...): 1 of the picks are
    # theirs", and the page "0 of the picks are theirs ... to fill the budget" where none was.
    from datapool.cli import _print_zero_objective
    from datapool.report_html import _zero_objective_html

    w = ["WEIGHTS(METADATA:w)"]
    z = {"candidates": 1, "strategies": w, "filled": 1, "without_value": 1}
    z["without_value_strategies"] = w
    _print_zero_objective(z, "budget")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "zero      1 candidate of objective 0 (WEIGHTS(METADATA:w)): 1 of the picks is theirs, "
        "the most diverse, to fill the budget",
        "no value  1 candidate without a value for WEIGHTS(METADATA:w): never picked",
    ]
    page = _zero_objective_html(z)
    assert "<li>1 candidate of objective 0 (WEIGHTS(METADATA:w)): 1 of the picks is theirs" in page
    assert "<li>1 candidate without a value for WEIGHTS(METADATA:w): never picked</li>" in page
    page = _zero_objective_html({**z, "candidates": 2, "filled": 0})
    assert "2 candidates of objective 0 (WEIGHTS(METADATA:w)): none picked</li>" in page
