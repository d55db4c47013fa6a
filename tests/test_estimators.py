"""SoftmaxRegression and MLPClassifier: scikit-learn conformance and agreement."""

import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import (load_breast_cancer, load_digits, load_iris, load_wine, make_blobs,
                              make_classification)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from helpers import assert_grad_close, numerical_grad
from logitlab import MLPClassifier, SoftmaxRegression, SoftmaxRegressionCV
from logitlab.estimators._linear_loss import LinearSoftmaxLoss


# SoftmaxRegressionCV with 3 Cs and 3 folds: the checks are of the API (its defaults, 10 Cs x 5
# folds, made this the suite's second-longest test at 41 s); the path is tested against
# LogisticRegressionCV in test_softmax_regression_cv.py
@pytest.mark.parametrize("estimator", [SoftmaxRegression(), SoftmaxRegressionCV(Cs=3, cv=3),
                                       MLPClassifier()],
                         ids=["SoftmaxRegression", "SoftmaxRegressionCV", "MLPClassifier"])
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


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [0.7, np.inf])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_objective_gradient_matches_finite_differences(rng, sparse, C, fit_intercept):
    X = rng.normal(size=(20, 3))
    X[X < -0.5] = 0.0  # some structural zeros for the sparse case
    Xin = scipy.sparse.csr_matrix(X) if sparse else X
    for n_classes, y in ((4, rng.integers(0, 4, 20)), (2, rng.integers(0, 2, 20))):
        sw = rng.uniform(0.5, 2, 20)
        obj = LinearSoftmaxLoss(n_classes, 3, C=C, fit_intercept=fit_intercept)
        w = rng.normal(size=obj.n_params)
        _, g = obj.loss_gradient(w, Xin, y, sw, sw.sum())
        assert_grad_close(g, numerical_grad(lambda v: obj.loss(v, Xin, y, sw, sw.sum()), w))  # noqa: B023


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("n_classes", [2, 7])
def test_blocked_evaluation_equals_one_pass(rng, monkeypatch, fmt, n_classes):
    # the fit's evaluation (row blocks, two threads) sums the same terms as one pass
    from logitlab.estimators import _linear_loss

    monkeypatch.setattr(_linear_loss, "BLOCK_ROWS", 37)
    monkeypatch.setattr(_linear_loss, "THREADED_SIZE", 1)
    X, y = _text_like(rng, n=500, p=40, n_classes=n_classes, density=0.2)
    X = X.toarray() if fmt == "dense" else X.asformat(fmt)
    sw = rng.uniform(0.5, 2.0, 500)
    obj = LinearSoftmaxLoss(n_classes, 40, C=3.0)
    parts = obj.split(X, y, sw)
    assert len(parts) == (2 if fmt == "dense" else 1)
    w = rng.normal(size=obj.n_params)
    f1, g1 = obj.loss_gradient(w, X, y, sw, sw.sum())
    f2, g2 = obj.blocked_loss_gradient(w, parts, sw.sum())
    assert abs(f2 - f1) <= 1e-13 * abs(f1)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-14 * np.abs(g1).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes,n_features", [(3, 5), (10, 50), (20, 64)])
