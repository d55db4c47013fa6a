"""Cross-entropy losses: mpmath, PyTorch and Keras references, gradients, edge cases."""

from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logitlab as ll
from helpers import assert_close_rel, assert_grad_close, mp_log_softmax, numerical_grad
from logitlab.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    sparse_categorical_crossentropy,
)
from logitlab.losses._crossentropy import categorical_ce_value_and_grad, sparse_ce_value_and_grad

FIX = Path(__file__).parent / "fixtures"
TORCH = np.load(FIX / "torch_losses.npz", allow_pickle=False)
KERAS = np.load(FIX / "keras_reference.npz", allow_pickle=False)


# ---- exactness against mpmath ------------------------------------------------

@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 2e-6), (np.float16, 1e-3)])
def test_sparse_ce_from_logits_matches_mpmath(dtype, tol, rng):
    big = {np.float64: 1e300, np.float32: 1e4, np.float16: 6e4}[dtype]
    logits = np.array([[0.0, 50.0, -50.0], [big, -big, 0.0], [-big, big, big / 2],
                       [1.0, 1.0 + 1e-7, 1.0], [3.0, -np.inf, 2.0]], dtype=dtype)
    labels = np.array([1, 0, 0, 2, 2])
    losses = sparse_categorical_crossentropy(labels, logits, from_logits=True, reduction="none")
    assert losses.dtype == dtype
    exact = [-mp_log_softmax(row)[y] for row, y in zip(logits, labels)]
    with np.errstate(over="ignore"):
        expected = np.array([float(e) for e in exact]).astype(dtype).astype(float)
    assert_close_rel(losses, expected, tol)
    assert np.all(np.isfinite(losses) == np.isfinite(expected))


def test_the_obvious_way_loses_what_the_preferred_way_keeps():
    # a confident wrong prediction: softmax then log underflows to -inf
    logits = np.array([[0.0, 800.0]])
    exact = float(-mp_log_softmax(logits[0])[0])
    preferred = sparse_categorical_crossentropy([0], logits, from_logits=True)
    assert_close_rel(preferred, exact, 1e-15)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        naive = -np.log(np.exp(logits) / np.exp(logits).sum())[0, 0]
    assert not np.isfinite(naive)
    # and from probabilities (Keras's clip) the loss saturates at -log(1e-7)
    obvious = sparse_categorical_crossentropy([0], ll.softmax(logits))
    assert abs(obvious - -np.log(1e-7)) < 1e-9


def test_binary_ce_from_logits_matches_mpmath():
    z = np.array([-800.0, -30.0, -1e-9, 0.0, 2.0, 37.0, 800.0])
    for y in (0.0, 1.0, 0.3):
        got = binary_crossentropy(np.full_like(z, y), z, from_logits=True, reduction="none")
        exact = []
        for v in z:
            v = mpmath.mpf(float(v))
            ls = -mpmath.log1p(mpmath.exp(-v))
            lms = -mpmath.log1p(mpmath.exp(v))
            exact.append(float(-(y * ls + (1 - y) * lms)))
        assert_close_rel(got, exact, 1e-14, 1e-300)


# ---- PyTorch's ignore_index, weights and label smoothing ---------------------

