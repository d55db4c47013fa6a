"""How far tol=1e-6 leaves each library's coefficients from the optimum, on the CV benchmark's
sparse problem (issue 23's "the same coefficients to 1e-4").

    python benchmarks/check_cv_coefficients.py [--quick]

For C along the middle of ``bench_softmax_regression_cv.py``'s path
(``np.logspace(-4, 4, 10)``), one fit each from zero on the whole sparse
problem (20000 x 20000, 0.2 % non-zeros, 10 classes): scikit-learn's
``LogisticRegression`` at tol=1e-12 (the reference optimum), and logitlab's
``SoftmaxRegression`` and scikit-learn's at tol=1e-6, the CV benchmark's
tolerance, and logitlab's at 1e-12. Prints each one's largest coefficient
distance from the reference. Not a timing: the machine's load does not matter.
"""

import warnings

import numpy as np
from _common import arguments
from _problems import sparse_problem
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from logitlab import SoftmaxRegression

ARGS = arguments(__doc__)


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", FutureWarning)
    n = 2000 if ARGS.quick else 20_000
    X, y = sparse_problem(n, 20_000, 10, 0.002)
    print(f"sparse CSR {n}x20000, 0.2% nnz, 10 classes; max |coef - reference| "
          "(reference: scikit-learn at tol=1e-12)\n")
    print("| C | max abs reference coef | logitlab tol=1e-6 | sklearn tol=1e-6 | logitlab tol=1e-12 "
          "| logitlab vs sklearn, both at 1e-6 |")
    print("|---|---|---|---|---|---|")
    for C in np.logspace(-4, 4, 10)[3:8]:
        ref = LogisticRegression(C=C, tol=1e-12, max_iter=20_000).fit(X, y)
        ours = SoftmaxRegression(C=C, tol=1e-6, max_iter=1000).fit(X, y)
        theirs = LogisticRegression(C=C, tol=1e-6, max_iter=1000).fit(X, y)
        tight = SoftmaxRegression(C=C, tol=1e-12, max_iter=20_000).fit(X, y)

        def off(m, to=ref):
            return f"{float(np.abs(m.coef_ - to.coef_).max()):.1e}"

        print(f"| {C:.4g} | {float(np.abs(ref.coef_).max()):.3g} | {off(ours)} | {off(theirs)} "
              f"| {off(tight)} | {off(ours, theirs)} |", flush=True)


if __name__ == "__main__":
    main()
