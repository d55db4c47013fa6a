"""The training loop's lean steps: scratch arrays, the fused bias/activation passes, no input
gradient for the first layer, the BLAS threads (issue 24, "Training at GEMM speed")."""

import platform

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

from helpers import assert_grad_close, numerical_grad
from logitlab import Sequential, TrainingDivergedError
from logitlab.callbacks import Callback
from logitlab.layers import Dense
from logitlab.losses import SparseCategoricalCrossentropy
from logitlab.optimizers import SGD
from logitlab.models._trainer import SMALL_PRODUCT


X86_64 = platform.machine().lower() in ("x86_64", "amd64")
x86_64_only = pytest.mark.skipif(not X86_64, reason="logitlab._spin is for x86-64 only")


def spin_or_skip():
    """Load the kernels, after which split steps spin on their counters (models/_shards.py);
    skip where that is off by design: not x86-64, or LOGITLAB_KERNELS=never."""
    from logitlab import _jit

    if not X86_64:
        pytest.skip("the spinning waits are for x86-64 only (logitlab._spin)")
    if _jit._state["mode"] == "never":
        pytest.skip("LOGITLAB_KERNELS=never: no compiled code, the locks alone")
    assert _jit._module() is not None


def relu_model(dtype="float64", seed=0, widths=(7, 5), classes=3):
    layers = [Dense(w, "relu") for w in widths] + [Dense(classes)]
    model = Sequential(layers, seed=seed, dtype=dtype)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    return model


def lean_step_grads(model, x, y):
    """One step's gradients through the loop's own path: scratch arrays, the fused loss
    written over the outputs, activations' backward passes written over the gradients."""
    fused = model._fused_loss()
    assert fused is not None
    steps = model._steps(iter([(x, y, None)]), len(x))
    for xb, yb, _ in steps:
        out = model._forward(xb, training=True)
        value, g = fused(yb, out)
        assert g is out  # the lean loss wrote the gradient over the outputs
        model._backward(g, overwrite_grad=True)
    return value, np.concatenate([gr.ravel().copy() for gr in model._grads])


def plain_step_grads(model, x, y):
    """The same step as the loop took it before: fresh arrays throughout, nothing written
    over a gradient but by the fused loss."""
    out = model._forward(x, training=True)
    value, g = model._fused_loss()(y, out)
    model._backward(g)
    return value, np.concatenate([gr.ravel().copy() for gr in model._grads])


