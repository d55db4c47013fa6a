"""Processes made by ``fork`` (and ``spawn``) after the parent used the compiled kernels.

Issue 19: after one call on a large array loaded the kernels, Numba's default
threading layer on Linux (GNU OpenMP) killed any ``fork`` child that called
them ("fork() called from a process already using GNU OpenMP, this is
unsafe"), and a ``fork`` ``Pool(2).map`` hung with its tasks lost. Each test
runs a script in a fresh interpreter (so the threading layer is the one a
user's process gets) under a deadline: a hang fails instead of blocking, and
the process group is killed, pool workers included. The children's results
must equal the parent's bit for bit (the serial and parallel kernels compute
the same bits).
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

# deadlines: the script's own for the children (a hang there is the bug), and a
# generous outer one (a cold Numba cache compiles the kernels first, 1-2 minutes)
CHILD_DEADLINE = 120
OUTER_DEADLINE = 600

COMMON = """
import multiprocessing as mp
import sys
import threading
import warnings

import numpy as np

import logitlab as ll
from logitlab import KernelUnavailableWarning, _jit
from logitlab.losses import CategoricalCrossentropy, SparseCategoricalCrossentropy

warnings.simplefilter("error", KernelUnavailableWarning)  # the kernels must serve
rng = np.random.default_rng(19)
# 512 x 300 float32: above PARALLEL_SIZE, so the parent runs the parallel kernels
x = rng.normal(0, 3, size=(512, 300)).astype(np.float32)
y = rng.integers(0, 300, size=512)
t = rng.dirichlet(np.ones(300), size=512).astype(np.float32)
sw = rng.uniform(0.5, 1.5, size=512)


def work(_=None):
    value, grad = SparseCategoricalCrossentropy(from_logits=True).value_and_grad(
        y, x, sample_weight=sw)
    c_value, c_grad = CategoricalCrossentropy(from_logits=True).value_and_grad(t, x)
    return [ll.softmax(x), ll.log_softmax(x), ll.logsumexp(x), value, grad, c_value, c_grad]


def same(results, expected):
    for got, ref in zip(results, expected, strict=True):
        got, ref = np.asarray(got), np.asarray(ref)
        if got.dtype != ref.dtype or not np.array_equal(got, ref):
            return False
    return True


def parent_used_kernels():
    kernels = _jit._state["module"]
    assert kernels is not None, "the kernels were not loaded"
    assert kernels.softmax_rows[1].signatures, "the parallel softmax kernel did not run"
    assert kernels.sparse_ce_rows[1].signatures, "the parallel sparse CE kernel did not run"
    import numba
    return numba.threading_layer()
