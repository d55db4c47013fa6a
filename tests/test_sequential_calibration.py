"""``Sequential.calibrate`` / ``predict_proba`` and multilabel thresholds (issue 22):
the calibration is the one ``logitlab.calibration`` fits on the same logits, it is
saved and loaded with the model, and a damaged entry in the file is a ModelFileError."""

import warnings

import numpy as np
import pytest

import hostile_files as hf
from logitlab import ModelFileError, Sequential, load_model
from logitlab import losses
from logitlab._softmax import sigmoid, softmax
from logitlab.calibration import (
    MatrixScaling,
    MultilabelThresholds,
    TemperatureScaling,
    VectorScaling,
)
from logitlab.layers import Dense

from test_model_files import load_rejected


def _data(rng, n=400, kind="multiclass"):
    X = rng.normal(size=(n, 6)).astype(np.float32)
    if kind == "multilabel":
        Y = ((X[:, :3] + 0.7 * rng.normal(size=(n, 3))) > 0).astype(np.int64)
        return X, Y
    if kind == "binary":
        return X, (X[:, 0] + 0.7 * rng.normal(size=n) > 0).astype(np.int64)
    return X, np.argmax(X[:, :4] + 0.8 * rng.normal(size=(n, 4)), axis=1)


def _model(kind="multiclass", dtype="float32"):
    """An over-fitted little network whose last layer gives logits."""
    units = {"multiclass": 4, "binary": 1, "multilabel": 3}[kind]
    loss = ("sparse_categorical_crossentropy" if kind == "multiclass"
            else "binary_crossentropy")
    m = Sequential([Dense(32, activation="relu"), Dense(units)], seed=0, dtype=dtype)
    m.compile(loss=losses.get(loss, from_logits=True), optimizer="adam")
    return m


def _fitted(rng, kind="multiclass"):
    X, y = _data(rng, kind=kind)
    m = _model(kind)
    m.fit(X[:200], y[:200] if kind != "binary" else y[:200, None], epochs=60, batch_size=32,
          verbose=0)
    return m, X, y


@pytest.mark.parametrize("method, cls", [("temperature", TemperatureScaling),
                                         ("vector", VectorScaling),
                                         ("matrix", MatrixScaling)])
def test_calibrated_proba_equals_the_scaling_fitted_by_hand(rng, method, cls):
    m, X, y = _fitted(rng)
    raw = m.predict(X[300:])
    m.calibrate(X[200:300], y[200:300], method=method)
    by_hand = cls().fit(m.predict(X[200:300]), y[200:300])
    np.testing.assert_array_equal(m.predict(X[300:]), raw)  # predict stays the raw logits
    np.testing.assert_allclose(m.predict_proba(X[300:]), by_hand.predict_proba(raw),
                               rtol=1e-12, atol=1e-15)
    if method == "temperature":
        assert m.calibration.temperature_ == by_hand.temperature_
        # softmax of the scaled logits, written out
        np.testing.assert_allclose(m.predict_proba(X[300:]),
                                   softmax(raw.astype(np.float64) / by_hand.temperature_, axis=1),
                                   rtol=1e-12)
        assert m.calibration.temperature_ > 1  # the over-fitted model is over-confident


def test_uncalibrated_proba_is_the_softmax_or_sigmoid_of_the_logits(rng):
    m, X, _ = _fitted(rng)
    np.testing.assert_allclose(m.predict_proba(X), softmax(m.predict(X), axis=1), rtol=1e-6)
    mb, Xb, _ = _fitted(rng, "binary")
    np.testing.assert_allclose(mb.predict_proba(Xb), sigmoid(mb.predict(Xb)), rtol=1e-6)


@pytest.mark.parametrize("kind", ["binary", "multilabel"])
def test_sigmoid_models_get_per_label_temperatures(rng, kind):
    m, X, y = _fitted(rng, kind)
    m.calibrate(X[200:300], y[200:300])
    by_hand = TemperatureScaling().fit(m.predict(X[200:300]), y[200:300])
    t = np.atleast_1d(m.calibration.temperature_)
    assert t.shape == ((3,) if kind == "multilabel" else (1,))
    np.testing.assert_array_equal(t, np.atleast_1d(by_hand.temperature_))
    z = m.predict(X[300:]).astype(np.float64)
    np.testing.assert_allclose(m.predict_proba(X[300:]), sigmoid(z / t), rtol=1e-12)


