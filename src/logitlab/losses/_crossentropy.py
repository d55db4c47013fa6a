"""Cross-entropy losses and their closed-form gradients.

One private function per loss computes the value and, when asked, the
gradient with respect to ``y_pred`` in the same pass. The public functional
forms and the Keras-style classes are thin wrappers over them.

Decisions (documented in each docstring):

* ``from_logits=False`` follows Keras 3: normalise each row, clip to
  ``[eps, 1 - eps]`` with ``eps = 1e-7``, then take the log. The gradient goes
  through the clipping and the normalisation, as Keras's does.
* ``ignore_index`` and ``class_weight`` follow PyTorch's ``cross_entropy``:
  the weighted mean is ``sum(w_y * loss) / sum(w_y)`` over the rows not
  ignored; label smoothing adds ``eps/C * sum_j w_j * (-log p_j)``.
* A batch where every row is ignored gives loss 0 and a zero gradient.
* Entries that do not take part (``where`` False, or a logit of ``-inf``)
  get no smoothing mass; a row where nothing takes part contributes loss 0
  and a zero gradient (optax's convention), never NaN.
"""

from __future__ import annotations

import numpy as np

from .. import _jit, _threads
from .._softmax import (
    _kernel_rows,
    _lse_last,
    _prepare,
    _rows_buffer,
    _shifted_exp_inplace,
    expit,
    log_expit,
    softmax_parts,
)
from .._validation import (
    as_float_array,
    check_axis,
    check_class_weight,
    check_integer_labels,
    check_number,
    check_out,
    check_weights,
    deliver,
    warn_if_probabilities,
)

#: Keras's ``backend.epsilon()``: the clip applied to probabilities.
EPSILON = 1e-7

_REDUCTIONS = {
    "mean": "mean",
    "sum_over_batch_size": "mean",
    "auto": "mean",
    "sum": "sum",
    "none": "none",
    None: "none",
}


def check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(
            "`reduction` must be one of 'mean', 'sum', 'none' (or Keras's "
            f"'sum_over_batch_size'); got {reduction!r}"
        )
    return _REDUCTIONS[reduction]


def check_z_loss(z_loss, from_logits=True):
    """The z-loss weight: finite, >= 0, and only from logits (it regularises logsumexp)."""
    z_loss = float(check_number(z_loss, "z_loss", low=0.0))
    if z_loss > 0 and not from_logits:
        raise ValueError("`z_loss` penalises logsumexp(logits)^2: it needs from_logits=True; "
                         f"got z_loss={z_loss!r} with from_logits=False")
    return z_loss


def _add_z_loss(loss, grad, z, p, row_weight, alive, z_loss):
    """PaLM's z-loss: ``z_loss * lse(z)^2`` on each row (times its row weight), and its
    gradient ``2 z_loss lse(z) softmax(z)``. Rows where nothing takes part add nothing."""
    lse = np.where(alive, _lse_last(z)[..., 0], 0.0)
    coef = z_loss * row_weight
    loss = loss + coef * lse * lse
    if grad is not None:
        with np.errstate(invalid="ignore"):
            grad = grad + (2.0 * coef * lse)[..., None] * np.where(alive[..., None], p, 0.0)
    return loss, grad


def check_label_smoothing(label_smoothing):
    return float(check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0))


def _class_vector(values, name, n_classes, dtype):
    return check_class_weight(values, n_classes, name=name, dtype=dtype)


def _sample_weight(sample_weight, shape, dtype):
    if sample_weight is None:
        return None
    sw = check_weights(sample_weight, "sample_weight", dtype=dtype)
    while sw.ndim > len(shape) and sw.shape[-1] == 1:  # Keras allows (N, 1)
        sw = sw[..., 0]
    try:
        return np.broadcast_to(sw, shape)
    except ValueError:
        raise ValueError(
            f"`sample_weight` of shape {sw.shape} does not match the per-sample "
            f"losses of shape {shape}"
        ) from None


def _check_probabilities(p):
    with np.errstate(invalid="ignore"):
        bad = (p < 0) | (p > 1)
    if bad.any():
        raise ValueError(
            "`y_pred` must hold probabilities in [0, 1] when from_logits=False; "
            f"got the value {p[bad].ravel()[0].item()!r}. Did you mean from_logits=True?"
        )


