"""Networks: :class:`Sequential` and :func:`load_model`."""

from ._sequential import Sequential, TrainingDivergedError, load_model

__all__ = ["Sequential", "load_model", "TrainingDivergedError"]
