"""``logitlab train / predict / evaluate`` on a user's CSV or .npz."""

from __future__ import annotations

import csv
import io
import os
import re
import sys

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._io import atomic_write
from ..callbacks import Callback
from .._saving import ModelFileError, check_array
from ._data import (
    BadLabels,
    DataError,
    MissingLabels,
    _few,
    labels_as_written,
    read_labels,
    read_table,
)


def _console():
    return Console(stderr=False, highlight=False)


def _is_sparse(X):
    """A scipy.sparse matrix, told without importing scipy (predict stays light)."""
    return type(X).__module__.startswith("scipy.sparse")


def _scale(X, mean, scale):
    """``(X - mean) / scale``. Sparse ``X`` (CSR) stays sparse: only its stored values
    are divided, which is the whole of it when ``mean`` is 0 (see :func:`_model_input`)."""
    if _is_sparse(X):
        if np.any(mean != 0):
            raise ValueError("sparse X is scaled without centring; fold the mean into the model")
        data = X.data / scale[X.indices]  # float32 values stay float32, as the API keeps them
        return type(X)((data.astype(X.dtype) if X.dtype == np.float32 else data, X.indices,
                        X.indptr), shape=X.shape)
    return (X - mean) / scale


def _sparse_column_std(X):
    """Column standard deviations of CSR ``X`` (its zeros counted), never densified.

    Two passes over the stored values (the mean, then the squared deviations),
    so a column far from zero loses no digits: with :math:`n` rows, :math:`c_j`
    stored values in column :math:`j` and mean :math:`m_j`,
    :math:`n\\sigma_j^2 = \\sum_{stored} (x - m_j)^2 + (n - c_j) m_j^2`.
    """
    n, d = X.shape
    counts = np.bincount(X.indices, minlength=d)
    mean = np.bincount(X.indices, weights=X.data, minlength=d) / n
    dev = np.bincount(X.indices, weights=(X.data - mean[X.indices]) ** 2, minlength=d)
    return np.sqrt(np.maximum(dev + (n - counts) * mean ** 2, 0.0) / n)


def _dense_only(est, data):
    """The one-line refusal of sparse ``data`` for ``est`` (an estimator, or its kind)."""
    kind = est if isinstance(est, str) else getattr(est, "kind", type(est).__name__)
    return DataError(f"{data} holds a sparse matrix, and {kind} "
                     "takes dense features only: use --model softmax, or save X.toarray() if it "
                     "fits in memory")


def _model_input(est, X, mean, scale, data):
    """``(est, X)`` for prediction: ``X`` scaled as in training.

    Sparse ``X`` is never densified: a linear model (SoftmaxRegression, or the
    light predictor of one) trained on centred features takes the centring in
    its intercepts instead, :math:`W((x - m)/s) + b = W(x/s) + (b - W(m/s))`.
    A network cannot, and is refused in one line.
    """
    if not _is_sparse(X):
        return est, _scale(X, mean, scale)
    from ._calibrate import Calibrated

    inner = est.est if isinstance(est, Calibrated) else est
    if not hasattr(inner, "coef_"):
        raise _dense_only(inner, data)
    if np.any(mean != 0):
        import copy

        shifted = copy.copy(inner)
        shifted.intercept_ = inner.intercept_ - (mean / scale) @ inner.coef_.T
        est = (Calibrated(shifted, est.temperature, est.multilabel)
               if isinstance(est, Calibrated) else shifted)
    return est, _scale(X, np.zeros_like(mean), scale)


