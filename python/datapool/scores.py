"""Active-learning scores from predictions, each in [0, 1] (after lightly's
active_learning/scorers; formulas in docs/selection.md).

Classification, from a probability vector p over C classes (a single probability is binary,
[p, 1 - p]): `uncertainty_least_confidence` = (1 - max p) / (1 - 1/C), `uncertainty_margin` =
1 - (p1 - p2), `uncertainty_entropy` = H(p) / log C. All are 0 for a one-hot p and 1 for a uniform
one. Object detection, from the boxes of one sample: `objectness_least_confidence` = 1 - mean box
score (0 without boxes), and the three classification scores of each box's probabilities reduced
by max (0 without boxes). `object_frequency` is Lightly's (`_object_frequency` in lightly's
active_learning/scorers/detection.py, whose frequency_penalty 0.25 and min_score 0.9 the Lightly
Worker's config exposed): each sample's objects counted with the first of each category as 1 and
every further one of that category as 0.25 (`object_count`), then scaled linearly over the run's
samples from [min, max] to [0.9, 1.0] (`object_frequency`), so it needs every sample's count.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

CLASSIFICATION_SCORES = (
    "uncertainty_least_confidence",
    "uncertainty_margin",
    "uncertainty_entropy",
)
DETECTION_SCORES = ("object_frequency", "objectness_least_confidence", *CLASSIFICATION_SCORES)
# Lightly's defaults for object_frequency (its scorer_config: frequency_penalty, min_score).
OBJECT_FREQUENCY_PENALTY = 0.25
OBJECT_FREQUENCY_MIN_SCORE = 0.9


def _binary(p: Sequence[float]) -> list[float]:
    return [float(p[0]), 1.0 - float(p[0])] if len(p) == 1 else [float(x) for x in p]


def classification_score(name: str, probabilities: Sequence[float]) -> float:
    p = _binary(probabilities)
    c = len(p)
    if c < 2:
        return 0.0
    if name == "uncertainty_least_confidence":
        v = (1.0 - max(p)) / (1.0 - 1.0 / c)
    elif name == "uncertainty_margin":
        top = sorted(p, reverse=True)
        v = 1.0 - (top[0] - top[1])
    elif name == "uncertainty_entropy":
        v = -sum(x * math.log(x) for x in p if x > 0) / math.log(c)
    else:
        raise ValueError(f"unknown classification score {name!r}")
    return min(1.0, max(0.0, v))


def object_count(categories: Sequence[int]) -> float:
    """Lightly's count of a sample's objects (`categories`: one per object): the first object
    of each category counts 1, every further one of it OBJECT_FREQUENCY_PENALTY (0.25)."""
    return float(
        sum(1.0 + OBJECT_FREQUENCY_PENALTY * (k - 1) for k in Counter(categories).values())
    )


def object_frequency(counts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Lightly's object_frequency of each sample from its `object_count`: the counts scaled
    linearly from [their min, their max] over the run's samples to [0.9, 1.0] (np.interp, as
    Lightly; all equal: 1.0). NaN (a sample without predictions) stays NaN and counts for neither
    end."""
    import numpy as np

    out = np.full(counts.shape, np.nan)
    have = ~np.isnan(counts)
    if have.any():
        lo, hi = float(counts[have].min()), float(counts[have].max())
        out[have] = np.interp(counts[have], (lo, hi), (OBJECT_FREQUENCY_MIN_SCORE, 1.0))
    return out


def detection_score(name: str, boxes: Sequence[tuple[float, Sequence[float] | None]]) -> float:
    """`boxes`: (score, probabilities or None) per detected object. Not object_frequency, which
    depends on every sample of the run (`object_count`, `object_frequency`)."""
    if name == "object_frequency":
        raise ValueError("object_frequency is scaled over the run's samples: object_frequency()")
    if not boxes:
        return 0.0
    if name == "objectness_least_confidence":
        return min(1.0, max(0.0, 1.0 - sum(s for s, _ in boxes) / len(boxes)))
    per_box = [classification_score(name, p) for _, p in boxes if p]
    return max(per_box, default=0.0)
