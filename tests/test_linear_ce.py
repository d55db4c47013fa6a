"""linear_cross_entropy: the materialised values, in class chunks, in less memory."""

import tracemalloc

import numpy as np
import pytest

from helpers import assert_grad_close, numerical_grad
from logitlab.losses import SparseCategoricalCrossentropy, linear_cross_entropy


def materialised(h, W, y, b=None, reduction="mean"):
    z = h @ W.T + (0 if b is None else b)
    loss, g = SparseCategoricalCrossentropy(from_logits=True, reduction=reduction) \
        .value_and_grad(y, z)
    out = [float(loss), g @ W, g.T @ h]
    if b is not None:
        out.append(g.sum(axis=0))
    return out


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_the_materialised_computation(chunk, with_bias, rng):
    h = rng.normal(size=(37, 9)) * 3
    W = rng.normal(size=(211, 9))
    b = rng.normal(size=211) if with_bias else None
    y = rng.integers(0, 211, size=37)
    got = linear_cross_entropy(h, W, y, bias=b, chunk_size=chunk)
    want = materialised(h, W, y, b)
    assert got[0] == pytest.approx(want[0], rel=1e-13)
    for a, e in zip(got[1:], want[1:]):
        np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-14)
    s = linear_cross_entropy(h, W, y, bias=b, chunk_size=chunk, reduction="sum")
    assert s[0] == pytest.approx(materialised(h, W, y, b, "sum")[0], rel=1e-13)


def test_float32_within_the_core_tolerance(rng):
    h = rng.normal(size=(64, 16)).astype(np.float32)
    W = rng.normal(size=(500, 16)).astype(np.float32)
    y = rng.integers(0, 500, size=64)
    loss, gh, gw = linear_cross_entropy(h, W, y, chunk_size=128)
    assert gh.dtype == np.float32
    want = materialised(h.astype(float), W.astype(float), y)
    assert loss == pytest.approx(want[0], rel=2e-6)
    np.testing.assert_allclose(gh, want[1], rtol=1e-4, atol=1e-6)


def test_gradient_by_finite_differences(rng):
    h = rng.normal(size=(5, 3))
    W = rng.normal(size=(11, 3))
    y = rng.integers(0, 11, size=5)
    _, gh, gw = linear_cross_entropy(h, W, y, chunk_size=4)
    assert_grad_close(gh, numerical_grad(lambda v: linear_cross_entropy(v, W, y, chunk_size=4)[0], h))
    assert_grad_close(gw, numerical_grad(lambda v: linear_cross_entropy(h, v, y, chunk_size=4)[0], W))


def _peak(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_peak_extra_memory_is_a_fraction_of_the_materialised(rng):
    n, d, c = 512, 16, 16384
    h = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(c, d)).astype(np.float32)
    y = rng.integers(0, c, size=n)
    outputs = h.nbytes + W.nbytes  # the gradients themselves
    chunked = _peak(lambda: linear_cross_entropy(h, W, y, chunk_size=256)) - outputs
    full = _peak(lambda: materialised(h, W, y)) - outputs
    assert chunked <= full / 8, (chunked, full)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="must share d"):
        linear_cross_entropy(np.zeros((2, 3)), np.zeros((4, 2)), [0, 1])
    with pytest.raises(ValueError, match=r"`labels` must hold labels in \[0, 4\)"):
        linear_cross_entropy(np.zeros((2, 3)), np.zeros((4, 3)), [0, 4])
    with pytest.raises(ValueError, match="`chunk_size`"):
        linear_cross_entropy(np.zeros((2, 3)), np.zeros((4, 3)), [0, 1], chunk_size=0)
