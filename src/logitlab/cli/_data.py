"""Reading a user's table: CSV with a header row, or .npz (dense, or a scipy.sparse matrix).

Errors are one line each."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np


class DataError(Exception):
    """A problem with the user's data file; the CLI prints it and exits with status 2."""


class BadLabels(DataError):
    """A label the file holds cannot be read (empty, NaN, not 0/1 for multilabel): ``predict``,
    which needs no labels, reads the file without them then."""


class MissingLabels(DataError):
    """The label column (CSV) or array (.npz) named is not in the file: ``predict`` reads
    the file without labels then."""


@dataclass
class Table:
    features: list
    X: np.ndarray  # or a scipy.sparse CSR matrix, from a sparse .npz
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
            raise BadLabels(f"the label column {column!r} of {path} is empty{at(line)}")
        try:
            number = float(text)
        except ValueError:
            ints = None
            continue
        if not np.isfinite(number):
            raise BadLabels(f"the label column {column!r} of {path} holds {text!r}{at(line)}:"
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


def _csv_rows(path):
    """The header, the non-blank rows and their line numbers."""
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
    return header, rows, lines


def read_csv(path, target=None, multilabel=None, features=None, parse_labels=True):
    """Read ``path``; ``target``/``multilabel`` name the label column(s) (with
    ``parse_labels`` False, columns left out of the features, not read).

    ``features`` (from a trained model) fixes which columns are features and
    their order; a mismatch names the missing or unexpected columns.
    """
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path}")
    try:
        header, rows, lines = _csv_rows(path)
    except UnicodeDecodeError as exc:  # a binary file: a .npy, a spreadsheet...
        raise DataError(f"{path} is not a CSV text file (byte {exc.start} is not UTF-8); data "
                        "is a CSV or an .npz, and a .npy of labels goes to --labels") from None
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
            raise MissingLabels(f"no column {col!r} in {path}; the columns are: {_few(header)}")
    if features is None:
        features = [h for h in header if h not in label_cols]
    else:
        missing = [f for f in features if f not in header]
        extra = [h for h in header if h not in features and h not in label_cols]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {_few(missing)}")
            if extra:
                parts.append(f"unexpected {_few(extra)}")
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
    if not parse_labels:
        pass
    elif multilabel:
        try:
            y = np.array([[float(r[index[c]]) for c in multilabel] for r in rows])
        except ValueError:
            raise BadLabels(f"the --multilabel columns of {path} must hold 0 or 1") from None
        if not np.isin(y, (0.0, 1.0)).all():
            raise BadLabels(f"the --multilabel columns of {path} must hold 0 or 1")
        y = y.astype(np.int64)
    elif target:
        y = labels_as_written([r[index[target]].strip() for r in rows], lines, target, path)
    return Table(features, X, y, list(multilabel) if multilabel else target)


#: An .npz's arrays may take at most this many times the file's size (or 64 KiB) once
#: read: deflate expands up to about 1000 times (a "zip bomb"), real data far less; a
#: file saved uncompressed (``np.savez``, ``save_npz(..., compressed=False)``) never trips it.
NPZ_MAX_EXPANSION = 100

#: The arrays ``scipy.sparse.save_npz`` writes for a CSR or CSC matrix.
SPARSE_KEYS = ("format", "shape", "data", "indices", "indptr")


def _npy_header(fh):
    """``(shape, dtype)`` from the header of one .npy member, before its data is read."""
    from numpy.lib import format as npy

    version = npy.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def read_npz_arrays(path):
    """Every array of the .npz at ``path``, read without pickle and checked before it is read.

    Each member's header is read first: an object array (pickled Python objects) is
    refused, and so is a header declaring more data than its member holds, or members
    that would take more than ``NPZ_MAX_EXPANSION`` times the file's size, so reading
    costs memory in proportion to the file.
    """
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path}")
    budget = NPZ_MAX_EXPANSION * max(os.path.getsize(path), 1 << 16)
    with open(path, "rb") as fh:  # what np.load would do with it, told before it does
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(f"{path} is a single .npy array, not an .npz archive of arrays")
    if not magic.startswith(b"PK"):  # a zip: a member, or an empty archive
        raise DataError(f"{path} is not a readable .npz file: it is not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            members = {i.filename[:-4]: i for i in data.zip.infolist()
                       if i.filename.endswith(".npy")}
            total = 0
            for name, info in members.items():
                with data.zip.open(info) as fh:
                    shape, dtype = _npy_header(fh)
                if dtype.hasobject:
                    raise DataError(f"{name!r} in {path} is an array of Python objects (pickled):"
                                    " nothing is unpickled from a file; save it as numbers or "
                                    "strings, np.asarray(y, dtype=str)")
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if nbytes > info.file_size:
                    raise DataError(f"{name!r} in {path} declares {dtype} {tuple(shape)} "
                                    f"({nbytes} bytes) but holds {info.file_size} bytes")
                total += nbytes
            if total > budget:
                raise DataError(f"the arrays of {path} take {total} bytes, over "
                                f"{NPZ_MAX_EXPANSION} times the file's size: refused as a "
                                "decompression bomb (save it uncompressed if it is real)")
            return {name: data[name] for name in members}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None


