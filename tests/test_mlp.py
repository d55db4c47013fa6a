"""MLPClassifier's scikit-learn parity (issue 23): sample_weight, early stopping's split and
curves, and the public ``callbacks=`` the command line uses."""

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

from logitlab import MLPClassifier
from logitlab.callbacks import Callback
from logitlab.estimators import load_estimator, save_estimator


def _blobs(n=60, seed=0):
    X, y = make_blobs(n_samples=n, centers=[[-2, 1], [0, -1], [2, 1]], cluster_std=1.5,
                      random_state=seed)
    return X, y


def _multilabel(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 2] > 0.5], axis=1).astype(int)
    return X, Y


def _full_batch(**kw):
    """One batch per epoch (batch_size above any row count here), so shuffling changes nothing
    but the order of a sum; patience longer than the run, so every fit trains all its epochs."""
    params = dict(hidden_layer_sizes=(8,), batch_size=1000, epochs=40, learning_rate=0.01,
                  n_iter_no_change=1000, random_state=0)
    params.update(kw)
    return MLPClassifier(**params)


def _assert_same_fit(a, b, X, rtol=1e-9):
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=rtol)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=rtol, atol=1e-12)


# ---- sample_weight -------------------------------------------------------------------------

@pytest.mark.parametrize("data", [_blobs, _multilabel], ids=["multiclass", "multilabel"])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_integer_weights_equal_repeated_rows(data, alpha):
    X, y = data()
    w = np.random.default_rng(1).integers(0, 4, size=len(X))  # zeros included: rows dropped
    weighted = _full_batch(alpha=alpha).fit(X, y, sample_weight=w)
    repeated = _full_batch(alpha=alpha).fit(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    _assert_same_fit(weighted, repeated, X)
    unweighted = _full_batch(alpha=alpha).fit(X, y)  # the weights make a difference
    assert not np.allclose(unweighted.predict_proba(X), weighted.predict_proba(X), rtol=1e-3)


def test_zero_weights_equal_dropped_rows():
    X, y = _blobs()
    keep = np.arange(len(X)) % 3 != 0
    weighted = _full_batch().fit(X, y, sample_weight=keep.astype(float))
    dropped = _full_batch().fit(X[keep], y[keep])
    _assert_same_fit(weighted, dropped, X)


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_uniform_weights_equal_no_weights(batch_size):
    X, y = _blobs()
    plain = _full_batch(batch_size=batch_size, epochs=15).fit(X, y)
    for c in (0.25, 3.0):
        scaled = _full_batch(batch_size=batch_size, epochs=15).fit(
            X, y, sample_weight=np.full(len(X), c))
        _assert_same_fit(scaled, plain, X, rtol=1e-10)


def test_weighted_batch_loss_is_the_weighted_mean():
    # the first epoch's loss, one batch, is the loss of the initial network:
    # sum(w * l) / sum(w), computed here from the initial logits with scikit-learn's log_loss
    X, y = _blobs()
    w = np.random.default_rng(2).uniform(0, 5, size=len(X))
    clf = _full_batch(epochs=1, learning_rate=1e-300).fit(X, y, sample_weight=w)
    proba = clf.predict_proba(X)  # a step of 1e-300 leaves the weights as they were
    np.testing.assert_allclose(clf.loss_curve_[0], log_loss(y, proba, sample_weight=w),
                               rtol=1e-12)


def test_partial_fit_with_weights_is_one_epoch_of_fit():
    X, y = _blobs(90)
    w = np.random.default_rng(3).uniform(0, 2, size=len(X))
    one = MLPClassifier(hidden_layer_sizes=(8,), batch_size=16, epochs=1, random_state=0)
    one.fit(X, y, sample_weight=w)
    part = MLPClassifier(hidden_layer_sizes=(8,), batch_size=16, random_state=0)
    part.partial_fit(X, y, classes=[0, 1, 2], sample_weight=w)
    _assert_same_fit(part, one, X, rtol=1e-12)
    part.partial_fit(X, y, sample_weight=w)  # a second call keeps learning with weights
    assert part.n_iter_ == 2 and len(part.loss_curve_) == 2


def test_resume_fit_with_weights_ends_where_fit_does():
    X, y = _blobs(90)
    w = np.random.default_rng(4).uniform(0, 2, size=len(X))
    straight = MLPClassifier(hidden_layer_sizes=(8,), batch_size=16, epochs=6,
                             n_iter_no_change=100, random_state=0).fit(X, y, sample_weight=w)
    halted = MLPClassifier(hidden_layer_sizes=(8,), batch_size=16, epochs=3,
                           n_iter_no_change=100, random_state=0).fit(X, y, sample_weight=w)
    halted.set_params(epochs=6).resume_fit(X, y, sample_weight=w)
    _assert_same_fit(halted, straight, X, rtol=1e-12)


@pytest.mark.parametrize("how", ["fit", "partial_fit", "resume_fit"])
def test_bad_sample_weight_is_named(how):
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(4,), epochs=1, random_state=0)
    if how == "resume_fit":
        clf.fit(X, y)
    call = {"fit": lambda w: clf.fit(X, y, sample_weight=w),
            "partial_fit": lambda w: clf.partial_fit(X, y, classes=[0, 1, 2], sample_weight=w),
            "resume_fit": lambda w: clf.resume_fit(X, y, sample_weight=w)}[how]
    bad = np.ones(len(X))
    bad[5] = -1.0
    with pytest.raises(ValueError, match=r"`sample_weight` must hold finite, non-negative "
                                         r"weights; got -1.0 at index 5"):
        call(bad)
    bad[5] = np.nan
    with pytest.raises(ValueError, match="`sample_weight` must hold finite"):
        call(bad)
    with pytest.raises(ValueError, match=r"`sample_weight` must have shape \(60,\); "
                                         r"got shape \(59,\)"):
        call(np.ones(len(X) - 1))
    with pytest.raises(ValueError, match="`sample_weight` must hold at least one non-zero"):
        call(np.zeros(len(X)))
    with pytest.raises(TypeError, match="`sample_weight` must be an array-like of numbers"):
        call(["a"] * len(X))


