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
"""

from __future__ import annotations

import os
import threading

import numpy as np

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


class _Worker:
    """A thread running the jobs handed to it one at a time, with the caller's NumPy error
    handling; two locks are the hand-over. (A ``ThreadPoolExecutor``'s queue and futures
    cost 46 us a hand-over of two empty jobs, these locks 13.5 us, on the 2-core Zen 2; a
    step makes three: 65 against 19 ms in the 1407 of an MNIST-shaped epoch.)"""

    def __init__(self, name):
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._job = self._result = self._error = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self):
        applied = None
        while True:
            self._go.acquire()
            job, err = self._job
            if job is None:
                return
            try:
                if err != applied:  # np.seterr is this thread's own
                    np.seterr(**err)
                    applied = err
                self._result, self._error = job(), None
            except BaseException as exc:  # raised in the caller's thread (Shards.run)
                self._result, self._error = None, exc
            self._done.release()

    def start(self, job, err):
        self._job = (job, err)
        self._go.release()

    def wait(self):
        """``(result, exception)`` of the job started last, once it has ended."""
        self._done.acquire()
        return self._result, self._error

    def stop(self):
        self._job = (None, None)
        self._go.release()
        self._thread.join()


class Shards:
    """T threads for one epoch's steps: the caller's (part 0) and T - 1 workers."""

    def __init__(self, parts):
        self.parts = parts
        self._workers = [_Worker(f"logitlab-shard_{t}") for t in range(parts - 1)]
        self._pid = os.getpid()

    def run(self, jobs):
        """Call ``jobs[t]()`` on thread t (``jobs[0]`` on the caller's), wait for all; the
        results in order. A job's exception is raised after every job has ended (no
        worker is left writing into the arrays the caller goes on with)."""
        if os.getpid() != self._pid:  # a fork inside the epoch: the workers stayed behind
            return [job() for job in jobs]
        err = np.geterr()  # the caller's floating-point error handling, in every thread
        workers = self._workers[:len(jobs) - 1]
        for worker, job in zip(workers, jobs[1:]):
            worker.start(job, err)
        try:
            first = jobs[0]()
        finally:
            rest = [worker.wait() for worker in workers]
        for _, exc in rest:
            if exc is not None:
                raise exc
        return [first] + [result for result, _ in rest]

    def close(self):
        if os.getpid() == self._pid:
            for worker in self._workers:
                worker.stop()
