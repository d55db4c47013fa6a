"""SoftmaxRegression and MLPClassifier: scikit-learn conformance and agreement."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from helpers import assert_grad_close, numerical_grad
from logitlab import MLPClassifier, SoftmaxRegression
from logitlab.estimators._softmax_regression import multinomial_objective


@pytest.mark.parametrize("estimator", [SoftmaxRegression(), MLPClassifier()],
                         ids=["SoftmaxRegression", "MLPClassifier"])
def test_check_estimator(estimator):
    check_estimator(estimator, expected_failed_checks=type(estimator)._xfail_checks)


def _standardised(load):
    X, y = load(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("load", [load_iris, load_wine, load_digits, load_breast_cancer],
                         ids=lambda f: f.__name__[5:])
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_agrees_with_scikit_learn(load, C):
    X, y = _standardised(load)
    sk = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, y)
    ours = SoftmaxRegression(C=C, tol=1e-10, max_iter=10000).fit(X, y)
    assert ours.coef_.shape == sk.coef_.shape and ours.intercept_.shape == sk.intercept_.shape
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    assert rel(ours.coef_, sk.coef_) < 1e-4
    assert rel(ours.intercept_, sk.intercept_) < 1e-4
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours.classes_, sk.classes_)


def test_objective_gradient_matches_finite_differences(rng):
    X = rng.normal(size=(20, 3))
    for binary, k, y in ((False, 4, rng.integers(0, 4, 20)), (True, 1, rng.integers(0, 2, 20) * 1.0)):
        sw = rng.uniform(0.5, 2, 20)
        args = (X, y, sw, sw.sum(), 2 if binary else 4, 0.7, True, binary)
        w = rng.normal(size=k * 4)
        _, g = multinomial_objective(w, *args)
        assert_grad_close(g, numerical_grad(lambda v: multinomial_objective(v, *args)[0], w))


def test_unpenalised_separable_problem_has_no_overflow_warnings():
    X, y = make_blobs(n_samples=200, centers=[[-10, 0], [10, 0], [0, 10]], cluster_std=0.5,
                      random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = SoftmaxRegression(penalty=None, max_iter=200).fit(X, y)
    assert clf.score(X, y) == 1.0
    assert np.all(np.isfinite(clf.coef_)) and np.all(np.isfinite(clf.predict_log_proba(X)))


def test_log_proba_is_exact_where_log_of_proba_underflows():
    X, y = make_blobs(n_samples=200, centers=[[-10, 0], [10, 0], [0, 10]], cluster_std=0.5,
                      random_state=0)
    clf = SoftmaxRegression(C=1e4).fit(X, y)
    far = np.array([[-2000.0, 0.0]])
    lp = clf.predict_log_proba(far)
    assert np.all(np.isfinite(lp))
    with np.errstate(divide="ignore"):
        assert not np.all(np.isfinite(np.log(clf.predict_proba(far))))


def test_two_classes_like_scikit_learn_and_string_labels():
    X, y = _standardised(load_breast_cancer)
    labels = np.where(y == 1, "benign", "malignant")
    ours = SoftmaxRegression().fit(X, labels)
    sk = LogisticRegression(tol=1e-10, max_iter=10000).fit(X, labels)
    assert ours.coef_.shape == (1, X.shape[1])
    assert ours.decision_function(X).shape == (len(X),)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-6)
    assert set(ours.predict(X)) == {"benign", "malignant"}


def test_intercepts_are_centred():
    X, y = _standardised(load_wine)
    assert abs(SoftmaxRegression(C=10).fit(X, y).intercept_.sum()) < 1e-12


def test_sample_weight_and_class_weight(rng):
    X, y = _standardised(load_iris)
    sw = rng.integers(1, 4, size=len(y))
    a = SoftmaxRegression().fit(X, y, sample_weight=sw)
    b = SoftmaxRegression().fit(np.repeat(X, sw, axis=0), np.repeat(y, sw))
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6)
    cw = SoftmaxRegression(class_weight={0: 3.0}).fit(X, y)
    manual = SoftmaxRegression().fit(X, y, sample_weight=np.where(y == 0, 3.0, 1.0))
    np.testing.assert_allclose(cw.coef_, manual.coef_, rtol=1e-8)


def test_pipeline_grid_search_and_dataframe():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    pipe = make_pipeline(StandardScaler(), SoftmaxRegression())
    grid = GridSearchCV(pipe, {"softmaxregression__C": [0.1, 1.0]}, cv=3).fit(X, y)
    assert grid.best_score_ > 0.9
    clf = SoftmaxRegression().fit(X, y)
    assert list(clf.feature_names_in_) == list(X.columns)
    assert isinstance(X, pd.DataFrame)
    assert cross_val_score(MLPClassifier(epochs=30, learning_rate=0.01, random_state=0),
                           X.to_numpy(), y, cv=3).mean() > 0.8


def test_convergence_warning_says_what_to_change():
    X, y = load_digits(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="increase max_iter, standardise"):
        SoftmaxRegression(max_iter=3).fit(X, y)


def test_warm_start_continues():
    X, y = _standardised(load_digits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = SoftmaxRegression(max_iter=20, warm_start=True).fit(X, y)
        first = clf.objective_
        clf.fit(X, y)
    assert clf.objective_ < first


@pytest.mark.parametrize("est", [SoftmaxRegression(), MLPClassifier(epochs=2)],
                         ids=["softmax", "mlp"])
def test_bad_input_gets_clear_errors(est):
    X, y = load_iris(return_X_y=True)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad, y)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.fit(bad, y)
    with pytest.raises(ValueError, match="only one class"):
        est.fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="3"):
        est.fit(X.reshape(15, 10, 4), y[:15])
    est.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :3])


# ---- MLPClassifier -------------------------------------------------------------

def test_mlp_multiclass_learns_blobs():
    X, y = make_blobs(n_samples=1000, centers=[[-5, 2], [-2, -2], [1, 2], [5, -2]], random_state=30)
    clf = MLPClassifier(epochs=20, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.97
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_curve_[-1] < clf.loss_curve_[0]
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X[:5])), clf.predict_proba(X[:5]))


def test_mlp_multilabel_indicator_matrix():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 3))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 2] > 0.5], axis=1).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(32,), epochs=60, learning_rate=0.01,
                        random_state=0).fit(X, Y)
    assert clf.predict(X).shape == Y.shape
    assert np.mean(clf.predict(X) == Y) > 0.95
    with pytest.raises(ValueError, match=r"3 label columns, as in the first fit; got shape \(800, 2\)"):
        clf.partial_fit(X, Y[:, :2])


def test_mlp_partial_fit_in_pieces():
    X, y = make_blobs(n_samples=1200, centers=[[-5, 2], [-2, -2], [1, 2], [5, -2]], random_state=30)
    clf = MLPClassifier(learning_rate=0.01, random_state=0)
    with pytest.raises(ValueError, match="`classes` must be given"):
        clf.partial_fit(X[:100], y[:100])
    for epoch in range(5):
        for i in range(0, 1200, 300):
            clf.partial_fit(X[i:i + 300], y[i:i + 300], classes=[0, 1, 2, 3])
    assert clf.score(X, y) > 0.95
    with pytest.raises(ValueError, match="not in `classes`"):
        clf.partial_fit(X[:5], [9, 9, 9, 9, 9])


def test_mlp_early_stopping_keeps_a_validation_curve():
    X, y = make_blobs(n_samples=600, centers=3, random_state=1)
    clf = MLPClassifier(early_stopping=True, epochs=100, n_iter_no_change=3, random_state=0).fit(X, y)
    assert len(clf.validation_loss_curve_) == clf.n_iter_ <= 100


def test_one_vs_rest_wraps_softmax_regression():
    X, y = _standardised(load_digits)
    ovr = OneVsRestClassifier(SoftmaxRegression()).fit(X, y)
    assert ovr.score(X, y) > 0.95
