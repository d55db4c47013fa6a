"""SoftmaxRegression.fit against scikit-learn's multinomial LogisticRegression solvers.

    python benchmarks/bench_softmax_regression.py [--quick] [--repeats N] [--only NAME]
        [--solvers lbfgs,newton-cg,newton-cholesky,saga] [--memory]

Every fit solves the same problem (C=1, tol=1e-8, L2 penalty, intercept);
the objective each reaches is evaluated in float64 by one function
(``LinearSoftmaxLoss``, checked against scikit-learn's ``log_loss`` in
tests/test_estimators.py), and the table shows its relative gap to the best
objective any solver reached, the time, the peak memory the fit allocated
(tracemalloc, in a separate untimed fit: NumPy and scikit-learn report their
buffers to it) and the time ratios against scikit-learn's lbfgs and against
the fastest scikit-learn solver whose objective is within 1e-6 of the best.

Problems: dense float64 50000 x 50 x 10 and 200000 x 100 x 20, the first
also in float32, and a sparse (CSR) text-like 100000 x 50000, 0.2 %
non-zeros, 20 classes. ``--quick`` divides the rows by 10. The fits run in
turn, the libraries alternating in the same process (a shared machine's
speed moves over seconds: every solver sees the same phases), each
``--repeats`` times (default 1), the median reported, after one untimed
fit each on the first ``WARMUP_ROWS`` rows (a process's one-time costs:
logitlab's first fit loads its compiled kernels, 1.77 s against 0.80 s
for the next at 50000 x 50 x 10 on the loaded 2-core Zen 2), and with
``PAUSE`` seconds of rest before each timed fit (OpenBLAS's threads spin
for a while after a product: see ``_common.fits_in_turn``).
newton-cholesky is left out on the sparse problem: its Hessian has
(50000 * 20)^2 entries.
saga runs at most ``SAGA_EPOCHS`` epochs (at tol=1e-8 it would run for
hours): its objective gap says how far it got.

After each sparse problem, a second table splits logitlab's peak into
its optimiser's arrays (measured alone, on a quadratic with as many
parameters: they do not depend on the data; on sparse ``X`` logitlab runs
Newton-CG, ``estimators/_newton_cg.py``; its L-BFGS's and scipy's
L-BFGS-B's shown beside it) and the rest (the rows' probabilities and the
evaluation's buffers), each against the sparse matrix plus the
coefficients.
``--memory`` prints only that table, from fits stopped after
``MEMORY_ITERATIONS`` iterations (the peak is reached in the first: every
buffer is allocated by then), so the full sizes take seconds.
"""

import sys
import tracemalloc
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from _common import arguments, fits_in_turn, machine, table
from _problems import dense_problem, sparse_problem

from logitlab import SoftmaxRegression
from logitlab.estimators import _linear_loss
from logitlab.estimators._linear_loss import LinearSoftmaxLoss

ARGS = arguments(
    __doc__,
    ("--repeats", dict(type=int, default=1, help="fits per solver; the median is reported")),
    ("--only", dict(help="only the problems whose name holds this, e.g. 50000x50 or sparse")),
    ("--solvers", dict(default="lbfgs,newton-cg,newton-cholesky,saga",
                       help="scikit-learn's solvers to compare, comma-separated")),
    ("--memory", dict(action="store_true", help="only the sparse memory table (short fits)")))
QUICK, REPEATS, ONLY, MEMORY = ARGS.quick, ARGS.repeats, ARGS.only, ARGS.memory
SOLVERS = ARGS.solvers.split(",")
SAGA_EPOCHS = 50
MEMORY_ITERATIONS = 5
WARMUP_ROWS = 10_000  # enough rows (x 10 classes) to load logitlab's kernels
PAUSE = 0.3  # seconds of rest before each timed fit (_common.fits_in_turn)
C, TOL = 1.0, 1e-8


def objective(coef, intercept, X, y):
    """The penalised objective at (coef, intercept), in float64."""
    classes = np.unique(y)
    yi = np.searchsorted(classes, y)
    obj = LinearSoftmaxLoss(len(classes), X.shape[1], C=C, fit_intercept=True)
    params = np.column_stack([np.asarray(coef, np.float64), np.asarray(intercept, np.float64)])
    X64 = X.astype(np.float64)
    return obj.loss(params.ravel(), X64, yi, None, float(len(y)))


def fitters(sparse):
    fits = {"logitlab": lambda X, y: SoftmaxRegression(C=C, tol=TOL, max_iter=1000).fit(X, y)}
    solvers = [s for s in SOLVERS if not (sparse and s == "newton-cholesky")]
    for s in solvers:
        fits[f"sklearn {s}"] = (lambda s: lambda X, y: LogisticRegression(
            C=C, tol=TOL, solver=s, max_iter=SAGA_EPOCHS if s == "saga" else 1000,
            random_state=0).fit(X, y))(s)
    return fits


