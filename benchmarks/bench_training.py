"""The seeds' lab model (2000 blobs, batch 32, 10 epochs, Adam 0.001) against the peers.

    python benchmarks/bench_training.py

Peers in the same run when installed: scikit-learn's MLPClassifier (same
architecture, solver adam), a plain PyTorch loop, Keras (on TensorFlow when it
is installed, else on PyTorch). Also: the progress display's cost, and the whole lab as a script.
"""

import importlib.util
import io
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import make_blobs

from _common import machine, median_times, table

from logitlab import Sequential
from logitlab.layers import Dense
from logitlab.losses import SparseCategoricalCrossentropy
from logitlab.optimizers import Adam

X, y = make_blobs(n_samples=2000, centers=[[-5, 2], [-2, -2], [1, 2], [5, -2]], cluster_std=1.0,
                  random_state=30)
REPEATS = 5


def ours(verbose=0):
    model = Sequential([Dense(25, "relu"), Dense(15, "relu"), Dense(4)], seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=Adam(0.001))
    return model.fit(X, y, epochs=10, batch_size=32, verbose=verbose).history["loss"][-1]


def sklearn_mlp():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((25, 15), solver="adam", learning_rate_init=0.001, batch_size=32,
                            max_iter=10, tol=0, n_iter_no_change=1000, random_state=0).fit(X, y)
    return clf.loss_curve_[-1]


def torch_loop():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 25), torch.nn.ReLU(), torch.nn.Linear(25, 15),
                              torch.nn.ReLU(), torch.nn.Linear(15, 4))
    opt = torch.optim.Adam(net.parameters(), lr=0.001, eps=1e-7)
    Xt = torch.tensor(X, dtype=torch.float32)
    yt = torch.tensor(y)
    for _ in range(10):
        perm = torch.randperm(len(Xt))
        total = 0.0
        for i in range(0, len(Xt), 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
    return total / len(Xt)


def keras_backend():
    """TensorFlow (the issue's anchor) when it is installed, else PyTorch; KERAS_BACKEND overrides."""
    if "KERAS_BACKEND" not in os.environ:
        os.environ["KERAS_BACKEND"] = "tensorflow" if importlib.util.find_spec("tensorflow") else "torch"
    return os.environ["KERAS_BACKEND"]


def keras_fit():
    keras_backend()
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(25, activation="relu"),
                              keras.layers.Dense(15, activation="relu"), keras.layers.Dense(4)])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.Adam(0.001))
    return model.fit(X, y, epochs=10, verbose=0).history["loss"][-1]


def time_in_display(fit, repeats=REPEATS):
    """The share of a fit's time spent inside the progress display's methods (median over fits).

    The difference of two medians cannot resolve a few percent on a machine
    whose speed moves by more than that between calls; this times the
    display's own calls (every ``ProgressLogger`` hook, timer included) and
    divides by the whole fit's time, measured in the same call.
    """
    from logitlab.callbacks._callbacks import ProgressLogger

    spent = [0.0]
    originals = {name: getattr(ProgressLogger, name) for name in
                 ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")}

    def timed(method):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    shares = []
    try:
        for name, method in originals.items():
            setattr(ProgressLogger, name, timed(method))
        for _ in range(repeats):
            spent[0] = 0.0
            t = time.perf_counter()
            fit()
            shares.append(spent[0] / (time.perf_counter() - t))
    finally:
        for name, method in originals.items():
            setattr(ProgressLogger, name, method)
    return float(np.median(shares))


def main():
    print(f"machine: {machine()}\n")
    fits = {"logitlab": ours, "scikit-learn MLPClassifier": sklearn_mlp}
    for name, fn in (("PyTorch loop", torch_loop), (f"Keras ({keras_backend()} backend)", keras_fit)):
        try:
            fn()
        except ImportError:
            print(f"({name} not installed: skipped)")
        else:
            fits[name] = fn
    times = median_times(fits, REPEATS)  # in turn, each fit three times in a row, the first not counted
    results = {name: (times[name], fn()) for name, fn in fits.items()}
    base = results["logitlab"][0]
    table(["library", "fit time (s)", "final loss", "logitlab speed-up"],
          [[k, f"{t:.3f}", f"{l:.4f}", f"{t / base:.1f}x"] for k, (t, l) in results.items()])

    # the progress display: verbose=1 into a pipe and into a (forced) terminal, timed in turn
    # with verbose=0 (a few percent would otherwise drown in the machine's phases)
    def verbose_into(env):
        def fit():
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            stdout, sys.stdout = sys.stdout, io.StringIO()
            try:
                ours(1)
            finally:
                sys.stdout = stdout
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return fit

    medians = median_times({"silent": lambda: ours(0), "pipe": verbose_into({}),
                            "terminal": verbose_into({"TTY_COMPATIBLE": "1", "COLUMNS": "100"})},
                           3 * REPEATS)
    silent = medians["silent"]
    inside = {label: time_in_display(fit) for label, fit in
              (("pipe", verbose_into({})),
               ("terminal", verbose_into({"TTY_COMPATIBLE": "1", "COLUMNS": "100"})))}
    table(["verbose=1 into", "verbose=0 (s)", "verbose=1 (s)", "difference",
           "time in the display's own calls"],
          [[label, f"{silent:.3f}", f"{medians[label]:.3f}", f"{(medians[label] - silent) / silent:+.1%}",
            f"{inside[label]:.2%}"] for label in ("pipe", "terminal")])

    # the whole lab as a script, imports included; and its make_blobs import alone
    script = os.path.join(os.path.dirname(__file__), "lab.py")
    probe = "import runpy, time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"

    def run(body):
        # /usr/bin/time reports the child's own peak RSS (a child of this process would
        # inherit this process's peak, which includes the peers)
        res = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c",
                              probe.format(body)], check=True, capture_output=True, text=True)
        return float(res.stdout.split()[-1]), float(res.stderr.split()[-1]) / 1024

    lab = [run(f"runpy.run_path({script!r})") for _ in range(3)]
    blobs = [run("from sklearn.datasets import make_blobs") for _ in range(3)]
    imp = [run("import logitlab") for _ in range(3)]
    table(["measure (median of 3, in-process timer)", "time", "peak RSS"],
          [["python lab.py (the whole seeds' lab)", f"{np.median([t for t, _ in lab]):.2f} s",
            f"{np.median([m for _, m in lab]):.0f} MiB"],
           ["  of which: from sklearn.datasets import make_blobs",
            f"{np.median([t for t, _ in blobs]):.2f} s", f"{np.median([m for _, m in blobs]):.0f} MiB"],
           ["import logitlab", f"{np.median([t for t, _ in imp]):.3f} s",
            f"{np.median([m for _, m in imp]):.0f} MiB"]])

if __name__ == "__main__":
    main()
