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

import numpy as np

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


# ---------------------------------------------------------------- one stamp for the group

STAMPED = """
import sys
import numpy as np
from logitlab import _kernels as K
x = np.array([0.0, -1.0, -2.0, -3.0])
print(K._exp_sum_below_max(x, 0.0), K._exp_sum_below_max.stats.cache_hits.most_common(1))
"""


def _copy_of_the_package(tmp_path):
    import shutil

    import logitlab

    source = os.path.dirname(logitlab.__file__)
    target = tmp_path / "src" / "logitlab"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _stamped_run(copy, cache, **env):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(copy.parent), **env)
    run = subprocess.run([sys.executable, "-c", STAMPED], env=env, capture_output=True, text=True,
                         timeout=600, cwd=copy.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    value, hits = run.stdout.split(" ", 1)
    return float(value), hits.strip()


@pytest.mark.parametrize("locators", [None, "UserProvidedCacheLocator"])
def test_an_edit_to_a_helper_module_recompiles_the_kernels_that_inline_it(tmp_path, locators):
    # _kernels' _exp_sum_below_max inlines _kernel_exp's float64 exp. Numba stamps a cached
    # function with its own file's hash: after an edit to _kernel_exp.py alone it loaded the
    # kernel as compiled against the old exp. _kernel_cache stamps the group's files together.
    # With Numba's own locators (NUMBA_CACHE_LOCATOR_CLASSES, which bypasses ours) the
    # edit is missed: the check can fail.
    copy = _copy_of_the_package(tmp_path)
    env = {"NUMBA_CACHE_LOCATOR_CLASSES": locators} if locators else {}
    first, _ = _stamped_run(copy, tmp_path / "cache", **env)
    assert first == pytest.approx(sum(np.exp(-np.arange(1.0, 4.0))), rel=1e-15)
    again, hits = _stamped_run(copy, tmp_path / "cache", **env)
    assert again == first and hits != "[]"  # loaded from the cache while nothing changed
    helper = copy / "_kernel_exp.py"
    text = helper.read_text()
    edited = text.replace("    return exp64(x - m)\n", "    return 2.0 * exp64(x - m)\n")
    assert edited != text
    helper.write_text(edited)
    after, _ = _stamped_run(copy, tmp_path / "cache", **env)
    if locators is None:
        assert after == pytest.approx(2.0 * first, rel=1e-15)  # compiled again, on the new exp
    else:
        assert after == first  # Numba's own stamp: the kernel as compiled on the old exp


def test_every_cached_module_that_imports_a_kernel_module_is_in_the_group():
    # a module whose cached functions inline the group's helpers must share its stamp
    import ast
    import pathlib

    import logitlab
    from logitlab._kernel_cache import GROUP

    root = pathlib.Path(logitlab.__file__).parent
    modules = {name[:-3] for name in GROUP}
    for path in root.rglob("*.py"):
        source = path.read_text()
        if "cache=True" not in source:
            continue
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[-1])
                imported.update(alias.name for alias in node.names)
        if imported & modules:
            assert path.name in GROUP, f"{path} imports {sorted(imported & modules)}"
    assert all((root / name).exists() for name in GROUP)


RACE = """
import sys
import numpy as np
from logitlab import _kernels  # the group's stamp is read here, at its first import
if len(sys.argv) > 1:  # edit the helper's file while this process runs
    path = _kernels.__file__.replace("_kernels.py", "_kernel_exp.py")
    text = open(path).read()
    open(path, "w").write(text.replace("    return exp64(x - m)\\n",
                                       "    return exp64(x - m) + 1.0\\n"))
from logitlab import _model_kernels as M  # compiled on the exp imported before the edit
indptr, indices, data = np.array([0, 1]), np.array([0]), np.array([0.0])
WT, b, P = np.zeros((1, 2)), np.array([0.0, np.log(2.0)]), np.empty((1, 2))
M._linear_proba_csr(indptr, indices, data, WT, b, 0, 1, P)
print(P[0, 0])
"""


def test_a_helper_edited_while_a_process_runs_does_not_stamp_its_old_kernels(tmp_path):
    # a review: the stamp was read as each function was defined, so _model_kernels,
    # imported after an edit to _kernel_exp.py, was saved under the edited files' stamp
    # though compiled on the exp imported before it; the next process loaded it
    copy = _copy_of_the_package(tmp_path)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(copy.parent))

    def run(*args):
        done = subprocess.run([sys.executable, "-c", RACE, *args], env=env, capture_output=True,
                              text=True, timeout=600, cwd=copy.parent)
        assert done.returncode == 0, done.stderr[-3000:]
        return float(done.stdout)

    assert run() == pytest.approx(1 / 3, rel=1e-15)
    assert run("edit") == pytest.approx(1 / 3, rel=1e-15)  # the exp this process imported
    assert run() == pytest.approx(3 / 7, rel=1e-15)  # (1/2 + 1) / (1/2 + 1 + 1 + 1): recompiled
