"""The kernels' exponentials and ``log1p`` (Numba): scalar intrinsics, the IR that runs
them in vector lanes, and the dtype dispatch the row passes call.

Our own straight-line arithmetic that LLVM vectorises (libm's ``exp`` is a
call and does not): Cody-Waite reduction ``x = k ln2 + r`` with a two-part
``ln2``, a polynomial on ``|r| <= ln2/2`` and ``2^k`` assembled from
exponent bits (in the 16-lane loops on AVX-512, applied by ``vscalefps``:
the same bits). float32 has three variants, for three error budgets:

* ``exp32_shifted``: ``exp(d + err)``, ``d = x - m`` and its exact rounding
  error from TwoSum (``_shifted_exp32``): every value accurate;
* ``exp32_scaled``: ``exp(x) 2**-K``, the logit itself entering the
  reduction (softmax rows of 96 entries and more);
* ``exp32_fast``: ``x - m`` rounded, for sums only (``_fast_exp32``).

float64 has one, ``exp64``, within a few ulp of libm's. ``_log1p64`` is
fdlibm's ``log1p`` written without branches. ``tests/test_kernels.py`` checks
each against libm or mpmath on every float32 input it takes, and the lanes
against the scalar code on every input they take.

Floating-point flags. The loops that sum are compiled with ``_SUMS``
(``reassoc``) so LLVM can vectorise them; Numba adds a function's flags only
to instructions that have none, so the arithmetic whose order matters lives
in helpers compiled with ``_EXACT`` (``contract`` alone), and keeps its
order when inlined.

This module and the kernels built on it (``_kernels.py``,
``_model_kernels.py``) share one freshness stamp in Numba's cache
(``_kernel_cache.py``): a kernel inlines these, so a change here recompiles
them. docs/kernels.md has the design and the error budget.
"""

from __future__ import annotations

from . import _kernel_cache

_kernel_cache.register()  # before the first cached function below

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

_EXACT = {"contract"}  # FMA contraction only: evaluation order is kept
_SUMS = {"reassoc", "contract"}  # for reductions: LLVM may reorder the sum

# ---------------------------------------------------------------- exp, float32

_F = np.float32
_MAGIC32 = 12582912.0  # 1.5 * 2**23: y + magic rounds y to an integer
_LOG2E32 = _F(1.4426950408889634)
_LN2_HI32 = _F(np.log(2.0))  # with an FMA, x - k * ln2_hi is exact for |k| <= 2**8
_LN2_LO32 = _F(np.log(2.0) - float(_LN2_HI32))
_BIAS32 = 64  # the shifted kernels' exp: p carries 2**-64, 2**(k + 64) stays normal


def _poly32_coefficients():
    """c2..c5 of exp(r) ~ 1 + r + c2 r^2 + ... + c5 r^5 on |r| <= ln2/2.

    Least squares on 64 Chebyshev nodes, weighted for relative error, in
    float64: close to minimax (the fitted polynomial's error is about 1e-7,
    below float32's half-ulp of 6e-8 times the few roundings around it).
    """
    h = np.log(2.0) / 2
    r = h * np.cos(np.pi * (np.arange(64) + 0.5) / 64)
    target = np.expm1(r) - r
    basis = np.stack([r**k for k in range(2, 6)], axis=1)
    w = 1.0 / np.exp(r)
    c, *_ = np.linalg.lstsq(basis * w[:, None], target * w, rcond=None)
    return tuple(float(v) for v in c)


_C32 = _poly32_coefficients()
_P32 = tuple(_F(c) for c in _C32)
_P32_SHIFTED = tuple(_F(c * 2.0**-_BIAS32) for c in _C32)
_ONE_SHIFTED = _F(2.0**-_BIAS32)

@njit(cache=True, fastmath=_EXACT)
def _shifted_exp32(x, m):
    """``exp(x - m)`` for ``x <= m``, with ``x - m`` split exactly (TwoSum)."""
    d = x - m
    b = d - x
    a = d - b
    err = (x - a) + (-m - b)
    small = d < _F(-104.0)  # exp is 0 there (also x = -inf, where err is NaN); NaN passes
    return exp32_shifted(_F(-104.0) if small else d, _F(0.0) if small else err)


