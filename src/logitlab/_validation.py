"""Input validation shared by the whole package.

Every message names the argument, what was expected and what came, so that a
user never has to read a traceback from inside NumPy.
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

__all__ = [
    "LogitlabError",
    "as_float_array",
    "check_axis",
    "check_choice",
    "check_integer_labels",
    "check_number",
    "check_out",
    "check_same_shape",
    "check_where",
    "deliver",
    "describe",
]


class LogitlabError(ValueError):
    """Base class of the errors logitlab raises itself (a ``ValueError``)."""


def describe(x) -> str:
    """A short description of what came, for error messages."""
    if isinstance(x, np.ndarray):
        return f"an array of dtype {x.dtype} and shape {x.shape}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of length {len(x)}"
    return f"{type(x).__name__} {x!r}"[:120]


def _asarray(x, name):
    if x is None:
        raise TypeError(f"`{name}` must be an array-like of numbers; got None")
    if isinstance(x, (str, bytes)):
        raise TypeError(f"`{name}` must be an array-like of numbers; got {describe(x)}")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise ValueError(
            f"`{name}` must be a rectangular array-like of numbers; "
            f"NumPy could not convert {describe(x)}: {exc}"
        ) from None
    return arr


def as_float_array(x, name: str, *, min_ndim: int = 0):
    """Convert ``x`` to a floating array for computation.

    Returns ``(arr, out_dtype)``: ``arr`` is in the *compute* dtype and
    ``out_dtype`` the dtype the result is returned in. Integers and booleans
    become float64; float16 is computed in float32; float32 in float64 (so
    that the reference path is exact to the final rounding); float64 as is.
    """
    arr = _asarray(x, name)
    kind = arr.dtype.kind
    if kind in "biu":
        out = np.dtype(np.float64)
    elif kind == "f":
        out = arr.dtype
    elif kind == "c":
        raise TypeError(f"`{name}` must be real; got complex dtype {arr.dtype}")
    else:
        raise TypeError(f"`{name}` must be an array of numbers; got {describe(arr)}")
    if arr.ndim < min_ndim:
        raise ValueError(
            f"`{name}` must have at least {min_ndim} dimension(s); got shape {arr.shape}"
        )
    compute = compute_dtype(out)
    return arr.astype(compute, copy=False), out


def compute_dtype(out_dtype) -> np.dtype:
    """The dtype a result of dtype ``out_dtype`` is computed in."""
    out_dtype = np.dtype(out_dtype)
    if out_dtype == np.float16:
        return np.dtype(np.float32)
    if out_dtype == np.float32:
        return np.dtype(np.float64)
    return out_dtype


def check_axis(axis, ndim: int, name: str = "axis", array_name: str = "x") -> int:
    """Normalise ``axis`` for the array ``array_name`` of ``ndim`` dimensions."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"`{name}` must be an integer; got {describe(axis)}") from None
    if ndim == 0:
        raise ValueError(
            f"`{array_name}` must have at least one dimension (the class axis); got a scalar"
        )
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"`{name}`={axis} is out of range for an array of {ndim} dimension(s)"
        )
    return axis % ndim


def check_where(where, shape, name: str = "where"):
    """Broadcast a boolean mask to ``shape`` (``None`` means everything)."""
    if where is None:
        return None
    mask = _asarray(where, name)
    if mask.dtype != bool:
        raise TypeError(f"`{name}` must be a boolean mask; got dtype {mask.dtype}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"`{name}` of shape {mask.shape} does not broadcast to the input's shape {shape}"
        ) from None


def check_out(out, shape, dtype, inputs, name: str = "out"):
    """Validate a caller's output buffer; ``None`` (a fresh result) passes.

    ``out`` must be a writeable ndarray of exactly ``shape`` and ``dtype``
    (no casting: a buffer is reused as it is, as with NumPy's ``out=``),
    sharing no memory with the arrays in ``inputs`` (a dict of name to value),
    which the kernels still read while they write ``out``.
    """
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"`{name}` must be a NumPy array or None; got {describe(out)}")
    if out.shape != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}; got shape {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"`{name}` must have dtype {np.dtype(dtype)}; got dtype {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"`{name}` must be writeable; got a read-only array")
    for input_name, value in inputs.items():
        if isinstance(value, np.ndarray) and np.may_share_memory(out, value):
            raise ValueError(f"`{name}` must not share memory with `{input_name}`")
    return out


def deliver(result, out):
    """``result``, or ``out`` holding it (nothing is copied when ``result`` is ``out``'s memory)."""
    if out is None:
        return result
    if not np.may_share_memory(result, out):
        np.copyto(out, result)
    return out


def check_same_shape(a, b, name_a: str = "y_true", name_b: str = "y_pred"):
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape; got {a.shape} and {b.shape}"
        )


def check_choice(value, choices, name: str):
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {options}; got {value!r}")
    return value


def check_number(value, name: str, *, low=None, high=None, low_open=False, high_open=False,
                 integer=False):
    """A real (or integer) scalar inside an interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "an integer" if integer else "a real number"
        raise TypeError(f"`{name}` must be {kind}; got {describe(value)}")
    if integer and not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {describe(value)}")
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        op = ">" if low_open else ">="
        raise ValueError(f"`{name}` must be {op} {low}; got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        op = "<" if high_open else "<="
        raise ValueError(f"`{name}` must be {op} {high}; got {value!r}")
    return value


def check_integer_labels(labels, name: str, num_classes: int, *, ignore_index=None):
    """Integer class labels in ``[0, num_classes)`` (``ignore_index`` allowed).

    Floats holding whole numbers are accepted (Keras passes labels as floats);
    anything else is a ``TypeError``/``ValueError`` naming ``name``.
    """
    arr = _asarray(labels, name)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"`{name}` must hold integer class labels; got booleans")
    if kind == "f":
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(arr) & (arr == np.round(arr))
        if not whole.all():
            bad = arr[~whole].ravel()[0].item()
            raise ValueError(
                f"`{name}` must hold integer class labels; got the non-integer value {bad!r}"
            )
        if arr.size and np.abs(arr).max() > 2**53:
            raise ValueError(f"`{name}` holds values too large to be class labels")
        arr = arr.astype(np.int64)
    elif kind not in "iu":
        raise TypeError(
            f"`{name}` must hold integer class labels; got {describe(arr)}"
        )
    arr = arr.astype(np.int64, copy=False)
    valid = (arr >= 0) & (arr < num_classes)
    if ignore_index is not None:
        valid |= arr == ignore_index
    if not valid.all():
        bad = arr[~valid].ravel()[0]
        extra = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(
            f"`{name}` must hold labels in [0, {num_classes}){extra}; got {int(bad)}"
        )
    return arr
