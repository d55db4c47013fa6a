"""Sequential: Keras's numbers, full-network gradients, the seeds' lab, saving, callbacks."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs

import logitlab
from helpers import assert_grad_close, numerical_grad
from logitlab import Sequential, TrainingDivergedError, load_model, softmax
from logitlab import optimizers as opt
from logitlab.callbacks import Callback, EarlyStopping, ModelCheckpoint
from logitlab.layers import Dense, Dropout
from logitlab.losses import BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy

KERAS = np.load(Path(__file__).parent / "fixtures" / "keras_reference.npz", allow_pickle=False)
CENTERS = [[-5, 2], [-2, -2], [1, 2], [5, -2]]


def seeds_model(last="linear", seed=None, dtype="float32"):
    return Sequential([Dense(25, activation="relu"), Dense(15, activation="relu"),
                       Dense(4, activation=last)], seed=seed, dtype=dtype)


OPTIMIZERS = {
    "adam": lambda: opt.Adam(0.001),
    "adam_amsgrad": lambda: opt.Adam(0.01, amsgrad=True),
    "sgd": lambda: opt.SGD(0.05),
    "sgd_nesterov": lambda: opt.SGD(0.05, momentum=0.9, nesterov=True),
    "rmsprop": lambda: opt.RMSprop(0.001),
    "adamw": lambda: opt.AdamW(0.003, weight_decay=0.05),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_one_epoch_gives_keras_weights(name):
    """Same initial weights, unshuffled batches: Keras 3's weights to 1e-5."""
    model = seeds_model()
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=OPTIMIZERS[name]())
    model.build(2)
    model.set_weights([KERAS[f"init_w{i}"] for i in range(6)])
    hist = model.fit(KERAS["train_X"], KERAS["train_y"], batch_size=32, epochs=1, shuffle=False,
                     verbose=0)
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, KERAS[f"preferred_{name}_w{i}"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(hist.history["loss"], KERAS[f"preferred_{name}_loss"], rtol=1e-5)
    np.testing.assert_allclose(model.predict(KERAS["train_X"][:5]), KERAS[f"preferred_{name}_pred"],
                               atol=1e-4)


def network_objective(model, x, y):
    def f(flat):
        saved = model.get_weights()
        chunks, i = [], 0
        for w in saved:
            chunks.append(flat[i:i + w.size].reshape(w.shape))
            i += w.size
        model.set_weights(chunks)
        value = model._batch_loss(y, model._forward(x), None)[0]
        model.set_weights(saved)
        return value
    return f


@pytest.mark.parametrize("organisation", ["preferred", "obvious", "multilabel", "categorical"])
def test_full_network_gradient_matches_finite_differences(organisation, rng):
    x = rng.normal(size=(6, 3))
    if organisation == "multilabel":
        model = Sequential([Dense(5, "tanh", kernel_regularizer="l2"), Dense(3, "linear")],
                           seed=0, dtype="float64")
        loss, y = BinaryCrossentropy(from_logits=True), (rng.uniform(size=(6, 3)) > 0.5) * 1.0
    elif organisation == "categorical":
        model = Sequential([Dense(5, "gelu"), Dense(3, "softmax")], seed=0, dtype="float64")
        loss, y = CategoricalCrossentropy(label_smoothing=0.1), np.eye(3)[rng.integers(0, 3, 6)]
    else:
        last = "linear" if organisation == "preferred" else "softmax"
        model = Sequential([Dense(5, "tanh"), Dense(4, "elu"), Dense(3, last)], seed=0,
                           dtype="float64")
        loss, y = SparseCategoricalCrossentropy(from_logits=last == "linear"), rng.integers(0, 3, 6)
    model.compile(loss=loss, optimizer="sgd")
    model.build(3)
    out = model._forward(x, training=True)
    _, g = model._batch_loss(y, out, None)
    model._backward(g)
    analytic = np.concatenate([gr.ravel() for gr in model._grads])
    flat = np.concatenate([w.ravel() for w in model.get_weights()])
    assert_grad_close(analytic, numerical_grad(network_objective(model, x, y), flat), rtol=1e-6)


def test_seeds_lab_reaches_the_seeds_numbers():
    """Over seeds 0-4: median last-epoch loss <= 0.08, training accuracy >= 0.97."""
    X, y = make_blobs(n_samples=2000, centers=CENTERS, cluster_std=1.0, random_state=30)
    losses, accs = [], []
    for seed in range(5):
        logitlab.set_random_seed(seed)
        model = seeds_model()
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=opt.Adam(0.001))
        hist = model.fit(X, y, epochs=10, verbose=0)
        losses.append(hist.history["loss"][-1])
        accs.append(np.mean(np.argmax(model.predict(X), axis=1) == y))
    assert np.median(losses) <= 0.08, losses
    assert min(accs) >= 0.97, accs