@pytest.mark.parametrize("kind, method", [("multiclass", "temperature"), ("multiclass", "vector"),
                                          ("multiclass", "matrix"), ("binary", "temperature"),
                                          ("multilabel", "temperature")])
def test_calibration_round_trips_bit_equal(rng, tmp_path, kind, method):
    m, X, y = _fitted(rng, kind)
    m.calibrate(X[200:300], y[200:300], method=method)
    m.save(tmp_path / "m.logitlab")
    back = load_model(tmp_path / "m.logitlab")
    assert type(back.calibration) is type(m.calibration)
    for name in type(m.calibration)._fitted:
        np.testing.assert_array_equal(getattr(back.calibration, name + "_"),
                                      getattr(m.calibration, name + "_"))
    np.testing.assert_array_equal(back.predict_proba(X[300:]), m.predict_proba(X[300:]))


def test_matrix_scaling_without_penalty_round_trips(rng, tmp_path):
    m, X, y = _fitted(rng)
    m.calibrate(X[200:300], y[200:300], method="matrix", C=np.inf)
    m.save(tmp_path / "m.logitlab")
    back = load_model(tmp_path / "m.logitlab")
    assert back.calibration.C == np.inf
    np.testing.assert_array_equal(back.predict_proba(X[300:]), m.predict_proba(X[300:]))


@pytest.fixture
def calibrated_bytes(tmp_path, rng):
    m, X, y = _fitted(rng)
    m.calibrate(X[200:300], y[200:300])
    m.save(tmp_path / "cal.logitlab")
    return (tmp_path / "cal.logitlab").read_bytes()


@pytest.mark.parametrize("value, match", [
    (np.array([0.0]), "temperature.*must be positive"),
    (np.array([-1.5]), "temperature.*must be positive"),
    (np.array([np.nan]), "temperature.*NaN or inf"),
    (np.array([np.inf]), "temperature.*NaN or inf"),
    (np.array([1.2, 1.3]), r"'calibration/temperature' must have shape \(1,\)"),
    (np.array([1.2], dtype=np.float32), "temperature.*must be float64"),
])
def test_damaged_temperature_is_a_model_file_error(tmp_path, calibrated_bytes, value, match):
    path = tmp_path / "bad.logitlab"
    path.write_bytes(hf.rewrite(calibrated_bytes, arrays={"calibration/temperature": value}))
    load_rejected(path, match)


@pytest.mark.parametrize("change, match", [
    (lambda h: h["config"]["calibration"].update(method="isotonic"), "must name a method"),
    (lambda h: h["config"]["calibration"].update(kind="binary"), "kind must be one of"),
    (lambda h: h["config"]["calibration"].update(method="vector"), "'calibration/coef' is missing"),
    (lambda h: h["config"]["calibration"].update(code="import os"), "must hold"),
    (lambda h: h["config"].pop("calibration"), "unexpected array 'calibration/temperature'"),
])
def test_damaged_calibration_entry_is_a_model_file_error(tmp_path, calibrated_bytes, change,
                                                        match):
    path = tmp_path / "bad.logitlab"
    path.write_bytes(hf.rewrite(calibrated_bytes, change))
    load_rejected(path, match)


def test_calibrate_argument_errors(rng):
    m, X, y = _fitted(rng)
    with pytest.raises(ValueError, match="`method` must be one of"):
        m.calibrate(X[200:300], y[200:300], method="isotonic")
    with pytest.raises(ValueError, match="integer class labels"):
        m.calibrate(X[200:300], np.eye(4)[y[200:300]])
    with pytest.raises(ValueError, match="class"):  # a class missing from the calibration set
        m.calibrate(X[200:300], np.minimum(y[200:300], 2))
    assert m.calibration is None
    probs = Sequential([Dense(4, activation="softmax")], seed=0)
    probs.compile(loss="sparse_categorical_crossentropy", optimizer="adam")  # from_logits=False
    probs.build(6)
    with pytest.raises(ValueError, match="from_logits=False"):
        probs.calibrate(X[200:300], y[200:300])
    ml, Xl, Yl = _fitted(rng, "multilabel")
    with pytest.raises(ValueError, match="indicator matrix of shape"):
        ml.calibrate(Xl[200:300], Yl[200:300, 0])