#: The most columns (CSR; rows of CSC) a sparse file may declare beyond its stored values: a
#: hashing vectoriser's 2**20 fits, 10**12 (a model of terabytes) does not.
MAX_DECLARED = 1 << 24


def _sparse_from_npz(arrays, path):
    """The CSR matrix of ``scipy.sparse.save_npz``'s arrays, every array checked first.

    CSC is read and turned into CSR (the row order the fit and the splits use);
    duplicate entries are summed, as scipy.sparse means them. Never densified.
    """
    import scipy.sparse as sp

    fmt = arrays["format"]
    if fmt.ndim != 0 or fmt.dtype.kind not in "US":
        raise DataError(f"'format' in {path} must be the text 'csr' or 'csc'; got {fmt.dtype} "
                        f"{fmt.shape}")
    fmt = fmt.item()
    fmt = fmt.decode("ascii", "replace") if isinstance(fmt, bytes) else fmt
    if fmt not in ("csr", "csc"):
        raise DataError(f"{path} holds a {fmt!r} sparse matrix; logitlab reads CSR or CSC "
                        "(save X.tocsr())")
    missing = [k for k in SPARSE_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} holds a sparse matrix's 'format' but not its "
                        f"{', '.join(repr(k) for k in missing)}")
    shape = arrays["shape"]
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 1).any():
        raise DataError(f"'shape' in {path} must be two positive integers; got "
                        f"{shape.dtype} {shape.tolist() if shape.size <= 4 else shape.shape}")
    n_rows, n_cols = (int(v) for v in shape)
    major, minor = (n_rows, n_cols) if fmt == "csr" else (n_cols, n_rows)
    what = ("rows", "columns") if fmt == "csr" else ("columns", "rows")
    if minor > max(MAX_DECLARED, len(arrays["data"])):
        # indptr's length vouches for the major axis; nothing in the file for the other, yet
        # a model allocates per column (a few-kB file declaring 10**12 columns took 24 GB)
        raise DataError(f"'shape' in {path} declares {minor} {what[1]} for "
                        f"{len(arrays['data'])} stored values; logitlab reads at most "
                        f"{MAX_DECLARED} {what[1]}, or as many as the stored values")
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    if data.ndim != 1 or data.dtype.kind not in "biuf":
        raise DataError(f"'data' in {path} must be a 1-D numeric array; got {data.dtype} "
                        f"{data.shape}")
    if indices.ndim != 1 or indices.dtype.kind not in "iu" or len(indices) != len(data):
        raise DataError(f"'indices' in {path} must be {len(data)} integers (one per stored value);"
                        f" got {indices.dtype} {indices.shape}")
    if indptr.ndim != 1 or indptr.dtype.kind not in "iu" or len(indptr) != major + 1:
        raise DataError(f"'indptr' in {path} must be {major + 1} integers (one more than the "
                        f"{major} {what[0]}); got {indptr.dtype} {indptr.shape}")
    nnz = len(data)
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise DataError(f"'indptr' in {path} must run from 0 to {nnz} (the stored values); it "
                        f"runs from {indptr[0]} to {indptr[-1]}")
    down = np.flatnonzero(indptr[1:] < indptr[:-1])
    if down.size:
        i = int(down[0])
        raise DataError(f"'indptr' in {path} decreases at position {i + 1} ({indptr[i]} then "
                        f"{indptr[i + 1]}): it must be non-decreasing")
    if nnz:
        out = np.flatnonzero((indices < 0) | (indices >= minor)) if indices.dtype.kind == "i" \
            else np.flatnonzero(indices >= minor)
        if out.size:
            i = int(out[0])
            raise DataError(f"'indices' in {path} must lie in [0, {minor}) (the {minor} "
                            f"{what[1]}); position {i} holds {indices[i]}")
    # float32 stays float32 (as the estimators keep it: half the memory); others float64
    values = data.astype(np.float32 if data.dtype == np.float32 else np.float64, copy=False)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"'data' in {path} holds {values[bad][0]} at position "
                        f"{int(np.argmax(bad))}: features must be finite")
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    X = cls((values, indices, indptr), shape=(n_rows, n_cols)).tocsr()
    X.sum_duplicates()
    return X


