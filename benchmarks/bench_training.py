"""Training against the peers: the seeds' lab model, and an MNIST-shaped network.

    python benchmarks/bench_training.py            # the seeds' lab (2000 blobs, batch 32,
                                                    # 10 epochs, Adam 0.001), the display, lab.py
    python benchmarks/bench_training.py --mnist    # 60000 x 784 float32, Dense(256, relu) ->
                                                    # Dense(10), Adam, batch 128, one epoch
    python benchmarks/bench_training.py --mnist --threads 1   # every library held to 1 thread

The MNIST-shaped data are generated (no download): scikit-learn's 8 x 8
digits, each pixel made a 3 x 3 block, placed at a random offset in a 28 x
28 frame, with a little noise, scaled to [0, 1]: dense float32, 784
features, 10 classes, mostly zeros as MNIST is. Each epoch is timed from a
fresh model (built, compiled and fitted inside the timer), after a first
epoch not counted. The peers get the same thread budget (``--threads``,
default all cores: PyTorch's ``set_num_threads``, NumPy's BLAS through
threadpoolctl for scikit-learn), the same batches (128, the last one 96),
the same initialisation scale (Glorot uniform kernels, as logitlab and
scikit-learn draw them) and the same Adam (lr 0.001, epsilon 1e-7, no L2
penalty: scikit-learn's ``alpha=0``), each shuffling with its own generator.
The epoch loss (the mean of the epoch's batch losses, each library's own
report) moves by about 0.005 with the initial weights and the order, so the
loss column comes from separate runs, three seeds, in which logitlab and
PyTorch start from the same weights (one Glorot draw) and all three take
the batches in the data's order (scikit-learn draws its own weights).

Peers in the same run when installed: scikit-learn's MLPClassifier (same
architecture, solver adam), a plain PyTorch loop, Keras (on TensorFlow when it
is installed, else on PyTorch). Also: the progress display's cost, and the whole lab as a script.
"""

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_blobs

from _common import machine, median_times, table, wall_and_cpu_times

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
        loss = torch_epoch(net, opt, Xt, yt, torch.randperm(len(Xt)), 32)
    return loss


def torch_epoch(net, opt, Xt, yt, perm, batch):
    """One epoch of PyTorch's usual training loop over the rows in ``perm``; its mean loss."""
    import torch

    total = 0.0
    for i in range(0, len(Xt), batch):
        idx = perm[i:i + batch]
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


# ---- the MNIST-shaped network ------------------------------------------------------------

MNIST_BATCH = 128


