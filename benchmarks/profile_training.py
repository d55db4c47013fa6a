"""Where an MNIST-shaped epoch's time goes: shares of one ``fit`` epoch by part.

    python benchmarks/profile_training.py              # shares, median of 5 epochs a variant
    python benchmarks/profile_training.py --threads 1  # BLAS held to one thread
    python benchmarks/profile_training.py --cprofile   # and cProfile's top functions

The network and data are bench_training.py's ``--mnist`` ones (60000 x 784
float32, Dense(256, relu) -> Dense(10), Adam, batch 128). Timers wrap the
parts from outside, in the same epochs: the products (``np.matmul`` as the
layers call it, forward and backward apart), the rest of each layer's
forward (bias, relu) and backward (relu's mask, the bias gradient), the
loss, the optimizer step, gathering the batch, and what is left (fit's
finiteness check over the whole x, about 20 ms, building the model, the
loop's own bookkeeping, the finite-gradient check a step). Each timer costs about
a microsecond a call, a few ms an epoch. Shares, not times, are the figure
to compare on a shared machine, so two variants run in turn, epoch by
epoch, in the same run: Adam's compiled one-pass step (what ``fit`` uses
where the kernels are loaded) and its NumPy update (twelve passes, what it
used before, and still uses for small models or ``LOGITLAB_KERNELS=never``).
Then Adam alone: 469 steps over the network's 203,530 float32 parameters.
Last, the first layer's products alone, and the same with Adam's step between
them (``products_alone``): what the step's parts cost one another.
"""

import cProfile
import pstats
import sys
import time
import types

import numpy as np

from bench_training import MNIST_BATCH, mnist_like

import logitlab.layers._layers as layers_mod
import logitlab.optimizers._optimizers as optimizers_mod
from logitlab import Sequential
from logitlab.layers import Dense
from logitlab.losses import SparseCategoricalCrossentropy
from logitlab.models._trainer import Trainer
from logitlab.optimizers import Adam

clock = time.perf_counter


class Timers(dict):
    def add(self, key, dt):
        self[key] = self.get(key, 0.0) + dt


T = Timers()
_phase = ["forward"]


def _timed_matmul(*args, **kwargs):
    t = clock()
    try:
        return np.matmul(*args, **kwargs)
    finally:
        T.add(f"GEMM {_phase[0]}", clock() - t)


def _install():
    """Wrap the parts; returns a function that undoes it."""
    saved = {"np": layers_mod.np, "forward": Dense.forward, "backward": Dense.backward,
             "fused": Trainer._fused_loss, "steps": Trainer._steps, "apply": Adam.apply}
    proxy = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    proxy.matmul = _timed_matmul
    layers_mod.np = proxy

    def forward(self, x, training=False):
        _phase[0] = "forward"
        t = clock()
        try:
            return saved["forward"](self, x, training)
        finally:
            T.add("layer forward (all)", clock() - t)

    def backward(self, grad, need_input_grad=True, overwrite_grad=False):
        _phase[0] = "backward"
        t = clock()
        try:
            return saved["backward"](self, grad, need_input_grad, overwrite_grad)
        finally:
            T.add("layer backward (all)", clock() - t)

    def fused_loss(self):
        fn = saved["fused"](self)
        if fn is None:
            return None

        def timed(yb, out):
            t = clock()
            try:
                return fn(yb, out)
            finally:
                T.add("loss and its gradient", clock() - t)
        return timed

    def steps(self, batches, batch_size, prefetch=False):
        # with prefetch (array fits), a worker gathers the next batch: this times the wait for it
        def gathered():
            it = iter(batches)
            while True:
                t = clock()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    T.add("batch gathering", clock() - t)
                yield item
        return saved["steps"](self, gathered(), batch_size, prefetch)

    def apply(self, params, grads, parts=None):
        t = clock()
        try:
            return saved["apply"](self, params, grads, parts)
        finally:
            T.add("optimizer update", clock() - t)

    Dense.forward, Dense.backward = forward, backward
    Trainer._fused_loss, Trainer._steps, Adam.apply = fused_loss, steps, apply

    def undo():
        layers_mod.np = saved["np"]
        Dense.forward, Dense.backward = saved["forward"], saved["backward"]
        Trainer._fused_loss, Trainer._steps = saved["fused"], saved["steps"]
        Adam.apply = saved["apply"]
    return undo


def one_epoch(X, y, seed=0):
    model = Sequential([Dense(256, "relu"), Dense(10)], seed=seed)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=Adam(0.001))
    return model.fit(X, y, epochs=1, batch_size=MNIST_BATCH, verbose=0).history["loss"][-1]


def _numpy_adam():
    """Adam's NumPy update for the parameters, the kernels left to the rest."""
    saved = optimizers_mod.kernels_for
    optimizers_mod.kernels_for = lambda arr: None

    def undo():
        optimizers_mod.kernels_for = saved
    return undo


VARIANTS = {"Adam compiled (one pass)": lambda: (lambda: None),
            "Adam in NumPy (twelve passes)": _numpy_adam}