@pytest.mark.parametrize("case", ["plain", "ignore", "weight", "smooth", "weight_smooth"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sparse_ce_matches_pytorch(case, reduction):
    labels = TORCH["labels"]
    kw = {}
    if case != "plain":
        kw["ignore_index"] = -100
    else:
        labels = np.where(labels < 0, 0, labels)
    if "weight" in case:
        kw["class_weight"] = TORCH["weight"]
    if "smooth" in case:
        kw["label_smoothing"] = {"smooth": 0.3, "weight_smooth": 0.15}[case]
    loss = SparseCategoricalCrossentropy(from_logits=True, reduction=reduction, **kw)
    value, grad = loss.value_and_grad(labels, TORCH["logits"])
    np.testing.assert_allclose(value, TORCH[f"sparse_{case}_{reduction}"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad, TORCH[f"sparse_{case}_{reduction}_grad"], rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("case", ["plain", "weight", "smooth"])
def test_categorical_ce_with_probability_targets_matches_pytorch(case):
    kw = {"weight": {"class_weight": TORCH["weight"]}, "smooth": {"label_smoothing": 0.2}}.get(case, {})
    value, grad = CategoricalCrossentropy(from_logits=True, **kw).value_and_grad(
        TORCH["probs_target"], TORCH["logits"])
    np.testing.assert_allclose(value, TORCH[f"categorical_{case}"], rtol=1e-12)
    np.testing.assert_allclose(grad, TORCH[f"categorical_{case}_grad"], rtol=1e-10, atol=1e-15)


def test_binary_ce_pos_weight_matches_pytorch():
    value, grad = BinaryCrossentropy(from_logits=True, pos_weight=TORCH["binary_pw"]).value_and_grad(
        TORCH["binary_y"], TORCH["binary_z"])
    np.testing.assert_allclose(value, TORCH["binary_pw_loss"], rtol=1e-12)
    np.testing.assert_allclose(grad, TORCH["binary_pw_grad"], rtol=1e-10, atol=1e-15)


# ---- Keras 3's probability path (normalise, clip, log) -----------------------

@pytest.mark.parametrize("name", ["sparse", "categorical", "categorical_smooth"])
def test_probability_path_matches_keras(name):
    p, y = KERAS["kp_probs"], KERAS["kp_labels"]
    if name == "sparse":
        loss = SparseCategoricalCrossentropy()
        target = y
    else:
        loss = CategoricalCrossentropy(label_smoothing=0.1 if "smooth" in name else 0.0)
        target = np.eye(4)[y]
    value, grad = loss.value_and_grad(target, p)
    np.testing.assert_allclose(value, KERAS[f"kp_{name}"], rtol=1e-6)
    np.testing.assert_allclose(grad, KERAS[f"kp_{name}_grad"], rtol=1e-5, atol=1e-9)


def test_binary_probability_path_matches_keras():
    value, grad = BinaryCrossentropy(label_smoothing=0.1).value_and_grad(
        KERAS["kp_binary_y"], KERAS["kp_binary_p"])
    np.testing.assert_allclose(value, KERAS["kp_binary"], rtol=1e-6)
    np.testing.assert_allclose(grad, KERAS["kp_binary_grad"], rtol=1e-5, atol=1e-9)


# ---- gradients against finite differences ------------------------------------

GRAD_CASES = [
    ("sparse", dict(from_logits=True)),
    ("sparse", dict(from_logits=True, label_smoothing=0.2, class_weight=[1.0, 2.0, 0.5, 1.5])),
    ("sparse", dict(from_logits=True, ignore_index=3, reduction="sum")),
    ("sparse", dict(from_logits=False)),
    ("categorical", dict(from_logits=True, label_smoothing=0.1)),
    ("categorical", dict(from_logits=True, class_weight=[1.0, 2.0, 0.5, 1.5])),
    ("categorical", dict(from_logits=False, label_smoothing=0.1)),
    ("binary", dict(from_logits=True, pos_weight=[1.0, 3.0, 0.5, 2.0])),
    ("binary", dict(from_logits=False, label_smoothing=0.1)),
]


@pytest.mark.parametrize("kind, kw", GRAD_CASES)
def test_gradients_match_central_differences(kind, kw, rng):
    n, c = 5, 4
    labels = rng.integers(0, c, size=n)
    sw = rng.uniform(0.5, 2.0, size=n)
    if kind == "sparse":
        y, cls = labels, SparseCategoricalCrossentropy
    elif kind == "categorical":
        y, cls = rng.dirichlet(np.ones(c), size=n), CategoricalCrossentropy
    else:
        y, cls = (rng.uniform(size=(n, c)) > 0.5).astype(float), BinaryCrossentropy
    if kw.get("from_logits"):
        x = rng.normal(0, 2, size=(n, c))
    else:
        x = rng.uniform(0.05, 0.95, size=(n, c))
        if kind != "binary":
            x /= x.sum(-1, keepdims=True) * rng.uniform(0.7, 1.3, size=(n, 1))
    loss = cls(**kw)
    _, grad = loss.value_and_grad(y, x, sample_weight=sw)
    num = numerical_grad(lambda v: np.sum(loss(y, v, sample_weight=sw)), x)
    assert_grad_close(grad, num, rtol=1e-6)


# ---- decided edge cases -----------------------------------------------------

def test_all_rows_ignored_gives_zero_loss_and_zero_gradient():
    loss = SparseCategoricalCrossentropy(from_logits=True, ignore_index=-1)
    value, grad = loss.value_and_grad([-1, -1], [[1.0, 2.0], [3.0, 4.0]])
    assert value == 0.0 and np.all(grad == 0.0)


def test_ignored_rows_count_nowhere_but_the_class_stays_in_the_softmax():
    z = np.array([[1.0, 2.0, 0.0], [0.5, 0.1, 3.0], [2.0, 2.0, 2.0]])
    with_ignored = sparse_categorical_crossentropy([0, 2, 2], z, from_logits=True, ignore_index=2)
    only_first = sparse_categorical_crossentropy([0], z[:1], from_logits=True)
    assert with_ignored == pytest.approx(only_first, rel=1e-15)


def test_rows_where_nothing_takes_part_give_zero_not_nan():
    z = np.array([[-np.inf, -np.inf, -np.inf], [1.0, 2.0, 3.0]])
    for kw in (dict(), dict(label_smoothing=0.1)):
        value, grad = SparseCategoricalCrossentropy(from_logits=True, reduction="none", **kw) \
            .value_and_grad([1, 2], z)
        assert value[0] == 0.0 and np.all(grad[0] == 0.0) and np.all(np.isfinite(grad))
    where = np.array([[False, False, False], [True, True, True]])
    per_row = sparse_categorical_crossentropy([1, 2], np.ones((2, 3)), from_logits=True,
                                              where=where, reduction="none")
    np.testing.assert_allclose(per_row, [0.0, np.log(3.0)], rtol=1e-15)


def test_masked_classes_get_no_smoothing_mass():
    z = np.array([[1.0, 2.0, -np.inf]])
    value = sparse_categorical_crossentropy([1], z, from_logits=True, label_smoothing=0.2)
    assert np.isfinite(value)
    expected = sparse_categorical_crossentropy([1], z[:, :2], from_logits=True, label_smoothing=0.2)
    assert value == pytest.approx(expected, rel=1e-15)


def test_integer_labels_agree_with_one_hot(rng):
    z = rng.normal(size=(6, 5))
    y = rng.integers(0, 5, size=6)
    for kw in (dict(), dict(label_smoothing=0.3), dict(class_weight=rng.uniform(0.5, 2, 5))):
        a, ga = SparseCategoricalCrossentropy(from_logits=True, reduction="none", **kw).value_and_grad(y, z)
        b, gb = CategoricalCrossentropy(from_logits=True, reduction="none", **kw).value_and_grad(
            ll.one_hot(y, 5), z)
        np.testing.assert_allclose(a, b, rtol=1e-14)
        np.testing.assert_allclose(ga, gb, rtol=1e-13, atol=1e-16)


def test_class_axis_can_move(rng):
    z = rng.normal(size=(4, 3, 6))
    y = rng.integers(0, 3, size=(4, 6))
    a, ga = SparseCategoricalCrossentropy(from_logits=True, axis=1).value_and_grad(y, z)
    b, gb = SparseCategoricalCrossentropy(from_logits=True).value_and_grad(y, np.moveaxis(z, 1, -1))
    assert a == pytest.approx(b, rel=1e-15)
    np.testing.assert_allclose(np.moveaxis(ga, 1, -1), gb, rtol=1e-15)


def test_binary_reductions_and_keras_mean():
    y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    z = np.array([[2.0, -1.0, 0.3], [0.7, -2.0, 4.0]])
    per = binary_crossentropy(y, z, from_logits=True, reduction="none")
    assert per.shape == (2, 3)
    assert binary_crossentropy(y, z, from_logits=True) == pytest.approx(per.mean(axis=-1).mean())
    assert binary_crossentropy(y, z, from_logits=True, reduction="sum") == pytest.approx(per.sum())


# ---- errors ------------------------------------------------------------------

def test_clear_errors():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"`y_true` must hold labels in \[0, 3\); got 3"):
        sparse_categorical_crossentropy([0, 3], z, from_logits=True)
    with pytest.raises(ValueError, match="non-integer value .*1.5"):
        sparse_categorical_crossentropy([0, 1.5], z, from_logits=True)
    with pytest.raises(ValueError, match=r"same shape; got \(2, 2\) and \(2, 3\)"):
        categorical_crossentropy(np.zeros((2, 2)), z)
    with pytest.raises(ValueError, match="Did you mean from_logits=True"):
        sparse_categorical_crossentropy([0, 1], [[2.0, -1.0, 0.5], [0.1, 0.2, 0.7]])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        sparse_categorical_crossentropy([0, 1, 2], z, from_logits=True)
    with pytest.raises(ValueError, match="`reduction`"):
        SparseCategoricalCrossentropy(reduction="avg")
    with pytest.raises(ValueError, match="`label_smoothing`"):
        SparseCategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="`class_weight`"):
        sparse_categorical_crossentropy([0, 1], z, from_logits=True, class_weight=[1.0, 2.0])
    with pytest.raises(TypeError, match="`y_true`"):
        sparse_categorical_crossentropy(["a", "b"], z, from_logits=True)


def test_logits_that_look_like_probabilities_warn():
    with pytest.warns(UserWarning, match="looks like probabilities"):
        sparse_categorical_crossentropy([0, 1], [[0.2, 0.8], [0.6, 0.4]], from_logits=True)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(2, 6)),
                  elements=st.floats(-30, 30)), st.data())
