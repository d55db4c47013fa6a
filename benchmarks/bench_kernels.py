"""Softmax forward and cross-entropy forward+backward, float32, against the peers.

    python benchmarks/bench_kernels.py [--quick]

Peers measured in the same run when installed: plain NumPy, PyTorch (CPU),
JAX (jit), timed in turn, three calls at a time in an order shuffled anew
each round, the first of each three not counted and 50 ms of rest before
each three (``median_times``, ``PAUSE``), so that all see the same phases of
a shared machine and none pays for its predecessor. Every library returns a
fresh result; the row "logitlab, out= reused" times the same public calls
writing into one buffer kept across calls (``out=``), which saves the OS's
zeroing of fresh pages. Reports elements/s, effective GB/s (8 bytes per
element for CE: read the logits, write the gradient) next to the measured
copy bandwidth (into a reused array; into a fresh one it is printed too),
and logitlab's ratio to each peer.
"""


import numpy as np

from _common import arguments, copy_bandwidth, machine, median_times, table

import logitlab as ll
from logitlab.losses import SparseCategoricalCrossentropy

ARGS = arguments(__doc__)
QUICK = ARGS.quick
# Seconds of rest before each block of calls, whichever library's: PyTorch's OpenMP threads
# spin on both cores for a while after its call. Measured on the 2-core Zen 2 (2026-12-04),
# logitlab's CE at 8192 x 1000 in the six calls straight after a PyTorch CE: 7.6, 5.2, 5.5,
# 6.0, 4.1, 3.3 ms (medians of 20); after 10 to 50 ms of rest: 3.5-3.8 ms, then 3.2-3.3 ms
# (3.2 ms with OMP_WAIT_POLICY=PASSIVE). The first call of a block was not enough to absorb it.
PAUSE = 0.05
SIZES = [(65536, 10), (8192, 1000)] if QUICK else [(65536, 10), (8192, 1000), (4096, 32768),
                                                    (1024, 131072)]


def numpy_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def numpy_ce(z, y):
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(s[:, 0]) - (z[np.arange(len(z)), y] - m[:, 0]))
    g = e / s
    g[np.arange(len(z)), y] -= 1
    return loss, g / len(z)


def peers():
    out = {"numpy": (numpy_softmax, numpy_ce)}
    try:
        import torch

        torch.set_num_threads(2)

        def t_soft(z):
            return torch.softmax(torch.from_numpy(z), dim=1)

        def t_ce(z, y):
            zt = torch.from_numpy(z).requires_grad_()
            loss = torch.nn.functional.cross_entropy(zt, torch.from_numpy(y))
            loss.backward()
            return loss.item(), zt.grad
        out[f"torch {torch.__version__}"] = (t_soft, t_ce)
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
        import optax  # noqa: F401
    except ImportError:
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            jax = None
    if jax is not None:
        soft = jax.jit(lambda z: jax.nn.softmax(z, axis=1))

        def ce_loss(z, y):
            lp = jax.nn.log_softmax(z, axis=1)
            return -jnp.mean(jnp.take_along_axis(lp, y[:, None], axis=1))
        ce = jax.jit(jax.value_and_grad(ce_loss))
        out[f"jax {jax.__version__}"] = (lambda z: soft(z).block_until_ready(),
                                         lambda z, y: jax.block_until_ready(ce(z, y)))
    return out


def main():
    print(f"machine: {machine()}")
    bw = copy_bandwidth()
    print(f"measured copy bandwidth: {bw:.1f} GB/s "
          f"(into a fresh array each time: {copy_bandwidth(fresh=True):.1f} GB/s)\n")
    loss = SparseCategoricalCrossentropy(from_logits=True)
    ours = {"softmax": ll.softmax, "ce": loss.value_and_grad}
    rows = []
    others = peers()
    rng = np.random.default_rng(0)
    for n, c in SIZES:
        z = rng.normal(0, 3, size=(n, c)).astype(np.float32)
        y = rng.integers(0, c, size=n)
        elements = n * c
        repeats = max(7, min(25, int(2e8 // elements)))  # medians over 0.2e9 elements, 7 calls at least
        out = np.empty_like(z)  # one buffer for every call: what a training loop keeps
        calls = {
            ("logitlab", "softmax"): lambda: ours["softmax"](z),
            ("logitlab", "ce"): lambda: ours["ce"](y, z),
            ("logitlab, out= reused", "softmax"): lambda: ours["softmax"](z, out=out),
            ("logitlab, out= reused", "ce"): lambda: ours["ce"](y, z, out=out),
        }
        for name, (soft, ce) in others.items():
            calls[name, "softmax"] = lambda soft=soft: soft(z)
            calls[name, "ce"] = lambda ce=ce: ce(z, y)
        # in turn: every library sees the same phases
        medians = median_times(calls, repeats, pause=PAUSE)
        t_soft, t_ce = medians["logitlab", "softmax"], medians["logitlab", "ce"]
        names = ["logitlab, out= reused", "logitlab", *others]
        timed = {name: (medians[name, "softmax"], medians[name, "ce"]) for name in names}
        for name, (ts, tc) in timed.items():
            rows.append([f"{n}x{c}", name, f"{elements / ts / 1e9:.2f}",
                         f"{elements / tc / 1e9:.2f}", f"{8 * elements / tc / 1e9:.1f}",
                         f"{8 * elements / tc / 1e9 / bw:.0%}",
                         f"{ts / t_soft:.2f}", f"{tc / t_ce:.2f}"])
    table(["N x C", "library", "softmax Gelem/s", "CE fwd+bwd Gelem/s", "CE GB/s",
           "of copy bw", "logitlab softmax speed-up", "logitlab CE speed-up"], rows)


if __name__ == "__main__":
    main()
