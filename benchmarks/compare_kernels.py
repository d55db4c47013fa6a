"""The kernels of this checkout against those of an earlier git revision, in one process.

    python benchmarks/compare_kernels.py REV [CxN ...] [--float64] [--confident]

Loads ``src/logitlab/_kernels.py`` (with the modules it builds on and serves,
``_kernel_exp.py``, ``_kernel_cache.py`` and ``_model_kernels.py``) as of ``REV`` (``git show``, into a package in a folder kept per
revision, so that a second run loads it from Numba's cache as this
checkout's kernels are loaded: count the second run) beside the current
one and times both on the same float32 arrays, alternating, serial
and parallel: the sparse CE kernel and the softmax kernel, on buffers that
are reused (the kernels alone, no validation or allocation); the CE kernel
also in place, its gradient over the logits, as training and the linear
models' objective call it. Prints ns per
element (best of 7 alternations of best-of-9) and the speed-up. Timings on a
shared machine move by 10-15 % from run to run; alternating in one process
keeps the ratio steadier than two separate runs. Sizes default to
1000x8192, 32768x256, 10x65536 and 10x3572 (classes x rows; the last, one
row block of the linear models' objective). ``--float64`` times float64
arrays (``exp64``'s path); ``--confident`` raises each row's label by 30, so
that every row takes the confident rows' second sum (``_sum_below_max``).
"""

import importlib.util
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from logitlab import _kernels as new


def load_revision(rev):
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    # one folder a revision, kept: Numba caches the kernels beside the file (keyed by its
    # path and its hash), so a second run loads them as the checkout's own are loaded, from the
    # cache; code compiled in the process measured up to 15 % slower than the same code
    # loaded from the cache, which would favour the side that is cached. A package of its
    # own: since 2026-12-04 _kernels.py serves the models' kernels from _model_kernels.py
    folder = pathlib.Path(tempfile.gettempdir()) / f"logitlab_kernels_{sha[:12]}"
    package = folder / "kernels_at_revision"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").touch()
    # the kernel modules (since 2026-12-05 the exponentials are in _kernel_exp.py, and the
    # modules share a cache stamp, _kernel_cache.py); the revisions before lack some
    for name in ("_kernel_cache.py", "_kernel_exp.py", "_kernels.py", "_model_kernels.py"):
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/logitlab/{name}"],
                               capture_output=True, text=True)
        if shown.returncode:
            if name == "_kernels.py":
                sys.exit(f"git show {rev}:src/logitlab/_kernels.py failed: {shown.stderr}")
            continue
        path = package / name
        if not path.exists() or path.read_text() != shown.stdout:
            path.write_text(shown.stdout)
    sys.path.insert(0, str(folder))  # Numba's cache finds a parallel kernel's module by name
    return importlib.import_module("kernels_at_revision._kernels")


def with_threaded(kernel, args, parallel):
    """``args``, and the ``threaded`` flag the library passes (True for the parallel kernel)
    where the kernel takes one (the softmax driver since it streams on more than one thread)."""
    takes = kernel.py_func.__code__.co_argcount
    return args + (bool(parallel),) if takes == len(args) + 1 else args


def best(fn, repeats=9):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    old = load_revision(sys.argv[1])
    flags = {a for a in sys.argv[2:] if a.startswith("--")}
    unknown = flags - {"--float64", "--confident"}
    if unknown:
        sys.exit(f"unknown option(s) {', '.join(sorted(unknown))}: expected --float64 or --confident")
    dtype = np.float64 if "--float64" in flags else np.float32
    sizes = [tuple(int(v) for v in a.split("x")) for a in sys.argv[2:] if not a.startswith("--")] or [
        (1000, 8192), (32768, 256), (10, 65536), (10, 3572)]
    rng = np.random.default_rng(0)
    print("| classes x rows | kernel | threads | before ns/elem | now ns/elem | speed-up |")
    print("|---|---|---|---|---|---|")
    for c, n in sizes:
        z = rng.normal(0, 3, (n, c)).astype(dtype)
        y = rng.integers(0, c, n)
        if "--confident" in flags:
            z[np.arange(n), y] += 30.0
        g, per, bad, w = np.empty_like(z), np.empty(n), np.zeros(n, bool), np.ones(n)
        zi = z.copy()  # the training path writes the gradient over the logits
        kernels = {  # name: (kernel pair's attribute, its arguments)
            "CE": ("sparse_ce_rows", (z, y, w, 1.0 / n, g, per, bad, True)),
            "CE in place": ("sparse_ce_rows", (zi, y, w, 1.0 / n, zi, per, bad, False)),
            "softmax": ("softmax_rows", (z, g, bad)),
        }
        for name, (attribute, args) in kernels.items():
            for p, threads in ((0, "1"), (1, "all")):
                before, now = getattr(old, attribute)[p], getattr(new, attribute)[p]
                a_before, a_now = with_threaded(before, args, p), with_threaded(now, args, p)
                before(*a_before)
                now(*a_now)
                was, got = [], []
                for _ in range(7):
                    was.append(best(lambda f=before, a=a_before: f(*a)))
                    got.append(best(lambda f=now, a=a_now: f(*a)))
                a, b = min(was) / z.size * 1e9, min(got) / z.size * 1e9
                print(f"| {c}x{n} | {name} | {threads} | {a:.3f} | {b:.3f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
