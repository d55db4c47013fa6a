"""The compiled kernels (``logitlab._kernels``) against the NumPy reference and libm.

* The kernels' float32 exponentials (``exp32_shifted``, ``exp32_fast``,
  ``exp32_scaled``) are checked on every float32 input they take against
  libm's float64 ``exp`` rounded to float32 (the independent reference),
  and the 16-lane loops against those scalars, bit for bit (marked
  ``slow``; ``test_kernel_targets.py`` runs the rest of this file again
  for each instruction set the JIT can target).
* Every kernel is compared with the NumPy reference path (``kernel_mode
  ("never")``) on random and adversarial rows, both dtypes, serial and
  parallel, any class axis, within the core's tolerances.
* ``import logitlab`` does not import Numba; concurrent callers are safe.
"""

import math
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from llvmlite import ir
from helpers import assert_close_rel

import logitlab as ll
from logitlab import _jit
from logitlab.losses import (
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    categorical_crossentropy,
    sparse_categorical_crossentropy,
)
from logitlab.losses._crossentropy import sparse_ce_logits_inplace

K = pytest.importorskip("logitlab._kernels", reason="Numba is a dependency; the kernels need it")
E = pytest.importorskip("logitlab._kernel_exp")  # the exponentials and log1p
numba = pytest.importorskip("numba")
from numba.extending import intrinsic  # noqa: E402

TOL = {np.float32: 2e-6, np.float64: 1e-13}


# ------------------------------------------------------------------ exp, exhaustively


@intrinsic
def _float_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return numba.float32(bits), codegen


@intrinsic
def _bits_of(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.sext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return numba.int64(value), codegen


# the three float32 exps, in the order of _bit_distances' rows
EXPS = ("exp32_shifted(x, 0)", "exp32_fast(x)", "exp32_scaled(x, 0)")


@numba.njit(parallel=True, cache=True)
def _bit_distances(start, stop):
    """Worst errors of ``exp32_shifted(x, 0)``, ``exp32_fast(x)`` and ``exp32_scaled(x, 0)``
    (rows 0, 1, 2; a caller reads only the rows of the exps whose domain the inputs are in).

    Over float32 bit patterns.
    For the inputs ``[start, stop)`` (uint32 bit patterns) each row holds (max
    distance in ulp where the reference is normal or inf, max distance in
    units of 2**-149 where it is subnormal or 0, number of NaN mismatches).
    The reference is libm's float64 ``exp`` rounded to float32, computed once
    an input for the three; results are non-negative, so their bit patterns are
    ordered like their values.
    """
    parts = 64
    worst = np.zeros((parts, 3, 3), dtype=np.int64)
    for t in numba.prange(parts):
        lo = start + (stop - start) * t // parts
        hi = start + (stop - start) * (t + 1) // parts
        shifted = fast = scaled = (0, 0, 0)  # running (ulp, sub, nan), kept in registers
        for b in range(lo, hi):
            x = _float_from_bits(b)
            if x < np.float32(-110.0):
                ref = np.float32(0.0)
            elif x > np.float32(90.0):
                ref = np.float32(np.inf)
            else:
                ref = np.float32(math.exp(np.float64(x)))  # NaN stays NaN
            # all three on every input: a branch here made the loop twice as slow
            shifted = _tally(shifted, E.exp32_shifted(x, np.float32(0.0)), ref)
            fast = _tally(fast, E.exp32_fast(x), ref)
            scaled = _tally(scaled, E.exp32_scaled(x, 0), ref)
        worst[t, 0, 0], worst[t, 0, 1], worst[t, 0, 2] = shifted
        worst[t, 1, 0], worst[t, 1, 1], worst[t, 1, 2] = fast
        worst[t, 2, 0], worst[t, 2, 1], worst[t, 2, 2] = scaled
    out = np.zeros((3, 3), dtype=np.int64)
    for which in range(3):
        out[which, 0] = worst[:, which, 0].max()
        out[which, 1] = worst[:, which, 1].max()
        out[which, 2] = worst[:, which, 2].sum()
    return out


@numba.njit(inline="always")
def _tally(worst, got, ref):
    """``worst`` (ulp, sub, nan) with ``got``'s distance from ``ref`` counted (see
    _bit_distances)."""
    ulp, sub, nan = worst
    if got != got or ref != ref:
        return ulp, sub, nan + (0 if got != got and ref != ref else 1)
    d = abs(_bits_of(got) - _bits_of(ref))
    if _bits_of(ref) < 0x00800000:
        return ulp, max(sub, d), nan
    return max(ulp, d), sub, nan


def _over_chunks(start, stop, chunk=1 << 28):
    """``_bit_distances`` over ``[start, stop)`` a chunk at a time: {exp: (ulp, sub, nan)}."""
    worst = np.zeros((3, 3), dtype=np.int64)
    for a in range(start, stop, chunk):
        got = _bit_distances(a, min(a + chunk, stop))
        worst[:, :2] = np.maximum(worst[:, :2], got[:, :2])
        worst[:, 2] += got[:, 2]
    return {name: tuple(int(v) for v in row) for name, row in zip(EXPS, worst)}


@pytest.mark.slow
def test_exp32_every_input_they_get():
    """The three float32 exps on every float32 they take, against libm (one sweep, the
    reference computed once an input; each had a sweep of its own, 55 s on two threads):

    * ``exp32_shifted``, the kernels' exp of d = x - m, and ``exp32_fast``, the exp for
      sums (one-constant reduction): every float32 in [-104, 0];
    * ``exp32_scaled``, softmax's ``exp(x) 2**-K``, with K = 0: every float32 in [-104, 1].
    """
    bits = lambda v: int(np.array(np.float32(v)).view(np.uint32))  # noqa: E731
    # -0 up to -104: ordered by bits
    below = _over_chunks(bits(-0.0), bits(-104.0) + 1)
    bounds = {"exp32_shifted(x, 0)": (3, 2), "exp32_fast(x)": (5, 3), "exp32_scaled(x, 0)": (3, 2)}
    for name, (ulp, sub) in bounds.items():
        got = below[name]
        assert got[0] <= ulp and got[1] <= sub and got[2] == 0, (name, "[-104, 0]", got)
    above = _over_chunks(0, bits(1.0) + 1)["exp32_scaled(x, 0)"]  # the others take x <= 0
    assert above[0] <= 3 and above[1] == 0 and above[2] == 0, ("exp32_scaled(x, 0)", "[0, 1]", above)


@numba.njit(cache=True)
def _exp32_scaled_many(x, k):
    out = np.empty_like(x)
    for j in range(x.shape[0]):
        out[j] = E.exp32_scaled(x[j], k)
    return out


@pytest.mark.parametrize("k", [-94549, -151, -127, -64, -1, 1, 63, 127, 150, 94548])
def test_exp32_scaled_with_any_shift(k):
    """The shift only moves the exponent: ``exp(x) 2**-k`` for x in [k ln2 - 104, k ln2 + 1]
    (|k| up to that of a maximum of 2**16), against libm's exp of ``x - k ln2`` in float64."""
    rng = np.random.default_rng(abs(k))
    c = k * math.log(2.0)
    x = np.unique(rng.uniform(c - 104.0, c + 1.0, 200000).astype(np.float32))
    x = x[(x >= c - 104.0) & (x <= c + 1.0)]
    got = _exp32_scaled_many(x, k).astype(np.float64)
    exact = np.exp(x.astype(np.float64) - c)  # x - c: rounded at 1e-16 relative, far below float32's
    ref = exact.astype(np.float32).astype(np.float64)
    normal = ref >= np.finfo(np.float32).tiny
    ulps = np.abs(got - ref)[normal] / np.spacing(ref[normal].astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 3, (k, ulps.max())
    assert np.max(np.abs(got - exact)[~normal], initial=0.0) <= 2 * 2.0**-149


@numba.njit(cache=True)
def _exp32_shifted_many(d, err):
    out = np.empty_like(d)
    for j in range(d.shape[0]):
        out[j] = E.exp32_shifted(d[j], err[j])  # an intrinsic: callable from compiled code only
    return out


def test_exp32_shifted_uses_the_exact_difference():
    # exp(d + err) with the TwoSum error term: matches exp of the exact sum
    rng = np.random.default_rng(0)
    d = -rng.uniform(0, 100, 20000).astype(np.float32)
    err = (rng.uniform(-1, 1, 20000) * np.abs(d) * 2.0**-24).astype(np.float32)
    got = _exp32_shifted_many(d, err).astype(np.float64)
    exact = np.exp(d.astype(np.float64) + err.astype(np.float64))
    normal = exact > np.finfo(np.float32).tiny
    assert np.max(np.abs(got - exact)[normal] / exact[normal]) < 2.5e-7


def test_exp64_against_libm():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-745, 709.7, 200000), rng.normal(0, 1, 100000),
                        [-745.2, -745.13, -708.4, -708.39, 0.0, -0.0, 709.78, 709.79,
                         -np.inf, np.inf]])
    got = np.array([E.exp64(v) for v in x])
    with np.errstate(over="ignore", invalid="ignore"):
        ref = np.exp(x)
        rel = np.abs(got - ref) / ref
    normal = ref >= np.finfo(np.float64).tiny
    finite = np.isfinite(ref)
    assert np.max(rel[normal & finite]) < 4e-16  # within 2 ulp
    assert np.all(got[~finite] == ref[~finite])
    sub = ~normal
    assert np.all(np.abs(got[sub] - ref[sub]) <= 2 * 5e-324)
    assert np.isnan(E.exp64(np.nan))


