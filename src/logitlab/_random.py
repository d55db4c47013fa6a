"""One place for randomness: ``set_random_seed`` and per-object generators."""

from __future__ import annotations

import numpy as np

_global_seed: int | None = None
_global_rng = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed everything logitlab draws (initial weights, shuffling, dropout).

    Two runs after the same ``set_random_seed(seed)`` give identical weights
    and histories, as ``keras.utils.set_random_seed`` does.

    Examples
    --------
    >>> import logitlab
    >>> logitlab.set_random_seed(0)
    """
    global _global_seed, _global_rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"`seed` must be a non-negative integer; got {seed!r}")
    _global_seed = int(seed)
    _global_rng = np.random.default_rng(_global_seed)


def make_rng(seed=None) -> np.random.Generator:
    """A generator: from ``seed`` if given, else drawn from the global one."""
    if seed is None:
        return np.random.default_rng(_global_rng.integers(2**63))
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
