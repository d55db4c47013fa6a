"""Adam's step on every path against independent float64 references (issue 24, "Training at
GEMM speed": the one-pass compiled step).

Paths: the compiled step (``_kernels.adam_update``, where the kernels serve the parameter
array), the NumPy update (small arrays, ``LOGITLAB_KERNELS=never``, arrays the step cannot
take: strided, read-only, mixed dtypes). The kernels' fallback (the step cannot be compiled)
is ``test_kernel_fallback.py``'s; the bits of the step against the NumPy update,
``test_kernels.py``'s.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from logitlab import Sequential, _jit
from logitlab.layers import Dense
from logitlab.losses import SparseCategoricalCrossentropy
from logitlab.optimizers import Adam, AdamW

K = pytest.importorskip("logitlab._kernels", reason="Numba is a dependency; the kernels need it")

KERAS = np.load(Path(__file__).parent / "fixtures" / "keras_reference.npz", allow_pickle=False)
STEPS = 10


def kingma_ba(params, grads, lr, beta_1, beta_2, epsilon, amsgrad=False, weight_decay=None):
    """Adam in float64, as Algorithm 1 of Kingma and Ba (2015) writes it, with Keras's epsilon.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, ``m_hat = m / (1 - b1^t)``,
    ``v_hat = v / (1 - b2^t)`` (its running maximum first with AMSGrad, Reddi et al.
    2018), ``p -= lr m_hat / (sqrt(v_hat) + eps_hat)``. Keras 3 folds the bias corrections
    into the step size instead, ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``, ``p -= alpha m /
    (sqrt(v) + epsilon)``; the two agree where ``eps_hat = epsilon / sqrt(1 - b2^t)``
    (Kingma and Ba, section 2). AdamW (Keras): ``p -= p weight_decay lr`` first.
    """
    p = [np.array(a, dtype=np.float64) for a in params]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    vmax = [np.zeros_like(a) for a in p]
    for t, step_grads in enumerate(grads, 1):
        eps_hat = epsilon / math.sqrt(1 - beta_2**t)
        for i, g in enumerate(step_grads):
            g = np.asarray(g, dtype=np.float64)
            if weight_decay:
                p[i] = p[i] - p[i] * weight_decay * lr
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            vmax[i] = np.maximum(vmax[i], v[i])
            m_hat = m[i] / (1 - beta_1**t)
            v_hat = (vmax[i] if amsgrad else v[i]) / (1 - beta_2**t)
            p[i] = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps_hat)
    return p, m, v


def keras_form(params, grads, lr, beta_1, beta_2, epsilon, amsgrad=False, weight_decay=None):
    """The same in Keras 3's form (its ``Adam.update_step``), float64: the docstring's formula."""
    p = [np.array(a, dtype=np.float64) for a in params]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    vh = [np.zeros_like(a) for a in p]
    for t, step_grads in enumerate(grads, 1):
        alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for i, g in enumerate(step_grads):
            g = np.asarray(g, dtype=np.float64)
            if weight_decay:
                p[i] -= p[i] * weight_decay * lr
            m[i] += (g - m[i]) * (1 - beta_1)
            v[i] += (g * g - v[i]) * (1 - beta_2)
            vh[i] = np.maximum(vh[i], v[i])
            p[i] -= (m[i] * alpha) / (np.sqrt(vh[i] if amsgrad else v[i]) + epsilon)
    return p, m, v


def problem(rng, dtype, layout="contiguous"):
    """Parameters ``[W (60, 90), b (90,)]`` in ``layout`` and ``STEPS`` steps of gradients (of a
    drift and noise, with exact zeros, as ReLU networks' are)."""
    base = [rng.normal(0, 0.5, (60, 90)), rng.normal(0, 0.5, 90)]
    if layout == "strided":  # every other column of a wider array: no flat view exists
        wide = np.zeros((60, 180), dtype=dtype)
        wide[:, ::2] = base[0]
        params = [wide[:, ::2], base[1].astype(dtype)]
    else:
        params = [a.astype(dtype) for a in base]
    drift = [rng.normal(0, 0.05, a.shape) for a in base]
    grads = []
    for _ in range(STEPS):
        step = [(d + rng.normal(0, 0.1, a.shape)) * (rng.random(a.shape) > 0.2)
                for d, a in zip(drift, base)]
        grads.append([g.astype(np.float64 if layout == "mixed" else dtype) for g in step])
    return params, grads


def counting_step(monkeypatch):
    """Count the compiled step's calls (``_jit.launch`` reads the pair from the module)."""
    calls = []
    real = K.adam_update[0]

    def step(*args):
        calls.append(args[0].size)
        return real(*args)

    monkeypatch.setattr(K, "adam_update", (step, step))
    return calls


TOL = {np.float32: dict(rtol=2e-6, atol=2e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}
SETTINGS = {
    "adam": dict(lr=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
    "amsgrad": dict(lr=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=True),
    "adamw": dict(lr=0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-7, weight_decay=0.05),
    "large_epsilon": dict(lr=0.05, beta_1=0.5, beta_2=0.9, epsilon=0.1),
}


def make(setting):
    s = dict(SETTINGS[setting])
    lr = s.pop("lr")
    if "weight_decay" in s:
        return AdamW(lr, **s)
    return Adam(lr, **s)


@pytest.mark.parametrize("path", ["compiled", "numpy", "strided", "mixed"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_float64_references_on_every_path(dtype, setting, path, rng, monkeypatch):
    """Ten steps: the weights and both moments against Kingma and Ba's form in float64 (and
    Keras's form, which must agree with it), within a few roundings of the dtype a step."""
    params, grads = problem(rng, dtype, path if path in ("strided", "mixed") else "contiguous")
    start = [np.array(a, dtype=np.float64) for a in params]
    calls = counting_step(monkeypatch)
    opt = make(setting)
    opt.build(params)
    with _jit.kernel_mode("never" if path == "numpy" else "always"):
        for step_grads in grads:
            opt.apply(params, step_grads)
    # the path the test names: every array compiled; none; the strided kernel in NumPy (its
    # contiguous bias compiled); float64 gradients for float32 weights in NumPy
    served = {"compiled": [5400, 90], "numpy": [], "strided": [90],
              "mixed": [] if dtype == np.float32 else [5400, 90]}[path]
    assert calls == served * STEPS

    s = dict(SETTINGS[setting])
    ref_p, ref_m, ref_v = kingma_ba(start, grads, **s)
    keras_p, keras_m, keras_v = keras_form(start, grads, **s)
    for a, b in zip(ref_p + ref_m + ref_v, keras_p + keras_m + keras_v):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    for got, want in zip(params, ref_p):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])
    for name, want in (("momentums", ref_m), ("velocities", ref_v)):
        for got, w in zip(opt.slots[name], want):
            np.testing.assert_allclose(got, w, rtol=TOL[dtype]["rtol"],
                                       atol=TOL[dtype]["atol"] * np.abs(w).max())


def test_adam_on_read_only_weights_raises_and_keeps_the_kernel(monkeypatch):
    """A read-only array goes to NumPy, which refuses it; Numba would have typed it apart, failed
    to compile the step for it and given up the kernel for the whole process, with a warning."""
    params = [np.zeros(5000, np.float32)]
    opt = Adam(0.01)
    opt.build(params)
    params[0].flags.writeable = False
    with _jit.kernel_mode("always"), pytest.raises(ValueError, match="read-only"):
        opt.apply(params, [np.ones(5000, np.float32)])
    assert K.adam_update[0] not in _jit._broken
    params[0].flags.writeable = True
    calls = counting_step(monkeypatch)
    with _jit.kernel_mode("always"):
        opt.apply(params, [np.ones(5000, np.float32)])
    assert calls == [5000]


def test_fit_steps_the_flat_buffer_compiled_by_default(rng, monkeypatch):
    """``Sequential`` keeps its weights in one flat buffer: past ``_jit.LOAD_SIZE`` parameters
    (a Dense(256) on 784 features has 203,530) the default mode steps it compiled, once a step."""
    x = rng.random((64, 300), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    model = Sequential([Dense(256, "relu"), Dense(10)], seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=Adam(0.001))
    calls = counting_step(monkeypatch)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert model.count_params() > _jit.LOAD_SIZE
    assert calls == [model.count_params()] * 2


@pytest.mark.parametrize("mode", ["always", "never"])
@pytest.mark.parametrize("name", ["adam", "adam_amsgrad", "adamw"])
def test_adam_in_a_fit_gives_keras_weights_on_either_path(name, mode):
    """test_sequential.py's Keras check (weights recorded from Keras 3, same initial weights,
    unshuffled batches) with the step compiled, and in NumPy."""
    make_opt = {"adam": lambda: Adam(0.001), "adam_amsgrad": lambda: Adam(0.01, amsgrad=True),
                "adamw": lambda: AdamW(0.003, weight_decay=0.05)}[name]
    model = Sequential([Dense(25, activation="relu"), Dense(15, activation="relu"), Dense(4)])
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=make_opt())
    model.build(2)
    model.set_weights([KERAS[f"init_w{i}"] for i in range(6)])
    with _jit.kernel_mode(mode):
        model.fit(KERAS["train_X"], KERAS["train_y"], batch_size=32, epochs=1, shuffle=False,
                  verbose=0)
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, KERAS[f"preferred_{name}_w{i}"], rtol=0, atol=1e-5)
