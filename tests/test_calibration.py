"""logitlab.calibration: scalings, their gradients, and agreement with scikit-learn."""

import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_iris, make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from helpers import assert_grad_close, numerical_grad
from logitlab import MLPClassifier, softmax
from logitlab._softmax import sigmoid
from logitlab.calibration import (
    CalibratedClassifier,
    MatrixScaling,
    NotFittedError,
    TemperatureScaling,
    VectorScaling,
)
from logitlab.calibration._scaling import prepare
from logitlab.metrics import expected_calibration_error, log_loss_from_logits


def draw(rng, probs):
    """One label per row of ``probs`` (inverse-CDF sampling)."""
    u = rng.uniform(size=(len(probs), 1))
    return np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), probs.shape[1] - 1)


# ---- gradients of every scaling's objective -------------------------------------------

def _problem(kind, rng, n=40, k=4):
    if kind == "multiclass":
        z = rng.normal(0, 2, size=(n, k))
        y = np.arange(n) % k
    elif kind == "binary":
        z = rng.normal(0, 2, size=n)
        y = np.arange(n) % 2
    else:
        z = rng.normal(0, 2, size=(n, k))
        y = (rng.uniform(size=(n, k)) < 0.5).astype(float)
        y[0], y[1] = 0, 1
    return z, y


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("scaler", [TemperatureScaling(), VectorScaling(), MatrixScaling(C=0.7),
                                    MatrixScaling(C=np.inf)],
                         ids=["temperature", "vector", "matrix", "matrix_unpenalised"])
@pytest.mark.parametrize("weighted", [False, True])
def test_objective_gradient_matches_finite_differences(kind, scaler, weighted, rng):
    z, y = _problem(kind, rng)
    sw = rng.uniform(0.2, 2.0, size=len(z)) if weighted else None
    kind_, z2, y2, sw2, _ = prepare(z, y, sw)
    scaler.kind_ = kind_
    theta = scaler._initial(z2.shape[1]) + rng.normal(0, 0.3, size=len(scaler._initial(z2.shape[1])))
    _, grad = scaler._objective(theta, z2, y2, sw2)
    numeric = numerical_grad(lambda t: scaler._objective(t, z2, y2, sw2)[0], theta)
    assert_grad_close(grad, numeric, rtol=1e-7)


# ---- what the fits find ----------------------------------------------------------------

def test_temperature_of_calibrated_logits_is_one_within_sampling_error(rng):
    """Labels drawn from softmax(z) itself: T = 1 is the truth.

    The standard error of log T is 1 / sqrt(Fisher information), and the information
    of log T at T = 1 is sum_i Var_{softmax(z_i)}(z_i) (the second derivative of the
    NLL of softmax(z / T) in log T)."""
    z = rng.normal(0, 2, size=(20000, 6))
    p = softmax(z, axis=1)
    y = draw(rng, p)
    info = np.sum(np.sum(p * z**2, axis=1) - np.sum(p * z, axis=1) ** 2)
    se = 1 / np.sqrt(info)
    t = TemperatureScaling().fit(z, y).temperature_
    assert abs(np.log(t)) < 4 * se, (t, se)
    # and the same test finds a temperature that is there: labels from softmax(z / 2)
    y2 = draw(rng, softmax(z / 2, axis=1))
    t2 = TemperatureScaling().fit(z, y2).temperature_
    assert abs(np.log(t2 / 2)) < 0.05


def test_binary_and_multilabel_temperatures_are_recovered(rng):
    z = rng.normal(0, 3, size=(30000, 3))
    true_t = np.array([0.5, 1.0, 2.5])
    y = (rng.uniform(size=z.shape) < sigmoid(z / true_t)).astype(int)
    ts = TemperatureScaling().fit(z, y)
    assert ts.kind_ == "multilabel"
    np.testing.assert_allclose(ts.temperature_, true_t, rtol=0.06)
    # one column alone is the binary case, 1-D or (n, 1)
    for col in (z[:, 2], z[:, 2:3]):
        b = TemperatureScaling().fit(col, y[:, 2])
        assert b.kind_ == "binary"
        assert b.temperature_ == pytest.approx(ts.temperature_[2], rel=1e-6)
        assert b.predict_proba(col).shape == col.shape
        np.testing.assert_allclose(b.predict_proba(col), sigmoid(col / b.temperature_))


def test_vector_scaling_recovers_a_per_class_affine_distortion(rng):
    u = rng.normal(0, 1.5, size=(40000, 3))
    y = draw(rng, softmax(u, axis=1))
    w, b = np.array([0.5, 1.0, 2.0]), np.array([0.3, -0.2, 0.0])
    z = (u - b) / w  # vector scaling maps z back to u: z * w + b
    vs = VectorScaling().fit(z, y)
    np.testing.assert_allclose(vs.coef_, w, rtol=0.06)
    # the bias is defined up to a common shift (softmax's invariance)
    np.testing.assert_allclose(vs.intercept_ - vs.intercept_.mean(), b - b.mean(), atol=0.06)
    # and it beats temperature scaling, which cannot undo it
    assert vs.nll_ < TemperatureScaling().fit(z, y).nll_ - 0.01


