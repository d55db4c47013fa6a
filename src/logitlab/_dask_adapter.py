"""The one place that touches Dask collections; Dask is imported only when one is used.

Used by :class:`logitlab.Sequential` (lazy predict) and by the estimators'
Dask adapter (:mod:`logitlab.estimators._dask`). Nothing here imports Dask
at module level, so ``import logitlab`` never does.
"""

from __future__ import annotations

import numpy as np


def is_dask_collection(obj) -> bool:
    """True for Dask arrays, DataFrames and Series, without importing Dask."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr")


def as_dask_array(obj, name):
    """A Dask array with known chunk sizes from a Dask array, DataFrame or Series."""
    import dask.array as da

    if isinstance(obj, da.Array):
        arr = obj
    elif hasattr(obj, "to_dask_array"):
        arr = obj.to_dask_array(lengths=True)
    else:
        raise TypeError(f"`{name}` must be a Dask array or DataFrame; got {type(obj).__name__}")
    if any(np.isnan(c) for c in arr.chunks[0]):
        arr = arr.compute_chunk_sizes()
    return arr


def map_rows(fn, X, n_out, dtype=np.float64, name="X"):
    """Apply ``fn`` (n, d) -> (n, n_out) or (n,) lazily to each row chunk of ``X``."""
    X = as_dask_array(X, name)
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    if n_out is None:
        return X.map_blocks(fn, drop_axis=1, dtype=dtype, meta=np.empty((0,), dtype))
    return X.map_blocks(fn, chunks=(X.chunks[0], (n_out,)), dtype=dtype,
                        meta=np.empty((0, 0), dtype))
