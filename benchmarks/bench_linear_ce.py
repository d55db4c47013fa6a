"""Peak memory of linear_cross_entropy against the materialised computation.

    python benchmarks/bench_linear_ce.py [--quick]

N = 4096 hidden vectors of d = 1024, C = 131072 classes, float32 (the
materialised logits alone are 2 GiB). Peak extra memory is measured with
tracemalloc (NumPy reports its allocations to it), less the gradients both
must return.
"""

import time
import tracemalloc

import numpy as np

from _common import arguments, machine, table

from logitlab.losses import linear_cross_entropy

ARGS = arguments(__doc__)
QUICK = ARGS.quick
N, D, C = (1024, 256, 32768) if QUICK else (4096, 1024, 131072)


def materialised(h, W, y):
    z = h @ W.T
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    s = z.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - np.log(z[np.arange(len(y)), y])))
    z /= s
    z[np.arange(len(y)), y] -= 1
    z /= len(y)
    return loss, z @ W, z.T @ h


def measure(fn):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, peak, elapsed


def main():
    print(f"machine: {machine()}\nN={N}, d={D}, C={C}, float32\n")
    rng = np.random.default_rng(0)
    h = rng.normal(size=(N, D)).astype(np.float32)
    W = (rng.normal(size=(C, D)) / np.sqrt(D)).astype(np.float32)
    y = rng.integers(0, C, size=N)
    outputs = h.nbytes + W.nbytes
    (l1, *_), p1, t1 = measure(lambda: linear_cross_entropy(h, W, y, chunk_size=4096))
    (l2, *_), p2, t2 = measure(lambda: materialised(h, W, y))
    table(["computation", "loss", "peak extra memory (MiB)", "time (s)"],
          [["linear_cross_entropy, chunk 4096", f"{l1:.6f}", f"{(p1 - outputs) / 2**20:.0f}",
            f"{t1:.1f}"],
           ["materialised N x C", f"{l2:.6f}", f"{(p2 - outputs) / 2**20:.0f}", f"{t2:.1f}"],
           ["ratio", "", f"{(p1 - outputs) / (p2 - outputs):.3f}", f"{t1 / t2:.2f}"]])


if __name__ == "__main__":
    main()
