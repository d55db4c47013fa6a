"""Optimizers with Keras 3's update formulas: SGD, Adam, AdamW, RMSprop."""

from ._optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, get

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get"]
