"""Every argument checked, every error named (issue 19): one test per reproduction.

Each test is named after the bug it reproduces; each failed before the fix.
The references are independent: scikit-learn's ``compute_class_weight`` for
"balanced", explicit per-sample weights for class weights, the core's
sparse cross-entropy for ``linear_cross_entropy``.
"""

import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.utils.class_weight import compute_class_weight

from logitlab import (
    MLPClassifier,
    Sequential,
    SoftmaxRegression,
    TrainingDivergedError,
    _jit,
    one_hot,
)
from logitlab.layers import Dense
from logitlab.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    linear_cross_entropy,
    sparse_categorical_crossentropy,
)
from logitlab.optimizers import SGD


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=60, centers=3, random_state=0)
    return X.astype(np.float32), y


def _model(loss=None):
    model = Sequential([Dense(3)], seed=0)
    model.compile(loss=loss or SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=SGD(0.01))
    return model


def _fit_weights(X, y, loss=None, **kw):
    model = _model(loss)
    model.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0, **kw)
    return model.get_weights()


# ---- item 1: sample_weight and class_weight ---------------------------------------------


@pytest.mark.parametrize("class_weight", [[1.0, 2.0, 3.0], np.array([1.0, 2.0, 3.0]),
                                          {1: 2.0, 2: 3.0}, "balanced"],
                         ids=["list", "array", "dict", "balanced"])
def test_sequential_fit_class_weight_list_or_balanced_raised_attribute_error(blobs, class_weight):
    X, y = blobs[0][:50], blobs[1][:50]
    assert len(set(np.bincount(y))) > 1  # unequal counts: "balanced" is not all ones
    if isinstance(class_weight, str):
        per_class = compute_class_weight("balanced", classes=np.unique(y), y=y)
    elif isinstance(class_weight, dict):
        per_class = np.array([class_weight.get(k, 1.0) for k in range(3)])
    else:
        per_class = np.asarray(class_weight)
    got = _fit_weights(X, y, class_weight=class_weight)
    want = _fit_weights(X, y, sample_weight=per_class[y])
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_sequential_fit_class_weight_indexes_one_hot_targets_by_argmax(blobs):
    X, y = blobs
    loss = CategoricalCrossentropy(from_logits=True)
    got = _fit_weights(X, one_hot(y, 3), loss, class_weight=[0.5, 1.0, 2.0])
    want = _fit_weights(X, one_hot(y, 3), loss, sample_weight=np.array([0.5, 1.0, 2.0])[y])
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_sequential_fit_class_weight_non_number_named_sample_weight(blobs):
    X, y = blobs
    with pytest.raises(TypeError, match=r"`class_weight\[0\]` must be a number; got str 'x'"):
        _model().fit(X, y, class_weight={0: "x"}, verbose=0)


def test_sequential_fit_sample_weight_string_did_not_name_the_argument(blobs):
    X, y = blobs
    with pytest.raises(TypeError, match="`sample_weight` must be an array-like of numbers"):
        _model().fit(X, y, sample_weight="x", verbose=0)


