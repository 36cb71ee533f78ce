"""Selection strategies as typed data, with Lightly's names (docs.lightly.ai, selection-strategies).

A strategy pairs an input (what each candidate brings) with a strategy (what to do with it):

    SelectionStrategy(Scores("my-task", "uncertainty_margin"), Weights(strength=2.0))
    SelectionStrategy(Metadata("lightness"), Threshold(0.5, "BIGGER"))
    SelectionStrategy(Embeddings(), Diversity(stopping_condition_minimum_distance=0.2))

Inputs: Embeddings (optionally `tag_name`: the pool samples of that run tag, for SIMILARITY;
or `task`: an object-detection task, whose boxes make the candidates, for crop selection),
Scores {task, score}, Metadata {key} (`lightly.sharpness`, `lightly.snr` and
`lightly.uniformRowRatio` are Lightly's computed metadata, measured from the pixels), Predictions
{task, name: CLASS_DISTRIBUTION | CATEGORY_COUNT}, Random {random_seed}. Strategies: Diversity, Weights, Threshold {threshold,
operation}, Balance {target}, Similarity, Typicality {num_nearest_neighbors}; each but Threshold
has `strength` (default 1; negative inverts it). `from_lightly(dict)` reads Lightly's JSON shape
and `to_lightly()` writes it back. How they combine: docs/selection.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from datapool.errors import ConfigError

# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Embeddings:
    """The candidates' embeddings; `tag_name` names the pool samples SIMILARITY compares with
    (a run tag of the pool, e.g. "run-0003"). `dataset_id` is Lightly's and must be None.
    `task` names an object-detection task of .lightly/predictions: the candidates are then the
    objects its boxes cut out of each image, not the images (crop selection, with DIVERSITY)."""

    dataset_id: str | None = None
    tag_name: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if self.dataset_id is not None:
            raise ConfigError(
                "input.dataset_id is not supported: the query samples are a tag of this pool "
                "(input.tag_name)"
            )
        if self.task is not None and (not isinstance(self.task, str) or not self.task.strip()):
            raise ConfigError(
                f"input.task must name an object-detection task of .lightly/predictions, got "
                f"{self.task!r}"
            )
        if self.task is not None and self.tag_name is not None:
            raise ConfigError("input.task (crop selection) and input.tag_name: give one")


@dataclass(frozen=True)
class Scores:
    """An active-learning score computed from the predictions of `task` (scores.py)."""

    task: str
    score: str


# Lightly's computed metadata: a METADATA key "lightly.<name>" is a figure the Lightly Worker
# computes from the pixels ("We reserve the top-level key lightly for internal use", Lightly's
# metadata docs). datapool measures these from the decoded pixels with Lightly's own formulas
# (ingest/lightly_metrics.py; docs/selection.md, "Lightly metadata"), never from .lightly/metadata.
LIGHTLY_PREFIX = "lightly."
LIGHTLY_COMPUTED = ("sharpness", "snr", "uniformRowRatio")
# Lightly keys whose formula is not public: a figure under Lightly's name on another scale would
# make a threshold copied from a Lightly config select something else, silently. Refused.
LIGHTLY_REFUSED = {
    "luminance": "Lightly's formula for it is not public",
    "contrast": "Lightly's formula for it is not public",
    "sizeInBytes": (
        "Lightly's client measured the picture re-encoded as PNG and its Worker's formula is "
        "not public, so a threshold on it would mean something else here"
    ),
}


def _lightly_key_error(key: str) -> str | None:
    """Why a METADATA key under "lightly." cannot be used, or None when datapool computes it."""
    name = key[len(LIGHTLY_PREFIX) :]
    if name in LIGHTLY_COMPUTED:
        return None
    known = ", ".join(LIGHTLY_PREFIX + k for k in LIGHTLY_COMPUTED)
    if name in LIGHTLY_REFUSED:
        return (
            f"input.key {key!r} is not supported: {LIGHTLY_REFUSED[name]}; datapool computes "
            f"{known} (docs/selection.md, 'Lightly metadata')"
        )
    return (
        f"input.key {key!r} is no Lightly metadata datapool computes ({known}); the top-level "
        "key 'lightly' is Lightly's own, so a field of your .lightly/metadata needs another name"
    )


@dataclass(frozen=True)
class Metadata:
    """The value of the metadata field `key` (e.g. "lightness"), from .lightly/metadata; a key
    "lightly.<name>" (LIGHTLY_COMPUTED: sharpness, snr, uniformRowRatio) is Lightly's computed
    metadata, measured from the decoded pixels instead."""

    key: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigError(f"input.key must name a metadata field, got {self.key!r}")
        if self.key.startswith(LIGHTLY_PREFIX):
            why = _lightly_key_error(self.key)
            if why is not None:
                raise ConfigError(why)

    @property
    def computed(self) -> bool:
        """Whether this is Lightly's computed metadata (measured from the pixels)."""
        return self.key.startswith(LIGHTLY_PREFIX)


