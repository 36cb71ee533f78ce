"""The one typed configuration of a run, built alike by the CLI and the Python API.

RunConfig takes its settings flat, with Lightly's names where they exist (n_samples,
proportion_samples, min_distance, process_all), so users of that tool feel at home, and so the
CLI, a config file and `datapool.run(..., n_samples=100)` all build it the same way. Each concern
is also a typed object of its own, checked where it is made and handed to the code that needs
it: `selection` (SelectionConfig), `model_spec` (ModelSpec), `ingest` (IngestOptions) and `s3`
(S3Settings). Defaults live here only: the CLI passes what the user gave.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

from datapool.errors import ConfigError, SelectionFileError, UnknownOptionError
from datapool.specs import scheme_of, strip_userinfo
from datapool.strategies import (
    Diversity,
    Embeddings,
    SelectionStrategy,
    crop_task,
    lightly_fields,
    lightly_metadata,
)


@dataclass(frozen=True)
class SelectionConfig:
    """The budget and strategies of a selection, in Lightly's shape (datapool.strategies).

    The budget: at most `n_samples` new samples, or `proportion_samples` of the candidates
    (rounded to the nearest integer, at least 1 when there is any candidate). `strategies`: the
    typed SelectionStrategy objects; none means diversity alone. `min_distance` is the DIVERSITY
    strategy's `stopping_condition_minimum_distance` (either may be given; they are kept equal):
    candidates closer than that to everything selected are not picked. Distances are Euclidean
    between unit vectors, so 0..2. `--n-samples 10 --min-distance 0.3` and
    `{"n_samples": 10, "strategies": [{"input": {"type": "EMBEDDINGS"}, "strategy": {"type":
    "DIVERSITY", "stopping_condition_minimum_distance": 0.3}}]}` build the same object."""

    n_samples: int | None = None
    proportion_samples: float | None = None
    min_distance: float | None = None
    strategies: tuple[SelectionStrategy, ...] = ()

    def __post_init__(self) -> None:
        if self.n_samples is not None and self.proportion_samples is not None:
            raise ConfigError("give either n_samples or proportion_samples, not both")
        if self.n_samples is not None and (
            isinstance(self.n_samples, bool)
            or not isinstance(self.n_samples, int)
            or self.n_samples < 1
        ):
            # 0 would commit a run that selects nothing and marks every file as processed.
            raise ConfigError(f"n_samples must be an integer >= 1, got {self.n_samples!r}")
        if self.proportion_samples is not None and (
            isinstance(self.proportion_samples, bool)
            or not isinstance(self.proportion_samples, (int, float))
            or not 0.0 < self.proportion_samples <= 1.0
        ):
            p = self.proportion_samples
            percent = (
                f" (a fraction: {p / 100:g} for {p:g}%)"
                if isinstance(p, (int, float)) and not isinstance(p, bool) and 1 < p <= 100
                else ""
            )
            raise ConfigError(
                f"proportion_samples must be above 0 and at most 1, got {p!r}{percent}"
            )
        crop_task(self.strategies)  # crop selection mixed with other strategies: refused
        object.__setattr__(self, "strategies", _with_diversity(self.strategies, self.min_distance))
        div = [s.strategy for s in self.strategies if isinstance(s.strategy, Diversity)]
        md = div[0].stopping_condition_minimum_distance if div else None
        object.__setattr__(self, "min_distance", md)
        if self.n_samples is None and self.proportion_samples is None and md is None:
            raise ConfigError(
                "no selection budget: give n_samples (--n-samples), proportion_samples "
                "(--proportion) or min_distance (--min-distance)"
            )

    @property
    def crop_task(self) -> str | None:
        """The object-detection task whose boxes make the candidates (crop selection), or None
        when the candidates are whole images and video frames."""
        return crop_task(self.strategies)

    @property
    def lightly_metadata(self) -> tuple[str, ...]:
        """The Lightly metadata the strategies use (names after "lightly.": sharpness, snr,
        uniformRowRatio), which decoding measures from the pixels; () for none."""
        return lightly_metadata(self.strategies)

    @property
    def diversity_only(self) -> bool:
        """True when diversity is the only strategy (the C++ farthest-point path)."""
        only = self.strategies[0].strategy
        return len(self.strategies) == 1 and isinstance(only, Diversity) and only.strength > 0

    def budget(self, n_candidates: int) -> int:
        """How many new samples a selection may add, given its number of candidates."""
        if self.n_samples is not None:
            return min(self.n_samples, n_candidates)
        if self.proportion_samples is not None:
            if n_candidates == 0 or self.proportion_samples == 0.0:
                return 0
            return max(
                1, min(n_candidates, math.floor(self.proportion_samples * n_candidates + 0.5))
            )
        return n_candidates

    def to_lightly(self) -> dict[str, Any]:
        """Lightly's JSON shape (what `from_lightly` reads)."""
        d: dict[str, Any] = {}
        if self.n_samples is not None:
            d["n_samples"] = self.n_samples
        if self.proportion_samples is not None:
            d["proportion_samples"] = self.proportion_samples
        d["strategies"] = [s.to_lightly() for s in self.strategies]
        return d

    @classmethod
    def from_lightly(
        cls, d: Any, where: str = "selection", budget: Mapping[str, Any] | None = None
    ) -> SelectionConfig:
        """Read Lightly's shape: {"n_samples" | "proportion_samples", "strategies": [...]}.
        Errors name `where` (the file) and the bad field. `budget` (the CLI's flags: n_samples
        or proportion_samples, min_distance) overrides the file's, so a file without one is
        read when the flags give it."""
        one = isinstance(d, dict) and {"input", "strategy"} <= set(d)  # a strategy alone
        listed = isinstance(d, list) and all(isinstance(x, dict) and "strategy" in x for x in d)
        if (listed and d) or one:
            what = "one strategy" if one else "a list of strategies"
            raise SelectionFileError(
                f"{where}: this is {what}, not a selection config: put "
                f'{"it in a list" if one else "them"} under "strategies": '
                '{"n_samples": N, "strategies": [...]} (or the budget as --n-samples)'
            )
        if not isinstance(d, dict):
            raise SelectionFileError(f"{where}: the selection config must be an object (a mapping)")
        # The argument of Lightly's schedule_compute_worker_run, as its Python client names it
        # (selection_config) or its API's JSON writes it (selectionConfig, beside workerConfig)
        wrap = [k for k in d if k in ("selection_config", "selectionConfig")]
        if len(wrap) > 1:
            raise SelectionFileError(
                f"{where}: 'selection_config' and 'selectionConfig' are the same field; give one"
            )
        if wrap and set(d) == set(wrap) and isinstance(d[wrap[0]], dict):
            d = d[wrap[0]]
        elif wrap:
            worker = "workerConfig" if wrap[0] == "selectionConfig" else "worker_config"
            raise SelectionFileError(
                f"{where}: this holds a whole Lightly run config; give its {wrap[0]} "
                f"part (n_samples, strategies): the {worker} settings are datapool's flags"
            )
        inner = d.get("config") if isinstance(d.get("config"), dict) else d
        if "selection" in inner and set(inner) & {"docker", "lightly", "workerType", "worker_type"}:
            part = "config.selection" if inner is not d else "selection"
            raise SelectionFileError(
                f"{where}: this holds a whole Lightly Worker config (docker, lightly, "
                f"selection); give its {part} part (nSamples, strategies): the docker settings "
                "are datapool's flags"
            )
        old = sorted(set(d) & set(WORKER2_KEYS))
        if old:
            raise SelectionFileError(
                f"{where}: {old[0]!r} is a Lightly Worker 2.x setting, not a selection config; "
                f"{WORKER2_KEYS[old[0]]}, or write a selection config (n_samples, strategies; "
                "docs/selection.md)"
            )
        top = {"n_samples", "proportion_samples", "strategies"}
        try:
            d = lightly_fields(d, top, where)
        except ConfigError as e:
            raise SelectionFileError(str(e)) from None
        unknown = sorted(set(d) - top, key=str)
        settings = [k for k in unknown if k in WORKER_KEYS]
        if settings:
            k, v = settings[0], d[settings[0]]
            what = "holds Lightly's" if k.endswith("_config") else "is a Lightly"
            scalar = isinstance(v, (int, str)) and not isinstance(v, bool)
            fix = WORKER_KEYS[k].replace("{v}", str(v) if scalar else "VALUE")
            raise SelectionFileError(
                f"{where}: {k!r} {what} worker setting{'s' * k.endswith('_config')}, not a "
                f"selection field: {fix}"
            )
        if unknown:
            raise SelectionFileError(
                f"{where}: unknown field {unknown[0]!r} (fields: n_samples, "
                "proportion_samples, strategies)"
            )
        raw = d.get("strategies", [])
        if not isinstance(raw, list):
            raise SelectionFileError(f"{where}: strategies must be a list")
        n = d.get("n_samples")
        if n == -1 and not isinstance(n, bool):
            n = None  # Lightly's docs: "-1 means inactive" (the budget is another condition)
        elif isinstance(n, float) and 0 < n < 1:
            raise SelectionFileError(
                f"{where}: n_samples must be a number of samples, got {n!r}; a fraction of the "
                f"candidates is proportion_samples: {n!r} (Lightly's older configs wrote it as "
                "n_samples)"
            )
        try:
            strategies = tuple(
                SelectionStrategy.from_lightly(s, f"strategies[{i}]") for i, s in enumerate(raw)
            )
            over = budget or {}
            p = d.get("proportion_samples")
            if "n_samples" in over or "proportion_samples" in over:
                n, p = over.get("n_samples"), over.get("proportion_samples")
            return cls(n, p, over.get("min_distance"), strategies)
        except ConfigError as e:
            raise SelectionFileError(f"{where}: {e}") from None

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], budget: Mapping[str, Any] | None = None
    ) -> SelectionConfig:
        """Read a selection config file: JSON (.json) or YAML (anything else; needs PyYAML);
        `budget` as in from_lightly."""
        name = os.fspath(path)
        if scheme_of(name):  # it was read as a local path: 'No such file or directory'
            raise ConfigError(
                f"--selection {strip_userinfo(name)}: {scheme_of(name)}:// is not supported here, "
                "it is read from a local file; copy it here first (aws s3 cp)"
            )
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--selection {name}: cannot read it ({e.strerror})") from None
        if name.lower().endswith(".json"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{name}: not valid JSON ({e})") from None
        else:
            try:
                import yaml
            except ImportError:
                raise ConfigError(
                    f"--selection {name}: reading YAML needs PyYAML, a dependency of datapool "
                    "that is missing here: pip install pyyaml (or give the config as .json)"
                ) from None
            try:
                data = yaml.load(text, Loader=_python_dict_loader(yaml))  # a SafeLoader
            except yaml.YAMLError as e:
                raise ConfigError(f"{name}: not valid YAML ({_yaml_problem(e)})") from None
        return cls.from_lightly(data, name, budget)


# Settings of the Lightly Worker 2.x config (its docker config: `method: coreset`,
# `stopping_condition: {n_samples: 0.1, min_distance: -1}`, `active_learning: {task_name,
# score_name}`), each with its datapool equivalent: refused with it, never read as a selection.
WORKER2_KEYS = {
    "method": (
        "coreset is DIVERSITY (the default), coral is DIVERSITY with WEIGHTS on a SCORES input"
    ),
    "stopping_condition": (
        "its n_samples is --n-samples (a fraction: --proportion), its min_distance is "
        "--min-distance (-1: leave it out)"
    ),
    "active_learning": (
        "its task_name and score_name are a SCORES input {task, score} with a WEIGHTS strategy"
    ),
    "scorer": "its object-frequency is the SCORES input's score object_frequency",
}


# Settings of the Lightly Worker's worker_config (and its lightly_config) that a selection
# config may hold by mistake, each with what it is here (`{v}`: its value). Read after camelCase
# is made snake_case.
WORKER_KEYS = {
    "use_datapool": "every datapool run grows its pool (--pool POOL); drop it",
    "datasource": (
        "its process_all is --process-all (which starts the pool over, the old one kept under "
        "history/); the datasource is the run's SOURCE"
    ),
    "relevant_filenames_file": "give --relevant-filenames-file {v} (a local file)",
    "selected_sequence_length": "give --selected-sequence-length {v}",
    "object_level": "its task_name is --crops TASK, its crop_padding --crop-padding P",
    "enable_training": "datapool trains no model (--model names the ONNX model); drop it",
    "training": "datapool trains no model (--model names the ONNX model); drop it",
    "checkpoint": "datapool trains no model (--model names the ONNX model); drop it",
    "checkpoint_run_id": "datapool trains no model (--model names the ONNX model); drop it",
    "pretagging": (
        "a run runs no detector; drop it, and write your detector's predictions as a task of "
        ".lightly/predictions (`datapool predict SOURCE --model MODEL.onnx --out DIR` writes "
        "them from an ONNX detector or classifier; then run --predictions DIR)"
    ),
    "pretagging_config": "a run runs no detector; drop it (datapool predict runs yours)",
    "pretagging_upload": "a run runs no detector; drop it (datapool predict runs yours)",
    "shutdown_when_job_finished": "a datapool run ends when it is done; drop it",
    "enable_corruptness_check": (
        "damaged files are always skipped, with their reason in the summary; drop it"
    ),
    "corruptness_check": "damaged files are always skipped, with their reason in the summary; drop it",
    "remove_exact_duplicates": (
        "an exact duplicate (distance 0) of a selected sample is never selected; drop it"
    ),
    "lightly": "its loader's batch_size is --batch-size, num_workers --decode-workers; drop the rest",
    "lightly_config": (
        "its loader's batch_size is --batch-size, num_workers --decode-workers; drop the rest"
    ),
    "worker_config": "its settings are datapool's flags (docs/selection.md); drop it",
}


def _python_dict_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader that also reads Python's `None`, unquoted, as null: Lightly's docs
    write a config as a Python dict, which pasted into a .yaml file reads as it is but for
    `None` (a string to YAML: `got 'None'`). Null is a field not given, as in the API's JSON;
    a quoted "None" stays a string."""
    import re

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile("^None$"), ["N"])
    return Loader


def _yaml_problem(e: Exception) -> str:
    """PyYAML's error in one line: where and what (its own text spans five, with a drawing)."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    if mark is None or not problem:
        return " ".join(str(e).split())
    context, start = getattr(e, "context", None), getattr(e, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    if context and start is not None:
        where += f", {context} at line {start.line + 1}, column {start.column + 1}"
    return where


def _with_diversity(
    strategies: tuple[SelectionStrategy, ...] | list[SelectionStrategy],
    min_distance: float | None,
) -> tuple[SelectionStrategy, ...]:
    """The strategies, with diversity alone when there are none, and `min_distance` written
    into the DIVERSITY strategy's stopping condition."""
    out = tuple(strategies)
    for s in out:
        if not isinstance(s, SelectionStrategy):
            raise ConfigError(
                f"strategies must hold SelectionStrategy objects, got {type(s).__name__}"
            )
    if min_distance is not None:
        try:
            _ = Diversity(min_distance)  # checks the value
        except ConfigError as e:  # ... and says it in this field's name (the CLI's --min-distance)
            raise ConfigError(
                str(e).replace("strategy.stopping_condition_minimum_distance", "min_distance")
            ) from None
    if not out:
        return (SelectionStrategy(Embeddings(), Diversity(min_distance)),)
    div = [i for i, s in enumerate(out) if isinstance(s.strategy, Diversity)]
    if len(div) > 1:
        raise ConfigError("give at most one DIVERSITY strategy")
    if min_distance is None:
        return out
    if not div:
        raise ConfigError(
            "min_distance (--min-distance) is DIVERSITY's stopping condition, but the "
            "strategies have no DIVERSITY"
        )
    s = out[div[0]]
    assert isinstance(s.strategy, Diversity)
    have = s.strategy.stopping_condition_minimum_distance
    if have is not None and have != min_distance:
        raise ConfigError(
            f"min_distance {min_distance} differs from the DIVERSITY strategy's "
            f"stopping_condition_minimum_distance {have}; give one"
        )
    fixed = SelectionStrategy(s.input, Diversity(min_distance, s.strategy.strength))
    return (*out[: div[0]], fixed, *out[div[0] + 1 :])


# avg-nchw / avg-nhwc: the global average of a 4-D map whose layout its shape leaves open.
POOLINGS = ("auto", "cls", "mean", "avg", "avg-nchw", "avg-nhwc", "none")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container limits it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# Where selection and embedding run (docs/gpu.md): "cpu"; "cuda", which fails with one clear line
# when the GPU path is missing; "auto", the GPU where there is one. A setting of how, not what.
DEVICES = ("cpu", "cuda", "auto")


def check_device(value: object, flag: str = "--device") -> None:
    if value not in DEVICES:
        raise ConfigError(f"device ({flag}) must be one of {', '.join(DEVICES)}, got {value!r}")


def max_threads() -> int:
    """The most threads a thread option accepts: eight per usable core, at least 64. More only
    adds memory and scheduling load (100000 threads took 17 GB)."""
    return max(64, 8 * usable_cores())


def check_thread_count(field_name: str, flag: str, value: int) -> None:
    limit = max_threads()
    if isinstance(value, int) and value > limit:
        raise ConfigError(
            f"{field_name}={value} ({flag}) is far past this machine's {usable_cores()} cores: "
            f"use at most {limit}, or 0 for all cores"
        )


@dataclass(frozen=True)
class ModelSpec:
    """Which model embeds, as plain data a worker can open itself: the path of an .onnx file or
    the name of a model fetched with `datapool model get` (None: the bundled model), the input
    size (an int or (height, width)) for models whose height/width are dynamic, the inference
    threads (0: all cores), and how to read the model where it does not say itself: the output
    to use (`output_name`), how to pool it (`pooling`: one of POOLINGS), the
    per-channel `mean` and `std` in 0-1 units (three values, R,G,B, or one for every channel: a
    grayscale model's), constant values for extra inputs (`inputs`: (name, value) pairs) and the
    channel order the model takes (`channels`: RGB or BGR; None: the model's metadata, else
    RGB)."""

    path: str | None = None
    input_size: int | tuple[int, int] | None = None
    threads: int = 0
    output_name: str | None = None
    pooling: str = "auto"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    inputs: tuple[tuple[str, float], ...] = ()
    device: str = "cpu"  # onnxruntime's CUDA execution provider for "cuda" / "auto" (docs/gpu.md)
    channels: str | None = None

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.channels is not None and self.channels not in CHANNEL_ORDERS:
            raise ConfigError(
                f"channels (--channels) must be one of {', '.join(CHANNEL_ORDERS)}, got "
                f"{self.channels!r}"
            )
        if self.path is not None and not str(self.path):
            raise ConfigError("model is an empty path (an unset variable?); give an .onnx file")
        _ = self.input_hw
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 means all cores), got {self.threads!r}")
        check_thread_count("threads", "--threads", self.threads)
        if self.pooling not in POOLINGS:
            raise ConfigError(
                f"pooling (--pooling) must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"
            )
        if self.output_name is not None and not self.output_name:
            raise ConfigError("output_name (--output-name) must not be empty")
        _check_units(self.mean, self.std)
        _check_channels(self.mean, "mean", lambda v: 0.0 <= v <= 1.0)
        _check_channels(self.std, "std", lambda v: 0.0 < v <= 1.0)
        for item in self.inputs:
            if not (len(item) == 2 and isinstance(item[0], str) and item[0]):
                raise ConfigError(f"inputs (--input) must be NAME=VALUE pairs, got {item!r}")

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """`input_size` as (height, width), checked."""
        size = self.input_size
        if size is None:
            return None
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096 for v in hw
        ):
            raise ConfigError(
                f"input_size (--input-size) must be an integer or HxW with each in 8..4096, "
                f"got {size!r}"
            )
        return (int(hw[0]), int(hw[1]))


