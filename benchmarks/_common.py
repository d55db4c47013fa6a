"""Shared helpers for the benchmark scripts (timing, machine facts, tables)."""

import argparse
import os
import platform
import sys
import time

import numpy as np


def arguments(doc, *options, argv=None):
    """The script's command line, parsed by argparse: ``--help`` prints the script's
    docstring and runs nothing. ``options`` are ``(flag, kwargs)`` pairs beyond ``--quick``,
    which every benchmark takes (smaller sizes, for a first look)."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a first look")
    for flag, kwargs in options:
        parser.add_argument(flag, **kwargs)
    return parser.parse_args(sys.argv[1:] if argv is None else argv)


def fits_in_turn(fits, X, y, repeats, warmup_rows=0, pause=0.0):
    """Run each of ``fits`` (name to ``fit(X, y)``) ``repeats`` times, in turn, the order
    reversed every other round; returns ``(times, models)``: each name's wall times and
    its last fitted model. With ``warmup_rows``, each fit first runs once, untimed, on
    that many first rows: a process's one-time costs (loading compiled kernels, starting
    thread pools) are not charged to the first timed fit. ``pause`` seconds of sleep
    before each timed fit: OpenBLAS's threads spin on the cores for about 0.1 s after a
    product, so a fit started straight after another library's shares the cores with
    them (measured on the 2-core Zen 2: logitlab's 50000 x 50 x 10 fit took 0.21-0.22 s
    straight after scikit-learn's, 0.16-0.17 s after 0.3 s of rest); the pause gives each
    fit, whichever library ran before it, the idle machine a lone fit has."""
    times, models = {name: [] for name in fits}, {}
    order = list(fits)
    for name in order if warmup_rows else ():
        fits[name](X[:warmup_rows], y[:warmup_rows])
    for r in range(repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            time.sleep(pause)
            t = time.perf_counter()
            models[name] = fits[name](X, y)
            times[name].append(time.perf_counter() - t)
    return times, models


def median_time(fn, repeats=5, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def median_times(fns, repeats=5, warmup=1, seed=0, block=3, pause=0.0):
    """Median wall time of each of ``fns`` (a dict of name to function), the functions in turn.

    Rounds: in each, every function runs ``block`` calls in a row, in an
    order shuffled anew (seeded) each round, and the first call of each
    block is not counted; rounds go on until each function has ``repeats``
    counted calls. In turn, so that every library sees the same phases of a
    shared machine (whose speed moves by a third over a few seconds)
    instead of one library the fast phase and the next the slow one. The
    first call of a block pays for its predecessor, not for itself: a
    peer's thread pool still spinning on both cores after its call (JAX's
    and PyTorch's do), pages its predecessor handed back to the OS and that
    must be zeroed again. Measured, a logitlab call after JAX's CE took 2-3x
    its usual time, and PyTorch's softmax after NumPy's up to 10x. One
    call is not always enough: ``pause`` seconds of sleep before each block
    let a peer's spinning threads park (see ``bench_kernels.PAUSE``).
    """
    return wall_and_cpu_times(fns, repeats, warmup, seed, block, pause)[0]


def wall_and_cpu_times(fns, repeats=5, warmup=1, seed=0, block=3, pause=0.0):
    """:func:`median_times`'s rounds, each counted call timed by the wall clock and by this
    process's CPU time: ``(wall, cpu)``, two dicts of medians.

    On a machine shared with other work, the wall time of a call held to one thread grows
    with the others' load; its CPU time much less so (what remains: caches shared with the
    others). With more threads, CPU time also counts the time threads spin waiting.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    order = list(fns)
    rng = np.random.default_rng(seed)
    while len(wall[order[0]]) < repeats:
        for i in rng.permutation(len(order)):
            name = order[i]
            time.sleep(pause)
            for call in range(block):
                c, t = time.process_time(), time.perf_counter()
                fns[name]()
                if call:
                    wall[name].append(time.perf_counter() - t)
                    cpu[name].append(time.process_time() - c)
    return ({name: float(np.median(ts)) for name, ts in wall.items()},
            {name: float(np.median(ts)) for name, ts in cpu.items()})


def copy_bandwidth(n_bytes=512 << 20, repeats=5, fresh=False):
    """Measured memory bandwidth of a large copy, in GB/s (read + write counted).

    Into one reused array; with ``fresh``, into a new array each time, whose
    pages the OS zeroes on their first touch (what a function returning a
    fresh result pays).
    """
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    if fresh:
        t = median_time(lambda: np.copyto(np.empty_like(src), src), repeats)
    else:
        t = median_time(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / t / 1e9


def machine():
    """The CPU (with its family and model, which tell its generation, and its widest vector
    instructions), the cores, Python and NumPy."""
    cpu = platform.processor() or platform.machine()
    facts = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                facts.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = facts.get("model name", cpu)
    if "cpu family" in facts:
        flags = facts.get("flags", "").split()
        vectors = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
        cpu += f" (family {facts['cpu family']}, model {facts.get('model', '?')}, {vectors})"
    try:
        from llvmlite import binding

        cpu += f", LLVM target {binding.get_host_cpu_name()}"  # the JIT's name for it, e.g. znver4
    except ImportError:
        pass
    # a target forced on the JIT (docs/kernels.md: the AVX2 path on an AVX-512 machine), and
    # the peers' own instruction-set limits, are part of what was measured
    forced = [f"{k}={os.environ[k]}" for k in ("NUMBA_CPU_NAME", "ATEN_CPU_CAPABILITY",
                                                "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE")
              if os.environ.get(k)]
    if forced:
        cpu += f" [{', '.join(forced)}]"
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"


def table(header, rows):
    """Print a plain, pasteable Markdown table."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()
