"""The lean L-BFGS (``estimators/_lbfgs.py``) that wide linear fits run instead of L-BFGS-B.

References: the textbook two-loop recursion (Nocedal & Wright, Algorithm 7.4)
for the direction, and scipy's L-BFGS-B for the optima and its stopping rules.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import optimize
from sklearn.exceptions import ConvergenceWarning

from logitlab import SoftmaxRegression
from logitlab.estimators import _lbfgs, _linear_loss
from logitlab.estimators._lbfgs import _History, minimize_lbfgs
from logitlab.estimators._linear_loss import LinearSoftmaxLoss


def two_loop(S, Y, g):
    """-H g by the two-loop recursion, H0 = (s^T y / y^T y) I of the newest pair."""
    q = g.copy()
    alphas = []
    for s, y in zip(S[::-1], Y[::-1]):
        a = (s @ q) / (s @ y)
        q -= a * y
        alphas.append(a)
    r = (S[-1] @ Y[-1]) / (Y[-1] @ Y[-1]) * q
    for (s, y), a in zip(zip(S, Y), alphas[::-1]):
        b = (y @ r) / (s @ y)
        r += (a - b) * s
    return -r


def _direction_against_two_loop(seed, n, m, steps, refused=()):
    """Pairs added to a ``_History`` as ``minimize_lbfgs`` adds them (``s = alpha d``, ``y =
    g_new - g``, the inner products by difference); at the steps in ``refused`` the gradient
    moves without a pair (``s^T y < 0``: the curvature test refuses it, and the history's
    products are taken afresh). Its direction, then the two-loop recursion's on the pairs
    kept."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    H = A @ A.T / n + np.eye(n)  # y = H s: every pair kept has s^T y > 0
    history = _History(m, n)
    g = rng.normal(size=n)
    history.refresh(g)
    S, Y = [], []
    for step in range(steps):
        d, alpha = rng.normal(size=n), rng.uniform(0.1, 2.0)
        if step in refused:
            g = g - H @ (alpha * d)
            history.refresh(g)
            continue
        y = H @ (alpha * d)
        g_new = g + y
        history.add(alpha, d, y, g_new, alpha * (d @ y), y @ y)
        S.append(alpha * d)
        Y.append(y)
        g = g_new
    got = np.empty(n)
    assert history.direction(g, got)  # a descent direction
    return got, two_loop(np.array(S[-m:]), np.array(Y[-m:]), g)


@pytest.mark.parametrize("pairs", [1, 3, 10, 17])
def test_the_direction_is_the_two_loop_recursions(pairs):
    # m = 10 slots: past ten pairs the ring wraps round
    got, want = _direction_against_two_loop(pairs, 300, 10, pairs)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_a_pair_refused_by_the_curvature_test_leaves_the_direction_right():
    # without the refresh, the next pair's products by difference would be wrong
    got, want = _direction_against_two_loop(5, 200, 4, 7, refused=(2, 5))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def _logistic(rng, n=600, d=12, k=4):
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    obj = LinearSoftmaxLoss(k, d, C=1.0)
    return obj, (X, y, None, float(n))


def test_it_reaches_l_bfgs_b_s_optimum_and_stops_by_its_rules(rng):
    obj, args = _logistic(rng)
    x0 = np.zeros(obj.n_params)
    x0_before = x0.copy()
    ref = optimize.minimize(obj.loss_gradient, x0, args=args, jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-10, "ftol": 1e-16, "maxiter": 1000, "maxls": 50})
    got = minimize_lbfgs(obj.loss_gradient, x0, args=args, gtol=1e-10, ftol=1e-16,
                         max_iter=1000)
    assert np.array_equal(x0, x0_before)  # the caller's start is not changed
    assert got.fun <= ref.fun * (1 + 1e-12)
    assert abs(got.fun - ref.fun) <= 1e-12 * abs(ref.fun)
    np.testing.assert_allclose(got.x, ref.x, atol=1e-7)
    assert got.status == 0 and got.success
    # its gradient is the objective's at its point, and below the tolerance
    f, g = obj.loss_gradient(got.x, *args)
    assert f == got.fun and np.array_equal(g, got.jac)
    assert np.abs(g).max() <= 1e-10 and "PROJECTED GRADIENT" in got.message
    # the relative-reduction rule alone: it stops where L-BFGS-B stops, give or take
    loose = minimize_lbfgs(obj.loss_gradient, x0, args=args, gtol=0.0, ftol=1e-6,
                           max_iter=1000)
    ref = optimize.minimize(obj.loss_gradient, x0, args=args, jac=True, method="L-BFGS-B",
                            options={"gtol": 0.0, "ftol": 1e-6, "maxiter": 1000, "maxls": 50})
    assert loose.status == 0 and "REDUCTION" in loose.message
    assert abs(loose.nit - ref.nit) <= 2 and loose.nit < got.nit
    # a few iterations: status 1, as L-BFGS-B reports it
    short = minimize_lbfgs(obj.loss_gradient, x0, args=args, gtol=1e-10, ftol=0.0, max_iter=3)
    assert short.nit == 3 and short.status == 1 and not short.success


