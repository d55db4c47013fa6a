"""Calibration metrics: binned calibration errors, the Brier score, log loss from logits, top-k.

Three kinds of input, told apart by shapes:

* multiclass: ``proba`` of shape (n_samples, n_classes), ``y_true`` integer labels
  of shape (n_samples,). Calibration is *top-label*: the confidence of a row is its
  largest probability, and it is "right" when that class is the label.
* binary: ``proba`` of shape (n_samples,) (or (n_samples, 1)), the probability of
  class 1; ``y_true`` 0/1. Calibration is of that probability against the frequency
  of class 1 (scikit-learn's ``calibration_curve``, torchmetrics'
  ``BinaryCalibrationError``).
* multilabel: ``proba`` and ``y_true`` of the same shape (n_samples, n_labels),
  ``y_true`` 0/1; every entry counts as one binary prediction.

Binning (all functions here): ``n_bins`` bins with edges ``e_0 = 0 < e_1 < ... <
e_n = 1`` (``strategy="uniform"``: ``e_k = k / n``; ``"quantile"``: the
``k / n`` quantiles of the confidences, NumPy's linear interpolation, as
``np.percentile``). Bin ``k`` holds the confidences ``c`` with ``e_k < c <= e_{k+1}``,
and the first bin also holds ``c = e_0``: a confidence on an edge joins the bin
*below* it. This is the convention of Guo et al. (2017), ``I_m = ((m-1)/M, m/M]``,
and of scikit-learn's ``calibration_curve`` (``np.searchsorted(edges[1:-1], c)``).
torchmetrics' ``CalibrationError`` differs at the edges only: it bins ``[e_k,
e_{k+1})`` (``torch.bucketize(c, edges, right=True) - 1``), so an edge value joins
the bin above, and a confidence of exactly 1 gets an extra bin of its own; it also
casts the confidences to float32. Off the edges the two agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._softmax import log_sigmoid, log_softmax
from .._validation import (
    as_float_array,
    check_choice,
    check_finite,
    check_integer_labels,
    check_number,
    check_probabilities,
    describe,
    warn_if_one_hot,
    warn_if_probabilities,
)

__all__ = [
    "ReliabilityCurve",
    "brier_score",
    "classwise_calibration_error",
    "expected_calibration_error",
    "log_loss_from_logits",
    "reliability_curve",
    "top_k_accuracy",
]

_STRATEGIES = ("uniform", "quantile")
_NORMS = ("l1", "l2", "max")


class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of a reliability diagram (see :func:`reliability_curve`)."""

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    edges: np.ndarray


def _binary_labels(y, name, shape):
    arr, _ = as_float_array(y, name)
    if arr.shape != shape:
        raise ValueError(
            f"`{name}` must have the shape of the probabilities, {shape}; got shape {arr.shape}"
        )
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"`{name}` must hold 0/1 targets; got values other than 0 and 1")
    return arr


def _kind(y_true, scores, name):
    """``("multiclass" | "binary" | "multilabel", y, scores)`` with ``scores`` in float64."""
    s, _ = as_float_array(scores, name, min_ndim=1)
    s = s.astype(np.float64, copy=False)
    if s.ndim > 2:
        raise ValueError(f"`{name}` must be 1-D or 2-D; got shape {s.shape}")
    if len(s) == 0:
        raise ValueError(f"`{name}` must hold at least one sample; got shape {s.shape}")
    check_finite(s, name)
    y_shape = np.shape(y_true)
    if s.ndim == 2 and y_shape == s.shape and s.shape[1] > 1:
        y = _binary_labels(y_true, "y_true", s.shape)
        warn_if_one_hot(y, "y_true")
        return "multilabel", y, s
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim == 1:
        return "binary", _binary_labels(y_true, "y_true", s.shape), s
    y = check_integer_labels(y_true, "y_true", s.shape[1])
    if y.shape != s.shape[:1]:
        raise ValueError(
            f"`y_true` must hold one integer label per row of `{name}` (shape {s.shape[:1]}), "
            f"or 0/1 indicators of `{name}`'s shape {s.shape}; got shape {y.shape}"
        )
    return "multiclass", y, s


def _confidences(y_true, proba):
    """Confidences and the 0/1 outcomes they predict, flat."""
    kind, y, p = _kind(y_true, proba, "proba")
    check_probabilities(p, "proba", rows_sum_to_one=kind == "multiclass")
    if kind == "multiclass":
        return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    return p.ravel(), y.ravel()


def _check_bins(n_bins, strategy):
    check_number(n_bins, "n_bins", low=1, integer=True)
    check_choice(strategy, _STRATEGIES, "strategy")


