"""Property tests: any input a user can type gets a result or a named ValueError/TypeError.

Never an IndexError/AttributeError from inside the library, never a silently
wrong shape, never a hang.
"""

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logitlab as ll
from logitlab import losses

CASES = 300

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def anything(draw):
    """Arrays of every dtype (NaN/inf, empty, 0-d), lists, scalars, strings, None."""
    kind = draw(st.sampled_from(["float64", "float32", "float16", "int64", "bool", "complex128",
                                 "object", "list", "ragged", "scalar", "string", "none"]))
    if kind in ("float64", "float32", "float16"):
        return draw(hnp.arrays(kind, shapes, elements=floats))
    if kind == "int64":
        return draw(hnp.arrays(np.int64, shapes, elements=st.integers(-5, 5)))
    if kind == "bool":
        return draw(hnp.arrays(bool, shapes))
    if kind == "complex128":
        return draw(hnp.arrays(np.complex128, shapes))
    if kind == "object":
        return np.array(draw(st.lists(st.one_of(st.floats(), st.text(max_size=2)), max_size=4)),
                        dtype=object)
    if kind == "list":
        return draw(st.lists(st.lists(st.floats(-5, 5), min_size=2, max_size=2), max_size=4))
    if kind == "ragged":
        return [[1.0, 2.0], [3.0]]
    if kind == "scalar":
        return draw(st.one_of(st.floats(), st.integers(-3, 3)))
    if kind == "string":
        return draw(st.text(max_size=3))
    return None


NAMED = re.compile(r"`\w+`|\b(x|y|X|p|q|labels|y_true|y_pred|num_classes)\b")


def call_checked(fn, *args, **kwargs):
    """Run ``fn``; it may return, or raise ValueError/TypeError naming an argument."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                return True, fn(*args, **kwargs)
            except (ValueError, TypeError) as exc:
                assert NAMED.search(str(exc)), f"{fn.__name__}: message names no argument: {exc}"
                return False, exc


PROFILE = settings(max_examples=CASES, deadline=2000, database=None,
                   suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("fn", [ll.softmax, ll.log_softmax, ll.sparsemax])
@PROFILE
@given(x=anything())
def test_softmax_family_on_anything(fn, x):
    ok, out = call_checked(fn, x)
    if ok:
        assert out.shape == np.shape(x)
        arr = np.asarray(x, dtype=float)
        finite_rows = np.isfinite(arr).all(axis=-1)
        if fn is not ll.log_softmax and arr.size:
            sums = np.asarray(out, dtype=float).sum(axis=-1)
            np.testing.assert_allclose(sums[finite_rows], 1.0, rtol=1e-2)


@pytest.mark.parametrize("fn", [ll.logsumexp, ll.sigmoid, ll.log_sigmoid, ll.entropy])
@PROFILE
@given(x=anything())
def test_elementwise_and_reductions_on_anything(fn, x):
    ok, out = call_checked(fn, x)
    if ok:
        expected = np.shape(x) if fn in (ll.sigmoid, ll.log_sigmoid) else np.shape(x)[:-1]
        assert np.shape(out) == expected


@pytest.mark.parametrize("fn", [ll.kl_divergence, ll.cross_entropy])
@PROFILE
@given(p=anything(), q=anything())
def test_pairs_on_anything(fn, p, q):
    call_checked(fn, p, q)


@PROFILE
@given(labels=anything(), n=st.one_of(st.integers(-2, 5), st.floats(), st.none()))
def test_one_hot_on_anything(labels, n):
    ok, out = call_checked(ll.one_hot, labels, n)
    if ok:
        assert out.shape == np.shape(labels) + (n,)


LOSSES = [losses.sparse_categorical_crossentropy, losses.categorical_crossentropy,
          losses.binary_crossentropy]


@pytest.mark.parametrize("fn", LOSSES)
@pytest.mark.parametrize("from_logits", [True, False])
@PROFILE
@given(y_true=anything(), y_pred=anything())
def test_losses_on_anything(fn, from_logits, y_true, y_pred):
    ok, out = call_checked(fn, y_true, y_pred, from_logits=from_logits)
    if ok:
        assert np.ndim(out) == 0


@pytest.mark.parametrize("fn", LOSSES)
@PROFILE
@given(data=st.data())
def test_losses_on_mismatched_pairs(fn, data):
    y_pred = data.draw(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3),
                                  elements=st.floats(-5, 5)))
    y_true = data.draw(hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=3),
                                  elements=st.integers(0, 1)))
    ok, out = call_checked(fn, y_true, y_pred, from_logits=True, reduction="none")
    if ok:  # a result is only given where the shapes really fit
        if fn is losses.sparse_categorical_crossentropy:
            assert np.shape(out) == y_pred.shape[:-1]
        else:
            assert y_true.shape == y_pred.shape


@PROFILE
@given(x=anything(), y=anything())
def test_sequential_fit_and_predict_on_anything(x, y):
    model = ll.Sequential([ll.layers.Dense(3)], seed=0)
    model.compile(loss=losses.SparseCategoricalCrossentropy(from_logits=True), optimizer="sgd")
    ok, _ = call_checked(model.fit, x, y, epochs=1, verbose=0)
    ok, out = call_checked(model.predict, x)
    if ok:
        assert out.shape == (np.shape(x)[0], 3)


@pytest.mark.parametrize("make", [lambda: ll.SoftmaxRegression(max_iter=5),
                                  lambda: ll.MLPClassifier(epochs=1)], ids=["softmax", "mlp"])
@settings(max_examples=60, deadline=5000, database=None, suppress_health_check=list(HealthCheck))
@given(x=anything(), y=anything())
def test_estimators_on_anything(make, x, y):
    est = make()
    ok, _ = call_checked(est.fit, x, y)
    if ok:
        ok, out = call_checked(est.predict, x)
        if ok:
            assert len(out) == len(x)


def _warned_here(call, category=UserWarning):
    """The warnings ``call`` raises, each at this file's line, not inside logitlab."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    mine = [w for w in caught if issubclass(w.category, category)]
    assert mine, f"no {category.__name__} from {call}"
    return {w.filename for w in mine}


