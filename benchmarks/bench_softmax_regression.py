"""SoftmaxRegression.fit against scikit-learn's LogisticRegression (lbfgs), same objective.

    python benchmarks/bench_softmax_regression.py [--quick]

Both solve the same problem (C=1, tol=1e-8); the objective each reaches is
evaluated with one function, and the table shows the relative gap and the
time ratio. scikit-learn runs as users get it (BLAS threads left to BLAS)
and with one BLAS thread, as logitlab picks for this size. The fits are
timed in turn, three in a row, the first not counted (``median_times``).
"""

import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from _common import machine, median_times, table

from logitlab import SoftmaxRegression
from logitlab.estimators._softmax_regression import multinomial_objective

QUICK = "--quick" in sys.argv


def objective(coef, intercept, X, y, C):
    classes = np.unique(y)
    W = np.column_stack([coef, intercept]).ravel()
    yi = np.searchsorted(classes, y)
    binary = len(classes) == 2
    return multinomial_objective(W, X, yi.astype(float) if binary else yi, np.ones(len(y)),
                                 float(len(y)), len(classes), C, True, binary)[0]


def main():
    print(f"machine: {machine()}\n")
    problems = [("digits", *load_digits(return_X_y=True))]
    n = 20_000 if QUICK else 200_000
    Xc, yc = make_classification(n_samples=n, n_features=100, n_informative=60, n_classes=20,
                                 random_state=0)
    problems.append((f"make_classification({n}, 100, 20 classes)", Xc, yc))
    rows = []
    for name, X, y in problems:
        X = StandardScaler().fit_transform(X)

        def ours():
            return SoftmaxRegression(C=1.0, tol=1e-8, max_iter=1000).fit(X, y)

        def sklearn():
            return LogisticRegression(C=1.0, tol=1e-8, max_iter=1000).fit(X, y)

        def sklearn_one_thread():
            with threadpool_limits(1, "blas"):
                return sklearn()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # in turn, each fit three times in a row, the first not counted
            times = median_times({"ours": ours, "sklearn": sklearn, "sklearn1": sklearn_one_thread},
                                 2 if X.size > 1e6 else 6)
            ours, sk = ours(), sklearn()
        t_ours, t_sk, t_sk1 = times["ours"], times["sklearn"], times["sklearn1"]
        f_ours = objective(ours.coef_, ours.intercept_, X, y, 1.0)
        f_sk = objective(sk.coef_, sk.intercept_, X, y, 1.0)
        rows.append([name, f"{t_ours:.2f}", f"{t_sk:.2f}", f"{t_sk1:.2f}",
                     f"{(f_ours - f_sk) / abs(f_sk):+.1e}", f"{t_sk / t_ours:.1f}x",
                     f"{t_sk1 / t_ours:.1f}x"])
    table(["problem", "logitlab (s)", "sklearn (s)", "sklearn, 1 BLAS thread (s)",
           "objective gap (ours - sklearn) / sklearn", "speed-up vs sklearn",
           "vs sklearn 1 thread"], rows)


if __name__ == "__main__":
    main()