CHANNEL_ORDERS = ("RGB", "BGR")


def _check_units(mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> None:
    """Both --mean and --std given, the mean in 0-255 units: one message with both fixed, as for
    a model's metadata (ingest/inspection._unit_range). The std given with it is in its unit,
    so a Caffe-style `--std 1,1,1` beside a 0-255 mean is 1/255 in 0-1 units: told to fix the
    mean alone, a user kept `--std 1,1,1` and the model was fed pixels 255 times too small."""
    if mean is None or std is None:
        return
    both = (mean, std)
    if not all(
        len(v) in (1, 3)
        and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
        )
        for v in both
    ) or not any(x > 1.0 for x in mean):
        # _check_channels says what is wrong (a std alone above 1 beside a 0-1 mean: the std
        # is divided, not the mean), or nothing is
        return
    shown = [",".join(f"{x:g}" for x in v) for v in both]
    fixed = " ".join(
        f"--{w} {','.join(f'{x / 255:.4g}' for x in v)}" for w, v in zip(("mean", "std"), both)
    )
    raise ConfigError(
        f"--mean {shown[0]} looks like 0-255 units, and the --std {shown[1]} given with it is in "
        f"the same unit; datapool takes 0-1 units: give {fixed} (both divided by 255)"
    )


def _check_channels(values: tuple[float, ...] | None, what: str, ok: Any) -> None:
    """Per-channel mean or std: three finite numbers (or one, for every channel) in 0-1 units
    (0-255 values are refused)."""
    if values is None:
        return
    if len(values) not in (1, 3) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise ConfigError(
            f"{what} (--{what}) must be 3 numbers R,G,B (or 1 for a grayscale model), got "
            f"{values!r}"
        )
    if any(v > 1.0 for v in values):
        scaled = ",".join(f"{v / 255:.4g}" for v in values)
        raise ConfigError(
            f"{what} (--{what}) {','.join(f'{v:g}' for v in values)} looks like 0-255 units; "
            f"datapool takes 0-1 units: use --{what} {scaled}"
        )
    if not all(ok(v) for v in values):
        rng = "in 0..1" if what == "mean" else "above 0 and at most 1"
        raise ConfigError(f"{what} (--{what}) values must be {rng}, got {values!r}")