@pytest.mark.parametrize("case", ["ce function", "ce class", "sparse ce 1-D", "log_loss",
                                  "temperature", "one-hot", "convergence"])
def test_warnings_point_at_the_users_line(case):
    """Each warning names the user's line however deep in logitlab it is raised (one rule,
    ``_validation.user_stacklevel``), where fixed stacklevels pointed inside the library."""
    from sklearn.exceptions import ConvergenceWarning

    from logitlab import calibration, metrics

    p = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    y = np.array([1, 0, 0])
    calls = {
        "ce function": lambda: ll.losses.categorical_crossentropy(np.eye(2)[y], p, from_logits=True),
        "ce class": lambda: ll.losses.SparseCategoricalCrossentropy(from_logits=True)(y, p),
        "sparse ce 1-D": lambda: ll.losses.sparse_categorical_crossentropy(1, p[0], from_logits=True),
        "log_loss": lambda: metrics.log_loss_from_logits(y, p),
        "temperature": lambda: calibration.TemperatureScaling().fit(p, y),
        "one-hot": lambda: metrics.brier_score(np.eye(2)[y], p),
    }
    if case == "convergence":
        X = np.random.default_rng(0).normal(size=(60, 3))
        files = _warned_here(lambda: ll.SoftmaxRegression(max_iter=1).fit(X, np.arange(60) % 3),
                             ConvergenceWarning)
    else:
        files = _warned_here(calls[case])
    assert files == {__file__}, files


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_inputs_whose_sum_overflows_are_accepted_and_one_nan_or_inf_is_not(dtype):
    # check_inputs's finite check sums first (one pass, no temporary): a sum that overflows
    # from finite entries must fall back to the exact check, not reject the data
    from logitlab._validation import all_finite, check_inputs

    big = np.full((300, 7), np.finfo(dtype).max / 2, dtype=dtype)
    with np.errstate(over="ignore"):
        assert np.isinf(big.sum(dtype=dtype))  # the case: the sum overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning reaches the user either
        assert all_finite(big)
        assert check_inputs(big, dtype=dtype) is not None
    for bad in (np.nan, np.inf, -np.inf):
        x = big.copy()
        x[123, 4] = bad
        assert not all_finite(x)
        with pytest.raises(ValueError, match="`x` contains NaN or inf"):
            check_inputs(x, dtype=dtype)
    assert all_finite(np.zeros((2, 3), dtype)) and not all_finite(np.array([[np.nan]], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_check_by_sums_finds_every_non_finite_entry(dtype):
    # all_finite sums first: a NaN or inf anywhere, in either memory order or a strided
    # view, and +inf with -inf (whose sum is NaN, not inf) must be found, in any shape
    from logitlab._validation import all_finite

    x = np.random.default_rng(0).normal(size=(37, 11)).astype(dtype)
    assert all_finite(x) and all_finite(x.T) and all_finite(x[::3, ::2])
    for bad in (np.nan, np.inf, -np.inf):
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                y = x.copy()
                y[i, j] = bad
                assert not all_finite(y) and not all_finite(np.asfortranarray(y))
                assert not all_finite(y.T) and not all_finite(y.ravel())
                assert not all_finite(y.reshape(1, *y.shape))
    y = x.copy()
    y[5, 2], y[5, 9] = np.inf, -np.inf
    assert not all_finite(y)
    y = x.copy()
    y[::3, ::2][4, 3] = np.nan
    assert not all_finite(y[::3, ::2])
    assert all_finite(np.empty((0, 5), dtype)) and all_finite(np.empty((4, 0), dtype))
