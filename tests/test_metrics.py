"""logitlab.metrics against values recorded from torchmetrics and scikit-learn.

The fixture is written by tests/fixtures/record_calibration_references.py; neither
peer is a test dependency.
"""

from pathlib import Path

import mpmath
import numpy as np
import pytest

from helpers import mp_log_softmax
from logitlab.metrics import (
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    log_loss_from_logits,
    plot_reliability_diagram,
    reliability_curve,
    top_k_accuracy,
)

REF = np.load(Path(__file__).parent / "fixtures" / "calibration_reference.npz", allow_pickle=False)
N_BINS = (5, 10, 15)
NORMS = ("l1", "l2", "max")


# ---- torchmetrics' MulticlassCalibrationError / BinaryCalibrationError -------------

@pytest.mark.parametrize("n_bins", N_BINS)
@pytest.mark.parametrize("norm", NORMS)
def test_ece_matches_torchmetrics_multiclass(n_bins, norm):
    got = expected_calibration_error(REF["mc_y"], REF["mc_proba"], n_bins=n_bins, norm=norm)
    assert abs(got - REF[f"mc_ece_{norm}_{n_bins}"]) <= 1e-7
    assert got > 0.01  # the fixture is miscalibrated: the comparison is not of zeros


@pytest.mark.parametrize("n_bins", N_BINS)
@pytest.mark.parametrize("norm", NORMS)
def test_ece_matches_torchmetrics_binary(n_bins, norm):
    got = expected_calibration_error(REF["bin_y"], REF["bin_proba"], n_bins=n_bins, norm=norm)
    assert abs(got - REF[f"bin_ece_{norm}_{n_bins}"]) <= 1e-7
    # a column of probabilities of class 1 reads the same as a 1-D one
    same = expected_calibration_error(REF["bin_y"], REF["bin_proba"][:, None], n_bins=n_bins,
                                      norm=norm)
    assert same == got


@pytest.mark.parametrize("n_bins", N_BINS)
@pytest.mark.parametrize("norm", NORMS)
def test_classwise_matches_torchmetrics_per_class_mean(n_bins, norm):
    got = classwise_calibration_error(REF["mc_y"], REF["mc_proba"], n_bins=n_bins, norm=norm)
    assert abs(got - REF[f"mc_classwise_{norm}_{n_bins}"]) <= 1e-7


# ---- scikit-learn's calibration_curve (same edge convention) ------------------------

@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [10, 15])
def test_reliability_curve_top_label_matches_sklearn(strategy, n_bins):
    curve = reliability_curve(REF["mc_y"], REF["mc_proba"], n_bins=n_bins, strategy=strategy)
    filled = curve.count > 0
    np.testing.assert_allclose(curve.accuracy[filled],
                               REF[f"mc_curve_{strategy}_{n_bins}_accuracy"], rtol=1e-14)
    np.testing.assert_allclose(curve.confidence[filled],
                               REF[f"mc_curve_{strategy}_{n_bins}_confidence"], rtol=1e-14)
    assert curve.count.sum() == len(REF["mc_y"])
    assert np.isnan(curve.accuracy[~filled]).all()


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_curve_binary_matches_sklearn(strategy):
    curve = reliability_curve(REF["bin_y"], REF["bin_proba"], n_bins=10, strategy=strategy)
    filled = curve.count > 0
    np.testing.assert_allclose(curve.accuracy[filled], REF[f"bin_curve_{strategy}_accuracy"],
                               rtol=1e-14)
    np.testing.assert_allclose(curve.confidence[filled], REF[f"bin_curve_{strategy}_confidence"],
                               rtol=1e-14)


def test_bin_edges_join_the_lower_bin_as_sklearn():
    """0, 1/4, 1/2, 3/4 and 1 with 4 bins: each edge value joins the bin below it."""
    curve = reliability_curve(REF["edge_y"], REF["edge_conf"], n_bins=4)
    np.testing.assert_array_equal(curve.count, [4, 3, 2, 3])  # {0, .25, .25, .1}, ...
    np.testing.assert_allclose(curve.accuracy, REF["edge_accuracy"], rtol=1e-15)
    np.testing.assert_allclose(curve.confidence, REF["edge_confidence"], rtol=1e-15)


