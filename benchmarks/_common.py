"""Shared helpers for the benchmark scripts (timing, machine facts, tables)."""

import os
import platform
import time

import numpy as np


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
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
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