def test_sample_weight_is_not_modified():
    X, y = _blobs()
    w = np.linspace(0.5, 3.0, len(X))
    before = w.copy()
    _full_batch(epochs=2).fit(X, y, sample_weight=w)
    _full_batch(epochs=2, early_stopping=True).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(w, before)


# ---- early stopping ------------------------------------------------------------------------

def _held_out(X, y, w, fraction, seed):
    """scikit-learn's split, made here independently: train_test_split stratified by class."""
    return train_test_split(X, y, w, test_size=fraction, random_state=seed, stratify=y)


def test_early_stopping_scores_a_stratified_weighted_split():
    X, y = _blobs(300, seed=5)
    w = np.random.default_rng(6).uniform(0.1, 3.0, size=len(X))
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.2,
                        n_iter_no_change=3, epochs=200, learning_rate=0.01, random_state=7)
    clf.fit(X, y, sample_weight=w)
    _, Xv, _, yv, _, wv = _held_out(X, y, w, 0.2, 7)
    n = clf.n_iter_
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == n == \
        len(clf.loss_curve_)
    assert n < 200 and clf.stop_reason_.startswith(f"stopped early at epoch {n} of 200: the "
                                                   "validation score did not improve")
    # the kept weights are those of the best-scoring epoch, scored on the stratified
    # split with its own weights
    assert clf.best_validation_score_ == pytest.approx(
        accuracy_score(yv, clf.predict(Xv), sample_weight=wv), rel=1e-12)
    assert max(clf.validation_scores_) - clf.best_validation_score_ <= 1e-4
    kept = [i for i, s in enumerate(clf.validation_scores_) if s == clf.best_validation_score_]
    # and the validation loss curve is the weighted log loss there (alpha=0: no penalty)
    loss = log_loss(yv, clf.predict_proba(Xv), sample_weight=wv)
    assert any(abs(clf.validation_loss_curve_[i] - loss) <= 1e-9 * loss for i in kept)


def test_early_stopping_unweighted_and_multilabel():
    X, y = _blobs(200, seed=8)
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, n_iter_no_change=2,
                        epochs=30, learning_rate=0.01, random_state=1).fit(X, y)
    _, Xv, _, yv = train_test_split(X, y, test_size=0.1, random_state=1, stratify=y)
    assert clf.best_validation_score_ == pytest.approx(clf.score(Xv, yv), rel=1e-12)
    X, Y = _multilabel(200)
    ml = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, n_iter_no_change=2,
                       epochs=30, learning_rate=0.01, random_state=1).fit(X, Y)
    _, Xv, _, Yv = train_test_split(X, Y, test_size=0.1, random_state=1)  # no stratification
    assert ml.best_validation_score_ == pytest.approx(ml.score(Xv, Yv), rel=1e-12)  # subset


