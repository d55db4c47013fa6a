"""The kernels can never take the library down (issue 19).

If Numba cannot be imported, ``_kernels`` cannot be loaded, or a kernel cannot
be compiled (a Numba or llvmlite release that changed what the kernels rely
on, an unsupported CPU), every public call is served by the NumPy reference
with one ``KernelUnavailableWarning`` a process, never an exception. Each
failure is made on purpose in a fresh interpreter (so Numba's on-disk cache,
pointed at an empty folder where compilation must fail, cannot serve the
kernels), and every result is compared with the reference path
(``kernel_mode("never")``) of the same process.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba", reason="the failures are made inside Numba")

SCRIPT = """
import math
import sys
import warnings

import numpy as np

{sabotage}

import logitlab as ll
from logitlab import KernelUnavailableWarning, _jit
from logitlab.losses import (CategoricalCrossentropy, SparseCategoricalCrossentropy,
                             sparse_categorical_crossentropy)
from logitlab.losses._crossentropy import sparse_ce_logits_inplace

rng = np.random.default_rng(19)
TOL = {{np.float32: 2e-6, np.float64: 1e-13}}


def inputs(dtype):
    x = rng.normal(0, 3, size=(400, 200)).astype(dtype)  # above LOAD and PARALLEL_SIZE
    x[5, 3] = np.inf  # rows the kernels flag, the reference's limits
    x[7, 2] = np.nan
    x[9] = -np.inf
    y = rng.integers(0, 200, size=400)
    y[[1, 6]] = -100
    return dict(x=x, y=y, t=rng.dirichlet(np.ones(200), size=400).astype(dtype),
                cw=rng.uniform(0.2, 3.0, size=200), sw=rng.uniform(0, 2, size=400),
                z=rng.normal(0, 3, size=(400, 200)).astype(dtype))


def calls(d):
    x, y = d["x"], d["y"]
    sparse = SparseCategoricalCrossentropy(from_logits=True, ignore_index=-100,
                                           class_weight=d["cw"])
    z = d["z"].copy()
    total = sparse_ce_logits_inplace(z, np.abs(y), sample_weight=d["sw"], scale=0.5)
    return dict(
        softmax=ll.softmax(x), log_softmax=ll.log_softmax(x), logsumexp=ll.logsumexp(x),
        softmax_axis0=ll.softmax(x.T, axis=0),
        sparse=sparse.value_and_grad(y, x, sample_weight=d["sw"]),
        sparse_sum=sparse_categorical_crossentropy(np.abs(y), x, from_logits=True,
                                                   reduction="sum"),
        categorical=CategoricalCrossentropy(from_logits=True).value_and_grad(d["t"], x),
        lean=(total, z),  # Sequential.fit's in-place path: no reference of its own
        adam=adam_steps(d, amsgrad=False),  # the optimizer's one-pass step
        adam_amsgrad=adam_steps(d, amsgrad=True),
    )


def adam_steps(d, amsgrad):
    # three Adam steps over 80,000 parameters (a flat buffer, above LOAD_SIZE)
    from logitlab.optimizers import Adam

    params = [d["z"].ravel().copy()]
    opt = Adam(0.01, amsgrad=amsgrad)
    opt.build(params)
    for k in range(3):
        opt.apply(params, [(d["t"].ravel() - d["t"].dtype.type(1 / 200)) * (k + 1)])
    return (params[0],) + tuple(a[0] for a in opt.slots.values())


def compare(got, ref, dtype, name):
    if isinstance(ref, tuple):
        for i, (g, r) in enumerate(zip(got, ref, strict=True)):
            compare(g, r, dtype, f"{{name}}[{{i}}]")
        return
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.dtype == ref.dtype and got.shape == ref.shape, (name, got.dtype, ref.dtype)
    scale = max(1.0, float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=TOL[dtype], atol=TOL[dtype] * scale * 1e-3,
                               equal_nan=True, err_msg=name)


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    results = {{}}
    for dtype in (np.float32, np.float64):
        d = inputs(dtype)
        with _jit.kernel_mode("always"):
            first = calls(d)
            again = calls(d)  # the second time: no second warning
        with _jit.kernel_mode("never"):
            ref = calls(d)
        for name in ref:
            compare(first[name], ref[name], dtype, name)
            compare(again[name], ref[name], dtype, name)
        results[dtype] = first