def metrics_report(console, est, X, y, title, pred=None, proba=None, label_names=None):
    """Accuracy, log loss, per-class precision/recall and a confusion matrix; for a
    multilabel model (``label_names``: its label columns) the per-label scores."""
    from ._metrics import (
        accuracy,
        confusion_matrix,
        hamming_loss,
        log_loss,
        precision_recall_support,
    )

    proba = est.predict_proba(X) if proba is None else proba
    pred = est.predict(X) if pred is None else pred
    summary = Table(title=title)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_row("samples", str(len(y)))
    multilabel = bool(label_names)
    if multilabel:
        summary.add_row("subset accuracy", f"{accuracy(y, pred):.4f}")
        summary.add_row("hamming loss", f"{hamming_loss(y, pred):.4f}")
        eps = 1e-15
        p = np.clip(proba, eps, 1 - eps)
        summary.add_row("log loss (mean binary)",
                        f"{float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))):.4f}")
        labels = [str(c) for c in label_names]
    else:
        summary.add_row("accuracy", f"{accuracy(y, pred):.4f}")
        summary.add_row("log loss", f"{log_loss(y, proba, labels=est.classes_):.4f}")
        labels = [str(c) for c in est.classes_]
    for name, value in calibration_rows(y, proba, est.classes_, multilabel):
        summary.add_row(name, f"{value:.4f}")
    console.print(summary)
    prec, rec, support = precision_recall_support(
        y, pred, labels=None if multilabel else est.classes_)
    per = Table(title="per class" if not multilabel else "per label")
    for col in ("class", "precision", "recall", "support"):
        per.add_column(col, justify="left" if col == "class" else "right")
    for name, p_, r_, s_ in zip(labels, prec, rec, support):
        per.add_row(escape(name), f"{p_:.4f}", f"{r_:.4f}", str(int(s_)))
    console.print(per)
    if not multilabel:
        print_confusion_matrix(console, confusion_matrix(y, pred, labels=est.classes_), labels)


