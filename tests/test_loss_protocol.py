"""The loss protocol: a loss defined outside logitlab trains, saves, loads and evaluates."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from helpers import assert_grad_close, numerical_grad
from logitlab import ModelFileError, Sequential, load_model
from logitlab import losses
from logitlab import optimizers as opt
from logitlab.layers import Dense
from logitlab.losses import Loss, register_loss
from logitlab.losses import _base

CENTERS = [[-5, 2], [-2, -2], [1, 2], [5, -2]]


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class BrierScore(Loss):
    """Multiclass Brier score from logits, sum_j (softmax(z)_j - onehot(y)_j)^2, times scale.

    Gradient: with d = p - e_y and J = diag(p) - p p^T, dL/dz = 2 J d = 2 (p * d - p (p . d)).
    """

    target = "sparse"
    from_logits = True

    def __init__(self, scale=1.0):
        self.scale = float(scale)

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, out=None):
        z = np.asarray(y_pred, dtype=np.float64)
        y = np.asarray(y_true).astype(int)
        p = _softmax(z)
        d = p.copy()
        d[np.arange(len(y)), y] -= 1.0
        n = len(y)
        value = self.scale * np.sum(d * d) / n
        grad = self.scale * 2.0 * (p * d - p * np.sum(p * d, axis=-1, keepdims=True)) / n
        return value, grad.astype(np.asarray(y_pred).dtype)


@register_loss(name="my_project.multilabel_squared")
class MultilabelSquared(Loss):
    """Squared error on sigmoid outputs, one 0/1 target per output (multilabel)."""

    target = "binary"
    from_logits = True

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, out=None):
        z = np.asarray(y_pred, dtype=np.float64)
        s = 1.0 / (1.0 + np.exp(-z))
        d = s - np.asarray(y_true, dtype=np.float64)
        return np.mean(d * d), (2.0 * d * s * (1.0 - s) / d.size).astype(np.asarray(y_pred).dtype)


def test_a_custom_loss_has_the_gradient_it_claims(rng):
    z = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, 5)
    loss = BrierScore(scale=0.7)
    _, g = loss.value_and_grad(y, z)
    assert_grad_close(g, numerical_grad(lambda v: loss(y, v), z), rtol=1e-7)


def test_a_custom_loss_trains_saves_loads_and_evaluates(tmp_path):
    X, y = make_blobs(n_samples=400, centers=CENTERS, random_state=2)
    model = Sequential([Dense(16, activation="relu"), Dense(4)], seed=3)
    model.compile(loss=BrierScore(scale=2.0), optimizer=opt.Adam(0.01), metrics=["accuracy"])
    history = model.fit(X, y, epochs=15, batch_size=32, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    # "accuracy" is the one the loss's target kind declares: argmax of the outputs vs labels
    loss_value, acc = model.evaluate(X, y)
    assert acc == pytest.approx(np.mean(np.argmax(model.predict(X), axis=1) == y))
    assert acc > 0.9
    # the loss value reported is the loss's own on the model's outputs
    assert loss_value == pytest.approx(BrierScore(scale=2.0)(y, model.predict(X)), rel=1e-5)

    path = tmp_path / "brier.logitlab"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded.loss) is BrierScore and loaded.loss.scale == 2.0
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.evaluate(X, y) == model.evaluate(X, y)
    # training on continues identically (optimizer and shuffling state came along)
    a = model.fit(X, y, epochs=2, verbose=0).history["loss"]
    b = loaded.fit(X, y, epochs=2, verbose=0).history["loss"]
    assert a == b


def test_a_custom_loss_saves_under_its_registered_name(tmp_path):
    X, y = make_blobs(n_samples=200, centers=CENTERS, random_state=4)
    Y = np.stack([y == 0, y == 1], axis=1).astype(float)  # two labels, multilabel
    model = Sequential([Dense(8, activation="relu"), Dense(2)], seed=1)
    model.compile(loss="my_project.multilabel_squared", optimizer=opt.Adam(0.02),
                  metrics=["accuracy"])
    model.fit(X, Y, epochs=10, verbose=0)
    _, acc = model.evaluate(X, Y)
    # the binary accuracy, thresholded at logit 0 since the loss declares from_logits
    assert acc == pytest.approx(np.mean((model.predict(X) > 0) == (Y > 0.5)))
    config, _ = model.get_state()
    assert config["compile"]["loss"] == {"class_name": "my_project.multilabel_squared",
                                         "config": {}}
    model.save(tmp_path / "m.logitlab")
    loaded = load_model(tmp_path / "m.logitlab")
    assert type(loaded.loss) is MultilabelSquared
    assert loaded.evaluate(X, Y) == model.evaluate(X, Y)


def test_loading_a_loss_nobody_defined_names_it(tmp_path, monkeypatch):
    X, y = make_blobs(n_samples=50, centers=CENTERS, random_state=4)
    model = Sequential([Dense(4)], seed=0)
    model.compile(loss=BrierScore(), optimizer="sgd")
    model.fit(X, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.logitlab")
    monkeypatch.delitem(_base._REGISTRY, "BrierScore")  # as in a session that never defined it
    with pytest.raises(ModelFileError, match="unknown loss 'BrierScore'"):
        load_model(tmp_path / "m.logitlab")


def test_an_unregistered_loss_is_refused_at_save_not_at_load(tmp_path):
    class Private(BrierScore, register=False):
        pass

    model = Sequential([Dense(4)], seed=0)
    model.compile(loss=Private(), optimizer="sgd")
    model.build(2)
    with pytest.raises(ValueError, match="not registered"):
        model.save(tmp_path / "m.logitlab")
    assert not (tmp_path / "m.logitlab").exists()


def test_a_name_held_by_another_loss_cannot_be_taken():
    with pytest.raises(ValueError, match="already registered"):
        class SparseCategoricalCrossentropy(Loss):  # noqa: F811 - the clash is the point
            pass
    assert losses.get("SparseCategoricalCrossentropy").__module__ == "logitlab.losses._api"


def test_get_builds_from_names_classes_and_saved_specs():
    a = losses.get("binary_crossentropy", from_logits=True)
    b = losses.get({"class_name": "BinaryCrossentropy", "config": {"from_logits": True}})
    c = losses.get(BrierScore, scale=3.0)
    assert a.get_config() == b.get_config() and a.from_logits
    assert c.scale == 3.0
    with pytest.raises(ValueError, match="registered loss name"):
        losses.get("no_such_loss")
    with pytest.raises(TypeError, match="`loss` must be"):
        losses.get(3)


def test_a_bad_target_kind_is_named():
    with pytest.raises(ValueError, match="target must be one of"):
        class Odd(Loss, register=False):
            target = "ordinal"


def test_the_builtin_losses_declare_their_protocol():
    assert losses.get("sparse_categorical_crossentropy").metric() == "sparse_categorical_accuracy"
    assert losses.get("categorical_crossentropy").metric() == "categorical_accuracy"
    assert losses.get("binary_crossentropy").metric() == "binary_accuracy"
    sparse = losses.get("sparse_categorical_crossentropy", from_logits=True)
    assert sparse.inplace_value_and_grad() is not None
    assert losses.get("sparse_categorical_crossentropy", from_logits=True,
                      label_smoothing=0.1).inplace_value_and_grad() is None
