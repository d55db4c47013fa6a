"""Fused one-pass-per-row kernels for the softmax family and cross-entropy (Numba).

This module imports Numba, so it is loaded on first use only (``_jit.py``
decides when); ``import logitlab`` does not load it. Every kernel works on a
C-contiguous ``(n, C)`` float32 or float64 array, row by row, and writes its
result once. Per row:

1. ``m = max_j x_j`` (a vector loop in LLVM IR; the row is read from
   memory here, later passes hit the cache);
2. ``e_j = exp(x_j - m)`` and their sum in one loop. ``log1p`` needs
   ``r``, the sum *without* the maximal term (exactly 1): float32 rows of
   48 entries and more (``_HEAD_FROM``) sum it directly, sixteen lanes at a
   time in an LLVM function of our own (``_exp_sum_head``), leaving out the entries equal
   to ``m`` and counting them instead; shorter rows and float64 rows
   take ``r = S - 1``. On very confident rows that subtraction, or the fast
   exponentials' rounding, could cost ``r`` its relative accuracy, so ``r``
   is summed again there (see ``_row_r``);
3. the output: ``e_j / (1 + r)``, ``(x_j - m) - log1p(r)``, or the
   cross-entropy gradient written over the row.

Softmax and sparse cross-entropy rows shorter than ``_SHORT`` (24) go 64
rows at a time instead (``_softmax_block``, ``_sparse_ce_block``): the same
steps, but the exponentials of the whole block run as one vectorised loop
across rows, where a row of ten entries alone would run them one by one;
the sparse CE in place (its gradient over the logits) below
``_SHORT_IN_PLACE`` classes (float32 48, float64 256). The sparse CE's
``log1p`` runs by blocks of rows too, one vectorised loop (``_row_losses``).

Softmax rows and sparse cross-entropy gradient rows of 768 to 8192 float32
entries, in a result of 4 MiB or more, on more than one thread, go through a
scratch row instead (``_streams``):
step 2 stores the exponentials there, in cache, and step 3 writes the probabilities (or
the gradient, the label's entry in the same store) to the result with
non-temporal stores (``_stream_fill``, ``_stream_grad``), so the result's lines are not
read from memory before they are written, nor kept in the caches in place
of the input. Same arithmetic, same bits.

A row whose maximum is not finite, or that holds a NaN, has a sum that is
not finite (``inf - inf`` or NaN reaches it): its output is left unfinished,
its flag in ``bad`` is set, and the caller gives it the reference's limits.

Exactness. The exponentials are our own (``_kernel_exp.py``), vectorised
by LLVM, and tested against libm on every float32 input they take. float32 rows are computed in
float32 arithmetic. For softmax, whose every output is promised to 2e-6,
the rounding of ``x - m`` would cost too much (up to ``|x - m| 2**-24``);
rows of 96 entries and more whose maximum is below ``2**16`` in magnitude
compute ``exp(x_j - K ln2)`` as ``exp(x_j) 2**-K``, ``K = floor(m log2 e)``
(``exp32_scaled``: the logit itself enters the reduction, nothing to
round), the others split ``x - m`` into its rounded value and its exact
rounding error (TwoSum), which enters the reduced argument; where only the sum needs that
accuracy (log_softmax, logsumexp, the losses), a cheaper exp takes ``x - m``
rounded (``exp32_fast``). Sums are accumulated in float64, or in blocks of
at most 16 float32 terms per lane added in float64, and log-domain outputs
formed in float64, so the results stay within the reference's 2e-6 (the
reference computes float32 in float64). float64 rows follow the
reference's arithmetic; only ``exp`` differs, by an ulp or two. The
floating-point flags (``_SUMS`` for the loops that sum, ``_EXACT`` for the
arithmetic whose order matters) are explained in ``_kernel_exp.py``.

docs/kernels.md has the design, what each test proves, and how to measure a
change; docs/performance.md has the figures.
"""

from __future__ import annotations

import math
import platform
import types as types_module

from . import _kernel_cache

_kernel_cache.register()  # before the first cached function below

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import carray, njit, prange, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

from ._kernel_exp import (_EXACT, _SUMS, _broadcast, _emit_exp32_shifted, _fast_exp,  # noqa: E402
                          _fast_exp32, _log1p64, _scalef, _shifted_exp, _splat, exp32_fast,
                          exp32_scaled)

# ---------------------------------------------------------------- row passes


def _like(a, v):
    """``v`` cast to the dtype of the array ``a``."""


@overload(_like)
def _like_impl(a, v):
    dt = a.dtype
    return lambda a, v: dt(v)


# IR, not @njit: the plain loop (``m = v if v > m else m``) is not vectorised by LLVM;
# measured 0.37 (plain) -> 0.065 ns an entry, a7eab19, Zen 1.
@intrinsic
def _max_head(typingctx, arr):
    """Max of a contiguous row's first ``n - n % (64 // itemsize)`` entries (-inf if none).

    Written as vector IR (two 256-bit accumulators, ``x > acc ? x : acc``,
    which x86's ``maxps`` computes exactly): LLVM does not vectorise a
    floating-point max reduction from Numba's loops. A NaN is passed over
    here; the sum that follows catches it.
    """
    dt = arr.dtype
    lanes = 8 if dt == types.float32 else 4

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        n = builder.extract_value(ary.shape, 0)
        intp = n.type
        fty = context.get_value_type(dt)
        vty = ir.VectorType(fty, lanes)
        ninf = _splat(vty, float("-inf"))
        accs = [cgutils.alloca_once_value(builder, ninf) for _ in range(2)]
        blocks = builder.sdiv(n, ir.Constant(intp, 2 * lanes))
        with cgutils.for_range(builder, blocks) as loop:
            base = builder.mul(loop.index, ir.Constant(intp, 2 * lanes))
            for k, acc in enumerate(accs):
                at = builder.gep(ary.data, [builder.add(base, ir.Constant(intp, k * lanes))])
                v = builder.load(builder.bitcast(at, vty.as_pointer()), align=dt.bitwidth // 8)
                cur = builder.load(acc)
                builder.store(builder.select(builder.fcmp_ordered(">", v, cur), v, cur), acc)
        a, b = (builder.load(acc) for acc in accs)
        v = builder.select(builder.fcmp_ordered(">", a, b), a, b)
        width = lanes
        while width > 1:  # halve the vector log2(lanes) times: a short chain
            width //= 2
            upper = builder.shuffle_vector(
                v, ir.Constant(vty, ir.Undefined),
                ir.Constant(ir.VectorType(ir.IntType(32), lanes), [(width + k) % lanes for k in range(lanes)]))
            v = builder.select(builder.fcmp_ordered(">", upper, v), upper, v)
        return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))

    return dt(arr), codegen


@njit(cache=True, inline="always")
def _row_max(x):
    n = x.shape[0]
    step = 64 // x.itemsize  # what _max_head covers
    m = _max_head(x) if n >= step else _like(x, -np.inf)  # short rows: no vector set-up
    for j in range(n - n % step, n):
        v = x[j]
        m = v if v > m else m
    return m


# IR, not @njit: Numba has no prefetch. Prefetching the next row: CE and softmax kernels
# 13-24 % faster at C >= 512 out of cache, 13b78f4, Zen 1; for writing, 5177d09, Zen 4.
def _emit_prefetch(builder, pointer, write=False):
    """IR prefetching the cache line at ``pointer`` (for reading, into every cache level)."""
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                        "llvm.prefetch.p0i8")
    builder.call(fn, [builder.bitcast(pointer, i8p), ir.Constant(i32, int(write)), ir.Constant(i32, 3),
                      ir.Constant(i32, 1)])