def print_confusion_matrix(console, cm, labels):
    """The confusion matrix as a table, its predicted columns split over as many tables as
    the console's width needs: a count is never cut (a stranger's review: at 15 classes in
    80 columns the diagonal read ``1…``). Class names longer than a third of the width are
    shortened with an ellipsis, in the rows and in the headers, so the counts keep room."""
    cap = max(12, console.width // 3)
    first = min(max(len(name) for name in labels), cap) + 4  # the row names and borders
    digits = [len(str(int(cm[:, j].max()))) for j in range(len(labels))]
    widths = [max(min(len(name), cap), digits[j]) + 3 for j, name in enumerate(labels)]
    chunks, start, used = [], 0, first
    for j, w in enumerate(widths):
        if j > start and used + w > console.width:
            chunks.append((start, j))
            start, used = j, first
        used += w
    chunks.append((start, len(labels)))
    for lo, hi in chunks:
        part = "" if len(chunks) == 1 else f" (predicted {hi - lo} of {len(labels)}: columns " \
            f"{lo + 1} to {hi})"
        table = Table(title="confusion matrix" + part,
                      caption="rows: true class, columns: predicted")
        table.add_column("", no_wrap=True, overflow="ellipsis", max_width=cap)
        for j, name in zip(range(lo, hi), labels[lo:hi]):
            table.add_column(escape(name), justify="right", no_wrap=True, overflow="ellipsis",
                             min_width=digits[j], max_width=max(cap, digits[j]))
        for name, row in zip(labels, cm):
            table.add_row(escape(name), *[str(v) for v in row[lo:hi]])
        console.print(table)


def calibration_rows(y, proba, classes, multilabel):
    """``[(name, value)]``: ECE (15 uniform bins, top-label; every entry of a multilabel
    matrix), Brier score and top-k accuracies (k = 2, 5 below the number of classes),
    from ``logitlab.metrics`` (NumPy only)."""
    from ..metrics import brier_score, expected_calibration_error, top_k_accuracy
    from ._metrics import _indices

    proba = np.asarray(proba, dtype=np.float64)
    target = np.asarray(y) if multilabel else _indices(y, np.asarray(classes), "y_true")
    rows = [("ECE (15 bins)", expected_calibration_error(target, proba)),
            ("Brier score", brier_score(target, proba))]
    if not multilabel:
        rows += [(f"top-{k} accuracy", top_k_accuracy(target, proba, k))
                 for k in (2, 5) if k < proba.shape[1]]
    return rows


def _calibration_report(console, est, temperature, X, y, title, multilabel):
    """ECE, Brier and log loss of ``est``'s probabilities before and after ``temperature``."""
    from ..metrics import brier_score, expected_calibration_error
    from ._calibrate import calibration_targets, logits_of, proba_from_logits
    from ._metrics import log_loss

    z = logits_of(est, X)
    target = calibration_targets(est, y, multilabel)
    table = Table(title=title)
    for col in ("metric", "before", "after"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    values = {}
    for when, t in (("before", 1.0), ("after", temperature)):
        p = proba_from_logits(z, t, multilabel)
        if multilabel:
            q = np.clip(p, 1e-15, 1 - 1e-15)
            nll = float(-np.mean(target * np.log(q) + (1 - target) * np.log1p(-q)))
        else:
            nll = log_loss(y, p, labels=est.classes_)
        values[when] = [expected_calibration_error(target, p), brier_score(target, p), nll]
    for i, name in enumerate(("ECE (15 bins)", "Brier score",
                              "log loss (mean binary)" if multilabel else "log loss")):
        table.add_row(name, f"{values['before'][i]:.4f}", f"{values['after'][i]:.4f}")
    console.print(table)


class _SaveEachEpoch(Callback):
    """After every epoch, write the model file (atomically), so a killed run can --resume.

    Given to ``MLPClassifier(callbacks=...)``, which has its ``loss_curve_`` and
    ``n_iter_`` current when a callback's ``on_epoch_end`` runs.
    """

    def __init__(self, est, path, extra, extra_arrays):
        self.est, self.path, self.extra, self.extra_arrays = est, path, extra, extra_arrays

    def on_epoch_end(self, epoch, logs=None):
        from ..estimators import save_estimator

        save_estimator(self.est, self.path, extra=self.extra, extra_arrays=self.extra_arrays)


#: the fraction of the training rows ``--calibrate`` holds out to fit the temperature
CALIBRATION_SPLIT = 0.2


def run_train(data, target, model, hidden, epochs, batch_size, learning_rate, validation_split,
              multilabel, seed, output, C, resume=None, calibrate=False, labels=None,
              epochs_typed=False, max_iter=1000, max_iter_typed=False):
    console = _console()
    previous = None
    if multilabel and len(set(multilabel)) < len(multilabel):
        twice = next(c for c in multilabel if multilabel.count(c) > 1)
        raise DataError(f"--multilabel names the column {twice!r} twice")
    if multilabel and len(multilabel) < 2:
        raise DataError(f"--multilabel takes two or more 0/1 label columns; for the one column "
                        f"{multilabel[0]!r} use --target {multilabel[0]}")
    if multilabel and target:
        raise DataError(f"give the labels either with --target {target} or with --multilabel "
                        f"{','.join(multilabel)}, not both")
    if resume:
        from .._io import remove_stale_temporaries

        remove_stale_temporaries(resume)  # the half-written save of the run that was killed
        previous, extra, arrays = _load(resume)
        saved_target, saved_multilabel = _label_columns(extra)
        if (target and target != saved_target) or (multilabel and multilabel != saved_multilabel):
            raise DataError(f"--resume {resume} was trained on the labels "
                            f"{saved_target or ','.join(saved_multilabel or [])!r}; got "
                            f"{target or ','.join(multilabel)!r}")
        target, multilabel = saved_target, saved_multilabel
        if type(previous).__name__ == "MLPClassifier":
            if max_iter_typed:
                raise DataError(f"--max-iter applies to --model softmax; --resume {resume} "
                                "holds an mlp, which goes on by --epochs")
            if epochs <= previous.model_.epoch:
                raise DataError(f"--epochs {epochs}: --resume {resume} has trained "
                                f"{previous.model_.epoch} epochs already; give more to go on")
        elif epochs_typed:
            raise DataError(f"--epochs applies to --model mlp; --resume {resume} holds a "
                            "softmax regression, which goes on to convergence")
        seed, validation_split = extra.get("seed", seed), extra.get("validation_split", validation_split)
        model = "mlp" if type(previous).__name__ == "MLPClassifier" else "softmax"
    if labels is not None:
        if multilabel:
            raise DataError("--labels gives one label per row; it cannot be used with --multilabel")
        target = None  # the labels are not a column of the data file
    elif not target and not multilabel:
        raise DataError("give the label column with --target COLUMN (or --multilabel COL,COL, "
                        "or --labels FILE.npy)")
    if multilabel and model != "mlp":
        raise DataError("--multilabel needs --model mlp (sigmoid outputs)")
    table = read_table(data, target=target, multilabel=multilabel)
    if labels is not None:
        table.y, table.target = read_labels(labels, table.X.shape[0]), None
    X, y = table.X, table.y
    if previous is not None and not multilabel:
        unknown = np.setdiff1d(np.unique(y), previous.classes_)
        if unknown.size:
            raise DataError(f"{data} holds labels the model in --resume does not know: "
                            f"{_few(unknown.tolist(), 5)} (it knows "
                            f"{_few(previous.classes_.tolist(), 5)}); train a new model")
    sparse = _is_sparse(X)
    if sparse and model == "mlp":
        raise _dense_only("MLPClassifier", data)
    # scikit-learn loads after the data is read: a mistake in the data is said at once
    from sklearn.model_selection import train_test_split

    from ..estimators import MLPClassifier, SoftmaxRegression, save_estimator

    stratify = None
    if not multilabel:
        _, counts = np.unique(y, return_counts=True)
        if len(counts) < 2:
            raise DataError(f"the target {target!r} holds a single class; nothing to learn")
        if counts.min() >= 2 and validation_split > 0:
            stratify = y
    if validation_split > 0:
        try:
            X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=validation_split,
                                                      random_state=seed, stratify=stratify)
        except ValueError as exc:  # too few rows for the split (or for one row a class)
            raise DataError(f"--validation-split {validation_split:g} of {len(y)} rows: "
                            f"{str(exc).rstrip('.')}; use more rows or --validation-split 0"
                            ) from None
    else:
        X_tr, X_va, y_tr, y_va = X, X, y, y
    if not multilabel and len(np.unique(y_tr)) < 2:
        raise DataError(f"--validation-split {validation_split:g} of {len(y)} rows leaves the "
                        f"training rows a single class ({np.unique(y_tr).tolist()[0]!r}); use "
                        "more rows or --validation-split 0")
    if calibrate:  # a part of the training rows the model never sees, for the temperature
        if resume:
            raise DataError("--calibrate calibrates a new model; it cannot be used with --resume")
        strat = None
        if not multilabel and np.unique(y_tr, return_counts=True)[1].min() >= 2:
            strat = y_tr
        try:
            X_tr, X_cal, y_tr, y_cal = train_test_split(
                X_tr, y_tr, test_size=CALIBRATION_SPLIT, random_state=seed, stratify=strat)
        except ValueError as exc:
            raise DataError(f"--calibrate holds out {CALIBRATION_SPLIT:.0%} of the training rows: "
                            f"{exc}") from None
    if sparse:  # scaled, not centred: with its free intercept the fitted model is the same
        mean, scale = np.zeros(X.shape[1]), _sparse_column_std(X_tr)
    else:
        mean, scale = X_tr.mean(axis=0), X_tr.std(axis=0)
    scale[scale == 0] = 1.0
    extra_out = {"features": table.features, "target": table.target,
                 "multilabel": list(multilabel) if multilabel else None,
                 "seed": seed, "validation_split": validation_split}
    arrays_out = {"mean": mean, "scale": scale}
    if previous is not None:
        arrays_out = {"mean": arrays["mean"], "scale": arrays["scale"]}
        if list(extra["features"]) != list(table.features):
            raise DataError(f"the features of {data} differ from those the model was trained on")
        mean, scale, est = arrays["mean"], arrays["scale"], previous
        if sparse and np.any(mean != 0):
            raise DataError(f"{resume} centres its features (it was trained on dense data), and "
                            f"{data} is sparse: resuming would densify it")
        if model == "mlp":
            est.set_params(epochs=epochs, verbose=1,
                           callbacks=[_SaveEachEpoch(est, output, extra_out, arrays_out)])
            console.print(f"resuming {resume} at epoch {est.model_.epoch + 1} of {epochs}",
                          soft_wrap=True)
            est.resume_fit(_scale(X_tr, mean, scale), y_tr)
        else:
            est.set_params(warm_start=True, verbose=1, max_iter=max_iter).fit(
                _scale(X_tr, mean, scale), y_tr)
    elif model == "softmax":
        est = SoftmaxRegression(C=C, max_iter=max_iter, verbose=1)
    else:
        est = MLPClassifier(hidden_layer_sizes=hidden, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, random_state=seed, verbose=1)
        est.set_params(callbacks=[_SaveEachEpoch(est, output, extra_out, arrays_out)])
    if previous is None:
        console.print(f"training {type(est).__name__} on {X_tr.shape[0]} rows"
                      f"{' (sparse)' if sparse else ''}, {len(table.features)} features: "
                      f"{escape(_few(table.features, 12))}",
                      soft_wrap=True)
        est.fit(_scale(X_tr, mean, scale), y_tr)
    label_names = list(multilabel) if multilabel else None
    if getattr(est, "stop_reason_", None):
        console.print(escape(est.stop_reason_), soft_wrap=True)
    title = "validation" if validation_split > 0 else "training data (no validation split)"
    reported = est
    if calibrate:
        from ._calibrate import Calibrated, fit_temperature

        temperature = fit_temperature(est, _scale(X_cal, mean, scale), y_cal, bool(multilabel))
        arrays_out["temperature"] = temperature
        shown = ", ".join(f"{t:.4g}" for t in temperature)
        console.print(f"temperature fitted on {X_cal.shape[0]} held-out training rows: T = {shown}",
                      soft_wrap=True)
        _calibration_report(console, est, temperature, _scale(X_va, mean, scale), y_va,
                            f"calibration, {title}: {X_va.shape[0]} rows", bool(multilabel))
        reported = Calibrated(est, temperature, bool(multilabel))
    metrics_report(console, reported, _scale(X_va, mean, scale), y_va,
                   f"{title}: {X_va.shape[0]} rows", label_names=label_names)
    save_estimator(est, output, extra=extra_out, extra_arrays=arrays_out)
    console.print(f"saved the model to {escape(str(output))}", soft_wrap=True)


def _load(model_path, predict_only=False):
    from ..estimators import load_estimator

    try:
        est, extra, arrays = load_estimator(model_path, predict_only=predict_only)
    except ModelFileError as exc:
        raise DataError(str(exc)) from None
    if "features" not in extra or "mean" not in arrays:
        raise DataError(f"{model_path} is a logitlab model but was not written by `logitlab train`")
    # the scaling `logitlab train` stored beside the estimator, checked as load_estimator
    # checks the estimator's own arrays
    n = est.n_features_in_
    features = extra["features"]
    if not isinstance(features, list) or len(features) != n \
            or not all(isinstance(f, str) for f in features):
        raise DataError(f"{model_path}: the model's 'features' must be {n} column names")
    try:
        check_array(arrays, "mean", (n,), str(model_path), label="extra/mean")
        check_array(arrays, "scale", (n,), str(model_path), positive=True, label="extra/scale")
    except ModelFileError as exc:
        raise DataError(str(exc)) from None
    if predict_only:  # a temperature stored by `train --calibrate` (a resumed model drops it)
        from ._calibrate import with_stored_temperature

        try:
            est = with_stored_temperature(est, arrays, str(model_path),
                                          bool(extra.get("multilabel")))
        except ModelFileError as exc:
            raise DataError(str(exc)) from None
    return est, extra, arrays


def _label_columns(extra):
    if extra.get("multilabel"):
        return None, extra["multilabel"]
    return extra.get("target"), None


def _read_for_model(data, extra, require_target):
    target, multilabel = _label_columns(extra)
    # The label column(s) may be present (they are ignored) or absent, or, where no labels
    # are needed, present but not readable (a column left empty to be filled in).
    try:
        return read_table(data, target=target, multilabel=multilabel, features=extra["features"])
    except MissingLabels:  # a CSV without the label column, an .npz without the labels
        if require_target:
            raise
        return read_table(data, features=extra["features"])
    except BadLabels:
        if require_target:
            raise
        return read_table(data, target=target, multilabel=multilabel, features=extra["features"],
                          parse_labels=False)


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP "CSV Injection"; ASVS 1.2.10 adds NUL); a plain number is not, and stays as it is.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\0")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def formula_safe(cell):
    """``cell`` as spreadsheet-safe text: a string starting with = + - @ tab, CR or NUL
    (and not a plain number such as ``-1``) gets a leading single quote, which a
    spreadsheet reads as "this is text" (OWASP's advice). Other values are returned as
    they are."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START) \
            and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def run_predict(model_path, data, proba, output):
    est, extra, arrays = _load(model_path, predict_only=True)  # no scikit-learn
    table = _read_for_model(data, extra, require_target=False)
    est, X = _model_input(est, table.X, arrays["mean"], arrays["scale"], data)
    pred = est.predict(X)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    multilabel = extra.get("multilabel")
    header = list(multilabel) if multilabel else ["prediction"]
    P = est.predict_proba(X) if proba else None
    if proba:
        names = multilabel if multilabel else [str(c) for c in est.classes_]
        header += [f"proba_{n}" for n in names]
    writer.writerow([formula_safe(h) for h in header])
    for i in range(X.shape[0]):
        row = list(pred[i]) if multilabel else [formula_safe(pred[i])]
        if proba:
            row += [repr(float(v)) for v in P[i]]
        writer.writerow(row)
    text = buf.getvalue()
    if output:
        with atomic_write(output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        _console().print(f"wrote {X.shape[0]} predictions to {escape(str(output))}", soft_wrap=True)
    else:
        sys.stdout.write(text)


def run_evaluate(model_path, data, target, plot=None, labels=None):
    est, extra, arrays = _load(model_path, predict_only=True)  # no scikit-learn
    if labels is not None:
        if extra.get("multilabel"):  # (with --target too: refused by the command, _main)
            raise DataError("--labels gives one label per row; it cannot score a multilabel "
                            "model")
        extra = dict(extra, target=None)
    elif extra.get("multilabel"):
        target = None
    elif target is not None and target != extra.get("target"):
        extra = dict(extra, target=target)
    elif not extra.get("target"):
        raise DataError(f"{model_path} was trained with --labels: give the labels of {data} with "
                        "--labels FILE.npy (or --target COLUMN)")
    table = _read_for_model(data, extra, require_target=labels is None)
    if labels is not None:
        table.y, table.target = read_labels(labels, table.X.shape[0]), "labels"
    est, X = _model_input(est, table.X, arrays["mean"], arrays["scale"], data)
    y = table.y
    if not extra.get("multilabel"):
        where = (f"the labels in {labels}" if labels is not None
                 else f"the column {table.target!r} of {data}")
        y = _as_model_labels(y, est.classes_, where)
    console = _console()
    proba = est.predict_proba(X)
    label_names = extra.get("multilabel") or None
    metrics_report(console, est, X, y, f"{data}: {X.shape[0]} rows", proba=proba,
                   label_names=label_names)
    if plot is not None:
        # a file name's undecodable bytes (kept by Python as lone surrogates) as U+FFFD: the
        # figure's font cannot draw a surrogate (matplotlib raised inside savefig)
        title = os.fsencode(data).decode("utf-8", "replace")
        _write_reliability_plot(plot, est, y, proba, title, bool(label_names))
        console.print(f"wrote the reliability diagram to {escape(str(plot))}", soft_wrap=True)


def _write_reliability_plot(path, est, y, proba, title, multilabel):
    """The reliability diagram of ``proba`` to ``path`` (PNG), atomically; matplotlib
    is imported here only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..metrics import plot_reliability_diagram

    target = np.asarray(y) if multilabel else np.searchsorted(est.classes_, y)
    fig = plot_reliability_diagram(target, proba)
    fig.suptitle(title)
    try:
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110)
    finally:
        plt.close(fig)