def _splat(ty, value):
    """The constant ``value`` of the scalar or vector IR type ``ty``."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, value)] * ty.count)
    return ir.Constant(ty, value)


# IR, not @njit: one emitter for the scalar exps and the 16-lane loops, so that the lanes
# compute the exhaustively tested scalar bits (90a2bb4); explicit llvm.fma, no flags.
# Numba has no fused multiply-add to call (Python 3.11 has no math.fma): under `contract`
# LLVM fuses where it chooses, and r = d - k ln2_hi is exact only as an FMA, so plain
# code would not keep these bits on every target. Speed not measured: the loops' is (see
# _head_function).
def _emit_exp32_shifted(builder, d, err=None, shift=None, scalef=False):
    """IR for ``exp(d + err)``, ``-104 <= d <= 0``, on a float or a vector of floats.

    ``x = k ln2 + r`` with ``2**k`` applied as one factor ``2**(k + 64)`` on
    a polynomial scaled by ``2**-64`` (exact), which the range of ``d`` keeps
    normal. With ``err`` (the exact rounding error of ``d``, from
    ``_shifted_exp32``'s TwoSum) the reduction uses a two-part ``ln2``; without, one
    constant: ``r = d - k ln2_f32`` with float32's ``ln2`` (off by 1.9e-9),
    an error of up to ``|k| 1.9e-9`` (3e-7 at ``d = -104``), and one FMA
    fewer. With ``shift`` (an i32 ``K``): ``exp(d) 2**-K`` for ``-104 <= d -
    K ln2 <= 1``, the two-part reduction and no error term: ``d`` is a logit
    itself, exact, and ``2**-K`` takes the place of the row's maximum (see
    ``_softmax_exps``). Every step is an IEEE operation or an explicit
    ``llvm.fma`` (no fast-math flags of its own; inside a ``reassoc`` driver
    Numba adds the driver's to them), so a vector lane computes exactly
    what the scalar intrinsics compute: the exhaustive tests of those are
    tests of the lanes. With ``scalef`` (16 lanes, where ``_scalef``) the
    polynomial is not scaled and ``vscalefps`` applies ``2**k``: the same
    bits, four fewer instructions of the floating-point pipes (tested on
    every input).
    """
    fty = d.type
    vector = isinstance(fty, ir.VectorType)
    ity = ir.VectorType(ir.IntType(32), fty.count) if vector else ir.IntType(32)

    def c(v):
        return _splat(fty, float(_F(v)))

    suffix = f"v{fty.count}f32" if vector else "f32"
    llvm_fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(fty, [fty] * 3),
                                              f"llvm.fma.{suffix}")

    def fma(a, b, addend):
        return builder.call(llvm_fma, [a, b, addend])

    t = fma(d, c(_LOG2E32), c(_MAGIC32))  # k in the low bits of t
    kf = builder.fsub(t, c(_MAGIC32))
    r = fma(kf, c(-_LN2_HI32), d)  # exact: a multiple of 2**-25 below 0.35 in magnitude
    if err is not None:
        r = builder.fadd(fma(kf, c(-_LN2_LO32), r), err)
    elif shift is not None:
        r = fma(kf, c(-_LN2_LO32), r)
    if scalef:  # the same arithmetic unscaled, and 2**k applied by vscalefps: the same bits
        c2, c3, c4, c5 = _P32
        r2 = builder.fmul(r, r)
        q = fma(fma(c(c5), r, c(c4)), r2, fma(c(c3), r, c(c2)))
        p = fma(q, r2, builder.fadd(r, c(1.0)))  # exp(r)
        if shift is not None:
            kf = builder.fsub(kf, builder.sitofp(_broadcast(builder, shift, fty.count), fty))
        return _emit_scalef(builder, p, kf)
    c2, c3, c4, c5 = _P32_SHIFTED
    r2 = builder.fmul(r, r)
    q = fma(fma(c(c5), r, c(c4)), r2, fma(c(c3), r, c(c2)))
    p = fma(q, r2, fma(r, c(_ONE_SHIFTED), c(_ONE_SHIFTED)))  # exp(r) 2**-64
    magic_bits = int(np.array(_MAGIC32, dtype=np.float32).view(np.int32))
    offset = ir.Constant(ir.IntType(32), 127 + _BIAS32 - magic_bits)
    if shift is not None:  # 2**(k - K + 64): k - K in [-151, 2] keeps it normal
        offset = builder.sub(offset, shift)
    u = builder.add(builder.bitcast(t, ity), _broadcast(builder, offset, fty.count) if vector else offset)
    return builder.fmul(p, builder.bitcast(builder.shl(u, _splat(ity, 23)), fty))  # p 2**(k + 64)


def _scalef(context):
    """Whether code for ``context`` applies ``2**k`` with AVX-512's ``vscalefps`` (``_emit_scalef``):
    where the JIT's target has AVX-512F (its features key Numba's cache, so code
    compiled with it is loaded on such machines only)."""
    return "+avx512f" in context.codegen().magic_tuple()[2].split(",")


# IR: vscalefps has no @njit spelling. CE exp pass in L1 0.29 -> 0.23 ns an entry on one
# core with the masked sum (78eedb1, Zen 4); softmax 1.03-1.06x.
def _emit_scalef(builder, p, k):
    """IR for ``p 2**k`` on 16 float32 lanes (``k`` holding integers), rounded once: ``vscalefps``.

    What ``_emit_exp32_shifted`` otherwise computes as ``(p 2**-64) 2**(k +
    64)``, the factor built from exponent bits: the same product rounded
    once, so the same bits (a test checks every input), in one instruction
    instead of three. Vectors only: LLVM does not vectorise a loop over the
    scalar instruction, where it does the scalar arithmetic.
    """
    fty = p.type
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(fty, [fty, fty, fty, ir.IntType(16), i32]),
                                        "llvm.x86.avx512.mask.scalef.ps.512")
    rounding = ir.Constant(i32, 4)  # the current rounding mode
    return builder.call(fn, [p, k, _splat(fty, 0.0), ir.Constant(ir.IntType(16), -1), rounding])


@intrinsic
def exp32_shifted(typingctx, d, err):
    """``exp(d + err)`` for ``-104 <= d <= 0`` (a kernel's ``x - m`` and its rounding error).

    See ``_emit_exp32_shifted``.
    """
    if d != types.float32 or err != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return _emit_exp32_shifted(builder, args[0], args[1])

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def exp32_fast(typingctx, d):
    """``exp(d)`` for ``-104 <= d <= 0``, for sums: one-constant reduction, no error term.

    ``r = d - k ln2_f32`` with float32's ``ln2`` (off by 1.9e-9), so the
    result carries a relative error up to ``|k| 1.9e-9`` (3e-7 at ``d =
    -104``) besides the polynomial's: within 5 ulp over the whole range
    (tested on every input). One FMA fewer than :func:`exp32_shifted`.
    The same IR (``_emit_exp32_shifted``) runs 16 lanes at a time in
    ``_exp_sum_head``.
    """
    if d != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return _emit_exp32_shifted(builder, args[0])

    return types.float32(types.float32), codegen


@intrinsic
def exp32_scaled(typingctx, x, shift):
    """``exp(x) 2**-shift`` for ``-104 <= x - shift ln2 <= 1``, ``|x| <= 2**16``: softmax's exponential.

    ``x`` enters the reduction as it is, with no rounded difference and no
    error term: the cheapest of the three and the most accurate.
    """
    if x != types.float32 or not isinstance(shift, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        k = context.cast(builder, args[1], signature.args[1], types.int32)
        return _emit_exp32_shifted(builder, args[0], shift=k)

    return types.float32(x, shift), codegen


@njit(cache=True, fastmath=_EXACT)
def _fast_exp32(x, m):
    """``exp(x - m)`` with ``x - m`` rounded: a relative error up to ``|x - m| 2**-24``.

    That error grows with ``|x - m|``, so it never matters in a sum (its
    share of the sum is below ``2**-24 max_d |d| e^d = 2e-8``), only in an
    entry's own value; the kernels use this where only the sum needs
    relative accuracy. The clamp lets a NaN through (the sum flags the row).
    """
    d = x - m
    return exp32_fast(_F(-104.0) if d < _F(-104.0) else d)


# ---------------------------------------------------------------- exp, float64

_MAGIC64 = 6755399441055744.0  # 1.5 * 2**52
_LOG2E64 = 1.4426950408889634
_LN2_HI64 = 6.93147180369123816490e-01  # fdlibm: 32 significant bits, k * ln2_hi exact
_LN2_LO64 = 1.90821492927058770002e-10
_P64 = tuple(1.0 / float(np.prod(np.arange(1, i + 1), dtype=np.float64)) for i in range(14))
# t = x log2(e) + magic holds k in its low bits: bits(t) - this = k + 2 * 1023
_POW2_OFFSET64 = int(np.array(_MAGIC64).view(np.int64)) - 2 * 1023


@njit(cache=True, fastmath=_EXACT)
def exp64(x):
    """``exp(x)`` for every float64 ``x``, within a few ulp of libm's; vectorisable."""
    if x < -746.0:
        x = -746.0
    if x > 710.0:
        x = 710.0
    t = x * _LOG2E64 + _MAGIC64
    kf = t - _MAGIC64
    r = (x - kf * _LN2_HI64) - kf * _LN2_LO64
    c = _P64
    r2 = r * r
    r4 = r2 * r2
    # Estrin's scheme: shorter dependency chains than Horner's
    a0 = c[1] * r + c[0]
    a1 = c[3] * r + c[2]
    a2 = c[5] * r + c[4]
    a3 = c[7] * r + c[6]
    a4 = c[9] * r + c[8]
    a5 = c[11] * r + c[10]
    a6 = c[13] * r + c[12]
    b0 = a1 * r2 + a0
    b1 = a3 * r2 + a2
    b2 = a5 * r2 + a4
    b3 = a6 * r4 + b2
    p = (b3 * r4 + b1) * r4 + b0
    # p 2**k as two exact factors 2**(k//2) and 2**(k - k//2), built from exponent bits: a
    # result below the normal range is rounded once, one above it overflows to inf
    u = np.float64(t).view(np.int64) - _POW2_OFFSET64
    h = u >> 1
    return p * np.int64(h << 52).view(np.float64) * np.int64((u - h) << 52).view(np.float64)


@njit(cache=True, fastmath=_EXACT)
def _shifted_exp64(x, m):
    """``exp(x - m)``, ``x - m`` rounded as the reference rounds it."""
    return exp64(x - m)


# ---------------------------------------------------------------- log1p, float64

# fdlibm's minimax coefficients of log(1 + f) = 2 atanh(s), s = f / (2 + f)
_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)