# `datapool predict --batch-size`: the pictures a model whose batch is dynamic runs at once (8
# at 640 for a YOLO: 39 MB of float32 inputs and 23 MB of (84, 8400) outputs)
PREDICT_BATCH_SIZE = 8


@dataclass(frozen=True)
class IngestOptions:
    """How files become frames and batches: every `frame_stride`-th video frame or at most `fps`
    frames per second of video, `batch_size` frames per batch, `decode_workers` decoding threads
    (0: min(4, cores)); `thumbnails`: a small JPEG of each frame for the report
    (ingest/thumbnail.py)."""

    frame_stride: int = 1
    fps: float | None = None
    batch_size: int = 32
    decode_workers: int = 0
    thumbnails: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.frame_stride, int) or self.frame_stride < 1:
            raise ConfigError(f"frame_stride must be an integer >= 1, got {self.frame_stride!r}")
        if self.fps is not None:
            if (
                isinstance(self.fps, bool)
                or not isinstance(self.fps, (int, float))
                or not (math.isfinite(self.fps) and self.fps > 0)
            ):
                raise ConfigError(f"fps must be a number > 0, got {self.fps!r}")
            if self.frame_stride != 1:
                raise ConfigError("give either --frame-stride or --fps, not both")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.decode_workers, int) or self.decode_workers < 0:
            raise ConfigError(
                f"decode_workers must be an integer >= 0, got {self.decode_workers!r}"
            )
        check_thread_count("decode_workers", "--decode-workers", self.decode_workers)