def _curve(conf, outcome, n_bins, strategy):
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.percentile(conf, np.linspace(0.0, 1.0, n_bins + 1) * 100)
        edges[0], edges[-1] = 0.0, 1.0  # every confidence lies inside [0, 1]
    # bin k holds e_k < c <= e_{k+1} (and c = 0 in the first): an edge joins the bin below
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_out = np.bincount(idx, weights=outcome, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: NaN, as 0/0 is
        return ReliabilityCurve(sum_conf / count, sum_out / count, count, edges)


def _calibration_error(curve, norm, n):
    filled = curve.count > 0
    gap = np.abs(curve.accuracy[filled] - curve.confidence[filled])
    weight = curve.count[filled] / n
    if norm == "l1":
        return float(np.sum(weight * gap))
    if norm == "l2":
        return float(np.sqrt(np.sum(weight * gap**2)))
    return float(np.max(gap))


def reliability_curve(y_true, proba, n_bins=15, strategy="uniform"):
    r"""Per-bin mean confidence, accuracy and count: the data of a reliability diagram.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_labels)
        Integer class labels (multiclass), 0/1 (binary), or a 0/1 indicator
        matrix of ``proba``'s shape (multilabel).
    proba : array-like of shape (n_samples, n_classes), (n_samples,) or (n_samples, n_labels)
        Predicted probabilities (rows summing to 1 for multiclass).
    n_bins : int, default=15
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins, or bins holding equal numbers of confidences.

    Returns
    -------
    curve : ReliabilityCurve
        Named tuple of arrays ``confidence`` (mean confidence of each bin),
        ``accuracy`` (fraction of its predictions that are right: for binary and
        multilabel input, the fraction of 1s), ``count`` (samples in it), each of
        shape (n_bins,), and ``edges`` of shape (n_bins + 1,). Empty bins have
        count 0 and NaN confidence and accuracy.

    Notes
    -----
    With :math:`c_i` the confidence of prediction :math:`i` (the largest
    probability of a multiclass row; the probability of class 1 otherwise),
    :math:`o_i \in \{0, 1\}` its outcome and :math:`B_k = \{i : e_k < c_i \le
    e_{k+1}\}` (with :math:`c_i = 0` in :math:`B_0`),

    .. math::

        \operatorname{conf}_k = \frac{1}{|B_k|}\sum_{i \in B_k} c_i, \qquad
        \operatorname{acc}_k = \frac{1}{|B_k|}\sum_{i \in B_k} o_i .

    On binary input the non-empty bins equal scikit-learn's
    ``calibration_curve(y_true, proba, n_bins=n_bins, strategy=strategy)``,
    which drops the empty bins. See the module docstring for the edge convention.

    See Also
    --------
    expected_calibration_error, plot_reliability_diagram

    Examples
    --------
    >>> from logitlab.metrics import reliability_curve
    >>> curve = reliability_curve([0, 1, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]],
    ...                           n_bins=2)
    >>> curve.confidence, curve.accuracy, curve.count
    (array([ nan, 0.75]), array([ nan, 0.75]), array([0, 4]))
    """
    _check_bins(n_bins, strategy)
    conf, outcome = _confidences(y_true, proba)
    return _curve(conf, outcome, n_bins, strategy)


def expected_calibration_error(y_true, proba, *, n_bins=15, strategy="uniform", norm="l1"):
    r"""Expected calibration error (top-label for multiclass): how far confidence is from accuracy.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_labels)
        As in :func:`reliability_curve`.
    proba : array-like of shape (n_samples, n_classes), (n_samples,) or (n_samples, n_labels)
        Predicted probabilities.
    n_bins : int, default=15
    strategy : {"uniform", "quantile"}, default="uniform"
    norm : {"l1", "l2", "max"}, default="l1"
        ``"l1"`` is the ECE, ``"l2"`` the root-mean-square calibration error,
        ``"max"`` the maximum calibration error (MCE).

    Returns
    -------
    error : float

    Notes
    -----
    With the bins of :func:`reliability_curve` and :math:`n` predictions,

    .. math::

        \mathrm{ECE} = \sum_k \frac{|B_k|}{n}\,|\operatorname{acc}_k - \operatorname{conf}_k|,
        \quad
        \mathrm{RMSCE} = \Bigl(\sum_k \frac{|B_k|}{n}(\operatorname{acc}_k -
        \operatorname{conf}_k)^2\Bigr)^{1/2},
        \quad
        \mathrm{MCE} = \max_{k:\,B_k \ne \emptyset} |\operatorname{acc}_k - \operatorname{conf}_k| .

    With uniform bins these equal torchmetrics' ``MulticlassCalibrationError``
    (``BinaryCalibrationError`` for binary input) with ``norm="l1"``, ``"l2"``,
    ``"max"`` whenever no confidence lies on a bin edge (see the module docstring
    for the edges).

    References
    ----------
    Naeini, Cooper and Hauskrecht, "Obtaining well calibrated probabilities using
    Bayesian binning", AAAI 2015. Guo, Pleiss, Sun and Weinberger, "On calibration
    of modern neural networks", ICML 2017.

    See Also
    --------
    classwise_calibration_error, reliability_curve

    Examples
    --------
    >>> from logitlab.metrics import expected_calibration_error
    >>> proba = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]
    >>> round(expected_calibration_error([0, 1, 1, 0], proba, n_bins=4), 6)
    0.15
    """
    _check_bins(n_bins, strategy)
    check_choice(norm, _NORMS, "norm")
    conf, outcome = _confidences(y_true, proba)
    return _calibration_error(_curve(conf, outcome, n_bins, strategy), norm, len(conf))


def classwise_calibration_error(y_true, proba, *, n_bins=15, strategy="uniform", norm="l1"):
    r"""Class-wise calibration error: every class's probability against its frequency, averaged.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer class labels.
    proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, rows summing to 1.
    n_bins, strategy, norm
        As in :func:`expected_calibration_error`.

    Returns
    -------
    error : float

    Notes
    -----
    With :math:`\mathrm{CE}_j` the binary calibration error (in ``norm``) of
    the probabilities :math:`p_{ij}` against :math:`[y_i = j]`, binned as in
    :func:`reliability_curve`,

    .. math::

        \text{classwise-CE} = \frac{1}{C}\sum_{j=1}^{C} \mathrm{CE}_j .

    It equals the mean over classes of torchmetrics' ``BinaryCalibrationError``
    of each column (off the bin edges).

    References
    ----------
    Kull, Perello-Nieto, Kängsepp, Silva Filho, Song and Flach, "Beyond temperature
    scaling: obtaining well-calibrated multiclass probabilities with Dirichlet
    calibration", NeurIPS 2019.

    See Also
    --------
    expected_calibration_error

    Examples
    --------
    >>> from logitlab.metrics import classwise_calibration_error
    >>> proba = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]
    >>> round(classwise_calibration_error([0, 1, 1, 0], proba, n_bins=4), 6)
    0.15
    """
    _check_bins(n_bins, strategy)
    check_choice(norm, _NORMS, "norm")
    kind, y, p = _kind(y_true, proba, "proba")
    if kind != "multiclass":
        raise ValueError(
            "`proba` must be of shape (n_samples, n_classes) with integer labels in `y_true` "
            f"for a class-wise error; got {describe(p)} (use expected_calibration_error)"
        )
    check_probabilities(p, "proba", rows_sum_to_one=True)
    errors = [
        _calibration_error(_curve(p[:, j], (y == j).astype(np.float64), n_bins, strategy),
                           norm, len(y))
        for j in range(p.shape[1])
    ]
    return float(np.mean(errors))


def brier_score(y_true, proba):
    r"""The Brier score: mean squared distance between probabilities and outcomes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_labels)
        Integer labels (multiclass), 0/1 (binary) or a 0/1 indicator matrix (multilabel).
    proba : array-like of shape (n_samples, n_classes), (n_samples,) or (n_samples, n_labels)

    Returns
    -------
    score : float
        In [0, 2] for multiclass, [0, 1] for binary and multilabel.

    Notes
    -----
    Multiclass (Brier's original definition, scikit-learn's ``brier_score_loss``
    with ``scale_by_half=False``), with :math:`e_{y}` the one-hot row:

    .. math::

        \mathrm{BS} = \frac{1}{n}\sum_i \sum_j (p_{ij} - [y_i = j])^2 .

    Binary: :math:`\frac{1}{n}\sum_i (p_i - y_i)^2` (``brier_score_loss``'s
    default). Multilabel: the binary score of every entry, averaged over samples
    and labels (the mean of the labels' binary scores).

    References
    ----------
    Brier, "Verification of forecasts expressed in terms of probability",
    Monthly Weather Review 78, 1950.

    Examples
    --------
    >>> from logitlab.metrics import brier_score
    >>> round(brier_score([0, 1], [[0.75, 0.25], [0.5, 0.5]]), 6)
    0.3125
    """
    kind, y, p = _kind(y_true, proba, "proba")
    check_probabilities(p, "proba", rows_sum_to_one=kind == "multiclass")
    if kind == "multiclass":
        d = p.copy()
        d[np.arange(len(y)), y] -= 1.0
        return float(np.mean(np.sum(d * d, axis=1)))
    return float(np.mean((p - y) ** 2))


def log_loss_from_logits(y_true, logits):
    r"""Mean negative log-likelihood computed from logits, exactly (nothing clipped).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_labels)
        Integer labels for logits of shape (n_samples, n_classes); 0/1 for one
        column of logits (binary, sigmoid); a 0/1 indicator matrix of the
        logits' shape (multilabel, sigmoid per label).
    logits : array-like of shape (n_samples, n_classes), (n_samples,) or (n_samples, n_labels)
        Unnormalised scores.

    Returns
    -------
    loss : float

    Notes
    -----
    Multiclass, with the max-shifted :func:`logitlab.log_softmax`:

    .. math::

        \mathrm{NLL} = -\frac{1}{n}\sum_i \log\operatorname{softmax}(z_i)_{y_i}
                     = \frac{1}{n}\sum_i \Bigl(\operatorname{logsumexp}(z_i) - z_{i y_i}\Bigr).

    Binary and multilabel, with :math:`\log\sigma(z) = -\log(1 + e^{-z})`
    (:func:`logitlab.log_sigmoid`), averaged over every entry:
    :math:`-\frac{1}{nL}\sum_{i,l} \bigl(y_{il}\log\sigma(z_{il}) + (1 -
    y_{il})\log\sigma(-z_{il})\bigr)`. Unlike scikit-learn's ``log_loss`` on
    probabilities, a confident mistake costs its full (finite) price.

    See Also
    --------
    logitlab.losses.sparse_categorical_crossentropy

    Examples
    --------
    >>> from logitlab.metrics import log_loss_from_logits
    >>> round(log_loss_from_logits([0, 1], [[2.0, 0.0], [0.0, 40.0]]), 6)
    0.063464
    >>> log_loss_from_logits([1], [[1000.0, 0.0]])  # probability e**-1000: no clipping
    1000.0
    """
    kind, y, z = _kind(y_true, logits, "logits")
    if kind == "multiclass":
        warn_if_probabilities(z, "logits", hint="pass logits, or use scikit-learn's log_loss "
                              "on probabilities")
        logp = log_softmax(z, axis=1)
        return float(-np.mean(logp[np.arange(len(y)), y]))
    # -(y log s(z) + (1 - y) log s(-z)); a 0 weight never multiplies an infinite log
    loss = -(np.where(y > 0, log_sigmoid(z), 0.0) + np.where(y < 1, log_sigmoid(-z), 0.0))
    return float(np.mean(loss))


def top_k_accuracy(y_true, scores, k=5):
    r"""Fraction of samples whose label is among the ``k`` highest scores.

    Parameters
    ----------
    y_true : array-like of int, shape (n_samples,)
    scores : array-like of shape (n_samples, n_classes)
        Logits or probabilities (the ranking is the same).
    k : int, default=5
        ``k >= n_classes`` gives 1.

    Returns
    -------
    accuracy : float

    Notes
    -----
    Sample :math:`i` is a hit when its label's rank :math:`r_i = |\{j : s_{ij} >
    s_{iy_i}\}| + |\{j > y_i : s_{ij} = s_{iy_i}\}|` is below :math:`k`: ties
    go to the higher class index, as in scikit-learn's ``top_k_accuracy_score``
    (a stable sort, reversed), which this equals.

    Examples
    --------
    >>> from logitlab.metrics import top_k_accuracy
    >>> top_k_accuracy([0, 1, 2, 2], [[0.5, 0.2, 0.2], [0.3, 0.4, 0.2],
    ...                               [0.2, 0.4, 0.3], [0.7, 0.2, 0.1]], k=2)
    0.75
    """
    check_number(k, "k", low=1, integer=True)
    s, _ = as_float_array(scores, "scores", min_ndim=2)
    if s.ndim != 2:
        raise ValueError(f"`scores` must be of shape (n_samples, n_classes); got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("`scores` must not hold NaN")
    y = check_integer_labels(y_true, "y_true", s.shape[1])
    if y.shape != (len(s),):
        raise ValueError(
            f"`y_true` must hold one label per row of `scores` ({len(s)}); got shape {y.shape}"
        )
    if len(y) == 0:
        raise ValueError("`scores` must hold at least one sample")
    s_y = s[np.arange(len(y)), y][:, None]
    after = np.arange(s.shape[1])[None, :] > y[:, None]
    rank = np.sum(s > s_y, axis=1) + np.sum((s == s_y) & after, axis=1)
    return float(np.mean(rank < k))