def read_npz(path, target=None, multilabel=None, features=None, parse_labels=True):
    """``.npz`` with an ``X`` array (n_samples, n_features), or a CSR/CSC matrix as
    ``scipy.sparse.save_npz`` writes it (kept sparse); labels under ``target``
    (default ``y``) in the same file, or from ``--labels``."""
    arrays = read_npz_arrays(path)
    if "format" in arrays:
        X = _sparse_from_npz(arrays, path)
    elif "X" not in arrays:
        raise DataError(f"{path} has no array 'X' (nor a sparse matrix as scipy.sparse.save_npz "
                        f"writes one); it holds: {_few(sorted(arrays))}")
    else:
        X = arrays["X"]
        if X.ndim != 2 or X.dtype.kind not in "biuf":
            raise DataError(f"'X' in {path} must be a 2-D numeric array; got {X.dtype} {X.shape}")
        X = X.astype(np.float32 if X.dtype == np.float32 else np.float64)  # as for sparse
        bad = ~np.isfinite(X)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise DataError(f"'X' in {path} holds {X[i, j]} at row {i}, column {j}: features "
                            "must be finite")
    names = [str(n) for n in arrays.get("feature_names", [f"x{i}" for i in range(X.shape[1])])]
    if len(names) != X.shape[1]:
        raise DataError(f"'feature_names' in {path} names {len(names)} features; the data has "
                        f"{X.shape[1]}")
    if features is not None and list(features) != names:
        raise DataError(f"the features of {path} differ from the model's: "
                        f"{_few(names)} vs {_few(list(features))}")
    key = target or "y"
    y = arrays.get(key) if parse_labels else None
    if target and parse_labels and y is None:
        raise MissingLabels(f"no array {target!r} in {path}; it holds: {_few(sorted(arrays))}")
    if y is not None and not multilabel:
        y = _npz_labels(y, key, path, X.shape[0])
    return Table(names, X, y, key if y is not None else None)


def _few(names, n=8):
    """Names for a message, comma-separated: all of up to ``n``; beyond, the first ``n - 3``,
    the last 3 (a CSV's label column is often its last: a stranger's review found it left
    out) and how many in all (a sparse file's thousands of columns would make one error
    line of tens of kilobytes)."""
    names = [str(name) for name in names]
    if len(names) <= n:
        return ", ".join(names)
    return ", ".join(names[:max(n - 3, 1)] + ["..."] + names[-3:]) + f" ({len(names)} in all)"


def read_labels(path, n_rows):
    """Labels from a separate ``.npy`` file (``np.save(path, y)``), one per data row: for a
    data file that holds none, as ``scipy.sparse.save_npz`` writes. Memory-mapped, then
    copied: a header claiming more than the file holds fails, never allocates."""
    if not str(path).endswith(".npy"):
        raise DataError(f"--labels {path}: expected a .npy file of labels (np.save(path, y))")
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path}")
    try:
        y = np.array(np.load(path, mmap_mode="r", allow_pickle=False))
    except Exception as exc:
        if "Python objects" in str(exc) or "allow_pickle" in str(exc):  # numpy's words for it
            raise DataError(f"{path} holds Python objects (an object array, which np.save "
                            "pickles): nothing is unpickled from a file; save the labels as "
                            "numbers or strings, np.save(path, np.asarray(y, dtype=str))"
                            ) from None
        raise DataError(f"{path} is not a readable .npy array of labels: {exc}") from None
    return _npz_labels(y, "labels", path, n_rows)


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
            raise DataError(f"the labels {key!r} in {path} hold the number "
                            f"{y[frac][0].item()!r} at index "
                            f"{int(np.argmax(frac))}: they look continuous, and logitlab "
                            "classifies; choose labels of classes (text, or integers)")
    elif y.dtype.kind not in "biuUS":
        raise DataError(f"the labels {key!r} in {path} must be numbers or text; got {y.dtype}")
    return y


def read_table(path, target=None, multilabel=None, features=None, parse_labels=True):
    reader = read_npz if str(path).endswith(".npz") else read_csv
    return reader(path, target=target, multilabel=multilabel, features=features,
                  parse_labels=parse_labels)