S3_RETRY_MODES = ("standard", "adaptive")  # botocore's retry modes


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3. Holds no credential: those come from boto3's chain when a client is made
    (datapool.s3.client)."""

    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL(_S3) if set, else AWS
    max_attempts: int = 10  # total attempts per request, the first included (botocore retries)
    retry_mode: str = "standard"  # botocore retry mode: one of S3_RETRY_MODES
    concurrency: int = 8  # objects read at once
    # Seconds a read waits for the server's next byte (a reply, or more of a body) before the
    # attempt counts as failed; a body cut short or stalled resumes where it stopped.
    read_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        t = self.read_timeout_s
        if (
            isinstance(t, bool)
            or not isinstance(t, (int, float))
            or not (math.isfinite(t) and 1.0 <= t <= 3600.0)
        ):
            raise ConfigError(
                f"s3_read_timeout_s must be a number of seconds in 1..3600, got {t!r}"
            )
        if not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 100:
            raise ConfigError(
                f"s3_max_attempts must be an integer in 1..100, got {self.max_attempts!r}"
            )
        if self.retry_mode not in S3_RETRY_MODES:
            raise ConfigError(
                f"s3_retry_mode must be 'standard' or 'adaptive', got {self.retry_mode!r}"
            )
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 256:
            raise ConfigError(
                f"s3_concurrency must be an integer in 1..256, got {self.concurrency!r}"
            )
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"s3_endpoint_url must start with http:// or https://, got "
                f"{strip_userinfo(self.endpoint_url)!r}"
            )

    @classmethod
    def from_config(cls, config: RunConfig | None) -> S3Settings:
        return cls() if config is None else config.s3


# RunConfig's fields that name a file or folder: a pathlib.Path is taken, and kept as its str.
_PATH_FIELDS = ("model", "export", "relevant_filenames_file", "predictions_dir", "metadata_dir")

# Fields whose own check refuses a value of the wrong type too, and names the values it takes
# better than a type would ("device (--device) must be one of cpu, cuda, auto").
_OWN_TYPE_CHECK = (
    "n_samples",
    "proportion_samples",
    "min_distance",
    "crops",
    "crop_padding",
    "selected_sequence_length",
    "pooling",
    "channels",
    "fps",
    "s3_retry_mode",
    "s3_read_timeout_s",
    "s3_lock_lease_s",
    "engine",
    "ray_num_gpus",
    "device",
    "tag",
)

# A field's annotation -> the Python types it takes and how an error names them.
_SIMPLE_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "bool": ((bool,), "True or False"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
}


def _plain(value: Any) -> Any:
    """A NumPy scalar (np.int64(3), np.float32(0.5), np.bool_(True)) as the Python value it
    holds, a 1-D array or a list as a tuple of those, nested; anything else as it is. (Without
    importing NumPy: `import datapool` stays light.)"""
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return value.item()
    if type(value).__module__ == "numpy" and len(getattr(value, "shape", ())) == 1:
        return tuple(value.tolist())  # mean=np.array([...]): a tuple of Python values
    if isinstance(value, (tuple, list)):  # a list for a tuple field; model_inputs' pairs
        return tuple(_plain(v) for v in value)
    return value


def _typed_strategies(value: Any) -> Any:
    """RunConfig.strategies: SelectionStrategy objects, or Lightly's dicts of them (read as a
    --selection file's are)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (tuple, list)):
        raise ConfigError(
            "strategies must be a list of datapool.strategies.SelectionStrategy objects (or "
            f"Lightly's dicts of them), got {value!r}"
        )
    out = []
    for i, s in enumerate(value):
        if isinstance(s, Mapping):
            s = SelectionStrategy.from_lightly(dict(s), f"strategies[{i}]")
        elif not isinstance(s, SelectionStrategy):
            raise ConfigError(
                f"strategies[{i}] must be a datapool.strategies.SelectionStrategy (or Lightly's "
                f"dict of one), got {s!r}"
            )
        out.append(s)
    return tuple(out)


