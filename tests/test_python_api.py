"""The Python API as a notebook user calls it: wrong types, misspelled options, NumPy scalars and
arrays. A mistake is one DatapoolError (or the TypeError / ValueError of an array check) naming
the argument and the fix, never a bare error from deep inside, nor a silent wrong result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool import ConfigError, ModelError, RunConfig
from datapool.strategies import Diversity, Embeddings, SelectionStrategy


@pytest.fixture
def few(tmp_path: Path, make_media) -> Path:
    root = tmp_path / "few"
    for i in range(3):
        make_media(root / f"img{i}.jpg", seed=i)
    return root


def test_a_misspelled_option_names_the_nearest_field(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown option 'n_sample'; did you mean n_samples\?"):
        datapool.run(tmp_path / "src", tmp_path / "pool", n_sample=3)
    with pytest.raises(TypeError, match="unknown option 'zzz'"):  # also Python's own kind
        datapool.run(tmp_path / "src", tmp_path / "pool", n_samples=3, zzz=1)
    assert not (tmp_path / "pool").exists()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        # a truthy string would silently make a dry run, rebuild the pool, draw progress...
        ("dry_run", "false", "dry_run must be True or False, got 'false'"),
        ("process_all", "yes", "process_all must be True or False, got 'yes'"),
        ("keep_history", 1, "keep_history must be True or False, got 1"),
        ("progress", "no", "progress must be True, False or None, got 'no'"),
        # ...and these failed with a TypeError from inside a check
        ("threads", "2", "threads must be an integer, got '2'"),
        ("s3_concurrency", "4", "s3_concurrency must be an integer, got '4'"),
        ("batch_size", True, "batch_size must be an integer, got True"),
        ("export", 5, "export must be a string or None, got 5"),
        ("s3_endpoint_url", 5, "s3_endpoint_url must be a string or None, got 5"),
        # (fields whose own check refuses other types keep its message)
        ("n_samples", 3.0, "n_samples must be an integer >= 1, got 3.0"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_config_error(tmp_path, field, value, says):
    kw = {"n_samples": 3, field: value}
    with pytest.raises(ConfigError, match=f"^{says}$".replace("?", r"\?")):
        RunConfig(**kw)
    with pytest.raises(ConfigError, match="^" + says.replace("?", r"\?")):
        datapool.run(tmp_path / "src", tmp_path / "pool", **kw)


def test_numpy_scalars_count_as_their_values(few, tmp_path):
    cfg = RunConfig(
        proportion_samples=np.float32(0.5), frame_stride=np.int64(2), thumbnails=np.bool_(False)
    )
    assert cfg.proportion_samples == 0.5 and type(cfg.proportion_samples) is float
    assert type(cfg.frame_stride) is int and cfg.thumbnails is False
    json.dumps(cfg.to_json())  # recorded in runs.json as plain numbers
    r = datapool.run(few, tmp_path / "pool", n_samples=np.int64(2), batch_size=np.int32(4))
    assert len(r.selected) == 2 and r.counts["selected"] == 2


@pytest.mark.parametrize("value", [None, 3, b"/tmp/somewhere"])
def test_source_and_pool_of_the_wrong_type(tmp_path, value):
    with pytest.raises(ConfigError, match=r"^source must be a folder path .*got "):
        datapool.run(value, tmp_path / "pool", n_samples=1)
    with pytest.raises(ConfigError, match=r"^pool must be a folder path .*got "):
        datapool.run(tmp_path, value, n_samples=1)


@pytest.mark.parametrize("config", [{"n_samples": 3}, 3])
def test_config_must_be_a_run_config(tmp_path, config):
    with pytest.raises(ConfigError, match=r"^config must be a datapool.RunConfig, got "):
        datapool.run(tmp_path, tmp_path / "pool", config)


def test_a_model_given_as_a_path(few, tmp_path):
    assert RunConfig(n_samples=1, model=Path("/m/x.onnx")).model == "/m/x.onnx"
    with pytest.raises(ModelError, match=r"model file .*nope.onnx does not exist"):
        datapool.run(few, tmp_path / "pool", n_samples=1, model=tmp_path / "nope.onnx")


def test_strategies_as_lightly_dicts(tmp_path):
    given = [
        {
            "input": {"type": "EMBEDDINGS"},
            "strategy": {"type": "DIVERSITY", "stopping_condition_minimum_distance": 0.2},
        }
    ]
    cfg = RunConfig(n_samples=3, strategies=given)
    typed = RunConfig(n_samples=3, strategies=(SelectionStrategy(Embeddings(), Diversity(0.2)),))
    assert cfg.selection == typed.selection and cfg.selection.min_distance == 0.2
    with pytest.raises(ConfigError, match=r"strategies\[0\] must be a datapool.strategies"):
        RunConfig(n_samples=3, strategies=["DIVERSITY"])
    with pytest.raises(ConfigError, match=r"^strategies must be a list"):
        RunConfig(n_samples=3, strategies="DIVERSITY")


# -- select_diverse on a user's arrays ---------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_rows_that_are_not_unit_length_are_refused(rng):
    """Raw model outputs (lengths far from 1) were silently selected by the Euclidean distance
    of the raw vectors: other picks than their directions give, and a min_distance on another
    scale than the documented 0..2."""
    x = rng.standard_normal((30, 8)).astype(np.float32)
    scaled = (_unit(x) * rng.uniform(0.2, 20.0, (30, 1))).astype(np.float32)
    with pytest.raises(ValueError, match=r"candidates row 0 has length .*, not 1: .*normalise"):
        datapool.select_diverse(scaled, 5)
    with pytest.raises(ValueError, match=r"selected row 0 has length .*, not 1"):
        datapool.select_diverse(_unit(x), 5, selected=scaled[:3])
    zero = np.vstack([_unit(x), np.zeros((1, 8), np.float32)])
    with pytest.raises(ValueError, match="candidates row 30 has length 0, not 1"):
        datapool.select_diverse(zero, 5)
    # normalised as the message says: the picks of the directions
    fixed = scaled / np.linalg.norm(scaled, axis=1, keepdims=True)
    want = datapool.select_diverse(_unit(x), 5)
    got = datapool.select_diverse(fixed.astype(np.float32), 5)
    assert got.indices.tolist() == want.indices.tolist()
    # the plain Euclidean distance, when asked for
    raw = datapool.select_diverse(scaled, 5, check_unit_rows=False)
    assert len(raw) == 5 and float(raw.min_distances[1]) > 2.0


def test_unit_rows_rounded_to_float16_pass(rng):
    x = _unit(rng.standard_normal((50, 16))).astype(np.float16).astype(np.float32)
    assert len(datapool.select_diverse(x, 10)) == 10


def test_a_min_distance_that_is_not_a_number(rng):
    x = _unit(rng.standard_normal((5, 4)))
    with pytest.raises(TypeError, match=r"min_distance must be a number or None, got '0\.5'"):
        datapool.select_diverse(x, 2, min_distance="0.5")  # type: ignore[arg-type]
    assert len(datapool.select_diverse(x, 5, min_distance=np.float32(0.01))) == 5


def test_a_result_and_a_pool_show_as_one_line(few, tmp_path):
    """A notebook shows the last value of a cell: `result` and `pool` printed every selected
    name, the model line, every run's config and the whole embeddings array (a pool of 100,000
    samples: 100,000 names)."""
    r = datapool.run(few, tmp_path / "pool", n_samples=2)
    text = repr(r)
    assert text.startswith("RunResult(pool=") and "\n" not in text and len(text) < 250
    for part in ("run_index=0", "tag='initial-tag'", "selected=2", "stop_reason='budget'"):
        assert part in text
    assert not any(name in text for name in r.selected)  # counts, not the names
    pool = datapool.Pool.open(tmp_path / "pool")
    assert repr(pool) == (
        f"Pool({str(tmp_path / 'pool')!r}, 2 samples, {pool.embeddings.shape[1]}-d, 1 run, "
        "3 files in the ledger)"
    )


def test_merge_and_collect_garbage_arguments_of_the_wrong_type(few, tmp_path):
    datapool.run(few, tmp_path / "a", n_samples=2)
    datapool.run(few, tmp_path / "b", n_samples=1, include=["img2.jpg"])
    # reselect="3": a TypeError from a comparison; 2.5: one that named n_samples
    for bad in ("3", 2.5):
        with pytest.raises(ConfigError, match=f"^reselect must be an integer >= 1, got {bad!r}"):
            datapool.merge(tmp_path / "a", tmp_path / "b", tmp_path / "m", reselect=bad)
    merged = datapool.merge(tmp_path / "a", tmp_path / "b", tmp_path / "m", reselect=np.int64(2))
    assert len(merged) == 2
    with pytest.raises(ConfigError, match=r"^older_than_s must be a number of seconds, got '1'"):
        datapool.collect_garbage(tmp_path / "a", older_than_s="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^dry_run must be True or False, got 'no'"):
        datapool.collect_garbage(tmp_path / "a", dry_run="no")  # type: ignore[arg-type]
    assert datapool.collect_garbage(tmp_path / "a", older_than_s=np.float32(10)).deleted == []


def test_run_options_for_type_checkers_are_run_configs_fields():
    """`datapool.run(..., **options: Unpack[RunOptions])`: mypy and IDEs name a misspelled
    option (`n_sample=`) and complete the right ones; the TypedDict must stay RunConfig's."""
    from dataclasses import fields

    from datapool.config import RunOptions

    given = {k: getattr(v, "__forward_arg__", v) for k, v in RunOptions.__annotations__.items()}
    assert given == {f.name: f.type for f in fields(RunConfig)}


