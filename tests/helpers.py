"""Helpers shared by the tests: finite differences and mpmath references."""

import mpmath
import numpy as np

mpmath.mp.dps = 60


def numerical_grad(f, x, h=1e-6):
    """Central-difference gradient of the scalar function ``f`` at ``x`` (float64).

    The one helper every gradient check in the suite uses (activations,
    losses, layers, whole networks and the L-BFGS objective).
    """
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gf = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        step = h * max(1.0, abs(old))
        flat[i] = old + step
        fp = float(f(x))
        flat[i] = old - step
        fm = float(f(x))
        flat[i] = old
        gf[i] = (fp - fm) / (2 * step)
    return g


def assert_grad_close(analytic, numeric, rtol=1e-6, atol=1e-8):
    """Relative error of a gradient, measured on the whole vector."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(np.linalg.norm(numeric), np.linalg.norm(analytic), atol)
    err = np.linalg.norm(analytic - numeric) / scale
    assert err < rtol, f"relative gradient error {err:.3g} >= {rtol}"


def _mp_shifted(row):
    """Finite entries minus the row max, exactly (2,200 bits span any two doubles)."""
    vals = [float(v) for v in row]
    finite = [v for v in vals if v != -np.inf]
    if not finite:
        return None, None
    m = max(finite)
    # enough bits to hold any difference exactly: the span of the exponents
    exps = [np.frexp(v)[1] for v in finite + [m] if v != 0]
    bits = 64 + (max(exps) - min(exps) if exps else 0)
    with mpmath.workprec(min(2200, bits)):
        shifted = [mpmath.mpf(v) - mpmath.mpf(m) if v != -np.inf else None for v in vals]
    return m, shifted


def _mp_log_sum(shifted):
    return mpmath.log(mpmath.fsum(mpmath.exp(d) for d in shifted if d is not None))


def mp_logsumexp(row):
    """logsumexp of a 1-D float row, in mpmath (exact input values)."""
    m, shifted = _mp_shifted(row)
    if m is None:
        return mpmath.mpf("-inf")
    log_sum = _mp_log_sum(shifted)
    with mpmath.workprec(2200):
        return mpmath.mpf(m) + log_sum


def mp_log_softmax(row):
    m, shifted = _mp_shifted(row)
    log_sum = _mp_log_sum(shifted)
    return [d - log_sum if d is not None else mpmath.mpf("-inf") for d in shifted]


def mp_softmax(row):
    return [mpmath.exp(v) for v in mp_log_softmax(row)]


def to_float(values):
    return np.array([float(v) for v in values])


def assert_close_rel(actual, expected, rtol, atol_near_zero=None):
    """|actual - expected| <= rtol * |expected| (or atol near zero), element-wise."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    atol = rtol if atol_near_zero is None else atol_near_zero
    same_inf = (actual == expected) & ~np.isfinite(expected)
    with np.errstate(invalid="ignore"):
        err = np.abs(actual - expected)
    ok = same_inf | (err <= rtol * np.abs(expected)) | (err <= atol)
    assert ok.all(), (
        f"max rel err {np.max(np.where(same_inf, 0, err / np.maximum(np.abs(expected), 1e-300))):.3g}; "
        f"first bad: actual={actual[~ok][:3]}, expected={expected[~ok][:3]}"
    )


def cli_in_fresh_process(commands, cwd, heavy=("sklearn", "matplotlib")):
    """Run each of ``commands`` (the CLI's argument lists) in one fresh interpreter, in
    process, then print ``HEAVY [...]``: which of the packages ``heavy`` (scikit-learn and
    matplotlib unless told) got imported.
    Returns the finished ``subprocess.CompletedProcess`` (text output)."""
    import subprocess
    import sys

    code = "import sys\nfrom logitlab.cli._main import cli\n"
    code += "".join(f"cli.main({[str(a) for a in args]!r}, standalone_mode=False)\n"
                    for args in commands)
    code += (f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r})\n"
             "print('HEAVY', heavy)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=300)