def _warn_if_probabilities(z):
    """The from-logits losses' warning: one sample's 1-D logits are a row too."""
    warn_if_probabilities(z if z.ndim > 1 else z[None], "y_pred",
                          hint="did you mean from_logits=False?")


def clip_bounds(out_dtype):
    """Keras's probability clip ``[eps, 1 - eps]``, each bound rounded to the input's dtype
    as Keras's tensors round it (float32: ``1 - 1e-7`` is ``1 - 1.19e-7``), so the
    clipped values, then computed exactly, saturate where Keras's do (binary CE on
    float32: 15.942, not float64's 16.118)."""
    dt = np.dtype(out_dtype) if np.dtype(out_dtype).kind == "f" else np.dtype(np.float64)
    return float(dt.type(EPSILON)), float(dt.type(1.0 - EPSILON))


def _log_proba(z, from_logits, need_grad, out_dtype=np.float64):
    """Log-probabilities (and what the gradient needs) from logits or probabilities."""
    if from_logits:
        _warn_if_probabilities(z)
        logp, p = softmax_parts(z, prob=need_grad)
        return logp, p, None
    _check_probabilities(z)
    total = np.sum(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = z / total
    lo, hi = clip_bounds(out_dtype)
    clipped = np.clip(q, lo, hi)
    return np.log(clipped), None, (q, clipped, total, lo, hi)


def _probability_grad(g_c, cache):
    """Chain rule through clip(q, eps, 1-eps) and q = p / sum(p) (Keras's graph)."""
    q, clipped, total, lo, hi = cache
    g_q = np.where((q >= lo) & (q <= hi), g_c, 0.0)
    return (g_q - np.sum(g_q * q, axis=-1, keepdims=True)) / total


def _grad_scale(reduction, denominator):
    """What each row's gradient is multiplied by: 1/denominator for the mean (0 when
    nothing counts), 1 otherwise."""
    if reduction != "mean":
        return 1.0
    return 1.0 / denominator if denominator > 0 else 0.0


def _reduce(loss, grad, reduction, denominator, ax, out_dtype, out=None, *, grad_scaled=False):
    """The one reduction of every loss path, reference and kernel.

    ``loss`` holds the unreduced losses (the shape ``reduction="none"``
    returns), ``grad`` the gradient with the class axis last, to be moved back
    to ``ax`` (None: it is already in place) and scaled for the mean unless
    ``grad_scaled`` (the kernels scale as they write).
    """
    if reduction == "none":
        value = loss
    elif reduction == "sum":
        value = np.sum(loss)
    else:
        value = np.sum(loss) / denominator if denominator > 0 else np.zeros(())
        if grad is not None and not grad_scaled:
            grad = grad / denominator if denominator > 0 else np.zeros_like(grad)
    with np.errstate(over="ignore"):  # beyond the dtype's range is +inf, its true rounding
        value = np.asarray(value).astype(out_dtype, copy=False)[()]
        if grad is not None:
            if ax is not None:
                grad = np.moveaxis(grad, -1, ax)
            grad = deliver(grad.astype(out_dtype, copy=False), out)
    return value, grad


def _sparse_labels(y_true, lead, z_shape, ignore_index, ax=None):
    """Validated integer labels of shape ``lead`` (one per row of logits of shape ``z_shape``).

    A singleton axis where ``y_pred`` has its class axis ``ax`` is dropped, as
    Keras does (labels (2, 1, 4, 4) for ``y_pred`` (2, C, 4, 4) with ``axis=1``),
    and so is a trailing one.
    """
    if ignore_index is not None:
        check_number(ignore_index, "ignore_index", integer=True)
    y = check_integer_labels(y_true, "y_true", z_shape[-1], ignore_index=ignore_index)
    if y.shape != lead:
        if ax is not None and y.ndim == len(z_shape) and y.shape[ax] == 1 \
                and y.shape[:ax] + y.shape[ax + 1:] == lead:
            return np.squeeze(y, axis=ax)
        if y.shape == lead + (1,):
            return y[..., 0]
        raise ValueError(
            "`y_true` must hold one integer label per row of `y_pred`, shape "
            f"{lead}; got shape {y.shape} for `y_pred` of shape {z_shape} "
            "(for one-hot targets use categorical_crossentropy)"
        )
    return y


def _labels_taking_part(where, shape, ax, safe_y):
    """Whether each row's label is an entry ``where`` lets take part (optax's rule drops
    the target mass of the others, from the value and the gradient alike)."""
    mask = np.moveaxis(np.broadcast_to(np.asarray(where, dtype=bool), shape), ax, -1)
    return np.take_along_axis(mask, safe_y[..., None], axis=-1)[..., 0]


def _everywhere(z):
    """An all-True ``where``: the reference path for the rows a kernel left."""
    return np.ones(z.shape, dtype=bool)


def _launch_ce(pair, rows, scale, kernel_args, reference, grad, threaded=False):
    """Run a CE kernel pair over ``rows``: per-row losses and the gradient, into ``grad``.

    ``kernel_args(grad, loss, bad)`` gives the kernel's arguments;
    ``reference(bad)`` the reference's unreduced ``(loss, grad)`` for the rows
    the kernel left (a non-finite maximum or a NaN), which take its limits.
    """
    loss = np.empty(len(rows), dtype=np.float64)
    bad = np.zeros(len(rows), dtype=bool)
    _jit.launch(pair, len(rows), rows.size, *kernel_args(grad, loss, bad), threaded=threaded)
    if bad.any():
        loss[bad], ref_grad = reference(bad)  # `where` keeps it on the reference
        with np.errstate(over="ignore", invalid="ignore"):
            grad[bad] = ref_grad * scale
    return loss, grad


def _prepare_sparse(y_true, lead, shape, ignore_index, class_weight, sample_weight, dtype,
                    ax=None):
    """Labels, row weights and the mean's denominator: one home for every sparse path.

    Returns ``(y, keep, safe_y, w, w_y, sw, row_w, denominator)``: the labels
    (shape ``lead``), the rows not ignored, labels safe to index with (0 on
    ignored rows), the class-weight vector (or None), the weight of each row's
    class (0 on ignored rows), the sample weights (or None), their product
    ``w_y * sw`` and ``sum(w_y)`` (PyTorch's denominator for the mean).
    """
    y = _sparse_labels(y_true, lead, shape, ignore_index, ax)
    w = _class_vector(class_weight, "class_weight", shape[-1], dtype)
    sw = _sample_weight(sample_weight, lead, dtype)
    keep = np.ones(lead, dtype=bool) if ignore_index is None else y != ignore_index
    safe_y = np.where(keep, y, 0).astype(np.intp)
    w_y = np.where(keep, 1.0 if w is None else w[safe_y], 0.0).astype(dtype, copy=False)
    row_w = w_y if sw is None else w_y * sw
    return y, keep, safe_y, w, w_y, sw, row_w, float(np.sum(w_y))


def _sparse_ce_kernel(found, y_true, ignore_index, class_weight, reduction, sample_weight,
                      need_grad, out):
    """Sparse CE from logits through the fused kernel (same semantics as the reference)."""
    kernels, rows, shape, ax = found
    _warn_if_probabilities(rows)
    y, _, safe_y, _, _, sw, row_w, denominator = _prepare_sparse(
        y_true, shape[:-1], shape, ignore_index, class_weight, sample_weight, np.float64, ax)
    y, safe_y, row_w = y.reshape(-1), safe_y.reshape(-1), np.ascontiguousarray(row_w).reshape(-1)
    scale = _grad_scale(reduction, denominator)
    loss, grad = _launch_ce(
        kernels.sparse_ce_rows, rows, scale,
        lambda grad, loss, bad: (rows, safe_y, row_w, scale, grad, loss, bad, True),
        lambda bad: sparse_ce_value_and_grad(
            y[bad], rows[bad], from_logits=True, ignore_index=ignore_index,
            where=_everywhere(rows[bad]), class_weight=class_weight, reduction="none",
            sample_weight=None if sw is None else sw.reshape(-1)[bad]),
        _rows_buffer(out, rows, ax), threaded=True)
    return _reduce(loss.reshape(shape[:-1]), grad.reshape(shape) if need_grad else None,
                   reduction, denominator, ax, rows.dtype, out, grad_scaled=True)


def sparse_ce_value_and_grad(y_true, y_pred, *, from_logits=False, axis=-1, ignore_index=None,
                             label_smoothing=0.0, class_weight=None, reduction="mean",
                             where=None, sample_weight=None, z_loss=0.0, need_grad=True,
                             out=None):
    """Value (and gradient w.r.t. ``y_pred``, into ``out`` if given) of the sparse
    categorical cross-entropy."""
    reduction = check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    z_loss = check_z_loss(z_loss, from_logits)
    inputs = {"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight}
    if from_logits and eps == 0 and z_loss == 0:
        found = _kernel_rows(y_pred, axis, where, name="y_pred")
        if found is not None:
            check_out(out, y_pred.shape, y_pred.dtype, inputs)
            return _sparse_ce_kernel(found, y_true, ignore_index, class_weight, reduction,
                                     sample_weight, need_grad, out)
    z, ax, out_dtype = _prepare(y_pred, axis, where, "y_pred", min_ndim=1)
    check_out(out, np.shape(y_pred), out_dtype, inputs)
    lead = z.shape[:-1]
    y, keep, safe_y, w, w_y, sw, _, denominator = _prepare_sparse(
        y_true, lead, z.shape, ignore_index, class_weight, sample_weight, z.dtype, ax)
    label_in = None if where is None else _labels_taking_part(where, np.shape(y_pred), ax, safe_y)
    safe_y = safe_y[..., None]

    logp, p, cache = _log_proba(z, from_logits, need_grad, out_dtype)
    # alpha: weight on the true class (0 on ignored rows); the smoothing mass
    # spreads over the entries that take part, beta per entry.
    alpha = (1.0 - eps) * w_y
    if label_in is not None:
        alpha = np.where(label_in, alpha, 0.0)  # mass on a left-out entry is dropped (optax)
    taking_part = logp > -np.inf
    alive = taking_part.any(axis=-1)  # rows where some entry takes part
    alpha = np.where(alive, alpha, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        logp_y = np.take_along_axis(logp, safe_y, axis=-1)[..., 0]
        loss = np.where(alpha > 0, -alpha * logp_y, 0.0)
        if eps > 0:
            n_part = np.maximum(taking_part.sum(axis=-1), 1)
            beta = np.where(keep & alive, eps / n_part, 0.0)[..., None]
            wj = taking_part * (1.0 if w is None else w)
            smooth = -np.sum(np.where(wj > 0, wj * logp, 0.0), axis=-1)
            loss = loss + beta[..., 0] * smooth

    grad = None
    if need_grad and from_logits and eps == 0:
        # t = alpha * onehot(y): the gradient (sum_j t_j) p - t is alpha * p, less alpha at y;
        # no dense target needed (alpha is 0 on ignored rows and rows with nothing taking part)
        with np.errstate(invalid="ignore"):
            grad = np.where(alive[..., None], p, 0.0)
            grad *= alpha[..., None]
        np.put_along_axis(grad, safe_y, np.take_along_axis(grad, safe_y, axis=-1)
                          - alpha[..., None], axis=-1)
    elif need_grad:
        # target t = alpha * onehot(y) + beta * w on the entries taking part
        t = np.zeros_like(z)
        np.put_along_axis(t, safe_y, alpha[..., None], axis=-1)
        if eps > 0:
            t = t + beta * wj
        if from_logits:
            # d/dz [-sum_j t_j log softmax(z)_j] = (sum_j t_j) p - t
            with np.errstate(invalid="ignore"):
                grad = np.sum(t, axis=-1, keepdims=True) * np.where(alive[..., None], p, 0.0) - t
        else:
            grad = _probability_grad(-t / cache[1], cache)
    if z_loss:
        loss, grad = _add_z_loss(loss, grad, z, p, w_y, alive, z_loss)
    if sw is not None:
        loss = loss * sw
    if grad is not None and sw is not None:
        grad = grad * sw[..., None]
    return _reduce(loss, grad, reduction, denominator, ax, out_dtype, out)


def _categorical_targets(y_true, z_shape, y_pred_shape, ax, dtype):
    """Validated targets with the class axis last, in ``dtype``."""
    t, _ = as_float_array(y_true, "y_true")
    if t.ndim != len(z_shape) or np.moveaxis(t, ax, -1).shape != z_shape:
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape; got "
            f"{np.shape(y_true)} and {y_pred_shape} (for integer labels use "
            "sparse_categorical_crossentropy)"
        )
    t = np.moveaxis(t, ax, -1).astype(dtype, copy=False)
    with np.errstate(invalid="ignore"):
        if np.any(t < 0):
            raise ValueError("`y_true` must hold non-negative target probabilities")
    return t


def _categorical_ce_kernel(found, y_true, y_pred_shape, reduction, need_grad, out):
    """Categorical CE from logits, no weights, through the fused kernel."""
    kernels, rows, shape, ax = found
    _warn_if_probabilities(rows)
    t = np.ascontiguousarray(_categorical_targets(y_true, shape, y_pred_shape, ax, rows.dtype))
    t = t.reshape(rows.shape)
    denominator = float(len(rows))  # PyTorch: probability targets average over rows
    scale = _grad_scale(reduction, denominator)
    loss, grad = _launch_ce(
        kernels.categorical_ce_rows, rows, scale,
        lambda grad, loss, bad: (rows, t, scale, grad, loss, bad),
        lambda bad: categorical_ce_value_and_grad(
            t[bad], rows[bad], from_logits=True, where=_everywhere(rows[bad]),
            reduction="none"),
        _rows_buffer(out, rows, ax))
    return _reduce(loss.reshape(shape[:-1]), grad.reshape(shape) if need_grad else None,
                   reduction, denominator, ax, rows.dtype, out, grad_scaled=True)


def categorical_ce_value_and_grad(y_true, y_pred, *, from_logits=False, axis=-1,
                                  label_smoothing=0.0, class_weight=None, reduction="mean",
                                  where=None, sample_weight=None, z_loss=0.0, need_grad=True,
                                  out=None):
    """Value (and gradient w.r.t. ``y_pred``, into ``out`` if given) of the categorical
    cross-entropy."""
    reduction = check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    z_loss = check_z_loss(z_loss, from_logits)
    inputs = {"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight}
    if (from_logits and eps == 0 and class_weight is None and sample_weight is None
            and z_loss == 0):
        found = _kernel_rows(y_pred, axis, where, name="y_pred")
        if found is not None:
            check_out(out, y_pred.shape, y_pred.dtype, inputs)
            return _categorical_ce_kernel(found, y_true, np.shape(y_pred), reduction, need_grad,
                                          out)
    z, ax, out_dtype = _prepare(y_pred, axis, where, "y_pred", min_ndim=1)
    check_out(out, np.shape(y_pred), out_dtype, inputs)
    t = _categorical_targets(y_true, z.shape, np.shape(y_pred), ax, z.dtype)
    if where is not None:
        # optax's rule: entries `where` leaves out are left out of the target sum too,
        # in the value and the gradient alike (their mass is dropped, not renormalised)
        mask = np.moveaxis(np.broadcast_to(np.asarray(where, dtype=bool), np.shape(y_pred)),
                           ax, -1)
        t = np.where(mask, t, 0.0)
    n_classes = z.shape[-1]
    lead = z.shape[:-1]
    w = _class_vector(class_weight, "class_weight", n_classes, z.dtype)
    sw = _sample_weight(sample_weight, lead, z.dtype)

    logp, p, cache = _log_proba(z, from_logits, need_grad, out_dtype)
    taking_part = logp > -np.inf
    alive = taking_part.any(axis=-1, keepdims=True)
    if eps > 0:
        n_part = np.maximum(taking_part.sum(axis=-1, keepdims=True), 1)
        t = (1.0 - eps) * t + np.where(taking_part, eps / n_part, 0.0)
    if w is not None:
        t = t * w
    t = np.where(alive, t, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = -np.sum(np.where(t > 0, t * logp, 0.0), axis=-1)  # 0 * log 0 = 0
    denominator = float(np.prod(lead))  # PyTorch: probability targets average over rows

    grad = None
    if need_grad:
        if from_logits:
            grad = np.sum(t, axis=-1, keepdims=True) * np.where(alive, p, 0.0) - t
        else:
            grad = _probability_grad(-t / cache[1], cache)
    if z_loss:
        loss, grad = _add_z_loss(loss, grad, z, p, 1.0, alive[..., 0], z_loss)
    if sw is not None:
        loss = loss * sw
        if grad is not None:
            grad = grad * sw[..., None]
    return _reduce(loss, grad, reduction, denominator, ax, out_dtype, out)


def binary_ce_value_and_grad(y_true, y_pred, *, from_logits=False, label_smoothing=0.0,
                             pos_weight=None, reduction="mean", sample_weight=None,
                             need_grad=True, out=None):
    """Value (and gradient w.r.t. ``y_pred``, into ``out`` if given) of the element-wise
    binary cross-entropy."""
    reduction = check_reduction(reduction)
    eps = check_label_smoothing(label_smoothing)
    z, out_dtype = as_float_array(y_pred, "y_pred")
    check_out(out, z.shape, out_dtype, {"y_true": y_true, "y_pred": y_pred,
                                        "sample_weight": sample_weight,
                                        "pos_weight": pos_weight})
    y, _ = as_float_array(y_true, "y_true")
    if y.shape != z.shape:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same shape; got {y.shape} and {z.shape}"
        )
    y = y.astype(z.dtype, copy=False)
    with np.errstate(invalid="ignore"):
        if np.any((y < 0) | (y > 1)):
            raise ValueError("`y_true` must hold targets in [0, 1] for binary cross-entropy")
    if eps > 0:
        y = y * (1.0 - eps) + 0.5 * eps
    pw = 1.0
    if pos_weight is not None:
        pw = check_weights(pos_weight, "pos_weight", positive=True, dtype=z.dtype)
        try:
            np.broadcast_shapes(pw.shape, z.shape)
        except ValueError:
            raise ValueError(
                f"`pos_weight` of shape {pw.shape} does not broadcast to `y_pred`'s "
                f"shape {z.shape}"
            ) from None
    sw = None
    if sample_weight is not None:
        # one weight per element, or per row (Keras's per-sample weights)
        if np.shape(sample_weight) == z.shape or z.ndim < 2:
            sw = _sample_weight(sample_weight, z.shape, z.dtype)
        else:
            sw = _sample_weight(sample_weight, z.shape[:-1], z.dtype)[..., None]

    yw = pw * y
    if from_logits:
        # log sigma(z) = -log(1 + e^-z);  log(1 - sigma(z)) = log sigma(-z)
        loss = -(np.where(yw > 0, yw * log_expit(z), 0.0)
                 + np.where(y < 1, (1.0 - y) * log_expit(-z), 0.0))
    else:
        _check_probabilities(z)
        lo, hi = clip_bounds(out_dtype)
        c = np.clip(z, lo, hi)
        loss = -(yw * np.log(c) + (1.0 - y) * np.log1p(-c))
    if sw is not None:
        loss = loss * sw

    grad = None
    if need_grad:
        if from_logits:
            # d/dz = -pw y sigma(-z) + (1 - y) sigma(z)
            grad = -yw * expit(-z) + (1.0 - y) * expit(z)
        else:
            inside = (z >= lo) & (z <= hi)
            grad = np.where(inside, -(yw / c) + (1.0 - y) / (1.0 - c), 0.0)
        if sw is not None:
            grad = grad * sw
    return _reduce(loss, grad, reduction, float(loss.size), None, out_dtype, out)


def _lean_rows(z, y, sw, scale, z_loss=0.0):
    """In place on one block of rows: see :func:`sparse_ce_logits_inplace`."""
    rows = np.arange(len(z))
    picked = z[rows, y]
    # z <- exp(z - m); logsumexp = m + log1p(r), the core's identity (_softmax)
    m, r = _shifted_exp_inplace(z)
    per_row = np.log1p(r) - (picked - m)
    z /= (1.0 + r)[:, None]
    if z_loss:
        # + z_loss lse^2 per row; its gradient 2 z_loss lse softmax joins the softmax term
        lse = m + np.log1p(r)
        per_row += z_loss * lse * lse
        z *= (1.0 + 2.0 * z_loss * lse)[:, None]
    z[rows, y] -= 1.0
    if sw is not None:
        per_row *= sw
        z *= (sw * scale)[:, None]
    elif scale != 1.0:
        z *= scale
    return float(per_row.sum(dtype=np.float64))


def _kernel_z_loss(g, y, w, scale, loss, picked, z_loss):
    """Add the z-loss to what the compiled sparse CE kernel left, in place.

    The kernel wrote ``loss_i = w_i (lse_i - z_iy)`` and ``g_i = s_i (p_i - e_y)``
    with ``s_i = scale w_i``; so ``lse_i = loss_i / w_i + z_iy`` and
    ``s_i p_i = g_i + s_i e_y``: the z-loss gradient ``2 z_loss lse_i s_i p_i`` is
    ``c_i (g_i + s_i e_y)`` with ``c_i = 2 z_loss lse_i``. The kernel itself is
    unchanged (it stays the one compiled loop for every caller).
    """
    rows = np.arange(len(g))
    with np.errstate(invalid="ignore", divide="ignore"):
        lse = np.where(w > 0, loss / w, 0.0) + picked
    loss += z_loss * w * lse * lse
    c = 2.0 * z_loss * lse
    g *= (1.0 + c)[:, None].astype(g.dtype)
    g[rows, y] += (c * scale * w).astype(g.dtype)


def sparse_ce_logits_inplace(z, y, sample_weight=None, scale=1.0, parallel_above=400_000,
                             z_loss=0.0):
    """The lean path: sum of sparse CE losses from logits, gradient written over ``z``.

    For callers that have validated their inputs once (``Sequential.fit``,
    the estimators' objectives): ``z`` is a C-contiguous float (n, C) array
    of finite logits that may be overwritten, ``y`` valid integer labels.
    Returns ``sum_i sw_i * loss_i``; ``z`` then holds ``scale * sw_i *
    (softmax(z_i) - onehot(y_i))``. The fused kernel does it when it is
    available; otherwise NumPy does, with large arrays split by rows over two
    threads (NumPy releases the GIL in its loops). ``z_loss`` adds
    ``z_loss * lse_i^2`` to each row's loss and ``2 z_loss lse_i softmax(z_i)``
    to its gradient (before the ``scale * sw_i``), on both paths. The checked
    public path with every option is :func:`sparse_ce_value_and_grad`.
    """
    n = len(z)
    # the kernel wherever _jit's rule sends an array (float32 or float64, MIN_SIZE elements
    # once Numba is loaded; inside a fit, the fit's choice: _jit.fit_mode): measured on the
    # 2-core Zen 2, float64 50000 x 10 takes 2.7 ms against NumPy's 8.5 ms, 5000 x 10
    # 0.53 ms against 0.86 ms; an L-BFGS fit makes 100+ such calls on row blocks of a few
    # thousand rows.
    kernels = _jit.kernels_for(z) if z.ndim == 2 and z.flags.c_contiguous else None
    if kernels is not None:
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        loss = np.empty(n)
        bad = np.zeros(n, dtype=bool)
        yi = np.asarray(y, dtype=np.intp)
        picked = z[np.arange(n), yi].astype(np.float64) if z_loss else None
        _jit.launch(kernels.sparse_ce_rows, n, z.size, z, yi, w,
                    float(scale), z, loss, bad, False, threaded=True)  # in place: no exact refinement
        if z_loss:
            _kernel_z_loss(z, yi, w, float(scale), loss, picked, z_loss)
        # non-finite logits break the caller's contract: report NaN (the caller stops)
        return float("nan") if bad.any() else float(np.sum(loss))
    if z.size < parallel_above or n < 2:
        return _lean_rows(z, y, sample_weight, scale, z_loss)
    half = n // 2
    parts = [(slice(0, half)), (slice(half, n))]
    workers = _threads.pool("crossentropy")
    futures = [workers.submit(_lean_rows, z[p], y[p], None if sample_weight is None
                              else sample_weight[p], scale, z_loss) for p in parts]
    return sum(f.result() for f in futures)
