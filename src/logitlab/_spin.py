"""Waiting for a flag without sleeping: the split training step's hand-overs (Numba).

A thread that blocks on a lock sleeps in the kernel, and waking it costs what the
machine's idle CPUs make it cost: 13.5 us a hand-over of two empty jobs between two
threads on the 2-core Zen 2, 77 us on a 2-core Xeon VM whose idle CPUs halt at once
(cpuidle ``haltpoll`` with ``guest_halt_poll_ns`` 0). ``models/_shards.py``'s threads
keep their locks, which say what to do, and wait for a counter in an int64 array first:
spinning here, with the GIL released, for at most a budget, before the lock. The budget
is a few wake-ups, 100 us, not more, and no thread spins while most spins run out
(``Waits``): a spinning thread holds a core that another process may be waiting for.
(A review measured 100 MNIST-shaped steps with one busy process beside them:
0.41-0.65 s with a 1 ms budget, 0.19 s with 100 us, 0.16 s adaptive, 0.145-0.16 s
with the locks alone; without that process 0.105, 0.108, 0.107-0.120 and
0.125-0.137 s.)

The GIL is why the waits live in compiled code and why they linger. A thread that
finds the GIL taken sleeps, so a thread that has seen its flag waits ``after``
nanoseconds more before taking it back, and a thread that raises a flag does it
without the GIL and keeps off it as long: the other side, which wants the GIL at
that moment, then finds it free.

This module imports Numba; ``models/_shards.py`` loads it once the kernels are loaded
(``_jit``: an interrupt in a first import of Numba could leave it half made), never
where the process runs with ``LOGITLAB_KERNELS=never``.
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


# Each loop also stops after as many rounds as it has ticks (a round takes several): a
# counter that stepped back (a thread moved to a CPU whose counter lags) cannot hold it.


@njit(cache=True, nogil=True)
def _linger(ticks):
    start = _ticks()
    rounds = 0
    while _ticks() - start < ticks and rounds < ticks:
        _pause()
        rounds += 1


SEEN, RAN_OUT, PREEMPTED = 1, 0, -1  # what a wait ended on


@njit(cache=True, nogil=True)
def _wait(flags, i, value, budget, after, gap):
    """``SEEN`` once ``flags[i]`` reaches ``value`` (then ``after`` ticks more); ``RAN_OUT``
    after ``budget`` ticks; ``PREEMPTED`` at once if two rounds lie more than ``gap`` ticks
    apart: the thread was off its core meanwhile, which another thread wanted."""
    start = last = _ticks()
    rounds = 0
    while _load(flags, i) < value:
        now = _ticks()
        if now - last > gap:
            return PREEMPTED
        if now - start > budget or rounds > budget:
            return RAN_OUT
        last = now
        _pause()
        rounds += 1
    _linger(after)
    return SEEN


@njit(cache=True, nogil=True)
def _raise_then_wait(flags, i, value, j, next_value, after, budget, gap):
    """``flags[i] = value``, ``after`` ticks without the GIL, then :func:`_wait` for
    ``flags[j]`` to reach ``next_value`` (``budget`` 0: no wait, ``RAN_OUT``)."""
    _store(flags, i, value)
    _linger(after)
    if budget <= 0:
        return RAN_OUT
    return _wait(flags, j, next_value, budget, after, gap)


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
    ``flags[i]`` and, with ``then``, spins for the next value of ``flags[j]``. Each says
    whether it saw its value (else the caller takes its lock).

    Adaptive, as an adaptive mutex: a spin pays only when it mostly sees its value. The
    share that did, over about the last eight spins on the same counter index, is kept;
    below a half, the next ``rest`` waits on that index do not spin, and then it tries
    afresh. Where the machine has more threads that want to run than cores, spins mostly
    run out, and a spinning thread would hold a core another needs. (100 MNIST-shaped steps on this module's Xeon, a
    spin's budget 100 us: alone, 88 % of the spins saw their value; beside a busy
    process, 23 %. Spinning throughout made those steps 0.19-0.20 s there, against
    0.145-0.16 s with the locks alone.) A spin preempted (its thread off its core for
    more than ``gap_ns``) counts as one that ran out.
    """

    def __init__(self, budget_ns=100_000, after_ns=10_000, gap_ns=20_000, rest=256):
        rate = _ticks_per_ns()
        self.budget, self.after = int(budget_ns * rate), int(after_ns * rate)
        self.gap, self.rest = int(gap_ns * rate), rest
        # by counter index (a worker's waits for its next job and the caller's for a job's
        # end fare differently); shared by the threads, updated without a lock: a hint
        self.resting, self.share = {}, {}
        scratch = np.zeros(2, np.int64)  # compiled (or loaded) now, not in a fit's first step
        _wait(scratch, 0, 0, 0, 0, 0)
        _raise_then_wait(scratch, 1, 0, 0, 0, 0, 0, 0)

    def _spins(self, i):
        """Whether this wait on counter ``i`` spins (a resting one counts down instead)."""
        resting = self.resting.get(i, 0)
        if resting > 0:
            self.resting[i] = resting - 1
            return False
        return True

    def _ended(self, i, outcome):
        share = self.share.get(i, 1.0)
        share += ((outcome == SEEN) - share) / 8
        if share < 0.5:
            self.resting[i], share = self.rest, 0.75
        self.share[i] = share
        return outcome == SEEN

    def wait(self, flags, i, value, linger=True):
        """``linger``: once the flag is seen, keep off the GIL ``after_ns`` more (a thread
        about to run a job handed over while the other still holds the GIL)."""
        if not self._spins(i):
            return False
        return self._ended(i, _wait(flags, i, value, self.budget,
                                    self.after if linger else 0, self.gap))

    def raise_flag(self, flags, i, value, then=None):
        if then is not None and not self._spins(then[0]):
            then = None
        if then is None:  # raised, no spin: nothing learnt
            _raise_then_wait(flags, i, value, 0, 0, self.after, 0, self.gap)
            return False
        return self._ended(then[0], _raise_then_wait(flags, i, value, then[0], then[1],
                                                     self.after, self.budget, self.gap))
