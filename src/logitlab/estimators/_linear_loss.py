"""The penalised logistic objective of a linear model, in one place.

In the spirit of scikit-learn's ``linear_model/_linear_loss.py``
(``LinearModelLoss``): one object knows the parameter layout, the data term's
loss and gradient for dense or sparse ``X`` in float32 or float64, the L2
penalty, the L-BFGS options and how to read the solution back. The in-memory
fit (:class:`SoftmaxRegression`) and the Dask fit (per-chunk partial sums,
:mod:`logitlab.estimators._dask`) both use it, so the two cannot drift.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
from scipy import optimize

from .. import _jit, _threads
from .._softmax import sigmoid, softmax
from ..losses._crossentropy import binary_ce_value_and_grad, sparse_ce_logits_inplace
from ._lbfgs import minimize_lbfgs
from ._newton_cg import minimize_newton_cg

__all__ = ["LinearSoftmaxLoss", "Standardized", "blas_threads_for", "feature_moments",
           "standardizing"]

#: Rows per block of the blocked evaluation: a block's rows of ``X`` are still in
#: cache when ``G_b^T X_b`` reads them again, so ``X`` is read from memory once.
BLOCK_ROWS = 4096
#: From this many stored elements of ``X`` on, the blocks are shared by two threads
#: (each with one BLAS thread): tall-and-skinny products use one core badly.
THREADED_SIZE = 1 << 18
#: Multinomial problems of at most this many classes, dense C-ordered ``X``: each block's
#: logits, cross-entropy and gradient terms in one compiled pass (``_kernels.linear_ce``),
#: where the two tall-and-skinny BLAS products a block would take use a core badly. From
#: ``FUSED_FEW_CLASSES`` classes on, only with at most ``FUSED_MAX_FEATURES`` features:
#: beyond, BLAS's products win (docs/performance.md has the measurements).
FUSED_MAX_CLASSES = 20
FUSED_FEW_CLASSES = 13
FUSED_MAX_FEATURES = 64
#: Sparse (CSR) ``X``, multinomial, fewer classes than this: each row's logits gathered
#: from the rows of ``W^T`` its entries name, its gradient scattered back into
#: ``(G^T X)^T``, by blocks of rows on the fit's threads (``_kernels.linear_ce_csr``); no
#: transpose of ``X``. The limits are the kernels' in-place block's (``_SHORT_IN_PLACE``), by
#: the evaluation's dtype (a review: at 60 classes, float64, the scipy products' path made a
#: Newton-CG fit 6.86 s against these kernels' 2.03 s, 20000 x 5000, 1 %).
SPARSE_FUSED_CLASSES = {"float32": 48, "float64": 256}
#: From this many parameters on, :meth:`LinearSoftmaxLoss.minimize` runs the lean L-BFGS
#: (:mod:`._lbfgs`: 2m + 4 parameter-sized vectors, about 200 bytes a parameter at m = 10)
#: instead of scipy's L-BFGS-B (290 bytes a parameter, measured): at 50,000 features and 20
#: classes L-BFGS-B's arrays were 2.4 times the sparse matrix's (docs/performance.md, §6).
LEAN_LBFGS_PARAMS = 1 << 17
#: Dense float64 ``X`` of at least this many elements, at most ``COARSE_MAX_BYTES`` as
#: float32: L-BFGS's first iterations evaluate a float32 copy (:meth:`LinearSoftmaxLoss.coarse`).
#: Below, the copy and the lean driver's Python cost more than they save (measured on the
#: Xeon, best of three: 5000 x 20 x 5 and 20000 x 20 x 3 0.91-0.92x; 100000 x 10 x 5,
#: 1.1x; 60000 x 20 x 20, 1.26x).
COARSE_MIN_SIZE = 1 << 20
COARSE_MAX_BYTES = 1 << 30
#: Changes of the coarse (float32) objective below this many times its rounding noise
#: (:meth:`LinearSoftmaxLoss.ftol`) are read from the derivatives (``_lbfgs._line_search``).
COARSE_NOISE = 100.0
#: Rows of dense ``X`` (evenly spaced) that :func:`standardizing`'s means and scales are
#: read from: they need only be about right (any gives the same objective and optimum).
STANDARDIZE_ROWS = 10_000


class Standardized:
    """The objective's parameters in standardised coordinates, for the solvers.

    Each feature's coefficients are taken as ``v_j = w_j s_j`` and the
    intercepts as ``c = b + sum_j w_j m_j``: ``m_j`` the feature's mean (left
    out where it is within half its spread, and without an intercept), ``s_j``
    the square root of the objective's curvature along ``w_j``, about
    ``spread_j^2 / 4`` from the data and ``1 / (C n)`` from the penalty, times
    2, as a power of two (:func:`standardizing`): the coordinates in which
    every variable has about unit curvature, what L-BFGS's and CG's steps
    need (a diagonal preconditioner, applied as a change of variables). A
    linear bijection, so the objective (its penalty still on ``w``) and its
    optimum are the same; only the solvers' steps change. On raw features
    (wine's proline near 750 beside its hue near 1) L-BFGS had stopped after
    1000 iterations 47 % above the optimal objective (docs/performance.md
    §6). Without the penalty's share a feature of small spread under a strong
    penalty became a stiff variable (a review: breast_cancer at C=0.01, 34 %
    above the optimum after 1000 iterations, where the objective's own
    coordinates converged).

    ``tol`` keeps its meaning where a solver stops on it, the objective's own
    gradient: the solvers are held to ``tol / bound`` in these coordinates,
    ``bound`` (:attr:`bound`) the most any of the objective's gradient
    components can be per unit of the largest standardised one (``g_w_j =
    s_j g_v_j + m_j g_c``), and the result's ``jac`` is the objective's
    gradient (``jac_standardized`` the one the steps saw, which L-BFGS's stop
    on the relative reduction leaves small: the objective's own, at a feature
    with a mean of 750, can stay at 1e-6 by rounding alone).
    """

    def __init__(self, objective, mean, scale):
        self.k, self.cols, self.n_features = objective.k, objective.cols, objective.n_features
        self.intercept = objective.fit_intercept
        self.mean, self.scale = mean, scale
        self.bound = float(max(1.0, np.max(scale + np.abs(mean), initial=0.0)))

    def objective_gradient(self, gv):
        """The objective's gradient of the standardised gradient ``gv`` (the inverse of
        :meth:`gradient`)."""
        G, Gf = self._split(gv)
        out = np.empty_like(G)
        np.multiply(Gf, self.scale, out=out[:, :self.n_features])
        if self.intercept:
            out[:, :self.n_features] += np.outer(G[:, -1], self.mean)
            out[:, -1] = G[:, -1]
        return out.ravel()

    def _split(self, flat):
        a = np.asarray(flat, dtype=np.float64).reshape(self.k, self.cols)
        return a, a[:, :self.n_features]

    def params(self, v):
        """The objective's own parameters ``(w, b)`` (flat) of standardised ``v``."""
        V, Vf = self._split(v)
        W = np.empty_like(V)
        np.divide(Vf, self.scale, out=W[:, :self.n_features])
        if self.intercept:
            W[:, -1] = V[:, -1] - W[:, :self.n_features] @ self.mean
        return W.ravel()

    def standardized(self, w):
        """The standardised coordinates of the objective's parameters ``w`` (flat)."""
        W, Wf = self._split(w)
        V = np.empty_like(W)
        np.multiply(Wf, self.scale, out=V[:, :self.n_features])
        if self.intercept:
            V[:, -1] = W[:, -1] + Wf @ self.mean
        return V.ravel()

    def gradient(self, g):
        """The gradient in standardised coordinates of the objective's gradient ``g``: the
        transpose of :meth:`params`'s map, applied to ``g``."""
        G, Gf = self._split(g)
        out = np.empty_like(G)
        gf = out[:, :self.n_features]
        if self.intercept:
            np.subtract(Gf, np.outer(G[:, -1], self.mean), out=gf)
            gf /= self.scale
            out[:, -1] = G[:, -1]
        else:
            np.divide(Gf, self.scale, out=gf)
        return out.ravel()

    def fun(self, fun):
        """``fun(w, *args) -> (value, gradient)`` as a function of standardised ``v``."""

        def standardized(v, *args):
            f, g = fun(self.params(v), *args)
            return f, self.gradient(g)

        return standardized

    def hessp(self, hessp_at):
        """``hessp_at(w, *args) -> (p -> H p)`` in standardised coordinates: ``J^T H J``, ``J``
        the linear map :meth:`params`, ``J^T`` :meth:`gradient`."""

        def standardized(v, *args):
            product = hessp_at(self.params(v), *args)
            return lambda p: self.gradient(product(self.params(p)))

        return standardized


