"""Active-learning scores from predictions, each in [0, 1] (after lightly's
active_learning/scorers; formulas in docs/selection.md).

Classification, from a probability vector p over C classes (a single probability is binary,
[p, 1 - p]): `uncertainty_least_confidence` = (1 - max p) / (1 - 1/C), `uncertainty_margin` =
1 - (p1 - p2), `uncertainty_entropy` = H(p) / log C. All are 0 for a one-hot p and 1 for a uniform
one. Object detection, from the boxes of one sample: `object_frequency` = 1 - exp(-0.25 * boxes),
`objectness_least_confidence` = 1 - mean box score (0 without boxes), and the three
classification scores of each box's probabilities reduced by max (0 without boxes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CLASSIFICATION_SCORES = (
    "uncertainty_least_confidence",
    "uncertainty_margin",
    "uncertainty_entropy",
)
DETECTION_SCORES = ("object_frequency", "objectness_least_confidence", *CLASSIFICATION_SCORES)
OBJECT_FREQUENCY_PENALTY = 0.25


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


def detection_score(name: str, boxes: Sequence[tuple[float, Sequence[float] | None]]) -> float:
    """`boxes`: (score, probabilities or None) per detected object."""
    if name == "object_frequency":
        return 1.0 - math.exp(-OBJECT_FREQUENCY_PENALTY * len(boxes))
    if not boxes:
        return 0.0
    if name == "objectness_least_confidence":
        return min(1.0, max(0.0, 1.0 - sum(s for s, _ in boxes) / len(boxes)))
    per_box = [classification_score(name, p) for _, p in boxes if p]
    return max(per_box, default=0.0)