@pytest.mark.parametrize("kw, match", [
    (dict(sample_weight="nan"), r"`sample_weight` must hold finite, non-negative weights; "
                                r"got nan at index 7"),
    (dict(sample_weight="inf"), r"`sample_weight`.*got inf at index 7"),
    (dict(sample_weight="neg"), r"`sample_weight`.*got -1.0 at index 7"),
    (dict(class_weight={0: math.nan}), r"`class_weight\[0\]` must be a finite, non-negative"),
    (dict(class_weight={1: -2.0}), r"`class_weight\[1\]`.*got -2.0"),
    (dict(class_weight=[1.0, math.inf, 1.0]), r"`class_weight` must hold finite.*inf at index 1"),
    (dict(class_weight="heavy"), r"`class_weight` must be a dict, one weight per class, "
                                 r"'balanced' or None"),
    (dict(class_weight={5: 1.0}), r"`class_weight` has the key 5, outside the classes \[0, 3\)"),
    (dict(class_weight=[1.0, 2.0]), r"`class_weight` must have one entry per class"),
])
def test_sequential_fit_nan_weights_raised_training_diverged_instead_of_naming_the_weight(
        blobs, kw, match):
    X, y = blobs
    if "sample_weight" in kw:
        sw = np.ones(len(y))
        sw[7] = {"nan": math.nan, "inf": math.inf, "neg": -1.0}[kw["sample_weight"]]
        kw = dict(sample_weight=sw)
    model = _model()
    model.build(X.shape[1])
    before = model.get_weights()
    with pytest.raises(ValueError, match=match) as info:
        model.fit(X, y, verbose=0, **kw)
    assert not isinstance(info.value, TrainingDivergedError)
    for a, b in zip(model.get_weights(), before):  # refused before any step
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("class_weight", [{0: math.nan}, {0: math.inf}, {0: -1.0}, {0: "x"}])
def test_softmax_regression_nonfinite_class_weight_fitted_zero_coef_and_nan_objective(
        blobs, class_weight):
    X, y = blobs
    with pytest.raises((ValueError, TypeError), match=r"`class_weight\[0\]`"):
        SoftmaxRegression(class_weight=class_weight).fit(X, y)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_softmax_regression_nonfinite_or_negative_sample_weight_is_refused(blobs, bad):
    X, y = blobs
    sw = np.ones(len(y))
    sw[3] = bad
    with pytest.raises(ValueError, match=r"`sample_weight` must hold finite, non-negative "
                                         rf"weights; got {bad!r} at index 3"):
        SoftmaxRegression().fit(X, y, sample_weight=sw)


def test_all_zero_weights_are_refused_as_scikit_learn_does(blobs):
    X, y = blobs
    zero = np.zeros(len(y))
    with pytest.raises(ValueError, match="`sample_weight` must hold at least one non-zero"):
        SoftmaxRegression().fit(X, y, sample_weight=zero)
    with pytest.raises(ValueError, match="`sample_weight` must hold at least one non-zero"):
        _model().fit(X, y, sample_weight=zero, verbose=0)
    with pytest.raises(ValueError, match="`sample_weight` times `class_weight` must hold"):
        _model().fit(X, y, class_weight=[0.0, 0.0, 0.0], verbose=0)


def test_softmax_regression_class_weights_follow_scikit_learn(blobs):
    X, y = blobs
    X, y = X[:50], y[:50]
    names = np.array(["ant", "bee", "cat"])[y]
    balanced = SoftmaxRegression(class_weight="balanced").fit(X, names)
    manual = SoftmaxRegression().fit(
        X, names, sample_weight=compute_class_weight("balanced", classes=np.unique(y), y=y)[y])
    np.testing.assert_allclose(balanced.coef_, manual.coef_, rtol=1e-10, atol=1e-12)
    by_label = SoftmaxRegression(class_weight={"bee": 3.0}).fit(X, names)  # keys are labels
    manual = SoftmaxRegression().fit(X, names, sample_weight=np.where(y == 1, 3.0, 1.0))
    np.testing.assert_allclose(by_label.coef_, manual.coef_, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"`class_weight` has the keys \['dog'\]"):
        SoftmaxRegression(class_weight={"dog": 2.0}).fit(X, names)


def test_dask_softmax_regression_nan_sample_weight_is_refused(blobs):
    da = pytest.importorskip("dask.array")
    X, y = blobs
    sw = np.ones(len(y))
    sw[40] = math.nan
    with pytest.raises(ValueError, match=r"`sample_weight` must hold finite.*nan at index"):
        SoftmaxRegression(max_iter=3).fit(da.from_array(X.astype(np.float64), chunks=20),
                                          da.from_array(y, chunks=20),
                                          sample_weight=da.from_array(sw, chunks=20))


