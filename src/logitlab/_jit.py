"""When the compiled kernels (``_kernels.py``, Numba) run instead of the NumPy reference.

``import logitlab`` does not import Numba: the kernels are loaded on the
first call on an array of at least ``LOAD_SIZE`` elements, and compiled
then or read from Numba's on-disk cache. Loading Numba and LLVM costs
time and memory (docs/performance.md) that a script that takes the
softmax of a few thousand numbers once (the seeds' lab: 2000 x 4) would
pay for microseconds; a process that has loaded them uses them for float32 and
float64 arrays of at least ``MIN_SIZE`` elements; both cores from
``PARALLEL_SIZE`` elements on. Inside a fit (:func:`fit_mode`) the fit's sizes
alone choose, for every array: the kernels throughout, or the reference. Either path
keeps the core's stated tolerances, so which one served a call does not
change what it promises.

``LOGITLAB_KERNELS=never`` (or a missing Numba) keeps everything on the
NumPy reference; ``always`` uses the kernels for every size (the tests use
:func:`kernel_mode` to run both paths on the same inputs).

Forked processes. Unless the user has chosen one (``NUMBA_THREADING_LAYER``
or ``numba.config.THREADING_LAYER``), the kernels ask Numba for its
``forksafe`` threading layer: TBB where the ``tbb`` package is installed,
else Numba's own ``workqueue``, which every Numba has. GNU OpenMP, which
Numba's default picks on Linux, kills a ``fork`` child that enters it
again ("fork() called from a process already using GNU OpenMP, this is
unsafe"), so a ``multiprocessing`` Pool hung. ``workqueue`` cannot be
entered by two threads at once: ``_PARALLEL_LOCK`` sends a second thread to
the serial kernel (same bits). Where the layer in use is not fork-safe
anyway (the user chose ``omp``, or ran parallel Numba code of their own
first), a child after ``fork`` runs the serial kernels only.

Failures. If Numba cannot be imported, ``_kernels`` cannot be loaded, or a
kernel cannot be compiled (a Numba or llvmlite release that changed what it
relies on, an unsupported CPU), the call is served by the kernel's contract
in NumPy (``_kernel_fallback``, on the core's ``softmax_parts``): never an
exception, and one :class:`KernelUnavailableWarning` a process. A parallel
kernel that fails falls back to its serial twin first.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings

import numpy as np

from ._lazy import whole
from ._validation import user_stacklevel

__all__ = ["LOAD_SIZE", "MIN_SIZE", "PARALLEL_SIZE", "KernelUnavailableWarning", "fit_choice",
           "fit_mode", "forced", "kernel_mode", "kernels_for", "launch", "load_for", "readonly",
           "warm"]

MIN_SIZE = 4096  # the smallest array the kernels serve, once loaded (outside a fit: fit_mode)
LOAD_SIZE = 1 << 16  # the smallest array that loads them
PARALLEL_SIZE = 1 << 16  # from here on, both cores
_MODES = ("auto", "always", "never")

_state = {"mode": os.environ.get("LOGITLAB_KERNELS", "auto").lower(), "module": None,
          "failed": False, "serial": False, "warned": False}
_broken = set()  # kernels (serial or parallel dispatchers) that failed to compile
_FORK_SAFE = ("tbb", "workqueue")  # Numba's threading layers that survive fork
if _state["mode"] not in _MODES:
    raise ValueError(
        f"LOGITLAB_KERNELS must be one of {', '.join(_MODES)}; got {_state['mode']!r}"
    )

# Numba's own thread pool ("workqueue") must not be entered by two threads at
# once; a second caller runs the serial kernel instead of waiting.
_PARALLEL_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()  # loading the kernels (_module)
_WARN_LOCK = threading.Lock()
_local = threading.local()  # a fit's choice of path, for its own thread (fit_mode)


class KernelUnavailableWarning(RuntimeWarning):
    """The compiled kernels could not be loaded or compiled; the NumPy reference serves
    the calls they would have (same results within the stated tolerances, slower).
    Issued once a process."""


def _unavailable(what, exc):
    """Warn, once a process, that ``what`` failed with ``exc`` and NumPy serves instead."""
    with _WARN_LOCK:
        if _state["warned"]:
            return
        _state["warned"] = True
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = f"{type(exc).__name__}: {' '.join(lines[:2])[:300]}"
    warnings.warn(
        f"logitlab's compiled kernels are unavailable ({what} failed with {detail}); the "
        "NumPy reference serves these calls: same results within the stated tolerances, "
        "slower. Install a Numba in the range pyproject.toml names, or set "
        "LOGITLAB_KERNELS=never to use the reference without this warning.",
        KernelUnavailableWarning, stacklevel=user_stacklevel())


def _prefer_fork_safe_threads():
    """Ask Numba for a fork-safe threading layer (see the module's docstring), unless the
    user chose one or Numba's threads already run. Numba must not be imported before."""
    import numba

    if "NUMBA_THREADING_LAYER" in os.environ or numba.config.THREADING_LAYER != "default":
        return
    try:
        numba.threading_layer()
    except ValueError:  # no layer launched yet: the choice is still open
        numba.config.THREADING_LAYER = "forksafe"


def _layer():
    """The threading layer Numba runs, or None (not loaded, or not launched yet)."""
    numba = sys.modules.get("numba")
    try:
        return numba.threading_layer() if numba is not None else None
    except Exception:  # not launched: a child may launch its own
        return None


def _after_fork_in_child():
    global _PARALLEL_LOCK, _LOAD_LOCK
    # a lock a parent's thread held at the fork stays held in the child: a fresh one
    _PARALLEL_LOCK = threading.Lock()
    _LOAD_LOCK = threading.Lock()
    layer = _layer()
    if layer is not None and layer not in _FORK_SAFE:
        _state["serial"] = True  # GNU OpenMP cannot be entered again after fork


os.register_at_fork(after_in_child=_after_fork_in_child)


#: what loading the kernels imports for the first time, forgotten if the load is stopped:
#: Numba and what it imports (a review: interrupted in yaml's or scipy's first import
#: inside Numba's, every later load, or SoftmaxRegression's import, failed)
_LOADED_WITH_NUMBA = ("numba", "llvmlite", "yaml", "scipy", __package__ + "._kernel_cache",
                      __package__ + "._kernel_exp", __package__ + "._kernels",
                      __package__ + "._model_kernels")


def _module():
    if _state["module"] is None and not _state["failed"]:
        # one thread loads, the others wait for it (a review: a second thread's first
        # call, while the first thread's load was interrupted, got a half-made Numba)
        with _LOAD_LOCK:
            if _state["module"] is None and not _state["failed"]:
                _load()
    return _state["module"]


def _load():
    try:
        # an interrupt part way: the next call loads them whole (a stranger's Ctrl-C while
        # Numba loaded, in a first fit: the next fit crashed)
        with whole(*_LOADED_WITH_NUMBA):
            _prefer_fork_safe_threads()
            from . import _kernels, _model_kernels  # noqa: F401  (served from _kernels)
    except Exception as exc:  # Numba missing or broken: the reference serves every call
        _state["failed"] = True
        _unavailable("loading Numba and the kernels", exc)
    else:
        if not _state["serial"]:
            # Start Numba's threads now, not at the first parallel call. A serial driver
            # that calls a parallel kernel (_sparse_ce_rows calls _sparse_ce_streamed) is
            # cached without Numba's hook that starts them when it was compiled against
            # a callee loaded from the cache; loaded and called before any parallel
            # kernel had run, it crashed the process (tests/test_kernel_cache.py).
            # Before the module is marked loaded: an interrupt here, and the next call
            # starts them.
            _threads()
        _state["module"] = _kernels


def _mode():
    """This thread's mode: a fit's own choice (:func:`fit_mode`), else the process's."""
    return getattr(_local, "mode", None) or _state["mode"]


def fit_choice(work):
    """The path a fit of ``work`` elements takes in this thread: ``"always"`` (the kernels
    for every array, loaded if need be) where ``work`` reaches ``LOAD_SIZE``, else
    ``"never"`` (the reference for every array); an enclosing fit's choice in this thread
    if there is one (a cross-validation's fold fits take the whole path's); None where
    the user chose the mode (``LOGITLAB_KERNELS``, :func:`kernel_mode`), which is kept."""
    if _state["mode"] != "auto":
        return None
    return getattr(_local, "mode", None) or ("always" if work >= LOAD_SIZE else "never")


@contextlib.contextmanager
def fit_mode(work=None, *, choice=None):
    """For the calls this thread makes inside, a fit's path: :func:`fit_choice` of ``work``,
    or ``choice`` (one made in another thread: the fit's worker threads take their
    caller's; None, as with neither given, changes nothing).

    In ``auto`` mode the path of an array of ``MIN_SIZE`` to ``LOAD_SIZE`` elements depends
    on whether an earlier call in the process loaded the kernels; the two paths agree
    within the core's tolerances, not in their bits, and training compounds the
    difference. Inside a fit the choice depends on the problem's sizes alone, so a run
    resumed in a fresh process repeats the straight run bit for bit whatever else the
    processes did. The kernels also serve the small batches of a large run (128 x 10:
    21 us against the reference's 48). Fits on a source of chunks (sizes not known in
    advance) keep the process's rule. A ``fork`` child made inside a fit keeps the
    forking thread's choice.
    """
    if choice is None and work is not None:
        choice = fit_choice(work)
    if choice is None or getattr(_local, "mode", None) == choice:
        yield
        return
    outer = getattr(_local, "mode", None)
    _local.mode = choice
    try:
        yield
    finally:
        _local.mode = outer


def kernels_for(arr):
    """The kernel module if ``arr`` should go through it, else None."""
    mode = _mode()
    if mode == "never" or not isinstance(arr, np.ndarray):
        return None
    if arr.dtype not in (np.float32, np.float64) or arr.size == 0:
        return None
    if mode == "auto":
        loaded = _state["module"] is not None
        if arr.size < MIN_SIZE or (arr.size < LOAD_SIZE and not loaded):
            return None
    return _module()


def load_for(size):
    """Load the kernels now if work of ``size`` elements in all will follow in pieces
    smaller than ``LOAD_SIZE`` (each piece alone would not load them); returns whether
    they are loaded."""
    if _mode() != "never" and size >= LOAD_SIZE:
        _module()
    return _state["module"] is not None


def forced():
    """True when the kernels are used for every size (``always``)."""
    return _mode() == "always"


def launch(pair, n_rows, size, *args, threaded=False):
    """Run a (serial, parallel) kernel pair: parallel for large inputs if no other thread is
    and Numba has more than one thread. With ``threaded``, the kernel's last argument says
    which runs (True: the parallel one). A kernel that cannot be compiled is replaced by
    its serial twin, then by its contract in NumPy (``_kernel_fallback``)."""
    lock = _PARALLEL_LOCK  # the one this call releases, even if a fork replaces it
    if (size >= PARALLEL_SIZE and n_rows >= 2 and not _state["serial"] and _threads() > 1
            and lock.acquire(blocking=False)):
        try:
            return _run(pair, True, args, threaded)
        finally:
            lock.release()
    return _run(pair, False, args, threaded)


def _threads():
    try:
        return sys.modules["numba"].get_num_threads()  # loaded with the kernels
    except Exception as exc:  # no threading layer could be loaded: serial kernels only
        _state["serial"] = True
        _unavailable("starting Numba's threads", exc)
        return 1


def _run(pair, parallel, args, threaded):
    fn = pair[1 if parallel else 0]
    args = args + ((parallel,) if threaded else ())
    if fn not in _broken:
        try:
            return fn(*args)
        except Exception as exc:
            if not _compile_failed(fn, args, exc):
                raise
            _broken.add(fn)
            _unavailable(f"compiling {getattr(fn, '__name__', 'a kernel')}", exc)
    if parallel:
        return _run(pair, False, args[:-1] if threaded else args, threaded)
    from . import _kernel_fallback

    return _kernel_fallback.serving(pair, _state["module"])(*args)


def _compile_failed(fn, args, exc):
    """Whether ``exc`` came from compiling ``fn`` for ``args`` (before it ran: the arrays
    are untouched), not from running it."""
    numba = sys.modules["numba"]
    if isinstance(exc, numba.core.errors.NumbaError):  # typing, lowering: compile time only
        return True
    try:
        fn.compile(tuple(numba.typeof(a) for a in args))
    except Exception:
        return True
    return False


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


# Seconds each kernel pair (serial and parallel) takes to compile from an empty cache on a
# 2-core Zen 2 (AVX2), by dtype: what warm(processes=2) balances its processes by.
_COMPILE_SECONDS = {
    "float32": {"sparse_ce_rows": 10.6, "softmax_rows": 5.8, "log_softmax_rows": 4.7,
                "categorical_ce_rows": 3.3, "logsumexp_rows": 2.9, "adam_update": 0.3,
                "linear_ce": 2.8, "linear_ce_csr": 2.8, "linear_proba_csr": 1.0,
                "linear_hvp_csr": 1.0},
    "float64": {"sparse_ce_rows": 8.0, "softmax_rows": 5.1, "log_softmax_rows": 2.7,
                "categorical_ce_rows": 2.1, "logsumexp_rows": 1.9, "adam_update": 0.3,
                "linear_ce": 2.8, "linear_ce_csr": 2.8, "linear_proba_csr": 1.0,
                "linear_hvp_csr": 1.0},
}


def _balanced(jobs, parts):
    """``jobs`` ((dtype, kernel) pairs) in ``parts`` lists of about equal compile time.

    A list a dtype where there are as many dtypes as lists (a dtype's helpers then compile
    in one process: a float32 kernel in the float64 process compiles them again), then a
    job moved from the slowest list to the fastest while that shortens the slowest by a
    second or more; else the costliest jobs first, each to the list with the least so far.
    """
    cost = lambda job: _COMPILE_SECONDS[job[0]][job[1]]  # noqa: E731
    load = lambda group: sum(map(cost, group))  # noqa: E731
    groups = {}
    for job in jobs:
        groups.setdefault(job[0], []).append(job)
    if len(groups) != parts:
        groups = [[] for _ in range(parts)]
        for job in sorted(jobs, key=cost, reverse=True):
            min(groups, key=load).append(job)
        return [g for g in groups if g]
    groups = list(groups.values())
    while True:
        slow, fast = max(groups, key=load), min(groups, key=load)
        gap = load(slow) - load(fast)
        job = min(slow, key=lambda j: abs(cost(j) - gap / 2))  # the move that evens them most
        if load(slow) - max(load(slow) - cost(job), load(fast) + cost(job)) < 1.0:
            return groups
        slow.remove(job)
        fast.append(job)


def warm(dtypes=("float32", "float64"), *, processes=1, kernels=None):
    """Compile every kernel, serial and parallel, float32 and float64, into Numba's disk cache.

    ``dtypes`` limits it to those, ``kernels`` (names such as ``"softmax_rows"``)
    to those. With ``processes=2`` the kernels compile in two fresh processes
    at the same time (Numba compiles on one thread: on two cores, about half
    the time), each given about half the work; ``make`` does that.

    ``make test`` runs this while pip installs the test extras (``make demo``
    after the demo, in the background; ``make warm`` on its own), so that a
    process's first call loads the kernels rather than compiling them (several
    times slower; the figures are in docs/performance.md). Returns the number
    of kernels compiled or loaded (0 without Numba; one that fails to compile
    is not counted, and warns).
    """
    names = list(_COMPILE_SECONDS["float32"]) if kernels is None else list(kernels)
    dtypes = [str(np.dtype(d)) for d in dtypes]
    if processes > 1:
        import subprocess

        code = "from logitlab._jit import _warm_jobs; _warm_jobs({!r})"
        jobs = [(d, name) for d in dtypes for name in names]
        children = [subprocess.Popen([sys.executable, "-c", code.format(group)])
                    for group in _balanced(jobs, processes)]
        if any(child.wait() for child in children):
            raise RuntimeError("compiling the kernels failed in a child process (see above)")
    # (after children: loads what they compiled, and counts it)
    return _warm_jobs([(d, name) for d in dtypes for name in names])


def readonly(*arrays):
    """Read-only views (no copies) of data arrays a kernel is given. Numba compiles a kernel
    once for each array type, and a read-only array (a Dask chunk, a memory map, pandas'
    copy-on-write values) is another type: passed read-only always, the data meet the one
    compiled kernel that :func:`warm` makes (the linear objective's kernels)."""
    views = []
    for a in arrays:
        v = a.view()
        v.flags.writeable = False
        views.append(v)
    return views


def _warm_jobs(jobs):
    """Compile (or load) each (dtype, kernel name) pair's serial and parallel kernels."""
    kernels = _module()
    if kernels is None:
        return 0
    def csr(x):  # a 2 x 3 CSR matrix's arrays (read-only, as the linear objective passes them)
        return readonly(np.array([0, 1, 2], np.int32), np.array([0, 2], np.int32),
                        x[0, :2].copy())

    arguments = {  # fresh arguments for each kernel pair from x, t and y
        "softmax_rows": lambda x, t, y: (x, np.empty_like(x), np.zeros(2, bool), True),
        "log_softmax_rows": lambda x, t, y: (x, np.empty_like(x), np.zeros(2, bool)),
        "logsumexp_rows": lambda x, t, y: (x, np.empty(2), np.zeros(2, bool)),
        "sparse_ce_rows": lambda x, t, y: (x, y, np.ones(2), 0.5, np.empty_like(x), np.empty(2),
                                           np.zeros(2, bool), True, True),
        "categorical_ce_rows": lambda x, t, y: (x, t, 0.5, np.empty_like(x), np.empty(2),
                                                np.zeros(2, bool)),
        "adam_update": lambda x, t, y: (x.ravel(), t.ravel(), np.zeros(x.size, x.dtype),
                                        np.zeros(x.size, x.dtype), np.empty(0, x.dtype),
                                        *(x.dtype.type(c) for c in (0.1, 1e-3, 1e-3, 1e-7))),
        # (the data's arrays read-only, as the linear objective passes them)
        "linear_ce": lambda x, t, y: (*readonly(x), t, np.zeros(2, x.dtype),
                                      *readonly(y, np.ones(2)), np.zeros_like(t), np.zeros(2)),
        "linear_ce_csr": lambda x, t, y: (
            *csr(x), t.T.copy(), np.zeros(2, x.dtype), *readonly(y, np.ones(2)), 0, 2,
            np.zeros((3, 2), x.dtype), np.zeros(2)),
        "linear_proba_csr": lambda x, t, y: (
            *csr(x), t.T.copy(), np.zeros(2, x.dtype), 0, 2, np.zeros((2, 2), x.dtype)),
        "linear_hvp_csr": lambda x, t, y: (
            *csr(x), t.T.copy(), np.zeros(2, x.dtype), np.full((2, 2), 0.5, x.dtype),
            *readonly(np.ones(2)), 0, 2, np.zeros((3, 2), x.dtype), np.zeros(2)),
    }
    count = 0
    for dtype, name in jobs:
        dtype = np.dtype(dtype)
        x = np.zeros((2, 3), dtype=dtype)
        t = np.full((2, 3), 1 / 3, dtype=dtype)
        y = np.zeros(2, dtype=np.intp)
        for fn in dict.fromkeys(getattr(kernels, name)):  # a serial-only kernel is its own twin
            try:
                fn(*arguments[name](x, t, y))
            except Exception as exc:  # the calls will use the fallback: not counted
                _broken.add(fn)
                _unavailable(f"compiling {getattr(fn, '__name__', 'a kernel')}", exc)
            else:
                count += 1
    return count