def test_ece_from_its_definition():
    """ECE, RMSCE and MCE recomputed from the curve by the docstring's formulas."""
    y, p = REF["mc_y"], REF["mc_proba"]
    curve = reliability_curve(y, p, n_bins=7, strategy="quantile")
    f = curve.count > 0
    w, gap = curve.count[f] / len(y), np.abs(curve.accuracy[f] - curve.confidence[f])
    assert expected_calibration_error(y, p, n_bins=7, strategy="quantile") == \
        pytest.approx(np.sum(w * gap), rel=1e-14)
    assert expected_calibration_error(y, p, n_bins=7, strategy="quantile", norm="l2") == \
        pytest.approx(np.sqrt(np.sum(w * gap**2)), rel=1e-14)
    assert expected_calibration_error(y, p, n_bins=7, strategy="quantile", norm="max") == \
        pytest.approx(gap.max(), rel=1e-14)


def test_perfectly_calibrated_bins_give_zero():
    # in each bin the accuracy equals the confidence exactly
    proba = np.array([[0.75, 0.25]] * 4 + [[0.5, 0.5]] * 2)
    y = np.array([0, 0, 0, 1, 0, 1])
    assert expected_calibration_error(y, proba, n_bins=4) == 0.0


# ---- Brier, top-k, log loss ---------------------------------------------------------