def test_the_callback_sees_each_iterate_and_may_stop_the_run(rng):
    obj, args = _logistic(rng)
    seen = []
    res = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args, gtol=1e-8,
                         ftol=0.0, max_iter=50, callback=lambda intermediate_result:
                         seen.append((intermediate_result.x, intermediate_result.fun)))
    assert len(seen) == res.nit
    assert seen[-1][1] == res.fun and np.array_equal(seen[-1][0], res.x)
    assert all(b[1] <= a[1] for a, b in zip(seen, seen[1:]))  # Wolfe steps decrease f
    # each x kept (no copy made here: a review found the optimiser's buffer handed out,
    # which later held other vectors) is still the point whose objective came with it
    for x, f in seen:
        assert obj.loss_gradient(x, *args)[0] == f

    def stop(intermediate_result):
        raise StopIteration

    res = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args, gtol=1e-8,
                         ftol=0.0, max_iter=50, callback=stop)
    assert res.nit == 1 and res.status == 99 and not res.success  # as scipy's minimize
    for budget in (4, 6, 9):  # never past it (a review found one more)
        res = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args,
                             gtol=1e-12, ftol=0.0, max_iter=1000, max_fun=budget)
        assert res.nfev <= budget and res.status == 1 and "EVALUATIONS" in res.message
        assert res.nfev >= budget - 2 and res.nit >= 1  # and its last search not wasted


def test_the_search_s_budget_and_first_step_are_l_bfgs_b_s():
    # a review: the maxls-th trial was evaluated and never checked; a first step above the
    # largest (1e10, where ||g|| < 1e-10) made the search fail without a trial and report
    # a NaN objective
    def half_square(x):
        return 0.5 * float(x @ x), x.copy()

    for maxls in (1, 2):
        got = minimize_lbfgs(half_square, np.array([3.0, 4.0]), gtol=1e-10, ftol=0.0,
                             max_iter=100, maxls=maxls)
        ref = optimize.minimize(half_square, np.array([3.0, 4.0]), jac=True,
                                method="L-BFGS-B",
                                options={"gtol": 1e-10, "ftol": 0.0, "maxls": maxls})
        assert got.status == ref.status == 0 and got.nfev == ref.nfev

    def flat(x):  # a diagonal quadratic near its minimum
        return 0.5 * float(x[0] ** 2 + 4 * x[1] ** 2), np.array([x[0], 4 * x[1]])

    got = minimize_lbfgs(flat, np.array([5e-11, 0.0]), gtol=1e-12, ftol=0.0, max_iter=100)
    assert got.status == 0 and np.isfinite(got.fun) and got.fun < 1.25e-21


def test_a_step_into_overflow_is_shortened_until_the_minimum_is_found():
    # f rises as exp(5000 (t - 0.85)) past its minimum at 0.85 - ln(5000) / 5000: the
    # first trial (1) overflows; the search restarts a tenth as far and never again past
    # half the overflowing step (a review: it cycled between 0.1 and 2.1 before)
    def wall(x):
        with np.errstate(over="ignore"):
            e = np.exp(5000.0 * (x[0] - 0.85))
        return float(-x[0] + e), np.array([-1.0 + 5000.0 * e])

    got = minimize_lbfgs(wall, np.zeros(1), gtol=1e-8, ftol=0.0, max_iter=100)
    assert got.status == 0
    assert got.x[0] == pytest.approx(0.85 - np.log(5000.0) / 5000.0, abs=1e-9)


