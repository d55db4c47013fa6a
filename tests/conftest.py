"""Shared fixtures and helpers for the test suite."""

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=100, deadline=None)
settings.load_profile("ci")

SEED = 20261122


@pytest.fixture
def rng():
    """A seeded generator, the same in every test."""
    return np.random.default_rng(SEED)

# Run by hand to record peer values; it imports the peers, which are not test dependencies.
collect_ignore = ["fixtures/record_references.py", "fixtures/record_loss_peers.py",
                  "fixtures/record_calibration_references.py"]


@pytest.fixture(autouse=True)
def _mpmath_precision_kept():
    """A test that needs another mpmath precision sets it with ``mpmath.workprec``: one that
    set ``mp.prec`` for good made later reference values wrong (test_log1p64_within_one_ulp
    left 120 bits, test_focal's mpmath sigmoid then lost 1 - p to cancellation and failed)."""
    import sys

    before = sys.modules["mpmath"].mp.prec if "mpmath" in sys.modules else None
    yield
    if before is not None:
        assert sys.modules["mpmath"].mp.prec == before, "the test changed mpmath's precision"


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """pytest-xdist runs one process per core: two BLAS threads each would oversubscribe."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def dask_cluster():
    """One local Dask cluster (two worker processes) for the pytest process's whole run.

    Starting one, and warming its workers (each imports pandas, dask.dataframe and
    logitlab on its first task), costs seconds of both cores: the Dask tests share it,
    and the command line's Dask runs join it with ``--scheduler`` (one test keeps the
    command's own local cluster). Under pytest-xdist each worker process has its own.
    """
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, memory_limit="2GiB") as cluster:
        yield cluster


def _drop_stale_compiled_tests():
    """The tests' own compiled helpers (``njit(cache=True)``) inline the kernels' intrinsics,
    but Numba's cache is keyed by the test file alone: after a change to the kernels it
    would load the helpers compiled against the old ones. Drop them when the kernels are newer,
    beside the tests or in ``NUMBA_CACHE_DIR`` (where test_kernel_targets.py keeps each target's)."""
    import os
    import pathlib

    from logitlab._kernel_cache import GROUP  # (imports no Numba)

    root = pathlib.Path(__file__).resolve().parent
    sources = [root.parent / "src" / "logitlab" / name for name in GROUP]
    if not all(path.exists() for path in sources):
        return
    newest = max(path.stat().st_mtime for path in sources)
    cached = list((root / "__pycache__").glob("*.nb[ic]"))
    if os.environ.get("NUMBA_CACHE_DIR"):
        cached += pathlib.Path(os.environ["NUMBA_CACHE_DIR"]).rglob("test_*.nb[ic]")
    for path in cached:
        if path.stat().st_mtime < newest:
            path.unlink(missing_ok=True)


_drop_stale_compiled_tests()


def pytest_collection_modifyitems(config, items):
    """Start the kernel-target runs first. From an empty cache each compiles every kernel
    again in a subprocess (about 90 s of one core for the generic target): started first
    they run beside the rest of the suite on the other worker instead of alone at its end
    (pytest-xdist hands the first tests out one a worker, in collection order)."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/test_kernel_targets.py"))
