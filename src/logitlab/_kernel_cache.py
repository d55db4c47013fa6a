"""One freshness stamp in Numba's disk cache for the kernel modules that inline each other.

Numba caches a compiled function beside its source file and loads it again
while that file's stamp (a hash of its bytes) is unchanged. A kernel inlines
helpers from the other kernel modules (``_kernels.py`` the exponentials of
``_kernel_exp.py``; ``_model_kernels.py`` the row passes of ``_kernels.py``),
and a change to a helper's file leaves the kernel's own stamp as it was:
after an edit to a helper alone, Numba would load the kernels built on it as
they were compiled against the old one. Here every cached function of a
module in ``GROUP`` is stamped with one hash of all of them, so that a change
to any recompiles them all.

The mechanism is a cache locator in front of Numba's own
(``numba.core.caching.CacheImpl._locator_classes``, the list Numba's caching
tries in turn; Numba 0.68 reads another from ``NUMBA_CACHE_LOCATOR_CLASSES``).
For a function of the group's files it asks Numba's locators, in their
order, for the one Numba would use (the folder: ``__pycache__``,
``NUMBA_CACHE_DIR``, ...) and joins the group's hash to its stamp (Numba's
own, the file's hash, still counts: a zipped package is stamped by Numba's
zip locator). Where the user names locators in
``NUMBA_CACHE_LOCATOR_CLASSES``, Numba takes those and each file's stamp is
its own again (naming ``GroupLocator`` there puts it in front of Numba's
default list, not of the named ones). ``tests/test_kernel_cache.py`` checks that an
edit to one module recompiles the others' kernels.

This module does not import Numba until :func:`register` is called, so that
the test suite can read ``GROUP`` without loading it.
"""

from __future__ import annotations

import hashlib
import os
import threading

#: the modules whose cached functions inline one another's helpers (in this folder)
GROUP = ("_kernel_exp.py", "_kernels.py", "_model_kernels.py")

_FILES = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), name) for name in GROUP)
_lock = threading.Lock()
_snapshot = []  # the group's stamp as this process first read it (register)


def stamp():
    """A SHA-256 of the group's files' bytes as they are on disk now, in ``GROUP``'s order
    (a file missing, as in a zip, is left out: Numba's own stamp still covers it)."""
    digest = hashlib.sha256()
    for path in _FILES:
        if os.path.exists(path):
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


class _Stamped:
    """Numba's own locator for a function, its stamp joined by the group's.

    The group's is read once a process, when the first module of the group is imported
    (:func:`register`), not when each function is: a file edited while a process runs
    would otherwise stamp kernels compiled on the helpers imported before the edit as
    if they were compiled on the edited ones (a review's case: ``_model_kernels``,
    imported lazily after an edit to ``_kernel_exp.py``, was saved under the new stamp).
    """

    def __init__(self, locator):
        self._locator = locator

    def __getattr__(self, name):
        if name.startswith("__") or name == "_locator":  # (copy, pickle: no recursion)
            raise AttributeError(name)
        return getattr(self._locator, name)

    def get_source_stamp(self):
        return self._locator.get_source_stamp(), _snapshot[0]


class GroupLocator:
    """A Numba cache locator for the functions of this folder's ``GROUP`` (see the module's
    docstring); None for any other function, which Numba's next locators serve."""

    files = _FILES

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.abspath(py_file) not in cls.files:
            return None
        from numba.core.caching import CacheImpl

        for other in CacheImpl._locator_classes:
            if isinstance(getattr(other, "files", None), tuple):  # a group's (any copy's)
                continue
            locator = other.from_function(py_func, py_file)
            if locator is not None:
                return _Stamped(locator)
        return None


def register():
    """Put :class:`GroupLocator` in front of Numba's cache locators (once). Called by each
    module of the group before its first cached function is defined."""
    from numba.core.caching import CacheImpl

    with _lock:  # (a copy of this module imported again, after an interrupt, finds its own)
        if not _snapshot:
            _snapshot.append(stamp())
        if not any(getattr(c, "files", None) == _FILES for c in CacheImpl._locator_classes):
            CacheImpl._locator_classes.insert(0, GroupLocator)
