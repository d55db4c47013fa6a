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


def _warn(message):
    """One line on standard error, for what the data's reader changed on its own."""
    import click

    click.echo(f"warning: {message}", err=True)


def _number(text):
    return float(text)


_INT64 = np.iinfo(np.int64)


def labels_as_written(values, lines, column, path):
    """The label column as classes, keeping every label exactly as written.

    Labels stay text unless every one is an integer literal that reads back
    as itself (``str(int(s)) == s``) within int64; then they are int64. So
    ``007`` and ``7`` stay two classes, ``1e19`` is the text ``1e19``, and
    ``90071992547409931`` is not rounded to a float. Refused, with the line:
    an empty cell, ``nan``/``inf``, and numbers with a fractional part (a
    continuous target, which is regression; scikit-learn's ``type_of_target``
    draws the same line).
    """
    lines = [None] * len(values) if lines is None else lines

    def at(line):
        return "" if line is None else f" on line {line}"

    ints = []
    for text, line in zip(values, lines):
        if not text:
            raise DataError(f"the label column {column!r} of {path} is empty{at(line)}")
        try:
            number = float(text)
        except ValueError:
            ints = None
            continue
        if not np.isfinite(number):
            raise DataError(f"the label column {column!r} of {path} holds {text!r}{at(line)}:"
                            " a missing or non-finite label")
        if ints is not None:
            try:
                value = int(text)
            except ValueError:
                value = None
            if value is None or str(value) != text or not _INT64.min <= value <= _INT64.max:
                ints = None
            else:
                ints.append(value)
    if ints is not None:
        return np.array(ints, dtype=np.int64)
    numbers = []
    for text, line in zip(values, lines):
        try:
            numbers.append((float(text), text, line))
        except ValueError:
            return np.array(values, dtype=str)  # text labels, exactly as written
    for number, text, line in numbers:
        if number != np.floor(number):
            raise DataError(f"the label column {column!r} of {path} holds the number {text}"
                            f"{at(line)}: it looks continuous, and logitlab classifies; choose a "
                            "--target of class labels (text, or integers)")
    return np.array(values, dtype=str)  # integral numbers written as 1.0 or 1e19: kept as text


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
        rows, lines = [], []
        for r in reader:
            if r and any(c.strip() for c in r):
                rows.append(r)
                lines.append(reader.line_num)
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    for r, line in zip(rows, lines):
        if len(r) != len(header):
            raise DataError(f"{path}: line {line} has {len(r)} fields; the header has {len(header)}")
    dropped = 0
    if header[0] == "" and len(header) > 1:
        # df.to_csv(path) writes the index as a first column with an empty header cell
        _warn(f"{path}: dropped the first column: its header is empty, as pandas writes an "
              "index (save with df.to_csv(path, index=False) to avoid this)")
        header, rows, dropped = header[1:], [r[1:] for r in rows], 1
    for j, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: column {j + 1 + dropped} has no name in the header row")
        if header.index(name) != j:
            raise DataError(f"{path}: the header names the column {name!r} twice")
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
                    f"column {name!r} of {path} is not numeric: line {lines[i]} holds {r[col]!r}"
                ) from None
    if not np.isfinite(X).all():
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise DataError(f"column {features[j]!r} of {path} holds {X[i, j]} on line {lines[i]}")
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
        y = labels_as_written([r[index[target]].strip() for r in rows], lines, target, path)
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
    if y is not None and not multilabel:
        y = _npz_labels(y, key, path, len(X))
    return Table(names, X.astype(np.float64), y, key if y is not None else None)


def _npz_labels(y, key, path, n_rows):
    """The same rule as for a CSV's label column, on an array: no NaN/inf, nothing continuous."""
    if y.ndim != 1 or len(y) != n_rows:
        raise DataError(f"the labels {key!r} in {path} must be a 1-D array of {n_rows} values "
                        f"(one per row of 'X'); got shape {y.shape}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(f"the labels {key!r} in {path} hold {y[bad][0]} at index "
                            f"{int(np.argmax(bad))}: a missing or non-finite label")
        frac = y != np.floor(y)
        if frac.any():
            raise DataError(f"the labels {key!r} in {path} hold the number {y[frac][0]!r} at index "
                            f"{int(np.argmax(frac))}: they look continuous, and logitlab "
                            "classifies; choose labels of classes (text, or integers)")
    elif y.dtype.kind not in "biuUS":
        raise DataError(f"the labels {key!r} in {path} must be numbers or text; got {y.dtype}")
    return y


def read_table(path, target=None, multilabel=None, features=None):
    reader = read_npz if str(path).endswith(".npz") else read_csv
    return reader(path, target=target, multilabel=multilabel, features=features)