def test_matrix_scaling_penalty_pulls_to_the_identity(rng):
    z = rng.normal(0, 2, size=(300, 4))
    y = draw(rng, softmax(z @ rng.normal(0, 0.6, size=(4, 4)) + z, axis=1))
    strong = MatrixScaling(C=1e-8).fit(z, y)
    np.testing.assert_allclose(strong.coef_, np.eye(4), atol=1e-5)
    free = MatrixScaling(C=np.inf).fit(z, y)
    weak = MatrixScaling(C=1.0).fit(z, y)
    # the penalised fit sits between: its distance from I is below the unpenalised one's
    assert np.linalg.norm(weak.coef_ - np.eye(4)) < np.linalg.norm(free.coef_ - np.eye(4))
    assert free.nll_ <= VectorScaling().fit(z, y).nll_ + 1e-9


def test_temperature_scaling_keeps_the_ranking_and_lowers_nll(rng):
    z = rng.normal(0, 4, size=(3000, 5))
    y = draw(rng, softmax(z / 3, axis=1))  # over-confident logits
    ts = TemperatureScaling().fit(z, y)
    out = ts.transform(z)
    np.testing.assert_array_equal(np.argmax(out, axis=1), np.argmax(z, axis=1))
    assert log_loss_from_logits(y, out) < log_loss_from_logits(y, z)
    assert ts.nll_ == pytest.approx(log_loss_from_logits(y, out), rel=1e-12)
    ece_before = expected_calibration_error(y, softmax(z, axis=1))
    assert expected_calibration_error(y, ts.predict_proba(z)) < ece_before / 2


# ---- CalibratedClassifier against scikit-learn's CalibratedClassifierCV -------------------

def _pair(estimator, cv, X, y):
    ours = CalibratedClassifier(estimator, method="temperature", cv=cv).fit(X, y)
    sk_est = FrozenEstimator(estimator) if cv == "prefit" else estimator
    theirs = CalibratedClassifierCV(sk_est, method="temperature",
                                    cv=None if cv == "prefit" else cv).fit(X, y)
    sk_t = np.array([1 / float(c.calibrators[0].beta_) for c in theirs.calibrated_classifiers_])
    return ours, theirs, sk_t


@pytest.mark.parametrize("cv", [3, StratifiedKFold(4, shuffle=True, random_state=0)])
def test_temperature_equals_sklearn_multiclass_decision_function(cv):
    # noisy labels, so that every fold has mistakes and a finite best temperature
    X, y = make_classification(400, 8, n_informative=4, n_classes=4, flip_y=0.1,
                               random_state=0)
    ours, theirs, sk_t = _pair(LogisticRegression(C=10.0, max_iter=2000), cv, X, y)
    np.testing.assert_allclose(ours.temperature_, sk_t, rtol=1e-6)
    assert np.ptp(sk_t) > 0.01  # the folds differ: fold-by-fold agreement means something
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=0, atol=1e-6)


def test_temperature_equals_sklearn_with_sample_weight():
    X, y = make_classification(300, 8, n_informative=4, n_classes=3, flip_y=0.1,
                               random_state=2)
    sw = np.random.default_rng(2).uniform(0.2, 3.0, size=len(y))
    est = LogisticRegression(C=10.0, max_iter=2000)
    ours = CalibratedClassifier(est, cv=3).fit(X, y, sample_weight=sw)
    theirs = CalibratedClassifierCV(est, method="temperature", cv=3).fit(X, y, sample_weight=sw)
    sk_t = [1 / float(c.calibrators[0].beta_) for c in theirs.calibrated_classifiers_]
    np.testing.assert_allclose(ours.temperature_, sk_t, rtol=1e-6)
    unweighted = CalibratedClassifier(est, cv=3).fit(X, y).temperature_
    assert np.max(np.abs(unweighted / ours.temperature_ - 1)) > 1e-3  # the weights matter
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=0, atol=1e-6)


def test_temperature_equals_sklearn_binary_decision_function_halved():
    """scikit-learn's binary logits are (-d, d), so its T is twice ours; probabilities agree."""
    X, y = make_classification(300, 6, n_informative=3, flip_y=0.15, random_state=1)
    ours, theirs, sk_t = _pair(LogisticRegression(C=100.0), 5, X, y)
    np.testing.assert_allclose(ours.temperature_, sk_t / 2, rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=0, atol=1e-6)