def shares(X, y, repeats=5):
    """``{variant: (median epoch time, {part: median share of the epoch})}``, timers installed,
    the variants' epochs in turn."""
    one_epoch(X, y)  # the kernels loaded, the BLAS warm
    undo = _install()
    rows = {name: [] for name in VARIANTS}
    try:
        for _ in range(repeats):
            for name, variant in VARIANTS.items():
                restore = variant()
                T.clear()
                t = clock()
                try:
                    one_epoch(X, y)
                finally:
                    total = clock() - t
                    restore()
                parts = dict(T)
                parts["bias, relu (forward)"] = (parts.pop("layer forward (all)")
                                                 - parts["GEMM forward"])
                parts["relu mask, bias gradient (backward)"] = (
                    parts.pop("layer backward (all)") - parts["GEMM backward"])
                parts["the rest (loop, checks)"] = total - sum(parts.values())
                rows[name].append((total, parts))
    finally:
        undo()
    return {name: (float(np.median([r[0] for r in runs])),
                   {k: float(np.median([r[1][k] / r[0] for r in runs])) for k in runs[0][1]})
            for name, runs in rows.items()}


def adam_alone(n=203530, steps=469, rounds=7):
    """Median seconds for ``steps`` Adam steps over ``n`` float32 parameters, each variant in
    turn in the same run."""
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(n, dtype=np.float32) * 1e-2]
    times = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, variant in VARIANTS.items():
            params = [rng.standard_normal(n, dtype=np.float32)]
            opt = Adam(0.001)
            opt.build(params)
            restore = variant()
            try:
                opt.apply(params, grads)  # warm: scratch, kernels
                t = clock()
                for _ in range(steps):
                    opt.apply(params, grads)
                times[name].append(clock() - t)
            finally:
                restore()
    return {k: float(np.median(v)) for k, v in times.items()}


def products_alone(X, steps=469, rounds=5):
    """Median seconds for an epoch's first-layer products (``x_b W``, then ``x_b^T d`` into
    the gradient), alone and with Adam's step over ``W`` (and the rest of the parameters)
    between them, as in ``fit``: ``{"products alone": s, "products, with Adam between":
    (products s, Adam s)}``. On the 2-core Zen 2 machine the second costs far more than the
    sum of the parts: Adam's thread writes ``W``, which both BLAS threads read next."""
    rng = np.random.default_rng(0)
    n_w = X.shape[1] * 256
    params, grads = (rng.standard_normal(n_w + 256 + 2570, dtype=np.float32) * 0.05
                     for _ in range(2))
    W, G = params[:n_w].reshape(X.shape[1], 256), grads[:n_w].reshape(X.shape[1], 256)
    opt = Adam(0.001)
    opt.build([params])
    opt.apply([params], [grads])
    times = {"products alone": [], "products, with Adam between": []}
    for _ in range(rounds):
        for name, with_adam in (("products alone", False), ("products, with Adam between", True)):
            products = adam = 0.0
            for s in range(steps):
                xb = X[(s * MNIST_BATCH) % (len(X) - MNIST_BATCH):][:MNIST_BATCH]
                t = clock()
                h = xb @ W
                np.maximum(h, 0, out=h)
                np.matmul(xb.T, h, out=G)
                t1 = clock()
                if with_adam:
                    opt.apply([params], [grads])
                products += t1 - t
                adam += (clock() - t1) if with_adam else 0.0
            times[name].append((products, adam))
    return {k: tuple(float(np.median(col)) for col in zip(*v)) for k, v in times.items()}


def main(argv):
    threads = None
    if "--threads" in argv:
        threads = int(argv[argv.index("--threads") + 1])
    from threadpoolctl import threadpool_limits

    X, y = mnist_like()
    with threadpool_limits(threads):
        result = shares(X, y)
        alone = adam_alone()
        products = products_alone(X)
        prof = None
        if "--cprofile" in argv:
            prof = cProfile.Profile()
            prof.runcall(one_epoch, X, y)
    print(f"BLAS threads: {threads or 'all'}; each variant's epochs in turn, median of 5")
    names = list(result)
    keys = sorted(result[names[0]][1], key=lambda k: -result[names[0]][1][k])
    print(f"{'part of the epoch':40s}" + "".join(f"{n:>32s}" for n in names))
    print(f"{'epoch, with the timers':40s}"
          + "".join(f"{result[n][0]:>30.3f} s" for n in names))
    for k in keys:
        print(f"{k:40s}" + "".join(f"{result[n][1][k]:>13.1%} {result[n][1][k] * result[n][0] * 1e3:>13.1f} ms"
                                   for n in names))
    for k, v in alone.items():
        print(f"{k:32s} alone: {v * 1e3:7.1f} ms for 469 steps of 203,530 float32")
    for k, (gemm, adam) in products.items():
        print(f"{k:32s}: {gemm * 1e3:7.1f} ms of products" + (f", {adam * 1e3:.1f} ms of Adam"
                                                                 if adam else "")
              + f" for 469 steps of the first layer ({MNIST_BATCH} x {X.shape[1]} x 256)")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main(sys.argv[1:])
