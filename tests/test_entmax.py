"""entmax15, entmax_bisect and the Fenchel-Young losses: mpmath, the entmax package, optax."""

from pathlib import Path

import mpmath
import numpy as np
import pytest

import logitlab as ll
from helpers import assert_close_rel, assert_grad_close, numerical_grad
from logitlab import Sequential, entmax15, entmax_bisect, load_model, sparsemax
from logitlab import losses
from logitlab.layers import Dense
from logitlab.optimizers import Adam
from logitlab.losses import entmax15_loss, entmax_loss, sparsemax_loss
from logitlab.losses._fenchel_young import fy_value_and_grad

FIX = Path(__file__).parent / "fixtures" / "loss_peers.npz"


def mp_entmax(row, alpha):
    """alpha-entmax of a float row in mpmath: bisection on tau to 150 bits (alpha > 1)."""
    with mpmath.workprec(200):
        a1 = mpmath.mpf(alpha) - 1
        x = [a1 * mpmath.mpf(float(v)) for v in row]
        m = max(x)

        def f(tau):
            return mpmath.fsum(max(v - tau, 0) ** (1 / a1) for v in x) - 1

        lo, hi = m - 1, m
        for _ in range(160):
            mid = (lo + hi) / 2
            if f(mid) > 0:
                lo = mid
            else:
                hi = mid
        return [max(v - lo, 0) ** (1 / a1) for v in x]


ROWS = [[0.0, 1.0, 1.5], [1e-8, 0.0, -1e-8, 3.0], [4.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0],
        [1e6, 1e6 - 1.0, 0.0], [-3.0, 5.0, 4.9, 4.95, -2.0]]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("alpha", [1.25, 1.5, 2.0, 3.0])
def test_entmax_matches_mpmath(alpha, dtype, tol):
    for row in ROWS:
        x = np.array(row, dtype=dtype)
        exact = np.array([float(v) for v in mp_entmax(x, alpha)])
        got = entmax_bisect(x, alpha=alpha)
        assert got.dtype == dtype
        # the zeros are exact; the support agrees to the dtype's precision
        assert np.array_equal(got == 0, exact == 0)
        assert_close_rel(got, exact.astype(dtype).astype(float), rtol=tol, atol_near_zero=tol)
        if alpha == 1.5:
            assert_close_rel(entmax15(x), exact.astype(dtype).astype(float), rtol=tol,
                             atol_near_zero=tol)
        if alpha == 2.0:
            np.testing.assert_allclose(sparsemax(x), got, rtol=tol, atol=tol)


def test_entmax_mappings_sum_to_one_are_shift_invariant_and_move_axes(rng):
    x = rng.normal(0, 3, size=(4, 7))
    for f in (entmax15, lambda v, axis=-1: entmax_bisect(v, 1.7, axis=axis)):
        p = f(x)
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-14)
        np.testing.assert_allclose(f(x + 1e3), p, atol=1e-12)
        np.testing.assert_allclose(f(x.T, axis=0), p.T, atol=1e-15)
    np.testing.assert_allclose(entmax_bisect(x, 1.0), ll.softmax(x), rtol=1e-15)


def test_entmax_edge_rows_and_errors():
    np.testing.assert_array_equal(entmax15([[-np.inf, -np.inf]]), [[0.0, 0.0]])
    np.testing.assert_array_equal(entmax_bisect([np.inf, 0.0, np.inf], 1.5), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(entmax15([0.0, 1.0, 9.0], where=[True, True, False]),
                                  entmax15([0.0, 1.0, -np.inf]))
    with pytest.raises(ValueError, match="`alpha`"):
        entmax_bisect([1.0, 2.0], alpha=0.5)


def test_entmax15_as_output_activation_has_the_right_gradient(rng):
    from logitlab.layers._activations import ACTIVATIONS

    act = ACTIVATIONS["entmax15"]
    x = rng.normal(0, 1, size=(3, 5))
    g = rng.normal(size=(3, 5))
    analytic = act.backward(x, act.forward(x), g)
    numeric = numerical_grad(lambda v: np.sum(g * act.forward(v)), x)
    assert_grad_close(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 1.25, 1.5, 2.0, 2.5])