"""


def _run(tmp_path, body, env=None):
    """Run COMMON + ``body`` as a script; (returncode, stdout, stderr), failing on a hang."""
    script = tmp_path / "script.py"
    script.write_text(COMMON + textwrap.dedent(body))
    run_env = dict(os.environ if env is None else env)
    run_env.pop("LOGITLAB_KERNELS", None)  # the default: auto
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=run_env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=OUTER_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and any workers it left
        out, err = proc.communicate()
        pytest.fail(f"hung: no result after {OUTER_DEADLINE} s\n{out}\n{err[-3000:]}")
    return proc.returncode, out, err


def _deadline(text):
    return text.replace("DEADLINE", str(CHILD_DEADLINE))


def test_fork_pool_after_parent_used_kernels_is_bit_equal(tmp_path):
    # the reproduction: a fork Pool(2).map after the parent's call hung (children killed)
    code, out, err = _run(tmp_path, _deadline("""
        if __name__ == "__main__":
            parent = work()
            layer = parent_used_kernels()
            with mp.get_context("fork").Pool(2) as pool:
                try:
                    results = pool.map_async(work, range(4)).get(timeout=DEADLINE)
                except mp.TimeoutError:
                    sys.exit("the fork pool hung")
            assert all(same(r, parent) for r in results), "a child's result differs"
            print("ok", layer)
    """))
    assert code == 0 and "ok" in out, f"exit {code}\n{out}\n{err[-3000:]}"
    assert "GNU OpenMP" not in err
    assert out.split()[-1] in ("workqueue", "tbb")  # Numba's fork-safe layers


def test_fork_process_after_parent_used_kernels_exits_0(tmp_path):
    # the reproduction: a plain fork Process calling the kernels died by SIGTERM
    code, out, err = _run(tmp_path, _deadline("""
        def child(expected):
            sys.exit(0 if same(work(), expected) else 3)


        if __name__ == "__main__":
            parent = work()
            parent_used_kernels()
            proc = mp.get_context("fork").Process(target=child, args=(parent,))
            proc.start()
            proc.join(DEADLINE)
            if proc.exitcode is None:
                proc.kill()
            print("exitcode", proc.exitcode)
    """))
    assert code == 0 and "exitcode 0" in out, f"exit {code}\n{out}\n{err[-3000:]}"


def test_threads_and_fork_after_parallel_kernels_keep_results(tmp_path):
    # workqueue is not thread-safe: _PARALLEL_LOCK sends a second thread to the serial
    # kernel; four threads at once, then a fork made while the threads run
    code, out, err = _run(tmp_path, _deadline("""
        if __name__ == "__main__":
            parent = work()
            parent_used_kernels()
            results, errors = [], []

            def loop():
                try:
                    for _ in range(3):
                        results.append(work())
                except Exception as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=loop) for _ in range(4)]
            for th in threads:
                th.start()
            ctx = mp.get_context("fork")
            with ctx.Pool(2) as pool:  # forked while the threads hold the kernels
                forked = pool.map_async(work, range(2)).get(timeout=DEADLINE)
            for th in threads:
                th.join(DEADLINE)
            assert not errors, errors
            assert len(results) == 12 and all(same(r, parent) for r in results)
            assert all(same(r, parent) for r in forked)
            print("ok")
    """))
    assert code == 0 and "ok" in out, f"exit {code}\n{out}\n{err[-3000:]}"


def test_spawn_pool_after_parent_used_kernels_is_bit_equal(tmp_path):
    code, out, err = _run(tmp_path, _deadline("""
        if __name__ == "__main__":
            parent = work()
            parent_used_kernels()
            with mp.get_context("spawn").Pool(2) as pool:
                results = pool.map_async(work, range(2)).get(timeout=DEADLINE)
            assert all(same(r, parent) for r in results), "a child's result differs"
            print("ok")
    """))
    assert code == 0 and "ok" in out, f"exit {code}\n{out}\n{err[-3000:]}"


def test_fork_pool_under_user_chosen_openmp_runs_children_serial(tmp_path):
    # a user who asks Numba for GNU OpenMP keeps it in the parent; forked children,
    # which could not enter it again, run the serial kernels (the same bits)
    env = dict(os.environ, NUMBA_THREADING_LAYER="omp")
    code, out, err = _run(tmp_path, _deadline("""
        def child_work(_):
            return work(), _jit._state["serial"]


        if __name__ == "__main__":
            try:
                parent = work()
            except KernelUnavailableWarning as exc:  # "No threading layer could be loaded"
                print("no-omp", exc)
                sys.exit(0)
            assert parent_used_kernels() == "omp"
            with mp.get_context("fork").Pool(2) as pool:
                results = pool.map_async(child_work, range(4)).get(timeout=DEADLINE)
            assert all(serial for _, serial in results), "a child used the OpenMP pool"
            assert all(same(r, parent) for r, _ in results), "a child's result differs"
            print("ok")
    """), env=env)
    if "no-omp" in out:
        pytest.skip("Numba's OpenMP layer cannot be loaded on this machine")
    assert code == 0 and "ok" in out, f"exit {code}\n{out}\n{err[-3000:]}"


def test_fork_pool_after_parent_used_the_library_thread_pools(tmp_path):
    # the reproduction (a stranger's review): after a SoftmaxRegression fit in the parent
    # (X.size >= THREADED_SIZE: the objective's row blocks on the library's thread pool),
    # a fit in a fork child waited for ever on the pool's threads, which fork does not
    # copy. The class: every pool of logitlab._threads, here also the cross-entropy's
    # NumPy path, which splits large arrays over its own pool
    code, out, err = _run(tmp_path, _deadline("""
        from sklearn.datasets import make_classification

        from logitlab import SoftmaxRegression
        from logitlab.losses._crossentropy import sparse_ce_logits_inplace

        X, yc = make_classification(20000, 30, n_informative=20, n_classes=5, random_state=0)
        z = np.random.default_rng(0).normal(size=(100000, 8))
        yz = np.random.default_rng(1).integers(0, 8, 100000)


        def fit_and_ce(_=None):
            with _jit.kernel_mode("never"):  # the NumPy path, split over two threads
                ce = sparse_ce_logits_inplace(z.copy(), yz)
            return SoftmaxRegression().fit(X, yc).coef_, ce


        if __name__ == "__main__":
            from logitlab import _threads

            coef, ce = fit_and_ce()
            assert set(_threads._POOLS) == {"linear", "crossentropy"}, _threads._POOLS
            with mp.get_context("fork").Pool(2) as pool:
                try:
                    results = pool.map_async(fit_and_ce, range(2)).get(timeout=DEADLINE)
                except mp.TimeoutError:
                    sys.exit("the fork pool hung")
            assert all(np.array_equal(c, coef) and e == ce for c, e in results)
            print("ok")
    """))
    assert code == 0 and "ok" in out, f"exit {code}\n{out}\n{err[-3000:]}"
