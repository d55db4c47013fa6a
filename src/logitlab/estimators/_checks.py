"""scikit-learn's input validation, with messages that name the argument at fault."""

from __future__ import annotations

import numpy as np
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


def named_errors(fn, X, y=None):
    """Call ``fn()``; re-raise a ValueError/TypeError with the argument at fault named."""
    try:
        return fn()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        if msg.startswith("`"):
            raise
        raise type(exc)(f"{_culprit(X, y)}: {msg}") from None


def validate(est, X, y="no_validation", **kwargs):
    """``validate_data`` whose errors name ``X`` or ``y``."""
    if isinstance(y, str) and y == "no_validation":
        return named_errors(lambda: validate_data(est, X, **kwargs), X)
    return named_errors(lambda: validate_data(est, X, y, **kwargs), X, y)