PREDICTION_NAMES = ("CLASS_DISTRIBUTION", "CATEGORY_COUNT")


@dataclass(frozen=True)
class Predictions:
    """The class distribution (CLASS_DISTRIBUTION: a classification's probabilities, a
    detection's per-object probabilities summed) or the objects per category (CATEGORY_COUNT)
    of `task`."""

    task: str
    name: str = "CLASS_DISTRIBUTION"

    def __post_init__(self) -> None:
        if self.name not in PREDICTION_NAMES:
            raise ConfigError(
                f"input.name must be one of {', '.join(PREDICTION_NAMES)}, got {self.name!r}"
            )


@dataclass(frozen=True)
class Random:
    """A uniform random value in (0, 1] per candidate, from `random_seed` (None: 0)."""

    random_seed: int | None = None


Input = Union[Embeddings, Scores, Metadata, Predictions, Random]

# --- strategies --------------------------------------------------------------------------------


def _check_strength(strength: float) -> None:
    if (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not math.isfinite(strength)
    ):
        raise ConfigError(f"strategy.strength must be a finite number, got {strength!r}")


@dataclass(frozen=True)
class Diversity:
    """Far from everything selected (the pool included): the objective is the distance to the
    nearest selected sample. Candidates closer than `stopping_condition_minimum_distance` are
    never picked; selection stops when none is left."""

    stopping_condition_minimum_distance: float | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        _check_strength(self.strength)
        md = self.stopping_condition_minimum_distance
        if md is not None and (
            isinstance(md, bool)
            or not isinstance(md, (int, float))
            or not (math.isfinite(md) and 0.0 <= md <= 2.0)
        ):
            inactive = md == -1 and not isinstance(md, bool)  # Lightly's "-1 means inactive"
            raise ConfigError(
                "strategy.stopping_condition_minimum_distance must be between 0 and 2 "
                f"(Euclidean distance between unit vectors), got {md!r}"
                + ("; -1 (Lightly's 'inactive') is no minimum distance: leave it out" * inactive)
            )