# IR, not @njit: row pointers and _data instead of row views, which cost two atomic
# reference counts a call: softmax 13-22 % faster at C=10 and C=100, CE at C=10 7-19 %
# (ffca95a, Zen 1).
def _emit_row_pointer(builder, ary, i):
    """IR for a pointer to row ``i`` of the 2-d array ``ary`` (no view: a view costs two atomic counts)."""
    stride = builder.extract_value(ary.strides, 0)
    at = builder.gep(builder.bitcast(ary.data, ir.IntType(8).as_pointer()), [builder.mul(i, stride)])
    return builder.bitcast(at, ary.data.type)


@intrinsic
def _row_at(typingctx, arr, i):
    """A pointer to row ``i`` of a 2-d array."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return _emit_row_pointer(builder, ary, args[1])

    return types.CPointer(arr.dtype)(arr, i), codegen


@intrinsic
def _next_row(typingctx, arr, i):
    """A pointer to row ``min(i + 1, n - 1)`` of a 2-d array."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        rows = builder.extract_value(ary.shape, 0)
        i = args[1]
        nxt = builder.add(i, ir.Constant(i.type, 1))
        nxt = builder.select(builder.icmp_signed("<", nxt, rows), nxt, builder.sub(rows, ir.Constant(i.type, 1)))
        return _emit_row_pointer(builder, ary, nxt)

    return types.CPointer(arr.dtype)(arr, i), codegen


@intrinsic
def _prefetch_block(typingctx, row, start):
    """Prefetch ``row[start:start + _BLOCK]`` (``row`` a pointer), a line at a time (``_exp_sum``'s blocks)."""

    def codegen(context, builder, signature, args):
        base = builder.bitcast(builder.gep(args[0], [args[1]]), ir.IntType(8).as_pointer())
        for k in range(0, _BLOCK * row.dtype.bitwidth // 8, 64):
            _emit_prefetch(builder, builder.gep(base, [ir.Constant(ir.IntType(64), k)]))
        return context.get_dummy_value()

    return types.none(row, start), codegen


# float32 rows shorter than this are summed by _exp_sum. From 256 it was 2.6-3.4x slower in
# place at 100-255 classes (LLVM's overlap check runs _exp_sum's loop scalar there) and
# 1.0-1.2x out of place; at 32, 0.85-0.95x out of place (compare_kernels.py, 2-core Zen 2)
_HEAD_FROM = 48
_HEAD_LANES = 16  # float32 lanes of _exp_sum_head (AVX2 runs them as two 8-lane halves)
# the cross-entropy in place (training's, the linear objective's) by blocks of rows below
# this (float32: where the 16-lane head begins), where the row path's exp loop runs scalar.
# Blocks against the row path (compare_kernels.py): 1.6-2.0x at 16-31 classes, one thread;
# float64 1.34-1.54x one thread, 1.35-1.46x two at 32-256 (rows of 256 float64 are 2 KiB,
# shorter than the streamed path takes)
_SHORT_IN_PLACE = {"float32": _HEAD_FROM, "float64": 256}
# softmax's float32 rows from this many entries take exp32_scaled's 16-lane loop (the
# scalar tail costs more below it). Against 256 (compare_kernels.py, 2-core Zen 2): 0.91-0.92x
# at 48 classes, 0.96-0.98x at 64-80, 0.99-1.03x at 96, 1.00-1.07x at 100-255
_SOFTMAX_HEAD_FROM = 96
_HEAD_BLOCK = 8  # terms each lane sums in float32 before adding its block to the float64 total


def _emit_lane_total(builder, vec):
    """IR for the sum of a vector's lanes, in lane order."""
    total = builder.extract_element(vec, ir.Constant(ir.IntType(32), 0))
    add = builder.fadd if isinstance(vec.type.element, (ir.FloatType, ir.DoubleType)) else builder.add
    for k in range(1, vec.type.count):
        total = add(total, builder.extract_element(vec, ir.Constant(ir.IntType(32), k)))
    return total


def _emit_block_sums(builder, nvec, one_vector):
    """IR for ``sum`` over vectors ``0 .. nvec - 1`` of ``one_vector(v, acc) -> acc + terms``, a double.

    In blocks of ``_HEAD_BLOCK`` vectors (unrolled), then the remaining
    vectors one at a time: each lane adds at most ``_HEAD_BLOCK`` terms in
    float32 before its block goes into a float64 total.
    """
    intp = nvec.type
    fvec = ir.VectorType(ir.FloatType(), _HEAD_LANES)
    dvec = ir.VectorType(ir.DoubleType(), _HEAD_LANES)
    zero = _splat(fvec, 0.0)
    total = cgutils.alloca_once_value(builder, _splat(dvec, 0.0))

    def flush(acc):
        builder.store(builder.fadd(builder.load(total), builder.fpext(acc, dvec)), total)

    blocks = builder.sdiv(nvec, ir.Constant(intp, _HEAD_BLOCK))
    with cgutils.for_range(builder, blocks) as loop:
        base = builder.mul(loop.index, ir.Constant(intp, _HEAD_BLOCK))
        acc = zero
        for k in range(_HEAD_BLOCK):
            acc = one_vector(builder.add(base, ir.Constant(intp, k)), acc)
        flush(acc)
    done = builder.mul(blocks, ir.Constant(intp, _HEAD_BLOCK))
    rest = cgutils.alloca_once_value(builder, zero)
    with cgutils.for_range(builder, builder.sub(nvec, done)) as loop:
        builder.store(one_vector(builder.add(done, loop.index), builder.load(rest)), rest)
    flush(builder.load(rest))
    return _emit_lane_total(builder, builder.load(total))


def _row_function(module, name, intp, scalars):
    """``(fn, builder)``: a new internal, never inlined LLVM function ``double name(float* x, float* out,
    intp n, *scalars, float* nxt, float* nxt_out)`` and a builder at its entry; ``(fn, None)`` if the
    module has it already."""
    if name in module.globals:
        return module.globals[name], None
    fptr = ir.FloatType().as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.DoubleType(), [fptr, fptr, intp, *scalars, fptr, fptr]), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _emit_row_call(context, builder, signature, args, x_at, out_at, make, rest):
    """IR calling ``make(module, intp)`` (a ``_row_function``) on the rows ``args[x_at]`` and
    ``args[out_at]``: their data pointers, ``x``'s length, then ``rest`` in order."""
    xa = context.make_array(signature.args[x_at])(context, builder, args[x_at])
    oa = context.make_array(signature.args[out_at])(context, builder, args[out_at])
    n = builder.extract_value(xa.shape, 0)
    return builder.call(make(builder.module, n.type), [xa.data, oa.data, n, *rest])


