"""Newton-CG: Newton's method with the step solved by conjugate gradients.

scikit-learn's ``newton-cg`` solver (``sklearn/utils/optimize.py``:
``_newton_cg``, ``_cg``), made lean for objectives with very many parameters:

* Each iteration solves ``H d = -g`` for the direction by conjugate gradients
  from ``d = 0``, with Hessian-vector products only (``hessp``: a gather and
  a scatter over the data, as a gradient's evaluation without its
  exponentials), stopping where the residual's 1-norm falls below ``eta
  ||g||_1``, ``eta = min(0.5, sqrt(||g||_1))`` (scikit-learn's forcing term:
  loose far from the optimum, quadratic convergence near it), at
  ``max_inner`` products, at a direction of (nearly) zero or negative
  curvature (the capped CG scikit-learn cites, arXiv:1803.02924: the
  iterate so far; where that is still 0, the steepest descent direction,
  from the step ``1 / ||g||``, as L-BFGS-B's first).
* The step along ``d`` is L-BFGS-B's line search (:func:`._lbfgs._line_search`,
  MINPACK's ``dcsrch``), trying the Newton step 1 first. A failed search
  tries once more along ``-g`` (scikit-learn gives up at once); failing
  there too, it stops (``status`` 2).
* It stops where scikit-learn's stops, at ``max |g_i| <= gtol`` (``status``
  0); after ``max_iter`` iterations or ``max_fun`` evaluations (``status``
  1); and, given an ``ftol`` above 0, on L-BFGS-B's relative reduction
  ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol`` (``status`` 0). The
  estimators give it one for float32 evaluations only, whose gradient cannot
  reach a float64 ``gtol``: in float64 a step that barely lowers the
  objective on a badly scaled problem would end the fit far from the optimum
  (a review's column at 1e8: 4 % above it). With ``ftol = 0`` it stops there
  only where a step leaves the objective unchanged.

On ill-conditioned wide problems (sparse text features) it needs far fewer
passes over the data than L-BFGS: on 100000 x 50000, 0.2 % non-zeros, 20
classes, scikit-learn's newton-cg made 9 iterations and 91 Hessian
products where its lbfgs made 250 evaluations (docs/performance.md, §6).
Memory: six parameter-sized vectors (the point, its gradient, the trial
point, the direction, CG's residual and its search direction), plus what
``hessp`` keeps (the objective's: the probabilities of the rows).

The result is a :class:`scipy.optimize.OptimizeResult` with the fields of
:func:`._lbfgs.minimize_lbfgs`'s, and ``nhev``, the Hessian products.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import daxpy
from scipy.optimize import OptimizeResult

from ._lbfgs import _failed_search, _line_search, _stop_after, _stop_at

__all__ = ["minimize_newton_cg"]

_CURVATURE_EPS = 16 * np.finfo(np.float64).eps  # scikit-learn's _cg: "tiny" curvature


def _cg(hessp, g, d, r, p, max_inner, tol):
    """``d`` ~ ``-H^{-1} g`` by conjugate gradients from 0 (scikit-learn's ``_cg``), in the
    buffers ``d``, ``r`` (the residual ``g + H d``) and ``p``; returns the products made."""
    d[:] = 0.0
    np.copyto(r, g)
    np.negative(r, out=p)
    rr = float(r @ r)
    pp = rr  # ||p||^2, kept by the recurrence ||p_i||^2 = ||r_i||^2 + beta^2 ||p_{i-1}||^2
    products = 0
    # overflowing products (features of 1e150) end the loop at the curvature test, or leave
    # a direction that is no descent, which the caller replaces by -g: no warnings of NumPy's
    with np.errstate(over="ignore", invalid="ignore"):
        while products <= max_inner:
            if float(np.abs(r).sum()) <= tol:
                break
            Hp = hessp(p)
            products += 1
            curvature = float(p @ Hp)
            if 0.0 <= curvature <= _CURVATURE_EPS * pp:  # flat: the iterate so far
                break
            if curvature < 0.0 or not np.isfinite(curvature):  # (rounding: H is positive
                break  # semi-definite) the iterate so far; at the first, 0: the caller takes -g
            alpha = rr / curvature
            daxpy(p, d, a=alpha)
            daxpy(Hp, r, a=alpha)
            rr_new = float(r @ r)
            beta = rr_new / rr
            p *= beta
            p -= r
            pp = rr_new + beta * beta * pp
            rr = rr_new
    return products


def minimize_newton_cg(fun, hessp_at, x0, *, args=(), gtol, ftol, max_iter, max_inner=200,
                       maxls=50, max_fun=15000, callback=None):
    """Minimise ``fun(x, *args) -> (value, gradient)`` from ``x0`` (see the module).

    ``hessp_at(x, *args)`` returns a function ``v -> H v``, the Hessian at ``x``; it is
    called once an iteration, at the point whose gradient the iteration starts from.
    ``fun`` must return a new gradient array on each call and keep no reference to the
    ``x`` it is given; so must ``hessp_at`` and its products (the optimiser reuses the
    buffers). ``callback`` and ``StopIteration`` (``status`` 99) as in
    :func:`._lbfgs.minimize_lbfgs`.
    """
    x = np.array(x0, dtype=np.float64).ravel()  # the caller's x0 is not changed
    f, g = fun(x, *args)
    f, g = float(f), np.asarray(g, dtype=np.float64)
    nfev, nit, nhev = 1, 0, 0
    d, r, p, trial = (np.empty_like(x) for _ in range(4))
    while True:
        stop = _stop_at(g, nit, nfev, gtol, max_iter, max_fun,
                        "CONVERGENCE: NORM OF GRADIENT <= GTOL")
        if stop:
            break
        g1 = float(np.abs(g).sum())
        nhev += _cg(hessp_at(x, *args), g, d, r, p, max_inner, min(0.5, np.sqrt(g1)) * g1)
        steepest = not float(g @ d) < 0.0  # no descent (a zero or NaN direction): -g
        if steepest:
            np.negative(g, out=d)
        for _ in range(2):
            found = _line_search(fun, args, x, f, g, d, trial,
                                 1.0 / np.linalg.norm(g) if steepest else 1.0,
                                 max(1, min(maxls, max_fun - nfev)))
            nfev += found[-1]
            if found[0] is not None or steepest or nfev >= max_fun:
                break
            np.negative(g, out=d)  # a failed search along the Newton direction: once along -g
            steepest = True
        alpha, f_new, g_new, _ = found
        stop = _failed_search(found, nfev, max_fun)
        if stop:
            if stop[0] == 2 and not np.isfinite(f_new):  # reported (the estimators warn)
                f = f_new
            break
        nit += 1
        x, trial = trial, x  # the new point is trial = x + alpha d
        f_old, f, g = f, float(f_new), g_new
        stop = _stop_after(callback, x, f_old, f, ftol)
        if stop:
            break
    status, message = stop
    return OptimizeResult(x=x, fun=f, jac=g, nit=nit, nfev=nfev, nhev=nhev, status=status,
                          success=status == 0, message=message)