def test_a_step_that_must_shrink_far_is_found_as_l_bfgs_b_finds_it(rng, monkeypatch):
    # a review: one row of features at 1e5 needs steps thousands of times below the first
    # try; the strong-Wolfe search used first gave up after ten halvings and the fit
    # stopped at 4.2e-4 above L-BFGS-B's objective without a warning. It now runs
    # L-BFGS-B's own search (dcsrch)
    X = rng.normal(size=(400, 10))
    y = rng.integers(0, 3, 400)
    X[5] = 1e5
    ref = SoftmaxRegression().fit(X, y)
    monkeypatch.setattr(_linear_loss, "LEAN_LBFGS_PARAMS", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        got = SoftmaxRegression().fit(X, y)
    assert abs(got.objective_ - ref.objective_) <= 1e-8 * ref.objective_


def test_a_wall_far_away_is_walked_to_as_l_bfgs_b_walks():
    # a review: the first search (scipy's strong-Wolfe) ran out of step doublings on this
    # one and returned its last step unchecked: the objective rose and read as
    # convergence. dcsrch extrapolates as L-BFGS-B does: both walk max_iter steps
    c, T = 60 / 2.0**49, 2.0**49 * (4 / 3)

    def f(x):
        with np.errstate(over="ignore"):
            e = np.exp(c * (x[0] - T))
        return float(-x[0] + e), np.array([-1 + c * e])

    got = minimize_lbfgs(f, np.zeros(1), gtol=1e-8, ftol=1e-15, max_iter=100)
    ref = optimize.minimize(f, np.zeros(1), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-8, "ftol": 1e-15, "maxiter": 100, "maxls": 50})
    assert got.fun <= f(np.zeros(1))[0] and got.status == ref.status == 1
    assert got.fun == pytest.approx(ref.fun, rel=1e-6)


@pytest.mark.parametrize("sparse", [False, True])
def test_a_softmax_regression_fit_on_it_equals_the_l_bfgs_b_fit(rng, monkeypatch, sparse):
    # the criterion: the same objective to 1e-8 relative
    X = rng.normal(size=(3000, 40)) * (rng.random((3000, 40)) < (0.1 if sparse else 1.0))
    y = rng.integers(0, 6, 3000)
    X = sp.csr_matrix(X) if sparse else X
    ref = SoftmaxRegression(C=3.0, tol=1e-8, solver="lbfgs").fit(X, y)
    monkeypatch.setattr(_linear_loss, "LEAN_LBFGS_PARAMS", 0)
    got = SoftmaxRegression(C=3.0, tol=1e-8, solver="lbfgs").fit(X, y)
    assert abs(got.objective_ - ref.objective_) <= 1e-8 * ref.objective_
    np.testing.assert_allclose(got.coef_, ref.coef_, atol=1e-5)
    np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_its_failures_reach_the_estimators_warnings(rng, monkeypatch):
    monkeypatch.setattr(_linear_loss, "LEAN_LBFGS_PARAMS", 0)
    X = rng.normal(size=(500, 4))
    y = rng.integers(0, 3, 500)
    with pytest.warns(ConvergenceWarning, match="failed to converge after 2"):
        SoftmaxRegression(max_iter=2, tol=1e-12).fit(X, y)
    # the first gradient's norm overflows (L-BFGS-B then reports a NaN objective): it stops
    # where it started, with the objective there, and the estimator warns of the overflow
    X[7] = 1e200
    with pytest.warns(ConvergenceWarning, match="non-finite objective or an overflowing gradient"):
        est = SoftmaxRegression().fit(X, y)
    assert est.n_iter_[0] == 0 and est.objective_ == pytest.approx(np.log(3))
    # features large enough that no step lowers the objective, where the gradient's norm
    # does not overflow: both optimisers stop at the start; the estimator says so
    X[7] = 1e100
    for lean_from in (0, 1 << 40):
        monkeypatch.setattr(_linear_loss, "LEAN_LBFGS_PARAMS", lean_from)
        with pytest.warns(ConvergenceWarning, match="found no step"):
            SoftmaxRegression().fit(X, y)