def test_no_early_stopping_has_no_validation_attributes():
    X, y = _blobs()
    clf = _full_batch(epochs=3, early_stopping=True).fit(X, y)
    assert len(clf.validation_loss_curve_) == 3
    clf.set_params(early_stopping=False).fit(X, y)  # nothing stale from the fit before
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.validation_loss_curve_ is None


def test_early_stopping_split_errors_are_named():
    X, y = _blobs(30)
    y = y.copy()
    y[0] = 9  # a class with one sample cannot be stratified
    with pytest.raises(ValueError, match=r"early_stopping holds out validation_fraction=0.1 "
                                         r"of the 30 samples, stratified by class: The least"):
        MLPClassifier(early_stopping=True, epochs=2).fit(X, y)
    X, Y = _multilabel(9)  # not stratified: one held-out row of 9
    with pytest.raises(ValueError, match=r"the validation split holds 1 sample; increase "
                                         "`validation_fraction`"):
        MLPClassifier(early_stopping=True, epochs=2).fit(X, Y)
    w = np.ones(60)
    X, y = _blobs(60)
    _, _, _, _, _, wv = _held_out(X, y, np.arange(60), 0.1, 0)
    w[wv] = 0.0  # every held-out row weighs nothing
    with pytest.raises(ValueError, match="`sample_weight` is zero on every sample of the "
                                         "validation split"):
        MLPClassifier(early_stopping=True, epochs=2, random_state=0).fit(X, y, sample_weight=w)


def test_partial_fit_refuses_early_stopping():
    X, y = _blobs()
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_resume_fit_keeps_the_validation_curves():
    X, y = _blobs(120)
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, n_iter_no_change=100,
                        epochs=3, random_state=0).fit(X, y)
    first = list(clf.validation_loss_curve_)
    clf.set_params(epochs=5).resume_fit(X, y)
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_) == clf.n_iter_ == 5
    assert clf.validation_loss_curve_[:3] == first


# ---- callbacks -----------------------------------------------------------------------------

class _Watch(Callback):
    """What a user's callback sees: the estimator's curves and the logs, epoch by epoch."""

    def __init__(self, est):
        self.est = est
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, self.est.n_iter_, list(self.est.loss_curve_), dict(logs)))


def test_callbacks_see_the_estimator_current():
    X, y = _blobs()
    clf = _full_batch(epochs=4, early_stopping=True)
    watch = _Watch(clf)
    clf.set_params(callbacks=[watch])
    clf.fit(X, y)
    assert [s[0] for s in watch.seen] == [0, 1, 2, 3]
    for epoch, n_iter, curve, logs in watch.seen:
        assert n_iter == epoch + 1 == len(curve) and curve[-1] == logs["loss"]
        assert logs["val_accuracy"] == clf.validation_scores_[epoch]
        assert logs["val_loss"] == clf.validation_loss_curve_[epoch]
    assert watch.model is clf.model_
    assert clf.get_params()["callbacks"] == [watch]  # the parameter is the list as given
    watch.seen.clear()
    clf.set_params(early_stopping=False).partial_fit(X, y)  # one more epoch, the fifth
    assert [(s[1], len(s[2])) for s in watch.seen] == [(5, 5)]


def test_callbacks_parameter_is_checked_cloned_and_not_saved(tmp_path):
    X, y = _blobs()
    with pytest.raises(TypeError, match=r"`callbacks` must hold logitlab.callbacks.Callback "
                                        r"objects; item 1 is "):
        MLPClassifier(epochs=1, callbacks=[Callback(), print]).fit(X, y)
    with pytest.raises(ValueError, match="'callbacks' parameter of MLPClassifier must be"):
        MLPClassifier(epochs=1, callbacks="early").fit(X, y)
    cb = Callback()
    clf = MLPClassifier(epochs=1, callbacks=[cb])
    copy = clone(clf)
    assert len(copy.callbacks) == 1 and copy.callbacks[0] is not cb
    clf.fit(X, y)
    save_estimator(clf, tmp_path / "m.logitlab")
    loaded, _, _ = load_estimator(tmp_path / "m.logitlab")
    assert loaded.callbacks is None
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_issue23_cli_reached_into_estimator_internals():
    # the command line set est._epoch_callbacks and est._label_names, read est._multilabel
    # and est._logits; it now uses callbacks= and what the model file holds
    cli = Path(__file__).resolve().parents[1] / "src" / "logitlab" / "cli"
    found = [f"{p.name}:{i}: {line.strip()}" for p in sorted(cli.glob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"\best\._|\bself\.est\._", line)]
    assert found == []


