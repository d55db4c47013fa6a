"""one_hot, entropy, KL divergence and cross-entropy of distributions."""

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logitlab as ll


def mp_terms(p, q=None):
    h = mpmath.fsum(-mpmath.mpf(a) * mpmath.log(a) for a in p if a > 0)
    if q is None:
        return float(h)
    kl = mpmath.fsum(mpmath.mpf(a) * (mpmath.log(a) - mpmath.log(b)) for a, b in zip(p, q) if a > 0)
    return float(h), float(kl), float(h + kl)


def test_entropy_kl_and_cross_entropy_match_mpmath(rng):
    for _ in range(50):
        p = rng.dirichlet(np.full(6, 0.3))
        q = rng.dirichlet(np.full(6, 0.3))
        p[rng.integers(6)] = 0.0  # 0 log 0 = 0
        h, kl, hpq = mp_terms(p, q)
        assert ll.entropy(p) == pytest.approx(h, rel=1e-13, abs=1e-15)
        assert ll.kl_divergence(p, q) == pytest.approx(kl, rel=1e-12, abs=1e-15)
        assert ll.cross_entropy(p, q) == pytest.approx(hpq, rel=1e-13)


def test_kl_with_a_subnormal_q_stays_finite():
    p = np.array([0.5, 0.5])
    q = np.array([1.0 - 1e-320, 1e-320])
    h, kl, hpq = mp_terms(p, q)
    assert ll.kl_divergence(p, q) == pytest.approx(kl, rel=1e-13)
    assert ll.cross_entropy(p, q) == pytest.approx(hpq, rel=1e-13)


def test_kl_is_infinite_where_q_misses_mass_and_zero_for_equal():
    assert ll.kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf
    assert ll.kl_divergence([0.2, 0.8], [0.2, 0.8]) == 0.0
    assert ll.entropy([1.0, 0.0, 0.0]) == 0.0


@given(hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(0, 1)),
       hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(1e-300, 1)))
def test_cross_entropy_is_entropy_plus_kl(a, b):
    n = min(a.size, b.size)
    p, q = a[:n], b[:n]
    lhs = ll.cross_entropy(p, q)
    rhs = ll.entropy(p) + ll.kl_divergence(p, q)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_one_hot():
    np.testing.assert_array_equal(ll.one_hot([[1], [0]], 2), [[[0, 1]], [[1, 0]]])
    assert ll.one_hot([1], 3, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"`labels` must hold labels in \[0, 3\); got 3"):
        ll.one_hot([3], 3)
    with pytest.raises(ValueError, match="`num_classes`"):
        ll.one_hot([0], 0)


def test_distribution_errors_are_named():
    with pytest.raises(ValueError, match="`p` must hold probabilities"):
        ll.entropy([-0.1, 1.1])
    with pytest.raises(ValueError, match=r"`p` and `q` must have the same shape; got \(2,\) and \(3,\)"):
        ll.kl_divergence([0.5, 0.5], [0.2, 0.3, 0.5])


@pytest.mark.parametrize("fn", [lambda p: ll.entropy(p), lambda p: ll.cross_entropy([[0, 0, 1]], p),
                                lambda p: ll.kl_divergence(p, [[0.2, 0.3, 0.5]])])
def test_values_above_one_are_not_probabilities(fn):
    # Logits of positive values passed (only negatives were refused): cross_entropy gave -1.1.
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]; got the value 2.0"):
        fn([[1.0, 2.0, 3.0]])