def _peak_bytes(run):
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_it_keeps_2m_plus_4_vectors_where_l_bfgs_b_keeps_more():
    # the reason it exists: memory a parameter. A quadratic whose gradient is a new array,
    # as an objective's is; 10 iterations fill m = 10 pairs
    n = 200_000
    scale = np.linspace(1.0, 3.0, n)

    def quadratic(x):
        return 0.5 * float(x @ (scale * x)), scale * x

    x0 = np.ones(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lean = _peak_bytes(lambda: minimize_lbfgs(quadratic, x0, gtol=0.0, ftol=0.0,
                                                  max_iter=12))
        ref = _peak_bytes(lambda: optimize.minimize(
            quadratic, x0, jac=True, method="L-BFGS-B",
            options={"gtol": 0.0, "ftol": 0.0, "maxiter": 12}))
    vectors = 8 * n
    # 2m + 4 of its own, and the objective's: its gradient and a temporary (scale * x)
    assert lean <= (2 * 10 + 4 + 3) * vectors
    assert ref >= (2 * 10 + 8) * vectors  # L-BFGS-B's, for the comparison in the docs


@pytest.mark.parametrize("lean_from", [0, 1 << 40], ids=["lean", "L-BFGS-B"])
def test_verbose_fits_say_each_iteration_and_why_they_stopped(rng, monkeypatch, capsys,
                                                             lean_from):
    # a stranger's review: a float32 fit stopped after 50 iterations and nothing said why
    monkeypatch.setattr(_linear_loss, "LEAN_LBFGS_PARAMS", lean_from)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    est = SoftmaxRegression(verbose=2).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    n = est.n_iter_[0]
    assert len(lines) == n + 1 and lines[n - 1].startswith(f"iteration {n}: objective ")
    assert lines[-1].startswith((f"L-BFGS converged after {n} iterations and ",
                                 f"L-BFGS stopped: no lower objective found along its "
                                 f"direction after {n} iterations and "))
    assert "(CONVERGENCE" in lines[-1] or "(ABNORMAL" in lines[-1]


# ---------------------------------------------------------------- the coarse phase
def _float32_logistic(rng, n=4000, d=20, k=5):
    """A logistic objective, and its float32 evaluation as ``coarse`` (as the estimators
    make it)."""
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    obj = LinearSoftmaxLoss(k, d, C=1.0)
    obj32 = LinearSoftmaxLoss(k, d, C=1.0, dtype=np.float32)
    X32 = X.astype(np.float32)
    args = (X, y, None, float(n))
    return obj, args, (lambda x, *_: obj32.loss_gradient(x, X32, y, None, float(n))), \
        100 * obj32.ftol(n)


def test_a_coarse_phase_hands_over_to_the_exact_objective_at_its_optimum(rng):
    obj, args, coarse, noise = _float32_logistic(rng)
    x0 = np.zeros(obj.n_params)
    ref = optimize.minimize(obj.loss_gradient, x0, args=args, jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-9, "ftol": 0.0, "maxiter": 1000, "maxls": 50})
    got = minimize_lbfgs(obj.loss_gradient, x0, args=args, gtol=1e-9, ftol=0.0,
                         max_iter=1000, coarse=coarse, coarse_noise=noise)
    # the result is the exact objective's, at its optimum to gtol
    f, g = obj.loss_gradient(got.x, *args)
    assert got.status == 0 and f == got.fun and np.array_equal(g, got.jac)
    assert np.abs(g).max() <= 1e-9
    assert abs(got.fun - ref.fun) <= 1e-12 * ref.fun
    # the float32 evaluations did the work: a handful of exact ones at the end
    assert got.ncoarse >= ref.nfev - 3 and got.nfev - got.ncoarse <= 3


def test_the_coarse_search_reads_changes_below_its_noise_from_the_derivatives():
    # a quadratic whose coarse values carry noise of 1e-9 (its gradient exact): near the
    # optimum the values cannot tell a step down from one up; the trapezoid of the
    # derivatives can, and the coarse phase reaches gtol itself
    scale = np.linspace(1.0, 50.0, 40)
    noise = np.random.default_rng(3)

    def exact(x):
        return 0.5 * float(x @ (scale * x)), scale * x

    def coarse(x):  # noise of 1e-9 (relative to max(|f|, 1), as the estimators measure it)
        f, g = exact(x)
        return f + 1e-9 * noise.normal(), g.copy()

    x0 = np.linspace(-1.0, 1.0, 40)
    got = minimize_lbfgs(exact, x0, gtol=1e-10, ftol=0.0, max_iter=500, coarse=coarse,
                         coarse_noise=1e-7)
    assert got.status == 0 and np.abs(got.jac).max() <= 1e-10
    # at most two exact evaluations: the hand-over where it ended, and a check of the coarse
    # gradient should it have paused (exact here: the coarse phase then goes on to gtol)
    assert got.nfev - got.ncoarse <= 2
    # without reading past the noise, the coarse phase stalls far above gtol
    stalled = minimize_lbfgs(exact, x0, gtol=1e-10, ftol=0.0, max_iter=500, coarse=coarse,
                             coarse_noise=0.0)
    assert stalled.status == 0 and stalled.nfev - stalled.ncoarse > 2


