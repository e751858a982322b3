"""``mnist_lit.evaluation.results``: ``score`` against a hand count on a tiny example (confusion matrix, accuracy,
per-class and averaged precision, recall and F1), the report's plain layout, and the largest confusions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mnist_lit.evaluation.results import Predictions, Scores, score

# 10 images of 4 classes; class 2 is confused with 3 and 0, class 0 with 1
LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
PREDICTED = [0, 0, 1, 1, 1, 2, 2, 3, 0, 3]


def hand_counts(labels: list[int], predicted: list[int], classes: int) -> np.ndarray:
    counts = np.zeros((classes, classes), dtype=np.int64)
    for t, p in zip(labels, predicted, strict=True):
        counts[t, p] += 1
    return counts


def test_score_agrees_with_a_hand_count():
    counts = hand_counts(LABELS, PREDICTED, 4)
    scores = score(torch.tensor(LABELS), torch.tensor(PREDICTED), num_classes=4)
    np.testing.assert_array_equal(scores.confusion.numpy(), counts)
    assert scores.support.tolist() == [3, 2, 4, 1]
    assert scores.accuracy == pytest.approx(7 / 10)
    diagonal = np.diag(counts).astype(float)
    precision, recall = diagonal / counts.sum(axis=0), diagonal / counts.sum(axis=1)
    f1 = 2 * precision * recall / (precision + recall)
    for name, expected in (("precision", precision), ("recall", recall), ("f1-score", f1)):
        np.testing.assert_allclose(scores.per_class[name].numpy(), expected, rtol=1e-6)
        assert scores.averages["macro avg"][name] == pytest.approx(expected.mean(), rel=1e-6)
        weighted = (expected * counts.sum(axis=1)).sum() / counts.sum()
        assert scores.averages["weighted avg"][name] == pytest.approx(weighted, rel=1e-6)


def test_predictions_are_scored_by_their_most_probable_class():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25]])
    predictions = Predictions(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.tensor([0, 2, 2, 1]), probs)
    assert predictions.predicted.tolist() == [0, 2, 1, 0]
    scores = score(predictions.labels, predictions.predicted, num_classes=3)
    assert scores.accuracy == pytest.approx(0.5)
    assert scores.confusion.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]


def test_the_report_is_plain_values_in_scikit_learns_layout():
    scores = score(torch.tensor(LABELS), torch.tensor(PREDICTED), num_classes=4)
    report = json.loads(json.dumps(scores.as_dict()))  # plain values only: it goes to a JSON file as it is
    assert list(report) == ["0", "1", "2", "3", "accuracy", "macro avg", "weighted avg"]
    assert report["accuracy"] == pytest.approx(0.7)
    assert [report[str(c)]["support"] for c in range(4)] == [3, 2, 4, 1]
    assert report["2"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1-score": 2 / 3, "support": 4})
    assert report["1"]["precision"] == pytest.approx(2 / 3)
    for average in ("macro avg", "weighted avg"):
        assert set(report[average]) == {"precision", "recall", "f1-score", "support"}
        assert report[average]["support"] == 10


def test_top_confusions_are_the_largest_off_diagonal_cells_largest_first():
    confusion = torch.tensor([[90, 4, 0, 7], [0, 80, 7, 0], [1, 0, 70, 0], [0, 2, 0, 99]])
    scores = Scores(confusion=confusion, per_class={}, averages={}, accuracy=0.0)
    assert scores.top_confusions(3) == [
        {"true": 0, "predicted": 3, "count": 7},  # ties in reading order: row 0 before row 1
        {"true": 1, "predicted": 2, "count": 7},
        {"true": 0, "predicted": 1, "count": 4},
    ]
    # more asked for than there are mistakes: the empty cells are left out, the diagonal never counts
    assert [c["count"] for c in scores.top_confusions(20)] == [7, 7, 4, 2, 1]
    assert Scores(torch.eye(3, dtype=torch.int64) * 5, {}, {}, 1.0).top_confusions(5) == []
