"""The softmax family against mpmath, at the extremes, and by its properties."""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logitlab as ll
from helpers import (
    assert_close_rel,
    assert_grad_close,
    mp_log_softmax,
    mp_logsumexp,
    mp_softmax,
    numerical_grad,
    to_float,
)

# Tolerances promised by the core (issue 2): relative, and absolute near zero.
TOL = {np.float64: 1e-13, np.float32: 2e-6, np.float16: 1e-3}
EXTREME = {np.float64: 1e300, np.float32: 1e4, np.float16: 6e4}
DTYPES = [np.float16, np.float32, np.float64]


def adversarial_rows(rng, dtype):
    """Rows built to break naive code: huge, tiny, spread out, ties, -inf entries."""
    big = EXTREME[dtype]
    rows = [
        [1000.0, 1001.0, 1002.0],
        [-big, big, 0.0, big * 0.5],
        [big, big, big, big],
        [-big, -big, -big],
        [0.0, -np.inf, 3.0, -np.inf],
        [-700.0, 0.0, 40.0, -40.0],
        [1e-8, 2e-8, -3e-8, 0.0],
        [-1.0, -np.inf, -2.0, -50.0],
        [5.0],
    ]
    rows += [list(rng.normal(0, s, size=7)) for s in (0.1, 3.0, 30.0)]
    rows += [list(rng.uniform(-8, 8, size=5) + rng.uniform(-big / 2, big / 2)) for _ in range(3)]
    return [np.array(r, dtype=dtype) for r in rows]