def test_a_coarse_gradient_stuck_above_gtol_hands_over_once_it_stops_falling():
    # coarse gradients off by 1e-6 at random: the coarse phase cannot reach gtol = 1e-10;
    # it ends once its gradient stops falling (checked against the exact one), and the
    # exact phase finishes the run
    scale = np.linspace(1.0, 20.0, 30)
    noise = np.random.default_rng(4)

    def exact(x):
        return 0.5 * float(x @ (scale * x)), scale * x

    def coarse(x):
        f, g = exact(x)
        return f, g + 1e-6 * noise.normal(size=g.size)

    got = minimize_lbfgs(exact, np.ones(30), gtol=1e-10, ftol=0.0, max_iter=1000,
                         coarse=coarse, coarse_noise=1e-7)
    assert got.status == 0 and np.abs(got.jac).max() <= 1e-10
    # the check ended it sooner than the patience alone (a review: this passed without it)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_lbfgs, "_COARSE_CHECK", 10**9)
        noise = np.random.default_rng(4)
        patience = minimize_lbfgs(exact, np.ones(30), gtol=1e-10, ftol=0.0, max_iter=1000,
                                  coarse=coarse, coarse_noise=1e-7)
    assert 0 < got.ncoarse < patience.ncoarse


def test_a_coarse_value_that_is_not_finite_leaves_the_run_to_the_exact_objective(rng):
    # features beyond float32's range: the float32 copy holds inf, its first value is NaN;
    # the run is then the plain run, step for step
    obj, args, _, noise = _float32_logistic(rng)

    def nan(x, *_):
        return np.nan, np.full(x.size, np.nan)

    plain = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args, gtol=1e-9,
                           ftol=0.0, max_iter=1000)
    got = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args, gtol=1e-9,
                         ftol=0.0, max_iter=1000, coarse=nan, coarse_noise=noise)
    assert got.ncoarse == 1 and got.nfev == plain.nfev + 1
    assert np.array_equal(got.x, plain.x) and got.fun == plain.fun and got.status == 0


@pytest.mark.parametrize("ending", ["max_iter", "max_fun", "callback"])
def test_a_run_that_ends_in_its_coarse_phase_reports_the_exact_objective(rng, ending):
    obj, args, coarse, noise = _float32_logistic(rng)

    def stop(intermediate_result):
        raise StopIteration

    limits = {"max_iter": dict(max_iter=3), "max_fun": dict(max_iter=1000, max_fun=4),
              "callback": dict(max_iter=1000, callback=stop)}[ending]
    got = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args, gtol=1e-9,
                         ftol=0.0, coarse=coarse, coarse_noise=noise, **limits)
    f, g = obj.loss_gradient(got.x, *args)
    assert f == got.fun and np.array_equal(g, got.jac)
    assert got.status == {"max_iter": 1, "max_fun": 1, "callback": 99}[ending]
    assert got.nfev - got.ncoarse == 1
    for budget in range(2, 40):  # every evaluation counts, the hand-over's and check's too
        got = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args,
                             gtol=1e-12, ftol=0.0, max_iter=1000, max_fun=budget,
                             coarse=coarse, coarse_noise=noise)
        assert got.nfev <= budget


def _large_problem(rng, n=30000, d=40, k=6):
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k))
    y = np.argmax(X @ W + rng.gumbel(size=(n, k)), axis=1)
    return X, y