@numba.njit(cache=True, error_model="numpy")
def _log1p_many(r):
    out = np.empty_like(r)
    for i in range(r.shape[0]):
        out[i] = E._log1p64(r[i])  # as the rows' loss loop calls it: a vectorised loop
    return out


def test_log1p64_within_one_ulp():
    """The short-row cross-entropy's log1p (r = S - 1 >= 0) against mpmath at 120 bits on
    every magnitude, and libm's on 600,000 inputs: within 1 ulp, exact at 0 and below
    2**-53 (log1p(r) = r there); the edges of its reduction (k = 0, 1, 2, 53, 54)."""
    import mpmath

    rng = np.random.default_rng(4)
    edges = [0.0, 5e-324, 1e-300, 2.0**-60, 2.0**-53, 2.0**-52, np.sqrt(2.0) - 1.0, 0.41421357,
             1.0, 2.0 * np.sqrt(2.0) - 1.0, 3.0, 2.0**53, 2.0**54, 2.0**55, 1e300, 1.7e308]
    r = np.concatenate([rng.uniform(0, 1, 200000), rng.uniform(0, 1000, 200000),
                        10.0 ** rng.uniform(-20, 20, 200000), edges])
    got = _log1p_many(r)
    ref = np.log1p(r)
    assert np.all(np.abs(got - ref) <= np.spacing(ref)), r[np.abs(got - ref) > np.spacing(ref)][:5]
    tiny = r < 2.0**-53
    np.testing.assert_array_equal(got[tiny], r[tiny])
    pick = np.concatenate([rng.choice(len(r) - len(edges), 2000, replace=False),
                           np.arange(len(r) - len(edges), len(r))])
    with mpmath.workprec(120):
        exact = np.array([float(mpmath.log1p(mpmath.mpf(float(v)))) for v in r[pick]])
    assert np.all(np.abs(got[pick] - exact) <= np.spacing(exact)), r[pick][
        np.abs(got[pick] - exact) > np.spacing(exact)][:5]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_every_length_and_position(dtype):
    # the vector part covers 16 (float32) or 8 (float64) entries a step, the rest is scalar
    rng = np.random.default_rng(3)
    for n in range(1, 41):
        for at in range(n):
            x = rng.normal(0, 1, n).astype(dtype) - 10
            x[at] = 3.0
            assert K._row_max(x) == 3.0, (n, at)
    assert K._row_max(np.full(33, -np.inf, dtype)) == -np.inf
    x = np.full(33, -1.0, dtype)
    x[[5, 31]] = np.nan  # passed over here; the row's sum catches it
    assert K._row_max(x) == -1.0


@numba.njit(cache=True)
def _head_store(x, m, out, ties):
    # prefetches x, and out for writing
    return K._exp_sum_head_store(x, m, out, ties, K._next_row(x.reshape(1, -1), 0), K._next_row(out.reshape(1, -1), 0))


@numba.njit(cache=True)
def _fast_r32(x, m, out, store):
    return K._fast_r32(x, m, out, store, K._next_row(x.reshape(1, -1), 0), K._next_row(out.reshape(1, -1), 0))


@numba.njit(cache=True)
def _exp32_fast_clamped(d):
    out = np.empty_like(d)
    for j in range(d.shape[0]):
        out[j] = E._fast_exp32(d[j], np.float32(0.0))  # exp32_fast of max(d, -104)
    return out


@numba.njit(cache=True)
def _softmax_lanes(x, floor, k, out):
    return K._exp_scaled_sum(x, out, floor, k, K._next_row(x.reshape(1, -1), 0),
                             K._next_row(out.reshape(1, -1), 0))


def _float32_range(low, high, step=1, chunk=1 << 22):
    """Every ``step``-th float32 in [low, high] (low <= -0.0 <= high) by bit pattern, in chunks."""
    for lo, hi in ((-0.0, low), (0.0, high)):
        start = int(np.array(np.float32(lo)).view(np.uint32))
        stop = int(np.array(np.float32(hi)).view(np.uint32)) + 1
        for a in range(start, stop, chunk * step):
            yield np.arange(a, min(a + chunk * step, stop), step, dtype=np.uint32).view(np.float32)


def _lanes_give_the_scalar_bits(step):
    """The 16-lane loops (with AVX-512's vscalefps where the JIT targets it, else the scalar IR)
    give the scalar intrinsics' bits on every ``step``-th input they take, which the exhaustive
    tests above check against libm: exp32_fast of max(d, -104) for d in [-104, 0], the CE
    loop's, and exp32_scaled(x, 0) for x in [-104, 1], softmax's; and on the special values."""
    def same_bits(got, ref):
        if not np.array_equal(got.view(np.uint32), ref.view(np.uint32)):
            np.testing.assert_array_equal(got, ref)  # names the first mismatch
            raise AssertionError("the lanes differ from the scalar code in a zero's sign")

    for d in _float32_range(-104.0, 0.0, step):
        d = d[: len(d) - len(d) % K._HEAD_LANES]  # what the loop covers (the caller does the rest)
        out = np.empty_like(d)
        _head_store(d, np.float32(0.0), out, 0.0)
        same_bits(out, _exp32_fast_clamped(d))
    for x in _float32_range(-104.0, 1.0, step):
        out = np.empty_like(x)
        _softmax_lanes(x, np.float32(-104.0), np.int32(0), out)
        same_bits(out, _exp32_scaled_many(x, np.int32(0)))
    special = np.float32([-104.00001, -150.0, -1e30, -np.inf, np.nan] + [-1.0] * 11)
    out = np.empty_like(special)
    _head_store(special, np.float32(0.0), out, 0.0)
    np.testing.assert_array_equal(out, _exp32_fast_clamped(special))


@pytest.mark.slow
def test_16_lane_loops_compute_the_scalar_exponentials_on_every_input():
    _lanes_give_the_scalar_bits(1)


def test_16_lane_loops_compute_the_scalar_exponentials_on_sampled_inputs():
    # the fast core's version, which test_kernel_targets.py runs for every instruction set
    _lanes_give_the_scalar_bits(1009)