def test_temperature_equals_sklearn_from_probabilities_and_prefit():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    fit_idx, cal_idx = idx[:75], idx[75:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small MLP's convergence warning
        mlp = SkMLP((8,), max_iter=300, random_state=0).fit(X[fit_idx], y[fit_idx])
    assert not hasattr(mlp, "decision_function")
    ours, theirs, sk_t = _pair(mlp, "prefit", X[cal_idx], y[cal_idx])
    np.testing.assert_allclose(ours.temperature_, sk_t, rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=0, atol=1e-6)


def test_calibrated_classifier_wraps_logitlab_mlp():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    for method in ("temperature", "vector", "matrix"):
        clf = CalibratedClassifier(MLPClassifier((8,), epochs=30, learning_rate=0.01,
                                                 random_state=0), method=method, cv=3).fit(X, y)
        p = clf.predict_proba(X)
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        assert clf.score(X, y) > 0.8


def test_check_estimator():
    # cv=3 as scikit-learn's own checks use for CalibratedClassifierCV: some checks fit
    # 10 samples of 3 classes, and every fold needs every class
    check_estimator(CalibratedClassifier(cv=3))


# ---- bad input ---------------------------------------------------------------------------

def test_probabilities_passed_as_logits_warn():
    p = softmax(np.random.default_rng(0).normal(size=(30, 3)), axis=1)
    with pytest.warns(UserWarning, match="`logits` looks like probabilities"):
        TemperatureScaling().fit(p, np.arange(30) % 3)


@pytest.mark.parametrize("logits, y, match", [
    (np.zeros((2, 3)), [0, 1], "fewer than the 3 classes"),
    (np.zeros((6, 3)), [0, 1, 0, 1, 0, 1], r"no sample of class\(es\) \[2\]"),
    ([[np.inf, 0.0], [0.0, 1.0]], [0, 1], "`logits` must be finite"),
    ([[np.nan, 0.0], [0.0, 1.0]], [0, 1], "`logits` must be finite"),
    ([0.5, -1.0, 2.0], [1, 1, 1], "only 1s"),
    (np.zeros((4, 2)), np.array([[0, 1], [0, 1], [0, 1], [0, 1]]), "label 0 of `y` holds only 0s"),
    (np.zeros((4, 3)), [0, 1, 2, 5], r"`y` must hold labels in \[0, 3\)"),
    (np.zeros((4, 2, 2)), [0, 1, 0, 1], "1-D or 2-D"),
])
def test_bad_input_gets_named_errors(logits, y, match):
    for scaler in (TemperatureScaling(), VectorScaling(), MatrixScaling()):
        with pytest.raises(ValueError, match=match):
            scaler.fit(logits, y)


def test_one_hot_labels_warn_that_they_are_read_as_multilabel(rng):
    z = rng.normal(size=(30, 3))
    y = np.eye(3)[np.arange(30) % 3]
    with pytest.warns(UserWarning, match="`y` is one-hot"):
        TemperatureScaling().fit(z, y)


def test_a_calibration_set_without_mistakes_warns():
    z = np.eye(3) * 2 + 0.1
    with pytest.warns(UserWarning, match="every calibration sample is classified correctly"):
        TemperatureScaling().fit(z, [0, 1, 2])


@pytest.mark.parametrize("sw, match", [
    ([1.0, -1.0, 1.0, 1.0], "non-negative weights"),
    ([1.0, np.nan, 1.0, 1.0], "finite"),
    ([0.0, 0.0, 0.0, 0.0], "at least one non-zero weight"),
    ([1.0, 1.0], r"shape \(4,\)"),
])
def test_bad_sample_weight_is_named(sw, match):
    z = np.vstack([np.eye(3) * 2, [[2.0, 0.0, 0.0]]])
    with pytest.raises(ValueError, match=match):
        TemperatureScaling().fit(z, [0, 1, 2, 1], sample_weight=sw)


def test_transform_checks_columns_and_fitting():
    with pytest.raises(NotFittedError, match="not fitted"):
        TemperatureScaling().transform(np.zeros((2, 3)))
    z = np.vstack([np.eye(3) * 2, [[2.0, 0.0, 0.0]]])
    ts = TemperatureScaling().fit(z, [0, 1, 2, 1])
    with pytest.raises(ValueError, match="3 column"):
        ts.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="`C`"):
        MatrixScaling(C=0).fit(z, [0, 1, 2, 1])


def test_calibrated_classifier_bad_input():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="fewer than the cv=5 folds"):
        CalibratedClassifier(cv=5).fit(X[[0, 1, 2, 50, 51, 52, 100, 101, 102]],
                                       y[[0, 1, 2, 50, 51, 52, 100, 101, 102]])
    fitted = LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(ValueError, match="no sample of class"):
        CalibratedClassifier(fitted, cv="prefit").fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="does not know"):
        CalibratedClassifier(fitted, cv="prefit").fit(X[:10], np.full(10, 7))


def test_inputs_are_not_modified(rng):
    z = rng.normal(size=(50, 3))
    y = np.arange(50) % 3
    z0, y0 = z.copy(), y.copy()
    for scaler in (TemperatureScaling(), VectorScaling(), MatrixScaling()):
        scaler.fit(z, y).predict_proba(z)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(y, y0)