def test_a_dense_float64_fit_takes_its_first_iterations_in_float32(rng, monkeypatch):
    X, y = _large_problem(rng)
    assert X.size >= _linear_loss.COARSE_MIN_SIZE
    runs = []
    lean = _linear_loss.minimize_lbfgs

    def spy(*a, **kw):
        runs.append(lean(*a, **kw))
        return runs[-1]

    monkeypatch.setattr(_linear_loss, "minimize_lbfgs", spy)
    w = rng.uniform(0.5, 2.0, len(y))
    got = SoftmaxRegression(tol=1e-8).fit(X, y, sample_weight=w)
    assert runs and runs[-1].ncoarse > 20 and runs[-1].nfev - runs[-1].ncoarse <= 8
    monkeypatch.setattr(_linear_loss, "COARSE_MIN_SIZE", X.size + 1)  # off: L-BFGS-B
    ref = SoftmaxRegression(tol=1e-8).fit(X, y, sample_weight=w)
    assert len(runs) == 1
    assert abs(got.objective_ - ref.objective_) <= 1e-10 * ref.objective_
    np.testing.assert_allclose(got.coef_, ref.coef_, atol=1e-5)  # both stopped at tol
    assert got.coef_.dtype == np.float64


def test_the_float32_copy_is_made_only_within_its_size_limits(rng, monkeypatch):
    X, y = _large_problem(rng)
    obj = LinearSoftmaxLoss(6, X.shape[1], C=1.0)
    assert obj.coarse(X, y, None, float(len(y))) is not None
    monkeypatch.setattr(_linear_loss, "COARSE_MAX_BYTES", X.size * 4 - 1)
    assert obj.coarse(X, y, None, float(len(y))) is None
    monkeypatch.undo()
    # float32 X (evaluated in float32 already), sparse X, an objective in float32: none
    assert LinearSoftmaxLoss(6, X.shape[1], dtype=np.float32).coarse(
        X.astype(np.float32), y, None, float(len(y))) is None
    assert obj.coarse(sp.csr_matrix(X), y, None, float(len(y))) is None


@pytest.mark.parametrize("k, d", [(6, 40), (2, 40), (20, 80)],
                         ids=["fused-kernel", "binary", "blas"])  # 2^20 elements or more
def test_features_beyond_float32_s_range_fit_as_without_the_coarse_phase(rng, monkeypatch,
                                                                          k, d):
    # a review: on BLAS's path the copy's inf made NumPy warn (an error under -W error); no
    # copy is made then, and the fit is the plain one, warnings and all
    X, y = _large_problem(rng, n=(1 << 20) // d + 1, d=d, k=k)
    X[:, 0] *= 1e-300  # finite in float64, zero in float32
    obj = LinearSoftmaxLoss(k, d, C=1.0)
    assert obj.coarse(X, y, None, float(len(y))) is not None
    X[:, 1] *= 1e39  # finite in float64, inf in float32
    assert obj.coarse(X, y, None, float(len(y))) is None
    monkeypatch.setattr(_linear_loss, "LEAN_LBFGS_PARAMS", 0)  # the same driver both ways
    with warnings.catch_warnings(record=True) as with_coarse:
        warnings.simplefilter("always")
        got = SoftmaxRegression(max_iter=50).fit(X, y)
    monkeypatch.setattr(_linear_loss, "COARSE_MIN_SIZE", X.size + 1)
    with warnings.catch_warnings(record=True) as without:
        warnings.simplefilter("always")
        ref = SoftmaxRegression(max_iter=50).fit(X, y)
    assert np.array_equal(got.coef_, ref.coef_) and got.objective_ == ref.objective_
    assert [str(w.message) for w in with_coarse] == [str(w.message) for w in without]
    assert not any(issubclass(w.category, RuntimeWarning) for w in with_coarse)


def test_a_coarse_value_that_turns_non_finite_hands_over_at_once(rng):
    # a review: a search then spent its 50 trials on it (NaN: 100 evaluations)
    obj, args, coarse, noise = _float32_logistic(rng)
    for bad in (np.nan, np.inf):
        calls = [0]

        def turning(x, *a):
            calls[0] += 1
            f, g = coarse(x, *a)
            return (bad, g) if calls[0] > 4 else (f, g)

        got = minimize_lbfgs(obj.loss_gradient, np.zeros(obj.n_params), args=args,
                             gtol=1e-9, ftol=0.0, max_iter=1000, coarse=turning,
                             coarse_noise=noise)
        assert got.ncoarse == 5 and got.status == 0 and np.abs(got.jac).max() <= 1e-9


def test_a_hand_over_at_gtol_keeps_the_coarse_history():
    # coarse gradients biased by 3 gtol in one component: the coarse phase reaches gtol
    # where the exact gradient has not; the exact phase goes on from the coarse pairs (good
    # ones: the bias cancels in their differences). Deterministic: 11 exact evaluations
    # with the pairs kept, 14 with them dropped (measured on a mutant), 62 for the whole
    # run on the exact objective alone
    scale = np.geomspace(1.0, 30.0, 50)
    bias = np.zeros(50)
    bias[-1] = 3e-8

    def exact(x):
        return 0.5 * float(x @ (scale * x)), scale * x

    def coarse(x):
        f, g = exact(x)
        return f, g + bias

    got = minimize_lbfgs(exact, np.ones(50), gtol=1e-8, ftol=0.0, max_iter=1000,
                         coarse=coarse, coarse_noise=0.0)
    assert got.status == 0 and np.abs(got.jac).max() <= 1e-8
    assert got.nfev - got.ncoarse <= 12


@pytest.mark.parametrize("k, intercept, weights", [(20, True, False), (20, False, True),
                                                   (4, True, True), (2, True, False)],
                         ids=["blas-ones-column", "no-intercept", "fused-kernel", "binary"])
def test_the_coarse_evaluation_is_the_objective_in_float32(rng, k, intercept, weights):
    # each path the float32 copy takes (a column of ones for BLAS's blocks, the fused
    # kernel's own intercept, binary): value and gradient as float64's, to float32's
    # rounding, the intercepts unpenalised
    n, d = 16000, 80  # 20 classes, 80 features: BLAS's blocks (FUSED_MAX_FEATURES)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d)
    y = rng.integers(0, k, n)
    w = rng.uniform(0.2, 3.0, n) if weights else None
    s = float(w.sum()) if weights else float(n)
    obj = LinearSoftmaxLoss(k, d, C=0.5, fit_intercept=intercept)
    params = rng.normal(size=obj.n_params) * 0.3
    assert obj.fused == (k == 4)
    fun, noise = obj.coarse(X, y, w, s)
    f32, g32 = fun(params)
    f64, g64 = obj.loss_gradient(params, X, y, w, s)
    assert abs(f32 - f64) <= 1e-6 * f64
    np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-6 * np.abs(g64).max())
    assert 0 < noise < 1e-6


