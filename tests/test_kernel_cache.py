"""Kernels loaded from Numba's disk cache run, whatever order filled the cache.

A serial driver that calls a ``parallel=True`` kernel (``_sparse_ce_rows`` calls
``_sparse_ce_streamed``, on the threaded path only) is cached with Numba's hook that starts
the threading layer only when the callee was compiled as part of it. Compiled after the
callee (an earlier call had compiled it), its record has no hook, and a later process that
loaded it and called it before any parallel kernel had started the threads died with a
segmentation fault: found as a crash of the suite after another test had filled the cache
in that order. ``_jit`` now starts Numba's threads when it loads the kernels.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba", reason="Numba is a dependency; the kernels need it")

ARRAYS = """
import numpy as np
from logitlab import _jit
K = _jit._module()
x = np.random.default_rng(0).normal(size=(8, 3))
labels, weight = np.arange(8) % 3, np.ones(8)
grad, loss, bad = np.empty_like(x), np.empty(8), np.zeros(8, bool)
"""


def _python(code, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), LOGITLAB_KERNELS="always")
    return subprocess.run([sys.executable, "-c", ARRAYS + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=600)


def test_serial_kernel_cached_after_its_parallel_callee_runs_in_a_fresh_process(tmp_path):
    # fill the cache in the order that leaves the serial driver's record without the hook:
    # the parallel callee first, then, in another process that loads it from the cache,
    # the serial driver
    callee = _python("""
        from numba import types as t
        arr = lambda dt, nd: t.Array(dt, nd, "C")
        K._sparse_ce_streamed.compile((arr(t.float64, 2), arr(t.int64, 1), arr(t.float64, 1),
                                       t.float64, arr(t.float64, 2), arr(t.float64, 1),
                                       arr(t.boolean, 1), t.boolean))
        """, tmp_path)
    assert callee.returncode == 0, callee.stderr[-3000:]
    fill = _python("""
        K.sparse_ce_rows[0](x, labels, weight, 1.0, grad, loss, bad, True, False)
        print(loss.sum())
        """, tmp_path)
    assert fill.returncode == 0, fill.stderr[-3000:]
    # a fresh process loads that record and calls the serial driver first
    run = _python("""
        K.sparse_ce_rows[0](x, labels, weight, 1.0, grad, loss, bad, True, False)
        print(loss.sum())
        from logitlab.losses import sparse_categorical_crossentropy
        print(sparse_categorical_crossentropy(labels, x, from_logits=True).sum())
        """, tmp_path)
    assert run.returncode == 0, (run.returncode, run.stderr[-3000:])
    assert run.stdout.splitlines()[0] == fill.stdout.strip()  # the cached kernel, same bits