# ---- multilabel thresholds ----------------------------------------------------------

def test_thresholds_set_on_predict_proba_decide_predict_labels(rng, tmp_path):
    m, X, Y = _fitted(rng, "multilabel")
    m.calibrate(X[200:300], Y[200:300])
    assert_default = m.predict_labels(X[300:])
    np.testing.assert_array_equal(assert_default, (m.predict_proba(X[300:]) >= 0.5).astype(int))
    tuned = MultilabelThresholds().fit(m.predict_proba(X[200:300]), Y[200:300])
    m.set_thresholds(tuned)
    np.testing.assert_array_equal(m.predict_labels(X[300:]),
                                  tuned.predict(m.predict_proba(X[300:])))
    m.save(tmp_path / "t.logitlab")
    back = load_model(tmp_path / "t.logitlab")
    np.testing.assert_array_equal(back.thresholds, tuned.thresholds_)
    np.testing.assert_array_equal(back.predict_labels(X[300:]), m.predict_labels(X[300:]))
    with pytest.warns(UserWarning, match="thresholds.*dropped"):
        m.calibrate(X[200:300], Y[200:300])
    assert m.thresholds is None


def test_thresholds_may_be_inf_but_not_nan(rng, tmp_path):
    m, X, Y = _fitted(rng, "multilabel")
    m.set_thresholds([0.3, np.inf, 0.7])
    assert (m.predict_labels(X)[:, 1] == 0).all()
    m.save(tmp_path / "t.logitlab")
    blob = (tmp_path / "t.logitlab").read_bytes()
    np.testing.assert_array_equal(load_model(tmp_path / "t.logitlab").thresholds, [0.3, np.inf, 0.7])
    for bad, match in [(np.array([0.3, np.nan, 0.7]), "NaN or -inf"),
                       (np.array([0.3, -np.inf, 0.7]), "NaN or -inf"),
                       (np.array([0.3, 0.7]), r"must have shape \(3,\)")]:
        path = tmp_path / "bad.logitlab"
        path.write_bytes(hf.rewrite(blob, arrays={"thresholds": bad}))
        load_rejected(path, match)
    with pytest.raises(ValueError, match=r"shape \(3,\); got shape \(2,\)"):
        m.set_thresholds([0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        m.set_thresholds([0.5, np.nan, 0.5])
    with pytest.raises(ValueError, match="not fitted"):
        m.set_thresholds(MultilabelThresholds())


def test_predict_labels_refuses_softmax_models(rng):
    m, X, _ = _fitted(rng)
    with pytest.raises(ValueError, match="softmax"):
        m.predict_labels(X)


def test_mlp_classifier_multilabel_thresholds_are_used_and_saved(rng, tmp_path):
    from logitlab import MLPClassifier
    from logitlab.estimators import load_estimator, save_estimator

    X, Y = _data(rng, n=600, kind="multilabel")
    clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=20, random_state=0).fit(X[:300], Y[:300])
    np.testing.assert_array_equal(clf.predict(X[450:]), (clf.predict_proba(X[450:]) > 0.5))
    tuned = MultilabelThresholds().fit(clf.predict_proba(X[300:450]), Y[300:450])
    clf.set_thresholds(tuned)
    expected = tuned.predict(clf.predict_proba(X[450:]))
    assert (expected != (clf.predict_proba(X[450:]) > 0.5)).any()  # the thresholds matter
    np.testing.assert_array_equal(clf.predict(X[450:]), expected)
    save_estimator(clf, tmp_path / "ml.logitlab")
    for predict_only in (False, True):
        back, _, _ = load_estimator(tmp_path / "ml.logitlab", predict_only=predict_only)
        np.testing.assert_array_equal(back.predict(X[450:]), expected)
    clf.set_thresholds(None)
    np.testing.assert_array_equal(clf.predict(X[450:]), (clf.predict_proba(X[450:]) > 0.5))
    y = np.argmax(X[:300, :3], axis=1)
    single = MLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(X[:300], y)
    with pytest.raises(ValueError, match="multilabel"):
        single.set_thresholds([0.5, 0.5, 0.5])
