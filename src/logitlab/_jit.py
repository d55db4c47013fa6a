"""When the compiled kernels (``_kernels.py``, Numba) run instead of the NumPy reference.

``import logitlab`` does not import Numba: the kernels are loaded on the
first call on an array of at least ``LOAD_SIZE`` elements, and compiled
then or read from Numba's on-disk cache. Loading Numba and LLVM costs
time and memory (docs/performance.md) that a script that takes the
softmax of a few thousand numbers once (the seeds' lab: 2000 x 4) would
pay for microseconds; a process that has loaded them uses them for float32 and
float64 arrays of at least ``MIN_SIZE`` elements (below that the reference
is as fast); both cores from ``PARALLEL_SIZE`` elements on. Either path
keeps the core's stated tolerances, so which one served a call does not
change what it promises.

``LOGITLAB_KERNELS=never`` (or a missing Numba) keeps everything on the
NumPy reference; ``always`` uses the kernels for every size (the tests use
:func:`kernel_mode` to run both paths on the same inputs).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy as np

__all__ = ["LOAD_SIZE", "MIN_SIZE", "PARALLEL_SIZE", "forced", "kernel_mode", "kernels_for",
           "launch", "warm"]

MIN_SIZE = 4096  # the smallest array the kernels serve, once loaded
LOAD_SIZE = 1 << 16  # the smallest array that loads them
PARALLEL_SIZE = 1 << 16  # from here on, both cores
_MODES = ("auto", "always", "never")

_state = {"mode": os.environ.get("LOGITLAB_KERNELS", "auto").lower(), "module": None,
          "failed": False}
if _state["mode"] not in _MODES:
    raise ValueError(
        f"LOGITLAB_KERNELS must be one of {', '.join(_MODES)}; got {_state['mode']!r}"
    )

# Numba's own thread pool ("workqueue") must not be entered by two threads at
# once; a second caller runs the serial kernel instead of waiting.
_PARALLEL_LOCK = threading.Lock()


def _module():
    if _state["module"] is None and not _state["failed"]:
        try:
            from . import _kernels
        except ImportError:  # Numba missing: the reference serves every call
            _state["failed"] = True
        else:
            _state["module"] = _kernels
    return _state["module"]


def kernels_for(arr):
    """The kernel module if ``arr`` should go through it, else None."""
    mode = _state["mode"]
    if mode == "never" or not isinstance(arr, np.ndarray):
        return None
    if arr.dtype not in (np.float32, np.float64) or arr.size == 0:
        return None
    if mode == "auto":
        loaded = _state["module"] is not None
        if arr.size < MIN_SIZE or (arr.size < LOAD_SIZE and not loaded):
            return None
    return _module()


def forced():
    """True when the kernels are used for every size (``always``)."""
    return _state["mode"] == "always"


def launch(pair, n_rows, size, *args, threaded=False):
    """Run a (serial, parallel) kernel pair: parallel for large inputs if no other thread is
    and Numba has more than one thread. With ``threaded``, the kernel's last argument says
    which runs (True: the parallel one)."""
    threads = sys.modules["numba"].get_num_threads  # loaded with the kernels
    if (size >= PARALLEL_SIZE and n_rows >= 2 and threads() > 1
            and _PARALLEL_LOCK.acquire(blocking=False)):
        try:
            return pair[1](*args, *((True,) if threaded else ()))
        finally:
            _PARALLEL_LOCK.release()
    return pair[0](*args, *((False,) if threaded else ()))


@contextlib.contextmanager
def kernel_mode(mode):
    """Temporarily set the mode (``"auto"``, ``"always"`` or ``"never"``)."""
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {', '.join(_MODES)}; got {mode!r}")
    old = _state["mode"]
    _state["mode"] = mode
    try:
        yield
    finally:
        _state["mode"] = old


def warm():
    """Compile every kernel, serial and parallel, float32 and float64, into Numba's disk cache.

    ``make test`` runs this before the tests (``make demo`` after the demo, in
    the background; ``make warm`` on its own), so that a process's first call
    loads the kernels rather than compiling them (several times slower; the
    figures are in docs/performance.md). Returns the number of kernels
    compiled or loaded (0 without Numba).
    """
    kernels = _module()
    if kernels is None:
        return 0
    calls = [  # each kernel pair, with a function making fresh arguments from x, t and y
        (kernels.softmax_rows, lambda x, t, y: (x, np.empty_like(x), np.zeros(2, bool), True)),
        (kernels.log_softmax_rows, lambda x, t, y: (x, np.empty_like(x), np.zeros(2, bool))),
        (kernels.logsumexp_rows, lambda x, t, y: (x, np.empty(2), np.zeros(2, bool))),
        (kernels.sparse_ce_rows, lambda x, t, y: (x, y, np.ones(2), 0.5, np.empty_like(x),
                                                  np.empty(2), np.zeros(2, bool), True, True)),
        (kernels.categorical_ce_rows, lambda x, t, y: (x, t, 0.5, np.empty_like(x), np.empty(2),
                                                       np.zeros(2, bool))),
    ]
    count = 0
    for dtype in (np.float32, np.float64):
        x = np.zeros((2, 3), dtype=dtype)
        t = np.full((2, 3), 1 / 3, dtype=dtype)
        y = np.zeros(2, dtype=np.intp)
        for pair, make_args in calls:
            for fn in pair:
                fn(*make_args(x, t, y))
                count += 1
    return count