def _as_model_labels(y, classes, where):
    """The labels of ``data`` as the model's classes: text compared as text, as written.

    A file whose labels are all integers may be scored by a model trained on
    text labels (``007`` and ``7``): its labels are then the same text.
    """
    if classes.dtype.kind in "US" and y.dtype.kind not in "US":
        y = y.astype(str)
    unseen = ~np.isin(y, classes)
    if unseen.any():
        names = ", ".join(repr(str(v)) for v in np.unique(y[unseen])[:5])
        raise DataError(f"{where}: classes the model was not trained on: {names}")
    return y


def _csv_header(path):
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [h.strip() for h in next(csv.reader(fh), [])]


def run_train_dask(data, target, validation_split, seed, output, C, scheduler, blocksize,
                   max_iter=1000):
    """Softmax regression on a CSV read in chunks by Dask (local cluster or ``scheduler``)."""
    try:
        import dask
        import dask.dataframe as dd
        import distributed
    except ImportError:
        raise DataError("--engine dask needs the dask extra: pip install 'logitlab[dask]'") from None
    import os

    from ..estimators import SoftmaxRegression, save_estimator

    console = _console()
    if not target:
        raise DataError("give the label column with --target COLUMN")
    if not os.path.isfile(data):
        raise DataError(f"no such file: {data}")
    if os.path.getsize(data) == 0:
        raise DataError(f"{data} is empty: expected a header row and data rows")
    if scheduler:
        try:
            client = distributed.Client(scheduler)
        except (OSError, ValueError) as exc:  # nothing answers there (after Dask's connect
            # timeout, 30 s by default), or not an address such as tcp://host:8786
            raise DataError(f"--scheduler {scheduler}: no Dask scheduler to join there ({exc})") \
                from None
    else:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    with client:
        console.print(f"Dask scheduler: {client.scheduler.address}", soft_wrap=True)
        header = _csv_header(data)
        if target not in header:
            raise DataError(f"no column {target!r} in {data}; the columns are: "
                            f"{_few([h for h in header if h])}")
        # the labels as text, exactly as written (a missing one is NaN), decided below
        ddf = dd.read_csv(data, blocksize=blocksize, dtype={target: str})
        if header[0] == "" and len(header) > 1:
            from ._data import _warn

            _warn(f"{data}: dropped the first column: its header is empty, as pandas writes an "
                  "index (save with df.to_csv(path, index=False) to avoid this)")
            ddf = ddf.drop(columns=ddf.columns[0])
        features = [c for c in ddf.columns if c != target]
        for col in features:
            if ddf[col].dtype.kind not in "biuf":
                raise DataError(f"column {col!r} of {data} is not numeric (read as {ddf[col].dtype})")
        train, valid = ddf.random_split([1.0 - validation_split, validation_split],
                                        random_state=seed)
        mean, std, written = dask.compute(train[features].mean(), train[features].std(ddof=0),
                                          ddf[target].unique())
        if written.isna().any():
            raise DataError(f"the label column {target!r} of {data} has an empty or missing cell")
        if labels_as_written([str(v) for v in written], None, target, data).dtype.kind == "i":
            ddf = ddf.astype({target: "int64"})  # every label an integer written as one
            train, valid = ddf.random_split([1.0 - validation_split, validation_split],
                                            random_state=seed)
        mean, scale = mean.to_numpy(float).copy(), std.to_numpy(float).copy()
        scale[scale == 0] = 1.0
        X = ((train[features] - mean) / scale).to_dask_array(lengths=True)
        y = train[target].to_dask_array(lengths=True)
        console.print(f"training SoftmaxRegression on {X.shape[0]} rows in {X.numblocks[0]} "
                      f"chunks, {len(features)} features")
        est = SoftmaxRegression(C=C, max_iter=max_iter, verbose=1).fit(X, y)
        Xv = ((valid[features] - mean) / scale).to_dask_array(lengths=True)
        yv, proba = dask.compute(valid[target].to_dask_array(lengths=True), est.predict_proba(Xv))
    pred = est.classes_[np.argmax(proba, axis=1)]
    metrics_report(console, est, None, np.asarray(yv), f"validation: {len(yv)} rows",
                   pred=pred, proba=proba)
    save_estimator(est, output, extra={"features": features, "target": target, "multilabel": None,
                                       "seed": seed, "validation_split": validation_split},
                   extra_arrays={"mean": mean, "scale": scale})
    console.print(f"saved the model to {escape(str(output))}", soft_wrap=True)
