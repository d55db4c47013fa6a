"""L-BFGS in the memory it needs, for objectives with very many parameters.

scipy's L-BFGS-B keeps ``2m + 5`` parameter-sized vectors in its workspace
and, through ``minimize``, copies of the point and the gradient, bounds and an
integer workspace: about 290 bytes a parameter at scikit-learn's ``m = 10``.
On a wide sparse fit (50,000 features, 20 classes: a million parameters) that
is 2.4 times the data. This is the same method without bounds in 2m + 4
vectors of its own (192 bytes a parameter at ``m = 10``): the ``m`` pairs ``s_i
= x_{i+1} - x_i``, ``y_i = g_{i+1} - g_i``, the point, its gradient, the
direction and the trial point; with the gradient at the trial point, about
200 bytes a parameter (measured: docs/performance.md, §6).

* The direction is L-BFGS-B's: the compact representation of the inverse
  Hessian (Byrd, Nocedal & Schnabel 1994, as L-BFGS-B's ``formk`` uses for its
  own), ``H = gamma I + [S gamma Y] M [S gamma Y]^T``, with ``gamma = s^T y /
  y^T y`` of the newest pair. It takes two passes over the history an
  iteration: ``[S; Y] g`` (one matrix-vector product) and the direction, a
  combination of the history's rows (one more). The inner products the
  ``2m x 2m`` middle matrix needs come from the first pass by difference:
  ``s_i^T y_new = s_i^T g_new - s_i^T g_old``, the second term kept from the
  iteration before; the new pair's own ``s^T y`` and ``y^T y`` directly.
  L-BFGS-B's ``setulb`` makes more passes: on the wide fit above it took
  52.5 s (233 iterations) where this took 40.4 s (253), objectives 1.8e-11
  apart (docs/performance.md, §6).
* The line search is L-BFGS-B's: MINPACK's ``dcsrch`` as scipy ports it
  (private to scipy; see ``_line_search``), at L-BFGS-B's settings, trying
  the step 1 first; the first iteration tries ``1 / ||g||``, as L-BFGS-B
  does (after a reset, 1 along ``-g``, as it does too). Each trial point is
  made in one buffer.
* A pair is kept only where ``s^T y > eps (-g^T s)`` (L-BFGS-B's test). A failed
  search drops the history and tries again along ``-g``; failing there too,
  it stops, as L-BFGS-B stops (``status`` 2); so does a gradient whose norm
  overflows (features of 1e200: the first step would be ``1 / inf``).
* It stops where L-BFGS-B stops: ``max |g_i| <= gtol`` or a relative
  reduction of the objective ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <=
  ftol`` (``status`` 0), or after ``max_iter`` iterations or ``max_fun``
  evaluations (``status`` 1).

* Optionally, a coarse phase first (:class:`_CoarsePhase`): the iterations run on a
  cheaper, less exact evaluation of the objective (the estimators': in float32) until
  its gradient reaches ``gtol`` or its rounding, the line search reading changes of the
  objective below the coarse values' noise from the trapezoid of the derivatives; then
  on the exact one, where every stop is decided.

The result is a :class:`scipy.optimize.OptimizeResult` with the fields the
estimators read from L-BFGS-B's (``x``, ``fun``, ``jac``, ``nit``, ``nfev``,
``status``, ``success``, ``message``), and ``ncoarse``. ``tests/test_lbfgs.py``
checks the direction against the textbook two-loop recursion and the fits against
L-BFGS-B's optima.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.blas import daxpy
from scipy.optimize import OptimizeResult

__all__ = ["minimize_lbfgs"]

_EPS = np.finfo(np.float64).eps
#: L-BFGS-B's line search settings (its ``dcsrch`` call): sufficient decrease, curvature,
#: the interval's relative tolerance, the largest step.
_C1, _C2, _XTOL, _STPMAX = 1e-3, 0.9, 0.1, 1e10
_TOO_MANY_EVALUATIONS = "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"  # L-BFGS-B's words
_CONVERGED = "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"
#: The coarse phase (:class:`_CoarsePhase`): its gradient checked against the exact one
#: after ``_COARSE_CHECK`` iterations without a new smallest ``max |g_i|``; followed down
#: to ``_COARSE_MARGIN`` times their difference; ended after ``_COARSE_PATIENCE`` more
#: within ``_COARSE_FLOOR`` times that hand-over; its history kept at a hand-over up to
#: ``_COARSE_KEEP`` times gtol.
#: (Checked at 100 gtol instead, every fit paid the check's exact evaluation: 5 % of the
#: 200000 x 100 x 20 fit, whose coarse gradient reaches gtol, 1.1e-9 off.)
_COARSE_CHECK = 3
_COARSE_MARGIN = 10.0
_COARSE_PATIENCE = 10
_COARSE_FLOOR = 100.0
_COARSE_KEEP = 100.0


class _History:
    """The ``m`` newest pairs ``(s_i, y_i)`` as the rows of one ``(2m, n)`` array, with the
    inner products the compact representation needs and ``[S; Y] g`` of the current
    gradient."""

    def __init__(self, m, n):
        self.m = m
        self.rows = np.zeros((2 * m, n))  # s in rows 0..m-1, y in rows m..2m-1, by slot
        self.order = []  # slots, oldest pair first
        self.sy = np.zeros((m, m))  # sy[i, j] = s_i^T y_j (used where i is not newer than j)
        self.yy = np.zeros((m, m))  # yy[i, j] = y_i^T y_j
        self.Bg = np.zeros(2 * m)  # rows @ g of the current gradient (slots in self.order)

    def clear(self):
        self.order = []

    def add(self, alpha, d, y, g_new, sy, yy):
        """Keep the pair ``(alpha d, y)`` in place of the oldest if full, ``sy = s^T y`` and
        ``yy = y^T y`` its inner products; ``g_new`` is the gradient at the new point
        (``self.Bg`` is then ``rows @ g_new``)."""
        m = self.m
        full = len(self.order) == m
        slot = self.order[0] if full else len(self.order)
        kept = self.order[1:] if full else self.order
        rows = self.rows
        np.multiply(d, alpha, out=rows[slot])
        np.copyto(rows[m + slot], y)
        Bg_new = rows @ g_new
        # s_i^T y_new and y_i^T y_new of the pairs kept, by difference (see the module)
        idx = np.asarray(kept, dtype=np.intp)
        self.sy[idx, slot] = Bg_new[idx] - self.Bg[idx]
        col = Bg_new[m + idx] - self.Bg[m + idx]
        self.yy[idx, slot] = col
        self.yy[slot, idx] = col
        self.sy[slot, slot] = sy
        self.yy[slot, slot] = yy
        self.Bg = Bg_new
        self.order = kept + [slot]

    def refresh(self, g):
        """``rows @ g`` for a gradient that no pair's update has seen."""
        self.Bg = self.rows @ g

    def direction(self, g, out):
        """``out = -H g`` (the compact form); ``False`` if it is not a descent direction."""
        m = self.m
        idx = np.asarray(self.order, dtype=np.intp)
        newest = self.order[-1]
        gamma = self.sy[newest, newest] / self.yy[newest, newest]
        R = np.triu(self.sy[np.ix_(idx, idx)])
        YtY = self.yy[np.ix_(idx, idx)]
        a, b = self.Bg[idx], self.Bg[m + idx]
        u = solve_triangular(R, a, lower=False, check_finite=False)
        p = solve_triangular(R, np.diag(R) * u + gamma * (YtY @ u) - gamma * b, trans="T",
                             lower=False, check_finite=False)
        coeffs = np.zeros(2 * m)
        coeffs[idx] = -p
        coeffs[m + idx] = gamma * u
        np.dot(coeffs, self.rows, out=out)  # -(S p - gamma Y u)
        daxpy(g, out, a=-gamma)  # in place: out -= gamma g
        return bool(np.isfinite(gamma) and out @ g < 0)