def test_logits_path_equals_probability_path_where_no_clipping(z, data):
    y = data.draw(hnp.arrays(np.int64, z.shape[:1], elements=st.integers(0, z.shape[1] - 1)))
    p = ll.softmax(z)
    if np.any(p < 1e-6) or np.any(p > 1 - 1e-6):
        return  # Keras's clip to [1e-7, 1 - 1e-7] changes the value there, by design
    a = sparse_categorical_crossentropy(y, z, from_logits=True)
    b = sparse_categorical_crossentropy(y, p)
    assert a == pytest.approx(b, rel=1e-9)


def test_issue_21_lean_path_keeps_the_winning_rows_relative_accuracy():
    # issue 21: the lean in-place path took log(sum e) where the reference takes
    # log1p(sum without the max's 1): on a confident, correct row the loss
    # lse - z_y = log(1 + 2 e^-30) ~ 1.9e-13 kept only ~3 digits.
    from logitlab.losses._crossentropy import sparse_ce_logits_inplace

    z = np.array([[30.0, 0.0, 0.0], [0.0, 40.0, 1.0], [2.0, 1.0, 0.5]])
    y = np.array([0, 1, 2])
    exact = [-mp_log_softmax(row)[k] for row, k in zip(z, y)]
    per_row = [sparse_ce_logits_inplace(z[i:i + 1].copy(), y[i:i + 1]) for i in range(3)]
    assert_close_rel(np.array(per_row), np.array([float(e) for e in exact]), rtol=1e-14,
                     atol_near_zero=0.0)
    reference = sparse_categorical_crossentropy(y, z, from_logits=True, reduction="none")
    assert_close_rel(np.array(per_row), reference, rtol=1e-14, atol_near_zero=0.0)


