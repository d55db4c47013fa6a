"""The Dask adapter: fit on chunked data by partial sums, predict lazily chunk by chunk.

Only this module imports Dask, and only when an estimator is handed a Dask
collection. The L-BFGS optimiser runs on the client; each step computes, on
the workers, one ``(loss, gradient)`` partial sum per chunk with the core's
fused loss-and-gradient, and only those small sums travel back.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._validation import all_finite, check_some_weight, check_weights

from .._dask_adapter import as_dask_array, is_dask_collection, map_rows  # noqa: F401

__all__ = ["fit_softmax_regression"]


def _align(X, y, sample_weight):
    if X.ndim != 2:
        raise ValueError(f"`X` must be 2-D (n_samples, n_features); got {X.ndim} dimensions")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"`y` must be 1-D; got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"`X` and `y` have inconsistent numbers of samples: {X.shape[0]} and "
                         f"{y.shape[0]}")
    y = y.rechunk((X.chunks[0],))
    if sample_weight is not None:
        sample_weight = sample_weight.rechunk((X.chunks[0],))
    return X, y, sample_weight


def _chunk_sums(X, y, sw, params, classes, objective):
    """Unscaled loss and gradient sums of one chunk (runs on a worker); a chunk may be
    dense or scipy.sparse (never densified)."""
    if sp.issparse(X):
        X = X.tocsr().astype(objective.dtype, copy=False)
        values = X.data
    else:
        X = np.asarray(X, dtype=objective.dtype)
        values = X
    if not all_finite(values):
        raise ValueError("`X` contains NaN or infinity")
    idx = np.searchsorted(classes, y)
    if np.any(idx >= len(classes)) or np.any(classes[np.minimum(idx, len(classes) - 1)] != y):
        raise ValueError("`y` changed between passes over the data")
    sw = None if sw is None else check_weights(sw, "sample_weight", shape=(X.shape[0],))
    return objective.data_sums(params, X, idx, sw)  # labels validated above


def _class_pass(y, sw):
    """Classes, and the sum of sample weights, in one pass over ``y``."""
    import dask
    import dask.array as da

    classes = da.unique(y)
    total = sw.sum() if sw is not None else y.shape[0]
    classes, total = dask.compute(classes, total)
    return np.asarray(classes), float(total)


def fit_softmax_regression(est, X, y, sample_weight=None):
    """Fit ``est`` (a SoftmaxRegression) on Dask collections; returns ``est``."""
    import dask

    from ._softmax_regression import _IterationProgress

    X = as_dask_array(X, "X")
    y = as_dask_array(y, "y")
    sw = None if sample_weight is None else as_dask_array(sample_weight, "sample_weight")
    X, y, sw = _align(X, y, sw)
    if est.class_weight is not None:
        raise ValueError("`class_weight` is not supported with Dask inputs; pass sample_weight")
    classes, sw_sum = _class_pass(y, sw)
    check_some_weight([sw_sum], "`sample_weight`")
    if len(classes) < 2:
        raise ValueError("`y` must hold samples of at least 2 classes, but the data contains "
                         f"only one class: {classes[0]!r}")
    est.classes_ = classes
    est.n_features_in_ = int(X.shape[1])
    objective = est._objective(len(classes), int(X.shape[1]),
                               np.float32 if X.dtype == np.float32 else np.float64)
    x_blocks = X.to_delayed().ravel()
    y_blocks = y.to_delayed().ravel()
    w_blocks = sw.to_delayed().ravel() if sw is not None else [None] * len(x_blocks)
    chunk = dask.delayed(_chunk_sums, pure=True)

    def loss_gradient(params):
        parts = dask.compute(*[chunk(xb, yb, wb, params, classes, objective)
                               for xb, yb, wb in zip(x_blocks, y_blocks, w_blocks)])
        loss = sum(p[0] for p in parts)
        grad = sum(p[1] for p in parts)
        return objective.finish(params, loss, grad, sw_sum)

    progress = _IterationProgress(est.verbose, est.max_iter)
    with progress:
        result = objective.minimize(loss_gradient, est._initial_params(objective), tol=est.tol,
                                    max_iter=est.max_iter, n_samples=X.shape[0],
                                    callback=progress.callback if est.verbose else None)
    progress.done(result)
    est._finish(objective, result)
    return est
