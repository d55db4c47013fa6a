"""z-loss (PaLM): z * logsumexp(logits)^2 per row, on sparse/categorical CE and
linear_cross_entropy, in the checked paths, the lean in-place path and the kernel path."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from helpers import assert_close_rel, assert_grad_close, mp_log_softmax, mp_logsumexp, numerical_grad
from logitlab import Sequential, _jit
from logitlab import losses
from logitlab.layers import Dense
from logitlab.losses import (
    categorical_crossentropy,
    linear_cross_entropy,
    sparse_categorical_crossentropy,
)
from logitlab.losses._crossentropy import (
    categorical_ce_value_and_grad,
    sparse_ce_logits_inplace,
    sparse_ce_value_and_grad,
)

Z = 1e-2  # larger than PaLM's 1e-4 so the term shows in every digit checked


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_z_loss_matches_mpmath(dtype, tol):
    logits = np.array([[0.0, 50.0, -50.0], [1e3, -1e3, 0.0], [1.0, 1.0 + 1e-7, 1.0],
                       [3.0, -np.inf, 2.0], [-30.0, -31.0, -29.5]], dtype=dtype)
    labels = np.array([1, 0, 2, 2, 1])
    got = sparse_categorical_crossentropy(labels, logits, from_logits=True, reduction="none",
                                          z_loss=Z)
    # l_i = -log softmax(z_i)_y + Z lse(z_i)^2, in mpmath from the exact inputs
    exact = [-mp_log_softmax(r)[k] + Z * mp_logsumexp(r) ** 2 for r, k in zip(logits, labels)]
    assert_close_rel(got, np.array([float(e) for e in exact]).astype(dtype).astype(float),
                     rtol=tol, atol_near_zero=0.0)
    t = np.eye(3, dtype=dtype)[labels]
    got_c = categorical_crossentropy(t, logits, from_logits=True, reduction="none", z_loss=Z)
    np.testing.assert_allclose(got_c, got, rtol=tol)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(class_weight=[0.5, 2.0, 1.0, 3.0], ignore_index=0, label_smoothing=0.1),
    dict(where=np.array([True, True, False, True])),
])
def test_z_loss_gradients_match_central_differences(kw, rng):
    z = rng.normal(0, 2, size=(6, 4)) + 3.0  # lse far from 0
    y = rng.integers(1, 4, 6)
    y[2] = 0
    sw = rng.uniform(0.5, 2.0, 6)
    if "where" in kw:
        y = np.where(y == 2, 1, y)
    _, g = sparse_ce_value_and_grad(y, z, from_logits=True, z_loss=Z, sample_weight=sw, **kw)
    num = numerical_grad(lambda v: sparse_ce_value_and_grad(
        y, v, from_logits=True, z_loss=Z, sample_weight=sw, need_grad=False, **kw)[0], z)
    assert_grad_close(g, num, rtol=1e-6)
    t = rng.dirichlet(np.ones(4), 6)
    _, g = categorical_ce_value_and_grad(t, z, from_logits=True, z_loss=Z, sample_weight=sw)
    num = numerical_grad(lambda v: categorical_ce_value_and_grad(
        t, v, from_logits=True, z_loss=Z, sample_weight=sw, need_grad=False)[0], z)
    assert_grad_close(g, num, rtol=1e-6)


def test_linear_cross_entropy_z_loss_matches_the_dense_loss(rng):
    h, W, b = rng.normal(size=(9, 5)), rng.normal(size=(40, 5)), rng.normal(size=40)
    y = rng.integers(0, 40, 9)
    loss, gh, gw, gb = linear_cross_entropy(h, W, y, b, chunk_size=7, z_loss=Z)
    z = h @ W.T + b
    ref, gz = sparse_ce_value_and_grad(y, z, from_logits=True, z_loss=Z)
    assert loss == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(gh, gz @ W, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gw, gz.T @ h, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gb, gz.sum(axis=0), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode", ["never", "always"])
def test_lean_in_place_path_has_the_z_loss(mode, rng):
    z = (rng.normal(0, 3, size=(300, 12)) + 5.0).astype(np.float32)
    y = rng.integers(0, 12, 300)
    sw = rng.uniform(0.0, 2.0, 300)
    ref, g_ref = sparse_ce_value_and_grad(y, z.astype(np.float64), from_logits=True,
                                          reduction="sum", z_loss=Z, sample_weight=sw)
    buf = z.copy()
    with _jit.kernel_mode(mode):
        total = sparse_ce_logits_inplace(buf, y, sample_weight=sw, scale=0.5, z_loss=Z)
    assert total == pytest.approx(ref, rel=2e-6)
    np.testing.assert_allclose(buf, 0.5 * g_ref, rtol=2e-5, atol=2e-7)


def test_sequential_fused_path_carries_the_z_loss():
    X, y = make_blobs(n_samples=256, centers=3, random_state=0)
    a = Sequential([Dense(8, activation="relu"), Dense(3)], seed=0, dtype="float64")
    b = Sequential([Dense(8, activation="relu"), Dense(3)], seed=0, dtype="float64")
    loss = losses.get("sparse_categorical_crossentropy", from_logits=True, z_loss=Z)
    assert loss.inplace_value_and_grad() is not None  # the fused path serves it
    a.compile(loss=loss, optimizer="sgd")
    # the same loss through the checked path only: a wrapper without the lean path
    b.compile(loss=losses.get("sparse_categorical_crossentropy", from_logits=True, z_loss=Z,
                              label_smoothing=1e-300), optimizer="sgd")
    assert b.loss.inplace_value_and_grad() is None
    ha = a.fit(X, y, epochs=3, shuffle=False, verbose=0).history["loss"]
    hb = b.fit(X, y, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(ha, hb, rtol=1e-10)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-9, atol=1e-12)


def test_z_loss_errors_name_the_argument():
    with pytest.raises(ValueError, match="`z_loss`"):
        sparse_categorical_crossentropy([0], [[1.0, 2.0]], from_logits=True, z_loss=-1)
    with pytest.raises(ValueError, match="needs from_logits=True"):
        sparse_categorical_crossentropy([0], [[0.3, 0.7]], z_loss=1e-4)
    with pytest.raises(ValueError, match="needs from_logits=True"):
        losses.CategoricalCrossentropy(z_loss=1e-4)