@pytest.mark.parametrize("fn, y_true", [
    (sparse_categorical_crossentropy, [0, 1, 2]),
    (categorical_crossentropy, np.eye(3)),
    (binary_crossentropy, np.eye(3)),
])
@pytest.mark.parametrize("bad", [math.nan, -0.5])
def test_loss_functions_nonfinite_or_negative_sample_weight_is_refused(fn, y_true, bad):
    z = np.array([[1.0, 0.0, -1.0], [0.5, 0.2, 0.1], [2.0, -2.0, 0.0]])
    with pytest.raises(ValueError, match=rf"`sample_weight` must hold finite, non-negative "
                                         rf"weights; got {bad!r} at index 1"):
        fn(y_true, z, from_logits=True, sample_weight=[1.0, bad, 1.0])


# ---- item 2: pos_weight -----------------------------------------------------------------


@pytest.mark.parametrize("pos_weight", [math.nan, math.inf, -1.0, 0.0, [1.0, math.nan]])
def test_binary_crossentropy_pos_weight_nan_gave_loss_0_and_negative_disagreed(pos_weight):
    y, z = [[1.0, 0.0]], [[0.5, -0.3]]
    match = r"`pos_weight` must hold finite, positive weights"
    with pytest.raises(ValueError, match=match):
        binary_crossentropy(y, z, from_logits=True, pos_weight=pos_weight)
    with pytest.raises(ValueError, match=match):
        BinaryCrossentropy(from_logits=True, pos_weight=pos_weight)


def test_binary_crossentropy_positive_pos_weight_per_label_still_weighs_the_positive_term():
    y, z = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[0.5, -0.3], [-1.0, 2.0]])
    pw = np.array([2.0, 0.5])
    # the formula by hand: -[pw y log sigma(z) + (1 - y) log sigma(-z)], averaged
    log_sig = -np.logaddexp(0, -z)
    want = np.mean(-(pw * y * log_sig + (1 - y) * -np.logaddexp(0, z)))
    assert binary_crossentropy(y, z, from_logits=True, pos_weight=pw) == pytest.approx(want,
                                                                                      rel=1e-14)


# ---- item 3: linear_cross_entropy on an empty batch -------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_cross_entropy_empty_batch_raised_zero_division(reduction, with_bias):
    W = np.arange(20.0).reshape(5, 4)
    args = (np.zeros((0, 4)), W, np.zeros(0, dtype=int)) + ((np.ones(5),) if with_bias else ())
    loss, gh, gw, *gb = linear_cross_entropy(*args, chunk_size=2, reduction=reduction)
    # the core's sparse cross-entropy over no rows is the reference: 0
    assert loss == sparse_categorical_crossentropy(np.zeros(0, int), np.zeros((0, 5)),
                                                   from_logits=True, reduction=reduction) == 0.0
    assert gh.shape == (0, 4)
    np.testing.assert_array_equal(gw, np.zeros((5, 4)))
    if with_bias:
        np.testing.assert_array_equal(gb[0], np.zeros(5))
    else:
        assert gb == []


# ---- item 4: uint64 labels ----------------------------------------------------------------

WRAPS = np.array([0, 2**64 - 100], dtype=np.uint64)  # 2**64 - 100 cast to int64 is -100


@pytest.mark.parametrize("mode", ["never", "always"])
def test_uint64_labels_wrapped_to_ignore_index(mode):
    z = np.zeros((2, 3))
    with _jit.kernel_mode(mode), \
            pytest.raises(ValueError, match=r"`y_true` must hold labels in \[0, 3\) or "
                                            r"ignore_index=-100; got 18446744073709551516"):
        sparse_categorical_crossentropy(WRAPS, z, from_logits=True, ignore_index=-100)
    with _jit.kernel_mode(mode), pytest.raises(ValueError, match="got 18446744073709551516"):
        SparseCategoricalCrossentropy(from_logits=True, ignore_index=-100).value_and_grad(WRAPS, z)