@njit(cache=True, fastmath=_EXACT, inline="always")
def _log1p64(r):
    """``log1p(r)`` for finite ``r >= 0``, within 1 ulp (tested against mpmath): musl's
    (fdlibm's) ``log1p``, written without branches so that a loop of them vectorises.

    ``u = 1 + r`` rounded is split as ``2**k (1 + f)``, ``1 + f`` in ``[sqrt(2)/2,
    sqrt(2))``; ``c`` is what the rounding of ``1 + r`` lost, to first order. ``k`` comes
    out as a float64 through the bits of ``2**52 + k'``: AVX2 has no vector conversion
    from int64. A caller's loop vectorises only under NumPy's error model (Numba's own
    checks every division for a zero divisor).
    """
    u = 1.0 + r
    bits = np.float64(u).view(np.int64)
    hu = (bits >> 32) + (0x3FF00000 - 0x3FE6A09E)
    dk = np.int64(0x4330000000000000 + (hu >> 20)).view(np.float64) - (2.0**52 + 1023.0)
    c = (1.0 - (u - r) if dk >= 2.0 else r - (u - 1.0)) / u
    c = c if dk < 54.0 else 0.0
    hu = (hu & 0x000FFFFF) + 0x3FE6A09E
    f = np.int64((hu << 32) | (bits & 0xFFFFFFFF)).view(np.float64) - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    t2 = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
    return s * (hfsq + t2 + t1) + (dk * _LN2_LO64 + c) - hfsq + f + dk * _LN2_HI64


def _broadcast(builder, value, lanes):
    """A vector of ``lanes`` copies of the scalar IR ``value``."""
    vty = ir.VectorType(value.type, lanes)
    one = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _by_dtype(f32, f64):
    """A function of ``(x, m)`` that compiles to ``f32`` for float32 ``x``, else ``f64``."""

    def dispatch(x, m):
        pass

    @overload(dispatch)
    def _impl(x, m):
        if x == types.float32:
            return lambda x, m: f32(x, m)
        return lambda x, m: f64(x, m)

    return dispatch


# exp(x - m) whose every value is accurate (float32: TwoSum), and the one for sums
# (float32: x - m rounded, see _fast_exp32); float64 has one exp for both
_shifted_exp = _by_dtype(_shifted_exp32, _shifted_exp64)
_fast_exp = _by_dtype(_fast_exp32, _shifted_exp64)
