"""Packages imported on first use, whole or forgotten.

An interrupt (Ctrl-C) part way through a package's first import can leave it half made
in ``sys.modules``. Every later import of it then fails, or gives a broken module:
measured here, Numba ("module 'numba' has no attribute 'core'") and matplotlib ("module
'matplotlib' has no attribute 'get_data_path'"). rich, dask and threadpoolctl imported
again whole. A notebook's user who interrupts a slow first call would meet it in every
later one. So the library's first imports of those two run inside :func:`whole`.
"""

from __future__ import annotations

import contextlib
import sys

__all__ = ["whole"]


@contextlib.contextmanager
def whole(*packages):
    """Run the imports inside; if anything (an interrupt too) stops them, forget the
    modules of ``packages`` (names of top-level packages or modules) that they
    imported, so the next attempt imports them whole. The exception goes on."""
    before = set(sys.modules)
    try:
        yield
    except BaseException:
        for name in set(sys.modules) - before:
            if name in packages or name.split(".")[0] in packages:
                sys.modules.pop(name, None)
        raise