@dataclass(frozen=True)
class Weights:
    """The input value itself is the objective (values must be >= 0)."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        _check_strength(self.strength)


OPERATIONS = ("SMALLER", "SMALLER_EQUAL", "BIGGER", "BIGGER_EQUAL")


@dataclass(frozen=True)
class Threshold:
    """Keeps only the candidates whose value compares true with `threshold`; applied first."""

    threshold: float
    operation: str = "BIGGER_EQUAL"

    def __post_init__(self) -> None:
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, (int, float))
            or math.isnan(self.threshold)
        ):
            raise ConfigError(f"strategy.threshold must be a number, got {self.threshold!r}")
        if self.operation not in OPERATIONS:
            raise ConfigError(
                f"strategy.operation must be one of {', '.join(OPERATIONS)}, got {self.operation!r}"
            )


def _check_score_threshold(st: Threshold) -> None:
    """Every score is in [0, 1] (scores.py): a threshold no value there passes is a mistake (a
    count from Lightly's docs, `object_frequency BIGGER_EQUAL 2`), refused before any work,
    rather than a run that selects nothing and leaves every file processed."""
    t, op = st.threshold, st.operation
    never = {"BIGGER": t >= 1, "BIGGER_EQUAL": t > 1, "SMALLER": t <= 0, "SMALLER_EQUAL": t < 0}
    if never[op]:
        raise ConfigError(
            f"strategy THRESHOLD {op} {t:g} on a SCORES input keeps no sample: scores are 0 to 1 "
            "(docs/selection.md, 'Scores'); give a threshold inside that range"
        )


@dataclass(frozen=True)
class Balance:
    """Steer the selection's class shares (the pool's included) toward `target`
    {class name: share}; shares summing to less than 1 leave the rest, equally, to the other
    classes."""

    target: dict[str, float] = field(default_factory=dict)
    strength: float = 1.0

    def __post_init__(self) -> None:
        _check_strength(self.strength)
        if not isinstance(self.target, dict) or not self.target:
            raise ConfigError(
                "strategy.target must be a mapping of class name to share, e.g. "
                '{"car": 0.5, "person": 0.5}'
            )
        if not all(isinstance(k, str) for k in self.target):
            # YAML reads `300: 0.5` (a CATEGORICAL_INT) and `true: 0.5` (a CATEGORICAL_BOOLEAN)
            # as numbers and booleans; class names are strings ("300", "true" as JSON writes it)
            keys = [(str(k).lower() if isinstance(k, bool) else str(k)) for k in self.target]
            if len(set(keys)) < len(keys):
                raise ConfigError(f"strategy.target names a class twice: {self.target!r}")
            object.__setattr__(self, "target", dict(zip(keys, self.target.values())))
        for k, v in self.target.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"strategy.target[{k!r}] must be a share in 0..1, got {v!r}")
        if sum(self.target.values()) > 1.0 + 1e-9:
            raise ConfigError(
                f"strategy.target shares sum to {sum(self.target.values()):g}; they must sum "
                "to at most 1"
            )

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.target.items())), self.strength))


@dataclass(frozen=True)
class Similarity:
    """Close to the query samples (Embeddings.tag_name): the objective is 1 - d/2, d the
    distance to the nearest query sample."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        _check_strength(self.strength)


@dataclass(frozen=True)
class Typicality:
    """Typical rather than odd (TypiClust, Hacohen et al., ICML 2022): the objective is the
    inverse of the mean distance to the `num_nearest_neighbors` nearest other samples."""

    num_nearest_neighbors: int = 20
    strength: float = 1.0

    def __post_init__(self) -> None:
        _check_strength(self.strength)
        k = self.num_nearest_neighbors
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ConfigError(f"strategy.num_nearest_neighbors must be an integer >= 2, got {k!r}")


Strategy = Union[Diversity, Weights, Threshold, Balance, Similarity, Typicality]

# Which inputs each strategy takes.
_ALLOWED: dict[type, tuple[type, ...]] = {
    Diversity: (Embeddings,),
    Weights: (Scores, Metadata, Random),
    Threshold: (Scores, Metadata, Random),
    Balance: (Predictions, Metadata),
    Similarity: (Embeddings,),
    Typicality: (Embeddings,),
}