def test_brier_matches_sklearn():
    assert brier_score(REF["mc_y"], REF["mc_proba"]) == pytest.approx(REF["mc_brier"], rel=1e-14)
    assert brier_score(REF["bin_y"], REF["bin_proba"]) == pytest.approx(REF["bin_brier"], rel=1e-14)
    assert brier_score(REF["ml_y"], REF["ml_proba"]) == pytest.approx(REF["ml_brier"], rel=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_matches_sklearn(k):
    assert top_k_accuracy(REF["mc_y"], REF["mc_proba"], k=k) == REF[f"mc_top{k}"]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_k_ties_broken_as_sklearn(k):
    assert top_k_accuracy(REF["tie_y"], REF["tie_scores"], k=k) == REF[f"tie_top{k}"]


def test_top_k_is_one_when_k_covers_every_class():
    assert top_k_accuracy([0, 2], [[0.0, 1.0, 2.0], [5.0, 1.0, 0.0]], k=3) == 1.0


def test_log_loss_matches_sklearn_on_moderate_logits():
    got = log_loss_from_logits(REF["ll_y"], REF["ll_logits"])
    assert got == pytest.approx(REF["ll_value"], rel=1e-12)


def test_log_loss_is_exact_where_probabilities_underflow():
    """mpmath reference: -log softmax(z)_y to 60 digits; sklearn would clip at 1e-15."""
    z = np.array([[800.0, 0.0, -5.0], [0.0, 1e-3, 2.0], [-300.0, 400.0, 399.0]])
    y = np.array([1, 2, 0])
    exact = mpmath.fsum(-mp_log_softmax(row)[label] for row, label in zip(z, y)) / 3
    assert log_loss_from_logits(y, z) == pytest.approx(float(exact), rel=1e-14)
    assert log_loss_from_logits(y, z) > 300


def test_log_loss_binary_and_multilabel_exact():
    z = np.array([-800.0, -3.0, 0.5, 40.0])
    y = np.array([1, 0, 1, 1])
    exact = [mpmath.log1p(mpmath.exp(-mpmath.mpf(v))) if t else mpmath.log1p(mpmath.exp(mpmath.mpf(v)))
             for v, t in zip(z, y)]
    want = float(mpmath.fsum(exact) / 4)
    assert log_loss_from_logits(y, z) == pytest.approx(want, rel=1e-14)
    assert log_loss_from_logits(y, z[:, None]) == pytest.approx(want, rel=1e-14)
    # multilabel: the mean over every entry
    assert log_loss_from_logits(y.reshape(2, 2), z.reshape(2, 2)) == pytest.approx(want, rel=1e-14)


def test_log_loss_warns_on_probabilities():
    with pytest.warns(UserWarning, match="`logits` looks like probabilities"):
        log_loss_from_logits([0, 1], [[0.9, 0.1], [0.3, 0.7]])


# ---- bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: expected_calibration_error([0, 1], [[2.0, -1.0], [0.1, 0.9]]), "`proba` must hold probabilities"),
    (lambda: expected_calibration_error([0, 1], [[0.5, 0.6], [0.1, 0.9]]), "rows summing to 1"),
    (lambda: expected_calibration_error([0, 1], [[0.5, 0.5], [0.1, 0.9]], norm="l3"), "`norm`"),
    (lambda: expected_calibration_error([0, 1], [[0.5, 0.5], [0.1, 0.9]], strategy="x"), "`strategy`"),
    (lambda: expected_calibration_error([0, 1], [[0.5, 0.5], [0.1, 0.9]], n_bins=0), "`n_bins`"),
    (lambda: expected_calibration_error([0, 3], [[0.5, 0.5], [0.1, 0.9]]), "`y_true`"),
    (lambda: expected_calibration_error([0, 1, 1], [[0.5, 0.5], [0.1, 0.9]]), "`y_true`"),
    (lambda: brier_score([0, 2], [0.5, 0.1]), "0/1"),
    (lambda: brier_score([0, 1], [np.nan, 0.1]), "`proba` must be finite"),
    (lambda: log_loss_from_logits([0, 1], [[np.inf, 0.0], [0.0, 1.0]]), "`logits` must be finite"),
    (lambda: top_k_accuracy([0, 1], [[0.5, 0.5], [0.1, 0.9]], k=0), "`k`"),
    (lambda: classwise_calibration_error([0, 1], [0.5, 0.1]), "class-wise"),
    (lambda: reliability_curve([], np.zeros((0, 3))), "at least one sample"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_inputs_are_not_modified():
    p = REF["mc_proba"].copy()
    y = REF["mc_y"].copy()
    brier_score(y, p)
    expected_calibration_error(y, p)
    np.testing.assert_array_equal(p, REF["mc_proba"])
    np.testing.assert_array_equal(y, REF["mc_y"])


# ---- reliability diagram ------------------------------------------------------------

def _accuracy_bars(ax):
    (bars,) = [c for c in ax.containers if c.get_label() == "accuracy"]
    return np.array([b.get_height() for b in bars]), np.array([b.get_x() for b in bars])


def test_reliability_diagram_bars_are_the_curve():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = REF["mc_y"], REF["mc_proba"]
    fig = plot_reliability_diagram(y, p, n_bins=10)
    curve = reliability_curve(y, p, n_bins=10)
    heights, lefts = _accuracy_bars(fig.axes[0])
    filled = curve.count > 0
    np.testing.assert_array_equal(heights, curve.accuracy[filled])
    np.testing.assert_array_equal(lefts, curve.edges[:-1][filled])
    assert f"ECE = {expected_calibration_error(y, p, n_bins=10):.4f}" in fig.axes[0].get_title()
    fig.canvas.draw()  # renders
    plt.close(fig)


def test_reliability_diagram_before_and_after_on_one_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = REF["mc_y"], REF["mc_proba"]
    soft = np.sqrt(p) / np.sqrt(p).sum(axis=1, keepdims=True)
    fig = plot_reliability_diagram(y, {"before": p, "after": soft})
    diagrams = [ax for ax in fig.axes if ax.containers and ax.containers[0].get_label() == "accuracy"]
    assert [ax.get_title().split(":")[0] for ax in diagrams] == ["before", "after"]
    for ax, probs in zip(diagrams, (p, soft)):
        curve = reliability_curve(y, probs)
        np.testing.assert_array_equal(_accuracy_bars(ax)[0], curve.accuracy[curve.count > 0])
    fig.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
    plt.close(fig)
    # into a caller's axes: one set only
    fig, ax = plt.subplots()
    assert plot_reliability_diagram(y, p, ax=ax) is fig
    with pytest.raises(ValueError, match="`ax` takes one set"):
        plot_reliability_diagram(y, {"a": p, "b": p}, ax=ax)
    plt.close(fig)


def test_one_hot_targets_warn_that_they_are_read_as_multilabel():
    p = np.array([[0.8, 0.2], [0.3, 0.7]])
    with pytest.warns(UserWarning, match="`y_true` is one-hot"):
        brier_score(np.eye(2), p)


PLOT_AFTER_AN_INTERRUPT = r"""
import sys
import numpy as np
from logitlab.metrics import plot_reliability_diagram

class Interrupt:  # Ctrl-C in matplotlib's first import: at one of its inner modules
    fired = False
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib.colors" and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return None

rng = np.random.default_rng(0)
p = rng.dirichlet(np.ones(3), size=200)
y = rng.integers(0, 3, 200)
hook = Interrupt()
sys.meta_path.insert(0, hook)
try:
    plot_reliability_diagram(y, p)
except KeyboardInterrupt:
    pass
else:
    raise AssertionError("not interrupted")
sys.meta_path.remove(hook)
fig = plot_reliability_diagram(y, p)
assert hook.fired and len(fig.axes) == 2
print("ok")
"""


def test_a_plot_after_an_interrupted_first_import_of_matplotlib_draws():
    """matplotlib imported again after an interrupt in its first import is broken ("module
    'matplotlib' has no attribute 'get_data_path'"): every later diagram failed. The
    library's first import of it is whole or forgotten (logitlab._lazy.whole)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-c", PLOT_AFTER_AN_INTERRUPT], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