# IR, not @njit: measured against a plain @njit loop of _fast_exp32 (issue 24, Zen 2 AVX2,
# compare_kernels.py, one thread, three runs): masked float32 sums of 64 terms added in
# float64, an in-place loop through one pointer, _prefetch_block for reading and writing:
# sparse CE kernel 0.88-0.90x at 1000 classes, in place too; terms added in float64 one by
# one: 0.54x, in place 0.15-0.21x (LLVM's overlap check ran the loop scalar). Earlier: 16
# lanes, masked sum, prefetch for writing 1.13-1.19x (5177d09), vscalefps 0.29 -> 0.23 ns
# an entry (78eedb1), both Zen 4.
def _head_function(module, intp, store, scalef):
    """The LLVM function behind ``_exp_sum_head``: ``double(float* x, float* out, n, float m, double ties, float* nxt,
    float* nxt_out)``.

    A function of its own, never inlined: inside a kernel's driver the loop
    competes for registers with the driver's values, and LLVM reloads its
    ten constants on every vector (a third more instructions). Raw pointers,
    so the call counts no references. With each vector of ``x`` (a cache
    line) it prefetches the same place of ``nxt`` (the next row), so that
    the next row's first pass, which would wait on memory with the
    arithmetic units idle, reads from cache: the row's arithmetic and the
    next row's memory traffic overlap. With ``store`` it also prefetches
    ``nxt_out`` for writing (the next row of the output), whose lines would
    otherwise be read from memory when first stored to, with the store
    queue full. With ``scalef`` (AVX-512) ``2**k`` is one ``vscalefps``.
    The maximal entries are left out of the sum by a masked add, and the
    entries summed counted from the mask's bits (``popcnt``, on the integer
    units): the loop was bound by the floating-point pipes, which this and
    ``vscalefps`` relieve of six instructions a vector of sixteen (20 to 14;
    Zen 4). Without AVX-512 each lane counts its own (``vpsubd``), summed once:
    the 16 mask bits cost six shuffles a vector (sparse CE 1.03-1.05x, Zen 2).
    """
    fn, builder = _row_function(module, f"logitlab_exp_sum_head_{'store' if store else 'sum'}",
                                intp, [ir.FloatType(), ir.DoubleType()])
    if builder is None:
        return fn
    x, out, n, m, ties_before, nxt, nxt_out = fn.args
    lanes = _HEAD_LANES
    fvec = ir.VectorType(ir.FloatType(), lanes)
    msplat = _broadcast(builder, m, lanes)
    floor = _splat(fvec, -104.0)
    nvec = builder.sdiv(n, ir.Constant(intp, lanes))
    i16, ivec = ir.IntType(lanes), ir.VectorType(ir.IntType(32), lanes)
    if scalef:
        ctpop = cgutils.get_or_insert_function(module, ir.FunctionType(i16, [i16]),
                                               f"llvm.ctpop.i{lanes}")
    summed = cgutils.alloca_once_value(builder, ir.Constant(intp, 0))
    counts = cgutils.alloca_once_value(builder, _splat(ivec, 0))

    def one_vector(v, acc):
        at = builder.mul(v, ir.Constant(intp, lanes))
        _emit_prefetch(builder, builder.gep(nxt, [at]))
        if store:
            _emit_prefetch(builder, builder.gep(nxt_out, [at]), write=True)
        xv = builder.load(builder.bitcast(builder.gep(x, [at]), fvec.as_pointer()), align=4)
        d = builder.fsub(xv, msplat)
        e = _emit_exp32_shifted(builder, builder.select(builder.fcmp_ordered("<", d, floor), floor, d),
                                scalef=scalef)
        if store:
            builder.store(e, builder.bitcast(builder.gep(out, [at]), fvec.as_pointer()), align=4)
        # a maximal entry is not summed (a masked add) but counted, from the mask's bits
        # (AVX-512) or lane by lane (AVX2); a NaN entry reaches the sum
        below = builder.fcmp_unordered("!=", xv, msplat)
        if scalef:
            bits = builder.zext(builder.call(ctpop, [builder.bitcast(below, i16)]), intp)
            builder.store(builder.add(builder.load(summed), bits), summed)
        else:
            builder.store(builder.sub(builder.load(counts), builder.sext(below, ivec)), counts)
        return builder.fadd(acc, builder.select(below, e, _splat(fvec, 0.0)))  # acc is never -0

    s = _emit_block_sums(builder, nvec, one_vector)
    if not scalef:
        builder.store(builder.zext(_emit_lane_total(builder, builder.load(counts)), intp), summed)
    count = builder.sub(builder.mul(nvec, ir.Constant(intp, lanes)), builder.load(summed))
    # the ties enter once, as an exact integer: with one maximal entry r is the sum alone
    builder.ret(builder.fadd(s, builder.fadd(builder.sitofp(count, ir.DoubleType()), ties_before)))
    return fn


def _exp_sum_head_intrinsic(store):
    """An intrinsic ``(x, m, out, ties, nxt, nxt_out) -> r`` over the first ``n - n % 16`` entries of a float32 row.

    ``r = sum_{x_j != m} exp32_fast(max(x_j - m, -104)) + (ties + t)``,
    ``t`` the entries equal to ``m`` (whose terms are exactly 1): with
    ``ties = -1 + `` the maximal entries elsewhere in the row, ``r`` is the
    sum without the first maximal term, and the 1 never enters a sum, so
    ``r`` keeps its relative accuracy however small it is, which ``S - 1``
    would not. ``_HEAD_LANES`` (16) lanes at a time (``_emit_exp32_shifted``,
    so each lane computes what the scalar ``exp32_fast`` computes). Each
    lane adds at most ``_HEAD_BLOCK = 8`` terms in float32 (a relative
    error below ``7 2**-24 = 4.2e-7``) before the block goes into a float64
    total. With ``store``, ``out_j = exp(x_j - m)`` for every ``j`` (``out``
    may be ``x``: each vector is read before it is written). A NaN entry
    reaches the sum. ``nxt`` (a pointer to as many entries as ``x`` has,
    from ``_next_row``) is prefetched, and with ``store`` ``nxt_out`` for
    writing.
    """

    @intrinsic
    def head(typingctx, x, m, out, ties, nxt, nxt_out):
        if x.dtype != types.float32:
            return None

        def codegen(context, builder, signature, args):
            return _emit_row_call(context, builder, signature, args, 0, 2,
                                  lambda module, intp: _head_function(module, intp, store,
                                                                      _scalef(context)),
                                  [args[1], args[3], args[4], args[5]])

        return types.float64(x, m, out, types.float64, nxt, nxt_out), codegen

    return head


_exp_sum_head_store = _exp_sum_head_intrinsic(True)
_exp_sum_head = _exp_sum_head_intrinsic(False)


# IR, not @njit: exp32_scaled's 16 lanes in a function of their own, prefetching the next
# rows. Against a plain @njit loop calling the same exp (an _EXACT wrapper of exp32_scaled,
# float32 sums of 64 terms added in float64, _prefetch_block for reading and writing;
# issue 24, Zen 2 AVX2, compare_kernels.py, one thread, three runs): softmax kernel
# 0.85-0.88x at 1000 classes. Earlier, against the TwoSum loop: 1.09-1.19x (85e85a9, Zen 4).
def _softmax_function(context, module, intp):
    """The LLVM function behind ``_exp_scaled_sum``: ``double(float* x, float* out, n, float floor, i32 shift,
    float* nxt, float* nxt_out)``.

    ``out_j = exp32_scaled(max(x_j, floor), shift)`` for every ``j < n``,
    and their sum: ``_HEAD_LANES`` lanes at a time in blocks
    (``_emit_block_sums``), the last ``n % 16`` one at a time (the same
    IR on scalars). Prefetches as ``_head_function`` does. A NaN entry
    passes the clamp and reaches the sum.
    """
    fn, builder = _row_function(module, "logitlab_softmax_exps", intp, [ir.FloatType(), ir.IntType(32)])
    scalef = _scalef(context)
    if builder is None:
        return fn
    x, out, n, floor, shift, nxt, nxt_out = fn.args
    lanes = _HEAD_LANES
    fvec = ir.VectorType(ir.FloatType(), lanes)
    vfloor = _broadcast(builder, floor, lanes)

    def exp_at(at, ty, bound):
        xv = builder.load(builder.bitcast(builder.gep(x, [at]), ty.as_pointer()), align=4)
        e = _emit_exp32_shifted(builder, builder.select(builder.fcmp_ordered("<", xv, bound), bound, xv),
                                shift=shift, scalef=scalef and ty is fvec)
        builder.store(e, builder.bitcast(builder.gep(out, [at]), ty.as_pointer()), align=4)
        return e

    def one_vector(v, acc):
        at = builder.mul(v, ir.Constant(intp, lanes))
        _emit_prefetch(builder, builder.gep(nxt, [at]))
        _emit_prefetch(builder, builder.gep(nxt_out, [at]), write=True)
        return builder.fadd(acc, exp_at(at, fvec, vfloor))

    nvec = builder.sdiv(n, ir.Constant(intp, lanes))
    total = _emit_block_sums(builder, nvec, one_vector)
    tail = cgutils.alloca_once_value(builder, ir.Constant(ir.FloatType(), 0.0))
    done = builder.mul(nvec, ir.Constant(intp, lanes))
    # the last n % 16 as one-lane vectors: Numba's fastmath pass gives every call that returns a
    # scalar float (llvm.fma.f32 here) the driver's reassoc; with it, on a target without FMA
    # (generic x86-64), these exps were 2e-4 off at |x| = 1e4 (test_kernel_targets.py)
    one = ir.VectorType(ir.FloatType(), 1)
    with cgutils.for_range(builder, builder.sub(n, done)) as loop:
        e = exp_at(builder.add(done, loop.index), one, _broadcast(builder, floor, 1))
        builder.store(builder.fadd(builder.load(tail), builder.extract_element(e, ir.Constant(ir.IntType(32), 0))),
                      tail)
    builder.ret(builder.fadd(total, builder.fpext(builder.load(tail), ir.DoubleType())))
    return fn


