"""Softmax regression on Dask: against dask-ml, against scikit-learn, and past memory.

    python benchmarks/bench_dask.py [--quick] [--skip-past-memory]

1. Binary problem (the only kind dask-ml's LogisticRegression fits), same
   data and cluster: time to the objective each reaches, and the client
   process's peak memory while fitting.
2. A 10-class problem: our Dask fit against scikit-learn in memory.
3. Data three times larger than the memory the workers are given, generated
   chunk by chunk and never held: the fit streams it on every L-BFGS pass.
"""

import threading
import time
import tracemalloc
import warnings

import numpy as np
import psutil

from _common import arguments, machine, table

import dask.array as da
import distributed
from logitlab import SoftmaxRegression

ARGS = arguments(__doc__, ("--skip-past-memory", dict(
    action="store_true", help="leave out the part that runs past a worker's memory")))
QUICK = ARGS.quick


class PeakMemory:
    """Peak memory of this (client) process while the block runs: RSS growth, sampled
    every 5 ms, and the peak of Python/NumPy allocations traced by tracemalloc."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        tracemalloc.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.running = False
        self.thread.join()

    def __str__(self):
        return f"{(self.peak - self.base) / 2**20:.0f} / {self.traced / 2**20:.1f}"


def mean_log_loss(coef, intercept, X, y):
    z = X @ coef.T + intercept
    if z.shape[1] == 1:
        z = np.column_stack([np.zeros(len(z)), z[:, 0]])
    z -= z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def make(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k)) * 0.5
    y = np.argmax(X @ W + rng.gumbel(size=(n, k)), axis=1)  # noisy: not separable
    return X, y


def part1(client, rows):
    import scipy.optimize  # noqa: F401 - imported before measuring, for both fits
    from dask_ml.linear_model import LogisticRegression as DaskMLLogisticRegression

    import logitlab.estimators._dask  # noqa: F401

    n = 100_000 if QUICK else 400_000
    X, y = make(n, 20, 2, 0)
    Xd, yd = client.persist([da.from_array(X, chunks=(n // 8, 20)), da.from_array(y, chunks=n // 8)])
    def fit_dml(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return DaskMLLogisticRegression(solver="lbfgs", C=1e12, max_iter=max_iter,
                                            tol=1e-8).fit(Xd, yd)

    def fit_ours(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SoftmaxRegression(penalty=None, tol=1e-8, max_iter=max_iter).fit(Xd, yd)

    fit_ours(2), fit_dml(2)  # warm-up: first-use costs of the scheduler, which runs in-process
    t = time.perf_counter()
    ours = fit_ours(1000)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    dml = fit_dml(1000)
    t_dml = time.perf_counter() - t
    with PeakMemory() as mem_ours:  # memory in separate runs: tracing slows the fits
        fit_ours(1000)
    with PeakMemory() as mem_dml:
        fit_dml(1000)
    f_ours = mean_log_loss(ours.coef_, ours.intercept_, X, y)
    f_dml = mean_log_loss(np.atleast_2d(dml.coef_), np.atleast_1d(dml.intercept_), X, y)
    rows += [[f"binary {n}x20, 8 chunks", "logitlab on Dask", f"{t_ours:.2f}", f"{f_ours:.10f}",
              str(mem_ours)],
             ["", "dask-ml LogisticRegression(lbfgs)", f"{t_dml:.2f}", f"{f_dml:.10f}",
              str(mem_dml)]]


def part2(client, rows):
    n = 50_000 if QUICK else 200_000
    X, y = make(n, 50, 10, 1)
    Xd, yd = client.persist([da.from_array(X, chunks=(n // 8, 50)), da.from_array(y, chunks=n // 8)])
    t = time.perf_counter()
    ours = SoftmaxRegression(tol=1e-8).fit(Xd, yd)
    t_ours = time.perf_counter() - t
    from sklearn.linear_model import LogisticRegression

    t = time.perf_counter()
    sk = LogisticRegression(tol=1e-8, max_iter=1000).fit(X, y)
    t_sk = time.perf_counter() - t
    gap = np.linalg.norm(ours.coef_ - sk.coef_) / np.linalg.norm(sk.coef_)
    rows += [[f"10 classes {n}x50", "logitlab on Dask", f"{t_ours:.2f}",
              f"{mean_log_loss(ours.coef_, ours.intercept_, X, y):.10f}", ""],
             ["", "scikit-learn in memory", f"{t_sk:.2f}",
              f"{mean_log_loss(sk.coef_, sk.intercept_, X, y):.10f}", f"(coef gap {gap:.1e})"]]


def part3():
    limit = 600 if QUICK else 1024  # MiB per worker (a worker process itself takes ~200 MiB)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=f"{limit}MiB",
                                       dashboard_address=None)
    with distributed.Client(cluster):
        d = 50
        n = int(3 * 2 * limit * 2**20 / (8 * d))  # 3x the workers' memory, float64
        chunks = 60
        X = da.random.RandomState(0).normal(size=(n, d), chunks=(n // chunks, d))
        w = np.linspace(-1, 1, d)
        y = (X @ w > 0).astype(int) + (X[:, 0] > 1).astype(int)  # 3 classes, lazily
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = SoftmaxRegression(max_iter=5).fit(X, y)
        elapsed = time.perf_counter() - t
    cluster.close()
    gib = n * d * 8 / 2**30
    table(["data", "workers' memory", "chunks", "L-BFGS iterations", "time (s)", "result"],
          [[f"{n}x{d} float64 = {gib:.2f} GiB", f"2 x {limit} MiB", str(chunks),
            str(clf.n_iter_[0]), f"{elapsed:.1f}", f"fitted, classes {list(clf.classes_)}"]])


def main():
    print(f"machine: {machine()}\n")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    rows = []
    with distributed.Client(cluster) as client:
        part1(client, rows)
        part2(client, rows)
    cluster.close()
    table(["problem", "fit", "time (s)", "mean log loss reached",
           "client peak extra MiB: RSS / traced"], rows)
    if not ARGS.skip_past_memory:
        part3()


if __name__ == "__main__":
    main()