def check_options(options: Mapping[str, object]) -> None:
    """Keyword options for RunConfig (the Python API's `datapool.run(src, pool, **options)`): a
    name that is not a field is an UnknownOptionError naming the nearest field."""
    import difflib

    names = [f.name for f in fields(RunConfig)]
    for key in options:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {near[0]}?" if near else " (see help(datapool.RunConfig))"
            if key in LIGHTLY_OPTIONS:  # schedule_compute_worker_run's, and a setting of it
                hint = f": {LIGHTLY_OPTIONS[key]}"
            raise UnknownOptionError(f"unknown option {key!r}{hint}")


# Lightly's schedule_compute_worker_run(...) arguments given to datapool.run, with their fix.
LIGHTLY_OPTIONS = {
    "selection_config": (
        "Lightly's selection config is strategies= (its strategies) and n_samples= or "
        "proportion_samples=, or strategies=SelectionConfig.from_lightly(d).strategies"
    ),
    "worker_config": (
        "Lightly's worker settings are RunConfig's fields here (process_all=, "
        "selected_sequence_length=, relevant_filenames_file=, crops=, crop_padding=: "
        "docs/python.md)"
    ),
    "lightly_config": "its loader's batch_size is batch_size=, num_workers decode_workers=",
    "use_datapool": "every datapool run grows its pool (the pool argument); drop it",
    "stopping_condition_minimum_distance": "min_distance= is DIVERSITY's stopping condition",
}


