"""Newton-CG (``estimators/_newton_cg.py``) and the objective's Hessian products.

References: central differences of the objective's own gradient for the Hessian
products; scipy's Rosenbrock function and its Hessian product, and a linear
solve, for the optimiser; L-BFGS's fits and scikit-learn's ``newton-cg`` for
the estimator.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from logitlab import SoftmaxRegression, _jit
from logitlab.estimators._linear_loss import LinearSoftmaxLoss
from logitlab.estimators._newton_cg import minimize_newton_cg


def _problem(rng, n, d, k, *, sparse, dtype=np.float64, weights=False):
    X = rng.normal(size=(n, d)) * (rng.random((n, d)) < (0.2 if sparse else 1.0))
    W = rng.normal(size=(k, d))
    y = np.argmax(X @ W.T + rng.gumbel(size=(n, k)), axis=1)
    X = X.astype(dtype)
    sw = rng.uniform(0.0, 3.0, n) if weights else np.ones(n)
    if weights:
        sw[::9] = 0.0  # rows that do not count
    return (sp.csr_matrix(X) if sparse else X), y, sw


CASES = {  # name: (n_classes, sparse, kernel mode, dtype, weights, fit_intercept, C)
    "dense": (5, False, "auto", np.float64, False, True, 1.0),
    "dense-kernels-weights": (5, False, "always", np.float64, True, True, 0.3),
    "csr-kernels": (7, True, "always", np.float64, False, True, 2.0),
    "csr-kernels-weights-no-intercept": (7, True, "always", np.float64, True, False, 1.0),
    "csr-numpy": (7, True, "never", np.float64, True, True, 1.0),
    "csr-kernels-float32": (6, True, "always", np.float32, True, True, 1.0),
    "csr-kernels-60-classes": (60, True, "always", np.float64, True, True, 1.0),
    "dense-binary": (2, False, "auto", np.float64, True, True, 1.0),
    "csr-binary-no-penalty": (2, True, "auto", np.float64, False, True, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_hessian_product_is_the_gradient_s_derivative(case, rng):
    """``hessian_product`` against central differences of the float64 gradient (the float32
    evaluation's product against the float64 objective's differences)."""
    k, sparse, mode, dtype, weights, intercept, C = CASES[case]
    X, y, sw = _problem(rng, 600, 30, k, sparse=sparse, dtype=dtype, weights=weights)
    sw_sum = float(sw.sum())
    x = rng.normal(size=(1 if k == 2 else k) * (30 + intercept)) * 0.3
    v = rng.normal(size=x.size)
    with _jit.kernel_mode(mode):
        obj = LinearSoftmaxLoss(k, 30, C=C, fit_intercept=intercept, dtype=dtype)
        parts = obj.split(X, y, sw)
        Hv = obj.hessian_product(x, parts, sw_sum)(v)
        ref = LinearSoftmaxLoss(k, 30, C=C, fit_intercept=intercept)
        ref_parts = ref.split(X.astype(np.float64), y, sw)
        h = 1e-5
        fd = (ref.blocked_loss_gradient(x + h * v, ref_parts, sw_sum)[1]
              - ref.blocked_loss_gradient(x - h * v, ref_parts, sw_sum)[1]) / (2 * h)
    assert Hv.dtype == np.float64 and Hv.shape == x.shape
    tol = 1e-7 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(Hv, fd, rtol=0, atol=tol * np.abs(fd).max())


def test_it_reaches_the_minimum_of_rosenbrock_and_of_a_quadratic(rng):
    for n in (2, 10):
        r = minimize_newton_cg(lambda x: (optimize.rosen(x), optimize.rosen_der(x)),
                               lambda x: (lambda v: optimize.rosen_hess_prod(x, v)),
                               np.full(n, -1.2), gtol=1e-10, ftol=0.0, max_iter=500)
        assert r.status == 0 and r.success
        np.testing.assert_allclose(r.x, np.ones(n), atol=1e-8)
    A = rng.normal(size=(40, 40))
    A = A @ A.T / 40 + 0.01 * np.eye(40)  # condition about 1e4
    b = rng.normal(size=40)
    calls = []
    r = minimize_newton_cg(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b),
                           lambda x: calls.append(1) or (lambda v: A @ v),
                           np.zeros(40), gtol=1e-12, ftol=0.0, max_iter=50)
    np.testing.assert_allclose(r.x, np.linalg.solve(A, b), rtol=0, atol=1e-9)
    assert r.status == 0 and len(calls) == r.nit and r.nhev >= r.nit


def test_its_limits_and_the_callback_stop_it_as_l_bfgs_s_do():
    fun = lambda x: (optimize.rosen(x), optimize.rosen_der(x))  # noqa: E731
    hessp = lambda x: (lambda v: optimize.rosen_hess_prod(x, v))  # noqa: E731
    r = minimize_newton_cg(fun, hessp, np.full(4, -1.2), gtol=1e-10, ftol=0.0, max_iter=3)
    assert r.status == 1 and r.nit == 3 and "ITERATIONS" in r.message
    r = minimize_newton_cg(fun, hessp, np.full(4, -1.2), gtol=1e-10, ftol=0.0, max_iter=100,
                           max_fun=5)
    assert r.status == 1 and r.nfev <= 5 and "EVALUATIONS" in r.message
    seen = []

    def callback(intermediate_result):
        seen.append(intermediate_result.fun)
        if len(seen) == 2:
            raise StopIteration

    r = minimize_newton_cg(fun, hessp, np.full(4, -1.2), gtol=1e-10, ftol=0.0, max_iter=100,
                           callback=callback)
    assert r.status == 99 and r.nit == 2 and seen == [pytest.approx(seen[0]), r.fun]
    assert r.fun == optimize.rosen(r.x)


def test_it_keeps_six_vectors():
    # the point, its gradient, the trial point, the direction, CG's residual and direction;
    # the objective's own: its gradient, a temporary, and a Hessian product
    n = 200_000
    scale = np.linspace(1.0, 3.0, n)

    def quadratic(x):
        return 0.5 * float(x @ (scale * x)), scale * x

    tracemalloc.start()
    try:
        minimize_newton_cg(quadratic, lambda x: (lambda v: scale * v), np.ones(n), gtol=0.0,
                           ftol=0.0, max_iter=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= (6 + 4) * 8 * n


@pytest.mark.parametrize("case", ["csr", "csr-weights-no-intercept", "dense", "csr-binary",
                                  "csr-float32", "csr-unpenalised"])
def test_a_newton_cg_fit_reaches_the_l_bfgs_fit_s_objective(case, rng):
    # the criterion: the same objective to 1e-8 relative
    k = 2 if case.endswith("binary") else 6
    sparse = case.startswith("csr")
    dtype = np.float32 if case.endswith("float32") else np.float64
    X, y, sw = _problem(rng, 3000, 40, k, sparse=sparse, dtype=dtype,
                        weights="weights" in case)
    kw = dict(tol=1e-8, C=np.inf if "unpenalised" in case else 0.5,
              fit_intercept="no-intercept" not in case, class_weight="balanced")
    ref = SoftmaxRegression(solver="lbfgs", **kw).fit(X, y, sample_weight=sw)
    got = SoftmaxRegression(solver="newton-cg", **kw).fit(X, y, sample_weight=sw)
    assert got.coef_.dtype == dtype
    rel = 1e-8 if dtype == np.float64 else 1e-6
    assert abs(got.objective_ - ref.objective_) <= rel * ref.objective_
    assert got.objective_ <= ref.objective_ * (1 + 1e-10) or dtype == np.float32
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), atol=1e-4)


def test_it_matches_scikit_learn_s_newton_cg_on_sparse_data(rng):
    X, y, _ = _problem(rng, 4000, 300, 8, sparse=True)
    ref = LogisticRegression(solver="newton-cg", C=2.0, tol=1e-8, max_iter=1000).fit(X, y)
    with _jit.kernel_mode("always"):  # the kernels' Hessian products
        got = SoftmaxRegression(solver="newton-cg", C=2.0, tol=1e-8).fit(X, y)
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.intercept_, ref.intercept_ - ref.intercept_.mean(), atol=1e-6)
    assert abs(int(got.n_iter_[0]) - int(ref.n_iter_[0])) <= 2


def test_auto_takes_newton_cg_for_sparse_x_and_l_bfgs_for_dense(rng, capsys):
    X, y, _ = _problem(rng, 500, 20, 3, sparse=True)
    for data, solver in ((X, "Newton-CG"), (X.toarray(), "L-BFGS")):
        est = SoftmaxRegression(verbose=2).fit(data, y)
        lines = capsys.readouterr().out.strip().splitlines()
        n = est.n_iter_[0]
        assert len(lines) == n + 1
        assert lines[-1].startswith(f"{solver} converged after {n} iterations")
        if solver == "Newton-CG":
            assert "Hessian products (CONVERGENCE: NORM OF GRADIENT <= GTOL)" in lines[-1]
    with pytest.warns(ConvergenceWarning, match=r"\(Newton-CG\) failed to converge after 1 "):
        SoftmaxRegression(max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="'solver' parameter"):
        SoftmaxRegression(solver="newton").fit(X, y)


def test_a_warm_start_on_newton_cg_starts_at_the_solution(rng):
    X, y, _ = _problem(rng, 2000, 50, 4, sparse=True)
    est = SoftmaxRegression(solver="newton-cg", warm_start=True).fit(X, y)
    first = est.objective_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.fit(X, y)
    assert est.n_iter_[0] == 0 and est.objective_ == first


def _badly_scaled(rng):
    """Sparse data with one column in units 1e8 times too small (a review's case)."""
    n, p, k = 3000, 200, 4
    X = sp.random(n, p, density=0.05, format="csr", random_state=rng,
                  data_rvs=lambda m: rng.uniform(0.05, 1, m))
    y = np.argmax(X @ rng.normal(size=(p, k)) * 2 + rng.gumbel(size=(n, k)), axis=1)
    return (X @ sp.diags(np.r_[1e8, np.ones(p - 1)])).tocsr(), y


def _unstandardized(monkeypatch):
    """Fits in the objective's own coordinates, as before they were standardised (where a
    badly scaled column still stalls the solvers: the warnings' cases)."""
    from logitlab.estimators import _softmax_regression

    monkeypatch.setattr(_softmax_regression, "standardizing", lambda *args: None)


def test_a_badly_scaled_fit_goes_on_to_the_optimum_and_says_why_it_stopped(rng, monkeypatch):
    # a review: Newton-CG stopped on the objective's relative reduction 4 % above the optimum
    # (a column at 1e8), as converged; L-BFGS (scikit-learn's too) 2.2 times above, silently
    X, y = _badly_scaled(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its ConvergenceWarning, and "Line Search failed"
        ref = LogisticRegression(solver="newton-cg", tol=1e-8, max_iter=1000).fit(X, y)
    ref_objective = LinearSoftmaxLoss(4, 200, C=1.0).loss(
        np.column_stack([ref.coef_, ref.intercept_]).ravel(), X, y, None, float(X.shape[0]))
    # in standardised coordinates (the fits' own) both solvers reach it, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = {solver: SoftmaxRegression(solver=solver).fit(X, y)
                for solver in ("newton-cg", "lbfgs")}
    for got in fits.values():
        assert got.objective_ <= ref_objective * (1 + 1e-8)  # scikit-learn's, or lower
    # in the objective's own coordinates they stall, and say so
    _unstandardized(monkeypatch)
    with pytest.warns(ConvergenceWarning, match="relative reduction, its largest gradient"):
        got = SoftmaxRegression(solver="newton-cg").fit(X, y)
    assert got.objective_ <= ref_objective * (1 + 1e-8)
    with pytest.warns(ConvergenceWarning, match="or try solver='newton-cg'"):
        stalled = SoftmaxRegression(solver="lbfgs").fit(X, y)
    assert stalled.objective_ > 2 * got.objective_  # what the warning is for


@pytest.mark.parametrize("solver", ["newton-cg", "lbfgs"])
def test_no_warning_where_it_converged_at_the_last_iteration_allowed(rng, solver):
    # a review (both solvers): scipy's L-BFGS-B checks max_iter before the gradient (status 1
    # at a gradient below tol); scikit-learn's lbfgs warns there, logitlab does not
    if solver == "newton-cg":
        X, y, _ = _problem(rng, 2000, 50, 4, sparse=True)
    else:
        from sklearn.datasets import load_iris
        from sklearn.preprocessing import StandardScaler

        X, y = load_iris(return_X_y=True)
        X = StandardScaler().fit_transform(X)
    n = SoftmaxRegression(solver=solver).fit(X, y).n_iter_[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SoftmaxRegression(solver=solver, max_iter=int(n)).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="failed to converge"):
        SoftmaxRegression(solver=solver, max_iter=int(n) - 1).fit(X, y)


def test_overflowing_features_give_the_estimator_s_warning_alone(rng):
    X, y, _ = _problem(rng, 2000, 50, 4, sparse=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _jit.kernel_mode("always"):
            SoftmaxRegression(solver="newton-cg").fit(X * 1e150, y)
    assert [w.category for w in caught] == [ConvergenceWarning]


def test_a_stalled_fit_is_named_in_either_of_scipy_s_words(rng, monkeypatch):
    # a review: scipy before 1.15 says REL_REDUCTION_OF_F, and the warning did not fire there
    from logitlab.estimators import _linear_loss

    _unstandardized(monkeypatch)
    X, y = _badly_scaled(rng)
    real = _linear_loss.LinearSoftmaxLoss.minimize

    def old_words(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        result.message = result.message.replace("RELATIVE REDUCTION OF F <=",
                                                "REL_REDUCTION_OF_F_<=_")
        return result

    monkeypatch.setattr(_linear_loss.LinearSoftmaxLoss, "minimize", old_words)
    with pytest.warns(ConvergenceWarning, match="relative reduction, its largest gradient"):
        SoftmaxRegression(solver="lbfgs").fit(X, y)


def test_the_model_kernels_import_first_or_second(tmp_path):
    # a review: `import logitlab._model_kernels` first met itself half made (a circular import)
    import subprocess
    import sys

    for first, second in (("_model_kernels", "_kernels"), ("_kernels", "_model_kernels")):
        code = (f"import logitlab.{first}, logitlab.{second} as k; "
                "print(k.linear_hvp_csr if hasattr(k, 'linear_hvp_csr') else k.adam_update)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