def test_jit_compiles_for_the_instruction_set_it_targets():
    """The kernels' AVX-512 switch (``_scalef``) reads the JIT's target, and the 16-lane loop
    compiled now uses that target's instructions. ``test_kernel_targets.py`` runs this file with
    the JIT told to target another CPU (``LOGITLAB_TEST_TARGET``: ``avx2``, ``avx512`` or
    ``generic``); run directly, the target is this machine's own."""
    from llvmlite import binding
    from numba.core.registry import cpu_target

    features = set(cpu_target.target_context.codegen().magic_tuple()[2].split(","))
    target = os.environ.get("LOGITLAB_TEST_TARGET")
    if target is None:  # this machine's own features, as LLVM reads them
        avx512 = binding.get_host_cpu_features().get("avx512f", False)
        avx2 = binding.get_host_cpu_features().get("avx2", False)
    else:
        assert target in ("avx2", "avx512", "generic"), target
        avx512, avx2 = target == "avx512", target != "generic"
    assert ("+avx512f" in features) == avx512 and ("+avx2" in features) == avx2, features
    assert E._scalef(cpu_target.target_context) == avx512

    head = numba.njit(_head_store.py_func)  # compiled here, not cached: its assembly is readable
    x = np.linspace(-3, 0, 64, dtype=np.float32)
    head(x, np.float32(0.0), np.empty_like(x), -1.0)
    asm = "\n".join(head.inspect_asm().values())
    assert ("vscalefps" in asm) == avx512
    if avx512:
        assert "zmm" in asm
    elif avx2:
        assert "ymm" in asm and "vfmadd" in asm and "zmm" not in asm
    else:  # generic x86-64: SSE2, no AVX registers, no FMA instructions
        assert "ymm" not in asm and "zmm" not in asm and "vfmadd" not in asm