{check}

warned = [w for w in caught if issubclass(w.category, KernelUnavailableWarning)]
assert len(warned) == 1, [str(w.message) for w in warned]
print("ok:", warned[0].message)
"""

# the kernels' compile pipeline, made to fail at a stage
_IN_PASS = """
from numba.core import errors, typed_passes

def _fail(self, state):
    raise {error}

typed_passes.{stage}.run_pass = _fail
"""

CASES = {
    # import failures
    "numba_missing": "sys.modules['numba'] = None  # `import numba` raises ImportError",
    "kernel_module_fails_to_import": (
        "import numba.extending\n"
        "def _broken(*args, **kwargs):\n"
        "    raise RuntimeError('intrinsic machinery changed in this release')\n"
        "numba.extending.intrinsic = _broken  # _kernels's first @intrinsic raises"),
    # compile failures at the first call, at each stage, Numba's errors and any other
    "typing_error": _IN_PASS.format(
        error="errors.TypingError('made to fail')", stage="NopythonTypeInference"),
    "lowering_error": _IN_PASS.format(
        error="errors.LoweringError('made to fail')", stage="NativeLowering"),
    "other_exception_in_compiler": _IN_PASS.format(
        error="KeyError('a pass this release renamed')", stage="NativeLowering"),
}


def _run(tmp_path, sabotage, check="", cold_cache=True):
    env = {k: v for k, v in os.environ.items() if k != "LOGITLAB_KERNELS"}
    if cold_cache:
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")  # empty: every kernel compiles
    code = SCRIPT.format(sabotage=textwrap.dedent(sabotage), check=textwrap.dedent(check))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0 and "ok:" in out.stdout, out.stderr[-4000:]
    return out.stdout


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_failure_falls_back_to_reference_with_one_warning(tmp_path, case):
    stdout = _run(tmp_path, CASES[case])
    assert "NumPy reference" in stdout


def _uncompilable_pair(name):
    """Code that replaces the kernel pair ``name`` with kernels that cannot compile."""
    return f"""
    import numba
    import logitlab._kernels as K

    @numba.njit
    def _uncompilable(*args):
        return no_such_function(*args)  # noqa: F821 - a TypingError at compile time

    K.{name} = (_uncompilable, _uncompilable)
    """


def test_single_kernel_failure_leaves_the_others_compiled(tmp_path):
    # the sparse CE pair replaced by kernels that cannot compile: its calls (the public
    # ones and the lean path) fall back; softmax and the categorical CE keep their kernels
    sabotage = _uncompilable_pair("sparse_ce_rows")
    check = """
    import logitlab._kernels as K
    assert K.softmax_rows[1].signatures and K.categorical_ce_rows[1].signatures
    assert any("_uncompilable" in str(w.message) for w in caught)
    """
    stdout = _run(tmp_path, sabotage, check, cold_cache=False)
    assert "compiling _uncompilable" in stdout


def test_adam_step_failure_falls_back_to_the_numpy_update(tmp_path):
    # the optimizer's one-pass step replaced by one that cannot compile: Adam's steps (in
    # `calls`) get the NumPy update's results; the softmax keeps its kernel
    sabotage = _uncompilable_pair("adam_update")
    check = """
    import logitlab._kernels as K
    assert K.softmax_rows[1].signatures
    assert any("_uncompilable" in str(w.message) for w in caught)
    """
    stdout = _run(tmp_path, sabotage, check, cold_cache=False)
    assert "compiling _uncompilable" in stdout


def test_parallel_kernel_failure_runs_the_serial_kernel(tmp_path):
    sabotage = """
    import numba
    import logitlab._kernels as K

    @numba.njit(parallel=True)
    def _uncompilable(*args):
        return no_such_function(*args)  # noqa: F821

    K.softmax_rows = (K.softmax_rows[0], _uncompilable)
    """
    check = """
    import logitlab._kernels as K
    assert K.softmax_rows[0].signatures, "the serial softmax kernel did not serve"
    with _jit.kernel_mode("always"):
        serial = np.empty_like(d["x"])
        bad = np.zeros(len(serial), dtype=bool)
        K.softmax_rows[0](d["x"], serial, bad, False)
    assert np.array_equal(serial[~bad], results[np.float64]["softmax"][~bad])
    """
    _run(tmp_path, sabotage, check, cold_cache=False)


INTERRUPTED_LOAD = r"""
import sys, warnings
import numpy as np
import logitlab as ll
from logitlab import _jit

