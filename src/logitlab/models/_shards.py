"""A training step on several cores, each owning rows of the large Dense kernels.

With BLAS's own threads, the training loop's products split their work as BLAS
chooses, and Adam's step (one thread) then writes every weight that the other
cores have just read: on a 2-core Zen 2 those weights' cache lines cross
between the cores twice a step, which cost an MNIST-shaped epoch (784 -> 256,
batch 128) about 0.2 s of 0.69 (docs/performance.md). Here each of T threads
owns a block of rows of each large kernel ``W`` (input features ``lo:hi``),
with its gradient and Adam's moments for them, and the step keeps to it:

* forward: thread t computes ``x[:, lo:hi] @ W[lo:hi]`` (one BLAS thread each);
  the caller adds the T partial products (a batch x units sum each);
* backward: thread t computes ``x[:, lo:hi]^T gz`` into its rows of the gradient;
* the optimizer: thread t updates its rows (``Optimizer.apply``'s ``parts``).

The sums' order is fixed by T and the sizes, never by timing: a fit gives the
same weights every time on the same machine (T is the BLAS's thread count, as
its own products' bits depend on it). The threads live for one epoch's steps
(``Trainer._steps``), so a process forked between fits has none to lose.

A hand-over wakes a sleeping thread, and what that costs depends on the machine: on a
2-core Xeon VM whose idle CPUs halt at once, 77 us a hand-over of two empty jobs
through the locks alone (13.5 us on the 2-core Zen 2). So each side first spins on a
counter, in compiled code without the GIL, for up to 100 us, and not while most spins run
out (``logitlab._spin``): 13 us there, and an MNIST-shaped epoch 0.58 -> 0.48-0.52 s.
The locks still say what to do; the counters only spare the sleep. The arithmetic is
the same either way.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from .. import _jit

__all__ = ["Shards", "SHARD_PRODUCT", "row_blocks"]

#: a Dense layer whose product (batch x inputs x units multiply-adds) gives each of the T
#: threads this much in a step, and at least MIN_ROWS input rows, is split by rows (the
#: MNIST-shaped layer, 128 x 784 x 256 = 25.7 M, on two threads); below it a thread's part
#: is too short for the hand-over (tens of microseconds), and one BLAS thread does better
SHARD_PRODUCT = 1 << 22
MIN_ROWS = 64


def row_blocks(n_rows, parts):
    """``parts`` contiguous ``(lo, hi)`` ranges covering ``range(n_rows)``, sizes within one."""
    cuts = [n_rows * t // parts for t in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


GO, DONE = 0, 1  # a worker's two counters (``_Worker._flags``): jobs handed over, jobs done


def _waits():
    """The compiled flag waits (``logitlab._spin``), loaded once; None (the locks alone)
    where the process runs without compiled code (``LOGITLAB_KERNELS=never``,
    ``kernel_mode("never")``), Numba cannot load, or the CPU is not x86-64, and until the
    kernels are loaded: Numba is imported by their loader (``_jit``), never here, in the
    middle of a step (a review: an interrupt in that first import left Numba half made
    for the rest of the process). ``Shards.run`` asks again."""
    if _jit._state["mode"] == "never" or _jit._state["module"] is None:
        return None
    if not _WAITS:
        try:
            from .._spin import Waits

            _WAITS.append(Waits())
        except Exception:  # Numba missing or broken, or not x86-64
            _WAITS.append(None)
    return _WAITS[0]


_WAITS = []


class _Worker:
    """A thread running the jobs handed to it one at a time, with the caller's NumPy error
    handling; two locks are the hand-over. (A ``ThreadPoolExecutor``'s queue and futures
    cost 46 us a hand-over of two empty jobs, these locks 13.5 us, on the 2-core Zen 2; a
    step makes three: 65 against 19 ms in the 1407 of an MNIST-shaped epoch.) With
    ``waits``, each side spins on its counter in ``_flags`` before taking its lock (see the
    module's docstring). A job may bring an ``after`` job, run once the caller has its
    result (see ``Shards.prefetch``)."""

    def __init__(self, name, waits=None):
        self._go, self._done, self._after_done = threading.Lock(), threading.Lock(), threading.Lock()
        for lock in (self._go, self._done, self._after_done):
            lock.acquire()
        self._job = self._result = self._after_result = None
        # with ``waits`` (logitlab._spin), each side spins on a counter before its lock; the
        # worker reads ``_waits`` at each job (Shards.run may set it between runs)
        self._waits, self._flags, self._started = waits, np.zeros(2, np.int64), 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        try:
            self._thread.start()
        except BaseException:  # an interrupt while it starts: it finds no job and ends
            self._job = (None, None, None)
            self._go.release()
            if self._thread.ident is not None:  # it started
                self._thread.join()
            raise

    def _loop(self):
        applied = None
        flags, taken, waited = self._flags, 0, False
        while True:
            waits = self._waits
            if waits is not None and not waited:
                waits.wait(flags, GO, taken + 1)
            self._go.acquire()
            taken += 1
            job, err, after = self._job
            if job is None:
                return
            if err != applied:  # np.seterr is this thread's own
                np.seterr(**err)
                applied = err
            self._result = _outcome(job)
            self._done.release()
            # the counter raised off the GIL; with no job after this one, the wait for the
            # next in the same compiled call (the caller takes the GIL back meanwhile)
            waited = waits is not None and after is None
            if waits is not None:
                waits.raise_flag(flags, DONE, taken, then=(GO, taken + 1) if waited else None)
            if after is not None:
                self._after_result = _outcome(after)
                self._after_done.release()

    def start(self, job, err, after=None):
        self._job = (job, err, after)
        self._go.release()
        self._started += 1
        self._flags[GO] = self._started

    def wait(self):
        """``(result, exception)`` of the job started last, once it has ended."""
        if self._waits is not None:
            self._waits.wait(self._flags, DONE, self._started, linger=False)
        self._done.acquire()
        return self._result

    def wait_after(self):
        """``(result, exception)`` of the last job's ``after`` job, once it has ended."""
        self._after_done.acquire()
        return self._after_result

    def ready_after(self):
        """Whether the last job's ``after`` job has ended (then ``wait_after`` does not wait)."""
        if self._after_done.acquire(blocking=False):
            self._after_done.release()
            return True
        return False

    def stop(self):
        """End the thread once its job (and that job's ``after``) is done. Safe whatever an
        interrupted caller left: a job handed over and not yet taken is not run."""
        self._job = (None, None, None)
        try:
            self._go.release()
        except RuntimeError:  # released and not yet taken: the thread takes it, finds no job
            pass
        self._started += 1
        self._flags[GO] = self._started
        self._thread.join()


def _outcome(job):
    try:
        return job(), None
    except BaseException as exc:  # raised in the caller's thread (Shards.run, Shards.collect)
        return None, exc


class Shards:
    """T threads for one epoch's steps: the caller's (part 0) and T - 1 workers."""

    def __init__(self, parts):
        self.parts = parts
        self._workers = []
        try:
            self._waits = _waits() if parts > 1 else None
            for t in range(parts - 1):
                self._workers.append(_Worker(f"logitlab-shard_{t}", self._waits))
        except BaseException:  # an interrupt: no thread is left behind
            self.close()
            raise
        self._pid = os.getpid()
        self._later = None  # a prefetch job, not yet handed to a worker
        self._fetching = False  # the first worker has a prefetch job to finish

    def run(self, jobs):
        """Call ``jobs[t]()`` on thread t (``jobs[0]`` on the caller's), wait for all; the
        results in order. A job's exception is raised after every job has ended (no
        worker is left writing into the arrays the caller goes on with)."""
        if os.getpid() != self._pid:  # a fork inside the epoch: the workers stayed behind
            return [job() for job in jobs]
        if self._waits is None and self._workers:  # the kernels may have loaded since
            self._waits = _waits()
            for worker in self._workers:
                worker._waits = self._waits
        err = np.geterr()  # the caller's floating-point error handling, in every thread
        workers = self._workers[:len(jobs) - 1]
        after = None
        if workers:
            if self._fetching:  # the prefetch ends before the worker's next job
                self._fetched = workers[0].wait_after()
            after, self._later = self._later, None  # the first worker's, after its job
            self._fetching = after is not None
        for worker, job in zip(workers, jobs[1:]):
            worker.start(job, err, after)
            after = None
        try:
            first = jobs[0]()
        finally:
            rest = [worker.wait() for worker in workers]
        for _, exc in rest:
            if exc is not None:
                raise exc
        return [first] + [result for result, _ in rest]

    def prefetch(self, job):
        """Have the first worker call ``job()`` once its part of the next ``run`` is done,
        while the caller goes on (what the caller does between two runs on one thread
        alone, the worker idle: the next batch's gathering); ``collect`` gives its result."""
        self._later = job
        self._fetched = None

    def collect(self):
        """The result of the job given to ``prefetch`` (called here if no run took it)."""
        if self._later is not None:
            job, self._later = self._later, None
            return job()
        if self._fetching:
            if os.getpid() != self._pid and not self._workers[0].ready_after():
                raise RuntimeError("the process forked while a worker thread was making the "
                                   "next training batch, which the child cannot have: fork "
                                   "between fits or from a callback")
            self._fetched = self._workers[0].wait_after()
            self._fetching = False
        result, exc = self._fetched
        self._fetched = None
        if exc is not None:
            raise exc
        return result

    def close(self):
        """Stop the workers, each once its work is done (whatever an interrupt left half
        done: only this is called after an exception from the methods above)."""
        if os.getpid() == getattr(self, "_pid", os.getpid()):
            for worker in self._workers:
                worker.stop()
            self._fetching = False
