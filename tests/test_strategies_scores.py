"""Active-learning scores from predictions (datapool/scores.py): each in [0, 1], 0 for one-hot
and 1 for uniform, and the detection reductions."""

from __future__ import annotations

import math

import pytest

from datapool.scores import (
    CLASSIFICATION_SCORES,
    classification_score,
    detection_score,
    object_count,
    object_frequency,
)


@pytest.mark.parametrize("name", CLASSIFICATION_SCORES)
def test_one_hot_is_0_and_uniform_is_1(name: str) -> None:
    assert classification_score(name, [0.0, 1.0, 0.0]) == pytest.approx(0.0)
    assert classification_score(name, [0.25] * 4) == pytest.approx(1.0)
    v = classification_score(name, [0.6, 0.3, 0.1])
    assert 0.0 < v < 1.0


def test_the_formulas() -> None:
    p = [0.6, 0.3, 0.1]
    assert classification_score("uncertainty_least_confidence", p) == pytest.approx(
        0.4 / (1 - 1 / 3)
    )
    assert classification_score("uncertainty_margin", p) == pytest.approx(0.7)
    h = -sum(x * math.log(x) for x in p) / math.log(3)
    assert classification_score("uncertainty_entropy", p) == pytest.approx(h)


def test_a_single_probability_is_binary() -> None:
    assert classification_score("uncertainty_margin", [0.5]) == pytest.approx(1.0)
    assert classification_score("uncertainty_margin", [0.9]) == pytest.approx(
        classification_score("uncertainty_margin", [0.9, 0.1])
    )


def test_detection_scores() -> None:
    boxes = [(0.9, [0.8, 0.1, 0.1]), (0.5, [0.4, 0.4, 0.2])]
    assert detection_score("objectness_least_confidence", boxes) == pytest.approx(0.3)
    assert detection_score("objectness_least_confidence", []) == 0.0
    assert detection_score("uncertainty_margin", boxes) == pytest.approx(1.0)  # max of boxes
    assert detection_score("uncertainty_entropy", [(0.9, None)]) == 0.0


def _lightly_object_frequency(labels_per_sample: list[list[int]]) -> list[float]:
    """Lightly's `_object_frequency` (lightly/active_learning/scorers/detection.py, with the
    defaults its Worker config exposed: frequency_penalty 0.25, min_score 0.9), as written
    there: a repeated label adds the penalty, then np.interp over the samples' min and max."""
    import numpy as np

    n_objs = []
    for labels in labels_per_sample:
        objs: dict[int, float] = {}
        for label in labels:
            objs[label] = objs[label] + 0.25 if label in objs else 1
        n_objs.append(sum(objs.values()))
    lo, hi = min(n_objs), max(n_objs)
    return [float(np.interp(x, (lo, hi), (0.9, 1.0))) for x in n_objs]


def test_object_frequency_is_lightlys_formula() -> None:
    # Before, datapool scored 1 - exp(-0.25 * boxes) per sample: 4 cars outranked a car and a
    # person (Lightly counts 1.75 against 2), and a sample without boxes scored 0, never picked
    # under WEIGHTS, where Lightly gives the run's least 0.9.
    import numpy as np

    samples = [[], [0, 0, 0, 0], [0, 1], [2], [0, 1, 2, 2, 1], [1, 1]]
    counts = np.array([object_count(s) for s in samples])
    assert counts.tolist() == [0.0, 1.75, 2.0, 1.0, 3.5, 1.25]
    got = object_frequency(counts)
    assert got.tolist() == pytest.approx(_lightly_object_frequency(samples), abs=1e-12)
    assert got[0] == pytest.approx(0.9) and got[4] == pytest.approx(1.0)
    assert got[2] > got[1]  # two kinds of object beat four of one kind
    # One sample, or all alike: np.interp over a single point gives the top, as in Lightly.
    assert object_frequency(np.array([3.0, 3.0])).tolist() == [1.0, 1.0]
    # A sample without predictions (NaN) stays without a score and sets neither end.
    mixed = object_frequency(np.array([np.nan, 1.0, 2.0]))
    assert np.isnan(mixed[0]) and mixed[1:].tolist() == pytest.approx([0.9, 1.0])
    with pytest.raises(ValueError, match="scaled over the run"):
        detection_score("object_frequency", [])
