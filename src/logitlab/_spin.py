"""Waiting for a flag without sleeping: the split training step's hand-overs (Numba).

A thread that blocks on a lock sleeps in the kernel, and waking it costs what the
machine's idle CPUs make it cost: 13.5 us a hand-over of two empty jobs between two
threads on the 2-core Zen 2, 77 us on a 2-core Xeon VM whose idle CPUs halt at once
(cpuidle ``haltpoll`` with ``guest_halt_poll_ns`` 0). ``models/_shards.py``'s threads
keep their locks, which say what to do, and wait for a counter in an int64 array first:
spinning here, with the GIL released, for at most a budget, before the lock.

The GIL is why the waits live in compiled code and why they linger. A thread that
finds the GIL taken sleeps, so a thread that has seen its flag waits ``after``
nanoseconds more before taking it back, and a thread that raises a flag does it
without the GIL and keeps off it as long: the other side, which wants the GIL at
that moment, then finds it free.

This module imports Numba; ``models/_shards.py`` loads it with the first split step
(not where the process runs with ``LOGITLAB_KERNELS=never``).
"""

from __future__ import annotations

import platform
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# x86 only: its time-stamp counter runs at a constant rate and user code may read it;
# elsewhere ``llvm.readcyclecounter`` may read a counter the kernel does not give user code
# (AArch64's PMCCNTR_EL0 traps), so there the workers keep to their locks
if platform.machine().lower() not in ("x86_64", "amd64"):
    raise ImportError("logitlab._spin: the spinning waits are for x86-64 only")


def _element(context, builder, signature, args):
    ary = context.make_array(signature.args[0])(context, builder, args[0])
    return builder.gep(ary.data, [args[1]])


@intrinsic
def _load(typingctx, flags, i):
    """``flags[i]``, read from memory each time (an atomic load: LLVM may not hoist it)."""

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_element(context, builder, signature, args), "acquire", 8)

    return types.int64(flags, i), codegen


@intrinsic
def _store(typingctx, flags, i, value):
    """``flags[i] = value``, as an atomic store."""

    def codegen(context, builder, signature, args):
        builder.store_atomic(args[2], _element(context, builder, signature, args), "release", 8)
        return context.get_dummy_value()

    return types.none(flags, i, value), codegen


@intrinsic
def _ticks(typingctx):
    """The time-stamp counter (``rdtsc``)."""

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter",
                                              fnty=ir.FunctionType(ir.IntType(64), []))
        return builder.call(fn, [])

    return types.int64(), codegen


@intrinsic
def _pause(typingctx):
    """x86's ``pause``: a spinning loop's hint."""

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause",
                                              fnty=ir.FunctionType(ir.VoidType(), []))
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@njit(cache=True, nogil=True)
def _linger(ticks):
    start = _ticks()
    while _ticks() - start < ticks:
        _pause()


@njit(cache=True, nogil=True)
def _wait(flags, i, value, budget, after):
    """Whether ``flags[i]`` reached ``value`` within ``budget`` ticks; once it has,
    ``after`` ticks more."""
    start = _ticks()
    while _load(flags, i) < value:
        if _ticks() - start > budget:
            return False
        _pause()
    _linger(after)
    return True


@njit(cache=True, nogil=True)
def _raise_then_wait(flags, i, value, j, next_value, after, budget):
    """``flags[i] = value``, ``after`` ticks without the GIL, then :func:`_wait` for
    ``flags[j]`` to reach ``next_value`` (``budget`` 0: no wait)."""
    _store(flags, i, value)
    _linger(after)
    if budget <= 0:
        return False
    return _wait(flags, j, next_value, budget, after)


@njit(cache=True, nogil=True)
def _now():
    return _ticks()


def _ticks_per_ns():
    """The cycle counter's rate, measured over about a millisecond."""
    _now()  # compiled (or loaded) before the clocks start
    t0, c0 = time.perf_counter_ns(), _now()
    while time.perf_counter_ns() - t0 < 1_000_000:
        pass
    t1, c1 = time.perf_counter_ns(), _now()
    return max((c1 - c0) / (t1 - t0), 1e-3)


class Waits:
    """The waits in nanoseconds: ``wait(flags, i, value)`` spins up to ``budget_ns`` for
    ``flags[i] >= value``; ``raise_flag(flags, i, value, then=(j, next_value))`` sets
    ``flags[i]`` and, with ``then``, spins for the next value of ``flags[j]``."""

    def __init__(self, budget_ns=1_000_000, after_ns=10_000):
        rate = _ticks_per_ns()
        self.budget, self.after = int(budget_ns * rate), int(after_ns * rate)
        scratch = np.zeros(2, np.int64)  # compiled (or loaded) now, not in a fit's first step
        _wait(scratch, 0, 0, 0, 0)
        _raise_then_wait(scratch, 1, 0, 0, 0, 0, 0)

    def wait(self, flags, i, value, linger=True):
        """``linger``: once the flag is seen, keep off the GIL ``after_ns`` more (a thread
        about to run a job handed over while the other still holds the GIL)."""
        return _wait(flags, i, value, self.budget, self.after if linger else 0)

    def raise_flag(self, flags, i, value, then=None):
        j, next_value = then if then is not None else (0, 0)
        return _raise_then_wait(flags, i, value, j, next_value, self.after,
                                self.budget if then is not None else 0)
