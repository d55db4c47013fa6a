"""scikit-learn's input validation, with messages that name the argument at fault."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_array, validate_data


def _culprit(X, y):
    try:
        check_array(X, dtype=None, ensure_2d=True, ensure_all_finite=True)
    except (ValueError, TypeError):
        return "`X`"
    if y is None:
        return "`X`"
    try:
        arr = np.asarray(y)
        if arr.ndim == 0 or arr.dtype.kind in "cO" and arr.size and not all(
                isinstance(v, (str, int, float, np.number)) for v in arr.ravel()):
            return "`y`"
        check_array(y, dtype=None, ensure_2d=False, ensure_all_finite=True)
    except (ValueError, TypeError):
        return "`y`"
    return "`X` and `y`"


def named_errors(fn, X, y=None, *, name=None):
    """Call ``fn()``; re-raise a ValueError/TypeError with the argument at fault named:
    ``name`` where the caller knows it (a check of ``y`` alone), else found out."""
    try:
        return fn()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        if msg.startswith("`"):
            raise
        raise type(exc)(f"{name or _culprit(X, y)}: {msg}") from None


def validate(est, X, y="no_validation", **kwargs):
    """``validate_data`` whose errors name ``X`` or ``y``; a sparse ``X``'s index arrays checked
    in full (:func:`check_sparse_indices`)."""
    if isinstance(y, str) and y == "no_validation":
        out = named_errors(lambda: validate_data(est, X, **kwargs), X)
    else:
        out = named_errors(lambda: validate_data(est, X, y, **kwargs), X, y)
    check_sparse_indices(out[0] if isinstance(out, tuple) else out)
    return out


def check_sparse_indices(X, name="X"):
    """Raise a ValueError naming ``name`` if sparse ``X``'s index arrays lie (a column index
    out of range or negative, ``indptr`` decreasing or not ending at the stored count).

    scikit-learn's validation does not look (it would cost a pass), and scipy's products,
    its format conversions and logitlab's kernels index by them unchecked: a matrix built
    from bad arrays crashed the process (a stranger's review: ``fit``, ``predict``, CSC as
    well as CSR, with the kernels or without). scipy's own full check does the work, on a
    second matrix over the same arrays, since it may reassign a matrix's index arrays.
    """
    if not sp.issparse(X) or X.format not in ("csr", "csc"):
        return
    try:
        type(X)((X.data, X.indices, X.indptr), shape=X.shape, copy=False).check_format(
            full_check=True)
    except ValueError as exc:
        raise ValueError(f"`{name}` must be a valid sparse matrix; scipy's check of its index "
                         f"arrays found: {exc}") from None