@dataclass(frozen=True)
class SelectionStrategy:
    """One entry of a selection config's `strategies`: an input and what to do with it."""

    input: Input
    strategy: Strategy

    def __post_init__(self) -> None:
        allowed = _ALLOWED[type(self.strategy)]
        if not isinstance(self.input, allowed):
            raise ConfigError(
                f"strategy {_STRATEGY_TYPES_INV[type(self.strategy)]} takes input type "
                f"{' or '.join(_INPUT_TYPES_INV[t] for t in allowed)}, got "
                f"{_INPUT_TYPES_INV[type(self.input)]}"
            )
        if (
            isinstance(self.input, Embeddings)
            and self.input.task is not None
            and not isinstance(self.strategy, Diversity)
        ):
            raise ConfigError(
                "input.task on EMBEDDINGS (crop selection) works with strategy DIVERSITY only, "
                f"got {_STRATEGY_TYPES_INV[type(self.strategy)]}"
            )
        if isinstance(self.strategy, Similarity) and (
            not isinstance(self.input, Embeddings) or self.input.tag_name is None
        ):
            raise ConfigError("strategy SIMILARITY needs input.tag_name: the query samples")
        if isinstance(self.strategy, Balance) and isinstance(self.input, Predictions):
            if self.input.name != "CLASS_DISTRIBUTION":
                raise ConfigError("strategy BALANCE takes input.name CLASS_DISTRIBUTION")
        if isinstance(self.strategy, Threshold) and isinstance(self.input, Scores):
            _check_score_threshold(self.strategy)
        if (
            isinstance(self.strategy, Balance)
            and isinstance(self.input, Metadata)
            and self.input.computed
        ):
            raise ConfigError(
                f"strategy BALANCE takes categorical metadata; {self.input.key} is a number "
                "(use it with THRESHOLD or WEIGHTS)"
            )

    @property
    def strength(self) -> float:
        return float(getattr(self.strategy, "strength", 1.0))

    def to_lightly(self) -> dict[str, Any]:
        inp: dict[str, Any] = {"type": _INPUT_TYPES_INV[type(self.input)]}
        inp.update({k: v for k, v in vars(self.input).items() if v is not None})
        st: dict[str, Any] = {"type": _STRATEGY_TYPES_INV[type(self.strategy)]}
        st.update({k: v for k, v in vars(self.strategy).items() if v is not None})
        return {"input": inp, "strategy": st}

    @classmethod
    def from_lightly(cls, d: Any, where: str = "strategies[0]") -> SelectionStrategy:
        """One entry in Lightly's shape; errors name `where` and the bad field."""
        if not isinstance(d, dict) or set(d) - {"input", "strategy"} or "strategy" not in d:
            raise ConfigError(f"{where} must be an object with 'input' and 'strategy'")
        inp = _build(d.get("input", {"type": "EMBEDDINGS"}), _INPUT_TYPES, f"{where}.input")
        st = _build(d["strategy"], _STRATEGY_TYPES, f"{where}.strategy")
        try:
            return cls(inp, st)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


_INPUT_TYPES: dict[str, type] = {
    "EMBEDDINGS": Embeddings,
    "SCORES": Scores,
    "METADATA": Metadata,
    "PREDICTIONS": Predictions,
    "RANDOM": Random,
}
_STRATEGY_TYPES: dict[str, type] = {
    "DIVERSITY": Diversity,
    "WEIGHTS": Weights,
    "THRESHOLD": Threshold,
    "BALANCE": Balance,
    "SIMILARITY": Similarity,
    "TYPICALITY": Typicality,
}
_INPUT_TYPES_INV = {v: k for k, v in _INPUT_TYPES.items()}
_STRATEGY_TYPES_INV = {v: k for k, v in _STRATEGY_TYPES.items()}


# Lightly's older name for a strategy type (its Worker 2.x docs write DIVERSIFY).
_ALIASES = {"DIVERSIFY": "DIVERSITY"}

# Fields of Lightly's selection config that datapool does not implement, each with what to do:
# refused by name, so that a config copied from Lightly never runs without one of its fields.
LIGHTLY_UNSUPPORTED = {
    "stopping_condition_minimum_typicality": (
        "TYPICALITY's stopping condition is not supported; give n_samples or "
        "proportion_samples instead"
    ),
    "stopping_condition_max_sum": (
        "WEIGHTS' stopping condition on the sum of the inputs is not supported; give "
        "n_samples or proportion_samples instead"
    ),
    "target_range": "WEIGHTS' target_range is not supported; drop it",
    "distribution": (
        "BALANCE's distribution (UNIFORM, INPUT) is not supported; name the shares in "
        "'target' (e.g. equal shares for UNIFORM)"
    ),
    "categories": (
        "restricting a SCORES or PREDICTIONS input to some categories is not supported; "
        "drop it (every category counts)"
    ),
    "lightly_path_regex": "lightly_path_regex is not supported; drop it",
    "auto_tasks": (
        "auto_tasks (TILING) are not supported: datapool reads predictions you write to "
        ".lightly/predictions; drop it"
    ),
}