def mnist_like(n=60000, seed=0):
    """``(X, y)``: ``n`` x 784 float32 in [0, 1] and labels 0-9, MNIST's shape (see the docstring)."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(digits.images), n)
    big = np.repeat(np.repeat((digits.images[pick] / 16.0).astype(np.float32), 3, 1), 3, 2)
    frame = np.zeros((n, 28, 28), np.float32)
    shift = rng.integers(0, 5, (n, 2))
    for dy in range(5):
        for dx in range(5):
            at = (shift[:, 0] == dy) & (shift[:, 1] == dx)
            frame[at, dy:dy + 24, dx:dx + 24] = big[at]
    frame += 0.05 * rng.standard_normal(frame.shape, dtype=np.float32)
    np.clip(frame, 0.0, 1.0, out=frame)
    return frame.reshape(n, 784), digits.target[pick]


def glorot_weights(seed):
    """``[W1, b1, W2, b2]`` in logitlab's (Keras's) layout: Glorot uniform kernels, zero biases."""
    rng = np.random.default_rng(seed)
    out = []
    for fan_in, fan_out in ((784, 256), (256, 10)):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out += [rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32),
                np.zeros(fan_out, np.float32)]
    return out


def mnist_fits(X, y):
    """``{name: fit(seed=0, init=None, shuffle=True)}``: each builds a fresh model (from the
    weights ``init``, where the library can take them), trains one epoch, returns its loss."""

    def ours(seed=0, init=None, shuffle=True):
        model = Sequential([Dense(256, "relu"), Dense(10)], seed=seed)
        if init is not None:
            model.build(X.shape[1])
            model.set_weights(init)
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=Adam(0.001))
        return model.fit(X, y, epochs=1, batch_size=MNIST_BATCH, verbose=0,
                         shuffle=shuffle).history["loss"][-1]

    def sklearn_mlp(seed=0, init=None, shuffle=True):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier((256,), solver="adam", alpha=0.0, batch_size=MNIST_BATCH,
                                learning_rate_init=0.001, epsilon=1e-7, max_iter=1, tol=0,
                                n_iter_no_change=1000, random_state=seed,
                                shuffle=shuffle).fit(X, y)
        return clf.loss_curve_[-1]

    fits = {"logitlab": ours, "scikit-learn MLPClassifier": sklearn_mlp}
    try:
        import torch
    except ImportError:
        print("(PyTorch not installed: skipped)")
        return fits
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

    def torch_loop(seed=0, init=None, shuffle=True):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        with torch.no_grad():  # the same initialisation scale as the others: Glorot uniform, zero bias
            for i, layer in enumerate((net[0], net[2])):
                if init is None:
                    torch.nn.init.xavier_uniform_(layer.weight)
                    layer.bias.zero_()
                else:
                    layer.weight.copy_(torch.from_numpy(init[2 * i].T.copy()))
                    layer.bias.copy_(torch.from_numpy(init[2 * i + 1]))
        opt = torch.optim.Adam(net.parameters(), lr=0.001, eps=1e-7)
        perm = torch.randperm(len(Xt)) if shuffle else torch.arange(len(Xt))
        return torch_epoch(net, opt, Xt, yt, perm, MNIST_BATCH)

    fits[f"PyTorch {torch.__version__} loop"] = torch_loop
    return fits


@contextlib.contextmanager
def thread_budget(threads):
    """Every library held to ``threads`` (None: left at its default, all cores)."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    saved = torch.get_num_threads() if torch else None
    try:
        if torch:
            torch.set_num_threads(threads)
        with threadpool_limits(threads):
            yield
    finally:
        if torch:
            torch.set_num_threads(saved)


def main_mnist(threads=None, repeats=3, seeds=3):
    print(f"machine: {machine()}")
    X, y = mnist_like()
    flops = 2 * 2 * len(X) * (784 * 256 + 256 * 10) + 2 * len(X) * 256 * 10
    print(f"data: {X.shape[0]} x {X.shape[1]} {X.dtype}, 10 classes; Dense(256, relu) -> Dense(10), "
          f"Adam(0.001), batch {MNIST_BATCH}; {flops / 1e9:.1f} GFLOP of products an epoch; threads: "
          f"{threads or f'{os.cpu_count()} (all)'}; medians of {repeats}\n")
    fits = mnist_fits(X, y)
    with thread_budget(threads):
        wall, cpu = wall_and_cpu_times(fits, repeats, block=2)
        # the loss: the same weights (where the library takes them) and the same batches
        losses = {name: np.mean([fn(seed, glorot_weights(seed), False) for seed in range(seeds)])
                  for name, fn in fits.items()}
    table(["library", "epoch (s)", "GFLOP/s", "CPU (s)", f"epoch loss ({seeds} seeds)",
           "logitlab speed-up",
           "by CPU time"],
          [[k, f"{t:.3f}", f"{flops / t / 1e9:.0f}", f"{cpu[k]:.3f}", f"{losses[k]:.4f}",
            f"{t / wall['logitlab']:.2f}x", f"{cpu[k] / cpu['logitlab']:.2f}x"]
           for k, t in wall.items()])


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

def _cli(argv):
    """``--help``, ``--mnist`` and ``--threads N`` read by hand (no benchmark starts on --help)."""
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return
    threads = None
    if "--threads" in argv:
        at = argv.index("--threads")
        if at + 1 >= len(argv) or not argv[at + 1].isdigit() or int(argv[at + 1]) < 1:
            raise SystemExit("--threads needs a positive integer")
        threads = int(argv[at + 1])
        del argv[at:at + 2]
    unknown = [a for a in argv if a != "--mnist"]
    if unknown:
        raise SystemExit(f"unknown arguments {unknown}; see --help")
    if "--mnist" in argv:
        main_mnist(threads)
    elif threads is not None:
        raise SystemExit("--threads applies to --mnist only")
    else:
        main()


if __name__ == "__main__":
    _cli(sys.argv[1:])