@intrinsic
def _exp_scaled_sum(typingctx, x, out, floor, shift, nxt, nxt_out):
    """``sum_j out_j``, ``out_j = exp32_scaled(max(x_j, floor), shift)``, for a float32 row (see ``_softmax_exps``)."""
    if x.dtype != types.float32:
        return None

    def codegen(context, builder, signature, args):
        k = context.cast(builder, args[3], signature.args[3], types.int32)
        return _emit_row_call(context, builder, signature, args, 0, 1,
                              lambda module, intp: _softmax_function(context, module, intp),
                              [args[2], k, args[4], args[5]])

    return types.float64(x, out, types.float32, shift, nxt, nxt_out), codegen


_BLOCK = 128


@intrinsic
def _data(typingctx, arr):
    """An array's data pointer: what a call passes instead of a row view.

    A view passed to a function that is not inlined costs two atomic
    reference counts; a pointer costs none (measured: 1aa1869, Zen 1).
    """

    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return types.CPointer(arr.dtype)(arr), codegen


# ---------------------------------------------------------------- streaming stores

# Softmax rows of 3 KiB to 32 KiB (float32: 768 to 8192 classes) are computed in a
# scratch row that stays in the first-level cache and written out once, with
# non-temporal stores, when the whole result is at least 4 MiB (beyond the
# second-level caches, where a reader would fetch it from farther away anyway).
# Rows of 512 classes lose (partial lines at both ends of each row), rows of
# 16384 gain nothing (the scratch row leaves L1); on one thread streaming costs,
# so only the parallel driver streams (its ``threaded`` flag). The sparse
# cross-entropy streams the same way on two threads (``_sparse_ce_streamed``).
# log_softmax and the categorical cross-entropy keep the cached path.
# IR, not @njit: Numba has no non-temporal store. Against the cached path's plain @njit
# scaling (_scale_fill), at 1000 classes: softmax kernel 1.1-1.26x (6dbb0ea, 611854d), sparse
# CE 0.186-0.199 against 0.201-0.239 ns an element on two threads (78eedb1), both Zen 4.
_STREAM_ROW_BYTES = (3072, 32768)
_STREAM_MIN_BYTES = 4 << 20
_STREAM_PARTS = 16  # parts of the rows, each with its scratch row, when streaming
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")  # measured there only


def _emit_stream_fill(builder, s, d, n, f, label=None):
    """IR for ``d[j] = s[j] * f``, ``j < n`` (pointers), with non-temporal stores (see
    ``_stream_fill``); with ``label = (y, a)``, ``d[y] = s[y] * f - a`` (two roundings)."""
    intp = n.type
    fty = s.type.pointee
    width = 4 if isinstance(fty, ir.FloatType) else 8
    lanes = 64 // width
    vty = ir.VectorType(fty, lanes)

    def scalar_fill(start, count):
        with cgutils.for_range(builder, count) as loop:
            j = builder.add(start, loop.index)
            v = builder.fmul(builder.load(builder.gep(s, [j])), f)
            if label is not None:
                v = builder.select(builder.icmp_signed("==", j, label[0]), builder.fsub(v, label[1]), v)
            builder.store(v, builder.gep(d, [j]))

    address = builder.ptrtoint(d, intp)  # entries to the next 64-byte boundary
    head = builder.and_(builder.udiv(builder.sub(ir.Constant(intp, 0), address), ir.Constant(intp, width)),
                        ir.Constant(intp, lanes - 1))
    head = builder.select(builder.icmp_signed("<", head, n), head, n)
    scalar_fill(ir.Constant(intp, 0), head)
    vectors = builder.sdiv(builder.sub(n, head), ir.Constant(intp, lanes))
    hint = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
    fs = _broadcast(builder, f, lanes)
    if label is not None:  # the vector holding y (if one does), and a in y's lane
        y, a = label
        i32 = ir.IntType(32)
        past = builder.sub(y, head)
        lane = builder.trunc(builder.and_(past, ir.Constant(intp, lanes - 1)), i32)
        hit = builder.sub(y, builder.zext(lane, intp))  # where that vector starts
        minus_a = builder.insert_element(_splat(vty, 0.0), a, lane)
    with cgutils.for_range(builder, vectors) as loop:
        j = builder.add(head, builder.mul(loop.index, ir.Constant(intp, lanes)))
        v = builder.fmul(builder.load(builder.bitcast(builder.gep(s, [j]), vty.as_pointer()), align=width), fs)
        if label is not None:  # a branch taken once: the other lanes less 0 would cost every vector
            here = builder.icmp_signed("==", j, hit)
            before = builder.block
            with builder.if_then(here, likely=False):
                fixed = builder.fsub(v, minus_a)
                fixed_in = builder.block
            phi = builder.phi(vty)
            phi.add_incoming(v, before)
            phi.add_incoming(fixed, fixed_in)
            v = phi
        store = builder.store(v, builder.bitcast(builder.gep(d, [j]), vty.as_pointer()), align=64)
        store.set_metadata("nontemporal", hint)
    done = builder.add(head, builder.mul(vectors, ir.Constant(intp, lanes)))
    scalar_fill(done, builder.sub(n, done))


@intrinsic
def _stream_fill(typingctx, src, dst, n, f):
    """``dst[j] = src[j] * f`` for ``j < n`` (pointers), with non-temporal stores.

    The lines of ``dst`` go to memory without being read first (a store to
    a line that is not cached reads it from memory, read for ownership: a
    third of the kernel's traffic) and without evicting the input from the
    caches. The row's head is written one entry at a time up to a 64-byte
    boundary of ``dst``, the middle 64 bytes at a time (``!nontemporal``
    vector stores need that alignment), the tail one at a time. Each value
    is ``fl(src_j f)``, as ``_scale_fill`` computes it: the same bits as the
    cached path. Call ``_sfence`` before the result is read elsewhere.
    """
    if src != dst:
        return None

    def codegen(context, builder, signature, args):
        _emit_stream_fill(builder, *args)
        return context.get_dummy_value()

    return types.none(src, dst, n, f), codegen


@intrinsic
def _stream_grad(typingctx, src, dst, n, f, y, a):
    """``_stream_fill`` with the label's correction: ``dst[y] = fl(fl(src_y f) - a)``, as the
    cached path's ``g[y] -= a`` after ``_scale_fill`` computes it, in the same store."""
    if src != dst:
        return None

    def codegen(context, builder, signature, args):
        s, d, n, f, y, a = args
        _emit_stream_fill(builder, s, d, n, f, (context.cast(builder, y, signature.args[4], signature.args[2]), a))
        return context.get_dummy_value()

    return types.none(src, dst, n, f, y, f), codegen


