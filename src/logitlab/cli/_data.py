"""Reading a user's table: CSV with a header row, or .npz. Errors are one line each."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np


class DataError(Exception):
    """A problem with the user's data file; the CLI prints it and exits with status 2."""


@dataclass
class Table:
    features: list
    X: np.ndarray
    y: np.ndarray | None  # labels (strings or numbers), or a 0/1 matrix for multilabel
    target: str | list | None


def _number(text):
    return float(text)


def _labels(values):
    """Numbers stay numbers when every value is one; otherwise text labels."""
    try:
        nums = np.array([float(v) for v in values])
    except ValueError:
        return np.array(values, dtype=object).astype(str)
    if np.all(nums == np.round(nums)):
        return nums.astype(np.int64)
    return nums


def read_csv(path, target=None, multilabel=None, features=None):
    """Read ``path``; ``target``/``multilabel`` name the label column(s).

    ``features`` (from a trained model) fixes which columns are features and
    their order; a mismatch names the missing or unexpected columns.
    """
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DataError(f"{path} is empty: expected a header row and data rows")
        header = [h.strip() for h in header]
        rows = [r for r in reader if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise DataError(f"{path}: line {i + 2} has {len(r)} fields; the header has {len(header)}")
    label_cols = list(multilabel) if multilabel else ([target] if target else [])
    for col in label_cols:
        if col not in header:
            raise DataError(f"no column {col!r} in {path}; the columns are: {', '.join(header)}")
    if features is None:
        features = [h for h in header if h not in label_cols]
    else:
        missing = [f for f in features if f not in header]
        extra = [h for h in header if h not in features and h not in label_cols]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected {', '.join(extra)}")
            raise DataError(f"the features of {path} differ from the model's: {'; '.join(parts)}")
    if not features:
        raise DataError(f"{path} has no feature columns besides the target")
    index = {h: i for i, h in enumerate(header)}
    X = np.empty((len(rows), len(features)))
    for j, name in enumerate(features):
        col = index[name]
        for i, r in enumerate(rows):
            try:
                X[i, j] = _number(r[col])
            except ValueError:
                raise DataError(
                    f"column {name!r} of {path} is not numeric: line {i + 2} holds {r[col]!r}"
                ) from None
    if not np.isfinite(X).all():
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise DataError(f"column {features[j]!r} of {path} holds {X[i, j]} on line {i + 2}")
    y = None
    if multilabel:
        try:
            y = np.array([[float(r[index[c]]) for c in multilabel] for r in rows])
        except ValueError:
            raise DataError(f"the --multilabel columns of {path} must hold 0 or 1") from None
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError(f"the --multilabel columns of {path} must hold 0 or 1")
        y = y.astype(np.int64)
    elif target:
        y = _labels([r[index[target]].strip() for r in rows])
    return Table(features, X, y, list(multilabel) if multilabel else target)


def read_npz(path, target=None, multilabel=None, features=None):
    """``.npz`` with an ``X`` array (n_samples, n_features), labels under ``target`` (default y)."""
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    if "X" not in arrays:
        raise DataError(f"{path} has no array 'X'; it holds: {', '.join(sorted(arrays))}")
    X = arrays["X"]
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(f"'X' in {path} must be a 2-D numeric array; got {X.dtype} {X.shape}")
    names = [str(n) for n in arrays.get("feature_names", [f"x{i}" for i in range(X.shape[1])])]
    if features is not None and list(features) != names:
        raise DataError(f"the features of {path} differ from the model's: {names} vs {list(features)}")
    key = target or "y"
    y = arrays.get(key)
    if target and y is None:
        raise DataError(f"no array {target!r} in {path}; it holds: {', '.join(sorted(arrays))}")
    return Table(names, X.astype(np.float64), y, key if y is not None else None)


def read_table(path, target=None, multilabel=None, features=None):
    reader = read_npz if str(path).endswith(".npz") else read_csv
    return reader(path, target=target, multilabel=multilabel, features=features)
