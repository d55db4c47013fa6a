"""The ``logitlab`` command: built on Click, with Rich for tables and progress.

It uses only the public API of the package.
"""

from ._main import main

__all__ = ["main"]