@intrinsic
def _sfence(typingctx):
    """A store fence: the non-temporal stores before it reach every core before what follows."""

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse.sfence")
            builder.call(fn, [])
        else:  # never reached (``_streams``), but compiled: a full fence elsewhere
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@njit(cache=True, inline="always")
def _streams(out):
    """Whether a threaded driver streams ``out`` (see ``_STREAM_ROW_BYTES``)."""
    row = out.shape[1] * out.itemsize
    return (_X86 and _STREAM_ROW_BYTES[0] <= row <= _STREAM_ROW_BYTES[1]
            and out.shape[0] * row >= _STREAM_MIN_BYTES)


@njit(cache=True, inline="always")
def _exp_sum(x, m, out, store, exact, nxt):
    """``sum_j exp(x_j - m)`` for a row: ``_exp_sum_at`` on its data (one compiled copy for every
    kernel, so serial and parallel kernels add in the same order)."""
    return _exp_sum_at(_data(x), x.shape[0], m, _data(out), store, exact, nxt)


@njit(cache=True, fastmath=_SUMS)
def _exp_sum_at(x, n, m, out, store, exact, nxt):
    """``sum_j exp(x_j - m)``, ``j < n``, in float64; with ``store``, ``out_j = exp(x_j - m)``.

    ``exact`` (a literal) picks the exp whose every value is accurate
    (``_shifted_exp``, for softmax's outputs), else the one that is
    accurate in a sum (``_fast_exp``; float64 rows and float32 rows shorter
    than ``_HEAD_FROM``). The fast terms are added in float64 (LLVM
    vectorises it, 4 lanes), so that ``S - 1`` keeps ``r``'s relative
    accuracy down to very confident rows. The exact ones, whose sum only
    needs to be accurate relative to itself, run in blocks of 128 terms in
    the row's dtype (8 float32 lanes of 16 terms: relative error below
    1e-6) added in float64, which is cheaper than a float64 sum. (Blocks
    by index: slicing and reshaping the row cost more.) ``x``, ``out`` and
    ``nxt`` are pointers (see ``_data``).
    """
    if not exact:
        s = 0.0
        for j in range(n):
            e = _fast_exp(x[j], m)
            if store:
                out[j] = e
            s += np.float64(e)
        return s
    k = n - n % _BLOCK
    s = 0.0
    for b in range(0, k, _BLOCK):
        _prefetch_block(nxt, b)  # the next row's memory traffic overlaps this row's arithmetic
        acc = _like(x, 0.0)
        for j in range(b, b + _BLOCK):
            e = _shifted_exp(x[j], m)
            if store:
                out[j] = e
            acc += e
        s += np.float64(acc)
    acc = _like(x, 0.0)
    for j in range(k, n):
        e = _shifted_exp(x[j], m)
        if store:
            out[j] = e
        acc += e
    return s + np.float64(acc)


@njit(cache=True, fastmath=_EXACT, inline="always")  # a call would count references to x, out
def _fast_r32(x, m, out, store, nxt, nxt_out):
    """``r = sum_{j != j*} exp(x_j - m)`` for a float32 row, ``j*`` its first maximal entry.

    Fast exponentials (``exp32_fast``) summed by ``_exp_sum_head`` and a
    scalar tail; with ``store``, ``out_j = exp(x_j - m)`` for every ``j``.
    NaN when ``m`` is not finite (the row is flagged).
    """
    n = x.shape[0]
    if n < _HEAD_FROM:  # short rows: the set-up costs more than the lanes save
        return _exp_sum(x, m, out, store, False, nxt) - 1.0
    if not _finite(m):
        return np.nan
    ties = -1.0  # the maximal entries, but one, count 1 each
    tail = 0.0
    for j in range(n - n % _HEAD_LANES, n):  # what _exp_sum_head leaves
        v = x[j]  # before out[j] (which may be x[j]) is written
        e = _fast_exp32(v, m)
        if store:
            out[j] = e
        if v == m:
            ties += 1.0
        else:
            tail += np.float64(e)
    if store:
        head = _exp_sum_head_store(x, m, out, ties, nxt, nxt_out)
    else:
        head = _exp_sum_head(x, m, out, ties, nxt, nxt_out)
    s = head + tail
    return s


def _fast_r(x, m, out, store, nxt, nxt_out):
    """``r = S - 1``, the sum of fast exponentials without the maximal term."""


@overload(_fast_r, inline="always")
def _fast_r_impl(x, m, out, store, nxt, nxt_out):
    if x.dtype == types.float32:
        return lambda x, m, out, store, nxt, nxt_out: _fast_r32(x, m, out, store, nxt, nxt_out)
    return lambda x, m, out, store, nxt, nxt_out: _exp_sum(x, m, out, store, False, nxt) - 1.0


@njit(cache=True, fastmath=_SUMS)
def _exp_sum_below_max(x, m):
    """``sum_{x_j < m} exp(x_j - m) + (ties - 1)``: ``r`` without the maximal term, every term exact."""
    acc = 0.0
    ties = 0.0
    for j in range(x.shape[0]):
        below = x[j] < m
        e = _shifted_exp(x[j], m)
        acc += np.float64(e) if below else 0.0
        ties += 0.0 if below else 1.0
    return acc + (ties - 1.0)


@njit(cache=True, inline="always")
def _octaves_below_one(e):
    """``127 - biased exponent of e``, as float32: for ``0 <= e < 1``, ``|ln e| <= that * ln 2``."""
    return np.float32(127 - (np.float32(e).view(np.int32) >> 23))


def _log_weight(e):
    """An upper bound on ``e |ln e|`` over ``ln 2`` for ``0 <= e < 1`` (float32); 0 for float64."""


@overload(_log_weight)
def _log_weight_impl(e):
    if e == types.float32:
        return lambda e: e * _octaves_below_one(e)
    return lambda e: 0.0


@njit(cache=True, fastmath=_SUMS)
def _sum_below_max(x, m, e, stored):
    """``(r, w)``: ``r = sum_{x_j < m} e_j + (ties - 1)`` without the maximal term, ``w`` its weight.

    From the stored ``e_j = exp(x_j - m)`` if ``stored`` (a literal; ``x``
    is not read, and the maximal entries are those equal to 1; an entry
    within 2**-25 of the maximum also rounds to 1 and counts as a tie, an
    error of 3e-8 on an ``r`` of about 1), else from fast exponentials
    recomputed from ``x``. ``w >= sum_j e_j |x_j - m|`` (from the exponent
    bits of float32 ``e_j``; 0 for float64, whose rounding is the
    reference's) bounds the fast exponentials' error: ``r`` is off by at
    most ``w 2**-24`` from the rounding of ``x - m``.
    """
    n = e.shape[0] if stored else x.shape[0]
    acc = 0.0
    ties = 0.0
    w = 0.0
    for j in range(n):
        v = e[j] if stored else _fast_exp(x[j], m)
        below = v < 1.0 if stored else x[j] < m
        acc += np.float64(v) if below else 0.0
        ties += 0.0 if below else 1.0
        w += np.float64(_log_weight(v)) if below else 0.0
    return acc + (ties - 1.0), w * 0.6931471805599453


def _in_place_below(x):
    """Rows shorter than this go by blocks of rows when the gradient is written over ``x``."""


@overload(_in_place_below)
def _in_place_below_impl(x):
    below = _SHORT_IN_PLACE[str(x.dtype)]
    return lambda x: below


def _recount_below(x):
    """Below which ``r = S - 1`` is summed again without the maximal term (see ``_row_r``)."""


