"""Active-learning scores from predictions (datapool/scores.py): each in [0, 1], 0 for one-hot
and 1 for uniform, and the detection reductions."""

from __future__ import annotations

import math

import pytest

from datapool.scores import CLASSIFICATION_SCORES, classification_score, detection_score


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
    assert detection_score("object_frequency", []) == 0.0
    assert detection_score("object_frequency", boxes) == pytest.approx(1 - math.exp(-0.5))
    assert detection_score("objectness_least_confidence", boxes) == pytest.approx(0.3)
    assert detection_score("objectness_least_confidence", []) == 0.0
    assert detection_score("uncertainty_margin", boxes) == pytest.approx(1.0)  # max of boxes
    assert detection_score("uncertainty_entropy", [(0.9, None)]) == 0.0