class Interrupt:  # Ctrl-C as Numba loads: the first import of one of its inner modules
    def __init__(self, name):
        self.name, self.fired = name, False
    def find_spec(self, name, path=None, target=None):
        if name == self.name and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return None

x = np.random.default_rng(0).normal(size=(300, 300))  # above LOAD_SIZE: loads the kernels
for inner in {inner!r}:
    hook = Interrupt(inner)
    sys.meta_path.insert(0, hook)
    try:
        ll.softmax(x)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("no interrupt at " + inner)
    finally:
        sys.meta_path.remove(hook)
    assert hook.fired and _jit._state["module"] is None and not _jit._state["failed"]
with warnings.catch_warnings():
    warnings.simplefilter("error")  # no KernelUnavailableWarning: the kernels load whole
    got = ll.softmax(x)
assert _jit._state["module"] is not None
e = np.exp(x - x.max(axis=1, keepdims=True))
np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
print("ok")
"""


def test_an_interrupt_while_numba_loads_leaves_the_next_call_a_whole_load():
    """A stranger's Ctrl-C while Numba loaded, in a first fit: the next fit crashed with
    "module 'numba' has no attribute 'core'" (or ran on NumPy with a warning): the half
    imported modules stayed. _jit now forgets them, and the next call loads them whole
    (here: interrupted twice, at two depths of Numba's import, then the kernels serve)."""
    import importlib.util

    inner = ["numba.core.typing.templates", "numba.np.ufunc.parallel"]
    if importlib.util.find_spec("yaml") is not None:  # Numba imports it (its config), and
        inner.append("yaml.constructor")  # a half-made yaml failed every later load
    code = INTERRUPTED_LOAD.replace("{inner!r}", repr(inner))
    env = {k: v for k, v in os.environ.items() if k != "LOGITLAB_KERNELS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-4000:]


TWO_THREADS_LOAD = r"""
import sys, threading, time, warnings
import numpy as np
import logitlab as ll
from logitlab import _jit

x = np.random.default_rng(0).normal(size=(300, 300))
got = {}

def other():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got["result"] = ll.softmax(x)
    got["warnings"] = [str(w.message) for w in caught]

class Interrupt:  # the main thread's load: another thread's first call starts, then Ctrl-C
    fired = False
    def find_spec(self, name, path=None, target=None):
        if (name == "numba.core.typing.templates" and not self.fired
                and threading.current_thread() is threading.main_thread()):
            self.fired = True
            thread.start()
            time.sleep(0.3)
            raise KeyboardInterrupt
        return None

thread = threading.Thread(target=other)
hook = Interrupt()
sys.meta_path.insert(0, hook)
try:
    ll.softmax(x)
except KeyboardInterrupt:
    pass
sys.meta_path.remove(hook)
thread.join()
assert hook.fired and got["warnings"] == [], got["warnings"]
e = np.exp(x - x.max(axis=1, keepdims=True))
np.testing.assert_allclose(got["result"], e / e.sum(axis=1, keepdims=True), rtol=1e-12)
assert _jit._state["module"] is not None
print("ok")
"""


def test_a_second_threads_first_call_waits_for_a_whole_load():
    """A review: a second thread's first call, made while the main thread's load of Numba
    was interrupted, got the half-made Numba (no attribute 'threading_layer') and left the
    process on NumPy. One thread loads at a time (_jit._LOAD_LOCK): the second waits,
    then loads whole."""
    env = {k: v for k, v in os.environ.items() if k != "LOGITLAB_KERNELS"}
    out = subprocess.run([sys.executable, "-c", TWO_THREADS_LOAD], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-4000:]
