"""SoftmaxRegressionCV against scikit-learn's LogisticRegressionCV (issue 23)."""

import doctest
import warnings

import numpy as np
import pytest
import scipy.sparse
import scipy.special
from sklearn.datasets import load_breast_cancer, load_iris, load_wine, make_classification
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler

from logitlab import ModelFileError, SoftmaxRegression, SoftmaxRegressionCV
from logitlab.estimators import _softmax_regression_cv, load_estimator, save_estimator

TOL = 1e-10


def _data(name):
    """Generated data with overlapping classes (the solution well determined at every C of
    the default grid), or a scikit-learn data set (nearly separable: flat at large C)."""
    if name.startswith("overlap"):
        n_classes = int(name[-1])
        X, y = make_classification(600, 8, n_informative=5, n_redundant=0, n_classes=n_classes,
                                   class_sep=0.6, flip_y=0.05, random_state=n_classes)
    else:
        X, y = {"iris": load_iris, "wine": load_wine,
                "breast_cancer": load_breast_cancer}[name](return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _sklearn(folds, *, Cs=10, scoring="neg_log_loss", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return LogisticRegressionCV(Cs=Cs, cv=folds, scoring=scoring, tol=TOL, max_iter=10000,
                                    l1_ratios=(0,), use_legacy_attributes=False, **kw)


def _sk_paths(sk):
    """scikit-learn's coefs_paths_ of shape (n_folds, n_Cs, k, n_dof), intercepts centred as
    ours are (the multinomial objective fixes them only up to a shared shift)."""
    paths = sk.coefs_paths_[:, 0].copy()
    if paths.shape[2] > 1:
        paths[..., -1] -= paths[..., -1].mean(axis=2, keepdims=True)
    return paths


def _centred(intercept):
    return intercept - intercept.mean() if intercept.size > 2 else intercept


def _objective(w, X, y, C, sw=None):
    """The penalised objective, written out here (scipy's log_softmax): mean weighted log loss
    plus ||W||^2 / (2 C sum(sw)); ``w`` of shape (k, n_features + 1), intercept last."""
    sw = np.ones(len(y)) if sw is None else sw
    logits = X @ w[:, :-1].T + w[:, -1]
    if w.shape[0] == 1:  # two classes: one logit
        logits = np.column_stack([np.zeros(len(y)), logits[:, 0]])
    nll = -scipy.special.log_softmax(logits, axis=1)[np.arange(len(y)), y]
    return (sw @ nll + 0.5 * np.sum(w[:, :-1] ** 2) / C) / sw.sum()


def _assert_same_path(ours, sk, X, y, folds, sw=None, well_posed=np.inf):
    """Every fold's solution at every C is as good as scikit-learn's (objective to 1e-9
    relative), and up to C = ``well_posed`` the same: scores to 1e-6, coefficients to 1e-4.
    On nearly separable data the objective at large C is so flat that both solvers stop (on
    the same ``ftol``, gradients near 1e-8) at points 1e-4 to 1e-3 apart whose objectives
    agree to 1e-10; there the scores are compared to 1e-3."""
    sk_paths = _sk_paths(sk)
    for f, (train, _) in enumerate(folds):
        w_sw = None if sw is None else sw[train]
        for i, C in enumerate(ours.Cs_):
            mine = _objective(ours.coefs_paths_[f, i], X[train], y[train], C, w_sw)
            theirs = _objective(sk_paths[f, i], X[train], y[train], C, w_sw)
            assert mine <= theirs * (1 + 1e-9), (f, i, mine, theirs)
    easy = ours.Cs_ <= well_posed
    assert easy.sum() >= 3
    np.testing.assert_allclose(ours.scores_[:, easy], sk.scores_[:, 0, easy], rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(ours.scores_, sk.scores_[:, 0], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(ours.coefs_paths_[:, easy], sk_paths[:, easy], rtol=0, atol=1e-4)


def _assert_same_fit(ours, sk, *, atol=1e-4):
    assert ours.C_ == sk.C_
    np.testing.assert_array_equal(ours.Cs_, sk.Cs_)
    np.testing.assert_array_equal(ours.classes_, sk.classes_)
    assert ours.coef_.shape == sk.coef_.shape and ours.intercept_.shape == sk.intercept_.shape
    np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=0, atol=atol)
    np.testing.assert_allclose(ours.intercept_, _centred(sk.intercept_), rtol=0, atol=atol)


@pytest.mark.parametrize("scoring", ["neg_log_loss", "accuracy", None])
@pytest.mark.parametrize("name", ["overlap2", "overlap3", "overlap4"])
def test_agrees_with_logistic_regression_cv(name, scoring):
    X, y = _data(name)
    folds = list(StratifiedKFold(5).split(X, y))
    ours = SoftmaxRegressionCV(Cs=10, cv=folds, scoring=scoring, tol=TOL,
                               max_iter=10000).fit(X, y)
    sk = _sklearn(folds, scoring=scoring).fit(X, y)
    _assert_same_fit(ours, sk)
    assert ours.scores_.shape == (5, 10) and ours.coefs_paths_.shape[:2] == (5, 10)
    _assert_same_path(ours, sk, X, y, folds)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
def test_agrees_with_logistic_regression_cv_on_nearly_separable_data(name):
    X, y = _data(name)
    folds = list(StratifiedKFold(5).split(X, y))
    ours = SoftmaxRegressionCV(Cs=10, cv=folds, tol=TOL, max_iter=10000).fit(X, y)
    sk = _sklearn(folds).fit(X, y)
    _assert_same_fit(ours, sk)
    _assert_same_path(ours, sk, X, y, folds, well_posed=1.0)


def test_default_grid_and_folds_are_scikit_learns():
    """Cs=10 is logspace(-4, 4, 10); cv=None is StratifiedKFold(5) without shuffling."""
    X, y = _data("overlap3")
    ours = SoftmaxRegressionCV(tol=TOL, max_iter=10000).fit(X, y)
    sk = _sklearn(None).fit(X, y)
    np.testing.assert_allclose(ours.Cs_, np.logspace(-4, 4, 10), rtol=1e-15)
    _assert_same_fit(ours, sk)
    _assert_same_path(ours, sk, X, y, list(StratifiedKFold(5).split(X, y)))


@pytest.mark.parametrize("name", ["overlap2", "overlap3"])
def test_refit_false_agrees_with_logistic_regression_cv(name):
    """Without refit: each fold's best C; coef_ the mean of those solutions, C_ of those Cs."""
    X, y = _data(name)
    folds = list(StratifiedKFold(4).split(X, y))
    ours = SoftmaxRegressionCV(Cs=8, cv=folds, refit=False, tol=TOL, max_iter=10000).fit(X, y)
    sk = _sklearn(folds, Cs=8, refit=False).fit(X, y)
    best = np.argmax(ours.scores_, axis=1)
    assert ours.C_ == pytest.approx(np.mean(ours.Cs_[best]), rel=1e-15)
    mean_path = ours.coefs_paths_[np.arange(4), best].mean(axis=0)
    np.testing.assert_allclose(ours.coef_, mean_path[:, :-1], rtol=1e-12, atol=1e-12)
    assert ours.C_ == pytest.approx(sk.C_, rel=1e-12)
    np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.intercept_, _centred(sk.intercept_), rtol=0, atol=1e-4)


def test_refit_is_softmax_regression_at_the_chosen_c():
    """The refit on all the data equals an independent SoftmaxRegression at C_."""
    X, y = _data("overlap3")
    cv = SoftmaxRegressionCV(Cs=6, cv=3, tol=TOL, max_iter=10000).fit(X, y)
    one = SoftmaxRegression(C=cv.C_, tol=TOL, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(cv.coef_, one.coef_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cv.intercept_, one.intercept_, rtol=0, atol=1e-6)


def test_warm_starts_do_not_change_the_path():
    """Each fold's solution at each C equals a cold SoftmaxRegression fit on its training part
    (the path is warm-started between Cs and between folds)."""
    X, y = _data("overlap4")
    folds = list(StratifiedKFold(3).split(X, y))
    cv = SoftmaxRegressionCV(Cs=[0.01, 1.0, 100.0], cv=folds, tol=TOL,
                             max_iter=10000).fit(X, y)
    for f, (train, _) in enumerate(folds):
        for i, C in enumerate(cv.Cs_):
            cold = SoftmaxRegression(C=C, tol=TOL, max_iter=10000).fit(X[train], y[train])
            np.testing.assert_allclose(cv.coefs_paths_[f, i, :, :-1], cold.coef_, atol=1e-5)
            np.testing.assert_allclose(cv.coefs_paths_[f, i, :, -1], cold.intercept_, atol=1e-5)
    assert cv.n_iter_.shape == (3, 3) and (cv.n_iter_ > 0).all()
    np.testing.assert_allclose(cv.coefs_paths_[..., -1].sum(axis=2), 0.0, atol=1e-12)


def test_a_test_part_without_a_class_is_scored_with_every_class(rng):
    """The log loss of a test part that lacks a class needs the labels (scikit-learn passes
    them): folds chosen so that class 2 is only ever in training parts."""
    X, y = _data("overlap3")
    only_train = np.flatnonzero(y == 2)
    rest = rng.permutation(np.flatnonzero(y != 2))
    halves = np.array_split(rest, 2)
    folds = [(np.concatenate([only_train, halves[1 - h]]), halves[h]) for h in (0, 1)]
    ours = SoftmaxRegressionCV(Cs=4, cv=folds, tol=TOL, max_iter=10000).fit(X, y)
    sk = _sklearn(folds, Cs=4).fit(X, y)
    np.testing.assert_allclose(ours.scores_, sk.scores_[:, 0], rtol=1e-6, atol=1e-7)
    _assert_same_fit(ours, sk)


def test_sample_weight_and_class_weight_agree_with_logistic_regression_cv(rng):
    """Weights scale each fold's training loss; sample_weight also weights the score."""
    X, y = _data("overlap3")
    sw = rng.uniform(0.2, 3.0, len(y))
    folds = list(StratifiedKFold(4).split(X, y))
    cw = {0: 2.0, 2: 0.5}
    ours = SoftmaxRegressionCV(Cs=6, cv=folds, class_weight=cw, tol=TOL,
                               max_iter=10000).fit(X, y, sample_weight=sw)
    sk = _sklearn(folds, Cs=6, class_weight=cw).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(ours.scores_, sk.scores_[:, 0], rtol=1e-6, atol=1e-7)
    _assert_same_fit(ours, sk)


def test_balanced_class_weight_agrees_with_logistic_regression_cv():
    X, y = _data("overlap4")
    keep = np.flatnonzero((y != 1) | (np.arange(len(y)) % 3 == 0))  # class 1 rarer
    X, y = X[keep], y[keep]
    folds = list(StratifiedKFold(3).split(X, y))
    ours = SoftmaxRegressionCV(Cs=5, cv=folds, class_weight="balanced", tol=TOL,
                               max_iter=10000).fit(X, y)
    sk = _sklearn(folds, Cs=5, class_weight="balanced").fit(X, y)
    np.testing.assert_allclose(ours.scores_, sk.scores_[:, 0], rtol=1e-6, atol=1e-7)
    _assert_same_fit(ours, sk)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_fit_equals_dense_fit(fmt, rng):
    X, y = _data("overlap4")
    X[np.abs(X) < 0.7] = 0.0
    folds = list(StratifiedKFold(3).split(X, y))
    dense = SoftmaxRegressionCV(Cs=5, cv=folds, tol=TOL, max_iter=10000).fit(X, y)
    sparse = SoftmaxRegressionCV(Cs=5, cv=folds, tol=TOL, max_iter=10000).fit(
        scipy.sparse.csr_matrix(X).asformat(fmt), y)
    assert sparse.C_ == dense.C_
    np.testing.assert_allclose(sparse.scores_, dense.scores_, rtol=1e-8)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=0, atol=1e-6)


def test_float32_keeps_float32_and_agrees_with_float64():
    X, y = _data("overlap3")
    folds = list(StratifiedKFold(3).split(X, y))
    f64 = SoftmaxRegressionCV(Cs=5, cv=folds, tol=1e-6, max_iter=10000).fit(X, y)
    f32 = SoftmaxRegressionCV(Cs=5, cv=folds, tol=1e-6, max_iter=10000).fit(
        X.astype(np.float32), y)
    assert f32.coef_.dtype == f32.intercept_.dtype == f32.coefs_paths_.dtype == np.float32
    assert f64.coef_.dtype == np.float64
    assert f32.C_ == f64.C_
    np.testing.assert_allclose(f32.scores_, f64.scores_, rtol=1e-4)
    np.testing.assert_allclose(f32.coef_, f64.coef_, rtol=0, atol=1e-3)


def test_n_jobs_is_accepted_and_changes_nothing():
    X, y = _data("iris")
    a = SoftmaxRegressionCV(Cs=4, cv=3).fit(X, y)
    b = SoftmaxRegressionCV(Cs=4, cv=3, n_jobs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.scores_, b.scores_)


def test_string_labels_and_a_splitter():
    X, y = _data("iris")
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    cv = KFold(3, shuffle=True, random_state=0)
    ours = SoftmaxRegressionCV(Cs=4, cv=cv, tol=TOL, max_iter=10000).fit(X, names)
    sk = _sklearn(cv, Cs=4).fit(X, names)
    _assert_same_fit(ours, sk)
    assert set(ours.predict(X)) <= set(names)


@pytest.mark.parametrize("kwargs, match", [
    ({"Cs": 0}, "'Cs' parameter"),
    ({"Cs": [1.0, -2.0]}, r"`Cs` must hold positive numbers; got -2.0 at index 1"),
    ({"Cs": [1.0, np.nan]}, r"`Cs` must hold positive numbers; got nan at index 1"),
    ({"Cs": []}, r"`Cs` must be a non-empty 1-D list"),
    ({"Cs": [[1.0, 2.0]]},  # it said "a list of length 1"
     r"`Cs` must be a non-empty 1-D list of numbers; got an array of shape \(1, 2\)"),
    ({"Cs": "many"}, "'Cs' parameter"),
    ({"cv": 1}, r"'cv' parameter .* int in the range \[2, inf\)"),
    ({"cv": 60}, r"`cv`: n_splits=60 cannot be greater than the number of members"),
    ({"cv": "five"}, "'cv' parameter"),
    ({"cv": [(np.arange(10), np.array([], dtype=int))]}, r"`cv`: split 0 has an empty"),
    ({"cv": [(np.arange(10), np.array([500]))]}, r"`cv`: split 0 .* indices in \[0, 150\)"),
    ({"scoring": "nope"}, "'scoring' parameter"),
    ({"tol": -1.0}, "'tol' parameter"),
    ({"max_iter": 0}, "'max_iter' parameter"),
    ({"refit": "yes"}, "'refit' parameter"),
    ({"n_jobs": "all"}, "'n_jobs' parameter"),
    ({"class_weight": "even"}, "'class_weight' parameter"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    X, y = _data("iris")
    with pytest.raises(ValueError, match=match):
        SoftmaxRegressionCV(**kwargs).fit(X, y)


def test_bad_fit_inputs_name_the_argument():
    X, y = _data("iris")
    with pytest.raises(ValueError, match="`sample_weight`"):
        SoftmaxRegressionCV(Cs=2).fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="`y`"):
        SoftmaxRegressionCV(Cs=2).fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="`X`"):
        SoftmaxRegressionCV(Cs=2).fit(np.full_like(X, np.nan), y)
    folds = [(np.arange(0, 150, 2), np.arange(1, 150, 2))]
    sw = np.ones(len(y))
    sw[::2] = 0.0
    with pytest.raises(ValueError, match="`sample_weight`: the training part of fold 0"):
        SoftmaxRegressionCV(Cs=2, cv=folds).fit(X, y, sample_weight=sw)


def test_unconverged_path_warns_once():
    X, y = _data("wine")
    with pytest.warns(Warning) as record:
        SoftmaxRegressionCV(Cs=3, cv=3, max_iter=2).fit(X, y)
    messages = [str(w.message) for w in record if "did not converge" in str(w.message)]
    assert len(messages) == 1 and "10 of the L-BFGS fits" in messages[0]


@pytest.mark.parametrize("refit", [True, False])
def test_save_load_round_trip(tmp_path, refit):
    X, y = _data("wine")
    names = np.array(["ant", "bee", "cat"])[y]
    est = SoftmaxRegressionCV(Cs=[0.01, 1.0, np.inf], cv=3, refit=refit,
                              max_iter=300).fit(X, names)
    path = tmp_path / "cv.logitlab"
    save_estimator(est, path)
    full, _, _ = load_estimator(path)
    light, _, _ = load_estimator(path, predict_only=True)
    assert type(full) is SoftmaxRegressionCV and full.get_params() == est.get_params()
    assert full.C_ == est.C_ and np.array_equal(full.Cs_, est.Cs_)
    np.testing.assert_array_equal(full.predict_proba(X), est.predict_proba(X))
    np.testing.assert_allclose(light.predict_proba(X), est.predict_proba(X), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(light.predict(X), est.predict(X))


def test_save_softmax_regression_with_c_inf(tmp_path):
    """C=np.inf (scikit-learn's way to fit without a penalty) could not be saved: JSON has no
    inf and the file is written with allow_nan=False."""
    X, y = _data("iris")
    est = SoftmaxRegression(C=np.inf, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    save_estimator(est, tmp_path / "m.logitlab")
    back, _, _ = load_estimator(tmp_path / "m.logitlab")
    assert back.C == np.inf
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))


def test_save_refuses_a_parameter_the_file_cannot_hold(tmp_path):
    X, y = _data("iris")
    est = SoftmaxRegressionCV(Cs=2, cv=StratifiedKFold(3)).fit(X, y)
    with pytest.raises(TypeError, match="`cv` is StratifiedKFold.*set_params"):
        save_estimator(est, tmp_path / "m.logitlab")
    assert not (tmp_path / "m.logitlab").exists()


@pytest.mark.parametrize("arrays, match", [
    ({"Cs": np.array([1.0, -1.0])}, "'Cs' must be positive"),
    ({"Cs": np.zeros((2, 2))}, "'Cs' must be a non-empty 1-D grid"),
    ({"C": np.array([np.nan])}, "'C' must be positive"),
    ({"C": np.array([1.0, 2.0])}, "'C' must have shape"),
    ({"coef": np.zeros((2, 13))}, "'coef'.*shape"),
])
def test_damaged_file_is_refused(tmp_path, arrays, match):
    from logitlab._saving import read_model_file, write_model_file

    X, y = _data("wine")
    path = tmp_path / "cv.logitlab"
    save_estimator(SoftmaxRegressionCV(Cs=3, cv=3).fit(X, y), path)
    kind, config, stored = read_model_file(path)
    stored.update(arrays)
    write_model_file(path, kind, config, stored)
    for predict_only in (False, True):
        with pytest.raises(ModelFileError, match=match):
            load_estimator(path, predict_only=predict_only)


def test_docstring_example_runs():
    failed, attempted = doctest.testmod(
        _softmax_regression_cv, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("class_weight", [{0: 2.0, 2: 0.5}, {"ant": 2.0, "cat": 0.5}, "balanced"],
                         ids=["int keys", "str keys", "balanced"])
def test_save_load_keeps_class_weight_keys(tmp_path, class_weight):
    """A class_weight dict with integer keys came back from a model file with string keys
    (JSON's keys are strings): {0: 2.0} read as {"0": 2.0}, which a refit would not match."""
    X, y = _data("iris")
    if isinstance(class_weight, dict) and "ant" in class_weight:
        y = np.array(["ant", "bee", "cat"])[y]
    est = SoftmaxRegression(class_weight=class_weight, max_iter=300).fit(X, y)
    save_estimator(est, tmp_path / "m.logitlab")
    back, _, _ = load_estimator(tmp_path / "m.logitlab")
    assert back.get_params()["class_weight"] == class_weight
    assert back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.fit(X, y).coef_, est.coef_)
