"""MultilabelThresholds against brute force with scikit-learn's metrics; multilabel_scores."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from logitlab.calibration import MultilabelThresholds, NotFittedError
from logitlab.metrics import multilabel_scores


def _problem(rng, n=200, labels=5):
    scores = np.round(rng.uniform(size=(n, labels)), 2)  # rounded: ties among the scores
    y = (rng.uniform(size=(n, labels)) < scores ** 2).astype(int)
    return scores, y


def test_f1_thresholds_are_the_brute_force_best(rng):
    scores, y = _problem(rng)
    th = MultilabelThresholds().fit(scores, y)
    for j in range(scores.shape[1]):
        candidates = np.r_[np.unique(scores[:, j]), np.inf]
        best = max(f1_score(y[:, j], scores[:, j] >= t, zero_division=0) for t in candidates)
        got = f1_score(y[:, j], th.predict(scores)[:, j], zero_division=0)
        assert got == pytest.approx(best, abs=1e-15)
        assert th.scores_[j] == pytest.approx(got, abs=1e-15)
    # better than one threshold of 0.5 for every label
    assert f1_score(y, th.predict(scores), average="macro") >= \
        f1_score(y, scores >= 0.5, average="macro")


def test_precision_target_gives_the_most_recall_reaching_it(rng):
    scores, y = _problem(rng)
    th = MultilabelThresholds(metric="precision", target=0.7).fit(scores, y)
    pred = th.predict(scores)
    for j in range(scores.shape[1]):
        reach = [t for t in np.unique(scores[:, j])
                 if precision_score(y[:, j], scores[:, j] >= t, zero_division=0) >= 0.7]
        best_recall = max(recall_score(y[:, j], scores[:, j] >= t) for t in reach)
        assert precision_score(y[:, j], pred[:, j]) >= 0.7
        assert recall_score(y[:, j], pred[:, j]) == best_recall


def test_unreachable_precision_warns_and_predicts_nothing():
    scores = np.array([[0.9], [0.8], [0.1]])
    y = np.array([[0], [1], [1]])
    with pytest.warns(UserWarning, match="no threshold reaches precision 1.0"):
        th = MultilabelThresholds(metric="precision", target=1.0).fit(scores, y)
    assert th.thresholds_[0] == np.inf
    assert th.predict(scores).sum() == 0


@pytest.mark.parametrize("kwargs, fit_args, match", [
    (dict(metric="recall"), None, "`metric`"),
    (dict(metric="precision"), None, "`target` must be given"),
    (dict(metric="precision", target=1.5), None, "`target`"),
    (dict(target=0.5), None, "`target` is for metric='precision'"),
    ({}, (np.zeros((3, 2)), np.zeros((3, 3))), "shape of `scores`"),
    ({}, (np.zeros(3), np.zeros(3)), "at least 2 dimension"),
    ({}, ([[np.nan, 0.0]], [[0, 1]]), "`scores` must be finite"),
    ({}, ([[0.2, 0.0]], [[0, 2]]), "0/1"),
])
def test_bad_input_is_named(kwargs, fit_args, match):
    args = fit_args or (np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=match):
        MultilabelThresholds(**kwargs).fit(*args)


def test_predict_checks():
    with pytest.raises(NotFittedError):
        MultilabelThresholds().predict(np.zeros((2, 2)))
    th = MultilabelThresholds().fit(np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="2 columns"):
        th.predict(np.zeros((2, 3)))


def test_multilabel_scores_by_hand():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    p = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [1, 0, 1]])
    s = multilabel_scores(y, p)
    assert s["subset_accuracy"] == 1 / 4           # only row 0 is entirely right
    assert s["hamming_loss"] == 3 / 12             # (1,1), (2,2), (3,0) wrong
    # micro: TP = 5, FP = 2, FN = 1 -> 2*5 / (2*5 + 2 + 1)
    assert s["micro_f1"] == pytest.approx(10 / 13)
    # per label: l0 TP2 FP1 FN0 -> 4/5; l1 TP1 FP0 FN1 -> 2/3; l2 TP2 FP1 FN0 -> 4/5
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)