def snake_case(key: str) -> str:
    """A camelCase key of Lightly's API (`nSamples`, `tagName`) in snake_case (`n_samples`)."""
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def lightly_fields(d: dict[str, Any], fields: set[str], where: str) -> dict[str, Any]:
    """`d` with its keys in snake_case: Lightly's API writes some fields in camelCase (its
    Python client's `SelectionConfigV4(...).to_dict(by_alias=True)`: `nSamples`,
    `proportionSamples`, `datasetId`, `tagName`, `randomSeed`, `numNearestNeighbors`), and
    accepts both. A field given both ways is refused; so is a field of Lightly's that datapool
    does not implement (LIGHTLY_UNSUPPORTED), naming it and what to do. A field that is null
    is not given, as in Lightly's API (its older client's `to_dict()` writes every unset field
    as None: `{"type": "METADATA", "task": None, "key": "lightly.sharpness", ...}`)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            continue
        name = snake_case(k) if isinstance(k, str) and k not in fields else k
        if name in LIGHTLY_UNSUPPORTED:
            raise ConfigError(f"{where}: Lightly's field {k!r}: {LIGHTLY_UNSUPPORTED[name]}")
        if name in out:
            other = next(o for o in d if o != k and (o == name or snake_case(str(o)) == name))
            raise ConfigError(f"{where}: {other!r} and {k!r} are the same field; give one")
        out[name] = v
    return out


def _build(d: Any, types: dict[str, type], where: str) -> Any:
    if not isinstance(d, dict) or "type" not in d:
        raise ConfigError(f"{where} must be an object with a 'type' ({', '.join(types)})")
    kind = _ALIASES.get(d["type"], d["type"]) if isinstance(d["type"], str) else d["type"]
    if kind not in types:
        raise ConfigError(f"{where}.type must be one of {', '.join(types)}, got {kind!r}")
    cls = types[kind]
    fields = set(getattr(cls, "__dataclass_fields__", {}))
    rest = lightly_fields({k: v for k, v in d.items() if k != "type"}, fields, where)
    unknown = sorted(set(rest) - fields, key=str)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} for {kind} "
            f"(fields: {', '.join(sorted(fields)) or 'none'})"
        )
    md = rest.get("stopping_condition_minimum_distance")
    if kind == "DIVERSITY" and _negative(md):
        # Lightly's docs: "-1 means inactive" (no minimum distance)
        rest["stopping_condition_minimum_distance"] = None
    if kind == "THRESHOLD" and "operation" not in rest:  # which side to keep: never guessed
        raise ConfigError(
            f"{where}: THRESHOLD needs 'operation', the side of the threshold to keep: "
            f"{', '.join(OPERATIONS)}"
        )
    try:
        return cls(**rest)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where}: {kind} {e}".replace("__init__() ", "")) from None
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _negative(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v < 0


def column_name(inp: Input) -> str | None:
    """The key of the candidates' column (datapool.candidates) that holds this input's values;
    None for EMBEDDINGS and RANDOM, which need no column."""
    if isinstance(inp, Scores):
        return f"scores:{inp.task}:{inp.score}"
    if isinstance(inp, Metadata):
        return f"metadata:{inp.key}"
    if isinstance(inp, Predictions):
        return f"predictions:{inp.task}:{inp.name}"
    return None


def lightly_metadata(
    strategies: tuple[SelectionStrategy, ...] | list[SelectionStrategy],
) -> tuple[str, ...]:
    """The names (after "lightly.": LIGHTLY_COMPUTED) of Lightly's computed metadata that the
    strategies use, in LIGHTLY_COMPUTED's order; () when they use none (decoding then measures
    nothing)."""
    used = {
        s.input.key[len(LIGHTLY_PREFIX) :]
        for s in strategies
        if isinstance(s.input, Metadata) and s.input.computed
    }
    return tuple(k for k in LIGHTLY_COMPUTED if k in used)


def crop_task(strategies: tuple[SelectionStrategy, ...] | list[SelectionStrategy]) -> str | None:
    """The object-detection task of crop selection (an EMBEDDINGS input with `task`), or None.
    Crop selection is DIVERSITY over the objects alone: any other strategy beside it, which
    would score whole images, is refused (ConfigError)."""
    tasks = [
        s.input.task
        for s in strategies
        if isinstance(s.input, Embeddings) and s.input.task is not None
    ]
    if not tasks:
        return None
    if len(strategies) > 1:
        raise ConfigError(
            f"crop selection (EMBEDDINGS with task {tasks[0]!r}) selects objects and cannot be "
            "mixed with other strategies, which select whole images: give DIVERSITY on the "
            "task's EMBEDDINGS alone, or drop the task to select images (docs/selection.md)"
        )
    return tasks[0]