def test_numpy_arrays_for_tuple_fields(few, tmp_path):
    """mean=np.array([...]) was taken as it was, and the run failed at its commit, after all
    its work, with "Object of type ndarray is not JSON serializable"."""
    mean, std = np.array([0.5, 0.5, 0.5]), np.array([0.25, 0.25, 0.25], np.float32)
    cfg = RunConfig(n_samples=1, mean=mean, std=std, include=np.array(["*.jpg"]))
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.25, 0.25, 0.25)
    assert cfg.include == ("*.jpg",) and type(cfg.include[0]) is str
    r = datapool.run(few, tmp_path / "pool", n_samples=2, mean=mean, std=std)
    assert r.run_index == 0 and len(r.selected) == 2
    runs = json.loads((tmp_path / "pool" / "runs.json").read_text())["runs"]
    assert runs[0]["config"]["mean"] == [0.5, 0.5, 0.5]
    with pytest.raises(ConfigError, match=r"^mean must hold plain numbers and strings, got \("):
        RunConfig(n_samples=1, mean=(object(),) * 3)


def test_a_pool_path_left_none(tmp_path):
    """A variable left None (`os.environ.get("POOL")`): os.fspath's TypeError from inside
    Pool.open, merge and collect_garbage; now the ConfigError run gives."""
    says = r"^{} must be a folder path \(a str or pathlib.Path\) or an s3:// URL, got None$"
    with pytest.raises(ConfigError, match=says.format("pool")):
        datapool.Pool.open(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=says.format("pool")):
        datapool.collect_garbage(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=says.format("b")):
        datapool.merge(tmp_path / "a", None, tmp_path / "m")  # type: ignore[arg-type]
