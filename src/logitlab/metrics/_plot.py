"""Reliability diagrams (matplotlib is imported when one is drawn)."""

from __future__ import annotations

import numpy as np

from .._lazy import whole
from ._calibration import _calibration_error, _check_bins, _confidences, _curve

__all__ = ["plot_reliability_diagram"]


def plot_reliability_diagram(y_true, proba, ax=None, *, n_bins=15, strategy="uniform"):
    """Draw a reliability diagram: accuracy per confidence bin against the diagonal.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_labels)
        As in :func:`reliability_curve`.
    proba : array-like, or dict of str to array-like
        Predicted probabilities; a dict (for example ``{"before": p, "after":
        p_calibrated}``) draws one diagram per entry, side by side, on one figure.
    ax : matplotlib Axes, optional
        Draw into it (one probability set only); the confidence histogram then
        goes on a twin y-axis. Without it a new figure has, per set, the diagram
        above and the histogram of confidences below.
    n_bins : int, default=15
    strategy : {"uniform", "quantile"}, default="uniform"

    Returns
    -------
    fig : matplotlib Figure

    Notes
    -----
    Each bar spans a bin of :func:`reliability_curve` and its height is the bin's
    accuracy (empty bins have no bar); a hatched bar spans the gap from it to the
    bin's mean confidence (Guo et al. 2017), and a perfectly calibrated model's
    bars reach the diagonal. The title gives the
    ECE (:func:`expected_calibration_error`, l1 norm, same bins). The
    histogram shows the fraction of samples in each bin.

    See Also
    --------
    reliability_curve, expected_calibration_error
    """
    with whole("matplotlib", "mpl_toolkits"):  # a Ctrl-C part way: whole at the next call
        import matplotlib.pyplot as plt

    _check_bins(n_bins, strategy)
    sets = dict(proba) if isinstance(proba, dict) else {"": proba}
    if not sets:
        raise ValueError("`proba` must hold at least one set of probabilities; got an empty dict")
    curves = {}
    for name, p in sets.items():
        conf, outcome = _confidences(y_true, p)
        curves[name] = (_curve(conf, outcome, n_bins, strategy), len(conf))
    if ax is not None:
        if len(sets) != 1:
            raise ValueError(
                f"`ax` takes one set of probabilities; got {len(sets)} (pass ax=None for a "
                "figure with one diagram per set)"
            )
        fig = ax.figure
        pairs = [(ax, ax.twinx())]
    else:
        fig, axes = plt.subplots(2, len(sets), figsize=(4.2 * len(sets), 5.2), squeeze=False,
                                 gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
        pairs = [(axes[0, j], axes[1, j]) for j in range(len(sets))]
    for (name, (curve, n)), (top, bottom) in zip(curves.items(), pairs):
        _draw(top, bottom, curve, n, name, twin=ax is not None)
    fig.tight_layout()
    return fig


def _draw(top, bottom, curve, n, name, twin):
    filled = curve.count > 0
    left, width = curve.edges[:-1], np.diff(curve.edges)
    top.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="perfect calibration")
    top.bar(left[filled], curve.accuracy[filled], width=width[filled], align="edge",
            color="#4878cf", edgecolor="black", linewidth=0.5, label="accuracy")
    # Guo et al.'s gap: from the bin's accuracy up (or down) to its mean confidence
    top.bar(left[filled], (curve.confidence - curve.accuracy)[filled], width=width[filled],
            bottom=curve.accuracy[filled], align="edge", color="#d65f5f", alpha=0.35,
            edgecolor="#d65f5f", hatch="//", linewidth=0.5, label="gap to mean confidence")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    ece = _calibration_error(curve, "l1", n)
    top.set_title(f"{name + ': ' if name else ''}ECE = {ece:.4f}")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(left, curve.count / n, width=width, align="edge", color="0.6",
               alpha=0.4 if twin else 1.0, label="samples")
    bottom.set_ylabel("fraction of samples")
    if not twin:
        bottom.set_xlabel("confidence")
        bottom.set_xlim(0, 1)
    else:
        top.set_xlabel("confidence")