# ---- found by review -------------------------------------------------------------------------


class _Epochs(Callback):
    """Records the epoch number each on_epoch_end receives."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(epoch)


def test_partial_fit_counts_epochs_on_and_resume_fit_carries_on():
    # partial_fit told its callbacks epoch 0 on every call and reset the network's epoch
    # count, so a resume_fit after it cut loss_curve_ back and misreported n_iter_
    X, y = _blobs()
    seen = _Epochs()
    clf = MLPClassifier(epochs=5, random_state=0, callbacks=[seen])
    for _ in range(3):
        clf.partial_fit(X, y, classes=np.unique(y))
    assert seen.seen == [0, 1, 2] and clf.n_iter_ == 3 and clf.model_.epoch == 3
    curve = list(clf.loss_curve_)
    clf.resume_fit(X, y)
    assert clf.loss_curve_[:3] == curve and clf.n_iter_ == 5 == len(clf.loss_curve_)
    assert seen.seen == [0, 1, 2, 3, 4]
    fitted = MLPClassifier(epochs=3, random_state=0).fit(X, y)
    fitted.partial_fit(X, y)
    assert fitted.n_iter_ == 4 == fitted.model_.epoch


def test_stop_reason_names_a_users_callback_that_stopped_training():
    from logitlab.callbacks import EarlyStopping

    X, y = _blobs()
    stop = EarlyStopping(monitor="loss", patience=0, min_delta=10)
    clf = MLPClassifier(callbacks=[stop], epochs=50, random_state=0).fit(X, y)
    assert clf.n_iter_ == 2 and clf.n_iter_ < 50
    assert clf.stop_reason_ == "stopped at epoch 2 of 50 by a callback (callbacks=)"


@pytest.mark.parametrize("early_stopping", [True, False])
def test_validation_attributes_survive_save_and_load(tmp_path, early_stopping):
    from logitlab.estimators import load_estimator, save_estimator

    X, y = _blobs(200)
    clf = MLPClassifier(early_stopping=early_stopping, epochs=5, random_state=0).fit(X, y)
    save_estimator(clf, tmp_path / "m.logitlab")
    back, _, _ = load_estimator(tmp_path / "m.logitlab")
    for name in ("validation_scores_", "validation_loss_curve_", "best_validation_score_"):
        assert getattr(back, name) == getattr(clf, name), name
    assert (back.validation_scores_ is None) == (not early_stopping)


@pytest.mark.parametrize("make", [MLPClassifier, lambda: __import__("logitlab").SoftmaxRegressionCV()],
                         ids=["MLPClassifier", "SoftmaxRegressionCV"])
def test_saving_an_unfitted_estimator_says_not_fitted(tmp_path, make):
    # it was an AttributeError about classes_
    from sklearn.exceptions import NotFittedError

    from logitlab.estimators import save_estimator

    with pytest.raises(NotFittedError, match="not fitted yet"):
        save_estimator(make(), tmp_path / "m.logitlab")
    assert not (tmp_path / "m.logitlab").exists()


def test_partial_fit_classes_must_stay_the_same():
    # A stranger's review: a later call's other classes were ignored, one class and NaN taken.
    X, y = make_blobs(n_samples=90, centers=3, random_state=0)
    clf = MLPClassifier(epochs=1, random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y, classes=[2, 1, 0])  # the same set, in another order: fine
    with pytest.raises(ValueError, match=r"`classes` \(0, 1, 2, 3\) is not the same"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="`classes` must hold at least 2 classes"):
        MLPClassifier().partial_fit(X[y == 0], y[y == 0], classes=[0])
    with pytest.raises(ValueError, match="`classes` must not hold NaN"):
        MLPClassifier().partial_fit(X, y.astype(float), classes=[0.0, 1.0, 2.0, np.nan])


def test_a_scalar_sample_weight_weighs_every_sample_alike():
    X, y = make_blobs(n_samples=90, centers=3, random_state=0)
    a = MLPClassifier(epochs=2, random_state=0).fit(X, y, sample_weight=2.0)
    b = MLPClassifier(epochs=2, random_state=0).fit(X, y, sample_weight=np.full(len(y), 2.0))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier(epochs=1).fit(X, y, sample_weight=-1.0)
