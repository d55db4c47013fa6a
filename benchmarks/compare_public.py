"""logitlab's public softmax and sparse CE, with the kernels of this checkout and of REV, beside PyTorch.

    python benchmarks/compare_public.py REV [ROUNDS]

One process, one float32 array of 8192 x 1000: ``logitlab.softmax`` and
``SparseCategoricalCrossentropy(from_logits=True).value_and_grad`` run once
with this checkout's kernels and once with those of ``REV`` (loaded as
``compare_kernels.py`` loads them), timed in turn with PyTorch's
``softmax`` and ``cross_entropy`` forward+backward (``median_times``). Each
round prints elements/s and the ratio of PyTorch's time to each of ours,
so a change is judged against the peer in the same phases of the machine.
"""

import sys
import types

import numpy as np
import torch

from _common import median_times
from compare_kernels import load_revision

import logitlab as ll
from logitlab import _jit
from logitlab import _kernels as now
from logitlab.losses import SparseCategoricalCrossentropy


def with_kernels(module, fn):
    def call():
        _jit._state["module"] = module
        return fn()
    return call


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    before = load_revision(sys.argv[1])
    before = types.SimpleNamespace(**vars(before))
    for name in ("softmax_rows", "sparse_ce_rows"):  # kernels from before their `threaded` flag
        pair = getattr(before, name)
        if pair[0].py_func.__code__.co_argcount < getattr(now, name)[0].py_func.__code__.co_argcount:
            setattr(before, name, tuple(lambda *args, k=k: k(*args[:-1]) for k in pair))
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    torch.set_num_threads(2)
    n, c = 8192, 1000
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(n, c)).astype(np.float32)
    y = rng.integers(0, c, size=n)
    loss = SparseCategoricalCrossentropy(from_logits=True)
    ll.softmax(z)  # loads the kernels

    def torch_ce():
        zt = torch.from_numpy(z).requires_grad_()
        value = torch.nn.functional.cross_entropy(zt, torch.from_numpy(y))
        value.backward()
        return value.item(), zt.grad

    calls = {"softmax now": with_kernels(now, lambda: ll.softmax(z)),
             "softmax before": with_kernels(before, lambda: ll.softmax(z)),
             "softmax torch": lambda: torch.softmax(torch.from_numpy(z), dim=1),
             "ce now": with_kernels(now, lambda: loss.value_and_grad(y, z)),
             "ce before": with_kernels(before, lambda: loss.value_and_grad(y, z)),
             "ce torch": torch_ce}
    for r in range(rounds):
        m = median_times(calls, 15, seed=r)
        rates = ", ".join(f"{k} {n * c / v / 1e9:.2f}" for k, v in m.items())
        print(f"G elements/s: {rates}")
        print("  PyTorch's time over ours: softmax now {:.2f}x, before {:.2f}x; CE now {:.2f}x, before {:.2f}x"
              .format(m["softmax torch"] / m["softmax now"], m["softmax torch"] / m["softmax before"],
                      m["ce torch"] / m["ce now"], m["ce torch"] / m["ce before"]), flush=True)
    _jit._state["module"] = now


if __name__ == "__main__":
    main()