def peak_mib(fit, X, y):
    tracemalloc.start()
    tracemalloc.reset_peak()
    fit(X, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def optimiser_mib(n_params, which):
    """Peak MiB of the optimiser itself, with logitlab's options, on ``n_params``: ``which`` is
    "newton-cg", "lbfgs" (the L-BFGS ``LinearSoftmaxLoss.minimize`` runs at that size) or
    "L-BFGS-B" (scipy's, whatever the size)."""
    objective = LinearSoftmaxLoss(2, n_params - 1)  # only its minimize (the one set of options)
    lean_from = _linear_loss.LEAN_LBFGS_PARAMS
    if which == "L-BFGS-B":
        _linear_loss.LEAN_LBFGS_PARAMS = n_params + 1

    def quadratic(x):
        return 0.5 * float(x @ x), x.copy()

    hessp = (lambda x: (lambda v: v.copy())) if which == "newton-cg" else None
    try:
        return peak_mib(lambda *_: objective.minimize(quadratic, np.ones(n_params), tol=TOL,
                                                      max_iter=MEMORY_ITERATIONS, hessp=hessp),
                        None, None)
    finally:
        _linear_loss.LEAN_LBFGS_PARAMS = lean_from


def memory_table(name, X, y, peak=None):
    """logitlab's sparse fit: peak memory against the matrix plus the coefficients."""
    k = len(np.unique(y))
    n_params = (1 if k == 2 else k) * (X.shape[1] + 1)
    x_mib = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20
    coef_mib = n_params * 8 / 2**20
    if peak is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit = lambda X, y: SoftmaxRegression(C=C, tol=TOL, max_iter=MEMORY_ITERATIONS).fit(X, y)
            fit(X, y)  # the kernels' first load is not the fit's memory
            peak = peak_mib(fit, X, y)
    own = optimiser_mib(n_params, "newton-cg")  # solver="auto" on sparse X
    unit = x_mib + coef_mib
    rows = [[name, "logitlab fit, all of it", f"{peak:.0f}", f"{peak / unit:.2f}"],
            [name, "  logitlab's Newton-CG's own arrays", f"{own:.0f}", f"{own / unit:.2f}"],
            [name, "  the rest (the probabilities, the evaluation)", f"{peak - own:.0f}",
             f"{(peak - own) / unit:.2f}"]]
    lean = n_params >= _linear_loss.LEAN_LBFGS_PARAMS
    for which, label in (("lbfgs", "logitlab's L-BFGS" if lean else None),
                         ("L-BFGS-B", "scipy L-BFGS-B")):
        if label:
            other = optimiser_mib(n_params, which)
            rows.append([name, f"({label}'s own arrays, for comparison)", f"{other:.0f}",
                         f"{other / unit:.2f}"])
    rows.append([name, "X (CSR) + coefficients", f"{x_mib:.0f} + {coef_mib:.0f}", "1.00"])
    table(["problem", "what", "peak MiB", "x (X + coef)"], rows)


def main():
    scale = 10 if QUICK else 1
    problems = [
        (f"dense f64 {50_000 // scale}x50, 10 classes", lambda: dense_problem(50_000 // scale, 50, 10)),
        (f"dense f32 {50_000 // scale}x50, 10 classes",
         lambda: dense_problem(50_000 // scale, 50, 10, np.float32)),
        (f"dense f64 {200_000 // scale}x100, 20 classes",
         lambda: dense_problem(200_000 // scale, 100, 20)),
        (f"sparse CSR {100_000 // scale}x50000, 0.2% nnz, 20 classes",
         lambda: sparse_problem(100_000 // scale, 50_000, 20, 0.002)),
    ]
    print(f"machine: {machine()}\n")
    header = ["problem", "solver", "time (s)", "objective gap to best", "peak MiB", "X MiB",
              "speed-up vs sklearn lbfgs", "vs fastest sklearn at the optimum"]
    for name, make in problems:
        if ONLY and ONLY not in name:
            continue
        X, y = make()
        if MEMORY:
            if sp.issparse(X):
                memory_table(name, X, y)
            continue
        data_mib = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes if sp.issparse(X)
                    else X.nbytes) / 2**20
        fits = fitters(sp.issparse(X))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            times, models = fits_in_turn(fits, X, y, REPEATS, warmup_rows=WARMUP_ROWS, pause=PAUSE)
            peaks = {s: peak_mib(fits[s], X, y) for s in fits}
        t = {s: float(np.median(v)) for s, v in times.items()}
        f = {s: objective(m.coef_, m.intercept_, X, y) for s, m in models.items()}
        best = min(f.values())
        close = [s for s in fits if s != "logitlab" and f[s] - best <= 1e-6 * abs(best)]
        best_sk = min(close, key=t.get) if close else None
        rows = []
        for s in fits:
            rows.append([name, s, f"{t[s]:.2f}", f"{(f[s] - best) / abs(best):.1e}",
                         f"{peaks[s]:.0f}", f"{data_mib:.0f}",
                         f"{t['sklearn lbfgs'] / t[s]:.1f}x" if s == "logitlab" and "sklearn lbfgs" in t
                         else "",
                         f"{t[best_sk] / t[s]:.1f}x ({best_sk[8:]})"
                         if s == "logitlab" and best_sk else ""])
        table(header, rows)  # each problem as it finishes
        if sp.issparse(X):
            memory_table(name, X, y, peaks["logitlab"])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