def feature_moments(X, sample_weight=None, *, centred=True):
    """``(mean, spread, total)`` of ``X``'s features (dense or sparse) under
    ``sample_weight``, read in float64 (dense ``X``: from at most ``STANDARDIZE_ROWS``
    evenly spaced rows), for :func:`standardizing`: the weighted mean, the standard
    deviation (``centred``; else the root mean square) and the summed weights. Weights
    and repeated rows give the same moments, as scikit-learn's ``check_estimator`` asks."""
    n, d = X.shape
    dense = not sp.issparse(X)
    # dense X: evenly spaced rows, read by blocks of at most 2**20 numbers; sparse X whole
    # (a sparse column holds few values: in 10,000 of 100,000 rows at 0.2 %, 20, and its
    # spread was read 25 % off)
    rows = np.unique(np.linspace(0, n - 1, min(n, STANDARDIZE_ROWS if dense else n))
                     .astype(np.intp))
    whole = len(rows) == n
    w = np.ones(len(rows)) if sample_weight is None else np.asarray(
        sample_weight if whole else sample_weight[rows], dtype=np.float64)
    total = float(np.sum(sample_weight)) if sample_weight is not None else float(n)
    total = total if total > 0 else float(n)
    w = w / w.sum() if w.sum() > 0 else np.full(len(rows), 1.0 / len(rows))
    with np.errstate(over="ignore", invalid="ignore"):
        if dense:
            step = max(1, (1 << 20) // max(d, 1))
            blocks = [(rows[i:i + step], w[i:i + step]) for i in range(0, len(rows), step)]
            mean = sum(wb @ np.asarray(X[rb], dtype=np.float64) for rb, wb in blocks)
            # two passes: a feature far from zero keeps its spread's digits
            centre = mean if centred else 0.0
            spread = np.sqrt(sum(wb @ np.square(np.asarray(X[rb], dtype=np.float64) - centre)
                                 for rb, wb in blocks))
        else:  # by blocks (of rows; of columns for CSC): no copy of X's values at once (a
            # fit's peak memory was 1.97x the matrix and coefficients with X * X made whole,
            # against 1.08x)
            by_columns = X.format == "csc"
            sample = X if by_columns else sp.csr_matrix(X)
            mean, square = np.zeros(d), np.zeros(d)
            for start in range(0, d if by_columns else n, 4096):
                part = slice(start, start + 4096)
                block = (sample[:, part] if by_columns else sample[part]).astype(
                    np.float64, copy=False)  # (slicing copied it)
                into = part if by_columns else slice(None)
                wb = w if by_columns else w[part]
                mean[into] += block.T @ wb
                block.data **= 2
                square[into] += block.T @ wb
            spread = np.sqrt(np.maximum(square - mean * mean, 0.0) if centred else square)
    return mean, spread, total


def standardizing(objective, X, sample_weight=None, *, moments=None):
    """The :class:`Standardized` coordinates for ``objective`` on ``X``, from its features'
    :func:`feature_moments` (``moments``, where already read: they do not depend on ``C``).
    A feature that is constant (its spread within 1e-12 of its mean), or whose moments are
    not finite (values near float64's limit), is not moved or rescaled (``m = 0``, ``s =
    1``). The penalty's share of each curvature is read from ``objective.C`` and the
    summed weights. None where every feature keeps its own (:meth:`LinearSoftmaxLoss.minimize`
    then runs as without)."""
    if moments is None:
        moments = feature_moments(X, sample_weight, centred=objective.fit_intercept)
    mean, scale, total = (np.array(m, dtype=np.float64) for m in moments)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if not objective.fit_intercept:
            mean = np.zeros_like(mean)
        # (a spread within 1e-12 of the mean is rounding: a constant feature)
        keep = ~(np.isfinite(scale) & np.isfinite(mean) & (scale > 1e-12 * np.abs(mean))
                 & np.isfinite(1.0 / scale) & np.isfinite(mean / scale))
        mean[keep], scale[keep] = 0.0, 1.0
        mean[np.abs(mean) < 0.5 * scale] = 0.0  # (centring by less: no matter)
        # the penalty's share of the curvature, 1 / (C sum(sw)) against the data's
        # spread^2 / 4 at most: 4 / (C sum(sw)) added to spread^2
        scale = np.sqrt(scale * scale + 4.0 * objective.inv_C / float(total))
        # as powers of two (``v = w s`` exact), each one's ratio to the median rounded:
        # curvatures about alike are then exactly alike
        typical = float(np.median(scale[~keep])) if np.any(~keep) else 1.0
        ratio = np.exp2(np.round(np.log2(scale / typical)))
        ratio[keep] = 1.0
        scale = ratio * np.exp2(np.round(np.log2(typical)))
        scale[keep] = 1.0
    if not np.any(mean) and np.all(ratio == 1.0):
        # variables of one curvature (standardised features, a text matrix's columns of
        # one spread): the objective's own coordinates, steps and bits (a review: taken to
        # unit spread, a text matrix's columns of spread 0.03 made the benchmark's sparse
        # fit 27.6 s against 14.4)
        return None
    return Standardized(objective, mean, scale)


def _n_threads(size):
    return 2 if size >= THREADED_SIZE and (os.cpu_count() or 1) > 1 else 1


def blas_threads_for(n_elements: int):
    """BLAS threads for the blocked evaluation of ``X`` of this many stored elements: one.

    Small matrix products run slower with two threads than with one (the
    thread start-up dominates), and from ``THREADED_SIZE`` on the evaluation
    shares its row blocks between two threads itself, each product then one
    block's; threadpoolctl sets the count per fit.
    """
    return 1


def _ones(n):
    """A float64 vector of ``n`` ones, kept for the largest ``n`` asked (read-only views)."""
    global _ONES
    if len(_ONES) < n:
        _ONES = np.ones(max(n, BLOCK_ROWS))
        _ONES.flags.writeable = False
    return _ONES[:n]


_ONES = np.ones(0)


def _gT_X(g, X, XT=None):
    """``G^T X`` of shape (k, n_features); ``X`` dense or scipy.sparse, never densified.

    ``XT``, if given, is ``X.T`` in CSR (made once per fit): ``XT @ G`` runs
    scipy's row-wise product, a third faster than the column-wise one ``X.T``
    of a CSR matrix gives (13 ms against 21 ms, 10000 x 50000, 0.2 %, 20 classes).
    """
    if sp.issparse(X):
        return np.asarray(((X.T if XT is None else XT) @ g).T)
    return g.T @ X


def _float32_copy(X, ones, threads):
    """``X`` in float32 (with a last column of ones if ``ones``), made by ``threads`` threads,
    a part of the rows each; None if an entry is beyond float32's range.

    Entries below float32's smallest normal number (1.2e-38) are set to zero: float32's
    subnormals made an evaluation 8 to 13 times slower (a stranger's review: 200000 x 60 x
    10 with five columns at 1e-40, a fit 7.9 s against 2.2 s without the copy).
    """
    n, d = X.shape
    X32 = np.empty((n, d + ones), dtype=np.float32)

    def cast(rows):  # np.errstate is the thread's own
        part = X32[rows, :d]
        try:
            with np.errstate(over="raise", under="raise"):
                np.copyto(part, X[rows])
        except FloatingPointError:
            try:
                with np.errstate(over="raise", under="ignore"):
                    np.copyto(part, X[rows])
            except FloatingPointError:
                return False
            np.putmask(part, np.abs(part) < np.finfo(np.float32).tiny, 0.0)
        if ones:
            X32[rows, d] = 1.0
        return True
    bounds = np.linspace(0, n, threads + 1).astype(int)
    return X32 if all(LinearSoftmaxLoss._on_parts(
        cast, [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])])) else None