def test_the_float32_copy_has_no_subnormals_and_refuses_overflow(rng):
    # a stranger's review: features at 1e-40 (float32 subnormals) made each float32
    # evaluation 8 to 13 times slower; they are zero in the copy, all else as astype's
    X = rng.normal(size=(5000, 12))
    X[:, 3] *= 1e-40  # subnormal in float32
    X[:, 4] *= 1e-300  # zero in float32
    X[7, 5] = 2e-38  # normal in float32: kept
    for ones, threads in ((False, 1), (True, 2)):
        X32 = _linear_loss._float32_copy(X, ones, threads)
        assert X32.dtype == np.float32 and X32.shape == (5000, 12 + ones)
        tiny = np.finfo(np.float32).tiny
        assert not np.any((X32 != 0) & (np.abs(X32) < tiny))
        want = X.astype(np.float32)
        want[np.abs(want) < tiny] = 0.0
        assert np.array_equal(X32[:, :12], want) and X32[7, 5] == np.float32(2e-38)
        if ones:
            assert np.all(X32[:, 12] == 1.0)
    X[100, 0] = 1e39  # beyond float32's range: no copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _linear_loss._float32_copy(X, True, 2) is None


def test_verbose_marks_the_float32_iterations(rng, capsys):
    X, y = _large_problem(rng)
    est = SoftmaxRegression(verbose=2).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("iteration 1: objective (float32) ")
    assert "in float32)" in lines[-1] and len(lines) == est.n_iter_[0] + 1


def test_a_warm_start_runs_in_float64(rng, monkeypatch):
    # a stranger's review: a refit at the optimum took 2-8 float32 iterations, not 1
    X, y = _large_problem(rng)
    X[:, :5] *= 30.0  # mildly unscaled: the float32 gradient's rounding above tol
    est = SoftmaxRegression(warm_start=True).fit(X, y)
    first = est.n_iter_[0]
    runs = []
    lean = _linear_loss.minimize_lbfgs

    def spy(*a, **kw):
        runs.append(kw.get("coarse"))
        return lean(*a, **kw)

    monkeypatch.setattr(_linear_loss, "minimize_lbfgs", spy)
    est.fit(X, y)
    assert runs in ([], [None]) and est.n_iter_[0] <= 1 < first