def test_lean_step_gradient_matches_finite_differences(rng):
    x = rng.normal(size=(9, 4))
    y = rng.integers(0, 3, 9)
    model = relu_model()
    model.build(4)
    value, analytic = lean_step_grads(model, x, y)
    flat = np.concatenate([w.ravel() for w in model.get_weights()])

    def objective(v):
        saved, chunks, i = model.get_weights(), [], 0
        for w in saved:
            chunks.append(v[i:i + w.size].reshape(w.shape))
            i += w.size
        model.set_weights(chunks)
        out = model.predict(x)
        model.set_weights(saved)
        return model.loss(y, out)

    assert value == pytest.approx(objective(flat), rel=1e-12)
    assert_grad_close(analytic, numerical_grad(objective, flat), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lean_step_gives_the_plain_steps_bits(dtype, rng):
    """Scratch arrays and in-place passes change where the numbers go, not what they are."""
    x = rng.normal(size=(16, 6)).astype(dtype)
    y = rng.integers(0, 3, 16)
    lean_model, plain_model = relu_model(dtype), relu_model(dtype)
    lean_model.build(6)
    plain_model.build(6)
    lean_value, lean = lean_step_grads(lean_model, x, y)
    plain_value, plain = plain_step_grads(plain_model, x, y)
    assert lean.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(lean, plain)
    assert lean_value == plain_value


class ProductLog(np.ndarray):
    """A kernel that records the shape of every product it takes part in."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        args = [np.asarray(a) if isinstance(a, ProductLog) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, ProductLog) else o
                                  for o in kwargs["out"])
        result = getattr(ufunc, method)(*args, **kwargs)
        if ufunc is np.matmul:
            LOG.append(np.shape(result))
        return result


LOG = []


@pytest.mark.parametrize("lean", [True, False])
def test_first_layers_input_gradient_is_never_computed(lean, rng):
    """The products with each kernel, counted: the first layer's forward only (n, 7); the
    second layer's forward (n, 5) and its input gradient (n, 7). A first layer that took its
    input gradient would show an (n, 4) product."""
    x = rng.normal(size=(10, 4))
    y = rng.integers(0, 3, 10)
    model = relu_model()  # with sample weights, the loop leaves the fused loss
    model.build(4)
    first, second = model.layers[0], model.layers[1]
    seen = {}
    for name, layer in (("first", first), ("second", second)):
        layer.kernel = layer.kernel.view(ProductLog)  # a view: the optimizer's updates reach it
        LOG.clear()
        model.fit(x, y, batch_size=10, epochs=1, verbose=0,
                  sample_weight=None if lean else np.ones(10))
        seen[name] = list(LOG)
        layer.kernel = np.asarray(layer.kernel)
    assert seen["first"] == [(10, 7)]
    assert sorted(seen["second"]) == [(10, 5), (10, 7)]


def test_scratch_lives_only_while_the_loop_runs(rng):
    x = rng.normal(size=(20, 4)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    model = relu_model("float32")
    seen = []

    class Peek(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append([layer._scratch is not None for layer in model.layers])

    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Peek()])
    assert seen and all(all(s) for s in seen)
    assert all(layer._scratch is None for layer in model.layers)
    # outside the loop, forward passes give fresh arrays, training or not
    first = model.layers[0].forward(x, training=True)
    again = model.layers[0].forward(x[:5], training=True)
    assert not np.shares_memory(first, again)
    p1 = model.predict(x)
    p2 = model.predict(x)
    assert not np.shares_memory(p1, p2)


def test_scratch_dropped_when_training_diverges(rng):
    x = rng.normal(size=(40, 4)) * 5
    y = rng.integers(0, 3, 40)
    model = relu_model()
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=SGD(1e9))
    with pytest.raises(TrainingDivergedError):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert all(layer._scratch is None for layer in model.layers)


def test_the_last_smaller_batch_uses_the_front_of_the_scratch(rng):
    """60 samples in batches of 25: 25, 25, 10; the same weights as a fit whose
    layers take fresh arrays every step (the seeds' reference path, run by hand)."""
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    fitted = relu_model("float32", seed=3)
    fitted.fit(x, y, batch_size=25, epochs=2, verbose=0, shuffle=False)
    by_hand = relu_model("float32", seed=3)
    by_hand.build(4)
    by_hand.optimizer.build(by_hand._flat_params)
    for _ in range(2):
        for start in range(0, 60, 25):
            plain_step_grads(by_hand, x[start:start + 25], y[start:start + 25])
            by_hand.optimizer.apply(by_hand._flat_params, by_hand._flat_grads)
    for a, b in zip(fitted.get_weights(), by_hand.get_weights()):
        np.testing.assert_array_equal(a, b)


def blas_threads():
    return [info["num_threads"] for info in ThreadpoolController().select(user_api="blas").info()]


def test_blas_threads_chosen_by_product_size(rng):
    """Small products: one BLAS thread inside the loop; large ones: the BLAS's own setting.
    Outside the loop, the setting is what it was. (The suite holds BLAS to one thread:
    two here, so that the loop's one shows.)"""
    with threadpool_limits(limits=2, user_api="blas"):
        outside = blas_threads()
        assert 2 in outside
        fits_under(outside, rng)
    assert blas_threads() != outside


def fits_under(outside, rng):
    seen = {}

    class Peek(Callback):
        def __init__(self, key):
            self.key = key

        def on_batch_end(self, batch, logs=None):
            seen[self.key] = blas_threads()

    small = relu_model("float32", widths=(8,))  # 16 x 4 x 8 multiply-adds
    small.fit(rng.normal(size=(32, 4)), rng.integers(0, 3, 32), batch_size=16, epochs=1,
              verbose=0, callbacks=[Peek("small")])
    n, d = 64, 128
    assert n * d * d >= SMALL_PRODUCT
    large = relu_model("float32", widths=(d,))
    large.fit(rng.normal(size=(n, d)), rng.integers(0, 3, n), batch_size=n, epochs=1,
              verbose=0, callbacks=[Peek("large")])
    assert seen["small"] == [1] * len(outside)
    assert seen["large"] == outside
    assert blas_threads() == outside


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_in_place_gives_the_scalar_maximums_bits(dtype):
    """The in-place relu takes the maximum against a row of zeros (NumPy's fast loop), not
    against the scalar 0 (``_relu_f``): the same bits, zeros' signs and NaNs included."""
    from logitlab.layers._activations import _relu_f, _relu_f_inplace

    special = [-0.0, 0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-45, -1e-45, 3.0, -3.0, 1e-310]
    x = np.array(special * 37, dtype=dtype)[:400].reshape(16, 25)
    bits = np.int32 if dtype == np.float32 else np.int64
    for z in (x, x[:, :7], x[0]):  # rows of 25, of 7 (a strided view), one row
        ref = _relu_f(z)
        got = z.copy()
        assert _relu_f_inplace(got) is got
        assert np.array_equal(got.view(bits), np.asarray(ref, dtype=dtype).view(bits))


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("optimizer", ["adam", "amsgrad", "adamw", "sgd"])
def test_steps_split_by_kernel_rows_give_the_one_thread_weights(parts, optimizer, rng,
                                                                monkeypatch):
    """A large Dense layer's steps on ``parts`` threads, each owning rows of the kernel
    (models/_shards.py: its products, its rows of the gradient, Adam's update of them),
    train to the weights of the same steps on one thread, to float64's rounding (the
    forward pass sums the threads' partial products: not the same bits)."""
    from logitlab import _jit
    from logitlab.models import _shards, _trainer
    from logitlab.optimizers import Adam, AdamW
    from logitlab.optimizers import _optimizers

    x, y = rng.normal(size=(96, 200)), rng.integers(0, 3, 96)
    make = {"adam": lambda: Adam(0.01), "amsgrad": lambda: Adam(0.01, amsgrad=True),
            "adamw": lambda: AdamW(0.01), "sgd": lambda: SGD(0.05, momentum=0.9)}[optimizer]
    calls = {"run": 0, "adam": 0}
    run, slices = _shards.Shards.run, _optimizers._adam_slices

    def counted_run(self, jobs):
        calls["run"] += 1
        return run(self, jobs)

    def counted_slices(*args):
        calls["adam"] += 1
        return slices(*args)

    monkeypatch.setattr(_shards.Shards, "run", counted_run)
    monkeypatch.setattr(_optimizers, "_adam_slices", counted_slices)

    def fit(threads):
        monkeypatch.setattr(_trainer, "SHARD_PRODUCT", 1)  # every layer that has the rows
        monkeypatch.setattr(_trainer, "_blas_threads", lambda: threads)
        model = Sequential([Dense(16, "relu", kernel_regularizer="l2"), Dense(3)], seed=0,
                           dtype="float64")
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=make())
        with _jit.kernel_mode("always"):  # Adam's compiled step, the one that splits
            model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        return model.get_weights()

    one = fit(1)
    assert calls == {"run": 0, "adam": 0}
    split = fit(parts)
    steps = 2 * 3
    # per step: the first layer's forward and backward (200 rows: split; the second layer,
    # 16 rows, is not), and Adam's update where the optimizer is Adam
    assert calls["run"] == steps * (2 + (optimizer != "sgd"))
    assert calls["adam"] == (steps * parts if optimizer != "sgd" else 0)
    for a, b in zip(one, split):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.fixture(params=["spin", "locks"])
def waits(request, monkeypatch):
    """The workers' two ways of waiting (models/_shards.py): spinning on counters in
    compiled code before the locks (logitlab._spin), or the locks alone; the Waits in use
    (None: the locks)."""
    from logitlab.models import _shards

    if request.param == "spin":
        spin_or_skip()
    chosen = _shards._waits() if request.param == "spin" else None
    if request.param == "spin":
        assert chosen is not None  # the kernels loaded: the waits load too
    monkeypatch.setattr(_shards, "_waits", lambda: chosen)
    return chosen


def test_a_split_steps_error_is_raised_once_every_thread_has_ended(waits):
    import threading

    from logitlab.models._shards import Shards, row_blocks

    assert row_blocks(10, 3) == [(0, 3), (3, 6), (6, 10)]
    shards = Shards(3)
    done = []

    def slow():
        threading.Event().wait(0.2)
        done.append("slow")

    def fails():
        raise ValueError("in a worker")

    with pytest.raises(ValueError, match="in a worker"):
        shards.run([lambda: done.append("first"), fails, slow])
    assert sorted(done) == ["first", "slow"]  # the slow worker had finished
    assert shards.run([lambda: 1, lambda: 2, lambda: 3]) == [1, 2, 3]
    shards.close()
    assert not any(t.name.startswith("logitlab-shard") for t in threading.enumerate())


def test_a_prefetch_runs_on_the_first_worker_after_its_job_and_its_error_reaches_collect(
        waits):
    import threading

    from logitlab.models._shards import Shards

    shards = Shards(2)
    seen = []
    gate = threading.Event()

    def worker_job():
        seen.append(("job", threading.current_thread().name))
        return "w"

    def fetch():
        gate.wait(5)  # the caller's run returned before this ended
        seen.append(("fetch", threading.current_thread().name))
        return "next"

    shards.prefetch(fetch)
    assert shards.run([lambda: "c", worker_job]) == ["c", "w"]
    assert ("fetch", "logitlab-shard_0") not in seen
    gate.set()
    assert shards.collect() == "next"
    assert seen == [("job", "logitlab-shard_0"), ("fetch", "logitlab-shard_0")]

    shards.prefetch(lambda: 1 / 0)  # its error is raised where its result is asked for
    assert shards.run([lambda: 1, lambda: 2]) == [1, 2]
    with pytest.raises(ZeroDivisionError):
        shards.collect()
    shards.prefetch(lambda: "here")  # no run took it: made on the caller's thread
    assert shards.collect() == "here"
    shards.prefetch(lambda: gate.wait(0.2) and "late")
    shards.run([lambda: 0, lambda: 0])
    assert shards.run([lambda: 3, lambda: 4]) == [3, 4]  # waits for the prefetch first
    assert shards.collect() == "late"
    shards.prefetch(lambda: "never asked for")
    shards.run([lambda: 0, lambda: 0])
    shards.close()
    assert not any(t.name.startswith("logitlab-shard") for t in threading.enumerate())


def test_an_interrupt_anywhere_in_a_split_step_ends_the_fit_and_its_threads(tmp_path):
    """A review's findings: a KeyboardInterrupt landing right after the prefetch's
    hand-over was taken (before its flag was cleared) left close() waiting for a second
    hand-over forever; one landing before a worker took its job made stop() release an
    unlocked lock (RuntimeError, later workers left running). In a child process, with a
    deadline, as a hang would stop the suite."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import threading, numpy as np
        from logitlab import Sequential
        from logitlab.layers import Dense
        from logitlab.losses import SparseCategoricalCrossentropy
        from logitlab.models import _trainer, _shards
        _trainer.SHARD_PRODUCT = 1
        _trainer._blas_threads = lambda: 2
        wait_after, calls = _shards._Worker.wait_after, [0]

        def interrupted(self):  # the hand-over is taken, then the signal's handler runs
            result = wait_after(self)
            calls[0] += 1
            if calls[0] == 5:
                raise KeyboardInterrupt
            return result

        _shards._Worker.wait_after = interrupted
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(300, 130)), rng.integers(0, 3, 300)
        model = Sequential([Dense(8, "relu"), Dense(3)], seed=0)
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
        try:
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        except KeyboardInterrupt:
            print("interrupted")
        print(sorted(t.name for t in threading.enumerate() if t.name.startswith("logitlab")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["interrupted", "[]"], done.stdout + done.stderr


def test_stopping_a_worker_whose_next_job_is_not_taken_yet_ends_it(waits):
    import threading

    from logitlab.models._shards import Shards, _Worker

    worker = _Worker("logitlab-shard-test", waits)
    gate, busy = threading.Event(), threading.Event()
    err = np.geterr()
    worker.start(lambda: busy.set() or gate.wait(5), err)
    assert busy.wait(5)
    worker.start(lambda: "never run", err)  # handed over, not taken (as an interrupted run)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive() and not worker._thread.is_alive()

    made = []

    class Interrupted(_Worker):
        def __init__(self, name, waits=None):
            if made:
                raise KeyboardInterrupt  # the second thread's start is interrupted
            super().__init__(name, waits)
            made.append(self)

    import logitlab.models._shards as shards_module

    original = shards_module._Worker
    shards_module._Worker = Interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            Shards(3)
    finally:
        shards_module._Worker = original
    assert not made[0]._thread.is_alive()  # the first one was stopped, none left behind


@x86_64_only
def test_the_waits_see_a_raised_counter_and_give_up_after_their_budget():
    """logitlab._spin: a wait returns True once the counter reaches the value (raised by
    another thread, from compiled code without the GIL), False after its budget when it
    does not; a raise with ``then`` waits for the next counter in the same call."""
    import threading
    import time

    from logitlab._spin import Waits

    # (no preemption cut-off here: a VM's own pauses would end a 20 ms spin early)
    short = Waits(budget_ns=20_000_000, after_ns=1_000, gap_ns=10**12)
    waits = Waits(budget_ns=10_000_000_000, after_ns=1_000, gap_ns=10**12)  # 10 s: loaded too
    flags = np.zeros(2, np.int64)
    start = time.perf_counter()
    assert not short.wait(flags, 0, 1)
    assert time.perf_counter() - start >= 0.015  # the budget, 20 ms, less the clock's error
    assert short.wait(flags, 0, 0)  # already there: at once

    def other():
        time.sleep(0.005)
        waits.raise_flag(flags, 0, 3)
    thread = threading.Thread(target=other)
    thread.start()
    assert waits.wait(flags, 0, 3)  # within the budget: seen
    thread.join()
    assert flags.tolist() == [3, 0]

    def answer():
        waits.wait(flags, 1, 1)
        flags[0] = 7
    thread = threading.Thread(target=answer)
    thread.start()
    assert waits.raise_flag(flags, 1, 1, then=(0, 7))  # raised, then saw the answer
    thread.join()
    assert flags.tolist() == [7, 1]
    assert not short.raise_flag(flags, 1, 2, then=(0, 8)) and flags[1] == 2  # none came


@x86_64_only
def test_the_waits_stop_spinning_where_spins_mostly_run_out():
    """Adaptive, as an adaptive mutex: once most recent spins ran out (or were preempted),
    the next ``rest`` waits take the lock at once, then spinning is tried afresh; spins
    that see their value keep it going."""
    import threading

    from logitlab._spin import PREEMPTED, RAN_OUT, SEEN, Waits, _wait

    flags = np.zeros(2, np.int64)
    waits = Waits(budget_ns=10_000, after_ns=0, gap_ns=10**12, rest=5)
    outcomes = [waits.wait(flags, 0, 1) for _ in range(6)]  # nothing comes: each runs out
    assert not any(outcomes) and waits.resting[0] == 5  # the share fell below a half
    assert waits.wait(flags, 1, 0) and waits.resting.get(1, 0) == 0  # counter 1: its own
    assert waits.wait(flags, 0, 0) is False and waits.resting[0] == 4  # resting: no spin,
    for _ in range(4):                                           # even for a value there
        waits.wait(flags, 0, 0)
    assert waits.resting[0] == 0 and waits.wait(flags, 0, 0)  # afresh: spins, sees it
    for _ in range(20):  # spins that see their value keep spinning on
        assert waits.wait(flags, 0, 0)
    assert waits.resting[0] == 0 and waits.share[0] > 0.9
    share = dict(waits.share)  # a bare raise (no wait for an answer) teaches nothing
    assert not waits.raise_flag(flags, 1, 1) and waits.share == share and flags[1] == 1
    assert not waits.raise_flag(flags, 1, 2, then=(0, 5))  # with one, a spin on counter 0
    assert waits.share[0] < share[0] and flags[1] == 2     # that ran out
    # the compiled wait's three ends (gap 0: the next round is always "too late")
    assert _wait(flags, 0, 1, 10**9, 0, 0) == PREEMPTED
    assert _wait(flags, 0, 1, 1000, 0, 10**9) == RAN_OUT
    assert _wait(flags, 0, 0, 1000, 0, 0) == SEEN


@x86_64_only
def test_split_steps_give_the_same_weights_spinning_or_with_the_locks_alone(rng, monkeypatch):
    """The counters only spare the workers' sleeps: a split fit's weights are the same bits
    whichever way the threads wait, and the spins are used where Numba loads."""
    spin_or_skip()
    from logitlab._spin import Waits
    from logitlab.models import _shards, _trainer

    x, y = rng.normal(size=(150, 130)), rng.integers(0, 3, 150)
    monkeypatch.setattr(_trainer, "SHARD_PRODUCT", 1)
    monkeypatch.setattr(_trainer, "_blas_threads", lambda: 2)
    spins = []
    wait = Waits.wait

    def counted(self, *args, **kwargs):
        spins.append(1)
        return wait(self, *args, **kwargs)

    monkeypatch.setattr(Waits, "wait", counted)

    def fit():
        model = Sequential([Dense(8, "relu"), Dense(3)], seed=0, dtype="float32")
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
        model.fit(x.astype(np.float32), y, batch_size=16, epochs=2, verbose=0)
        return model.get_weights()

    spinning = fit()
    assert spins  # the default once the kernels are loaded: the counters
    waits = _shards._waits
    monkeypatch.setattr(_shards, "_waits", lambda: None)
    spins.clear()
    locks = fit()
    assert not spins
    for a, b in zip(spinning, locks):
        assert np.array_equal(a, b)
    monkeypatch.setattr(_shards, "_waits", waits)
    from logitlab import _jit
    with _jit.kernel_mode("never"):  # no compiled code asked for: the locks alone
        assert _shards._waits() is None


def test_the_waits_wait_for_the_kernels_loader(monkeypatch):
    """Numba is imported by the kernels' loader (_jit), never by a split step: until the
    kernels are loaded the workers keep to their locks, and a run picks the waits up
    once they are (a review: an interrupt in a first import of Numba inside Shards()
    left it half made for the rest of the process)."""
    spin_or_skip()
    from logitlab import _jit
    from logitlab.models import _shards

    monkeypatch.setitem(_jit._state, "module", None)  # as before any kernel has loaded
    shards = _shards.Shards(2)
    try:
        assert shards._waits is None and shards._workers[0]._waits is None
        assert shards.run([lambda: 1, lambda: 2]) == [1, 2]
        monkeypatch.undo()  # the kernels are loaded now
        assert shards.run([lambda: 3, lambda: 4]) == [3, 4]
        assert shards._waits is not None and shards._workers[0]._waits is shards._waits
        assert shards.run([lambda: 5, lambda: 6]) == [5, 6]
    finally:
        shards.close()


def test_split_steps_with_prefetched_batches_train_as_one_thread_does(rng, monkeypatch):
    """With split steps the next batch is gathered by a worker while the step runs, into
    the other of two buffers: the fit must see each batch as gathered (same weights as
    one thread to float64's rounding, whatever the batch count's parity)."""
    from logitlab.models import _shards, _trainer

    collected = []
    collect = _shards.Shards.collect

    def counted(self):
        collected.append(1)
        return collect(self)

    monkeypatch.setattr(_shards.Shards, "collect", counted)
    x, y = rng.normal(size=(150, 130)), rng.integers(0, 3, 150)

    def fit(threads):
        monkeypatch.setattr(_trainer, "SHARD_PRODUCT", 1)
        monkeypatch.setattr(_trainer, "_blas_threads", lambda: threads)
        model = Sequential([Dense(8, "relu"), Dense(3)], seed=0, dtype="float64")
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        return model.get_weights()

    one = fit(1)
    assert not collected
    split = fit(2)
    assert len(collected) == 2 * 10  # 150 rows: ten batches an epoch, each collected
    for a, b in zip(one, split):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_split_steps_keep_users_optimizers_chunk_sources_and_warnings(rng, monkeypatch):
    """A review's findings: a user's optimizer whose apply or _update takes (params, grads)
    failed with a TypeError on every fit; a chunk source's unbuilt model was split before
    its weights existed (AttributeError); the worker threads warned of overflow that the
    loop's np.errstate silences."""
    import warnings

    from logitlab.models import _trainer

    monkeypatch.setattr(_trainer, "SHARD_PRODUCT", 1)
    monkeypatch.setattr(_trainer, "_blas_threads", lambda: 2)
    x, y = rng.normal(size=(64, 140)), rng.integers(0, 3, 64)

    class Clipped(SGD):
        def apply(self, params, grads):
            for g in grads:
                np.clip(g, -1, 1, out=g)
            super().apply(params, grads)

    class Plain(SGD):
        def _update(self, params, grads):
            for p, g in zip(params, grads):
                p -= 0.01 * g

    for optimizer in (Clipped(0.1), Plain(0.1)):
        model = Sequential([Dense(8, "relu"), Dense(3)], seed=0, dtype="float64")
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=optimizer)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    model = Sequential([Dense(8, "relu"), Dense(3)], seed=0, dtype="float64")
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    model.fit([(x, y)], batch_size=32, epochs=2, verbose=0)  # built at the first chunk
    model = Sequential([Dense(8), Dense(3)], seed=0, dtype="float64")
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(TrainingDivergedError):
            model.fit(x * 1e306, y, batch_size=32, epochs=1, verbose=0)


def test_a_pickled_or_copied_model_still_trains(rng):
    """The layers' weights are views into one flat buffer that the optimizer updates; after
    pickle or deepcopy they were arrays of their own, and training changed nothing."""
    import copy
    import pickle

    x, y = rng.normal(size=(64, 4)), rng.integers(0, 3, 64)
    model = relu_model()
    model.fit(x, y, epochs=1, verbose=0)
    for back in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        before = [w.copy() for w in back.get_weights()]
        back.fit(x, y, epochs=2, verbose=0)
        model_copy = copy.deepcopy(model)
        model_copy.fit(x, y, epochs=2, verbose=0)
        assert not np.array_equal(before[0], back.get_weights()[0])
        for a, b in zip(back.get_weights(), model_copy.get_weights()):
            np.testing.assert_array_equal(a, b)