class LinearSoftmaxLoss:
    r"""Objective and gradient of L2-penalised binary or multinomial logistic regression.

    Parameters
    ----------
    n_classes : int
        Two classes use one coefficient row and the binary logistic loss, as
        scikit-learn does; more use one row per class and the softmax.
    n_features : int
    C : float or None
        Inverse penalty strength; ``None`` or ``inf``: no penalty.
    fit_intercept : bool
    dtype : {numpy.float32, numpy.float64}
        The precision of the evaluation (logits, cross-entropy, products);
        the parameters the optimiser sees, and the gradient it gets, are
        float64 (as in scikit-learn).

    Notes
    -----
    With :math:`W` the ``(k, n_features)`` coefficients, :math:`b` the
    intercepts and :math:`s = \sum_i s_i` the summed sample weights,

    .. math::

        f(W, b) = \frac{1}{s}\Big(\sum_i s_i\, \ell(y_i, W x_i + b)
                  + \frac{1}{2C}\lVert W\rVert_F^2\Big),

    scikit-learn's scaling, so that ``tol`` means the same. The gradient
    with respect to the logits, :math:`G`, comes from the core with the loss
    in one pass; then :math:`\nabla_W = (G^T X + W / C) / s` and
    :math:`\nabla_b = G^T 1 / s`.
    """

    def __init__(self, n_classes, n_features, *, C=None, fit_intercept=True, dtype=np.float64):
        self.binary = n_classes == 2
        self.n_classes = n_classes
        self.k = 1 if self.binary else n_classes
        self.n_features = n_features
        self.fit_intercept = bool(fit_intercept)
        self.cols = n_features + int(self.fit_intercept)
        self.penalised = n_features  # the leading columns the penalty takes (see coarse)
        self.C = C
        self.inv_C = 0.0 if C is None or np.isinf(C) else 1.0 / float(C)
        self.dtype = np.dtype(dtype)
        self.fused = not self.binary and (
            n_classes < FUSED_FEW_CLASSES
            or (n_classes <= FUSED_MAX_CLASSES and n_features <= FUSED_MAX_FEATURES))
        self.fused_sparse = not self.binary and n_classes < SPARSE_FUSED_CLASSES[
            self.dtype.name]

    @property
    def n_params(self):
        return self.k * self.cols

    def weights(self, params):
        """``(coef, intercept)`` in the evaluation dtype (intercept None without one).

        In float64 ``coef`` is a view of ``params`` (its rows strided by the
        intercept column, which BLAS takes as they are): no copy of the
        coefficients per evaluation (7.6 MiB at 50000 features x 20 classes);
        a C-ordered copy where the fused evaluation may run (:attr:`fused`: ``k x
        n_features`` numbers, the size of the gradient each evaluation makes anyway).
        """
        W = np.asarray(params).reshape(self.k, self.cols)
        coef = W[:, :self.n_features].astype(self.dtype, copy=False)
        if self.fused:
            coef = np.ascontiguousarray(coef)
        intercept = W[:, self.n_features].astype(self.dtype) if self.fit_intercept else None
        return coef, intercept

    def _block(self, X, y, sw, coef, intercept, grad, XT=None):
        """Loss sum of rows ``X``; adds their gradient into ``grad`` (float64, (k, cols)).

        ``XT``: ``X.T`` in CSR for sparse ``X`` (:func:`_gT_X`), or a ``(lo, hi)`` row range
        of a CSR ``X`` (``y``, ``sw`` then ``X``'s whole) whose fit's choice left the
        kernels (:meth:`_part_sums` runs the range on them where it did not).
        """
        if isinstance(XT, tuple):
            X, y, sw, XT = X[XT[0]:XT[1]], y[XT[0]:XT[1]], None if sw is None else \
                sw[XT[0]:XT[1]], None
        if self.fused and isinstance(X, np.ndarray) and X.flags.c_contiguous:
            kernels = _jit.kernels_for(X)
            if kernels is not None:
                return self._fused_block(kernels, X, y, sw, coef, intercept, grad)
        logits = X @ coef.T
        logits = np.ascontiguousarray(logits, dtype=self.dtype)
        if intercept is not None:
            logits += intercept
        if self.binary:
            loss, g = binary_ce_value_and_grad(
                np.asarray(y, dtype=self.dtype)[:, None], logits, from_logits=True,
                reduction="sum", sample_weight=None if sw is None else sw[:, None])
        else:  # inputs validated once by fit: the core's lean in-place path
            loss = sparse_ce_logits_inplace(logits, y, sample_weight=sw)
            g = logits
        grad[:, :self.n_features] += _gT_X(g, X, XT)
        if intercept is not None:  # G^T 1 in float64 as a product: NumPy's sum down the
            # columns of a (4096, 10) block took 84-109 us, the product 13 (float32: 28)
            grad[:, self.n_features] += _ones(len(g)) @ g
        return float(loss)

    def _fused_block(self, kernels, X, y, sw, coef, intercept, grad):
        """:meth:`_block` in compiled code: dense ``X`` in one pass (``_kernels.linear_ce``)."""
        b, labels, w = self._kernel_args(y, sw, intercept)
        G = np.zeros((self.k, self.n_features), dtype=self.dtype)
        gb = np.zeros(self.k)
        loss = _jit.launch(kernels.linear_ce, len(X), 0, *_jit.readonly(X), coef, b, labels,
                           w, G, gb)
        grad[:, :self.n_features] += G
        if intercept is not None:
            grad[:, self.n_features] += gb
        return float(loss)

    def _bias(self, intercept):
        """The kernels' intercept argument: ``intercept``, or zeros without one."""
        return np.zeros(self.k, dtype=self.dtype) if intercept is None else intercept

    def _kernel_args(self, y, sw, intercept):
        b = self._bias(intercept)
        labels, w = _jit.readonly(np.asarray(y, dtype=np.intp), np.ones(len(y)) if sw is None
                                  else np.asarray(sw, dtype=np.float64))
        return b, labels, w

    def _csr_range(self, kernels, X, y, sw, rows, coef, intercept):
        """Rows ``rows = (lo, hi)`` of CSR ``X`` in compiled code (``_kernels.linear_ce_csr``):
        ``(loss, GT, gb)``, the gradient transposed, ``(n_features, k)`` in the evaluation's
        dtype (``coef.T`` is C-ordered, see :meth:`blocked_loss_gradient`)."""
        b, labels, w = self._kernel_args(y, sw, intercept)
        GT = np.zeros((self.n_features, self.k), dtype=self.dtype)
        gb = np.zeros(self.k)
        loss = _jit.launch(kernels.linear_ce_csr, rows[1] - rows[0], 0, *self._csr_arrays(X),
                           np.ascontiguousarray(coef.T), b, labels, w, *rows, GT, gb)
        return float(loss), GT, gb

    def _csr_arrays(self, X):
        """CSR ``X``'s arrays as the kernels take them (read-only, data in the evaluation's
        dtype)."""
        return _jit.readonly(X.indptr, X.indices, np.asarray(X.data, dtype=self.dtype))

    def data_sums(self, params, X, y, sample_weight=None):
        """Unscaled, unpenalised ``sum_i s_i loss_i`` and its gradient of shape (k, cols).

        One chunk's part of the objective: the Dask fit adds them over chunks
        and then calls :meth:`finish`. ``y`` holds class indices.
        """
        coef, intercept = self.weights(params)
        grad = np.zeros((self.k, self.cols))
        with _jit.fit_mode(X.shape[0] * self.k):  # the path by this chunk's size alone
            return self._block(X, y, sample_weight, coef, intercept, grad), grad

    def _kernels_for_fit(self, arr, n):
        """Whether a fit on ``n`` rows runs ``arr`` through the kernels (as its blocks will)."""
        with _jit.fit_mode(n * self.k):
            return _jit.kernels_for(arr) is not None

    def split(self, X, y, sample_weight=None):
        """Row blocks of the data, made once per fit: a list (one per thread) of lists of
        ``(X_b, y_b, sw_b, X_b^T in CSR or None)``. Dense blocks are views, of
        ``BLOCK_ROWS`` rows. Sparse input, where the kernels run (:attr:`fused_sparse`):
        CSR ``X`` whole with a row range a thread, ``(X, y, sw, (lo, hi))``; otherwise one
        block, in CSR with its CSR transpose made here (one more sparse matrix, never a
        dense one)."""
        n = X.shape[0]
        size = X.nnz if sp.issparse(X) else X.size
        if not self.binary:  # the blocks' cross-entropy in the compiled kernel, if any
            _jit.load_for(n * self.k)
        if sp.issparse(X) and self.fused_sparse and self._kernels_for_fit(X.data, n):
            # the fused sparse evaluation: the rows in two parts, a part a thread, each
            # with its own (n_features, k) gradient (the estimators' validation has checked
            # the index arrays the kernel trusts: _checks.check_sparse_indices)
            X = X.tocsr()
            y = np.asarray(y, dtype=np.intp)
            sample_weight = np.ones(n) if sample_weight is None else sample_weight
            bounds = np.linspace(0, n, _n_threads(X.nnz) + 1).astype(int)
            return [[(X, y, sample_weight, (lo, hi))] for lo, hi in zip(bounds[:-1], bounds[1:])
                    if hi > lo]
        if sp.issparse(X):
            # one block, one thread: scipy's sparse products keep the GIL, and a second
            # block costs a second dense (n_features, k) product (measured, 10000 x 50000,
            # 0.2 %, 20 classes: 36-39 ms an evaluation so, 54-69 ms on two threads)
            XT = X.T.tocsr()
            return [[(X if X.format == "csr" else X.tocsr(), y, sample_weight, XT)]]
        threads = _n_threads(size)
        bounds = np.linspace(0, n, threads + 1).astype(int)
        if threads == 1:
            rows = BLOCK_ROWS
        else:
            # with two threads, blocks whose logits stay under the kernels' PARALLEL_SIZE:
            # each thread's cross-entropy then runs the serial kernel (measured on the
            # 2-core Zen 2, 50000 x 50 x 10: a fit in 0.89 s with it against 1.11 s with
            # NumPy's)
            rows = max(64, min(BLOCK_ROWS, (_jit.PARALLEL_SIZE - 1) // self.k))
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            blocks = []
            for a in range(lo, hi, rows):
                b = min(a + rows, hi)
                Xb = X[a:b]
                blocks.append((Xb, y[a:b], None if sample_weight is None else sample_weight[a:b],
                               None))
            parts.append(blocks)
        return [p for p in parts if p]

    def coarse(self, X, y, sample_weight, sw_sum):
        """A float32 evaluation of this float64 objective for L-BFGS's first iterations:
        ``(fun, noise)`` for :meth:`minimize`'s ``coarse``, or None.

        Dense float64 ``X`` of ``COARSE_MIN_SIZE`` elements or more, no more than
        ``COARSE_MAX_BYTES`` as float32: a float32 copy (half ``X``'s size, made by the
        fit's threads, a part each) whose evaluations cost about half the float64 ones
        (the products at twice the rate, half the bytes read). Its gradient is as good as
        float64's to about 1e-9 here (200000 x 100 x 20: 1.1e-9 to 2.0e-9 from the start
        to the optimum, against a ``tol`` of 1e-8); its value only to its rounding noise,
        which the line search then reads past (``noise``, relative: ``COARSE_NOISE``
        times :meth:`ftol`'s float32 floor). The run ends on the float64 objective
        (``_lbfgs.minimize_lbfgs``): its value, gradient and stop are float64's. None
        where a feature lies beyond float32's range (the copy would hold inf).
        """
        if (self.dtype != np.float64 or not isinstance(X, np.ndarray) or X.dtype != np.float64
                or X.size < COARSE_MIN_SIZE
                or X.shape[0] * (X.shape[1] + 1) * 4 > COARSE_MAX_BYTES):
            return None
        n, d = X.shape
        # BLAS's blocks (not :attr:`fused`): a column of ones in the copy, the intercepts
        # the last column of an unpenalised (k, d + 1) block of coefficients (the
        # parameters' own layout): no pass adding them to the logits, no G^T 1 apart
        # (200000 x 100 x 20, Xeon, medians of 20 in three runs: an evaluation 25.5-26.3
        # -> 23.0-23.6 ms)
        ones = self.fit_intercept and not self.fused
        coarse = LinearSoftmaxLoss(self.n_classes, d + ones, C=self.C,
                                   fit_intercept=self.fit_intercept and not ones,
                                   dtype=np.float32)
        coarse.penalised = d
        X32 = _float32_copy(X, ones, _n_threads(X.size))
        if X32 is None:
            return None  # (a review: the NumPy evaluations warned of the copy's inf)
        parts = coarse.split(X32, y, sample_weight)

        def fun(params, *args):
            return coarse.blocked_loss_gradient(params, parts, sw_sum)
        return fun, COARSE_NOISE * coarse.ftol(n)

    def _part_sums(self, coef, intercept, choice, blocks):
        """``(loss, grad)`` of a thread's blocks; for a row range of CSR ``X`` (:meth:`split`)
        on the kernels, :meth:`_csr_range`'s ``(loss, GT, gb)``."""
        loss = 0.0
        # the blocks' cross-entropy on the kernels or the reference as the caller's thread
        # chose by the fit's size (``choice``), in whichever thread runs this: never by
        # whether an earlier call in the process loaded the kernels (the fit's coefficients
        # would differ in their last bits)
        with _jit.fit_mode(choice=choice):
            if len(blocks) == 1 and isinstance(blocks[0][3], tuple):
                kernels = _jit.kernels_for(blocks[0][0].data)
                if kernels is not None:
                    return self._csr_range(kernels, *blocks[0], coef, intercept)
            grad = np.zeros((self.k, self.cols))
            for Xb, yb, swb, XbT in blocks:
                loss += self._block(Xb, yb, swb, coef, intercept, grad, XbT)
        return loss, grad

    def _ranges(self, parts):
        """Whether :meth:`split` made CSR row ranges (``y`` then every row's)."""
        return isinstance(parts[0][0][3], tuple)

    def _choice(self, parts):
        """The kernels' path for a fit over ``parts`` (:func:`_jit.fit_choice`)."""
        ranges = self._ranges(parts)
        return _jit.fit_choice(self.k * sum(
            block[3][1] - block[3][0] if ranges else len(block[1])
            for part in parts for block in part))

    @staticmethod
    def _on_parts(fn, parts, *args):
        """``[fn(*args, part) for part in parts]``, the parts on two threads if two."""
        if len(parts) == 1:
            return [fn(*args, parts[0])]
        # the caller holds BLAS to one thread (blas_threads_for): the parts are the threads
        workers = _threads.pool("linear")
        futures = [workers.submit(fn, *args, part) for part in parts]
        return [f.result() for f in futures]

    def _summed(self, results):
        """The parts' ``(loss, grad)`` (or CSR ranges' ``(loss, GT, gb)``) summed: ``(loss,
        grad)``, ``grad`` float64 of shape (k, cols), one of the parts' arrays reused."""
        loss = sum(r[0] for r in results)
        # in place, in float64 (a float32 evaluation's parts, as before, are added in
        # float64): a wide sparse fit's gradients are its largest arrays
        grad = results[0][1].astype(np.float64, copy=False)
        for r in results[1:]:
            grad += r[1]
        if len(results[0]) == 3:  # CSR ranges: the parts' (n_features, k) sums, and their G^T 1
            GT, grad = grad, np.empty((self.k, self.cols))
            grad[:, :self.n_features] = GT.T
            del GT
            if self.fit_intercept:
                grad[:, self.n_features] = sum(r[2] for r in results)
        return loss, grad

    def _weights_for(self, params, parts):
        """:meth:`weights`, ``W^T`` C-ordered once for every part's kernel on CSR ranges."""
        coef, intercept = self.weights(params)
        if self._ranges(parts):  # (a view's .T)
            coef = np.ascontiguousarray(coef.T).T
        return coef, intercept

    def blocked_loss_gradient(self, params, parts, sw_sum):
        """:meth:`loss_gradient` over :meth:`split`'s blocks, the parts on two threads."""
        coef, intercept = self._weights_for(params, parts)
        choice = self._choice(parts)
        results = self._on_parts(self._part_sums, parts, coef, intercept, choice)
        del coef  # (a C-ordered copy of W^T for CSR ranges): memory for the sums below
        return self.finish(params, *self._summed(results), sw_sum)

    def hessian_product(self, params, parts, sw_sum):
        """The objective's Hessian at ``params`` over :meth:`split`'s blocks, as a function
        ``v -> H v`` (flat, float64): what Newton-CG calls (:mod:`._newton_cg`).

        The rows' probabilities at ``params`` are computed here, once (``n x k`` numbers, in
        the evaluation's dtype); each product is then a gather and a scatter over the data
        (``_kernels.linear_hvp_csr`` on CSR row ranges; BLAS's products on other blocks),
        ``u_i = V x_i + c``, ``r_i = s_i (p_i * u_i - p_i (p_i . u_i))`` (binary: ``s_i p_i
        (1 - p_i) u_i``), then ``(R^T X + V / C) / s`` and ``R^T 1 / s``.
        """
        coef, intercept = self._weights_for(params, parts)
        choice = self._choice(parts)
        states = self._on_parts(self._part_proba, parts, coef, intercept, choice)
        del coef

        def hessp(v):
            V, c = self._weights_for(v, parts)
            results = self._on_parts(self._part_hvp, list(zip(parts, states)), V, c, choice)
            del V
            return self.finish(v, *self._summed(results), sw_sum)[1]

        return hessp

    def _part_proba(self, coef, intercept, choice, blocks):
        """A thread's blocks' probabilities at ``(coef, intercept)``: a list, a block each,
        of ``(X_b, sw_b, X_b^T or None, P_b)``; for a CSR range on the kernels, ``P`` alone."""
        with _jit.fit_mode(choice=choice):
            if len(blocks) == 1 and isinstance(blocks[0][3], tuple):
                X, _, _, (lo, hi) = blocks[0]
                kernels = _jit.kernels_for(X.data)
                if kernels is not None:
                    P = np.empty((hi - lo, self.k), dtype=self.dtype)
                    _jit.launch(kernels.linear_proba_csr, hi - lo, 0, *self._csr_arrays(X),
                                np.ascontiguousarray(coef.T), self._bias(intercept), lo, hi, P)
                    return P
            kept = []
            for Xb, yb, swb, XbT in blocks:
                if isinstance(XbT, tuple):
                    Xb, swb, XbT = Xb[XbT[0]:XbT[1]], swb[XbT[0]:XbT[1]], None
                z = np.asarray(Xb @ coef.T, dtype=self.dtype)
                if intercept is not None:
                    z = z + intercept
                kept.append((Xb, swb, XbT, sigmoid(z) if self.binary else softmax(z, axis=1)))
            return kept

    def _part_hvp(self, V, c, choice, part):
        """A thread's blocks' part of ``H v`` (unscaled, without the penalty), as
        :meth:`_part_sums` returns a gradient: ``(0, HV)``, or ``(0, HVT, hc)`` on CSR ranges."""
        blocks, state = part
        with _jit.fit_mode(choice=choice):
            if isinstance(state, np.ndarray):  # a CSR range on the kernels (_part_proba)
                X, _, sw, (lo, hi) = blocks[0]
                HVT = np.zeros((self.n_features, self.k), dtype=self.dtype)
                hc = np.zeros(self.k)
                _jit.launch(_jit.kernels_for(X.data).linear_hvp_csr, hi - lo, 0,
                            *self._csr_arrays(X), np.ascontiguousarray(V.T), self._bias(c), state,
                            *_jit.readonly(np.asarray(sw, dtype=np.float64)), lo, hi, HVT, hc)
                return 0.0, HVT, hc
            HV = np.zeros((self.k, self.cols))
            for Xb, swb, XbT, P in state:
                U = np.asarray(Xb @ V.T, dtype=self.dtype)
                if c is not None:
                    U += c
                if self.binary:
                    R = P * (1.0 - P) * U
                else:
                    R = P * (U - np.einsum("ij,ij->i", P, U)[:, None])
                if swb is not None:
                    R *= np.asarray(swb, dtype=self.dtype)[:, None]
                HV[:, :self.n_features] += _gT_X(R, Xb, XbT)
                if c is not None:
                    HV[:, self.n_features] += R.sum(axis=0, dtype=np.float64)
            return 0.0, HV

    def finish(self, params, loss, grad, sw_sum):
        """Add the penalty to summed ``(loss, grad)`` and scale by ``1 / sw_sum``."""
        if self.inv_C:
            p = self.penalised
            coef = np.asarray(params).reshape(self.k, self.cols)[:, :p]
            loss = loss + 0.5 * self.inv_C * float(np.einsum("ij,ij->", coef, coef))
            for j in range(self.k):  # a row at a time: no coefficient-sized temporary
                grad[j, :p] += self.inv_C * coef[j]
        grad /= sw_sum  # in place: ``grad`` is the caller's fresh sum
        return loss / sw_sum, grad.ravel()

    def loss_gradient(self, params, X, y, sample_weight, sw_sum):
        """The objective and its gradient (float64) at ``params``: what L-BFGS calls."""
        return self.finish(params, *self.data_sums(params, X, y, sample_weight), sw_sum)

    def loss(self, params, X, y, sample_weight, sw_sum):
        return self.loss_gradient(params, X, y, sample_weight, sw_sum)[0]

    def ftol(self, n_samples):
        """L-BFGS-B's stop on the objective's relative reduction per iteration.

        float64: ``64 eps``, far below any change the gradient tolerance
        leaves. float32: the rounding noise of the objective itself, ``2**-23 /
        sqrt(n_samples)`` (each row's loss carries its float32 logits' relative
        rounding, about ``2**-24`` of a logit, independently; their mean of
        ``n_samples`` rows is off by about ``2**-24 sqrt(2 / n_samples)``). Below
        that the line search compares noise: on 50000 x 50 x 10 a float32 fit
        made 86 evaluations in 25 iterations, 55 of them after the last real
        progress, and its objective was already within 5e-11 of float64's.
        """
        eps64 = 64 * np.finfo(np.float64).eps
        if self.dtype != np.float32 or n_samples is None or not np.isfinite(n_samples):
            return eps64  # float64, or an unknown count: no early stop
        return max(eps64, 2.0**-23 / np.sqrt(max(int(n_samples), 1)))

    def minimize(self, fun, x0, *, tol, max_iter, n_samples=None, args=(), callback=None,
                 hessp=None, coarse=None, standardized=None):
        """L-BFGS on ``fun`` (value and gradient) from ``x0``: the one set of options
        (``n_samples``: the rows the objective sums, for :meth:`ftol`). scipy's L-BFGS-B,
        or from ``LEAN_LBFGS_PARAMS`` parameters on the same method in less memory
        (:func:`._lbfgs.minimize_lbfgs`, the same stopping rules). With ``hessp``
        (:meth:`hessian_product`, called with ``args``), Newton-CG instead
        (:func:`._newton_cg.minimize_newton_cg`: ``tol`` on the largest gradient component,
        as scikit-learn's newton-cg; :meth:`ftol` only for float32, whose gradient cannot
        reach a float64 ``tol``). With ``coarse`` (:meth:`coarse`), the lean L-BFGS taking
        its first iterations on the float32 evaluation. With ``standardized``
        (:func:`standardizing`), the solver runs in those coordinates: ``fun``, ``hessp``
        and ``coarse`` are wrapped, ``x0`` mapped, ``tol`` divided by their ``bound`` (so
        that the objective's own gradient meets ``tol``), and the result's ``x`` and
        ``jac`` mapped back (the standardised gradient as ``jac_standardized``)."""
        if standardized is not None:
            result = self.minimize(
                standardized.fun(fun), standardized.standardized(x0),
                tol=tol / standardized.bound, max_iter=max_iter, n_samples=n_samples,
                args=args, callback=callback,
                hessp=None if hessp is None else standardized.hessp(hessp),
                coarse=None if coarse is None else (standardized.fun(coarse[0]), coarse[1]))
            result.x = standardized.params(result.x)
            # the objective's gradient; the standardised one kept for the estimators'
            # stall warning (a feature's mean of 750 leaves its own gradient at 1.5e-5
            # where the objective is within 1e-14 of its optimum: a reading of the
            # scale, not of the fit)
            result.jac_standardized = result.jac
            result.jac = standardized.objective_gradient(result.jac)
            return result
        if hessp is not None:  # float64: no stop on the reduction (a review: a column at 1e8
            # made a step that barely lowered the objective, and the fit stopped 4 % above
            # the optimum as converged), as scikit-learn's newton-cg; float32's noise floor
            ftol = self.ftol(n_samples) if self.dtype == np.float32 else 0.0
            return minimize_newton_cg(fun, hessp, x0, args=args, gtol=tol, ftol=ftol,
                                      max_iter=max_iter, callback=callback)
        if np.size(x0) >= LEAN_LBFGS_PARAMS or coarse is not None:
            return minimize_lbfgs(fun, x0, args=args, gtol=tol, ftol=self.ftol(n_samples),
                                  max_iter=max_iter, callback=callback,
                                  **({} if coarse is None else dict(coarse=coarse[0],
                                                                    coarse_noise=coarse[1])))
        return optimize.minimize(
            fun, np.asarray(x0, dtype=np.float64), args=args, jac=True, method="L-BFGS-B",
            callback=callback,
            options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                     "ftol": self.ftol(n_samples)})

    def solution(self, params):
        """``(coef_, intercept_)`` in the evaluation dtype; multinomial intercepts centred
        (the objective fixes them only up to a shared shift)."""
        W = np.asarray(params).reshape(self.k, self.cols)
        coef = np.ascontiguousarray(W[:, :self.n_features], dtype=self.dtype)
        if not self.fit_intercept:
            return coef, np.zeros(self.k, dtype=self.dtype)
        intercept = W[:, self.n_features].copy()
        if not self.binary:
            intercept -= intercept.mean()
        return coef, intercept.astype(self.dtype)
