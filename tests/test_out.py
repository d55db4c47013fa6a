"""``out=``: results written into a caller's buffer, on the kernels and on the reference.

The buffer must receive exactly what a fresh call returns (the same path,
bit for bit), be returned itself, and be refused with a named error when it
cannot hold the result or overlaps an input.
"""

import numpy as np
import pytest

import logitlab as ll
from logitlab import _jit
from logitlab.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
)

MODES = ["never", "always"]  # the NumPy reference, and the kernels at every size


def _cases(rng, dtype):
    """``name -> (fn(x, out) -> result, x)`` for each function that takes ``out``."""
    x = rng.normal(0, 3, size=(37, 11)).astype(dtype)
    labels = rng.integers(0, 11, size=37)
    onehot = np.eye(11, dtype=dtype)[labels]
    bits = (rng.random(x.shape) < 0.3).astype(dtype)
    weight = rng.random(37)
    sparse = SparseCategoricalCrossentropy(from_logits=True)
    return {
        "softmax": (lambda z, out: ll.softmax(z, out=out), x),
        "log_softmax": (lambda z, out: ll.log_softmax(z, out=out), x),
        "softmax axis 0": (lambda z, out: ll.softmax(z, axis=0, out=out), x),
        "sparse ce": (lambda z, out: sparse.value_and_grad(labels, z, out=out), x),
        "sparse ce weighted": (lambda z, out: sparse.value_and_grad(labels, z, weight, out=out),
                               x),
        "sparse ce axis 0": (lambda z, out: SparseCategoricalCrossentropy(
            from_logits=True, axis=0).value_and_grad(labels, z, out=out), x.T.copy()),
        "categorical ce": (lambda z, out: CategoricalCrossentropy(
            from_logits=True).value_and_grad(onehot, z, out=out), x),
        "binary ce": (lambda z, out: BinaryCrossentropy(from_logits=True).value_and_grad(
            bits, z, out=out), x),
    }


def _result(value):
    """The array a call delivers: the softmax itself, or a loss's gradient."""
    return value[1] if isinstance(value, tuple) else value


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_out_receives_the_fresh_result(rng, mode, dtype, layout):
    for name, (fn, x) in _cases(rng, dtype).items():
        with _jit.kernel_mode(mode):
            fresh = fn(x, None)
            out = np.full(x.shape, np.nan, dtype=dtype, order=layout)
            got = fn(x, out)
        assert _result(got) is out, name
        assert np.array_equal(out, _result(fresh)), name
        if isinstance(fresh, tuple):
            assert got[0] == fresh[0], name


@pytest.mark.parametrize("mode", MODES)
def test_out_is_refused_with_a_named_reason(rng, mode):
    x = rng.normal(size=(30, 5)).astype(np.float32)
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    loss = SparseCategoricalCrossentropy(from_logits=True)
    labels = np.zeros(30, dtype=np.intp)
    with _jit.kernel_mode(mode):
        with pytest.raises(ValueError, match=r"`out` must have shape \(30, 5\); got shape \(5, 30\)"):
            ll.softmax(x, out=np.empty((5, 30), np.float32))
        with pytest.raises(TypeError, match="`out` must have dtype float32; got dtype float64"):
            ll.log_softmax(x, out=np.empty((30, 5)))
        with pytest.raises(TypeError, match="`out` must be a NumPy array or None; got a list"):
            ll.softmax(x, out=[0.0] * 5)
        with pytest.raises(ValueError, match="`out` must be writeable"):
            ll.softmax(x, out=read_only)
        with pytest.raises(ValueError, match="`out` must not share memory with `x`"):
            ll.softmax(x, out=x)
        with pytest.raises(ValueError, match="`out` must not share memory with `y_pred`"):
            loss.value_and_grad(labels, x, out=x[::-1])
        with pytest.raises(TypeError, match="`out` must have dtype float64"):  # integer logits
            ll.softmax(np.arange(12).reshape(3, 4), out=np.empty((3, 4), np.float32))
    assert np.isnan(x).sum() == 0  # a refused call writes nothing into the inputs


def test_where_goes_with_out(rng):
    x = rng.normal(size=(6, 4))
    where = np.array([True, False, True, True])
    out = np.empty_like(x)
    assert ll.softmax(x, where=where, out=out) is out
    assert np.array_equal(out, ll.softmax(x, where=where))
    assert np.all(out[:, 1] == 0)