def test_fused_evaluation_equals_the_products(rng, monkeypatch, dtype, n_classes, n_features):
    # the compiled one-pass evaluation (_kernels.linear_ce) against the blocks' two BLAS
    # products and the core's cross-entropy, on the fit's blocks and threads
    from logitlab import _jit
    from logitlab.estimators import _linear_loss

    monkeypatch.setattr(_linear_loss, "BLOCK_ROWS", 301)  # blocks with tails
    monkeypatch.setattr(_linear_loss, "THREADED_SIZE", 1)
    n = 1500
    X = rng.normal(size=(n, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, n)
    sw = rng.uniform(0.5, 2.0, n)
    sw[::5] = 0.0
    obj = LinearSoftmaxLoss(n_classes, n_features, C=2.0, dtype=dtype)
    assert obj.fused
    w = rng.normal(size=obj.n_params) * 0.3
    calls = []
    with _jit.kernel_mode("always"):
        kernels = _jit._module()
        monkeypatch.setattr(kernels, "linear_ce", tuple(
            (lambda *a, f=f: calls.append(1) or f(*a)) for f in kernels.linear_ce))
        parts = obj.split(X, y, sw)
        fused = obj.blocked_loss_gradient(w, parts, sw.sum())
        assert len(calls) == sum(map(len, parts)) > 2
        obj.fused = False
        products = obj.blocked_loss_gradient(w, parts, sw.sum())
    tol = 1e-13 if dtype == np.float64 else 1e-6
    assert abs(fused[0] - products[0]) <= tol * abs(products[0])
    np.testing.assert_allclose(fused[1], products[1], rtol=0,
                               atol=tol * 10 * np.abs(products[1]).max())


@pytest.mark.parametrize("dtype,k", [(np.float32, 9), (np.float64, 9), (np.float64, 60)])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_fused_sparse_evaluation_equals_the_products(rng, monkeypatch, dtype, k, fmt):
    # _kernels.linear_ce_csr on two threads' row ranges, against scipy's two products (float64
    # rows of up to 255 classes go through the kernels, float32 rows below 48)
    from logitlab import _jit
    from logitlab.estimators import _linear_loss

    monkeypatch.setattr(_linear_loss, "THREADED_SIZE", 1)
    X, y = _text_like(rng, n=700, p=300, n_classes=k, density=0.05)
    X = X.astype(dtype).asformat(fmt)
    sw = rng.uniform(0.5, 2.0, 700)
    sw[::6] = 0.0
    assert not LinearSoftmaxLoss(k, 300, dtype=np.float32).fused_sparse or k < 48
    obj = LinearSoftmaxLoss(k, 300, C=2.0, dtype=dtype)
    w = rng.normal(size=obj.n_params) * 0.5
    with _jit.kernel_mode("always"):
        parts = obj.split(X, y, sw)
        assert [block[3] for part in parts for block in part] == [(0, 350), (350, 700)]
        fused = obj.blocked_loss_gradient(w, parts, sw.sum())
        obj.fused_sparse = False
        products = obj.blocked_loss_gradient(w, obj.split(X, y, sw), sw.sum())
    tol = 1e-13 if dtype == np.float64 else 1e-6
    assert abs(fused[0] - products[0]) <= tol * abs(products[0])
    np.testing.assert_allclose(fused[1], products[1], rtol=0,
                               atol=tol * 10 * np.abs(products[1]).max())


@pytest.mark.parametrize("mode", ["auto", "never"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("n", [300, 20000])  # below and above the kernels' sizes
def test_sparse_index_arrays_that_lie_are_a_value_error_not_a_crash(rng, fmt, n, mode):
    # found by a stranger's review: scipy's products and format conversions and the fused
    # kernel index by them unchecked, and a fit on such a matrix died with SIGSEGV (CSR or
    # CSC, kernels or not); so did predict on one
    from logitlab import _jit

    X, y = _text_like(rng, n=n, p=50, n_classes=4, density=0.1)
    good = SoftmaxRegression().fit(X[:200], y[:200])
    X = X.asformat(fmt)
    for lie in ("index past the end", "negative index", "indptr decreasing"):
        bad = X.copy()
        if lie == "index past the end":
            bad.indices[3] = 10**6
        elif lie == "negative index":
            bad.indices[3] = -2
        else:
            bad.indptr[5] = bad.indptr[7]
        with _jit.kernel_mode(mode):
            with pytest.raises(ValueError, match="`X` must be a valid sparse matrix"):
                SoftmaxRegression().fit(bad, y)
            with pytest.raises(ValueError, match="`X` must be a valid sparse matrix"):
                good.predict_proba(bad)


def test_overflowing_features_warn_instead_of_returning_a_silent_nan_fit(rng):
    # a stranger's review: a row of 1e200 made the first step's logits overflow; the fit
    # stopped after 0 iterations with objective_ = nan and zero coefficients, no warning
    X = rng.normal(size=(500, 4))
    X[7] = 1e200
    y = rng.integers(0, 3, 500)
    with pytest.warns(ConvergenceWarning, match="non-finite objective.*StandardScaler"):
        est = SoftmaxRegression().fit(X, y)
    assert not np.isfinite(est.objective_)


def test_fortran_ordered_and_dataframe_inputs_take_the_fused_evaluation(rng):
    # a stranger's review: np.asarray of a DataFrame is Fortran-ordered, and the rows' kernel
    # needs C order, so such fits ran the slower products: X is made C-ordered once, as
    # scikit-learn's LogisticRegression does; the coefficients then equal the C-ordered fit's
    import pandas as pd

    X = rng.normal(size=(8000, 12))
    y = rng.integers(0, 9, 8000)
    want = SoftmaxRegression(max_iter=20).fit(X, y).coef_
    for data in (np.asfortranarray(X), pd.DataFrame(X)):
        assert np.array_equal(SoftmaxRegression(max_iter=20).fit(data, y).coef_, want)


def test_fused_evaluation_passes_the_data_read_only_whatever_it_came_as(rng):
    # Numba compiles a kernel once for each array type, and a read-only array (a Dask chunk,
    # a memory map) is another type: 3 s a dtype at a fit's first call. The objective passes
    # the data's arrays read-only always, the type _jit.warm compiles.
    from logitlab import _jit

    X = rng.normal(size=(300, 6))
    y = rng.integers(0, 4, 300)
    frozen = X.copy()
    frozen.flags.writeable = False
    obj = LinearSoftmaxLoss(4, 6)
    with _jit.kernel_mode("always"):
        kernels = _jit._module()
        for data in (X, frozen, scipy.sparse.csr_matrix(X), scipy.sparse.csr_matrix(frozen)):
            obj.blocked_loss_gradient(np.zeros(obj.n_params), obj.split(data, y), 300.0)
    for kernel, data_args in ((kernels.linear_ce[0], (0, 3, 4)),
                              (kernels.linear_ce_csr[0], (0, 1, 2, 5, 6))):
        assert kernel.signatures
        for signature in kernel.signatures:
            assert all(not signature[i].mutable for i in data_args), signature


def test_fused_evaluation_only_where_it_wins():
    # few classes, or up to 20 with few features: the kernel; otherwise BLAS's products
    assert LinearSoftmaxLoss(12, 5000).fused and LinearSoftmaxLoss(20, 64).fused
    assert not LinearSoftmaxLoss(20, 65).fused and not LinearSoftmaxLoss(21, 3).fused
    assert not LinearSoftmaxLoss(2, 5).fused  # binary: one column, the logistic loss


def _reference_objective(coef, intercept, X, y, C, sw=None):
    """scikit-learn's penalised objective, from scikit-learn's own loss (an independent reference)."""
    from sklearn.metrics import log_loss

    X = np.asarray(X.toarray() if scipy.sparse.issparse(X) else X, dtype=np.float64)
    scores = X @ np.asarray(coef, dtype=np.float64).T + intercept
    if scores.shape[1] == 1:
        scores = np.column_stack([np.zeros(len(X)), scores[:, 0]])
    proba = np.exp(scores - scores.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    sw = np.ones(len(X)) if sw is None else sw
    data = log_loss(y, proba, sample_weight=sw, normalize=False)
    penalty = 0.0 if np.isinf(C) else 0.5 / C * np.sum(np.asarray(coef, dtype=np.float64) ** 2)
    return (data + penalty) / sw.sum()


def _text_like(rng, n=600, p=300, n_classes=5, density=0.02):
    """A sparse, TF-IDF-like problem: non-negative counts, a few per row."""
    X = scipy.sparse.random(n, p, density=density, format="csr", random_state=rng,
                            data_rvs=lambda k: rng.uniform(0.1, 1.0, k))
    W = rng.normal(size=(n_classes, p)) * 3
    y = np.argmax(X @ W.T + rng.gumbel(size=(n, n_classes)), axis=1)
    return X, y


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("n_classes", [2, 5])
def test_sparse_fit_equals_dense_fit(rng, fmt, n_classes):
    X, y = _text_like(rng, n_classes=n_classes)
    X = X.asformat(fmt)
    sw = rng.uniform(0.5, 2.0, X.shape[0])
    dense = SoftmaxRegression(C=10.0).fit(X.toarray(), y, sample_weight=sw)
    sparse = SoftmaxRegression(C=10.0).fit(X, y, sample_weight=sw)
    f_dense = _reference_objective(dense.coef_, dense.intercept_, X, y, 10.0, sw)
    f_sparse = _reference_objective(sparse.coef_, sparse.intercept_, X, y, 10.0, sw)
    assert abs(f_sparse - f_dense) <= 1e-8 * abs(f_dense)
    assert abs(sparse.objective_ - f_sparse) <= 1e-10 * f_sparse  # objective_ is the reference's
    for method in ("decision_function", "predict_proba", "predict_log_proba", "predict"):
        got, want = getattr(sparse, method)(X), getattr(sparse, method)(X.toarray())
        assert not scipy.sparse.issparse(got)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_sparse_input_is_never_densified(rng, monkeypatch):
    X, y = _text_like(rng)
    calls = []
    for cls in (scipy.sparse.csr_matrix, scipy.sparse.csc_matrix):
        for name in ("toarray", "todense"):
            orig = getattr(cls, name)
            monkeypatch.setattr(cls, name, lambda self, *a, _o=orig, **k: calls.append(1) or _o(self, *a, **k))
    clf = SoftmaxRegression().fit(X, y)
    clf.predict_proba(X)
    assert calls == []


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_dtype_match(rng, n_classes, fit_intercept):
    # scikit-learn's test_logistic.py test_dtype_match, for SoftmaxRegression: float32
    # input keeps float32 (coef_, intercept_, decision_function), dense or sparse, and
    # the float32 fit is the float64 fit to float32's accuracy
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if n_classes == 2:
        X, y = X[y > 0], y[y > 0]
    fits = {}
    for dtype in (np.float32, np.float64):
        for fmt in ("dense", "csr"):
            Xd = X.astype(dtype)
            Xin = scipy.sparse.csr_matrix(Xd) if fmt == "csr" else Xd
            clf = SoftmaxRegression(fit_intercept=fit_intercept, tol=1e-6).fit(Xin, y)
            assert clf.coef_.dtype == dtype and clf.intercept_.dtype == dtype
            assert clf.decision_function(Xin).dtype == dtype
            assert clf.predict_proba(Xin).dtype == dtype
            fits[dtype, fmt] = clf
    ref = fits[np.float64, "dense"]
    for key, clf in fits.items():
        np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=2e-3, atol=2e-4, err_msg=str(key))
        f = _reference_objective(clf.coef_, clf.intercept_, X, y, 1.0)
        f_ref = _reference_objective(ref.coef_, ref.intercept_, X, y, 1.0)
        assert f - f_ref <= 1e-6 * f_ref, key  # float32 reaches the optimum to its precision


def test_float32_evaluation_is_float32(rng):
    X = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    obj = LinearSoftmaxLoss(3, 4, C=1.0, dtype=np.float32)
    coef, intercept = obj.weights(rng.normal(size=obj.n_params))
    assert coef.dtype == intercept.dtype == np.float32
    f, g = obj.loss_gradient(rng.normal(size=obj.n_params), X, y, np.ones(50), 50.0)
    assert g.dtype == np.float64 and isinstance(f, float)  # what L-BFGS works in



def test_float32_fit_stops_at_its_objective_rounding():
    # Below the float32 objective's rounding noise L-BFGS-B's line search compares noise:
    # on 50000 x 50 x 10 such a fit made 86 evaluations in 25 iterations. The float32
    # objective's ftol stops it where it can still tell values apart, at float64's optimum
    # to far better than tol = 1e-8 asks.
    X, y = make_classification(n_samples=20000, n_features=30, n_informative=20,
                               n_classes=6, random_state=0)
    X = StandardScaler().fit_transform(X)
    best = {}
    for dtype in (np.float64, np.float32):
        obj = LinearSoftmaxLoss(6, 30, C=1.0, dtype=dtype)
        Xd = X.astype(dtype)
        parts = obj.split(Xd, y)
        calls = []

        def fun(p, obj=obj, parts=parts, calls=calls):
            calls.append(1)
            return obj.blocked_loss_gradient(p, parts, 20000.0)

        result = obj.minimize(fun, np.zeros(obj.n_params), tol=1e-8, max_iter=1000,
                              n_samples=20000)
        assert len(calls) <= result.nit + 5, (dtype, len(calls), result.nit)
        best[dtype] = LinearSoftmaxLoss(6, 30, C=1.0).loss(result.x, X, y, None, 20000.0)
    assert abs(best[np.float32] - best[np.float64]) <= 1e-9 * best[np.float64]
    # the float64 rule where the count is unknown, and always for float64
    assert LinearSoftmaxLoss(6, 30, dtype=np.float32).ftol(None) == 64 * np.finfo(float).eps
    assert LinearSoftmaxLoss(6, 30).ftol(20000) == 64 * np.finfo(float).eps
    assert LinearSoftmaxLoss(6, 30, dtype=np.float32).ftol(4 ** 10) == 2.0**-23 / 2**10

def test_penalty_none():
    # scikit-learn's test_penalty_none: penalty=None warns that C is ignored, and equals C=inf
    X, y = make_classification(n_samples=1000, n_redundant=0, random_state=0)
    with pytest.warns(UserWarning, match="Setting penalty=None will ignore the C"):
        SoftmaxRegression(penalty=None, C=4).fit(X, y)
    none = SoftmaxRegression(penalty=None).fit(X, y)
    c_inf = SoftmaxRegression(penalty="l2", C=np.inf).fit(X, y)
    np.testing.assert_array_equal(none.predict(X), c_inf.predict(X))
    np.testing.assert_allclose(none.coef_, c_inf.coef_, rtol=1e-12)


def test_c_inf_no_warning():
    # scikit-learn's test_c_inf_no_warning (ported): C=inf is an unpenalised fit, no warning
    X, y = make_classification(n_samples=300, n_classes=3, n_informative=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = SoftmaxRegression(C=np.inf).fit(X, y)
    sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000).fit(X, y)
    f = _reference_objective(clf.coef_, clf.intercept_, X, y, np.inf)
    f_sk = _reference_objective(sk.coef_, sk.intercept_, X, y, np.inf)
    assert f <= f_sk * (1 + 1e-6)


def test_logistic_regression_sample_weights():
    # scikit-learn's test_logistic.py test_logistic_regression_sample_weights, ported:
    # unit weights are no weights; a class weight equals the matching sample weights
    X, y = make_classification(n_samples=200, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    plain = SoftmaxRegression().fit(X, y)
    ones = SoftmaxRegression().fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_allclose(plain.coef_, ones.coef_, rtol=1e-12)
    sw = np.where(y == 1, 2.0, 1.0)
    by_sample = SoftmaxRegression().fit(X, y, sample_weight=sw)
    by_class = SoftmaxRegression(class_weight={0: 1, 1: 2, 2: 1}).fit(X, y)
    np.testing.assert_allclose(by_sample.coef_, by_class.coef_, rtol=1e-6)
    sk = LogisticRegression(tol=1e-10, max_iter=10000).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(by_sample.coef_, sk.coef_, rtol=1e-4)


def test_class_weight_balanced_matches_compute_class_weight():
    # scikit-learn's test_logistic_regression_class_weights idea: "balanced" equals the dict
    from sklearn.utils.class_weight import compute_class_weight

    X, y = make_classification(n_samples=300, n_features=5, n_informative=3, n_classes=3,
                               weights=[0.6, 0.3, 0.1], random_state=0)
    cw = compute_class_weight("balanced", classes=np.unique(y), y=y)
    balanced = SoftmaxRegression(class_weight="balanced").fit(X, y)
    as_dict = SoftmaxRegression(class_weight=dict(enumerate(cw))).fit(X, y)
    np.testing.assert_allclose(balanced.coef_, as_dict.coef_, rtol=1e-10)
    sk = LogisticRegression(class_weight="balanced", tol=1e-10, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(balanced.coef_, sk.coef_, rtol=1e-4)


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
    # a stranger's review: data of another shape started afresh in silence; scikit-learn's
    # LogisticRegression raises ("Initialization coef is of shape ..."), and so does this
    with pytest.raises(ValueError, match=r"warm_start=True.*\(10, 64\).*\(10, 63\)"):
        clf.fit(X[:, 1:], y)
    with pytest.raises(ValueError, match=r"warm_start=True.*\(10, 64\).*\(1, 64\)"):
        clf.fit(X[y < 2], y[y < 2])
    clf.set_params(warm_start=False).fit(X[:, 1:], y)  # afresh when asked


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


def test_class_weight_balanced_counts_classes_by_sample_weight():
    # scikit-learn >= 1.6 weighs the class counts of "balanced" by sample_weight; logitlab
    # counted rows, and its coefficients differed from LogisticRegression's by 9e-3 on iris
    from sklearn.datasets import load_iris
    from sklearn.utils.class_weight import compute_class_weight

    X, y = load_iris(return_X_y=True)
    sw = np.random.default_rng(0).uniform(0.1, 3.0, len(y))
    cw = compute_class_weight("balanced", classes=np.unique(y), y=y, sample_weight=sw)
    balanced = SoftmaxRegression(class_weight="balanced").fit(X, y, sample_weight=sw)
    as_dict = SoftmaxRegression(class_weight=dict(enumerate(cw))).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(balanced.coef_, as_dict.coef_, rtol=1e-10)
    sk = LogisticRegression(class_weight="balanced", tol=1e-10, max_iter=10000)
    sk.fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(balanced.coef_, sk.coef_, rtol=1e-4, atol=1e-6)


def test_a_bad_label_type_names_y_alone():
    # X was fine, but the message blamed "`X` and `y`".
    X = np.random.default_rng(0).normal(size=(150, 3))
    for est in (SoftmaxRegression(), MLPClassifier(epochs=1)):
        with pytest.raises(TypeError, match=r"^`y`: '<' not supported"):
            est.fit(X, np.array(["1", 1, 2] * 50, dtype=object))