def representable(values, dtype):
    """The exact values as the dtype holds them: beyond its range they are infinite."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(dtype).astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_matches_mpmath(dtype, rng):
    tol = TOL[dtype]
    for row in adversarial_rows(rng, dtype):
        exact_lse = mp_logsumexp(row)
        got = ll.logsumexp(row)
        assert got.dtype == dtype
        assert_close_rel(got, float(exact_lse), tol)
        p = ll.softmax(row)
        assert p.dtype == dtype and np.all(np.isfinite(p))
        # probabilities: relative where representable in the dtype, absolute
        # below its smallest normal (subnormal results lose relative accuracy)
        tiny = np.finfo(dtype).tiny
        assert_close_rel(p, to_float(mp_softmax(row)), tol, atol_near_zero=max(tol * tiny, tiny))
        lp = ll.log_softmax(row)
        assert_close_rel(lp, representable(to_float(mp_log_softmax(row)), dtype), tol)


def test_float64_random_rows_to_1e13(rng):
    """Many random rows of widely spread logits, float64, against 60-digit mpmath."""
    for _ in range(200):
        n = rng.integers(1, 12)
        row = rng.normal(0, rng.choice([1e-3, 1.0, 50.0, 300.0]), size=n)
        assert_close_rel(ll.log_softmax(row), to_float(mp_log_softmax(row)), 1e-13)
        assert_close_rel(ll.logsumexp(row), float(mp_logsumexp(row)), 1e-13, 1e-13)
        assert_close_rel(ll.softmax(row), to_float(mp_softmax(row)), 1e-13, 1e-300)


def test_naive_my_softmax_overflows_where_ours_does_not():
    z = np.array([1000.0, 1001.0, 1002.0])
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(z) / np.sum(np.exp(z))  # the seeds' my_softmax
    assert np.isnan(naive).all()
    exact = to_float(mp_softmax(z))
    np.testing.assert_allclose(ll.softmax(z), exact, rtol=1e-15)


def test_log_softmax_of_the_winner_keeps_relative_accuracy():
    # log_softmax([0, -40])[0] = -log1p(e^-40) ~ -4.25e-18: a plain log(sum) gives 0
    row = np.array([0.0, -40.0])
    expected = float(mp_log_softmax(row)[0])
    assert expected != 0.0
    assert_close_rel(ll.log_softmax(row)[0], expected, 1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extremes_never_give_nan_or_inf(dtype):
    big = np.finfo(dtype).max
    x = np.array([[big, -big, 0.0], [big, big, -np.inf], [-big, -big, -big]], dtype=dtype)
    for f in (ll.softmax, ll.sparsemax):
        out = f(x)
        assert np.all(np.isfinite(out)) and out.dtype == dtype
        np.testing.assert_allclose(out.astype(np.float64).sum(-1), 1.0, rtol=TOL[dtype])
    assert np.all(np.isfinite(ll.logsumexp(x)))
    lp = ll.log_softmax(x)
    assert not np.isnan(lp).any()
    assert np.isfinite(lp[0, 0]) and np.isfinite(lp[1, 0])


def test_where_mask_and_rows_with_nothing_taking_part():
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf]])
    where = np.array([[True, False, True], [False, False, False], [True, True, True]])
    p = ll.softmax(x, where=where)
    np.testing.assert_allclose(p[0], to_float(mp_softmax([1.0, -np.inf, 3.0])), rtol=1e-15)
    np.testing.assert_array_equal(p[1:], 0.0)
    lp = ll.log_softmax(x, where=where)
    assert lp[0, 1] == -np.inf and np.all(lp[1:] == -np.inf)
    lse = ll.logsumexp(x, where=where)
    assert lse[1] == -np.inf and lse[2] == -np.inf and np.isfinite(lse[0])
    np.testing.assert_array_equal(ll.sparsemax(x, where=where)[1:], 0.0)


def test_plus_inf_entries_share_the_probability():
    x = np.array([[np.inf, 0.0, np.inf, 5.0], [np.inf, -np.inf, 1.0, 2.0]])
    np.testing.assert_array_equal(ll.softmax(x), [[0.5, 0, 0.5, 0], [1, 0, 0, 0]])
    lp = ll.log_softmax(x)
    np.testing.assert_array_equal(lp[0], [np.log(0.5), -np.inf, np.log(0.5), -np.inf])
    np.testing.assert_array_equal(ll.logsumexp(x), [np.inf, np.inf])


def test_nan_poisons_only_its_own_row():
    x = np.array([[np.nan, 1.0], [1.0, 2.0]])
    for f in (ll.softmax, ll.log_softmax, ll.sparsemax):
        out = f(x)
        assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    lse = ll.logsumexp(x)
    assert np.isnan(lse[0]) and np.isfinite(lse[1])


def test_one_class_many_classes_and_empty_batches():
    np.testing.assert_array_equal(ll.softmax(np.full((3, 1), 7.0)), 1.0)
    np.testing.assert_array_equal(ll.log_softmax(np.full((3, 1), 7.0)), 0.0)
    x = np.random.default_rng(0).normal(size=(2, 100_000))
    p = ll.softmax(x)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-13)
    assert_close_rel(ll.logsumexp(x[0]), float(mp_logsumexp(x[0])), 1e-13)
    assert ll.softmax(np.zeros((0, 4))).shape == (0, 4)
    assert ll.logsumexp(np.zeros((0, 4))).shape == (0,)
    assert ll.logsumexp(np.zeros((3, 0))).tolist() == [-np.inf] * 3


@pytest.mark.parametrize("axis", [0, 1, -1, 2])
def test_any_class_axis_and_leading_dimensions(axis, rng):
    x = rng.normal(size=(3, 4, 5))
    moved = np.moveaxis(x, axis, -1)
    for f in (ll.softmax, ll.log_softmax, ll.sparsemax):
        np.testing.assert_allclose(np.moveaxis(f(x, axis=axis), axis, -1), f(moved), rtol=1e-15)
    np.testing.assert_allclose(ll.logsumexp(x, axis=axis), ll.logsumexp(moved), rtol=1e-15)
    assert ll.logsumexp(x, axis=axis, keepdims=True).shape[axis] == 1


def test_dtypes_kept_and_integers_become_float64():
    assert ll.softmax([1, 2, 3]).dtype == np.float64
    assert ll.softmax(np.array([1, 2], dtype=np.float32)).dtype == np.float32
    assert ll.log_softmax(np.array([1, 2], dtype=np.float16)).dtype == np.float16
    assert ll.sigmoid(np.array([1, 2], dtype=np.float32)).dtype == np.float32
    assert ll.logsumexp(np.array([True, False])).dtype == np.float64


def test_inputs_are_not_modified(rng):
    x = rng.normal(size=(4, 3))
    before = x.copy()
    for f in (ll.softmax, ll.log_softmax, ll.logsumexp, ll.sparsemax, ll.sigmoid):
        f(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    "bad, exc, words",
    [
        ("abc", TypeError, "`x`"),
        (np.array([1 + 2j]), TypeError, "complex"),
        (np.array(["a"], dtype=object), TypeError, "`x`"),
        ([[1.0, 2.0], [3.0]], ValueError, "rectangular"),
        (3.0, ValueError, "class axis"),
    ],
)
def test_bad_input_is_named(bad, exc, words):
    with pytest.raises(exc, match=words):
        ll.softmax(bad)


def test_bad_axis_and_mask_are_named():
    with pytest.raises(ValueError, match="`axis`=2"):
        ll.softmax(np.zeros((2, 2)), axis=2)
    with pytest.raises(TypeError, match="`axis`"):
        ll.softmax(np.zeros((2, 2)), axis=1.5)
    for flag in (True, np.bool_(False)):  # operator.index took True for 1; NumPy refuses it
        with pytest.raises(TypeError, match="`axis` must be an integer; got bool"):
            ll.softmax(np.zeros((2, 2)), axis=flag)
    with pytest.raises(ValueError, match="`where`"):
        ll.softmax(np.zeros((2, 2)), where=np.ones(3, bool))
    with pytest.raises(TypeError, match="boolean"):
        ll.softmax(np.zeros((2, 2)), where=np.ones((2, 2)))


# ---- sigmoid ----------------------------------------------------------------

def test_sigmoid_and_log_sigmoid_match_mpmath():
    xs = np.array([-800.0, -40.0, -1.0, -1e-10, 0.0, 2.5, 40.0, 800.0])
    exact_s = [1 / (1 + mpmath.exp(-mpmath.mpf(float(v)))) for v in xs]
    exact_ls = [-mpmath.log1p(mpmath.exp(-mpmath.mpf(float(v)))) for v in xs]
    assert_close_rel(ll.sigmoid(xs), to_float(exact_s), 1e-14, 1e-300)
    assert_close_rel(ll.log_sigmoid(xs), to_float(exact_ls), 1e-14, 1e-300)


# ---- sparsemax ---------------------------------------------------------------

def exact_sparsemax(row):
    """Sparsemax in exact rational arithmetic (Martins and Astudillo, Alg. 1)."""
    z = [Fraction(float(v)) for v in row]
    srt = sorted(z, reverse=True)
    k, cs, best = 0, Fraction(0), 0
    for k, v in enumerate(srt, 1):
        cs += v
        if 1 + k * v > cs:
            best, best_cs = k, cs
    tau = (best_cs - 1) / best
    return [float(max(v - tau, 0)) for v in z]


def test_sparsemax_matches_exact_arithmetic(rng):
    for _ in range(100):
        row = rng.normal(0, rng.choice([0.1, 1.0, 10.0]), size=rng.integers(1, 9))
        np.testing.assert_allclose(ll.sparsemax(row), exact_sparsemax(row), rtol=0, atol=4e-15)


def test_sparsemax_jacobian_vector_product_by_finite_differences(rng):
    # In the interior of a piece, sparsemax is linear; its directional
    # derivative matches central differences.
    x = np.array([0.3, 1.1, 0.9, -2.0])
    v = rng.normal(size=4)
    g = numerical_grad(lambda z: ll.sparsemax(z) @ v, x, h=1e-7)
    support = ll.sparsemax(x) > 0
    s = support.astype(float)
    jac = np.diag(s) - np.outer(s, s) / s.sum()  # Martins and Astudillo, eq. 12
    assert_grad_close(jac.T @ v, g, rtol=1e-6)


# ---- properties --------------------------------------------------------------

finite_rows = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 8)),
    elements=st.floats(-1e6, 1e6, allow_nan=False),
)


@given(finite_rows)
def test_rows_sum_to_one(x):
    np.testing.assert_allclose(ll.softmax(x).sum(-1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(ll.sparsemax(x).sum(-1), 1.0, rtol=1e-9)


@given(finite_rows, st.floats(-1e3, 1e3))
def test_shift_invariance(x, c):
    shifted = x + c
    if not np.all(shifted - c == x):  # the shift itself must be exact to compare
        return
    np.testing.assert_allclose(ll.softmax(shifted), ll.softmax(x), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(ll.log_softmax(shifted), ll.log_softmax(x), rtol=1e-9, atol=1e-9)


@given(finite_rows)
def test_log_softmax_is_log_of_softmax_where_representable(x):
    p = ll.softmax(x)
    ok = p > np.finfo(float).tiny
    np.testing.assert_allclose(ll.log_softmax(x)[ok], np.log(p[ok]), rtol=1e-12, atol=1e-12)


@given(finite_rows)
def test_sparsemax_is_the_projection_onto_the_simplex(x):
    p = ll.sparsemax(x)
    assert np.all(p >= 0)
    # KKT conditions: p = max(x - tau, 0), one tau per row, for the support
    for row, pr in zip(x, p):
        on = pr > 0
        tau = (row[on] - pr[on]).mean()
        scale = max(1.0, np.abs(row).max())
        np.testing.assert_allclose(row[on] - pr[on], tau, atol=1e-9 * scale)
        assert np.all(row[~on] <= tau + 1e-9 * scale)


@given(finite_rows)
def test_logsumexp_bounds(x):
    lse = ll.logsumexp(x)
    assert np.all(lse >= x.max(-1) - 1e-9 * np.abs(x).max())
    assert np.all(lse <= x.max(-1) + np.log(x.shape[-1]) + 1e-9 * np.abs(x).max())