@pytest.mark.parametrize("dense", [False, True])
def test_fenchel_young_gradient_is_p_star_minus_y(alpha, dense, rng):
    z = rng.normal(0, 2, size=(5, 6))
    y = rng.dirichlet(np.full(6, 0.5), 5) if dense else rng.integers(0, 6, 5)
    sw = rng.uniform(0.5, 2.0, 5)
    _, g = fy_value_and_grad(y, z, alpha=alpha, sample_weight=sw)
    t = y if dense else np.eye(6)[y]
    np.testing.assert_allclose(g, sw[:, None] * (entmax_bisect(z, alpha) - t) / 5, atol=1e-12)
    num = numerical_grad(lambda v: fy_value_and_grad(y, v, alpha=alpha, sample_weight=sw,
                                                     need_grad=False)[0], z)
    assert_grad_close(g, num, rtol=1e-6)


def test_fenchel_young_losses_are_zero_exactly_where_the_map_is_the_target():
    z = np.array([[5.0, 0.0, -1.0], [0.0, 0.4, 0.2]])
    assert sparsemax_loss([0], z[:1]) == 0.0 and entmax15_loss([0], z[:1]) == 0.0
    # and positive elsewhere; dense targets equal to p* give 0 too
    assert sparsemax_loss([1], z[1:]) > 0
    p = sparsemax(z[1:])
    assert sparsemax_loss(p, z[1:]) == pytest.approx(0.0, abs=1e-16)
    # alpha = 1 is the softmax cross-entropy less the target's entropy
    assert entmax_loss([1], z[1:], alpha=1.0) == pytest.approx(
        losses.sparse_categorical_crossentropy([1], z[1:], from_logits=True), rel=1e-14)


def test_a_fenchel_young_loss_trains_saves_and_loads(tmp_path):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=200, centers=3, random_state=0)
    model = Sequential([Dense(8, activation="relu"), Dense(3)], seed=0)
    model.compile(loss="entmax15_loss", optimizer=Adam(0.01), metrics=["accuracy"])
    hist = model.fit(X, y, epochs=20, verbose=0).history
    assert hist["loss"][-1] < hist["loss"][0] and hist["accuracy"][-1] > 0.9
    model.save(tmp_path / "e.logitlab")
    loaded = load_model(tmp_path / "e.logitlab")
    assert isinstance(loaded.loss, losses.Entmax15Loss)
    assert loaded.evaluate(X, y) == model.evaluate(X, y)


# ---- peers, recorded by tests/fixtures/record_loss_peers.py ---------------------

@pytest.fixture(scope="module")
def peers():
    return np.load(FIX, allow_pickle=False)


def test_mappings_match_the_entmax_package(peers):
    s = peers["fy_scores"]
    np.testing.assert_allclose(sparsemax(s), peers["entmax_sparsemax"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(entmax15(s), peers["entmax_entmax15"], rtol=1e-12, atol=1e-15)
    for a in peers["entmax_alphas"]:
        key = str(a).replace(".", "_")
        np.testing.assert_allclose(entmax_bisect(s, a), peers[f"entmax_bisect_{key}"],
                                   rtol=1e-9, atol=1e-14)
    # exact zeros where the package has them
    assert np.array_equal(entmax15(s) == 0, peers["entmax_entmax15"] == 0)


def test_fenchel_young_losses_match_the_entmax_package_and_optax(peers):
    s, y = peers["fy_scores"], peers["fy_labels"]
    for name, fn in (("entmax15", entmax15_loss), ("sparsemax", sparsemax_loss)):
        np.testing.assert_allclose(fn(y, s, reduction="none"), peers[f"entmax_{name}_loss"],
                                   rtol=1e-12, atol=1e-14)
        g = fy_value_and_grad(y, s, alpha=1.5 if name == "entmax15" else 2.0, reduction="sum")[1]
        np.testing.assert_allclose(g, peers[f"entmax_{name}_loss_grad"], atol=1e-13)
    for a in peers["entmax_alphas"]:
        key = str(a).replace(".", "_")
        np.testing.assert_allclose(entmax_loss(y, s, alpha=a, reduction="none"),
                                   peers[f"entmax_bisect_loss_{key}"], rtol=1e-9, atol=1e-13)
        g = fy_value_and_grad(y, s, alpha=a, reduction="sum")[1]
        np.testing.assert_allclose(g, peers[f"entmax_bisect_loss_{key}_grad"], atol=1e-9)
    np.testing.assert_allclose(sparsemax_loss(y, s, reduction="none"),
                               peers["optax_multiclass_sparsemax_loss"], rtol=1e-12, atol=1e-14)
    # optax's binary sparsemax_loss is the two-class one on scores (0, s)
    b, lab = peers["optax_binary_scores"], peers["optax_binary_labels"]
    two = np.stack([np.zeros_like(b), b], axis=1)
    np.testing.assert_allclose(sparsemax_loss(lab, two, reduction="none"),
                               peers["optax_binary_sparsemax_loss"], rtol=1e-12, atol=1e-15)