def test_the_obvious_model_trains_too():
    X, y = make_blobs(n_samples=2000, centers=CENTERS, cluster_std=1.0, random_state=30)
    model = seeds_model(last="softmax", seed=1)
    model.compile(loss=SparseCategoricalCrossentropy(), optimizer=opt.Adam(0.001))
    model.fit(X, y, epochs=10, verbose=0)
    p = model.predict(X)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)  # probabilities, not logits
    assert np.mean(p.argmax(1) == y) >= 0.95


def test_set_random_seed_makes_runs_identical():
    X, y = make_blobs(n_samples=300, centers=CENTERS, random_state=1)
    runs = []
    for _ in range(2):
        logitlab.set_random_seed(42)
        model = Sequential([Dense(8, "relu"), Dropout(0.2), Dense(4)])
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
        runs.append((model.fit(X, y, epochs=3, verbose=0).history["loss"], model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_multilabel_car_bus_pedestrian():
    """Three independent labels per example, sigmoid outputs, binary cross-entropy."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 4))
    Y = np.stack([X[:, 0] + X[:, 1] > 0, X[:, 2] > 0.3, X[:, 3] - X[:, 0] > 0], axis=1) * 1.0
    model = Sequential([Dense(32, "relu"), Dense(3)], seed=0)
    model.compile(loss=BinaryCrossentropy(from_logits=True), optimizer=opt.Adam(0.01),
                  metrics=["accuracy"])
    hist = model.fit(X, Y, epochs=20, verbose=0, validation_split=0.2)
    assert hist.history["val_accuracy"][-1] > 0.95
    proba = logitlab.sigmoid(model.predict(X[:5]))
    assert proba.shape == (5, 3) and np.all((proba >= 0) & (proba <= 1))


def test_history_metrics_and_evaluate():
    X, y = make_blobs(n_samples=400, centers=CENTERS, random_state=2)
    model = seeds_model(seed=3)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam",
                  metrics=["accuracy", "top_k_accuracy"])
    model.loss = SparseCategoricalCrossentropy(from_logits=True)
    model.compile(loss=model.loss, optimizer="adam", metrics=["accuracy", "top_2_accuracy"])
    hist = model.fit(X, y, epochs=2, verbose=0, validation_data=(X[:50], y[:50]))
    assert set(hist.history) == {"loss", "accuracy", "top_2_accuracy", "val_loss", "val_accuracy",
                                 "val_top_2_accuracy"}
    res = model.evaluate(X, y, return_dict=True)
    acc = np.mean(model.predict(X).argmax(1) == y)
    assert res["accuracy"] == pytest.approx(acc)
    assert res["loss"] == pytest.approx(
        float(SparseCategoricalCrossentropy(from_logits=True)(y, model.predict(X))), rel=1e-5)


def test_progress_output(capsys):
    X, y = make_blobs(n_samples=100, centers=CENTERS, random_state=2)
    model = seeds_model(seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    model.fit(X, y, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "4/4" in out and "loss:" in out
    model.fit(X, y, epochs=2, verbose=2)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Epoch")]
    assert len(lines) == 2 and "loss:" in lines[0]


def test_save_and_load_round_trip(tmp_path):
    X, y = make_blobs(n_samples=200, centers=CENTERS, random_state=2)
    model = seeds_model(seed=5)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                  optimizer=opt.Adam(0.002), metrics=["accuracy"])
    model.fit(X, y, epochs=2, verbose=0)
    path = tmp_path / "m.logitlab"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.loss.label_smoothing == 0.1 and loaded.optimizer.learning_rate == 0.002
    # training on continues identically: optimizer state and shuffling state came along
    a = model.fit(X, y, epochs=4, initial_epoch=2, verbose=0).history["loss"]
    b = loaded.fit(X, y, epochs=4, initial_epoch=2, verbose=0).history["loss"]
    assert a == b
    for wa, wb in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(wa, wb)


class _WeightsByValLoss(Callback):
    """Records (validation loss, weights) at the end of every epoch."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append((logs["val_loss"], self.model.get_weights()))


def test_early_stopping_restores_best_weights():
    X, y = make_blobs(n_samples=200, centers=CENTERS, random_state=2)
    model = seeds_model(seed=0)
    # a noisy learning rate, so the validation loss turns up (2.0 blew the loss up to 1.5e7
    # in epoch 2, which the divergence check now stops)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=opt.SGD(1.0))

    rec = _WeightsByValLoss()
    stop = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    hist = model.fit(X, y, epochs=30, verbose=0, validation_split=0.3, callbacks=[rec, stop])
    if stop.stopped_epoch is not None:
        assert len(hist.history["loss"]) < 30
    best = min(rec.weights, key=lambda t: t[0])[1]
    for a, b in zip(model.get_weights(), best):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_writes_loadable_files(tmp_path):
    X, y = make_blobs(n_samples=100, centers=CENTERS, random_state=2)
    model = seeds_model(seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    model.fit(X, y, epochs=3, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c{epoch}.ll",
                                                                    monitor="loss")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.ll", "c2.ll", "c3.ll"]
    assert load_model(tmp_path / "c2.ll").epoch == 2


def test_divergence_is_caught_and_weights_are_kept():
    X, y = make_blobs(n_samples=64, centers=CENTERS, random_state=2)
    X[40] = 1e30  # a wild example: its batch overflows the loss
    model = seeds_model(seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=opt.SGD(1e3))
    snapshots = []

    class Snap(Callback):
        def on_batch_end(self, batch, logs=None):
            snapshots.append(self.model.get_weights())

    with pytest.raises(TrainingDivergedError, match=r"epoch \d+, step \d+ \(learning rate 1000\)"):
        model.fit(X.astype(np.float32), y, epochs=5, batch_size=16, shuffle=False, verbose=0,
                  callbacks=[Snap()])
    assert all(np.isfinite(w).all() for w in model.get_weights())
    last = snapshots[-1] if snapshots else None
    if last is not None:
        for a, b in zip(model.get_weights(), last):
            np.testing.assert_array_equal(a, b)


def test_summary_lists_layers_and_parameters():
    model = seeds_model(seed=0)
    model.build(2)
    text = model.summary(print_fn=lambda s: None)
    assert "(None, 25)" in text and "Total params: 529" in text  # 75 + 390 + 64


def test_clear_errors():
    model = seeds_model(seed=0)
    with pytest.raises(ValueError, match="call compile"):
        model.fit(np.zeros((3, 2)), [0, 1, 2])
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    with pytest.raises(ValueError, match="same number of samples; got 3 and 2"):
        model.fit(np.zeros((3, 2)), [0, 1], verbose=0)
    with pytest.raises(ValueError, match="must be 2-D"):
        model.fit(np.zeros(3), [0, 1, 2], verbose=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        model.fit(np.array([[np.nan, 1.0]]), [0], verbose=0)
    with pytest.raises(ValueError, match=r"labels in \[0, 4\); got 7"):
        model.fit(np.zeros((2, 2)), [0, 7], verbose=0)
    model.predict(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="has 3 features, but the model was built for 2"):
        model.predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="`optimizer`"):
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adamax")


def test_lab_softmax_turns_logits_into_probabilities():
    X, y = make_blobs(n_samples=200, centers=CENTERS, random_state=30)
    model = seeds_model(seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=opt.Adam(0.01))
    model.fit(X, y, epochs=3, verbose=0)
    logits = model.predict(X)
    assert logits.min() < 0 or logits.max() > 1  # not probabilities
    p = softmax(logits)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(p.argmax(1), logits.argmax(1))


def test_early_stopping_kept_the_last_weights_when_all_epochs_ran():
    # restore_best_weights restored only when the patience ran out: a run that used all its
    # epochs ended with its last weights, not its best (Keras 3 restores at the end of training)
    X, y = make_blobs(n_samples=200, centers=CENTERS, random_state=2)
    model = seeds_model(seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=opt.SGD(1.0))

    rec = _WeightsByValLoss()
    stop = EarlyStopping(monitor="val_loss", patience=1000, restore_best_weights=True)
    model.fit(X, y, epochs=4, verbose=0, validation_split=0.3, callbacks=[rec, stop])
    assert stop.stopped_epoch is None
    losses = [v for v, _ in rec.weights]
    best = int(np.argmin(losses))
    assert best < len(losses) - 1, "the last epoch was the best: the test shows nothing"
    for a, b in zip(model.get_weights(), rec.weights[best][1]):
        np.testing.assert_array_equal(a, b)


def _weighted_ce(model, X, y, w):
    """Keras's weighted mean over a batch, sum(w * l) / n, from SciPy's log_softmax."""
    from scipy.special import log_softmax

    logp = log_softmax(model.predict(X).astype(np.float64), axis=1)
    return float(np.sum(-w * logp[np.arange(len(y)), y]) / len(y))


def test_evaluate_and_validation_data_take_sample_weights(rng):
    X, y = make_blobs(n_samples=90, centers=CENTERS, random_state=3)
    Xv, yv = X[60:], y[60:]
    w = rng.uniform(0, 3, size=len(yv))
    model = seeds_model(seed=1, dtype="float64")
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")

    class Val(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.seen = logs["val_loss"], _weighted_ce(self.model, Xv, yv, w)

    val = Val()
    model.fit(X[:60], y[:60], epochs=2, batch_size=7, verbose=0, validation_data=(Xv, yv, w),
              callbacks=[val])
    # the validation loss is weighted (batches of 7: the running mean over them is the same)
    np.testing.assert_allclose(val.seen[0], val.seen[1], rtol=1e-12)
    np.testing.assert_allclose(model.evaluate(Xv, yv, batch_size=4, sample_weight=w),
                               _weighted_ce(model, Xv, yv, w), rtol=1e-12)
    np.testing.assert_allclose(model.evaluate(Xv, yv, sample_weight=np.ones(len(yv))),
                               model.evaluate(Xv, yv), rtol=1e-15)
    with pytest.raises(ValueError, match=r"`sample_weight` must have shape \(30,\); got shape"):
        model.evaluate(Xv, yv, sample_weight=w[:-1])
    with pytest.raises(ValueError, match=r"`validation_data\[2\]` must hold finite, non-negative"):
        model.fit(X[:60], y[:60], verbose=0, validation_data=(Xv, yv, -w))
    with pytest.raises(ValueError, match=r"`validation_data` must be \(x_val, y_val\) or"):
        model.fit(X[:60], y[:60], verbose=0, validation_data=(Xv,))


def test_one_output_takes_one_target_a_sample_as_keras_does():
    # Dense(1) with BinaryCrossentropy and 1-D y (Keras's binary setup) failed at the first
    # batch with a shape error naming y_true; a width that cannot fit is refused up front.
    X, y = make_blobs(n_samples=64, centers=2, random_state=0)
    fits = []
    for target in (y.astype(float), y.astype(float)[:, None]):
        m = Sequential([Dense(4, activation="relu"), Dense(1)], seed=0)
        m.compile(loss=BinaryCrossentropy(from_logits=True), optimizer="adam")
        fits.append(m.fit(X, target, epochs=2, verbose=0).history["loss"])
        fits.append(m.evaluate(X, target, verbose=0))
    assert fits[:2] == fits[2:]
    m = Sequential([Dense(3)], seed=0)
    m.compile(loss=CategoricalCrossentropy(from_logits=True), optimizer="adam")
    for bad, shape in ((y, r"\(64,\)"), (np.eye(4)[y], r"\(64, 4\)")):
        with pytest.raises(ValueError, match=r"`y` must have shape \(n_samples, 3\).*" + shape):
            m.fit(X, bad, epochs=1, verbose=0)


def test_an_interrupted_first_build_leaves_the_model_unbuilt_and_the_next_fit_whole(
        monkeypatch):
    """A stranger's Ctrl-C in the first milliseconds of a first fit left a layer marked
    built with no weights: every later fit failed with an IndexError. The build is now
    all or nothing, its random state included: the next fit gives the weights of a fit
    never interrupted."""
    import logitlab.layers._layers as layers_module

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(64, 12)).astype(np.float32), rng.integers(0, 3, 64)

    def model():
        m = Sequential([Dense(8, activation="relu"), Dense(3)], seed=5)
        m.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
        return m

    reference = model()
    reference.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)

    initialize, calls = layers_module._initialize, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:  # the second layer's kernel: the first layer is built by then
            raise KeyboardInterrupt
        return initialize(*args)

    m = model()
    monkeypatch.setattr(layers_module, "_initialize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    monkeypatch.undo()
    assert not m.built and not any(layer.built or layer.weights for layer in m.layers)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    for a, b in zip(m.get_weights(), reference.get_weights()):
        assert np.array_equal(a, b)

    # a built model built again, interrupted once its new buffer is made: as it was, every
    # layer bound to the buffer the optimizer updates (a review: it was left unbuilt with
    # its layers built, and set_weights failed)
    weights = m.get_weights()
    build = m.optimizer.build

    def interrupted_build(params):
        raise KeyboardInterrupt

    monkeypatch.setattr(m.optimizer, "build", interrupted_build)
    with pytest.raises(KeyboardInterrupt):
        m.build(12)
    monkeypatch.setattr(m.optimizer, "build", build)
    assert m.built and all(layer.built for layer in m.layers)
    for layer in m.layers:
        assert all(np.shares_memory(w, m._flat_params[0]) for w in layer.weights)
    for a, b in zip(m.get_weights(), weights):
        assert np.array_equal(a, b)
    m.set_weights(weights)