@overload(_recount_below)
def _recount_below_impl(x):
    if x.dtype == types.float32:
        return lambda x: _CONFIDENT * x.shape[0]
    return lambda x: 1.0


@njit(cache=True)
def _finite(v):
    return v - v == 0.0  # False for inf and NaN


# float32: r from fast exponentials is off by up to w 2**-24 (see _sum_below_max; S is not:
# the rounding's share of S is below 2e-8). With D = 15, w <= D r + C D e**-D, at most
# 16 r (an error of 9.5e-7 r) unless r < 15 C e**-15. Only rows below that, very
# confident ones, are summed again without the maximal term, and a third time from exact
# exponentials if their w is above 8 r (4.8e-7 r). Above it, r keeps its relative
# accuracy: S - 1 summed in float64 is off by C 2e-16, and the eight-lane sum of long
# rows by 7 2**-24 r = 4.2e-7 r; with the exponentials' 5 ulp (3e-7), at most 1.7e-6 r.
_CONFIDENT = 15.0 * math.exp(-15.0)
_REFINE = 8.0


@njit(cache=True, inline="always")  # a call would count references to its arrays
def _row_r(x, m, out, store, refine, nxt, nxt_out):
    """``r = sum_{j != j*} exp(x_j - m)`` in float64 (NaN for a row holding a NaN).

    ``r`` from fast exponentials (``_fast_r``: without the maximal term for
    long float32 rows, ``S - 1`` in float64 otherwise). ``log1p(r)`` needs
    ``r`` to its own relative accuracy, so below ``_recount_below``
    (float32: ``15 C e**-15``; float64, whose terms are rounded as in the
    reference: 1) ``r`` is summed again without the maximal term: from the
    stored exponentials with ``store``, by recomputing them otherwise; and,
    with ``refine``, a third time from exact exponentials if the fast ones'
    error could exceed ``4.8e-7 r`` (``refine`` is off when ``out`` is
    ``x``: the row is gone).
    """
    r = _fast_r(x, m, out, store, nxt, nxt_out)
    if r < _recount_below(x):
        r, w = _sum_below_max(x, m, out, True) if store else _sum_below_max(x, m, x, False)
        if refine and w > _REFINE * r:
            r = _exp_sum_below_max(x, m)
    return r


@njit(cache=True, inline="always")
def _log_softmax_fill(x, m, lse, out):
    _log_softmax_fill_at(_data(x), x.shape[0], m, lse, _data(out))


@njit(cache=True, fastmath=_EXACT)  # not inlined: the drivers' reassoc would reorder it
def _log_softmax_fill_at(x, n, m, lse, out):
    m64 = np.float64(m)
    for j in range(n):
        out[j] = (np.float64(x[j]) - m64) - lse  # in this order: exact for the winner


def _scratch_in_place(x):
    """Whether the row path computes a row's exponentials in a scratch row when the gradient
    goes over ``x``: float64's. Into ``x`` itself LLVM's overlap check runs
    ``_exp_sum_at``'s loop as its scalar version, which adds in another order than the
    vectorised one the streamed driver's scratch row gets: the same rows gave other last
    bits on one thread than on two. (float32's long rows sum in ``_exp_sum_head``'s own
    lanes, the same on every path.)"""


@overload(_scratch_in_place)
def _scratch_in_place_impl(x):
    scratch = x.dtype == types.float64
    return lambda x: scratch


@njit(cache=True, fastmath=_EXACT)
def _scaled_copy(src, dst, f):
    """``dst_j = src_j f``: the streamed driver's values (``_stream_grad``), cached stores."""
    for j in range(src.shape[0]):
        dst[j] = src[j] * f


@njit(cache=True, inline="always")
def _scale_fill(out, f):
    _scale_fill_at(_data(out), out.shape[0], f)


@njit(cache=True, fastmath=_EXACT)  # not inlined: with the drivers' reassoc, LLVM turned
def _scale_fill_at(out, n, f):  # float64's out_j * (a / s) into a division an entry
    for j in range(n):
        out[j] *= f


@njit(cache=True, fastmath=_EXACT)
def _categorical_fill(g, t, f, sc):
    for j in range(g.shape[0]):
        g[j] = g[j] * f - sc * t[j]


@njit(cache=True, fastmath=_SUMS)
def _target_sums(x, t, m):
    """``(sum_j t_j, sum_j t_j (x_j - m))`` in float64, with 0 * -inf taken as 0."""
    big_t = 0.0
    td = 0.0
    m64 = np.float64(m)
    for j in range(x.shape[0]):
        tj = np.float64(t[j])
        big_t += tj
        td += tj * (np.float64(x[j]) - m64) if tj != 0.0 else 0.0
    return big_t, td


# ---------------------------------------------------------------- drivers


_SHORT = 24  # softmax rows shorter than this go by blocks of rows (_softmax_block), and the
# cross-entropy's out of place: from 16, softmax 1.20-1.42x float32 and 0.99-1.26x float64 at
# 16-23 classes, that CE 1.04-1.35x on one thread and 0.93-1.05x on two (compare_kernels.py)
_SHORT_ROWS = 64  # rows a block


@njit(cache=True, fastmath=_EXACT)
def _softmax_block(x, out, bad, lo, hi):
    """Softmax of rows ``lo:hi`` of a 2-d array with short rows, the exponentials across rows.

    One row of ten entries is too short for vector lanes: the scalar
    exponentials form a chain of dependent latencies. A block of rows is
    contiguous, so its exponentials run as one long vectorised loop, each
    entry shifted by its row's maximum (``shift`` holds it once per entry).
    The same arithmetic per entry as the long rows' path: ``_shifted_exp``,
    a sum in the row's dtype added in order, ``out *= 1/s``.
    """
    c = x.shape[1]
    size = (hi - lo) * c
    xs = _data(x[lo])  # the block, rows back to back
    outs = _data(out[lo])
    shift = np.empty(size, dtype=x.dtype)
    for r in range(hi - lo):
        m = _like(x, -np.inf)
        for j in range(r * c, r * c + c):
            v = xs[j]
            m = v if v > m else m
        for j in range(r * c, r * c + c):
            shift[j] = m
    for k in range(size):
        outs[k] = _shifted_exp(xs[k], shift[k])
    for r in range(hi - lo):
        acc = _like(x, 0.0)
        for j in range(r * c, r * c + c):
            acc += outs[j]
        s = np.float64(acc)
        if not _finite(s):
            bad[lo + r] = True
            continue
        f = _like(out, 1.0 / s)
        for j in range(r * c, r * c + c):
            outs[j] *= f


# rows whose maximum is at most this in magnitude take exp32_scaled: beyond, float32's log2(e)
# (off by 1.3e-8) could put r past the polynomial's interval by enough to matter
_SCALED_MAX = 2.0**16


def _softmax_exps(x, m, out, nxt, nxt_out):
    """``out_j = exp(x_j - c)`` for a row and their sum in float64, ``c`` near its maximum ``m``."""


@overload(_softmax_exps, inline="always")
def _softmax_exps_impl(x, m, out, nxt, nxt_out):
    """float32: ``c = K ln2``, ``K = floor(m log2 e)``, and ``exp(x_j - c)`` computed as ``exp(x_j) 2**-K``
    (``exp32_scaled``): no rounded difference ``x_j - m`` to correct (TwoSum,
    four operations an entry), the same accuracy (the softmax is the same
    for any ``c``; ``exp(m - c)`` is in [1, 2), so the sum is at least 1 and
    an entry whose probability is normal has a normal exponential).
    Entries below ``c - 104`` (whose exponential is 0) are clamped there.
    Rows shorter than ``_SOFTMAX_HEAD_FROM`` (whose scalar tail costs more than
    TwoSum saves), and rows whose maximum is not finite or beyond ``_SCALED_MAX``, take
    ``_exp_sum``'s TwoSum path (which flags them if need be); float64 rows
    always do.
    """
    if x.dtype == types.float32:
        def impl(x, m, out, nxt, nxt_out):
            if x.shape[0] >= _SOFTMAX_HEAD_FROM and -_SCALED_MAX <= m <= _SCALED_MAX:
                k = math.floor(np.float64(m) * 1.4426950408889634)
                floor = np.float32(k * 0.6931471805599453 - 104.0)
                return _exp_scaled_sum(x, out, floor, np.int32(k), nxt, nxt_out)
            return _exp_sum(x, m, out, True, True, nxt)
        return impl
    return lambda x, m, out, nxt, nxt_out: _exp_sum(x, m, out, True, True, nxt)