def test_uint64_labels_wrap_in_one_hot_linear_ce_and_sequential(blobs):
    with pytest.raises(ValueError, match=r"`labels` must hold labels in \[0, 3\); got 1844"):
        one_hot(WRAPS, 3)
    with pytest.raises(ValueError, match=r"`labels` must hold labels in \[0, 5\); got 1844"):
        linear_cross_entropy(np.ones((2, 4)), np.ones((5, 4)), WRAPS)
    X, _ = blobs
    with pytest.raises(ValueError, match=r"`y` must hold labels in \[0, 3\); got 1844"):
        _model().fit(X[:2], WRAPS, verbose=0)
    # in range, uint64 labels are plain labels
    np.testing.assert_array_equal(one_hot(np.array([2, 0], dtype=np.uint64), 3),
                                  [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize("make", [lambda: SoftmaxRegression(),
                                  lambda: MLPClassifier(epochs=2, random_state=0)],
                         ids=["softmax", "mlp"])
def test_uint64_labels_stay_exact_in_the_estimators(blobs, make):
    X, y = blobs
    big = np.array([7, 2**64 - 100, 2**63], dtype=np.uint64)
    labels = big[y]
    clf = make().fit(X, labels)
    assert clf.classes_.dtype == np.uint64
    np.testing.assert_array_equal(clf.classes_, np.sort(big))
    assert set(clf.predict(X).tolist()) <= set(big.tolist())


# ---- item 5: one_hot's num_classes ----------------------------------------------------------


def test_one_hot_huge_num_classes_said_array_too_big_without_naming_it():
    with pytest.raises(ValueError, match=r"`num_classes` asks for a result of shape "
                                         r"\(1, 4611686018427387904\)"):
        one_hot([0], 2**62)
    with pytest.raises(ValueError, match="`num_classes`"):
        one_hot(np.zeros(2**20, dtype=int), 2**40)  # 8 PiB of float64
    assert one_hot([1], 2).tolist() == [[0.0, 1.0]]


# ---- item 6: divergence, one rule for every training path ---------------------------------


@pytest.mark.parametrize("how", ["fit", "partial_fit", "early_stopping"])
def test_mlp_sgd_learning_rate_1e9_returned_normally_with_loss_4e149(blobs, how):
    X, y = blobs
    clf = MLPClassifier(optimizer="sgd", learning_rate=1e9, epochs=5, random_state=0,
                        early_stopping=how == "early_stopping")
    with pytest.raises(TrainingDivergedError,
                       match=r"at epoch \d+, step \d+ \(learning rate 1e\+09\)"):
        if how == "partial_fit":
            for _ in range(5):
                clf.partial_fit(X, y, classes=[0, 1, 2])
        else:
            clf.fit(X, y)
    assert all(np.isfinite(w).all() for w in clf.model_.get_weights())


def test_sequential_huge_loss_is_divergence_not_just_nan(blobs):
    X, y = blobs
    model = _model()
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=SGD(1e9))
    with pytest.raises(TrainingDivergedError, match=r"the loss grew to .* at epoch \d+, step \d+ "
                                                    r"\(learning rate 1e\+09\)"):
        model.fit(X, y, epochs=3, batch_size=16, shuffle=False, verbose=0)


def test_divergence_check_rule_is_a_factor_over_the_initial_loss():
    from logitlab._validation import DIVERGENCE_FACTOR, DivergenceCheck

    # threshold DIVERGENCE_FACTOR * max(initial, 1): below 1 the floor 1 applies
    for initial, threshold in [(0.25, DIVERGENCE_FACTOR), (3.0, 3.0 * DIVERGENCE_FACTOR)]:
        check = DivergenceCheck(0.1)
        check.loss(initial, 0, 0)
        check.loss(threshold, 0, 1)  # at the threshold: still training
        with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 4 \(learning rate 0.1\)"):
            check.loss(np.nextafter(threshold, np.inf), 1, 3)
    for bad in (math.nan, math.inf):
        with pytest.raises(TrainingDivergedError, match=f"the loss became {bad}"):
            DivergenceCheck(0.1).loss(bad, 0, 0)
    with pytest.raises(TrainingDivergedError, match="a gradient became NaN or inf"):
        DivergenceCheck(0.1).gradient(False, 0, 0)