# Crop selection's default padding: a tenth of a box's width and height on each side (Lightly's).
CROP_PADDING = 0.1


@dataclass(frozen=True)
class RunConfig:
    """How one `datapool run` behaves: the fields of SelectionConfig, ModelSpec (`model` is its
    path), IngestOptions and S3Settings (prefixed `s3_`), plus what the run does with the pool."""

    # The grouped fields take their defaults from their group's class: each is written once.
    n_samples: int | None = SelectionConfig.n_samples
    proportion_samples: float | None = SelectionConfig.proportion_samples
    min_distance: float | None = SelectionConfig.min_distance
    # Typed strategies (datapool.strategies; --selection FILE); none: diversity alone.
    strategies: tuple[SelectionStrategy, ...] = ()
    # Folders shaped like .lightly/predictions and .lightly/metadata (a folder or s3://...) that
    # the strategies read instead of the source's own .lightly/ (--predictions, --metadata).
    predictions_dir: str | None = None
    metadata_dir: str | None = None
    # Crop selection (--crops TASK): the candidates are the objects of the object-detection task
    # TASK's boxes, cut out of each image with `crop_padding` (a fraction of the box's width and
    # height added on each side) and selected by DIVERSITY; the same as a strategy EMBEDDINGS with
    # "task": TASK, which sets it.
    crops: str | None = None
    crop_padding: float = CROP_PADDING
    # Lightly's worker setting: pick runs of this many consecutive video frames (select/sequences.py);
    # 1: single frames. n_samples counts frames and must be a multiple of it.
    selected_sequence_length: int = 1
    process_all: bool = False
    keep_history: bool = False  # snapshot the pool under history/ before this run changes it
    model: str | None = ModelSpec.path  # an .onnx file or a `datapool model get` name
    input_size: int | tuple[int, int] | None = ModelSpec.input_size  # where the model's are dynamic
    output_name: str | None = ModelSpec.output_name  # None: chosen by inspection
    pooling: str = ModelSpec.pooling  # auto, cls, mean, avg, avg-nchw, avg-nhwc or none
    mean: tuple[float, ...] | None = ModelSpec.mean  # 0-1 units; None: the model's or ImageNet's
    std: tuple[float, ...] | None = ModelSpec.std
    model_inputs: tuple[tuple[str, float], ...] = ModelSpec.inputs  # values for extra inputs
    channels: str | None = ModelSpec.channels  # RGB or BGR; None: the model's metadata, else RGB
    frame_stride: int = IngestOptions.frame_stride
    fps: float | None = IngestOptions.fps  # at most this many video frames per second
    batch_size: int = IngestOptions.batch_size
    threads: int = ModelSpec.threads  # 0: all cores
    decode_workers: int = IngestOptions.decode_workers  # decoding threads; 0: min(4, cores)
    thumbnails: bool = IngestOptions.thumbnails  # thumbnails for the report (--no-thumbnails)
    progress: bool | None = None  # None: show a progress bar only on a terminal
    # S3 sources (s3://bucket/prefix). Credentials are never part of the configuration: they come
    # from boto3's standard chain (env, profile, instance role) and are never recorded.
    s3_endpoint_url: str | None = S3Settings.endpoint_url  # None: AWS_ENDPOINT_URL, else AWS
    s3_max_attempts: int = S3Settings.max_attempts
    s3_retry_mode: str = S3Settings.retry_mode
    s3_concurrency: int = S3Settings.concurrency
    s3_read_timeout_s: float = S3Settings.read_timeout_s
    # A pool in S3 on a server without conditional writes is guarded by a lock object whose lease
    # lasts this long and is renewed every third of it while the run works (s3/lease.py).
    s3_lock_lease_s: float = 300.0
    export: str | None = None  # a folder, s3:// or gs:// prefix for each run's picks
    # Labelling tools' tasks files written beside the export (export_tasks.py): "label-studio",
    # "labelbox" (their URLs under export_url_prefix, required for a folder), "coco".
    export_tasks: tuple[str, ...] = ()
    export_url_prefix: str | None = None
    # --pre-annotate TASK: Label Studio's tasks carry the predictions of TASK (an object-detection
    # or classification task of the run's .lightly/predictions, or of predictions_dir).
    export_pre_annotate: str | None = None
    # Which listed files a run uses (sources/filters.py): globs on the key, and Lightly's file of
    # relevant filenames (one key or `prefix*` per line, `!` to leave out).
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    relevant_filenames_file: str | None = None
    source_moved: bool = False  # the pool's source moved: accept this one as the pool's source
    retry_skipped: bool = False  # process every skipped file again, not only failed reads
    dry_run: bool = False  # list and diff, say what would be processed, change nothing
    # Where decoding and embedding run (datapool.ingest engines): "threaded" in this process, or
    # "ray" on a Ray cluster (the extra datapool[ray]). How, never what: not recorded.
    engine: str = "threaded"
    ray_address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray
    ray_num_gpus: float | None = None  # GPUs per embedding actor; None: CPU actors
    device: str = "cpu"  # cpu, cuda or auto: where selection and embedding run (docs/gpu.md)
    # The name of this run's selection (--tag); None: initial-tag, then run-N. SIMILARITY's
    # input.tag_name names a run by it.
    tag: str | None = None

    def __post_init__(self) -> None:
        self._check_types()
        if self.crops is not None and (not isinstance(self.crops, str) or not self.crops):
            # (before the selection, which it makes: its error would name Lightly's input.task)
            raise ConfigError(
                f"crops (--crops) must name an object-detection task, got {self.crops!r}"
            )
        # Each group checks its own fields where it is made: make each once here.
        _ = (self.selection, self.model_spec, self.ingest, self.s3)
        self._check_tag()
        for name in ("export", "relevant_filenames_file", "predictions_dir", "metadata_dir"):
            if getattr(self, name) is not None and not str(getattr(self, name)):
                raise ConfigError(f"{name} is an empty path (an unset variable?)")
            if isinstance(getattr(self, name), os.PathLike):  # a pathlib.Path, as the pool's
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        for name in ("include", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(g, str) and g for g in value):
                raise ConfigError(f"{name} must be a list of non-empty glob patterns")
            object.__setattr__(self, name, tuple(value))
        self._check_export_tasks()
        if (
            isinstance(self.s3_lock_lease_s, bool)
            or not isinstance(self.s3_lock_lease_s, (int, float))
            or not (math.isfinite(self.s3_lock_lease_s) and 1.0 <= self.s3_lock_lease_s <= 86400.0)
        ):
            raise ConfigError(
                f"s3_lock_lease_s must be a number of seconds in 1..86400, got "
                f"{self.s3_lock_lease_s!r}"
            )
        self._check_engine()
        self._check_sequences()
        self._check_crops()

    def _check_export_tasks(self) -> None:
        from datapool.export_tasks import check_tasks

        tasks = self.export_tasks
        if isinstance(tasks, str):  # (export_tasks="label-studio")
            tasks = (tasks,)
        if not all(isinstance(t, str) for t in tasks):
            raise ConfigError(f"export_tasks must be a list of format names, got {tasks!r}")
        object.__setattr__(self, "export_tasks", tuple(tasks))
        pre = self.export_pre_annotate
        if pre is not None and (not isinstance(pre, str) or not pre):
            raise ConfigError(f"export_pre_annotate (--pre-annotate) must name a task, got {pre!r}")
        if (tasks or self.export_url_prefix is not None or pre is not None) and not self.export:
            raise ConfigError(
                "--tasks, --url-prefix and --pre-annotate (export_tasks, export_url_prefix, "
                "export_pre_annotate) write beside an export: add --export DEST"
            )
        check_tasks(self.export_tasks, self.export or "", self.export_url_prefix, pre)

    def _check_types(self) -> None:
        """Each field's type, before any check that uses it, so a value of the wrong type from the
        Python API is one line naming the field, never a TypeError from deep inside a check nor a
        silent truthy value (dry_run="false" would make a dry run). NumPy scalars (np.int64(3),
        np.float32(0.5), np.bool_) count as the Python values they hold and are stored as those;
        a path field takes a pathlib.Path and keeps its str."""
        for f in fields(self):
            value = getattr(self, f.name)
            plain = _plain(value)
            if f.name in _PATH_FIELDS and isinstance(plain, os.PathLike):
                plain = os.fspath(plain)
            if f.name == "strategies":
                plain = _typed_strategies(plain)
            parts = [p.strip() for p in str(f.type).split("|")]
            optional = "None" in parts
            simple = [p for p in parts if p != "None"]
            if (
                len(simple) == 1
                and simple[0] in _SIMPLE_TYPES
                and not (optional and plain is None)
                and f.name not in _OWN_TYPE_CHECK
            ):
                types, what = _SIMPLE_TYPES[simple[0]]
                if not isinstance(plain, types) or (bool not in types and isinstance(plain, bool)):
                    if optional:
                        what = "True, False or None" if bool in types else f"{what} or None"
                    raise ConfigError(f"{f.name} must be {what}, got {value!r}")
            if f.name != "strategies":  # (typed objects; recorded through to_lightly)
                try:  # recorded in runs.json at the commit: a value JSON cannot hold fails here
                    json.dumps(plain)
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"{f.name} must hold plain numbers and strings, got {value!r}"
                    ) from None
            if plain is not value:
                object.__setattr__(self, f.name, plain)

    def _check_crops(self) -> None:
        p = self.crop_padding
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ConfigError(
                f"crop_padding must be a fraction of the box in 0..1 (0.1: a tenth of its width "
                f"and height on each side), got {p!r}"
            )
        task = self.selection.crop_task
        if self.crops is None:
            object.__setattr__(self, "crops", task)  # recorded: later runs compare it
        if self.crops is None and p != CROP_PADDING:  # it would be silently unused
            raise ConfigError(
                f"crop_padding={p:g} (--crop-padding) applies to crop selection only: give the "
                "task as crops (--crops TASK) too, or leave it out"
            )
        if self.crops is not None and self.selected_sequence_length != 1:
            raise ConfigError(
                "crops (--crops) selects objects of images; selected_sequence_length "
                "selects runs of video frames: give one"
            )
        if self.crops is not None and self.export_pre_annotate is not None:
            raise ConfigError(
                f"--pre-annotate {self.export_pre_annotate}: this run selects object crops "
                f"(--crops {self.crops}), and a crop is one of the task's boxes, cut out and "
                "padded: its predictions are the crop itself; drop --pre-annotate"
            )
        if self.crops is not None and self.engine != "threaded":
            raise ConfigError(
                f"crops (--crops) runs on the threaded engine only, not engine {self.engine!r}"
            )

    def _check_tag(self) -> None:
        from datapool.naming import is_automatic_tag

        t = self.tag
        if t is None:
            return
        if not isinstance(t, str) or not t or t != t.strip() or len(t) > 100:
            raise ConfigError(
                f"tag (--tag) must be a name of 1 to 100 characters without spaces around it, "
                f"got {t!r}"
            )
        if not t.isprintable():
            raise ConfigError(f"tag (--tag) {t!r} holds a line break or control character")
        if t.isdigit():
            raise ConfigError(
                f"tag (--tag) {t!r} is all digits, which --run would read as a run's index; "
                f"choose a name such as 'night-{t}'"
            )
        if is_automatic_tag(t):
            raise ConfigError(
                f"tag (--tag) {t!r} is a name datapool gives runs (initial-tag, run-N); "
                "choose another, such as 'night-2026-12'"
            )

    def _check_sequences(self) -> None:
        L = self.selected_sequence_length
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ConfigError(f"selected_sequence_length must be an integer >= 1, got {L!r}")
        if L > 1 and self.n_samples is not None and self.n_samples % L:
            raise ConfigError(
                f"n_samples ({self.n_samples}) counts frames and must be a multiple of "
                f"selected_sequence_length ({L}), such as {L * max(1, round(self.n_samples / L))}"
            )

    def _check_engine(self) -> None:
        if not isinstance(self.engine, str) or not self.engine:
            raise ConfigError(f"engine must be an engine name such as 'ray', got {self.engine!r}")
        given = [
            f"{field} (--{field.replace('_', '-')})"
            for field in ("ray_address", "ray_num_gpus")
            if getattr(self, field) is not None
        ]
        if self.engine != "ray" and given:
            raise ConfigError(
                f"{' and '.join(given)} need{'s' * (len(given) == 1)} engine='ray' (--engine ray)"
            )
        if self.ray_num_gpus is not None and (
            isinstance(self.ray_num_gpus, bool)
            or not isinstance(self.ray_num_gpus, (int, float))
            or not (math.isfinite(self.ray_num_gpus) and 0.0 < self.ray_num_gpus <= 64.0)
        ):
            raise ConfigError(
                f"ray_num_gpus must be a number of GPUs per actor in (0, 64], got "
                f"{self.ray_num_gpus!r}"
            )

    @property
    def selection(self) -> SelectionConfig:
        strategies = self.strategies
        if self.crops is not None:
            given = SelectionConfig(
                self.n_samples, self.proportion_samples, self.min_distance, strategies
            )
            if strategies and given.crop_task != self.crops:
                raise ConfigError(
                    f"crops={self.crops!r} (--crops) and the strategies given (--selection) "
                    "select different things; give crop selection in one of them"
                )
            strategies = strategies or (
                SelectionStrategy(Embeddings(task=self.crops), Diversity()),
            )
        return SelectionConfig(
            self.n_samples, self.proportion_samples, self.min_distance, strategies
        )

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(
            self.model,
            self.input_size,
            self.threads,
            self.output_name,
            self.pooling,
            self.mean,
            self.std,
            self.model_inputs,
            self.device,
            self.channels,
        )

    @property
    def ingest(self) -> IngestOptions:
        return IngestOptions(
            self.frame_stride, self.fps, self.batch_size, self.decode_workers, self.thumbnails
        )

    @property
    def s3(self) -> S3Settings:
        return S3Settings(
            self.s3_endpoint_url,
            self.s3_max_attempts,
            self.s3_retry_mode,
            self.s3_concurrency,
            self.s3_read_timeout_s,
        )

    def budget(self, n_candidates: int) -> int:
        """How many new samples this run may add, given its number of candidates."""
        return self.selection.budget(n_candidates)

    def to_json(self) -> dict[str, Any]:
        """The settings that shape a run's result, as recorded in runs.json."""
        d = asdict(self)
        d["strategies"] = self.selection.to_lightly()["strategies"]
        d.pop("progress")
        d.pop("dry_run")
        d.pop("s3_lock_lease_s")  # how a bucket pool is guarded, not what the run selects
        d.pop("export_tasks")  # what --export writes beside the samples: its report says
        d.pop("export_url_prefix")
        d.pop("export_pre_annotate")
        # Where it ran, and whether it made thumbnails: the pool's samples are the same.
        for k in ("engine", "ray_address", "ray_num_gpus", "device", "thumbnails"):
            d.pop(k)
        # An endpoint may carry user:password@ (some S3-compatible stores); never record it.
        for k in ("s3_endpoint_url", "export", "predictions_dir", "metadata_dir"):
            if d[k] is not None:
                d[k] = strip_userinfo(d[k])
        return d