def _softmax_rows(x, out, bad, threaded):
    """Softmax of each row of ``x`` into ``out``; ``threaded`` (the caller's: the parallel driver is
    running on more than one thread) allows streaming. A run-time value, so that both drivers
    compile the same code and add in the same order."""
    n = x.shape[0]
    packed = x.strides[0] == x.shape[1] * x.itemsize and out.strides[0] == out.shape[1] * out.itemsize
    if x.shape[1] < _SHORT and packed:
        for b in prange((n + _SHORT_ROWS - 1) // _SHORT_ROWS):
            _softmax_block(x, out, bad, b * _SHORT_ROWS, min(n, (b + 1) * _SHORT_ROWS))
        return
    stream = threaded and _streams(out)
    parts = min(n, _STREAM_PARTS) if stream else n  # streaming: a scratch row a part
    scratch = np.empty((parts if stream else 0, out.shape[1]), dtype=out.dtype)
    for p in prange(parts):
        for i in range(p * n // parts, (p + 1) * n // parts):
            row = x[i]
            # where the exponentials go: an array over a raw pointer (carray), no reference
            # counts and one type for both places, so one inlined copy of the row's code.
            # Only calls write through it: Numba's dead-code elimination dropped a plain
            # store into such a carray after an inlined call (not knowing it aliases `out`)
            o = carray(_row_at(scratch, p) if stream else _row_at(out, i), out.shape[1])
            m = _row_max(row)
            s = _softmax_exps(row, m, o, _next_row(x, i), _data(o) if stream else _next_row(out, i))
            if not _finite(s):
                bad[i] = True
                continue
            f = _like(out, 1.0 / s)
            if stream:
                _stream_fill(_data(o), _row_at(out, i), o.shape[0], f)
            else:
                _scale_fill(o, f)
        if stream:
            _sfence()


def _log_softmax_rows(x, out, bad):
    for i in prange(x.shape[0]):
        row = x[i]
        m = _row_max(row)
        r = _row_r(row, m, out[i], True, True, _next_row(x, i), _next_row(out, i))
        if not _finite(r):
            bad[i] = True
            continue
        _log_softmax_fill(row, m, np.log1p(r), out[i])


def _logsumexp_rows(x, out, bad):
    for i in prange(x.shape[0]):
        row = x[i]
        m = _row_max(row)
        r = _row_r(row, m, row, False, True, _next_row(x, i), _row_at(x, i))
        if not _finite(r):
            bad[i] = True
            continue
        out[i] = np.float64(m) + np.log1p(r)


@njit(cache=True, inline="always")
def _block_maxima(x, xs, labels, weight, lo, rows, c, shift, d_y):
    """Each row's maximum, repeated over its entries in ``shift``, and ``x_y - m`` in ``d_y``."""
    for r in range(rows):
        m = _like(x, -np.inf)
        for j in range(r * c, r * c + c):
            v = xs[j]
            m = v if v > m else m
        for j in range(r * c, r * c + c):
            shift[j] = m
        if weight[lo + r] != 0.0:  # an ignored row's label is not read
            d_y[r] = np.float64(xs[r * c + labels[lo + r]]) - np.float64(m)


@njit(cache=True, fastmath=_EXACT)
def _sparse_ce_block(x, labels, weight, scale, grad, loss, bad, refine, lo, hi):
    """Rows ``lo:hi`` of ``_sparse_ce_rows`` with short rows, the exponentials across rows;
    ``grad`` apart from ``x`` (in place: ``_sparse_ce_block_in_place``).

    As ``_softmax_block``: the rows' maxima and ``x_y - m`` first, then
    ``exp(x - m)`` of the whole block as one vectorised loop into ``grad``,
    then each row: ``r = S - 1`` in float64 and, below ``_recount_below``,
    summed again without the maximal term (and refined with ``refine``), as
    ``_row_r`` does, and the gradient; then the rows' losses in one
    vectorised loop (``_row_losses``).
    """
    c = x.shape[1]
    rows = hi - lo
    xs = _data(x[lo])  # the block, rows back to back
    gs = _data(grad[lo])
    shift = np.empty(rows * c, dtype=x.dtype)
    d_y = np.zeros(rows)
    r_of = np.empty(rows)
    _block_maxima(x, xs, labels, weight, lo, rows, c, shift, d_y)
    for k in range(rows * c):
        gs[k] = _fast_exp(xs[k], shift[k])
    for r in range(rows):
        i = lo + r
        at = r * c
        s = 0.0
        for j in range(at, at + c):
            s += np.float64(gs[j])
        rr = s - 1.0
        if rr < _recount_below(x):  # rare: views and calls only here
            m = shift[at]
            rr, w_err = _sum_below_max(grad[i], m, grad[i], True)
            if refine and w_err > _REFINE * rr:
                rr = _exp_sum_below_max(x[i], m)
        r_of[r] = rr
        if not _finite(rr):
            continue
        a = scale * weight[i]
        f = _like(x, a / (1.0 + rr))
        for j in range(at, at + c):
            gs[j] *= f
        if weight[i] != 0.0:
            gs[at + labels[i]] -= _like(x, a)
    _row_losses(r_of, d_y, weight, lo)  # the rows' log1p in one vectorised loop
    for r in range(rows):
        if r_of[r] == r_of[r]:  # NaN: r was not finite (a loss of +inf is a row's own)
            loss[lo + r] = r_of[r]
        else:
            bad[lo + r] = True


@njit(cache=True, fastmath=_EXACT)
def _sparse_ce_block_in_place(x, labels, weight, scale, lo, hi):
    """``_sparse_ce_block`` with the gradient written over ``x`` (no refinement: the row
    is gone), the rows' losses returned (float64, NaN for a row to flag).

    Into ``x`` itself LLVM's overlap check sent the exp loop to its scalar
    version, a third of the kernel's time: the exponentials go to a scratch
    block, and the rows' losses, their ``log1p`` included, are one vectorised
    loop after the row pass (``_row_losses``, as ``_sparse_ce_block``'s). The exponentials
    in a scratch block cost 8-15 % out of place, so ``_sparse_ce_block`` writes them into
    ``grad`` (``compare_kernels.py``, docs/kernels.md).
    """
    c = x.shape[1]
    rows = hi - lo
    xs = _data(x[lo])
    shift = np.empty(rows * c, dtype=x.dtype)
    e = np.empty(rows * c, dtype=x.dtype)
    d_y = np.zeros(rows)
    r_of = np.empty(rows)
    _block_maxima(x, xs, labels, weight, lo, rows, c, shift, d_y)
    for k in range(rows * c):
        e[k] = _fast_exp(xs[k], shift[k])
    for r in range(rows):
        i = lo + r
        at = r * c
        s = 0.0
        for j in range(at, at + c):
            s += np.float64(e[j])
        rr = s - 1.0
        if rr < _recount_below(x):
            rr = _sum_below_max(e[at:at + c], shift[at], e[at:at + c], True)[0]
        r_of[r] = rr
        if not _finite(rr):
            continue
        a = scale * weight[i]
        f = _like(x, a / (1.0 + rr))
        for j in range(at, at + c):
            xs[j] = e[j] * f
        if weight[i] != 0.0:
            xs[at + labels[i]] -= _like(x, a)
    _row_losses(r_of, d_y, weight, lo)
    return r_of


@njit(cache=True, fastmath=_EXACT, error_model="numpy")
def _row_losses(r_of, d_y, weight, lo):
    """``r_of[r] = w (log1p(r) - d_y)`` over a block's rows in place, NaN where ``r`` is not
    finite (+inf where the label's logit is -inf: that row's loss): one vectorised loop
    (``_log1p64``; under Numba's own error model it stayed scalar, and libm's ``log1p``,
    a call a row, took a quarter of the block's time)."""
    for r in range(r_of.shape[0]):
        v = r_of[r]
        ok = _finite(v)
        loss = weight[lo + r] * (_log1p64(v if ok else 0.0) - d_y[r])
        r_of[r] = loss if ok else np.nan


@njit(cache=True, inline="always")
def _block_losses(loss, d_ys, weight):
    """``loss[i] = w_i (log1p(r_i) - d_y_i)`` over rows whose ``r`` the row pass left in
    ``loss``, a block of rows a vectorised loop (``_row_losses``; on the parallel driver's
    threads, the blocks shared)."""
    n = loss.shape[0]
    for b in prange((n + _SHORT_ROWS - 1) // _SHORT_ROWS):
        lo, hi = b * _SHORT_ROWS, min(n, (b + 1) * _SHORT_ROWS)
        _row_losses(loss[lo:hi], d_ys[lo:hi], weight, lo)


@njit(cache=True, fastmath=_SUMS, parallel=True)
def _sparse_ce_streamed(x, labels, weight, scale, grad, loss, bad, refine):
    """``_sparse_ce_rows`` streaming (as ``_softmax_rows`` does): the exponentials go to a
    scratch row, the gradient to ``grad`` with non-temporal stores, the label's ``- a``
    in the same store (``_stream_grad``); the same bits. A kernel of its own: the
    row's code inlined twice in one function made Numba warn."""
    n = x.shape[0]
    parts = min(n, _STREAM_PARTS)
    scratch = np.empty((parts, grad.shape[1]), dtype=grad.dtype)  # a row a part
    d_ys = np.empty(n)
    for p in prange(parts):
        g = scratch[p]
        for i in range(p * n // parts, (p + 1) * n // parts):
            row = x[i]
            w = weight[i]
            m = _row_max(row)
            y = labels[i]
            d_ys[i] = np.float64(row[y]) - np.float64(m) if w != 0.0 else 0.0
            r = _row_r(row, m, g, True, refine, _next_row(x, i), _data(g))
            loss[i] = r  # the losses after, as the row path's
            if not _finite(r):
                bad[i] = True
                continue
            a = scale * w  # 0 on an ignored row: its label's entry less 0, unchanged
            _stream_grad(_data(g), _row_at(grad, i), g.shape[0], _like(g, a / (1.0 + r)), y, _like(g, a))
        _sfence()
    _block_losses(loss, d_ys, weight)


def _sparse_ce_rows(x, labels, weight, scale, grad, loss, bad, refine, threaded):
    """loss_i = w_i (lse_i - x_iy); grad_i = scale w_i (softmax(x_i) - onehot(y_i)).

    ``w`` is 0 on ignored rows, whose label is not read. ``grad`` may be
    ``x``; then ``refine`` must be False (see :func:`_row_r`). ``threaded``
    (the parallel driver on more than one thread) allows streaming
    (``_sparse_ce_streamed``).
    """
    n = x.shape[0]
    packed = x.strides[0] == x.shape[1] * x.itemsize and grad.strides[0] == grad.shape[1] * grad.itemsize
    in_place = x.ctypes.data == grad.ctypes.data
    if x.shape[1] < (_in_place_below(x) if in_place else _SHORT) and packed:
        for b in prange((n + _SHORT_ROWS - 1) // _SHORT_ROWS):
            lo, hi = b * _SHORT_ROWS, min(n, (b + 1) * _SHORT_ROWS)
            if in_place:
                losses = _sparse_ce_block_in_place(x, labels, weight, scale, lo, hi)
                for r in range(hi - lo):
                    if losses[r] == losses[r]:  # NaN: r was not finite (+inf is a loss)
                        loss[lo + r] = losses[r]
                    else:
                        bad[lo + r] = True
            else:
                _sparse_ce_block(x, labels, weight, scale, grad, loss, bad, refine, lo, hi)
        return
    if threaded and _streams(grad):
        _sparse_ce_streamed(x, labels, weight, scale, grad, loss, bad, refine)
        return
    d_ys = np.empty(n)
    scratch = in_place and _scratch_in_place(x)
    for i in prange(n):  # each row's r into loss[i]: the losses after, as the blocks' are
        row = x[i]
        g = grad[i]
        w = weight[i]
        m = _row_max(row)
        y = labels[i]
        d_ys[i] = np.float64(row[y]) - np.float64(m) if w != 0.0 else 0.0
        e = np.empty(row.shape[0], dtype=row.dtype) if scratch else g
        r = _row_r(row, m, e, True, refine, _next_row(x, i), _next_row(grad, i))
        loss[i] = r
        if not _finite(r):
            bad[i] = True
            continue
        a = scale * w
        f = _like(g, a / (1.0 + r))
        if scratch:
            _scaled_copy(e, g, f)
        else:
            _scale_fill(g, f)
        if w != 0.0:
            g[y] -= _like(g, a)
    _block_losses(loss, d_ys, weight)


def _categorical_ce_rows(x, t, scale, grad, loss, bad):
    """loss_i = sum_j t_ij (lse_i - x_ij); grad_i = scale (T_i softmax(x_i) - t_i)."""
    for i in prange(x.shape[0]):
        row = x[i]
        ti = t[i]
        g = grad[i]
        m = _row_max(row)
        big_t, td = _target_sums(row, ti, m)  # before g (which may be x) is written
        r = _row_r(row, m, g, True, True, _next_row(x, i), _next_row(grad, i))
        if not _finite(r):
            bad[i] = True
            continue
        loss[i] = big_t * np.log1p(r) - td
        _categorical_fill(g, ti, _like(g, scale * big_t / (1.0 + r)), _like(g, scale))


def _compile(fn):
    """(serial, parallel) versions of one driver.

    The parallel one is a copy under its own name (Numba's on-disk cache is
    keyed by the function's name, not by ``parallel``).
    """
    twin = types_module.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel")
    twin.__qualname__ = twin.__name__
    return (njit(cache=True, fastmath=_SUMS, nogil=True)(fn),
            njit(cache=True, fastmath=_SUMS, parallel=True)(twin))


softmax_rows = _compile(_softmax_rows)
log_softmax_rows = _compile(_log_softmax_rows)
logsumexp_rows = _compile(_logsumexp_rows)
sparse_ce_rows = _compile(_sparse_ce_rows)
categorical_ce_rows = _compile(_categorical_ce_rows)


_MODEL_KERNELS = ("adam_update", "linear_ce", "linear_ce_csr", "linear_proba_csr",
                  "linear_hvp_csr")


def __getattr__(name):
    """The kernels of the models and estimators (Adam's step, the linear objective's) live in
    ``_model_kernels.py``, on this module's helpers, and are served from here with these as
    one set (``_jit`` loads both; the fallbacks look each kernel up here by name). Looked up
    when asked, not imported at the end of this module: ``_model_kernels`` imported first
    would then meet itself half made (a review)."""
    if name in _MODEL_KERNELS:
        from . import _model_kernels

        return getattr(_model_kernels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
