"""The kernel tests again, with the JIT compiling for each instruction set the kernels have a path for.

The kernels choose their code by the JIT's target features (``_kernel_exp._scalef``:
``vscalefps`` where the target has AVX-512F), so a run of ``test_kernels.py`` tests
only the path this machine takes. Each test here runs the fast part of
``test_kernels.py`` (not the ``slow`` exhaustive sweeps, which run on the native
target, nor the tests of loading and threading, ``PLUMBING``) in a fresh process
with ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` set:

* ``avx2``: Haswell's features (AVX2 and FMA, no AVX-512), the path of AVX2 machines,
  forced on an AVX-512 machine (on an AVX2 machine the native run is that path, and this
  one is skipped, saying so);
* ``avx512``: Skylake-AVX512's, only where this CPU has AVX-512 (it could not run them);
* ``generic``: x86-64 as LLVM's ``generic`` CPU (SSE2, no FMA), for correctness.

``test_jit_compiles_for_the_instruction_set_it_targets`` checks in that process that
the target took effect (the kernels' switch and the compiled loop's instructions).
Each target's compiled kernels are kept in ``tests/__pycache__/numba-<target>``: the
first run compiles them (6-16 minutes a target on a 2-core Zen 2 shared with other
jobs), later runs load them (28 s for the generic target there).
"""

import os
import pathlib
import platform
import subprocess
import sys

import pytest

binding = pytest.importorskip("llvmlite.binding", reason="Numba is a dependency; the kernels need it")

ROOT = pathlib.Path(__file__).resolve().parent.parent
_HASWELL = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,+lzcnt,"
            "+mmx,+movbe,+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,"
            "+xsave,+xsaveopt")
_AVX512 = ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
TARGETS = {  # name: (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES, the host features it needs)
    "avx2": ("haswell", _HASWELL, ("avx2", "fma")),
    "avx512": ("skylake-avx512", _HASWELL + ",+adx,+clflushopt,+prfchw,+rdseed,"
               + ",".join("+" + f for f in _AVX512), ("avx2", "fma") + _AVX512),
    "generic": ("generic", "", ()),
}

# target-independent tests of the loading and threading around the kernels, left out here
PLUMBING = " or ".join(["test_import_does_not_load_numba", "test_small_arrays_do_not_load_numba",
                        "test_bad_kernel_mode_is_named", "test_threads_calling_at_once",
                        "test_warm_compiles_every_kernel"])


@pytest.mark.slow
@pytest.mark.parametrize("target", list(TARGETS))
def test_kernel_tests_pass_for_target(target):
    name, features, needs = TARGETS[target]
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"the targets are x86-64 CPUs; this machine is {platform.machine()}")
    host = binding.get_host_cpu_features()
    missing = [f for f in needs if not host.get(f, False)]
    if missing:  # its code would stop on an illegal instruction here: it cannot run
        pytest.skip(f"CPU lacks {', '.join(missing)}")
    if target == "avx2" and not host.get("avx512f", False):
        # The kernels branch only on AVX-512F (``_kernel_exp._scalef``): on this CPU the native
        # run of test_kernels.py (whose test_jit_compiles_for_the_instruction_set_it_targets
        # checks the ymm/FMA loop) already is the AVX2 path; compiling it again costs minutes.
        pytest.skip("this CPU has AVX2 and no AVX-512: the native test_kernels.py run is the "
                    "AVX2 path")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(NUMBA_CPU_NAME=name, NUMBA_CPU_FEATURES=features, LOGITLAB_TEST_TARGET=target,
               NUMBA_CACHE_DIR=str(ROOT / "tests" / "__pycache__" / f"numba-{target}"))
    env.pop("LOGITLAB_KERNELS", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_kernels.py", "-m", "not slow",
         "-k", f"not ({PLUMBING})", "-q", "-rA", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-p", "no:xdist"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    report = out.stdout[-6000:] + out.stderr[-3000:]
    assert out.returncode == 0, report
    assert "PASSED tests/test_kernels.py::test_jit_compiles_for_the_instruction_set_it_targets" \
        in out.stdout, report