def _rows_with_a_maximum(rng, n):
    """Rows of length ``n`` with a unique maximum at several places: ordinary, confident, near ties."""
    for at in sorted({0, n // 2, n - 1, max(n - n % 8 - 1, 0), max(n - n % K._HEAD_LANES - 1, 0)}):
        for spread, lift in ((3.0, 1.0), (1.0, 30.0), (0.01, 0.0)):
            x = rng.normal(0, spread, n).astype(np.float32)
            x[at] = x.max() + np.float32(lift)
            yield at, x, np.float32(K._row_max(x))  # float32: Numba returns a Python float


@pytest.mark.parametrize("n", [8, 9, 16, 17, 63, 64, 65, 72, 80, 127, 1000, 4099])
def test_exp_sum_head_leaves_out_exactly_the_maximal_terms(n):
    """The 16-lane sum over the first n - n % 16 entries without the maximal ones, which it counts
    instead: within 1e-6 of itself, however small (a maximal term, exactly 1, never enters a sum)."""
    rng = np.random.default_rng(n)
    covered = n - n % K._HEAD_LANES
    out = np.empty(n, np.float32)
    for at, x, m in _rows_with_a_maximum(rng, n):
        ties = -1.0 if at < covered else 0.0  # the caller's count: -1 + the maximal entries elsewhere
        got = _head_store(x, m, out, ties)
        d = x[:covered].astype(np.float64) - np.float64(m)
        ref = np.exp(np.delete(d, at) if at < covered else d).sum()
        assert abs(got - ref) <= 1e-6 * ref, (at, got, ref)
        assert at >= covered or out[at] == 1.0
        if covered >= 2:  # two more maximal entries in the head: each counts 1, exactly
            y = x.copy()
            y[[0, covered - 1]] = m
            d = y[:covered].astype(np.float64) - np.float64(m)
            ref = np.exp(d[d < 0]).sum() + np.count_nonzero(d == 0) - 1
            got = _head_store(y, m, out, -1.0)
            assert abs(got - ref) <= 1e-6 * ref, (at, got, ref)
            y[covered // 2] = np.nan  # a NaN entry reaches the sum
            assert np.isnan(_head_store(y, m, out, -1.0))


@pytest.mark.parametrize("n", [K._HEAD_FROM, 1000, 4099])
def test_fast_r_of_long_rows_is_accurate_relative_to_itself(n):
    rng = np.random.default_rng(n)
    out = np.empty(n, np.float32)
    for at, x, m in _rows_with_a_maximum(rng, n):
        r = _fast_r32(x, m, out, True)
        ref = np.exp(np.delete(x.astype(np.float64) - np.float64(m), at)).sum()
        assert abs(r - ref) <= 1e-6 * ref, (at, r, ref)
    x = np.full(n, 2.0, np.float32)  # all tied: every other entry counts 1
    assert _fast_r32(x, np.float32(2.0), out, False) == n - 1
    assert np.isnan(_fast_r32(np.full(n, -np.inf, np.float32), np.float32(-np.inf), out, True))


# ------------------------------------------------------------------ kernels vs reference


def _adversarial(rng, dtype, n_classes):
    """Rows of logits that break naive code, padded to ``n_classes`` columns."""
    big = 1e4 if dtype == np.float32 else 1e300
    rows = [rng.normal(0, s, size=n_classes) for s in (0.1, 3.0, 30.0, 300.0)]
    shift = np.full(n_classes, -60.0)
    shift[1 % n_classes] = 0.0
    rows += [shift, np.full(n_classes, big), np.full(n_classes, -big)]
    spread = np.linspace(-big, big, n_classes)
    rows += [spread, rng.uniform(-8, 8, n_classes) + big / 3]
    rows += [rng.uniform(-8, 8, n_classes) + big * 10]  # float32: beyond exp32_scaled's 2**16
    tie = rng.normal(0, 1, n_classes)
    tie[[0, -1]] = 5.0
    rows += [tie, np.where(np.arange(n_classes) % 3 == 0, -np.inf, rng.normal(0, 5, n_classes))]
    with_inf = rng.normal(0, 1, n_classes)
    with_inf[2 % n_classes] = np.inf
    with_nan = rng.normal(0, 1, n_classes)
    with_nan[1 % n_classes] = np.nan
    rows += [with_inf, with_nan, np.full(n_classes, -np.inf)]
    rows += list(rng.normal(0, 4, size=(20, n_classes)))
    return np.array(rows).astype(dtype)


def _both(fn):
    with _jit.kernel_mode("never"):
        ref = fn()
    with _jit.kernel_mode("always"):
        got = fn()
    return got, ref


def _assert_same(got, ref, dtype, scale=None):
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    keep = ~np.isnan(ref)
    # relative error, absolute below the smallest normal (or ``scale`` for gradients,
    # whose entries p - t may cancel: absolute to the row's scale)
    atol = np.finfo(dtype).tiny if scale is None else TOL[dtype] * scale
    assert_close_rel(got[keep], ref[keep], TOL[dtype], atol_near_zero=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1, 3, 10, 16, 17, 47, 48, 95, 96, 127, 300])
def test_softmax_family_kernels_match_reference(dtype, n_classes, rng):
    # (47/48 and 95/96: either side of float32's 16-lane head, _HEAD_FROM, and of softmax's,
    # _SOFTMAX_HEAD_FROM)
    assert (K._HEAD_FROM, K._SOFTMAX_HEAD_FROM) == (48, 96)
    x = _adversarial(rng, dtype, n_classes)
    for fn in (ll.softmax, ll.log_softmax, ll.logsumexp):
        got, ref = _both(lambda: fn(x))  # noqa: B023
        _assert_same(got, ref, dtype)


@pytest.mark.parametrize("n_classes", [256, 263, 271])
def test_softmax_tail_of_large_logits_without_fma(n_classes, rng):
    # the last n % 16 entries of long float32 rows: with the drivers' reassoc on their scalar
    # llvm.fma calls, on a target without FMA (test_kernel_targets.py's generic run) they were
    # 2e-4 off at |x| = 1e4
    centres = np.array([1e4, -1e4, 3341.3, 0.0, 6e4, -6e4, 1.0, -1.0])
    x = (rng.normal(0, 3, size=(len(centres), n_classes)) + centres[:, None]).astype(np.float32)
    got, ref = _both(lambda: ll.softmax(x))
    _assert_same(got, ref, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1, 2, 10, 15, 23])
def test_softmax_of_short_rows_by_blocks(dtype, n_classes, rng):
    # rows shorter than _SHORT go 64 at a time, exponentials across rows: blocks of every
    # kind of row, a partial last block, and the same rows unpacked (the per-row path)
    assert n_classes < K._SHORT
    rows = _adversarial(rng, dtype, n_classes)
    x = np.concatenate([rng.normal(0, 4, size=(150, n_classes)).astype(dtype), rows,
                        rng.normal(0, 4, size=(81, n_classes)).astype(dtype), rows[::-1]])
    assert len(x) % K._SHORT_ROWS != 0
    got, ref = _both(lambda: ll.softmax(x))
    _assert_same(got, ref, dtype)
    wide = np.zeros((len(x), n_classes + 3), dtype=dtype)
    wide[:, :n_classes] = x
    unpacked = wide[:, :n_classes]  # rows not back to back: the per-row path
    out, bad = np.empty_like(x), np.zeros(len(x), bool)
    K.softmax_rows[0](unpacked, out, bad, False)
    block_out, block_bad = np.empty_like(x), np.zeros(len(x), bool)
    K.softmax_rows[0](x, block_out, block_bad, False)
    with np.errstate(invalid="ignore"):
        left = ~np.isfinite(x.max(axis=1)) | np.isnan(x).any(axis=1)  # for the reference's limits
    assert left.sum() >= 6
    assert np.array_equal(block_bad, left) and np.array_equal(bad, left)
    _assert_same(block_out[~bad], out[~bad], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_any_axis_and_layout(dtype, rng):
    x = rng.normal(0, 5, size=(7, 40, 9)).astype(dtype)
    for axis in (0, 1, -1):
        for fn in (ll.softmax, ll.log_softmax):
            got, ref = _both(lambda: fn(x[:, ::2], axis=axis))  # noqa: B023
            _assert_same(got, ref, dtype)
        got, ref = _both(lambda: ll.logsumexp(x, axis=axis, keepdims=True))  # noqa: B023
        _assert_same(got, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_and_serial_kernels_agree_bit_for_bit(dtype, rng):
    x = rng.normal(0, 4, size=(600, 300)).astype(dtype)  # above PARALLEL_SIZE
    assert x.size >= _jit.PARALLEL_SIZE
    y = rng.integers(0, 300, size=600)
    short = rng.normal(0, 4, size=(7001, 10)).astype(dtype)  # rows by blocks
    y_short = rng.integers(0, 10, size=7001)
    for pair, args in [
        (K.softmax_rows, lambda: (x, np.empty_like(x), np.zeros(600, bool), True)),
        (K.softmax_rows, lambda: (short, np.empty_like(short), np.zeros(7001, bool), True)),
        (K.log_softmax_rows, lambda: (x, np.empty_like(x), np.zeros(600, bool))),
        (K.sparse_ce_rows, lambda: (x, y, np.ones(600), 1 / 600, np.empty_like(x),
                                    np.empty(600), np.zeros(600, bool), True, True)),
        (K.sparse_ce_rows, lambda: (short, y_short, np.ones(7001), 1 / 7001, np.empty_like(short),
                                    np.empty(7001), np.zeros(7001, bool), True, True)),
    ]:
        a, b = args(), args()
        pair[0](*a)
        pair[1](*b)
        for u, v in zip(a[1:], b[1:]):
            assert np.array_equal(u, v)


@pytest.mark.parametrize("dtype, n_classes", [(np.float32, 1000), (np.float32, 1001), (np.float64, 500)])
def test_softmax_streamed_rows_match_reference_and_cached_path(dtype, n_classes, rng):
    # a result of 4 MiB or more with rows of 3 to 32 KiB is written (on x86) with non-temporal
    # stores from a scratch row: the same values as the reference, the same bits as the
    # cached path (the same rows in pieces too small to stream), in any alignment
    rows = _adversarial(rng, dtype, n_classes)
    n = 1100
    x = np.concatenate([rows, rng.normal(0, 4, size=(n - len(rows), n_classes)).astype(dtype)])
    x[500:500 + len(rows)] = rows  # the hard rows again, in the other thread's half
    assert K._streams(np.empty_like(x)) == K._X86 and not K._streams(np.empty_like(x[:100]))
    got, ref = _both(lambda: ll.softmax(x))
    _assert_same(got, ref, dtype)

    out, bad = np.empty_like(x), np.zeros(n, bool)
    K.softmax_rows[1](x, out, bad, True)
    serial, serial_bad = np.empty_like(x), np.zeros(n, bool)
    K.softmax_rows[0](x, serial, serial_bad, False)
    cached, cached_bad = np.empty_like(x), np.zeros(n, bool)
    for lo in range(0, n, 100):
        K.softmax_rows[0](x[lo:lo + 100], cached[lo:lo + 100], cached_bad[lo:lo + 100], False)
    assert bad.sum() == 6 and np.array_equal(bad, cached_bad) and np.array_equal(bad, serial_bad)
    assert np.array_equal(out[~bad], cached[~bad]) and np.array_equal(out[~bad], serial[~bad])
    assert np.array_equal(got[~bad], out[~bad])

    shifted = np.empty(x.size + 1, dtype=dtype)[1:].reshape(x.shape)  # rows off the 64-byte grid
    assert shifted.ctypes.data % 64 != 0 and shifted.flags.c_contiguous
    with _jit.kernel_mode("always"):
        ll.softmax(x, out=shifted)
    assert np.array_equal(shifted, got, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1000, 1009])
def test_sparse_ce_streamed_rows_match_reference_and_cached_path(dtype, n_classes, rng):
    # the sparse CE's gradient streams as softmax's result does (on two threads), the label's
    # - a in the same non-temporal store: the reference's values, the cached path's bits,
    # with labels at both ends of a row, in its partial lines and in its middle, ignored rows
    rows = _adversarial(rng, dtype, n_classes)
    n = 1100
    x = np.concatenate([rows, rng.normal(0, 4, size=(n - len(rows), n_classes)).astype(dtype)])
    x[500:500 + len(rows)] = rows
    y = rng.integers(0, n_classes, size=n)
    y[:8] = [0, 1, 7, 15, 16, n_classes - 16, n_classes - 2, n_classes - 1]
    y[[3, 600]] = -100
    loss = SparseCategoricalCrossentropy(from_logits=True, ignore_index=-100)
    (gv, gg), (rv, rg) = _both(lambda: loss.value_and_grad(y, x))
    _assert_same(gv, rv, dtype)
    _assert_same(gg, rg, dtype, scale=np.nanmax(np.abs(rg[np.isfinite(rg)]), initial=1.0))

    keep = y != -100
    args = (x, np.where(keep, y, 0), keep.astype(np.float64), 1 / keep.sum())
    streamed = [np.empty_like(x), np.empty(n), np.zeros(n, bool)]
    K.sparse_ce_rows[1](*args, *streamed, True, True)
    serial = [np.empty_like(x), np.empty(n), np.zeros(n, bool)]
    K.sparse_ce_rows[0](*args, *serial, True, False)
    bad = streamed[2]
    assert bad.sum() == 6 and np.array_equal(bad, serial[2])
    for got, ref in zip(streamed[:2], serial[:2]):
        assert np.array_equal(got[~bad], ref[~bad])
    assert np.array_equal(gg[~bad], streamed[0][~bad])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [300, 1000, 1009])
def test_sparse_ce_in_place_gives_the_same_bits_on_every_path(dtype, n_classes, rng):
    # training's lean path writes the gradient over the logits: the streamed driver (two
    # threads, a result of 4 MiB or more), the parallel one below that and the serial one
    # must give the same bits, or a fit's last bits would depend on whether another
    # thread held the parallel lock. float64 long rows in place summed their exponentials
    # in LLVM's scalar order on the serial path (its overlap check), the vectorised
    # order streamed: up to 5.7e-16 apart in the loss.
    n = max(1100, (4 << 20) // (n_classes * np.dtype(dtype).itemsize) + 1)
    x = rng.normal(0, 4, size=(n, n_classes)).astype(dtype)
    y = rng.integers(0, n_classes, size=n)
    w = np.ones(n)
    w[[3, 600]] = 0.0
    results = []
    for parallel, threaded in ((1, True), (1, False), (0, False)):
        z = x.copy()
        out = [np.empty(n), np.zeros(n, bool)]
        K.sparse_ce_rows[parallel](z, y, w, 1 / n, z, *out, False, threaded)
        results.append((z, *out))
    assert not results[0][2].any()
    for other in results[1:]:
        for got, ref in zip(other, results[0]):
            assert np.array_equal(got, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("n_classes", [50, 23, 10, 3])  # rows shorter than 24 go by blocks
def test_sparse_ce_kernel_matches_reference(dtype, reduction, n_classes, rng):
    x = _adversarial(rng, dtype, n_classes)
    if n_classes < K._SHORT:  # more than one block, the hard rows in the second one too
        x = np.concatenate([x, rng.normal(0, 4, size=(90, n_classes)).astype(dtype), x])
        confident = rng.normal(0, 1, size=(5, n_classes))
        confident[:, 0] += 40.0  # recounted (and refined) without the maximal term
        x = np.concatenate([x, confident.astype(dtype)])
    n = len(x)
    y = rng.integers(0, n_classes, size=n)
    if n_classes < K._SHORT:
        y[-5:] = 0  # the confident rows' loss is r itself, about 1e-17
    y[[1, 6]] = -100
    cw = rng.uniform(0.2, 3.0, size=n_classes)
    sw = rng.uniform(0, 2, size=n)
    cases = [
        dict(),
        dict(ignore_index=-100),
        dict(ignore_index=-100, class_weight=cw),
        dict(ignore_index=-100, class_weight=cw, sample_weight=sw),
    ]
    for kw in cases:
        yy = y if "ignore_index" in kw else np.abs(y) % n_classes
        sample_weight = kw.pop("sample_weight", None)
        loss = SparseCategoricalCrossentropy(from_logits=True, reduction=reduction, **kw)
        (gv, gg), (rv, rg) = _both(lambda: loss.value_and_grad(yy, x, sample_weight=sample_weight))  # noqa: B023
        _assert_same(gv, rv, dtype)
        _assert_same(gg, rg, dtype, scale=np.nanmax(np.abs(rg[np.isfinite(rg)]), initial=1.0))
        value, ref_value = _both(lambda: sparse_categorical_crossentropy(  # noqa: B023
            yy, x, from_logits=True, reduction=reduction, **kw))  # noqa: B023
        _assert_same(value, ref_value, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_categorical_ce_kernel_matches_reference(dtype, rng):
    x = _adversarial(rng, dtype, 40)
    t = rng.dirichlet(np.ones(40), size=len(x))
    t[3] = np.eye(40)[7]
    t[4] = 0.0  # an all-zero target row
    for reduction in ("mean", "sum", "none"):
        loss = CategoricalCrossentropy(from_logits=True, reduction=reduction)
        (gv, gg), (rv, rg) = _both(lambda: loss.value_and_grad(t, x))  # noqa: B023
        _assert_same(gv, rv, dtype)
        _assert_same(gg, rg, dtype, scale=np.nanmax(np.abs(rg[np.isfinite(rg)]), initial=1.0))
    got, ref = _both(lambda: categorical_crossentropy(t.T, x.T, from_logits=True, axis=0))
    _assert_same(got, ref, dtype)


def _lean_matches_reference(z, y, sw, dtype):
    """The kernel's in-place cross-entropy (scale 0.5) against the reference's value and
    gradient of the summed loss."""
    with _jit.kernel_mode("never"):
        value, grad = SparseCategoricalCrossentropy(from_logits=True, reduction="sum") \
            .value_and_grad(y, z, sample_weight=sw)
    work = z.copy()
    with _jit.kernel_mode("always"):
        total = sparse_ce_logits_inplace(work, y, sample_weight=sw, scale=0.5)
    assert_close_rel(total, float(value), TOL[dtype])
    _assert_same(work, 0.5 * grad, dtype, scale=1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [256, 255, 100, 48, 47, 32, 31, 16, 3])
def test_inplace_ce_by_blocks_matches_reference(dtype, n_classes, rng):
    # the cross-entropy in place goes by blocks of rows below _SHORT_IN_PLACE classes (float32
    # 48, float64 256; the public, out-of-place one below _SHORT): the adversarial rows whose
    # maximum is finite (a flagged row makes the lean total NaN), confident rows, over
    # several blocks; on both sides of each limit
    assert K._SHORT < 31 and K._SHORT_IN_PLACE == {"float32": 48, "float64": 256}
    rows = _adversarial(rng, dtype, n_classes)
    with np.errstate(invalid="ignore"):
        rows = rows[np.isfinite(rows.max(axis=1)) & ~np.isnan(rows).any(axis=1)]
    confident = rng.normal(0, 1, size=(5, n_classes))
    confident[:, 0] += 40.0
    z = np.concatenate([rows, rng.normal(0, 4, size=(90, n_classes)), confident, rows])
    z = z.astype(dtype)
    y = rng.integers(0, n_classes, size=len(z))
    y[len(rows) + 90:len(rows) + 95] = 0
    sw = rng.uniform(0.5, 1.5, size=len(z))
    _lean_matches_reference(z, y, sw, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [10, 40, 300])  # blocks (both ways), rows in place
def test_a_label_logit_of_minus_inf_is_an_infinite_loss_not_a_flagged_row(dtype, n_classes, rng):
    # found at 47 classes: the blocks flagged a row whose loss is +inf (its label's logit -inf,
    # its maximum finite) as a bad row, and the lean in-place total came out NaN, not inf
    z = rng.normal(0, 3, size=(200, n_classes)).astype(dtype)
    y = rng.integers(1, n_classes, size=200)
    z[7, y[7]] = -np.inf
    with _jit.kernel_mode("always"):
        assert sparse_ce_logits_inplace(z.copy(), y) == np.inf
        losses = sparse_categorical_crossentropy(y, z, from_logits=True, reduction="none")
    assert losses[7] == np.inf and np.isfinite(np.delete(losses, 7)).all()
    g = np.empty((200, n_classes), dtype)
    loss, bad = np.empty(200), np.zeros(200, bool)
    keep = np.ones(200)
    K.sparse_ce_rows[0](z, y, keep, 1.0, g, loss, bad, True, False)  # out of place, serial
    assert not bad.any() and loss[7] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [20, 10])
def test_lean_inplace_path_matches_reference(dtype, n_classes, rng):
    z = rng.normal(0, 3, size=(300, n_classes)).astype(dtype)
    y = rng.integers(0, n_classes, size=300)
    sw = rng.uniform(0.5, 1.5, size=300)
    _lean_matches_reference(z, y, sw, dtype)
    bad = z.copy()
    bad[4, 2] = np.inf
    with _jit.kernel_mode("always"):
        assert math.isnan(sparse_ce_logits_inplace(bad, y))


def test_confident_rows_keep_log1p_accuracy():
    # log_softmax of the winner is -r, tiny: recomputed without the maximal term
    for dtype in (np.float32, np.float64):
        x = np.zeros((4, 200), dtype=dtype) - 40.0
        x[:, 3] = 0.0
        with _jit.kernel_mode("always"):
            got = ll.log_softmax(x)[:, 3]
            loss = sparse_categorical_crossentropy(np.full(4, 3), x, from_logits=True,
                                                   reduction="none")
        exact = -199 * math.exp(-40.0)  # log(1/(1 + 199 e^-40)) to 1e-35
        assert_close_rel(got, np.full(4, exact), TOL[dtype], atol_near_zero=1e-40)
        assert_close_rel(loss, np.full(4, -exact), TOL[dtype], atol_near_zero=1e-40)



def test_confident_short_rows_keep_log1p_accuracy():
    # rows shorter than _SHORT go by blocks whose exponentials sit in a scratch block
    # (_sparse_ce_block): their recount without the maximal term reads it, in place too
    for dtype in (np.float32, np.float64):
        x = np.zeros((70, 8), dtype=dtype) - 40.0  # 70 rows: two blocks of _SHORT_ROWS
        x[:, 3] = 0.0
        y = np.full(70, 3)
        with _jit.kernel_mode("always"):
            loss = sparse_categorical_crossentropy(y, x, from_logits=True, reduction="none")
            lean = sparse_ce_logits_inplace(x.copy(), y)
        exact = 7 * math.exp(-40.0)  # log1p(7 e^-40) to 1e-35
        assert_close_rel(loss, np.full(70, exact), TOL[dtype], atol_near_zero=1e-40)
        assert_close_rel(lean, 70 * exact, TOL[dtype], atol_near_zero=1e-40)


def test_confident_short_rows_with_rounded_differences_are_refined():
    # as below, for rows of 12: the refinement re-reads the row with its maximum kept
    m = np.float32(2.0**-18 * (1 - 2.0**-8))
    x = np.full((70, 12), -80.0, dtype=np.float32)
    x[:, 7] = m
    y = np.full(70, 7)
    r = np.sum(np.exp(np.delete(x, 7, axis=1).astype(np.float64) - float(m)), axis=1)
    with _jit.kernel_mode("always"):
        loss = sparse_categorical_crossentropy(y, x, from_logits=True, reduction="none")
    assert_close_rel(loss, np.log1p(r), TOL[np.float32], atol_near_zero=1e-40)

def test_confident_rows_with_rounded_differences_are_refined():
    # r from the fast exps carries x - m's rounding, |x - m| 2**-24 relative: here 3.8e-6
    # (just under half an ulp of 80), every term rounded the same way. Such rows are
    # summed again from exact exponentials.
    m = np.float32(2.0**-18 * (1 - 2.0**-8))
    x = np.full((4, 300), -80.0, dtype=np.float32)
    assert abs(float(x[0, 0] - m) - (-80.0 - float(m))) > 3.7e-6  # the rounding
    x[2:] += np.random.default_rng(5).uniform(62, 74, size=(2, 300)).astype(np.float32)
    x[:, 7] = m
    y = np.full(4, 7)
    others = np.delete(x, 7, axis=1).astype(np.float64) - float(m)
    r = np.sum(np.exp(others), axis=1)  # float64: exact to 1e-15
    with _jit.kernel_mode("always"):
        lsm = ll.log_softmax(x)[:, 7]
        lse = ll.logsumexp(x, axis=1)
        loss = sparse_categorical_crossentropy(y, x, from_logits=True, reduction="none")
        lean = sparse_ce_logits_inplace(x.copy(), y)
    tiny = {"atol_near_zero": 1e-40}  # the losses are 1e-31: relative, not absolute
    assert_close_rel(-lsm, np.log1p(r), TOL[np.float32], **tiny)
    assert_close_rel(lse, float(m) + np.log1p(r), TOL[np.float32], **tiny)
    assert_close_rel(loss, np.log1p(r), TOL[np.float32], **tiny)
    # the in-place training path cannot re-read the row: |x - m| 2**-24 + 1e-6 at most
    assert_close_rel(lean, np.sum(np.log1p(r)), 80 * 2.0**-24 + 1e-6, **tiny)


# ------------------------------------------------------------------ plumbing


def test_import_does_not_load_numba():
    code = ("import sys, numpy as np, logitlab as ll; ll.softmax(np.ones((4, 3)));"
            "assert 'numba' not in sys.modules, 'numba imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_small_arrays_do_not_load_numba_but_use_it_once_loaded():
    # the seeds' lab takes one softmax of 2000 x 4: loading Numba (0.3-0.9 s, 90 MiB)
    # would cost more than it saves; once a large call has loaded it, the small one uses it
    code = """if True:
        import sys, numpy as np, logitlab as ll
        from logitlab import _jit
        small = np.random.default_rng(0).normal(size=(2000, 4))
        assert _jit.MIN_SIZE <= small.size < _jit.LOAD_SIZE
        before = ll.softmax(small)
        assert 'numba' not in sys.modules, 'numba imported for a small array'
        assert _jit.kernels_for(small) is None
        ll.softmax(np.ones((1, _jit.LOAD_SIZE)))
        assert 'numba' in sys.modules, 'numba not loaded for a large array'
        assert _jit.kernels_for(small) is not None
        after = ll.softmax(small)
        assert np.allclose(after, before, rtol=2e-6, atol=0), 'kernel and reference disagree'
        print('ok')
    """
    env = {k: v for k, v in os.environ.items() if k != "LOGITLAB_KERNELS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_bad_kernel_mode_is_named():
    out = subprocess.run([sys.executable, "-c", "import logitlab"], capture_output=True,
                         text=True, env={"LOGITLAB_KERNELS": "fast", "PATH": ""})
    assert out.returncode != 0 and "LOGITLAB_KERNELS" in out.stderr and "'fast'" in out.stderr
    with pytest.raises(ValueError, match="`mode`"):
        with _jit.kernel_mode("sometimes"):
            pass


def test_threads_calling_at_once_get_the_right_results(rng):
    x = rng.normal(0, 3, size=(400, 500)).astype(np.float32)
    with _jit.kernel_mode("never"):
        ref = ll.softmax(x)
    results = [None] * 6
    errors = []

    def work(i):
        try:
            for _ in range(5):
                results[i] = ll.softmax(x)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        _assert_same(r, ref, np.float32)


def test_warm_compiles_every_kernel():
    # every driver, serial and parallel, both dtypes; and as `make` runs it, in two processes
    # (Adam's step and the linear objective's four are serial only: one kernel a dtype)
    assert _jit.warm() == 30
    assert _jit.warm(["float32"]) == _jit.warm(["float64"]) == 15
    assert _jit.warm(["float64"], kernels=["softmax_rows", "adam_update"]) == 3
    assert _jit.warm(processes=2) == 30
    jobs = [(d, k) for d in ("float32", "float64") for k in _jit._COMPILE_SECONDS[d]]
    for parts in (1, 2, 3):  # the processes' shares: each job once
        groups = _jit._balanced(jobs, parts)
        assert len(groups) == parts and sorted(sum(groups, [])) == sorted(jobs)


# ------------------------------------------------------------------ Adam's one-pass step


def _adam_case(rng, dtype, n=5000):
    """Kernel arguments (arrays and the dtype's scalars) for Adam's step ``t`` = 3 of lr 0.01,
    with special entries: zero, tiny, huge, inf and NaN gradients, v_hat above v and NaN."""
    p = rng.normal(0, 1, n).astype(dtype)
    g = rng.normal(0, 0.1, n).astype(dtype)
    g[:6] = [0.0, -0.0, 1e-30, 3e30, np.inf, np.nan]
    m = rng.normal(0, 0.05, n).astype(dtype)
    v = rng.uniform(0, 0.02, n).astype(dtype)
    v[6] = 0.0  # with a zero gradient: sqrt(0) + epsilon
    g[6] = 0.0
    v_hat = v * rng.uniform(0.5, 2.0, n).astype(dtype)
    v_hat[7] = np.nan
    t, lr, b1, b2, eps = 3, 0.01, 0.9, 0.999, 1e-7
    alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
    return [p, g, m, v, v_hat], [1 - b1, 1 - b2, alpha, eps]


def _same_bits(a, b):
    """Equal to the bit (zeros' signs included), NaN where NaN."""
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b))
    bits = a.view(np.int32 if a.dtype == np.float32 else np.int64)
    other = b.view(bits.dtype)
    assert np.array_equal(bits[~nan], other[~nan])


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_gives_the_numpy_updates_bits(dtype, amsgrad, rng):
    """The one-pass step and the optimizer's NumPy update (twelve passes, each rounded to the
    dtype) do the same operations in the same order: the same bits, special entries included."""
    from logitlab.optimizers._optimizers import _adam_numpy

    arrays, scalars = _adam_case(rng, dtype)
    if not amsgrad:
        arrays[4] = np.empty(0, dtype)
    ours = [a.copy() for a in arrays]
    ref = [a.copy() for a in arrays]
    with np.errstate(all="ignore"):
        K.adam_update[0](*ours, *(dtype(c) for c in scalars))
        # the optimizer passes Python floats (weak: rounded to the dtype), the kernel the
        # dtype's scalars
        _adam_numpy(*ref[:4], ref[4] if amsgrad else None, *scalars, np.empty_like(ref[0]),
                    np.empty_like(ref[0]))
    for a, b in zip(ours, ref):
        _same_bits(a, b)
    assert np.isnan(ours[0][5]) and np.isnan(ours[0][4])  # NaN and inf gradients reach p


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_fallback_serves_the_kernels_contract(dtype, amsgrad, rng):
    """Where the step cannot be compiled, ``_jit.launch`` calls ``_kernel_fallback``'s function
    with the kernel's own arguments: it writes what the kernel writes."""
    from logitlab import _kernel_fallback

    arrays, scalars = _adam_case(rng, dtype)
    if not amsgrad:
        arrays[4] = np.empty(0, dtype)
    ours = [a.copy() for a in arrays]
    ref = [a.copy() for a in arrays]
    args = [dtype(c) for c in scalars]
    with np.errstate(all="ignore"):
        K.adam_update[0](*ours, *args)
        _kernel_fallback.serving(K.adam_update, K)(*ref, *args)
    for a, b in zip(ours, ref):
        _same_bits(a, b)


def test_adam_kernel_is_vectorised():
    """Packed divisions (and, on AVX2 and AVX-512, packed square roots) in the step's loop:
    Numba's default error model (a zero-divisor check a division, libm's ``sqrtf`` for
    ``errno``) would leave it scalar, at a quarter of the speed. For the generic x86-64
    target LLVM's cost model splits the square roots into ``sqrtss`` (the loop stays
    vectorised around them)."""
    from llvmlite import binding

    options = {k: v for k, v in K.adam_update[0].targetoptions.items()
               if k not in ("cache", "nopython")}
    assert "fastmath" not in options  # contraction would fuse a multiply-add: other bits
    step = numba.njit(**options)(K.adam_update[0].py_func)  # compiled here: readable assembly
    x = np.zeros(64, np.float32)
    step(x, x.copy(), x.copy(), x.copy(), np.empty(0, np.float32), *(np.float32(0.5),) * 4)
    asm = "\n".join(step.inspect_asm().values())
    target = os.environ.get("LOGITLAB_TEST_TARGET")
    avx2 = (binding.get_host_cpu_features().get("avx2", False) if target is None
            else target != "generic")
    assert re.search(r"\bv?divps\b", asm)
    assert bool(re.search(r"\bvsqrtps\b", asm)) == avx2


# ------------------------------------------------------------------ a linear model's cross-entropy


def _linear_case(rng, dtype, n, d, k):
    X = rng.normal(0, 1, (n, d)).astype(dtype)
    W = rng.normal(0, 0.7, (k, d)).astype(dtype)
    b = rng.normal(0, 1, k).astype(dtype)
    y = rng.integers(0, k, n).astype(np.intp)
    w = rng.uniform(0.2, 2.0, n)
    w[::7] = 0.0  # ignored rows: no loss, no gradient, label not read
    y[::7] = 10**6
    return _frozen(X), W, b, _frozen(y), _frozen(w)


def _frozen(*arrays):
    """The data's arrays read-only, as the linear objective passes them (one compiled type)."""
    for a in arrays:
        a.flags.writeable = False
    return arrays[0] if len(arrays) == 1 else arrays


def _linear_reference(X, W, b, y, w):
    """The loss sum, G^T X and G^T 1 in long double from the inputs' values (the products
    and the log-softmax an independent computation from the kernel's)."""
    L = np.longdouble
    z = X.astype(L) @ W.astype(L).T + b.astype(L)
    zs = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(zs).sum(axis=1))
    keep = w != 0
    yk = np.where(keep, y, 0)
    rows = np.arange(len(z))
    loss = np.sum(np.where(keep, w * (lse - zs[rows, yk]), 0))
    G = np.exp(zs - lse[:, None]) * w[:, None]
    G[rows[keep], yk[keep]] -= w[keep]
    return loss, G.T @ X.astype(L), G.sum(axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,d,k", [(1, 3, 2), (5, 7, 3), (63, 1, 5), (64, 13, 10),
                                   (131, 50, 20), (257, 33, 12)])
def test_linear_ce_matches_long_double_products_and_softmax(dtype, n, d, k, rng):
    """Every block tail (rows past a multiple of 4 and of 64), ignored rows, both dtypes:
    the loss sum and both gradient sums within the dtype's rounding of the products (the
    kernel computes the logits and ``G^T X`` in the inputs' dtype, as BLAS would)."""
    X, W, b, y, w = _linear_case(rng, dtype, n, d, k)
    GW, gb = np.full((k, d), 0.5, dtype), np.full(k, 0.25)  # the kernel adds into them
    loss = K.linear_ce[0](X, W, b, y, w, GW, gb)
    ref_loss, ref_GW, ref_gb = _linear_reference(X, W, b, y, w)
    eps = np.finfo(dtype).eps
    scale = np.sum(w) * (1 + np.abs(X).max() * np.abs(W).max() * d)  # the logits' sizes
    assert abs(loss - float(ref_loss)) <= 8 * eps * scale
    grad_scale = np.sum(w) * np.abs(X).max()
    np.testing.assert_allclose(GW - dtype(0.5), ref_GW.astype(np.float64),
                               atol=16 * eps * grad_scale * np.sqrt(d), rtol=0)
    np.testing.assert_allclose(gb - 0.25, ref_gb.astype(np.float64), atol=16 * eps * np.sum(w),
                               rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_ce_signals_a_bad_row_with_nan_and_a_lost_label_with_inf(dtype, rng):
    X, W, b, y, w = _linear_case(rng, dtype, 70, 6, 4)
    Xn = X.copy()
    Xn[65, 2] = np.nan  # in the second block
    assert np.isnan(K.linear_ce[0](_frozen(Xn), W, b, y, w, np.zeros((4, 6), dtype), np.zeros(4)))
    bi = b.copy()
    bi[y[1]] = -np.inf  # every row's label is row 1's, which can't be predicted: +inf, not NaN
    same = _frozen(np.full(70, y[1]), np.ones(70))
    assert K.linear_ce[0](X, W, bi, *same, np.zeros((4, 6), dtype), np.zeros(4)) == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_ce_fallback_serves_the_kernels_contract(dtype, rng):
    """Where the kernel cannot be compiled, ``_kernel_fallback.linear_ce`` adds the same sums."""
    from logitlab import _kernel_fallback

    X, W, b, y, w = _linear_case(rng, dtype, 131, 9, 6)
    ours = [np.full((6, 9), 0.5, dtype), np.full(6, 0.25)]
    ref = [a.copy() for a in ours]
    loss = K.linear_ce[0](X, W, b, y, w, *ours)
    want = _kernel_fallback.serving(K.linear_ce, K)(X, W, b, y, w, *ref)
    tol = TOL[dtype]
    assert abs(loss - want) <= tol * abs(want)
    for a, r in zip(ours, ref):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.abs(r).max())


def _odd_csr(rng, dtype, n, d):
    """CSR arrays of an ``n x d`` matrix with empty rows, a row's entries unsorted and a column
    index repeated (its value split in two halves: a repeat adds, as in scipy's products),
    read-only, and the dense matrix they mean."""
    import scipy.sparse as sp

    dense = rng.normal(0, 1, (n, d)) * (rng.uniform(size=(n, d)) < 0.15)
    dense[5:9] = 0.0  # empty rows
    X = sp.csr_matrix(dense.astype(dtype))
    a, b = X.indptr[0], X.indptr[1]
    X.indices[a:b], X.data[a:b] = X.indices[a:b][::-1].copy(), X.data[a:b][::-1].copy()
    a = X.indptr[1]
    indices = np.insert(X.indices, a, X.indices[a])
    data = np.insert(X.data, a, X.data[a] / 2)
    data[a + 1] = X.data[a] - data[a]
    indptr = X.indptr.copy()
    indptr[2:] += 1
    indptr, indices, data = _frozen(indptr, indices, data)
    return (indptr, indices, data), sp.csr_matrix((data, indices, indptr), shape=(n, d)).toarray()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lo,hi", [(0, 150), (3, 140), (70, 71)])
def test_linear_proba_and_hvp_csr_match_long_double(dtype, lo, hi, rng):
    """The Hessian's pieces for Newton-CG: ``linear_proba_csr``'s rows are the softmax of the
    rows' logits, and ``linear_hvp_csr`` adds ``X^T R`` and ``R^T 1``, ``r_i = w_i (p_i * u_i -
    p_i (p_i . u_i))``, ``u_i = V x_i + c``, each against long double from the same inputs;
    the fallbacks (NumPy and scipy) compute the same."""
    from logitlab import _kernel_fallback

    n, d, k = 150, 40, 11
    csr, Xd = _odd_csr(rng, dtype, n, d)
    Xd = Xd[lo:hi]
    _, W, bias, _, w = _linear_case(rng, dtype, n, d, k)
    V = rng.normal(0, 1, (k, d)).astype(dtype)
    c = rng.normal(0, 1, k).astype(dtype)
    L = np.longdouble
    z = Xd.astype(L) @ W.astype(L).T + bias.astype(L)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p_ref = e / e.sum(axis=1, keepdims=True)
    eps = np.finfo(dtype).eps
    P = np.full((hi - lo, k), np.nan, dtype)
    K.linear_proba_csr[0](*csr, np.ascontiguousarray(W.T), bias, lo, hi, P)
    zmax = 1 + np.abs(Xd).max() * np.abs(W).max() * d  # the logits' rounding, relative
    np.testing.assert_allclose(P, p_ref.astype(np.float64), rtol=0, atol=16 * eps * zmax)
    P2 = np.full_like(P, np.nan)
    _kernel_fallback.serving(K.linear_proba_csr, K)(*csr, np.ascontiguousarray(W.T), bias, lo,
                                                    hi, P2)
    np.testing.assert_allclose(P, P2, rtol=0, atol=16 * eps * zmax)

    u = Xd.astype(L) @ V.astype(L).T + c.astype(L)
    pl = P.astype(L)
    R = w[lo:hi, None].astype(L) * pl * (u - np.sum(pl * u, axis=1, keepdims=True))
    HVT, hc = np.full((d, k), 0.5, dtype), np.full(k, 0.25)  # the kernel adds into them
    K.linear_hvp_csr[0](*csr, np.ascontiguousarray(V.T), c, P, w, lo, hi, HVT, hc)
    # each entry's rounding: of u_i (|V| |x_i| + |c|), carried through r_i, and of the sums
    ax = np.abs(Xd)
    r_size = w[lo:hi, None] * np.abs(P) * (ax @ np.abs(V).T + np.abs(c))  # |r_i| bounds, each
    tol_HV, tol_c = 16 * eps * (r_size.T @ ax).T + 1e-30, 16 * eps * r_size.sum(axis=0) + 1e-30
    want_HV, want_c = (R.T @ Xd.astype(L)).T.astype(np.float64), R.sum(axis=0).astype(np.float64)
    assert np.all(np.abs(HVT - dtype(0.5) - want_HV) <= tol_HV + 0.5 * eps)  # (+ the 0.5's)
    assert np.all(np.abs(hc - 0.25 - want_c) <= tol_c)
    HVT2, hc2 = np.full((d, k), 0.5, dtype), np.full(k, 0.25)
    _kernel_fallback.serving(K.linear_hvp_csr, K)(*csr, np.ascontiguousarray(V.T), c, P, w, lo,
                                                  hi, HVT2, hc2)
    assert np.all(np.abs(HVT2 - dtype(0.5) - want_HV) <= tol_HV + 0.5 * eps)
    assert np.all(np.abs(hc2 - 0.25 - want_c) <= tol_c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lo,hi", [(0, 150), (3, 140), (70, 71)])
def test_linear_ce_csr_matches_long_double_products_and_softmax(dtype, lo, hi, rng):
    """Rows ``lo:hi`` of a CSR matrix with empty rows, unsorted and repeated column indices
    (a repeat adds, as in scipy's products): the sums of the dense case, transposed."""
    n, d, k = 150, 40, 11
    (indptr, indices, data), Xd = _odd_csr(rng, dtype, n, d)
    _, W, bias, y, w = _linear_case(rng, dtype, n, d, k)
    GWT, gb = np.full((d, k), 0.5, dtype), np.full(k, 0.25)
    loss = K.linear_ce_csr[0](indptr, indices, data, np.ascontiguousarray(W.T), bias, y, w, lo, hi,
                              GWT, gb)
    Xd = Xd[lo:hi]
    ref_loss, ref_GW, ref_gb = _linear_reference(Xd, W, bias, y[lo:hi], w[lo:hi])
    eps = np.finfo(dtype).eps
    m = hi - lo
    assert abs(loss - float(ref_loss)) <= 8 * eps * m * (1 + np.abs(Xd).max() * np.abs(W).max() * d)
    np.testing.assert_allclose(GWT.T - dtype(0.5), ref_GW.astype(np.float64),
                               atol=16 * eps * m * np.abs(Xd).max() * np.sqrt(d), rtol=0)
    np.testing.assert_allclose(gb - 0.25, ref_gb.astype(np.float64), atol=16 * eps * m, rtol=0)
    # the fallback (its contract in NumPy and scipy) adds the same sums
    from logitlab import _kernel_fallback

    GWT2, gb2 = np.full((d, k), 0.5, dtype), np.full(k, 0.25)
    want = _kernel_fallback.serving(K.linear_ce_csr, K)(
        indptr, indices, data, np.ascontiguousarray(W.T), bias, y, w, lo, hi, GWT2, gb2)
    assert abs(loss - want) <= TOL[dtype] * max(abs(want), 1.0)
    np.testing.assert_allclose(GWT, GWT2, rtol=0, atol=TOL[dtype] * np.abs(GWT2).max())
    np.testing.assert_allclose(gb, gb2, rtol=0, atol=TOL[dtype] * np.abs(gb2).max())
