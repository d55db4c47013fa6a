"""Hostile and damaged model files (issue 19): peak memory and time to reject each one.

    python benchmarks/bench_hostile_files.py

Each file is crafted by ``tests/hostile_files.py`` (the same functions the tests
use) from a small model saved in this run. For each: the file's size, the peak
memory that ``tracemalloc`` traced while loading it (NumPy's arrays included; one
run after a warm-up, so first-use imports are not counted), the loader's budget
(64 x the file's size + 4 MiB, what ``tests/test_reliability.py``'s fuzzer
asserts), the median time to reject over 5 runs, and the start of the message.
The ``logitlab predict`` rows run the command in this process (Click's runner).
"""

import csv
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import hostile_files as hf  # noqa: E402
from _common import machine, table  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from logitlab import ModelFileError, Sequential, load_model  # noqa: E402
from logitlab.cli._main import cli  # noqa: E402
from logitlab.estimators import load_estimator  # noqa: E402
from logitlab.layers import Dense  # noqa: E402
from logitlab.losses import SparseCategoricalCrossentropy  # noqa: E402

REPEATS = 5


def sequential_bytes(folder):
    model = Sequential([Dense(6, "relu"), Dense(3)], seed=0)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(40, 4)), rng.integers(0, 3, 40), epochs=1, verbose=0)
    path = folder / "seq.logitlab"
    model.save(path)
    return path.read_bytes()


def cli_files(folder):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0)
    data = folder / "blobs.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "label"])
        w.writerows([[*map(repr, map(float, x)), "abc"[t]] for x, t in zip(X, y)])
    runner = CliRunner()
    softmax, mlp = folder / "sm.logitlab", folder / "mlp.logitlab"
    for args in (["train", data, "--target", "label", "-o", softmax],
                 ["train", data, "--target", "label", "--model", "mlp", "--hidden", "8",
                  "--epochs", "3", "-o", mlp]):
        res = runner.invoke(cli, list(map(str, args)))
        assert res.exit_code == 0, res.output
    return data, softmax.read_bytes(), mlp.read_bytes()


def reject(fn):
    """Run ``fn``; return the message of the ModelFileError (or CLI error) it ends in."""
    try:
        out = fn()
    except ModelFileError as exc:
        return str(exc)
    if hasattr(out, "exit_code") and out.exit_code == 2:
        return out.output.strip()
    raise AssertionError(f"not rejected: {out!r}")


def measure(fn):
    reject(fn)  # warm-up
    tracemalloc.start()
    try:
        message = reject(fn)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        reject(fn)
        times.append(time.perf_counter() - t)
    return peak, float(np.median(times)), message


def main():
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seq = sequential_bytes(folder)
        data, softmax, mlp = cli_files(folder)
        w0 = np.zeros((4, 6), np.float32)

        def inflate_net(h):
            h["config"]["network"]["input_dim"] = 20000
            h["config"]["network"]["layers"][0]["config"]["units"] = 20000

        def slot_shape(blob):
            return hf.rewrite(blob, arrays={"opt/velocities/0": np.zeros(50, np.float32)})

        cases = [
            ("2,000 overlapping zip entries", hf.overlapping_entries(2000), load_model),
            ("duplicate arrays/0.npy", hf.duplicate_entry(seq, "arrays/0.npy", hf.npy_bytes(w0)),
             load_model),
            ("duplicate logitlab.json (v2 first)", hf.duplicate_header(seq, 2), load_model),
            ("input_dim = units = 20000", hf.inflated_dense(seq, 20000), load_model),
            ("2,000 Dense(2000) layers", hf.many_dense_layers(seq, 2000, 2000), load_model),
            ("Adam slot of the wrong shape", slot_shape(seq), load_model),
            ("MLP network input_dim = units = 20000 (predict)", hf.rewrite(mlp, inflate_net),
             "predict"),
            ("2 class names, 3-row coef (predict)",
             hf.rewrite(softmax, lambda h: h["config"].update(classes=["a", "b"])), "predict"),
            ("coef of shape (3, 5) (predict)", hf.rewrite(softmax, arrays={"coef": np.zeros((3, 5))}),
             "predict"),
            ("NaN coef (predict)", hf.rewrite(softmax, arrays={"coef": np.full((3, 4), np.nan)}),
             "predict"),
            ("zero scale (predict)",
             hf.rewrite(softmax, arrays={"extra/scale": np.array([1.0, 0.0, 1.0, 1.0])}), "predict"),
        ]
        runner = CliRunner()
        rows = []
        for name, blob, how in cases:
            path = folder / "case.logitlab"
            path.write_bytes(blob)
            if how == "predict":
                fn = lambda: runner.invoke(cli, ["predict", str(path), str(data)])  # noqa: E731
                runner.invoke(cli, ["predict", str(path), str(data)])
            else:
                fn = lambda: how(path)  # noqa: E731
            peak, seconds, message = measure(fn)
            size = len(blob)
            budget = 64 * size + (4 << 20)
            message = message.replace(str(path), "FILE").replace("Error: ", "")
            rows.append((name, f"{size:,}", f"{peak / 2**20:.2f}", f"{budget / 2**20:.1f}",
                         f"{seconds * 1e3:.1f}", message[:70]))
            assert peak < budget, (name, peak, budget)
        table(["file", "bytes", "peak MiB", "budget MiB", "ms to reject", "message"], rows)
        # the estimator loader on its own, for the SoftmaxRegression rows
        path = folder / "case.logitlab"
        path.write_bytes(hf.rewrite(softmax, arrays={"coef": np.full((3, 4), np.nan)}))
        peak, seconds, _ = measure(lambda: load_estimator(path))
        print(f"load_estimator on the NaN-coef file: peak {peak / 2**20:.2f} MiB, "
              f"{seconds * 1e3:.1f} ms")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pid {os.getpid()}")


if __name__ == "__main__":
    main()
