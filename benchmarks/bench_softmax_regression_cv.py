"""SoftmaxRegressionCV against scikit-learn's LogisticRegressionCV at the same settings.

    python benchmarks/bench_softmax_regression_cv.py [--quick] [--repeats N] [--only NAME]
        [--tol T] [--threads N]

Both fit the same path: Cs=10 (``np.logspace(-4, 4, 10)``), the same five
stratified folds passed to both as a list of (train, test) index pairs,
``scoring="neg_log_loss"``, tol ``--tol`` (default 1e-6) on both, max_iter
1000, multinomial lbfgs for scikit-learn, then the refit at the best C. The
table shows each one's time (median of ``--repeats``, default 1, the two
alternating in the same process), the time ratio, whether the chosen C is the
same, and how far apart the scores (largest absolute difference over folds,
at the chosen C and over every C) and the refitted coefficients (largest
absolute difference) are. ``--threads N`` holds both libraries' BLAS and
OpenMP pools to N threads (threadpoolctl) for the whole run (scikit-learn's
multinomial loss runs OpenMP threads, which spin badly on a loaded machine),
and with N=1 also keeps logitlab's evaluation on one thread (it otherwise
shares a large problem's row blocks between two of its own).

Problems: dense float64 20000 x 50 x 10, the same in float32, and a sparse
(CSR) text-like 20000 x 20000, 0.2 % non-zeros, 10 classes. ``--quick``
divides the rows by 10.
"""

import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from _common import arguments, fits_in_turn, machine, table
from _problems import dense_problem, sparse_problem

from logitlab import SoftmaxRegressionCV

ARGS = arguments(__doc__,
                 ("--repeats", dict(type=int, default=1, help="runs of each (median shown)")),
                 ("--only", dict(default=None, help="only the problems whose name has this")),
                 ("--tol", dict(type=float, default=1e-6, help="tol of both (default 1e-6)")),
                 ("--threads", dict(type=int, default=None,
                                    help="hold BLAS and OpenMP to this many threads")))
QUICK, REPEATS, ONLY, TOL, THREADS = ARGS.quick, ARGS.repeats, ARGS.only, ARGS.tol, ARGS.threads
CS, N_FOLDS, MAX_ITER, SCORING = 10, 5, 1000, "neg_log_loss"


def fitters(folds):
    def ours(X, y):
        return SoftmaxRegressionCV(Cs=CS, cv=folds, scoring=SCORING, tol=TOL,
                                   max_iter=MAX_ITER).fit(X, y)

    def sklearn(X, y):
        return LogisticRegressionCV(Cs=CS, cv=folds, scoring=SCORING, tol=TOL, max_iter=MAX_ITER,
                                    l1_ratios=(0,), use_legacy_attributes=False).fit(X, y)

    return {"logitlab SoftmaxRegressionCV": ours, "sklearn LogisticRegressionCV": sklearn}


def main():
    scale = 10 if QUICK else 1
    n = 20_000 // scale
    problems = [
        (f"dense f64 {n}x50, 10 classes", lambda: dense_problem(n, 50, 10)),
        (f"dense f32 {n}x50, 10 classes", lambda: dense_problem(n, 50, 10, np.float32)),
        (f"sparse CSR {n}x20000, 0.2% nnz, 10 classes",
         lambda: sparse_problem(n, 20_000, 10, 0.002)),
    ]
    print(f"machine: {machine()}")
    print(f"Cs={CS}, cv={N_FOLDS} stratified folds (the same list for both), scoring={SCORING}, "
          f"tol={TOL:g}, max_iter={MAX_ITER}, repeats={REPEATS}, threads={THREADS or 'default'}\n")
    header = ["problem", "estimator", "time (s)", "speed-up vs sklearn", "C_",
              "same C_", "max |score diff| at C_", "over all Cs", "max |coef diff|"]
    for name, make in problems:
        if ONLY and ONLY not in name:
            continue
        X, y = make()
        folds = list(StratifiedKFold(N_FOLDS).split(X, y))
        fits = fitters(folds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", FutureWarning)
            times, models = fits_in_turn(fits, X, y, REPEATS)
        t = {s: float(np.median(v)) for s, v in times.items()}
        ours, sk = models["logitlab SoftmaxRegressionCV"], models["sklearn LogisticRegressionCV"]
        diff = np.abs(ours.scores_ - sk.scores_[:, 0])
        at_c = float(diff[:, np.flatnonzero(ours.Cs_ == ours.C_)].max())
        score_diff = float(diff.max())
        coef_diff = float(np.abs(ours.coef_ - sk.coef_).max())
        rows = []
        for s, m in models.items():
            mine = s.startswith("logitlab")
            rows.append([name, s, f"{t[s]:.2f}",
                         f"{t['sklearn LogisticRegressionCV'] / t[s]:.2f}x" if mine else "",
                         f"{m.C_:.4g}", ("yes" if ours.C_ == sk.C_ else "NO") if mine else "",
                         f"{at_c:.1e}" if mine else "", f"{score_diff:.1e}" if mine else "",
                         f"{coef_diff:.1e}" if mine else ""])
        table(header, rows)  # each problem as it finishes
        sys.stdout.flush()


if __name__ == "__main__":
    if THREADS:
        from threadpoolctl import threadpool_limits

        if THREADS == 1:
            from logitlab.estimators import _linear_loss

            _linear_loss.THREADED_SIZE = float("inf")

        with threadpool_limits(limits=THREADS):
            main()
    else:
        main()