class RunOptions(TypedDict, total=False):
    """RunConfig's fields as keyword options of `datapool.run(source, pool, **options)`, for type
    checkers and IDEs: a misspelled option is an error there too. tests/test_python_api.py keeps
    it equal to RunConfig's fields."""

    n_samples: int | None
    proportion_samples: float | None
    min_distance: float | None
    strategies: tuple[SelectionStrategy, ...]
    predictions_dir: str | None
    metadata_dir: str | None
    crops: str | None
    crop_padding: float
    selected_sequence_length: int
    process_all: bool
    keep_history: bool
    model: str | None
    input_size: int | tuple[int, int] | None
    output_name: str | None
    pooling: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    model_inputs: tuple[tuple[str, float], ...]
    channels: str | None
    frame_stride: int
    fps: float | None
    batch_size: int
    threads: int
    decode_workers: int
    thumbnails: bool
    progress: bool | None
    s3_endpoint_url: str | None
    s3_max_attempts: int
    s3_retry_mode: str
    s3_concurrency: int
    s3_read_timeout_s: float
    s3_lock_lease_s: float
    export: str | None
    export_tasks: tuple[str, ...]
    export_url_prefix: str | None
    export_pre_annotate: str | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    relevant_filenames_file: str | None
    source_moved: bool
    retry_skipped: bool
    dry_run: bool
    engine: str
    ray_address: str | None
    ray_num_gpus: float | None
    device: str
    tag: str | None