def test_issue_21_target_mass_on_left_out_entries_is_dropped_as_optax_does(rng):
    # issue 21: a target with mass on an entry `where` leaves out gave inf with a finite
    # gradient. Now optax's rule: such entries are left out of the target sum, in the
    # value and the gradient alike: l = -sum_{j in where} t_j log_softmax(z, where)_j.
    z = rng.normal(size=(4, 5))
    where = np.ones((4, 5), dtype=bool)
    where[:, 1] = False
    where[2, 3] = False
    t = rng.dirichlet(np.ones(5), 4)
    logp = ll.log_softmax(z, where=where)
    expected = -np.sum(np.where(where, t * logp, 0.0), axis=1)
    got = categorical_crossentropy(t, z, from_logits=True, where=where, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    f = lambda v: categorical_crossentropy(t, v, from_logits=True, where=where)  # noqa: E731
    _, g = categorical_ce_value_and_grad(t, z, from_logits=True, where=where)
    assert_grad_close(g, numerical_grad(f, z), rtol=1e-7)
    # integer labels: the same rule, equal to the one-hot form (a label on a left-out entry
    # gives that row 0 and a zero gradient, like a row where nothing takes part)
    y = np.array([1, 0, 3, 4])
    got_s = sparse_categorical_crossentropy(y, z, from_logits=True, where=where, reduction="none")
    np.testing.assert_allclose(got_s, categorical_crossentropy(
        np.eye(5)[y], z, from_logits=True, where=where, reduction="none"), rtol=1e-14)
    assert got_s[0] == 0.0 and got_s[2] == 0.0 and np.all(np.isfinite(got_s))
    fs = lambda v: sparse_categorical_crossentropy(y, v, from_logits=True, where=where)  # noqa: E731
    _, gs = sparse_ce_value_and_grad(y, z, from_logits=True, where=where)
    assert_grad_close(gs, numerical_grad(fs, z), rtol=1e-7)


@pytest.mark.parametrize("mode", ["never", "always"])
def test_issue_21_singleton_label_axis_on_the_chosen_class_axis(mode, rng):
    # issue 21: Keras squeezes a singleton class axis of sparse labels on a user-chosen
    # axis (labels (2, 1, 4, 4) with axis=1); logitlab did only on the trailing axis.
    from logitlab import _jit

    z = rng.normal(size=(2, 3, 4, 4))
    y = rng.integers(0, 3, size=(2, 1, 4, 4))
    expected, g_expected = SparseCategoricalCrossentropy(from_logits=True).value_and_grad(
        y[:, 0], np.moveaxis(z, 1, -1))
    with _jit.kernel_mode(mode):
        got, g = SparseCategoricalCrossentropy(from_logits=True, axis=1).value_and_grad(y, z)
    assert got == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(np.moveaxis(g, 1, -1), g_expected, rtol=1e-13, atol=1e-16)
    with pytest.raises(ValueError, match="one integer label per row"):
        sparse_categorical_crossentropy(y[:, :, :3], z, from_logits=True, axis=1)


def test_issue_21_float32_probabilities_saturate_where_keras_does():
    # issue 21: Keras clips float32 probabilities with float32 bounds (1 - 1e-7 rounds to
    # 1 - 2^-23 = 1 - 1.19e-7), so binary CE at p = 1, y = 0 saturates at
    # -log(2^-23) = 15.942385 (Keras 3.15.1 prints 15.942385, 16.118095, 16.03024,
    # 1.192093e-07 for the four calls below); logitlab clipped at float64's bounds
    # (16.118). The bounds are now rounded to the input's dtype, the log still exact, so
    # the values equal Keras's to the last bit or within one float32 ulp (its arithmetic).
    f32 = np.float32
    assert binary_crossentropy(f32([[0.0]]), f32([[1.0]])) == f32(-np.log(2.0 ** -23))
    assert binary_crossentropy(f32([[0.0]]), f32([[1.0]])) == f32(15.942385)
    assert binary_crossentropy(f32([[1.0]]), f32([[0.0]])) == f32(16.118095)
    # Keras averages in float32 arithmetic; logitlab rounds the exact mean once: 1 ulp apart
    mean = binary_crossentropy(f32([[0.0, 1.0]]), f32([[1.0, 0.0]]))
    assert abs(mean - f32(16.03024)) <= np.spacing(f32(16.03024))
    assert categorical_crossentropy(f32([[0.0, 1.0]]), f32([[0.0, 1.0]])) == f32(1.192093e-07)
    # float64 inputs keep float64's bounds
    assert binary_crossentropy([[0.0]], [[1.0]]) == pytest.approx(-np.log(1e-7), rel=1e-9)