def _finite_norm(v):
    """Whether ``v^T v`` is finite (the first step is ``1 / ||g||``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(v @ v))


def _max_abs(v):
    """``max |v_i|`` (NaN if one is) without a temporary."""
    if not v.size:
        return 0.0
    hi, lo = float(v.max()), float(v.min())
    return max(hi, -lo) if hi == hi and lo == lo else np.nan


def _stop_at(g, nit, nfev, gtol, max_iter, max_fun, converged):
    """``(status, message)`` if an iteration should not start from gradient ``g`` (the stops
    L-BFGS-B checks there: an overflowed gradient, ``gtol`` with the message ``converged``,
    ``max_iter``, ``max_fun``), else None."""
    if not _finite_norm(g):  # overflowed: no step to take (the estimators warn)
        return 2, "ABNORMAL: THE GRADIENT'S NORM IS NOT FINITE"
    if _max_abs(g) <= gtol:
        return 0, converged
    if nit >= max_iter:
        return 1, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
    if nfev >= max_fun:
        return 1, _TOO_MANY_EVALUATIONS
    return None


def _failed_search(found, nfev, max_fun):
    """``(status, message)`` for a line search that found no step (``found[0]`` None), else
    None."""
    if found[0] is not None:
        return None
    if nfev >= max_fun:  # the search ran out of evaluations
        return 1, _TOO_MANY_EVALUATIONS
    return 2, "ABNORMAL_TERMINATION_IN_LNSRCH"


def _stop_after(callback, x, f_old, f, ftol, coarse=False):
    """``(status, message)`` if the iteration that moved to ``x`` (objective ``f_old`` ->
    ``f``) ends the run (``callback`` raised ``StopIteration``, or the relative reduction
    is at most ``ftol``), else None; ``callback`` gets a copy of ``x`` and ``f`` (and
    ``coarse=True`` in a coarse phase, whose ``f`` is the coarse evaluation's)."""
    if callback is not None:
        try:
            callback(OptimizeResult(x=x.copy(), fun=f, **({"coarse": True} if coarse else {})))
        except StopIteration:
            return 99, "`callback` raised `StopIteration`."
    if (f_old - f) / max(abs(f_old), abs(f), 1.0) <= ftol:
        return 0, "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"
    return None


def minimize_lbfgs(fun, x0, *, args=(), m=10, gtol, ftol, max_iter, maxls=50, max_fun=15000,
                   callback=None, coarse=None, coarse_noise=0.0):
    """Minimise ``fun(x, *args) -> (value, gradient)`` from ``x0`` (see the module).

    ``fun`` must return a new gradient array on each call, and keep no reference to the
    ``x`` it is given (the optimiser reuses that buffer; the estimators' objectives do
    both). ``callback(intermediate_result)`` is called after each iteration with an
    :class:`~scipy.optimize.OptimizeResult` holding a copy of ``x`` and ``fun``, as
    ``scipy.optimize.minimize`` calls it; raising ``StopIteration`` there stops the run
    (``status`` 99, as scipy's). ``max_fun`` caps the evaluations, as L-BFGS-B's ``maxfun``
    (15000 by default there too; ``status`` 1).

    ``coarse(x, *args) -> (value, gradient)``, if given, is a cheaper, less exact
    evaluation of the same objective (the estimators': in float32) that the run takes
    first (see :class:`_CoarsePhase`); changes of its values below ``coarse_noise`` times
    ``max(|f|, 1)`` are read from the trapezoid of the derivatives (the estimators pass
    100 times the coarse values' rounding noise). The callback sees the coarse phase's
    values (evaluated or so estimated). The result is ``fun``'s: its value, gradient and
    stop; ``max_fun`` counts every evaluation (two are kept for the hand-over), as
    ``nfev`` does; ``ncoarse`` the coarse ones.
    """
    x = np.array(x0, dtype=np.float64).ravel()  # the caller's x0 is not changed
    phase = None if coarse is None else _CoarsePhase(fun, coarse, args, gtol)
    evaluate = fun if phase is None else phase.coarse
    try:
        f, g = evaluate(x, *args)
        f, g = float(f), np.asarray(g, dtype=np.float64)
    except _CoarseFailed:  # (a value that is not finite: the exact evaluation from the start)
        f, g = np.nan, np.full(x.size, np.nan)
    nfev, nit, ncoarse = 1, 0, int(phase is not None)
    history = _History(m, x.size)
    d = np.empty_like(x)
    trial = np.empty_like(x)
    while True:
        # (the coarse phase keeps two evaluations for the hand-over and the check)
        limit = max_fun if phase is None else max_fun - 2
        stop = _stop_at(g, nit, nfev, gtol if phase is None else phase.gtol, max_iter,
                        limit, _CONVERGED)
        if stop is None and phase is not None:
            stop = phase.check(x, g)
            nfev += phase.take()
        if stop is None:
            descent = bool(history.order) and history.direction(g, d)
            if not descent:
                history.clear()
                np.negative(g, out=d)
            first = not history.order
            step0 = 1.0 / np.linalg.norm(g) if nit == 0 else 1.0  # as lnsrlb: 1/||d|| at iter 0
            for _ in range(2):
                before = 0 if phase is None else phase.count
                failed = False
                try:
                    found = _line_search(evaluate, args, x, f, g, d, trial, step0,
                                         max(1, min(maxls, limit - nfev)),
                                         None if phase is None
                                         else coarse_noise * max(abs(f), 1.0))
                except _CoarseFailed:  # a coarse value that is not finite: no retry
                    found, failed = (None, f, g, phase.count - before), True
                nfev += found[-1]
                ncoarse += found[-1] if phase is not None else 0
                if failed or found[0] is not None or first or nfev >= limit:
                    break
                history.clear()  # a failed search along the L-BFGS direction: once along -g
                np.negative(g, out=d)
                first = True
            alpha, f_new, g_new, _ = found
            stop = _failed_search(found, nfev, limit)
            if stop:
                if stop[0] == 2 and not np.isfinite(f_new):  # no finite value along -g:
                    f = f_new  # reported, as L-BFGS-B reports it (the estimators warn of it)
            else:
                nit += 1
                # the new point is trial = x + alpha d; x's buffer then holds y = g_new - g
                x, trial = trial, x
                y = np.subtract(g_new, g, out=trial)
                sy = alpha * float(d @ y)
                if sy > _EPS * -alpha * float(g @ d):  # L-BFGS-B's test (mainlb: dr > epsmch
                    history.add(alpha, d, y, g_new, sy, float(y @ y))  # ddum)
                elif history.order:
                    history.refresh(g_new)
                f_old, f, g = f, float(f_new), g_new
                stop = _stop_after(callback, x, f_old, f, ftol, coarse=phase is not None)
                if stop is not None and stop[0] == 0 and _max_abs(g) <= (
                        gtol if phase is None else phase.gtol):
                    stop = None  # the gradient's stop first, as L-BFGS-B's (the loop's top)
                if stop is None and phase is not None:
                    stop = phase.stalled(g)
        if stop is None:
            continue
        if phase is None:
            break
        # the coarse phase ends here: on with the exact evaluation where it is, the history
        # kept if the coarse gradient reached its hand-over undisturbed, unless the stop
        # ends any run (max_iter, max_fun, the callback)
        f, g = phase.exact(x)
        nfev += phase.take()
        if stop[0] != 0 or stop[1] != _CONVERGED or phase.gtol > _COARSE_KEEP * gtol:
            history.clear()
        elif history.order:
            history.refresh(g)
        evaluate, phase = fun, None
        if stop[0] in (1, 99):
            stop = (stop if stop[0] == 99 else None) or _stop_at(
                g, nit, nfev, gtol, max_iter, max_fun, _CONVERGED) or stop
            break
    status, message = stop
    return OptimizeResult(x=x, fun=f, jac=g, nit=nit, nfev=nfev, status=status,
                          success=status == 0, message=message, ncoarse=ncoarse)


class _CoarseFailed(Exception):
    """A coarse evaluation whose value is not finite."""


class _CoarsePhase:
    """Where :func:`minimize_lbfgs`'s coarse phase hands over to the exact evaluation.

    The coarse phase ends where its gradient reaches ``gtol``; its history is kept (the
    exact evaluation there usually ends the run). The coarse gradient is only as good
    as its rounding, which may lie above ``gtol``: once it has not reached a new
    smallest component for ``_COARSE_CHECK`` iterations (L-BFGS's gradient is not
    monotone: not after one; a stall, or the rounding), the exact gradient is taken at
    the same point, once, and the phase ends there if the coarse gradient is within
    ``_COARSE_MARGIN`` times their difference, else goes on down to that. It also ends
    after ``_COARSE_PATIENCE`` more such iterations within ``_COARSE_FLOOR`` times that
    hand-over (far above it, a pause is the problem's conditioning, not the rounding),
    on a failed search, a reduction at ``ftol`` or a value that is not finite. Ended so,
    or at a hand-over above ``_COARSE_KEEP`` times ``gtol``, its history is dropped: its
    last pairs may be the rounding's (a stranger's review: on features at 1e6, the
    hand-over raised to 0.04, the pairs kept misled the exact phase into a stop on
    ``ftol`` after 5 iterations, 3 % above plain L-BFGS's objective; at 6.5 times
    ``gtol``, 30000 x 40 x 6, they saved the exact phase 6 of its 12 evaluations).
    """

    def __init__(self, fun, coarse, args, gtol):
        self.fun, self._coarse, self.args, self.gtol = fun, coarse, args, gtol
        self.count = 0  # coarse evaluations (a search a non-finite value cuts short is
        # counted by difference)
        self.final_gtol = gtol
        self.checked = False
        self.at = None  # (x, f, g) of an exact evaluation made by check
        self.nfev = 0  # exact evaluations made here, not yet counted by the run (take)
        self.best, self.since = np.inf, 0

    def coarse(self, x, *args):
        """The coarse evaluation; :class:`_CoarseFailed` where its value is not finite (the
        exact evaluation then takes over at once: a float32 copy of features beyond float32's
        range, logits past it)."""
        f, g = self._coarse(x, *args)
        self.count += 1
        if not np.isfinite(f):
            raise _CoarseFailed
        return f, g

    def _evaluate(self, x):
        f, g = self.fun(x, *self.args)
        self.nfev += 1
        self.at = (x.copy(), float(f), np.asarray(g, dtype=np.float64))
        return self.at[1], self.at[2]

    def take(self):
        """The exact evaluations made since the last call."""
        n, self.nfev = self.nfev, 0
        return n

    def check(self, x, g):
        """None to go on; the hand-over stop once the coarse gradient is near its rounding."""
        if self.checked or self.since < _COARSE_CHECK:
            return None
        self.checked, self.since = True, 0
        _, g_exact = self._evaluate(x)
        self.gtol = max(self.final_gtol, _COARSE_MARGIN * _max_abs(g_exact - g))
        return (2, "the coarse gradient is at its rounding") if _max_abs(g) <= self.gtol \
            else None

    def stalled(self, g):
        """The stop where the coarse gradient, checked and near its rounding (within
        ``_COARSE_FLOOR`` times the hand-over), has stopped falling; else None (far above
        it, a pause is the problem's conditioning: the coarse steps still serve)."""
        gmax = _max_abs(g)
        self.best, self.since = (gmax, 0) if gmax < self.best else (self.best, self.since + 1)
        return (2, "the coarse gradient stopped falling") if (
            self.checked and self.since >= _COARSE_PATIENCE
            and self.best <= _COARSE_FLOOR * self.gtol) else None

    def exact(self, x):
        """The exact ``(f, g)`` at ``x`` (the check's, if made there)."""
        if self.at is not None and np.array_equal(self.at[0], x):
            return self.at[1], self.at[2]
        return self._evaluate(x)


def _line_search(fun, args, x, f, g, d, trial, step0, maxls, trusted=None):
    """L-BFGS-B's line search along ``d`` from ``x``: ``(alpha, f, g, evaluations)``, ``alpha``
    None if none was found (``f`` then ``x``'s, or NaN where no trial's value was finite).

    MINPACK's ``dcsrch`` (Moré & Thuente) as scipy ports it (``_dcsrch.DCSRCH``, private to
    scipy since 1.13, so imported here: a rename would fail the wide fits and
    tests/test_lbfgs.py, not ``import logitlab``), at L-BFGS-B's settings (``lnsrlb``:
    sufficient decrease 1e-3, curvature 0.9, interval 0.1, steps up to 1e10, ``maxls``
    evaluations: the search fails where it asks for one more), from the step ``step0`` (at
    most 1e10); its ``CONV`` and ``WARN`` exits are accepted as ``lnsrlb`` accepts them,
    unless the step is 0 or the objective rose. A trial whose value is not finite (the
    logits overflowed) restarts the search at a tenth of that step, never again past half
    of it. The trial points are made in ``trial`` (its last is the point returned); each is
    evaluated once. With ``trusted`` (the coarse phase's), a trial's value within
    ``trusted`` of ``f`` is replaced by ``f`` plus the trapezoid of the directional
    derivatives at 0 and at the trial (exact for a quadratic), and the value returned is
    that estimate: below its rounding noise, a value cannot tell a step down from one up.
    """
    from scipy.optimize._dcsrch import DCSRCH

    seen = {}
    count = [0]
    finite = [False]

    def at(alpha):
        if alpha not in seen:
            seen.clear()  # one gradient kept at a time
            np.multiply(d, alpha, out=trial)
            np.add(trial, x, out=trial)
            value, grad = fun(trial, *args)
            seen[alpha] = (float(value), np.asarray(grad, dtype=np.float64))
            finite[0] |= bool(np.isfinite(value))
            count[0] += 1
        return seen[alpha]

    def phi(alpha):
        value = at(alpha)[0]
        if trusted is not None and abs(value - f) <= trusted:
            # a change the values cannot resolve: the trapezoid of the derivatives
            return f + 0.5 * alpha * (derphi0 + derphi(alpha))
        return value

    def derphi(alpha):
        return float(at(alpha)[1] @ d)

    derphi0 = float(g @ d)
    stpmax = _STPMAX
    stp, task = min(step0, stpmax), b"START"
    search = DCSRCH(phi, derphi, _C1, _C2, _XTOL, 0.0, stpmax)
    phi1, derphi1 = f, derphi0
    while True:
        with np.errstate(over="ignore", invalid="ignore"):  # dcsrch's own arithmetic
            stp, phi1, derphi1, task = search._iterate(stp, phi1, derphi1, task)
        if task[:2] != b"FG" or not np.isfinite(stp):
            break
        if stp not in seen and count[0] >= maxls:  # lnsrlb: the (maxls+1)-th request fails
            task = b"MAXLS"
            break
        phi1, derphi1 = phi(stp), derphi(stp)
        if not (np.isfinite(phi1) and np.isfinite(derphi1)):  # overflowed: a tenth as far,
            stpmax = stp / 2.0  # and, this search, never past half of it
            stp, task = stp / 10.0, b"START"
            search = DCSRCH(phi, derphi, _C1, _C2, _XTOL, 0.0, stpmax)
            phi1, derphi1 = f, derphi0
            if stp * _max_abs(d) == 0.0:  # no step left to try
                break
    if task[:4] not in (b"CONV", b"WARN") or not np.isfinite(stp) or stp <= 0.0 \
            or not phi1 <= f:  # (a WARN at the best step 0 is no step)
        return None, f if (finite[0] or not count[0]) else np.nan, g, count[0]
    value, grad = at(stp)  # evaluated already unless dcsrch returned an earlier trial
    return stp, phi(stp), grad, count[0]
