"""The library's own worker threads: thread pools made on first use, and made again in a fork child.

A ``ThreadPoolExecutor``'s threads do not survive ``fork``: a child that
inherited the parent's pool queued its work for threads that did not exist,
and waited for ever (a ``SoftmaxRegression`` fit in a ``fork`` pool, after a
fit in the parent). ``os.register_at_fork`` forgets the pools in the child;
its next call makes new ones. Each user has a pool of its own (by name): a
task of one pool may wait on tasks of another (the linear objective's row
blocks call the cross-entropy, which may split its rows over threads), and
one shared pool would deadlock there.
"""

from __future__ import annotations

import os
import threading

__all__ = ["pool"]

_POOLS = {}
_LOCK = threading.Lock()


def pool(name):
    """The thread pool ``name`` (two workers, or one on a one-CPU machine)."""
    executor = _POOLS.get(name)
    if executor is None:
        with _LOCK:
            executor = _POOLS.get(name)
            if executor is None:
                from concurrent.futures import ThreadPoolExecutor

                executor = _POOLS[name] = ThreadPoolExecutor(
                    max_workers=min(2, os.cpu_count() or 1), thread_name_prefix=f"logitlab-{name}")
    return executor


def _forget_in_child():
    global _LOCK
    _POOLS.clear()  # the parent's executors: their threads are not in this process
    _LOCK = threading.Lock()  # it may have been held by a parent thread at the fork


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_forget_in_child)
