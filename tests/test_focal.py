"""Focal losses: mpmath on adversarial logits, gradients, the peers (Keras 3, torchvision)."""

from pathlib import Path

import mpmath
import numpy as np
import pytest

from helpers import assert_close_rel, assert_grad_close, mp_log_softmax, numerical_grad
from logitlab import Sequential, load_model
from logitlab import losses
from logitlab.layers import Dense
from logitlab.losses import (
    binary_focal_crossentropy,
    categorical_focal_crossentropy,
    sparse_categorical_crossentropy,
    sparse_categorical_focal_crossentropy,
)
from logitlab.losses._focal import (
    binary_focal_value_and_grad,
    categorical_focal_value_and_grad,
    sparse_focal_value_and_grad,
)

FIX = Path(__file__).parent / "fixtures" / "loss_peers.npz"


def mp_focal_row(row, label, gamma, alpha):
    # l = -alpha (1 - p_y)^gamma log p_y, p_y from the exact log-softmax
    logp = mp_log_softmax(row)[label]
    return -alpha * (1 - mpmath.exp(logp)) ** gamma * logp


def mp_sigmoid_focal(z, y, gamma, alpha):
    # torchvision: alpha_t (1 - p_t)^gamma ce, ce = log(1 + e^-z) for y=1, log(1 + e^z) for y=0
    z = mpmath.mpf(float(z))
    p = 1 / (1 + mpmath.exp(-z))
    ce = mpmath.log1p(mpmath.exp(-z)) if y == 1 else mpmath.log1p(mpmath.exp(z))
    pt = p if y == 1 else 1 - p
    at = alpha if y == 1 else 1 - alpha
    return at * (1 - pt) ** gamma * ce


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_softmax_focal_from_logits_matches_mpmath(dtype, tol):
    big = {np.float64: 1e300, np.float32: 1e4}[dtype]
    logits = np.array([[0.0, 50.0, -50.0], [0.0, 30.0, 1.0], [big, -big, 0.0],
                       [1.0, 1.0 + 1e-7, 1.0], [3.0, -20.0, 2.0], [-5.0, 5.0, 0.0]], dtype=dtype)
    labels = np.array([1, 1, 1, 2, 0, 0])
    for gamma, alpha in [(2.0, 0.25), (0.5, 1.0), (3.0, 0.7)]:
        got = sparse_categorical_focal_crossentropy(labels, logits, gamma=gamma, alpha=alpha,
                                                    from_logits=True, reduction="none")
        assert got.dtype == dtype
        exact = np.array([float(mp_focal_row(r, k, gamma, alpha)) for r, k in zip(logits, labels)])
        with np.errstate(over="ignore"):
            expected = exact.astype(dtype).astype(float)
        # relative accuracy even where 1 - p_y ~ e^-50 (the loss ~ 1e-65)
        assert_close_rel(got, expected, rtol=tol, atol_near_zero=0.0)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_sigmoid_focal_from_logits_matches_mpmath(dtype, tol):
    z = np.array([-80.0, -30.0, -3.0, -1e-8, 0.0, 2.5, 30.0, 80.0], dtype=dtype)
    for y in (0, 1):
        got = binary_focal_crossentropy(np.full(z.shape, y, dtype=dtype), z, from_logits=True,
                                        reduction="none")
        exact = np.array([float(mp_sigmoid_focal(v, y, 2.0, 0.25)) for v in z])
        assert_close_rel(got, exact.astype(dtype).astype(float), rtol=tol, atol_near_zero=0.0)


CASES = [
    dict(from_logits=True),
    dict(from_logits=True, gamma=0.5, alpha=[0.1, 0.5, 1.0, 2.0, 0.3], label_smoothing=0.2),
    dict(from_logits=True, gamma=0.0, alpha=1.0, ignore_index=4),
    dict(from_logits=False, gamma=1.5),
]


@pytest.mark.parametrize("kw", CASES)
def test_softmax_focal_gradient_matches_central_differences(kw, rng):
    z = rng.normal(0, 2, size=(6, 5))
    y = rng.integers(0, 5, 6)
    y[1] = 4
    if not kw["from_logits"]:
        z = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    sw = rng.uniform(0.5, 2.0, 6)
    _, g = sparse_focal_value_and_grad(y, z, sample_weight=sw, **kw)
    num = numerical_grad(lambda t: sparse_focal_value_and_grad(
        y, t, sample_weight=sw, need_grad=False, **kw)[0], z)
    assert_grad_close(g, num, rtol=1e-6)


@pytest.mark.parametrize("kw", [dict(from_logits=True), dict(from_logits=True, gamma=0.5, alpha=None),
                                dict(from_logits=False, gamma=1.5, alpha=0.6)])
def test_sigmoid_focal_gradient_matches_central_differences(kw, rng):
    z = rng.normal(0, 2, size=(4, 3))
    y = rng.uniform(size=(4, 3))
    y[0] = [0.0, 1.0, 1.0]
    if not kw["from_logits"]:
        z = 1.0 / (1.0 + np.exp(-z))
    _, g = binary_focal_value_and_grad(y, z, **kw)
    num = numerical_grad(lambda t: binary_focal_value_and_grad(y, t, need_grad=False, **kw)[0], z)
    assert_grad_close(g, num, rtol=1e-6)


def test_focal_with_gamma_0_is_weighted_cross_entropy(rng):
    z = rng.normal(0, 3, size=(7, 4))
    y = rng.integers(0, 4, 7)
    y[2] = -1
    got = sparse_categorical_focal_crossentropy(y, z, gamma=0.0, alpha=1.0, from_logits=True,
                                                ignore_index=-1)
    ce = sparse_categorical_crossentropy(y, z, from_logits=True, ignore_index=-1)
    assert got == pytest.approx(ce, rel=1e-14)


def test_sparse_focal_equals_categorical_on_one_hot_and_the_class_axis_can_move(rng):
    z = rng.normal(0, 2, size=(6, 4))
    y = rng.integers(0, 4, 6)
    kw = dict(from_logits=True, gamma=1.5, alpha=[0.2, 0.4, 0.6, 0.8], label_smoothing=0.1)
    a, ga = sparse_focal_value_and_grad(y, z, **kw)
    b, gb = categorical_focal_value_and_grad(np.eye(4)[y], z, **kw)
    c, gc = categorical_focal_value_and_grad(np.eye(4)[y].T, z.T, axis=0, **kw)
    assert a == pytest.approx(b, rel=1e-14) and a == pytest.approx(c, rel=1e-14)
    np.testing.assert_allclose(ga, gb, rtol=1e-13)
    np.testing.assert_allclose(gc, gb.T, rtol=1e-13)


def test_focal_errors_name_the_argument():
    with pytest.raises(ValueError, match="`gamma`"):
        sparse_categorical_focal_crossentropy([0], [[1.0, 2.0]], gamma=-1)
    with pytest.raises(ValueError, match="`alpha` must be a number or one weight per class"):
        sparse_categorical_focal_crossentropy([0], [[1.0, 2.0]], alpha=[1, 2, 3])
    with pytest.raises(ValueError, match="`alpha`"):
        binary_focal_crossentropy([[1.0]], [[0.3]], alpha=1.5)


def test_focal_loss_trains_saves_and_loads(tmp_path, rng):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=200, centers=3, random_state=0)
    model = Sequential([Dense(8, activation="relu"), Dense(3)], seed=0)
    model.compile(loss=losses.get("sparse_categorical_focal_crossentropy", from_logits=True,
                                  alpha=[0.5, 1.0, 1.0]), optimizer="adam", metrics=["accuracy"])
    hist = model.fit(X, y, epochs=20, verbose=0).history
    assert hist["loss"][-1] < hist["loss"][0] and hist["accuracy"][-1] > 0.9
    model.save(tmp_path / "f.logitlab")
    loaded = load_model(tmp_path / "f.logitlab")
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.evaluate(X, y) == model.evaluate(X, y)


# ---- peers, recorded by tests/fixtures/record_loss_peers.py ---------------------

@pytest.fixture(scope="module")
def peers():
    return np.load(FIX, allow_pickle=False)


@pytest.mark.parametrize("case", ["default", "gamma05_alpha1", "smooth"])
def test_categorical_focal_matches_keras(peers, case):
    kw = {"default": {}, "gamma05_alpha1": dict(gamma=0.5, alpha=1.0),
          "smooth": dict(label_smoothing=0.1)}[case]
    probs, onehot = peers["focal_probs"], peers["focal_onehot"]
    got = categorical_focal_crossentropy(onehot, probs, reduction="none", **kw)
    np.testing.assert_allclose(got, peers[f"keras_focal_{case}"], rtol=1e-6)
    # from logits away from Keras's clip: the logits path agrees too
    logits = peers["focal_logits"]
    got = categorical_focal_crossentropy(onehot, logits, from_logits=True, reduction="none", **kw)
    np.testing.assert_allclose(got, peers[f"keras_focal_{case}_logits"], rtol=1e-6)
    g = categorical_focal_value_and_grad(onehot, logits, from_logits=True, reduction="sum", **kw)[1]
    np.testing.assert_allclose(g, peers[f"keras_focal_{case}_logits_grad"], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("case", ["default", "gamma1_noalpha", "soft"])
def test_binary_focal_matches_torchvision_formula(peers, case):
    kw = {"default": {}, "gamma1_noalpha": dict(gamma=1.0, alpha=None), "soft": {}}[case]
    z, y = peers["sigmoid_logits"], peers[f"sigmoid_targets_{case}"]
    got, g = binary_focal_value_and_grad(y, z, from_logits=True, reduction="none", **kw)
    np.testing.assert_allclose(got, peers[f"sigmoid_focal_{case}"], rtol=1e-12)
    np.testing.assert_allclose(g, peers[f"sigmoid_focal_{case}_grad"], rtol=1e-10, atol=1e-14)
